/*
 * tdx.h — Intel TDX quote verification (DCAP, quote v4 and v5).
 *
 * The verifier behind cf_attest_verify(CF_PLATFORM_TDX). It is split in
 * pieces that are each usable (and fuzzed) on their own:
 *
 *   cf_tdx_quote_parse        quote v4/v5 bytes -> fields (no crypto)
 *   cf_tdx_pck_ext_parse      the PCK certificate's SGX extension
 *                             (OID 1.2.840.113741.1.13.1, nested DER)
 *   cf_tdx_collateral_parse   QuoteCollateralV3 JSON -> raw signed spans,
 *                             signatures, chains, CRLs, parsed TCB info and
 *                             QE identity
 *   cf_tdx_collateral_assemble  separate PCS files -> QuoteCollateralV3 JSON
 *   cf_tdx_tcb_evaluate       Intel's TCB level matching (QVL algorithm)
 *   cf_tdx_verify             everything, in the order docs/attestation.md
 *                             §Intel TDX lists
 *
 * Rules:
 *  - Quote bytes are read only through cf_reader, field by field. Bytes
 *    after the declared signature data (zero padding from the driver, or
 *    go-tdx-guest's ASCII test trailer) are ignored and never parsed; they
 *    are not signed, so they cannot influence any decision.
 *  - Only tee_type 0x81 (TDX) is accepted; SGX quotes are rejected.
 *  - The Intel SGX Root CA is compiled in and pinned by its SHA-256
 *    fingerprint; it is the only trust anchor for PCK chains and for the
 *    TCB Signing chain.
 *  - Verification time is always explicit (Unix seconds).
 *  - Collateral signatures are checked over the exact raw bytes Intel
 *    signed (the inner "tcbInfo" / "enclaveIdentity" object), never over a
 *    re-serialisation.
 */
#ifndef CONFIDE_TDX_H
#define CONFIDE_TDX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/attest.h"
#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

#define CF_TDX_TEE_TYPE 0x81u
#define CF_TDX_HEADER_LEN 48
#define CF_TDX_TD10_BODY_LEN 584
#define CF_TDX_TD15_BODY_LEN 648
#define CF_TDX_QE_REPORT_LEN 384
#define CF_TDX_MR_LEN 48
#define CF_TDX_FMSPC_LEN 6
/* Largest quote accepted (real ones are ~5 KiB; padding included). */
#define CF_TDX_QUOTE_MAX (64u * 1024u)

/* TD attributes bits (TDX module ABI spec, TDINFO_STRUCT.ATTRIBUTES). Only
 * bits named here count as "known"; the TUD bits 1..7 (debug-like profiling)
 * and everything else are reserved for the reserved_attributes_zero policy. */
#define CF_TDX_ATTR_DEBUG (1ull << 0)
#define CF_TDX_ATTR_LASS (1ull << 27)
#define CF_TDX_ATTR_SEPT_VE_DISABLE (1ull << 28)
#define CF_TDX_ATTR_MIGRATABLE (1ull << 29)
#define CF_TDX_ATTR_PKS (1ull << 30)
#define CF_TDX_ATTR_KL (1ull << 31)
#define CF_TDX_ATTR_PERFMON (1ull << 63)
#define CF_TDX_ATTR_KNOWN                                                                                         \
    (CF_TDX_ATTR_DEBUG | CF_TDX_ATTR_LASS | CF_TDX_ATTR_SEPT_VE_DISABLE | CF_TDX_ATTR_MIGRATABLE |                \
     CF_TDX_ATTR_PKS | CF_TDX_ATTR_KL | CF_TDX_ATTR_PERFMON)

/* TD report body (TDX 1.0: 584 bytes; TDX 1.5 adds the last two fields). */
typedef struct cf_tdx_td_report {
    uint8_t tee_tcb_svn[16];
    uint8_t mrseam[CF_TDX_MR_LEN];
    uint8_t mrsignerseam[CF_TDX_MR_LEN];
    uint64_t seam_attributes; /* little-endian in the quote */
    uint64_t td_attributes;
    uint64_t xfam;
    uint8_t mrtd[CF_TDX_MR_LEN];
    uint8_t mrconfigid[CF_TDX_MR_LEN];
    uint8_t mrowner[CF_TDX_MR_LEN];
    uint8_t mrownerconfig[CF_TDX_MR_LEN];
    uint8_t rtmr[4][CF_TDX_MR_LEN];
    uint8_t report_data[64];
    bool is_td15;
    uint8_t tee_tcb_svn2[16];            /* TDX 1.5 only, else zero */
    uint8_t mrservicetd[CF_TDX_MR_LEN]; /* TDX 1.5 only, else zero */
} cf_tdx_td_report;

/* SGX report body of the Quoting Enclave (384 bytes). */
typedef struct cf_tdx_qe_report {
    uint8_t cpusvn[16];
    uint32_t miscselect;
    uint8_t attributes[16];
    uint8_t mrenclave[32];
    uint8_t mrsigner[32];
    uint16_t isvprodid;
    uint16_t isvsvn;
    uint8_t report_data[64];
} cf_tdx_qe_report;

/* A parsed quote. The slices borrow from the bytes given to the parser. */
typedef struct cf_tdx_quote {
    uint16_t version;      /* 4 or 5 */
    uint16_t att_key_type; /* 2 = ECDSA-256-with-P-256 */
    uint32_t tee_type;     /* 0x81 */
    uint8_t qe_vendor_id[16];
    uint8_t user_data[20];
    uint16_t body_type; /* v5: 2 = TD 1.0, 3 = TD 1.5; v4: 2 */
    cf_tdx_td_report td;
    cf_slice signed_region; /* header || [v5 type+size] || body */
    uint8_t signature[64];  /* raw r || s, big-endian */
    uint8_t attestation_key[64]; /* raw x || y */
    cf_slice qe_report_raw;       /* 384 bytes, what the PCK signed */
    cf_tdx_qe_report qe_report;
    uint8_t qe_report_signature[64];
    cf_slice qe_auth_data;
    cf_slice pck_chain_pem; /* certification data type 5 */
    size_t quote_len;       /* bytes that belong to the quote */
    size_t trailing_len;    /* ignored bytes after it */
} cf_tdx_quote;

/* Parse (structure only, no signature checks). */
CF_RESULT cf_tdx_quote_parse(cf_slice bytes, cf_tdx_quote *out);

/* ---- PCK certificate SGX extension -------------------------------------- */

#define CF_TDX_PCK_EXT_OID "1.2.840.113741.1.13.1"

typedef struct cf_tdx_pck_ext {
    uint8_t ppid[16];
    uint8_t sgx_comp_svn[16]; /* TCB components 1..16 */
    uint16_t pcesvn;
    uint8_t cpusvn[16];
    uint8_t pceid[2];
    uint8_t fmspc[CF_TDX_FMSPC_LEN];
    int sgx_type; /* 0 standard, 1 scalable, 2 scalable with integrity */
} cf_tdx_pck_ext;

/* Parse the DER contents of the extension (its OCTET STRING's inner bytes). */
CF_RESULT cf_tdx_pck_ext_parse(cf_slice der, cf_tdx_pck_ext *out);

/* ---- Collateral ----------------------------------------------------------- */

typedef enum cf_tdx_tcb_status {
    CF_TDX_TCB_UNKNOWN = 0,
    CF_TDX_TCB_UP_TO_DATE,
    CF_TDX_TCB_SW_HARDENING_NEEDED,
    CF_TDX_TCB_CONFIGURATION_NEEDED,
    CF_TDX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED,
    CF_TDX_TCB_OUT_OF_DATE,
    CF_TDX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED,
    CF_TDX_TCB_REVOKED,
    CF_TDX_TCB_NOT_SUPPORTED, /* no level matched: always rejected */
} cf_tdx_tcb_status;

/* Intel's status string ("UpToDate", ..., "TCB_NOT_SUPPORTED"). */
const char *cf_tdx_tcb_status_name(cf_tdx_tcb_status s);
/* CF_E_MALFORMED for anything but the seven Intel strings. */
CF_RESULT cf_tdx_tcb_status_parse(const char *s, cf_tdx_tcb_status *out);

#define CF_TDX_MAX_TCB_LEVELS 64
#define CF_TDX_MAX_MODULE_IDS 16

typedef struct cf_tdx_tcb_level {
    uint8_t sgx_comp_svn[16];
    uint16_t pcesvn;
    uint8_t tdx_comp_svn[16];
    uint16_t isvsvn; /* TDX module identity / QE identity levels */
    cf_tdx_tcb_status status;
    const json_t *advisory_ids; /* borrowed array, or NULL */
    const char *tcb_date;       /* borrowed */
} cf_tdx_tcb_level;

typedef struct cf_tdx_module_identity {
    char id[16]; /* "TDX_01" */
    uint8_t mrsigner[CF_TDX_MR_LEN];
    uint64_t attributes, attributes_mask;
    size_t n_levels;
    cf_tdx_tcb_level levels[CF_TDX_MAX_TCB_LEVELS];
} cf_tdx_module_identity;

typedef struct cf_tdx_tcb_info {
    json_t *json; /* owns the borrowed strings/arrays in the levels */
    int64_t issue_date, next_update;
    uint8_t fmspc[CF_TDX_FMSPC_LEN];
    uint8_t pceid[2];
    int64_t tcb_evaluation_data_number;
    bool has_module; /* "tdxModule" */
    uint8_t module_mrsigner[CF_TDX_MR_LEN];
    uint64_t module_attributes, module_attributes_mask;
    size_t n_module_ids;
    cf_tdx_module_identity module_ids[CF_TDX_MAX_MODULE_IDS];
    size_t n_levels;
    cf_tdx_tcb_level levels[CF_TDX_MAX_TCB_LEVELS];
} cf_tdx_tcb_info;

typedef struct cf_tdx_qe_identity {
    json_t *json;
    int64_t issue_date, next_update;
    uint32_t miscselect, miscselect_mask;
    uint8_t attributes[16], attributes_mask[16];
    uint8_t mrsigner[32];
    uint16_t isvprodid;
    size_t n_levels;
    cf_tdx_tcb_level levels[CF_TDX_MAX_TCB_LEVELS];
} cf_tdx_qe_identity;

/* Collateral in dcap-qvl's QuoteCollateralV3 JSON shape:
 *   { "pck_crl_issuer_chain": PEM, "root_ca_crl": hex DER, "pck_crl": hex DER,
 *     "tcb_info_issuer_chain": PEM, "tcb_info": "<raw tcbInfo JSON>",
 *     "tcb_info_signature": hex r||s, "qe_identity_issuer_chain": PEM,
 *     "qe_identity": "<raw enclaveIdentity JSON>",
 *     "qe_identity_signature": hex r||s }
 * The CRL members may be absent or "" (no revocation data); the tcb/qe
 * members may all be absent (only valid with chain-only verification). */
typedef struct cf_tdx_collateral {
    json_t *root; /* owns every borrowed string below */
    bool has_tcb;  /* tcb_info + qe_identity present */
    cf_slice tcb_info_raw, qe_identity_raw;
    uint8_t tcb_info_signature[64], qe_identity_signature[64];
    cf_slice tcb_info_issuer_chain, qe_identity_issuer_chain;
    cf_buf pck_crl, root_ca_crl; /* DER, empty if not supplied */
    cf_tdx_tcb_info *tcb_info;         /* owned, NULL without has_tcb */
    cf_tdx_qe_identity *qe_identity;   /* owned */
} cf_tdx_collateral;

CF_RESULT cf_tdx_collateral_parse(cf_slice json, cf_tdx_collateral *out);
void cf_tdx_collateral_free(cf_tdx_collateral *c);

/* Parse the raw inner objects (the signed bytes): TCB info v3 with id "TDX",
 * QE identity v2 with id "TD_QE". The *_free functions release `json`. */
CF_RESULT cf_tdx_tcb_info_parse(cf_slice raw, cf_tdx_tcb_info *out);
void cf_tdx_tcb_info_free(cf_tdx_tcb_info *t);
CF_RESULT cf_tdx_qe_identity_parse(cf_slice raw, cf_tdx_qe_identity *out);
void cf_tdx_qe_identity_free(cf_tdx_qe_identity *q);

/* Find the exact raw bytes of the value of top-level member `key` in a JSON
 * object (json.h's strict scanner: whole document validated, duplicate names
 * refused, depth <= 64, 1 MiB; no re-serialisation). Used for PCS API bodies
 * {"tcbInfo":{...},"signature":"..."}. */
CF_RESULT cf_tdx_json_member_span(cf_slice json, const char *key, cf_slice *out);

/* The separate files Intel PCS hands out (and go-tdx-guest / trustee ship),
 * to be assembled into one QuoteCollateralV3 JSON document. */
typedef struct cf_tdx_collateral_parts {
    cf_slice tcb_info_body;        /* PCS body {"tcbInfo":{..},"signature":".."} */
    cf_slice qe_identity_body;     /* PCS body {"enclaveIdentity":{..},"signature":".."} */
    cf_slice tcb_info_issuer_chain;    /* PEM (PCS header TCB-Info-Issuer-Chain) */
    cf_slice qe_identity_issuer_chain; /* PEM; empty = same as tcb_info_issuer_chain */
    cf_slice pck_crl;                  /* DER or PEM, may be empty */
    cf_slice root_ca_crl;              /* DER or PEM, may be empty */
    cf_slice pck_crl_issuer_chain;     /* PEM, may be empty (informational) */
} cf_tdx_collateral_parts;

/* Put one file into the slot it belongs to, recognised by content (for
 * `confide verify` given several collateral files):
 *   JSON {"tcbInfo":..}            -> tcb_info_body
 *   JSON {"enclaveIdentity":..}    -> qe_identity_body
 *   PEM chain led by "Intel SGX TCB Signing"        -> tcb_info_issuer_chain
 *   PEM chain led by a PCK Platform/Processor CA     -> pck_crl_issuer_chain
 *   CRL (DER or PEM) issued by "Intel SGX Root CA"   -> root_ca_crl
 *   CRL issued by a PCK Platform/Processor CA        -> pck_crl
 * `data` is borrowed (keep it alive until assembling). A second file for an
 * occupied slot, or anything else, is an error naming what was seen. */
CF_RESULT cf_tdx_collateral_classify(cf_slice data, cf_tdx_collateral_parts *parts);

/* Build QuoteCollateralV3 JSON (appended to `out`) from the parts. The raw
 * inner objects are copied byte for byte, so their signatures still verify. */
CF_RESULT cf_tdx_collateral_assemble(const cf_tdx_collateral_parts *parts, cf_buf *out);

/* ---- TCB evaluation ------------------------------------------------------- */

typedef struct cf_tdx_tcb_result {
    cf_tdx_tcb_status platform;    /* matched TCB level of tcbInfo */
    cf_tdx_tcb_status module;      /* TDX module identity level (or UpToDate) */
    cf_tdx_tcb_status qe;          /* QE identity level */
    cf_tdx_tcb_status final;       /* converged status */
    const char *platform_tcb_date; /* borrowed from the collateral */
    json_t *advisory_ids;          /* owned array (union), never NULL on OK */
    char module_id[16];            /* "TDX_01", or "" */
} cf_tdx_tcb_result;

/* Intel's level matching (docs/attestation.md §Intel TDX "TCB status"). A
 * failure means a structural mismatch (FMSPC, module signer, QE identity);
 * "no matching level" is not a failure: it yields CF_TDX_TCB_NOT_SUPPORTED
 * and the caller rejects it. */
CF_RESULT cf_tdx_tcb_evaluate(const cf_tdx_quote *q, const cf_tdx_pck_ext *pck, const cf_tdx_tcb_info *tcb,
                              const cf_tdx_qe_identity *qe, cf_tdx_tcb_result *out);
void cf_tdx_tcb_result_free(cf_tdx_tcb_result *r);

/* ---- Verified-chain cache ---------------------------------------------------
 * Successful Intel chain verifications (PCK chains and TCB Signing chains,
 * with their CRLs) are remembered, keyed by SHA-256 of every certificate and
 * CRL byte plus the check mode, together with the time window in which the
 * result cannot change; a later verification at a time inside that window
 * skips X509_verify_cert. Failures are never cached. On by default; 32
 * entries, process-wide, thread-safe. */
void cf_tdx_chain_cache_enable(bool on);
void cf_tdx_chain_cache_clear(void);

/* ---- Trust anchor --------------------------------------------------------- */

/* DER of the compiled-in Intel SGX Root CA, and its pinned fingerprint. */
cf_slice cf_tdx_intel_root_der(void);
extern const uint8_t cf_tdx_intel_root_sha256[32];

#endif /* CONFIDE_TDX_H */
