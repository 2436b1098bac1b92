/*
 * worker_keys.h — the key cache of confide-worker: inference secrets the
 * worker received from the attestation service, with their expiry.
 *
 * What it is for. The worker's key stream (and one-shot key fetches) deliver
 * secrets already unwrapped and checked (as_api.h: signature, HPKE, key-ID
 * derivation); this cache holds them until they must go, and answers "which
 * secret has this key ID" for the protocol codec's key lookup.
 *
 * Rules:
 *  - Bounded: at most `capacity` secrets. Inserting a new key into a full
 *    cache evicts the key expiring first (the least useful life left).
 *  - Every secret leaves by being wiped: on expiry (cf_worker_keys_sweep),
 *    on delete, on eviction, when a reconnected key stream's snapshot does
 *    not confirm it (generation sweep), and on free.
 *  - An expired key is never returned, even before the next sweep.
 *  - Key IDs are public values; lookups compare them with memcmp. The
 *    secret is never compared (the codec checks it derives the key ID).
 *  - A small negative cache remembers key IDs the AS said it does not have
 *    (a ring of CF_WORKER_KEYS_MISS_SLOTS entries, each with an expiry), so
 *    random key IDs in requests cannot make the worker flood the AS.
 *  - Not thread-safe (one event loop).
 */
#ifndef CONFIDE_WORKER_KEYS_H
#define CONFIDE_WORKER_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/as_api.h"
#include "confide/result.h"

#define CF_WORKER_KEYS_MISS_SLOTS 256

typedef struct cf_worker_key {
    char key_id[CF_KEY_ID_LEN + 1];
    uint8_t k[CF_INFERENCE_KEY_LEN];
    int64_t expires_at; /* Unix seconds */
    cf_key_scope scope;
    uint64_t generation; /* key stream connection that last confirmed it */
} cf_worker_key;

typedef struct cf_worker_keys {
    cf_worker_key *keys; /* private */
    size_t count;
    size_t cap;
    struct {
        char key_id[CF_KEY_ID_LEN + 1];
        int64_t until;
    } misses_[CF_WORKER_KEYS_MISS_SLOTS];
    size_t miss_next_;
} cf_worker_keys;

CF_RESULT cf_worker_keys_init(cf_worker_keys *ks, size_t capacity);
/* Wipe every secret and free. */
void cf_worker_keys_free(cf_worker_keys *ks);

/* Insert, or replace the entry with the same key ID. `evicted` (may be NULL)
 * receives the key ID evicted to make room ("" if none). Fails with
 * CF_E_MALFORMED for an invalid key ID and CF_E_EXPIRED for a key already
 * expired at `now`. */
CF_RESULT cf_worker_keys_put(cf_worker_keys *ks, const char *key_id, const uint8_t k[CF_INFERENCE_KEY_LEN],
                             int64_t expires_at, const cf_key_scope *scope, uint64_t generation, int64_t now,
                             char evicted[CF_KEY_ID_LEN + 1]);
/* Remove (wipe) a key; false if it was not held. */
bool cf_worker_keys_delete(cf_worker_keys *ks, const char *key_id);
/* Remove every key expired at `now` and, if keep_generation is non-zero,
 * every key not confirmed by that generation. `on_evict` (may be NULL) is
 * called with each removed key ID and whether it expired, before the wipe.
 * Returns how many were removed. */
size_t cf_worker_keys_sweep(cf_worker_keys *ks, int64_t now, uint64_t keep_generation,
                            void (*on_evict)(void *arg, const char *key_id, bool expired), void *arg);
/* The live key with this ID, or NULL (absent or expired at `now`). Valid
 * until the next modifying call. */
const cf_worker_key *cf_worker_keys_find(const cf_worker_keys *ks, const char *key_id, int64_t now);

/* Negative cache. */
bool cf_worker_keys_recent_miss(const cf_worker_keys *ks, const char *key_id, int64_t now);
void cf_worker_keys_note_miss(cf_worker_keys *ks, const char *key_id, int64_t until);

#endif /* CONFIDE_WORKER_KEYS_H */
