#!/usr/bin/env bash
# The newcomer's one command: install what is missing, build what is stale, then `quark up`
# (local ZooKeeper under .quark/, one api, two orcs, a few computes). Arguments go to `quark up`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/ensure-deps.sh
scripts/build-if-stale.sh
exec node bin/quark.js up "$@"
