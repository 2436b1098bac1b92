/*
 * as_api.h — the messages of the attestation service (AS) API, for all
 * three sides: the client (confide-proxy, or an application embedding the
 * client), the AS itself, and the worker. docs/protocol.md §Attestation
 * service API specifies every byte; this module is the only code that
 * builds or parses these messages.
 *
 * Client (proxy), in order:
 *   1. cf_as_attest_request_build(nonce)        POST /v1/attest
 *      cf_as_attest_response_verify(...)        -> cf_as_identity (verified
 *        evidence up to the vendor/sim root, AS policy of the pinned
 *        manifest, report_data binding nonce + both AS keys + manifest hash)
 *   2. cf_key_generate(K, key_id)
 *      cf_key_upload_seal(identity, K, ttl, scope) POST /v1/keys
 *      cf_key_receipt_verify(identity, ...)     -> expires_at
 *   3. cf_key_delete_build(K, key_id, expires_at) POST /v1/keys/delete
 * Worker, in order:
 *   1. cf_hpke_keypair_generate -> worker key pair
 *      POST /v1/workers/challenge -> cf_worker_challenge_parse -> nonce
 *   2. cf_worker_report_data(nonce, pk) -> report_data; cf_attest_collect
 *      cf_worker_attest_request_build(...)      POST /v1/workers/attest
 *      cf_worker_attest_response_parse(...)     -> token, worker id, models
 *   3. fresh stream nonce; cf_key_stream_query_build(nonce) ->
 *      GET /v1/workers/keys?stream=... (Authorization: Bearer <token>), SSE;
 *      for each event: cf_key_event_open(..., nonce, seq, ...) -> put (K
 *      unwrapped and its key_id checked), delete, ready, token_expiring
 *   4. unknown key id in a request: fresh nonce; cf_key_fetch_build ->
 *      POST /v1/workers/key, and cf_key_event_open(..., nonce, "key", 0, ...)
 *      on the body.
 * The worker verifies event signatures with the AS signing key it learned
 * by attesting the AS (cf_as_attest_response_verify), like a client.
 *
 * Rules: every parser bounds its input (CF_AS_BODY_MAX) and every field;
 * secrets (K, HPKE private keys) live only in wiped memory — K never
 * appears in JSON in the clear, only HPKE-sealed; signatures are Ed25519
 * over domain-separated binary encodings (never over JSON text); MACs and
 * key ids are compared in constant time.
 */
#ifndef CONFIDE_AS_API_H
#define CONFIDE_AS_API_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/attest.h"
#include "confide/buf.h"
#include "confide/hpke.h"
#include "confide/manifest.h"
#include "confide/result.h"
#include "confide/slice.h"

#define CF_AS_NONCE_LEN 32
#define CF_INFERENCE_KEY_LEN 32
/* base64url of 16 bytes, no padding. */
#define CF_KEY_ID_LEN 22
#define CF_WORKER_ID_LEN 16
#define CF_KEY_SCOPE_MAX 16
/* Chosen by the worker per key stream / per fetch, signed into every event:
 * a recorded stream or fetch answer cannot be replayed to it later. */
#define CF_STREAM_NONCE_LEN 16
/* Largest request/response body any AS API message may have. */
#define CF_AS_BODY_MAX (4u * 1024u * 1024u)
/* Largest evidence and collateral (decoded) accepted in a message. */
#define CF_AS_EVIDENCE_MAX (64u * 1024u)
#define CF_AS_COLLATERAL_MAX (1024u * 1024u)

/* ---- inference keys (DESIGN §4.2) ---------------------------------------- */

/* key_id = base64url(SHA-256("confide/v1 key-id" || K)[0..16)); the same
 * function as cf_proto_key_id (protocol.h), under this module's names. */
CF_RESULT cf_key_id_derive(const uint8_t k[CF_INFERENCE_KEY_LEN], char key_id[CF_KEY_ID_LEN + 1]);
/* Fresh K from the OS CSPRNG and its key id. */
CF_RESULT cf_key_generate(uint8_t k[CF_INFERENCE_KEY_LEN], char key_id[CF_KEY_ID_LEN + 1]);
/* A syntactically valid key id (22 base64url characters). */
bool cf_key_id_valid(cf_slice key_id);

typedef struct cf_key_scope {
    size_t count;
    char models[CF_KEY_SCOPE_MAX][CF_MODEL_NAME_MAX + 1];
} cf_key_scope;

/* ---- report_data bindings ------------------------------------------------ */

/* AS: SHA-512("confide/v1 as-attest" || nonce || u16be len || hpke_pk ||
 * u16be len || sign_pk || manifest_sha256). */
CF_RESULT cf_as_report_data(const uint8_t nonce[CF_AS_NONCE_LEN], cf_slice hpke_pk, cf_slice sign_pk,
                            const uint8_t manifest_sha256[32], uint8_t out[CF_REPORT_DATA_LEN]);
/* Worker: SHA-512("confide/v1 worker-attest" || nonce || u16be len || hpke_pk). */
CF_RESULT cf_worker_report_data(const uint8_t nonce[CF_AS_NONCE_LEN], cf_slice hpke_pk,
                                uint8_t out[CF_REPORT_DATA_LEN]);

/* ---- AS attestation (client side) ---------------------------------------- */

/* What a client knows after verifying an AS. */
typedef struct cf_as_identity {
    cf_platform platform;
    uint8_t hpke_public_key[CF_HPKE_MAX_PUBLIC_KEY_LEN];
    size_t hpke_public_key_len;
    uint8_t signing_public_key[CF_ED25519_PUB_LEN];
    EVP_PKEY *signing_key; /* the same, as an OpenSSL key */
    cf_manifest *manifest; /* the manifest the AS enforces (= the pinned one) */
    cf_claims claims;      /* the verified evidence */
} cf_as_identity;

void cf_as_identity_free(cf_as_identity *id);

/* {"nonce": b64url(nonce)} */
CF_RESULT cf_as_attest_request_build(const uint8_t nonce[CF_AS_NONCE_LEN], cf_buf *out);
/* Verify a POST /v1/attest response: the manifest in it must hash to
 * `pinned_manifest_sha256`, the evidence must satisfy its AS policy at
 * `now`, and report_data must bind nonce, both keys and the manifest.
 * On failure *out is zeroed; the error names the failed check. */
CF_RESULT cf_as_attest_response_verify(cf_slice body, const uint8_t nonce[CF_AS_NONCE_LEN],
                                       const uint8_t pinned_manifest_sha256[32], int64_t now, cf_as_identity *out);

/* ---- AS attestation (AS side) -------------------------------------------- */

/* Parse {"nonce"} from a POST /v1/attest body. */
CF_RESULT cf_as_attest_request_parse(cf_slice body, uint8_t nonce[CF_AS_NONCE_LEN]);
CF_RESULT cf_as_attest_response_build(cf_platform platform, cf_slice evidence, cf_slice collateral, cf_slice hpke_pk,
                                      cf_slice sign_pk, cf_slice manifest_bytes, cf_buf *out);

/* ---- key upload ----------------------------------------------------------- */

/* HPKE plaintext of an upload (binary, see docs/protocol.md). */
typedef struct cf_key_upload {
    uint8_t k[CF_INFERENCE_KEY_LEN]; /* secret: cf_key_upload_wipe */
    char key_id[CF_KEY_ID_LEN + 1];
    uint32_t ttl_s;
    cf_key_scope scope;
} cf_key_upload;

void cf_key_upload_wipe(cf_key_upload *u);

/* Client: seal {K, key_id, ttl, scope} to the attested AS key; writes the
 * body {"enc","ct"} and the upload digest SHA-256(enc || ct) that the
 * receipt must name. */
CF_RESULT cf_key_upload_seal(const cf_as_identity *as, const uint8_t k[CF_INFERENCE_KEY_LEN], uint32_t ttl_s,
                             const cf_key_scope *scope, cf_buf *body, uint8_t upload_digest[32]);
/* AS: open an upload body; checks the layout and the key id derivation
 * (CF_E_AUTH_FAILED if the sealed key_id is not derived from K). TTL and
 * scope against the manifest are the caller's (policy) checks. */
CF_RESULT cf_key_upload_open(const cf_hpke_keypair *as_kp, const uint8_t manifest_sha256[32], cf_slice body,
                             cf_key_upload *out, uint8_t upload_digest[32]);

/* Receipt: Ed25519 over "confide/v1 key-receipt" || manifest_sha256 ||
 * upload_digest || u8 len || key_id || u64be expires_at || scope. */
typedef struct cf_key_receipt {
    char key_id[CF_KEY_ID_LEN + 1];
    int64_t expires_at;
    cf_key_scope scope;
} cf_key_receipt;
CF_RESULT cf_key_receipt_build(EVP_PKEY *sign_key, const uint8_t manifest_sha256[32], const uint8_t upload_digest[32],
                               const cf_key_receipt *r, cf_buf *out);
/* Client: check the receipt answers this upload with this key id. */
CF_RESULT cf_key_receipt_verify(const cf_as_identity *as, const uint8_t upload_digest[32], const char *key_id,
                                cf_slice body, cf_key_receipt *out);

/* ---- key deletion --------------------------------------------------------- */

/* proof = HMAC-SHA256(K, "confide/v1 key-delete" || u8 len || key_id ||
 * u64be expires_at): possession of K, bound to this upload's expiry so an
 * old delete cannot be replayed against a later upload. */
CF_RESULT cf_key_delete_proof(const uint8_t k[CF_INFERENCE_KEY_LEN], const char *key_id, int64_t expires_at,
                              uint8_t proof[32]);
CF_RESULT cf_key_delete_build(const uint8_t k[CF_INFERENCE_KEY_LEN], const char *key_id, int64_t expires_at,
                              cf_buf *out);
typedef struct cf_key_delete_request {
    char key_id[CF_KEY_ID_LEN + 1];
    int64_t expires_at;
    uint8_t proof[32];
} cf_key_delete_request;
CF_RESULT cf_key_delete_parse(cf_slice body, cf_key_delete_request *out);

/* ---- worker join ----------------------------------------------------------- */

CF_RESULT cf_worker_challenge_build(const uint8_t nonce[CF_AS_NONCE_LEN], int64_t expires_at, cf_buf *out);
CF_RESULT cf_worker_challenge_parse(cf_slice body, uint8_t nonce[CF_AS_NONCE_LEN], int64_t *expires_at);

typedef struct cf_worker_attest_request {
    cf_platform platform;
    uint8_t nonce[CF_AS_NONCE_LEN];
    uint8_t hpke_public_key[CF_HPKE_MAX_PUBLIC_KEY_LEN];
    size_t hpke_public_key_len;
    cf_buf evidence;
    cf_buf collateral;
} cf_worker_attest_request;
void cf_worker_attest_request_free(cf_worker_attest_request *r);

CF_RESULT cf_worker_attest_request_build(cf_platform platform, const uint8_t nonce[CF_AS_NONCE_LEN], cf_slice hpke_pk,
                                         cf_slice evidence, cf_slice collateral, cf_buf *out);
CF_RESULT cf_worker_attest_request_parse(cf_slice body, cf_worker_attest_request *out);

/* The worker token: b64url(u8 version=1 || u64be issued_at ||
 * u64be expires_at || worker_id[16] || u8 policy_index || u16be len ||
 * hpke_pk || Ed25519 signature over "confide/v1 worker-token" || those
 * bytes). Self-contained: the AS needs no state to check it. */
typedef struct cf_worker_token {
    int64_t issued_at;
    int64_t expires_at;
    uint8_t worker_id[CF_WORKER_ID_LEN];
    uint8_t policy_index;
    uint8_t hpke_public_key[CF_HPKE_MAX_PUBLIC_KEY_LEN];
    size_t hpke_public_key_len;
} cf_worker_token;
/* Appends the token text (base64url) to out. */
CF_RESULT cf_worker_token_issue(EVP_PKEY *sign_key, const cf_worker_token *t, cf_buf *out);
/* CF_E_UNAUTHORIZED for malformed/forged tokens, CF_E_EXPIRED after
 * expires_at (at `now`). */
CF_RESULT cf_worker_token_verify(EVP_PKEY *sign_pub, cf_slice token, int64_t now, cf_worker_token *out);

CF_RESULT cf_worker_attest_response_build(cf_slice token, const cf_worker_token *t, const char *policy_name,
                                          const json_t *models, cf_buf *out);
typedef struct cf_worker_grant {
    char *token; /* heap, NUL-terminated; secret-ish (bearer): cf_worker_grant_free wipes */
    int64_t expires_at;
    uint8_t worker_id[CF_WORKER_ID_LEN];
    char policy[CF_MANIFEST_NAME_MAX + 1];
    size_t model_count;
} cf_worker_grant;
CF_RESULT cf_worker_attest_response_parse(cf_slice body, cf_worker_grant *out);
void cf_worker_grant_free(cf_worker_grant *g);

/* ---- key stream events ------------------------------------------------------ */

typedef enum cf_key_event_type {
    CF_KEY_EVENT_PUT = 1,            /* SSE event "put" */
    CF_KEY_EVENT_DELETE = 2,         /* "delete" */
    CF_KEY_EVENT_READY = 3,          /* "ready": the initial snapshot is complete */
    CF_KEY_EVENT_TOKEN_EXPIRING = 4, /* "token_expiring": re-attest now */
    CF_KEY_EVENT_KEY = 5,            /* body of POST /v1/workers/key */
} cf_key_event_type;

typedef struct cf_key_event {
    cf_key_event_type type;
    uint64_t seq;
    char key_id[CF_KEY_ID_LEN + 1];  /* put, delete, key */
    int64_t expires_at;              /* put, key: key expiry; token_expiring: token expiry */
    cf_key_scope scope;              /* put, key */
    char reason[16];                 /* delete: "deleted", "expired", "scope" */
    uint64_t count;                  /* ready: keys in the snapshot */
    uint8_t k[CF_INFERENCE_KEY_LEN]; /* put, key: the unwrapped secret (wipe) */
} cf_key_event;

const char *cf_key_event_name(cf_key_event_type type);
void cf_key_event_wipe(cf_key_event *ev);

/* AS: the JSON data of an event, signed for this worker; put/key wrap K
 * (`k`, else NULL) with HPKE to the worker's attested key. */
CF_RESULT cf_key_event_build(EVP_PKEY *sign_key, const cf_worker_token *worker,
                             const uint8_t stream_nonce[CF_STREAM_NONCE_LEN], const cf_key_event *ev, const uint8_t *k,
                             cf_buf *out);
/* Worker: verify and open one event (`name` = SSE event name, `data` = its
 * data). Checks the signature, that seq == expected_seq (0 for "key"), and
 * for put/key unwraps K and checks key_id derives from it. */
CF_RESULT cf_key_event_open(EVP_PKEY *as_sign_pub, const uint8_t worker_id[CF_WORKER_ID_LEN],
                            const uint8_t stream_nonce[CF_STREAM_NONCE_LEN], const cf_hpke_keypair *worker_kp,
                            const char *name, cf_slice data, uint64_t expected_seq, cf_key_event *out);

/* ---- small shared pieces ------------------------------------------------------ */

/* {"key_id": "...", "nonce": b64u(16 bytes)} (POST /v1/workers/key). */
CF_RESULT cf_key_fetch_build(const char *key_id, const uint8_t nonce[CF_STREAM_NONCE_LEN], cf_buf *out);
CF_RESULT cf_key_fetch_parse(cf_slice body, char key_id[CF_KEY_ID_LEN + 1], uint8_t nonce[CF_STREAM_NONCE_LEN]);
/* The query of GET /v1/workers/keys: exactly "stream=<b64u(nonce)>". */
#define CF_STREAM_QUERY_MAX 32
CF_RESULT cf_key_stream_query_build(const uint8_t nonce[CF_STREAM_NONCE_LEN], char out[CF_STREAM_QUERY_MAX]);
CF_RESULT cf_key_stream_query_parse(const char *query, uint8_t nonce[CF_STREAM_NONCE_LEN]);
/* Parse a JSON array of model names into a scope (1..CF_KEY_SCOPE_MAX
 * distinct names, each a valid manifest model name). */
CF_RESULT cf_key_scope_from_json(const json_t *arr, cf_key_scope *out);
json_t *cf_key_scope_to_json(const cf_key_scope *scope);

#endif /* CONFIDE_AS_API_H */
