/* main.c — confide-as: flags, keys, self-check, server, graceful shutdown
 * (see as.h; operator documentation in docs/operations.md §confide-as). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "as.h"
#include "confide/crypto.h"
#include "confide/log.h"

static as_state g_as; /* one per process; the signal callback needs it */

static cf_flag flags[] = {
    {"host", CF_FLAG_STRING, "127.0.0.1", "address to listen on", &g_as.cfg.host, false, 0, 0},
    {"port", CF_FLAG_INT, "7100", "TCP port to listen on (0 = any free port, printed at start)", &g_as.cfg.port, false,
     0, 65535},
    {"tls-cert", CF_FLAG_STRING, NULL, "PEM certificate chain: serve HTTPS (with --tls-key)", &g_as.cfg.tls_cert, false,
     0, 0},
    {"tls-key", CF_FLAG_STRING, NULL, "PEM private key file for --tls-cert (keep it mode 0600)",
     &g_as.cfg.tls_key, false, 0, 0},
    {"platform", CF_FLAG_STRING, NULL, "TEE platform this AS runs on: sim, snp or tdx", &g_as.cfg.platform_name, true,
     0, 0},
    {"sim-dir", CF_FLAG_STRING, NULL, "sim platform directory (confide sim init), for --platform sim",
     &g_as.cfg.sim_dir, false, 0, 0},
    {"tsm-path", CF_FLAG_STRING, NULL, "configfs-tsm report root for snp/tdx (default /sys/kernel/config/tsm/report)",
     &g_as.cfg.tsm_path, false, 0, 0},
    {"collateral-dir", CF_FLAG_STRING, NULL, "snp/tdx: directory of certificates/collateral served with evidence",
     &g_as.cfg.collateral_dir, false, 0, 0},
    {"manifest", CF_FLAG_STRING, NULL, "the manifest file this AS enforces (its SHA-256 is what clients pin)",
     &g_as.cfg.manifest_path, true, 0, 0},
    {"token-ttl", CF_FLAG_INT, "600", "lifetime of worker tokens, seconds", &g_as.cfg.token_ttl_s, false, 2, 86400},
    {"token-notice", CF_FLAG_INT, "60",
     "send token_expiring this many seconds before a worker's token ends (re-attest)", &g_as.cfg.token_notice_s, false,
     0, 3600},
    {"challenge-ttl", CF_FLAG_INT, "60", "lifetime of worker challenge nonces, seconds", &g_as.cfg.challenge_ttl_s,
     false, 1, 3600},
    {"max-keys", CF_FLAG_INT, "10000", "most inference secrets held at once", &g_as.cfg.max_keys, false, 1, 10000000},
    {"max-workers", CF_FLAG_INT, "256", "most connected worker key streams", &g_as.cfg.max_workers, false, 1, 100000},
    {"max-challenges", CF_FLAG_INT, "4096", "most outstanding worker challenges", &g_as.cfg.max_challenges, false, 1,
     1000000},
    {"max-body", CF_FLAG_INT, "1M", "largest request body in bytes (413 beyond)", &g_as.cfg.max_body, false, 1024,
     CF_AS_BODY_MAX},
    {"rate-attest", CF_FLAG_INT, "60",
     "attestations and worker challenges/attestations per minute per client IP", &g_as.cfg.rate_attest, false, 1,
     1000000},
    {"rate-upload", CF_FLAG_INT, "120", "key uploads and deletions per minute per client IP", &g_as.cfg.rate_upload,
     false, 1, 1000000},
    {"rate-burst", CF_FLAG_INT, "20", "requests a client IP may burst above its rate", &g_as.cfg.rate_burst, false, 1,
     100000},
    {"read-timeout-ms", CF_FLAG_INT, "10000", "drop a client that sends its request slower than this",
     &g_as.cfg.read_timeout_ms, false, 100, 600000},
    {"write-timeout-ms", CF_FLAG_INT, "30000", "drop a client (or key stream) that stops reading for this long",
     &g_as.cfg.write_timeout_ms, false, 100, 600000},
    {"keepalive", CF_FLAG_INT, "15", "seconds between keep-alive comments on key streams (0 = none)",
     &g_as.cfg.keepalive_s, false, 0, 3600},
    {"self-check", CF_FLAG_BOOL, "true",
     "at start, verify our own evidence against the manifest's AS policy and refuse to run if it fails",
     &g_as.self_check, false, 0, 0},
};

static cf_flag_set flag_set = {
    .program = "confide-as",
    .summary = "The confide attestation service. Proves its identity and the manifest it enforces to clients "
               "(POST /v1/attest), accepts HPKE-sealed inference secrets (POST /v1/keys), verifies workers' "
               "evidence against the manifest (POST /v1/workers/challenge, /v1/workers/attest) and streams each "
               "worker exactly the secrets its policy may serve, wrapped to its attested key "
               "(GET /v1/workers/keys). State is in memory only. See docs/operations.md.",
    .env_prefix = "CONFIDE_AS",
    .flags = flags,
    .count = sizeof flags / sizeof flags[0],
};

static CF_RESULT metrics_init(as_state *as)
{
    as_metrics *m = &as->m;
    CF_GUARD(cf_metrics_new(&m->registry));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_as_keys", "Inference secrets held", NULL, &m->keys));
    static const cf_metric_label ok[] = {{"result", "accepted"}, {NULL, NULL}};
    static const cf_metric_label rej[] = {{"result", "rejected"}, {NULL, NULL}};
    CF_GUARD(cf_metrics_counter(m->registry, "confide_as_key_uploads_total", "Key uploads by result", ok,
                                &m->uploads_ok));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_as_key_uploads_total", "Key uploads by result", rej,
                                &m->uploads_rejected));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_as_key_deletes_total", "Keys deleted by their owner", NULL,
                                &m->deletes));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_as_keys_expired_total", "Keys removed at the end of their TTL",
                                NULL, &m->expired));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_as_self_attestations_total",
                                "Attestations of this AS served to clients", NULL, &m->self_attestations));
    CF_GUARD(cf_metrics_gauge(m->registry, "confide_as_workers_connected", "Connected worker key streams", NULL,
                              &m->workers_connected));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_as_worker_attestations_total",
                                "Worker attestations by result and reason", ok, &m->worker_accepted));
#define AS_REGISTER_REASON(code)                                                                                      \
    {                                                                                                                 \
        const cf_metric_label l[] = {{"result", "rejected"}, {"reason", cf_error_name(code)}, {NULL, NULL}};         \
        CF_GUARD(cf_metrics_counter(m->registry, "confide_as_worker_attestations_total",                             \
                                    "Worker attestations by result and reason", l, &m->worker_rejected[code]));       \
    }
    AS_REASONS(AS_REGISTER_REASON)
#undef AS_REGISTER_REASON
    CF_GUARD(cf_metrics_counter(m->registry, "confide_as_rate_limited_total", "Requests refused by the rate limits",
                                NULL, &m->rate_limited));
    CF_GUARD(cf_metrics_counter(m->registry, "confide_as_key_fetches_total", "Single keys fetched by workers", NULL,
                                &m->fetches));
    return CF_OK;
}

/* Attest to ourselves with a random nonce, exactly as a client would. */
static CF_RESULT self_check(as_state *as)
{
    cf_result result = CF_OK;
    uint8_t nonce[CF_AS_NONCE_LEN], rd[CF_REPORT_DATA_LEN];
    cf_buf ev, col;
    cf_buf_init(&ev, CF_AS_EVIDENCE_MAX);
    cf_buf_init(&col, CF_AS_COLLATERAL_MAX);
    cf_claims claims = {0};
    CF_GUARD_OUT(cf_random(nonce, sizeof nonce));
    CF_GUARD_OUT(cf_as_report_data(nonce, cf_hpke_keypair_public(&as->hpke),
                                   cf_slice_make(as->sign_pub, sizeof as->sign_pub), as->manifest->sha256, rd));
    CF_GUARD_OUT(cf_attest_collect(&as->attester, rd, &ev, &col));
    CF_GUARD_OUT(cf_manifest_verify_as(as->manifest, as->platform, cf_buf_slice(&ev), cf_buf_slice(&col), rd,
                                       as_now(), &claims));
    CF_LOG_INFO("self_check_passed", cf_kv_str("tcb", claims.tcb));
out:
    cf_claims_free(&claims);
    cf_buf_free(&ev);
    cf_buf_free(&col);
    return result;
}

static CF_RESULT setup(as_state *as)
{
    CF_GUARD(cf_platform_parse(as->cfg.platform_name, &as->platform));
    CF_GUARD_MSG(cf_manifest_load(as->cfg.manifest_path, &as->manifest), "--manifest");
    if (as->platform != as->manifest->as_platform) {
        CF_BAIL_FMT(CF_E_CONFIG, "--platform %s but the manifest's AS policy is for %s", cf_platform_name(as->platform),
                    cf_platform_name(as->manifest->as_platform));
    }
    CF_ENSURE_MSG(as->platform != CF_PLATFORM_SIM || as->cfg.sim_dir != NULL, CF_E_CONFIG,
                  "--platform sim needs --sim-dir");
    CF_ENSURE_MSG((as->cfg.tls_cert == NULL) == (as->cfg.tls_key == NULL), CF_E_CONFIG,
                  "--tls-cert and --tls-key go together");
    as->attester = (cf_attester_config){.platform = as->platform,
                                        .sim_dir = as->cfg.sim_dir,
                                        .tsm_path = as->cfg.tsm_path,
                                        .collateral_dir = as->cfg.collateral_dir};
    /* Fresh keys every start, in memory only. */
    CF_GUARD(cf_hpke_keypair_generate(CF_HPKE_SUITE_DEFAULT.kem_id, &as->hpke));
    CF_GUARD(cf_ed25519_keygen(&as->sign_key));
    CF_GUARD(cf_ed25519_public_raw(as->sign_key, as->sign_pub));
    if (as->self_check) {
        CF_GUARD_MSG(self_check(as), "self-check (our evidence against the manifest's AS policy)");
    }
    CF_GUARD(as_store_init(as));
    CF_GUARD(metrics_init(as));
    CF_GUARD(cf_rate_limiter_new((double)as->cfg.rate_attest / 60.0, (double)as->cfg.rate_burst, 4096,
                                 &as->rl_attest));
    CF_GUARD(cf_rate_limiter_new((double)as->cfg.rate_upload / 60.0, (double)as->cfg.rate_burst, 4096,
                                 &as->rl_upload));

    as->base = event_base_new();
    CF_ENSURE_MSG(as->base != NULL, CF_E_NO_MEMORY, "event_base_new failed");
    cf_http_server_config sc = {
        .host = as->cfg.host,
        .port = (uint16_t)as->cfg.port,
        .tls_cert_file = as->cfg.tls_cert,
        .tls_key_file = as->cfg.tls_key,
        .max_body_size = (size_t)as->cfg.max_body,
        .read_timeout_ms = (unsigned)as->cfg.read_timeout_ms,
        .write_timeout_ms = (unsigned)as->cfg.write_timeout_ms,
        .metrics = as->m.registry,
        .name = "as",
    };
    CF_GUARD(cf_http_server_new(as->base, &sc, &as->server));
    CF_GUARD(as_routes_add(as));
    CF_GUARD(as_tick_start(as));
    return CF_OK;
}

static void on_shutdown_done(void *arg)
{
    as_state *as = arg;
    event_base_loopexit(as->base, NULL);
}

static void on_signal(int signo, void *arg)
{
    as_state *as = arg;
    if (as->shutting_down) {
        CF_LOG_WARN("shutdown_forced", cf_kv_int("signal", signo));
        event_base_loopbreak(as->base);
        return;
    }
    as->shutting_down = true;
    CF_LOG_INFO("shutdown_started", cf_kv_int("signal", signo));
    as_workers_close_all(as);
    cf_http_server_shutdown(as->server, 5000, on_shutdown_done, as);
}

static void teardown(as_state *as)
{
    if (as->tick != NULL) {
        event_free(as->tick);
    }
    as_store_free(as);
    cf_http_server_free(as->server);
    cf_daemon_signals_free(as->signals);
    cf_rate_limiter_free(as->rl_attest);
    cf_rate_limiter_free(as->rl_upload);
    cf_metrics_free(as->m.registry);
    if (as->base != NULL) {
        event_base_free(as->base);
    }
    cf_manifest_free(as->manifest);
    cf_hpke_keypair_wipe(&as->hpke);
    EVP_PKEY_free(as->sign_key);
    cf_flags_free(&flag_set);
}

int main(int argc, char **argv)
{
    cf_log_init("confide-as", CF_LOG_INFO);
    int exit_code;
    if (!cf_flags_parse_or_exit(&flag_set, "confide-as", argc, argv, &exit_code)) {
        return exit_code;
    }
    as_state *as = &g_as;
    int rc = 0;
    if (cf_is_error(setup(as)) || cf_is_error(cf_daemon_signals_new(as->base, on_signal, as, &as->signals))) {
        CF_LOG_ERROR("startup_failed", cf_kv_last_error());
        rc = 1;
        goto out;
    }
    CF_LOG_INFO("as_started", cf_kv_str("host", as->cfg.host), cf_kv_int("port", cf_http_server_port(as->server)),
                cf_kv_str("platform", cf_platform_name(as->platform)), cf_kv_str("manifest", as->manifest->sha256_hex),
                cf_kv_str("tls", as->cfg.tls_cert ? "on" : "off"));
    if (event_base_dispatch(as->base) < 0) {
        rc = 1;
    }
    CF_LOG_INFO("as_stopped");
out:
    teardown(as);
    return rc;
}
