/* json.c — strict RFC 8259 scanner with byte spans (rules R1-R8 in json.h).
 *
 * Everything goes through one cursor (a cf_reader) whose position is checked
 * against the length before every byte is read. Containers are tracked on a
 * fixed bit stack (1 = object) instead of recursion, so nesting depth costs no
 * C stack and is bounded by the caller's limit. */
#include "confide/json.h"

#include <stdlib.h>
#include <string.h>

#define FAIL_AT(code, what, pos) CF_BAIL_FMT((code), "json: %s at byte %zu", (what), (size_t)(pos))

const char *cf_json_type_name(cf_json_type type)
{
    switch (type) {
    case CF_JSON_NULL:
        return "null";
    case CF_JSON_FALSE:
        return "false";
    case CF_JSON_TRUE:
        return "true";
    case CF_JSON_NUMBER:
        return "number";
    case CF_JSON_STRING:
        return "string";
    case CF_JSON_ARRAY:
        return "array";
    case CF_JSON_OBJECT:
        return "object";
    }
    return "unknown";
}

typedef struct limits {
    size_t max_size;
    unsigned max_depth;
    size_t max_members;
    size_t max_name;
} resolved_limits;

static CF_RESULT resolve_limits(const cf_json_limits *in, resolved_limits *out)
{
    out->max_size = CF_JSON_DEFAULT_MAX_SIZE;
    out->max_depth = CF_JSON_DEFAULT_MAX_DEPTH;
    out->max_members = CF_JSON_DEFAULT_MAX_MEMBERS;
    out->max_name = CF_JSON_DEFAULT_MAX_NAME;
    if (in != NULL) {
        CF_ENSURE_MSG(in->max_depth <= CF_JSON_MAX_DEPTH_CEILING, CF_E_INVALID_ARGUMENT,
                      "json: max_depth above CF_JSON_MAX_DEPTH_CEILING");
        if (in->max_size != 0) {
            out->max_size = in->max_size;
        }
        if (in->max_depth != 0) {
            out->max_depth = in->max_depth;
        }
        if (in->max_members != 0) {
            out->max_members = in->max_members;
        }
        if (in->max_name != 0) {
            out->max_name = in->max_name;
        }
    }
    return CF_OK;
}

cf_slice cf_json_trim(cf_slice s)
{
    size_t start = 0, end = s.len;
    while (start < end && cf_json_is_ws(s.ptr[start])) {
        start++;
    }
    while (end > start && cf_json_is_ws(s.ptr[end - 1])) {
        end--;
    }
    return end > start ? cf_slice_make(s.ptr + start, end - start) : cf_slice_make("", 0);
}

/* ---- cursor helpers --------------------------------------------------------- */

static inline bool peek(const cf_reader *r, uint8_t *c)
{
    if (r->pos >= r->len) {
        return false;
    }
    *c = r->ptr[r->pos];
    return true;
}

static inline void skip_ws(cf_reader *r)
{
    while (r->pos < r->len && cf_json_is_ws(r->ptr[r->pos])) {
        r->pos++;
    }
}

/* Remove bytes appended after `len` (wiping them): callers never leave a
 * partial result behind. */
static void buf_truncate(cf_buf *b, size_t len)
{
    if (b->len > len) {
        cf_wipe(b->data + len, b->len - len);
        b->len = len;
    }
}

/* Length of the well-formed UTF-8 sequence starting at s[0] (Unicode 15
 * Table 3-7), or 0 if it is ill-formed or truncated. s[0] >= 0x80. */
static size_t utf8_seq_len(const uint8_t *s, size_t avail)
{
    uint8_t c = s[0];
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) {
            lo = 0xA0; /* no overlongs */
        } else if (c == 0xED) {
            hi = 0x9F; /* no UTF-16 surrogates */
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) {
            lo = 0x90; /* no overlongs */
        } else if (c == 0xF4) {
            hi = 0x8F; /* nothing above U+10FFFF */
        }
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, F5..FF */
    }
    if (avail < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return n;
}

static bool utf8_valid(cf_slice s)
{
    size_t i = 0;
    while (i < s.len) {
        if (s.ptr[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq_len(s.ptr + i, s.len - i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

static int hex_val(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Read "uXXXX" (the backslash already consumed) into *cp. */
static CF_RESULT read_u_escape(cf_reader *r, uint32_t *cp)
{
    size_t at = r->pos;
    if (cf_reader_remaining(r) < 5 || r->ptr[r->pos] != 'u') {
        FAIL_AT(CF_E_MALFORMED, "bad \\u escape", at);
    }
    uint32_t v = 0;
    for (size_t i = 1; i <= 4; i++) {
        int h = hex_val(r->ptr[r->pos + i]);
        if (h < 0) {
            FAIL_AT(CF_E_MALFORMED, "bad \\u escape", at);
        }
        v = (v << 4) | (uint32_t)h;
    }
    r->pos += 5;
    *cp = v;
    return CF_OK;
}

static CF_RESULT append_utf8(cf_buf *b, uint32_t cp)
{
    uint8_t u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | (cp >> 6));
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | (cp >> 12));
        u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | (cp >> 18));
        u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return cf_buf_append(b, u, n);
}

/* One escape sequence after its backslash (R4, R5); appends the decoded
 * character to dec when dec is not NULL. */
static CF_RESULT scan_escape(cf_reader *r, cf_buf *dec)
{
    size_t at = r->pos - 1;
    uint8_t c;
    if (!peek(r, &c)) {
        FAIL_AT(CF_E_MALFORMED, "unterminated escape", at);
    }
    uint8_t simple = 0;
    switch (c) {
    case '"':
    case '\\':
    case '/':
        simple = c;
        break;
    case 'b':
        simple = '\b';
        break;
    case 'f':
        simple = '\f';
        break;
    case 'n':
        simple = '\n';
        break;
    case 'r':
        simple = '\r';
        break;
    case 't':
        simple = '\t';
        break;
    case 'u':
        break;
    default:
        FAIL_AT(CF_E_MALFORMED, "invalid escape", at);
    }
    if (c != 'u') {
        r->pos++;
        return dec != NULL ? cf_buf_append_u8(dec, simple) : CF_OK;
    }
    uint32_t cp;
    CF_GUARD(read_u_escape(r, &cp));
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        FAIL_AT(CF_E_MALFORMED, "lone low surrogate escape", at);
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t low;
        if (cf_reader_remaining(r) < 6 || r->ptr[r->pos] != '\\') {
            FAIL_AT(CF_E_MALFORMED, "lone high surrogate escape", at);
        }
        r->pos++;
        CF_GUARD(read_u_escape(r, &low));
        if (low < 0xDC00 || low > 0xDFFF) {
            FAIL_AT(CF_E_MALFORMED, "high surrogate escape not followed by a low one", at);
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    return dec != NULL ? append_utf8(dec, cp) : CF_OK;
}

/* A string token; r is at its opening quote. Decodes into dec (may be NULL). */
static CF_RESULT scan_string(cf_reader *r, cf_buf *dec)
{
    size_t start = r->pos;
    r->pos++;
    size_t run = r->pos; /* start of bytes copied verbatim to dec */
    for (;;) {
        if (r->pos >= r->len) {
            FAIL_AT(CF_E_MALFORMED, "unterminated string", start);
        }
        uint8_t c = r->ptr[r->pos];
        if (c == '"' || c == '\\') {
            if (dec != NULL) {
                CF_GUARD(cf_buf_append(dec, r->ptr + run, r->pos - run));
            }
            r->pos++;
            if (c == '"') {
                return CF_OK;
            }
            CF_GUARD(scan_escape(r, dec));
            run = r->pos;
        } else if (c < 0x20) {
            FAIL_AT(CF_E_MALFORMED, "unescaped control character in string", r->pos);
        } else if (c < 0x80) {
            r->pos++;
        } else {
            size_t n = utf8_seq_len(r->ptr + r->pos, r->len - r->pos);
            if (n == 0) {
                FAIL_AT(CF_E_MALFORMED, "invalid UTF-8 in string", r->pos);
            }
            r->pos += n;
        }
    }
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static size_t skip_digits(cf_reader *r)
{
    size_t n = 0;
    while (r->pos < r->len && is_digit(r->ptr[r->pos])) {
        r->pos++;
        n++;
    }
    return n;
}

/* number = [ minus ] int [ frac ] [ exp ] (RFC 8259 §6), never converted. */
static CF_RESULT scan_number(cf_reader *r)
{
    size_t start = r->pos;
    uint8_t c;
    if (peek(r, &c) && c == '-') {
        r->pos++;
    }
    if (!peek(r, &c) || !is_digit(c)) {
        FAIL_AT(CF_E_MALFORMED, "invalid number", start);
    }
    if (c == '0') {
        r->pos++; /* a leading zero stands alone: "01" fails at the '1' */
    } else {
        skip_digits(r);
    }
    if (peek(r, &c) && c == '.') {
        r->pos++;
        if (skip_digits(r) == 0) {
            FAIL_AT(CF_E_MALFORMED, "invalid number fraction", start);
        }
    }
    if (peek(r, &c) && (c == 'e' || c == 'E')) {
        r->pos++;
        if (peek(r, &c) && (c == '+' || c == '-')) {
            r->pos++;
        }
        if (skip_digits(r) == 0) {
            FAIL_AT(CF_E_MALFORMED, "invalid number exponent", start);
        }
    }
    return CF_OK;
}

static CF_RESULT scan_literal(cf_reader *r, const char *word, size_t n)
{
    if (cf_reader_remaining(r) < n || memcmp(r->ptr + r->pos, word, n) != 0) {
        FAIL_AT(CF_E_MALFORMED, "invalid literal", r->pos);
    }
    r->pos += n;
    return CF_OK;
}

static cf_json_type type_of_first_byte(uint8_t c)
{
    switch (c) {
    case '{':
        return CF_JSON_OBJECT;
    case '[':
        return CF_JSON_ARRAY;
    case '"':
        return CF_JSON_STRING;
    case 't':
        return CF_JSON_TRUE;
    case 'f':
        return CF_JSON_FALSE;
    case 'n':
        return CF_JSON_NULL;
    default:
        return CF_JSON_NUMBER;
    }
}

/* `"name" ws ':' ws` inside a nested object. */
static CF_RESULT scan_member_name(cf_reader *r)
{
    uint8_t c;
    if (!peek(r, &c) || c != '"') {
        FAIL_AT(CF_E_MALFORMED, "object member name expected", r->pos);
    }
    CF_GUARD(scan_string(r, NULL));
    skip_ws(r);
    if (!peek(r, &c) || c != ':') {
        FAIL_AT(CF_E_MALFORMED, "':' expected", r->pos);
    }
    r->pos++;
    skip_ws(r);
    return CF_OK;
}

/*
 * Exactly one value starting at r->pos (no leading whitespace), with at most
 * max_depth nested containers. Leaves r just after the value.
 */
static CF_RESULT scan_value(cf_reader *r, unsigned max_depth)
{
    uint8_t is_object[CF_JSON_MAX_DEPTH_CEILING / 8] = {0};
    unsigned depth = 0;
    uint8_t c;
    for (;;) {
        /* A value is expected here. */
        if (!peek(r, &c)) {
            FAIL_AT(CF_E_MALFORMED, "value expected", r->pos);
        }
        switch (c) {
        case '{':
        case '[': {
            if (depth >= max_depth) {
                FAIL_AT(CF_E_TOO_DEEP, "nesting too deep", r->pos);
            }
            uint8_t bit = (uint8_t)(1u << (depth % 8));
            if (c == '{') {
                is_object[depth / 8] |= bit;
            } else {
                is_object[depth / 8] &= (uint8_t)~bit;
            }
            depth++;
            r->pos++;
            skip_ws(r);
            uint8_t close = c == '{' ? '}' : ']';
            uint8_t next;
            if (peek(r, &next) && next == close) {
                r->pos++;
                depth--;
                break; /* an empty container is a complete value */
            }
            if (c == '{') {
                CF_GUARD(scan_member_name(r));
            }
            continue; /* the first element or member value */
        }
        case '"':
            CF_GUARD(scan_string(r, NULL));
            break;
        case 't':
            CF_GUARD(scan_literal(r, "true", 4));
            break;
        case 'f':
            CF_GUARD(scan_literal(r, "false", 5));
            break;
        case 'n':
            CF_GUARD(scan_literal(r, "null", 4));
            break;
        default:
            if (c == '-' || is_digit(c)) {
                CF_GUARD(scan_number(r));
                break;
            }
            FAIL_AT(CF_E_MALFORMED, "unexpected byte, value expected", r->pos);
        }
        /* A value ended: close containers or move to the next element. */
        for (;;) {
            if (depth == 0) {
                return CF_OK;
            }
            bool in_object = (is_object[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1u;
            skip_ws(r);
            if (!peek(r, &c)) {
                FAIL_AT(CF_E_MALFORMED, "unterminated container", r->pos);
            }
            if (c == ',') {
                r->pos++;
                skip_ws(r);
                if (in_object) {
                    CF_GUARD(scan_member_name(r));
                }
                break; /* next value */
            }
            if (c == (in_object ? '}' : ']')) {
                r->pos++;
                depth--;
                continue;
            }
            FAIL_AT(CF_E_MALFORMED, in_object ? "',' or '}' expected" : "',' or ']' expected", r->pos);
        }
    }
}

CF_RESULT cf_json_validate(cf_slice doc, const cf_json_limits *limits_in, cf_json_type *type_out)
{
    resolved_limits lim;
    CF_GUARD(resolve_limits(limits_in, &lim));
    CF_ENSURE(doc.ptr != NULL || doc.len == 0, CF_E_INVALID_ARGUMENT);
    if (doc.len > lim.max_size) {
        CF_BAIL_FMT(CF_E_TOO_LARGE, "json: document of %zu bytes exceeds the limit of %zu", doc.len, lim.max_size);
    }
    cf_reader r = cf_reader_make(doc);
    skip_ws(&r);
    uint8_t c = 0;
    if (!peek(&r, &c)) {
        FAIL_AT(CF_E_MALFORMED, "value expected", r.pos);
    }
    CF_GUARD(scan_value(&r, lim.max_depth));
    skip_ws(&r);
    if (!cf_reader_done(&r)) {
        FAIL_AT(CF_E_MALFORMED, "trailing bytes after the value", r.pos);
    }
    if (type_out != NULL) {
        *type_out = type_of_first_byte(c);
    }
    return CF_OK;
}

/* ---- top-level objects ------------------------------------------------------ */

static int member_name_cmp(const cf_json_member *a, const cf_json_member *b)
{
    size_t n = a->name.len < b->name.len ? a->name.len : b->name.len;
    int d = n ? memcmp(a->name.ptr, b->name.ptr, n) : 0;
    if (d != 0) {
        return d;
    }
    return (a->name.len > b->name.len) - (a->name.len < b->name.len);
}

static int sorted_cmp(const void *pa, const void *pb)
{
    const cf_json_member *const *a = pa;
    const cf_json_member *const *b = pb;
    return member_name_cmp(*a, *b);
}

void cf_json_object_free(cf_json_object *obj)
{
    if (obj == NULL) {
        return;
    }
    free(obj->members);
    free(obj->sorted);
    cf_free_secret(obj->names_, obj->names_len_);
    memset(obj, 0, sizeof *obj);
}

/* The member loop of cf_json_object_parse. Names are decoded into `names`;
 * name_off[i] records where member i's name starts in it (the buffer may
 * move while growing, so pointers are fixed up at the end). */
static CF_RESULT scan_members(cf_reader *r, const resolved_limits *lim, cf_json_member **members, size_t **name_off,
                              size_t *count, size_t *cap, cf_buf *names)
{
    uint8_t c;
    skip_ws(r);
    if (!peek(r, &c) || c != '{') {
        CF_BAIL_MSG(CF_E_MALFORMED, "json: top-level value is not an object");
    }
    r->pos++;
    skip_ws(r);
    if (peek(r, &c) && c == '}') {
        r->pos++;
        return CF_OK;
    }
    for (;;) {
        if (!peek(r, &c) || c != '"') {
            FAIL_AT(CF_E_MALFORMED, "object member name expected", r->pos);
        }
        if (*count >= lim->max_members) {
            CF_BAIL_FMT(CF_E_LIMIT, "json: more than %zu top-level members", lim->max_members);
        }
        if (*count == *cap) {
            size_t ncap = *cap ? *cap * 2 : 16;
            if (ncap > lim->max_members) {
                ncap = lim->max_members;
            }
            cf_json_member *m = realloc(*members, ncap * sizeof **members);
            CF_ENSURE(m != NULL, CF_E_NO_MEMORY);
            *members = m;
            size_t *o = realloc(*name_off, ncap * sizeof **name_off);
            CF_ENSURE(o != NULL, CF_E_NO_MEMORY);
            *name_off = o;
            *cap = ncap;
        }
        cf_json_member *m = &(*members)[*count];
        size_t name_start = r->pos;
        size_t off = names->len;
        CF_GUARD(scan_string(r, names));
        size_t name_len = names->len - off;
        if (name_len > lim->max_name) {
            CF_BAIL_FMT(CF_E_LIMIT, "json: top-level name at byte %zu longer than %zu bytes", name_start,
                        lim->max_name);
        }
        if (name_len > 0 && memchr(names->data + off, 0, name_len) != NULL) {
            FAIL_AT(CF_E_MALFORMED, "top-level name contains U+0000", name_start);
        }
        m->name_raw = cf_slice_make(r->ptr + name_start, r->pos - name_start);
        m->name = cf_slice_make(NULL, name_len);
        (*name_off)[*count] = off;
        skip_ws(r);
        if (!peek(r, &c) || c != ':') {
            FAIL_AT(CF_E_MALFORMED, "':' expected", r->pos);
        }
        r->pos++;
        skip_ws(r);
        size_t value_start = r->pos;
        if (!peek(r, &c)) {
            FAIL_AT(CF_E_MALFORMED, "value expected", r->pos);
        }
        CF_GUARD(scan_value(r, lim->max_depth - 1));
        m->value = cf_slice_make(r->ptr + value_start, r->pos - value_start);
        m->type = type_of_first_byte(c);
        (*count)++;
        skip_ws(r);
        if (!peek(r, &c)) {
            FAIL_AT(CF_E_MALFORMED, "unterminated object", r->pos);
        }
        r->pos++;
        if (c == '}') {
            return CF_OK;
        }
        if (c != ',') {
            FAIL_AT(CF_E_MALFORMED, "',' or '}' expected", r->pos - 1);
        }
        skip_ws(r);
    }
}

CF_RESULT cf_json_object_parse(cf_slice doc, const cf_json_limits *limits_in, cf_json_object *out)
{
    cf_result result = CF_OK;
    cf_json_member *members = NULL;
    const cf_json_member **sorted = NULL;
    size_t *name_off = NULL;
    size_t count = 0, cap = 0;
    cf_buf names;
    resolved_limits lim;

    /* Decoded names are never longer than the document. */
    cf_buf_init(&names, doc.len + 1);
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    CF_GUARD(resolve_limits(limits_in, &lim));
    CF_ENSURE(doc.ptr != NULL || doc.len == 0, CF_E_INVALID_ARGUMENT);
    if (doc.len > lim.max_size) {
        CF_BAIL_FMT(CF_E_TOO_LARGE, "json: document of %zu bytes exceeds the limit of %zu", doc.len, lim.max_size);
    }

    cf_reader r = cf_reader_make(doc);
    CF_GUARD_OUT(scan_members(&r, &lim, &members, &name_off, &count, &cap, &names));
    skip_ws(&r);
    if (!cf_reader_done(&r)) {
        cf_error_setf(CF_E_MALFORMED, __FILE__, __LINE__, "json: trailing bytes after the value at byte %zu", r.pos);
        result = CF_ERROR;
        goto out;
    }

    if (count > 0) {
        sorted = calloc(count, sizeof *sorted);
        CF_ENSURE_OUT(sorted != NULL, CF_E_NO_MEMORY);
        for (size_t i = 0; i < count; i++) {
            members[i].name.ptr = names.data + name_off[i];
            sorted[i] = &members[i];
        }
        qsort(sorted, count, sizeof *sorted, sorted_cmp);
        for (size_t i = 1; i < count; i++) {
            if (member_name_cmp(sorted[i - 1], sorted[i]) == 0) {
                const cf_json_member *later =
                    sorted[i]->name_raw.ptr > sorted[i - 1]->name_raw.ptr ? sorted[i] : sorted[i - 1];
                cf_error_setf(CF_E_DUPLICATE_KEY, __FILE__, __LINE__, "json: duplicate top-level name at byte %zu",
                              (size_t)(later->name_raw.ptr - doc.ptr));
                result = CF_ERROR;
                goto out;
            }
        }
    }

    out->members = members;
    out->count = count;
    out->sorted = sorted;
    out->names_len_ = names.len;
    out->names_ = cf_buf_take(&names, NULL);
    members = NULL;
    sorted = NULL;
out:
    free(members);
    free(sorted);
    free(name_off);
    cf_buf_free(&names);
    return result;
}

const cf_json_member *cf_json_object_get(const cf_json_object *obj, cf_slice name)
{
    if (obj == NULL || obj->count == 0) {
        return NULL;
    }
    cf_json_member key = {.name = name};
    size_t lo = 0, hi = obj->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = member_name_cmp(obj->sorted[mid], &key);
        if (d == 0) {
            return obj->sorted[mid];
        }
        if (d < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

CF_RESULT cf_json_lookup(cf_slice doc, const cf_json_limits *limits, cf_slice name, cf_slice *value_out,
                         cf_json_type *type_out)
{
    CF_ENSURE_REF(value_out);
    *value_out = CF_SLICE_EMPTY;
    cf_json_object obj;
    CF_GUARD(cf_json_object_parse(doc, limits, &obj));
    const cf_json_member *m = cf_json_object_get(&obj, name);
    if (m == NULL) {
        cf_json_object_free(&obj);
        CF_BAIL_MSG(CF_E_NOT_FOUND, "json: no such top-level member");
    }
    *value_out = m->value;
    if (type_out != NULL) {
        *type_out = m->type;
    }
    cf_json_object_free(&obj);
    return CF_OK;
}

/* ---- strings ------------------------------------------------------------------ */

CF_RESULT cf_json_string_decode(cf_slice literal, cf_buf *out)
{
    CF_ENSURE_REF(out);
    CF_ENSURE(literal.ptr != NULL || literal.len == 0, CF_E_INVALID_ARGUMENT);
    cf_reader r = cf_reader_make(literal);
    uint8_t c;
    if (!peek(&r, &c) || c != '"') {
        CF_BAIL_MSG(CF_E_MALFORMED, "json: string literal expected");
    }
    size_t before = out->len;
    if (cf_is_error(scan_string(&r, out))) {
        buf_truncate(out, before);
        return CF_ERROR;
    }
    if (!cf_reader_done(&r)) {
        buf_truncate(out, before);
        FAIL_AT(CF_E_MALFORMED, "bytes after the string literal", r.pos);
    }
    return CF_OK;
}

static CF_RESULT string_append_unchecked(cf_buf *out, cf_slice s)
{
    static const char hexdig[] = "0123456789abcdef";
    if (s.len == 0) {
        s = cf_slice_make("", 0); /* no arithmetic on a NULL pointer below */
    }
    CF_GUARD(cf_buf_append_u8(out, '"'));
    size_t run = 0;
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = s.ptr[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        CF_GUARD(cf_buf_append(out, s.ptr + run, i - run));
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hexdig[c >> 4];
            esc[5] = hexdig[c & 0xF];
            n = 6;
            break;
        }
        CF_GUARD(cf_buf_append(out, esc, n));
    }
    CF_GUARD(cf_buf_append(out, s.ptr + run, s.len - run));
    return cf_buf_append_u8(out, '"');
}

CF_RESULT cf_json_string_append(cf_buf *out, cf_slice utf8)
{
    CF_ENSURE_REF(out);
    CF_ENSURE(utf8.ptr != NULL || utf8.len == 0, CF_E_INVALID_ARGUMENT);
    CF_ENSURE_MSG(utf8_valid(utf8), CF_E_INVALID_ARGUMENT, "json: string to escape is not valid UTF-8");
    size_t before = out->len;
    if (cf_is_error(string_append_unchecked(out, utf8))) {
        buf_truncate(out, before);
        return CF_ERROR;
    }
    return CF_OK;
}

/* ---- writer ---------------------------------------------------------------------- */

CF_RESULT cf_json_writer_begin(cf_json_writer *w, cf_buf *out)
{
    CF_ENSURE_REF(w);
    CF_ENSURE_REF(out);
    w->out = out;
    w->start_len = out->len;
    w->count = 0;
    w->failed = false;
    w->closed = false;
    if (cf_is_error(cf_buf_append_u8(out, '{'))) {
        w->failed = true;
        return CF_ERROR;
    }
    return CF_OK;
}

static CF_RESULT writer_usable(const cf_json_writer *w)
{
    CF_ENSURE_REF(w);
    CF_ENSURE_MSG(w->out != NULL && !w->failed && !w->closed, CF_E_INVALID_ARGUMENT,
                  "json: writer not begun, failed or already ended");
    return CF_OK;
}

/* Abandon the object: nothing half-written stays in out. */
static cf_result writer_fail(cf_json_writer *w)
{
    buf_truncate(w->out, w->start_len);
    w->failed = true;
    return CF_ERROR;
}

/* A raw member value sits one level below the object being written, so it
 * may nest one container less than a whole document: then everything the
 * writer emits also passes cf_json_object_parse with the default limits. */
static const cf_json_limits member_value_limits = {.max_depth = CF_JSON_DEFAULT_MAX_DEPTH - 1};

/* name_is_literal: `name` is a validated JSON string token, copied verbatim;
 * otherwise it is escaped. value_is_text: `value` is UTF-8 text to escape;
 * otherwise it is raw JSON, copied verbatim. */
static CF_RESULT writer_add(cf_json_writer *w, cf_slice name, bool name_is_literal, cf_slice value,
                            bool value_is_text)
{
    CF_GUARD(writer_usable(w));
    if (name.ptr == NULL && name.len != 0) {
        cf_error_set(CF_E_INVALID_ARGUMENT, "json: NULL name", __FILE__, __LINE__);
        return writer_fail(w);
    }
    if (value.ptr == NULL && value.len != 0) {
        cf_error_set(CF_E_INVALID_ARGUMENT, "json: NULL value", __FILE__, __LINE__);
        return writer_fail(w);
    }
    if (name_is_literal) {
        cf_reader r = cf_reader_make(name);
        uint8_t c;
        if (!peek(&r, &c) || c != '"' || cf_is_error(scan_string(&r, NULL)) || !cf_reader_done(&r)) {
            cf_error_set(CF_E_INVALID_ARGUMENT, "json: member name is not one JSON string literal", __FILE__,
                         __LINE__);
            return writer_fail(w);
        }
    } else if (!utf8_valid(name)) {
        cf_error_set(CF_E_INVALID_ARGUMENT, "json: member name is not valid UTF-8", __FILE__, __LINE__);
        return writer_fail(w);
    }
    if (value_is_text) {
        if (!utf8_valid(value)) {
            cf_error_set(CF_E_INVALID_ARGUMENT, "json: string value is not valid UTF-8", __FILE__, __LINE__);
            return writer_fail(w);
        }
    } else if (cf_is_error(cf_json_validate(value, &member_value_limits, NULL))) {
        cf_error_add_context("json writer: raw value");
        return writer_fail(w);
    }
    cf_buf *out = w->out;
    if ((w->count > 0 && cf_is_error(cf_buf_append_u8(out, ','))) ||
        cf_is_error(name_is_literal ? cf_buf_append_slice(out, name) : string_append_unchecked(out, name)) ||
        cf_is_error(cf_buf_append_u8(out, ':')) ||
        cf_is_error(value_is_text ? string_append_unchecked(out, value) : cf_buf_append_slice(out, value))) {
        return writer_fail(w);
    }
    w->count++;
    return CF_OK;
}

CF_RESULT cf_json_writer_member(cf_json_writer *w, cf_slice name, cf_slice raw_value)
{
    return writer_add(w, name, false, raw_value, false);
}

CF_RESULT cf_json_writer_member_raw(cf_json_writer *w, cf_slice name_literal, cf_slice raw_value)
{
    return writer_add(w, name_literal, true, raw_value, false);
}

CF_RESULT cf_json_writer_member_string(cf_json_writer *w, cf_slice name, cf_slice value_utf8)
{
    return writer_add(w, name, false, value_utf8, true);
}

CF_RESULT cf_json_writer_end(cf_json_writer *w)
{
    CF_GUARD(writer_usable(w));
    if (cf_is_error(cf_buf_append_u8(w->out, '}'))) {
        return writer_fail(w);
    }
    w->closed = true;
    return CF_OK;
}
