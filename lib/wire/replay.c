/* replay.c — freshness window and bounded replay memory (see replay.h). */
#include "confide/replay.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "confide/crypto.h"
#include "confide/slice.h"

#define ENTRY_LEN 32 /* key_id (16) || S (16) */
#define MAX_WINDOW_MS ((int64_t)24 * 60 * 60 * 1000)

/* One generation: an open-addressing set with linear probing at load <= 1/2,
 * never deleted from (a whole generation is dropped at once). */
typedef struct generation {
    uint8_t *entries; /* slots * ENTRY_LEN */
    uint8_t *used;    /* slots */
    size_t count;
} generation;

struct cf_replay_guard {
    generation gen[2]; /* gen[cur] receives new pairs, gen[cur ^ 1] is older */
    unsigned cur;
    size_t capacity; /* entries per generation */
    size_t slots;    /* power of two >= 2 * capacity */
    int64_t window_ms;
    int64_t gen_start_ms;
    bool started;
    uint8_t hash_key[32];
};

static void gen_clear(generation *g, size_t slots)
{
    memset(g->used, 0, slots);
    g->count = 0;
}

CF_RESULT cf_replay_new(size_t capacity, int64_t window_ms, cf_replay_guard **out)
{
    CF_ENSURE_REF(out);
    *out = NULL;
    if (capacity == 0) {
        capacity = CF_REPLAY_DEFAULT_CAPACITY;
    }
    if (window_ms == 0) {
        window_ms = CF_REPLAY_DEFAULT_WINDOW_MS;
    }
    CF_ENSURE_MSG(capacity <= CF_REPLAY_MAX_CAPACITY, CF_E_INVALID_ARGUMENT, "replay capacity too large");
    CF_ENSURE_MSG(window_ms >= 1000 && window_ms <= MAX_WINDOW_MS, CF_E_INVALID_ARGUMENT,
                  "replay window must be 1 s .. 1 day");
    cf_replay_guard *g = calloc(1, sizeof *g);
    CF_ENSURE(g != NULL, CF_E_NO_MEMORY);
    g->capacity = capacity;
    g->slots = 16;
    while (g->slots < 2 * capacity) {
        g->slots *= 2;
    }
    g->window_ms = window_ms;
    for (int i = 0; i < 2; i++) {
        g->gen[i].entries = calloc(g->slots, ENTRY_LEN);
        g->gen[i].used = calloc(g->slots, 1);
    }
    if (g->gen[0].entries == NULL || g->gen[0].used == NULL || g->gen[1].entries == NULL || g->gen[1].used == NULL ||
        cf_is_error(cf_random(g->hash_key, sizeof g->hash_key))) {
        cf_replay_free(g);
        CF_BAIL_MSG(CF_E_NO_MEMORY, "replay memory");
    }
    *out = g;
    return CF_OK;
}

void cf_replay_free(cf_replay_guard *g)
{
    if (g == NULL) {
        return;
    }
    for (int i = 0; i < 2; i++) {
        free(g->gen[i].entries);
        free(g->gen[i].used);
    }
    cf_wipe(g->hash_key, sizeof g->hash_key);
    free(g);
}

int64_t cf_replay_window_ms(const cf_replay_guard *g) { return g ? g->window_ms : CF_REPLAY_DEFAULT_WINDOW_MS; }

size_t cf_replay_count(const cf_replay_guard *g) { return g ? g->gen[0].count + g->gen[1].count : 0; }

CF_RESULT cf_replay_check_fresh(int64_t salt_ms, int64_t now_ms, int64_t window_ms)
{
    /* Both directions: a timestamp from the future is as suspect as an old
     * one (clock skew is what the window tolerates). Overflow-safe. */
    uint64_t distance = salt_ms <= now_ms ? (uint64_t)now_ms - (uint64_t)salt_ms : (uint64_t)salt_ms - (uint64_t)now_ms;
    bool fresh = window_ms >= 0 && distance <= (uint64_t)window_ms;
    CF_ENSURE_MSG(fresh, CF_E_STALE, "salt timestamp outside the freshness window");
    return CF_OK;
}

/* Start a new generation every 2*window; drop everything after 4*window of
 * silence. Time going backwards changes nothing. */
static void rotate(cf_replay_guard *g, int64_t now_ms)
{
    if (!g->started) {
        g->started = true;
        g->gen_start_ms = now_ms;
        return;
    }
    if (now_ms < g->gen_start_ms || now_ms - g->gen_start_ms < 2 * g->window_ms) {
        return;
    }
    if (now_ms - g->gen_start_ms >= 4 * g->window_ms) {
        gen_clear(&g->gen[0], g->slots);
        gen_clear(&g->gen[1], g->slots);
    } else {
        g->cur ^= 1;
        gen_clear(&g->gen[g->cur], g->slots);
    }
    g->gen_start_ms = now_ms;
}

static CF_RESULT slot_hash(const cf_replay_guard *g, const uint8_t entry[ENTRY_LEN], size_t *out)
{
    uint8_t input[sizeof g->hash_key + ENTRY_LEN], digest[CF_SHA256_LEN];
    memcpy(input, g->hash_key, sizeof g->hash_key);
    memcpy(input + sizeof g->hash_key, entry, ENTRY_LEN);
    cf_result r = cf_sha256(cf_slice_make(input, sizeof input), digest);
    cf_wipe(input, sizeof input);
    CF_GUARD(r);
    uint64_t h = 0;
    for (int i = 0; i < 8; i++) {
        h = (h << 8) | digest[i];
    }
    *out = (size_t)h;
    return CF_OK;
}

/* Slot of `entry` in generation gen, or of the free slot where it would go. */
static size_t probe(const cf_replay_guard *g, const generation *gen, const uint8_t entry[ENTRY_LEN], size_t hash,
                    bool *found)
{
    size_t mask = g->slots - 1;
    size_t i = hash & mask;
    /* Load <= 1/2 guarantees a free slot ends the loop. */
    while (gen->used[i]) {
        if (memcmp(gen->entries + i * ENTRY_LEN, entry, ENTRY_LEN) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
    *found = false;
    return i;
}

static CF_RESULT lookup(cf_replay_guard *g, const uint8_t key_id[16], const uint8_t salt[16], int64_t now_ms,
                        uint8_t entry[ENTRY_LEN], size_t *hash, size_t *free_slot)
{
    CF_ENSURE_REF(g);
    CF_ENSURE_REF(key_id);
    CF_ENSURE_REF(salt);
    uint64_t salt_ms = 0;
    for (int i = 0; i < 8; i++) {
        salt_ms = (salt_ms << 8) | salt[i];
    }
    CF_ENSURE_MSG(salt_ms <= (uint64_t)INT64_MAX, CF_E_STALE, "salt timestamp out of range");
    CF_GUARD(cf_replay_check_fresh((int64_t)salt_ms, now_ms, g->window_ms));
    rotate(g, now_ms);
    memcpy(entry, key_id, 16);
    memcpy(entry + 16, salt, 16);
    CF_GUARD(slot_hash(g, entry, hash));
    bool found;
    (void)probe(g, &g->gen[g->cur ^ 1], entry, *hash, &found);
    CF_ENSURE_MSG(!found, CF_E_REPLAY, "this request was already accepted");
    *free_slot = probe(g, &g->gen[g->cur], entry, *hash, &found);
    CF_ENSURE_MSG(!found, CF_E_REPLAY, "this request was already accepted");
    return CF_OK;
}

CF_RESULT cf_replay_check(cf_replay_guard *g, const uint8_t key_id[16], const uint8_t salt[16], int64_t now_ms)
{
    uint8_t entry[ENTRY_LEN];
    size_t hash, slot;
    return lookup(g, key_id, salt, now_ms, entry, &hash, &slot);
}

CF_RESULT cf_replay_record(cf_replay_guard *g, const uint8_t key_id[16], const uint8_t salt[16], int64_t now_ms)
{
    uint8_t entry[ENTRY_LEN];
    size_t hash, slot;
    CF_GUARD(lookup(g, key_id, salt, now_ms, entry, &hash, &slot));
    generation *gen = &g->gen[g->cur];
    /* Fail closed: never forget a pair early to make room. */
    CF_ENSURE_MSG(gen->count < g->capacity, CF_E_REPLAY_FULL, "replay memory is full");
    memcpy(gen->entries + slot * ENTRY_LEN, entry, ENTRY_LEN);
    gen->used[slot] = 1;
    gen->count++;
    return CF_OK;
}
