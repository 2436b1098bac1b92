/* fuzz_as_api.c — every parser of the AS API (as_api.h) on hostile bytes.
 *
 * Input: one selector byte, then the message. Fixed keys (derived from
 * constant seeds, the same ones fuzz/corpus/as_api/ was made with) let the
 * seeds pass signature and HPKE checks, so mutations reach the layout
 * checks behind them. Whatever is accepted must be self-consistent: an
 * opened upload's key id derives from its key, an opened put event's too. */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confide/as_api.h"
#include "confide/hpke.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cf_hpke_keypair g_kp;
static EVP_PKEY *g_sign;
static uint8_t g_manifest_sha[32];
static const uint8_t g_worker_id[CF_WORKER_ID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t g_stream_nonce[CF_STREAM_NONCE_LEN] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};

static void init_once(void)
{
    if (g_sign != NULL) {
        return;
    }
    uint8_t seed[32];
    memset(seed, 0x42, sizeof seed);
    if (cf_is_error(cf_hpke_keypair_derive(CF_HPKE_KEM_X25519_SHA256, cf_slice_make(seed, sizeof seed), &g_kp))) {
        abort();
    }
    memset(seed, 0x24, sizeof seed);
    g_sign = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
    if (g_sign == NULL) {
        abort();
    }
    memset(g_manifest_sha, 0x11, sizeof g_manifest_sha);
}

static void check_key(const uint8_t k[CF_INFERENCE_KEY_LEN], const char *key_id)
{
    char derived[CF_KEY_ID_LEN + 1];
    if (cf_is_error(cf_key_id_derive(k, derived)) || strcmp(derived, key_id) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size < 1) {
        return 0;
    }
    cf_slice msg = cf_slice_make(data + 1, size - 1);
    switch (data[0] % 11) {
    case 0: {
        uint8_t nonce[CF_AS_NONCE_LEN];
        (void)cf_as_attest_request_parse(msg, nonce);
        break;
    }
    case 1: {
        uint8_t nonce[CF_AS_NONCE_LEN] = {0};
        cf_as_identity id;
        if (cf_is_ok(cf_as_attest_response_verify(msg, nonce, g_manifest_sha, 1800000000, &id))) {
            cf_as_identity_free(&id);
        }
        break;
    }
    case 2: {
        cf_key_upload up;
        uint8_t digest[32];
        if (cf_is_ok(cf_key_upload_open(&g_kp, g_manifest_sha, msg, &up, digest))) {
            check_key(up.k, up.key_id);
        }
        cf_key_upload_wipe(&up);
        break;
    }
    case 3: {
        cf_key_delete_request dr;
        (void)cf_key_delete_parse(msg, &dr);
        break;
    }
    case 4: {
        uint8_t nonce[CF_AS_NONCE_LEN];
        int64_t exp;
        (void)cf_worker_challenge_parse(msg, nonce, &exp);
        break;
    }
    case 5: {
        cf_worker_attest_request ar;
        if (cf_is_ok(cf_worker_attest_request_parse(msg, &ar))) {
            cf_worker_attest_request_free(&ar);
        }
        break;
    }
    case 6: {
        cf_worker_grant g;
        if (cf_is_ok(cf_worker_attest_response_parse(msg, &g))) {
            cf_worker_grant_free(&g);
        }
        break;
    }
    case 7: {
        cf_worker_token t;
        (void)cf_worker_token_verify(g_sign, msg, 1800000000, &t);
        break;
    }
    case 8: {
        /* name NUL data */
        const uint8_t *nul = memchr(msg.ptr, 0, msg.len);
        if (nul == NULL || (size_t)(nul - msg.ptr) > 31) {
            break;
        }
        char name[32];
        memcpy(name, msg.ptr, (size_t)(nul - msg.ptr));
        name[nul - msg.ptr] = '\0';
        cf_slice body = cf_slice_make(nul + 1, msg.len - (size_t)(nul - msg.ptr) - 1);
        cf_key_event ev;
        if (cf_is_ok(cf_key_event_open(g_sign, g_worker_id, g_stream_nonce, &g_kp, name, body, 0, &ev)) &&
            (ev.type == CF_KEY_EVENT_PUT || ev.type == CF_KEY_EVENT_KEY)) {
            check_key(ev.k, ev.key_id);
        }
        cf_key_event_wipe(&ev);
        break;
    }
    case 9: {
        char key_id[CF_KEY_ID_LEN + 1];
        uint8_t nonce[CF_STREAM_NONCE_LEN];
        (void)cf_key_fetch_parse(msg, key_id, nonce);
        /* The stream query too (NUL-terminated copy). */
        char q[64];
        if (msg.len < sizeof q) {
            memcpy(q, msg.ptr, msg.len);
            q[msg.len] = '\0';
            (void)cf_key_stream_query_parse(q, nonce);
        }
        break;
    }
    case 10: {
        /* A receipt for an identity whose signing key is g_sign. */
        cf_as_identity id = {.signing_key = g_sign};
        cf_manifest m;
        memset(&m, 0, sizeof m);
        memcpy(m.sha256, g_manifest_sha, 32);
        id.manifest = &m;
        uint8_t digest[32] = {0};
        cf_key_receipt r;
        (void)cf_key_receipt_verify(&id, digest, "AAAAAAAAAAAAAAAAAAAAAA", msg, &r);
        break;
    }
    }
    return 0;
}
