/* fuzz_tdx_pck_ext.c — the bounded DER reader for the PCK certificate's SGX
 * extension (OID 1.2.840.113741.1.13.1) must never read out of bounds and
 * must reject anything that is not exactly the profile's structure. */
#include <stdint.h>
#include <stdlib.h>

#include "confide/tdx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_tdx_pck_ext ext;
    if (cf_is_ok(cf_tdx_pck_ext_parse(cf_slice_make(data, size), &ext)) && ext.sgx_type > 2) {
        abort();
    }
    return 0;
}
