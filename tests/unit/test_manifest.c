/* test_manifest.c — manifest identity, strict validation (each bad field
 * named), the sim builder, and verification through the manifest. */
#include "test_helper.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "confide/encoding.h"
#include "confide/manifest.h"
#include "confide/sim.h"

typedef struct fixture {
    char *tmp;
    char dir[512];
    char fp[65];
    char m_hex[97];
    int64_t now;
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
    assert_cf_ok(cf_sim_root_fingerprint(f->dir, f->fp));
    uint8_t m[48];
    assert_cf_ok(cf_sim_measure_file("/proc/self/exe", m));
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(m, 48), f->m_hex, sizeof f->m_hex));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cf_test_rmrf(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

/* A valid manifest with two worker policies; %1$s = root fp, %2$s = this
 * binary's measurement. */
static const char *const valid_template =
    "{\"version\": 1, \"name\": \"test\", \"accepted_roots\": [\"%1$s\"],\n"
    " \"as\": {\"platform\": \"sim\", \"policy\": {\"measurements\": [\"%2$s\"]}},\n"
    " \"workers\": [\n"
    "  {\"name\": \"other\", \"platform\": \"sim\", \"policy\": {\"measurements\": "
    "[\"" "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "\"]}, \"models\": [\"m-other\"]},\n"
    "  {\"name\": \"mine\", \"platform\": \"sim\", \"policy\": {\"measurements\": [\"%2$s\"], \"min_svn\": 1},"
    " \"models\": [\"llama-small\", \"qwen/0.5b\"]}],\n"
    " \"keys\": {\"ttl_min_s\": 30, \"ttl_max_s\": 3600}}\n";

/* Substitute %1$s and %2$s (no printf: the template is not a literal). */
static char *render(const fixture *f, const char *tmpl)
{
    cf_buf out;
    cf_buf_init(&out, 0);
    for (const char *p = tmpl; *p != '\0';) {
        if (strncmp(p, "%1$s", 4) == 0 || strncmp(p, "%2$s", 4) == 0) {
            assert_cf_ok(cf_buf_append_cstr(&out, p[1] == '1' ? f->fp : f->m_hex));
            p += 4;
        } else {
            assert_cf_ok(cf_buf_append_u8(&out, (uint8_t)*p++));
        }
    }
    assert_cf_ok(cf_buf_append_u8(&out, 0));
    return (char *)cf_buf_take(&out, NULL);
}

static void test_valid_and_identity(void **state)
{
    fixture *f = *state;
    char *text = render(f, valid_template);
    cf_manifest *m = NULL;
    assert_cf_ok(cf_manifest_parse(cf_slice_cstr(text), &m));
    uint8_t want[32];
    unsigned int len;
    assert_int_equal(EVP_Digest(text, strlen(text), want, &len, EVP_sha256(), NULL), 1);
    assert_memory_equal(m->sha256, want, 32);
    assert_string_equal(m->name, "test");
    assert_int_equal(m->as_platform, CF_PLATFORM_SIM);
    assert_int_equal(m->worker_count, 2);
    assert_string_equal(m->workers[1].name, "mine");
    assert_int_equal(m->ttl_min_s, 30);
    assert_int_equal(m->ttl_max_s, 3600);
    assert_int_equal(json_array_size(m->accepted_roots), 1);
    assert_true(cf_manifest_worker_serves(&m->workers[1], cf_slice_cstr("qwen/0.5b")));
    assert_false(cf_manifest_worker_serves(&m->workers[1], cf_slice_cstr("qwen/0.5")));
    assert_false(cf_manifest_worker_serves(&m->workers[0], cf_slice_cstr("llama-small")));
    assert_true(cf_manifest_serves(m, cf_slice_cstr("m-other")));
    assert_false(cf_manifest_serves(m, cf_slice_cstr("gpt-4")));
    assert_int_equal(m->bytes.len, strlen(text));

    cf_buf out;
    cf_buf_init(&out, 0);
    assert_cf_ok(cf_manifest_describe(m, &out));
    const char *desc;
    assert_cf_ok(cf_buf_cstr(&out, &desc));
    assert_non_null(strstr(desc, m->sha256_hex));
    assert_non_null(strstr(desc, "worker policy mine"));
    assert_non_null(strstr(desc, "NOT hardware-backed"));
    cf_buf_free(&out);
    cf_manifest_free(m);

    /* One changed byte (whitespace) is a different manifest. */
    text[strlen(text) - 1] = ' ';
    assert_cf_ok(cf_manifest_parse(cf_slice_cstr(text), &m));
    assert_memory_not_equal(m->sha256, want, 32);
    cf_manifest_free(m);
    free(text);
}

static void test_invalid_named(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *from, *to, *detail;
    } edits[] = {
        {"\"version\": 1", "\"version\": 2", "manifest.version: expected integer 1..1"},
        {"\"version\": 1, ", "", "manifest.version: missing"},
        {"\"name\": \"test\"", "\"name\": 5", "manifest.name: expected a string"},
        {"\"name\": \"test\"", "\"nmae\": \"test\"", "manifest.nmae: unknown key"},
        {"[\"%1$s\"]", "[\"abc\"]", "manifest.accepted_roots[0]: expected 64 hex digits"},
        {"[\"%1$s\"]", "[]", "manifest.as.platform: sim needs the sim root"},
        {"{\"platform\": \"sim\", \"policy\": {\"measurements\": [\"%2$s\"]}}", "[]", "manifest.as: expected object"},
        {"\"as\": {\"platform\": \"sim\"", "\"as\": {\"platform\": \"sgx\"", "manifest.as.platform: unknown platform"},
        {"\"policy\": {\"measurements\": [\"%2$s\"]}},", "\"policy\": {\"measurement\": []}},",
         "manifest.as.policy: measurement: unknown key"},
        {"\"policy\": {\"measurements\": [\"%2$s\"]}},", "\"extra\": 1},", "manifest.as.extra: unknown key"},
        {"\"models\": [\"llama-small\", \"qwen/0.5b\"]", "\"models\": \"llama-small\"",
         "manifest.workers[1].models: expected array of strings"},
        {"\"models\": [\"llama-small\", \"qwen/0.5b\"]", "\"models\": [\"llama small\"]",
         "manifest.workers[1].models[0]: expected a model name"},
        {"\"models\": [\"llama-small\", \"qwen/0.5b\"]", "\"models\": [\"a\", \"a\"]",
         "manifest.workers[1].models[1]: duplicate of models[0]"},
        {"\"models\": [\"llama-small\", \"qwen/0.5b\"]", "\"models\": []", "manifest.workers[1].models: expected array"},
        {"\"name\": \"mine\"", "\"name\": \"other\"", "manifest.workers[1].name: duplicate"},
        {"\"min_svn\": 1}", "\"min_svn\": \"1\"}", "manifest.workers[1].policy: min_svn"},
        {"\"name\": \"mine\", ", "\"name\": \"mine\", \"gpu\": true, ", "manifest.workers[1].gpu: unknown key"},
        {"\"ttl_max_s\": 3600", "\"ttl_max_s\": 10", "manifest.keys.ttl_max_s: must be >= ttl_min_s"},
        {"\"ttl_max_s\": 3600", "\"ttl_max_s\": 99999999", "manifest.keys.ttl_max_s: expected integer"},
        {"\"ttl_min_s\": 30, ", "", "manifest.keys.ttl_min_s: missing"},
        {"\"ttl_min_s\": 30", "\"ttl_min_s\": 30.0", "manifest.keys.ttl_min_s: expected integer"},
        {"\"keys\": {", "\"keys\": {\"ttl\": 1, ", "manifest.keys.ttl: unknown key"},
        {"\"name\": \"test\"", "\"name\": \"test\", \"name\": \"x\"", "manifest: invalid JSON"},
        {"\"workers\": [", "\"workers\": [1, ", "manifest.workers[0]: expected object"},
        /* Every policy in a manifest must pin the workload. */
        {"\"policy\": {\"measurements\": [\"%2$s\"]}},", "\"policy\": {\"allow_debug\": false}},",
         "manifest.as.policy: sim policy: pins no workload: missing \"measurements\""},
        {"\"policy\": {\"measurements\": [\"%2$s\"], \"min_svn\": 1}", "\"policy\": {\"min_svn\": 1}",
         "manifest.workers[1].policy: sim policy: pins no workload: missing \"measurements\""},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        const char *at = strstr(valid_template, edits[i].from);
        if (at == NULL) {
            fail_msg("case %zu: template lacks '%s'", i, edits[i].from);
        }
        char tmpl[4096];
        size_t head = (size_t)(at - valid_template);
        snprintf(tmpl, sizeof tmpl, "%.*s%s%s", (int)head, valid_template, edits[i].to, at + strlen(edits[i].from));
        char *text = render(f, tmpl);
        cf_manifest *m = NULL;
        cf_result r = cf_manifest_parse(cf_slice_cstr(text), &m);
        if (cf_is_ok(r)) {
            fail_msg("case %zu accepted: %s", i, text);
        }
        assert_null(m);
        if (strstr(cf_error_last()->detail, edits[i].detail) == NULL) {
            fail_msg("case %zu: detail '%s' lacks '%s'", i, cf_error_last()->detail, edits[i].detail);
        }
        /* A malformed manifest (its policies included) is bad_config;
         * policy_violation is kept for evidence that fails a policy. */
        if (cf_error_code_last() != CF_E_CONFIG) {
            fail_msg("case %zu: %s, expected bad_config", i, cf_error_name(cf_error_code_last()));
        }
        free(text);
    }
    cf_manifest *m = NULL;
    assert_cf_error(cf_manifest_parse(cf_slice_cstr("[]"), &m), CF_E_CONFIG);
    assert_cf_error(cf_manifest_parse(cf_slice_cstr("{\"version\":1} x"), &m), CF_E_CONFIG);
    assert_cf_error(cf_manifest_parse(cf_slice_cstr(""), &m), CF_E_CONFIG);
    assert_cf_error(cf_manifest_load("/nonexistent/manifest.json", &m), CF_E_IO);
    assert_null(m);
}

static void test_build_sim_and_verify(void **state)
{
    fixture *f = *state;
    const char *models[] = {"llama-small", "qwen"};
    cf_manifest_sim_params p = {
        .sim_dir = f->dir,
        .as_binary = "/proc/self/exe",
        .worker_binary = "/proc/self/exe",
        .models = models,
        .model_count = 2,
        .ttl_max_s = 7200,
    };
    cf_buf text;
    cf_buf_init(&text, 0);
    assert_cf_ok(cf_manifest_build_sim(&p, &text));
    cf_manifest *m = NULL;
    assert_cf_ok(cf_manifest_parse(cf_buf_slice(&text), &m));
    assert_int_equal(m->ttl_min_s, 60);
    assert_int_equal(m->ttl_max_s, 7200);
    assert_string_equal(json_string_value(json_array_get(m->accepted_roots, 0)), f->fp);
    assert_true(cf_manifest_serves(m, cf_slice_cstr("qwen")));

    uint8_t rd[CF_REPORT_DATA_LEN];
    memset(rd, 0x5A, sizeof rd);
    cf_attester_config cfg = {.platform = CF_PLATFORM_SIM, .sim_dir = f->dir};
    cf_buf ev, col;
    cf_buf_init(&ev, 0);
    cf_buf_init(&col, 0);
    assert_cf_ok(cf_attest_collect(&cfg, rd, &ev, &col));
    cf_claims claims;
    assert_cf_ok(cf_manifest_verify_as(m, CF_PLATFORM_SIM, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->now, &claims));
    cf_claims_free(&claims);
    size_t idx = 99;
    assert_cf_ok(cf_manifest_verify_worker(m, CF_PLATFORM_SIM, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->now, &idx,
                                           &claims));
    assert_int_equal(idx, 0);
    cf_claims_free(&claims);
    assert_cf_error(cf_manifest_verify_as(m, CF_PLATFORM_SNP, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->now,
                                          &claims),
                    CF_E_POLICY);
    assert_cf_error(cf_manifest_verify_worker(m, CF_PLATFORM_TDX, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->now,
                                              &idx, &claims),
                    CF_E_POLICY);
    assert_non_null(strstr(cf_error_last()->detail, "no worker policy for platform tdx"));
    cf_manifest_free(m);

    /* The worker binary is not this one: the worker policy refuses. */
    p.worker_binary = "/bin/sh";
    cf_buf_reset(&text);
    assert_cf_ok(cf_manifest_build_sim(&p, &text));
    assert_cf_ok(cf_manifest_parse(cf_buf_slice(&text), &m));
    assert_cf_error(cf_manifest_verify_worker(m, CF_PLATFORM_SIM, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->now,
                                              &idx, &claims),
                    CF_E_POLICY);
    assert_non_null(strstr(cf_error_last()->detail, "manifest.workers[0]: measurement"));
    cf_manifest_free(m);

    p.sim_dir = "/nonexistent";
    assert_cf_error(cf_manifest_build_sim(&p, &text), CF_E_IO);
    cf_buf_free(&ev);
    cf_buf_free(&col);
    cf_buf_free(&text);
}

static void test_picks_matching_worker_policy(void **state)
{
    fixture *f = *state;
    char *text = render(f, valid_template);
    cf_manifest *m = NULL;
    assert_cf_ok(cf_manifest_parse(cf_slice_cstr(text), &m));
    uint8_t rd[CF_REPORT_DATA_LEN] = {1};
    cf_attester_config cfg = {.platform = CF_PLATFORM_SIM, .sim_dir = f->dir};
    cf_buf ev, col;
    cf_buf_init(&ev, 0);
    cf_buf_init(&col, 0);
    assert_cf_ok(cf_attest_collect(&cfg, rd, &ev, &col));
    cf_claims claims;
    size_t idx = 0;
    assert_cf_ok(cf_manifest_verify_worker(m, CF_PLATFORM_SIM, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->now, &idx,
                                           &claims));
    assert_int_equal(idx, 1);
    assert_string_equal(m->workers[idx].name, "mine");
    cf_claims_free(&claims);
    /* Wrong report_data: the first policy's error is reported. */
    uint8_t other[CF_REPORT_DATA_LEN] = {2};
    assert_cf_error(cf_manifest_verify_worker(m, CF_PLATFORM_SIM, cf_buf_slice(&ev), cf_buf_slice(&col), other, f->now,
                                              &idx, &claims),
                    CF_E_REPORT_DATA);
    assert_non_null(strstr(cf_error_last()->detail, "manifest.workers[0]"));
    cf_manifest_free(m);
    free(text);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

/* A manifest with a sim AS and one worker "gpu" with `policy` on
 * `platform`; with for_as, the AS gets that policy and the worker is sim. */
static cf_result parse_with(const fixture *f, const char *platform, const char *policy, bool for_as, cf_manifest **m)
{
    char sim_policy[160], text[2048];
    snprintf(sim_policy, sizeof sim_policy, "{\"measurements\": [\"%s\"]}", f->m_hex);
    snprintf(text, sizeof text,
             "{\"version\": 1, \"accepted_roots\": [\"%s\"],\n"
             " \"as\": {\"platform\": \"%s\", \"policy\": %s},\n"
             " \"workers\": [{\"name\": \"gpu\", \"platform\": \"%s\", \"policy\": %s, \"models\": [\"m\"]}],\n"
             " \"keys\": {\"ttl_min_s\": 30, \"ttl_max_s\": 3600}}\n",
             f->fp, for_as ? platform : "sim", for_as ? policy : sim_policy, for_as ? "sim" : platform,
             for_as ? sim_policy : policy);
    return cf_manifest_parse(cf_slice_cstr(text), m);
}

#define H96 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define H64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* snp and tdx policies must name the workload, or opt out loudly. */
static void test_hardware_policies_pin_workload(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *platform, *policy;
        bool for_as;
        const char *detail; /* NULL = accepted */
    } cases[] = {
        {"snp", "{\"vmpl\": 0, \"min_tcb\": {\"snp\": 22}}", false,
         "manifest.workers[0].policy: snp policy: pins no workload: missing \"measurements\""},
        {"snp", "{\"host_data\": [\"" H64 "\"]}", false, "manifest.workers[0].policy: snp policy: pins no workload"},
        {"snp", "{}", true, "manifest.as.policy: snp policy: pins no workload"},
        {"snp", "{\"measurements\": [\"" H96 "\"], \"vmpl\": 0}", false, NULL},
        {"snp", "{\"id_key_digests\": [\"" H96 "\"]}", true, NULL},
        {"tdx", "{}", true, "manifest.as.policy: tdx policy: pins no workload: missing mrtd, rtmr0, rtmr1, rtmr2"},
        {"tdx", "{\"mrtd\": \"" H96 "\"}", false,
         "manifest.workers[0].policy: tdx policy: pins no workload: missing rtmr0, rtmr1, rtmr2"},
        {"tdx", "{\"mrtd\": \"" H96 "\", \"rtmr0\": \"" H96 "\", \"rtmr2\": [\"" H96 "\"]}", false,
         "manifest.workers[0].policy: tdx policy: pins no workload: missing rtmr1"},
        {"tdx", "{\"mrtd\": \"" H96 "\", \"rtmr0\": \"" H96 "\", \"rtmr1\": \"" H96 "\", \"rtmr2\": [\"" H96 "\"]}",
         false, NULL},
        {"tdx", "{\"insecure_allow_any_workload\": \"true\"}", false, "manifest.workers[0].policy: tdx policy: "
                                                                       "\"insecure_allow_any_workload\" has a bad value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cf_manifest *m = NULL;
        cf_result r = parse_with(f, cases[i].platform, cases[i].policy, cases[i].for_as, &m);
        if (cases[i].detail == NULL) {
            if (cf_is_error(r)) {
                fail_msg("case %zu refused: %s", i, cf_error_last()->detail);
            }
            assert_false(m->as_any_workload);
            assert_false(m->workers[0].any_workload);
            cf_buf out;
            cf_buf_init(&out, 0);
            assert_cf_ok(cf_manifest_describe(m, &out));
            const char *desc;
            assert_cf_ok(cf_buf_cstr(&out, &desc));
            assert_null(strstr(desc, "INSECURE"));
            cf_buf_free(&out);
            cf_manifest_free(m);
            continue;
        }
        if (cf_is_ok(r)) {
            fail_msg("case %zu accepted", i);
        }
        assert_int_equal(cf_error_last()->code, CF_E_CONFIG);
        assert_null(m);
        if (strstr(cf_error_last()->detail, cases[i].detail) == NULL) {
            fail_msg("case %zu: detail '%s' lacks '%s'", i, cf_error_last()->detail, cases[i].detail);
        }
    }
}

/* The explicit opt-out loads, and `manifest show` says so first. */
static void test_insecure_opt_out_is_flagged(void **state)
{
    fixture *f = *state;
    const char *const platforms[] = {"snp", "tdx", "sim"};
    for (size_t i = 0; i < 3; i++) {
        for (int as = 0; as <= 1; as++) {
            cf_manifest *m = NULL;
            assert_cf_ok(parse_with(f, platforms[i], "{\"insecure_allow_any_workload\": true}", as, &m));
            assert_int_equal(m->as_any_workload, as == 1);
            assert_int_equal(m->workers[0].any_workload, as == 0);
            cf_buf out;
            cf_buf_init(&out, 0);
            assert_cf_ok(cf_manifest_describe(m, &out));
            const char *desc;
            assert_cf_ok(cf_buf_cstr(&out, &desc));
            const char *warn = strstr(desc, as ? "!!! WARNING: the attestation service policy is INSECURE: "
                                                 "insecure_allow_any_workload"
                                               : "!!! WARNING: worker policy gpu is INSECURE: "
                                                 "insecure_allow_any_workload");
            if (warn == NULL) {
                fail_msg("%s/%d: no warning in:\n%s", platforms[i], as, desc);
            }
            /* Before the hash and anything else a reader might stop at. */
            assert_true(warn < strstr(desc, "sha256:"));
            assert_non_null(strstr(desc, "    !!! INSECURE"));
            cf_buf_free(&out);
            cf_manifest_free(m);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_identity),
        cmocka_unit_test(test_invalid_named),
        cmocka_unit_test(test_build_sim_and_verify),
        cmocka_unit_test(test_picks_matching_worker_policy),
        cmocka_unit_test(test_hardware_policies_pin_workload),
        cmocka_unit_test(test_insecure_opt_out_is_flagged),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
