/* test_hpke.c — RFC 9180 HPKE: every test vector of DHKEM(X25519,
 * HKDF-SHA256) + HKDF-SHA256 with AES-128-GCM, AES-256-GCM,
 * ChaCha20-Poly1305 and export-only in all four modes (key schedule,
 * every encryption, every export), plus negative and API-rule tests. */
#include "test_helper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confide/hpke.h"
#include "crypto/hpke_internal.h"

#define HPKE_VECTORS "crypto/hpke/rfc9180_test_vectors.json.gz"

/* Hex field of a vector object into a buffer (empty string -> empty). */
static void field_hex(json_t *obj, const char *name, cf_buf *out)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_string(v)) {
        fail_msg("vector field %s missing", name);
    }
    cf_test_hex(json_string_value(v), out);
}

static void assert_buf_equal(const uint8_t *got, size_t len, const cf_buf *want, const char *what)
{
    if (len != want->len || memcmp(got, want->data, len) != 0) {
        fail_msg("%s differs from the RFC 9180 vector", what);
    }
}

typedef struct vector_counts {
    int suites, encryptions, exports, by_mode[4];
} vector_counts;

static void run_one_vector(json_t *v, vector_counts *counts)
{
    cf_hpke_suite suite = {(uint16_t)json_integer_value(json_object_get(v, "kem_id")),
                           (uint16_t)json_integer_value(json_object_get(v, "kdf_id")),
                           (uint16_t)json_integer_value(json_object_get(v, "aead_id"))};
    cf_hpke_mode mode = (cf_hpke_mode)json_integer_value(json_object_get(v, "mode"));
    bool psk_mode = mode == CF_HPKE_MODE_PSK || mode == CF_HPKE_MODE_AUTH_PSK;
    bool auth_mode = mode == CF_HPKE_MODE_AUTH || mode == CF_HPKE_MODE_AUTH_PSK;

    cf_buf info, ikm_r, ikm_e, sk_r, pk_r, enc_want, ss, key, base_nonce, exp_secret;
    field_hex(v, "info", &info);
    field_hex(v, "ikmR", &ikm_r);
    field_hex(v, "ikmE", &ikm_e);
    field_hex(v, "skRm", &sk_r);
    field_hex(v, "pkRm", &pk_r);
    field_hex(v, "enc", &enc_want);
    field_hex(v, "shared_secret", &ss);
    field_hex(v, "key", &key);
    field_hex(v, "base_nonce", &base_nonce);
    field_hex(v, "exporter_secret", &exp_secret);

    /* DeriveKeyPair reproduces the recipient's (and sender's) keys. */
    cf_hpke_keypair kp_r, kp_s, kp_e;
    assert_cf_ok(cf_hpke_keypair_derive(suite.kem_id, cf_buf_slice(&ikm_r), &kp_r));
    assert_buf_equal(kp_r.private_key, 32, &sk_r, "skRm");
    assert_buf_equal(kp_r.public_key, 32, &pk_r, "pkRm");
    assert_cf_ok(cf_hpke_keypair_derive(suite.kem_id, cf_buf_slice(&ikm_e), &kp_e));
    assert_buf_equal(kp_e.public_key, 32, &enc_want, "pkEm");

    cf_hpke_mode_inputs send_in = {0}, recv_in = {0};
    cf_buf psk, psk_id, ikm_s, pk_s;
    cf_buf_init(&psk, 0);
    cf_buf_init(&psk_id, 0);
    cf_buf_init(&ikm_s, 0);
    cf_buf_init(&pk_s, 0);
    if (psk_mode) {
        cf_buf_free(&psk);
        cf_buf_free(&psk_id);
        field_hex(v, "psk", &psk);
        field_hex(v, "psk_id", &psk_id);
        send_in.psk = recv_in.psk = cf_buf_slice(&psk);
        send_in.psk_id = recv_in.psk_id = cf_buf_slice(&psk_id);
    }
    if (auth_mode) {
        cf_buf_free(&ikm_s);
        cf_buf_free(&pk_s);
        field_hex(v, "ikmS", &ikm_s);
        field_hex(v, "pkSm", &pk_s);
        assert_cf_ok(cf_hpke_keypair_derive(suite.kem_id, cf_buf_slice(&ikm_s), &kp_s));
        assert_buf_equal(kp_s.public_key, 32, &pk_s, "pkSm");
        send_in.sender_keypair = &kp_s;
        recv_in.sender_public_key = cf_buf_slice(&pk_s);
    }

    /* Sender with the vector's ephemeral key; recipient from enc. */
    cf_hpke_ctx sender, recipient;
    cf_hpke_trace ts, tr;
    cf_buf enc;
    cf_buf_init(&enc, 0);
    assert_cf_ok(cf_hpke_setup_sender_internal(&sender, suite, mode, cf_buf_slice(&pk_r), cf_buf_slice(&info),
                                               &send_in, cf_buf_slice(&ikm_e), &enc, &ts));
    assert_buf_equal(enc.data, enc.len, &enc_want, "enc");
    assert_cf_ok(cf_hpke_setup_recipient_internal(&recipient, suite, mode, cf_buf_slice(&enc), &kp_r,
                                                  cf_buf_slice(&info), &recv_in, &tr));
    const cf_hpke_trace *traces[2] = {&ts, &tr};
    for (int i = 0; i < 2; i++) {
        assert_buf_equal(traces[i]->shared_secret, traces[i]->shared_secret_len, &ss, "shared_secret");
        assert_buf_equal(traces[i]->key, traces[i]->key_len, &key, "key");
        if (base_nonce.len > 0) {
            assert_buf_equal(traces[i]->base_nonce, CF_AEAD_NONCE_LEN, &base_nonce, "base_nonce");
        }
        assert_buf_equal(traces[i]->exporter_secret, CF_SHA256_LEN, &exp_secret, "exporter_secret");
    }

    json_t *encs = json_object_get(v, "encryptions");
    size_t idx;
    json_t *e;
    if (suite.aead_id == CF_HPKE_AEAD_EXPORT_ONLY) {
        /* Export-only contexts neither seal nor open (RFC 9180 §5.3). */
        cf_buf out;
        cf_buf_init(&out, 0);
        uint8_t fake_ct[CF_AEAD_TAG_LEN + 1] = {0};
        assert_cf_error(cf_hpke_seal(&sender, CF_SLICE_EMPTY, cf_slice_cstr("x"), &out), CF_E_UNSUPPORTED);
        assert_cf_error(cf_hpke_open(&recipient, CF_SLICE_EMPTY, cf_slice_make(fake_ct, sizeof fake_ct), &out),
                        CF_E_UNSUPPORTED);
        assert_int_equal(out.len, 0);
        cf_buf_free(&out);
    }
    json_array_foreach(encs, idx, e)
    {
        cf_buf aad, pt, ct_want, nonce_want, ct, back;
        field_hex(e, "aad", &aad);
        field_hex(e, "pt", &pt);
        field_hex(e, "ct", &ct_want);
        field_hex(e, "nonce", &nonce_want);
        cf_buf_init(&ct, 0);
        cf_buf_init(&back, 0);
        /* nonce = base_nonce XOR I2OSP(seq, 12) */
        uint8_t nonce[12];
        memcpy(nonce, base_nonce.data, 12);
        for (int b = 0; b < 8; b++) {
            nonce[11 - b] ^= (uint8_t)(sender.seq >> (8 * b));
        }
        assert_buf_equal(nonce, 12, &nonce_want, "nonce");
        assert_int_equal(sender.seq, idx);
        assert_cf_ok(cf_hpke_seal(&sender, cf_buf_slice(&aad), cf_buf_slice(&pt), &ct));
        assert_buf_equal(ct.data, ct.len, &ct_want, "ciphertext");
        if (idx == 0) {
            /* A damaged ciphertext fails and does not advance seq. */
            ct.data[0] ^= 1;
            assert_cf_error(cf_hpke_open(&recipient, cf_buf_slice(&aad), cf_buf_slice(&ct), &back), CF_E_AUTH_FAILED);
            assert_int_equal(back.len, 0);
            assert_int_equal(recipient.seq, 0);
            ct.data[0] ^= 1;
        }
        assert_cf_ok(cf_hpke_open(&recipient, cf_buf_slice(&aad), cf_buf_slice(&ct), &back));
        assert_buf_equal(back.data, back.len, &pt, "plaintext");
        counts->encryptions++;
        cf_buf_free(&aad);
        cf_buf_free(&pt);
        cf_buf_free(&ct_want);
        cf_buf_free(&nonce_want);
        cf_buf_free(&ct);
        cf_buf_free(&back);
    }

    json_t *exports = json_object_get(v, "exports");
    json_array_foreach(exports, idx, e)
    {
        cf_buf context, want;
        field_hex(e, "exporter_context", &context);
        field_hex(e, "exported_value", &want);
        size_t len = (size_t)json_integer_value(json_object_get(e, "L"));
        uint8_t out[256];
        assert_true(len <= sizeof out);
        assert_cf_ok(cf_hpke_export(&sender, cf_buf_slice(&context), out, len));
        assert_buf_equal(out, len, &want, "exported value (sender)");
        assert_cf_ok(cf_hpke_export(&recipient, cf_buf_slice(&context), out, len));
        assert_buf_equal(out, len, &want, "exported value (recipient)");
        counts->exports++;
        cf_buf_free(&context);
        cf_buf_free(&want);
    }
    counts->suites++;
    counts->by_mode[mode]++;

    cf_hpke_ctx_free(&sender);
    cf_hpke_ctx_free(&recipient);
    cf_hpke_keypair_wipe(&kp_r);
    cf_hpke_keypair_wipe(&kp_e);
    if (auth_mode) {
        cf_hpke_keypair_wipe(&kp_s);
    }
    cf_buf *bufs[] = {&info, &ikm_r, &ikm_e, &sk_r, &pk_r, &enc_want, &ss, &key, &base_nonce, &exp_secret,
                      &psk, &psk_id, &ikm_s, &pk_s, &enc};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        cf_buf_free(bufs[i]);
    }
}

static void test_rfc9180_vectors(void **state)
{
    (void)state;
    json_t *all = cf_test_load_json_vector(HPKE_VECTORS);
    assert_true(json_is_array(all));
    vector_counts counts = {0};
    size_t i;
    json_t *v;
    json_array_foreach(all, i, v)
    {
        json_int_t kem = json_integer_value(json_object_get(v, "kem_id"));
        json_int_t kdf = json_integer_value(json_object_get(v, "kdf_id"));
        json_int_t aead = json_integer_value(json_object_get(v, "aead_id"));
        if (kem != CF_HPKE_KEM_X25519_SHA256 || kdf != CF_HPKE_KDF_HKDF_SHA256) {
            continue;
        }
        if (aead != 1 && aead != 2 && aead != 3 && aead != 0xFFFF) {
            continue;
        }
        run_one_vector(v, &counts);
    }
    json_decref(all);
    printf("hpke: %d suites (base %d, psk %d, auth %d, auth_psk %d), %d encryptions, %d exports\n", counts.suites,
           counts.by_mode[0], counts.by_mode[1], counts.by_mode[2], counts.by_mode[3], counts.encryptions,
           counts.exports);
    /* 4 AEADs x 4 modes; the file's totals for them. */
    assert_int_equal(counts.suites, 16);
    assert_int_equal(counts.encryptions, 3084);
    assert_int_equal(counts.exports, 48);
}

/* ---- API behaviour ---------------------------------------------------------------- */

static void test_single_shot_round_trip_and_tampering(void **state)
{
    (void)state;
    cf_hpke_suite suite = CF_HPKE_SUITE_DEFAULT;
    cf_hpke_keypair kp;
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &kp));
    cf_slice info = cf_slice_cstr("confide/v1 key upload");
    cf_slice aad = cf_slice_cstr("aad");
    cf_slice msg = cf_slice_cstr("inference secret K");
    cf_buf enc, ct, pt;
    cf_buf_init(&enc, 0);
    cf_buf_init(&ct, 0);
    cf_buf_init(&pt, 0);
    assert_cf_ok(cf_hpke_seal_base(suite, cf_hpke_keypair_public(&kp), info, aad, msg, &enc, &ct));
    assert_int_equal(enc.len, 32);
    assert_int_equal(ct.len, msg.len + 16);
    assert_cf_ok(cf_hpke_open_base(suite, cf_buf_slice(&enc), &kp, info, aad, cf_buf_slice(&ct), &pt));
    assert_true(cf_slice_eq(cf_buf_slice(&pt), msg));

    /* Each input matters; a failure leaves pt exactly as it was. */
    cf_buf_reset(&pt);
    assert_cf_ok(cf_buf_append_cstr(&pt, "prefix"));
    assert_cf_error(cf_hpke_open_base(suite, cf_buf_slice(&enc), &kp, cf_slice_cstr("other info"), aad,
                                      cf_buf_slice(&ct), &pt),
                    CF_E_AUTH_FAILED);
    assert_cf_error(cf_hpke_open_base(suite, cf_buf_slice(&enc), &kp, info, cf_slice_cstr("x"), cf_buf_slice(&ct), &pt),
                    CF_E_AUTH_FAILED);
    cf_hpke_suite suite128 = {CF_HPKE_KEM_X25519_SHA256, CF_HPKE_KDF_HKDF_SHA256, CF_HPKE_AEAD_AES_128_GCM};
    assert_cf_error(cf_hpke_open_base(suite128, cf_buf_slice(&enc), &kp, info, aad, cf_buf_slice(&ct), &pt),
                    CF_E_AUTH_FAILED);
    enc.data[5] ^= 1;
    assert_cf_error(cf_hpke_open_base(suite, cf_buf_slice(&enc), &kp, info, aad, cf_buf_slice(&ct), &pt),
                    CF_E_AUTH_FAILED);
    enc.data[5] ^= 1;
    ct.data[ct.len - 1] ^= 1;
    assert_cf_error(cf_hpke_open_base(suite, cf_buf_slice(&enc), &kp, info, aad, cf_buf_slice(&ct), &pt),
                    CF_E_AUTH_FAILED);
    assert_cf_error(cf_hpke_open_base(suite, cf_buf_slice(&enc), &kp, info, aad, cf_slice_make(ct.data, 15), &pt),
                    CF_E_AUTH_FAILED);
    /* enc of the wrong length, or a low-order point. */
    assert_cf_error(cf_hpke_open_base(suite, cf_slice_make(enc.data, 31), &kp, info, aad, cf_buf_slice(&ct), &pt),
                    CF_E_BAD_CIPHERTEXT);
    uint8_t zero_enc[32] = {0};
    assert_cf_error(cf_hpke_open_base(suite, cf_slice_make(zero_enc, 32), &kp, info, aad, cf_buf_slice(&ct), &pt),
                    CF_E_BAD_KEY);
    /* Another recipient key. */
    cf_hpke_keypair other;
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &other));
    ct.data[ct.len - 1] ^= 1;
    assert_cf_error(cf_hpke_open_base(suite, cf_buf_slice(&enc), &other, info, aad, cf_buf_slice(&ct), &pt),
                    CF_E_AUTH_FAILED);
    assert_int_equal(pt.len, 6);
    assert_memory_equal(pt.data, "prefix", 6);

    /* Two seals of the same message differ (fresh ephemeral key). */
    cf_buf enc2, ct2;
    cf_buf_init(&enc2, 0);
    cf_buf_init(&ct2, 0);
    assert_cf_ok(cf_hpke_seal_base(suite, cf_hpke_keypair_public(&kp), info, aad, msg, &enc2, &ct2));
    assert_false(cf_slice_eq(cf_buf_slice(&enc), cf_buf_slice(&enc2)));
    assert_false(cf_slice_eq(cf_buf_slice(&ct), cf_buf_slice(&ct2)));

    /* Bad recipient public key length. */
    cf_buf_reset(&enc2);
    cf_buf_reset(&ct2);
    assert_cf_error(cf_hpke_seal_base(suite, cf_slice_make(kp.public_key, 31), info, aad, msg, &enc2, &ct2),
                    CF_E_BAD_KEY);
    assert_int_equal(enc2.len, 0);
    assert_int_equal(ct2.len, 0);

    cf_hpke_keypair_wipe(&kp);
    cf_hpke_keypair_wipe(&other);
    cf_buf_free(&enc);
    cf_buf_free(&ct);
    cf_buf_free(&pt);
    cf_buf_free(&enc2);
    cf_buf_free(&ct2);
}

static void test_context_sequence_roles_and_limits(void **state)
{
    (void)state;
    cf_hpke_suite suite = CF_HPKE_SUITE_DEFAULT;
    cf_hpke_keypair kp;
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &kp));
    cf_hpke_ctx s, r;
    cf_buf enc, ct[3], pt;
    cf_buf_init(&enc, 0);
    cf_buf_init(&pt, 0);
    assert_cf_ok(cf_hpke_setup_sender(&s, suite, cf_hpke_keypair_public(&kp), CF_SLICE_EMPTY, &enc));
    assert_cf_ok(cf_hpke_setup_recipient(&r, suite, cf_buf_slice(&enc), &kp, CF_SLICE_EMPTY));
    for (int i = 0; i < 3; i++) {
        cf_buf_init(&ct[i], 0);
        assert_cf_ok(cf_hpke_seal(&s, CF_SLICE_EMPTY, cf_slice_cstr("event"), &ct[i]));
    }
    /* Out of order: message 1 at seq 0 fails; in order all open. */
    assert_cf_error(cf_hpke_open(&r, CF_SLICE_EMPTY, cf_buf_slice(&ct[1]), &pt), CF_E_AUTH_FAILED);
    for (int i = 0; i < 3; i++) {
        assert_cf_ok(cf_hpke_open(&r, CF_SLICE_EMPTY, cf_buf_slice(&ct[i]), &pt));
    }
    assert_int_equal(pt.len, 15);
    /* A replayed message fails at the next seq. */
    assert_cf_error(cf_hpke_open(&r, CF_SLICE_EMPTY, cf_buf_slice(&ct[2]), &pt), CF_E_AUTH_FAILED);
    /* Roles. */
    assert_cf_error(cf_hpke_seal(&r, CF_SLICE_EMPTY, CF_SLICE_EMPTY, &pt), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_hpke_open(&s, CF_SLICE_EMPTY, cf_buf_slice(&ct[0]), &pt), CF_E_INVALID_ARGUMENT);
    /* Exports agree, differ by context and length prefix. */
    uint8_t e1[32], e2[32], e3[16];
    assert_cf_ok(cf_hpke_export(&s, cf_slice_cstr("ctx"), e1, 32));
    assert_cf_ok(cf_hpke_export(&r, cf_slice_cstr("ctx"), e2, 32));
    assert_memory_equal(e1, e2, 32);
    assert_cf_ok(cf_hpke_export(&r, cf_slice_cstr("ctx2"), e2, 32));
    assert_memory_not_equal(e1, e2, 32);
    assert_cf_ok(cf_hpke_export(&r, cf_slice_cstr("ctx"), e3, 16));
    assert_memory_not_equal(e1, e3, 16);
    assert_cf_error(cf_hpke_export(&r, cf_slice_cstr("ctx"), e1, 0), CF_E_INVALID_ARGUMENT);

    /* Sequence limit: the last seq (2^64-1) is never used. */
    s.seq = UINT64_MAX - 1;
    cf_buf last;
    cf_buf_init(&last, 0);
    assert_cf_ok(cf_hpke_seal(&s, CF_SLICE_EMPTY, cf_slice_cstr("last"), &last));
    assert_int_equal(s.seq, UINT64_MAX);
    size_t before = last.len;
    assert_cf_error(cf_hpke_seal(&s, CF_SLICE_EMPTY, cf_slice_cstr("one too many"), &last), CF_E_LIMIT);
    assert_int_equal(last.len, before);
    r.seq = UINT64_MAX - 1;
    cf_buf_reset(&pt);
    assert_cf_ok(cf_hpke_open(&r, CF_SLICE_EMPTY, cf_buf_slice(&last), &pt));
    assert_cf_error(cf_hpke_open(&r, CF_SLICE_EMPTY, cf_buf_slice(&last), &pt), CF_E_LIMIT);

    /* A freed context is inert. */
    cf_hpke_ctx_free(&s);
    cf_hpke_ctx_free(&s);
    assert_cf_error(cf_hpke_seal(&s, CF_SLICE_EMPTY, CF_SLICE_EMPTY, &pt), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_hpke_export(&s, CF_SLICE_EMPTY, e1, 32), CF_E_INVALID_ARGUMENT);
    cf_hpke_ctx_free(&r);
    for (int i = 0; i < 3; i++) {
        cf_buf_free(&ct[i]);
    }
    cf_buf_free(&last);
    cf_buf_free(&enc);
    cf_buf_free(&pt);
    cf_hpke_keypair_wipe(&kp);
}

static void test_mode_inputs_and_suites_validated(void **state)
{
    (void)state;
    cf_hpke_keypair kp, ks;
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &kp));
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &ks));
    cf_hpke_suite suite = CF_HPKE_SUITE_DEFAULT;
    cf_hpke_ctx ctx;
    cf_buf enc;
    cf_buf_init(&enc, 0);
    cf_slice pk = cf_hpke_keypair_public(&kp);
    uint8_t psk[32] = {7};

    /* Unsupported ids name themselves. */
    cf_hpke_suite bad = suite;
    bad.kem_id = 0x0010;
    assert_cf_error(cf_hpke_setup_sender(&ctx, bad, pk, CF_SLICE_EMPTY, &enc), CF_E_UNSUPPORTED);
    assert_non_null(strstr(cf_error_last()->detail, "0x0010"));
    bad = suite;
    bad.kdf_id = 2;
    assert_cf_error(cf_hpke_suite_check(bad), CF_E_UNSUPPORTED);
    bad = suite;
    bad.aead_id = 4;
    assert_cf_error(cf_hpke_suite_check(bad), CF_E_UNSUPPORTED);
    assert_cf_ok(cf_hpke_suite_check(suite));

    cf_hpke_mode_inputs in = {0};
    /* psk mode without a psk; psk without psk_id; a short psk. */
    assert_cf_error(cf_hpke_setup_sender_mode(&ctx, suite, CF_HPKE_MODE_PSK, pk, CF_SLICE_EMPTY, &in, &enc),
                    CF_E_INVALID_ARGUMENT);
    in.psk = cf_slice_make(psk, 32);
    assert_cf_error(cf_hpke_setup_sender_mode(&ctx, suite, CF_HPKE_MODE_PSK, pk, CF_SLICE_EMPTY, &in, &enc),
                    CF_E_INVALID_ARGUMENT);
    in.psk_id = cf_slice_cstr("id");
    /* ... a psk in base mode. */
    assert_cf_error(cf_hpke_setup_sender_mode(&ctx, suite, CF_HPKE_MODE_BASE, pk, CF_SLICE_EMPTY, &in, &enc),
                    CF_E_INVALID_ARGUMENT);
    in.psk = cf_slice_make(psk, 16);
    assert_cf_error(cf_hpke_setup_sender_mode(&ctx, suite, CF_HPKE_MODE_PSK, pk, CF_SLICE_EMPTY, &in, &enc),
                    CF_E_INVALID_ARGUMENT);
    in.psk = cf_slice_make(psk, 32);
    /* auth without a sender key, and an unknown mode. */
    assert_cf_error(cf_hpke_setup_sender_mode(&ctx, suite, CF_HPKE_MODE_AUTH_PSK, pk, CF_SLICE_EMPTY, &in, &enc),
                    CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_hpke_setup_sender_mode(&ctx, suite, (cf_hpke_mode)7, pk, CF_SLICE_EMPTY, &in, &enc),
                    CF_E_INVALID_ARGUMENT);
    assert_int_equal(enc.len, 0);
    /* Oversized info. */
    uint8_t *big = calloc(1, CF_HPKE_INPUT_MAX + 1);
    assert_non_null(big);
    assert_cf_error(cf_hpke_setup_sender(&ctx, suite, pk, cf_slice_make(big, CF_HPKE_INPUT_MAX + 1), &enc),
                    CF_E_TOO_LARGE);
    free(big);

    /* auth_psk round trip; the recipient needs the right sender key. */
    in.sender_keypair = &ks;
    assert_cf_ok(cf_hpke_setup_sender_mode(&ctx, suite, CF_HPKE_MODE_AUTH_PSK, pk, cf_slice_cstr("i"), &in, &enc));
    cf_buf ct, pt;
    cf_buf_init(&ct, 0);
    cf_buf_init(&pt, 0);
    assert_cf_ok(cf_hpke_seal(&ctx, CF_SLICE_EMPTY, cf_slice_cstr("hello"), &ct));
    cf_hpke_ctx_free(&ctx);
    cf_hpke_mode_inputs rin = {in.psk, in.psk_id, NULL, cf_hpke_keypair_public(&ks)};
    assert_cf_ok(cf_hpke_setup_recipient_mode(&ctx, suite, CF_HPKE_MODE_AUTH_PSK, cf_buf_slice(&enc), &kp,
                                              cf_slice_cstr("i"), &rin));
    assert_cf_ok(cf_hpke_open(&ctx, CF_SLICE_EMPTY, cf_buf_slice(&ct), &pt));
    cf_hpke_ctx_free(&ctx);
    rin.sender_public_key = pk; /* not the sender */
    assert_cf_ok(cf_hpke_setup_recipient_mode(&ctx, suite, CF_HPKE_MODE_AUTH_PSK, cf_buf_slice(&enc), &kp,
                                              cf_slice_cstr("i"), &rin));
    assert_cf_error(cf_hpke_open(&ctx, CF_SLICE_EMPTY, cf_buf_slice(&ct), &pt), CF_E_AUTH_FAILED);
    cf_hpke_ctx_free(&ctx);
    /* The recipient must not pass a sender key pair. */
    rin.sender_keypair = &ks;
    assert_cf_error(cf_hpke_setup_recipient_mode(&ctx, suite, CF_HPKE_MODE_AUTH_PSK, cf_buf_slice(&enc), &kp,
                                                 cf_slice_cstr("i"), &rin),
                    CF_E_INVALID_ARGUMENT);

    /* Key pairs: load from the private key, reject wrong sizes/KEMs. */
    cf_hpke_keypair loaded;
    assert_cf_ok(cf_hpke_keypair_from_private(CF_HPKE_KEM_X25519_SHA256, cf_hpke_keypair_private(&kp), &loaded));
    assert_memory_equal(loaded.public_key, kp.public_key, 32);
    assert_cf_error(cf_hpke_keypair_from_private(CF_HPKE_KEM_X25519_SHA256, cf_slice_make(kp.private_key, 31), &loaded),
                    CF_E_BAD_KEY);
    assert_cf_error(cf_hpke_keypair_generate(0x0041, &loaded), CF_E_UNSUPPORTED);
    assert_cf_error(cf_hpke_keypair_derive(CF_HPKE_KEM_X25519_SHA256, cf_slice_cstr("short"), &loaded),
                    CF_E_INVALID_ARGUMENT);
    assert_int_equal(cf_hpke_kem_enc_len(cf_hpke_kem_by_id(CF_HPKE_KEM_X25519_SHA256)), 32);
    assert_int_equal(cf_hpke_kem_public_key_len(cf_hpke_kem_by_id(CF_HPKE_KEM_X25519_SHA256)), 32);
    assert_int_equal(cf_hpke_kem_private_key_len(cf_hpke_kem_by_id(CF_HPKE_KEM_X25519_SHA256)), 32);
    assert_int_equal(cf_hpke_kem_id(cf_hpke_kem_by_id(CF_HPKE_KEM_X25519_SHA256)), 0x20);
    assert_null(cf_hpke_kem_by_id(0x0012));
    cf_hpke_keypair_wipe(&loaded);
    uint8_t zero[sizeof loaded] = {0};
    assert_memory_equal(&loaded, zero, sizeof loaded);

    cf_buf_free(&enc);
    cf_buf_free(&ct);
    cf_buf_free(&pt);
    cf_hpke_keypair_wipe(&kp);
    cf_hpke_keypair_wipe(&ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc9180_vectors),
        cmocka_unit_test(test_single_shot_round_trip_and_tampering),
        cmocka_unit_test(test_context_sequence_roles_and_limits),
        cmocka_unit_test(test_mode_inputs_and_suites_validated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
