/* bench_net.c — the HTTP plumbing on one loop, loopback.
 *
 * Row 1: sequential keep-alive round trips (POST 1 KiB, echoed) through our
 * client (curl multi on libevent) and server (evhttp + routing + wrappers),
 * next to libevent's own evhttp client against a bare evhttp echo server:
 * the ratio is the cost of curl and of our layers per request.
 * Row 2: streaming 64 MiB in 16 KiB chunks, through a relay (server stream
 * fed by a client call, backpressure both ways: the worker's shape) next to
 * the same stream read directly: the ratio is the cost of one relay hop. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "bench.h"
#include "confide/http_client.h"
#include "confide/http_server.h"
#include "confide/log.h"

typedef struct net_bench {
    struct event_base *base;
    cf_http_server *server;
    cf_http_client *client;
    char url_echo[128];
    char url_stream[128];
    char url_relay[128];
    uint8_t payload[1024];
    /* per-call state */
    bool done;
    size_t received;
    /* streaming producer */
    size_t produced;
    size_t total;
    /* relay */
    cf_http_request *down;
    cf_http_call *up;
} net_bench;

static void wait_done(net_bench *b)
{
    while (!b->done) {
        event_base_loop(b->base, EVLOOP_ONCE);
    }
}

/* ---- ours ----------------------------------------------------------------------- */

static void echo(cf_http_request *req, void *arg)
{
    (void)arg;
    if (cf_is_error(cf_http_respond(req, 200, "application/octet-stream", cf_http_request_body(req), NULL))) {
        cf_bench_fail("respond");
    }
}

static cf_http_body_action count_body(cf_http_call *call, cf_slice data, void *arg)
{
    net_bench *b = arg;
    (void)call;
    b->received += data.len;
    return CF_HTTP_BODY_CONTINUE;
}

static void call_done(cf_http_call *call, cf_http_error e, void *arg)
{
    net_bench *b = arg;
    (void)call;
    if (e != CF_HTTP_OK) {
        cf_bench_fail("call failed");
    }
    b->done = true;
}

static void one_round_trip(void *arg)
{
    net_bench *b = arg;
    b->done = false;
    cf_http_call_opts o = {.url = b->url_echo, .body = cf_slice_make(b->payload, sizeof b->payload),
                           .on_body = count_body, .on_done = call_done, .arg = b};
    if (cf_is_error(cf_http_call_start(b->client, &o, NULL))) {
        cf_bench_fail("call start");
    }
    wait_done(b);
}

static void produce(cf_http_request *req, net_bench *b)
{
    static uint8_t chunk[16384];
    while (b->produced < b->total && !cf_http_stream_congested(req)) {
        if (cf_is_error(cf_http_stream_write(req, cf_slice_make(chunk, sizeof chunk)))) {
            cf_bench_fail("stream write");
        }
        b->produced += sizeof chunk;
    }
    if (b->produced >= b->total) {
        cf_http_stream_end(req);
    }
}

static void stream_writable(cf_http_request *req, void *arg) { produce(req, arg); }
static void stream_close(cf_http_request *req, void *arg)
{
    (void)arg;
    cf_http_stream_end(req);
}

static void stream_handler(cf_http_request *req, void *arg)
{
    net_bench *b = arg;
    cf_http_stream_callbacks cbs = {.on_writable = stream_writable, .on_close = stream_close};
    if (cf_is_error(cf_http_stream_start(req, 200, "text/event-stream", NULL, &cbs, b))) {
        cf_bench_fail("stream start");
    }
    b->produced = 0;
    produce(req, b);
}

static cf_http_body_action relay_body(cf_http_call *call, cf_slice data, void *arg)
{
    net_bench *b = arg;
    if (cf_is_error(cf_http_stream_write(b->down, data))) {
        return CF_HTTP_BODY_ABORT;
    }
    if (cf_http_stream_congested(b->down)) {
        cf_http_call_pause(call);
    }
    return CF_HTTP_BODY_CONTINUE;
}

static void relay_up_done(cf_http_call *call, cf_http_error e, void *arg)
{
    net_bench *b = arg;
    (void)call;
    (void)e;
    b->up = NULL;
    cf_http_stream_end(b->down);
    b->down = NULL;
}

static void relay_writable(cf_http_request *req, void *arg)
{
    net_bench *b = arg;
    (void)req;
    if (b->up != NULL) {
        cf_http_call_resume(b->up);
    }
}

static void relay_handler(cf_http_request *req, void *arg)
{
    net_bench *b = arg;
    cf_http_stream_callbacks cbs = {.on_writable = relay_writable, .on_close = stream_close};
    if (cf_is_error(cf_http_stream_start(req, 200, "text/event-stream", NULL, &cbs, b))) {
        cf_bench_fail("relay start");
    }
    b->down = req;
    cf_http_call_opts o = {.url = b->url_stream, .on_body = relay_body, .on_done = relay_up_done, .arg = b};
    if (cf_is_error(cf_http_call_start(b->client, &o, &b->up))) {
        cf_bench_fail("relay call");
    }
}

static double stream_mib_per_s(net_bench *b, const char *url)
{
    b->done = false;
    b->received = 0;
    double t0 = cf_bench_now();
    cf_http_call_opts o = {.url = url, .on_body = count_body, .on_done = call_done, .arg = b};
    if (cf_is_error(cf_http_call_start(b->client, &o, NULL))) {
        cf_bench_fail("stream call");
    }
    wait_done(b);
    double dt = cf_bench_now() - t0;
    if (b->received != b->total) {
        cf_bench_fail("stream size");
    }
    return (double)b->received / (1024.0 * 1024.0) / dt;
}

/* ---- baseline: bare evhttp server and evhttp client ------------------------------ */

typedef struct raw_bench {
    struct event_base *base;
    struct evhttp_connection *conn;
    uint8_t payload[1024];
    bool done;
} raw_bench;

static void raw_echo(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_reply(req, 200, "OK", evhttp_request_get_input_buffer(req));
}

static void raw_done(struct evhttp_request *req, void *arg)
{
    raw_bench *r = arg;
    if (req == NULL || evhttp_request_get_response_code(req) != 200) {
        cf_bench_fail("raw request");
    }
    r->done = true;
}

static void raw_round_trip(void *arg)
{
    raw_bench *r = arg;
    r->done = false;
    struct evhttp_request *req = evhttp_request_new(raw_done, r);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    evbuffer_add(evhttp_request_get_output_buffer(req), r->payload, sizeof r->payload);
    if (evhttp_make_request(r->conn, req, EVHTTP_REQ_POST, "/echo") != 0) {
        cf_bench_fail("raw make request");
    }
    while (!r->done) {
        event_base_loop(r->base, EVLOOP_ONCE);
    }
}

static void bench_net(void)
{
    cf_log_init("confide-bench", CF_LOG_WARN);
    net_bench b;
    memset(&b, 0, sizeof b);
    b.base = event_base_new();
    cf_http_server_config sc = {.name = "bench"};
    cf_http_client_config cc = {.allow_plain_http = true};
    if (b.base == NULL || cf_is_error(cf_http_server_new(b.base, &sc, &b.server)) ||
        cf_is_error(cf_http_client_new(b.base, &cc, &b.client)) ||
        cf_is_error(cf_http_server_route(b.server, "POST", "/echo", echo, &b)) ||
        cf_is_error(cf_http_server_route(b.server, "GET", "/stream", stream_handler, &b)) ||
        cf_is_error(cf_http_server_route(b.server, "GET", "/relay", relay_handler, &b))) {
        cf_bench_fail("net bench setup");
    }
    unsigned port = cf_http_server_port(b.server);
    snprintf(b.url_echo, sizeof b.url_echo, "http://127.0.0.1:%u/echo", port);
    snprintf(b.url_stream, sizeof b.url_stream, "http://127.0.0.1:%u/stream", port);
    snprintf(b.url_relay, sizeof b.url_relay, "http://127.0.0.1:%u/relay", port);

    raw_bench r;
    memset(&r, 0, sizeof r);
    r.base = event_base_new();
    struct evhttp *raw = evhttp_new(r.base);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(raw, "127.0.0.1", 0);
    if (bound == NULL) {
        cf_bench_fail("raw bind");
    }
    evhttp_set_cb(raw, "/echo", raw_echo, NULL);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl);
    r.conn = evhttp_connection_base_new(r.base, NULL, "127.0.0.1", ntohs(((struct sockaddr_in *)&ss)->sin_port));

    double ours = cf_bench_ops_per_sec(one_round_trip, &b, 1.0);
    double base = cf_bench_ops_per_sec(raw_round_trip, &r, 1.0);
    cf_bench_row("http round trip, 1 KiB echo, keep-alive", ours, base, "req/s");

    b.total = (size_t)64 * 1024 * 1024;
    double direct = stream_mib_per_s(&b, b.url_stream);
    double relayed = stream_mib_per_s(&b, b.url_relay);
    cf_bench_row("64 MiB stream through a relay hop vs direct", relayed, direct, "MiB/s");

    evhttp_connection_free(r.conn);
    evhttp_free(raw);
    event_base_free(r.base);
    cf_http_client_free(b.client);
    cf_http_server_free(b.server);
    event_base_free(b.base);
}

CF_BENCH_SUITE("net", bench_net)
