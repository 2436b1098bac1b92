/* fuzz_hpke_context.c — an HPKE recipient context (RFC 9180 §5.2) opening
 * a stream of arbitrary messages, in base, psk, auth and auth_psk modes.
 *
 * Input: suite u8 | mode u8 | enc_len u8 | info_len u8 | enc | info |
 *        { msg_len u16be | aad_len u8 | aad | ct[msg_len] } ...
 * Checks: no crash or leak; seq advances exactly on successful opens; the
 * plaintext buffer grows exactly by ct.len - 16 on success and not at all
 * on failure; export works on every set-up context and is deterministic. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confide/hpke.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t aeads[4] = {CF_HPKE_AEAD_AES_128_GCM, CF_HPKE_AEAD_AES_256_GCM,
                                  CF_HPKE_AEAD_CHACHA20_POLY1305, CF_HPKE_AEAD_EXPORT_ONLY};

/* The seeds in fuzz/corpus/hpke_context use these fixed keys and psk. */
static const char recipient_seed[] = "confide fuzz recipient key seed!";
static const char sender_seed[] = "confide fuzz sender key seed....";
static const char psk[] = "confide fuzz pre-shared key 32B!";
static const char psk_id[] = "fuzz-psk";

#define MAX_MESSAGES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_reader r = cf_reader_make(cf_slice_make(data, size));
    uint8_t suite_sel, mode_sel, enc_len, info_len;
    cf_slice enc, info;
    if (cf_is_error(cf_reader_u8(&r, &suite_sel)) || cf_is_error(cf_reader_u8(&r, &mode_sel)) ||
        cf_is_error(cf_reader_u8(&r, &enc_len)) || cf_is_error(cf_reader_u8(&r, &info_len)) ||
        cf_is_error(cf_reader_slice(&r, enc_len, &enc)) || cf_is_error(cf_reader_slice(&r, info_len, &info))) {
        return 0;
    }
    cf_hpke_suite suite = {CF_HPKE_KEM_X25519_SHA256, CF_HPKE_KDF_HKDF_SHA256, aeads[suite_sel & 3]};
    cf_hpke_mode mode = (cf_hpke_mode)(mode_sel & 3);

    /* Derived once: the keys are fixed. */
    static cf_hpke_keypair kp, ks;
    static bool have_keys;
    if (!have_keys && (cf_is_error(cf_hpke_keypair_derive(CF_HPKE_KEM_X25519_SHA256,
                                           cf_slice_make(recipient_seed, sizeof recipient_seed - 1), &kp)) ||
        cf_is_error(cf_hpke_keypair_derive(CF_HPKE_KEM_X25519_SHA256,
                                           cf_slice_make(sender_seed, sizeof sender_seed - 1), &ks)))) {
        abort();
    }
    have_keys = true;
    cf_hpke_mode_inputs in = {CF_SLICE_EMPTY, CF_SLICE_EMPTY, NULL, CF_SLICE_EMPTY};
    if (mode == CF_HPKE_MODE_PSK || mode == CF_HPKE_MODE_AUTH_PSK) {
        in.psk = cf_slice_make(psk, sizeof psk - 1);
        in.psk_id = cf_slice_make(psk_id, sizeof psk_id - 1);
    }
    if (mode == CF_HPKE_MODE_AUTH || mode == CF_HPKE_MODE_AUTH_PSK) {
        in.sender_public_key = cf_hpke_keypair_public(&ks);
    }

    cf_hpke_ctx ctx;
    cf_buf pt;
    cf_buf_init(&pt, 1 << 20);
    if (cf_is_ok(cf_hpke_setup_recipient_mode(&ctx, suite, mode, enc, &kp, info, &in))) {
        uint8_t e1[32], e2[32];
        if (cf_is_error(cf_hpke_export(&ctx, info, e1, sizeof e1)) ||
            cf_is_error(cf_hpke_export(&ctx, info, e2, sizeof e2)) || memcmp(e1, e2, sizeof e1) != 0) {
            abort();
        }
        for (int i = 0; i < MAX_MESSAGES && !cf_reader_done(&r); i++) {
            uint16_t msg_len;
            uint8_t aad_len;
            cf_slice aad, ct;
            if (cf_is_error(cf_reader_u16be(&r, &msg_len)) || cf_is_error(cf_reader_u8(&r, &aad_len)) ||
                cf_is_error(cf_reader_slice(&r, aad_len, &aad))) {
                break;
            }
            if (cf_is_error(cf_reader_slice(&r, msg_len, &ct))) {
                ct = cf_reader_rest(&r); /* a truncated last message */
                if (cf_is_error(cf_reader_skip(&r, ct.len))) {
                    break;
                }
            }
            uint64_t seq = ctx.seq;
            size_t before = pt.len;
            if (cf_is_ok(cf_hpke_open(&ctx, aad, ct, &pt))) {
                if (ctx.seq != seq + 1 || pt.len != before + ct.len - 16) {
                    abort();
                }
            } else if (ctx.seq != seq || pt.len != before) {
                abort();
            }
        }
        cf_hpke_ctx_free(&ctx);
    } else if (ctx.role != CF_HPKE_ROLE_NONE) {
        abort(); /* a failed setup leaves a usable context */
    }
    cf_buf_free(&pt);
    return 0;
}
