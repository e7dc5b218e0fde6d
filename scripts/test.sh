#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests, and the
# network-namespace tests, then a bounded fuzzing run (scripts/fuzz.sh; FUZZ_SECONDS=0 skips
# it). The netns tests need root; as another user they skip with a message (set
# ZTGW_NETNS_TESTS=required to make a skip a failure, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The netns tests start the gateway binary, so build every binary first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
scripts/validate-manifests.sh
scripts/fuzz.sh
