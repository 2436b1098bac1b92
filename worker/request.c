/* request.c — the API endpoints of confide-worker (DESIGN §3 flow 4, §4.6;
 * docs/protocol.md §Requests, §Responses, §Errors).
 *
 *   POST /v1/chat/completions, /v1/completions, /v1/embeddings
 *       decrypt (freshness, replay, key, every tag) -> model check ->
 *       forward the plaintext to the inference server over its UNIX socket ->
 *       encrypt the reply (non-streamed here, SSE in relay.c)
 *   GET /v1/models
 *       passed through unencrypted (protocol: not encrypted)
 *   any other path: 404 from the server's route table, never forwarded.
 *
 * Errors: before decryption succeeded, plaintext OpenAI-shaped errors with
 * Confide-Plaintext: 1 and Confide-Error: <code> (the worker may not hold
 * the key). After decryption, every error — the backend's (any status) and
 * the worker's own (timeout, unreachable backend, bad output, limits) — is a
 * response and is encrypted. Messages are fixed public text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "confide/json.h"
#include "confide/log.h"
#include "worker_request.h"

static const char *const ep_names[EP_COUNT] = {"chat.completions", "completions", "embeddings", "models"};
static const char *const outcome_names[OUT_COUNT] = {"ok", "rejected", "backend_error", "failed", "cancelled"};

/* On every answer that is not encrypted. */
static const cf_http_header versions_header[] = {{CF_PROTO_HDR_VERSIONS, "1"}, {NULL, NULL}};
const cf_http_header worker_reply_headers[] = {
    {CF_PROTO_HDR_VERSION, "1"}, {CF_PROTO_HDR_VERSIONS, "1"}, {"Cache-Control", "no-store"}, {NULL, NULL}};

/* ---- lifetime -------------------------------------------------------------------------- */

static worker_request *request_new(worker_state *w, cf_http_request *req, int ep_index)
{
    worker_request *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    r->w = w;
    r->req = req;
    r->id = cf_http_request_id(req);
    r->ep_index = ep_index;
    r->t_start = cf_monotonic_ms();
    cf_buf_init(&r->plain, (size_t)w->cfg.max_body);
    cf_buf_init(&r->reply, (size_t)w->cfg.max_response);
    /* One event (bounded by --max-event-size) grows by base64 (4/3) plus
     * framing when encrypted; the rest is slack for several small events. */
    cf_buf_init(&r->out, (size_t)w->cfg.max_event * 2 + 65536);
    r->next = w->requests;
    if (w->requests != NULL) {
        w->requests->prev = r;
    }
    w->requests = r;
    return r;
}

/* Cancel upstream work, unlink, wipe and free (the HTTP request is not
 * touched: finished by the caller, or inert after a forced exit). */
static void request_release(worker_request *r)
{
    worker_state *w = r->w;
    if (r->call != NULL) {
        cf_http_call_cancel(r->call);
    }
    if (r->fetch != NULL) {
        worker_fetch_cancel(w, r->fetch);
    }
    if (r->parser_live) {
        cf_sse_parser_free(&r->parser);
    }
    cf_proto_session_free(r->session);
    cf_buf_free(&r->plain);
    cf_buf_free(&r->reply);
    cf_buf_free(&r->out);
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        w->requests = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    cf_wipe(r, sizeof *r);
    free(r);
}

/* Account, log and free; the HTTP request must already be finished. */
void worker_request_finish(worker_request *r, int outcome)
{
    worker_state *w = r->w;
    cf_metric_inc(w->m.requests[r->ep_index][outcome]);
    if (r->stream_counted) {
        w->streams--;
        cf_metric_set(w->m.streams_active, (double)w->streams);
    }
    CF_LOG_INFO("request", cf_kv_id("req", r->id), cf_kv_str("endpoint", ep_names[r->ep_index]),
                cf_kv_str("key_id", r->session ? cf_proto_session_key_id(r->session) : r->key_id),
                cf_kv_int("status", r->reply_status), cf_kv_str("outcome", outcome_names[outcome]),
                cf_kv_str("code", r->code ? r->code : ""), cf_kv_str("stream", r->streaming ? "yes" : "no"),
                cf_kv_uint("events", r->events), cf_kv_uint("bytes_out", r->bytes_out),
                cf_kv_uint("ms", cf_monotonic_ms() - r->t_start));
    request_release(r);
}

/* The client went away (or shutdown forced the request): stop the upstream
 * work, finish the handle (writes are dropped), free. */
void worker_on_client_close(cf_http_request *req, void *arg)
{
    worker_request *r = arg;
    if (r->call != NULL) {
        cf_http_call_cancel(r->call);
        r->call = NULL;
    }
    if (r->streaming) {
        cf_http_stream_end(req);
    } else if (cf_is_error(cf_http_respond_error(req, 503, "server_error", "cancelled", "request cancelled", NULL))) {
        /* the handle is freed either way */
    }
    worker_request_finish(r, OUT_CANCELLED);
}

/* ---- answering ------------------------------------------------------------------------- */

static const char *plain_message(cf_error_code code)
{
    switch (code) {
    case CF_E_UNKNOWN_KEY: return "unknown key id: upload the key to the attestation service again";
    case CF_E_STALE: return "request salt outside the worker's freshness window: check the clock";
    case CF_E_REPLAY: return "this request was already accepted (replay)";
    case CF_E_TOO_LARGE: return "request body too large";
    case CF_E_REPLAY_FULL: return "replay memory full: retry later";
    case CF_E_AUTH_FAILED: return "an encrypted value does not authenticate";
    case CF_E_BAD_CIPHERTEXT: return "an encrypted value is ill-formed";
    case CF_E_PLAINTEXT_FIELD: return "a field that must be encrypted is not";
    case CF_E_UNSUPPORTED_VERSION: return "protocol version not supported (see Confide-Versions)";
    case CF_E_DUPLICATE_KEY: return "duplicate top-level key";
    case CF_E_TRUNCATED: return "request without its final value";
    case CF_E_UNKNOWN_ENDPOINT: return "unknown endpoint";
    default: return "request rejected before decryption";
    }
}

/* Plaintext error before decryption (docs/protocol.md §Errors). */
static void reject_plain(worker_request *r, cf_error_code code)
{
    worker_state *w = r->w;
    cf_metric *m = w->m.decrypt_failures[code] ? w->m.decrypt_failures[code] : w->m.decrypt_failures[CF_E_INTERNAL];
    cf_metric_inc(m);
    cf_buf body;
    cf_buf_init(&body, 4096);
    r->code = cf_error_name(code);
    r->reply_status = cf_proto_error_status(code);
    const cf_http_header headers[] = {{CF_PROTO_HDR_PLAINTEXT, "1"},
                                      {CF_PROTO_HDR_ERROR, cf_error_name(code)},
                                      versions_header[0],
                                      {"Cache-Control", "no-store"},
                                      {NULL, NULL}};
    if (cf_is_error(cf_proto_error_body(code, plain_message(code), &body))) {
        /* Out of memory for a small body: still answer (and free) the
         * request, with the same status and headers. */
        cf_buf_reset(&body);
    }
    if (cf_is_error(cf_http_respond(r->req, r->reply_status, "application/json", cf_buf_slice(&body), headers))) {
        CF_LOG_WARN("respond_failed", cf_kv_id("req", r->id), cf_kv_last_error());
    }
    r->bytes_out += body.len;
    cf_metric_add(w->m.bytes_out, (double)body.len);
    cf_buf_free(&body);
    worker_request_finish(r, OUT_REJECTED);
}

/* Send an encrypted non-streamed body `plain` (a JSON object) with status.
 * Fails only if sealing fails (e.g. `plain` is not a JSON object), in which
 * case the request is still unanswered; once sealed, the request is
 * answered (a client that is gone just drops the bytes). */
static CF_RESULT respond_sealed(worker_request *r, int status, cf_slice plain)
{
    cf_buf sealed;
    /* Ciphertext is base64url (4/3) plus the value framing. */
    cf_buf_init(&sealed, plain.len * 2 + 65536);
    if (cf_is_error(cf_proto_response_seal(r->session, status, plain, &sealed))) {
        cf_buf_free(&sealed);
        return CF_ERROR;
    }
    r->reply_status = status;
    r->bytes_out += sealed.len;
    cf_metric_add(r->w->m.bytes_out, (double)sealed.len);
    if (cf_is_error(cf_http_respond(r->req, status, "application/json", cf_buf_slice(&sealed), worker_reply_headers))) {
        CF_LOG_WARN("respond_failed", cf_kv_id("req", r->id), cf_kv_last_error());
    }
    cf_buf_free(&sealed);
    return CF_OK;
}

/* An error the worker produces after decryption: encrypted. `type`, `code`
 * and `message` are fixed public text. */
void worker_respond_error_sealed(worker_request *r, int status, const char *type, const char *code,
                                 const char *message, int outcome)
{
    cf_buf body;
    cf_buf_init(&body, 4096);
    r->code = code;
    if (cf_is_error(cf_http_error_json(type, code, message, &body)) ||
        cf_is_error(respond_sealed(r, status, cf_buf_slice(&body)))) {
        /* Sealing a fixed small object cannot fail short of memory; never
         * fall back to plaintext after decryption. */
        CF_LOG_ERROR("seal_error_failed", cf_kv_id("req", r->id), cf_kv_last_error());
        if (cf_is_error(cf_http_respond(r->req, 500, "application/json", CF_SLICE_EMPTY, versions_header))) {
            /* freed either way */
        }
        r->reply_status = 500;
    }
    cf_buf_free(&body);
    worker_request_finish(r, outcome);
}

/* ---- the backend call -------------------------------------------------------------------- */

static void on_backend_response(cf_http_call *call, long status, void *arg)
{
    worker_request *r = arg;
    worker_state *w = r->w;
    if (!r->ttfb_seen) {
        r->ttfb_seen = true;
        cf_metric_observe(w->m.backend_ttfb, (double)(cf_monotonic_ms() - r->t_forward) / 1000.0);
    }
    r->backend_status = status;
    const char *ct = cf_http_call_header(call, "Content-Type");
    if (status >= 100 && status <= 599 && ct != NULL && strncasecmp(ct, "text/event-stream", 17) == 0) {
        if (cf_is_error(worker_relay_start(r, status))) {
            CF_LOG_WARN("stream_start_failed", cf_kv_id("req", r->id), cf_kv_last_error());
            r->relay_failed = true; /* answered in on_done */
        }
    }
}

static cf_http_body_action on_backend_body(cf_http_call *call, cf_slice data, void *arg)
{
    (void)call;
    worker_request *r = arg;
    if (r->relay_failed) {
        return CF_HTTP_BODY_ABORT;
    }
    if (r->streaming) {
        return worker_relay_body(r, data);
    }
    if (cf_is_error(cf_buf_append_slice(&r->reply, data))) {
        r->reply_too_large = true;
        return CF_HTTP_BODY_ABORT;
    }
    return CF_HTTP_BODY_CONTINUE;
}

static void on_backend_done(cf_http_call *call, cf_http_error error, void *arg)
{
    (void)call;
    worker_request *r = arg;
    r->call = NULL;
    if (r->streaming) {
        worker_relay_done(r, error);
        return;
    }
    if (r->relay_failed || r->reply_too_large || error == CF_HTTP_ERR_TOO_LARGE) {
        worker_respond_error_sealed(r, 502, "upstream_error", "upstream_too_large",
                                    "the inference server's reply exceeds the worker's limit", OUT_FAILED);
        return;
    }
    if (error == CF_HTTP_ERR_TIMEOUT) {
        worker_respond_error_sealed(r, 504, "upstream_error", "upstream_timeout",
                                    "the inference server did not answer in time", OUT_FAILED);
        return;
    }
    if (error != CF_HTTP_OK) {
        worker_respond_error_sealed(r, 502, "upstream_error", "upstream_error",
                                    error == CF_HTTP_ERR_CONNECT ? "the inference server is unreachable"
                                                                 : "the inference server's reply broke off",
                                    OUT_FAILED);
        return;
    }
    int status = (int)r->backend_status;
    if (status < 100 || status > 599) {
        worker_respond_error_sealed(r, 502, "upstream_error", "upstream_error",
                                    "the inference server sent an invalid status", OUT_FAILED);
        return;
    }
    /* Any status, any JSON object body: encrypted like any response. */
    if (cf_is_error(respond_sealed(r, status, cf_buf_slice(&r->reply)))) {
        bool too_large = cf_error_code_last() == CF_E_TOO_LARGE || cf_error_code_last() == CF_E_LIMIT;
        CF_LOG_WARN("backend_reply_rejected", cf_kv_id("req", r->id), cf_kv_str("err", cf_error_name(cf_error_code_last())));
        cf_buf_reset(&r->reply);
        /* Not a JSON object (or duplicate keys): docs/protocol.md §Responses. */
        worker_respond_error_sealed(r, 502, "upstream_error", too_large ? "upstream_too_large" : "upstream_error",
                                    too_large ? "the inference server's reply exceeds the worker's limit"
                                              : "the inference server sent a reply that is not a JSON object",
                                    OUT_FAILED);
        return;
    }
    worker_request_finish(r, status >= 200 && status < 300 ? OUT_OK : OUT_BACKEND);
}

static bool scope_has(const cf_key_scope *scope, cf_slice model)
{
    for (size_t i = 0; i < scope->count; i++) {
        if (cf_slice_eq_cstr(model, scope->models[i])) {
            return true;
        }
    }
    return false;
}

/* After decryption: check the model, then forward the plaintext. */
static void forward(worker_request *r)
{
    worker_state *w = r->w;
    const cf_proto_endpoint *ep = cf_proto_session_endpoint(r->session);
    cf_slice raw = CF_SLICE_EMPTY;
    cf_json_type type = CF_JSON_NULL;
    cf_buf model;
    cf_buf_init(&model, CF_MODEL_NAME_MAX + 1);
    /* The model is a plain field, authenticated by every tag we just
     * verified: the gateway could not have changed it. */
    if (cf_is_error(cf_json_lookup(cf_buf_slice(&r->plain), NULL, cf_slice_cstr("model"), &raw, &type)) ||
        type != CF_JSON_STRING) {
        worker_respond_error_sealed(r, 400, "invalid_request_error", "model_required",
                                    "the request must name a model (a string)", OUT_FAILED);
        goto out;
    }
    /* A name longer than any manifest model name cannot be served. */
    if (cf_is_error(cf_json_string_decode(raw, &model)) || !worker_serves(w, cf_buf_slice(&model))) {
        worker_respond_error_sealed(r, 404, "invalid_request_error", "model_not_found",
                                    "this worker's manifest policy does not serve the requested model", OUT_FAILED);
        goto out;
    }
    /* The key was found a moment ago by the codec; should it have expired
     * (or been evicted) since, its scope can no longer be checked: refuse
     * rather than forward unchecked (fail closed). */
    const worker_key *key = cf_worker_keys_find(&w->keys, cf_proto_session_key_id(r->session), worker_now());
    if (key == NULL || !scope_has(&key->scope, cf_buf_slice(&model))) {
        worker_respond_error_sealed(r, 403, "invalid_request_error", "model_not_in_scope",
                                    "the key's scope does not include the requested model", OUT_FAILED);
        goto out;
    }
    bool stream = cf_is_ok(cf_json_lookup(cf_buf_slice(&r->plain), NULL, cf_slice_cstr("stream"), &raw, &type)) &&
                  type == CF_JSON_TRUE;
    if (stream && w->streams >= (size_t)w->cfg.max_streams) {
        worker_respond_error_sealed(r, 503, "server_error", "too_many_streams",
                                    "the worker is at its limit of concurrent streams; retry later", OUT_FAILED);
        goto out;
    }
    char url[256];
    snprintf(url, sizeof url, "http://localhost%s", ep->path);
    const cf_http_header headers[] = {{"Content-Type", "application/json"},
                                      {"Accept", stream ? "text/event-stream" : "application/json"},
                                      {NULL, NULL}};
    cf_http_call_opts o = {
        .method = "POST",
        .url = url,
        .unix_socket = w->cfg.backend_socket,
        .headers = headers,
        .body = cf_buf_slice(&r->plain),
        /* A stream may legitimately run long; its liveness is the idle
         * timeout (no byte for that long). A plain reply has both. */
        .total_timeout_ms = stream ? 0 : (unsigned)w->cfg.backend_timeout_ms,
        .idle_timeout_ms = (unsigned)w->cfg.backend_idle_timeout_ms,
        .max_response_size = stream ? SIZE_MAX / 2 : (size_t)w->cfg.max_response,
        .on_response = on_backend_response,
        .on_body = on_backend_body,
        .on_done = on_backend_done,
        .arg = r,
    };
    r->t_forward = cf_monotonic_ms();
    if (cf_is_error(cf_http_call_start(w->backend, &o, &r->call))) {
        CF_LOG_WARN("backend_call_failed", cf_kv_id("req", r->id), cf_kv_last_error());
        r->call = NULL;
        worker_respond_error_sealed(r, 502, "upstream_error", "upstream_error", "the inference server is unreachable",
                                    OUT_FAILED);
        goto out;
    }
    /* The call holds its own (wiped) copy of the body. */
    cf_buf_free(&r->plain);
out:
    cf_buf_free(&model);
}

/* ---- decryption -------------------------------------------------------------------------- */

static void try_open(worker_request *r);

static void on_key_fetched(void *arg, bool found)
{
    worker_request *r = arg;
    r->fetch = NULL;
    (void)found; /* either way: open again, which answers unknown_key if still missing */
    try_open(r);
}

static void try_open(worker_request *r)
{
    worker_state *w = r->w;
    const cf_proto_endpoint *ep = r->ep;
    cf_slice body = cf_http_request_body(r->req);
    cf_proto_open_options opt = {
        .now_ms = worker_now_ms(),
        .window_ms = w->cfg.replay_window_ms,
        .replay = w->replay,
        .pad_bucket = (uint32_t)w->cfg.pad_bucket,
        .max_body = (size_t)w->cfg.max_body,
    };
    cf_buf_reset(&r->plain);
    if (cf_is_ok(cf_proto_request_open(ep, body, worker_key_lookup, w, &opt, &r->plain, &r->session))) {
        forward(r);
        return;
    }
    cf_error_code code = cf_error_code_last();
    if (code == CF_E_UNKNOWN_KEY && !r->fetch_tried) {
        /* DESIGN §3 flow 3: ask the AS once for this key before failing. */
        char key_id[CF_PROTO_KEY_ID_LEN + 1];
        int64_t salt_ms;
        r->fetch_tried = true;
        if (cf_is_ok(cf_proto_request_peek(ep, body, key_id, &salt_ms))) {
            memcpy(r->key_id, key_id, sizeof r->key_id); /* public: for the log line */
            if (cf_is_ok(worker_fetch_key(w, key_id, on_key_fetched, r, &r->fetch))) {
                return; /* on_key_fetched continues */
            }
        }
        code = CF_E_UNKNOWN_KEY;
    }
    reject_plain(r, code);
}

/* ---- handlers -------------------------------------------------------------------------------- */

typedef struct route {
    worker_state *w;
    int ep_index;
} route;

static route routes[EP_COUNT];

static void handle_encrypted(cf_http_request *req, void *arg)
{
    route *rt = arg;
    worker_state *w = rt->w;
    worker_request *r = request_new(w, req, rt->ep_index);
    if (r == NULL) {
        if (cf_is_error(cf_http_respond_error(req, 503, "server_error", "no_memory", "out of memory", NULL))) {
            /* freed either way */
        }
        return;
    }
    cf_slice body = cf_http_request_body(req);
    cf_metric_add(w->m.bytes_in, (double)body.len);
    cf_http_request_on_close(req, worker_on_client_close, r);
    if (cf_is_error(cf_proto_endpoint_by_name(cf_slice_cstr(ep_names[rt->ep_index]), &r->ep))) {
        reject_plain(r, CF_E_UNKNOWN_ENDPOINT);
        return;
    }
    if (body.len > (size_t)w->cfg.max_body) {
        reject_plain(r, CF_E_TOO_LARGE);
        return;
    }
    const char *version = cf_http_request_header(req, CF_PROTO_HDR_VERSION);
    if (version != NULL && strcmp(version, "1") != 0) {
        reject_plain(r, CF_E_UNSUPPORTED_VERSION);
        return;
    }
    try_open(r);
}

/* GET /v1/models: not encrypted (no body either way); bounded and timed. */
static void on_models_response(cf_http_call *call, long status, void *arg)
{
    (void)call;
    ((worker_request *)arg)->backend_status = status;
}

static void on_models_done(cf_http_call *call, cf_http_error error, void *arg)
{
    (void)call;
    worker_request *r = arg;
    r->call = NULL;
    if (error != CF_HTTP_OK || r->reply_too_large) {
        r->reply_status = error == CF_HTTP_ERR_TIMEOUT ? 504 : 502;
        r->code = "upstream_error";
        if (cf_is_error(cf_http_respond_error(r->req, r->reply_status, "upstream_error", "upstream_error",
                                              "the inference server did not answer /v1/models",
                                              versions_header))) {
            /* freed either way */
        }
        worker_request_finish(r, OUT_FAILED);
        return;
    }
    r->reply_status = (int)r->backend_status;
    r->bytes_out += r->reply.len;
    cf_metric_add(r->w->m.bytes_out, (double)r->reply.len);
    if (cf_is_error(cf_http_respond(r->req, (int)r->backend_status, "application/json", cf_buf_slice(&r->reply),
                                    versions_header))) {
        CF_LOG_WARN("respond_failed", cf_kv_id("req", r->id), cf_kv_last_error());
    }
    worker_request_finish(r, r->backend_status >= 200 && r->backend_status < 300 ? OUT_OK : OUT_BACKEND);
}

static cf_http_body_action on_models_body(cf_http_call *call, cf_slice data, void *arg)
{
    (void)call;
    worker_request *r = arg;
    if (cf_is_error(cf_buf_append_slice(&r->reply, data))) {
        r->reply_too_large = true;
        return CF_HTTP_BODY_ABORT;
    }
    return CF_HTTP_BODY_CONTINUE;
}

static void handle_models(cf_http_request *req, void *arg)
{
    route *rt = arg;
    worker_state *w = rt->w;
    worker_request *r = request_new(w, req, EP_MODELS);
    if (r == NULL) {
        if (cf_is_error(cf_http_respond_error(req, 503, "server_error", "no_memory", "out of memory", NULL))) {
            /* freed either way */
        }
        return;
    }
    cf_http_request_on_close(req, worker_on_client_close, r);
    cf_http_call_opts o = {
        .method = "GET",
        .url = "http://localhost/v1/models",
        .unix_socket = w->cfg.backend_socket,
        .total_timeout_ms = 30000,
        .max_response_size = 1024 * 1024,
        .on_response = on_models_response,
        .on_body = on_models_body,
        .on_done = on_models_done,
        .arg = r,
    };
    if (cf_is_error(cf_http_call_start(w->backend, &o, &r->call))) {
        r->call = NULL;
        on_models_done(NULL, CF_HTTP_ERR_CONNECT, r);
    }
}

CF_RESULT worker_routes_add(worker_state *w)
{
    for (int i = 0; i < EP_COUNT; i++) {
        routes[i] = (route){w, i};
    }
    CF_GUARD(cf_http_server_route(w->server, "POST", "/v1/chat/completions", handle_encrypted, &routes[EP_CHAT]));
    CF_GUARD(cf_http_server_route(w->server, "POST", "/v1/completions", handle_encrypted, &routes[EP_COMPLETIONS]));
    CF_GUARD(cf_http_server_route(w->server, "POST", "/v1/embeddings", handle_encrypted, &routes[EP_EMBEDDINGS]));
    CF_GUARD(cf_http_server_route(w->server, "GET", "/v1/models", handle_models, &routes[EP_MODELS]));
    return CF_OK;
}

void worker_requests_drop(worker_state *w)
{
    while (w->requests != NULL) {
        request_release(w->requests);
    }
}

const char *worker_endpoint_label(int ep_index) { return ep_names[ep_index]; }
const char *worker_outcome_label(int outcome) { return outcome_names[outcome]; }
