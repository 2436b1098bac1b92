/* tdx_pki.c — the TDX verifier's use of the crypto.h wrappers, plus the
 * Intel chain verification it needs beyond cf_x509_verify_chain: the pinned
 * root compared byte for byte, per-chain CRL modes, and the TCB Signing
 * notBefore exception (docs/attestation.md §Intel TDX). */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "confide/crypto.h"
#include "tdx_internal.h"

CF_RESULT tdx_p256_from_xy(const uint8_t xy[64], EVP_PKEY **out)
{
    return cf_ec_public_from_point(CF_EC_P256, cf_slice_make(xy, 64), out);
}

CF_RESULT tdx_ecdsa_verify_raw(EVP_PKEY *pub, cf_slice msg, const uint8_t sig[64])
{
    return cf_ecdsa_verify_raw(pub, CF_HASH_SHA256, msg, cf_slice_make(sig, 32), cf_slice_make(sig + 32, 32), false);
}

CF_RESULT tdx_load_pem_chain(cf_slice pem, STACK_OF(X509) **out)
{
    /* Certification data type 5 is NUL-terminated PEM in real quotes. */
    while (pem.len > 0 && pem.ptr[pem.len - 1] == 0) {
        pem.len--;
    }
    STACK_OF(X509) *chain = NULL;
    CF_GUARD_MSG(cf_x509_load_pem(pem, &chain), "broken PEM certificate chain");
    if (sk_X509_num(chain) > TDX_MAX_CHAIN_CERTS) {
        sk_X509_pop_free(chain, X509_free);
        CF_BAIL_MSG(CF_E_LIMIT, "PEM chain has more than 8 certificates");
    }
    *out = chain;
    return CF_OK;
}

CF_RESULT tdx_intel_root(X509 **out)
{
    cf_slice der = cf_tdx_intel_root_der();
    uint8_t fp[32];
    CF_GUARD(cf_sha256(der, fp));
    CF_ENSURE_MSG(memcmp(fp, cf_tdx_intel_root_sha256, 32) == 0, CF_E_INTERNAL,
                  "compiled-in Intel SGX Root CA does not match its pinned fingerprint");
    const unsigned char *p = der.ptr;
    X509 *root = d2i_X509(NULL, &p, (long)der.len);
    ERR_clear_error();
    CF_ENSURE_MSG(root != NULL, CF_E_INTERNAL, "compiled-in Intel SGX Root CA does not parse");
    *out = root;
    return CF_OK;
}

bool tdx_name_cn_is(const X509_NAME *name, const char *cn)
{
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0) {
        return false;
    }
    ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    size_t len = strlen(cn);
    return v != NULL && (size_t)ASN1_STRING_length(v) == len && memcmp(ASN1_STRING_get0_data(v), cn, len) == 0;
}

bool tdx_subject_cn_is(X509 *cert, const char *cn) { return tdx_name_cn_is(X509_get_subject_name(cert), cn); }

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

/* ---- Cache of verified chains ----------------------------------------------
 *
 * X509_verify_cert's answer for fixed inputs (certificates, CRLs, flags)
 * depends on the verification time only through validity periods: it is the
 * same for every time in [max(notBefore, CRL thisUpdate), min(notAfter, CRL
 * nextUpdate)). So a success is remembered under SHA-256 of every input byte
 * with that window (half-open, slightly narrower than OpenSSL's inclusive
 * bounds), and reused only for times inside it. Failures are never cached.
 * A fixed table, round-robin replacement, one mutex. */

#define CHAIN_CACHE_SLOTS 32

typedef struct chain_cache_entry {
    bool used;
    uint8_t key[CF_SHA256_LEN];
    int64_t lo, hi;
} chain_cache_entry;

static pthread_mutex_t chain_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static chain_cache_entry chain_cache[CHAIN_CACHE_SLOTS];
static size_t chain_cache_next;
static bool chain_cache_on = true;

void cf_tdx_chain_cache_enable(bool on)
{
    pthread_mutex_lock(&chain_cache_lock);
    chain_cache_on = on;
    pthread_mutex_unlock(&chain_cache_lock);
}

void cf_tdx_chain_cache_clear(void)
{
    pthread_mutex_lock(&chain_cache_lock);
    memset(chain_cache, 0, sizeof chain_cache);
    chain_cache_next = 0;
    pthread_mutex_unlock(&chain_cache_lock);
}

static CF_RESULT hash_der(cf_hash_ctx *h, unsigned char *der, int len)
{
    cf_result result = CF_OK;
    uint8_t len_be[4];
    CF_ENSURE_MSG_OUT(len > 0, CF_E_CRYPTO, "DER encoding failed");
    len_be[0] = (uint8_t)(len >> 24);
    len_be[1] = (uint8_t)(len >> 16);
    len_be[2] = (uint8_t)(len >> 8);
    len_be[3] = (uint8_t)len;
    CF_GUARD_OUT(cf_hash_update(h, cf_slice_make(len_be, 4)));
    CF_GUARD_OUT(cf_hash_update(h, cf_slice_make(der, (size_t)len)));
out:
    OPENSSL_free(der);
    return result;
}

static CF_RESULT chain_cache_key(STACK_OF(X509) *chain, STACK_OF(X509_CRL) *crls, tdx_crl_mode crl_mode,
                                 bool allow_not_yet_valid, uint8_t key[CF_SHA256_LEN])
{
    cf_result result = CF_OK;
    cf_hash_ctx h;
    memset(&h, 0, sizeof h);
    uint8_t mode[2] = {(uint8_t)crl_mode, (uint8_t)allow_not_yet_valid};
    CF_GUARD_OUT(cf_hash_init(&h, CF_HASH_SHA256));
    CF_GUARD_OUT(cf_hash_update(&h, cf_slice_make(mode, 2)));
    for (int i = 0; i < sk_X509_num(chain); i++) {
        unsigned char *der = NULL;
        int len = i2d_X509(sk_X509_value(chain, i), &der);
        CF_GUARD_OUT(hash_der(&h, der, len));
    }
    /* A marker between certificates and CRLs keeps the encoding unambiguous
     * (a length prefix of zero never occurs for real DER). */
    CF_GUARD_OUT(cf_hash_update(&h, cf_slice_make("\0\0\0\0", 4)));
    for (int i = 0; crl_mode != TDX_CRL_NONE && i < sk_X509_CRL_num(crls); i++) {
        unsigned char *der = NULL;
        int len = i2d_X509_CRL(sk_X509_CRL_value(crls, i), &der);
        CF_GUARD_OUT(hash_der(&h, der, len));
    }
    CF_GUARD_OUT(cf_hash_final(&h, key));
out:
    cf_hash_free(&h);
    return result;
}

static bool asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return false;
    }
    *out = (int64_t)timegm(&tm);
    return true;
}

/* The window in which the verification result cannot change; false if a
 * time does not convert (then nothing is cached). */
static bool validity_window(STACK_OF(X509) *chain, STACK_OF(X509_CRL) *crls, tdx_crl_mode crl_mode,
                            bool allow_not_yet_valid, int64_t *lo, int64_t *hi)
{
    int64_t l = INT64_MIN, h = INT64_MAX, t;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        if (!allow_not_yet_valid) {
            if (!asn1_time_unix(X509_get0_notBefore(c), &t)) {
                return false;
            }
            l = t > l ? t : l;
        }
        if (!asn1_time_unix(X509_get0_notAfter(c), &t)) {
            return false;
        }
        h = t < h ? t : h;
    }
    for (int i = 0; crl_mode != TDX_CRL_NONE && i < sk_X509_CRL_num(crls); i++) {
        X509_CRL *crl = sk_X509_CRL_value(crls, i);
        if (!asn1_time_unix(X509_CRL_get0_lastUpdate(crl), &t)) {
            return false;
        }
        l = t > l ? t : l;
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
        if (next != NULL) {
            if (!asn1_time_unix(next, &t)) {
                return false;
            }
            h = t < h ? t : h;
        }
    }
    *lo = l;
    *hi = h;
    return true;
}

static bool chain_cache_lookup(const uint8_t key[CF_SHA256_LEN], int64_t at)
{
    bool hit = false;
    pthread_mutex_lock(&chain_cache_lock);
    for (size_t i = 0; chain_cache_on && i < CHAIN_CACHE_SLOTS && !hit; i++) {
        hit = chain_cache[i].used && memcmp(chain_cache[i].key, key, CF_SHA256_LEN) == 0 && chain_cache[i].lo <= at &&
              at < chain_cache[i].hi;
    }
    pthread_mutex_unlock(&chain_cache_lock);
    return hit;
}

static void chain_cache_insert(const uint8_t key[CF_SHA256_LEN], int64_t lo, int64_t hi)
{
    pthread_mutex_lock(&chain_cache_lock);
    if (chain_cache_on) {
        chain_cache_entry *e = &chain_cache[chain_cache_next];
        chain_cache_next = (chain_cache_next + 1) % CHAIN_CACHE_SLOTS;
        e->used = true;
        memcpy(e->key, key, CF_SHA256_LEN);
        e->lo = lo;
        e->hi = hi;
    }
    pthread_mutex_unlock(&chain_cache_lock);
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

    /* The time is always explicit (DESIGN §5); with allow_not_yet_valid a
     * zero time would otherwise pass every notBefore check. */
    CF_ENSURE_MSG(at > 0, CF_E_INVALID_ARGUMENT, "tdx: verification time must be explicit");
    CF_GUARD(tdx_intel_root(&root));
    if (n < 2 || !same_cert(sk_X509_value(chain, n - 1), root)) {
        cf_error_setf(CF_E_CERT, __FILE__, __LINE__, "%s: chain does not end in the pinned Intel SGX Root CA", what);
        result = CF_ERROR;
        goto out;
    }
    uint8_t key[CF_SHA256_LEN];
    int64_t lo, hi;
    CF_GUARD_OUT(chain_cache_key(chain, crls, crl_mode, allow_not_yet_valid, key));
    if (chain_cache_lookup(key, at)) {
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
        /* Not cf_x509_verify_chain's mapping (lib/crypto/x509.c keeps it
         * private, and that function has no per-call verify callback for
         * the TCB Signing notBefore exception nor CRL-scope choice). Ours
         * also maps signature failures to bad_signature, as the TDX error
         * table in docs/attestation.md promises. */
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
    if (validity_window(chain, crls, crl_mode, allow_not_yet_valid, &lo, &hi) && lo <= at && at < hi) {
        chain_cache_insert(key, lo, hi);
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
    static const int month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    CF_ENSURE_MSG(y >= 1970 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 && d <= month_days[mo - 1] && h <= 23 &&
                      mi <= 59 && se <= 60,
                  CF_E_MALFORMED, "time field out of range");
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    CF_ENSURE_MSG(mo != 2 || d <= 28 || leap, CF_E_MALFORMED, "time field out of range (no such day)");
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
