/*
 * cmd_verify.c — `confide verify`: check attestation evidence (snp, tdx, sim)
 * through cf_attest_verify and print the verified claims or the precise
 * reason for rejection (docs/operations.md §confide verify).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "confide/attest.h"
#include "confide/buf.h"
#include "confide/encoding.h"
#include "confide/result.h"
#include "confide/tdx.h"

#define EVIDENCE_MAX ((size_t)1 << 20)   /* reports are 1184 B, quotes a few KiB */
#define COLLATERAL_MAX ((size_t)8 << 20) /* TDX collateral JSON can be large */
#define POLICY_MAX ((size_t)1 << 20)
#define MAX_ROOTS 16

static void verify_usage(FILE *f)
{
    fprintf(f,
            "usage: confide verify --platform snp|tdx|sim --evidence FILE [--collateral FILE]\n"
            "                      [--report-data HEX] [--at TIME] [--policy FILE]\n"
            "                      [--accept-root SHA256HEX]... [--json]\n"
            "       tdx collateral as separate Intel PCS files instead of --collateral:\n"
            "                      --tcb-info FILE --qe-identity FILE --tcb-issuer-chain FILE\n"
            "                      [--qe-identity-issuer-chain FILE] [--pck-crl FILE]\n"
            "                      [--root-ca-crl FILE] [--pck-crl-issuer-chain FILE]\n"
            "\n"
            "  --platform P        snp, tdx or sim\n"
            "  --evidence FILE     the report / quote bytes, exactly as produced\n"
            "  --collateral FILE   certificates / collateral (alias --certs); for snp: PEM or DER,\n"
            "                      VCEK or VLEK first, optionally the ASK/ASVK and AMD CRLs\n"
            "  --report-data HEX   expected report_data (up to 64 bytes, zero-padded on the right)\n"
            "  --at TIME           verification time: RFC 3339 (2025-06-01T00:00:00Z) or Unix\n"
            "                      seconds; default: now\n"
            "  --policy FILE       the platform policy object (JSON) from the manifest;\n"
            "                      default: production defaults (debug refused)\n"
            "  --accept-root FP    extra accepted root fingerprint (sim), repeatable\n"
            "  --json              print the result as JSON\n"
            "  --tcb-info ...      (tdx) PCS bodies {\"tcbInfo\":..} / {\"enclaveIdentity\":..}, the\n"
            "                      TCB-Info-Issuer-Chain PEM and DER/PEM CRLs, assembled into\n"
            "                      QuoteCollateralV3 (docs/attestation.md §Intel TDX)\n"
            "exit status: 0 verified, 1 rejected (reason on stderr), 2 usage error\n");
}

static CF_RESULT read_file_limited(const char *path, size_t max, cf_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        CF_BAIL_FMT(CF_E_IO, "cannot open %.200s: %s", path, strerror(errno));
    }
    uint8_t chunk[8192];
    size_t n;
    cf_result r = CF_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > max) {
            cf_error_setf(CF_E_TOO_LARGE, __FILE__, __LINE__, "%.200s is larger than %zu bytes", path, max);
            r = CF_ERROR;
            break;
        }
        if (cf_is_error(cf_buf_append(out, chunk, n))) {
            r = CF_ERROR;
            break;
        }
    }
    if (cf_is_ok(r) && ferror(f)) {
        cf_error_setf(CF_E_IO, __FILE__, __LINE__, "reading %.200s failed", path);
        r = CF_ERROR;
    }
    fclose(f);
    return r;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`) or
 * plain Unix seconds. */
static CF_RESULT parse_time(const char *s, int64_t *out)
{
    size_t len = strlen(s);
    bool all_digits = len > 0 && len <= 12;
    for (size_t i = 0; all_digits && i < len; i++) {
        all_digits = isdigit((unsigned char)s[i]);
    }
    if (all_digits) {
        *out = (int64_t)strtoll(s, NULL, 10);
        return CF_OK;
    }
    int Y, M, D, h, m, sec;
    CF_ENSURE_MSG(len >= 20 && digits(s, 4, &Y) == 0 && s[4] == '-' && digits(s + 5, 2, &M) == 0 && s[7] == '-' &&
                      digits(s + 8, 2, &D) == 0 && (s[10] == 'T' || s[10] == 't' || s[10] == ' ') &&
                      digits(s + 11, 2, &h) == 0 && s[13] == ':' && digits(s + 14, 2, &m) == 0 && s[16] == ':' &&
                      digits(s + 17, 2, &sec) == 0,
                  CF_E_INVALID_ARGUMENT, "--at: expected RFC 3339 (2025-06-01T00:00:00Z) or Unix seconds");
    CF_ENSURE_MSG(M >= 1 && M <= 12 && D >= 1 && D <= 31 && h <= 23 && m <= 59 && sec <= 60, CF_E_INVALID_ARGUMENT,
                  "--at: date or time out of range");
    const char *p = s + 19;
    if (*p == '.') { /* fractional seconds: ignored (verification is per second) */
        p++;
        CF_ENSURE_MSG(isdigit((unsigned char)*p), CF_E_INVALID_ARGUMENT, "--at: bad fractional seconds");
        while (isdigit((unsigned char)*p)) {
            p++;
        }
    }
    int offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        CF_ENSURE_MSG(digits(p + 1, 2, &oh) == 0 && p[3] == ':' && digits(p + 4, 2, &om) == 0 && oh <= 23 && om <= 59,
                      CF_E_INVALID_ARGUMENT, "--at: bad UTC offset");
        offset = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        CF_BAIL_MSG(CF_E_INVALID_ARGUMENT, "--at: RFC 3339 needs Z or a UTC offset");
    }
    CF_ENSURE_MSG(*p == '\0', CF_E_INVALID_ARGUMENT, "--at: trailing characters");
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h, .tm_min = m, .tm_sec = sec};
    time_t t = timegm(&tm);
    CF_ENSURE_MSG(tm.tm_mday == D, CF_E_INVALID_ARGUMENT, "--at: no such day");
    *out = (int64_t)t - offset;
    return CF_OK;
}

static void print_json_flat(const char *prefix, json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach(v, k, child)
        {
            char key[128];
            snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", k);
            print_json_flat(key, child);
        }
        return;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (text != NULL) {
        /* Strings without their quotes: easier to read and to grep. */
        if (json_is_string(v)) {
            printf("  %-28s %s\n", prefix, json_string_value(v));
        } else {
            printf("  %-28s %s\n", prefix, text);
        }
        free(text);
    }
}

static int fail_json(void)
{
    const cf_error_info *e = cf_error_last();
    json_t *o = json_pack("{s:b,s:s,s:s}", "ok", 0, "error", cf_error_name(e->code), "detail", e->detail);
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    if (text != NULL) {
        printf("%s\n", text);
    }
    free(text);
    json_decref(o);
    return cf_cli_fail("verification failed");
}

/* The separate Intel PCS files `confide verify --platform tdx` accepts in
 * place of one QuoteCollateralV3 document. */
enum { TDX_TCB_INFO, TDX_QE_IDENTITY, TDX_TCB_CHAIN, TDX_QE_CHAIN, TDX_PCK_CRL, TDX_ROOT_CRL, TDX_PCK_CRL_CHAIN,
       TDX_PART_COUNT };

static CF_RESULT assemble_tdx_parts(const char *const paths[TDX_PART_COUNT], cf_buf *collateral)
{
    cf_result result = CF_OK;
    cf_buf bufs[TDX_PART_COUNT];
    for (int i = 0; i < TDX_PART_COUNT; i++) {
        cf_buf_init(&bufs[i], COLLATERAL_MAX);
    }
    CF_ENSURE_MSG_OUT(paths[TDX_TCB_INFO] != NULL && paths[TDX_QE_IDENTITY] != NULL && paths[TDX_TCB_CHAIN] != NULL,
                      CF_E_INVALID_ARGUMENT, "--tcb-info, --qe-identity and --tcb-issuer-chain go together");
    for (int i = 0; i < TDX_PART_COUNT; i++) {
        if (paths[i] != NULL) {
            CF_GUARD_OUT(read_file_limited(paths[i], COLLATERAL_MAX, &bufs[i]));
        }
    }
    cf_tdx_collateral_parts parts = {
        .tcb_info_body = cf_buf_slice(&bufs[TDX_TCB_INFO]),
        .qe_identity_body = cf_buf_slice(&bufs[TDX_QE_IDENTITY]),
        .tcb_info_issuer_chain = cf_buf_slice(&bufs[TDX_TCB_CHAIN]),
        .qe_identity_issuer_chain = cf_buf_slice(&bufs[TDX_QE_CHAIN]),
        .pck_crl = cf_buf_slice(&bufs[TDX_PCK_CRL]),
        .root_ca_crl = cf_buf_slice(&bufs[TDX_ROOT_CRL]),
        .pck_crl_issuer_chain = cf_buf_slice(&bufs[TDX_PCK_CRL_CHAIN]),
    };
    CF_GUARD_OUT(cf_tdx_collateral_assemble(&parts, collateral));
out:
    for (int i = 0; i < TDX_PART_COUNT; i++) {
        cf_buf_free(&bufs[i]);
    }
    return result;
}

static int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"platform", required_argument, NULL, 'p'}, {"evidence", required_argument, NULL, 'e'},
        {"collateral", required_argument, NULL, 'c'}, {"certs", required_argument, NULL, 'c'},
        {"report-data", required_argument, NULL, 'r'}, {"at", required_argument, NULL, 't'},
        {"policy", required_argument, NULL, 'P'}, {"accept-root", required_argument, NULL, 'R'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
        {"tcb-info", required_argument, NULL, 0x100 + TDX_TCB_INFO},
        {"qe-identity", required_argument, NULL, 0x100 + TDX_QE_IDENTITY},
        {"tcb-issuer-chain", required_argument, NULL, 0x100 + TDX_TCB_CHAIN},
        {"qe-identity-issuer-chain", required_argument, NULL, 0x100 + TDX_QE_CHAIN},
        {"pck-crl", required_argument, NULL, 0x100 + TDX_PCK_CRL},
        {"root-ca-crl", required_argument, NULL, 0x100 + TDX_ROOT_CRL},
        {"pck-crl-issuer-chain", required_argument, NULL, 0x100 + TDX_PCK_CRL_CHAIN}, {NULL, 0, NULL, 0},
    };
    const char *platform_name = NULL, *evidence_path = NULL, *collateral_path = NULL, *policy_path = NULL;
    const char *report_data_hex = NULL, *at_text = NULL;
    const char *roots[MAX_ROOTS];
    size_t root_count = 0;
    bool as_json = false;
    const char *tdx_parts[TDX_PART_COUNT] = {NULL};
    bool have_tdx_parts = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': platform_name = optarg; break;
        case 'e': evidence_path = optarg; break;
        case 'c': collateral_path = optarg; break;
        case 'r': report_data_hex = optarg; break;
        case 't': at_text = optarg; break;
        case 'P': policy_path = optarg; break;
        case 'R':
            if (root_count == MAX_ROOTS) {
                fprintf(stderr, "confide verify: at most %d --accept-root\n", MAX_ROOTS);
                return 2;
            }
            roots[root_count++] = optarg;
            break;
        case 'j': as_json = true; break;
        case 'h': verify_usage(stdout); return 0;
        default:
            if (c >= 0x100 && c < 0x100 + TDX_PART_COUNT) {
                tdx_parts[c - 0x100] = optarg;
                have_tdx_parts = true;
                break;
            }
            verify_usage(stderr);
            return 2;
        }
    }
    if (optind != argc || platform_name == NULL || evidence_path == NULL) {
        verify_usage(stderr);
        return 2;
    }

    int status = 1;
    cf_buf evidence, collateral, policy_text;
    cf_buf_init(&evidence, EVIDENCE_MAX);
    cf_buf_init(&collateral, COLLATERAL_MAX);
    cf_buf_init(&policy_text, POLICY_MAX);
    json_t *policy = NULL, *accepted = NULL;
    cf_claims claims = {0};
    uint8_t expected[CF_REPORT_DATA_LEN] = {0};
    cf_verify_input in = {0};

    if (cf_is_error(cf_platform_parse(platform_name, &in.platform))) {
        cf_cli_fail("--platform");
        status = 2;
        goto out;
    }
    in.now = (int64_t)time(NULL);
    if (at_text != NULL && cf_is_error(parse_time(at_text, &in.now))) {
        cf_cli_fail(NULL);
        status = 2;
        goto out;
    }
    if (report_data_hex != NULL) {
        size_t got = 0;
        if (cf_is_error(cf_hex_decode_fixed(cf_slice_cstr(report_data_hex), expected, sizeof expected, &got))) {
            cf_cli_fail("--report-data (hex, at most 64 bytes)");
            status = 2;
            goto out;
        }
        in.expected_report_data = expected;
    }
    if (cf_is_error(read_file_limited(evidence_path, EVIDENCE_MAX, &evidence))) {
        cf_cli_fail("--evidence");
        goto out;
    }
    if (have_tdx_parts) {
        if (in.platform != CF_PLATFORM_TDX || collateral_path != NULL) {
            fprintf(stderr, "confide verify: the PCS file flags are for --platform tdx, instead of --collateral\n");
            status = 2;
            goto out;
        }
        if (cf_is_error(assemble_tdx_parts(tdx_parts, &collateral))) {
            cf_cli_fail("tdx collateral");
            goto out;
        }
    }
    if (collateral_path != NULL && cf_is_error(read_file_limited(collateral_path, COLLATERAL_MAX, &collateral))) {
        cf_cli_fail("--collateral");
        goto out;
    }
    if (policy_path != NULL) {
        json_error_t jerr;
        const char *text = NULL;
        if (cf_is_error(read_file_limited(policy_path, POLICY_MAX, &policy_text)) ||
            cf_is_error(cf_buf_cstr(&policy_text, &text))) {
            cf_cli_fail("--policy");
            goto out;
        }
        policy = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        if (policy == NULL) {
            fprintf(stderr, "confide: bad_config: --policy: line %d: %s\n", jerr.line, jerr.text);
            goto out;
        }
        if (cf_is_error(cf_attest_policy_validate(in.platform, policy))) {
            cf_cli_fail("--policy");
            goto out;
        }
        in.policy = policy;
    }
    if (root_count > 0) {
        accepted = json_array();
        for (size_t i = 0; accepted != NULL && i < root_count; i++) {
            json_array_append_new(accepted, json_string(roots[i]));
        }
        in.accepted_roots = accepted;
    }
    in.evidence = cf_buf_slice(&evidence);
    in.collateral = cf_buf_slice(&collateral);

    if (cf_is_error(cf_attest_verify(&in, &claims))) {
        status = as_json ? fail_json() : cf_cli_fail("verification failed");
        goto out;
    }

    char rd_hex[2 * CF_REPORT_DATA_LEN + 1], m_hex[2 * CF_MEASUREMENT_MAX + 1];
    if (cf_is_error(cf_hex_encode_str(cf_slice_make(claims.report_data, CF_REPORT_DATA_LEN), rd_hex, sizeof rd_hex)) ||
        cf_is_error(cf_hex_encode_str(cf_slice_make(claims.measurement, claims.measurement_len), m_hex,
                                      sizeof m_hex))) {
        cf_cli_fail("formatting claims");
        goto out;
    }
    if (as_json) {
        json_t *o = json_pack("{s:b,s:s,s:s,s:s,s:b,s:s,s:O}", "ok", 1, "platform", cf_platform_name(claims.platform),
                              "measurement", m_hex, "report_data", rd_hex, "debug", claims.debug, "tcb", claims.tcb,
                              "details", claims.details ? claims.details : json_null());
        char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        if (text == NULL) {
            json_decref(o);
            fprintf(stderr, "confide: no_memory\n");
            goto out;
        }
        printf("%s\n", text);
        free(text);
        json_decref(o);
    } else {
        printf("verified: %s evidence at %lld%s\n", cf_platform_name(claims.platform), (long long)in.now,
               in.expected_report_data ? " (report_data matches)" : " (report_data NOT checked: no --report-data)");
        printf("  %-28s %s\n", "measurement", m_hex);
        printf("  %-28s %s\n", "report_data", rd_hex);
        printf("  %-28s %s\n", "debug", claims.debug ? "true" : "false");
        printf("  %-28s %s\n", "tcb", claims.tcb);
        if (claims.details != NULL) {
            printf("details:\n");
            print_json_flat("", claims.details);
        }
    }
    status = 0;
out:
    cf_claims_free(&claims);
    json_decref(policy);
    json_decref(accepted);
    cf_buf_free(&evidence);
    cf_buf_free(&collateral);
    cf_buf_free(&policy_text);
    return status;
}

CF_CLI_COMMAND("verify", "verify attestation evidence (snp, tdx, sim) and print the claims", cmd_verify)
