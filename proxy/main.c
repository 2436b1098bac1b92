/* main.c — confide-proxy: flags, pinned manifest, metrics, server, signals,
 * graceful shutdown (see proxy.h; operator documentation in
 * docs/operations.md §confide-proxy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/log.h"
#include "confide/manifest.h"
#include "proxy.h"

static px_state g_px; /* one per process; the signal callback needs it */

static cf_flag flags[] = {
    {"host", CF_FLAG_STRING, "127.0.0.1", "address to listen on (apps connect here; keep it on loopback)",
     &g_px.cfg.host, false, 0, 0},
    {"port", CF_FLAG_INT, "8080", "TCP port to listen on (0 = any free port, printed at start)", &g_px.cfg.port, false,
     0, 65535},
    {"as", CF_FLAG_STRING, NULL, "base URL of the attestation service, e.g. https://as.example.com", &g_px.cfg.as_url,
     true, 0, 0},
    {"manifest", CF_FLAG_STRING, NULL, "the pinned manifest file (its SHA-256 is what the AS must enforce)",
     &g_px.cfg.manifest_path, false, 0, 0},
    {"manifest-sha256", CF_FLAG_STRING, NULL, "pin the manifest by its SHA-256 (64 hex digits) instead of --manifest",
     &g_px.cfg.manifest_sha256, false, 0, 0},
    {"upstream", CF_FLAG_STRING, NULL, "base URL of the provider's API gateway; the request path (/v1/...) is appended",
     &g_px.cfg.upstream, true, 0, 0},
    {"api-key", CF_FLAG_SECRET, NULL,
     "provider API key sent as Authorization: Bearer when the app sends none (@file reads it from a file)",
     &g_px.cfg.api_key, false, 0, 0},
    {"ca-file", CF_FLAG_STRING, NULL, "PEM CA bundle for HTTPS to the upstream and the AS (default: system store)",
     &g_px.cfg.ca_file, false, 0, 0},
    {"allow-plain-http", CF_FLAG_BOOL, "false",
     "allow http:// URLs for --upstream and --as (tests and local setups only)", &g_px.cfg.allow_plain_http, false, 0,
     0},
    {"models", CF_FLAG_STRING, NULL,
     "comma-separated models the uploaded keys may be used for (default: every model the manifest serves, up to 16)",
     &g_px.cfg.models, false, 0, 0},
    {"key-ttl", CF_FLAG_INT, "3600", "lifetime of each uploaded inference secret, seconds (clamped to the manifest)",
     &g_px.cfg.key_ttl_s, false, 1, 30 * 24 * 3600},
    {"rotate-before", CF_FLAG_INT, "0",
     "upload the next key this many seconds before the current one expires (0 = a quarter of the TTL)",
     &g_px.cfg.rotate_before_s, false, 0, 30 * 24 * 3600},
    {"shared-cache-salt", CF_FLAG_BOOL, "false",
     "one random cache_salt for all requests of this proxy (prefix caching across them) instead of one per request",
     &g_px.cfg.shared_cache_salt, false, 0, 0},
    {"cache-salt", CF_FLAG_SECRET, NULL,
     "a fixed cache_salt shared with other proxies of the same user (implies shared; @file allowed)",
     &g_px.cfg.cache_salt, false, 0, 0},
    {"pad-bucket", CF_FLAG_INT, "0", "pad each encrypted request value to a multiple of this many bytes (0 = none)",
     &g_px.cfg.pad_bucket, false, 0, CF_PROTO_MAX_PAD_BUCKET},
    {"max-body", CF_FLAG_INT, "8M", "largest request body an app may send (413 beyond)", &g_px.cfg.max_body, false,
     1024, 64 * 1024 * 1024},
    {"max-response-body", CF_FLAG_INT, "16M", "largest non-streamed reply accepted from upstream",
     &g_px.cfg.max_response_body, false, 1024, 256 * 1024 * 1024},
    {"max-error-body", CF_FLAG_INT, "64k", "largest plaintext error body accepted from upstream",
     &g_px.cfg.max_error_body, false, 1024, 16 * 1024 * 1024},
    {"max-concurrent", CF_FLAG_INT, "256", "requests (and streams) in flight at once; more get 503",
     &g_px.cfg.max_concurrent, false, 1, 100000},
    {"max-streams", CF_FLAG_INT, "128", "streamed requests in flight at once; more get 503 too_many_streams",
     &g_px.cfg.max_streams, false, 1, 100000},
    {"connect-timeout-ms", CF_FLAG_INT, "5000", "TCP+TLS connect timeout to the upstream and the AS",
     &g_px.cfg.connect_timeout_ms, false, 100, 600000},
    {"upstream-timeout-ms", CF_FLAG_INT, "600000", "total time a non-streamed upstream request may take",
     &g_px.cfg.upstream_timeout_ms, false, 100, 86400000},
    {"idle-timeout-ms", CF_FLAG_INT, "300000",
     "fail an upstream request (or stream) that sends no byte for this long (not while paused by a slow app)",
     &g_px.cfg.idle_timeout_ms, false, 100, 86400000},
    {"as-timeout-ms", CF_FLAG_INT, "10000", "total time of each AS exchange (attest, upload, delete)",
     &g_px.cfg.as_timeout_ms, false, 100, 600000},
    {"read-timeout-ms", CF_FLAG_INT, "30000", "drop an app connection that sends its request slower than this",
     &g_px.cfg.read_timeout_ms, false, 100, 600000},
    {"write-timeout-ms", CF_FLAG_INT, "60000", "drop an app that stops reading its reply for this long",
     &g_px.cfg.write_timeout_ms, false, 100, 3600000},
    {"shutdown-grace-ms", CF_FLAG_INT, "10000", "on SIGTERM, let requests in flight finish for this long",
     &g_px.cfg.shutdown_grace_ms, false, 0, 600000},
    {"delete-keys", CF_FLAG_BOOL, "true",
     "delete retired keys and, at shutdown, all keys at the AS (proof of possession) instead of letting them expire",
     &g_px.cfg.delete_keys_on_exit, false, 0, 0},
};

static cf_flag_set flag_set = {
    .program = "confide-proxy",
    .summary = "The confide client endpoint. Apps point their OpenAI base URL at it (http://127.0.0.1:8080/v1). It "
               "verifies the attestation service against the pinned manifest before sending anything, uploads a "
               "fresh inference secret (rotated before expiry), encrypts the sensitive fields of every request, "
               "forwards it to --upstream and decrypts the reply, streamed or not. Endpoints: "
               "POST /v1/chat/completions, /v1/completions, /v1/embeddings (encrypted), GET /v1/models (passed), "
               "GET /healthz, GET /metrics; everything else is 404. See docs/operations.md.",
    .env_prefix = "CONFIDE_PROXY",
    .flags = flags,
    .count = sizeof flags / sizeof flags[0],
};

static CF_RESULT metrics_init(px_state *px)
{
    px_metrics *m = &px->m;
    CF_GUARD(cf_metrics_new(&m->registry));
    static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    for (int e = 0; e < PX_ENDPOINT_COUNT && cf_proto_endpoints[e] != NULL; e++) {
        const char *ep = cf_proto_endpoints[e]->name;
        for (int o = 0; o < PX_OUTCOME_COUNT; o++) {
            const cf_metric_label l[] = {{"endpoint", ep}, {"outcome", px_outcome_name((px_outcome)o)}, {NULL, NULL}};
            CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_requests_total",
                                        "App requests by endpoint and outcome", l, &m->requests[e][o]));
        }
        const cf_metric_label l[] = {{"endpoint", ep}, {NULL, NULL}};
        CF_GUARD(cf_metrics_histogram(m->registry, "confide_proxy_upstream_seconds",
                                      "Time from sending a request upstream to its response headers", l, latency_bounds,
                                      sizeof latency_bounds / sizeof latency_bounds[0], &m->upstream_seconds[e]));
    }
#define PX_REGISTER_DECRYPT(code)                                                                                      \
    {                                                                                                                  \
        const cf_metric_label l[] = {{"code", cf_error_name(code)}, {NULL, NULL}};                                     \
        CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_decrypt_failures_total",                               \
                                    "Upstream replies refused because they did not authenticate, by code", l,          \
                                    &m->decrypt_failures[code]));                                                      \
    }
    PX_DECRYPT_CODES(PX_REGISTER_DECRYPT)
#undef PX_REGISTER_DECRYPT
    static const cf_metric_label other[] = {{"code", "other"}, {NULL, NULL}};
    CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_decrypt_failures_total",
                                "Upstream replies refused because they did not authenticate, by code", other,
                                &m->decrypt_failures_other));
    static const cf_metric_label uk[] = {{"reason", "unknown_key"}, {NULL, NULL}};
    static const cf_metric_label stale[] = {{"reason", "stale_request"}, {NULL, NULL}};
    CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_retries_total", "Requests retried once, by reason", uk,
                                &m->retries_unknown_key));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_retries_total", "Requests retried once, by reason", stale,
                                &m->retries_stale));
    static const cf_metric_label ok[] = {{"result", "ok"}, {NULL, NULL}};
    static const cf_metric_label failed[] = {{"result", "failed"}, {NULL, NULL}};
    CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_attestations_total",
                                "Attestations of the AS against the pinned manifest, by result", ok, &m->attest_ok));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_attestations_total",
                                "Attestations of the AS against the pinned manifest, by result", failed,
                                &m->attest_failed));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_proxy_attestation_state",
                              "0 = not verified yet, 1 = verified, 2 = the last attestation failed", NULL,
                              &m->attest_state));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_key_uploads_total", "Inference secret uploads by result",
                                ok, &m->uploads_ok));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_key_uploads_total", "Inference secret uploads by result",
                                failed, &m->uploads_failed));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_key_rotations_total",
                                "Current key replaced by a fresh one before expiry", NULL, &m->rotations));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_proxy_key_deletes_total", "Keys deleted at the AS", NULL,
                                &m->deletes));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_proxy_keys", "Inference secrets held (current and retiring)", NULL,
                              &m->keys_held));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_proxy_key_expires_in_seconds",
                              "Seconds until the current key expires (0 = none)", NULL, &m->key_expires_in));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_proxy_streams_active", "Streamed replies being relayed", NULL,
                              &m->streams_active));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_proxy_requests_active", "App requests in flight", NULL,
                              &m->requests_active));
    return CF_OK;
}

/* Re-label the last error as a configuration error (exit status 2). */
static cf_result config_error(const char *flag)
{
    char detail[256];
    snprintf(detail, sizeof detail, "%s: %s: %s", flag, cf_error_name(cf_error_code_last()), cf_error_last()->detail);
    cf_error_setf(CF_E_CONFIG, __FILE__, __LINE__, "%s", detail);
    return CF_ERROR;
}

static CF_RESULT parse_models(px_state *px)
{
    if (px->cfg.models == NULL || px->cfg.models[0] == '\0') {
        return CF_OK;
    }
    json_t *arr = json_array();
    CF_ENSURE(arr != NULL, CF_E_NO_MEMORY);
    const char *p = px->cfg.models;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        json_array_append_new(arr, json_stringn(p, n));
        p += n + (comma ? 1 : 0);
    }
    cf_result r = cf_key_scope_from_json(arr, &px->scope);
    json_decref(arr);
    if (cf_is_error(r)) {
        return config_error("--models");
    }
    px->scope_from_flag = true;
    return CF_OK;
}

static CF_RESULT check_url(const px_state *px, const char *flag, const char *url)
{
    bool https = strncmp(url, "https://", 8) == 0;
    bool http = strncmp(url, "http://", 7) == 0;
    if (!https && !http) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s: expected an https:// URL", flag);
    }
    if (http && !px->cfg.allow_plain_http) {
        CF_BAIL_FMT(CF_E_CONFIG,
                    "%s: plain http:// needs --allow-plain-http (the %s would see the API key and "
                    "metadata in clear)",
                    flag, "network");
    }
    CF_ENSURE_MSG(strpbrk(url, "?#\r\n ") == NULL, CF_E_CONFIG, "URLs must not contain a query, fragment or spaces");
    /* Credentials in the URL (user:pass@host) would be logged with it at
     * start; the provider key belongs in --api-key, which is never logged. */
    const char *authority = url + (https ? 8 : 7);
    size_t authority_len = strcspn(authority, "/");
    CF_ENSURE_MSG(memchr(authority, '@', authority_len) == NULL, CF_E_CONFIG,
                  "URLs must not carry credentials (user:pass@); pass the provider key with --api-key");
    return CF_OK;
}

static CF_RESULT setup(px_state *px)
{
    /* The pin: exactly one of --manifest / --manifest-sha256. */
    CF_ENSURE_MSG((px->cfg.manifest_path != NULL) != (px->cfg.manifest_sha256 != NULL), CF_E_CONFIG,
                  "pin the manifest with exactly one of --manifest FILE or --manifest-sha256 HEX");
    if (px->cfg.manifest_path != NULL) {
        cf_manifest *m = NULL;
        if (cf_is_error(cf_manifest_load(px->cfg.manifest_path, &m))) {
            return config_error("--manifest");
        }
        memcpy(px->pinned, m->sha256, 32);
        cf_manifest_free(m);
    } else {
        size_t n = 0;
        CF_ENSURE_MSG(strlen(px->cfg.manifest_sha256) == 64 &&
                          cf_is_ok(cf_hex_decode_fixed(cf_slice_cstr(px->cfg.manifest_sha256), px->pinned,
                                                       sizeof px->pinned, &n)) &&
                          n == 32,
                      CF_E_CONFIG, "--manifest-sha256: expected 64 hex digits");
    }
    CF_GUARD(cf_hex_encode_str(cf_slice_make(px->pinned, 32), px->pinned_hex, sizeof px->pinned_hex));
    CF_GUARD(check_url(px, "--upstream", px->cfg.upstream));
    CF_GUARD(check_url(px, "--as", px->cfg.as_url));
    size_t ulen = strlen(px->cfg.upstream);
    while (ulen > 0 && px->cfg.upstream[ulen - 1] == '/') {
        ulen--;
    }
    px->upstream_base = strndup(px->cfg.upstream, ulen);
    CF_ENSURE(px->upstream_base != NULL, CF_E_NO_MEMORY);
    CF_GUARD(parse_models(px));
    if (px->cfg.cache_salt != NULL && px->cfg.cache_salt[0] != '\0') {
        CF_ENSURE_MSG(
            strlen(px->cfg.cache_salt) < sizeof px->shared_salt &&
                strspn(px->cfg.cache_salt, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
                    strlen(px->cfg.cache_salt),
            CF_E_CONFIG, "--cache-salt: 1..63 characters of A-Z a-z 0-9 - _ .");
        snprintf(px->shared_salt, sizeof px->shared_salt, "%s", px->cfg.cache_salt);
    } else if (px->cfg.shared_cache_salt) {
        uint8_t raw[32];
        CF_GUARD(cf_random(raw, sizeof raw));
        cf_result r = cf_b64url_encode_str(cf_slice_make(raw, sizeof raw), px->shared_salt, sizeof px->shared_salt);
        cf_wipe(raw, sizeof raw);
        CF_GUARD(r);
    }
    CF_GUARD(metrics_init(px));

    px->base = event_base_new();
    CF_ENSURE_MSG(px->base != NULL, CF_E_NO_MEMORY, "event_base_new failed");
    cf_http_client_config cc = {
        .ca_file = px->cfg.ca_file,
        .allow_plain_http = px->cfg.allow_plain_http,
        .connect_timeout_ms = (unsigned)px->cfg.connect_timeout_ms,
        .max_host_connections = (unsigned)px->cfg.max_concurrent,
    };
    CF_GUARD(cf_http_client_new(px->base, &cc, &px->http));
    px->as_ep =
        (cf_as_endpoint){.http = px->http, .base_url = px->cfg.as_url, .timeout_ms = (unsigned)px->cfg.as_timeout_ms};
    cf_http_server_config sc = {
        .host = px->cfg.host,
        .port = (uint16_t)px->cfg.port,
        .max_body_size = (size_t)px->cfg.max_body,
        .read_timeout_ms = (unsigned)px->cfg.read_timeout_ms,
        .write_timeout_ms = (unsigned)px->cfg.write_timeout_ms,
        .max_requests = (unsigned)px->cfg.max_concurrent,
        .metrics = px->m.registry,
        .name = "proxy",
    };
    CF_GUARD(cf_http_server_new(px->base, &sc, &px->server));
    CF_GUARD(px_routes_add(px));
    CF_GUARD(px_keys_init(px));
    return CF_OK;
}

static void on_keys_done(px_state *px) { event_base_loopexit(px->base, NULL); }

static void on_server_done(void *arg)
{
    px_state *px = arg;
    px_keys_shutdown(px, on_keys_done);
}

static void on_signal(int signo, void *arg)
{
    px_state *px = arg;
    if (px->exiting) {
        CF_LOG_WARN("shutdown_forced", cf_kv_int("signal", signo));
        event_base_loopbreak(px->base);
        return;
    }
    px->exiting = true;
    px->shutting_down = true; /* no new provisioning during the grace period */
    CF_LOG_INFO("shutdown_started", cf_kv_int("signal", signo),
                cf_kv_uint("active", cf_http_server_active(px->server)));
    cf_http_server_shutdown(px->server, (unsigned)px->cfg.shutdown_grace_ms, on_server_done, px);
}

/* First provisioning right after the loop starts. */
static void on_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    px_keys_kick(arg);
}

static void teardown(px_state *px)
{
    px_keys_free(px);
    cf_http_server_free(px->server);
    cf_http_client_free(px->http);
    cf_daemon_signals_free(px->signals);
    cf_metrics_free(px->m.registry);
    if (px->base != NULL) {
        event_base_free(px->base);
    }
    free(px->upstream_base);
    cf_wipe(px->shared_salt, sizeof px->shared_salt);
    cf_flags_free(&flag_set);
}

int main(int argc, char **argv)
{
    cf_log_init("confide-proxy", CF_LOG_INFO);
    int exit_code;
    if (!cf_flags_parse_or_exit(&flag_set, "confide-proxy", argc, argv, &exit_code)) {
        return exit_code;
    }
    px_state *px = &g_px;
    int rc = 0;
    if (cf_is_error(setup(px)) || cf_is_error(cf_daemon_signals_new(px->base, on_signal, px, &px->signals)) ||
        event_base_once(px->base, -1, EV_TIMEOUT, on_start, px, NULL) != 0) {
        const cf_error_info *e = cf_error_last();
        CF_LOG_ERROR("startup_failed", cf_kv_last_error());
        fprintf(stderr, "confide-proxy: %s: %s\n", cf_error_name(e->code), e->detail);
        rc = cf_error_code_last() == CF_E_CONFIG ? 2 : 1;
        goto out;
    }
    if (strcmp(px->cfg.host, "127.0.0.1") != 0 && strcmp(px->cfg.host, "::1") != 0 &&
        strcmp(px->cfg.host, "localhost") != 0) {
        CF_LOG_WARN("listening_beyond_loopback", cf_kv_str("host", px->cfg.host),
                    cf_kv_str("hint", "apps talk to the proxy in plaintext: anyone who can reach this address can "
                                      "read their prompts and use the inference key"));
    }
    CF_LOG_INFO("proxy_started", cf_kv_str("host", px->cfg.host), cf_kv_int("port", cf_http_server_port(px->server)),
                cf_kv_str("as", px->cfg.as_url), cf_kv_str("upstream", px->upstream_base),
                cf_kv_str("manifest", px->pinned_hex),
                cf_kv_str("cache_salt", px->shared_salt[0] ? "shared" : "per_request"));
    if (event_base_dispatch(px->base) < 0) {
        rc = 1;
    }
    CF_LOG_INFO("proxy_stopped");
out:
    teardown(px);
    return rc;
}
