/* fuzz_proto_common.h — fixed key, clock and requests shared by the protocol
 * fuzzers (taken from tests/vectors/protocol-v1.json, so the committed vectors
 * seed the corpora). */
#ifndef CONFIDE_FUZZ_PROTO_COMMON_H
#define CONFIDE_FUZZ_PROTO_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "confide/protocol.h"

#define FUZZ_NOW_MS INT64_C(1764115200000)

/* The vectors' secret: bytes 00..1f. */
static inline void fuzz_secret(uint8_t k[CF_PROTO_SECRET_LEN])
{
    for (int i = 0; i < CF_PROTO_SECRET_LEN; i++) {
        k[i] = (uint8_t)i;
    }
}

static inline CF_RESULT fuzz_lookup(void *ctx, const char *key_id, uint8_t secret[CF_PROTO_SECRET_LEN])
{
    (void)ctx;
    char id[CF_PROTO_KEY_ID_LEN + 1];
    fuzz_secret(secret);
    CF_GUARD(cf_proto_key_id(secret, id));
    if (strcmp(id, key_id) != 0) {
        cf_wipe(secret, CF_PROTO_SECRET_LEN);
        CF_BAIL(CF_E_UNKNOWN_KEY);
    }
    return CF_OK;
}

/* The encrypted requests that the "chat response" and the streamed vectors
 * answer. */
static const char fuzz_chat_request[] =
    "{\"model\":\"llama-3\",\"messages\":\"cf1n:RDxb-UX6ELNTL9OJxJI3tA:AAABmr11tBipqqusra6vsA:ezV3jMEeM36MpwvRUS0PlX3wVOF-"
    "tawWgIo6wSdqzBySrdd49I6sS7k-4aTN8qBZjBuczjnivqfTuTeGTffO4arwf_0pZUFF4P31TfKzkVzxOxc0ni1rl56dk2jundYizCoNB836LAZqeozSO8_"
    "AbD3N0dMWYQ\",\"temperature\":\"cf1f:RDxb-UX6ELNTL9OJxJI3tA:AAABmr11tBipqqusra6vsA:XKDtloNhHjbLKumqUXMD6lXX9PY\","
    "\"max_tokens\":64,\"stream\":false}";
static const char fuzz_stream_request[] =
    "{\"model\":\"llama-3\",\"messages\":\"cf1f:RDxb-UX6ELNTL9OJxJI3tA:AAABmr11nKiwsbKztLW2tw:viJAU92g0c7WAS65TnhnJfqd0YA8rmjq7Imt-"
    "T-S5flzdyKXwN5d9q3fDs118Tgqh0RlS9uomWGWHjSKMg\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}";

static inline cf_proto_session *fuzz_client_session(const char *encrypted_request)
{
    const cf_proto_endpoint *ep = NULL;
    uint8_t k[CF_PROTO_SECRET_LEN];
    cf_proto_session *s = NULL;
    fuzz_secret(k);
    if (cf_is_error(cf_proto_endpoint_by_name(cf_slice_cstr("chat.completions"), &ep)) ||
        cf_is_error(cf_proto_session_from_request(ep, k, cf_slice_cstr(encrypted_request), &s))) {
        abort();
    }
    return s;
}

#endif
