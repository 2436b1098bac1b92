/* result.c — the thread-local last-error slot behind CF_RESULT (see result.h). */
#include "confide/result.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const error_names[CF_E_COUNT_] = {
#define CF_X_NAME(name, str) [name] = str,
    CF_ERROR_CODES(CF_X_NAME)
#undef CF_X_NAME
};

/* Formatted details live here; static details are pointed to directly. */
static _Thread_local char detail_buf[256];
static _Thread_local char context_buf[256];
static _Thread_local cf_error_info last_error = {CF_E_OK, "", "", 0};

void cf_error_set(cf_error_code code, const char *detail, const char *file, int line)
{
    last_error.code = code;
    last_error.detail = detail ? detail : "";
    last_error.file = file ? file : "";
    last_error.line = line;
}

void cf_error_setf(cf_error_code code, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail_buf, sizeof detail_buf, fmt, ap);
    va_end(ap);
    cf_error_set(code, detail_buf, file, line);
}

void cf_error_add_context(const char *context)
{
    if (context == NULL || context[0] == '\0') {
        return;
    }
    /* Build in a second buffer: the current detail may live in detail_buf. */
    if (last_error.detail[0] != '\0') {
        snprintf(context_buf, sizeof context_buf, "%s: %s", context, last_error.detail);
    } else {
        snprintf(context_buf, sizeof context_buf, "%s", context);
    }
    memcpy(detail_buf, context_buf, sizeof detail_buf);
    last_error.detail = detail_buf;
}

const cf_error_info *cf_error_last(void) { return &last_error; }

cf_error_code cf_error_code_last(void) { return last_error.code; }

void cf_error_clear(void) { cf_error_set(CF_E_OK, "", "", 0); }

const char *cf_error_name(cf_error_code code)
{
    if ((int)code < 0 || code >= CF_E_COUNT_ || error_names[code] == NULL) {
        return "internal_error";
    }
    return error_names[code];
}

cf_error_code cf_error_from_name(const char *name, size_t len)
{
    for (int i = 0; i < CF_E_COUNT_; i++) {
        if (strlen(error_names[i]) == len && memcmp(error_names[i], name, len) == 0) {
            return (cf_error_code)i;
        }
    }
    return CF_E_INTERNAL;
}

const char *cf_error_describe_user(char *buf, size_t buflen)
{
    if (last_error.detail[0] != '\0') {
        snprintf(buf, buflen, "%s: %s", cf_error_name(last_error.code), last_error.detail);
    } else {
        snprintf(buf, buflen, "%s", cf_error_name(last_error.code));
    }
    return buf;
}

const char *cf_error_describe(char *buf, size_t buflen)
{
    const char *base = strrchr(last_error.file, '/');
    base = base ? base + 1 : last_error.file;
    if (last_error.detail[0] != '\0') {
        snprintf(buf, buflen, "%s: %s (%s:%d)", cf_error_name(last_error.code), last_error.detail, base,
                 last_error.line);
    } else {
        snprintf(buf, buflen, "%s (%s:%d)", cf_error_name(last_error.code), base, last_error.line);
    }
    return buf;
}
