/* test_sse.c — incremental SSE parser and writer (include/confide/sse.h):
 * chunking independence, line endings, BOM, fields, comments, limits,
 * truncation, writer round trip. */
#include "test_helper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "confide/sse.h"

#define S(lit) cf_slice_make((lit), sizeof(lit) - 1)

/* Every reported event, dumped unambiguously (lengths before contents). */
typedef struct recorder {
    cf_buf log;
    size_t events;
    size_t fail_at; /* return an error on this event (1-based), 0 = never */
} recorder;

static void dump_field(cf_buf *log, const char *tag, bool has, cf_slice v)
{
    if (!has) {
        assert_cf_ok(cf_buf_appendf(log, "%s- ", tag));
        return;
    }
    assert_cf_ok(cf_buf_appendf(log, "%s%zu:", tag, v.len));
    assert_cf_ok(cf_buf_append_slice(log, v));
    assert_cf_ok(cf_buf_append_cstr(log, " "));
}

static CF_RESULT record(void *ctx, const cf_sse_event *ev)
{
    recorder *rec = ctx;
    rec->events++;
    if (rec->fail_at != 0 && rec->events == rec->fail_at) {
        CF_BAIL_MSG(CF_E_UPSTREAM, "test: callback refuses");
    }
    dump_field(&rec->log, "T", ev->has_type, ev->type);
    dump_field(&rec->log, "D", ev->has_data, ev->data);
    dump_field(&rec->log, "I", ev->has_id, ev->id);
    if (ev->has_retry) {
        assert_cf_ok(cf_buf_appendf(&rec->log, "R%u ", (unsigned)ev->retry_ms));
    }
    dump_field(&rec->log, "C", ev->comment_count > 0, ev->comments);
    assert_cf_ok(cf_buf_appendf(&rec->log, "n%zu|", ev->comment_count));
    return CF_OK;
}

typedef struct run_result {
    cf_buf log;
    cf_error_code feed_error; /* first failing feed, CF_E_OK if none */
    cf_error_code finish_error;
} run_result;

/* Feed `in` cut at the given offsets (ascending), then finish. */
static void run_split(cf_slice in, const size_t *cuts, size_t ncuts, size_t max_event, run_result *out)
{
    recorder rec = {0};
    cf_buf_init(&rec.log, 0);
    cf_sse_parser p;
    cf_sse_parser_init(&p, max_event, record, &rec);
    out->feed_error = CF_E_OK;
    out->finish_error = CF_E_OK;
    size_t prev = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : in.len;
        if (cf_is_error(cf_sse_parser_feed(&p, cf_slice_make(in.ptr + prev, end - prev)))) {
            out->feed_error = cf_error_code_last();
            break;
        }
        prev = end;
    }
    if (out->feed_error == CF_E_OK && cf_is_error(cf_sse_parser_finish(&p))) {
        out->finish_error = cf_error_code_last();
    }
    cf_sse_parser_free(&p);
    out->log = rec.log;
}

static void run_whole(cf_slice in, size_t max_event, run_result *out) { run_split(in, NULL, 0, max_event, out); }

static void assert_same_run(const run_result *a, const run_result *b, const char *what)
{
    if (a->feed_error != b->feed_error || a->finish_error != b->finish_error ||
        !cf_slice_eq(cf_buf_slice(&a->log), cf_buf_slice(&b->log))) {
        fail_msg("%s: runs differ:\n  %.*s (%s/%s)\n  %.*s (%s/%s)", what, (int)a->log.len, (const char *)a->log.data,
                 cf_error_name(a->feed_error), cf_error_name(a->finish_error), (int)b->log.len,
                 (const char *)b->log.data, cf_error_name(b->feed_error), cf_error_name(b->finish_error));
    }
}

static void assert_log(const cf_buf *log, const char *want)
{
    if (!cf_slice_eq_cstr(cf_buf_slice(log), want)) {
        fail_msg("got  %.*s\nwant %s", (int)log->len, (const char *)log->data, want);
    }
}

static void expect_events(const char *stream, size_t len, const char *want_log, cf_error_code want_finish)
{
    run_result r;
    run_whole(cf_slice_make(stream, len), 0, &r);
    assert_int_equal(r.feed_error, CF_E_OK);
    if (!cf_slice_eq_cstr(cf_buf_slice(&r.log), want_log)) {
        fail_msg("events:\n  got  %.*s\n  want %s", (int)r.log.len, (const char *)r.log.data, want_log);
    }
    assert_int_equal(r.finish_error, want_finish);
    cf_buf_free(&r.log);
}
#define EXPECT(stream, want) expect_events((stream), sizeof(stream) - 1, (want), CF_E_OK)

/* A stream exercising every rule at once. */
static const char mixed[] = "\xef\xbb\xbf"
                            ": keep-alive\n\n"
                            "data: {\"id\":1}\r\n\r\n"
                            "event: delta\rdata:first\rdata:  second\rid: 7\rretry: 1500\r\r"
                            "data\ndata\n\n"
                            ":c1\n:\n"
                            "id\nevent:\n"
                            "unknown: x\ndata: last\n\r\n"
                            "id: a\0b\nretry: 12x\nretry: 99999999999\ndata: [DONE]\n\n";

static const char mixed_log[] = "T- D- I- C11: keep-alive n1|"
                                "T- D8:{\"id\":1} I- C- n0|"
                                "T5:delta D13:first\n second I1:7 R1500 C- n0|"
                                "T- D1:\n I- C- n0|"
                                "T0: D4:last I0: C3:c1\n n2|"
                                "T- D6:[DONE] I- C- n0|";

static void test_fields_and_endings(void **state)
{
    (void)state;
    expect_events(mixed, sizeof mixed - 1, mixed_log, CF_E_OK);
    /* One space stripped, once; a colon later in the value is data. */
    EXPECT("data:x\n\ndata: x\n\ndata:  x\n\ndata: a:b\n\n", "T- D1:x I- C- n0|T- D1:x I- C- n0|T- D2: x I- C- n0|"
                                                            "T- D3:a:b I- C- n0|");
    /* Last event type and id win; an id containing U+0000 is ignored. */
    EXPECT("event: a\nevent: b\nid: 1\nid: x\0y\ndata: d\n\n", "T1:b D1:d I1:1 C- n0|");
    /* Empty lines alone report nothing; blank-line runs do not duplicate. */
    EXPECT("\n\r\n\r\n\ndata: a\n\n\n\n", "T- D1:a I- C- n0|");
    /* Field names are case-sensitive; trailing spaces are part of the name. */
    EXPECT("Data: a\ndata : b\nDATA\n\n", "");
    EXPECT("Data: a\n\n:\n\n", "T- D- I- C0: n1|");
    /* retry: digits only, 32 bits. */
    EXPECT("retry: 0\n\nretry: 4294967295\n\nretry: 4294967296\n\nretry:\n\nretry: 1 \n\n",
           "T- D- I- R0 C- n0|T- D- I- R4294967295 C- n0|");
    /* A data line of only spaces keeps all but one. */
    EXPECT("data:   \n\n", "T- D2:   I- C- n0|");
    /* Comment text is kept exactly. */
    EXPECT(":  two spaces\n: \n\n", "T- D- I- C14:  two spaces\n  n2|");
    /* CR then LF across lines: CR CR is two line ends. */
    EXPECT("data: a\r\rdata: b\n\r\r\n", "T- D1:a I- C- n0|T- D1:b I- C- n0|");
}

static void test_bom(void **state)
{
    (void)state;
    /* One leading BOM dropped; a second one is part of the field name. */
    EXPECT("\xef\xbb\xbf\xef\xbb\xbf" "data: a\n\ndata: b\n\n", "T- D1:b I- C- n0|");
    /* A BOM later in the stream is data. */
    EXPECT("data: \xef\xbb\xbfx\n\n", "T- D4:\xef\xbb\xbfx I- C- n0|");
    /* Half a BOM is ordinary input (an unknown field here). */
    EXPECT("\xef\xbb" "data: a\n\ndata: b\n\n", "T- D1:b I- C- n0|");
    EXPECT("\xef" "\n" "data: b\n\n", "T- D1:b I- C- n0|");
    expect_events("\xef\xbb", 2, "", CF_E_TRUNCATED);
    expect_events("\xef\xbb\xbf", 3, "", CF_E_OK);
}

/* Feeding whole, byte by byte, and cut at every pair of positions gives the
 * same events and the same outcome. */
static void check_split_invariance(cf_slice in, size_t max_event, bool all_pairs)
{
    run_result whole, split;
    run_whole(in, max_event, &whole);
    size_t *cuts = malloc((in.len + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < in.len; i++) {
        cuts[i] = i;
    }
    run_split(in, cuts, in.len, max_event, &split); /* byte by byte (plus empty first chunk) */
    assert_same_run(&whole, &split, "byte by byte");
    cf_buf_free(&split.log);
    size_t splits = 0;
    for (size_t i = 1; i < in.len; i++) {
        run_split(in, &i, 1, max_event, &split);
        assert_same_run(&whole, &split, "one cut");
        cf_buf_free(&split.log);
        splits++;
        for (size_t j = i + 1; all_pairs && j < in.len; j++) {
            size_t two[2] = {i, j};
            run_split(in, two, 2, max_event, &split);
            assert_same_run(&whole, &split, "two cuts");
            cf_buf_free(&split.log);
            splits++;
        }
    }
    free(cuts);
    cf_buf_free(&whole.log);
    print_message("sse: %zu-byte stream, %zu splittings agree with whole feeding\n", in.len, splits + 1);
}

static void test_chunking_invariance(void **state)
{
    (void)state;
    bool full = !cf_test_under_valgrind();
    check_split_invariance(cf_slice_make(mixed, sizeof mixed - 1), 0, full);
    /* Also with a limit that trips in the middle. */
    check_split_invariance(cf_slice_make(mixed, sizeof mixed - 1), 40, full);
    /* And a stream that ends mid-event. */
    check_split_invariance(S("data: a\r\n\r\ndata: b\r"), 0, true);
}

static void test_truncation(void **state)
{
    (void)state;
    expect_events("", 0, "", CF_E_OK);
    expect_events("data: a\n\n", 9, "T- D1:a I- C- n0|", CF_E_OK);
    expect_events("data: a\n", 8, "", CF_E_TRUNCATED);
    expect_events("data: a", 7, "", CF_E_TRUNCATED);
    expect_events("data: a\n\ndata: b\n", 17, "T- D1:a I- C- n0|", CF_E_TRUNCATED);
    expect_events(": ping\n", 7, "", CF_E_TRUNCATED);
    expect_events("data: a\r\r", 9, "T- D1:a I- C- n0|", CF_E_OK);
    expect_events("data: a\n\n\r", 10, "T- D1:a I- C- n0|", CF_E_OK);

    /* pending() tells a caller whether EOF now would truncate. */
    recorder rec = {0};
    cf_buf_init(&rec.log, 0);
    cf_sse_parser p;
    cf_sse_parser_init(&p, 0, record, &rec);
    assert_false(cf_sse_parser_pending(&p));
    assert_cf_ok(cf_sse_parser_feed(&p, S("da")));
    assert_true(cf_sse_parser_pending(&p));
    assert_cf_ok(cf_sse_parser_feed(&p, S("ta: x\n\n")));
    assert_false(cf_sse_parser_pending(&p));
    assert_int_equal(rec.events, 1);
    assert_cf_ok(cf_sse_parser_finish(&p));
    /* Finished parsers refuse more input. */
    assert_cf_error(cf_sse_parser_feed(&p, S("data: y\n\n")), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_sse_parser_finish(&p), CF_E_INVALID_ARGUMENT);
    assert_int_equal(rec.events, 1);
    cf_sse_parser_free(&p);
    cf_buf_free(&rec.log);
}

static void test_event_size_limit(void **state)
{
    (void)state;
    /* "data: " + 10 bytes = 16 bytes of lines: fits 16, not 15. */
    static const char ev[] = "data: 0123456789\n\n";
    run_result r;
    run_whole(S(ev), 16, &r);
    assert_int_equal(r.feed_error, CF_E_OK);
    assert_log(&r.log, "T- D10:0123456789 I- C- n0|");
    cf_buf_free(&r.log);
    run_whole(S(ev), 15, &r);
    assert_int_equal(r.feed_error, CF_E_TOO_LARGE);
    assert_int_equal(r.log.len, 0);
    cf_buf_free(&r.log);
    /* All lines of one event count, ignored fields and comments too, but not
     * the line terminators; the count starts again for each event. */
    run_whole(S("x: 1\n:23\ndata:4\n\ndata:45678\n\n"), 16, &r);
    assert_int_equal(r.feed_error, CF_E_OK);
    assert_log(&r.log, "T- D1:4 I- C2:23 n1|T- D5:45678 I- C- n0|");
    cf_buf_free(&r.log);
    run_whole(S("x: 12345\n:23\ndata:4\n\n"), 16, &r);
    assert_int_equal(r.feed_error, CF_E_TOO_LARGE);
    cf_buf_free(&r.log);

    /* A huge event fails as soon as the limit is crossed, before its end:
     * earlier events were delivered, nothing partial, parser poisoned. */
    recorder rec = {0};
    cf_buf_init(&rec.log, 0);
    cf_sse_parser p;
    cf_sse_parser_init(&p, 1024, record, &rec);
    assert_cf_ok(cf_sse_parser_feed(&p, S("data: small\n\ndata: ")));
    uint8_t block[512];
    memset(block, 'A', sizeof block);
    assert_cf_ok(cf_sse_parser_feed(&p, cf_slice_make(block, sizeof block)));
    assert_cf_error(cf_sse_parser_feed(&p, cf_slice_make(block, sizeof block)), CF_E_TOO_LARGE);
    assert_non_null(strstr(cf_error_last()->detail, "1024"));
    assert_int_equal(rec.events, 1);
    assert_cf_error(cf_sse_parser_feed(&p, S("\n\n")), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_sse_parser_finish(&p), CF_E_INVALID_ARGUMENT);
    assert_int_equal(rec.events, 1);
    cf_sse_parser_free(&p);
    cf_buf_free(&rec.log);

    /* Many data lines: the joining "\n" never pushes data past the limit. */
    cf_sse_parser_init(&p, 64, record, &rec);
    cf_buf_init(&rec.log, 0);
    rec.events = 0;
    cf_result res = CF_OK;
    for (int i = 0; i < 100 && cf_is_ok(res); i++) {
        res = cf_sse_parser_feed(&p, S("data\n"));
    }
    assert_true(cf_is_error(res));
    assert_int_equal(cf_error_code_last(), CF_E_TOO_LARGE);
    cf_sse_parser_free(&p);
    cf_buf_free(&rec.log);
}

static void test_constant_memory(void **state)
{
    (void)state;
    recorder rec = {0};
    cf_buf_init(&rec.log, 0);
    cf_sse_parser p;
    cf_sse_parser_init(&p, 4096, record, &rec);
    size_t rounds = cf_test_under_valgrind() ? 2000 : 50000;
    size_t max_cap = 0;
    for (size_t i = 0; i < rounds; i++) {
        char ev[128];
        int n = snprintf(ev, sizeof ev, "id: %zu\ndata: {\"choices\":[{\"delta\":{\"content\":\"tok%zu\"}}]}\n\n", i, i);
        assert_cf_ok(cf_sse_parser_feed(&p, cf_slice_make(ev, (size_t)n)));
        cf_buf_reset(&rec.log); /* the recorder itself must not grow either */
        size_t cap = p.data_.cap + p.type_.cap + p.id_.cap + p.id_pending_.cap + p.comments_.cap;
        if (cap > max_cap) {
            max_cap = cap;
        }
    }
    assert_int_equal(rec.events, rounds);
    assert_true(max_cap <= 512);
    assert_cf_ok(cf_sse_parser_finish(&p));
    cf_sse_parser_free(&p);
    cf_buf_free(&rec.log);
    print_message("sse: %zu events, parser buffers peaked at %zu bytes\n", rounds, max_cap);
}

/* Lone-CR lines in one big chunk: each line end must not rescan the rest of
 * the chunk (quadratic time would take hours here, linear takes ms). */
static void test_many_cr_lines_linear(void **state)
{
    (void)state;
    size_t pairs = cf_test_under_valgrind() ? 200000 : 2000000;
    uint8_t *chunk = malloc(pairs * 4);
    assert_non_null(chunk);
    for (size_t i = 0; i < pairs; i++) {
        memcpy(chunk + 4 * i, i % 2 ? "x\r\r\n" : ":\r\r\r", 4);
    }
    recorder rec = {0};
    cf_buf_init(&rec.log, 0);
    cf_sse_parser p;
    cf_sse_parser_init(&p, 0, record, &rec);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_cf_ok(cf_sse_parser_feed(&p, cf_slice_make(chunk, pairs * 4)));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* Only the comment blocks are reported ("x" is an ignored field). */
    assert_int_equal(rec.events, pairs / 2);
    assert_cf_ok(cf_sse_parser_finish(&p));
    cf_sse_parser_free(&p);
    cf_buf_free(&rec.log);
    free(chunk);
    print_message("sse: %zu bytes of CR-terminated lines in one chunk: %.3f s\n", pairs * 4, secs);
    assert_true(secs < 20.0);
}

static void test_callback_error_stops(void **state)
{
    (void)state;
    recorder rec = {0};
    cf_buf_init(&rec.log, 0);
    rec.fail_at = 2;
    cf_sse_parser p;
    cf_sse_parser_init(&p, 0, record, &rec);
    assert_cf_error(cf_sse_parser_feed(&p, S("data: 1\n\ndata: 2\n\ndata: 3\n\n")), CF_E_UPSTREAM);
    assert_int_equal(rec.events, 2);
    assert_log(&rec.log, "T- D1:1 I- C- n0|");
    assert_cf_error(cf_sse_parser_feed(&p, S("data: 4\n\n")), CF_E_INVALID_ARGUMENT);
    cf_sse_parser_free(&p);
    cf_buf_free(&rec.log);
    /* No callback: refused. */
    cf_sse_parser_init(&p, 0, NULL, NULL);
    assert_cf_error(cf_sse_parser_feed(&p, S("data: 1\n\n")), CF_E_INVALID_ARGUMENT);
    cf_sse_parser_free(&p);
}

static CF_RESULT copy_event_out(void *ctx, const cf_sse_event *ev)
{
    /* Write the reported event back: the writer must accept anything the
     * parser reports. */
    return cf_sse_write_event(ctx, ev);
}

static void test_writer_round_trip(void **state)
{
    (void)state;
    cf_buf out;
    cf_buf_init(&out, 0);
    cf_sse_event ev = {
        .type = S("delta"),
        .has_type = true,
        .data = S("line1\n line2\n\nlast"),
        .has_data = true,
        .id = S("42"),
        .has_id = true,
        .retry_ms = 3000,
        .has_retry = true,
        .comments = S(" hello\n"),
        .comment_count = 2,
    };
    assert_cf_ok(cf_sse_write_event(&out, &ev));
    static const char want[] = ": hello\n:\nevent: delta\nid: 42\nretry: 3000\n"
                               "data: line1\ndata:  line2\ndata:\ndata: last\n\n";
    assert_log(&out, want);
    assert_cf_ok(cf_sse_write_data(&out, S("[DONE]")));
    assert_cf_ok(cf_sse_write_data(&out, CF_SLICE_EMPTY));
    cf_sse_event only_type = {.type = CF_SLICE_EMPTY, .has_type = true};
    assert_cf_ok(cf_sse_write_event(&out, &only_type));
    cf_sse_event only_id = {.id = CF_SLICE_EMPTY, .has_id = true};
    assert_cf_ok(cf_sse_write_event(&out, &only_id));

    run_result r;
    run_whole(cf_buf_slice(&out), 0, &r);
    assert_int_equal(r.feed_error, CF_E_OK);
    assert_int_equal(r.finish_error, CF_E_OK);
    assert_log(&r.log,
                        "T5:delta D18:line1\n line2\n\nlast I2:42 R3000 C7: hello\n n2|"
                        "T- D6:[DONE] I- C- n0|T- D0: I- C- n0|T0: D- I- C- n0|T- D- I0: C- n0|");
    cf_buf_free(&r.log);

    /* parse(mixed) -> write -> parse gives the same events. */
    cf_buf rewritten;
    cf_buf_init(&rewritten, 0);
    cf_sse_parser p;
    cf_sse_parser_init(&p, 0, copy_event_out, &rewritten);
    assert_cf_ok(cf_sse_parser_feed(&p, cf_slice_make(mixed, sizeof mixed - 1)));
    assert_cf_ok(cf_sse_parser_finish(&p));
    cf_sse_parser_free(&p);
    run_whole(cf_buf_slice(&rewritten), 0, &r);
    assert_log(&r.log, mixed_log);
    cf_buf_free(&r.log);
    cf_buf_free(&rewritten);

    /* What cannot round-trip is refused, and nothing is appended. */
    size_t before = out.len;
    cf_sse_event bad[] = {
        {.data = S("a\rb"), .has_data = true},
        {.type = S("a\nb"), .has_type = true},
        {.type = S("a\rb"), .has_type = true},
        {.id = S("1\n"), .has_id = true},
        {.id = cf_slice_make("1\0", 2), .has_id = true},
        {.comments = S("a\rb"), .comment_count = 1},
        {.comments = S("a\nb"), .comment_count = 1},
        {.comments = S("a"), .comment_count = 0},
        {.has_data = false},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_cf_error(cf_sse_write_event(&out, &bad[i]), CF_E_INVALID_ARGUMENT);
        assert_int_equal(out.len, before);
    }
    /* Fields that are not flagged are not validated or written. */
    cf_sse_event ignored = {.type = S("x\ny"), .data = S("d"), .has_data = true};
    assert_cf_ok(cf_sse_write_event(&out, &ignored));
    cf_buf_free(&out);

    /* Over the buffer limit: nothing appended. */
    cf_buf small;
    cf_buf_init(&small, 10);
    assert_cf_error(cf_sse_write_data(&small, S("0123456789")), CF_E_TOO_LARGE);
    assert_int_equal(small.len, 0);
    cf_buf_free(&small);
}

static void test_openai_stream(void **state)
{
    (void)state;
    /* The shape llama-server and OpenAI send, cut like a network would. */
    static const char stream[] =
        "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
        "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
        "data: [DONE]\n\n";
    run_result r;
    size_t cuts[] = {5, 60, 61, 62, 100, 120};
    run_split(S(stream), cuts, 6, 0, &r);
    assert_int_equal(r.feed_error, CF_E_OK);
    assert_int_equal(r.finish_error, CF_E_OK);
    assert_log(&r.log,
                        "T- D51:{\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]} I- C- n0|"
                        "T- D50:{\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]} I- C- n0|"
                        "T- D6:[DONE] I- C- n0|");
    cf_buf_free(&r.log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_and_endings),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_chunking_invariance),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_event_size_limit),
        cmocka_unit_test(test_constant_memory),
        cmocka_unit_test(test_many_cr_lines_linear),
        cmocka_unit_test(test_callback_error_stops),
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_openai_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
