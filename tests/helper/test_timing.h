/*
 * test_timing.h — time budgets for tests that wait on events (loopback
 * sockets, helper threads, timers) on a loaded 2-core CI machine.
 *
 * Rules:
 *  - A test waits for an EVENT (a flag, a condition) with a generous budget
 *    that only runs out when the test is failing anyway; it never sleeps a
 *    fixed time and hopes that something happened meanwhile.
 *  - Budgets stretch where code runs slower: valgrind (~20x), ASan/UBSan
 *    (~2-3x), and by the integer in $CONFIDE_TEST_TIME_SCALE for a machine
 *    busier than usual.
 *  - Timeouts under test (a server's read timeout, a client's idle timeout)
 *    are not scaled: the test checks the code's behaviour, not the machine.
 *    Only their upper bounds ("fired, and not absurdly late") use budgets.
 * Header-only so that any test can use it without touching the helper
 * library.
 */
#ifndef CONFIDE_TEST_TIMING_H
#define CONFIDE_TEST_TIMING_H

#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "test_helper.h"

#if defined(__SANITIZE_ADDRESS__)
#define CF_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CF_TEST_SANITIZED 1
#endif
#endif
#ifndef CF_TEST_SANITIZED
#define CF_TEST_SANITIZED 0
#endif

/* Base budget for one awaited event, before scaling. */
#define CF_TEST_WAIT_MS 20000

static inline long cf_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How much slower than a quiet machine with a plain build we allow for. */
static inline int cf_test_time_scale(void)
{
    int scale = cf_test_under_valgrind() ? 6 : CF_TEST_SANITIZED ? 3 : 1;
    const char *env = getenv("CONFIDE_TEST_TIME_SCALE");
    if (env != NULL) {
        int extra = atoi(env);
        if (extra > 1 && extra <= 100) {
            scale *= extra;
        }
    }
    return scale;
}

static inline long cf_test_budget_ms(long ms) { return ms * cf_test_time_scale(); }

#endif /* CONFIDE_TEST_TIMING_H */
