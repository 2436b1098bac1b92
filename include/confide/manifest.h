/*
 * manifest.h — the manifest: the one JSON document that decides trust
 * (DESIGN §5, docs/attestation.md §The manifest).
 *
 * It names the attestation service's policy, the worker policies (platform,
 * platform policy object for cf_attest_verify, the models a worker under that
 * policy may serve), the bounds on inference-secret TTLs, and extra accepted
 * platform roots (fingerprints of sim roots; vendor roots are built in).
 * Its identity is the SHA-256 of the exact file bytes: that is what clients
 * pin and what the AS binds into its evidence.
 *
 * Rules: parsing is strict. Unknown keys, wrong types, out-of-range values,
 * duplicate keys and duplicate names are refused with CF_E_CONFIG (or the
 * platform's own code for a bad policy object) and a detail that names the
 * field path, e.g. "manifest.workers[1].models: expected array of strings".
 * Every AS and worker policy must pin the workload (attest.h,
 * CF_POLICY_USE_MANIFEST) or opt out with "insecure_allow_any_workload":
 * true, which cf_manifest_describe puts first, as a warning.
 * A parsed manifest is immutable; all pointers into it are borrowed and live
 * as long as the cf_manifest.
 */
#ifndef CONFIDE_MANIFEST_H
#define CONFIDE_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/attest.h"
#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

#define CF_MANIFEST_VERSION 1
#define CF_MANIFEST_MAX_BYTES (1024u * 1024u)
#define CF_MANIFEST_MAX_WORKERS 64
#define CF_MANIFEST_MAX_MODELS 256
#define CF_MANIFEST_MAX_ROOTS 16
#define CF_MANIFEST_NAME_MAX 128
#define CF_MODEL_NAME_MAX 128
/* Upper bound for keys.ttl_max_s: 30 days. */
#define CF_MANIFEST_TTL_CEILING_S (30 * 24 * 3600)

typedef struct cf_manifest_worker {
    char name[CF_MANIFEST_NAME_MAX + 1];
    cf_platform platform;
    const json_t *policy; /* platform policy object (borrowed) */
    const json_t *models; /* array of model-name strings (borrowed) */
    /* The policy opts out of pinning the workload
     * (CF_POLICY_KEY_ANY_WORKLOAD): development only. */
    bool any_workload;
} cf_manifest_worker;

typedef struct cf_manifest {
    uint8_t sha256[32];
    char sha256_hex[65];
    cf_buf bytes; /* the exact file bytes */
    json_t *root;
    char name[CF_MANIFEST_NAME_MAX + 1];
    cf_platform as_platform;
    const json_t *as_policy;
    bool as_any_workload; /* as cf_manifest_worker.any_workload */
    cf_manifest_worker *workers;
    size_t worker_count;
    int64_t ttl_min_s;
    int64_t ttl_max_s;
    /* Array of lower-case hex SHA-256 root fingerprints (possibly empty);
     * handed to the verifiers as cf_verify_input.accepted_roots. */
    const json_t *accepted_roots;
} cf_manifest;

/* Parse and validate; the manifest keeps a copy of `bytes`. */
CF_RESULT cf_manifest_parse(cf_slice bytes, cf_manifest **out);
/* Read a file (at most CF_MANIFEST_MAX_BYTES) and parse it. */
CF_RESULT cf_manifest_load(const char *path, cf_manifest **out);
void cf_manifest_free(cf_manifest *m);

/* True if the worker policy lists `model` (exact byte comparison). */
bool cf_manifest_worker_serves(const cf_manifest_worker *w, cf_slice model);
/* True if some worker policy serves `model`. */
bool cf_manifest_serves(const cf_manifest *m, cf_slice model);

/* Verify attestation service evidence against the manifest's AS policy. */
CF_RESULT cf_manifest_verify_as(const cf_manifest *m, cf_platform platform, cf_slice evidence, cf_slice collateral,
                                const uint8_t report_data[CF_REPORT_DATA_LEN], int64_t now, cf_claims *out);
/* Verify worker evidence against each worker policy of that platform, in
 * order; the first that accepts wins (*worker_index names it). If none
 * does, the error is that of the first policy of the platform (context
 * "manifest.workers[i]"); CF_E_POLICY if no policy names the platform. */
CF_RESULT cf_manifest_verify_worker(const cf_manifest *m, cf_platform platform, cf_slice evidence,
                                    cf_slice collateral, const uint8_t report_data[CF_REPORT_DATA_LEN], int64_t now,
                                    size_t *worker_index, cf_claims *out);

/* Human-readable summary (what `confide manifest show` prints). */
CF_RESULT cf_manifest_describe(const cf_manifest *m, cf_buf *out);

/* Build a manifest for the sim platform (`confide manifest new`): both
 * policies pin the SHA-384 of the given binaries, accept the sim root of
 * sim_dir, refuse debug. Appends pretty-printed JSON + "\n" to out; the
 * result is checked with cf_manifest_parse before it is returned. */
typedef struct cf_manifest_sim_params {
    const char *sim_dir;
    const char *as_binary;
    const char *worker_binary;
    const char *const *models;
    size_t model_count;
    int64_t ttl_min_s; /* 0 = 60 */
    int64_t ttl_max_s; /* 0 = 86400 */
    const char *name;  /* NULL = "sim development" */
} cf_manifest_sim_params;
CF_RESULT cf_manifest_build_sim(const cf_manifest_sim_params *p, cf_buf *out);

#endif /* CONFIDE_MANIFEST_H */
