/* test_daemon.c — flag parsing (argv > env > default), @file secrets,
 * --help, signals through the loop, the token-bucket rate limiter. */
#include "test_helper.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "confide/daemon.h"
#include "confide/log.h"

/* getopt wants char *argv[]: copy string literals into writable storage. */
static cf_result parse_args(cf_flag_set *set, FILE *help, cf_flags_outcome *outcome, const char *const *args)
{
    char *argv[16];
    int argc = 0;
    for (; args[argc] != NULL && argc < 15; argc++) {
        argv[argc] = strdup(args[argc]);
    }
    argv[argc] = NULL;
    cf_result r = cf_flags_parse(set, argc, argv, help, outcome);
    for (int i = 0; i < argc; i++) {
        free(argv[i]);
    }
    return r;
}
#define PARSE(set, help, outcome, ...) parse_args((set), (help), (outcome), (const char *const[]){"prog", __VA_ARGS__ __VA_OPT__(,) NULL})

typedef struct opts {
    char *listen;
    char *token;
    int64_t max_body;
    bool insecure;
} opts;

static void make_set(cf_flag_set *set, cf_flag *flags, opts *o)
{
    memset(o, 0, sizeof *o);
    cf_flag f[] = {
        {.name = "listen", .type = CF_FLAG_STRING, .default_value = "127.0.0.1:8443", .help = "Listen address.",
         .target = &o->listen},
        {.name = "admin-token", .type = CF_FLAG_SECRET, .help = "Admin bearer token.", .target = &o->token},
        {.name = "max-body", .type = CF_FLAG_INT, .default_value = "1M", .help = "Body limit.", .target = &o->max_body,
         .min = 1, .max = 1 << 30},
        {.name = "insecure", .type = CF_FLAG_BOOL, .help = "Allow plain HTTP.", .target = &o->insecure},
    };
    memcpy(flags, f, sizeof f);
    *set = (cf_flag_set){.program = "confide-test", .summary = "A test daemon.", .env_prefix = "CONFIDE_T",
                         .flags = flags, .count = 4};
}

static void clear_env(void)
{
    unsetenv("CONFIDE_T_LISTEN");
    unsetenv("CONFIDE_T_ADMIN_TOKEN");
    unsetenv("CONFIDE_T_MAX_BODY");
    unsetenv("CONFIDE_T_INSECURE");
    unsetenv("CONFIDE_T_LOG_LEVEL");
}

static void test_flags_precedence(void **state)
{
    (void)state;
    cf_flag flags[4];
    cf_flag_set set;
    opts o;
    cf_flags_outcome outcome;
    clear_env();
    make_set(&set, flags, &o);

    /* Defaults only. */
    assert_cf_ok(PARSE(&set, NULL, &outcome));
    assert_int_equal(outcome, CF_FLAGS_RUN);
    assert_string_equal(o.listen, "127.0.0.1:8443");
    assert_null(o.token);
    assert_int_equal(o.max_body, 1024 * 1024);
    assert_false(o.insecure);
    cf_flags_free(&set);
    assert_null(o.listen);

    /* Environment beats default; argv beats environment. */
    setenv("CONFIDE_T_LISTEN", "0.0.0.0:9000", 1);
    setenv("CONFIDE_T_MAX_BODY", "2k", 1);
    setenv("CONFIDE_T_INSECURE", "yes", 1);
    assert_cf_ok(PARSE(&set, NULL, &outcome, "--listen", "[::1]:1"));
    assert_string_equal(o.listen, "[::1]:1");
    assert_int_equal(o.max_body, 2048);
    assert_true(o.insecure);
    cf_flags_free(&set);

    assert_cf_ok(PARSE(&set, NULL, &outcome, "--max-body=77", "--insecure=false"));
    assert_string_equal(o.listen, "0.0.0.0:9000");
    assert_int_equal(o.max_body, 77);
    assert_false(o.insecure);
    cf_flags_free(&set);
    clear_env();
}

static void test_flags_errors(void **state)
{
    (void)state;
    cf_flag flags[4];
    cf_flag_set set;
    opts o;
    cf_flags_outcome outcome;
    clear_env();
    make_set(&set, flags, &o);

    assert_cf_error(PARSE(&set, NULL, &outcome, "--nope"), CF_E_CONFIG);
    assert_non_null(strstr(cf_error_last()->detail, "unknown flag"));
    assert_cf_error(PARSE(&set, NULL, &outcome, "--listen"), CF_E_CONFIG);
    assert_cf_error(PARSE(&set, NULL, &outcome, "--max-body=12x"), CF_E_CONFIG);
    assert_non_null(strstr(cf_error_last()->detail, "--max-body"));
    assert_cf_error(PARSE(&set, NULL, &outcome, "--max-body=2G"), CF_E_CONFIG);
    assert_cf_error(PARSE(&set, NULL, &outcome, "extra"), CF_E_CONFIG);
    assert_cf_error(PARSE(&set, NULL, &outcome, "--log-level=loud"), CF_E_CONFIG);
    /* A failed parse leaves no strings behind. */
    assert_null(o.listen);

    /* Required flag with no value anywhere. */
    flags[1].required = true;
    assert_cf_error(PARSE(&set, NULL, &outcome), CF_E_CONFIG);
    assert_non_null(strstr(cf_error_last()->detail, "CONFIDE_T_ADMIN_TOKEN"));
}

static void test_flags_secret_file_and_help(void **state)
{
    (void)state;
    cf_flag flags[4];
    cf_flag_set set;
    opts o;
    cf_flags_outcome outcome;
    clear_env();
    make_set(&set, flags, &o);
    char *dir = cf_test_tmpdir();
    char path[512], arg[600];
    snprintf(path, sizeof path, "%s/token", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("s3cr3t-value\n", f);
    fclose(f);

    snprintf(arg, sizeof arg, "--admin-token=@%s", path);
    assert_cf_ok(PARSE(&set, NULL, &outcome, arg));
    assert_string_equal(o.token, "s3cr3t-value"); /* newline stripped */
    cf_flags_free(&set);

    /* From the environment too; a missing file fails without echoing. */
    snprintf(arg, sizeof arg, "@%s", path);
    setenv("CONFIDE_T_ADMIN_TOKEN", arg, 1);
    assert_cf_ok(PARSE(&set, NULL, &outcome));
    assert_string_equal(o.token, "s3cr3t-value");
    cf_flags_free(&set);
    setenv("CONFIDE_T_ADMIN_TOKEN", "@/nonexistent/secret", 1);
    assert_cf_error(PARSE(&set, NULL, &outcome), CF_E_CONFIG);
    assert_non_null(strstr(cf_error_last()->detail, "--admin-token"));
    clear_env();

    /* --help lists every flag with its default and environment name and
     * never a secret's value. */
    setenv("CONFIDE_T_ADMIN_TOKEN", "do-not-print", 1);
    char *help_buf = NULL;
    size_t help_len = 0;
    FILE *mem = open_memstream(&help_buf, &help_len);
    assert_cf_ok(PARSE(&set, mem, &outcome, "--help"));
    fclose(mem);
    assert_int_equal(outcome, CF_FLAGS_HELP);
    assert_non_null(strstr(help_buf, "Usage: confide-test"));
    assert_non_null(strstr(help_buf, "--listen=STRING"));
    assert_non_null(strstr(help_buf, "(default: 127.0.0.1:8443) env CONFIDE_T_LISTEN"));
    assert_non_null(strstr(help_buf, "--admin-token=SECRET"));
    assert_non_null(strstr(help_buf, "env CONFIDE_T_ADMIN_TOKEN"));
    assert_non_null(strstr(help_buf, "(default: 1M) env CONFIDE_T_MAX_BODY"));
    assert_non_null(strstr(help_buf, "--insecure\n"));
    assert_non_null(strstr(help_buf, "env CONFIDE_T_LOG_LEVEL"));
    assert_null(strstr(help_buf, "do-not-print"));
    free(help_buf);
    clear_env();

    /* --log-level is applied: a warning is dropped at "error", a debug line
     * kept at "debug" (from the environment). */
    char log_path[600];
    snprintf(log_path, sizeof log_path, "%s/log", dir);
    FILE *logf = fopen(log_path, "w+");
    assert_non_null(logf);
    cf_log_set_file(logf); /* the logger write(2)s to its descriptor */
    assert_cf_ok(PARSE(&set, NULL, &outcome, "--log-level=error"));
    CF_LOG_WARN("dropped_line");
    setenv("CONFIDE_T_LOG_LEVEL", "debug", 1);
    assert_cf_ok(PARSE(&set, NULL, &outcome));
    CF_LOG_DEBUG("kept_line");
    cf_log_set_file(NULL);
    fclose(logf);
    cf_buf log_text;
    const char *log_str = NULL;
    cf_test_read_file(log_path, false, &log_text);
    assert_cf_ok(cf_buf_cstr(&log_text, &log_str));
    assert_null(strstr(log_str, "dropped_line"));
    assert_non_null(strstr(log_str, "kept_line"));
    cf_buf_free(&log_text);
    cf_flags_free(&set);
    clear_env();
    cf_log_set_level(CF_LOG_WARN);
    cf_test_rmrf(dir);
    free(dir);
}

static int shutdown_signo;

static void on_shutdown(int signo, void *arg)
{
    shutdown_signo = signo;
    event_base_loopbreak(arg);
}

static void test_signals_through_loop(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    cf_daemon_signals *sig = NULL;
    assert_cf_ok(cf_daemon_signals_new(base, on_shutdown, base, &sig));
    /* SIGPIPE is ignored now: raising it must not kill us. */
    assert_int_equal(raise(SIGPIPE), 0);
    shutdown_signo = 0;
    assert_int_equal(raise(SIGTERM), 0);
    struct timeval guard = {2, 0};
    event_base_loopexit(base, &guard);
    event_base_dispatch(base);
    assert_int_equal(shutdown_signo, SIGTERM);
    shutdown_signo = 0;
    assert_int_equal(raise(SIGINT), 0);
    event_base_loopexit(base, &guard);
    event_base_dispatch(base);
    assert_int_equal(shutdown_signo, SIGINT);
    cf_daemon_signals_free(sig);
    event_base_free(base);
}

static void test_rate_limiter_bucket(void **state)
{
    (void)state;
    cf_rate_limiter *rl = NULL;
    assert_cf_ok(cf_rate_limiter_new(10.0 /* per s */, 3 /* burst */, 4, &rl));
    uint64_t t = 1000000;
    /* Burst of 3, then refused. */
    assert_true(cf_rate_limiter_allow(rl, "10.0.0.1", t));
    assert_true(cf_rate_limiter_allow(rl, "10.0.0.1", t));
    assert_true(cf_rate_limiter_allow(rl, "10.0.0.1", t));
    assert_false(cf_rate_limiter_allow(rl, "10.0.0.1", t));
    /* Another peer has its own bucket. */
    assert_true(cf_rate_limiter_allow(rl, "10.0.0.2", t));
    /* 10/s: one token per 100 ms. 99 ms is not enough, 100 ms is. */
    assert_false(cf_rate_limiter_allow(rl, "10.0.0.1", t + 99));
    assert_true(cf_rate_limiter_allow(rl, "10.0.0.1", t + 100));
    assert_false(cf_rate_limiter_allow(rl, "10.0.0.1", t + 100));
    /* Refill is capped at the burst. */
    for (int i = 0; i < 3; i++) {
        assert_true(cf_rate_limiter_allow(rl, "10.0.0.1", t + 100000));
    }
    assert_false(cf_rate_limiter_allow(rl, "10.0.0.1", t + 100000));
    assert_cf_error(cf_rate_limiter_new(0, 1, 1, &rl), CF_E_INVALID_ARGUMENT);
    cf_rate_limiter_free(rl);
}

static void test_rate_limiter_lru_bounded(void **state)
{
    (void)state;
    cf_rate_limiter *rl = NULL;
    assert_cf_ok(cf_rate_limiter_new(0.001, 1, 3, &rl));
    uint64_t t = 5000;
    assert_true(cf_rate_limiter_allow(rl, "a", t));
    assert_true(cf_rate_limiter_allow(rl, "b", t));
    assert_true(cf_rate_limiter_allow(rl, "c", t));
    assert_false(cf_rate_limiter_allow(rl, "a", t)); /* a is most recent now; b least */
    assert_true(cf_rate_limiter_allow(rl, "d", t));  /* evicts b */
    assert_int_equal(cf_rate_limiter_size(rl), 3);
    assert_false(cf_rate_limiter_allow(rl, "a", t)); /* still tracked: still empty */
    assert_false(cf_rate_limiter_allow(rl, "c", t)); /* still tracked */
    assert_true(cf_rate_limiter_allow(rl, "b", t));  /* forgotten: fresh bucket (evicts d) */
    assert_true(cf_rate_limiter_allow(rl, "d", t));  /* d was evicted, fresh again */
    /* Many distinct peers never grow the table. */
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "198.51.100.%d", i);
        assert_true(cf_rate_limiter_allow(rl, key, t));
    }
    assert_int_equal(cf_rate_limiter_size(rl), 3);
    cf_rate_limiter_free(rl);
}

static void test_parse_host_port(void **state)
{
    (void)state;
    char host[64];
    uint16_t port = 1;
    assert_cf_ok(cf_parse_host_port("127.0.0.1:8443", 0, host, sizeof host, &port));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8443);
    assert_cf_ok(cf_parse_host_port("[::1]:0", 0, host, sizeof host, &port));
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_cf_ok(cf_parse_host_port("gateway.example-1.com", 443, host, sizeof host, &port));
    assert_string_equal(host, "gateway.example-1.com");
    assert_int_equal(port, 443);
    assert_cf_ok(cf_parse_host_port("[fe80::1]", 80, host, sizeof host, &port));
    assert_string_equal(host, "fe80::1");
    assert_int_equal(port, 80);
    assert_cf_ok(cf_parse_host_port("localhost:65535", 0, host, sizeof host, &port));
    assert_int_equal(port, 65535);

    const char *bad[] = {"", ":8080", "host", "host:", "host:65536", "host:-1", "host:+1", "host:123456",
                         "::1:80", "[::1", "[::1]x", "[::1]:", "[]:80", "ho st:1", "h/x:1", "[::g]:1",
                         "host:80:90", "a:1x", "[1.2.3.4]:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_cf_error(cf_parse_host_port(bad[i], 0, host, sizeof host, &port), CF_E_CONFIG);
    }
    char tiny[4];
    assert_cf_error(cf_parse_host_port("abcd:1", 0, tiny, sizeof tiny, &port), CF_E_CONFIG);
    assert_cf_ok(cf_parse_host_port("abc:1", 0, tiny, sizeof tiny, &port));
}

int main(void)
{
    cf_log_init("test_daemon", CF_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags_precedence),
        cmocka_unit_test(test_flags_errors),
        cmocka_unit_test(test_flags_secret_file_and_help),
        cmocka_unit_test(test_signals_through_loop),
        cmocka_unit_test(test_rate_limiter_bucket),
        cmocka_unit_test(test_rate_limiter_lru_bounded),
        cmocka_unit_test(test_parse_host_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
