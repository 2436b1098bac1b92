/*
 * tsm.c — evidence collection through Linux configfs-tsm (SNP and TDX).
 *
 * Interface (Documentation/ABI/testing/configfs-tsm, Linux >= 6.7):
 *   mkdir /sys/kernel/config/tsm/report/<name>   a private report entry
 *   <name>/provider    (RO) "sev_guest" or "tdx_guest": which TSM answers
 *   <name>/generation  (RO) count of writes to inblob and the options
 *   <name>/inblob      (WO) up to 64 bytes: the report_data to bind
 *   <name>/outblob     (RO) the report (SNP) / quote (TDX), made on read
 *   <name>/auxblob     (RO) SNP: the certificate table (VCEK/VLEK, ASK, ARK)
 *   rmdir <name>
 * The ABI says a reader must check `generation` to detect another writer
 * racing on the same entry; we create a private entry per request and still
 * check that exactly our one write happened between the two reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/log.h"
#include "confide/snp.h"
#include "confide/tsm.h"

#define ATTR_MAX 64 /* provider and generation are short text attributes */

static CF_RESULT join_path(char *out, size_t outsize, const char *dir, const char *name)
{
    int n = snprintf(out, outsize, "%s/%s", dir, name);
    CF_ENSURE_MSG(n > 0 && (size_t)n < outsize, CF_E_INVALID_ARGUMENT, "configfs-tsm: path too long");
    return CF_OK;
}

/* Read a whole binary attribute (outblob, auxblob) up to `max` bytes. */
static CF_RESULT read_blob(const char *entry, const char *name, size_t max, bool optional, cf_buf *out)
{
    char path[4096];
    CF_GUARD(join_path(path, sizeof path, entry, name));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (optional && errno == ENOENT) {
            return CF_OK;
        }
        CF_BAIL_FMT(CF_E_IO, "configfs-tsm: cannot open %s: %s", name, strerror(errno));
    }
    uint8_t chunk[4096];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;
            close(fd);
            CF_BAIL_FMT(CF_E_IO, "configfs-tsm: reading %s: %s", name, strerror(e));
        }
        if (n == 0) {
            break;
        }
        total += (size_t)n;
        if (total > max || cf_is_error(cf_buf_append(out, chunk, (size_t)n))) {
            close(fd);
            CF_BAIL_FMT(CF_E_TOO_LARGE, "configfs-tsm: %s larger than %zu bytes", name, max);
        }
    }
    close(fd);
    return CF_OK;
}

/* Text attributes are produced whole by one show() call: one read. */
static CF_RESULT read_attr(const char *entry, const char *name, char *out, size_t outsize)
{
    char path[4096];
    CF_GUARD(join_path(path, sizeof path, entry, name));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        CF_BAIL_FMT(CF_E_IO, "configfs-tsm: cannot open %s: %s", name, strerror(errno));
    }
    ssize_t n;
    do {
        n = read(fd, out, outsize - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) {
        CF_BAIL_FMT(CF_E_IO, "configfs-tsm: %s is empty or unreadable", name);
    }
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) {
        out[--n] = '\0';
    }
    if (strlen(out) != (size_t)n) {
        CF_BAIL_FMT(CF_E_MALFORMED, "configfs-tsm: NUL in %s", name);
    }
    return CF_OK;
}

static CF_RESULT read_generation(const char *entry, uint64_t *out)
{
    char text[ATTR_MAX];
    CF_GUARD(read_attr(entry, "generation", text, sizeof text));
    CF_ENSURE_MSG(text[0] >= '0' && text[0] <= '9', CF_E_MALFORMED, "configfs-tsm: generation is not a number");
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    CF_ENSURE_MSG(errno == 0 && end != NULL && *end == '\0', CF_E_MALFORMED,
                  "configfs-tsm: generation is not a number");
    *out = (uint64_t)v;
    return CF_OK;
}

static CF_RESULT write_inblob(const char *entry, const uint8_t report_data[CF_REPORT_DATA_LEN])
{
    char path[4096];
    CF_GUARD(join_path(path, sizeof path, entry, "inblob"));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CF_ENSURE_MSG(fd >= 0, CF_E_IO, "configfs-tsm: cannot open inblob for writing");
    /* One write: configfs binary attributes take the value on release, and a
     * short write would bind a different report_data. */
    ssize_t n;
    do {
        n = write(fd, report_data, CF_REPORT_DATA_LEN);
    } while (n < 0 && errno == EINTR);
    int close_rc = close(fd);
    CF_ENSURE_MSG(n == CF_REPORT_DATA_LEN && close_rc == 0, CF_E_IO, "configfs-tsm: writing inblob failed");
    return CF_OK;
}

CF_RESULT cf_tsm_entry_create(const char *root, char *entry, size_t entry_size)
{
    CF_ENSURE_REF(entry);
    if (root == NULL) {
        root = CF_TSM_DEFAULT_PATH;
    }
    struct stat st;
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        CF_BAIL_FMT(CF_E_NOT_FOUND,
                    "configfs-tsm: %.200s is not available (needs Linux >= 6.7 in an SEV-SNP or TDX guest, "
                    "configfs mounted)",
                    root);
    }
    for (int attempt = 0; attempt < 4; attempt++) {
        uint8_t rnd[8];
        char hex[17];
        CF_GUARD(cf_random(rnd, sizeof rnd));
        CF_GUARD(cf_hex_encode_str(cf_slice_make(rnd, sizeof rnd), hex, sizeof hex));
        char name[64];
        snprintf(name, sizeof name, "confide-%ld-%s", (long)getpid(), hex);
        CF_GUARD(join_path(entry, entry_size, root, name));
        if (mkdir(entry, 0700) == 0) {
            return CF_OK;
        }
        if (errno != EEXIST) {
            CF_BAIL_FMT(CF_E_IO, "configfs-tsm: mkdir under %.200s failed: %s", root, strerror(errno));
        }
    }
    CF_BAIL_MSG(CF_E_IO, "configfs-tsm: could not create a unique report entry");
}

CF_RESULT cf_tsm_entry_remove(const char *entry)
{
    CF_ENSURE_REF(entry);
    if (rmdir(entry) != 0) {
        CF_BAIL_FMT(CF_E_IO, "configfs-tsm: rmdir of the report entry failed: %s", strerror(errno));
    }
    return CF_OK;
}

static const char *provider_for(cf_platform platform)
{
    switch (platform) {
    case CF_PLATFORM_SNP: return "sev_guest";
    case CF_PLATFORM_TDX: return "tdx_guest";
    default: return NULL;
    }
}

CF_RESULT cf_tsm_entry_generate(const char *entry, cf_platform platform,
                                const uint8_t report_data[CF_REPORT_DATA_LEN], cf_buf *outblob, cf_buf *auxblob)
{
    CF_ENSURE_REF(entry);
    CF_ENSURE_REF(report_data);
    const char *want = provider_for(platform);
    CF_ENSURE_MSG(want != NULL, CF_E_UNSUPPORTED, "configfs-tsm: only snp and tdx collect through configfs-tsm");
    char provider[ATTR_MAX];
    CF_GUARD(read_attr(entry, "provider", provider, sizeof provider));
    if (strcmp(provider, want) != 0) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED, "configfs-tsm: provider is '%.32s', platform %s needs '%s'", provider,
                    cf_platform_name(platform), want);
    }
    uint64_t before = 0, after = 0;
    CF_GUARD(read_generation(entry, &before));
    CF_GUARD(write_inblob(entry, report_data));
    CF_GUARD(read_blob(entry, "outblob", CF_TSM_OUTBLOB_MAX, false, outblob));
    CF_ENSURE_MSG(outblob->len > 0, CF_E_IO, "configfs-tsm: empty outblob");
    CF_GUARD(read_blob(entry, "auxblob", CF_TSM_AUXBLOB_MAX, true, auxblob));
    CF_GUARD(read_generation(entry, &after));
    if (after != before + 1) {
        CF_BAIL_FMT(CF_E_IO,
                    "configfs-tsm: generation went from %" PRIu64 " to %" PRIu64
                    " around our single write: another writer raced on the entry, retry",
                    before, after);
    }
    return CF_OK;
}

static CF_RESULT collateral_from_dir(const char *dir, cf_platform platform, cf_buf *collateral)
{
    char name[32], path[4096];
    snprintf(name, sizeof name, "%s.collateral", cf_platform_name(platform));
    CF_GUARD(join_path(path, sizeof path, dir, name));
    cf_buf tmp;
    cf_buf_init(&tmp, CF_SNP_COLLATERAL_MAX);
    cf_result r = read_blob(dir, name, CF_SNP_COLLATERAL_MAX, false, &tmp);
    if (cf_is_ok(r)) {
        r = cf_buf_append_slice(collateral, cf_buf_slice(&tmp));
    }
    cf_buf_free(&tmp);
    return r;
}

CF_RESULT cf_tsm_collect_entry(const cf_attester_config *cfg, const char *entry,
                               const uint8_t report_data[CF_REPORT_DATA_LEN], cf_buf *evidence, cf_buf *collateral)
{
    cf_result result = CF_OK;
    cf_buf out, aux;
    cf_buf_init(&out, CF_TSM_OUTBLOB_MAX);
    cf_buf_init(&aux, CF_TSM_AUXBLOB_MAX);
    CF_GUARD_OUT(cf_tsm_entry_generate(entry, cfg->platform, report_data, &out, &aux));
    if (cfg->platform == CF_PLATFORM_SNP && aux.len > 0) {
        /* The hypervisor's certificate table: take the VEK the report names. */
        cf_snp_report report;
        CF_GUARD_OUT(cf_snp_report_parse(cf_buf_slice(&out), &report));
        CF_GUARD_OUT(cf_snp_cert_table_to_collateral(cf_buf_slice(&aux), (cf_snp_signing_key)report.signing_key,
                                                     collateral));
    } else if (cfg->collateral_dir != NULL) {
        CF_GUARD_OUT(collateral_from_dir(cfg->collateral_dir, cfg->platform, collateral));
    } else if (cfg->platform == CF_PLATFORM_SNP) {
        CF_BAIL_OUT(CF_E_NOT_FOUND, "configfs-tsm: the host supplied no certificates (empty auxblob) and no "
                                    "collateral_dir is configured (fetch the VCEK from AMD KDS into "
                                    "<collateral_dir>/snp.collateral)");
    }
    /* TDX without collateral_dir: the quote carries the PCK chain itself
     * (certification data type 5); TCB info is the verifier's business. */
    CF_GUARD_OUT(cf_buf_append_slice(evidence, cf_buf_slice(&out)));
out:
    cf_buf_free(&out);
    cf_buf_free(&aux);
    return result;
}

CF_RESULT cf_tsm_collect(const cf_attester_config *cfg, const uint8_t report_data[CF_REPORT_DATA_LEN],
                         cf_buf *evidence, cf_buf *collateral)
{
    CF_ENSURE_REF(cfg);
    CF_ENSURE_REF(evidence);
    CF_ENSURE_REF(collateral);
    CF_ENSURE_MSG(provider_for(cfg->platform) != NULL, CF_E_UNSUPPORTED,
                  "configfs-tsm: only snp and tdx collect through configfs-tsm");
    char entry[4096];
    CF_GUARD(cf_tsm_entry_create(cfg->tsm_path, entry, sizeof entry));
    cf_result r = cf_tsm_collect_entry(cfg, entry, report_data, evidence, collateral);
    if (cf_is_error(r)) {
        /* Keep the collection error; a leftover entry is only logged. */
        if (rmdir(entry) != 0) {
            CF_LOG_WARN("tsm_entry_leftover", cf_kv_str("path", entry), cf_kv_last_error());
        }
        return CF_ERROR;
    }
    CF_GUARD(cf_tsm_entry_remove(entry));
    return CF_OK;
}
