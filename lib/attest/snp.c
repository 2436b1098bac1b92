/*
 * snp.c — the AMD SEV-SNP verifier (attest.h: cf_snp_verify).
 *
 * Order of checks (each failure names the check):
 *   1. the report parses (exactly 1184 bytes, v2..v5, ECDSA P-384);
 *   2. the policy object and the collateral parse;
 *   3. the VEK certificate's kind (VCEK/VLEK) equals the report's SIGNING_KEY
 *      and the policy allows it; the product (CPUID for v3+, the VEK's
 *      productName for v2) is known, consistent and allowed;
 *   4. VEK -> ASK/ASVK -> pinned ARK of that product at the explicit time
 *      (RSA-PSS), AMD CRL when given (required if the policy says so);
 *   5. the report signature over [0, 0x2A0) under the VEK;
 *   6. the VEK's TCB extensions equal REPORTED_TCB; a VCEK's hwID equals
 *      CHIP_ID (the first 8 bytes on Turin);
 *   7. the policy: debug, migration agent, SMT, VMPL, version, guest SVN,
 *      measurement / host_data / ID-key digest allow-lists, minimum TCB;
 *   8. report_data equals the expected binding.
 * Only then are claims filled.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "attest/snp_internal.h"
#include "confide/encoding.h"
#include "confide/snp.h"

static cf_snp_chain_cache process_cache;
static pthread_once_t process_cache_once = PTHREAD_ONCE_INIT;

static void process_cache_init(void) { cf_snp_chain_cache_init(&process_cache); }

CF_RESULT cf_snp_verify(const cf_verify_input *in, cf_claims *out)
{
    pthread_once(&process_cache_once, process_cache_init);
    return cf_snp_verify_with_cache(in, &process_cache, out);
}

static CF_RESULT pick_product(const cf_snp_report *r, const cf_snp_vek_info *vek, cf_snp_product *out)
{
    cf_snp_product from_cpuid = cf_snp_report_product(r);
    if (r->version >= 3) {
        if (from_cpuid == CF_SNP_PRODUCT_UNKNOWN) {
            CF_BAIL_FMT(CF_E_UNSUPPORTED, "snp report: CPUID family 0x%02x model 0x%02x is not a known SNP product",
                        r->cpuid_fam_id, r->cpuid_mod_id);
        }
        if (vek->product != CF_SNP_PRODUCT_UNKNOWN && vek->product != from_cpuid) {
            CF_BAIL_FMT(CF_E_CERT, "snp: report CPUID says %s but the VEK productName says %s",
                        cf_snp_product_name(from_cpuid), vek->product_name);
        }
        *out = from_cpuid;
        return CF_OK;
    }
    /* v2 reports have no CPUID fields: the VEK's productName decides. */
    CF_ENSURE_MSG(vek->product != CF_SNP_PRODUCT_UNKNOWN, CF_E_CERT,
                  "snp: v2 report and the VEK has no known productName");
    *out = vek->product;
    return CF_OK;
}

static CF_RESULT check_tcb_binding(const cf_snp_report *r, const cf_snp_vek_info *vek, cf_snp_product product)
{
    cf_snp_tcb t = cf_snp_tcb_decode(r->reported_tcb, product);
    char rep[64];
    cf_snp_tcb_format(&t, rep, sizeof rep);
    bool same = t.bl == vek->bl && t.tee == vek->tee && t.snp == vek->snp && t.ucode == vek->ucode;
    if (t.has_fmc) {
        same = same && vek->has_fmc && t.fmc == vek->fmc;
    }
    if (!same) {
        if (vek->has_fmc) {
            CF_BAIL_FMT(CF_E_TCB, "snp: VEK TCB fmc=%u bl=%u tee=%u snp=%u ucode=%u != REPORTED_TCB %s", vek->fmc,
                        vek->bl, vek->tee, vek->snp, vek->ucode, rep);
        }
        CF_BAIL_FMT(CF_E_TCB, "snp: VEK TCB bl=%u tee=%u snp=%u ucode=%u != REPORTED_TCB %s", vek->bl, vek->tee,
                    vek->snp, vek->ucode, rep);
    }
    return CF_OK;
}

static CF_RESULT check_hwid(const cf_snp_report *r, const cf_snp_vek_info *vek, cf_snp_product product)
{
    if (vek->kind == CF_SNP_KEY_VLEK) {
        return CF_OK; /* a VLEK is not bound to a chip; CHIP_ID is zero */
    }
    CF_ENSURE_MSG(!r->mask_chip_key, CF_E_POLICY,
                  "snp: MASK_CHIP_KEY is set, so CHIP_ID cannot be matched with the VCEK's hwID");
    size_t want = product == CF_SNP_PRODUCT_TURIN ? CF_SNP_TURIN_HWID_LEN : CF_SNP_CHIP_ID_LEN;
    CF_ENSURE_MSG(vek->hwid_len == want, CF_E_CERT, "snp: VCEK hwID length does not fit the product");
    CF_ENSURE_MSG(memcmp(vek->hwid, r->chip_id, want) == 0, CF_E_CERT, "snp: VCEK hwID != report CHIP_ID");
    return CF_OK;
}

static bool in_list(const uint8_t *list, size_t count, size_t n, const uint8_t *value)
{
    for (size_t i = 0; i < count; i++) {
        if (memcmp(list + i * n, value, n) == 0) {
            return true;
        }
    }
    return false;
}

CF_RESULT cf_snp_policy_check(const cf_snp_report *r, const cf_snp_policy *p, cf_snp_product product)
{
    CF_ENSURE_MSG(p->allow_debug || !(r->policy & CF_SNP_POLICY_DEBUG), CF_E_POLICY,
                  "snp policy: guest policy allows DEBUG");
    CF_ENSURE_MSG(p->allow_migration_agent || !(r->policy & CF_SNP_POLICY_MIGRATE_MA), CF_E_POLICY,
                  "snp policy: guest policy allows a migration agent");
    /* PLATFORM_INFO bit 0 = SMT enabled on the host (ABI spec Table 23). */
    CF_ENSURE_MSG(p->allow_smt || !(r->platform_info & 1u), CF_E_POLICY, "snp policy: SMT is enabled on the platform");
    if (p->vmpl >= 0 && r->vmpl != (uint32_t)p->vmpl) {
        CF_BAIL_FMT(CF_E_POLICY, "snp policy: VMPL is %u, policy requires %d", r->vmpl, p->vmpl);
    }
    if (r->version < p->min_report_version) {
        CF_BAIL_FMT(CF_E_POLICY, "snp policy: report version %u below min_report_version %u", r->version,
                    p->min_report_version);
    }
    if (r->guest_svn < p->min_guest_svn) {
        CF_BAIL_FMT(CF_E_POLICY, "snp policy: guest SVN %u below min_guest_svn %u", r->guest_svn, p->min_guest_svn);
    }
    CF_ENSURE_MSG(p->measurement_count == 0 || in_list(&p->measurements[0][0], p->measurement_count, 48,
                                                       r->measurement),
                  CF_E_POLICY, "snp policy: MEASUREMENT is not in \"measurements\"");
    CF_ENSURE_MSG(p->host_data_count == 0 || in_list(&p->host_data[0][0], p->host_data_count, 32, r->host_data),
                  CF_E_POLICY, "snp policy: HOST_DATA is not in \"host_data\"");
    CF_ENSURE_MSG(p->id_key_digest_count == 0 || in_list(&p->id_key_digests[0][0], p->id_key_digest_count, 48,
                                                         r->id_key_digest),
                  CF_E_POLICY, "snp policy: ID_KEY_DIGEST is not in \"id_key_digests\"");
    if (p->has_min_tcb) {
        cf_snp_tcb t = cf_snp_tcb_decode(r->reported_tcb, product);
        const struct {
            const char *name;
            uint8_t have, min;
            bool applies;
        } parts[] = {
            {"bl", t.bl, p->min_bl, true},        {"tee", t.tee, p->min_tee, true},
            {"snp", t.snp, p->min_snp, true},     {"ucode", t.ucode, p->min_ucode, true},
            {"fmc", t.fmc, p->min_fmc, t.has_fmc},
        };
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            if (parts[i].applies && parts[i].have < parts[i].min) {
                CF_BAIL_FMT(CF_E_TCB, "snp policy: REPORTED_TCB %s=%u below min_tcb.%s=%u", parts[i].name,
                            parts[i].have, parts[i].name, parts[i].min);
            }
        }
    }
    return CF_OK;
}

/* ---- claims ---------------------------------------------------------------- */

static json_t *hex_json(const uint8_t *p, size_t n)
{
    char s[2 * 64 + 1];
    if (n > 64 || cf_is_error(cf_hex_encode_str(cf_slice_make(p, n), s, sizeof s))) {
        return json_null();
    }
    return json_string(s);
}

static json_t *u64_hex_json(uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "0x%016llx", (unsigned long long)v);
    return json_string(s);
}

static json_t *tcb_json(uint64_t raw, cf_snp_product product)
{
    cf_snp_tcb t = cf_snp_tcb_decode(raw, product);
    json_t *o = json_pack("{s:o,s:i,s:i,s:i,s:i}", "raw", u64_hex_json(raw), "bl", t.bl, "tee", t.tee, "snp", t.snp,
                          "ucode", t.ucode);
    if (o != NULL && t.has_fmc) {
        json_object_set_new(o, "fmc", json_integer(t.fmc));
    }
    return o;
}

static CF_RESULT fill_claims(const cf_snp_report *r, const cf_snp_vek_info *vek, X509 *vek_cert,
                             cf_snp_product product, const cf_verify_input *in, cf_claims *out)
{
    int64_t vek_not_before = 0, vek_not_after = 0;
    CF_GUARD(snp_x509_validity(vek_cert, &vek_not_before, &vek_not_after));
    memset(out, 0, sizeof *out);
    out->platform = CF_PLATFORM_SNP;
    memcpy(out->report_data, r->report_data, CF_REPORT_DATA_LEN);
    memcpy(out->measurement, r->measurement, sizeof r->measurement);
    out->measurement_len = sizeof r->measurement;
    out->debug = (r->policy & CF_SNP_POLICY_DEBUG) != 0;
    cf_snp_tcb t = cf_snp_tcb_decode(r->reported_tcb, product);
    cf_snp_tcb_format(&t, out->tcb, sizeof out->tcb);

    json_t *d = json_object();
    CF_ENSURE(d != NULL, CF_E_NO_MEMORY);
    int err = 0;
    err |= json_object_set_new(d, "platform", json_string("snp"));
    err |= json_object_set_new(d, "verified_at", json_integer(in->now));
    err |= json_object_set_new(d, "version", json_integer(r->version));
    err |= json_object_set_new(d, "product", json_string(cf_snp_product_name(product)));
    err |= json_object_set_new(d, "signing_key", json_string(cf_snp_signing_key_name((cf_snp_signing_key)r->signing_key)));
    err |= json_object_set_new(d, "ark_sha256", hex_json(cf_snp_ark_fingerprint(product), 32));
    err |= json_object_set_new(d, "vek_product_name", json_string(vek->product_name));
    err |= json_object_set_new(d, "vek_not_before", json_integer(vek_not_before));
    err |= json_object_set_new(d, "vek_not_after", json_integer(vek_not_after));
    err |= json_object_set_new(d, "guest_svn", json_integer(r->guest_svn));
    err |= json_object_set_new(
        d, "policy",
        json_pack("{s:o,s:i,s:i,s:b,s:b,s:b,s:b}", "raw", u64_hex_json(r->policy), "abi_major",
                  (int)((r->policy >> 8) & 0xff), "abi_minor", (int)(r->policy & 0xff), "smt",
                  (r->policy & CF_SNP_POLICY_SMT) != 0, "migrate_ma", (r->policy & CF_SNP_POLICY_MIGRATE_MA) != 0,
                  "debug", (r->policy & CF_SNP_POLICY_DEBUG) != 0, "single_socket",
                  (r->policy & CF_SNP_POLICY_SINGLE_SOCKET) != 0));
    err |= json_object_set_new(d, "platform_info",
                               json_pack("{s:o,s:b,s:b}", "raw", u64_hex_json(r->platform_info), "smt_enabled",
                                         (r->platform_info & 1u) != 0, "tsme_enabled", (r->platform_info & 2u) != 0));
    err |= json_object_set_new(d, "vmpl", json_integer(r->vmpl));
    err |= json_object_set_new(d, "author_key_en", json_boolean(r->author_key_en));
    err |= json_object_set_new(d, "mask_chip_key", json_boolean(r->mask_chip_key));
    err |= json_object_set_new(d, "family_id", hex_json(r->family_id, sizeof r->family_id));
    err |= json_object_set_new(d, "image_id", hex_json(r->image_id, sizeof r->image_id));
    err |= json_object_set_new(d, "report_data", hex_json(r->report_data, sizeof r->report_data));
    err |= json_object_set_new(d, "measurement", hex_json(r->measurement, sizeof r->measurement));
    err |= json_object_set_new(d, "host_data", hex_json(r->host_data, sizeof r->host_data));
    err |= json_object_set_new(d, "id_key_digest", hex_json(r->id_key_digest, sizeof r->id_key_digest));
    err |= json_object_set_new(d, "author_key_digest", hex_json(r->author_key_digest, sizeof r->author_key_digest));
    err |= json_object_set_new(d, "report_id", hex_json(r->report_id, sizeof r->report_id));
    err |= json_object_set_new(d, "report_id_ma", hex_json(r->report_id_ma, sizeof r->report_id_ma));
    err |= json_object_set_new(d, "chip_id", hex_json(r->chip_id, sizeof r->chip_id));
    err |= json_object_set_new(d, "reported_tcb", tcb_json(r->reported_tcb, product));
    err |= json_object_set_new(d, "current_tcb", tcb_json(r->current_tcb, product));
    err |= json_object_set_new(d, "committed_tcb", tcb_json(r->committed_tcb, product));
    err |= json_object_set_new(d, "launch_tcb", tcb_json(r->launch_tcb, product));
    char fw[32];
    snprintf(fw, sizeof fw, "%u.%u.%u", r->current_major, r->current_minor, r->current_build);
    err |= json_object_set_new(d, "firmware_current", json_string(fw));
    snprintf(fw, sizeof fw, "%u.%u.%u", r->committed_major, r->committed_minor, r->committed_build);
    err |= json_object_set_new(d, "firmware_committed", json_string(fw));
    if (r->version >= 3) {
        err |= json_object_set_new(d, "cpuid", json_pack("{s:i,s:i,s:i}", "family", r->cpuid_fam_id, "model",
                                                         r->cpuid_mod_id, "stepping", r->cpuid_step));
    }
    if (r->version >= 5) {
        err |= json_object_set_new(d, "launch_mit_vector", u64_hex_json(r->launch_mit_vector));
        err |= json_object_set_new(d, "current_mit_vector", u64_hex_json(r->current_mit_vector));
    }
    err |= json_object_set_new(d, "report_data_checked", json_boolean(in->expected_report_data != NULL));
    if (err != 0) {
        json_decref(d);
        CF_BAIL(CF_E_NO_MEMORY);
    }
    out->details = d;
    return CF_OK;
}

CF_RESULT cf_snp_verify_with_cache(const cf_verify_input *in, cf_snp_chain_cache *cache, cf_claims *out)
{
    cf_result result = CF_OK;
    cf_snp_report report;
    cf_snp_policy policy;
    cf_snp_collateral coll = {0};
    cf_snp_vek_info vek;
    cf_snp_product product = CF_SNP_PRODUCT_UNKNOWN;
    CF_ENSURE_REF(in);
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);

    CF_GUARD(cf_snp_report_parse(in->evidence, &report));
    CF_GUARD(cf_snp_policy_parse(in->policy, &policy));
    CF_GUARD_OUT(cf_snp_collateral_parse(in->collateral, &coll));
    CF_GUARD_OUT(cf_snp_vek_parse(coll.vek, &vek));

    if (report.signing_key != CF_SNP_KEY_VCEK && report.signing_key != CF_SNP_KEY_VLEK) {
        CF_BAIL_OUT(CF_E_UNSUPPORTED, "snp report: SIGNING_KEY is neither VCEK nor VLEK");
    }
    if (report.signing_key != (uint8_t)vek.kind) {
        cf_error_setf(CF_E_CERT, __FILE__, __LINE__, "snp: report is signed by a %s but the certificate is a %s",
                      cf_snp_signing_key_name((cf_snp_signing_key)report.signing_key),
                      cf_snp_signing_key_name(vek.kind));
        result = CF_ERROR;
        goto out;
    }
    CF_ENSURE_MSG_OUT(vek.kind == CF_SNP_KEY_VCEK ? policy.allow_vcek : policy.allow_vlek, CF_E_POLICY,
                      vek.kind == CF_SNP_KEY_VCEK ? "snp policy: VCEK-signed reports are not allowed (signing_keys)"
                                                  : "snp policy: VLEK-signed reports are not allowed (signing_keys)");
    CF_GUARD_OUT(pick_product(&report, &vek, &product));
    if (!policy.products[product]) {
        cf_error_setf(CF_E_POLICY, __FILE__, __LINE__, "snp policy: product %s is not in \"products\"",
                      cf_snp_product_name(product));
        result = CF_ERROR;
        goto out;
    }

    CF_GUARD_OUT(cf_snp_verify_chain(coll.vek, coll.intermediates, product, vek.kind, coll.crls, policy.require_crl,
                                     in->now, cache));
    CF_GUARD_OUT(snp_ecdsa_p384_verify_le(coll.vek, cf_slice_make(in->evidence.ptr, CF_SNP_SIGNED_LEN),
                                          cf_slice_make(report.sig_r, sizeof report.sig_r),
                                          cf_slice_make(report.sig_s, sizeof report.sig_s)));
    CF_GUARD_OUT(check_tcb_binding(&report, &vek, product));
    CF_GUARD_OUT(check_hwid(&report, &vek, product));
    CF_GUARD_OUT(cf_snp_policy_check(&report, &policy, product));
    if (in->expected_report_data != NULL) {
        CF_ENSURE_MSG_OUT(cf_ct_equal(report.report_data, in->expected_report_data, CF_REPORT_DATA_LEN),
                          CF_E_REPORT_DATA, "snp: REPORT_DATA does not equal the expected binding");
    }
    CF_GUARD_OUT(fill_claims(&report, &vek, coll.vek, product, in, out));
out:
    cf_snp_collateral_free(&coll);
    cf_snp_policy_free(&policy);
    return result;
}
