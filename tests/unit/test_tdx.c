/* test_tdx.c — the Intel TDX verifier against every real vector in
 * ../shared/vectors/intel-tdx (outcomes as SOURCES.md §3 states them), the
 * go-tdx-guest mutation negatives, exhaustive flips of the signed region,
 * truncation, every policy key, collateral tampering and the parsers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest/tdx_internal.h"
#include "confide/attest.h"
#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/tdx.h"
#include "test_helper.h"

#define V "intel-tdx/"

static int64_t at(const char *iso)
{
    int64_t t = 0;
    assert_cf_ok(tdx_parse_time(iso, &t));
    return t;
}

/* The TCB Signing chain Intel PCS hands out in a response header; the
 * go-tdx-guest / trustee files do not carry it, so take it from dcap-qvl. */
static void tcb_signing_chain(cf_buf *out)
{
    json_t *j = cf_test_load_json_vector(V "dcap-qvl/tdx_quote_v4_collateral.json");
    const char *pem = json_string_value(json_object_get(j, "tcb_info_issuer_chain"));
    assert_non_null(pem);
    cf_buf_init(out, 0);
    assert_cf_ok(cf_buf_append_cstr(out, pem));
    json_decref(j);
}

/* Assemble QuoteCollateralV3 from separate PCS files (NULL = absent). */
static void assemble(const char *tcbinfo, const char *qeid, const char *pck_crl, const char *root_crl, cf_buf *out)
{
    cf_buf tcb, qe, pcrl, rcrl, chain;
    cf_tdx_collateral_parts parts;
    memset(&parts, 0, sizeof parts);
    cf_buf_init(&pcrl, 0);
    cf_buf_init(&rcrl, 0);
    cf_test_read_file(tcbinfo, true, &tcb);
    cf_test_read_file(qeid, true, &qe);
    if (pck_crl != NULL) {
        cf_buf_free(&pcrl);
        cf_test_read_file(pck_crl, true, &pcrl);
    }
    if (root_crl != NULL) {
        cf_buf_free(&rcrl);
        cf_test_read_file(root_crl, true, &rcrl);
    }
    tcb_signing_chain(&chain);
    parts.tcb_info_body = cf_buf_slice(&tcb);
    parts.qe_identity_body = cf_buf_slice(&qe);
    parts.tcb_info_issuer_chain = cf_buf_slice(&chain);
    parts.pck_crl = cf_buf_slice(&pcrl);
    parts.root_ca_crl = cf_buf_slice(&rcrl);
    cf_buf_init(out, 0);
    assert_cf_ok(cf_tdx_collateral_assemble(&parts, out));
    cf_buf_free(&tcb);
    cf_buf_free(&qe);
    cf_buf_free(&pcrl);
    cf_buf_free(&rcrl);
    cf_buf_free(&chain);
}

/* The SPR E4 collateral from go-tdx-guest (2023-06). */
static void spr_collateral(cf_buf *out)
{
    assemble(V "go-tdx-guest/tcbinfo_fmspc_50806f000000_2023-06.json", V "go-tdx-guest/qe_identity_td_qe_2023-06.json",
             V "go-tdx-guest/pck_platform_crl_2023-06.der", V "go-tdx-guest/root_ca_crl_2023-04.der", out);
}

static cf_result verify_full(cf_slice quote, cf_slice collateral, const char *policy_json, int64_t now,
                             const uint8_t *expected_rd, cf_claims *claims)
{
    json_t *policy = NULL;
    if (policy_json != NULL) {
        json_error_t err;
        policy = json_loads(policy_json, 0, &err);
        assert_non_null(policy);
    }
    cf_verify_input in = {
        .platform = CF_PLATFORM_TDX,
        .evidence = quote,
        .collateral = collateral,
        .expected_report_data = expected_rd,
        .policy = policy,
        .now = now,
    };
    cf_result r = cf_attest_verify(&in, claims);
    json_decref(policy);
    return r;
}

static cf_result verify_files(const char *quote, cf_slice collateral, const char *policy, int64_t now)
{
    cf_buf q;
    cf_claims c;
    cf_test_read_file(quote, true, &q);
    cf_result r = verify_full(cf_buf_slice(&q), collateral, policy, now, NULL, &c);
    if (cf_is_ok(r)) {
        cf_claims_free(&c);
    }
    cf_buf_free(&q);
    return r;
}

static void assert_detail(const char *needle)
{
    const char *d = cf_error_last()->detail;
    if (strstr(d, needle) == NULL) {
        fail_msg("error detail \"%s\" lacks \"%s\"", d, needle);
    }
}

static const char *detail_str(const cf_claims *c, const char *key)
{
    const char *s = json_string_value(json_object_get(c->details, key));
    assert_non_null(s);
    return s;
}

/* ---- Real vectors: outcomes from SOURCES.md §3 ----------------------------- */

static void test_dcap_v4_up_to_date(void **state)
{
    (void)state;
    cf_buf q, col;
    cf_claims c;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v4.bin", true, &q);
    cf_test_read_file(V "dcap-qvl/tdx_quote_v4_collateral.json", true, &col);
    assert_cf_ok(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, at("2025-07-01T00:00:00Z"), NULL, &c));
    assert_string_equal(c.tcb, "UpToDate");
    assert_int_equal(c.platform, CF_PLATFORM_TDX);
    assert_false(c.debug);
    assert_int_equal(c.measurement_len, 48);
    cf_tdx_quote pq;
    assert_cf_ok(cf_tdx_quote_parse(cf_buf_slice(&q), &pq));
    assert_memory_equal(c.measurement, pq.td.mrtd, 48);
    assert_memory_equal(c.report_data, pq.td.report_data, 64);
    assert_int_equal(pq.trailing_len, 70);
    assert_string_equal(detail_str(&c, "fmspc"), "b0c06f000000");
    assert_string_equal(detail_str(&c, "td_attributes"), "0000001000000000");
    assert_string_equal(detail_str(&c, "xfam"), "e702060000000000");
    assert_string_equal(detail_str(&c, "platform_tcb_status"), "UpToDate");
    assert_string_equal(detail_str(&c, "tdx_module_tcb_status"), "UpToDate");
    assert_string_equal(detail_str(&c, "qe_tcb_status"), "UpToDate");
    assert_string_equal(detail_str(&c, "tdx_module_identity"), "TDX_01");
    assert_int_equal(json_array_size(json_object_get(c.details, "advisory_ids")), 0);
    assert_true(json_is_true(json_object_get(c.details, "crls_checked")));
    /* expected_report_data binding: right value passes, wrong one fails. */
    uint8_t rd[64];
    memcpy(rd, pq.td.report_data, 64);
    cf_claims c2;
    assert_cf_ok(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, at("2025-07-01T00:00:00Z"), rd, &c2));
    cf_claims_free(&c2);
    rd[63] ^= 1;
    assert_cf_error(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, at("2025-07-01T00:00:00Z"), rd, &c2),
                    CF_E_REPORT_DATA);
    /* The verification time is always explicit: zero is refused. */
    assert_cf_error(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, 0, NULL, &c2), CF_E_INVALID_ARGUMENT);
    /* Expired collateral without a time override (today). */
    assert_cf_error(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, at("2026-11-25T00:00:00Z"), NULL, &c2),
                    CF_E_EXPIRED);
    /* Just after the TCB info's nextUpdate, and just before its issueDate. */
    assert_cf_error(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, at("2025-07-19T10:20:00Z"), NULL, &c2),
                    CF_E_EXPIRED);
    assert_cf_error(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, at("2025-06-19T10:20:00Z"), NULL, &c2),
                    CF_E_EXPIRED);
    cf_claims_free(&c);
    cf_buf_free(&q);
    cf_buf_free(&col);
}

static void test_dcap_v5_tcb_not_supported(void **state)
{
    (void)state;
    cf_buf col;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v5_tcb_not_supported_collateral.json", true, &col);
    assert_cf_error(verify_files(V "dcap-qvl/tdx_quote_v5_tcb_not_supported.bin", cf_buf_slice(&col), NULL,
                                 at("2026-03-01T00:00:00Z")),
                    CF_E_TCB);
    assert_detail("TCB_NOT_SUPPORTED");
    /* Signatures, chain and CRLs are fine: chain-only mode accepts it. */
    assert_cf_ok(verify_files(V "dcap-qvl/tdx_quote_v5_tcb_not_supported.bin", cf_buf_slice(&col),
                              "{\"verification\":\"chain_only\"}", at("2026-03-01T00:00:00Z")));
    cf_buf_free(&col);
}

static void test_sgx_quote_rejected(void **state)
{
    (void)state;
    cf_buf col;
    cf_test_read_file(V "dcap-qvl/sgx_quote_v3_collateral.json", true, &col);
    assert_cf_error(verify_files(V "dcap-qvl/sgx_quote_v3.bin", cf_buf_slice(&col), NULL, at("2025-07-01T00:00:00Z")),
                    CF_E_UNSUPPORTED);
    assert_detail("tee_type 0x0");
    cf_buf_free(&col);
}

static void test_spr_e4_tcb_not_supported(void **state)
{
    (void)state;
    cf_buf col;
    spr_collateral(&col);
    int64_t t = at("2023-07-01T01:00:00Z");
    assert_cf_error(verify_files(V "go-tdx-guest/tdx_quote_v4_SPR_E4.bin", cf_buf_slice(&col), NULL, t), CF_E_TCB);
    assert_detail("TCB_NOT_SUPPORTED");
    /* Signatures, chain and CRLs OK; the default policy would then refuse
     * SEPT_VE_DISABLE=0, so chain-only needs that switched off. */
    assert_cf_error(verify_files(V "go-tdx-guest/tdx_quote_v4_SPR_E4.bin", cf_buf_slice(&col),
                                 "{\"verification\":\"chain_only\"}", t),
                    CF_E_POLICY);
    assert_detail("SEPT_VE_DISABLE");
    assert_cf_ok(verify_files(V "go-tdx-guest/tdx_quote_v4_SPR_E4.bin", cf_buf_slice(&col),
                              "{\"verification\":\"chain_only\",\"sept_ve_disable_required\":false}", t));
    cf_buf_free(&col);
}

static void test_go_tdx_guest_v5_up_to_date(void **state)
{
    (void)state;
    /* (a) go-tdx-guest's own TCB info, dcap-qvl v5's QE identity and CRLs. */
    json_t *dq = cf_test_load_json_vector(V "dcap-qvl/tdx_quote_v5_tcb_not_supported_collateral.json");
    cf_buf tcb, chain, qe_body, pcrl, rcrl, col;
    cf_test_read_file(V "go-tdx-guest/tcbinfo_fmspc_90c06f000000_2026-02.json", true, &tcb);
    tcb_signing_chain(&chain);
    cf_buf_init(&qe_body, 0);
    assert_cf_ok(cf_buf_appendf(&qe_body, "{\"enclaveIdentity\":%s,\"signature\":\"%s\"}",
                                json_string_value(json_object_get(dq, "qe_identity")),
                                json_string_value(json_object_get(dq, "qe_identity_signature"))));
    cf_buf_init(&pcrl, 0);
    cf_buf_init(&rcrl, 0);
    assert_cf_ok(cf_hex_decode(cf_slice_cstr(json_string_value(json_object_get(dq, "pck_crl"))), &pcrl));
    assert_cf_ok(cf_hex_decode(cf_slice_cstr(json_string_value(json_object_get(dq, "root_ca_crl"))), &rcrl));
    cf_tdx_collateral_parts parts = {
        .tcb_info_body = cf_buf_slice(&tcb),
        .qe_identity_body = cf_buf_slice(&qe_body),
        .tcb_info_issuer_chain = cf_buf_slice(&chain),
        .pck_crl = cf_buf_slice(&pcrl),
        .root_ca_crl = cf_buf_slice(&rcrl),
    };
    cf_buf_init(&col, 0);
    assert_cf_ok(cf_tdx_collateral_assemble(&parts, &col));
    cf_buf q;
    cf_claims c;
    cf_test_read_file(V "go-tdx-guest/tdx_quote_v5.bin", true, &q);
    assert_cf_ok(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, at("2026-03-01T00:00:00Z"), NULL, &c));
    assert_string_equal(c.tcb, "UpToDate");
    assert_string_equal(detail_str(&c, "td_report"), "TDX 1.5");
    assert_string_equal(detail_str(&c, "fmspc"), "90c06f000000");
    assert_non_null(json_object_get(c.details, "mrservicetd"));
    cf_claims_free(&c);
    /* (b) the dcap-qvl v5 collateral as is. */
    cf_buf col2;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v5_tcb_not_supported_collateral.json", true, &col2);
    assert_cf_ok(verify_full(cf_buf_slice(&q), cf_buf_slice(&col2), NULL, at("2026-03-01T00:00:00Z"), NULL, &c));
    assert_string_equal(c.tcb, "UpToDate");
    cf_claims_free(&c);
    cf_buf_free(&col2);
    cf_buf_free(&q);
    cf_buf_free(&col);
    cf_buf_free(&tcb);
    cf_buf_free(&chain);
    cf_buf_free(&qe_body);
    cf_buf_free(&pcrl);
    cf_buf_free(&rcrl);
    json_decref(dq);
}

static void test_gcp_padded_chain_only(void **state)
{
    (void)state;
    int64_t t = at("2025-01-01T00:00:00Z");
    cf_buf q;
    cf_test_read_file(V "go-tdx-guest/tdx_quote_v4_gcp_cos113_padded.bin", true, &q);
    cf_tdx_quote pq;
    assert_cf_ok(cf_tdx_quote_parse(cf_buf_slice(&q), &pq));
    assert_int_equal(pq.quote_len, 4935);
    assert_int_equal(pq.trailing_len, 3065);
    /* No TCB info for this FMSPC: full verification refuses ... */
    assert_cf_error(verify_files(V "go-tdx-guest/tdx_quote_v4_gcp_cos113_padded.bin", CF_SLICE_EMPTY,
                                 "{\"allow_missing_crls\":true}", t),
                    CF_E_TCB);
    /* ... without CRLs even chain-only refuses unless told ... */
    assert_cf_error(verify_files(V "go-tdx-guest/tdx_quote_v4_gcp_cos113_padded.bin", CF_SLICE_EMPTY,
                                 "{\"verification\":\"chain_only\"}", t),
                    CF_E_REVOKED);
    /* ... and signatures + chain verify when both are explicitly asked for. */
    cf_claims c;
    assert_cf_ok(verify_full(cf_buf_slice(&q), CF_SLICE_EMPTY,
                             "{\"verification\":\"chain_only\",\"allow_missing_crls\":true}", t, NULL, &c));
    assert_string_equal(detail_str(&c, "fmspc"), "00806f050000");
    assert_string_equal(detail_str(&c, "verification"), "chain_only");
    assert_int_equal(json_integer_value(json_object_get(c.details, "trailing_bytes_ignored")), 3065);
    cf_claims_free(&c);
    cf_buf_free(&q);
}

static void test_debug_td_rejected(void **state)
{
    (void)state;
    cf_buf col;
    spr_collateral(&col);
    int64_t t = at("2023-07-01T01:00:00Z");
    assert_cf_error(verify_files(V "trustee/tdx_quote_v4_debug_td.bin", cf_buf_slice(&col), NULL, t), CF_E_POLICY);
    assert_detail("debug");
    /* Everything else about it is fine: platform and QE UpToDate. */
    cf_buf q;
    cf_claims c;
    cf_test_read_file(V "trustee/tdx_quote_v4_debug_td.bin", true, &q);
    assert_cf_ok(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), "{\"debug_allowed\":true}", t, NULL, &c));
    assert_true(c.debug);
    assert_string_equal(c.tcb, "UpToDate");
    cf_claims_free(&c);
    cf_buf_free(&q);
    cf_buf_free(&col);
}

static void test_trustee_v5_tcb_not_supported(void **state)
{
    (void)state;
    cf_buf col;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v5_tcb_not_supported_collateral.json", true, &col);
    int64_t t = at("2026-03-01T00:00:00Z");
    assert_cf_error(verify_files(V "trustee/tdx_quote_v5.bin", cf_buf_slice(&col), NULL, t), CF_E_TCB);
    assert_detail("TCB_NOT_SUPPORTED");
    assert_detail("module TDX_01 OutOfDate");
    assert_cf_ok(verify_files(V "trustee/tdx_quote_v5.bin", cf_buf_slice(&col), "{\"verification\":\"chain_only\"}", t));
    cf_buf_free(&col);
}

static void test_trustee_granite_rapids_out_of_date(void **state)
{
    (void)state;
    cf_buf col;
    assemble(V "trustee/tcbinfo_fmspc_00a06d080000_2025-10.json", V "trustee/qe_identity_td_qe_2025-10.json", NULL,
             NULL, &col);
    int64_t t = at("2025-11-01T00:00:00Z");
    const char *quote = V "trustee/tdx_quote_v4_fmspc_00a06d080000.bin";
    /* No CRLs shipped: refused unless the policy allows it. */
    assert_cf_error(verify_files(quote, cf_buf_slice(&col), NULL, t), CF_E_REVOKED);
    /* Default policy accepts UpToDate only. */
    assert_cf_error(verify_files(quote, cf_buf_slice(&col), "{\"allow_missing_crls\":true}", t), CF_E_TCB);
    assert_detail("OutOfDate is not accepted");
    cf_buf q;
    cf_claims c;
    cf_test_read_file(quote, true, &q);
    assert_cf_ok(verify_full(cf_buf_slice(&q), cf_buf_slice(&col),
                             "{\"allow_missing_crls\":true,\"accepted_tcb_statuses\":[\"UpToDate\",\"OutOfDate\"]}", t,
                             NULL, &c));
    assert_string_equal(c.tcb, "OutOfDate");
    assert_string_equal(detail_str(&c, "platform_tcb_status"), "OutOfDate");
    assert_string_equal(detail_str(&c, "tdx_module_identity"), "TDX_03");
    assert_string_equal(detail_str(&c, "tdx_module_tcb_status"), "UpToDate");
    assert_string_equal(detail_str(&c, "qe_tcb_status"), "UpToDate");
    assert_int_equal(json_integer_value(json_object_get(c.details, "pck_pcesvn")), 11);
    /* The 2018 level of this TCB info carries no advisory IDs. */
    assert_int_equal(json_array_size(json_object_get(c.details, "advisory_ids")), 0);
    assert_string_equal(detail_str(&c, "tcb_date"), "2018-01-04T00:00:00Z");
    assert_string_equal(detail_str(&c, "fmspc"), "00a06d080000");
    cf_claims_free(&c);
    /* Outside the collateral window it is expired. */
    assert_cf_error(verify_files(quote, cf_buf_slice(&col), "{\"allow_missing_crls\":true}", at("2025-12-01T00:00:00Z")),
                    CF_E_EXPIRED);
    cf_buf_free(&q);
    cf_buf_free(&col);
}

static void test_azure_strict_attributes(void **state)
{
    (void)state;
    int64_t t = at("2025-01-01T00:00:00Z");
    const char *quote = V "trustee/tdx_quote_v4_azure.bin";
    assert_cf_error(verify_files(quote, CF_SLICE_EMPTY, "{\"verification\":\"chain_only\",\"allow_missing_crls\":true}", t),
                    CF_E_POLICY);
    assert_detail("SEPT_VE_DISABLE");
    assert_cf_ok(verify_files(quote, CF_SLICE_EMPTY,
                              "{\"verification\":\"chain_only\",\"allow_missing_crls\":true,"
                              "\"sept_ve_disable_required\":false}",
                              t));
}

/* ---- Mutation negatives (go-tdx-guest TestNegativeVerification) ----------- */

static cf_result verify_spr_mutated(size_t off, int xor_or_set, bool set, int64_t t, const cf_buf *col)
{
    cf_buf q;
    cf_test_read_file(V "go-tdx-guest/tdx_quote_v4_SPR_E4.bin", true, &q);
    assert_true(off < q.len);
    if (set) {
        q.data[off] = (uint8_t)xor_or_set;
    } else {
        q.data[off] ^= (uint8_t)xor_or_set;
    }
    cf_claims c;
    cf_result r = verify_full(cf_buf_slice(&q), cf_buf_slice(col),
                              "{\"verification\":\"chain_only\",\"sept_ve_disable_required\":false}", t, NULL, &c);
    if (cf_is_ok(r)) {
        cf_claims_free(&c);
    }
    cf_buf_free(&q);
    return r;
}

static void test_spr_mutation_negatives(void **state)
{
    (void)state;
    cf_buf col;
    spr_collateral(&col);
    int64_t t = at("2023-07-01T01:00:00Z");
    assert_cf_error(verify_spr_mutated(0x00, 3, true, t, &col), CF_E_UNSUPPORTED);
    assert_detail("unsupported version 3");
    assert_cf_error(verify_spr_mutated(0x278, 0x10, true, t, &col), CF_E_MALFORMED);
    assert_detail("certification data size mismatch");
    assert_cf_error(verify_spr_mutated(0x1343, 1, false, t, &col), CF_E_CERT);
    assert_detail("broken PEM certificate chain");
    /* The root inside the quote no longer is the pinned root. */
    assert_cf_error(verify_spr_mutated(0x1329, 1, false, t, &col), CF_E_CERT);
    assert_detail("pinned Intel SGX Root CA");
    assert_cf_error(verify_spr_mutated(0xF5F, 1, false, t, &col), CF_E_BAD_SIGNATURE);
    assert_detail("depth 1: certificate signature failure");
    assert_cf_error(verify_spr_mutated(0xB77, 1, false, t, &col), CF_E_BAD_SIGNATURE);
    assert_detail("depth 0: certificate signature failure");
    assert_cf_error(verify_spr_mutated(0x1E, 1, false, t, &col), CF_E_BAD_SIGNATURE);
    assert_detail("quote signature");
    assert_cf_error(verify_spr_mutated(0x3C, 1, false, t, &col), CF_E_BAD_SIGNATURE);
    assert_detail("quote signature");
    /* Unmutated at 2053: the PCK certificate (and CRLs) have expired. */
    assert_cf_error(verify_spr_mutated(0x1000, 0, false, at("2053-07-01T00:00:00Z"), &col), CF_E_EXPIRED);
    /* The trailer ("extra bytes...") is not part of the quote. */
    assert_cf_ok(verify_spr_mutated(4935, 0xff, false, t, &col));
    cf_buf_free(&col);
}

/* Every single-byte flip of header||body must fail, for v4 and v5. */
static void flip_all(const char *quote, const char *collateral, int64_t t)
{
    cf_buf q, col;
    cf_test_read_file(quote, true, &q);
    cf_test_read_file(collateral, true, &col);
    cf_tdx_quote pq;
    assert_cf_ok(cf_tdx_quote_parse(cf_buf_slice(&q), &pq));
    size_t n = pq.signed_region.len;
    size_t step = cf_test_under_valgrind() ? 37 : 1;
    size_t failures = 0, tried = 0;
    for (size_t i = 0; i < n; i += step) {
        for (int bit = 0; bit < 8; bit += 7) {
            q.data[i] ^= (uint8_t)(1u << bit);
            cf_claims c;
            cf_result r = verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, t, NULL, &c);
            tried++;
            if (cf_is_ok(r)) {
                cf_claims_free(&c);
                fail_msg("flip of bit %d at offset %zu was accepted", bit, i);
            }
            failures++;
            q.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(failures, tried);
    cf_claims c;
    assert_cf_ok(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), NULL, t, NULL, &c));
    cf_claims_free(&c);
    cf_buf_free(&q);
    cf_buf_free(&col);
}

static void test_every_signed_byte_flip_fails(void **state)
{
    (void)state;
    flip_all(V "dcap-qvl/tdx_quote_v4.bin", V "dcap-qvl/tdx_quote_v4_collateral.json", at("2025-07-01T00:00:00Z"));
    flip_all(V "go-tdx-guest/tdx_quote_v5.bin", V "dcap-qvl/tdx_quote_v5_tcb_not_supported_collateral.json",
             at("2026-03-01T00:00:00Z"));
}

static void test_truncated_quotes_fail(void **state)
{
    (void)state;
    cf_buf q;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v4.bin", true, &q);
    cf_tdx_quote pq;
    assert_cf_ok(cf_tdx_quote_parse(cf_buf_slice(&q), &pq));
    for (size_t len = 0; len < pq.quote_len; len++) {
        cf_tdx_quote t;
        if (cf_is_ok(cf_tdx_quote_parse(cf_slice_make(q.data, len), &t))) {
            fail_msg("truncated quote of %zu bytes parsed", len);
        }
    }
    assert_cf_ok(cf_tdx_quote_parse(cf_slice_make(q.data, pq.quote_len), &pq));
    assert_int_equal(pq.trailing_len, 0);
    cf_buf_free(&q);
}

/* ---- Policy keys ----------------------------------------------------------- */

static cf_result verify_v4_policy(const char *policy)
{
    cf_buf col;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v4_collateral.json", true, &col);
    cf_result r = verify_files(V "dcap-qvl/tdx_quote_v4.bin", cf_buf_slice(&col), policy, at("2025-07-01T00:00:00Z"));
    cf_buf_free(&col);
    return r;
}

static void hex48(const uint8_t *p, char out[97])
{
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(p, 48), out, 97));
}

static void test_policy_each_field(void **state)
{
    (void)state;
    cf_buf q;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v4.bin", true, &q);
    cf_tdx_quote pq;
    assert_cf_ok(cf_tdx_quote_parse(cf_buf_slice(&q), &pq));
    const struct {
        const char *key;
        const uint8_t *value;
    } mrs[] = {
        {"mrtd", pq.td.mrtd},           {"mrseam", pq.td.mrseam},   {"mrconfigid", pq.td.mrconfigid},
        {"mrowner", pq.td.mrowner},     {"mrownerconfig", pq.td.mrownerconfig}, {"rtmr0", pq.td.rtmr[0]},
        {"rtmr1", pq.td.rtmr[1]},       {"rtmr2", pq.td.rtmr[2]},   {"rtmr3", pq.td.rtmr[3]},
        {"mrservicetd", pq.td.mrservicetd}, /* TD 1.0: compared as zero */
    };
    char good[97], bad[97], policy[512];
    for (size_t i = 0; i < sizeof mrs / sizeof mrs[0]; i++) {
        hex48(mrs[i].value, good);
        memcpy(bad, good, sizeof bad);
        bad[0] = bad[0] == '0' ? '1' : '0';
        snprintf(policy, sizeof policy, "{\"%s\":\"%s\"}", mrs[i].key, good);
        assert_cf_ok(verify_v4_policy(policy));
        snprintf(policy, sizeof policy, "{\"%s\":[\"%s\",\"%s\"]}", mrs[i].key, bad, good);
        assert_cf_ok(verify_v4_policy(policy));
        snprintf(policy, sizeof policy, "{\"%s\":\"%s\"}", mrs[i].key, bad);
        assert_cf_error(verify_v4_policy(policy), CF_E_POLICY);
        assert_detail(mrs[i].key);
    }
    assert_cf_ok(verify_v4_policy("{\"xfam\":\"e702060000000000\"}"));
    assert_cf_error(verify_v4_policy("{\"xfam\":\"e703060000000000\"}"), CF_E_POLICY);
    char rd[129];
    assert_cf_ok(cf_hex_encode_str(cf_slice_make(pq.td.report_data, 64), rd, sizeof rd));
    snprintf(policy, sizeof policy, "{\"report_data\":\"%s\"}", rd);
    assert_cf_ok(verify_v4_policy(policy));
    rd[0] = rd[0] == 'a' ? 'b' : 'a';
    snprintf(policy, sizeof policy, "{\"report_data\":\"%s\"}", rd);
    assert_cf_error(verify_v4_policy(policy), CF_E_REPORT_DATA);
    assert_cf_ok(verify_v4_policy("{\"accepted_tcb_statuses\":[\"UpToDate\"]}"));
    assert_cf_error(verify_v4_policy("{\"accepted_tcb_statuses\":[\"OutOfDate\",\"SWHardeningNeeded\"]}"), CF_E_TCB);
    assert_cf_ok(verify_v4_policy("{\"debug_allowed\":false,\"sept_ve_disable_required\":true,"
                                  "\"reserved_attributes_zero\":true,\"verification\":\"full\","
                                  "\"allow_missing_crls\":false}"));
    cf_buf_free(&q);
}

static void test_policy_validate_names_field(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *field;
    } bad[] = {
        {"{\"mrtdd\":\"00\"}", "mrtdd"},
        {"{\"mrtd\":\"00\"}", "mrtd"},
        {"{\"rtmr2\":[]}", "rtmr2"},
        {"{\"xfam\":\"e7020600\"}", "xfam"},
        {"{\"report_data\":\"zz\"}", "report_data"},
        {"{\"accepted_tcb_statuses\":[\"Fine\"]}", "accepted_tcb_statuses"},
        {"{\"accepted_tcb_statuses\":[]}", "accepted_tcb_statuses"},
        /* A revoked TCB can never be accepted. */
        {"{\"accepted_tcb_statuses\":[\"UpToDate\",\"Revoked\"]}", "accepted_tcb_statuses"},
        {"{\"debug_allowed\":\"no\"}", "debug_allowed"},
        {"{\"verification\":\"none\"}", "verification"},
        {"{\"allow_missing_crls\":1}", "allow_missing_crls"},
        {"{\"sept_ve_disable_required\":null}", "sept_ve_disable_required"},
        {"{\"reserved_attributes_zero\":0}", "reserved_attributes_zero"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_error_t err;
        json_t *p = json_loads(bad[i].json, 0, &err);
        assert_non_null(p);
        assert_cf_error(cf_attest_policy_validate(CF_PLATFORM_TDX, p), CF_E_CONFIG);
        assert_detail(bad[i].field);
        json_decref(p);
    }
    json_t *arr = json_array();
    assert_cf_error(cf_tdx_policy_validate(arr), CF_E_CONFIG);
    json_decref(arr);
    assert_cf_ok(cf_tdx_policy_validate(NULL));
}

static cf_result validate_manifest_policy(const char *policy_json)
{
    json_t *p = json_loads(policy_json, 0, NULL);
    assert_non_null(p);
    /* Every such policy is fine for a one-off `confide verify --policy`. */
    assert_cf_ok(cf_attest_policy_validate_for(CF_PLATFORM_TDX, p, CF_POLICY_USE_OFFLINE));
    cf_result r = cf_attest_policy_validate_for(CF_PLATFORM_TDX, p, CF_POLICY_USE_MANIFEST);
    json_decref(p);
    return r;
}

/* A manifest's tdx policy must pin MRTD and RTMR0..2; the error lists each
 * missing register. The fully pinned policy accepts the real v4 quote. */
static void test_manifest_policy_pins_workload(void **state)
{
    (void)state;
    cf_buf q;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v4.bin", true, &q);
    cf_tdx_quote pq;
    assert_cf_ok(cf_tdx_quote_parse(cf_buf_slice(&q), &pq));
    char mrtd[97], r0[97], r1[97], r2[97], pol[1024];
    hex48(pq.td.mrtd, mrtd);
    hex48(pq.td.rtmr[0], r0);
    hex48(pq.td.rtmr[1], r1);
    hex48(pq.td.rtmr[2], r2);

    snprintf(pol, sizeof pol, "{\"mrtd\":\"%s\",\"rtmr0\":[\"%s\"],\"rtmr1\":\"%s\",\"rtmr2\":\"%s\"}", mrtd, r0, r1,
             r2);
    assert_cf_ok(validate_manifest_policy(pol));
    assert_cf_ok(verify_v4_policy(pol));

    const struct {
        const char *fmt; /* %s = a valid register value, used for each pin */
        const char *missing;
    } cases[] = {
        {"{}", "missing mrtd, rtmr0, rtmr1, rtmr2"},
        {"{\"verification\":\"full\",\"debug_allowed\":false}", "missing mrtd, rtmr0, rtmr1, rtmr2"},
        {"{\"mrtd\":\"%s\"}", "missing rtmr0, rtmr1, rtmr2"},
        {"{\"mrtd\":\"%s\",\"rtmr0\":\"%s\",\"rtmr1\":\"%s\"}", "missing rtmr2"},
        {"{\"mrtd\":\"%s\",\"rtmr1\":\"%s\",\"rtmr2\":\"%s\",\"rtmr3\":\"%s\"}", "missing rtmr0"},
        {"{\"rtmr0\":\"%s\",\"rtmr1\":\"%s\",\"rtmr2\":\"%s\",\"mrconfigid\":\"%s\"}", "missing mrtd"},
        {"{\"insecure_allow_any_workload\":false,\"mrtd\":\"%s\",\"rtmr2\":\"%s\"}", "missing rtmr0, rtmr1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* Replace each %s with MRTD's hex: the check is on presence only. */
        cf_buf b;
        cf_buf_init(&b, 0);
        for (const char *c = cases[i].fmt; *c != '\0';) {
            if (c[0] == '%' && c[1] == 's') {
                assert_cf_ok(cf_buf_append_cstr(&b, mrtd));
                c += 2;
            } else {
                assert_cf_ok(cf_buf_append_u8(&b, (uint8_t)*c++));
            }
        }
        const char *text;
        assert_cf_ok(cf_buf_cstr(&b, &text));
        assert_cf_error(validate_manifest_policy(text), CF_E_CONFIG);
        assert_detail(cases[i].missing);
        assert_detail("\"insecure_allow_any_workload\": true");
        cf_buf_free(&b);
    }

    /* The explicit opt-out: accepted by a manifest, flagged, and it changes
     * nothing the verifier checks. */
    assert_cf_ok(validate_manifest_policy("{\"insecure_allow_any_workload\":true}"));
    assert_cf_ok(verify_v4_policy("{\"insecure_allow_any_workload\":true}"));
    char wrong[97];
    memcpy(wrong, r1, sizeof wrong);
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    snprintf(pol, sizeof pol, "{\"insecure_allow_any_workload\":true,\"rtmr1\":\"%s\"}", wrong);
    assert_cf_error(verify_v4_policy(pol), CF_E_POLICY);
    assert_detail("rtmr1");
    json_t *p = json_loads("{\"insecure_allow_any_workload\":1}", 0, NULL);
    assert_cf_error(cf_tdx_policy_validate(p), CF_E_CONFIG);
    assert_detail("insecure_allow_any_workload");
    json_decref(p);
    assert_cf_error(cf_attest_policy_validate_for(CF_PLATFORM_TDX, NULL, CF_POLICY_USE_MANIFEST), CF_E_CONFIG);
    cf_buf_free(&q);
}

static void test_policy_td_attributes(void **state)
{
    (void)state;
    cf_tdx_td_report td;
    memset(&td, 0, sizeof td);
    json_error_t err;
    json_t *relaxed = json_loads("{\"debug_allowed\":true,\"sept_ve_disable_required\":false,"
                                 "\"reserved_attributes_zero\":false}",
                                 0, &err);
    json_t *no_sept = json_loads("{\"sept_ve_disable_required\":false}", 0, &err);
    json_t *no_reserved = json_loads("{\"reserved_attributes_zero\":false}", 0, &err);
    json_t *debug_ok = json_loads("{\"debug_allowed\":true}", 0, &err);
    assert_non_null(relaxed);
    /* Defaults: SEPT_VE_DISABLE required. */
    assert_cf_error(tdx_policy_apply(NULL, &td, NULL), CF_E_POLICY);
    assert_detail("SEPT_VE_DISABLE");
    assert_cf_ok(tdx_policy_apply(no_sept, &td, NULL));
    td.td_attributes = CF_TDX_ATTR_SEPT_VE_DISABLE | CF_TDX_ATTR_PKS | CF_TDX_ATTR_PERFMON;
    assert_cf_ok(tdx_policy_apply(NULL, &td, NULL));
    /* DEBUG refused unless allowed. */
    td.td_attributes |= CF_TDX_ATTR_DEBUG;
    assert_cf_error(tdx_policy_apply(NULL, &td, NULL), CF_E_POLICY);
    assert_detail("debug");
    assert_cf_ok(tdx_policy_apply(debug_ok, &td, NULL));
    /* Every reserved bit refused unless switched off. */
    for (unsigned bit = 0; bit < 64; bit++) {
        uint64_t b = 1ull << bit;
        if (b & CF_TDX_ATTR_KNOWN) {
            continue;
        }
        td.td_attributes = CF_TDX_ATTR_SEPT_VE_DISABLE | b;
        assert_cf_error(tdx_policy_apply(NULL, &td, NULL), CF_E_POLICY);
        assert_detail("reserved");
        assert_cf_ok(tdx_policy_apply(no_reserved, &td, NULL));
    }
    td.td_attributes = ~0ull;
    assert_cf_ok(tdx_policy_apply(relaxed, &td, NULL));
    json_decref(relaxed);
    json_decref(no_sept);
    json_decref(no_reserved);
    json_decref(debug_ok);
}

/* ---- Collateral ------------------------------------------------------------- */

static cf_result verify_v4_with_collateral_edit(const char *key, const char *from, const char *to)
{
    json_t *j = cf_test_load_json_vector(V "dcap-qvl/tdx_quote_v4_collateral.json");
    const char *s = json_string_value(json_object_get(j, key));
    assert_non_null(s);
    char *copy = strdup(s);
    char *p = strstr(copy, from);
    assert_non_null(p);
    assert_int_equal(strlen(from), strlen(to));
    memcpy(p, to, strlen(to));
    json_object_set_new(j, key, json_string(copy));
    free(copy);
    char *text = json_dumps(j, JSON_COMPACT);
    cf_result r = verify_files(V "dcap-qvl/tdx_quote_v4.bin", cf_slice_cstr(text), NULL, at("2025-07-01T00:00:00Z"));
    free(text);
    json_decref(j);
    return r;
}

static void test_collateral_tampering(void **state)
{
    (void)state;
    /* One changed byte inside the signed tcbInfo / enclaveIdentity. */
    assert_cf_error(verify_v4_with_collateral_edit("tcb_info", "\"tcbStatus\":\"OutOfDate\"", "\"tcbStatus\":\"UpToDate \""),
                    CF_E_MALFORMED);
    assert_cf_error(verify_v4_with_collateral_edit("tcb_info", "\"pcesvn\":11", "\"pcesvn\":10"), CF_E_BAD_SIGNATURE);
    assert_detail("TCB info");
    assert_cf_error(verify_v4_with_collateral_edit("qe_identity", "\"isvsvn\":4", "\"isvsvn\":3"), CF_E_BAD_SIGNATURE);
    assert_detail("QE identity");
    assert_cf_error(verify_v4_with_collateral_edit("tcb_info_signature", "0", "1"), CF_E_BAD_SIGNATURE);
    assert_cf_error(verify_v4_with_collateral_edit("qe_identity_signature", "d", "e"), CF_E_BAD_SIGNATURE);
    /* A collateral signer that is not Intel's TCB Signing certificate (here
     * the PCK chain of the quote itself) is refused. */
    {
        cf_buf q;
        cf_test_read_file(V "dcap-qvl/tdx_quote_v4.bin", true, &q);
        cf_tdx_quote pq;
        assert_cf_ok(cf_tdx_quote_parse(cf_buf_slice(&q), &pq));
        json_t *jj = cf_test_load_json_vector(V "dcap-qvl/tdx_quote_v4_collateral.json");
        json_object_set_new(jj, "tcb_info_issuer_chain",
                            json_stringn((const char *)pq.pck_chain_pem.ptr, pq.pck_chain_pem.len - 1));
        char *t2 = json_dumps(jj, JSON_COMPACT);
        assert_cf_error(verify_files(V "dcap-qvl/tdx_quote_v4.bin", cf_slice_cstr(t2), NULL, at("2025-07-01T00:00:00Z")),
                        CF_E_CERT);
        assert_detail("TCB Signing");
        free(t2);
        json_decref(jj);
        cf_buf_free(&q);
    }
    /* Wrong FMSPC: the v5 collateral (90C06F) for the v4 quote (B0C06F). */
    cf_buf col;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v5_tcb_not_supported_collateral.json", true, &col);
    assert_cf_error(verify_files(V "dcap-qvl/tdx_quote_v4.bin", cf_buf_slice(&col), NULL, at("2026-03-01T00:00:00Z")),
                    CF_E_TCB);
    assert_detail("FMSPC");
    cf_buf_free(&col);
    /* Only one of the two CRLs. */
    json_t *j = cf_test_load_json_vector(V "dcap-qvl/tdx_quote_v4_collateral.json");
    json_object_del(j, "pck_crl");
    char *text = json_dumps(j, JSON_COMPACT);
    assert_cf_error(verify_files(V "dcap-qvl/tdx_quote_v4.bin", cf_slice_cstr(text), NULL, at("2025-07-01T00:00:00Z")),
                    CF_E_MALFORMED);
    free(text);
    json_decref(j);
    /* Not JSON, not an object, bad signature hex. */
    cf_tdx_collateral c;
    assert_cf_error(cf_tdx_collateral_parse(cf_slice_cstr("{"), &c), CF_E_MALFORMED);
    assert_cf_error(cf_tdx_collateral_parse(cf_slice_cstr("[]"), &c), CF_E_MALFORMED);
    assert_cf_error(cf_tdx_collateral_parse(cf_slice_cstr("{\"tcb_info\":\"{}\"}"), &c), CF_E_MALFORMED);
}

static void test_json_member_span(void **state)
{
    (void)state;
    cf_slice s;
    const char *doc = " {\"a\" : [1, {\"x\":\"}\\\"\"}], \"tcbInfo\":{\"k\":\"v\\u0041\",\"n\":[[]]} ,\"z\":null}\n";
    assert_cf_ok(cf_tdx_json_member_span(cf_slice_cstr(doc), "tcbInfo", &s));
    assert_true(cf_slice_eq_cstr(s, "{\"k\":\"v\\u0041\",\"n\":[[]]}"));
    assert_cf_ok(cf_tdx_json_member_span(cf_slice_cstr(doc), "z", &s));
    assert_true(cf_slice_eq_cstr(s, "null"));
    assert_cf_error(cf_tdx_json_member_span(cf_slice_cstr(doc), "x", &s), CF_E_NOT_FOUND);
    assert_cf_error(cf_tdx_json_member_span(cf_slice_cstr("{\"a\":1,\"a\":2}"), "a", &s), CF_E_DUPLICATE_KEY);
    assert_cf_error(cf_tdx_json_member_span(cf_slice_cstr("{\"a\":1} x"), "a", &s), CF_E_MALFORMED);
    assert_cf_error(cf_tdx_json_member_span(cf_slice_cstr("{\"a\":\"\x01\"}"), "a", &s), CF_E_MALFORMED);
    assert_cf_error(cf_tdx_json_member_span(cf_slice_cstr("{\"a\":{\"b\":1}"), "a", &s), CF_E_MALFORMED);
    char deep[200];
    memset(deep, '[', sizeof deep);
    memcpy(deep, "{\"a\":", 5);
    deep[sizeof deep - 1] = 0;
    assert_cf_error(cf_tdx_json_member_span(cf_slice_cstr(deep), "a", &s), CF_E_TOO_DEEP);
    /* The real PCS body: the span is exactly what Intel signed. */
    cf_buf body;
    cf_test_read_file(V "go-tdx-guest/qe_identity_td_qe_2023-06.json", true, &body);
    assert_cf_ok(cf_tdx_json_member_span(cf_buf_slice(&body), "enclaveIdentity", &s));
    assert_int_equal(s.ptr[0], '{');
    assert_int_equal(s.ptr[s.len - 1], '}');
    assert_true(s.ptr + s.len + 1 < body.data + body.len && s.ptr[s.len] == ',');
    cf_tdx_qe_identity qe;
    assert_cf_ok(cf_tdx_qe_identity_parse(s, &qe));
    assert_int_equal(qe.isvprodid, 2);
    assert_int_equal(qe.n_levels, 1);
    assert_int_equal(qe.levels[0].isvsvn, 4);
    cf_tdx_qe_identity_free(&qe);
    cf_buf_free(&body);
}

/* `confide verify` with several files: classify, assemble, verify. */
static void test_collateral_classify_files(void **state)
{
    (void)state;
    static const char *const files[] = {
        V "go-tdx-guest/root_ca_crl_2023-04.der",
        V "go-tdx-guest/qe_identity_td_qe_2023-06.json",
        V "go-tdx-guest/pck_platform_crl_2023-06.der",
        V "go-tdx-guest/tcbinfo_fmspc_50806f000000_2023-06.json",
    };
    cf_buf bufs[4], chain, col, dup;
    cf_tdx_collateral_parts parts;
    memset(&parts, 0, sizeof parts);
    for (size_t i = 0; i < 4; i++) {
        cf_test_read_file(files[i], true, &bufs[i]);
        assert_cf_ok(cf_tdx_collateral_classify(cf_buf_slice(&bufs[i]), &parts));
    }
    tcb_signing_chain(&chain);
    assert_cf_ok(cf_tdx_collateral_classify(cf_buf_slice(&chain), &parts));
    assert_true(parts.root_ca_crl.ptr == bufs[0].data);
    assert_true(parts.qe_identity_body.ptr == bufs[1].data);
    assert_true(parts.pck_crl.ptr == bufs[2].data);
    assert_true(parts.tcb_info_body.ptr == bufs[3].data);
    assert_true(parts.tcb_info_issuer_chain.ptr == chain.data);
    /* A second file for the same slot is refused; junk is refused. */
    cf_test_read_file(files[2], true, &dup);
    assert_cf_error(cf_tdx_collateral_classify(cf_buf_slice(&dup), &parts), CF_E_INVALID_ARGUMENT);
    assert_cf_error(cf_tdx_collateral_classify(cf_slice_cstr("{\"x\":1}"), &parts), CF_E_MALFORMED);
    assert_cf_error(cf_tdx_collateral_classify(cf_slice_cstr("hello"), &parts), CF_E_MALFORMED);
    cf_buf_init(&col, 0);
    assert_cf_ok(cf_tdx_collateral_assemble(&parts, &col));
    cf_claims c;
    cf_buf q;
    cf_test_read_file(V "trustee/tdx_quote_v4_debug_td.bin", true, &q);
    assert_cf_ok(verify_full(cf_buf_slice(&q), cf_buf_slice(&col), "{\"debug_allowed\":true}",
                             at("2023-07-01T01:00:00Z"), NULL, &c));
    assert_string_equal(c.tcb, "UpToDate");
    cf_claims_free(&c);
    cf_buf_free(&q);
    cf_buf_free(&col);
    cf_buf_free(&dup);
    cf_buf_free(&chain);
    for (size_t i = 0; i < 4; i++) {
        cf_buf_free(&bufs[i]);
    }
}

/* ---- PCK extension and TCB matching ------------------------------------------ */

static void test_pck_extension_and_tcb_rules(void **state)
{
    (void)state;
    cf_buf q, col;
    cf_test_read_file(V "dcap-qvl/tdx_quote_v4.bin", true, &q);
    cf_test_read_file(V "dcap-qvl/tdx_quote_v4_collateral.json", true, &col);
    cf_tdx_quote pq;
    assert_cf_ok(cf_tdx_quote_parse(cf_buf_slice(&q), &pq));
    STACK_OF(X509) *chain = NULL;
    assert_cf_ok(tdx_load_pem_chain(pq.pck_chain_pem, &chain));
    assert_int_equal(sk_X509_num(chain), 3);
    X509 *leaf = sk_X509_value(chain, 0);
    ASN1_OBJECT *oid = OBJ_txt2obj(CF_TDX_PCK_EXT_OID, 1);
    int idx = X509_get_ext_by_OBJ(leaf, oid, -1);
    ASN1_OBJECT_free(oid);
    assert_true(idx >= 0);
    ASN1_OCTET_STRING *d = X509_EXTENSION_get_data(X509_get_ext(leaf, idx));
    cf_slice der = cf_slice_make(ASN1_STRING_get0_data(d), (size_t)ASN1_STRING_length(d));
    cf_tdx_pck_ext ext;
    assert_cf_ok(cf_tdx_pck_ext_parse(der, &ext));
    static const uint8_t fmspc[6] = {0xb0, 0xc0, 0x6f, 0x00, 0x00, 0x00};
    assert_memory_equal(ext.fmspc, fmspc, 6);
    /* Every truncation of the extension fails. */
    for (size_t n = 0; n < der.len; n++) {
        cf_tdx_pck_ext e2;
        if (cf_is_ok(cf_tdx_pck_ext_parse(cf_slice_make(der.ptr, n), &e2))) {
            fail_msg("truncated PCK extension of %zu bytes parsed", n);
        }
    }
    /* The chain verifies at an explicit time; time 0 is refused even where
     * notBefore would be waived (the TCB Signing exception). */
    assert_cf_ok(tdx_verify_intel_chain(chain, NULL, TDX_CRL_NONE, at("2025-07-01T00:00:00Z"), false, "PCK chain"));
    assert_cf_error(tdx_verify_intel_chain(chain, NULL, TDX_CRL_NONE, 0, true, "PCK chain"), CF_E_INVALID_ARGUMENT);
    sk_X509_pop_free(chain, X509_free);

    cf_tdx_collateral c;
    assert_cf_ok(cf_tdx_collateral_parse(cf_buf_slice(&col), &c));
    cf_tdx_tcb_result r;
    assert_cf_ok(cf_tdx_tcb_evaluate(&pq, &ext, c.tcb_info, c.qe_identity, &r));
    assert_int_equal(r.final, CF_TDX_TCB_UP_TO_DATE);
    cf_tdx_tcb_result_free(&r);
    /* Lower an SGX component below every level: TCB_NOT_SUPPORTED. */
    cf_tdx_pck_ext low = ext;
    memset(low.sgx_comp_svn, 0, 16);
    assert_cf_ok(cf_tdx_tcb_evaluate(&pq, &low, c.tcb_info, c.qe_identity, &r));
    assert_int_equal(r.final, CF_TDX_TCB_NOT_SUPPORTED);
    cf_tdx_tcb_result_free(&r);
    /* tee_tcb_svn[1] > 0: indices 0 and 1 are not compared with tcbLevels
     * (they belong to the module identity), so a low [0] only moves the
     * module level: TDX_01 with isvsvn 0 matches no module level. */
    cf_tdx_quote low_mod = pq;
    low_mod.td.tee_tcb_svn[0] = 0;
    assert_cf_ok(cf_tdx_tcb_evaluate(&low_mod, &ext, c.tcb_info, c.qe_identity, &r));
    assert_int_equal(r.platform, CF_TDX_TCB_UP_TO_DATE);
    assert_string_equal(r.module_id, "TDX_01");
    assert_true(r.module != CF_TDX_TCB_UP_TO_DATE);
    cf_tdx_tcb_result_free(&r);
    /* An unknown module identity is a mismatch. */
    low_mod = pq;
    low_mod.td.tee_tcb_svn[1] = 0x7f;
    assert_cf_error(cf_tdx_tcb_evaluate(&low_mod, &ext, c.tcb_info, c.qe_identity, &r), CF_E_TCB);
    assert_detail("TDX_7F");
    /* Without an applicable module identity, tdxModule's signer is checked. */
    low_mod = pq;
    low_mod.td.tee_tcb_svn[1] = 0;
    low_mod.td.mrsignerseam[0] ^= 1;
    assert_cf_error(cf_tdx_tcb_evaluate(&low_mod, &ext, c.tcb_info, c.qe_identity, &r), CF_E_TCB);
    assert_detail("tdxModule.mrsigner");
    c.tcb_info->has_module = false;
    low_mod.td.mrsignerseam[0] ^= 1;
    assert_cf_error(cf_tdx_tcb_evaluate(&low_mod, &ext, c.tcb_info, c.qe_identity, &r), CF_E_TCB);
    assert_detail("no tdxModule");
    c.tcb_info->has_module = true;
    /* A TCB info without tdxModule does not parse. */
    {
        json_t *j = cf_test_load_json_vector(V "dcap-qvl/tdx_quote_v4_collateral.json");
        char *raw = strdup(json_string_value(json_object_get(j, "tcb_info")));
        char *p = strstr(raw, "\"tdxModule\":");
        assert_non_null(p);
        memcpy(p, "\"tdxModulX\":", 12);
        cf_tdx_tcb_info ti;
        assert_cf_error(cf_tdx_tcb_info_parse(cf_slice_cstr(raw), &ti), CF_E_MALFORMED);
        assert_detail("tdxModule");
        free(raw);
        json_decref(j);
    }
    /* QE identity mismatch (MRSIGNER). */
    low_mod = pq;
    low_mod.qe_report.mrsigner[0] ^= 1;
    assert_cf_error(cf_tdx_tcb_evaluate(&low_mod, &ext, c.tcb_info, c.qe_identity, &r), CF_E_TCB);
    /* An older QE (isvsvn below every level) is not supported. */
    low_mod = pq;
    low_mod.qe_report.isvsvn = 0;
    assert_cf_ok(cf_tdx_tcb_evaluate(&low_mod, &ext, c.tcb_info, c.qe_identity, &r));
    assert_int_equal(r.final, CF_TDX_TCB_NOT_SUPPORTED);
    cf_tdx_tcb_result_free(&r);
    cf_tdx_collateral_free(&c);
    cf_buf_free(&q);
    cf_buf_free(&col);
}

/* The verified-chain cache never changes an answer: same results with it
 * off and on, warm entries are not used outside their window, and changed
 * bytes never hit. */
static void test_chain_cache(void **state)
{
    (void)state;
    cf_buf col;
    spr_collateral(&col);
    const char *policy = "{\"verification\":\"chain_only\",\"sept_ve_disable_required\":false}";
    const char *quote = V "go-tdx-guest/tdx_quote_v4_SPR_E4.bin";
    static const char *const times[] = {"2023-07-01T01:00:00Z", "2023-01-01T00:00:00Z", "2053-07-01T00:00:00Z",
                                        "2023-07-01T01:00:00Z", "2030-01-01T00:00:00Z"};
    static const cf_error_code want[] = {CF_E_OK, CF_E_EXPIRED, CF_E_EXPIRED, CF_E_OK, CF_E_EXPIRED};
    for (int round = 0; round < 3; round++) {
        cf_tdx_chain_cache_clear();
        cf_tdx_chain_cache_enable(round != 0);
        for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
            cf_result r = verify_files(quote, cf_buf_slice(&col), policy, at(times[i]));
            if (want[i] == CF_E_OK) {
                assert_cf_ok(r);
            } else {
                assert_cf_error(r, want[i]);
            }
        }
    }
    cf_tdx_chain_cache_enable(true);
    /* Warm cache, then the same chain with a changed CRL set: its own key. */
    assert_cf_ok(verify_files(quote, cf_buf_slice(&col), policy, at("2023-07-01T01:00:00Z")));
    assert_cf_error(verify_files(quote, CF_SLICE_EMPTY, policy, at("2023-07-01T01:00:00Z")), CF_E_REVOKED);
    assert_cf_ok(verify_files(quote, CF_SLICE_EMPTY,
                              "{\"verification\":\"chain_only\",\"sept_ve_disable_required\":false,"
                              "\"allow_missing_crls\":true}",
                              at("2023-07-01T01:00:00Z")));
    cf_buf_free(&col);
}

static void test_pinned_root_and_time_parser(void **state)
{
    (void)state;
    cf_buf der;
    cf_test_read_file(V "roots/intel_sgx_root_ca.der", true, &der);
    assert_true(cf_slice_eq(cf_buf_slice(&der), cf_tdx_intel_root_der()));
    uint8_t fp[32];
    assert_cf_ok(cf_sha256(cf_tdx_intel_root_der(), fp));
    assert_memory_equal(fp, cf_tdx_intel_root_sha256, 32);
    cf_buf_free(&der);
    assert_int_equal(at("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(at("2025-07-01T00:00:00Z"), 1751328000);
    assert_int_equal(at("2024-02-29T12:34:56.789Z"), 1709210096);
    int64_t t;
    assert_cf_error(tdx_parse_time("2025-07-01T00:00:00", &t), CF_E_MALFORMED);
    assert_cf_error(tdx_parse_time("2025-07-01 00:00:00Z", &t), CF_E_MALFORMED);
    assert_cf_error(tdx_parse_time("2025-13-01T00:00:00Z", &t), CF_E_MALFORMED);
    /* Days that do not exist are refused, not rolled into the next month. */
    assert_cf_error(tdx_parse_time("2025-02-29T00:00:00Z", &t), CF_E_MALFORMED);
    assert_cf_error(tdx_parse_time("2025-04-31T00:00:00Z", &t), CF_E_MALFORMED);
    assert_cf_error(tdx_parse_time("2100-02-29T00:00:00Z", &t), CF_E_MALFORMED);
    assert_int_equal(at("2000-02-29T00:00:00Z"), 951782400);
    assert_int_equal(at("2025-12-31T23:59:59Z"), 1767225599);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dcap_v4_up_to_date),
        cmocka_unit_test(test_dcap_v5_tcb_not_supported),
        cmocka_unit_test(test_sgx_quote_rejected),
        cmocka_unit_test(test_spr_e4_tcb_not_supported),
        cmocka_unit_test(test_go_tdx_guest_v5_up_to_date),
        cmocka_unit_test(test_gcp_padded_chain_only),
        cmocka_unit_test(test_debug_td_rejected),
        cmocka_unit_test(test_trustee_v5_tcb_not_supported),
        cmocka_unit_test(test_trustee_granite_rapids_out_of_date),
        cmocka_unit_test(test_azure_strict_attributes),
        cmocka_unit_test(test_spr_mutation_negatives),
        cmocka_unit_test(test_every_signed_byte_flip_fails),
        cmocka_unit_test(test_truncated_quotes_fail),
        cmocka_unit_test(test_policy_each_field),
        cmocka_unit_test(test_policy_validate_names_field),
        cmocka_unit_test(test_manifest_policy_pins_workload),
        cmocka_unit_test(test_policy_td_attributes),
        cmocka_unit_test(test_collateral_tampering),
        cmocka_unit_test(test_json_member_span),
        cmocka_unit_test(test_collateral_classify_files),
        cmocka_unit_test(test_pck_extension_and_tcb_rules),
        cmocka_unit_test(test_chain_cache),
        cmocka_unit_test(test_pinned_root_and_time_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
