/* attest.c — platform names and the verifier dispatch table (see attest.h). */
#include "confide/attest.h"

#include <string.h>

typedef struct platform_entry {
    cf_platform platform;
    const char *name;
    cf_result (*verify)(const cf_verify_input *in, cf_claims *out);
    cf_result (*policy_validate)(const json_t *policy);
    cf_result (*policy_pins_workload)(const json_t *policy);
} platform_entry;

static const platform_entry platforms[] = {
    {CF_PLATFORM_SIM, "sim", cf_sim_verify, cf_sim_policy_validate, cf_sim_policy_pins_workload},
    {CF_PLATFORM_SNP, "snp", cf_snp_verify, cf_snp_policy_validate, cf_snp_policy_pins_workload},
    {CF_PLATFORM_TDX, "tdx", cf_tdx_verify, cf_tdx_policy_validate, cf_tdx_policy_pins_workload},
};

static const platform_entry *find(cf_platform p)
{
    for (size_t i = 0; i < sizeof platforms / sizeof platforms[0]; i++) {
        if (platforms[i].platform == p) {
            return &platforms[i];
        }
    }
    return NULL;
}

const char *cf_platform_name(cf_platform p)
{
    const platform_entry *e = find(p);
    return e ? e->name : "none";
}

CF_RESULT cf_platform_parse(const char *name, cf_platform *out)
{
    CF_ENSURE_REF(name);
    for (size_t i = 0; i < sizeof platforms / sizeof platforms[0]; i++) {
        if (strcmp(platforms[i].name, name) == 0) {
            *out = platforms[i].platform;
            return CF_OK;
        }
    }
    CF_BAIL_FMT(CF_E_UNSUPPORTED, "unknown platform '%.32s' (expected sim, snp or tdx)", name);
}

void cf_claims_free(cf_claims *c)
{
    if (c != NULL) {
        json_decref(c->details);
        memset(c, 0, sizeof *c);
    }
}

CF_RESULT cf_attest_verify(const cf_verify_input *in, cf_claims *out)
{
    CF_ENSURE_REF(in);
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    const platform_entry *e = find(in->platform);
    CF_ENSURE_MSG(e != NULL, CF_E_UNSUPPORTED, "unknown platform");
    /* DESIGN §5: the verification time is always an explicit input; 0 is a
     * caller that forgot it, never "now". Checked here once for every
     * platform (certificate and collateral windows depend on it). */
    CF_ENSURE_MSG(in->now > 0, CF_E_INVALID_ARGUMENT,
                  "verification time must be explicit (cf_verify_input.now is not a positive Unix time)");
    cf_result r = e->verify(in, out);
    if (cf_is_error(r)) {
        /* Never hand half-filled claims to a caller that ignores the result. */
        cf_claims_free(out);
        return CF_ERROR;
    }
    out->platform = in->platform;
    return CF_OK;
}

CF_RESULT cf_attest_policy_validate(cf_platform p, const json_t *policy)
{
    return cf_attest_policy_validate_for(p, policy, CF_POLICY_USE_OFFLINE);
}

CF_RESULT cf_attest_policy_validate_for(cf_platform p, const json_t *policy, cf_policy_use use)
{
    const platform_entry *e = find(p);
    CF_ENSURE_MSG(e != NULL, CF_E_UNSUPPORTED, "unknown platform");
    switch (use) {
    case CF_POLICY_USE_OFFLINE: return e->policy_validate(policy);
    case CF_POLICY_USE_MANIFEST: return e->policy_pins_workload(policy);
    default: CF_BAIL_MSG(CF_E_INVALID_ARGUMENT, "unknown policy use");
    }
}

bool cf_attest_policy_allows_any_workload(const json_t *policy)
{
    return json_is_object(policy) && json_is_true(json_object_get(policy, CF_POLICY_KEY_ANY_WORKLOAD));
}

CF_RESULT cf_attest_collect(const cf_attester_config *cfg, const uint8_t report_data[CF_REPORT_DATA_LEN],
                            cf_buf *evidence, cf_buf *collateral)
{
    CF_ENSURE_REF(cfg);
    switch (cfg->platform) {
    case CF_PLATFORM_SIM: return cf_sim_collect(cfg, report_data, evidence, collateral);
    case CF_PLATFORM_SNP:
    case CF_PLATFORM_TDX: return cf_tsm_collect(cfg, report_data, evidence, collateral);
    default: CF_BAIL_MSG(CF_E_UNSUPPORTED, "no evidence collector for this platform");
    }
}
