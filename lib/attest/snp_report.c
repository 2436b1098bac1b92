/*
 * snp_report.c — AMD SEV-SNP ATTESTATION_REPORT parser and the VCEK/VLEK
 * certificate-extension parsers (see snp.h).
 *
 * Layout: SEV-SNP ABI spec 56860 (rev 1.57), Table 23 "ATTESTATION_REPORT
 * Structure". Versions 2 (Milan/Genoa firmware before 1.55), 3 (adds CPUID
 * family/model/stepping at 0x188), 4 (same layout) and 5 (adds the launch and
 * current mitigation vectors at 0x1F8/0x200, Turin).
 */
#include <stdio.h>
#include <string.h>

#include "attest/snp_internal.h"
#include "confide/crypto.h"
#include "confide/snp.h"

const char *cf_snp_product_name(cf_snp_product p)
{
    switch (p) {
    case CF_SNP_PRODUCT_MILAN: return "Milan";
    case CF_SNP_PRODUCT_GENOA: return "Genoa";
    case CF_SNP_PRODUCT_TURIN: return "Turin";
    default: return "unknown";
    }
}

cf_snp_product cf_snp_product_from_name(cf_slice name)
{
    /* KDS productName values are "<Product>" or "<Product>-<stepping>". */
    static const struct {
        const char *name;
        cf_snp_product p;
    } names[] = {{"Milan", CF_SNP_PRODUCT_MILAN}, {"Genoa", CF_SNP_PRODUCT_GENOA}, {"Turin", CF_SNP_PRODUCT_TURIN}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i].name);
        if (name.len >= n && memcmp(name.ptr, names[i].name, n) == 0 && (name.len == n || name.ptr[n] == '-')) {
            return names[i].p;
        }
    }
    return CF_SNP_PRODUCT_UNKNOWN;
}

const char *cf_snp_signing_key_name(cf_snp_signing_key k)
{
    switch (k) {
    case CF_SNP_KEY_VCEK: return "vcek";
    case CF_SNP_KEY_VLEK: return "vlek";
    case CF_SNP_KEY_NONE: return "none";
    default: return "reserved";
    }
}

cf_snp_tcb cf_snp_tcb_decode(uint64_t raw, cf_snp_product product)
{
    cf_snp_tcb t = {.raw = raw};
    uint8_t b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(raw >> (8 * i));
    }
    if (product == CF_SNP_PRODUCT_TURIN) {
        /* Turin TCB_VERSION: FMC, BL, TEE, SNP, reserved x3, microcode. */
        t.has_fmc = true;
        t.fmc = b[0];
        t.bl = b[1];
        t.tee = b[2];
        t.snp = b[3];
    } else {
        /* Milan/Genoa: BL, TEE, reserved x4, SNP, microcode. */
        t.bl = b[0];
        t.tee = b[1];
        t.snp = b[6];
    }
    t.ucode = b[7];
    return t;
}

void cf_snp_tcb_format(const cf_snp_tcb *tcb, char *out, size_t outsize)
{
    if (tcb->has_fmc) {
        snprintf(out, outsize, "fmc=%u bl=%u tee=%u snp=%u ucode=%u", tcb->fmc, tcb->bl, tcb->tee, tcb->snp,
                 tcb->ucode);
    } else {
        snprintf(out, outsize, "bl=%u tee=%u snp=%u ucode=%u", tcb->bl, tcb->tee, tcb->snp, tcb->ucode);
    }
}

static CF_RESULT parse_fields(cf_reader *r, cf_snp_report *o)
{
    CF_GUARD(cf_reader_u32le(r, &o->version));                             /* 0x000 */
    CF_ENSURE_MSG(o->version >= CF_SNP_MIN_VERSION && o->version <= CF_SNP_MAX_VERSION, CF_E_UNSUPPORTED,
                  "snp report: version must be 2..5");
    CF_GUARD(cf_reader_u32le(r, &o->guest_svn));                           /* 0x004 */
    CF_GUARD(cf_reader_u64le(r, &o->policy));                              /* 0x008 */
    CF_GUARD(cf_reader_copy(r, o->family_id, sizeof o->family_id));        /* 0x010 */
    CF_GUARD(cf_reader_copy(r, o->image_id, sizeof o->image_id));          /* 0x020 */
    CF_GUARD(cf_reader_u32le(r, &o->vmpl));                                /* 0x030 */
    CF_GUARD(cf_reader_u32le(r, &o->signature_algo));                      /* 0x034 */
    CF_GUARD(cf_reader_u64le(r, &o->current_tcb));                         /* 0x038 */
    CF_GUARD(cf_reader_u64le(r, &o->platform_info));                       /* 0x040 */
    CF_GUARD(cf_reader_u32le(r, &o->flags));                               /* 0x048 */
    CF_GUARD(cf_reader_skip(r, 4));                                        /* 0x04C reserved */
    CF_GUARD(cf_reader_copy(r, o->report_data, sizeof o->report_data));    /* 0x050 */
    CF_GUARD(cf_reader_copy(r, o->measurement, sizeof o->measurement));    /* 0x090 */
    CF_GUARD(cf_reader_copy(r, o->host_data, sizeof o->host_data));        /* 0x0C0 */
    CF_GUARD(cf_reader_copy(r, o->id_key_digest, sizeof o->id_key_digest)); /* 0x0E0 */
    CF_GUARD(cf_reader_copy(r, o->author_key_digest, sizeof o->author_key_digest)); /* 0x110 */
    CF_GUARD(cf_reader_copy(r, o->report_id, sizeof o->report_id));        /* 0x140 */
    CF_GUARD(cf_reader_copy(r, o->report_id_ma, sizeof o->report_id_ma));  /* 0x160 */
    CF_GUARD(cf_reader_u64le(r, &o->reported_tcb));                        /* 0x180 */
    CF_GUARD(cf_reader_u8(r, &o->cpuid_fam_id));                           /* 0x188 (v3+) */
    CF_GUARD(cf_reader_u8(r, &o->cpuid_mod_id));                           /* 0x189 */
    CF_GUARD(cf_reader_u8(r, &o->cpuid_step));                             /* 0x18A */
    CF_GUARD(cf_reader_skip(r, 0x1A0 - 0x18B));                            /* reserved */
    CF_GUARD(cf_reader_copy(r, o->chip_id, sizeof o->chip_id));            /* 0x1A0 */
    CF_GUARD(cf_reader_u64le(r, &o->committed_tcb));                       /* 0x1E0 */
    CF_GUARD(cf_reader_u8(r, &o->current_build));                          /* 0x1E8 */
    CF_GUARD(cf_reader_u8(r, &o->current_minor));
    CF_GUARD(cf_reader_u8(r, &o->current_major));
    CF_GUARD(cf_reader_skip(r, 1));
    CF_GUARD(cf_reader_u8(r, &o->committed_build));                        /* 0x1EC */
    CF_GUARD(cf_reader_u8(r, &o->committed_minor));
    CF_GUARD(cf_reader_u8(r, &o->committed_major));
    CF_GUARD(cf_reader_skip(r, 1));
    CF_GUARD(cf_reader_u64le(r, &o->launch_tcb));                          /* 0x1F0 */
    CF_GUARD(cf_reader_u64le(r, &o->launch_mit_vector));                   /* 0x1F8 (v5+) */
    CF_GUARD(cf_reader_u64le(r, &o->current_mit_vector));                  /* 0x200 (v5+) */
    CF_GUARD(cf_reader_skip(r, CF_SNP_SIGNED_LEN - 0x208));                /* reserved */
    CF_ENSURE(r->pos == CF_SNP_SIGNED_LEN, CF_E_INTERNAL);
    CF_GUARD(cf_reader_copy(r, o->sig_r, sizeof o->sig_r));                /* 0x2A0 */
    CF_GUARD(cf_reader_copy(r, o->sig_s, sizeof o->sig_s));                /* 0x2E8 */
    /* The rest of the signature field is reserved and, being unsigned, must
     * carry nothing: require zeros so one report has one encoding. */
    cf_slice tail;
    CF_GUARD(cf_reader_slice(r, cf_reader_remaining(r), &tail));
    for (size_t i = 0; i < tail.len; i++) {
        CF_ENSURE_MSG(tail.ptr[i] == 0, CF_E_MALFORMED, "snp report: reserved bytes after the signature are not zero");
    }
    CF_GUARD(cf_reader_expect_end(r));

    CF_ENSURE_MSG(o->signature_algo == CF_SNP_SIG_ALGO_ECDSA_P384_SHA384, CF_E_UNSUPPORTED,
                  "snp report: SIGNATURE_ALGO is not ECDSA P-384 with SHA-384");
    CF_ENSURE_MSG(o->vmpl <= 3, CF_E_MALFORMED, "snp report: VMPL above 3");
    o->author_key_en = (o->flags & 1u) != 0;
    o->mask_chip_key = (o->flags & 2u) != 0;
    o->signing_key = (uint8_t)((o->flags >> 2) & 7u);
    if (o->version < 5) {
        /* Fields that only exist from v5 on are reserved (zero) before. */
        CF_ENSURE_MSG(o->launch_mit_vector == 0 && o->current_mit_vector == 0, CF_E_MALFORMED,
                      "snp report: mitigation vectors set in a report older than v5");
    }
    return CF_OK;
}

CF_RESULT cf_snp_report_parse(cf_slice bytes, cf_snp_report *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    if (bytes.len != CF_SNP_REPORT_LEN) {
        CF_BAIL_FMT(CF_E_MALFORMED, "snp report: %zu bytes, expected exactly %d", bytes.len, CF_SNP_REPORT_LEN);
    }
    cf_reader r = cf_reader_make(bytes);
    if (cf_is_error(parse_fields(&r, out))) {
        memset(out, 0, sizeof *out);
        return CF_ERROR;
    }
    return CF_OK;
}

cf_snp_product cf_snp_report_product(const cf_snp_report *r)
{
    if (r->version < 3) {
        return CF_SNP_PRODUCT_UNKNOWN;
    }
    /* Family/model ranges as AMD's KDS assigns them (PPR; go-sev-guest
     * abi.ProductName): family 19h models 00-0Fh Milan, 10-1Fh and A0-AFh
     * (Bergamo/Siena) Genoa; family 1Ah models 00-11h Turin. */
    if (r->cpuid_fam_id == 0x19) {
        if (r->cpuid_mod_id <= 0x0F) {
            return CF_SNP_PRODUCT_MILAN;
        }
        if ((r->cpuid_mod_id >= 0x10 && r->cpuid_mod_id <= 0x1F) ||
            (r->cpuid_mod_id >= 0xA0 && r->cpuid_mod_id <= 0xAF)) {
            return CF_SNP_PRODUCT_GENOA;
        }
    } else if (r->cpuid_fam_id == 0x1A && r->cpuid_mod_id <= 0x11) {
        return CF_SNP_PRODUCT_TURIN;
    }
    return CF_SNP_PRODUCT_UNKNOWN;
}

/* ---- certificate extensions ------------------------------------------------ */

CF_RESULT cf_snp_ext_parse_spl(cf_slice ext, uint8_t *out)
{
    /* A DER INTEGER 0..255: 02 01 vv (vv < 0x80) or 02 02 00 vv (vv >= 0x80). */
    cf_reader r = cf_reader_make(ext);
    uint8_t tag, len, b0, b1;
    CF_GUARD(cf_reader_u8(&r, &tag));
    CF_ENSURE_MSG(tag == 0x02, CF_E_MALFORMED, "snp cert: TCB extension is not an INTEGER");
    CF_GUARD(cf_reader_u8(&r, &len));
    if (len == 1) {
        CF_GUARD(cf_reader_u8(&r, &b0));
        CF_ENSURE_MSG(b0 < 0x80, CF_E_MALFORMED, "snp cert: negative TCB INTEGER");
        *out = b0;
    } else if (len == 2) {
        CF_GUARD(cf_reader_u8(&r, &b0));
        CF_GUARD(cf_reader_u8(&r, &b1));
        CF_ENSURE_MSG(b0 == 0 && b1 >= 0x80, CF_E_MALFORMED, "snp cert: TCB INTEGER out of 0..255 or not minimal");
        *out = b1;
    } else {
        CF_BAIL_MSG(CF_E_MALFORMED, "snp cert: TCB INTEGER length is not 1 or 2");
    }
    CF_ENSURE_MSG(cf_reader_done(&r), CF_E_MALFORMED, "snp cert: bytes after the TCB INTEGER");
    return CF_OK;
}

CF_RESULT cf_snp_ext_parse_hwid(cf_slice ext, uint8_t out[CF_SNP_CHIP_ID_LEN], size_t *out_len)
{
    cf_slice id = ext;
    /* Newer KDS certificates wrap the hwID in an OCTET STRING (04 40 ... or
     * 04 08 ...); older ones store it raw. Lengths never collide: raw is 64
     * or 8, wrapped is 66 or 10. */
    if ((ext.len == 2 + CF_SNP_CHIP_ID_LEN || ext.len == 2 + CF_SNP_TURIN_HWID_LEN) && ext.ptr[0] == 0x04 &&
        ext.ptr[1] == ext.len - 2) {
        id = cf_slice_make(ext.ptr + 2, ext.len - 2);
    }
    CF_ENSURE_MSG(id.len == CF_SNP_CHIP_ID_LEN || id.len == CF_SNP_TURIN_HWID_LEN, CF_E_MALFORMED,
                  "snp cert: hwID is neither 64 nor 8 bytes");
    memset(out, 0, CF_SNP_CHIP_ID_LEN);
    memcpy(out, id.ptr, id.len);
    *out_len = id.len;
    return CF_OK;
}

CF_RESULT cf_snp_ext_parse_product(cf_slice ext, char *out, size_t outsize)
{
    cf_reader r = cf_reader_make(ext);
    uint8_t tag, len;
    cf_slice name;
    CF_GUARD(cf_reader_u8(&r, &tag));
    CF_ENSURE_MSG(tag == 0x16, CF_E_MALFORMED, "snp cert: productName is not an IA5String");
    CF_GUARD(cf_reader_u8(&r, &len));
    CF_ENSURE_MSG(len < 0x80 && len > 0 && (size_t)len < outsize, CF_E_MALFORMED, "snp cert: productName length");
    CF_GUARD(cf_reader_slice(&r, len, &name));
    CF_ENSURE_MSG(cf_reader_done(&r), CF_E_MALFORMED, "snp cert: bytes after productName");
    for (size_t i = 0; i < name.len; i++) {
        CF_ENSURE_MSG(name.ptr[i] >= 0x20 && name.ptr[i] < 0x7F, CF_E_MALFORMED,
                      "snp cert: productName is not printable");
    }
    memcpy(out, name.ptr, name.len);
    out[name.len] = '\0';
    return CF_OK;
}

#define AMD_OID "1.3.6.1.4.1.3704.1."

static CF_RESULT ext_spl(X509 *cert, const char *oid, const char *what, uint8_t *out)
{
    cf_slice ext;
    if (cf_is_error(cf_x509_extension(cert, oid, &ext))) {
        cf_error_add_context(what);
        return CF_ERROR;
    }
    CF_GUARD_MSG(cf_snp_ext_parse_spl(ext, out), what);
    return CF_OK;
}

static CF_RESULT subject_cn(X509 *cert, char *out, size_t outsize)
{
    X509_NAME *subject = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    CF_ENSURE_MSG(idx >= 0, CF_E_CERT, "snp cert: no subject CN");
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
    int n = ASN1_STRING_length(s);
    CF_ENSURE_MSG(n > 0 && (size_t)n < outsize, CF_E_CERT, "snp cert: subject CN length");
    memcpy(out, ASN1_STRING_get0_data(s), (size_t)n);
    out[n] = '\0';
    CF_ENSURE_MSG(strlen(out) == (size_t)n, CF_E_CERT, "snp cert: NUL in subject CN");
    return CF_OK;
}

CF_RESULT cf_snp_vek_parse(X509 *cert, cf_snp_vek_info *out)
{
    CF_ENSURE_REF(cert);
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_snp_vek_info v = {0};
    char cn[64];
    CF_GUARD(subject_cn(cert, cn, sizeof cn));
    if (strcmp(cn, "SEV-VCEK") == 0) {
        v.kind = CF_SNP_KEY_VCEK;
    } else if (strcmp(cn, "SEV-VLEK") == 0) {
        v.kind = CF_SNP_KEY_VLEK;
    } else {
        CF_BAIL_MSG(CF_E_CERT, "snp cert: subject CN is neither SEV-VCEK nor SEV-VLEK");
    }
    cf_slice ext;
    if (cf_is_ok(cf_x509_extension(cert, AMD_OID "2", &ext))) {
        CF_GUARD(cf_snp_ext_parse_product(ext, v.product_name, sizeof v.product_name));
        v.product = cf_snp_product_from_name(cf_slice_cstr(v.product_name));
    } else {
        CF_ENSURE_MSG(cf_error_code_last() == CF_E_NOT_FOUND, CF_E_CERT, "snp cert: extension lookup failed");
    }
    CF_GUARD(ext_spl(cert, AMD_OID "3.1", "snp cert: BL SPL (.3.1)", &v.bl));
    CF_GUARD(ext_spl(cert, AMD_OID "3.2", "snp cert: TEE SPL (.3.2)", &v.tee));
    CF_GUARD(ext_spl(cert, AMD_OID "3.3", "snp cert: SNP SPL (.3.3)", &v.snp));
    CF_GUARD(ext_spl(cert, AMD_OID "3.8", "snp cert: microcode SPL (.3.8)", &v.ucode));
    if (cf_is_ok(cf_x509_extension(cert, AMD_OID "3.9", &ext))) {
        CF_GUARD_MSG(cf_snp_ext_parse_spl(ext, &v.fmc), "snp cert: FMC SPL (.3.9)");
        v.has_fmc = true;
    } else {
        CF_ENSURE_MSG(cf_error_code_last() == CF_E_NOT_FOUND, CF_E_CERT, "snp cert: extension lookup failed");
    }
    if (cf_is_ok(cf_x509_extension(cert, AMD_OID "4", &ext))) {
        CF_GUARD(cf_snp_ext_parse_hwid(ext, v.hwid, &v.hwid_len));
    } else {
        CF_ENSURE_MSG(cf_error_code_last() == CF_E_NOT_FOUND, CF_E_CERT, "snp cert: extension lookup failed");
        /* A VCEK is bound to one chip: it must name it. VLEKs do not. */
        CF_ENSURE_MSG(v.kind == CF_SNP_KEY_VLEK, CF_E_CERT, "snp cert: VCEK without hwID extension");
    }
    cf_error_clear();
    *out = v;
    return CF_OK;
}
