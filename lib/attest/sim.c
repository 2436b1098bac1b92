/* sim.c — placeholder until the sim verifier lands; refuses everything. */
#include "confide/attest.h"

CF_RESULT cf_sim_verify(const cf_verify_input *in, cf_claims *out)
{
    (void)in;
    (void)out;
    CF_BAIL_MSG(CF_E_UNSUPPORTED, "sim verifier not built yet");
}

CF_RESULT cf_sim_policy_validate(const json_t *policy)
{
    (void)policy;
    CF_BAIL_MSG(CF_E_UNSUPPORTED, "sim verifier not built yet");
}

CF_RESULT cf_sim_collect(const cf_attester_config *cfg, const uint8_t report_data[CF_REPORT_DATA_LEN],
                         cf_buf *evidence, cf_buf *collateral)
{
    (void)cfg;
    (void)report_data;
    (void)evidence;
    (void)collateral;
    CF_BAIL_MSG(CF_E_UNSUPPORTED, "sim attester not built yet");
}
