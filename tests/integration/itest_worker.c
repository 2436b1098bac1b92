/* itest_worker.c — the real confide-worker between a client (this process,
 * using the protocol library exactly as an application embedding client.h
 * does) and real inference servers on UNIX sockets:
 *
 *   - the real confide-as (sim platform) that the workers attest to; the
 *     client verifies it and uploads its inference secret like the proxy;
 *   - worker "llama" in front of a real llama-server (scripts/llama.sh, the
 *     random-weight test model), for deterministic comparisons (temperature
 *     0, fixed seed) against direct requests to the same llama-server;
 *   - worker "fake" in front of tests/fake-backend (fault injection, request
 *     log used to prove that refused requests never reach the backend).
 *     When valgrind is installed this worker runs under valgrind (memory
 *     errors and definite leaks make it exit 99, which the shutdown test
 *     checks); the SANITIZE=1 build runs it under ASan+UBSan instead.
 *
 * The AS issues short tokens (8 s, notice 3 s), so both workers re-attest
 * several times during the run; the last test checks they did and stayed
 * healthy. Every process is killed and the temp dir removed at exit, even
 * when a test fails. */
#define _GNU_SOURCE
#include "test_helper.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "confide/as_api.h"
#include "confide/client.h"
#include "confide/daemon.h"
#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/sim.h"
#include "confide/sse.h"

/* A phrase in every prompt: it must never appear in a daemon log. */
#define SECRET_PHRASE "purple-elephant-7731"

/* Under ASan freed memory sits in quarantine, so RSS says nothing about
 * live memory there. */
#if defined(__SANITIZE_ADDRESS__)
#define ITEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ITEST_ASAN 1
#endif
#endif
#ifndef ITEST_ASAN
#define ITEST_ASAN 0
#endif
#define LLAMA_MODEL "confide-tiny"
#define FAKE_MODEL "fake-model"

/* ---- processes -------------------------------------------------------------------- */

#define MAX_PROCS 16
static pid_t g_pids[MAX_PROCS];
static char *g_tmp;

static void kill_all(void)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        if (g_pids[i] > 0) {
            kill(-g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
            g_pids[i] = 0;
        }
    }
    if (g_tmp != NULL && getenv("CONFIDE_KEEP_TMP") == NULL) {
        cf_test_rmrf(g_tmp);
    }
}

static void forget_pid(pid_t pid)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        if (g_pids[i] == pid) {
            g_pids[i] = 0;
        }
    }
}

static pid_t spawn(const char *const *argv, const char *log)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0); /* own group: kill(-pid) reaches its children */
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        if (dup2(2, 1) < 0) {
            _exit(126);
        }
        execvp(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    for (int i = 0; i < MAX_PROCS; i++) {
        if (g_pids[i] == 0) {
            g_pids[i] = pid;
            return pid;
        }
    }
    fail_msg("too many processes");
    return -1;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return strdup("");
    }
    cf_buf b;
    cf_buf_init(&b, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        assert_cf_ok(cf_buf_append(&b, chunk, n));
    }
    fclose(f);
    assert_cf_ok(cf_buf_append_u8(&b, 0));
    char *s = (char *)cf_buf_take(&b, NULL);
    return s;
}

/* Wait for "event=<started>" in the log and return its port=N. */
static int wait_started(pid_t pid, const char *log, const char *started, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        char *text = read_text(log);
        const char *at = strstr(text, started);
        const char *port = at ? strstr(at, " port=") : NULL;
        if (port != NULL) {
            int p = atoi(port + 6);
            free(text);
            return p;
        }
        free(text);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            forget_pid(pid);
            char *t = read_text(log);
            fail_msg("process exited at start (log %s):\n%s", log, t);
        }
        usleep(50000);
    }
    fail_msg("not started after %d ms (log %s)", timeout_ms, log);
    return -1;
}

/* SIGTERM and wait; returns the exit status (or -1 if killed). */
static int stop_proc(pid_t pid, int timeout_ms)
{
    if (pid <= 0) {
        return -1;
    }
    kill(pid, SIGTERM);
    int status = 0;
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            forget_pid(pid);
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        usleep(20000);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    forget_pid(pid);
    return -1;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

typedef struct resp {
    long status;
    cf_buf body;
    cf_buf headers;
} resp_t;

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    cf_buf *b = arg;
    return cf_is_ok(cf_buf_append(b, p, size * n)) ? size * n : 0;
}

typedef struct target {
    const char *unix_socket; /* or NULL for 127.0.0.1:port */
    int port;
    const char *ca_file; /* https with this CA (the worker's TLS listener) */
} target_t;

static CURL *easy_for(const target_t *t, const char *method, const char *path, cf_slice body,
                      struct curl_slist *hdrs, resp_t *out, long timeout_s)
{
    char url[512];
    if (t->unix_socket != NULL) {
        snprintf(url, sizeof url, "http://localhost%s", path);
    } else {
        snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", t->ca_file ? "https" : "http", t->port, path);
    }
    cf_buf_init(&out->body, 0);
    cf_buf_init(&out->headers, 0);
    out->status = 0;
    CURL *c = curl_easy_init();
    assert_non_null(c);
    if (t->unix_socket != NULL) {
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, t->unix_socket);
    }
    if (t->ca_file != NULL) {
        curl_easy_setopt(c, CURLOPT_CAINFO, t->ca_file);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.ptr ? (const char *)body.ptr : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body.len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    return c;
}

static struct curl_slist *json_headers(bool confide)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (confide) {
        h = curl_slist_append(h, "Confide-Version: 1");
    }
    return h;
}

static void http(const target_t *t, const char *method, const char *path, cf_slice body, bool confide, resp_t *out)
{
    struct curl_slist *h = json_headers(confide);
    CURL *c = easy_for(t, method, path, body, h, out, 60);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    assert_cf_ok(cf_buf_append_u8(&out->headers, 0));
    out->headers.len--;
}

static void resp_free(resp_t *r)
{
    cf_buf_free(&r->body);
    cf_buf_free(&r->headers);
}

/* A response header's value (case-insensitive name), in a static buffer. */
static const char *header(const resp_t *r, const char *name)
{
    static char value[256];
    const char *p = (const char *)r->headers.data;
    size_t nl = strlen(name);
    while (p != NULL && *p) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') {
                v++;
            }
            size_t n = strcspn(v, "\r\n");
            snprintf(value, sizeof value, "%.*s", (int)n, v);
            return value;
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return NULL;
}

static const char *error_code(const cf_buf *body)
{
    static char code[64];
    json_t *j = json_loadb((const char *)body->data, body->len, 0, NULL);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    snprintf(code, sizeof code, "%s", c ? c : "(none)");
    json_decref(j);
    return code;
}

/* ---- the environment ---------------------------------------------------------------- */

typedef struct env {
    char sim_dir[512], manifest_path[512];
    char as_log[512], llama_log[512], fake_log[512], fake_requests[512];
    char wl_log[512], wf_log[512], wt_log[512], ws_log[512];
    char tls_cert[512], tls_key[512];
    char as_port_text[16];
    char llama_sock[512], fake_sock[512];
    pid_t as_pid, llama_pid, fake_pid, wl_pid, wf_pid, wt_pid, ws_pid;
    target_t as, llama, fake, wl, wf, wt, ws;
    bool wf_valgrind;
    cf_manifest *manifest;
    cf_as_identity id;
    uint8_t k[CF_INFERENCE_KEY_LEN];
    char key_id[CF_KEY_ID_LEN + 1];
} env_t;

static const char *build_dir(void)
{
    const char *b = getenv("CONFIDE_BUILD");
    return b && b[0] ? b : "build/default";
}

static void measure_hex(const char *path, char hex[97])
{
    uint8_t m[CF_SIM_MEASUREMENT_LEN];
    assert_cf_ok(cf_sim_measure_file(path, m));
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(m, sizeof m), hex, 97));
}

/* LLAMA_SERVER / CONFIDE_LLAMA_MODEL from the env or scripts/llama.sh. */
static void llama_paths(char server[512], char model[512])
{
    const char *s = getenv("LLAMA_SERVER"), *m = getenv("CONFIDE_LLAMA_MODEL");
    server[0] = model[0] = '\0';
    if (s && m) {
        snprintf(server, 512, "%s", s);
        snprintf(model, 512, "%s", m);
        return;
    }
    FILE *p = popen("scripts/llama.sh --model --no-build", "r");
    assert_non_null(p);
    char line[1024];
    while (fgets(line, sizeof line, p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "LLAMA_SERVER=", 13) == 0) {
            snprintf(server, 512, "%.500s", line + 13);
        } else if (strncmp(line, "CONFIDE_LLAMA_MODEL=", 20) == 0) {
            snprintf(model, 512, "%.500s", line + 20);
        }
    }
    pclose(p);
    if (!server[0] || !model[0]) {
        fail_msg("llama-server or the test model is missing: run scripts/e2e-prepare.sh (or make llama)");
    }
}

static void wait_http_ok(const target_t *t, const char *path, int timeout_ms, pid_t pid, const char *log)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        resp_t r;
        struct curl_slist *h = json_headers(false);
        CURL *c = easy_for(t, "GET", path, CF_SLICE_EMPTY, h, &r, 2);
        CURLcode rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        resp_free(&r);
        if (rc == CURLE_OK && r.status == 200) {
            return;
        }
        int status;
        if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
            forget_pid(pid);
            fail_msg("process exited before %s answered 200 (log %s):\n%s", path, log, read_text(log));
        }
        usleep(100000);
    }
    fail_msg("%s not 200 after %d ms (log %s):\n%s", path, timeout_ms, log, read_text(log));
}

static pid_t start_worker_at(env_t *e, int as_port, const char *name, const char *backend_sock, char log[512],
                             bool valgrind, const char *const *extra)
{
    snprintf(log, 512, "%s/%s.log", g_tmp, name);
    char bin[600], as_url[64];
    snprintf(bin, sizeof bin, "%s/bin/confide-worker", build_dir());
    snprintf(as_url, sizeof as_url, "http://127.0.0.1:%d", as_port);
    const char *argv[64];
    size_t n = 0;
    if (valgrind) {
        argv[n++] = "valgrind";
        argv[n++] = "-q";
        argv[n++] = "--error-exitcode=99";
        argv[n++] = "--leak-check=full";
        argv[n++] = "--errors-for-leak-kinds=definite";
        argv[n++] = "--show-leak-kinds=definite";
    }
    const char *base[] = {bin, "--platform", "sim", "--sim-dir", e->sim_dir, "--manifest", e->manifest_path,
                          "--as-url", as_url, "--as-allow-http", "--backend-socket", backend_sock, "--port", "0",
                          "--backoff-min-ms", "100", "--backoff-max-ms", "1000", "--shutdown-timeout-ms", "20000",
                          NULL};
    for (size_t i = 0; base[i] != NULL; i++) {
        argv[n++] = base[i];
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    return spawn(argv, log);
}

static pid_t start_worker(env_t *e, const char *name, const char *backend_sock, char log[512], bool valgrind,
                          const char *const *extra)
{
    return start_worker_at(e, e->as.port, name, backend_sock, log, valgrind, extra);
}

/* Upload a fresh key whose scope is `only_model`, or both test models. */
static void upload_key_scoped(env_t *e, uint32_t ttl, uint8_t k[32], char key_id[23], const char *only_model)
{
    assert_cf_ok(cf_key_generate(k, key_id));
    cf_key_scope scope = {.count = only_model ? 1 : 2};
    snprintf(scope.models[0], sizeof scope.models[0], "%s", only_model ? only_model : LLAMA_MODEL);
    if (only_model == NULL) {
        snprintf(scope.models[1], sizeof scope.models[1], "%s", FAKE_MODEL);
    }
    cf_buf body;
    cf_buf_init(&body, 0);
    uint8_t digest[32];
    assert_cf_ok(cf_key_upload_seal(&e->id, k, ttl, &scope, &body, digest));
    resp_t r;
    http(&e->as, "POST", "/v1/keys", cf_buf_slice(&body), false, &r);
    if (r.status != 200) {
        fail_msg("key upload: %ld %.*s", r.status, (int)r.body.len, (const char *)r.body.data);
    }
    cf_key_receipt rc;
    assert_cf_ok(cf_key_receipt_verify(&e->id, digest, key_id, cf_buf_slice(&r.body), &rc));
    resp_free(&r);
    cf_buf_free(&body);
}

static void upload_key(env_t *e, uint32_t ttl, uint8_t k[32], char key_id[23])
{
    upload_key_scoped(e, ttl, k, key_id, NULL);
}

static double metric(const target_t *t, const char *series)
{
    resp_t r;
    http(t, "GET", "/metrics", CF_SLICE_EMPTY, false, &r);
    assert_cf_ok(cf_buf_append_u8(&r.body, 0));
    /* The sample line, not the # HELP / # TYPE lines. */
    char needle[512];
    snprintf(needle, sizeof needle, "\n%s ", series);
    const char *at = strstr((const char *)r.body.data, needle);
    double v = at ? atof(at + strlen(needle)) : -1;
    resp_free(&r);
    return v;
}

static size_t fake_request_count(const env_t *e)
{
    char *text = read_text(e->fake_requests);
    size_t n = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strstr(line, "\"path\":\"/health\"") == NULL) {
            n++;
        }
    }
    free(text);
    return n;
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

static void start_as(env_t *e)
{
    char bin[600];
    snprintf(e->as_log, sizeof e->as_log, "%s/as-%s.log", g_tmp, e->as_pid ? "restarted" : "first");
    snprintf(bin, sizeof bin, "%s/bin/confide-as", build_dir());
    const char *as_argv[] = {bin, "--platform", "sim", "--sim-dir", e->sim_dir, "--manifest", e->manifest_path,
                             "--port", e->as_port_text, "--keepalive", "1", "--token-ttl", "8", "--token-notice", "3",
                             "--rate-burst", "10000", "--rate-attest", "100000", NULL};
    e->as_pid = spawn(as_argv, e->as_log);
    e->as.port = wait_started(e->as_pid, e->as_log, "event=as_started", 10000);
}

/* The client side of flows 1-2: verify the AS as the proxy does. */
static void verify_as(env_t *e)
{
    uint8_t nonce[CF_AS_NONCE_LEN];
    assert_cf_ok(cf_random(nonce, sizeof nonce));
    cf_buf req;
    cf_buf_init(&req, 0);
    assert_cf_ok(cf_as_attest_request_build(nonce, &req));
    resp_t r;
    http(&e->as, "POST", "/v1/attest", cf_buf_slice(&req), false, &r);
    assert_int_equal(r.status, 200);
    assert_cf_ok(cf_as_attest_response_verify(cf_buf_slice(&r.body), nonce, e->manifest->sha256, (int64_t)time(NULL),
                                              &e->id));
    resp_free(&r);
    cf_buf_free(&req);
}

static int setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    atexit(kill_all);
    env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    /* Published at once: if any step below fails (llama-server missing, a
     * daemon that does not start), cmocka still runs the group teardown,
     * which must stop every process started so far. */
    *state = e;
    g_tmp = cf_test_tmpdir();
    snprintf(e->sim_dir, sizeof e->sim_dir, "%s/sim", g_tmp);
    cf_sim_init_options opt = {.svn = 1, .now = (int64_t)time(NULL)};
    assert_cf_ok(cf_sim_init(e->sim_dir, &opt));
    char fp[65], as_m[97], worker_m[97], bin[600];
    assert_cf_ok(cf_sim_root_fingerprint(e->sim_dir, fp));
    snprintf(bin, sizeof bin, "%s/bin/confide-as", build_dir());
    measure_hex(bin, as_m);
    snprintf(bin, sizeof bin, "%s/bin/confide-worker", build_dir());
    measure_hex(bin, worker_m);
    char *text = NULL;
    assert_true(asprintf(&text,
                         "{\"version\": 1, \"name\": \"itest-worker\", \"accepted_roots\": [\"%s\"],\n"
                         " \"as\": {\"platform\": \"sim\", \"policy\": {\"measurements\": [\"%s\"]}},\n"
                         " \"workers\": [\n"
                         "  {\"name\": \"inference\", \"platform\": \"sim\", \"policy\": {\"measurements\": [\"%s\"]},"
                         " \"models\": [\"" LLAMA_MODEL "\", \"" FAKE_MODEL "\"]}],\n"
                         " \"keys\": {\"ttl_min_s\": 1, \"ttl_max_s\": 3600}}\n",
                         fp, as_m, worker_m) > 0);
    snprintf(e->manifest_path, sizeof e->manifest_path, "%s/manifest.json", g_tmp);
    FILE *f = fopen(e->manifest_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_cf_ok(cf_manifest_parse(cf_slice_cstr(text), &e->manifest));
    free(text);

    /* The attestation service: short tokens so the workers re-attest. A
     * fixed port, so that it can be restarted under the workers' --as-url. */
    snprintf(e->as_port_text, sizeof e->as_port_text, "%d", free_port());
    start_as(e);

    /* llama-server on a UNIX socket (as next to the worker in the TEE). */
    char server[512], model[512];
    llama_paths(server, model);
    snprintf(e->llama_sock, sizeof e->llama_sock, "%s/llama.sock", g_tmp);
    snprintf(e->llama_log, sizeof e->llama_log, "%s/llama.log", g_tmp);
    const char *llama_argv[] = {server, "--model", model, "--host", e->llama_sock, "--alias", LLAMA_MODEL,
                                "--ctx-size", "2048", "--parallel", "2", "--threads", "1", "--threads-batch", "1",
                                "--threads-http", "4", "--no-warmup", NULL};
    e->llama_pid = spawn(llama_argv, e->llama_log);
    e->llama.unix_socket = e->llama_sock;

    /* The fault-injection backend. */
    snprintf(e->fake_sock, sizeof e->fake_sock, "%s/fake.sock", g_tmp);
    snprintf(e->fake_log, sizeof e->fake_log, "%s/fake.log", g_tmp);
    snprintf(e->fake_requests, sizeof e->fake_requests, "%s/fake-requests.jsonl", g_tmp);
    const char *fake_argv[] = {"node", "tests/fake-backend/server.mjs", "--socket", e->fake_sock, "--log",
                               e->fake_requests, NULL};
    e->fake_pid = spawn(fake_argv, e->fake_log);
    e->fake.unix_socket = e->fake_sock;

    /* The workers. */
    e->wf_valgrind = getenv("CONFIDE_ITEST_NO_VALGRIND") == NULL && system("valgrind --version >/dev/null 2>&1") == 0;
    if (ITEST_ASAN) {
        e->wf_valgrind = false; /* the ASan build checks memory itself */
    }
    static const char *const llama_extra[] = {"--backend-idle-timeout-ms", "30000", NULL};
    e->wl_pid = start_worker(e, "worker-llama", e->llama_sock, e->wl_log, false, llama_extra);
    static const char *const fake_extra[] = {"--backend-idle-timeout-ms", "1500", "--backend-timeout-ms", "3000",
                                             "--max-event-size", "600k", NULL};
    e->wf_pid = start_worker(e, "worker-fake", e->fake_sock, e->wf_log, e->wf_valgrind, fake_extra);
    /* A third worker (fake backend, no valgrind) for backpressure, and a
     * fourth with a TLS listener. */
    snprintf(e->tls_cert, sizeof e->tls_cert, "%s/tls-cert.pem", g_tmp);
    snprintf(e->tls_key, sizeof e->tls_key, "%s/tls-key.pem", g_tmp);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s -out %s -days 1 "
             "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null",
             e->tls_key, e->tls_cert);
    assert_int_equal(system(cmd), 0);
    const char *tls_extra[] = {"--tls-cert", e->tls_cert, "--tls-key", e->tls_key, NULL};
    e->ws_pid = start_worker(e, "worker-tls", e->fake_sock, e->ws_log, false, tls_extra);
    e->ws.ca_file = e->tls_cert;
    static const char *const bp_extra[] = {"--max-body", "100000", NULL};
    e->wt_pid = start_worker(e, "worker-bp", e->fake_sock, e->wt_log, false, bp_extra);
    e->wl.port = wait_started(e->wl_pid, e->wl_log, "event=worker_started", 10000);
    e->wt.port = wait_started(e->wt_pid, e->wt_log, "event=worker_started", 10000);
    e->ws.port = wait_started(e->ws_pid, e->ws_log, "event=worker_started", 10000);
    e->wf.port = wait_started(e->wf_pid, e->wf_log, "event=worker_started", 60000);

    /* The client side: verify the AS (as the proxy does), upload a key. */
    verify_as(e);
    upload_key(e, 600, e->k, e->key_id);

    wait_http_ok(&e->llama, "/health", 60000, e->llama_pid, e->llama_log);
    wait_http_ok(&e->fake, "/health", 15000, e->fake_pid, e->fake_log);
    wait_http_ok(&e->wl, "/healthz", 15000, e->wl_pid, e->wl_log);
    wait_http_ok(&e->wf, "/healthz", 60000, e->wf_pid, e->wf_log);
    wait_http_ok(&e->wt, "/healthz", 15000, e->wt_pid, e->wt_log);
    wait_http_ok(&e->ws, "/healthz", 15000, e->ws_pid, e->ws_log);
    *state = e;
    return 0;
}

/* Tolerates a setup that failed part-way (NULL or partial state). */
static int teardown(void **state)
{
    env_t *e = *state;
    kill_all(); /* every process spawned so far, first: nothing below can fail */
    if (e != NULL) {
        cf_as_identity_free(&e->id);
        cf_manifest_free(e->manifest);
        cf_wipe(e->k, sizeof e->k);
        free(e);
        *state = NULL;
    }
    free(g_tmp);
    g_tmp = NULL;
    curl_global_cleanup();
    return 0;
}

/* ---- encrypted exchanges ------------------------------------------------------------------ */

typedef struct exchange {
    long status;
    const char *plaintext_error; /* Confide-Error of a plaintext reply, else NULL */
    cf_buf plain;                /* decrypted body (or SSE text) */
    cf_result finish;            /* cf_client_finish: complete and authenticated? */
    cf_error_code finish_code;
} exchange_t;

static void exchange_free(exchange_t *x)
{
    cf_buf_free(&x->plain);
}

static void send_sealed(const target_t *t, const char *path, cf_slice enc, cf_client_call *call, exchange_t *x)
{
    resp_t r;
    http(t, "POST", path, enc, true, &r);
    x->status = r.status;
    cf_buf_init(&x->plain, 0);
    static char perr[64];
    const char *pt = header(&r, "Confide-Plaintext");
    if (pt != NULL) {
        assert_true(r.status < 200 || r.status >= 300); /* never a plaintext 2xx */
        const char *code = header(&r, "Confide-Error");
        assert_non_null(code);
        snprintf(perr, sizeof perr, "%s", code);
        x->plaintext_error = perr;
        assert_string_equal(error_code(&r.body), perr);
        resp_free(&r);
        return;
    }
    x->plaintext_error = NULL;
    const char *v = header(&r, "Confide-Version");
    assert_non_null(v);
    assert_string_equal(v, "1");
    const char *ct = header(&r, "Content-Type");
    assert_non_null(ct);
    if (strncmp(ct, "text/event-stream", 17) == 0) {
        /* Feed in small pieces: the client parses SSE incrementally. */
        for (size_t off = 0; off < r.body.len; off += 777) {
            size_t n = r.body.len - off < 777 ? r.body.len - off : 777;
            assert_cf_ok(cf_client_open_stream(call, (int)r.status, cf_slice_make(r.body.data + off, n), &x->plain));
        }
    } else {
        assert_cf_ok(cf_client_open_response(call, (int)r.status, cf_buf_slice(&r.body), &x->plain));
    }
    x->finish = cf_client_finish(call);
    x->finish_code = cf_is_ok(x->finish) ? CF_E_OK : cf_error_code_last();
    assert_cf_ok(cf_buf_append_u8(&x->plain, 0));
    x->plain.len--;
    resp_free(&r);
}

/* Seal `body` for `endpoint` with the env's key and send it. */
static void sealed(const env_t *e, const target_t *t, const char *endpoint, const char *path, const char *body,
                   exchange_t *x)
{
    cf_buf enc;
    cf_buf_init(&enc, 0);
    cf_client_call *call = NULL;
    assert_cf_ok(cf_client_seal_request(e->k, endpoint, cf_slice_cstr(body), NULL, &enc, &call));
    send_sealed(t, path, cf_buf_slice(&enc), call, x);
    cf_client_call_free(call);
    cf_buf_free(&enc);
}

static void chat(const env_t *e, const target_t *t, const char *model, const char *prompt, bool stream,
                 exchange_t *x)
{
    char *body = NULL;
    assert_true(asprintf(&body,
                         "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"%s " SECRET_PHRASE
                         "\"}],\"max_tokens\":12,\"temperature\":0,\"seed\":42,\"stream\":%s}",
                         model, prompt, stream ? "true" : "false") > 0);
    sealed(e, t, "chat.completions", "/v1/chat/completions", body, x);
    free(body);
}

/* Concatenate choices[0].delta.content (or .text) of every SSE data event
 * (parsed with the library's SSE parser: data may span several lines). */
typedef struct text_acc {
    cf_buf *out;
    size_t events;
    bool saw_done, saw_error;
} text_acc;

static CF_RESULT text_event(void *ctx, const cf_sse_event *ev)
{
    text_acc *a = ctx;
    if (!ev->has_data) {
        return CF_OK;
    }
    if (cf_slice_eq_cstr(ev->data, "[DONE]")) {
        a->saw_done = true;
        return CF_OK;
    }
    json_t *j = json_loadb((const char *)ev->data.ptr, ev->data.len, 0, NULL);
    if (j == NULL) {
        fail_msg("decrypted event is not JSON: %.*s", (int)ev->data.len, (const char *)ev->data.ptr);
    }
    a->events++;
    if (json_object_get(j, "error") != NULL) {
        a->saw_error = true;
    }
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    const char *s = json_string_value(json_object_get(json_object_get(c0, "delta"), "content"));
    if (s == NULL) {
        s = json_string_value(json_object_get(c0, "text"));
    }
    if (s != NULL) {
        assert_cf_ok(cf_buf_append_cstr(a->out, s));
    }
    json_decref(j);
    return CF_OK;
}

static void stream_text(const char *sse, cf_buf *out, size_t *events, bool *saw_done, bool *saw_error)
{
    text_acc a = {.out = out};
    cf_sse_parser p;
    cf_sse_parser_init(&p, 4 * 1024 * 1024, text_event, &a);
    assert_cf_ok(cf_sse_parser_feed(&p, cf_slice_cstr(sse)));
    assert_cf_ok(cf_sse_parser_finish(&p));
    cf_sse_parser_free(&p);
    *events = a.events;
    *saw_done = a.saw_done;
    *saw_error = a.saw_error;
    assert_cf_ok(cf_buf_append_u8(out, 0));
    out->len--;
}

static const char *message_content(const char *body, char *buf, size_t bufsize)
{
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    const char *s = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message"), "content"));
    snprintf(buf, bufsize, "%s", s ? s : "(none)");
    json_decref(j);
    return buf;
}

/* ---- tests: real llama-server ----------------------------------------------------------------- */

static void test_llama_chat_matches_direct(void **state)
{
    env_t *e = *state;
    /* Direct, plaintext, to the same llama-server: the reference. */
    const char *direct_body = "{\"model\":\"" LLAMA_MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"hello "
                              SECRET_PHRASE "\"}],\"max_tokens\":12,\"temperature\":0,\"seed\":42,\"stream\":false}";
    resp_t d;
    http(&e->llama, "POST", "/v1/chat/completions", cf_slice_cstr(direct_body), false, &d);
    assert_int_equal(d.status, 200);
    assert_cf_ok(cf_buf_append_u8(&d.body, 0));
    char want[4096], got[4096];
    message_content((const char *)d.body.data, want, sizeof want);
    resp_free(&d);

    exchange_t x;
    chat(e, &e->wl, LLAMA_MODEL, "hello", false, &x);
    assert_null(x.plaintext_error);
    assert_int_equal(x.status, 200);
    assert_cf_ok(x.finish);
    message_content((const char *)x.plain.data, got, sizeof got);
    assert_string_equal(got, want);
    assert_true(strlen(want) > 0);
    exchange_free(&x);
}

static void test_llama_stream_matches_direct(void **state)
{
    env_t *e = *state;
    const char *direct_body = "{\"model\":\"" LLAMA_MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"stream "
                              SECRET_PHRASE "\"}],\"max_tokens\":12,\"temperature\":0,\"seed\":42,\"stream\":true}";
    resp_t d;
    http(&e->llama, "POST", "/v1/chat/completions", cf_slice_cstr(direct_body), false, &d);
    assert_int_equal(d.status, 200);
    assert_cf_ok(cf_buf_append_u8(&d.body, 0));
    cf_buf want, got;
    cf_buf_init(&want, 0);
    cf_buf_init(&got, 0);
    size_t want_events, got_events;
    bool done, err;
    stream_text((const char *)d.body.data, &want, &want_events, &done, &err);
    assert_true(done);
    resp_free(&d);

    exchange_t x;
    chat(e, &e->wl, LLAMA_MODEL, "stream", true, &x);
    assert_null(x.plaintext_error);
    assert_int_equal(x.status, 200);
    assert_cf_ok(x.finish); /* final marker seen: not truncated */
    stream_text((const char *)x.plain.data, &got, &got_events, &done, &err);
    assert_true(done);
    assert_false(err);
    assert_string_equal((const char *)got.data, (const char *)want.data);
    assert_int_equal(got_events, want_events);
    assert_true(got_events >= 2);
    printf("# llama stream: %zu events, %zu bytes of text, identical to the direct stream\n", got_events, got.len);
    cf_buf_free(&want);
    cf_buf_free(&got);
    exchange_free(&x);
}

/* /v1/completions (streamed) through the worker equals the direct reply. */
static void test_llama_completions_match_direct(void **state)
{
    env_t *e = *state;
    const char *body = "{\"model\":\"" LLAMA_MODEL "\",\"prompt\":\"Once " SECRET_PHRASE
                       "\",\"max_tokens\":10,\"temperature\":0,\"seed\":7,\"stream\":true}";
    resp_t d;
    http(&e->llama, "POST", "/v1/completions", cf_slice_cstr(body), false, &d);
    assert_int_equal(d.status, 200);
    assert_cf_ok(cf_buf_append_u8(&d.body, 0));
    cf_buf want, got;
    cf_buf_init(&want, 0);
    cf_buf_init(&got, 0);
    size_t want_events, got_events;
    bool done, err;
    stream_text((const char *)d.body.data, &want, &want_events, &done, &err);
    resp_free(&d);
    exchange_t x;
    sealed(e, &e->wl, "completions", "/v1/completions", body, &x);
    assert_null(x.plaintext_error);
    assert_int_equal(x.status, 200);
    assert_cf_ok(x.finish);
    stream_text((const char *)x.plain.data, &got, &got_events, &done, &err);
    assert_false(err);
    assert_string_equal((const char *)got.data, (const char *)want.data);
    assert_int_equal(got_events, want_events);
    cf_buf_free(&want);
    cf_buf_free(&got);
    exchange_free(&x);
}

/* /v1/embeddings (fake backend: vectors derived from SHA-256 of the input):
 * the decrypted reply carries exactly the direct reply's vectors. */
static void test_embeddings(void **state)
{
    env_t *e = *state;
    const char *body = "{\"model\":\"" FAKE_MODEL "\",\"input\":[\"a " SECRET_PHRASE "\",\"b\"]}";
    resp_t d;
    http(&e->fake, "POST", "/v1/embeddings", cf_slice_cstr(body), false, &d);
    assert_int_equal(d.status, 200);
    exchange_t x;
    sealed(e, &e->wf, "embeddings", "/v1/embeddings", body, &x);
    assert_null(x.plaintext_error);
    assert_int_equal(x.status, 200);
    assert_cf_ok(x.finish);
    json_t *a = json_loadb((const char *)d.body.data, d.body.len, 0, NULL);
    json_t *b = json_loadb((const char *)x.plain.data, x.plain.len, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(json_array_size(json_object_get(b, "data")), 2);
    assert_true(json_equal(json_object_get(a, "data"), json_object_get(b, "data")));
    json_decref(a);
    json_decref(b);
    resp_free(&d);
    exchange_free(&x);
}

static void test_llama_models_passthrough(void **state)
{
    env_t *e = *state;
    resp_t r;
    http(&e->wl, "GET", "/v1/models", CF_SLICE_EMPTY, false, &r);
    assert_int_equal(r.status, 200);
    assert_null(header(&r, "Confide-Plaintext"));
    json_t *j = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    assert_non_null(j);
    const char *id = json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
    assert_non_null(id);
    assert_string_equal(id, LLAMA_MODEL);
    json_decref(j);
    resp_free(&r);
    /* Any other path is refused, never forwarded. */
    http(&e->wl, "GET", "/v1/files", CF_SLICE_EMPTY, false, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(&e->wl, "POST", "/v1/audio/speech", cf_slice_cstr("{}"), true, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
}

/* ---- tests: refusals never reach the backend ------------------------------------------------- */

static void expect_plain_error(exchange_t *x, long status, const char *code)
{
    if (x->status != status || x->plaintext_error == NULL || strcmp(x->plaintext_error, code) != 0) {
        fail_msg("expected plaintext %ld %s, got %ld %s", status, code, x->status,
                 x->plaintext_error ? x->plaintext_error : "(encrypted)");
    }
    exchange_free(x);
}

static void test_refusals_never_reach_backend(void **state)
{
    env_t *e = *state;
    const char *body = "{\"model\":\"" FAKE_MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"refuse "
                       SECRET_PHRASE "\"}]}";
    size_t before = fake_request_count(e);
    exchange_t x;
    cf_buf enc;
    cf_client_call *call = NULL;

    /* Tampered: one ciphertext character changed. */
    cf_buf_init(&enc, 0);
    assert_cf_ok(cf_client_seal_request(e->k, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
    char *v = memmem(enc.data, enc.len, "cf1", 3);
    assert_non_null(v);
    char *ct = v;
    for (int colons = 0; colons < 3; ct++) {
        colons += *ct == ':';
    }
    ct[4] = ct[4] == 'A' ? 'B' : 'A';
    send_sealed(&e->wf, "/v1/chat/completions", cf_buf_slice(&enc), call, &x);
    expect_plain_error(&x, 400, "auth_failed");
    cf_client_call_free(call);
    cf_buf_free(&enc);

    /* A changed plain field (the gateway rewrites the model). */
    cf_buf_init(&enc, 0);
    assert_cf_ok(cf_client_seal_request(e->k, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
    char *m = memmem(enc.data, enc.len, FAKE_MODEL, strlen(FAKE_MODEL));
    assert_non_null(m);
    m[0] = 'F';
    send_sealed(&e->wf, "/v1/chat/completions", cf_buf_slice(&enc), call, &x);
    expect_plain_error(&x, 400, "auth_failed");
    cf_client_call_free(call);
    cf_buf_free(&enc);

    /* Unknown key: the worker asks the AS once, then refuses. */
    uint8_t other[32];
    assert_cf_ok(cf_random(other, sizeof other));
    double fetch_fail = metric(&e->wf, "confide_worker_key_fetches_total{result=\"not_found\"}");
    cf_buf_init(&enc, 0);
    assert_cf_ok(cf_client_seal_request(other, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
    send_sealed(&e->wf, "/v1/chat/completions", cf_buf_slice(&enc), call, &x);
    expect_plain_error(&x, 401, "unknown_key");
    cf_client_call_free(call);
    cf_buf_free(&enc);
    assert_true(metric(&e->wf, "confide_worker_key_fetches_total{result=\"not_found\"}") == fetch_fail + 1);

    /* Stale salt: 10 minutes old (window 5 min). */
    cf_client_options old = {.now_ms = (int64_t)time(NULL) * 1000 - 600000};
    cf_buf_init(&enc, 0);
    assert_cf_ok(cf_client_seal_request(e->k, "chat.completions", cf_slice_cstr(body), &old, &enc, &call));
    send_sealed(&e->wf, "/v1/chat/completions", cf_buf_slice(&enc), call, &x);
    expect_plain_error(&x, 400, "stale_request");
    cf_client_call_free(call);
    cf_buf_free(&enc);

    /* A plaintext member where ciphertext belongs. */
    resp_t r;
    http(&e->wf, "POST", "/v1/chat/completions", cf_slice_cstr(body), true, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(header(&r, "Confide-Error"), "plaintext_field");
    resp_free(&r);

    /* Wrong protocol version header. */
    struct curl_slist *h = curl_slist_append(NULL, "Confide-Version: 9");
    CURL *c = easy_for(&e->wf, "POST", "/v1/chat/completions", cf_slice_cstr(body), h, &r, 10);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    assert_int_equal(r.status, 400);
    assert_cf_ok(cf_buf_append_u8(&r.headers, 0));
    assert_non_null(strstr((const char *)r.headers.data, "unsupported_version"));
    resp_free(&r);

    /* None of these reached the backend. */
    assert_int_equal(fake_request_count(e), before);

    /* A good request after all that does reach it, exactly once. */
    cf_buf_init(&enc, 0);
    assert_cf_ok(cf_client_seal_request(e->k, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
    send_sealed(&e->wf, "/v1/chat/completions", cf_buf_slice(&enc), call, &x);
    assert_int_equal(x.status, 200);
    assert_null(x.plaintext_error);
    assert_cf_ok(x.finish);
    assert_non_null(strstr((const char *)x.plain.data, "echo: refuse " SECRET_PHRASE));
    exchange_free(&x);
    cf_client_call_free(call);
    cf_buf_free(&enc);
    assert_int_equal(fake_request_count(e), before + 1);
}

/* --max-body: a larger body is refused with the protocol's plaintext
 * too_large before anything is decrypted or forwarded. */
static void test_body_limit(void **state)
{
    env_t *e = *state;
    size_t before = fake_request_count(e);
    char *big = malloc(120001);
    assert_non_null(big);
    int n = snprintf(big, 120001, "{\"model\":\"" FAKE_MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"");
    memset(big + n, 'a', 120000 - (size_t)n - 4);
    memcpy(big + 120000 - 4, "\"}]}", 5);
    exchange_t x;
    sealed(e, &e->wt, "chat.completions", "/v1/chat/completions", big, &x);
    expect_plain_error(&x, 413, "too_large");
    free(big);
    assert_int_equal(fake_request_count(e), before);
}

/* An unknown key ID is fetched from the AS once before failing. Made
 * deterministic with a second AS that admits one key stream: of two workers
 * one streams, the other holds a valid token but no stream, so it can only
 * learn the key by fetching it. */
static void test_unknown_key_fetched_once(void **state)
{
    env_t *e = *state;
    char log2[512], logs[2][512], bin[600];
    snprintf(log2, sizeof log2, "%s/as-fetch.log", g_tmp);
    snprintf(bin, sizeof bin, "%s/bin/confide-as", build_dir());
    const char *as_argv[] = {bin, "--platform", "sim", "--sim-dir", e->sim_dir, "--manifest", e->manifest_path,
                             "--port", "0", "--max-workers", "1", "--keepalive", "1", NULL};
    pid_t as2 = spawn(as_argv, log2);
    int as2_port = wait_started(as2, log2, "event=as_started", 10000);
    pid_t w[2];
    target_t t[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "worker-fetch%d", i);
        w[i] = start_worker_at(e, as2_port, name, e->fake_sock, logs[i], false, NULL);
    }
    for (int i = 0; i < 2; i++) {
        t[i].port = wait_started(w[i], logs[i], "event=worker_started", 10000);
    }
    /* Both hold tokens; exactly one holds the stream. */
    int streamless = -1;
    for (int waited = 0; streamless < 0; waited += 100) {
        double tok0 = metric(&t[0], "confide_worker_token_valid"), tok1 = metric(&t[1], "confide_worker_token_valid");
        double up0 = metric(&t[0], "confide_worker_key_stream_up"), up1 = metric(&t[1], "confide_worker_key_stream_up");
        if (tok0 == 1 && tok1 == 1 && up0 + up1 == 1) {
            streamless = up0 == 1 ? 1 : 0;
        } else if (waited > 15000) {
            fail_msg("fetch setup: tokens %.0f %.0f, streams %.0f %.0f", tok0, tok1, up0, up1);
        } else {
            usleep(100000);
        }
    }
    /* The client uploads a key to that AS. */
    target_t saved_as = e->as;
    cf_as_identity saved_id = e->id;
    uint8_t k[32];
    char key_id[23];
    e->as = (target_t){.port = as2_port};
    verify_as(e);
    upload_key(e, 600, k, key_id);
    cf_as_identity_free(&e->id);
    e->as = saved_as;
    e->id = saved_id;

    const char *body = "{\"model\":\"" FAKE_MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"fetched "
                       SECRET_PHRASE "\"}]}";
    target_t *tw = &t[streamless];
    assert_true(metric(tw, "confide_worker_keys") == 0);
    for (int round = 0; round < 2; round++) {
        cf_buf enc;
        cf_buf_init(&enc, 0);
        cf_client_call *call = NULL;
        assert_cf_ok(cf_client_seal_request(k, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
        exchange_t x;
        send_sealed(tw, "/v1/chat/completions", cf_buf_slice(&enc), call, &x);
        assert_null(x.plaintext_error);
        assert_int_equal(x.status, 200);
        assert_cf_ok(x.finish);
        assert_non_null(strstr((const char *)x.plain.data, "echo: fetched " SECRET_PHRASE));
        exchange_free(&x);
        cf_client_call_free(call);
        cf_buf_free(&enc);
    }
    /* Fetched once, then served from the cache. */
    assert_true(metric(tw, "confide_worker_key_fetches_total{result=\"found\"}") == 1);
    assert_true(metric(tw, "confide_worker_keys") == 1);
    cf_wipe(k, sizeof k);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(stop_proc(w[i], 10000), 0);
    }
    assert_int_equal(stop_proc(as2, 10000), 0);
    for (int i = 0; i < 2; i++) {
        char *text = read_text(logs[i]);
        assert_null(strstr(text, SECRET_PHRASE));
        free(text);
    }
}

static void test_replay_refused(void **state)
{
    env_t *e = *state;
    const char *body = "{\"model\":\"" FAKE_MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"replay "
                       SECRET_PHRASE "\"}]}";
    cf_buf enc;
    cf_buf_init(&enc, 0);
    cf_client_call *call = NULL;
    assert_cf_ok(cf_client_seal_request(e->k, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
    size_t before = fake_request_count(e);
    exchange_t x;
    send_sealed(&e->wf, "/v1/chat/completions", cf_buf_slice(&enc), call, &x);
    assert_int_equal(x.status, 200);
    assert_cf_ok(x.finish);
    exchange_free(&x);
    cf_client_call_free(call);
    call = NULL;
    resp_t r;
    http(&e->wf, "POST", "/v1/chat/completions", cf_buf_slice(&enc), true, &r);
    assert_int_equal(r.status, 409);
    assert_string_equal(header(&r, "Confide-Plaintext"), "1");
    assert_string_equal(header(&r, "Confide-Error"), "replay");
    assert_string_equal(error_code(&r.body), "replay");
    resp_free(&r);
    assert_int_equal(fake_request_count(e), before + 1);
    assert_true(metric(&e->wf, "confide_worker_decrypt_failures_total{code=\"replay\"}") >= 1);
    cf_buf_free(&enc);
}

/* ---- tests: fault injection (fake backend) ---------------------------------------------------- */

typedef struct fault {
    const char *scenario; /* marker put in the prompt */
    bool stream;
    long status;           /* expected HTTP status */
    bool complete;         /* cf_client_finish OK (final marker seen) */
    const char *error;     /* expected error code in the decrypted reply, or NULL */
    const char *text;      /* expected text in the decrypted reply, or NULL */
} fault_t;

static void run_fault(env_t *e, const fault_t *f)
{
    char prompt[256];
    snprintf(prompt, sizeof prompt, "[[fake:%s]] hi", f->scenario);
    exchange_t x;
    chat(e, &e->wf, FAKE_MODEL, prompt, f->stream, &x);
    if (x.plaintext_error != NULL) {
        fail_msg("%s: plaintext error %s after decryption", f->scenario, x.plaintext_error);
    }
    if (x.status != f->status) {
        fail_msg("%s: status %ld, want %ld: %s", f->scenario, x.status, f->status, (const char *)x.plain.data);
    }
    if (f->complete != cf_is_ok(x.finish)) {
        fail_msg("%s: complete=%d (finish code %s), want %d: %s", f->scenario, cf_is_ok(x.finish),
                 cf_error_name(x.finish_code), f->complete, (const char *)x.plain.data);
    }
    if (!f->complete) {
        assert_int_equal(x.finish_code, CF_E_TRUNCATED);
    }
    if (f->error != NULL) {
        char needle[128];
        snprintf(needle, sizeof needle, "\"code\":\"%s\"", f->error);
        if (strstr((const char *)x.plain.data, needle) == NULL) {
            fail_msg("%s: no %s in %s", f->scenario, needle, (const char *)x.plain.data);
        }
    }
    if (f->text != NULL) {
        cf_buf text;
        cf_buf_init(&text, 0);
        if (f->stream) {
            size_t events;
            bool done, err;
            stream_text((const char *)x.plain.data, &text, &events, &done, &err);
        } else {
            assert_cf_ok(cf_buf_append_slice(&text, cf_buf_slice(&x.plain)));
            assert_cf_ok(cf_buf_append_u8(&text, 0));
        }
        if (strstr((const char *)text.data, f->text) == NULL) {
            fail_msg("%s: text %.200s lacks %s", f->scenario, (const char *)text.data, f->text);
        }
        cf_buf_free(&text);
    }
    exchange_free(&x);
}

static void test_faults(void **state)
{
    env_t *e = *state;
    static const fault_t faults[] = {
        {"echo", true, 200, true, NULL, "echo: [[fake:echo]] hi " SECRET_PHRASE},
        {"slow tokens=6 delay=100", true, 200, true, NULL, "tok1 tok2 tok3 tok4 tok5 tok6"},
        {"slow tokens=3 delay=100", false, 200, true, NULL, "tok1 tok2 tok3"},
        {"comments", true, 200, true, NULL, "echo: [[fake:comments]] hi"},
        {"crlf", true, 200, true, NULL, "echo: [[fake:crlf]] hi"},
        {"multiline", true, 200, true, NULL, "echo: [[fake:multiline]] hi"},
        {"split chunk=3", true, 200, true, NULL, "echo: [[fake:split chunk=3]] hi"},
        {"nodone", true, 200, true, NULL, "echo: [[fake:nodone]] hi"},
        {"huge size=400000", true, 200, true, NULL, "xxxxxxxxxxxxxxxx"},
        {"huge size=400000", false, 200, true, NULL, "xxxxxxxxxxxxxxxx"},
        /* An event above --max-event-size (600k): a clear encrypted error. */
        {"huge size=700000", true, 200, false, "upstream_error", NULL},
        {"cut events=3", true, 200, false, "upstream_error", NULL},
        {"cut", false, 502, true, "upstream_error", NULL},
        {"stall events=2", true, 200, false, "upstream_timeout", NULL},
        {"hang", false, 504, true, "upstream_timeout", NULL},
        {"close", false, 502, true, "upstream_error", NULL},
        {"error status=429 message=slow_down", false, 429, true, NULL, "slow down"},
        {"error status=500", true, 500, true, NULL, NULL},
        {"garbage", false, 502, true, "upstream_error", NULL},
        {"garbage", true, 200, false, "upstream_error", NULL},
    };
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        run_fault(e, &faults[i]);
    }
    printf("# fault scenarios: %zu passed\n", sizeof faults / sizeof faults[0]);
    /* The worker is still healthy after all of that. */
    wait_http_ok(&e->wf, "/healthz", 5000, e->wf_pid, e->wf_log);
}

static void test_model_policy(void **state)
{
    env_t *e = *state;
    size_t before = fake_request_count(e);
    exchange_t x;
    chat(e, &e->wf, "gpt-4", "which model", false, &x);
    /* Decrypted fine, so the refusal is encrypted. */
    assert_null(x.plaintext_error);
    assert_int_equal(x.status, 404);
    assert_cf_ok(x.finish);
    assert_non_null(strstr((const char *)x.plain.data, "model_not_found"));
    exchange_free(&x);
    assert_int_equal(fake_request_count(e), before);
}

/* A key scoped to one model cannot be used for another model the worker
 * serves: the decrypted request is refused (encrypted 403) and never reaches
 * the backend. */
static void test_key_scope_enforced(void **state)
{
    env_t *e = *state;
    env_t narrow = *e; /* the same environment, another key (only k and key_id are used) */
    upload_key_scoped(e, 600, narrow.k, narrow.key_id, LLAMA_MODEL);
    size_t before = fake_request_count(e);
    exchange_t x;
    chat(&narrow, &e->wf, FAKE_MODEL, "scope", false, &x);
    assert_null(x.plaintext_error);
    assert_int_equal(x.status, 403);
    assert_cf_ok(x.finish);
    assert_non_null(strstr((const char *)x.plain.data, "model_not_in_scope"));
    exchange_free(&x);
    assert_int_equal(fake_request_count(e), before);
    cf_wipe(narrow.k, sizeof narrow.k);
}

/* A reply that outlives its key's TTL still completes; afterwards the key is
 * gone (evicted and wiped) and requests under it fail with unknown_key. */
static void test_key_expiry_mid_stream(void **state)
{
    env_t *e = *state;
    uint8_t k[32];
    char key_id[23];
    upload_key(e, 2, k, key_id);
    usleep(300000); /* the put travels the key stream */
    const char *body = "{\"model\":\"" FAKE_MODEL "\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"[[fake:slow tokens=12 delay=250]] " SECRET_PHRASE "\"}]}";
    cf_buf enc;
    cf_buf_init(&enc, 0);
    cf_client_call *call = NULL;
    assert_cf_ok(cf_client_seal_request(k, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
    exchange_t x;
    send_sealed(&e->wf, "/v1/chat/completions", cf_buf_slice(&enc), call, &x);
    assert_int_equal(x.status, 200);
    assert_cf_ok(x.finish); /* ~3 s of stream, key TTL 2 s */
    assert_non_null(strstr((const char *)x.plain.data, "tok12"));
    exchange_free(&x);
    cf_client_call_free(call);
    cf_buf_free(&enc);
    sleep(1);
    cf_buf_init(&enc, 0);
    assert_cf_ok(cf_client_seal_request(k, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
    send_sealed(&e->wf, "/v1/chat/completions", cf_buf_slice(&enc), call, &x);
    expect_plain_error(&x, 401, "unknown_key");
    cf_client_call_free(call);
    cf_buf_free(&enc);
    cf_wipe(k, sizeof k);
}

/* A client that stops reading: the worker pauses the backend transfer
 * (bounded memory), resumes when the client reads again, and the whole
 * stream (about 10 MB encrypted, far above the worker's output cap) arrives
 * complete. */
typedef struct slow_reader {
    cf_buf *body;
    bool pause_once;
    bool paused;
} slow_reader;

static size_t slow_collect(char *p, size_t size, size_t n, void *arg)
{
    slow_reader *s = arg;
    if (s->pause_once && s->body->len > 0) {
        s->pause_once = false;
        s->paused = true;
        return CURL_WRITEFUNC_PAUSE; /* this chunk is delivered again on resume */
    }
    return cf_is_ok(cf_buf_append(s->body, p, size * n)) ? size * n : 0;
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = atol(line + 6);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kib;
}

static void test_backpressure(void **state)
{
    env_t *e = *state;
    const char *body = "{\"model\":\"" FAKE_MODEL "\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"[[fake:slow tokens=20000 delay=0]] " SECRET_PHRASE "\"}]}";
    cf_buf enc;
    cf_buf_init(&enc, 0);
    cf_client_call *call = NULL;
    assert_cf_ok(cf_client_seal_request(e->k, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
    double pauses = metric(&e->wt, "confide_worker_backend_pauses_total");
    long rss_before = rss_kib(e->wt_pid);
    resp_t r;
    struct curl_slist *h = json_headers(true);
    CURL *c = easy_for(&e->wt, "POST", "/v1/chat/completions", cf_buf_slice(&enc), h, &r, 60);
    slow_reader sr = {.body = &r.body, .pause_once = true};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, slow_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sr);
    CURLM *multi = curl_multi_init();
    curl_multi_add_handle(multi, c);
    int running = 1;
    uint64_t paused_at = 0;
    long rss_paused = -1;
    double pauses_during = -1;
    while (running) {
        curl_multi_perform(multi, &running);
        if (sr.paused && paused_at == 0) {
            paused_at = cf_monotonic_ms();
        }
        if (sr.paused && cf_monotonic_ms() - paused_at > 2000) {
            /* The client has read nothing for 2 s: the worker must have
             * stopped the backend instead of buffering the stream. */
            rss_paused = rss_kib(e->wt_pid);
            pauses_during = metric(&e->wt, "confide_worker_backend_pauses_total");
            sr.paused = false;
            curl_easy_pause(c, CURLPAUSE_CONT);
        }
        int fds;
        curl_multi_poll(multi, NULL, 0, 50, &fds);
    }
    int left;
    CURLMsg *msg = curl_multi_info_read(multi, &left);
    assert_non_null(msg);
    if (msg->data.result != CURLE_OK) {
        fail_msg("stream transfer failed: %s", curl_easy_strerror(msg->data.result));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    assert_int_equal(r.status, 200);
    assert_true(pauses_during > pauses);
    cf_buf plain;
    cf_buf_init(&plain, 0);
    for (size_t off = 0; off < r.body.len; off += 65536) {
        size_t n = r.body.len - off < 65536 ? r.body.len - off : 65536;
        assert_cf_ok(cf_client_open_stream(call, 200, cf_slice_make(r.body.data + off, n), &plain));
    }
    if (cf_is_error(cf_client_finish(call))) {
        size_t tail = r.body.len > 300 ? r.body.len - 300 : 0;
        fail_msg("incomplete: %zu bytes received, ending %.*s", r.body.len, (int)(r.body.len - tail),
                 (const char *)r.body.data + tail);
    }
    assert_cf_ok(cf_buf_append_u8(&plain, 0));
    assert_non_null(strstr((const char *)plain.data, "tok20000"));
    printf("# backpressure: %zu encrypted bytes, worker RSS %ld KiB before, %ld KiB while the client "
           "was stalled; %.0f backend pauses\n",
           r.body.len, rss_before, rss_paused, pauses_during - pauses);
    assert_true(r.body.len > 4 * 1024 * 1024);
    /* Memory stayed bounded: far less growth than the reply's size. */
    if (!ITEST_ASAN) {
        assert_true(rss_paused - rss_before < 4 * 1024);
    }
    cf_buf_free(&plain);
    curl_multi_remove_handle(multi, c);
    curl_easy_cleanup(c);
    curl_multi_cleanup(multi);
    curl_slist_free_all(h);
    resp_free(&r);
    cf_client_call_free(call);
    cf_buf_free(&enc);
}

/* The optional TLS listener: encrypted requests over HTTPS (certificate and
 * host checked by the client), non-streamed and streamed. */
static void test_tls_listener(void **state)
{
    env_t *e = *state;
    exchange_t x;
    chat(e, &e->ws, FAKE_MODEL, "over tls", false, &x);
    assert_int_equal(x.status, 200);
    assert_cf_ok(x.finish);
    assert_non_null(strstr((const char *)x.plain.data, "echo: over tls " SECRET_PHRASE));
    exchange_free(&x);
    chat(e, &e->ws, FAKE_MODEL, "[[fake:slow tokens=3000 delay=0]] stream over tls", true, &x);
    assert_int_equal(x.status, 200);
    assert_cf_ok(x.finish);
    assert_non_null(strstr((const char *)x.plain.data, "tok3000"));
    exchange_free(&x);
    /* Plain HTTP to the TLS port is not served. */
    target_t plain = {.port = e->ws.port};
    resp_t r;
    struct curl_slist *h = json_headers(false);
    CURL *c = easy_for(&plain, "GET", "/healthz", CF_SLICE_EMPTY, h, &r, 5);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    assert_true(rc != CURLE_OK || r.status != 200);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    resp_free(&r);
}

/* The AS restarts (new keys, all state lost): the workers' key streams drop,
 * their tokens are refused, they re-join with backoff, and serve the key
 * the client uploads to the new AS. */
static void test_as_restart(void **state)
{
    env_t *e = *state;
    double connects = metric(&e->wl, "confide_worker_key_stream_connects_total");
    assert_int_equal(stop_proc(e->as_pid, 10000), 0);
    forget_pid(e->as_pid);
    usleep(300000);
    start_as(e);
    cf_as_identity_free(&e->id);
    verify_as(e);
    upload_key(e, 600, e->k, e->key_id);
    /* Re-joined and holding the new key: a request under it succeeds. */
    for (int waited = 0;; waited += 100) {
        exchange_t x;
        chat(e, &e->wl, LLAMA_MODEL, "after restart", false, &x);
        bool ok = x.plaintext_error == NULL && x.status == 200 && cf_is_ok(x.finish);
        exchange_free(&x);
        if (ok) {
            break;
        }
        if (waited > 15000) {
            fail_msg("worker did not re-join the restarted AS (log %s):\n%s", e->wl_log, read_text(e->wl_log));
        }
        usleep(100000);
    }
    assert_true(metric(&e->wl, "confide_worker_key_stream_connects_total") > connects);
    wait_http_ok(&e->wl, "/healthz", 10000, e->wl_pid, e->wl_log);
    /* The valgrind worker too (slower): it must hold the new key. */
    for (int waited = 0;; waited += 200) {
        exchange_t x;
        chat(e, &e->wf, FAKE_MODEL, "after restart", false, &x);
        bool ok = x.plaintext_error == NULL && x.status == 200 && cf_is_ok(x.finish);
        exchange_free(&x);
        if (ok) {
            break;
        }
        if (waited > 30000) {
            fail_msg("valgrind worker did not re-join (log %s):\n%s", e->wf_log, read_text(e->wf_log));
        }
        usleep(200000);
    }
}

/* Overhead of the worker (decrypt, forward, encrypt) over a direct request
 * to the same backend, measured and printed (loose bound: the check is that
 * it is small, not a benchmark). */
static void test_overhead(void **state)
{
    env_t *e = *state;
    const char *body = "{\"model\":\"" FAKE_MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"timing "
                       SECRET_PHRASE "\"}]}";
    const int rounds = 100;
    uint64_t t0 = cf_monotonic_ms();
    for (int i = 0; i < rounds; i++) {
        resp_t d;
        http(&e->fake, "POST", "/v1/chat/completions", cf_slice_cstr(body), false, &d);
        assert_int_equal(d.status, 200);
        resp_free(&d);
    }
    uint64_t t1 = cf_monotonic_ms();
    for (int i = 0; i < rounds; i++) {
        exchange_t x;
        sealed(e, &e->wt, "chat.completions", "/v1/chat/completions", body, &x);
        assert_int_equal(x.status, 200);
        assert_cf_ok(x.finish);
        exchange_free(&x);
    }
    uint64_t t2 = cf_monotonic_ms();
    double direct = (double)(t1 - t0) / rounds, via = (double)(t2 - t1) / rounds;
    printf("# latency over %d requests: direct %.2f ms, through the worker (client seal/open included) %.2f ms, "
           "overhead %.2f ms\n",
           rounds, direct, via, via - direct);
    assert_true(via - direct < 50.0);
}

/* ---- health, metrics, logs, shutdown ----------------------------------------------------------- */

static void test_health_metrics(void **state)
{
    env_t *e = *state;
    /* Tokens last 8 s: by now each worker has re-attested at least once. */
    assert_true(metric(&e->wl, "confide_worker_attestations_total{result=\"ok\"}") >= 2);
    assert_true(metric(&e->wf, "confide_worker_attestations_total{result=\"ok\"}") >= 2);
    assert_true(metric(&e->wf, "confide_worker_token_valid") == 1);
    assert_true(metric(&e->wf, "confide_worker_key_stream_up") == 1);
    assert_true(metric(&e->wf, "confide_worker_keys") >= 1);
    assert_true(metric(&e->wl, "confide_worker_requests_total{endpoint=\"chat.completions\",outcome=\"ok\"}") >= 2);
    assert_true(metric(&e->wf, "confide_worker_requests_total{endpoint=\"chat.completions\",outcome=\"rejected\"}") >=
                5);
    assert_true(metric(&e->wf, "confide_worker_requests_total{endpoint=\"chat.completions\",outcome=\"failed\"}") >=
                5);
    assert_true(metric(&e->wf, "confide_worker_decrypt_failures_total{code=\"auth_failed\"}") >= 2);
    assert_true(metric(&e->wf, "confide_worker_decrypt_failures_total{code=\"stale_request\"}") >= 1);
    assert_true(metric(&e->wf, "confide_worker_backend_ttfb_seconds_count") >= 10);
    assert_true(metric(&e->wf, "confide_worker_streams_total") >= 10);
    assert_true(metric(&e->wf, "confide_worker_streams") == 0);
    assert_true(metric(&e->wf, "confide_worker_bytes_total{direction=\"out\"}") > 1000000);
    wait_http_ok(&e->wl, "/healthz", 3000, e->wl_pid, e->wl_log);
}

static void test_help_documents_flags(void **state)
{
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "%s/bin/confide-worker --help", build_dir());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    cf_buf out;
    cf_buf_init(&out, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) {
        assert_cf_ok(cf_buf_append(&out, chunk, n));
    }
    assert_int_equal(pclose(p), 0);
    assert_cf_ok(cf_buf_append_u8(&out, 0));
    static const char *const must[] = {"--backend-socket", "--as-url", "--manifest", "--platform", "--sim-dir",
                                       "--tls-cert", "--max-body", "--max-streams", "--max-event-size",
                                       "--backend-timeout-ms", "--backend-idle-timeout-ms", "--replay-window-ms",
                                       "--shutdown-timeout-ms", "CONFIDE_WORKER_"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) {
        if (strstr((const char *)out.data, must[i]) == NULL) {
            fail_msg("--help lacks %s", must[i]);
        }
    }
    cf_buf_free(&out);
}

/* SIGTERM while a stream runs: the stream completes (final marker), new
 * requests are refused, and the worker exits 0 (valgrind: no errors). */
static void test_graceful_shutdown(void **state)
{
    env_t *e = *state;
    const char *body = "{\"model\":\"" FAKE_MODEL "\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"[[fake:slow tokens=10 delay=200]] " SECRET_PHRASE "\"}]}";
    cf_buf enc;
    cf_buf_init(&enc, 0);
    cf_client_call *call = NULL;
    assert_cf_ok(cf_client_seal_request(e->k, "chat.completions", cf_slice_cstr(body), NULL, &enc, &call));
    resp_t r;
    struct curl_slist *h = json_headers(true);
    CURL *c = easy_for(&e->wf, "POST", "/v1/chat/completions", cf_buf_slice(&enc), h, &r, 30);
    CURLM *multi = curl_multi_init();
    curl_multi_add_handle(multi, c);
    int running = 1;
    bool signalled = false;
    while (running) {
        curl_multi_perform(multi, &running);
        if (!signalled && r.body.len > 0) {
            kill(e->wf_pid, SIGTERM); /* mid-stream */
            signalled = true;
        }
        int fds;
        curl_multi_poll(multi, NULL, 0, 100, &fds);
    }
    assert_true(signalled);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    assert_int_equal(r.status, 200);
    cf_buf plain;
    cf_buf_init(&plain, 0);
    assert_cf_ok(cf_client_open_stream(call, 200, cf_buf_slice(&r.body), &plain));
    if (cf_is_error(cf_client_finish(call))) { /* the stream must finish despite SIGTERM */
        size_t tail = r.body.len > 400 ? r.body.len - 400 : 0;
        fail_msg("stream incomplete after SIGTERM: %zu bytes, ending: %.*s", r.body.len, (int)(r.body.len - tail),
                 (const char *)r.body.data + tail);
    }
    assert_cf_ok(cf_buf_append_u8(&plain, 0));
    assert_non_null(strstr((const char *)plain.data, "tok10"));
    cf_buf_free(&plain);
    curl_multi_remove_handle(multi, c);
    curl_easy_cleanup(c);
    curl_multi_cleanup(multi);
    curl_slist_free_all(h);
    resp_free(&r);
    cf_client_call_free(call);
    cf_buf_free(&enc);
    int status = 0;
    for (int waited = 0; waited < 60000; waited += 50) {
        if (waitpid(e->wf_pid, &status, WNOHANG) == e->wf_pid) {
            forget_pid(e->wf_pid);
            break;
        }
        usleep(50000);
    }
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0) {
        fail_msg("worker exited %d%s (log %s):\n%s", WEXITSTATUS(status),
                 WEXITSTATUS(status) == 99 ? " (valgrind found errors)" : "", e->wf_log, read_text(e->wf_log));
    }
    char *log = read_text(e->wf_log);
    assert_non_null(strstr(log, "event=shutdown_complete"));
    free(log);
    e->wf_pid = 0;
    printf("# fake-backend worker %s exited 0 after SIGTERM mid-stream\n",
           e->wf_valgrind ? "(under valgrind: no memory errors, no definite leaks)" : "");
}

static void test_no_plaintext_in_logs(void **state)
{
    env_t *e = *state;
    assert_int_equal(stop_proc(e->wl_pid, 10000), 0);
    e->wl_pid = 0;
    assert_int_equal(stop_proc(e->wt_pid, 10000), 0);
    e->wt_pid = 0;
    assert_int_equal(stop_proc(e->ws_pid, 10000), 0);
    e->ws_pid = 0;
    char as_first[600];
    snprintf(as_first, sizeof as_first, "%s/as-first.log", g_tmp);
    const char *logs[] = {e->wl_log, e->wf_log, e->wt_log, e->ws_log, as_first, e->as_log};
    /* Nor the inference secret, in either encoding a log could use. */
    char k_b64[64], k_hex[2 * CF_INFERENCE_KEY_LEN + 1];
    assert_cf_ok(cf_b64url_encode_str(cf_slice_make(e->k, sizeof e->k), k_b64, sizeof k_b64));
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(e->k, sizeof e->k), k_hex, sizeof k_hex));
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
        char *text = read_text(logs[i]);
        assert_true(strlen(text) > 0);
        if (strstr(text, SECRET_PHRASE) != NULL || strstr(text, "tok1") != NULL) {
            fail_msg("plaintext in %s", logs[i]);
        }
        if (strstr(text, k_b64) != NULL || strcasestr(text, k_hex) != NULL) {
            fail_msg("inference secret in %s", logs[i]);
        }
        free(text);
    }
    cf_wipe(k_b64, sizeof k_b64);
    cf_wipe(k_hex, sizeof k_hex);
    /* The backends did see the plaintext (so the grep above can fail). */
    char *req = read_text(e->fake_requests);
    assert_non_null(strstr(req, SECRET_PHRASE));
    free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_documents_flags),
        cmocka_unit_test(test_llama_chat_matches_direct),
        cmocka_unit_test(test_llama_stream_matches_direct),
        cmocka_unit_test(test_llama_completions_match_direct),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_llama_models_passthrough),
        cmocka_unit_test(test_refusals_never_reach_backend),
        cmocka_unit_test(test_replay_refused),
        cmocka_unit_test(test_unknown_key_fetched_once),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_model_policy),
        cmocka_unit_test(test_key_scope_enforced),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_key_expiry_mid_stream),
        cmocka_unit_test(test_overhead),
        cmocka_unit_test(test_health_metrics),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_tls_listener),
        cmocka_unit_test(test_as_restart),
        cmocka_unit_test(test_graceful_shutdown),
        cmocka_unit_test(test_no_plaintext_in_logs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
