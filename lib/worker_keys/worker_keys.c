/* worker_keys.c — the worker's key cache (include/confide/worker_keys.h). */
#include <stdlib.h>
#include <string.h>

#include "confide/worker_keys.h"

CF_RESULT cf_worker_keys_init(cf_worker_keys *ks, size_t capacity)
{
    CF_ENSURE_REF(ks);
    memset(ks, 0, sizeof *ks);
    CF_ENSURE_MSG(capacity > 0, CF_E_INVALID_ARGUMENT, "key cache capacity must be at least 1");
    ks->keys = calloc(capacity, sizeof *ks->keys);
    CF_ENSURE_MSG(ks->keys != NULL, CF_E_NO_MEMORY, "key cache allocation failed");
    ks->cap = capacity;
    return CF_OK;
}

void cf_worker_keys_free(cf_worker_keys *ks)
{
    if (ks == NULL) {
        return;
    }
    if (ks->keys != NULL) {
        /* Slots beyond count were wiped when their key left. */
        cf_wipe(ks->keys, ks->count * sizeof *ks->keys);
        free(ks->keys);
    }
    cf_wipe(ks, sizeof *ks);
}

/* Key IDs are public, so no constant-time compare. strncmp, not memcmp: a
 * caller's ID may be a shorter string (a malformed ID from a request), and
 * must not be read past its terminator. */
static bool id_eq(const char *a, const char *b) { return strncmp(a, b, CF_KEY_ID_LEN + 1) == 0; }

static size_t find_index(const cf_worker_keys *ks, const char *key_id)
{
    for (size_t i = 0; i < ks->count; i++) {
        if (id_eq(ks->keys[i].key_id, key_id)) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* Wipe slot i and move the last entry into its place. */
static void remove_at(cf_worker_keys *ks, size_t i)
{
    size_t last = ks->count - 1;
    if (i != last) {
        cf_wipe(&ks->keys[i], sizeof ks->keys[i]);
        ks->keys[i] = ks->keys[last];
    }
    cf_wipe(&ks->keys[last], sizeof ks->keys[last]);
    ks->count--;
}

CF_RESULT cf_worker_keys_put(cf_worker_keys *ks, const char *key_id, const uint8_t k[CF_INFERENCE_KEY_LEN],
                             int64_t expires_at, const cf_key_scope *scope, uint64_t generation, int64_t now,
                             char evicted[CF_KEY_ID_LEN + 1])
{
    CF_ENSURE_REF(ks);
    CF_ENSURE_REF(key_id);
    CF_ENSURE_REF(k);
    CF_ENSURE_REF(scope);
    if (evicted != NULL) {
        evicted[0] = '\0';
    }
    CF_ENSURE_MSG(strlen(key_id) == CF_KEY_ID_LEN && cf_key_id_valid(cf_slice_cstr(key_id)), CF_E_MALFORMED,
                  "invalid key id");
    CF_ENSURE_MSG(expires_at > now, CF_E_EXPIRED, "key already expired");
    size_t i = find_index(ks, key_id);
    if (i == SIZE_MAX) {
        if (ks->count == ks->cap) {
            size_t victim = 0;
            for (size_t j = 1; j < ks->count; j++) {
                if (ks->keys[j].expires_at < ks->keys[victim].expires_at) {
                    victim = j;
                }
            }
            if (evicted != NULL) {
                memcpy(evicted, ks->keys[victim].key_id, CF_KEY_ID_LEN + 1);
            }
            remove_at(ks, victim);
        }
        i = ks->count++;
    }
    cf_worker_key *slot = &ks->keys[i];
    memcpy(slot->key_id, key_id, CF_KEY_ID_LEN + 1);
    memcpy(slot->k, k, CF_INFERENCE_KEY_LEN);
    slot->expires_at = expires_at;
    slot->scope = *scope;
    slot->generation = generation;
    return CF_OK;
}

bool cf_worker_keys_delete(cf_worker_keys *ks, const char *key_id)
{
    size_t i = find_index(ks, key_id);
    if (i == SIZE_MAX) {
        return false;
    }
    remove_at(ks, i);
    return true;
}

size_t cf_worker_keys_sweep(cf_worker_keys *ks, int64_t now, uint64_t keep_generation,
                            void (*on_evict)(void *arg, const char *key_id, bool expired), void *arg)
{
    size_t removed = 0;
    for (size_t i = 0; i < ks->count;) {
        const cf_worker_key *k = &ks->keys[i];
        bool expired = k->expires_at <= now;
        bool unconfirmed = keep_generation != 0 && k->generation != keep_generation;
        if (expired || unconfirmed) {
            if (on_evict != NULL) {
                on_evict(arg, k->key_id, expired);
            }
            remove_at(ks, i); /* the last entry moved into i: look at i again */
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}

const cf_worker_key *cf_worker_keys_find(const cf_worker_keys *ks, const char *key_id, int64_t now)
{
    size_t i = find_index(ks, key_id);
    if (i == SIZE_MAX || ks->keys[i].expires_at <= now) {
        return NULL;
    }
    return &ks->keys[i];
}

bool cf_worker_keys_recent_miss(const cf_worker_keys *ks, const char *key_id, int64_t now)
{
    for (size_t i = 0; i < CF_WORKER_KEYS_MISS_SLOTS; i++) {
        if (ks->misses_[i].until > now && id_eq(ks->misses_[i].key_id, key_id)) {
            return true;
        }
    }
    return false;
}

void cf_worker_keys_note_miss(cf_worker_keys *ks, const char *key_id, int64_t until)
{
    /* A ring: the oldest miss is forgotten first (bounded memory). */
    size_t n = strnlen(key_id, CF_KEY_ID_LEN);
    memset(ks->misses_[ks->miss_next_].key_id, 0, CF_KEY_ID_LEN + 1);
    memcpy(ks->misses_[ks->miss_next_].key_id, key_id, n);
    ks->misses_[ks->miss_next_].until = until;
    ks->miss_next_ = (ks->miss_next_ + 1) % CF_WORKER_KEYS_MISS_SLOTS;
}
