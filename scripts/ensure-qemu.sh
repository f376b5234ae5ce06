#!/usr/bin/env bash
# Makes this machine able to run real QEMU guests through libvirtd, and nothing more; idempotent.
#   scripts/ensure-qemu.sh             install what is missing, start virtlogd and libvirtd if not running
#   scripts/ensure-qemu.sh --install   only install the packages (CI does this before the tests)
#   scripts/ensure-qemu.sh --stop      stop the daemons this script started (by the pids it recorded)
#   scripts/ensure-qemu.sh --status    print which daemons run, and which of them this script started
# There is no systemd on the machines Quark is tested on, so the daemons are started by hand
# (virtlogd first: starting a domain fails without its socket). The pids of the daemons this
# script started are kept in $QUARK_QEMU_STATE (default /run/quark-qemu), so --stop ends exactly those.
set -euo pipefail

# libvirt and QEMU; passt for user-mode networking with port forwards on 127.0.0.1;
# syslinux, mtools and dosfstools for the tiny boot image and the NoCloud seeds (no loop device needed).
QEMU_PACKAGES="libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils passt"
IMAGE_PACKAGES="syslinux syslinux-common mtools dosfstools"
STATE="${QUARK_QEMU_STATE:-/run/quark-qemu}"
QEMU_CONF=/etc/libvirt/qemu.conf

say() { printf '[ensure-qemu] %s\n' "$*"; }
die() { printf '[ensure-qemu] error: %s\n' "$*" >&2; exit 1; }

mode=ensure
for arg in "$@"; do
  case "$arg" in
    --install) mode=install ;;
    --stop) mode=stop ;;
    --status) mode=status ;;
    -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo=""; fi
as_root() {
  if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then $sudo "$@"; else die "needs root (or sudo) for: $*"; fi
}

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

install_packages() {
  command -v apt-get >/dev/null 2>&1 || die "not a Debian/apt system; install these by hand: $QEMU_PACKAGES $IMAGE_PACKAGES"
  local missing="" p
  for p in $QEMU_PACKAGES $IMAGE_PACKAGES; do installed "$p" || missing="$missing $p"; done
  missing="${missing# }"
  [ -z "$missing" ] && return 0
  say "installing: $missing"
  as_root apt-get update -q
  # No systemd here: keep the packages' maintainer scripts from trying to start services.
  # shellcheck disable=SC2086 # the package list is split on purpose
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

# qemu.conf: guests run as root, so QEMU can open disks, seeds and console logs wherever the
# compute keeps them (a libvirtd without it was seen hanging here right after install).
configure_qemu() {
  [ -f "$QEMU_CONF" ] || die "$QEMU_CONF is missing after install"
  local changed=0 key
  for key in user group; do
    if ! grep -Eq "^[[:space:]]*${key}[[:space:]]*=" "$QEMU_CONF"; then
      printf '%s = "root"\n' "$key" | as_root tee -a "$QEMU_CONF" >/dev/null
      changed=1
    fi
  done
  [ "$changed" = 1 ] && say "set user/group = \"root\" in $QEMU_CONF"
  return 0
}

# The pid of a running daemon, from its pid file, if that pid is alive and is that daemon.
running_pid() {
  local name="$1" pidfile="/run/$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$name" || return 1
  printf '%s\n' "$pid"
}

wait_for() {
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
  say "$what ready"
}

start_daemon() {
  local name="$1" pid
  if pid="$(running_pid "$name")"; then
    say "$name already running (pid $pid)"
    return 0
  fi
  as_root mkdir -p "$STATE"
  as_root "$name" -d
  wait_for "$name pid file" 20 running_pid "$name" || die "$name did not start (see its messages above)"
  pid="$(running_pid "$name")"
  printf '%s\n' "$pid" | as_root tee "$STATE/$name.pid" >/dev/null
  say "started $name (pid $pid)"
}

stop_started() {
  local name pid
  # libvirtd first: it holds virtlogd's connections.
  for name in libvirtd virtlogd; do
    [ -f "$STATE/$name.pid" ] || continue
    pid="$(cat "$STATE/$name.pid")"
    if [ "$(running_pid "$name" || true)" = "$pid" ]; then
      as_root kill -TERM "$pid"
      local deadline=$((SECONDS + 15))
      while [ -d "/proc/$pid" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
      [ -d "/proc/$pid" ] && as_root kill -KILL "$pid"
      say "stopped $name (pid $pid)"
    else
      say "$name (pid $pid) is no longer running"
    fi
    as_root rm -f "$STATE/$name.pid"
  done
}

status() {
  local name pid started
  for name in virtlogd libvirtd; do
    started="$(cat "$STATE/$name.pid" 2>/dev/null || true)"
    if pid="$(running_pid "$name")"; then
      printf '%s running (pid %s)%s\n' "$name" "$pid" "$([ "$started" = "$pid" ] && printf ', started by ensure-qemu')"
    else
      printf '%s not running\n' "$name"
    fi
  done
}

case "$mode" in
  install) install_packages; configure_qemu ;;
  stop) stop_started ;;
  status) status ;;
  ensure)
    install_packages
    configure_qemu
    start_daemon virtlogd
    start_daemon libvirtd
    wait_for "libvirtd (qemu:///system)" 60 virsh -c qemu:///system version \
      || die "libvirtd does not answer on qemu:///system"
    ;;
esac
