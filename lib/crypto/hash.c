/* hash.c — SHA-2 hashes (one-shot and incremental) over OpenSSL 3.0 EVP,
 * and HMAC-SHA256 (RFC 2104) / HKDF-SHA256 (RFC 5869) composed on the
 * fetched SHA-256 (see crypto.h; why not EVP_MAC/EVP_KDF: below). */
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#include "confide/crypto.h"
#include "crypto/internal.h"

/* Digests are fetched explicitly, once per process. OpenSSL 3.0 resolves
 * EVP_sha256() and friends by name on every EVP_DigestInit_ex (an implicit
 * fetch: a locked method-store lookup), which costs more than hashing a
 * short message; a fetched EVP_MD skips that. The objects live until exit
 * (still reachable, never leaked per call). */
static EVP_MD *cached_digests[CF_HASH_SHA512 + 1];
static pthread_once_t digest_once = PTHREAD_ONCE_INIT;

static void fetch_digests(void)
{
    cached_digests[CF_HASH_SHA256] = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    cached_digests[CF_HASH_SHA384] = EVP_MD_fetch(NULL, "SHA2-384", NULL);
    cached_digests[CF_HASH_SHA512] = EVP_MD_fetch(NULL, "SHA2-512", NULL);
}

const EVP_MD *cf_crypto_md(cf_hash_alg alg)
{
    if (alg != CF_HASH_SHA256 && alg != CF_HASH_SHA384 && alg != CF_HASH_SHA512) {
        return NULL;
    }
    pthread_once(&digest_once, fetch_digests);
    return cached_digests[alg];
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
    if (EVP_DigestInit_ex2(ctx->md, md, NULL) != 1) {
        cf_hash_free(ctx);
        CF_BAIL_MSG(CF_E_CRYPTO, "EVP_DigestInit_ex2 failed");
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

/* HMAC-SHA256 (RFC 2104) composed on the fetched SHA-256.
 *
 * Why not EVP_MAC "HMAC" or EVP_KDF "HKDF": in OpenSSL 3.0 both take the
 * digest only as a name parameter and fetch it again on every init/derive,
 * and neither can duplicate a keyed template (HKDF has no dupctx in 3.0).
 * For the 32-byte outputs confide derives per request that overhead was
 * 2-3x the four SHA-256 compressions HMAC needs. The construction is the
 * RFC's, checked against RFC 4231, RFC 5869 and Wycheproof vectors. */
#define SHA256_BLOCK_LEN 64

typedef struct hmac_sha256_key {
    EVP_MD_CTX *ctx;
    const EVP_MD *md;
    uint8_t ipad[SHA256_BLOCK_LEN]; /* K0 XOR 0x36 repeated (RFC 2104 §2) */
    uint8_t opad[SHA256_BLOCK_LEN]; /* K0 XOR 0x5c repeated */
} hmac_sha256_key;

static void hmac_key_wipe(hmac_sha256_key *k)
{
    EVP_MD_CTX_free(k->ctx); /* the provider clears its hash state on free */
    k->ctx = NULL;
    cf_wipe(k->ipad, sizeof k->ipad);
    cf_wipe(k->opad, sizeof k->opad);
}

static CF_RESULT hmac_key_init(hmac_sha256_key *k, cf_slice key)
{
    cf_result result = CF_OK;
    memset(k, 0, sizeof *k);
    k->md = cf_crypto_md(CF_HASH_SHA256);
    CF_ENSURE_MSG_OUT(k->md != NULL, CF_E_CRYPTO, "SHA-256 unavailable");
    k->ctx = EVP_MD_CTX_new();
    CF_ENSURE_OUT(k->ctx != NULL, CF_E_NO_MEMORY);
    /* K0: a key longer than the block is hashed first, a shorter one is
     * zero-padded (an empty key is all zeros). ipad holds K0 until the XOR. */
    if (key.len > SHA256_BLOCK_LEN) {
        unsigned int len = 0;
        CF_ENSURE_MSG_OUT(EVP_Digest(key.ptr, key.len, k->ipad, &len, k->md, NULL) == 1 && len == CF_SHA256_LEN,
                          CF_E_CRYPTO, "HMAC key hash failed");
    } else if (key.len > 0) {
        memcpy(k->ipad, key.ptr, key.len);
    }
    for (size_t i = 0; i < SHA256_BLOCK_LEN; i++) {
        k->opad[i] = (uint8_t)(k->ipad[i] ^ 0x5c);
        k->ipad[i] ^= 0x36;
    }
out:
    if (cf_is_error(result)) {
        hmac_key_wipe(k);
    }
    return result;
}

/* HMAC(K, parts[0] || parts[1] || ...) into out; empty parts are skipped. */
static CF_RESULT hmac_run(hmac_sha256_key *k, const cf_slice *parts, size_t count, uint8_t out[CF_SHA256_LEN])
{
    cf_result result = CF_OK;
    uint8_t inner[CF_SHA256_LEN];
    unsigned int len = 0;
    bool ok = EVP_DigestInit_ex2(k->ctx, k->md, NULL) == 1 && EVP_DigestUpdate(k->ctx, k->ipad, SHA256_BLOCK_LEN) == 1;
    for (size_t i = 0; ok && i < count; i++) {
        ok = parts[i].len == 0 || EVP_DigestUpdate(k->ctx, parts[i].ptr, parts[i].len) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(k->ctx, inner, &len) == 1 && len == CF_SHA256_LEN;
    ok = ok && EVP_DigestInit_ex2(k->ctx, k->md, NULL) == 1 && EVP_DigestUpdate(k->ctx, k->opad, SHA256_BLOCK_LEN) == 1 &&
         EVP_DigestUpdate(k->ctx, inner, CF_SHA256_LEN) == 1 && EVP_DigestFinal_ex(k->ctx, out, &len) == 1 &&
         len == CF_SHA256_LEN;
    CF_ENSURE_MSG_OUT(ok, CF_E_CRYPTO, "HMAC-SHA256 failed");
out:
    cf_wipe(inner, sizeof inner);
    if (cf_is_error(result)) {
        cf_wipe(out, CF_SHA256_LEN);
    }
    return result;
}

static CF_RESULT hmac_sha256_parts(cf_slice key, const cf_slice *parts, size_t count, uint8_t out[CF_SHA256_LEN])
{
    hmac_sha256_key k;
    cf_result result = CF_OK;
    CF_GUARD_OUT(hmac_key_init(&k, key));
    CF_GUARD_OUT(hmac_run(&k, parts, count, out));
out:
    hmac_key_wipe(&k);
    if (cf_is_error(result)) {
        cf_wipe(out, CF_SHA256_LEN);
    }
    return result;
}

CF_RESULT cf_hmac_sha256(cf_slice key, cf_slice msg, uint8_t out[CF_SHA256_LEN])
{
    CF_ENSURE_REF(out);
    CF_ENSURE(key.ptr != NULL || key.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE(msg.ptr != NULL || msg.len == 0, CF_E_INVALID_ARGUMENT);
    return hmac_sha256_parts(key, &msg, 1, out);
}

CF_RESULT cf_hkdf_sha256_extract(cf_slice salt, cf_slice ikm, uint8_t prk[CF_SHA256_LEN])
{
    CF_ENSURE_REF(prk);
    CF_ENSURE(salt.ptr != NULL || salt.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE(ikm.ptr != NULL || ikm.len == 0, CF_E_INVALID_ARGUMENT);
    /* RFC 5869 §2.2: a missing salt is HashLen zero bytes (the same HMAC
     * key as an empty one; said explicitly). An empty IKM is legal (RFC 9180
     * uses it). */
    static const uint8_t zero_salt[CF_SHA256_LEN] = {0};
    if (salt.len == 0) {
        salt = cf_slice_make(zero_salt, sizeof zero_salt);
    }
    /* §2.2: PRK = HMAC-Hash(salt, IKM). */
    return hmac_sha256_parts(salt, &ikm, 1, prk);
}

CF_RESULT cf_hkdf_sha256_expand(cf_slice prk, cf_slice info, uint8_t *out, size_t out_len)
{
    CF_ENSURE_REF(out);
    CF_ENSURE(prk.ptr != NULL && prk.len >= CF_SHA256_LEN, CF_E_INVALID_ARGUMENT);
    CF_ENSURE(info.ptr != NULL || info.len == 0, CF_E_INVALID_ARGUMENT);
    /* RFC 5869 §2.3: L <= 255*HashLen. */
    CF_ENSURE_MSG(out_len > 0 && out_len <= 255 * CF_SHA256_LEN, CF_E_INVALID_ARGUMENT,
                  "HKDF-Expand length out of range");
    /* §2.3: T(0) = empty, T(i) = HMAC-Hash(PRK, T(i-1) | info | i), and the
     * output is the first L bytes of T(1) | T(2) | ... One keyed HMAC state
     * serves every block. */
    cf_result result = CF_OK;
    hmac_sha256_key k;
    uint8_t t[CF_SHA256_LEN];
    size_t done = 0;
    CF_GUARD_OUT(hmac_key_init(&k, prk));
    for (unsigned i = 1; done < out_len; i++) {
        uint8_t counter = (uint8_t)i; /* i <= 255 by the length check above */
        cf_slice parts[3] = {
            cf_slice_make(t, i == 1 ? 0 : sizeof t),
            info,
            cf_slice_make(&counter, 1),
        };
        CF_GUARD_OUT(hmac_run(&k, parts, 3, t));
        size_t n = out_len - done < sizeof t ? out_len - done : sizeof t;
        memcpy(out + done, t, n);
        done += n;
    }
out:
    hmac_key_wipe(&k);
    cf_wipe(t, sizeof t);
    if (cf_is_error(result)) {
        cf_wipe(out, out_len);
    }
    return result;
}
