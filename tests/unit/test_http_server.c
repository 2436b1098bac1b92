/* test_http_server.c — the evhttp server on one in-process loop, loopback
 * only: round trip through the curl client, routing and JSON errors, 413,
 * health and metrics, deferred responses with client disconnect, streaming
 * with a slow reader (backpressure) and a vanishing reader, read timeout,
 * graceful shutdown (drain, forced, waiting for queued output), and a
 * multi-megabyte stream over TLS with backpressure. */
#include "test_helper.h"
#include "test_timing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "confide/http_client.h"
#include "confide/http_server.h"
#include "confide/log.h"
#include "confide/metrics.h"

/* ---- fixture and loop helpers ----------------------------------------------- */

/* A raw client socket read from the loop. */
typedef struct reader {
    int fd;
    struct event *ev;
    size_t total;
    char head[16];
    char tail[8];
    bool eof;
} reader;

/* A client call collected into a buffer. */
typedef struct result {
    bool done;
    cf_http_error error;
    long status;
    char content_type[128];
    char x_header[128];
    cf_buf body;
} result;

struct fixture;

/* Relay: a server stream fed by a client call (worker / proxy pattern). */
typedef struct relay {
    struct fixture *f;
    cf_http_request *down;
    cf_http_call *up;
    int up_pauses;
    int up_resumes;
    bool finished;
    bool down_closed;
    cf_http_error up_error;
} relay;

/* Everything a test holds lives here (on the heap, freed by the cmocka
 * teardown), so that an assertion failing mid-test cannot leave callbacks
 * pointing into a dead stack frame, nor leak sockets, events or calls. */
typedef struct fixture {
    struct event_base *base;
    struct event *tick;
    cf_http_server *server;
    cf_http_client *client;
    cf_metrics *metrics;
    char url[128];
    result res;
    reader rd;
    relay rl;
    int raw_fds[4];
    bool shutdown_started;
    bool shutdown_done;
    /* handler state */
    cf_http_request *held;
    int close_calls;
    bool closed;
    /* streaming producer */
    size_t produced;
    size_t produce_total;
    size_t chunk;
    size_t max_pending;
    int congestion_events;
    int writable_calls;
    bool stream_ended;
    bool stream_write_failed;
} fixture;

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* One pass of the loop; the fixture's 5 ms tick bounds how long it blocks.
 * False if the loop cannot run (an assertion longjmped out of a callback
 * and left it marked running). */
static bool pump(fixture *f) { return event_base_loop(f->base, EVLOOP_ONCE) == 0; }

/* Run the loop until `cond` holds, for at most a generous budget that only
 * runs out when the test is failing anyway; the value of `cond`. */
#define RUN_UNTIL(f, cond)                                                                                    \
    ({                                                                                                        \
        long deadline_ = cf_test_now_ms() + cf_test_budget_ms(CF_TEST_WAIT_MS);                               \
        while (!(cond) && cf_test_now_ms() < deadline_ && pump(f)) {                                           \
        }                                                                                                     \
        (bool)(cond);                                                                                         \
    })

/* Run the loop for `ms` of wall-clock time: only to check that something
 * does NOT happen meanwhile (a slow machine can only make this pass). */
static void run_for(fixture *f, int ms)
{
    long end = cf_test_now_ms() + ms;
    while (cf_test_now_ms() < end && pump(f)) {
    }
}

/* Run the loop until *value has stayed the same for 100 ms AND 20 loop
 * passes (the kernel may keep absorbing bytes for a while: socket buffer
 * autotuning). Counting passes matters on a loaded machine: a process that
 * was not scheduled for 100 ms has not let anything happen meanwhile. */
static bool run_until_steady(fixture *f, const size_t *value)
{
    long deadline = cf_test_now_ms() + cf_test_budget_ms(CF_TEST_WAIT_MS);
    size_t seen = *value;
    long since = cf_test_now_ms();
    int passes = 0;
    while (cf_test_now_ms() < deadline && pump(f)) {
        if (*value != seen) {
            seen = *value;
            since = cf_test_now_ms();
            passes = 0;
        } else if (++passes >= 20 && cf_test_now_ms() - since >= 100) {
            return true;
        }
    }
    return false;
}

static void shutdown_done(void *arg) { ((fixture *)arg)->shutdown_done = true; }

static void server_shutdown(fixture *f, unsigned deadline_ms)
{
    f->shutdown_started = true;
    f->shutdown_done = false;
    cf_http_server_shutdown(f->server, deadline_ms, shutdown_done, f);
}

static fixture *fx_new(void **state, const cf_http_server_config *cfg_in)
{
    assert_null(*state);
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    for (size_t i = 0; i < sizeof f->raw_fds / sizeof f->raw_fds[0]; i++) {
        f->raw_fds[i] = -1;
    }
    f->rd.fd = -1;
    cf_buf_init(&f->res.body, 1 << 24);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->tick = event_new(f->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(f->tick, &tv);
    assert_cf_ok(cf_metrics_new(&f->metrics));
    cf_http_server_config cfg = cfg_in ? *cfg_in : (cf_http_server_config){0};
    cfg.metrics = f->metrics;
    cfg.name = "test";
    assert_cf_ok(cf_http_server_new(f->base, &cfg, &f->server));
    cf_http_client_config cc = {.allow_plain_http = true,
                                .connect_timeout_ms = (unsigned)cf_test_budget_ms(CF_TEST_WAIT_MS)};
    assert_cf_ok(cf_http_client_new(f->base, &cc, &f->client));
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%u", cf_http_server_port(f->server));
    return f;
}

static void reader_stop(reader *rd);

/* Used by the tests on success and by the teardown after a failure. */
static void fx_free(void **state)
{
    fixture *f = *state;
    if (f == NULL) {
        return;
    }
    *state = NULL;
    reader_stop(&f->rd);
    for (size_t i = 0; i < sizeof f->raw_fds / sizeof f->raw_fds[0]; i++) {
        if (f->raw_fds[i] >= 0) {
            close(f->raw_fds[i]);
        }
    }
    /* Freeing the client cancels its calls without callbacks (a failed test
     * may have left one pointing at its result); the relay must then not
     * cancel its upstream call a second time. */
    f->rl.up = NULL;
    cf_http_client_free(f->client);
    /* Finish what is still in flight the way a daemon does, so that every
     * on_close runs and frees its handle. */
    if (f->server != NULL && !f->shutdown_started) {
        server_shutdown(f, 0);
    }
    if (f->server != NULL && RUN_UNTIL(f, f->shutdown_done)) {
        event_base_loop(f->base, EVLOOP_NONBLOCK); /* close notices activated by the shutdown */
    }
    cf_http_server_free(f->server);
    cf_metrics_free(f->metrics);
    if (f->tick != NULL) {
        event_free(f->tick);
    }
    if (f->base != NULL) {
        event_base_free(f->base);
    }
    cf_buf_free(&f->res.body);
    free(f);
}

static int fx_teardown(void **state)
{
    fx_free(state);
    return 0;
}

static const char *url(fixture *f, const char *path)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s%s", f->url, path);
    return buf;
}

/* ---- a client call collected into the fixture's result ------------------------------- */

static void res_response(cf_http_call *call, long status, void *arg)
{
    result *r = arg;
    r->status = status;
    const char *ct = cf_http_call_header(call, "content-type");
    const char *x = cf_http_call_header(call, "x-test");
    snprintf(r->content_type, sizeof r->content_type, "%s", ct ? ct : "");
    snprintf(r->x_header, sizeof r->x_header, "%s", x ? x : "");
}

static cf_http_body_action res_body(cf_http_call *call, cf_slice data, void *arg)
{
    result *r = arg;
    (void)call;
    return cf_is_ok(cf_buf_append_slice(&r->body, data)) ? CF_HTTP_BODY_CONTINUE : CF_HTTP_BODY_ABORT;
}

static void res_done(cf_http_call *call, cf_http_error error, void *arg)
{
    result *r = arg;
    (void)call;
    r->done = true;
    r->error = error;
}

static const result *do_call(fixture *f, const char *method, const char *path, cf_slice body)
{
    result *r = &f->res;
    cf_buf_free(&r->body);
    memset(r, 0, sizeof *r);
    cf_buf_init(&r->body, 1 << 24);
    /* The client's total timeout is not under test here: only a backstop. */
    cf_http_call_opts o = {.method = method,
                           .url = url(f, path),
                           .body = body,
                           .total_timeout_ms = (unsigned)cf_test_budget_ms(CF_TEST_WAIT_MS),
                           .on_response = res_response,
                           .on_body = res_body,
                           .on_done = res_done,
                           .arg = r};
    assert_cf_ok(cf_http_call_start(f->client, &o, NULL));
    assert_true(RUN_UNTIL(f, r->done));
    return r;
}

static json_t *body_json(const result *r)
{
    json_error_t err;
    json_t *j = json_loadb((const char *)r->body.data, r->body.len, 0, &err);
    assert_non_null(j);
    return j;
}

static void assert_openai_error(const result *r, const char *type, const char *code)
{
    json_t *j = body_json(r);
    json_t *e = json_object_get(j, "error");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "type")), type);
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_true(json_is_string(json_object_get(e, "message")));
    json_decref(j);
    assert_string_equal(r->content_type, "application/json");
}

/* ---- handlers ------------------------------------------------------------------ */

static void echo_handler(cf_http_request *req, void *arg)
{
    (void)arg;
    char id[32];
    snprintf(id, sizeof id, "%016llx", (unsigned long long)cf_http_request_id(req));
    const char *in = cf_http_request_header(req, "X-Test");
    cf_http_header h[] = {{"X-Test", in ? in : "none"}, {"X-Request-Id", id}, {NULL, NULL}};
    assert_cf_ok(cf_http_respond(req, 200, "application/octet-stream", cf_http_request_body(req), h));
}

static void error_handler(cf_http_request *req, void *arg)
{
    (void)arg;
    cf_http_header h[] = {{"X-Test", "err"}, {"Retry-After", "3"}, {NULL, NULL}};
    /* Header injection is refused and leaves the request usable. */
    cf_http_header bad[] = {{"X-Evil", "a\r\nSet-Cookie: x"}, {NULL, NULL}};
    assert_cf_error(cf_http_respond(req, 200, "text/plain", cf_slice_cstr("x"), bad), CF_E_INVALID_ARGUMENT);
    assert_cf_ok(cf_http_respond_error(req, 429, "rate_limit_error", "rate_limited", "Slow down \"please\".", h));
}

static void json_handler(cf_http_request *req, void *arg)
{
    (void)arg;
    json_t *j = json_pack("{s:s, s:i}", "object", "list", "n", 3);
    assert_cf_ok(cf_http_respond_json(req, 201, j, NULL));
    json_decref(j);
}

static void test_round_trip_routing_and_errors(void **state)
{
    fixture *f = fx_new(state, NULL);
    assert_cf_ok(cf_http_server_route(f->server, "POST", "/echo", echo_handler, f));
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/err", error_handler, f));
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/json", json_handler, f));
    assert_cf_error(cf_http_server_route(f->server, "POST", "/echo", echo_handler, f), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_http_server_route(f->server, "BREW", "/x", echo_handler, f), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_http_server_route(f->server, "GET", "nopath", echo_handler, f), CF_E_INVALID_ARGUMENT);
    const result *r;

    /* Echo of a binary body, twice over one reused connection. */
    uint8_t payload[3000];
    for (size_t i = 0; i < sizeof payload; i++) {
        payload[i] = (uint8_t)(i * 7);
    }
    for (int round = 0; round < 2; round++) {
        r = do_call(f, "POST", "/echo", cf_slice_make(payload, sizeof payload));
        assert_int_equal(r->error, CF_HTTP_OK);
        assert_int_equal(r->status, 200);
        assert_string_equal(r->content_type, "application/octet-stream");
        assert_string_equal(r->x_header, "none");
        assert_int_equal(r->body.len, sizeof payload);
        assert_memory_equal(r->body.data, payload, sizeof payload);
    }

    r = do_call(f, "GET", "/json", CF_SLICE_EMPTY);
    assert_int_equal(r->status, 201);
    json_t *j = body_json(r);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 3);
    json_decref(j);

    r = do_call(f, "GET", "/err", CF_SLICE_EMPTY);
    assert_int_equal(r->status, 429);
    assert_string_equal(r->x_header, "err");
    assert_openai_error(r, "rate_limit_error", "rate_limited");
    j = body_json(r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                        "Slow down \"please\".");
    json_decref(j);

    r = do_call(f, "GET", "/nope?x=1", CF_SLICE_EMPTY);
    assert_int_equal(r->status, 404);
    assert_openai_error(r, "invalid_request_error", "unknown_url");

    r = do_call(f, "GET", "/echo", CF_SLICE_EMPTY);
    assert_int_equal(r->status, 405);
    assert_openai_error(r, "invalid_request_error", "method_not_allowed");
    assert_int_equal(cf_http_server_active(f->server), 0);
    fx_free(state);
}

static cf_result unhealthy(void *arg)
{
    bool *ok = arg;
    CF_ENSURE_MSG(*ok, CF_E_UPSTREAM, "backend down");
    return CF_OK;
}

static void test_health_and_metrics(void **state)
{
    fixture *f = fx_new(state, NULL);
    static bool healthy;
    healthy = true;
    assert_cf_ok(cf_http_server_add_health(f->server, unhealthy, &healthy));
    assert_cf_ok(cf_http_server_add_metrics(f->server, f->metrics));
    const result *r = do_call(f, "GET", "/healthz", CF_SLICE_EMPTY);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body.len, strlen("{\"status\":\"ok\"}"));
    assert_memory_equal(r->body.data, "{\"status\":\"ok\"}", r->body.len);
    healthy = false;
    r = do_call(f, "GET", "/healthz", CF_SLICE_EMPTY);
    assert_int_equal(r->status, 503);
    assert_openai_error(r, "server_error", "upstream_error");
    do_call(f, "GET", "/missing", CF_SLICE_EMPTY);

    r = do_call(f, "GET", "/metrics", CF_SLICE_EMPTY);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->content_type, CF_METRICS_CONTENT_TYPE);
    assert_cf_ok(cf_buf_append_u8(&f->res.body, 0));
    const char *text = (const char *)r->body.data;
    assert_non_null(strstr(text, "# TYPE confide_http_requests_total counter\n"));
    assert_non_null(strstr(text, "confide_http_requests_total{server=\"test\",code=\"2xx\"} 1\n"));
    assert_non_null(strstr(text, "confide_http_requests_total{server=\"test\",code=\"4xx\"} 1\n"));
    assert_non_null(strstr(text, "confide_http_requests_total{server=\"test\",code=\"5xx\"} 1\n"));
    /* The /metrics request itself is in flight while rendering. */
    assert_non_null(strstr(text, "confide_http_requests_active{server=\"test\"} 1\n"));
    assert_non_null(strstr(text, "confide_http_request_duration_seconds_count{server=\"test\"} 3\n"));
    fx_free(state);
}

static void test_body_limit_413(void **state)
{
    cf_http_server_config cfg = {.max_body_size = 1024};
    fixture *f = fx_new(state, &cfg);
    assert_cf_ok(cf_http_server_route(f->server, "POST", "/echo", echo_handler, f));
    static uint8_t big[5000];
    memset(big, 'a', sizeof big);
    const result *r = do_call(f, "POST", "/echo", cf_slice_make(big, 1024));
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body.len, 1024);
    r = do_call(f, "POST", "/echo", cf_slice_make(big, 1025));
    assert_int_equal(r->status, 413);
    assert_openai_error(r, "invalid_request_error", "request_too_large");
    /* Far beyond the limit: evhttp refuses before reading the body. */
    r = do_call(f, "POST", "/echo", cf_slice_make(big, sizeof big));
    if (r->error == CF_HTTP_OK) {
        assert_int_equal(r->status, 413);
    } else {
        /* curl may see the connection close while still sending the body. */
        assert_int_equal(r->error, CF_HTTP_ERR_PROTOCOL);
    }
    fx_free(state);
}

/* ---- raw sockets for slow / vanishing readers ---------------------------------------- */

/* A connected client socket, owned by the fixture until raw_close or
 * reader_start takes it. */
static int raw_connect(fixture *f, int rcvbuf)
{
    size_t slot = 0;
    while (slot < sizeof f->raw_fds / sizeof f->raw_fds[0] && f->raw_fds[slot] >= 0) {
        slot++;
    }
    assert_true(slot < sizeof f->raw_fds / sizeof f->raw_fds[0]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    f->raw_fds[slot] = fd;
    if (rcvbuf > 0) {
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(cf_http_server_port(f->server))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* Forget fd in the fixture; close it if `do_close`. */
static void raw_release(fixture *f, int fd, bool do_close)
{
    for (size_t i = 0; i < sizeof f->raw_fds / sizeof f->raw_fds[0]; i++) {
        if (f->raw_fds[i] == fd) {
            f->raw_fds[i] = -1;
        }
    }
    if (do_close) {
        close(fd);
    }
}

static void raw_close(fixture *f, int fd) { raw_release(f, fd, true); }

static void raw_send(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(fd, s, n), (ssize_t)n);
}

static void reader_cb(evutil_socket_t fd, short what, void *arg)
{
    reader *rd = arg;
    (void)what;
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
        if (rd->total < sizeof rd->head - 1) {
            size_t h = sizeof rd->head - 1 - rd->total < (size_t)n ? sizeof rd->head - 1 - rd->total : (size_t)n;
            memcpy(rd->head + rd->total, buf, h);
        }
        rd->total += (size_t)n;
        size_t keep = (size_t)n < 7 ? (size_t)n : 7;
        size_t old = strlen(rd->tail);
        if (old + keep > 7) {
            memmove(rd->tail, rd->tail + (old + keep - 7), 7 - keep);
            old = 7 - keep;
        }
        memcpy(rd->tail + old, buf + n - keep, keep);
        rd->tail[old + keep] = '\0';
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        rd->eof = true;
        event_del(rd->ev);
    }
}

/* Start reading fd (taken over from the fixture's raw sockets) into f->rd. */
static reader *reader_start(fixture *f, int fd)
{
    reader *rd = &f->rd;
    assert_null(rd->ev);
    raw_release(f, fd, false);
    memset(rd, 0, sizeof *rd);
    rd->fd = fd;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    rd->ev = event_new(f->base, fd, EV_READ | EV_PERSIST, reader_cb, rd);
    assert_non_null(rd->ev);
    event_add(rd->ev, NULL);
    return rd;
}

static void reader_stop(reader *rd)
{
    if (rd->ev != NULL) {
        event_free(rd->ev);
        rd->ev = NULL;
    }
    if (rd->fd >= 0) {
        close(rd->fd);
        rd->fd = -1;
    }
}

static bool chunked_end_seen(const reader *rd) { return strcmp(rd->tail, "\r\n0\r\n\r\n") == 0; }

/* Producer: write chunks while the client keeps up; stop on congestion and
 * wait for on_writable. */
static void produce(cf_http_request *req, fixture *f)
{
    static uint8_t chunk[16384];
    memset(chunk, 'x', sizeof chunk);
    while (f->produced < f->produce_total) {
        if (cf_http_stream_congested(req)) {
            f->congestion_events++;
            return;
        }
        size_t n = f->produce_total - f->produced < f->chunk ? f->produce_total - f->produced : f->chunk;
        if (cf_is_error(cf_http_stream_write(req, cf_slice_make(chunk, n)))) {
            f->stream_write_failed = true;
            return;
        }
        f->produced += n;
        size_t p = cf_http_stream_pending(req);
        if (p > f->max_pending) {
            f->max_pending = p;
        }
    }
    cf_http_stream_end(req);
    f->held = NULL;
    f->stream_ended = true;
}

static void on_writable(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    f->writable_calls++;
    produce(req, f);
}

static void on_stream_close(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    f->close_calls++;
    f->closed = true;
    /* Writes after the client left fail; finishing frees the handle. */
    assert_cf_error(cf_http_stream_write(req, cf_slice_cstr("late")), CF_E_IO);
    cf_http_stream_end(req);
    f->held = NULL;
}

static void stream_handler(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    cf_http_stream_callbacks cbs = {.on_writable = on_writable, .on_close = on_stream_close};
    cf_http_header h[] = {{"Cache-Control", "no-cache"}, {NULL, NULL}};
    assert_cf_ok(cf_http_stream_start(req, 200, "text/event-stream", h, &cbs, f));
    f->held = req;
    produce(req, f);
}

static void test_stream_backpressure_slow_reader(void **state)
{
    cf_http_server_config cfg = {.stream_high_watermark = 64 * 1024, .stream_low_watermark = 16 * 1024};
    fixture *f = fx_new(state, &cfg);
    f->chunk = 16384;
    f->produce_total = (size_t)(cf_test_under_valgrind() ? 12 : 24) * 1024 * 1024;
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/stream", stream_handler, f));

    int fd = raw_connect(f, 4096);
    raw_send(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    /* The client reads nothing: the kernel buffers fill, then our output
     * buffer reaches the high watermark and the producer must stop. */
    assert_true(RUN_UNTIL(f, f->congestion_events > 0));
    /* The kernel may still absorb some bytes (socket buffer autotuning);
     * wait for the steady state where the producer stays paused. */
    assert_true(run_until_steady(f, &f->produced));
    /* Paused: nothing more produced while the client does not read. */
    assert_true(cf_http_stream_congested(f->held));
    assert_true(f->produced < f->produce_total);
    /* Memory stays bounded: at most the high watermark plus one chunk. */
    assert_true(f->max_pending <= 64 * 1024 + f->chunk);
    int writable_before = f->writable_calls;

    /* Now read: the producer is resumed and the stream completes. */
    reader *rd = reader_start(f, fd);
    assert_true(RUN_UNTIL(f, f->stream_ended));
    assert_true(f->writable_calls > writable_before);
    assert_true(f->congestion_events >= 1);
    assert_false(f->stream_write_failed);
    assert_true(f->max_pending <= 64 * 1024 + f->chunk);
    /* Drain the rest: the chunked stream ends with the zero chunk. */
    assert_true(RUN_UNTIL(f, chunked_end_seen(rd)));
    assert_true(rd->total > f->produce_total);
    assert_int_equal(f->close_calls, 0);
    fx_free(state);
}

/* A producer that ignores backpressure hits the hard cap instead of
 * growing memory without bound. */
static void greedy_handler(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    static uint8_t chunk[65536];
    cf_http_stream_callbacks cbs = {.on_close = on_stream_close};
    assert_cf_ok(cf_http_stream_start(req, 200, "application/octet-stream", NULL, &cbs, f));
    size_t cap = 4 * 16384 + 1024 * 1024;
    for (int i = 0; i < 100; i++) {
        cf_result r = cf_http_stream_write(req, cf_slice_make(chunk, sizeof chunk));
        if (cf_is_error(r)) {
            assert_int_equal(cf_error_code_last(), CF_E_LIMIT);
            f->stream_write_failed = true;
            break;
        }
        f->produced += sizeof chunk;
        assert_true(cf_http_stream_congested(req) || cf_http_stream_pending(req) < 16384);
    }
    assert_true(f->stream_write_failed);
    assert_true(cf_http_stream_pending(req) <= cap);
    assert_true(f->produced <= cap);
    cf_http_stream_end(req);
    f->stream_ended = true;
}

static void test_stream_hard_cap(void **state)
{
    cf_http_server_config cfg = {.stream_high_watermark = 16384};
    fixture *f = fx_new(state, &cfg);
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/greedy", greedy_handler, f));
    int fd = raw_connect(f, 4096);
    raw_send(fd, "GET /greedy HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(RUN_UNTIL(f, f->stream_ended));
    assert_int_equal(cf_http_server_active(f->server), 0);
    fx_free(state);
}

static void test_stream_client_disconnect(void **state)
{
    cf_http_server_config cfg = {.stream_high_watermark = 32 * 1024};
    fixture *f = fx_new(state, &cfg);
    f->chunk = 1024;
    f->produce_total = 1u << 30; /* endless: only the disconnect stops it */
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/stream", stream_handler, f));
    int fd = raw_connect(f, 4096);
    raw_send(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(RUN_UNTIL(f, f->congestion_events > 0));
    assert_non_null(f->held);
    raw_close(f, fd); /* the client vanishes mid-stream */
    assert_true(RUN_UNTIL(f, f->closed));
    assert_int_equal(f->close_calls, 1);
    assert_null(f->held);
    assert_int_equal(cf_http_server_active(f->server), 0);
    fx_free(state);
}

/* A handler that waits (like the worker waiting for llama-server): the
 * client disconnecting is noticed before any response byte is written. */
static void on_deferred_close(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    f->close_calls++;
    f->closed = true;
    assert_true(cf_http_request_peer_gone(req));
    assert_cf_ok(cf_http_respond(req, 200, "text/plain", cf_slice_cstr("too late"), NULL));
    f->held = NULL;
}

static void deferred_handler(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    assert_string_equal(cf_http_request_peer(req), "127.0.0.1");
    assert_string_equal(cf_http_request_method(req), "POST");
    assert_string_equal(cf_http_request_path(req), "/wait");
    assert_string_equal(cf_http_request_query(req), "a=b");
    cf_slice body = cf_http_request_body(req);
    assert_true(cf_slice_eq_cstr(body, "hello"));
    f->held = req;
    cf_http_request_on_close(req, on_deferred_close, f);
}

static void test_deferred_response_client_gone(void **state)
{
    fixture *f = fx_new(state, NULL);
    assert_cf_ok(cf_http_server_route(f->server, "POST", "/wait", deferred_handler, f));
    int fd = raw_connect(f, 0);
    raw_send(fd, "POST /wait?a=b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_true(RUN_UNTIL(f, f->held != NULL));
    assert_int_equal(cf_http_server_active(f->server), 1);
    raw_close(f, fd);
    assert_true(RUN_UNTIL(f, f->closed));
    assert_int_equal(f->close_calls, 1);
    assert_int_equal(cf_http_server_active(f->server), 0);
    fx_free(state);
}

static void test_header_limit(void **state)
{
    cf_http_server_config cfg = {.max_headers_size = 2048};
    fixture *f = fx_new(state, &cfg);
    assert_cf_ok(cf_http_server_route(f->server, "POST", "/echo", echo_handler, f));
    int fd = raw_connect(f, 0);
    char big[4096];
    memset(big, 'h', sizeof big);
    big[sizeof big - 1] = '\0';
    raw_send(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nX-Big: ");
    raw_send(fd, big);
    raw_send(fd, "\r\nContent-Length: 0\r\n\r\n");
    reader *rd = reader_start(f, fd);
    assert_true(RUN_UNTIL(f, rd->eof)); /* answered, then closed */
    assert_memory_equal(rd->head, "HTTP/1.1 400", 12); /* evhttp: header block too large */
    assert_int_equal(cf_http_server_active(f->server), 0); /* the handler never ran */
    fx_free(state);
}

static void test_read_timeout_closes_slow_client(void **state)
{
    cf_http_server_config cfg = {.read_timeout_ms = 150};
    fixture *f = fx_new(state, &cfg);
    int fd = raw_connect(f, 0);
    raw_send(fd, "GET /never-finished HTTP/1.1\r\nHost:"); /* headers never end */
    long t0 = cf_test_now_ms();
    reader *rd = reader_start(f, fd);
    assert_true(RUN_UNTIL(f, rd->eof));
    /* The timeout closed it, not something immediate (libevent's coarse
     * clock, up to a 10 ms tick behind ours, may make it look early). */
    assert_true(cf_test_now_ms() - t0 >= 130);
    fx_free(state);
}

/* ---- relay: server stream fed by a client call (worker / proxy pattern) --------------- */

static cf_http_body_action relay_body(cf_http_call *call, cf_slice data, void *arg)
{
    relay *rl = arg;
    if (cf_is_error(cf_http_stream_write(rl->down, data))) {
        return CF_HTTP_BODY_ABORT;
    }
    if (cf_http_stream_congested(rl->down)) {
        cf_http_call_pause(call); /* this chunk is consumed; wait for on_writable */
        rl->up_pauses++;
    }
    return CF_HTTP_BODY_CONTINUE;
}

static void relay_done(cf_http_call *call, cf_http_error error, void *arg)
{
    relay *rl = arg;
    (void)call;
    rl->up = NULL;
    rl->up_error = error;
    cf_http_stream_end(rl->down);
    rl->down = NULL;
    rl->finished = true;
}

static void relay_writable(cf_http_request *req, void *arg)
{
    relay *rl = arg;
    (void)req;
    if (rl->up != NULL && cf_http_call_paused(rl->up)) {
        rl->up_resumes++;
        cf_http_call_resume(rl->up);
    }
}

static void relay_close(cf_http_request *req, void *arg)
{
    relay *rl = arg;
    rl->down_closed = true;
    if (rl->up != NULL) {
        cf_http_call_cancel(rl->up); /* client gone: stop the upstream work */
        rl->up = NULL;
    }
    cf_http_stream_end(req);
    rl->down = NULL;
    rl->finished = true;
}

static void relay_handler(cf_http_request *req, void *arg)
{
    relay *rl = arg;
    cf_http_stream_callbacks cbs = {.on_writable = relay_writable, .on_close = relay_close};
    assert_cf_ok(cf_http_stream_start(req, 200, "text/event-stream", NULL, &cbs, rl));
    rl->down = req;
    cf_http_call_opts o = {.url = url(rl->f, "/stream"), .on_body = relay_body, .on_done = relay_done, .arg = rl};
    assert_cf_ok(cf_http_call_start(rl->f->client, &o, &rl->up));
}

static void test_relay_backpressure_both_ways(void **state)
{
    cf_http_server_config cfg = {.stream_high_watermark = 64 * 1024, .stream_low_watermark = 16 * 1024};
    fixture *f = fx_new(state, &cfg);
    relay *rl = &f->rl;
    rl->f = f;
    f->chunk = 16384;
    f->produce_total = (size_t)(cf_test_under_valgrind() ? 12 : 24) * 1024 * 1024;
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/stream", stream_handler, f));
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/relay", relay_handler, rl));

    int fd = raw_connect(f, 4096);
    raw_send(fd, "GET /relay HTTP/1.1\r\nHost: x\r\n\r\n");
    /* The reader does not read: the relay pauses its upstream call, then
     * the upstream producer (the "inference server") is congested too. */
    assert_true(RUN_UNTIL(f, rl->up_pauses > 0));
    assert_true(run_until_steady(f, &f->produced));
    assert_true(f->produced < f->produce_total);
    assert_true(f->congestion_events > 0);
    /* The relay may be between a resume (the client's socket buffer took a
     * last piece) and its next pause when the producer goes quiet; with the
     * client still not reading it must end up paused. */
    assert_true(RUN_UNTIL(f, cf_http_call_paused(rl->up)));
    assert_true(cf_http_stream_pending(rl->down) <= 64 * 1024 + 16384);

    /* Reading resumes everything; the whole stream arrives. */
    reader *rd = reader_start(f, fd);
    assert_true(RUN_UNTIL(f, rl->finished));
    assert_int_equal(rl->up_error, CF_HTTP_OK);
    assert_true(rl->up_resumes > 0);
    assert_true(f->stream_ended);
    assert_true(RUN_UNTIL(f, chunked_end_seen(rd)));
    assert_true(rd->total > f->produce_total);
    reader_stop(rd);

    /* Second run: the reader vanishes; the relay cancels its upstream call
     * and the upstream server sees its client (the relay) go away. */
    memset(rl, 0, sizeof *rl);
    rl->f = f;
    f->produced = 0;
    f->stream_ended = false;
    f->closed = false;
    f->close_calls = 0;
    f->congestion_events = 0;
    f->produce_total = 1u << 30;
    fd = raw_connect(f, 4096);
    raw_send(fd, "GET /relay HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(RUN_UNTIL(f, rl->up_pauses > 0));
    raw_close(f, fd);
    assert_true(RUN_UNTIL(f, rl->down_closed));
    assert_true(RUN_UNTIL(f, f->closed)); /* upstream stream got on_close */
    assert_int_equal(cf_http_client_active(f->client), 0);
    assert_int_equal(cf_http_server_active(f->server), 0);
    fx_free(state);
}

/* A long-lived event stream: one event, then silence until closed. */
static void idle_stream_handler(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    cf_http_stream_callbacks cbs = {.on_writable = on_writable, .on_close = on_stream_close};
    assert_cf_ok(cf_http_stream_start(req, 200, "text/event-stream", NULL, &cbs, f));
    assert_cf_ok(cf_http_stream_write(req, cf_slice_cstr("data: hi\n\n")));
    assert_cf_ok(cf_http_stream_write(req, CF_SLICE_EMPTY)); /* no-op, must not end the stream */
    f->held = req;
}

/* ---- graceful shutdown ---------------------------------------------------------------- */

static void test_shutdown_drains_then_forces(void **state)
{
    fixture *f = fx_new(state, NULL);
    f->chunk = 100;
    f->produce_total = 1u << 30;
    assert_cf_ok(cf_http_server_route(f->server, "POST", "/wait", deferred_handler, f));
    uint16_t port = cf_http_server_port(f->server);

    /* 1. A request in flight; shutdown waits for it, then completes. The
     * deadline is far away: only the request finishing may end the drain. */
    int fd = raw_connect(f, 0);
    raw_send(fd, "POST /wait?a=b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_true(RUN_UNTIL(f, f->held != NULL));
    server_shutdown(f, (unsigned)cf_test_budget_ms(CF_TEST_WAIT_MS));
    run_for(f, 30);
    assert_false(f->shutdown_done);
    /* Not accepting any more. */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int probe_rc = connect(probe, (struct sockaddr *)&sa, sizeof sa);
    close(probe);
    assert_int_not_equal(probe_rc, 0);
    /* The in-flight request finishes normally; then shutdown is done. */
    assert_cf_ok(cf_http_respond(f->held, 200, "text/plain", cf_slice_cstr("bye"), NULL));
    f->held = NULL;
    assert_true(RUN_UNTIL(f, f->shutdown_done));
    assert_int_equal(f->close_calls, 0); /* drained, not forced */
    reader *rd = reader_start(f, fd);
    assert_true(RUN_UNTIL(f, rd->total >= 3 && strcmp(rd->tail + strlen(rd->tail) - 3, "bye") == 0));
    fx_free(state);

    /* 2. A stream that never ends (an AS key stream) is forced at the
     * deadline: its on_close runs, the client gets the terminating chunk. */
    f = fx_new(state, NULL);
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/events", idle_stream_handler, f));
    fd = raw_connect(f, 0);
    rd = reader_start(f, fd);
    raw_send(fd, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(RUN_UNTIL(f, f->held != NULL));
    server_shutdown(f, 100);
    assert_true(RUN_UNTIL(f, f->shutdown_done));
    assert_true(RUN_UNTIL(f, f->closed));
    assert_int_equal(f->close_calls, 1);
    assert_true(RUN_UNTIL(f, chunked_end_seen(rd)));
    fx_free(state);
}

/* Shutdown completes once the replies are written, not merely queued: a
 * stream that ended with 8 MiB still queued for a client that does not read
 * keeps shutdown waiting until the client reads, long before the deadline. */
static void test_shutdown_waits_for_queued_output(void **state)
{
    cf_http_server_config cfg = {.stream_high_watermark = 16 * 1024 * 1024};
    fixture *f = fx_new(state, &cfg);
    f->chunk = 16384;
    f->produce_total = 8 * 1024 * 1024;
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/stream", stream_handler, f));
    int fd = raw_connect(f, 4096);
    raw_send(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(RUN_UNTIL(f, f->stream_ended)); /* all queued, the request finished */
    assert_int_equal(cf_http_server_active(f->server), 0);

    long deadline_ms = cf_test_budget_ms(CF_TEST_WAIT_MS);
    long started = cf_test_now_ms();
    server_shutdown(f, (unsigned)deadline_ms);
    run_for(f, 200);
    assert_false(f->shutdown_done); /* the client has read nothing: the reply is still queued */

    reader *rd = reader_start(f, fd);
    assert_true(RUN_UNTIL(f, f->shutdown_done));
    assert_true(cf_test_now_ms() - started < deadline_ms); /* ended by the drain, not the deadline */
    assert_true(RUN_UNTIL(f, chunked_end_seen(rd)));
    assert_true(rd->total > f->produce_total);
    assert_int_equal(f->close_calls, 0);
    fx_free(state);
}

/* ---- TLS streaming (bufferevent_openssl) ------------------------------------------------ */

/* A self-signed P-256 certificate for 127.0.0.1, made here. */
static void make_cert(const char *dir, char *cert_path, char *key_path, size_t n)
{
    snprintf(cert_path, n, "%s/cert.pem", dir);
    snprintf(key_path, n, "%s/key.pem", dir);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                                                -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    const char *exts[][2] = {{"subjectAltName", "IP:127.0.0.1"},
                             {"basicConstraints", "critical,CA:TRUE"},
                             {"keyUsage", "critical,digitalSignature,keyCertSign"}};
    for (size_t i = 0; i < 3; i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    FILE *fc = fopen(cert_path, "w");
    FILE *fk = fopen(key_path, "w");
    assert_non_null(fc);
    assert_non_null(fk);
    assert_int_equal(PEM_write_X509(fc, x), 1);
    assert_int_equal(PEM_write_PrivateKey(fk, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fc);
    fclose(fk);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* The HTTPS client reads late: while the server has not yet been congested
 * it pauses after each piece (curl stops reading the socket, the kernel
 * buffers fill); the test resumes it once the producer has been stopped. */
static void tls_response(cf_http_call *call, long status, void *arg)
{
    res_response(call, status, &((fixture *)arg)->res);
}

static cf_http_body_action tls_body(cf_http_call *call, cf_slice data, void *arg)
{
    fixture *f = arg;
    if (f->congestion_events == 0) {
        cf_http_call_pause(call); /* this piece is consumed; no more until resumed */
    }
    return res_body(call, data, &f->res);
}

static void tls_done(cf_http_call *call, cf_http_error error, void *arg)
{
    res_done(call, error, &((fixture *)arg)->res);
}

/* A multi-megabyte stream over TLS to a client that reads late: the
 * producer is stopped by congestion, resumed by on_writable as the client
 * drains, and every byte arrives. Regression: with bufferevent_openssl a
 * stale deferred "output drained" callback made evhttp finish the reply
 * while the producer's last chunks were still queued, and they were never
 * sent. */
static void test_tls_stream_backpressure(void **state)
{
    char *dir = cf_test_tmpdir();
    char cert[512], key[512];
    make_cert(dir, cert, key, sizeof cert);
    cf_http_server_config cfg = {.tls_cert_file = cert,
                                 .tls_key_file = key,
                                 .stream_high_watermark = 64 * 1024,
                                 .stream_low_watermark = 16 * 1024};
    fixture *f = fx_new(state, &cfg);
    /* The fixture's client speaks plain HTTP; this one trusts our cert. */
    cf_http_client_free(f->client);
    f->client = NULL;
    cf_http_client_config cc = {.ca_file = cert, .connect_timeout_ms = (unsigned)cf_test_budget_ms(CF_TEST_WAIT_MS)};
    assert_cf_ok(cf_http_client_new(f->base, &cc, &f->client));
    f->chunk = 16384;
    f->produce_total = (size_t)(cf_test_under_valgrind() ? 3 : 8) * 1024 * 1024;
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/stream", stream_handler, f));

    result *r = &f->res;
    cf_buf_free(&r->body);
    memset(r, 0, sizeof *r);
    cf_buf_init(&r->body, f->produce_total);
    char u[128];
    snprintf(u, sizeof u, "https://127.0.0.1:%u/stream", cf_http_server_port(f->server));
    cf_http_call *call = NULL;
    cf_http_call_opts o = {.url = u,
                           .total_timeout_ms = (unsigned)cf_test_budget_ms(CF_TEST_WAIT_MS),
                           .on_response = tls_response,
                           .on_body = tls_body,
                           .on_done = tls_done,
                           .arg = f};
    assert_cf_ok(cf_http_call_start(f->client, &o, &call));
    assert_true(RUN_UNTIL(f, f->congestion_events > 0 || r->done));
    assert_false(r->done);
    assert_true(f->produced < f->produce_total); /* the producer was stopped */
    cf_http_call_resume(call);
    assert_true(RUN_UNTIL(f, r->done));

    assert_int_equal(r->error, CF_HTTP_OK);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body.len, f->produce_total);
    for (size_t i = 0; i < r->body.len; i++) {
        if (r->body.data[i] != 'x') {
            fail_msg("byte %zu of the stream is 0x%02x", i, r->body.data[i]);
        }
    }
    assert_true(f->stream_ended);
    assert_false(f->stream_write_failed);
    /* Resumed through on_writable, memory bounded by the high watermark plus
     * one chunk. */
    assert_true(f->writable_calls >= 1);
    assert_true(f->max_pending <= 64 * 1024 + f->chunk);
    assert_int_equal(f->close_calls, 0);
    assert_int_equal(cf_http_server_active(f->server), 0);
    fx_free(state);
    cf_test_rmrf(dir); /* curl reads the CA file at connect time: only now */
    free(dir);
}

int main(void)
{
    /* As in the daemons (cf_daemon_signals_new): a peer that vanishes while
     * evhttp flushes to it must give EPIPE, not kill the test binary. */
    signal(SIGPIPE, SIG_IGN);
    cf_log_init("test_http_server", CF_LOG_WARN);
#define T(fn) cmocka_unit_test_teardown(fn, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_round_trip_routing_and_errors),
        T(test_health_and_metrics),
        T(test_body_limit_413),
        T(test_stream_backpressure_slow_reader),
        T(test_stream_hard_cap),
        T(test_stream_client_disconnect),
        T(test_relay_backpressure_both_ways),
        T(test_deferred_response_client_gone),
        T(test_header_limit),
        T(test_read_timeout_closes_slow_client),
        T(test_shutdown_drains_then_forces),
        T(test_shutdown_waits_for_queued_output),
        T(test_tls_stream_backpressure),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
