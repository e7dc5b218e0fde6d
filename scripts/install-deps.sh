#!/usr/bin/env bash
# Installs the system packages the test suite and the demo use, if any is missing:
# iproute2 (ip netns, veth), iputils-ping, wireguard-tools (wg), wireguard-go, iperf3.
set -euo pipefail

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
command -v wg >/dev/null 2>&1 || missing+=(wireguard-tools)
command -v wireguard-go >/dev/null 2>&1 || missing+=(wireguard-go)
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing packages: ${missing[*]} (install them as root, e.g. apt-get install --no-install-recommends ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Without --no-install-recommends wireguard-tools pulls in a kernel image.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
