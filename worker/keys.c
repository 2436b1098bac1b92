/* keys.c — the worker's key cache (see worker.h).
 *
 * Inference secrets arrive unwrapped from the key stream (or a one-shot
 * fetch) and live here until their expiry, a "delete" event, a reconnect
 * snapshot that no longer lists them, or eviction when the cache is full.
 * Every removal wipes the secret. Lookups compare key IDs (public values)
 * with memcmp; the secret itself authenticates nothing until the codec has
 * checked that it derives the key ID and the request's tags verify. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "confide/log.h"
#include "worker.h"

int64_t worker_now(void) { return (int64_t)time(NULL); }

int64_t worker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

CF_RESULT worker_keys_init(worker_keys *ks, size_t cap)
{
    memset(ks, 0, sizeof *ks);
    CF_ENSURE(cap > 0, CF_E_INVALID_ARGUMENT);
    ks->keys = calloc(cap, sizeof *ks->keys);
    CF_ENSURE_MSG(ks->keys != NULL, CF_E_NO_MEMORY, "key cache allocation failed");
    ks->cap = cap;
    return CF_OK;
}

void worker_keys_free(worker_keys *ks)
{
    if (ks->keys != NULL) {
        cf_wipe(ks->keys, ks->cap * sizeof *ks->keys);
        free(ks->keys);
    }
    cf_wipe(ks, sizeof *ks);
}

static worker_key *find_slot(const worker_keys *ks, const char *key_id)
{
    for (size_t i = 0; i < ks->count; i++) {
        if (memcmp(ks->keys[i].key_id, key_id, CF_KEY_ID_LEN + 1) == 0) {
            return &ks->keys[i];
        }
    }
    return NULL;
}

/* Remove slot i: wipe it, move the last entry into its place. */
static void remove_at(worker_state *w, size_t i)
{
    worker_keys *ks = &w->keys;
    size_t last = ks->count - 1;
    if (i != last) {
        ks->keys[i] = ks->keys[last];
    }
    cf_wipe(&ks->keys[last], sizeof ks->keys[last]);
    ks->count--;
    cf_metric_set(w->m.keys, (double)ks->count);
}

CF_RESULT worker_keys_put(worker_state *w, const cf_key_event *ev, uint64_t generation)
{
    worker_keys *ks = &w->keys;
    CF_ENSURE_MSG(cf_key_id_valid(cf_slice_cstr(ev->key_id)), CF_E_MALFORMED, "key event without a valid key id");
    worker_key *slot = find_slot(ks, ev->key_id);
    if (slot == NULL) {
        if (ks->count == ks->cap) {
            /* Full: the key expiring first makes room (it has the least
             * useful life left; requests already running keep their
             * derived keys). */
            size_t victim = 0;
            for (size_t i = 1; i < ks->count; i++) {
                if (ks->keys[i].expires_at < ks->keys[victim].expires_at) {
                    victim = i;
                }
            }
            CF_LOG_WARN("key_cache_full", cf_kv_str("evicted", ks->keys[victim].key_id),
                        cf_kv_uint("max_keys", ks->cap));
            remove_at(w, victim);
        }
        slot = &ks->keys[ks->count++];
    }
    memcpy(slot->key_id, ev->key_id, sizeof slot->key_id);
    memcpy(slot->k, ev->k, sizeof slot->k);
    slot->expires_at = ev->expires_at;
    slot->scope = ev->scope;
    slot->generation = generation;
    cf_metric_set(w->m.keys, (double)ks->count);
    return CF_OK;
}

void worker_keys_delete(worker_state *w, const char *key_id)
{
    for (size_t i = 0; i < w->keys.count; i++) {
        if (memcmp(w->keys.keys[i].key_id, key_id, CF_KEY_ID_LEN + 1) == 0) {
            remove_at(w, i);
            return;
        }
    }
}

void worker_keys_sweep(worker_state *w, int64_t now, uint64_t keep_generation)
{
    for (size_t i = 0; i < w->keys.count;) {
        const worker_key *k = &w->keys.keys[i];
        bool expired = k->expires_at <= now;
        bool unconfirmed = keep_generation != 0 && k->generation != keep_generation;
        if (expired || unconfirmed) {
            CF_LOG_INFO("key_evicted", cf_kv_str("key_id", k->key_id),
                        cf_kv_str("reason", expired ? "expired" : "not_in_snapshot"));
            remove_at(w, i); /* moves the last entry into i */
        } else {
            i++;
        }
    }
}

const worker_key *worker_keys_find(const worker_keys *ks, const char *key_id, int64_t now)
{
    const worker_key *k = find_slot(ks, key_id);
    if (k == NULL || k->expires_at <= now) {
        return NULL;
    }
    return k;
}

bool worker_keys_recent_miss(const worker_keys *ks, const char *key_id, int64_t now)
{
    for (size_t i = 0; i < WORKER_MISS_SLOTS; i++) {
        if (ks->misses[i].until > now && memcmp(ks->misses[i].key_id, key_id, CF_KEY_ID_LEN + 1) == 0) {
            return true;
        }
    }
    return false;
}

void worker_keys_note_miss(worker_keys *ks, const char *key_id, int64_t until)
{
    /* A ring: the oldest miss is forgotten first (bounded memory). */
    worker_miss *m = &ks->misses[ks->miss_next];
    ks->miss_next = (ks->miss_next + 1) % WORKER_MISS_SLOTS;
    memcpy(m->key_id, key_id, sizeof m->key_id);
    m->until = until;
}

CF_RESULT worker_key_lookup(void *ctx, const char *key_id, uint8_t secret[CF_PROTO_SECRET_LEN])
{
    worker_state *w = ctx;
    const worker_key *k = worker_keys_find(&w->keys, key_id, worker_now());
    CF_ENSURE_MSG(k != NULL, CF_E_UNKNOWN_KEY, "no secret for this key id");
    memcpy(secret, k->k, CF_PROTO_SECRET_LEN);
    return CF_OK;
}
