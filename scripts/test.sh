#!/usr/bin/env bash
# Runs every test: vitest (against a real ZooKeeper, see test/setup/zookeeper.ts) and the Rust
# workspace's cargo tests. Both always run; the exit status says whether either failed.
# Arguments go to vitest, e.g. scripts/test.sh ts/zk
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/ensure-deps.sh
scripts/build-if-stale.sh

failed=()

printf '[test] vitest\n'
npx vitest run "$@" || failed+=("vitest")

printf '[test] cargo test --workspace --release\n'
cargo test --workspace --release || failed+=("cargo test")

if [ "${#failed[@]}" -gt 0 ]; then
  printf '[test] FAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
printf '[test] all passed (vitest, cargo test)\n'
