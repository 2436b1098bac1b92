/*
 * snp_policy.c — the manifest's SEV-SNP policy object (keys documented in
 * docs/attestation.md §AMD SEV-SNP). Strict: unknown keys, wrong types and
 * out-of-range values are errors whose detail names the field.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confide/encoding.h"
#include "confide/snp.h"

void cf_snp_policy_free(cf_snp_policy *p)
{
    if (p != NULL) {
        free(p->measurements);
        free(p->host_data);
        free(p->id_key_digests);
        memset(p, 0, sizeof *p);
    }
}

/* jansson's iteration macros take a non-const json_t; we only read. */
static json_t *readonly(const json_t *j) { return (json_t *)(uintptr_t)j; }

static void defaults(cf_snp_policy *p)
{
    memset(p, 0, sizeof *p);
    p->allow_smt = true;
    p->vmpl = -1;
    p->min_report_version = CF_SNP_MIN_VERSION;
    p->allow_vcek = p->allow_vlek = true;
    for (size_t i = 0; i < sizeof p->products / sizeof p->products[0]; i++) {
        p->products[i] = true;
    }
    p->products[CF_SNP_PRODUCT_UNKNOWN] = false;
}

static CF_RESULT get_bool(const json_t *v, const char *key, bool *out)
{
    if (!json_is_boolean(v)) {
        CF_BAIL_FMT(CF_E_CONFIG, "snp policy: \"%s\" must be true or false", key);
    }
    *out = json_is_true(v);
    return CF_OK;
}

static CF_RESULT get_uint(const json_t *v, const char *key, json_int_t lo, json_int_t hi, json_int_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        CF_BAIL_FMT(CF_E_CONFIG, "snp policy: \"%s\" must be an integer in %lld..%lld", key, (long long)lo,
                    (long long)hi);
    }
    *out = json_integer_value(v);
    return CF_OK;
}

/* A non-empty array of lower/upper-case hex strings of exactly `n` bytes. */
static CF_RESULT get_hex_list(const json_t *v, const char *key, size_t n, uint8_t **out, size_t *count)
{
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > CF_SNP_POLICY_MAX_VALUES) {
        CF_BAIL_FMT(CF_E_CONFIG, "snp policy: \"%s\" must be a non-empty array of at most %d hex strings", key,
                    CF_SNP_POLICY_MAX_VALUES);
    }
    size_t m = json_array_size(v);
    uint8_t *vals = calloc(m, n);
    CF_ENSURE(vals != NULL, CF_E_NO_MEMORY);
    for (size_t i = 0; i < m; i++) {
        const json_t *s = json_array_get(v, i);
        size_t got = 0;
        if (!json_is_string(s) || json_string_length(s) != 2 * n ||
            cf_is_error(cf_hex_decode_fixed(cf_slice_make(json_string_value(s), json_string_length(s)),
                                            vals + i * n, n, &got)) ||
            got != n) {
            free(vals);
            CF_BAIL_FMT(CF_E_CONFIG, "snp policy: \"%s\"[%zu] must be %zu hex digits", key, i, 2 * n);
        }
    }
    *out = vals;
    *count = m;
    return CF_OK;
}

static CF_RESULT parse_min_tcb(const json_t *v, cf_snp_policy *p)
{
    CF_ENSURE_MSG(json_is_object(v), CF_E_CONFIG, "snp policy: \"min_tcb\" must be an object");
    const char *k;
    const json_t *val;
    json_object_foreach(readonly(v), k, val)
    {
        json_int_t n;
        char path[48];
        snprintf(path, sizeof path, "min_tcb.%.20s", k);
        uint8_t *dst = strcmp(k, "bl") == 0      ? &p->min_bl
                       : strcmp(k, "tee") == 0   ? &p->min_tee
                       : strcmp(k, "snp") == 0   ? &p->min_snp
                       : strcmp(k, "ucode") == 0 ? &p->min_ucode
                       : strcmp(k, "fmc") == 0   ? &p->min_fmc
                                                 : NULL;
        if (dst == NULL) {
            CF_BAIL_FMT(CF_E_CONFIG, "snp policy: unknown key \"%s\" (expected bl, tee, snp, ucode, fmc)", path);
        }
        CF_GUARD(get_uint(val, path, 0, 255, &n));
        *dst = (uint8_t)n;
    }
    p->has_min_tcb = true;
    return CF_OK;
}

static CF_RESULT parse_name_list(const json_t *v, const char *key, bool *flags, size_t nflags,
                                 int (*lookup)(const char *name))
{
    if (!json_is_array(v) || json_array_size(v) == 0) {
        CF_BAIL_FMT(CF_E_CONFIG, "snp policy: \"%s\" must be a non-empty array of names", key);
    }
    memset(flags, 0, nflags * sizeof *flags);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *s = json_array_get(v, i);
        int idx = json_is_string(s) ? lookup(json_string_value(s)) : -1;
        if (idx < 0 || (size_t)idx >= nflags) {
            CF_BAIL_FMT(CF_E_CONFIG, "snp policy: \"%s\"[%zu] is not a known name", key, i);
        }
        flags[idx] = true;
    }
    return CF_OK;
}

static int key_kind_index(const char *name)
{
    return strcmp(name, "vcek") == 0 ? 0 : strcmp(name, "vlek") == 0 ? 1 : -1;
}

static int product_index(const char *name)
{
    cf_snp_product p = cf_snp_product_from_name(cf_slice_cstr(name));
    /* Exact names only in a policy: "Milan", "Genoa", "Turin". */
    return (p != CF_SNP_PRODUCT_UNKNOWN && strcmp(cf_snp_product_name(p), name) == 0) ? (int)p : -1;
}

static CF_RESULT parse_into(const json_t *json, cf_snp_policy *p)
{
    CF_ENSURE_MSG(json_is_object(json), CF_E_CONFIG, "snp policy: must be a JSON object");
    const char *k;
    const json_t *v;
    json_object_foreach(readonly(json), k, v)
    {
        json_int_t n;
        if (strcmp(k, "allow_debug") == 0) {
            CF_GUARD(get_bool(v, k, &p->allow_debug));
        } else if (strcmp(k, "allow_migration_agent") == 0) {
            CF_GUARD(get_bool(v, k, &p->allow_migration_agent));
        } else if (strcmp(k, "allow_smt") == 0) {
            CF_GUARD(get_bool(v, k, &p->allow_smt));
        } else if (strcmp(k, "require_crl") == 0) {
            CF_GUARD(get_bool(v, k, &p->require_crl));
        } else if (strcmp(k, CF_POLICY_KEY_ANY_WORKLOAD) == 0) {
            /* Changes only what a manifest accepts (cf_snp_policy_pins_workload). */
            bool ignored;
            CF_GUARD(get_bool(v, k, &ignored));
        } else if (strcmp(k, "vmpl") == 0) {
            CF_GUARD(get_uint(v, k, 0, 3, &n));
            p->vmpl = (int)n;
        } else if (strcmp(k, "min_report_version") == 0) {
            CF_GUARD(get_uint(v, k, CF_SNP_MIN_VERSION, CF_SNP_MAX_VERSION, &n));
            p->min_report_version = (uint32_t)n;
        } else if (strcmp(k, "min_guest_svn") == 0) {
            CF_GUARD(get_uint(v, k, 0, UINT32_MAX, &n));
            p->min_guest_svn = (uint32_t)n;
        } else if (strcmp(k, "measurements") == 0) {
            CF_GUARD(get_hex_list(v, k, 48, (uint8_t **)&p->measurements, &p->measurement_count));
        } else if (strcmp(k, "host_data") == 0) {
            CF_GUARD(get_hex_list(v, k, 32, (uint8_t **)&p->host_data, &p->host_data_count));
        } else if (strcmp(k, "id_key_digests") == 0) {
            CF_GUARD(get_hex_list(v, k, 48, (uint8_t **)&p->id_key_digests, &p->id_key_digest_count));
        } else if (strcmp(k, "min_tcb") == 0) {
            CF_GUARD(parse_min_tcb(v, p));
        } else if (strcmp(k, "signing_keys") == 0) {
            bool kinds[2];
            CF_GUARD(parse_name_list(v, k, kinds, 2, key_kind_index));
            p->allow_vcek = kinds[0];
            p->allow_vlek = kinds[1];
        } else if (strcmp(k, "products") == 0) {
            CF_GUARD(parse_name_list(v, k, p->products, sizeof p->products / sizeof p->products[0], product_index));
        } else {
            CF_BAIL_FMT(CF_E_CONFIG, "snp policy: unknown key \"%.40s\"", k);
        }
    }
    return CF_OK;
}

CF_RESULT cf_snp_policy_parse(const json_t *json, cf_snp_policy *out)
{
    CF_ENSURE_REF(out);
    defaults(out);
    if (json == NULL) {
        return CF_OK;
    }
    if (cf_is_error(parse_into(json, out))) {
        cf_snp_policy_free(out);
        return CF_ERROR;
    }
    return CF_OK;
}

CF_RESULT cf_snp_policy_validate(const json_t *policy)
{
    cf_snp_policy p;
    CF_GUARD(cf_snp_policy_parse(policy, &p));
    cf_snp_policy_free(&p);
    return CF_OK;
}

/* What names the workload of an SNP guest (ABI spec 56860 §4.5 and
 * SNP_LAUNCH_FINISH): MEASUREMENT is the launch digest of the initial guest
 * memory and VMSAs; ID_KEY_DIGEST names the key that signed the ID block,
 * and the firmware launches a guest under an ID block only if the block's
 * launch digest equals MEASUREMENT, so a pinned ID key also names the
 * images its owner signed. HOST_DATA is chosen by the (untrusted) host at
 * launch: on its own it proves nothing about what runs. */
CF_RESULT cf_snp_policy_pins_workload(const json_t *policy)
{
    cf_snp_policy p;
    CF_GUARD(cf_snp_policy_parse(policy, &p));
    bool pinned = p.measurement_count > 0 || p.id_key_digest_count > 0;
    cf_snp_policy_free(&p);
    if (pinned || json_is_true(json_object_get(policy, CF_POLICY_KEY_ANY_WORKLOAD))) {
        return CF_OK;
    }
    CF_BAIL_MSG(CF_E_CONFIG, "snp policy: pins no workload: missing \"measurements\" (or \"id_key_digests\"; "
                             "host_data is chosen by the host): a manifest policy must pin it, or say "
                             "\"" CF_POLICY_KEY_ANY_WORKLOAD "\": true");
}
