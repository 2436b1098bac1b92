/* fuzz_snp_cert_ext.c — the VCEK/VLEK certificate-extension parsers (TCB SPL
 * INTEGERs, hwID raw or wrapped, productName), the VEK claims of a whole
 * certificate, and the SNP collateral bundle parser (PEM/DER, CRLs), on
 * arbitrary bytes. The first byte picks the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "confide/snp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    cf_slice in = cf_slice_make(data + 1, size - 1);
    switch (data[0] % 5) {
    case 0: {
        uint8_t v = 0;
        if (cf_is_ok(cf_snp_ext_parse_spl(in, &v)) && !(in.len == 3 || in.len == 4)) {
            abort();
        }
        break;
    }
    case 1: {
        uint8_t id[CF_SNP_CHIP_ID_LEN];
        size_t n = 0;
        if (cf_is_ok(cf_snp_ext_parse_hwid(in, id, &n)) && n != 8 && n != 64) {
            abort();
        }
        break;
    }
    case 2: {
        char name[32];
        if (cf_is_ok(cf_snp_ext_parse_product(in, name, sizeof name)) && strlen(name) >= sizeof name) {
            abort();
        }
        break;
    }
    case 3: {
        const unsigned char *p = in.ptr;
        X509 *cert = d2i_X509(NULL, &p, (long)in.len);
        if (cert != NULL) {
            cf_snp_vek_info info;
            if (cf_is_ok(cf_snp_vek_parse(cert, &info)) && info.hwid_len != 0 && info.hwid_len != 8 &&
                info.hwid_len != 64) {
                abort();
            }
            X509_free(cert);
        }
        break;
    }
    default: {
        cf_snp_collateral c;
        if (cf_is_ok(cf_snp_collateral_parse(in, &c))) {
            if (c.vek == NULL) {
                abort();
            }
            cf_snp_collateral_free(&c);
        }
        break;
    }
    }
    return 0;
}
