#!/usr/bin/env bash
# daemon_start_refusals.sh — configurations that can never work make the
# daemons refuse at start with exit status 2 and one plain line
# "<program>: <code>: <detail>" (no source location), instead of starting
# and retrying forever; the confide tool reports failures in the same form.
# Needs $CONFIDE_BUILD (the Makefile exports it).
set -u
build="${CONFIDE_BUILD:?CONFIDE_BUILD not set}"
for b in confide confide-worker confide-as confide-proxy; do
    [ -x "$build/bin/$b" ] || { echo "missing $build/bin/$b"; exit 1; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0; checks=0

# expect STATUS PATTERN -- program args... : exit status (within 10 s) and
# an extended regex in stderr; stderr must never show a file:line.
expect() {
    local want=$1 pattern=$2; shift 3
    checks=$((checks + 1))
    local rc
    timeout 10 "$build/bin/$1" "${@:2}" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pattern" "$tmp/err" || grep -qE '\.c:[0-9]+\)' "$tmp/err"; then
        fails=$((fails + 1))
        echo "FAIL: $* -> rc=$rc (want $want), pattern '$pattern'"
        sed 's/^/    | /' "$tmp/err" | head -20
    fi
}

"$build/bin/confide" sim init "$tmp/sim" >/dev/null || { echo "confide sim init failed"; exit 1; }
"$build/bin/confide" manifest new --sim-dir "$tmp/sim" --as-binary "$build/bin/confide-as" \
    --worker-binary "$build/bin/confide-worker" --models m1 --out "$tmp/manifest.json" >/dev/null ||
    { echo "confide manifest new failed"; exit 1; }

# A worker platform that no worker policy of this sim-only manifest names:
# the AS could never admit it.
for p in snp tdx; do
    expect 2 "^confide-worker: bad_config: --platform $p: no worker policy of the manifest is for it \(worker platforms: sim\)\$" \
        -- confide-worker --platform $p --manifest "$tmp/manifest.json" --as-url http://127.0.0.1:9 --as-allow-http \
        --backend-socket "$tmp/none.sock" --port 0
done
# Bad flags: the documented "<program>: bad_config: <detail>" line.
for d in confide-worker confide-as confide-proxy; do
    expect 2 "^$d: bad_config: unknown flag: --bogus\$" -- $d --bogus
done

# The confide tool reports failures the same way.
# Credentials in a URL would be logged with it: refused, never logged.
zeros=0000000000000000000000000000000000000000000000000000000000000000
expect 2 "^confide-proxy: bad_config: URLs must not carry credentials" -- \
    confide-proxy --manifest-sha256 $zeros --as https://as.example --upstream https://user:secret@gw.example/v1

expect 1 "^confide: io_error: $tmp/none.json: cannot open manifest" -- confide manifest hash "$tmp/none.json"

echo "daemon start refusals: $((checks - fails))/$checks checks pass"
[ "$fails" -eq 0 ]
