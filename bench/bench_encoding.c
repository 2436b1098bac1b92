/* bench_encoding.c — strict base64url (lib/core/encoding.c) against
 * OpenSSL's own base64 block coder over the same 4 KiB, in one run:
 *   core.b64url  cf_b64url_decode / cf_b64url_encode of 4 KiB vs
 *                EVP_DecodeBlock / EVP_EncodeBlock (standard alphabet,
 *                padded: the same work minus our strictness checks). */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "confide/encoding.h"

#define DATA_LEN 4096

typedef struct b64_bench {
    uint8_t data[DATA_LEN];
    cf_buf url;     /* base64url of data, no padding */
    uint8_t std[((DATA_LEN + 2) / 3) * 4 + 1]; /* standard base64 of data, padded */
    int std_len;
    cf_buf out;
    uint8_t raw_out[DATA_LEN + 3];
} b64_bench;

static void decode_ours(void *arg)
{
    b64_bench *b = arg;
    cf_buf_reset(&b->out);
    if (cf_is_error(cf_b64url_decode(cf_buf_slice(&b->url), &b->out)) || b->out.len != DATA_LEN) {
        cf_bench_fail("cf_b64url_decode");
    }
    cf_bench_sink(b->out.data, b->out.len);
}

static void decode_raw(void *arg)
{
    b64_bench *b = arg;
    if (EVP_DecodeBlock(b->raw_out, b->std, b->std_len) < DATA_LEN) {
        cf_bench_fail("EVP_DecodeBlock");
    }
    cf_bench_sink(b->raw_out, 1);
}

static void encode_ours(void *arg)
{
    b64_bench *b = arg;
    cf_buf_reset(&b->out);
    if (cf_is_error(cf_b64url_encode(cf_slice_make(b->data, DATA_LEN), &b->out))) {
        cf_bench_fail("cf_b64url_encode");
    }
    cf_bench_sink(b->out.data, b->out.len);
}

static void encode_raw(void *arg)
{
    b64_bench *b = arg;
    if (EVP_EncodeBlock(b->std, b->data, DATA_LEN) != b->std_len) {
        cf_bench_fail("EVP_EncodeBlock");
    }
    cf_bench_sink(b->std, 1);
}

static void bench_b64url(void)
{
    b64_bench *b = calloc(1, sizeof *b);
    if (b == NULL) {
        cf_bench_fail("calloc");
    }
    for (size_t i = 0; i < DATA_LEN; i++) {
        b->data[i] = (uint8_t)(i * 131 + 7);
    }
    cf_buf_init(&b->url, 0);
    cf_buf_init(&b->out, 0);
    if (cf_is_error(cf_b64url_encode(cf_slice_make(b->data, DATA_LEN), &b->url))) {
        cf_bench_fail("encode setup");
    }
    b->std_len = EVP_EncodeBlock(b->std, b->data, DATA_LEN);
    double ours = cf_bench_ops_per_sec(decode_ours, b, 0.3);
    double raw = cf_bench_ops_per_sec(decode_raw, b, 0.3);
    cf_bench_row("base64url decode 4 KiB (vs EVP_DecodeBlock)", 1e9 / ours / (double)b->url.len,
                 1e9 / raw / (double)b->std_len, "ns/char");
    ours = cf_bench_ops_per_sec(encode_ours, b, 0.3);
    raw = cf_bench_ops_per_sec(encode_raw, b, 0.3);
    cf_bench_row("base64url encode 4 KiB (vs EVP_EncodeBlock)", 1e9 / ours / DATA_LEN, 1e9 / raw / DATA_LEN,
                 "ns/byte");
    cf_buf_free(&b->url);
    cf_buf_free(&b->out);
    free(b);
}

CF_BENCH_SUITE("core.b64url", bench_b64url)
