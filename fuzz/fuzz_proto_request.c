/* fuzz_proto_request.c — the worker's request decoder on arbitrary bodies
 * (must never crash, leak or release bytes on failure), and the round-trip
 * property: whatever the client can seal, the worker opens to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_proto_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const cf_proto_endpoint *ep = NULL;
    if (cf_is_error(cf_proto_endpoint_by_name(cf_slice_cstr("chat.completions"), &ep))) {
        abort();
    }
    cf_slice in = cf_slice_make(data, size);
    cf_buf out, enc;
    cf_buf_init(&out, 1 << 20);
    cf_buf_init(&enc, 4 << 20);
    cf_proto_session *s = NULL;
    cf_proto_open_options o = {.now_ms = FUZZ_NOW_MS};
    if (cf_is_error(cf_proto_request_open(ep, in, fuzz_lookup, NULL, &o, &out, &s))) {
        if (out.len != 0 || s != NULL) {
            abort(); /* a failure must leave nothing behind */
        }
    }
    cf_proto_session_free(s);
    s = NULL;

    /* Round trip with a fixed salt. */
    uint8_t k[CF_PROTO_SECRET_LEN], salt[CF_PROTO_SALT_LEN] = {0, 0, 1, 0x9a, 0xbd, 0x75, 0xb4, 0x18};
    fuzz_secret(k);
    cf_proto_seal_options so = {.fixed_salt = salt, .pad_bucket = size % 3 == 0 ? 16 : 0};
    if (cf_is_ok(cf_proto_request_seal(ep, k, in, &so, &enc, &s))) {
        cf_proto_session *w = NULL;
        cf_buf_reset(&out);
        cf_proto_open_options wo = {.window_ms = -1};
        if (cf_is_error(cf_proto_request_open(ep, cf_buf_slice(&enc), fuzz_lookup, NULL, &wo, &out, &w)) ||
            out.len != size || (size > 0 && memcmp(out.data, data, size) != 0)) {
            abort();
        }
        cf_proto_session_free(w);
    }
    cf_proto_session_free(s);
    cf_buf_free(&out);
    cf_buf_free(&enc);
    return 0;
}
