/* bench_wire_json.c — the wire JSON scanner and SSE parser against raw
 * baselines in the same run: jansson parsing the same body (what we would use
 * if we did not need byte spans) and a memchr scan for "\n\n" over the same
 * SSE stream (the least any event splitter must do). */
#include "bench.h"

#include <jansson.h>
#include <string.h>

#include "confide/json.h"
#include "confide/sse.h"

/* A chat request of about 64 KiB: a long conversation with escapes and
 * non-ASCII text, plus the routing fields. */
static void make_chat_body(cf_buf *b)
{
    cf_buf_init(b, 0);
    if (cf_is_error(cf_buf_append_cstr(b, "{\"model\":\"llama-3-8b\",\"stream\":true,\"max_tokens\":512,\"messages\":["))) {
        cf_bench_fail("body");
    }
    for (int i = 0; i < 200; i++) {
        if (cf_is_error(cf_buf_appendf(b,
                                       "%s{\"role\":\"%s\",\"content\":\"Turn %d: the caf\\u00e9 said \\\"hello\\\"\\n"
                                       "and then \xc3\xa9\xe2\x82\xac \xf0\x9f\x98\x80 lorem ipsum dolor sit amet, "
                                       "consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
                                       "et dolore magna aliqua. Ut enim ad minim veniam.\"}",
                                       i ? "," : "", i % 2 ? "assistant" : "user", i))) {
            cf_bench_fail("body");
        }
    }
    if (cf_is_error(cf_buf_append_cstr(b, "],\"temperature\":0.7,\"top_p\":0.95,\"cache_salt\":\"abc\"}"))) {
        cf_bench_fail("body");
    }
}

static void op_object_parse(void *arg)
{
    cf_json_object obj;
    if (cf_is_error(cf_json_object_parse(cf_buf_slice(arg), NULL, &obj))) {
        cf_bench_fail("cf_json_object_parse");
    }
    cf_bench_sink(obj.members[0].value.ptr, 1);
    cf_json_object_free(&obj);
}

static void op_jansson(void *arg)
{
    const cf_buf *b = arg;
    json_error_t err;
    json_t *j = json_loadb((const char *)b->data, b->len, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL) {
        cf_bench_fail("json_loadb");
    }
    json_decref(j);
}

static size_t sse_events;

static CF_RESULT count_event(void *ctx, const cf_sse_event *ev)
{
    (void)ctx;
    sse_events++;
    cf_bench_sink(ev->data.ptr, ev->data.len);
    return CF_OK;
}

typedef struct sse_input {
    cf_buf stream;
    size_t chunk;
} sse_input;

static void op_sse_parse(void *arg)
{
    sse_input *in = arg;
    cf_sse_parser p;
    cf_sse_parser_init(&p, 0, count_event, NULL);
    for (size_t off = 0; off < in->stream.len; off += in->chunk) {
        size_t n = in->stream.len - off < in->chunk ? in->stream.len - off : in->chunk;
        if (cf_is_error(cf_sse_parser_feed(&p, cf_slice_make(in->stream.data + off, n)))) {
            cf_bench_fail("cf_sse_parser_feed");
        }
    }
    if (cf_is_error(cf_sse_parser_finish(&p))) {
        cf_bench_fail("cf_sse_parser_finish");
    }
    cf_sse_parser_free(&p);
}

static void op_memchr_split(void *arg)
{
    sse_input *in = arg;
    const uint8_t *s = in->stream.data, *end = s + in->stream.len;
    size_t events = 0;
    while (s < end) {
        const uint8_t *nl = memchr(s, '\n', (size_t)(end - s));
        if (nl == NULL) {
            break;
        }
        if (nl + 1 < end && nl[1] == '\n') {
            events++;
        }
        s = nl + 1;
    }
    cf_bench_sink(&events, sizeof events);
}

static void bench_wire(void)
{
    cf_buf body;
    make_chat_body(&body);
    double ours = cf_bench_ops_per_sec(op_object_parse, &body, 1.0);
    double base = cf_bench_ops_per_sec(op_jansson, &body, 1.0);
    cf_bench_row("json: object_parse 64KiB chat body", ours * (double)body.len / 1e6,
                 base * (double)body.len / 1e6, "MB/s");
    cf_buf_free(&body);

    sse_input in = {.chunk = 4096};
    cf_buf_init(&in.stream, 0);
    for (int i = 0; i < 2000; i++) {
        if (cf_is_error(cf_buf_appendf(&in.stream,
                                       "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":"
                                       "[{\"index\":0,\"delta\":{\"content\":\"tok%d\"}}]}\n\n",
                                       i))) {
            cf_bench_fail("stream");
        }
    }
    ours = cf_bench_ops_per_sec(op_sse_parse, &in, 1.0);
    base = cf_bench_ops_per_sec(op_memchr_split, &in, 1.0);
    cf_bench_row("sse: parse 2000-event stream, 4KiB chunks", ours * (double)in.stream.len / 1e6,
                 base * (double)in.stream.len / 1e6, "MB/s");
    cf_buf_free(&in.stream);
}

CF_BENCH_SUITE("wire_json_sse", bench_wire)
