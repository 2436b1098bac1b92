/* test_tsm.c — configfs-tsm collection against a fake configfs tree.
 *
 * The "kernel" is simulated the way configfs behaves: the test pre-writes
 * provider, outblob and auxblob into the entry, and `generation` is a FIFO
 * fed by a thread, so that each read of it sees the next counter value (a
 * static file could not change between the reads before and after inblob). */
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

static void read_file(const char *dir, const char *name, cf_buf *out)
{
    char path[8200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cf_buf_init(out, 0);
    cf_test_read_file(path, false, out);
}

/* Feeds values[0] to the reader of `generation` before inblob is written and
 * values[1] to the reader after it, as the kernel's counter would (it counts
 * writes to inblob). */
typedef struct gen_feeder {
    char path[8200];
    char inblob[8200];
    const char *values[2];
    int served;
    pthread_t thread;
} gen_feeder;

static void sleep_10ms(void) { nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); }

static void *feed_generation(void *arg)
{
    gen_feeder *g = arg;
    for (int i = 0; i < 2; i++) {
        if (i == 1) {
            /* Wait (up to 30 s, valgrind on a loaded machine) for the write to inblob. */
            struct stat st;
            for (int tries = 0; tries < 3000 && !(stat(g->inblob, &st) == 0 && st.st_size == 64); tries++) {
                sleep_10ms();
            }
        }
        int fd = -1;
        /* Wait (up to 30 s) for a reader to open the FIFO. */
        for (int tries = 0; tries < 3000 && fd < 0; tries++) {
            fd = open(g->path, O_WRONLY | O_NONBLOCK);
            if (fd < 0) {
                sleep_10ms();
            }
        }
        if (fd < 0) {
            return NULL;
        }
        ssize_t n = write(fd, g->values[i], strlen(g->values[i]));
        (void)n;
        close(fd); /* the reader still gets the bytes, then EOF */
        g->served++;
    }
    return NULL;
}

static void start_feeder(gen_feeder *g, const char *entry, const char *v0, const char *v1)
{
    snprintf(g->path, sizeof g->path, "%s/generation", entry);
    snprintf(g->inblob, sizeof g->inblob, "%s/inblob", entry);
    assert_int_equal(mkfifo(g->path, 0600), 0);
    g->values[0] = v0;
    g->values[1] = v1;
    g->served = 0;
    assert_int_equal(pthread_create(&g->thread, NULL, feed_generation, g), 0);
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
    f->root = cf_test_tmpdir();
    assert_cf_ok(cf_tsm_entry_create(f->root, f->entry, sizeof f->entry));
    assert_int_equal(strncmp(f->entry, f->root, strlen(f->root)), 0);
    write_file(f->entry, "provider", provider, strlen(provider));
    cf_buf_init(&f->report, 0);
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
    cf_test_rmrf(f->root);
    free(f->root);
}

static const uint8_t RD[64] = {0xde, 0xad, 0xbe, 0xef, [63] = 0x42};

static void test_generate_snp_entry(void **state)
{
    (void)state;
    fake_tsm f;
    fake_setup(&f, "sev_guest\n", true);
    gen_feeder g;
    start_feeder(&g, f.entry, "7\n", "8\n");
    cf_buf out, aux;
    cf_buf_init(&out, 0);
    cf_buf_init(&aux, 0);
    assert_cf_ok(cf_tsm_entry_generate(f.entry, CF_PLATFORM_SNP, RD, &out, &aux));
    pthread_join(g.thread, NULL);
    assert_int_equal(g.served, 2);
    /* inblob holds exactly the report_data; outblob came back whole. */
    cf_buf in;
    read_file(f.entry, "inblob", &in);
    assert_int_equal(in.len, 64);
    assert_memory_equal(in.data, RD, 64);
    assert_int_equal(out.len, f.report.len);
    assert_memory_equal(out.data, f.report.data, out.len);
    assert_true(aux.len > 48);
    cf_buf_free(&in);
    cf_buf_free(&out);
    cf_buf_free(&aux);
    fake_teardown(&f);
}

static void test_collect_snp_collateral_from_auxblob_verifies(void **state)
{
    (void)state;
    fake_tsm f;
    fake_setup(&f, "sev_guest", true);
    gen_feeder g;
    start_feeder(&g, f.entry, "0", "1");
    cf_attester_config cfg = {.platform = CF_PLATFORM_SNP, .tsm_path = f.root};
    cf_buf ev, coll;
    cf_buf_init(&ev, 0);
    cf_buf_init(&coll, 0);
    assert_cf_ok(cf_tsm_collect_entry(&cfg, f.entry, RD, &ev, &coll));
    pthread_join(g.thread, NULL);
    /* The VCEK came out of the certificate table as PEM. */
    assert_non_null(memmem(coll.data, coll.len, "-----BEGIN CERTIFICATE-----", 27));
    cf_verify_input in = {.platform = CF_PLATFORM_SNP,
                          .evidence = cf_buf_slice(&ev),
                          .collateral = cf_buf_slice(&coll),
                          .now = T_VALID};
    cf_claims claims;
    assert_cf_ok(cf_attest_verify(&in, &claims));
    assert_string_equal(claims.tcb, "bl=3 tee=0 snp=8 ucode=115");
    cf_claims_free(&claims);
    cf_buf_free(&ev);
    cf_buf_free(&coll);
    fake_teardown(&f);
}

static void test_collect_collateral_dir_fallback(void **state)
{
    (void)state;
    fake_tsm f;
    fake_setup(&f, "sev_guest", false); /* the host gave no certificates */
    char *dir = cf_test_tmpdir();
    cf_buf vcek;
    cf_buf_init(&vcek, 0);
    cf_test_read_file("amd-sev-snp/milan/trustee_vcek.der", true, &vcek);
    write_file(dir, "snp.collateral", vcek.data, vcek.len);

    gen_feeder g;
    start_feeder(&g, f.entry, "0", "1");
    cf_attester_config cfg = {.platform = CF_PLATFORM_SNP, .collateral_dir = dir};
    cf_buf ev, coll;
    cf_buf_init(&ev, 0);
    cf_buf_init(&coll, 0);
    assert_cf_ok(cf_tsm_collect_entry(&cfg, f.entry, RD, &ev, &coll));
    pthread_join(g.thread, NULL);
    assert_int_equal(coll.len, vcek.len);
    assert_memory_equal(coll.data, vcek.data, vcek.len);
    cf_buf_free(&ev);
    cf_buf_free(&coll);

    /* Neither auxblob nor collateral_dir: a clear error. */
    unlink(g.path);
    unlink(g.inblob);
    start_feeder(&g, f.entry, "1", "2");
    cfg.collateral_dir = NULL;
    cf_buf_init(&ev, 0);
    cf_buf_init(&coll, 0);
    assert_cf_error(cf_tsm_collect_entry(&cfg, f.entry, RD, &ev, &coll), CF_E_NOT_FOUND);
    pthread_join(g.thread, NULL);
    assert_int_equal(ev.len, 0);
    assert_int_equal(coll.len, 0);
    cf_buf_free(&ev);
    cf_buf_free(&coll);
    cf_buf_free(&vcek);
    cf_test_rmrf(dir);
    free(dir);
    fake_teardown(&f);
}

static void test_tdx_provider_and_collateral_dir(void **state)
{
    (void)state;
    fake_tsm f;
    fake_setup(&f, "tdx_guest", false);
    char *dir = cf_test_tmpdir();
    write_file(dir, "tdx.collateral", "{\"tcb_info\":1}", 14);
    gen_feeder g;
    start_feeder(&g, f.entry, "0", "1");
    cf_attester_config cfg = {.platform = CF_PLATFORM_TDX, .collateral_dir = dir};
    cf_buf ev, coll;
    cf_buf_init(&ev, 0);
    cf_buf_init(&coll, 0);
    assert_cf_ok(cf_tsm_collect_entry(&cfg, f.entry, RD, &ev, &coll));
    pthread_join(g.thread, NULL);
    assert_int_equal(ev.len, f.report.len); /* the outblob, whatever the TSM made */
    assert_int_equal(coll.len, 14);
    cf_buf_free(&ev);
    cf_buf_free(&coll);
    /* Asking for SNP from a TDX provider fails before anything is written. */
    cf_buf out, aux;
    cf_buf_init(&out, 0);
    cf_buf_init(&aux, 0);
    assert_cf_error(cf_tsm_entry_generate(f.entry, CF_PLATFORM_SNP, RD, &out, &aux), CF_E_UNSUPPORTED);
    assert_non_null(strstr(cf_error_last()->detail, "'tdx_guest'"));
    assert_int_equal(out.len, 0);
    assert_cf_error(cf_tsm_entry_generate(f.entry, CF_PLATFORM_SIM, RD, &out, &aux), CF_E_UNSUPPORTED);
    cf_buf_free(&out);
    cf_buf_free(&aux);
    cf_test_rmrf(dir);
    free(dir);
    fake_teardown(&f);
}

static void test_generation_race_detected(void **state)
{
    (void)state;
    static const char *const cases[][2] = {{"0", "2"}, {"5", "5"}, {"0", "x"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_tsm f;
        fake_setup(&f, "sev_guest", true);
        gen_feeder g;
        start_feeder(&g, f.entry, cases[i][0], cases[i][1]);
        cf_buf out, aux;
        cf_buf_init(&out, 0);
        cf_buf_init(&aux, 0);
        cf_result r = cf_tsm_entry_generate(f.entry, CF_PLATFORM_SNP, RD, &out, &aux);
        pthread_join(g.thread, NULL);
        assert_true(cf_is_error(r));
        assert_int_equal(cf_error_code_last(), i < 2 ? CF_E_IO : CF_E_MALFORMED);
        cf_buf_free(&out);
        cf_buf_free(&aux);
        fake_teardown(&f);
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
        cmocka_unit_test(test_generate_snp_entry),
        cmocka_unit_test(test_collect_snp_collateral_from_auxblob_verifies),
        cmocka_unit_test(test_collect_collateral_dir_fallback),
        cmocka_unit_test(test_tdx_provider_and_collateral_dir),
        cmocka_unit_test(test_generation_race_detected),
        cmocka_unit_test(test_missing_files_and_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
