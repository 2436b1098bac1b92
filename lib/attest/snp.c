/* snp.c — placeholder until the snp verifier lands; refuses everything. */
#include "confide/attest.h"

CF_RESULT cf_snp_verify(const cf_verify_input *in, cf_claims *out)
{
    (void)in;
    (void)out;
    CF_BAIL_MSG(CF_E_UNSUPPORTED, "snp verifier not built yet");
}

CF_RESULT cf_snp_policy_validate(const json_t *policy)
{
    (void)policy;
    CF_BAIL_MSG(CF_E_UNSUPPORTED, "snp verifier not built yet");
}
