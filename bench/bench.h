/*
 * bench.h — the tiny benchmark harness behind `make bench`.
 *
 * Each bench/bench_<topic>.c registers suites with CF_BENCH_SUITE(name, fn);
 * `confide-bench [name...]` runs them all (or the named ones). A suite
 * measures our code and a raw baseline *in the same run* and prints both with
 * their ratio, because these machines are noisy and only ratios compare.
 */
#ifndef CONFIDE_BENCH_H
#define CONFIDE_BENCH_H

#include <stddef.h>
#include <stdint.h>

typedef void (*cf_bench_suite_fn)(void);
void cf_bench_register(const char *name, cf_bench_suite_fn fn);

#define CF_BENCH_SUITE(name, fn)                                                                   \
    __attribute__((constructor)) static void cf_bench_register_##fn(void) { cf_bench_register(name, fn); }

/* Call op(arg) repeatedly for about `seconds` (CONFIDE_BENCH_SCALE scales
 * it); returns operations per second. op must do one operation. */
double cf_bench_ops_per_sec(void (*op)(void *arg), void *arg, double seconds);
/* Monotonic clock in seconds. */
double cf_bench_now(void);
/* Print one result row: label, our figure, baseline figure, unit, ratio. */
void cf_bench_row(const char *label, double ours, double baseline, const char *unit);
/* Abort the bench run with a message (setup failures). */
void cf_bench_fail(const char *what) __attribute__((noreturn));
/* Keep the optimiser from discarding a result. */
void cf_bench_sink(const void *p, size_t n);

#endif /* CONFIDE_BENCH_H */
