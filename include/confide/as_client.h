/*
 * as_client.h — talking to an attestation service (AS) over HTTP from a
 * client process: confide-proxy, `confide attest`, and any application or
 * worker that must first verify the AS (DESIGN §3 flows 1 and 2).
 *
 * Operations (the messages themselves are as_api.h; this module only moves
 * them over HTTP and checks the answers):
 *   attest  POST <as>/v1/attest with a fresh 32-byte nonce from the OS
 *           CSPRNG; the answer is verified with cf_as_attest_response_verify
 *           (evidence up to the platform root, the pinned manifest's AS
 *           policy, report_data binding nonce + both AS keys + manifest
 *           hash, the AS enforces exactly the pinned manifest).
 *   upload  POST <as>/v1/keys with {K, key_id, ttl, scope} HPKE-sealed to
 *           the attested AS key; the signed receipt must answer exactly this
 *           upload (cf_key_receipt_verify).
 *   delete  POST <as>/v1/keys/delete with proof of possession of K.
 *
 * The asynchronous forms run on the caller's libevent loop through its
 * cf_http_client (whose TLS policy and CA file apply) and call `done`
 * exactly once from the loop, unless cancelled. On failure `done` receives
 * an error result and cf_error_last() describes it while `done` runs:
 *   - transport: CF_E_IO ("AS unreachable: connect_failed ...") or
 *     CF_E_TIMEOUT;
 *   - the AS refused (non-200): the AS's own error code when it is one of
 *     ours (policy_violation, limit_exceeded, ...), else upstream_error, with
 *     "AS answered HTTP <status>: <code>: <message>" as detail;
 *   - verification: the verifier's code and detail, naming the failed check.
 * Rules: nothing the AS sends is trusted before it verified; K is only ever
 * handled inside the sealing/proof functions of as_api.h and wiped by them;
 * bodies from the AS are bounded by CF_AS_BODY_MAX.
 */
#ifndef CONFIDE_AS_CLIENT_H
#define CONFIDE_AS_CLIENT_H

#include <stdint.h>

#include "confide/as_api.h"
#include "confide/http_client.h"
#include "confide/result.h"

/* Where the AS is and how to reach it. Borrowed for the life of each call. */
typedef struct cf_as_endpoint {
    cf_http_client *http; /* the loop's client (TLS policy, CA file) */
    const char *base_url; /* "https://as.example:7100" (paths are appended) */
    unsigned timeout_ms;  /* total per HTTP exchange; 0 = 10000 */
} cf_as_endpoint;

typedef struct cf_as_op cf_as_op;

/* `id` is filled on success; the callback may move it out (copy the struct
 * and zero the source) and otherwise it is freed after the callback. */
typedef void (*cf_as_attest_done)(void *arg, cf_result r, cf_as_identity *id);
typedef void (*cf_as_upload_done)(void *arg, cf_result r, const cf_key_receipt *receipt);
typedef void (*cf_as_delete_done)(void *arg, cf_result r);

/* Attest the AS against the pinned manifest hash; verification time is the
 * system clock when the answer arrives. *out (may be NULL) receives a handle
 * for cf_as_op_cancel, valid until `done` runs. */
CF_RESULT cf_as_attest_start(const cf_as_endpoint *ep, const uint8_t pinned_manifest_sha256[32], cf_as_attest_done done,
                             void *arg, cf_as_op **out);
/* Upload K (sealed to `as`, which must stay valid until `done`). */
CF_RESULT cf_as_upload_start(const cf_as_endpoint *ep, const cf_as_identity *as, const uint8_t k[CF_INFERENCE_KEY_LEN],
                             uint32_t ttl_s, const cf_key_scope *scope, cf_as_upload_done done, void *arg,
                             cf_as_op **out);
/* Delete the key uploaded with this K and expiry (from its receipt). */
CF_RESULT cf_as_delete_start(const cf_as_endpoint *ep, const uint8_t k[CF_INFERENCE_KEY_LEN], const char *key_id,
                             int64_t expires_at, cf_as_delete_done done, void *arg, cf_as_op **out);
/* Stop an operation; its `done` is not called. */
void cf_as_op_cancel(cf_as_op *op);

/* Blocking attestation for command-line tools: a private loop, the given
 * HTTP client configuration, verification at `now` (Unix seconds). */
CF_RESULT cf_as_attest_fetch(const cf_http_client_config *cfg, const char *base_url, unsigned timeout_ms,
                             const uint8_t pinned_manifest_sha256[32], int64_t now, cf_as_identity *out);

/* Lower-case hex SHA-256 of the AS's HPKE and signing public keys (what
 * `confide attest` prints and the proxy logs as key fingerprints). */
CF_RESULT cf_as_identity_fingerprints(const cf_as_identity *id, char hpke_hex[65], char sign_hex[65]);

#endif /* CONFIDE_AS_CLIENT_H */
