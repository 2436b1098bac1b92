/* fuzz_tdx_collateral.c — TDX collateral parsing: QuoteCollateralV3 JSON,
 * the raw-span scanner used on PCS bodies (the span must lie inside the input
 * and start with the value), the file classifier and assembler, and the TCB
 * info / QE identity parsers. */
#include <stdint.h>
#include <stdlib.h>

#include "confide/tdx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_slice in = cf_slice_make(data, size);
    cf_tdx_collateral c;
    if (cf_is_ok(cf_tdx_collateral_parse(in, &c))) {
        cf_tdx_collateral_free(&c);
    }
    static const char *const keys[] = {"tcbInfo", "enclaveIdentity", "signature"};
    for (size_t i = 0; i < 3; i++) {
        cf_slice span;
        if (cf_is_ok(cf_tdx_json_member_span(in, keys[i], &span))) {
            if (span.len == 0 || span.ptr < data || span.ptr + span.len > data + size) {
                abort();
            }
        }
    }
    cf_tdx_collateral_parts parts = {0};
    if (cf_is_ok(cf_tdx_collateral_classify(in, &parts))) {
        cf_buf out;
        cf_buf_init(&out, 4u << 20);
        (void)!cf_is_ok(cf_tdx_collateral_assemble(&parts, &out));
        cf_buf_free(&out);
    }
    cf_tdx_tcb_info *t = calloc(1, sizeof *t);
    cf_tdx_qe_identity *q = calloc(1, sizeof *q);
    if (t != NULL && cf_is_ok(cf_tdx_tcb_info_parse(in, t))) {
        if (t->n_levels < 1 || t->n_levels > CF_TDX_MAX_TCB_LEVELS) {
            abort();
        }
        cf_tdx_tcb_info_free(t);
    }
    if (q != NULL && cf_is_ok(cf_tdx_qe_identity_parse(in, q))) {
        cf_tdx_qe_identity_free(q);
    }
    free(t);
    free(q);
    return 0;
}
