/* main.c — confide-worker: flags, setup, health, metrics, signals, graceful
 * shutdown (see worker.h; operator documentation in docs/operations.md
 * §confide-worker). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "confide/log.h"
#include "worker_request.h"

static worker_state g_worker; /* one per process; the signal callback needs it */

#define W (&g_worker.cfg)
static cf_flag flags[] = {
    {"host", CF_FLAG_STRING, "127.0.0.1", "address to listen on", &W->host, false, 0, 0},
    {"port", CF_FLAG_INT, "7200", "TCP port to listen on (0 = any free port, printed at start)", &W->port, false, 0,
     65535},
    {"tls-cert", CF_FLAG_STRING, NULL, "PEM certificate chain: serve HTTPS (with --tls-key)", &W->tls_cert, false, 0,
     0},
    {"tls-key", CF_FLAG_SECRET, NULL, "PEM private key for --tls-cert (@file form keeps it out of argv)", &W->tls_key,
     false, 0, 0},
    {"backend-socket", CF_FLAG_STRING, NULL,
     "UNIX socket of the inference server (llama-server --host x.sock, vLLM --uds); the only way requests leave",
     &W->backend_socket, true, 0, 0},
    {"as-url", CF_FLAG_STRING, NULL, "base URL of the attestation service (https://as.example:7100)", &W->as_url, true,
     0, 0},
    {"as-ca-file", CF_FLAG_STRING, NULL, "PEM CA bundle for the AS's TLS certificate (default: system store)",
     &W->as_ca_file, false, 0, 0},
    {"as-allow-http", CF_FLAG_BOOL, "false",
     "allow a plain http:// --as-url (tests; the AS is authenticated by attestation, but the token travels in clear)",
     &W->as_allow_http, false, 0, 0},
    {"manifest", CF_FLAG_STRING, NULL,
     "the pinned manifest file: the AS must enforce exactly it; it names the models our policy serves",
     &W->manifest_path, true, 0, 0},
    {"platform", CF_FLAG_STRING, NULL, "TEE platform this worker runs on: sim, snp or tdx", &W->platform_name, true, 0,
     0},
    {"sim-dir", CF_FLAG_STRING, NULL, "sim platform directory (confide sim init), for --platform sim", &W->sim_dir,
     false, 0, 0},
    {"tsm-path", CF_FLAG_STRING, NULL, "configfs-tsm report root for snp/tdx (default /sys/kernel/config/tsm/report)",
     &W->tsm_path, false, 0, 0},
    {"collateral-dir", CF_FLAG_STRING, NULL, "snp/tdx: directory of certificates/collateral sent with evidence",
     &W->collateral_dir, false, 0, 0},
    {"max-body", CF_FLAG_INT, "8M", "largest request body in bytes (too_large, 413, beyond)", &W->max_body, false,
     1024, 64 * 1024 * 1024},
    {"max-response", CF_FLAG_INT, "16M", "largest non-streamed reply from the inference server, bytes",
     &W->max_response, false, 1024, 256 * 1024 * 1024},
    {"max-event-size", CF_FLAG_INT, "1M", "largest single SSE event from the inference server, bytes",
     &W->max_event, false, 1024, 1024 * 1024},
    {"max-streams", CF_FLAG_INT, "256", "most streamed replies at once (503 too_many_streams beyond)",
     &W->max_streams, false, 1, 100000},
    {"max-requests", CF_FLAG_INT, "1024", "most requests in flight (503 beyond)", &W->max_requests, false, 1, 1000000},
    {"max-keys", CF_FLAG_INT, "10000", "most inference secrets held (the key expiring first is evicted)",
     &W->max_keys, false, 1, 1000000},
    {"replay-window-ms", CF_FLAG_INT, "300000", "accept salts within this many ms of our clock (stale_request beyond)",
     &W->replay_window_ms, false, 1000, 86400000},
    {"replay-capacity", CF_FLAG_INT, "65536", "accepted (key id, salt) pairs remembered per generation",
     &W->replay_capacity, false, 1, 1 << 24},
    {"pad-bucket", CF_FLAG_INT, "0", "pad encrypted response values to a multiple of this many bytes (0 = none)",
     &W->pad_bucket, false, 0, 65536},
    {"backend-connect-timeout-ms", CF_FLAG_INT, "5000", "connecting to the inference server's socket",
     &W->backend_connect_timeout_ms, false, 10, 600000},
    {"backend-timeout-ms", CF_FLAG_INT, "600000", "whole non-streamed reply from the inference server",
     &W->backend_timeout_ms, false, 100, 86400000},
    {"backend-idle-timeout-ms", CF_FLAG_INT, "120000",
     "no byte from the inference server for this long ends the reply (streams included)",
     &W->backend_idle_timeout_ms, false, 100, 86400000},
    {"read-timeout-ms", CF_FLAG_INT, "30000", "drop a client that sends its request slower than this",
     &W->read_timeout_ms, false, 100, 600000},
    {"write-timeout-ms", CF_FLAG_INT, "60000", "drop a client that stops reading its reply for this long",
     &W->write_timeout_ms, false, 100, 600000},
    {"shutdown-timeout-ms", CF_FLAG_INT, "30000", "on SIGTERM, let running requests and streams finish this long",
     &W->shutdown_timeout_ms, false, 0, 3600000},
    {"key-stream-idle-ms", CF_FLAG_INT, "60000",
     "reconnect the AS key stream when nothing (not even a keep-alive) arrived for this long", &W->stream_idle_ms,
     false, 1000, 3600000},
    {"backoff-min-ms", CF_FLAG_INT, "500", "first retry delay after an AS failure (exponential, full jitter)",
     &W->backoff_min_ms, false, 10, 600000},
    {"backoff-max-ms", CF_FLAG_INT, "30000", "largest retry delay after repeated AS failures", &W->backoff_max_ms,
     false, 10, 3600000},
    {"unknown-key-ttl", CF_FLAG_INT, "10",
     "seconds to answer unknown_key without asking the AS again after it did not have a key", &W->unknown_key_ttl_s,
     false, 0, 3600},
    {"max-key-fetches", CF_FLAG_INT, "16", "one-shot key fetches from the AS in flight at once",
     &W->max_key_fetches, false, 1, 10000},
};
#undef W

static cf_flag_set flag_set = {
    .program = "confide-worker",
    .summary = "The confide worker: an encryption proxy in a TEE in front of an OpenAI-compatible inference server "
               "on a UNIX socket. It attests to the attestation service (AS), receives the users' inference "
               "secrets wrapped to its attested key, decrypts the protected fields of POST /v1/chat/completions, "
               "/v1/completions and /v1/embeddings, forwards the plaintext request over the UNIX socket only, and "
               "encrypts the reply (each SSE event of a stream). GET /v1/models passes through unencrypted; every "
               "other path is refused. Health: GET /healthz; metrics: GET /metrics. See docs/operations.md.",
    .env_prefix = "CONFIDE_WORKER",
    .flags = flags,
    .count = sizeof flags / sizeof flags[0],
};

/* ---- metrics --------------------------------------------------------------------------- */

static CF_RESULT metrics_init(worker_state *w)
{
    worker_metrics *m = &w->m;
    CF_GUARD(cf_metrics_new(&m->registry));
    for (int e = 0; e < EP_COUNT; e++) {
        for (int o = 0; o < OUT_COUNT; o++) {
            const cf_metric_label l[] = {
                {"endpoint", worker_endpoint_label(e)}, {"outcome", worker_outcome_label(o)}, {NULL, NULL}};
            CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_requests_total",
                                        "API requests by endpoint and outcome", l, &m->requests[e][o]));
        }
    }
    static const cf_error_code codes[] = {CF_E_MALFORMED,      CF_E_DUPLICATE_KEY, CF_E_PLAINTEXT_FIELD,
                                          CF_E_BAD_CIPHERTEXT, CF_E_UNSUPPORTED_VERSION, CF_E_UNKNOWN_KEY,
                                          CF_E_AUTH_FAILED,    CF_E_TRUNCATED,     CF_E_STALE,
                                          CF_E_REPLAY,         CF_E_REPLAY_FULL,   CF_E_TOO_LARGE,
                                          CF_E_TOO_DEEP,       CF_E_LIMIT,         CF_E_UNKNOWN_ENDPOINT,
                                          CF_E_INTERNAL};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const cf_metric_label l[] = {{"code", cf_error_name(codes[i])}, {NULL, NULL}};
        CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_decrypt_failures_total",
                                    "Requests refused before decryption, by error code", l,
                                    &m->decrypt_failures[codes[i]]));
    }
    static const cf_metric_label in[] = {{"direction", "in"}, {NULL, NULL}};
    static const cf_metric_label out[] = {{"direction", "out"}, {NULL, NULL}};
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_bytes_total",
                                "Body bytes from clients (in) and to clients (out, encrypted)", in, &m->bytes_in));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_bytes_total",
                                "Body bytes from clients (in) and to clients (out, encrypted)", out, &m->bytes_out));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_worker_streams", "Streamed replies in progress", NULL,
                              &m->streams_active));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_streams_total", "Streamed replies started", NULL,
                                &m->streams_total));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_sse_events_total",
                                "SSE events encrypted and relayed to clients", NULL, &m->events_relayed));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_backend_pauses_total",
                                "Times a stream's backend transfer was paused because the client read slowly",
                                NULL, &m->backend_pauses));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_worker_keys", "Inference secrets in the key cache", NULL,
                              &m->keys));
    static const cf_metric_label fok[] = {{"result", "found"}, {NULL, NULL}};
    static const cf_metric_label ffail[] = {{"result", "not_found"}, {NULL, NULL}};
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_key_fetches_total",
                                "One-shot key fetches from the AS for unknown key IDs", fok, &m->key_fetches_ok));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_key_fetches_total",
                                "One-shot key fetches from the AS for unknown key IDs", ffail,
                                &m->key_fetches_failed));
    static const double ttfb_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    CF_GUARD(cf_metrics_histogram(m->registry, "confide_worker_backend_ttfb_seconds",
                                  "Time from forwarding a request to the inference server's response headers", NULL,
                                  ttfb_bounds, sizeof ttfb_bounds / sizeof ttfb_bounds[0], &m->backend_ttfb));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_worker_token_valid", "1 while a valid worker token is held",
                              NULL, &m->token_valid));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_worker_key_stream_up",
                              "1 while the AS key stream is connected and its snapshot complete", NULL,
                              &m->key_stream_up));
    static const cf_metric_label aok[] = {{"result", "ok"}, {NULL, NULL}};
    static const cf_metric_label afail[] = {{"result", "failed"}, {NULL, NULL}};
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_attestations_total",
                                "Join cycles with the AS (AS verified, evidence accepted, token received)", aok,
                                &m->attest_ok));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_attestations_total",
                                "Join cycles with the AS (AS verified, evidence accepted, token received)", afail,
                                &m->attest_failed));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_worker_key_stream_connects_total",
                                "Key stream connection attempts", NULL, &m->stream_reconnects));
    return CF_OK;
}

/* ---- health ---------------------------------------------------------------------------- */

static cf_result health(void *arg)
{
    worker_state *w = arg;
    CF_ENSURE_MSG(!w->shutting_down, CF_E_LIMIT, "shutting down");
    CF_ENSURE_MSG(worker_token_valid(w), CF_E_UNAUTHORIZED, "no valid worker token (not attested to the AS)");
    CF_ENSURE_MSG(worker_stream_live(w), CF_E_UPSTREAM, "the AS key stream is down");
    return CF_OK;
}

/* ---- timers and shutdown ------------------------------------------------------------------ */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_state *w = arg;
    worker_keys_sweep(w, worker_now(), 0);
    cf_metric_set(w->m.token_valid, worker_token_valid(w) ? 1 : 0);
}

static void on_shutdown_done(void *arg)
{
    worker_state *w = arg;
    CF_LOG_INFO("shutdown_complete");
    worker_join_stop(w);
    /* lib/net reports done only once the finished replies (a stream's final
     * event included) were written to their sockets, so the loop can end now
     * (http_server.h, cf_http_server_shutdown). */
    event_base_loopexit(w->base, NULL);
}

static void on_signal(int signo, void *arg)
{
    worker_state *w = arg;
    if (w->shutting_down) {
        CF_LOG_WARN("shutdown_forced", cf_kv_int("signal", signo));
        event_base_loopexit(w->base, NULL);
        return;
    }
    w->shutting_down = true;
    CF_LOG_INFO("shutdown_started", cf_kv_int("signal", signo), cf_kv_uint("in_flight", cf_http_server_active(w->server)),
                cf_kv_uint("streams", w->streams), cf_kv_int("deadline_ms", w->cfg.shutdown_timeout_ms));
    /* The key stream stays up while replies finish (keys may be fetched);
     * it is closed in on_shutdown_done. */
    cf_http_server_shutdown(w->server, (unsigned)w->cfg.shutdown_timeout_ms, on_shutdown_done, w);
}

/* A worker whose platform no worker policy of the manifest names can never
 * be admitted by the AS: refuse to start instead of retrying to join
 * forever. The detail names both sides so the operator sees the mismatch. */
static CF_RESULT check_platform_served(const worker_state *w)
{
    char names[64] = "";
    size_t used = 0;
    for (size_t i = 0; i < w->manifest->worker_count; i++) {
        if (w->manifest->workers[i].platform == w->platform) {
            return CF_OK;
        }
        const char *name = cf_platform_name(w->manifest->workers[i].platform);
        if (strstr(names, name) == NULL && used + strlen(name) + 3 < sizeof names) {
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", name);
        }
    }
    CF_BAIL_FMT(CF_E_CONFIG, "--platform %s: no worker policy of the manifest is for it (worker platforms: %s)",
                cf_platform_name(w->platform), used ? names : "none");
}

static CF_RESULT setup(worker_state *w)
{
    CF_GUARD(cf_platform_parse(w->cfg.platform_name, &w->platform));
    if (w->platform == CF_PLATFORM_SIM) {
        CF_ENSURE_MSG(w->cfg.sim_dir != NULL, CF_E_CONFIG, "--platform sim needs --sim-dir");
    }
    w->attester = (cf_attester_config){.platform = w->platform,
                                       .sim_dir = w->cfg.sim_dir,
                                       .tsm_path = w->cfg.tsm_path,
                                       .collateral_dir = w->cfg.collateral_dir};
    CF_ENSURE_MSG((w->cfg.tls_cert == NULL) == (w->cfg.tls_key == NULL), CF_E_CONFIG,
                  "--tls-cert and --tls-key go together");
    CF_ENSURE_MSG(strncmp(w->cfg.as_url, "https://", 8) == 0 ||
                      (w->cfg.as_allow_http && strncmp(w->cfg.as_url, "http://", 7) == 0),
                  CF_E_CONFIG, "--as-url must be https:// (or http:// with --as-allow-http)");
    size_t ul = strlen(w->cfg.as_url);
    while (ul > 0 && w->cfg.as_url[ul - 1] == '/') {
        w->cfg.as_url[--ul] = '\0'; /* paths are appended */
    }
    CF_ENSURE_MSG(strlen(w->cfg.backend_socket) < 108, CF_E_CONFIG, "--backend-socket path longer than sun_path");
    CF_ENSURE_MSG(w->cfg.backoff_min_ms <= w->cfg.backoff_max_ms, CF_E_CONFIG,
                  "--backoff-min-ms must not exceed --backoff-max-ms");
    CF_GUARD_MSG(cf_manifest_load(w->cfg.manifest_path, &w->manifest), "--manifest");
    CF_GUARD(check_platform_served(w));
    CF_GUARD(cf_worker_keys_init(&w->keys, (size_t)w->cfg.max_keys));
    CF_GUARD(cf_replay_new((size_t)w->cfg.replay_capacity, w->cfg.replay_window_ms, &w->replay));
    CF_GUARD(metrics_init(w));

    w->base = event_base_new();
    CF_ENSURE_MSG(w->base != NULL, CF_E_NO_MEMORY, "event_base_new failed");
    cf_http_server_config sc = {
        .host = w->cfg.host,
        .port = (uint16_t)w->cfg.port,
        .tls_cert_file = w->cfg.tls_cert,
        .tls_key_file = w->cfg.tls_key,
        /* Twice the limit, so that the handler sees bodies up to 2x and
         * answers them with the protocol's plaintext too_large (headers
         * included); beyond that lib/net answers 413 request_too_large. */
        .max_body_size = (size_t)w->cfg.max_body * 2,
        .read_timeout_ms = (unsigned)w->cfg.read_timeout_ms,
        .write_timeout_ms = (unsigned)w->cfg.write_timeout_ms,
        .max_requests = (unsigned)w->cfg.max_requests,
        .metrics = w->m.registry,
        .name = "worker",
    };
    CF_GUARD(cf_http_server_new(w->base, &sc, &w->server));
    CF_GUARD(worker_routes_add(w));
    CF_GUARD(cf_http_server_add_health(w->server, health, w));
    CF_GUARD(cf_http_server_add_metrics(w->server, w->m.registry));

    cf_http_client_config ac = {.ca_file = w->cfg.as_ca_file, .allow_plain_http = w->cfg.as_allow_http};
    CF_GUARD(cf_http_client_new(w->base, &ac, &w->as_client));
    cf_http_client_config bc = {.connect_timeout_ms = (unsigned)w->cfg.backend_connect_timeout_ms,
                                .max_host_connections = 64};
    CF_GUARD(cf_http_client_new(w->base, &bc, &w->backend));

    w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    CF_ENSURE_MSG(w->tick != NULL, CF_E_NO_MEMORY, "event_new failed");
    struct timeval one = {1, 0};
    CF_ENSURE_MSG(event_add(w->tick, &one) == 0, CF_E_INTERNAL, "event_add failed");
    CF_GUARD(worker_join_start(w));
    return CF_OK;
}

static void teardown(worker_state *w)
{
    if (w->tick != NULL) {
        event_free(w->tick);
    }
    worker_join_stop(w);
    worker_requests_drop(w);
    cf_http_server_free(w->server);
    cf_http_client_free(w->as_client);
    cf_http_client_free(w->backend);
    cf_daemon_signals_free(w->signals);
    cf_replay_free(w->replay);
    cf_worker_keys_free(&w->keys);
    cf_metrics_free(w->m.registry);
    if (w->base != NULL) {
        event_base_free(w->base);
    }
    cf_manifest_free(w->manifest);
    cf_flags_free(&flag_set);
}

int main(int argc, char **argv)
{
    cf_log_init("confide-worker", CF_LOG_INFO);
    int exit_code;
    if (!cf_flags_parse_or_exit(&flag_set, "confide-worker", argc, argv, &exit_code)) {
        return exit_code;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    worker_state *w = &g_worker;
    int rc = 0;
    if (cf_is_error(setup(w)) || cf_is_error(cf_daemon_signals_new(w->base, on_signal, w, &w->signals))) {
        CF_LOG_ERROR("startup_failed", cf_kv_last_error());
        if (cf_error_code_last() == CF_E_CONFIG) {
            /* A configuration that can never work (as a bad flag): say so
             * plainly and exit 2, so supervisors do not restart it. */
            char buf[512];
            fprintf(stderr, "confide-worker: %s\n", cf_error_describe_user(buf, sizeof buf));
            rc = 2;
        } else {
            rc = 1;
        }
        goto out;
    }
    CF_LOG_INFO("worker_started", cf_kv_str("host", w->cfg.host), cf_kv_int("port", cf_http_server_port(w->server)),
                cf_kv_str("platform", cf_platform_name(w->platform)), cf_kv_str("manifest", w->manifest->sha256_hex),
                cf_kv_str("backend", w->cfg.backend_socket), cf_kv_str("tls", w->cfg.tls_cert ? "on" : "off"));
    if (event_base_dispatch(w->base) < 0) {
        rc = 1;
    }
    CF_LOG_INFO("worker_stopped");
out:
    teardown(w);
    curl_global_cleanup();
    return rc;
}
