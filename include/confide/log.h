/*
 * log.h — structured key=value logging that has no way to print a secret.
 *
 * A log line is an event name plus typed fields:
 *
 *   CF_LOG_INFO("key_uploaded", cf_kv_str("key_id", id), cf_kv_int("ttl_s", ttl));
 *   -> ts=2026-11-25T22:50:01.123Z level=info prog=confide-as event=key_uploaded key_id=Ab3.. ttl_s=3600
 *
 * There is no printf-style entry point: fields are ints, public strings
 * (escaped and cut at 200 bytes) and ids. Types that hold secrets (keys,
 * plaintext buffers, tokens) have no cf_kv constructor, so they cannot be
 * logged by accident; reviewers check the cf_kv_str arguments are public.
 *
 * Output goes to stderr (or a file set with cf_log_set_file) one line per
 * event, written with a single write(2) so lines from concurrent processes
 * do not interleave.
 */
#ifndef CONFIDE_LOG_H
#define CONFIDE_LOG_H

#include <stdint.h>
#include <stdio.h>

typedef enum cf_log_level {
    CF_LOG_DEBUG = 0,
    CF_LOG_INFO = 1,
    CF_LOG_WARN = 2,
    CF_LOG_ERROR = 3,
} cf_log_level;

typedef enum cf_kv_type { CF_KV_END_ = 0, CF_KV_STR, CF_KV_INT, CF_KV_UINT, CF_KV_HEX64, CF_KV_DOUBLE } cf_kv_type;

typedef struct cf_kv {
    cf_kv_type type;
    const char *key;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double d;
    } v;
} cf_kv;

static inline cf_kv cf_kv_str(const char *key, const char *value)
{
    return (cf_kv){.type = CF_KV_STR, .key = key, .v.s = value};
}
static inline cf_kv cf_kv_int(const char *key, int64_t value)
{
    return (cf_kv){.type = CF_KV_INT, .key = key, .v.i = value};
}
static inline cf_kv cf_kv_uint(const char *key, uint64_t value)
{
    return (cf_kv){.type = CF_KV_UINT, .key = key, .v.u = value};
}
/* Connection / request ids, printed as 16 hex digits. */
static inline cf_kv cf_kv_id(const char *key, uint64_t value)
{
    return (cf_kv){.type = CF_KV_HEX64, .key = key, .v.u = value};
}
static inline cf_kv cf_kv_double(const char *key, double value)
{
    return (cf_kv){.type = CF_KV_DOUBLE, .key = key, .v.d = value};
}
/* The last error (code and detail) as two fields: err=... detail="..." */
#define cf_kv_last_error() cf_kv_str("err", cf_error_name(cf_error_code_last())), \
                           cf_kv_str("detail", cf_error_last()->detail)

#define CF_KV_END_MARK ((cf_kv){.type = CF_KV_END_})

void cf_log_init(const char *program_name, cf_log_level min_level);
void cf_log_set_level(cf_log_level min_level);
/* Parse "debug|info|warn|error"; returns -1 if unknown. */
int cf_log_level_parse(const char *s);
/* Log to this file instead of stderr (not closed by the logger). */
void cf_log_set_file(FILE *f);
/* `fields` ends with CF_KV_END_MARK. */
void cf_log_emit(cf_log_level level, const char *event, const cf_kv *fields);

#define CF_LOG_(level, event, ...) \
    cf_log_emit((level), (event), (const cf_kv[]){__VA_ARGS__ __VA_OPT__(, ) CF_KV_END_MARK})
#define CF_LOG_DEBUG(event, ...) CF_LOG_(CF_LOG_DEBUG, event __VA_OPT__(, ) __VA_ARGS__)
#define CF_LOG_INFO(event, ...) CF_LOG_(CF_LOG_INFO, event __VA_OPT__(, ) __VA_ARGS__)
#define CF_LOG_WARN(event, ...) CF_LOG_(CF_LOG_WARN, event __VA_OPT__(, ) __VA_ARGS__)
#define CF_LOG_ERROR(event, ...) CF_LOG_(CF_LOG_ERROR, event __VA_OPT__(, ) __VA_ARGS__)

#endif /* CONFIDE_LOG_H */
