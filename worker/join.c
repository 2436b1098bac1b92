/* join.c — joining the attestation service (DESIGN §3 flow 3; messages in
 * include/confide/as_api.h, docs/protocol.md §Attestation service API).
 *
 * One join cycle, all asynchronous on the loop:
 *   1. POST /v1/attest with a fresh nonce; the answer is verified against the
 *      pinned manifest (--manifest): this yields the AS signing key that
 *      signs every key event, and the manifest that names our policy.
 *   2. POST /v1/workers/challenge -> nonce.
 *   3. evidence binding nonce + our HPKE public key (cf_attest_collect),
 *      POST /v1/workers/attest -> worker token (bearer) + worker id + policy.
 *   4. GET /v1/workers/keys with the token: an SSE stream of signed events,
 *      each put HPKE-wrapped to our attested key.
 * Any failure restarts the cycle after an exponential backoff with full
 * jitter (--backoff-min-ms .. --backoff-max-ms). A dropped key stream is
 * reopened with the same token (backoff too) while the token is valid. The
 * cycle is re-run before the token expires: at 2/3 of its lifetime or on the
 * AS's token_expiring notice, whichever comes first; the keys already held
 * keep serving during the re-join. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/log.h"
#include "worker.h"

struct as_call_ctx {
    worker_state *w;
    cf_http_call *call;
    cf_buf body;
    long status;
    void (*on_done)(as_call_ctx *c, cf_http_error error);
    /* key fetch */
    char key_id[CF_KEY_ID_LEN + 1];
    uint8_t nonce[CF_STREAM_NONCE_LEN]; /* fresh per fetch, signed into the answer */
    void (*fetch_done)(void *arg, bool found);
    void *fetch_arg;
};

static void schedule_join(worker_state *w, unsigned delay_ms);
static void stream_open(worker_state *w);
static void stream_close(worker_state *w);

bool worker_token_valid(const worker_state *w)
{
    return w->join.have_grant && worker_now() < w->join.grant.expires_at;
}

/* Live: the stream delivered its snapshot, or a ready stream ended less than
 * WORKER_STREAM_GRACE_MS ago and is being replaced (every re-attestation
 * swaps streams; the keys held stay valid meanwhile). */
#define WORKER_STREAM_GRACE_MS 3000
bool worker_stream_live(const worker_state *w)
{
    if (w->join.stream != NULL && w->join.stream_ready) {
        return true;
    }
    return w->join.stream_lost_ms != 0 && cf_monotonic_ms() - w->join.stream_lost_ms < WORKER_STREAM_GRACE_MS;
}

bool worker_serves(const worker_state *w, cf_slice model)
{
    return w->join.policy != NULL && cf_manifest_worker_serves(w->join.policy, model);
}

/* Exponential backoff with full jitter: uniform in [min, min(max, min*2^n)]. */
static unsigned backoff_ms(const worker_state *w, unsigned failures)
{
    uint64_t lo = (uint64_t)w->cfg.backoff_min_ms, hi = lo;
    for (unsigned i = 0; i < failures && hi < (uint64_t)w->cfg.backoff_max_ms; i++) {
        hi *= 2;
    }
    if (hi > (uint64_t)w->cfg.backoff_max_ms) {
        hi = (uint64_t)w->cfg.backoff_max_ms;
    }
    uint32_t r = 0;
    if (cf_is_error(cf_random(&r, sizeof r))) {
        r = 0;
    }
    return (unsigned)(lo + (hi > lo ? r % (hi - lo + 1) : 0));
}

/* ---- calls to the AS ---------------------------------------------------------------- */

static void as_call_free(as_call_ctx *c)
{
    if (c == NULL) {
        return;
    }
    cf_buf_free(&c->body); /* may hold a token or a wrapped key: wiped */
    cf_wipe(c->key_id, sizeof c->key_id);
    free(c);
}

static cf_http_body_action as_call_body(cf_http_call *call, cf_slice data, void *arg)
{
    (void)call;
    as_call_ctx *c = arg;
    return cf_is_ok(cf_buf_append_slice(&c->body, data)) ? CF_HTTP_BODY_CONTINUE : CF_HTTP_BODY_ABORT;
}

static void as_call_response(cf_http_call *call, long status, void *arg)
{
    (void)call;
    ((as_call_ctx *)arg)->status = status;
}

static void as_call_finished(cf_http_call *call, cf_http_error error, void *arg)
{
    (void)call;
    as_call_ctx *c = arg;
    c->call = NULL;
    c->on_done(c, error);
}

/* Start `method path` on the AS; `bearer` adds the worker token. */
static CF_RESULT as_call_start(worker_state *w, const char *method, const char *path, cf_slice body, bool bearer,
                               void (*on_done)(as_call_ctx *, cf_http_error), as_call_ctx **out)
{
    cf_result result = CF_OK;
    char url[1024], *auth = NULL;
    size_t auth_len = 0;
    as_call_ctx *c = calloc(1, sizeof *c);
    CF_ENSURE_MSG(c != NULL, CF_E_NO_MEMORY, "calloc failed");
    c->w = w;
    c->on_done = on_done;
    cf_buf_init(&c->body, CF_AS_BODY_MAX);
    int n = snprintf(url, sizeof url, "%s%s", w->cfg.as_url, path);
    CF_ENSURE_MSG_OUT(n > 0 && (size_t)n < sizeof url, CF_E_CONFIG, "--as-url too long");
    cf_http_header headers[3] = {{"Content-Type", "application/json"}, {NULL, NULL}, {NULL, NULL}};
    if (bearer) {
        CF_ENSURE_MSG_OUT(w->join.have_grant, CF_E_UNAUTHORIZED, "no worker token");
        auth_len = strlen(w->join.grant.token) + 8;
        auth = malloc(auth_len);
        CF_ENSURE_OUT(auth != NULL, CF_E_NO_MEMORY);
        snprintf(auth, auth_len, "Bearer %s", w->join.grant.token);
        headers[1] = (cf_http_header){"Authorization", auth};
    }
    cf_http_call_opts o = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .total_timeout_ms = 30000,
        .max_response_size = CF_AS_BODY_MAX,
        .on_response = as_call_response,
        .on_body = as_call_body,
        .on_done = as_call_finished,
        .arg = c,
    };
    CF_GUARD_OUT(cf_http_call_start(w->as_client, &o, &c->call));
    *out = c;
    c = NULL;
out:
    if (auth != NULL) {
        cf_free_secret(auth, auth_len);
    }
    as_call_free(c);
    return result;
}

/* The error of a failed AS call, for logs: transport error or status. */
static void log_as_failure(const char *step, const as_call_ctx *c, cf_http_error error)
{
    if (error != CF_HTTP_OK) {
        CF_LOG_WARN("join_failed", cf_kv_str("step", step), cf_kv_str("err", cf_http_error_name(error)));
    } else {
        /* The AS's error bodies are public (codes and details). */
        char code[64] = "";
        json_t *j = json_loadb((const char *)c->body.data, c->body.len, 0, NULL);
        const char *s = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
        snprintf(code, sizeof code, "%s", s ? s : "");
        json_decref(j);
        CF_LOG_WARN("join_failed", cf_kv_str("step", step), cf_kv_int("status", c->status), cf_kv_str("err", code));
    }
}

/* ---- the join cycle ------------------------------------------------------------------ */

static void join_failed(worker_state *w)
{
    cf_metric_inc(w->m.attest_failed);
    w->join.phase = JOIN_IDLE;
    w->join.failures++;
    schedule_join(w, backoff_ms(w, w->join.failures));
}

static void on_worker_attested(as_call_ctx *c, cf_http_error error)
{
    worker_state *w = c->w;
    w->join.call = NULL;
    cf_worker_grant grant = {0};
    if (error != CF_HTTP_OK || c->status != 200) {
        log_as_failure("worker_attest", c, error);
        join_failed(w);
        goto out;
    }
    if (cf_is_error(cf_worker_attest_response_parse(cf_buf_slice(&c->body), &grant))) {
        CF_LOG_WARN("join_failed", cf_kv_str("step", "worker_attest"), cf_kv_last_error());
        join_failed(w);
        goto out;
    }
    /* The grant's JSON fields are not signed; the token is, by the AS key
     * we verified. Check it names our attested HPKE key, and take worker
     * id, expiry and policy only as the token states them, so a substituted
     * answer (another worker's grant, a changed expiry or policy) is refused
     * here instead of surfacing later as undecryptable key events. */
    cf_worker_token signed_t;
    cf_slice pk = cf_hpke_keypair_public(&w->join.kp);
    if (!w->join.have_as_id || grant.token == NULL ||
        cf_is_error(cf_worker_token_verify(w->join.as_id.signing_key, cf_slice_cstr(grant.token), worker_now(),
                                           &signed_t)) ||
        signed_t.hpke_public_key_len != pk.len || memcmp(signed_t.hpke_public_key, pk.ptr, pk.len) != 0 ||
        memcmp(signed_t.worker_id, grant.worker_id, CF_WORKER_ID_LEN) != 0 ||
        signed_t.expires_at != grant.expires_at) {
        CF_LOG_WARN("join_failed", cf_kv_str("step", "worker_attest"), cf_kv_str("err", "unauthorized"),
                    cf_kv_str("detail", "the token is not the AS's grant for our attested key"));
        join_failed(w);
        goto out;
    }
    /* The AS enforces exactly the pinned manifest (checked when it was
     * attested), so the token's policy index is looked up in our own copy,
     * which lives as long as the process. */
    const cf_manifest *m = w->manifest;
    const cf_manifest_worker *policy = NULL;
    if (m != NULL && signed_t.policy_index < m->worker_count &&
        strcmp(m->workers[signed_t.policy_index].name, grant.policy) == 0) {
        policy = &m->workers[signed_t.policy_index];
    }
    if (policy == NULL) {
        CF_LOG_WARN("join_failed", cf_kv_str("step", "worker_attest"), cf_kv_str("err", "policy_violation"),
                    cf_kv_str("detail", "the token names no worker policy of the pinned manifest"));
        join_failed(w);
        goto out;
    }
    cf_worker_grant_free(&w->join.grant);
    w->join.grant = grant;
    memset(&grant, 0, sizeof grant);
    w->join.have_grant = true;
    w->join.policy = policy;
    w->join.phase = JOIN_DONE;
    w->join.failures = 0;
    cf_metric_inc(w->m.attest_ok);
    cf_metric_set(w->m.token_valid, 1);
    int64_t now = worker_now();
    int64_t life = w->join.grant.expires_at - now;
    /* Re-attest at 2/3 of the token's life (and at least 1 s before it
     * ends), so a slow AS never leaves us without a valid token. */
    int64_t lead = life / 3 > 1 ? life / 3 : 1;
    w->join.reattest_at = w->join.grant.expires_at - lead;
    char id_hex[2 * CF_WORKER_ID_LEN + 1];
    if (cf_is_error(cf_hex_encode_str(cf_slice_make(w->join.grant.worker_id, CF_WORKER_ID_LEN), id_hex,
                                      sizeof id_hex))) {
        id_hex[0] = '\0';
    }
    CF_LOG_INFO("worker_joined", cf_kv_str("worker", id_hex), cf_kv_str("policy", policy->name),
                cf_kv_int("token_expires_in_s", life), cf_kv_int("reattest_in_s", w->join.reattest_at - now));
    schedule_join(w, (unsigned)((w->join.reattest_at - now) * 1000));
    /* A new token: a new stream (the old one ends with the old token). */
    stream_close(w);
    w->join.stream_failures = 0;
    stream_open(w);
out:
    cf_worker_grant_free(&grant);
    as_call_free(c);
}

static void on_challenge(as_call_ctx *c, cf_http_error error)
{
    worker_state *w = c->w;
    w->join.call = NULL;
    uint8_t rd[CF_REPORT_DATA_LEN];
    int64_t expires_at = 0;
    cf_buf evidence, collateral, body;
    cf_buf_init(&evidence, CF_AS_EVIDENCE_MAX);
    cf_buf_init(&collateral, CF_AS_COLLATERAL_MAX);
    cf_buf_init(&body, CF_AS_BODY_MAX);
    if (error != CF_HTTP_OK || c->status != 200) {
        log_as_failure("challenge", c, error);
        join_failed(w);
        goto out;
    }
    cf_slice pk = cf_hpke_keypair_public(&w->join.kp);
    if (cf_is_error(cf_worker_challenge_parse(cf_buf_slice(&c->body), w->join.nonce, &expires_at)) ||
        cf_is_error(cf_worker_report_data(w->join.nonce, pk, rd)) ||
        cf_is_error(cf_attest_collect(&w->attester, rd, &evidence, &collateral)) ||
        cf_is_error(cf_worker_attest_request_build(w->platform, w->join.nonce, pk, cf_buf_slice(&evidence),
                                                   cf_buf_slice(&collateral), &body))) {
        CF_LOG_WARN("join_failed", cf_kv_str("step", "evidence"), cf_kv_last_error());
        join_failed(w);
        goto out;
    }
    w->join.phase = JOIN_ATTEST;
    if (cf_is_error(as_call_start(w, "POST", "/v1/workers/attest", cf_buf_slice(&body), false, on_worker_attested,
                                  &w->join.call))) {
        CF_LOG_WARN("join_failed", cf_kv_str("step", "worker_attest"), cf_kv_last_error());
        join_failed(w);
    }
out:
    cf_buf_free(&evidence);
    cf_buf_free(&collateral);
    cf_buf_free(&body);
    as_call_free(c);
}

static void on_as_attested(as_call_ctx *c, cf_http_error error)
{
    worker_state *w = c->w;
    w->join.call = NULL;
    cf_as_identity id = {0};
    if (error != CF_HTTP_OK || c->status != 200) {
        log_as_failure("as_attest", c, error);
        join_failed(w);
        goto out;
    }
    /* The AS must prove it runs code the pinned manifest allows and that it
     * enforces exactly that manifest; only then do we trust its signing key
     * for key events (DESIGN §3 flow 1 applies to workers too). */
    if (cf_is_error(cf_as_attest_response_verify(cf_buf_slice(&c->body), w->join.nonce, w->manifest->sha256,
                                                 worker_now(), &id))) {
        CF_LOG_ERROR("as_verification_failed", cf_kv_last_error());
        join_failed(w);
        goto out;
    }
    if (w->join.have_as_id) {
        cf_as_identity_free(&w->join.as_id);
    }
    w->join.as_id = id;
    memset(&id, 0, sizeof id);
    w->join.have_as_id = true;
    w->join.phase = JOIN_CHALLENGE;
    if (cf_is_error(as_call_start(w, "POST", "/v1/workers/challenge", cf_slice_cstr("{}"), false, on_challenge,
                                  &w->join.call))) {
        CF_LOG_WARN("join_failed", cf_kv_str("step", "challenge"), cf_kv_last_error());
        join_failed(w);
    }
out:
    cf_as_identity_free(&id);
    as_call_free(c);
}

static void join_begin(worker_state *w)
{
    cf_buf body;
    cf_buf_init(&body, 4096);
    if (w->join.call != NULL || w->shutting_down) {
        goto out; /* a cycle is already running */
    }
    w->join.phase = JOIN_AS_ATTEST;
    if (cf_is_error(cf_random(w->join.nonce, sizeof w->join.nonce)) ||
        cf_is_error(cf_as_attest_request_build(w->join.nonce, &body)) ||
        cf_is_error(as_call_start(w, "POST", "/v1/attest", cf_buf_slice(&body), false, on_as_attested,
                                  &w->join.call))) {
        CF_LOG_WARN("join_failed", cf_kv_str("step", "as_attest"), cf_kv_last_error());
        join_failed(w);
    }
out:
    cf_buf_free(&body);
}

static void on_join_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    join_begin(arg);
}

static void schedule_join(worker_state *w, unsigned delay_ms)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(w->join.timer, &tv);
}

/* ---- the key stream -------------------------------------------------------------------- */

static void stream_reconnect_later(worker_state *w)
{
    w->join.stream_failures++;
    unsigned ms = backoff_ms(w, w->join.stream_failures);
    CF_LOG_INFO("key_stream_retry", cf_kv_uint("in_ms", ms), cf_kv_uint("attempt", w->join.stream_failures));
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(w->join.stream_timer, &tv);
}

static CF_RESULT on_key_event(void *ctx, const cf_sse_event *sse)
{
    worker_state *w = ctx;
    cf_result result = CF_OK;
    cf_key_event ev;
    memset(&ev, 0, sizeof ev);
    char name[32];
    if (!sse->has_data) {
        return CF_OK; /* keep-alive comment */
    }
    CF_ENSURE_MSG(sse->has_type && sse->type.len < sizeof name, CF_E_MALFORMED, "key event without a known type");
    memcpy(name, sse->type.ptr, sse->type.len);
    name[sse->type.len] = '\0';
    /* Signature (AS key from its verified attestation), sequence number,
     * addressee, HPKE unwrap and key-id derivation are all checked here. */
    CF_GUARD_OUT(cf_key_event_open(w->join.as_id.signing_key, w->join.grant.worker_id, w->join.stream_nonce,
                                   &w->join.kp, name, sse->data, w->join.stream_seq, &ev));
    w->join.stream_seq++;
    switch (ev.type) {
    case CF_KEY_EVENT_PUT:
        if (ev.expires_at <= worker_now()) {
            /* Already over by our clock (the AS sweeps once a second, and
             * clocks differ): drop it like an expiry instead of failing the
             * stream, which would reconnect into the same snapshot again. */
            worker_keys_delete(w, ev.key_id);
            CF_LOG_INFO("key_evicted", cf_kv_str("key_id", ev.key_id), cf_kv_str("reason", "expired_on_arrival"));
            break;
        }
        CF_GUARD_OUT(worker_keys_put(w, &ev, w->join.generation));
        CF_LOG_DEBUG("key_put", cf_kv_str("key_id", ev.key_id), cf_kv_int("expires_at", ev.expires_at));
        break;
    case CF_KEY_EVENT_DELETE:
        worker_keys_delete(w, ev.key_id);
        CF_LOG_INFO("key_deleted", cf_kv_str("key_id", ev.key_id), cf_kv_str("reason", ev.reason));
        break;
    case CF_KEY_EVENT_READY:
        /* The snapshot is complete: keys it did not confirm were deleted or
         * expired while we were away. */
        worker_keys_sweep(w, worker_now(), w->join.generation);
        w->join.stream_ready = true;
        w->join.stream_failures = 0;
        cf_metric_set(w->m.key_stream_up, 1);
        CF_LOG_INFO("key_stream_ready", cf_kv_uint("keys", w->keys.count));
        break;
    case CF_KEY_EVENT_TOKEN_EXPIRING:
        CF_LOG_INFO("token_expiring", cf_kv_int("expires_at", ev.expires_at));
        /* From the loop, not from inside this curl callback. */
        if (w->join.call == NULL) {
            evtimer_del(w->join.timer);
            schedule_join(w, 0);
        }
        break;
    default:
        CF_BAIL_OUT(CF_E_MALFORMED, "unexpected key event type on the stream");
    }
out:
    cf_key_event_wipe(&ev);
    return result;
}

static cf_http_body_action on_stream_body(cf_http_call *call, cf_slice data, void *arg)
{
    (void)call;
    worker_state *w = arg;
    if (cf_is_error(cf_sse_parser_feed(&w->join.parser, data))) {
        CF_LOG_WARN("key_stream_rejected", cf_kv_last_error());
        return CF_HTTP_BODY_ABORT;
    }
    return CF_HTTP_BODY_CONTINUE;
}

/* The AS no longer accepts our token: stop using it and wipe it now (it is
 * a bearer credential) instead of keeping it until the next grant. The rest
 * of the grant (worker id, expiry) stays for the stream being torn down. */
static void token_refused(worker_state *w)
{
    w->join.have_grant = false;
    if (w->join.grant.token != NULL) {
        cf_free_secret(w->join.grant.token, strlen(w->join.grant.token));
        w->join.grant.token = NULL;
    }
    cf_metric_set(w->m.token_valid, 0);
}

static void on_stream_response(cf_http_call *call, long status, void *arg)
{
    worker_state *w = arg;
    if (status != 200) {
        CF_LOG_WARN("key_stream_refused", cf_kv_int("status", status));
        /* 401: the token is no longer accepted (AS restarted, expired). */
        if (status == 401 && w->join.call == NULL) {
            token_refused(w);
        }
        cf_http_call_cancel(call);
        w->join.stream = NULL;
        if (w->join.parser_live) {
            cf_sse_parser_free(&w->join.parser);
            w->join.parser_live = false;
        }
        cf_metric_set(w->m.key_stream_up, 0);
        if (!w->join.have_grant && w->join.call == NULL) {
            evtimer_del(w->join.timer);
            w->join.failures++;
            schedule_join(w, backoff_ms(w, w->join.failures));
        } else {
            stream_reconnect_later(w);
        }
    }
}

static void on_stream_done(cf_http_call *call, cf_http_error error, void *arg)
{
    (void)call;
    worker_state *w = arg;
    w->join.stream = NULL;
    if (w->join.stream_ready) {
        w->join.stream_lost_ms = cf_monotonic_ms();
    }
    w->join.stream_ready = false;
    if (w->join.parser_live) {
        cf_sse_parser_free(&w->join.parser);
        w->join.parser_live = false;
    }
    cf_metric_set(w->m.key_stream_up, 0);
    CF_LOG_WARN("key_stream_lost", cf_kv_str("err", cf_http_error_name(error)));
    if (w->shutting_down) {
        return;
    }
    if (!worker_token_valid(w)) {
        /* The AS ends streams when the token expires: re-join now. */
        if (w->join.call == NULL) {
            evtimer_del(w->join.timer);
            schedule_join(w, 0);
        }
        return;
    }
    stream_reconnect_later(w);
}

static void stream_open(worker_state *w)
{
    char url[1024], auth[4096], query[CF_STREAM_QUERY_MAX];
    if (w->join.stream != NULL || w->shutting_down) {
        return;
    }
    if (!worker_token_valid(w)) {
        if (w->join.call == NULL) {
            schedule_join(w, 0); /* the token ran out while we were away */
        }
        return;
    }
    /* A fresh nonce per stream, signed into every event: a recorded stream
     * cannot be replayed to us (it could resurrect deleted keys). */
    if (cf_is_error(cf_random(w->join.stream_nonce, sizeof w->join.stream_nonce)) ||
        cf_is_error(cf_key_stream_query_build(w->join.stream_nonce, query))) {
        CF_LOG_ERROR("key_stream_failed", cf_kv_last_error());
        stream_reconnect_later(w);
        return;
    }
    int n = snprintf(url, sizeof url, "%s/v1/workers/keys?%s", w->cfg.as_url, query);
    int a = snprintf(auth, sizeof auth, "Bearer %s", w->join.grant.token);
    if (n <= 0 || (size_t)n >= sizeof url || a <= 0 || (size_t)a >= sizeof auth) {
        cf_wipe(auth, sizeof auth);
        CF_LOG_ERROR("key_stream_failed", cf_kv_str("err", "url or token too long"));
        return;
    }
    cf_http_header headers[] = {{"Authorization", auth}, {"Accept", "text/event-stream"}, {NULL, NULL}};
    cf_http_call_opts o = {
        .method = "GET",
        .url = url,
        .headers = headers,
        .idle_timeout_ms = (unsigned)w->cfg.stream_idle_ms, /* the AS sends keep-alives */
        .max_response_size = SIZE_MAX / 2,                  /* long-lived; events are bounded below */
        .on_response = on_stream_response,
        .on_body = on_stream_body,
        .on_done = on_stream_done,
        .arg = w,
    };
    w->join.generation++;
    w->join.stream_seq = 0;
    w->join.stream_ready = false;
    cf_sse_parser_init(&w->join.parser, CF_AS_BODY_MAX, on_key_event, w);
    w->join.parser_live = true;
    if (cf_is_error(cf_http_call_start(w->as_client, &o, &w->join.stream))) {
        CF_LOG_WARN("key_stream_failed", cf_kv_last_error());
        w->join.stream = NULL;
        cf_sse_parser_free(&w->join.parser);
        w->join.parser_live = false;
        stream_reconnect_later(w);
    } else {
        cf_metric_inc(w->m.stream_reconnects);
        CF_LOG_INFO("key_stream_opening", cf_kv_uint("generation", w->join.generation));
    }
    cf_wipe(auth, sizeof auth);
}

static void stream_close(worker_state *w)
{
    if (w->join.stream_ready) {
        w->join.stream_lost_ms = cf_monotonic_ms();
    }
    if (w->join.stream != NULL) {
        cf_http_call_cancel(w->join.stream);
        w->join.stream = NULL;
    }
    if (w->join.parser_live) {
        cf_sse_parser_free(&w->join.parser);
        w->join.parser_live = false;
    }
    w->join.stream_ready = false;
    cf_metric_set(w->m.key_stream_up, 0);
}

static void on_stream_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    stream_open(arg);
}

/* ---- one-shot key fetch ------------------------------------------------------------------ */

static void on_key_fetched(as_call_ctx *c, cf_http_error error)
{
    worker_state *w = c->w;
    w->fetches--;
    bool found = false;
    cf_key_event ev;
    memset(&ev, 0, sizeof ev);
    if (error == CF_HTTP_OK && c->status == 200 && w->join.have_as_id && w->join.have_grant &&
        cf_is_ok(cf_key_event_open(w->join.as_id.signing_key, w->join.grant.worker_id, c->nonce, &w->join.kp, "key",
                                   cf_buf_slice(&c->body), 0, &ev)) &&
        ev.type == CF_KEY_EVENT_KEY && strcmp(ev.key_id, c->key_id) == 0 &&
        cf_is_ok(worker_keys_put(w, &ev, w->join.generation))) {
        found = true;
        cf_metric_inc(w->m.key_fetches_ok);
        CF_LOG_INFO("key_fetched", cf_kv_str("key_id", c->key_id));
    } else {
        if (error == CF_HTTP_OK && c->status == 401 && w->join.call == NULL) {
            /* Our token is no longer accepted (e.g. the AS restarted with
             * new keys): re-join now instead of waiting for the stream. */
            token_refused(w);
            evtimer_del(w->join.timer);
            schedule_join(w, 0);
        }
        cf_metric_inc(w->m.key_fetches_failed);
        cf_worker_keys_note_miss(&w->keys, c->key_id, worker_now() + w->cfg.unknown_key_ttl_s);
        CF_LOG_INFO("key_fetch_failed", cf_kv_str("key_id", c->key_id), cf_kv_int("status", c->status),
                    cf_kv_str("err", cf_http_error_name(error)));
    }
    cf_key_event_wipe(&ev);
    void (*done)(void *, bool) = c->fetch_done;
    void *arg = c->fetch_arg;
    as_call_free(c);
    done(arg, found);
}

CF_RESULT worker_fetch_key(worker_state *w, const char *key_id, void (*done)(void *arg, bool found), void *arg,
                           as_call_ctx **out)
{
    cf_result result = CF_OK;
    cf_buf body;
    cf_buf_init(&body, 1024);
    as_call_ctx *c = NULL;
    CF_ENSURE_MSG_OUT(worker_token_valid(w) && w->join.have_as_id, CF_E_UNKNOWN_KEY, "not joined to the AS");
    CF_ENSURE_MSG_OUT(!cf_worker_keys_recent_miss(&w->keys, key_id, worker_now()), CF_E_UNKNOWN_KEY,
                      "the AS recently did not have this key");
    CF_ENSURE_MSG_OUT(w->fetches < (size_t)w->cfg.max_key_fetches, CF_E_UNKNOWN_KEY, "too many key fetches in flight");
    /* A fresh nonce the answer must be signed over: a recorded answer
     * (e.g. for a key deleted since) cannot be replayed to us. */
    uint8_t nonce[CF_STREAM_NONCE_LEN];
    CF_GUARD_OUT(cf_random(nonce, sizeof nonce));
    CF_GUARD_OUT(cf_key_fetch_build(key_id, nonce, &body));
    CF_GUARD_OUT(as_call_start(w, "POST", "/v1/workers/key", cf_buf_slice(&body), true, on_key_fetched, &c));
    memcpy(c->nonce, nonce, sizeof nonce);
    snprintf(c->key_id, sizeof c->key_id, "%s", key_id);
    c->fetch_done = done;
    c->fetch_arg = arg;
    w->fetches++;
    *out = c;
out:
    cf_buf_free(&body);
    return result;
}

void worker_fetch_cancel(worker_state *w, as_call_ctx *c)
{
    if (c == NULL) {
        return;
    }
    if (c->call != NULL) {
        cf_http_call_cancel(c->call);
    }
    w->fetches--;
    as_call_free(c);
}

/* ---- start / stop ------------------------------------------------------------------------- */

CF_RESULT worker_join_start(worker_state *w)
{
    CF_GUARD(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &w->join.kp));
    w->join.timer = evtimer_new(w->base, on_join_timer, w);
    w->join.stream_timer = evtimer_new(w->base, on_stream_timer, w);
    CF_ENSURE_MSG(w->join.timer != NULL && w->join.stream_timer != NULL, CF_E_NO_MEMORY, "evtimer_new failed");
    schedule_join(w, 0);
    return CF_OK;
}

void worker_join_stop(worker_state *w)
{
    if (w->join.timer != NULL) {
        event_free(w->join.timer);
        w->join.timer = NULL;
    }
    if (w->join.stream_timer != NULL) {
        event_free(w->join.stream_timer);
        w->join.stream_timer = NULL;
    }
    if (w->join.call != NULL) {
        if (w->join.call->call != NULL) {
            cf_http_call_cancel(w->join.call->call);
        }
        as_call_free(w->join.call);
        w->join.call = NULL;
    }
    stream_close(w);
    if (w->join.have_as_id) {
        cf_as_identity_free(&w->join.as_id);
        w->join.have_as_id = false;
    }
    cf_worker_grant_free(&w->join.grant);
    w->join.have_grant = false;
    w->join.policy = NULL;
    cf_hpke_keypair_wipe(&w->join.kp);
    cf_wipe(w->join.nonce, sizeof w->join.nonce);
}
