#!/usr/bin/env bash
# `confide seal` / `confide open` end to end on the real binary: request,
# response and stream round trips with raw and base64url key files, and the
# error codes and exit statuses of tampered, truncated, stale and misused input.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CONFIDE_BUILD:-$root/build/default}/bin/confide
[ -x "$bin" ] || { echo "missing $bin (make first)"; exit 1; }
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
fails=0
check() { # name, expected exit, expected stderr code ('' = none), command...
    local name=$1 want=$2 code=$3; shift 3
    "$@" >"$t/out" 2>"$t/err"; local rc=$?
    if [ "$rc" != "$want" ] || { [ -n "$code" ] && ! grep -q "^error: $code:" "$t/err"; }; then
        echo "FAIL $name: exit $rc (want $want), stderr: $(cat "$t/err")"; fails=$((fails + 1))
    else
        echo "ok   $name"
    fi
}
head -c 32 /dev/urandom >"$t/k.raw"
python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(open(sys.argv[1],"rb").read()).rstrip(b"=").decode())' "$t/k.raw" >"$t/k.b64"
head -c 32 /dev/urandom >"$t/other.raw"
printf '{"model":"m","messages":[{"role":"user","content":"Bonjour"}],"max_tokens":9}' >"$t/req.json"

check "seal request" 0 "" sh -c "'$bin' seal request --key '$t/k.b64' --pad 32 <'$t/req.json' >'$t/req.enc'"
grep -q Bonjour "$t/req.enc" && { echo "FAIL prompt visible in the encrypted request"; fails=$((fails + 1)); }
check "open request" 0 "" sh -c "'$bin' open request --key '$t/k.raw' <'$t/req.enc' >'$t/req.dec'"
cmp -s "$t/req.json" "$t/req.dec" || { echo "FAIL request round trip"; fails=$((fails + 1)); }
check "open request, other key" 1 unknown_key sh -c "'$bin' open request --key '$t/other.raw' <'$t/req.enc'"
check "open request, model changed" 1 auth_failed sh -c "sed 's/\"m\"/\"n\"/' '$t/req.enc' | '$bin' open request --key '$t/k.raw'"
check "open request, stale" 1 stale_request sh -c "'$bin' open request --key '$t/k.raw' --now 1000 <'$t/req.enc'"
check "open request, no freshness" 0 "" sh -c "'$bin' open request --key '$t/k.raw' --now 1000 --no-freshness <'$t/req.enc'"

printf '{"id":"r","choices":[{"message":{"content":"Salut"}}],"usage":{"total_tokens":3}}' >"$t/resp.json"
check "seal response" 0 "" sh -c "'$bin' seal response --key '$t/k.raw' --request '$t/req.enc' <'$t/resp.json' >'$t/resp.enc'"
check "open response" 0 "" sh -c "'$bin' open response --key '$t/k.b64' --request '$t/req.enc' <'$t/resp.enc' >'$t/resp.dec'"
cmp -s "$t/resp.json" "$t/resp.dec" || { echo "FAIL response round trip"; fails=$((fails + 1)); }
check "open response, other status" 1 auth_failed sh -c "'$bin' open response --key '$t/k.raw' --request '$t/req.enc' --status 500 <'$t/resp.enc'"
check "open request ciphertext as response" 1 "" sh -c "'$bin' open response --key '$t/k.raw' --request '$t/req.enc' <'$t/req.enc'"

printf 'data: {"choices":[{"delta":{"content":"Sa"}}]}\n\ndata: {"choices":[{"delta":{"content":"lut"}}]}\n\ndata: [DONE]\n\n' >"$t/s.txt"
check "seal stream" 0 "" sh -c "'$bin' seal stream --key '$t/k.raw' --request '$t/req.enc' <'$t/s.txt' >'$t/s.enc'"
check "open stream" 0 "" sh -c "'$bin' open stream --key '$t/k.raw' --request '$t/req.enc' <'$t/s.enc' >'$t/s.dec'"
cmp -s "$t/s.txt" "$t/s.dec" || { echo "FAIL stream round trip"; fails=$((fails + 1)); }
check "open stream, final event dropped" 1 truncated sh -c "grep -v confide '$t/s.enc' | '$bin' open stream --key '$t/k.raw' --request '$t/req.enc'"
check "open stream, cut short" 1 truncated sh -c "head -c 200 '$t/s.enc' | '$bin' open stream --key '$t/k.raw' --request '$t/req.enc'"
check "usage: no key" 2 "" "$bin" seal request
check "usage: response without request" 2 "" "$bin" open response --key "$t/k.raw"
check "bad key file" 1 bad_key sh -c "echo short >'$t/bad'; '$bin' seal request --key '$t/bad' <'$t/req.json'"
check "key given as a value, not a file" 1 io_error sh -c "'$bin' seal request --key \"\$(cat '$t/k.b64')\" <'$t/req.json'"
grep -qF "$(cat "$t/k.b64")" "$t/err" && { echo "FAIL the --key value is echoed in the error"; fails=$((fails + 1)); }
[ "$fails" -eq 0 ]
