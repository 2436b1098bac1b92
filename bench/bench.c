/* bench.c — runner for the suites registered with CF_BENCH_SUITE. */
#include "bench.h"

extern volatile uint8_t cf_bench_sink_byte;

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "confide/result.h"

#define MAX_SUITES 64

static struct {
    const char *name;
    cf_bench_suite_fn fn;
} suites[MAX_SUITES];
static size_t suite_count;

void cf_bench_register(const char *name, cf_bench_suite_fn fn)
{
    if (suite_count < MAX_SUITES) {
        suites[suite_count].name = name;
        suites[suite_count].fn = fn;
        suite_count++;
    }
}

double cf_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double scale(void)
{
    const char *s = getenv("CONFIDE_BENCH_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

double cf_bench_ops_per_sec(void (*op)(void *arg), void *arg, double seconds)
{
    seconds *= scale();
    op(arg); /* warm up */
    uint64_t n = 0;
    uint64_t batch = 1;
    double start = cf_bench_now(), elapsed = 0;
    while (elapsed < seconds) {
        for (uint64_t i = 0; i < batch; i++) {
            op(arg);
        }
        n += batch;
        elapsed = cf_bench_now() - start;
        if (elapsed < seconds / 20) {
            batch *= 2;
        }
    }
    return (double)n / elapsed;
}

void cf_bench_row(const char *label, double ours, double baseline, const char *unit)
{
    /* Long labels get their own line so the figure columns stay aligned. */
    if (strlen(label) > 44) {
        printf("  %s\n", label);
        label = "";
    }
    if (baseline > 0) {
        printf("  %-44s %14.1f %-8s baseline %14.1f   ratio %.3f\n", label, ours, unit, baseline, ours / baseline);
    } else {
        printf("  %-44s %14.1f %-8s\n", label, ours, unit);
    }
    fflush(stdout);
}

void cf_bench_fail(const char *what)
{
    char desc[512];
    fprintf(stderr, "bench setup failed: %s: %s\n", what, cf_error_describe(desc, sizeof desc));
    exit(1);
}

/* Global and volatile, so stores into it cannot be elided. */
volatile uint8_t cf_bench_sink_byte;

void cf_bench_sink(const void *p, size_t n)
{
    if (n > 0) {
        cf_bench_sink_byte = (uint8_t)(cf_bench_sink_byte ^ ((const uint8_t *)p)[0]);
    }
}

int main(int argc, char **argv)
{
    printf("confide-bench: %zu suites (ratio = ours / baseline in the same run)\n", suite_count);
    int ran = 0;
    for (size_t i = 0; i < suite_count; i++) {
        bool wanted = argc < 2;
        for (int a = 1; a < argc; a++) {
            wanted = wanted || strcmp(argv[a], suites[i].name) == 0;
        }
        if (!wanted) {
            continue;
        }
        printf("\n[%s]\n", suites[i].name);
        suites[i].fn();
        ran++;
    }
    return ran > 0 || suite_count == 0 ? 0 : 2;
}
