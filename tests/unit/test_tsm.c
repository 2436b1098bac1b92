/* test_tsm.c — configfs-tsm collection against a fake configfs tree.
 *
 * The "kernel" is simulated the way configfs behaves: the test pre-writes
 * provider, outblob and auxblob into the entry; `generation` and `inblob` are
 * FIFOs served by a thread, so that each read of generation sees the counter
 * as it stands (a static file could not change between the reads before and
 * after inblob) and the write to inblob is what moves it on. */
#define _GNU_SOURCE /* memmem */
#include "test_helper.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "confide/attest.h"
#include "confide/snp.h"
#include "confide/tsm.h"

#define T_VALID INT64_C(1795132800)

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[8200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The fake kernel: a thread that serves `generation` and `inblob` as FIFOs,
 * in the order configfs-tsm sees them (the counter counts writes to inblob):
 *   1. a reader of generation gets values[0];
 *   2. the 64-byte write to inblob is received (and kept for the test);
 *   3. the next reader of generation gets values[1].
 * Every step blocks on the other side opening the FIFO, so the sequence is
 * driven by the code under test, never by sleeps or polling. The state is on
 * the heap and owned by the test fixture: if an assertion fails mid-test
 * (cmocka longjmps out), the teardown cancels and joins the thread before
 * anything it points to goes away. */
typedef struct gen_feeder {
    char path[8200];
    char inblob_path[8200];
    char values[2][16];
    uint8_t inblob[128];
    size_t inblob_len;
    int served;  /* generation reads answered */
    int fd;      /* the FIFO end the thread holds, -1 if none */
    pthread_t thread;
    bool running; /* created and not yet joined */
} gen_feeder;

/* Waits that only run out when the test is failing anyway: generous, so that
 * valgrind or sanitizers on a loaded 2-core CI machine never trip them. */
#define FEEDER_BUDGET_S 120

static bool serve_generation(gen_feeder *g, const char *value)
{
    /* Blocks until the code under test opens generation for reading. */
    g->fd = open(g->path, O_WRONLY | O_CLOEXEC);
    if (g->fd < 0) {
        return false;
    }
    size_t len = strlen(value);
    ssize_t n = write(g->fd, value, len); /* <= PIPE_BUF: one atomic write */
    close(g->fd); /* the reader still gets the bytes, then EOF */
    g->fd = -1;
    g->served++;
    return n == (ssize_t)len;
}

static bool receive_inblob(gen_feeder *g)
{
    /* Blocks until the code under test opens inblob for writing. */
    g->fd = open(g->inblob_path, O_RDONLY | O_CLOEXEC);
    if (g->fd < 0) {
        return false;
    }
    for (;;) {
        ssize_t n = read(g->fd, g->inblob + g->inblob_len, sizeof g->inblob - g->inblob_len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break; /* EOF: the writer closed */
        }
        g->inblob_len += (size_t)n;
        if (g->inblob_len == sizeof g->inblob) {
            break;
        }
    }
    close(g->fd);
    g->fd = -1;
    return true;
}

static void *feed_generation(void *arg)
{
    gen_feeder *g = arg;
    if (serve_generation(g, g->values[0]) && receive_inblob(g)) {
        serve_generation(g, g->values[1]);
    }
    return NULL;
}

static void make_fifo(const char *path)
{
    unlink(path); /* a second feeder on the same entry replaces the first's FIFOs */
    assert_int_equal(mkfifo(path, 0600), 0);
}

static void start_feeder(gen_feeder *g, const char *entry, const char *v0, const char *v1)
{
    assert_false(g->running);
    memset(g, 0, sizeof *g);
    g->fd = -1;
    snprintf(g->path, sizeof g->path, "%s/generation", entry);
    snprintf(g->inblob_path, sizeof g->inblob_path, "%s/inblob", entry);
    make_fifo(g->path);
    make_fifo(g->inblob_path);
    snprintf(g->values[0], sizeof g->values[0], "%s", v0);
    snprintf(g->values[1], sizeof g->values[1], "%s", v1);
    assert_int_equal(pthread_create(&g->thread, NULL, feed_generation, g), 0);
    g->running = true;
}

/* Stop the thread wherever it is blocked (open/read/write are cancellation
 * points) and join it. Safe on a feeder that already finished. */
static void stop_feeder(gen_feeder *g)
{
    if (!g->running) {
        return;
    }
    pthread_cancel(g->thread);
    pthread_join(g->thread, NULL);
    g->running = false;
    if (g->fd >= 0) {
        close(g->fd);
        g->fd = -1;
    }
}

/* Wait for the feeder to have served its whole sequence (the code under test
 * drives it, so this returns at once when that code did its part). */
static void finish_feeder(gen_feeder *g)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += FEEDER_BUDGET_S;
    int rc = pthread_timedjoin_np(g->thread, NULL, &deadline);
    if (rc != 0) {
        stop_feeder(g);
        fail_msg("the fake kernel was never asked for generation/inblob (rc %d, served %d)", rc, g->served);
    }
    g->running = false;
}

static void build_cert_table(cf_buf *out)
{
    static const uint8_t guid_vcek[16] = {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                          0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
    cf_buf vcek;
    cf_buf_init(&vcek, 0);
    cf_test_read_file("amd-sev-snp/milan/trustee_vcek.der", true, &vcek);
    uint8_t hdr[48] = {0};
    memcpy(hdr, guid_vcek, 16);
    hdr[16] = 48;
    hdr[20] = (uint8_t)(vcek.len & 0xff);
    hdr[21] = (uint8_t)(vcek.len >> 8);
    cf_buf_init(out, 0);
    assert_cf_ok(cf_buf_append(out, hdr, sizeof hdr));
    assert_cf_ok(cf_buf_append_slice(out, cf_buf_slice(&vcek)));
    cf_buf_free(&vcek);
}

typedef struct fake_tsm {
    char *root;
    char entry[4096];
    cf_buf report;
} fake_tsm;

/* A fake report root with one entry made by cf_tsm_entry_create, populated
 * like the kernel populates an SNP (or TDX) entry. */
static void fake_setup(fake_tsm *f, const char *provider, bool with_aux)
{
    cf_buf_init(&f->report, 0);
    f->root = cf_test_tmpdir();
    assert_cf_ok(cf_tsm_entry_create(f->root, f->entry, sizeof f->entry));
    assert_int_equal(strncmp(f->entry, f->root, strlen(f->root)), 0);
    write_file(f->entry, "provider", provider, strlen(provider));
    cf_test_read_file("amd-sev-snp/milan/trustee_report.bin", true, &f->report);
    write_file(f->entry, "outblob", f->report.data, f->report.len);
    if (with_aux) {
        cf_buf table;
        build_cert_table(&table);
        write_file(f->entry, "auxblob", table.data, table.len);
        cf_buf_free(&table);
    }
}

static void fake_teardown(fake_tsm *f)
{
    cf_buf_free(&f->report);
    if (f->root != NULL) {
        cf_test_rmrf(f->root);
        free(f->root);
        f->root = NULL;
    }
}

/* Everything a test holds lives here, so that the teardown releases it even
 * when an assertion ends the test early: the feeder thread is stopped and
 * joined first, then files and buffers go. */
typedef struct fixture {
    fake_tsm fake;
    gen_feeder feeder;
    char *dir; /* collateral_dir */
    cf_buf out, aux, ev, coll, vcek;
} fixture;

static int fx_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL) {
        return -1;
    }
    fx->feeder.fd = -1;
    cf_buf_init(&fx->out, 0);
    cf_buf_init(&fx->aux, 0);
    cf_buf_init(&fx->ev, 0);
    cf_buf_init(&fx->coll, 0);
    cf_buf_init(&fx->vcek, 0);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fixture *fx = *state;
    stop_feeder(&fx->feeder);
    fake_teardown(&fx->fake);
    if (fx->dir != NULL) {
        cf_test_rmrf(fx->dir);
        free(fx->dir);
    }
    cf_buf_free(&fx->out);
    cf_buf_free(&fx->aux);
    cf_buf_free(&fx->ev);
    cf_buf_free(&fx->coll);
    cf_buf_free(&fx->vcek);
    free(fx);
    return 0;
}

static const uint8_t RD[64] = {0xde, 0xad, 0xbe, 0xef, [63] = 0x42};

static void test_generate_snp_entry(void **state)
{
    fixture *fx = *state;
    fake_setup(&fx->fake, "sev_guest\n", true);
    start_feeder(&fx->feeder, fx->fake.entry, "7\n", "8\n");
    assert_cf_ok(cf_tsm_entry_generate(fx->fake.entry, CF_PLATFORM_SNP, RD, &fx->out, &fx->aux));
    finish_feeder(&fx->feeder);
    assert_int_equal(fx->feeder.served, 2);
    /* The "kernel" received exactly the report_data, in one write; outblob
     * came back whole. */
    assert_int_equal(fx->feeder.inblob_len, 64);
    assert_memory_equal(fx->feeder.inblob, RD, 64);
    assert_int_equal(fx->out.len, fx->fake.report.len);
    assert_memory_equal(fx->out.data, fx->fake.report.data, fx->out.len);
    assert_true(fx->aux.len > 48);
}

static void test_collect_snp_collateral_from_auxblob_verifies(void **state)
{
    fixture *fx = *state;
    fake_setup(&fx->fake, "sev_guest", true);
    start_feeder(&fx->feeder, fx->fake.entry, "0", "1");
    cf_attester_config cfg = {.platform = CF_PLATFORM_SNP, .tsm_path = fx->fake.root};
    assert_cf_ok(cf_tsm_collect_entry(&cfg, fx->fake.entry, RD, &fx->ev, &fx->coll));
    finish_feeder(&fx->feeder);
    assert_int_equal(fx->feeder.served, 2);
    /* The VCEK came out of the certificate table as PEM. */
    assert_non_null(memmem(fx->coll.data, fx->coll.len, "-----BEGIN CERTIFICATE-----", 27));
    cf_verify_input in = {.platform = CF_PLATFORM_SNP,
                          .evidence = cf_buf_slice(&fx->ev),
                          .collateral = cf_buf_slice(&fx->coll),
                          .now = T_VALID};
    cf_claims claims;
    assert_cf_ok(cf_attest_verify(&in, &claims));
    assert_string_equal(claims.tcb, "bl=3 tee=0 snp=8 ucode=115");
    cf_claims_free(&claims);
}

static void test_collect_collateral_dir_fallback(void **state)
{
    fixture *fx = *state;
    fake_setup(&fx->fake, "sev_guest", false); /* the host gave no certificates */
    fx->dir = cf_test_tmpdir();
    cf_test_read_file("amd-sev-snp/milan/trustee_vcek.der", true, &fx->vcek);
    write_file(fx->dir, "snp.collateral", fx->vcek.data, fx->vcek.len);

    start_feeder(&fx->feeder, fx->fake.entry, "0", "1");
    cf_attester_config cfg = {.platform = CF_PLATFORM_SNP, .collateral_dir = fx->dir};
    assert_cf_ok(cf_tsm_collect_entry(&cfg, fx->fake.entry, RD, &fx->ev, &fx->coll));
    finish_feeder(&fx->feeder);
    assert_int_equal(fx->coll.len, fx->vcek.len);
    assert_memory_equal(fx->coll.data, fx->vcek.data, fx->vcek.len);
    cf_buf_free(&fx->ev);
    cf_buf_free(&fx->coll);

    /* Neither auxblob nor collateral_dir: a clear error, nothing returned. */
    start_feeder(&fx->feeder, fx->fake.entry, "1", "2");
    cfg.collateral_dir = NULL;
    assert_cf_error(cf_tsm_collect_entry(&cfg, fx->fake.entry, RD, &fx->ev, &fx->coll), CF_E_NOT_FOUND);
    finish_feeder(&fx->feeder);
    assert_int_equal(fx->feeder.served, 2);
    assert_int_equal(fx->ev.len, 0);
    assert_int_equal(fx->coll.len, 0);
}

static void test_tdx_provider_and_collateral_dir(void **state)
{
    fixture *fx = *state;
    fake_setup(&fx->fake, "tdx_guest", false);
    fx->dir = cf_test_tmpdir();
    write_file(fx->dir, "tdx.collateral", "{\"tcb_info\":1}", 14);
    start_feeder(&fx->feeder, fx->fake.entry, "0", "1");
    cf_attester_config cfg = {.platform = CF_PLATFORM_TDX, .collateral_dir = fx->dir};
    assert_cf_ok(cf_tsm_collect_entry(&cfg, fx->fake.entry, RD, &fx->ev, &fx->coll));
    finish_feeder(&fx->feeder);
    assert_int_equal(fx->ev.len, fx->fake.report.len); /* the outblob, whatever the TSM made */
    assert_int_equal(fx->coll.len, 14);
    /* Asking for SNP from a TDX provider fails before anything is written
     * (no feeder runs: touching generation or inblob would block). */
    assert_cf_error(cf_tsm_entry_generate(fx->fake.entry, CF_PLATFORM_SNP, RD, &fx->out, &fx->aux),
                    CF_E_UNSUPPORTED);
    assert_non_null(strstr(cf_error_last()->detail, "'tdx_guest'"));
    assert_int_equal(fx->out.len, 0);
    assert_cf_error(cf_tsm_entry_generate(fx->fake.entry, CF_PLATFORM_SIM, RD, &fx->out, &fx->aux),
                    CF_E_UNSUPPORTED);
}

static void test_generation_race_detected(void **state)
{
    fixture *fx = *state;
    static const char *const cases[][2] = {{"0", "2"}, {"5", "5"}, {"0", "x"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_setup(&fx->fake, "sev_guest", true);
        start_feeder(&fx->feeder, fx->fake.entry, cases[i][0], cases[i][1]);
        cf_result r = cf_tsm_entry_generate(fx->fake.entry, CF_PLATFORM_SNP, RD, &fx->out, &fx->aux);
        finish_feeder(&fx->feeder);
        assert_int_equal(fx->feeder.served, 2);
        assert_true(cf_is_error(r));
        assert_int_equal(cf_error_code_last(), i < 2 ? CF_E_IO : CF_E_MALFORMED);
        cf_buf_free(&fx->out);
        cf_buf_free(&fx->aux);
        fake_teardown(&fx->fake);
    }
}

static void test_missing_files_and_root(void **state)
{
    (void)state;
    cf_attester_config cfg = {.platform = CF_PLATFORM_SNP, .tsm_path = "/nonexistent/tsm/report"};
    cf_buf ev, coll;
    cf_buf_init(&ev, 0);
    cf_buf_init(&coll, 0);
    assert_cf_error(cf_tsm_collect(&cfg, RD, &ev, &coll), CF_E_NOT_FOUND);
    assert_non_null(strstr(cf_error_last()->detail, "not available"));

    /* A plain directory that is not configfs: no provider appears after
     * mkdir, collection fails and the entry is removed again. */
    char *root = cf_test_tmpdir();
    cfg.tsm_path = root;
    assert_cf_error(cf_tsm_collect(&cfg, RD, &ev, &coll), CF_E_IO);
    assert_int_equal(ev.len, 0);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "[ -z \"$(ls -A '%s')\" ]", root);
    assert_int_equal(system(cmd), 0);
    /* sim is not a configfs-tsm platform. */
    cfg.platform = CF_PLATFORM_SIM;
    assert_cf_error(cf_tsm_collect(&cfg, RD, &ev, &coll), CF_E_UNSUPPORTED);

    /* Entry without outblob: clean failure. */
    char entry[4096];
    assert_cf_ok(cf_tsm_entry_create(root, entry, sizeof entry));
    write_file(entry, "provider", "sev_guest", 9);
    write_file(entry, "generation", "0", 1);
    cf_buf out, aux;
    cf_buf_init(&out, 0);
    cf_buf_init(&aux, 0);
    assert_cf_error(cf_tsm_entry_generate(entry, CF_PLATFORM_SNP, RD, &out, &aux), CF_E_IO);
    /* Oversized outblob. */
    uint8_t *big = calloc(1, CF_TSM_OUTBLOB_MAX + 1);
    write_file(entry, "outblob", big, CF_TSM_OUTBLOB_MAX + 1);
    free(big);
    assert_cf_error(cf_tsm_entry_generate(entry, CF_PLATFORM_SNP, RD, &out, &aux), CF_E_TOO_LARGE);
    /* rmdir of a non-empty plain directory fails with a clear error. */
    assert_cf_error(cf_tsm_entry_remove(entry), CF_E_IO);
    cf_buf_free(&out);
    cf_buf_free(&aux);
    cf_buf_free(&ev);
    cf_buf_free(&coll);
    cf_test_rmrf(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_generate_snp_entry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_collect_snp_collateral_from_auxblob_verifies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_collect_collateral_dir_fallback, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tdx_provider_and_collateral_dir, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_generation_race_detected, fx_setup, fx_teardown),
        cmocka_unit_test(test_missing_files_and_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
