/*
 * buf.h — growable byte buffer with a hard size limit (after OpenSSH's sshbuf).
 *
 * Every buffer has a maximum size set at creation; appends beyond it fail with
 * CF_E_TOO_LARGE instead of growing without bound, so a peer can never make us
 * allocate more than the limit the caller chose. Buffers wipe their contents
 * when they grow (the old block) and when freed, so they are safe to hold
 * plaintext and keys.
 *
 * Ownership: a cf_buf owns its memory. Hand it over with cf_buf_take()
 * (`*out = x; x = NULL;` style): the caller then owns the returned block and
 * must wipe+free it with cf_free_secret() or free().
 */
#ifndef CONFIDE_BUF_H
#define CONFIDE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "confide/result.h"
#include "confide/slice.h"

#define CF_BUF_DEFAULT_MAX ((size_t)64 * 1024 * 1024)

typedef struct cf_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* hard limit on len */
} cf_buf;

/* Initialise an empty buffer that may grow to `max` bytes (0 = default). */
void cf_buf_init(cf_buf *b, size_t max);
/* Wipe and free; the buffer is empty and reusable afterwards. */
void cf_buf_free(cf_buf *b);
/* Wipe contents but keep the allocation. */
void cf_buf_reset(cf_buf *b);

CF_RESULT cf_buf_reserve(cf_buf *b, size_t extra);
CF_RESULT cf_buf_append(cf_buf *b, const void *p, size_t n);
CF_RESULT cf_buf_append_slice(cf_buf *b, cf_slice s);
CF_RESULT cf_buf_append_cstr(cf_buf *b, const char *s);
CF_RESULT cf_buf_append_u8(cf_buf *b, uint8_t v);
CF_RESULT cf_buf_append_u16be(cf_buf *b, uint16_t v);
CF_RESULT cf_buf_append_u32be(cf_buf *b, uint32_t v);
CF_RESULT cf_buf_append_u64be(cf_buf *b, uint64_t v);
CF_RESULT cf_buf_appendf(cf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Remove the first n bytes (consumed input). */
void cf_buf_consume(cf_buf *b, size_t n);
/* Make the contents a NUL-terminated C string (the NUL is not counted). */
CF_RESULT cf_buf_cstr(cf_buf *b, const char **out);

static inline cf_slice cf_buf_slice(const cf_buf *b) { return cf_slice_make(b->data, b->len); }

/* Hand over the block; the buffer becomes empty. *len_out may be NULL. */
uint8_t *cf_buf_take(cf_buf *b, size_t *len_out);

/* Wipe then free a heap block of known length (NULL is fine). */
void cf_free_secret(void *p, size_t len);

#endif /* CONFIDE_BUF_H */
