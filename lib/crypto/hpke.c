/* hpke.c — RFC 9180 HPKE: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 key
 * schedule, AEAD contexts with sequence numbers, secret export (hpke.h). */
#include <string.h>

#include "confide/crypto.h"
#include "confide/hpke.h"
#include "crypto/hpke_internal.h"
#include "crypto/internal.h"

/* ---- Labeled HKDF (RFC 9180 §4) ---------------------------------------------- */

#define HPKE_VERSION_LABEL "HPKE-v1"
#define HPKE_VERSION_LABEL_LEN 7
#define SUITE_ID_MAX 10   /* "HPKE" || kem || kdf || aead */
#define LABEL_MAX 16      /* longest: "shared_secret" */
#define LABELED_PREFIX_MAX (2 + HPKE_VERSION_LABEL_LEN + SUITE_ID_MAX + LABEL_MAX)
/* Largest labeled input: key_schedule_context (65) or a bounded user input,
 * or a DH concatenation for AuthEncap (64). */
#define LABELED_INPUT_MAX (LABELED_PREFIX_MAX + CF_HPKE_INPUT_MAX)

typedef struct suite_id {
    uint8_t bytes[SUITE_ID_MAX];
    size_t len;
} suite_id;

static suite_id kem_suite_id(uint16_t kem_id)
{
    suite_id s = {{'K', 'E', 'M', (uint8_t)(kem_id >> 8), (uint8_t)kem_id}, 5};
    return s;
}

static suite_id hpke_suite_id(cf_hpke_suite suite)
{
    suite_id s = {{'H', 'P', 'K', 'E', (uint8_t)(suite.kem_id >> 8), (uint8_t)suite.kem_id,
                   (uint8_t)(suite.kdf_id >> 8), (uint8_t)suite.kdf_id, (uint8_t)(suite.aead_id >> 8),
                   (uint8_t)suite.aead_id},
                  10};
    return s;
}

/* Append "HPKE-v1" || suite_id || label || input to buf at *n (RFC 9180 §4:
 * the common tail of both labeled functions). buf holds LABELED_INPUT_MAX. */
static CF_RESULT labeled_input(const suite_id *sid, const char *label, cf_slice input, uint8_t *buf, size_t *n)
{
    size_t label_len = strlen(label);
    CF_ENSURE(label_len <= LABEL_MAX, CF_E_INTERNAL);
    CF_ENSURE_MSG(input.len <= CF_HPKE_INPUT_MAX, CF_E_TOO_LARGE, "HPKE input longer than CF_HPKE_INPUT_MAX");
    memcpy(buf + *n, HPKE_VERSION_LABEL, HPKE_VERSION_LABEL_LEN);
    *n += HPKE_VERSION_LABEL_LEN;
    memcpy(buf + *n, sid->bytes, sid->len);
    *n += sid->len;
    memcpy(buf + *n, label, label_len);
    *n += label_len;
    if (input.len > 0) {
        memcpy(buf + *n, input.ptr, input.len);
        *n += input.len;
    }
    return CF_OK;
}

/* LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1"||suite_id||label||ikm) */
static CF_RESULT labeled_extract(const suite_id *sid, cf_slice salt, const char *label, cf_slice ikm,
                                 uint8_t out[CF_SHA256_LEN])
{
    uint8_t buf[LABELED_INPUT_MAX];
    size_t n = 0;
    CF_GUARD(labeled_input(sid, label, ikm, buf, &n));
    cf_result result = cf_hkdf_sha256_extract(salt, cf_slice_make(buf, n), out);
    cf_wipe(buf, n); /* ikm may be a DH output or a PSK */
    return result;
}

/* LabeledExpand(prk, label, info, L) =
 *   Expand(prk, I2OSP(L, 2)||"HPKE-v1"||suite_id||label||info, L) */
static CF_RESULT labeled_expand(const suite_id *sid, cf_slice prk, const char *label, cf_slice info, uint8_t *out,
                                size_t out_len)
{
    CF_ENSURE(out_len <= 0xFFFF, CF_E_INVALID_ARGUMENT);
    uint8_t buf[LABELED_INPUT_MAX];
    size_t n = 0;
    buf[n++] = (uint8_t)(out_len >> 8);
    buf[n++] = (uint8_t)out_len;
    CF_GUARD(labeled_input(sid, label, info, buf, &n));
    cf_result result = cf_hkdf_sha256_expand(prk, cf_slice_make(buf, n), out, out_len);
    cf_wipe(buf, n);
    return result;
}

/* ---- DHKEM(X25519, HKDF-SHA256), RFC 9180 §4.1 ----------------------------------- */

#define X25519_NSECRET 32

/* ExtractAndExpand(dh, kem_context) */
static CF_RESULT dhkem_extract_and_expand(const cf_hpke_kem *kem, cf_slice dh, cf_slice kem_context,
                                          uint8_t *shared_secret)
{
    suite_id sid = kem_suite_id(kem->id);
    cf_result result = CF_OK;
    uint8_t eae_prk[CF_SHA256_LEN];
    CF_GUARD_OUT(labeled_extract(&sid, CF_SLICE_EMPTY, "eae_prk", dh, eae_prk));
    CF_GUARD_OUT(labeled_expand(&sid, cf_slice_make(eae_prk, sizeof eae_prk), "shared_secret", kem_context,
                                shared_secret, kem->shared_secret_len));
out:
    cf_wipe(eae_prk, sizeof eae_prk);
    return result;
}

static CF_RESULT x25519_generate(const cf_hpke_kem *kem, uint8_t *sk, uint8_t *pk)
{
    (void)kem;
    return cf_x25519_keygen(sk, pk);
}

/* RFC 9180 §7.1.3: for X25519 the derived sk is used as is (clamping
 * happens in the scalar multiplication). */
static CF_RESULT x25519_derive(const cf_hpke_kem *kem, cf_slice ikm, uint8_t *sk, uint8_t *pk)
{
    suite_id sid = kem_suite_id(kem->id);
    cf_result result = CF_OK;
    uint8_t dkp_prk[CF_SHA256_LEN];
    CF_GUARD_OUT(labeled_extract(&sid, CF_SLICE_EMPTY, "dkp_prk", ikm, dkp_prk));
    CF_GUARD_OUT(labeled_expand(&sid, cf_slice_make(dkp_prk, sizeof dkp_prk), "sk", CF_SLICE_EMPTY, sk,
                                kem->private_key_len));
    CF_GUARD_OUT(cf_x25519_public(sk, pk));
out:
    cf_wipe(dkp_prk, sizeof dkp_prk);
    if (cf_is_error(result)) {
        cf_wipe(sk, kem->private_key_len);
    }
    return result;
}

static CF_RESULT x25519_public_from_private(const cf_hpke_kem *kem, const uint8_t *sk, uint8_t *pk)
{
    (void)kem;
    return cf_x25519_public(sk, pk);
}

static CF_RESULT x25519_encap(const cf_hpke_kem *kem, cf_slice pk_r, const cf_hpke_keypair *sender, cf_slice ikm_e,
                              uint8_t *shared_secret, uint8_t *enc)
{
    CF_ENSURE_MSG(pk_r.ptr != NULL && pk_r.len == CF_X25519_LEN, CF_E_BAD_KEY,
                  "X25519 recipient public key must be 32 bytes");
    cf_result result = CF_OK;
    uint8_t sk_e[CF_X25519_LEN];
    uint8_t dh[2 * CF_X25519_LEN];
    uint8_t kem_context[3 * CF_X25519_LEN];
    size_t dh_len = CF_X25519_LEN, ctx_len = 2 * CF_X25519_LEN;

    if (ikm_e.len > 0) {
        CF_GUARD_OUT(x25519_derive(kem, ikm_e, sk_e, enc));
    } else {
        CF_GUARD_OUT(cf_x25519_keygen(sk_e, enc));
    }
    CF_GUARD_OUT(cf_x25519_with_public(sk_e, enc, pk_r.ptr, dh));
    memcpy(kem_context, enc, CF_X25519_LEN);
    memcpy(kem_context + CF_X25519_LEN, pk_r.ptr, CF_X25519_LEN);
    if (sender != NULL) {
        /* AuthEncap: dh = DH(skE, pkR) || DH(skS, pkR);
         * kem_context = enc || pkRm || pkSm. */
        CF_GUARD_OUT(
            cf_x25519_with_public(sender->private_key, sender->public_key, pk_r.ptr, dh + CF_X25519_LEN));
        memcpy(kem_context + 2 * CF_X25519_LEN, sender->public_key, CF_X25519_LEN);
        dh_len += CF_X25519_LEN;
        ctx_len += CF_X25519_LEN;
    }
    CF_GUARD_OUT(dhkem_extract_and_expand(kem, cf_slice_make(dh, dh_len), cf_slice_make(kem_context, ctx_len),
                                          shared_secret));
out:
    cf_wipe(sk_e, sizeof sk_e);
    cf_wipe(dh, sizeof dh);
    if (cf_is_error(result)) {
        cf_wipe(shared_secret, kem->shared_secret_len);
    }
    return result;
}

static CF_RESULT x25519_decap(const cf_hpke_kem *kem, cf_slice enc, const cf_hpke_keypair *kp_r, cf_slice pk_s,
                              uint8_t *shared_secret)
{
    CF_ENSURE_MSG(enc.ptr != NULL && enc.len == CF_X25519_LEN, CF_E_BAD_CIPHERTEXT,
                  "HPKE enc must be 32 bytes for DHKEM(X25519)");
    CF_ENSURE_MSG(pk_s.len == 0 || (pk_s.ptr != NULL && pk_s.len == CF_X25519_LEN), CF_E_BAD_KEY,
                  "X25519 sender public key must be 32 bytes");
    cf_result result = CF_OK;
    uint8_t dh[2 * CF_X25519_LEN];
    uint8_t kem_context[3 * CF_X25519_LEN];
    size_t dh_len = CF_X25519_LEN, ctx_len = 2 * CF_X25519_LEN;

    /* Any 32 bytes deserialise as an X25519 point; a low-order one gives a
     * zero DH output, which cf_x25519 rejects (RFC 9180 §7.1.4). */
    CF_GUARD_OUT(cf_x25519_with_public(kp_r->private_key, kp_r->public_key, enc.ptr, dh));
    memcpy(kem_context, enc.ptr, CF_X25519_LEN);
    memcpy(kem_context + CF_X25519_LEN, kp_r->public_key, CF_X25519_LEN);
    if (pk_s.len > 0) {
        CF_GUARD_OUT(
            cf_x25519_with_public(kp_r->private_key, kp_r->public_key, pk_s.ptr, dh + CF_X25519_LEN));
        memcpy(kem_context + 2 * CF_X25519_LEN, pk_s.ptr, CF_X25519_LEN);
        dh_len += CF_X25519_LEN;
        ctx_len += CF_X25519_LEN;
    }
    CF_GUARD_OUT(dhkem_extract_and_expand(kem, cf_slice_make(dh, dh_len), cf_slice_make(kem_context, ctx_len),
                                          shared_secret));
out:
    cf_wipe(dh, sizeof dh);
    if (cf_is_error(result)) {
        cf_wipe(shared_secret, kem->shared_secret_len);
        cf_error_add_context("HPKE decap");
    }
    return result;
}

static const cf_hpke_kem kem_x25519_sha256 = {
    .id = CF_HPKE_KEM_X25519_SHA256,
    .name = "DHKEM(X25519, HKDF-SHA256)",
    .enc_len = CF_X25519_LEN,
    .public_key_len = CF_X25519_LEN,
    .private_key_len = CF_X25519_LEN,
    .shared_secret_len = X25519_NSECRET,
    .supports_auth = true,
    .generate_key_pair = x25519_generate,
    .derive_key_pair = x25519_derive,
    .public_from_private = x25519_public_from_private,
    .encap = x25519_encap,
    .decap = x25519_decap,
};

/* The supported KEMs, by id. A new KEM is one more entry. */
static const cf_hpke_kem *const kems[] = {&kem_x25519_sha256};

const cf_hpke_kem *cf_hpke_kem_by_id(uint16_t kem_id)
{
    for (size_t i = 0; i < sizeof kems / sizeof kems[0]; i++) {
        if (kems[i]->id == kem_id) {
            return kems[i];
        }
    }
    return NULL;
}

uint16_t cf_hpke_kem_id(const cf_hpke_kem *kem) { return kem ? kem->id : 0; }
size_t cf_hpke_kem_enc_len(const cf_hpke_kem *kem) { return kem ? kem->enc_len : 0; }
size_t cf_hpke_kem_public_key_len(const cf_hpke_kem *kem) { return kem ? kem->public_key_len : 0; }
size_t cf_hpke_kem_private_key_len(const cf_hpke_kem *kem) { return kem ? kem->private_key_len : 0; }

/* ---- Key pairs ----------------------------------------------------------------------- */

static CF_RESULT kem_for(uint16_t kem_id, const cf_hpke_kem **out)
{
    *out = cf_hpke_kem_by_id(kem_id);
    if (*out == NULL) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED, "HPKE KEM 0x%04x not supported", kem_id);
    }
    return CF_OK;
}

CF_RESULT cf_hpke_keypair_generate(uint16_t kem_id, cf_hpke_keypair *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    const cf_hpke_kem *kem = NULL;
    CF_GUARD(kem_for(kem_id, &kem));
    if (cf_is_error(kem->generate_key_pair(kem, out->private_key, out->public_key))) {
        cf_hpke_keypair_wipe(out);
        return CF_ERROR;
    }
    out->kem = kem;
    return CF_OK;
}

CF_RESULT cf_hpke_keypair_derive(uint16_t kem_id, cf_slice ikm, cf_hpke_keypair *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    const cf_hpke_kem *kem = NULL;
    CF_GUARD(kem_for(kem_id, &kem));
    /* RFC 9180 §7.1.3: ikm SHOULD have at least Nsk bytes of entropy. */
    CF_ENSURE_MSG(ikm.ptr != NULL && ikm.len >= kem->private_key_len, CF_E_INVALID_ARGUMENT,
                  "DeriveKeyPair ikm shorter than Nsk");
    if (cf_is_error(kem->derive_key_pair(kem, ikm, out->private_key, out->public_key))) {
        cf_hpke_keypair_wipe(out);
        return CF_ERROR;
    }
    out->kem = kem;
    return CF_OK;
}

CF_RESULT cf_hpke_keypair_from_private(uint16_t kem_id, cf_slice private_key, cf_hpke_keypair *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    const cf_hpke_kem *kem = NULL;
    CF_GUARD(kem_for(kem_id, &kem));
    CF_ENSURE_MSG(private_key.ptr != NULL && private_key.len == kem->private_key_len, CF_E_BAD_KEY,
                  "HPKE private key has the wrong length");
    memcpy(out->private_key, private_key.ptr, private_key.len);
    if (cf_is_error(kem->public_from_private(kem, out->private_key, out->public_key))) {
        cf_hpke_keypair_wipe(out);
        return CF_ERROR;
    }
    out->kem = kem;
    return CF_OK;
}

cf_slice cf_hpke_keypair_public(const cf_hpke_keypair *kp)
{
    if (kp == NULL || kp->kem == NULL) {
        return CF_SLICE_EMPTY;
    }
    return cf_slice_make(kp->public_key, kp->kem->public_key_len);
}

cf_slice cf_hpke_keypair_private(const cf_hpke_keypair *kp)
{
    if (kp == NULL || kp->kem == NULL) {
        return CF_SLICE_EMPTY;
    }
    return cf_slice_make(kp->private_key, kp->kem->private_key_len);
}

void cf_hpke_keypair_wipe(cf_hpke_keypair *kp)
{
    if (kp != NULL) {
        cf_wipe(kp, sizeof *kp);
    }
}

/* ---- Suites --------------------------------------------------------------------------- */

/* AEAD id -> our algorithm; export-only has none. */
static bool aead_for(uint16_t aead_id, cf_aead_alg *alg)
{
    switch (aead_id) {
    case CF_HPKE_AEAD_AES_128_GCM:
        *alg = CF_AEAD_AES_128_GCM;
        return true;
    case CF_HPKE_AEAD_AES_256_GCM:
        *alg = CF_AEAD_AES_256_GCM;
        return true;
    case CF_HPKE_AEAD_CHACHA20_POLY1305:
        *alg = CF_AEAD_CHACHA20_POLY1305;
        return true;
    }
    return false;
}

CF_RESULT cf_hpke_suite_check(cf_hpke_suite suite)
{
    const cf_hpke_kem *kem = NULL;
    CF_GUARD(kem_for(suite.kem_id, &kem));
    if (suite.kdf_id != CF_HPKE_KDF_HKDF_SHA256) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED, "HPKE KDF 0x%04x not supported", suite.kdf_id);
    }
    cf_aead_alg alg;
    if (!aead_for(suite.aead_id, &alg) && suite.aead_id != CF_HPKE_AEAD_EXPORT_ONLY) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED, "HPKE AEAD 0x%04x not supported", suite.aead_id);
    }
    return CF_OK;
}

/* ---- Key schedule (RFC 9180 §5.1) ------------------------------------------------------ */

static const cf_hpke_mode_inputs no_mode_inputs = {{NULL, 0}, {NULL, 0}, NULL, {NULL, 0}};

/* VerifyPSKInputs plus the auth inputs for the side that sets up. */
static CF_RESULT check_mode_inputs(cf_hpke_mode mode, const cf_hpke_mode_inputs *in, bool sender)
{
    bool psk_mode = mode == CF_HPKE_MODE_PSK || mode == CF_HPKE_MODE_AUTH_PSK;
    bool auth_mode = mode == CF_HPKE_MODE_AUTH || mode == CF_HPKE_MODE_AUTH_PSK;
    CF_ENSURE_MSG(mode == CF_HPKE_MODE_BASE || psk_mode || auth_mode, CF_E_INVALID_ARGUMENT, "unknown HPKE mode");
    CF_ENSURE(in->psk.ptr != NULL || in->psk.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE(in->psk_id.ptr != NULL || in->psk_id.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG((in->psk.len == 0) == (in->psk_id.len == 0), CF_E_INVALID_ARGUMENT,
                  "HPKE psk and psk_id must both be given or both be empty");
    CF_ENSURE_MSG(psk_mode == (in->psk.len > 0), CF_E_INVALID_ARGUMENT, "HPKE psk given in a non-psk mode or missing");
    CF_ENSURE_MSG(!psk_mode || in->psk.len >= CF_HPKE_PSK_MIN_LEN, CF_E_INVALID_ARGUMENT,
                  "HPKE psk shorter than 32 bytes");
    CF_ENSURE_MSG(in->psk.len <= CF_HPKE_INPUT_MAX && in->psk_id.len <= CF_HPKE_INPUT_MAX, CF_E_TOO_LARGE,
                  "HPKE psk/psk_id too long");
    if (sender) {
        CF_ENSURE_MSG(auth_mode == (in->sender_keypair != NULL), CF_E_INVALID_ARGUMENT,
                      "HPKE sender key pair given in a non-auth mode or missing");
        CF_ENSURE_MSG(in->sender_public_key.len == 0, CF_E_INVALID_ARGUMENT,
                      "HPKE sender_public_key is for the recipient side");
    } else {
        CF_ENSURE_MSG(auth_mode == (in->sender_public_key.len > 0), CF_E_INVALID_ARGUMENT,
                      "HPKE sender public key given in a non-auth mode or missing");
        CF_ENSURE_MSG(in->sender_keypair == NULL, CF_E_INVALID_ARGUMENT,
                      "HPKE sender_keypair is for the sender side");
    }
    return CF_OK;
}

static CF_RESULT key_schedule(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_hpke_mode mode, cf_slice shared_secret,
                              cf_slice info, const cf_hpke_mode_inputs *in, cf_hpke_role role, cf_hpke_trace *trace)
{
    cf_result result = CF_OK;
    suite_id sid = hpke_suite_id(suite);
    uint8_t ksc[1 + 2 * CF_SHA256_LEN]; /* key_schedule_context */
    uint8_t secret[CF_SHA256_LEN];
    uint8_t key[CF_AEAD_MAX_KEY_LEN];
    size_t key_len = 0;
    cf_aead_alg alg = CF_AEAD_AES_128_GCM;
    bool has_aead = aead_for(suite.aead_id, &alg);

    memset(ctx, 0, sizeof *ctx);
    ksc[0] = (uint8_t)mode;
    CF_GUARD_OUT(labeled_extract(&sid, CF_SLICE_EMPTY, "psk_id_hash", in->psk_id, ksc + 1));
    CF_GUARD_OUT(labeled_extract(&sid, CF_SLICE_EMPTY, "info_hash", info, ksc + 1 + CF_SHA256_LEN));
    CF_GUARD_OUT(labeled_extract(&sid, shared_secret, "secret", in->psk, secret));
    cf_slice secret_s = cf_slice_make(secret, sizeof secret);
    cf_slice ksc_s = cf_slice_make(ksc, sizeof ksc);
    if (has_aead) {
        key_len = cf_aead_key_len(alg);
        CF_GUARD_OUT(labeled_expand(&sid, secret_s, "key", ksc_s, key, key_len));
        CF_GUARD_OUT(labeled_expand(&sid, secret_s, "base_nonce", ksc_s, ctx->base_nonce, CF_AEAD_NONCE_LEN));
        CF_GUARD_OUT(cf_aead_init(&ctx->aead, alg, cf_slice_make(key, key_len)));
    }
    CF_GUARD_OUT(labeled_expand(&sid, secret_s, "exp", ksc_s, ctx->exporter_secret, CF_SHA256_LEN));
    ctx->suite = suite;
    ctx->has_aead = has_aead;
    ctx->role = role;
    ctx->seq = 0;
    if (trace != NULL) {
        memcpy(trace->key, key, key_len);
        trace->key_len = key_len;
        memcpy(trace->base_nonce, ctx->base_nonce, CF_AEAD_NONCE_LEN);
        memcpy(trace->exporter_secret, ctx->exporter_secret, CF_SHA256_LEN);
    }
out:
    cf_wipe(secret, sizeof secret);
    cf_wipe(key, sizeof key);
    if (cf_is_error(result)) {
        cf_hpke_ctx_free(ctx);
    }
    return result;
}

CF_RESULT cf_hpke_setup_sender_internal(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_hpke_mode mode, cf_slice pk_r,
                                        cf_slice info, const cf_hpke_mode_inputs *mode_inputs, cf_slice ikm_e,
                                        cf_buf *enc, cf_hpke_trace *trace)
{
    CF_ENSURE_REF(ctx);
    CF_ENSURE_REF(enc);
    memset(ctx, 0, sizeof *ctx);
    const cf_hpke_mode_inputs *in = mode_inputs ? mode_inputs : &no_mode_inputs;
    CF_GUARD(cf_hpke_suite_check(suite));
    CF_GUARD(check_mode_inputs(mode, in, true));
    CF_ENSURE(info.ptr != NULL || info.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG(info.len <= CF_HPKE_INPUT_MAX, CF_E_TOO_LARGE, "HPKE info too long");
    CF_ENSURE_MSG(ikm_e.len <= CF_HPKE_INPUT_MAX, CF_E_TOO_LARGE, "HPKE ikm too long");
    const cf_hpke_kem *kem = cf_hpke_kem_by_id(suite.kem_id);
    CF_ENSURE(kem != NULL, CF_E_INTERNAL);
    if (in->sender_keypair != NULL) {
        CF_ENSURE_MSG(kem->supports_auth, CF_E_UNSUPPORTED, "this HPKE KEM has no auth mode");
        CF_ENSURE_MSG(in->sender_keypair->kem == kem, CF_E_BAD_KEY, "HPKE sender key is for another KEM");
    }

    cf_result result = CF_OK;
    uint8_t shared_secret[CF_HPKE_MAX_SHARED_SECRET_LEN];
    uint8_t enc_bytes[CF_HPKE_MAX_ENC_LEN];
    CF_GUARD_OUT(kem->encap(kem, pk_r, in->sender_keypair, ikm_e, shared_secret, enc_bytes));
    CF_GUARD_OUT(key_schedule(ctx, suite, mode, cf_slice_make(shared_secret, kem->shared_secret_len), info, in,
                              CF_HPKE_ROLE_SENDER, trace));
    if (trace != NULL) {
        memcpy(trace->shared_secret, shared_secret, kem->shared_secret_len);
        trace->shared_secret_len = kem->shared_secret_len;
    }
    CF_GUARD_OUT(cf_buf_append(enc, enc_bytes, kem->enc_len));
out:
    cf_wipe(shared_secret, sizeof shared_secret);
    if (cf_is_error(result)) {
        cf_hpke_ctx_free(ctx);
    }
    return result;
}

CF_RESULT cf_hpke_setup_recipient_internal(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_hpke_mode mode, cf_slice enc,
                                           const cf_hpke_keypair *kp_r, cf_slice info,
                                           const cf_hpke_mode_inputs *mode_inputs, cf_hpke_trace *trace)
{
    CF_ENSURE_REF(ctx);
    CF_ENSURE_REF(kp_r);
    memset(ctx, 0, sizeof *ctx);
    const cf_hpke_mode_inputs *in = mode_inputs ? mode_inputs : &no_mode_inputs;
    CF_GUARD(cf_hpke_suite_check(suite));
    CF_GUARD(check_mode_inputs(mode, in, false));
    CF_ENSURE(info.ptr != NULL || info.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG(info.len <= CF_HPKE_INPUT_MAX, CF_E_TOO_LARGE, "HPKE info too long");
    const cf_hpke_kem *kem = cf_hpke_kem_by_id(suite.kem_id);
    CF_ENSURE(kem != NULL, CF_E_INTERNAL);
    CF_ENSURE_MSG(kp_r->kem == kem, CF_E_BAD_KEY, "HPKE recipient key is for another KEM");
    CF_ENSURE_MSG(in->sender_public_key.len == 0 || kem->supports_auth, CF_E_UNSUPPORTED,
                  "this HPKE KEM has no auth mode");

    cf_result result = CF_OK;
    uint8_t shared_secret[CF_HPKE_MAX_SHARED_SECRET_LEN];
    CF_GUARD_OUT(kem->decap(kem, enc, kp_r, in->sender_public_key, shared_secret));
    CF_GUARD_OUT(key_schedule(ctx, suite, mode, cf_slice_make(shared_secret, kem->shared_secret_len), info, in,
                              CF_HPKE_ROLE_RECIPIENT, trace));
    if (trace != NULL) {
        memcpy(trace->shared_secret, shared_secret, kem->shared_secret_len);
        trace->shared_secret_len = kem->shared_secret_len;
    }
out:
    cf_wipe(shared_secret, sizeof shared_secret);
    if (cf_is_error(result)) {
        cf_hpke_ctx_free(ctx);
    }
    return result;
}

CF_RESULT cf_hpke_setup_sender(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_slice pk_r, cf_slice info, cf_buf *enc)
{
    return cf_hpke_setup_sender_internal(ctx, suite, CF_HPKE_MODE_BASE, pk_r, info, NULL, CF_SLICE_EMPTY, enc, NULL);
}

CF_RESULT cf_hpke_setup_recipient(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_slice enc, const cf_hpke_keypair *kp_r,
                                  cf_slice info)
{
    return cf_hpke_setup_recipient_internal(ctx, suite, CF_HPKE_MODE_BASE, enc, kp_r, info, NULL, NULL);
}

CF_RESULT cf_hpke_setup_sender_mode(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_hpke_mode mode, cf_slice pk_r,
                                    cf_slice info, const cf_hpke_mode_inputs *mode_inputs, cf_buf *enc)
{
    return cf_hpke_setup_sender_internal(ctx, suite, mode, pk_r, info, mode_inputs, CF_SLICE_EMPTY, enc, NULL);
}

CF_RESULT cf_hpke_setup_recipient_mode(cf_hpke_ctx *ctx, cf_hpke_suite suite, cf_hpke_mode mode, cf_slice enc,
                                       const cf_hpke_keypair *kp_r, cf_slice info,
                                       const cf_hpke_mode_inputs *mode_inputs)
{
    return cf_hpke_setup_recipient_internal(ctx, suite, mode, enc, kp_r, info, mode_inputs, NULL);
}

/* ---- Encryption context (RFC 9180 §5.2) ----------------------------------------------- */

/* ComputeNonce(seq) = base_nonce XOR I2OSP(seq, Nn) */
static void compute_nonce(const cf_hpke_ctx *ctx, uint8_t nonce[CF_AEAD_NONCE_LEN])
{
    memcpy(nonce, ctx->base_nonce, CF_AEAD_NONCE_LEN);
    for (size_t i = 0; i < 8; i++) {
        nonce[CF_AEAD_NONCE_LEN - 1 - i] ^= (uint8_t)(ctx->seq >> (8 * i));
    }
}

static CF_RESULT check_can_use(const cf_hpke_ctx *ctx, cf_hpke_role role)
{
    CF_ENSURE_REF(ctx);
    CF_ENSURE_MSG(ctx->role != CF_HPKE_ROLE_NONE, CF_E_INVALID_ARGUMENT, "HPKE context not set up");
    CF_ENSURE_MSG(ctx->has_aead, CF_E_UNSUPPORTED, "export-only HPKE suite cannot seal or open");
    CF_ENSURE_MSG(ctx->role == role, CF_E_INVALID_ARGUMENT,
                  role == CF_HPKE_ROLE_SENDER ? "HPKE recipient context cannot seal"
                                              : "HPKE sender context cannot open");
    /* IncrementSeq would overflow: MessageLimitReachedError. */
    CF_ENSURE_MSG(ctx->seq != UINT64_MAX, CF_E_LIMIT, "HPKE context message limit reached");
    return CF_OK;
}

CF_RESULT cf_hpke_seal(cf_hpke_ctx *ctx, cf_slice aad, cf_slice pt, cf_buf *ct)
{
    CF_GUARD(check_can_use(ctx, CF_HPKE_ROLE_SENDER));
    CF_ENSURE_REF(ct);
    CF_ENSURE_MSG(pt.len <= SIZE_MAX - CF_AEAD_TAG_LEN, CF_E_TOO_LARGE, "HPKE plaintext too large");
    CF_GUARD(cf_buf_reserve(ct, pt.len + CF_AEAD_TAG_LEN));
    uint8_t nonce[CF_AEAD_NONCE_LEN];
    compute_nonce(ctx, nonce);
    CF_GUARD(cf_aead_seal(&ctx->aead, nonce, aad, pt, ct->data + ct->len));
    ct->len += pt.len + CF_AEAD_TAG_LEN;
    ctx->seq++;
    return CF_OK;
}

CF_RESULT cf_hpke_open(cf_hpke_ctx *ctx, cf_slice aad, cf_slice ct, cf_buf *pt)
{
    CF_GUARD(check_can_use(ctx, CF_HPKE_ROLE_RECIPIENT));
    CF_ENSURE_REF(pt);
    CF_ENSURE_MSG(ct.len >= CF_AEAD_TAG_LEN, CF_E_AUTH_FAILED, "HPKE ciphertext shorter than the tag");
    size_t pt_len = ct.len - CF_AEAD_TAG_LEN;
    CF_GUARD(cf_buf_reserve(pt, pt_len));
    uint8_t nonce[CF_AEAD_NONCE_LEN];
    compute_nonce(ctx, nonce);
    /* cf_aead_open writes only after the tag verified; the buffer's length
     * grows only then, so nothing unauthenticated becomes visible. */
    CF_GUARD(cf_aead_open(&ctx->aead, nonce, aad, ct, pt->data + pt->len));
    pt->len += pt_len;
    ctx->seq++;
    return CF_OK;
}

CF_RESULT cf_hpke_export(const cf_hpke_ctx *ctx, cf_slice exporter_context, uint8_t *out, size_t out_len)
{
    CF_ENSURE_REF(ctx);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(ctx->role != CF_HPKE_ROLE_NONE, CF_E_INVALID_ARGUMENT, "HPKE context not set up");
    CF_ENSURE(exporter_context.ptr != NULL || exporter_context.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG(out_len > 0 && out_len <= 255 * CF_SHA256_LEN, CF_E_INVALID_ARGUMENT,
                  "HPKE export length must be 1..8160");
    suite_id sid = hpke_suite_id(ctx->suite);
    return labeled_expand(&sid, cf_slice_make(ctx->exporter_secret, CF_SHA256_LEN), "sec", exporter_context, out,
                          out_len);
}

void cf_hpke_ctx_free(cf_hpke_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    cf_aead_free(&ctx->aead);
    cf_wipe(ctx, sizeof *ctx);
}

/* ---- Single-shot (RFC 9180 §6.1) ------------------------------------------------------ */

CF_RESULT cf_hpke_seal_base(cf_hpke_suite suite, cf_slice pk_r, cf_slice info, cf_slice aad, cf_slice pt,
                            cf_buf *enc, cf_buf *ct)
{
    cf_hpke_ctx ctx;
    size_t enc_len_before = enc ? enc->len : 0;
    CF_GUARD(cf_hpke_setup_sender(&ctx, suite, pk_r, info, enc));
    cf_result result = cf_hpke_seal(&ctx, aad, pt, ct);
    cf_hpke_ctx_free(&ctx);
    if (cf_is_error(result)) {
        enc->len = enc_len_before; /* leave no partial output */
    }
    return result;
}

CF_RESULT cf_hpke_open_base(cf_hpke_suite suite, cf_slice enc, const cf_hpke_keypair *kp_r, cf_slice info,
                            cf_slice aad, cf_slice ct, cf_buf *pt)
{
    cf_hpke_ctx ctx;
    CF_GUARD(cf_hpke_setup_recipient(&ctx, suite, enc, kp_r, info));
    cf_result result = cf_hpke_open(&ctx, aad, ct, pt);
    cf_hpke_ctx_free(&ctx);
    return result;
}
