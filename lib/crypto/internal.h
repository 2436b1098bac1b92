/* internal.h — helpers shared by the lib/crypto sources; not public API. */
#ifndef CONFIDE_CRYPTO_INTERNAL_H
#define CONFIDE_CRYPTO_INTERNAL_H

#include <openssl/evp.h>

#include "confide/crypto.h"

/* The EVP digest for a hash id, or NULL for an unknown id. */
const EVP_MD *cf_crypto_md(cf_hash_alg alg);

/* Record CF_E_CRYPTO (or `code`) with OpenSSL's reason for the most recent
 * error in the detail, and clear OpenSSL's error queue. */
void cf_crypto_fail(cf_error_code code, const char *what, const char *file, int line);
#define CF_CRYPTO_FAIL(code, what) cf_crypto_fail((code), (what), __FILE__, __LINE__)

#endif /* CONFIDE_CRYPTO_INTERNAL_H */
