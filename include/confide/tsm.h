/*
 * tsm.h — evidence collection through Linux configfs-tsm, for SEV-SNP and
 * TDX guests (lib/attest/tsm.c; docs/attestation.md §Collecting evidence).
 *
 * cf_tsm_collect (attest.h) is the whole procedure; the steps are exported so
 * that tests can run them against a fake configfs tree.
 *
 * Rules:
 *  - One private, randomly named entry per request, removed afterwards.
 *  - The provider must match the platform before anything is written.
 *  - The generation counter must show exactly our one inblob write between
 *    the reads before and after; otherwise the result is discarded.
 *  - Blobs are size-limited; nothing read here is trusted (the verifier
 *    checks it).
 */
#ifndef CONFIDE_TSM_H
#define CONFIDE_TSM_H

#include <stdint.h>

#include "confide/attest.h"
#include "confide/buf.h"
#include "confide/result.h"

#define CF_TSM_DEFAULT_PATH "/sys/kernel/config/tsm/report"
#define CF_TSM_OUTBLOB_MAX (64 * 1024)
#define CF_TSM_AUXBLOB_MAX (64 * 1024)
/* mkdir a fresh, uniquely named entry under root; its path into entry. */
CF_RESULT cf_tsm_entry_create(const char *root, char *entry, size_t entry_size);
/* On an existing fresh entry: read provider (must match `platform`: sev_guest
 * for SNP, tdx_guest for TDX), read generation, write report_data to inblob,
 * read outblob and auxblob, read generation again and require exactly one
 * write (ours) in between. */
CF_RESULT cf_tsm_entry_generate(const char *entry, cf_platform platform,
                                const uint8_t report_data[CF_REPORT_DATA_LEN], cf_buf *outblob, cf_buf *auxblob);
/* rmdir the entry. */
CF_RESULT cf_tsm_entry_remove(const char *entry);
/* cf_tsm_collect on an existing entry (create/remove are the caller's):
 * evidence = outblob; collateral = for SNP the certificate table from the
 * auxblob turned into PEM (VEK of the report's SIGNING_KEY, then ASK/ASVK),
 * else <cfg->collateral_dir>/<platform>.collateral verbatim. */
CF_RESULT cf_tsm_collect_entry(const cf_attester_config *cfg, const char *entry,
                               const uint8_t report_data[CF_REPORT_DATA_LEN], cf_buf *evidence, cf_buf *collateral);

#endif /* CONFIDE_TSM_H */
