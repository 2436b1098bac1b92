/* handlers.c — the HTTP endpoints of confide-as (docs/protocol.md
 * §Attestation service API). Each handler checks everything first and
 * commits in one step, so a refused request leaves no trace. */
#include <string.h>

#include "as.h"
#include "confide/encoding.h"
#include "confide/log.h"

static int status_for(cf_error_code code)
{
    switch (code) {
    case CF_E_MALFORMED:
    case CF_E_TOO_LARGE:
    case CF_E_TOO_DEEP:
    case CF_E_UNSUPPORTED:
    case CF_E_INVALID_ARGUMENT:
    case CF_E_DUPLICATE_KEY: return 400;
    case CF_E_UNAUTHORIZED: return 401;
    case CF_E_AUTH_FAILED:
    case CF_E_BAD_SIGNATURE:
    case CF_E_CERT:
    case CF_E_EXPIRED:
    case CF_E_REVOKED:
    case CF_E_POLICY:
    case CF_E_REPORT_DATA:
    case CF_E_TCB:
    case CF_E_REPLAY:
    case CF_E_STALE: return 403;
    case CF_E_UNKNOWN_KEY:
    case CF_E_NOT_FOUND: return 404;
    case CF_E_LIMIT: return 429;
    default: return 500;
    }
}

/* Answer with the last recorded error (public details only: the error
 * details of this code base never hold secrets). */
static void fail(cf_http_request *req, int status)
{
    const cf_error_info *e = cf_error_last();
    if (status == 0) {
        status = status_for(e->code);
    }
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    /* Server-side failures name internal paths and state: log them, answer
     * generically. Client errors say exactly what was wrong with the input. */
    const char *code = status >= 500 ? "internal_error" : cf_error_name(e->code);
    const char *detail = status >= 500 ? "internal error (details in the AS log)" : e->detail;
    if (status >= 500) {
        CF_LOG_ERROR("request_failed", cf_kv_id("req", cf_http_request_id(req)), cf_kv_last_error());
    }
    if (cf_is_error(cf_http_respond_error(req, status, type, code, detail, NULL))) {
        CF_LOG_WARN("respond_failed", cf_kv_id("req", cf_http_request_id(req)));
    }
}

static void fail_with(cf_http_request *req, cf_error_code code, const char *detail)
{
    cf_error_set(code, detail, __FILE__, __LINE__);
    fail(req, 0);
}

static void respond_buf(cf_http_request *req, const cf_buf *body)
{
    static const cf_http_header headers[] = {{"Cache-Control", "no-store"}, {NULL, NULL}};
    if (cf_is_error(cf_http_respond(req, 200, "application/json", cf_buf_slice(body), headers))) {
        CF_LOG_WARN("respond_failed", cf_kv_id("req", cf_http_request_id(req)), cf_kv_last_error());
    }
}

static bool allowed(as_state *as, cf_rate_limiter *rl, cf_http_request *req)
{
    if (cf_rate_limiter_allow(rl, cf_http_request_peer(req), cf_monotonic_ms())) {
        return true;
    }
    cf_metric_inc(as->m.rate_limited);
    CF_LOG_WARN("rate_limited", cf_kv_str("peer", cf_http_request_peer(req)),
                cf_kv_str("path", cf_http_request_path(req)));
    fail_with(req, CF_E_LIMIT, "too many requests from this peer: slow down");
    return false;
}

/* "Authorization: Bearer <token>" verified against our signing key. */
static CF_RESULT bearer_token(as_state *as, cf_http_request *req, cf_worker_token *out)
{
    const char *h = cf_http_request_header(req, "Authorization");
    CF_ENSURE_MSG(h != NULL && strncmp(h, "Bearer ", 7) == 0, CF_E_UNAUTHORIZED,
                  "missing Authorization: Bearer <worker token>");
    CF_GUARD(cf_worker_token_verify(as->sign_key, cf_slice_cstr(h + 7), as_now(), out));
    CF_ENSURE_MSG(out->policy_index < as->manifest->worker_count, CF_E_UNAUTHORIZED,
                  "worker token names no policy of this manifest");
    return CF_OK;
}

/* ---- POST /v1/attest --------------------------------------------------------------- */

static void handle_attest(cf_http_request *req, void *arg)
{
    as_state *as = arg;
    if (!allowed(as, as->rl_attest, req)) {
        return;
    }
    uint8_t nonce[CF_AS_NONCE_LEN], rd[CF_REPORT_DATA_LEN];
    cf_buf evidence, collateral, body;
    cf_buf_init(&evidence, CF_AS_EVIDENCE_MAX);
    cf_buf_init(&collateral, CF_AS_COLLATERAL_MAX);
    cf_buf_init(&body, CF_AS_BODY_MAX);
    if (cf_is_error(cf_as_attest_request_parse(cf_http_request_body(req), nonce))) {
        fail(req, 400);
        goto out;
    }
    if (cf_is_error(cf_as_report_data(nonce, cf_hpke_keypair_public(&as->hpke),
                                      cf_slice_make(as->sign_pub, sizeof as->sign_pub), as->manifest->sha256, rd)) ||
        cf_is_error(cf_attest_collect(&as->attester, rd, &evidence, &collateral)) ||
        cf_is_error(cf_as_attest_response_build(as->platform, cf_buf_slice(&evidence), cf_buf_slice(&collateral),
                                                cf_hpke_keypair_public(&as->hpke),
                                                cf_slice_make(as->sign_pub, sizeof as->sign_pub),
                                                cf_buf_slice(&as->manifest->bytes), &body))) {
        CF_LOG_ERROR("self_attestation_failed", cf_kv_last_error());
        fail(req, 500);
        goto out;
    }
    cf_metric_inc(as->m.self_attestations);
    respond_buf(req, &body);
out:
    cf_buf_free(&evidence);
    cf_buf_free(&collateral);
    cf_buf_free(&body);
}

/* ---- POST /v1/keys --------------------------------------------------------------------- */

static CF_RESULT check_upload_policy(const as_state *as, const cf_key_upload *u)
{
    if ((int64_t)u->ttl_s < as->manifest->ttl_min_s || (int64_t)u->ttl_s > as->manifest->ttl_max_s) {
        CF_BAIL_FMT(CF_E_POLICY, "ttl_s %u outside the manifest's keys bounds %lld..%lld", u->ttl_s,
                    (long long)as->manifest->ttl_min_s, (long long)as->manifest->ttl_max_s);
    }
    for (size_t i = 0; i < u->scope.count; i++) {
        if (!cf_manifest_serves(as->manifest, cf_slice_cstr(u->scope.models[i]))) {
            CF_BAIL_FMT(CF_E_POLICY, "scope: model '%.64s' is served by no worker policy of the manifest",
                        u->scope.models[i]);
        }
    }
    return CF_OK;
}

static void handle_upload(cf_http_request *req, void *arg)
{
    as_state *as = arg;
    if (!allowed(as, as->rl_upload, req)) {
        cf_metric_inc(as->m.uploads_rejected);
        return;
    }
    cf_key_upload up;
    uint8_t digest[32];
    cf_buf body;
    cf_buf_init(&body, 64 * 1024);
    int64_t now = as_now();
    bool ok = false;
    if (cf_is_error(cf_key_upload_open(&as->hpke, as->manifest->sha256, cf_http_request_body(req), &up, digest))) {
        goto out;
    }
    if (cf_is_error(check_upload_policy(as, &up))) {
        goto out;
    }
    int64_t expires_at = now + (int64_t)up.ttl_s;
    cf_key_receipt receipt = {.expires_at = expires_at, .scope = up.scope};
    memcpy(receipt.key_id, up.key_id, sizeof receipt.key_id);
    /* Receipt first (it can fail), then the commit. */
    if (cf_is_error(cf_key_receipt_build(as->sign_key, as->manifest->sha256, digest, &receipt, &body)) ||
        cf_is_error(as_key_put(as, &up, expires_at))) {
        goto out;
    }
    ok = true;
    cf_metric_inc(as->m.uploads_ok);
    CF_LOG_INFO("key_uploaded", cf_kv_str("key_id", up.key_id), cf_kv_int("ttl_s", up.ttl_s),
                cf_kv_uint("scope_models", up.scope.count), cf_kv_str("peer", cf_http_request_peer(req)));
    respond_buf(req, &body);
out:
    if (!ok) {
        cf_metric_inc(as->m.uploads_rejected);
        CF_LOG_WARN("key_upload_rejected", cf_kv_str("peer", cf_http_request_peer(req)), cf_kv_last_error());
        fail(req, 0);
    }
    cf_key_upload_wipe(&up);
    cf_buf_free(&body);
}

/* ---- POST /v1/keys/delete ---------------------------------------------------------------- */

static void handle_delete(cf_http_request *req, void *arg)
{
    as_state *as = arg;
    if (!allowed(as, as->rl_upload, req)) {
        return;
    }
    cf_key_delete_request dr;
    uint8_t expect[32];
    if (cf_is_error(cf_key_delete_parse(cf_http_request_body(req), &dr))) {
        fail(req, 400);
        return;
    }
    as_key *k = as_key_find(as, dr.key_id);
    if (k == NULL) {
        fail_with(req, CF_E_UNKNOWN_KEY, "no such key (deleted, expired or never uploaded)");
        return;
    }
    bool proven = cf_is_ok(cf_key_delete_proof(k->k, k->key_id, k->expires_at, expect)) &&
                  dr.expires_at == k->expires_at && cf_ct_equal(expect, dr.proof, sizeof expect);
    cf_wipe(expect, sizeof expect);
    if (!proven) {
        CF_LOG_WARN("key_delete_refused", cf_kv_str("key_id", dr.key_id), cf_kv_str("peer", cf_http_request_peer(req)));
        fail_with(req, CF_E_AUTH_FAILED, "proof of possession does not match this key and its expiry");
        return;
    }
    json_t *o = json_pack("{s:s}", "deleted", k->key_id);
    as_key_remove(as, k, "deleted");
    cf_metric_inc(as->m.deletes);
    if (o == NULL || cf_is_error(cf_http_respond_json(req, 200, o, NULL))) {
        CF_LOG_WARN("respond_failed", cf_kv_id("req", cf_http_request_id(req)));
    }
    json_decref(o);
}

/* ---- POST /v1/workers/challenge ------------------------------------------------------------ */

static void handle_challenge(cf_http_request *req, void *arg)
{
    as_state *as = arg;
    if (!allowed(as, as->rl_attest, req)) {
        return;
    }
    uint8_t nonce[CF_AS_NONCE_LEN];
    int64_t expires_at;
    cf_buf body;
    cf_buf_init(&body, 4096);
    if (cf_is_error(as_nonce_issue(as, as_now(), nonce, &expires_at)) ||
        cf_is_error(cf_worker_challenge_build(nonce, expires_at, &body))) {
        fail(req, 0);
    } else {
        respond_buf(req, &body);
    }
    cf_buf_free(&body);
}

/* ---- POST /v1/workers/attest ---------------------------------------------------------------- */

static void reject_worker(as_state *as, cf_http_request *req)
{
    cf_error_code code = cf_error_code_last();
    cf_metric *m = as->m.worker_rejected[code] ? as->m.worker_rejected[code] : as->m.worker_rejected[CF_E_INTERNAL];
    cf_metric_inc(m);
    CF_LOG_WARN("worker_rejected", cf_kv_str("peer", cf_http_request_peer(req)), cf_kv_last_error());
    fail(req, 0);
}

static void handle_worker_attest(cf_http_request *req, void *arg)
{
    as_state *as = arg;
    if (!allowed(as, as->rl_attest, req)) {
        cf_metric_inc(as->m.worker_rejected[CF_E_LIMIT]);
        return;
    }
    cf_worker_attest_request ar;
    uint8_t rd[CF_REPORT_DATA_LEN];
    cf_claims claims = {0};
    size_t idx = 0;
    cf_buf token, body;
    cf_buf_init(&token, 4096);
    cf_buf_init(&body, 64 * 1024);
    int64_t now = as_now();
    if (cf_is_error(cf_worker_attest_request_parse(cf_http_request_body(req), &ar))) {
        reject_worker(as, req);
        goto out;
    }
    if (cf_is_error(as_nonce_consume(as, now, ar.nonce)) ||
        cf_is_error(cf_worker_report_data(ar.nonce, cf_slice_make(ar.hpke_public_key, ar.hpke_public_key_len), rd)) ||
        cf_is_error(cf_manifest_verify_worker(as->manifest, ar.platform, cf_buf_slice(&ar.evidence),
                                              cf_buf_slice(&ar.collateral), rd, now, &idx, &claims))) {
        reject_worker(as, req);
        goto out;
    }
    cf_worker_token t = {.issued_at = now, .expires_at = now + as->cfg.token_ttl_s, .policy_index = (uint8_t)idx,
                         .hpke_public_key_len = ar.hpke_public_key_len};
    memcpy(t.hpke_public_key, ar.hpke_public_key, ar.hpke_public_key_len);
    if (cf_is_error(cf_random(t.worker_id, sizeof t.worker_id)) ||
        cf_is_error(cf_worker_token_issue(as->sign_key, &t, &token)) ||
        cf_is_error(cf_worker_attest_response_build(cf_buf_slice(&token), &t, as->manifest->workers[idx].name,
                                                    as->manifest->workers[idx].models, &body))) {
        fail(req, 500);
        goto out;
    }
    char id_hex[2 * CF_WORKER_ID_LEN + 1];
    if (cf_is_error(cf_hex_encode_str(cf_slice_make(t.worker_id, CF_WORKER_ID_LEN), id_hex, sizeof id_hex))) {
        id_hex[0] = '\0';
    }
    cf_metric_inc(as->m.worker_accepted);
    CF_LOG_INFO("worker_attested", cf_kv_str("worker", id_hex), cf_kv_str("policy", as->manifest->workers[idx].name),
                cf_kv_str("tcb", claims.tcb), cf_kv_str("peer", cf_http_request_peer(req)));
    respond_buf(req, &body);
out:
    cf_claims_free(&claims);
    cf_worker_attest_request_free(&ar);
    cf_buf_free(&token); /* a bearer credential: wiped */
    cf_buf_free(&body);
}

/* ---- GET /v1/workers/keys ----------------------------------------------------------------------- */

static void handle_key_stream(cf_http_request *req, void *arg)
{
    as_state *as = arg;
    cf_worker_token t;
    uint8_t stream_nonce[CF_STREAM_NONCE_LEN];
    if (cf_is_error(bearer_token(as, req, &t))) {
        fail(req, 401);
        return;
    }
    if (cf_is_error(cf_key_stream_query_parse(cf_http_request_query(req), stream_nonce))) {
        fail(req, 400);
        return;
    }
    if (as->shutting_down) {
        fail_with(req, CF_E_LIMIT, "shutting down");
        return;
    }
    if (cf_is_error(as_worker_attach(as, req, &t, stream_nonce))) {
        fail(req, 0);
    }
}

/* ---- POST /v1/workers/key ------------------------------------------------------------------------ */

static void handle_key_fetch(cf_http_request *req, void *arg)
{
    as_state *as = arg;
    cf_worker_token t;
    char key_id[CF_KEY_ID_LEN + 1];
    uint8_t nonce[CF_STREAM_NONCE_LEN];
    if (cf_is_error(bearer_token(as, req, &t))) {
        fail(req, 401);
        return;
    }
    if (cf_is_error(cf_key_fetch_parse(cf_http_request_body(req), key_id, nonce))) {
        fail(req, 400);
        return;
    }
    as_key *k = as_key_find(as, key_id);
    /* Expiry is swept once a second: never hand out a key already over. */
    if (k == NULL || k->expires_at <= as_now()) {
        fail_with(req, CF_E_UNKNOWN_KEY, "no such key (deleted, expired or never uploaded)");
        return;
    }
    if (!as_worker_may_have(as, &t, &k->scope)) {
        fail_with(req, CF_E_UNAUTHORIZED, "the key's scope names no model this worker's policy serves");
        return;
    }
    cf_key_event ev = {.type = CF_KEY_EVENT_KEY, .seq = 0, .expires_at = k->expires_at, .scope = k->scope};
    memcpy(ev.key_id, k->key_id, sizeof ev.key_id);
    cf_buf body;
    cf_buf_init(&body, 64 * 1024);
    if (cf_is_error(cf_key_event_build(as->sign_key, &t, nonce, &ev, k->k, &body))) {
        fail(req, 500);
    } else {
        cf_metric_inc(as->m.fetches);
        respond_buf(req, &body);
    }
    cf_buf_free(&body);
}

/* ---- routes -------------------------------------------------------------------------------------- */

static cf_result health(void *arg)
{
    as_state *as = arg;
    CF_ENSURE_MSG(!as->shutting_down, CF_E_UNSUPPORTED, "shutting down");
    return CF_OK;
}

CF_RESULT as_routes_add(as_state *as)
{
    CF_GUARD(cf_http_server_route(as->server, "POST", "/v1/attest", handle_attest, as));
    CF_GUARD(cf_http_server_route(as->server, "POST", "/v1/keys", handle_upload, as));
    CF_GUARD(cf_http_server_route(as->server, "POST", "/v1/keys/delete", handle_delete, as));
    CF_GUARD(cf_http_server_route(as->server, "POST", "/v1/workers/challenge", handle_challenge, as));
    CF_GUARD(cf_http_server_route(as->server, "POST", "/v1/workers/attest", handle_worker_attest, as));
    CF_GUARD(cf_http_server_route(as->server, "GET", "/v1/workers/keys", handle_key_stream, as));
    CF_GUARD(cf_http_server_route(as->server, "POST", "/v1/workers/key", handle_key_fetch, as));
    CF_GUARD(cf_http_server_add_health(as->server, health, as));
    CF_GUARD(cf_http_server_add_metrics(as->server, as->m.registry));
    return CF_OK;
}
