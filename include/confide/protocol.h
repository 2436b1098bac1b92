/*
 * protocol.h — the field encryption codec of wire protocol v1 (worker side
 * and the building blocks of the client side).
 *
 * What it is for. Between the user's proxy and an attested worker, every
 * top-level member of a request or response body that is not on the
 * endpoint's plain list travels as an AES-256-GCM ciphertext bound (AAD) to
 * its direction, its position, the final flag, its name and a digest of the
 * plain members and the endpoint. docs/protocol.md is the normative,
 * byte-exact specification; this module implements it and the test vectors
 * in tests/vectors/protocol-v1.json check it.
 *
 * Rules this module guarantees:
 *  - Decoding releases nothing unauthenticated: a body or SSE event is
 *    decrypted completely into scratch memory, every value authenticated,
 *    and only then is the plaintext appended to the caller's buffer. On any
 *    failure the caller's buffer is left exactly as it was.
 *  - Every failure has a typed code a caller can act on (result.h, "wire
 *    protocol" section): malformed, duplicate_key, plaintext_field,
 *    bad_ciphertext, unsupported_version, unknown_key, auth_failed,
 *    truncated, stale_request, replay, replay_memory_full, unknown_endpoint.
 *  - Keys, plaintext and scratch buffers are wiped on every path; details of
 *    errors name fields and lengths, never content.
 *  - Memory per stream is constant: one SSE event at a time.
 *
 * One cf_proto_session is the state of one request/response exchange: the
 * endpoint, key ID, salt, the response key and the response sequence
 * counter. The worker gets it from cf_proto_request_open(); the client from
 * cf_proto_request_seal() (see client.h for the small embedding API). A
 * session is not thread-safe; use one per exchange.
 */
#ifndef CONFIDE_PROTOCOL_H
#define CONFIDE_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/replay.h"
#include "confide/result.h"
#include "confide/slice.h"
#include "confide/sse.h"

#define CF_PROTO_VERSION 1
#define CF_PROTO_SECRET_LEN 32
#define CF_PROTO_KEY_ID_RAW_LEN 16
#define CF_PROTO_KEY_ID_LEN 22 /* base64url characters */
#define CF_PROTO_SALT_LEN 16
#define CF_PROTO_MAX_PAD_BUCKET 65536
#define CF_PROTO_MAX_MEMBERS 256
#define CF_PROTO_MAX_NAME 256
/* Default bound on a decrypted or encrypted body (the daemons may lower it). */
#define CF_PROTO_DEFAULT_MAX_BODY ((size_t)8 * 1024 * 1024)

/* HTTP headers (docs/protocol.md §HTTP headers). */
#define CF_PROTO_HDR_VERSION "Confide-Version"
#define CF_PROTO_HDR_VERSIONS "Confide-Versions"
#define CF_PROTO_HDR_PLAINTEXT "Confide-Plaintext"
#define CF_PROTO_HDR_ERROR "Confide-Error"

/* ---- Endpoints (DESIGN §4.8) -------------------------------------------- */

typedef struct cf_proto_endpoint {
    const char *name;   /* canonical name, authenticated: "chat.completions" */
    const char *method; /* "POST" / "GET" */
    const char *path;   /* "/v1/chat/completions" */
    bool encrypted;     /* false: passes unchanged (GET /v1/models) */
    const char *const *request_plain; /* sorted, NULL-terminated */
    const char *const *response_plain;
} cf_proto_endpoint;

/* The v1 table, NULL-terminated. */
extern const cf_proto_endpoint *const cf_proto_endpoints[];

/* By canonical name; CF_E_UNKNOWN_ENDPOINT if none. */
CF_RESULT cf_proto_endpoint_by_name(cf_slice name, const cf_proto_endpoint **out);
/* By request method and path. The path may carry a prefix added by a gateway
 * ("/api/v1/chat/completions") and a query string; it matches the endpoint
 * whose path is its suffix at a '/' boundary. CF_E_UNKNOWN_ENDPOINT if none. */
CF_RESULT cf_proto_endpoint_by_path(cf_slice method, cf_slice path, const cf_proto_endpoint **out);

/* ---- Keys ------------------------------------------------------------------ */

/* key_id = base64url(SHA-256("confide/v1 key-id" || K)[0..16)), written as a
 * NUL-terminated 22-character string. */
CF_RESULT cf_proto_key_id(const uint8_t secret[CF_PROTO_SECRET_LEN], char key_id[CF_PROTO_KEY_ID_LEN + 1]);

/*
 * Worker-side key lookup: fill `secret` for `key_id` (22 characters, NUL
 * terminated) and return CF_OK, or fail with CF_E_UNKNOWN_KEY. The codec
 * checks that the secret really derives `key_id` and wipes its copy.
 */
typedef CF_RESULT (*cf_proto_key_lookup_fn)(void *ctx, const char *key_id, uint8_t secret[CF_PROTO_SECRET_LEN]);

/* ---- Sessions ---------------------------------------------------------------- */

typedef struct cf_proto_session cf_proto_session;
void cf_proto_session_free(cf_proto_session *s);
const cf_proto_endpoint *cf_proto_session_endpoint(const cf_proto_session *s);
/* The key ID of the exchange (NUL-terminated). */
const char *cf_proto_session_key_id(const cf_proto_session *s);
/* The salt's timestamp (ms since the epoch). */
int64_t cf_proto_session_salt_ms(const cf_proto_session *s);

/* ---- Client: encrypt the request, decrypt the reply ------------------------- */

typedef struct cf_proto_seal_options {
    /* Clock for the salt, ms since the epoch; 0 = the system clock. */
    int64_t now_ms;
    /* Pad each value with spaces to a multiple of this (0 = no padding). */
    uint32_t pad_bucket;
    /* Fixed 16-byte salt instead of a fresh one: test vectors only. */
    const uint8_t *fixed_salt;
    /* Bound on the output (0 = CF_PROTO_DEFAULT_MAX_BODY). */
    size_t max_body;
} cf_proto_seal_options;

/* Encrypt a request body for `ep` (which must be an encrypted endpoint) under
 * `secret`; append the encrypted body to out and return the session used to
 * open the reply. opt may be NULL. */
CF_RESULT cf_proto_request_seal(const cf_proto_endpoint *ep, const uint8_t secret[CF_PROTO_SECRET_LEN], cf_slice body,
                                const cf_proto_seal_options *opt, cf_buf *out, cf_proto_session **session_out);

/* Rebuild the client session from an encrypted request (its key ID and salt),
 * e.g. to open a reply later (`confide open`). Does not decrypt the request. */
CF_RESULT cf_proto_session_from_request(const cf_proto_endpoint *ep, const uint8_t secret[CF_PROTO_SECRET_LEN],
                                        cf_slice encrypted_request, cf_proto_session **session_out);

/* Decrypt a non-streamed response body (any HTTP status) and append the
 * plaintext to out. Only once per session; not after a stream. */
CF_RESULT cf_proto_response_open(cf_proto_session *s, int status, cf_slice body, cf_buf *out);

/* Streams, client side. Call cf_proto_stream_begin once with the HTTP status,
 * then either feed raw bytes (cf_proto_stream_open_feed: parses SSE itself)
 * or hand over parsed events (cf_proto_stream_open_event), never both.
 * Decrypted events are appended to out in SSE wire form (`event:` if typed,
 * `data:` lines, blank line); the final event is consumed, `[DONE]` passed.
 * cf_proto_stream_open_finish says whether the stream was complete: CF_OK,
 * or CF_E_TRUNCATED if the final event never came. */
CF_RESULT cf_proto_stream_begin(cf_proto_session *s, int status);
CF_RESULT cf_proto_stream_open_event(cf_proto_session *s, const cf_sse_event *event, cf_buf *out);
CF_RESULT cf_proto_stream_open_feed(cf_proto_session *s, cf_slice chunk, cf_buf *out);
CF_RESULT cf_proto_stream_open_finish(cf_proto_session *s);
/* The reply ended (client side): CF_OK if a non-streamed reply was opened or
 * a stream ended complete; CF_E_TRUNCATED if no reply or no final event came;
 * the code of the failure that killed the session otherwise. */
CF_RESULT cf_proto_reply_finish(cf_proto_session *s);
/* True once the authenticated final event was seen. */
bool cf_proto_stream_complete(const cf_proto_session *s);

/* ---- Worker: decrypt the request, encrypt the reply ------------------------- */

typedef struct cf_proto_open_options {
    /* The worker's clock, ms since the epoch; 0 = the system clock. */
    int64_t now_ms;
    /* Freshness window (±ms); 0 = the guard's window, or
     * CF_REPLAY_DEFAULT_WINDOW_MS without a guard; negative = no check
     * (offline tools only). */
    int64_t window_ms;
    /* Replay memory; NULL = no replay check (offline tools, tests). */
    cf_replay_guard *replay;
    /* Padding of response values (0 = none). */
    uint32_t pad_bucket;
    /* Bound on the output (0 = CF_PROTO_DEFAULT_MAX_BODY). */
    size_t max_body;
} cf_proto_open_options;

/*
 * Decrypt a request body received for `ep`. Order of checks: body shape and
 * duplicates, value syntax, freshness, replay (lookup), key lookup,
 * authentication of every value and the final flag, and only then the replay
 * memory records (key_id, S). On success the plaintext body is appended to
 * out and *session_out is the session for the reply.
 */
CF_RESULT cf_proto_request_open(const cf_proto_endpoint *ep, cf_slice body, cf_proto_key_lookup_fn lookup,
                                void *lookup_ctx, const cf_proto_open_options *opt, cf_buf *out,
                                cf_proto_session **session_out);

/*
 * Read the key ID and salt timestamp of an encrypted request without
 * decrypting it (body shape and value syntax are checked as in
 * cf_proto_request_open). For a worker whose key lookup is asynchronous: on
 * CF_E_UNKNOWN_KEY it peeks the key ID, asks the AS for it, then calls
 * cf_proto_request_open again.
 */
CF_RESULT cf_proto_request_peek(const cf_proto_endpoint *ep, cf_slice body, char key_id[CF_PROTO_KEY_ID_LEN + 1],
                                int64_t *salt_ms);

/* Encrypt a non-streamed response body (a JSON object, any status). */
CF_RESULT cf_proto_response_seal(cf_proto_session *s, int status, cf_slice body, cf_buf *out);

/* Streams, worker side (after cf_proto_stream_begin). Each event with a JSON
 * object payload is encrypted; `[DONE]` makes the worker emit the final event
 * and then `data: [DONE]`; comments, `id:` and `retry:` are dropped; any other
 * payload fails with CF_E_MALFORMED (the worker then ends the stream with an
 * encrypted error, cf_proto_stream_seal_error, and no final event).
 * cf_proto_stream_seal_finish is called when the inference server's stream
 * ended cleanly: it emits the final event unless `[DONE]` already did, and
 * fails with CF_E_TRUNCATED (emitting nothing) if the stream stopped inside
 * an event. */
CF_RESULT cf_proto_stream_seal_event(cf_proto_session *s, const cf_sse_event *event, cf_buf *out);
CF_RESULT cf_proto_stream_seal_feed(cf_proto_session *s, cf_slice chunk, cf_buf *out);
CF_RESULT cf_proto_stream_seal_finish(cf_proto_session *s, cf_buf *out);
/* Append an encrypted OpenAI-style error event (code and message are public
 * text chosen by the worker) and close the stream without a final event. */
CF_RESULT cf_proto_stream_seal_error(cf_proto_session *s, const char *code, const char *message, cf_buf *out);

/* The value of a Confide-Version header: CF_OK for "1" (optional surrounding
 * spaces), CF_E_UNSUPPORTED_VERSION for any other version number,
 * CF_E_MALFORMED for anything else. */
CF_RESULT cf_proto_check_version_header(cf_slice value);

/* ---- Plaintext errors (docs/protocol.md §Errors) ---------------------------- */

/* The HTTP status the worker answers a pre-decryption failure with. */
int cf_proto_error_status(cf_error_code code);
/* Append the OpenAI-shaped plaintext error body for `code`. `message` is
 * public text (never request content). */
CF_RESULT cf_proto_error_body(cf_error_code code, const char *message, cf_buf *out);

#endif /* CONFIDE_PROTOCOL_H */
