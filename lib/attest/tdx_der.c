/* tdx_der.c — bounded DER reader for the PCK certificate's SGX extension.
 *
 * Intel SGX PCK Certificate and CRL Profile, §1.3.5 "Intel SGX Extensions":
 *   SGXExtensions ::= SEQUENCE {
 *     SEQUENCE { OID ..13.1.1 PPID,  OCTET STRING (16) }
 *     SEQUENCE { OID ..13.1.2 TCB,   SEQUENCE {
 *                  SEQUENCE { OID ..13.1.2.1..16 compN, INTEGER } x16,
 *                  SEQUENCE { OID ..13.1.2.17 PCESVN, INTEGER },
 *                  SEQUENCE { OID ..13.1.2.18 CPUSVN, OCTET STRING (16) } } }
 *     SEQUENCE { OID ..13.1.3 PCE-ID, OCTET STRING (2) }
 *     SEQUENCE { OID ..13.1.4 FMSPC,  OCTET STRING (6) }
 *     SEQUENCE { OID ..13.1.5 SGX Type, ENUMERATED }
 *     ... (platform instance ID, configuration: optional, skipped) }
 * Only definite lengths of at most two length octets; every element must
 * fill its container exactly; each required element exactly once. */
#include <string.h>

#include "confide/tdx.h"

#define TAG_INTEGER 0x02
#define TAG_OCTET_STRING 0x04
#define TAG_OID 0x06
#define TAG_ENUMERATED 0x0a
#define TAG_SEQUENCE 0x30

/* DER of OID 1.2.840.113741.1.13.1 */
static const uint8_t sgx_ext_oid[] = {0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01};

static CF_RESULT der_tlv(cf_reader *r, uint8_t want_tag, cf_slice *value)
{
    uint8_t tag, l0;
    size_t len;
    CF_GUARD(cf_reader_u8(r, &tag));
    CF_ENSURE_MSG(tag == want_tag, CF_E_MALFORMED, "PCK SGX extension: unexpected DER tag");
    CF_GUARD(cf_reader_u8(r, &l0));
    if (l0 < 0x80) {
        len = l0;
    } else if (l0 == 0x81) {
        uint8_t l1;
        CF_GUARD(cf_reader_u8(r, &l1));
        CF_ENSURE_MSG(l1 >= 0x80, CF_E_MALFORMED, "PCK SGX extension: non-minimal DER length");
        len = l1;
    } else if (l0 == 0x82) {
        uint16_t l2;
        CF_GUARD(cf_reader_u16be(r, &l2));
        CF_ENSURE_MSG(l2 >= 0x100, CF_E_MALFORMED, "PCK SGX extension: non-minimal DER length");
        len = l2;
    } else {
        CF_BAIL_MSG(CF_E_MALFORMED, "PCK SGX extension: unsupported DER length form");
    }
    CF_ENSURE_MSG(cf_is_ok(cf_reader_slice(r, len, value)), CF_E_MALFORMED, "PCK SGX extension: truncated DER");
    return CF_OK;
}

/* Non-negative INTEGER or ENUMERATED up to `max`, minimal encoding. */
static CF_RESULT der_uint(cf_reader *r, uint8_t tag, uint32_t max, uint32_t *out)
{
    cf_slice v;
    CF_GUARD(der_tlv(r, tag, &v));
    CF_ENSURE_MSG(v.len >= 1 && v.len <= 4, CF_E_MALFORMED, "PCK SGX extension: integer length");
    CF_ENSURE_MSG((v.ptr[0] & 0x80) == 0, CF_E_MALFORMED, "PCK SGX extension: negative integer");
    CF_ENSURE_MSG(v.len == 1 || v.ptr[0] != 0 || (v.ptr[1] & 0x80), CF_E_MALFORMED,
                  "PCK SGX extension: non-minimal integer");
    uint32_t x = 0;
    for (size_t i = 0; i < v.len; i++) {
        x = (x << 8) | v.ptr[i];
    }
    CF_ENSURE_MSG(x <= max, CF_E_MALFORMED, "PCK SGX extension: integer out of range");
    *out = x;
    return CF_OK;
}

static CF_RESULT der_octets(cf_reader *r, uint8_t *dst, size_t n)
{
    cf_slice v;
    CF_GUARD(der_tlv(r, TAG_OCTET_STRING, &v));
    CF_ENSURE_MSG(v.len == n, CF_E_MALFORMED, "PCK SGX extension: OCTET STRING of the wrong size");
    memcpy(dst, v.ptr, n);
    return CF_OK;
}

/* OID under the SGX arc: returns the suffix arcs (1 or 2 bytes, each < 128). */
static CF_RESULT der_sgx_oid(cf_reader *r, uint8_t suffix[2], size_t *suffix_len)
{
    cf_slice v;
    CF_GUARD(der_tlv(r, TAG_OID, &v));
    CF_ENSURE_MSG(v.len > sizeof sgx_ext_oid && v.len <= sizeof sgx_ext_oid + 2 &&
                      memcmp(v.ptr, sgx_ext_oid, sizeof sgx_ext_oid) == 0,
                  CF_E_MALFORMED, "PCK SGX extension: OID outside 1.2.840.113741.1.13.1");
    *suffix_len = v.len - sizeof sgx_ext_oid;
    for (size_t i = 0; i < *suffix_len; i++) {
        suffix[i] = v.ptr[sizeof sgx_ext_oid + i];
        CF_ENSURE_MSG(suffix[i] < 0x80, CF_E_MALFORMED, "PCK SGX extension: unexpected OID arc");
    }
    return CF_OK;
}

/* One element `SEQUENCE { OID under the SGX arc, value }`: *ir is left at
 * the value, inside the element. */
static CF_RESULT der_sgx_element(cf_reader *r, cf_reader *ir, uint8_t suffix[2], size_t *suffix_len)
{
    cf_slice item;
    CF_GUARD(der_tlv(r, TAG_SEQUENCE, &item));
    *ir = cf_reader_make(item);
    return der_sgx_oid(ir, suffix, suffix_len);
}

static CF_RESULT parse_tcb(cf_slice tcb_seq, cf_tdx_pck_ext *out)
{
    cf_reader r = cf_reader_make(tcb_seq);
    uint32_t seen = 0; /* bit i-1 for component i, 17 pcesvn, 18 cpusvn */
    while (!cf_reader_done(&r)) {
        cf_reader ir;
        uint8_t suffix[2];
        size_t slen;
        CF_GUARD(der_sgx_element(&r, &ir, suffix, &slen));
        CF_ENSURE_MSG(slen == 2 && suffix[0] == 2 && suffix[1] >= 1 && suffix[1] <= 18, CF_E_MALFORMED,
                      "PCK SGX extension: unknown TCB element");
        uint8_t idx = suffix[1];
        CF_ENSURE_MSG((seen & (1u << (idx - 1))) == 0, CF_E_MALFORMED, "PCK SGX extension: duplicate TCB element");
        seen |= 1u << (idx - 1);
        uint32_t v;
        if (idx <= 16) {
            CF_GUARD(der_uint(&ir, TAG_INTEGER, 255, &v));
            out->sgx_comp_svn[idx - 1] = (uint8_t)v;
        } else if (idx == 17) {
            CF_GUARD(der_uint(&ir, TAG_INTEGER, 65535, &v));
            out->pcesvn = (uint16_t)v;
        } else {
            CF_GUARD(der_octets(&ir, out->cpusvn, 16));
        }
        CF_ENSURE_MSG(cf_reader_done(&ir), CF_E_MALFORMED, "PCK SGX extension: trailing bytes in TCB element");
    }
    CF_ENSURE_MSG(seen == (1u << 18) - 1, CF_E_MALFORMED, "PCK SGX extension: TCB element missing");
    return CF_OK;
}

CF_RESULT cf_tdx_pck_ext_parse(cf_slice der, cf_tdx_pck_ext *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_tdx_pck_ext ext;
    memset(&ext, 0, sizeof ext);
    cf_reader outer = cf_reader_make(der);
    cf_slice seq;
    CF_GUARD(der_tlv(&outer, TAG_SEQUENCE, &seq));
    CF_ENSURE_MSG(cf_reader_done(&outer), CF_E_MALFORMED, "PCK SGX extension: trailing bytes");
    cf_reader r = cf_reader_make(seq);
    unsigned seen = 0;
    size_t count = 0;
    while (!cf_reader_done(&r)) {
        CF_ENSURE_MSG(++count <= 16, CF_E_LIMIT, "PCK SGX extension: too many elements");
        cf_reader ir;
        uint8_t suffix[2];
        size_t slen;
        CF_GUARD(der_sgx_element(&r, &ir, suffix, &slen));
        CF_ENSURE_MSG(slen == 1, CF_E_MALFORMED, "PCK SGX extension: unexpected element OID");
        uint8_t idx = suffix[0];
        if (idx >= 1 && idx <= 5) {
            CF_ENSURE_MSG((seen & (1u << idx)) == 0, CF_E_MALFORMED, "PCK SGX extension: duplicate element");
            seen |= 1u << idx;
        }
        uint32_t v;
        cf_slice tcb;
        switch (idx) {
        case 1: CF_GUARD(der_octets(&ir, ext.ppid, sizeof ext.ppid)); break;
        case 2:
            CF_GUARD(der_tlv(&ir, TAG_SEQUENCE, &tcb));
            CF_GUARD(parse_tcb(tcb, &ext));
            break;
        case 3: CF_GUARD(der_octets(&ir, ext.pceid, sizeof ext.pceid)); break;
        case 4: CF_GUARD(der_octets(&ir, ext.fmspc, sizeof ext.fmspc)); break;
        case 5:
            CF_GUARD(der_uint(&ir, TAG_ENUMERATED, 2, &v));
            ext.sgx_type = (int)v;
            break;
        default:
            /* Platform instance ID, configuration (multi-package platforms):
             * not used for TDX decisions; the element must still be one
             * well-formed value. */
            {
                uint8_t tag;
                CF_GUARD(cf_reader_u8(&ir, &tag));
                ir.pos--;
                cf_slice skip;
                CF_GUARD(der_tlv(&ir, tag, &skip));
            }
            break;
        }
        CF_ENSURE_MSG(cf_reader_done(&ir), CF_E_MALFORMED, "PCK SGX extension: trailing bytes in element");
    }
    CF_ENSURE_MSG((seen & 0x3e) == 0x3e, CF_E_MALFORMED, "PCK SGX extension: required element missing");
    *out = ext;
    return CF_OK;
}
