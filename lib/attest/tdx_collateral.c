/* tdx_collateral.c — TDX collateral: QuoteCollateralV3 JSON, Intel TCB info
 * v3 and QE identity v2 parsing, the raw-span scan for PCS bodies, and the
 * assembler that turns separate PCS files into one QuoteCollateralV3 JSON.
 * Formats: Intel PCS API v4 ("Get TDX TCB Information", "Get TDX QE
 * Identity"); dcap-qvl QuoteCollateralV3 (docs/attestation.md §Intel TDX). */
#include <stdlib.h>
#include <string.h>

#include "confide/crypto.h"
#include "confide/encoding.h"
#include "confide/json.h"
#include "tdx_internal.h"

#define COLLATERAL_MAX (1024u * 1024u)
#define SCAN_MAX_DEPTH 64

/* ---- Small typed accessors (every one names the field on failure) -------- */

static CF_RESULT get_str(const json_t *obj, const char *key, const char **out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || !json_is_string(v)) {
        CF_BAIL_FMT(CF_E_MALFORMED, "tdx collateral: \"%s\" missing or not a string", key);
    }
    *out = json_string_value(v);
    return CF_OK;
}

static CF_RESULT get_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || !json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        CF_BAIL_FMT(CF_E_MALFORMED, "tdx collateral: \"%s\" missing or not an integer in range", key);
    }
    *out = json_integer_value(v);
    return CF_OK;
}

static CF_RESULT hex_exact(const char *hex, uint8_t *out, size_t n, const char *what)
{
    size_t got = 0;
    size_t len = strlen(hex);
    if (len != 2 * n || cf_is_error(cf_hex_decode_fixed(cf_slice_make(hex, len), out, n, &got)) || got != n) {
        CF_BAIL_FMT(CF_E_MALFORMED, "tdx collateral: \"%s\" is not %zu bytes of hex", what, n);
    }
    return CF_OK;
}

static CF_RESULT get_hex(const json_t *obj, const char *key, uint8_t *out, size_t n)
{
    const char *s;
    CF_GUARD(get_str(obj, key, &s));
    return hex_exact(s, out, n, key);
}

/* 16 hex digits holding 8 bytes in quote order, i.e. a little-endian u64
 * (TCB info attributes / attributesMask, Intel PCS TCB info v3). */
static CF_RESULT get_hex_le64(const json_t *obj, const char *key, uint64_t *out)
{
    uint8_t b[8];
    CF_GUARD(get_hex(obj, key, b, sizeof b));
    cf_reader r = cf_reader_make(cf_slice_make(b, sizeof b));
    return cf_reader_u64le(&r, out);
}

static CF_RESULT get_time(const json_t *obj, const char *key, int64_t *out)
{
    const char *s;
    CF_GUARD(get_str(obj, key, &s));
    CF_GUARD_MSG(tdx_parse_time(s, out), key);
    return CF_OK;
}

CF_RESULT cf_tdx_tcb_status_parse(const char *s, cf_tdx_tcb_status *out)
{
    static const struct {
        const char *name;
        cf_tdx_tcb_status st;
    } map[] = {
        {"UpToDate", CF_TDX_TCB_UP_TO_DATE},
        {"SWHardeningNeeded", CF_TDX_TCB_SW_HARDENING_NEEDED},
        {"ConfigurationNeeded", CF_TDX_TCB_CONFIGURATION_NEEDED},
        {"ConfigurationAndSWHardeningNeeded", CF_TDX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED},
        {"OutOfDate", CF_TDX_TCB_OUT_OF_DATE},
        {"OutOfDateConfigurationNeeded", CF_TDX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED},
        {"Revoked", CF_TDX_TCB_REVOKED},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (s != NULL && strcmp(s, map[i].name) == 0) {
            *out = map[i].st;
            return CF_OK;
        }
    }
    CF_BAIL_MSG(CF_E_MALFORMED, "tdx collateral: unknown tcbStatus");
}

const char *cf_tdx_tcb_status_name(cf_tdx_tcb_status s)
{
    switch (s) {
    case CF_TDX_TCB_UP_TO_DATE: return "UpToDate";
    case CF_TDX_TCB_SW_HARDENING_NEEDED: return "SWHardeningNeeded";
    case CF_TDX_TCB_CONFIGURATION_NEEDED: return "ConfigurationNeeded";
    case CF_TDX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED: return "ConfigurationAndSWHardeningNeeded";
    case CF_TDX_TCB_OUT_OF_DATE: return "OutOfDate";
    case CF_TDX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED: return "OutOfDateConfigurationNeeded";
    case CF_TDX_TCB_REVOKED: return "Revoked";
    case CF_TDX_TCB_NOT_SUPPORTED: return "TCB_NOT_SUPPORTED";
    case CF_TDX_TCB_UNKNOWN: break;
    }
    return "Unknown";
}

/* Common part of every level: tcbDate, tcbStatus, advisoryIDs. */
static CF_RESULT parse_level_common(const json_t *lvl, cf_tdx_tcb_level *out)
{
    const char *status;
    int64_t ignored;
    CF_GUARD(get_str(lvl, "tcbDate", &out->tcb_date));
    CF_GUARD_MSG(tdx_parse_time(out->tcb_date, &ignored), "tcbDate");
    CF_GUARD(get_str(lvl, "tcbStatus", &status));
    CF_GUARD(cf_tdx_tcb_status_parse(status, &out->status));
    const json_t *adv = json_object_get(lvl, "advisoryIDs");
    if (adv != NULL) {
        CF_ENSURE_MSG(json_is_array(adv) && json_array_size(adv) <= 256, CF_E_MALFORMED,
                      "tdx collateral: advisoryIDs is not an array of at most 256 strings");
        for (size_t i = 0; i < json_array_size(adv); i++) {
            CF_ENSURE_MSG(json_is_string(json_array_get(adv, i)), CF_E_MALFORMED,
                          "tdx collateral: advisoryIDs element is not a string");
        }
        out->advisory_ids = adv;
    }
    return CF_OK;
}

static CF_RESULT parse_components(const json_t *tcb, const char *key, uint8_t out[16])
{
    const json_t *arr = json_object_get(tcb, key);
    if (!json_is_array(arr) || json_array_size(arr) != 16) {
        CF_BAIL_FMT(CF_E_MALFORMED, "tdx collateral: \"%s\" is not an array of 16 components", key);
    }
    for (size_t i = 0; i < 16; i++) {
        int64_t svn;
        CF_GUARD_MSG(get_int(json_array_get(arr, i), "svn", 0, 255, &svn), key);
        out[i] = (uint8_t)svn;
    }
    return CF_OK;
}

static CF_RESULT parse_isvsvn_levels(const json_t *arr, cf_tdx_tcb_level *levels, size_t *n_out)
{
    CF_ENSURE_MSG(json_is_array(arr) && json_array_size(arr) >= 1 && json_array_size(arr) <= CF_TDX_MAX_TCB_LEVELS,
                  CF_E_MALFORMED, "tdx collateral: tcbLevels is not an array of 1..64 levels");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *lvl = json_array_get(arr, i);
        int64_t isvsvn;
        CF_ENSURE_MSG(json_is_object(lvl), CF_E_MALFORMED, "tdx collateral: tcb level is not an object");
        CF_GUARD_MSG(get_int(json_object_get(lvl, "tcb"), "isvsvn", 0, 65535, &isvsvn), "tcbLevels");
        levels[i].isvsvn = (uint16_t)isvsvn;
        CF_GUARD(parse_level_common(lvl, &levels[i]));
    }
    *n_out = json_array_size(arr);
    return CF_OK;
}

static CF_RESULT load_object(cf_slice raw, json_t **out)
{
    json_error_t err;
    CF_ENSURE_MSG(raw.len > 0 && raw.len <= COLLATERAL_MAX, CF_E_TOO_LARGE, "tdx collateral: object empty or over 1 MiB");
    json_t *j = json_loadb((const char *)raw.ptr, raw.len, JSON_REJECT_DUPLICATES, &err);
    CF_ENSURE_MSG(j != NULL, CF_E_MALFORMED, "tdx collateral: not valid JSON (or duplicate keys)");
    if (!json_is_object(j)) {
        json_decref(j);
        CF_BAIL_MSG(CF_E_MALFORMED, "tdx collateral: not a JSON object");
    }
    *out = j;
    return CF_OK;
}

static CF_RESULT parse_tcb_info_json(const json_t *j, cf_tdx_tcb_info *t)
{
    const char *id;
    int64_t version, tcb_type;
    CF_GUARD(get_str(j, "id", &id));
    CF_ENSURE_MSG(strcmp(id, "TDX") == 0, CF_E_UNSUPPORTED, "tdx collateral: tcbInfo id is not \"TDX\"");
    CF_GUARD(get_int(j, "version", 0, 100, &version));
    CF_ENSURE_MSG(version == 3, CF_E_UNSUPPORTED, "tdx collateral: tcbInfo version is not 3");
    CF_GUARD(get_time(j, "issueDate", &t->issue_date));
    CF_GUARD(get_time(j, "nextUpdate", &t->next_update));
    CF_GUARD(get_hex(j, "fmspc", t->fmspc, sizeof t->fmspc));
    CF_GUARD(get_hex(j, "pceId", t->pceid, sizeof t->pceid));
    CF_GUARD(get_int(j, "tcbType", 0, 0, &tcb_type));
    CF_GUARD(get_int(j, "tcbEvaluationDataNumber", 0, INT32_MAX, &t->tcb_evaluation_data_number));

    /* Intel PCS API v4: a TDX TCB info always carries tdxModule. Without it
     * nothing would check the quote's MRSIGNERSEAM and SEAM attributes for
     * quotes that use no module identity, so its absence is refused. */
    const json_t *mod = json_object_get(j, "tdxModule");
    CF_ENSURE_MSG(json_is_object(mod), CF_E_MALFORMED, "tdx collateral: tcbInfo has no tdxModule object");
    t->has_module = true;
    CF_GUARD_MSG(get_hex(mod, "mrsigner", t->module_mrsigner, CF_TDX_MR_LEN), "tdxModule");
    CF_GUARD_MSG(get_hex_le64(mod, "attributes", &t->module_attributes), "tdxModule");
    CF_GUARD_MSG(get_hex_le64(mod, "attributesMask", &t->module_attributes_mask), "tdxModule");
    const json_t *ids = json_object_get(j, "tdxModuleIdentities");
    if (ids != NULL) {
        CF_ENSURE_MSG(json_is_array(ids) && json_array_size(ids) <= CF_TDX_MAX_MODULE_IDS, CF_E_MALFORMED,
                      "tdx collateral: tdxModuleIdentities is not an array of at most 16");
        for (size_t i = 0; i < json_array_size(ids); i++) {
            const json_t *mi = json_array_get(ids, i);
            cf_tdx_module_identity *dst = &t->module_ids[i];
            const char *mid;
            CF_ENSURE_MSG(json_is_object(mi), CF_E_MALFORMED, "tdx collateral: module identity is not an object");
            CF_GUARD_MSG(get_str(mi, "id", &mid), "tdxModuleIdentities");
            CF_ENSURE_MSG(strlen(mid) < sizeof dst->id, CF_E_MALFORMED, "tdx collateral: module identity id too long");
            memcpy(dst->id, mid, strlen(mid) + 1);
            CF_GUARD_MSG(get_hex(mi, "mrsigner", dst->mrsigner, CF_TDX_MR_LEN), "tdxModuleIdentities");
            CF_GUARD_MSG(get_hex_le64(mi, "attributes", &dst->attributes), "tdxModuleIdentities");
            CF_GUARD_MSG(get_hex_le64(mi, "attributesMask", &dst->attributes_mask), "tdxModuleIdentities");
            CF_GUARD_MSG(parse_isvsvn_levels(json_object_get(mi, "tcbLevels"), dst->levels, &dst->n_levels),
                         "tdxModuleIdentities");
        }
        t->n_module_ids = json_array_size(ids);
    }
    const json_t *lv = json_object_get(j, "tcbLevels");
    CF_ENSURE_MSG(json_is_array(lv) && json_array_size(lv) >= 1 && json_array_size(lv) <= CF_TDX_MAX_TCB_LEVELS,
                  CF_E_MALFORMED, "tdx collateral: tcbInfo.tcbLevels is not an array of 1..64 levels");
    for (size_t i = 0; i < json_array_size(lv); i++) {
        const json_t *lvl = json_array_get(lv, i);
        const json_t *tcb = json_object_get(lvl, "tcb");
        int64_t pcesvn;
        CF_ENSURE_MSG(json_is_object(lvl) && json_is_object(tcb), CF_E_MALFORMED,
                      "tdx collateral: tcbInfo level without a \"tcb\" object");
        CF_GUARD(parse_components(tcb, "sgxtcbcomponents", t->levels[i].sgx_comp_svn));
        CF_GUARD(parse_components(tcb, "tdxtcbcomponents", t->levels[i].tdx_comp_svn));
        CF_GUARD(get_int(tcb, "pcesvn", 0, 65535, &pcesvn));
        t->levels[i].pcesvn = (uint16_t)pcesvn;
        CF_GUARD(parse_level_common(lvl, &t->levels[i]));
    }
    t->n_levels = json_array_size(lv);
    return CF_OK;
}

CF_RESULT cf_tdx_tcb_info_parse(cf_slice raw, cf_tdx_tcb_info *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    json_t *j = NULL;
    CF_GUARD(load_object(raw, &j));
    out->json = j;
    if (cf_is_error(parse_tcb_info_json(j, out))) {
        cf_error_add_context("tcbInfo");
        cf_tdx_tcb_info_free(out);
        return CF_ERROR;
    }
    return CF_OK;
}

void cf_tdx_tcb_info_free(cf_tdx_tcb_info *t)
{
    if (t != NULL) {
        json_decref(t->json);
        memset(t, 0, sizeof *t);
    }
}

static CF_RESULT parse_qe_identity_json(const json_t *j, cf_tdx_qe_identity *q)
{
    const char *id;
    int64_t version, prodid;
    uint8_t b4[4];
    CF_GUARD(get_str(j, "id", &id));
    CF_ENSURE_MSG(strcmp(id, "TD_QE") == 0, CF_E_UNSUPPORTED, "tdx collateral: enclaveIdentity id is not \"TD_QE\"");
    CF_GUARD(get_int(j, "version", 0, 100, &version));
    CF_ENSURE_MSG(version == 2, CF_E_UNSUPPORTED, "tdx collateral: enclaveIdentity version is not 2");
    CF_GUARD(get_time(j, "issueDate", &q->issue_date));
    CF_GUARD(get_time(j, "nextUpdate", &q->next_update));
    /* miscselect is written as a big-endian 32-bit number. */
    CF_GUARD(get_hex(j, "miscselect", b4, 4));
    q->miscselect = (uint32_t)b4[0] << 24 | (uint32_t)b4[1] << 16 | (uint32_t)b4[2] << 8 | b4[3];
    CF_GUARD(get_hex(j, "miscselectMask", b4, 4));
    q->miscselect_mask = (uint32_t)b4[0] << 24 | (uint32_t)b4[1] << 16 | (uint32_t)b4[2] << 8 | b4[3];
    CF_GUARD(get_hex(j, "attributes", q->attributes, 16));
    CF_GUARD(get_hex(j, "attributesMask", q->attributes_mask, 16));
    CF_GUARD(get_hex(j, "mrsigner", q->mrsigner, 32));
    CF_GUARD(get_int(j, "isvprodid", 0, 65535, &prodid));
    q->isvprodid = (uint16_t)prodid;
    return parse_isvsvn_levels(json_object_get(j, "tcbLevels"), q->levels, &q->n_levels);
}

CF_RESULT cf_tdx_qe_identity_parse(cf_slice raw, cf_tdx_qe_identity *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    json_t *j = NULL;
    CF_GUARD(load_object(raw, &j));
    out->json = j;
    if (cf_is_error(parse_qe_identity_json(j, out))) {
        cf_error_add_context("enclaveIdentity");
        cf_tdx_qe_identity_free(out);
        return CF_ERROR;
    }
    return CF_OK;
}

void cf_tdx_qe_identity_free(cf_tdx_qe_identity *q)
{
    if (q != NULL) {
        json_decref(q->json);
        memset(q, 0, sizeof *q);
    }
}

/* ---- QuoteCollateralV3 ----------------------------------------------------- */

static CF_RESULT opt_str(const json_t *root, const char *key, cf_slice *out)
{
    const json_t *v = json_object_get(root, key);
    *out = CF_SLICE_EMPTY;
    if (v == NULL || json_is_null(v)) {
        return CF_OK;
    }
    if (!json_is_string(v)) {
        CF_BAIL_FMT(CF_E_MALFORMED, "tdx collateral: \"%s\" is not a string", key);
    }
    *out = cf_slice_make(json_string_value(v), json_string_length(v));
    return CF_OK;
}

static CF_RESULT opt_hex_der(const json_t *root, const char *key, cf_buf *out)
{
    cf_slice s;
    CF_GUARD(opt_str(root, key, &s));
    if (s.len > 0 && cf_is_error(cf_hex_decode(s, out))) {
        CF_BAIL_FMT(CF_E_MALFORMED, "tdx collateral: \"%s\" is not hex", key);
    }
    return CF_OK;
}

void cf_tdx_collateral_free(cf_tdx_collateral *c)
{
    if (c == NULL) {
        return;
    }
    json_decref(c->root);
    cf_buf_free(&c->pck_crl);
    cf_buf_free(&c->root_ca_crl);
    if (c->tcb_info != NULL) {
        cf_tdx_tcb_info_free(c->tcb_info);
        free(c->tcb_info);
    }
    if (c->qe_identity != NULL) {
        cf_tdx_qe_identity_free(c->qe_identity);
        free(c->qe_identity);
    }
    memset(c, 0, sizeof *c);
}

static CF_RESULT collateral_fill(cf_tdx_collateral *c)
{
    const json_t *root = c->root;
    cf_slice sig_hex;
    CF_GUARD(opt_hex_der(root, "pck_crl", &c->pck_crl));
    CF_GUARD(opt_hex_der(root, "root_ca_crl", &c->root_ca_crl));
    CF_GUARD(opt_str(root, "tcb_info", &c->tcb_info_raw));
    CF_GUARD(opt_str(root, "qe_identity", &c->qe_identity_raw));
    CF_GUARD(opt_str(root, "tcb_info_issuer_chain", &c->tcb_info_issuer_chain));
    CF_GUARD(opt_str(root, "qe_identity_issuer_chain", &c->qe_identity_issuer_chain));
    if (c->tcb_info_raw.len == 0 && c->qe_identity_raw.len == 0) {
        c->has_tcb = false;
        return CF_OK;
    }
    CF_ENSURE_MSG(c->tcb_info_raw.len > 0 && c->qe_identity_raw.len > 0, CF_E_MALFORMED,
                  "tdx collateral: tcb_info and qe_identity must be given together");
    CF_ENSURE_MSG(c->tcb_info_issuer_chain.len > 0 && c->qe_identity_issuer_chain.len > 0, CF_E_MALFORMED,
                  "tdx collateral: tcb_info_issuer_chain / qe_identity_issuer_chain missing");
    CF_GUARD(opt_str(root, "tcb_info_signature", &sig_hex));
    CF_ENSURE_MSG(sig_hex.len == 128 && cf_is_ok(cf_hex_decode_fixed(sig_hex, c->tcb_info_signature, 64, NULL)),
                  CF_E_MALFORMED, "tdx collateral: tcb_info_signature is not 64 bytes of hex");
    CF_GUARD(opt_str(root, "qe_identity_signature", &sig_hex));
    CF_ENSURE_MSG(sig_hex.len == 128 && cf_is_ok(cf_hex_decode_fixed(sig_hex, c->qe_identity_signature, 64, NULL)),
                  CF_E_MALFORMED, "tdx collateral: qe_identity_signature is not 64 bytes of hex");
    c->tcb_info = calloc(1, sizeof *c->tcb_info);
    c->qe_identity = calloc(1, sizeof *c->qe_identity);
    CF_ENSURE_MSG(c->tcb_info != NULL && c->qe_identity != NULL, CF_E_NO_MEMORY, "allocation failed");
    CF_GUARD(cf_tdx_tcb_info_parse(c->tcb_info_raw, c->tcb_info));
    CF_GUARD(cf_tdx_qe_identity_parse(c->qe_identity_raw, c->qe_identity));
    c->has_tcb = true;
    return CF_OK;
}

CF_RESULT cf_tdx_collateral_parse(cf_slice json, cf_tdx_collateral *out)
{
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_tdx_collateral c;
    memset(&c, 0, sizeof c);
    cf_buf_init(&c.pck_crl, COLLATERAL_MAX);
    cf_buf_init(&c.root_ca_crl, COLLATERAL_MAX);
    if (json.len == 0) {
        /* No collateral at all: chain-only verification without CRLs. */
        *out = c;
        return CF_OK;
    }
    CF_GUARD(load_object(json, &c.root));
    if (cf_is_error(collateral_fill(&c))) {
        cf_tdx_collateral_free(&c);
        return CF_ERROR;
    }
    *out = c;
    return CF_OK;
}

/* ---- Raw member span -------------------------------------------------------- */

CF_RESULT cf_tdx_json_member_span(cf_slice json, const char *key, cf_slice *out)
{
    CF_ENSURE_REF(key);
    CF_ENSURE_REF(out);
    /* The shared strict scanner (json.h): the whole body is validated,
     * duplicate top-level names are refused, and the value span is the raw
     * bytes as received, never re-serialised. */
    const cf_json_limits limits = {.max_size = COLLATERAL_MAX, .max_depth = SCAN_MAX_DEPTH};
    return cf_json_lookup(json, &limits, cf_slice_cstr(key), out, NULL);
}

/* ---- Assembler ------------------------------------------------------------ */

/* Split a PCS body into the raw signed inner object and its signature hex,
 * checking that the raw span is the very object jansson sees. */
static CF_RESULT split_pcs_body(cf_slice body, const char *inner, cf_slice *raw, const char **sig_hex, json_t **keep)
{
    json_t *doc = NULL;
    json_t *inner_parsed = NULL;
    CF_GUARD(load_object(body, &doc));
    cf_result result = CF_OK;
    CF_GUARD_OUT(cf_tdx_json_member_span(body, inner, raw));
    json_error_t err;
    inner_parsed = json_loadb((const char *)raw->ptr, raw->len, JSON_REJECT_DUPLICATES, &err);
    CF_ENSURE_MSG_OUT(inner_parsed != NULL && json_equal(inner_parsed, json_object_get(doc, inner)), CF_E_MALFORMED,
                      "tdx collateral: raw inner object does not match the parsed body");
    const json_t *sig = json_object_get(doc, "signature");
    CF_ENSURE_MSG_OUT(json_is_string(sig) && json_string_length(sig) == 128, CF_E_MALFORMED,
                      "tdx collateral: PCS body \"signature\" is not 128 hex digits");
    *sig_hex = json_string_value(sig);
    *keep = doc;
    doc = NULL;
out:
    json_decref(inner_parsed);
    json_decref(doc);
    return result;
}

static CF_RESULT crl_to_hex(cf_slice crl_in, json_t *obj, const char *key)
{
    cf_result result = CF_OK;
    X509_CRL *crl = NULL;
    unsigned char *der = NULL;
    cf_buf hex;
    cf_buf_init(&hex, 4 * COLLATERAL_MAX);
    if (crl_in.len == 0) {
        goto out;
    }
    CF_GUARD_OUT(cf_crl_load_any(crl_in, &crl));
    int len = i2d_X509_CRL(crl, &der);
    CF_ENSURE_MSG_OUT(len > 0, CF_E_CRYPTO, "i2d_X509_CRL failed");
    CF_GUARD_OUT(cf_hex_encode(cf_slice_make(der, (size_t)len), &hex));
    CF_ENSURE_MSG_OUT(json_object_set_new(obj, key, json_stringn((const char *)hex.data, hex.len)) == 0, CF_E_NO_MEMORY,
                      "json_object_set_new failed");
out:
    OPENSSL_free(der);
    X509_CRL_free(crl);
    cf_buf_free(&hex);
    return result;
}

static CF_RESULT set_slice(json_t *obj, const char *key, cf_slice s)
{
    json_t *v = json_stringn((const char *)s.ptr, s.len);
    CF_ENSURE_MSG(v != NULL, CF_E_MALFORMED, "tdx collateral: part is not valid UTF-8 text");
    CF_ENSURE_MSG(json_object_set_new(obj, key, v) == 0, CF_E_NO_MEMORY, "json_object_set_new failed");
    return CF_OK;
}

CF_RESULT cf_tdx_collateral_assemble(const cf_tdx_collateral_parts *parts, cf_buf *out)
{
    CF_ENSURE_REF(parts);
    CF_ENSURE_REF(out);
    cf_result result = CF_OK;
    json_t *tcb_doc = NULL, *qe_doc = NULL, *obj = NULL;
    char *text = NULL;
    cf_slice tcb_raw, qe_raw;
    const char *tcb_sig, *qe_sig;

    CF_ENSURE_MSG(parts->tcb_info_issuer_chain.len > 0, CF_E_MALFORMED,
                  "tdx collateral: the TCB Info issuer chain (PEM) is required");
    CF_GUARD_OUT(split_pcs_body(parts->tcb_info_body, "tcbInfo", &tcb_raw, &tcb_sig, &tcb_doc));
    CF_GUARD_OUT(split_pcs_body(parts->qe_identity_body, "enclaveIdentity", &qe_raw, &qe_sig, &qe_doc));
    obj = json_object();
    CF_ENSURE_MSG_OUT(obj != NULL, CF_E_NO_MEMORY, "json_object failed");
    CF_GUARD_OUT(set_slice(obj, "tcb_info", tcb_raw));
    CF_GUARD_OUT(set_slice(obj, "tcb_info_signature", cf_slice_cstr(tcb_sig)));
    CF_GUARD_OUT(set_slice(obj, "qe_identity", qe_raw));
    CF_GUARD_OUT(set_slice(obj, "qe_identity_signature", cf_slice_cstr(qe_sig)));
    CF_GUARD_OUT(set_slice(obj, "tcb_info_issuer_chain", parts->tcb_info_issuer_chain));
    CF_GUARD_OUT(set_slice(obj, "qe_identity_issuer_chain", parts->qe_identity_issuer_chain.len > 0
                                                                 ? parts->qe_identity_issuer_chain
                                                                 : parts->tcb_info_issuer_chain));
    if (parts->pck_crl_issuer_chain.len > 0) {
        CF_GUARD_OUT(set_slice(obj, "pck_crl_issuer_chain", parts->pck_crl_issuer_chain));
    }
    CF_GUARD_OUT(crl_to_hex(parts->pck_crl, obj, "pck_crl"));
    CF_GUARD_OUT(crl_to_hex(parts->root_ca_crl, obj, "root_ca_crl"));
    text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    CF_ENSURE_MSG_OUT(text != NULL, CF_E_NO_MEMORY, "json_dumps failed");
    CF_GUARD_OUT(cf_buf_append_cstr(out, text));
out:
    free(text);
    json_decref(obj);
    json_decref(tcb_doc);
    json_decref(qe_doc);
    return result;
}

/* ---- Classifier for separate files ---------------------------------------- */

static CF_RESULT fill_slot(cf_slice *slot, cf_slice data, const char *what)
{
    if (slot->len > 0) {
        CF_BAIL_FMT(CF_E_INVALID_ARGUMENT, "tdx collateral: two files for the %s", what);
    }
    *slot = data;
    return CF_OK;
}

static bool crl_issuer_cn_is(X509_CRL *crl, const char *cn) { return tdx_name_cn_is(X509_CRL_get_issuer(crl), cn); }

CF_RESULT cf_tdx_collateral_classify(cf_slice data, cf_tdx_collateral_parts *parts)
{
    CF_ENSURE_REF(parts);
    CF_ENSURE_MSG(data.len > 0 && data.len <= COLLATERAL_MAX, CF_E_MALFORMED, "tdx collateral: file empty or over 1 MiB");
    size_t i = 0;
    while (i < data.len && (data.ptr[i] == ' ' || data.ptr[i] == '\n' || data.ptr[i] == '\r' || data.ptr[i] == '\t')) {
        i++;
    }
    if (i < data.len && data.ptr[i] == '{') {
        cf_slice span;
        if (cf_is_ok(cf_tdx_json_member_span(data, "tcbInfo", &span))) {
            return fill_slot(&parts->tcb_info_body, data, "TCB info");
        }
        if (cf_is_ok(cf_tdx_json_member_span(data, "enclaveIdentity", &span))) {
            return fill_slot(&parts->qe_identity_body, data, "QE identity");
        }
        CF_BAIL_MSG(CF_E_MALFORMED, "tdx collateral: JSON file is neither a PCS tcbInfo nor an enclaveIdentity body "
                                    "(a QuoteCollateralV3 file is used alone)");
    }
    static const char pem_cert[] = "-----BEGIN CERTIFICATE-----";
    if (data.len - i >= sizeof pem_cert - 1 && memcmp(data.ptr + i, pem_cert, sizeof pem_cert - 1) == 0) {
        STACK_OF(X509) *chain = NULL;
        CF_GUARD(tdx_load_pem_chain(data, &chain));
        X509 *first = sk_X509_value(chain, 0);
        bool tcb = tdx_subject_cn_is(first, "Intel SGX TCB Signing");
        bool pck = tdx_subject_cn_is(first, "Intel SGX PCK Platform CA") ||
                   tdx_subject_cn_is(first, "Intel SGX PCK Processor CA");
        sk_X509_pop_free(chain, X509_free);
        if (tcb) {
            return fill_slot(&parts->tcb_info_issuer_chain, data, "TCB Signing chain");
        }
        if (pck) {
            return fill_slot(&parts->pck_crl_issuer_chain, data, "PCK CRL issuer chain");
        }
        CF_BAIL_MSG(CF_E_MALFORMED, "tdx collateral: PEM chain led by neither TCB Signing nor a PCK CA");
    }
    X509_CRL *crl = NULL;
    CF_ENSURE_MSG(cf_is_ok(cf_crl_load_any(data, &crl)), CF_E_MALFORMED,
                  "tdx collateral: file is not TCB info, QE identity, a PEM chain or a CRL");
    bool root = crl_issuer_cn_is(crl, "Intel SGX Root CA");
    bool pck = crl_issuer_cn_is(crl, "Intel SGX PCK Platform CA") || crl_issuer_cn_is(crl, "Intel SGX PCK Processor CA");
    X509_CRL_free(crl);
    if (root) {
        return fill_slot(&parts->root_ca_crl, data, "root CA CRL");
    }
    if (pck) {
        return fill_slot(&parts->pck_crl, data, "PCK CRL");
    }
    CF_BAIL_MSG(CF_E_MALFORMED, "tdx collateral: CRL issued by neither the Intel root nor a PCK CA");
}
