/* hash.c — SHA-2 hashes (one-shot and incremental), HMAC-SHA256 and
 * HKDF-SHA256 (RFC 5869) over OpenSSL 3.0 EVP (see crypto.h). */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <pthread.h>
#include <string.h>

#include "confide/crypto.h"
#include "crypto/internal.h"

/* Fetched algorithm objects are cached once per process: fetching by name
 * on every HKDF call (HPKE runs ~6 per seal) costs more than the KDF. */
static EVP_KDF *cached_hkdf;
static EVP_MAC *cached_hmac;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_algorithms(void)
{
    cached_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    cached_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static EVP_KDF *hkdf_algorithm(void)
{
    pthread_once(&fetch_once, fetch_algorithms);
    return cached_hkdf;
}

static EVP_MAC *hmac_algorithm(void)
{
    pthread_once(&fetch_once, fetch_algorithms);
    return cached_hmac;
}

const EVP_MD *cf_crypto_md(cf_hash_alg alg)
{
    switch (alg) {
    case CF_HASH_SHA256:
        return EVP_sha256();
    case CF_HASH_SHA384:
        return EVP_sha384();
    case CF_HASH_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

size_t cf_hash_len(cf_hash_alg alg)
{
    switch (alg) {
    case CF_HASH_SHA256:
        return CF_SHA256_LEN;
    case CF_HASH_SHA384:
        return CF_SHA384_LEN;
    case CF_HASH_SHA512:
        return CF_SHA512_LEN;
    }
    return 0;
}

CF_RESULT cf_hash(cf_hash_alg alg, cf_slice in, uint8_t *out)
{
    const EVP_MD *md = cf_crypto_md(alg);
    CF_ENSURE_MSG(md != NULL, CF_E_INVALID_ARGUMENT, "unknown hash algorithm");
    CF_ENSURE_REF(out);
    CF_ENSURE(in.ptr != NULL || in.len == 0, CF_E_INVALID_ARGUMENT);
    unsigned int len = 0;
    static const uint8_t empty[1] = {0};
    CF_ENSURE_MSG(EVP_Digest(in.len ? in.ptr : empty, in.len, out, &len, md, NULL) == 1, CF_E_CRYPTO,
                  "EVP_Digest failed");
    CF_ENSURE(len == cf_hash_len(alg), CF_E_INTERNAL);
    return CF_OK;
}

CF_RESULT cf_sha256(cf_slice in, uint8_t out[CF_SHA256_LEN]) { return cf_hash(CF_HASH_SHA256, in, out); }
CF_RESULT cf_sha384(cf_slice in, uint8_t out[CF_SHA384_LEN]) { return cf_hash(CF_HASH_SHA384, in, out); }
CF_RESULT cf_sha512(cf_slice in, uint8_t out[CF_SHA512_LEN]) { return cf_hash(CF_HASH_SHA512, in, out); }

CF_RESULT cf_hash_init(cf_hash_ctx *ctx, cf_hash_alg alg)
{
    CF_ENSURE_REF(ctx);
    ctx->md = NULL;
    ctx->alg = alg;
    const EVP_MD *md = cf_crypto_md(alg);
    CF_ENSURE_MSG(md != NULL, CF_E_INVALID_ARGUMENT, "unknown hash algorithm");
    ctx->md = EVP_MD_CTX_new();
    CF_ENSURE(ctx->md != NULL, CF_E_NO_MEMORY);
    if (EVP_DigestInit_ex(ctx->md, md, NULL) != 1) {
        cf_hash_free(ctx);
        CF_BAIL_MSG(CF_E_CRYPTO, "EVP_DigestInit_ex failed");
    }
    return CF_OK;
}

CF_RESULT cf_hash_update(cf_hash_ctx *ctx, cf_slice in)
{
    CF_ENSURE_REF(ctx);
    CF_ENSURE_MSG(ctx->md != NULL, CF_E_INVALID_ARGUMENT, "hash context not initialised");
    CF_ENSURE(in.ptr != NULL || in.len == 0, CF_E_INVALID_ARGUMENT);
    if (in.len == 0) {
        return CF_OK;
    }
    CF_ENSURE_MSG(EVP_DigestUpdate(ctx->md, in.ptr, in.len) == 1, CF_E_CRYPTO, "EVP_DigestUpdate failed");
    return CF_OK;
}

CF_RESULT cf_hash_final(cf_hash_ctx *ctx, uint8_t *out)
{
    CF_ENSURE_REF(ctx);
    CF_ENSURE_MSG(ctx->md != NULL, CF_E_INVALID_ARGUMENT, "hash context not initialised");
    CF_ENSURE_REF(out);
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(ctx->md, out, &len);
    cf_hash_free(ctx);
    CF_ENSURE_MSG(ok == 1, CF_E_CRYPTO, "EVP_DigestFinal_ex failed");
    CF_ENSURE(len == cf_hash_len(ctx->alg), CF_E_INTERNAL);
    return CF_OK;
}

void cf_hash_free(cf_hash_ctx *ctx)
{
    if (ctx != NULL) {
        EVP_MD_CTX_free(ctx->md);
        ctx->md = NULL;
    }
}

CF_RESULT cf_hmac_sha256(cf_slice key, cf_slice msg, uint8_t out[CF_SHA256_LEN])
{
    CF_ENSURE_REF(out);
    CF_ENSURE(key.ptr != NULL || key.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE(msg.ptr != NULL || msg.len == 0, CF_E_INVALID_ARGUMENT);
    EVP_MAC *mac = hmac_algorithm();
    CF_ENSURE_MSG(mac != NULL, CF_E_CRYPTO, "HMAC unavailable");

    cf_result result = CF_OK;
    /* A zero-length key is legal for HMAC (it is zero-padded to the block
     * size, RFC 2104 §2) but OpenSSL wants a non-NULL pointer. */
    static const uint8_t empty[1] = {0};
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end(),
    };
    size_t out_len = 0;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    CF_ENSURE_OUT(ctx != NULL, CF_E_NO_MEMORY);
    CF_ENSURE_MSG_OUT(EVP_MAC_init(ctx, key.len ? key.ptr : empty, key.len, params) == 1, CF_E_CRYPTO,
                      "EVP_MAC_init failed");
    if (msg.len > 0) {
        CF_ENSURE_MSG_OUT(EVP_MAC_update(ctx, msg.ptr, msg.len) == 1, CF_E_CRYPTO, "EVP_MAC_update failed");
    }
    CF_ENSURE_MSG_OUT(EVP_MAC_final(ctx, out, &out_len, CF_SHA256_LEN) == 1 && out_len == CF_SHA256_LEN,
                      CF_E_CRYPTO, "EVP_MAC_final failed");
out:
    EVP_MAC_CTX_free(ctx); /* frees (and cleanses) the keyed state */
    if (cf_is_error(result)) {
        cf_wipe(out, CF_SHA256_LEN);
    }
    return result;
}

/* One HKDF call in the given mode (EXTRACT_ONLY or EXPAND_ONLY). */
static CF_RESULT hkdf_run(int mode, cf_slice key, cf_slice salt_or_info, uint8_t *out, size_t out_len)
{
    EVP_KDF *kdf = hkdf_algorithm();
    CF_ENSURE_MSG(kdf != NULL, CF_E_CRYPTO, "HKDF unavailable");
    cf_result result = CF_OK;
    char digest_name[] = "SHA256";
    OSSL_PARAM params[5];
    size_t n = 0;
    params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest_name, 0);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)key.ptr, key.len);
    if (salt_or_info.len > 0) {
        params[n++] = OSSL_PARAM_construct_octet_string(
            mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY ? OSSL_KDF_PARAM_SALT : OSSL_KDF_PARAM_INFO,
            (void *)(uintptr_t)salt_or_info.ptr, salt_or_info.len);
    }
    params[n] = OSSL_PARAM_construct_end();
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    CF_ENSURE_OUT(ctx != NULL, CF_E_NO_MEMORY);
    CF_ENSURE_MSG_OUT(EVP_KDF_derive(ctx, out, out_len, params) == 1, CF_E_CRYPTO, "HKDF derive failed");
out:
    EVP_KDF_CTX_free(ctx); /* cleanses the key copy it held */
    if (cf_is_error(result)) {
        cf_wipe(out, out_len);
    }
    return result;
}

CF_RESULT cf_hkdf_sha256_extract(cf_slice salt, cf_slice ikm, uint8_t prk[CF_SHA256_LEN])
{
    CF_ENSURE_REF(prk);
    CF_ENSURE(salt.ptr != NULL || salt.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE(ikm.ptr != NULL || ikm.len == 0, CF_E_INVALID_ARGUMENT);
    /* RFC 5869 §2.2: a missing salt is HashLen zero bytes. Said explicitly
     * so the behaviour does not depend on how OpenSSL treats "no salt". An
     * empty IKM is legal (RFC 9180 uses it) and needs a non-NULL pointer. */
    static const uint8_t zero_salt[CF_SHA256_LEN] = {0};
    if (salt.len == 0) {
        salt = cf_slice_make(zero_salt, sizeof zero_salt);
    }
    if (ikm.len == 0) {
        ikm = cf_slice_make(zero_salt, 0);
    }
    return hkdf_run(EVP_KDF_HKDF_MODE_EXTRACT_ONLY, ikm, salt, prk, CF_SHA256_LEN);
}

CF_RESULT cf_hkdf_sha256_expand(cf_slice prk, cf_slice info, uint8_t *out, size_t out_len)
{
    CF_ENSURE_REF(out);
    CF_ENSURE(prk.ptr != NULL && prk.len >= CF_SHA256_LEN, CF_E_INVALID_ARGUMENT);
    CF_ENSURE(info.ptr != NULL || info.len == 0, CF_E_INVALID_ARGUMENT);
    /* RFC 5869 §2.3: L <= 255*HashLen. */
    CF_ENSURE_MSG(out_len > 0 && out_len <= 255 * CF_SHA256_LEN, CF_E_INVALID_ARGUMENT,
                  "HKDF-Expand length out of range");
    return hkdf_run(EVP_KDF_HKDF_MODE_EXPAND_ONLY, prk, info, out, out_len);
}
