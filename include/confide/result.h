/*
 * result.h — the must-use result type and the GUARD/ENSURE macros.
 *
 * Every fallible function in libconfide returns CF_RESULT. The compiler
 * refuses to let a caller drop it (warn_unused_result + -Werror). On failure
 * the function records *what* went wrong (a stable error code), *why* (a
 * short static or public-only detail) and *where* (file:line) in a
 * thread-local slot, then returns CF_ERROR. Callers propagate with CF_GUARD,
 * or add context with CF_GUARD_MSG.
 *
 * Two shapes of function body are used (see docs/architecture.md §Conventions):
 *
 *   1. No resources to release: return early.
 *        CF_ENSURE(len == 32, CF_E_MALFORMED);
 *        CF_GUARD(cf_reader_u16be(&r, &n));
 *        return CF_OK;
 *
 *   2. Secrets or allocations to release: one exit label `out` that wipes
 *      and frees everything on every path (WireGuard style).
 *        cf_result result = CF_OK;
 *        uint8_t key[32];
 *        CF_GUARD_OUT(derive(key));
 *        CF_ENSURE_OUT(ok, CF_E_AUTH_FAILED);
 *      out:
 *        cf_wipe(key, sizeof key);
 *        return result;
 *
 * Error details must never contain secrets, plaintext or tokens: only static
 * strings and public values (lengths, field names, public identifiers).
 */
#ifndef CONFIDE_RESULT_H
#define CONFIDE_RESULT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Stable error codes. The string is the machine-readable name that appears in
 * logs, CLI output and (for the protocol codes) on the wire, so never rename
 * one. Add new codes at the end of the section of your module.
 */
#define CF_ERROR_CODES(X)                                                      \
    /* generic */                                                              \
    X(CF_E_OK, "ok")                                                           \
    X(CF_E_INTERNAL, "internal_error")                                         \
    X(CF_E_INVALID_ARGUMENT, "invalid_argument")                               \
    X(CF_E_NO_MEMORY, "no_memory")                                             \
    X(CF_E_MALFORMED, "malformed")                                             \
    X(CF_E_TOO_LARGE, "too_large")                                             \
    X(CF_E_TOO_DEEP, "too_deep")                                               \
    X(CF_E_UNSUPPORTED, "unsupported")                                         \
    X(CF_E_IO, "io_error")                                                     \
    X(CF_E_NOT_FOUND, "not_found")                                             \
    X(CF_E_LIMIT, "limit_exceeded")                                            \
    X(CF_E_TIMEOUT, "timeout")                                                 \
    X(CF_E_CONFIG, "bad_config")                                               \
    /* crypto */                                                               \
    X(CF_E_CRYPTO, "crypto_error")                                             \
    X(CF_E_AUTH_FAILED, "auth_failed")                                         \
    X(CF_E_BAD_SIGNATURE, "bad_signature")                                     \
    X(CF_E_BAD_KEY, "bad_key")                                                 \
    /* wire protocol (docs/protocol.md §Errors) */                             \
    X(CF_E_DUPLICATE_KEY, "duplicate_key")                                     \
    X(CF_E_BAD_CIPHERTEXT, "bad_ciphertext")                                   \
    X(CF_E_UNKNOWN_KEY, "unknown_key")                                         \
    X(CF_E_TRUNCATED, "truncated")                                             \
    X(CF_E_PLAINTEXT_FIELD, "plaintext_field")                                 \
    X(CF_E_STALE, "stale_request")                                             \
    X(CF_E_REPLAY, "replay")                                                   \
    X(CF_E_UNKNOWN_ENDPOINT, "unknown_endpoint")                               \
    X(CF_E_UNSUPPORTED_VERSION, "unsupported_version")                         \
    X(CF_E_REPLAY_FULL, "replay_memory_full")                                  \
    /* attestation */                                                          \
    X(CF_E_CERT, "certificate_invalid")                                        \
    X(CF_E_EXPIRED, "expired")                                                 \
    X(CF_E_REVOKED, "revoked")                                                 \
    X(CF_E_POLICY, "policy_violation")                                         \
    X(CF_E_REPORT_DATA, "report_data_mismatch")                                \
    X(CF_E_TCB, "tcb_mismatch")                                                \
    /* services */                                                             \
    X(CF_E_UNAUTHORIZED, "unauthorized")                                       \
    X(CF_E_UPSTREAM, "upstream_error")

typedef enum cf_error_code {
#define CF_X_ENUM(name, str) name,
    CF_ERROR_CODES(CF_X_ENUM)
#undef CF_X_ENUM
    CF_E_COUNT_
} cf_error_code;

/* A result: zero is success. A struct, so it cannot be mixed up with ints. */
typedef struct cf_result {
    int error_signal;
} cf_result;

#define CF_MUST_USE __attribute__((warn_unused_result))
/* Declare fallible functions as `CF_RESULT cf_thing(...)`. */
#define CF_RESULT CF_MUST_USE cf_result

#define CF_OK ((cf_result){0})
#define CF_ERROR ((cf_result){-1})

static inline bool cf_is_ok(cf_result r) { return r.error_signal == 0; }
static inline bool cf_is_error(cf_result r) { return r.error_signal != 0; }

/* The thread's last error. `detail` is never NULL (may be ""). */
typedef struct cf_error_info {
    cf_error_code code;
    const char *detail;
    const char *file;
    int line;
} cf_error_info;

/* Record an error. `detail` must be a string literal or other static text. */
void cf_error_set(cf_error_code code, const char *detail, const char *file, int line);
/* Record an error with a formatted detail (public values only; truncated at
 * 255 bytes). */
void cf_error_setf(cf_error_code code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefix the current detail with more context ("manifest.workers[1]: ..."). */
void cf_error_add_context(const char *context);
const cf_error_info *cf_error_last(void);
cf_error_code cf_error_code_last(void);
void cf_error_clear(void);
/* Stable machine name of a code ("unknown_key"); "internal_error" for junk. */
const char *cf_error_name(cf_error_code code);
/* Parse a machine name back (for protocol error bodies); CF_E_INTERNAL if
 * unknown. */
cf_error_code cf_error_from_name(const char *name, size_t len);
/* "code: detail (file:line)" into buf; returns buf. For debug logs and
 * test failures: the source location means nothing to a user. */
const char *cf_error_describe(char *buf, size_t buflen);
/* "code: detail" (or just "code") into buf; returns buf. What programs
 * print for users, as "<program>: <code>: <detail>". */
const char *cf_error_describe_user(char *buf, size_t buflen);

/* ---- Macros ---------------------------------------------------------- */

#define CF_BAIL(code)                                                          \
    do {                                                                       \
        cf_error_set((code), "", __FILE__, __LINE__);                          \
        return CF_ERROR;                                                       \
    } while (0)

#define CF_BAIL_MSG(code, msg)                                                 \
    do {                                                                       \
        cf_error_set((code), (msg), __FILE__, __LINE__);                       \
        return CF_ERROR;                                                       \
    } while (0)

#define CF_BAIL_FMT(code, ...)                                                 \
    do {                                                                       \
        cf_error_setf((code), __FILE__, __LINE__, __VA_ARGS__);                \
        return CF_ERROR;                                                       \
    } while (0)

#define CF_ENSURE(cond, code)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            cf_error_set((code), #cond, __FILE__, __LINE__);                   \
            return CF_ERROR;                                                   \
        }                                                                      \
    } while (0)

#define CF_ENSURE_MSG(cond, code, msg)                                         \
    do {                                                                       \
        if (!(cond)) {                                                         \
            cf_error_set((code), (msg), __FILE__, __LINE__);                   \
            return CF_ERROR;                                                   \
        }                                                                      \
    } while (0)

/* Non-NULL check for arguments. */
#define CF_ENSURE_REF(p) CF_ENSURE((p) != NULL, CF_E_INVALID_ARGUMENT)

/* Propagate a failure unchanged (the callee recorded it). */
#define CF_GUARD(expr)                                                         \
    do {                                                                       \
        if (cf_is_error(expr)) {                                               \
            return CF_ERROR;                                                   \
        }                                                                      \
    } while (0)

/* Propagate, prefixing the detail with context. */
#define CF_GUARD_MSG(expr, context)                                            \
    do {                                                                       \
        if (cf_is_error(expr)) {                                               \
            cf_error_add_context(context);                                     \
            return CF_ERROR;                                                   \
        }                                                                      \
    } while (0)

/* Variants for functions with a single `out:` exit label and a local
 * `cf_result result`. */
#define CF_GUARD_OUT(expr)                                                     \
    do {                                                                       \
        if (cf_is_error(expr)) {                                               \
            result = CF_ERROR;                                                 \
            goto out;                                                          \
        }                                                                      \
    } while (0)

#define CF_ENSURE_OUT(cond, code)                                              \
    do {                                                                       \
        if (!(cond)) {                                                         \
            cf_error_set((code), #cond, __FILE__, __LINE__);                   \
            result = CF_ERROR;                                                 \
            goto out;                                                          \
        }                                                                      \
    } while (0)

#define CF_ENSURE_MSG_OUT(cond, code, msg)                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            cf_error_set((code), (msg), __FILE__, __LINE__);                   \
            result = CF_ERROR;                                                 \
            goto out;                                                          \
        }                                                                      \
    } while (0)

#define CF_BAIL_OUT(code, msg)                                                 \
    do {                                                                       \
        cf_error_set((code), (msg), __FILE__, __LINE__);                       \
        result = CF_ERROR;                                                     \
        goto out;                                                              \
    } while (0)

#endif /* CONFIDE_RESULT_H */
