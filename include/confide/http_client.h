/*
 * http_client.h — outbound HTTP(S) on the daemon's libevent loop (libcurl
 * multi interface driven by curl_multi_socket_action), plus a blocking
 * wrapper for the CLI.
 *
 * Targets: an https:// URL with normal certificate and host name checks
 * (system CA store or a CA file), plain http:// only when the client was
 * created with allow_plain_http, or an inference server on a UNIX domain
 * socket (unix_socket set; the URL then only gives the path and Host).
 * Connections are reused across calls of one client. No Accept-Encoding is
 * sent (responses arrive uncompressed) and redirects are not followed.
 *
 * A call delivers, in order and from the loop:
 *   on_response(status)  once, before any body byte (headers readable with
 *                        cf_http_call_header from then on);
 *   on_body(bytes)       zero or more times, as bytes arrive (SSE relay);
 *   on_done(error)       exactly once, unless the call was cancelled.
 * The call handle is freed right after on_done returns.
 *
 * Backpressure: on_body may return CF_HTTP_BODY_PAUSE — the chunk is then
 * NOT consumed and is delivered again after cf_http_call_resume(). Or call
 * cf_http_call_pause() at any time, also from inside on_body after
 * consuming the chunk (the relay pattern: write the chunk downstream, see
 * the downstream congested, pause): no further chunk is delivered until
 * cf_http_call_resume(). While paused, curl holds at most one read buffer
 * (16 KiB) and stops reading the socket, so the upstream is slowed by TCP
 * flow control. The idle timeout does not run while paused.
 *
 * Limits: connect timeout, total timeout, idle timeout (no byte received
 * for that long), maximum response body size; each failure has its own
 * cf_http_error.
 *
 * Memory: request bodies are copied into a buffer wiped on free; what curl
 * and the kernel buffer internally is outside our control.
 */
#ifndef CONFIDE_HTTP_CLIENT_H
#define CONFIDE_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "confide/buf.h"
#include "confide/http_server.h" /* cf_http_header */
#include "confide/result.h"
#include "confide/slice.h"

struct event_base;

typedef struct cf_http_client cf_http_client;
typedef struct cf_http_call cf_http_call;

typedef enum cf_http_error {
    CF_HTTP_OK = 0,        /* a complete response arrived (any status) */
    CF_HTTP_ERR_CONNECT,   /* DNS, TCP or UNIX socket connect failed */
    CF_HTTP_ERR_TLS,       /* handshake or certificate verification failed */
    CF_HTTP_ERR_TIMEOUT,   /* connect, total or idle timeout */
    CF_HTTP_ERR_TOO_LARGE, /* response body above max_response_size */
    CF_HTTP_ERR_PROTOCOL,  /* malformed HTTP, truncated body, peer reset */
    CF_HTTP_ERR_ABORTED,   /* on_body returned CF_HTTP_BODY_ABORT */
    CF_HTTP_ERR_INTERNAL,  /* anything else (out of memory, curl setup) */
} cf_http_error;

/* Stable name ("timeout", "connect_failed", ...) for logs and errors. */
const char *cf_http_error_name(cf_http_error e);

typedef enum cf_http_body_action {
    CF_HTTP_BODY_CONTINUE = 0, /* consumed */
    CF_HTTP_BODY_PAUSE,        /* not consumed; redelivered after resume */
    CF_HTTP_BODY_ABORT,        /* stop: on_done(CF_HTTP_ERR_ABORTED) */
} cf_http_body_action;

typedef struct cf_http_client_config {
    const char *ca_file;           /* PEM CA bundle; NULL = system store */
    bool allow_plain_http;         /* permit http:// over TCP (tests, dev) */
    unsigned connect_timeout_ms;   /* 0 = 5000 */
    unsigned max_host_connections; /* 0 = 16 per host */
} cf_http_client_config;

typedef struct cf_http_call_opts {
    const char *method;              /* NULL = GET, or POST when body given */
    const char *url;                 /* http(s)://host[:port]/path */
    const char *unix_socket;         /* path of a UNIX socket, or NULL */
    const cf_http_header *headers;   /* ends with {NULL, NULL}; may be NULL */
    cf_slice body;                   /* copied */
    unsigned total_timeout_ms;       /* 0 = none (long streams) */
    unsigned idle_timeout_ms;        /* 0 = none; not counted while paused */
    size_t max_response_size;        /* 0 = 64 MiB */
    bool accept_encoding;            /* let curl ask for and decode gzip etc. */
    void (*on_response)(cf_http_call *call, long status, void *arg);
    cf_http_body_action (*on_body)(cf_http_call *call, cf_slice data, void *arg);
    void (*on_done)(cf_http_call *call, cf_http_error error, void *arg);
    void *arg;
} cf_http_call_opts;

CF_RESULT cf_http_client_new(struct event_base *base, const cf_http_client_config *cfg, cf_http_client **out);
/* Cancels every call still running (their on_done is not called). */
void cf_http_client_free(cf_http_client *c);

/* Start a call; callbacks come from the loop, never from inside this call.
 * *out (may be NULL) receives the handle for pause/resume/cancel. */
CF_RESULT cf_http_call_start(cf_http_client *c, const cf_http_call_opts *opts, cf_http_call **out);
/* Stop the call now and free it; on_done is not called. Allowed from inside
 * the call's own on_response / on_body. */
void cf_http_call_cancel(cf_http_call *call);
/* Stop delivering body chunks until resumed (anywhere, also in on_body). */
void cf_http_call_pause(cf_http_call *call);
/* Resume; a pending chunk may be delivered from inside this call. */
void cf_http_call_resume(cf_http_call *call);
bool cf_http_call_paused(const cf_http_call *call);
/* A response header (case-insensitive; last one if repeated), or NULL.
 * Valid from on_response on, until the next callback returns. */
const char *cf_http_call_header(cf_http_call *call, const char *name);
/* The HTTP status (0 before on_response). */
long cf_http_call_status(const cf_http_call *call);
/* Calls in flight on this client. */
size_t cf_http_client_active(const cf_http_client *c);

/* Blocking convenience for the CLI: runs a private loop until the call
 * completes; collects the body into `body` (bounded by its max and by
 * opts->max_response_size; callbacks in opts are ignored). Fails with
 * CF_E_TIMEOUT, CF_E_IO (connect/TLS/protocol) or CF_E_TOO_LARGE; any HTTP
 * status is a success and lands in *status. */
CF_RESULT cf_http_fetch(const cf_http_client_config *cfg, const cf_http_call_opts *opts, long *status,
                        cf_buf *body);

#endif /* CONFIDE_HTTP_CLIENT_H */
