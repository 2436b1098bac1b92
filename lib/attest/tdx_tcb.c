/* tdx_tcb.c — Intel's TCB level matching for TDX (the QVL algorithm, as in
 * Intel SGX/TDX DCAP QuoteVerification "TdxTcbVerifier" and dcap-qvl):
 *   1. the FMSPC and PCE-ID of the TCB info must be the PCK certificate's;
 *   2. platform level = the first tcbLevels entry whose 16 SGX components and
 *      PCESVN are <= the PCK certificate's, and whose 16 TDX components are
 *      <= the quote's tee_tcb_svn, where indices 0 and 1 are skipped when
 *      tee_tcb_svn[1] > 0 (they then belong to the TDX module identity);
 *   3. when tee_tcb_svn[1] > 0 and the TCB info lists tdxModuleIdentities:
 *      identity "TDX_<tee_tcb_svn[1] as %02X>" must exist and match
 *      MRSIGNERSEAM and SEAM attributes; its level = the first whose isvsvn
 *      <= tee_tcb_svn[0]; otherwise tdxModule's signer/attributes must match
 *      (tdxModule is required, so MRSIGNERSEAM is always checked);
 *   4. QE identity: MRSIGNER, ISVPRODID, masked MISCSELECT and ATTRIBUTES
 *      must match; its level = the first whose isvsvn <= the QE's ISVSVN;
 *   5. converge: an OutOfDate module or QE turns UpToDate/SWHardeningNeeded
 *      into OutOfDate and the Configuration* statuses into
 *      OutOfDateConfigurationNeeded; Revoked wins. No matching level at any
 *      step is TCB_NOT_SUPPORTED. */
#include <stdio.h>
#include <string.h>

#include "confide/tdx.h"

static bool platform_level_matches(const cf_tdx_tcb_level *l, const cf_tdx_pck_ext *pck, const uint8_t svn[16])
{
    for (size_t i = 0; i < 16; i++) {
        if (pck->sgx_comp_svn[i] < l->sgx_comp_svn[i]) {
            return false;
        }
    }
    if (pck->pcesvn < l->pcesvn) {
        return false;
    }
    size_t first = svn[1] > 0 ? 2 : 0;
    for (size_t i = first; i < 16; i++) {
        if (svn[i] < l->tdx_comp_svn[i]) {
            return false;
        }
    }
    return true;
}

static const cf_tdx_tcb_level *isvsvn_level(const cf_tdx_tcb_level *levels, size_t n, uint16_t isvsvn)
{
    for (size_t i = 0; i < n; i++) {
        if (levels[i].isvsvn <= isvsvn) {
            return &levels[i];
        }
    }
    return NULL;
}

static cf_tdx_tcb_status converge(cf_tdx_tcb_status platform, cf_tdx_tcb_status other)
{
    if (other == CF_TDX_TCB_REVOKED) {
        return CF_TDX_TCB_REVOKED;
    }
    if (other == CF_TDX_TCB_OUT_OF_DATE) {
        switch (platform) {
        case CF_TDX_TCB_UP_TO_DATE:
        case CF_TDX_TCB_SW_HARDENING_NEEDED: return CF_TDX_TCB_OUT_OF_DATE;
        case CF_TDX_TCB_CONFIGURATION_NEEDED:
        case CF_TDX_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED: return CF_TDX_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED;
        default: return platform;
        }
    }
    return platform;
}

static CF_RESULT add_advisories(json_t *dst, const json_t *src)
{
    if (src == NULL) {
        return CF_OK;
    }
    for (size_t i = 0; i < json_array_size(src); i++) {
        const json_t *id = json_array_get(src, i);
        bool dup = false;
        for (size_t k = 0; k < json_array_size(dst); k++) {
            dup = dup || json_equal(json_array_get(dst, k), id);
        }
        if (!dup) {
            CF_ENSURE_MSG(json_array_append_new(dst, json_string(json_string_value(id))) == 0, CF_E_NO_MEMORY,
                          "json_array_append failed");
        }
    }
    return CF_OK;
}

void cf_tdx_tcb_result_free(cf_tdx_tcb_result *r)
{
    if (r != NULL) {
        json_decref(r->advisory_ids);
        memset(r, 0, sizeof *r);
    }
}

static CF_RESULT evaluate(const cf_tdx_quote *q, const cf_tdx_pck_ext *pck, const cf_tdx_tcb_info *tcb,
                          const cf_tdx_qe_identity *qe, cf_tdx_tcb_result *res)
{
    const cf_tdx_td_report *td = &q->td;
    CF_ENSURE_MSG(memcmp(tcb->fmspc, pck->fmspc, CF_TDX_FMSPC_LEN) == 0, CF_E_TCB,
                  "tdx tcb: TCB info FMSPC differs from the PCK certificate's");
    CF_ENSURE_MSG(memcmp(tcb->pceid, pck->pceid, 2) == 0, CF_E_TCB,
                  "tdx tcb: TCB info PCE-ID differs from the PCK certificate's");

    /* 2. platform level */
    const cf_tdx_tcb_level *plat = NULL;
    for (size_t i = 0; i < tcb->n_levels && plat == NULL; i++) {
        if (platform_level_matches(&tcb->levels[i], pck, td->tee_tcb_svn)) {
            plat = &tcb->levels[i];
        }
    }
    res->platform = plat ? plat->status : CF_TDX_TCB_NOT_SUPPORTED;
    if (plat != NULL) {
        res->platform_tcb_date = plat->tcb_date;
        CF_GUARD(add_advisories(res->advisory_ids, plat->advisory_ids));
    }

    /* 3. TDX module */
    res->module = CF_TDX_TCB_UP_TO_DATE;
    const cf_tdx_module_identity *mid = NULL;
    if (td->tee_tcb_svn[1] > 0 && tcb->n_module_ids > 0) {
        snprintf(res->module_id, sizeof res->module_id, "TDX_%02X", td->tee_tcb_svn[1]);
        for (size_t i = 0; i < tcb->n_module_ids && mid == NULL; i++) {
            if (strcmp(tcb->module_ids[i].id, res->module_id) == 0) {
                mid = &tcb->module_ids[i];
            }
        }
        if (mid == NULL) {
            CF_BAIL_FMT(CF_E_TCB, "tdx tcb: TDX module identity %s is not in the TCB info", res->module_id);
        }
        CF_ENSURE_MSG(memcmp(mid->mrsigner, td->mrsignerseam, CF_TDX_MR_LEN) == 0, CF_E_TCB,
                      "tdx tcb: MRSIGNERSEAM differs from the TDX module identity's signer");
        CF_ENSURE_MSG((td->seam_attributes & mid->attributes_mask) == (mid->attributes & mid->attributes_mask),
                      CF_E_TCB, "tdx tcb: SEAM attributes differ from the TDX module identity's");
        const cf_tdx_tcb_level *ml = isvsvn_level(mid->levels, mid->n_levels, td->tee_tcb_svn[0]);
        res->module = ml ? ml->status : CF_TDX_TCB_NOT_SUPPORTED;
        if (ml != NULL) {
            CF_GUARD(add_advisories(res->advisory_ids, ml->advisory_ids));
        }
    } else {
        /* Fail closed for a hand-built cf_tdx_tcb_info: the parser always
         * sets has_module. */
        CF_ENSURE_MSG(tcb->has_module, CF_E_TCB, "tdx tcb: TCB info has no tdxModule to check MRSIGNERSEAM against");
        CF_ENSURE_MSG(memcmp(tcb->module_mrsigner, td->mrsignerseam, CF_TDX_MR_LEN) == 0, CF_E_TCB,
                      "tdx tcb: MRSIGNERSEAM differs from tdxModule.mrsigner");
        CF_ENSURE_MSG((td->seam_attributes & tcb->module_attributes_mask) ==
                          (tcb->module_attributes & tcb->module_attributes_mask),
                      CF_E_TCB, "tdx tcb: SEAM attributes differ from tdxModule.attributes");
    }

    /* 4. QE identity */
    const cf_tdx_qe_report *r = &q->qe_report;
    CF_ENSURE_MSG(memcmp(r->mrsigner, qe->mrsigner, 32) == 0, CF_E_TCB, "tdx tcb: QE MRSIGNER differs from QE identity");
    CF_ENSURE_MSG(r->isvprodid == qe->isvprodid, CF_E_TCB, "tdx tcb: QE ISVPRODID differs from QE identity");
    CF_ENSURE_MSG((r->miscselect & qe->miscselect_mask) == (qe->miscselect & qe->miscselect_mask), CF_E_TCB,
                  "tdx tcb: QE MISCSELECT differs from QE identity");
    for (size_t i = 0; i < 16; i++) {
        CF_ENSURE_MSG((r->attributes[i] & qe->attributes_mask[i]) == (qe->attributes[i] & qe->attributes_mask[i]),
                      CF_E_TCB, "tdx tcb: QE ATTRIBUTES differ from QE identity");
    }
    const cf_tdx_tcb_level *ql = isvsvn_level(qe->levels, qe->n_levels, r->isvsvn);
    res->qe = ql ? ql->status : CF_TDX_TCB_NOT_SUPPORTED;
    if (ql != NULL) {
        CF_GUARD(add_advisories(res->advisory_ids, ql->advisory_ids));
    }

    /* 5. converge */
    if (res->platform == CF_TDX_TCB_NOT_SUPPORTED || res->module == CF_TDX_TCB_NOT_SUPPORTED ||
        res->qe == CF_TDX_TCB_NOT_SUPPORTED) {
        res->final = CF_TDX_TCB_NOT_SUPPORTED;
    } else {
        res->final = converge(converge(res->platform, res->module), res->qe);
    }
    return CF_OK;
}

CF_RESULT cf_tdx_tcb_evaluate(const cf_tdx_quote *q, const cf_tdx_pck_ext *pck, const cf_tdx_tcb_info *tcb,
                              const cf_tdx_qe_identity *qe, cf_tdx_tcb_result *out)
{
    CF_ENSURE_REF(q);
    CF_ENSURE_REF(pck);
    CF_ENSURE_REF(tcb);
    CF_ENSURE_REF(qe);
    CF_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    cf_tdx_tcb_result res;
    memset(&res, 0, sizeof res);
    res.advisory_ids = json_array();
    CF_ENSURE_MSG(res.advisory_ids != NULL, CF_E_NO_MEMORY, "json_array failed");
    if (cf_is_error(evaluate(q, pck, tcb, qe, &res))) {
        cf_tdx_tcb_result_free(&res);
        return CF_ERROR;
    }
    *out = res;
    return CF_OK;
}
