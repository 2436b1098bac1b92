/* fuzz_proto_sse.c — the client's stream decoder on arbitrary SSE bytes for a
 * fixed request. The first byte chooses the chunk size, so splits are fuzzed
 * too. A stream may only finish OK if its final event authenticated. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_proto_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t step = (size_t)(data[0] % 64) + 1;
    data++;
    size--;
    cf_proto_session *s = fuzz_client_session(fuzz_stream_request);
    cf_buf out;
    cf_buf_init(&out, 4 << 20);
    bool ok = cf_is_ok(cf_proto_stream_begin(s, 200));
    for (size_t i = 0; ok && i < size; i += step) {
        size_t n = size - i < step ? size - i : step;
        ok = cf_is_ok(cf_proto_stream_open_feed(s, cf_slice_make(data + i, n), &out));
    }
    if (ok && cf_is_ok(cf_proto_reply_finish(s)) && !cf_proto_stream_complete(s)) {
        abort();
    }
    cf_proto_session_free(s);
    cf_buf_free(&out);
    return 0;
}
