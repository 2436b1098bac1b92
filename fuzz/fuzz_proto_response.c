/* fuzz_proto_response.c — the client's response decoder on arbitrary bodies
 * for a fixed request: never crashes or leaks, releases nothing on failure,
 * and a body that decodes was authenticated (finish agrees). */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_proto_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_proto_session *s = fuzz_client_session(fuzz_chat_request);
    cf_buf out;
    cf_buf_init(&out, 1 << 20);
    if (cf_is_error(cf_proto_response_open(s, 200, cf_slice_make(data, size), &out))) {
        if (out.len != 0 || cf_is_ok(cf_proto_reply_finish(s))) {
            abort();
        }
    } else if (cf_is_error(cf_proto_reply_finish(s))) {
        abort();
    }
    cf_proto_session_free(s);
    cf_buf_free(&out);
    return 0;
}
