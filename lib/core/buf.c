/* buf.c — bounded, self-wiping growable buffer (see buf.h). */
#include "confide/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cf_buf_init(cf_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : CF_BUF_DEFAULT_MAX;
    /* cf_buf_reserve computes len + extra + 1 and max + 1: keep both from
     * wrapping when a caller asks for "no limit" with SIZE_MAX. */
    if (b->max > SIZE_MAX - 1) {
        b->max = SIZE_MAX - 1;
    }
}

void cf_free_secret(void *p, size_t len)
{
    if (p != NULL) {
        cf_wipe(p, len);
        free(p);
    }
}

void cf_buf_free(cf_buf *b)
{
    cf_free_secret(b->data, b->cap);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void cf_buf_reset(cf_buf *b)
{
    cf_wipe(b->data, b->len);
    b->len = 0;
}

CF_RESULT cf_buf_reserve(cf_buf *b, size_t extra)
{
    /* +1 keeps room for the NUL of cf_buf_cstr without counting it. */
    CF_ENSURE_MSG(extra <= b->max - b->len, CF_E_TOO_LARGE, "buffer limit reached");
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return CF_OK;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    if (cap > b->max + 1) {
        cap = b->max + 1;
    }
    /* Not realloc: the old block may hold secrets and must be wiped. */
    uint8_t *fresh = malloc(cap);
    CF_ENSURE(fresh != NULL, CF_E_NO_MEMORY);
    if (b->len > 0) {
        memcpy(fresh, b->data, b->len);
    }
    cf_free_secret(b->data, b->cap);
    b->data = fresh;
    b->cap = cap;
    return CF_OK;
}

CF_RESULT cf_buf_append(cf_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return CF_OK;
    }
    CF_GUARD(cf_buf_reserve(b, n));
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return CF_OK;
}

CF_RESULT cf_buf_append_slice(cf_buf *b, cf_slice s) { return cf_buf_append(b, s.ptr, s.len); }

CF_RESULT cf_buf_append_cstr(cf_buf *b, const char *s) { return cf_buf_append(b, s, strlen(s)); }

CF_RESULT cf_buf_append_u8(cf_buf *b, uint8_t v) { return cf_buf_append(b, &v, 1); }

CF_RESULT cf_buf_append_u16be(cf_buf *b, uint16_t v)
{
    uint8_t p[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return cf_buf_append(b, p, sizeof p);
}

CF_RESULT cf_buf_append_u32be(cf_buf *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return cf_buf_append(b, p, sizeof p);
}

CF_RESULT cf_buf_append_u64be(cf_buf *b, uint64_t v)
{
    uint8_t p[8];
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
    return cf_buf_append(b, p, sizeof p);
}

CF_RESULT cf_buf_appendf(cf_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    CF_ENSURE(n >= 0, CF_E_INTERNAL);
    CF_GUARD(cf_buf_reserve(b, (size_t)n));
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CF_OK;
}

void cf_buf_consume(cf_buf *b, size_t n)
{
    if (n >= b->len) {
        cf_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    cf_wipe(b->data + b->len - n, n);
    b->len -= n;
}

CF_RESULT cf_buf_cstr(cf_buf *b, const char **out)
{
    CF_GUARD(cf_buf_reserve(b, 0));
    b->data[b->len] = '\0';
    *out = (const char *)b->data;
    return CF_OK;
}

uint8_t *cf_buf_take(cf_buf *b, size_t *len_out)
{
    uint8_t *p = b->data;
    if (len_out != NULL) {
        *len_out = b->len;
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
