/* snp_ossl.c — the few OpenSSL steps of the SEV-SNP verifier that crypto.h
 * has no call for (see snp_internal.h); everything else goes through it. */
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "attest/snp_internal.h"
#include "confide/crypto.h"

CF_RESULT snp_ecdsa_p384_verify_le(X509 *signer, cf_slice msg, cf_slice r_le, cf_slice s_le)
{
    char group[32];
    size_t group_len = 0;
    EVP_PKEY *pub = X509_get0_pubkey(signer);
    CF_ENSURE_MSG(pub != NULL && EVP_PKEY_is_a(pub, "EC"), CF_E_CERT, "snp cert: VEK key is not EC");
    CF_ENSURE_MSG(EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &group_len) ==
                          1 &&
                      strcmp(group, "secp384r1") == 0,
                  CF_E_CERT, "snp cert: VEK key is not on P-384");
    CF_ENSURE(r_le.len == 72 && s_le.len == 72, CF_E_INTERNAL);
    /* ABI spec Table 139 (ECDSA P-384 signature): R and S are 72-byte
     * little-endian fields holding 48-byte scalars; the rest must be zero. */
    for (size_t i = 48; i < 72; i++) {
        CF_ENSURE_MSG(r_le.ptr[i] == 0 && s_le.ptr[i] == 0, CF_E_BAD_SIGNATURE,
                      "snp report: signature component exceeds 384 bits");
    }
    if (cf_is_error(cf_ecdsa_verify_raw(pub, CF_HASH_SHA384, msg, cf_slice_make(r_le.ptr, 48),
                                        cf_slice_make(s_le.ptr, 48), true))) {
        cf_error_code code = cf_error_code_last();
        if (code == CF_E_BAD_SIGNATURE) {
            CF_BAIL_MSG(CF_E_BAD_SIGNATURE, "snp report: signature does not verify under the VEK");
        }
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT snp_x509_verify(X509 *leaf, X509 *intermediate, X509 *root, int64_t at)
{
    cf_result result = CF_OK;
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    STACK_OF(X509) *roots = sk_X509_new_null();
    CF_ENSURE_OUT(untrusted != NULL && roots != NULL, CF_E_NO_MEMORY);
    CF_ENSURE_OUT(sk_X509_push(roots, root) > 0, CF_E_NO_MEMORY);
    if (intermediate != NULL) {
        CF_ENSURE_OUT(sk_X509_push(untrusted, intermediate) > 0, CF_E_NO_MEMORY);
    }
    CF_GUARD_OUT(cf_x509_verify_chain(leaf, untrusted, roots, NULL, at));
    /* The path must be leaf -> the intermediate we chose -> root (or leaf ->
     * root when no intermediate is given): nothing shorter, nothing else. */
    CF_ENSURE_MSG_OUT(X509_check_issued(intermediate != NULL ? intermediate : root, leaf) == X509_V_OK, CF_E_CERT,
                      "certificate chain: not issued by the expected ASK/ASVK/ARK");
out:
    sk_X509_free(untrusted); /* the certificates stay the caller's */
    sk_X509_free(roots);
    return result;
}

static CF_RESULT asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    CF_ENSURE_MSG(t != NULL && ASN1_TIME_to_tm(t, &tm) == 1, CF_E_CERT, "certificate time does not parse");
    *out = (int64_t)timegm(&tm);
    return CF_OK;
}

CF_RESULT snp_x509_validity(X509 *cert, int64_t *not_before, int64_t *not_after)
{
    CF_GUARD(asn1_time_unix(X509_get0_notBefore(cert), not_before));
    CF_GUARD(asn1_time_unix(X509_get0_notAfter(cert), not_after));
    return CF_OK;
}

CF_RESULT snp_x509_to_pem(X509 *cert, cf_buf *out)
{
    cf_result result = CF_OK;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    CF_ENSURE_OUT(bio != NULL, CF_E_NO_MEMORY);
    CF_ENSURE_OUT(PEM_write_bio_X509(bio, cert) == 1, CF_E_CRYPTO);
    long n = BIO_get_mem_data(bio, &data);
    CF_ENSURE_OUT(n > 0, CF_E_CRYPTO);
    CF_GUARD_OUT(cf_buf_append(out, data, (size_t)n));
out:
    BIO_free(bio);
    return result;
}
