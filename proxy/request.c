/* request.c — the OpenAI endpoints of confide-proxy (DESIGN §3 flow 4,
 * §4.6, §4.8; docs/protocol.md §Requests, §Responses, §Errors).
 *
 * Per request: check the app's body (one JSON object, no duplicate names,
 * no reserved `confide` member), add a random cache_salt (chat and
 * completions) unless the app sent one, wait for a key confirmed by the AS,
 * encrypt, forward to --upstream with the provider API key, and decrypt the
 * reply. Streams are relay.c's. A plaintext reply is accepted only with a
 * non-2xx status and passed on marked unauthenticated; unknown_key triggers
 * one re-provisioning and one retry, stale_request one retry with a fresh
 * salt. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/json.h"
#include "confide/log.h"
#include "proxy.h"

#define PX_MODELS_MAX_BODY ((size_t)1024 * 1024)

static const char *const outcome_names[] = {
#define PX_X_NAME(e, s) s,
    PX_OUTCOMES(PX_X_NAME)
#undef PX_X_NAME
};

const char *px_outcome_name(px_outcome o) { return o < PX_OUTCOME_COUNT ? outcome_names[o] : "unknown"; }

int px_endpoint_index(const cf_proto_endpoint *ep)
{
    for (int i = 0; cf_proto_endpoints[i] != NULL && i < PX_ENDPOINT_COUNT; i++) {
        if (cf_proto_endpoints[i] == ep) {
            return i;
        }
    }
    return PX_ENDPOINT_COUNT - 1;
}

void px_count_decrypt_failure(px_state *px, cf_error_code code)
{
    cf_metric *m = (code < CF_E_COUNT_) ? px->m.decrypt_failures[code] : NULL;
    cf_metric_inc(m != NULL ? m : px->m.decrypt_failures_other);
}

/* ---- lifetime ---------------------------------------------------------------------- */

void px_request_done(px_request *r, px_outcome outcome)
{
    px_state *px = r->px;
    cf_metric_inc(px->m.requests[r->ep_index][outcome]);
    cf_metric_gauge_add(px->m.requests_active, -1);
    if (r->stream_counted) {
        cf_metric_gauge_add(px->m.streams_active, -1);
    }
    if (r->stream_slot) {
        px->stream_requests--;
    }
    if (outcome != PX_OK) {
        CF_LOG_INFO("request_finished", cf_kv_id("req", r->id), cf_kv_str("endpoint", r->ep->name),
                    cf_kv_str("outcome", px_outcome_name(outcome)), cf_kv_int("status", r->status));
    }
    px_keys_cancel(px, &r->waiter);
    if (r->call != NULL) {
        cf_http_call_cancel(r->call);
        r->call = NULL;
    }
    px_key_release(px, r->key);
    cf_proto_session_free(r->session);
    cf_buf_free(&r->body);
    cf_buf_free(&r->reply);
    cf_buf_free(&r->out);
    if (r->authorization != NULL) {
        cf_free_secret(r->authorization, strlen(r->authorization));
    }
    cf_wipe(r, sizeof *r);
    free(r);
}

void px_request_fail(px_request *r, int status, const char *type, const char *code, const char *message,
                     px_outcome outcome)
{
    const cf_http_header headers[] = {{CF_PROTO_HDR_ERROR, code}, {NULL, NULL}};
    r->status = status;
    if (cf_is_error(cf_http_respond_error(r->req, status, type, code, message, headers))) {
        cf_http_stream_end(r->req);
    }
    r->req = NULL;
    px_request_done(r, outcome);
}

void px_request_abandon(cf_http_request *req, void *arg)
{
    px_request *r = arg;
    CF_LOG_DEBUG("client_gone", cf_kv_id("req", cf_http_request_id(req)));
    cf_http_stream_end(req);
    r->req = NULL;
    px_request_done(r, PX_CLIENT_GONE);
}

/* "<what>: <code>: <detail>" of the last error, for messages to the app. */
static void describe_last(char *buf, size_t len, const char *what)
{
    const cf_error_info *e = cf_error_last();
    snprintf(buf, len, "%s: %s: %s", what, cf_error_name(e->code), e->detail);
}

/* ---- the app's body ----------------------------------------------------------------- */

static bool wants_cache_salt(const cf_proto_endpoint *ep)
{
    return strcmp(ep->name, "chat.completions") == 0 || strcmp(ep->name, "completions") == 0;
}

/* Check the body, note model and stream, and copy it to r->body with a
 * cache_salt member spliced in before the closing brace when needed (the
 * rest stays byte for byte as the app sent it). */
static CF_RESULT prepare_body(px_request *r, cf_slice body)
{
    cf_result result = CF_OK;
    px_state *px = r->px;
    cf_json_object obj = {0};
    cf_buf model;
    cf_buf_init(&model, CF_MODEL_NAME_MAX);
    uint8_t salt_raw[32];
    char salt[64];
    cf_json_limits limits = {.max_size = (size_t)px->cfg.max_body};
    CF_GUARD_OUT(cf_json_object_parse(body, &limits, &obj));
    CF_ENSURE_MSG_OUT(cf_json_object_get(&obj, cf_slice_cstr("confide")) == NULL, CF_E_MALFORMED,
                      "the member name 'confide' is reserved for the protocol");
    const cf_json_member *m = cf_json_object_get(&obj, cf_slice_cstr("model"));
    if (m != NULL && m->type == CF_JSON_STRING) {
        if (cf_is_ok(cf_json_string_decode(m->value, &model)) && model.len > 0 &&
            memchr(model.data, 0, model.len) == NULL) {
            memcpy(r->model, model.data, model.len);
            r->model[model.len] = '\0';
            r->has_model = true;
        } else {
            CF_BAIL_OUT(CF_E_MALFORMED, "model: expected a model name of 1..128 bytes");
        }
    }
    const cf_json_member *st = cf_json_object_get(&obj, cf_slice_cstr("stream"));
    r->streaming_request = st != NULL && st->type == CF_JSON_TRUE;

    cf_buf_init(&r->body, (size_t)px->cfg.max_body + 128);
    bool add_salt = wants_cache_salt(r->ep) && cf_json_object_get(&obj, cf_slice_cstr("cache_salt")) == NULL;
    if (!add_salt) {
        CF_GUARD_OUT(cf_buf_append_slice(&r->body, body));
        goto out;
    }
    if (px->shared_salt[0] != '\0') {
        snprintf(salt, sizeof salt, "%s", px->shared_salt);
    } else {
        CF_GUARD_OUT(cf_random(salt_raw, sizeof salt_raw));
        CF_GUARD_OUT(cf_b64url_encode_str(cf_slice_make(salt_raw, sizeof salt_raw), salt, sizeof salt));
    }
    /* The object's closing brace is the last non-whitespace byte. */
    size_t end = body.len;
    while (end > 0 && cf_json_is_ws(body.ptr[end - 1])) {
        end--;
    }
    CF_ENSURE_MSG_OUT(end > 0 && body.ptr[end - 1] == '}', CF_E_INTERNAL, "object without closing brace");
    CF_GUARD_OUT(cf_buf_append(&r->body, body.ptr, end - 1));
    CF_GUARD_OUT(cf_buf_appendf(&r->body, "%s\"cache_salt\":\"%s\"", obj.count > 0 ? "," : "", salt));
    CF_GUARD_OUT(cf_buf_append(&r->body, body.ptr + end - 1, body.len - (end - 1)));
out:
    cf_json_object_free(&obj);
    cf_buf_free(&model);
    cf_wipe(salt_raw, sizeof salt_raw);
    cf_wipe(salt, sizeof salt);
    return result;
}

static bool model_in_scope(const px_state *px, const char *model)
{
    for (size_t i = 0; i < px->scope.count; i++) {
        if (strcmp(px->scope.models[i], model) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- upstream call ------------------------------------------------------------------ */

static void send_upstream(px_request *r);

static bool header_is(const char *v, const char *want)
{
    if (v == NULL) {
        return false;
    }
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    size_t n = strlen(want);
    if (strncasecmp(v, want, n) != 0) {
        return false;
    }
    v += n;
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    return *v == '\0' || *v == ';';
}

static void on_response(cf_http_call *call, long status, void *arg)
{
    px_request *r = arg;
    px_state *px = r->px;
    r->status = status;
    cf_metric_observe(px->m.upstream_seconds[r->ep_index], (double)(cf_monotonic_ms() - r->sent_ms) / 1000.0);
    if (r->mode == PX_MODE_PASS) {
        return;
    }
    const char *version = cf_http_call_header(call, CF_PROTO_HDR_VERSION);
    const char *plaintext = cf_http_call_header(call, CF_PROTO_HDR_PLAINTEXT);
    const char *ctype = cf_http_call_header(call, "Content-Type");
    bool encrypted = version != NULL && plaintext == NULL;
    bool ok_status = status >= 200 && status <= 299;
    if (!encrypted) {
        if (ok_status) {
            /* DESIGN §4.6: never accept an unauthenticated body with a 2xx. */
            CF_LOG_WARN("unauthenticated_2xx_refused", cf_kv_id("req", cf_http_request_id(r->req)),
                        cf_kv_int("status", status), cf_kv_str("endpoint", r->ep->name));
            px_count_decrypt_failure(px, CF_E_BAD_CIPHERTEXT);
            cf_http_call_cancel(call);
            r->call = NULL;
            px_request_fail(r, 502, "confide_error", "bad_ciphertext",
                            "confide-proxy refused the upstream reply: a 2xx reply that is not encrypted "
                            "(no Confide-Version, or Confide-Plaintext set) cannot be authenticated",
                            PX_DECRYPT_FAILED);
            return;
        }
        const char *code = cf_http_call_header(call, CF_PROTO_HDR_ERROR);
        snprintf(r->upstream_code, sizeof r->upstream_code, "%s", code ? code : "");
        r->mode = PX_MODE_PLAINTEXT;
        cf_buf_init(&r->reply, (size_t)px->cfg.max_error_body);
        return;
    }
    if (!header_is(version, "1")) {
        CF_LOG_WARN("unsupported_version", cf_kv_id("req", cf_http_request_id(r->req)), cf_kv_str("version", version));
        px_count_decrypt_failure(px, CF_E_UNSUPPORTED_VERSION);
        cf_http_call_cancel(call);
        r->call = NULL;
        px_request_fail(r, 502, "confide_error", "unsupported_version",
                        "confide-proxy refused the upstream reply: it is encrypted with a protocol version other "
                        "than 1",
                        PX_DECRYPT_FAILED);
        return;
    }
    if (header_is(ctype, "text/event-stream")) {
        r->mode = PX_MODE_STREAM;
        if (cf_is_error(px_relay_begin(r))) {
            char msg[300];
            describe_last(msg, sizeof msg, "confide-proxy cannot open the stream");
            cf_http_call_cancel(call);
            r->call = NULL;
            px_request_fail(r, 502, "confide_error", cf_error_name(cf_error_code_last()), msg, PX_DECRYPT_FAILED);
        }
        return;
    }
    r->mode = PX_MODE_ENCRYPTED;
    cf_buf_init(&r->reply, (size_t)px->cfg.max_response_body);
}

static cf_http_body_action on_body(cf_http_call *call, cf_slice data, void *arg)
{
    px_request *r = arg;
    (void)call;
    if (r->mode == PX_MODE_STREAM) {
        return px_relay_body(r, data);
    }
    return cf_is_ok(cf_buf_append_slice(&r->reply, data)) ? CF_HTTP_BODY_CONTINUE : CF_HTTP_BODY_ABORT;
}

static void respond_plain(px_request *r, int status, const char *content_type, cf_slice body,
                          const cf_http_header *headers, px_outcome outcome)
{
    if (cf_is_error(cf_http_respond(r->req, status, content_type, body, headers))) {
        cf_http_stream_end(r->req);
    }
    r->req = NULL;
    px_request_done(r, outcome);
}

/* Retry after unknown_key (fresh key) or stale_request (fresh salt). */
static void retry(px_request *r, bool new_key)
{
    px_state *px = r->px;
    cf_proto_session_free(r->session);
    r->session = NULL;
    cf_buf_free(&r->reply);
    r->mode = PX_MODE_NONE;
    r->status = 0;
    if (new_key) {
        px_key_unknown(px, r->key);
        px_key_release(px, r->key);
        r->key = NULL;
        cf_metric_inc(px->m.retries_unknown_key);
        px_keys_acquire(px, &r->waiter);
    } else {
        cf_metric_inc(px->m.retries_stale);
        send_upstream(r);
    }
}

/* Cut a UTF-8 string (valid before the cut) back to a character boundary. */
static void utf8_trim_partial(char *s)
{
    size_t n = strlen(s);
    size_t i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
    }
    if (i == 0) {
        return;
    }
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (n - (i - 1) < need) {
        s[i - 1] = '\0';
    }
}

/* A plaintext (unauthenticated) non-2xx reply. */
static void plaintext_reply(px_request *r)
{
    px_state *px = r->px;
    json_t *j = json_loadb((const char *)r->reply.data, r->reply.len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *e = json_object_get(j, "error");
    const char *code = r->upstream_code[0] ? r->upstream_code : json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code != NULL && strcmp(code, "unknown_key") == 0 && !r->retried_unknown_key) {
        r->retried_unknown_key = true;
        json_decref(j);
        retry(r, true);
        return;
    }
    if (code != NULL && strcmp(code, "stale_request") == 0 && !r->retried_stale) {
        r->retried_stale = true;
        CF_LOG_WARN("stale_request_retry", cf_kv_id("req", cf_http_request_id(r->req)),
                    cf_kv_str("hint", "check the clock of this machine"));
        json_decref(j);
        retry(r, false);
        return;
    }
    /* Only a short, printable code is passed on as a code. */
    char code_buf[48] = "upstream_error";
    if (code != NULL && strlen(code) < sizeof code_buf &&
        strspn(code, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(code) && code[0]) {
        snprintf(code_buf, sizeof code_buf, "%s", code);
    }
    char message[1200];
    if (msg != NULL) {
        snprintf(message, sizeof message, PX_UNAUTH_PREFIX "%.1024s", msg);
        utf8_trim_partial(message);
    } else {
        snprintf(message, sizeof message, PX_UNAUTH_PREFIX "HTTP %ld with a %s body of %zu bytes", r->status,
                 j != NULL ? "JSON" : "non-JSON", r->reply.len);
    }
    json_decref(j);
    CF_LOG_INFO("unauthenticated_upstream_error", cf_kv_id("req", cf_http_request_id(r->req)),
                cf_kv_int("status", r->status), cf_kv_str("code", code_buf));
    json_t *out = json_pack("{s:{s:s,s:s,s:s,s:n}}", "error", "message", message, "type", PX_UNAUTH_TYPE, "code",
                            code_buf, "param");
    static const cf_http_header headers[] = {{PX_HDR_UNAUTHENTICATED, "1"}, {NULL, NULL}};
    int status = (int)r->status;
    if (out == NULL || cf_is_error(cf_http_respond_json(r->req, status, out, headers))) {
        cf_http_stream_end(r->req);
    }
    json_decref(out);
    r->req = NULL;
    (void)px;
    px_request_done(r, PX_UNAUTH_ERROR);
}

static void encrypted_reply(px_request *r)
{
    px_state *px = r->px;
    cf_buf plain;
    cf_buf_init(&plain, (size_t)px->cfg.max_response_body);
    if (cf_is_error(cf_proto_response_open(r->session, (int)r->status, cf_buf_slice(&r->reply), &plain))) {
        cf_error_code code = cf_error_code_last();
        char msg[300];
        describe_last(msg, sizeof msg, "confide-proxy refused the upstream reply: it did not authenticate");
        CF_LOG_WARN("decrypt_failed", cf_kv_id("req", cf_http_request_id(r->req)), cf_kv_str("endpoint", r->ep->name),
                    cf_kv_int("status", r->status), cf_kv_last_error());
        px_count_decrypt_failure(px, code);
        cf_buf_free(&plain);
        px_request_fail(r, 502, "confide_error", cf_error_name(code), msg, PX_DECRYPT_FAILED);
        return;
    }
    static const cf_http_header headers[] = {{"Cache-Control", "no-store"}, {NULL, NULL}};
    respond_plain(r, (int)r->status, "application/json", cf_buf_slice(&plain), headers, PX_OK);
    cf_buf_free(&plain);
}

static void upstream_failed(px_request *r, cf_http_error err)
{
    int status = err == CF_HTTP_ERR_TIMEOUT ? 504 : 502;
    const char *code = err == CF_HTTP_ERR_TIMEOUT                                   ? "upstream_timeout"
                       : err == CF_HTTP_ERR_TOO_LARGE || err == CF_HTTP_ERR_ABORTED ? "too_large"
                                                                                    : "upstream_unreachable";
    char msg[200];
    snprintf(msg, sizeof msg, "confide-proxy: the upstream request failed: %s", cf_http_error_name(err));
    CF_LOG_WARN("upstream_failed", cf_kv_id("req", cf_http_request_id(r->req)), cf_kv_str("endpoint", r->ep->name),
                cf_kv_str("error", cf_http_error_name(err)));
    px_request_fail(r, status, "confide_error", code, msg, PX_UPSTREAM_FAILED);
}

static void on_done(cf_http_call *call, cf_http_error err, void *arg)
{
    px_request *r = arg;
    (void)call;
    r->call = NULL;
    if (r->mode == PX_MODE_STREAM) {
        px_relay_done(r, err);
        return;
    }
    if (err != CF_HTTP_OK) {
        upstream_failed(r, err);
        return;
    }
    switch (r->mode) {
    case PX_MODE_PLAINTEXT: plaintext_reply(r); break;
    case PX_MODE_ENCRYPTED: encrypted_reply(r); break;
    case PX_MODE_PASS:
        respond_plain(r, (int)r->status, "application/json", cf_buf_slice(&r->reply), NULL,
                      r->status >= 200 && r->status <= 299 ? PX_OK : PX_UNAUTH_ERROR);
        break;
    default:
        /* A response without headers we could classify (no on_response). */
        upstream_failed(r, CF_HTTP_ERR_PROTOCOL);
        break;
    }
}

static CF_RESULT upstream_url(const px_state *px, const char *path, char *url, size_t len)
{
    int n = snprintf(url, len, "%s%s", px->upstream_base, path);
    CF_ENSURE_MSG(n > 0 && (size_t)n < len, CF_E_INVALID_ARGUMENT, "upstream URL too long");
    return CF_OK;
}

static CF_RESULT start_call(px_request *r, const char *method, cf_slice body)
{
    px_state *px = r->px;
    char url[2048];
    CF_GUARD(upstream_url(px, r->ep->path, url, sizeof url));
    cf_http_header headers[6];
    size_t h = 0;
    headers[h++] = (cf_http_header){"Accept-Encoding", "identity"};
    if (r->ep->encrypted) {
        headers[h++] = (cf_http_header){"Content-Type", "application/json"};
        headers[h++] = (cf_http_header){CF_PROTO_HDR_VERSION, "1"};
    }
    if (r->authorization != NULL) {
        headers[h++] = (cf_http_header){"Authorization", r->authorization};
    }
    headers[h] = (cf_http_header){NULL, NULL};
    cf_http_call_opts o = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .total_timeout_ms = r->streaming_request ? 0 : (unsigned)px->cfg.upstream_timeout_ms,
        .idle_timeout_ms = (unsigned)px->cfg.idle_timeout_ms,
        /* Streams are bounded per event by the codec and in memory by the
         * relay's backpressure, not in total length. */
        .max_response_size = r->streaming_request ? ((size_t)1 << 40) : (size_t)px->cfg.max_response_body + 1,
        .on_response = on_response,
        .on_body = on_body,
        .on_done = on_done,
        .arg = r,
    };
    r->sent_ms = cf_monotonic_ms();
    return cf_http_call_start(px->http, &o, &r->call);
}

static void send_upstream(px_request *r)
{
    px_state *px = r->px;
    cf_buf sealed;
    cf_buf_init(&sealed, (size_t)px->cfg.max_body * 2 + 4096);
    cf_proto_seal_options so = {.pad_bucket = (uint32_t)px->cfg.pad_bucket, .max_body = sealed.max};
    if (cf_is_error(cf_proto_request_seal(r->ep, r->key->k, cf_buf_slice(&r->body), &so, &sealed, &r->session))) {
        char msg[300];
        describe_last(msg, sizeof msg, "confide-proxy cannot encrypt this request body");
        cf_buf_free(&sealed);
        px_request_fail(r, 400, "invalid_request_error", cf_error_name(cf_error_code_last()), msg, PX_BAD_REQUEST);
        return;
    }
    cf_result started = start_call(r, "POST", cf_buf_slice(&sealed));
    cf_buf_free(&sealed);
    if (cf_is_error(started)) {
        char msg[300];
        describe_last(msg, sizeof msg, "confide-proxy cannot start the upstream request");
        px_request_fail(r, 502, "confide_error", "upstream_unreachable", msg, PX_UPSTREAM_FAILED);
    }
}

/* Not ready: a 503 that says exactly why (DESIGN §3 flow 1). */
static void fail_not_ready(px_request *r)
{
    px_state *px = r->px;
    const char *code = px->attest_state == PX_ATTEST_VERIFIED ? "key_unavailable"
                       : px->attest_state == PX_ATTEST_FAILED ? "attestation_failed"
                                                              : "attestation_pending";
    char msg[512], retry_after[24];
    snprintf(msg, sizeof msg,
             "confide-proxy sends nothing until the attestation service is verified and holds a key: %s",
             px->last_error[0] ? px->last_error : "provisioning did not complete");
    /* When the next provisioning attempt is due (clients honour it). */
    int64_t wait_ms = px->next_attempt_ms - (int64_t)cf_monotonic_ms();
    snprintf(retry_after, sizeof retry_after, "%lld", (long long)(wait_ms > 1000 ? (wait_ms + 999) / 1000 : 1));
    const cf_http_header headers[] = {{CF_PROTO_HDR_ERROR, code}, {"Retry-After", retry_after}, {NULL, NULL}};
    r->status = 503;
    if (cf_is_error(cf_http_respond_error(r->req, 503, "confide_error", code, msg, headers))) {
        cf_http_stream_end(r->req);
    }
    r->req = NULL;
    px_request_done(r, PX_NOT_READY);
}

static void on_key(px_waiter *w, px_key *key)
{
    px_request *r = (px_request *)((char *)w - offsetof(px_request, waiter));
    px_state *px = r->px;
    if (key == NULL) {
        fail_not_ready(r);
        return;
    }
    r->key = key;
    if (r->has_model && px->scope.count > 0 && !model_in_scope(px, r->model)) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "confide-proxy: model '%.128s' is not in the scope of the inference key (the models the pinned "
                 "manifest lets workers serve, or --models)",
                 r->model);
        px_request_fail(r, 400, "invalid_request_error", "model_not_in_scope", msg, PX_BAD_REQUEST);
        return;
    }
    send_upstream(r);
}

/* ---- handlers -------------------------------------------------------------------------- */

static px_request *request_new(px_state *px, cf_http_request *req, const cf_proto_endpoint *ep)
{
    px_request *r = calloc(1, sizeof *r);
    if (r == NULL) {
        if (cf_is_error(cf_http_respond_error(req, 500, "server_error", "no_memory", "Out of memory.", NULL))) {
            cf_http_stream_end(req);
        }
        return NULL;
    }
    r->px = px;
    r->req = req;
    r->id = cf_http_request_id(req);
    r->ep = ep;
    r->ep_index = px_endpoint_index(ep);
    r->waiter.ready = on_key;
    cf_buf_init(&r->body, 1);
    cf_buf_init(&r->reply, 1);
    cf_buf_init(&r->out, 1);
    cf_metric_gauge_add(px->m.requests_active, 1);
    /* The app's own key wins; else the configured one. */
    const char *auth = cf_http_request_header(req, "Authorization");
    if (auth != NULL) {
        r->authorization = strdup(auth);
    } else if (px->cfg.api_key != NULL && px->cfg.api_key[0] != '\0') {
        size_t n = strlen(px->cfg.api_key) + 8;
        r->authorization = malloc(n);
        if (r->authorization != NULL) {
            snprintf(r->authorization, n, "Bearer %s", px->cfg.api_key);
        }
    }
    return r;
}

static void handle_encrypted(cf_http_request *req, void *arg)
{
    px_state *px = arg;
    const cf_proto_endpoint *ep = NULL;
    if (cf_is_error(cf_proto_endpoint_by_path(cf_slice_cstr(cf_http_request_method(req)),
                                              cf_slice_cstr(cf_http_request_path(req)), &ep))) {
        if (cf_is_error(cf_http_respond_error(req, 404, "invalid_request_error", "unknown_endpoint",
                                              "confide-proxy: unknown endpoint", NULL))) {
            cf_http_stream_end(req);
        }
        return;
    }
    px_request *r = request_new(px, req, ep);
    if (r == NULL) {
        return;
    }
    if (cf_is_error(prepare_body(r, cf_http_request_body(req)))) {
        char msg[300];
        describe_last(msg, sizeof msg, "confide-proxy: request body");
        px_request_fail(r, 400, "invalid_request_error", cf_error_name(cf_error_code_last()), msg, PX_BAD_REQUEST);
        return;
    }
    if (r->streaming_request) {
        if (px->stream_requests >= (size_t)px->cfg.max_streams) {
            px_request_fail(r, 503, "server_error", "too_many_streams",
                            "confide-proxy: too many streamed requests in flight (--max-streams); retry later",
                            PX_NOT_READY);
            return;
        }
        px->stream_requests++;
        r->stream_slot = true;
    }
    cf_http_request_on_close(req, px_request_abandon, r);
    px_keys_acquire(px, &r->waiter);
}

static void handle_models(cf_http_request *req, void *arg)
{
    px_state *px = arg;
    const cf_proto_endpoint *ep = NULL;
    if (cf_is_error(cf_proto_endpoint_by_name(cf_slice_cstr("models"), &ep))) {
        cf_http_stream_end(req);
        return;
    }
    px_request *r = request_new(px, req, ep);
    if (r == NULL) {
        return;
    }
    /* Even the model list waits for a verified AS: nothing leaves before. */
    if (cf_is_error(px_ready(px))) {
        fail_not_ready(r);
        return;
    }
    r->mode = PX_MODE_PASS;
    cf_buf_init(&r->reply, PX_MODELS_MAX_BODY);
    cf_http_request_on_close(req, px_request_abandon, r);
    if (cf_is_error(start_call(r, "GET", CF_SLICE_EMPTY))) {
        char msg[300];
        describe_last(msg, sizeof msg, "confide-proxy cannot start the upstream request");
        px_request_fail(r, 502, "confide_error", "upstream_unreachable", msg, PX_UPSTREAM_FAILED);
    }
}

static void handle_health(cf_http_request *req, void *arg)
{
    px_state *px = arg;
    static const cf_http_header no_cache[] = {{"Cache-Control", "no-store"}, {NULL, NULL}};
    cf_result sent;
    if (cf_is_ok(px_ready(px))) {
        char body[256];
        const px_key *k = px->keys;
        /* Serving; "attestation" tells whether the last re-attestation
         * (rotation) failed while the current key is still good. */
        snprintf(body, sizeof body, "{\"status\":\"ok\",\"attestation\":\"%s\",\"key_expires_in_s\":%lld}",
                 px->attest_state == PX_ATTEST_VERIFIED ? "verified" : "failed",
                 (long long)(k ? k->expires_at - px_now() : 0));
        sent = cf_http_respond(req, 200, "application/json", cf_slice_cstr(body), no_cache);
    } else {
        const char *code = px->attest_state == PX_ATTEST_VERIFIED ? "key_unavailable"
                           : px->attest_state == PX_ATTEST_FAILED ? "attestation_failed"
                                                                  : "attestation_pending";
        sent = cf_http_respond_error(req, 503, "confide_error", code, px->last_error, no_cache);
    }
    if (cf_is_error(sent)) {
        cf_http_stream_end(req);
    }
}

CF_RESULT px_routes_add(px_state *px)
{
    for (size_t i = 0; cf_proto_endpoints[i] != NULL; i++) {
        const cf_proto_endpoint *ep = cf_proto_endpoints[i];
        CF_GUARD(cf_http_server_route(px->server, ep->method, ep->path,
                                      ep->encrypted ? handle_encrypted : handle_models, px));
    }
    CF_GUARD(cf_http_server_route(px->server, "GET", "/healthz", handle_health, px));
    CF_GUARD(cf_http_server_add_metrics(px->server, px->m.registry));
    return CF_OK;
}
