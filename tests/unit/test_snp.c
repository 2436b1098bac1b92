/* test_snp.c — AMD SEV-SNP: report parser, VEK extensions, pinned roots,
 * chain, CRL, certificate table, policy, and every real vector of
 * shared/vectors/amd-sev-snp with the outcome SOURCES.md §2 states. */
#include "test_helper.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "attest/snp_internal.h"
#include "confide/attest.h"
#include "confide/buf.h"
#include "confide/crypto.h"
#include "confide/snp.h"

/* 2026-11-20T00:00:00Z: every VCEK in the vectors is inside its validity. */
#define T_VALID INT64_C(1795132800)
/* 2025-06-01T00:00:00Z: the AWS VLEK (valid 2024-12-10..2025-12-10). */
#define T_VLEK INT64_C(1748736000)

#define V "amd-sev-snp/"

static void load(const char *rel, cf_buf *out)
{
    cf_buf_init(out, 0);
    cf_test_read_file(rel, true, out);
}

static X509 *load_cert(const char *rel)
{
    cf_buf b;
    load(rel, &b);
    X509 *c = NULL;
    if (b.len > 0 && b.data[0] == 0x30) {
        assert_cf_ok(cf_x509_load_der(cf_buf_slice(&b), &c));
    } else {
        BIO *bio = BIO_new_mem_buf(b.data, (int)b.len);
        c = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    assert_non_null(c);
    cf_buf_free(&b);
    return c;
}

/* Verify `report` with `collateral` (one vector file) under `policy_json`
 * (NULL = production defaults) at `at`. */
static cf_result verify_files(const char *report, const char *collateral, const char *policy_json,
                              const uint8_t *expected_rd, int64_t at, cf_claims *claims)
{
    cf_buf r, c;
    load(report, &r);
    load(collateral, &c);
    json_t *policy = NULL;
    if (policy_json != NULL) {
        json_error_t jerr;
        policy = json_loads(policy_json, 0, &jerr);
        assert_non_null(policy);
    }
    cf_verify_input in = {.platform = CF_PLATFORM_SNP,
                          .evidence = cf_buf_slice(&r),
                          .collateral = cf_buf_slice(&c),
                          .expected_report_data = expected_rd,
                          .policy = policy,
                          .now = at};
    cf_claims local = {0};
    cf_result res = cf_attest_verify(&in, claims ? claims : &local);
    cf_claims_free(&local);
    json_decref(policy);
    cf_buf_free(&r);
    cf_buf_free(&c);
    return res;
}

/* ---- every valid real vector ------------------------------------------------ */

static const struct valid_vector {
    const char *report, *vek;
    int64_t at;
    const char *product;
    uint32_t version;
    const char *tcb;
} valid_vectors[] = {
    {V "milan/virtee_report.bin", V "milan/virtee_vcek.der", T_VALID, "Milan", 2, "bl=3 tee=0 snp=8 ucode=115"},
    {V "milan/trustee_report.bin", V "milan/trustee_vcek.der", T_VALID, "Milan", 2, "bl=3 tee=0 snp=8 ucode=115"},
    {V "milan/azure_report.bin", V "milan/azure_vcek_chain.pem", T_VALID, "Milan", 2, "bl=3 tee=0 snp=8 ucode=115"},
    {V "milan/ms_report.bin", V "milan/ms_vcek.pem", T_VALID, "Milan", 3, "bl=4 tee=0 snp=24 ucode=219"},
    {V "milan/ms_report.bin", V "milan/ms_vcek_reissued.pem", T_VALID, "Milan", 3, "bl=4 tee=0 snp=24 ucode=219"},
    {V "milan/trustee_aws_vlek_report.bin", V "milan/trustee_aws_vlek.der", T_VLEK, "Milan", 3,
     "bl=4 tee=0 snp=24 ucode=217"},
    {V "genoa/azure_report.bin", V "genoa/azure_vcek.pem", T_VALID, "Genoa", 3, "bl=10 tee=0 snp=23 ucode=84"},
    {V "genoa/trustee_e2e_report.bin", V "genoa/trustee_e2e_vcek.der", T_VALID, "Genoa", 3,
     "bl=10 tee=0 snp=23 ucode=25"},
    {V "genoa/ms_report.bin", V "genoa/ms_vcek.pem", T_VALID, "Genoa", 3, "bl=10 tee=0 snp=23 ucode=84"},
    {V "turin/ms_report.bin", V "turin/ms_vcek.pem", T_VALID, "Turin", 5, "fmc=1 bl=1 tee=1 snp=4 ucode=81"},
};

static void test_valid_vectors_verify(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof valid_vectors / sizeof valid_vectors[0]; i++) {
        const struct valid_vector *v = &valid_vectors[i];
        cf_buf r;
        load(v->report, &r);
        cf_claims claims;
        /* With the exact report_data the report carries. */
        assert_cf_ok(verify_files(v->report, v->vek, NULL, r.data + 0x50, v->at, &claims));
        assert_int_equal(claims.platform, CF_PLATFORM_SNP);
        assert_memory_equal(claims.report_data, r.data + 0x50, 64);
        assert_memory_equal(claims.measurement, r.data + 0x90, 48);
        assert_int_equal(claims.measurement_len, 48);
        assert_false(claims.debug);
        assert_string_equal(claims.tcb, v->tcb);
        assert_string_equal(json_string_value(json_object_get(claims.details, "product")), v->product);
        assert_int_equal(json_integer_value(json_object_get(claims.details, "version")), v->version);
        assert_true(json_is_true(json_object_get(claims.details, "report_data_checked")));
        assert_true(json_integer_value(json_object_get(claims.details, "vek_not_before")) <= v->at);
        assert_true(json_integer_value(json_object_get(claims.details, "vek_not_after")) >= v->at);
        cf_claims_free(&claims);
        cf_buf_free(&r);
    }
}

static void test_gosev_debug_report_rejected_by_production_policy(void **state)
{
    (void)state;
    const char *rep = V "milan/gosev_report.bin", *vek = V "milan/gosev_vcek.der";
    assert_cf_error(verify_files(rep, vek, NULL, NULL, T_VALID, NULL), CF_E_POLICY);
    assert_non_null(strstr(cf_error_last()->detail, "DEBUG"));
    assert_cf_error(verify_files(rep, vek, "{\"allow_debug\": false}", NULL, T_VALID, NULL), CF_E_POLICY);
    /* The crypto is valid: a development policy that allows debug accepts it,
     * and the claims say debug. */
    cf_claims claims;
    assert_cf_ok(verify_files(rep, vek, "{\"allow_debug\": true}", NULL, T_VALID, &claims));
    assert_true(claims.debug);
    assert_string_equal(json_string_value(json_object_get(claims.details, "vek_product_name")), "Milan-B0");
    assert_string_equal(claims.tcb, "bl=2 tee=0 snp=5 ucode=68");
    cf_claims_free(&claims);
}

static void test_vlek_expiry_and_chain(void **state)
{
    (void)state;
    const char *rep = V "milan/trustee_aws_vlek_report.bin", *vlek = V "milan/trustee_aws_vlek.der";
    /* Without a time override (now) the VLEK has expired. */
    assert_cf_error(verify_files(rep, vlek, NULL, NULL, T_VALID, NULL), CF_E_EXPIRED);
    assert_cf_error(verify_files(rep, vlek, NULL, NULL, (int64_t)time(NULL), NULL), CF_E_EXPIRED);
    cf_claims claims;
    assert_cf_ok(verify_files(rep, vlek, NULL, NULL, T_VLEK, &claims));
    assert_string_equal(json_string_value(json_object_get(claims.details, "signing_key")), "vlek");
    assert_int_equal(json_integer_value(json_object_get(claims.details, "vmpl")), 1);
    cf_claims_free(&claims);
    /* VMPL 1: a policy that requires VMPL0 refuses it. */
    assert_cf_error(verify_files(rep, vlek, "{\"vmpl\": 0}", NULL, T_VLEK, NULL), CF_E_POLICY);
    assert_cf_ok(verify_files(rep, vlek, "{\"vmpl\": 1}", NULL, T_VLEK, NULL));
    assert_cf_error(verify_files(rep, vlek, "{\"signing_keys\": [\"vcek\"]}", NULL, T_VLEK, NULL), CF_E_POLICY);
    assert_cf_ok(verify_files(rep, vlek, "{\"signing_keys\": [\"vlek\"]}", NULL, T_VLEK, NULL));

    /* Same, with the KDS VLEK cert_chain (ASVK, ARK) supplied after the VLEK. */
    X509 *cert = load_cert(vlek);
    cf_buf coll, chain, r;
    cf_buf_init(&coll, 0);
    assert_cf_ok(snp_x509_to_pem(cert, &coll));
    load(V "roots/milan_vlek_cert_chain.pem", &chain);
    assert_cf_ok(cf_buf_append_slice(&coll, cf_buf_slice(&chain)));
    load(rep, &r);
    cf_verify_input in = {.platform = CF_PLATFORM_SNP,
                          .evidence = cf_buf_slice(&r),
                          .collateral = cf_buf_slice(&coll),
                          .now = T_VLEK};
    assert_cf_ok(cf_attest_verify(&in, &claims));
    cf_claims_free(&claims);
    /* A VLEK chained through the ASK (VCEK issuer) instead of the ASVK fails. */
    assert_cf_error(cf_snp_verify_chain(cert, NULL, CF_SNP_PRODUCT_MILAN, CF_SNP_KEY_VCEK, NULL, false, T_VLEK, NULL),
                    CF_E_CERT);
    X509_free(cert);
    cf_buf_free(&coll);
    cf_buf_free(&chain);
    cf_buf_free(&r);
}

static void test_mismatched_pairs_fail(void **state)
{
    (void)state;
    /* Another chip's VCEK: the chain is fine, the signature is not. */
    assert_cf_error(verify_files(V "milan/gosev_report.bin", V "milan/virtee_vcek.der", "{\"allow_debug\":true}",
                                 NULL, T_VALID, NULL),
                    CF_E_BAD_SIGNATURE);
    assert_cf_error(verify_files(V "genoa/ms_report.bin", V "genoa/azure_vcek.pem", NULL, NULL, T_VALID, NULL),
                    CF_E_BAD_SIGNATURE);
    assert_cf_error(verify_files(V "milan/virtee_report.bin", V "milan/trustee_vcek.der", NULL, NULL, T_VALID, NULL),
                    CF_E_BAD_SIGNATURE);
    /* A Milan report with a Genoa VCEK: the product (CPUID) disagrees with
     * the certificate. */
    assert_cf_error(verify_files(V "milan/ms_report.bin", V "genoa/ms_vcek.pem", NULL, NULL, T_VALID, NULL),
                    CF_E_CERT);
    /* A VCEK-signed report with the VLEK certificate: key type mismatch. */
    assert_cf_error(verify_files(V "milan/ms_report.bin", V "milan/trustee_aws_vlek.der", NULL, NULL, T_VLEK, NULL),
                    CF_E_CERT);
    assert_non_null(strstr(cf_error_last()->detail, "signed by a vcek but the certificate is a vlek"));
}

static void test_bad_signature_vceks(void **state)
{
    (void)state;
    const char *files[] = {V "negative/trustee_vcek_bad_sig_hwid_raw.der",
                           V "negative/trustee_vcek_bad_sig_hwid_octet.der"};
    uint8_t expect_hwid[64];
    for (int i = 0; i < 64; i++) {
        expect_hwid[i] = (uint8_t)i;
    }
    cf_buf r;
    load(V "milan/trustee_report.bin", &r);
    for (size_t i = 0; i < 2; i++) {
        /* Both hwID encodings parse to the same 64 bytes. */
        X509 *c = load_cert(files[i]);
        cf_snp_vek_info info;
        assert_cf_ok(cf_snp_vek_parse(c, &info));
        assert_int_equal(info.hwid_len, 64);
        assert_memory_equal(info.hwid, expect_hwid, 64);
        /* The chain fails (certificate signature failure). */
        assert_cf_error(cf_snp_verify_chain(c, NULL, CF_SNP_PRODUCT_MILAN, CF_SNP_KEY_VCEK, NULL, false, T_VALID,
                                            NULL),
                        CF_E_CERT);
        assert_non_null(strstr(cf_error_last()->detail, "signature failure"));
        /* And the report signature fails too. */
        assert_cf_error(snp_ecdsa_p384_verify_le(c, cf_slice_make(r.data, CF_SNP_SIGNED_LEN),
                                                 cf_slice_make(r.data + 0x2A0, 72), cf_slice_make(r.data + 0x2E8, 72)),
                        CF_E_BAD_SIGNATURE);
        assert_cf_error(verify_files(V "milan/trustee_report.bin", files[i], NULL, NULL, T_VALID, NULL), CF_E_CERT);
        X509_free(c);
    }
    cf_buf_free(&r);
}

static void test_milan_vcek_against_genoa_ark_fails(void **state)
{
    (void)state;
    X509 *vcek = load_cert(V "milan/virtee_vcek.der");
    X509 *genoa_ask = load_cert(V "roots/genoa_ask.pem");
    X509 *milan_ask = load_cert(V "roots/milan_ask.pem");
    STACK_OF(X509) *supplied = sk_X509_new_null();
    assert_true(sk_X509_push(supplied, genoa_ask) > 0);
    assert_cf_ok(cf_snp_verify_chain(vcek, NULL, CF_SNP_PRODUCT_MILAN, CF_SNP_KEY_VCEK, NULL, false, T_VALID, NULL));
    assert_cf_error(cf_snp_verify_chain(vcek, NULL, CF_SNP_PRODUCT_GENOA, CF_SNP_KEY_VCEK, NULL, false, T_VALID, NULL),
                    CF_E_CERT);
    assert_cf_error(
        cf_snp_verify_chain(vcek, supplied, CF_SNP_PRODUCT_GENOA, CF_SNP_KEY_VCEK, NULL, false, T_VALID, NULL),
        CF_E_CERT);
    /* The ASK passed as the trust anchor is not accepted. */
    assert_cf_error(snp_x509_verify(vcek, NULL, milan_ask, T_VALID), CF_E_CERT);
    /* A VEK directly under the ARK (no intermediate) is refused. */
    X509 *ark = NULL;
    assert_cf_ok(cf_snp_root_ark(CF_SNP_PRODUCT_MILAN, &ark));
    assert_cf_error(snp_x509_verify(vcek, NULL, ark, T_VALID), CF_E_CERT);
    X509_free(ark);
    sk_X509_pop_free(supplied, X509_free);
    X509_free(milan_ask);
    X509_free(vcek);
}

static void test_pinned_roots_match_vectors(void **state)
{
    (void)state;
    static const char *files[][3] = {
        {V "roots/milan_ark.pem", V "roots/milan_ask.pem", V "roots/milan_vlek_cert_chain.pem"},
        {V "roots/genoa_ark.pem", V "roots/genoa_ask.pem", V "roots/genoa_vlek_cert_chain.pem"},
        {V "roots/turin_ark.pem", V "roots/turin_ask.pem", V "roots/turin_vlek_cert_chain.pem"},
    };
    const cf_snp_product products[] = {CF_SNP_PRODUCT_MILAN, CF_SNP_PRODUCT_GENOA, CF_SNP_PRODUCT_TURIN};
    for (size_t i = 0; i < 3; i++) {
        X509 *ark = NULL, *ask = NULL, *asvk = NULL;
        assert_cf_ok(cf_snp_root_ark(products[i], &ark));
        assert_cf_ok(cf_snp_root_ask(products[i], &ask));
        assert_cf_ok(cf_snp_root_asvk(products[i], &asvk));
        X509 *v_ark = load_cert(files[i][0]), *v_ask = load_cert(files[i][1]), *v_asvk = load_cert(files[i][2]);
        assert_int_equal(X509_cmp(ark, v_ark), 0);
        assert_int_equal(X509_cmp(ask, v_ask), 0);
        assert_int_equal(X509_cmp(asvk, v_asvk), 0); /* first cert of the KDS VLEK cert_chain */
        uint8_t fp[32];
        assert_cf_ok(cf_x509_fingerprint_sha256(ark, fp));
        assert_memory_equal(fp, cf_snp_ark_fingerprint(products[i]), 32);
        /* ASK and ASVK under the ARK, ARK self-signed (until 2045+). */
        assert_cf_ok(snp_x509_verify(ask, NULL, ark, T_VALID));
        assert_cf_ok(snp_x509_verify(asvk, NULL, ark, T_VALID));
        X509_free(ark), X509_free(ask), X509_free(asvk);
        X509_free(v_ark), X509_free(v_ask), X509_free(v_asvk);
    }
    X509 *none = NULL;
    assert_cf_error(cf_snp_root_ark(CF_SNP_PRODUCT_UNKNOWN, &none), CF_E_UNSUPPORTED);
    assert_null(cf_snp_ark_fingerprint(CF_SNP_PRODUCT_UNKNOWN));
}

static void test_turin_vcek_extensions(void **state)
{
    (void)state;
    X509 *c = load_cert(V "turin/virtee_vcek_no_report.der");
    cf_snp_vek_info info;
    assert_cf_ok(cf_snp_vek_parse(c, &info));
    assert_int_equal(info.kind, CF_SNP_KEY_VCEK);
    assert_int_equal(info.product, CF_SNP_PRODUCT_TURIN);
    assert_int_equal(info.hwid_len, 8);
    const uint8_t hwid[8] = {0x1e, 0x55, 0x0a, 0x8e, 0xe5, 0xcf, 0x9f, 0x4d};
    assert_memory_equal(info.hwid, hwid, 8);
    assert_true(info.has_fmc);
    assert_int_equal(info.fmc, 0);
    assert_int_equal(info.ucode, 9);
    assert_cf_ok(cf_snp_verify_chain(c, NULL, CF_SNP_PRODUCT_TURIN, CF_SNP_KEY_VCEK, NULL, false, T_VALID, NULL));
    X509_free(c);

    /* The microcode SPL as a 2-byte INTEGER (02 02 00 db = 219). */
    c = load_cert(V "milan/ms_vcek.pem");
    assert_cf_ok(cf_snp_vek_parse(c, &info));
    assert_int_equal(info.ucode, 219);
    assert_false(info.has_fmc);
    X509_free(c);
    /* VLEK: no hwID, productName "Milan". */
    c = load_cert(V "milan/trustee_aws_vlek.der");
    assert_cf_ok(cf_snp_vek_parse(c, &info));
    assert_int_equal(info.kind, CF_SNP_KEY_VLEK);
    assert_int_equal(info.hwid_len, 0);
    assert_string_equal(info.product_name, "Milan");
    X509_free(c);
    /* An ASK is not a VEK. */
    c = load_cert(V "roots/milan_ask.pem");
    assert_cf_error(cf_snp_vek_parse(c, &info), CF_E_CERT);
    X509_free(c);
}

static void test_extension_value_parsers(void **state)
{
    (void)state;
    uint8_t v = 0;
    assert_cf_ok(cf_snp_ext_parse_spl(cf_slice_make("\x02\x01\x00", 3), &v));
    assert_int_equal(v, 0);
    assert_cf_ok(cf_snp_ext_parse_spl(cf_slice_make("\x02\x01\x7f", 3), &v));
    assert_int_equal(v, 127);
    assert_cf_ok(cf_snp_ext_parse_spl(cf_slice_make("\x02\x02\x00\xdb", 4), &v));
    assert_int_equal(v, 219);
    assert_cf_error(cf_snp_ext_parse_spl(cf_slice_make("\x02\x01\x80", 3), &v), CF_E_MALFORMED);     /* negative */
    assert_cf_error(cf_snp_ext_parse_spl(cf_slice_make("\x02\x02\x00\x05", 4), &v), CF_E_MALFORMED); /* not minimal */
    assert_cf_error(cf_snp_ext_parse_spl(cf_slice_make("\x02\x02\x01\x00", 4), &v), CF_E_MALFORMED); /* 256 */
    assert_cf_error(cf_snp_ext_parse_spl(cf_slice_make("\x02\x01\x05\x00", 4), &v), CF_E_MALFORMED); /* trailing */
    assert_cf_error(cf_snp_ext_parse_spl(cf_slice_make("\x04\x01\x05", 3), &v), CF_E_MALFORMED);     /* not INTEGER */
    assert_cf_error(cf_snp_ext_parse_spl(cf_slice_make("\x02\x01", 2), &v), CF_E_MALFORMED);         /* truncated */
    assert_cf_error(cf_snp_ext_parse_spl(CF_SLICE_EMPTY, &v), CF_E_MALFORMED);

    uint8_t raw[66] = {0x04, 0x40}, id[64];
    size_t n = 0;
    for (int i = 0; i < 64; i++) {
        raw[2 + i] = (uint8_t)(0xA0 + i);
    }
    assert_cf_ok(cf_snp_ext_parse_hwid(cf_slice_make(raw + 2, 64), id, &n));
    assert_int_equal(n, 64);
    assert_memory_equal(id, raw + 2, 64);
    assert_cf_ok(cf_snp_ext_parse_hwid(cf_slice_make(raw, 66), id, &n));
    assert_int_equal(n, 64);
    assert_memory_equal(id, raw + 2, 64);
    assert_cf_ok(cf_snp_ext_parse_hwid(cf_slice_make(raw + 2, 8), id, &n));
    assert_int_equal(n, 8);
    uint8_t wrapped8[10] = {0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_cf_ok(cf_snp_ext_parse_hwid(cf_slice_make(wrapped8, 10), id, &n));
    assert_int_equal(n, 8);
    assert_memory_equal(id, wrapped8 + 2, 8);
    assert_cf_error(cf_snp_ext_parse_hwid(cf_slice_make(raw + 2, 63), id, &n), CF_E_MALFORMED);
    raw[1] = 0x41; /* wrong inner length: 66 bytes is then not a valid raw ID */
    assert_cf_error(cf_snp_ext_parse_hwid(cf_slice_make(raw, 66), id, &n), CF_E_MALFORMED);

    char name[32];
    assert_cf_ok(cf_snp_ext_parse_product(cf_slice_make("\x16\x08Milan-B0", 10), name, sizeof name));
    assert_string_equal(name, "Milan-B0");
    assert_int_equal(cf_snp_product_from_name(cf_slice_cstr(name)), CF_SNP_PRODUCT_MILAN);
    assert_int_equal(cf_snp_product_from_name(cf_slice_cstr("Genoa")), CF_SNP_PRODUCT_GENOA);
    assert_int_equal(cf_snp_product_from_name(cf_slice_cstr("Turinx")), CF_SNP_PRODUCT_UNKNOWN);
    assert_cf_error(cf_snp_ext_parse_product(cf_slice_make("\x0c\x05Milan", 7), name, sizeof name), CF_E_MALFORMED);
    assert_cf_error(cf_snp_ext_parse_product(cf_slice_make("\x16\x06Milan", 7), name, sizeof name), CF_E_MALFORMED);
    assert_cf_error(cf_snp_ext_parse_product(cf_slice_make("\x16\x05Mi\x01an", 7), name, sizeof name),
                    CF_E_MALFORMED);
}

/* ---- report parser ------------------------------------------------------------ */

static void test_report_fields(void **state)
{
    (void)state;
    cf_buf b;
    cf_snp_report r;
    load(V "turin/ms_report.bin", &b);
    assert_cf_ok(cf_snp_report_parse(cf_buf_slice(&b), &r));
    assert_int_equal(r.version, 5);
    assert_int_equal(r.policy, 0x3001f);
    assert_int_equal(r.vmpl, 0);
    assert_int_equal(r.cpuid_fam_id, 0x1A);
    assert_int_equal(r.cpuid_mod_id, 0x02);
    assert_int_equal(cf_snp_report_product(&r), CF_SNP_PRODUCT_TURIN);
    assert_int_equal(r.launch_mit_vector, 0x3f);
    assert_int_equal(r.current_mit_vector, 0x3f);
    const uint8_t chip[8] = {0x59, 0x79, 0x0f, 0xb1, 0xc3, 0x9f, 0x35, 0xc1};
    assert_memory_equal(r.chip_id, chip, 8);
    cf_snp_tcb t = cf_snp_tcb_decode(r.reported_tcb, CF_SNP_PRODUCT_TURIN);
    assert_true(t.has_fmc);
    assert_int_equal(t.fmc, 1);
    assert_int_equal(t.bl, 1);
    assert_int_equal(t.tee, 1);
    assert_int_equal(t.snp, 4);
    assert_int_equal(t.ucode, 81);
    cf_buf_free(&b);

    load(V "milan/trustee_report.bin", &b);
    assert_cf_ok(cf_snp_report_parse(cf_buf_slice(&b), &r));
    assert_int_equal(r.version, 2);
    assert_int_equal(r.guest_svn, 4);
    assert_int_equal(cf_snp_report_product(&r), CF_SNP_PRODUCT_UNKNOWN); /* v2: from the certificate */
    t = cf_snp_tcb_decode(r.reported_tcb, CF_SNP_PRODUCT_MILAN);
    assert_int_equal(t.bl, 3);
    assert_int_equal(t.snp, 8);
    assert_int_equal(t.ucode, 115);
    assert_int_equal(cf_snp_tcb_decode(r.current_tcb, CF_SNP_PRODUCT_MILAN).ucode, 206);
    cf_buf_free(&b);

    load(V "genoa/trustee_e2e_report.bin", &b);
    assert_cf_ok(cf_snp_report_parse(cf_buf_slice(&b), &r));
    assert_int_equal(r.cpuid_mod_id, 0xA0);
    assert_int_equal(cf_snp_report_product(&r), CF_SNP_PRODUCT_GENOA);
    cf_buf_free(&b);

    load(V "milan/trustee_aws_vlek_report.bin", &b);
    assert_cf_ok(cf_snp_report_parse(cf_buf_slice(&b), &r));
    assert_int_equal(r.signing_key, CF_SNP_KEY_VLEK);
    assert_int_equal(r.vmpl, 1);
    cf_buf_free(&b);
}

static void test_report_length_and_format(void **state)
{
    (void)state;
    cf_buf b;
    cf_snp_report r;
    load(V "milan/ms_report.bin", &b);
    assert_cf_error(cf_snp_report_parse(cf_slice_make(b.data, 1183), &r), CF_E_MALFORMED);
    assert_cf_error(cf_snp_report_parse(CF_SLICE_EMPTY, &r), CF_E_MALFORMED);
    uint8_t big[CF_SNP_REPORT_LEN + 1] = {0};
    memcpy(big, b.data, CF_SNP_REPORT_LEN);
    assert_cf_error(cf_snp_report_parse(cf_slice_make(big, sizeof big), &r), CF_E_MALFORMED);
    /* Truncated and extended reports are refused by the verifier too. */
    cf_buf c;
    load(V "milan/ms_vcek.pem", &c);
    cf_verify_input in = {.platform = CF_PLATFORM_SNP, .collateral = cf_buf_slice(&c), .now = T_VALID};
    cf_claims claims;
    in.evidence = cf_slice_make(b.data, 1183);
    assert_cf_error(cf_attest_verify(&in, &claims), CF_E_MALFORMED);
    in.evidence = cf_slice_make(big, sizeof big);
    assert_cf_error(cf_attest_verify(&in, &claims), CF_E_MALFORMED);

    uint8_t m[CF_SNP_REPORT_LEN];
    struct {
        size_t off;
        uint8_t val;
        cf_error_code code;
    } bad[] = {
        {0x00, 1, CF_E_UNSUPPORTED},    /* version 1 */
        {0x00, 6, CF_E_UNSUPPORTED},    /* version 6 */
        {0x34, 2, CF_E_UNSUPPORTED},    /* SIGNATURE_ALGO 2 */
        {0x30, 4, CF_E_MALFORMED},      /* VMPL 4 */
        {0x400, 1, CF_E_MALFORMED},     /* reserved tail of the signature */
        {0x1F8, 1, CF_E_MALFORMED},     /* mitigation vector in a v3 report */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(m, b.data, sizeof m);
        m[bad[i].off] = bad[i].val;
        assert_cf_error(cf_snp_report_parse(cf_slice_make(m, sizeof m), &r), bad[i].code);
        /* No partial state on failure. */
        uint8_t zero[sizeof r];
        memset(zero, 0, sizeof zero);
        assert_memory_equal(&r, zero, sizeof r);
    }
    cf_buf_free(&c);
    cf_buf_free(&b);
}

/* Every single-byte flip in the signed region [0, 0x2A0) fails verification. */
static void flip_every_signed_byte(const char *report, const char *vek, int64_t at)
{
    cf_buf b, c;
    load(report, &b);
    load(vek, &c);
    uint8_t m[CF_SNP_REPORT_LEN];
    cf_verify_input in = {.platform = CF_PLATFORM_SNP,
                          .evidence = cf_slice_make(m, sizeof m),
                          .collateral = cf_buf_slice(&c),
                          .now = at};
    const char *p = "{\"allow_debug\": true, \"allow_migration_agent\": true}";
    json_t *permissive = json_loads(p, 0, NULL);
    in.policy = permissive;
    cf_snp_chain_cache cache;
    cf_snp_chain_cache_init(&cache);
    cf_claims claims;
    memcpy(m, b.data, sizeof m);
    assert_cf_ok(cf_snp_verify_with_cache(&in, &cache, &claims));
    cf_claims_free(&claims);
    size_t step = cf_test_under_valgrind() ? 37 : 1;
    size_t tried = 0;
    for (size_t off = 0; off < CF_SNP_SIGNED_LEN; off += step) {
        memcpy(m, b.data, sizeof m);
        m[off] ^= 0x01;
        if (cf_is_ok(cf_snp_verify_with_cache(&in, &cache, &claims))) {
            fail_msg("%s: flipping byte 0x%zx still verifies", report, off);
        }
        tried++;
    }
    assert_true(tried >= CF_SNP_SIGNED_LEN / 37);
    /* REPORTED_TCB (byte 384): the signature fails first. */
    memcpy(m, b.data, sizeof m);
    m[384] ^= 0x01;
    assert_cf_error(cf_snp_verify_with_cache(&in, &cache, &claims), CF_E_BAD_SIGNATURE);
    /* The signature itself: r and s flips fail. */
    memcpy(m, b.data, sizeof m);
    m[0x2A0] ^= 0x01;
    assert_cf_error(cf_snp_verify_with_cache(&in, &cache, &claims), CF_E_BAD_SIGNATURE);
    memcpy(m, b.data, sizeof m);
    m[0x2E8 + 47] ^= 0x80;
    assert_cf_error(cf_snp_verify_with_cache(&in, &cache, &claims), CF_E_BAD_SIGNATURE);
    memcpy(m, b.data, sizeof m);
    m[0x2A0 + 50] = 1; /* r beyond 384 bits */
    assert_cf_error(cf_snp_verify_with_cache(&in, &cache, &claims), CF_E_BAD_SIGNATURE);
    assert_true(cache.hits > 0);
    cf_snp_chain_cache_destroy(&cache);
    json_decref(permissive);
    cf_buf_free(&b);
    cf_buf_free(&c);
}

static void test_every_signed_byte_flip_fails(void **state)
{
    (void)state;
    flip_every_signed_byte(V "milan/ms_report.bin", V "milan/ms_vcek.pem", T_VALID);
    flip_every_signed_byte(V "milan/virtee_report.bin", V "milan/virtee_vcek.der", T_VALID);
    flip_every_signed_byte(V "turin/ms_report.bin", V "turin/ms_vcek.pem", T_VALID);
}

static void test_report_data_binding(void **state)
{
    (void)state;
    cf_buf r;
    load(V "genoa/azure_report.bin", &r);
    uint8_t rd[64];
    memcpy(rd, r.data + 0x50, 64);
    assert_cf_ok(verify_files(V "genoa/azure_report.bin", V "genoa/azure_vcek.pem", NULL, rd, T_VALID, NULL));
    rd[63] ^= 1;
    assert_cf_error(verify_files(V "genoa/azure_report.bin", V "genoa/azure_vcek.pem", NULL, rd, T_VALID, NULL),
                    CF_E_REPORT_DATA);
    cf_buf_free(&r);
}

/* ---- policy ----------------------------------------------------------------------- */

static cf_result check_with(const cf_snp_report *r, cf_snp_product product, const char *policy_json)
{
    json_t *j = json_loads(policy_json, 0, NULL);
    assert_non_null(j);
    cf_snp_policy p;
    cf_result res = cf_snp_policy_parse(j, &p);
    json_decref(j);
    assert_true(cf_is_ok(res));
    res = cf_snp_policy_check(r, &p, product);
    cf_snp_policy_free(&p);
    return res;
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02x", p[i]);
    }
}

static void test_policy_each_field_accepts_and_rejects(void **state)
{
    (void)state;
    cf_buf b;
    cf_snp_report r;
    load(V "genoa/ms_report.bin", &b);
    assert_cf_ok(cf_snp_report_parse(cf_buf_slice(&b), &r));
    const cf_snp_product G = CF_SNP_PRODUCT_GENOA;
    char hex[200], pol[400];

    assert_cf_ok(check_with(&r, G, "{}"));
    /* debug */
    cf_snp_report m = r;
    m.policy |= CF_SNP_POLICY_DEBUG;
    assert_cf_error(check_with(&m, G, "{}"), CF_E_POLICY);
    assert_cf_ok(check_with(&m, G, "{\"allow_debug\":true}"));
    /* migration agent */
    m = r;
    m.policy |= CF_SNP_POLICY_MIGRATE_MA;
    assert_cf_error(check_with(&m, G, "{\"allow_migration_agent\":false}"), CF_E_POLICY);
    assert_cf_ok(check_with(&m, G, "{\"allow_migration_agent\":true}"));
    /* SMT (PLATFORM_INFO bit 0; this Genoa host has it on) */
    assert_cf_error(check_with(&r, G, "{\"allow_smt\":false}"), CF_E_POLICY);
    assert_cf_ok(check_with(&r, G, "{\"allow_smt\":true}"));
    m = r;
    m.platform_info &= ~UINT64_C(1);
    assert_cf_ok(check_with(&m, G, "{\"allow_smt\":false}"));
    /* VMPL */
    assert_cf_ok(check_with(&r, G, "{\"vmpl\":0}"));
    assert_cf_error(check_with(&r, G, "{\"vmpl\":2}"), CF_E_POLICY);
    /* report version, guest SVN (this report: v3, SVN 2) */
    assert_cf_ok(check_with(&r, G, "{\"min_report_version\":3}"));
    assert_cf_error(check_with(&r, G, "{\"min_report_version\":4}"), CF_E_POLICY);
    assert_cf_ok(check_with(&r, G, "{\"min_guest_svn\":2}"));
    assert_cf_error(check_with(&r, G, "{\"min_guest_svn\":3}"), CF_E_POLICY);
    /* measurement allow-list */
    hex_of(r.measurement, 48, hex);
    snprintf(pol, sizeof pol, "{\"measurements\":[\"%s\",\"%096d\"]}", hex, 0);
    assert_cf_ok(check_with(&r, G, pol));
    snprintf(pol, sizeof pol, "{\"measurements\":[\"%096d\"]}", 0);
    assert_cf_error(check_with(&r, G, pol), CF_E_POLICY);
    /* host_data */
    hex_of(r.host_data, 32, hex);
    snprintf(pol, sizeof pol, "{\"host_data\":[\"%s\"]}", hex);
    assert_cf_ok(check_with(&r, G, pol));
    snprintf(pol, sizeof pol, "{\"host_data\":[\"%064d\"]}", 0);
    assert_cf_error(check_with(&r, G, pol), CF_E_POLICY);
    /* ID key digest */
    hex_of(r.id_key_digest, 48, hex);
    snprintf(pol, sizeof pol, "{\"id_key_digests\":[\"%s\"]}", hex);
    assert_cf_ok(check_with(&r, G, pol));
    snprintf(pol, sizeof pol, "{\"id_key_digests\":[\"%096d\"]}", 0);
    assert_cf_error(check_with(&r, G, pol), CF_E_POLICY);
    /* minimum TCB per component (this report: bl=10 tee=0 snp=23 ucode=84) */
    assert_cf_ok(check_with(&r, G, "{\"min_tcb\":{\"bl\":10,\"tee\":0,\"snp\":23,\"ucode\":84}}"));
    assert_cf_error(check_with(&r, G, "{\"min_tcb\":{\"bl\":11}}"), CF_E_TCB);
    assert_cf_error(check_with(&r, G, "{\"min_tcb\":{\"tee\":1}}"), CF_E_TCB);
    assert_cf_error(check_with(&r, G, "{\"min_tcb\":{\"snp\":24}}"), CF_E_TCB);
    assert_cf_error(check_with(&r, G, "{\"min_tcb\":{\"ucode\":85}}"), CF_E_TCB);
    assert_non_null(strstr(cf_error_last()->detail, "ucode=84 below min_tcb.ucode=85"));
    /* fmc applies to Turin only */
    assert_cf_ok(check_with(&r, G, "{\"min_tcb\":{\"fmc\":9}}"));
    cf_buf_free(&b);

    load(V "turin/ms_report.bin", &b);
    assert_cf_ok(cf_snp_report_parse(cf_buf_slice(&b), &r));
    assert_cf_ok(check_with(&r, CF_SNP_PRODUCT_TURIN, "{\"min_tcb\":{\"fmc\":1,\"bl\":1,\"tee\":1,\"snp\":4}}"));
    assert_cf_error(check_with(&r, CF_SNP_PRODUCT_TURIN, "{\"min_tcb\":{\"fmc\":2}}"), CF_E_TCB);
    cf_buf_free(&b);

    /* Products and signing keys are checked by the verifier end to end. */
    assert_cf_ok(verify_files(V "turin/ms_report.bin", V "turin/ms_vcek.pem", "{\"products\":[\"Turin\"]}", NULL,
                              T_VALID, NULL));
    assert_cf_error(verify_files(V "turin/ms_report.bin", V "turin/ms_vcek.pem",
                                 "{\"products\":[\"Milan\",\"Genoa\"]}", NULL, T_VALID, NULL),
                    CF_E_POLICY);
    assert_cf_ok(verify_files(V "turin/ms_report.bin", V "turin/ms_vcek.pem", "{\"signing_keys\":[\"vcek\"]}", NULL,
                              T_VALID, NULL));
    assert_cf_error(verify_files(V "turin/ms_report.bin", V "turin/ms_vcek.pem", "{\"signing_keys\":[\"vlek\"]}",
                                 NULL, T_VALID, NULL),
                    CF_E_POLICY);
    /* require_crl fails closed when the collateral carries no CRL. */
    assert_cf_ok(verify_files(V "turin/ms_report.bin", V "turin/ms_vcek.pem", "{\"require_crl\":false}", NULL,
                              T_VALID, NULL));
    assert_cf_error(verify_files(V "turin/ms_report.bin", V "turin/ms_vcek.pem", "{\"require_crl\":true}", NULL,
                                 T_VALID, NULL),
                    CF_E_REVOKED);
    /* A full production policy on a real report, end to end. */
    load(V "turin/ms_report.bin", &b);
    char m_hex[97], h_hex[65];
    hex_of(b.data + 0x90, 48, m_hex);
    hex_of(b.data + 0xC0, 32, h_hex);
    char full[600];
    snprintf(full, sizeof full,
             "{\"allow_debug\":false,\"allow_migration_agent\":false,\"allow_smt\":true,\"vmpl\":0,"
             "\"measurements\":[\"%s\"],\"host_data\":[\"%s\"],\"min_tcb\":{\"fmc\":1,\"bl\":1,\"tee\":1,\"snp\":4,"
             "\"ucode\":81},\"signing_keys\":[\"vcek\"],\"products\":[\"Turin\"],\"min_report_version\":5}",
             m_hex, h_hex);
    assert_cf_ok(verify_files(V "turin/ms_report.bin", V "turin/ms_vcek.pem", full, b.data + 0x50, T_VALID, NULL));
    cf_buf_free(&b);
}

static void test_policy_validate_names_bad_field(void **state)
{
    (void)state;
    assert_cf_ok(cf_attest_policy_validate(CF_PLATFORM_SNP, NULL));
    static const struct {
        const char *json, *field;
    } bad[] = {
        {"[]", "must be a JSON object"},
        {"{\"allow_debug\":1}", "\"allow_debug\""},
        {"{\"allow_smt\":\"yes\"}", "\"allow_smt\""},
        {"{\"allow_migration_agent\":null}", "\"allow_migration_agent\""},
        {"{\"require_crl\":0}", "\"require_crl\""},
        {"{\"vmpl\":4}", "\"vmpl\""},
        {"{\"vmpl\":-1}", "\"vmpl\""},
        {"{\"min_report_version\":1}", "\"min_report_version\""},
        {"{\"min_guest_svn\":-5}", "\"min_guest_svn\""},
        {"{\"measurements\":[]}", "\"measurements\""},
        {"{\"measurements\":[\"abcd\"]}", "\"measurements\"[0]"},
        {"{\"host_data\":[\"zz00000000000000000000000000000000000000000000000000000000000000\"]}", "\"host_data\"[0]"},
        {"{\"id_key_digests\":\"00\"}", "\"id_key_digests\""},
        {"{\"min_tcb\":[]}", "\"min_tcb\""},
        {"{\"min_tcb\":{\"bl\":256}}", "\"min_tcb.bl\""},
        {"{\"min_tcb\":{\"microcode\":1}}", "\"min_tcb.microcode\""},
        {"{\"signing_keys\":[\"vcek\",\"ask\"]}", "\"signing_keys\"[1]"},
        {"{\"products\":[\"Naples\"]}", "\"products\"[0]"},
        {"{\"products\":[\"Milan-B0\"]}", "\"products\"[0]"},
        {"{\"debug\":false}", "unknown key \"debug\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        assert_cf_error(cf_attest_policy_validate(CF_PLATFORM_SNP, j), CF_E_CONFIG);
        if (strstr(cf_error_last()->detail, bad[i].field) == NULL) {
            fail_msg("policy %s: detail '%s' does not name %s", bad[i].json, cf_error_last()->detail, bad[i].field);
        }
        json_decref(j);
    }
    json_t *good = json_loads("{\"allow_debug\":false,\"vmpl\":0,\"min_tcb\":{\"bl\":3,\"ucode\":219},"
                              "\"signing_keys\":[\"vcek\",\"vlek\"],\"products\":[\"Milan\",\"Genoa\",\"Turin\"]}",
                              0, NULL);
    assert_cf_ok(cf_attest_policy_validate(CF_PLATFORM_SNP, good));
    json_decref(good);
}

/* Manifest policies must pin the workload; `confide verify --policy` may be
 * partial. */
static void test_manifest_policy_pins_workload(void **state)
{
    (void)state;
    static const char *const unpinned[] = {
        "{}",
        "{\"vmpl\":0,\"min_tcb\":{\"bl\":7},\"products\":[\"Genoa\"]}",
        /* HOST_DATA is chosen by the host: not a workload identity. */
        "{\"host_data\":[\"00000000000000000000000000000000000000000000000000000000000000aa\"]}",
        "{\"insecure_allow_any_workload\":false,\"vmpl\":0}",
    };
    for (size_t i = 0; i < sizeof unpinned / sizeof unpinned[0]; i++) {
        json_t *j = json_loads(unpinned[i], 0, NULL);
        assert_non_null(j);
        assert_cf_ok(cf_attest_policy_validate_for(CF_PLATFORM_SNP, j, CF_POLICY_USE_OFFLINE));
        assert_cf_error(cf_attest_policy_validate_for(CF_PLATFORM_SNP, j, CF_POLICY_USE_MANIFEST), CF_E_CONFIG);
        const char *d = cf_error_last()->detail;
        if (strstr(d, "missing \"measurements\"") == NULL || strstr(d, "insecure_allow_any_workload") == NULL) {
            fail_msg("policy %s: detail '%s' does not name the missing pin", unpinned[i], d);
        }
        json_decref(j);
    }
    assert_cf_error(cf_attest_policy_validate_for(CF_PLATFORM_SNP, NULL, CF_POLICY_USE_MANIFEST), CF_E_CONFIG);

    cf_buf b;
    load(V "turin/ms_report.bin", &b);
    char m_hex[97], wrong[97], pol[400];
    hex_of(b.data + 0x90, 48, m_hex);
    memcpy(wrong, m_hex, sizeof wrong);
    wrong[5] = wrong[5] == '0' ? '1' : '0';
    char pinned[3][200];
    snprintf(pinned[0], sizeof pinned[0], "{\"measurements\":[\"%s\"]}", m_hex);
    snprintf(pinned[1], sizeof pinned[1], "{\"id_key_digests\":[\"%s\"]}", m_hex);
    snprintf(pinned[2], sizeof pinned[2], "{\"insecure_allow_any_workload\":true,\"vmpl\":0}");
    for (size_t i = 0; i < 3; i++) {
        json_t *j = json_loads(pinned[i], 0, NULL);
        assert_non_null(j);
        assert_cf_ok(cf_attest_policy_validate_for(CF_PLATFORM_SNP, j, CF_POLICY_USE_MANIFEST));
        assert_int_equal(cf_attest_policy_allows_any_workload(j), i == 2);
        json_decref(j);
    }
    /* The opt-out changes what a manifest accepts, never what the verifier
     * checks: a listed measurement is still enforced. */
    snprintf(pol, sizeof pol, "{\"insecure_allow_any_workload\":true,\"measurements\":[\"%s\"]}", m_hex);
    assert_cf_ok(verify_files(V "turin/ms_report.bin", V "turin/ms_vcek.pem", pol, NULL, T_VALID, NULL));
    snprintf(pol, sizeof pol, "{\"insecure_allow_any_workload\":true,\"measurements\":[\"%s\"]}", wrong);
    assert_cf_error(verify_files(V "turin/ms_report.bin", V "turin/ms_vcek.pem", pol, NULL, T_VALID, NULL),
                    CF_E_POLICY);
    cf_buf_free(&b);

    json_t *j = json_loads("{\"insecure_allow_any_workload\":\"yes\"}", 0, NULL);
    assert_cf_error(cf_attest_policy_validate(CF_PLATFORM_SNP, j), CF_E_CONFIG);
    assert_non_null(strstr(cf_error_last()->detail, "\"insecure_allow_any_workload\" must be true or false"));
    assert_false(cf_attest_policy_allows_any_workload(j));
    json_decref(j);
}

/* cf_attest_verify refuses a missing verification time before any platform
 * code runs: a real report that verifies at T_VALID fails at 0 and below. */
static void test_verification_time_required(void **state)
{
    (void)state;
    const int64_t bad_times[] = {0, -1, INT64_MIN};
    for (size_t i = 0; i < sizeof bad_times / sizeof bad_times[0]; i++) {
        cf_claims c;
        memset(&c, 0xA5, sizeof c);
        assert_cf_error(verify_files(V "milan/ms_report.bin", V "milan/ms_vcek.pem", NULL, NULL, bad_times[i], &c),
                        CF_E_INVALID_ARGUMENT);
        assert_non_null(strstr(cf_error_last()->detail, "cf_verify_input.now"));
        assert_null(c.details);
        assert_int_equal(c.measurement_len, 0);
    }
    assert_cf_ok(verify_files(V "milan/ms_report.bin", V "milan/ms_vcek.pem", NULL, NULL, T_VALID, NULL));
}

/* ---- collateral formats, certificate table, CRL, cache ----------------------------- */

static void test_collateral_formats(void **state)
{
    (void)state;
    cf_buf der, ask_pem, coll;
    load(V "milan/virtee_vcek.der", &der);
    load(V "roots/milan_ask.pem", &ask_pem);
    X509 *ask = load_cert(V "roots/milan_ask.pem");
    cf_snp_collateral c;
    /* DER VCEK alone */
    assert_cf_ok(cf_snp_collateral_parse(cf_buf_slice(&der), &c));
    assert_int_equal(sk_X509_num(c.intermediates), 0);
    cf_snp_collateral_free(&c);
    /* DER VCEK followed by DER ASK */
    cf_buf_init(&coll, 0);
    assert_cf_ok(cf_buf_append_slice(&coll, cf_buf_slice(&der)));
    unsigned char *ask_der = NULL;
    int ask_len = i2d_X509(ask, &ask_der);
    assert_true(ask_len > 0);
    assert_cf_ok(cf_buf_append(&coll, ask_der, (size_t)ask_len));
    assert_cf_ok(cf_snp_collateral_parse(cf_buf_slice(&coll), &c));
    assert_int_equal(sk_X509_num(c.intermediates), 1);
    cf_snp_collateral_free(&c);
    /* trailing garbage after DER */
    assert_cf_ok(cf_buf_append(&coll, "\x30\x03\x01", 3));
    assert_cf_error(cf_snp_collateral_parse(cf_buf_slice(&coll), &c), CF_E_CERT);
    /* PEM VCEK, ASK, ARK (Azure bundle): the ARK is dropped, never trusted */
    cf_buf chain;
    load(V "milan/azure_vcek_chain.pem", &chain);
    assert_cf_ok(cf_snp_collateral_parse(cf_buf_slice(&chain), &c));
    assert_int_equal(sk_X509_num(c.intermediates), 1);
    cf_snp_collateral_free(&c);
    /* errors */
    assert_cf_error(cf_snp_collateral_parse(CF_SLICE_EMPTY, &c), CF_E_NOT_FOUND);
    assert_cf_error(cf_snp_collateral_parse(cf_slice_cstr("no pem here"), &c), CF_E_NOT_FOUND);
    assert_cf_error(cf_snp_collateral_parse(cf_slice_cstr("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
                                            &c),
                    CF_E_MALFORMED);
    assert_cf_error(cf_snp_collateral_parse(cf_slice_cstr("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                                            &c),
                    CF_E_CERT);
    /* Nine certificates: over the limit. */
    cf_buf many;
    cf_buf_init(&many, 0);
    for (int i = 0; i < 9; i++) {
        assert_cf_ok(cf_buf_append_slice(&many, cf_buf_slice(&ask_pem)));
    }
    assert_cf_error(cf_snp_collateral_parse(cf_buf_slice(&many), &c), CF_E_LIMIT);
    cf_buf_free(&many);
    OPENSSL_free(ask_der);
    X509_free(ask);
    cf_buf_free(&chain);
    cf_buf_free(&coll);
    cf_buf_free(&ask_pem);
    cf_buf_free(&der);
}

static const uint8_t GUID_VCEK[16] = {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                      0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
static const uint8_t GUID_ASK[16] = {0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4,
                                     0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82};

static void put_entry(uint8_t *p, const uint8_t guid[16], uint32_t off, uint32_t len)
{
    memcpy(p, guid, 16);
    for (int i = 0; i < 4; i++) {
        p[16 + i] = (uint8_t)(off >> (8 * i));
        p[20 + i] = (uint8_t)(len >> (8 * i));
    }
}

/* A certificate table as the hypervisor returns it in the SNP auxblob. */
static void build_cert_table(cf_buf *out, const cf_buf *vcek_der, const uint8_t *ask_der, size_t ask_len)
{
    uint8_t hdr[3 * 24] = {0};
    uint32_t off = sizeof hdr;
    put_entry(hdr, GUID_VCEK, off, (uint32_t)vcek_der->len);
    put_entry(hdr + 24, GUID_ASK, off + (uint32_t)vcek_der->len, (uint32_t)ask_len);
    cf_buf_init(out, 0);
    assert_cf_ok(cf_buf_append(out, hdr, sizeof hdr));
    assert_cf_ok(cf_buf_append_slice(out, cf_buf_slice(vcek_der)));
    assert_cf_ok(cf_buf_append(out, ask_der, ask_len));
}

static void test_cert_table(void **state)
{
    (void)state;
    cf_buf vcek, table, coll, rep;
    load(V "milan/trustee_vcek.der", &vcek);
    X509 *ask = load_cert(V "roots/milan_ask.pem");
    unsigned char *ask_der = NULL;
    int ask_len = i2d_X509(ask, &ask_der);
    build_cert_table(&table, &vcek, ask_der, (size_t)ask_len);
    cf_snp_cert_table t;
    assert_cf_ok(cf_snp_cert_table_parse(cf_buf_slice(&table), &t));
    assert_int_equal(t.vcek.len, vcek.len);
    assert_memory_equal(t.vcek.ptr, vcek.data, vcek.len);
    assert_int_equal(t.ask.len, (size_t)ask_len);
    assert_int_equal(t.vlek.len, 0);
    /* The collateral made from it verifies the matching report. */
    cf_buf_init(&coll, 0);
    assert_cf_ok(cf_snp_cert_table_to_collateral(cf_buf_slice(&table), CF_SNP_KEY_VCEK, &coll));
    load(V "milan/trustee_report.bin", &rep);
    cf_verify_input in = {.platform = CF_PLATFORM_SNP,
                          .evidence = cf_buf_slice(&rep),
                          .collateral = cf_buf_slice(&coll),
                          .now = T_VALID};
    cf_claims claims;
    assert_cf_ok(cf_attest_verify(&in, &claims));
    cf_claims_free(&claims);
    cf_buf_reset(&coll);
    assert_cf_error(cf_snp_cert_table_to_collateral(cf_buf_slice(&table), CF_SNP_KEY_VLEK, &coll), CF_E_NOT_FOUND);

    /* Malformed tables. */
    uint8_t m[3 * 24 + 8] = {0};
    put_entry(m, GUID_VCEK, 72, 8);
    assert_cf_ok(cf_snp_cert_table_parse(cf_slice_make(m, sizeof m), &t));
    assert_cf_error(cf_snp_cert_table_parse(cf_slice_make(m, 30), &t), CF_E_MALFORMED); /* no terminator */
    put_entry(m, GUID_VCEK, 72, 9);                                                       /* past the end */
    assert_cf_error(cf_snp_cert_table_parse(cf_slice_make(m, sizeof m), &t), CF_E_MALFORMED);
    put_entry(m, GUID_VCEK, UINT32_MAX, 2); /* offset overflow */
    assert_cf_error(cf_snp_cert_table_parse(cf_slice_make(m, sizeof m), &t), CF_E_MALFORMED);
    put_entry(m, GUID_VCEK, 72, 8);
    put_entry(m + 24, GUID_VCEK, 72, 8); /* duplicate */
    assert_cf_error(cf_snp_cert_table_parse(cf_slice_make(m, sizeof m), &t), CF_E_MALFORMED);
    put_entry(m + 24, (const uint8_t[16]){0}, 1, 0); /* dirty terminator */
    assert_cf_error(cf_snp_cert_table_parse(cf_slice_make(m, sizeof m), &t), CF_E_MALFORMED);
    assert_cf_error(cf_snp_cert_table_parse(CF_SLICE_EMPTY, &t), CF_E_MALFORMED);

    OPENSSL_free(ask_der);
    X509_free(ask);
    cf_buf_free(&rep);
    cf_buf_free(&coll);
    cf_buf_free(&table);
    cf_buf_free(&vcek);
}

/* A throwaway CA (P-256) and leaf, to exercise the CRL logic with a CRL we
 * can sign (AMD's CRLs are signed by the ARK, whose key nobody outside AMD
 * has). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, EVP_PKEY *issuer_key, X509 *issuer, long serial)
{
    X509 *c = X509_new();
    assert_non_null(c);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(c, n);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
    X509_NAME_free(n);
    ASN1_TIME_set(X509_getm_notBefore(c), (time_t)(T_VALID - 86400));
    ASN1_TIME_set(X509_getm_notAfter(c), (time_t)(T_VALID + 86400));
    X509_set_pubkey(c, key);
    assert_true(X509_sign(c, issuer_key, EVP_sha256()) > 0);
    return c;
}

static X509_CRL *make_crl(X509 *issuer, EVP_PKEY *key, long revoked_serial, int64_t this_update, int64_t next_update)
{
    X509_CRL *crl = X509_CRL_new();
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer));
    ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)this_update);
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_set(t, (time_t)next_update);
    X509_CRL_set1_nextUpdate(crl, t);
    ASN1_TIME_free(t);
    if (revoked_serial >= 0) {
        X509_REVOKED *rev = X509_REVOKED_new();
        ASN1_INTEGER *s = ASN1_INTEGER_new();
        ASN1_INTEGER_set(s, revoked_serial);
        X509_REVOKED_set_serialNumber(rev, s);
        ASN1_INTEGER_free(s);
        ASN1_TIME *rt = ASN1_TIME_set(NULL, (time_t)this_update);
        X509_REVOKED_set_revocationDate(rev, rt);
        ASN1_TIME_free(rt);
        X509_CRL_add0_revoked(crl, rev);
    }
    assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
    return crl;
}

static void test_crl_check(void **state)
{
    (void)state;
    EVP_PKEY *ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *ca = make_cert("Test ARK", ca_key, ca_key, NULL, 1);
    X509 *leaf = make_cert("Test ASK", leaf_key, ca_key, ca, 42);
    X509_CRL *clean = make_crl(ca, ca_key, -1, T_VALID - 3600, T_VALID + 3600);
    X509_CRL *revoking = make_crl(ca, ca_key, 42, T_VALID - 3600, T_VALID + 3600);
    X509_CRL *forged = make_crl(ca, other_key, -1, T_VALID - 3600, T_VALID + 3600);
    X509_CRL *stale = make_crl(ca, ca_key, -1, T_VALID - 7200, T_VALID - 3600);

    assert_cf_ok(cf_snp_crl_check(clean, ca, leaf, T_VALID));
    assert_cf_error(cf_snp_crl_check(revoking, ca, leaf, T_VALID), CF_E_REVOKED);
    assert_cf_error(cf_snp_crl_check(forged, ca, leaf, T_VALID), CF_E_CERT);
    assert_cf_error(cf_snp_crl_check(stale, ca, leaf, T_VALID), CF_E_EXPIRED);
    assert_cf_error(cf_snp_crl_check(clean, ca, leaf, T_VALID - 7200), CF_E_EXPIRED);
    assert_cf_error(cf_snp_crl_check(clean, leaf, leaf, T_VALID), CF_E_CERT); /* wrong issuer */

    /* A CRL in SNP collateral that is not AMD's (not signed by the ARK)
     * fails closed, even though the chain itself is fine. */
    X509 *ark = NULL;
    assert_cf_ok(cf_snp_root_ark(CF_SNP_PRODUCT_TURIN, &ark));
    X509_CRL *fake_amd = make_crl(ark, other_key, -1, T_VALID - 3600, T_VALID + 3600);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_CRL(bio, fake_amd);
    char *crl_pem = NULL;
    long crl_len = BIO_get_mem_data(bio, &crl_pem);
    cf_buf coll, rep;
    load(V "turin/ms_vcek.pem", &coll);
    assert_cf_ok(cf_buf_append(&coll, crl_pem, (size_t)crl_len));
    load(V "turin/ms_report.bin", &rep);
    cf_verify_input in = {.platform = CF_PLATFORM_SNP,
                          .evidence = cf_buf_slice(&rep),
                          .collateral = cf_buf_slice(&coll),
                          .now = T_VALID};
    cf_claims claims;
    assert_cf_error(cf_attest_verify(&in, &claims), CF_E_CERT);
    assert_non_null(strstr(cf_error_last()->detail, "CRL"));

    /* The same CRL as DER after a DER VCEK (KDS serves it as DER). */
    cf_buf der_coll;
    load(V "turin/virtee_vcek_no_report.der", &der_coll);
    unsigned char *crl_der = NULL;
    int crl_der_len = i2d_X509_CRL(fake_amd, &crl_der);
    assert_true(crl_der_len > 0);
    assert_cf_ok(cf_buf_append(&der_coll, crl_der, (size_t)crl_der_len));
    cf_snp_collateral parsed;
    assert_cf_ok(cf_snp_collateral_parse(cf_buf_slice(&der_coll), &parsed));
    assert_int_equal(sk_X509_CRL_num(parsed.crls), 1);
    assert_cf_error(cf_snp_verify_chain(parsed.vek, parsed.intermediates, CF_SNP_PRODUCT_TURIN, CF_SNP_KEY_VCEK,
                                        parsed.crls, true, T_VALID, NULL),
                    CF_E_CERT);
    cf_snp_collateral_free(&parsed);
    OPENSSL_free(crl_der);
    cf_buf_free(&der_coll);

    cf_buf_free(&rep);
    cf_buf_free(&coll);
    BIO_free(bio);
    X509_CRL_free(fake_amd);
    X509_free(ark);
    X509_CRL_free(clean), X509_CRL_free(revoking), X509_CRL_free(forged), X509_CRL_free(stale);
    X509_free(ca), X509_free(leaf);
    EVP_PKEY_free(ca_key), EVP_PKEY_free(other_key), EVP_PKEY_free(leaf_key);
}

static void test_chain_cache_window(void **state)
{
    (void)state;
    X509 *vlek = load_cert(V "milan/trustee_aws_vlek.der");
    cf_snp_chain_cache cache;
    cf_snp_chain_cache_init(&cache);
    assert_cf_ok(
        cf_snp_verify_chain(vlek, NULL, CF_SNP_PRODUCT_MILAN, CF_SNP_KEY_VLEK, NULL, false, T_VLEK, &cache));
    assert_int_equal(cache.misses, 1);
    assert_cf_ok(
        cf_snp_verify_chain(vlek, NULL, CF_SNP_PRODUCT_MILAN, CF_SNP_KEY_VLEK, NULL, false, T_VLEK + 60, &cache));
    assert_int_equal(cache.hits, 1);
    /* Outside the window the cache does not answer: the chain is re-checked
     * and has expired. */
    assert_cf_error(
        cf_snp_verify_chain(vlek, NULL, CF_SNP_PRODUCT_MILAN, CF_SNP_KEY_VLEK, NULL, false, T_VALID, &cache),
        CF_E_EXPIRED);
    assert_int_equal(cache.hits, 1);
    /* A different product is a different key. */
    assert_cf_error(
        cf_snp_verify_chain(vlek, NULL, CF_SNP_PRODUCT_GENOA, CF_SNP_KEY_VLEK, NULL, false, T_VLEK, &cache),
        CF_E_CERT);
    cf_snp_chain_cache_destroy(&cache);
    X509_free(vlek);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_vectors_verify),
        cmocka_unit_test(test_gosev_debug_report_rejected_by_production_policy),
        cmocka_unit_test(test_vlek_expiry_and_chain),
        cmocka_unit_test(test_mismatched_pairs_fail),
        cmocka_unit_test(test_bad_signature_vceks),
        cmocka_unit_test(test_milan_vcek_against_genoa_ark_fails),
        cmocka_unit_test(test_pinned_roots_match_vectors),
        cmocka_unit_test(test_turin_vcek_extensions),
        cmocka_unit_test(test_extension_value_parsers),
        cmocka_unit_test(test_report_fields),
        cmocka_unit_test(test_report_length_and_format),
        cmocka_unit_test(test_every_signed_byte_flip_fails),
        cmocka_unit_test(test_report_data_binding),
        cmocka_unit_test(test_policy_each_field_accepts_and_rejects),
        cmocka_unit_test(test_policy_validate_names_bad_field),
        cmocka_unit_test(test_manifest_policy_pins_workload),
        cmocka_unit_test(test_verification_time_required),
        cmocka_unit_test(test_collateral_formats),
        cmocka_unit_test(test_cert_table),
        cmocka_unit_test(test_crl_check),
        cmocka_unit_test(test_chain_cache_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
