#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests, the
# network-namespace tests and the timer conformance tests (gateway/conformance), then a bounded fuzzing run (scripts/fuzz.sh; FUZZ_SECONDS=0 skips
# it). The netns tests need root; as another user they skip with a message (set
# ZTGW_NETNS_TESTS=required to make a skip a failure, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh
fi
# The pinned Go test tools (current wireguard-go, ...): built once per pin into target/go-tools.
scripts/go-tools.sh
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
scripts/fuzz.sh
