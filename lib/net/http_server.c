/* http_server.c — evhttp-based server with routing, limits, streaming with
 * backpressure and graceful shutdown (see http_server.h). */
#include "confide/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "confide/buf.h"
#include "confide/log.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_MAX_HEADERS ((size_t)16 * 1024)
#define DEFAULT_MAX_BODY ((size_t)1024 * 1024)
#define DEFAULT_TIMEOUT_MS 30000u
#define DEFAULT_MAX_REQUESTS 1024u
#define DEFAULT_HIGH_WATERMARK ((size_t)256 * 1024)
#define HARD_CAP_EXTRA ((size_t)1024 * 1024)
#define MAX_PATH_LEN 2048

typedef struct route {
    struct route *next;
    char method[8];
    char *path;
    cf_http_handler fn;
    void *arg;
} route;

struct cf_http_server {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    SSL_CTX *ssl_ctx;
    route *routes;
    char name[32];
    uint16_t port;
    size_t max_body;
    size_t max_headers;
    unsigned max_requests;
    size_t high_wm;
    size_t low_wm;
    struct timeval read_tv;
    struct timeval write_tv;
    uint64_t next_id;
    cf_http_request *active_first;
    size_t active;
    bool shutting_down;
    struct event *shutdown_timer;
    struct event *shutdown_done;
    void (*done)(void *arg);
    void *done_arg;
    cf_http_health_fn health;
    void *health_arg;
    const cf_metrics *metrics_registry;
    struct reply_drain *draining; /* finished replies evhttp is still writing */
    cf_metric *m_requests[6]; /* by status class: [0] other, [1..5] 1xx..5xx */
    cf_metric *m_active;
    cf_metric *m_duration;
};

/* A reply handed to evhttp on a live connection, until evhttp reports it
 * written (the request's on_complete callback, from evhttp_send_done) or the
 * connection goes away (its close callback). Graceful shutdown completes only
 * once none is left, so "done" means the last bytes have been written to the
 * socket, not merely queued. */
typedef struct reply_drain {
    cf_http_server *server;
    struct evhttp_connection *evcon;
    struct reply_drain *prev;
    struct reply_drain *next;
} reply_drain;

struct cf_http_request {
    cf_http_server *server; /* NULL once forced by shutdown / server free */
    cf_http_request *prev;
    cf_http_request *next;
    struct evhttp_request *evreq;  /* NULL once handed back to evhttp */
    struct evhttp_connection *evcon; /* NULL once the connection is gone */
    uint64_t id;
    char method[8];
    char *path;
    char *query;
    char peer[48];
    bool peer_gone;
    bool streaming;
    bool congested;
    bool close_notified;
    bool quiet_log;
    int status;
    size_t high_wm;
    size_t low_wm;
    struct evbuffer *out;             /* the connection's output (watched) */
    struct evbuffer_cb_entry *out_cb; /* drain watcher while streaming */
    struct evbuffer *scratch;         /* chunk staging for stream writes */
    struct event *writable_ev;
    struct event *close_ev;
    void (*on_close)(cf_http_request *req, void *arg);
    void *on_close_arg;
    cf_http_stream_callbacks cbs;
    void *cbs_arg;
    struct timespec started;
};

/* ---- small helpers ------------------------------------------------------- */

static struct timeval ms_to_tv(unsigned ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

static bool known_method(const char *m)
{
    static const char *const ok[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (strcmp(m, ok[i]) == 0) {
            return true;
        }
    }
    return false;
}

static double elapsed_s(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) + (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* Header values must not smuggle CR/LF into the response (RFC 9110 §5.5). */
static bool header_safe(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") == NULL;
}

static CF_RESULT add_headers(struct evkeyvalq *h, const cf_http_header *extra)
{
    for (size_t i = 0; extra != NULL && extra[i].name != NULL; i++) {
        CF_ENSURE_MSG(header_safe(extra[i].name) && header_safe(extra[i].value) && extra[i].name[0] != '\0',
                      CF_E_INVALID_ARGUMENT, "header name/value missing or contains CR/LF");
        CF_ENSURE(evhttp_add_header(h, extra[i].name, extra[i].value) == 0, CF_E_INVALID_ARGUMENT);
    }
    return CF_OK;
}

/* ---- request bookkeeping -------------------------------------------------- */

static void request_unlink(cf_http_request *req)
{
    cf_http_server *s = req->server;
    if (s == NULL) {
        return;
    }
    if (req->prev != NULL) {
        req->prev->next = req->next;
    } else {
        s->active_first = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    }
    req->prev = req->next = NULL;
    req->server = NULL;
    s->active--;
    cf_metric_set(s->m_active, (double)s->active);
    if (s->shutting_down && s->active == 0 && s->draining == NULL) {
        event_active(s->shutdown_done, EV_TIMEOUT, 0);
    }
}

static void reply_drain_release(reply_drain *d)
{
    cf_http_server *s = d->server;
    if (d->prev != NULL) {
        d->prev->next = d->next;
    } else {
        s->draining = d->next;
    }
    if (d->next != NULL) {
        d->next->prev = d->prev;
    }
    free(d);
    if (s->shutting_down && s->active == 0 && s->draining == NULL) {
        event_active(s->shutdown_done, EV_TIMEOUT, 0);
    }
}

static void reply_written(struct evhttp_request *evreq, void *arg)
{
    reply_drain *d = arg;
    (void)evreq;
    /* The connection may stay open for another request: its close no
     * longer concerns this reply. */
    evhttp_connection_set_closecb(d->evcon, NULL, NULL);
    reply_drain_release(d);
}

static void reply_connection_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    reply_drain_release(arg);
}

/* Track the reply about to be handed to evhttp until it is written. Without
 * memory for the tracker, shutdown just does not wait for this one. */
static void track_reply_drain(cf_http_request *req)
{
    cf_http_server *s = req->server;
    reply_drain *d = s != NULL && req->evreq != NULL ? calloc(1, sizeof *d) : NULL;
    if (d == NULL) {
        evhttp_connection_set_closecb(req->evcon, NULL, NULL);
        return;
    }
    d->server = s;
    d->evcon = req->evcon;
    d->next = s->draining;
    if (s->draining != NULL) {
        s->draining->prev = d;
    }
    s->draining = d;
    evhttp_request_set_on_complete_cb(req->evreq, reply_written, d);
    evhttp_connection_set_closecb(req->evcon, reply_connection_closed, d);
}

static void request_free(cf_http_request *req)
{
    request_unlink(req);
    if (req->writable_ev != NULL) {
        event_free(req->writable_ev);
    }
    if (req->close_ev != NULL) {
        event_free(req->close_ev);
    }
    if (req->scratch != NULL) {
        evbuffer_free(req->scratch);
    }
    free(req->path);
    free(req->query);
    free(req);
}

static void record_finish(cf_http_request *req, int status)
{
    cf_http_server *s = req->server;
    req->status = status;
    if (s == NULL) {
        return;
    }
    int cls = status / 100;
    cf_metric_inc(s->m_requests[cls >= 1 && cls <= 5 ? cls : 0]);
    double dur = elapsed_s(&req->started);
    cf_metric_observe(s->m_duration, dur);
    if (!req->quiet_log) {
        CF_LOG_INFO("http_request", cf_kv_str("server", s->name), cf_kv_id("req", req->id),
                    cf_kv_str("method", req->method), cf_kv_str("path", req->path), cf_kv_int("status", status),
                    cf_kv_int("ms", (int64_t)(dur * 1000)), cf_kv_str("peer", req->peer));
    }
}

/* A finished reply must not be declared sent while bytes are still queued.
 *
 * evhttp learns that a reply has left from the connection's bufferevent write
 * callback (evhttp_write_cb), which runs evcon->cb: for a finished reply that
 * is evhttp_send_done(), which frees the request and, on a kept-alive
 * connection, goes back to reading and disables EV_WRITE. libevent only runs
 * the write callback when the output is at the write low watermark (0, i.e.
 * empty) -- but bufferevent_openssl checks that when it *schedules* the
 * callback: do_write() ends with bufferevent_trigger_nolock_(bev, EV_WRITE,
 * BEV_OPT_DEFER_CALLBACKS) (libevent 2.1.12, bufferevent_openssl.c), and the
 * deferred callback runs on a later loop iteration without checking again.
 * A stream ended in between -- typically by a producer woken by on_writable,
 * which the very drain that emptied the buffer scheduled -- got
 * evhttp_send_done() with its last chunks (up to the high watermark) still
 * queued: EV_WRITE disabled, the tail never written, and the connection
 * closed by the read timeout 30 s later. Plain sockets run the callback
 * synchronously and never saw this.
 *
 * So while a finished reply drains, evhttp's write callback is wrapped in a
 * guard that checks the watermark again when it actually runs and drops a
 * stale call; the write that does empty the buffer calls it again. evhttp
 * installs its own callback afresh whenever it writes or reads again
 * (evhttp_write_buffer, evhttp_start_read_), so the guard lives exactly as
 * long as the finishing reply. */
static bufferevent_data_cb evhttp_write_callback; /* libevent's evhttp_write_cb: one function per process */

static void finished_reply_write_guard(struct bufferevent *bev, void *evcon)
{
    size_t low = 0;
    bufferevent_getwatermark(bev, EV_WRITE, &low, NULL);
    if (evbuffer_get_length(bufferevent_get_output(bev)) > low) {
        return; /* stale "drained": more was queued since it was scheduled */
    }
    evhttp_write_callback(bev, evcon);
}

/* After handing a reply to evhttp: guard its write callback (see above) and
 * drop the reference detach_from_connection() took. The reference keeps bev
 * valid if evhttp freed the connection during the hand-over (it then has no
 * callbacks left); a connection already reading the next request (read
 * callback set again) has nothing left to guard. */
static void handed_over(struct bufferevent *bev)
{
    if (bev == NULL) {
        return;
    }
    bufferevent_data_cb readcb = NULL, writecb = NULL;
    bufferevent_event_cb eventcb = NULL;
    void *cbarg = NULL;
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &cbarg);
    if (readcb == NULL && writecb != NULL && writecb != finished_reply_write_guard &&
        (evhttp_write_callback == NULL || evhttp_write_callback == writecb)) {
        evhttp_write_callback = writecb;
        bufferevent_setcb(bev, readcb, finished_reply_write_guard, eventcb, cbarg);
    }
    bufferevent_decref(bev);
}

/* Stop watching the connection before handing the request back to evhttp:
 * no drain watcher, the close callback now tracks the reply until written
 * (reply_drain); restore the timeouts evhttp uses for the next request on a
 * kept-alive connection. Returns the connection's bufferevent with a
 * reference held (NULL if the client is gone): pass it to handed_over()
 * right after the evhttp_send_* call. */
static struct bufferevent *detach_from_connection(cf_http_request *req)
{
    struct bufferevent *held = NULL;
    if (req->out_cb != NULL) {
        evbuffer_remove_cb_entry(req->out, req->out_cb);
        req->out_cb = NULL;
    }
    if (req->evcon != NULL) {
        track_reply_drain(req);
        struct bufferevent *bev = evhttp_connection_get_bufferevent(req->evcon);
        const cf_http_server *s = req->server;
        if (bev != NULL && s != NULL) {
            bufferevent_set_timeouts(bev, &s->read_tv, &s->write_tv);
            bufferevent_setwatermark(bev, EV_READ, 0, 0);
        }
        if (bev != NULL) {
            bufferevent_incref(bev);
            held = bev;
        }
        req->evcon = NULL;
    }
    return held;
}

static void schedule_close_notice(cf_http_request *req)
{
    if (!req->close_notified) {
        event_active(req->close_ev, EV_TIMEOUT, 0);
    }
}

/* evhttp calls this when the connection goes away (client closed, error,
 * timeout). The request was detached from it by evhttp (it stays ours until
 * we finish it), the bufferevent still exists during this call. */
static void on_connection_close(struct evhttp_connection *evcon, void *arg)
{
    cf_http_request *req = arg;
    (void)evcon;
    if (req->out_cb != NULL) {
        evbuffer_remove_cb_entry(req->out, req->out_cb);
        req->out_cb = NULL;
    }
    req->evcon = NULL;
    req->peer_gone = true;
    req->congested = false;
    schedule_close_notice(req);
}

static void close_notice_cb(evutil_socket_t fd, short what, void *arg)
{
    cf_http_request *req = arg;
    (void)fd;
    (void)what;
    if (req->close_notified) {
        return;
    }
    req->close_notified = true;
    if (req->server != NULL) {
        CF_LOG_INFO("http_client_gone", cf_kv_str("server", req->server->name), cf_kv_id("req", req->id),
                    cf_kv_str("path", req->path));
    }
    if (req->streaming && req->cbs.on_close != NULL) {
        req->cbs.on_close(req, req->cbs_arg);
    } else if (req->on_close != NULL) {
        req->on_close(req, req->on_close_arg);
    }
}

static void writable_cb(evutil_socket_t fd, short what, void *arg)
{
    cf_http_request *req = arg;
    (void)fd;
    (void)what;
    if (!req->peer_gone && req->evreq != NULL && !req->congested && req->cbs.on_writable != NULL) {
        req->cbs.on_writable(req, req->cbs_arg);
    }
}

/* Called on every change of the connection's output buffer while streaming;
 * only flips state and defers the producer's callback to the loop (never
 * re-enter the producer from inside libevent's write path). */
static void output_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    cf_http_request *req = arg;
    (void)info;
    if (req->congested && evbuffer_get_length(buf) <= req->low_wm) {
        req->congested = false;
        event_active(req->writable_ev, EV_WRITE, 0);
    }
}

/* While the handler works (e.g. waits for an upstream), watch the connection
 * so a client that disconnects is noticed: evhttp disables reading after the
 * body, so read again with no read callback (bytes a client pipelines stay
 * buffered, capped by the watermark) and let evhttp's event callback see
 * EOF. Long-lived streams must not die of the read timeout: only the write
 * timeout applies from here on. */
static void watch_connection(cf_http_request *req)
{
    const cf_http_server *s = req->server;
    evhttp_connection_set_closecb(req->evcon, on_connection_close, req);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(req->evcon);
    if (bev == NULL) {
        return;
    }
    bufferevent_data_cb readcb = NULL, writecb = NULL;
    bufferevent_event_cb eventcb = NULL;
    void *cbarg = NULL;
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &cbarg);
    bufferevent_setcb(bev, NULL, writecb, eventcb, cbarg);
    bufferevent_setwatermark(bev, EV_READ, 0, s->max_headers);
    bufferevent_set_timeouts(bev, NULL, &s->write_tv);
    bufferevent_enable(bev, EV_READ);
    req->out = bufferevent_get_output(bev);
}

/* ---- plain evhttp replies (no wrapper) ------------------------------------ */

static void send_raw_error(struct evhttp_request *evreq, int status, const char *type, const char *code,
                           const char *message, bool close)
{
    cf_buf body;
    cf_buf_init(&body, 4096);
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(evreq);
    if (out == NULL || cf_is_error(cf_http_error_json(type, code, message, &body))) {
        if (out != NULL) {
            evbuffer_free(out);
        }
        cf_buf_free(&body);
        evhttp_send_error(evreq, status, NULL);
        return;
    }
    evhttp_add_header(h, "Content-Type", "application/json");
    if (close) {
        evhttp_add_header(h, "Connection", "close");
    }
    evbuffer_add(out, body.data, body.len);
    evhttp_send_reply(evreq, status, NULL, out);
    evbuffer_free(out);
    cf_buf_free(&body);
}

/* ---- dispatch ------------------------------------------------------------- */

static const route *find_route(const cf_http_server *s, const char *method, const char *path, bool *path_known)
{
    *path_known = false;
    for (const route *r = s->routes; r != NULL; r = r->next) {
        if (strcmp(r->path, path) == 0) {
            *path_known = true;
            if (strcmp(r->method, method) == 0) {
                return r;
            }
        }
    }
    return NULL;
}

static CF_RESULT request_new(cf_http_server *s, struct evhttp_request *evreq, cf_http_request **out)
{
    cf_result result = CF_OK;
    cf_http_request *req = calloc(1, sizeof *req);
    CF_ENSURE(req != NULL, CF_E_NO_MEMORY);
    clock_gettime(CLOCK_MONOTONIC, &req->started);
    req->evreq = evreq;
    req->evcon = evhttp_request_get_connection(evreq);
    /* Replies are written in pieces (each SSE event as it is ready); with
     * Nagle's algorithm a piece waits for the ACK of the previous one, which
     * a peer that only reads delays by up to 40 ms (delayed ACK). Measured:
     * a 64-event stream through proxy and worker stalled ~43 ms without this.
     * Best effort: a UNIX socket refuses the option, which is harmless. */
    struct bufferevent *conn_bev = evhttp_connection_get_bufferevent(req->evcon);
    if (conn_bev != NULL) {
        int one = 1;
        (void)setsockopt(bufferevent_getfd(conn_bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    req->id = s->next_id++;
    req->high_wm = s->high_wm;
    req->low_wm = s->low_wm;
    snprintf(req->method, sizeof req->method, "%s", method_name(evhttp_request_get_command(evreq)));
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(evreq);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
    if (path == NULL || path[0] == '\0') {
        path = "/";
    }
    /* evhttp already bounds the request line by max_headers_size. */
    req->path = strdup(path);
    CF_ENSURE_OUT(req->path != NULL, CF_E_NO_MEMORY);
    if (query != NULL) {
        req->query = strdup(query);
        CF_ENSURE_OUT(req->query != NULL, CF_E_NO_MEMORY);
    }
    if (req->evcon != NULL) {
        char *addr = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(req->evcon, &addr, &port);
        snprintf(req->peer, sizeof req->peer, "%s", addr != NULL ? addr : "");
    }
    req->writable_ev = event_new(s->base, -1, 0, writable_cb, req);
    req->close_ev = event_new(s->base, -1, 0, close_notice_cb, req);
    CF_ENSURE_OUT(req->writable_ev != NULL && req->close_ev != NULL, CF_E_NO_MEMORY);
    req->quiet_log = strcmp(req->path, "/healthz") == 0 || strcmp(req->path, "/metrics") == 0;

    req->server = s;
    req->next = s->active_first;
    if (s->active_first != NULL) {
        s->active_first->prev = req;
    }
    s->active_first = req;
    s->active++;
    cf_metric_set(s->m_active, (double)s->active);
    *out = req;
    req = NULL;
out:
    if (req != NULL) {
        request_free(req);
    }
    return result;
}

static void on_request(struct evhttp_request *evreq, void *arg)
{
    cf_http_server *s = arg;
    cf_http_request *req = NULL;

    if (s->shutting_down) {
        send_raw_error(evreq, 503, "server_error", "shutting_down", "The server is shutting down.", true);
        return;
    }
    if (s->active >= s->max_requests) {
        CF_LOG_WARN("http_busy", cf_kv_str("server", s->name), cf_kv_uint("active", s->active));
        send_raw_error(evreq, 503, "server_error", "overloaded", "Too many requests in flight; retry later.", false);
        return;
    }
    if (cf_is_error(request_new(s, evreq, &req))) {
        send_raw_error(evreq, 500, "server_error", "internal_error", "Out of memory.", true);
        return;
    }
    if (req->evcon != NULL) {
        watch_connection(req);
    }

    size_t body_len = evbuffer_get_length(evhttp_request_get_input_buffer(evreq));
    if (body_len > s->max_body) {
        char msg[128];
        snprintf(msg, sizeof msg, "Request body too large: the limit is %zu bytes.", s->max_body);
        if (cf_is_error(cf_http_respond_error(req, 413, "invalid_request_error", "request_too_large", msg, NULL))) {
            cf_http_stream_end(req);
        }
        return;
    }
    bool path_known = false;
    const route *r = find_route(s, req->method, req->path, &path_known);
    if (r == NULL) {
        cf_result rr;
        if (path_known) {
            rr = cf_http_respond_error(req, 405, "invalid_request_error", "method_not_allowed",
                                       "Method not allowed for this path.", NULL);
        } else {
            rr = cf_http_respond_error(req, 404, "invalid_request_error", "unknown_url", "Unknown request URL.",
                                       NULL);
        }
        if (cf_is_error(rr)) {
            cf_http_stream_end(req);
        }
        return;
    }
    r->fn(req, r->arg);
}

/* ---- TLS ------------------------------------------------------------------ */

/* evhttp treats a NULL from this callback as "use a plain socket", which
 * would serve cleartext HTTP on the TLS port. Fail closed instead: this only
 * happens when memory is exhausted. */
__attribute__((noreturn)) static void tls_unavailable(void)
{
    CF_LOG_ERROR("http_tls_alloc_failed");
    abort();
}

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    cf_http_server *s = arg;
    SSL *ssl = SSL_new(s->ssl_ctx);
    if (ssl == NULL) {
        tls_unavailable();
    }
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        tls_unavailable();
    }
    /* A client closing TCP without close_notify is an ordinary EOF here:
     * HTTP framing (Content-Length / chunked) already detects truncation. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static CF_RESULT tls_setup(cf_http_server *s, const char *cert, const char *key)
{
    s->ssl_ctx = SSL_CTX_new(TLS_server_method());
    CF_ENSURE_MSG(s->ssl_ctx != NULL, CF_E_CRYPTO, "SSL_CTX_new failed");
    CF_ENSURE(SSL_CTX_set_min_proto_version(s->ssl_ctx, TLS1_2_VERSION) == 1, CF_E_CRYPTO);
    SSL_CTX_set_options(s->ssl_ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(s->ssl_ctx, cert) != 1) {
        ERR_clear_error();
        CF_BAIL_FMT(CF_E_CONFIG, "cannot load TLS certificate chain %s", cert);
    }
    if (SSL_CTX_use_PrivateKey_file(s->ssl_ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(s->ssl_ctx) != 1) {
        ERR_clear_error();
        CF_BAIL_FMT(CF_E_CONFIG, "cannot load TLS key %s or it does not match the certificate", key);
    }
    evhttp_set_bevcb(s->http, tls_bev, s);
    return CF_OK;
}

/* ---- built-in endpoints --------------------------------------------------- */

static void health_handler(cf_http_request *req, void *arg)
{
    cf_http_server *s = arg;
    static const cf_http_header no_cache[] = {{"Cache-Control", "no-store"}, {NULL, NULL}};
    cf_result r = s->health != NULL ? s->health(s->health_arg) : CF_OK;
    cf_result sent;
    if (cf_is_ok(r)) {
        sent = cf_http_respond(req, 200, "application/json", cf_slice_cstr("{\"status\":\"ok\"}"), no_cache);
    } else {
        sent = cf_http_respond_error(req, 503, "server_error", cf_error_name(cf_error_code_last()),
                                     "The service is not ready.", no_cache);
    }
    if (cf_is_error(sent)) {
        cf_http_stream_end(req);
    }
}

static void metrics_handler(cf_http_request *req, void *arg)
{
    cf_http_server *s = arg;
    cf_buf text;
    cf_buf_init(&text, 16 * 1024 * 1024);
    cf_result r = cf_metrics_render(s->metrics_registry, &text);
    if (cf_is_ok(r)) {
        r = cf_http_respond(req, 200, CF_METRICS_CONTENT_TYPE, cf_buf_slice(&text), NULL);
    } else {
        r = cf_http_respond_error(req, 500, "server_error", "internal_error", "Cannot render metrics.", NULL);
    }
    if (cf_is_error(r)) {
        cf_http_stream_end(req);
    }
    cf_buf_free(&text);
}

/* ---- shutdown ------------------------------------------------------------- */

/* Hand a request back to evhttp now: terminate its stream or answer 503. The
 * handle stays with its owner (inert) until the owner finishes it. */
static void force_finish(cf_http_request *req)
{
    if (req->evreq != NULL) {
        bool peer_gone = req->peer_gone;
        struct bufferevent *bev = detach_from_connection(req);
        if (req->streaming || peer_gone) {
            evhttp_send_reply_end(req->evreq);
        } else {
            send_raw_error(req->evreq, 503, "server_error", "shutting_down", "The server is shutting down.", true);
        }
        handed_over(bev);
        record_finish(req, req->streaming ? req->status : 503);
        req->evreq = NULL;
    }
    req->peer_gone = true;
    req->congested = false;
    schedule_close_notice(req);
    request_unlink(req);
}

static void force_all(cf_http_server *s)
{
    while (s->active_first != NULL) {
        force_finish(s->active_first);
    }
}

static void shutdown_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    cf_http_server *s = arg;
    (void)fd;
    (void)what;
    CF_LOG_WARN("http_shutdown_forced", cf_kv_str("server", s->name), cf_kv_uint("active", s->active));
    force_all(s);
    /* The deadline bounds the wait for replies still being written too. */
    event_active(s->shutdown_done, EV_TIMEOUT, 0);
}

static void shutdown_done_cb(evutil_socket_t fd, short what, void *arg)
{
    cf_http_server *s = arg;
    (void)fd;
    (void)what;
    evtimer_del(s->shutdown_timer);
    void (*done)(void *) = s->done;
    s->done = NULL;
    if (done != NULL) {
        CF_LOG_INFO("http_shutdown_done", cf_kv_str("server", s->name));
        done(s->done_arg);
    }
}

void cf_http_server_shutdown(cf_http_server *s, unsigned deadline_ms, void (*done)(void *arg), void *arg)
{
    if (s == NULL || s->shutting_down) {
        return;
    }
    s->shutting_down = true;
    s->done = done;
    s->done_arg = arg;
    if (s->bound != NULL) {
        evhttp_del_accept_socket(s->http, s->bound);
        s->bound = NULL;
    }
    CF_LOG_INFO("http_shutdown", cf_kv_str("server", s->name), cf_kv_uint("active", s->active),
                cf_kv_uint("deadline_ms", deadline_ms));
    if (s->active == 0 && s->draining == NULL) {
        event_active(s->shutdown_done, EV_TIMEOUT, 0);
    } else {
        struct timeval tv = ms_to_tv(deadline_ms);
        evtimer_add(s->shutdown_timer, &tv);
    }
}

size_t cf_http_server_active(const cf_http_server *s) { return s != NULL ? s->active : 0; }

/* ---- server life cycle ---------------------------------------------------- */

static CF_RESULT register_metrics(cf_http_server *s, cf_metrics *m)
{
    static const char *const classes[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
    for (int i = 0; i < 6; i++) {
        cf_metric_label l[] = {{"server", s->name}, {"code", classes[i]}, {NULL, NULL}};
        CF_GUARD(cf_metrics_counter(m, "confide_http_requests_total", "HTTP requests answered, by status class.", l,
                                    &s->m_requests[i]));
    }
    cf_metric_label l[] = {{"server", s->name}, {NULL, NULL}};
    CF_GUARD(cf_metrics_gauge(m, "confide_http_requests_active", "HTTP requests in flight (streams included).", l,
                              &s->m_active));
    CF_GUARD(cf_metrics_histogram(m, "confide_http_request_duration_seconds",
                                  "Time from request received to response finished (streams: to the last byte).",
                                  l, bounds, sizeof bounds / sizeof bounds[0], &s->m_duration));
    return CF_OK;
}

CF_RESULT cf_http_server_new(struct event_base *base, const cf_http_server_config *cfg, cf_http_server **out)
{
    cf_result result = CF_OK;
    cf_http_server *s = NULL;
    CF_ENSURE_REF(base);
    CF_ENSURE_REF(cfg);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG((cfg->tls_cert_file == NULL) == (cfg->tls_key_file == NULL), CF_E_CONFIG,
                  "TLS needs both a certificate and a key file");

    s = calloc(1, sizeof *s);
    CF_ENSURE(s != NULL, CF_E_NO_MEMORY);
    s->base = base;
    snprintf(s->name, sizeof s->name, "%s", cfg->name != NULL ? cfg->name : "http");
    s->max_headers = cfg->max_headers_size ? cfg->max_headers_size : DEFAULT_MAX_HEADERS;
    s->max_body = cfg->max_body_size ? cfg->max_body_size : DEFAULT_MAX_BODY;
    s->max_requests = cfg->max_requests ? cfg->max_requests : DEFAULT_MAX_REQUESTS;
    s->high_wm = cfg->stream_high_watermark ? cfg->stream_high_watermark : DEFAULT_HIGH_WATERMARK;
    s->low_wm = cfg->stream_low_watermark ? cfg->stream_low_watermark : s->high_wm / 4;
    CF_ENSURE_MSG_OUT(s->low_wm < s->high_wm, CF_E_CONFIG, "stream low watermark must be below the high one");
    CF_ENSURE_MSG_OUT(s->max_body <= ((size_t)1 << 40), CF_E_CONFIG, "max body size is absurd");
    s->read_tv = ms_to_tv(cfg->read_timeout_ms ? cfg->read_timeout_ms : DEFAULT_TIMEOUT_MS);
    s->write_tv = ms_to_tv(cfg->write_timeout_ms ? cfg->write_timeout_ms : DEFAULT_TIMEOUT_MS);
    CF_ENSURE_OUT(RAND_bytes((unsigned char *)&s->next_id, sizeof s->next_id) == 1, CF_E_CRYPTO);

    s->http = evhttp_new(base);
    s->shutdown_timer = evtimer_new(base, shutdown_deadline_cb, s);
    s->shutdown_done = event_new(base, -1, 0, shutdown_done_cb, s);
    CF_ENSURE_OUT(s->http != NULL && s->shutdown_timer != NULL && s->shutdown_done != NULL, CF_E_NO_MEMORY);

    evhttp_set_max_headers_size(s->http, (ev_ssize_t)s->max_headers);
    /* evhttp answers bodies above its cap itself (HTML 413); leaving room up to
     * twice the limit lets us answer the common case with a JSON 413 while
     * still bounding memory per request. */
    evhttp_set_max_body_size(s->http, (ev_ssize_t)(2 * s->max_body));
    evhttp_set_timeout_tv(s->http, &s->read_tv);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_default_content_type(s->http, "application/json");
    evhttp_set_gencb(s->http, on_request, s);

    if (cfg->tls_cert_file != NULL) {
        CF_GUARD_OUT(tls_setup(s, cfg->tls_cert_file, cfg->tls_key_file));
    }
    if (cfg->metrics != NULL) {
        CF_GUARD_OUT(register_metrics(s, cfg->metrics));
    }

    const char *host = cfg->host != NULL ? cfg->host : DEFAULT_HOST;
    s->bound = evhttp_bind_socket_with_handle(s->http, host, cfg->port);
    if (s->bound == NULL) {
        result = CF_ERROR;
        cf_error_setf(CF_E_IO, __FILE__, __LINE__, "cannot listen on %s:%u", host, (unsigned)cfg->port);
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    CF_ENSURE_OUT(getsockname(evhttp_bound_socket_get_fd(s->bound), (struct sockaddr *)&ss, &sl) == 0, CF_E_IO);
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    CF_LOG_INFO("http_listen", cf_kv_str("server", s->name), cf_kv_str("host", host), cf_kv_uint("port", s->port),
                cf_kv_str("tls", s->ssl_ctx != NULL ? "yes" : "no"));
    *out = s;
    s = NULL;
out:
    cf_http_server_free(s);
    return result;
}

void cf_http_server_free(cf_http_server *s)
{
    if (s == NULL) {
        return;
    }
    force_all(s);
    if (s->http != NULL) {
        evhttp_free(s->http); /* closing the connections releases their reply_drain */
    }
    while (s->draining != NULL) { /* a connection that closed without telling */
        reply_drain *d = s->draining;
        s->draining = d->next;
        free(d);
    }
    if (s->shutdown_timer != NULL) {
        event_free(s->shutdown_timer);
    }
    if (s->shutdown_done != NULL) {
        event_free(s->shutdown_done);
    }
    SSL_CTX_free(s->ssl_ctx);
    route *r = s->routes;
    while (r != NULL) {
        route *next = r->next;
        free(r->path);
        free(r);
        r = next;
    }
    free(s);
}

uint16_t cf_http_server_port(const cf_http_server *s) { return s != NULL ? s->port : 0; }

CF_RESULT cf_http_server_route(cf_http_server *s, const char *method, const char *path, cf_http_handler fn,
                               void *arg)
{
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(fn);
    CF_ENSURE_MSG(method != NULL && known_method(method), CF_E_INVALID_ARGUMENT, "unknown HTTP method");
    CF_ENSURE_MSG(path != NULL && path[0] == '/' && strlen(path) < MAX_PATH_LEN, CF_E_INVALID_ARGUMENT,
                  "route path must start with /");
    bool known = false;
    CF_ENSURE_MSG(find_route(s, method, path, &known) == NULL, CF_E_INVALID_ARGUMENT, "route registered twice");
    route *r = calloc(1, sizeof *r);
    CF_ENSURE(r != NULL, CF_E_NO_MEMORY);
    r->path = strdup(path);
    if (r->path == NULL) {
        free(r);
        CF_BAIL(CF_E_NO_MEMORY);
    }
    snprintf(r->method, sizeof r->method, "%s", method);
    r->fn = fn;
    r->arg = arg;
    r->next = s->routes;
    s->routes = r;
    return CF_OK;
}

CF_RESULT cf_http_server_add_health(cf_http_server *s, cf_http_health_fn check, void *arg)
{
    CF_ENSURE_REF(s);
    s->health = check;
    s->health_arg = arg;
    return cf_http_server_route(s, "GET", "/healthz", health_handler, s);
}

CF_RESULT cf_http_server_add_metrics(cf_http_server *s, const cf_metrics *metrics)
{
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(metrics);
    s->metrics_registry = metrics;
    return cf_http_server_route(s, "GET", "/metrics", metrics_handler, s);
}

/* ---- request accessors ---------------------------------------------------- */

uint64_t cf_http_request_id(const cf_http_request *req) { return req->id; }
const char *cf_http_request_method(const cf_http_request *req) { return req->method; }
const char *cf_http_request_path(const cf_http_request *req) { return req->path; }
const char *cf_http_request_query(const cf_http_request *req) { return req->query; }
const char *cf_http_request_peer(const cf_http_request *req) { return req->peer; }
bool cf_http_request_peer_gone(const cf_http_request *req) { return req->peer_gone; }

const char *cf_http_request_header(const cf_http_request *req, const char *name)
{
    if (req->evreq == NULL || name == NULL) {
        return NULL;
    }
    return evhttp_find_header(evhttp_request_get_input_headers(req->evreq), name);
}

cf_slice cf_http_request_body(cf_http_request *req)
{
    if (req->evreq == NULL) {
        return CF_SLICE_EMPTY;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req->evreq);
    size_t len = evbuffer_get_length(in);
    if (len == 0) {
        return CF_SLICE_EMPTY;
    }
    const unsigned char *p = evbuffer_pullup(in, -1);
    return p != NULL ? cf_slice_make(p, len) : CF_SLICE_EMPTY;
}

void cf_http_request_on_close(cf_http_request *req, void (*on_close)(cf_http_request *req, void *arg), void *arg)
{
    req->on_close = on_close;
    req->on_close_arg = arg;
    if (req->peer_gone) {
        schedule_close_notice(req);
    }
}

/* ---- complete responses --------------------------------------------------- */

CF_RESULT cf_http_error_json(const char *type, const char *code, const char *message, cf_buf *out)
{
    CF_ENSURE_REF(type);
    CF_ENSURE_REF(message);
    CF_ENSURE_REF(out);
    json_t *err = json_pack("{s:{s:s, s:s, s:s*}}", "error", "message", message, "type", type, "code", code);
    CF_ENSURE_MSG(err != NULL, CF_E_INVALID_ARGUMENT, "error fields must be UTF-8");
    char *text = json_dumps(err, JSON_COMPACT);
    json_decref(err);
    CF_ENSURE(text != NULL, CF_E_NO_MEMORY);
    cf_result r = cf_buf_append_cstr(out, text);
    free(text);
    return r;
}

CF_RESULT cf_http_respond(cf_http_request *req, int status, const char *content_type, cf_slice body,
                          const cf_http_header *extra_headers)
{
    CF_ENSURE_REF(req);
    CF_ENSURE_MSG(status >= 100 && status <= 599, CF_E_INVALID_ARGUMENT, "HTTP status out of range");
    CF_ENSURE_MSG(!req->streaming, CF_E_INVALID_ARGUMENT, "respond on a started stream: use cf_http_stream_end");
    if (req->evreq != NULL) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req->evreq);
        CF_ENSURE_MSG(content_type == NULL || header_safe(content_type), CF_E_INVALID_ARGUMENT,
                      "content type contains CR/LF");
        CF_GUARD(add_headers(h, extra_headers));
        if (content_type != NULL) {
            evhttp_remove_header(h, "Content-Type");
            evhttp_add_header(h, "Content-Type", content_type);
        }
        if (req->server != NULL && req->server->shutting_down) {
            evhttp_add_header(h, "Connection", "close");
        }
        struct evbuffer *buf = evbuffer_new();
        CF_ENSURE(buf != NULL, CF_E_NO_MEMORY);
        if (body.len > 0 && evbuffer_add(buf, body.ptr, body.len) != 0) {
            evbuffer_free(buf);
            CF_BAIL(CF_E_NO_MEMORY);
        }
        struct bufferevent *bev = detach_from_connection(req);
        evhttp_send_reply(req->evreq, status, NULL, buf);
        handed_over(bev);
        evbuffer_free(buf);
        req->evreq = NULL;
        record_finish(req, status);
    }
    request_free(req);
    return CF_OK;
}

CF_RESULT cf_http_respond_json(cf_http_request *req, int status, const json_t *body,
                               const cf_http_header *extra_headers)
{
    CF_ENSURE_REF(req);
    CF_ENSURE_REF(body);
    char *text = json_dumps(body, JSON_COMPACT);
    CF_ENSURE(text != NULL, CF_E_NO_MEMORY);
    cf_result r = cf_http_respond(req, status, "application/json", cf_slice_cstr(text), extra_headers);
    free(text);
    return r;
}

CF_RESULT cf_http_respond_error(cf_http_request *req, int status, const char *type, const char *code,
                                const char *message, const cf_http_header *extra_headers)
{
    cf_buf body;
    cf_buf_init(&body, 64 * 1024);
    cf_result r = cf_http_error_json(type, code, message, &body);
    if (cf_is_ok(r)) {
        r = cf_http_respond(req, status, "application/json", cf_buf_slice(&body), extra_headers);
    }
    cf_buf_free(&body);
    return r;
}

/* ---- streaming ------------------------------------------------------------ */

CF_RESULT cf_http_stream_start(cf_http_request *req, int status, const char *content_type,
                               const cf_http_header *extra_headers, const cf_http_stream_callbacks *cbs, void *arg)
{
    CF_ENSURE_REF(req);
    CF_ENSURE_MSG(!req->streaming, CF_E_INVALID_ARGUMENT, "stream already started");
    CF_ENSURE_MSG(status >= 200 && status <= 599, CF_E_INVALID_ARGUMENT, "HTTP status out of range");
    CF_ENSURE_MSG(content_type == NULL || header_safe(content_type), CF_E_INVALID_ARGUMENT,
                  "content type contains CR/LF");
    req->scratch = evbuffer_new();
    CF_ENSURE(req->scratch != NULL, CF_E_NO_MEMORY);
    if (req->evreq != NULL && !req->peer_gone) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req->evreq);
        CF_GUARD(add_headers(h, extra_headers));
        if (content_type != NULL) {
            evhttp_remove_header(h, "Content-Type");
            evhttp_add_header(h, "Content-Type", content_type);
        }
        if (req->server != NULL && req->server->shutting_down) {
            evhttp_add_header(h, "Connection", "close");
        }
    }
    req->streaming = true;
    req->status = status;
    if (cbs != NULL) {
        req->cbs = *cbs;
    }
    req->cbs_arg = arg;
    if (req->evreq == NULL || req->peer_gone) {
        schedule_close_notice(req);
        return CF_OK;
    }
    evhttp_send_reply_start(req->evreq, status, NULL);
    if (req->out != NULL && req->evcon != NULL) {
        req->out_cb = evbuffer_add_cb(req->out, output_changed, req);
        CF_ENSURE(req->out_cb != NULL, CF_E_NO_MEMORY);
    }
    return CF_OK;
}

size_t cf_http_stream_pending(const cf_http_request *req)
{
    if (req == NULL || req->peer_gone || req->evcon == NULL || req->out == NULL) {
        return 0;
    }
    return evbuffer_get_length(req->out);
}

bool cf_http_stream_congested(const cf_http_request *req) { return req != NULL && req->congested; }

CF_RESULT cf_http_stream_write(cf_http_request *req, cf_slice data)
{
    CF_ENSURE_REF(req);
    CF_ENSURE_MSG(req->streaming, CF_E_INVALID_ARGUMENT, "stream not started");
    CF_ENSURE_MSG(!req->peer_gone && req->evreq != NULL, CF_E_IO, "client disconnected");
    if (data.len == 0) {
        return CF_OK; /* an empty chunk would terminate chunked encoding */
    }
    size_t pending = cf_http_stream_pending(req);
    size_t hard_cap = 4 * req->high_wm + HARD_CAP_EXTRA;
    CF_ENSURE_MSG(data.len <= hard_cap && pending <= hard_cap - data.len, CF_E_LIMIT,
                  "client output buffer full (producer ignored backpressure)");
    CF_ENSURE(evbuffer_add(req->scratch, data.ptr, data.len) == 0, CF_E_NO_MEMORY);
    evhttp_send_reply_chunk(req->evreq, req->scratch); /* moves the bytes out of scratch */
    evbuffer_drain(req->scratch, evbuffer_get_length(req->scratch));
    if (cf_http_stream_pending(req) >= req->high_wm) {
        req->congested = true;
    }
    return CF_OK;
}

void cf_http_stream_end(cf_http_request *req)
{
    if (req == NULL) {
        return;
    }
    if (req->evreq != NULL) {
        struct bufferevent *bev = detach_from_connection(req);
        if (req->streaming) {
            evhttp_send_reply_end(req->evreq);
            record_finish(req, req->status);
        } else {
            /* Finishing a request that never started a response (client
             * gone, or handler gave up): evhttp frees a detached request;
             * a live one gets a 500 rather than hanging. */
            send_raw_error(req->evreq, 500, "server_error", "internal_error", "The request was abandoned.", true);
            record_finish(req, 500);
        }
        handed_over(bev);
        req->evreq = NULL;
    }
    request_free(req);
}
