/* test_sim.c — the simulated TEE: platform creation, evidence round trip,
 * and one failing check per way evidence can be wrong. */
#include "test_helper.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "confide/attest.h"
#include "confide/encoding.h"
#include "confide/sim.h"

typedef struct fixture {
    char *tmp;
    char dir[512];       /* platform A */
    char other_dir[512]; /* platform B (another root) */
    char fp[65];
    char other_fp[65];
    uint8_t self_measurement[CF_SIM_MEASUREMENT_LEN];
    char self_measurement_hex[2 * CF_SIM_MEASUREMENT_LEN + 1];
    int64_t now;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->tmp = cf_test_tmpdir();
    f->now = (int64_t)time(NULL);
    snprintf(f->dir, sizeof f->dir, "%s/a", f->tmp);
    snprintf(f->other_dir, sizeof f->other_dir, "%s/b", f->tmp);
    cf_sim_init_options opt = {.svn = 3, .now = f->now};
    assert_cf_ok(cf_sim_init(f->dir, &opt));
    assert_cf_ok(cf_sim_init(f->other_dir, &opt));
    assert_cf_ok(cf_sim_root_fingerprint(f->dir, f->fp));
    assert_cf_ok(cf_sim_root_fingerprint(f->other_dir, f->other_fp));
    assert_cf_ok(cf_sim_measure_file("/proc/self/exe", f->self_measurement));
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(f->self_measurement, CF_SIM_MEASUREMENT_LEN), f->self_measurement_hex,
                                   sizeof f->self_measurement_hex));
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

static void fill_report_data(uint8_t rd[CF_REPORT_DATA_LEN], uint8_t seed)
{
    for (size_t i = 0; i < CF_REPORT_DATA_LEN; i++) {
        rd[i] = (uint8_t)(seed + i);
    }
}

/* Collect real evidence of this process on platform `dir`. */
static void collect(const char *dir, const uint8_t rd[CF_REPORT_DATA_LEN], cf_buf *ev, cf_buf *col)
{
    cf_attester_config cfg = {.platform = CF_PLATFORM_SIM, .sim_dir = dir};
    cf_buf_init(ev, 0);
    cf_buf_init(col, 0);
    assert_cf_ok(cf_attest_collect(&cfg, rd, ev, col));
    assert_int_equal(ev->len, CF_SIM_REPORT_LEN);
}

/* Verify with a policy pinning `measurement_hex`, roots = [root_fp]. */
static cf_result verify(const fixture *f, cf_slice ev, cf_slice col, const uint8_t rd[CF_REPORT_DATA_LEN],
                        const char *root_fp, const char *policy_text, int64_t now, cf_claims *claims)
{
    json_error_t jerr;
    json_t *policy = policy_text ? json_loads(policy_text, 0, &jerr) : NULL;
    if (policy_text) {
        assert_non_null(policy);
    }
    json_t *roots = root_fp ? json_pack("[s]", root_fp) : NULL;
    cf_verify_input in = {
        .platform = CF_PLATFORM_SIM,
        .evidence = ev,
        .collateral = col,
        .expected_report_data = rd,
        .policy = policy,
        .accepted_roots = roots,
        .now = now ? now : f->now,
    };
    cf_result r = cf_attest_verify(&in, claims);
    json_decref(policy);
    json_decref(roots);
    return r;
}

static char *policy_for(const char *measurement_hex, const char *extra)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "{\"measurements\": [\"%s\"]%s%s}", measurement_hex, extra ? ", " : "",
             extra ? extra : "");
    return buf;
}

static void test_init_files_and_modes(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *name;
        mode_t mode;
    } files[] = {{CF_SIM_ROOT_KEY, 0600}, {CF_SIM_PLATFORM_KEY, 0600}, {CF_SIM_ROOT_CERT, 0644},
                 {CF_SIM_PLATFORM_CERT, 0644}, {CF_SIM_PLATFORM_CONFIG, 0644}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[600];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", f->dir, files[i].name);
        assert_int_equal(stat(path, &st), 0);
        if (files[i].mode == 0600) {
            assert_int_equal(st.st_mode & 0777, 0600); /* private keys: owner only */
        } else {
            assert_int_equal(st.st_mode & 0600, 0600);
        }
    }
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* An existing platform is never overwritten. */
    cf_sim_init_options opt = {.svn = 1, .now = f->now};
    assert_cf_error(cf_sim_init(f->dir, &opt), CF_E_IO);
    assert_string_not_equal(f->fp, f->other_fp);
    assert_int_equal(strlen(f->fp), 64);
}

static void test_round_trip(void **state)
{
    fixture *f = *state;
    uint8_t rd[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 7);
    cf_buf ev, col;
    collect(f->dir, rd, &ev, &col);
    cf_claims claims;
    assert_cf_ok(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, policy_for(f->self_measurement_hex, NULL),
                        0, &claims));
    assert_int_equal(claims.platform, CF_PLATFORM_SIM);
    assert_memory_equal(claims.report_data, rd, CF_REPORT_DATA_LEN);
    assert_int_equal(claims.measurement_len, CF_SIM_MEASUREMENT_LEN);
    assert_memory_equal(claims.measurement, f->self_measurement, CF_SIM_MEASUREMENT_LEN);
    assert_false(claims.debug);
    assert_string_equal(claims.tcb, "svn=3");
    assert_string_equal(json_string_value(json_object_get(claims.details, "root_fingerprint")), f->fp);
    assert_string_equal(json_string_value(json_object_get(claims.details, "measurement")), f->self_measurement_hex);
    cf_claims_free(&claims);

    /* The parsed layout matches what sim.h documents. */
    cf_sim_report rep;
    assert_cf_ok(cf_sim_report_parse(cf_buf_slice(&ev), &rep));
    assert_int_equal(rep.version, 1);
    assert_int_equal(rep.svn, 3);
    assert_int_equal(rep.flags, 0);
    assert_memory_equal(ev.data + 0x10, f->self_measurement, CF_SIM_MEASUREMENT_LEN);
    assert_memory_equal(ev.data + 0x40, rd, CF_REPORT_DATA_LEN);

    /* NULL policy = production defaults: any measurement, no debug. */
    assert_cf_ok(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, NULL, 0, &claims));
    cf_claims_free(&claims);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void test_wrong_measurement(void **state)
{
    fixture *f = *state;
    uint8_t rd[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 1);
    cf_buf ev, col;
    collect(f->dir, rd, &ev, &col);
    char other[2 * CF_SIM_MEASUREMENT_LEN + 1];
    memcpy(other, f->self_measurement_hex, sizeof other);
    other[0] = other[0] == '0' ? '1' : '0';
    cf_claims claims;
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, policy_for(other, NULL), 0, &claims),
                    CF_E_POLICY);
    assert_non_null(strstr(cf_error_last()->detail, "measurement"));
    assert_null(claims.details); /* no half-filled claims */

    /* A report signed by the platform for another executable. */
    cf_sim_report_params p = {.svn = 3};
    memset(p.measurement, 0xAB, sizeof p.measurement);
    memcpy(p.report_data, rd, sizeof rd);
    cf_buf ev2, col2;
    cf_buf_init(&ev2, 0);
    cf_buf_init(&col2, 0);
    assert_cf_ok(cf_sim_sign_report(f->dir, &p, &ev2, &col2));
    assert_cf_error(verify(f, cf_buf_slice(&ev2), cf_buf_slice(&col2), rd, f->fp,
                           policy_for(f->self_measurement_hex, NULL), 0, &claims),
                    CF_E_POLICY);
    cf_buf_free(&ev2);
    cf_buf_free(&col2);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void test_forged_signature(void **state)
{
    fixture *f = *state;
    uint8_t rd[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 2);
    cf_buf ev, col;
    collect(f->dir, rd, &ev, &col);
    const char *pol = policy_for(f->self_measurement_hex, NULL);
    cf_claims claims;
    /* Flipping any bit of r, s or the signed part breaks the signature. */
    const size_t offsets[] = {0x0A0, 0x0A0 + 47, 0x0E8, 0x0E8 + 20, 0x10, 0x8, 0x9F};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        ev.data[offsets[i]] ^= 0x01;
        assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims),
                        CF_E_BAD_SIGNATURE);
        ev.data[offsets[i]] ^= 0x01;
    }
    /* report_data changed after signing: the signature fails first. */
    ev.data[0x40] ^= 0x80;
    uint8_t rd2[CF_REPORT_DATA_LEN];
    memcpy(rd2, ev.data + 0x40, sizeof rd2);
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd2, f->fp, pol, 0, &claims),
                    CF_E_BAD_SIGNATURE);
    ev.data[0x40] ^= 0x80;
    assert_cf_ok(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims));
    cf_claims_free(&claims);

    /* Signed by platform B but presented with platform A's chain. */
    cf_buf evb, colb;
    collect(f->other_dir, rd, &evb, &colb);
    assert_cf_error(verify(f, cf_buf_slice(&evb), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims),
                    CF_E_BAD_SIGNATURE);
    cf_buf_free(&evb);
    cf_buf_free(&colb);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void test_other_report_data(void **state)
{
    fixture *f = *state;
    uint8_t rd[CF_REPORT_DATA_LEN], expected[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 3);
    fill_report_data(expected, 4);
    cf_buf ev, col;
    collect(f->dir, rd, &ev, &col);
    cf_claims claims;
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), expected, f->fp,
                           policy_for(f->self_measurement_hex, NULL), 0, &claims),
                    CF_E_REPORT_DATA);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void test_untrusted_root(void **state)
{
    fixture *f = *state;
    uint8_t rd[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 5);
    cf_buf ev, col;
    collect(f->dir, rd, &ev, &col);
    const char *pol = policy_for(f->self_measurement_hex, NULL);
    cf_claims claims;
    /* Another sim's root listed. */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->other_fp, pol, 0, &claims), CF_E_CERT);
    assert_non_null(strstr(cf_error_last()->detail, "untrusted root"));
    /* No accepted roots at all (a production manifest). */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, NULL, pol, 0, &claims), CF_E_CERT);
    assert_non_null(strstr(cf_error_last()->detail, "accepted_roots"));

    /* Platform A's report and cert, but B's root appended and trusted:
     * the chain does not lead there. */
    cf_buf col2, rootb;
    cf_buf_init(&col2, 0);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", f->dir, CF_SIM_PLATFORM_CERT);
    cf_test_read_file(path, false, &col2);
    snprintf(path, sizeof path, "%s/%s", f->other_dir, CF_SIM_ROOT_CERT);
    cf_test_read_file(path, false, &rootb);
    assert_cf_ok(cf_buf_append_slice(&col2, cf_buf_slice(&rootb)));
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col2), rd, f->other_fp, pol, 0, &claims), CF_E_CERT);
    cf_buf_free(&col2);
    cf_buf_free(&rootb);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void test_debug_and_svn(void **state)
{
    fixture *f = *state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/dbg", f->tmp);
    cf_sim_init_options opt = {.svn = 2, .debug = true, .now = f->now};
    assert_cf_ok(cf_sim_init(dir, &opt));
    char fp[65];
    assert_cf_ok(cf_sim_root_fingerprint(dir, fp));
    uint8_t rd[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 6);
    cf_buf ev, col;
    collect(dir, rd, &ev, &col);
    cf_claims claims;
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, fp, policy_for(f->self_measurement_hex, NULL),
                           0, &claims),
                    CF_E_POLICY);
    assert_non_null(strstr(cf_error_last()->detail, "debug"));
    /* Production defaults refuse debug too. */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, fp, NULL, 0, &claims), CF_E_POLICY);
    assert_cf_ok(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, fp,
                        policy_for(f->self_measurement_hex, "\"allow_debug\": true"), 0, &claims));
    assert_true(claims.debug);
    cf_claims_free(&claims);
    /* svn 2 below min_svn 3. */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, fp,
                           policy_for(f->self_measurement_hex, "\"allow_debug\": true, \"min_svn\": 3"), 0, &claims),
                    CF_E_TCB);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void test_time_is_explicit(void **state)
{
    fixture *f = *state;
    uint8_t rd[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 8);
    cf_buf ev, col;
    collect(f->dir, rd, &ev, &col);
    const char *pol = policy_for(f->self_measurement_hex, NULL);
    cf_claims claims;
    /* Certificates are valid from now - 1 day for 3650 days. */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, f->now + 3651LL * 86400, &claims),
                    CF_E_EXPIRED);
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, f->now - 2LL * 86400, &claims),
                    CF_E_EXPIRED);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void test_malformed_reports(void **state)
{
    fixture *f = *state;
    uint8_t rd[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 9);
    cf_buf ev, col;
    collect(f->dir, rd, &ev, &col);
    cf_claims claims;
    const char *pol = policy_for(f->self_measurement_hex, NULL);
    for (size_t len = 0; len < CF_SIM_REPORT_LEN; len += 37) {
        assert_cf_error(verify(f, cf_slice_make(ev.data, len), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims),
                        CF_E_MALFORMED);
    }
    assert_cf_ok(cf_buf_append_u8(&ev, 0));
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims), CF_E_MALFORMED);
    ev.len--;
    ev.data[0] = 2; /* version */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims), CF_E_UNSUPPORTED);
    ev.data[0] = 1;
    ev.data[0x4] |= 0x2; /* unknown flag */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims), CF_E_MALFORMED);
    ev.data[0x4] &= (uint8_t)~0x2;
    ev.data[0xC] = 1; /* reserved */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims), CF_E_MALFORMED);
    ev.data[0xC] = 0;
    ev.data[0x0A0 + 60] = 1; /* r padding */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims), CF_E_MALFORMED);
    ev.data[0x0A0 + 60] = 0;
    /* Collateral that is not PEM. */
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_slice_cstr("garbage"), rd, f->fp, pol, 0, &claims),
                    CF_E_CERT);
    assert_cf_ok(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, pol, 0, &claims));
    cf_claims_free(&claims);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void test_policy_validate(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *json;
        const char *detail;
    } bad[] = {
        {"[]", "expected an object"},
        {"{\"measurement\": []}", "measurement: unknown key"},
        {"{\"measurements\": []}", "measurements: expected a non-empty array"},
        {"{\"measurements\": [\"abcd\"]}", "measurements[0]: expected 96 hex digits"},
        {"{\"measurements\": [1]}", "measurements[0]"},
        {"{\"allow_debug\": 1}", "allow_debug: expected true or false"},
        {"{\"min_svn\": -1}", "min_svn: expected an integer"},
        {"{\"min_svn\": \"3\"}", "min_svn"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *p = json_loads(bad[i].json, 0, NULL);
        assert_non_null(p);
        assert_cf_error(cf_attest_policy_validate(CF_PLATFORM_SIM, p), CF_E_CONFIG);
        if (strstr(cf_error_last()->detail, bad[i].detail) == NULL) {
            fail_msg("case %zu: detail '%s' lacks '%s'", i, cf_error_last()->detail, bad[i].detail);
        }
        json_decref(p);
    }
    json_t *good = json_loads(policy_for(f->self_measurement_hex, "\"allow_debug\": false, \"min_svn\": 1"), 0, NULL);
    assert_cf_ok(cf_attest_policy_validate(CF_PLATFORM_SIM, good));
    json_decref(good);
    assert_cf_ok(cf_attest_policy_validate(CF_PLATFORM_SIM, NULL));
}

/* In a manifest a sim policy must list measurements (the executable's
 * SHA-384 is the only workload identity) or opt out explicitly. */
static void test_manifest_policy_pins_workload(void **state)
{
    fixture *f = *state;
    static const char *const unpinned[] = {
        "{}",
        "{\"allow_debug\": false, \"min_svn\": 2}",
        "{\"insecure_allow_any_workload\": false}",
    };
    for (size_t i = 0; i < sizeof unpinned / sizeof unpinned[0]; i++) {
        json_t *p = json_loads(unpinned[i], 0, NULL);
        assert_non_null(p);
        assert_cf_ok(cf_attest_policy_validate_for(CF_PLATFORM_SIM, p, CF_POLICY_USE_OFFLINE));
        assert_cf_error(cf_attest_policy_validate_for(CF_PLATFORM_SIM, p, CF_POLICY_USE_MANIFEST), CF_E_CONFIG);
        const char *d = cf_error_last()->detail;
        if (strstr(d, "missing \"measurements\"") == NULL || strstr(d, "insecure_allow_any_workload") == NULL) {
            fail_msg("case %zu: detail '%s' does not name the missing pin", i, d);
        }
        json_decref(p);
    }
    assert_cf_error(cf_attest_policy_validate_for(CF_PLATFORM_SIM, NULL, CF_POLICY_USE_MANIFEST), CF_E_CONFIG);
    /* Syntax errors keep their own code and detail in manifest use. */
    json_t *p = json_loads("{\"insecure_allow_any_workload\": \"yes\"}", 0, NULL);
    assert_cf_error(cf_attest_policy_validate_for(CF_PLATFORM_SIM, p, CF_POLICY_USE_MANIFEST), CF_E_CONFIG);
    assert_non_null(strstr(cf_error_last()->detail, "insecure_allow_any_workload: expected true or false"));
    json_decref(p);
    assert_cf_error(cf_attest_policy_validate_for(CF_PLATFORM_SIM, NULL, (cf_policy_use)7), CF_E_INVALID_ARGUMENT);

    p = json_loads(policy_for(f->self_measurement_hex, NULL), 0, NULL);
    assert_cf_ok(cf_attest_policy_validate_for(CF_PLATFORM_SIM, p, CF_POLICY_USE_MANIFEST));
    assert_false(cf_attest_policy_allows_any_workload(p));
    json_decref(p);
    p = json_loads("{\"insecure_allow_any_workload\": true}", 0, NULL);
    assert_cf_ok(cf_attest_policy_validate_for(CF_PLATFORM_SIM, p, CF_POLICY_USE_MANIFEST));
    assert_true(cf_attest_policy_allows_any_workload(p));
    json_decref(p);

    /* The opt-out does not weaken verification: listed measurements and
     * the debug rule still apply. */
    uint8_t rd[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 11);
    cf_buf ev, col;
    collect(f->dir, rd, &ev, &col);
    cf_claims claims;
    assert_cf_ok(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp, "{\"insecure_allow_any_workload\": true}",
                        0, &claims));
    cf_claims_free(&claims);
    char other[97];
    memset(other, '0', 96);
    other[96] = '\0';
    assert_cf_error(verify(f, cf_buf_slice(&ev), cf_buf_slice(&col), rd, f->fp,
                           policy_for(other, "\"insecure_allow_any_workload\": true"), 0, &claims),
                    CF_E_POLICY);
    assert_non_null(strstr(cf_error_last()->detail, "measurement"));
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

/* cf_attest_verify refuses a missing verification time for every platform,
 * before the platform's parser sees the evidence. */
static void test_verification_time_required(void **state)
{
    fixture *f = *state;
    uint8_t rd[CF_REPORT_DATA_LEN];
    fill_report_data(rd, 12);
    cf_buf ev, col;
    collect(f->dir, rd, &ev, &col);
    json_t *roots = json_pack("[s]", f->fp);
    const cf_platform platforms[] = {CF_PLATFORM_SIM, CF_PLATFORM_SNP, CF_PLATFORM_TDX};
    const int64_t times[] = {0, -1, INT64_MIN};
    for (size_t i = 0; i < sizeof platforms / sizeof platforms[0]; i++) {
        for (size_t t = 0; t < sizeof times / sizeof times[0]; t++) {
            cf_verify_input in = {
                .platform = platforms[i],
                .evidence = cf_buf_slice(&ev),
                .collateral = cf_buf_slice(&col),
                .expected_report_data = rd,
                .accepted_roots = roots,
                .now = times[t],
            };
            cf_claims claims;
            memset(&claims, 0xA5, sizeof claims);
            assert_cf_error(cf_attest_verify(&in, &claims), CF_E_INVALID_ARGUMENT);
            assert_non_null(strstr(cf_error_last()->detail, "cf_verify_input.now"));
            assert_null(claims.details);
            assert_int_equal(claims.platform, CF_PLATFORM_NONE);
        }
    }
    /* The same evidence verifies with a real time. */
    cf_verify_input in = {.platform = CF_PLATFORM_SIM,
                          .evidence = cf_buf_slice(&ev),
                          .collateral = cf_buf_slice(&col),
                          .expected_report_data = rd,
                          .accepted_roots = roots,
                          .now = f->now};
    cf_claims claims;
    assert_cf_ok(cf_attest_verify(&in, &claims));
    cf_claims_free(&claims);
    json_decref(roots);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void test_collect_needs_dir(void **state)
{
    (void)state;
    uint8_t rd[CF_REPORT_DATA_LEN] = {0};
    cf_buf ev, col;
    cf_buf_init(&ev, 0);
    cf_buf_init(&col, 0);
    cf_attester_config cfg = {.platform = CF_PLATFORM_SIM};
    assert_cf_error(cf_attest_collect(&cfg, rd, &ev, &col), CF_E_CONFIG);
    cfg.sim_dir = "/nonexistent/confide-sim";
    assert_cf_error(cf_attest_collect(&cfg, rd, &ev, &col), CF_E_IO);
    assert_int_equal(ev.len, 0);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_files_and_modes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_measurement),
        cmocka_unit_test(test_forged_signature),
        cmocka_unit_test(test_other_report_data),
        cmocka_unit_test(test_untrusted_root),
        cmocka_unit_test(test_debug_and_svn),
        cmocka_unit_test(test_time_is_explicit),
        cmocka_unit_test(test_malformed_reports),
        cmocka_unit_test(test_policy_validate),
        cmocka_unit_test(test_manifest_policy_pins_workload),
        cmocka_unit_test(test_verification_time_required),
        cmocka_unit_test(test_collect_needs_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
