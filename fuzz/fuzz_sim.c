/* fuzz_sim.c — the sim report parser and verifier on hostile bytes.
 * Input: u16be evidence length || evidence || collateral (PEM). The
 * verifier must fail cleanly (the seeds carry a real report + chain, so the
 * fuzzer reaches the chain and signature checks); nothing may crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confide/attest.h"
#include "confide/sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_sim_report rep;
    (void)cf_sim_report_parse(cf_slice_make(data, size), &rep);
    if (size < 2) {
        return 0;
    }
    size_t ev_len = ((size_t)data[0] << 8) | data[1];
    if (ev_len > size - 2) {
        return 0;
    }
    cf_slice ev = cf_slice_make(data + 2, ev_len);
    cf_slice col = cf_slice_make(data + 2 + ev_len, size - 2 - ev_len);
    /* The root of the sim platform that made fuzz/corpus/sim/report_and_chain
     * (valid 2026-11-24..2036-11-22), so mutations reach every check. */
    json_t *roots = json_pack("[s]", "ae440d60f45eeb2a5285bee04050aa56e1843a5222b3ac4dfd263e9cf9254acf");
    json_t *policy = json_pack("{s:b}", "allow_debug", 1);
    cf_verify_input in = {.platform = CF_PLATFORM_SIM, .evidence = ev, .collateral = col,
                          .policy = policy, .accepted_roots = roots, .now = 1800000000};
    cf_claims claims;
    if (cf_is_ok(cf_attest_verify(&in, &claims))) {
        if (claims.details == NULL || claims.measurement_len != CF_SIM_MEASUREMENT_LEN) {
            abort();
        }
        cf_claims_free(&claims);
    }
    json_decref(roots);
    json_decref(policy);
    return 0;
}
