#!/usr/bin/env bash
# Installs what Quark needs to build and test, and nothing else; a no-op when all is present.
#   scripts/ensure-deps.sh            system packages, node_modules, and a check for cargo
#   scripts/ensure-deps.sh --browser  also chromium (for the visualizer's browser tests)
#   scripts/ensure-deps.sh --qemu     also libvirtd, QEMU and the image tools (real guests; scripts/ensure-qemu.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# zookeeper: the real server tests and `quark up` run (QuorumPeerMain from /usr/share/java).
# libvirt-dev, pkg-config: the native addon links libvirt (its test:///default driver included).
# openssl: the API's HTTPS test makes a throwaway certificate with it.

DEBIAN_PACKAGES="zookeeper libvirt-dev pkg-config openssl"
BROWSER_PACKAGES="chromium"

say() { printf '[ensure-deps] %s\n' "$*"; }
die() { printf '[ensure-deps] error: %s\n' "$*" >&2; exit 1; }

want_browser=0
want_qemu=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    --qemu) want_qemu=1 ;;
    -h|--help) sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

packages="$DEBIAN_PACKAGES"
if [ "$want_browser" = 1 ]; then packages="$packages $BROWSER_PACKAGES"; fi

# --- Debian packages ------------------------------------------------------------------------
installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $packages; do
    installed "$p" || missing="$missing $p"
  done
  missing="${missing# }"
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      sudo=""
    elif command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      die "missing Debian packages: $missing; run as root or install sudo, or: apt-get install $missing"
    fi
    say "installing: $missing"
    $sudo apt-get update
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
  fi
else
  say "warning: not a Debian/apt system; make sure these are installed: $packages"
fi

# Real guests: packages and qemu.conf only; whoever runs guests starts the daemons (no systemd here).
if [ "$want_qemu" = 1 ]; then
  scripts/ensure-qemu.sh --install
fi

# --- Toolchains -----------------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node is missing: install Node.js 20 or newer"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js $(node -v) is too old: Quark needs 20 or newer"
command -v npm >/dev/null 2>&1 || die "npm is missing: it comes with Node.js"
command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ] \
  || die "java is missing: ZooKeeper needs a JRE (apt-get install default-jre-headless)"

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    die "cargo is installed in ~/.cargo/bin but not on PATH: run 'source \"\$HOME/.cargo/env\"' (or add ~/.cargo/bin to PATH)"
  fi
  die "cargo is missing: install Rust with rustup (https://rustup.rs): curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal; then: source \"\$HOME/.cargo/env\""
fi

# CI lints with clippy; rustup's minimal profile leaves it out.
if ! cargo clippy --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
  say "rustup component add clippy"
  rustup component add clippy
fi

# --- node_modules ---------------------------------------------------------------------------
# npm writes node_modules/.package-lock.json on every install; an older one means the lockfile moved.
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] \
  || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
fi
