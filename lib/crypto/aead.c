/* aead.c — keyed AEAD contexts (AES-GCM, ChaCha20-Poly1305) over EVP.
 *
 * The key schedule is set once in cf_aead_init; each seal/open only sets the
 * 96-bit nonce. Open decrypts into a private scratch buffer and copies to
 * the caller only after the tag verified, so no unauthenticated plaintext
 * ever reaches the caller (crypto.h rules). */
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "confide/crypto.h"
#include "crypto/internal.h"

/* Explicitly fetched ciphers, cached: per-request keys mean one init per
 * request, and an implicit fetch by name on each would dominate small
 * messages. */
static EVP_CIPHER *cached_ciphers[4];
static pthread_once_t cipher_once = PTHREAD_ONCE_INIT;

static void fetch_ciphers(void)
{
    static const char *const names[] = {
        [CF_AEAD_AES_128_GCM] = "AES-128-GCM",
        [CF_AEAD_AES_256_GCM] = "AES-256-GCM",
        [CF_AEAD_CHACHA20_POLY1305] = "ChaCha20-Poly1305",
    };
    for (size_t i = CF_AEAD_AES_128_GCM; i <= CF_AEAD_CHACHA20_POLY1305; i++) {
        EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, names[i], NULL);
        /* The default IV length, which every context inherits, must be the
         * 96-bit nonce confide uses; checked once here rather than per key. */
        if (cipher != NULL && EVP_CIPHER_get_iv_length(cipher) != CF_AEAD_NONCE_LEN) {
            EVP_CIPHER_free(cipher);
            cipher = NULL;
        }
        cached_ciphers[i] = cipher;
    }
}

static const EVP_CIPHER *aead_cipher(cf_aead_alg alg)
{
    if (alg != CF_AEAD_AES_128_GCM && alg != CF_AEAD_AES_256_GCM && alg != CF_AEAD_CHACHA20_POLY1305) {
        return NULL;
    }
    pthread_once(&cipher_once, fetch_ciphers);
    return cached_ciphers[alg];
}

size_t cf_aead_key_len(cf_aead_alg alg)
{
    switch (alg) {
    case CF_AEAD_AES_128_GCM:
        return 16;
    case CF_AEAD_AES_256_GCM:
    case CF_AEAD_CHACHA20_POLY1305:
        return 32;
    }
    return 0;
}

/* Largest message EVP's int lengths take in one call, minus room for the tag. */
#define AEAD_MAX_MESSAGE ((size_t)INT_MAX - CF_AEAD_TAG_LEN)

static CF_RESULT aead_encrypt_ctx_new(const EVP_CIPHER *cipher, cf_slice key, EVP_CIPHER_CTX **out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    CF_ENSURE(ctx != NULL, CF_E_NO_MEMORY);
    /* The IV length is the cipher's 96-bit default (checked when the
     * cipher was fetched); the nonce itself is set per message. */
    if (EVP_EncryptInit_ex2(ctx, cipher, key.ptr, NULL, NULL) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "AEAD key setup failed");
        return CF_ERROR;
    }
    *out = ctx;
    return CF_OK;
}

CF_RESULT cf_aead_init(cf_aead *a, cf_aead_alg alg, cf_slice key)
{
    CF_ENSURE_REF(a);
    a->enc = NULL;
    a->dec = NULL;
    a->alg = alg;
    const EVP_CIPHER *cipher = aead_cipher(alg);
    CF_ENSURE_MSG(cipher != NULL, CF_E_UNSUPPORTED, "unknown AEAD algorithm");
    CF_ENSURE_MSG(key.ptr != NULL && key.len == cf_aead_key_len(alg), CF_E_BAD_KEY, "AEAD key has the wrong length");
    CF_GUARD(aead_encrypt_ctx_new(cipher, key, &a->enc));
    /* The decrypting context is a copy of the keyed encrypting one: GCM and
     * ChaCha20-Poly1305 run the same key schedule in both directions (CTR /
     * stream keystream), and each open sets the direction with its nonce
     * (EVP_DecryptInit_ex2), so copying saves a second key setup. */
    a->dec = EVP_CIPHER_CTX_new();
    if (a->dec == NULL || EVP_CIPHER_CTX_copy(a->dec, a->enc) != 1) {
        cf_aead_free(a);
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "AEAD key setup failed");
        return CF_ERROR;
    }
    return CF_OK;
}

void cf_aead_free(cf_aead *a)
{
    if (a != NULL) {
        /* EVP_CIPHER_CTX_free cleanses the key schedule. */
        EVP_CIPHER_CTX_free(a->enc);
        EVP_CIPHER_CTX_free(a->dec);
        a->enc = NULL;
        a->dec = NULL;
    }
}

CF_RESULT cf_aead_seal(cf_aead *a, const uint8_t nonce[CF_AEAD_NONCE_LEN], cf_slice aad, cf_slice plaintext,
                       uint8_t *out)
{
    CF_ENSURE(a != NULL && a->enc != NULL, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_REF(nonce);
    CF_ENSURE_REF(out);
    CF_ENSURE(aad.ptr != NULL || aad.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE(plaintext.ptr != NULL || plaintext.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG(aad.len <= AEAD_MAX_MESSAGE && plaintext.len <= AEAD_MAX_MESSAGE, CF_E_TOO_LARGE,
                  "AEAD input too large");

    int len = 0;
    if (EVP_EncryptInit_ex2(a->enc, NULL, NULL, nonce, NULL) != 1) {
        goto fail;
    }
    if (aad.len > 0 && EVP_EncryptUpdate(a->enc, NULL, &len, aad.ptr, (int)aad.len) != 1) {
        goto fail;
    }
    if (plaintext.len > 0) {
        if (EVP_EncryptUpdate(a->enc, out, &len, plaintext.ptr, (int)plaintext.len) != 1 ||
            (size_t)len != plaintext.len) {
            goto fail;
        }
    }
    if (EVP_EncryptFinal_ex(a->enc, out + plaintext.len, &len) != 1 || len != 0) {
        goto fail;
    }
    if (EVP_CIPHER_CTX_ctrl(a->enc, EVP_CTRL_AEAD_GET_TAG, CF_AEAD_TAG_LEN, out + plaintext.len) != 1) {
        goto fail;
    }
    return CF_OK;
fail:
    cf_wipe(out, plaintext.len + CF_AEAD_TAG_LEN);
    CF_CRYPTO_FAIL(CF_E_CRYPTO, "AEAD seal failed");
    return CF_ERROR;
}

CF_RESULT cf_aead_open(cf_aead *a, const uint8_t nonce[CF_AEAD_NONCE_LEN], cf_slice aad, cf_slice in, uint8_t *out)
{
    CF_ENSURE(a != NULL && a->dec != NULL, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_REF(nonce);
    CF_ENSURE(aad.ptr != NULL || aad.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE(in.ptr != NULL || in.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG(in.len >= CF_AEAD_TAG_LEN, CF_E_AUTH_FAILED, "ciphertext shorter than the tag");
    CF_ENSURE_MSG(aad.len <= AEAD_MAX_MESSAGE && in.len <= AEAD_MAX_MESSAGE, CF_E_TOO_LARGE, "AEAD input too large");
    size_t pt_len = in.len - CF_AEAD_TAG_LEN;
    CF_ENSURE(out != NULL || pt_len == 0, CF_E_INVALID_ARGUMENT);

    cf_result result = CF_OK;
    /* Small messages (fields, SSE events) decrypt on the stack; larger ones
     * into a heap scratch block. Either is wiped before returning. */
    uint8_t stack_scratch[1024];
    uint8_t *scratch = stack_scratch;
    if (pt_len > sizeof stack_scratch) {
        scratch = malloc(pt_len);
        CF_ENSURE_OUT(scratch != NULL, CF_E_NO_MEMORY);
    }
    int len = 0;
    uint8_t tag[CF_AEAD_TAG_LEN];
    memcpy(tag, in.ptr + pt_len, CF_AEAD_TAG_LEN);
    if (EVP_DecryptInit_ex2(a->dec, NULL, NULL, nonce, NULL) != 1 ||
        (aad.len > 0 && EVP_DecryptUpdate(a->dec, NULL, &len, aad.ptr, (int)aad.len) != 1) ||
        (pt_len > 0 && (EVP_DecryptUpdate(a->dec, scratch, &len, in.ptr, (int)pt_len) != 1 || (size_t)len != pt_len)) ||
        EVP_CIPHER_CTX_ctrl(a->dec, EVP_CTRL_AEAD_SET_TAG, CF_AEAD_TAG_LEN, tag) != 1) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "AEAD open failed");
        result = CF_ERROR;
        goto out;
    }
    /* EVP_DecryptFinal_ex compares the tag in constant time. */
    if (EVP_DecryptFinal_ex(a->dec, scratch + pt_len, &len) != 1) {
        ERR_clear_error();
        cf_error_set(CF_E_AUTH_FAILED, "AEAD tag mismatch", __FILE__, __LINE__);
        result = CF_ERROR;
        goto out;
    }
    if (pt_len > 0) {
        memcpy(out, scratch, pt_len);
    }
out:
    cf_wipe(scratch, pt_len);
    if (scratch != stack_scratch) {
        free(scratch);
    }
    return result;
}

CF_RESULT cf_aead_seal_once(cf_aead_alg alg, cf_slice key, const uint8_t nonce[CF_AEAD_NONCE_LEN], cf_slice aad,
                            cf_slice plaintext, uint8_t *out)
{
    cf_aead a;
    CF_GUARD(cf_aead_init(&a, alg, key));
    cf_result result = cf_aead_seal(&a, nonce, aad, plaintext, out);
    cf_aead_free(&a);
    return result;
}

CF_RESULT cf_aead_open_once(cf_aead_alg alg, cf_slice key, const uint8_t nonce[CF_AEAD_NONCE_LEN], cf_slice aad,
                            cf_slice in, uint8_t *out)
{
    cf_aead a;
    CF_GUARD(cf_aead_init(&a, alg, key));
    cf_result result = cf_aead_open(&a, nonce, aad, in, out);
    cf_aead_free(&a);
    return result;
}
