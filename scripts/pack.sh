#!/usr/bin/env bash
# Builds what is stale, then `npm pack`s Quark into DEST (default dist/pack): one tarball holding
# the compiled CLI and services (dist/ts), the visualizer (dist/ui), the prebuilt native addon for
# this platform (native/index.<platform>.node, e.g. linux-x64-gnu) and the systemd units (deploy/).
# Its runtime dependencies are bundled (package.json: bundleDependencies), so installing it needs
# no registry. Checks that the tarball holds each of them and prints its path on the last line.
#   scripts/pack.sh [DEST]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
dest="${1:-$ROOT/dist/pack}"
mkdir -p "$dest"

say() { printf '[pack] %s\n' "$*" >&2; }

scripts/build-if-stale.sh >&2
addon="$(ls native/*.node 2>/dev/null | head -n 1 || true)"
if [ -z "$addon" ]; then
  say "no native/*.node: the build did not make the addon"
  exit 1
fi

name="$(npm pack --silent --pack-destination "$dest" | tail -n 1)"
tarball="$dest/$name"
listing="$(tar -tzf "$tarball")"
# Runtime dependencies travel inside (bundleDependencies): installing needs no registry.
for must in package/node_modules/fastify/package.json package/bin/quark.js package/dist/ts/cli/main.js package/dist/ui/ui.js "package/$addon" package/deploy/quark-api.service package/docs/deploy.md; do
  if ! grep -qxF "$must" <<<"$listing"; then
    say "$tarball lacks $must"
    exit 1
  fi
done
if grep -q '^package/dist/.*\.test\.js$\|^package/dist/bench/' <<<"$listing"; then
  say "$tarball holds tests or benchmarks; the files list in package.json lets them in"
  exit 1
fi
say "$(wc -l <<<"$listing") files, $(du -h "$tarball" | cut -f1) ($addon bundled)"
printf '%s\n' "$tarball"
