/*
 * as.h — internals of confide-as, the attestation service (DESIGN §3 flows
 * 1–3; docs/operations.md §confide-as; API in docs/protocol.md).
 *
 * One process, one libevent loop, single-threaded. State lives in memory
 * only (DESIGN §7 embedded default): the AS's HPKE and signing keys are
 * generated at start and never leave the process; inference secrets are
 * kept in wiped memory until their TTL ends or their owner deletes them.
 *
 * Pieces:
 *   main.c      flags, keys, server, signals, shutdown
 *   store.c     key store, challenge nonces, connected workers and the
 *               fan-out of puts/deletes to their key streams, the 1 s tick
 *               (key expiry, token notices, keep-alives)
 *   handlers.c  the HTTP endpoints
 *
 * Invariant: every handler either fully applies a request or changes
 * nothing (checks first, then one commit step that cannot fail halfway).
 */
#ifndef CONFIDE_AS_INTERNAL_H
#define CONFIDE_AS_INTERNAL_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "confide/as_api.h"
#include "confide/attest.h"
#include "confide/daemon.h"
#include "confide/hpke.h"
#include "confide/http_server.h"
#include "confide/manifest.h"
#include "confide/metrics.h"

typedef struct as_key {
    char key_id[CF_KEY_ID_LEN + 1];
    uint8_t k[CF_INFERENCE_KEY_LEN];
    int64_t expires_at;
    cf_key_scope scope;
} as_key;

typedef struct as_worker {
    struct as_worker *next;
    cf_http_request *req;
    cf_worker_token token;
    uint8_t stream_nonce[CF_STREAM_NONCE_LEN]; /* the worker's, signed into every event */
    char id_hex[2 * CF_WORKER_ID_LEN + 1];
    uint64_t seq;
    bool notice_sent;
    bool closing;
} as_worker;

typedef struct as_nonce {
    uint8_t nonce[CF_AS_NONCE_LEN];
    int64_t expires_at;
    bool used;
    bool live;
} as_nonce;

/* Rejection reasons counted in metrics (a fixed set: no peer-chosen labels). */
#define AS_REASONS(X)                                                                                                 \
    X(CF_E_MALFORMED) X(CF_E_UNSUPPORTED) X(CF_E_CERT) X(CF_E_EXPIRED) X(CF_E_POLICY) X(CF_E_REPORT_DATA)           \
        X(CF_E_TCB) X(CF_E_BAD_SIGNATURE) X(CF_E_REPLAY) X(CF_E_STALE) X(CF_E_UNAUTHORIZED) X(CF_E_LIMIT)           \
            X(CF_E_INTERNAL)

typedef struct as_config {
    char *host;
    int64_t port;
    char *tls_cert;
    char *tls_key;
    char *platform_name;
    char *sim_dir;
    char *tsm_path;
    char *collateral_dir;
    char *manifest_path;
    int64_t token_ttl_s;
    int64_t token_notice_s;
    int64_t challenge_ttl_s;
    int64_t max_keys;
    int64_t max_workers;
    int64_t max_challenges;
    int64_t max_body;
    int64_t rate_attest;
    int64_t rate_upload;
    int64_t rate_burst;
    int64_t read_timeout_ms;
    int64_t write_timeout_ms;
    int64_t keepalive_s;
} as_config;

typedef struct as_metrics {
    cf_metrics *registry;
    cf_metric *keys;
    cf_metric *uploads_ok;
    cf_metric *uploads_rejected;
    cf_metric *deletes;
    cf_metric *expired;
    cf_metric *self_attestations;
    cf_metric *workers_connected;
    cf_metric *worker_accepted;
    cf_metric *worker_rejected[CF_E_COUNT_];
    cf_metric *rate_limited;
    cf_metric *fetches;
} as_metrics;

typedef struct as_state {
    as_config cfg;
    struct event_base *base;
    cf_http_server *server;
    cf_daemon_signals *signals;
    struct event *tick;
    bool shutting_down;
    bool self_check;

    cf_platform platform;
    cf_attester_config attester;
    cf_manifest *manifest;
    cf_hpke_keypair hpke;
    EVP_PKEY *sign_key;
    uint8_t sign_pub[CF_ED25519_PUB_LEN];

    as_key **keys;
    size_t key_count;
    as_nonce *nonces;
    size_t nonce_cap;
    as_worker *workers;
    size_t worker_count;

    cf_rate_limiter *rl_attest;
    cf_rate_limiter *rl_upload;
    as_metrics m;
    uint64_t ticks;
} as_state;

/* ---- store.c ---------------------------------------------------------------- */

CF_RESULT as_store_init(as_state *as);
void as_store_free(as_state *as);
as_key *as_key_find(as_state *as, const char *key_id);
/* Insert or replace (same key id = same K); announces to matching workers. */
CF_RESULT as_key_put(as_state *as, const cf_key_upload *u, int64_t expires_at);
/* Remove, wipe, announce "delete" with `reason` to matching workers. */
void as_key_remove(as_state *as, as_key *k, const char *reason);
/* True if the worker's manifest policy serves any model of the scope. */
bool as_worker_may_have(const as_state *as, const cf_worker_token *t, const cf_key_scope *scope);

CF_RESULT as_nonce_issue(as_state *as, int64_t now, uint8_t nonce[CF_AS_NONCE_LEN], int64_t *expires_at);
/* Single use: CF_E_REPLAY if used, CF_E_STALE if expired, CF_E_UNAUTHORIZED
 * if never issued (or forgotten). The nonce is consumed in every case. */
CF_RESULT as_nonce_consume(as_state *as, int64_t now, const uint8_t nonce[CF_AS_NONCE_LEN]);

/* Attach a key stream: sends the snapshot and "ready". On failure the
 * request is still the caller's to finish. */
CF_RESULT as_worker_attach(as_state *as, cf_http_request *req, const cf_worker_token *t,
                           const uint8_t stream_nonce[CF_STREAM_NONCE_LEN]);
/* End every stream (shutdown). */
void as_workers_close_all(as_state *as);

CF_RESULT as_tick_start(as_state *as);

/* ---- handlers.c --------------------------------------------------------------- */

CF_RESULT as_routes_add(as_state *as);

int64_t as_now(void);

#endif /* CONFIDE_AS_INTERNAL_H */
