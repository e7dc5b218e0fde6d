#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests, the
# network-namespace tests, the timer conformance tests (gateway/conformance) and the image
# check (scripts/image.sh), then a bounded fuzzing run (scripts/fuzz.sh; FUZZ_SECONDS=0 skips
# it). The netns tests need root; as another user they skip with a message (set
# ZTGW_NETNS_TESTS=required to make a skip a failure, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh
fi
# The pinned Go test tools (current wireguard-go, ...): built once per pin into target/go-tools.
# The ones the tests below start are built first. SPIRE, which no test starts yet (it is for
# the trust-plane tests), builds beside the suite at the lowest CPU priority, filling the
# time the netns tests spend waiting; the suite still fails if it cannot be built.
if [ -n "${GO_TOOLS:-}" ]; then
  scripts/go-tools.sh
  background_tools=""
else
  GO_TOOLS=wireguard-go,kubernetes,etcd scripts/go-tools.sh
  background_tools=spire
fi
background_pid=""
if [ -n "$background_tools" ]; then
  mkdir -p target/go-tools
  nice -n 19 env GO_TOOLS="$background_tools" scripts/go-tools.sh \
    >"target/go-tools/$background_tools.log" 2>&1 &
  background_pid=$!
  # On an early exit, stop the build with its `go` processes.
  trap '[ -z "$background_pid" ] || { pkill -TERM -P "$background_pid"; kill "$background_pid"; } 2>/dev/null || true' EXIT
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The netns tests start the gateway binary, so build every binary first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
# The timer conformance tests: a workspace of their own (boringtun's mock clock must not reach
# the gateway's binary), built in the main target directory so they reuse its dependencies.
conformance=gateway/conformance/Cargo.toml
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
cargo fmt --manifest-path "$conformance" -- --check
CARGO_TARGET_DIR=$target_dir cargo clippy --manifest-path "$conformance" --all-targets --locked -- -D warnings
CARGO_TARGET_DIR=$target_dir cargo test --manifest-path "$conformance" --locked
scripts/validate-manifests.sh
# The Dockerfile's runtime stage built and run with podman (root only; see the script).
if [ "$(id -u)" -eq 0 ]; then
  scripts/image.sh
else
  echo "image: skipped: needs root"
fi
scripts/fuzz.sh
if [ -n "$background_pid" ]; then
  pid=$background_pid
  background_pid=""
  if ! wait "$pid"; then
    cat "target/go-tools/$background_tools.log" >&2
    echo "go-tools: building $background_tools failed (log above)" >&2
    exit 1
  fi
  cat "target/go-tools/$background_tools.log"
fi
