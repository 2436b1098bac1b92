/* test_json.c — the strict wire JSON scanner (include/confide/json.h):
 * JSONTestSuite conformance, member spans, duplicates, limits, strings,
 * writer. */
#include "test_helper.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confide/json.h"

#define S(lit) cf_slice_make((lit), sizeof(lit) - 1)

static bool slice_is(cf_slice s, const char *lit) { return cf_slice_eq_cstr(s, lit); }

static void assert_slice(cf_slice s, const char *lit)
{
    if (!slice_is(s, lit)) {
        fail_msg("expected '%s', got '%.*s'", lit, (int)s.len, (const char *)s.ptr);
    }
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Names of JSONTestSuite y_ files that are valid JSON but must fail the
 * top-level object API, and why (json.h R8). */
static cf_error_code expected_object_error(const char *name)
{
    if (strcmp(name, "y_object_duplicated_key.json") == 0 ||
        strcmp(name, "y_object_duplicated_key_and_value.json") == 0) {
        return CF_E_DUPLICATE_KEY;
    }
    if (strcmp(name, "y_object_escaped_null_in_key.json") == 0) {
        return CF_E_MALFORMED;
    }
    return CF_E_OK;
}

/* Our documented decisions for the implementation-defined i_ files. */
static bool i_file_expected_valid(const char *name)
{
    /* R6: numbers are never converted, so range does not matter. */
    return strncmp(name, "i_number_", 9) == 0;
}

static void test_conformance_jsontestsuite(void **state)
{
    (void)state;
    const char *dirpath = cf_test_vector_path("json/test_parsing");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", dirpath);
    DIR *d = opendir(dir);
    assert_non_null(d);
    char **names = NULL;
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strlen(e->d_name) < 3 || e->d_name[1] != '_') {
            continue;
        }
        names = realloc(names, (count + 1) * sizeof *names);
        assert_non_null(names);
        names[count++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof *names, name_cmp);

    size_t y_ok = 0, n_rejected = 0, i_survived = 0, y = 0, n = 0, i_cnt = 0, objects = 0;
    size_t failures = 0;
    for (size_t k = 0; k < count; k++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        cf_buf doc;
        cf_test_read_file(path, false, &doc);
        cf_slice in = cf_buf_slice(&doc);
        cf_json_type type = CF_JSON_NULL;
        bool valid = cf_is_ok(cf_json_validate(in, NULL, &type));
        cf_json_object obj;
        bool obj_ok = cf_is_ok(cf_json_object_parse(in, NULL, &obj));
        cf_error_code obj_err = obj_ok ? CF_E_OK : cf_error_code_last();
        switch (names[k][0]) {
        case 'y':
            y++;
            if (valid) {
                y_ok++;
            } else {
                failures++;
                print_error("y_ rejected: %s\n", names[k]);
            }
            if (valid && type == CF_JSON_OBJECT) {
                objects++;
                if (obj_err != expected_object_error(names[k])) {
                    failures++;
                    print_error("object API on %s: got %s\n", names[k], cf_error_name(obj_err));
                }
            } else if (obj_ok) {
                failures++;
                print_error("object API accepted a non-object: %s\n", names[k]);
            }
            break;
        case 'n':
            n++;
            if (!valid && !obj_ok) {
                n_rejected++;
            } else {
                failures++;
                print_error("n_ accepted: %s\n", names[k]);
            }
            break;
        case 'i':
            i_cnt++;
            i_survived++;
            if (valid != i_file_expected_valid(names[k])) {
                failures++;
                print_error("i_ %s: %s, expected the other way\n", names[k], valid ? "accepted" : "rejected");
            }
            break;
        default:
            break;
        }
        cf_json_object_free(&obj);
        cf_buf_free(&doc);
        free(names[k]);
    }
    free(names);
    print_message("json: %zu y accepted (of %zu), %zu n rejected (of %zu), %zu i survived (of %zu); "
                  "%zu y objects checked through the object API\n",
                  y_ok, y, n_rejected, n, i_survived, i_cnt, objects);
    assert_int_equal(failures, 0);
    /* The 318 files of nst/JSONTestSuite test_parsing (SOURCES.md §7): a
     * missing or extra file changes these. */
    assert_int_equal(y, 95);
    assert_int_equal(n, 188);
    assert_int_equal(i_cnt, 35);
    assert_int_equal(y_ok, y);
    assert_int_equal(n_rejected, n);
}

static void test_member_spans(void **state)
{
    (void)state;
    static const char doc[] = " \t{\"model\" : \"x\\u0079\" ,\"n\":-1.5e+3,\r\n \"a\\u0062\":[1, {\"k\" : 2}] ,"
                              "\"s\":\"\\\"q\\\"\",\"t\":true,\"f\":false,\"z\":null,\"o\":{}}\n";
    cf_json_object obj;
    assert_cf_ok(cf_json_object_parse(S(doc), NULL, &obj));
    assert_int_equal(obj.count, 8);
    const char *raw_names[] = {"\"model\"", "\"n\"", "\"a\\u0062\"", "\"s\"", "\"t\"", "\"f\"", "\"z\"", "\"o\""};
    const char *names[] = {"model", "n", "ab", "s", "t", "f", "z", "o"};
    const char *values[] = {"\"x\\u0079\"", "-1.5e+3", "[1, {\"k\" : 2}]", "\"\\\"q\\\"\"", "true", "false", "null", "{}"};
    cf_json_type types[] = {CF_JSON_STRING, CF_JSON_NUMBER, CF_JSON_ARRAY, CF_JSON_STRING,
                            CF_JSON_TRUE,   CF_JSON_FALSE,  CF_JSON_NULL,  CF_JSON_OBJECT};
    for (size_t i = 0; i < 8; i++) {
        const cf_json_member *m = &obj.members[i];
        assert_slice(m->name_raw, raw_names[i]);
        assert_slice(m->name, names[i]);
        assert_slice(m->value, values[i]);
        assert_int_equal(m->type, types[i]);
        /* Spans point into the caller's input. */
        assert_true(m->value.ptr >= (const uint8_t *)doc && m->value.ptr + m->value.len <= (const uint8_t *)doc + sizeof doc);
        assert_true(m->name_raw.ptr >= (const uint8_t *)doc);
    }
    /* Sorted by decoded name, bytewise. */
    const char *order[] = {"ab", "f", "model", "n", "o", "s", "t", "z"};
    for (size_t i = 0; i < 8; i++) {
        assert_slice(obj.sorted[i]->name, order[i]);
    }
    const cf_json_member *m = cf_json_object_get(&obj, S("ab"));
    assert_non_null(m);
    assert_slice(m->value, "[1, {\"k\" : 2}]");
    assert_null(cf_json_object_get(&obj, S("a\\u0062")));
    assert_null(cf_json_object_get(&obj, S("k"))); /* nested names are not members */
    assert_null(cf_json_object_get(&obj, S("")));
    assert_string_equal(cf_json_type_name(obj.members[2].type), "array");
    cf_json_object_free(&obj);
    assert_null(obj.members);
    cf_json_object_free(&obj); /* idempotent */
}

static void test_member_count_exact(void **state)
{
    (void)state;
    cf_json_object obj;
    assert_cf_ok(cf_json_object_parse(S("{}"), NULL, &obj));
    assert_int_equal(obj.count, 0);
    assert_null(cf_json_object_get(&obj, S("a")));
    cf_json_object_free(&obj);
    assert_cf_ok(cf_json_object_parse(S("{\"\":0}"), NULL, &obj));
    assert_int_equal(obj.count, 1);
    assert_non_null(cf_json_object_get(&obj, S("")));
    assert_slice(obj.members[0].value, "0");
    cf_json_object_free(&obj);
    /* Prefix sorts first. */
    assert_cf_ok(cf_json_object_parse(S("{\"ab\":1,\"a\":2,\"b\":3,\"\\u00e9\":4}"), NULL, &obj));
    assert_slice(obj.sorted[0]->name, "a");
    assert_slice(obj.sorted[1]->name, "ab");
    assert_slice(obj.sorted[2]->name, "b");
    assert_slice(obj.sorted[3]->name, "\xc3\xa9");
    cf_json_object_free(&obj);
}

static void test_duplicates(void **state)
{
    (void)state;
    cf_json_object obj;
    assert_cf_error(cf_json_object_parse(S("{\"a\":1,\"a\":1}"), NULL, &obj), CF_E_DUPLICATE_KEY);
    assert_null(obj.members);
    assert_int_equal(obj.count, 0);
    assert_cf_error(cf_json_object_parse(S("{\"a\":1,\"\\u0061\":2}"), NULL, &obj), CF_E_DUPLICATE_KEY);
    assert_non_null(strstr(cf_error_last()->detail, "at byte 7"));
    assert_cf_error(cf_json_object_parse(S("{\"\\/\":1,\"/\":2}"), NULL, &obj), CF_E_DUPLICATE_KEY);
    /* A surrogate pair escape equals the raw UTF-8 of U+1F600. */
    assert_cf_error(cf_json_object_parse(S("{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}"), NULL, &obj),
                    CF_E_DUPLICATE_KEY);
    assert_cf_error(cf_json_object_parse(S("{\"x\":1,\"model\":\"a\",\"y\":2,\"mod\\u0065l\":\"b\"}"), NULL, &obj),
                    CF_E_DUPLICATE_KEY);
    /* Case matters; nested duplicates are not top-level duplicates. */
    assert_cf_ok(cf_json_object_parse(S("{\"a\":1,\"A\":1,\"o\":{\"a\":1,\"a\":2}}"), NULL, &obj));
    assert_int_equal(obj.count, 3);
    cf_json_object_free(&obj);
    /* U+0000 in a top-level name (R8); fine in values and nested names. */
    assert_cf_error(cf_json_object_parse(S("{\"model\\u0000x\":1}"), NULL, &obj), CF_E_MALFORMED);
    assert_cf_ok(cf_json_object_parse(S("{\"v\":\"a\\u0000b\",\"o\":{\"a\\u0000\":1}}"), NULL, &obj));
    cf_json_object_free(&obj);
    cf_slice v;
    assert_cf_error(cf_json_lookup(S("{\"a\":1,\"b\":2,\"a\":3}"), NULL, S("b"), &v, NULL), CF_E_DUPLICATE_KEY);
}

static void test_lookup(void **state)
{
    (void)state;
    cf_slice v;
    cf_json_type t;
    assert_cf_ok(cf_json_lookup(S("{\"model\":\"llama\",\"stream\" : true }"), NULL, S("stream"), &v, &t));
    assert_slice(v, "true");
    assert_int_equal(t, CF_JSON_TRUE);
    assert_cf_ok(cf_json_lookup(S("{\"model\":\"llama\"}"), NULL, S("model"), &v, NULL));
    assert_slice(v, "\"llama\"");
    assert_cf_error(cf_json_lookup(S("{\"model\":\"llama\"}"), NULL, S("stream"), &v, &t), CF_E_NOT_FOUND);
    assert_int_equal(v.len, 0);
    assert_cf_error(cf_json_lookup(S("{\"model\":\"llama\",}"), NULL, S("model"), &v, &t), CF_E_MALFORMED);
    assert_cf_error(cf_json_lookup(S("[1]"), NULL, S("model"), &v, &t), CF_E_MALFORMED);
}

static void test_top_level_not_object(void **state)
{
    (void)state;
    cf_json_object obj;
    const char *docs[] = {"[1]", "\"s\"", "1", "null", "true", " [ ] "};
    cf_json_type types[] = {CF_JSON_ARRAY, CF_JSON_STRING, CF_JSON_NUMBER, CF_JSON_NULL, CF_JSON_TRUE, CF_JSON_ARRAY};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        cf_json_type t;
        assert_cf_ok(cf_json_validate(cf_slice_cstr(docs[i]), NULL, &t));
        assert_int_equal(t, types[i]);
        assert_cf_error(cf_json_object_parse(cf_slice_cstr(docs[i]), NULL, &obj), CF_E_MALFORMED);
        assert_non_null(strstr(cf_error_last()->detail, "not an object"));
    }
}

static void test_grammar_table(void **state)
{
    (void)state;
    static const struct {
        const char *doc;
        bool ok;
    } cases[] = {
        {"0", true},          {"-0", true},          {"-0.0e-0", true},   {"1E+2", true},
        {"123456789012345678901234567890e999999", true},                  {"01", false},
        {"-01", false},       {"+1", false},         {".5", false},       {"1.", false},
        {"1e", false},        {"1e+", false},        {"0x1", false},      {"NaN", false},
        {"-Infinity", false}, {"[1,]", false},       {"{\"a\":1,}", false}, {"[,1]", false},
        {"{,}", false},       {"{\"a\" 1}", false},  {"{a:1}", false},    {"{'a':1}", false},
        {"[1] [2]", false},   {"", false},           {"  ", false},       {"[1]/**/", false},
        {"tru", false},       {"True", false},       {"nul", false},      {"[\"\\x41\"]", false},
        {"[\"\\u12\"]", false}, {"[\"\\uD800\"]", false}, {"[\"\\uDC00\"]", false},
        {"[\"\\uD800\\uD800\"]", false}, {"[\"\\uDBFF\\uDFFF\"]", true}, {"[\"\\uD800\\u0041\"]", false},
        {"[\"\\uD800x\"]", false}, {"[\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"]", true}, {"\"\\u00e9\\u00E9\"", true},
        {"[\"\t\"]", false},  {"[\"\x7f\"]", true},  {"\f[]", false},     {"[]\v", false},
        {"\xef\xbb\xbf{}", false}, {"{\"a\":[{\"b\":[]}]}", true}, {"[[[]]", false}, {"[]]", false},
        {"{\"a\":1}}", false}, {"{\"a\"}", false},   {"{\"a\":}", false}, {"[1 2]", false},
        {"\"\xc3\xa9\"", true}, {"\"\xc0\x80\"", false}, {"\"\xc1\xbf\"", false}, {"\"\xe0\x80\xaf\"", false},
        {"\"\xe0\xa0\x80\"", true}, {"\"\xed\xa0\x80\"", false}, {"\"\xed\x9f\xbf\"", true},
        {"\"\xef\xbf\xbf\"", true}, {"\"\xf0\x8f\xbf\xbf\"", false}, {"\"\xf0\x90\x80\x80\"", true},
        {"\"\xf4\x8f\xbf\xbf\"", true}, {"\"\xf4\x90\x80\x80\"", false}, {"\"\xf5\x80\x80\x80\"", false},
        {"\"\x80\"", false},  {"\"\xc3\"", false},   {"\"\xe2\x82\"", false}, {"\"\xff\"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cf_result r = cf_json_validate(cf_slice_cstr(cases[i].doc), NULL, NULL);
        if (cf_is_ok(r) != cases[i].ok) {
            fail_msg("case %zu '%s': expected %s", i, cases[i].doc, cases[i].ok ? "accept" : "reject");
        }
        if (!cases[i].ok) {
            assert_int_equal(cf_error_code_last(), CF_E_MALFORMED);
        }
    }
    /* Embedded NUL bytes are control characters, in or out of strings. */
    assert_cf_error(cf_json_validate(cf_slice_make("[\"a\0\"]", 6), NULL, NULL), CF_E_MALFORMED);
    assert_cf_error(cf_json_validate(cf_slice_make("[1]\0", 4), NULL, NULL), CF_E_MALFORMED);
    /* The detail names the offset. */
    assert_cf_error(cf_json_validate(S("[1,]"), NULL, NULL), CF_E_MALFORMED);
    assert_non_null(strstr(cf_error_last()->detail, "at byte 3"));
}

static void test_limits(void **state)
{
    (void)state;
    cf_json_limits lim = {.max_depth = 3};
    assert_cf_ok(cf_json_validate(S("[[[1]]]"), &lim, NULL));
    assert_cf_error(cf_json_validate(S("[[[[1]]]]"), &lim, NULL), CF_E_TOO_DEEP);
    assert_cf_ok(cf_json_validate(S("{\"a\":{\"b\":[]}}"), &lim, NULL));
    assert_cf_error(cf_json_validate(S("{\"a\":{\"b\":[{}]}}"), &lim, NULL), CF_E_TOO_DEEP);
    cf_json_object obj;
    assert_cf_ok(cf_json_object_parse(S("{\"a\":[[1]]}"), &lim, &obj));
    cf_json_object_free(&obj);
    assert_cf_error(cf_json_object_parse(S("{\"a\":[[[1]]]}"), &lim, &obj), CF_E_TOO_DEEP);
    lim.max_depth = 1;
    assert_cf_ok(cf_json_object_parse(S("{\"a\":1,\"b\":\"[\"}"), &lim, &obj));
    cf_json_object_free(&obj);
    assert_cf_error(cf_json_object_parse(S("{\"a\":[]}"), &lim, &obj), CF_E_TOO_DEEP);
    lim.max_depth = CF_JSON_MAX_DEPTH_CEILING + 1;
    assert_cf_error(cf_json_validate(S("1"), &lim, NULL), CF_E_INVALID_ARGUMENT);

    /* 100000 opening brackets: a clean error, no stack use. */
    size_t n = 100000;
    char *deep = malloc(n);
    assert_non_null(deep);
    memset(deep, '[', n);
    assert_cf_error(cf_json_validate(cf_slice_make(deep, n), NULL, NULL), CF_E_TOO_DEEP);
    /* Balanced and within the ceiling: accepted when allowed. */
    size_t d = CF_JSON_MAX_DEPTH_CEILING;
    char *ok = malloc(2 * d);
    assert_non_null(ok);
    memset(ok, '[', d);
    memset(ok + d, ']', d);
    lim.max_depth = CF_JSON_MAX_DEPTH_CEILING;
    assert_cf_ok(cf_json_validate(cf_slice_make(ok, 2 * d), &lim, NULL));
    assert_cf_error(cf_json_validate(cf_slice_make(ok, 2 * d), NULL, NULL), CF_E_TOO_DEEP);
    free(ok);
    free(deep);

    cf_json_limits size = {.max_size = 7};
    assert_cf_ok(cf_json_validate(S("[1,2,3]"), &size, NULL));
    assert_cf_error(cf_json_validate(S("[1,2,3] "), &size, NULL), CF_E_TOO_LARGE);
    assert_cf_error(cf_json_object_parse(S("{\"a\":12}"), &size, &obj), CF_E_TOO_LARGE);

    cf_json_limits members = {.max_members = 2};
    assert_cf_ok(cf_json_object_parse(S("{\"a\":1,\"b\":[3,4,5]}"), &members, &obj));
    cf_json_object_free(&obj);
    assert_cf_error(cf_json_object_parse(S("{\"a\":1,\"b\":2,\"c\":3}"), &members, &obj), CF_E_LIMIT);

    cf_json_limits names = {.max_name = 3};
    assert_cf_ok(cf_json_object_parse(S("{\"\\u0061bc\":1,\"x\":{\"longer\":1}}"), &names, &obj));
    cf_json_object_free(&obj);
    assert_cf_error(cf_json_object_parse(S("{\"abcd\":1}"), &names, &obj), CF_E_LIMIT);

    /* Many members under the default limit, sorted and found. */
    cf_buf big;
    cf_buf_init(&big, 0);
    assert_cf_ok(cf_buf_append_cstr(&big, "{"));
    for (int i = 0; i < 1000; i++) {
        assert_cf_ok(cf_buf_appendf(&big, "%s\"k%04d\":%d", i ? "," : "", (i * 7919) % 1000, i));
    }
    assert_cf_ok(cf_buf_append_cstr(&big, "}"));
    assert_cf_ok(cf_json_object_parse(cf_buf_slice(&big), NULL, &obj));
    assert_int_equal(obj.count, 1000);
    for (size_t i = 1; i < obj.count; i++) {
        assert_true(memcmp(obj.sorted[i - 1]->name.ptr, obj.sorted[i]->name.ptr, 5) < 0);
    }
    assert_non_null(cf_json_object_get(&obj, S("k0999")));
    cf_json_object_free(&obj);
    cf_buf_free(&big);
}

static void test_string_decode(void **state)
{
    (void)state;
    cf_buf out;
    cf_buf_init(&out, 64);
    assert_cf_ok(cf_json_string_decode(S("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20AC\\ud83d\\ude00\""), &out));
    static const char want[] = "a\"b\\c/d\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    assert_int_equal(out.len, sizeof want - 1);
    assert_memory_equal(out.data, want, sizeof want - 1);
    cf_buf_reset(&out);
    assert_cf_ok(cf_json_string_decode(S("\"x\\u0000y\""), &out));
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "x\0y", 3);
    cf_buf_reset(&out);
    assert_cf_ok(cf_json_string_decode(S("\"\""), &out));
    assert_int_equal(out.len, 0);

    /* Failures leave the buffer as it was. */
    assert_cf_ok(cf_buf_append_cstr(&out, "keep"));
    const char *bad[] = {"\"abc", "abc\"", "\"a\" ", " \"a\"", "\"\\ud800\"", "\"\\q\"", "\"\xc0\xaf\"", "\"a\"b\"", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_cf_error(cf_json_string_decode(cf_slice_cstr(bad[i]), &out), CF_E_MALFORMED);
        assert_int_equal(out.len, 4);
        assert_memory_equal(out.data, "keep", 4);
    }
    cf_buf_free(&out);

    /* The buffer's maximum is the limit. */
    cf_buf small;
    cf_buf_init(&small, 4);
    assert_cf_ok(cf_json_string_decode(S("\"ab\\u00e9\""), &small));
    cf_buf_reset(&small);
    assert_cf_error(cf_json_string_decode(S("\"abc\\u00e9\""), &small), CF_E_TOO_LARGE);
    assert_int_equal(small.len, 0);
    cf_buf_free(&small);
}

static void test_string_append(void **state)
{
    (void)state;
    cf_buf out;
    cf_buf_init(&out, 0);
    static const char in[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f \xc3\xa9\xf0\x9f\x98\x80";
    assert_cf_ok(cf_json_string_append(&out, cf_slice_make(in, sizeof in - 1)));
    assert_slice(cf_buf_slice(&out), "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f \xc3\xa9\xf0\x9f\x98\x80\"");
    /* Round trip through the decoder, NUL included. */
    cf_buf dec;
    cf_buf_init(&dec, 0);
    assert_cf_ok(cf_json_string_decode(cf_buf_slice(&out), &dec));
    assert_int_equal(dec.len, sizeof in - 1);
    assert_memory_equal(dec.data, in, sizeof in - 1);
    cf_buf_reset(&out);
    cf_buf_reset(&dec);
    assert_cf_ok(cf_json_string_append(&out, cf_slice_make("a\0b", 3)));
    assert_slice(cf_buf_slice(&out), "\"a\\u0000b\"");
    assert_cf_ok(cf_json_string_decode(cf_buf_slice(&out), &dec));
    assert_int_equal(dec.len, 3);
    cf_buf_reset(&out);
    assert_cf_ok(cf_json_string_append(&out, CF_SLICE_EMPTY));
    assert_slice(cf_buf_slice(&out), "\"\"");
    /* Invalid UTF-8 is refused, nothing appended. */
    assert_cf_error(cf_json_string_append(&out, S("ok\xed\xa0\x80")), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_json_string_append(&out, S("\xc3")), CF_E_INVALID_ARGUMENT);
    assert_slice(cf_buf_slice(&out), "\"\"");
    cf_buf_free(&out);
    cf_buf_free(&dec);
    /* Over the buffer limit: nothing appended. */
    cf_buf small;
    cf_buf_init(&small, 5);
    assert_cf_error(cf_json_string_append(&small, S("\n\n")), CF_E_TOO_LARGE);
    assert_int_equal(small.len, 0);
    assert_cf_ok(cf_json_string_append(&small, S("abc")));
    cf_buf_free(&small);
}

static void test_writer(void **state)
{
    (void)state;
    static const char doc[] = "{ \"z\" : [1, 2,\n 3],\"model\":\"m\\u0031\", \"n\":1.50E+01,\"mes\\u0073ages\":{ \"a\" :[] } }";
    cf_json_object obj;
    assert_cf_ok(cf_json_object_parse(S(doc), NULL, &obj));
    cf_buf out;
    cf_buf_init(&out, 0);
    assert_cf_ok(cf_buf_append_cstr(&out, "prefix"));
    cf_json_writer w;
    assert_cf_ok(cf_json_writer_begin(&w, &out));
    for (size_t i = 0; i < obj.count; i++) {
        const cf_json_member *m = obj.sorted[i];
        if (cf_slice_eq_cstr(m->name, "messages")) {
            assert_cf_ok(cf_json_writer_member_string(&w, m->name, S("cf1:k:s:\"ct\"")));
        } else {
            assert_cf_ok(cf_json_writer_member(&w, m->name, m->value));
        }
    }
    assert_cf_ok(cf_json_writer_end(&w));
    assert_slice(cf_buf_slice(&out),
                 "prefix{\"messages\":\"cf1:k:s:\\\"ct\\\"\",\"model\":\"m\\u0031\",\"n\":1.50E+01,\"z\":[1, 2,\n 3]}");
    /* Ended writers refuse more. */
    assert_cf_error(cf_json_writer_member(&w, S("x"), S("1")), CF_E_INVALID_ARGUMENT);

    /* Raw names are kept byte for byte; the output parses back to the same
     * members. */
    cf_buf rebuilt;
    cf_buf_init(&rebuilt, 0);
    assert_cf_ok(cf_json_writer_begin(&w, &rebuilt));
    for (size_t i = 0; i < obj.count; i++) {
        assert_cf_ok(cf_json_writer_member_raw(&w, obj.members[i].name_raw, obj.members[i].value));
    }
    assert_cf_ok(cf_json_writer_end(&w));
    assert_slice(cf_buf_slice(&rebuilt),
                 "{\"z\":[1, 2,\n 3],\"model\":\"m\\u0031\",\"n\":1.50E+01,\"mes\\u0073ages\":{ \"a\" :[] }}");
    cf_json_object again;
    assert_cf_ok(cf_json_object_parse(cf_buf_slice(&rebuilt), NULL, &again));
    assert_int_equal(again.count, obj.count);
    for (size_t i = 0; i < obj.count; i++) {
        assert_true(cf_slice_eq(again.members[i].name, obj.members[i].name));
        assert_true(cf_slice_eq(again.members[i].value, obj.members[i].value));
    }
    cf_json_object_free(&again);
    cf_buf_free(&rebuilt);

    /* A bad raw value abandons the object: out is back to its old length. */
    size_t before = out.len;
    assert_cf_ok(cf_json_writer_begin(&w, &out));
    assert_cf_ok(cf_json_writer_member(&w, S("a"), S("1")));
    assert_cf_error(cf_json_writer_member(&w, S("b"), S("[1,]")), CF_E_MALFORMED);
    assert_int_equal(out.len, before);
    assert_cf_error(cf_json_writer_end(&w), CF_E_INVALID_ARGUMENT);
    assert_int_equal(out.len, before);
    assert_cf_ok(cf_json_writer_begin(&w, &out));
    assert_cf_error(cf_json_writer_member_raw(&w, S("\"a\" "), S("1")), CF_E_INVALID_ARGUMENT);
    assert_int_equal(out.len, before);
    assert_cf_ok(cf_json_writer_begin(&w, &out));
    assert_cf_error(cf_json_writer_member(&w, S("\xff"), S("1")), CF_E_INVALID_ARGUMENT);
    assert_int_equal(out.len, before);
    assert_cf_ok(cf_json_writer_begin(&w, &out));
    assert_cf_error(cf_json_writer_member(&w, S("a"), S("")), CF_E_MALFORMED);
    assert_int_equal(out.len, before);
    /* Trailing padding of a raw value is allowed and kept (DESIGN §4.4). */
    cf_buf_reset(&out);
    assert_cf_ok(cf_json_writer_begin(&w, &out));
    assert_cf_ok(cf_json_writer_member(&w, S(""), S("\"x\"   ")));
    assert_cf_ok(cf_json_writer_end(&w));
    assert_slice(cf_buf_slice(&out), "{\"\":\"x\"   }");
    assert_cf_ok(cf_json_validate(cf_buf_slice(&out), NULL, NULL));
    /* A value exactly as deep as the object parser allows for a member
     * (63 under the default 64) is written and parses back; one deeper is
     * refused by the writer rather than emitted and rejected later. */
    char deep[2 * CF_JSON_DEFAULT_MAX_DEPTH];
    size_t dn = CF_JSON_DEFAULT_MAX_DEPTH - 1;
    memset(deep, '[', dn);
    memset(deep + dn, ']', dn);
    cf_buf_reset(&out);
    assert_cf_ok(cf_json_writer_begin(&w, &out));
    assert_cf_ok(cf_json_writer_member(&w, S("d"), cf_slice_make(deep, 2 * dn)));
    assert_cf_ok(cf_json_writer_end(&w));
    cf_json_object deep_obj;
    assert_cf_ok(cf_json_object_parse(cf_buf_slice(&out), NULL, &deep_obj));
    cf_json_object_free(&deep_obj);
    dn++;
    memset(deep, '[', dn);
    memset(deep + dn, ']', dn);
    assert_cf_ok(cf_json_validate(cf_slice_make(deep, 2 * dn), NULL, NULL));
    cf_buf_reset(&out);
    assert_cf_ok(cf_json_writer_begin(&w, &out));
    assert_cf_error(cf_json_writer_member(&w, S("d"), cf_slice_make(deep, 2 * dn)), CF_E_TOO_DEEP);
    assert_int_equal(out.len, 0);
    /* An empty object. */
    cf_buf_reset(&out);
    assert_cf_ok(cf_json_writer_begin(&w, &out));
    assert_cf_ok(cf_json_writer_end(&w));
    assert_slice(cf_buf_slice(&out), "{}");
    /* The buffer limit applies, and the failed object is removed. */
    cf_buf small;
    cf_buf_init(&small, 8);
    assert_cf_ok(cf_json_writer_begin(&w, &small));
    assert_cf_ok(cf_json_writer_member(&w, S("a"), S("1")));
    assert_cf_error(cf_json_writer_member(&w, S("b"), S("2")), CF_E_TOO_LARGE);
    assert_int_equal(small.len, 0);
    cf_buf_free(&small);
    cf_buf_free(&out);
    cf_json_object_free(&obj);
}

static void test_trim(void **state)
{
    (void)state;
    assert_slice(cf_json_trim(S(" \t\r\n{\"a\":1}  \n")), "{\"a\":1}");
    assert_slice(cf_json_trim(S("   ")), "");
    assert_slice(cf_json_trim(S("\f1\v")), "\f1\v");
    assert_int_equal(cf_json_trim(CF_SLICE_EMPTY).len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conformance_jsontestsuite),
        cmocka_unit_test(test_member_spans),
        cmocka_unit_test(test_member_count_exact),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_top_level_not_object),
        cmocka_unit_test(test_grammar_table),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_string_decode),
        cmocka_unit_test(test_string_append),
        cmocka_unit_test(test_writer),
        cmocka_unit_test(test_trim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
