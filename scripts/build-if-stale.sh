#!/usr/bin/env bash
# Builds only what is out of date: the native addon when native/*.node is missing or older than
# the Rust sources, then the TypeScript when dist/ is missing or older than what it compiles.
#   scripts/build-if-stale.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '[build] %s\n' "$*"; }

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) printf '[build] unknown argument: %s\n' "$1" >&2; exit 2 ;;
esac

# Prints the first of the given paths (files or directories, searched recursively) newer than
# the reference file; prints nothing if none is. Paths that do not exist are skipped.
newer_than() {
  local ref="$1"; shift
  local existing=()
  local p
  for p in "$@"; do [ -e "$p" ] && existing+=("$p"); done
  [ "${#existing[@]}" -gt 0 ] || return 0
  # Test files are not compiled (vitest transpiles them), so editing one needs no build.
  find "${existing[@]}" -newer "$ref" ! -name '*.test.ts' -print -quit
}

# --- native addon ---------------------------------------------------------------------------
native_sources=(crates Cargo.toml Cargo.lock)
addon="$(ls -t native/*.node 2>/dev/null | head -n 1 || true)"
reason=""
if [ "$force" = 1 ]; then
  reason="--force"
elif [ -z "$addon" ]; then
  reason="no native/*.node"
else
  changed="$(newer_than "$addon" "${native_sources[@]}")"
  [ -z "$changed" ] || reason="$changed is newer than $addon"
fi
if [ -n "$reason" ]; then
  say "native addon ($reason): npm run build:native"
  npm run --silent build:native || { say "npm run build:native failed"; exit 1; }
fi

# --- TypeScript -----------------------------------------------------------------------------
# tsc rewrites every output, so a stamp written after a successful build marks dist's age.
stamp="dist/.build-stamp"
ts_sources=(ts bench tsconfig.json package.json native/index.d.ts scripts/build-ui.mjs)
reason=""
if [ "$force" = 1 ]; then
  reason="--force"
elif [ ! -f "$stamp" ]; then
  reason="no build in dist/"
else
  changed="$(newer_than "$stamp" "${ts_sources[@]}")"
  [ -z "$changed" ] || reason="$changed is newer than the last build"
fi
if [ -n "$reason" ]; then
  say "TypeScript ($reason): npm run build:ts"
  npm run --silent build:ts || { say "npm run build:ts failed"; exit 1; }
  touch "$stamp"
fi
