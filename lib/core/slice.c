/* slice.c — bounded reader over untrusted bytes, wipe and constant-time compare. */
#include "confide/slice.h"

#include <openssl/crypto.h>
#include <string.h>

cf_slice cf_slice_cstr(const char *s) { return cf_slice_make(s, s ? strlen(s) : 0); }

bool cf_slice_eq(cf_slice a, cf_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool cf_slice_eq_cstr(cf_slice a, const char *s) { return cf_slice_eq(a, cf_slice_cstr(s)); }

CF_RESULT cf_slice_sub(cf_slice s, size_t off, size_t len, cf_slice *out)
{
    CF_ENSURE_REF(out);
    /* Written so that neither addition can overflow. */
    CF_ENSURE_MSG(off <= s.len && len <= s.len - off, CF_E_MALFORMED, "slice out of range");
    *out = cf_slice_make(s.ptr + off, len);
    return CF_OK;
}

/* The single place where a read length is checked against what is left. */
static CF_RESULT take(cf_reader *r, size_t n, const uint8_t **p)
{
    CF_ENSURE_MSG(n <= cf_reader_remaining(r), CF_E_MALFORMED, "truncated input");
    *p = r->ptr + r->pos;
    r->pos += n;
    return CF_OK;
}

CF_RESULT cf_reader_u8(cf_reader *r, uint8_t *out)
{
    const uint8_t *p;
    CF_GUARD(take(r, 1, &p));
    *out = p[0];
    return CF_OK;
}

CF_RESULT cf_reader_u16be(cf_reader *r, uint16_t *out)
{
    const uint8_t *p;
    CF_GUARD(take(r, 2, &p));
    *out = (uint16_t)((p[0] << 8) | p[1]);
    return CF_OK;
}

CF_RESULT cf_reader_u16le(cf_reader *r, uint16_t *out)
{
    const uint8_t *p;
    CF_GUARD(take(r, 2, &p));
    *out = (uint16_t)((p[1] << 8) | p[0]);
    return CF_OK;
}

CF_RESULT cf_reader_u32be(cf_reader *r, uint32_t *out)
{
    const uint8_t *p;
    CF_GUARD(take(r, 4, &p));
    *out = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return CF_OK;
}

CF_RESULT cf_reader_u32le(cf_reader *r, uint32_t *out)
{
    const uint8_t *p;
    CF_GUARD(take(r, 4, &p));
    *out = ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
    return CF_OK;
}

CF_RESULT cf_reader_u64be(cf_reader *r, uint64_t *out)
{
    const uint8_t *p;
    CF_GUARD(take(r, 8, &p));
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    *out = v;
    return CF_OK;
}

CF_RESULT cf_reader_u64le(cf_reader *r, uint64_t *out)
{
    const uint8_t *p;
    CF_GUARD(take(r, 8, &p));
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    *out = v;
    return CF_OK;
}

CF_RESULT cf_reader_slice(cf_reader *r, size_t n, cf_slice *out)
{
    const uint8_t *p;
    CF_GUARD(take(r, n, &p));
    *out = cf_slice_make(p, n);
    return CF_OK;
}

CF_RESULT cf_reader_copy(cf_reader *r, void *dst, size_t n)
{
    const uint8_t *p;
    CF_GUARD(take(r, n, &p));
    if (n > 0) {
        memcpy(dst, p, n);
    }
    return CF_OK;
}

CF_RESULT cf_reader_skip(cf_reader *r, size_t n)
{
    const uint8_t *p;
    CF_GUARD(take(r, n, &p));
    return CF_OK;
}

CF_RESULT cf_reader_expect_end(const cf_reader *r)
{
    CF_ENSURE_MSG(cf_reader_done(r), CF_E_MALFORMED, "trailing bytes");
    return CF_OK;
}

cf_slice cf_reader_rest(const cf_reader *r) { return cf_slice_make(r->ptr + r->pos, r->len - r->pos); }

void cf_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0) {
        OPENSSL_cleanse(p, len);
    }
}

bool cf_ct_equal(const void *a, const void *b, size_t len)
{
    /* CRYPTO_memcmp runs in time independent of the contents. */
    return len == 0 || CRYPTO_memcmp(a, b, len) == 0;
}
