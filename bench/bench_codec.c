/* bench_codec.c — cost of the protocol v1 field codec against raw AES-256-GCM
 * over the same plaintext bytes, in the same run:
 *   - a 4 KiB chat request: client seal + worker open (key schedule, JSON
 *     scan, digest, AEAD, splice) vs one AES-GCM seal + open of 4 KiB;
 *   - a 1,000-event SSE reply: worker seal + client open of the whole stream
 *     (SSE parse and write, per-event JSON and AEAD, final event) vs AES-GCM
 *     seal + open of each event's payload. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "confide/crypto.h"
#include "confide/protocol.h"

#define EVENTS 1000

typedef struct codec_bench {
    const cf_proto_endpoint *ep;
    uint8_t secret[32];
    cf_buf request;  /* plaintext 4 KiB chat request */
    cf_buf enc_req;  /* an encrypted request, for the stream sessions */
    cf_buf sse;      /* plaintext 1,000-event stream */
    cf_buf enc, out; /* scratch */
    cf_aead raw;
    uint8_t *raw_ct, *raw_pt;
    size_t raw_len;        /* bytes per raw operation */
    size_t event_len[EVENTS];
} codec_bench;

static CF_RESULT lookup(void *ctx, const char *key_id, uint8_t secret[32])
{
    (void)key_id;
    memcpy(secret, ((codec_bench *)ctx)->secret, 32);
    return CF_OK;
}

static void op_request(void *arg)
{
    codec_bench *b = arg;
    cf_proto_session *cs = NULL, *ws = NULL;
    cf_buf_reset(&b->enc);
    cf_buf_reset(&b->out);
    if (cf_is_error(cf_proto_request_seal(b->ep, b->secret, cf_buf_slice(&b->request), NULL, &b->enc, &cs))) {
        cf_bench_fail("request seal");
    }
    if (cf_is_error(cf_proto_request_open(b->ep, cf_buf_slice(&b->enc), lookup, b, NULL, &b->out, &ws))) {
        cf_bench_fail("request open");
    }
    cf_bench_sink(b->out.data, b->out.len);
    cf_proto_session_free(cs);
    cf_proto_session_free(ws);
}

static void raw_once(codec_bench *b, size_t len)
{
    uint8_t nonce[CF_AEAD_NONCE_LEN] = {0};
    if (cf_is_error(cf_aead_seal(&b->raw, nonce, CF_SLICE_EMPTY, cf_slice_make(b->raw_pt, len), b->raw_ct)) ||
        cf_is_error(cf_aead_open(&b->raw, nonce, CF_SLICE_EMPTY, cf_slice_make(b->raw_ct, len + CF_AEAD_TAG_LEN),
                                 b->raw_pt))) {
        cf_bench_fail("raw AES-GCM");
    }
    cf_bench_sink(b->raw_pt, len);
}

static void op_raw_request(void *arg)
{
    codec_bench *b = arg;
    raw_once(b, b->request.len);
}

static void op_stream(void *arg)
{
    codec_bench *b = arg;
    cf_proto_session *ws = NULL, *cs = NULL;
    cf_buf_reset(&b->enc);
    cf_buf_reset(&b->out);
    cf_buf plain;
    cf_buf_init(&plain, 0);
    if (cf_is_error(cf_proto_request_open(b->ep, cf_buf_slice(&b->enc_req), lookup, b,
                                          &(cf_proto_open_options){.window_ms = -1}, &plain, &ws)) ||
        cf_is_error(cf_proto_session_from_request(b->ep, b->secret, cf_buf_slice(&b->enc_req), &cs)) ||
        cf_is_error(cf_proto_stream_begin(ws, 200)) || cf_is_error(cf_proto_stream_begin(cs, 200)) ||
        cf_is_error(cf_proto_stream_seal_feed(ws, cf_buf_slice(&b->sse), &b->enc)) ||
        cf_is_error(cf_proto_stream_seal_finish(ws, &b->enc)) ||
        cf_is_error(cf_proto_stream_open_feed(cs, cf_buf_slice(&b->enc), &b->out)) ||
        cf_is_error(cf_proto_reply_finish(cs))) {
        cf_bench_fail("stream");
    }
    cf_bench_sink(b->out.data, b->out.len);
    cf_buf_free(&plain);
    cf_proto_session_free(ws);
    cf_proto_session_free(cs);
}

static void op_raw_stream(void *arg)
{
    codec_bench *b = arg;
    for (size_t i = 0; i < EVENTS; i++) {
        raw_once(b, b->event_len[i]);
    }
}

static void bench_codec(void)
{
    codec_bench b;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 32; i++) {
        b.secret[i] = (uint8_t)(3 * i);
    }
    if (cf_is_error(cf_proto_endpoint_by_name(cf_slice_cstr("chat.completions"), &b.ep))) {
        cf_bench_fail("endpoint");
    }
    cf_buf_init(&b.request, 0);
    cf_buf_init(&b.enc_req, 0);
    cf_buf_init(&b.sse, 0);
    cf_buf_init(&b.enc, 0);
    cf_buf_init(&b.out, 0);

    /* A 4 KiB chat request: a conversation of several messages. */
    if (cf_is_error(cf_buf_append_cstr(&b.request, "{\"model\":\"llama-3\",\"messages\":["))) {
        cf_bench_fail("buf");
    }
    for (int i = 0; b.request.len < 4096 - 120; i++) {
        if (cf_is_error(cf_buf_appendf(&b.request,
                                       "%s{\"role\":\"%s\",\"content\":\"Message %d: the quick brown fox jumps over "
                                       "the lazy dog, again and again.\"}",
                                       i ? "," : "", i % 2 ? "assistant" : "user", i))) {
            cf_bench_fail("buf");
        }
    }
    if (cf_is_error(cf_buf_appendf(&b.request, "],\"temperature\":0.7,\"max_tokens\":256,\"stream\":false}"))) {
        cf_bench_fail("buf");
    }

    /* A 1,000-event stream of typical chat chunks, then [DONE]. */
    for (size_t i = 0; i < EVENTS; i++) {
        size_t before = b.sse.len;
        if (cf_is_error(cf_buf_appendf(&b.sse,
                                       "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":"
                                       "1764115200,\"model\":\"llama-3\",\"choices\":[{\"index\":0,\"delta\":{"
                                       "\"content\":\" token%zu\"},\"finish_reason\":null}]}\n\n",
                                       i))) {
            cf_bench_fail("buf");
        }
        b.event_len[i] = b.sse.len - before - 8; /* the payload without "data: " and "\n\n" */
    }
    if (cf_is_error(cf_buf_append_cstr(&b.sse, "data: [DONE]\n\n"))) {
        cf_bench_fail("buf");
    }
    cf_proto_session *s = NULL;
    if (cf_is_error(cf_proto_request_seal(b.ep, b.secret,
                                          cf_slice_cstr("{\"model\":\"llama-3\",\"messages\":[],\"stream\":true}"),
                                          NULL, &b.enc_req, &s))) {
        cf_bench_fail("stream request");
    }
    cf_proto_session_free(s);

    b.raw_len = b.request.len > 4096 ? b.request.len : 4096;
    b.raw_pt = calloc(1, b.raw_len);
    b.raw_ct = calloc(1, b.raw_len + CF_AEAD_TAG_LEN);
    if (b.raw_pt == NULL || b.raw_ct == NULL ||
        cf_is_error(cf_aead_init(&b.raw, CF_AEAD_AES_256_GCM, cf_slice_make(b.secret, 32)))) {
        cf_bench_fail("raw setup");
    }
    memcpy(b.raw_pt, b.request.data, b.request.len);

    double raw = cf_bench_ops_per_sec(op_raw_request, &b, 0.5);
    double ours = cf_bench_ops_per_sec(op_request, &b, 1.0);
    char label[96];
    snprintf(label, sizeof label, "chat request %zu B: seal+open vs raw GCM", b.request.len);
    cf_bench_row(label, 1e6 / ours, 1e6 / raw, "us/op");

    raw = cf_bench_ops_per_sec(op_raw_stream, &b, 0.5);
    ours = cf_bench_ops_per_sec(op_stream, &b, 1.0);
    cf_bench_row("SSE reply, 1000 events: seal+open vs raw GCM", 1e6 / ours, 1e6 / raw, "us/op");
    cf_bench_row("  same, per event", 1e6 / ours / EVENTS, 1e6 / raw / EVENTS, "us/ev");

    cf_aead_free(&b.raw);
    free(b.raw_pt);
    free(b.raw_ct);
    cf_buf_free(&b.request);
    cf_buf_free(&b.enc_req);
    cf_buf_free(&b.sse);
    cf_buf_free(&b.enc);
    cf_buf_free(&b.out);
}

CF_BENCH_SUITE("codec", bench_codec)
