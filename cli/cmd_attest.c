/* cmd_attest.c — `confide attest`: fetch an attestation service's evidence
 * with a fresh nonce, verify it exactly as confide-proxy does
 * (cf_as_attest_fetch: platform root, the pinned manifest's AS policy,
 * report_data binding, the AS enforces the pinned manifest) and print what
 * was verified. Exit 0 only when every check held. */
#define _GNU_SOURCE /* strptime, timegm */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "confide/as_client.h"
#include "confide/encoding.h"
#include "confide/manifest.h"

static void attest_usage(FILE *f)
{
    fprintf(f, "usage: confide attest --as URL (--manifest FILE | --manifest-sha256 HEX) [--at TIME]\n"
               "                      [--ca-file FILE] [--allow-plain-http] [--timeout-ms N] [--json]\n"
               "\n"
               "Ask the attestation service at URL for its attestation with a fresh nonce and\n"
               "verify it like confide-proxy: evidence up to the platform root, the manifest's\n"
               "AS policy, report_data binding nonce + both AS keys + manifest hash, and the AS\n"
               "enforcing exactly the pinned manifest. Prints platform, measurement, TCB,\n"
               "manifest hash and the SHA-256 fingerprints of the AS keys.\n"
               "  --at TIME   verification time: Unix seconds or YYYY-MM-DDTHH:MM:SSZ (default now)\n"
               "Exit status: 0 verified, 1 verification or transport failed, 2 usage.\n");
}

static int parse_at(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end != s && *end == '\0' && v >= 0) {
        *out = v;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (rest == NULL || *rest != '\0') {
        return -1;
    }
    *out = (int64_t)timegm(&tm);
    return 0;
}

static int cmd_attest(int argc, char **argv)
{
    const char *as_url = NULL, *manifest_path = NULL, *manifest_hex = NULL, *ca_file = NULL, *at = NULL;
    bool plain_http = false, as_json = false;
    long timeout_ms = 10000;
    static const struct option longopts[] = {
        {"as", required_argument, NULL, 'a'},
        {"manifest", required_argument, NULL, 'm'},
        {"manifest-sha256", required_argument, NULL, 's'},
        {"at", required_argument, NULL, 't'},
        {"ca-file", required_argument, NULL, 'c'},
        {"allow-plain-http", no_argument, NULL, 'p'},
        {"timeout-ms", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'a': as_url = optarg; break;
        case 'm': manifest_path = optarg; break;
        case 's': manifest_hex = optarg; break;
        case 't': at = optarg; break;
        case 'c': ca_file = optarg; break;
        case 'p': plain_http = true; break;
        case 'T': timeout_ms = strtol(optarg, NULL, 10); break;
        case 'j': as_json = true; break;
        case 'h': attest_usage(stdout); return 0;
        default: attest_usage(stderr); return 2;
        }
    }
    if (optind != argc || as_url == NULL || (manifest_path == NULL) == (manifest_hex == NULL) || timeout_ms < 1 ||
        timeout_ms > 600000) {
        fprintf(stderr, "confide attest: --as and exactly one of --manifest / --manifest-sha256 are required\n");
        attest_usage(stderr);
        return 2;
    }
    int64_t now = (int64_t)time(NULL);
    if (at != NULL && parse_at(at, &now) != 0) {
        fprintf(stderr, "confide attest: --at: expected Unix seconds or YYYY-MM-DDTHH:MM:SSZ\n");
        return 2;
    }
    uint8_t pinned[32];
    if (manifest_path != NULL) {
        cf_manifest *m = NULL;
        if (cf_is_error(cf_manifest_load(manifest_path, &m))) {
            return cf_cli_fail("--manifest");
        }
        memcpy(pinned, m->sha256, 32);
        cf_manifest_free(m);
    } else {
        size_t n = 0;
        if (strlen(manifest_hex) != 64 ||
            cf_is_error(cf_hex_decode_fixed(cf_slice_cstr(manifest_hex), pinned, sizeof pinned, &n)) || n != 32) {
            fprintf(stderr, "confide attest: --manifest-sha256: expected 64 hex digits\n");
            return 2;
        }
    }
    cf_http_client_config cfg = {.ca_file = ca_file, .allow_plain_http = plain_http};
    cf_as_identity id;
    if (cf_is_error(cf_as_attest_fetch(&cfg, as_url, (unsigned)timeout_ms, pinned, now, &id))) {
        if (as_json) {
            const cf_error_info *e = cf_error_last();
            json_t *o = json_pack("{s:b,s:s,s:s}", "ok", 0, "error", cf_error_name(e->code), "detail", e->detail);
            char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (text != NULL) {
                printf("%s\n", text);
            }
            free(text);
            json_decref(o);
        }
        return cf_cli_fail("attestation failed");
    }
    char meas[2 * CF_MEASUREMENT_MAX + 1] = "", hpke_fp[65] = "", sign_fp[65] = "";
    int rc = 0;
    if (cf_is_error(
            cf_hex_encode_str(cf_slice_make(id.claims.measurement, id.claims.measurement_len), meas, sizeof meas)) ||
        cf_is_error(cf_as_identity_fingerprints(&id, hpke_fp, sign_fp))) {
        rc = cf_cli_fail("output");
        goto out;
    }
    if (as_json) {
        json_t *o =
            json_pack("{s:b,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:s,s:I,s:O?}", "ok", 1, "as", as_url, "platform",
                      cf_platform_name(id.platform), "measurement", meas, "tcb", id.claims.tcb, "debug",
                      id.claims.debug, "manifest_sha256", id.manifest->sha256_hex, "as_hpke_key_sha256", hpke_fp,
                      "as_signing_key_sha256", sign_fp, "verified_at", (json_int_t)now, "details", id.claims.details);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (text == NULL) {
            json_decref(o);
            fprintf(stderr, "confide: no_memory\n");
            rc = 1;
            goto out;
        }
        printf("%s\n", text);
        free(text);
        json_decref(o);
        goto out;
    }
    printf("verified: attestation service %s at %lld\n", as_url, (long long)now);
    printf("  %-24s %s\n", "platform", cf_platform_name(id.platform));
    printf("  %-24s %s\n", "measurement", meas);
    printf("  %-24s %s\n", "tcb", id.claims.tcb);
    printf("  %-24s %s\n", "debug", id.claims.debug ? "true" : "false");
    printf("  %-24s %s (%s)\n", "manifest_sha256", id.manifest->sha256_hex, id.manifest->name);
    printf("  %-24s %s\n", "as_hpke_key_sha256", hpke_fp);
    printf("  %-24s %s\n", "as_signing_key_sha256", sign_fp);
    printf("  %-24s %s\n", "report_data", "binds nonce, both AS keys and the manifest hash");
out:
    cf_as_identity_free(&id);
    return rc;
}

CF_CLI_COMMAND("attest", "fetch and verify an attestation service against a pinned manifest", cmd_attest)
