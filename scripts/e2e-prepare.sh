#!/usr/bin/env bash
# e2e-prepare.sh — everything the end-to-end tests need, idempotent and quick
# when already done (scripts/run-tests.sh e2e calls it before the tests):
#   1. tests/e2e/node_modules from the committed package-lock.json (npm ci;
#      skipped while the lock file is unchanged since the last install);
#   2. llama-server built from the node-llama-cpp bundle and the random-weight
#      test model (scripts/llama.sh --model; cached in $CONFIDE_CACHE, default
#      ~/.cache/confide — the first build takes 5-20 minutes on 2 cores);
#   3. a check that nginx is installed (scripts/deps.sh installs it).
# Needs no network except the npm registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
e2e="$root/tests/e2e"
t0=$SECONDS

command -v node >/dev/null || { echo "e2e-prepare: node missing: run scripts/deps.sh" >&2; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "e2e-prepare: nginx missing: run scripts/deps.sh" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "e2e-prepare: node >= 20 needed, found $(node --version)" >&2; exit 1; }

stamp="$e2e/node_modules/.confide-lock.sha256"
want=$(sha256sum "$e2e/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "e2e-prepare: npm ci in tests/e2e" >&2
    (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" >"$stamp"
fi

"$root/scripts/llama.sh" --model >/dev/null
echo "e2e-prepare: ready in $((SECONDS - t0))s" >&2
