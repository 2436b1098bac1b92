/* test_crypto.c — known-answer and negative tests for the crypto wrappers:
 * SHA-2, HMAC (RFC 4231), HKDF (RFC 5869), AES-GCM (McGrew-Viega GCM spec
 * test cases), ChaCha20-Poly1305 (RFC 8439 §2.8.2), X25519 (RFC 7748 §6.1). */
#define _GNU_SOURCE /* memmem */
#include "test_helper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "crypto/internal.h"

/* 2023-07-01T01:00:00Z and 2026-03-01T00:00:00Z: times at which the
 * vectors' certificates are valid (SOURCES.md). */
#define T_2023_07_01 ((int64_t)1688173200)
#define T_2026_03_01 ((int64_t)1772323200)
#define T_2050_01_01 ((int64_t)2524608000)

/* Decode hex into a fixed array; fails the test on bad hex or size. */
static size_t hex_to(const char *hex, uint8_t *out, size_t outsize)
{
    size_t len = 0;
    assert_cf_ok(cf_hex_decode_fixed(cf_slice_cstr(hex), out, outsize, &len));
    return len;
}

static void assert_hex_equal(const uint8_t *got, size_t len, const char *hex)
{
    uint8_t want[512];
    size_t want_len = hex_to(hex, want, sizeof want);
    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, len);
}

/* ---- hashes ---------------------------------------------------------------- */

static void test_sha2_known_answers(void **state)
{
    (void)state;
    uint8_t out[CF_HASH_MAX_LEN];
    cf_slice abc = cf_slice_cstr("abc");
    assert_cf_ok(cf_sha256(abc, out));
    assert_hex_equal(out, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_cf_ok(cf_sha384(abc, out));
    assert_hex_equal(out, 48,
                     "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
    assert_cf_ok(cf_sha512(abc, out));
    assert_hex_equal(out, 64,
                     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd"
                     "454d4423643ce80e2a9ac94fa54ca49f");
    assert_cf_ok(cf_sha256(CF_SLICE_EMPTY, out));
    assert_hex_equal(out, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(cf_hash_len(CF_HASH_SHA384), 48);
    assert_int_equal(cf_hash_len((cf_hash_alg)99), 0);
    assert_cf_error(cf_hash((cf_hash_alg)99, abc, out), CF_E_INVALID_ARGUMENT);
}

static void test_sha256_incremental_matches_one_shot(void **state)
{
    (void)state;
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    cf_hash_ctx ctx;
    uint8_t out[CF_SHA256_LEN];
    assert_cf_ok(cf_hash_init(&ctx, CF_HASH_SHA256));
    /* Feed in uneven pieces, including an empty one. */
    size_t n = strlen(msg);
    assert_cf_ok(cf_hash_update(&ctx, cf_slice_make(msg, 5)));
    assert_cf_ok(cf_hash_update(&ctx, CF_SLICE_EMPTY));
    assert_cf_ok(cf_hash_update(&ctx, cf_slice_make(msg + 5, n - 5)));
    assert_cf_ok(cf_hash_final(&ctx, out));
    assert_hex_equal(out, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* A finalised context refuses further use until re-initialised. */
    assert_cf_error(cf_hash_update(&ctx, cf_slice_cstr("x")), CF_E_INVALID_ARGUMENT);
    cf_hash_free(&ctx);

    /* Free without final (error path) must not leak. */
    assert_cf_ok(cf_hash_init(&ctx, CF_HASH_SHA384));
    assert_cf_ok(cf_hash_update(&ctx, cf_slice_cstr("abc")));
    cf_hash_free(&ctx);
    cf_hash_free(&ctx);
}

static void test_hmac_sha256_rfc4231(void **state)
{
    (void)state;
    uint8_t out[CF_SHA256_LEN];
    /* RFC 4231 test case 2. */
    assert_cf_ok(cf_hmac_sha256(cf_slice_cstr("Jefe"), cf_slice_cstr("what do ya want for nothing?"), out));
    assert_hex_equal(out, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* RFC 4231 test case 1. */
    uint8_t key[20];
    memset(key, 0x0b, sizeof key);
    assert_cf_ok(cf_hmac_sha256(cf_slice_make(key, sizeof key), cf_slice_cstr("Hi There"), out));
    assert_hex_equal(out, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* An empty key is legal and equals a key of 64 zero bytes. */
    uint8_t zeros[64] = {0}, out2[CF_SHA256_LEN];
    assert_cf_ok(cf_hmac_sha256(CF_SLICE_EMPTY, cf_slice_cstr("m"), out));
    assert_cf_ok(cf_hmac_sha256(cf_slice_make(zeros, sizeof zeros), cf_slice_cstr("m"), out2));
    assert_memory_equal(out, out2, 32);
}

static void test_hkdf_rfc5869(void **state)
{
    (void)state;
    uint8_t ikm[22], salt[13], info[10], prk[CF_SHA256_LEN], okm[42];
    memset(ikm, 0x0b, sizeof ikm);
    for (size_t i = 0; i < sizeof salt; i++) {
        salt[i] = (uint8_t)i;
    }
    for (size_t i = 0; i < sizeof info; i++) {
        info[i] = (uint8_t)(0xf0 + i);
    }
    /* Test case 1. */
    assert_cf_ok(cf_hkdf_sha256_extract(cf_slice_make(salt, sizeof salt), cf_slice_make(ikm, sizeof ikm), prk));
    assert_hex_equal(prk, 32, "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
    assert_cf_ok(cf_hkdf_sha256_expand(cf_slice_make(prk, sizeof prk), cf_slice_make(info, sizeof info), okm, 42));
    assert_hex_equal(okm, 42, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    /* Test case 3: empty salt (= HashLen zeros) and empty info. */
    assert_cf_ok(cf_hkdf_sha256_extract(CF_SLICE_EMPTY, cf_slice_make(ikm, sizeof ikm), prk));
    assert_hex_equal(prk, 32, "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04");
    assert_cf_ok(cf_hkdf_sha256_expand(cf_slice_make(prk, sizeof prk), CF_SLICE_EMPTY, okm, 42));
    assert_hex_equal(okm, 42, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
    /* Limits: L <= 255*HashLen, PRK at least HashLen. */
    uint8_t *big = malloc(255 * 32 + 1);
    assert_non_null(big);
    assert_cf_ok(cf_hkdf_sha256_expand(cf_slice_make(prk, sizeof prk), CF_SLICE_EMPTY, big, 255 * 32));
    assert_cf_error(cf_hkdf_sha256_expand(cf_slice_make(prk, sizeof prk), CF_SLICE_EMPTY, big, 255 * 32 + 1),
                    CF_E_INVALID_ARGUMENT);
    free(big);
    assert_cf_error(cf_hkdf_sha256_expand(cf_slice_make(prk, 16), CF_SLICE_EMPTY, okm, 42), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_hkdf_sha256_expand(cf_slice_make(prk, sizeof prk), CF_SLICE_EMPTY, okm, 0),
                    CF_E_INVALID_ARGUMENT);
}

/* HMAC keys longer than the SHA-256 block are hashed first (RFC 4231 test
 * cases 6 and 7), and HKDF with inputs longer than a block and an output of
 * three blocks (RFC 5869 test case 2). */
static void test_hmac_hkdf_long_inputs(void **state)
{
    (void)state;
    uint8_t key[131], out[CF_SHA256_LEN];
    memset(key, 0xaa, sizeof key);
    assert_cf_ok(cf_hmac_sha256(cf_slice_make(key, sizeof key),
                                cf_slice_cstr("Test Using Larger Than Block-Size Key - Hash Key First"), out));
    assert_hex_equal(out, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    assert_cf_ok(cf_hmac_sha256(cf_slice_make(key, sizeof key),
                                cf_slice_cstr("This is a test using a larger than block-size key and a larger than "
                                              "block-size data. The key needs to be hashed before being used by the "
                                              "HMAC algorithm."),
                                out));
    assert_hex_equal(out, 32, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");

    uint8_t ikm[80], salt[80], info[80], prk[CF_SHA256_LEN], okm[82];
    for (size_t i = 0; i < 80; i++) {
        ikm[i] = (uint8_t)i;
        salt[i] = (uint8_t)(0x60 + i);
        info[i] = (uint8_t)(0xb0 + i);
    }
    assert_cf_ok(cf_hkdf_sha256_extract(cf_slice_make(salt, sizeof salt), cf_slice_make(ikm, sizeof ikm), prk));
    assert_hex_equal(prk, 32, "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244");
    assert_cf_ok(cf_hkdf_sha256_expand(cf_slice_make(prk, sizeof prk), cf_slice_make(info, sizeof info), okm, 82));
    assert_hex_equal(okm, 82,
                     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e"
                     "09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87");
}

/* HMAC and HKDF are composed on SHA-256 (lib/crypto/hash.c says why); they
 * must agree with OpenSSL's own EVP_MAC "HMAC" and EVP_KDF "HKDF" for every
 * key length around the block size, and every output length up to 5 blocks. */
static void test_hmac_hkdf_match_openssl(void **state)
{
    (void)state;
    uint8_t bytes[200];
    for (size_t i = 0; i < sizeof bytes; i++) {
        bytes[i] = (uint8_t)(i * 29 + 5);
    }
    char digest[] = "SHA256";
    uint8_t ours[5 * CF_SHA256_LEN], theirs[5 * CF_SHA256_LEN];
    for (size_t key_len = 0; key_len <= 140; key_len++) {
        size_t msg_len = (key_len * 7) % 150;
        size_t n = 0;
        OSSL_PARAM mac_params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end(),
        };
        assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, NULL, mac_params, bytes, key_len, bytes + 50, msg_len, theirs,
                                  sizeof theirs, &n));
        assert_int_equal(n, CF_SHA256_LEN);
        assert_cf_ok(cf_hmac_sha256(cf_slice_make(bytes, key_len), cf_slice_make(bytes + 50, msg_len), ours));
        assert_memory_equal(ours, theirs, CF_SHA256_LEN);
    }
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    assert_non_null(kdf);
    for (size_t out_len = 1; out_len <= sizeof ours; out_len++) {
        size_t salt_len = out_len % 90, info_len = (out_len * 3) % 120;
        int mode = EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND;
        OSSL_PARAM params[6];
        size_t p = 0;
        params[p++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
        params[p++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
        params[p++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, bytes + 7, 40);
        if (salt_len > 0) { /* no salt = HashLen zeros (RFC 5869 §2.2) */
            params[p++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, bytes + 3, salt_len);
        }
        if (info_len > 0) {
            params[p++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, bytes + 11, info_len);
        }
        params[p] = OSSL_PARAM_construct_end();
        EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
        assert_non_null(ctx);
        assert_int_equal(EVP_KDF_derive(ctx, theirs, out_len, params), 1);
        EVP_KDF_CTX_free(ctx);
        uint8_t prk[CF_SHA256_LEN];
        assert_cf_ok(cf_hkdf_sha256_extract(cf_slice_make(bytes + 3, salt_len), cf_slice_make(bytes + 7, 40), prk));
        assert_cf_ok(cf_hkdf_sha256_expand(cf_slice_make(prk, sizeof prk), cf_slice_make(bytes + 11, info_len), ours,
                                           out_len));
        assert_memory_equal(ours, theirs, out_len);
    }
    EVP_KDF_free(kdf);
}

/* ---- AEAD ------------------------------------------------------------------ */

typedef struct aead_kat {
    cf_aead_alg alg;
    const char *key, *nonce, *aad, *pt, *ct, *tag;
} aead_kat;

#define GCM_PT                                                                                                         \
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657" \
    "ba637b39"

static const aead_kat aead_kats[] = {
    /* GCM spec (McGrew, Viega) test case 3: AES-128, no AAD. */
    {CF_AEAD_AES_128_GCM, "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "", GCM_PT "1aafd255",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac97"
     "3d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    /* Test case 16: AES-256 with AAD, 60-byte plaintext. */
    {CF_AEAD_AES_256_GCM, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", GCM_PT,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0a"
     "bcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    /* RFC 8439 §2.8.2. */
    {CF_AEAD_CHACHA20_POLY1305, "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
     "070000004041424344454647", "50515253c0c1c2c3c4c5c6c7",
     "4c616469657320616e642047656e746c656d656e206f662074686520636c617373206f66202739393a204966204920636f756c64206f6666"
     "657220796f75206f6e6c79206f6e652074697020666f7220746865206675747572652c2073756e73637265656e20776f756c642062652069"
     "742e",
     "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b29"
     "05d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b"
     "6116",
     "1ae10b594f09e26a7e902ecbd0600691"},
};

static void test_aead_known_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof aead_kats / sizeof aead_kats[0]; i++) {
        const aead_kat *k = &aead_kats[i];
        uint8_t key[32], nonce[12], aad[64], pt[256], ct[256 + 16], got[256 + 16], back[256];
        size_t key_len = hex_to(k->key, key, sizeof key);
        assert_int_equal(hex_to(k->nonce, nonce, sizeof nonce), 12);
        size_t aad_len = hex_to(k->aad, aad, sizeof aad);
        size_t pt_len = hex_to(k->pt, pt, sizeof pt);
        assert_int_equal(hex_to(k->ct, ct, sizeof ct), pt_len);
        assert_int_equal(hex_to(k->tag, ct + pt_len, 16), 16);

        cf_aead a;
        assert_cf_ok(cf_aead_init(&a, k->alg, cf_slice_make(key, key_len)));
        /* The keyed context is reused: seal twice, open twice. */
        for (int round = 0; round < 2; round++) {
            assert_cf_ok(cf_aead_seal(&a, nonce, cf_slice_make(aad, aad_len), cf_slice_make(pt, pt_len), got));
            assert_memory_equal(got, ct, pt_len + 16);
            memset(back, 0, sizeof back);
            assert_cf_ok(cf_aead_open(&a, nonce, cf_slice_make(aad, aad_len), cf_slice_make(ct, pt_len + 16), back));
            assert_memory_equal(back, pt, pt_len);
        }
        /* Any flipped bit (ciphertext, tag, AAD, nonce) fails and releases
         * nothing: the output buffer keeps its sentinel bytes. */
        size_t positions[] = {0, pt_len - 1, pt_len, pt_len + 15};
        for (size_t p = 0; p < 4; p++) {
            ct[positions[p]] ^= 0x01;
            memset(back, 0xEE, sizeof back);
            assert_cf_error(cf_aead_open(&a, nonce, cf_slice_make(aad, aad_len), cf_slice_make(ct, pt_len + 16), back),
                            CF_E_AUTH_FAILED);
            for (size_t j = 0; j < sizeof back; j++) {
                assert_int_equal(back[j], 0xEE);
            }
            ct[positions[p]] ^= 0x01;
        }
        nonce[11] ^= 0x80;
        assert_cf_error(cf_aead_open(&a, nonce, cf_slice_make(aad, aad_len), cf_slice_make(ct, pt_len + 16), back),
                        CF_E_AUTH_FAILED);
        nonce[11] ^= 0x80;
        assert_cf_error(cf_aead_open(&a, nonce, cf_slice_cstr("other aad"), cf_slice_make(ct, pt_len + 16), back),
                        CF_E_AUTH_FAILED);
        /* After failures the context still works. */
        assert_cf_ok(cf_aead_open(&a, nonce, cf_slice_make(aad, aad_len), cf_slice_make(ct, pt_len + 16), back));
        assert_memory_equal(back, pt, pt_len);
        cf_aead_free(&a);

        /* In-place sealing gives the same bytes. */
        uint8_t inplace[256 + 16];
        memcpy(inplace, pt, pt_len);
        assert_cf_ok(cf_aead_seal_once(k->alg, cf_slice_make(key, key_len), nonce, cf_slice_make(aad, aad_len),
                                       cf_slice_make(inplace, pt_len), inplace));
        assert_memory_equal(inplace, ct, pt_len + 16);

        /* One-shot forms agree. */
        assert_cf_ok(cf_aead_seal_once(k->alg, cf_slice_make(key, key_len), nonce, cf_slice_make(aad, aad_len),
                                       cf_slice_make(pt, pt_len), got));
        assert_memory_equal(got, ct, pt_len + 16);
        assert_cf_ok(cf_aead_open_once(k->alg, cf_slice_make(key, key_len), nonce, cf_slice_make(aad, aad_len),
                                       cf_slice_make(ct, pt_len + 16), back));
        assert_memory_equal(back, pt, pt_len);
    }
}

/* One keyed context serves interleaved seals and opens in any order (the
 * decrypting half is a copy of the encrypting one): every message opens with
 * the context that sealed it and with a fresh one, before and after failed
 * opens, for every algorithm. */
static void test_aead_interleaved_seal_open(void **state)
{
    (void)state;
    const cf_aead_alg algs[] = {CF_AEAD_AES_128_GCM, CF_AEAD_AES_256_GCM, CF_AEAD_CHACHA20_POLY1305};
    uint8_t key[32], nonce[CF_AEAD_NONCE_LEN] = {0}, msg[100], ct[3][sizeof msg + CF_AEAD_TAG_LEN], back[sizeof msg];
    for (size_t i = 0; i < sizeof key; i++) {
        key[i] = (uint8_t)(i + 1);
    }
    for (size_t i = 0; i < sizeof msg; i++) {
        msg[i] = (uint8_t)(3 * i);
    }
    for (size_t a_i = 0; a_i < 3; a_i++) {
        cf_slice k = cf_slice_make(key, cf_aead_key_len(algs[a_i]));
        cf_aead a, fresh;
        assert_cf_ok(cf_aead_init(&a, algs[a_i], k));
        /* Open first (a never-used context), then seal, then open again. */
        assert_cf_ok(cf_aead_seal_once(algs[a_i], k, nonce, CF_SLICE_EMPTY, cf_slice_make(msg, sizeof msg), ct[0]));
        assert_cf_ok(cf_aead_open(&a, nonce, CF_SLICE_EMPTY, cf_slice_make(ct[0], sizeof ct[0]), back));
        assert_memory_equal(back, msg, sizeof msg);
        for (uint8_t n = 1; n < 3; n++) {
            nonce[11] = n;
            assert_cf_ok(cf_aead_seal(&a, nonce, cf_slice_cstr("aad"), cf_slice_make(msg, sizeof msg - n), ct[n]));
            ct[n][0] ^= 1;
            assert_cf_error(cf_aead_open(&a, nonce, cf_slice_cstr("aad"), cf_slice_make(ct[n], sizeof ct[n] - n), back),
                            CF_E_AUTH_FAILED);
            ct[n][0] ^= 1;
        }
        for (uint8_t n = 1; n < 3; n++) {
            nonce[11] = n;
            memset(back, 0, sizeof back);
            assert_cf_ok(cf_aead_open(&a, nonce, cf_slice_cstr("aad"), cf_slice_make(ct[n], sizeof ct[n] - n), back));
            assert_memory_equal(back, msg, sizeof msg - n);
            assert_cf_ok(cf_aead_open_once(algs[a_i], k, nonce, cf_slice_cstr("aad"),
                                           cf_slice_make(ct[n], sizeof ct[n] - n), back));
            assert_memory_equal(back, msg, sizeof msg - n);
        }
        /* A fresh context seals the same bytes as the used one. */
        assert_cf_ok(cf_aead_init(&fresh, algs[a_i], k));
        uint8_t again[sizeof ct[1]];
        nonce[11] = 1;
        assert_cf_ok(cf_aead_seal(&fresh, nonce, cf_slice_cstr("aad"), cf_slice_make(msg, sizeof msg - 1), again));
        assert_memory_equal(again, ct[1], sizeof ct[1] - 1);
        cf_aead_free(&fresh);
        cf_aead_free(&a);
        nonce[11] = 0;
    }
}

static void test_aead_edges(void **state)
{
    (void)state;
    uint8_t key[32] = {1}, nonce[12] = {2}, tag_only[16], back[1];
    cf_aead a;
    /* Wrong key lengths and unknown algorithms. */
    assert_cf_error(cf_aead_init(&a, CF_AEAD_AES_256_GCM, cf_slice_make(key, 16)), CF_E_BAD_KEY);
    assert_cf_error(cf_aead_init(&a, CF_AEAD_AES_128_GCM, cf_slice_make(key, 32)), CF_E_BAD_KEY);
    assert_cf_error(cf_aead_init(&a, (cf_aead_alg)42, cf_slice_make(key, 32)), CF_E_UNSUPPORTED);
    assert_int_equal(cf_aead_key_len(CF_AEAD_AES_128_GCM), 16);

    for (cf_aead_alg alg = CF_AEAD_AES_128_GCM; alg <= CF_AEAD_CHACHA20_POLY1305; alg++) {
        assert_cf_ok(cf_aead_init(&a, alg, cf_slice_make(key, cf_aead_key_len(alg))));
        /* Empty plaintext and AAD: the output is just the tag. */
        assert_cf_ok(cf_aead_seal(&a, nonce, CF_SLICE_EMPTY, CF_SLICE_EMPTY, tag_only));
        assert_cf_ok(cf_aead_open(&a, nonce, CF_SLICE_EMPTY, cf_slice_make(tag_only, 16), back));
        /* Shorter than a tag: rejected before any crypto. */
        assert_cf_error(cf_aead_open(&a, nonce, CF_SLICE_EMPTY, cf_slice_make(tag_only, 15), back), CF_E_AUTH_FAILED);

        /* A large message goes through the heap scratch path. */
        size_t n = 100000;
        uint8_t *pt = malloc(n), *ct = malloc(n + 16), *out = malloc(n);
        assert_non_null(pt);
        assert_non_null(ct);
        assert_non_null(out);
        for (size_t i = 0; i < n; i++) {
            pt[i] = (uint8_t)(i * 7);
        }
        assert_cf_ok(cf_aead_seal(&a, nonce, cf_slice_cstr("aad"), cf_slice_make(pt, n), ct));
        assert_cf_ok(cf_aead_open(&a, nonce, cf_slice_cstr("aad"), cf_slice_make(ct, n + 16), out));
        assert_memory_equal(out, pt, n);
        ct[n / 2] ^= 1;
        memset(out, 0, n);
        assert_cf_error(cf_aead_open(&a, nonce, cf_slice_cstr("aad"), cf_slice_make(ct, n + 16), out),
                        CF_E_AUTH_FAILED);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(out[i], 0);
        }
        free(pt);
        free(ct);
        free(out);
        cf_aead_free(&a);
        cf_aead_free(&a); /* idempotent */
    }
}

/* ---- random, X25519 -------------------------------------------------------- */

static void test_random(void **state)
{
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};
    assert_cf_ok(cf_random(a, sizeof a));
    assert_cf_ok(cf_random(b, sizeof b));
    assert_memory_not_equal(a, zero, 32);
    assert_memory_not_equal(a, b, 32);
    assert_cf_ok(cf_random(NULL, 0));
}

static void test_x25519_rfc7748(void **state)
{
    (void)state;
    uint8_t alice_sk[32], bob_sk[32], pk[32], bob_pk[32], s1[32], s2[32];
    hex_to("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", alice_sk, 32);
    hex_to("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", bob_sk, 32);
    assert_cf_ok(cf_x25519_public(alice_sk, pk));
    assert_hex_equal(pk, 32, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    assert_cf_ok(cf_x25519_public(bob_sk, bob_pk));
    assert_hex_equal(bob_pk, 32, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    assert_cf_ok(cf_x25519(alice_sk, bob_pk, s1));
    assert_cf_ok(cf_x25519(bob_sk, pk, s2));
    assert_hex_equal(s1, 32, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_memory_equal(s1, s2, 32);
    /* The variant given the own public key computes the same secret. */
    memset(s2, 0, sizeof s2);
    assert_cf_ok(cf_x25519_with_public(alice_sk, pk, bob_pk, s2));
    assert_memory_equal(s1, s2, 32);
    uint8_t zero[32] = {0};
    assert_cf_error(cf_x25519_with_public(alice_sk, pk, zero, s2), CF_E_BAD_KEY);
}

static void test_x25519_rejects_low_order(void **state)
{
    (void)state;
    uint8_t sk[32], pk[32], shared[32], zero[32] = {0};
    assert_cf_ok(cf_x25519_keygen(sk, pk));
    /* The zero point and the point of order 8 (RFC 7748 §6.1 "check"). */
    memset(shared, 0xAA, sizeof shared);
    assert_cf_error(cf_x25519(sk, zero, shared), CF_E_BAD_KEY);
    assert_memory_equal(shared, zero, 32);
    uint8_t order8[32];
    hex_to("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", order8, 32);
    assert_cf_error(cf_x25519(sk, order8, shared), CF_E_BAD_KEY);
    /* Two fresh pairs agree. */
    uint8_t sk2[32], pk2[32], s1[32], s2[32];
    assert_cf_ok(cf_x25519_keygen(sk2, pk2));
    assert_cf_ok(cf_x25519(sk, pk2, s1));
    assert_cf_ok(cf_x25519(sk2, pk, s2));
    assert_memory_equal(s1, s2, 32);
}

/* ---- signatures -------------------------------------------------------------- */

static X509 *load_vector_cert(const char *relpath)
{
    cf_buf data;
    cf_test_read_file(relpath, true, &data);
    X509 *cert = NULL;
    assert_cf_ok(cf_x509_load_any(cf_buf_slice(&data), &cert));
    cf_buf_free(&data);
    return cert;
}

static STACK_OF(X509) *load_vector_bundle(const char *relpath)
{
    cf_buf data;
    cf_test_read_file(relpath, true, &data);
    STACK_OF(X509) *certs = NULL;
    assert_cf_ok(cf_x509_load_pem(cf_buf_slice(&data), &certs));
    cf_buf_free(&data);
    return certs;
}

static void test_ecdsa_sign_verify_der(void **state)
{
    (void)state;
    const cf_ec_curve curves[] = {CF_EC_P256, CF_EC_P384};
    const cf_hash_alg hashes[] = {CF_HASH_SHA256, CF_HASH_SHA384};
    for (size_t i = 0; i < 2; i++) {
        EVP_PKEY *key = NULL;
        assert_cf_ok(cf_ec_keygen(curves[i], &key));
        cf_buf sig;
        cf_buf_init(&sig, 256);
        cf_slice msg = cf_slice_cstr("attested message");
        assert_cf_ok(cf_ecdsa_sign_der(key, hashes[i], msg, &sig));
        assert_cf_ok(cf_ecdsa_verify_der(key, hashes[i], msg, cf_buf_slice(&sig)));
        assert_cf_error(cf_ecdsa_verify_der(key, hashes[i], cf_slice_cstr("attested messagE"), cf_buf_slice(&sig)),
                        CF_E_BAD_SIGNATURE);
        /* Wrong hash, truncated and bit-flipped signatures fail. */
        assert_cf_error(cf_ecdsa_verify_der(key, CF_HASH_SHA512, msg, cf_buf_slice(&sig)), CF_E_BAD_SIGNATURE);
        assert_cf_error(cf_ecdsa_verify_der(key, hashes[i], msg, cf_slice_make(sig.data, sig.len - 1)),
                        CF_E_BAD_SIGNATURE);
        sig.data[sig.len - 1] ^= 1;
        assert_cf_error(cf_ecdsa_verify_der(key, hashes[i], msg, cf_buf_slice(&sig)), CF_E_BAD_SIGNATURE);
        assert_cf_error(cf_ecdsa_verify_der(key, hashes[i], msg, CF_SLICE_EMPTY), CF_E_BAD_SIGNATURE);

        /* Public key export/import round trips: DER SPKI, PEM, raw point. */
        cf_buf der;
        cf_buf_init(&der, 4096);
        assert_cf_ok(cf_pubkey_to_der(key, &der));
        EVP_PKEY *pub = NULL;
        assert_cf_ok(cf_pubkey_from_der(cf_buf_slice(&der), &pub));
        sig.data[sig.len - 1] ^= 1;
        assert_cf_ok(cf_ecdsa_verify_der(pub, hashes[i], msg, cf_buf_slice(&sig)));
        EVP_PKEY_free(pub);
        der.data[der.len - 1] ^= 0x55; /* point off the curve, or not a point */
        assert_true(cf_is_error(cf_pubkey_from_der(cf_buf_slice(&der), &pub)));
        assert_null(pub);
        assert_cf_error(cf_pubkey_from_der(cf_slice_make(der.data, der.len - 1), &pub), CF_E_MALFORMED);

        BIO *bio = BIO_new(BIO_s_mem());
        assert_non_null(bio);
        assert_int_equal(PEM_write_bio_PUBKEY(bio, key), 1);
        char *pem_data = NULL;
        long pem_len = BIO_get_mem_data(bio, &pem_data);
        assert_cf_ok(cf_pubkey_from_pem(cf_slice_make(pem_data, (size_t)pem_len), &pub));
        assert_cf_ok(cf_ecdsa_verify_der(pub, hashes[i], msg, cf_buf_slice(&sig)));
        EVP_PKEY_free(pub);
        BIO_free(bio);
        assert_cf_error(cf_pubkey_from_pem(cf_slice_cstr("-----BEGIN PUBLIC KEY-----\nAAAA\n"), &pub),
                        CF_E_MALFORMED);

        uint8_t point[97];
        size_t point_len = 0;
        assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                                         sizeof point, &point_len),
                         1);
        assert_cf_ok(cf_ec_public_from_point(curves[i], cf_slice_make(point, point_len), &pub));
        assert_cf_ok(cf_ecdsa_verify_der(pub, hashes[i], msg, cf_buf_slice(&sig)));
        EVP_PKEY_free(pub);
        assert_cf_ok(cf_ec_public_from_point(curves[i], cf_slice_make(point + 1, point_len - 1), &pub));
        assert_cf_ok(cf_ecdsa_verify_der(pub, hashes[i], msg, cf_buf_slice(&sig)));
        EVP_PKEY_free(pub);
        /* Wrong curve size, wrong prefix, off-curve point. */
        assert_cf_error(cf_ec_public_from_point(curves[1 - i], cf_slice_make(point, point_len), &pub), CF_E_BAD_KEY);
        point[0] = 0x02;
        assert_cf_error(cf_ec_public_from_point(curves[i], cf_slice_make(point, point_len), &pub), CF_E_BAD_KEY);
        point[0] = 0x04;
        point[point_len - 1] ^= 1;
        assert_cf_error(cf_ec_public_from_point(curves[i], cf_slice_make(point, point_len), &pub), CF_E_BAD_KEY);
        assert_null(pub);

        /* Ed25519 keys are refused by ECDSA functions. */
        EVP_PKEY *ed = NULL;
        assert_cf_ok(cf_ed25519_keygen(&ed));
        assert_cf_error(cf_ecdsa_verify_der(ed, hashes[i], msg, cf_buf_slice(&sig)), CF_E_BAD_KEY);
        EVP_PKEY_free(ed);

        cf_buf_free(&der);
        cf_buf_free(&sig);
        EVP_PKEY_free(key);
    }
}

/* A real AMD SEV-SNP report (virtee, Milan) signed by its VCEK: r and s are
 * 72-byte little-endian fields at 0x2A0 and 0x2E8 over bytes [0, 0x2A0). */
static void test_ecdsa_verify_raw_snp_report(void **state)
{
    (void)state;
    cf_buf report;
    cf_test_read_file("amd-sev-snp/milan/virtee_report.bin", true, &report);
    assert_int_equal(report.len, 1184);
    X509 *vcek = load_vector_cert("amd-sev-snp/milan/virtee_vcek.der");
    EVP_PKEY *pub = X509_get0_pubkey(vcek);
    assert_non_null(pub);

    cf_slice signed_part = cf_slice_make(report.data, 0x2A0);
    cf_slice r = cf_slice_make(report.data + 0x2A0, 72), s = cf_slice_make(report.data + 0x2E8, 72);
    assert_cf_ok(cf_ecdsa_verify_raw(pub, CF_HASH_SHA384, signed_part, r, s, true));
    /* The same signature as big-endian 48-byte components. */
    uint8_t rbe[48], sbe[48];
    for (size_t i = 0; i < 48; i++) {
        rbe[i] = r.ptr[47 - i];
        sbe[i] = s.ptr[47 - i];
    }
    assert_cf_ok(
        cf_ecdsa_verify_raw(pub, CF_HASH_SHA384, signed_part, cf_slice_make(rbe, 48), cf_slice_make(sbe, 48), false));
    /* Wrong endianness, swapped r/s, a flipped report byte: all fail. */
    assert_cf_error(cf_ecdsa_verify_raw(pub, CF_HASH_SHA384, signed_part, r, s, false), CF_E_BAD_SIGNATURE);
    assert_cf_error(cf_ecdsa_verify_raw(pub, CF_HASH_SHA384, signed_part, s, r, true), CF_E_BAD_SIGNATURE);
    report.data[384] ^= 1; /* REPORTED_TCB */
    assert_cf_error(cf_ecdsa_verify_raw(pub, CF_HASH_SHA384, signed_part, r, s, true), CF_E_BAD_SIGNATURE);
    report.data[384] ^= 1;
    /* Malformed components: unequal, oversized, zero. */
    assert_cf_error(cf_ecdsa_verify_raw(pub, CF_HASH_SHA384, signed_part, r, cf_slice_make(s.ptr, 71), true),
                    CF_E_BAD_SIGNATURE);
    uint8_t zero[72] = {0}, big[73] = {0};
    assert_cf_error(cf_ecdsa_verify_raw(pub, CF_HASH_SHA384, signed_part, cf_slice_make(zero, 72), s, true),
                    CF_E_BAD_SIGNATURE);
    assert_cf_error(
        cf_ecdsa_verify_raw(pub, CF_HASH_SHA384, signed_part, cf_slice_make(big, 73), cf_slice_make(big, 73), true),
        CF_E_BAD_SIGNATURE);
    /* Another chip's VCEK (Genoa) does not verify it. */
    X509 *other = load_vector_cert("amd-sev-snp/genoa/ms_vcek.pem");
    assert_cf_error(cf_ecdsa_verify_raw(X509_get0_pubkey(other), CF_HASH_SHA384, signed_part, r, s, true),
                    CF_E_BAD_SIGNATURE);
    X509_free(other);
    X509_free(vcek);
    cf_buf_free(&report);
}

static void test_ed25519_rfc8032(void **state)
{
    (void)state;
    uint8_t sk[32], pk[32], want_sig[64], sig[64], pub_raw[32];
    hex_to("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", sk, 32);
    hex_to("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", pk, 32);
    hex_to("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595b"
           "be24655141438e7a100b",
           want_sig, 64);
    /* RFC 8032 §7.1 test 1 (empty message). */
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk, 32);
    assert_non_null(key);
    assert_cf_ok(cf_ed25519_public_raw(key, pub_raw));
    assert_memory_equal(pub_raw, pk, 32);
    assert_cf_ok(cf_ed25519_sign(key, CF_SLICE_EMPTY, sig));
    assert_memory_equal(sig, want_sig, 64);
    EVP_PKEY *pub = NULL;
    assert_cf_ok(cf_ed25519_public_from_raw(pk, &pub));
    assert_cf_ok(cf_ed25519_verify(pub, CF_SLICE_EMPTY, cf_slice_make(sig, 64)));
    assert_cf_error(cf_ed25519_verify(pub, cf_slice_cstr("x"), cf_slice_make(sig, 64)), CF_E_BAD_SIGNATURE);
    assert_cf_error(cf_ed25519_verify(pub, CF_SLICE_EMPTY, cf_slice_make(sig, 63)), CF_E_BAD_SIGNATURE);
    sig[10] ^= 4;
    assert_cf_error(cf_ed25519_verify(pub, CF_SLICE_EMPTY, cf_slice_make(sig, 64)), CF_E_BAD_SIGNATURE);
    /* A public-only key cannot sign. */
    assert_cf_error(cf_ed25519_sign(pub, CF_SLICE_EMPTY, sig), CF_E_CRYPTO);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);

    /* Fresh keys round trip through raw public bytes. */
    assert_cf_ok(cf_ed25519_keygen(&key));
    assert_cf_ok(cf_ed25519_sign(key, cf_slice_cstr("receipt"), sig));
    assert_cf_ok(cf_ed25519_public_raw(key, pub_raw));
    assert_cf_ok(cf_ed25519_public_from_raw(pub_raw, &pub));
    assert_cf_ok(cf_ed25519_verify(pub, cf_slice_cstr("receipt"), cf_slice_make(sig, 64)));
    EVP_PKEY *ec = NULL;
    assert_cf_ok(cf_ec_keygen(CF_EC_P256, &ec));
    assert_cf_error(cf_ed25519_verify(ec, cf_slice_cstr("receipt"), cf_slice_make(sig, 64)), CF_E_BAD_KEY);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
}

static void test_private_key_pem_round_trip(void **state)
{
    (void)state;
    EVP_PKEY *keys[2] = {NULL, NULL};
    assert_cf_ok(cf_ec_keygen(CF_EC_P384, &keys[0]));
    assert_cf_ok(cf_ed25519_keygen(&keys[1]));
    for (size_t i = 0; i < 2; i++) {
        cf_buf pem;
        cf_buf_init(&pem, 8192);
        assert_cf_ok(cf_privkey_to_pem(keys[i], &pem));
        assert_non_null(memmem(pem.data, pem.len, "-----BEGIN PRIVATE KEY-----", 27)); /* PKCS#8 */
        EVP_PKEY *back = NULL;
        assert_cf_ok(cf_privkey_from_pem(cf_buf_slice(&pem), &back));
        assert_int_equal(EVP_PKEY_eq(back, keys[i]), 1);
        EVP_PKEY_free(back);
        /* Damaged base64 is rejected. */
        pem.data[40] = '*';
        assert_cf_error(cf_privkey_from_pem(cf_buf_slice(&pem), &back), CF_E_BAD_KEY);
        assert_null(back);
        cf_buf_free(&pem);
        EVP_PKEY_free(keys[i]);
    }
    EVP_PKEY *none = NULL;
    assert_cf_error(cf_privkey_from_pem(CF_SLICE_EMPTY, &none), CF_E_MALFORMED);
}

/* ---- X.509 ----------------------------------------------------------------- */

static void test_x509_amd_rsa_pss_chain(void **state)
{
    (void)state;
    STACK_OF(X509) *ark = load_vector_bundle("amd-sev-snp/roots/milan_ark.pem");
    STACK_OF(X509) *ask = load_vector_bundle("amd-sev-snp/roots/milan_ask.pem");
    STACK_OF(X509) *chain = load_vector_bundle("amd-sev-snp/roots/milan_vcek_cert_chain.pem");
    assert_int_equal(sk_X509_num(chain), 2); /* ASK, ARK */
    X509 *vcek = load_vector_cert("amd-sev-snp/milan/virtee_vcek.der");

    uint8_t fp[32];
    assert_cf_ok(cf_x509_fingerprint_sha256(sk_X509_value(ark, 0), fp));
    assert_hex_equal(fp, 32, "69D063B45344D26A2E94E1F4210DE49EF555308287D4C174445C95639A540BCD");

    /* VCEK (ECDSA P-384 key, RSA-PSS signature) -> ASK -> ARK (RSA-PSS). */
    assert_cf_ok(cf_x509_verify_chain(vcek, ask, ark, NULL, T_2026_03_01));
    /* The ARK verifies itself; the ASK verifies under it. */
    assert_cf_ok(cf_x509_verify_chain(sk_X509_value(ask, 0), NULL, ark, NULL, T_2026_03_01));
    /* After the VCEK's expiry (2030), and before it was issued (2023-04). */
    assert_cf_error(cf_x509_verify_chain(vcek, ask, ark, NULL, T_2050_01_01), CF_E_EXPIRED);
    assert_cf_error(cf_x509_verify_chain(vcek, ask, ark, NULL, T_2023_07_01 - 365 * 86400), CF_E_EXPIRED);
    /* Missing intermediate, wrong root product, no explicit time. */
    assert_cf_error(cf_x509_verify_chain(vcek, NULL, ark, NULL, T_2026_03_01), CF_E_CERT);
    STACK_OF(X509) *genoa_ark = load_vector_bundle("amd-sev-snp/roots/genoa_ark.pem");
    assert_cf_error(cf_x509_verify_chain(vcek, ask, genoa_ark, NULL, T_2026_03_01), CF_E_CERT);
    assert_non_null(strstr(cf_error_last()->detail, "local issuer"));
    assert_cf_error(cf_x509_verify_chain(vcek, ask, ark, NULL, 0), CF_E_INVALID_ARGUMENT);
    /* The ASK passed as the trust anchor: only complete chains up to a
     * self-signed root are accepted, never a partial one (SOURCES.md §2). */
    assert_cf_error(cf_x509_verify_chain(vcek, NULL, ask, NULL, T_2026_03_01), CF_E_CERT);
    assert_cf_error(cf_x509_verify_chain(vcek, ark, ask, NULL, T_2026_03_01), CF_E_CERT);
    /* A VCEK whose hwID was rewritten: signature failure. */
    X509 *bad = load_vector_cert("amd-sev-snp/negative/trustee_vcek_bad_sig_hwid_raw.der");
    assert_cf_error(cf_x509_verify_chain(bad, ask, ark, NULL, T_2026_03_01), CF_E_CERT);
    assert_non_null(strstr(cf_error_last()->detail, "signature"));

    /* TCB extensions: microcode SPL 115 as a DER INTEGER; hwID 64 bytes. */
    cf_slice ext;
    assert_cf_ok(cf_x509_extension(vcek, "1.3.6.1.4.1.3704.1.3.8", &ext));
    assert_hex_equal(ext.ptr, ext.len, "020173");
    assert_cf_ok(cf_x509_extension(vcek, "1.3.6.1.4.1.3704.1.4", &ext));
    assert_int_equal(ext.len, 64);
    assert_cf_error(cf_x509_extension(vcek, "1.2.3.4", &ext), CF_E_NOT_FOUND);
    assert_cf_error(cf_x509_extension(vcek, "commonName", &ext), CF_E_INVALID_ARGUMENT);

    X509_free(bad);
    X509_free(vcek);
    sk_X509_pop_free(genoa_ark, X509_free);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(ask, X509_free);
    sk_X509_pop_free(ark, X509_free);
}

static void test_x509_loaders_reject_junk(void **state)
{
    (void)state;
    X509 *cert = NULL;
    STACK_OF(X509) *certs = NULL;
    assert_cf_error(cf_x509_load_any(CF_SLICE_EMPTY, &cert), CF_E_MALFORMED);
    assert_cf_error(cf_x509_load_any(cf_slice_cstr("not a certificate"), &cert), CF_E_CERT);
    assert_cf_error(cf_x509_load_pem(cf_slice_cstr("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
                                     &certs),
                    CF_E_CERT);
    assert_null(certs);

    cf_buf der;
    cf_test_read_file("amd-sev-snp/milan/virtee_vcek.der", true, &der);
    assert_cf_error(cf_x509_load_der(cf_slice_make(der.data, der.len - 1), &cert), CF_E_CERT);
    assert_cf_ok(cf_buf_append_u8(&der, 0));
    assert_cf_error(cf_x509_load_der(cf_buf_slice(&der), &cert), CF_E_CERT); /* trailing byte */
    assert_null(cert);
    cf_buf_free(&der);

    /* A good bundle followed by a damaged certificate fails as a whole. */
    cf_buf pem;
    cf_test_read_file("amd-sev-snp/roots/milan_vcek_cert_chain.pem", true, &pem);
    uint8_t *second = memmem(pem.data + 1, pem.len - 1, "-----BEGIN", 10);
    assert_non_null(second);
    second[100] = '!';
    assert_cf_error(cf_x509_load_pem(cf_buf_slice(&pem), &certs), CF_E_CERT);
    assert_null(certs);
    cf_buf_free(&pem);

    X509_CRL *crl = NULL;
    assert_cf_error(cf_crl_load_any(cf_slice_cstr("junk"), &crl), CF_E_CERT);
    assert_null(crl);
}

/* Intel PCK chain from a real TDX quote, with Intel's CRLs ("CRL check all"). */
static void test_x509_intel_chain_with_crls(void **state)
{
    (void)state;
    cf_buf quote;
    cf_test_read_file("intel-tdx/go-tdx-guest/tdx_quote_v4_SPR_E4.bin", true, &quote);
    uint8_t *pem = memmem(quote.data, quote.len, "-----BEGIN CERTIFICATE-----", 27);
    assert_non_null(pem);
    STACK_OF(X509) *chain = NULL;
    assert_cf_ok(cf_x509_load_pem(cf_slice_make(pem, quote.len - (size_t)(pem - quote.data)), &chain));
    assert_int_equal(sk_X509_num(chain), 3); /* PCK, Platform CA, Root */
    cf_buf_free(&quote);
    X509 *pck = sk_X509_shift(chain);
    X509 *root_in_quote = sk_X509_pop(chain);
    X509_free(root_in_quote);

    STACK_OF(X509) *roots = sk_X509_new_null();
    assert_int_equal(sk_X509_push(roots, load_vector_cert("intel-tdx/roots/intel_sgx_root_ca.der")), 1);
    uint8_t fp[32];
    assert_cf_ok(cf_x509_fingerprint_sha256(sk_X509_value(roots, 0), fp));
    assert_hex_equal(fp, 32, "44A0196B2B99F889B8E149E95B807A350E7424964399E885A7CBB8CCFAB674D3");

    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    const char *crl_files[] = {"intel-tdx/go-tdx-guest/root_ca_crl_2023-04.der",
                               "intel-tdx/go-tdx-guest/pck_platform_crl_2023-06.der"};
    for (size_t i = 0; i < 2; i++) {
        cf_buf data;
        cf_test_read_file(crl_files[i], true, &data);
        X509_CRL *crl = NULL;
        assert_cf_ok(cf_crl_load_any(cf_buf_slice(&data), &crl));
        assert_true(sk_X509_CRL_push(crls, crl) > 0);
        cf_buf_free(&data);
    }
    assert_cf_ok(cf_x509_verify_chain(pck, chain, roots, NULL, T_2023_07_01));
    assert_cf_ok(cf_x509_verify_chain(pck, chain, roots, crls, T_2023_07_01));
    /* The platform CRL expired on 2023-07-08. */
    assert_cf_error(cf_x509_verify_chain(pck, chain, roots, crls, T_2023_07_01 + 30 * 86400), CF_E_EXPIRED);
    /* Without the Platform CA's CRL the PCK cannot be checked: fail. */
    X509_CRL *platform_crl = sk_X509_CRL_pop(crls);
    assert_cf_error(cf_x509_verify_chain(pck, chain, roots, crls, T_2023_07_01), CF_E_CERT);
    assert_non_null(strstr(cf_error_last()->detail, "CRL"));
    X509_CRL_free(platform_crl);

    /* The PCK carries Intel's SGX extension. */
    cf_slice ext;
    assert_cf_ok(cf_x509_extension(pck, "1.2.840.113741.1.13.1", &ext));
    assert_true(ext.len > 100);
    assert_int_equal(ext.ptr[0], 0x30);

    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    sk_X509_pop_free(roots, X509_free);
    sk_X509_pop_free(chain, X509_free);
    X509_free(pck);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha2_known_answers),
        cmocka_unit_test(test_sha256_incremental_matches_one_shot),
        cmocka_unit_test(test_hmac_sha256_rfc4231),
        cmocka_unit_test(test_hkdf_rfc5869),
        cmocka_unit_test(test_hmac_hkdf_long_inputs),
        cmocka_unit_test(test_hmac_hkdf_match_openssl),
        cmocka_unit_test(test_aead_known_answers),
        cmocka_unit_test(test_aead_edges),
        cmocka_unit_test(test_aead_interleaved_seal_open),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_x25519_rfc7748),
        cmocka_unit_test(test_x25519_rejects_low_order),
        cmocka_unit_test(test_ecdsa_sign_verify_der),
        cmocka_unit_test(test_ecdsa_verify_raw_snp_report),
        cmocka_unit_test(test_ed25519_rfc8032),
        cmocka_unit_test(test_private_key_pem_round_trip),
        cmocka_unit_test(test_x509_amd_rsa_pss_chain),
        cmocka_unit_test(test_x509_loaders_reject_junk),
        cmocka_unit_test(test_x509_intel_chain_with_crls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
