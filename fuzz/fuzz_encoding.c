/* fuzz_encoding.c — strict base64url/base64/hex decoders must never read out
 * of bounds, and every accepted input must re-encode to itself (canonical). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confide/encoding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_buf dec, enc;
    cf_buf_init(&dec, 1 << 20);
    cf_buf_init(&enc, 1 << 20);
    cf_slice in = cf_slice_make(data, size);
    if (cf_is_ok(cf_b64url_decode(in, &dec))) {
        if (cf_is_error(cf_b64url_encode(cf_buf_slice(&dec), &enc)) || !cf_slice_eq(cf_buf_slice(&enc), in)) {
            abort();
        }
    }
    cf_buf_reset(&dec);
    cf_buf_reset(&enc);
    if (cf_is_ok(cf_hex_decode(in, &dec))) {
        if (cf_is_error(cf_hex_encode(cf_buf_slice(&dec), &enc)) || enc.len != size) {
            abort();
        }
    }
    cf_buf_reset(&dec);
    (void)cf_b64_decode(in, &dec);
    cf_buf_free(&dec);
    cf_buf_free(&enc);
    return 0;
}
