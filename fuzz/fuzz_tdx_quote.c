/* fuzz_tdx_quote.c — the TDX quote parser (v4/v5, nested certification data)
 * must never read out of bounds, and an accepted quote must describe itself
 * consistently (every slice inside the input, lengths adding up). The PCK
 * chain it carries is then fed to the PEM chain loader. */
#include <stdint.h>
#include <stdlib.h>

#include "attest/tdx_internal.h"
#include "confide/tdx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(cf_slice s, const uint8_t *data, size_t size)
{
    if (s.len > 0 && (s.ptr < data || s.ptr + s.len > data + size)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_tdx_quote q;
    if (cf_is_error(cf_tdx_quote_parse(cf_slice_make(data, size), &q))) {
        return 0;
    }
    if (q.tee_type != CF_TDX_TEE_TYPE || (q.version != 4 && q.version != 5) || q.quote_len + q.trailing_len != size) {
        abort();
    }
    inside(q.signed_region, data, size);
    inside(q.qe_report_raw, data, size);
    inside(q.qe_auth_data, data, size);
    inside(q.pck_chain_pem, data, size);
    STACK_OF(X509) *chain = NULL;
    if (cf_is_ok(tdx_load_pem_chain(q.pck_chain_pem, &chain))) {
        if (sk_X509_num(chain) < 1 || sk_X509_num(chain) > TDX_MAX_CHAIN_CERTS) {
            abort();
        }
        sk_X509_pop_free(chain, X509_free);
    }
    return 0;
}
