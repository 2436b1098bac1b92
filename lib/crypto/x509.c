/* x509.c — certificate and CRL loading, fingerprints, extensions and chain
 * verification at an explicit time (see crypto.h). */
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "confide/crypto.h"
#include "crypto/internal.h"

/* Bundles (AMD ASK+ARK, Intel PCK chains, collateral) are a few KiB. */
#define CERT_INPUT_MAX ((size_t)1 << 20)
#define PEM_BUNDLE_MAX_CERTS 32

static CF_RESULT cert_bio(cf_slice in, BIO **out)
{
    CF_ENSURE_MSG(in.ptr != NULL && in.len > 0, CF_E_MALFORMED, "empty certificate input");
    CF_ENSURE_MSG(in.len <= CERT_INPUT_MAX, CF_E_TOO_LARGE, "certificate input larger than 1 MiB");
    *out = BIO_new_mem_buf(in.ptr, (int)in.len);
    CF_ENSURE(*out != NULL, CF_E_NO_MEMORY);
    return CF_OK;
}

/* True when the last OpenSSL error only says "no more PEM blocks". */
static bool pem_at_end(void)
{
    unsigned long err = ERR_peek_last_error();
    return ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
}

CF_RESULT cf_x509_load_pem(cf_slice pem, STACK_OF(X509) **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    cf_result result = CF_OK;
    BIO *bio = NULL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    CF_ENSURE_OUT(certs != NULL, CF_E_NO_MEMORY);
    CF_GUARD_OUT(cert_bio(pem, &bio));
    for (;;) {
        ERR_clear_error();
        X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (cert == NULL) {
            if (pem_at_end() && sk_X509_num(certs) > 0) {
                ERR_clear_error();
                break;
            }
            CF_CRYPTO_FAIL(CF_E_CERT, sk_X509_num(certs) == 0 ? "no PEM certificate found"
                                                             : "PEM certificate does not parse");
            result = CF_ERROR;
            goto out;
        }
        if (sk_X509_num(certs) >= PEM_BUNDLE_MAX_CERTS || sk_X509_push(certs, cert) <= 0) {
            X509_free(cert);
            CF_BAIL_OUT(CF_E_LIMIT, "too many certificates in PEM bundle");
        }
    }
    *out = certs;
    certs = NULL;
out:
    BIO_free(bio);
    sk_X509_pop_free(certs, X509_free);
    return result;
}

CF_RESULT cf_x509_load_der(cf_slice der, X509 **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    CF_ENSURE_MSG(der.ptr != NULL && der.len > 0, CF_E_MALFORMED, "empty certificate input");
    CF_ENSURE_MSG(der.len <= CERT_INPUT_MAX, CF_E_TOO_LARGE, "certificate input larger than 1 MiB");
    const unsigned char *p = der.ptr;
    X509 *cert = d2i_X509(NULL, &p, (long)der.len);
    if (cert == NULL) {
        CF_CRYPTO_FAIL(CF_E_CERT, "DER certificate does not parse");
        return CF_ERROR;
    }
    if (p != der.ptr + der.len) {
        X509_free(cert);
        CF_BAIL_MSG(CF_E_CERT, "trailing bytes after DER certificate");
    }
    *out = cert;
    return CF_OK;
}

CF_RESULT cf_x509_load_any(cf_slice data, X509 **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    CF_ENSURE_MSG(data.ptr != NULL && data.len > 0, CF_E_MALFORMED, "empty certificate input");
    if (data.ptr[0] == 0x30) { /* DER SEQUENCE */
        return cf_x509_load_der(data, out);
    }
    STACK_OF(X509) *certs = NULL;
    CF_GUARD(cf_x509_load_pem(data, &certs));
    *out = sk_X509_shift(certs);
    sk_X509_pop_free(certs, X509_free);
    return CF_OK;
}

CF_RESULT cf_x509_fingerprint_sha256(X509 *cert, uint8_t out[CF_SHA256_LEN])
{
    CF_ENSURE_REF(cert);
    CF_ENSURE_REF(out);
    unsigned int len = 0;
    if (X509_digest(cert, cf_crypto_md(CF_HASH_SHA256), out, &len) != 1 || len != CF_SHA256_LEN) {
        CF_CRYPTO_FAIL(CF_E_CRYPTO, "certificate digest failed");
        return CF_ERROR;
    }
    return CF_OK;
}

/* Map OpenSSL's verification error to our stable codes. */
static cf_error_code verify_error_code(int err)
{
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return CF_E_EXPIRED;
    case X509_V_ERR_CERT_REVOKED:
        return CF_E_REVOKED;
    default:
        return CF_E_CERT;
    }
}

CF_RESULT cf_x509_verify_chain(X509 *leaf, STACK_OF(X509) *intermediates, STACK_OF(X509) *roots,
                               STACK_OF(X509_CRL) *crls, int64_t at)
{
    CF_ENSURE_REF(leaf);
    CF_ENSURE_MSG(roots != NULL && sk_X509_num(roots) > 0, CF_E_INVALID_ARGUMENT, "no trust roots given");
    /* The time is always explicit (DESIGN §5): 0 or negative is a bug. */
    CF_ENSURE_MSG(at > 0, CF_E_INVALID_ARGUMENT, "verification time must be explicit");
    cf_result result = CF_OK;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    CF_ENSURE_OUT(store != NULL && ctx != NULL, CF_E_NO_MEMORY);
    if (X509_STORE_CTX_init(ctx, store, leaf, intermediates) != 1) {
        CF_CRYPTO_FAIL(CF_E_INTERNAL, "X509_STORE_CTX_init failed");
        result = CF_ERROR;
        goto out;
    }
    /* Only the given roots are trusted (never the system store), and only
     * as complete self-signed anchors (no partial chains). */
    X509_STORE_CTX_set0_trusted_stack(ctx, roots);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, (time_t)at);
    if (crls != NULL) {
        /* CRL check "all": every certificate, not just the leaf, must have a
         * valid CRL from its issuer. */
        X509_STORE_CTX_set0_crls(ctx, crls);
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    if (X509_verify_cert(ctx) != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        int depth = X509_STORE_CTX_get_error_depth(ctx);
        ERR_clear_error();
        cf_error_setf(verify_error_code(err), __FILE__, __LINE__, "certificate chain: %s (depth %d)",
                      X509_verify_cert_error_string(err), depth);
        result = CF_ERROR;
        goto out;
    }
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return result;
}

CF_RESULT cf_x509_extension(X509 *cert, const char *oid, cf_slice *out)
{
    CF_ENSURE_REF(cert);
    CF_ENSURE_REF(oid);
    CF_ENSURE_REF(out);
    *out = CF_SLICE_EMPTY;
    /* no_name=1: only dotted numeric OIDs are accepted. */
    ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
    if (obj == NULL) {
        ERR_clear_error();
        CF_BAIL_FMT(CF_E_INVALID_ARGUMENT, "not a dotted OID: %.64s", oid);
    }
    int idx = X509_get_ext_by_OBJ(cert, obj, -1);
    ASN1_OBJECT_free(obj);
    if (idx < 0) {
        CF_BAIL_FMT(CF_E_NOT_FOUND, "certificate has no extension %.64s", oid);
    }
    X509_EXTENSION *ext = X509_get_ext(cert, idx);
    ASN1_OCTET_STRING *data = ext ? X509_EXTENSION_get_data(ext) : NULL;
    CF_ENSURE(data != NULL, CF_E_INTERNAL);
    *out = cf_slice_make(ASN1_STRING_get0_data(data), (size_t)ASN1_STRING_length(data));
    return CF_OK;
}

CF_RESULT cf_crl_load_any(cf_slice data, X509_CRL **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    CF_ENSURE_MSG(data.ptr != NULL && data.len > 0, CF_E_MALFORMED, "empty CRL input");
    CF_ENSURE_MSG(data.len <= CERT_INPUT_MAX, CF_E_TOO_LARGE, "CRL larger than 1 MiB");
    X509_CRL *crl = NULL;
    if (data.ptr[0] == 0x30) {
        const unsigned char *p = data.ptr;
        crl = d2i_X509_CRL(NULL, &p, (long)data.len);
        if (crl != NULL && p != data.ptr + data.len) {
            X509_CRL_free(crl);
            CF_BAIL_MSG(CF_E_CERT, "trailing bytes after DER CRL");
        }
    } else {
        BIO *bio = NULL;
        CF_GUARD(cert_bio(data, &bio));
        crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    if (crl == NULL) {
        CF_CRYPTO_FAIL(CF_E_CERT, "CRL does not parse");
        return CF_ERROR;
    }
    *out = crl;
    return CF_OK;
}
