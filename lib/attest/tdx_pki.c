/* tdx_pki.c — hashing, raw ECDSA P-256 and Intel chain verification for the
 * TDX verifier (OpenSSL 3.0 EVP / X509 only; see tdx_internal.h). */
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <string.h>
#include <time.h>

#include "tdx_internal.h"

CF_RESULT tdx_sha256(cf_slice in, uint8_t out[32])
{
    unsigned int len = 0;
    CF_ENSURE_MSG(EVP_Digest(in.ptr, in.len, out, &len, EVP_sha256(), NULL) == 1 && len == 32, CF_E_CRYPTO,
                  "sha256 failed");
    return CF_OK;
}

CF_RESULT tdx_p256_from_xy(const uint8_t xy[64], EVP_PKEY **out)
{
    cf_result result = CF_OK;
    uint8_t point[65];
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM params[3];
    char group[] = "prime256v1";

    point[0] = 0x04;
    memcpy(point + 1, xy, 64);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    CF_ENSURE_MSG_OUT(ctx != NULL, CF_E_NO_MEMORY, "EVP_PKEY_CTX_new_from_name failed");
    CF_ENSURE_MSG_OUT(EVP_PKEY_fromdata_init(ctx) == 1 &&
                          EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1,
                      CF_E_BAD_KEY, "not a P-256 point");
    /* fromdata does not always check that the point is on the curve. */
    EVP_PKEY_CTX_free(ctx);
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    CF_ENSURE_MSG_OUT(ctx != NULL, CF_E_NO_MEMORY, "EVP_PKEY_CTX_new_from_pkey failed");
    CF_ENSURE_MSG_OUT(EVP_PKEY_public_check(ctx) == 1, CF_E_BAD_KEY, "P-256 point is not on the curve");
    *out = pkey;
    pkey = NULL;
out:
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    return result;
}

CF_RESULT tdx_ecdsa_verify_raw(EVP_PKEY *pub, cf_slice msg, const uint8_t sig[64])
{
    cf_result result = CF_OK;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;

    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, 32, NULL);
    s = BN_bin2bn(sig + 32, 32, NULL);
    CF_ENSURE_MSG_OUT(es != NULL && r != NULL && s != NULL, CF_E_NO_MEMORY, "bignum allocation failed");
    CF_ENSURE_MSG_OUT(ECDSA_SIG_set0(es, r, s) == 1, CF_E_NO_MEMORY, "ECDSA_SIG_set0 failed");
    r = s = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    CF_ENSURE_MSG_OUT(der_len > 0, CF_E_CRYPTO, "i2d_ECDSA_SIG failed");
    md = EVP_MD_CTX_new();
    CF_ENSURE_MSG_OUT(md != NULL, CF_E_NO_MEMORY, "EVP_MD_CTX_new failed");
    CF_ENSURE_MSG_OUT(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1, CF_E_BAD_KEY,
                      "EVP_DigestVerifyInit failed");
    CF_ENSURE_MSG_OUT(EVP_DigestVerify(md, der, (size_t)der_len, msg.ptr, msg.len) == 1, CF_E_BAD_SIGNATURE,
                      "ECDSA P-256 signature does not verify");
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return result;
}

CF_RESULT tdx_load_pem_chain(cf_slice pem, STACK_OF(X509) **out)
{
    cf_result result = CF_OK;
    BIO *bio = NULL;
    STACK_OF(X509) *chain = NULL;
    X509 *cert = NULL;

    /* Certification data type 5 is NUL-terminated PEM in real quotes. */
    while (pem.len > 0 && pem.ptr[pem.len - 1] == 0) {
        pem.len--;
    }
    CF_ENSURE_MSG_OUT(pem.len > 0 && pem.len <= 64 * 1024, CF_E_MALFORMED, "PEM chain empty or too large");
    bio = BIO_new_mem_buf(pem.ptr, (int)pem.len);
    chain = sk_X509_new_null();
    CF_ENSURE_MSG_OUT(bio != NULL && chain != NULL, CF_E_NO_MEMORY, "allocation failed");
    for (;;) {
        ERR_clear_error();
        cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (cert == NULL) {
            unsigned long e = ERR_peek_last_error();
            bool eof = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
            CF_ENSURE_MSG_OUT(eof && sk_X509_num(chain) > 0, CF_E_CERT, "broken PEM certificate chain");
            break;
        }
        CF_ENSURE_MSG_OUT(sk_X509_num(chain) < TDX_MAX_CHAIN_CERTS, CF_E_LIMIT, "PEM chain has more than 8 certificates");
        CF_ENSURE_MSG_OUT(sk_X509_push(chain, cert) > 0, CF_E_NO_MEMORY, "sk_X509_push failed");
        cert = NULL;
    }
    *out = chain;
    chain = NULL;
out:
    ERR_clear_error();
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    BIO_free(bio);
    return result;
}

CF_RESULT tdx_load_crl(cf_slice data, X509_CRL **out)
{
    CF_ENSURE_MSG(data.len > 0 && data.len <= 1024 * 1024, CF_E_MALFORMED, "CRL empty or larger than 1 MiB");
    X509_CRL *crl = NULL;
    if (data.ptr[0] == 0x30) {
        const unsigned char *p = data.ptr;
        crl = d2i_X509_CRL(NULL, &p, (long)data.len);
        if (crl != NULL && p != data.ptr + data.len) {
            X509_CRL_free(crl);
            crl = NULL;
        }
    } else {
        BIO *bio = BIO_new_mem_buf(data.ptr, (int)data.len);
        if (bio != NULL) {
            crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
            BIO_free(bio);
        }
    }
    ERR_clear_error();
    CF_ENSURE_MSG(crl != NULL, CF_E_MALFORMED, "CRL is neither exact DER nor PEM");
    *out = crl;
    return CF_OK;
}

CF_RESULT tdx_intel_root(X509 **out)
{
    cf_slice der = cf_tdx_intel_root_der();
    uint8_t fp[32];
    CF_GUARD(tdx_sha256(der, fp));
    CF_ENSURE_MSG(memcmp(fp, cf_tdx_intel_root_sha256, 32) == 0, CF_E_INTERNAL,
                  "compiled-in Intel SGX Root CA does not match its pinned fingerprint");
    const unsigned char *p = der.ptr;
    X509 *root = d2i_X509(NULL, &p, (long)der.len);
    ERR_clear_error();
    CF_ENSURE_MSG(root != NULL, CF_E_INTERNAL, "compiled-in Intel SGX Root CA does not parse");
    *out = root;
    return CF_OK;
}

static int verify_cb_allow_not_yet_valid(int ok, X509_STORE_CTX *ctx)
{
    if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_CERT_NOT_YET_VALID) {
        return 1;
    }
    return ok;
}

static bool same_cert(X509 *a, X509 *b)
{
    unsigned char *da = NULL, *db = NULL;
    int la = i2d_X509(a, &da);
    int lb = i2d_X509(b, &db);
    bool same = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;
    OPENSSL_free(da);
    OPENSSL_free(db);
    return same;
}

CF_RESULT tdx_verify_intel_chain(STACK_OF(X509) *chain, STACK_OF(X509_CRL) *crls, tdx_crl_mode crl_mode,
                                 int64_t at, bool allow_not_yet_valid, const char *what)
{
    cf_result result = CF_OK;
    X509 *root = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *untrusted = NULL;
    int n = sk_X509_num(chain);

    CF_GUARD(tdx_intel_root(&root));
    if (n < 2 || !same_cert(sk_X509_value(chain, n - 1), root)) {
        cf_error_setf(CF_E_CERT, __FILE__, __LINE__, "%s: chain does not end in the pinned Intel SGX Root CA", what);
        result = CF_ERROR;
        goto out;
    }
    store = X509_STORE_new();
    untrusted = sk_X509_new_null();
    ctx = X509_STORE_CTX_new();
    CF_ENSURE_MSG_OUT(store != NULL && untrusted != NULL && ctx != NULL, CF_E_NO_MEMORY, "allocation failed");
    CF_ENSURE_MSG_OUT(X509_STORE_add_cert(store, root) == 1, CF_E_INTERNAL, "X509_STORE_add_cert failed");
    for (int i = 1; i < n - 1; i++) {
        CF_ENSURE_MSG_OUT(sk_X509_push(untrusted, sk_X509_value(chain, i)) > 0, CF_E_NO_MEMORY, "push failed");
    }
    CF_ENSURE_MSG_OUT(X509_STORE_CTX_init(ctx, store, sk_X509_value(chain, 0), untrusted) == 1, CF_E_INTERNAL,
                      "X509_STORE_CTX_init failed");
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, (time_t)at);
    unsigned long flags = 0;
    if (crl_mode == TDX_CRL_LEAF) {
        flags |= X509_V_FLAG_CRL_CHECK;
    } else if (crl_mode == TDX_CRL_ALL) {
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    }
    X509_VERIFY_PARAM_set_flags(param, flags);
    if (crl_mode != TDX_CRL_NONE) {
        X509_STORE_CTX_set0_crls(ctx, crls);
    }
    if (allow_not_yet_valid) {
        X509_STORE_CTX_set_verify_cb(ctx, verify_cb_allow_not_yet_valid);
    }
    if (X509_verify_cert(ctx) != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        int depth = X509_STORE_CTX_get_error_depth(ctx);
        cf_error_code code = CF_E_CERT;
        if (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CRL_HAS_EXPIRED ||
            err == X509_V_ERR_CERT_NOT_YET_VALID || err == X509_V_ERR_CRL_NOT_YET_VALID) {
            code = CF_E_EXPIRED;
        } else if (err == X509_V_ERR_CERT_REVOKED) {
            code = CF_E_REVOKED;
        } else if (err == X509_V_ERR_CERT_SIGNATURE_FAILURE || err == X509_V_ERR_CRL_SIGNATURE_FAILURE) {
            code = CF_E_BAD_SIGNATURE;
        }
        cf_error_setf(code, __FILE__, __LINE__, "%s: certificate at depth %d: %s", what, depth,
                      X509_verify_cert_error_string(err));
        result = CF_ERROR;
        goto out;
    }
out:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    X509_STORE_free(store);
    X509_free(root);
    return result;
}

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

CF_RESULT tdx_parse_time(const char *s, int64_t *out)
{
    CF_ENSURE_REF(s);
    size_t len = strnlen(s, 40);
    int y, mo, d, h, mi, se;
    CF_ENSURE_MSG(len >= 20 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':' &&
                      digits(s, 4, &y) && digits(s + 5, 2, &mo) && digits(s + 8, 2, &d) && digits(s + 11, 2, &h) &&
                      digits(s + 14, 2, &mi) && digits(s + 17, 2, &se),
                  CF_E_MALFORMED, "time is not YYYY-MM-DDTHH:MM:SSZ");
    size_t i = 19;
    if (s[i] == '.') {
        i++;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        CF_ENSURE_MSG(i > start && i - start <= 9, CF_E_MALFORMED, "bad fractional seconds");
    }
    CF_ENSURE_MSG(i + 1 == len && s[i] == 'Z', CF_E_MALFORMED, "time must end in Z (UTC)");
    CF_ENSURE_MSG(y >= 1970 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && se <= 60,
                  CF_E_MALFORMED, "time field out of range");
    /* Days from civil (H. Hinnant), no timezone state involved. */
    int yy = y - (mo <= 2);
    int era = yy / 400;
    int yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    *out = days * 86400 + h * 3600 + mi * 60 + se;
    return CF_OK;
}
