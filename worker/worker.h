/*
 * worker.h — internals of confide-worker, the encryption proxy that runs in a
 * TEE next to an inference server (DESIGN §3 flows 3–4; wire format in
 * docs/protocol.md; operator documentation in docs/operations.md
 * §confide-worker).
 *
 * One process, one libevent loop, single-threaded: the HTTP(S) listener
 * (lib/net server), the outbound calls to the attestation service (AS) and to
 * the inference server on its UNIX socket (lib/net client, libcurl driven
 * from the same loop) and the timers all run on it.
 *
 * Pieces:
 *   main.c     flags, setup, health, metrics, signals, graceful shutdown
 *   keys.c     the key cache: inference secrets with expiry, wiped on
 *              eviction; a short negative cache for unknown key IDs
 *   join.c     joining the AS: verify the AS, challenge, evidence, token,
 *              key stream (reconnect with backoff + jitter, re-attest before
 *              the token expires), one-shot fetch of an unknown key ID
 *   request.c  the API endpoints: decrypt, check the model, forward over the
 *              UNIX socket, encrypt the reply (plaintext errors only before
 *              decryption)
 *   relay.c    the streamed (SSE) reply: event by event, backpressure by
 *              pausing the backend transfer, bounded memory, final marker
 *
 * Invariants:
 *  - Nothing decrypted ever leaves the process except encrypted, and never
 *    reaches a log line: logs carry request ids, endpoint names, key IDs
 *    (public), statuses, sizes and error codes only.
 *  - A request resolves its key exactly once (cf_proto_request_open derives
 *    the response key into the session), so a reply that outlives the key's
 *    TTL still completes.
 *  - Every secret (inference secrets, the HPKE private key, the worker token,
 *    decrypted bodies) lives in memory that is wiped when dropped.
 */
#ifndef CONFIDE_WORKER_INTERNAL_H
#define CONFIDE_WORKER_INTERNAL_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "confide/as_api.h"
#include "confide/attest.h"
#include "confide/daemon.h"
#include "confide/hpke.h"
#include "confide/http_client.h"
#include "confide/http_server.h"
#include "confide/manifest.h"
#include "confide/metrics.h"
#include "confide/protocol.h"
#include "confide/replay.h"
#include "confide/worker_keys.h"

/* ---- configuration -------------------------------------------------------------- */

typedef struct worker_config {
    char *host;
    int64_t port;
    char *tls_cert;
    char *tls_key;
    char *backend_socket;
    char *as_url;
    char *as_ca_file;
    bool as_allow_http;
    char *manifest_path;
    char *platform_name;
    char *sim_dir;
    char *tsm_path;
    char *collateral_dir;
    int64_t max_body;
    int64_t max_response;
    int64_t max_event;
    int64_t max_streams;
    int64_t max_requests;
    int64_t max_keys;
    int64_t replay_window_ms;
    int64_t replay_capacity;
    int64_t pad_bucket;
    int64_t backend_connect_timeout_ms;
    int64_t backend_timeout_ms;
    int64_t backend_idle_timeout_ms;
    int64_t read_timeout_ms;
    int64_t write_timeout_ms;
    int64_t shutdown_timeout_ms;
    int64_t stream_idle_ms;
    int64_t backoff_min_ms;
    int64_t backoff_max_ms;
    int64_t unknown_key_ttl_s;
    int64_t max_key_fetches;
} worker_config;

/* ---- metrics -------------------------------------------------------------------------- */

/* Endpoints counted in metrics (a fixed set: no peer-chosen labels). */
enum { EP_CHAT, EP_COMPLETIONS, EP_EMBEDDINGS, EP_MODELS, EP_COUNT };
/* Outcomes of a request:
 *   ok         the backend answered 2xx and the reply went out encrypted
 *   rejected   refused before decryption (plaintext error with a code)
 *   backend    the backend answered non-2xx (encrypted like any reply)
 *   failed     the worker produced an (encrypted) error after decrypting:
 *              backend unreachable, timeout, bad output, limits
 *   cancelled  the client went away first */
enum { OUT_OK, OUT_REJECTED, OUT_BACKEND, OUT_FAILED, OUT_CANCELLED, OUT_COUNT };

typedef struct worker_metrics {
    cf_metrics *registry;
    cf_metric *requests[EP_COUNT][OUT_COUNT];
    cf_metric *decrypt_failures[CF_E_COUNT_]; /* only protocol codes registered */
    cf_metric *bytes_in;
    cf_metric *bytes_out;
    cf_metric *streams_active;
    cf_metric *streams_total;
    cf_metric *keys;
    cf_metric *key_fetches_ok;
    cf_metric *key_fetches_failed;
    cf_metric *backend_ttfb;
    cf_metric *token_valid;
    cf_metric *key_stream_up;
    cf_metric *attest_ok;
    cf_metric *attest_failed;
    cf_metric *stream_reconnects;
    cf_metric *events_relayed;
    cf_metric *backend_pauses;
} worker_metrics;

/* ---- key cache (keys.c over lib/worker_keys) ---------------------------------------- */

typedef cf_worker_key worker_key;

/* ---- join state (join.c) -------------------------------------------------------------- */

typedef enum join_phase {
    JOIN_IDLE = 0,   /* waiting for the backoff timer */
    JOIN_AS_ATTEST,  /* POST /v1/attest */
    JOIN_CHALLENGE,  /* POST /v1/workers/challenge */
    JOIN_ATTEST,     /* POST /v1/workers/attest */
    JOIN_DONE,       /* token held */
} join_phase;

typedef struct as_call_ctx as_call_ctx;

typedef struct worker_join {
    join_phase phase;
    cf_hpke_keypair kp;       /* generated once per process */
    cf_as_identity as_id;     /* the verified AS (signing key, manifest) */
    bool have_as_id;
    uint8_t nonce[CF_AS_NONCE_LEN];
    cf_worker_grant grant;    /* token (bearer secret), worker id, policy */
    bool have_grant;
    const cf_manifest_worker *policy; /* our policy in the verified manifest */
    as_call_ctx *call;        /* the join call in flight, if any */
    struct event *timer;      /* backoff / re-attest */
    unsigned failures;        /* consecutive join failures (backoff) */
    /* key stream */
    cf_http_call *stream;
    cf_sse_parser parser;
    bool parser_live;
    bool stream_ready;        /* "ready" received on the current stream */
    uint64_t stream_lost_ms;  /* monotonic time the last ready stream ended */
    uint64_t stream_seq;
    uint8_t stream_nonce[CF_STREAM_NONCE_LEN]; /* fresh per stream, signed into its events */
    uint64_t generation;
    unsigned stream_failures;
    struct event *stream_timer;
    int64_t reattest_at;      /* wall clock seconds */
} worker_join;

/* ---- the daemon ------------------------------------------------------------------------ */

typedef struct worker_request worker_request;

typedef struct worker_state {
    worker_config cfg;
    struct event_base *base;
    cf_http_server *server;
    cf_http_client *as_client;
    cf_http_client *backend;
    cf_daemon_signals *signals;
    struct event *tick;
    bool shutting_down;

    cf_platform platform;
    cf_attester_config attester;
    cf_manifest *manifest; /* the pinned manifest (--manifest) */

    cf_worker_keys keys;
    worker_join join;
    cf_replay_guard *replay;
    worker_metrics m;

    worker_request *requests; /* every request in flight (shutdown, fetch waits) */
    size_t streams;           /* streamed replies in flight */
    size_t fetches;           /* key fetches in flight */
} worker_state;

int64_t worker_now(void);
int64_t worker_now_ms(void);

/* keys.c: the cache plus metrics and logs. */
/* Insert or replace (from a verified key event); logs an eviction. */
CF_RESULT worker_keys_put(worker_state *w, const cf_key_event *ev, uint64_t generation);
void worker_keys_delete(worker_state *w, const char *key_id);
/* Drop expired keys (and keys the current stream generation did not confirm,
 * when `keep_generation` is non-zero). */
void worker_keys_sweep(worker_state *w, int64_t now, uint64_t keep_generation);
/* cf_proto_key_lookup_fn over the cache (ctx = worker_state). */
CF_RESULT worker_key_lookup(void *ctx, const char *key_id, uint8_t secret[CF_PROTO_SECRET_LEN]);

/* join.c */
CF_RESULT worker_join_start(worker_state *w);
void worker_join_stop(worker_state *w);
bool worker_token_valid(const worker_state *w);
bool worker_stream_live(const worker_state *w);
/* Ask the AS for one key; done(arg, found) is called from the loop. Fails
 * (synchronously) when no token is held or too many fetches are in flight. */
CF_RESULT worker_fetch_key(worker_state *w, const char *key_id, void (*done)(void *arg, bool found), void *arg,
                           as_call_ctx **out);
/* Cancel a fetch whose requester went away (done is not called). */
void worker_fetch_cancel(worker_state *w, as_call_ctx *c);
/* True if the worker's manifest policy serves this model. */
bool worker_serves(const worker_state *w, cf_slice model);

/* request.c */
CF_RESULT worker_routes_add(worker_state *w);
/* Free every request still in flight without answering it (a forced exit
 * after a second SIGTERM; the server then drops their connections). */
void worker_requests_drop(worker_state *w);


#endif /* CONFIDE_WORKER_INTERNAL_H */
