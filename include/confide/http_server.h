/*
 * http_server.h — the HTTP(S) server every confide daemon runs, on the one
 * libevent loop of the process (evhttp from libevent 2.1; TLS through
 * bufferevent_openssl).
 *
 * What it gives a daemon:
 *  - a listener on host:port (127.0.0.1 by default), optionally TLS;
 *  - a route table: method + exact path -> handler (404 / 405 otherwise);
 *  - limits on everything a peer controls: header size, body size (413 with
 *    an OpenAI-shaped JSON error), read and write timeouts, concurrent
 *    requests (503 beyond);
 *  - JSON and OpenAI-style error responses with extra headers;
 *  - streaming responses (chunked; SSE) with backpressure and client
 *    disconnect detection;
 *  - /healthz and /metrics handlers; graceful shutdown.
 *
 * Request lifetime (the one rule to remember):
 *   A handler receives a cf_http_request and MUST eventually finish it with
 *   exactly one of cf_http_respond*() or cf_http_stream_end(), now or later
 *   from another callback. Finishing frees the handle (cf_http_respond*
 *   fail without finishing only on bad arguments). cf_http_stream_end on a
 *   request that never started a response answers 500 (or just frees it if
 *   the client is gone). Until then the handle
 *   stays valid even if the client disconnects: the library then calls the
 *   on_close callback (set with cf_http_request_on_close or
 *   cf_http_stream_start) from the loop, further writes are dropped, and
 *   finishing only frees the handle. This is how upstream work (a curl call
 *   to llama-server, an SSE relay) is cancelled when the client goes away.
 *
 * Backpressure for streams: cf_http_stream_write() always queues the bytes
 * (up to a hard cap of 4 x high watermark + 1 MiB, beyond which it fails with
 * CF_E_LIMIT), then reports through cf_http_stream_congested() whether the
 * client's unsent output is above the high watermark. A producer that sees
 * congestion stops (e.g. pauses its curl transfer); on_writable is called
 * once the output has drained to the low watermark, and the producer
 * resumes. Memory per stream is thus bounded by the watermark plus one
 * producer chunk.
 *
 * Callbacks are never called re-entrantly from inside a cf_http_* call; they
 * run from the event loop.
 *
 * The process must ignore SIGPIPE (cf_daemon_signals_new does; tests do it
 * in main): evhttp writes to sockets without MSG_NOSIGNAL, and a client that
 * vanishes while its response is being flushed would otherwise kill the
 * process instead of producing the on_close path above.
 *
 * Limitations (libevent 2.1): evhttp itself answers a body larger than
 * twice max_body_size (413) and a header block larger than max_headers_size
 * (400) with an HTML body, before any handler runs; bodies between the limit
 * and twice the limit get our JSON 413. evhttp 2.1 has no hook to cap TCP
 * connections: max_requests bounds requests in flight and the read timeout
 * bounds idle connections.
 *
 * Memory: response bodies pass through libevent buffers that are not wiped;
 * the proxy's plaintext replies to the local app live there briefly.
 */
#ifndef CONFIDE_HTTP_SERVER_H
#define CONFIDE_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "confide/metrics.h"
#include "confide/result.h"
#include "confide/slice.h"

struct event_base;

typedef struct cf_http_server cf_http_server;
typedef struct cf_http_request cf_http_request;

/* An extra response header; arrays end with {NULL, NULL}. */
typedef struct cf_http_header {
    const char *name;
    const char *value;
} cf_http_header;

typedef struct cf_http_server_config {
    const char *host;           /* NULL = "127.0.0.1" */
    uint16_t port;              /* 0 = any free port (see cf_http_server_port) */
    const char *tls_cert_file;  /* PEM chain; with tls_key_file enables TLS */
    const char *tls_key_file;   /* PEM private key */
    size_t max_headers_size;    /* 0 = 16 KiB: request line + headers */
    size_t max_body_size;       /* 0 = 1 MiB: larger bodies get a JSON 413 */
    unsigned read_timeout_ms;   /* 0 = 30000: idle time reading a request */
    unsigned write_timeout_ms;  /* 0 = 30000: no write progress to the client */
    unsigned max_requests;      /* 0 = 1024: requests in flight; more get 503 */
    size_t stream_high_watermark; /* 0 = 256 KiB of unsent output = congested */
    size_t stream_low_watermark;  /* 0 = high / 4: on_writable fires here */
    cf_metrics *metrics;        /* optional: registers confide_http_* series */
    const char *name;           /* for logs and metrics labels; NULL = "http" */
} cf_http_server_config;

typedef void (*cf_http_handler)(cf_http_request *req, void *arg);
/* Health check for GET /healthz: OK -> 200 {"status":"ok"}, an error ->
 * 503 with the error code as an OpenAI-style error. */
typedef cf_result (*cf_http_health_fn)(void *arg);

CF_RESULT cf_http_server_new(struct event_base *base, const cf_http_server_config *cfg, cf_http_server **out);
/* Close the listener and every connection at once. Finish or let shutdown
 * force every request first (handles still held become inert, see above). */
void cf_http_server_free(cf_http_server *s);
/* The bound port (useful with port 0). */
uint16_t cf_http_server_port(const cf_http_server *s);

/* Route "METHOD /exact/path" (method: GET, POST, PUT, DELETE, PATCH, HEAD). */
CF_RESULT cf_http_server_route(cf_http_server *s, const char *method, const char *path, cf_http_handler fn,
                               void *arg);
/* GET /healthz with the given check (NULL check = always healthy). */
CF_RESULT cf_http_server_add_health(cf_http_server *s, cf_http_health_fn check, void *arg);
/* GET /metrics rendering this registry. */
CF_RESULT cf_http_server_add_metrics(cf_http_server *s, const cf_metrics *metrics);

/* Graceful shutdown: stop accepting now, answer new requests on open
 * connections with 503, let requests in flight finish for up to deadline_ms,
 * then force the rest (streams get their terminating chunk, unanswered
 * requests a 503, their on_close runs) and call done(arg) from the loop.
 * Before the deadline, done waits until the finished replies have been
 * written to their sockets (or their clients have gone), not merely queued.
 * The daemon then calls cf_http_server_free() and leaves the loop. */
void cf_http_server_shutdown(cf_http_server *s, unsigned deadline_ms, void (*done)(void *arg), void *arg);
/* Requests in flight (not yet finished by the handler). */
size_t cf_http_server_active(const cf_http_server *s);

/* ---- requests ------------------------------------------------------------ */

/* A process-unique id (random start) for logs: cf_kv_id("req", id). */
uint64_t cf_http_request_id(const cf_http_request *req);
const char *cf_http_request_method(const cf_http_request *req);
/* The path without query, as sent (not percent-decoded). */
const char *cf_http_request_path(const cf_http_request *req);
/* The raw query string (after '?'), or NULL. */
const char *cf_http_request_query(const cf_http_request *req);
/* A request header (case-insensitive name), or NULL. */
const char *cf_http_request_header(const cf_http_request *req, const char *name);
/* The whole request body (already bounded by max_body_size). Valid until the
 * request is finished. */
cf_slice cf_http_request_body(cf_http_request *req);
/* The peer's IP address as text ("127.0.0.1", "::1"), for rate limiting and
 * logs; "" if unknown. */
const char *cf_http_request_peer(const cf_http_request *req);
/* True once the client has gone away (writes are dropped from then on). */
bool cf_http_request_peer_gone(const cf_http_request *req);
/* Called once from the loop if the client disconnects (or shutdown forces
 * the request) before it is finished. The handle stays valid: finish it. */
void cf_http_request_on_close(cf_http_request *req, void (*on_close)(cf_http_request *req, void *arg), void *arg);

/* ---- finishing with a complete response (each frees req) ---------------- */

CF_RESULT cf_http_respond(cf_http_request *req, int status, const char *content_type, cf_slice body,
                          const cf_http_header *extra_headers);
/* Serialise `body` compactly (jansson) as application/json. Does not take
 * the reference. */
CF_RESULT cf_http_respond_json(cf_http_request *req, int status, const json_t *body,
                               const cf_http_header *extra_headers);
/* {"error":{"message":..,"type":..,"code":..}} (OpenAI error shape). `code`
 * may be NULL (JSON null). Messages must hold public text only. */
CF_RESULT cf_http_respond_error(cf_http_request *req, int status, const char *type, const char *code,
                                const char *message, const cf_http_header *extra_headers);
/* The JSON body of an OpenAI-style error, for SSE error events too. */
CF_RESULT cf_http_error_json(const char *type, const char *code, const char *message, cf_buf *out);

/* ---- streaming ----------------------------------------------------------- */

typedef struct cf_http_stream_callbacks {
    /* Output drained to the low watermark after having been congested. */
    void (*on_writable)(cf_http_request *req, void *arg);
    /* Client gone or shutdown forced: stop producing, then finish. */
    void (*on_close)(cf_http_request *req, void *arg);
} cf_http_stream_callbacks;

/* Send the status line and headers (chunked transfer on HTTP/1.1). For SSE
 * use content_type "text/event-stream". Read timeout is lifted for the
 * stream's lifetime (a long-lived SSE stream sends, the client only reads);
 * the write timeout still drops a client that stops reading. */
CF_RESULT cf_http_stream_start(cf_http_request *req, int status, const char *content_type,
                               const cf_http_header *extra_headers, const cf_http_stream_callbacks *cbs, void *arg);
/* Queue bytes. Fails with CF_E_IO once the client is gone and CF_E_LIMIT
 * above the hard cap; an empty slice is a no-op (never ends the stream). */
CF_RESULT cf_http_stream_write(cf_http_request *req, cf_slice data);
/* True while unsent output is above the high watermark (stop producing). */
bool cf_http_stream_congested(const cf_http_request *req);
/* Unsent bytes queued for this client (tests, metrics). */
size_t cf_http_stream_pending(const cf_http_request *req);
/* Terminate the stream (last chunk) and free req. */
void cf_http_stream_end(cf_http_request *req);

#endif /* CONFIDE_HTTP_SERVER_H */
