/* test_protocol.c — field codec, streams, replay guard and the client API of
 * wire protocol v1 (docs/protocol.md). The committed vectors are checked by
 * test_protocol_vectors.c. */
#include "test_helper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confide/client.h"
#include "confide/crypto.h"
#include "confide/json.h"
#include "confide/protocol.h"
#include "confide/replay.h"

#define NOW INT64_C(1764115200000)
#define WINDOW CF_REPLAY_DEFAULT_WINDOW_MS

static uint8_t secret[32];

/* Buffers are not NUL-terminated; make one a C string for strstr & co. */
static const char *cstr(cf_buf *b)
{
    const char *unused = NULL;
    assert_cf_ok(cf_buf_cstr(b, &unused));
    return (const char *)b->data;
}

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < 32; i++) {
        secret[i] = (uint8_t)(7 * i + 1);
    }
    return 0;
}

static CF_RESULT lookup(void *ctx, const char *key_id, uint8_t out[32])
{
    int *calls = ctx;
    if (calls != NULL) {
        (*calls)++;
    }
    char id[23];
    CF_GUARD(cf_proto_key_id(secret, id));
    CF_ENSURE(strcmp(id, key_id) == 0, CF_E_UNKNOWN_KEY);
    memcpy(out, secret, 32);
    return CF_OK;
}

static CF_RESULT lookup_wrong(void *ctx, const char *key_id, uint8_t out[32])
{
    (void)ctx;
    (void)key_id;
    memset(out, 0x55, 32);
    return CF_OK;
}

static const cf_proto_endpoint *chat(void)
{
    const cf_proto_endpoint *ep = NULL;
    assert_cf_ok(cf_proto_endpoint_by_name(cf_slice_cstr("chat.completions"), &ep));
    return ep;
}

static void seal_req(const char *body, uint32_t pad, int64_t now, cf_buf *out, cf_proto_session **s)
{
    cf_proto_seal_options o = {.now_ms = now, .pad_bucket = pad};
    cf_buf_init(out, 0);
    assert_cf_ok(cf_proto_request_seal(chat(), secret, cf_slice_cstr(body), &o, out, s));
}

static cf_result open_req(cf_slice enc, cf_replay_guard *g, int64_t now, cf_buf *out, cf_proto_session **s)
{
    cf_proto_open_options o = {.now_ms = now, .replay = g};
    return cf_proto_request_open(chat(), enc, lookup, NULL, &o, out, s);
}

static const char body1[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5}";

/* ---- endpoints ----------------------------------------------------------- */

static void test_endpoints(void **state)
{
    (void)state;
    const cf_proto_endpoint *ep;
    assert_cf_ok(cf_proto_endpoint_by_path(cf_slice_cstr("POST"), cf_slice_cstr("/v1/chat/completions"), &ep));
    assert_string_equal(ep->name, "chat.completions");
    assert_cf_ok(cf_proto_endpoint_by_path(cf_slice_cstr("POST"), cf_slice_cstr("/gw/x/v1/completions?a=1"), &ep));
    assert_string_equal(ep->name, "completions");
    assert_cf_ok(cf_proto_endpoint_by_path(cf_slice_cstr("POST"), cf_slice_cstr("/v1/embeddings/"), &ep));
    assert_string_equal(ep->name, "embeddings");
    assert_cf_ok(cf_proto_endpoint_by_path(cf_slice_cstr("GET"), cf_slice_cstr("/v1/models"), &ep));
    assert_false(ep->encrypted);
    assert_cf_error(cf_proto_endpoint_by_path(cf_slice_cstr("GET"), cf_slice_cstr("/v1/chat/completions"), &ep),
                    CF_E_UNKNOWN_ENDPOINT);
    assert_null(ep);
    assert_cf_error(cf_proto_endpoint_by_path(cf_slice_cstr("POST"), cf_slice_cstr("/xv1/chat/completions"), &ep),
                    CF_E_UNKNOWN_ENDPOINT);
    assert_cf_error(cf_proto_endpoint_by_path(cf_slice_cstr("POST"), cf_slice_cstr("/v1/audio/speech"), &ep),
                    CF_E_UNKNOWN_ENDPOINT);
    assert_cf_error(cf_proto_endpoint_by_name(cf_slice_cstr("chat"), &ep), CF_E_UNKNOWN_ENDPOINT);
    /* The plain tables of DESIGN §4.8. */
    assert_cf_ok(cf_proto_endpoint_by_name(cf_slice_cstr("embeddings"), &ep));
    assert_string_equal(ep->request_plain[0], "model");
    assert_null(ep->request_plain[1]);
    /* Sealing an unencrypted endpoint is refused. */
    cf_buf out;
    cf_buf_init(&out, 0);
    cf_proto_session *s = NULL;
    assert_cf_ok(cf_proto_endpoint_by_name(cf_slice_cstr("models"), &ep));
    assert_cf_error(cf_proto_request_seal(ep, secret, cf_slice_cstr("{}"), NULL, &out, &s), CF_E_INVALID_ARGUMENT);
    cf_buf_free(&out);
}

/* key_id = b64u(SHA-256("confide/v1 key-id" || K)[0..16)), computed
 * independently with Python's hashlib for K = 00..1f. */
static void test_key_id_known_answer(void **state)
{
    (void)state;
    uint8_t k[32];
    char id[23];
    for (int i = 0; i < 32; i++) {
        k[i] = (uint8_t)i;
    }
    assert_cf_ok(cf_proto_key_id(k, id));
    assert_string_equal(id, "RDxb-UX6ELNTL9OJxJI3tA");
    assert_cf_ok(cf_client_key_id(k, id));
    assert_string_equal(id, "RDxb-UX6ELNTL9OJxJI3tA");
}

/* ---- requests ------------------------------------------------------------- */

static void roundtrip(const char *body, uint32_t pad)
{
    cf_buf enc, plain;
    cf_proto_session *cs = NULL, *ws = NULL;
    seal_req(body, pad, NOW, &enc, &cs);
    cf_buf_init(&plain, 0);
    assert_cf_ok(open_req(cf_buf_slice(&enc), NULL, NOW, &plain, &ws));
    assert_int_equal(plain.len, strlen(body));
    assert_memory_equal(plain.data, body, plain.len);
    assert_string_equal(cf_proto_session_key_id(cs), cf_proto_session_key_id(ws));
    assert_true(cf_proto_session_salt_ms(ws) == NOW);
    cf_proto_session_free(cs);
    cf_proto_session_free(ws);
    cf_buf_free(&enc);
    cf_buf_free(&plain);
}

static void test_request_roundtrips_byte_exact(void **state)
{
    (void)state;
    roundtrip(body1, 0);
    roundtrip(body1, 1);
    roundtrip(body1, 256);
    roundtrip("{}", 0);
    roundtrip(" {\n\t\"model\" : \"m\" ,\r\n \"x\":1e400, \"y\" : \"\\ud83d\\ude00\\u00e9\u00e9\" } \n", 16);
    roundtrip("{\"a\":{\"b\":[1,2,{\"c\":null}]},\"b\":true,\"c\":false,\"d\":null,\"e\":-0.0e-0}", 0);
    roundtrip("{\"stream\":true}", 0);
    roundtrip("{\"messages\":[]}", 0);
}

static void test_padding_hides_lengths(void **state)
{
    (void)state;
    cf_buf a, b;
    cf_proto_session *s1 = NULL, *s2 = NULL;
    seal_req("{\"messages\":\"short\"}", 128, NOW, &a, &s1);
    seal_req("{\"messages\":\"a somewhat longer prompt than the other\"}", 128, NOW, &b, &s2);
    assert_int_equal(a.len, b.len);
    cf_buf_free(&a);
    cf_buf_free(&b);
    cf_proto_session_free(s1);
    cf_proto_session_free(s2);
    cf_proto_seal_options o = {.now_ms = NOW, .pad_bucket = CF_PROTO_MAX_PAD_BUCKET + 1};
    cf_buf_init(&a, 0);
    s1 = NULL;
    assert_cf_error(cf_proto_request_seal(chat(), secret, cf_slice_cstr("{}"), &o, &a, &s1), CF_E_INVALID_ARGUMENT);
    assert_null(s1);
    cf_buf_free(&a);
}

static void test_request_shape_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        cf_error_code code;
    } cases[] = {
        {"[1,2]", CF_E_MALFORMED},
        {"\"x\"", CF_E_MALFORMED},
        {"{\"a\":1,}", CF_E_MALFORMED},
        {"{\"a\":1,\"a\":2}", CF_E_DUPLICATE_KEY},
        {"{\"a\":1,\"\\u0061\":2}", CF_E_DUPLICATE_KEY},
        {"{\"mod\\u0065l\":\"m\"}", CF_E_MALFORMED},
        {"{\"confide\":1}", CF_E_MALFORMED},
        {"", CF_E_MALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cf_buf out;
        cf_buf_init(&out, 0);
        cf_proto_session *s = NULL;
        cf_result r = cf_proto_request_seal(chat(), secret, cf_slice_cstr(cases[i].body), NULL, &out, &s);
        if (cf_is_ok(r) || cf_error_code_last() != cases[i].code) {
            fail_msg("case %zu: expected %s, got %s", i, cf_error_name(cases[i].code),
                     cf_is_ok(r) ? "ok" : cf_error_name(cf_error_code_last()));
        }
        assert_null(s);
        assert_int_equal(out.len, 0);
        /* The decoder rejects the same shapes before any key lookup. */
        int calls = 0;
        cf_proto_open_options o = {.now_ms = NOW};
        r = cf_proto_request_open(chat(), cf_slice_cstr(cases[i].body), lookup, &calls, &o, &out, &s);
        assert_true(cf_is_error(r));
        assert_int_equal(calls, 0);
        cf_buf_free(&out);
    }
    /* Too many members. */
    cf_buf big, out;
    cf_buf_init(&big, 0);
    cf_buf_init(&out, 0);
    assert_cf_ok(cf_buf_append_cstr(&big, "{"));
    for (int i = 0; i <= CF_PROTO_MAX_MEMBERS; i++) {
        assert_cf_ok(cf_buf_appendf(&big, "%s\"f%d\":%d", i ? "," : "", i, i));
    }
    assert_cf_ok(cf_buf_append_cstr(&big, "}"));
    cf_proto_session *s = NULL;
    assert_cf_error(cf_proto_request_seal(chat(), secret, cf_buf_slice(&big), NULL, &out, &s), CF_E_LIMIT);
    cf_buf_free(&big);
    cf_buf_free(&out);
}

static void test_request_decode_errors(void **state)
{
    (void)state;
    cf_buf enc, out;
    cf_proto_session *cs = NULL, *ws = NULL;
    seal_req(body1, 0, NOW, &enc, &cs);
    cf_buf_init(&out, 0);
    assert_cf_ok(cf_buf_append_cstr(&out, "keep"));
    const char *e = cstr(&enc);

    /* The key ID and salt time can be read without the key. */
    char peek_id[23];
    int64_t peek_ms = 0;
    assert_cf_ok(cf_proto_request_peek(chat(), cf_buf_slice(&enc), peek_id, &peek_ms));
    assert_string_equal(peek_id, cf_proto_session_key_id(cs));
    assert_true(peek_ms == NOW);
    assert_cf_error(cf_proto_request_peek(chat(), cf_slice_cstr(body1), peek_id, &peek_ms), CF_E_PLAINTEXT_FIELD);

    /* Unknown key: the lookup fails. */
    cf_proto_open_options o = {.now_ms = NOW};
    uint8_t saved = secret[0];
    secret[0] ^= 1;
    assert_cf_error(cf_proto_request_open(chat(), cf_buf_slice(&enc), lookup, NULL, &o, &out, &ws), CF_E_UNKNOWN_KEY);
    secret[0] = saved;
    /* A key store returning a secret of another key id. */
    assert_cf_error(cf_proto_request_open(chat(), cf_buf_slice(&enc), lookup_wrong, NULL, &o, &out, &ws),
                    CF_E_UNKNOWN_KEY);
    /* Freshness window, both directions, boundaries included. */
    assert_cf_ok(open_req(cf_buf_slice(&enc), NULL, NOW + WINDOW, &out, &ws));
    cf_proto_session_free(ws);
    ws = NULL;
    out.len = 4;
    assert_cf_ok(open_req(cf_buf_slice(&enc), NULL, NOW - WINDOW, &out, &ws));
    cf_proto_session_free(ws);
    ws = NULL;
    out.len = 4;
    assert_cf_error(open_req(cf_buf_slice(&enc), NULL, NOW + WINDOW + 1, &out, &ws), CF_E_STALE);
    assert_cf_error(open_req(cf_buf_slice(&enc), NULL, NOW - WINDOW - 1, &out, &ws), CF_E_STALE);
    /* Mixed salts: splice one of two values from another request. */
    cf_buf enc2, enc3;
    cf_proto_session *cs2 = NULL, *cs3 = NULL;
    const char *two = "{\"messages\":[1],\"temperature\":1}";
    seal_req(two, 0, NOW, &enc2, &cs2);
    seal_req(two, 0, NOW, &enc3, &cs3);
    cf_slice v1, v2;
    assert_cf_ok(cf_json_lookup(cf_buf_slice(&enc3), NULL, cf_slice_cstr("messages"), &v1, NULL));
    assert_cf_ok(cf_json_lookup(cf_buf_slice(&enc2), NULL, cf_slice_cstr("messages"), &v2, NULL));
    assert_int_equal(v1.len, v2.len);
    cf_buf mixed;
    cf_buf_init(&mixed, 0);
    assert_cf_ok(cf_buf_append(&mixed, enc3.data, (size_t)(v1.ptr - enc3.data)));
    assert_cf_ok(cf_buf_append_slice(&mixed, v2));
    assert_cf_ok(cf_buf_append(&mixed, v1.ptr + v1.len, enc3.len - (size_t)(v1.ptr + v1.len - enc3.data)));
    assert_cf_error(open_req(cf_buf_slice(&mixed), NULL, NOW, &out, &ws), CF_E_BAD_CIPHERTEXT);
    /* Bad encodings of the value parts. */
    static const char *const bad_values[] = {
        "\"cf1x:", "\"cf1n;", "\"cf1nA", "\"cf10:",
    };
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        cf_buf t;
        cf_buf_init(&t, 0);
        const char *p = strstr(e, "\"cf1f:");
        assert_non_null(p);
        assert_cf_ok(cf_buf_append(&t, e, (size_t)(p - e)));
        assert_cf_ok(cf_buf_append_cstr(&t, bad_values[i]));
        assert_cf_ok(cf_buf_append_cstr(&t, p + 6));
        cf_result r = open_req(cf_buf_slice(&t), NULL, NOW, &out, &ws);
        assert_true(cf_is_error(r));
        cf_error_code c = cf_error_code_last();
        assert_true(c == CF_E_BAD_CIPHERTEXT || c == CF_E_UNSUPPORTED_VERSION);
        cf_buf_free(&t);
    }
    /* Nothing was ever appended on failure. */
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "keep", 4);
    assert_null(ws);
    cf_buf_free(&mixed);
    cf_buf_free(&enc2);
    cf_buf_free(&enc3);
    cf_buf_free(&enc);
    cf_buf_free(&out);
    cf_proto_session_free(cs);
    cf_proto_session_free(cs2);
    cf_proto_session_free(cs3);
}

/* Flipping any single byte of an encrypted body makes decoding fail. */
static void test_every_byte_flip_of_a_request_fails(void **state)
{
    (void)state;
    cf_buf enc, out;
    cf_proto_session *cs = NULL, *ws = NULL;
    seal_req("{\"model\":\"m\",\"messages\":[1],\"n\":1,\"x\":\"y\"}", 0, NOW, &enc, &cs);
    cf_buf_init(&out, 0);
    static const uint8_t masks[] = {0x01, 0x02, 0x20, 0x80};
    size_t nmasks = cf_test_under_valgrind() ? 1 : sizeof masks;
    size_t tried = 0;
    for (size_t i = 0; i < enc.len; i++) {
        for (size_t m = 0; m < nmasks; m++) {
            enc.data[i] ^= masks[m];
            cf_result r = open_req(cf_buf_slice(&enc), NULL, NOW, &out, &ws);
            if (cf_is_ok(r)) {
                fail_msg("flipping byte %zu with %02x still decodes", i, masks[m]);
            }
            assert_int_equal(out.len, 0);
            enc.data[i] ^= masks[m];
            tried++;
        }
    }
    assert_cf_ok(open_req(cf_buf_slice(&enc), NULL, NOW, &out, &ws));
    print_message("request: %zu single-byte flips of a %zu-byte body all rejected\n", tried, enc.len);
    cf_proto_session_free(ws);
    cf_proto_session_free(cs);
    cf_buf_free(&enc);
    cf_buf_free(&out);
}

/* ---- replay ---------------------------------------------------------------- */

static void test_replay_guard_rejects_second_use(void **state)
{
    (void)state;
    cf_replay_guard *g = NULL;
    assert_cf_ok(cf_replay_new(4, 0, &g));
    cf_buf enc, out;
    cf_proto_session *cs = NULL, *ws = NULL;
    seal_req(body1, 0, NOW, &enc, &cs);
    cf_buf_init(&out, 0);
    /* A forged request does not occupy memory. */
    const char *text = cstr(&enc);
    /* 60 characters into the value is well inside the ciphertext's base64url
     * (6 + 22 + 1 + 22 + 1 = 52 characters precede it) and not its last
     * character, so swapping it for another alphabet character keeps the
     * encoding canonical and changes the decoded bytes: authentication, not
     * parsing, must fail. (Flipping a bit could leave the alphabet.) */
    size_t ct = (size_t)(strstr(text, "\"cf1") - text) + 60;
    uint8_t original = enc.data[ct];
    enc.data[ct] = (uint8_t)(original == 'A' ? 'B' : 'A');
    assert_cf_error(open_req(cf_buf_slice(&enc), g, NOW, &out, &ws), CF_E_AUTH_FAILED);
    assert_int_equal(cf_replay_count(g), 0);
    enc.data[ct] = original;
    assert_cf_ok(open_req(cf_buf_slice(&enc), g, NOW, &out, &ws));
    assert_int_equal(cf_replay_count(g), 1);
    cf_proto_session_free(ws);
    ws = NULL;
    out.len = 0;
    assert_cf_error(open_req(cf_buf_slice(&enc), g, NOW + 1000, &out, &ws), CF_E_REPLAY);
    assert_int_equal(out.len, 0);
    /* Still remembered at the far end of the window. */
    assert_cf_error(open_req(cf_buf_slice(&enc), g, NOW + WINDOW, &out, &ws), CF_E_REPLAY);
    /* Later it is stale, never accepted again. */
    assert_cf_error(open_req(cf_buf_slice(&enc), g, NOW + WINDOW + 1, &out, &ws), CF_E_STALE);
    cf_proto_session_free(cs);
    cf_buf_free(&enc);
    cf_buf_free(&out);
    cf_replay_free(g);
}

static void test_replay_memory_is_bounded_and_fails_closed(void **state)
{
    (void)state;
    cf_replay_guard *g = NULL;
    const int64_t w = 10000;
    assert_cf_ok(cf_replay_new(3, w, &g));
    uint8_t kid[16] = {1}, salt[16] = {0};
    int64_t t = NOW;
    for (int i = 0; i < 8; i++) {
        salt[i] = (uint8_t)(t >> (56 - 8 * i));
    }
    for (uint8_t i = 0; i < 3; i++) {
        salt[15] = i;
        assert_cf_ok(cf_replay_record(g, kid, salt, t));
    }
    salt[15] = 3;
    assert_cf_error(cf_replay_record(g, kid, salt, t), CF_E_REPLAY_FULL);
    assert_cf_error(cf_replay_record(g, kid, salt, t + 2 * w - 1), CF_E_STALE);
    /* A clock going backwards drops nothing. */
    salt[15] = 0;
    assert_cf_error(cf_replay_check(g, kid, salt, t - 5000), CF_E_REPLAY);
    assert_int_equal(cf_replay_count(g), 3);

    cf_replay_free(g);

    assert_cf_error(cf_replay_new(CF_REPLAY_MAX_CAPACITY + 1, 0, &g), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_replay_new(1, 10, &g), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_replay_check_fresh(0, INT64_MAX, WINDOW), CF_E_STALE);
    assert_cf_error(cf_replay_check_fresh(INT64_MAX, INT64_MIN, WINDOW), CF_E_STALE);
    assert_cf_ok(cf_replay_check_fresh(NOW, NOW, 0));
}

/* Generations: a pair recorded at t is remembered at least until t + 2W. */
static void test_replay_generations(void **state)
{
    (void)state;
    cf_replay_guard *g = NULL;
    const int64_t w = 1000;
    assert_cf_ok(cf_replay_new(1000, w, &g));
    uint8_t kid[16] = {2};
    size_t recorded = 0;
    /* Record one pair per 100 ms for 10 windows, each with salt = now. */
    for (int64_t now = NOW; now < NOW + 10 * w; now += 100) {
        uint8_t salt[16] = {0};
        for (int i = 0; i < 8; i++) {
            salt[i] = (uint8_t)(now >> (56 - 8 * i));
        }
        assert_cf_ok(cf_replay_record(g, kid, salt, now));
        recorded++;
        /* Every earlier pair still fresh at `now` must be remembered. */
        for (int64_t back = now - w; back <= now; back += 100) {
            if (back < NOW) {
                continue;
            }
            uint8_t s2[16] = {0};
            for (int i = 0; i < 8; i++) {
                s2[i] = (uint8_t)(back >> (56 - 8 * i));
            }
            assert_cf_error(cf_replay_check(g, kid, s2, now), CF_E_REPLAY);
        }
    }
    /* Memory stays bounded: at most two generations' worth. */
    assert_true(cf_replay_count(g) <= 2 * (size_t)(2 * w / 100 + 1));
    assert_true(cf_replay_count(g) < recorded);
    cf_replay_free(g);
}

/* ---- responses --------------------------------------------------------------- */

static void test_response_roundtrip_and_binding(void **state)
{
    (void)state;
    cf_buf enc, plain, renc, rplain;
    cf_proto_session *cs = NULL, *ws = NULL;
    seal_req(body1, 0, NOW, &enc, &cs);
    cf_buf_init(&plain, 0);
    cf_buf_init(&renc, 0);
    cf_buf_init(&rplain, 0);
    assert_cf_ok(open_req(cf_buf_slice(&enc), NULL, NOW, &plain, &ws));
    const char *resp = "{\"id\":\"r1\",\"choices\":[{\"message\":{\"content\":\"ok\"}}],\"usage\":{\"total_tokens\":3}}";
    /* A non-object reply cannot be sealed, and the session stays usable. */
    assert_cf_error(cf_proto_response_seal(ws, 200, cf_slice_cstr("not json"), &renc), CF_E_MALFORMED);
    assert_int_equal(renc.len, 0);
    assert_cf_ok(cf_proto_response_seal(ws, 200, cf_slice_cstr(resp), &renc));
    assert_cf_error(cf_proto_response_seal(ws, 200, cf_slice_cstr(resp), &renc), CF_E_INVALID_ARGUMENT);
    /* The gateway sees id and usage in clear. */
    assert_non_null(strstr(cstr(&renc), "\"usage\":{\"total_tokens\":3}"));
    assert_null(strstr(cstr(&renc), "\"content\":\"ok\""));
    assert_cf_ok(cf_proto_response_open(cs, 200, cf_buf_slice(&renc), &rplain));
    assert_int_equal(rplain.len, strlen(resp));
    assert_memory_equal(rplain.data, resp, rplain.len);
    assert_cf_ok(cf_proto_reply_finish(cs));
    /* Only once. */
    assert_cf_error(cf_proto_response_open(cs, 200, cf_buf_slice(&renc), &rplain), CF_E_INVALID_ARGUMENT);
    cf_proto_session_free(cs);
    cs = NULL;

    /* Another request's session cannot open it (other salt). */
    cf_buf enc2;
    seal_req(body1, 0, NOW, &enc2, &cs);
    rplain.len = 0;
    assert_cf_error(cf_proto_response_open(cs, 200, cf_buf_slice(&renc), &rplain), CF_E_BAD_CIPHERTEXT);
    assert_int_equal(rplain.len, 0);
    assert_cf_error(cf_proto_reply_finish(cs), CF_E_BAD_CIPHERTEXT);
    cf_proto_session_free(cs);
    cf_proto_session_free(ws);
    cf_buf_free(&enc);
    cf_buf_free(&enc2);
    cf_buf_free(&plain);
    cf_buf_free(&renc);
    cf_buf_free(&rplain);
}

/* ---- streams ------------------------------------------------------------------------ */

static const char stream_in[] =
    ": keep-alive\n"
    "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"He\"}}]}\n\n"
    "id: 7\r\nretry: 10\r\ndata: {\"id\":\"c\",\r\ndata:  \"choices\":[{\"delta\":{\"content\":\"llo\"}}]}\r\n\r\n"
    "event: error\n"
    "data: {\"error\":{\"message\":\"overloaded\"}}\n\n"
    "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"total_tokens\":9}}\n\n"
    "data: [DONE]\n\n";
/* What the client hands the app: events as our writer writes them. */
static const char stream_out[] =
    "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"He\"}}]}\n\n"
    "data: {\"id\":\"c\",\ndata:  \"choices\":[{\"delta\":{\"content\":\"llo\"}}]}\n\n"
    "event: error\n"
    "data: {\"error\":{\"message\":\"overloaded\"}}\n\n"
    "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"total_tokens\":9}}\n\n"
    "data: [DONE]\n\n";

/* Worker side: seal `in` fed in chunks of `step` bytes (0 = whole). */
static void seal_stream(cf_proto_session *ws, const char *in, size_t step, cf_buf *out)
{
    size_t n = strlen(in);
    assert_cf_ok(cf_proto_stream_begin(ws, 200));
    if (step == 0) {
        step = n;
    }
    for (size_t i = 0; i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        assert_cf_ok(cf_proto_stream_seal_feed(ws, cf_slice_make(in + i, k), out));
    }
    assert_cf_ok(cf_proto_stream_seal_finish(ws, out));
}

static cf_result open_stream(cf_proto_session *cs, cf_slice in, size_t step, cf_buf *out)
{
    CF_GUARD(cf_proto_stream_begin(cs, 200));
    if (step == 0) {
        step = in.len ? in.len : 1;
    }
    for (size_t i = 0; i < in.len; i += step) {
        size_t k = in.len - i < step ? in.len - i : step;
        CF_GUARD(cf_proto_stream_open_feed(cs, cf_slice_make(in.ptr + i, k), out));
    }
    return cf_proto_reply_finish(cs);
}

typedef struct pair {
    cf_proto_session *cs, *ws;
    cf_buf enc;
} pair;

static void pair_new(pair *p)
{
    cf_buf plain;
    cf_buf_init(&plain, 0);
    p->cs = p->ws = NULL;
    seal_req("{\"model\":\"m\",\"stream\":true,\"messages\":[]}", 0, NOW, &p->enc, &p->cs);
    assert_cf_ok(open_req(cf_buf_slice(&p->enc), NULL, NOW, &plain, &p->ws));
    cf_buf_free(&plain);
}

static void pair_free(pair *p)
{
    cf_proto_session_free(p->cs);
    cf_proto_session_free(p->ws);
    cf_buf_free(&p->enc);
}

static void test_stream_roundtrip_any_chunking(void **state)
{
    (void)state;
    cf_buf ref;
    cf_buf_init(&ref, 0);
    pair p0;
    pair_new(&p0);
    seal_stream(p0.ws, stream_in, 0, &ref);
    /* The gateway sees usage, not content; the final event precedes [DONE]. */
    assert_non_null(strstr(cstr(&ref), "\"usage\":{\"total_tokens\":9}"));
    assert_null(strstr(cstr(&ref), "overloaded"));
    assert_null(strstr(cstr(&ref), "keep-alive"));
    assert_non_null(strstr(cstr(&ref), "data: {\"confide\":\"cf1f:"));
    assert_non_null(strstr(cstr(&ref), "\"}\n\ndata: [DONE]\n\n"));
    /* Each split of the worker's input gives the same ciphertext stream
     * (salt and keys fixed by the session, so this is deterministic). */
    size_t steps[] = {1, 2, 3, 7, 64};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        pair p;
        pair_new(&p);
        cf_buf enc, dec;
        cf_buf_init(&enc, 0);
        cf_buf_init(&dec, 0);
        seal_stream(p.ws, stream_in, steps[i], &enc);
        assert_cf_ok(open_stream(p.cs, cf_buf_slice(&enc), steps[i], &dec));
        assert_int_equal(dec.len, strlen(stream_out));
        assert_memory_equal(dec.data, stream_out, dec.len);
        assert_true(cf_proto_stream_complete(p.cs));
        cf_buf_free(&enc);
        cf_buf_free(&dec);
        pair_free(&p);
    }
    cf_buf dec;
    cf_buf_init(&dec, 0);
    assert_cf_ok(open_stream(p0.cs, cf_buf_slice(&ref), 0, &dec));
    assert_memory_equal(dec.data, stream_out, dec.len);
    cf_buf_free(&dec);
    cf_buf_free(&ref);
    pair_free(&p0);
}

/* Flipping any single byte of an encrypted stream is detected. */
static void test_every_byte_flip_of_a_stream_fails(void **state)
{
    (void)state;
    pair p;
    pair_new(&p);
    cf_buf enc;
    cf_buf_init(&enc, 0);
    seal_stream(p.ws, "data: {\"id\":\"c\",\"x\":1}\n\ndata: {\"y\":[]}\n\ndata: [DONE]\n\n", 0, &enc);
    size_t tried = 0;
    for (size_t i = 0; i < enc.len; i++) {
        enc.data[i] ^= 0x01;
        cf_proto_session *cs = NULL;
        assert_cf_ok(cf_proto_session_from_request(chat(), secret, cf_buf_slice(&p.enc), &cs));
        cf_buf dec;
        cf_buf_init(&dec, 0);
        if (cf_is_ok(open_stream(cs, cf_buf_slice(&enc), 0, &dec))) {
            fail_msg("flipping byte %zu of the stream still decodes", i);
        }
        cf_buf_free(&dec);
        cf_proto_session_free(cs);
        enc.data[i] ^= 0x01;
        tried++;
    }
    print_message("stream: %zu single-byte flips all rejected\n", tried);
    cf_buf_free(&enc);
    pair_free(&p);
}

static void test_stream_truncation_and_errors(void **state)
{
    (void)state;
    /* A stream that ends without its final event is truncated. */
    pair p;
    pair_new(&p);
    cf_buf enc, dec;
    cf_buf_init(&enc, 0);
    cf_buf_init(&dec, 0);
    assert_cf_ok(cf_proto_stream_begin(p.ws, 200));
    assert_cf_ok(cf_proto_stream_seal_feed(p.ws, cf_slice_cstr("data: {\"x\":1}\n\n"), &enc));
    assert_cf_error(open_stream(p.cs, cf_buf_slice(&enc), 0, &dec), CF_E_TRUNCATED);
    /* What was released is the authenticated first event. */
    assert_string_equal(cstr(&dec), "data: {\"x\":1}\n\n");
    /* A dead call stays dead and keeps reporting why (client.h rules). */
    assert_cf_error(cf_proto_stream_open_feed(p.cs, cf_slice_cstr("\n"), &dec), CF_E_TRUNCATED);
    assert_cf_error(cf_proto_stream_begin(p.cs, 200), CF_E_TRUNCATED);

    /* The backend sends a non-JSON event: the worker seals an error event
     * instead and no final event; the client gets the error, then truncated. */
    assert_cf_error(cf_proto_stream_seal_feed(p.ws, cf_slice_cstr("data: oops\n\n"), &enc), CF_E_MALFORMED);
    assert_cf_ok(cf_proto_stream_seal_error(p.ws, "upstream_error", "inference server sent a non-JSON event", &enc));
    assert_cf_ok(cf_proto_stream_seal_finish(p.ws, &enc));
    cf_proto_session *cs = NULL;
    assert_cf_ok(cf_proto_session_from_request(chat(), secret, cf_buf_slice(&p.enc), &cs));
    cf_buf_reset(&dec);
    assert_cf_error(open_stream(cs, cf_buf_slice(&enc), 0, &dec), CF_E_TRUNCATED);
    assert_non_null(strstr(cstr(&dec), "\"code\":\"upstream_error\""));
    cf_proto_session_free(cs);

    /* A backend stream that stops inside an event: no final event. */
    pair q;
    pair_new(&q);
    cf_buf enc2;
    cf_buf_init(&enc2, 0);
    assert_cf_ok(cf_proto_stream_begin(q.ws, 200));
    assert_cf_ok(cf_proto_stream_seal_feed(q.ws, cf_slice_cstr("data: {\"x\":1}\n\ndata: {\"y\""), &enc2));
    assert_cf_error(cf_proto_stream_seal_finish(q.ws, &enc2), CF_E_TRUNCATED);
    assert_null(strstr(cstr(&enc2), "cf1f:"));

    /* [DONE] with the final event removed, and a final event whose [DONE]
     * was removed. */
    pair r;
    pair_new(&r);
    cf_buf enc3;
    cf_buf_init(&enc3, 0);
    seal_stream(r.ws, "data: {\"x\":1}\n\ndata: [DONE]\n\n", 0, &enc3);
    char *s3 = strndup(cstr(&enc3), enc3.len);
    char *fin = strstr(s3, "data: {\"confide\"");
    assert_non_null(fin);
    char *done = strstr(fin, "data: [DONE]");
    assert_non_null(done);
    cf_buf cut;
    cf_buf_init(&cut, 0);
    assert_cf_ok(cf_buf_append(&cut, s3, (size_t)(fin - s3)));
    assert_cf_ok(cf_buf_append_cstr(&cut, done));
    assert_cf_ok(cf_proto_session_from_request(chat(), secret, cf_buf_slice(&r.enc), &cs));
    cf_buf_reset(&dec);
    assert_cf_error(open_stream(cs, cf_buf_slice(&cut), 0, &dec), CF_E_TRUNCATED);
    cf_proto_session_free(cs);
    cf_buf_reset(&cut);
    assert_cf_ok(cf_buf_append(&cut, s3, (size_t)(done - s3)));
    assert_cf_ok(cf_proto_session_from_request(chat(), secret, cf_buf_slice(&r.enc), &cs));
    cf_buf_reset(&dec);
    assert_cf_error(open_stream(cs, cf_buf_slice(&cut), 0, &dec), CF_E_TRUNCATED);
    cf_proto_session_free(cs);
    /* Retyping an event (event: line) breaks its authentication. */
    cf_buf_reset(&cut);
    assert_cf_ok(cf_buf_append_cstr(&cut, "event: x\n"));
    assert_cf_ok(cf_buf_append_cstr(&cut, s3));
    assert_cf_ok(cf_proto_session_from_request(chat(), secret, cf_buf_slice(&r.enc), &cs));
    assert_cf_error(open_stream(cs, cf_buf_slice(&cut), 0, &dec), CF_E_AUTH_FAILED);
    cf_proto_session_free(cs);
    /* An event after [DONE] is refused. */
    cf_buf_reset(&cut);
    assert_cf_ok(cf_buf_append_cstr(&cut, s3));
    assert_cf_ok(cf_buf_append_cstr(&cut, "data: {\"x\":1}\n\n"));
    assert_cf_ok(cf_proto_session_from_request(chat(), secret, cf_buf_slice(&r.enc), &cs));
    assert_cf_error(open_stream(cs, cf_buf_slice(&cut), 0, &dec), CF_E_BAD_CIPHERTEXT);
    cf_proto_session_free(cs);
    free(s3);

    cf_buf_free(&cut);
    cf_buf_free(&enc);
    cf_buf_free(&enc2);
    cf_buf_free(&enc3);
    cf_buf_free(&dec);
    pair_free(&p);
    pair_free(&q);
    pair_free(&r);
}

/* ---- client.h -------------------------------------------------------------------------- */

static void test_client_api(void **state)
{
    (void)state;
    cf_buf enc, plain, out;
    cf_buf_init(&enc, 0);
    cf_buf_init(&plain, 0);
    cf_buf_init(&out, 0);
    cf_client_call *call = NULL;
    assert_cf_error(cf_client_seal_request(secret, "audio.speech", cf_slice_cstr(body1), NULL, &enc, &call),
                    CF_E_UNKNOWN_ENDPOINT);
    assert_cf_ok(cf_client_seal_request(secret, "chat.completions", cf_slice_cstr(body1), NULL, &enc, &call));
    /* Finishing before any reply: truncated. */
    assert_cf_error(cf_client_finish(call), CF_E_TRUNCATED);

    cf_proto_session *ws = NULL;
    cf_replay_guard *g = NULL;
    assert_cf_ok(cf_replay_new(0, 0, &g));
    cf_proto_open_options o = {.replay = g}; /* system clock: the client used it too */
    assert_cf_ok(cf_proto_request_open(chat(), cf_buf_slice(&enc), lookup, NULL, &o, &plain, &ws));
    assert_memory_equal(plain.data, body1, plain.len);
    cf_buf sse;
    cf_buf_init(&sse, 0);
    assert_cf_ok(cf_proto_stream_begin(ws, 200));
    assert_cf_ok(cf_proto_stream_seal_feed(ws, cf_slice_cstr("data: {\"a\":1}\n\ndata: [DONE]\n\n"), &sse));
    assert_cf_ok(cf_proto_stream_seal_finish(ws, &sse));
    for (size_t i = 0; i < sse.len; i++) {
        assert_cf_ok(cf_client_open_stream(call, 200, cf_slice_make(sse.data + i, 1), &out));
    }
    /* A keep-alive comment after [DONE] carries nothing and is accepted
     * (docs/protocol.md §Streaming: decoders ignore comments). */
    assert_cf_ok(cf_client_open_stream(call, 200, cf_slice_cstr(": keepalive\n\n"), &out));
    assert_cf_ok(cf_client_finish(call));
    assert_string_equal(cstr(&out), "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    cf_client_call_free(call);
    cf_proto_session_free(ws);
    cf_replay_free(g);
    cf_buf_free(&sse);
    cf_buf_free(&enc);
    cf_buf_free(&plain);
    cf_buf_free(&out);
}

static void test_version_header(void **state)
{
    (void)state;
    assert_cf_ok(cf_proto_check_version_header(cf_slice_cstr("1")));
    assert_cf_ok(cf_proto_check_version_header(cf_slice_cstr(" 1 ")));
    assert_cf_error(cf_proto_check_version_header(cf_slice_cstr("2")), CF_E_UNSUPPORTED_VERSION);
    assert_cf_error(cf_proto_check_version_header(cf_slice_cstr("01")), CF_E_UNSUPPORTED_VERSION);
    assert_cf_error(cf_proto_check_version_header(cf_slice_cstr("1,2")), CF_E_MALFORMED);
    assert_cf_error(cf_proto_check_version_header(cf_slice_cstr("")), CF_E_MALFORMED);
}

/* The worker's padding applies to responses; bodies over the bound fail. */
static void test_response_padding_and_limits(void **state)
{
    (void)state;
    cf_buf enc, plain, r1, r2, dec;
    cf_proto_session *cs = NULL, *ws = NULL;
    seal_req(body1, 0, NOW, &enc, &cs);
    cf_buf_init(&plain, 0);
    cf_buf_init(&r1, 0);
    cf_buf_init(&r2, 0);
    cf_buf_init(&dec, 0);
    cf_proto_open_options o = {.now_ms = NOW, .pad_bucket = 256};
    assert_cf_ok(cf_proto_request_open(chat(), cf_buf_slice(&enc), lookup, NULL, &o, &plain, &ws));
    assert_cf_ok(cf_proto_response_seal(ws, 200, cf_slice_cstr("{\"choices\":[\"a\"]}"), &r1));
    cf_proto_session_free(ws);
    ws = NULL;
    plain.len = 0;
    assert_cf_ok(cf_proto_request_open(chat(), cf_buf_slice(&enc), lookup, NULL, &o, &plain, &ws));
    assert_cf_ok(cf_proto_response_seal(ws, 200, cf_slice_cstr("{\"choices\":[\"a much longer answer\"]}"), &r2));
    assert_int_equal(r1.len, r2.len);
    assert_cf_ok(cf_proto_response_open(cs, 200, cf_buf_slice(&r2), &dec));
    assert_string_equal(cstr(&dec), "{\"choices\":[\"a much longer answer\"]}");
    cf_proto_session_free(ws);
    ws = NULL;

    /* max_body bounds what the worker accepts and writes. */
    cf_proto_open_options small = {.now_ms = NOW, .max_body = 64};
    plain.len = 0;
    assert_true(enc.len > 64);
    assert_cf_error(cf_proto_request_open(chat(), cf_buf_slice(&enc), lookup, NULL, &small, &plain, &ws),
                    CF_E_TOO_LARGE);
    assert_null(ws);
    cf_proto_session_free(cs);
    cf_buf_free(&enc);
    cf_buf_free(&plain);
    cf_buf_free(&r1);
    cf_buf_free(&r2);
    cf_buf_free(&dec);
}

static void test_plaintext_error_bodies(void **state)
{
    (void)state;
    assert_int_equal(cf_proto_error_status(CF_E_UNKNOWN_KEY), 401);
    assert_int_equal(cf_proto_error_status(CF_E_REPLAY), 409);
    assert_int_equal(cf_proto_error_status(CF_E_UNKNOWN_ENDPOINT), 404);
    assert_int_equal(cf_proto_error_status(CF_E_REPLAY_FULL), 503);
    assert_int_equal(cf_proto_error_status(CF_E_TOO_LARGE), 413);
    assert_int_equal(cf_proto_error_status(CF_E_STALE), 400);
    cf_buf b;
    cf_buf_init(&b, 0);
    assert_cf_ok(cf_proto_error_body(CF_E_UNKNOWN_KEY, "unknown key id \"x\"", &b));
    json_error_t err;
    json_t *j = json_loadb(cstr(&b), b.len, 0, &err);
    assert_non_null(j);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "unknown_key");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "confide_error");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "unknown key id \"x\"");
    assert_true(json_is_null(json_object_get(e, "param")));
    json_decref(j);
    cf_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_key_id_known_answer),
        cmocka_unit_test(test_request_roundtrips_byte_exact),
        cmocka_unit_test(test_padding_hides_lengths),
        cmocka_unit_test(test_request_shape_errors),
        cmocka_unit_test(test_request_decode_errors),
        cmocka_unit_test(test_every_byte_flip_of_a_request_fails),
        cmocka_unit_test(test_replay_guard_rejects_second_use),
        cmocka_unit_test(test_replay_memory_is_bounded_and_fails_closed),
        cmocka_unit_test(test_replay_generations),
        cmocka_unit_test(test_response_roundtrip_and_binding),
        cmocka_unit_test(test_stream_roundtrip_any_chunking),
        cmocka_unit_test(test_every_byte_flip_of_a_stream_fails),
        cmocka_unit_test(test_stream_truncation_and_errors),
        cmocka_unit_test(test_client_api),
        cmocka_unit_test(test_plaintext_error_bodies),
        cmocka_unit_test(test_version_header),
        cmocka_unit_test(test_response_padding_and_limits),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
