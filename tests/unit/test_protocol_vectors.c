/*
 * test_protocol_vectors.c — the committed protocol v1 test vectors
 * (tests/vectors/protocol-v1.json): generator and checker.
 *
 *   build/default/tests/test_protocol_vectors --generate tests/vectors/protocol-v1.json
 *
 * regenerates the file from fixed secrets, salts and clocks (docs/protocol.md
 * §Test vectors). Run without arguments it is the unit test: regenerating
 * must reproduce the committed file byte for byte, and every vector in the
 * committed file must decode as it says (positives to exactly their
 * plaintext, negatives with exactly their error code).
 */
#include "test_helper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/json.h"
#include "confide/protocol.h"

#define NOW_MS INT64_C(1764115200000) /* 2025-11-26T00:00:00Z */

static uint8_t secret1[32], secret2[32];

static void init_secrets(void)
{
    for (int i = 0; i < 32; i++) {
        secret1[i] = (uint8_t)i;
        secret2[i] = (uint8_t)(0x80 + i);
    }
}

/* Salt = u64(ms) || 8 fixed bytes (distinct per vector). */
static void make_salt(uint8_t salt[16], int64_t ms, uint8_t tag)
{
    for (int i = 7; i >= 0; i--) {
        salt[i] = (uint8_t)ms;
        ms >>= 8;
    }
    for (int i = 8; i < 16; i++) {
        salt[i] = (uint8_t)(0xA0 + tag + i);
    }
}

/* ---- string surgery for the negative vectors ---------------------------- */

static char *xstrdup_len(const char *s, size_t n)
{
    char *r = malloc(n + 1);
    assert_non_null(r);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

static char *splice(const char *s, size_t start, size_t end, const char *repl)
{
    size_t n = strlen(s), rl = strlen(repl);
    char *r = malloc(n - (end - start) + rl + 1);
    assert_non_null(r);
    memcpy(r, s, start);
    memcpy(r + start, repl, rl);
    memcpy(r + start + rl, s + end, n - end + 1);
    return r;
}

static char *replace_first(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    assert_non_null(p);
    return splice(s, (size_t)(p - s), (size_t)(p - s) + strlen(from), to);
}

/* Span [start, end) of the value of top-level member `name`. */
static void value_span(const char *body, const char *name, size_t *start, size_t *end)
{
    cf_slice v;
    assert_cf_ok(cf_json_lookup(cf_slice_cstr(body), NULL, cf_slice_cstr(name), &v, NULL));
    *start = (size_t)((const char *)v.ptr - body);
    *end = *start + v.len;
}

static char *swap_values(const char *body, const char *a, const char *b)
{
    size_t as, ae, bs, be;
    value_span(body, a, &as, &ae);
    value_span(body, b, &bs, &be);
    char *va = xstrdup_len(body + as, ae - as), *vb = xstrdup_len(body + bs, be - bs);
    char *r1, *r2;
    if (as < bs) {
        r1 = splice(body, bs, be, va);
        r2 = splice(r1, as, ae, vb);
    } else {
        r1 = splice(body, as, ae, vb);
        r2 = splice(r1, bs, be, va);
    }
    free(va);
    free(vb);
    free(r1);
    return r2;
}

/* Remove member `name` (not the first one) with its leading comma. */
static char *remove_member(const char *body, const char *name)
{
    cf_json_object obj;
    assert_cf_ok(cf_json_object_parse(cf_slice_cstr(body), NULL, &obj));
    size_t i = 0;
    while (i < obj.count && !cf_slice_eq_cstr(obj.members[i].name, name)) {
        i++;
    }
    assert_true(i > 0 && i < obj.count);
    const cf_json_member *prev = &obj.members[i - 1], *m = &obj.members[i];
    size_t s = (size_t)((const char *)prev->value.ptr - body) + prev->value.len;
    size_t e = (size_t)((const char *)m->value.ptr - body) + m->value.len;
    cf_json_object_free(&obj);
    return splice(body, s, e, "");
}

/* Change one base64url character in the middle of member `name`'s ciphertext. */
static char *flip_ct(const char *body, const char *name)
{
    size_t s, e;
    value_span(body, name, &s, &e);
    size_t pos = s + 1 + 5 + 22 + 1 + 22 + 1 + 4;
    assert_true(pos < e - 4);
    char *r = xstrdup_len(body, strlen(body));
    r[pos] = r[pos] == 'A' ? 'B' : 'A';
    return r;
}

/* ---- SSE event lists (our writer ends every event with "\n\n") ------------ */

#define MAX_EVENTS 32
typedef struct events {
    char *ev[MAX_EVENTS];
    size_t n;
} events;

static void split_events(const char *stream, events *out)
{
    out->n = 0;
    const char *p = stream;
    while (*p) {
        const char *e = strstr(p, "\n\n");
        assert_non_null(e);
        assert_true(out->n < MAX_EVENTS);
        out->ev[out->n++] = xstrdup_len(p, (size_t)(e + 2 - p));
        p = e + 2;
    }
}

static char *join_events(const events *ev)
{
    size_t n = 1;
    for (size_t i = 0; i < ev->n; i++) {
        n += strlen(ev->ev[i]);
    }
    char *r = calloc(1, n);
    assert_non_null(r);
    for (size_t i = 0; i < ev->n; i++) {
        strcat(r, ev->ev[i]);
    }
    return r;
}

static void free_events(events *ev)
{
    for (size_t i = 0; i < ev->n; i++) {
        free(ev->ev[i]);
    }
    ev->n = 0;
}

static void drop_event(events *ev, size_t i)
{
    free(ev->ev[i]);
    for (size_t j = i; j + 1 < ev->n; j++) {
        ev->ev[j] = ev->ev[j + 1];
    }
    ev->n--;
}

/* ---- protocol calls shared by generator and checker ------------------------ */

static CF_RESULT lookup_secret1(void *ctx, const char *key_id, uint8_t secret[32])
{
    (void)ctx;
    char id1[23];
    CF_GUARD(cf_proto_key_id(secret1, id1));
    CF_ENSURE(strcmp(key_id, id1) == 0, CF_E_UNKNOWN_KEY);
    memcpy(secret, secret1, 32);
    return CF_OK;
}

static const cf_proto_endpoint *endpoint(const char *name)
{
    const cf_proto_endpoint *ep = NULL;
    assert_cf_ok(cf_proto_endpoint_by_name(cf_slice_cstr(name), &ep));
    return ep;
}

static char *buf_str(cf_buf *b)
{
    char *r = xstrdup_len((const char *)b->data, b->len);
    cf_buf_free(b);
    return r;
}

static char *seal_request(const char *ep, const uint8_t secret[32], const uint8_t salt[16], uint32_t pad,
                          const char *body)
{
    cf_buf out;
    cf_buf_init(&out, 0);
    cf_proto_session *s = NULL;
    cf_proto_seal_options o = {.fixed_salt = salt, .pad_bucket = pad};
    assert_cf_ok(cf_proto_request_seal(endpoint(ep), secret, cf_slice_cstr(body), &o, &out, &s));
    cf_proto_session_free(s);
    return buf_str(&out);
}

/* The worker's view: open the request, then seal a body or a stream. */
static cf_proto_session *worker_session(const char *ep, const char *enc_request, int64_t now)
{
    cf_buf plain;
    cf_buf_init(&plain, 0);
    cf_proto_session *s = NULL;
    cf_proto_open_options o = {.now_ms = now};
    assert_cf_ok(cf_proto_request_open(endpoint(ep), cf_slice_cstr(enc_request), lookup_secret1, NULL, &o, &plain, &s));
    cf_buf_free(&plain);
    return s;
}

static char *seal_response(const char *ep, const char *enc_request, int status, const char *body)
{
    cf_proto_session *s = worker_session(ep, enc_request, NOW_MS);
    cf_buf out;
    cf_buf_init(&out, 0);
    assert_cf_ok(cf_proto_response_seal(s, status, cf_slice_cstr(body), &out));
    cf_proto_session_free(s);
    return buf_str(&out);
}

static char *seal_stream(const char *ep, const char *enc_request, int status, const char *sse)
{
    cf_proto_session *s = worker_session(ep, enc_request, NOW_MS);
    cf_buf out;
    cf_buf_init(&out, 0);
    assert_cf_ok(cf_proto_stream_begin(s, status));
    assert_cf_ok(cf_proto_stream_seal_feed(s, cf_slice_cstr(sse), &out));
    assert_cf_ok(cf_proto_stream_seal_finish(s, &out));
    cf_proto_session_free(s);
    return buf_str(&out);
}

/* ---- the vector set ------------------------------------------------------------ */

static const char chat_body[] =
    "{\"model\":\"llama-3\",\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
    "{\"role\":\"user\",\"content\":\"Caf\\u00e9 \\\"quoted\\\" 1.0e3?\"}],\"temperature\":0.70,"
    "\"max_tokens\":64,\"stream\":false}";
static const char chat_body_pretty[] = "{\n  \"model\": \"llama-3\",\n  \"messages\": [\n    {\"role\": \"user\", "
                                       "\"content\": \"Hi\"}\n  ],\n  \"n\": 1,\n  \"seed\": 7\n}\n";
static const char plain_only_body[] = "{\"model\":\"llama-3\",\"max_tokens\":1}";
static const char embed_body[] = "{\"model\":\"embed-small\",\"input\":[\"hello\",\"world\"],\"encoding_format\":\"float\"}";
static const char stream_req_body[] =
    "{\"model\":\"llama-3\",\"messages\":[{\"role\":\"user\",\"content\":\"Count to three.\"}],\"stream\":true,"
    "\"stream_options\":{\"include_usage\":true}}";
static const char chat_resp[] =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1764115200,\"model\":\"llama-3\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Bonjour.\"},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}";
static const char error_resp[] =
    "{\"error\":{\"message\":\"context too long\",\"type\":\"invalid_request_error\",\"code\":\"context_length_exceeded\"}}";
static const char embed_resp[] = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.1,-0.2]},"
                                 "{\"object\":\"embedding\",\"index\":1,\"embedding\":[0.3,0.4]}],\"model\":\"embed-small\","
                                 "\"usage\":{\"prompt_tokens\":2,\"total_tokens\":2}}";
#define CHUNK(content)                                                                                                 \
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1764115200,\"model\":\"llama-3\","   \
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" content "\"},\"finish_reason\":null}]}\n\n"
static const char stream_plain[] =
    CHUNK("One") CHUNK(", two") CHUNK(", three.")
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1764115200,\"model\":\"llama-3\","
    "\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":5,\"total_tokens\":14}}\n\n"
    "data: [DONE]\n\n";
static const char stream_plain_no_done[] = CHUNK("Yes") CHUNK(".");

typedef struct vec_ctx {
    json_t *list;
} vec_ctx;

static void hex_field(json_t *o, const char *key, const uint8_t *p, size_t n)
{
    char hex[129];
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(p, n), hex, sizeof hex));
    json_object_set_new(o, key, json_string(hex));
}

static void add(vec_ctx *c, const char *name, const char *kind, const char *ep, int status, uint32_t pad,
                const uint8_t salt[16], const char *enc_request, const char *encrypted, const char *plain,
                const char *expect)
{
    json_t *v = json_object();
    char salt_b64[23];
    uint8_t prk[32], k_req[32], k_resp[32];
    assert_cf_ok(cf_b64url_encode_str(cf_slice_make(salt, 16), salt_b64, sizeof salt_b64));
    assert_cf_ok(cf_hkdf_sha256_extract(cf_slice_make(salt, 16), cf_slice_make(secret1, 32), prk));
    assert_cf_ok(cf_hkdf_sha256_expand(cf_slice_make(prk, 32), cf_slice_cstr("confide/v1 request"), k_req, 32));
    assert_cf_ok(cf_hkdf_sha256_expand(cf_slice_make(prk, 32), cf_slice_cstr("confide/v1 response"), k_resp, 32));
    json_object_set_new(v, "name", json_string(name));
    json_object_set_new(v, "kind", json_string(kind));
    json_object_set_new(v, "endpoint", json_string(ep));
    json_object_set_new(v, "status", json_integer(status));
    json_object_set_new(v, "now_ms", json_integer(NOW_MS));
    json_object_set_new(v, "pad_bucket", json_integer(pad));
    json_object_set_new(v, "salt", json_string(salt_b64));
    hex_field(v, "prk", prk, 32);
    hex_field(v, "k_req", k_req, 32);
    hex_field(v, "k_resp", k_resp, 32);
    if (enc_request != NULL) {
        json_object_set_new(v, "encrypted_request", json_string(enc_request));
    }
    json_object_set_new(v, "encrypted", json_string(encrypted));
    if (plain != NULL) {
        json_object_set_new(v, "plain", json_string(plain));
    }
    json_object_set_new(v, "expect", json_string(expect));
    json_array_append_new(c->list, v);
}

static char *generate(void)
{
    vec_ctx c = {json_array()};
    uint8_t salt[16];
    char *t;
    char id1[23], id2[23];
    assert_cf_ok(cf_proto_key_id(secret1, id1));
    assert_cf_ok(cf_proto_key_id(secret2, id2));

    /* Requests. */
    make_salt(salt, NOW_MS - 1000, 1);
    char *chat = seal_request("chat.completions", secret1, salt, 0, chat_body);
    add(&c, "chat request", "request", "chat.completions", 0, 0, salt, NULL, chat, chat_body, "ok");
    t = flip_ct(chat, "messages");
    add(&c, "chat request, one ciphertext character changed", "request", "chat.completions", 0, 0, salt, NULL, t,
        NULL, "auth_failed");
    free(t);
    t = replace_first(chat, "\"model\":\"llama-3\"", "\"model\":\"llama-4\"");
    add(&c, "chat request, plain field model changed", "request", "chat.completions", 0, 0, salt, NULL, t, NULL,
        "auth_failed");
    free(t);
    t = replace_first(chat, "\"max_tokens\":64", "\"max_tokens\":6400");
    add(&c, "chat request, plain field max_tokens changed", "request", "chat.completions", 0, 0, salt, NULL, t, NULL,
        "auth_failed");
    free(t);
    t = swap_values(chat, "messages", "temperature");
    add(&c, "chat request, encrypted values of two fields swapped", "request", "chat.completions", 0, 0, salt, NULL, t,
        NULL, "auth_failed");
    free(t);
    t = remove_member(chat, "temperature");
    add(&c, "chat request, last encrypted field dropped", "request", "chat.completions", 0, 0, salt, NULL, t, NULL,
        "truncated");
    free(t);
    {
        size_t s, e;
        value_span(chat, "temperature", &s, &e);
        t = splice(chat, s, e, "0.70");
    }
    add(&c, "chat request, a field sent in plaintext", "request", "chat.completions", 0, 0, salt, NULL, t, NULL,
        "plaintext_field");
    free(t);
    t = replace_first(chat, "\"stream\":false", "\"stream\":false,\"model\":\"llama-3\"");
    add(&c, "chat request, duplicate top-level key", "request", "chat.completions", 0, 0, salt, NULL, t, NULL,
        "duplicate_key");
    free(t);
    t = replace_first(chat, "\"cf1n:", "\"cf2n:");
    add(&c, "chat request, unsupported version prefix", "request", "chat.completions", 0, 0, salt, NULL, t, NULL,
        "unsupported_version");
    free(t);
    add(&c, "chat request, decoded as another endpoint", "request", "completions", 0, 0, salt, NULL, chat, NULL,
        "auth_failed");
    free(chat);

    make_salt(salt, NOW_MS - 2000, 2);
    char *other = seal_request("chat.completions", secret2, salt, 0, chat_body);
    add(&c, "chat request under a key the worker does not have", "request", "chat.completions", 0, 0, salt, NULL,
        other, NULL, "unknown_key");
    t = other;
    while (strstr(t, id2) != NULL) {
        char *n = replace_first(t, id2, id1);
        if (t != other) {
            free(t);
        }
        t = n;
    }
    add(&c, "chat request encrypted with another key under this key id", "request", "chat.completions", 0, 0, salt,
        NULL, t, NULL, "auth_failed");
    free(t);
    free(other);

    make_salt(salt, NOW_MS - 6 * 60 * 1000, 3);
    t = seal_request("chat.completions", secret1, salt, 0, chat_body);
    add(&c, "chat request with a salt 6 minutes old", "request", "chat.completions", 0, 0, salt, NULL, t, NULL,
        "stale_request");
    free(t);
    make_salt(salt, NOW_MS + 6 * 60 * 1000, 4);
    t = seal_request("chat.completions", secret1, salt, 0, chat_body);
    add(&c, "chat request with a salt 6 minutes in the future", "request", "chat.completions", 0, 0, salt, NULL, t,
        NULL, "stale_request");
    free(t);

    make_salt(salt, NOW_MS - 3000, 5);
    t = seal_request("chat.completions", secret1, salt, 64, chat_body_pretty);
    add(&c, "chat request, pretty-printed, values padded to 64 bytes", "request", "chat.completions", 0, 64, salt, NULL,
        t, chat_body_pretty, "ok");
    free(t);

    make_salt(salt, NOW_MS - 4000, 6);
    t = seal_request("chat.completions", secret1, salt, 0, plain_only_body);
    add(&c, "request with plain fields only (synthetic member)", "request", "chat.completions", 0, 0, salt, NULL, t,
        plain_only_body, "ok");
    char *t2 = replace_first(t, ",\"confide\":", ",\"x\":0,\"confide\":");
    add(&c, "plain-only request with an injected plaintext member", "request", "chat.completions", 0, 0, salt, NULL, t2,
        NULL, "plaintext_field");
    free(t2);
    {
        size_t s, e;
        value_span(t, "confide", &s, &e);
        /* Remove ,"confide":"…" entirely: no encrypted value left. */
        t2 = splice(t, s - strlen(",\"confide\":"), e, "");
    }
    add(&c, "plain-only request with its synthetic member removed", "request", "chat.completions", 0, 0, salt, NULL, t2,
        NULL, "plaintext_field");
    free(t2);
    free(t);

    /* Embeddings. */
    make_salt(salt, NOW_MS - 5000, 7);
    char *emb = seal_request("embeddings", secret1, salt, 0, embed_body);
    add(&c, "embeddings request", "request", "embeddings", 0, 0, salt, NULL, emb, embed_body, "ok");
    t = seal_response("embeddings", emb, 200, embed_resp);
    add(&c, "embeddings response", "response", "embeddings", 200, 0, salt, emb, t, embed_resp, "ok");
    free(t);

    /* Non-streamed responses. */
    make_salt(salt, NOW_MS - 1000, 1);
    chat = seal_request("chat.completions", secret1, salt, 0, chat_body);
    char *resp = seal_response("chat.completions", chat, 200, chat_resp);
    add(&c, "chat response", "response", "chat.completions", 200, 0, salt, chat, resp, chat_resp, "ok");
    t = replace_first(resp, "\"total_tokens\":15", "\"total_tokens\":1");
    add(&c, "chat response, plain usage changed", "response", "chat.completions", 200, 0, salt, chat, t, NULL,
        "auth_failed");
    free(t);
    add(&c, "chat response checked against another status", "response", "chat.completions", 500, 0, salt, chat, resp,
        NULL, "auth_failed");
    {
        /* The request's encrypted values, replayed as a response body. */
        size_t ms, me, ts, te;
        value_span(chat, "messages", &ms, &me);
        value_span(chat, "temperature", &ts, &te);
        char *vm = xstrdup_len(chat + ms, me - ms), *vt = xstrdup_len(chat + ts, te - ts);
        size_t n = strlen(vm) + strlen(vt) + 64;
        t = malloc(n);
        assert_non_null(t);
        snprintf(t, n, "{\"id\":\"chatcmpl-1\",\"messages\":%s,\"temperature\":%s}", vm, vt);
        free(vm);
        free(vt);
    }
    add(&c, "request ciphertexts reflected into the response", "response", "chat.completions", 200, 0, salt, chat, t,
        NULL, "auth_failed");
    free(t);
    t = remove_member(resp, "object");
    add(&c, "chat response, last encrypted field dropped", "response", "chat.completions", 200, 0, salt, chat, t, NULL,
        "truncated");
    free(t);
    free(resp);
    t = seal_response("chat.completions", chat, 400, error_resp);
    add(&c, "error response (status 400) from the inference server", "response", "chat.completions", 400, 0, salt,
        chat, t, error_resp, "ok");
    free(t);
    free(chat);

    /* Streams. */
    make_salt(salt, NOW_MS - 7000, 8);
    char *sreq = seal_request("chat.completions", secret1, salt, 0, stream_req_body);
    add(&c, "streamed chat request", "request", "chat.completions", 0, 0, salt, NULL, sreq, stream_req_body, "ok");
    char *stream = seal_stream("chat.completions", sreq, 200, stream_plain);
    add(&c, "streamed chat response: 4 events, final event, [DONE]", "stream", "chat.completions", 200, 0, salt, sreq,
        stream, stream_plain, "ok");
    events ev;
    /* events: 0..3 data, 4 final, 5 [DONE] */
    split_events(stream, &ev);
    assert_int_equal(ev.n, 6);
    char *tmp = ev.ev[1];
    ev.ev[1] = ev.ev[2];
    ev.ev[2] = tmp;
    t = join_events(&ev);
    add(&c, "stream with two events swapped", "stream", "chat.completions", 200, 0, salt, sreq, t, NULL, "auth_failed");
    free(t);
    free_events(&ev);
    split_events(stream, &ev);
    drop_event(&ev, 3);
    t = join_events(&ev);
    add(&c, "stream with its last data event dropped", "stream", "chat.completions", 200, 0, salt, sreq, t, NULL,
        "auth_failed");
    free(t);
    free_events(&ev);
    split_events(stream, &ev);
    drop_event(&ev, 4);
    t = join_events(&ev);
    add(&c, "stream with its final event dropped", "stream", "chat.completions", 200, 0, salt, sreq, t, NULL,
        "truncated");
    free(t);
    free_events(&ev);
    split_events(stream, &ev);
    drop_event(&ev, 5);
    drop_event(&ev, 4);
    t = join_events(&ev);
    add(&c, "stream cut before its final event", "stream", "chat.completions", 200, 0, salt, sreq, t, NULL,
        "truncated");
    free(t);
    free_events(&ev);
    split_events(stream, &ev);
    free(ev.ev[2]);
    ev.ev[2] = xstrdup_len("data: {\"id\":\"chatcmpl-2\"}\n\n", 27);
    t = join_events(&ev);
    add(&c, "stream with a plaintext event injected", "stream", "chat.completions", 200, 0, salt, sreq, t, NULL,
        "plaintext_field");
    free(t);
    free_events(&ev);
    t = replace_first(stream, "\"total_tokens\":14", "\"total_tokens\":4");
    add(&c, "stream with the plain usage of an event changed", "stream", "chat.completions", 200, 0, salt, sreq, t,
        NULL, "auth_failed");
    free(t);
    free(stream);
    t = seal_stream("chat.completions", sreq, 200, stream_plain_no_done);
    add(&c, "streamed response ending without [DONE] (final event at the end)", "stream", "chat.completions", 200, 0,
        salt, sreq, t, stream_plain_no_done, "ok");
    free(t);
    free(sreq);

    json_t *root = json_object();
    char b64[64];
    json_object_set_new(root, "protocol", json_string("confide/v1"));
    json_object_set_new(root, "generator",
                        json_string("build/default/tests/test_protocol_vectors --generate tests/vectors/protocol-v1.json"));
    assert_cf_ok(cf_b64url_encode_str(cf_slice_make(secret1, 32), b64, sizeof b64));
    json_object_set_new(root, "secret", json_string(b64));
    json_object_set_new(root, "key_id", json_string(id1));
    assert_cf_ok(cf_b64url_encode_str(cf_slice_make(secret2, 32), b64, sizeof b64));
    json_object_set_new(root, "other_secret", json_string(b64));
    json_object_set_new(root, "other_key_id", json_string(id2));
    json_object_set_new(root, "vectors", c.list);
    char *text = json_dumps(root, JSON_INDENT(1));
    json_decref(root);
    free(emb);
    assert_non_null(text);
    size_t n = strlen(text);
    char *with_nl = realloc(text, n + 2);
    assert_non_null(with_nl);
    with_nl[n] = '\n';
    with_nl[n + 1] = 0;
    return with_nl;
}

/* ---- checker ----------------------------------------------------------------------- */

static const char *vectors_file(void)
{
    static char path[4096];
    const char *env = getenv("CONFIDE_PROTOCOL_VECTORS");
    if (env != NULL) {
        return env;
    }
    FILE *f = fopen("tests/vectors/protocol-v1.json", "rb");
    if (f != NULL) {
        fclose(f);
        return "tests/vectors/protocol-v1.json";
    }
    const char *build = getenv("CONFIDE_BUILD");
    snprintf(path, sizeof path, "%s/../../tests/vectors/protocol-v1.json", build ? build : ".");
    return path;
}

/* Decode one vector; returns the error code (CF_E_OK on success). */
static cf_error_code run_vector(json_t *v, cf_buf *out)
{
    const char *kind = json_string_value(json_object_get(v, "kind"));
    const char *ep_name = json_string_value(json_object_get(v, "endpoint"));
    const char *enc = json_string_value(json_object_get(v, "encrypted"));
    int status = (int)json_integer_value(json_object_get(v, "status"));
    int64_t now = (int64_t)json_integer_value(json_object_get(v, "now_ms"));
    const cf_proto_endpoint *ep = endpoint(ep_name);
    cf_proto_session *s = NULL;
    cf_result r;
    cf_error_clear();
    if (strcmp(kind, "request") == 0) {
        cf_proto_open_options o = {.now_ms = now};
        r = cf_proto_request_open(ep, cf_slice_cstr(enc), lookup_secret1, NULL, &o, out, &s);
    } else {
        const char *req = json_string_value(json_object_get(v, "encrypted_request"));
        assert_cf_ok(cf_proto_session_from_request(ep, secret1, cf_slice_cstr(req), &s));
        if (strcmp(kind, "response") == 0) {
            r = cf_proto_response_open(s, status, cf_slice_cstr(enc), out);
        } else {
            assert_cf_ok(cf_proto_stream_begin(s, status));
            r = cf_proto_stream_open_feed(s, cf_slice_cstr(enc), out);
            if (cf_is_ok(r)) {
                r = cf_proto_reply_finish(s);
            }
        }
    }
    cf_proto_session_free(s);
    return cf_is_ok(r) ? CF_E_OK : cf_error_code_last();
}

static void test_vectors_decode_as_committed(void **state)
{
    (void)state;
    json_error_t err;
    json_t *root = json_load_file(vectors_file(), 0, &err);
    if (root == NULL) {
        fail_msg("cannot read %s: %s", vectors_file(), err.text);
    }
    char id1[23];
    assert_cf_ok(cf_proto_key_id(secret1, id1));
    assert_string_equal(json_string_value(json_object_get(root, "key_id")), id1);
    json_t *list = json_object_get(root, "vectors");
    size_t i, pos = 0, neg = 0;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        cf_buf out;
        cf_buf_init(&out, 0);
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *expect = json_string_value(json_object_get(v, "expect"));
        cf_error_code code = run_vector(v, &out);
        if (strcmp(cf_error_name(code), expect) != 0) {
            fail_msg("vector '%s': expected %s, got %s (%s)", name, expect, cf_error_name(code),
                     cf_error_last()->detail);
        }
        if (code == CF_E_OK) {
            const char *plain = json_string_value(json_object_get(v, "plain"));
            assert_non_null(plain);
            assert_int_equal(out.len, strlen(plain));
            assert_memory_equal(out.data, plain, out.len);
            pos++;
        } else {
            /* A failed body decode leaves nothing behind. (A stream releases
             * each event once it authenticated; what failed is never released,
             * and test_protocol checks the released prefix is genuine.) */
            if (strcmp(json_string_value(json_object_get(v, "kind")), "stream") != 0) {
                assert_int_equal(out.len, 0);
            }
            neg++;
        }
        cf_buf_free(&out);
    }
    print_message("protocol vectors: %zu positive, %zu negative\n", pos, neg);
    assert_true(pos >= 9 && neg >= 20);
    json_decref(root);
}

static void test_regeneration_is_byte_identical(void **state)
{
    (void)state;
    char *fresh = generate();
    cf_buf committed;
    cf_buf_init(&committed, 0);
    cf_test_read_file(vectors_file(), false, &committed);
    if (committed.len != strlen(fresh) || memcmp(committed.data, fresh, committed.len) != 0) {
        fail_msg("%s differs from the generator's output: regenerate with --generate and review the diff",
                 vectors_file());
    }
    cf_buf_free(&committed);
    free(fresh);
}

/* The generator's own output also checks out (independent of the file). */
static void test_generated_vectors_decode(void **state)
{
    (void)state;
    char *fresh = generate();
    json_error_t err;
    json_t *root = json_loads(fresh, 0, &err);
    assert_non_null(root);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(root, "vectors"), i, v)
    {
        cf_buf out;
        cf_buf_init(&out, 0);
        cf_error_code code = run_vector(v, &out);
        assert_string_equal(cf_error_name(code), json_string_value(json_object_get(v, "expect")));
        cf_buf_free(&out);
    }
    json_decref(root);
    free(fresh);
}

int main(int argc, char **argv)
{
    init_secrets();
    if (argc == 3 && strcmp(argv[1], "--generate") == 0) {
        char *text = generate();
        FILE *f = fopen(argv[2], "wb");
        if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
            perror(argv[2]);
            return 1;
        }
        free(text);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_decode_as_committed),
        cmocka_unit_test(test_regeneration_is_byte_identical),
        cmocka_unit_test(test_generated_vectors_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
