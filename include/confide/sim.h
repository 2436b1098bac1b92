/*
 * sim.h — the simulated TEE: a software platform for development and tests
 * on machines without TEE hardware (DESIGN §5).
 *
 * `confide sim init DIR` makes a platform: a self-signed root CA and a
 * platform attestation key certified by it (ECDSA P-384, like AMD's VCEK
 * under the ARK). A process "running on" that platform produces a report
 * shaped like an SEV-SNP report: fixed layout, little-endian integers, the
 * measurement = SHA-384 of the running executable (/proc/self/exe), 64
 * caller-chosen report_data bytes, a debug flag, and an ECDSA P-384
 * signature (r, s little-endian in 72-byte fields, as SNP does) over the
 * signed prefix. The collateral is the PEM chain platform cert, root cert.
 *
 * A manifest accepts sim evidence only when it lists the sim root's SHA-256
 * fingerprint in its accepted roots; production manifests never do, so sim
 * evidence can never satisfy a production policy. Anyone who can read the
 * sim directory can forge evidence: it proves nothing about hardware.
 *
 * Report layout (CF_SIM_REPORT_LEN = 0x130 bytes; docs/attestation.md):
 *   0x000 u32le version (1)        0x004 u32le flags (bit 0 = debug)
 *   0x008 u32le svn                0x00C u32le reserved, must be 0
 *   0x010 48    measurement        0x040 64    report_data
 *   0x080 32    platform_key_id = SHA-256 of the platform key's DER SPKI
 *   0x0A0 72    signature r (little-endian, bytes 48..71 zero)
 *   0x0E8 72    signature s (little-endian, bytes 48..71 zero)
 * Signed part: bytes 0x000..0x09F, ECDSA P-384 with SHA-384.
 *
 * Policy object (manifest): {"measurements": ["<96 hex>", ...],
 * "allow_debug": false, "min_svn": 0}, every key optional; see
 * cf_sim_policy_validate.
 */
#ifndef CONFIDE_SIM_H
#define CONFIDE_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "confide/attest.h"
#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

#define CF_SIM_REPORT_VERSION 1u
#define CF_SIM_REPORT_LEN 0x130u
#define CF_SIM_SIGNED_LEN 0xA0u
#define CF_SIM_SIG_FIELD_LEN 72u
#define CF_SIM_FLAG_DEBUG 0x1u
#define CF_SIM_MEASUREMENT_LEN 48u
#define CF_SIM_KEY_ID_LEN 32u
/* Bound on the collateral (PEM chain) a verifier accepts. */
#define CF_SIM_COLLATERAL_MAX (64u * 1024u)
#define CF_SIM_CHAIN_MAX 4

/* Files inside a sim directory. */
#define CF_SIM_ROOT_CERT "root.pem"
#define CF_SIM_ROOT_KEY "root.key"
#define CF_SIM_PLATFORM_CERT "platform.pem"
#define CF_SIM_PLATFORM_KEY "platform.key"
#define CF_SIM_PLATFORM_CONFIG "platform.json"

/* A parsed report; slices borrow from the evidence. */
typedef struct cf_sim_report {
    uint32_t version;
    uint32_t flags;
    uint32_t svn;
    uint8_t measurement[CF_SIM_MEASUREMENT_LEN];
    uint8_t report_data[CF_REPORT_DATA_LEN];
    uint8_t platform_key_id[CF_SIM_KEY_ID_LEN];
    cf_slice signed_part;
    cf_slice sig_r; /* CF_SIM_SIG_FIELD_LEN bytes, little-endian */
    cf_slice sig_s;
} cf_sim_report;

/* Parse the fixed layout (exact length, version, reserved and padding
 * bytes zero). Checks nothing cryptographic. */
CF_RESULT cf_sim_report_parse(cf_slice evidence, cf_sim_report *out);

typedef struct cf_sim_init_options {
    uint32_t svn;  /* reported in every report (the "firmware" version) */
    bool debug;    /* reports carry the debug flag */
    int64_t now;   /* certificate validity starts at now - 1 day */
    int64_t valid_days; /* 0 = 3650 */
} cf_sim_init_options;

/* Create a sim platform in `dir` (created 0700 if missing; existing key
 * files are never overwritten). Private keys are written 0600. */
CF_RESULT cf_sim_init(const char *dir, const cf_sim_init_options *opt);

/* Lower-case hex SHA-256 fingerprint of the sim root certificate (what a
 * manifest lists in accepted_roots). */
CF_RESULT cf_sim_root_fingerprint(const char *dir, char hex[2 * 32 + 1]);

/* SHA-384 of a file (the sim measurement of an executable). */
CF_RESULT cf_sim_measure_file(const char *path, uint8_t out[CF_SIM_MEASUREMENT_LEN]);

/* Sign a report with explicit contents using the platform key in `dir`.
 * cf_sim_collect() is this with the measurement of /proc/self/exe and the
 * svn/debug of platform.json; tests use it directly to produce evidence for
 * other measurements. Appends to `evidence` and `collateral`. */
typedef struct cf_sim_report_params {
    uint8_t measurement[CF_SIM_MEASUREMENT_LEN];
    uint8_t report_data[CF_REPORT_DATA_LEN];
    uint32_t svn;
    bool debug;
} cf_sim_report_params;
CF_RESULT cf_sim_sign_report(const char *dir, const cf_sim_report_params *p, cf_buf *evidence, cf_buf *collateral);

#endif /* CONFIDE_SIM_H */
