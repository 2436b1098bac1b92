/* tdx.c — the Intel TDX verifier behind cf_attest_verify (see tdx.h and
 * docs/attestation.md §Intel TDX for the order of checks and the policy). */
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "tdx_internal.h"

/* ---- Policy --------------------------------------------------------------- */

typedef enum mr_field {
    MR_MRTD,
    MR_MRSEAM,
    MR_MRCONFIGID,
    MR_MROWNER,
    MR_MROWNERCONFIG,
    MR_MRSERVICETD,
    MR_RTMR0,
    MR_RTMR1,
    MR_RTMR2,
    MR_RTMR3,
    MR_COUNT
} mr_field;

static const char *const mr_names[MR_COUNT] = {"mrtd",        "mrseam", "mrconfigid", "mrowner", "mrownerconfig",
                                               "mrservicetd", "rtmr0",  "rtmr1",      "rtmr2",   "rtmr3"};

typedef struct tdx_policy {
    bool chain_only;
    bool allow_missing_crls;
    bool debug_allowed;
    bool sept_ve_disable_required;
    bool reserved_attributes_zero;
    uint32_t accepted_statuses; /* bit per cf_tdx_tcb_status */
    bool has_xfam;
    uint64_t xfam;
    const json_t *mr[MR_COUNT]; /* borrowed: string or array of strings */
    bool has_report_data;
    uint8_t report_data[64];
    bool any_workload; /* insecure_allow_any_workload: only changes what a manifest accepts */
} tdx_policy;

static bool is_hex_len(const json_t *v, size_t nbytes)
{
    if (!json_is_string(v) || json_string_length(v) != 2 * nbytes) {
        return false;
    }
    uint8_t tmp[64];
    return nbytes <= sizeof tmp &&
           cf_is_ok(cf_hex_decode_fixed(cf_slice_make(json_string_value(v), 2 * nbytes), tmp, nbytes, NULL));
}

static bool is_hex_or_hex_array(const json_t *v, size_t nbytes)
{
    if (json_is_array(v)) {
        if (json_array_size(v) == 0 || json_array_size(v) > 256) {
            return false;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (!is_hex_len(json_array_get(v, i), nbytes)) {
                return false;
            }
        }
        return true;
    }
    return is_hex_len(v, nbytes);
}

/* 16 hex digits holding the 8 bytes as they appear in the quote, i.e. a
 * little-endian u64 (xfam). The caller has checked the length with
 * is_hex_len. */
static CF_RESULT le64_from_hex(const char *hex, uint64_t *out)
{
    uint8_t b[8];
    CF_GUARD(cf_hex_decode_fixed(cf_slice_make(hex, 16), b, sizeof b, NULL));
    cf_reader r = cf_reader_make(cf_slice_make(b, sizeof b));
    return cf_reader_u64le(&r, out);
}

static CF_RESULT policy_load(const json_t *p, tdx_policy *out)
{
    memset(out, 0, sizeof *out);
    out->sept_ve_disable_required = true;
    out->reserved_attributes_zero = true;
    out->accepted_statuses = 1u << CF_TDX_TCB_UP_TO_DATE;
    if (p == NULL) {
        return CF_OK;
    }
    CF_ENSURE_MSG(json_is_object(p), CF_E_CONFIG, "tdx policy: not a JSON object");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)(uintptr_t)p, key, v)
    {
        bool ok = true;
        if (strcmp(key, "verification") == 0) {
            ok = json_is_string(v) &&
                 (strcmp(json_string_value(v), "full") == 0 || strcmp(json_string_value(v), "chain_only") == 0);
            out->chain_only = ok && strcmp(json_string_value(v), "chain_only") == 0;
        } else if (strcmp(key, "allow_missing_crls") == 0) {
            ok = json_is_boolean(v);
            out->allow_missing_crls = json_is_true(v);
        } else if (strcmp(key, "debug_allowed") == 0) {
            ok = json_is_boolean(v);
            out->debug_allowed = json_is_true(v);
        } else if (strcmp(key, "sept_ve_disable_required") == 0) {
            ok = json_is_boolean(v);
            out->sept_ve_disable_required = json_is_true(v);
        } else if (strcmp(key, "reserved_attributes_zero") == 0) {
            ok = json_is_boolean(v);
            out->reserved_attributes_zero = json_is_true(v);
        } else if (strcmp(key, "accepted_tcb_statuses") == 0) {
            ok = json_is_array(v) && json_array_size(v) > 0 && json_array_size(v) <= 7;
            out->accepted_statuses = 0;
            for (size_t i = 0; ok && i < json_array_size(v); i++) {
                cf_tdx_tcb_status st;
                ok = cf_is_ok(cf_tdx_tcb_status_parse(json_string_value(json_array_get(v, i)), &st));
                /* A revoked TCB is never acceptable (Intel's QVL treats it
                 * as a terminal failure); a policy naming it is a mistake. */
                ok = ok && st != CF_TDX_TCB_REVOKED;
                if (ok) {
                    out->accepted_statuses |= 1u << st;
                }
            }
            cf_error_clear();
        } else if (strcmp(key, "xfam") == 0) {
            ok = is_hex_len(v, 8) && cf_is_ok(le64_from_hex(json_string_value(v), &out->xfam));
            out->has_xfam = ok;
        } else if (strcmp(key, CF_POLICY_KEY_ANY_WORKLOAD) == 0) {
            ok = json_is_boolean(v);
            out->any_workload = json_is_true(v);
        } else if (strcmp(key, "report_data") == 0) {
            ok = is_hex_len(v, 64);
            out->has_report_data = ok;
            ok = ok && cf_is_ok(cf_hex_decode_fixed(cf_slice_make(json_string_value(v), 128), out->report_data, 64,
                                                    NULL));
        } else {
            size_t i;
            for (i = 0; i < MR_COUNT; i++) {
                if (strcmp(key, mr_names[i]) == 0) {
                    break;
                }
            }
            if (i == MR_COUNT) {
                CF_BAIL_FMT(CF_E_CONFIG, "tdx policy: unknown key \"%.48s\"", key);
            }
            ok = is_hex_or_hex_array(v, CF_TDX_MR_LEN);
            out->mr[i] = v;
        }
        if (!ok) {
            CF_BAIL_FMT(CF_E_CONFIG, "tdx policy: \"%.48s\" has a bad value (see docs/attestation.md §Intel TDX)", key);
        }
    }
    return CF_OK;
}

CF_RESULT cf_tdx_policy_validate(const json_t *policy)
{
    tdx_policy p;
    return policy_load(policy, &p);
}

/* The registers a manifest policy must pin so that it names one workload,
 * not "any TD on genuine hardware" (TDX Module ABI §TDREPORT; TDVF design
 * guide §Measurement): MRTD is the initial TD memory, i.e. the virtual
 * firmware only. RTMR0 holds what the firmware was configured with
 * (TD HOB, CFV with the Secure Boot variables, the VMM-supplied ACPI
 * tables whose AML the kernel runs), RTMR1 the OS loader and kernel, RTMR2
 * the kernel command line and initrd. Without all four the host or the
 * image owner could swap what runs. RTMR3 is left to the workload: nothing
 * extends it during boot; runtimes that extend it pin it themselves. */
static const mr_field workload_registers[] = {MR_MRTD, MR_RTMR0, MR_RTMR1, MR_RTMR2};

CF_RESULT cf_tdx_policy_pins_workload(const json_t *policy)
{
    tdx_policy p;
    CF_GUARD(policy_load(policy, &p));
    if (p.any_workload) {
        return CF_OK;
    }
    char missing[64] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof workload_registers / sizeof workload_registers[0]; i++) {
        if (p.mr[workload_registers[i]] == NULL) {
            int n = snprintf(missing + used, sizeof missing - used, "%s%s", used ? ", " : "",
                             mr_names[workload_registers[i]]);
            used += (n > 0 && (size_t)n < sizeof missing - used) ? (size_t)n : 0;
        }
    }
    if (used > 0) {
        CF_BAIL_FMT(CF_E_CONFIG,
                    "tdx policy: pins no workload: missing %s (a manifest policy must pin mrtd, rtmr0, rtmr1 and "
                    "rtmr2, or say \"" CF_POLICY_KEY_ANY_WORKLOAD "\": true)",
                    missing);
    }
    return CF_OK;
}

static bool mr_matches(const json_t *spec, const uint8_t value[CF_TDX_MR_LEN])
{
    uint8_t want[CF_TDX_MR_LEN];
    size_t n = json_is_array(spec) ? json_array_size(spec) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_is_array(spec) ? json_array_get(spec, i) : spec;
        if (cf_is_ok(cf_hex_decode_fixed(cf_slice_make(json_string_value(s), 2 * CF_TDX_MR_LEN), want, sizeof want,
                                         NULL)) &&
            memcmp(want, value, CF_TDX_MR_LEN) == 0) {
            return true;
        }
    }
    return false;
}

static CF_RESULT policy_check(const tdx_policy *p, const cf_tdx_td_report *td, const uint8_t *expected_report_data)
{
    uint64_t a = td->td_attributes;
    CF_ENSURE_MSG(p->debug_allowed || (a & CF_TDX_ATTR_DEBUG) == 0, CF_E_POLICY,
                  "tdx policy: TD is in debug mode (td_attributes.DEBUG=1)");
    CF_ENSURE_MSG(!p->sept_ve_disable_required || (a & CF_TDX_ATTR_SEPT_VE_DISABLE) != 0, CF_E_POLICY,
                  "tdx policy: td_attributes.SEPT_VE_DISABLE is off");
    CF_ENSURE_MSG(!p->reserved_attributes_zero || (a & ~CF_TDX_ATTR_KNOWN) == 0, CF_E_POLICY,
                  "tdx policy: reserved td_attributes bits are set");
    CF_ENSURE_MSG(!p->has_xfam || td->xfam == p->xfam, CF_E_POLICY, "tdx policy: xfam differs");
    const uint8_t *values[MR_COUNT] = {td->mrtd,    td->mrseam,      td->mrconfigid, td->mrowner, td->mrownerconfig,
                                       td->mrservicetd, td->rtmr[0], td->rtmr[1],    td->rtmr[2], td->rtmr[3]};
    for (size_t i = 0; i < MR_COUNT; i++) {
        if (p->mr[i] != NULL && !mr_matches(p->mr[i], values[i])) {
            CF_BAIL_FMT(CF_E_POLICY, "tdx policy: %s is not one of the accepted values", mr_names[i]);
        }
    }
    CF_ENSURE_MSG(!p->has_report_data || cf_ct_equal(p->report_data, td->report_data, 64), CF_E_REPORT_DATA,
                  "tdx: report_data differs from the policy's");
    CF_ENSURE_MSG(expected_report_data == NULL || cf_ct_equal(expected_report_data, td->report_data, 64),
                  CF_E_REPORT_DATA, "tdx: report_data differs from the expected binding");
    return CF_OK;
}

CF_RESULT tdx_policy_apply(const json_t *policy, const cf_tdx_td_report *td, const uint8_t *expected_report_data)
{
    tdx_policy p;
    CF_GUARD(policy_load(policy, &p));
    return policy_check(&p, td, expected_report_data);
}

/* ---- Details -------------------------------------------------------------- */

static CF_RESULT put_hex(json_t *obj, const char *key, const uint8_t *p, size_t n)
{
    char hex[2 * 64 + 1];
    CF_ENSURE(n <= 64, CF_E_INTERNAL);
    CF_GUARD(cf_hex_encode_str(cf_slice_make(p, n), hex, sizeof hex));
    CF_ENSURE_MSG(json_object_set_new(obj, key, json_string(hex)) == 0, CF_E_NO_MEMORY, "json set failed");
    return CF_OK;
}

static CF_RESULT put_le64(json_t *obj, const char *key, uint64_t v)
{
    uint8_t b[8];
    for (size_t i = 0; i < 8; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
    return put_hex(obj, key, b, 8);
}

static CF_RESULT put_str(json_t *obj, const char *key, const char *s)
{
    CF_ENSURE_MSG(json_object_set_new(obj, key, json_string(s)) == 0, CF_E_NO_MEMORY, "json set failed");
    return CF_OK;
}

static CF_RESULT put_int(json_t *obj, const char *key, json_int_t v)
{
    CF_ENSURE_MSG(json_object_set_new(obj, key, json_integer(v)) == 0, CF_E_NO_MEMORY, "json set failed");
    return CF_OK;
}

static CF_RESULT fill_details(json_t *d, const cf_tdx_quote *q, const cf_tdx_pck_ext *pck)
{
    const cf_tdx_td_report *td = &q->td;
    CF_GUARD(put_int(d, "quote_version", q->version));
    CF_GUARD(put_str(d, "td_report", td->is_td15 ? "TDX 1.5" : "TDX 1.0"));
    CF_GUARD(put_hex(d, "tee_tcb_svn", td->tee_tcb_svn, 16));
    CF_GUARD(put_hex(d, "mrseam", td->mrseam, CF_TDX_MR_LEN));
    CF_GUARD(put_hex(d, "mrsignerseam", td->mrsignerseam, CF_TDX_MR_LEN));
    CF_GUARD(put_le64(d, "seam_attributes", td->seam_attributes));
    CF_GUARD(put_le64(d, "td_attributes", td->td_attributes));
    CF_GUARD(put_le64(d, "xfam", td->xfam));
    CF_GUARD(put_hex(d, "mrtd", td->mrtd, CF_TDX_MR_LEN));
    CF_GUARD(put_hex(d, "mrconfigid", td->mrconfigid, CF_TDX_MR_LEN));
    CF_GUARD(put_hex(d, "mrowner", td->mrowner, CF_TDX_MR_LEN));
    CF_GUARD(put_hex(d, "mrownerconfig", td->mrownerconfig, CF_TDX_MR_LEN));
    for (size_t i = 0; i < 4; i++) {
        char name[8] = "rtmr0";
        name[4] = (char)('0' + i);
        CF_GUARD(put_hex(d, name, td->rtmr[i], CF_TDX_MR_LEN));
    }
    CF_GUARD(put_hex(d, "report_data", td->report_data, 64));
    if (td->is_td15) {
        CF_GUARD(put_hex(d, "tee_tcb_svn2", td->tee_tcb_svn2, 16));
        CF_GUARD(put_hex(d, "mrservicetd", td->mrservicetd, CF_TDX_MR_LEN));
    }
    CF_GUARD(put_hex(d, "fmspc", pck->fmspc, CF_TDX_FMSPC_LEN));
    CF_GUARD(put_hex(d, "pck_cpusvn", pck->cpusvn, 16));
    CF_GUARD(put_int(d, "pck_pcesvn", pck->pcesvn));
    CF_GUARD(put_int(d, "qe_isvsvn", q->qe_report.isvsvn));
    CF_GUARD(put_int(d, "trailing_bytes_ignored", (json_int_t)q->trailing_len));
    return CF_OK;
}

/* ---- Verification ---------------------------------------------------------- */

static CF_RESULT pck_extension(X509 *leaf, cf_tdx_pck_ext *out)
{
    ASN1_OBJECT *oid = OBJ_txt2obj(CF_TDX_PCK_EXT_OID, 1);
    CF_ENSURE_MSG(oid != NULL, CF_E_INTERNAL, "OBJ_txt2obj failed");
    int idx = X509_get_ext_by_OBJ(leaf, oid, -1);
    int again = idx >= 0 ? X509_get_ext_by_OBJ(leaf, oid, idx) : -1;
    ASN1_OBJECT_free(oid);
    CF_ENSURE_MSG(idx >= 0, CF_E_CERT, "tdx: PCK certificate has no SGX extension (1.2.840.113741.1.13.1)");
    CF_ENSURE_MSG(again < 0, CF_E_CERT, "tdx: PCK certificate has two SGX extensions");
    ASN1_OCTET_STRING *data = X509_EXTENSION_get_data(X509_get_ext(leaf, idx));
    CF_ENSURE_MSG(data != NULL, CF_E_CERT, "tdx: PCK SGX extension without data");
    CF_GUARD_MSG(cf_tdx_pck_ext_parse(cf_slice_make(ASN1_STRING_get0_data(data), (size_t)ASN1_STRING_length(data)), out),
                 "PCK certificate");
    return CF_OK;
}

static CF_RESULT verify_signed_collateral(cf_slice raw, const uint8_t sig[64], cf_slice chain_pem,
                                          STACK_OF(X509_CRL) *root_crls, int64_t now, const char *what)
{
    cf_result result = CF_OK;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    CF_GUARD_MSG(tdx_load_pem_chain(chain_pem, &chain), what);
    /* Only Intel's TCB Signing certificate, issued directly by the root, may
     * sign collateral: a PCK key (one per platform) must never be able to. */
    if (sk_X509_num(chain) != 2 || !tdx_subject_cn_is(sk_X509_value(chain, 0), "Intel SGX TCB Signing")) {
        cf_error_setf(CF_E_CERT, __FILE__, __LINE__,
                      "tdx: %s issuer chain is not Intel SGX TCB Signing -> Intel SGX Root CA", what);
        result = CF_ERROR;
        goto out;
    }
    CF_GUARD_OUT(tdx_verify_intel_chain(chain, root_crls, root_crls ? TDX_CRL_LEAF : TDX_CRL_NONE, now, true, what));
    key = X509_get_pubkey(sk_X509_value(chain, 0));
    CF_ENSURE_MSG_OUT(key != NULL, CF_E_CERT, "tdx: TCB Signing certificate has no usable key");
    if (cf_is_error(tdx_ecdsa_verify_raw(key, raw, sig))) {
        cf_error_setf(CF_E_BAD_SIGNATURE, __FILE__, __LINE__, "tdx: %s signature does not verify", what);
        result = CF_ERROR;
        goto out;
    }
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return result;
}

static CF_RESULT window_ok(int64_t issue, int64_t next, int64_t now, const char *what)
{
    if (now < issue || now >= next) {
        CF_BAIL_FMT(CF_E_EXPIRED, "tdx: %s is outside its issueDate..nextUpdate window at the verification time", what);
    }
    return CF_OK;
}

static CF_RESULT push_crl(STACK_OF(X509_CRL) *crls, const cf_buf *der, const char *what)
{
    X509_CRL *crl = NULL;
    CF_GUARD_MSG(cf_crl_load_any(cf_buf_slice(der), &crl), what);
    if (sk_X509_CRL_push(crls, crl) <= 0) {
        X509_CRL_free(crl);
        CF_BAIL_MSG(CF_E_NO_MEMORY, "sk_X509_CRL_push failed");
    }
    return CF_OK;
}

CF_RESULT cf_tdx_verify(const cf_verify_input *in, cf_claims *out)
{
    CF_ENSURE_REF(in);
    CF_ENSURE_REF(out);
    cf_result result = CF_OK;
    tdx_policy pol;
    cf_tdx_quote q;
    cf_tdx_collateral col;
    cf_tdx_pck_ext pck;
    cf_tdx_tcb_result tcb;
    EVP_PKEY *att_key = NULL, *pck_key = NULL;
    STACK_OF(X509) *pck_chain = NULL;
    STACK_OF(X509_CRL) *all_crls = NULL, *root_crls = NULL;
    json_t *details = NULL;
    uint8_t digest[32];
    static const uint8_t zeros[32] = {0};

    memset(&col, 0, sizeof col);
    memset(&tcb, 0, sizeof tcb);
    /* DESIGN §5: the verification time is always explicit; 0 would be 1970. */
    CF_ENSURE_MSG_OUT(in->now > 0, CF_E_INVALID_ARGUMENT, "tdx: verification time must be explicit");
    CF_GUARD_OUT(policy_load(in->policy, &pol));

    /* 1. Structure. */
    CF_GUARD_OUT(cf_tdx_quote_parse(in->evidence, &q));

    /* 2. Quote signature by the attestation key over header || body. */
    CF_GUARD_OUT(tdx_p256_from_xy(q.attestation_key, &att_key));
    if (cf_is_error(tdx_ecdsa_verify_raw(att_key, q.signed_region, q.signature))) {
        CF_BAIL_OUT(CF_E_BAD_SIGNATURE, "tdx: quote signature (attestation key over header and TD report) does not verify");
    }

    /* 3. QE report signed by the PCK leaf. */
    CF_GUARD_OUT(tdx_load_pem_chain(q.pck_chain_pem, &pck_chain));
    /* PCK certificate -> PCK Platform/Processor CA -> root (PCK profile §1). */
    CF_ENSURE_MSG_OUT(sk_X509_num(pck_chain) == 3 && tdx_subject_cn_is(sk_X509_value(pck_chain, 0), "Intel SGX PCK Certificate") &&
                          (tdx_subject_cn_is(sk_X509_value(pck_chain, 1), "Intel SGX PCK Platform CA") ||
                           tdx_subject_cn_is(sk_X509_value(pck_chain, 1), "Intel SGX PCK Processor CA")),
                      CF_E_CERT, "tdx: PCK chain is not PCK Certificate -> PCK Platform/Processor CA -> root");
    pck_key = X509_get_pubkey(sk_X509_value(pck_chain, 0));
    CF_ENSURE_MSG_OUT(pck_key != NULL, CF_E_CERT, "tdx: PCK certificate has no usable key");
    if (cf_is_error(tdx_ecdsa_verify_raw(pck_key, q.qe_report_raw, q.qe_report_signature))) {
        CF_BAIL_OUT(CF_E_BAD_SIGNATURE, "tdx: QE report signature (PCK key) does not verify");
    }

    /* 4. QE report_data = SHA-256(attestation key || QE auth data) || 32 zero bytes. */
    {
        cf_hash_ctx h;
        memset(&h, 0, sizeof h);
        if (cf_is_error(cf_hash_init(&h, CF_HASH_SHA256)) ||
            cf_is_error(cf_hash_update(&h, cf_slice_make(q.attestation_key, 64))) ||
            cf_is_error(cf_hash_update(&h, q.qe_auth_data)) || cf_is_error(cf_hash_final(&h, digest))) {
            cf_hash_free(&h);
            result = CF_ERROR;
            goto out;
        }
    }
    CF_ENSURE_MSG_OUT(cf_ct_equal(digest, q.qe_report.report_data, 32) && cf_ct_equal(zeros, q.qe_report.report_data + 32, 32),
                      CF_E_BAD_SIGNATURE, "tdx: QE report_data does not bind the attestation key and QE auth data");

    /* 5. Collateral, CRLs, PCK chain to the pinned Intel root. */
    CF_GUARD_OUT(cf_tdx_collateral_parse(in->collateral, &col));
    bool have_pck_crl = col.pck_crl.len > 0, have_root_crl = col.root_ca_crl.len > 0;
    CF_ENSURE_MSG_OUT(have_pck_crl == have_root_crl, CF_E_MALFORMED,
                      "tdx collateral: pck_crl and root_ca_crl must be supplied together");
    CF_ENSURE_MSG_OUT(have_pck_crl || pol.allow_missing_crls, CF_E_REVOKED,
                      "tdx: no CRLs in the collateral (policy allow_missing_crls is off)");
    if (have_pck_crl) {
        all_crls = sk_X509_CRL_new_null();
        root_crls = sk_X509_CRL_new_null();
        CF_ENSURE_MSG_OUT(all_crls != NULL && root_crls != NULL, CF_E_NO_MEMORY, "allocation failed");
        CF_GUARD_OUT(push_crl(all_crls, &col.pck_crl, "pck_crl"));
        CF_GUARD_OUT(push_crl(all_crls, &col.root_ca_crl, "root_ca_crl"));
        CF_GUARD_OUT(push_crl(root_crls, &col.root_ca_crl, "root_ca_crl"));
    }
    CF_GUARD_OUT(tdx_verify_intel_chain(pck_chain, all_crls, all_crls ? TDX_CRL_ALL : TDX_CRL_NONE, in->now, false,
                                        "PCK chain"));
    CF_GUARD_OUT(pck_extension(sk_X509_value(pck_chain, 0), &pck));

    /* 6. TCB: collateral signatures, windows, Intel level matching. */
    const char *status_text = "NotEvaluated (chain_only)";
    if (!pol.chain_only) {
        CF_ENSURE_MSG_OUT(col.has_tcb, CF_E_TCB,
                          "tdx: collateral has no TCB info / QE identity (policy verification=chain_only skips TCB)");
        CF_GUARD_OUT(verify_signed_collateral(col.tcb_info_raw, col.tcb_info_signature, col.tcb_info_issuer_chain,
                                              root_crls, in->now, "TCB info"));
        CF_GUARD_OUT(verify_signed_collateral(col.qe_identity_raw, col.qe_identity_signature,
                                              col.qe_identity_issuer_chain, root_crls, in->now, "QE identity"));
        CF_GUARD_OUT(window_ok(col.tcb_info->issue_date, col.tcb_info->next_update, in->now, "TCB info"));
        CF_GUARD_OUT(window_ok(col.qe_identity->issue_date, col.qe_identity->next_update, in->now, "QE identity"));
        CF_GUARD_OUT(cf_tdx_tcb_evaluate(&q, &pck, col.tcb_info, col.qe_identity, &tcb));
        if (tcb.final == CF_TDX_TCB_NOT_SUPPORTED) {
            cf_error_setf(CF_E_TCB, __FILE__, __LINE__,
                          "tdx: TCB_NOT_SUPPORTED (platform %s, module %s %s, QE %s): no matching TCB level",
                          cf_tdx_tcb_status_name(tcb.platform), tcb.module_id[0] ? tcb.module_id : "-",
                          cf_tdx_tcb_status_name(tcb.module), cf_tdx_tcb_status_name(tcb.qe));
            result = CF_ERROR;
            goto out;
        }
        if ((pol.accepted_statuses & (1u << tcb.final)) == 0) {
            cf_error_setf(CF_E_TCB, __FILE__, __LINE__, "tdx: TCB status %s is not accepted by the policy",
                          cf_tdx_tcb_status_name(tcb.final));
            result = CF_ERROR;
            goto out;
        }
        status_text = cf_tdx_tcb_status_name(tcb.final);
    }

    /* 7. Policy on the TD report. */
    CF_GUARD_OUT(policy_check(&pol, &q.td, in->expected_report_data));

    /* 8. Claims. */
    details = json_object();
    CF_ENSURE_MSG_OUT(details != NULL, CF_E_NO_MEMORY, "json_object failed");
    CF_GUARD_OUT(fill_details(details, &q, &pck));
    CF_GUARD_OUT(put_str(details, "verification", pol.chain_only ? "chain_only" : "full"));
    CF_ENSURE_MSG_OUT(json_object_set_new(details, "crls_checked", json_boolean(have_pck_crl)) == 0, CF_E_NO_MEMORY,
                      "json set failed");
    CF_GUARD_OUT(put_str(details, "tcb_status", status_text));
    if (!pol.chain_only) {
        CF_GUARD_OUT(put_str(details, "platform_tcb_status", cf_tdx_tcb_status_name(tcb.platform)));
        CF_GUARD_OUT(put_str(details, "tdx_module_tcb_status", cf_tdx_tcb_status_name(tcb.module)));
        CF_GUARD_OUT(put_str(details, "qe_tcb_status", cf_tdx_tcb_status_name(tcb.qe)));
        CF_GUARD_OUT(put_str(details, "tdx_module_identity", tcb.module_id));
        CF_GUARD_OUT(put_str(details, "tcb_date", tcb.platform_tcb_date ? tcb.platform_tcb_date : ""));
        CF_GUARD_OUT(put_int(details, "tcb_evaluation_data_number", col.tcb_info->tcb_evaluation_data_number));
        CF_ENSURE_MSG_OUT(json_object_set(details, "advisory_ids", tcb.advisory_ids) == 0, CF_E_NO_MEMORY,
                          "json set failed");
    }
    memcpy(out->report_data, q.td.report_data, 64);
    memcpy(out->measurement, q.td.mrtd, CF_TDX_MR_LEN);
    out->measurement_len = CF_TDX_MR_LEN;
    out->debug = (q.td.td_attributes & CF_TDX_ATTR_DEBUG) != 0;
    snprintf(out->tcb, sizeof out->tcb, "%s", status_text);
    out->details = details;
    details = NULL;
out:
    json_decref(details);
    cf_tdx_tcb_result_free(&tcb);
    cf_tdx_collateral_free(&col);
    sk_X509_CRL_pop_free(all_crls, X509_CRL_free);
    sk_X509_CRL_pop_free(root_crls, X509_CRL_free);
    sk_X509_pop_free(pck_chain, X509_free);
    EVP_PKEY_free(att_key);
    EVP_PKEY_free(pck_key);
    return result;
}
