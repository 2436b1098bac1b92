#!/usr/bin/env bash
# verify_cli.sh — `confide verify` end to end on the real SEV-SNP vectors:
# exit status, the printed claims and the precise rejection reasons.
# Needs $CONFIDE_BUILD (the Makefile exports it) and $CONFIDE_VECTORS.
set -u
bin="${CONFIDE_BUILD:?CONFIDE_BUILD not set}/bin/confide"
vec="${CONFIDE_VECTORS:?CONFIDE_VECTORS not set}/amd-sev-snp"
[ -x "$bin" ] || { echo "missing $bin"; exit 1; }
[ -d "$vec" ] || { echo "missing vectors in $vec"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0; checks=0

# expect STATUS PATTERN -- confide args... : exit status and a pattern in
# stdout+stderr.
expect() {
    local want=$1 pattern=$2; shift 3
    checks=$((checks + 1))
    local out rc
    out=$("$bin" "$@" 2>&1); rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pattern" <<<"$out"; then
        fails=$((fails + 1))
        echo "FAIL: confide $* -> rc=$rc (want $want), pattern '$pattern'"
        sed 's/^/    | /' <<<"$out" | head -20
    fi
}

at=2026-11-20T00:00:00Z
expect 0 'product +Turin' -- verify --platform snp --evidence "$vec/turin/ms_report.bin" --certs "$vec/turin/ms_vcek.pem" --at $at
expect 0 'tcb +fmc=1 bl=1 tee=1 snp=4 ucode=81' -- verify --platform snp --evidence "$vec/turin/ms_report.bin" --collateral "$vec/turin/ms_vcek.pem" --at 1795132800
expect 0 'product +Milan' -- verify --platform snp --evidence "$vec/milan/azure_report.bin" --certs "$vec/milan/azure_vcek_chain.pem" --at $at
expect 0 '"ok": true' -- verify --platform snp --evidence "$vec/genoa/ms_report.bin" --certs "$vec/genoa/ms_vcek.pem" --at $at --json

# report_data binding: the Azure Genoa report carries SHA-256(runtime JSON)
# in its first 32 bytes (zero-padded); --report-data pads on the right.
rd=$(od -An -tx1 -v -j 80 -N 32 "$vec/genoa/azure_report.bin" | tr -d ' \n')
expect 0 'report_data matches' -- verify --platform snp --evidence "$vec/genoa/azure_report.bin" --certs "$vec/genoa/azure_vcek.pem" --at $at --report-data "$rd"
expect 1 'report_data_mismatch' -- verify --platform snp --evidence "$vec/genoa/azure_report.bin" --certs "$vec/genoa/azure_vcek.pem" --at $at --report-data "00$rd"

# Debug report: refused by the production defaults, accepted by a dev policy.
expect 1 'policy_violation.*DEBUG' -- verify --platform snp --evidence "$vec/milan/gosev_report.bin" --certs "$vec/milan/gosev_vcek.der" --at $at
echo '{"allow_debug": true}' >"$tmp/dev.json"
expect 0 'debug +true' -- verify --platform snp --evidence "$vec/milan/gosev_report.bin" --certs "$vec/milan/gosev_vcek.der" --at $at --policy "$tmp/dev.json"

# VLEK: expired now, valid on 2025-06-01; VMPL 1 fails a VMPL0 policy.
expect 1 'expired' -- verify --platform snp --evidence "$vec/milan/trustee_aws_vlek_report.bin" --certs "$vec/milan/trustee_aws_vlek.der"
expect 0 'signing_key +vlek' -- verify --platform snp --evidence "$vec/milan/trustee_aws_vlek_report.bin" --certs "$vec/milan/trustee_aws_vlek.der" --at 2025-06-01T00:00:00Z
echo '{"vmpl": 0}' >"$tmp/vmpl0.json"
expect 1 'policy_violation.*VMPL is 1' -- verify --platform snp --evidence "$vec/milan/trustee_aws_vlek_report.bin" --certs "$vec/milan/trustee_aws_vlek.der" --at 2025-06-01T02:00:00+02:00 --policy "$tmp/vmpl0.json"

# Wrong pairs and forged certificates.
expect 1 'bad_signature' -- verify --platform snp --evidence "$vec/genoa/ms_report.bin" --certs "$vec/genoa/azure_vcek.pem" --at $at
expect 1 'certificate_invalid.*signature failure' -- verify --platform snp --evidence "$vec/milan/trustee_report.bin" --certs "$vec/negative/trustee_vcek_bad_sig_hwid_raw.der" --at $at
expect 1 '"error": "bad_signature"' -- verify --platform snp --evidence "$vec/milan/gosev_report.bin" --certs "$vec/milan/virtee_vcek.der" --at $at --policy "$tmp/dev.json" --json

# Bad inputs: truncated report, bad policy field, usage errors.
head -c 1183 "$vec/milan/ms_report.bin" >"$tmp/short.bin"
expect 1 'malformed.*1183 bytes' -- verify --platform snp --evidence "$tmp/short.bin" --certs "$vec/milan/ms_vcek.pem" --at $at
echo '{"vmpl": 7}' >"$tmp/bad.json"
expect 1 'bad_config.*"vmpl"' -- verify --platform snp --evidence "$vec/milan/ms_report.bin" --certs "$vec/milan/ms_vcek.pem" --policy "$tmp/bad.json"
expect 1 'not_found.*VCEK/VLEK certificate is required' -- verify --platform snp --evidence "$vec/milan/ms_report.bin"
expect 2 'RFC 3339' -- verify --platform snp --evidence "$vec/milan/ms_report.bin" --at yesterday
expect 2 'unknown platform' -- verify --platform sgx --evidence "$vec/milan/ms_report.bin"
expect 2 'usage: confide verify' -- verify --evidence "$vec/milan/ms_report.bin"

# TDX through the same command: one QuoteCollateralV3 file, or the separate
# Intel PCS files assembled by the CLI (the TCB Signing chain comes from a
# PCS response header; the go-tdx-guest files lack it, dcap-qvl has it).
tdx="${CONFIDE_VECTORS}/intel-tdx"
expect 0 'tcb +UpToDate' -- verify --platform tdx --evidence "$tdx/dcap-qvl/tdx_quote_v4.bin" --collateral "$tdx/dcap-qvl/tdx_quote_v4_collateral.json" --at 2025-07-01T00:00:00Z
python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["tcb_info_issuer_chain"])' \
    "$tdx/dcap-qvl/tdx_quote_v4_collateral.json" >"$tmp/tcb_chain.pem"
pcs=(--tcb-info "$tdx/go-tdx-guest/tcbinfo_fmspc_50806f000000_2023-06.json"
     --qe-identity "$tdx/go-tdx-guest/qe_identity_td_qe_2023-06.json" --tcb-issuer-chain "$tmp/tcb_chain.pem"
     --pck-crl "$tdx/go-tdx-guest/pck_platform_crl_2023-06.der" --root-ca-crl "$tdx/go-tdx-guest/root_ca_crl_2023-04.der")
expect 1 'tcb_mismatch.*TCB_NOT_SUPPORTED' -- verify --platform tdx --evidence "$tdx/go-tdx-guest/tdx_quote_v4_SPR_E4.bin" "${pcs[@]}" --at 2023-07-01T01:00:00Z
echo '{"verification":"chain_only","sept_ve_disable_required":false}' >"$tmp/tdx_chain_only.json"
expect 0 'verified: tdx' -- verify --platform tdx --evidence "$tdx/go-tdx-guest/tdx_quote_v4_SPR_E4.bin" "${pcs[@]}" --at 2023-07-01T01:00:00Z --policy "$tmp/tdx_chain_only.json"
expect 2 'PCS file flags are for --platform tdx' -- verify --platform snp --evidence "$vec/milan/ms_report.bin" "${pcs[@]}"

echo "verify_cli: $((checks - fails))/$checks checks passed"
[ "$fails" -eq 0 ]
