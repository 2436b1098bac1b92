/* test_as_client.c — the AS client over HTTP (as_client.h) against an
 * in-process attestation service on the same libevent loop, loopback only.
 *
 * The in-test AS is built from the same as_api.h functions confide-as uses,
 * on a sim platform made for the test; the manifest's AS policy pins this
 * test executable's measurement (the sim "runs" it). Covered: attest, upload
 * with receipt, delete (async and blocking attest), and the failures a
 * client must name precisely: another manifest, a tampered report, a
 * receipt for another upload, the AS's own error codes, an unreachable AS,
 * and cancellation. */
#define _GNU_SOURCE
#include "test_helper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "confide/as_api.h"
#include "confide/as_client.h"
#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/hpke.h"
#include "confide/http_client.h"
#include "confide/http_server.h"
#include "confide/log.h"
#include "confide/sim.h"

typedef enum as_mode {
    AS_OK = 0,
    AS_OTHER_MANIFEST, /* serves another manifest than the pinned one */
    AS_TAMPERED,       /* flips a report byte */
    AS_BAD_RECEIPT,    /* signs a receipt for another upload digest */
    AS_REFUSE,         /* 403 policy_violation */
} as_mode;

typedef struct fixture {
    char *tmp;
    char sim_dir[512];
    struct event_base *base;
    cf_http_server *server;
    cf_http_client *http;
    char url[64];
    cf_manifest *manifest;
    cf_manifest *other;
    cf_hpke_keypair kp;
    EVP_PKEY *sign;
    uint8_t sign_pub[CF_ED25519_PUB_LEN];
    as_mode mode;
    int deletes;
    /* results */
    bool done;
    cf_result result;
    cf_error_code code;
    char detail[300];
    cf_as_identity id;
    cf_key_receipt receipt;
} fixture;

/* ---- the in-test AS ----------------------------------------------------------------- */

static void respond(cf_http_request *req, const cf_buf *b)
{
    if (cf_is_error(cf_http_respond(req, 200, "application/json", cf_buf_slice(b), NULL))) {
        cf_http_stream_end(req);
    }
}

static void as_attest(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    if (f->mode == AS_REFUSE) {
        if (cf_is_error(cf_http_respond_error(req, 403, "invalid_request_error", "policy_violation",
                                              "no attestation for you \xc3\xa9", NULL))) {
            cf_http_stream_end(req);
        }
        return;
    }
    const cf_manifest *m = f->mode == AS_OTHER_MANIFEST ? f->other : f->manifest;
    uint8_t nonce[CF_AS_NONCE_LEN], rd[CF_REPORT_DATA_LEN];
    cf_buf ev, col, body;
    cf_buf_init(&ev, 0);
    cf_buf_init(&col, 0);
    cf_buf_init(&body, 0);
    assert_cf_ok(cf_as_attest_request_parse(cf_http_request_body(req), nonce));
    assert_cf_ok(
        cf_as_report_data(nonce, cf_hpke_keypair_public(&f->kp), cf_slice_make(f->sign_pub, 32), m->sha256, rd));
    cf_attester_config ac = {.platform = CF_PLATFORM_SIM, .sim_dir = f->sim_dir};
    assert_cf_ok(cf_attest_collect(&ac, rd, &ev, &col));
    if (f->mode == AS_TAMPERED) {
        ev.data[0x40] ^= 0x01; /* report_data */
    }
    assert_cf_ok(cf_as_attest_response_build(CF_PLATFORM_SIM, cf_buf_slice(&ev), cf_buf_slice(&col),
                                             cf_hpke_keypair_public(&f->kp), cf_slice_make(f->sign_pub, 32),
                                             cf_buf_slice(&m->bytes), &body));
    respond(req, &body);
    cf_buf_free(&ev);
    cf_buf_free(&col);
    cf_buf_free(&body);
}

static void as_upload(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    cf_key_upload up;
    uint8_t digest[32];
    cf_buf body;
    cf_buf_init(&body, 0);
    assert_cf_ok(cf_key_upload_open(&f->kp, f->manifest->sha256, cf_http_request_body(req), &up, digest));
    cf_key_receipt r = {.expires_at = (int64_t)time(NULL) + up.ttl_s, .scope = up.scope};
    memcpy(r.key_id, up.key_id, sizeof r.key_id);
    if (f->mode == AS_BAD_RECEIPT) {
        digest[0] ^= 1;
    }
    assert_cf_ok(cf_key_receipt_build(f->sign, f->manifest->sha256, digest, &r, &body));
    respond(req, &body);
    cf_key_upload_wipe(&up);
    cf_buf_free(&body);
}

static void as_delete(cf_http_request *req, void *arg)
{
    fixture *f = arg;
    cf_key_delete_request dr;
    assert_cf_ok(cf_key_delete_parse(cf_http_request_body(req), &dr));
    f->deletes++;
    if (cf_is_error(cf_http_respond(req, 200, "application/json", cf_slice_cstr("{}"), NULL))) {
        cf_http_stream_end(req);
    }
}

/* ---- loop helpers ---------------------------------------------------------------------- */

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void run_until_done(fixture *f)
{
    struct event *t = event_new(f->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(t, &tv);
    time_t end = time(NULL) + (cf_test_under_valgrind() ? 60 : 10);
    while (!f->done && time(NULL) <= end) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    event_free(t);
    assert_true(f->done);
}

static void record(fixture *f, cf_result r)
{
    f->done = true;
    f->result = r;
    f->code = cf_is_error(r) ? cf_error_code_last() : CF_E_OK;
    snprintf(f->detail, sizeof f->detail, "%s", cf_is_error(r) ? cf_error_last()->detail : "");
}

static void on_attest(void *arg, cf_result r, cf_as_identity *id)
{
    fixture *f = arg;
    record(f, r);
    if (cf_is_ok(r)) {
        f->id = *id; /* move */
        memset(id, 0, sizeof *id);
    }
}

static void on_upload(void *arg, cf_result r, const cf_key_receipt *receipt)
{
    fixture *f = arg;
    record(f, r);
    if (cf_is_ok(r)) {
        f->receipt = *receipt;
    }
}

static void on_delete(void *arg, cf_result r) { record((fixture *)arg, r); }

static cf_as_endpoint endpoint(fixture *f)
{
    return (cf_as_endpoint){.http = f->http, .base_url = f->url, .timeout_ms = 5000};
}

static void attest(fixture *f)
{
    f->done = false;
    cf_as_endpoint ep = endpoint(f);
    assert_cf_ok(cf_as_attest_start(&ep, f->manifest->sha256, on_attest, f, NULL));
    run_until_done(f);
}

/* ---- fixture ------------------------------------------------------------------------------- */

static char *manifest_text(const char *name, const char *fp, const char *meas)
{
    char *text = NULL;
    assert_true(
        asprintf(&text,
                 "{\"version\": 1, \"name\": \"%s\", \"accepted_roots\": [\"%s\"],"
                 " \"as\": {\"platform\": \"sim\", \"policy\": {\"measurements\": [\"%s\"]}},"
                 " \"workers\": [{\"name\": \"w\", \"platform\": \"sim\", \"policy\": {\"measurements\": [\"%s\"]},"
                 " \"models\": [\"m\"]}],"
                 " \"keys\": {\"ttl_min_s\": 1, \"ttl_max_s\": 3600}}\n",
                 name, fp, meas, meas) > 0);
    return text;
}

static int setup(void **state)
{
    cf_log_set_level(CF_LOG_WARN);
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->tmp = cf_test_tmpdir();
    snprintf(f->sim_dir, sizeof f->sim_dir, "%s/sim", f->tmp);
    cf_sim_init_options opt = {.svn = 1, .now = (int64_t)time(NULL)};
    assert_cf_ok(cf_sim_init(f->sim_dir, &opt));
    char fp[65], meas[97];
    uint8_t m[48];
    assert_cf_ok(cf_sim_root_fingerprint(f->sim_dir, fp));
    assert_cf_ok(cf_sim_measure_file("/proc/self/exe", m));
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(m, 48), meas, sizeof meas));
    char *a = manifest_text("pinned", fp, meas), *b = manifest_text("other", fp, meas);
    assert_cf_ok(cf_manifest_parse(cf_slice_cstr(a), &f->manifest));
    assert_cf_ok(cf_manifest_parse(cf_slice_cstr(b), &f->other));
    free(a);
    free(b);
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &f->kp));
    assert_cf_ok(cf_ed25519_keygen(&f->sign));
    assert_cf_ok(cf_ed25519_public_raw(f->sign, f->sign_pub));
    f->base = event_base_new();
    assert_non_null(f->base);
    cf_http_server_config sc = {.port = 0, .name = "as"};
    assert_cf_ok(cf_http_server_new(f->base, &sc, &f->server));
    assert_cf_ok(cf_http_server_route(f->server, "POST", "/v1/attest", as_attest, f));
    assert_cf_ok(cf_http_server_route(f->server, "POST", "/v1/keys", as_upload, f));
    assert_cf_ok(cf_http_server_route(f->server, "POST", "/v1/keys/delete", as_delete, f));
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%u/", cf_http_server_port(f->server));
    cf_http_client_config cc = {.allow_plain_http = true};
    assert_cf_ok(cf_http_client_new(f->base, &cc, &f->http));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cf_as_identity_free(&f->id);
    cf_http_client_free(f->http);
    cf_http_server_free(f->server);
    event_base_free(f->base);
    cf_manifest_free(f->manifest);
    cf_manifest_free(f->other);
    cf_hpke_keypair_wipe(&f->kp);
    EVP_PKEY_free(f->sign);
    cf_test_rmrf(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

static int reset(void **state)
{
    fixture *f = *state;
    cf_as_identity_free(&f->id);
    memset(&f->id, 0, sizeof f->id);
    f->mode = AS_OK;
    f->done = false;
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_attest_upload_delete(void **state)
{
    fixture *f = *state;
    attest(f);
    assert_cf_ok(f->result);
    assert_int_equal(f->id.platform, CF_PLATFORM_SIM);
    assert_memory_equal(f->id.signing_public_key, f->sign_pub, 32);
    assert_memory_equal(f->id.manifest->sha256, f->manifest->sha256, 32);
    char h[65], s[65], want[65];
    uint8_t d[32];
    assert_cf_ok(cf_as_identity_fingerprints(&f->id, h, s));
    assert_cf_ok(cf_sha256(cf_slice_make(f->sign_pub, 32), d));
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(d, 32), want, sizeof want));
    assert_string_equal(s, want);

    uint8_t k[CF_INFERENCE_KEY_LEN];
    char key_id[CF_KEY_ID_LEN + 1];
    assert_cf_ok(cf_key_generate(k, key_id));
    cf_key_scope scope = {.count = 1};
    snprintf(scope.models[0], sizeof scope.models[0], "m");
    cf_as_endpoint ep = endpoint(f);
    f->done = false;
    assert_cf_ok(cf_as_upload_start(&ep, &f->id, k, 600, &scope, on_upload, f, NULL));
    run_until_done(f);
    assert_cf_ok(f->result);
    assert_string_equal(f->receipt.key_id, key_id);
    assert_true(f->receipt.expires_at >= (int64_t)time(NULL) + 590);

    f->done = false;
    assert_cf_ok(cf_as_delete_start(&ep, k, key_id, f->receipt.expires_at, on_delete, f, NULL));
    run_until_done(f);
    assert_cf_ok(f->result);
    assert_int_equal(f->deletes, 1);
    cf_wipe(k, sizeof k);
}

static void test_attest_other_manifest(void **state)
{
    fixture *f = *state;
    f->mode = AS_OTHER_MANIFEST;
    attest(f);
    assert_true(cf_is_error(f->result));
    assert_int_equal(f->code, CF_E_POLICY);
    assert_non_null(strstr(f->detail, "other than the pinned one"));
}

static void test_attest_tampered(void **state)
{
    fixture *f = *state;
    f->mode = AS_TAMPERED;
    attest(f);
    assert_true(cf_is_error(f->result));
    /* The signature covers report_data: the tampered report fails either on
     * the signature or on the binding. */
    assert_true(f->code == CF_E_BAD_SIGNATURE || f->code == CF_E_REPORT_DATA);
}

static void test_receipt_for_another_upload(void **state)
{
    fixture *f = *state;
    attest(f);
    assert_cf_ok(f->result);
    f->mode = AS_BAD_RECEIPT;
    uint8_t k[CF_INFERENCE_KEY_LEN];
    char key_id[CF_KEY_ID_LEN + 1];
    assert_cf_ok(cf_key_generate(k, key_id));
    cf_key_scope scope = {.count = 1};
    snprintf(scope.models[0], sizeof scope.models[0], "m");
    cf_as_endpoint ep = endpoint(f);
    f->done = false;
    assert_cf_ok(cf_as_upload_start(&ep, &f->id, k, 600, &scope, on_upload, f, NULL));
    run_until_done(f);
    assert_true(cf_is_error(f->result));
    assert_int_equal(f->code, CF_E_BAD_SIGNATURE);
    cf_wipe(k, sizeof k);
}

static void test_as_error_code_kept(void **state)
{
    fixture *f = *state;
    f->mode = AS_REFUSE;
    attest(f);
    assert_true(cf_is_error(f->result));
    assert_int_equal(f->code, CF_E_POLICY);
    /* Untrusted text reduced to printable ASCII. */
    assert_string_equal(f->detail, "AS answered HTTP 403: policy_violation: no attestation for you ??");
}

static void test_unreachable_and_blocking(void **state)
{
    fixture *f = *state;
    cf_as_endpoint ep = {.http = f->http, .base_url = "http://127.0.0.1:1", .timeout_ms = 2000};
    f->done = false;
    assert_cf_ok(cf_as_attest_start(&ep, f->manifest->sha256, on_attest, f, NULL));
    run_until_done(f);
    assert_int_equal(f->code, CF_E_IO);
    assert_non_null(strstr(f->detail, "AS unreachable: connect_failed"));
    /* The blocking form runs its own loop (its success path is covered by
     * itest_proxy through `confide attest`): plain http:// is refused unless
     * allowed, and an unreachable AS is io_error. */
    cf_http_client_config strict = {0};
    cf_as_identity id;
    assert_cf_error(cf_as_attest_fetch(&strict, "http://127.0.0.1:1", 1000, f->manifest->sha256, 0, &id), CF_E_POLICY);
    cf_http_client_config plain = {.allow_plain_http = true};
    assert_cf_error(cf_as_attest_fetch(&plain, "http://127.0.0.1:1", 1000, f->manifest->sha256, 0, &id), CF_E_IO);
}

static void test_cancel(void **state)
{
    fixture *f = *state;
    cf_as_endpoint ep = endpoint(f);
    cf_as_op *op = NULL;
    f->done = false;
    assert_cf_ok(cf_as_attest_start(&ep, f->manifest->sha256, on_attest, f, &op));
    cf_as_op_cancel(op);
    /* Let the loop run a while: the callback must never come. */
    struct timeval tv = {0, 200000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
    assert_false(f->done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_attest_upload_delete, reset),
        cmocka_unit_test_setup(test_attest_other_manifest, reset),
        cmocka_unit_test_setup(test_attest_tampered, reset),
        cmocka_unit_test_setup(test_receipt_for_another_upload, reset),
        cmocka_unit_test_setup(test_as_error_code_kept, reset),
        cmocka_unit_test_setup(test_unreachable_and_blocking, reset),
        cmocka_unit_test_setup(test_cancel, reset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
