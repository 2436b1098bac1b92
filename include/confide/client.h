/*
 * client.h — embed the client side of confide in an application.
 *
 * What it is for. An application that does not want to run confide-proxy can
 * encrypt its OpenAI request bodies itself and decrypt the replies, with the
 * same code the proxy uses (docs/protocol.md). It needs the 32-byte inference
 * secret that it uploaded to an attested attestation service (the proxy does
 * the upload; see docs/protocol.md §Attestation service API).
 *
 *   cf_client_call *call = NULL;
 *   cf_buf enc, plain;
 *   cf_buf_init(&enc, 0);  cf_buf_init(&plain, 0);
 *   if (cf_is_error(cf_client_seal_request(secret, "chat.completions", body, NULL, &enc, &call))) ...
 *   ... POST enc with header "Confide-Version: 1" ...
 *   non-streamed:  cf_client_open_response(call, status, reply_body, &plain);
 *   streamed:      for each chunk received: cf_client_open_stream(call, status, chunk, &plain);
 *                  (plain receives decrypted SSE text, event by event)
 *   cf_client_finish(call);   // CF_OK only if the whole reply was authenticated
 *   cf_client_call_free(call);
 *
 * Rules:
 *  - Nothing unauthenticated is ever appended to `out`. A body that fails
 *    leaves `out` unchanged; in a stream, the events of a chunk that
 *    authenticated before the failing one stay appended (each is complete and
 *    authentic). After a failure the call is dead (every later call fails,
 *    cf_client_finish reports the first error).
 *  - cf_client_finish is the only way to learn that a reply was complete:
 *    a stream cut short, or missing its final marker, is CF_E_TRUNCATED.
 *  - A 2xx reply must decrypt; a plaintext error (header Confide-Plaintext)
 *    is not authenticated and must not be given to this API as a reply.
 *  - Error codes: result.h, "wire protocol" section (cf_error_code_last()).
 */
#ifndef CONFIDE_CLIENT_H
#define CONFIDE_CLIENT_H

#include <stdint.h>

#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

#define CF_CLIENT_SECRET_LEN 32

/* One request/response exchange (the protocol session). */
typedef struct cf_proto_session cf_client_call;

typedef struct cf_client_options {
    int64_t now_ms;      /* clock for the salt; 0 = system clock */
    uint32_t pad_bucket; /* pad values to a multiple of this; 0 = none */
    size_t max_body;     /* bound on bodies; 0 = 8 MiB */
} cf_client_options;

/* The key ID of a secret (22 characters + NUL), as the AS registers it. */
CF_RESULT cf_client_key_id(const uint8_t secret[CF_CLIENT_SECRET_LEN], char key_id[23]);

/* Encrypt `body` for the endpoint named `endpoint` ("chat.completions",
 * "completions", "embeddings"); append the encrypted body to out. opt may be
 * NULL. */
CF_RESULT cf_client_seal_request(const uint8_t secret[CF_CLIENT_SECRET_LEN], const char *endpoint, cf_slice body,
                                 const cf_client_options *opt, cf_buf *out, cf_client_call **call_out);

/* Decrypt a non-streamed reply body received with HTTP `status`. */
CF_RESULT cf_client_open_response(cf_client_call *call, int status, cf_slice body, cf_buf *out);

/* Decrypt the next chunk of an SSE reply (any split); appends every event the
 * chunk completes, decrypted, in SSE form. `status` is the reply's status. */
CF_RESULT cf_client_open_stream(cf_client_call *call, int status, cf_slice chunk, cf_buf *out);

/* The reply ended: CF_OK if it was complete and authenticated, else
 * CF_E_TRUNCATED (or the error that killed the call). */
CF_RESULT cf_client_finish(cf_client_call *call);

void cf_client_call_free(cf_client_call *call);

#endif /* CONFIDE_CLIENT_H */
