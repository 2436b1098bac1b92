/* fuzz_crypto_parse.c — the crypto wrappers that take untrusted encodings:
 * certificates (PEM bundle, DER, either), CRLs, SubjectPublicKeyInfo (DER,
 * PEM), EC points and ECDSA signatures (DER and raw r||s).
 *
 * Input: selector u8 | data. Checks: no crash or leak; a failed load leaves
 * *out NULL; what loads can be used (fingerprint, extension lookup, chain
 * verification against itself, SPKI re-encoding round trip). */
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "confide/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 2030-01-01: any fixed time; the point is exercising the verifier. */
#define FUZZ_TIME ((int64_t)1893456000)

static void use_cert(X509 *cert)
{
    uint8_t fp[CF_SHA256_LEN];
    cf_slice ext;
    if (cf_is_error(cf_x509_fingerprint_sha256(cert, fp))) {
        abort();
    }
    (void)cf_is_ok(cf_x509_extension(cert, "2.5.29.19", &ext));
    STACK_OF(X509) *roots = sk_X509_new_null();
    if (roots == NULL || sk_X509_push(roots, cert) <= 0) {
        abort();
    }
    (void)cf_is_ok(cf_x509_verify_chain(cert, NULL, roots, NULL, FUZZ_TIME));
    sk_X509_free(roots); /* cert is owned by the caller */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t selector = data[0];
    cf_slice in = cf_slice_make(data + 1, size - 1);

    switch (selector % 6) {
    case 0: {
        X509 *cert = NULL;
        if (cf_is_ok(cf_x509_load_any(in, &cert))) {
            use_cert(cert);
            X509_free(cert);
        } else if (cert != NULL) {
            abort();
        }
        break;
    }
    case 1: {
        STACK_OF(X509) *certs = NULL;
        if (cf_is_ok(cf_x509_load_pem(in, &certs))) {
            if (sk_X509_num(certs) < 1 || sk_X509_num(certs) > 32) {
                abort();
            }
            use_cert(sk_X509_value(certs, 0));
            sk_X509_pop_free(certs, X509_free);
        } else if (certs != NULL) {
            abort();
        }
        break;
    }
    case 2: {
        X509_CRL *crl = NULL;
        if (cf_is_ok(cf_crl_load_any(in, &crl))) {
            X509_CRL_free(crl);
        } else if (crl != NULL) {
            abort();
        }
        break;
    }
    case 3:
    case 4: {
        EVP_PKEY *key = NULL;
        cf_result r = selector % 6 == 3 ? cf_pubkey_from_der(in, &key) : cf_pubkey_from_pem(in, &key);
        if (cf_is_ok(r)) {
            /* What parsed re-encodes, and the encoding parses again. */
            cf_buf der;
            cf_buf_init(&der, 1 << 20);
            EVP_PKEY *again = NULL;
            if (cf_is_error(cf_pubkey_to_der(key, &der)) || cf_is_error(cf_pubkey_from_der(cf_buf_slice(&der), &again)) ||
                EVP_PKEY_eq(key, again) != 1) {
                abort();
            }
            EVP_PKEY_free(again);
            cf_buf_free(&der);
            EVP_PKEY_free(key);
        } else if (key != NULL) {
            abort();
        }
        break;
    }
    case 5: {
        /* An EC point, then (if it is one) signatures over the rest. */
        cf_ec_curve curve = (selector & 0x80) ? CF_EC_P384 : CF_EC_P256;
        size_t point_len = curve == CF_EC_P384 ? 97 : 65;
        if (in.len < point_len) {
            break;
        }
        EVP_PKEY *key = NULL;
        if (cf_is_ok(cf_ec_public_from_point(curve, cf_slice_make(in.ptr, point_len), &key))) {
            cf_slice rest = cf_slice_make(in.ptr + point_len, in.len - point_len);
            size_t half = rest.len / 2;
            (void)cf_is_ok(cf_ecdsa_verify_der(key, CF_HASH_SHA256, cf_slice_make(rest.ptr, half),
                                               cf_slice_make(rest.ptr + half, rest.len - half)));
            if (half > 0 && half <= 72) {
                (void)cf_is_ok(cf_ecdsa_verify_raw(key, CF_HASH_SHA384, CF_SLICE_EMPTY,
                                                   cf_slice_make(rest.ptr, half), cf_slice_make(rest.ptr + half, half),
                                                   (selector & 0x40) != 0));
            }
            EVP_PKEY_free(key);
        } else if (key != NULL) {
            abort();
        }
        break;
    }
    }
    return 0;
}
