/*
 * snp.h — AMD SEV-SNP attestation: report parser, VEK certificate claims,
 * pinned AMD roots, chain cache and the certificate table a host hands out
 * with an extended report (the configfs-tsm auxblob; collection is tsm.h).
 *
 * The verifier itself is cf_snp_verify() (attest.h); this header exposes the
 * pieces it is built from so that tests, fuzzers, the bench and the CLI can
 * use them one by one.
 *
 * Rules:
 *  - A report is exactly CF_SNP_REPORT_LEN bytes and is parsed field by field
 *    through cf_reader (AMD SEV-SNP ABI spec 56860, Table 22 "ATTESTATION_
 *    REPORT Structure"); nothing is cast from the raw bytes.
 *  - A parsed report is NOT verified: only cf_snp_verify() establishes that the
 *    bytes were signed by a VCEK/VLEK that chains to a pinned AMD root.
 *  - The AMD roots (ARK per product) are compiled in and pinned by their
 *    SHA-256 fingerprints; nothing from the evidence or collateral can add a
 *    root. ASK/ASVK may come from the collateral (they are then verified
 *    under the pinned ARK) or from the embedded copies.
 *  - Verification time is always explicit.
 */
#ifndef CONFIDE_SNP_H
#define CONFIDE_SNP_H

#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/attest.h"
#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

#define CF_SNP_REPORT_LEN 1184
/* The signature covers bytes [0, 0x2A0) (ABI spec §7.3, Table 22). */
#define CF_SNP_SIGNED_LEN 0x2A0
#define CF_SNP_SIG_COMPONENT_LEN 72
#define CF_SNP_CHIP_ID_LEN 64
/* Turin VCEKs carry an 8-byte hwID compared with chip_id[0:8]. */
#define CF_SNP_TURIN_HWID_LEN 8
#define CF_SNP_MIN_VERSION 2
#define CF_SNP_MAX_VERSION 5
#define CF_SNP_SIG_ALGO_ECDSA_P384_SHA384 1

/* Guest policy bits (ABI spec §4.3, Table 9). */
#define CF_SNP_POLICY_SMT (UINT64_C(1) << 16)
#define CF_SNP_POLICY_MIGRATE_MA (UINT64_C(1) << 18)
#define CF_SNP_POLICY_DEBUG (UINT64_C(1) << 19)
#define CF_SNP_POLICY_SINGLE_SOCKET (UINT64_C(1) << 20)

typedef enum cf_snp_product {
    CF_SNP_PRODUCT_UNKNOWN = 0,
    CF_SNP_PRODUCT_MILAN = 1,
    CF_SNP_PRODUCT_GENOA = 2,
    CF_SNP_PRODUCT_TURIN = 3,
} cf_snp_product;

/* "Milan", "Genoa", "Turin" (the KDS spelling), "unknown". */
const char *cf_snp_product_name(cf_snp_product p);
/* Accepts the names above and KDS productName values like "Milan-B0". */
cf_snp_product cf_snp_product_from_name(cf_slice name);

/* Report flags bits 4:2 (SIGNING_KEY). */
typedef enum cf_snp_signing_key {
    CF_SNP_KEY_VCEK = 0,
    CF_SNP_KEY_VLEK = 1,
    CF_SNP_KEY_NONE = 7,
} cf_snp_signing_key;
const char *cf_snp_signing_key_name(cf_snp_signing_key k);

/* A TCB_VERSION decoded for one product. Milan/Genoa: byte 0 BL, 1 TEE,
 * 6 SNP, 7 microcode. Turin: byte 0 FMC, 1 BL, 2 TEE, 3 SNP, 7 microcode. */
typedef struct cf_snp_tcb {
    uint64_t raw;
    uint8_t fmc; /* Turin only (has_fmc) */
    uint8_t bl;
    uint8_t tee;
    uint8_t snp;
    uint8_t ucode;
    bool has_fmc;
} cf_snp_tcb;
cf_snp_tcb cf_snp_tcb_decode(uint64_t raw, cf_snp_product product);
/* "bl=3 tee=0 snp=8 ucode=115" (Turin: "fmc=1 bl=1 ..."). */
void cf_snp_tcb_format(const cf_snp_tcb *tcb, char *out, size_t outsize);

/* Every field of ATTESTATION_REPORT, host byte order. */
typedef struct cf_snp_report {
    uint32_t version;
    uint32_t guest_svn;
    uint64_t policy;
    uint8_t family_id[16];
    uint8_t image_id[16];
    uint32_t vmpl;
    uint32_t signature_algo;
    uint64_t current_tcb;
    uint64_t platform_info;
    uint32_t flags;               /* bit 0 AUTHOR_KEY_EN, 1 MASK_CHIP_KEY, 4:2 SIGNING_KEY */
    bool author_key_en;
    bool mask_chip_key;
    uint8_t signing_key;          /* cf_snp_signing_key value, 0..7 */
    uint8_t report_data[64];
    uint8_t measurement[48];
    uint8_t host_data[32];
    uint8_t id_key_digest[48];
    uint8_t author_key_digest[48];
    uint8_t report_id[32];
    uint8_t report_id_ma[32];
    uint64_t reported_tcb;
    uint8_t cpuid_fam_id;         /* v3+; zero in v2 */
    uint8_t cpuid_mod_id;
    uint8_t cpuid_step;
    uint8_t chip_id[CF_SNP_CHIP_ID_LEN];
    uint64_t committed_tcb;
    uint8_t current_build, current_minor, current_major;
    uint8_t committed_build, committed_minor, committed_major;
    uint64_t launch_tcb;
    uint64_t launch_mit_vector;   /* v5+; zero before */
    uint64_t current_mit_vector;  /* v5+; zero before */
    uint8_t sig_r[CF_SNP_SIG_COMPONENT_LEN]; /* little-endian */
    uint8_t sig_s[CF_SNP_SIG_COMPONENT_LEN]; /* little-endian */
} cf_snp_report;

/* Parse exactly CF_SNP_REPORT_LEN bytes; versions 2..5 only. Checks that the
 * reserved fields the verifier relies on are well-formed (signature algo,
 * signing-key field, reserved signature tail zero). On failure *out is
 * zeroed. */
CF_RESULT cf_snp_report_parse(cf_slice bytes, cf_snp_report *out);
/* The product named by CPUID_FAM_ID/CPUID_MOD_ID (v3+), or UNKNOWN for v2
 * and for family/model pairs AMD has not assigned to SNP. */
cf_snp_product cf_snp_report_product(const cf_snp_report *r);

/* ---- VCEK / VLEK certificates -------------------------------------------- */

/* Claims carried by a VEK certificate's AMD extensions (OID 1.3.6.1.4.1.3704.1,
 * VCEK spec 57230 §3). */
typedef struct cf_snp_vek_info {
    cf_snp_signing_key kind; /* from the subject CN: SEV-VCEK / SEV-VLEK */
    cf_snp_product product;  /* from productName (.1.2), may be UNKNOWN */
    char product_name[32];
    uint8_t bl, tee, snp, ucode, fmc;
    bool has_fmc;
    uint8_t hwid[CF_SNP_CHIP_ID_LEN];
    size_t hwid_len; /* 64, 8 (Turin) or 0 (VLEK: no hwID) */
} cf_snp_vek_info;

CF_RESULT cf_snp_vek_parse(X509 *cert, cf_snp_vek_info *out);
/* The extension-value parsers (exported for the fuzzer and tests).
 * TCB components are DER INTEGERs 0..255 (the microcode SPL may be 2 bytes:
 * 02 02 00 db). */
CF_RESULT cf_snp_ext_parse_spl(cf_slice ext, uint8_t *out);
/* hwID: 64 raw bytes, 8 raw bytes (Turin), or either wrapped in an OCTET
 * STRING. */
CF_RESULT cf_snp_ext_parse_hwid(cf_slice ext, uint8_t out[CF_SNP_CHIP_ID_LEN], size_t *out_len);
/* productName: an IA5String ("Milan-B0"); copied NUL-terminated. */
CF_RESULT cf_snp_ext_parse_product(cf_slice ext, char *out, size_t outsize);

/* ---- Pinned roots ----------------------------------------------------------- */

/* Embedded certificates for a product (new references the caller frees). The
 * ARK is checked against its pinned SHA-256 fingerprint on every load. */
CF_RESULT cf_snp_root_ark(cf_snp_product p, X509 **out);
CF_RESULT cf_snp_root_ask(cf_snp_product p, X509 **out);
CF_RESULT cf_snp_root_asvk(cf_snp_product p, X509 **out);
/* Pinned fingerprint of a product's ARK (32 bytes) or NULL. */
const uint8_t *cf_snp_ark_fingerprint(cf_snp_product p);

/* ---- Collateral and chain ----------------------------------------------------- */

/* Collateral: PEM or concatenated DER, the VCEK/VLEK certificate first, then
 * optionally the ASK/ASVK (an ARK in the bundle is ignored: the root is
 * always the pinned one), plus optionally AMD CRLs (PEM "X509 CRL" blocks,
 * or DER after the VEK). */
typedef struct cf_snp_collateral {
    X509 *vek;
    STACK_OF(X509) *intermediates; /* possibly empty */
    STACK_OF(X509_CRL) *crls;      /* possibly empty */
} cf_snp_collateral;
#define CF_SNP_COLLATERAL_MAX (256 * 1024)
#define CF_SNP_COLLATERAL_MAX_CERTS 8
CF_RESULT cf_snp_collateral_parse(cf_slice data, cf_snp_collateral *out);
void cf_snp_collateral_free(cf_snp_collateral *c);

/* Cache of verified chains: key = SHA-256(VEK DER) + SHA-256(intermediate DER)
 * + product; value = the window [latest notBefore, earliest notAfter] over
 * the chain, so a hit at time t is exactly as strong as re-verifying at t.
 * Bypassed whenever CRLs are involved (revocation is not a function of the
 * certificates alone). Thread-safe. */
#define CF_SNP_CHAIN_CACHE_SLOTS 32
typedef struct cf_snp_chain_cache_entry {
    uint8_t key[32];
    int64_t not_before, not_after;
    bool used;
} cf_snp_chain_cache_entry;
typedef struct cf_snp_chain_cache {
    pthread_mutex_t lock;
    cf_snp_chain_cache_entry slots[CF_SNP_CHAIN_CACHE_SLOTS];
    size_t next;
    uint64_t hits, misses;
} cf_snp_chain_cache;
void cf_snp_chain_cache_init(cf_snp_chain_cache *c);
void cf_snp_chain_cache_destroy(cf_snp_chain_cache *c);

/* Verify VEK -> (ASK | ASVK by kind) -> pinned ARK of `product` at `at`.
 * Intermediates from `supplied` are used when they have the right role
 * (ASK "SEV-<product>" for a VCEK, ASVK "SEV-VLEK-<product>" for a VLEK),
 * else the embedded ones. `crls` (may be NULL/empty) are AMD CRLs issued by
 * the ARK; `require_crl` fails closed when none is valid. `cache` may be NULL. */
CF_RESULT cf_snp_verify_chain(X509 *vek, STACK_OF(X509) *supplied, cf_snp_product product,
                              cf_snp_signing_key kind, STACK_OF(X509_CRL) *crls, bool require_crl, int64_t at,
                              cf_snp_chain_cache *cache);
/* The CRL check used above: `crl` must be signed by `issuer`, current at `at`
 * (thisUpdate <= at <= nextUpdate), and must not list `cert`. */
CF_RESULT cf_snp_crl_check(X509_CRL *crl, X509 *issuer, X509 *cert, int64_t at);

/* The full verifier with an explicit chain cache (NULL = none). cf_snp_verify
 * uses a process-wide cache. */
CF_RESULT cf_snp_verify_with_cache(const cf_verify_input *in, cf_snp_chain_cache *cache, cf_claims *out);

/* ---- Policy ------------------------------------------------------------------ */

/* The manifest's SNP policy object, decoded (keys in docs/attestation.md). */
#define CF_SNP_POLICY_MAX_VALUES 64
typedef struct cf_snp_policy {
    bool allow_debug;
    bool allow_migration_agent;
    bool allow_smt;
    int vmpl;                 /* -1: any */
    uint32_t min_report_version;
    uint32_t min_guest_svn;
    bool allow_vcek, allow_vlek;
    bool require_crl;
    bool products[4];         /* indexed by cf_snp_product; all true if unset */
    uint8_t (*measurements)[48];
    size_t measurement_count; /* 0: any */
    uint8_t (*host_data)[32];
    size_t host_data_count;
    uint8_t (*id_key_digests)[48];
    size_t id_key_digest_count;
    bool has_min_tcb;
    uint8_t min_bl, min_tee, min_snp, min_ucode, min_fmc;
} cf_snp_policy;
/* NULL json = production defaults (debug and migration agent refused, SMT
 * allowed, any VMPL, VCEK and VLEK, no allow-lists). */
CF_RESULT cf_snp_policy_parse(const json_t *json, cf_snp_policy *out);
/* The policy checks of step 7 of cf_snp_verify on an already verified report
 * (pure; exported so each field can be tested on its own). */
CF_RESULT cf_snp_policy_check(const cf_snp_report *r, const cf_snp_policy *p, cf_snp_product product);
void cf_snp_policy_free(cf_snp_policy *p);

/* ---- configfs-tsm SNP auxblob: the certificate table ---------------------------- */

/* GHCB spec 56421 §4.1.8.1 (SNP extended guest request): entries of
 * {GUID (16, RFC 4122 byte order), offset u32le, length u32le}, ended by an
 * all-zero entry; offsets are from the start of the table. */
typedef struct cf_snp_cert_table {
    /* Borrowed from the table; empty if absent. The ASK slot carries the ASVK
     * when the platform uses a VLEK. */
    cf_slice vcek, vlek, ask, ark;
} cf_snp_cert_table;
#define CF_SNP_CERT_TABLE_MAX_ENTRIES 64
CF_RESULT cf_snp_cert_table_parse(cf_slice table, cf_snp_cert_table *out);
/* Turn a certificate table into confide's SNP collateral (PEM: the VEK of
 * kind `key` — the report's SIGNING_KEY — then the ASK/ASVK if present),
 * appended to out. */
CF_RESULT cf_snp_cert_table_to_collateral(cf_slice table, cf_snp_signing_key key, cf_buf *out);

#endif /* CONFIDE_SNP_H */
