/*
 * snp_chain.c — SEV-SNP collateral: the VEK certificate bundle, the chain to
 * the pinned ARK (with a cache of verified chains), AMD CRLs, and the
 * certificate table the hypervisor hands out with an extended report.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "attest/snp_internal.h"
#include "confide/crypto.h"
#include "confide/snp.h"

/* ---- collateral bundle ------------------------------------------------------ */

void cf_snp_collateral_free(cf_snp_collateral *c)
{
    if (c == NULL) {
        return;
    }
    X509_free(c->vek);
    sk_X509_pop_free(c->intermediates, X509_free);
    sk_X509_CRL_pop_free(c->crls, X509_CRL_free);
    memset(c, 0, sizeof *c);
}

static bool is_self_signed(X509 *cert)
{
    /* Self-issued and its own key verifies it: an ARK. The bundle may carry
     * one (KDS cert_chain does); it is never used as a trust anchor. */
    return X509_check_issued(cert, cert) == X509_V_OK;
}

static CF_RESULT add_cert(cf_snp_collateral *c, X509 *cert)
{
    if (c->vek == NULL) {
        c->vek = cert;
        return CF_OK;
    }
    if (is_self_signed(cert)) {
        X509_free(cert);
        return CF_OK;
    }
    if (sk_X509_push(c->intermediates, cert) <= 0) {
        X509_free(cert);
        CF_BAIL(CF_E_NO_MEMORY);
    }
    return CF_OK;
}

static CF_RESULT parse_der_sequence(cf_slice data, cf_snp_collateral *c)
{
    size_t count = 0;
    while (data.len > 0) {
        CF_ENSURE_MSG(++count <= CF_SNP_COLLATERAL_MAX_CERTS, CF_E_LIMIT, "snp collateral: too many certificates");
        const unsigned char *p = data.ptr;
        X509 *cert = d2i_X509(NULL, &p, (long)data.len);
        X509_CRL *crl = NULL;
        if (cert == NULL && c->vek != NULL) {
            /* AMD KDS serves its CRL as DER: accept one after the VEK. */
            p = data.ptr;
            crl = d2i_X509_CRL(NULL, &p, (long)data.len);
        }
        ERR_clear_error();
        CF_ENSURE_MSG(cert != NULL || crl != NULL, CF_E_CERT,
                      "snp collateral: DER element is neither a certificate nor a CRL");
        size_t used = (size_t)(p - data.ptr);
        data.ptr += used;
        data.len -= used;
        if (crl != NULL) {
            if (sk_X509_CRL_push(c->crls, crl) <= 0) {
                X509_CRL_free(crl);
                CF_BAIL(CF_E_NO_MEMORY);
            }
            continue;
        }
        CF_GUARD(add_cert(c, cert));
    }
    return CF_OK;
}

static CF_RESULT parse_pem_sequence(cf_slice data, cf_snp_collateral *c)
{
    cf_result result = CF_OK;
    BIO *bio = BIO_new_mem_buf(data.ptr, (int)data.len);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long der_len = 0;
    size_t count = 0;
    CF_ENSURE_OUT(bio != NULL, CF_E_NO_MEMORY);
    for (;;) {
        if (PEM_read_bio(bio, &name, &header, &der, &der_len) != 1) {
            unsigned long err = ERR_peek_last_error();
            ERR_clear_error();
            /* The normal end: no further BEGIN line. */
            CF_ENSURE_MSG_OUT(ERR_GET_REASON(err) == PEM_R_NO_START_LINE, CF_E_MALFORMED,
                              "snp collateral: malformed PEM block");
            break;
        }
        CF_ENSURE_MSG_OUT(++count <= CF_SNP_COLLATERAL_MAX_CERTS, CF_E_LIMIT,
                          "snp collateral: too many PEM blocks");
        const unsigned char *p = der;
        if (strcmp(name, "CERTIFICATE") == 0) {
            X509 *cert = d2i_X509(NULL, &p, der_len);
            CF_ENSURE_MSG_OUT(cert != NULL && p == der + der_len, CF_E_CERT,
                              "snp collateral: PEM certificate does not parse");
            CF_GUARD_OUT(add_cert(c, cert));
        } else if (strcmp(name, "X509 CRL") == 0) {
            X509_CRL *crl = d2i_X509_CRL(NULL, &p, der_len);
            CF_ENSURE_MSG_OUT(crl != NULL && p == der + der_len, CF_E_CERT, "snp collateral: PEM CRL does not parse");
            if (sk_X509_CRL_push(c->crls, crl) <= 0) {
                X509_CRL_free(crl);
                CF_BAIL_OUT(CF_E_NO_MEMORY, "out of memory");
            }
        } else {
            CF_BAIL_OUT(CF_E_MALFORMED, "snp collateral: PEM block is neither CERTIFICATE nor X509 CRL");
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        name = header = NULL;
        der = NULL;
    }
out:
    ERR_clear_error();
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    return result;
}

CF_RESULT cf_snp_collateral_parse(cf_slice data, cf_snp_collateral *out)
{
    cf_result result = CF_OK;
    cf_snp_collateral c = {0};
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    CF_ENSURE_MSG(data.len > 0, CF_E_NOT_FOUND, "snp collateral: empty (the VCEK/VLEK certificate is required)");
    CF_ENSURE_MSG(data.len <= CF_SNP_COLLATERAL_MAX, CF_E_TOO_LARGE, "snp collateral: larger than 256 KiB");
    c.intermediates = sk_X509_new_null();
    c.crls = sk_X509_CRL_new_null();
    CF_ENSURE_OUT(c.intermediates != NULL && c.crls != NULL, CF_E_NO_MEMORY);
    if (data.ptr[0] == 0x30) {
        CF_GUARD_OUT(parse_der_sequence(data, &c));
    } else {
        CF_GUARD_OUT(parse_pem_sequence(data, &c));
    }
    CF_ENSURE_MSG_OUT(c.vek != NULL, CF_E_NOT_FOUND, "snp collateral: no certificate found");
    *out = c;
    memset(&c, 0, sizeof c);
out:
    cf_snp_collateral_free(&c);
    return result;
}

/* ---- chain cache -------------------------------------------------------------- */

void cf_snp_chain_cache_init(cf_snp_chain_cache *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
}

void cf_snp_chain_cache_destroy(cf_snp_chain_cache *c)
{
    pthread_mutex_destroy(&c->lock);
    memset(c, 0, sizeof *c);
}

static bool cache_lookup(cf_snp_chain_cache *c, const uint8_t key[32], int64_t at)
{
    bool hit = false;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < CF_SNP_CHAIN_CACHE_SLOTS; i++) {
        const cf_snp_chain_cache_entry *e = &c->slots[i];
        if (e->used && memcmp(e->key, key, 32) == 0 && at >= e->not_before && at <= e->not_after) {
            hit = true;
            break;
        }
    }
    if (hit) {
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

static void cache_insert(cf_snp_chain_cache *c, const uint8_t key[32], int64_t not_before, int64_t not_after)
{
    pthread_mutex_lock(&c->lock);
    size_t slot = c->next;
    for (size_t i = 0; i < CF_SNP_CHAIN_CACHE_SLOTS; i++) {
        if (c->slots[i].used && memcmp(c->slots[i].key, key, 32) == 0) {
            slot = i; /* refresh in place */
            break;
        }
    }
    if (slot == c->next) {
        c->next = (c->next + 1) % CF_SNP_CHAIN_CACHE_SLOTS; /* FIFO replacement */
    }
    cf_snp_chain_cache_entry *e = &c->slots[slot];
    memcpy(e->key, key, 32);
    e->not_before = not_before;
    e->not_after = not_after;
    e->used = true;
    pthread_mutex_unlock(&c->lock);
}

/* ---- CRL ---------------------------------------------------------------------- */

CF_RESULT cf_snp_crl_check(X509_CRL *crl, X509 *issuer, X509 *cert, int64_t at)
{
    CF_ENSURE_REF(crl);
    CF_ENSURE_REF(issuer);
    CF_ENSURE_REF(cert);
    CF_ENSURE_MSG(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) == 0, CF_E_CERT,
                  "snp CRL: not issued by the ARK");
    EVP_PKEY *key = X509_get0_pubkey(issuer);
    int ok = key != NULL ? X509_CRL_verify(crl, key) : 0;
    ERR_clear_error();
    CF_ENSURE_MSG(ok == 1, CF_E_CERT, "snp CRL: signature does not verify under the ARK");
    /* RFC 5280 §6.3.3: a CRL is usable only inside [thisUpdate, nextUpdate]; a
     * CRL without nextUpdate cannot be known current, so it is refused. */
    const ASN1_TIME *this_update = X509_CRL_get0_lastUpdate(crl);
    const ASN1_TIME *next_update = X509_CRL_get0_nextUpdate(crl);
    CF_ENSURE_MSG(this_update != NULL && next_update != NULL, CF_E_CERT, "snp CRL: thisUpdate/nextUpdate missing");
    time_t t = (time_t)at;
    CF_ENSURE_MSG(X509_cmp_time(this_update, &t) <= 0, CF_E_EXPIRED, "snp CRL: not yet valid at the given time");
    CF_ENSURE_MSG(X509_cmp_time(next_update, &t) >= 0, CF_E_EXPIRED, "snp CRL: expired (nextUpdate passed)");
    X509_REVOKED *rev = NULL;
    int found = X509_CRL_get0_by_cert(crl, &rev, cert);
    CF_ENSURE_MSG(found != 1, CF_E_REVOKED, "snp CRL: certificate is revoked");
    return CF_OK;
}

/* ---- chain ---------------------------------------------------------------------- */

static bool subject_cn_is(X509 *cert, const char *want)
{
    X509_NAME *subject = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (idx < 0) {
        return false;
    }
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
    size_t n = strlen(want);
    return (size_t)ASN1_STRING_length(s) == n && memcmp(ASN1_STRING_get0_data(s), want, n) == 0;
}

static CF_RESULT pick_intermediate(STACK_OF(X509) *supplied, cf_snp_product product, cf_snp_signing_key kind,
                                   X509 **out)
{
    char want[32];
    snprintf(want, sizeof want, kind == CF_SNP_KEY_VLEK ? "SEV-VLEK-%s" : "SEV-%s", cf_snp_product_name(product));
    for (int i = 0; supplied != NULL && i < sk_X509_num(supplied); i++) {
        X509 *c = sk_X509_value(supplied, i);
        if (subject_cn_is(c, want)) {
            CF_ENSURE(X509_up_ref(c) == 1, CF_E_INTERNAL);
            *out = c;
            return CF_OK;
        }
    }
    return kind == CF_SNP_KEY_VLEK ? cf_snp_root_asvk(product, out) : cf_snp_root_ask(product, out);
}

CF_RESULT cf_snp_verify_chain(X509 *vek, STACK_OF(X509) *supplied, cf_snp_product product,
                              cf_snp_signing_key kind, STACK_OF(X509_CRL) *crls, bool require_crl, int64_t at,
                              cf_snp_chain_cache *cache)
{
    cf_result result = CF_OK;
    X509 *ark = NULL, *inter = NULL;
    uint8_t material[65], key[32];
    CF_ENSURE_REF(vek);
    CF_ENSURE_MSG(kind == CF_SNP_KEY_VCEK || kind == CF_SNP_KEY_VLEK, CF_E_INVALID_ARGUMENT,
                  "snp chain: signing key must be VCEK or VLEK");
    CF_GUARD_OUT(cf_snp_root_ark(product, &ark));
    CF_GUARD_OUT(pick_intermediate(supplied, product, kind, &inter));
    bool have_crls = crls != NULL && sk_X509_CRL_num(crls) > 0;
    CF_ENSURE_MSG_OUT(have_crls || !require_crl, CF_E_REVOKED,
                      "snp chain: policy requires an AMD CRL and the collateral has none");

    CF_GUARD_OUT(cf_x509_fingerprint_sha256(vek, material));
    CF_GUARD_OUT(cf_x509_fingerprint_sha256(inter, material + 32));
    material[64] = (uint8_t)product;
    CF_GUARD_OUT(cf_sha256(cf_slice_make(material, sizeof material), key));
    if (cache != NULL && !have_crls && cache_lookup(cache, key, at)) {
        goto out;
    }

    CF_GUARD_OUT(snp_x509_verify(vek, inter, ark, at));
    if (have_crls) {
        for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
            X509_CRL *crl = sk_X509_CRL_value(crls, i);
            CF_GUARD_OUT(cf_snp_crl_check(crl, ark, inter, at));
            CF_GUARD_OUT(cf_snp_crl_check(crl, ark, vek, at));
        }
    }
    if (cache != NULL && !have_crls) {
        int64_t nb[3], na[3];
        CF_GUARD_OUT(snp_x509_validity(vek, &nb[0], &na[0]));
        CF_GUARD_OUT(snp_x509_validity(inter, &nb[1], &na[1]));
        CF_GUARD_OUT(snp_x509_validity(ark, &nb[2], &na[2]));
        int64_t lo = nb[0], hi = na[0];
        for (int i = 1; i < 3; i++) {
            lo = nb[i] > lo ? nb[i] : lo;
            hi = na[i] < hi ? na[i] : hi;
        }
        cache_insert(cache, key, lo, hi);
    }
out:
    X509_free(inter);
    X509_free(ark);
    return result;
}

/* ---- certificate table (auxblob) ------------------------------------------------ */

/* GUIDs in RFC 4122 byte order (GHCB spec 56421, "SNP Extended Guest
 * Request": certificate table GUIDs). */
static const uint8_t guid_vcek[16] = {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                      0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
static const uint8_t guid_vlek[16] = {0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e,
                                      0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1};
static const uint8_t guid_ask[16] = {0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4,
                                     0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82};
static const uint8_t guid_ark[16] = {0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52,
                                     0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae};

CF_RESULT cf_snp_cert_table_parse(cf_slice table, cf_snp_cert_table *out)
{
    static const uint8_t zero[16] = {0};
    cf_snp_cert_table t = {0};
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_reader r = cf_reader_make(table);
    for (size_t n = 0;; n++) {
        CF_ENSURE_MSG(n <= CF_SNP_CERT_TABLE_MAX_ENTRIES, CF_E_LIMIT, "snp cert table: too many entries");
        uint8_t guid[16];
        uint32_t off, len;
        if (cf_is_error(cf_reader_copy(&r, guid, sizeof guid)) || cf_is_error(cf_reader_u32le(&r, &off)) ||
            cf_is_error(cf_reader_u32le(&r, &len))) {
            CF_BAIL_MSG(CF_E_MALFORMED, "snp cert table: no terminating all-zero entry");
        }
        if (memcmp(guid, zero, 16) == 0) {
            CF_ENSURE_MSG(off == 0 && len == 0, CF_E_MALFORMED, "snp cert table: terminator entry not all zero");
            break;
        }
        cf_slice body;
        if (cf_is_error(cf_slice_sub(table, off, len, &body)) || len == 0) {
            CF_BAIL_MSG(CF_E_MALFORMED, "snp cert table: entry points outside the table");
        }
        cf_slice *slot = NULL;
        if (memcmp(guid, guid_vcek, 16) == 0) {
            slot = &t.vcek;
        } else if (memcmp(guid, guid_vlek, 16) == 0) {
            slot = &t.vlek;
        } else if (memcmp(guid, guid_ask, 16) == 0) {
            slot = &t.ask;
        } else if (memcmp(guid, guid_ark, 16) == 0) {
            slot = &t.ark;
        }
        if (slot != NULL) { /* unknown GUIDs are other vendors' blobs: skipped */
            CF_ENSURE_MSG(slot->len == 0, CF_E_MALFORMED, "snp cert table: duplicate GUID");
            *slot = body;
        }
    }
    *out = t;
    return CF_OK;
}

CF_RESULT cf_snp_cert_table_to_collateral(cf_slice table, cf_snp_signing_key key, cf_buf *out)
{
    cf_result result = CF_OK;
    cf_snp_cert_table t;
    X509 *vek = NULL, *ask = NULL;
    CF_GUARD(cf_snp_cert_table_parse(table, &t));
    cf_slice vek_der = key == CF_SNP_KEY_VLEK ? t.vlek : t.vcek;
    CF_ENSURE_MSG(vek_der.len > 0, CF_E_NOT_FOUND,
                  key == CF_SNP_KEY_VLEK ? "snp cert table: no VLEK entry" : "snp cert table: no VCEK entry");
    CF_GUARD_MSG(cf_x509_load_der(vek_der, &vek), "snp cert table: VEK");
    CF_GUARD_OUT(snp_x509_to_pem(vek, out));
    if (t.ask.len > 0) {
        CF_GUARD_OUT(cf_x509_load_der(t.ask, &ask));
        CF_GUARD_OUT(snp_x509_to_pem(ask, out));
    }
out:
    X509_free(vek);
    X509_free(ask);
    return result;
}
