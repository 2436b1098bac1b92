#!/usr/bin/env bash
# fuzz-smoke.sh SECONDS FUZZER... — run each libFuzzer target for a bounded
# time on its seed corpus (fuzz/corpus/<name>/, copied to a scratch dir so the
# committed seeds stay as they are). Any crash, leak or timeout fails.
set -u
secs=$1; shift
root=$(cd "$(dirname "$0")/.." && pwd)
passed=0; failed=0
for f in "$@"; do
    name=$(basename "$f")
    seeds="$root/fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null
    log="$root/build/fuzz/$name.log"
    echo "== $name (${secs}s)"
    if "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 "$work" >"$log" 2>&1; then
        passed=$((passed + 1)); grep -E '^stat::number_of_executed_units' "$log" | sed 's/^/  /'
    else
        failed=$((failed + 1)); echo "  FAIL ($log)"; tail -n 30 "$log" | sed 's/^/    | /'
    fi
    rm -rf "$work"
done
echo "fuzz-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
