/* log.c — structured key=value logging (see log.h). */
#include "confide/log.h"
#include <stdarg.h>
#include <stdbool.h>

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "confide/result.h"

#define LOG_LINE_MAX 2048
#define LOG_VALUE_MAX 200

static const char *log_program = "confide";
static cf_log_level log_min_level = CF_LOG_INFO;
static FILE *log_file = NULL;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cf_log_init(const char *program_name, cf_log_level min_level)
{
    log_program = program_name ? program_name : "confide";
    log_min_level = min_level;
}

void cf_log_set_level(cf_log_level min_level) { log_min_level = min_level; }

void cf_log_set_file(FILE *f) { log_file = f; }

int cf_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++) {
        if (s != NULL && strcmp(s, level_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

typedef struct line {
    char text[LOG_LINE_MAX];
    size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
    size_t room = sizeof l->text - 1 - l->len; /* keep one byte for '\n' */
    if (n > room) {
        n = room;
    }
    memcpy(l->text + l->len, s, n);
    l->len += n;
}

static void putf(line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line *l, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) {
        put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
    }
}

/* Keys are identifiers chosen by the code; anything else is replaced. */
static void put_key(line *l, const char *key)
{
    for (const char *p = key; *p && p - key < 48; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.';
        put(l, ok ? &c : "_", 1);
    }
}

/* Values are quoted when they need to be, control bytes escaped, and cut at
 * LOG_VALUE_MAX so a peer-supplied string can neither forge lines nor flood. */
static void put_value(line *l, const char *v)
{
    if (v == NULL) {
        put(l, "null", 4);
        return;
    }
    size_t n = strnlen(v, LOG_VALUE_MAX + 1);
    bool cut = n > LOG_VALUE_MAX;
    if (cut) {
        n = LOG_VALUE_MAX;
    }
    bool quote = n == 0;
    for (size_t i = 0; i < n && !quote; i++) {
        unsigned char c = (unsigned char)v[i];
        quote = c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f;
    }
    if (!quote) {
        put(l, v, n);
    } else {
        put(l, "\"", 1);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)v[i];
            if (c == '"' || c == '\\') {
                char esc[2] = {'\\', (char)c};
                put(l, esc, 2);
            } else if (c < ' ' || c == 0x7f) {
                putf(l, "\\x%02x", c);
            } else {
                put(l, (const char *)&v[i], 1);
            }
        }
        put(l, "\"", 1);
    }
    if (cut) {
        put(l, "...", 3);
    }
}

void cf_log_emit(cf_log_level level, const char *event, const cf_kv *fields)
{
    if (level < log_min_level) {
        return;
    }
    line l = {.len = 0};
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    putf(&l, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
         tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    put(&l, " level=", 7);
    put_value(&l, level_names[level >= 0 && level <= 3 ? level : 3]);
    put(&l, " prog=", 6);
    put_value(&l, log_program);
    put(&l, " event=", 7);
    put_value(&l, event);
    for (const cf_kv *f = fields; f && f->type != CF_KV_END_; f++) {
        put(&l, " ", 1);
        /* An empty key would print " =value", which reads as part of the
         * previous field. */
        put_key(&l, f->key != NULL && f->key[0] != '\0' ? f->key : "field");
        put(&l, "=", 1);
        switch (f->type) {
        case CF_KV_STR: put_value(&l, f->v.s); break;
        case CF_KV_INT: putf(&l, "%lld", (long long)f->v.i); break;
        case CF_KV_UINT: putf(&l, "%llu", (unsigned long long)f->v.u); break;
        case CF_KV_HEX64: putf(&l, "%016llx", (unsigned long long)f->v.u); break;
        case CF_KV_DOUBLE: putf(&l, "%.6g", f->v.d); break;
        default: put(&l, "?", 1); break;
        }
    }
    l.text[l.len++] = '\n';
    int fd = fileno(log_file ? log_file : stderr);
    /* One write per line; a short write to a log is not worth retrying. */
    ssize_t ignored = write(fd, l.text, l.len);
    (void)ignored;
}
