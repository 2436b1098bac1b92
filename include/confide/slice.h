/*
 * slice.h — bounded views of bytes, and the reader every parser uses.
 *
 * Rule (docs/architecture.md §Conventions): bytes that come from outside the
 * process (HTTP, JSON, SSE, ciphertext, evidence, certificates) are only ever
 * read through a cf_reader. Each read checks the remaining length *before*
 * touching memory and fails with CF_E_MALFORMED (truncated input) instead of
 * reading past the end; nothing is ever cast from a raw pointer without an
 * exact length check first.
 *
 * A cf_slice borrows memory: it never owns or frees what it points to.
 */
#ifndef CONFIDE_SLICE_H
#define CONFIDE_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/result.h"

typedef struct cf_slice {
    const uint8_t *ptr;
    size_t len;
} cf_slice;

#define CF_SLICE_EMPTY ((cf_slice){NULL, 0})

static inline cf_slice cf_slice_make(const void *ptr, size_t len)
{
    return (cf_slice){(const uint8_t *)ptr, len};
}
/* A slice over a NUL-terminated string, without the NUL. */
cf_slice cf_slice_cstr(const char *s);
/* Variable-time equality for public bytes (names, markers); secrets, tags
 * and tokens go through cf_ct_equal below. */
bool cf_slice_eq(cf_slice a, cf_slice b);
bool cf_slice_eq_cstr(cf_slice a, const char *s);
/* Sub-slice [off, off+len); fails if out of range. */
CF_RESULT cf_slice_sub(cf_slice s, size_t off, size_t len, cf_slice *out);

/* Sequential, bounds-checked reader over untrusted bytes. */
typedef struct cf_reader {
    const uint8_t *ptr;
    size_t len;
    size_t pos;
} cf_reader;

static inline cf_reader cf_reader_make(cf_slice s) { return (cf_reader){s.ptr, s.len, 0}; }
static inline size_t cf_reader_remaining(const cf_reader *r) { return r->len - r->pos; }
static inline bool cf_reader_done(const cf_reader *r) { return r->pos == r->len; }

CF_RESULT cf_reader_u8(cf_reader *r, uint8_t *out);
CF_RESULT cf_reader_u16be(cf_reader *r, uint16_t *out);
CF_RESULT cf_reader_u16le(cf_reader *r, uint16_t *out);
CF_RESULT cf_reader_u32be(cf_reader *r, uint32_t *out);
CF_RESULT cf_reader_u32le(cf_reader *r, uint32_t *out);
CF_RESULT cf_reader_u64be(cf_reader *r, uint64_t *out);
CF_RESULT cf_reader_u64le(cf_reader *r, uint64_t *out);
/* Borrow the next n bytes as a slice (no copy). */
CF_RESULT cf_reader_slice(cf_reader *r, size_t n, cf_slice *out);
/* Copy the next n bytes into dst (dst must hold n bytes). */
CF_RESULT cf_reader_copy(cf_reader *r, void *dst, size_t n);
CF_RESULT cf_reader_skip(cf_reader *r, size_t n);
/* Fails unless every byte was consumed (exact-length formats). */
CF_RESULT cf_reader_expect_end(const cf_reader *r);
/* The unread rest, without consuming it. */
cf_slice cf_reader_rest(const cf_reader *r);

/* Secret hygiene. cf_wipe cannot be optimised away (OPENSSL_cleanse). */
void cf_wipe(void *p, size_t len);
/* Constant-time equality for tags, MACs, tokens, digests. Lengths are public. */
bool cf_ct_equal(const void *a, const void *b, size_t len);

#endif /* CONFIDE_SLICE_H */
