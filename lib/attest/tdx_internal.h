/* tdx_internal.h — helpers private to the TDX verifier (lib/attest/tdx_*.c):
 * thin adaptors over crypto.h for the quote's raw encodings, and the Intel
 * chain verification (which needs more than cf_x509_verify_chain offers). */
#ifndef CONFIDE_TDX_INTERNAL_H
#define CONFIDE_TDX_INTERNAL_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "confide/tdx.h"

#define TDX_MAX_CHAIN_CERTS 8

/* P-256 public key from raw x||y (64 bytes). */
CF_RESULT tdx_p256_from_xy(const uint8_t xy[64], EVP_PKEY **out);
/* ECDSA-SHA256 over msg; sig is raw r||s, 32 bytes each, big-endian. */
CF_RESULT tdx_ecdsa_verify_raw(EVP_PKEY *pub, cf_slice msg, const uint8_t sig[64]);
/* Every certificate of a PEM bundle (trailing NULs tolerated), 1..8 certs. */
CF_RESULT tdx_load_pem_chain(cf_slice pem, STACK_OF(X509) **out);
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

/* True when `name` has exactly one CN and it equals `cn`. */
bool tdx_name_cn_is(const X509_NAME *name, const char *cn);
/* tdx_name_cn_is on cert's subject. */
bool tdx_subject_cn_is(X509 *cert, const char *cn);

/* The TD-report half of the policy (attributes, xfam, measurements,
 * report_data): what cf_tdx_verify applies after the TCB checks. Exposed for
 * tests that need TD reports no real quote carries (reserved bits). */
CF_RESULT tdx_policy_apply(const json_t *policy, const cf_tdx_td_report *td, const uint8_t *expected_report_data);

/* "YYYY-MM-DDTHH:MM:SSZ" (optionally with fractional seconds) -> Unix time. */
CF_RESULT tdx_parse_time(const char *s, int64_t *out);

#endif /* CONFIDE_TDX_INTERNAL_H */
