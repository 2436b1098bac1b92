/*
 * sim.c — the simulated TEE platform (see sim.h and docs/attestation.md §sim).
 *
 * Verification order (each failure its own code and a detail naming the
 * check): layout -> accepted root present -> certificate chain to an
 * accepted root at `now` -> report signed by the certified platform key ->
 * report_data -> policy (debug, measurement, svn).
 */
#include "confide/sim.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confide/crypto.h"
#include "confide/encoding.h"

#define P384_COMPONENT_LEN 48
#define SIM_FILE_MAX (64u * 1024u)
#define SIM_EXE_MAX ((size_t)1 << 30)

/* ---- small file helpers --------------------------------------------------- */

static CF_RESULT path_join(char *out, size_t outsize, const char *dir, const char *name)
{
    int n = snprintf(out, outsize, "%s/%s", dir, name);
    CF_ENSURE_MSG(n > 0 && (size_t)n < outsize, CF_E_INVALID_ARGUMENT, "sim directory path too long");
    return CF_OK;
}

static CF_RESULT read_small_file(const char *dir, const char *name, cf_buf *out)
{
    char path[4096];
    CF_GUARD(path_join(path, sizeof path, dir, name));
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        CF_BAIL_FMT(CF_E_IO, "cannot open %s/%s: %s", dir, name, strerror(errno));
    }
    cf_buf_init(out, SIM_FILE_MAX);
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (cf_is_error(cf_buf_append(out, chunk, n))) {
            cf_wipe(chunk, sizeof chunk);
            fclose(f);
            cf_buf_free(out);
            CF_BAIL_FMT(CF_E_TOO_LARGE, "%s is larger than %u bytes", name, SIM_FILE_MAX);
        }
    }
    cf_wipe(chunk, sizeof chunk);
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) {
        cf_buf_free(out);
        CF_BAIL_FMT(CF_E_IO, "reading %s failed", name);
    }
    return CF_OK;
}

/* Create a new file (never overwriting) with `mode` and write all of data. */
static CF_RESULT write_new_file(const char *dir, const char *name, mode_t mode, cf_slice data)
{
    char path[4096];
    CF_GUARD(path_join(path, sizeof path, dir, name));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        CF_BAIL_FMT(CF_E_IO, "cannot create %s: %s", path, strerror(errno));
    }
    size_t off = 0;
    while (off < data.len) {
        ssize_t w = write(fd, data.ptr + off, data.len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            close(fd);
            CF_BAIL_FMT(CF_E_IO, "writing %s failed", path);
        }
        off += (size_t)w;
    }
    CF_ENSURE_MSG(close(fd) == 0, CF_E_IO, "close failed");
    return CF_OK;
}

/* ---- OpenSSL helpers ----------------------------------------------------- */

static CF_RESULT spki_sha256(EVP_PKEY *key, uint8_t out[CF_SIM_KEY_ID_LEN])
{
    cf_buf der;
    cf_buf_init(&der, 4096);
    cf_result r = cf_pubkey_to_der(key, &der);
    if (cf_is_ok(r)) {
        r = cf_sha256(cf_buf_slice(&der), out);
    }
    cf_buf_free(&der);
    return r;
}

static bool is_p384_key(EVP_PKEY *key)
{
    char group[32];
    size_t glen = 0;
    return EVP_PKEY_is_a(key, "EC") &&
           EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof group, &glen) == 1 &&
           strcmp(group, "secp384r1") == 0;
}

static CF_RESULT add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    CF_ENSURE_MSG(ext != NULL, CF_E_CRYPTO, "certificate extension failed");
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    CF_ENSURE_MSG(ok == 1, CF_E_CRYPTO, "certificate extension failed");
    return CF_OK;
}

/* Issue a certificate for `subject_key` (self-signed when issuer is NULL). */
static CF_RESULT make_cert(EVP_PKEY *subject_key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca,
                           int64_t now, int64_t valid_days, X509 **out)
{
    cf_result result = CF_OK;
    X509 *cert = X509_new();
    BIGNUM *serial = BN_new();
    CF_ENSURE_MSG_OUT(cert != NULL && serial != NULL, CF_E_NO_MEMORY, "X509_new failed");
    CF_ENSURE_MSG_OUT(X509_set_version(cert, 2) == 1, CF_E_CRYPTO, "X509_set_version failed");
    CF_ENSURE_MSG_OUT(BN_rand(serial, 120, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
                          BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) != NULL,
                      CF_E_CRYPTO, "serial number failed");
    time_t base = (time_t)now;
    CF_ENSURE_MSG_OUT(X509_time_adj_ex(X509_getm_notBefore(cert), -1, 0, &base) != NULL &&
                          X509_time_adj_ex(X509_getm_notAfter(cert), (int)valid_days, 0, &base) != NULL,
                      CF_E_CRYPTO, "validity failed");
    X509_NAME *name = X509_get_subject_name(cert);
    CF_ENSURE_MSG_OUT(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"confide sim", -1,
                                                 -1, 0) == 1 &&
                          X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                                     0) == 1,
                      CF_E_CRYPTO, "subject name failed");
    X509 *iss = issuer ? issuer : cert;
    CF_ENSURE_MSG_OUT(X509_set_issuer_name(cert, X509_get_subject_name(iss)) == 1, CF_E_CRYPTO,
                      "issuer name failed");
    CF_ENSURE_MSG_OUT(X509_set_pubkey(cert, subject_key) == 1, CF_E_CRYPTO, "X509_set_pubkey failed");
    CF_GUARD_OUT(add_ext(cert, iss, NID_basic_constraints, ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE"));
    CF_GUARD_OUT(add_ext(cert, iss, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"));
    CF_GUARD_OUT(add_ext(cert, iss, NID_subject_key_identifier, "hash"));
    if (issuer != NULL) {
        CF_GUARD_OUT(add_ext(cert, iss, NID_authority_key_identifier, "keyid:always"));
    }
    CF_ENSURE_MSG_OUT(X509_sign(cert, issuer_key, EVP_sha384()) > 0, CF_E_CRYPTO, "certificate signing failed");
    *out = cert;
    cert = NULL;
out:
    X509_free(cert);
    BN_free(serial);
    return result;
}

static CF_RESULT cert_to_pem(X509 *cert, cf_buf *out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    CF_ENSURE_MSG(bio != NULL, CF_E_NO_MEMORY, "BIO_new failed");
    char *data = NULL;
    long len;
    if (PEM_write_bio_X509(bio, cert) != 1 || (len = BIO_get_mem_data(bio, &data)) <= 0 ||
        cf_is_error(cf_buf_append(out, data, (size_t)len))) {
        BIO_free(bio);
        CF_BAIL_MSG(CF_E_CRYPTO, "PEM encoding failed");
    }
    BIO_free(bio);
    return CF_OK;
}

/* Parse up to CF_SIM_CHAIN_MAX PEM certificates; at least one. */
static CF_RESULT load_chain(cf_slice pem, STACK_OF(X509) **out)
{
    CF_ENSURE_MSG(pem.len <= CF_SIM_COLLATERAL_MAX, CF_E_TOO_LARGE, "collateral larger than 64 KiB");
    STACK_OF(X509) *chain = NULL;
    CF_GUARD_MSG(cf_x509_load_pem(pem, &chain), "sim collateral");
    if (sk_X509_num(chain) > CF_SIM_CHAIN_MAX) {
        sk_X509_pop_free(chain, X509_free);
        CF_BAIL_MSG(CF_E_LIMIT, "collateral holds more than 4 certificates");
    }
    *out = chain;
    return CF_OK;
}

/* ---- report layout -------------------------------------------------------- */

static bool all_zero(cf_slice s)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < s.len; i++) {
        acc |= s.ptr[i];
    }
    return acc == 0;
}

CF_RESULT cf_sim_report_parse(cf_slice evidence, cf_sim_report *out)
{
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(evidence.len == CF_SIM_REPORT_LEN, CF_E_MALFORMED, "sim report must be exactly 0x130 bytes");
    memset(out, 0, sizeof *out);
    cf_reader r = cf_reader_make(evidence);
    uint32_t reserved;
    CF_GUARD(cf_reader_u32le(&r, &out->version));
    CF_GUARD(cf_reader_u32le(&r, &out->flags));
    CF_GUARD(cf_reader_u32le(&r, &out->svn));
    CF_GUARD(cf_reader_u32le(&r, &reserved));
    CF_GUARD(cf_reader_copy(&r, out->measurement, sizeof out->measurement));
    CF_GUARD(cf_reader_copy(&r, out->report_data, sizeof out->report_data));
    CF_GUARD(cf_reader_copy(&r, out->platform_key_id, sizeof out->platform_key_id));
    CF_GUARD(cf_slice_sub(evidence, 0, CF_SIM_SIGNED_LEN, &out->signed_part));
    CF_ENSURE_MSG(r.pos == CF_SIM_SIGNED_LEN, CF_E_INTERNAL, "layout drift");
    CF_GUARD(cf_reader_slice(&r, CF_SIM_SIG_FIELD_LEN, &out->sig_r));
    CF_GUARD(cf_reader_slice(&r, CF_SIM_SIG_FIELD_LEN, &out->sig_s));
    CF_GUARD(cf_reader_expect_end(&r));

    CF_ENSURE_MSG(out->version == CF_SIM_REPORT_VERSION, CF_E_UNSUPPORTED, "sim report version is not 1");
    CF_ENSURE_MSG((out->flags & ~CF_SIM_FLAG_DEBUG) == 0, CF_E_MALFORMED, "sim report has unknown flag bits");
    CF_ENSURE_MSG(reserved == 0, CF_E_MALFORMED, "sim report reserved field is not zero");
    CF_ENSURE_MSG(all_zero(cf_slice_make(out->sig_r.ptr + P384_COMPONENT_LEN,
                                         CF_SIM_SIG_FIELD_LEN - P384_COMPONENT_LEN)) &&
                      all_zero(cf_slice_make(out->sig_s.ptr + P384_COMPONENT_LEN,
                                             CF_SIM_SIG_FIELD_LEN - P384_COMPONENT_LEN)),
                  CF_E_MALFORMED, "signature padding is not zero");
    return CF_OK;
}

/* ---- signing (the attester side) ------------------------------------------ */

/* ECDSA P-384/SHA-384 over msg; r and s little-endian into 72-byte fields
 * (the SNP layout, AMD SEV-SNP ABI Table 139). */
static CF_RESULT sign_raw_le(EVP_PKEY *key, cf_slice msg, uint8_t r_out[CF_SIM_SIG_FIELD_LEN],
                             uint8_t s_out[CF_SIM_SIG_FIELD_LEN])
{
    cf_result result = CF_OK;
    cf_buf der;
    cf_buf_init(&der, 256);
    ECDSA_SIG *sig = NULL;
    CF_GUARD_OUT(cf_ecdsa_sign_der(key, CF_HASH_SHA384, msg, &der));
    const unsigned char *p = der.data;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der.len);
    CF_ENSURE_MSG_OUT(sig != NULL, CF_E_CRYPTO, "ECDSA signature decoding failed");
    memset(r_out, 0, CF_SIM_SIG_FIELD_LEN);
    memset(s_out, 0, CF_SIM_SIG_FIELD_LEN);
    CF_ENSURE_MSG_OUT(BN_bn2lebinpad(ECDSA_SIG_get0_r(sig), r_out, P384_COMPONENT_LEN) == P384_COMPONENT_LEN &&
                          BN_bn2lebinpad(ECDSA_SIG_get0_s(sig), s_out, P384_COMPONENT_LEN) == P384_COMPONENT_LEN,
                      CF_E_CRYPTO, "signature component too long");
out:
    ECDSA_SIG_free(sig);
    cf_buf_free(&der);
    return result;
}

typedef struct sim_config {
    uint32_t svn;
    bool debug;
} sim_config;

static CF_RESULT load_config(const char *dir, sim_config *cfg)
{
    cf_buf raw;
    CF_GUARD(read_small_file(dir, CF_SIM_PLATFORM_CONFIG, &raw));
    json_error_t jerr;
    json_t *root = json_loadb((const char *)raw.data, raw.len, JSON_REJECT_DUPLICATES, &jerr);
    cf_buf_free(&raw);
    CF_ENSURE_MSG(root != NULL && json_is_object(root), CF_E_CONFIG, "platform.json is not a JSON object");
    json_t *svn = json_object_get(root, "svn");
    json_t *debug = json_object_get(root, "debug");
    bool ok = json_is_integer(svn) && json_integer_value(svn) >= 0 && json_integer_value(svn) <= UINT32_MAX &&
              json_is_boolean(debug);
    if (ok) {
        cfg->svn = (uint32_t)json_integer_value(svn);
        cfg->debug = json_is_true(debug);
    }
    json_decref(root);
    CF_ENSURE_MSG(ok, CF_E_CONFIG, "platform.json: expected {\"svn\": <u32>, \"debug\": <bool>}");
    return CF_OK;
}

CF_RESULT cf_sim_sign_report(const char *dir, const cf_sim_report_params *p, cf_buf *evidence, cf_buf *collateral)
{
    CF_ENSURE_REF(dir);
    CF_ENSURE_REF(p);
    CF_ENSURE_REF(evidence);
    CF_ENSURE_REF(collateral);
    cf_result result = CF_OK;
    cf_buf key_pem, chain_pem, root_pem, report;
    EVP_PKEY *key = NULL;
    cf_buf_init(&key_pem, 0);
    cf_buf_init(&chain_pem, 0);
    cf_buf_init(&root_pem, 0);
    cf_buf_init(&report, CF_SIM_REPORT_LEN);
    uint8_t key_id[CF_SIM_KEY_ID_LEN];
    uint8_t r[CF_SIM_SIG_FIELD_LEN], s[CF_SIM_SIG_FIELD_LEN];

    CF_GUARD_OUT(read_small_file(dir, CF_SIM_PLATFORM_KEY, &key_pem));
    CF_GUARD_OUT(cf_privkey_from_pem(cf_buf_slice(&key_pem), &key));
    CF_ENSURE_MSG_OUT(is_p384_key(key), CF_E_BAD_KEY, "sim platform key is not ECDSA P-384");
    CF_GUARD_OUT(spki_sha256(key, key_id));
    CF_GUARD_OUT(read_small_file(dir, CF_SIM_PLATFORM_CERT, &chain_pem));
    CF_GUARD_OUT(read_small_file(dir, CF_SIM_ROOT_CERT, &root_pem));

    /* Little-endian like SNP: cf_buf has only big-endian appenders. */
    const uint32_t header[4] = {CF_SIM_REPORT_VERSION, p->debug ? CF_SIM_FLAG_DEBUG : 0u, p->svn, 0u};
    for (size_t i = 0; i < 4; i++) {
        const uint8_t le[4] = {(uint8_t)header[i], (uint8_t)(header[i] >> 8), (uint8_t)(header[i] >> 16),
                               (uint8_t)(header[i] >> 24)};
        CF_GUARD_OUT(cf_buf_append(&report, le, sizeof le));
    }
    CF_GUARD_OUT(cf_buf_append(&report, p->measurement, CF_SIM_MEASUREMENT_LEN));
    CF_GUARD_OUT(cf_buf_append(&report, p->report_data, CF_REPORT_DATA_LEN));
    CF_GUARD_OUT(cf_buf_append(&report, key_id, sizeof key_id));
    CF_GUARD_OUT(sign_raw_le(key, cf_buf_slice(&report), r, s));
    CF_GUARD_OUT(cf_buf_append(&report, r, sizeof r));
    CF_GUARD_OUT(cf_buf_append(&report, s, sizeof s));

    CF_GUARD_OUT(cf_buf_append_slice(evidence, cf_buf_slice(&report)));
    CF_GUARD_OUT(cf_buf_append_slice(collateral, cf_buf_slice(&chain_pem)));
    CF_GUARD_OUT(cf_buf_append_slice(collateral, cf_buf_slice(&root_pem)));
out:
    EVP_PKEY_free(key);
    cf_buf_free(&key_pem);
    cf_buf_free(&chain_pem);
    cf_buf_free(&root_pem);
    cf_buf_free(&report);
    return result;
}

CF_RESULT cf_sim_measure_file(const char *path, uint8_t out[CF_SIM_MEASUREMENT_LEN])
{
    CF_ENSURE_REF(path);
    cf_result result = CF_OK;
    cf_hash_ctx h = {0};
    size_t total = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        cf_error_setf(CF_E_IO, __FILE__, __LINE__, "cannot open %s: %s", path, strerror(errno));
        result = CF_ERROR;
        goto out;
    }
    CF_GUARD_OUT(cf_hash_init(&h, CF_HASH_SHA384));
    uint8_t chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        total += n;
        CF_ENSURE_MSG_OUT(total <= SIM_EXE_MAX, CF_E_TOO_LARGE, "file larger than 1 GiB");
        CF_GUARD_OUT(cf_hash_update(&h, cf_slice_make(chunk, n)));
    }
    CF_ENSURE_MSG_OUT(!ferror(f), CF_E_IO, "reading the file failed");
    CF_GUARD_OUT(cf_hash_final(&h, out));
out:
    cf_hash_free(&h);
    if (f != NULL) {
        fclose(f);
    }
    return result;
}

CF_RESULT cf_sim_collect(const cf_attester_config *cfg, const uint8_t report_data[CF_REPORT_DATA_LEN],
                         cf_buf *evidence, cf_buf *collateral)
{
    CF_ENSURE_REF(cfg);
    CF_ENSURE_REF(report_data);
    CF_ENSURE_MSG(cfg->sim_dir != NULL, CF_E_CONFIG, "sim platform needs a sim directory (--sim-dir)");
    sim_config conf;
    CF_GUARD(load_config(cfg->sim_dir, &conf));
    cf_sim_report_params p = {.svn = conf.svn, .debug = conf.debug};
    memcpy(p.report_data, report_data, CF_REPORT_DATA_LEN);
    CF_GUARD_MSG(cf_sim_measure_file("/proc/self/exe", p.measurement), "measuring /proc/self/exe");
    return cf_sim_sign_report(cfg->sim_dir, &p, evidence, collateral);
}

/* ---- platform creation ---------------------------------------------------- */

CF_RESULT cf_sim_init(const char *dir, const cf_sim_init_options *opt)
{
    CF_ENSURE_REF(dir);
    CF_ENSURE_REF(opt);
    cf_result result = CF_OK;
    EVP_PKEY *root_key = NULL, *platform_key = NULL;
    X509 *root = NULL, *platform = NULL;
    cf_buf pem;
    cf_buf_init(&pem, 0);
    char *config = NULL;
    int64_t days = opt->valid_days > 0 ? opt->valid_days : 3650;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        cf_error_setf(CF_E_IO, __FILE__, __LINE__, "cannot create %s: %s", dir, strerror(errno));
        result = CF_ERROR;
        goto out;
    }
    CF_GUARD_OUT(cf_ec_keygen(CF_EC_P384, &root_key));
    CF_GUARD_OUT(cf_ec_keygen(CF_EC_P384, &platform_key));
    CF_GUARD_OUT(make_cert(root_key, "confide sim root", NULL, root_key, true, opt->now, days, &root));
    CF_GUARD_OUT(make_cert(platform_key, "confide sim platform key", root, root_key, false, opt->now, days,
                           &platform));

    /* Keys first, O_EXCL: an existing platform is never overwritten. */
    CF_GUARD_OUT(cf_privkey_to_pem(root_key, &pem));
    CF_GUARD_OUT(write_new_file(dir, CF_SIM_ROOT_KEY, 0600, cf_buf_slice(&pem)));
    cf_buf_reset(&pem);
    CF_GUARD_OUT(cf_privkey_to_pem(platform_key, &pem));
    CF_GUARD_OUT(write_new_file(dir, CF_SIM_PLATFORM_KEY, 0600, cf_buf_slice(&pem)));
    cf_buf_reset(&pem);
    CF_GUARD_OUT(cert_to_pem(root, &pem));
    CF_GUARD_OUT(write_new_file(dir, CF_SIM_ROOT_CERT, 0644, cf_buf_slice(&pem)));
    cf_buf_reset(&pem);
    CF_GUARD_OUT(cert_to_pem(platform, &pem));
    CF_GUARD_OUT(write_new_file(dir, CF_SIM_PLATFORM_CERT, 0644, cf_buf_slice(&pem)));
    json_t *cfg = json_pack("{s:I,s:b}", "svn", (json_int_t)opt->svn, "debug", (int)opt->debug);
    CF_ENSURE_MSG_OUT(cfg != NULL, CF_E_NO_MEMORY, "json_pack failed");
    config = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(cfg);
    CF_ENSURE_MSG_OUT(config != NULL, CF_E_NO_MEMORY, "json_dumps failed");
    cf_buf_reset(&pem);
    CF_GUARD_OUT(cf_buf_appendf(&pem, "%s\n", config));
    CF_GUARD_OUT(write_new_file(dir, CF_SIM_PLATFORM_CONFIG, 0644, cf_buf_slice(&pem)));
out:
    free(config);
    cf_buf_free(&pem);
    X509_free(root);
    X509_free(platform);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(platform_key);
    return result;
}

CF_RESULT cf_sim_root_fingerprint(const char *dir, char hex[2 * 32 + 1])
{
    CF_ENSURE_REF(dir);
    cf_result result = CF_OK;
    cf_buf pem;
    STACK_OF(X509) *certs = NULL;
    uint8_t fp[32];
    CF_GUARD(read_small_file(dir, CF_SIM_ROOT_CERT, &pem));
    CF_GUARD_OUT(load_chain(cf_buf_slice(&pem), &certs));
    CF_GUARD_OUT(cf_x509_fingerprint_sha256(sk_X509_value(certs, 0), fp));
    CF_GUARD_OUT(cf_hex_encode_str(cf_slice_make(fp, sizeof fp), hex, 2 * 32 + 1));
out:
    sk_X509_pop_free(certs, X509_free);
    cf_buf_free(&pem);
    return result;
}

/* ---- policy --------------------------------------------------------------- */

typedef struct sim_policy {
    const json_t *measurements; /* array or NULL (unconstrained) */
    bool allow_debug;
    uint32_t min_svn;
    bool any_workload; /* insecure_allow_any_workload: only changes what a manifest accepts */
} sim_policy;

/* A malformed policy is the policy's fault, not the evidence's: bad_config
 * (as the snp and tdx verifiers answer), never policy_violation, which
 * means "this evidence does not satisfy a well-formed policy". */
static CF_RESULT parse_policy(const json_t *policy, sim_policy *out)
{
    memset(out, 0, sizeof *out);
    if (policy == NULL) {
        return CF_OK; /* production defaults: debug refused */
    }
    CF_ENSURE_MSG(json_is_object(policy), CF_E_CONFIG, "sim policy: expected an object");
    const char *key;
    json_t *value;
    /* jansson's iterators take non-const objects but only read them. */
    json_t *obj = (json_t *)(uintptr_t)policy;
    json_object_foreach(obj, key, value)
    {
        if (strcmp(key, "measurements") == 0) {
            CF_ENSURE_MSG(json_is_array(value) && json_array_size(value) > 0 && json_array_size(value) <= 256,
                          CF_E_CONFIG, "measurements: expected a non-empty array of at most 256 hex strings");
            size_t i;
            json_t *m;
            json_array_foreach(value, i, m)
            {
                uint8_t tmp[CF_SIM_MEASUREMENT_LEN];
                size_t len = 0;
                if (!json_is_string(m) ||
                    json_string_length(m) != 2 * CF_SIM_MEASUREMENT_LEN ||
                    cf_is_error(cf_hex_decode_fixed(cf_slice_make(json_string_value(m), json_string_length(m)),
                                                    tmp, sizeof tmp, &len))) {
                    CF_BAIL_FMT(CF_E_CONFIG, "measurements[%zu]: expected 96 hex digits (SHA-384)", i);
                }
            }
            out->measurements = value;
        } else if (strcmp(key, "allow_debug") == 0) {
            CF_ENSURE_MSG(json_is_boolean(value), CF_E_CONFIG, "allow_debug: expected true or false");
            out->allow_debug = json_is_true(value);
        } else if (strcmp(key, "min_svn") == 0) {
            CF_ENSURE_MSG(json_is_integer(value) && json_integer_value(value) >= 0 &&
                              json_integer_value(value) <= UINT32_MAX,
                          CF_E_CONFIG, "min_svn: expected an integer 0..4294967295");
            out->min_svn = (uint32_t)json_integer_value(value);
        } else if (strcmp(key, CF_POLICY_KEY_ANY_WORKLOAD) == 0) {
            CF_ENSURE_MSG(json_is_boolean(value), CF_E_CONFIG, CF_POLICY_KEY_ANY_WORKLOAD ": expected true or false");
            out->any_workload = json_is_true(value);
        } else {
            CF_BAIL_FMT(CF_E_CONFIG,
                        "%.64s: unknown key (expected measurements, allow_debug, min_svn, " CF_POLICY_KEY_ANY_WORKLOAD
                        ")",
                        key);
        }
    }
    return CF_OK;
}

CF_RESULT cf_sim_policy_validate(const json_t *policy)
{
    sim_policy p;
    return parse_policy(policy, &p);
}

/* The sim measurement is the SHA-384 of the executable: the only thing that
 * names the workload. */
CF_RESULT cf_sim_policy_pins_workload(const json_t *policy)
{
    sim_policy p;
    CF_GUARD(parse_policy(policy, &p));
    CF_ENSURE_MSG(p.measurements != NULL || p.any_workload, CF_E_CONFIG,
                  "sim policy: pins no workload: missing \"measurements\" (a manifest policy must pin the workload, "
                  "or say \"" CF_POLICY_KEY_ANY_WORKLOAD "\": true)");
    return CF_OK;
}

static bool measurement_listed(const json_t *list, const uint8_t m[CF_SIM_MEASUREMENT_LEN])
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        uint8_t want[CF_SIM_MEASUREMENT_LEN];
        size_t len = 0;
        if (json_is_string(v) &&
            cf_is_ok(cf_hex_decode_fixed(cf_slice_make(json_string_value(v), json_string_length(v)), want,
                                         sizeof want, &len)) &&
            len == sizeof want && memcmp(want, m, sizeof want) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- verification --------------------------------------------------------- */

static bool fingerprint_accepted(const json_t *roots, const uint8_t fp[32])
{
    char hex[65];
    if (cf_is_error(cf_hex_encode_str(cf_slice_make(fp, 32), hex, sizeof hex))) {
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(roots, i, v)
    {
        /* Public values: plain comparison. Case-insensitive for hand edits. */
        if (json_is_string(v) && json_string_length(v) == 64 && strcasecmp(json_string_value(v), hex) == 0) {
            return true;
        }
    }
    return false;
}

static CF_RESULT verify_chain(cf_slice collateral, const json_t *accepted_roots, int64_t now, EVP_PKEY **leaf_key,
                              uint8_t root_fp_out[32])
{
    cf_result result = CF_OK;
    STACK_OF(X509) *certs = NULL;
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    STACK_OF(X509) *roots = sk_X509_new_null();
    bool have_root = false;
    CF_ENSURE_MSG_OUT(untrusted != NULL && roots != NULL, CF_E_NO_MEMORY, "allocation failed");
    CF_GUARD_OUT(load_chain(collateral, &certs));
    X509 *leaf = sk_X509_value(certs, 0);
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        uint8_t fp[32];
        CF_GUARD_OUT(cf_x509_fingerprint_sha256(c, fp));
        if (fingerprint_accepted(accepted_roots, fp)) {
            CF_ENSURE_MSG_OUT(i != 0, CF_E_CERT, "the report signer is the root itself, not a platform key");
            CF_ENSURE_MSG_OUT(sk_X509_push(roots, c) > 0, CF_E_NO_MEMORY, "allocation failed");
            if (!have_root) {
                memcpy(root_fp_out, fp, 32);
            }
            have_root = true;
        } else if (i != 0) {
            CF_ENSURE_MSG_OUT(sk_X509_push(untrusted, c) > 0, CF_E_NO_MEMORY, "allocation failed");
        }
    }
    CF_ENSURE_MSG_OUT(have_root, CF_E_CERT,
                      "untrusted root: no certificate in the collateral has a fingerprint in accepted_roots");
    /* Explicit time; only the accepted roots are anchors. Expired or not yet
     * valid certificates fail with CF_E_EXPIRED, others CF_E_CERT. */
    if (cf_is_error(cf_x509_verify_chain(leaf, untrusted, roots, NULL, now))) {
        cf_error_add_context("sim");
        result = CF_ERROR;
        goto out;
    }
    EVP_PKEY *key = X509_get_pubkey(leaf);
    CF_ENSURE_MSG_OUT(key != NULL, CF_E_CERT, "platform certificate has no usable key");
    if (!is_p384_key(key)) {
        EVP_PKEY_free(key);
        CF_BAIL_OUT(CF_E_CERT, "platform certificate key is not ECDSA P-384");
    }
    *leaf_key = key;
out:
    sk_X509_free(roots);     /* borrowed from certs */
    sk_X509_free(untrusted); /* borrowed from certs */
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
    return result;
}

static CF_RESULT verify_signature(EVP_PKEY *key, const cf_sim_report *rep)
{
    cf_slice r = cf_slice_make(rep->sig_r.ptr, P384_COMPONENT_LEN);
    cf_slice s = cf_slice_make(rep->sig_s.ptr, P384_COMPONENT_LEN);
    if (cf_is_error(cf_ecdsa_verify_raw(key, CF_HASH_SHA384, rep->signed_part, r, s, true))) {
        CF_BAIL_MSG(CF_E_BAD_SIGNATURE, "sim report signature does not verify with the platform key");
    }
    return CF_OK;
}

static CF_RESULT fill_details(const cf_sim_report *rep, const uint8_t root_fp[32], cf_claims *out)
{
    char m[2 * CF_SIM_MEASUREMENT_LEN + 1], rd[2 * CF_REPORT_DATA_LEN + 1], kid[2 * CF_SIM_KEY_ID_LEN + 1],
        fp[65];
    CF_GUARD(cf_hex_encode_str(cf_slice_make(rep->measurement, sizeof rep->measurement), m, sizeof m));
    CF_GUARD(cf_hex_encode_str(cf_slice_make(rep->report_data, sizeof rep->report_data), rd, sizeof rd));
    CF_GUARD(cf_hex_encode_str(cf_slice_make(rep->platform_key_id, sizeof rep->platform_key_id), kid, sizeof kid));
    CF_GUARD(cf_hex_encode_str(cf_slice_make(root_fp, 32), fp, sizeof fp));
    out->details = json_pack("{s:s,s:i,s:b,s:I,s:s,s:s,s:s,s:s}", "platform", "sim", "version", (int)rep->version,
                             "debug", (int)((rep->flags & CF_SIM_FLAG_DEBUG) != 0), "svn", (json_int_t)rep->svn,
                             "measurement", m, "report_data", rd, "platform_key_id", kid, "root_fingerprint", fp);
    CF_ENSURE_MSG(out->details != NULL, CF_E_NO_MEMORY, "json_pack failed");
    return CF_OK;
}

CF_RESULT cf_sim_verify(const cf_verify_input *in, cf_claims *out)
{
    CF_ENSURE_REF(in);
    CF_ENSURE_REF(out);
    cf_result result = CF_OK;
    EVP_PKEY *leaf_key = NULL;
    cf_sim_report rep;
    sim_policy pol;
    uint8_t root_fp[32] = {0};
    uint8_t key_id[CF_SIM_KEY_ID_LEN];

    CF_GUARD_MSG(parse_policy(in->policy, &pol), "sim policy");
    CF_GUARD(cf_sim_report_parse(in->evidence, &rep));
    /* DESIGN §5: sim evidence is accepted only under an explicit root. */
    CF_ENSURE_MSG(json_is_array(in->accepted_roots) && json_array_size(in->accepted_roots) > 0, CF_E_CERT,
                  "untrusted root: sim evidence needs the sim root fingerprint in the manifest's accepted_roots");
    CF_GUARD(verify_chain(in->collateral, in->accepted_roots, in->now, &leaf_key, root_fp));
    CF_GUARD_OUT(spki_sha256(leaf_key, key_id));
    CF_ENSURE_MSG_OUT(memcmp(key_id, rep.platform_key_id, sizeof key_id) == 0, CF_E_BAD_SIGNATURE,
                      "platform_key_id does not name the certified platform key");
    CF_GUARD_OUT(verify_signature(leaf_key, &rep));

    if (in->expected_report_data != NULL) {
        CF_ENSURE_MSG_OUT(cf_ct_equal(in->expected_report_data, rep.report_data, CF_REPORT_DATA_LEN),
                          CF_E_REPORT_DATA, "report_data does not bind the expected values");
    }
    bool debug = (rep.flags & CF_SIM_FLAG_DEBUG) != 0;
    CF_ENSURE_MSG_OUT(!debug || pol.allow_debug, CF_E_POLICY, "debug: report has the debug flag set");
    if (pol.measurements != NULL) {
        CF_ENSURE_MSG_OUT(measurement_listed(pol.measurements, rep.measurement), CF_E_POLICY,
                          "measurement: not in the policy's measurements");
    }
    if (rep.svn < pol.min_svn) {
        cf_error_setf(CF_E_TCB, __FILE__, __LINE__, "svn: report svn %u below min_svn %u", rep.svn, pol.min_svn);
        result = CF_ERROR;
        goto out;
    }

    memcpy(out->report_data, rep.report_data, CF_REPORT_DATA_LEN);
    memcpy(out->measurement, rep.measurement, CF_SIM_MEASUREMENT_LEN);
    out->measurement_len = CF_SIM_MEASUREMENT_LEN;
    out->debug = debug;
    snprintf(out->tcb, sizeof out->tcb, "svn=%u", rep.svn);
    CF_GUARD_OUT(fill_details(&rep, root_fp, out));
out:
    EVP_PKEY_free(leaf_key);
    return result;
}
