/* bench_attest_snp.c — SEV-SNP report verifications per second, without and
 * with the cache of verified certificate chains, next to the raw ECDSA P-384
 * verify that is the floor of any report verification (the same signed bytes
 * and key, straight through EVP). Uses the real Milan vector
 * (milan/ms_report.bin + ms_vcek.pem) read from $CONFIDE_VECTORS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "bench.h"
#include "confide/attest.h"
#include "confide/snp.h"

#define AT INT64_C(1795132800) /* 2026-11-20: inside the VCEK's validity */

typedef struct snp_bench {
    cf_buf report, vcek;
    cf_verify_input in;
    cf_snp_chain_cache *cache;
    EVP_PKEY *pub;
    unsigned char *der_sig;
    int der_len;
} snp_bench;

static void read_vector(const char *rel, cf_buf *out)
{
    const char *root = getenv("CONFIDE_VECTORS");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root ? root : "../shared/vectors", rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        cf_bench_fail("attest_snp: vectors not found (set CONFIDE_VECTORS)");
    }
    cf_buf_init(out, 0);
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (cf_is_error(cf_buf_append(out, chunk, n))) {
            cf_bench_fail("attest_snp: read");
        }
    }
    fclose(f);
}

static void op_verify(void *arg)
{
    snp_bench *b = arg;
    cf_claims claims;
    if (cf_is_error(cf_snp_verify_with_cache(&b->in, b->cache, &claims))) {
        cf_bench_fail("attest_snp: verification failed");
    }
    cf_bench_sink(claims.measurement, 1);
    cf_claims_free(&claims);
}

static void op_raw_ecdsa(void *arg)
{
    snp_bench *b = arg;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, b->pub) != 1 ||
        EVP_DigestVerify(md, b->der_sig, (size_t)b->der_len, b->report.data, CF_SNP_SIGNED_LEN) != 1) {
        cf_bench_fail("attest_snp: raw ECDSA verify failed");
    }
    EVP_MD_CTX_free(md);
}

static void suite_attest_snp(void)
{
    snp_bench b = {0};
    read_vector("amd-sev-snp/milan/ms_report.bin", &b.report);
    read_vector("amd-sev-snp/milan/ms_vcek.pem", &b.vcek);
    b.in = (cf_verify_input){.platform = CF_PLATFORM_SNP,
                             .evidence = cf_buf_slice(&b.report),
                             .collateral = cf_buf_slice(&b.vcek),
                             .expected_report_data = b.report.data + 0x50,
                             .now = AT};
    /* Raw baseline: the report's r, s (little-endian) as a DER ECDSA-Sig. */
    BIO *bio = BIO_new_mem_buf(b.vcek.data, (int)b.vcek.len);
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (cert == NULL) {
        cf_bench_fail("attest_snp: VCEK");
    }
    b.pub = X509_get_pubkey(cert);
    X509_free(cert);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_lebin2bn(b.report.data + 0x2A0, 48, NULL), BN_lebin2bn(b.report.data + 0x2E8, 48, NULL));
    b.der_len = i2d_ECDSA_SIG(sig, &b.der_sig);
    ECDSA_SIG_free(sig);

    double raw = cf_bench_ops_per_sec(op_raw_ecdsa, &b, 1.0);
    b.cache = NULL;
    double uncached = cf_bench_ops_per_sec(op_verify, &b, 1.0);
    cf_snp_chain_cache cache;
    cf_snp_chain_cache_init(&cache);
    b.cache = &cache;
    double cached = cf_bench_ops_per_sec(op_verify, &b, 1.0);
    cf_bench_row("snp report verify, no chain cache", uncached, raw, "verif/s");
    cf_bench_row("snp report verify, chain cache", cached, raw, "verif/s");
    cf_bench_row("raw ECDSA P-384 verify (baseline)", raw, raw, "verif/s");
    cf_snp_chain_cache_destroy(&cache);
    OPENSSL_free(b.der_sig);
    EVP_PKEY_free(b.pub);
    cf_buf_free(&b.report);
    cf_buf_free(&b.vcek);
}

CF_BENCH_SUITE("attest_snp", suite_attest_snp)
