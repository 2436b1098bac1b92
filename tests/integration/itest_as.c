/* itest_as.c — the real confide-as binary over HTTP.
 *
 * This test process plays the client (proxy) and the workers, using the
 * library helpers of as_api.h exactly as confide-proxy and confide-worker
 * do. Its own executable is the measurement the manifest's main worker
 * policy accepts; evidence for other measurements is signed with the sim
 * platform key (cf_sim_sign_report), which is what a different binary on
 * the same platform would produce. */
#define _GNU_SOURCE /* memmem */
#include "test_helper.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "confide/as_api.h"
#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/hpke.h"
#include "confide/sim.h"

/* ---- the daemon ------------------------------------------------------------ */

typedef struct daemon {
    pid_t pid;
    char log[600];
    char base_url[64];
} daemon_t;

typedef struct env {
    char *tmp;
    char sim_dir[512];
    char manifest_path[512];
    cf_manifest *manifest;
    daemon_t as;       /* long tokens */
    daemon_t as_short; /* 3 s tokens */
    cf_as_identity id;
    uint8_t other_measurement[CF_SIM_MEASUREMENT_LEN];
} env_t;

static const char *build_dir(void)
{
    const char *b = getenv("CONFIDE_BUILD");
    return b && b[0] ? b : "build/default";
}

static void start_as(env_t *e, daemon_t *d, const char *name, const char *const *extra)
{
    snprintf(d->log, sizeof d->log, "%s/%s.log", e->tmp, name);
    char bin[600];
    snprintf(bin, sizeof bin, "%s/bin/confide-as", build_dir());
    /* CONFIDE_ITEST_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full"
     * runs the daemon under a tool (its exit status is checked at stop). */
    const char *argv[48];
    size_t n = 0;
    static char wrapper[512];
    const char *w = getenv("CONFIDE_ITEST_WRAPPER");
    if (w != NULL && w[0] != '\0') {
        snprintf(wrapper, sizeof wrapper, "%s", w);
        char *save = NULL;
        for (char *tok = strtok_r(wrapper, " ", &save); tok != NULL && n < 16; tok = strtok_r(NULL, " ", &save)) {
            argv[n++] = tok;
        }
    }
    const char *fixed[] = {bin, "--platform", "sim", "--sim-dir", e->sim_dir, "--manifest", e->manifest_path,
                           "--port", "0", "--keepalive", "1"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        argv[n++] = fixed[i];
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    /* Create the log before forking: the start loop below reads it at once,
     * possibly before the child has reopened stderr onto it. */
    FILE *created = fopen(d->log, "w");
    assert_non_null(created);
    fclose(created);
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        /* Never outlive a failed test. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        FILE *f = freopen(d->log, "w", stderr);
        FILE *o = freopen("/dev/null", "w", stdout);
        (void)f;
        (void)o;
        execvp(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    /* Wait for "event=as_started ... port=N". */
    for (int i = 0; i < 800; i++) {
        usleep(25000);
        cf_buf log;
        cf_test_read_file(d->log, false, &log);
        assert_cf_ok(cf_buf_append_u8(&log, 0));
        const char *started = strstr((const char *)log.data, "event=as_started");
        const char *port = started ? strstr(started, " port=") : NULL;
        if (port != NULL) {
            snprintf(d->base_url, sizeof d->base_url, "http://127.0.0.1:%d", atoi(port + 6));
            cf_buf_free(&log);
            return;
        }
        cf_buf_free(&log);
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0; /* reaped: nothing left for teardown to stop */
            fail_msg("confide-as exited at start (log %s)", d->log);
        }
    }
    fail_msg("confide-as did not start (log %s)", d->log);
}

/* SIGTERM and wait (SIGKILL after 20 s); never fails, so that teardown
 * can stop every daemon. Returns whether it exited cleanly with status 0
 * (true for a daemon that was never started). */
static bool stop_as_quietly(daemon_t *d)
{
    if (d->pid <= 0) {
        return true;
    }
    kill(d->pid, SIGTERM);
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 800 && (got = waitpid(d->pid, &status, WNOHANG)) != d->pid; i++) {
        usleep(25000);
    }
    bool exited = got == d->pid;
    if (!exited) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
    }
    d->pid = 0;
    return exited && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void stop_as(daemon_t *d)
{
    /* SIGTERM must end it cleanly with status 0. */
    assert_true(stop_as_quietly(d));
}

/* ---- HTTP ------------------------------------------------------------------- */

typedef struct resp {
    long status;
    cf_buf body;
} resp_t;

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    cf_buf *b = arg;
    return cf_is_ok(cf_buf_append(b, p, size * n)) ? size * n : 0;
}

static void http(const daemon_t *d, const char *method, const char *path, cf_slice body, const char *bearer,
                 resp_t *out)
{
    char url[256], auth[1024];
    snprintf(url, sizeof url, "%s%s", d->base_url, path);
    cf_buf_init(&out->body, 0);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (bearer != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.ptr ? (const char *)body.ptr : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body.len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

/* The error code of an OpenAI-shaped error body. */
static const char *error_code(const resp_t *r)
{
    static char code[64];
    json_t *j = json_loadb((const char *)r->body.data, r->body.len, 0, NULL);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    snprintf(code, sizeof code, "%s", c ? c : "(none)");
    json_decref(j);
    return code;
}

static void expect_error(const resp_t *r, long status, const char *code)
{
    if (r->status != status || strcmp(error_code(r), code) != 0) {
        fail_msg("expected %ld %s, got %ld %.*s", status, code, r->status, (int)r->body.len, (const char *)r->body.data);
    }
}

/* ---- key streams (SSE over curl multi) ---------------------------------------- */

typedef struct stream {
    uint8_t nonce[CF_STREAM_NONCE_LEN];
    CURLM *multi;
    CURL *easy;
    struct curl_slist *hdrs;
    cf_buf raw;
    size_t used;
} stream_t;

static void stream_open(const daemon_t *d, const char *token, stream_t *s)
{
    char url[256], auth[1024], query[CF_STREAM_QUERY_MAX];
    memset(s, 0, sizeof *s);
    assert_cf_ok(cf_random(s->nonce, sizeof s->nonce));
    assert_cf_ok(cf_key_stream_query_build(s->nonce, query));
    snprintf(url, sizeof url, "%s/v1/workers/keys?%s", d->base_url, query);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    cf_buf_init(&s->raw, 0);
    s->multi = curl_multi_init();
    s->easy = curl_easy_init();
    s->hdrs = curl_slist_append(NULL, auth);
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, &s->raw);
    curl_multi_add_handle(s->multi, s->easy);
}

/* Next event (comments skipped) within timeout_ms; false on timeout or end
 * of stream (*ended set). */
static bool stream_next(stream_t *s, int timeout_ms, char name[32], cf_buf *data, bool *ended)
{
    int64_t deadline = (int64_t)time(NULL) * 1000 + timeout_ms;
    *ended = false;
    for (;;) {
        /* A complete event: up to a blank line. */
        const uint8_t *start = s->raw.data + s->used;
        size_t avail = s->raw.len - s->used;
        const uint8_t *end = avail ? memmem(start, avail, "\n\n", 2) : NULL;
        if (end != NULL) {
            size_t len = (size_t)(end - start);
            s->used += len + 2;
            name[0] = '\0';
            cf_buf_reset(data);
            bool any = false;
            for (size_t off = 0; off < len;) {
                const uint8_t *nl = memchr(start + off, '\n', len - off);
                size_t ll = nl ? (size_t)(nl - (start + off)) : len - off;
                const char *line = (const char *)start + off;
                if (ll > 7 && strncmp(line, "event: ", 7) == 0) {
                    snprintf(name, 32, "%.*s", (int)(ll - 7), line + 7);
                    any = true;
                } else if (ll > 6 && strncmp(line, "data: ", 6) == 0) {
                    assert_cf_ok(cf_buf_append(data, line + 6, ll - 6));
                    any = true;
                }
                off += ll + 1;
            }
            if (any) {
                return true;
            }
            continue; /* a comment (keep-alive) */
        }
        int running = 0;
        curl_multi_perform(s->multi, &running);
        if (!running) {
            CURLMsg *msg;
            int left;
            while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
            }
            if (s->raw.len == s->used || memmem(s->raw.data + s->used, s->raw.len - s->used, "\n\n", 2) == NULL) {
                *ended = true;
                return false;
            }
            continue;
        }
        if ((int64_t)time(NULL) * 1000 > deadline) {
            return false;
        }
        curl_multi_poll(s->multi, NULL, 0, 100, NULL);
    }
}

static void stream_close(stream_t *s)
{
    curl_multi_remove_handle(s->multi, s->easy);
    curl_easy_cleanup(s->easy);
    curl_multi_cleanup(s->multi);
    curl_slist_free_all(s->hdrs);
    cf_buf_free(&s->raw);
}

/* ---- workers ------------------------------------------------------------------ */

typedef struct worker {
    cf_hpke_keypair kp;
    cf_worker_grant grant;
    uint64_t seq;
    stream_t s;
} worker_t;

typedef enum tamper { TAMPER_NONE, TAMPER_REPLAY_NONCE, TAMPER_UNKNOWN_NONCE, TAMPER_SIGNATURE, TAMPER_OTHER_KEY } tamper_t;

/* Challenge + attest. measurement NULL = this executable (real collection). */
static void worker_join(const env_t *e, const daemon_t *d, worker_t *w, const uint8_t *measurement, tamper_t tamper,
                        resp_t *out)
{
    memset(w, 0, sizeof *w);
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &w->kp));
    resp_t ch;
    http(d, "POST", "/v1/workers/challenge", cf_slice_cstr(""), NULL, &ch);
    assert_int_equal(ch.status, 200);
    uint8_t nonce[CF_AS_NONCE_LEN];
    int64_t exp;
    assert_cf_ok(cf_worker_challenge_parse(cf_buf_slice(&ch.body), nonce, &exp));
    cf_buf_free(&ch.body);
    if (tamper == TAMPER_UNKNOWN_NONCE) {
        nonce[0] ^= 0x55;
    }
    cf_hpke_keypair other;
    assert_cf_ok(cf_hpke_keypair_generate(CF_HPKE_KEM_X25519_SHA256, &other));
    uint8_t rd[CF_REPORT_DATA_LEN];
    /* TAMPER_OTHER_KEY: evidence binds another key than the one submitted. */
    assert_cf_ok(cf_worker_report_data(nonce, cf_hpke_keypair_public(tamper == TAMPER_OTHER_KEY ? &other : &w->kp),
                                       rd));
    cf_hpke_keypair_wipe(&other);
    cf_buf ev, col, body;
    cf_buf_init(&ev, 0);
    cf_buf_init(&col, 0);
    cf_buf_init(&body, 0);
    if (measurement == NULL) {
        cf_attester_config cfg = {.platform = CF_PLATFORM_SIM, .sim_dir = e->sim_dir};
        assert_cf_ok(cf_attest_collect(&cfg, rd, &ev, &col));
    } else {
        cf_sim_report_params p = {.svn = 1};
        memcpy(p.measurement, measurement, sizeof p.measurement);
        memcpy(p.report_data, rd, sizeof rd);
        assert_cf_ok(cf_sim_sign_report(e->sim_dir, &p, &ev, &col));
    }
    if (tamper == TAMPER_SIGNATURE) {
        ev.data[0xA0 + 3] ^= 0x01;
    }
    assert_cf_ok(cf_worker_attest_request_build(CF_PLATFORM_SIM, nonce, cf_hpke_keypair_public(&w->kp),
                                                cf_buf_slice(&ev), cf_buf_slice(&col), &body));
    http(d, "POST", "/v1/workers/attest", cf_buf_slice(&body), NULL, out);
    if (tamper == TAMPER_REPLAY_NONCE && out->status == 200) {
        cf_buf_free(&out->body);
        http(d, "POST", "/v1/workers/attest", cf_buf_slice(&body), NULL, out);
    }
    if (out->status == 200) {
        assert_cf_ok(cf_worker_attest_response_parse(cf_buf_slice(&out->body), &w->grant));
    }
    cf_buf_free(&ev);
    cf_buf_free(&col);
    cf_buf_free(&body);
}

/* Next event on the worker's stream, verified and opened like the worker. */
static bool worker_event(const env_t *e, worker_t *w, int timeout_ms, cf_key_event *out, bool *ended)
{
    char name[32];
    cf_buf data;
    cf_buf_init(&data, 0);
    bool got = stream_next(&w->s, timeout_ms, name, &data, ended);
    if (got) {
        assert_cf_ok(cf_key_event_open(e->id.signing_key, w->grant.worker_id, w->s.nonce, &w->kp, name,
                                       cf_buf_slice(&data),
                                       w->seq, out));
        w->seq++;
    }
    cf_buf_free(&data);
    return got;
}

static void worker_attach(const env_t *e, const daemon_t *d, worker_t *w, size_t expect_keys, char ids[][CF_KEY_ID_LEN + 1])
{
    stream_open(d, w->grant.token, &w->s);
    cf_key_event ev;
    bool ended;
    for (size_t i = 0;; i++) {
        assert_true(worker_event(e, w, 5000, &ev, &ended));
        if (ev.type == CF_KEY_EVENT_READY) {
            assert_int_equal(ev.count, expect_keys);
            assert_int_equal(i, expect_keys);
            return;
        }
        assert_int_equal(ev.type, CF_KEY_EVENT_PUT);
        if (ids != NULL) {
            memcpy(ids[i], ev.key_id, sizeof ids[i]);
        }
        cf_key_event_wipe(&ev);
    }
}

static void worker_free(worker_t *w)
{
    if (w->s.multi != NULL) {
        stream_close(&w->s);
    }
    cf_worker_grant_free(&w->grant);
    cf_hpke_keypair_wipe(&w->kp);
}

/* The worker's nonce for single-key fetches (fresh per fetch in a real worker). */
static const uint8_t fetch_nonce[CF_STREAM_NONCE_LEN] = {0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7,
                                                        0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff};

/* ---- client ------------------------------------------------------------------- */

typedef struct client_key {
    uint8_t k[CF_INFERENCE_KEY_LEN];
    char key_id[CF_KEY_ID_LEN + 1];
    int64_t expires_at;
} client_key;

static void scope_of(cf_key_scope *s, const char *model)
{
    memset(s, 0, sizeof *s);
    snprintf(s->models[0], sizeof s->models[0], "%s", model);
    s->count = 1;
}

/* Upload ck->k (already generated) with this scope and TTL. */
static long upload_key(const daemon_t *d, const cf_as_identity *id, const char *model, uint32_t ttl, client_key *ck,
                       resp_t *r)
{
    cf_key_scope scope;
    scope_of(&scope, model);
    cf_buf body;
    cf_buf_init(&body, 0);
    uint8_t digest[32];
    assert_cf_ok(cf_key_upload_seal(id, ck->k, ttl, &scope, &body, digest));
    http(d, "POST", "/v1/keys", cf_buf_slice(&body), NULL, r);
    if (r->status == 200) {
        cf_key_receipt rc;
        assert_cf_ok(cf_key_receipt_verify(id, digest, ck->key_id, cf_buf_slice(&r->body), &rc));
        ck->expires_at = rc.expires_at;
    }
    cf_buf_free(&body);
    return r->status;
}

static long upload(const daemon_t *d, const cf_as_identity *id, const char *model, uint32_t ttl, client_key *ck,
                   resp_t *r)
{
    assert_cf_ok(cf_key_generate(ck->k, ck->key_id));
    return upload_key(d, id, model, ttl, ck, r);
}

static void verify_as(const daemon_t *d, const env_t *e, cf_as_identity *id)
{
    uint8_t nonce[CF_AS_NONCE_LEN];
    assert_cf_ok(cf_random(nonce, sizeof nonce));
    cf_buf req;
    cf_buf_init(&req, 0);
    assert_cf_ok(cf_as_attest_request_build(nonce, &req));
    resp_t r;
    http(d, "POST", "/v1/attest", cf_buf_slice(&req), NULL, &r);
    assert_int_equal(r.status, 200);
    assert_cf_ok(cf_as_attest_response_verify(cf_buf_slice(&r.body), nonce, e->manifest->sha256, (int64_t)time(NULL),
                                              id));
    /* The same answer for another nonce: a replay is refused. */
    nonce[0] ^= 1;
    cf_as_identity bad;
    assert_cf_error(cf_as_attest_response_verify(cf_buf_slice(&r.body), nonce, e->manifest->sha256,
                                                 (int64_t)time(NULL), &bad),
                    CF_E_REPORT_DATA);
    cf_buf_free(&r.body);
    cf_buf_free(&req);
}

/* ---- fixture -------------------------------------------------------------------- */

static int setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    /* Published at once: if any step below fails, cmocka still runs the
     * group teardown, which must stop what was started. */
    *state = e;
    e->tmp = cf_test_tmpdir();
    snprintf(e->sim_dir, sizeof e->sim_dir, "%s/sim", e->tmp);
    cf_sim_init_options opt = {.svn = 1, .now = (int64_t)time(NULL)};
    assert_cf_ok(cf_sim_init(e->sim_dir, &opt));
    char fp[65], as_m[97], me_m[97], other_m[97], bin[600];
    uint8_t m[48];
    assert_cf_ok(cf_sim_root_fingerprint(e->sim_dir, fp));
    snprintf(bin, sizeof bin, "%s/bin/confide-as", build_dir());
    assert_cf_ok(cf_sim_measure_file(bin, m));
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(m, 48), as_m, sizeof as_m));
    assert_cf_ok(cf_sim_measure_file("/proc/self/exe", m));
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(m, 48), me_m, sizeof me_m));
    memset(e->other_measurement, 0xAB, sizeof e->other_measurement);
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(e->other_measurement, 48), other_m, sizeof other_m));
    char *text = NULL;
    assert_true(asprintf(&text,
                         "{\"version\": 1, \"name\": \"itest\", \"accepted_roots\": [\"%s\"],\n"
                         " \"as\": {\"platform\": \"sim\", \"policy\": {\"measurements\": [\"%s\"]}},\n"
                         " \"workers\": [\n"
                         "  {\"name\": \"main\", \"platform\": \"sim\", \"policy\": {\"measurements\": [\"%s\"]},"
                         " \"models\": [\"model-a\", \"model-b\"]},\n"
                         "  {\"name\": \"other\", \"platform\": \"sim\", \"policy\": {\"measurements\": [\"%s\"]},"
                         " \"models\": [\"model-c\"]}],\n"
                         " \"keys\": {\"ttl_min_s\": 1, \"ttl_max_s\": 3600}}\n",
                         fp, as_m, me_m, other_m) > 0);
    snprintf(e->manifest_path, sizeof e->manifest_path, "%s/manifest.json", e->tmp);
    FILE *f = fopen(e->manifest_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_cf_ok(cf_manifest_parse(cf_slice_cstr(text), &e->manifest));
    free(text);
    static const char *const generous[] = {"--rate-burst", "1000", NULL};
    start_as(e, &e->as, "as", generous);
    static const char *const short_tokens[] = {"--token-ttl", "3", "--token-notice", "2", NULL};
    start_as(e, &e->as_short, "as_short", short_tokens);
    verify_as(&e->as, e, &e->id);
    *state = e;
    return 0;
}

/* Tolerates a setup that failed part-way (NULL or partial state): every
 * daemon started is stopped before anything can fail. */
static int teardown(void **state)
{
    env_t *e = *state;
    if (e == NULL) {
        curl_global_cleanup();
        return 0;
    }
    bool as_clean = stop_as_quietly(&e->as);
    bool as_short_clean = stop_as_quietly(&e->as_short);
    cf_as_identity_free(&e->id);
    cf_manifest_free(e->manifest);
    cf_test_rmrf(e->tmp);
    free(e->tmp);
    free(e);
    *state = NULL;
    curl_global_cleanup();
    if (!as_clean || !as_short_clean) {
        fprintf(stderr, "teardown: confide-as did not exit cleanly on SIGTERM\n");
        return -1;
    }
    return 0;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_health_metrics_help(void **state)
{
    env_t *e = *state;
    resp_t r;
    http(&e->as, "GET", "/healthz", CF_SLICE_EMPTY, NULL, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    http(&e->as, "GET", "/metrics", CF_SLICE_EMPTY, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(memmem(r.body.data, r.body.len, "confide_as_keys", 15));
    cf_buf_free(&r.body);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "%s/bin/confide-as --help | grep -c -e --max-keys -e --rate-upload -e --manifest",
             build_dir());
    FILE *p = popen(cmd, "r");
    int count = 0;
    assert_int_equal(fscanf(p, "%d", &count), 1);
    pclose(p);
    assert_int_equal(count, 3);
    /* Unknown endpoint and bad JSON. */
    http(&e->as, "POST", "/v1/attest", cf_slice_cstr("{\"nonce\": 5}"), NULL, &r);
    expect_error(&r, 400, "malformed");
    cf_buf_free(&r.body);
}

static void test_worker_gets_exactly_its_scope(void **state)
{
    env_t *e = *state;
    resp_t r;
    client_key ka, kc, kb;
    assert_int_equal(upload(&e->as, &e->id, "model-a", 600, &ka, &r), 200);
    cf_buf_free(&r.body);
    assert_int_equal(upload(&e->as, &e->id, "model-c", 600, &kc, &r), 200);
    cf_buf_free(&r.body);

    worker_t main_w, other_w;
    worker_join(e, &e->as, &main_w, NULL, TAMPER_NONE, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    assert_string_equal(main_w.grant.policy, "main");
    worker_join(e, &e->as, &other_w, e->other_measurement, TAMPER_NONE, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    assert_string_equal(other_w.grant.policy, "other");

    char ids[4][CF_KEY_ID_LEN + 1];
    worker_attach(e, &e->as, &main_w, 1, ids);
    assert_string_equal(ids[0], ka.key_id);
    worker_attach(e, &e->as, &other_w, 1, ids);
    assert_string_equal(ids[0], kc.key_id);

    /* A live upload reaches only the worker whose policy serves it. */
    assert_int_equal(upload(&e->as, &e->id, "model-b", 600, &kb, &r), 200);
    cf_buf_free(&r.body);
    cf_key_event ev;
    bool ended;
    assert_true(worker_event(e, &main_w, 5000, &ev, &ended));
    assert_int_equal(ev.type, CF_KEY_EVENT_PUT);
    assert_string_equal(ev.key_id, kb.key_id);
    assert_memory_equal(ev.k, kb.k, 32);
    assert_int_equal(ev.expires_at, kb.expires_at);
    cf_key_event_wipe(&ev);
    assert_false(worker_event(e, &other_w, 1500, &ev, &ended));
    assert_false(ended);

    /* Fetch one key by id. */
    cf_buf fb;
    cf_buf_init(&fb, 0);
    assert_cf_ok(cf_key_fetch_build(ka.key_id, fetch_nonce, &fb));
    http(&e->as, "POST", "/v1/workers/key", cf_buf_slice(&fb), main_w.grant.token, &r);
    assert_int_equal(r.status, 200);
    assert_cf_ok(cf_key_event_open(e->id.signing_key, main_w.grant.worker_id, fetch_nonce, &main_w.kp, "key",
                                   cf_buf_slice(&r.body), 0, &ev));
    assert_memory_equal(ev.k, ka.k, 32);
    cf_key_event_wipe(&ev);
    cf_buf_free(&r.body);
    /* ...not one outside the policy's models. */
    http(&e->as, "POST", "/v1/workers/key", cf_buf_slice(&fb), other_w.grant.token, &r);
    expect_error(&r, 401, "unauthorized");
    cf_buf_free(&r.body);
    cf_buf_reset(&fb);
    assert_cf_ok(cf_key_fetch_build("AAAAAAAAAAAAAAAAAAAAAA", fetch_nonce, &fb));
    http(&e->as, "POST", "/v1/workers/key", cf_buf_slice(&fb), main_w.grant.token, &r);
    expect_error(&r, 404, "unknown_key");
    cf_buf_free(&r.body);
    http(&e->as, "POST", "/v1/workers/key", cf_buf_slice(&fb), NULL, &r);
    expect_error(&r, 401, "unauthorized");
    cf_buf_free(&r.body);
    cf_buf_free(&fb);

    /* Re-uploading the same key with another scope moves it between workers. */
    assert_int_equal(upload_key(&e->as, &e->id, "model-c", 600, &ka, &r), 200);
    cf_buf_free(&r.body);
    assert_true(worker_event(e, &main_w, 5000, &ev, &ended));
    assert_int_equal(ev.type, CF_KEY_EVENT_DELETE);
    assert_string_equal(ev.key_id, ka.key_id);
    assert_string_equal(ev.reason, "scope");
    assert_true(worker_event(e, &other_w, 5000, &ev, &ended));
    assert_int_equal(ev.type, CF_KEY_EVENT_PUT);
    assert_string_equal(ev.key_id, ka.key_id);
    assert_memory_equal(ev.k, ka.k, 32);
    cf_key_event_wipe(&ev);

    /* Secrets never reach the log. */
    cf_buf log;
    cf_test_read_file(e->as.log, false, &log);
    char k64[64];
    assert_cf_ok(cf_b64url_encode_str(cf_slice_make(ka.k, 32), k64, sizeof k64));
    assert_null(memmem(log.data, log.len, k64, strlen(k64)));
    assert_null(memmem(log.data, log.len, main_w.grant.token, strlen(main_w.grant.token)));
    cf_buf_free(&log);

    worker_free(&main_w);
    worker_free(&other_w);
}

static void test_worker_rejections(void **state)
{
    env_t *e = *state;
    static const struct {
        const uint8_t *measurement;
        tamper_t tamper;
        long status;
        const char *code;
    } cases[] = {
        {(const uint8_t *)"\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd"
                          "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd",
         TAMPER_NONE, 403, "policy_violation"},
        {NULL, TAMPER_REPLAY_NONCE, 403, "replay"},
        {NULL, TAMPER_UNKNOWN_NONCE, 401, "unauthorized"},
        {NULL, TAMPER_SIGNATURE, 403, "bad_signature"},
        {NULL, TAMPER_OTHER_KEY, 403, "report_data_mismatch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        worker_t w;
        resp_t r;
        worker_join(e, &e->as, &w, cases[i].measurement, cases[i].tamper, &r);
        expect_error(&r, cases[i].status, cases[i].code);
        assert_null(w.grant.token);
        cf_buf_free(&r.body);
        worker_free(&w);
    }
    /* A stream without the worker's nonce is refused. */
    resp_t r;
    worker_t ok;
    worker_join(e, &e->as, &ok, NULL, TAMPER_NONE, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    http(&e->as, "GET", "/v1/workers/keys", CF_SLICE_EMPTY, ok.grant.token, &r);
    expect_error(&r, 400, "malformed");
    cf_buf_free(&r.body);
    worker_free(&ok);
    /* Forged and missing tokens open no stream. */
    stream_t s;
    stream_open(&e->as, "AAAA", &s);
    char name[32];
    cf_buf data;
    cf_buf_init(&data, 0);
    bool ended;
    assert_false(stream_next(&s, 3000, name, &data, &ended));
    long status = 0;
    curl_easy_getinfo(s.easy, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 401);
    cf_buf_free(&data);
    stream_close(&s);
    /* Metrics count each reason. */
    http(&e->as, "GET", "/metrics", CF_SLICE_EMPTY, NULL, &r);
    static const char *const reasons[] = {"policy_violation", "replay", "unauthorized", "bad_signature",
                                          "report_data_mismatch"};
    for (size_t i = 0; i < 5; i++) {
        char line[160];
        snprintf(line, sizeof line, "confide_as_worker_attestations_total{result=\"rejected\",reason=\"%s\"} 1",
                 reasons[i]);
        if (memmem(r.body.data, r.body.len, line, strlen(line)) == NULL) {
            fail_msg("metrics lack %s", line);
        }
    }
    cf_buf_free(&r.body);
}

static double metric(const daemon_t *d, const char *series)
{
    resp_t r;
    http(d, "GET", "/metrics", CF_SLICE_EMPTY, NULL, &r);
    assert_cf_ok(cf_buf_append_u8(&r.body, 0));
    /* The sample line, not the # HELP / # TYPE lines. */
    char needle[256];
    snprintf(needle, sizeof needle, "\n%s ", series);
    const char *at = strstr((const char *)r.body.data, needle);
    assert_non_null(at);
    double v = atof(at + strlen(needle));
    cf_buf_free(&r.body);
    return v;
}

static void test_upload_refusals_leave_no_state(void **state)
{
    env_t *e = *state;
    double keys_before = metric(&e->as, "confide_as_keys");
    assert_true(keys_before >= 3); /* from the tests before */
    resp_t r;
    client_key ck;
    /* TTL above the manifest bound. */
    upload(&e->as, &e->id, "model-a", 3601, &ck, &r);
    expect_error(&r, 403, "policy_violation");
    cf_buf_free(&r.body);
    /* A model no worker policy serves. */
    upload(&e->as, &e->id, "model-z", 60, &ck, &r);
    expect_error(&r, 403, "policy_violation");
    cf_buf_free(&r.body);
    /* A key id not derived from K, sealed by hand. */
    uint8_t k[32];
    char kid[CF_KEY_ID_LEN + 1];
    assert_cf_ok(cf_key_generate(k, kid));
    cf_buf pt, enc, ct;
    cf_buf_init(&pt, 0);
    cf_buf_init(&enc, 0);
    cf_buf_init(&ct, 0);
    assert_cf_ok(cf_buf_append_u8(&pt, 1));
    assert_cf_ok(cf_buf_append(&pt, k, 32));
    assert_cf_ok(cf_buf_append_u8(&pt, 22));
    assert_cf_ok(cf_buf_append_cstr(&pt, "RDxb-UX6ELNTL9OJxJI3tA"));
    assert_cf_ok(cf_buf_append_u32be(&pt, 60));
    assert_cf_ok(cf_buf_append_u8(&pt, 1));
    assert_cf_ok(cf_buf_append_u8(&pt, 7));
    assert_cf_ok(cf_buf_append_cstr(&pt, "model-a"));
    assert_cf_ok(cf_hpke_seal_base(CF_HPKE_SUITE_DEFAULT,
                                   cf_slice_make(e->id.hpke_public_key, e->id.hpke_public_key_len),
                                   cf_slice_cstr("confide/v1 key-upload"), cf_slice_make(e->manifest->sha256, 32),
                                   cf_buf_slice(&pt), &enc, &ct));
    char e64[128], c64[512], body[800];
    assert_cf_ok(cf_b64url_encode_str(cf_buf_slice(&enc), e64, sizeof e64));
    assert_cf_ok(cf_b64url_encode_str(cf_buf_slice(&ct), c64, sizeof c64));
    snprintf(body, sizeof body, "{\"enc\":\"%s\",\"ct\":\"%s\"}", e64, c64);
    http(&e->as, "POST", "/v1/keys", cf_slice_cstr(body), NULL, &r);
    expect_error(&r, 403, "auth_failed");
    cf_buf_free(&r.body);
    cf_buf_free(&pt);
    cf_buf_free(&enc);
    cf_buf_free(&ct);
    /* Junk. */
    http(&e->as, "POST", "/v1/keys", cf_slice_cstr("{\"enc\":\"AA\",\"ct\":\"AA\"}"), NULL, &r);
    expect_error(&r, 403, "auth_failed");
    cf_buf_free(&r.body);
    http(&e->as, "POST", "/v1/keys", cf_slice_cstr("[]"), NULL, &r);
    expect_error(&r, 400, "malformed");
    cf_buf_free(&r.body);
    assert_true(metric(&e->as, "confide_as_keys") == keys_before);
}

static void test_delete_and_expiry_reach_streams(void **state)
{
    env_t *e = *state;
    resp_t r;
    worker_t w;
    worker_join(e, &e->as, &w, NULL, TAMPER_NONE, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    stream_open(&e->as, w.grant.token, &w.s);
    cf_key_event ev;
    bool ended, ready = false;
    while (!ready) {
        assert_true(worker_event(e, &w, 5000, &ev, &ended));
        ready = ev.type == CF_KEY_EVENT_READY;
        cf_key_event_wipe(&ev);
    }

    client_key kd, ke;
    assert_int_equal(upload(&e->as, &e->id, "model-a", 600, &kd, &r), 200);
    cf_buf_free(&r.body);
    assert_true(worker_event(e, &w, 5000, &ev, &ended));
    assert_int_equal(ev.type, CF_KEY_EVENT_PUT);
    cf_key_event_wipe(&ev);

    /* Delete with a wrong proof (another K), then with the right one. */
    cf_buf db;
    cf_buf_init(&db, 0);
    uint8_t wrong[32];
    memset(wrong, 7, sizeof wrong);
    assert_cf_ok(cf_key_delete_build(wrong, kd.key_id, kd.expires_at, &db));
    http(&e->as, "POST", "/v1/keys/delete", cf_buf_slice(&db), NULL, &r);
    expect_error(&r, 403, "auth_failed");
    cf_buf_free(&r.body);
    cf_buf_reset(&db);
    assert_cf_ok(cf_key_delete_build(kd.k, kd.key_id, kd.expires_at + 1, &db));
    http(&e->as, "POST", "/v1/keys/delete", cf_buf_slice(&db), NULL, &r);
    expect_error(&r, 403, "auth_failed");
    cf_buf_free(&r.body);
    cf_buf_reset(&db);
    assert_cf_ok(cf_key_delete_build(kd.k, kd.key_id, kd.expires_at, &db));
    http(&e->as, "POST", "/v1/keys/delete", cf_buf_slice(&db), NULL, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    assert_true(worker_event(e, &w, 5000, &ev, &ended));
    assert_int_equal(ev.type, CF_KEY_EVENT_DELETE);
    assert_string_equal(ev.key_id, kd.key_id);
    assert_string_equal(ev.reason, "deleted");
    http(&e->as, "POST", "/v1/keys/delete", cf_buf_slice(&db), NULL, &r);
    expect_error(&r, 404, "unknown_key");
    cf_buf_free(&r.body);
    cf_buf_free(&db);

    /* A 2 s key disappears by itself. */
    assert_int_equal(upload(&e->as, &e->id, "model-b", 2, &ke, &r), 200);
    cf_buf_free(&r.body);
    assert_true(worker_event(e, &w, 5000, &ev, &ended));
    assert_int_equal(ev.type, CF_KEY_EVENT_PUT);
    assert_string_equal(ev.key_id, ke.key_id);
    assert_true(worker_event(e, &w, 5000, &ev, &ended));
    assert_int_equal(ev.type, CF_KEY_EVENT_DELETE);
    assert_string_equal(ev.key_id, ke.key_id);
    assert_string_equal(ev.reason, "expired");
    assert_true(time(NULL) >= ke.expires_at);
    cf_buf fb;
    cf_buf_init(&fb, 0);
    assert_cf_ok(cf_key_fetch_build(ke.key_id, fetch_nonce, &fb));
    http(&e->as, "POST", "/v1/workers/key", cf_buf_slice(&fb), w.grant.token, &r);
    expect_error(&r, 404, "unknown_key");
    cf_buf_free(&r.body);
    cf_buf_free(&fb);
    worker_free(&w);
}

static void test_token_expiry(void **state)
{
    env_t *e = *state;
    resp_t r;
    worker_t w;
    worker_join(e, &e->as_short, &w, NULL, TAMPER_NONE, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    cf_as_identity id;
    verify_as(&e->as_short, e, &id);
    /* Events of this AS are signed with its own key. */
    cf_as_identity saved = e->id;
    e->id = id;
    stream_open(&e->as_short, w.grant.token, &w.s);
    cf_key_event ev;
    bool ended;
    assert_true(worker_event(e, &w, 5000, &ev, &ended));
    assert_int_equal(ev.type, CF_KEY_EVENT_READY);
    assert_true(worker_event(e, &w, 5000, &ev, &ended));
    assert_int_equal(ev.type, CF_KEY_EVENT_TOKEN_EXPIRING);
    assert_int_equal(ev.expires_at, w.grant.expires_at);
    /* Then the stream ends at expiry. */
    while (worker_event(e, &w, 5000, &ev, &ended)) {
    }
    assert_true(ended);
    /* An expired token opens nothing. */
    cf_buf fb;
    cf_buf_init(&fb, 0);
    assert_cf_ok(cf_key_fetch_build("AAAAAAAAAAAAAAAAAAAAAA", fetch_nonce, &fb));
    http(&e->as_short, "POST", "/v1/workers/key", cf_buf_slice(&fb), w.grant.token, &r);
    expect_error(&r, 401, "expired");
    cf_buf_free(&r.body);
    cf_buf_free(&fb);
    /* Tokens of one AS mean nothing to another. */
    worker_t w2;
    worker_join(e, &e->as, &w2, NULL, TAMPER_NONE, &r);
    cf_buf_free(&r.body);
    cf_buf_init(&fb, 0);
    assert_cf_ok(cf_key_fetch_build("AAAAAAAAAAAAAAAAAAAAAA", fetch_nonce, &fb));
    http(&e->as_short, "POST", "/v1/workers/key", cf_buf_slice(&fb), w2.grant.token, &r);
    expect_error(&r, 401, "unauthorized");
    cf_buf_free(&r.body);
    cf_buf_free(&fb);
    worker_free(&w2);
    e->id = saved;
    cf_as_identity_free(&id);
    worker_free(&w);
}

/* A token holds one key stream: a second stream with it replaces the
 * first (which ends), so one token cannot occupy many --max-workers slots. */
static void test_one_stream_per_token(void **state)
{
    env_t *e = *state;
    resp_t r;
    worker_t w;
    worker_join(e, &e->as, &w, NULL, TAMPER_NONE, &r);
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    stream_open(&e->as, w.grant.token, &w.s);
    cf_key_event ev;
    bool ended;
    cf_key_event_type type;
    do {
        assert_true(worker_event(e, &w, 5000, &ev, &ended));
        type = ev.type;
        cf_key_event_wipe(&ev);
    } while (type != CF_KEY_EVENT_READY);
    double before = metric(&e->as, "confide_as_workers_connected");
    stream_t s2;
    stream_open(&e->as, w.grant.token, &s2);
    char name[32];
    cf_buf data;
    cf_buf_init(&data, 0);
    bool ready = false;
    while (!ready && stream_next(&s2, 5000, name, &data, &ended)) {
        ready = strcmp(name, "ready") == 0;
    }
    assert_true(ready);
    while (worker_event(e, &w, 5000, &ev, &ended)) {
        cf_key_event_wipe(&ev);
    }
    assert_true(ended); /* the first stream was ended by the AS */
    assert_true(metric(&e->as, "confide_as_workers_connected") <= before); /* not one more */
    cf_buf_free(&data);
    stream_close(&s2);
    worker_free(&w);
}

static void test_abuse_limits(void **state)
{
    env_t *e = *state;
    daemon_t d;
    static const char *const tight[] = {"--rate-attest", "1", "--rate-upload", "1", "--rate-burst", "4",
                                        "--max-keys", "1", "--max-workers", "1", "--max-body", "8192",
                                        "--read-timeout-ms", "500", NULL};
    start_as(e, &d, "as_tight", tight);
    cf_as_identity id;
    verify_as(&d, e, &id); /* 1 attest token */
    resp_t r;
    /* Body above --max-body. */
    char big[12000];
    memset(big, ' ', sizeof big);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = '\0';
    http(&d, "POST", "/v1/keys", cf_slice_cstr(big), NULL, &r);
    assert_int_equal(r.status, 413);
    cf_buf_free(&r.body);
    /* --max-keys 1: the second distinct key is refused, the first kept. */
    client_key k1, k2;
    assert_int_equal(upload(&d, &id, "model-a", 60, &k1, &r), 200);
    cf_buf_free(&r.body);
    upload(&d, &id, "model-a", 60, &k2, &r);
    expect_error(&r, 429, "limit_exceeded");
    cf_buf_free(&r.body);
    assert_true(metric(&d, "confide_as_keys") == 1);
    /* --max-workers 1. */
    worker_t w1, w2;
    worker_join(e, &d, &w1, NULL, TAMPER_NONE, &r); /* 2 attest tokens */
    assert_int_equal(r.status, 200);
    cf_buf_free(&r.body);
    cf_as_identity saved = e->id;
    e->id = id;
    worker_attach(e, &d, &w1, 1, NULL);
    e->id = saved;
    memset(&w2, 0, sizeof w2);
    stream_open(&d, w1.grant.token, &w2.s);
    char name[32];
    cf_buf data;
    cf_buf_init(&data, 0);
    bool ended;
    assert_false(stream_next(&w2.s, 3000, name, &data, &ended));
    long status = 0;
    curl_easy_getinfo(w2.s.easy, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 429);
    cf_buf_free(&data);
    /* Per-peer rate: the burst of 4 attest-class requests is spent. */
    http(&d, "POST", "/v1/workers/challenge", CF_SLICE_EMPTY, NULL, &r);
    cf_buf_free(&r.body);
    http(&d, "POST", "/v1/workers/challenge", CF_SLICE_EMPTY, NULL, &r);
    expect_error(&r, 429, "limit_exceeded");
    cf_buf_free(&r.body);
    assert_true(metric(&d, "confide_as_rate_limited_total") >= 1);

    /* A client that sends half a request is dropped after --read-timeout-ms. */
    int port = atoi(strrchr(d.base_url, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *partial = "POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{";
    assert_int_equal(write(fd, partial, strlen(partial)), (ssize_t)strlen(partial));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    time_t t0 = time(NULL);
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    char buf[512];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    assert_true(time(NULL) - t0 <= 3);
    close(fd);

    /* SIGTERM with a key stream open: the stream ends, the daemon exits 0. */
    stop_as(&d);
    cf_key_event ev;
    e->id = id;
    while (worker_event(e, &w1, 5000, &ev, &ended)) {
        cf_key_event_wipe(&ev);
    }
    e->id = saved;
    assert_true(ended);
    worker_free(&w1);
    worker_free(&w2);
    cf_as_identity_free(&id);
}

/* HTTPS with --tls-cert / --tls-key. */
static void test_tls(void **state)
{
    env_t *e = *state;
    char cmd[2048], cert[600], key[600];
    snprintf(cert, sizeof cert, "%s/tls.pem", e->tmp);
    snprintf(key, sizeof key, "%s/tls.key", e->tmp);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' 2>/dev/null",
             key, cert);
    assert_int_equal(system(cmd), 0);
    const char *const tls[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    daemon_t d;
    start_as(e, &d, "as_tls", tls);
    /* HTTPS, checked against the certificate as CA. */
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%s/healthz", strrchr(d.base_url, ':') + 1);
    CURL *c = curl_easy_init();
    cf_buf body;
    cf_buf_init(&body, 0);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, cert);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 200);
    curl_easy_cleanup(c);
    cf_buf_free(&body);
    stop_as(&d);
}

/* Run confide-as to completion (it must exit by itself) and return its
 * exit status; its stderr goes to `log`. */
static int run_as(const char *log, const char *const *args)
{
    char bin[600];
    snprintf(bin, sizeof bin, "%s/bin/confide-as", build_dir());
    const char *argv[32] = {bin};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL && n < 31; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        FILE *f = freopen(log, "w", stderr);
        FILE *o = freopen("/dev/null", "w", stdout);
        (void)f;
        (void)o;
        execv(bin, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static bool log_has(const char *log, const char *needle)
{
    cf_buf b;
    cf_test_read_file(log, false, &b);
    bool found = memmem(b.data, b.len, needle, strlen(needle)) != NULL;
    cf_buf_free(&b);
    return found;
}

/* Misconfiguration is refused at start with the reason, never served. */
static void test_refuses_bad_start(void **state)
{
    env_t *e = *state;
    char log[600], manifest[600];
    snprintf(log, sizeof log, "%s/bad_start.log", e->tmp);
    /* A manifest whose AS policy pins another binary: the self-check fails. */
    snprintf(manifest, sizeof manifest, "%s/other_as.json", e->tmp);
    cf_buf text;
    cf_buf_init(&text, 0);
    assert_cf_ok(cf_buf_append_slice(&text, cf_buf_slice(&e->manifest->bytes)));
    char as_hex[97];
    const json_t *ms = json_object_get(e->manifest->as_policy, "measurements");
    snprintf(as_hex, sizeof as_hex, "%s", json_string_value(json_array_get(ms, 0)));
    uint8_t *at = memmem(text.data, text.len, as_hex, 96);
    assert_non_null(at);
    at[0] = at[0] == '0' ? '1' : '0';
    FILE *f = fopen(manifest, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text.data, 1, text.len, f), text.len);
    fclose(f);
    cf_buf_free(&text);
    const char *const wrong_binary[] = {"--platform", "sim", "--sim-dir", e->sim_dir, "--manifest", manifest,
                                        "--port", "0", NULL};
    assert_int_equal(run_as(log, wrong_binary), 1);
    assert_true(log_has(log, "event=startup_failed err=policy_violation"));
    assert_true(log_has(log, "self-check"));
    /* Platform other than the manifest's AS platform. */
    const char *const wrong_platform[] = {"--platform", "snp", "--manifest", e->manifest_path, NULL};
    assert_int_equal(run_as(log, wrong_platform), 1);
    assert_true(log_has(log, "err=bad_config"));
    /* Usage errors exit 2; --help exits 0. */
    const char *const unknown_flag[] = {"--platfrom", "sim", NULL};
    assert_int_equal(run_as(log, unknown_flag), 2);
    const char *const missing[] = {"--platform", "sim", NULL};
    assert_int_equal(run_as(log, missing), 2);
    const char *const help[] = {"--help", NULL};
    assert_int_equal(run_as(log, help), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_metrics_help),
        cmocka_unit_test(test_worker_gets_exactly_its_scope),
        cmocka_unit_test(test_worker_rejections),
        cmocka_unit_test(test_upload_refusals_leave_no_state),
        cmocka_unit_test(test_delete_and_expiry_reach_streams),
        cmocka_unit_test(test_token_expiry),
        cmocka_unit_test(test_one_stream_per_token),
        cmocka_unit_test(test_abuse_limits),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_refuses_bad_start),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
