#!/usr/bin/env bash
# Runs every test: vitest (against a real ZooKeeper, see test/setup/zookeeper.ts) and the Rust
# workspace's cargo tests. Both run even if the build or the other fails (more signal per run);
# the exit status says whether anything failed, and the last line names what.
# Arguments go to vitest, e.g. scripts/test.sh ts/zk
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# --browser: the visualizer test drives Debian's chromium; --qemu: the real-guest tests boot QEMU guests.
scripts/ensure-deps.sh --browser --qemu

failed=()

# A type error fails the run, but the tests still run: vitest transpiles on its own.
scripts/build-if-stale.sh || failed+=("build")

printf '[test] vitest\n'
npx vitest run "$@" || failed+=("vitest")

printf '[test] cargo test --workspace --release\n'
cargo test --workspace --release || failed+=("cargo test")

if [ "${#failed[@]}" -gt 0 ]; then
  printf '[test] FAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
printf '[test] all passed (build, vitest, cargo test)\n'
