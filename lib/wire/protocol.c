/* protocol.c — field encryption codec of wire protocol v1 (see protocol.h and
 * docs/protocol.md, which this file follows section by section). */
#include "confide/protocol.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/json.h"

/* ---- Endpoints: the plain-field tables (DESIGN §4.8) as data -------------- */

/* Each list sorted by name; the plain digest walks members in sorted order
 * anyway, so the order here is only for readers. */
static const char *const completions_request_plain[] = {
    "max_completion_tokens", "max_tokens", "model", "n", "stream", "stream_options", NULL,
};
static const char *const embeddings_request_plain[] = {"model", NULL};
static const char *const response_plain[] = {"id", "usage", NULL};
static const char *const nothing_plain[] = {NULL};

static const cf_proto_endpoint ep_chat = {
    "chat.completions", "POST", "/v1/chat/completions", true, completions_request_plain, response_plain,
};
static const cf_proto_endpoint ep_completions = {
    "completions", "POST", "/v1/completions", true, completions_request_plain, response_plain,
};
static const cf_proto_endpoint ep_embeddings = {
    "embeddings", "POST", "/v1/embeddings", true, embeddings_request_plain, response_plain,
};
static const cf_proto_endpoint ep_models = {
    "models", "GET", "/v1/models", false, nothing_plain, nothing_plain,
};

const cf_proto_endpoint *const cf_proto_endpoints[] = {&ep_chat, &ep_completions, &ep_embeddings, &ep_models, NULL};

CF_RESULT cf_proto_endpoint_by_name(cf_slice name, const cf_proto_endpoint **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    for (size_t i = 0; cf_proto_endpoints[i] != NULL; i++) {
        if (cf_slice_eq_cstr(name, cf_proto_endpoints[i]->name)) {
            *out = cf_proto_endpoints[i];
            return CF_OK;
        }
    }
    CF_BAIL_MSG(CF_E_UNKNOWN_ENDPOINT, "no v1 endpoint has this name");
}

CF_RESULT cf_proto_endpoint_by_path(cf_slice method, cf_slice path, const cf_proto_endpoint **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    /* Drop the query string and one trailing slash. */
    for (size_t i = 0; i < path.len; i++) {
        if (path.ptr[i] == '?' || path.ptr[i] == '#') {
            path.len = i;
            break;
        }
    }
    if (path.len > 1 && path.ptr[path.len - 1] == '/') {
        path.len--;
    }
    for (size_t i = 0; cf_proto_endpoints[i] != NULL; i++) {
        const cf_proto_endpoint *ep = cf_proto_endpoints[i];
        size_t n = strlen(ep->path);
        if (path.len < n || memcmp(path.ptr + path.len - n, ep->path, n) != 0) {
            continue;
        }
        /* A prefix must end at a segment boundary (ep->path starts with '/'). */
        if (!cf_slice_eq_cstr(method, ep->method)) {
            continue;
        }
        *out = ep;
        return CF_OK;
    }
    CF_BAIL_MSG(CF_E_UNKNOWN_ENDPOINT, "no v1 endpoint for this method and path");
}

static bool name_in_list(const char *const *list, cf_slice name)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (cf_slice_eq_cstr(name, list[i])) {
            return true;
        }
    }
    return false;
}

/* ---- Key schedule ---------------------------------------------------------- */

#define KEY_ID_LABEL "confide/v1 key-id"
#define REQUEST_LABEL "confide/v1 request"
#define RESPONSE_LABEL "confide/v1 response"
#define AAD_LABEL "confide/v1"
#define DIGEST_LABEL "confide/v1 plain"
#define SYNTHETIC_NAME "confide"
#define DONE_PAYLOAD "[DONE]"

enum { DIR_REQUEST = 1, DIR_RESPONSE = 2 };
enum { FRAME_BODY = 0, FRAME_SSE = 1 };

static CF_RESULT key_id_raw(const uint8_t secret[CF_PROTO_SECRET_LEN], uint8_t out[CF_PROTO_KEY_ID_RAW_LEN])
{
    cf_result result = CF_OK;
    uint8_t input[sizeof KEY_ID_LABEL - 1 + CF_PROTO_SECRET_LEN];
    uint8_t digest[CF_SHA256_LEN];
    memcpy(input, KEY_ID_LABEL, sizeof KEY_ID_LABEL - 1);
    memcpy(input + sizeof KEY_ID_LABEL - 1, secret, CF_PROTO_SECRET_LEN);
    CF_GUARD_OUT(cf_sha256(cf_slice_make(input, sizeof input), digest));
    memcpy(out, digest, CF_PROTO_KEY_ID_RAW_LEN);
out:
    cf_wipe(input, sizeof input);
    cf_wipe(digest, sizeof digest);
    return result;
}

CF_RESULT cf_proto_key_id(const uint8_t secret[CF_PROTO_SECRET_LEN], char key_id[CF_PROTO_KEY_ID_LEN + 1])
{
    CF_ENSURE_REF(secret);
    CF_ENSURE_REF(key_id);
    uint8_t raw[CF_PROTO_KEY_ID_RAW_LEN];
    CF_GUARD(key_id_raw(secret, raw));
    CF_GUARD(cf_b64url_encode_str(cf_slice_make(raw, sizeof raw), key_id, CF_PROTO_KEY_ID_LEN + 1));
    return CF_OK;
}

/* PRK = HKDF-Extract(S, K); k_req / k_resp = HKDF-Expand(PRK, label, 32). */
static CF_RESULT derive_keys(const uint8_t secret[CF_PROTO_SECRET_LEN], const uint8_t salt[CF_PROTO_SALT_LEN],
                             uint8_t k_req[32], uint8_t k_resp[32])
{
    cf_result result = CF_OK;
    uint8_t prk[CF_SHA256_LEN];
    CF_GUARD_OUT(cf_hkdf_sha256_extract(cf_slice_make(salt, CF_PROTO_SALT_LEN),
                                        cf_slice_make(secret, CF_PROTO_SECRET_LEN), prk));
    CF_GUARD_OUT(cf_hkdf_sha256_expand(cf_slice_make(prk, sizeof prk), cf_slice_cstr(REQUEST_LABEL), k_req, 32));
    CF_GUARD_OUT(cf_hkdf_sha256_expand(cf_slice_make(prk, sizeof prk), cf_slice_cstr(RESPONSE_LABEL), k_resp, 32));
out:
    cf_wipe(prk, sizeof prk);
    if (cf_is_error(result)) {
        cf_wipe(k_req, 32);
        cf_wipe(k_resp, 32);
    }
    return result;
}

static uint64_t load_u64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void store_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static int64_t system_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Sessions -------------------------------------------------------------- */

typedef enum session_state {
    ST_READY,       /* request done, no reply handled yet */
    ST_BODY_DONE,   /* non-streamed reply handled */
    ST_STREAM,      /* stream begun */
    ST_STREAM_DONE, /* stream closed (final and/or [DONE], or error event) */
    ST_DEAD,        /* a failure poisoned the session */
} session_state;

struct cf_proto_session {
    const cf_proto_endpoint *ep;
    char key_id[CF_PROTO_KEY_ID_LEN + 1];
    uint8_t key_id_raw[CF_PROTO_KEY_ID_RAW_LEN];
    uint8_t salt[CF_PROTO_SALT_LEN];
    cf_aead resp; /* keyed with k_resp */
    uint64_t resp_seq;
    uint32_t pad_bucket;
    size_t max_body;
    session_state state;
    cf_error_code dead_code; /* why the session died (ST_DEAD) */
    int status;
    bool final_seen; /* stream: the final event was emitted / authenticated */
    bool done_seen;  /* stream: [DONE] passed */
    bool done_expected; /* stream: the final event announced [DONE] */
    bool seal_side;  /* true on the worker (seals replies) */
    bool parser_used;
    bool event_used;
    cf_sse_parser parser;
    cf_buf *feed_out; /* target of the parser callback during a feed */
    cf_buf payload;   /* one event's payload (wiped between events) */
};

static CF_RESULT session_new(const cf_proto_endpoint *ep, const uint8_t kid_raw[CF_PROTO_KEY_ID_RAW_LEN],
                             const uint8_t salt[CF_PROTO_SALT_LEN], const uint8_t k_resp[32], uint32_t pad_bucket,
                             size_t max_body, bool seal_side, cf_proto_session **out)
{
    cf_proto_session *s = calloc(1, sizeof *s);
    CF_ENSURE(s != NULL, CF_E_NO_MEMORY);
    s->ep = ep;
    memcpy(s->key_id_raw, kid_raw, CF_PROTO_KEY_ID_RAW_LEN);
    memcpy(s->salt, salt, CF_PROTO_SALT_LEN);
    s->pad_bucket = pad_bucket;
    s->max_body = max_body ? max_body : CF_PROTO_DEFAULT_MAX_BODY;
    s->seal_side = seal_side;
    s->state = ST_READY;
    cf_buf_init(&s->payload, s->max_body);
    if (cf_is_error(cf_b64url_encode_str(cf_slice_make(kid_raw, CF_PROTO_KEY_ID_RAW_LEN), s->key_id,
                                         sizeof s->key_id)) ||
        cf_is_error(cf_aead_init(&s->resp, CF_AEAD_AES_256_GCM, cf_slice_make(k_resp, 32)))) {
        cf_buf_free(&s->payload);
        free(s);
        return CF_ERROR;
    }
    *out = s;
    return CF_OK;
}

void cf_proto_session_free(cf_proto_session *s)
{
    if (s == NULL) {
        return;
    }
    cf_aead_free(&s->resp);
    if (s->parser_used) {
        cf_sse_parser_free(&s->parser);
    }
    cf_buf_free(&s->payload);
    cf_wipe(s, sizeof *s);
    free(s);
}

const cf_proto_endpoint *cf_proto_session_endpoint(const cf_proto_session *s) { return s ? s->ep : NULL; }
const char *cf_proto_session_key_id(const cf_proto_session *s) { return s ? s->key_id : NULL; }
int64_t cf_proto_session_salt_ms(const cf_proto_session *s) { return s ? (int64_t)load_u64be(s->salt) : 0; }

/* A client session dies on its first failure; remember why. */
static void kill_session(cf_proto_session *s)
{
    s->state = ST_DEAD;
    s->dead_code = cf_error_code_last();
}

/* ---- Messages: parsing ------------------------------------------------------ */

/* Where a message belongs: everything the plain digest binds besides the
 * plain members themselves. */
typedef struct msg_frame {
    uint8_t direction;
    const cf_proto_endpoint *ep;
    uint16_t status;
    uint8_t frame;
    cf_slice event_type;
} msg_frame;

/* Which value carries the final flag. */
typedef enum final_mode {
    FINAL_LAST,   /* request / non-streamed response: the last value */
    FINAL_NONE,   /* a data event of a stream: none */
    FINAL_MARKER, /* the final event of a stream: its only (synthetic) value */
} final_mode;

/* One encrypted member, parsed but not yet decrypted. */
typedef struct enc_value {
    const cf_json_member *member;
    size_t doc_index;
    bool final;
    bool synthetic;
    uint8_t key_id_raw[CF_PROTO_KEY_ID_RAW_LEN];
    uint8_t salt[CF_PROTO_SALT_LEN];
    cf_slice ct_b64;
} enc_value;

typedef struct parsed_msg {
    cf_json_object obj;
    enc_value *vals; /* sorted by name */
    size_t nvals;
    uint8_t digest[CF_SHA256_LEN];
} parsed_msg;

static void parsed_msg_free(parsed_msg *m)
{
    cf_json_object_free(&m->obj);
    free(m->vals);
    m->vals = NULL;
    m->nvals = 0;
}

static const char *const *plain_list(const msg_frame *f)
{
    return f->direction == DIR_REQUEST ? f->ep->request_plain : f->ep->response_plain;
}

static CF_RESULT parse_body(cf_slice body, size_t max_body, cf_json_object *obj)
{
    cf_json_limits limits = {
        .max_size = max_body, .max_depth = 0, .max_members = CF_PROTO_MAX_MEMBERS, .max_name = CF_PROTO_MAX_NAME};
    CF_GUARD(cf_json_object_parse(body, &limits, obj));
    for (size_t i = 0; i < obj->count; i++) {
        /* name_raw includes the quotes; a backslash anywhere means an escape.
         * docs/protocol.md §Messages rule 2: names are compared as raw bytes. */
        if (memchr(obj->members[i].name_raw.ptr, '\\', obj->members[i].name_raw.len) != NULL) {
            cf_json_object_free(obj);
            CF_BAIL_FMT(CF_E_MALFORMED, "top-level member %zu: escaped names are not allowed", i);
        }
    }
    return CF_OK;
}

static void put_u16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* docs/protocol.md §Plain digest. The input is assembled in one buffer and
 * hashed one-shot (an incremental EVP digest costs a fetch per message). */
static CF_RESULT plain_digest(const msg_frame *f, const cf_json_object *obj, uint8_t out[CF_SHA256_LEN])
{
    cf_result result = CF_OK;
    const char *const *list = plain_list(f);
    size_t count = 0;
    size_t ep_len = strlen(f->ep->name);
    cf_buf in;
    cf_buf_init(&in, 0);

    CF_ENSURE_MSG_OUT(f->event_type.len <= 0xFFFF, CF_E_TOO_LARGE, "SSE event type too long");
    for (size_t i = 0; i < obj->count; i++) {
        if (name_in_list(list, obj->sorted[i]->name)) {
            count++;
        }
    }
    CF_GUARD_OUT(cf_buf_append_cstr(&in, DIGEST_LABEL));
    CF_GUARD_OUT(cf_buf_append_u8(&in, f->direction));
    CF_GUARD_OUT(cf_buf_append_u16be(&in, (uint16_t)ep_len));
    CF_GUARD_OUT(cf_buf_append(&in, f->ep->name, ep_len));
    CF_GUARD_OUT(cf_buf_append_u16be(&in, f->status));
    CF_GUARD_OUT(cf_buf_append_u8(&in, f->frame));
    CF_GUARD_OUT(cf_buf_append_u16be(&in, (uint16_t)f->event_type.len));
    CF_GUARD_OUT(cf_buf_append_slice(&in, f->event_type));
    CF_GUARD_OUT(cf_buf_append_u32be(&in, (uint32_t)count));
    for (size_t i = 0; i < obj->count; i++) {
        const cf_json_member *m = obj->sorted[i];
        if (!name_in_list(list, m->name)) {
            continue;
        }
        CF_ENSURE_MSG_OUT(m->value.len <= 0xFFFFFFFFu, CF_E_TOO_LARGE, "plain value too long");
        CF_GUARD_OUT(cf_buf_append_u16be(&in, (uint16_t)m->name.len));
        CF_GUARD_OUT(cf_buf_append_slice(&in, m->name));
        CF_GUARD_OUT(cf_buf_append_u32be(&in, (uint32_t)m->value.len));
        CF_GUARD_OUT(cf_buf_append_slice(&in, m->value));
    }
    CF_GUARD_OUT(cf_sha256(cf_buf_slice(&in), out));
out:
    cf_buf_free(&in);
    return result;
}

/* docs/protocol.md §Encrypted value: "cf1" F ":" key_id ":" b64u(S) ":" b64u(ct). */
static CF_RESULT parse_enc_value(const cf_json_member *m, enc_value *v)
{
    if (m->type != CF_JSON_STRING) {
        CF_BAIL_FMT(CF_E_PLAINTEXT_FIELD, "member '%.*s' must be encrypted", (int)m->name.len,
                    (const char *)m->name.ptr);
    }
    cf_slice inner = cf_slice_make(m->value.ptr + 1, m->value.len - 2);
    if (inner.len < 3 || inner.ptr[0] != 'c' || inner.ptr[1] != 'f' || inner.ptr[2] < '0' || inner.ptr[2] > '9') {
        CF_BAIL_FMT(CF_E_PLAINTEXT_FIELD, "member '%.*s' must be encrypted", (int)m->name.len,
                    (const char *)m->name.ptr);
    }
    size_t digits = 2;
    while (digits < inner.len && inner.ptr[digits] >= '0' && inner.ptr[digits] <= '9') {
        digits++;
    }
    if (!(digits == 3 && inner.ptr[2] == '1')) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED_VERSION, "member '%.*s': protocol version not supported", (int)m->name.len,
                    (const char *)m->name.ptr);
    }
    /* "cf1" F ":" 22 ":" 22 ":" >=22 */
    if (inner.len < 5 + CF_PROTO_KEY_ID_LEN + 1 + 22 + 1 + 22 || (inner.ptr[3] != 'n' && inner.ptr[3] != 'f') ||
        inner.ptr[4] != ':' || inner.ptr[5 + CF_PROTO_KEY_ID_LEN] != ':' ||
        inner.ptr[5 + CF_PROTO_KEY_ID_LEN + 1 + 22] != ':') {
        CF_BAIL_FMT(CF_E_BAD_CIPHERTEXT, "member '%.*s': ill-formed encrypted value", (int)m->name.len,
                    (const char *)m->name.ptr);
    }
    v->final = inner.ptr[3] == 'f';
    size_t got = 0;
    if (cf_is_error(cf_b64url_decode_fixed(cf_slice_make(inner.ptr + 5, CF_PROTO_KEY_ID_LEN), v->key_id_raw,
                                           sizeof v->key_id_raw, &got)) ||
        got != CF_PROTO_KEY_ID_RAW_LEN ||
        cf_is_error(cf_b64url_decode_fixed(cf_slice_make(inner.ptr + 6 + CF_PROTO_KEY_ID_LEN, 22), v->salt,
                                           sizeof v->salt, &got)) ||
        got != CF_PROTO_SALT_LEN) {
        CF_BAIL_FMT(CF_E_BAD_CIPHERTEXT, "member '%.*s': bad key id or salt encoding", (int)m->name.len,
                    (const char *)m->name.ptr);
    }
    v->ct_b64 = cf_slice_make(inner.ptr + 7 + CF_PROTO_KEY_ID_LEN + 22, inner.len - (7 + CF_PROTO_KEY_ID_LEN + 22));
    v->synthetic = cf_slice_eq_cstr(m->name, SYNTHETIC_NAME);
    return CF_OK;
}

/* Parse a received message: shape, duplicates, digest, encrypted values. */
static CF_RESULT parse_msg(const msg_frame *f, cf_slice body, size_t max_body, parsed_msg *pm)
{
    cf_result result = CF_OK;
    memset(pm, 0, sizeof *pm);
    CF_GUARD(parse_body(body, max_body, &pm->obj));
    const char *const *list = plain_list(f);
    pm->vals = calloc(pm->obj.count ? pm->obj.count : 1, sizeof *pm->vals);
    CF_ENSURE_OUT(pm->vals != NULL, CF_E_NO_MEMORY);
    for (size_t i = 0; i < pm->obj.count; i++) {
        const cf_json_member *m = pm->obj.sorted[i];
        if (name_in_list(list, m->name)) {
            continue;
        }
        enc_value *v = &pm->vals[pm->nvals++];
        v->member = m;
        v->doc_index = (size_t)(m - pm->obj.members);
        CF_GUARD_OUT(parse_enc_value(m, v));
    }
    CF_ENSURE_MSG_OUT(pm->nvals > 0, CF_E_PLAINTEXT_FIELD, "message carries no encrypted value");
    CF_GUARD_OUT(plain_digest(f, &pm->obj, pm->digest));
out:
    if (cf_is_error(result)) {
        parsed_msg_free(pm);
    }
    return result;
}

/* ---- Messages: AEAD ---------------------------------------------------------- */

#define AAD_MAX (sizeof AAD_LABEL - 1 + 1 + 8 + 1 + 2 + CF_PROTO_MAX_NAME + CF_SHA256_LEN)

/* docs/protocol.md §AAD. */
static size_t build_aad(uint8_t aad[AAD_MAX], uint8_t direction, uint64_t seq, bool final, cf_slice name,
                        const uint8_t digest[CF_SHA256_LEN])
{
    size_t n = 0;
    memcpy(aad, AAD_LABEL, sizeof AAD_LABEL - 1);
    n += sizeof AAD_LABEL - 1;
    aad[n++] = direction;
    store_u64be(aad + n, seq);
    n += 8;
    aad[n++] = final ? 1 : 0;
    put_u16(aad + n, name.len);
    n += 2;
    memcpy(aad + n, name.ptr, name.len);
    n += name.len;
    memcpy(aad + n, digest, CF_SHA256_LEN);
    return n + CF_SHA256_LEN;
}

static void build_nonce(uint8_t nonce[CF_AEAD_NONCE_LEN], uint64_t seq)
{
    memset(nonce, 0, 4);
    store_u64be(nonce + 4, seq);
}

/* Seal one value and append its JSON string ("cf1n:...") to out. */
static CF_RESULT seal_value(cf_aead *aead, uint8_t direction, uint64_t seq, bool final, cf_slice name,
                            const uint8_t digest[CF_SHA256_LEN], cf_slice plaintext, uint32_t pad_bucket,
                            const uint8_t kid_raw[CF_PROTO_KEY_ID_RAW_LEN], const uint8_t salt[CF_PROTO_SALT_LEN],
                            cf_buf *out)
{
    cf_result result = CF_OK;
    uint8_t aad[AAD_MAX];
    uint8_t nonce[CF_AEAD_NONCE_LEN];
    char kid[CF_PROTO_KEY_ID_LEN + 1], salt_b64[23];
    size_t padded = plaintext.len;
    uint8_t *pt = NULL, *ct = NULL;

    if (pad_bucket > 0 && plaintext.len % pad_bucket != 0) {
        padded = plaintext.len + (pad_bucket - plaintext.len % pad_bucket);
    }
    pt = malloc(padded + 1);
    ct = malloc(padded + CF_AEAD_TAG_LEN);
    CF_ENSURE_OUT(pt != NULL && ct != NULL, CF_E_NO_MEMORY);
    if (plaintext.len > 0) {
        memcpy(pt, plaintext.ptr, plaintext.len);
    }
    memset(pt + plaintext.len, ' ', padded - plaintext.len);
    size_t aad_len = build_aad(aad, direction, seq, final, name, digest);
    build_nonce(nonce, seq);
    CF_GUARD_OUT(cf_aead_seal(aead, nonce, cf_slice_make(aad, aad_len), cf_slice_make(pt, padded), ct));
    CF_GUARD_OUT(cf_b64url_encode_str(cf_slice_make(kid_raw, CF_PROTO_KEY_ID_RAW_LEN), kid, sizeof kid));
    CF_GUARD_OUT(cf_b64url_encode_str(cf_slice_make(salt, CF_PROTO_SALT_LEN), salt_b64, sizeof salt_b64));
    CF_GUARD_OUT(cf_buf_append_cstr(out, final ? "\"cf1f:" : "\"cf1n:"));
    CF_GUARD_OUT(cf_buf_append_cstr(out, kid));
    CF_GUARD_OUT(cf_buf_append_u8(out, ':'));
    CF_GUARD_OUT(cf_buf_append_cstr(out, salt_b64));
    CF_GUARD_OUT(cf_buf_append_u8(out, ':'));
    CF_GUARD_OUT(cf_b64url_encode(cf_slice_make(ct, padded + CF_AEAD_TAG_LEN), out));
    CF_GUARD_OUT(cf_buf_append_u8(out, '"'));
out:
    cf_free_secret(pt, padded + 1);
    free(ct);
    return result;
}

/* Open one value, appending its plaintext (padding stripped) to `plain`. */
static CF_RESULT open_value(cf_aead *aead, uint8_t direction, uint64_t seq, const enc_value *v,
                            const uint8_t digest[CF_SHA256_LEN], bool marker, cf_buf *ctbuf, cf_buf *plain)
{
    uint8_t aad[AAD_MAX];
    uint8_t nonce[CF_AEAD_NONCE_LEN];
    cf_buf_reset(ctbuf);
    if (cf_is_error(cf_b64url_decode(v->ct_b64, ctbuf)) || ctbuf->len < CF_AEAD_TAG_LEN) {
        CF_BAIL_FMT(CF_E_BAD_CIPHERTEXT, "member '%.*s': bad ciphertext encoding", (int)v->member->name.len,
                    (const char *)v->member->name.ptr);
    }
    size_t pt_len = ctbuf->len - CF_AEAD_TAG_LEN;
    size_t start = plain->len;
    CF_GUARD(cf_buf_reserve(plain, pt_len + 1));
    size_t aad_len = build_aad(aad, direction, seq, v->final, v->member->name, digest);
    build_nonce(nonce, seq);
    if (cf_is_error(cf_aead_open(aead, nonce, cf_slice_make(aad, aad_len), cf_buf_slice(ctbuf), plain->data + start))) {
        CF_BAIL_FMT(CF_E_AUTH_FAILED, "member '%.*s' does not authenticate", (int)v->member->name.len,
                    (const char *)v->member->name.ptr);
    }
    plain->len = start + pt_len;
    if (v->synthetic) {
        /* Empty, except in a final event, which may announce [DONE]. */
        bool ok = pt_len == 0 ||
                  (marker && cf_slice_eq_cstr(cf_slice_make(plain->data + start, pt_len), DONE_PAYLOAD));
        CF_ENSURE_MSG(ok, CF_E_BAD_CIPHERTEXT, "unexpected content in the synthetic member");
        return CF_OK;
    }
    /* Strip the space padding; a raw value never ends in whitespace. */
    while (plain->len > start && plain->data[plain->len - 1] == ' ') {
        plain->len--;
    }
    cf_slice value = cf_slice_make(plain->data + start, plain->len - start);
    if (value.len == 0 || cf_is_error(cf_json_validate(value, NULL, NULL))) {
        CF_BAIL_FMT(CF_E_BAD_CIPHERTEXT, "member '%.*s' does not decrypt to one JSON value",
                    (int)v->member->name.len, (const char *)v->member->name.ptr);
    }
    return CF_OK;
}

/* ---- Messages: splicing --------------------------------------------------------- */

/* Replace body[start, end) by repl; edits are in document order. */
typedef struct edit {
    size_t start, end;
    cf_slice repl;
} edit;

static CF_RESULT apply_edits(cf_slice body, const edit *edits, size_t n, cf_buf *out)
{
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        CF_ENSURE(edits[i].start >= pos && edits[i].end >= edits[i].start && edits[i].end <= body.len,
                  CF_E_INTERNAL);
        CF_GUARD(cf_buf_append(out, body.ptr + pos, edits[i].start - pos));
        CF_GUARD(cf_buf_append_slice(out, edits[i].repl));
        pos = edits[i].end;
    }
    CF_GUARD(cf_buf_append(out, body.ptr + pos, body.len - pos));
    return CF_OK;
}

static size_t off_of(cf_slice body, cf_slice part) { return (size_t)(part.ptr - body.ptr); }

/* Restore out to `len`, wiping what was appended. */
static void rollback(cf_buf *out, size_t len)
{
    if (out->len > len) {
        cf_wipe(out->data + len, out->len - len);
        out->len = len;
    }
}

/*
 * Seal one message (docs/protocol.md §Messages): append the encrypted form of
 * `body` to out, consuming sequence numbers from *seq.
 */
static CF_RESULT seal_msg(cf_aead *aead, const msg_frame *f, final_mode mode, cf_slice body, cf_slice marker_plain,
                          uint32_t pad_bucket, const uint8_t kid_raw[CF_PROTO_KEY_ID_RAW_LEN],
                          const uint8_t salt[CF_PROTO_SALT_LEN], size_t max_body, uint64_t *seq, cf_buf *out)
{
    cf_result result = CF_OK;
    cf_json_object obj = {0};
    cf_buf enc;
    edit *edits = NULL;
    size_t *enc_off = NULL, *enc_len = NULL;
    size_t start_len = out->len;
    uint8_t digest[CF_SHA256_LEN];
    cf_buf_init(&enc, max_body);

    CF_GUARD_OUT(parse_body(body, max_body, &obj));
    const char *const *list = plain_list(f);
    for (size_t i = 0; i < obj.count; i++) {
        CF_ENSURE_MSG_OUT(!cf_slice_eq_cstr(obj.members[i].name, SYNTHETIC_NAME), CF_E_MALFORMED,
                          "the member name 'confide' is reserved");
    }
    CF_GUARD_OUT(plain_digest(f, &obj, digest));

    edits = calloc(obj.count + 1, sizeof *edits);
    enc_off = calloc(obj.count + 1, sizeof *enc_off);
    enc_len = calloc(obj.count + 1, sizeof *enc_len);
    CF_ENSURE_OUT(edits != NULL && enc_off != NULL && enc_len != NULL, CF_E_NO_MEMORY);

    size_t n_enc = 0;
    for (size_t i = 0; i < obj.count; i++) {
        if (!name_in_list(list, obj.sorted[i]->name)) {
            n_enc++;
        }
    }
    bool synthetic = n_enc == 0 || mode == FINAL_MARKER;
    CF_ENSURE_MSG_OUT(mode != FINAL_MARKER || obj.count == 0, CF_E_INTERNAL, "final event must be empty");
    size_t n_vals = synthetic ? 1 : n_enc;
    CF_ENSURE_MSG_OUT(*seq + n_vals <= ((uint64_t)1 << 32), CF_E_TOO_LARGE, "too many values in one response");

    /* Seal in sorted order; remember each encoding by document index. */
    size_t k = 0;
    for (size_t i = 0; i < obj.count; i++) {
        const cf_json_member *m = obj.sorted[i];
        if (name_in_list(list, m->name)) {
            continue;
        }
        size_t di = (size_t)(m - obj.members);
        bool final = mode == FINAL_LAST && k == n_enc - 1;
        enc_off[di] = enc.len;
        CF_GUARD_OUT(seal_value(aead, f->direction, *seq + k, final, m->name, digest, m->value, pad_bucket, kid_raw,
                                salt, &enc));
        enc_len[di] = enc.len - enc_off[di];
        k++;
    }
    size_t synth_off = enc.len;
    if (synthetic) {
        CF_GUARD_OUT(cf_buf_append_cstr(&enc, obj.count == 0 ? "\"" SYNTHETIC_NAME "\":" : ",\"" SYNTHETIC_NAME "\":"));
        CF_GUARD_OUT(seal_value(aead, f->direction, *seq, mode != FINAL_NONE, cf_slice_cstr(SYNTHETIC_NAME), digest,
                                mode == FINAL_MARKER ? marker_plain : CF_SLICE_EMPTY, 0, kid_raw, salt, &enc));
    }

    /* Edits in document order (enc may have moved while growing: slices last). */
    size_t ne = 0;
    for (size_t di = 0; di < obj.count; di++) {
        const cf_json_member *m = &obj.members[di];
        if (name_in_list(list, m->name)) {
            continue;
        }
        edits[ne++] = (edit){off_of(body, m->value), off_of(body, m->value) + m->value.len,
                             cf_slice_make(enc.data + enc_off[di], enc_len[di])};
    }
    if (synthetic) {
        size_t at;
        if (obj.count == 0) {
            at = 0;
            while (at < body.len && body.ptr[at] != '{') {
                at++;
            }
            at++;
        } else {
            const cf_json_member *last = &obj.members[obj.count - 1];
            at = off_of(body, last->value) + last->value.len;
        }
        edits[ne++] = (edit){at, at, cf_slice_make(enc.data + synth_off, enc.len - synth_off)};
    }
    CF_GUARD_OUT(apply_edits(body, edits, ne, out));
    *seq += n_vals;
out:
    if (cf_is_error(result)) {
        rollback(out, start_len);
    }
    cf_json_object_free(&obj);
    cf_buf_free(&enc);
    free(edits);
    free(enc_off);
    free(enc_len);
    return result;
}

/*
 * Open a parsed message with `aead`, values numbered from *seq. Nothing is
 * appended to out unless every value authenticated and the final flag is
 * where `mode` says.
 */
static CF_RESULT open_msg(cf_aead *aead, uint8_t direction, final_mode mode, cf_slice body, const parsed_msg *pm,
                          size_t max_body, uint64_t *seq, cf_buf *out, bool *marker_done)
{
    cf_result result = CF_OK;
    cf_buf plain, ctbuf;
    edit *edits = NULL;
    size_t *pt_off = NULL, *pt_len = NULL;
    uint8_t *is_enc = NULL;
    size_t start_len = out->len;
    cf_buf_init(&plain, max_body);
    cf_buf_init(&ctbuf, max_body);

    CF_ENSURE_MSG_OUT(*seq + pm->nvals <= ((uint64_t)1 << 32), CF_E_TOO_LARGE, "too many values in one response");
    pt_off = calloc(pm->obj.count + 1, sizeof *pt_off);
    pt_len = calloc(pm->obj.count + 1, sizeof *pt_len);
    edits = calloc(pm->obj.count + 1, sizeof *edits);
    is_enc = calloc(pm->obj.count + 1, 1);
    CF_ENSURE_OUT(pt_off != NULL && pt_len != NULL && edits != NULL && is_enc != NULL, CF_E_NO_MEMORY);

    for (size_t i = 0; i < pm->nvals; i++) {
        const enc_value *v = &pm->vals[i];
        size_t before = plain.len;
        CF_GUARD_OUT(open_value(aead, direction, *seq + i, v, pm->digest, mode == FINAL_MARKER, &ctbuf, &plain));
        pt_off[v->doc_index] = before;
        pt_len[v->doc_index] = plain.len - before;
    }
    /* Every value is authentic; now check the final flag's place. */
    for (size_t i = 0; i < pm->nvals; i++) {
        bool last = i == pm->nvals - 1;
        bool want = (mode == FINAL_LAST && last) || mode == FINAL_MARKER;
        if (pm->vals[i].final && !want) {
            CF_BAIL_OUT(CF_E_BAD_CIPHERTEXT, "final flag on a value that is not the last");
        }
        if (!pm->vals[i].final && want) {
            CF_BAIL_OUT(CF_E_TRUNCATED, "the final value is missing");
        }
    }

    size_t ne = 0;
    const cf_json_object *obj = &pm->obj;
    /* Which members (document order) are encrypted, and which is synthetic. */
    for (size_t i = 0; i < pm->nvals; i++) {
        is_enc[pm->vals[i].doc_index] = pm->vals[i].synthetic ? 2 : 1;
    }
    for (size_t di = 0; di < obj->count; di++) {
        const cf_json_member *m = &obj->members[di];
        bool synthetic = is_enc[di] == 2;
        if (is_enc[di] == 0) {
            continue;
        }
        if (synthetic) {
            /* Remove the member with the comma that joined it. */
            size_t s, e = off_of(body, m->value) + m->value.len;
            if (di > 0) {
                const cf_json_member *prev = &obj->members[di - 1];
                s = off_of(body, prev->value) + prev->value.len;
                /* The previous member's own edit ends there too; keep order. */
            } else if (obj->count > 1) {
                s = off_of(body, m->name_raw);
                e = off_of(body, obj->members[1].name_raw);
            } else {
                s = off_of(body, m->name_raw);
            }
            edits[ne++] = (edit){s, e, CF_SLICE_EMPTY};
        } else {
            edits[ne++] = (edit){off_of(body, m->value), off_of(body, m->value) + m->value.len,
                                 cf_slice_make(plain.data + pt_off[di], pt_len[di])};
        }
    }
    CF_GUARD_OUT(apply_edits(body, edits, ne, out));
    if (marker_done != NULL) {
        *marker_done = mode == FINAL_MARKER && plain.len > 0;
    }
    *seq += pm->nvals;
out:
    if (cf_is_error(result)) {
        rollback(out, start_len);
    }
    cf_buf_free(&plain);
    cf_buf_free(&ctbuf);
    free(edits);
    free(pt_off);
    free(pt_len);
    free(is_enc);
    return result;
}

/* All values carry the session's key ID and salt. */
static CF_RESULT check_same_key(const parsed_msg *pm, const uint8_t kid_raw[CF_PROTO_KEY_ID_RAW_LEN],
                                const uint8_t salt[CF_PROTO_SALT_LEN])
{
    for (size_t i = 0; i < pm->nvals; i++) {
        CF_ENSURE_MSG(memcmp(pm->vals[i].key_id_raw, kid_raw, CF_PROTO_KEY_ID_RAW_LEN) == 0 &&
                          memcmp(pm->vals[i].salt, salt, CF_PROTO_SALT_LEN) == 0,
                      CF_E_BAD_CIPHERTEXT, "values carry different key ids or salts");
    }
    return CF_OK;
}

/* ---- Requests ---------------------------------------------------------------------- */

CF_RESULT cf_proto_request_seal(const cf_proto_endpoint *ep, const uint8_t secret[CF_PROTO_SECRET_LEN], cf_slice body,
                                const cf_proto_seal_options *opt, cf_buf *out, cf_proto_session **session_out)
{
    cf_result result = CF_OK;
    uint8_t k_req[32], k_resp[32];
    uint8_t salt[CF_PROTO_SALT_LEN];
    uint8_t kid_raw[CF_PROTO_KEY_ID_RAW_LEN];
    cf_aead req = {0};
    cf_proto_session *s = NULL;
    cf_proto_seal_options o = opt ? *opt : (cf_proto_seal_options){0};
    size_t max_body = o.max_body ? o.max_body : CF_PROTO_DEFAULT_MAX_BODY;
    uint64_t seq = 0;

    CF_ENSURE_REF(ep);
    CF_ENSURE_REF(secret);
    CF_ENSURE_REF(out);
    CF_ENSURE_REF(session_out);
    *session_out = NULL;
    CF_ENSURE_MSG(ep->encrypted, CF_E_INVALID_ARGUMENT, "this endpoint is not encrypted");
    CF_ENSURE_MSG(o.pad_bucket <= CF_PROTO_MAX_PAD_BUCKET, CF_E_INVALID_ARGUMENT, "padding bucket too large");

    if (o.fixed_salt != NULL) {
        memcpy(salt, o.fixed_salt, sizeof salt);
    } else {
        int64_t now = o.now_ms ? o.now_ms : system_now_ms();
        CF_ENSURE_OUT(now > 0, CF_E_INVALID_ARGUMENT);
        store_u64be(salt, (uint64_t)now);
        CF_GUARD_OUT(cf_random(salt + 8, 8));
    }
    CF_GUARD_OUT(key_id_raw(secret, kid_raw));
    CF_GUARD_OUT(derive_keys(secret, salt, k_req, k_resp));
    CF_GUARD_OUT(cf_aead_init(&req, CF_AEAD_AES_256_GCM, cf_slice_make(k_req, sizeof k_req)));
    msg_frame f = {DIR_REQUEST, ep, 0, FRAME_BODY, CF_SLICE_EMPTY};
    CF_GUARD_OUT(seal_msg(&req, &f, FINAL_LAST, body, CF_SLICE_EMPTY, o.pad_bucket, kid_raw, salt, max_body, &seq, out));
    CF_GUARD_OUT(session_new(ep, kid_raw, salt, k_resp, o.pad_bucket, max_body, false, &s));
    *session_out = s;
    s = NULL;
out:
    cf_aead_free(&req);
    cf_wipe(k_req, sizeof k_req);
    cf_wipe(k_resp, sizeof k_resp);
    cf_proto_session_free(s);
    return result;
}

CF_RESULT cf_proto_session_from_request(const cf_proto_endpoint *ep, const uint8_t secret[CF_PROTO_SECRET_LEN],
                                        cf_slice encrypted_request, cf_proto_session **session_out)
{
    cf_result result = CF_OK;
    uint8_t k_req[32], k_resp[32];
    uint8_t kid_raw[CF_PROTO_KEY_ID_RAW_LEN];
    parsed_msg pm = {0};
    CF_ENSURE_REF(ep);
    CF_ENSURE_REF(secret);
    CF_ENSURE_REF(session_out);
    *session_out = NULL;
    CF_ENSURE_MSG(ep->encrypted, CF_E_INVALID_ARGUMENT, "this endpoint is not encrypted");
    msg_frame f = {DIR_REQUEST, ep, 0, FRAME_BODY, CF_SLICE_EMPTY};
    CF_GUARD_OUT(parse_msg(&f, encrypted_request, CF_PROTO_DEFAULT_MAX_BODY, &pm));
    CF_GUARD_OUT(check_same_key(&pm, pm.vals[0].key_id_raw, pm.vals[0].salt));
    CF_GUARD_OUT(key_id_raw(secret, kid_raw));
    CF_ENSURE_MSG_OUT(memcmp(kid_raw, pm.vals[0].key_id_raw, sizeof kid_raw) == 0, CF_E_UNKNOWN_KEY,
                      "the request was encrypted under another key");
    CF_GUARD_OUT(derive_keys(secret, pm.vals[0].salt, k_req, k_resp));
    CF_GUARD_OUT(session_new(ep, kid_raw, pm.vals[0].salt, k_resp, 0, 0, false, session_out));
out:
    parsed_msg_free(&pm);
    cf_wipe(k_req, sizeof k_req);
    cf_wipe(k_resp, sizeof k_resp);
    return result;
}

CF_RESULT cf_proto_request_open(const cf_proto_endpoint *ep, cf_slice body, cf_proto_key_lookup_fn lookup,
                                void *lookup_ctx, const cf_proto_open_options *opt, cf_buf *out,
                                cf_proto_session **session_out)
{
    cf_result result = CF_OK;
    uint8_t secret[CF_PROTO_SECRET_LEN];
    uint8_t k_req[32], k_resp[32];
    uint8_t kid_check[CF_PROTO_KEY_ID_RAW_LEN];
    char kid[CF_PROTO_KEY_ID_LEN + 1];
    cf_aead req = {0};
    parsed_msg pm = {0};
    cf_proto_session *s = NULL;
    cf_proto_open_options o = opt ? *opt : (cf_proto_open_options){0};
    size_t max_body = o.max_body ? o.max_body : CF_PROTO_DEFAULT_MAX_BODY;
    size_t start_len = out ? out->len : 0;
    uint64_t seq = 0;

    CF_ENSURE_REF(ep);
    CF_ENSURE_REF(lookup);
    CF_ENSURE_REF(out);
    CF_ENSURE_REF(session_out);
    *session_out = NULL;
    CF_ENSURE_MSG(ep->encrypted, CF_E_INVALID_ARGUMENT, "this endpoint is not encrypted");
    CF_ENSURE_MSG(o.pad_bucket <= CF_PROTO_MAX_PAD_BUCKET, CF_E_INVALID_ARGUMENT, "padding bucket too large");

    msg_frame f = {DIR_REQUEST, ep, 0, FRAME_BODY, CF_SLICE_EMPTY};
    CF_GUARD_OUT(parse_msg(&f, body, max_body, &pm));
    const uint8_t *kid_raw = pm.vals[0].key_id_raw;
    const uint8_t *salt = pm.vals[0].salt;
    CF_GUARD_OUT(check_same_key(&pm, kid_raw, salt));

    /* Freshness and replay before any key is touched (cheap rejections). */
    int64_t now = o.now_ms ? o.now_ms : system_now_ms();
    int64_t window = o.window_ms != 0 ? o.window_ms
                                      : (o.replay ? cf_replay_window_ms(o.replay) : CF_REPLAY_DEFAULT_WINDOW_MS);
    uint64_t salt_ms = load_u64be(salt);
    if (window >= 0) {
        CF_ENSURE_MSG_OUT(salt_ms <= (uint64_t)INT64_MAX, CF_E_STALE, "salt timestamp out of range");
        CF_GUARD_OUT(cf_replay_check_fresh((int64_t)salt_ms, now, window));
    }
    if (o.replay != NULL) {
        CF_GUARD_OUT(cf_replay_check(o.replay, kid_raw, salt, now));
    }

    CF_GUARD_OUT(cf_b64url_encode_str(cf_slice_make(kid_raw, CF_PROTO_KEY_ID_RAW_LEN), kid, sizeof kid));
    CF_GUARD_OUT(lookup(lookup_ctx, kid, secret));
    CF_GUARD_OUT(key_id_raw(secret, kid_check));
    CF_ENSURE_MSG_OUT(memcmp(kid_check, kid_raw, sizeof kid_check) == 0, CF_E_UNKNOWN_KEY,
                      "key store returned a secret of another key id");
    CF_GUARD_OUT(derive_keys(secret, salt, k_req, k_resp));
    CF_GUARD_OUT(cf_aead_init(&req, CF_AEAD_AES_256_GCM, cf_slice_make(k_req, sizeof k_req)));
    CF_GUARD_OUT(open_msg(&req, DIR_REQUEST, FINAL_LAST, body, &pm, max_body, &seq, out, NULL));
    CF_GUARD_OUT(session_new(ep, kid_raw, salt, k_resp, o.pad_bucket, max_body, true, &s));
    /* Authenticated: only now does the pair occupy replay memory. */
    if (o.replay != NULL) {
        CF_GUARD_OUT(cf_replay_record(o.replay, kid_raw, salt, now));
    }
    *session_out = s;
    s = NULL;
out:
    if (cf_is_error(result) && out != NULL) {
        rollback(out, start_len);
    }
    parsed_msg_free(&pm);
    cf_aead_free(&req);
    cf_wipe(secret, sizeof secret);
    cf_wipe(k_req, sizeof k_req);
    cf_wipe(k_resp, sizeof k_resp);
    cf_proto_session_free(s);
    return result;
}

CF_RESULT cf_proto_request_peek(const cf_proto_endpoint *ep, cf_slice body, char key_id[CF_PROTO_KEY_ID_LEN + 1],
                                int64_t *salt_ms)
{
    cf_result result = CF_OK;
    parsed_msg pm = {0};
    CF_ENSURE_REF(ep);
    CF_ENSURE_REF(key_id);
    CF_ENSURE_MSG(ep->encrypted, CF_E_INVALID_ARGUMENT, "this endpoint is not encrypted");
    msg_frame f = {DIR_REQUEST, ep, 0, FRAME_BODY, CF_SLICE_EMPTY};
    CF_GUARD_OUT(parse_msg(&f, body, CF_PROTO_DEFAULT_MAX_BODY, &pm));
    CF_GUARD_OUT(check_same_key(&pm, pm.vals[0].key_id_raw, pm.vals[0].salt));
    CF_GUARD_OUT(cf_b64url_encode_str(cf_slice_make(pm.vals[0].key_id_raw, CF_PROTO_KEY_ID_RAW_LEN), key_id,
                                      CF_PROTO_KEY_ID_LEN + 1));
    if (salt_ms != NULL) {
        *salt_ms = (int64_t)load_u64be(pm.vals[0].salt);
    }
out:
    parsed_msg_free(&pm);
    return result;
}

/* ---- Responses ------------------------------------------------------------------------ */

static CF_RESULT check_status(int status)
{
    CF_ENSURE_MSG(status >= 100 && status <= 999, CF_E_INVALID_ARGUMENT, "HTTP status out of range");
    return CF_OK;
}

CF_RESULT cf_proto_response_seal(cf_proto_session *s, int status, cf_slice body, cf_buf *out)
{
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(s->seal_side && s->state == ST_READY, CF_E_INVALID_ARGUMENT, "session cannot seal a response now");
    CF_GUARD(check_status(status));
    msg_frame f = {DIR_RESPONSE, s->ep, (uint16_t)status, FRAME_BODY, CF_SLICE_EMPTY};
    if (cf_is_error(seal_msg(&s->resp, &f, FINAL_LAST, body, CF_SLICE_EMPTY, s->pad_bucket, s->key_id_raw, s->salt, s->max_body,
                             &s->resp_seq, out))) {
        return CF_ERROR; /* e.g. not an object: the worker may still seal an error body */
    }
    s->state = ST_BODY_DONE;
    return CF_OK;
}

CF_RESULT cf_proto_response_open(cf_proto_session *s, int status, cf_slice body, cf_buf *out)
{
    cf_result result = CF_OK;
    parsed_msg pm = {0};
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(!s->seal_side && s->state == ST_READY, CF_E_INVALID_ARGUMENT, "session cannot open a response now");
    CF_GUARD_OUT(check_status(status));
    msg_frame f = {DIR_RESPONSE, s->ep, (uint16_t)status, FRAME_BODY, CF_SLICE_EMPTY};
    CF_GUARD_OUT(parse_msg(&f, body, s->max_body, &pm));
    CF_GUARD_OUT(check_same_key(&pm, s->key_id_raw, s->salt));
    CF_GUARD_OUT(open_msg(&s->resp, DIR_RESPONSE, FINAL_LAST, body, &pm, s->max_body, &s->resp_seq, out, NULL));
    s->state = ST_BODY_DONE;
out:
    if (cf_is_error(result)) {
        kill_session(s);
    }
    parsed_msg_free(&pm);
    return result;
}

/* ---- Streams ------------------------------------------------------------------------------ */

CF_RESULT cf_proto_stream_begin(cf_proto_session *s, int status)
{
    CF_ENSURE_REF(s);
    CF_GUARD(check_status(status));
    /* Idempotent for the same status, also after [DONE] or the final event:
     * an embedding app calls this before every chunk (client.h), and
     * keep-alive comments may follow [DONE]. */
    if ((s->state == ST_STREAM || s->state == ST_STREAM_DONE) && s->status == status) {
        return CF_OK;
    }
    /* A dead session reports why it died, not a misuse (client.h rules). */
    if (s->state == ST_DEAD && !s->seal_side) {
        CF_BAIL_MSG(s->dead_code != CF_E_OK ? s->dead_code : CF_E_INTERNAL, "the reply failed earlier");
    }
    CF_ENSURE_MSG(s->state == ST_READY, CF_E_INVALID_ARGUMENT, "session cannot begin a stream now");
    s->status = status;
    s->state = ST_STREAM;
    return CF_OK;
}

bool cf_proto_stream_complete(const cf_proto_session *s) { return s != NULL && s->final_seen; }

static bool is_done(const cf_sse_event *ev) { return cf_slice_eq_cstr(ev->data, DONE_PAYLOAD); }

static CF_RESULT write_event(cf_buf *out, cf_slice type, bool has_type, cf_slice data)
{
    cf_sse_event ev = {0};
    ev.type = type;
    ev.has_type = has_type && type.len > 0;
    ev.data = data;
    ev.has_data = true;
    return cf_sse_write_event(out, &ev);
}

/* The final event: synthetic member only, final flag, next seq; its
 * plaintext says whether `data: [DONE]` follows. */
static CF_RESULT seal_final_event(cf_proto_session *s, bool done_follows, cf_buf *out)
{
    msg_frame f = {DIR_RESPONSE, s->ep, (uint16_t)s->status, FRAME_SSE, CF_SLICE_EMPTY};
    cf_buf_reset(&s->payload);
    CF_GUARD(seal_msg(&s->resp, &f, FINAL_MARKER, cf_slice_cstr("{}"),
                      done_follows ? cf_slice_cstr(DONE_PAYLOAD) : CF_SLICE_EMPTY, 0, s->key_id_raw, s->salt, s->max_body,
                      &s->resp_seq, &s->payload));
    CF_GUARD(write_event(out, CF_SLICE_EMPTY, false, cf_buf_slice(&s->payload)));
    s->final_seen = true;
    return CF_OK;
}

CF_RESULT cf_proto_stream_seal_event(cf_proto_session *s, const cf_sse_event *ev, cf_buf *out)
{
    cf_result result = CF_OK;
    size_t start_len;
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(ev);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(s->seal_side && s->state == ST_STREAM, CF_E_INVALID_ARGUMENT, "session cannot seal an event now");
    if (!ev->has_data) {
        return CF_OK; /* comments, ids, retry: not forwarded */
    }
    start_len = out->len;
    if (is_done(ev)) {
        CF_GUARD_OUT(seal_final_event(s, true, out));
        CF_GUARD_OUT(cf_sse_write_data(out, cf_slice_cstr(DONE_PAYLOAD)));
        s->state = ST_STREAM_DONE;
        goto out;
    }
    msg_frame f = {DIR_RESPONSE, s->ep, (uint16_t)s->status, FRAME_SSE, ev->has_type ? ev->type : CF_SLICE_EMPTY};
    cf_buf_reset(&s->payload);
    CF_GUARD_OUT(seal_msg(&s->resp, &f, FINAL_NONE, ev->data, CF_SLICE_EMPTY, s->pad_bucket, s->key_id_raw, s->salt, s->max_body,
                          &s->resp_seq, &s->payload));
    CF_GUARD_OUT(write_event(out, ev->type, ev->has_type, cf_buf_slice(&s->payload)));
out:
    cf_buf_reset(&s->payload);
    if (cf_is_error(result)) {
        rollback(out, start_len);
    }
    return result;
}

CF_RESULT cf_proto_stream_seal_error(cf_proto_session *s, const char *code, const char *message, cf_buf *out)
{
    cf_result result = CF_OK;
    cf_buf body;
    size_t start_len;
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(code);
    CF_ENSURE_REF(message);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(s->seal_side && s->state == ST_STREAM, CF_E_INVALID_ARGUMENT, "session cannot seal an event now");
    start_len = out->len;
    cf_buf_init(&body, 4096);
    CF_GUARD_OUT(cf_buf_append_cstr(&body, "{\"error\":{\"message\":"));
    CF_GUARD_OUT(cf_json_string_append(&body, cf_slice_cstr(message)));
    CF_GUARD_OUT(cf_buf_append_cstr(&body, ",\"type\":\"upstream_error\",\"code\":"));
    CF_GUARD_OUT(cf_json_string_append(&body, cf_slice_cstr(code)));
    CF_GUARD_OUT(cf_buf_append_cstr(&body, "}}"));
    msg_frame f = {DIR_RESPONSE, s->ep, (uint16_t)s->status, FRAME_SSE, CF_SLICE_EMPTY};
    cf_buf_reset(&s->payload);
    CF_GUARD_OUT(seal_msg(&s->resp, &f, FINAL_NONE, cf_buf_slice(&body), CF_SLICE_EMPTY, s->pad_bucket, s->key_id_raw, s->salt,
                          s->max_body, &s->resp_seq, &s->payload));
    CF_GUARD_OUT(write_event(out, CF_SLICE_EMPTY, false, cf_buf_slice(&s->payload)));
    s->state = ST_STREAM_DONE;
out:
    cf_buf_free(&body);
    cf_buf_reset(&s->payload);
    if (cf_is_error(result)) {
        rollback(out, start_len);
    }
    return result;
}

static CF_RESULT seal_parsed_event(void *ctx, const cf_sse_event *ev)
{
    cf_proto_session *s = ctx;
    if (s->state == ST_STREAM_DONE) {
        return CF_OK; /* after [DONE] nothing more is forwarded */
    }
    return cf_proto_stream_seal_event(s, ev, s->feed_out);
}

static CF_RESULT open_parsed_event(void *ctx, const cf_sse_event *ev)
{
    cf_proto_session *s = ctx;
    return cf_proto_stream_open_event(s, ev, s->feed_out);
}

static CF_RESULT feed(cf_proto_session *s, cf_slice chunk, cf_buf *out, cf_sse_event_fn fn)
{
    CF_ENSURE_MSG(s->state == ST_STREAM || s->state == ST_STREAM_DONE, CF_E_INVALID_ARGUMENT,
                  "session is not streaming");
    CF_ENSURE_MSG(!s->event_used, CF_E_INVALID_ARGUMENT, "feed and event calls cannot be mixed");
    if (!s->parser_used) {
        cf_sse_parser_init(&s->parser, 0, fn, s);
        s->parser_used = true;
    }
    s->feed_out = out;
    cf_result r = cf_sse_parser_feed(&s->parser, chunk);
    s->feed_out = NULL;
    return r;
}

CF_RESULT cf_proto_stream_seal_feed(cf_proto_session *s, cf_slice chunk, cf_buf *out)
{
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(s->seal_side, CF_E_INVALID_ARGUMENT, "not a worker session");
    return feed(s, chunk, out, seal_parsed_event);
}

CF_RESULT cf_proto_stream_seal_finish(cf_proto_session *s, cf_buf *out)
{
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(s->seal_side && (s->state == ST_STREAM || s->state == ST_STREAM_DONE), CF_E_INVALID_ARGUMENT,
                  "session is not streaming");
    if (s->state == ST_STREAM_DONE) {
        return CF_OK; /* [DONE] or an error event closed it; the rest is ignored */
    }
    if (s->parser_used) {
        CF_GUARD(cf_sse_parser_finish(&s->parser));
    }
    {
        CF_GUARD(seal_final_event(s, false, out));
        s->state = ST_STREAM_DONE;
    }
    return CF_OK;
}

CF_RESULT cf_proto_stream_open_event(cf_proto_session *s, const cf_sse_event *ev, cf_buf *out)
{
    cf_result result = CF_OK;
    parsed_msg pm = {0};
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(ev);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(!s->seal_side && (s->state == ST_STREAM || s->state == ST_STREAM_DONE), CF_E_INVALID_ARGUMENT,
                  "session cannot open an event now");
    if (!ev->has_data) {
        return CF_OK; /* comments / keep-alives carry nothing */
    }
    session_state entry_state = s->state;
    s->state = ST_DEAD; /* until this event is fully handled */
    CF_ENSURE_MSG_OUT(entry_state == ST_STREAM && !s->done_seen, CF_E_BAD_CIPHERTEXT, "event after [DONE]");
    if (is_done(ev)) {
        CF_ENSURE_MSG_OUT(s->final_seen, CF_E_TRUNCATED, "[DONE] before the final event");
        CF_ENSURE_MSG_OUT(s->done_expected, CF_E_BAD_CIPHERTEXT, "[DONE] the final event did not announce");
        CF_GUARD_OUT(cf_sse_write_data(out, cf_slice_cstr(DONE_PAYLOAD)));
        s->done_seen = true;
        s->state = ST_STREAM_DONE;
        goto out;
    }
    CF_ENSURE_MSG_OUT(!s->final_seen, CF_E_BAD_CIPHERTEXT, "event after the final event");
    cf_slice type = ev->has_type ? ev->type : CF_SLICE_EMPTY;
    msg_frame f = {DIR_RESPONSE, s->ep, (uint16_t)s->status, FRAME_SSE, type};
    CF_GUARD_OUT(parse_msg(&f, ev->data, s->max_body, &pm));
    CF_GUARD_OUT(check_same_key(&pm, s->key_id_raw, s->salt));
    bool marker = pm.nvals == 1 && pm.vals[0].synthetic && pm.vals[0].final;
    cf_buf_reset(&s->payload);
    bool done_follows = false;
    CF_GUARD_OUT(open_msg(&s->resp, DIR_RESPONSE, marker ? FINAL_MARKER : FINAL_NONE, ev->data, &pm, s->max_body,
                          &s->resp_seq, &s->payload, &done_follows));
    if (marker) {
        s->final_seen = true;
        s->done_expected = done_follows;
    } else {
        CF_GUARD_OUT(write_event(out, type, ev->has_type, cf_buf_slice(&s->payload)));
    }
    s->state = ST_STREAM;
out:
    if (cf_is_error(result)) {
        kill_session(s);
    }
    cf_buf_reset(&s->payload);
    parsed_msg_free(&pm);
    return result;
}

CF_RESULT cf_proto_stream_open_feed(cf_proto_session *s, cf_slice chunk, cf_buf *out)
{
    CF_ENSURE_REF(s);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(!s->seal_side, CF_E_INVALID_ARGUMENT, "not a client session");
    if (s->state == ST_DEAD) {
        CF_BAIL_MSG(s->dead_code != CF_E_OK ? s->dead_code : CF_E_INTERNAL, "the reply failed earlier");
    }
    if (cf_is_error(feed(s, chunk, out, open_parsed_event))) {
        /* Events already authenticated in this chunk stay released (each was
         * complete and authentic); the session is dead. */
        if (s->state != ST_DEAD) {
            kill_session(s);
        }
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT cf_proto_stream_open_finish(cf_proto_session *s)
{
    CF_ENSURE_REF(s);
    CF_ENSURE_MSG(!s->seal_side && (s->state == ST_STREAM || s->state == ST_STREAM_DONE), CF_E_INVALID_ARGUMENT,
                  "session is not streaming");
    if (s->parser_used && cf_is_error(cf_sse_parser_finish(&s->parser))) {
        kill_session(s);
        return CF_ERROR;
    }
    if (!s->final_seen || (s->done_expected && !s->done_seen)) {
        cf_error_set(CF_E_TRUNCATED, s->final_seen ? "the stream ended before the announced [DONE]"
                                                   : "the stream ended without its final event",
                     __FILE__, __LINE__);
        kill_session(s);
        return CF_ERROR;
    }
    s->state = ST_STREAM_DONE;
    return CF_OK;
}

CF_RESULT cf_proto_reply_finish(cf_proto_session *s)
{
    CF_ENSURE_REF(s);
    CF_ENSURE_MSG(!s->seal_side, CF_E_INVALID_ARGUMENT, "not a client session");
    switch (s->state) {
    case ST_BODY_DONE:
        return CF_OK;
    case ST_STREAM:
    case ST_STREAM_DONE:
        return cf_proto_stream_open_finish(s);
    case ST_READY:
        CF_BAIL_MSG(CF_E_TRUNCATED, "no reply was received");
    case ST_DEAD:
    default:
        CF_BAIL_MSG(s->dead_code != CF_E_OK ? s->dead_code : CF_E_INTERNAL, "the reply failed earlier");
    }
}

CF_RESULT cf_proto_check_version_header(cf_slice value)
{
    while (value.len > 0 && (value.ptr[0] == ' ' || value.ptr[0] == '\t')) {
        value.ptr++;
        value.len--;
    }
    while (value.len > 0 && (value.ptr[value.len - 1] == ' ' || value.ptr[value.len - 1] == '\t')) {
        value.len--;
    }
    CF_ENSURE_MSG(value.len > 0 && value.len <= 9, CF_E_MALFORMED, "Confide-Version is not a version number");
    for (size_t i = 0; i < value.len; i++) {
        CF_ENSURE_MSG(value.ptr[i] >= '0' && value.ptr[i] <= '9', CF_E_MALFORMED,
                      "Confide-Version is not a version number");
    }
    CF_ENSURE_MSG(cf_slice_eq_cstr(value, "1"), CF_E_UNSUPPORTED_VERSION, "protocol version not supported");
    return CF_OK;
}

/* ---- Plaintext errors ----------------------------------------------------------------------- */

int cf_proto_error_status(cf_error_code code)
{
    switch (code) {
    case CF_E_UNKNOWN_ENDPOINT:
        return 404;
    case CF_E_UNKNOWN_KEY:
        return 401;
    case CF_E_REPLAY:
        return 409;
    case CF_E_TOO_LARGE:
    case CF_E_LIMIT:
        return 413;
    case CF_E_REPLAY_FULL:
        return 503;
    case CF_E_MALFORMED:
    case CF_E_TOO_DEEP:
    case CF_E_DUPLICATE_KEY:
    case CF_E_PLAINTEXT_FIELD:
    case CF_E_BAD_CIPHERTEXT:
    case CF_E_UNSUPPORTED_VERSION:
    case CF_E_AUTH_FAILED:
    case CF_E_TRUNCATED:
    case CF_E_STALE:
        return 400;
    default:
        return 500;
    }
}

CF_RESULT cf_proto_error_body(cf_error_code code, const char *message, cf_buf *out)
{
    CF_ENSURE_REF(message);
    CF_ENSURE_REF(out);
    size_t start_len = out->len;
    if (cf_is_error(cf_buf_append_cstr(out, "{\"error\":{\"message\":")) ||
        cf_is_error(cf_json_string_append(out, cf_slice_cstr(message))) ||
        cf_is_error(cf_buf_append_cstr(out, ",\"type\":\"confide_error\",\"code\":\"")) ||
        cf_is_error(cf_buf_append_cstr(out, cf_error_name(code))) ||
        cf_is_error(cf_buf_append_cstr(out, "\",\"param\":null}}"))) {
        rollback(out, start_len);
        return CF_ERROR;
    }
    return CF_OK;
}
