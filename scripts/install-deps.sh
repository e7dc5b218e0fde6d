#!/usr/bin/env bash
# Installs the system packages the test suite and the demo use, if any is missing:
# iproute2 (ip netns, veth), iputils-ping, wireguard-tools (wg), wireguard-go, iperf3, and
# prometheus (prometheus and promtool, for the alert-rule tests), and openssl (the real
# Kubernetes API server's service-account key in the tests), podman, buildah and runc (the
# image check, scripts/image.sh) with busybox-static (its probe inside the shell-less image).
set -euo pipefail

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
command -v wg >/dev/null 2>&1 || missing+=(wireguard-tools)
command -v wireguard-go >/dev/null 2>&1 || missing+=(wireguard-go)
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v runc >/dev/null 2>&1 || missing+=(runc)
if ! command -v busybox >/dev/null 2>&1 || ldd "$(command -v busybox)" >/dev/null 2>&1; then
  missing+=(busybox-static)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing packages: ${missing[*]} (install them as root, e.g. apt-get install --no-install-recommends ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packaged daemons (prometheus) must not start on install: the tests start their own, in
# network namespaces, and kill them. policy-rc.d answering 101 forbids starting services, for
# invoke-rc.d and deb-systemd-invoke alike; an existing policy is left alone.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
# Without --no-install-recommends wireguard-tools pulls in a kernel image.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# On a machine that boots with systemd, do not leave the packaged Prometheus enabled.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
  systemctl disable prometheus >/dev/null 2>&1 || true
fi
