/*
 * sse.h — incremental server-sent-events parser and writer (protocol v1).
 *
 * What it is for. The worker encrypts an inference server's SSE stream event
 * by event and the proxy decrypts it event by event (DESIGN §4.5), both
 * without buffering the whole reply. The parser is fed arbitrary chunks as
 * they arrive (e.g. each evbuffer_peek() extent in a libevent read callback)
 * and calls back once per complete event; the writer serialises an event.
 *
 * Normative parsing rules (WHATWG HTML "Server-sent events" §9.2.6
 * "Interpreting an event stream"; docs/protocol.md refers here):
 *
 *  S1  Bytes are passed through unchanged: no UTF-8 decoding or repair. The
 *      JSON layer validates data payloads; field names compare bytewise.
 *  S2  One leading UTF-8 BOM (EF BB BF) at the very start of the stream is
 *      dropped, even when split across chunks. A BOM anywhere else is data.
 *  S3  Lines end at CRLF, LF or a lone CR, mixed freely; a CR at the end of
 *      one chunk followed by LF at the start of the next is one CRLF.
 *  S4  A line starting with ':' is a comment: its text (everything after the
 *      ':', nothing stripped) is reported in the event's `comments`.
 *  S5  Otherwise the field name is the text before the first ':' and the
 *      value the text after it with ONE leading space removed if present; a
 *      line without ':' is a field with an empty value.
 *        data   -> value appended to the data; several data lines are joined
 *                  with "\n" (no trailing "\n").
 *        event  -> the event type (the last one in the event wins).
 *        id     -> the id (last wins), unless the value contains U+0000, in
 *                  which case the line is ignored (as the spec says). The id
 *                  is reported with the event that carried it; the spec's
 *                  "last event ID" that persists across events is the
 *                  consumer's to keep if it needs one.
 *        retry  -> reconnection time in ms if the value is 1..10 ASCII digits
 *                  and fits in 32 bits, else the line is ignored.
 *        other  -> ignored (spec), but counted against the size limit.
 *  S6  An empty line ends the event. It is reported if it set at least one
 *      of data, event, id, retry, or had a comment; empty lines alone, or
 *      lines with only ignored fields, report nothing.
 *      Reported events are NOT filtered like a browser would: an event with
 *      only comments, or only an id, is reported too (has_data false), so a
 *      proxy can forward keep-alives; a browser dispatches only events with
 *      has_data (and uses type "message" when `type` is empty).
 *  S7  Size limit: the bytes of all non-empty lines of one event (without
 *      line terminators) may total at most max_event_size, else
 *      CF_E_TOO_LARGE as soon as the limit is crossed (before the event ends).
 *  S8  End of stream (cf_sse_parser_finish): if a line or an event was begun
 *      but not ended by an empty line, the stream is CF_E_TRUNCATED and the
 *      partial event is NOT reported (spec: "the incomplete event is not
 *      dispatched").
 *
 * Memory: a parser holds at most one event (bounded by S7) and no line
 * buffer at all: bytes are copied once, straight from the chunk into the
 * event's fields, so any chunking yields exactly the same events. Memory per
 * stream is constant regardless of stream length; buffers are wiped when an
 * event has been reported and on free (events carry prompts and replies).
 *
 * Driving it from a libevent read callback without copying (the first
 * contiguous extent of an evbuffer is pulled up in place):
 *
 *   struct evbuffer *in = bufferevent_get_input(bev);
 *   size_t n;
 *   while ((n = evbuffer_get_contiguous_space(in)) > 0) {
 *       const uint8_t *bytes = evbuffer_pullup(in, (ev_ssize_t)n);
 *       if (cf_is_error(cf_sse_parser_feed(&parser, cf_slice_make(bytes, n)))) {
 *           ... fail the stream with cf_error_last() ...
 *       }
 *       evbuffer_drain(in, n);
 *   }
 *   ... and on EOF: cf_sse_parser_finish(&parser) (CF_E_TRUNCATED?).
 *
 * Errors: the first failure (size limit, callback error, allocation) poisons
 * the parser; every later feed/finish fails with CF_E_INVALID_ARGUMENT. Events
 * reported before the failure stay reported; nothing partial is reported.
 */
#ifndef CONFIDE_SSE_H
#define CONFIDE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

#define CF_SSE_DEFAULT_MAX_EVENT ((size_t)1024 * 1024)

/*
 * One event. When reported by the parser, the slices borrow from the parser
 * and are valid only during the callback. When given to the writer, they
 * borrow from the caller.
 */
typedef struct cf_sse_event {
    cf_slice type;     /* value of the last `event:` line (meaningful if has_type) */
    cf_slice data;     /* data lines joined with "\n" (meaningful if has_data) */
    cf_slice id;       /* value of the last valid `id:` line (if has_id) */
    cf_slice comments; /* comment texts joined with "\n" (comment_count of them) */
    size_t comment_count;
    uint32_t retry_ms; /* if has_retry */
    bool has_type;
    bool has_data;
    bool has_id;
    bool has_retry;
} cf_sse_event;

/*
 * Called once per complete event, in stream order. Returning an error stops
 * the feed: cf_sse_parser_feed returns it and the parser is poisoned. The
 * callback must not call back into the same parser.
 */
typedef CF_RESULT (*cf_sse_event_fn)(void *ctx, const cf_sse_event *event);

typedef enum cf_sse_state_ {
    CF_SSE_LINE_START_,
    CF_SSE_NAME_,
    CF_SSE_VALUE_START_,
    CF_SSE_VALUE_,
    CF_SSE_COMMENT_,
} cf_sse_state_;

/* A parser. All fields are private; use the functions below. */
typedef struct cf_sse_parser {
    cf_sse_event_fn on_event_;
    void *ctx_;
    size_t max_event_;
    size_t event_bytes_;
    cf_buf data_, type_, id_, id_pending_, comments_;
    size_t comment_count_;
    uint64_t retry_acc_;
    uint32_t retry_ms_;
    unsigned retry_digits_;
    cf_sse_state_ state_;
    int field_;     /* which field the current line is */
    uint8_t name_[8];
    size_t name_len_;
    uint8_t bom_seen_; /* BOM bytes matched so far (0..3) */
    bool bom_done_;
    bool after_cr_;
    bool in_event_;
    bool id_nul_;
    bool retry_ok_;
    bool has_type_, has_data_, has_id_, has_retry_;
    bool failed_;
} cf_sse_parser;

/* Initialise a parser. max_event_size 0 = CF_SSE_DEFAULT_MAX_EVENT. */
void cf_sse_parser_init(cf_sse_parser *p, size_t max_event_size, cf_sse_event_fn on_event, void *ctx);
/* Feed the next chunk (any length, any split point; empty is fine). Calls
 * on_event for every event the chunk completes. */
CF_RESULT cf_sse_parser_feed(cf_sse_parser *p, cf_slice chunk);
/* The stream ended: CF_OK if it ended between events, CF_E_TRUNCATED if an
 * event or line was begun (S8). The parser is poisoned afterwards. */
CF_RESULT cf_sse_parser_finish(cf_sse_parser *p);
/* True if the parser holds a begun but unfinished event or line. */
bool cf_sse_parser_pending(const cf_sse_parser *p);
/* Wipe and free; the parser must be initialised again before reuse. */
void cf_sse_parser_free(cf_sse_parser *p);

/*
 * Append `event` in wire form to out: one ":<text>" line per comment, then
 * "event: <type>", "id: <id>", "retry: <ms>", then one "data: <line>" per
 * "\n"-separated line of data, then the empty line; lines end with "\n" and
 * a value that is empty is written without the space. Parsing the output
 * yields the same event (round trip). Fails with CF_E_INVALID_ARGUMENT (and
 * appends nothing) if a field could not round-trip: CR or LF in type, id or a
 * comment, CR in data, U+0000 in id, or an event with nothing to write.
 */
CF_RESULT cf_sse_write_event(cf_buf *out, const cf_sse_event *event);
/* Shorthand for an event with only data. */
CF_RESULT cf_sse_write_data(cf_buf *out, cf_slice data);

#endif /* CONFIDE_SSE_H */
