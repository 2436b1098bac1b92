/*
 * test_helper.h — shared helpers for the cmocka unit and integration tests.
 *
 * Vectors: real hardware evidence and crypto vectors live in ../shared/vectors
 * (never copied into the project). cf_test_vector_path() finds them through
 * $CONFIDE_VECTORS (the Makefile exports it). If they are missing the test
 * FAILS loudly, unless CONFIDE_ALLOW_MISSING_VECTORS=1, in which case it is
 * skipped with a loud message.
 */
#ifndef CONFIDE_TEST_HELPER_H
#define CONFIDE_TEST_HELPER_H

// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
// clang-format on

#include <jansson.h>

#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

/* Assert a cf_result is OK; on failure print the recorded error. */
#define assert_cf_ok(expr) cf_test_assert_ok((expr), #expr, __FILE__, __LINE__)
/* Assert a cf_result failed with the given code. */
#define assert_cf_error(expr, code) cf_test_assert_error((expr), (code), #expr, __FILE__, __LINE__)

void cf_test_assert_ok(cf_result r, const char *expr, const char *file, int line);
void cf_test_assert_error(cf_result r, cf_error_code code, const char *expr, const char *file, int line);

/* Full path of a vector file (relative to the vectors root), in a static
 * buffer. Fails (or skips, see above) the current test if it is absent. */
const char *cf_test_vector_path(const char *relpath);
/* Read a whole file (vector-relative when `vector` is true). Caller frees
 * with cf_buf_free. Fails the test on error. */
void cf_test_read_file(const char *path, bool vector, cf_buf *out);
/* Load a JSON vector file (gzip-compressed if the name ends in .gz). */
json_t *cf_test_load_json_vector(const char *relpath);
/* Decode hex into a buffer; fails the test on bad hex. */
void cf_test_hex(const char *hex, cf_buf *out);
/* True when running under valgrind (CONFIDE_VALGRIND=1): trim long loops. */
bool cf_test_under_valgrind(void);
/* A fresh temporary directory (mkdtemp under $TMPDIR); caller removes it
 * with cf_test_rmrf. */
char *cf_test_tmpdir(void);
void cf_test_rmrf(const char *path);

#endif /* CONFIDE_TEST_HELPER_H */
