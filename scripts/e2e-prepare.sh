#!/usr/bin/env bash
# e2e-prepare.sh — everything the end-to-end tests need, idempotent and quick
# when already done (scripts/run-tests.sh e2e calls it before the tests):
#   1. tests/e2e/node_modules from the committed package-lock.json (npm ci;
#      skipped while the lock file is unchanged since the last install);
#   2. llama-server built from the node-llama-cpp bundle and the random-weight
#      test model (scripts/llama.sh --model; cached in $CONFIDE_CACHE, default
#      ~/.cache/confide — the first build takes 5-20 minutes on 2 cores);
#   3. checks that node (>= 18.19), npm and nginx are installed (scripts/deps.sh
#      installs them).
# Needs no network except the npm registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
e2e="$root/tests/e2e"
t0=$SECONDS

command -v node >/dev/null || { echo "e2e-prepare: node missing: run scripts/deps.sh" >&2; exit 1; }
command -v npm >/dev/null || { echo "e2e-prepare: npm missing: run scripts/deps.sh" >&2; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "e2e-prepare: nginx missing: run scripts/deps.sh" >&2; exit 1; }
# Node.js >= 18.19: Debian 12's own nodejs (bookworm's updates took it from
# 18.13 to 18.19.0, then 18.20.4) or anything newer; tested with 18.20.4 and 20.x. What the tests, the demo
# and the openai client use is all in 18.19 (node --test --test-reporter,
# fetch, web streams); older 18.x releases are not tested.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 19) ? 0 : 1)'; then
    echo "e2e-prepare: Node.js >= 18.19 needed, found $(node --version) at $(command -v node):" \
        "on Debian 12 run scripts/deps.sh (it installs or upgrades Debian's nodejs), or put a newer node first on PATH" >&2
    exit 1
fi

stamp="$e2e/node_modules/.confide-lock.sha256"
want=$(sha256sum "$e2e/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "e2e-prepare: npm ci in tests/e2e" >&2
    (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" >"$stamp"
fi

"$root/scripts/llama.sh" --model >/dev/null
echo "e2e-prepare: ready in $((SECONDS - t0))s" >&2
