/*
 * proxy.h — internals of confide-proxy, the user-side endpoint (DESIGN §3
 * flows 1, 2 and 4; operator documentation in docs/operations.md
 * §confide-proxy; wire format in docs/protocol.md).
 *
 * One process, one libevent loop, single-threaded. Pieces:
 *   main.c     flags, setup, metrics, signals, graceful shutdown
 *   keys.c     AS bootstrap and key lifecycle: attest the AS with a fresh
 *              nonce, upload a fresh inference secret, verify the receipt,
 *              rotate before expiry, keep old keys while requests use them,
 *              delete keys with proof of possession; requests that need a
 *              key wait here
 *   request.c  the OpenAI endpoints: check and encrypt the app's body, add
 *              cache_salt, forward, decrypt non-streamed replies, handle
 *              plaintext errors, unknown_key / stale_request retries
 *   relay.c    streamed replies: SSE decrypted event by event as it
 *              arrives, backpressure, truncation reported as an error event
 *
 * Invariants:
 *  - Nothing is sent upstream (not even GET /v1/models) unless the AS was
 *    verified against the pinned manifest and a key upload was confirmed
 *    by a signed receipt.
 *  - Nothing reaches the app from a 2xx reply unless it authenticated;
 *    plaintext bodies only with a non-2xx status and marked unauthenticated.
 *  - Inference secrets live in px_key only, wiped when the key is dropped.
 */
#ifndef CONFIDE_PROXY_INTERNAL_H
#define CONFIDE_PROXY_INTERNAL_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "confide/as_api.h"
#include "confide/as_client.h"
#include "confide/daemon.h"
#include "confide/http_client.h"
#include "confide/http_server.h"
#include "confide/metrics.h"
#include "confide/protocol.h"

/* Header the proxy puts on replies whose body did not authenticate
 * (plaintext upstream errors), and the prefix of their message. */
#define PX_HDR_UNAUTHENTICATED "Confide-Unauthenticated"
#define PX_UNAUTH_PREFIX "unauthenticated upstream error: "
#define PX_UNAUTH_TYPE "confide_unauthenticated_upstream_error"

typedef struct px_config {
    char *host;
    int64_t port;
    char *as_url;
    char *manifest_path;
    char *manifest_sha256;
    char *upstream;
    char *api_key;
    char *ca_file;
    bool allow_plain_http;
    char *models;
    int64_t key_ttl_s;
    int64_t rotate_before_s;
    bool shared_cache_salt;
    char *cache_salt;
    int64_t pad_bucket;
    int64_t max_body;
    int64_t max_response_body;
    int64_t max_error_body;
    int64_t max_concurrent;
    int64_t max_streams;
    int64_t connect_timeout_ms;
    int64_t upstream_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t as_timeout_ms;
    int64_t read_timeout_ms;
    int64_t write_timeout_ms;
    int64_t shutdown_grace_ms;
    bool delete_keys_on_exit;
} px_config;

typedef enum px_attest_state {
    PX_ATTEST_PENDING = 0, /* never verified yet */
    PX_ATTEST_VERIFIED = 1,
    PX_ATTEST_FAILED = 2, /* the last attempt failed (reason in last_error) */
} px_attest_state;

/* Request outcomes counted per endpoint (a fixed set of labels). */
#define PX_OUTCOMES(X)                                                                                                 \
    X(PX_OK, "ok")                              /* authenticated reply passed (any status) */                          \
    X(PX_UNAUTH_ERROR, "unauthenticated_error") /* plaintext non-2xx passed, marked */                                 \
    X(PX_DECRYPT_FAILED, "decrypt_failed")      /* reply refused: did not authenticate */                              \
    X(PX_TRUNCATED, "truncated")                /* stream ended without its final event */                             \
    X(PX_UPSTREAM_FAILED, "upstream_failed")    /* connect, TLS, timeout, reset */                                     \
    X(PX_NOT_READY, "not_ready")                /* no verified AS / no key: 503 */                                     \
    X(PX_BAD_REQUEST, "bad_request")            /* the app's body was refused */                                       \
    X(PX_CLIENT_GONE, "client_gone")            /* the app disconnected */

typedef enum px_outcome {
#define PX_X_ENUM(e, s) e,
    PX_OUTCOMES(PX_X_ENUM)
#undef PX_X_ENUM
        PX_OUTCOME_COUNT
} px_outcome;

#define PX_ENDPOINT_COUNT 4 /* chat.completions, completions, embeddings, models */

/* Decrypt failure codes counted separately (others count as "other"). */
#define PX_DECRYPT_CODES(X)                                                                                            \
    X(CF_E_AUTH_FAILED)                                                                                                \
    X(CF_E_BAD_CIPHERTEXT) X(CF_E_TRUNCATED) X(CF_E_PLAINTEXT_FIELD) X(CF_E_MALFORMED) X(CF_E_DUPLICATE_KEY)           \
        X(CF_E_UNSUPPORTED_VERSION) X(CF_E_TOO_LARGE) X(CF_E_UNKNOWN_KEY)

typedef struct px_metrics {
    cf_metrics *registry;
    cf_metric *requests[PX_ENDPOINT_COUNT][PX_OUTCOME_COUNT];
    cf_metric *upstream_seconds[PX_ENDPOINT_COUNT];
    cf_metric *decrypt_failures[CF_E_COUNT_];
    cf_metric *decrypt_failures_other;
    cf_metric *retries_unknown_key;
    cf_metric *retries_stale;
    cf_metric *attest_ok;
    cf_metric *attest_failed;
    cf_metric *attest_state;
    cf_metric *uploads_ok;
    cf_metric *uploads_failed;
    cf_metric *rotations;
    cf_metric *deletes;
    cf_metric *keys_held;
    cf_metric *key_expires_in;
    cf_metric *streams_active;
    cf_metric *requests_active;
} px_metrics;

/* An inference secret the AS confirmed. The list head is the current key. */
typedef struct px_key {
    struct px_key *next;
    uint8_t k[CF_INFERENCE_KEY_LEN];
    char key_id[CF_KEY_ID_LEN + 1];
    int64_t expires_at;
    unsigned inflight; /* requests holding it */
    bool retired;      /* replaced (or reported unknown): no new requests */
    bool deleting;     /* delete sent to the AS */
} px_key;

/* A request waiting for a usable key. `ready` runs from the loop (or at
 * once) with the key (a reference held for the waiter: release it with
 * px_key_release) or NULL when provisioning failed (px->last_error says
 * why). */
typedef struct px_waiter {
    struct px_waiter *prev, *next;
    void (*ready)(struct px_waiter *w, px_key *key);
    bool queued;
} px_waiter;

typedef struct px_state {
    px_config cfg;
    struct event_base *base;
    cf_http_server *server;
    cf_http_client *http;
    cf_daemon_signals *signals;
    struct event *tick;
    bool shutting_down;
    bool exiting; /* loop exit requested, waiting for key deletions */

    uint8_t pinned[32];
    char pinned_hex[65];
    cf_as_endpoint as_ep;
    char *upstream_base; /* --upstream without trailing '/' */

    /* The verified AS (valid while attest_state == VERIFIED). */
    cf_as_identity identity;
    bool have_identity;
    cf_key_scope scope; /* models the uploaded keys may be used for */
    bool scope_from_flag;

    px_key *keys;
    size_t key_count;
    px_waiter waiters; /* sentinel of a circular list */
    size_t waiter_count;

    /* Provisioning (attest, then upload). */
    cf_as_op *op;
    bool op_uploading;
    uint8_t pending_k[CF_INFERENCE_KEY_LEN];
    int64_t next_attempt_ms; /* monotonic; 0 = now */
    unsigned failures;
    px_attest_state attest_state;
    cf_error_code last_code;
    char last_error[320];
    size_t deletes_in_flight;

    size_t stream_requests; /* requests with "stream": true in flight */
    char shared_salt[64];   /* --shared-cache-salt / --cache-salt value ("" = per request) */
    px_metrics m;
} px_state;

/* One app request, from the handler until the reply to the app ended. */
typedef enum px_reply_mode {
    PX_MODE_NONE = 0,
    PX_MODE_ENCRYPTED, /* encrypted JSON body: collect, then open */
    PX_MODE_PLAINTEXT, /* plaintext non-2xx error: collect, then mark */
    PX_MODE_STREAM,    /* encrypted SSE: decrypt event by event */
    PX_MODE_PASS,      /* GET /v1/models: passed through */
} px_reply_mode;

typedef struct px_request {
    px_state *px;
    cf_http_request *req;
    uint64_t id; /* for logs, after req is finished */
    const cf_proto_endpoint *ep;
    int ep_index;
    px_waiter waiter;
    px_key *key;
    cf_buf body; /* the app's body (with cache_salt), wiped */
    char model[CF_MODEL_NAME_MAX + 1];
    bool has_model;
    bool streaming_request; /* "stream": true */
    bool stream_slot;       /* counted in px->stream_requests */
    char *authorization;    /* header value sent upstream (wiped) */
    cf_proto_session *session;
    cf_http_call *call;
    uint64_t sent_ms;
    bool retried_unknown_key;
    bool retried_stale;
    /* reply */
    long status;
    px_reply_mode mode;
    char upstream_code[48]; /* Confide-Error of a plaintext reply */
    cf_buf reply;           /* collected body (encrypted JSON, plaintext error, models) */
    cf_buf out;             /* decrypted SSE not yet written to the app */
    bool stream_started;
    bool stream_counted;
    bool failed; /* the reply was already answered / failed */
} px_request;

/* ---- keys.c ------------------------------------------------------------------------ */

CF_RESULT px_keys_init(px_state *px);
/* Start (or continue) provisioning now; called at start and by the tick. */
void px_keys_kick(px_state *px);
/* Get the current usable key for a request: calls w->ready now if there is
 * one, else queues the waiter and starts provisioning. If provisioning is
 * backing off after a failure, w->ready(NULL) is called at once. */
void px_keys_acquire(px_state *px, px_waiter *w);
/* Remove a queued waiter (its request went away). */
void px_keys_cancel(px_state *px, px_waiter *w);
/* Drop a request's reference. */
void px_key_release(px_state *px, px_key *key);
/* The upstream answered unknown_key for `key`: retire it (the AS or the
 * workers lost it) so that the next acquire provisions a fresh one. */
void px_key_unknown(px_state *px, px_key *key);
/* Readiness for /healthz and requests: CF_OK, or the reason. */
CF_RESULT px_ready(const px_state *px);
/* Shutdown: cancel provisioning, fail waiters, delete every key at the AS
 * (if configured); done(px) once all deletions ended (or at once). */
void px_keys_shutdown(px_state *px, void (*done)(px_state *px));
void px_keys_free(px_state *px);
/* Seconds since the epoch / monotonic milliseconds. */
int64_t px_now(void);

/* ---- request.c ---------------------------------------------------------------------- */

CF_RESULT px_routes_add(px_state *px);
/* Index of an endpoint in the metrics tables. */
int px_endpoint_index(const cf_proto_endpoint *ep);
const char *px_outcome_name(px_outcome o);
/* Count the request's outcome, release everything and free it (the HTTP
 * request must already be finished). */
void px_request_done(px_request *r, px_outcome outcome);
/* Answer the app with an OpenAI-style error and finish (frees r). */
void px_request_fail(px_request *r, int status, const char *type, const char *code, const char *message,
                     px_outcome outcome);
/* The app went away (or shutdown forced it): stop everything, free r. */
void px_request_abandon(cf_http_request *req, void *arg);
/* Count a reply that did not authenticate, by code. */
void px_count_decrypt_failure(px_state *px, cf_error_code code);

/* ---- relay.c ------------------------------------------------------------------------ */

/* A streamed, encrypted reply began (on_response). */
CF_RESULT px_relay_begin(px_request *r);
/* The next upstream bytes of a stream. */
cf_http_body_action px_relay_body(px_request *r, cf_slice data);
/* The upstream transfer ended (err = CF_HTTP_OK on a clean end). Finishes r. */
void px_relay_done(px_request *r, cf_http_error err);

#endif /* CONFIDE_PROXY_INTERNAL_H */
