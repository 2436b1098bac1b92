/* tdx_internal.h — OpenSSL helpers private to the TDX verifier (lib/attest/tdx_*.c).
 *
 * These are local because the shared crypto wrappers (crypto.h) were not yet
 * available when the TDX verifier was written; they use OpenSSL 3.0 EVP and
 * X509 APIs only and can be swapped for the crypto.h ones one to one. */
#ifndef CONFIDE_TDX_INTERNAL_H
#define CONFIDE_TDX_INTERNAL_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "confide/tdx.h"

#define TDX_MAX_CHAIN_CERTS 8

CF_RESULT tdx_sha256(cf_slice in, uint8_t out[32]);
/* P-256 public key from raw x||y (64 bytes). */
CF_RESULT tdx_p256_from_xy(const uint8_t xy[64], EVP_PKEY **out);
/* ECDSA-SHA256 over msg; sig is raw r||s, 32 bytes each, big-endian. */
CF_RESULT tdx_ecdsa_verify_raw(EVP_PKEY *pub, cf_slice msg, const uint8_t sig[64]);
/* Every certificate of a PEM bundle (trailing NULs tolerated), 1..8 certs. */
CF_RESULT tdx_load_pem_chain(cf_slice pem, STACK_OF(X509) **out);
/* A CRL in DER or PEM. */
CF_RESULT tdx_load_crl(cf_slice data, X509_CRL **out);
/* The pinned Intel SGX Root CA (fingerprint checked). Caller frees. */
CF_RESULT tdx_intel_root(X509 **out);

typedef enum tdx_crl_mode { TDX_CRL_NONE = 0, TDX_CRL_LEAF = 1, TDX_CRL_ALL = 2 } tdx_crl_mode;

/* Verify chain[0] (leaf) through chain[1..] to the pinned Intel root at time
 * `at`. The last element of `chain` must be byte-identical to the pinned
 * root. `crls` are used per `crl_mode`. With `allow_not_yet_valid`, a
 * certificate whose notBefore is after `at` is accepted (everything else,
 * notAfter included, still checked): see docs/attestation.md §Intel TDX,
 * "TCB Signing certificate re-issue". */
CF_RESULT tdx_verify_intel_chain(STACK_OF(X509) *chain, STACK_OF(X509_CRL) *crls, tdx_crl_mode crl_mode,
                                 int64_t at, bool allow_not_yet_valid, const char *what);

/* "YYYY-MM-DDTHH:MM:SSZ" (optionally with fractional seconds) -> Unix time. */
CF_RESULT tdx_parse_time(const char *s, int64_t *out);

#endif /* CONFIDE_TDX_INTERNAL_H */
