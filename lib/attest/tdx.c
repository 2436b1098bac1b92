/* tdx.c — placeholder until the tdx verifier lands; refuses everything. */
#include "confide/attest.h"

CF_RESULT cf_tdx_verify(const cf_verify_input *in, cf_claims *out)
{
    (void)in;
    (void)out;
    CF_BAIL_MSG(CF_E_UNSUPPORTED, "tdx verifier not built yet");
}

CF_RESULT cf_tdx_policy_validate(const json_t *policy)
{
    (void)policy;
    CF_BAIL_MSG(CF_E_UNSUPPORTED, "tdx verifier not built yet");
}
