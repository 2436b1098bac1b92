/* bench_crypto.c — cost of the crypto wrappers against raw OpenSSL EVP
 * calls doing the same work (the `openssl speed` equivalent), in one run:
 *   crypto.aead    AES-256-GCM seal+open through cf_aead vs raw EVP
 *                  (keyed contexts reused on both sides), 64 B / 1 KiB / 16 KiB
 *   crypto.x25519  cf_x25519 vs EVP_PKEY_derive on prepared keys
 *   crypto.ecdsa   P-384/SHA-384 verify, cf_ecdsa_verify_der vs EVP_DigestVerify
 *   crypto.hpke    HPKE base seal+open (X25519, HKDF-SHA256, AES-256-GCM) vs
 *                  its asymmetric floor in raw EVP (one X25519 keygen + two
 *                  derives), so the ratio shows what the key schedule costs. */
#include <openssl/evp.h>
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

CF_BENCH_SUITE("crypto.aead", bench_aead)
CF_BENCH_SUITE("crypto.x25519", bench_x25519)
CF_BENCH_SUITE("crypto.ecdsa", bench_ecdsa)
CF_BENCH_SUITE("crypto.hpke", bench_hpke)
