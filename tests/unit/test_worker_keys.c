/* test_worker_keys.c — the worker's key cache (include/confide/worker_keys.h):
 * lookups, expiry, replacement, eviction order when full, generation sweeps,
 * deletion, the negative cache, and that removed secrets are wiped. */
#include "test_helper.h"

#include <string.h>

#include "confide/as_api.h"
#include "confide/worker_keys.h"

typedef struct key {
    uint8_t k[CF_INFERENCE_KEY_LEN];
    char id[CF_KEY_ID_LEN + 1];
} key_t_;

static cf_key_scope scope_one(void)
{
    cf_key_scope s = {.count = 1};
    snprintf(s.models[0], sizeof s.models[0], "model-a");
    return s;
}

static void fresh(key_t_ *k) { assert_cf_ok(cf_key_generate(k->k, k->id)); }

/* True if no byte of `secret` remains anywhere in the cache's slot array
 * (including slots beyond count: removed entries must be wiped). */
static bool secret_absent(const cf_worker_keys *ks, const uint8_t secret[CF_INFERENCE_KEY_LEN])
{
    for (size_t i = 0; i < ks->cap; i++) {
        if (memcmp(ks->keys[i].k, secret, CF_INFERENCE_KEY_LEN) == 0) {
            return false;
        }
    }
    return true;
}

static void test_put_find_expiry(void **state)
{
    (void)state;
    cf_worker_keys ks;
    assert_cf_ok(cf_worker_keys_init(&ks, 4));
    key_t_ a;
    fresh(&a);
    cf_key_scope sc = scope_one();
    char evicted[CF_KEY_ID_LEN + 1];
    assert_cf_ok(cf_worker_keys_put(&ks, a.id, a.k, 1000, &sc, 1, 500, evicted));
    assert_string_equal(evicted, "");
    const cf_worker_key *got = cf_worker_keys_find(&ks, a.id, 999);
    assert_non_null(got);
    assert_memory_equal(got->k, a.k, sizeof a.k);
    assert_string_equal(got->scope.models[0], "model-a");
    /* Expired at its expiry second, even before a sweep. */
    assert_null(cf_worker_keys_find(&ks, a.id, 1000));
    /* Unknown id. */
    key_t_ b;
    fresh(&b);
    assert_null(cf_worker_keys_find(&ks, b.id, 600));
    /* Sweep removes and wipes it. */
    assert_int_equal(cf_worker_keys_sweep(&ks, 1000, 0, NULL, NULL), 1);
    assert_int_equal(ks.count, 0);
    assert_true(secret_absent(&ks, a.k));
    cf_worker_keys_free(&ks);
}

static void test_refusals(void **state)
{
    (void)state;
    cf_worker_keys ks;
    assert_cf_error(cf_worker_keys_init(&ks, 0), CF_E_INVALID_ARGUMENT);
    assert_cf_ok(cf_worker_keys_init(&ks, 2));
    key_t_ a;
    fresh(&a);
    cf_key_scope sc = scope_one();
    /* Already expired: refused, nothing stored. */
    assert_cf_error(cf_worker_keys_put(&ks, a.id, a.k, 100, &sc, 1, 100, NULL), CF_E_EXPIRED);
    /* Not a key id: too short, bad alphabet. */
    assert_cf_error(cf_worker_keys_put(&ks, "short", a.k, 1000, &sc, 1, 100, NULL), CF_E_MALFORMED);
    char bad[CF_KEY_ID_LEN + 1];
    memcpy(bad, a.id, sizeof bad);
    bad[3] = '=';
    assert_cf_error(cf_worker_keys_put(&ks, bad, a.k, 1000, &sc, 1, 100, NULL), CF_E_MALFORMED);
    assert_int_equal(ks.count, 0);
    assert_true(secret_absent(&ks, a.k));
    cf_worker_keys_free(&ks);
}

static void test_replace_same_id(void **state)
{
    (void)state;
    cf_worker_keys ks;
    assert_cf_ok(cf_worker_keys_init(&ks, 2));
    key_t_ a;
    fresh(&a);
    cf_key_scope sc = scope_one();
    assert_cf_ok(cf_worker_keys_put(&ks, a.id, a.k, 1000, &sc, 1, 0, NULL));
    assert_cf_ok(cf_worker_keys_put(&ks, a.id, a.k, 2000, &sc, 2, 0, NULL));
    assert_int_equal(ks.count, 1);
    assert_int_equal(cf_worker_keys_find(&ks, a.id, 1500)->expires_at, 2000);
    assert_int_equal(cf_worker_keys_find(&ks, a.id, 1500)->generation, 2);
    cf_worker_keys_free(&ks);
}

/* Full: the key expiring first makes room, whatever its position. */
static void test_eviction_order(void **state)
{
    (void)state;
    cf_worker_keys ks;
    assert_cf_ok(cf_worker_keys_init(&ks, 3));
    key_t_ k[5];
    cf_key_scope sc = scope_one();
    const int64_t expiry[5] = {3000, 1000, 2000, 5000, 4000};
    char evicted[CF_KEY_ID_LEN + 1];
    for (int i = 0; i < 3; i++) {
        fresh(&k[i]);
        assert_cf_ok(cf_worker_keys_put(&ks, k[i].id, k[i].k, expiry[i], &sc, 1, 0, evicted));
        assert_string_equal(evicted, "");
    }
    fresh(&k[3]);
    assert_cf_ok(cf_worker_keys_put(&ks, k[3].id, k[3].k, expiry[3], &sc, 1, 0, evicted));
    assert_string_equal(evicted, k[1].id); /* expiry 1000 */
    assert_true(secret_absent(&ks, k[1].k));
    fresh(&k[4]);
    assert_cf_ok(cf_worker_keys_put(&ks, k[4].id, k[4].k, expiry[4], &sc, 1, 0, evicted));
    assert_string_equal(evicted, k[2].id); /* expiry 2000 */
    assert_true(secret_absent(&ks, k[2].k));
    assert_int_equal(ks.count, 3);
    for (int i = 0; i < 5; i++) {
        bool held = i == 0 || i == 3 || i == 4;
        assert_int_equal(cf_worker_keys_find(&ks, k[i].id, 0) != NULL, held);
    }
    cf_worker_keys_free(&ks);
}

typedef struct evictions {
    int expired, unconfirmed;
} evictions;

static void count_eviction(void *arg, const char *key_id, bool expired)
{
    evictions *e = arg;
    assert_int_equal(strlen(key_id), CF_KEY_ID_LEN);
    if (expired) {
        e->expired++;
    } else {
        e->unconfirmed++;
    }
}

/* A reconnected stream's snapshot confirms keys (new generation); the sweep
 * at "ready" drops the others, and expired ones, in one pass (including
 * entries moved into a freed slot). */
static void test_generation_sweep(void **state)
{
    (void)state;
    cf_worker_keys ks;
    assert_cf_ok(cf_worker_keys_init(&ks, 8));
    key_t_ k[6];
    cf_key_scope sc = scope_one();
    /* gen 1: k0..k5; gen 2 confirms k1, k3, k5; k5 also expired. */
    for (int i = 0; i < 6; i++) {
        fresh(&k[i]);
        assert_cf_ok(cf_worker_keys_put(&ks, k[i].id, k[i].k, i == 5 ? 150 : 1000, &sc, 1, 0, NULL));
    }
    for (int i = 1; i < 6; i += 2) {
        assert_cf_ok(cf_worker_keys_put(&ks, k[i].id, k[i].k, i == 5 ? 150 : 1000, &sc, 2, 0, NULL));
    }
    evictions ev = {0};
    assert_int_equal(cf_worker_keys_sweep(&ks, 200, 2, count_eviction, &ev), 4);
    assert_int_equal(ev.expired, 1);
    assert_int_equal(ev.unconfirmed, 3);
    assert_int_equal(ks.count, 2);
    assert_non_null(cf_worker_keys_find(&ks, k[1].id, 200));
    assert_non_null(cf_worker_keys_find(&ks, k[3].id, 200));
    for (int i = 0; i < 6; i++) {
        if (i != 1 && i != 3) {
            assert_true(secret_absent(&ks, k[i].k));
        }
    }
    cf_worker_keys_free(&ks);
}

static void test_delete(void **state)
{
    (void)state;
    cf_worker_keys ks;
    assert_cf_ok(cf_worker_keys_init(&ks, 4));
    key_t_ a, b;
    fresh(&a);
    fresh(&b);
    cf_key_scope sc = scope_one();
    assert_cf_ok(cf_worker_keys_put(&ks, a.id, a.k, 1000, &sc, 1, 0, NULL));
    assert_cf_ok(cf_worker_keys_put(&ks, b.id, b.k, 1000, &sc, 1, 0, NULL));
    assert_true(cf_worker_keys_delete(&ks, a.id));
    assert_false(cf_worker_keys_delete(&ks, a.id));
    assert_null(cf_worker_keys_find(&ks, a.id, 0));
    assert_non_null(cf_worker_keys_find(&ks, b.id, 0));
    assert_true(secret_absent(&ks, a.k));
    cf_worker_keys_free(&ks);
}

static void test_negative_cache(void **state)
{
    (void)state;
    cf_worker_keys ks;
    assert_cf_ok(cf_worker_keys_init(&ks, 1));
    key_t_ first;
    fresh(&first);
    assert_false(cf_worker_keys_recent_miss(&ks, first.id, 0));
    cf_worker_keys_note_miss(&ks, first.id, 10);
    assert_true(cf_worker_keys_recent_miss(&ks, first.id, 9));
    assert_false(cf_worker_keys_recent_miss(&ks, first.id, 10)); /* expired */
    cf_worker_keys_note_miss(&ks, first.id, 100);
    /* Bounded: CF_WORKER_KEYS_MISS_SLOTS newer misses push it out. */
    for (int i = 0; i < CF_WORKER_KEYS_MISS_SLOTS - 1; i++) {
        key_t_ k;
        fresh(&k);
        cf_worker_keys_note_miss(&ks, k.id, 100);
    }
    /* The first note (until 10) was overwritten by then; the second one is
     * still held after SLOTS-1 others... */
    assert_true(cf_worker_keys_recent_miss(&ks, first.id, 50));
    key_t_ k;
    fresh(&k);
    cf_worker_keys_note_miss(&ks, k.id, 100);
    /* ...and forgotten after one more. */
    assert_false(cf_worker_keys_recent_miss(&ks, first.id, 50));
    assert_true(cf_worker_keys_recent_miss(&ks, k.id, 50));
    cf_worker_keys_free(&ks);
}

/* Lookups with an ID shorter than a key ID (any string) find nothing and
 * read nothing past its end (ASan checks the latter under SANITIZE=1). */
static void test_short_ids(void **state)
{
    (void)state;
    cf_worker_keys ks;
    assert_cf_ok(cf_worker_keys_init(&ks, 2));
    key_t_ a;
    fresh(&a);
    cf_key_scope sc = scope_one();
    assert_cf_ok(cf_worker_keys_put(&ks, a.id, a.k, 1000, &sc, 1, 0, NULL));
    cf_worker_keys_note_miss(&ks, a.id, 100);
    static const char shorter[] = "x";
    char prefix[8];
    memcpy(prefix, a.id, sizeof prefix - 1);
    prefix[sizeof prefix - 1] = '\0';
    assert_null(cf_worker_keys_find(&ks, shorter, 0));
    assert_null(cf_worker_keys_find(&ks, prefix, 0));
    assert_false(cf_worker_keys_recent_miss(&ks, shorter, 0));
    assert_false(cf_worker_keys_recent_miss(&ks, prefix, 0));
    assert_false(cf_worker_keys_delete(&ks, prefix));
    assert_non_null(cf_worker_keys_find(&ks, a.id, 0));
    cf_worker_keys_free(&ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_find_expiry), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_replace_same_id), cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_generation_sweep), cmocka_unit_test(test_delete),
        cmocka_unit_test(test_negative_cache), cmocka_unit_test(test_short_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
