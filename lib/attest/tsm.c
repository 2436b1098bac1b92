/* tsm.c — placeholder until configfs-tsm collection lands; refuses. */
#include "confide/attest.h"

CF_RESULT cf_tsm_collect(const cf_attester_config *cfg, const uint8_t report_data[CF_REPORT_DATA_LEN],
                         cf_buf *evidence, cf_buf *collateral)
{
    (void)cfg;
    (void)report_data;
    (void)evidence;
    (void)collateral;
    CF_BAIL_MSG(CF_E_UNSUPPORTED, "configfs-tsm collection not built yet");
}
