/* test_core.c — result type, reader, buffer, encodings, logging. */
#include "test_helper.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "confide/buf.h"
#include "confide/encoding.h"
#include "confide/log.h"
#include "confide/result.h"
#include "confide/slice.h"

static CF_RESULT fails_with_malformed(void)
{
    CF_ENSURE(1 == 2, CF_E_MALFORMED);
    return CF_OK;
}

static CF_RESULT guarded(void)
{
    CF_GUARD_MSG(fails_with_malformed(), "outer");
    return CF_OK;
}

static CF_RESULT wipes_on_every_path(bool fail, uint8_t *secret)
{
    cf_result result = CF_OK;
    memset(secret, 0xAA, 16);
    CF_ENSURE_OUT(!fail, CF_E_AUTH_FAILED);
out:
    cf_wipe(secret, 16);
    return result;
}

static void test_result_records_code_and_context(void **state)
{
    (void)state;
    assert_cf_error(guarded(), CF_E_MALFORMED);
    const cf_error_info *e = cf_error_last();
    assert_non_null(strstr(e->detail, "outer: 1 == 2"));
    assert_non_null(strstr(e->file, "test_core.c"));
    assert_string_equal(cf_error_name(CF_E_UNKNOWN_KEY), "unknown_key");
    assert_int_equal(cf_error_from_name("replay", 6), CF_E_REPLAY);
    assert_int_equal(cf_error_from_name("nonsense", 8), CF_E_INTERNAL);
    assert_string_equal(cf_error_name((cf_error_code)9999), "internal_error");

    /* For users "code: detail" without the source location; the debug form
     * keeps it. */
    char user[256], debug[256];
    assert_string_equal(cf_error_describe_user(user, sizeof user), "malformed: outer: 1 == 2");
    cf_error_describe(debug, sizeof debug);
    assert_non_null(strstr(debug, "malformed: outer: 1 == 2 (test_core.c:"));
    cf_error_set(CF_E_REPLAY, NULL, __FILE__, __LINE__);
    assert_string_equal(cf_error_describe_user(user, sizeof user), "replay");

    uint8_t secret[16], zero[16] = {0};
    assert_cf_error(wipes_on_every_path(true, secret), CF_E_AUTH_FAILED);
    assert_memory_equal(secret, zero, 16);
    assert_cf_ok(wipes_on_every_path(false, secret));
    assert_memory_equal(secret, zero, 16);
}

static void test_reader_bounds(void **state)
{
    (void)state;
    const uint8_t bytes[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09};
    cf_reader r = cf_reader_make(cf_slice_make(bytes, sizeof bytes));
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    assert_cf_ok(cf_reader_u8(&r, &u8));
    assert_int_equal(u8, 1);
    assert_cf_ok(cf_reader_u16be(&r, &u16));
    assert_int_equal(u16, 0x0203);
    assert_cf_ok(cf_reader_u16le(&r, &u16));
    assert_int_equal(u16, 0x0504);
    assert_cf_ok(cf_reader_u32le(&r, &u32));
    assert_int_equal(u32, 0x09080706);
    assert_true(cf_reader_done(&r));
    assert_cf_error(cf_reader_u8(&r, &u8), CF_E_MALFORMED);

    r = cf_reader_make(cf_slice_make(bytes, sizeof bytes));
    assert_cf_ok(cf_reader_u64be(&r, &u64));
    assert_true(u64 == 0x0102030405060708ULL);
    assert_cf_error(cf_reader_u16be(&r, &u16), CF_E_MALFORMED);
    assert_int_equal(r.pos, 8); /* a failed read consumes nothing */
    assert_cf_error(cf_reader_expect_end(&r), CF_E_MALFORMED);
    cf_slice s;
    assert_cf_error(cf_reader_slice(&r, SIZE_MAX, &s), CF_E_MALFORMED);
    assert_cf_ok(cf_reader_slice(&r, 1, &s));
    assert_int_equal(s.ptr[0], 9);

    cf_slice whole = cf_slice_make(bytes, sizeof bytes), sub;
    assert_cf_ok(cf_slice_sub(whole, 2, 3, &sub));
    assert_int_equal(sub.ptr[0], 3);
    assert_cf_error(cf_slice_sub(whole, 8, 2, &sub), CF_E_MALFORMED);
    assert_cf_error(cf_slice_sub(whole, SIZE_MAX, 2, &sub), CF_E_MALFORMED);
    assert_cf_error(cf_slice_sub(whole, 2, SIZE_MAX, &sub), CF_E_MALFORMED);
}

static void test_buf_limits_and_ownership(void **state)
{
    (void)state;
    cf_buf b;
    cf_buf_init(&b, 10);
    assert_cf_ok(cf_buf_append_cstr(&b, "hello"));
    assert_cf_ok(cf_buf_append_u32be(&b, 0x01020304));
    assert_cf_error(cf_buf_append_cstr(&b, "xx"), CF_E_TOO_LARGE);
    assert_int_equal(b.len, 9);
    cf_buf_consume(&b, 5);
    assert_int_equal(b.len, 4);
    assert_int_equal(b.data[0], 1);
    assert_cf_ok(cf_buf_appendf(&b, "%d", 42));
    const char *s;
    assert_cf_ok(cf_buf_cstr(&b, &s));
    assert_int_equal(strlen(s + 4), 2);
    size_t n;
    uint8_t *owned = cf_buf_take(&b, &n);
    assert_int_equal(n, 6);
    assert_null(b.data);
    cf_free_secret(owned, n);
    cf_buf_free(&b);

    /* SIZE_MAX as the limit: a huge reservation fails cleanly instead of
     * wrapping len + extra + 1 to zero and "succeeding" without memory. */
    cf_buf_init(&b, SIZE_MAX);
    assert_cf_ok(cf_buf_append_cstr(&b, "x"));
    assert_true(cf_is_error(cf_buf_reserve(&b, SIZE_MAX - 1)));
    assert_true(cf_is_error(cf_buf_reserve(&b, SIZE_MAX)));
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], 'x');
    cf_buf_free(&b);
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(cf_ct_equal("abc", "abc", 3));
    assert_false(cf_ct_equal("abc", "abd", 3));
    assert_true(cf_ct_equal("x", "y", 0));
}

/* RFC 4648 §10 test vectors, in the url alphabet and without padding. */
static void test_base64url_rfc4648(void **state)
{
    (void)state;
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        cf_buf b;
        cf_buf_init(&b, 0);
        assert_cf_ok(cf_b64url_encode(cf_slice_cstr(plain[i]), &b));
        assert_int_equal(b.len, strlen(enc[i]));
        assert_memory_equal(b.data ? (const char *)b.data : "", enc[i], b.len);
        cf_buf_reset(&b);
        assert_cf_ok(cf_b64url_decode(cf_slice_cstr(enc[i]), &b));
        assert_int_equal(b.len, strlen(plain[i]));
        if (b.len) {
            assert_memory_equal(b.data, plain[i], b.len);
        }
        cf_buf_free(&b);
    }
    cf_buf b;
    cf_buf_init(&b, 0);
    assert_cf_error(cf_b64url_decode(cf_slice_cstr("Zg=="), &b), CF_E_MALFORMED);  /* padding */
    assert_cf_error(cf_b64url_decode(cf_slice_cstr("Zh"), &b), CF_E_MALFORMED);    /* non-canonical */
    assert_cf_error(cf_b64url_decode(cf_slice_cstr("Z"), &b), CF_E_MALFORMED);     /* impossible length */
    assert_cf_error(cf_b64url_decode(cf_slice_cstr("Zm+v"), &b), CF_E_MALFORMED);  /* std alphabet */
    assert_cf_ok(cf_b64url_decode(cf_slice_cstr("-_-_"), &b));
    assert_int_equal(b.len, 3);
    cf_buf_reset(&b);
    assert_cf_ok(cf_b64_decode(cf_slice_cstr("Zm9vYg=="), &b));
    assert_memory_equal(b.data, "foob", 4);
    cf_buf_free(&b);

    uint8_t out[4];
    size_t n;
    assert_cf_ok(cf_b64url_decode_fixed(cf_slice_cstr("Zm9vYg"), out, sizeof out, &n));
    assert_int_equal(n, 4);
    assert_cf_error(cf_b64url_decode_fixed(cf_slice_cstr("Zm9vYmE"), out, sizeof out, &n), CF_E_MALFORMED);
    char str[5];
    assert_cf_ok(cf_b64url_encode_str(cf_slice_make("foo", 3), str, sizeof str));
    assert_string_equal(str, "Zm9v");
    assert_cf_error(cf_b64url_encode_str(cf_slice_make("foob", 4), str, sizeof str), CF_E_TOO_LARGE);
}

/* Padded base64 is strict too, and no decoder leaves decoded bytes behind
 * when it rejects an input (they may be key material). */
static void test_decoders_strict_and_leave_nothing(void **state)
{
    (void)state;
    cf_buf b;
    cf_buf_init(&b, 0);
    const char *bad_b64[] = {"Zg=", "Zh==", "Zm9=", "Z===", "Zm9v====", "Zg==Zg==", "Zm9v\nYg==", "Zm-v"};
    for (size_t i = 0; i < sizeof bad_b64 / sizeof bad_b64[0]; i++) {
        assert_cf_error(cf_b64_decode(cf_slice_cstr(bad_b64[i]), &b), CF_E_MALFORMED);
        assert_int_equal(b.len, 0);
    }
    assert_cf_ok(cf_b64_decode(cf_slice_cstr("Zm8="), &b));
    assert_memory_equal(b.data, "fo", 2);
    cf_buf_reset(&b);

    /* Six good bytes, then a bad character: the six are wiped. */
    assert_cf_error(cf_b64url_decode(cf_slice_cstr("QUJDREVG$A"), &b), CF_E_MALFORMED);
    assert_int_equal(b.len, 0);
    assert_non_null(b.data);
    static const uint8_t zero[8] = {0};
    assert_memory_equal(b.data, zero, 6);
    assert_cf_error(cf_hex_decode(cf_slice_cstr("414243zz"), &b), CF_E_MALFORMED);
    assert_memory_equal(b.data, zero, 3);
    cf_buf_free(&b);

    uint8_t fixed[8];
    memset(fixed, 0xEE, sizeof fixed);
    assert_cf_error(cf_b64url_decode_fixed(cf_slice_cstr("QUJDREVG$A"), fixed, sizeof fixed, NULL), CF_E_MALFORMED);
    assert_memory_equal(fixed, zero, 6);
    memset(fixed, 0xEE, sizeof fixed);
    assert_cf_error(cf_hex_decode_fixed(cf_slice_cstr("4142zz"), fixed, sizeof fixed, NULL), CF_E_MALFORMED);
    assert_memory_equal(fixed, zero, 2);
    assert_cf_error(cf_hex_decode_fixed(cf_slice_cstr("414243"), fixed, 2, NULL), CF_E_MALFORMED);
    assert_cf_ok(cf_b64url_decode_fixed(cf_slice_cstr("QUI"), fixed, sizeof fixed, NULL));
    assert_memory_equal(fixed, "AB", 2);
}

/* The table-driven decoder against an independent oracle (OpenSSL's own
 * base64 block coder) for every length up to 200, and every byte value in
 * every position of a quad and of both tail forms: a character is accepted
 * exactly when it is in the alphabet, trailing bits exactly when zero. */
static void test_base64_every_byte_and_length(void **state)
{
    (void)state;
    static const char url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static const char std_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t data[200];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i * 167 + 13);
    }
    cf_buf b;
    cf_buf_init(&b, 0);
    for (size_t len = 0; len <= sizeof data; len++) {
        unsigned char std[((sizeof data + 2) / 3) * 4 + 1];
        int std_len = EVP_EncodeBlock(std, data, (int)len);
        assert_true(std_len >= 0);
        cf_buf_reset(&b);
        assert_cf_ok(cf_b64_decode(cf_slice_make(std, (size_t)std_len), &b));
        assert_int_equal(b.len, len);
        assert_true(len == 0 || memcmp(b.data, data, len) == 0);
        /* The same text in the url alphabet without padding. */
        size_t url_len = (size_t)std_len;
        while (url_len > 0 && std[url_len - 1] == '=') {
            url_len--;
        }
        for (size_t i = 0; i < url_len; i++) {
            std[i] = std[i] == '+' ? '-' : std[i] == '/' ? '_' : std[i];
        }
        cf_buf_reset(&b);
        assert_cf_ok(cf_b64url_encode(cf_slice_make(data, len), &b));
        assert_int_equal(b.len, url_len);
        assert_true(url_len == 0 || memcmp(b.data, std, url_len) == 0);
        cf_buf_reset(&b);
        assert_cf_ok(cf_b64url_decode(cf_slice_make(std, url_len), &b));
        assert_int_equal(b.len, len);
        assert_true(len == 0 || memcmp(b.data, data, len) == 0);
    }
    for (int c = 0; c < 256; c++) {
        bool in_url = c != 0 && strchr(url_alphabet, c) != NULL;
        bool in_std = c != 0 && strchr(std_alphabet, c) != NULL;
        for (size_t pos = 0; pos < 8; pos++) {
            /* Two quads, then the 3- and 2-character tail forms ("QUI", "QQ" are canonical). */
            char text[8];
            memcpy(text, "QUJDQUI", 7);
            text[pos % 7] = (char)c;
            size_t text_len = pos < 4 ? 4 : pos < 7 ? 7 : 2;
            if (pos == 7) {
                memcpy(text, "QQ", 2);
                text[1] = (char)c;
            }
            cf_buf_reset(&b);
            cf_result r = cf_b64url_decode(cf_slice_make(text, text_len), &b);
            /* In a tail, the last character must also leave zero trailing bits. */
            const char *hit = in_url ? strchr(url_alphabet, c) : NULL;
            int v = hit ? (int)(hit - url_alphabet) : -1;
            bool canonical = pos == 6 ? v >= 0 && (v & 3) == 0 : pos == 7 ? v >= 0 && (v & 15) == 0 : true;
            if (in_url && canonical) {
                assert_cf_ok(r);
            } else {
                assert_cf_error(r, CF_E_MALFORMED);
                assert_int_equal(b.len, 0);
            }
            if (pos < 4) {
                char padded[8];
                memcpy(padded, "QUJDQUJD", 8);
                padded[pos] = (char)c;
                cf_buf_reset(&b);
                r = cf_b64_decode(cf_slice_make(padded, 8), &b);
                if (in_std) {
                    assert_cf_ok(r);
                    assert_int_equal(b.len, 6);
                } else {
                    assert_cf_error(r, CF_E_MALFORMED);
                }
            }
        }
    }
    cf_buf_free(&b);
}

static void test_hex(void **state)
{
    (void)state;
    cf_buf b;
    cf_buf_init(&b, 0);
    assert_cf_ok(cf_hex_decode(cf_slice_cstr("00ffA1"), &b));
    assert_int_equal(b.len, 3);
    assert_int_equal(b.data[2], 0xa1);
    char s[7];
    assert_cf_ok(cf_hex_encode_str(cf_buf_slice(&b), s, sizeof s));
    assert_string_equal(s, "00ffa1");
    assert_cf_error(cf_hex_encode_str(cf_buf_slice(&b), s, 6), CF_E_TOO_LARGE);
    assert_cf_error(cf_hex_decode(cf_slice_cstr("abc"), &b), CF_E_MALFORMED);
    assert_cf_error(cf_hex_decode(cf_slice_cstr("zz"), &b), CF_E_MALFORMED);
    cf_buf_free(&b);
}

static void test_log_escapes_and_bounds(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    cf_log_init("test", CF_LOG_INFO);
    cf_log_set_file(f);
    char longv[600];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    CF_LOG_DEBUG("hidden");
    CF_LOG_INFO("plain");
    CF_LOG_WARN("fields", cf_kv_str("path", "/v1/x y\n=z\"q"), cf_kv_int("n", -3), cf_kv_id("req", 255),
                cf_kv_str("long", longv));
    CF_LOG_INFO("empty_key", cf_kv_str("", "v"));
    cf_log_set_file(NULL);
    rewind(f);
    char line[4096];
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "level=info prog=test event=plain"));
    assert_null(strstr(line, "hidden"));
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "path=\"/v1/x y\\x0a=z\\\"q\""));
    assert_non_null(strstr(line, "n=-3 req=00000000000000ff"));
    assert_non_null(strstr(line, "xxx..."));
    assert_true(strlen(line) < 400);
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "event=empty_key field=v"));
    assert_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_int_equal(cf_log_level_parse("warn"), CF_LOG_WARN);
    assert_int_equal(cf_log_level_parse("loud"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_records_code_and_context),
        cmocka_unit_test(test_reader_bounds),
        cmocka_unit_test(test_buf_limits_and_ownership),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_base64url_rfc4648),
        cmocka_unit_test(test_decoders_strict_and_leave_nothing),
        cmocka_unit_test(test_base64_every_byte_and_length),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_log_escapes_and_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
