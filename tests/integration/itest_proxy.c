/* itest_proxy.c — the real confide-proxy between this test (playing the
 * app) and a fake provider gateway, with the real confide-as (sim platform).
 *
 * The fake gateway runs in a thread of this process on its own libevent
 * loop. It plays gateway + worker + inference server at once: it joined the
 * real AS as a worker (its evidence is this test executable's measurement,
 * which the manifest's worker policy pins), fetches keys from the AS on
 * demand (POST /v1/workers/key), decrypts requests and encrypts replies with
 * the worker side of the library codec, and injects faults on request:
 * flipped bytes, a dropped final event, plaintext 2xx/5xx bodies,
 * unknown_key once. It also serves a forged AS attestation (a sim report
 * with a broken signature) for one of the refusal tests.
 *
 * The AS refusal tests run the real confide-as with evidence that cannot
 * satisfy the pinned manifest: another manifest, a wrong measurement, a
 * report from another (unaccepted) sim root, and a forged report. In each
 * the proxy must send nothing upstream and say precisely why (log, /healthz,
 * the 503 to the app). Every process started is killed at exit, also when a
 * test fails. Loopback only. */
#define _GNU_SOURCE /* memmem, asprintf */
#include "test_helper.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "confide/as_api.h"
#include "confide/as_client.h"
#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/hpke.h"
#include "confide/http_client.h"
#include "confide/http_server.h"
#include "confide/json.h"
#include "confide/log.h"
#include "confide/manifest.h"
#include "confide/protocol.h"
#include "confide/sim.h"
#include "confide/sse.h"

#define PROMPT "SECRET-PROMPT-7f3a"
#define REPLY "REPLY-SECRET-5678"
#define API_KEY "sk-test-provider-key"

/* ---- processes (all killed at exit, even after a failed assertion) ---------------- */

#define MAX_PROCS 32
static pid_t g_pids[MAX_PROCS];

static void kill_all(void)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        if (g_pids[i] > 0) {
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
            g_pids[i] = 0;
        }
    }
}

typedef struct proc {
    pid_t pid;
    char log[600];
    int port;
} proc_t;

static const char *build_dir(void)
{
    const char *b = getenv("CONFIDE_BUILD");
    return b && b[0] ? b : "build/default";
}

/* The whole log as a string ("" while the child has not created it). */
static char *read_log(const proc_t *p)
{
    cf_buf b;
    cf_buf_init(&b, 0);
    FILE *f = fopen(p->log, "r");
    if (f != NULL) {
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
            assert_cf_ok(cf_buf_append(&b, chunk, n));
        }
        fclose(f);
    }
    assert_cf_ok(cf_buf_append_u8(&b, 0));
    return (char *)cf_buf_take(&b, NULL);
}

/* Wait until the log has `needle`; fails if the process exits first. */
static void wait_log(const proc_t *p, const char *needle, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        char *log = read_log(p);
        bool found = strstr(log, needle) != NULL;
        free(log);
        if (found) {
            return;
        }
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            fail_msg("process exited while waiting for '%s' (log %s)", needle, p->log);
        }
        usleep(20000);
    }
    fail_msg("timed out waiting for '%s' in %s", needle, p->log);
}

static bool log_has(const proc_t *p, const char *needle)
{
    char *log = read_log(p);
    bool found = strstr(log, needle) != NULL;
    free(log);
    return found;
}

static void start_proc(proc_t *p, const char *log, const char *const *argv, const char *started_event)
{
    snprintf(p->log, sizeof p->log, "%s", log);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        FILE *f = freopen(p->log, "w", stderr);
        (void)f;
        if (dup2(fileno(stderr), STDOUT_FILENO) < 0) {
            _exit(127);
        }
        execvp(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    for (int i = 0; i < MAX_PROCS; i++) {
        if (g_pids[i] == 0) {
            g_pids[i] = p->pid;
            break;
        }
    }
    wait_log(p, started_event, 10000);
    char *text = read_log(p);
    const char *ev = strstr(text, started_event);
    const char *port = ev ? strstr(ev, " port=") : NULL;
    p->port = port ? atoi(port + 6) : 0;
    free(text);
}

/* SIGTERM (unless already sent: a second one would force the exit) and
 * wait up to 10 s, then SIGKILL. Never fails, so that a teardown can stop
 * every process: returns whether it ended cleanly with status 0 (true for
 * one never started; false for one already reaped elsewhere, e.g. by
 * wait_log when it exited early). */
static bool stop_proc_quietly(proc_t *p, bool send)
{
    if (p->pid <= 0) {
        return true;
    }
    int status = 0;
    pid_t got = waitpid(p->pid, &status, WNOHANG);
    if (got < 0) {
        /* Already reaped: the pid may belong to someone else by now. */
        for (int i = 0; i < MAX_PROCS; i++) {
            if (g_pids[i] == p->pid) {
                g_pids[i] = 0;
            }
        }
        p->pid = 0;
        return false;
    }
    if (got != p->pid && send) {
        kill(p->pid, SIGTERM);
    }
    for (int i = 0; i < 400 && got != p->pid; i++) {
        usleep(25000);
        got = waitpid(p->pid, &status, WNOHANG);
    }
    for (int i = 0; i < MAX_PROCS; i++) {
        if (g_pids[i] == p->pid) {
            g_pids[i] = 0;
        }
    }
    bool exited = got == p->pid;
    if (!exited) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        fprintf(stderr, "process did not stop on SIGTERM (log %s)\n", p->log);
    }
    p->pid = 0;
    return exited && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The same, for tests: must end cleanly with status 0. */
static void stop_proc_signal(proc_t *p, bool send)
{
    char log[sizeof p->log];
    snprintf(log, sizeof log, "%s", p->log);
    if (!stop_proc_quietly(p, send)) {
        fail_msg("process did not end cleanly with status 0 on SIGTERM (log %s)", log);
    }
}

static void stop_proc(proc_t *p) { stop_proc_signal(p, true); }

/* ---- the fake gateway -------------------------------------------------------------- */

typedef enum fault {
    F_NONE = 0,
    F_FLIP_JSON,        /* one ciphertext character of a JSON reply changed */
    F_PLAINTEXT_200,    /* an unencrypted 200 reply */
    F_PLAINTEXT_500,    /* a plaintext error, as a worker would send before decryption */
    F_UNKNOWN_KEY_ONCE, /* 401 unknown_key, then normal */
    F_DROP_FINAL,       /* the stream's final event removed */
    F_FLIP_STREAM,      /* one ciphertext character in the second event changed */
    F_SLOW_STREAM,      /* first event, 400 ms pause, the rest */
    F_BIG_STREAM,       /* BIG_EVENTS events of ~2 KiB, sent as fast as the proxy takes them */
    F_PLAIN_200_MARKED, /* an unencrypted 200 carrying both Confide-Version and Confide-Plaintext */
    F_PLAIN_STREAM,     /* a plaintext SSE stream with a forged Confide-Version header */
    F_STATUS_CHANGED,   /* an encrypted reply sealed for 200, sent with status 201 */
    F_CUT_AFTER_DONE,   /* the whole stream, then the connection closes short of its Content-Length */
    F_CUT_BEFORE_FINAL, /* the stream without its final event, then the same short close */
} fault_t;

#define BIG_EVENTS 8000 /* ~16 MiB: more than the proxy may queue without backpressure */

typedef struct gw_key {
    char key_id[CF_KEY_ID_LEN + 1];
    uint8_t k[CF_INFERENCE_KEY_LEN];
} gw_key;

typedef struct gateway {
    pthread_t thread;
    bool started;        /* gw_start got as far as initialising the lock and buffers */
    bool thread_running; /* the loop thread exists and must be joined */
    struct event_base *base;
    cf_http_server *server;
    uint16_t port;
    cf_http_server *tls_server; /* the same gateway over HTTPS */
    uint16_t tls_port;
    char tls_cert[600];
    char tls_key[600];
    char as_url[64];
    /* worker identity at the AS */
    cf_as_identity as_id;
    cf_hpke_keypair kp;
    cf_worker_grant grant;
    gw_key keys[16];
    size_t key_next;
    /* forged AS */
    char sim_dir[512];
    cf_manifest *manifest;
    uint8_t as_measurement[CF_SIM_MEASUREMENT_LEN];
    cf_hpke_keypair fake_kp;
    uint8_t fake_sign_pub[CF_ED25519_PUB_LEN];
    /* shared with the test thread */
    pthread_mutex_t mu;
    fault_t fault;
    int requests;
    cf_buf last_wire;
    cf_buf last_plain;
    char last_auth[256];
} gateway_t;

static const char *const stream_events[] = {
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]"
    "}",
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" REPLY
    "\"}}]}",
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" "
    "tail\"}}]}",
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
    "\"stop\"}]}",
    NULL,
};

static const char chat_reply[] =
    "{\"id\":\"chatcmpl-test\",\"object\":\"chat.completion\",\"model\":\"model-a\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"" REPLY "\"},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}";
static const char embed_reply[] =
    "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":"
    "[0.25,-0.5]}],\"model\":\"model-a\",\"usage\":{\"prompt_tokens\":2,\"total_tokens\":2}}";

/* The SSE text the inference server "produced" (what the app must get). */
static void plain_stream(cf_buf *out)
{
    for (size_t i = 0; stream_events[i] != NULL; i++) {
        assert_cf_ok(cf_buf_appendf(out, "data: %s\n\n", stream_events[i]));
    }
    assert_cf_ok(cf_buf_append_cstr(out, "data: [DONE]\n\n"));
}

static CF_RESULT gw_lookup(void *ctx, const char *key_id, uint8_t secret[CF_PROTO_SECRET_LEN])
{
    gateway_t *g = ctx;
    for (size_t i = 0; i < 16; i++) {
        if (strcmp(g->keys[i].key_id, key_id) == 0) {
            memcpy(secret, g->keys[i].k, CF_PROTO_SECRET_LEN);
            return CF_OK;
        }
    }
    /* Ask the AS once, as a worker does on an unknown key id. */
    cf_result result = CF_OK;
    cf_buf req, body;
    cf_buf_init(&req, 4096);
    cf_buf_init(&body, CF_AS_BODY_MAX);
    cf_key_event ev;
    memset(&ev, 0, sizeof ev);
    uint8_t nonce[CF_STREAM_NONCE_LEN];
    char url[128], auth[2048];
    snprintf(url, sizeof url, "%s/v1/workers/key", g->as_url);
    snprintf(auth, sizeof auth, "Bearer %s", g->grant.token);
    const cf_http_header headers[] = {{"Authorization", auth}, {"Content-Type", "application/json"}, {NULL, NULL}};
    CF_GUARD_OUT(cf_random(nonce, sizeof nonce)); /* fresh per fetch: the answer is signed over it */
    CF_GUARD_OUT(cf_key_fetch_build(key_id, nonce, &req));
    cf_http_client_config cfg = {.allow_plain_http = true};
    cf_http_call_opts o = {
        .method = "POST", .url = url, .headers = headers, .body = cf_buf_slice(&req), .total_timeout_ms = 5000};
    long status = 0;
    CF_GUARD_OUT(cf_http_fetch(&cfg, &o, &status, &body));
    CF_ENSURE_MSG_OUT(status == 200, CF_E_UNKNOWN_KEY, "the AS has no such key for this worker");
    CF_GUARD_OUT(
        cf_key_event_open(g->as_id.signing_key, g->grant.worker_id, nonce, &g->kp, "key", cf_buf_slice(&body), 0, &ev));
    gw_key *slot = &g->keys[g->key_next++ % 16];
    memcpy(slot->key_id, ev.key_id, sizeof slot->key_id);
    memcpy(slot->k, ev.k, sizeof slot->k);
    memcpy(secret, ev.k, CF_PROTO_SECRET_LEN);
out:
    cf_key_event_wipe(&ev);
    cf_buf_free(&req);
    cf_buf_free(&body);
    return result;
}

static void gw_respond(cf_http_request *req, int status, const char *ctype, cf_slice body, const cf_http_header *h)
{
    if (cf_is_error(cf_http_respond(req, status, ctype, body, h))) {
        cf_http_stream_end(req);
    }
}

static void gw_plain_error(cf_http_request *req, cf_error_code code, const char *message)
{
    cf_buf b;
    cf_buf_init(&b, 0);
    assert_cf_ok(cf_proto_error_body(code, message, &b));
    const cf_http_header h[] = {{CF_PROTO_HDR_PLAINTEXT, "1"},
                                {CF_PROTO_HDR_ERROR, cf_error_name(code)},
                                {CF_PROTO_HDR_VERSIONS, "1"},
                                {NULL, NULL}};
    gw_respond(req, cf_proto_error_status(code), "application/json", cf_buf_slice(&b), h);
    cf_buf_free(&b);
}

/* Change one character of the base64url ciphertext after the n-th "cf1". */
static void flip_ciphertext(cf_buf *b, int nth)
{
    uint8_t *p = b->data;
    for (int i = 0; i <= nth; i++) {
        p = memmem(p + (i ? 1 : 0), b->len - (size_t)(p - b->data) - (i ? 1 : 0), "\"cf1", 4);
        assert_non_null(p);
    }
    uint8_t *end = memchr(p + 1, '"', b->len - (size_t)(p + 1 - b->data));
    assert_non_null(end);
    end[-3] = end[-3] == 'A' ? 'B' : 'A';
}

/* Remove the SSE event that carries the final-flagged value. */
static void drop_final_event(cf_buf *b)
{
    uint8_t *f = memmem(b->data, b->len, "cf1f:", 5);
    assert_non_null(f);
    uint8_t *start = f;
    while (start > b->data && !(start[-1] == '\n' && start - 1 > b->data && start[-2] == '\n')) {
        start--;
    }
    uint8_t *end = memmem(f, b->len - (size_t)(f - b->data), "\n\n", 2);
    assert_non_null(end);
    end += 2;
    memmove(start, end, b->len - (size_t)(end - b->data));
    b->len -= (size_t)(end - start);
}

typedef struct slow_rest {
    cf_http_request *req;
    cf_buf rest;
} slow_rest;

static void slow_close(cf_http_request *req, void *arg)
{
    (void)req;
    (void)arg;
}

static void slow_send_rest(evutil_socket_t fd, short what, void *arg)
{
    slow_rest *s = arg;
    (void)fd;
    (void)what;
    if (cf_is_error(cf_http_stream_write(s->req, cf_buf_slice(&s->rest)))) {
        /* client gone */
    }
    cf_http_stream_end(s->req);
    cf_buf_free(&s->rest);
    free(s);
}

/* The big stream, written with backpressure on the gateway side too. */
typedef struct big_stream {
    cf_buf enc;
    size_t off;
} big_stream;

static void big_pump(cf_http_request *req, void *arg)
{
    big_stream *b = arg;
    while (b->off < b->enc.len && !cf_http_stream_congested(req)) {
        size_t n = b->enc.len - b->off < 65536 ? b->enc.len - b->off : 65536;
        if (cf_is_error(cf_http_stream_write(req, cf_slice_make(b->enc.data + b->off, n)))) {
            b->off = b->enc.len;
            break;
        }
        b->off += n;
    }
    if (b->off == b->enc.len) {
        cf_http_stream_end(req);
        cf_buf_free(&b->enc);
        free(b);
    }
}

static void big_close(cf_http_request *req, void *arg)
{
    big_stream *b = arg;
    cf_http_stream_end(req);
    cf_buf_free(&b->enc);
    free(b);
}

/* The plaintext of the big stream. */
static void big_plain(cf_buf *out)
{
    char pad[2001];
    memset(pad, 'x', 2000);
    pad[2000] = '\0';
    for (int i = 0; i < BIG_EVENTS; i++) {
        assert_cf_ok(cf_buf_appendf(out,
                                    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                                    "\"%05d%s\"}}]}\n\n",
                                    i, pad));
    }
    assert_cf_ok(cf_buf_append_cstr(out, "data: [DONE]\n\n"));
}

static void gw_stream(gateway_t *g, cf_http_request *req, cf_proto_session *session, fault_t fault)
{
    (void)g;
    cf_buf plain, enc;
    cf_buf_init(&plain, 0);
    cf_buf_init(&enc, 0);
    if (fault == F_BIG_STREAM) {
        big_plain(&plain);
    } else {
        plain_stream(&plain);
    }
    assert_cf_ok(cf_proto_stream_begin(session, 200));
    assert_cf_ok(cf_proto_stream_seal_feed(session, cf_buf_slice(&plain), &enc));
    assert_cf_ok(cf_proto_stream_seal_finish(session, &enc));
    if (fault == F_DROP_FINAL) {
        drop_final_event(&enc);
    } else if (fault == F_FLIP_STREAM) {
        flip_ciphertext(&enc, 2); /* the second event's first value */
    }
    static const cf_http_header h[] = {{CF_PROTO_HDR_VERSION, "1"}, {CF_PROTO_HDR_VERSIONS, "1"}, {NULL, NULL}};
    if (fault == F_BIG_STREAM) {
        big_stream *b = calloc(1, sizeof *b);
        assert_non_null(b);
        b->enc = enc; /* handed over */
        cf_buf_init(&enc, 0);
        const cf_http_stream_callbacks bcbs = {.on_writable = big_pump, .on_close = big_close};
        assert_cf_ok(cf_http_stream_start(req, 200, "text/event-stream", h, &bcbs, b));
        big_pump(req, b);
        cf_buf_free(&plain);
        return;
    }
    if (fault == F_CUT_AFTER_DONE || fault == F_CUT_BEFORE_FINAL) {
        /* A transport error at the very end: the declared length is never
         * reached and the connection closes. */
        if (fault == F_CUT_BEFORE_FINAL) {
            drop_final_event(&enc);
        }
        char len[32];
        snprintf(len, sizeof len, "%zu", enc.len + 64);
        const cf_http_header hc[] = {{CF_PROTO_HDR_VERSION, "1"}, {"Content-Length", len}, {"Connection", "close"},
                                     {NULL, NULL}};
        gw_respond(req, 200, "text/event-stream", cf_buf_slice(&enc), hc);
        cf_buf_free(&plain);
        cf_buf_free(&enc);
        return;
    }
    const cf_http_stream_callbacks cbs = {.on_close = slow_close};
    assert_cf_ok(cf_http_stream_start(req, 200, "text/event-stream", h, &cbs, NULL));
    if (fault == F_SLOW_STREAM) {
        uint8_t *cut = memmem(enc.data, enc.len, "\n\n", 2);
        assert_non_null(cut);
        size_t first = (size_t)(cut + 2 - enc.data);
        assert_cf_ok(cf_http_stream_write(req, cf_slice_make(enc.data, first)));
        slow_rest *s = calloc(1, sizeof *s);
        assert_non_null(s);
        s->req = req;
        cf_buf_init(&s->rest, 0);
        assert_cf_ok(cf_buf_append(&s->rest, enc.data + first, enc.len - first));
        struct timeval tv = {0, 400000};
        assert_int_equal(event_base_once(g->base, -1, EV_TIMEOUT, slow_send_rest, s, &tv), 0);
    } else {
        assert_cf_ok(cf_http_stream_write(req, cf_buf_slice(&enc)));
        cf_http_stream_end(req);
    }
    cf_buf_free(&plain);
    cf_buf_free(&enc);
}

static void gw_encrypted(cf_http_request *req, void *arg)
{
    gateway_t *g = arg;
    const cf_proto_endpoint *ep = NULL;
    cf_slice body = cf_http_request_body(req);
    assert_cf_ok(cf_proto_endpoint_by_path(cf_slice_cstr(cf_http_request_method(req)),
                                           cf_slice_cstr(cf_http_request_path(req)), &ep));
    const char *auth = cf_http_request_header(req, "Authorization");
    pthread_mutex_lock(&g->mu);
    g->requests++;
    cf_buf_reset(&g->last_wire);
    assert_cf_ok(cf_buf_append_slice(&g->last_wire, body));
    snprintf(g->last_auth, sizeof g->last_auth, "%s", auth ? auth : "");
    fault_t fault = g->fault;
    if (fault == F_UNKNOWN_KEY_ONCE) {
        g->fault = F_NONE;
    }
    pthread_mutex_unlock(&g->mu);

    if (fault == F_UNKNOWN_KEY_ONCE) {
        gw_plain_error(req, CF_E_UNKNOWN_KEY, "unknown key id");
        return;
    }
    if (fault == F_PLAINTEXT_200) {
        gw_respond(req, 200, "application/json", cf_slice_cstr(chat_reply), NULL);
        return;
    }
    if (fault == F_PLAIN_200_MARKED) {
        static const cf_http_header h[] = {
            {CF_PROTO_HDR_VERSION, "1"}, {CF_PROTO_HDR_PLAINTEXT, "1"}, {NULL, NULL}};
        gw_respond(req, 200, "application/json", cf_slice_cstr(chat_reply), h);
        return;
    }
    if (fault == F_PLAIN_STREAM) {
        static const cf_http_header h[] = {{CF_PROTO_HDR_VERSION, "1"}, {NULL, NULL}};
        gw_respond(req, 200, "text/event-stream",
                   cf_slice_cstr("data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"" REPLY
                                 "\"}}]}\n\ndata: [DONE]\n\n"),
                   h);
        return;
    }
    if (fault == F_PLAINTEXT_500) {
        static const cf_http_header h[] = {
            {CF_PROTO_HDR_PLAINTEXT, "1"}, {CF_PROTO_HDR_ERROR, "server_error"}, {NULL, NULL}};
        gw_respond(req, 500, "application/json",
                   cf_slice_cstr("{\"error\":{\"message\":\"backend exploded\",\"type\":\"server_error\","
                                 "\"code\":\"server_error\"}}"),
                   h);
        return;
    }
    cf_buf plain, enc;
    cf_buf_init(&plain, 0);
    cf_buf_init(&enc, 0);
    cf_proto_session *session = NULL;
    cf_proto_open_options oo = {0};
    if (cf_is_error(cf_proto_request_open(ep, body, gw_lookup, g, &oo, &plain, &session))) {
        gw_plain_error(req, cf_error_code_last(), "request refused");
        cf_buf_free(&plain);
        return;
    }
    pthread_mutex_lock(&g->mu);
    cf_buf_reset(&g->last_plain);
    assert_cf_ok(cf_buf_append_slice(&g->last_plain, cf_buf_slice(&plain)));
    pthread_mutex_unlock(&g->mu);
    cf_json_type st = CF_JSON_NULL;
    cf_slice sv;
    bool stream =
        cf_is_ok(cf_json_lookup(cf_buf_slice(&plain), NULL, cf_slice_cstr("stream"), &sv, &st)) && st == CF_JSON_TRUE;
    if (stream) {
        gw_stream(g, req, session, fault);
    } else {
        const char *reply = strcmp(ep->name, "embeddings") == 0 ? embed_reply : chat_reply;
        assert_cf_ok(cf_proto_response_seal(session, 200, cf_slice_cstr(reply), &enc));
        if (fault == F_FLIP_JSON) {
            flip_ciphertext(&enc, 0);
        }
        static const cf_http_header h[] = {{CF_PROTO_HDR_VERSION, "1"}, {CF_PROTO_HDR_VERSIONS, "1"}, {NULL, NULL}};
        gw_respond(req, fault == F_STATUS_CHANGED ? 201 : 200, "application/json", cf_buf_slice(&enc), h);
    }
    cf_proto_session_free(session);
    cf_buf_free(&plain);
    cf_buf_free(&enc);
}

static void gw_models(cf_http_request *req, void *arg)
{
    gateway_t *g = arg;
    pthread_mutex_lock(&g->mu);
    g->requests++;
    pthread_mutex_unlock(&g->mu);
    gw_respond(req, 200, "application/json",
               cf_slice_cstr("{\"object\":\"list\",\"data\":[{\"id\":\"model-a\",\"object\":\"model\"}]}"), NULL);
}

/* A forged AS: right measurement and binding, broken signature. */
static void gw_fake_attest(cf_http_request *req, void *arg)
{
    gateway_t *g = arg;
    uint8_t nonce[CF_AS_NONCE_LEN];
    cf_sim_report_params p = {.svn = 1};
    cf_buf ev, col, body;
    cf_buf_init(&ev, 0);
    cf_buf_init(&col, 0);
    cf_buf_init(&body, 0);
    assert_cf_ok(cf_as_attest_request_parse(cf_http_request_body(req), nonce));
    memcpy(p.measurement, g->as_measurement, sizeof p.measurement);
    assert_cf_ok(cf_as_report_data(nonce, cf_hpke_keypair_public(&g->fake_kp),
                                   cf_slice_make(g->fake_sign_pub, sizeof g->fake_sign_pub), g->manifest->sha256,
                                   p.report_data));
    assert_cf_ok(cf_sim_sign_report(g->sim_dir, &p, &ev, &col));
    ev.data[0xA0 + 3] ^= 0x01; /* signature r */
    assert_cf_ok(cf_as_attest_response_build(
        CF_PLATFORM_SIM, cf_buf_slice(&ev), cf_buf_slice(&col), cf_hpke_keypair_public(&g->fake_kp),
        cf_slice_make(g->fake_sign_pub, sizeof g->fake_sign_pub), cf_buf_slice(&g->manifest->bytes), &body));
    gw_respond(req, 200, "application/json", cf_buf_slice(&body), NULL);
    cf_buf_free(&ev);
    cf_buf_free(&col);
    cf_buf_free(&body);
}

static void *gw_thread(void *arg)
{
    gateway_t *g = arg;
    event_base_loop(g->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* Join the AS as a worker (challenge, sim evidence of this executable). */
static void gw_join(gateway_t *g)
{
    cf_http_client_config cfg = {.allow_plain_http = true};
    char url[128];
    long status = 0;
    cf_buf body, req, ev, col;
    cf_buf_init(&body, 0);
    cf_buf_init(&req, 0);
    cf_buf_init(&ev, 0);
    cf_buf_init(&col, 0);
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &g->kp));
    snprintf(url, sizeof url, "%s/v1/workers/challenge", g->as_url);
    cf_http_call_opts o = {.method = "POST", .url = url, .total_timeout_ms = 5000};
    assert_cf_ok(cf_http_fetch(&cfg, &o, &status, &body));
    assert_int_equal(status, 200);
    uint8_t nonce[CF_AS_NONCE_LEN], rd[CF_REPORT_DATA_LEN];
    int64_t exp;
    assert_cf_ok(cf_worker_challenge_parse(cf_buf_slice(&body), nonce, &exp));
    assert_cf_ok(cf_worker_report_data(nonce, cf_hpke_keypair_public(&g->kp), rd));
    cf_attester_config ac = {.platform = CF_PLATFORM_SIM, .sim_dir = g->sim_dir};
    assert_cf_ok(cf_attest_collect(&ac, rd, &ev, &col));
    assert_cf_ok(cf_worker_attest_request_build(CF_PLATFORM_SIM, nonce, cf_hpke_keypair_public(&g->kp),
                                                cf_buf_slice(&ev), cf_buf_slice(&col), &req));
    snprintf(url, sizeof url, "%s/v1/workers/attest", g->as_url);
    static const cf_http_header h[] = {{"Content-Type", "application/json"}, {NULL, NULL}};
    o = (cf_http_call_opts){
        .method = "POST", .url = url, .headers = h, .body = cf_buf_slice(&req), .total_timeout_ms = 5000};
    cf_buf_reset(&body);
    assert_cf_ok(cf_http_fetch(&cfg, &o, &status, &body));
    if (status != 200) {
        fail_msg("worker join refused: %ld %.*s", status, (int)body.len, (const char *)body.data);
    }
    assert_cf_ok(cf_worker_attest_response_parse(cf_buf_slice(&body), &g->grant));
    cf_buf_free(&body);
    cf_buf_free(&req);
    cf_buf_free(&ev);
    cf_buf_free(&col);
}

static void gw_start(gateway_t *g)
{
    pthread_mutex_init(&g->mu, NULL);
    cf_buf_init(&g->last_wire, 0);
    cf_buf_init(&g->last_plain, 0);
    g->started = true;
    g->base = event_base_new();
    assert_non_null(g->base);
    cf_http_server_config sc = {.port = 0, .name = "gateway", .max_body_size = 16 * 1024 * 1024};
    assert_cf_ok(cf_http_server_new(g->base, &sc, &g->server));
    for (size_t i = 0; cf_proto_endpoints[i] != NULL; i++) {
        const cf_proto_endpoint *ep = cf_proto_endpoints[i];
        assert_cf_ok(
            cf_http_server_route(g->server, ep->method, ep->path, ep->encrypted ? gw_encrypted : gw_models, g));
    }
    assert_cf_ok(cf_http_server_route(g->server, "POST", "/v1/attest", gw_fake_attest, g));
    g->port = cf_http_server_port(g->server);
    /* HTTPS: a certificate for 127.0.0.1 from the openssl tool. */
    char cmd[2000];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -days 2 -keyout %s -out %s >/dev/null 2>&1",
             g->tls_key, g->tls_cert);
    assert_int_equal(system(cmd), 0);
    cf_http_server_config tc = {.port = 0,
                                .name = "gateway-tls",
                                .max_body_size = 16 * 1024 * 1024,
                                .tls_cert_file = g->tls_cert,
                                .tls_key_file = g->tls_key};
    assert_cf_ok(cf_http_server_new(g->base, &tc, &g->tls_server));
    for (size_t i = 0; cf_proto_endpoints[i] != NULL; i++) {
        const cf_proto_endpoint *ep = cf_proto_endpoints[i];
        assert_cf_ok(
            cf_http_server_route(g->tls_server, ep->method, ep->path, ep->encrypted ? gw_encrypted : gw_models, g));
    }
    g->tls_port = cf_http_server_port(g->tls_server);
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &g->fake_kp));
    EVP_PKEY *sk = NULL;
    assert_cf_ok(cf_ed25519_keygen(&sk));
    assert_cf_ok(cf_ed25519_public_raw(sk, g->fake_sign_pub));
    EVP_PKEY_free(sk);
    assert_int_equal(pthread_create(&g->thread, NULL, gw_thread, g), 0);
    g->thread_running = true;
}

/* Also for a gateway that gw_join/gw_start left half-made (failed setup). */
static void gw_stop(gateway_t *g)
{
    if (g->thread_running) {
        event_base_loopbreak(g->base);
        pthread_join(g->thread, NULL);
        g->thread_running = false;
    }
    cf_http_server_free(g->server);
    cf_http_server_free(g->tls_server);
    if (g->base != NULL) {
        event_base_free(g->base);
    }
    cf_as_identity_free(&g->as_id);
    cf_hpke_keypair_wipe(&g->kp);
    cf_hpke_keypair_wipe(&g->fake_kp);
    cf_worker_grant_free(&g->grant);
    cf_wipe(g->keys, sizeof g->keys);
    if (g->started) {
        cf_buf_free(&g->last_wire);
        cf_buf_free(&g->last_plain);
        pthread_mutex_destroy(&g->mu);
        g->started = false;
    }
}

static void gw_set_fault(gateway_t *g, fault_t f)
{
    pthread_mutex_lock(&g->mu);
    g->fault = f;
    pthread_mutex_unlock(&g->mu);
}

static int gw_requests(gateway_t *g)
{
    pthread_mutex_lock(&g->mu);
    int n = g->requests;
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* ---- the app's HTTP ------------------------------------------------------------------ */

typedef struct resp {
    long status;
    cf_buf body;
    char unauth[16]; /* Confide-Unauthenticated */
    double first_byte_s;
    double total_s;
} resp_t;

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    return cf_is_ok(cf_buf_append(&r->body, p, size * n)) ? size * n : 0;
}

static size_t header_cb(char *p, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t len = size * n;
    static const char name[] = "Confide-Unauthenticated:";
    if (len > sizeof name && strncasecmp(p, name, sizeof name - 1) == 0) {
        size_t skip = sizeof name - 1;
        while (skip < len && p[skip] == ' ') {
            skip++;
        }
        snprintf(r->unauth, sizeof r->unauth, "%.*s", (int)(len - skip), p + skip);
        char *nl = strpbrk(r->unauth, "\r\n");
        if (nl) {
            *nl = '\0';
        }
    }
    return len;
}

static long g_recv_speed; /* bytes/s cap for the next request (0 = none): a slow app */

static void http(int port, const char *method, const char *path, const char *body, const char *auth, resp_t *out)
{
    char url[256], hdr[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    memset(out, 0, sizeof *out);
    cf_buf_init(&out->body, 0);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (auth != NULL) {
        snprintf(hdr, sizeof hdr, "Authorization: %s", auth);
        h = curl_slist_append(h, hdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (g_recv_speed > 0) {
        curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)g_recv_speed);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        fail_msg("curl %s %s: %s", method, path, curl_easy_strerror(rc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(c, CURLINFO_STARTTRANSFER_TIME, &out->first_byte_s);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &out->total_s);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static const char *json_error_field(const resp_t *r, const char *field)
{
    static char v[600];
    json_t *j = json_loadb((const char *)r->body.data, r->body.len, 0, NULL);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), field));
    snprintf(v, sizeof v, "%s", c ? c : "(none)");
    json_decref(j);
    return v;
}

static void expect_error(resp_t *r, long status, const char *code)
{
    if (r->status != status || strcmp(json_error_field(r, "code"), code) != 0) {
        fail_msg("expected %ld %s, got %ld %.*s", status, code, r->status, (int)r->body.len,
                 (const char *)r->body.data);
    }
}

static bool body_has(const resp_t *r, const char *s)
{
    return r->body.len > 0 && memmem(r->body.data, r->body.len, s, strlen(s)) != NULL;
}

/* ---- fixture -------------------------------------------------------------------------- */

typedef struct env {
    char *tmp;
    char sim_dir[512];
    char other_sim_dir[512];
    char manifest[512];       /* the pinned one */
    char other_manifest[512]; /* same policies, another name: another hash */
    char bad_manifest[512];   /* AS measurement that confide-as does not have */
    char api_key_file[512];
    proc_t as;       /* enforces `manifest` */
    proc_t as_other; /* enforces `other_manifest` */
    proc_t as_bad;   /* enforces `bad_manifest` (self-check off) */
    proc_t as_root;  /* `manifest`, but evidence from another sim root (self-check off) */
    gateway_t gw;
    proc_t proxy; /* the main proxy */
} env_t;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_manifest(const char *path, const char *name, const char *root, const char *as_m, const char *worker_m)
{
    char *text = NULL;
    assert_true(asprintf(&text,
                         "{\"version\": 1, \"name\": \"%s\", \"accepted_roots\": [\"%s\"],\n"
                         " \"as\": {\"platform\": \"sim\", \"policy\": {\"measurements\": [\"%s\"]}},\n"
                         " \"workers\": [{\"name\": \"main\", \"platform\": \"sim\", \"policy\": {\"measurements\": "
                         "[\"%s\"]}, \"models\": [\"model-a\"]}],\n"
                         " \"keys\": {\"ttl_min_s\": 1, \"ttl_max_s\": 3600}}\n",
                         name, root, as_m, worker_m) > 0);
    write_file(path, text);
    free(text);
}

static void start_as(env_t *e, proc_t *p, const char *name, const char *sim_dir, const char *manifest, bool self_check)
{
    char bin[600], log[600];
    snprintf(bin, sizeof bin, "%s/bin/confide-as", build_dir());
    snprintf(log, sizeof log, "%s/%s.log", e->tmp, name);
    const char *argv[] = {bin,          "--platform", "sim",    "--sim-dir", sim_dir,
                          "--manifest", manifest,     "--port", "0",         self_check ? NULL : "--self-check=false",
                          NULL};
    start_proc(p, log, argv, "event=as_started");
}

static void start_proxy(env_t *e, proc_t *p, const char *name, int as_port, const char *manifest_flag,
                        const char *manifest_value, const char *const *extra)
{
    char bin[600], log[600], as_url[64], upstream[64], key[600];
    snprintf(bin, sizeof bin, "%s/bin/confide-proxy", build_dir());
    snprintf(log, sizeof log, "%s/%s.log", e->tmp, name);
    snprintf(as_url, sizeof as_url, "http://127.0.0.1:%d", as_port);
    snprintf(upstream, sizeof upstream, "http://127.0.0.1:%u/", e->gw.port);
    snprintf(key, sizeof key, "@%s", e->api_key_file);
    const char *argv[40] = {bin,      "--as",   as_url, manifest_flag,        manifest_value, "--upstream",
                            upstream, "--port", "0",    "--allow-plain-http", "--api-key",    key};
    size_t n = 12;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    start_proc(p, log, argv, "event=proxy_started");
}

static int setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    evthread_use_pthreads();
    atexit(kill_all);
    cf_log_set_level(CF_LOG_WARN); /* the gateway's request log */
    env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    /* Published at once: if any step below fails, cmocka still runs the
     * group teardown, which must stop what was started. */
    *state = e;
    e->tmp = cf_test_tmpdir();
    snprintf(e->sim_dir, sizeof e->sim_dir, "%s/sim", e->tmp);
    snprintf(e->other_sim_dir, sizeof e->other_sim_dir, "%s/sim-other", e->tmp);
    cf_sim_init_options opt = {.svn = 1, .now = (int64_t)time(NULL)};
    assert_cf_ok(cf_sim_init(e->sim_dir, &opt));
    assert_cf_ok(cf_sim_init(e->other_sim_dir, &opt));
    char fp[65], as_m[97], me_m[97], bin[600];
    uint8_t m[48];
    assert_cf_ok(cf_sim_root_fingerprint(e->sim_dir, fp));
    snprintf(bin, sizeof bin, "%s/bin/confide-as", build_dir());
    assert_cf_ok(cf_sim_measure_file(bin, m));
    memcpy(e->gw.as_measurement, m, sizeof m);
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(m, 48), as_m, sizeof as_m));
    assert_cf_ok(cf_sim_measure_file("/proc/self/exe", m));
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(m, 48), me_m, sizeof me_m));
    snprintf(e->manifest, sizeof e->manifest, "%s/manifest.json", e->tmp);
    snprintf(e->other_manifest, sizeof e->other_manifest, "%s/other.json", e->tmp);
    snprintf(e->bad_manifest, sizeof e->bad_manifest, "%s/bad.json", e->tmp);
    write_manifest(e->manifest, "itest-proxy", fp, as_m, me_m);
    write_manifest(e->other_manifest, "itest-proxy-other", fp, as_m, me_m);
    char bad_m[97];
    memset(bad_m, 'a', 96);
    bad_m[96] = '\0';
    write_manifest(e->bad_manifest, "itest-proxy-bad", fp, bad_m, me_m);
    snprintf(e->api_key_file, sizeof e->api_key_file, "%s/api-key", e->tmp);
    write_file(e->api_key_file, API_KEY "\n");

    start_as(e, &e->as, "as", e->sim_dir, e->manifest, true);
    start_as(e, &e->as_other, "as_other", e->sim_dir, e->other_manifest, true);
    start_as(e, &e->as_bad, "as_bad", e->sim_dir, e->bad_manifest, false);
    start_as(e, &e->as_root, "as_root", e->other_sim_dir, e->manifest, false);

    /* The gateway joins the real AS as a worker. */
    gateway_t *g = &e->gw;
    snprintf(g->as_url, sizeof g->as_url, "http://127.0.0.1:%d", e->as.port);
    snprintf(g->sim_dir, sizeof g->sim_dir, "%s", e->sim_dir);
    snprintf(g->tls_cert, sizeof g->tls_cert, "%s/gw-cert.pem", e->tmp);
    snprintf(g->tls_key, sizeof g->tls_key, "%s/gw-key.pem", e->tmp);
    assert_cf_ok(cf_manifest_load(e->manifest, &g->manifest));
    cf_http_client_config cfg = {.allow_plain_http = true};
    assert_cf_ok(cf_as_attest_fetch(&cfg, g->as_url, 5000, g->manifest->sha256, (int64_t)time(NULL), &g->as_id));
    gw_join(g);
    gw_start(g);

    start_proxy(e, &e->proxy, "proxy", e->as.port, "--manifest", e->manifest, NULL);
    wait_log(&e->proxy, "event=key_uploaded", 10000);
    *state = e;
    return 0;
}

/* Tolerates a setup that failed part-way (NULL or partial state): every
 * process is stopped and everything freed before the result is reported. */
static int teardown(void **state)
{
    env_t *e = *state;
    if (e == NULL) {
        kill_all();
        curl_global_cleanup();
        return 0;
    }
    bool clean = stop_proc_quietly(&e->proxy, true);
    gw_stop(&e->gw);
    cf_manifest_free(e->gw.manifest);
    clean &= stop_proc_quietly(&e->as, true);
    clean &= stop_proc_quietly(&e->as_other, true);
    clean &= stop_proc_quietly(&e->as_bad, true);
    clean &= stop_proc_quietly(&e->as_root, true);
    kill_all();
    if (getenv("CONFIDE_KEEP_TMP") == NULL) {
        cf_test_rmrf(e->tmp);
    }
    free(e->tmp);
    free(e);
    *state = NULL;
    curl_global_cleanup();
    if (!clean) {
        fprintf(stderr, "teardown: a daemon did not end cleanly with status 0 on SIGTERM\n");
        return -1;
    }
    return 0;
}

/* ---- tests: the request path ------------------------------------------------------------- */

static const char chat_body[] = "{\"model\":\"model-a\",\"messages\":[{\"role\":\"user\",\"content\":\"" PROMPT
                                "\"}],\"temperature\":0.5,\"max_tokens\":16}";
static const char stream_body[] = "{\"model\":\"model-a\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                                  "\"content\":\"" PROMPT "\"}]}";

/* The decrypted request the gateway saw: cache_salt value (or "" if none). */
static void last_cache_salt(gateway_t *g, char out[128])
{
    pthread_mutex_lock(&g->mu);
    cf_slice v;
    cf_json_type t;
    out[0] = '\0';
    if (cf_is_ok(cf_json_lookup(cf_buf_slice(&g->last_plain), NULL, cf_slice_cstr("cache_salt"), &v, &t))) {
        snprintf(out, 128, "%.*s", (int)v.len, (const char *)v.ptr);
    }
    pthread_mutex_unlock(&g->mu);
}

static void test_chat_roundtrip(void **state)
{
    env_t *e = *state;
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    if (r.status != 200) {
        fail_msg("chat: %ld %.*s", r.status, (int)r.body.len, (const char *)r.body.data);
    }
    /* Exactly the inference server's bytes. */
    assert_int_equal(r.body.len, strlen(chat_reply));
    assert_memory_equal(r.body.data, chat_reply, r.body.len);
    cf_buf_free(&r.body);
    gateway_t *g = &e->gw;
    pthread_mutex_lock(&g->mu);
    /* On the wire: no prompt, the routing fields in clear, the provider key. */
    assert_null(memmem(g->last_wire.data, g->last_wire.len, PROMPT, strlen(PROMPT)));
    assert_non_null(memmem(g->last_wire.data, g->last_wire.len, "\"model\":\"model-a\"", 17));
    assert_non_null(memmem(g->last_wire.data, g->last_wire.len, "\"messages\":\"cf1n:", 17));
    assert_string_equal(g->last_auth, "Bearer " API_KEY);
    /* Decrypted: the app's body byte for byte plus a cache_salt. */
    assert_non_null(memmem(g->last_plain.data, g->last_plain.len, PROMPT, strlen(PROMPT)));
    assert_non_null(memmem(g->last_plain.data, g->last_plain.len, "\"temperature\":0.5", 17));
    pthread_mutex_unlock(&g->mu);
    char salt1[128], salt2[128];
    last_cache_salt(g, salt1);
    assert_int_equal(strlen(salt1), 45); /* quotes + 43 base64url characters (32 bytes) */
    http(e->proxy.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    last_cache_salt(g, salt2);
    assert_string_not_equal(salt1, salt2); /* per request by default */
    /* Round trips app -> proxy -> gateway/worker codec -> proxy -> app. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rounds = 100;
    for (int i = 0; i < rounds; i++) {
        http(e->proxy.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
        assert_int_equal(r.status, 200);
        cf_buf_free(&r.body);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("chat round trip through the proxy: %.2f ms mean over %d sequential requests\n", s * 1000 / rounds,
                  rounds);
    /* The proxy's log never holds the prompt or the reply. */
    assert_false(log_has(&e->proxy, PROMPT));
    assert_false(log_has(&e->proxy, REPLY));
    assert_false(log_has(&e->proxy, API_KEY));
}

static void test_app_authorization_and_own_cache_salt(void **state)
{
    env_t *e = *state;
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions",
         "{\"model\":\"model-a\",\"cache_salt\":\"mine\",\"messages\":[]}", "Bearer app-own-key", &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    char salt[128];
    last_cache_salt(&e->gw, salt);
    assert_string_equal(salt, "\"mine\"");
    pthread_mutex_lock(&e->gw.mu);
    assert_string_equal(e->gw.last_auth, "Bearer app-own-key");
    pthread_mutex_unlock(&e->gw.mu);
}

static void test_embeddings(void **state)
{
    env_t *e = *state;
    resp_t r;
    http(e->proxy.port, "POST", "/v1/embeddings", "{\"model\":\"model-a\",\"input\":\"" PROMPT "\"}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, strlen(embed_reply));
    assert_memory_equal(r.body.data, embed_reply, r.body.len);
    cf_buf_free(&r.body);
    char salt[128];
    last_cache_salt(&e->gw, salt);
    assert_string_equal(salt, ""); /* only chat and completions get one */
}

static void test_stream_roundtrip(void **state)
{
    env_t *e = *state;
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    assert_int_equal(r.status, 200);
    cf_buf want;
    cf_buf_init(&want, 0);
    plain_stream(&want);
    if (r.body.len != want.len || memcmp(r.body.data, want.data, want.len) != 0) {
        fail_msg("stream differs:\n%.*s", (int)r.body.len, (const char *)r.body.data);
    }
    cf_buf_free(&want);
    cf_buf_free(&r.body);
}

/* Events are relayed as they arrive, not at the end. */
static void test_stream_event_by_event(void **state)
{
    env_t *e = *state;
    gw_set_fault(&e->gw, F_SLOW_STREAM);
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    gw_set_fault(&e->gw, F_NONE);
    assert_int_equal(r.status, 200);
    assert_true(body_has(&r, "data: [DONE]"));
    /* The first event came ~400 ms before the end. */
    assert_true(r.total_s - r.first_byte_s > 0.3);
    cf_buf_free(&r.body);
}

/* A slow app: the proxy pauses the upstream instead of queueing the stream
 * (it may queue at most ~2 MiB per stream; the stream is ~16 MiB) and
 * delivers every byte, in order. */
static void test_stream_backpressure(void **state)
{
    env_t *e = *state;
    gw_set_fault(&e->gw, F_BIG_STREAM);
    g_recv_speed = 24 * 1024 * 1024;
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    g_recv_speed = 0;
    gw_set_fault(&e->gw, F_NONE);
    assert_int_equal(r.status, 200);
    cf_buf want;
    cf_buf_init(&want, 0);
    big_plain(&want);
    if (r.body.len != want.len || memcmp(r.body.data, want.data, want.len) != 0) {
        fail_msg("big stream differs: got %zu bytes, want %zu; tail: %.300s", r.body.len, want.len,
                 r.body.len > 300 ? (const char *)r.body.data + r.body.len - 300 : (const char *)r.body.data);
    }
    print_message("big stream: %zu bytes in %.2f s to a reader capped at 24 MiB/s\n", want.len, r.total_s);
    cf_buf_free(&want);
    cf_buf_free(&r.body);
}

static void test_stream_dropped_final(void **state)
{
    env_t *e = *state;
    gw_set_fault(&e->gw, F_DROP_FINAL);
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    gw_set_fault(&e->gw, F_NONE);
    assert_int_equal(r.status, 200);
    /* Every authenticated event, then an error event instead of a silent end. */
    assert_true(body_has(&r, REPLY));
    assert_false(body_has(&r, "data: [DONE]"));
    assert_true(body_has(&r, "data: {\"error\":{\"message\":"));
    assert_true(body_has(&r, "\"code\":\"truncated\""));
    cf_buf_free(&r.body);
}

static void test_stream_flipped_byte(void **state)
{
    env_t *e = *state;
    gw_set_fault(&e->gw, F_FLIP_STREAM);
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    gw_set_fault(&e->gw, F_NONE);
    assert_int_equal(r.status, 200);
    /* The first event authenticated and was passed; the second did not. */
    assert_true(body_has(&r, "\"role\":\"assistant\""));
    assert_false(body_has(&r, REPLY));
    assert_true(body_has(&r, "\"code\":\"auth_failed\""));
    assert_true(body_has(&r, "\"type\":\"confide_error\""));
    cf_buf_free(&r.body);
}

static void test_flipped_byte_json(void **state)
{
    env_t *e = *state;
    gw_set_fault(&e->gw, F_FLIP_JSON);
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    gw_set_fault(&e->gw, F_NONE);
    expect_error(&r, 502, "auth_failed");
    assert_false(body_has(&r, REPLY));
    cf_buf_free(&r.body);
}

static void test_plaintext_2xx_refused(void **state)
{
    env_t *e = *state;
    gw_set_fault(&e->gw, F_PLAINTEXT_200);
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    gw_set_fault(&e->gw, F_NONE);
    expect_error(&r, 502, "bad_ciphertext");
    assert_false(body_has(&r, REPLY));
    cf_buf_free(&r.body);
}

/* Every way of passing plaintext or a rewritten status off as a 2xx reply is
 * refused before a byte reaches the app (DESIGN §4.6; docs/protocol.md
 * §Errors: a 2xx with Confide-Plaintext, or whose body does not decrypt). */
static void test_plaintext_2xx_variants_refused(void **state)
{
    env_t *e = *state;
    resp_t r;
    gw_set_fault(&e->gw, F_PLAIN_200_MARKED);
    http(e->proxy.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    expect_error(&r, 502, "bad_ciphertext");
    assert_false(body_has(&r, REPLY));
    cf_buf_free(&r.body);

    gw_set_fault(&e->gw, F_PLAIN_STREAM);
    http(e->proxy.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    expect_error(&r, 502, "plaintext_field");
    assert_false(body_has(&r, REPLY));
    assert_false(body_has(&r, "[DONE]"));
    cf_buf_free(&r.body);

    gw_set_fault(&e->gw, F_STATUS_CHANGED);
    http(e->proxy.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    expect_error(&r, 502, "auth_failed");
    assert_false(body_has(&r, REPLY));
    cf_buf_free(&r.body);
    gw_set_fault(&e->gw, F_NONE);
}

/* A transport error after the final event and the [DONE] it announced cuts
 * nothing: the app gets the whole reply and no error event. Before the final
 * event it is a truncation, reported as an error event. */
static void test_stream_cut_after_or_before_final(void **state)
{
    env_t *e = *state;
    resp_t r;
    gw_set_fault(&e->gw, F_CUT_AFTER_DONE);
    http(e->proxy.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(body_has(&r, REPLY));
    assert_true(body_has(&r, "data: [DONE]"));
    assert_false(body_has(&r, "\"error\""));
    cf_buf_free(&r.body);

    gw_set_fault(&e->gw, F_CUT_BEFORE_FINAL);
    http(e->proxy.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    gw_set_fault(&e->gw, F_NONE);
    assert_int_equal(r.status, 200);
    assert_true(body_has(&r, REPLY));
    assert_false(body_has(&r, "data: [DONE]"));
    assert_true(body_has(&r, "\"code\":\"truncated\""));
    cf_buf_free(&r.body);
}

static void test_plaintext_error_marked(void **state)
{
    env_t *e = *state;
    gw_set_fault(&e->gw, F_PLAINTEXT_500);
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    gw_set_fault(&e->gw, F_NONE);
    expect_error(&r, 500, "server_error");
    assert_string_equal(r.unauth, "1");
    assert_string_equal(json_error_field(&r, "type"), "confide_unauthenticated_upstream_error");
    assert_string_equal(json_error_field(&r, "message"), "unauthenticated upstream error: backend exploded");
    cf_buf_free(&r.body);
}

static void test_unknown_key_reupload_retry(void **state)
{
    env_t *e = *state;
    char *before = read_log(&e->proxy);
    size_t uploads_before = 0;
    for (const char *p = before; (p = strstr(p, "event=key_uploaded")) != NULL; p++) {
        uploads_before++;
    }
    free(before);
    int n = gw_requests(&e->gw);
    gw_set_fault(&e->gw, F_UNKNOWN_KEY_ONCE);
    resp_t r;
    http(e->proxy.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    if (r.status != 200) {
        fail_msg("retry after unknown_key: %ld %.*s", r.status, (int)r.body.len, (const char *)r.body.data);
    }
    assert_memory_equal(r.body.data, chat_reply, strlen(chat_reply));
    cf_buf_free(&r.body);
    assert_int_equal(gw_requests(&e->gw), n + 2); /* exactly one retry */
    char *after = read_log(&e->proxy);
    size_t uploads_after = 0;
    for (const char *p = after; (p = strstr(p, "event=key_uploaded")) != NULL; p++) {
        uploads_after++;
    }
    assert_non_null(strstr(after, "event=key_unknown_upstream"));
    free(after);
    assert_int_equal(uploads_after, uploads_before + 1); /* a fresh key, freshly attested */
    http(e->proxy.port, "GET", "/metrics", NULL, NULL, &r);
    assert_true(body_has(&r, "confide_proxy_retries_total{reason=\"unknown_key\"} 1"));
    cf_buf_free(&r.body);
}

static void test_unknown_endpoints_and_bad_bodies(void **state)
{
    env_t *e = *state;
    int n = gw_requests(&e->gw);
    resp_t r;
    http(e->proxy.port, "GET", "/v1/files", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    cf_buf_free(&r.body);
    http(e->proxy.port, "POST", "/v1/audio/speech", "{\"input\":\"" PROMPT "\"}", NULL, &r);
    assert_int_equal(r.status, 404);
    cf_buf_free(&r.body);
    http(e->proxy.port, "GET", "/v1/chat/completions", NULL, NULL, &r);
    assert_int_equal(r.status, 405);
    cf_buf_free(&r.body);
    http(e->proxy.port, "POST", "/v1/chat/completions", "{\"model\":\"model-a\",\"model\":\"model-b\"}", NULL, &r);
    expect_error(&r, 400, "duplicate_key");
    cf_buf_free(&r.body);
    http(e->proxy.port, "POST", "/v1/chat/completions", "[1,2]", NULL, &r);
    expect_error(&r, 400, "malformed");
    cf_buf_free(&r.body);
    http(e->proxy.port, "POST", "/v1/chat/completions", "{\"model\":\"model-a\",\"confide\":\"x\"}", NULL, &r);
    expect_error(&r, 400, "malformed");
    cf_buf_free(&r.body);
    http(e->proxy.port, "POST", "/v1/chat/completions", "{\"model\":\"model-z\",\"messages\":[]}", NULL, &r);
    expect_error(&r, 400, "model_not_in_scope");
    cf_buf_free(&r.body);
    assert_int_equal(gw_requests(&e->gw), n); /* nothing was forwarded */
}

static void test_models_health_metrics_help(void **state)
{
    env_t *e = *state;
    resp_t r;
    http(e->proxy.port, "GET", "/v1/models", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(body_has(&r, "\"id\":\"model-a\""));
    cf_buf_free(&r.body);
    http(e->proxy.port, "GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(body_has(&r, "\"attestation\":\"verified\""));
    cf_buf_free(&r.body);
    http(e->proxy.port, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(body_has(&r, "confide_proxy_requests_total{endpoint=\"chat.completions\",outcome=\"ok\"}"));
    assert_true(body_has(&r, "confide_proxy_decrypt_failures_total{code=\"auth_failed\"}"));
    assert_true(body_has(&r, "confide_proxy_attestation_state 1"));
    assert_true(body_has(&r, "confide_proxy_upstream_seconds_bucket{endpoint=\"chat.completions\""));
    cf_buf_free(&r.body);
    char cmd[800];
    snprintf(cmd, sizeof cmd,
             "%s/bin/confide-proxy --help | grep -c -e --manifest-sha256 -e --shared-cache-salt -e --max-concurrent "
             "-e --idle-timeout-ms -e --api-key -e --ca-file",
             build_dir());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int count = 0;
    assert_int_equal(fscanf(p, "%d", &count), 1);
    pclose(p);
    assert_int_equal(count, 6);
}

/* HTTPS upstream: normal certificate checks, --ca-file trusts the gateway's
 * certificate; without it the system store does not, and nothing is sent. */
static void test_https_upstream(void **state)
{
    env_t *e = *state;
    char bin[600], log[600], as_url[64], upstream[64];
    snprintf(bin, sizeof bin, "%s/bin/confide-proxy", build_dir());
    snprintf(as_url, sizeof as_url, "http://127.0.0.1:%d", e->as.port);
    snprintf(upstream, sizeof upstream, "https://127.0.0.1:%u", e->gw.tls_port);
    for (int with_ca = 1; with_ca >= 0; with_ca--) {
        proc_t p = {0};
        snprintf(log, sizeof log, "%s/proxy_tls%d.log", e->tmp, with_ca);
        /* --allow-plain-http only for the AS URL of this test. */
        const char *argv[] = {bin,
                              "--as",
                              as_url,
                              "--manifest",
                              e->manifest,
                              "--upstream",
                              upstream,
                              "--port",
                              "0",
                              "--allow-plain-http",
                              with_ca ? "--ca-file" : NULL,
                              e->gw.tls_cert,
                              NULL};
        start_proc(&p, log, argv, "event=proxy_started");
        wait_log(&p, "event=key_uploaded", 10000);
        int n = gw_requests(&e->gw);
        resp_t r;
        http(p.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
        if (with_ca) {
            assert_int_equal(r.status, 200);
            assert_true(body_has(&r, REPLY));
            assert_int_equal(gw_requests(&e->gw), n + 1);
        } else {
            expect_error(&r, 502, "upstream_unreachable");
            assert_true(body_has(&r, "tls_failed"));
            assert_int_equal(gw_requests(&e->gw), n);
        }
        cf_buf_free(&r.body);
        stop_proc(&p);
    }
}

typedef struct bg_request {
    int port;
    resp_t r;
} bg_request;

static void *bg_stream(void *arg)
{
    bg_request *b = arg;
    http(b->port, "POST", "/v1/chat/completions", stream_body, NULL, &b->r);
    return NULL;
}

/* --max-streams: a second stream while one runs is refused, nothing sent. */
static void test_max_streams(void **state)
{
    env_t *e = *state;
    proc_t p = {0};
    static const char *const extra[] = {"--max-streams", "1", NULL};
    start_proxy(e, &p, "proxy_streams", e->as.port, "--manifest", e->manifest, extra);
    wait_log(&p, "event=key_uploaded", 10000);
    gw_set_fault(&e->gw, F_SLOW_STREAM);
    int n = gw_requests(&e->gw);
    bg_request bg = {.port = p.port};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_stream, &bg), 0);
    for (int i = 0; i < 100 && gw_requests(&e->gw) == n; i++) {
        usleep(5000);
    }
    resp_t r;
    http(p.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    expect_error(&r, 503, "too_many_streams");
    cf_buf_free(&r.body);
    http(p.port, "POST", "/v1/chat/completions", chat_body, NULL, &r); /* not a stream: fine */
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    pthread_join(t, NULL);
    gw_set_fault(&e->gw, F_NONE);
    assert_int_equal(bg.r.status, 200);
    assert_true(body_has(&bg.r, "data: [DONE]"));
    cf_buf_free(&bg.r.body);
    stop_proc(&p);
}

/* SIGTERM while a stream runs: the stream completes, then the keys are
 * deleted at the AS and the proxy exits 0. */
static void test_sigterm_lets_stream_finish(void **state)
{
    env_t *e = *state;
    proc_t p = {0};
    start_proxy(e, &p, "proxy_graceful", e->as.port, "--manifest", e->manifest, NULL);
    wait_log(&p, "event=key_uploaded", 10000);
    gw_set_fault(&e->gw, F_SLOW_STREAM);
    int n = gw_requests(&e->gw);
    bg_request bg = {.port = p.port};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_stream, &bg), 0);
    for (int i = 0; i < 200 && gw_requests(&e->gw) == n; i++) {
        usleep(5000);
    }
    kill(p.pid, SIGTERM);
    pthread_join(t, NULL);
    gw_set_fault(&e->gw, F_NONE);
    assert_int_equal(bg.r.status, 200);
    assert_true(body_has(&bg.r, REPLY));
    assert_true(body_has(&bg.r, "data: [DONE]"));
    cf_buf_free(&bg.r.body);
    stop_proc_signal(&p, false); /* already stopping: it must exit 0 by itself */
    assert_true(log_has(&p, "event=shutdown_started"));
    assert_true(log_has(&p, "event=key_deleted"));
}

/* A pinned shared salt reaches the inference server on every request. */
static void test_shared_cache_salt(void **state)
{
    env_t *e = *state;
    proc_t p = {0};
    static const char *const extra[] = {"--cache-salt", "team-salt-1", NULL};
    start_proxy(e, &p, "proxy_salt", e->as.port, "--manifest", e->manifest, extra);
    wait_log(&p, "event=key_uploaded", 10000);
    char salt[128];
    for (int i = 0; i < 2; i++) {
        resp_t r;
        http(p.port, "POST", "/v1/completions", "{\"model\":\"model-a\",\"prompt\":\"" PROMPT "\"}", NULL, &r);
        assert_int_equal(r.status, 200);
        cf_buf_free(&r.body);
        last_cache_salt(&e->gw, salt);
        assert_string_equal(salt, "\"team-salt-1\"");
    }
    stop_proc(&p);
}

static void test_rotation(void **state)
{
    env_t *e = *state;
    proc_t p = {0};
    static const char *const extra[] = {"--key-ttl", "4", "--rotate-before", "2", NULL};
    start_proxy(e, &p, "proxy_rotate", e->as.port, "--manifest", e->manifest, extra);
    wait_log(&p, "event=key_uploaded", 10000);
    resp_t r;
    http(p.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    wait_log(&p, "event=key_rotated", 8000);
    wait_log(&p, "event=key_deleted", 4000); /* the old key, once unused */
    http(p.port, "POST", "/v1/chat/completions", stream_body, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(body_has(&r, "data: [DONE]"));
    cf_buf_free(&r.body);
    stop_proc(&p);
}

/* ---- tests: refusing an AS that does not prove the pinned manifest -------------------------- */

/* The proxy must log the precise reason, answer /healthz and apps with 503
 * and that reason, and send nothing upstream. */
static void expect_refused(env_t *e, const char *name, int as_port, const char *manifest_flag,
                           const char *manifest_value, const char *err, const char *detail)
{
    int n = gw_requests(&e->gw);
    proc_t p = {0};
    start_proxy(e, &p, name, as_port, manifest_flag, manifest_value, NULL);
    char needle[200];
    snprintf(needle, sizeof needle, "event=attestation_failed");
    wait_log(&p, needle, 10000);
    snprintf(needle, sizeof needle, "err=%s", err);
    assert_true(log_has(&p, needle));
    if (!log_has(&p, detail)) {
        char *log = read_log(&p);
        fail_msg("'%s' not in the log:\n%s", detail, log);
    }
    resp_t r;
    http(p.port, "GET", "/healthz", NULL, NULL, &r);
    expect_error(&r, 503, "attestation_failed");
    assert_true(body_has(&r, detail));
    cf_buf_free(&r.body);
    http(p.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    expect_error(&r, 503, "attestation_failed");
    assert_true(body_has(&r, detail));
    cf_buf_free(&r.body);
    http(p.port, "GET", "/v1/models", NULL, NULL, &r);
    expect_error(&r, 503, "attestation_failed");
    cf_buf_free(&r.body);
    assert_int_equal(gw_requests(&e->gw), n);
    assert_false(log_has(&p, "event=key_uploaded"));
    stop_proc(&p);
}

static void test_refuse_other_manifest(void **state)
{
    env_t *e = *state;
    expect_refused(e, "proxy_other_manifest", e->as_other.port, "--manifest", e->manifest, "policy_violation",
                   "the AS enforces a manifest other than the pinned one");
}

static void test_refuse_pinned_hash_mismatch(void **state)
{
    env_t *e = *state;
    char hex[65];
    memset(hex, '0', 64);
    hex[64] = '\0';
    expect_refused(e, "proxy_other_hash", e->as.port, "--manifest-sha256", hex, "policy_violation",
                   "the AS enforces a manifest other than the pinned one");
}

static void test_refuse_wrong_measurement(void **state)
{
    env_t *e = *state;
    /* Pin the manifest the AS enforces; its AS policy names another binary. */
    expect_refused(e, "proxy_wrong_measurement", e->as_bad.port, "--manifest", e->bad_manifest, "policy_violation",
                   "measurement");
}

static void test_refuse_other_root(void **state)
{
    env_t *e = *state;
    expect_refused(e, "proxy_other_root", e->as_root.port, "--manifest", e->manifest, "certificate_invalid",
                   "untrusted root");
}

static void test_refuse_forged_report(void **state)
{
    env_t *e = *state;
    expect_refused(e, "proxy_forged", e->gw.port, "--manifest", e->manifest, "bad_signature", "signature");
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* The AS is down at start: the proxy says so, backs off, and recovers by
 * itself once the AS is up. */
static void test_as_down_then_up(void **state)
{
    env_t *e = *state;
    int port = free_port();
    proc_t p = {0}, as = {0};
    start_proxy(e, &p, "proxy_as_down", port, "--manifest", e->manifest, NULL);
    wait_log(&p, "err=io_error detail=\"AS unreachable: connect_failed\"", 5000);
    resp_t r;
    http(p.port, "POST", "/v1/chat/completions", chat_body, NULL, &r);
    expect_error(&r, 503, "attestation_failed");
    assert_true(body_has(&r, "AS unreachable"));
    cf_buf_free(&r.body);
    char bin[600], log[600], port_text[16];
    snprintf(bin, sizeof bin, "%s/bin/confide-as", build_dir());
    snprintf(log, sizeof log, "%s/as_late.log", e->tmp);
    snprintf(port_text, sizeof port_text, "%d", port);
    const char *argv[] = {bin,          "--platform", "sim",    "--sim-dir", e->sim_dir,
                          "--manifest", e->manifest,  "--port", port_text,   NULL};
    start_proc(&as, log, argv, "event=as_started");
    wait_log(&p, "event=key_uploaded", 10000);
    http(p.port, "GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    stop_proc(&p);
    stop_proc(&as);
}

/* Bad configurations stop the proxy at once with exit status 2. */
static void test_refuse_bad_config(void **state)
{
    env_t *e = *state;
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "%s/bin/confide-proxy --as http://127.0.0.1:1 --manifest %s --upstream http://127.0.0.1:1 "
             "--port 0 2>&1",
             build_dir(), e->manifest);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[2048] = "";
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    assert_int_equal(WEXITSTATUS(status), 2);
    assert_non_null(strstr(out, "--allow-plain-http"));
    snprintf(cmd, sizeof cmd,
             "%s/bin/confide-proxy --as https://127.0.0.1:1 --upstream https://127.0.0.1:1 --port 0 2>&1", build_dir());
    p = popen(cmd, "r");
    assert_non_null(p);
    got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    status = pclose(p);
    assert_int_equal(WEXITSTATUS(status), 2);
    assert_non_null(strstr(out, "exactly one of --manifest"));
}

/* ---- confide attest ------------------------------------------------------------------------ */

static int run_cmd(const char *cmd, char *out, size_t len)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, len - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    return WEXITSTATUS(status);
}

static void test_confide_attest(void **state)
{
    env_t *e = *state;
    char cmd[1200], out[8192];
    snprintf(cmd, sizeof cmd, "%s/bin/confide attest --as http://127.0.0.1:%d --manifest %s --allow-plain-http 2>&1",
             build_dir(), e->as.port, e->manifest);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "verified: attestation service"));
    assert_non_null(strstr(out, "platform                 sim"));
    char hex[97];
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(e->gw.as_measurement, 48), hex, sizeof hex));
    assert_non_null(strstr(out, hex));
    assert_non_null(strstr(out, e->gw.manifest->sha256_hex));
    assert_non_null(strstr(out, "as_signing_key_sha256"));
    snprintf(cmd, sizeof cmd, "%s/bin/confide attest --as http://127.0.0.1:%d --manifest %s --allow-plain-http 2>&1",
             build_dir(), e->as_other.port, e->manifest);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "confide: policy_violation"));
    snprintf(cmd, sizeof cmd,
             "%s/bin/confide attest --as http://127.0.0.1:%d --manifest %s --allow-plain-http --json 2>/dev/null",
             build_dir(), e->as_root.port, e->manifest);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "\"error\":\"certificate_invalid\""));
    /* --at before the sim certificates were valid. */
    snprintf(
        cmd, sizeof cmd,
        "%s/bin/confide attest --as http://127.0.0.1:%d --manifest %s --allow-plain-http --at 2000-01-01T00:00:00Z "
        "2>&1",
        build_dir(), e->as.port, e->manifest);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 1);
    snprintf(cmd, sizeof cmd, "%s/bin/confide attest --as http://127.0.0.1:%d 2>&1", build_dir(), e->as.port);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 2);
}

/* Last: SIGTERM ends the main proxy cleanly and deletes its keys at the AS. */
static void test_sigterm_deletes_keys(void **state)
{
    env_t *e = *state;
    stop_proc(&e->proxy);
    assert_true(log_has(&e->proxy, "event=key_deleted"));
    assert_true(log_has(&e->proxy, "event=proxy_stopped"));
}

/* ---- the real chain: proxy -> confide-worker -> inference server ---------------------------- */

/* The real confide-worker (branch `worker`) in front of the fault-injection
 * backend (tests/fake-backend, node) on a UNIX socket, with the real AS.
 * Runs when the worker binary exists ($CONFIDE_WORKER_BIN or
 * $CONFIDE_BUILD/bin/confide-worker); otherwise every test of this group
 * reports SKIPPED loudly. */
typedef struct chain {
    char *tmp;
    char sim_dir[512];
    char manifest[512];
    char socket[512];
    proc_t as, backend, worker, proxy;
} chain_t;

static const char *worker_bin(void)
{
    static char path[600];
    const char *env = getenv("CONFIDE_WORKER_BIN");
    snprintf(path, sizeof path, "%s", env && env[0] ? env : "");
    if (path[0] == '\0') {
        snprintf(path, sizeof path, "%s/bin/confide-worker", build_dir());
    }
    return access(path, X_OK) == 0 ? path : NULL;
}

static int chain_setup(void **state)
{
    *state = NULL;
    const char *wbin = worker_bin();
    if (wbin == NULL || access("tests/fake-backend/server.mjs", R_OK) != 0) {
        fprintf(stderr, "\n*** itest_proxy: confide-worker or the fake backend is missing: the real-chain tests are "
                        "SKIPPED (set CONFIDE_WORKER_BIN) ***\n\n");
        return 0;
    }
    chain_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    *state = c; /* published at once: a failed setup still gets its teardown */
    c->tmp = cf_test_tmpdir();
    snprintf(c->sim_dir, sizeof c->sim_dir, "%s/sim", c->tmp);
    snprintf(c->manifest, sizeof c->manifest, "%s/manifest.json", c->tmp);
    snprintf(c->socket, sizeof c->socket, "%s/backend.sock", c->tmp);
    cf_sim_init_options opt = {.svn = 1, .now = (int64_t)time(NULL)};
    assert_cf_ok(cf_sim_init(c->sim_dir, &opt));
    char as_bin[600], log[600];
    snprintf(as_bin, sizeof as_bin, "%s/bin/confide-as", build_dir());
    const char *models[] = {"fake-model"};
    cf_manifest_sim_params mp = {.sim_dir = c->sim_dir,
                                 .as_binary = as_bin,
                                 .worker_binary = wbin,
                                 .models = models,
                                 .model_count = 1,
                                 .ttl_min_s = 1,
                                 .ttl_max_s = 3600,
                                 .name = "itest chain"};
    cf_buf text;
    cf_buf_init(&text, 0);
    assert_cf_ok(cf_manifest_build_sim(&mp, &text));
    assert_cf_ok(cf_buf_append_u8(&text, 0));
    write_file(c->manifest, (const char *)text.data);
    cf_buf_free(&text);

    snprintf(log, sizeof log, "%s/as.log", c->tmp);
    const char *as_argv[] = {as_bin,       "--platform", "sim",    "--sim-dir", c->sim_dir,
                             "--manifest", c->manifest,  "--port", "0",         NULL};
    start_proc(&c->as, log, as_argv, "event=as_started");
    snprintf(log, sizeof log, "%s/backend.log", c->tmp);
    const char *be_argv[] = {"node", "tests/fake-backend/server.mjs", "--socket", c->socket, NULL};
    start_proc(&c->backend, log, be_argv, "fake-backend listening");
    char as_url[64];
    snprintf(as_url, sizeof as_url, "http://127.0.0.1:%d", c->as.port);
    snprintf(log, sizeof log, "%s/worker.log", c->tmp);
    const char *w_argv[] = {wbin,        "--platform", "sim",  "--sim-dir",       c->sim_dir,         "--manifest",
                            c->manifest, "--as-url",   as_url, "--as-allow-http", "--backend-socket", c->socket,
                            "--port",    "0",          NULL};
    start_proc(&c->worker, log, w_argv, "event=worker_started");
    wait_log(&c->worker, "event=key_stream_ready", 10000);
    char bin[600], upstream[64];
    snprintf(bin, sizeof bin, "%s/bin/confide-proxy", build_dir());
    snprintf(upstream, sizeof upstream, "http://127.0.0.1:%d", c->worker.port);
    snprintf(log, sizeof log, "%s/proxy.log", c->tmp);
    const char *p_argv[] = {bin,      "--as",   as_url, "--manifest",         c->manifest, "--upstream",
                            upstream, "--port", "0",    "--allow-plain-http", NULL};
    start_proc(&c->proxy, log, p_argv, "event=proxy_started");
    wait_log(&c->proxy, "event=key_uploaded", 10000);
    *state = c;
    return 0;
}

static int chain_teardown(void **state)
{
    chain_t *c = *state;
    bool clean = true;
    if (c != NULL) {
        clean &= stop_proc_quietly(&c->proxy, true);
        clean &= stop_proc_quietly(&c->worker, true);
        clean &= stop_proc_quietly(&c->as, true);
        (void)stop_proc_quietly(&c->backend, true); /* node: its exit status is not ours to judge */
        if (getenv("CONFIDE_KEEP_TMP") == NULL) {
            cf_test_rmrf(c->tmp);
        }
        free(c->tmp);
        free(c);
        *state = NULL;
    }
    kill_all();
    if (!clean) {
        fprintf(stderr, "chain teardown: a daemon did not end cleanly with status 0 on SIGTERM\n");
        return -1;
    }
    return 0;
}

#define CHAIN_OR_SKIP(c)                                                                                               \
    chain_t *c = *state;                                                                                               \
    if (c == NULL) {                                                                                                   \
        skip();                                                                                                        \
    }

/* The concatenated delta contents of an SSE body. */
static void stream_content(const resp_t *r, char *out, size_t len)
{
    out[0] = '\0';
    const char *p = (const char *)r->body.data, *end = p + r->body.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (ll > 6 && strncmp(p, "data: {", 7) == 0) {
            json_t *j = json_loadb(p + 6, ll - 6, 0, NULL);
            const char *t = json_string_value(
                json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta"), "content"));
            if (t != NULL) {
                strncat(out, t, len - strlen(out) - 1);
            }
            json_decref(j);
        }
        p += ll + 1;
    }
}

static void test_chain_chat(void **state)
{
    CHAIN_OR_SKIP(c);
    resp_t r;
    http(c->proxy.port, "POST", "/v1/chat/completions",
         "{\"model\":\"fake-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hello " PROMPT "\"}]}", NULL, &r);
    if (r.status != 200) {
        fail_msg("chain chat: %ld %.*s", r.status, (int)r.body.len, (const char *)r.body.data);
    }
    assert_true(body_has(&r, "\"content\":\"echo: hello " PROMPT "\""));
    cf_buf_free(&r.body);
    http(c->proxy.port, "POST", "/v1/chat/completions",
         "{\"model\":\"fake-model\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello " PROMPT
         "\"}]}",
         NULL, &r);
    assert_int_equal(r.status, 200);
    char content[512];
    stream_content(&r, content, sizeof content);
    assert_string_equal(content, "echo: hello " PROMPT);
    assert_true(r.body.len > 16 && memcmp(r.body.data + r.body.len - 16, "\n\ndata: [DONE]\n\n", 16) == 0);
    assert_false(body_has(&r, "confide"));
    cf_buf_free(&r.body);
    /* Neither daemon logs the prompt or the reply. */
    assert_false(log_has(&c->proxy, PROMPT));
    assert_false(log_has(&c->worker, PROMPT));
    assert_false(log_has(&c->as, PROMPT));
}

static void test_chain_embeddings_models(void **state)
{
    CHAIN_OR_SKIP(c);
    resp_t r;
    http(c->proxy.port, "POST", "/v1/embeddings", "{\"model\":\"fake-model\",\"input\":\"" PROMPT "\"}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(body_has(&r, "\"object\":\"embedding\""));
    cf_buf_free(&r.body);
    http(c->proxy.port, "GET", "/v1/models", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(body_has(&r, "\"id\":\"fake-model\""));
    cf_buf_free(&r.body);
}

static void test_chain_stream_as_it_arrives(void **state)
{
    CHAIN_OR_SKIP(c);
    resp_t r;
    http(c->proxy.port, "POST", "/v1/chat/completions",
         "{\"model\":\"fake-model\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
         "\"[[fake:slow tokens=4 delay=150]]\"}]}",
         NULL, &r);
    assert_int_equal(r.status, 200);
    char content[512];
    stream_content(&r, content, sizeof content);
    assert_non_null(strstr(content, "tok3"));
    assert_true(body_has(&r, "data: [DONE]"));
    /* ~600 ms of generation: the first event reached the app long before. */
    assert_true(r.total_s - r.first_byte_s > 0.3);
    cf_buf_free(&r.body);
}

static void test_chain_backend_cut(void **state)
{
    CHAIN_OR_SKIP(c);
    resp_t r;
    http(c->proxy.port, "POST", "/v1/chat/completions",
         "{\"model\":\"fake-model\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
         "\"[[fake:cut events=2]] hi\"}]}",
         NULL, &r);
    assert_int_equal(r.status, 200);
    assert_false(body_has(&r, "data: [DONE]"));
    assert_true(body_has(&r, "\"code\":\"truncated\""));
    cf_buf_free(&r.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_roundtrip),
        cmocka_unit_test(test_app_authorization_and_own_cache_salt),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_stream_roundtrip),
        cmocka_unit_test(test_stream_event_by_event),
        cmocka_unit_test(test_stream_backpressure),
        cmocka_unit_test(test_stream_dropped_final),
        cmocka_unit_test(test_stream_flipped_byte),
        cmocka_unit_test(test_flipped_byte_json),
        cmocka_unit_test(test_plaintext_2xx_refused),
        cmocka_unit_test(test_plaintext_2xx_variants_refused),
        cmocka_unit_test(test_stream_cut_after_or_before_final),
        cmocka_unit_test(test_plaintext_error_marked),
        cmocka_unit_test(test_unknown_key_reupload_retry),
        cmocka_unit_test(test_unknown_endpoints_and_bad_bodies),
        cmocka_unit_test(test_models_health_metrics_help),
        cmocka_unit_test(test_https_upstream),
        cmocka_unit_test(test_max_streams),
        cmocka_unit_test(test_sigterm_lets_stream_finish),
        cmocka_unit_test(test_shared_cache_salt),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_refuse_other_manifest),
        cmocka_unit_test(test_refuse_pinned_hash_mismatch),
        cmocka_unit_test(test_refuse_wrong_measurement),
        cmocka_unit_test(test_refuse_other_root),
        cmocka_unit_test(test_refuse_forged_report),
        cmocka_unit_test(test_as_down_then_up),
        cmocka_unit_test(test_refuse_bad_config),
        cmocka_unit_test(test_confide_attest),
        cmocka_unit_test(test_sigterm_deletes_keys),
    };
    const struct CMUnitTest chain_tests[] = {
        cmocka_unit_test(test_chain_chat),
        cmocka_unit_test(test_chain_embeddings_models),
        cmocka_unit_test(test_chain_stream_as_it_arrives),
        cmocka_unit_test(test_chain_backend_cut),
    };
    int failed = cmocka_run_group_tests_name("proxy", tests, setup, teardown);
    failed += cmocka_run_group_tests_name("chain", chain_tests, chain_setup, chain_teardown);
    return failed;
}
