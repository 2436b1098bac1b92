/* common.c — OpenSSL error reporting and the OS CSPRNG (see crypto.h). */
#include <limits.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "confide/crypto.h"
#include "crypto/internal.h"

void cf_crypto_fail(cf_error_code code, const char *what, const char *file, int line)
{
    /* OpenSSL's reason strings are public (they never contain key bytes). */
    unsigned long err = ERR_peek_last_error();
    if (err != 0) {
        char reason[160];
        ERR_error_string_n(err, reason, sizeof reason);
        cf_error_setf(code, file, line, "%s: %s", what, reason);
    } else {
        cf_error_setf(code, file, line, "%s", what);
    }
    ERR_clear_error();
}

CF_RESULT cf_random(void *out, size_t len)
{
    CF_ENSURE(out != NULL || len == 0, CF_E_INVALID_ARGUMENT);
    uint8_t *p = out;
    while (len > 0) {
        int chunk = len > (size_t)INT_MAX ? INT_MAX : (int)len;
        if (RAND_priv_bytes(p, chunk) != 1) {
            CF_CRYPTO_FAIL(CF_E_CRYPTO, "RAND_priv_bytes failed");
            return CF_ERROR;
        }
        p += chunk;
        len -= (size_t)chunk;
    }
    return CF_OK;
}
