/* test_helper.c — see test_helper.h. */
#include "test_helper.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confide/encoding.h"

void cf_test_assert_ok(cf_result r, const char *expr, const char *file, int line)
{
    if (cf_is_error(r)) {
        char desc[512];
        print_error("%s failed: %s\n", expr, cf_error_describe(desc, sizeof desc));
        _fail(file, line);
    }
}

void cf_test_assert_error(cf_result r, cf_error_code code, const char *expr, const char *file, int line)
{
    if (cf_is_ok(r)) {
        print_error("%s succeeded, expected %s\n", expr, cf_error_name(code));
        _fail(file, line);
    }
    if (cf_error_code_last() != code) {
        char desc[512];
        print_error("%s failed with %s, expected %s\n", expr, cf_error_describe(desc, sizeof desc),
                    cf_error_name(code));
        _fail(file, line);
    }
}

static const char *vectors_root(void)
{
    const char *root = getenv("CONFIDE_VECTORS");
    return root && root[0] ? root : "../shared/vectors";
}

const char *cf_test_vector_path(const char *relpath)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", vectors_root(), relpath);
    if (access(path, R_OK) != 0) {
        const char *allow = getenv("CONFIDE_ALLOW_MISSING_VECTORS");
        print_error("\n*** VECTOR MISSING: %s (set CONFIDE_VECTORS to the shared/vectors folder) ***\n\n", path);
        if (allow && strcmp(allow, "1") == 0) {
            skip();
        }
        fail_msg("vector file %s not found", path);
    }
    return path;
}

void cf_test_read_file(const char *path, bool vector, cf_buf *out)
{
    const char *full = vector ? cf_test_vector_path(path) : path;
    FILE *f = fopen(full, "rb");
    if (f == NULL) {
        fail_msg("cannot open %s: %s", full, strerror(errno));
    }
    cf_buf_init(out, 0);
    uint8_t chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        assert_cf_ok(cf_buf_append(out, chunk, n));
    }
    fclose(f);
}

json_t *cf_test_load_json_vector(const char *relpath)
{
    const char *full = cf_test_vector_path(relpath);
    size_t n = strlen(full);
    json_error_t err;
    json_t *j = NULL;
    if (n > 3 && strcmp(full + n - 3, ".gz") == 0) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "gzip -dc '%s'", full);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        j = json_loadf(p, 0, &err);
        pclose(p);
    } else {
        j = json_load_file(full, 0, &err);
    }
    if (j == NULL) {
        fail_msg("cannot parse %s: %s (line %d)", full, err.text, err.line);
    }
    return j;
}

void cf_test_hex(const char *hex, cf_buf *out)
{
    cf_buf_init(out, 0);
    assert_cf_ok(cf_hex_decode(cf_slice_cstr(hex), out));
}

bool cf_test_under_valgrind(void)
{
    const char *v = getenv("CONFIDE_VALGRIND");
    return v && strcmp(v, "1") == 0;
}

char *cf_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/confide-test-XXXXXX", base && base[0] ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

void cf_test_rmrf(const char *path)
{
    if (path == NULL || path[0] == '\0' || strcmp(path, "/") == 0) {
        return;
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    int rc = system(cmd);
    (void)rc;
}
