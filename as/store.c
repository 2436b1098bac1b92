/* store.c — confide-as state: inference secrets, challenge nonces, connected
 * workers and their key streams, and the 1 s tick (see as.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "as.h"
#include "confide/encoding.h"
#include "confide/log.h"

int64_t as_now(void) { return (int64_t)time(NULL); }

/* ---- keys --------------------------------------------------------------------- */

CF_RESULT as_store_init(as_state *as)
{
    as->keys = calloc((size_t)as->cfg.max_keys, sizeof *as->keys);
    as->nonce_cap = (size_t)as->cfg.max_challenges;
    as->nonces = calloc(as->nonce_cap, sizeof *as->nonces);
    CF_ENSURE_MSG(as->keys != NULL && as->nonces != NULL, CF_E_NO_MEMORY, "allocating the key store failed");
    return CF_OK;
}

static void key_free(as_key *k)
{
    if (k != NULL) {
        cf_wipe(k, sizeof *k);
        free(k);
    }
}

static void worker_end(as_state *as, as_worker *w);

void as_store_free(as_state *as)
{
    as_workers_close_all(as);
    for (size_t i = 0; i < as->key_count; i++) {
        key_free(as->keys[i]);
    }
    free(as->keys);
    as->keys = NULL;
    as->key_count = 0;
    free(as->nonces);
    as->nonces = NULL;
}

as_key *as_key_find(as_state *as, const char *key_id)
{
    for (size_t i = 0; i < as->key_count; i++) {
        /* Key ids are public; plain comparison is fine. */
        if (strcmp(as->keys[i]->key_id, key_id) == 0) {
            return as->keys[i];
        }
    }
    return NULL;
}

bool as_worker_may_have(const as_state *as, const cf_worker_token *t, const cf_key_scope *scope)
{
    if (t->policy_index >= as->manifest->worker_count) {
        return false;
    }
    const cf_manifest_worker *w = &as->manifest->workers[t->policy_index];
    for (size_t i = 0; i < scope->count; i++) {
        if (cf_manifest_worker_serves(w, cf_slice_cstr(scope->models[i]))) {
            return true;
        }
    }
    return false;
}

/* ---- key streams ----------------------------------------------------------------- */

/* Queue one signed event on a worker's stream; a stream that cannot take
 * it is marked for closing (the worker reconnects and gets a snapshot). */
static void worker_send(as_state *as, as_worker *w, cf_key_event *ev, const uint8_t *k)
{
    if (w->closing) {
        return;
    }
    cf_buf data, frame;
    cf_buf_init(&data, 64 * 1024);
    cf_buf_init(&frame, 64 * 1024);
    ev->seq = w->seq;
    if (cf_is_error(cf_key_event_build(as->sign_key, &w->token, w->stream_nonce, ev, k, &data)) ||
        cf_is_error(cf_buf_appendf(&frame, "event: %s\nid: %llu\ndata: ", cf_key_event_name(ev->type),
                                   (unsigned long long)ev->seq)) ||
        cf_is_error(cf_buf_append_slice(&frame, cf_buf_slice(&data))) ||
        cf_is_error(cf_buf_append_cstr(&frame, "\n\n")) ||
        cf_is_error(cf_http_stream_write(w->req, cf_buf_slice(&frame)))) {
        CF_LOG_WARN("worker_stream_dropped", cf_kv_str("worker", w->id_hex), cf_kv_last_error());
        w->closing = true;
    } else {
        w->seq++;
    }
    cf_buf_free(&data);
    cf_buf_free(&frame);
}

static void send_put(as_state *as, as_worker *w, const as_key *key)
{
    cf_key_event ev = {.type = CF_KEY_EVENT_PUT, .expires_at = key->expires_at, .scope = key->scope};
    memcpy(ev.key_id, key->key_id, sizeof ev.key_id);
    worker_send(as, w, &ev, key->k);
}

static void send_delete(as_state *as, as_worker *w, const char *key_id, const char *reason)
{
    cf_key_event ev = {.type = CF_KEY_EVENT_DELETE};
    memcpy(ev.key_id, key_id, sizeof ev.key_id);
    snprintf(ev.reason, sizeof ev.reason, "%s", reason);
    worker_send(as, w, &ev, NULL);
}

/* Finish streams marked closing (never while iterating the list). */
static void reap_workers(as_state *as)
{
    as_worker **pp = &as->workers;
    while (*pp != NULL) {
        as_worker *w = *pp;
        if (w->closing) {
            *pp = w->next;
            worker_end(as, w);
        } else {
            pp = &w->next;
        }
    }
}

static void worker_end(as_state *as, as_worker *w)
{
    CF_LOG_INFO("worker_disconnected", cf_kv_str("worker", w->id_hex));
    cf_http_stream_end(w->req);
    as->worker_count--;
    cf_metric_set(as->m.workers_connected, (double)as->worker_count);
    cf_wipe(w, sizeof *w);
    free(w);
}

static void on_worker_close(cf_http_request *req, void *arg)
{
    as_state *as = arg;
    for (as_worker *w = as->workers; w != NULL; w = w->next) {
        if (w->req == req) {
            w->closing = true;
        }
    }
    reap_workers(as);
}

CF_RESULT as_worker_attach(as_state *as, cf_http_request *req, const cf_worker_token *t,
                           const uint8_t stream_nonce[CF_STREAM_NONCE_LEN])
{
    CF_ENSURE_MSG(as->worker_count < (size_t)as->cfg.max_workers, CF_E_LIMIT,
                  "too many connected workers (--max-workers)");
    as_worker *w = calloc(1, sizeof *w);
    CF_ENSURE_MSG(w != NULL, CF_E_NO_MEMORY, "calloc failed");
    w->token = *t;
    memcpy(w->stream_nonce, stream_nonce, CF_STREAM_NONCE_LEN);
    w->req = req;
    if (cf_is_error(cf_hex_encode_str(cf_slice_make(t->worker_id, CF_WORKER_ID_LEN), w->id_hex, sizeof w->id_hex))) {
        free(w);
        return CF_ERROR;
    }
    static const cf_http_header headers[] = {{"Cache-Control", "no-store"}, {NULL, NULL}};
    cf_http_stream_callbacks cbs = {.on_close = on_worker_close};
    if (cf_is_error(cf_http_stream_start(req, 200, "text/event-stream", headers, &cbs, as))) {
        free(w);
        return CF_ERROR;
    }
    /* From here on the stream owns the request: never fail back to the caller. */
    /* One stream per token: a worker holds one (a reconnect replaces its
     * dead predecessor at once), and a token that leaked cannot be used to
     * fill --max-workers and lock attested workers out. */
    for (as_worker *o = as->workers; o != NULL; o = o->next) {
        if (memcmp(o->token.worker_id, t->worker_id, CF_WORKER_ID_LEN) == 0 && !o->closing) {
            CF_LOG_INFO("worker_stream_replaced", cf_kv_str("worker", o->id_hex));
            o->closing = true;
        }
    }
    w->next = as->workers;
    as->workers = w;
    as->worker_count++;
    cf_metric_set(as->m.workers_connected, (double)as->worker_count);
    CF_LOG_INFO("worker_connected", cf_kv_str("worker", w->id_hex),
                cf_kv_str("policy", as->manifest->workers[t->policy_index].name));
    uint64_t sent = 0;
    int64_t now = as_now();
    for (size_t i = 0; i < as->key_count; i++) {
        /* Keys already over but not yet swept (1 s tick) are not sent. */
        if (as->keys[i]->expires_at > now && as_worker_may_have(as, &w->token, &as->keys[i]->scope)) {
            send_put(as, w, as->keys[i]);
            sent++;
        }
    }
    cf_key_event ready = {.type = CF_KEY_EVENT_READY, .count = sent};
    worker_send(as, w, &ready, NULL);
    reap_workers(as);
    return CF_OK;
}

void as_workers_close_all(as_state *as)
{
    for (as_worker *w = as->workers; w != NULL; w = w->next) {
        w->closing = true;
    }
    reap_workers(as);
}

CF_RESULT as_key_put(as_state *as, const cf_key_upload *u, int64_t expires_at)
{
    as_key *existing = as_key_find(as, u->key_id);
    cf_key_scope old_scope = {0};
    as_key *k = existing;
    if (k == NULL) {
        CF_ENSURE_MSG(as->key_count < (size_t)as->cfg.max_keys, CF_E_LIMIT, "key store full (--max-keys)");
        k = calloc(1, sizeof *k);
        CF_ENSURE_MSG(k != NULL, CF_E_NO_MEMORY, "calloc failed");
        as->keys[as->key_count++] = k;
        memcpy(k->key_id, u->key_id, sizeof k->key_id);
        memcpy(k->k, u->k, sizeof k->k);
    } else {
        /* Same id = same K (the id is derived from K and was checked). */
        old_scope = existing->scope;
    }
    k->expires_at = expires_at;
    k->scope = u->scope;
    cf_metric_set(as->m.keys, (double)as->key_count);
    for (as_worker *w = as->workers; w != NULL; w = w->next) {
        if (as_worker_may_have(as, &w->token, &k->scope)) {
            send_put(as, w, k);
        } else if (existing != NULL && as_worker_may_have(as, &w->token, &old_scope)) {
            send_delete(as, w, k->key_id, "scope");
        }
    }
    reap_workers(as);
    return CF_OK;
}

void as_key_remove(as_state *as, as_key *k, const char *reason)
{
    for (size_t i = 0; i < as->key_count; i++) {
        if (as->keys[i] != k) {
            continue;
        }
        as->keys[i] = as->keys[--as->key_count];
        as->keys[as->key_count] = NULL;
        for (as_worker *w = as->workers; w != NULL; w = w->next) {
            if (as_worker_may_have(as, &w->token, &k->scope)) {
                send_delete(as, w, k->key_id, reason);
            }
        }
        CF_LOG_INFO("key_removed", cf_kv_str("key_id", k->key_id), cf_kv_str("reason", reason));
        key_free(k);
        cf_metric_set(as->m.keys, (double)as->key_count);
        reap_workers(as);
        return;
    }
}

/* ---- challenge nonces ---------------------------------------------------------------- */

/* A used or expired nonce is remembered for another challenge TTL so that
 * a late replay is reported as such, then its slot is reused. */
static bool nonce_slot_free(const as_state *as, const as_nonce *n, int64_t now)
{
    return !n->live || now >= n->expires_at + as->cfg.challenge_ttl_s;
}

CF_RESULT as_nonce_issue(as_state *as, int64_t now, uint8_t nonce[CF_AS_NONCE_LEN], int64_t *expires_at)
{
    for (size_t i = 0; i < as->nonce_cap; i++) {
        as_nonce *n = &as->nonces[i];
        if (nonce_slot_free(as, n, now)) {
            CF_GUARD(cf_random(n->nonce, sizeof n->nonce));
            n->expires_at = now + as->cfg.challenge_ttl_s;
            n->used = false;
            n->live = true;
            memcpy(nonce, n->nonce, CF_AS_NONCE_LEN);
            *expires_at = n->expires_at;
            return CF_OK;
        }
    }
    CF_BAIL_MSG(CF_E_LIMIT, "too many outstanding challenges (--max-challenges)");
}

CF_RESULT as_nonce_consume(as_state *as, int64_t now, const uint8_t nonce[CF_AS_NONCE_LEN])
{
    for (size_t i = 0; i < as->nonce_cap; i++) {
        as_nonce *n = &as->nonces[i];
        if (!n->live || memcmp(n->nonce, nonce, CF_AS_NONCE_LEN) != 0) {
            continue;
        }
        bool was_used = n->used;
        n->used = true;
        CF_ENSURE_MSG(!was_used, CF_E_REPLAY, "challenge nonce already used");
        CF_ENSURE_MSG(now < n->expires_at, CF_E_STALE, "challenge nonce expired: ask for a new challenge");
        return CF_OK;
    }
    CF_BAIL_MSG(CF_E_UNAUTHORIZED, "nonce was not issued by this AS (or is long expired)");
}

/* ---- the tick -------------------------------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    as_state *as = arg;
    int64_t now = as_now();
    as->ticks++;
    /* Expiry by timer, not only lazily: workers learn at once. */
    for (size_t i = 0; i < as->key_count;) {
        if (as->keys[i]->expires_at <= now) {
            cf_metric_inc(as->m.expired);
            as_key_remove(as, as->keys[i], "expired"); /* swaps the last into i */
        } else {
            i++;
        }
    }
    bool keepalive = as->cfg.keepalive_s > 0 && as->ticks % (uint64_t)as->cfg.keepalive_s == 0;
    for (as_worker *w = as->workers; w != NULL; w = w->next) {
        if (now >= w->token.expires_at) {
            CF_LOG_INFO("worker_token_expired", cf_kv_str("worker", w->id_hex));
            w->closing = true;
            continue;
        }
        if (!w->notice_sent && now >= w->token.expires_at - as->cfg.token_notice_s) {
            cf_key_event ev = {.type = CF_KEY_EVENT_TOKEN_EXPIRING, .expires_at = w->token.expires_at};
            worker_send(as, w, &ev, NULL);
            w->notice_sent = true;
        } else if (keepalive && !w->closing &&
                   cf_is_error(cf_http_stream_write(w->req, cf_slice_cstr(": keepalive\n\n")))) {
            w->closing = true;
        }
    }
    reap_workers(as);
}

CF_RESULT as_tick_start(as_state *as)
{
    as->tick = event_new(as->base, -1, EV_PERSIST, on_tick, as);
    CF_ENSURE_MSG(as->tick != NULL, CF_E_NO_MEMORY, "event_new failed");
    struct timeval one = {1, 0};
    CF_ENSURE_MSG(event_add(as->tick, &one) == 0, CF_E_INTERNAL, "event_add failed");
    return CF_OK;
}
