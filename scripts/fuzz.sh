#!/usr/bin/env bash
# Runs every fuzz target of the native data plane (gateway/fuzz) for a bounded time, starting
# from the committed seeds, and fails if one finds a crash: the input that crashed is left in
# gateway/fuzz/artifacts/<target>/ and cargo-fuzz prints the command that reproduces it.
#
#   FUZZ_SECONDS   time per target (default 30; 0 skips fuzzing)
#   FUZZ_TARGETS   targets to run, space-separated (default: all)
#
# Installs cargo-fuzz if it is missing. It passes rustc flags that only nightly accepts;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. The build uses the release profile
# (-O), where gateway/fuzz/Cargo.toml turns on debug assertions and overflow checks for the
# project's code and boringtun, and no sanitizer: the project has no unsafe code, so
# AddressSanitizer would only make the build and the runs slower.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_DIR=gateway/fuzz
export RUSTC_BOOTSTRAP=1

if [ "$FUZZ_SECONDS" = 0 ]; then
  echo "fuzzing skipped (FUZZ_SECONDS=0)"
  exit 0
fi

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

cargo fmt --manifest-path "$FUZZ_DIR/Cargo.toml" -- --check

flags=(--fuzz-dir "$FUZZ_DIR" -O --sanitizer none)
targets="${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir "$FUZZ_DIR")}"

start=$SECONDS
# cargo-fuzz has no --locked; a stale Cargo.lock fails here instead.
cargo metadata --manifest-path "$FUZZ_DIR/Cargo.toml" --locked --format-version 1 >/dev/null
# The scenarios' own tests (invariants each target checks, shown failing on known attacks).
cargo test --manifest-path "$FUZZ_DIR/Cargo.toml" --lib --locked
cargo fuzz build "${flags[@]}"
echo "fuzz build: $((SECONDS - start)) s"

for target in $targets; do
  corpus="$FUZZ_DIR/corpus/$target"
  mkdir -p "$corpus"
  args=(-max_total_time="$FUZZ_SECONDS" -timeout=25 -print_final_stats=1)
  if [ -f "$FUZZ_DIR/$target.dict" ]; then
    args+=(-dict="$FUZZ_DIR/$target.dict")
  fi
  echo "fuzzing $target for ${FUZZ_SECONDS} s"
  # New inputs go to the first corpus directory (ignored by git), never to the seeds. The
  # progress lines and the suggested dictionary are left out of the log.
  cargo fuzz run "${flags[@]}" "$target" "$corpus" "$FUZZ_DIR/seeds/$target" -- "${args[@]}" \
    2>&1 | { grep -v -e '^#[0-9]*[[:space:]]*\(NEW\|REDUCE\|pulse\)' -e '^"' -e '^###### ' || true; }
done
echo "fuzzing: $((SECONDS - start)) s in all"
