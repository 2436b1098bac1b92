/*
 * hpke_internal.h — the KEM interface behind hpke.h, and test-only entry
 * points. Not part of the public API: only lib/crypto and the HPKE tests
 * include it.
 *
 * Adding a KEM (e.g. X-Wing): implement the five functions below for it,
 * add a `const cf_hpke_kem` table to the list in hpke.c, and raise the
 * CF_HPKE_MAX_* sizes in hpke.h. Nothing else changes.
 */
#ifndef CONFIDE_HPKE_INTERNAL_H
#define CONFIDE_HPKE_INTERNAL_H

#include "confide/hpke.h"

struct cf_hpke_kem {
    uint16_t id;
    const char *name;
    size_t enc_len;           /* Nenc */
    size_t public_key_len;    /* Npk */
    size_t private_key_len;   /* Nsk */
    size_t shared_secret_len; /* Nsecret */
    bool supports_auth;       /* AuthEncap/AuthDecap exist (DHKEMs only) */
    /* GenerateKeyPair: fresh randomness. */
    CF_RESULT (*generate_key_pair)(const cf_hpke_kem *kem, uint8_t *sk, uint8_t *pk);
    /* DeriveKeyPair(ikm), RFC 9180 §7.1.3. */
    CF_RESULT (*derive_key_pair)(const cf_hpke_kem *kem, cf_slice ikm, uint8_t *sk, uint8_t *pk);
    /* DeserializePrivateKey + public key: validates sk, computes pk. */
    CF_RESULT (*public_from_private)(const cf_hpke_kem *kem, const uint8_t *sk, uint8_t *pk);
    /* Encap / AuthEncap (sender != NULL). ikm_e empty: fresh ephemeral key;
     * non-empty: DeriveKeyPair(ikm_e) (RFC test vectors only). Writes
     * Nsecret bytes to shared_secret and Nenc bytes to enc. */
    CF_RESULT (*encap)(const cf_hpke_kem *kem, cf_slice pk_r, const cf_hpke_keypair *sender, cf_slice ikm_e,
                       uint8_t *shared_secret, uint8_t *enc);
    /* Decap / AuthDecap (pk_s non-empty). */
    CF_RESULT (*decap)(const cf_hpke_kem *kem, cf_slice enc, const cf_hpke_keypair *kp_r, cf_slice pk_s,
                       uint8_t *shared_secret);
};

/* Every intermediate value of the key schedule, for the RFC vectors. */
typedef struct cf_hpke_trace {
    uint8_t shared_secret[CF_HPKE_MAX_SHARED_SECRET_LEN];
    size_t shared_secret_len;
    uint8_t key[CF_AEAD_MAX_KEY_LEN];
    size_t key_len;
    uint8_t base_nonce[CF_AEAD_NONCE_LEN];
    uint8_t exporter_secret[CF_SHA256_LEN];
} cf_hpke_trace;

/* Setup with a deterministic ephemeral key (ikm_e) and/or a trace of the
 * key schedule (trace may be NULL). Tests only: a fixed ikm_e in
 * production would reuse the ephemeral key. */
CF_RESULT cf_hpke_setup_sender_internal(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_hpke_mode mode, cf_slice pk_r,
                                        cf_slice info, const cf_hpke_mode_inputs *mode_inputs, cf_slice ikm_e,
                                        cf_buf *enc, cf_hpke_trace *trace);
CF_RESULT cf_hpke_setup_recipient_internal(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_hpke_mode mode, cf_slice enc,
                                           const cf_hpke_keypair *kp_r, cf_slice info,
                                           const cf_hpke_mode_inputs *mode_inputs, cf_hpke_trace *trace);

#endif /* CONFIDE_HPKE_INTERNAL_H */
