/* encoding.c — strict base64url / base64 / hex (see encoding.h). */
#include "confide/encoding.h"

#include <string.h>

static const char b64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t cf_b64url_encoded_len(size_t n) { return (n / 3) * 4 + ((n % 3) ? (n % 3) + 1 : 0); }

size_t cf_b64url_decoded_max(size_t n) { return (n / 4) * 3 + 3; }

static void encode_into(cf_slice in, char *dst, const char *alphabet)
{
    size_t i = 0, o = 0;
    for (; i + 3 <= in.len; i += 3) {
        uint32_t v = ((uint32_t)in.ptr[i] << 16) | ((uint32_t)in.ptr[i + 1] << 8) | in.ptr[i + 2];
        dst[o++] = alphabet[(v >> 18) & 63];
        dst[o++] = alphabet[(v >> 12) & 63];
        dst[o++] = alphabet[(v >> 6) & 63];
        dst[o++] = alphabet[v & 63];
    }
    size_t rest = in.len - i;
    if (rest == 1) {
        uint32_t v = (uint32_t)in.ptr[i] << 16;
        dst[o++] = alphabet[(v >> 18) & 63];
        dst[o++] = alphabet[(v >> 12) & 63];
    } else if (rest == 2) {
        uint32_t v = ((uint32_t)in.ptr[i] << 16) | ((uint32_t)in.ptr[i + 1] << 8);
        dst[o++] = alphabet[(v >> 18) & 63];
        dst[o++] = alphabet[(v >> 12) & 63];
        dst[o++] = alphabet[(v >> 6) & 63];
    }
}

/* Largest input whose encoded length fits in a size_t. */
#define B64_ENCODE_MAX ((SIZE_MAX / 4) * 3)

CF_RESULT cf_b64url_encode(cf_slice in, cf_buf *out)
{
    CF_ENSURE(in.len <= B64_ENCODE_MAX, CF_E_TOO_LARGE);
    size_t n = cf_b64url_encoded_len(in.len);
    CF_GUARD(cf_buf_reserve(out, n));
    encode_into(in, (char *)out->data + out->len, b64url_alphabet);
    out->len += n;
    return CF_OK;
}

CF_RESULT cf_b64url_encode_str(cf_slice in, char *out, size_t outsize)
{
    CF_ENSURE(in.len <= B64_ENCODE_MAX, CF_E_TOO_LARGE);
    size_t n = cf_b64url_encoded_len(in.len);
    CF_ENSURE_MSG(n < outsize, CF_E_TOO_LARGE, "base64url output does not fit");
    encode_into(in, out, b64url_alphabet);
    out[n] = '\0';
    return CF_OK;
}

/* Sextet value of each byte, XX (high bit set) for bytes outside the
 * alphabet: one table load per character instead of a chain of range
 * tests (RFC 4648 §4 and §5 alphabets). */
#define XX 0xFF
static const uint8_t b64url_sextets[256] = {
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, 62, XX, XX,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, XX, XX, XX, XX, XX, XX,
    XX,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, XX, XX, XX, XX, 63,
    XX, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
};
static const uint8_t b64_sextets[256] = {
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, 62, XX, XX, XX, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, XX, XX, XX, XX, XX, XX,
    XX,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, XX, XX, XX, XX, XX,
    XX, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
};
#undef XX

/* Decode `in` (no padding) with the given alphabet into dst (room for
 * cf_b64url_decoded_max). Rejects characters outside the alphabet and
 * non-canonical trailing bits. On failure the bytes already written are
 * wiped: decoded values are often keys, and a rejected one must not linger
 * in the caller's spare capacity. */
static CF_RESULT decode_into(cf_slice in, bool url, uint8_t *dst, size_t *dst_len)
{
    CF_ENSURE_MSG(in.len % 4 != 1, CF_E_MALFORMED, "base64: impossible length");
    const uint8_t *table = url ? b64url_sextets : b64_sextets;
    const uint8_t *p = in.ptr;
    size_t full = in.len / 4, o = 0;
    /* Invalid characters are OR-ed into `bad` and checked once at the end,
     * keeping the loop free of data-dependent branches; a rejected input
     * is wiped whole, so nothing decoded from it survives either way. */
    uint8_t bad = 0;
    for (size_t q = 0; q < full; q++, p += 4) {
        uint8_t a = table[p[0]], b = table[p[1]], c = table[p[2]], d = table[p[3]];
        bad |= a | b | c | d;
        uint32_t v = ((uint32_t)a << 18) | ((uint32_t)b << 12) | ((uint32_t)c << 6) | d;
        dst[o++] = (uint8_t)(v >> 16);
        dst[o++] = (uint8_t)(v >> 8);
        dst[o++] = (uint8_t)v;
    }
    /* RFC 4648 §3.5: the bits below the last whole byte must be zero, so
     * every value has exactly one encoding. */
    uint8_t trailing = 0;
    size_t rest = in.len % 4;
    if (rest == 2) {
        uint8_t a = table[p[0]], b = table[p[1]];
        bad |= a | b;
        dst[o++] = (uint8_t)((a << 2) | (b >> 4));
        trailing = b & 0x0F;
    } else if (rest == 3) {
        uint8_t a = table[p[0]], b = table[p[1]], c = table[p[2]];
        bad |= a | b | c;
        dst[o++] = (uint8_t)((a << 2) | (b >> 4));
        dst[o++] = (uint8_t)((b << 4) | (c >> 2));
        trailing = c & 0x03;
    }
    if (bad & 0x80) {
        cf_wipe(dst, o);
        CF_BAIL_MSG(CF_E_MALFORMED, "base64: invalid character");
    }
    if (trailing != 0) {
        cf_wipe(dst, o);
        CF_BAIL_MSG(CF_E_MALFORMED, "base64: non-canonical trailing bits");
    }
    *dst_len = o;
    return CF_OK;
}

CF_RESULT cf_b64url_decode(cf_slice in, cf_buf *out)
{
    CF_GUARD(cf_buf_reserve(out, cf_b64url_decoded_max(in.len)));
    size_t n;
    CF_GUARD(decode_into(in, true, out->data + out->len, &n));
    out->len += n;
    return CF_OK;
}

CF_RESULT cf_b64url_decode_fixed(cf_slice in, uint8_t *out, size_t outsize, size_t *out_len)
{
    /* Exact output length is known from the input length. */
    size_t n = (in.len / 4) * 3 + (in.len % 4 ? in.len % 4 - 1 : 0);
    CF_ENSURE_MSG(in.len % 4 != 1, CF_E_MALFORMED, "base64: impossible length");
    CF_ENSURE_MSG(n <= outsize, CF_E_MALFORMED, "base64url value too long");
    size_t got;
    CF_GUARD(decode_into(in, true, out, &got));
    if (out_len != NULL) {
        *out_len = got;
    }
    return CF_OK;
}

CF_RESULT cf_b64_decode(cf_slice in, cf_buf *out)
{
    size_t len = in.len;
    CF_ENSURE_MSG(len % 4 == 0, CF_E_MALFORMED, "base64: length not a multiple of 4");
    size_t pad = 0;
    while (pad < 2 && len > 0 && in.ptr[len - 1] == '=') {
        len--;
        pad++;
    }
    CF_GUARD(cf_buf_reserve(out, cf_b64url_decoded_max(len)));
    size_t n;
    CF_GUARD(decode_into(cf_slice_make(in.ptr, len), false, out->data + out->len, &n));
    out->len += n;
    return CF_OK;
}

static const char hex_digits[] = "0123456789abcdef";

CF_RESULT cf_hex_encode(cf_slice in, cf_buf *out)
{
    CF_ENSURE(in.len <= SIZE_MAX / 2, CF_E_TOO_LARGE);
    CF_GUARD(cf_buf_reserve(out, in.len * 2));
    for (size_t i = 0; i < in.len; i++) {
        out->data[out->len++] = (uint8_t)hex_digits[in.ptr[i] >> 4];
        out->data[out->len++] = (uint8_t)hex_digits[in.ptr[i] & 15];
    }
    return CF_OK;
}

CF_RESULT cf_hex_encode_str(cf_slice in, char *out, size_t outsize)
{
    CF_ENSURE_MSG(outsize > 0 && in.len <= (outsize - 1) / 2, CF_E_TOO_LARGE, "hex output does not fit");
    for (size_t i = 0; i < in.len; i++) {
        out[2 * i] = hex_digits[in.ptr[i] >> 4];
        out[2 * i + 1] = hex_digits[in.ptr[i] & 15];
    }
    out[in.len * 2] = '\0';
    return CF_OK;
}

static int nibble(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Like decode_into: a rejected input leaves no decoded bytes behind. */
static CF_RESULT hex_decode_into(cf_slice in, uint8_t *dst)
{
    for (size_t i = 0; i < in.len / 2; i++) {
        int hi = nibble(in.ptr[2 * i]);
        int lo = nibble(in.ptr[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            cf_wipe(dst, i);
            CF_BAIL_MSG(CF_E_MALFORMED, "hex: invalid character");
        }
        dst[i] = (uint8_t)((hi << 4) | lo);
    }
    return CF_OK;
}

CF_RESULT cf_hex_decode(cf_slice in, cf_buf *out)
{
    CF_ENSURE_MSG(in.len % 2 == 0, CF_E_MALFORMED, "hex: odd length");
    CF_GUARD(cf_buf_reserve(out, in.len / 2));
    CF_GUARD(hex_decode_into(in, out->data + out->len));
    out->len += in.len / 2;
    return CF_OK;
}

CF_RESULT cf_hex_decode_fixed(cf_slice in, uint8_t *out, size_t outsize, size_t *out_len)
{
    CF_ENSURE_MSG(in.len % 2 == 0, CF_E_MALFORMED, "hex: odd length");
    CF_ENSURE_MSG(in.len / 2 <= outsize, CF_E_MALFORMED, "hex value too long");
    CF_GUARD(hex_decode_into(in, out));
    if (out_len != NULL) {
        *out_len = in.len / 2;
    }
    return CF_OK;
}
