/* fuzz_json.c — the strict wire JSON scanner (json.h) must never read out of
 * bounds or crash, and its results must be self-consistent:
 *  - cf_json_object_parse succeeds only if cf_json_validate says "object";
 *  - every member span lies inside the input, its name_raw decodes to its
 *    name, its value validates alone with the reported type;
 *  - rebuilding the object with the writer (raw names in document order, and
 *    escaped names in sorted order) gives documents that parse back to the
 *    same names and byte-identical values;
 *  - an accepted string literal re-escapes and decodes to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confide/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool cond)
{
    if (!cond) {
        abort();
    }
}

static bool inside(cf_slice s, const uint8_t *data, size_t size)
{
    return s.len <= size && s.ptr >= data && (size_t)(s.ptr - data) <= size - s.len;
}

static void check_same_members(const cf_json_object *obj, cf_slice rebuilt, bool same_order)
{
    cf_json_object again;
    check(cf_is_ok(cf_json_object_parse(rebuilt, NULL, &again)));
    check(again.count == obj->count);
    for (size_t i = 0; i < obj->count; i++) {
        const cf_json_member *a = same_order ? &obj->members[i] : obj->sorted[i];
        const cf_json_member *b = &again.members[i];
        check(cf_slice_eq(a->name, b->name));
        check(cf_slice_eq(a->value, b->value));
        check(a->type == b->type);
    }
    cf_json_object_free(&again);
}

static void fuzz_object(const uint8_t *data, size_t size)
{
    cf_slice in = cf_slice_make(data, size);
    cf_json_type type;
    bool valid = cf_is_ok(cf_json_validate(in, NULL, &type));
    cf_json_object obj;
    if (cf_is_error(cf_json_object_parse(in, NULL, &obj))) {
        check(obj.members == NULL && obj.count == 0);
        cf_error_code code = cf_error_code_last();
        /* A valid object can still fail only for R8 (names). */
        if (valid && type == CF_JSON_OBJECT) {
            check(code == CF_E_DUPLICATE_KEY || code == CF_E_MALFORMED || code == CF_E_LIMIT);
        }
        return;
    }
    check(valid && type == CF_JSON_OBJECT);
    cf_buf tmp;
    cf_buf_init(&tmp, 0);
    for (size_t i = 0; i < obj.count; i++) {
        const cf_json_member *m = &obj.members[i];
        check(inside(m->name_raw, data, size));
        check(inside(m->value, data, size));
        check(m->name_raw.ptr + m->name_raw.len <= m->value.ptr);
        if (i > 0) {
            check(obj.members[i - 1].value.ptr + obj.members[i - 1].value.len <= m->name_raw.ptr);
        }
        cf_buf_reset(&tmp);
        check(cf_is_ok(cf_json_string_decode(m->name_raw, &tmp)));
        check(cf_slice_eq(cf_buf_slice(&tmp), m->name));
        check(m->name.len == 0 || memchr(m->name.ptr, 0, m->name.len) == NULL);
        cf_json_type vt;
        check(cf_is_ok(cf_json_validate(m->value, NULL, &vt)) && vt == m->type);
        check(m->value.len > 0 && !cf_json_is_ws(m->value.ptr[0]) && !cf_json_is_ws(m->value.ptr[m->value.len - 1]));
        check(cf_json_object_get(&obj, m->name) == m);
        if (i > 0) {
            const cf_json_member *a = obj.sorted[i - 1], *b = obj.sorted[i];
            size_t n = a->name.len < b->name.len ? a->name.len : b->name.len;
            int d = n ? memcmp(a->name.ptr, b->name.ptr, n) : 0;
            check(d < 0 || (d == 0 && a->name.len < b->name.len));
        }
    }

    cf_json_writer w;
    cf_buf_reset(&tmp);
    check(cf_is_ok(cf_json_writer_begin(&w, &tmp)));
    for (size_t i = 0; i < obj.count; i++) {
        check(cf_is_ok(cf_json_writer_member_raw(&w, obj.members[i].name_raw, obj.members[i].value)));
    }
    check(cf_is_ok(cf_json_writer_end(&w)));
    check(tmp.len <= size);
    check_same_members(&obj, cf_buf_slice(&tmp), true);

    cf_buf_reset(&tmp);
    check(cf_is_ok(cf_json_writer_begin(&w, &tmp)));
    for (size_t i = 0; i < obj.count; i++) {
        check(cf_is_ok(cf_json_writer_member(&w, obj.sorted[i]->name, obj.sorted[i]->value)));
    }
    check(cf_is_ok(cf_json_writer_end(&w)));
    check_same_members(&obj, cf_buf_slice(&tmp), false);

    cf_buf_free(&tmp);
    cf_json_object_free(&obj);
}

static void fuzz_string(const uint8_t *data, size_t size)
{
    cf_buf dec, enc, again;
    cf_buf_init(&dec, 1 << 20);
    cf_buf_init(&enc, 1 << 22);
    cf_buf_init(&again, 1 << 20);
    cf_slice in = cf_slice_make(data, size);
    if (cf_is_ok(cf_json_string_decode(in, &dec))) {
        cf_json_type t;
        check(cf_is_ok(cf_json_validate(in, NULL, &t)) && t == CF_JSON_STRING);
        check(cf_is_ok(cf_json_string_append(&enc, cf_buf_slice(&dec))));
        check(cf_is_ok(cf_json_string_decode(cf_buf_slice(&enc), &again)));
        check(cf_slice_eq(cf_buf_slice(&dec), cf_buf_slice(&again)));
    } else {
        check(dec.len == 0);
    }
    /* Escaping arbitrary bytes: accepted exactly when they are UTF-8, and the
     * result decodes back. */
    cf_buf_reset(&enc);
    cf_buf_reset(&again);
    if (cf_is_ok(cf_json_string_append(&enc, in))) {
        check(cf_is_ok(cf_json_string_decode(cf_buf_slice(&enc), &again)));
        check(cf_slice_eq(cf_buf_slice(&again), in));
    } else {
        check(enc.len == 0);
    }
    cf_buf_free(&dec);
    cf_buf_free(&enc);
    cf_buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_object(data, size);
    fuzz_string(data, size);
    /* Tight limits exercise the limit paths on the same input. */
    cf_json_limits lim = {.max_depth = 2, .max_members = 3, .max_name = 4};
    cf_json_object obj;
    if (cf_is_ok(cf_json_object_parse(cf_slice_make(data, size), &lim, &obj))) {
        check(obj.count <= 3);
        cf_json_object_free(&obj);
    }
    return 0;
}
