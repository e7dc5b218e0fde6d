#!/usr/bin/env bash
# Runs the data-plane benchmark (netns-tests/src/bin/bench.rs), as root:
#  1. installs what it needs when missing: the test suite's apt packages (scripts/install-deps.sh:
#     iperf3, wireguard-go, wireguard-tools, iproute2, iputils-ping), and boringtun-cli (pinned
#     below) from crates.io with `cargo install --locked` into <target dir>/bench-tools;
#  2. builds the previous gateway (PREVIOUS_COMMIT below, the last one whose userspace backend
#     was boringtun's device) once into <target dir>/bench-tools, unless
#     ZTGW_PREVIOUS_GATEWAY_BIN is set, and the release binaries;
#  3. builds today's wireguard-go (scripts/go-tools.sh, into target/go-tools; the
#     wireguard-go-current plane, which the bench refuses unless its offloads are on);
#  4. runs target/release/bench with ZTGW_BORINGTUN_BIN pointing at that boringtun-cli.
# BENCH_REPS, BENCH_SECONDS and BENCH_PLANES pass through to the bench (see the README). A
# ZTGW_BORINGTUN_BIN already set is used as it is, and nothing is installed for it. When
# boringtun-cli cannot be installed, the bench runs without that plane and says so. Only the
# report goes to stdout (`scripts/bench.sh > report.md`); progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

BORINGTUN_VERSION=0.7.1
# The last commit whose `userspace` backend was boringtun's device (the `previous` plane).
PREVIOUS_COMMIT=d12d76d

if [ "$(id -u)" -ne 0 ]; then
  echo "the benchmark creates network namespaces: run it as root (sudo scripts/bench.sh)" >&2
  exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not on the PATH (sudo resets it: try sudo env \"PATH=\$PATH\" scripts/bench.sh)" >&2
  exit 1
fi

# The packages are the test suite's (iproute2, iputils-ping, wireguard-tools, wireguard-go,
# iperf3, and prometheus, which the bench does not use).
scripts/install-deps.sh >&2

target_dir=${CARGO_TARGET_DIR:-target}
if [ -z "${ZTGW_BORINGTUN_BIN:-}" ]; then
  tools=$target_dir/bench-tools
  boringtun=$tools/bin/boringtun-cli
  if [ "$("$boringtun" --version 2>/dev/null || true)" != "boringtun $BORINGTUN_VERSION" ]; then
    echo "installing boringtun-cli $BORINGTUN_VERSION into $tools (a release build: minutes)" >&2
    started=$SECONDS
    if cargo install boringtun-cli --locked --force --version "$BORINGTUN_VERSION" \
      --root "$tools" --target-dir "$tools/build" >&2; then
      echo "boringtun-cli $BORINGTUN_VERSION installed in $((SECONDS - started)) s" >&2
    else
      echo "warning: boringtun-cli could not be installed; the bench will skip it" >&2
    fi
    rm -rf "$tools/build"
  fi
  if [ -x "$boringtun" ]; then
    ZTGW_BORINGTUN_BIN=$(realpath "$boringtun")
    export ZTGW_BORINGTUN_BIN
  fi
fi

# The previous userspace plane: the last build whose userspace backend embedded boringtun's
# device, built once from that commit into the tools directory.
if [ -z "${ZTGW_PREVIOUS_GATEWAY_BIN:-}" ]; then
  previous_dir=$target_dir/bench-tools/previous-$PREVIOUS_COMMIT
  if [ ! -x "$previous_dir/gateway" ]; then
    if git cat-file -e "$PREVIOUS_COMMIT^{commit}" 2>/dev/null; then
      echo "building the previous gateway ($PREVIOUS_COMMIT) into $previous_dir (minutes)" >&2
      rm -rf "$previous_dir/src"
      mkdir -p "$previous_dir/src"
      git archive "$PREVIOUS_COMMIT" | tar -x -C "$previous_dir/src"
      if cargo build --release --locked -p gateway --bin gateway \
        --manifest-path "$previous_dir/src/Cargo.toml" --target-dir "$previous_dir/build" >&2; then
        cp "$previous_dir/build/release/gateway" "$previous_dir/gateway"
      else
        echo "warning: the previous gateway did not build; the bench will skip it" >&2
      fi
      rm -rf "$previous_dir/src" "$previous_dir/build"
    else
      echo "warning: commit $PREVIOUS_COMMIT is not in this clone; the bench skips the previous plane" >&2
    fi
  fi
  if [ -x "$previous_dir/gateway" ]; then
    ZTGW_PREVIOUS_GATEWAY_BIN=$(realpath "$previous_dir/gateway")
    export ZTGW_PREVIOUS_GATEWAY_BIN
  fi
fi

# Today's wireguard-go for the wireguard-go-current plane; a build that fails stops here.
if [ -z "${ZTGW_WIREGUARD_GO_CURRENT_BIN:-}" ]; then
  GO_TOOLS=wireguard-go scripts/go-tools.sh >&2
fi

cargo build --release --locked --bins >&2
exec "$target_dir/release/bench"
