/* keys.c — AS bootstrap and the inference-secret lifecycle of confide-proxy
 * (DESIGN §3 flows 1 and 2; see proxy.h).
 *
 * Provisioning is one operation: attest the AS with a fresh nonce (every
 * time: a secret is only ever sealed to an AS verified moments before),
 * then generate K, seal it to the attested key, upload, verify the signed
 * receipt. It runs at start, when the current key comes within
 * --rotate-before of its expiry, and when the upstream reported the
 * current key unknown. Failures back off exponentially (1 s .. 30 s) and are
 * reported precisely: log line, /healthz, and the 503 apps receive. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/log.h"
#include "proxy.h"

/* A key this close to its expiry is no longer handed to new requests. */
#define KEY_MIN_REMAINING_S 1
#define BACKOFF_MAX_MS 30000u

typedef struct delete_ctx {
    px_state *px;
    px_key *key;
} delete_ctx;

int64_t px_now(void) { return (int64_t)time(NULL); }

static uint64_t mono_ms(void) { return cf_monotonic_ms(); }

static int64_t rotate_margin(const px_state *px, int64_t ttl)
{
    int64_t m = px->cfg.rotate_before_s > 0 ? px->cfg.rotate_before_s : ttl / 4;
    if (m > ttl / 2) {
        m = ttl / 2;
    }
    return m < 1 ? 1 : m;
}

/* The TTL we ask for: the flag, clamped into the manifest's bounds. */
static int64_t effective_ttl(const px_state *px)
{
    int64_t ttl = px->cfg.key_ttl_s;
    const cf_manifest *m = px->identity.manifest;
    if (m != NULL) {
        if (ttl < m->ttl_min_s) {
            ttl = m->ttl_min_s;
        }
        if (ttl > m->ttl_max_s) {
            ttl = m->ttl_max_s;
        }
    }
    return ttl;
}

static px_key *usable_key(const px_state *px)
{
    px_key *k = px->keys;
    if (k == NULL || k->retired || k->expires_at - px_now() < KEY_MIN_REMAINING_S) {
        return NULL;
    }
    return k;
}

static bool needs_provisioning(const px_state *px)
{
    px_key *k = usable_key(px);
    if (k == NULL) {
        return true;
    }
    int64_t ttl = effective_ttl(px);
    return k->expires_at - px_now() <= rotate_margin(px, ttl);
}

static void update_gauges(px_state *px)
{
    cf_metric_set(px->m.keys_held, (double)px->key_count);
    cf_metric_set(px->m.attest_state, (double)px->attest_state);
    px_key *k = usable_key(px);
    cf_metric_set(px->m.key_expires_in, k ? (double)(k->expires_at - px_now()) : 0.0);
}

static void key_free(px_state *px, px_key *key)
{
    for (px_key **p = &px->keys; *p != NULL; p = &(*p)->next) {
        if (*p == key) {
            *p = key->next;
            px->key_count--;
            break;
        }
    }
    cf_wipe(key, sizeof *key);
    free(key);
    update_gauges(px);
}

/* ---- waiters ------------------------------------------------------------------- */

static void waiter_unlink(px_state *px, px_waiter *w)
{
    if (!w->queued) {
        return;
    }
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->queued = false;
    px->waiter_count--;
}

/* Hand the current key (or NULL = failure) to every waiter. A waiter's
 * callback may queue new waiters (a retry): those wait for the next round. */
static void serve_waiters(px_state *px, px_key *key)
{
    px_waiter batch = {.prev = &batch, .next = &batch};
    if (px->waiters.next == &px->waiters) {
        return;
    }
    /* Move the whole list to a local batch first. */
    batch.next = px->waiters.next;
    batch.prev = px->waiters.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    px->waiters.next = px->waiters.prev = &px->waiters;
    while (batch.next != &batch) {
        px_waiter *w = batch.next;
        w->prev->next = w->next;
        w->next->prev = w->prev;
        w->queued = false;
        px->waiter_count--;
        if (key != NULL) {
            key->inflight++;
        }
        w->ready(w, key);
    }
}

/* ---- provisioning ----------------------------------------------------------------- */

static void provisioning_failed(px_state *px, const char *stage, bool attestation)
{
    const cf_error_info *e = cf_error_last();
    px->last_code = e->code;
    snprintf(px->last_error, sizeof px->last_error, "%s: %s: %s", stage, cf_error_name(e->code), e->detail);
    px->failures++;
    unsigned shift = px->failures > 6 ? 5 : px->failures - 1;
    uint64_t delay = (uint64_t)1000u << shift;
    if (delay > BACKOFF_MAX_MS) {
        delay = BACKOFF_MAX_MS;
    }
    px->next_attempt_ms = (int64_t)(mono_ms() + delay);
    if (attestation) {
        px->attest_state = PX_ATTEST_FAILED;
        cf_metric_inc(px->m.attest_failed);
        CF_LOG_ERROR("attestation_failed", cf_kv_str("as", px->cfg.as_url), cf_kv_str("manifest", px->pinned_hex),
                     cf_kv_str("err", cf_error_name(e->code)), cf_kv_str("detail", e->detail),
                     cf_kv_uint("retry_in_ms", delay));
    } else {
        cf_metric_inc(px->m.uploads_failed);
        CF_LOG_ERROR("key_upload_failed", cf_kv_str("as", px->cfg.as_url), cf_kv_str("err", cf_error_name(e->code)),
                     cf_kv_str("detail", e->detail), cf_kv_uint("retry_in_ms", delay));
    }
    update_gauges(px);
    /* Requests that waited get the reason now; a still usable current key
     * (failed rotation) keeps serving. */
    serve_waiters(px, usable_key(px));
}

static void delete_done(void *arg, cf_result r)
{
    delete_ctx *d = arg;
    px_state *px = d->px;
    if (cf_is_ok(r)) {
        cf_metric_inc(px->m.deletes);
        CF_LOG_INFO("key_deleted", cf_kv_str("key_id", d->key->key_id));
    } else {
        CF_LOG_WARN("key_delete_failed", cf_kv_str("key_id", d->key->key_id), cf_kv_last_error());
    }
    key_free(px, d->key);
    free(d);
    px->deletes_in_flight--;
}

/* Delete a key nobody uses any more at the AS (it expires there anyway; this
 * shortens its exposure), then forget it. */
static void key_delete(px_state *px, px_key *key)
{
    if (key->deleting) {
        return;
    }
    if (key->expires_at <= px_now() || !px->cfg.delete_keys_on_exit) {
        key_free(px, key);
        return;
    }
    delete_ctx *d = calloc(1, sizeof *d);
    key->deleting = true;
    if (d == NULL) {
        key_free(px, key);
        return;
    }
    d->px = px;
    d->key = key;
    if (cf_is_error(cf_as_delete_start(&px->as_ep, key->k, key->key_id, key->expires_at, delete_done, d, NULL))) {
        CF_LOG_WARN("key_delete_failed", cf_kv_str("key_id", key->key_id), cf_kv_last_error());
        free(d);
        key_free(px, key);
        return;
    }
    px->deletes_in_flight++;
}

static void retire(px_state *px, px_key *key)
{
    key->retired = true;
    if (key->inflight == 0) {
        key_delete(px, key);
    }
}

static void on_uploaded(void *arg, cf_result r, const cf_key_receipt *receipt)
{
    px_state *px = arg;
    px_key *key = NULL;
    px->op = NULL;
    px->op_uploading = false;
    if (cf_is_error(r)) {
        goto out;
    }
    key = calloc(1, sizeof *key);
    if (key == NULL) {
        cf_error_set(CF_E_NO_MEMORY, "out of memory", __FILE__, __LINE__);
        goto out;
    }
    memcpy(key->k, px->pending_k, sizeof key->k);
    memcpy(key->key_id, receipt->key_id, sizeof key->key_id);
    key->expires_at = receipt->expires_at;
out:
    /* K now lives in the key (or nowhere): the pending copy goes. */
    cf_wipe(px->pending_k, sizeof px->pending_k);
    if (key == NULL) {
        provisioning_failed(px, "key upload", false);
        return;
    }
    px_key *old = px->keys;
    key->next = old;
    px->keys = key;
    px->key_count++;
    px->failures = 0;
    px->next_attempt_ms = 0;
    px->last_code = CF_E_OK;
    px->last_error[0] = '\0';
    cf_metric_inc(px->m.uploads_ok);
    CF_LOG_INFO("key_uploaded", cf_kv_str("key_id", key->key_id), cf_kv_int("expires_at", key->expires_at),
                cf_kv_int("ttl_s", key->expires_at - px_now()), cf_kv_uint("scope_models", receipt->scope.count));
    if (old != NULL && !old->retired) {
        cf_metric_inc(px->m.rotations);
        CF_LOG_INFO("key_rotated", cf_kv_str("old_key_id", old->key_id), cf_kv_str("key_id", key->key_id),
                    cf_kv_uint("old_inflight", old->inflight));
        retire(px, old);
    }
    update_gauges(px);
    serve_waiters(px, key);
}

/* The scope of our keys: --models, else every model the manifest serves
 * (the first CF_KEY_SCOPE_MAX distinct names, in manifest order). */
static void scope_from_manifest(px_state *px)
{
    const cf_manifest *m = px->identity.manifest;
    memset(&px->scope, 0, sizeof px->scope);
    for (size_t i = 0; i < m->worker_count; i++) {
        size_t n = json_array_size(m->workers[i].models);
        for (size_t j = 0; j < n; j++) {
            const char *name = json_string_value(json_array_get(m->workers[i].models, j));
            bool dup = false;
            for (size_t s = 0; name != NULL && s < px->scope.count; s++) {
                dup = dup || strcmp(px->scope.models[s], name) == 0;
            }
            if (name == NULL || dup || strlen(name) > CF_MODEL_NAME_MAX) {
                continue;
            }
            if (px->scope.count == CF_KEY_SCOPE_MAX) {
                CF_LOG_WARN("scope_truncated", cf_kv_uint("max_models", CF_KEY_SCOPE_MAX),
                            cf_kv_str("hint", "the manifest serves more models than one key may name: use --models"));
                return;
            }
            snprintf(px->scope.models[px->scope.count++], sizeof px->scope.models[0], "%s", name);
        }
    }
}

static void log_attested(px_state *px)
{
    const cf_as_identity *id = &px->identity;
    char meas[2 * CF_MEASUREMENT_MAX + 1] = "", hpke_fp[65] = "", sign_fp[65] = "";
    if (cf_is_error(
            cf_hex_encode_str(cf_slice_make(id->claims.measurement, id->claims.measurement_len), meas, sizeof meas)) ||
        cf_is_error(cf_as_identity_fingerprints(id, hpke_fp, sign_fp))) {
        meas[0] = '\0';
    }
    CF_LOG_INFO("as_attested", cf_kv_str("as", px->cfg.as_url), cf_kv_str("platform", cf_platform_name(id->platform)),
                cf_kv_str("measurement", meas), cf_kv_str("tcb", id->claims.tcb),
                cf_kv_str("manifest", id->manifest->sha256_hex), cf_kv_str("as_hpke_key_sha256", hpke_fp),
                cf_kv_str("as_signing_key_sha256", sign_fp));
}

static void on_attested(void *arg, cf_result r, cf_as_identity *id)
{
    px_state *px = arg;
    px->op = NULL;
    if (cf_is_error(r)) {
        provisioning_failed(px, "attestation", true);
        return;
    }
    if (px->have_identity) {
        cf_as_identity_free(&px->identity);
    }
    px->identity = *id;
    memset(id, 0, sizeof *id);
    px->have_identity = true;
    bool first = px->attest_state != PX_ATTEST_VERIFIED;
    px->attest_state = PX_ATTEST_VERIFIED;
    cf_metric_inc(px->m.attest_ok);
    if (first) {
        log_attested(px);
    } else {
        CF_LOG_DEBUG("as_attested", cf_kv_str("as", px->cfg.as_url));
    }
    if (!px->scope_from_flag) {
        scope_from_manifest(px);
    }
    if (px->scope.count == 0) {
        cf_error_set(CF_E_CONFIG, "no model to scope the key to: the manifest serves none", __FILE__, __LINE__);
        provisioning_failed(px, "key upload", false);
        return;
    }
    char key_id[CF_KEY_ID_LEN + 1];
    int64_t ttl = effective_ttl(px);
    if (ttl != px->cfg.key_ttl_s && first) {
        CF_LOG_WARN("key_ttl_clamped", cf_kv_int("requested_s", px->cfg.key_ttl_s), cf_kv_int("ttl_s", ttl),
                    cf_kv_int("manifest_min_s", px->identity.manifest->ttl_min_s),
                    cf_kv_int("manifest_max_s", px->identity.manifest->ttl_max_s));
    }
    if (cf_is_error(cf_key_generate(px->pending_k, key_id)) ||
        cf_is_error(cf_as_upload_start(&px->as_ep, &px->identity, px->pending_k, (uint32_t)ttl, &px->scope, on_uploaded,
                                       px, &px->op))) {
        cf_wipe(px->pending_k, sizeof px->pending_k);
        provisioning_failed(px, "key upload", false);
        return;
    }
    px->op_uploading = true;
}

void px_keys_kick(px_state *px)
{
    if (px->shutting_down || px->op != NULL || !needs_provisioning(px)) {
        return;
    }
    if (px->next_attempt_ms != 0 && (int64_t)mono_ms() < px->next_attempt_ms) {
        return;
    }
    if (cf_is_error(cf_as_attest_start(&px->as_ep, px->pinned, on_attested, px, &px->op))) {
        px->op = NULL;
        provisioning_failed(px, "attestation", true);
    }
}

/* ---- tick: expiry, rotation, gauges ------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    px_state *px = arg;
    (void)fd;
    (void)what;
    int64_t now = px_now();
    for (px_key *k = px->keys, *next; k != NULL; k = next) {
        next = k->next;
        if (k->expires_at <= now && k->inflight == 0 && !k->deleting) {
            CF_LOG_INFO("key_expired", cf_kv_str("key_id", k->key_id));
            key_free(px, k);
        }
    }
    px_keys_kick(px);
    update_gauges(px);
}

CF_RESULT px_keys_init(px_state *px)
{
    px->waiters.prev = px->waiters.next = &px->waiters;
    px->attest_state = PX_ATTEST_PENDING;
    px->last_code = CF_E_UNAUTHORIZED;
    snprintf(px->last_error, sizeof px->last_error, "the attestation service has not been verified yet");
    px->tick = event_new(px->base, -1, EV_PERSIST, on_tick, px);
    CF_ENSURE(px->tick != NULL, CF_E_NO_MEMORY);
    struct timeval one = {1, 0};
    CF_ENSURE(event_add(px->tick, &one) == 0, CF_E_INTERNAL);
    return CF_OK;
}

void px_keys_acquire(px_state *px, px_waiter *w)
{
    px_key *k = usable_key(px);
    if (k != NULL) {
        k->inflight++;
        w->ready(w, k);
        return;
    }
    bool backing_off = px->op == NULL && px->next_attempt_ms != 0 && (int64_t)mono_ms() < px->next_attempt_ms;
    if (px->shutting_down || backing_off) {
        w->ready(w, NULL);
        return;
    }
    w->prev = px->waiters.prev;
    w->next = &px->waiters;
    px->waiters.prev->next = w;
    px->waiters.prev = w;
    w->queued = true;
    px->waiter_count++;
    px_keys_kick(px);
}

void px_keys_cancel(px_state *px, px_waiter *w) { waiter_unlink(px, w); }

void px_key_release(px_state *px, px_key *key)
{
    if (key == NULL) {
        return;
    }
    if (key->inflight > 0) {
        key->inflight--;
    }
    if (key->retired && key->inflight == 0) {
        key_delete(px, key);
    }
}

void px_key_unknown(px_state *px, px_key *key)
{
    if (key != NULL && !key->retired) {
        CF_LOG_WARN("key_unknown_upstream", cf_kv_str("key_id", key->key_id),
                    cf_kv_str("action", "re-attest, upload a fresh key, retry once"));
        /* Retired without a delete: the AS may still hold it for other
         * workers; it is deleted once no request uses it. */
        key->retired = true;
        update_gauges(px);
    }
}

CF_RESULT px_ready(const px_state *px)
{
    /* A usable key exists only after a verified attestation and a verified
     * receipt; it keeps serving until it expires even if a later
     * re-attestation (rotation) failed. */
    if (usable_key(px) != NULL) {
        return CF_OK;
    }
    if (px->last_error[0] != '\0') {
        cf_error_setf(px->last_code != CF_E_OK ? px->last_code : CF_E_UNAUTHORIZED, __FILE__, __LINE__, "%s",
                      px->last_error);
    } else {
        cf_error_setf(CF_E_UNAUTHORIZED, __FILE__, __LINE__, "no inference key confirmed by the AS yet");
    }
    return CF_ERROR;
}

static void (*shutdown_done)(px_state *px);

static void on_shutdown_check(evutil_socket_t fd, short what, void *arg);

void px_keys_shutdown(px_state *px, void (*done)(px_state *px))
{
    px->shutting_down = true;
    if (px->op != NULL) {
        cf_as_op_cancel(px->op);
        px->op = NULL;
        cf_wipe(px->pending_k, sizeof px->pending_k);
    }
    cf_error_set(CF_E_UNAUTHORIZED, "confide-proxy is shutting down", __FILE__, __LINE__);
    snprintf(px->last_error, sizeof px->last_error, "confide-proxy is shutting down");
    serve_waiters(px, NULL);
    for (px_key *k = px->keys, *next; k != NULL; k = next) {
        next = k->next;
        if (!k->deleting) {
            k->retired = true;
            key_delete(px, k);
        }
    }
    shutdown_done = done;
    on_shutdown_check(-1, 0, px);
}

static void on_shutdown_check(evutil_socket_t fd, short what, void *arg)
{
    px_state *px = arg;
    (void)fd;
    (void)what;
    if (px->deletes_in_flight == 0) {
        shutdown_done(px);
        return;
    }
    struct timeval tv = {0, 50000};
    event_base_once(px->base, -1, EV_TIMEOUT, on_shutdown_check, px, &tv);
}

void px_keys_free(px_state *px)
{
    if (px->tick != NULL) {
        event_free(px->tick);
        px->tick = NULL;
    }
    if (px->op != NULL) {
        cf_as_op_cancel(px->op);
        px->op = NULL;
    }
    while (px->keys != NULL) {
        px_key *k = px->keys;
        px->keys = k->next;
        cf_wipe(k, sizeof *k);
        free(k);
    }
    px->key_count = 0;
    cf_wipe(px->pending_k, sizeof px->pending_k);
    if (px->have_identity) {
        cf_as_identity_free(&px->identity);
        px->have_identity = false;
    }
}
