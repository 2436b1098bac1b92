/* fuzz_sse.c — the incremental SSE parser (sse.h) must give exactly the same
 * events and outcome however the stream is cut into chunks (whole, byte by
 * byte, and at pseudo-random points chosen by the input), and every event it
 * reports must be accepted by the writer and parse back to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confide/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool cond)
{
    if (!cond) {
        abort();
    }
}

typedef struct run {
    cf_buf log;       /* every event, written in wire form */
    size_t events;
    bool roundtrip;   /* also check writer -> parser on each event */
} run;

static CF_RESULT on_event_identity(void *ctx, const cf_sse_event *ev);

/* Parse one serialised event and compare it with the original. */
typedef struct one {
    const cf_sse_event *want;
    size_t seen;
} one;

static bool slice_same(cf_slice a, cf_slice b) { return cf_slice_eq(a, b); }

static CF_RESULT compare_one(void *ctx, const cf_sse_event *ev)
{
    one *o = ctx;
    const cf_sse_event *w = o->want;
    o->seen++;
    check(ev->has_type == w->has_type && (!ev->has_type || slice_same(ev->type, w->type)));
    check(ev->has_data == w->has_data && (!ev->has_data || slice_same(ev->data, w->data)));
    check(ev->has_id == w->has_id && (!ev->has_id || slice_same(ev->id, w->id)));
    check(ev->has_retry == w->has_retry && (!ev->has_retry || ev->retry_ms == w->retry_ms));
    check(ev->comment_count == w->comment_count && slice_same(ev->comments, w->comments));
    return CF_OK;
}

static CF_RESULT on_event_identity(void *ctx, const cf_sse_event *ev)
{
    run *r = ctx;
    r->events++;
    size_t before = r->log.len;
    check(cf_is_ok(cf_sse_write_event(&r->log, ev)));
    if (r->roundtrip) {
        one o = {ev, 0};
        cf_sse_parser p;
        cf_sse_parser_init(&p, 0, compare_one, &o);
        check(cf_is_ok(cf_sse_parser_feed(&p, cf_slice_make(r->log.data + before, r->log.len - before))));
        check(cf_is_ok(cf_sse_parser_finish(&p)));
        check(o.seen == 1);
        cf_sse_parser_free(&p);
    }
    return CF_OK;
}

typedef struct outcome {
    cf_error_code feed, finish;
} outcome;

/* mode 0: whole; 1: byte by byte; 2: cuts from a tiny PRNG seeded by seed. */
static outcome feed(const uint8_t *data, size_t size, size_t max_event, int mode, uint32_t seed, run *r)
{
    outcome o = {CF_E_OK, CF_E_OK};
    cf_sse_parser p;
    cf_sse_parser_init(&p, max_event, on_event_identity, r);
    size_t pos = 0;
    while (pos < size || (mode == 0 && pos == 0)) {
        size_t n = size - pos;
        if (mode == 1) {
            n = 1;
        } else if (mode == 2) {
            seed = seed * 1103515245u + 12345u;
            n = (seed >> 16) % 17; /* empty chunks too */
            if (n > size - pos) {
                n = size - pos;
            }
        }
        if (cf_is_error(cf_sse_parser_feed(&p, cf_slice_make(data + pos, n)))) {
            o.feed = cf_error_code_last();
            break;
        }
        pos += n;
        if (size == 0) {
            break;
        }
    }
    if (o.feed == CF_E_OK && cf_is_error(cf_sse_parser_finish(&p))) {
        o.finish = cf_error_code_last();
    }
    cf_sse_parser_free(&p);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the event size limit (small limits hit S7), the
     * second seeds the chunking; the rest is the stream. */
    if (size < 2) {
        return 0;
    }
    size_t max_event = data[0] < 128 ? (size_t)data[0] + 1 : 0;
    uint32_t seed = data[1];
    data += 2;
    size -= 2;

    run whole = {.roundtrip = true};
    cf_buf_init(&whole.log, 0);
    outcome ow = feed(data, size, max_event, 0, seed, &whole);
    check(ow.feed == CF_E_OK || ow.feed == CF_E_TOO_LARGE);
    check(ow.finish == CF_E_OK || ow.finish == CF_E_TRUNCATED);
    for (int mode = 1; mode <= 2; mode++) {
        run other = {.roundtrip = false};
        cf_buf_init(&other.log, 0);
        outcome oo = feed(data, size, max_event, mode, seed, &other);
        check(oo.feed == ow.feed && oo.finish == ow.finish);
        check(other.events == whole.events);
        check(cf_slice_eq(cf_buf_slice(&other.log), cf_buf_slice(&whole.log)));
        cf_buf_free(&other.log);
    }
    cf_buf_free(&whole.log);
    return 0;
}
