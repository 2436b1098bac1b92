/* keys.c — the worker's use of the key cache (include/confide/worker_keys.h):
 * metrics, logs and the codec's key lookup. Secrets arrive here only from
 * verified key events (join.c) and leave only by being wiped in the cache. */
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

CF_RESULT worker_keys_put(worker_state *w, const cf_key_event *ev, uint64_t generation)
{
    char evicted[CF_KEY_ID_LEN + 1];
    CF_GUARD(cf_worker_keys_put(&w->keys, ev->key_id, ev->k, ev->expires_at, &ev->scope, generation, worker_now(),
                                evicted));
    if (evicted[0] != '\0') {
        CF_LOG_WARN("key_evicted", cf_kv_str("key_id", evicted), cf_kv_str("reason", "cache_full"),
                    cf_kv_uint("max_keys", w->keys.cap));
    }
    cf_metric_set(w->m.keys, (double)w->keys.count);
    return CF_OK;
}

void worker_keys_delete(worker_state *w, const char *key_id)
{
    (void)cf_worker_keys_delete(&w->keys, key_id);
    cf_metric_set(w->m.keys, (double)w->keys.count);
}

static void log_eviction(void *arg, const char *key_id, bool expired)
{
    (void)arg;
    CF_LOG_INFO("key_evicted", cf_kv_str("key_id", key_id), cf_kv_str("reason", expired ? "expired" : "not_in_snapshot"));
}

void worker_keys_sweep(worker_state *w, int64_t now, uint64_t keep_generation)
{
    (void)cf_worker_keys_sweep(&w->keys, now, keep_generation, log_eviction, NULL);
    cf_metric_set(w->m.keys, (double)w->keys.count);
}

CF_RESULT worker_key_lookup(void *ctx, const char *key_id, uint8_t secret[CF_PROTO_SECRET_LEN])
{
    worker_state *w = ctx;
    const cf_worker_key *k = cf_worker_keys_find(&w->keys, key_id, worker_now());
    CF_ENSURE_MSG(k != NULL, CF_E_UNKNOWN_KEY, "no secret for this key id");
    memcpy(secret, k->k, CF_PROTO_SECRET_LEN);
    return CF_OK;
}
