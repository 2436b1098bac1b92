/* tdx_quote.c — Intel TDX quote v4/v5 parser (structure only; see tdx.h).
 *
 * Layout (Intel TDX DCAP Quoting Library API, appendix "Quote Format"):
 *   header 48 B | [v5: body_type u16, body_size u32] | TD report body
 *   | u32 signature_data_len | signature data
 * signature data = ECDSA sig (64) | attestation key (64)
 *   | certification data: type u16 (6) | size u32 | QE report (384)
 *     | QE report sig (64) | auth_len u16 | auth data
 *     | certification data: type u16 (5) | size u32 | PCK chain PEM
 * Every length is checked against its container exactly; anything after the
 * declared signature data is ignored (never parsed, never signed). */
#include <string.h>

#include "confide/tdx.h"

#define ATT_KEY_TYPE_ECDSA_P256 2
#define CERT_DATA_QE_REPORT 6
#define CERT_DATA_PCK_CHAIN 5
#define BODY_TYPE_TD10 2
#define BODY_TYPE_TD15 3

/* Intel's QE vendor ID (939A7233-F79C-4CA9-940A-0DB3957F0607). */
static const uint8_t intel_qe_vendor_id[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                               0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};

static CF_RESULT read_td_report(cf_reader *r, bool td15, cf_tdx_td_report *td)
{
    CF_GUARD(cf_reader_copy(r, td->tee_tcb_svn, sizeof td->tee_tcb_svn));
    CF_GUARD(cf_reader_copy(r, td->mrseam, sizeof td->mrseam));
    CF_GUARD(cf_reader_copy(r, td->mrsignerseam, sizeof td->mrsignerseam));
    CF_GUARD(cf_reader_u64le(r, &td->seam_attributes));
    CF_GUARD(cf_reader_u64le(r, &td->td_attributes));
    CF_GUARD(cf_reader_u64le(r, &td->xfam));
    CF_GUARD(cf_reader_copy(r, td->mrtd, sizeof td->mrtd));
    CF_GUARD(cf_reader_copy(r, td->mrconfigid, sizeof td->mrconfigid));
    CF_GUARD(cf_reader_copy(r, td->mrowner, sizeof td->mrowner));
    CF_GUARD(cf_reader_copy(r, td->mrownerconfig, sizeof td->mrownerconfig));
    for (size_t i = 0; i < 4; i++) {
        CF_GUARD(cf_reader_copy(r, td->rtmr[i], sizeof td->rtmr[i]));
    }
    CF_GUARD(cf_reader_copy(r, td->report_data, sizeof td->report_data));
    td->is_td15 = td15;
    if (td15) {
        CF_GUARD(cf_reader_copy(r, td->tee_tcb_svn2, sizeof td->tee_tcb_svn2));
        CF_GUARD(cf_reader_copy(r, td->mrservicetd, sizeof td->mrservicetd));
    }
    return CF_OK;
}

static CF_RESULT read_qe_report(cf_slice raw, cf_tdx_qe_report *qe)
{
    cf_reader r = cf_reader_make(raw);
    CF_GUARD(cf_reader_copy(&r, qe->cpusvn, sizeof qe->cpusvn));
    CF_GUARD(cf_reader_u32le(&r, &qe->miscselect));
    CF_GUARD(cf_reader_skip(&r, 28));
    CF_GUARD(cf_reader_copy(&r, qe->attributes, sizeof qe->attributes));
    CF_GUARD(cf_reader_copy(&r, qe->mrenclave, sizeof qe->mrenclave));
    CF_GUARD(cf_reader_skip(&r, 32));
    CF_GUARD(cf_reader_copy(&r, qe->mrsigner, sizeof qe->mrsigner));
    CF_GUARD(cf_reader_skip(&r, 96));
    CF_GUARD(cf_reader_u16le(&r, &qe->isvprodid));
    CF_GUARD(cf_reader_u16le(&r, &qe->isvsvn));
    CF_GUARD(cf_reader_skip(&r, 60));
    CF_GUARD(cf_reader_copy(&r, qe->report_data, sizeof qe->report_data));
    return cf_reader_expect_end(&r);
}

static CF_RESULT parse_signature_data(cf_slice sig_data, cf_tdx_quote *q)
{
    cf_reader r = cf_reader_make(sig_data);
    uint16_t type;
    uint32_t size;
    cf_slice cert;
    CF_ENSURE_MSG(cf_is_ok(cf_reader_copy(&r, q->signature, 64)) && cf_is_ok(cf_reader_copy(&r, q->attestation_key, 64)),
                  CF_E_MALFORMED, "tdx quote: certification data size mismatch (signature data too short)");
    CF_ENSURE_MSG(cf_is_ok(cf_reader_u16le(&r, &type)) && cf_is_ok(cf_reader_u32le(&r, &size)), CF_E_MALFORMED,
                  "tdx quote: certification data size mismatch (no certification data header)");
    if (type != CERT_DATA_QE_REPORT) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED, "tdx quote: certification data type %u (expected 6, QE report)", type);
    }
    CF_ENSURE_MSG(size == cf_reader_remaining(&r), CF_E_MALFORMED,
                  "tdx quote: certification data size mismatch (type 6 size vs signature data length)");
    CF_GUARD(cf_reader_slice(&r, size, &cert));

    cf_reader c = cf_reader_make(cert);
    uint16_t auth_len;
    CF_ENSURE_MSG(cf_is_ok(cf_reader_slice(&c, CF_TDX_QE_REPORT_LEN, &q->qe_report_raw)) &&
                      cf_is_ok(cf_reader_copy(&c, q->qe_report_signature, 64)) &&
                      cf_is_ok(cf_reader_u16le(&c, &auth_len)) &&
                      cf_is_ok(cf_reader_slice(&c, auth_len, &q->qe_auth_data)),
                  CF_E_MALFORMED, "tdx quote: QE report certification data truncated");
    CF_GUARD(read_qe_report(q->qe_report_raw, &q->qe_report));
    CF_ENSURE_MSG(cf_is_ok(cf_reader_u16le(&c, &type)) && cf_is_ok(cf_reader_u32le(&c, &size)), CF_E_MALFORMED,
                  "tdx quote: certification data size mismatch (no PCK chain header)");
    if (type != CERT_DATA_PCK_CHAIN) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED, "tdx quote: nested certification data type %u (expected 5, PCK chain)",
                    type);
    }
    CF_ENSURE_MSG(size == cf_reader_remaining(&c), CF_E_MALFORMED,
                  "tdx quote: certification data size mismatch (PCK chain size)");
    CF_GUARD(cf_reader_slice(&c, size, &q->pck_chain_pem));
    return CF_OK;
}

CF_RESULT cf_tdx_quote_parse(cf_slice bytes, cf_tdx_quote *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    CF_ENSURE_MSG(bytes.len <= CF_TDX_QUOTE_MAX, CF_E_TOO_LARGE, "tdx quote: larger than 64 KiB");
    cf_tdx_quote q;
    memset(&q, 0, sizeof q);
    cf_reader r = cf_reader_make(bytes);
    uint16_t reserved16;
    CF_ENSURE_MSG(bytes.len >= CF_TDX_HEADER_LEN, CF_E_MALFORMED, "tdx quote: shorter than its 48-byte header");
    CF_GUARD(cf_reader_u16le(&r, &q.version));
    CF_GUARD(cf_reader_u16le(&r, &q.att_key_type));
    CF_GUARD(cf_reader_u32le(&r, &q.tee_type));
    /* TEE type first: an SGX quote is "not TDX" whatever its version. */
    if (q.tee_type != CF_TDX_TEE_TYPE) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED, "tdx quote: tee_type 0x%x is not TDX (0x81)", (unsigned)q.tee_type);
    }
    if (q.version != 4 && q.version != 5) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED, "tdx quote: unsupported version %u (expected 4 or 5)", q.version);
    }
    if (q.att_key_type != ATT_KEY_TYPE_ECDSA_P256) {
        CF_BAIL_FMT(CF_E_UNSUPPORTED, "tdx quote: attestation key type %u (expected 2, ECDSA P-256)",
                    q.att_key_type);
    }
    CF_GUARD(cf_reader_u16le(&r, &reserved16)); /* reserved (v4: QE SVN, unsigned by meaning) */
    CF_GUARD(cf_reader_u16le(&r, &reserved16));
    CF_GUARD(cf_reader_copy(&r, q.qe_vendor_id, sizeof q.qe_vendor_id));
    CF_GUARD(cf_reader_copy(&r, q.user_data, sizeof q.user_data));
    CF_ENSURE_MSG(memcmp(q.qe_vendor_id, intel_qe_vendor_id, 16) == 0, CF_E_UNSUPPORTED,
                  "tdx quote: QE vendor ID is not Intel's");

    bool td15 = false;
    if (q.version == 4) {
        q.body_type = BODY_TYPE_TD10;
    } else {
        uint32_t body_size;
        CF_ENSURE_MSG(cf_is_ok(cf_reader_u16le(&r, &q.body_type)) && cf_is_ok(cf_reader_u32le(&r, &body_size)),
                      CF_E_MALFORMED, "tdx quote: v5 body descriptor truncated");
        if (q.body_type == BODY_TYPE_TD10) {
            CF_ENSURE_MSG(body_size == CF_TDX_TD10_BODY_LEN, CF_E_MALFORMED, "tdx quote: TD 1.0 body size is not 584");
        } else if (q.body_type == BODY_TYPE_TD15) {
            CF_ENSURE_MSG(body_size == CF_TDX_TD15_BODY_LEN, CF_E_MALFORMED, "tdx quote: TD 1.5 body size is not 648");
            td15 = true;
        } else {
            CF_BAIL_FMT(CF_E_UNSUPPORTED, "tdx quote: v5 body type %u is not a TD report (2 or 3)", q.body_type);
        }
    }
    CF_ENSURE_MSG(cf_is_ok(read_td_report(&r, td15, &q.td)), CF_E_MALFORMED, "tdx quote: TD report truncated");
    q.signed_region = cf_slice_make(bytes.ptr, r.pos);

    uint32_t sig_len;
    cf_slice sig_data;
    CF_ENSURE_MSG(cf_is_ok(cf_reader_u32le(&r, &sig_len)), CF_E_MALFORMED, "tdx quote: signature data length missing");
    CF_ENSURE_MSG(sig_len <= cf_reader_remaining(&r), CF_E_MALFORMED,
                  "tdx quote: certification data size mismatch (signature data longer than the quote)");
    CF_GUARD(cf_reader_slice(&r, sig_len, &sig_data));
    CF_GUARD(parse_signature_data(sig_data, &q));
    q.quote_len = r.pos;
    q.trailing_len = cf_reader_remaining(&r);
    *out = q;
    return CF_OK;
}
