/* snp_ossl.c — OpenSSL 3.0 helpers private to the SEV-SNP verifier (see
 * snp_internal.h for why they are local). */
#include <limits.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "attest/snp_internal.h"

CF_RESULT snp_x509_extension(X509 *cert, const char *oid, cf_slice *out)
{
    cf_result result = CF_OK;
    ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
    CF_ENSURE_MSG(obj != NULL, CF_E_INTERNAL, "snp: bad extension OID");
    int idx = X509_get_ext_by_OBJ(cert, obj, -1);
    if (idx < 0) {
        cf_error_set(CF_E_NOT_FOUND, "certificate extension absent", __FILE__, __LINE__);
        result = CF_ERROR;
        goto out;
    }
    /* RFC 5280 §4.2: a certificate must not include an extension twice. */
    CF_ENSURE_MSG_OUT(X509_get_ext_by_OBJ(cert, obj, idx) < 0, CF_E_CERT, "snp cert: duplicate extension");
    const ASN1_OCTET_STRING *data = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    CF_ENSURE_OUT(data != NULL, CF_E_CERT);
    *out = cf_slice_make(ASN1_STRING_get0_data(data), (size_t)ASN1_STRING_length(data));
out:
    ASN1_OBJECT_free(obj);
    return result;
}

CF_RESULT snp_sha256(cf_slice in, uint8_t out[32])
{
    unsigned int n = 0;
    CF_ENSURE_MSG(EVP_Digest(in.ptr, in.len, out, &n, EVP_sha256(), NULL) == 1 && n == 32, CF_E_CRYPTO,
                  "SHA-256 failed");
    return CF_OK;
}

CF_RESULT snp_x509_der_sha256(X509 *cert, uint8_t out[32])
{
    unsigned int n = 0;
    CF_ENSURE_MSG(X509_digest(cert, EVP_sha256(), out, &n) == 1 && n == 32, CF_E_CRYPTO,
                  "certificate digest failed");
    return CF_OK;
}

/* r, s little-endian in 72-byte fields -> BIGNUM (P-384 scalars fit in 48). */
static CF_RESULT le_scalar(cf_slice le, BIGNUM **out)
{
    CF_ENSURE(le.len == 72, CF_E_INTERNAL);
    for (size_t i = 48; i < le.len; i++) {
        CF_ENSURE_MSG(le.ptr[i] == 0, CF_E_BAD_SIGNATURE, "snp report: signature component exceeds 384 bits");
    }
    *out = BN_lebin2bn(le.ptr, 48, NULL);
    CF_ENSURE(*out != NULL, CF_E_NO_MEMORY);
    return CF_OK;
}

CF_RESULT snp_ecdsa_p384_verify_le(X509 *signer, cf_slice msg, cf_slice r_le, cf_slice s_le)
{
    cf_result result = CF_OK;
    BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG *sig = NULL;
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;
    char group[32];
    size_t group_len = 0;

    EVP_PKEY *pub = X509_get0_pubkey(signer);
    CF_ENSURE_MSG_OUT(pub != NULL && EVP_PKEY_is_a(pub, "EC"), CF_E_CERT, "snp cert: VEK key is not EC");
    CF_ENSURE_MSG_OUT(EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                                     &group_len) == 1 &&
                          strcmp(group, "secp384r1") == 0,
                      CF_E_CERT, "snp cert: VEK key is not on P-384");
    CF_GUARD_OUT(le_scalar(r_le, &r));
    CF_GUARD_OUT(le_scalar(s_le, &s));
    sig = ECDSA_SIG_new();
    CF_ENSURE_OUT(sig != NULL, CF_E_NO_MEMORY);
    CF_ENSURE_OUT(ECDSA_SIG_set0(sig, r, s) == 1, CF_E_CRYPTO);
    r = s = NULL; /* owned by sig now */
    int der_len = i2d_ECDSA_SIG(sig, &der);
    CF_ENSURE_OUT(der_len > 0, CF_E_CRYPTO);
    md = EVP_MD_CTX_new();
    CF_ENSURE_OUT(md != NULL, CF_E_NO_MEMORY);
    CF_ENSURE_OUT(EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, pub) == 1, CF_E_CRYPTO);
    int ok = EVP_DigestVerify(md, der, (size_t)der_len, msg.ptr, msg.len);
    ERR_clear_error();
    CF_ENSURE_MSG_OUT(ok == 1, CF_E_BAD_SIGNATURE, "snp report: signature does not verify under the VEK");
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    return result;
}

CF_RESULT snp_x509_verify(X509 *leaf, X509 *intermediate, X509 *root, int64_t at)
{
    cf_result result = CF_OK;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    CF_ENSURE_OUT(store != NULL && ctx != NULL && untrusted != NULL, CF_E_NO_MEMORY);
    CF_ENSURE_OUT(X509_STORE_add_cert(store, root) == 1, CF_E_CRYPTO);
    if (intermediate != NULL) {
        CF_ENSURE_OUT(sk_X509_push(untrusted, intermediate) > 0, CF_E_NO_MEMORY);
    }
    CF_ENSURE_OUT(X509_STORE_CTX_init(ctx, store, leaf, untrusted) == 1, CF_E_CRYPTO);
    CF_ENSURE_OUT(at >= 0 && (uint64_t)at <= (uint64_t)LONG_MAX, CF_E_INVALID_ARGUMENT);
    X509_STORE_CTX_set_time(ctx, 0, (time_t)at);
    int ok = X509_verify_cert(ctx);
    ERR_clear_error();
    if (ok != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        cf_error_code code = (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID)
                                 ? CF_E_EXPIRED
                                 : CF_E_CERT;
        cf_error_setf(code, __FILE__, __LINE__, "certificate chain: %s (depth %d)",
                      X509_verify_cert_error_string(err), X509_STORE_CTX_get_error_depth(ctx));
        result = CF_ERROR;
        goto out;
    }
    /* The chain must be exactly leaf -> the intermediate we chose -> root: no
     * leaf signed directly by the root, no other path. */
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    int want = intermediate != NULL ? 3 : 2;
    CF_ENSURE_MSG_OUT(chain != NULL && sk_X509_num(chain) == want, CF_E_CERT,
                      "certificate chain: unexpected chain length");
    if (intermediate != NULL) {
        CF_ENSURE_MSG_OUT(X509_cmp(sk_X509_value(chain, 1), intermediate) == 0, CF_E_CERT,
                          "certificate chain: VEK not issued by the expected ASK/ASVK");
    }
out:
    sk_X509_free(untrusted);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
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

CF_RESULT snp_x509_from_der(cf_slice der, X509 **out)
{
    CF_ENSURE_MSG(der.len > 0 && der.len <= LONG_MAX, CF_E_MALFORMED, "certificate: empty");
    const unsigned char *p = der.ptr;
    X509 *cert = d2i_X509(NULL, &p, (long)der.len);
    ERR_clear_error();
    CF_ENSURE_MSG(cert != NULL, CF_E_CERT, "certificate: DER does not parse");
    if (p != der.ptr + der.len) {
        X509_free(cert);
        CF_BAIL_MSG(CF_E_CERT, "certificate: bytes after the DER certificate");
    }
    *out = cert;
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
