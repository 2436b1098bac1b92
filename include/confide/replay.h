/*
 * replay.h — freshness window and replay memory of the worker (DESIGN §4.7,
 * docs/protocol.md §Freshness and replay).
 *
 * What it is for. A captured request must not run twice on a worker. Each
 * request's salt S starts with the client's clock (ms); the worker accepts it
 * only within ±window of its own clock and remembers every accepted
 * (key_id, S) for as long as the window could still accept it.
 *
 * Rules:
 *  - Bounded memory, fail closed: two generations of at most `capacity`
 *    entries each; a new generation starts every 2*window and the oldest is
 *    dropped, so a pair is kept at least 2*window after it was recorded
 *    (covers t + window <= now + 2*window). When the current generation is
 *    full, cf_replay_record fails with CF_E_REPLAY_FULL: it rejects rather
 *    than forget early.
 *  - Record only after the whole request authenticated (the protocol codec
 *    does this), so only holders of the secret can occupy memory.
 *  - Table slots are chosen by a keyed SHA-256 of (key_id, S) with a random
 *    per-guard key, so clients cannot aim salts at one probe chain.
 *  - Time is always an explicit input; time going backwards never drops
 *    entries.
 *  - Not thread-safe: one guard per event loop.
 */
#ifndef CONFIDE_REPLAY_H
#define CONFIDE_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "confide/result.h"

#define CF_REPLAY_DEFAULT_WINDOW_MS ((int64_t)5 * 60 * 1000)
#define CF_REPLAY_DEFAULT_CAPACITY ((size_t)65536)
#define CF_REPLAY_MAX_CAPACITY ((size_t)1 << 24)

typedef struct cf_replay_guard cf_replay_guard;

/* capacity: entries per generation (0 = default, at most
 * CF_REPLAY_MAX_CAPACITY); window_ms: 0 = default, else 1 s .. 1 day.
 * Memory: about 2 * 2 * capacity * 33 bytes. */
CF_RESULT cf_replay_new(size_t capacity, int64_t window_ms, cf_replay_guard **out);
void cf_replay_free(cf_replay_guard *g);
int64_t cf_replay_window_ms(const cf_replay_guard *g);

/* CF_E_STALE unless |now_ms - salt_ms| <= window_ms. */
CF_RESULT cf_replay_check_fresh(int64_t salt_ms, int64_t now_ms, int64_t window_ms);

/* Freshness, then CF_E_REPLAY if (key_id, salt) was recorded. Records
 * nothing. */
CF_RESULT cf_replay_check(cf_replay_guard *g, const uint8_t key_id[16], const uint8_t salt[16], int64_t now_ms);
/* Freshness, replay, then record the pair; CF_E_REPLAY_FULL when the memory
 * is full. */
CF_RESULT cf_replay_record(cf_replay_guard *g, const uint8_t key_id[16], const uint8_t salt[16], int64_t now_ms);

/* Pairs currently remembered (both generations). */
size_t cf_replay_count(const cf_replay_guard *g);

#endif /* CONFIDE_REPLAY_H */
