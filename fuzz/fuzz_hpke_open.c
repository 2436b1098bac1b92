/* fuzz_hpke_open.c — single-shot HPKE open (RFC 9180 §6.1) on arbitrary
 * suite, enc, info, aad and ciphertext, to a fixed recipient key.
 *
 * Input: suite u8 | enc_len u8 | info_len u8 | aad_len u8 | enc | info | aad | ct
 * Checks: never crashes or leaks; a failed open leaves the output empty; a
 * successful one yields exactly ct.len - 16 bytes; and sealing the input's
 * ct bytes as plaintext to the same key opens back to the same bytes. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confide/hpke.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t aeads[4] = {CF_HPKE_AEAD_AES_128_GCM, CF_HPKE_AEAD_AES_256_GCM,
                                  CF_HPKE_AEAD_CHACHA20_POLY1305, CF_HPKE_AEAD_EXPORT_ONLY};

/* The seeds in fuzz/corpus/hpke_open were sealed to DeriveKeyPair of this. */
static const char recipient_seed[] = "confide fuzz recipient key seed!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_reader r = cf_reader_make(cf_slice_make(data, size));
    uint8_t suite_sel, enc_len, info_len, aad_len;
    cf_slice enc, info, aad;
    if (cf_is_error(cf_reader_u8(&r, &suite_sel)) || cf_is_error(cf_reader_u8(&r, &enc_len)) ||
        cf_is_error(cf_reader_u8(&r, &info_len)) || cf_is_error(cf_reader_u8(&r, &aad_len)) ||
        cf_is_error(cf_reader_slice(&r, enc_len, &enc)) || cf_is_error(cf_reader_slice(&r, info_len, &info)) ||
        cf_is_error(cf_reader_slice(&r, aad_len, &aad))) {
        return 0;
    }
    cf_slice ct = cf_reader_rest(&r);
    cf_hpke_suite suite = {CF_HPKE_KEM_X25519_SHA256, CF_HPKE_KDF_HKDF_SHA256, aeads[suite_sel & 3]};

    /* Derived once: the key is fixed, and X25519 per input halves the rate. */
    static cf_hpke_keypair kp;
    static bool have_key;
    if (!have_key) {
        if (cf_is_error(cf_hpke_keypair_derive(CF_HPKE_KEM_X25519_SHA256,
                                               cf_slice_make(recipient_seed, sizeof recipient_seed - 1), &kp))) {
            abort();
        }
        have_key = true;
    }
    cf_buf pt, enc2, ct2, back;
    cf_buf_init(&pt, 1 << 20);
    cf_buf_init(&enc2, 1 << 20);
    cf_buf_init(&ct2, 1 << 20);
    cf_buf_init(&back, 1 << 20);

    if (cf_is_ok(cf_hpke_open_base(suite, enc, &kp, info, aad, ct, &pt))) {
        if (ct.len < 16 || pt.len != ct.len - 16) {
            abort();
        }
    } else if (pt.len != 0) {
        abort(); /* unauthenticated bytes released */
    }

    cf_result sealed = cf_hpke_seal_base(suite, cf_hpke_keypair_public(&kp), info, aad, ct, &enc2, &ct2);
    if (suite.aead_id == CF_HPKE_AEAD_EXPORT_ONLY) {
        if (cf_is_ok(sealed) || enc2.len != 0) {
            abort();
        }
    } else {
        if (cf_is_error(sealed) ||
            cf_is_error(cf_hpke_open_base(suite, cf_buf_slice(&enc2), &kp, info, aad, cf_buf_slice(&ct2), &back)) ||
            !cf_slice_eq(cf_buf_slice(&back), ct)) {
            abort();
        }
    }

    cf_buf_free(&pt);
    cf_buf_free(&enc2);
    cf_buf_free(&ct2);
    cf_buf_free(&back);
    return 0;
}
