/* sig.c — public/private key import and export, ECDSA (P-256, P-384) and
 * Ed25519 over EVP (see crypto.h). */
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>

#include "confide/crypto.h"
#include "crypto/internal.h"

/* Keys and certificates are small; anything bigger is not one. */
#define KEY_INPUT_MAX ((size_t)1 << 20)
/* SEV-SNP stores r and s in 72-byte fields (room for P-521). */
#define ECDSA_COMPONENT_MAX 72

static size_t curve_coord_len(cf_ec_curve curve)
{
    switch (curve) {
    case CF_EC_P256:
        return 32;
    case CF_EC_P384:
        return 48;
    }
    return 0;
}

static const char *curve_name(cf_ec_curve curve)
{
    switch (curve) {
    case CF_EC_P256:
        return "P-256";
    case CF_EC_P384:
        return "P-384";
    }
    return NULL;
}

/* OpenSSL's full public key check: on the curve, not infinity, right order. */
static CF_RESULT check_public_key(EVP_PKEY *key)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    CF_ENSURE(ctx != NULL, CF_E_NO_MEMORY);
    int ok = EVP_PKEY_public_check(ctx);
    EVP_PKEY_CTX_free(ctx);
    if (ok != 1) {
        CF_CRYPTO_FAIL(CF_E_BAD_KEY, "public key fails validation");
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT cf_ec_public_from_point(cf_ec_curve curve, cf_slice point, EVP_PKEY **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    size_t coord = curve_coord_len(curve);
    CF_ENSURE_MSG(coord != 0, CF_E_UNSUPPORTED, "unknown curve");
    CF_ENSURE(point.ptr != NULL || point.len == 0, CF_E_INVALID_ARGUMENT);

    /* SEC 1 §2.3.3 uncompressed encoding; raw x||y gets the 0x04 prefix. */
    uint8_t encoded[1 + 2 * 48];
    if (point.len == 2 * coord) {
        encoded[0] = 0x04;
        memcpy(encoded + 1, point.ptr, point.len);
    } else if (point.len == 1 + 2 * coord && point.ptr[0] == 0x04) {
        memcpy(encoded, point.ptr, point.len);
    } else {
        CF_BAIL_FMT(CF_E_BAD_KEY, "EC point: expected %zu or %zu bytes (0x04||x||y), got %zu", 2 * coord,
                    1 + 2 * coord, point.len);
    }

    char group[8];
    strcpy(group, curve_name(curve));
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, encoded, 1 + 2 * coord),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    CF_ENSURE(ctx != NULL, CF_E_NO_MEMORY);
    int ok = EVP_PKEY_fromdata_init(ctx) == 1 && EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        EVP_PKEY_free(key);
        CF_CRYPTO_FAIL(CF_E_BAD_KEY, "EC point is not on the curve");
        return CF_ERROR;
    }
    if (cf_is_error(check_public_key(key))) {
        EVP_PKEY_free(key);
        return CF_ERROR;
    }
    *out = key;
    return CF_OK;
}

static CF_RESULT mem_bio(cf_slice in, BIO **out)
{
    CF_ENSURE(in.ptr != NULL && in.len > 0, CF_E_MALFORMED);
    CF_ENSURE_MSG(in.len <= KEY_INPUT_MAX, CF_E_TOO_LARGE, "key/certificate input larger than 1 MiB");
    *out = BIO_new_mem_buf(in.ptr, (int)in.len);
    CF_ENSURE(*out != NULL, CF_E_NO_MEMORY);
    return CF_OK;
}

CF_RESULT cf_pubkey_from_der(cf_slice der, EVP_PKEY **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    CF_ENSURE(der.ptr != NULL && der.len > 0, CF_E_MALFORMED);
    CF_ENSURE_MSG(der.len <= KEY_INPUT_MAX, CF_E_TOO_LARGE, "public key larger than 1 MiB");
    const unsigned char *p = der.ptr;
    EVP_PKEY *key = d2i_PUBKEY(NULL, &p, (long)der.len);
    if (key == NULL) {
        CF_CRYPTO_FAIL(CF_E_MALFORMED, "SubjectPublicKeyInfo does not parse");
        return CF_ERROR;
    }
    if (p != der.ptr + der.len) {
        EVP_PKEY_free(key);
        CF_BAIL_MSG(CF_E_MALFORMED, "trailing bytes after SubjectPublicKeyInfo");
    }
    if (EVP_PKEY_is_a(key, "EC") && cf_is_error(check_public_key(key))) {
        EVP_PKEY_free(key);
        return CF_ERROR;
    }
    *out = key;
    return CF_OK;
}

CF_RESULT cf_pubkey_from_pem(cf_slice pem, EVP_PKEY **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    BIO *bio = NULL;
    CF_GUARD(mem_bio(pem, &bio));
    EVP_PKEY *key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (key == NULL) {
        CF_CRYPTO_FAIL(CF_E_MALFORMED, "PEM public key does not parse");
        return CF_ERROR;
    }
    if (EVP_PKEY_is_a(key, "EC") && cf_is_error(check_public_key(key))) {
        EVP_PKEY_free(key);
        return CF_ERROR;
    }
    *out = key;
    return CF_OK;
}

CF_RESULT cf_ecdsa_verify_der(EVP_PKEY *pub, cf_hash_alg hash, cf_slice msg, cf_slice der_sig)
{
    CF_ENSURE_REF(pub);
    CF_ENSURE_MSG(EVP_PKEY_is_a(pub, "EC"), CF_E_BAD_KEY, "not an EC key");
    const EVP_MD *md = cf_crypto_md(hash);
    CF_ENSURE_MSG(md != NULL, CF_E_INVALID_ARGUMENT, "unknown hash algorithm");
    CF_ENSURE(msg.ptr != NULL || msg.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG(der_sig.ptr != NULL && der_sig.len > 0 && der_sig.len <= 256, CF_E_BAD_SIGNATURE,
                  "signature length out of range");
    static const uint8_t empty[1] = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CF_ENSURE(ctx != NULL, CF_E_NO_MEMORY);
    int rc = EVP_DigestVerifyInit_ex(ctx, NULL, EVP_MD_get0_name(md), NULL, NULL, pub, NULL);
    if (rc == 1) {
        /* OpenSSL rejects non-DER (BER, trailing bytes) encodings by
         * re-encoding the parsed signature and comparing. */
        rc = EVP_DigestVerify(ctx, der_sig.ptr, der_sig.len, msg.len ? msg.ptr : empty, msg.len);
    }
    EVP_MD_CTX_free(ctx);
    if (rc != 1) {
        ERR_clear_error();
        CF_BAIL_MSG(CF_E_BAD_SIGNATURE, "ECDSA signature does not verify");
    }
    return CF_OK;
}

/* A big-endian copy of a (possibly little-endian) integer component. */
static void to_big_endian(cf_slice in, bool little_endian, uint8_t *out)
{
    for (size_t i = 0; i < in.len; i++) {
        out[i] = little_endian ? in.ptr[in.len - 1 - i] : in.ptr[i];
    }
}

CF_RESULT cf_ecdsa_verify_raw(EVP_PKEY *pub, cf_hash_alg hash, cf_slice msg, cf_slice r, cf_slice s,
                              bool little_endian)
{
    CF_ENSURE_REF(pub);
    CF_ENSURE(r.ptr != NULL && s.ptr != NULL, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG(r.len == s.len && r.len > 0 && r.len <= ECDSA_COMPONENT_MAX, CF_E_BAD_SIGNATURE,
                  "ECDSA r/s component lengths invalid");
    cf_result result = CF_OK;
    uint8_t rb[ECDSA_COMPONENT_MAX], sb[ECDSA_COMPONENT_MAX];
    to_big_endian(r, little_endian, rb);
    to_big_endian(s, little_endian, sb);
    unsigned char *der = NULL;
    BIGNUM *rn = BN_bin2bn(rb, (int)r.len, NULL);
    BIGNUM *sn = BN_bin2bn(sb, (int)s.len, NULL);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    CF_ENSURE_OUT(rn != NULL && sn != NULL && sig != NULL, CF_E_NO_MEMORY);
    /* r and s must be in [1, n-1]; zero is caught here, the upper bound by
     * the verification itself. */
    CF_ENSURE_MSG_OUT(!BN_is_zero(rn) && !BN_is_zero(sn), CF_E_BAD_SIGNATURE, "ECDSA r or s is zero");
    CF_ENSURE_OUT(ECDSA_SIG_set0(sig, rn, sn) == 1, CF_E_INTERNAL);
    rn = sn = NULL; /* owned by sig now */
    int der_len = i2d_ECDSA_SIG(sig, &der);
    CF_ENSURE_OUT(der_len > 0, CF_E_NO_MEMORY);
    CF_GUARD_OUT(cf_ecdsa_verify_der(pub, hash, msg, cf_slice_make(der, (size_t)der_len)));
out:
    BN_free(rn);
    BN_free(sn);
    ECDSA_SIG_free(sig);
    OPENSSL_free(der);
    return result;
}

CF_RESULT cf_ecdsa_sign_der(EVP_PKEY *priv, cf_hash_alg hash, cf_slice msg, cf_buf *out)
{
    CF_ENSURE_REF(priv);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(EVP_PKEY_is_a(priv, "EC"), CF_E_BAD_KEY, "not an EC key");
    const EVP_MD *md = cf_crypto_md(hash);
    CF_ENSURE_MSG(md != NULL, CF_E_INVALID_ARGUMENT, "unknown hash algorithm");
    CF_ENSURE(msg.ptr != NULL || msg.len == 0, CF_E_INVALID_ARGUMENT);
    cf_result result = CF_OK;
    static const uint8_t empty[1] = {0};
    uint8_t sig[160];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CF_ENSURE_OUT(ctx != NULL, CF_E_NO_MEMORY);
    if (EVP_DigestSignInit_ex(ctx, NULL, EVP_MD_get0_name(md), NULL, NULL, priv, NULL) != 1 ||
        EVP_DigestSign(ctx, sig, &sig_len, msg.len ? msg.ptr : empty, msg.len) != 1) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "ECDSA sign failed");
        result = CF_ERROR;
        goto out;
    }
    CF_GUARD_OUT(cf_buf_append(out, sig, sig_len));
out:
    EVP_MD_CTX_free(ctx);
    return result;
}

CF_RESULT cf_ec_keygen(cf_ec_curve curve, EVP_PKEY **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    const char *name = curve_name(curve);
    CF_ENSURE_MSG(name != NULL, CF_E_UNSUPPORTED, "unknown curve");
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", name);
    if (key == NULL) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "EC key generation failed");
        return CF_ERROR;
    }
    *out = key;
    return CF_OK;
}

/* ---- Ed25519 --------------------------------------------------------------- */

CF_RESULT cf_ed25519_keygen(EVP_PKEY **out)
{
    CF_ENSURE_REF(out);
    *out = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (*out == NULL) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "Ed25519 key generation failed");
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT cf_ed25519_public_raw(EVP_PKEY *key, uint8_t pub[CF_ED25519_PUB_LEN])
{
    CF_ENSURE_REF(key);
    CF_ENSURE_REF(pub);
    CF_ENSURE_MSG(EVP_PKEY_is_a(key, "ED25519"), CF_E_BAD_KEY, "not an Ed25519 key");
    size_t len = CF_ED25519_PUB_LEN;
    if (EVP_PKEY_get_raw_public_key(key, pub, &len) != 1 || len != CF_ED25519_PUB_LEN) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "Ed25519 public key export failed");
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT cf_ed25519_public_from_raw(const uint8_t pub[CF_ED25519_PUB_LEN], EVP_PKEY **out)
{
    CF_ENSURE_REF(pub);
    CF_ENSURE_REF(out);
    *out = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, CF_ED25519_PUB_LEN);
    if (*out == NULL) {
        CF_CRYPTO_FAIL(CF_E_BAD_KEY, "Ed25519 public key rejected");
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT cf_ed25519_sign(EVP_PKEY *key, cf_slice msg, uint8_t sig[CF_ED25519_SIG_LEN])
{
    CF_ENSURE_REF(key);
    CF_ENSURE_REF(sig);
    CF_ENSURE_MSG(EVP_PKEY_is_a(key, "ED25519"), CF_E_BAD_KEY, "not an Ed25519 key");
    CF_ENSURE(msg.ptr != NULL || msg.len == 0, CF_E_INVALID_ARGUMENT);
    static const uint8_t empty[1] = {0};
    size_t len = CF_ED25519_SIG_LEN;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CF_ENSURE(ctx != NULL, CF_E_NO_MEMORY);
    /* Ed25519 is one-shot (PureEdDSA, RFC 8032): no digest. */
    int ok = EVP_DigestSignInit_ex(ctx, NULL, NULL, NULL, NULL, key, NULL) == 1 &&
             EVP_DigestSign(ctx, sig, &len, msg.len ? msg.ptr : empty, msg.len) == 1 && len == CF_ED25519_SIG_LEN;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        cf_wipe(sig, CF_ED25519_SIG_LEN);
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "Ed25519 sign failed (no private key?)");
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT cf_ed25519_verify(EVP_PKEY *pub, cf_slice msg, cf_slice sig)
{
    CF_ENSURE_REF(pub);
    CF_ENSURE_MSG(EVP_PKEY_is_a(pub, "ED25519"), CF_E_BAD_KEY, "not an Ed25519 key");
    CF_ENSURE(msg.ptr != NULL || msg.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG(sig.ptr != NULL && sig.len == CF_ED25519_SIG_LEN, CF_E_BAD_SIGNATURE,
                  "Ed25519 signature must be 64 bytes");
    static const uint8_t empty[1] = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CF_ENSURE(ctx != NULL, CF_E_NO_MEMORY);
    int ok = EVP_DigestVerifyInit_ex(ctx, NULL, NULL, NULL, NULL, pub, NULL) == 1 &&
             EVP_DigestVerify(ctx, sig.ptr, sig.len, msg.len ? msg.ptr : empty, msg.len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        CF_BAIL_MSG(CF_E_BAD_SIGNATURE, "Ed25519 signature does not verify");
    }
    return CF_OK;
}

/* ---- PEM / DER key files ---------------------------------------------------- */

/* Never prompt for a passphrase: encrypted key files are not supported. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

CF_RESULT cf_privkey_from_pem(cf_slice pem, EVP_PKEY **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    BIO *bio = NULL;
    CF_GUARD(mem_bio(pem, &bio));
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (key == NULL) {
        CF_CRYPTO_FAIL(CF_E_BAD_KEY, "PEM private key does not parse (encrypted keys are not supported)");
        return CF_ERROR;
    }
    *out = key;
    return CF_OK;
}

/* Drain a memory BIO into a cf_buf. */
static CF_RESULT bio_to_buf(BIO *bio, cf_buf *out)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    CF_ENSURE(len >= 0 && (len == 0 || data != NULL), CF_E_INTERNAL);
    return cf_buf_append(out, data, (size_t)len);
}

CF_RESULT cf_privkey_to_pem(EVP_PKEY *key, cf_buf *out)
{
    CF_ENSURE_REF(key);
    CF_ENSURE_REF(out);
    cf_result result = CF_OK;
    /* The secure-memory BIO wipes what it held when freed. */
    BIO *bio = BIO_new(BIO_s_secmem());
    CF_ENSURE_OUT(bio != NULL, CF_E_NO_MEMORY);
    if (PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "PKCS#8 export failed");
        result = CF_ERROR;
        goto out;
    }
    CF_GUARD_OUT(bio_to_buf(bio, out));
out:
    BIO_free(bio);
    return result;
}

CF_RESULT cf_pubkey_to_der(EVP_PKEY *key, cf_buf *out)
{
    CF_ENSURE_REF(key);
    CF_ENSURE_REF(out);
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(key, &der);
    if (len <= 0) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "SubjectPublicKeyInfo export failed");
        return CF_ERROR;
    }
    cf_result result = cf_buf_append(out, der, (size_t)len);
    OPENSSL_free(der);
    return result;
}
