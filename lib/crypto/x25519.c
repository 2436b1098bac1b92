/* x25519.c — X25519 (RFC 7748) over EVP raw keys (see crypto.h). */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>

#include "confide/crypto.h"
#include "crypto/internal.h"

CF_RESULT cf_x25519_public(const uint8_t sk[CF_X25519_LEN], uint8_t pk[CF_X25519_LEN])
{
    CF_ENSURE_REF(sk);
    CF_ENSURE_REF(pk);
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, CF_X25519_LEN);
    if (key == NULL) {
        CF_CRYPTO_FAIL(CF_E_BAD_KEY, "X25519 private key rejected");
        return CF_ERROR;
    }
    size_t len = CF_X25519_LEN;
    int ok = EVP_PKEY_get_raw_public_key(key, pk, &len);
    EVP_PKEY_free(key);
    if (ok != 1 || len != CF_X25519_LEN) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "X25519 public key derivation failed");
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT cf_x25519_keygen(uint8_t sk[CF_X25519_LEN], uint8_t pk[CF_X25519_LEN])
{
    CF_ENSURE_REF(sk);
    CF_ENSURE_REF(pk);
    /* RFC 7748 §5: any 32 random bytes are a private key (clamping happens
     * inside the scalar multiplication). */
    cf_result result = CF_OK;
    CF_GUARD_OUT(cf_random(sk, CF_X25519_LEN));
    CF_GUARD_OUT(cf_x25519_public(sk, pk));
out:
    if (cf_is_error(result)) {
        cf_wipe(sk, CF_X25519_LEN);
    }
    return result;
}

/* An X25519 private key object. With the public key given, OpenSSL does
 * not recompute it (a whole scalar multiplication); the DH result depends
 * only on the private key either way. */
static EVP_PKEY *x25519_private_key(const uint8_t sk[CF_X25519_LEN], const uint8_t *pk)
{
    if (pk == NULL) {
        return EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, CF_X25519_LEN);
    }
    EVP_PKEY *key = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, (void *)(uintptr_t)sk, CF_X25519_LEN),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)pk, CF_X25519_LEN),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) != 1) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return key;
}

static CF_RESULT x25519_shared(const uint8_t sk[CF_X25519_LEN], const uint8_t *pk, const uint8_t peer[CF_X25519_LEN],
                               uint8_t shared[CF_X25519_LEN])
{
    CF_ENSURE_REF(sk);
    CF_ENSURE_REF(peer);
    CF_ENSURE_REF(shared);
    cf_result result = CF_OK;
    EVP_PKEY *own = NULL, *other = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    size_t len = CF_X25519_LEN;
    static const uint8_t zero[CF_X25519_LEN] = {0};

    own = x25519_private_key(sk, pk);
    other = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, CF_X25519_LEN);
    if (own == NULL || other == NULL) {
        CF_CRYPTO_FAIL(CF_E_BAD_KEY, "X25519 key rejected");
        result = CF_ERROR;
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, own, NULL);
    CF_ENSURE_OUT(ctx != NULL, CF_E_NO_MEMORY);
    if (EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer_ex(ctx, other, 0) != 1) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "X25519 derive setup failed");
        result = CF_ERROR;
        goto out;
    }
    /* OpenSSL already fails on an all-zero result; either way a low-order
     * peer point is reported as a bad key (RFC 7748 §6.1, RFC 9180 §7.1.4). */
    if (EVP_PKEY_derive(ctx, shared, &len) != 1 || len != CF_X25519_LEN) {
        CF_CRYPTO_FAIL(CF_E_BAD_KEY, "X25519 shared secret is zero (low-order peer key)");
        result = CF_ERROR;
        goto out;
    }
    CF_ENSURE_MSG_OUT(!cf_ct_equal(shared, zero, CF_X25519_LEN), CF_E_BAD_KEY,
                      "X25519 shared secret is zero (low-order peer key)");
out:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(own); /* frees and cleanses the private key copy */
    EVP_PKEY_free(other);
    if (cf_is_error(result)) {
        cf_wipe(shared, CF_X25519_LEN);
    }
    return result;
}

CF_RESULT cf_x25519(const uint8_t sk[CF_X25519_LEN], const uint8_t peer[CF_X25519_LEN],
                    uint8_t shared[CF_X25519_LEN])
{
    return x25519_shared(sk, NULL, peer, shared);
}

CF_RESULT cf_x25519_with_public(const uint8_t sk[CF_X25519_LEN], const uint8_t pk[CF_X25519_LEN],
                                const uint8_t peer[CF_X25519_LEN], uint8_t shared[CF_X25519_LEN])
{
    CF_ENSURE_REF(pk);
    return x25519_shared(sk, pk, peer, shared);
}
