#!/usr/bin/env bash
# Builds the pinned Go programs the tests run against (test peers and real servers; the
# product itself is Rust only) into target/go-tools/, one directory per tool and version, so a
# build is reused until its pin changes. Prints what it built or reused, with the time taken.
#
# Each tool is built in a scratch module: `go get -tool PKG@VERSION` records the pin (and any
# `replace` lines a tool needs), then `go install` builds it. That works for programs that
# publish no module versions of their own (pseudo-versions) as for tagged ones. A tool that
# cannot be built stops the script with the command and its error: never a silent skip.
#
# Binaries are linked into target/go-tools/bin/ under the names the tests use.
# GO_TOOLS_DIR overrides target/go-tools; GO_TOOLS=name,name builds a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${GO_TOOLS_DIR:-$PWD/target/go-tools}
mkdir -p "$root/bin"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# The pins: name, module@version, then the packages to install and the name each binary gets
# in bin/ (package=name).
#   wireguard-go: today's wireguard-go, with its TUN and UDP offloads (Debian's build is
#   from 2022, before them).
#   kubernetes: kube-apiserver and kubectl of one release, for the tests against a real API
#   server (its staging modules are pinned in prepare()).
#   etcd: the etcd server that release is built and tested with (its go.mod requires
#   go.etcd.io/etcd/*/v3 at this version). The server module's root package is etcd's own
#   `main` (over etcdmain), so it installs directly; go names the binary `server`.
#   spire: SPIRE server and agent, for the trust-plane tests.
TOOLS=(
  "wireguard-go golang.zx2c4.com/wireguard@v0.0.0-20260522210424-ecfc5a8d5446 golang.zx2c4.com/wireguard=wireguard-go-current"
  "kubernetes k8s.io/kubernetes@v1.34.4 k8s.io/kubernetes/cmd/kube-apiserver=kube-apiserver k8s.io/kubernetes/cmd/kubectl=kubectl"
  "etcd go.etcd.io/etcd/server/v3@v3.6.4 go.etcd.io/etcd/server/v3=etcd"
  "spire github.com/spiffe/spire@v1.13.3 github.com/spiffe/spire/cmd/spire-server=spire-server github.com/spiffe/spire/cmd/spire-agent=spire-agent"
)

# Extra go.mod lines a tool needs before `go get` (replace directives), by name.
#   kubernetes: its go.mod requires the staging modules (k8s.io/api, k8s.io/apimachinery, ...)
#   at v0.0.0 and replaces them with directories of its own repository, which a module
#   download does not carry. Each is replaced by the published module of the same release
#   (v1.X.Y -> v0.X.Y), the list taken from that release's go.mod.
prepare() {
  case "$1" in
    kubernetes)
      local gomod staging
      gomod=$(go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$2")
      staging=$(sed -n 's|^[[:space:]]*\(k8s\.io/[a-z0-9./-]*\) => \./staging/.*$|\1|p' "$gomod")
      [ -n "$staging" ] || { echo "no staging modules found in $gomod" >&2; return 1; }
      local module
      for module in $staging; do
        echo "+ go mod edit -replace $module=$module@v0.${2#v1.}"
        go mod edit -replace "$module=$module@v0.${2#v1.}"
      done
      ;;
    *) ;;
  esac
}

# Linker flags a tool needs, by name: the version it reports (its own build scripts stamp it;
# without them kube-apiserver and kubectl say v0.0.0-master).
ldflags() {
  case "$1" in
    kubernetes)
      local minor=${2#v1.}
      minor=${minor%%.*}
      echo "-X k8s.io/component-base/version.gitVersion=$2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
      ;;
    *) ;;
  esac
}

fail() {
  echo "go-tools: building $1 failed: $2" >&2
  if [ -n "${3:-}" ] && [ -f "$3" ]; then
    tail -n 40 "$3" >&2
  fi
  exit 1
}

build() {
  local name=$1 pin=$2
  shift 2
  local module=${pin%@*} version=${pin#*@}
  local dir=$root/$name-$version
  local started=$SECONDS
  if [ -f "$dir/.built" ]; then
    echo "go-tools: $name $version (cached)"
  else
    rm -rf "$dir"
    mkdir -p "$dir/src" "$dir/bin"
    local log=$dir/build.log
    (
      cd "$dir/src"
      go mod init "ztgw.test/go-tools/$name" >"$log" 2>&1
      prepare "$name" "$version" >>"$log" 2>&1
      for spec in "$@"; do
        local package=${spec%%=*}
        echo "+ go get -tool $package@$version" >>"$log"
        go get -tool "$package@$version" >>"$log" 2>&1
      done
      for spec in "$@"; do
        local package=${spec%%=*}
        echo "+ GOBIN=$dir/bin go install -ldflags '$(ldflags "$name" "$version")' $package" >>"$log"
        GOBIN="$dir/bin" go install -ldflags "$(ldflags "$name" "$version")" "$package" >>"$log" 2>&1
      done
    ) || fail "$name $version ($module)" "see the last lines of $log" "$log"
    touch "$dir/.built"
    echo "go-tools: $name $version built in $((SECONDS - started)) s"
  fi
  for spec in "$@"; do
    local package=${spec%%=*} link=${spec#*=}
    # `go install` names a binary after the last path element, or the one before a
    # major-version suffix (go.etcd.io/etcd/server/v3 -> server).
    local binary=${package##*/}
    if [[ $binary =~ ^v[0-9]+$ ]]; then
      binary=${package%/*}
      binary=${binary##*/}
    fi
    [ -x "$dir/bin/$binary" ] || fail "$name" "$dir/bin/$binary is missing after the build"
    ln -sfn "$dir/bin/$binary" "$root/bin/$link"
  done
}

command -v go >/dev/null 2>&1 || fail "the test tools" "go is not on the PATH (Go 1.24 or later is needed)"
for tool in "${TOOLS[@]}"; do
  # shellcheck disable=SC2086
  set -- $tool
  if [ -n "${GO_TOOLS:-}" ] && [[ ",$GO_TOOLS," != *",$1,"* ]]; then
    continue
  fi
  build "$@"
done
