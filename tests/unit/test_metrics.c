/* test_metrics.c — Prometheus text exposition: exact rendering, escaping,
 * histograms, registration rules. */
#include "test_helper.h"

#include <math.h>
#include <string.h>

#include "confide/metrics.h"

static char *render(const cf_metrics *m)
{
    cf_buf out;
    cf_buf_init(&out, 1 << 20);
    assert_cf_ok(cf_metrics_render(m, &out));
    const char *s = NULL;
    assert_cf_ok(cf_buf_cstr(&out, &s));
    char *copy = strdup(s);
    cf_buf_free(&out);
    return copy;
}

static void test_counter_gauge_exact_text(void **state)
{
    (void)state;
    cf_metrics *m = NULL;
    cf_metric *ok = NULL, *bad = NULL, *temp = NULL, *plain = NULL;
    assert_cf_ok(cf_metrics_new(&m));
    cf_metric_label l_ok[] = {{"code", "200"}, {"path", "/v1/chat"}, {NULL, NULL}};
    cf_metric_label l_bad[] = {{"code", "500"}, {"path", "a\"b\\c\nd"}, {NULL, NULL}};
    assert_cf_ok(cf_metrics_counter(m, "confide_requests_total", "Requests.\nSecond \\ line", l_ok, &ok));
    assert_cf_ok(cf_metrics_counter(m, "confide_requests_total", "Requests.\nSecond \\ line", l_bad, &bad));
    assert_cf_ok(cf_metrics_gauge(m, "confide_temp", "Temperature.", NULL, &temp));
    assert_cf_ok(cf_metrics_counter(m, "confide_plain_total", "Plain.", NULL, &plain));
    cf_metric_inc(ok);
    cf_metric_inc(ok);
    cf_metric_add(ok, 3);
    cf_metric_add(ok, -10);  /* ignored: counters only go up */
    cf_metric_add(ok, NAN);  /* ignored */
    cf_metric_inc(bad);
    cf_metric_set(temp, -1.5);
    cf_metric_gauge_add(temp, 0.25);
    cf_metric_set(plain, 99); /* wrong type: ignored */
    cf_metric_inc(NULL);      /* NULL handles are fine */
    assert_true(cf_metric_value(ok) == 5.0);
    assert_true(cf_metric_value(temp) == -1.25);

    char *text = render(m);
    assert_string_equal(text, "# HELP confide_requests_total Requests.\\nSecond \\\\ line\n"
                              "# TYPE confide_requests_total counter\n"
                              "confide_requests_total{code=\"200\",path=\"/v1/chat\"} 5\n"
                              "confide_requests_total{code=\"500\",path=\"a\\\"b\\\\c\\nd\"} 1\n"
                              "# HELP confide_temp Temperature.\n"
                              "# TYPE confide_temp gauge\n"
                              "confide_temp -1.25\n"
                              "# HELP confide_plain_total Plain.\n"
                              "# TYPE confide_plain_total counter\n"
                              "confide_plain_total 0\n");
    free(text);
    cf_metrics_free(m);
}

static void test_histogram_cumulative_buckets(void **state)
{
    (void)state;
    cf_metrics *m = NULL;
    cf_metric *h = NULL;
    assert_cf_ok(cf_metrics_new(&m));
    const double bounds[] = {0.1, 0.5, 2};
    cf_metric_label l[] = {{"server", "as"}, {NULL, NULL}};
    assert_cf_ok(cf_metrics_histogram(m, "confide_latency_seconds", "Latency.", l, bounds, 3, &h));
    cf_metric_observe(h, 0.05);
    cf_metric_observe(h, 0.1); /* le is inclusive */
    cf_metric_observe(h, 0.3);
    cf_metric_observe(h, 5);
    cf_metric_observe(h, NAN); /* ignored */
    char *text = render(m);
    assert_string_equal(text, "# HELP confide_latency_seconds Latency.\n"
                              "# TYPE confide_latency_seconds histogram\n"
                              "confide_latency_seconds_bucket{server=\"as\",le=\"0.1\"} 2\n"
                              "confide_latency_seconds_bucket{server=\"as\",le=\"0.5\"} 3\n"
                              "confide_latency_seconds_bucket{server=\"as\",le=\"2\"} 3\n"
                              "confide_latency_seconds_bucket{server=\"as\",le=\"+Inf\"} 4\n"
                              "confide_latency_seconds_sum{server=\"as\"} 5.45\n"
                              "confide_latency_seconds_count{server=\"as\"} 4\n");
    free(text);
    assert_true(cf_metric_value(h) == 4.0);
    cf_metrics_free(m);
}

/* Non-integers print with the fewest digits that read back as the same
 * double: 15 when they suffice, 16 or 17 only when needed. */
static void test_shortest_round_trip_numbers(void **state)
{
    (void)state;
    cf_metrics *m = NULL;
    cf_metric *h = NULL;
    assert_cf_ok(cf_metrics_new(&m));
    const double bounds[] = {1e-300, 0.005, 0.1 + 0.2, 1.0 / 3, 12345.678};
    cf_metric_label l[] = {{"server", "x"}, {NULL, NULL}};
    assert_cf_ok(cf_metrics_histogram(m, "confide_x_seconds", "X.", l, bounds, 5, &h));
    cf_metric_observe(h, 0.1 + 0.2);
    char *text = render(m);
    static const char *const want[] = {"le=\"0.005\"} 0\n", "le=\"0.30000000000000004\"} 1\n",
                                       "le=\"0.3333333333333333\"} 1\n", "le=\"1e-300\"} 0\n",
                                       "le=\"12345.678\"} 1\n", "confide_x_seconds_sum{server=\"x\"} 0.30000000000000004\n"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (strstr(text, want[i]) == NULL) {
            fail_msg("missing '%s' in:\n%s", want[i], text);
        }
    }
    free(text);
    cf_metrics_free(m);
}

static void test_registration_rules(void **state)
{
    (void)state;
    cf_metrics *m = NULL;
    cf_metric *x = NULL;
    assert_cf_ok(cf_metrics_new(&m));
    cf_metric_label a[] = {{"k", "v"}, {NULL, NULL}};
    cf_metric_label dup[] = {{"k", "v"}, {"k", "w"}, {NULL, NULL}};
    cf_metric_label reserved[] = {{"__x", "v"}, {NULL, NULL}};
    cf_metric_label le[] = {{"le", "1"}, {NULL, NULL}};
    cf_metric_label badname[] = {{"a-b", "v"}, {NULL, NULL}};
    const double b_ok[] = {1, 2};
    const double b_bad[] = {2, 1};

    assert_cf_ok(cf_metrics_counter(m, "c_total", "C.", a, &x));
    assert_cf_error(cf_metrics_counter(m, "c_total", "C.", a, &x), CF_E_INVALID_ARGUMENT);   /* same series */
    assert_cf_error(cf_metrics_gauge(m, "c_total", "C.", NULL, &x), CF_E_INVALID_ARGUMENT);  /* other type */
    assert_cf_error(cf_metrics_counter(m, "c_total", "D.", NULL, &x), CF_E_INVALID_ARGUMENT); /* other help */
    assert_cf_error(cf_metrics_counter(m, "9bad", "C.", NULL, &x), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_metrics_counter(m, "bad name", "C.", NULL, &x), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_metrics_counter(m, "d_total", "C.", dup, &x), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_metrics_counter(m, "d_total", "C.", reserved, &x), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_metrics_counter(m, "d_total", "C.", badname, &x), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_metrics_histogram(m, "h", "H.", le, b_ok, 2, &x), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_metrics_histogram(m, "h", "H.", NULL, b_bad, 2, &x), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_metrics_histogram(m, "h", "H.", NULL, b_ok, 0, &x), CF_E_INVALID_ARGUMENT);
    assert_cf_ok(cf_metrics_histogram(m, "h", "H.", NULL, b_ok, 2, &x));
    assert_cf_error(cf_metrics_histogram(m, "h", "H.", a, b_bad + 1, 1, &x), CF_E_INVALID_ARGUMENT);
    assert_cf_ok(cf_metrics_counter(m, "ns:with_colon_total", "Colons are allowed in names.", NULL, &x));
    /* A failed registration left nothing behind: only the good ones render. */
    char *text = render(m);
    assert_null(strstr(text, "d_total"));
    assert_non_null(strstr(text, "# TYPE h histogram\n"));
    free(text);
    cf_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_exact_text),
        cmocka_unit_test(test_histogram_cumulative_buckets),
        cmocka_unit_test(test_shortest_round_trip_numbers),
        cmocka_unit_test(test_registration_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
