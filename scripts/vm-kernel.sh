#!/usr/bin/env bash
# Fetches Debian's kernel (the linux-image-6.1.*-amd64 package that linux-image-amd64 depends
# on) for the VM tests, extracts it into target/vm/<package>_<version>/ and prepares its
# modules (depmod -b). Nothing is installed on the host and the host never loads a module.
# Installs qemu-system-x86 and busybox-static first when missing (as root). Cached by package
# version: a second run only prints the path. Prints, last, the directory
# holding boot/vmlinuz-<release> and lib/modules/<release>. Any failure is an error.
set -euo pipefail
cd "$(dirname "$0")/.."

# The VM itself: qemu and a static busybox for the initramfs, installed as root when missing
# (as scripts/install-deps.sh does for the netns tests).
missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "vm-kernel: missing packages: ${missing[*]} (apt-get install --no-install-recommends ${missing[*]})" >&2
    exit 1
  fi
  echo "vm-kernel: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
fi

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
vm_dir=$target_dir/vm
mkdir -p "$vm_dir"

# The versioned image package the meta package points at, e.g. linux-image-6.1.0-57-amd64.
package=$(apt-cache depends linux-image-amd64 2>/dev/null |
  sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -n1)
if [ -z "$package" ]; then
  echo "vm-kernel: linux-image-amd64 depends on no linux-image-6.1.*-amd64 package (apt-cache depends linux-image-amd64; run apt-get update?)" >&2
  exit 1
fi
version=$(apt-cache show --no-all-versions "$package" | sed -n 's/^Version: //p' | head -n1)
if [ -z "$version" ]; then
  echo "vm-kernel: no version known for $package" >&2
  exit 1
fi
release=${package#linux-image-}
out=$vm_dir/${package}_${version}
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$vm_dir/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "vm-kernel: fetching $package $version" >&2
if ! (cd "$work" && apt-get download "$package=$version" >&2); then
  echo "vm-kernel: apt-get download $package=$version failed" >&2
  exit 1
fi
deb=$(find "$work" -maxdepth 1 -name '*.deb' | head -n1)
[ -n "$deb" ] || { echo "vm-kernel: apt-get download left no .deb in $work" >&2; exit 1; }
mkdir "$work/root"
dpkg-deb -x "$deb" "$work/root"
[ -f "$work/root/boot/vmlinuz-$release" ] || {
  echo "vm-kernel: $deb holds no boot/vmlinuz-$release" >&2
  exit 1
}
[ -d "$work/root/lib/modules/$release" ] || {
  echo "vm-kernel: $deb holds no lib/modules/$release" >&2
  exit 1
}
# Keep only what the guest uses: the kernel, its configuration and the modules.
rm -rf "$work/root/usr" "$work/root/etc"
depmod_bin=$(command -v depmod || echo /usr/sbin/depmod)
if [ -x "$depmod_bin" ]; then
  "$depmod_bin" -b "$work/root" "$release"
else
  # No kmod on this machine: busybox's depmod writes the modules.dep its modprobe reads.
  busybox depmod -b "$work/root" "$release"
fi
[ -s "$work/root/lib/modules/$release/modules.dep" ] || {
  echo "vm-kernel: depmod wrote no modules.dep for $release" >&2
  exit 1
}
rm -rf "$out"
mv "$work/root" "$out"
touch "$out/.complete"
echo "vm-kernel: $package $version ready in $out" >&2
echo "$out"
