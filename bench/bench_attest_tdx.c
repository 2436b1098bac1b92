/* bench_attest_tdx.c — full TDX quote verifications per second (quote and QE
 * signatures, QE binding, PCK chain with CRLs, TCB info and QE identity
 * signatures and chains, TCB matching, policy) on the dcap-qvl v4 vector,
 * next to the raw ECDSA P-256 verify rate of OpenSSL on the same machine.
 * A full verification does 2 raw ECDSA verifies plus 3 chain validations
 * (each 2-3 ECDSA verifies and the CRL signatures), so ~10x is the floor.
 * Measured with the verified-chain cache off (every call does everything)
 * and on (chains verified once per validity window; see tdx.h). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest/tdx_internal.h"
#include "bench.h"
#include "confide/attest.h"
#include "confide/tdx.h"

typedef struct tdx_bench {
    cf_buf quote, collateral;
    int64_t now;
    cf_tdx_quote parsed;
    EVP_PKEY *att_key;
} tdx_bench;

static void read_vector(const char *rel, cf_buf *out)
{
    const char *root = getenv("CONFIDE_VECTORS");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root ? root : "../shared/vectors", rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        cf_bench_fail("tdx bench: vector missing (set CONFIDE_VECTORS)");
    }
    cf_buf_init(out, 0);
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (cf_is_error(cf_buf_append(out, chunk, n))) {
            cf_bench_fail("tdx bench: read");
        }
    }
    fclose(f);
}

static void op_verify(void *arg)
{
    tdx_bench *b = arg;
    cf_verify_input in = {.platform = CF_PLATFORM_TDX,
                          .evidence = cf_buf_slice(&b->quote),
                          .collateral = cf_buf_slice(&b->collateral),
                          .now = b->now};
    cf_claims c;
    if (cf_is_error(cf_attest_verify(&in, &c))) {
        cf_bench_fail("tdx bench: verification failed");
    }
    cf_bench_sink(c.measurement, sizeof c.measurement);
    cf_claims_free(&c);
}

static void op_raw_ecdsa(void *arg)
{
    tdx_bench *b = arg;
    if (cf_is_error(tdx_ecdsa_verify_raw(b->att_key, b->parsed.signed_region, b->parsed.signature))) {
        cf_bench_fail("tdx bench: raw ECDSA failed");
    }
}

static void op_parse(void *arg)
{
    tdx_bench *b = arg;
    cf_tdx_quote q;
    if (cf_is_error(cf_tdx_quote_parse(cf_buf_slice(&b->quote), &q))) {
        cf_bench_fail("tdx bench: parse failed");
    }
    cf_bench_sink(&q.td.mrtd, sizeof q.td.mrtd);
}

static void bench_tdx(void)
{
    tdx_bench b;
    memset(&b, 0, sizeof b);
    read_vector("intel-tdx/dcap-qvl/tdx_quote_v4.bin", &b.quote);
    read_vector("intel-tdx/dcap-qvl/tdx_quote_v4_collateral.json", &b.collateral);
    if (cf_is_error(tdx_parse_time("2025-07-01T00:00:00Z", &b.now)) ||
        cf_is_error(cf_tdx_quote_parse(cf_buf_slice(&b.quote), &b.parsed)) ||
        cf_is_error(tdx_p256_from_xy(b.parsed.attestation_key, &b.att_key))) {
        cf_bench_fail("tdx bench: setup");
    }
    double raw = cf_bench_ops_per_sec(op_raw_ecdsa, &b, 1.0);
    cf_tdx_chain_cache_enable(false);
    double full = cf_bench_ops_per_sec(op_verify, &b, 1.0);
    cf_tdx_chain_cache_enable(true);
    cf_tdx_chain_cache_clear();
    double cached = cf_bench_ops_per_sec(op_verify, &b, 1.0);
    double parse = cf_bench_ops_per_sec(op_parse, &b, 0.5);
    cf_bench_row("tdx quote verify (full, chain cache off) vs raw P-256 verify", full, raw, "ops/s");
    cf_bench_row("tdx quote verify (full, chain cache on) vs raw P-256 verify", cached, raw, "ops/s");
    cf_bench_row("tdx quote parse only vs raw P-256 verify", parse, raw, "ops/s");
    EVP_PKEY_free(b.att_key);
    cf_buf_free(&b.quote);
    cf_buf_free(&b.collateral);
}

CF_BENCH_SUITE("attest_tdx", bench_tdx)
