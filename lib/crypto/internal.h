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

/* cf_x25519 for a caller that already holds the matching public key pk
 * (HPKE key pairs): saves OpenSSL recomputing it. pk must belong to sk; it
 * does not influence the shared secret, which depends on sk alone. */
CF_RESULT cf_x25519_with_public(const uint8_t sk[CF_X25519_LEN], const uint8_t pk[CF_X25519_LEN],
                                const uint8_t peer[CF_X25519_LEN], uint8_t shared[CF_X25519_LEN]);

#endif /* CONFIDE_CRYPTO_INTERNAL_H */
