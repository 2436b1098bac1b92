/* client.c — the embedding API of client.h, a thin layer over protocol.h. */
#include "confide/client.h"

#include "confide/protocol.h"

CF_RESULT cf_client_key_id(const uint8_t secret[CF_CLIENT_SECRET_LEN], char key_id[23])
{
    return cf_proto_key_id(secret, key_id);
}

CF_RESULT cf_client_seal_request(const uint8_t secret[CF_CLIENT_SECRET_LEN], const char *endpoint, cf_slice body,
                                 const cf_client_options *opt, cf_buf *out, cf_client_call **call_out)
{
    const cf_proto_endpoint *ep = NULL;
    CF_ENSURE_REF(endpoint);
    CF_GUARD(cf_proto_endpoint_by_name(cf_slice_cstr(endpoint), &ep));
    cf_proto_seal_options o = {0};
    if (opt != NULL) {
        o.now_ms = opt->now_ms;
        o.pad_bucket = opt->pad_bucket;
        o.max_body = opt->max_body;
    }
    return cf_proto_request_seal(ep, secret, body, &o, out, call_out);
}

CF_RESULT cf_client_open_response(cf_client_call *call, int status, cf_slice body, cf_buf *out)
{
    return cf_proto_response_open(call, status, body, out);
}

CF_RESULT cf_client_open_stream(cf_client_call *call, int status, cf_slice chunk, cf_buf *out)
{
    CF_GUARD(cf_proto_stream_begin(call, status));
    return cf_proto_stream_open_feed(call, chunk, out);
}

CF_RESULT cf_client_finish(cf_client_call *call) { return cf_proto_reply_finish(call); }

void cf_client_call_free(cf_client_call *call) { cf_proto_session_free(call); }
