#!/usr/bin/env bash
# Builds Quark's tiny bootable guest image from Debian packages and prints its directory.
#   scripts/build-tiny-image.sh [--out DIR]     (default DIR: .quark/images)
# The result, DIR/tiny-<key>/, holds tiny.qcow2 (the bootable disk), vmlinuz and initrd.gz (the
# same kernel and init for direct kernel boot, which the accelerator probe uses) and inputs.txt.
# <key> is a hash of the inputs (package versions, this script), so a second run is a no-op.
#
# What is inside: Debian's cloud kernel; an initramfs of busybox-static with the virtio, vfat,
# iso9660 and ACPI-button modules the kernel builds as modules; an init that prints a marker on the
# serial console, mounts the NoCloud seed (a block device labelled CIDATA), takes the hostname from
# its meta-data, brings eth0 up by DHCP when there is one, runs the user-data as a shell script and
# prints its output, then waits; and busybox acpid, which on the ACPI power button prints a marker
# and powers off. The disk is one FAT filesystem (no partition table) with syslinux in its boot
# sector: everything is made in files, with mtools, so no loop device or mount is needed.
# Needs: apt-get (the package lists), syslinux, syslinux-common, mtools, dosfstools, qemu-utils
# (scripts/ensure-qemu.sh installs them). Nothing but Debian packages is downloaded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$ROOT/.quark/images"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) printf 'build-tiny-image: unknown argument %s\n' "$1" >&2; exit 2 ;;
  esac
done

say() { printf '[tiny-image] %s\n' "$*" >&2; }
die() { printf '[tiny-image] error: %s\n' "$*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg-deb mkfs.vfat mcopy syslinux qemu-img gzip sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/ensure-qemu.sh installs what this needs)"
done

# The modules the init loads; their dependencies come along (from modules.dep).
MODULES="virtio_pci virtio_blk virtio_net vfat nls_cp437 nls_ascii isofs button evdev"

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'; }

# The cloud kernel's meta-package names the versioned image package it depends on.
kernel_pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')"
if [ -z "$kernel_pkg" ] || [ -z "$(candidate busybox-static)" ] || [ "$(candidate busybox-static)" = "(none)" ]; then
  say "apt has no lists for the kernel or busybox-static; running apt-get update"
  if [ "$(id -u)" = 0 ]; then apt-get update -q >&2; else sudo apt-get update -q >&2; fi
  kernel_pkg="$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')"
fi
[ -n "$kernel_pkg" ] || die "no linux-image-cloud-amd64 in apt's lists (amd64 Debian only)"
kernel_ver="$(candidate "$kernel_pkg")"
busybox_ver="$(candidate busybox-static)"
syslinux_ver="$(dpkg-query -W -f='${Version}' syslinux-common 2>/dev/null || true)"
script_sum="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-64)"
inputs="$(printf 'kernel %s %s\nbusybox-static %s\nsyslinux-common %s\nbuilder %s\n' \
  "$kernel_pkg" "$kernel_ver" "$busybox_ver" "$syslinux_ver" "$script_sum")"
key="$(printf '%s' "$inputs" | sha256sum | cut -c1-16)"
dest="$out/tiny-$key"
if [ -f "$dest/tiny.qcow2" ] && [ -f "$dest/initrd.gz" ] && [ -f "$dest/vmlinuz" ]; then
  printf '%s\n' "$dest"
  exit 0
fi

mkdir -p "$out"
work="$(mktemp -d "$out/.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
started=$SECONDS

say "downloading $kernel_pkg $kernel_ver and busybox-static $busybox_ver"
# apt's download sandbox user cannot write into a root-owned temporary directory: run it as us.
sandbox=()
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
apt-get download -q "${sandbox[@]}" "$kernel_pkg" busybox-static >&2
dpkg-deb -x "$kernel_pkg"_*.deb kernel
dpkg-deb -x busybox-static_*.deb busybox
bb="$work/busybox/bin/busybox"
kver="$(ls kernel/lib/modules)"
[ -n "$kver" ] && [ -f "kernel/boot/vmlinuz-$kver" ] || die "the kernel package has no vmlinuz"

# --- initramfs ------------------------------------------------------------------------------
say "initramfs: busybox, the init, modules ($MODULES)"
"$bb" depmod -b "$work/kernel" "$kver"
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,sbin,etc/acpi/PWRF,proc,sys,dev,tmp,run,seed,var/log,usr/share/udhcpc,lib/modules/"$kver"}
cp "$bb" "$rootfs/bin/busybox"
moddir="kernel/lib/modules/$kver"
# The modules and, transitively, what modules.dep says they need.
want=""
for m in $MODULES; do
  line="$(grep -E "(^|/)$m\.ko:" "$moddir/modules.dep")" || die "module $m is not in $kernel_pkg"
  want="$want ${line%%:*} ${line#*:}"
done
for rel in $(printf '%s\n' $want | sort -u); do
  mkdir -p "$rootfs/lib/modules/$kver/$(dirname "$rel")"
  cp "$moddir/$rel" "$rootfs/lib/modules/$kver/$rel"
done
cp "$moddir/modules.dep" "$moddir/modules.order" "$moddir/modules.builtin" "$rootfs/lib/modules/$kver/"

cat >"$rootfs/init" <<'INIT'
#!/bin/busybox sh
# Quark's tiny guest. Markers on the console: QUARK_GUEST_UP (userspace reached),
# QUARK_USER_DATA_BEGIN/END (the seed's user-data ran), QUARK_ACPI_POWER_BUTTON (graceful stop).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t devtmpfs dev /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
exec </dev/console >/dev/console 2>&1
echo "QUARK_GUEST_UP uptime=$(cut -d' ' -f1 /proc/uptime) boot_id=$(cat /proc/sys/kernel/random/boot_id)"
for m in virtio_pci virtio_blk virtio_net vfat nls_cp437 nls_ascii isofs button evdev; do
  modprobe "$m" 2>/dev/null || echo "quark-guest: could not load $m"
done
acpid -c /etc/acpi -l /var/log/acpid.log
# The NoCloud seed: a block device labelled CIDATA (vfat or iso9660); virtio disks may take a moment.
seed=""
for _ in $(seq 1 50); do
  seed="$(findfs LABEL=CIDATA 2>/dev/null || findfs LABEL=cidata 2>/dev/null || true)"
  [ -n "$seed" ] && break
  sleep 0.1
done
if [ -n "$seed" ] && mount -o ro "$seed" /seed; then
  iid="$(sed -n 's/^instance-id: *//p' /seed/meta-data 2>/dev/null | head -n1)"
  host="$(sed -n 's/^local-hostname: *//p' /seed/meta-data 2>/dev/null | head -n1)"
  [ -n "$host" ] && hostname "$host"
  echo "quark-guest: seed $seed instance-id=${iid:-?} hostname=$(hostname)"
else
  echo "quark-guest: no NoCloud seed"
fi
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  udhcpc -i eth0 -q -n -t 5 -T 1 -s /usr/share/udhcpc/default.script >/dev/null 2>&1 \
    && echo "quark-guest: eth0 $(ip -4 -o addr show eth0 | awk '{print $4}')" \
    || echo "quark-guest: eth0 got no DHCP answer"
fi
if [ -f /seed/user-data ]; then
  if head -n1 /seed/user-data | grep -q '^#cloud-config'; then
    echo "quark-guest: user-data is #cloud-config; this image runs only scripts"
  else
    echo "QUARK_USER_DATA_BEGIN"
    cp /seed/user-data /tmp/user-data && chmod +x /tmp/user-data
    if head -n1 /tmp/user-data | grep -q '^#!'; then /tmp/user-data; else sh /tmp/user-data; fi
    echo "QUARK_USER_DATA_END rc=$?"
  fi
fi
while :; do sleep 3600; done
INIT
chmod 755 "$rootfs/init"

# busybox acpid maps the power button to PWRF/00000080 and runs what is there.
cat >"$rootfs/etc/acpi/PWRF/00000080" <<'PWRF'
#!/bin/sh
echo "QUARK_ACPI_POWER_BUTTON uptime=$(cut -d' ' -f1 /proc/uptime): powering off" >/dev/console
sync
poweroff -f
PWRF
chmod 755 "$rootfs/etc/acpi/PWRF/00000080"

cat >"$rootfs/usr/share/udhcpc/default.script" <<'DHCP'
#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    ;;
esac
exit 0
DHCP
chmod 755 "$rootfs/usr/share/udhcpc/default.script"

(cd "$rootfs" && find . | "$bb" cpio -o -H newc 2>/dev/null) | gzip -9 >initrd.gz
cp "kernel/boot/vmlinuz-$kver" vmlinuz

# --- the disk: one FAT filesystem with syslinux in its boot sector -------------------------
say "disk: FAT + syslinux"
cat >syslinux.cfg <<'CFG'
DEFAULT quark
PROMPT 0
TIMEOUT 0
LABEL quark
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0 quiet edd=off panic=-1
CFG
size_kb=$(( ( $(stat -c %s vmlinuz) + $(stat -c %s initrd.gz) ) / 1024 + 4096 ))
mkfs.vfat -C -n QUARKBOOT disk.raw "$size_kb" >/dev/null
syslinux --install disk.raw
MTOOLS_SKIP_CHECK=1 mcopy -i disk.raw vmlinuz initrd.gz syslinux.cfg ::/
qemu-img convert -q -f raw -O qcow2 disk.raw tiny.qcow2

mkdir -p "$dest.tmp"
mv tiny.qcow2 vmlinuz initrd.gz "$dest.tmp/"
printf '%s\nkernel-release %s\n' "$inputs" "$kver" >"$dest.tmp/inputs.txt"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
say "built $dest in $((SECONDS - started)) s ($(du -k "$dest/tiny.qcow2" | cut -f1) KiB qcow2)"
printf '%s\n' "$dest"
