/* test_http_client.c — the curl-multi client on the libevent loop, loopback
 * only: UNIX socket target (tiny in-test server), connection reuse, request
 * headers sent, incremental body with pause/resume, idle/total/connect
 * timeouts, size limit, cancel, TLS with an in-test self-signed certificate
 * and CA file, the plain-http policy, and the blocking cf_http_fetch. */
#define _GNU_SOURCE /* strcasestr */
#include "test_helper.h"
#include "test_timing.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "confide/http_client.h"
#include "confide/http_server.h"
#include "confide/log.h"

/* ---- loop helpers ------------------------------------------------------------ */

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Run the loop until *flag, for at most a generous budget that only runs
 * out when the test is failing anyway; returns *flag. */
static bool run_until(struct event_base *base, const bool *flag)
{
    struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(t, &tv);
    long end = cf_test_now_ms() + cf_test_budget_ms(CF_TEST_WAIT_MS);
    while (!*flag && cf_test_now_ms() <= end && event_base_loop(base, EVLOOP_ONCE) == 0) {
    }
    event_free(t);
    return *flag;
}

/* A client timeout that is not under test: only a backstop. */
static unsigned backstop_ms(void) { return (unsigned)cf_test_budget_ms(CF_TEST_WAIT_MS); }

/* The same for any condition. */
#define RUN_UNTIL(base, cond)                                                                                  \
    ({                                                                                                         \
        long deadline_ = cf_test_now_ms() + cf_test_budget_ms(CF_TEST_WAIT_MS);                                \
        while (!(cond) && cf_test_now_ms() < deadline_) {                                                      \
            run_for((base), 5);                                                                                \
        }                                                                                                      \
        (bool)(cond);                                                                                          \
    })

/* Run the loop for `ms` of wall-clock time: only to check that something
 * does NOT happen meanwhile (a slow machine can only make this pass). */
static void run_for(struct event_base *base, int ms)
{
    struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(t, &tv);
    long end = cf_test_now_ms() + ms;
    while (cf_test_now_ms() <= end && event_base_loop(base, EVLOOP_ONCE) == 0) {
    }
    event_free(t);
}

/* ---- call recorder ------------------------------------------------------------- */

typedef struct rec {
    bool done;
    cf_http_error error;
    long status;
    bool response_before_body_ok;
    bool got_response;
    int deliveries;
    int pause_first_n;  /* return PAUSE for the first n deliveries */
    bool cancel_in_body;
    bool pause_after_consume; /* consume the chunk, then pause (relay) */
    cf_http_call *call;
    char header[64];
    cf_buf body;
} rec;

static void rec_response(cf_http_call *call, long status, void *arg)
{
    rec *r = arg;
    r->got_response = true;
    r->status = status;
    r->response_before_body_ok = r->body.len == 0;
    const char *h = cf_http_call_header(call, "X-Test");
    snprintf(r->header, sizeof r->header, "%s", h ? h : "");
}

static cf_http_body_action rec_body(cf_http_call *call, cf_slice data, void *arg)
{
    rec *r = arg;
    r->deliveries++;
    assert_true(r->got_response);
    if (r->cancel_in_body) {
        cf_http_call_cancel(call);
        r->call = NULL;
        return CF_HTTP_BODY_CONTINUE;
    }
    if (r->deliveries <= r->pause_first_n) {
        return CF_HTTP_BODY_PAUSE;
    }
    assert_cf_ok(cf_buf_append_slice(&r->body, data));
    if (r->pause_after_consume) {
        cf_http_call_pause(call);
    }
    return CF_HTTP_BODY_CONTINUE;
}

static void rec_done(cf_http_call *call, cf_http_error error, void *arg)
{
    rec *r = arg;
    (void)call;
    r->done = true;
    r->error = error;
    r->call = NULL;
}

static void rec_init(rec *r) { memset(r, 0, sizeof *r), cf_buf_init(&r->body, 1 << 24); }

static cf_http_call_opts rec_opts(rec *r, const char *url)
{
    return (cf_http_call_opts){.url = url, .total_timeout_ms = backstop_ms(), .on_response = rec_response,
                               .on_body = rec_body, .on_done = rec_done, .arg = r};
}

static bool body_is(const rec *r, const char *s)
{
    return r->body.len == strlen(s) && memcmp(r->body.data, s, r->body.len) == 0;
}

/* ---- a tiny HTTP/1.1 server on a UNIX socket ------------------------------------- */

typedef struct usrv {
    struct evconnlistener *listener;
    int accepts;
    int open; /* connections not yet closed by the peer */
    int requests;
    char last_request[4096];
    char path[256];
} usrv;

typedef struct uconn {
    usrv *srv;
    struct bufferevent *bev;
} uconn;

static void uconn_read(struct bufferevent *bev, void *arg)
{
    uconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0) {
            return;
        }
        size_t head = (size_t)end.pos + 4;
        char req[4096];
        size_t take = head < sizeof req - 1 ? head : sizeof req - 1;
        evbuffer_copyout(in, req, take);
        req[take] = '\0';
        size_t body = 0;
        const char *cl = strcasestr(req, "\r\ncontent-length:");
        if (cl != NULL) {
            body = (size_t)strtoul(cl + 17, NULL, 10);
        }
        if (evbuffer_get_length(in) < head + body) {
            return;
        }
        evbuffer_drain(in, head + body);
        snprintf(c->srv->last_request, sizeof c->srv->last_request, "%s", req);
        c->srv->requests++;
        evbuffer_add_printf(bufferevent_get_output(bev),
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Test: unix\r\n"
                            "Content-Length: 5\r\n\r\nhello");
    }
}

static void uconn_event(struct bufferevent *bev, short what, void *arg)
{
    uconn *c = arg;
    (void)what;
    c->srv->open--;
    bufferevent_free(bev);
    free(c);
}

static void usrv_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    usrv *srv = arg;
    (void)sa;
    (void)len;
    srv->accepts++;
    srv->open++;
    uconn *c = calloc(1, sizeof *c);
    c->srv = srv;
    c->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, uconn_read, NULL, uconn_event, c);
    bufferevent_enable(c->bev, EV_READ);
}

static void usrv_start(struct event_base *base, usrv *srv, const char *dir)
{
    memset(srv, 0, sizeof *srv);
    snprintf(srv->path, sizeof srv->path, "%s/llama.sock", dir);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    assert_true(strlen(srv->path) < sizeof sun.sun_path);
    memcpy(sun.sun_path, srv->path, strlen(srv->path) + 1);
    srv->listener = evconnlistener_new_bind(base, usrv_accept, srv, LEV_OPT_CLOSE_ON_FREE, -1,
                                            (struct sockaddr *)&sun, sizeof sun);
    assert_non_null(srv->listener);
}

static void test_unix_socket_reuse_and_headers(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    char *dir = cf_test_tmpdir();
    usrv srv;
    usrv_start(base, &srv, dir);
    cf_http_client *client = NULL;
    assert_cf_ok(cf_http_client_new(base, NULL, &client)); /* https-only client: UNIX sockets still fine */

    for (int i = 0; i < 3; i++) {
        rec r;
        rec_init(&r);
        cf_http_call_opts o = rec_opts(&r, "http://localhost/v1/chat/completions");
        o.unix_socket = srv.path;
        o.body = cf_slice_cstr("{\"a\":1}");
        cf_http_header h[] = {{"Content-Type", "application/json"}, {"X-Trace", "t1"}, {NULL, NULL}};
        o.headers = h;
        o.accept_encoding = i == 2;
        assert_cf_ok(cf_http_call_start(client, &o, &r.call));
        assert_int_equal(cf_http_client_active(client), 1);
        assert_true(run_until(base, &r.done));
        assert_int_equal(r.error, CF_HTTP_OK);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.header, "unix");
        assert_true(r.response_before_body_ok);
        assert_true(body_is(&r, "hello"));
        assert_non_null(strstr(srv.last_request, "POST /v1/chat/completions HTTP/1.1\r\n"));
        assert_non_null(strcasestr(srv.last_request, "\r\nContent-Type: application/json\r\n"));
        assert_non_null(strcasestr(srv.last_request, "\r\nX-Trace: t1\r\n"));
        assert_non_null(strcasestr(srv.last_request, "\r\nContent-Length: 7\r\n"));
        assert_null(strcasestr(srv.last_request, "Expect:"));
        if (i < 2) {
            /* Uncompressed unless asked. */
            assert_null(strcasestr(srv.last_request, "Accept-Encoding"));
        } else {
            assert_non_null(strcasestr(srv.last_request, "Accept-Encoding"));
        }
        cf_buf_free(&r.body);
    }
    assert_int_equal(srv.requests, 3);
    assert_int_equal(srv.accepts, 1); /* one connection, reused */
    assert_int_equal(cf_http_client_active(client), 0);

    /* A missing socket is a connect failure. */
    rec r;
    rec_init(&r);
    cf_http_call_opts o = rec_opts(&r, "http://localhost/x");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/absent.sock", dir);
    o.unix_socket = missing;
    assert_cf_ok(cf_http_call_start(client, &o, NULL));
    assert_true(run_until(base, &r.done));
    assert_int_equal(r.error, CF_HTTP_ERR_CONNECT);
    assert_false(r.got_response);
    cf_buf_free(&r.body);

    cf_http_client_free(client);
    evconnlistener_free(srv.listener);
    /* The client closed its connection: wait until the server side has seen
     * it and freed its end. */
    assert_true(RUN_UNTIL(base, srv.open == 0));
    event_base_free(base);
    cf_test_rmrf(dir);
    free(dir);
}

/* ---- fixture with our own server ------------------------------------------------------ */

typedef struct fixture {
    struct event_base *base;
    cf_http_server *server;
    cf_http_client *client;
    cf_http_request *held;
    bool server_saw_close;
    /* test_blocking_fetch: the server's loop runs on its own thread */
    pthread_t server_thread;
    bool server_thread_running;
    atomic_bool stop_server;
    char base_url[128];
    char url_buf[256];
} fixture;

static void held_close(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    f->server_saw_close = true;
    if (f->held == req) {
        f->held = NULL;
    }
    cf_http_stream_end(req);
}

static void sse_handler(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    cf_http_stream_callbacks cbs = {.on_close = held_close};
    cf_http_header h[] = {{"X-Test", "sse"}, {NULL, NULL}};
    assert_cf_ok(cf_http_stream_start(req, 200, "text/event-stream", h, &cbs, f));
    assert_cf_ok(cf_http_stream_write(req, cf_slice_cstr("data: 1\n\n")));
    f->held = req;
}

static void hang_handler(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    f->held = req;
    cf_http_request_on_close(req, held_close, f);
}

static void big_handler(cf_http_request *req, void *arg)
{
    (void)arg;
    static uint8_t big[5000];
    memset(big, 'b', sizeof big);
    assert_cf_ok(cf_http_respond(req, 200, "text/plain", cf_slice_make(big, sizeof big), NULL));
}

static void echo_handler(cf_http_request *req, void *arg)
{
    (void)arg;
    cf_http_header h[] = {{"X-Test", "echo"}, {NULL, NULL}};
    assert_cf_ok(cf_http_respond(req, 200, "text/plain", cf_http_request_body(req), h));
}

/* The fixture belongs to cmocka's state: fx_teardown frees it even when an
 * assertion ended the test early (and stops the server thread first). */
static fixture *fx_new(void **state, const char *cert, const char *key)
{
    assert_null(*state);
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    f->base = event_base_new();
    cf_http_server_config cfg = {.tls_cert_file = cert, .tls_key_file = key, .name = "test"};
    assert_cf_ok(cf_http_server_new(f->base, &cfg, &f->server));
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/sse", sse_handler, f));
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/hang", hang_handler, f));
    assert_cf_ok(cf_http_server_route(f->server, "GET", "/big", big_handler, f));
    assert_cf_ok(cf_http_server_route(f->server, "POST", "/echo", echo_handler, f));
    cf_http_client_config cc = {.allow_plain_http = true, .connect_timeout_ms = backstop_ms()};
    assert_cf_ok(cf_http_client_new(f->base, &cc, &f->client));
    snprintf(f->base_url, sizeof f->base_url, "%s://127.0.0.1:%u", cert ? "https" : "http",
             cf_http_server_port(f->server));
    return f;
}

static const char *url(fixture *f, const char *path)
{
    snprintf(f->url_buf, sizeof f->url_buf, "%s%s", f->base_url, path);
    return f->url_buf;
}

static void fx_free(void **state)
{
    fixture *f = *state;
    if (f == NULL) {
        return;
    }
    *state = NULL;
    if (f->server_thread_running) {
        atomic_store(&f->stop_server, true);
        pthread_join(f->server_thread, NULL);
    }
    if (f->held != NULL) {
        cf_http_stream_end(f->held);
    }
    cf_http_client_free(f->client);
    cf_http_server_free(f->server);
    event_base_free(f->base);
    free(f);
}

static int fx_teardown(void **state)
{
    fx_free(state);
    return 0;
}

static void test_incremental_body_pause_resume(void **state)
{
    fixture *f = fx_new(state, NULL, NULL);
    rec r;
    rec_init(&r);
    r.pause_first_n = 1; /* the first chunk is refused: paused */
    cf_http_call_opts o = rec_opts(&r, url(f, "/sse"));
    o.total_timeout_ms = 0;
    /* Must not fire while paused: each paused window below lasts twice as
     * long. Long enough that a stalled process (valgrind, a loaded machine)
     * does not hit it in the short unpaused gaps either. */
    unsigned idle = (unsigned)cf_test_budget_ms(200);
    o.idle_timeout_ms = idle;
    assert_cf_ok(cf_http_call_start(f->client, &o, &r.call));
    assert_true(RUN_UNTIL(f->base, r.deliveries > 0));
    assert_int_equal(r.deliveries, 1);
    assert_true(cf_http_call_paused(r.call));
    assert_string_equal(r.header, "sse");
    assert_int_equal(cf_http_call_status(r.call), 200);
    assert_cf_ok(cf_http_stream_write(f->held, cf_slice_cstr("data: 2\n\n")));
    run_for(f->base, 2 * (int)idle); /* paused: nothing delivered, no idle timeout */
    assert_int_equal(r.deliveries, 1);
    assert_false(r.done);

    cf_http_call_resume(r.call); /* the refused chunk comes again, then more */
    assert_true(RUN_UNTIL(f->base, body_is(&r, "data: 1\n\ndata: 2\n\n")));
    assert_true(body_is(&r, "data: 1\n\ndata: 2\n\n"));

    /* Pause from outside a callback (the consumer's buffer is full). */
    cf_http_call_pause(r.call);
    int before = r.deliveries;
    assert_cf_ok(cf_http_stream_write(f->held, cf_slice_cstr("data: 3\n\n")));
    run_for(f->base, 2 * (int)idle);
    assert_int_equal(r.deliveries, before);
    assert_false(r.done);
    cf_http_call_resume(r.call);
    assert_true(RUN_UNTIL(f->base, r.body.len >= 27));
    assert_true(body_is(&r, "data: 1\n\ndata: 2\n\ndata: 3\n\n"));

    /* Relay pattern: consume a chunk, then pause from inside on_body. */
    r.pause_after_consume = true;
    assert_cf_ok(cf_http_stream_write(f->held, cf_slice_cstr("data: 4\n\n")));
    assert_true(RUN_UNTIL(f->base, r.body.len >= 36));
    assert_true(body_is(&r, "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"));
    assert_true(cf_http_call_paused(r.call));
    before = r.deliveries;
    assert_cf_ok(cf_http_stream_write(f->held, cf_slice_cstr("data: 5\n\n")));
    run_for(f->base, 2 * (int)idle);
    assert_int_equal(r.deliveries, before);
    r.pause_after_consume = false;
    cf_http_call_resume(r.call);
    assert_true(RUN_UNTIL(f->base, r.body.len >= 45));
    assert_true(body_is(&r, "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: 5\n\n"));

    cf_http_stream_end(f->held);
    f->held = NULL;
    assert_true(run_until(f->base, &r.done));
    assert_int_equal(r.error, CF_HTTP_OK);
    cf_buf_free(&r.body);
    fx_free(state);
}

static void test_timeouts_and_connect_failure(void **state)
{
    fixture *f = fx_new(state, NULL, NULL);
    rec r;

    /* Idle timeout: the server never answers; the client gives up and the
     * server notices the disconnect. */
    rec_init(&r);
    cf_http_call_opts o = rec_opts(&r, url(f, "/hang"));
    o.total_timeout_ms = 0;
    o.idle_timeout_ms = 150;
    long t0 = cf_test_now_ms();
    assert_cf_ok(cf_http_call_start(f->client, &o, NULL));
    assert_true(run_until(f->base, &r.done));
    long el = cf_test_now_ms() - t0;
    assert_int_equal(r.error, CF_HTTP_ERR_TIMEOUT);
    /* Fired on time: libevent's coarse clock (up to a 10 ms tick behind
     * ours) may make it look slightly early; a loaded machine, late. */
    assert_true(el >= 130 && el < cf_test_budget_ms(5000));
    assert_true(run_until(f->base, &f->server_saw_close));
    cf_buf_free(&r.body);

    /* Total timeout. */
    f->server_saw_close = false;
    rec_init(&r);
    o = rec_opts(&r, url(f, "/hang"));
    o.total_timeout_ms = 150;
    t0 = cf_test_now_ms();
    assert_cf_ok(cf_http_call_start(f->client, &o, NULL));
    assert_true(run_until(f->base, &r.done));
    el = cf_test_now_ms() - t0;
    assert_int_equal(r.error, CF_HTTP_ERR_TIMEOUT);
    assert_true(el >= 130 && el < cf_test_budget_ms(5000));
    assert_true(run_until(f->base, &f->server_saw_close));
    cf_buf_free(&r.body);

    /* Connection refused: a port that is bound but not listening. The
     * socket stays bound during the call, so that no other process (tests
     * running in parallel) can start listening on the port meanwhile. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    char closed_url[64];
    snprintf(closed_url, sizeof closed_url, "http://127.0.0.1:%u/", ntohs(sa.sin_port));
    rec_init(&r);
    o = rec_opts(&r, closed_url);
    assert_cf_ok(cf_http_call_start(f->client, &o, NULL));
    bool done = run_until(f->base, &r.done);
    close(s);
    assert_true(done);
    assert_int_equal(r.error, CF_HTTP_ERR_CONNECT);
    cf_buf_free(&r.body);
    fx_free(state);
}

static void test_size_limit_and_cancel(void **state)
{
    fixture *f = fx_new(state, NULL, NULL);
    rec r;

    /* Declared length above the limit. */
    rec_init(&r);
    cf_http_call_opts o = rec_opts(&r, url(f, "/big"));
    o.max_response_size = 1000;
    assert_cf_ok(cf_http_call_start(f->client, &o, NULL));
    assert_true(run_until(f->base, &r.done));
    assert_int_equal(r.error, CF_HTTP_ERR_TOO_LARGE);
    cf_buf_free(&r.body);
    /* Exactly at the limit is fine. */
    rec_init(&r);
    o = rec_opts(&r, url(f, "/big"));
    o.max_response_size = 5000;
    assert_cf_ok(cf_http_call_start(f->client, &o, NULL));
    assert_true(run_until(f->base, &r.done));
    assert_int_equal(r.error, CF_HTTP_OK);
    assert_int_equal(r.body.len, 5000);
    cf_buf_free(&r.body);

    /* Streamed (no length) above the limit: counted as it arrives. */
    rec_init(&r);
    o = rec_opts(&r, url(f, "/sse"));
    o.max_response_size = 20;
    assert_cf_ok(cf_http_call_start(f->client, &o, NULL));
    assert_true(RUN_UNTIL(f->base, f->held != NULL));
    assert_non_null(f->held);
    assert_cf_ok(cf_http_stream_write(f->held, cf_slice_cstr("data: this is too long\n\n")));
    assert_true(run_until(f->base, &r.done));
    assert_int_equal(r.error, CF_HTTP_ERR_TOO_LARGE);
    assert_true(run_until(f->base, &f->server_saw_close));
    cf_buf_free(&r.body);

    /* Cancel from inside on_body: no on_done, the server sees the close. */
    f->server_saw_close = false;
    rec_init(&r);
    r.cancel_in_body = true;
    o = rec_opts(&r, url(f, "/sse"));
    assert_cf_ok(cf_http_call_start(f->client, &o, &r.call));
    assert_true(run_until(f->base, &f->server_saw_close));
    assert_int_equal(r.deliveries, 1);
    assert_false(r.done);
    assert_int_equal(cf_http_client_active(f->client), 0);

    /* Cancel from outside before anything happened. */
    rec_init(&r);
    o = rec_opts(&r, url(f, "/big"));
    assert_cf_ok(cf_http_call_start(f->client, &o, &r.call));
    cf_http_call_cancel(r.call);
    run_for(f->base, 50);
    assert_false(r.done);
    assert_int_equal(cf_http_client_active(f->client), 0);

    /* Bad arguments are refused up front. */
    o = rec_opts(&r, "ftp://127.0.0.1/");
    assert_cf_error(cf_http_call_start(f->client, &o, NULL), CF_E_INVALID_ARGUMENT);
    cf_http_header bad[] = {{"X-Evil", "a\r\nHost: b"}, {NULL, NULL}};
    o = rec_opts(&r, url(f, "/big"));
    o.headers = bad;
    assert_cf_error(cf_http_call_start(f->client, &o, NULL), CF_E_INVALID_ARGUMENT);
    assert_int_equal(cf_http_client_active(f->client), 0);
    fx_free(state);
}

/* ---- TLS ----------------------------------------------------------------------------- */

/* A self-signed P-256 certificate for localhost / 127.0.0.1, made here. */
static void make_cert(const char *dir, const char *prefix, char *cert_path, char *key_path, size_t n)
{
    snprintf(cert_path, n, "%s/%s-cert.pem", dir, prefix);
    snprintf(key_path, n, "%s/%s-key.pem", dir, prefix);
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
    const char *exts[][2] = {{"subjectAltName", "DNS:localhost,IP:127.0.0.1"},
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

static void test_tls_listener_and_ca_file(void **state)
{
    char *dir = cf_test_tmpdir();
    char cert[512], key[512], other_cert[512], other_key[512];
    make_cert(dir, "server", cert, key, sizeof cert);
    /* Another self-signed certificate: trusting it must not trust ours. */
    make_cert(dir, "other", other_cert, other_key, sizeof other_cert);
    fixture *f = fx_new(state, cert, key);
    cf_http_client *trusting = NULL, *https_only = NULL;
    cf_http_client_config cc = {.ca_file = cert};
    cf_http_client_config wrong_ca = {.ca_file = other_cert};
    assert_cf_ok(cf_http_client_new(f->base, &cc, &trusting));
    assert_cf_ok(cf_http_client_new(f->base, &wrong_ca, &https_only));
    uint16_t port = cf_http_server_port(f->server);
    char u[128];
    rec r;

    /* Trusted through the CA file, by host name and by IP address. */
    const char *hosts[] = {"localhost", "127.0.0.1"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(u, sizeof u, "https://%s:%u/echo", hosts[i], port);
        rec_init(&r);
        cf_http_call_opts o = rec_opts(&r, u);
        o.body = cf_slice_cstr("over tls");
        assert_cf_ok(cf_http_call_start(trusting, &o, NULL));
        assert_true(run_until(f->base, &r.done));
        assert_int_equal(r.error, CF_HTTP_OK);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.header, "echo");
        assert_true(body_is(&r, "over tls"));
        cf_buf_free(&r.body);
    }

    /* Signed by a CA we do not trust: a TLS failure, nothing delivered. */
    snprintf(u, sizeof u, "https://localhost:%u/echo", port);
    rec_init(&r);
    cf_http_call_opts o = rec_opts(&r, u);
    o.body = cf_slice_cstr("x");
    assert_cf_ok(cf_http_call_start(https_only, &o, NULL));
    assert_true(run_until(f->base, &r.done));
    assert_int_equal(r.error, CF_HTTP_ERR_TLS);
    assert_false(r.got_response);
    cf_buf_free(&r.body);

    /* Plain HTTP is refused by a client that does not allow it. */
    snprintf(u, sizeof u, "http://localhost:%u/echo", port);
    o = rec_opts(&r, u);
    assert_cf_error(cf_http_call_start(https_only, &o, NULL), CF_E_POLICY);
    /* Plain HTTP to a TLS listener fails cleanly. */
    rec_init(&r);
    o = rec_opts(&r, u);
    o.body = cf_slice_cstr("x");
    assert_cf_ok(cf_http_call_start(f->client, &o, NULL));
    assert_true(run_until(f->base, &r.done));
    assert_int_not_equal(r.error, CF_HTTP_OK);
    cf_buf_free(&r.body);

    /* A server config with a cert but no key is refused. */
    cf_http_server *bad = NULL;
    cf_http_server_config bc = {.tls_cert_file = cert};
    assert_cf_error(cf_http_server_new(f->base, &bc, &bad), CF_E_CONFIG);
    bc.tls_key_file = cert; /* not a key */
    assert_cf_error(cf_http_server_new(f->base, &bc, &bad), CF_E_CONFIG);

    cf_http_client_free(trusting);
    cf_http_client_free(https_only);
    fx_free(state);
    cf_test_rmrf(dir);
    free(dir);
}

/* ---- blocking fetch (CLI) against a server on another thread ------------------------- */

/* Runs the server's loop until the test has all its answers (stop_server):
 * the loop stops on that event, not after a guessed flush delay. */
static void *server_thread(void *arg)
{
    fixture *f = arg;
    struct event *t = event_new(f->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(t, &tv);
    while (!atomic_load(&f->stop_server) && event_base_loop(f->base, EVLOOP_ONCE) == 0) {
    }
    event_free(t);
    return NULL;
}

static void test_blocking_fetch(void **state)
{
    char *dir = cf_test_tmpdir();
    char cert[512], key[512], other_cert[512], other_key[512];
    make_cert(dir, "server", cert, key, sizeof cert);
    /* Another self-signed certificate: trusting it must not trust ours. */
    make_cert(dir, "other", other_cert, other_key, sizeof other_cert);
    fixture *f = fx_new(state, cert, key);
    uint16_t port = cf_http_server_port(f->server);
    assert_int_equal(pthread_create(&f->server_thread, NULL, server_thread, f), 0);
    f->server_thread_running = true;

    cf_http_client_config cc = {.ca_file = cert};
    char u[128];
    snprintf(u, sizeof u, "https://localhost:%u/echo", port);
    cf_http_call_opts o = {.url = u, .body = cf_slice_cstr("sync"), .total_timeout_ms = backstop_ms()};
    long status = 0;
    cf_buf body;
    cf_buf_init(&body, 1024);
    assert_cf_ok(cf_http_fetch(&cc, &o, &status, &body));
    assert_int_equal(status, 200);
    assert_true(cf_slice_eq_cstr(cf_buf_slice(&body), "sync"));
    cf_buf_free(&body);

    /* The caller's buffer bounds the body too. */
    snprintf(u, sizeof u, "https://localhost:%u/big", port);
    o = (cf_http_call_opts){.url = u, .total_timeout_ms = backstop_ms()};
    cf_buf_init(&body, 100);
    assert_cf_error(cf_http_fetch(&cc, &o, &status, &body), CF_E_TOO_LARGE);
    cf_buf_free(&body);

    /* Untrusted certificate: an I/O error naming TLS. */
    snprintf(u, sizeof u, "https://localhost:%u/echo", port);
    o = (cf_http_call_opts){.url = u, .body = cf_slice_cstr("x"), .total_timeout_ms = backstop_ms()};
    cf_buf_init(&body, 100);
    cf_http_client_config wrong_ca = {.ca_file = other_cert};
    assert_cf_error(cf_http_fetch(&wrong_ca, &o, &status, &body), CF_E_IO);
    assert_non_null(strstr(cf_error_last()->detail, "tls_failed"));
    cf_buf_free(&body);

    fx_free(state); /* stops and joins the server thread */
    cf_test_rmrf(dir);
    free(dir);
}

int main(void)
{
    /* As in the daemons (cf_daemon_signals_new): a peer that vanishes while
     * evhttp flushes to it must give EPIPE, not kill the test binary. */
    signal(SIGPIPE, SIG_IGN);
    cf_log_init("test_http_client", CF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unix_socket_reuse_and_headers),
        cmocka_unit_test_teardown(test_incremental_body_pause_resume, fx_teardown),
        cmocka_unit_test_teardown(test_timeouts_and_connect_failure, fx_teardown),
        cmocka_unit_test_teardown(test_size_limit_and_cancel, fx_teardown),
        cmocka_unit_test_teardown(test_tls_listener_and_ca_file, fx_teardown),
        cmocka_unit_test_teardown(test_blocking_fetch, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
