/*
 * snp_internal.h — helpers private to the SEV-SNP verifier, on top of
 * crypto.h (which does the ECDSA, chain and extension work): what crypto.h
 * has no call for.
 */
#ifndef CONFIDE_ATTEST_SNP_INTERNAL_H
#define CONFIDE_ATTEST_SNP_INTERNAL_H

#include <openssl/x509.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

/* ECDSA P-384/SHA-384 over msg under the certificate's key, r and s given
 * little-endian in the report's 72-byte fields (bytes above the 48-byte
 * scalar must be zero). Refuses a key that is not on P-384. */
CF_RESULT snp_ecdsa_p384_verify_le(X509 *signer, cf_slice msg, cf_slice r_le, cf_slice s_le);
/* leaf -> intermediate -> root (the only trust anchor) at time `at`; the
 * leaf must be issued by exactly that intermediate (by the root when
 * intermediate is NULL). */
CF_RESULT snp_x509_verify(X509 *leaf, X509 *intermediate, X509 *root, int64_t at);
/* Unix seconds of a certificate's validity bounds. */
CF_RESULT snp_x509_validity(X509 *cert, int64_t *not_before, int64_t *not_after);
/* Append the PEM encoding of cert. */
CF_RESULT snp_x509_to_pem(X509 *cert, cf_buf *out);

#endif /* CONFIDE_ATTEST_SNP_INTERNAL_H */
