/*
 * snp_internal.h — OpenSSL helpers private to the SEV-SNP verifier.
 *
 * Why local: they are exactly the operations the verifier needs with the
 * semantics it needs (raw little-endian ECDSA, extension bytes borrowed from
 * the certificate, chain verification at an explicit time against one
 * pinned root). All go through OpenSSL 3.0 EVP/X509 only.
 */
#ifndef CONFIDE_ATTEST_SNP_INTERNAL_H
#define CONFIDE_ATTEST_SNP_INTERNAL_H

#include <openssl/x509.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

/* Inner DER bytes of the extension with dotted `oid` (borrowed from cert);
 * CF_E_NOT_FOUND if absent, CF_E_CERT if present twice. */
CF_RESULT snp_x509_extension(X509 *cert, const char *oid, cf_slice *out);
CF_RESULT snp_sha256(cf_slice in, uint8_t out[32]);
CF_RESULT snp_x509_der_sha256(X509 *cert, uint8_t out[32]);
/* ECDSA P-384/SHA-384 over msg with r, s given little-endian (72 bytes each,
 * high bytes beyond the 48-byte scalar must be zero). */
CF_RESULT snp_ecdsa_p384_verify_le(X509 *signer, cf_slice msg, cf_slice r_le, cf_slice s_le);
/* leaf -> intermediate -> root (trust anchor) at time `at`. */
CF_RESULT snp_x509_verify(X509 *leaf, X509 *intermediate, X509 *root, int64_t at);
/* Unix seconds of a certificate's validity bounds. */
CF_RESULT snp_x509_validity(X509 *cert, int64_t *not_before, int64_t *not_after);
CF_RESULT snp_x509_from_der(cf_slice der, X509 **out);
CF_RESULT snp_x509_to_pem(X509 *cert, cf_buf *out);

#endif /* CONFIDE_ATTEST_SNP_INTERNAL_H */
