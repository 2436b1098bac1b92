/* fuzz_manifest.c — the manifest parser must refuse any bad document with an
 * error (never crash, leak or accept half), and whatever it accepts must
 * describe itself and hash to the SHA-256 of the input. */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confide/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_manifest *m = NULL;
    if (cf_is_error(cf_manifest_parse(cf_slice_make(data, size), &m))) {
        if (m != NULL) {
            abort();
        }
        return 0;
    }
    uint8_t want[32];
    unsigned int len = 0;
    if (EVP_Digest(data, size, want, &len, EVP_sha256(), NULL) != 1 || memcmp(want, m->sha256, 32) != 0 ||
        m->worker_count == 0 || m->ttl_min_s > m->ttl_max_s) {
        abort();
    }
    cf_buf out;
    cf_buf_init(&out, 0);
    if (cf_is_error(cf_manifest_describe(m, &out))) {
        abort();
    }
    cf_buf_free(&out);
    cf_manifest_free(m);
    return 0;
}
