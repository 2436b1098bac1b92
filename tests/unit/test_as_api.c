/* test_as_api.c — AS API messages: known answers for the derivations
 * (computed independently with Python's hashlib/hmac), full client / AS /
 * worker round trips on the sim platform, and one failure per forgery. */
#define _GNU_SOURCE /* memmem */
#include "test_helper.h"

#include <string.h>
#include <time.h>

#include "confide/as_api.h"
#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/hpke.h"
#include "confide/sim.h"

typedef struct fixture {
    char *tmp;
    char dir[512];
    int64_t now;
    cf_manifest *manifest;
    cf_hpke_keypair as_kp;
    EVP_PKEY *as_sign;
    uint8_t as_sign_pub[CF_ED25519_PUB_LEN];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->tmp = cf_test_tmpdir();
    f->now = (int64_t)time(NULL);
    snprintf(f->dir, sizeof f->dir, "%s/sim", f->tmp);
    cf_sim_init_options opt = {.svn = 1, .now = f->now};
    assert_cf_ok(cf_sim_init(f->dir, &opt));
    const char *models[] = {"llama-small", "qwen"};
    cf_manifest_sim_params p = {.sim_dir = f->dir,
                                .as_binary = "/proc/self/exe",
                                .worker_binary = "/proc/self/exe",
                                .models = models,
                                .model_count = 2};
    cf_buf text;
    cf_buf_init(&text, 0);
    assert_cf_ok(cf_manifest_build_sim(&p, &text));
    assert_cf_ok(cf_manifest_parse(cf_buf_slice(&text), &f->manifest));
    cf_buf_free(&text);
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &f->as_kp));
    assert_cf_ok(cf_ed25519_keygen(&f->as_sign));
    assert_cf_ok(cf_ed25519_public_raw(f->as_sign, f->as_sign_pub));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cf_manifest_free(f->manifest);
    cf_hpke_keypair_wipe(&f->as_kp);
    EVP_PKEY_free(f->as_sign);
    cf_test_rmrf(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

static void hex_equal(const uint8_t *got, size_t len, const char *want_hex)
{
    cf_buf want;
    cf_test_hex(want_hex, &want);
    assert_int_equal(want.len, len);
    assert_memory_equal(got, want.data, len);
    cf_buf_free(&want);
}

static void test_known_answers(void **state)
{
    (void)state;
    uint8_t k[32];
    for (int i = 0; i < 32; i++) {
        k[i] = (uint8_t)i;
    }
    char kid[CF_KEY_ID_LEN + 1];
    assert_cf_ok(cf_key_id_derive(k, kid));
    assert_string_equal(kid, "RDxb-UX6ELNTL9OJxJI3tA");
    assert_true(cf_key_id_valid(cf_slice_cstr(kid)));
    assert_false(cf_key_id_valid(cf_slice_cstr("RDxb-UX6ELNTL9OJxJI3t")));
    assert_false(cf_key_id_valid(cf_slice_cstr("RDxb+UX6ELNTL9OJxJI3tA")));

    uint8_t n[32], h[32], s[32], m[32], rd[64];
    memset(n, 0x11, 32);
    memset(h, 0x22, 32);
    memset(s, 0x33, 32);
    memset(m, 0x44, 32);
    assert_cf_ok(cf_as_report_data(n, cf_slice_make(h, 32), cf_slice_make(s, 32), m, rd));
    hex_equal(rd, 64,
              "8d78de5d1e47f855ffaf2434767cf877abedb3a619775fe1cfb2c2e4d2bf8fad"
              "291b1942bdaffda79612b1e5743bd7b5e42ccd65a1e51d6ff468d778c20514bc");
    assert_cf_ok(cf_worker_report_data(n, cf_slice_make(h, 32), rd));
    hex_equal(rd, 64,
              "d53c7828bd63c3f634927c1000cf5fdbe71c597dbd22ac0d69922d430f0a41b2"
              "6f3c406a44bb37366472f00022dd0f3e252472c6fa0996b8c2558521ae875217");
    uint8_t proof[32];
    assert_cf_ok(cf_key_delete_proof(k, kid, 1800000000, proof));
    hex_equal(proof, 32, "05ee8932937dda987fc6891d87930ca0221fe06bce7c926965c9fcb7826d2f66");

    /* Generated keys derive their own id. */
    char kid2[CF_KEY_ID_LEN + 1], kid3[CF_KEY_ID_LEN + 1];
    assert_cf_ok(cf_key_generate(k, kid2));
    assert_cf_ok(cf_key_id_derive(k, kid3));
    assert_string_equal(kid2, kid3);
}

/* What the AS answers to POST /v1/attest with this nonce. */
static void as_attest(const fixture *f, const uint8_t nonce[32], cf_buf *body)
{
    uint8_t rd[64];
    assert_cf_ok(cf_as_report_data(nonce, cf_hpke_keypair_public(&f->as_kp),
                                   cf_slice_make(f->as_sign_pub, CF_ED25519_PUB_LEN), f->manifest->sha256, rd));
    cf_attester_config cfg = {.platform = CF_PLATFORM_SIM, .sim_dir = f->dir};
    cf_buf ev, col;
    cf_buf_init(&ev, 0);
    cf_buf_init(&col, 0);
    assert_cf_ok(cf_attest_collect(&cfg, rd, &ev, &col));
    cf_buf_init(body, 0);
    assert_cf_ok(cf_as_attest_response_build(CF_PLATFORM_SIM, cf_buf_slice(&ev), cf_buf_slice(&col),
                                             cf_hpke_keypair_public(&f->as_kp),
                                             cf_slice_make(f->as_sign_pub, CF_ED25519_PUB_LEN),
                                             cf_buf_slice(&f->manifest->bytes), body));
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void verify_as(const fixture *f, cf_as_identity *id)
{
    uint8_t nonce[32];
    assert_cf_ok(cf_random(nonce, sizeof nonce));
    cf_buf req, body;
    cf_buf_init(&req, 0);
    assert_cf_ok(cf_as_attest_request_build(nonce, &req));
    uint8_t parsed[32];
    assert_cf_ok(cf_as_attest_request_parse(cf_buf_slice(&req), parsed));
    assert_memory_equal(parsed, nonce, 32);
    as_attest(f, nonce, &body);
    assert_cf_ok(cf_as_attest_response_verify(cf_buf_slice(&body), nonce, f->manifest->sha256, f->now, id));
    cf_buf_free(&req);
    cf_buf_free(&body);
}

static void test_as_attestation(void **state)
{
    fixture *f = *state;
    cf_as_identity id;
    verify_as(f, &id);
    assert_int_equal(id.platform, CF_PLATFORM_SIM);
    assert_memory_equal(id.signing_public_key, f->as_sign_pub, CF_ED25519_PUB_LEN);
    assert_memory_equal(id.hpke_public_key, cf_hpke_keypair_public(&f->as_kp).ptr, 32);
    assert_memory_equal(id.manifest->sha256, f->manifest->sha256, 32);
    cf_as_identity_free(&id);

    uint8_t nonce[32], other[32];
    memset(nonce, 1, 32);
    memset(other, 2, 32);
    cf_buf body;
    as_attest(f, nonce, &body);
    /* Another nonce (a replayed answer). */
    assert_cf_error(cf_as_attest_response_verify(cf_buf_slice(&body), other, f->manifest->sha256, f->now, &id),
                    CF_E_REPORT_DATA);
    assert_null(id.manifest);
    /* A manifest other than the pinned one. */
    uint8_t pinned[32];
    memcpy(pinned, f->manifest->sha256, 32);
    pinned[0] ^= 1;
    assert_cf_error(cf_as_attest_response_verify(cf_buf_slice(&body), nonce, pinned, f->now, &id), CF_E_POLICY);
    assert_non_null(strstr(cf_error_last()->detail, "pinned"));

    /* Substituted signing key (a man in the middle's): report_data fails. */
    json_t *j = json_loadb((const char *)body.data, body.len, 0, NULL);
    assert_non_null(j);
    uint8_t evil[32];
    memset(evil, 0x66, sizeof evil);
    char evil_b64[64];
    assert_cf_ok(cf_b64url_encode_str(cf_slice_make(evil, 32), evil_b64, sizeof evil_b64));
    json_object_set_new(j, "signing_public_key", json_string(evil_b64));
    char *text = json_dumps(j, JSON_COMPACT);
    assert_cf_error(cf_as_attest_response_verify(cf_slice_cstr(text), nonce, f->manifest->sha256, f->now, &id),
                    CF_E_REPORT_DATA);
    free(text);
    json_object_set_new(j, "hpke_public_key", json_string(evil_b64));
    json_object_set_new(j, "extra", json_true());
    text = json_dumps(j, JSON_COMPACT);
    assert_cf_error(cf_as_attest_response_verify(cf_slice_cstr(text), nonce, f->manifest->sha256, f->now, &id),
                    CF_E_MALFORMED);
    free(text);
    json_decref(j);
    assert_cf_error(cf_as_attest_response_verify(cf_slice_cstr("{}"), nonce, f->manifest->sha256, f->now, &id),
                    CF_E_UNSUPPORTED);
    assert_cf_error(cf_as_attest_response_verify(cf_slice_cstr("nope"), nonce, f->manifest->sha256, f->now, &id),
                    CF_E_MALFORMED);
    cf_buf_free(&body);
}

static void make_scope(cf_key_scope *s, const char *a, const char *b)
{
    memset(s, 0, sizeof *s);
    snprintf(s->models[s->count++], sizeof s->models[0], "%s", a);
    if (b) {
        snprintf(s->models[s->count++], sizeof s->models[0], "%s", b);
    }
}

static void test_upload_receipt_delete(void **state)
{
    fixture *f = *state;
    cf_as_identity id;
    verify_as(f, &id);
    uint8_t k[32];
    char kid[CF_KEY_ID_LEN + 1];
    assert_cf_ok(cf_key_generate(k, kid));
    cf_key_scope scope;
    make_scope(&scope, "qwen", "llama-small");
    cf_buf body;
    cf_buf_init(&body, 0);
    uint8_t digest_client[32], digest_as[32];
    assert_cf_ok(cf_key_upload_seal(&id, k, 600, &scope, &body, digest_client));

    cf_key_upload up;
    assert_cf_ok(cf_key_upload_open(&f->as_kp, f->manifest->sha256, cf_buf_slice(&body), &up, digest_as));
    assert_memory_equal(up.k, k, 32);
    assert_string_equal(up.key_id, kid);
    assert_int_equal(up.ttl_s, 600);
    assert_int_equal(up.scope.count, 2);
    assert_string_equal(up.scope.models[1], "llama-small");
    assert_memory_equal(digest_client, digest_as, 32);

    /* Receipt. */
    cf_key_receipt r = {.expires_at = f->now + 600, .scope = up.scope};
    memcpy(r.key_id, up.key_id, sizeof r.key_id);
    cf_buf rb;
    cf_buf_init(&rb, 0);
    assert_cf_ok(cf_key_receipt_build(f->as_sign, f->manifest->sha256, digest_as, &r, &rb));
    cf_key_receipt got;
    assert_cf_ok(cf_key_receipt_verify(&id, digest_client, kid, cf_buf_slice(&rb), &got));
    assert_int_equal(got.expires_at, f->now + 600);
    uint8_t other_digest[32];
    memcpy(other_digest, digest_client, 32);
    other_digest[5] ^= 1;
    assert_cf_error(cf_key_receipt_verify(&id, other_digest, kid, cf_buf_slice(&rb), &got), CF_E_BAD_SIGNATURE);
    assert_cf_error(cf_key_receipt_verify(&id, digest_client, "AAAAAAAAAAAAAAAAAAAAAA", cf_buf_slice(&rb), &got),
                    CF_E_AUTH_FAILED);
    /* A receipt signed by another key. */
    EVP_PKEY *evil = NULL;
    assert_cf_ok(cf_ed25519_keygen(&evil));
    cf_buf_reset(&rb);
    assert_cf_ok(cf_key_receipt_build(evil, f->manifest->sha256, digest_as, &r, &rb));
    assert_cf_error(cf_key_receipt_verify(&id, digest_client, kid, cf_buf_slice(&rb), &got), CF_E_BAD_SIGNATURE);
    EVP_PKEY_free(evil);

    /* Tampered ciphertext, other AS key, other manifest. */
    json_t *j = json_loadb((const char *)body.data, body.len, 0, NULL);
    char ct[512];
    snprintf(ct, sizeof ct, "%s", json_string_value(json_object_get(j, "ct")));
    ct[3] = ct[3] == 'A' ? 'B' : 'A';
    json_object_set_new(j, "ct", json_string(ct));
    char *text = json_dumps(j, JSON_COMPACT);
    assert_cf_error(cf_key_upload_open(&f->as_kp, f->manifest->sha256, cf_slice_cstr(text), &up, digest_as),
                    CF_E_AUTH_FAILED);
    free(text);
    json_decref(j);
    uint8_t other_manifest[32] = {0};
    assert_cf_error(cf_key_upload_open(&f->as_kp, other_manifest, cf_buf_slice(&body), &up, digest_as),
                    CF_E_AUTH_FAILED);

    /* A key id not derived from K (sealed by hand). */
    cf_buf pt, enc, ct2;
    cf_buf_init(&pt, 0);
    cf_buf_init(&enc, 0);
    cf_buf_init(&ct2, 0);
    assert_cf_ok(cf_buf_append_u8(&pt, 1));
    assert_cf_ok(cf_buf_append(&pt, k, 32));
    assert_cf_ok(cf_buf_append_u8(&pt, 22));
    assert_cf_ok(cf_buf_append_cstr(&pt, "RDxb-UX6ELNTL9OJxJI3tA"));
    assert_cf_ok(cf_buf_append_u32be(&pt, 600));
    assert_cf_ok(cf_buf_append_u8(&pt, 1));
    assert_cf_ok(cf_buf_append_u8(&pt, 4));
    assert_cf_ok(cf_buf_append_cstr(&pt, "qwen"));
    assert_cf_ok(cf_hpke_seal_base(CF_HPKE_SUITE_DEFAULT, cf_hpke_keypair_public(&f->as_kp),
                                   cf_slice_cstr("confide/v1 key-upload"), cf_slice_make(f->manifest->sha256, 32),
                                   cf_buf_slice(&pt), &enc, &ct2));
    char e64[128], c64[512], forged[800];
    assert_cf_ok(cf_b64url_encode_str(cf_buf_slice(&enc), e64, sizeof e64));
    assert_cf_ok(cf_b64url_encode_str(cf_buf_slice(&ct2), c64, sizeof c64));
    snprintf(forged, sizeof forged, "{\"enc\":\"%s\",\"ct\":\"%s\"}", e64, c64);
    assert_cf_error(cf_key_upload_open(&f->as_kp, f->manifest->sha256, cf_slice_cstr(forged), &up, digest_as),
                    CF_E_AUTH_FAILED);
    assert_non_null(strstr(cf_error_last()->detail, "not derived"));
    uint8_t zero[32] = {0};
    assert_memory_equal(up.k, zero, 32); /* wiped on failure */
    cf_buf_free(&pt);
    cf_buf_free(&enc);
    cf_buf_free(&ct2);

    /* Deletion request. */
    cf_buf db;
    cf_buf_init(&db, 0);
    assert_cf_ok(cf_key_delete_build(k, kid, f->now + 600, &db));
    cf_key_delete_request dr;
    assert_cf_ok(cf_key_delete_parse(cf_buf_slice(&db), &dr));
    assert_string_equal(dr.key_id, kid);
    assert_int_equal(dr.expires_at, f->now + 600);
    uint8_t expect[32];
    assert_cf_ok(cf_key_delete_proof(k, kid, f->now + 600, expect));
    assert_memory_equal(dr.proof, expect, 32);
    assert_cf_error(cf_key_delete_parse(cf_slice_cstr("{\"key_id\":\"x\",\"expires_at\":1,\"proof\":\"\"}"), &dr),
                    CF_E_MALFORMED);

    cf_buf_free(&db);
    cf_buf_free(&rb);
    cf_buf_free(&body);
    cf_key_upload_wipe(&up);
    cf_as_identity_free(&id);
}

static void test_worker_join_and_events(void **state)
{
    fixture *f = *state;
    /* Challenge. */
    uint8_t nonce[32], nonce2[32];
    int64_t exp = 0;
    assert_cf_ok(cf_random(nonce, 32));
    cf_buf cb;
    cf_buf_init(&cb, 0);
    assert_cf_ok(cf_worker_challenge_build(nonce, f->now + 60, &cb));
    assert_cf_ok(cf_worker_challenge_parse(cf_buf_slice(&cb), nonce2, &exp));
    assert_memory_equal(nonce, nonce2, 32);
    assert_int_equal(exp, f->now + 60);

    /* Attestation request. */
    cf_hpke_keypair wkp;
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &wkp));
    uint8_t rd[64];
    assert_cf_ok(cf_worker_report_data(nonce, cf_hpke_keypair_public(&wkp), rd));
    cf_attester_config cfg = {.platform = CF_PLATFORM_SIM, .sim_dir = f->dir};
    cf_buf ev, col, req;
    cf_buf_init(&ev, 0);
    cf_buf_init(&col, 0);
    cf_buf_init(&req, 0);
    assert_cf_ok(cf_attest_collect(&cfg, rd, &ev, &col));
    assert_cf_ok(cf_worker_attest_request_build(CF_PLATFORM_SIM, nonce, cf_hpke_keypair_public(&wkp),
                                                cf_buf_slice(&ev), cf_buf_slice(&col), &req));
    cf_worker_attest_request ar;
    assert_cf_ok(cf_worker_attest_request_parse(cf_buf_slice(&req), &ar));
    assert_int_equal(ar.platform, CF_PLATFORM_SIM);
    assert_memory_equal(ar.nonce, nonce, 32);
    assert_true(cf_buf_slice(&ar.evidence).len == ev.len);
    size_t idx;
    cf_claims claims;
    assert_cf_ok(cf_worker_report_data(ar.nonce, cf_slice_make(ar.hpke_public_key, ar.hpke_public_key_len), rd));
    assert_cf_ok(cf_manifest_verify_worker(f->manifest, ar.platform, cf_buf_slice(&ar.evidence),
                                           cf_buf_slice(&ar.collateral), rd, f->now, &idx, &claims));
    cf_claims_free(&claims);

    /* Token. */
    cf_worker_token t = {.issued_at = f->now, .expires_at = f->now + 300, .policy_index = (uint8_t)idx,
                         .hpke_public_key_len = ar.hpke_public_key_len};
    memcpy(t.hpke_public_key, ar.hpke_public_key, ar.hpke_public_key_len);
    assert_cf_ok(cf_random(t.worker_id, sizeof t.worker_id));
    cf_buf tok;
    cf_buf_init(&tok, 0);
    assert_cf_ok(cf_worker_token_issue(f->as_sign, &t, &tok));
    cf_worker_token vt;
    assert_cf_ok(cf_worker_token_verify(f->as_sign, cf_buf_slice(&tok), f->now, &vt));
    assert_memory_equal(vt.worker_id, t.worker_id, CF_WORKER_ID_LEN);
    assert_int_equal(vt.expires_at, f->now + 300);
    assert_cf_error(cf_worker_token_verify(f->as_sign, cf_buf_slice(&tok), f->now + 300, &vt), CF_E_EXPIRED);
    tok.data[10] = tok.data[10] == 'A' ? 'B' : 'A';
    assert_cf_error(cf_worker_token_verify(f->as_sign, cf_buf_slice(&tok), f->now, &vt), CF_E_UNAUTHORIZED);
    tok.data[10] = tok.data[10] == 'A' ? 'B' : 'A';
    EVP_PKEY *evil = NULL;
    assert_cf_ok(cf_ed25519_keygen(&evil));
    assert_cf_error(cf_worker_token_verify(evil, cf_buf_slice(&tok), f->now, &vt), CF_E_UNAUTHORIZED);
    assert_cf_error(cf_worker_token_verify(f->as_sign, cf_slice_cstr("!!"), f->now, &vt), CF_E_UNAUTHORIZED);

    /* Grant. */
    cf_buf grant_body;
    cf_buf_init(&grant_body, 0);
    assert_cf_ok(cf_worker_attest_response_build(cf_buf_slice(&tok), &t, f->manifest->workers[idx].name,
                                                 f->manifest->workers[idx].models, &grant_body));
    cf_worker_grant g;
    assert_cf_ok(cf_worker_attest_response_parse(cf_buf_slice(&grant_body), &g));
    assert_int_equal(strlen(g.token), tok.len);
    assert_memory_equal(g.token, tok.data, tok.len);
    assert_string_equal(g.policy, "default");
    assert_int_equal(g.model_count, 2);
    assert_int_equal(g.expires_at, f->now + 300);
    cf_worker_grant_free(&g);

    /* Events (bound to the worker's stream nonce). */
    uint8_t sn[CF_STREAM_NONCE_LEN], other_sn[CF_STREAM_NONCE_LEN];
    assert_cf_ok(cf_random(sn, sizeof sn));
    memcpy(other_sn, sn, sizeof sn);
    other_sn[0] ^= 1;
    uint8_t k[32];
    cf_key_event e = {.type = CF_KEY_EVENT_PUT, .seq = 0, .expires_at = f->now + 100};
    assert_cf_ok(cf_key_generate(k, e.key_id));
    make_scope(&e.scope, "qwen", NULL);
    cf_buf data;
    cf_buf_init(&data, 0);
    assert_cf_ok(cf_key_event_build(f->as_sign, &t, sn, &e, k, &data));
    assert_null(memmem(data.data, data.len, k, 32));
    cf_key_event got;
    assert_cf_ok(cf_key_event_open(f->as_sign, t.worker_id, sn, &wkp, "put", cf_buf_slice(&data), 0, &got));
    assert_memory_equal(got.k, k, 32);
    assert_string_equal(got.key_id, e.key_id);
    assert_int_equal(got.expires_at, f->now + 100);
    assert_cf_error(cf_key_event_open(f->as_sign, t.worker_id, sn, &wkp, "put", cf_buf_slice(&data), 1, &got),
                    CF_E_REPLAY);
    assert_cf_error(cf_key_event_open(f->as_sign, t.worker_id, sn, &wkp, "key", cf_buf_slice(&data), 0, &got),
                    CF_E_BAD_SIGNATURE);
    uint8_t other_worker[CF_WORKER_ID_LEN] = {0};
    assert_cf_error(cf_key_event_open(f->as_sign, other_worker, sn, &wkp, "put", cf_buf_slice(&data), 0, &got),
                    CF_E_BAD_SIGNATURE);
    assert_cf_error(cf_key_event_open(evil, t.worker_id, sn, &wkp, "put", cf_buf_slice(&data), 0, &got),
                    CF_E_BAD_SIGNATURE);
    /* A recorded stream replayed to a new stream of the same worker. */
    assert_cf_error(cf_key_event_open(f->as_sign, t.worker_id, other_sn, &wkp, "put", cf_buf_slice(&data), 0, &got),
                    CF_E_BAD_SIGNATURE);
    cf_hpke_keypair other_kp;
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &other_kp));
    assert_cf_error(cf_key_event_open(f->as_sign, t.worker_id, sn, &other_kp, "put", cf_buf_slice(&data), 0, &got),
                    CF_E_AUTH_FAILED);
    cf_hpke_keypair_wipe(&other_kp);
    assert_cf_error(cf_key_event_open(f->as_sign, t.worker_id, sn, &wkp, "bogus", cf_buf_slice(&data), 0, &got),
                    CF_E_MALFORMED);

    static const cf_key_event_type others[] = {CF_KEY_EVENT_DELETE, CF_KEY_EVENT_READY, CF_KEY_EVENT_TOKEN_EXPIRING};
    for (size_t i = 0; i < 3; i++) {
        cf_key_event o = {.type = others[i], .seq = 7 + i, .expires_at = f->now + 5, .count = 3};
        memcpy(o.key_id, e.key_id, sizeof o.key_id);
        snprintf(o.reason, sizeof o.reason, "expired");
        cf_buf_reset(&data);
        assert_cf_ok(cf_key_event_build(f->as_sign, &t, sn, &o, NULL, &data));
        assert_cf_ok(cf_key_event_open(f->as_sign, t.worker_id, sn, NULL, cf_key_event_name(others[i]),
                                       cf_buf_slice(&data), 7 + i, &got));
        assert_int_equal(got.type, others[i]);
        if (others[i] == CF_KEY_EVENT_DELETE) {
            assert_string_equal(got.key_id, e.key_id);
            assert_string_equal(got.reason, "expired");
        } else if (others[i] == CF_KEY_EVENT_READY) {
            assert_int_equal(got.count, 3);
        } else {
            assert_int_equal(got.expires_at, f->now + 5);
        }
    }
    /* Fetch body. */
    cf_buf fb;
    cf_buf_init(&fb, 0);
    assert_cf_ok(cf_key_fetch_build(e.key_id, sn, &fb));
    char fkid[CF_KEY_ID_LEN + 1];
    uint8_t fn[CF_STREAM_NONCE_LEN];
    assert_cf_ok(cf_key_fetch_parse(cf_buf_slice(&fb), fkid, fn));
    assert_string_equal(fkid, e.key_id);
    assert_memory_equal(fn, sn, sizeof sn);
    assert_cf_error(cf_key_fetch_parse(cf_slice_cstr("{\"key_id\":\"short\"}"), fkid, fn), CF_E_MALFORMED);
    assert_cf_error(cf_key_fetch_parse(cf_slice_cstr("{\"key_id\":\"AAAAAAAAAAAAAAAAAAAAAA\"}"), fkid, fn),
                    CF_E_MALFORMED);
    /* Stream query. */
    char q[CF_STREAM_QUERY_MAX];
    assert_cf_ok(cf_key_stream_query_build(sn, q));
    assert_cf_ok(cf_key_stream_query_parse(q, fn));
    assert_memory_equal(fn, sn, sizeof sn);
    assert_cf_error(cf_key_stream_query_parse(NULL, fn), CF_E_MALFORMED);
    assert_cf_error(cf_key_stream_query_parse("stream=AAAA", fn), CF_E_MALFORMED);
    assert_cf_error(cf_key_stream_query_parse("x=1&stream=AAAAAAAAAAAAAAAAAAAAAA", fn), CF_E_MALFORMED);

    EVP_PKEY_free(evil);
    cf_key_event_wipe(&got);
    cf_hpke_keypair_wipe(&wkp);
    cf_worker_attest_request_free(&ar);
    cf_buf_free(&fb);
    cf_buf_free(&data);
    cf_buf_free(&grant_body);
    cf_buf_free(&tok);
    cf_buf_free(&cb);
    cf_buf_free(&ev);
    cf_buf_free(&col);
    cf_buf_free(&req);
}

static void test_scope_rules(void **state)
{
    (void)state;
    cf_key_scope s;
    static const char *const bad[] = {"[]", "[1]", "[\"a b\"]", "[\"a\",\"a\"]", "\"a\"",
                                      ("[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\","
                                       "\"13\",\"14\",\"15\",\"16\",\"17\"]")};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        assert_true(cf_is_error(cf_key_scope_from_json(j, &s)));
        json_decref(j);
    }
    json_t *j = json_loads("[\"qwen\",\"meta/llama-3:8b\"]", 0, NULL);
    assert_cf_ok(cf_key_scope_from_json(j, &s));
    assert_int_equal(s.count, 2);
    json_t *back = cf_key_scope_to_json(&s);
    assert_true(json_equal(j, back));
    json_decref(back);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_as_attestation),
        cmocka_unit_test(test_upload_receipt_delete),
        cmocka_unit_test(test_worker_join_and_events),
        cmocka_unit_test(test_scope_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
