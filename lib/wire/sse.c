/* sse.c — incremental server-sent-events parser and writer (rules S1-S8 in
 * sse.h, after WHATWG HTML §9.2.6 "Interpreting an event stream").
 *
 * The parser is a byte-level state machine over the current line, so it
 * never needs to hold a partial line: the field name is at most a few bytes
 * (anything longer than "event" is an ignored field), and value bytes go
 * straight from the caller's chunk into the event's buffers. Runs of value
 * bytes are located with memchr-like scans and copied in one append. */
#include "confide/sse.h"

#include <stdio.h>
#include <string.h>

enum { F_IGNORE, F_DATA, F_EVENT, F_ID, F_RETRY };

static const uint8_t utf8_bom[3] = {0xEF, 0xBB, 0xBF};

void cf_sse_parser_init(cf_sse_parser *p, size_t max_event_size, cf_sse_event_fn on_event, void *ctx)
{
    memset(p, 0, sizeof *p);
    p->on_event_ = on_event;
    p->ctx_ = ctx;
    p->max_event_ = max_event_size ? max_event_size : CF_SSE_DEFAULT_MAX_EVENT;
    /* Every byte stored is first counted against max_event_ (S7), so no
     * buffer can outgrow it; the limit here is a second fence. */
    cf_buf_init(&p->data_, p->max_event_);
    cf_buf_init(&p->type_, p->max_event_);
    cf_buf_init(&p->id_, p->max_event_);
    cf_buf_init(&p->id_pending_, p->max_event_);
    cf_buf_init(&p->comments_, p->max_event_);
    p->state_ = CF_SSE_LINE_START_;
}

/* Forget the current event (wiping its bytes), keeping allocations. */
static void reset_event(cf_sse_parser *p)
{
    cf_buf_reset(&p->data_);
    cf_buf_reset(&p->type_);
    cf_buf_reset(&p->id_);
    cf_buf_reset(&p->id_pending_);
    cf_buf_reset(&p->comments_);
    p->comment_count_ = 0;
    p->event_bytes_ = 0;
    p->retry_ms_ = 0;
    p->has_type_ = p->has_data_ = p->has_id_ = p->has_retry_ = false;
    p->in_event_ = false;
}

void cf_sse_parser_free(cf_sse_parser *p)
{
    if (p == NULL) {
        return;
    }
    cf_buf_free(&p->data_);
    cf_buf_free(&p->type_);
    cf_buf_free(&p->id_);
    cf_buf_free(&p->id_pending_);
    cf_buf_free(&p->comments_);
    cf_wipe(p, sizeof *p);
    p->failed_ = true;
}

bool cf_sse_parser_pending(const cf_sse_parser *p)
{
    return p->in_event_ || (!p->bom_done_ && p->bom_seen_ > 0);
}

/* S7: count n more bytes of the current event. */
static CF_RESULT count_bytes(cf_sse_parser *p, size_t n)
{
    if (n > p->max_event_ - p->event_bytes_) {
        CF_BAIL_FMT(CF_E_TOO_LARGE, "sse: event larger than %zu bytes", p->max_event_);
    }
    p->event_bytes_ += n;
    return CF_OK;
}

/* The field name is complete (at ':' or at the end of the line). */
static CF_RESULT start_field(cf_sse_parser *p)
{
    const uint8_t *n = p->name_;
    size_t len = p->name_len_;
    p->field_ = F_IGNORE;
    if (len == 4 && memcmp(n, "data", 4) == 0) {
        p->field_ = F_DATA;
        if (p->has_data_) {
            CF_GUARD(cf_buf_append_u8(&p->data_, '\n'));
        }
        p->has_data_ = true;
    } else if (len == 5 && memcmp(n, "event", 5) == 0) {
        p->field_ = F_EVENT;
        cf_buf_reset(&p->type_);
        p->has_type_ = true;
    } else if (len == 2 && memcmp(n, "id", 2) == 0) {
        p->field_ = F_ID;
        cf_buf_reset(&p->id_pending_);
        p->id_nul_ = false;
    } else if (len == 5 && memcmp(n, "retry", 5) == 0) {
        p->field_ = F_RETRY;
        p->retry_acc_ = 0;
        p->retry_digits_ = 0;
        p->retry_ok_ = true;
    }
    return CF_OK;
}

/* A run of value bytes of the current field. */
static CF_RESULT field_bytes(cf_sse_parser *p, const uint8_t *s, size_t n)
{
    switch (p->field_) {
    case F_DATA:
        return cf_buf_append(&p->data_, s, n);
    case F_EVENT:
        return cf_buf_append(&p->type_, s, n);
    case F_ID:
        if (!p->id_nul_ && n > 0 && memchr(s, 0, n) != NULL) {
            p->id_nul_ = true;
        }
        return p->id_nul_ ? CF_OK : cf_buf_append(&p->id_pending_, s, n);
    case F_RETRY:
        for (size_t i = 0; i < n && p->retry_ok_; i++) {
            if (s[i] < '0' || s[i] > '9' || p->retry_digits_ >= 10) {
                p->retry_ok_ = false;
            } else {
                p->retry_acc_ = p->retry_acc_ * 10 + (uint64_t)(s[i] - '0');
                p->retry_digits_++;
            }
        }
        return CF_OK;
    default:
        return CF_OK;
    }
}

/* The current (non-empty) line ended. */
static void end_line(cf_sse_parser *p)
{
    if (p->state_ != CF_SSE_COMMENT_) {
        if (p->field_ == F_ID && !p->id_nul_) {
            cf_buf t = p->id_;
            p->id_ = p->id_pending_;
            p->id_pending_ = t;
            cf_buf_reset(&p->id_pending_);
            p->has_id_ = true;
        } else if (p->field_ == F_RETRY && p->retry_ok_ && p->retry_digits_ > 0 && p->retry_acc_ <= UINT32_MAX) {
            p->retry_ms_ = (uint32_t)p->retry_acc_;
            p->has_retry_ = true;
        }
    }
    p->field_ = F_IGNORE;
    p->state_ = CF_SSE_LINE_START_;
}

/* An empty line: report the event if one was begun (S6). */
static CF_RESULT end_event(cf_sse_parser *p)
{
    if (!p->in_event_) {
        return CF_OK;
    }
    if (!p->has_type_ && !p->has_data_ && !p->has_id_ && !p->has_retry_ && p->comment_count_ == 0) {
        reset_event(p); /* only ignored fields: nothing to report (S6) */
        return CF_OK;
    }
    cf_sse_event ev = {
        .type = cf_buf_slice(&p->type_),
        .data = cf_buf_slice(&p->data_),
        .id = cf_buf_slice(&p->id_),
        .comments = cf_buf_slice(&p->comments_),
        .comment_count = p->comment_count_,
        .retry_ms = p->retry_ms_,
        .has_type = p->has_type_,
        .has_data = p->has_data_,
        .has_id = p->has_id_,
        .has_retry = p->has_retry_,
    };
    cf_result r = p->on_event_(p->ctx_, &ev);
    reset_event(p);
    return r;
}

/* Where the next LF and CR are in the current chunk: each is searched with
 * memchr (fast; real streams rarely contain CR) and cached until the cursor
 * passes it, so a chunk is scanned at most once per byte whatever mix of
 * line endings it holds (no quadratic rescans on "a\ra\ra\r..."). */
typedef struct eol_cache {
    size_t lf, cr; /* SIZE_MAX: not searched yet */
} eol_cache;

static size_t next_byte(const uint8_t *s, size_t from, size_t n, uint8_t c, size_t *cached)
{
    if (*cached == SIZE_MAX || *cached < from) {
        const uint8_t *hit = from < n ? memchr(s + from, c, n - from) : NULL;
        *cached = hit != NULL ? (size_t)(hit - s) : n;
    }
    return *cached;
}

/* Offset of the first CR or LF in s[from, n), or n. */
static size_t find_eol(const uint8_t *s, size_t from, size_t n, eol_cache *cache)
{
    size_t lf = next_byte(s, from, n, '\n', &cache->lf);
    size_t cr = next_byte(s, from, n, '\r', &cache->cr);
    return lf < cr ? lf : cr;
}

static CF_RESULT process(cf_sse_parser *p, const uint8_t *s, size_t n)
{
    size_t i = 0;
    eol_cache cache = {SIZE_MAX, SIZE_MAX};
    while (i < n) {
        uint8_t c = s[i];
        if (p->after_cr_) {
            /* S3: the LF of a CRLF, possibly in the next chunk. */
            p->after_cr_ = false;
            if (c == '\n') {
                i++;
                continue;
            }
        }
        switch (p->state_) {
        case CF_SSE_LINE_START_:
            if (c == '\n' || c == '\r') {
                p->after_cr_ = c == '\r';
                i++;
                CF_GUARD(end_event(p));
                continue;
            }
            p->in_event_ = true;
            if (c == ':') {
                CF_GUARD(count_bytes(p, 1));
                i++;
                if (p->comment_count_ > 0) {
                    CF_GUARD(cf_buf_append_u8(&p->comments_, '\n'));
                }
                p->comment_count_++;
                p->state_ = CF_SSE_COMMENT_;
            } else {
                p->name_len_ = 0;
                p->state_ = CF_SSE_NAME_;
            }
            continue;
        case CF_SSE_NAME_: {
            size_t j = i;
            while (j < n && s[j] != ':' && s[j] != '\n' && s[j] != '\r') {
                j++;
            }
            CF_GUARD(count_bytes(p, j - i));
            for (size_t k = i; k < j; k++) {
                /* Longer names are ignored fields: keep the first bytes
                 * only, the length tells them apart. */
                if (p->name_len_ < sizeof p->name_) {
                    p->name_[p->name_len_] = s[k];
                }
                p->name_len_++;
            }
            i = j;
            if (j == n) {
                continue;
            }
            CF_GUARD(start_field(p));
            if (s[j] == ':') {
                CF_GUARD(count_bytes(p, 1));
                i++;
                p->state_ = CF_SSE_VALUE_START_;
            } else {
                end_line(p); /* "field" without colon: empty value */
                p->after_cr_ = s[j] == '\r';
                i++;
            }
            continue;
        }
        case CF_SSE_VALUE_START_:
            /* S5: one leading space is not part of the value. */
            if (c == ' ') {
                CF_GUARD(count_bytes(p, 1));
                i++;
            }
            p->state_ = CF_SSE_VALUE_;
            continue;
        case CF_SSE_VALUE_:
        case CF_SSE_COMMENT_: {
            size_t j = find_eol(s, i, n, &cache);
            CF_GUARD(count_bytes(p, j - i));
            if (p->state_ == CF_SSE_COMMENT_) {
                CF_GUARD(cf_buf_append(&p->comments_, s + i, j - i));
            } else {
                CF_GUARD(field_bytes(p, s + i, j - i));
            }
            i = j;
            if (j < n) {
                end_line(p);
                p->after_cr_ = s[j] == '\r';
                i++;
            }
            continue;
        }
        }
    }
    return CF_OK;
}

static cf_result fail(cf_sse_parser *p)
{
    p->failed_ = true;
    reset_event(p);
    return CF_ERROR;
}

CF_RESULT cf_sse_parser_feed(cf_sse_parser *p, cf_slice chunk)
{
    CF_ENSURE_REF(p);
    CF_ENSURE_MSG(!p->failed_, CF_E_INVALID_ARGUMENT, "sse: parser failed or finished before");
    CF_ENSURE_MSG(p->on_event_ != NULL, CF_E_INVALID_ARGUMENT, "sse: no event callback");
    CF_ENSURE(chunk.ptr != NULL || chunk.len == 0, CF_E_INVALID_ARGUMENT);
    size_t i = 0;
    /* S2: drop one BOM at the very start, matched byte by byte across
     * chunks; on a mismatch the bytes matched so far are ordinary input. */
    while (!p->bom_done_ && i < chunk.len) {
        if (chunk.ptr[i] == utf8_bom[p->bom_seen_]) {
            i++;
            if (++p->bom_seen_ == sizeof utf8_bom) {
                p->bom_done_ = true;
            }
        } else {
            p->bom_done_ = true;
            if (cf_is_error(process(p, utf8_bom, p->bom_seen_))) {
                return fail(p);
            }
        }
    }
    if (i < chunk.len && cf_is_error(process(p, chunk.ptr + i, chunk.len - i))) {
        return fail(p);
    }
    return CF_OK;
}

CF_RESULT cf_sse_parser_finish(cf_sse_parser *p)
{
    CF_ENSURE_REF(p);
    CF_ENSURE_MSG(!p->failed_, CF_E_INVALID_ARGUMENT, "sse: parser failed or finished before");
    bool pending = cf_sse_parser_pending(p);
    (void)fail(p);
    if (pending) {
        CF_BAIL_MSG(CF_E_TRUNCATED, "sse: stream ended inside an event");
    }
    return CF_OK;
}

/* ---- writer ------------------------------------------------------------------ */

static bool has_byte(cf_slice s, uint8_t a)
{
    return s.len > 0 && memchr(s.ptr, a, s.len) != NULL;
}

/* s[off, off+len) without pointer arithmetic on an empty (maybe NULL) slice. */
static cf_slice sub(cf_slice s, size_t off, size_t len)
{
    return len > 0 ? cf_slice_make(s.ptr + off, len) : cf_slice_make("", 0);
}

static bool has_eol(cf_slice s) { return has_byte(s, '\n') || has_byte(s, '\r'); }

/* "<name>: <value>\n", or "<name>:\n" for an empty value. */
static CF_RESULT write_field(cf_buf *out, const char *name, cf_slice value)
{
    CF_GUARD(cf_buf_append_cstr(out, name));
    CF_GUARD(cf_buf_append_u8(out, ':'));
    if (value.len > 0) {
        CF_GUARD(cf_buf_append_u8(out, ' '));
        CF_GUARD(cf_buf_append_slice(out, value));
    }
    return cf_buf_append_u8(out, '\n');
}

static CF_RESULT write_event(cf_buf *out, const cf_sse_event *ev)
{
    if (ev->comment_count > 0) {
        /* comment_count texts separated by '\n'. */
        size_t start = 0, seen = 0;
        for (size_t i = 0; i <= ev->comments.len; i++) {
            if (i == ev->comments.len || ev->comments.ptr[i] == '\n') {
                CF_GUARD(cf_buf_append_u8(out, ':'));
                CF_GUARD(cf_buf_append_slice(out, sub(ev->comments, start, i - start)));
                CF_GUARD(cf_buf_append_u8(out, '\n'));
                start = i + 1;
                seen++;
            }
        }
        CF_ENSURE_MSG(seen == ev->comment_count, CF_E_INVALID_ARGUMENT,
                      "sse: comment_count does not match the comments");
    }
    if (ev->has_type) {
        CF_GUARD(write_field(out, "event", ev->type));
    }
    if (ev->has_id) {
        CF_GUARD(write_field(out, "id", ev->id));
    }
    if (ev->has_retry) {
        CF_GUARD(cf_buf_appendf(out, "retry: %u\n", (unsigned)ev->retry_ms));
    }
    if (ev->has_data) {
        size_t start = 0;
        for (size_t i = 0; i <= ev->data.len; i++) {
            if (i == ev->data.len || ev->data.ptr[i] == '\n') {
                CF_GUARD(write_field(out, "data", sub(ev->data, start, i - start)));
                start = i + 1;
            }
        }
    }
    return cf_buf_append_u8(out, '\n');
}

CF_RESULT cf_sse_write_event(cf_buf *out, const cf_sse_event *ev)
{
    CF_ENSURE_REF(out);
    CF_ENSURE_REF(ev);
    CF_ENSURE_MSG(ev->has_type || ev->has_data || ev->has_id || ev->has_retry || ev->comment_count > 0,
                  CF_E_INVALID_ARGUMENT, "sse: empty event");
    CF_ENSURE_MSG(!ev->has_type || !has_eol(ev->type), CF_E_INVALID_ARGUMENT, "sse: line break in event type");
    CF_ENSURE_MSG(!ev->has_id || (!has_eol(ev->id) && !has_byte(ev->id, 0)), CF_E_INVALID_ARGUMENT,
                  "sse: line break or U+0000 in id");
    CF_ENSURE_MSG(!has_byte(ev->comments, '\r'), CF_E_INVALID_ARGUMENT, "sse: CR in a comment");
    CF_ENSURE_MSG(ev->comment_count > 0 || ev->comments.len == 0, CF_E_INVALID_ARGUMENT,
                  "sse: comments without comment_count");
    CF_ENSURE_MSG(!ev->has_data || !has_byte(ev->data, '\r'), CF_E_INVALID_ARGUMENT, "sse: CR in data");
    size_t before = out->len;
    if (cf_is_error(write_event(out, ev))) {
        if (out->len > before) {
            cf_wipe(out->data + before, out->len - before);
            out->len = before;
        }
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT cf_sse_write_data(cf_buf *out, cf_slice data)
{
    cf_sse_event ev = {.data = data, .has_data = true};
    return cf_sse_write_event(out, &ev);
}
