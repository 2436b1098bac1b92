/*
 * attest.h — the one verifier interface every TEE platform plugs into.
 *
 * A verifier takes evidence (report / quote bytes), collateral (certificate
 * chains, TCB info), the report_data the caller expects, a policy taken from
 * the manifest, and an explicit verification time. It returns either the
 * verified claims or CF_ERROR with a precise reason (code + detail naming the
 * failed check). Nothing in the claims is trustworthy unless the call
 * returned CF_OK.
 *
 * Platforms (DESIGN §5):
 *   sim — software TEE for development (lib/attest/sim.c)
 *   snp — AMD SEV-SNP reports v2–v5 (lib/attest/snp.c)
 *   tdx — Intel TDX quotes v4/v5 (lib/attest/tdx.c)
 *
 * Policy objects are JSON (jansson) so that the manifest can carry them
 * verbatim; each platform documents its keys in docs/attestation.md and
 * validates them in cf_attest_policy_validate() with errors that name the
 * bad field. A NULL policy means "production defaults": everything
 * cryptographic is checked, debug is refused, nothing else is constrained.
 *
 * A policy may be partial where a person checks one piece of evidence by
 * hand (`confide verify --policy`). A manifest policy may not: it must pin
 * the workload (sim and snp: measurements; snp: or id_key_digests; tdx:
 * mrtd and rtmr0..rtmr2), or opt out with
 * "insecure_allow_any_workload": true, which `confide manifest show` flags.
 * Otherwise any VM on genuine, up-to-date hardware would be trusted.
 */
#ifndef CONFIDE_ATTEST_H
#define CONFIDE_ATTEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

typedef enum cf_platform {
    CF_PLATFORM_NONE = 0,
    CF_PLATFORM_SIM = 1,
    CF_PLATFORM_SNP = 2,
    CF_PLATFORM_TDX = 3,
} cf_platform;

const char *cf_platform_name(cf_platform p);
CF_RESULT cf_platform_parse(const char *name, cf_platform *out);

#define CF_REPORT_DATA_LEN 64
#define CF_MEASUREMENT_MAX 48

typedef struct cf_verify_input {
    cf_platform platform;
    cf_slice evidence;   /* the report / quote, exactly as produced */
    cf_slice collateral; /* platform-specific, see docs/attestation.md */
    /* CF_REPORT_DATA_LEN bytes the evidence must carry, or NULL (CLI only). */
    const uint8_t *expected_report_data;
    /* Platform policy object from the manifest, or NULL (production defaults). */
    const json_t *policy;
    /* Extra trust anchors from the manifest's accepted roots: an array of
     * lower-case hex SHA-256 fingerprints (sim root), or NULL. Vendor roots
     * (AMD ARK, Intel SGX Root CA) are built in and pinned. */
    const json_t *accepted_roots;
    int64_t now; /* verification time, Unix seconds; always explicit */
} cf_verify_input;

typedef struct cf_claims {
    cf_platform platform;
    uint8_t report_data[CF_REPORT_DATA_LEN];
    /* SNP MEASUREMENT, TDX MRTD, sim SHA-384 of the executable. */
    uint8_t measurement[CF_MEASUREMENT_MAX];
    size_t measurement_len;
    bool debug;
    /* Human-readable TCB summary ("bl=3 tee=0 snp=8 ucode=115",
     * "UpToDate", ...). */
    char tcb[96];
    /* Every verified field, for `confide verify` and `confide attest`
     * output (owned; freed by cf_claims_free). */
    json_t *details;
} cf_claims;

void cf_claims_free(cf_claims *c);

/* Dispatch on in->platform. in->now must be > 0 (CF_E_INVALID_ARGUMENT). */
CF_RESULT cf_attest_verify(const cf_verify_input *in, cf_claims *out);

/* The policy key with which a manifest policy accepts any workload on its
 * platform (development only; `confide manifest show` warns about it). */
#define CF_POLICY_KEY_ANY_WORKLOAD "insecure_allow_any_workload"

typedef enum cf_policy_use {
    /* One-off check by hand (`confide verify --policy`): partial policies,
     * e.g. only {"allow_debug": true}, are fine. */
    CF_POLICY_USE_OFFLINE = 0,
    /* A manifest's AS or worker policy: it must also pin the workload
     * (CF_E_CONFIG naming what is missing) unless it sets
     * CF_POLICY_KEY_ANY_WORKLOAD to true. */
    CF_POLICY_USE_MANIFEST = 1,
} cf_policy_use;

/* Check a policy object for this platform (unknown keys and bad values are
 * errors naming the field). Same as cf_attest_policy_validate_for(p, policy,
 * CF_POLICY_USE_OFFLINE). */
CF_RESULT cf_attest_policy_validate(cf_platform p, const json_t *policy);
CF_RESULT cf_attest_policy_validate_for(cf_platform p, const json_t *policy, cf_policy_use use);
/* True if the policy sets CF_POLICY_KEY_ANY_WORKLOAD to true. */
bool cf_attest_policy_allows_any_workload(const json_t *policy);

/* Per-platform entry points (the dispatcher's table). *_pins_workload
 * validates the policy and then requires the workload pins described
 * above (CF_E_CONFIG naming each missing key). */
CF_RESULT cf_sim_verify(const cf_verify_input *in, cf_claims *out);
CF_RESULT cf_sim_policy_validate(const json_t *policy);
CF_RESULT cf_sim_policy_pins_workload(const json_t *policy);
CF_RESULT cf_snp_verify(const cf_verify_input *in, cf_claims *out);
CF_RESULT cf_snp_policy_validate(const json_t *policy);
CF_RESULT cf_snp_policy_pins_workload(const json_t *policy);
CF_RESULT cf_tdx_verify(const cf_verify_input *in, cf_claims *out);
CF_RESULT cf_tdx_policy_validate(const json_t *policy);
CF_RESULT cf_tdx_policy_pins_workload(const json_t *policy);

/* ---- Evidence collection (the attester side) ----------------------------- */

typedef struct cf_attester_config {
    cf_platform platform;
    /* sim: the directory made by `confide sim init` (root cert, platform key). */
    const char *sim_dir;
    /* snp/tdx: configfs-tsm report root; NULL = /sys/kernel/config/tsm/report. */
    const char *tsm_path;
    /* snp/tdx: operator-filled cache of certificates / collateral, used when
     * the platform does not hand them out with the report. May be NULL. */
    const char *collateral_dir;
} cf_attester_config;

/* Produce evidence binding `report_data` and the collateral a verifier needs
 * (both appended to the given buffers), for cfg->platform. */
CF_RESULT cf_attest_collect(const cf_attester_config *cfg, const uint8_t report_data[CF_REPORT_DATA_LEN],
                            cf_buf *evidence, cf_buf *collateral);
CF_RESULT cf_sim_collect(const cf_attester_config *cfg, const uint8_t report_data[CF_REPORT_DATA_LEN],
                         cf_buf *evidence, cf_buf *collateral);
/* SNP and TDX through Linux configfs-tsm (lib/attest/tsm.c). */
CF_RESULT cf_tsm_collect(const cf_attester_config *cfg, const uint8_t report_data[CF_REPORT_DATA_LEN],
                         cf_buf *evidence, cf_buf *collateral);

#endif /* CONFIDE_ATTEST_H */
