/* bench_crypto.c — cost of the crypto wrappers against raw OpenSSL EVP
 * calls doing the same work (the `openssl speed` equivalent), in one run:
 *   crypto.aead    AES-256-GCM seal+open through cf_aead vs raw EVP
 *                  (keyed contexts reused on both sides), 64 B / 1 KiB / 16 KiB
 *   crypto.x25519  cf_x25519 vs EVP_PKEY_derive on prepared keys
 *   crypto.ecdsa   P-384/SHA-384 verify, cf_ecdsa_verify_der vs EVP_DigestVerify
 *   crypto.hpke    HPKE base seal+open (X25519, HKDF-SHA256, AES-256-GCM) vs
 *                  its asymmetric floor in raw EVP (one X25519 keygen + two
 *                  derives), so the ratio shows what the key schedule costs.
 * Per-call setup costs (what a per-request key pays before its first byte):
 *   crypto.aead_init  cf_aead_init + seal 64 B + free vs a raw EVP context
 *                     built from a cipher fetched once
 *   crypto.hkdf       HKDF-SHA256 extract and expand (32 B) vs raw EVP_KDF
 *                     with the KDF fetched once
 *   crypto.hash       SHA-256 one-shot and incremental over 64 B vs raw EVP
 *                     with the digest fetched once */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "confide/crypto.h"
#include "confide/hpke.h"

#define SECONDS 0.3

/* ---- AEAD ------------------------------------------------------------------ */

typedef struct aead_bench {
    size_t len;
    uint8_t key[32], nonce[12];
    uint8_t *pt, *ct, *back;
    cf_aead ours;
    EVP_CIPHER_CTX *enc, *dec;
} aead_bench;

static void aead_ours(void *arg)
{
    aead_bench *b = arg;
    if (cf_is_error(cf_aead_seal(&b->ours, b->nonce, cf_slice_cstr("aad"), cf_slice_make(b->pt, b->len), b->ct)) ||
        cf_is_error(
            cf_aead_open(&b->ours, b->nonce, cf_slice_cstr("aad"), cf_slice_make(b->ct, b->len + 16), b->back))) {
        cf_bench_fail("cf_aead seal/open");
    }
    cf_bench_sink(b->back, 1);
}

static void aead_raw(void *arg)
{
    aead_bench *b = arg;
    int len = 0;
    uint8_t tag[16];
    if (EVP_EncryptInit_ex2(b->enc, NULL, NULL, b->nonce, NULL) != 1 ||
        EVP_EncryptUpdate(b->enc, NULL, &len, (const uint8_t *)"aad", 3) != 1 ||
        EVP_EncryptUpdate(b->enc, b->ct, &len, b->pt, (int)b->len) != 1 ||
        EVP_EncryptFinal_ex(b->enc, b->ct + b->len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(b->enc, EVP_CTRL_AEAD_GET_TAG, 16, b->ct + b->len) != 1) {
        cf_bench_fail("raw EVP seal");
    }
    memcpy(tag, b->ct + b->len, 16);
    /* Raw baseline decrypts straight into the output (no scratch copy). */
    if (EVP_DecryptInit_ex2(b->dec, NULL, NULL, b->nonce, NULL) != 1 ||
        EVP_DecryptUpdate(b->dec, NULL, &len, (const uint8_t *)"aad", 3) != 1 ||
        EVP_DecryptUpdate(b->dec, b->back, &len, b->ct, (int)b->len) != 1 ||
        EVP_CIPHER_CTX_ctrl(b->dec, EVP_CTRL_AEAD_SET_TAG, 16, tag) != 1 ||
        EVP_DecryptFinal_ex(b->dec, b->back + b->len, &len) != 1) {
        cf_bench_fail("raw EVP open");
    }
    cf_bench_sink(b->back, 1);
}

static void bench_aead(void)
{
    const size_t sizes[] = {64, 1024, 16384};
    for (size_t i = 0; i < 3; i++) {
        aead_bench b;
        memset(&b, 0, sizeof b);
        b.len = sizes[i];
        memset(b.key, 0x42, sizeof b.key);
        b.pt = calloc(1, b.len);
        b.ct = calloc(1, b.len + 16);
        b.back = calloc(1, b.len + 16);
        b.enc = EVP_CIPHER_CTX_new();
        b.dec = EVP_CIPHER_CTX_new();
        if (!b.pt || !b.ct || !b.back || !b.enc || !b.dec ||
            EVP_EncryptInit_ex2(b.enc, EVP_aes_256_gcm(), b.key, NULL, NULL) != 1 ||
            EVP_DecryptInit_ex2(b.dec, EVP_aes_256_gcm(), b.key, NULL, NULL) != 1) {
            cf_bench_fail("AEAD setup");
        }
        if (cf_is_error(cf_aead_init(&b.ours, CF_AEAD_AES_256_GCM, cf_slice_make(b.key, 32)))) {
            cf_bench_fail("cf_aead_init");
        }
        double ours = cf_bench_ops_per_sec(aead_ours, &b, SECONDS);
        double raw = cf_bench_ops_per_sec(aead_raw, &b, SECONDS);
        char label[64];
        snprintf(label, sizeof label, "AES-256-GCM seal+open %zu B", b.len);
        cf_bench_row(label, ours * (double)b.len / 1e6, raw * (double)b.len / 1e6, "MB/s");
        cf_aead_free(&b.ours);
        EVP_CIPHER_CTX_free(b.enc);
        EVP_CIPHER_CTX_free(b.dec);
        free(b.pt);
        free(b.ct);
        free(b.back);
    }
}

/* ---- X25519 ----------------------------------------------------------------- */

typedef struct x25519_bench {
    uint8_t sk[32], pk[32], peer_sk[32], peer_pk[32];
    EVP_PKEY_CTX *raw_ctx;
} x25519_bench;

static void x25519_ours(void *arg)
{
    x25519_bench *b = arg;
    uint8_t shared[32];
    if (cf_is_error(cf_x25519(b->sk, b->peer_pk, shared))) {
        cf_bench_fail("cf_x25519");
    }
    cf_bench_sink(shared, 1);
}

static void x25519_raw(void *arg)
{
    x25519_bench *b = arg;
    uint8_t shared[32];
    size_t len = sizeof shared;
    if (EVP_PKEY_derive(b->raw_ctx, shared, &len) != 1) {
        cf_bench_fail("EVP_PKEY_derive");
    }
    cf_bench_sink(shared, 1);
}

static void bench_x25519(void)
{
    x25519_bench b;
    if (cf_is_error(cf_x25519_keygen(b.sk, b.pk)) || cf_is_error(cf_x25519_keygen(b.peer_sk, b.peer_pk))) {
        cf_bench_fail("X25519 keygen");
    }
    EVP_PKEY *own = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, b.sk, 32);
    EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, b.peer_pk, 32);
    b.raw_ctx = own ? EVP_PKEY_CTX_new_from_pkey(NULL, own, NULL) : NULL;
    if (!peer || !b.raw_ctx || EVP_PKEY_derive_init(b.raw_ctx) != 1 || EVP_PKEY_derive_set_peer(b.raw_ctx, peer) != 1) {
        cf_bench_fail("raw X25519 setup");
    }
    double ours = cf_bench_ops_per_sec(x25519_ours, &b, SECONDS);
    double raw = cf_bench_ops_per_sec(x25519_raw, &b, SECONDS);
    cf_bench_row("X25519 shared secret (from raw key bytes)", ours, raw, "ops/s");
    EVP_PKEY_CTX_free(b.raw_ctx);
    EVP_PKEY_free(own);
    EVP_PKEY_free(peer);
}

/* ---- ECDSA P-384 verify ------------------------------------------------------------ */

typedef struct ecdsa_bench {
    EVP_PKEY *key;
    cf_buf sig;
    uint8_t msg[0x2A0]; /* the size of an SNP report's signed part */
} ecdsa_bench;

static void ecdsa_ours(void *arg)
{
    ecdsa_bench *b = arg;
    if (cf_is_error(cf_ecdsa_verify_der(b->key, CF_HASH_SHA384, cf_slice_make(b->msg, sizeof b->msg),
                                        cf_buf_slice(&b->sig)))) {
        cf_bench_fail("cf_ecdsa_verify_der");
    }
}

static void ecdsa_raw(void *arg)
{
    ecdsa_bench *b = arg;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestVerifyInit(ctx, NULL, EVP_sha384(), NULL, b->key) != 1 ||
        EVP_DigestVerify(ctx, b->sig.data, b->sig.len, b->msg, sizeof b->msg) != 1) {
        cf_bench_fail("raw EVP_DigestVerify");
    }
    EVP_MD_CTX_free(ctx);
}

static void bench_ecdsa(void)
{
    ecdsa_bench b;
    memset(b.msg, 0x5A, sizeof b.msg);
    cf_buf_init(&b.sig, 256);
    if (cf_is_error(cf_ec_keygen(CF_EC_P384, &b.key)) ||
        cf_is_error(cf_ecdsa_sign_der(b.key, CF_HASH_SHA384, cf_slice_make(b.msg, sizeof b.msg), &b.sig))) {
        cf_bench_fail("ECDSA setup");
    }
    double ours = cf_bench_ops_per_sec(ecdsa_ours, &b, SECONDS);
    double raw = cf_bench_ops_per_sec(ecdsa_raw, &b, SECONDS);
    cf_bench_row("ECDSA P-384/SHA-384 verify (672 B msg)", ours, raw, "ops/s");
    cf_buf_free(&b.sig);
    EVP_PKEY_free(b.key);
}

/* ---- HPKE ------------------------------------------------------------------------ */

typedef struct hpke_bench {
    cf_hpke_keypair kp;
    uint8_t msg[64];
    x25519_bench floor;
} hpke_bench;

static void hpke_ours(void *arg)
{
    hpke_bench *b = arg;
    cf_buf enc, ct, pt;
    cf_buf_init(&enc, 0);
    cf_buf_init(&ct, 0);
    cf_buf_init(&pt, 0);
    cf_slice info = cf_slice_cstr("confide/v1 bench");
    if (cf_is_error(cf_hpke_seal_base(CF_HPKE_SUITE_DEFAULT, cf_hpke_keypair_public(&b->kp), info, CF_SLICE_EMPTY,
                                      cf_slice_make(b->msg, sizeof b->msg), &enc, &ct)) ||
        cf_is_error(cf_hpke_open_base(CF_HPKE_SUITE_DEFAULT, cf_buf_slice(&enc), &b->kp, info, CF_SLICE_EMPTY,
                                      cf_buf_slice(&ct), &pt))) {
        cf_bench_fail("HPKE seal/open");
    }
    cf_buf_free(&enc);
    cf_buf_free(&ct);
    cf_buf_free(&pt);
}

static void hpke_floor(void *arg)
{
    hpke_bench *b = arg;
    EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    if (eph == NULL) {
        cf_bench_fail("X25519 keygen");
    }
    EVP_PKEY_free(eph);
    x25519_raw(&b->floor);
    x25519_raw(&b->floor);
}

static void bench_hpke(void)
{
    hpke_bench b;
    memset(b.msg, 0x33, sizeof b.msg);
    if (cf_is_error(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &b.kp)) ||
        cf_is_error(cf_x25519_keygen(b.floor.sk, b.floor.pk)) ||
        cf_is_error(cf_x25519_keygen(b.floor.peer_sk, b.floor.peer_pk))) {
        cf_bench_fail("HPKE setup");
    }
    EVP_PKEY *own = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, b.floor.sk, 32);
    EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, b.floor.peer_pk, 32);
    b.floor.raw_ctx = own ? EVP_PKEY_CTX_new_from_pkey(NULL, own, NULL) : NULL;
    if (!peer || !b.floor.raw_ctx || EVP_PKEY_derive_init(b.floor.raw_ctx) != 1 ||
        EVP_PKEY_derive_set_peer(b.floor.raw_ctx, peer) != 1) {
        cf_bench_fail("raw X25519 setup");
    }
    double ours = cf_bench_ops_per_sec(hpke_ours, &b, SECONDS);
    double floor = cf_bench_ops_per_sec(hpke_floor, &b, SECONDS);
    cf_bench_row("HPKE base seal+open 64 B (vs X25519 floor)", ours, floor, "ops/s");
    EVP_PKEY_CTX_free(b.floor.raw_ctx);
    EVP_PKEY_free(own);
    EVP_PKEY_free(peer);
    cf_hpke_keypair_wipe(&b.kp);
}

/* ---- Per-call setup: AEAD init, HKDF, hashes ----------------------------------- */

typedef struct setup_bench {
    uint8_t key[32], nonce[12], msg[64], out[64 + 16];
    EVP_CIPHER *cipher;
    EVP_KDF *kdf;
    EVP_MD *md;
} setup_bench;

static void setup_bench_init(setup_bench *b)
{
    memset(b, 0, sizeof *b);
    memset(b->key, 0x42, sizeof b->key);
    memset(b->msg, 0x17, sizeof b->msg);
    /* The raw side fetches every algorithm once, as a careful direct user of
     * OpenSSL 3 would, so the ratio shows the wrappers' per-call overhead. */
    b->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    b->kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    b->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (b->cipher == NULL || b->kdf == NULL || b->md == NULL) {
        cf_bench_fail("fetch");
    }
}

static void setup_bench_free(setup_bench *b)
{
    EVP_CIPHER_free(b->cipher);
    EVP_KDF_free(b->kdf);
    EVP_MD_free(b->md);
}

static void aead_init_ours(void *arg)
{
    setup_bench *b = arg;
    cf_aead a;
    if (cf_is_error(cf_aead_init(&a, CF_AEAD_AES_256_GCM, cf_slice_make(b->key, 32))) ||
        cf_is_error(cf_aead_seal(&a, b->nonce, cf_slice_cstr("aad"), cf_slice_make(b->msg, sizeof b->msg), b->out))) {
        cf_bench_fail("cf_aead init+seal");
    }
    cf_aead_free(&a);
    cf_bench_sink(b->out, 1);
}

static void aead_init_raw(void *arg)
{
    setup_bench *b = arg;
    int len = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_EncryptInit_ex2(ctx, b->cipher, b->key, b->nonce, NULL) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &len, (const uint8_t *)"aad", 3) != 1 ||
        EVP_EncryptUpdate(ctx, b->out, &len, b->msg, (int)sizeof b->msg) != 1 ||
        EVP_EncryptFinal_ex(ctx, b->out + sizeof b->msg, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, b->out + sizeof b->msg) != 1) {
        cf_bench_fail("raw EVP init+seal");
    }
    EVP_CIPHER_CTX_free(ctx);
    cf_bench_sink(b->out, 1);
}

static void bench_aead_init(void)
{
    setup_bench b;
    setup_bench_init(&b);
    double ours = cf_bench_ops_per_sec(aead_init_ours, &b, SECONDS);
    double raw = cf_bench_ops_per_sec(aead_init_raw, &b, SECONDS);
    cf_bench_row("AES-256-GCM init + seal 64 B + free", 1e9 / ours, 1e9 / raw, "ns/op");
    setup_bench_free(&b);
}

static const char hkdf_info[] = "confide/v1 request key";

static void hkdf_expand_ours(void *arg)
{
    setup_bench *b = arg;
    if (cf_is_error(cf_hkdf_sha256_expand(cf_slice_make(b->key, 32), cf_slice_cstr(hkdf_info), b->out, 32))) {
        cf_bench_fail("cf_hkdf_sha256_expand");
    }
    cf_bench_sink(b->out, 1);
}

static void hkdf_extract_ours(void *arg)
{
    setup_bench *b = arg;
    if (cf_is_error(cf_hkdf_sha256_extract(cf_slice_make(b->msg, 16), cf_slice_make(b->key, 32), b->out))) {
        cf_bench_fail("cf_hkdf_sha256_extract");
    }
    cf_bench_sink(b->out, 1);
}

static void hkdf_raw(setup_bench *b, int mode, const uint8_t *key, size_t key_len, const char *other_name,
                     const void *other, size_t other_len)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)key, key_len),
        OSSL_PARAM_construct_octet_string(other_name, (void *)(uintptr_t)other, other_len),
        OSSL_PARAM_construct_end(),
    };
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(b->kdf);
    if (ctx == NULL || EVP_KDF_derive(ctx, b->out, 32, params) != 1) {
        cf_bench_fail("raw EVP_KDF_derive");
    }
    EVP_KDF_CTX_free(ctx);
    cf_bench_sink(b->out, 1);
}

static void hkdf_expand_raw(void *arg)
{
    setup_bench *b = arg;
    hkdf_raw(b, EVP_KDF_HKDF_MODE_EXPAND_ONLY, b->key, 32, OSSL_KDF_PARAM_INFO, hkdf_info, strlen(hkdf_info));
}

static void hkdf_extract_raw(void *arg)
{
    setup_bench *b = arg;
    hkdf_raw(b, EVP_KDF_HKDF_MODE_EXTRACT_ONLY, b->key, 32, OSSL_KDF_PARAM_SALT, b->msg, 16);
}

static void bench_hkdf(void)
{
    setup_bench b;
    setup_bench_init(&b);
    double ours = cf_bench_ops_per_sec(hkdf_expand_ours, &b, SECONDS);
    double raw = cf_bench_ops_per_sec(hkdf_expand_raw, &b, SECONDS);
    cf_bench_row("HKDF-SHA256 expand 32 B (vs raw EVP_KDF)", 1e9 / ours, 1e9 / raw, "ns/op");
    ours = cf_bench_ops_per_sec(hkdf_extract_ours, &b, SECONDS);
    raw = cf_bench_ops_per_sec(hkdf_extract_raw, &b, SECONDS);
    cf_bench_row("HKDF-SHA256 extract (vs raw EVP_KDF)", 1e9 / ours, 1e9 / raw, "ns/op");
    setup_bench_free(&b);
}

static void hash_oneshot_ours(void *arg)
{
    setup_bench *b = arg;
    if (cf_is_error(cf_sha256(cf_slice_make(b->msg, sizeof b->msg), b->out))) {
        cf_bench_fail("cf_sha256");
    }
    cf_bench_sink(b->out, 1);
}

static void hash_oneshot_raw(void *arg)
{
    setup_bench *b = arg;
    unsigned int len = 0;
    if (EVP_Digest(b->msg, sizeof b->msg, b->out, &len, b->md, NULL) != 1) {
        cf_bench_fail("raw EVP_Digest");
    }
    cf_bench_sink(b->out, 1);
}

static void hash_incremental_ours(void *arg)
{
    setup_bench *b = arg;
    cf_hash_ctx h;
    if (cf_is_error(cf_hash_init(&h, CF_HASH_SHA256)) ||
        cf_is_error(cf_hash_update(&h, cf_slice_make(b->msg, 32))) ||
        cf_is_error(cf_hash_update(&h, cf_slice_make(b->msg + 32, 32))) || cf_is_error(cf_hash_final(&h, b->out))) {
        cf_bench_fail("cf_hash incremental");
    }
    cf_bench_sink(b->out, 1);
}

static void hash_incremental_raw(void *arg)
{
    setup_bench *b = arg;
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex2(ctx, b->md, NULL) != 1 || EVP_DigestUpdate(ctx, b->msg, 32) != 1 ||
        EVP_DigestUpdate(ctx, b->msg + 32, 32) != 1 || EVP_DigestFinal_ex(ctx, b->out, &len) != 1) {
        cf_bench_fail("raw EVP_MD_CTX");
    }
    EVP_MD_CTX_free(ctx);
    cf_bench_sink(b->out, 1);
}

static void bench_hash(void)
{
    setup_bench b;
    setup_bench_init(&b);
    double ours = cf_bench_ops_per_sec(hash_oneshot_ours, &b, SECONDS);
    double raw = cf_bench_ops_per_sec(hash_oneshot_raw, &b, SECONDS);
    cf_bench_row("SHA-256 one-shot 64 B", 1e9 / ours, 1e9 / raw, "ns/op");
    ours = cf_bench_ops_per_sec(hash_incremental_ours, &b, SECONDS);
    raw = cf_bench_ops_per_sec(hash_incremental_raw, &b, SECONDS);
    cf_bench_row("SHA-256 incremental init+2 updates+final 64 B", 1e9 / ours, 1e9 / raw, "ns/op");
    setup_bench_free(&b);
}

CF_BENCH_SUITE("crypto.aead", bench_aead)
CF_BENCH_SUITE("crypto.x25519", bench_x25519)
CF_BENCH_SUITE("crypto.ecdsa", bench_ecdsa)
CF_BENCH_SUITE("crypto.hpke", bench_hpke)
CF_BENCH_SUITE("crypto.aead_init", bench_aead_init)
CF_BENCH_SUITE("crypto.hkdf", bench_hkdf)
CF_BENCH_SUITE("crypto.hash", bench_hash)
