/* manifest.c — strict manifest parsing, policy dispatch and the sim builder
 * (see manifest.h; format in docs/attestation.md §The manifest). */
#include "confide/manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/sim.h"

/* ---- field helpers (every error names the path) --------------------------- */

static bool key_allowed(const char *key, const char *const *allowed)
{
    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (strcmp(key, allowed[i]) == 0) {
            return true;
        }
    }
    return false;
}

static CF_RESULT check_keys(const json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *value;
    /* jansson's iterators take non-const objects but only read them. */
    json_t *o = (json_t *)(uintptr_t)obj;
    json_object_foreach(o, key, value)
    {
        if (!key_allowed(key, allowed)) {
            CF_BAIL_FMT(CF_E_CONFIG, "%s.%.64s: unknown key", path, key);
        }
    }
    return CF_OK;
}

static CF_RESULT get_object(const json_t *parent, const char *key, const char *path, const json_t **out)
{
    const json_t *v = json_object_get(parent, key);
    if (v == NULL) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s.%s: missing (expected object)", path, key);
    }
    if (!json_is_object(v)) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s.%s: expected object", path, key);
    }
    *out = v;
    return CF_OK;
}

/* Visible ASCII (0x21..0x7e) or, when spaces_ok, also 0x20. */
static bool printable(const char *s, size_t len, bool spaces_ok)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x7e || c < 0x20 || (c == 0x20 && !spaces_ok)) {
            return false;
        }
    }
    return true;
}

static CF_RESULT get_name(const json_t *parent, const char *key, const char *path, bool required, char *out,
                          size_t outsize)
{
    const json_t *v = json_object_get(parent, key);
    if (v == NULL) {
        CF_ENSURE_MSG(!required, CF_E_CONFIG, "missing name");
        out[0] = '\0';
        return CF_OK;
    }
    size_t len = json_string_length(v);
    if (!json_is_string(v) || len == 0 || len >= outsize || !printable(json_string_value(v), len, true)) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s.%s: expected a string of 1..%zu printable ASCII characters", path, key,
                    outsize - 1);
    }
    memcpy(out, json_string_value(v), len + 1);
    return CF_OK;
}

static CF_RESULT get_int(const json_t *parent, const char *key, const char *path, int64_t min, int64_t max,
                         int64_t *out)
{
    const json_t *v = json_object_get(parent, key);
    if (v == NULL) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s.%s: missing (expected integer)", path, key);
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s.%s: expected integer %lld..%lld", path, key, (long long)min, (long long)max);
    }
    *out = json_integer_value(v);
    return CF_OK;
}

/* {"platform": "...", "policy": {...}} plus extra allowed keys. */
static CF_RESULT parse_platform_policy(const json_t *obj, const char *path, cf_platform *platform,
                                       const json_t **policy)
{
    const json_t *p = json_object_get(obj, "platform");
    if (!json_is_string(p)) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s.platform: expected one of \"sim\", \"snp\", \"tdx\"", path);
    }
    if (cf_is_error(cf_platform_parse(json_string_value(p), platform))) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s.platform: unknown platform (expected sim, snp or tdx)", path);
    }
    const json_t *pol = json_object_get(obj, "policy");
    if (!json_is_object(pol)) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s.policy: expected object (the %s platform policy)", path,
                    cf_platform_name(*platform));
    }
    /* A manifest policy must pin the workload (attest.h): checked here so
     * that no manifest with a policy like {"vmpl": 0} ever loads. */
    if (cf_is_error(cf_attest_policy_validate_for(*platform, pol, CF_POLICY_USE_MANIFEST))) {
        char ctx[96];
        snprintf(ctx, sizeof ctx, "%s.policy", path);
        cf_error_add_context(ctx);
        return CF_ERROR;
    }
    *policy = pol;
    return CF_OK;
}

static CF_RESULT parse_models(const json_t *w, const char *path, const json_t **out)
{
    const json_t *models = json_object_get(w, "models");
    if (!json_is_array(models) || json_array_size(models) == 0 ||
        json_array_size(models) > CF_MANIFEST_MAX_MODELS) {
        CF_BAIL_FMT(CF_E_CONFIG, "%s.models: expected array of strings (1..%d model names)", path,
                    CF_MANIFEST_MAX_MODELS);
    }
    for (size_t i = 0; i < json_array_size(models); i++) {
        const json_t *m = json_array_get(models, i);
        size_t len = json_string_length(m);
        if (!json_is_string(m) || len == 0 || len > CF_MODEL_NAME_MAX || !printable(json_string_value(m), len, false)) {
            CF_BAIL_FMT(CF_E_CONFIG,
                        "%s.models[%zu]: expected a model name of 1..%d visible ASCII characters (no spaces)", path,
                        i, CF_MODEL_NAME_MAX);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(json_string_value(json_array_get(models, j)), json_string_value(m)) == 0) {
                CF_BAIL_FMT(CF_E_CONFIG, "%s.models[%zu]: duplicate of models[%zu]", path, i, j);
            }
        }
    }
    *out = models;
    return CF_OK;
}

static CF_RESULT parse_roots(const json_t *root, cf_manifest *m)
{
    const json_t *roots = json_object_get(root, "accepted_roots");
    if (roots == NULL) {
        json_t *empty = json_array();
        CF_ENSURE_MSG(empty != NULL, CF_E_NO_MEMORY, "json_array failed");
        /* Owned by the document so that its lifetime is the manifest's. */
        CF_ENSURE_MSG(json_object_set_new(m->root, "accepted_roots", empty) == 0, CF_E_NO_MEMORY,
                      "json_object_set failed");
        m->accepted_roots = empty;
        return CF_OK;
    }
    if (!json_is_array(roots) || json_array_size(roots) > CF_MANIFEST_MAX_ROOTS) {
        CF_BAIL_FMT(CF_E_CONFIG, "manifest.accepted_roots: expected array of at most %d SHA-256 fingerprints",
                    CF_MANIFEST_MAX_ROOTS);
    }
    for (size_t i = 0; i < json_array_size(roots); i++) {
        const json_t *r = json_array_get(roots, i);
        uint8_t fp[32];
        size_t len = 0;
        if (!json_is_string(r) || json_string_length(r) != 64 ||
            cf_is_error(cf_hex_decode_fixed(cf_slice_make(json_string_value(r), 64), fp, sizeof fp, &len))) {
            CF_BAIL_FMT(CF_E_CONFIG, "manifest.accepted_roots[%zu]: expected 64 hex digits (SHA-256 fingerprint)",
                        i);
        }
        for (size_t j = 0; j < 64; j++) {
            char c = json_string_value(r)[j];
            if (c >= 'A' && c <= 'F') {
                CF_BAIL_FMT(CF_E_CONFIG, "manifest.accepted_roots[%zu]: fingerprints are lower-case hex", i);
            }
        }
    }
    m->accepted_roots = roots;
    return CF_OK;
}

static CF_RESULT parse_document(cf_manifest *m)
{
    static const char *const top_keys[] = {"version", "name", "accepted_roots", "as", "workers", "keys", NULL};
    static const char *const as_keys[] = {"platform", "policy", NULL};
    static const char *const worker_keys[] = {"name", "platform", "policy", "models", NULL};
    static const char *const ttl_keys[] = {"ttl_min_s", "ttl_max_s", NULL};
    const json_t *root = m->root;

    CF_ENSURE_MSG(json_is_object(root), CF_E_CONFIG, "manifest: expected a JSON object");
    CF_GUARD(check_keys(root, "manifest", top_keys));
    int64_t version;
    CF_GUARD(get_int(root, "version", "manifest", CF_MANIFEST_VERSION, CF_MANIFEST_VERSION, &version));
    CF_GUARD(get_name(root, "name", "manifest", false, m->name, sizeof m->name));
    CF_GUARD(parse_roots(root, m));

    const json_t *as;
    CF_GUARD(get_object(root, "as", "manifest", &as));
    CF_GUARD(check_keys(as, "manifest.as", as_keys));
    CF_GUARD(parse_platform_policy(as, "manifest.as", &m->as_platform, &m->as_policy));
    m->as_any_workload = cf_attest_policy_allows_any_workload(m->as_policy);
    if (m->as_platform == CF_PLATFORM_SIM) {
        CF_ENSURE_MSG(json_array_size(m->accepted_roots) > 0, CF_E_CONFIG,
                      "manifest.as.platform: sim needs the sim root fingerprint in manifest.accepted_roots");
    }

    const json_t *workers = json_object_get(root, "workers");
    if (!json_is_array(workers) || json_array_size(workers) == 0 ||
        json_array_size(workers) > CF_MANIFEST_MAX_WORKERS) {
        CF_BAIL_FMT(CF_E_CONFIG, "manifest.workers: expected array of 1..%d worker policies",
                    CF_MANIFEST_MAX_WORKERS);
    }
    m->worker_count = json_array_size(workers);
    m->workers = calloc(m->worker_count, sizeof *m->workers);
    CF_ENSURE_MSG(m->workers != NULL, CF_E_NO_MEMORY, "calloc failed");
    for (size_t i = 0; i < m->worker_count; i++) {
        const json_t *w = json_array_get(workers, i);
        cf_manifest_worker *mw = &m->workers[i];
        char path[48];
        snprintf(path, sizeof path, "manifest.workers[%zu]", i);
        if (!json_is_object(w)) {
            CF_BAIL_FMT(CF_E_CONFIG, "%s: expected object", path);
        }
        CF_GUARD(check_keys(w, path, worker_keys));
        CF_GUARD(get_name(w, "name", path, false, mw->name, sizeof mw->name));
        if (mw->name[0] == '\0') {
            snprintf(mw->name, sizeof mw->name, "workers[%zu]", i);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(m->workers[j].name, mw->name) == 0) {
                CF_BAIL_FMT(CF_E_CONFIG, "%s.name: duplicate of manifest.workers[%zu].name", path, j);
            }
        }
        CF_GUARD(parse_platform_policy(w, path, &mw->platform, &mw->policy));
        mw->any_workload = cf_attest_policy_allows_any_workload(mw->policy);
        if (mw->platform == CF_PLATFORM_SIM) {
            if (json_array_size(m->accepted_roots) == 0) {
                CF_BAIL_FMT(CF_E_CONFIG, "%s.platform: sim needs the sim root fingerprint in manifest.accepted_roots",
                            path);
            }
        }
        CF_GUARD(parse_models(w, path, &mw->models));
    }

    const json_t *keys;
    CF_GUARD(get_object(root, "keys", "manifest", &keys));
    CF_GUARD(check_keys(keys, "manifest.keys", ttl_keys));
    CF_GUARD(get_int(keys, "ttl_min_s", "manifest.keys", 1, CF_MANIFEST_TTL_CEILING_S, &m->ttl_min_s));
    CF_GUARD(get_int(keys, "ttl_max_s", "manifest.keys", 1, CF_MANIFEST_TTL_CEILING_S, &m->ttl_max_s));
    CF_ENSURE_MSG(m->ttl_min_s <= m->ttl_max_s, CF_E_CONFIG, "manifest.keys.ttl_max_s: must be >= ttl_min_s");
    return CF_OK;
}

CF_RESULT cf_manifest_parse(cf_slice bytes, cf_manifest **out)
{
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(bytes.len <= CF_MANIFEST_MAX_BYTES, CF_E_TOO_LARGE, "manifest larger than 1 MiB");
    cf_result result = CF_OK;
    cf_manifest *m = calloc(1, sizeof *m);
    CF_ENSURE_MSG(m != NULL, CF_E_NO_MEMORY, "calloc failed");
    cf_buf_init(&m->bytes, CF_MANIFEST_MAX_BYTES);
    CF_GUARD_OUT(cf_buf_append_slice(&m->bytes, bytes));

    CF_GUARD_OUT(cf_sha256(bytes, m->sha256));
    CF_GUARD_OUT(cf_hex_encode_str(cf_slice_make(m->sha256, 32), m->sha256_hex, sizeof m->sha256_hex));

    json_error_t jerr;
    /* Depth is bounded by jansson (JSON_PARSER_MAX_DEPTH) and size above. */
    m->root = json_loadb((const char *)bytes.ptr, bytes.len, JSON_REJECT_DUPLICATES, &jerr);
    if (m->root == NULL) {
        cf_error_setf(CF_E_CONFIG, __FILE__, __LINE__, "manifest: invalid JSON at line %d column %d: %.80s",
                      jerr.line, jerr.column, jerr.text);
        result = CF_ERROR;
        goto out;
    }
    CF_GUARD_OUT(parse_document(m));
    *out = m;
    m = NULL;
out:
    cf_manifest_free(m);
    return result;
}

CF_RESULT cf_manifest_load(const char *path, cf_manifest **out)
{
    CF_ENSURE_REF(path);
    cf_result result = CF_OK;
    cf_buf raw;
    cf_buf_init(&raw, CF_MANIFEST_MAX_BYTES);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        CF_BAIL_FMT(CF_E_IO, "cannot open manifest %.200s: %s", path, strerror(errno));
    }
    uint8_t chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        CF_ENSURE_MSG_OUT(cf_is_ok(cf_buf_append(&raw, chunk, n)), CF_E_TOO_LARGE, "manifest larger than 1 MiB");
    }
    CF_ENSURE_MSG_OUT(!ferror(f), CF_E_IO, "reading the manifest failed");
    CF_GUARD_OUT(cf_manifest_parse(cf_buf_slice(&raw), out));
out:
    fclose(f);
    cf_buf_free(&raw);
    return result;
}

void cf_manifest_free(cf_manifest *m)
{
    if (m == NULL) {
        return;
    }
    free(m->workers);
    json_decref(m->root);
    cf_buf_free(&m->bytes);
    free(m);
}

bool cf_manifest_worker_serves(const cf_manifest_worker *w, cf_slice model)
{
    if (w == NULL || w->models == NULL) {
        return false;
    }
    for (size_t i = 0; i < json_array_size(w->models); i++) {
        const json_t *v = json_array_get(w->models, i);
        if (json_string_length(v) == model.len && memcmp(json_string_value(v), model.ptr, model.len) == 0) {
            return true;
        }
    }
    return false;
}

bool cf_manifest_serves(const cf_manifest *m, cf_slice model)
{
    for (size_t i = 0; m != NULL && i < m->worker_count; i++) {
        if (cf_manifest_worker_serves(&m->workers[i], model)) {
            return true;
        }
    }
    return false;
}

/* ---- verification through the manifest ------------------------------------ */

CF_RESULT cf_manifest_verify_as(const cf_manifest *m, cf_platform platform, cf_slice evidence, cf_slice collateral,
                                const uint8_t report_data[CF_REPORT_DATA_LEN], int64_t now, cf_claims *out)
{
    CF_ENSURE_REF(m);
    CF_ENSURE_REF(report_data);
    if (platform != m->as_platform) {
        CF_BAIL_FMT(CF_E_POLICY, "manifest.as.platform: evidence is %s, the manifest requires %s",
                    cf_platform_name(platform), cf_platform_name(m->as_platform));
    }
    cf_verify_input in = {
        .platform = platform,
        .evidence = evidence,
        .collateral = collateral,
        .expected_report_data = report_data,
        .policy = m->as_policy,
        .accepted_roots = m->accepted_roots,
        .now = now,
    };
    CF_GUARD_MSG(cf_attest_verify(&in, out), "manifest.as");
    return CF_OK;
}

CF_RESULT cf_manifest_verify_worker(const cf_manifest *m, cf_platform platform, cf_slice evidence,
                                    cf_slice collateral, const uint8_t report_data[CF_REPORT_DATA_LEN], int64_t now,
                                    size_t *worker_index, cf_claims *out)
{
    CF_ENSURE_REF(m);
    CF_ENSURE_REF(report_data);
    CF_ENSURE_REF(worker_index);
    /* The first failure is kept (code + detail) so the caller sees why. */
    cf_error_info first = {CF_E_OK, "", "", 0};
    char first_detail[256] = "";
    bool tried = false;
    for (size_t i = 0; i < m->worker_count; i++) {
        if (m->workers[i].platform != platform) {
            continue;
        }
        cf_verify_input in = {
            .platform = platform,
            .evidence = evidence,
            .collateral = collateral,
            .expected_report_data = report_data,
            .policy = m->workers[i].policy,
            .accepted_roots = m->accepted_roots,
            .now = now,
        };
        if (cf_is_ok(cf_attest_verify(&in, out))) {
            *worker_index = i;
            return CF_OK;
        }
        if (!tried) {
            char ctx[48];
            snprintf(ctx, sizeof ctx, "manifest.workers[%zu]", i);
            cf_error_add_context(ctx);
            first = *cf_error_last();
            snprintf(first_detail, sizeof first_detail, "%s", first.detail);
            tried = true;
        }
    }
    if (!tried) {
        CF_BAIL_FMT(CF_E_POLICY, "manifest.workers: no worker policy for platform %s", cf_platform_name(platform));
    }
    cf_error_setf(first.code, first.file, first.line, "%s", first_detail);
    return CF_ERROR;
}

/* ---- description and building -------------------------------------------- */

#define ANY_WORKLOAD_WARNING                                                                                   \
    "INSECURE: " CF_POLICY_KEY_ANY_WORKLOAD " - ANY workload on this platform is accepted (development only)"

static CF_RESULT describe_policy(const json_t *policy, bool any_workload, cf_buf *out)
{
    if (any_workload) {
        CF_GUARD(cf_buf_appendf(out, "    !!! %s\n", ANY_WORKLOAD_WARNING));
    }
    char *text = json_dumps(policy, JSON_COMPACT | JSON_SORT_KEYS);
    CF_ENSURE_MSG(text != NULL, CF_E_NO_MEMORY, "json_dumps failed");
    cf_result r = cf_buf_appendf(out, "    policy:   %s\n", text);
    free(text);
    return r;
}

CF_RESULT cf_manifest_describe(const cf_manifest *m, cf_buf *out)
{
    CF_ENSURE_REF(m);
    CF_ENSURE_REF(out);
    CF_GUARD(cf_buf_appendf(out, "manifest %s\n", m->name[0] ? m->name : "(unnamed)"));
    /* First thing shown, before anything a reader might stop at. */
    if (m->as_any_workload) {
        CF_GUARD(cf_buf_appendf(out, "!!! WARNING: the attestation service policy is %s\n", ANY_WORKLOAD_WARNING));
    }
    for (size_t i = 0; i < m->worker_count; i++) {
        if (m->workers[i].any_workload) {
            CF_GUARD(cf_buf_appendf(out, "!!! WARNING: worker policy %s is %s\n", m->workers[i].name,
                                    ANY_WORKLOAD_WARNING));
        }
    }
    CF_GUARD(cf_buf_appendf(out, "  sha256:   %s\n", m->sha256_hex));
    CF_GUARD(cf_buf_appendf(out, "  key TTL:  %lld s .. %lld s\n", (long long)m->ttl_min_s, (long long)m->ttl_max_s));
    if (json_array_size(m->accepted_roots) == 0) {
        CF_GUARD(cf_buf_appendf(out, "  accepted roots: vendor roots only (production)\n"));
    } else {
        CF_GUARD(cf_buf_appendf(out, "  accepted roots (sim, NOT hardware-backed):\n"));
        for (size_t i = 0; i < json_array_size(m->accepted_roots); i++) {
            CF_GUARD(cf_buf_appendf(out, "    %s\n", json_string_value(json_array_get(m->accepted_roots, i))));
        }
    }
    CF_GUARD(cf_buf_appendf(out, "  attestation service:\n    platform: %s\n", cf_platform_name(m->as_platform)));
    CF_GUARD(describe_policy(m->as_policy, m->as_any_workload, out));
    for (size_t i = 0; i < m->worker_count; i++) {
        const cf_manifest_worker *w = &m->workers[i];
        CF_GUARD(cf_buf_appendf(out, "  worker policy %s:\n    platform: %s\n", w->name, cf_platform_name(w->platform)));
        CF_GUARD(describe_policy(w->policy, w->any_workload, out));
        CF_GUARD(cf_buf_appendf(out, "    models:  "));
        for (size_t j = 0; j < json_array_size(w->models); j++) {
            CF_GUARD(cf_buf_appendf(out, " %s", json_string_value(json_array_get(w->models, j))));
        }
        CF_GUARD(cf_buf_appendf(out, "\n"));
    }
    return CF_OK;
}

static CF_RESULT sim_policy_for(const char *binary, json_t **out)
{
    uint8_t m[CF_SIM_MEASUREMENT_LEN];
    char hex[2 * CF_SIM_MEASUREMENT_LEN + 1];
    CF_GUARD_MSG(cf_sim_measure_file(binary, m), "measuring the binary");
    CF_GUARD(cf_hex_encode_str(cf_slice_make(m, sizeof m), hex, sizeof hex));
    json_t *p = json_pack("{s:[s],s:b}", "measurements", hex, "allow_debug", 0);
    CF_ENSURE_MSG(p != NULL, CF_E_NO_MEMORY, "json_pack failed");
    *out = p;
    return CF_OK;
}

CF_RESULT cf_manifest_build_sim(const cf_manifest_sim_params *p, cf_buf *out)
{
    CF_ENSURE_REF(p);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(p->sim_dir && p->as_binary && p->worker_binary, CF_E_INVALID_ARGUMENT,
                  "sim_dir, as_binary and worker_binary are required");
    CF_ENSURE_MSG(p->model_count > 0 && p->models != NULL, CF_E_INVALID_ARGUMENT, "at least one model is required");
    cf_result result = CF_OK;
    json_t *doc = NULL, *as_policy = NULL, *worker_policy = NULL, *models = NULL;
    char *text = NULL;
    cf_manifest *check = NULL;
    char fp[65];

    CF_GUARD_OUT(cf_sim_root_fingerprint(p->sim_dir, fp));
    CF_GUARD_OUT(sim_policy_for(p->as_binary, &as_policy));
    CF_GUARD_OUT(sim_policy_for(p->worker_binary, &worker_policy));
    models = json_array();
    CF_ENSURE_MSG_OUT(models != NULL, CF_E_NO_MEMORY, "json_array failed");
    for (size_t i = 0; i < p->model_count; i++) {
        CF_ENSURE_MSG_OUT(p->models[i] != NULL && json_array_append_new(models, json_string(p->models[i])) == 0,
                          CF_E_INVALID_ARGUMENT, "model names must be UTF-8 strings");
    }
    doc = json_pack("{s:i,s:s,s:[s],s:{s:s,s:O},s:[{s:s,s:s,s:O,s:O}],s:{s:I,s:I}}", "version", CF_MANIFEST_VERSION,
                    "name", p->name ? p->name : "sim development", "accepted_roots", fp, "as", "platform", "sim",
                    "policy", as_policy, "workers", "name", "default", "platform", "sim", "policy", worker_policy,
                    "models", models, "keys", "ttl_min_s", (json_int_t)(p->ttl_min_s ? p->ttl_min_s : 60),
                    "ttl_max_s", (json_int_t)(p->ttl_max_s ? p->ttl_max_s : 86400));
    CF_ENSURE_MSG_OUT(doc != NULL, CF_E_NO_MEMORY, "json_pack failed");
    text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    CF_ENSURE_MSG_OUT(text != NULL, CF_E_NO_MEMORY, "json_dumps failed");
    size_t start = out->len;
    CF_GUARD_OUT(cf_buf_append_cstr(out, text));
    CF_GUARD_OUT(cf_buf_append_cstr(out, "\n"));
    /* Never hand out a manifest that our own parser refuses. */
    if (cf_is_error(cf_manifest_parse(cf_slice_make(out->data + start, out->len - start), &check))) {
        out->len = start;
        result = CF_ERROR;
        goto out;
    }
out:
    cf_manifest_free(check);
    free(text);
    json_decref(doc);
    json_decref(as_policy);
    json_decref(worker_policy);
    json_decref(models);
    return result;
}
