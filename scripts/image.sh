#!/usr/bin/env bash
# Builds the Dockerfile's runtime stage here, without a registry, and checks the image:
#
# 1. A base image equivalent to the Dockerfile's `gcr.io/distroless/cc-debian12:nonroot` is made
#    from Debian's own packages (libc6, libgcc-s1, ca-certificates, netbase, base-files; no shell,
#    no package manager; users root, nobody and nonroot 65532), imported and tagged with that
#    name in a private image store under target/image/.
# 2. `buildah build` builds the Dockerfile with its `build` stage replaced by the release
#    binaries (`--build-context build=...`), so only the runtime stage runs.
# 3. The image is run with podman: `gateway --version`; as its declared user (65532, no
#    capabilities); and as the Deployment runs it (uid 0, every capability dropped but
#    NET_ADMIN, no privilege escalation, read-only root filesystem, /dev/net/tun), where the
#    gateway brings its tunnel up and the process is inspected from the host.
#
# Needs root, podman, buildah and runc (Debian's), and busybox-static (a probe bound into the
# shell-less image). ZTGW_IMAGE_TESTS=required makes a missing tool a failure (as CI does);
# otherwise the script skips with a message. BINARIES=DIR uses DIR/usr/local/bin/{gateway,peerctl}
# instead of building the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  if [ "${ZTGW_IMAGE_TESTS:-}" = required ]; then
    echo "image: FAILED: $1 (ZTGW_IMAGE_TESTS=required)" >&2
    exit 1
  fi
  echo "image: skipped: $1"
  exit 0
}
fail() {
  echo "image: FAILED: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || skip "needs root (podman with the vfs store, /dev/net/tun)"
for tool in podman buildah runc busybox apt-get dpkg-deb; do
  command -v "$tool" >/dev/null 2>&1 ||
    skip "$tool is missing (apt-get install --no-install-recommends podman buildah runc busybox-static)"
done
busybox_bin=$(command -v busybox)
# The probe runs inside the image, which has no libraries beyond libc: it must be static.
if ldd "$busybox_bin" >/dev/null 2>&1; then
  skip "$busybox_bin is not static (install busybox-static)"
fi

work=$PWD/target/image
mkdir -p "$work"
# runc, not crun: crun refuses this machine's hybrid cgroup layout. The rlimits are set
# explicitly, below the sandbox's hard limits: podman's defaults (RLIMIT_NOFILE 1048576) need
# CAP_SYS_RESOURCE, which a root shell in a sandbox may not hold.
store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs --runtime runc)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --cgroup-manager cgroupfs --events-backend none)
base_tag=gcr.io/distroless/cc-debian12:nonroot
image=localhost/zt-gateway:test
started=$(date +%s)

# --- 1. The base image -----------------------------------------------------------------------
packages=(base-files netbase libc6 libgcc-s1 ca-certificates)
versions=$(apt-cache policy "${packages[@]}" 2>/dev/null | awk '/^[^ ]/ {p=$1} /Candidate:/ {print p $2}' | tr -d '\n')
if [ -z "$versions" ] || [[ "$versions" == *"(none)"* ]]; then
  apt-get update -qq
  versions=$(apt-cache policy "${packages[@]}" | awk '/^[^ ]/ {p=$1} /Candidate:/ {print p $2}' | tr -d '\n')
fi
stamp="$work/base.stamp"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$versions" ] ||
  ! podman "${store[@]}" image exists "$base_tag"; then
  rm -rf "$work/debs" "$work/rootfs"
  mkdir -p "$work/debs" "$work/rootfs"
  (cd "$work/debs" && apt-get download -qq -o APT::Sandbox::User=root "${packages[@]}") ||
    fail "apt-get download ${packages[*]} failed"
  for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$work/rootfs"
  done
  root=$work/rootfs
  # What the packages' maintainer scripts would have made, and what distroless adds.
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian"
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot" "$root/root"
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  chown 65532:65532 "$root/home/nonroot"
  find "$root/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z |
    xargs -0 cat >"$root/etc/ssl/certs/ca-certificates.crt"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
  # No shell, no package manager: the base-files package ships neither, nor do the others.
  [ ! -e "$root/bin/sh" ] && [ ! -e "$root/usr/bin/sh" ] || fail "the base holds a shell"
  tar -C "$root" --numeric-owner -cf "$work/base.tar" .
  podman "${store[@]}" import --quiet \
    --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
    "$work/base.tar" "$base_tag" >/dev/null
  echo "$versions" >"$stamp"
  rm -rf "$work/debs" "$work/rootfs" "$work/base.tar"
  echo "image: base $base_tag made from ${packages[*]}"
fi

# --- 2. The runtime stage from the release binaries -------------------------------------------
if [ -n "${BINARIES:-}" ]; then
  binaries=$BINARIES
else
  cargo build --release --locked -p gateway -p peerctl
  binaries=$work/binaries
  rm -rf "$binaries"
  install -D -m 0755 target/release/gateway "$binaries/out/usr/local/bin/gateway"
  install -D -m 0755 target/release/peerctl "$binaries/out/usr/local/bin/peerctl"
fi
[ -x "$binaries/out/usr/local/bin/gateway" ] || fail "no gateway binary under $binaries/out"
buildah "${store[@]}" build --quiet --pull=never --layers=false \
  --build-context "build=$binaries" -t "$image" . >/dev/null ||
  fail "buildah build of the Dockerfile's runtime stage failed"
echo "image: built $image ($(podman "${store[@]}" image inspect --format '{{.Size}}' "$image") bytes)"

# --- 3. Checks ---------------------------------------------------------------------------------
run=(podman "${store[@]}" run --rm --network none "${limits[@]}")

version=$("${run[@]}" "$image" --version) || fail "gateway --version did not run"
[[ "$version" == gateway\ * ]] || fail "gateway --version printed an unexpected line"
echo "image: $version"

declared=$(podman "${store[@]}" image inspect --format '{{.Config.User}}' "$image")
[ "$declared" = 65532:65532 ] || fail "the image declares user '$declared', not 65532:65532"
# busybox picks its applet from the name it is called by, so it keeps its own name.
probe=(-v "$busybox_bin:/busybox:ro" --entrypoint /busybox)
as_declared=$("${run[@]}" "${probe[@]}" "$image" sh -c 'id -u; id -g; grep -E "^Cap(Prm|Eff|Amb):" /proc/self/status')
[ "$(sed -n 1p <<<"$as_declared")" = 65532 ] || fail "the image does not run as uid 65532"
[ "$(sed -n 2p <<<"$as_declared")" = 65532 ] || fail "the image does not run as gid 65532"
grep -qE '^CapEff:\s+0+$' <<<"$as_declared" || fail "the declared user holds capabilities"
echo "image: runs as 65532:65532 with no capabilities"

# No file of the image grants privileges by itself: no setuid/setgid bit, no file capability.
privileged=$("${run[@]}" "${probe[@]}" --user 0 "$image" sh -c \
  'find / -xdev \( -perm -4000 -o -perm -2000 \) -type f 2>/dev/null')
[ -z "$privileged" ] || fail "setuid or setgid files in the image: $privileged"
mount_dir=$(podman "${store[@]}" image mount "$image")
if command -v getcap >/dev/null 2>&1; then
  caps=$(getcap -r "$mount_dir" 2>/dev/null || true)
  [ -z "$caps" ] || fail "files with capabilities in the image: $caps"
fi
podman "${store[@]}" image unmount "$image" >/dev/null
[ ! -e "$mount_dir/bin/sh" ] || fail "the image holds a shell"

# As the Deployment runs it (manifests/base/deployment.yaml's securityContext and volumes).
conf=$work/conf
rm -rf "$conf"
mkdir -p "$conf/peers"
cat >"$conf/gateway.toml" <<'EOF'
[cluster]
name = "image-test"

[interface]
name = "wg0"
address = "10.99.0.1/24"
listen_port = 51820

[key]
source = "file"
path = "/etc/zt-gateway/private.key"

[peers]
source = "directory"
path = "/etc/zt-gateway/peers"

[http]
listen = "127.0.0.1:8055"
EOF
wg genkey >"$conf/private.key" 2>/dev/null || head -c 32 /dev/urandom | base64 >"$conf/private.key"
chmod 600 "$conf/private.key"
name=ztgw-image-test
podman "${store[@]}" rm -f "$name" >/dev/null 2>&1 || true
podman "${store[@]}" run -d --name "$name" --network none "${limits[@]}" \
  --user 0 --cap-drop all --cap-add NET_ADMIN --security-opt no-new-privileges --read-only \
  --device /dev/net/tun \
  --tmpfs /var/run/wireguard:size=1m --tmpfs /run/zt-gateway:size=1m \
  --tmpfs /var/lib/zt-gateway:size=1m,mode=0700 \
  -v "$conf:/etc/zt-gateway:ro" \
  "$image" --config /etc/zt-gateway/gateway.toml >/dev/null ||
  fail "the gateway container did not start"
cleanup() { podman "${store[@]}" rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

pid=""
ready=""
for _ in $(seq 1 60); do
  running=$(podman "${store[@]}" inspect --format '{{.State.Running}}' "$name" 2>/dev/null || true)
  [ "$running" = true ] || break
  pid=$(podman "${store[@]}" inspect --format '{{.State.Pid}}' "$name" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$pid" != 0 ] &&
    nsenter -t "$pid" -n ip link show wg0 >/dev/null 2>&1 &&
    nsenter -t "$pid" -n bash -c 'exec 3<>/dev/tcp/127.0.0.1/8055 &&
      printf "GET /readyz HTTP/1.0\r\n\r\n" >&3 && head -1 <&3' 2>/dev/null | grep -q ' 200'; then
    ready=yes
    break
  fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  podman "${store[@]}" logs "$name" 2>&1 | tail -20 >&2
  fail "the gateway did not bring wg0 up and answer /readyz within 30 s as the Deployment runs it"
fi
status=$(cat "/proc/$pid/status")
uid=$(awk '/^Uid:/ {print $2}' <<<"$status")
cap_eff=$(awk '/^CapEff:/ {print $2}' <<<"$status")
cap_bnd=$(awk '/^CapBnd:/ {print $2}' <<<"$status")
cap_amb=$(awk '/^CapAmb:/ {print $2}' <<<"$status")
nnp=$(awk '/^NoNewPrivs:/ {print $2}' <<<"$status")
# NET_ADMIN is capability 12: the mask 0x1000.
[ "$uid" = 0 ] || fail "the gateway runs as uid $uid, not 0 as the Deployment sets"
[ "$cap_eff" = 0000000000001000 ] || fail "effective capabilities $cap_eff, not NET_ADMIN alone"
[ "$cap_bnd" = 0000000000001000 ] || fail "bounding set $cap_bnd, not NET_ADMIN alone"
[ "$cap_amb" = 0000000000000000 ] || fail "ambient capabilities $cap_amb"
[ "$nnp" = 1 ] || fail "no_new_privs is not set"
if podman "${store[@]}" logs "$name" 2>&1 | grep -qF -f <(tr -d '\n' <"$conf/private.key"); then
  fail "the private key appears in the container's log"
fi
podman "${store[@]}" stop -t 10 "$name" >/dev/null
code=$(podman "${store[@]}" inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || fail "the gateway exited with $code on SIGTERM"
echo "image: as the Deployment runs it: uid 0, CapEff=CapBnd=NET_ADMIN, no ambient, no_new_privs; wg0 up, /readyz 200, clean stop"
echo "image: passed in $(($(date +%s) - started)) s"
