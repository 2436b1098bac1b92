/*
 * hpke.h — Hybrid Public Key Encryption, RFC 9180, on OpenSSL 3.0 primitives.
 *
 * Used for everything confide wraps to an attested key: the client's
 * inference secret sealed to the attestation service (AS), and each secret
 * the AS hands to a worker (DESIGN §3, §4.1). OpenSSL 3.0 has no HPKE, so it
 * is composed here from crypto.h (X25519, HKDF-SHA256, AEAD) and checked
 * against every RFC 9180 test vector of the supported suites.
 *
 * Supported:
 *   KEM   0x0020 DHKEM(X25519, HKDF-SHA256)
 *   KDF   0x0001 HKDF-SHA256
 *   AEAD  0x0001 AES-128-GCM, 0x0002 AES-256-GCM (confide's choice),
 *         0x0003 ChaCha20-Poly1305, 0xFFFF export-only
 *   modes base, psk, auth, auth_psk (RFC 9180 §5.1)
 *
 * The KEM is a pluggable interface. Internally a KEM is a table of sizes
 * (Nenc, Npk, Nsk, Nsecret) and functions (generate / derive key pair,
 * public key from private key, encap, decap, optional auth variants),
 * looked up by its RFC 9180 KEM id (lib/crypto/hpke_internal.h). Callers only
 * ever pass a suite (three ids), key pairs and byte strings whose lengths
 * come from the KEM, so adding a KEM — e.g. X-Wing (X25519 + ML-KEM-768,
 * draft-connolly-cfrg-xwing-kem, Nenc 1120, Npk 1216) — means adding one
 * table entry and raising the CF_HPKE_MAX_* sizes below; no caller changes.
 *
 * Rules this module guarantees:
 *  - Open never releases unauthenticated plaintext: the output buffer grows
 *    only after the tag verified; on failure it is unchanged.
 *  - Sequence numbers (RFC 9180 §5.2): nonce = base_nonce XOR seq; seq only
 *    advances on success; when it would wrap (2^64-1 messages, stricter than
 *    the RFC's 2^96-1) the context refuses to seal or open (CF_E_LIMIT).
 *  - A sender context only seals, a recipient context only opens; export
 *    works on both. An export-only suite refuses seal/open (CF_E_UNSUPPORTED).
 *  - Secrets (private keys, shared secrets, key schedule, exporter secret)
 *    are wiped on every exit path; contexts and key pairs wipe when freed.
 *  - The ephemeral key is always fresh randomness; deterministic encap for
 *    the RFC vectors exists only behind lib/crypto/hpke_internal.h.
 *  - Inputs are bounded: info, psk, psk_id and exporter_context up to
 *    CF_HPKE_INPUT_MAX bytes; psk at least 32 bytes (RFC 9180 §5.1.2).
 *
 * Typical use:
 *   sender:    cf_hpke_seal_base(suite, pk_r, info, aad, pt, &enc, &ct)
 *   recipient: cf_hpke_open_base(suite, enc, &kp_r, info, aad, ct, &pt)
 * or, for several messages or key export, set up a context with
 * cf_hpke_setup_{sender,recipient} and call cf_hpke_seal / cf_hpke_open /
 * cf_hpke_export, then cf_hpke_ctx_free.
 */
#ifndef CONFIDE_HPKE_H
#define CONFIDE_HPKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/crypto.h"
#include "confide/result.h"
#include "confide/slice.h"

/* RFC 9180 §7 identifiers. */
#define CF_HPKE_KEM_X25519_SHA256 0x0020
#define CF_HPKE_KDF_HKDF_SHA256 0x0001
#define CF_HPKE_AEAD_AES_128_GCM 0x0001
#define CF_HPKE_AEAD_AES_256_GCM 0x0002
#define CF_HPKE_AEAD_CHACHA20_POLY1305 0x0003
#define CF_HPKE_AEAD_EXPORT_ONLY 0xFFFF

/* Upper bounds over every supported KEM (sizes of fixed buffers). */
#define CF_HPKE_MAX_PUBLIC_KEY_LEN 32
#define CF_HPKE_MAX_PRIVATE_KEY_LEN 32
#define CF_HPKE_MAX_ENC_LEN 32
#define CF_HPKE_MAX_SHARED_SECRET_LEN 32
/* Bound on info, psk, psk_id, exporter_context and KEM ikm. */
#define CF_HPKE_INPUT_MAX 1024
/* RFC 9180 §5.1.2: a PSK must have at least 32 bytes of entropy. */
#define CF_HPKE_PSK_MIN_LEN 32

typedef enum cf_hpke_mode {
    CF_HPKE_MODE_BASE = 0x00,
    CF_HPKE_MODE_PSK = 0x01,
    CF_HPKE_MODE_AUTH = 0x02,
    CF_HPKE_MODE_AUTH_PSK = 0x03,
} cf_hpke_mode;

typedef struct cf_hpke_suite {
    uint16_t kem_id;
    uint16_t kdf_id;
    uint16_t aead_id;
} cf_hpke_suite;

/* confide's suite (DESIGN §4.1): DHKEM(X25519), HKDF-SHA256, AES-256-GCM. */
#define CF_HPKE_SUITE_DEFAULT                                                                                          \
    ((cf_hpke_suite){CF_HPKE_KEM_X25519_SHA256, CF_HPKE_KDF_HKDF_SHA256, CF_HPKE_AEAD_AES_256_GCM})

/* Fails with CF_E_UNSUPPORTED (detail names the id) for unknown ids. */
CF_RESULT cf_hpke_suite_check(cf_hpke_suite suite);

/* ---- KEM ------------------------------------------------------------------- */

/* Opaque KEM description (see the comment at the top). */
typedef struct cf_hpke_kem cf_hpke_kem;

/* The KEM for an id, or NULL if unsupported. */
const cf_hpke_kem *cf_hpke_kem_by_id(uint16_t kem_id);
uint16_t cf_hpke_kem_id(const cf_hpke_kem *kem);
size_t cf_hpke_kem_enc_len(const cf_hpke_kem *kem);
size_t cf_hpke_kem_public_key_len(const cf_hpke_kem *kem);
size_t cf_hpke_kem_private_key_len(const cf_hpke_kem *kem);

/* A KEM key pair (recipient key of the AS/worker, or an auth-mode sender
 * key). Wipe with cf_hpke_keypair_wipe. */
typedef struct cf_hpke_keypair {
    const cf_hpke_kem *kem;
    uint8_t private_key[CF_HPKE_MAX_PRIVATE_KEY_LEN];
    uint8_t public_key[CF_HPKE_MAX_PUBLIC_KEY_LEN];
} cf_hpke_keypair;

/* Fresh key pair from the OS CSPRNG. */
CF_RESULT cf_hpke_keypair_generate(uint16_t kem_id, cf_hpke_keypair *out);
/* DeriveKeyPair(ikm) (RFC 9180 §7.1.3): deterministic keys from a seed of
 * at least Nsk bytes of entropy (e.g. sealed state). */
CF_RESULT cf_hpke_keypair_derive(uint16_t kem_id, cf_slice ikm, cf_hpke_keypair *out);
/* Load a serialised private key (SerializePrivateKey form); the public key
 * is recomputed. */
CF_RESULT cf_hpke_keypair_from_private(uint16_t kem_id, cf_slice private_key, cf_hpke_keypair *out);
/* The serialised public key (borrowed from kp). */
cf_slice cf_hpke_keypair_public(const cf_hpke_keypair *kp);
/* The serialised private key (borrowed; secret — store it sealed). */
cf_slice cf_hpke_keypair_private(const cf_hpke_keypair *kp);
void cf_hpke_keypair_wipe(cf_hpke_keypair *kp);

/* ---- Contexts (RFC 9180 §5) ------------------------------------------------------ */

typedef enum cf_hpke_role { CF_HPKE_ROLE_NONE = 0, CF_HPKE_ROLE_SENDER = 1, CF_HPKE_ROLE_RECIPIENT = 2 } cf_hpke_role;

/* A context owns OpenSSL state and a sequence number: never copy one (the
 * copy would encrypt under the same nonces, and both would free the same
 * cipher contexts); pass it by pointer. */
typedef struct cf_hpke_ctx {
    cf_hpke_suite suite;
    cf_hpke_role role;
    bool has_aead;  /* false for export-only */
    cf_aead aead;
    uint8_t base_nonce[CF_AEAD_NONCE_LEN];
    uint64_t seq;
    uint8_t exporter_secret[CF_SHA256_LEN];
} cf_hpke_ctx;

/* Mode inputs beyond base mode. Leave fields empty/NULL that the mode does
 * not use; inconsistent combinations are rejected (RFC 9180 §5.1
 * VerifyPSKInputs, and no sender key outside the auth modes). */
typedef struct cf_hpke_mode_inputs {
    cf_slice psk;    /* psk, auth_psk: >= CF_HPKE_PSK_MIN_LEN bytes */
    cf_slice psk_id; /* psk, auth_psk: non-empty */
    /* auth, auth_psk, sender side: the sender's own key pair. */
    const cf_hpke_keypair *sender_keypair;
    /* auth, auth_psk, recipient side: the sender's public key. */
    cf_slice sender_public_key;
} cf_hpke_mode_inputs;

/* SetupBaseS: encapsulates to pk_r, appends enc (Nenc bytes) to `enc`. */
CF_RESULT cf_hpke_setup_sender(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_slice pk_r, cf_slice info, cf_buf *enc);
/* SetupBaseR. */
CF_RESULT cf_hpke_setup_recipient(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_slice enc, const cf_hpke_keypair *kp_r,
                                  cf_slice info);
/* Setup{PSK,Auth,AuthPSK}{S,R}; `mode_inputs` may be NULL for base mode. */
CF_RESULT cf_hpke_setup_sender_mode(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_hpke_mode mode, cf_slice pk_r,
                                    cf_slice info, const cf_hpke_mode_inputs *mode_inputs, cf_buf *enc);
CF_RESULT cf_hpke_setup_recipient_mode(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_hpke_mode mode, cf_slice enc,
                                       const cf_hpke_keypair *kp_r, cf_slice info,
                                       const cf_hpke_mode_inputs *mode_inputs);

/* ContextS.Seal: appends ciphertext||tag (pt.len + 16 bytes) to ct. */
CF_RESULT cf_hpke_seal(cf_hpke_ctx *ctx, cf_slice aad, cf_slice pt, cf_buf *ct);
/* ContextR.Open: appends the plaintext to pt only if it authenticates. */
CF_RESULT cf_hpke_open(cf_hpke_ctx *ctx, cf_slice aad, cf_slice ct, cf_buf *pt);
/* Context.Export (RFC 9180 §5.3): out_len <= 255*32 bytes. */
CF_RESULT cf_hpke_export(const cf_hpke_ctx *ctx, cf_slice exporter_context, uint8_t *out, size_t out_len);
/* Wipes and frees; safe on a zeroed or already freed context. */
void cf_hpke_ctx_free(cf_hpke_ctx *ctx);

/* ---- Single-shot (RFC 9180 §6.1), base mode ------------------------------------ */

/* Appends enc to `enc` and ciphertext||tag to `ct`. */
CF_RESULT cf_hpke_seal_base(cf_hpke_suite suite, cf_slice pk_r, cf_slice info, cf_slice aad, cf_slice pt,
                            cf_buf *enc, cf_buf *ct);
/* Appends the plaintext to `pt` only if it authenticates. */
CF_RESULT cf_hpke_open_base(cf_hpke_suite suite, cf_slice enc, const cf_hpke_keypair *kp_r, cf_slice info,
                            cf_slice aad, cf_slice ct, cf_buf *pt);

#endif /* CONFIDE_HPKE_H */
