/*
 * crypto.h — thin, must-use wrappers over OpenSSL 3.0 EVP.
 *
 * Everything cryptographic in confide goes through here (or hpke.h), so that
 * error handling, wiping and constant-time rules live in one place. Only
 * non-deprecated EVP/X509 APIs are used (-DOPENSSL_NO_DEPRECATED).
 *
 * Rules this module guarantees:
 *  - AEAD open never writes unauthenticated plaintext into the caller's
 *    buffer: on a tag mismatch `out` is left untouched and
 *    CF_E_AUTH_FAILED is returned.
 *  - All intermediate secrets are wiped before return, on every path.
 *  - X25519 rejects an all-zero shared secret (RFC 7748 §6.1, RFC 9180 §7.1.4).
 *  - AES-GCM takes only 96-bit nonces (the only size confide uses; Wycheproof
 *    cases with other IV sizes are counted as "rejected by policy").
 */
#ifndef CONFIDE_CRYPTO_H
#define CONFIDE_CRYPTO_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

/* ---- Hashes, HMAC, HKDF --------------------------------------------------- */

typedef enum cf_hash_alg { CF_HASH_SHA256 = 1, CF_HASH_SHA384 = 2, CF_HASH_SHA512 = 3 } cf_hash_alg;

#define CF_SHA256_LEN 32
#define CF_SHA384_LEN 48
#define CF_SHA512_LEN 64
#define CF_HASH_MAX_LEN 64

size_t cf_hash_len(cf_hash_alg alg);
CF_RESULT cf_hash(cf_hash_alg alg, cf_slice in, uint8_t *out /* cf_hash_len(alg) */);
CF_RESULT cf_sha256(cf_slice in, uint8_t out[CF_SHA256_LEN]);
CF_RESULT cf_sha384(cf_slice in, uint8_t out[CF_SHA384_LEN]);
CF_RESULT cf_sha512(cf_slice in, uint8_t out[CF_SHA512_LEN]);

/* Incremental hashing (plain-field digests, file measurements). */
typedef struct cf_hash_ctx {
    EVP_MD_CTX *md;
    cf_hash_alg alg;
} cf_hash_ctx;
CF_RESULT cf_hash_init(cf_hash_ctx *ctx, cf_hash_alg alg);
CF_RESULT cf_hash_update(cf_hash_ctx *ctx, cf_slice in);
/* Finalises and frees; ctx may be re-initialised afterwards. */
CF_RESULT cf_hash_final(cf_hash_ctx *ctx, uint8_t *out);
/* Frees without output (error paths). Safe on a zeroed or finalised ctx. */
void cf_hash_free(cf_hash_ctx *ctx);

CF_RESULT cf_hmac_sha256(cf_slice key, cf_slice msg, uint8_t out[CF_SHA256_LEN]);

/* RFC 5869 with SHA-256. */
CF_RESULT cf_hkdf_sha256_extract(cf_slice salt, cf_slice ikm, uint8_t prk[CF_SHA256_LEN]);
CF_RESULT cf_hkdf_sha256_expand(cf_slice prk, cf_slice info, uint8_t *out, size_t out_len);

/* ---- AEAD ----------------------------------------------------------------- */

typedef enum cf_aead_alg {
    CF_AEAD_AES_128_GCM = 1,
    CF_AEAD_AES_256_GCM = 2,
    CF_AEAD_CHACHA20_POLY1305 = 3,
} cf_aead_alg;

#define CF_AEAD_NONCE_LEN 12
#define CF_AEAD_TAG_LEN 16
#define CF_AEAD_MAX_KEY_LEN 32

size_t cf_aead_key_len(cf_aead_alg alg);

/* A keyed AEAD context: the key schedule is computed once and reused for
 * many seal/open calls (per-request keys encrypt many fields/events). */
typedef struct cf_aead {
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
    cf_aead_alg alg;
} cf_aead;

CF_RESULT cf_aead_init(cf_aead *a, cf_aead_alg alg, cf_slice key);
void cf_aead_free(cf_aead *a);
/* out receives plaintext.len + CF_AEAD_TAG_LEN bytes (ciphertext || tag).
 * out may be plaintext.ptr itself (in-place encryption); no other overlap.
 * On failure out is wiped, so an in-place seal loses its plaintext too. */
CF_RESULT cf_aead_seal(cf_aead *a, const uint8_t nonce[CF_AEAD_NONCE_LEN], cf_slice aad, cf_slice plaintext,
                       uint8_t *out);
/* in is ciphertext || tag; out receives in.len - CF_AEAD_TAG_LEN bytes, and
 * only if the tag verifies. */
CF_RESULT cf_aead_open(cf_aead *a, const uint8_t nonce[CF_AEAD_NONCE_LEN], cf_slice aad, cf_slice in, uint8_t *out);

/* One-shot forms. */
CF_RESULT cf_aead_seal_once(cf_aead_alg alg, cf_slice key, const uint8_t nonce[CF_AEAD_NONCE_LEN], cf_slice aad,
                            cf_slice plaintext, uint8_t *out);
CF_RESULT cf_aead_open_once(cf_aead_alg alg, cf_slice key, const uint8_t nonce[CF_AEAD_NONCE_LEN], cf_slice aad,
                            cf_slice in, uint8_t *out);

/* ---- Randomness ----------------------------------------------------------- */

/* OS CSPRNG (RAND_priv_bytes). */
CF_RESULT cf_random(void *out, size_t len);

/* ---- X25519 --------------------------------------------------------------- */

#define CF_X25519_LEN 32
CF_RESULT cf_x25519_keygen(uint8_t sk[CF_X25519_LEN], uint8_t pk[CF_X25519_LEN]);
CF_RESULT cf_x25519_public(const uint8_t sk[CF_X25519_LEN], uint8_t pk[CF_X25519_LEN]);
/* Fails with CF_E_BAD_KEY on an all-zero result (low-order peer key). */
CF_RESULT cf_x25519(const uint8_t sk[CF_X25519_LEN], const uint8_t peer[CF_X25519_LEN],
                    uint8_t shared[CF_X25519_LEN]);

/* ---- Signatures ----------------------------------------------------------- */

typedef enum cf_ec_curve { CF_EC_P256 = 1, CF_EC_P384 = 2 } cf_ec_curve;

/* Public key from an uncompressed point: 0x04||x||y, or raw x||y. */
CF_RESULT cf_ec_public_from_point(cf_ec_curve curve, cf_slice point, EVP_PKEY **out);
/* Public key from DER SubjectPublicKeyInfo or PEM. */
CF_RESULT cf_pubkey_from_der(cf_slice der, EVP_PKEY **out);
CF_RESULT cf_pubkey_from_pem(cf_slice pem, EVP_PKEY **out);

/* ECDSA over msg (hashed with `hash`), DER-encoded signature. */
CF_RESULT cf_ecdsa_verify_der(EVP_PKEY *pub, cf_hash_alg hash, cf_slice msg, cf_slice der_sig);
/* ECDSA with raw r and s (each `component_len` bytes, big- or little-endian:
 * AMD SEV-SNP stores them little-endian in 72-byte fields). */
CF_RESULT cf_ecdsa_verify_raw(EVP_PKEY *pub, cf_hash_alg hash, cf_slice msg, cf_slice r, cf_slice s,
                              bool little_endian);
/* Sign (for the sim platform and tests): DER signature appended to out. */
CF_RESULT cf_ecdsa_sign_der(EVP_PKEY *priv, cf_hash_alg hash, cf_slice msg, cf_buf *out);
CF_RESULT cf_ec_keygen(cf_ec_curve curve, EVP_PKEY **out);

/* Ed25519 (the AS signing key: receipts and worker tokens). */
#define CF_ED25519_PUB_LEN 32
#define CF_ED25519_SIG_LEN 64
CF_RESULT cf_ed25519_keygen(EVP_PKEY **out);
CF_RESULT cf_ed25519_public_raw(EVP_PKEY *key, uint8_t pub[CF_ED25519_PUB_LEN]);
CF_RESULT cf_ed25519_public_from_raw(const uint8_t pub[CF_ED25519_PUB_LEN], EVP_PKEY **out);
CF_RESULT cf_ed25519_sign(EVP_PKEY *key, cf_slice msg, uint8_t sig[CF_ED25519_SIG_LEN]);
CF_RESULT cf_ed25519_verify(EVP_PKEY *pub, cf_slice msg, cf_slice sig);

/* Private keys in PKCS#8 PEM (sim platform key files; mode 0600). */
CF_RESULT cf_privkey_from_pem(cf_slice pem, EVP_PKEY **out);
CF_RESULT cf_privkey_to_pem(EVP_PKEY *key, cf_buf *out);
CF_RESULT cf_pubkey_to_der(EVP_PKEY *key, cf_buf *out);

/* ---- X.509 ---------------------------------------------------------------- */

/* Parse every certificate of a PEM bundle, in order. */
CF_RESULT cf_x509_load_pem(cf_slice pem, STACK_OF(X509) **out);
CF_RESULT cf_x509_load_der(cf_slice der, X509 **out);
/* Either encoding: DER if it starts with a SEQUENCE, else PEM (first cert). */
CF_RESULT cf_x509_load_any(cf_slice data, X509 **out);
CF_RESULT cf_x509_fingerprint_sha256(X509 *cert, uint8_t out[CF_SHA256_LEN]);

/* Verify leaf -> intermediates -> one of `roots` at time `at` (Unix seconds;
 * always explicit). `crls` may be NULL; when given, every certificate in the
 * chain must have a CRL from its issuer (CRL check "all"). RSA-PSS chains
 * (AMD) are supported. On failure the detail names OpenSSL's reason. */
CF_RESULT cf_x509_verify_chain(X509 *leaf, STACK_OF(X509) *intermediates, STACK_OF(X509) *roots,
                               STACK_OF(X509_CRL) *crls, int64_t at);

/* The DER contents (the OCTET STRING's inner bytes) of the extension with
 * dotted OID `oid`; CF_E_NOT_FOUND if absent. Borrowed from the cert. */
CF_RESULT cf_x509_extension(X509 *cert, const char *oid, cf_slice *out);

CF_RESULT cf_crl_load_any(cf_slice data, X509_CRL **out);

#endif /* CONFIDE_CRYPTO_H */
