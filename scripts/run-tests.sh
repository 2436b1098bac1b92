#!/usr/bin/env bash
# run-tests.sh MODE [BINARIES...] — run one tier of the test suite and print
# a closing "MODE: N passed, N failed" line.
#   unit         each cmocka binary
#   valgrind     each cmocka binary under valgrind (errors and leaks fail)
#   integration  each itest_ binary (they start the real daemons themselves,
#                llama-server included: scripts/e2e-prepare.sh runs first),
#                then every tests/integration/*.sh
#   e2e          node --test tests/e2e (openai client, nginx, llama-server)
set -u
mode=$1; shift
root=$(cd "$(dirname "$0")/.." && pwd)
passed=0; failed=0; failed_names=()
logdir=${CONFIDE_TEST_LOGS:-$root/build/test-logs}
mkdir -p "$logdir"

run_one() { # name, command...
    local name=$1; shift
    local log="$logdir/$mode-$name.log"
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1)); echo "  ok    $name"
    else
        failed=$((failed + 1)); failed_names+=("$name"); echo "  FAIL  $name (log: $log)"
        tail -n 40 "$log" | sed 's/^/      | /'
    fi
}

echo "== $mode tests"
case "$mode" in
unit)
    for t in "$@"; do run_one "$(basename "$t")" "$t"; done ;;
valgrind)
    command -v valgrind >/dev/null || { echo "valgrind missing: run scripts/deps.sh"; exit 1; }
    for t in "$@"; do
        # Only definite/indirect leaks and memory errors fail; CONFIDE_VALGRIND
        # lets heavy tests trim their loops (same code paths, fewer rounds).
        run_one "$(basename "$t")" env CONFIDE_VALGRIND=1 valgrind -q --error-exitcode=99 \
            --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect "$t"
    done ;;
integration)
    # The worker and proxy integration tests run the real llama-server and the
    # Node fault-injection backend: make sure both are there (a fresh machine
    # builds llama-server here, once; later runs find it cached).
    "$root/scripts/e2e-prepare.sh" || { echo "integration: preparing llama-server and node modules failed"; exit 1; }
    for t in "$@"; do run_one "$(basename "$t")" "$t"; done
    for s in "$root"/tests/integration/*.sh; do
        [ -e "$s" ] || continue
        run_one "$(basename "$s" .sh)" bash "$s"
    done ;;
e2e)
    if ! ls "$root"/tests/e2e/*.test.mjs >/dev/null 2>&1; then
        echo "  (no end-to-end tests yet)"
    else
        "$root/scripts/e2e-prepare.sh" || { echo "e2e: preparing the environment failed"; exit 1; }
        for t in "$root"/tests/e2e/*.test.mjs; do
            run_one "$(basename "$t" .test.mjs)" node --test --test-reporter=spec "$t"
        done
    fi ;;
*) echo "unknown mode $mode"; exit 2 ;;
esac

echo "$mode: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
