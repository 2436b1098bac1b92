/* fuzz_snp_report.c — the SEV-SNP report parser, the policy checks on what it
 * accepts, and the configfs-tsm certificate-table parser (the auxblob), on
 * arbitrary bytes. The first byte picks the parser; the rest is the input.
 * Invariants: no out-of-bounds access, failures leave zeroed output, and an
 * accepted report is exactly CF_SNP_REPORT_LEN bytes with a version in 2..5. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "confide/snp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    cf_slice in = cf_slice_make(data + 1, size - 1);
    if ((data[0] & 1) == 0) {
        cf_snp_report r;
        if (cf_is_ok(cf_snp_report_parse(in, &r))) {
            if (in.len != CF_SNP_REPORT_LEN || r.version < 2 || r.version > 5 || r.vmpl > 3 ||
                memcmp(r.report_data, in.ptr + 0x50, 64) != 0 || memcmp(r.chip_id, in.ptr + 0x1A0, 64) != 0) {
                abort();
            }
            cf_snp_product p = cf_snp_report_product(&r);
            cf_snp_tcb t = cf_snp_tcb_decode(r.reported_tcb, p);
            char text[96];
            cf_snp_tcb_format(&t, text, sizeof text);
            cf_snp_policy pol;
            if (cf_is_ok(cf_snp_policy_parse(NULL, &pol))) {
                (void)cf_snp_policy_check(&r, &pol, p);
                cf_snp_policy_free(&pol);
            }
        } else {
            static const cf_snp_report zero;
            if (memcmp(&r, &zero, sizeof r) != 0) {
                abort(); /* no partial state */
            }
        }
    } else {
        cf_snp_cert_table t;
        if (cf_is_ok(cf_snp_cert_table_parse(in, &t))) {
            const cf_slice *s[] = {&t.vcek, &t.vlek, &t.ask, &t.ark};
            for (size_t i = 0; i < 4; i++) {
                if (s[i]->len > 0 && (s[i]->ptr < in.ptr || s[i]->ptr + s[i]->len > in.ptr + in.len)) {
                    abort();
                }
            }
            cf_buf out;
            cf_buf_init(&out, 1 << 20);
            (void)cf_snp_cert_table_to_collateral(in, (data[0] & 2) ? CF_SNP_KEY_VLEK : CF_SNP_KEY_VCEK, &out);
            cf_buf_free(&out);
        }
    }
    return 0;
}
