/* as_api.c — the attestation service API messages (see as_api.h and
 * docs/protocol.md §Attestation service API). */
#include "confide/as_api.h"

#include <string.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/protocol.h"

#define LABEL_AS_ATTEST "confide/v1 as-attest"
#define LABEL_WORKER_ATTEST "confide/v1 worker-attest"
#define LABEL_KEY_UPLOAD "confide/v1 key-upload"
#define LABEL_KEY_RECEIPT "confide/v1 key-receipt"
#define LABEL_KEY_DELETE "confide/v1 key-delete"
#define LABEL_WORKER_TOKEN "confide/v1 worker-token"
#define LABEL_KEY_EVENT "confide/v1 key-event"
#define LABEL_KEY_WRAP "confide/v1 key-wrap"

#define UPLOAD_VERSION 1
#define TOKEN_VERSION 1
#define TOKEN_MAX_LEN 512

/* ---- JSON helpers (every error names the field) --------------------------- */

static CF_RESULT parse_object(cf_slice body, json_t **out)
{
    CF_ENSURE_MSG(body.len <= CF_AS_BODY_MAX, CF_E_TOO_LARGE, "body larger than 4 MiB");
    json_error_t jerr;
    json_t *j = json_loadb((const char *)body.ptr, body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        /* Not jerr.text: jansson quotes the input near the error ("near
         * '...'"), which may be part of a token or key, and details reach logs. */
        CF_BAIL_FMT(CF_E_MALFORMED, "invalid JSON at line %d column %d (jansson error %d)", jerr.line, jerr.column,
                    (int)json_error_code(&jerr));
    }
    if (!json_is_object(j)) {
        json_decref(j);
        CF_BAIL_MSG(CF_E_MALFORMED, "expected a JSON object");
    }
    *out = j;
    return CF_OK;
}

/* Refuse members not in `allowed` (NULL-terminated). */
static CF_RESULT only_keys(json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++) {
            ok = strcmp(key, allowed[i]) == 0;
        }
        if (!ok) {
            CF_BAIL_FMT(CF_E_MALFORMED, "%.64s: unknown field", key);
        }
    }
    return CF_OK;
}

static CF_RESULT get_str(const json_t *obj, const char *key, size_t max, cf_slice *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || json_string_length(v) > max) {
        CF_BAIL_FMT(CF_E_MALFORMED, "%s: expected a string of at most %zu bytes", key, max);
    }
    *out = cf_slice_make(json_string_value(v), json_string_length(v));
    return CF_OK;
}

static CF_RESULT get_b64_fixed(const json_t *obj, const char *key, uint8_t *out, size_t len)
{
    cf_slice s;
    CF_GUARD(get_str(obj, key, cf_b64url_encoded_len(len), &s));
    size_t got = 0;
    if (cf_is_error(cf_b64url_decode_fixed(s, out, len, &got)) || got != len) {
        CF_BAIL_FMT(CF_E_MALFORMED, "%s: expected %zu bytes in base64url", key, len);
    }
    return CF_OK;
}

static CF_RESULT get_b64_buf(const json_t *obj, const char *key, size_t max, cf_buf *out)
{
    cf_slice s;
    CF_GUARD(get_str(obj, key, cf_b64url_encoded_len(max), &s));
    /* The decoder reserves a few bytes beyond the exact length. */
    cf_buf_init(out, max + 3);
    if (cf_is_error(cf_b64url_decode(s, out)) || out->len > max) {
        cf_buf_free(out);
        CF_BAIL_FMT(CF_E_MALFORMED, "%s: invalid base64url", key);
    }
    return CF_OK;
}

static CF_RESULT get_time(const json_t *obj, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    /* Unix seconds up to year 9999. */
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 253402300799LL) {
        CF_BAIL_FMT(CF_E_MALFORMED, "%s: expected Unix seconds", key);
    }
    *out = json_integer_value(v);
    return CF_OK;
}

static CF_RESULT get_u64(const json_t *obj, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        CF_BAIL_FMT(CF_E_MALFORMED, "%s: expected a non-negative integer", key);
    }
    *out = (uint64_t)json_integer_value(v);
    return CF_OK;
}

static CF_RESULT set_b64(json_t *obj, const char *key, cf_slice bytes)
{
    cf_buf enc;
    cf_buf_init(&enc, 0);
    const char *text;
    cf_result result = CF_OK;
    CF_GUARD_OUT(cf_b64url_encode(bytes, &enc));
    CF_GUARD_OUT(cf_buf_cstr(&enc, &text));
    CF_ENSURE_MSG_OUT(json_object_set_new(obj, key, json_string(text)) == 0, CF_E_NO_MEMORY, "json_object_set failed");
out:
    cf_buf_free(&enc);
    return result;
}

/* Serialise compactly and append; consumes the reference to obj. */
static CF_RESULT dump_json(json_t *obj, cf_buf *out)
{
    CF_ENSURE_MSG(obj != NULL, CF_E_NO_MEMORY, "json allocation failed");
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    CF_ENSURE_MSG(text != NULL, CF_E_NO_MEMORY, "json_dumps failed");
    cf_result r = cf_buf_append_cstr(out, text);
    free(text);
    return r;
}

static CF_RESULT append_label(cf_buf *b, const char *label) { return cf_buf_append(b, label, strlen(label)); }

static CF_RESULT append_u8_str(cf_buf *b, const char *s)
{
    size_t n = strlen(s);
    CF_ENSURE(n <= 255, CF_E_INVALID_ARGUMENT);
    CF_GUARD(cf_buf_append_u8(b, (uint8_t)n));
    return cf_buf_append(b, s, n);
}

static CF_RESULT append_u16_slice(cf_buf *b, cf_slice s)
{
    CF_ENSURE(s.len <= UINT16_MAX, CF_E_INVALID_ARGUMENT);
    CF_GUARD(cf_buf_append_u16be(b, (uint16_t)s.len));
    return cf_buf_append_slice(b, s);
}

/* u8 count || (u8 len || name)* */
static CF_RESULT append_scope(cf_buf *b, const cf_key_scope *scope)
{
    CF_ENSURE(scope->count <= CF_KEY_SCOPE_MAX, CF_E_INVALID_ARGUMENT);
    CF_GUARD(cf_buf_append_u8(b, (uint8_t)scope->count));
    for (size_t i = 0; i < scope->count; i++) {
        CF_GUARD(append_u8_str(b, scope->models[i]));
    }
    return CF_OK;
}

/* ---- keys --------------------------------------------------------------------- */

/* One derivation for the whole code base: the codec's (protocol.h). */
_Static_assert(CF_KEY_ID_LEN == CF_PROTO_KEY_ID_LEN, "key id lengths agree");
_Static_assert(CF_INFERENCE_KEY_LEN == CF_PROTO_SECRET_LEN, "secret lengths agree");

CF_RESULT cf_key_id_derive(const uint8_t k[CF_INFERENCE_KEY_LEN], char key_id[CF_KEY_ID_LEN + 1])
{
    CF_ENSURE_REF(k);
    CF_ENSURE_REF(key_id);
    return cf_proto_key_id(k, key_id);
}

CF_RESULT cf_key_generate(uint8_t k[CF_INFERENCE_KEY_LEN], char key_id[CF_KEY_ID_LEN + 1])
{
    CF_GUARD(cf_random(k, CF_INFERENCE_KEY_LEN));
    return cf_key_id_derive(k, key_id);
}

bool cf_key_id_valid(cf_slice key_id)
{
    uint8_t raw[16];
    size_t len = 0;
    return key_id.len == CF_KEY_ID_LEN && cf_is_ok(cf_b64url_decode_fixed(key_id, raw, sizeof raw, &len)) &&
           len == sizeof raw;
}

static CF_RESULT get_key_id(const json_t *obj, const char *key, char out[CF_KEY_ID_LEN + 1])
{
    cf_slice s;
    CF_GUARD(get_str(obj, key, CF_KEY_ID_LEN, &s));
    if (!cf_key_id_valid(s)) {
        CF_BAIL_FMT(CF_E_MALFORMED, "%s: expected a key id (22 base64url characters)", key);
    }
    memcpy(out, s.ptr, CF_KEY_ID_LEN);
    out[CF_KEY_ID_LEN] = '\0';
    return CF_OK;
}

static bool model_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > CF_MODEL_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

static CF_RESULT scope_add(cf_key_scope *scope, const char *name, size_t len)
{
    CF_ENSURE_MSG(model_name_ok(name, len), CF_E_MALFORMED,
                  "scope: model names are 1..128 visible ASCII characters");
    CF_ENSURE_MSG(scope->count < CF_KEY_SCOPE_MAX, CF_E_LIMIT, "scope: at most 16 models");
    for (size_t i = 0; i < scope->count; i++) {
        CF_ENSURE_MSG(!(strlen(scope->models[i]) == len && memcmp(scope->models[i], name, len) == 0), CF_E_MALFORMED,
                      "scope: duplicate model");
    }
    memcpy(scope->models[scope->count], name, len);
    scope->models[scope->count][len] = '\0';
    scope->count++;
    return CF_OK;
}

CF_RESULT cf_key_scope_from_json(const json_t *arr, cf_key_scope *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    CF_ENSURE_MSG(json_is_array(arr) && json_array_size(arr) > 0 && json_array_size(arr) <= CF_KEY_SCOPE_MAX,
                  CF_E_MALFORMED, "scope: expected an array of 1..16 model names");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *m = json_array_get(arr, i);
        CF_ENSURE_MSG(json_is_string(m), CF_E_MALFORMED, "scope: expected an array of strings");
        CF_GUARD(scope_add(out, json_string_value(m), json_string_length(m)));
    }
    return CF_OK;
}

json_t *cf_key_scope_to_json(const cf_key_scope *scope)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < scope->count; i++) {
        if (json_array_append_new(arr, json_string(scope->models[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static CF_RESULT read_scope(cf_reader *r, cf_key_scope *out)
{
    uint8_t count;
    memset(out, 0, sizeof *out);
    CF_GUARD(cf_reader_u8(r, &count));
    CF_ENSURE_MSG(count > 0 && count <= CF_KEY_SCOPE_MAX, CF_E_MALFORMED, "scope: 1..16 models");
    for (uint8_t i = 0; i < count; i++) {
        uint8_t len;
        cf_slice name;
        CF_GUARD(cf_reader_u8(r, &len));
        CF_GUARD(cf_reader_slice(r, len, &name));
        CF_GUARD(scope_add(out, (const char *)name.ptr, name.len));
    }
    return CF_OK;
}

/* ---- report_data ---------------------------------------------------------------- */

CF_RESULT cf_as_report_data(const uint8_t nonce[CF_AS_NONCE_LEN], cf_slice hpke_pk, cf_slice sign_pk,
                            const uint8_t manifest_sha256[32], uint8_t out[CF_REPORT_DATA_LEN])
{
    CF_ENSURE_REF(nonce);
    CF_ENSURE_REF(manifest_sha256);
    cf_result result = CF_OK;
    cf_buf m;
    cf_buf_init(&m, 4096);
    CF_GUARD_OUT(append_label(&m, LABEL_AS_ATTEST));
    CF_GUARD_OUT(cf_buf_append(&m, nonce, CF_AS_NONCE_LEN));
    CF_GUARD_OUT(append_u16_slice(&m, hpke_pk));
    CF_GUARD_OUT(append_u16_slice(&m, sign_pk));
    CF_GUARD_OUT(cf_buf_append(&m, manifest_sha256, 32));
    CF_GUARD_OUT(cf_sha512(cf_buf_slice(&m), out));
out:
    cf_buf_free(&m);
    return result;
}

CF_RESULT cf_worker_report_data(const uint8_t nonce[CF_AS_NONCE_LEN], cf_slice hpke_pk,
                                uint8_t out[CF_REPORT_DATA_LEN])
{
    CF_ENSURE_REF(nonce);
    cf_result result = CF_OK;
    cf_buf m;
    cf_buf_init(&m, 4096);
    CF_GUARD_OUT(append_label(&m, LABEL_WORKER_ATTEST));
    CF_GUARD_OUT(cf_buf_append(&m, nonce, CF_AS_NONCE_LEN));
    CF_GUARD_OUT(append_u16_slice(&m, hpke_pk));
    CF_GUARD_OUT(cf_sha512(cf_buf_slice(&m), out));
out:
    cf_buf_free(&m);
    return result;
}

/* ---- AS attestation ---------------------------------------------------------------- */

CF_RESULT cf_as_attest_request_build(const uint8_t nonce[CF_AS_NONCE_LEN], cf_buf *out)
{
    json_t *o = json_object();
    CF_ENSURE_MSG(o != NULL, CF_E_NO_MEMORY, "json_object failed");
    if (cf_is_error(set_b64(o, "nonce", cf_slice_make(nonce, CF_AS_NONCE_LEN)))) {
        json_decref(o);
        return CF_ERROR;
    }
    return dump_json(o, out);
}

CF_RESULT cf_as_attest_request_parse(cf_slice body, uint8_t nonce[CF_AS_NONCE_LEN])
{
    static const char *const keys[] = {"nonce", NULL};
    json_t *o = NULL;
    cf_result result = CF_OK;
    CF_GUARD(parse_object(body, &o));
    CF_GUARD_OUT(only_keys(o, keys));
    CF_GUARD_OUT(get_b64_fixed(o, "nonce", nonce, CF_AS_NONCE_LEN));
out:
    json_decref(o);
    return result;
}

CF_RESULT cf_as_attest_response_build(cf_platform platform, cf_slice evidence, cf_slice collateral, cf_slice hpke_pk,
                                      cf_slice sign_pk, cf_slice manifest_bytes, cf_buf *out)
{
    cf_result result = CF_OK;
    json_t *o = json_pack("{s:i,s:s}", "version", 1, "platform", cf_platform_name(platform));
    CF_ENSURE_MSG(o != NULL, CF_E_NO_MEMORY, "json_pack failed");
    CF_GUARD_OUT(set_b64(o, "evidence", evidence));
    CF_GUARD_OUT(set_b64(o, "collateral", collateral));
    CF_GUARD_OUT(set_b64(o, "hpke_public_key", hpke_pk));
    CF_GUARD_OUT(set_b64(o, "signing_public_key", sign_pk));
    CF_GUARD_OUT(set_b64(o, "manifest", manifest_bytes));
    result = dump_json(o, out);
    o = NULL;
out:
    json_decref(o);
    return result;
}

void cf_as_identity_free(cf_as_identity *id)
{
    if (id == NULL) {
        return;
    }
    EVP_PKEY_free(id->signing_key);
    cf_manifest_free(id->manifest);
    cf_claims_free(&id->claims);
    memset(id, 0, sizeof *id);
}

CF_RESULT cf_as_attest_response_verify(cf_slice body, const uint8_t nonce[CF_AS_NONCE_LEN],
                                       const uint8_t pinned_manifest_sha256[32], int64_t now, cf_as_identity *out)
{
    static const char *const keys[] = {"version",         "platform",           "evidence", "collateral",
                                       "hpke_public_key", "signing_public_key", "manifest", NULL};
    CF_ENSURE_REF(nonce);
    CF_ENSURE_REF(pinned_manifest_sha256);
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_result result = CF_OK;
    json_t *o = NULL;
    cf_buf evidence, collateral, manifest, hpke_pk;
    cf_buf_init(&evidence, 0);
    cf_buf_init(&collateral, 0);
    cf_buf_init(&manifest, 0);
    cf_buf_init(&hpke_pk, 0);
    uint8_t rd[CF_REPORT_DATA_LEN];
    int64_t version = 0;

    CF_GUARD_OUT(parse_object(body, &o));
    CF_GUARD_OUT(only_keys(o, keys));
    const json_t *v = json_object_get(o, "version");
    version = json_is_integer(v) ? json_integer_value(v) : 0;
    CF_ENSURE_MSG_OUT(version == 1, CF_E_UNSUPPORTED, "version: expected 1");
    const json_t *p = json_object_get(o, "platform");
    CF_ENSURE_MSG_OUT(json_is_string(p), CF_E_MALFORMED, "platform: expected a string");
    CF_GUARD_OUT(cf_platform_parse(json_string_value(p), &out->platform));
    CF_GUARD_OUT(get_b64_buf(o, "evidence", CF_AS_EVIDENCE_MAX, &evidence));
    CF_GUARD_OUT(get_b64_buf(o, "collateral", CF_AS_COLLATERAL_MAX, &collateral));
    CF_GUARD_OUT(get_b64_buf(o, "manifest", CF_MANIFEST_MAX_BYTES, &manifest));
    CF_GUARD_OUT(get_b64_buf(o, "hpke_public_key", CF_HPKE_MAX_PUBLIC_KEY_LEN, &hpke_pk));
    const cf_hpke_kem *kem = cf_hpke_kem_by_id(CF_HPKE_SUITE_DEFAULT.kem_id);
    CF_ENSURE_MSG_OUT(kem != NULL && hpke_pk.len == cf_hpke_kem_public_key_len(kem), CF_E_MALFORMED,
                      "hpke_public_key: wrong length for the suite");
    memcpy(out->hpke_public_key, hpke_pk.data, hpke_pk.len);
    out->hpke_public_key_len = hpke_pk.len;
    CF_GUARD_OUT(get_b64_fixed(o, "signing_public_key", out->signing_public_key, CF_ED25519_PUB_LEN));

    /* The manifest first: nothing else matters if it is not the pinned one. */
    CF_GUARD_OUT(cf_manifest_parse(cf_buf_slice(&manifest), &out->manifest));
    CF_ENSURE_MSG_OUT(cf_ct_equal(out->manifest->sha256, pinned_manifest_sha256, 32), CF_E_POLICY,
                      "manifest: the AS enforces a manifest other than the pinned one");
    CF_GUARD_OUT(cf_as_report_data(nonce, cf_buf_slice(&hpke_pk),
                                   cf_slice_make(out->signing_public_key, CF_ED25519_PUB_LEN), out->manifest->sha256,
                                   rd));
    CF_GUARD_OUT(cf_manifest_verify_as(out->manifest, out->platform, cf_buf_slice(&evidence),
                                       cf_buf_slice(&collateral), rd, now, &out->claims));
    CF_GUARD_OUT(cf_ed25519_public_from_raw(out->signing_public_key, &out->signing_key));
out:
    json_decref(o);
    cf_buf_free(&evidence);
    cf_buf_free(&collateral);
    cf_buf_free(&manifest);
    cf_buf_free(&hpke_pk);
    if (cf_is_error(result)) {
        cf_as_identity_free(out);
    }
    return result;
}

/* ---- key upload ------------------------------------------------------------------- */

void cf_key_upload_wipe(cf_key_upload *u)
{
    if (u != NULL) {
        cf_wipe(u, sizeof *u);
    }
}

static CF_RESULT upload_digest_of(cf_slice enc, cf_slice ct, uint8_t out[32])
{
    cf_result result = CF_OK;
    cf_hash_ctx h = {0};
    CF_GUARD_OUT(cf_hash_init(&h, CF_HASH_SHA256));
    CF_GUARD_OUT(cf_hash_update(&h, enc));
    CF_GUARD_OUT(cf_hash_update(&h, ct));
    CF_GUARD_OUT(cf_hash_final(&h, out));
out:
    cf_hash_free(&h);
    return result;
}

CF_RESULT cf_key_upload_seal(const cf_as_identity *as, const uint8_t k[CF_INFERENCE_KEY_LEN], uint32_t ttl_s,
                             const cf_key_scope *scope, cf_buf *body, uint8_t upload_digest[32])
{
    CF_ENSURE_REF(as);
    CF_ENSURE_REF(as->manifest);
    CF_ENSURE_REF(k);
    CF_ENSURE_REF(scope);
    CF_ENSURE_MSG(scope->count > 0 && scope->count <= CF_KEY_SCOPE_MAX, CF_E_INVALID_ARGUMENT,
                  "scope: 1..16 models");
    cf_result result = CF_OK;
    cf_buf pt, enc, ct;
    cf_buf_init(&pt, 4096);
    cf_buf_init(&enc, CF_HPKE_MAX_ENC_LEN);
    cf_buf_init(&ct, 8192);
    char key_id[CF_KEY_ID_LEN + 1];
    json_t *o = NULL;

    CF_GUARD_OUT(cf_key_id_derive(k, key_id));
    CF_GUARD_OUT(cf_buf_append_u8(&pt, UPLOAD_VERSION));
    CF_GUARD_OUT(cf_buf_append(&pt, k, CF_INFERENCE_KEY_LEN));
    CF_GUARD_OUT(append_u8_str(&pt, key_id));
    CF_GUARD_OUT(cf_buf_append_u32be(&pt, ttl_s));
    CF_GUARD_OUT(append_scope(&pt, scope));
    CF_GUARD_OUT(cf_hpke_seal_base(CF_HPKE_SUITE_DEFAULT, cf_slice_make(as->hpke_public_key, as->hpke_public_key_len),
                                   cf_slice_cstr(LABEL_KEY_UPLOAD), cf_slice_make(as->manifest->sha256, 32),
                                   cf_buf_slice(&pt), &enc, &ct));
    CF_GUARD_OUT(upload_digest_of(cf_buf_slice(&enc), cf_buf_slice(&ct), upload_digest));
    o = json_object();
    CF_ENSURE_MSG_OUT(o != NULL, CF_E_NO_MEMORY, "json_object failed");
    CF_GUARD_OUT(set_b64(o, "enc", cf_buf_slice(&enc)));
    CF_GUARD_OUT(set_b64(o, "ct", cf_buf_slice(&ct)));
    result = dump_json(o, body);
    o = NULL;
out:
    json_decref(o);
    cf_buf_free(&pt);
    cf_buf_free(&enc);
    cf_buf_free(&ct);
    return result;
}

CF_RESULT cf_key_upload_open(const cf_hpke_keypair *as_kp, const uint8_t manifest_sha256[32], cf_slice body,
                             cf_key_upload *out, uint8_t upload_digest[32])
{
    static const char *const keys[] = {"enc", "ct", NULL};
    CF_ENSURE_REF(as_kp);
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_result result = CF_OK;
    json_t *o = NULL;
    cf_buf enc, ct, pt;
    cf_buf_init(&enc, 0);
    cf_buf_init(&ct, 0);
    cf_buf_init(&pt, 8192);
    char derived[CF_KEY_ID_LEN + 1];

    CF_GUARD_OUT(parse_object(body, &o));
    CF_GUARD_OUT(only_keys(o, keys));
    CF_GUARD_OUT(get_b64_buf(o, "enc", CF_HPKE_MAX_ENC_LEN, &enc));
    CF_GUARD_OUT(get_b64_buf(o, "ct", 8192, &ct));
    CF_GUARD_OUT(upload_digest_of(cf_buf_slice(&enc), cf_buf_slice(&ct), upload_digest));
    if (cf_is_error(cf_hpke_open_base(CF_HPKE_SUITE_DEFAULT, cf_buf_slice(&enc), as_kp,
                                      cf_slice_cstr(LABEL_KEY_UPLOAD), cf_slice_make(manifest_sha256, 32),
                                      cf_buf_slice(&ct), &pt))) {
        CF_BAIL_OUT(CF_E_AUTH_FAILED, "upload does not open with the attested AS key and manifest");
    }
    cf_reader r = cf_reader_make(cf_buf_slice(&pt));
    uint8_t version, kid_len;
    cf_slice kid;
    CF_GUARD_OUT(cf_reader_u8(&r, &version));
    CF_ENSURE_MSG_OUT(version == UPLOAD_VERSION, CF_E_UNSUPPORTED, "upload: version is not 1");
    CF_GUARD_OUT(cf_reader_copy(&r, out->k, CF_INFERENCE_KEY_LEN));
    CF_GUARD_OUT(cf_reader_u8(&r, &kid_len));
    CF_GUARD_OUT(cf_reader_slice(&r, kid_len, &kid));
    CF_ENSURE_MSG_OUT(cf_key_id_valid(kid), CF_E_MALFORMED, "upload: key_id is not 22 base64url characters");
    memcpy(out->key_id, kid.ptr, CF_KEY_ID_LEN);
    CF_GUARD_OUT(cf_reader_u32be(&r, &out->ttl_s));
    CF_GUARD_OUT(read_scope(&r, &out->scope));
    CF_GUARD_OUT(cf_reader_expect_end(&r));
    /* DESIGN §4.2: nobody may upload a key under an id not derived from it. */
    CF_GUARD_OUT(cf_key_id_derive(out->k, derived));
    CF_ENSURE_MSG_OUT(cf_ct_equal(derived, out->key_id, CF_KEY_ID_LEN), CF_E_AUTH_FAILED,
                      "key_id is not derived from the uploaded key");
out:
    json_decref(o);
    cf_buf_free(&enc);
    cf_buf_free(&ct);
    cf_buf_free(&pt);
    if (cf_is_error(result)) {
        cf_key_upload_wipe(out);
    }
    return result;
}

/* ---- receipts ------------------------------------------------------------------------ */

static CF_RESULT receipt_message(const uint8_t manifest_sha256[32], const uint8_t upload_digest[32],
                                 const cf_key_receipt *r, cf_buf *m)
{
    CF_GUARD(append_label(m, LABEL_KEY_RECEIPT));
    CF_GUARD(cf_buf_append(m, manifest_sha256, 32));
    CF_GUARD(cf_buf_append(m, upload_digest, 32));
    CF_GUARD(append_u8_str(m, r->key_id));
    CF_GUARD(cf_buf_append_u64be(m, (uint64_t)r->expires_at));
    return append_scope(m, &r->scope);
}

CF_RESULT cf_key_receipt_build(EVP_PKEY *sign_key, const uint8_t manifest_sha256[32], const uint8_t upload_digest[32],
                               const cf_key_receipt *r, cf_buf *out)
{
    cf_result result = CF_OK;
    cf_buf m;
    cf_buf_init(&m, 8192);
    uint8_t sig[CF_ED25519_SIG_LEN];
    json_t *o = NULL;
    CF_GUARD_OUT(receipt_message(manifest_sha256, upload_digest, r, &m));
    CF_GUARD_OUT(cf_ed25519_sign(sign_key, cf_buf_slice(&m), sig));
    o = json_pack("{s:s,s:I,s:o}", "key_id", r->key_id, "expires_at", (json_int_t)r->expires_at, "scope",
                  cf_key_scope_to_json(&r->scope));
    CF_ENSURE_MSG_OUT(o != NULL, CF_E_NO_MEMORY, "json_pack failed");
    CF_GUARD_OUT(set_b64(o, "signature", cf_slice_make(sig, sizeof sig)));
    result = dump_json(o, out);
    o = NULL;
out:
    json_decref(o);
    cf_buf_free(&m);
    return result;
}

CF_RESULT cf_key_receipt_verify(const cf_as_identity *as, const uint8_t upload_digest[32], const char *key_id,
                                cf_slice body, cf_key_receipt *out)
{
    static const char *const keys[] = {"key_id", "expires_at", "scope", "signature", NULL};
    CF_ENSURE_REF(as);
    CF_ENSURE_REF(as->manifest);
    CF_ENSURE_REF(key_id);
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_result result = CF_OK;
    json_t *o = NULL;
    cf_buf m;
    cf_buf_init(&m, 8192);
    uint8_t sig[CF_ED25519_SIG_LEN];
    CF_GUARD_OUT(parse_object(body, &o));
    CF_GUARD_OUT(only_keys(o, keys));
    CF_GUARD_OUT(get_key_id(o, "key_id", out->key_id));
    CF_GUARD_OUT(get_time(o, "expires_at", &out->expires_at));
    CF_GUARD_OUT(cf_key_scope_from_json(json_object_get(o, "scope"), &out->scope));
    CF_GUARD_OUT(get_b64_fixed(o, "signature", sig, sizeof sig));
    CF_ENSURE_MSG_OUT(strcmp(out->key_id, key_id) == 0, CF_E_AUTH_FAILED, "receipt names another key");
    CF_GUARD_OUT(receipt_message(as->manifest->sha256, upload_digest, out, &m));
    if (cf_is_error(cf_ed25519_verify(as->signing_key, cf_buf_slice(&m), cf_slice_make(sig, sizeof sig)))) {
        CF_BAIL_OUT(CF_E_BAD_SIGNATURE, "receipt is not signed by the attested AS key for this upload");
    }
out:
    json_decref(o);
    cf_buf_free(&m);
    if (cf_is_error(result)) {
        memset(out, 0, sizeof *out);
    }
    return result;
}

/* ---- deletion ------------------------------------------------------------------------- */

CF_RESULT cf_key_delete_proof(const uint8_t k[CF_INFERENCE_KEY_LEN], const char *key_id, int64_t expires_at,
                              uint8_t proof[32])
{
    cf_result result = CF_OK;
    cf_buf m;
    cf_buf_init(&m, 256);
    CF_GUARD_OUT(append_label(&m, LABEL_KEY_DELETE));
    CF_GUARD_OUT(append_u8_str(&m, key_id));
    CF_GUARD_OUT(cf_buf_append_u64be(&m, (uint64_t)expires_at));
    CF_GUARD_OUT(cf_hmac_sha256(cf_slice_make(k, CF_INFERENCE_KEY_LEN), cf_buf_slice(&m), proof));
out:
    cf_buf_free(&m);
    return result;
}

CF_RESULT cf_key_delete_build(const uint8_t k[CF_INFERENCE_KEY_LEN], const char *key_id, int64_t expires_at,
                              cf_buf *out)
{
    uint8_t proof[32];
    CF_GUARD(cf_key_delete_proof(k, key_id, expires_at, proof));
    json_t *o = json_pack("{s:s,s:I}", "key_id", key_id, "expires_at", (json_int_t)expires_at);
    CF_ENSURE_MSG(o != NULL, CF_E_NO_MEMORY, "json_pack failed");
    if (cf_is_error(set_b64(o, "proof", cf_slice_make(proof, sizeof proof)))) {
        json_decref(o);
        return CF_ERROR;
    }
    return dump_json(o, out);
}

CF_RESULT cf_key_delete_parse(cf_slice body, cf_key_delete_request *out)
{
    static const char *const keys[] = {"key_id", "expires_at", "proof", NULL};
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_result result = CF_OK;
    json_t *o = NULL;
    CF_GUARD(parse_object(body, &o));
    CF_GUARD_OUT(only_keys(o, keys));
    CF_GUARD_OUT(get_key_id(o, "key_id", out->key_id));
    CF_GUARD_OUT(get_time(o, "expires_at", &out->expires_at));
    CF_GUARD_OUT(get_b64_fixed(o, "proof", out->proof, sizeof out->proof));
out:
    json_decref(o);
    return result;
}

/* ---- worker join ----------------------------------------------------------------------- */

CF_RESULT cf_worker_challenge_build(const uint8_t nonce[CF_AS_NONCE_LEN], int64_t expires_at, cf_buf *out)
{
    json_t *o = json_pack("{s:I}", "expires_at", (json_int_t)expires_at);
    CF_ENSURE_MSG(o != NULL, CF_E_NO_MEMORY, "json_pack failed");
    if (cf_is_error(set_b64(o, "nonce", cf_slice_make(nonce, CF_AS_NONCE_LEN)))) {
        json_decref(o);
        return CF_ERROR;
    }
    return dump_json(o, out);
}

CF_RESULT cf_worker_challenge_parse(cf_slice body, uint8_t nonce[CF_AS_NONCE_LEN], int64_t *expires_at)
{
    static const char *const keys[] = {"nonce", "expires_at", NULL};
    cf_result result = CF_OK;
    json_t *o = NULL;
    CF_GUARD(parse_object(body, &o));
    CF_GUARD_OUT(only_keys(o, keys));
    CF_GUARD_OUT(get_b64_fixed(o, "nonce", nonce, CF_AS_NONCE_LEN));
    CF_GUARD_OUT(get_time(o, "expires_at", expires_at));
out:
    json_decref(o);
    return result;
}

void cf_worker_attest_request_free(cf_worker_attest_request *r)
{
    if (r != NULL) {
        cf_buf_free(&r->evidence);
        cf_buf_free(&r->collateral);
        memset(r, 0, sizeof *r);
    }
}

CF_RESULT cf_worker_attest_request_build(cf_platform platform, const uint8_t nonce[CF_AS_NONCE_LEN], cf_slice hpke_pk,
                                         cf_slice evidence, cf_slice collateral, cf_buf *out)
{
    cf_result result = CF_OK;
    json_t *o = json_pack("{s:s}", "platform", cf_platform_name(platform));
    CF_ENSURE_MSG(o != NULL, CF_E_NO_MEMORY, "json_pack failed");
    CF_GUARD_OUT(set_b64(o, "nonce", cf_slice_make(nonce, CF_AS_NONCE_LEN)));
    CF_GUARD_OUT(set_b64(o, "hpke_public_key", hpke_pk));
    CF_GUARD_OUT(set_b64(o, "evidence", evidence));
    CF_GUARD_OUT(set_b64(o, "collateral", collateral));
    result = dump_json(o, out);
    o = NULL;
out:
    json_decref(o);
    return result;
}

CF_RESULT cf_worker_attest_request_parse(cf_slice body, cf_worker_attest_request *out)
{
    static const char *const keys[] = {"platform", "nonce", "hpke_public_key", "evidence", "collateral", NULL};
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_result result = CF_OK;
    json_t *o = NULL;
    cf_buf pk;
    cf_buf_init(&pk, 0);
    CF_GUARD(parse_object(body, &o));
    CF_GUARD_OUT(only_keys(o, keys));
    const json_t *p = json_object_get(o, "platform");
    CF_ENSURE_MSG_OUT(json_is_string(p), CF_E_MALFORMED, "platform: expected a string");
    CF_GUARD_OUT(cf_platform_parse(json_string_value(p), &out->platform));
    CF_GUARD_OUT(get_b64_fixed(o, "nonce", out->nonce, CF_AS_NONCE_LEN));
    CF_GUARD_OUT(get_b64_buf(o, "hpke_public_key", CF_HPKE_MAX_PUBLIC_KEY_LEN, &pk));
    const cf_hpke_kem *kem = cf_hpke_kem_by_id(CF_HPKE_SUITE_DEFAULT.kem_id);
    CF_ENSURE_MSG_OUT(kem != NULL && pk.len == cf_hpke_kem_public_key_len(kem), CF_E_MALFORMED,
                      "hpke_public_key: wrong length for the suite");
    memcpy(out->hpke_public_key, pk.data, pk.len);
    out->hpke_public_key_len = pk.len;
    CF_GUARD_OUT(get_b64_buf(o, "evidence", CF_AS_EVIDENCE_MAX, &out->evidence));
    CF_GUARD_OUT(get_b64_buf(o, "collateral", CF_AS_COLLATERAL_MAX, &out->collateral));
out:
    json_decref(o);
    cf_buf_free(&pk);
    if (cf_is_error(result)) {
        cf_worker_attest_request_free(out);
    }
    return result;
}

/* ---- worker tokens ------------------------------------------------------------------------ */

static CF_RESULT token_body(const cf_worker_token *t, cf_buf *b)
{
    CF_GUARD(cf_buf_append_u8(b, TOKEN_VERSION));
    CF_GUARD(cf_buf_append_u64be(b, (uint64_t)t->issued_at));
    CF_GUARD(cf_buf_append_u64be(b, (uint64_t)t->expires_at));
    CF_GUARD(cf_buf_append(b, t->worker_id, CF_WORKER_ID_LEN));
    CF_GUARD(cf_buf_append_u8(b, t->policy_index));
    return append_u16_slice(b, cf_slice_make(t->hpke_public_key, t->hpke_public_key_len));
}

CF_RESULT cf_worker_token_issue(EVP_PKEY *sign_key, const cf_worker_token *t, cf_buf *out)
{
    CF_ENSURE_REF(t);
    cf_result result = CF_OK;
    cf_buf body, msg;
    cf_buf_init(&body, TOKEN_MAX_LEN);
    cf_buf_init(&msg, TOKEN_MAX_LEN);
    uint8_t sig[CF_ED25519_SIG_LEN];
    CF_GUARD_OUT(token_body(t, &body));
    CF_GUARD_OUT(append_label(&msg, LABEL_WORKER_TOKEN));
    CF_GUARD_OUT(cf_buf_append_slice(&msg, cf_buf_slice(&body)));
    CF_GUARD_OUT(cf_ed25519_sign(sign_key, cf_buf_slice(&msg), sig));
    CF_GUARD_OUT(cf_buf_append(&body, sig, sizeof sig));
    CF_GUARD_OUT(cf_b64url_encode(cf_buf_slice(&body), out));
out:
    cf_buf_free(&body);
    cf_buf_free(&msg);
    return result;
}

CF_RESULT cf_worker_token_verify(EVP_PKEY *sign_pub, cf_slice token, int64_t now, cf_worker_token *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_result result = CF_OK;
    cf_buf raw, msg;
    cf_buf_init(&raw, TOKEN_MAX_LEN);
    cf_buf_init(&msg, TOKEN_MAX_LEN + 64);
    CF_ENSURE_MSG_OUT(token.len <= cf_b64url_encoded_len(TOKEN_MAX_LEN) && cf_is_ok(cf_b64url_decode(token, &raw)),
                      CF_E_UNAUTHORIZED, "worker token: not base64url");
    CF_ENSURE_MSG_OUT(raw.len > CF_ED25519_SIG_LEN, CF_E_UNAUTHORIZED, "worker token: too short");
    cf_slice body = cf_slice_make(raw.data, raw.len - CF_ED25519_SIG_LEN);
    cf_slice sig = cf_slice_make(raw.data + body.len, CF_ED25519_SIG_LEN);
    CF_GUARD_OUT(append_label(&msg, LABEL_WORKER_TOKEN));
    CF_GUARD_OUT(cf_buf_append_slice(&msg, body));
    if (cf_is_error(cf_ed25519_verify(sign_pub, cf_buf_slice(&msg), sig))) {
        CF_BAIL_OUT(CF_E_UNAUTHORIZED, "worker token: not signed by this AS");
    }
    cf_reader r = cf_reader_make(body);
    uint8_t version;
    uint64_t issued, expires;
    uint16_t pk_len;
    if (cf_is_error(cf_reader_u8(&r, &version)) || version != TOKEN_VERSION ||
        cf_is_error(cf_reader_u64be(&r, &issued)) || cf_is_error(cf_reader_u64be(&r, &expires)) ||
        cf_is_error(cf_reader_copy(&r, out->worker_id, CF_WORKER_ID_LEN)) ||
        cf_is_error(cf_reader_u8(&r, &out->policy_index)) || cf_is_error(cf_reader_u16be(&r, &pk_len)) ||
        pk_len > CF_HPKE_MAX_PUBLIC_KEY_LEN || cf_is_error(cf_reader_copy(&r, out->hpke_public_key, pk_len)) ||
        !cf_reader_done(&r) || issued > INT64_MAX || expires > INT64_MAX) {
        CF_BAIL_OUT(CF_E_UNAUTHORIZED, "worker token: malformed");
    }
    out->hpke_public_key_len = pk_len;
    out->issued_at = (int64_t)issued;
    out->expires_at = (int64_t)expires;
    CF_ENSURE_MSG_OUT(now < out->expires_at, CF_E_EXPIRED, "worker token expired: attest again");
out:
    cf_buf_free(&raw);
    cf_buf_free(&msg);
    if (cf_is_error(result)) {
        memset(out, 0, sizeof *out);
    }
    return result;
}

CF_RESULT cf_worker_attest_response_build(cf_slice token, const cf_worker_token *t, const char *policy_name,
                                          const json_t *models, cf_buf *out)
{
    cf_result result = CF_OK;
    /* A copy: the manifest's objects are never touched (not even refcounts). */
    json_t *o = json_pack("{s:s%,s:I,s:s,s:o}", "token", (const char *)token.ptr, token.len, "expires_at",
                          (json_int_t)t->expires_at, "policy", policy_name, "models", json_deep_copy(models));
    CF_ENSURE_MSG(o != NULL, CF_E_NO_MEMORY, "json_pack failed");
    CF_GUARD_OUT(set_b64(o, "worker_id", cf_slice_make(t->worker_id, CF_WORKER_ID_LEN)));
    result = dump_json(o, out);
    o = NULL;
out:
    json_decref(o);
    return result;
}

void cf_worker_grant_free(cf_worker_grant *g)
{
    if (g != NULL) {
        if (g->token != NULL) {
            cf_free_secret(g->token, strlen(g->token));
        }
        memset(g, 0, sizeof *g);
    }
}

CF_RESULT cf_worker_attest_response_parse(cf_slice body, cf_worker_grant *out)
{
    static const char *const keys[] = {"token", "expires_at", "policy", "models", "worker_id", NULL};
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_result result = CF_OK;
    json_t *o = NULL;
    cf_slice token, policy;
    CF_GUARD(parse_object(body, &o));
    CF_GUARD_OUT(only_keys(o, keys));
    CF_GUARD_OUT(get_str(o, "token", cf_b64url_encoded_len(TOKEN_MAX_LEN), &token));
    CF_GUARD_OUT(get_time(o, "expires_at", &out->expires_at));
    CF_GUARD_OUT(get_str(o, "policy", CF_MANIFEST_NAME_MAX, &policy));
    CF_GUARD_OUT(get_b64_fixed(o, "worker_id", out->worker_id, CF_WORKER_ID_LEN));
    const json_t *models = json_object_get(o, "models");
    CF_ENSURE_MSG_OUT(json_is_array(models) && json_array_size(models) <= CF_MANIFEST_MAX_MODELS, CF_E_MALFORMED,
                      "models: expected an array");
    for (size_t i = 0; i < json_array_size(models); i++) {
        const json_t *m = json_array_get(models, i);
        CF_ENSURE_MSG_OUT(json_is_string(m) && model_name_ok(json_string_value(m), json_string_length(m)),
                          CF_E_MALFORMED, "models: expected model names");
    }
    out->model_count = json_array_size(models);
    memcpy(out->policy, policy.ptr, policy.len);
    out->policy[policy.len] = '\0';
    out->token = malloc(token.len + 1);
    CF_ENSURE_MSG_OUT(out->token != NULL, CF_E_NO_MEMORY, "malloc failed");
    memcpy(out->token, token.ptr, token.len);
    out->token[token.len] = '\0';
out:
    json_decref(o);
    if (cf_is_error(result)) {
        cf_worker_grant_free(out);
    }
    return result;
}

/* ---- key stream events ------------------------------------------------------------------------ */

static const char *const event_names[] = {
    [CF_KEY_EVENT_PUT] = "put",
    [CF_KEY_EVENT_DELETE] = "delete",
    [CF_KEY_EVENT_READY] = "ready",
    [CF_KEY_EVENT_TOKEN_EXPIRING] = "token_expiring",
    [CF_KEY_EVENT_KEY] = "key",
};

const char *cf_key_event_name(cf_key_event_type type)
{
    if ((int)type < CF_KEY_EVENT_PUT || type > CF_KEY_EVENT_KEY) {
        return "unknown";
    }
    return event_names[type];
}

void cf_key_event_wipe(cf_key_event *ev)
{
    if (ev != NULL) {
        cf_wipe(ev, sizeof *ev);
    }
}

static bool carries_key(cf_key_event_type t) { return t == CF_KEY_EVENT_PUT || t == CF_KEY_EVENT_KEY; }

static CF_RESULT wrap_aad(const uint8_t worker_id[CF_WORKER_ID_LEN], const cf_key_event *ev, cf_buf *aad)
{
    CF_GUARD(append_label(aad, LABEL_KEY_WRAP));
    CF_GUARD(cf_buf_append(aad, worker_id, CF_WORKER_ID_LEN));
    CF_GUARD(append_u8_str(aad, ev->key_id));
    return cf_buf_append_u64be(aad, (uint64_t)ev->expires_at);
}

/* The signed encoding of an event (docs/protocol.md). */
static CF_RESULT event_message(const uint8_t worker_id[CF_WORKER_ID_LEN],
                               const uint8_t stream_nonce[CF_STREAM_NONCE_LEN], const cf_key_event *ev, cf_slice enc,
                               cf_slice ct, cf_buf *m)
{
    CF_GUARD(append_label(m, LABEL_KEY_EVENT));
    CF_GUARD(cf_buf_append(m, worker_id, CF_WORKER_ID_LEN));
    CF_GUARD(cf_buf_append(m, stream_nonce, CF_STREAM_NONCE_LEN));
    CF_GUARD(cf_buf_append_u64be(m, ev->seq));
    CF_GUARD(cf_buf_append_u8(m, (uint8_t)ev->type));
    switch (ev->type) {
    case CF_KEY_EVENT_PUT:
    case CF_KEY_EVENT_KEY:
        CF_GUARD(append_u8_str(m, ev->key_id));
        CF_GUARD(cf_buf_append_u64be(m, (uint64_t)ev->expires_at));
        CF_GUARD(append_scope(m, &ev->scope));
        CF_GUARD(append_u16_slice(m, enc));
        return append_u16_slice(m, ct);
    case CF_KEY_EVENT_DELETE:
        CF_GUARD(append_u8_str(m, ev->key_id));
        return append_u8_str(m, ev->reason);
    case CF_KEY_EVENT_READY: return cf_buf_append_u64be(m, ev->count);
    case CF_KEY_EVENT_TOKEN_EXPIRING: return cf_buf_append_u64be(m, (uint64_t)ev->expires_at);
    }
    CF_BAIL_MSG(CF_E_INVALID_ARGUMENT, "unknown event type");
}

CF_RESULT cf_key_event_build(EVP_PKEY *sign_key, const cf_worker_token *worker,
                             const uint8_t stream_nonce[CF_STREAM_NONCE_LEN], const cf_key_event *ev, const uint8_t *k,
                             cf_buf *out)
{
    CF_ENSURE_REF(worker);
    CF_ENSURE_REF(stream_nonce);
    CF_ENSURE_REF(ev);
    CF_ENSURE_MSG(!carries_key(ev->type) || k != NULL, CF_E_INVALID_ARGUMENT, "put needs the key");
    cf_result result = CF_OK;
    cf_buf enc, ct, aad, m;
    cf_buf_init(&enc, CF_HPKE_MAX_ENC_LEN);
    cf_buf_init(&ct, 256);
    cf_buf_init(&aad, 256);
    cf_buf_init(&m, 8192);
    uint8_t sig[CF_ED25519_SIG_LEN];
    json_t *o = json_pack("{s:I}", "seq", (json_int_t)ev->seq);
    CF_ENSURE_MSG_OUT(o != NULL, CF_E_NO_MEMORY, "json_pack failed");
    if (carries_key(ev->type)) {
        CF_GUARD_OUT(wrap_aad(worker->worker_id, ev, &aad));
        CF_GUARD_OUT(cf_hpke_seal_base(CF_HPKE_SUITE_DEFAULT,
                                       cf_slice_make(worker->hpke_public_key, worker->hpke_public_key_len),
                                       cf_slice_cstr(LABEL_KEY_WRAP), cf_buf_slice(&aad),
                                       cf_slice_make(k, CF_INFERENCE_KEY_LEN), &enc, &ct));
        CF_ENSURE_MSG_OUT(json_object_set_new(o, "key_id", json_string(ev->key_id)) == 0 &&
                              json_object_set_new(o, "expires_at", json_integer(ev->expires_at)) == 0 &&
                              json_object_set_new(o, "scope", cf_key_scope_to_json(&ev->scope)) == 0,
                          CF_E_NO_MEMORY, "json_object_set failed");
        CF_GUARD_OUT(set_b64(o, "enc", cf_buf_slice(&enc)));
        CF_GUARD_OUT(set_b64(o, "ct", cf_buf_slice(&ct)));
    } else if (ev->type == CF_KEY_EVENT_DELETE) {
        CF_ENSURE_MSG_OUT(json_object_set_new(o, "key_id", json_string(ev->key_id)) == 0 &&
                              json_object_set_new(o, "reason", json_string(ev->reason)) == 0,
                          CF_E_NO_MEMORY, "json_object_set failed");
    } else if (ev->type == CF_KEY_EVENT_READY) {
        CF_ENSURE_MSG_OUT(json_object_set_new(o, "count", json_integer((json_int_t)ev->count)) == 0, CF_E_NO_MEMORY,
                          "json_object_set failed");
    } else if (ev->type == CF_KEY_EVENT_TOKEN_EXPIRING) {
        CF_ENSURE_MSG_OUT(json_object_set_new(o, "expires_at", json_integer(ev->expires_at)) == 0, CF_E_NO_MEMORY,
                          "json_object_set failed");
    } else {
        CF_BAIL_OUT(CF_E_INVALID_ARGUMENT, "unknown event type");
    }
    CF_GUARD_OUT(event_message(worker->worker_id, stream_nonce, ev, cf_buf_slice(&enc), cf_buf_slice(&ct), &m));
    CF_GUARD_OUT(cf_ed25519_sign(sign_key, cf_buf_slice(&m), sig));
    CF_GUARD_OUT(set_b64(o, "signature", cf_slice_make(sig, sizeof sig)));
    result = dump_json(o, out);
    o = NULL;
out:
    json_decref(o);
    cf_buf_free(&enc);
    cf_buf_free(&ct);
    cf_buf_free(&aad);
    cf_buf_free(&m);
    return result;
}

CF_RESULT cf_key_event_open(EVP_PKEY *as_sign_pub, const uint8_t worker_id[CF_WORKER_ID_LEN],
                            const uint8_t stream_nonce[CF_STREAM_NONCE_LEN], const cf_hpke_keypair *worker_kp,
                            const char *name, cf_slice data, uint64_t expected_seq, cf_key_event *out)
{
    static const char *const put_keys[] = {"seq", "key_id", "expires_at", "scope", "enc", "ct", "signature", NULL};
    static const char *const delete_keys[] = {"seq", "key_id", "reason", "signature", NULL};
    static const char *const ready_keys[] = {"seq", "count", "signature", NULL};
    static const char *const expiring_keys[] = {"seq", "expires_at", "signature", NULL};
    CF_ENSURE_REF(name);
    CF_ENSURE_REF(out);
    CF_ENSURE_REF(worker_id);
    CF_ENSURE_REF(stream_nonce);
    memset(out, 0, sizeof *out);
    cf_result result = CF_OK;
    json_t *o = NULL;
    cf_buf enc, ct, aad, m, pt;
    cf_buf_init(&enc, 0);
    cf_buf_init(&ct, 0);
    cf_buf_init(&aad, 256);
    cf_buf_init(&m, 8192);
    cf_buf_init(&pt, CF_INFERENCE_KEY_LEN);
    uint8_t sig[CF_ED25519_SIG_LEN];
    char derived[CF_KEY_ID_LEN + 1];

    for (int t = CF_KEY_EVENT_PUT; t <= CF_KEY_EVENT_KEY; t++) {
        if (strcmp(name, event_names[t]) == 0) {
            out->type = (cf_key_event_type)t;
        }
    }
    CF_ENSURE_MSG_OUT(out->type != 0, CF_E_MALFORMED, "unknown key stream event");
    CF_GUARD_OUT(parse_object(data, &o));
    CF_GUARD_OUT(get_u64(o, "seq", &out->seq));
    switch (out->type) {
    case CF_KEY_EVENT_PUT:
    case CF_KEY_EVENT_KEY:
        CF_GUARD_OUT(only_keys(o, put_keys));
        CF_GUARD_OUT(get_key_id(o, "key_id", out->key_id));
        CF_GUARD_OUT(get_time(o, "expires_at", &out->expires_at));
        CF_GUARD_OUT(cf_key_scope_from_json(json_object_get(o, "scope"), &out->scope));
        CF_GUARD_OUT(get_b64_buf(o, "enc", CF_HPKE_MAX_ENC_LEN, &enc));
        CF_GUARD_OUT(get_b64_buf(o, "ct", CF_INFERENCE_KEY_LEN + CF_AEAD_TAG_LEN, &ct));
        break;
    case CF_KEY_EVENT_DELETE: {
        CF_GUARD_OUT(only_keys(o, delete_keys));
        CF_GUARD_OUT(get_key_id(o, "key_id", out->key_id));
        cf_slice reason;
        CF_GUARD_OUT(get_str(o, "reason", sizeof out->reason - 1, &reason));
        memcpy(out->reason, reason.ptr, reason.len);
        break;
    }
    case CF_KEY_EVENT_READY:
        CF_GUARD_OUT(only_keys(o, ready_keys));
        CF_GUARD_OUT(get_u64(o, "count", &out->count));
        break;
    case CF_KEY_EVENT_TOKEN_EXPIRING:
        CF_GUARD_OUT(only_keys(o, expiring_keys));
        CF_GUARD_OUT(get_time(o, "expires_at", &out->expires_at));
        break;
    }
    CF_GUARD_OUT(get_b64_fixed(o, "signature", sig, sizeof sig));
    CF_GUARD_OUT(event_message(worker_id, stream_nonce, out, cf_buf_slice(&enc), cf_buf_slice(&ct), &m));
    if (cf_is_error(cf_ed25519_verify(as_sign_pub, cf_buf_slice(&m), cf_slice_make(sig, sizeof sig)))) {
        CF_BAIL_OUT(CF_E_BAD_SIGNATURE,
                    "key stream event is not signed by the attested AS for this worker and stream nonce");
    }
    /* Signed sequence numbers: a dropped, replayed or reordered event fails. */
    if (out->seq != expected_seq) {
        cf_error_setf(CF_E_REPLAY, __FILE__, __LINE__, "key stream event seq %llu, expected %llu",
                      (unsigned long long)out->seq, (unsigned long long)expected_seq);
        result = CF_ERROR;
        goto out;
    }
    if (carries_key(out->type)) {
        CF_ENSURE_MSG_OUT(worker_kp != NULL, CF_E_INVALID_ARGUMENT, "worker key pair needed to open a key");
        CF_GUARD_OUT(wrap_aad(worker_id, out, &aad));
        if (cf_is_error(cf_hpke_open_base(CF_HPKE_SUITE_DEFAULT, cf_buf_slice(&enc), worker_kp,
                                          cf_slice_cstr(LABEL_KEY_WRAP), cf_buf_slice(&aad), cf_buf_slice(&ct),
                                          &pt))) {
            CF_BAIL_OUT(CF_E_AUTH_FAILED, "wrapped key does not open with this worker's key");
        }
        CF_ENSURE_MSG_OUT(pt.len == CF_INFERENCE_KEY_LEN, CF_E_MALFORMED, "wrapped key is not 32 bytes");
        memcpy(out->k, pt.data, CF_INFERENCE_KEY_LEN);
        CF_GUARD_OUT(cf_key_id_derive(out->k, derived));
        CF_ENSURE_MSG_OUT(cf_ct_equal(derived, out->key_id, CF_KEY_ID_LEN), CF_E_AUTH_FAILED,
                          "key_id is not derived from the wrapped key");
    }
out:
    json_decref(o);
    cf_buf_free(&enc);
    cf_buf_free(&ct);
    cf_buf_free(&aad);
    cf_buf_free(&m);
    cf_buf_free(&pt);
    if (cf_is_error(result)) {
        cf_key_event_wipe(out);
    }
    return result;
}

/* ---- fetch ------------------------------------------------------------------------------------ */

CF_RESULT cf_key_fetch_build(const char *key_id, const uint8_t nonce[CF_STREAM_NONCE_LEN], cf_buf *out)
{
    CF_ENSURE_REF(key_id);
    CF_ENSURE_REF(nonce);
    json_t *o = json_pack("{s:s}", "key_id", key_id);
    CF_ENSURE_MSG(o != NULL, CF_E_NO_MEMORY, "json_pack failed");
    if (cf_is_error(set_b64(o, "nonce", cf_slice_make(nonce, CF_STREAM_NONCE_LEN)))) {
        json_decref(o);
        return CF_ERROR;
    }
    return dump_json(o, out);
}

CF_RESULT cf_key_fetch_parse(cf_slice body, char key_id[CF_KEY_ID_LEN + 1], uint8_t nonce[CF_STREAM_NONCE_LEN])
{
    static const char *const keys[] = {"key_id", "nonce", NULL};
    cf_result result = CF_OK;
    json_t *o = NULL;
    CF_GUARD(parse_object(body, &o));
    CF_GUARD_OUT(only_keys(o, keys));
    CF_GUARD_OUT(get_key_id(o, "key_id", key_id));
    CF_GUARD_OUT(get_b64_fixed(o, "nonce", nonce, CF_STREAM_NONCE_LEN));
out:
    json_decref(o);
    return result;
}

CF_RESULT cf_key_stream_query_build(const uint8_t nonce[CF_STREAM_NONCE_LEN], char out[CF_STREAM_QUERY_MAX])
{
    CF_ENSURE_REF(nonce);
    char b64[CF_STREAM_QUERY_MAX];
    CF_GUARD(cf_b64url_encode_str(cf_slice_make(nonce, CF_STREAM_NONCE_LEN), b64, sizeof b64));
    int n = snprintf(out, CF_STREAM_QUERY_MAX, "stream=%s", b64);
    CF_ENSURE(n > 0 && n < CF_STREAM_QUERY_MAX, CF_E_INTERNAL);
    return CF_OK;
}

CF_RESULT cf_key_stream_query_parse(const char *query, uint8_t nonce[CF_STREAM_NONCE_LEN])
{
    CF_ENSURE_MSG(query != NULL && strncmp(query, "stream=", 7) == 0, CF_E_MALFORMED,
                  "key stream needs ?stream=<16-byte nonce, base64url>");
    cf_slice v = cf_slice_cstr(query + 7);
    size_t len = 0;
    CF_ENSURE_MSG(v.len == cf_b64url_encoded_len(CF_STREAM_NONCE_LEN) &&
                      cf_is_ok(cf_b64url_decode_fixed(v, nonce, CF_STREAM_NONCE_LEN, &len)) &&
                      len == CF_STREAM_NONCE_LEN,
                  CF_E_MALFORMED, "stream: expected a 16-byte nonce in base64url");
    return CF_OK;
}
