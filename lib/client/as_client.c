/* as_client.c — the attestation service API over HTTP, client side (see
 * as_client.h). Builds and checks messages only through as_api.h. */
#include "confide/as_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "confide/crypto.h"
#include "confide/encoding.h"

#define DEFAULT_TIMEOUT_MS 10000u

typedef enum op_kind { OP_ATTEST, OP_UPLOAD, OP_DELETE } op_kind;

struct cf_as_op {
    op_kind kind;
    cf_http_call *call;
    cf_buf body; /* the AS's answer, bounded */
    uint8_t nonce[CF_AS_NONCE_LEN];
    uint8_t pinned[32];
    uint8_t upload_digest[32];
    char key_id[CF_KEY_ID_LEN + 1];
    const cf_as_identity *as;
    cf_as_attest_done attest_done;
    cf_as_upload_done upload_done;
    cf_as_delete_done delete_done;
    void *arg;
};

static void op_free(cf_as_op *op)
{
    if (op == NULL) {
        return;
    }
    cf_buf_free(&op->body);
    cf_wipe(op, sizeof *op);
    free(op);
}

static cf_http_body_action op_body(cf_http_call *call, cf_slice data, void *arg)
{
    cf_as_op *op = arg;
    (void)call;
    return cf_is_ok(cf_buf_append_slice(&op->body, data)) ? CF_HTTP_BODY_CONTINUE : CF_HTTP_BODY_ABORT;
}

/* Copy untrusted text for an error detail: printable ASCII only, cut. */
static void printable(const char *in, char *out, size_t outsize)
{
    size_t j = 0;
    for (size_t i = 0; in != NULL && in[i] != '\0' && j + 1 < outsize; i++) {
        unsigned char c = (unsigned char)in[i];
        out[j++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    out[j] = '\0';
}

/* Record why an answer is not a success: transport error or non-200. */
static cf_result answer_error(cf_http_error err, long status, cf_slice body)
{
    if (err == CF_HTTP_ERR_TIMEOUT) {
        cf_error_setf(CF_E_TIMEOUT, __FILE__, __LINE__, "AS did not answer in time");
        return CF_ERROR;
    }
    if (err == CF_HTTP_ERR_TOO_LARGE || err == CF_HTTP_ERR_ABORTED) {
        cf_error_setf(CF_E_TOO_LARGE, __FILE__, __LINE__, "AS answer larger than %u bytes", CF_AS_BODY_MAX);
        return CF_ERROR;
    }
    if (err != CF_HTTP_OK) {
        cf_error_setf(CF_E_IO, __FILE__, __LINE__, "AS unreachable: %s", cf_http_error_name(err));
        return CF_ERROR;
    }
    /* Non-200: the AS answers OpenAI-style errors; its code and message are
     * public text, still cut and never trusted beyond reporting. */
    json_t *j = json_loadb((const char *)body.ptr, body.len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *e = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    cf_error_code c = CF_E_UPSTREAM;
    if (code != NULL) {
        cf_error_code parsed = cf_error_from_name(code, strlen(code));
        if (parsed != CF_E_INTERNAL && parsed != CF_E_OK) {
            c = parsed;
        }
    }
    char code_text[41], msg_text[161];
    printable(code ? code : "(no code)", code_text, sizeof code_text);
    printable(msg ? msg : "(no message)", msg_text, sizeof msg_text);
    cf_error_setf(c, __FILE__, __LINE__, "AS answered HTTP %ld: %s: %s", status, code_text, msg_text);
    json_decref(j);
    return CF_ERROR;
}

static void op_done(cf_http_call *call, cf_http_error err, void *arg)
{
    cf_as_op *op = arg;
    long status = cf_http_call_status(call);
    op->call = NULL;
    cf_result r = CF_OK;
    if (err != CF_HTTP_OK || status != 200) {
        r = answer_error(err, status, cf_buf_slice(&op->body));
    }
    switch (op->kind) {
    case OP_ATTEST: {
        cf_as_identity id;
        memset(&id, 0, sizeof id);
        if (cf_is_ok(r)) {
            r = cf_as_attest_response_verify(cf_buf_slice(&op->body), op->nonce, op->pinned, (int64_t)time(NULL), &id);
        }
        op->attest_done(op->arg, r, cf_is_ok(r) ? &id : NULL);
        cf_as_identity_free(&id);
        break;
    }
    case OP_UPLOAD: {
        cf_key_receipt receipt;
        memset(&receipt, 0, sizeof receipt);
        if (cf_is_ok(r)) {
            r = cf_key_receipt_verify(op->as, op->upload_digest, op->key_id, cf_buf_slice(&op->body), &receipt);
        }
        op->upload_done(op->arg, r, cf_is_ok(r) ? &receipt : NULL);
        break;
    }
    case OP_DELETE: op->delete_done(op->arg, r); break;
    }
    op_free(op);
}

static CF_RESULT op_post(const cf_as_endpoint *ep, cf_as_op *op, const char *path, cf_slice body)
{
    CF_ENSURE_REF(ep);
    CF_ENSURE_MSG(ep->http != NULL && ep->base_url != NULL, CF_E_INVALID_ARGUMENT, "AS endpoint incomplete");
    char url[1024];
    size_t blen = strlen(ep->base_url);
    while (blen > 0 && ep->base_url[blen - 1] == '/') {
        blen--;
    }
    int n = snprintf(url, sizeof url, "%.*s%s", (int)blen, ep->base_url, path);
    CF_ENSURE_MSG(n > 0 && (size_t)n < sizeof url, CF_E_INVALID_ARGUMENT, "AS URL too long");
    static const cf_http_header headers[] = {{"Content-Type", "application/json"}, {NULL, NULL}};
    cf_http_call_opts o = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = body,
        .total_timeout_ms = ep->timeout_ms ? ep->timeout_ms : DEFAULT_TIMEOUT_MS,
        .max_response_size = CF_AS_BODY_MAX,
        .on_body = op_body,
        .on_done = op_done,
        .arg = op,
    };
    return cf_http_call_start(ep->http, &o, &op->call);
}

static cf_as_op *op_new(op_kind kind, void *arg)
{
    cf_as_op *op = calloc(1, sizeof *op);
    if (op != NULL) {
        op->kind = kind;
        op->arg = arg;
        cf_buf_init(&op->body, CF_AS_BODY_MAX);
    }
    return op;
}

CF_RESULT cf_as_attest_start(const cf_as_endpoint *ep, const uint8_t pinned_manifest_sha256[32], cf_as_attest_done done,
                             void *arg, cf_as_op **out)
{
    cf_result result = CF_OK;
    cf_buf req;
    cf_buf_init(&req, 4096);
    CF_ENSURE_REF(pinned_manifest_sha256);
    CF_ENSURE_REF(done);
    cf_as_op *op = op_new(OP_ATTEST, arg);
    CF_ENSURE(op != NULL, CF_E_NO_MEMORY);
    op->attest_done = done;
    memcpy(op->pinned, pinned_manifest_sha256, 32);
    CF_GUARD_OUT(cf_random(op->nonce, sizeof op->nonce));
    CF_GUARD_OUT(cf_as_attest_request_build(op->nonce, &req));
    CF_GUARD_OUT(op_post(ep, op, "/v1/attest", cf_buf_slice(&req)));
    if (out != NULL) {
        *out = op;
    }
    op = NULL;
out:
    op_free(op);
    cf_buf_free(&req);
    return result;
}

CF_RESULT cf_as_upload_start(const cf_as_endpoint *ep, const cf_as_identity *as, const uint8_t k[CF_INFERENCE_KEY_LEN],
                             uint32_t ttl_s, const cf_key_scope *scope, cf_as_upload_done done, void *arg,
                             cf_as_op **out)
{
    cf_result result = CF_OK;
    cf_buf req;
    cf_buf_init(&req, CF_AS_BODY_MAX);
    CF_ENSURE_REF(as);
    CF_ENSURE_REF(k);
    CF_ENSURE_REF(done);
    cf_as_op *op = op_new(OP_UPLOAD, arg);
    CF_ENSURE(op != NULL, CF_E_NO_MEMORY);
    op->upload_done = done;
    op->as = as;
    CF_GUARD_OUT(cf_key_id_derive(k, op->key_id));
    CF_GUARD_OUT(cf_key_upload_seal(as, k, ttl_s, scope, &req, op->upload_digest));
    CF_GUARD_OUT(op_post(ep, op, "/v1/keys", cf_buf_slice(&req)));
    if (out != NULL) {
        *out = op;
    }
    op = NULL;
out:
    op_free(op);
    cf_buf_free(&req);
    return result;
}

CF_RESULT cf_as_delete_start(const cf_as_endpoint *ep, const uint8_t k[CF_INFERENCE_KEY_LEN], const char *key_id,
                             int64_t expires_at, cf_as_delete_done done, void *arg, cf_as_op **out)
{
    cf_result result = CF_OK;
    cf_buf req;
    cf_buf_init(&req, 4096);
    CF_ENSURE_REF(k);
    CF_ENSURE_REF(key_id);
    CF_ENSURE_REF(done);
    cf_as_op *op = op_new(OP_DELETE, arg);
    CF_ENSURE(op != NULL, CF_E_NO_MEMORY);
    op->delete_done = done;
    CF_GUARD_OUT(cf_key_delete_build(k, key_id, expires_at, &req));
    CF_GUARD_OUT(op_post(ep, op, "/v1/keys/delete", cf_buf_slice(&req)));
    if (out != NULL) {
        *out = op;
    }
    op = NULL;
out:
    op_free(op);
    cf_buf_free(&req);
    return result;
}

void cf_as_op_cancel(cf_as_op *op)
{
    if (op == NULL) {
        return;
    }
    if (op->call != NULL) {
        cf_http_call_cancel(op->call);
    }
    op_free(op);
}

CF_RESULT cf_as_attest_fetch(const cf_http_client_config *cfg, const char *base_url, unsigned timeout_ms,
                             const uint8_t pinned_manifest_sha256[32], int64_t now, cf_as_identity *out)
{
    cf_result result = CF_OK;
    uint8_t nonce[CF_AS_NONCE_LEN];
    cf_buf req, body;
    cf_buf_init(&req, 4096);
    cf_buf_init(&body, CF_AS_BODY_MAX);
    CF_ENSURE_REF(base_url);
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    char url[1024];
    size_t blen = strlen(base_url);
    while (blen > 0 && base_url[blen - 1] == '/') {
        blen--;
    }
    int n = snprintf(url, sizeof url, "%.*s/v1/attest", (int)blen, base_url);
    CF_ENSURE_MSG(n > 0 && (size_t)n < sizeof url, CF_E_INVALID_ARGUMENT, "AS URL too long");
    CF_GUARD_OUT(cf_random(nonce, sizeof nonce));
    CF_GUARD_OUT(cf_as_attest_request_build(nonce, &req));
    static const cf_http_header headers[] = {{"Content-Type", "application/json"}, {NULL, NULL}};
    cf_http_call_opts o = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = cf_buf_slice(&req),
        .total_timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS,
        .max_response_size = CF_AS_BODY_MAX,
    };
    long status = 0;
    CF_GUARD_OUT(cf_http_fetch(cfg, &o, &status, &body));
    if (status != 200) {
        result = answer_error(CF_HTTP_OK, status, cf_buf_slice(&body));
        goto out;
    }
    CF_GUARD_OUT(cf_as_attest_response_verify(cf_buf_slice(&body), nonce, pinned_manifest_sha256, now, out));
out:
    cf_buf_free(&req);
    cf_buf_free(&body);
    return result;
}

CF_RESULT cf_as_identity_fingerprints(const cf_as_identity *id, char hpke_hex[65], char sign_hex[65])
{
    uint8_t d[32];
    CF_ENSURE_REF(id);
    CF_GUARD(cf_sha256(cf_slice_make(id->hpke_public_key, id->hpke_public_key_len), d));
    CF_GUARD(cf_hex_encode_str(cf_slice_make(d, sizeof d), hpke_hex, 65));
    CF_GUARD(cf_sha256(cf_slice_make(id->signing_public_key, sizeof id->signing_public_key), d));
    CF_GUARD(cf_hex_encode_str(cf_slice_make(d, sizeof d), sign_hex, 65));
    return CF_OK;
}
