#!/usr/bin/env bash
# Two clusters joined by ZT Gateway in network namespaces, on the embedded defaults (file
# key, directory of peers): prints the handshake, a ping across and the metrics, then cleans
# up. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "the demo creates network namespaces: run it as root (sudo $0)" >&2
  exit 1
fi
scripts/install-deps.sh
cargo build --workspace --bins --locked --quiet
exec target/debug/demo
