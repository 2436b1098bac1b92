/* cmd_seal.c — `confide seal` / `confide open`: encrypt or decrypt a request
 * body, a response body or an SSE stream of protocol v1 (docs/protocol.md),
 * stdin to stdout, with an inference secret from a key file. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "confide/encoding.h"
#include "confide/protocol.h"

#define CHUNK 65536

static void seal_usage(FILE *f)
{
    fprintf(f,
            "usage: confide seal request  --key FILE [--endpoint NAME] [--pad N]\n"
            "       confide seal response --key FILE --request FILE [--endpoint NAME] [--status N] [--pad N]\n"
            "       confide seal stream   --key FILE --request FILE [--endpoint NAME] [--status N] [--pad N]\n"
            "       confide open request  --key FILE [--endpoint NAME] [--now MS | --no-freshness]\n"
            "       confide open response --key FILE --request FILE [--endpoint NAME] [--status N]\n"
            "       confide open stream   --key FILE --request FILE [--endpoint NAME] [--status N]\n"
            "\n"
            "Encrypt (seal) or decrypt (open) protocol v1 bodies from stdin to stdout.\n"
            "  --key FILE       the 32-byte inference secret: raw, or base64url text\n"
            "  --request FILE   the ENCRYPTED request the response or stream answers\n"
            "  --endpoint NAME  chat.completions (default), completions, embeddings\n"
            "  --status N       HTTP status of the response (default 200)\n"
            "  --pad N          pad encrypted values to a multiple of N bytes\n"
            "  --now MS         clock for the freshness check (ms since the epoch)\n"
            "  --no-freshness   skip the salt freshness check (old captures)\n"
            "`seal response|stream` act as the worker: they check that the request\n"
            "decrypts under the key (its salt may be old). `open stream` writes each\n"
            "event once it authenticated and fails with `truncated` if the stream ends\n"
            "without its final event. Exit 0 on success, 1 with \"error: <code>: ...\"\n"
            "on stderr, 2 on usage errors.\n");
}

typedef struct seal_args {
    const char *key_path;
    const char *request_path;
    const char *endpoint;
    int status;
    uint32_t pad;
    int64_t now_ms;
    bool no_freshness;
} seal_args;

/* Read fd to its end; out->max bounds it (CF_E_TOO_LARGE). */
static CF_RESULT read_fd(int fd, cf_buf *out)
{
    uint8_t chunk[CHUNK];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        CF_ENSURE_MSG(n >= 0, CF_E_IO, "read failed");
        if (n == 0) {
            return CF_OK;
        }
        cf_result r = cf_buf_append(out, chunk, (size_t)n);
        cf_wipe(chunk, (size_t)n);
        CF_GUARD(r);
    }
}

static CF_RESULT read_path(const char *path, cf_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        CF_BAIL_FMT(CF_E_IO, "cannot open %s", path);
    }
    cf_result r = read_fd(fd, out);
    close(fd);
    return r;
}

/* 32 raw bytes, or base64url text (surrounding whitespace ignored). */
static CF_RESULT load_key(const char *path, uint8_t key[CF_PROTO_SECRET_LEN])
{
    cf_result result = CF_OK;
    cf_buf file;
    cf_buf_init(&file, 4096);
    /* The path is not echoed: a user who passes the key itself instead of
     * a file name must not see the secret in an error message (or a log
     * that captures stderr). */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CF_ENSURE_MSG_OUT(fd >= 0, CF_E_IO, "cannot open the --key file (--key names a file that holds the key)");
    cf_result r = read_fd(fd, &file);
    close(fd);
    CF_GUARD_OUT(r);
    if (file.len == CF_PROTO_SECRET_LEN) {
        memcpy(key, file.data, CF_PROTO_SECRET_LEN);
        goto out;
    }
    cf_slice text = cf_buf_slice(&file);
    while (text.len > 0 && (text.ptr[text.len - 1] == '\n' || text.ptr[text.len - 1] == '\r' ||
                            text.ptr[text.len - 1] == ' ')) {
        text.len--;
    }
    while (text.len > 0 && (text.ptr[0] == ' ' || text.ptr[0] == '\n')) {
        text.ptr++;
        text.len--;
    }
    size_t got = 0;
    CF_ENSURE_MSG_OUT(cf_is_ok(cf_b64url_decode_fixed(text, key, CF_PROTO_SECRET_LEN, &got)) &&
                          got == CF_PROTO_SECRET_LEN,
                      CF_E_BAD_KEY, "key file must hold 32 bytes, raw or base64url");
out:
    cf_buf_free(&file);
    return result;
}

static CF_RESULT write_all(cf_slice s)
{
    size_t off = 0;
    while (off < s.len) {
        ssize_t n = write(STDOUT_FILENO, s.ptr + off, s.len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        CF_ENSURE_MSG(n > 0, CF_E_IO, "write to stdout failed");
        off += (size_t)n;
    }
    return CF_OK;
}

static CF_RESULT key_lookup(void *ctx, const char *key_id, uint8_t secret[CF_PROTO_SECRET_LEN])
{
    const uint8_t *key = ctx;
    char id[CF_PROTO_KEY_ID_LEN + 1];
    CF_GUARD(cf_proto_key_id(key, id));
    CF_ENSURE_MSG(strcmp(id, key_id) == 0, CF_E_UNKNOWN_KEY, "the request uses another key");
    memcpy(secret, key, CF_PROTO_SECRET_LEN);
    return CF_OK;
}

/* Worker-side session for a response: decrypt the request (its salt may be
 * old) and keep the session. */
static CF_RESULT worker_session(const cf_proto_endpoint *ep, uint8_t key[CF_PROTO_SECRET_LEN], const seal_args *a,
                                cf_proto_session **out)
{
    cf_result result = CF_OK;
    cf_buf req, plain;
    cf_buf_init(&req, CF_PROTO_DEFAULT_MAX_BODY);
    cf_buf_init(&plain, CF_PROTO_DEFAULT_MAX_BODY);
    CF_GUARD_OUT(read_path(a->request_path, &req));
    cf_proto_open_options o = {.window_ms = -1, .pad_bucket = a->pad};
    CF_GUARD_OUT(cf_proto_request_open(ep, cf_buf_slice(&req), key_lookup, key, &o, &plain, out));
out:
    cf_buf_free(&req);
    cf_buf_free(&plain);
    return result;
}

static CF_RESULT client_session(const cf_proto_endpoint *ep, const uint8_t key[CF_PROTO_SECRET_LEN],
                                const seal_args *a, cf_proto_session **out)
{
    cf_buf req;
    cf_buf_init(&req, CF_PROTO_DEFAULT_MAX_BODY);
    cf_result r = read_path(a->request_path, &req);
    if (cf_is_ok(r)) {
        r = cf_proto_session_from_request(ep, key, cf_buf_slice(&req), out);
    }
    cf_buf_free(&req);
    return r;
}

/* Stream stdin through `feed`, writing what each chunk produces. */
static CF_RESULT pump_stream(cf_proto_session *s, bool sealing)
{
    cf_result result = CF_OK;
    uint8_t chunk[CHUNK];
    cf_buf out;
    cf_buf_init(&out, 0);
    CF_GUARD_OUT(cf_proto_stream_begin(s, 200));
    for (;;) {
        ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        CF_ENSURE_MSG_OUT(n >= 0, CF_E_IO, "read failed");
        if (n == 0) {
            break;
        }
        cf_slice in = cf_slice_make(chunk, (size_t)n);
        cf_result r = sealing ? cf_proto_stream_seal_feed(s, in, &out) : cf_proto_stream_open_feed(s, in, &out);
        /* What was produced before a failure is complete and authentic. */
        CF_GUARD_OUT(write_all(cf_buf_slice(&out)));
        cf_buf_reset(&out);
        CF_GUARD_OUT(r);
    }
    if (sealing) {
        CF_GUARD_OUT(cf_proto_stream_seal_finish(s, &out));
        CF_GUARD_OUT(write_all(cf_buf_slice(&out)));
    } else {
        CF_GUARD_OUT(cf_proto_reply_finish(s));
    }
out:
    cf_wipe(chunk, sizeof chunk);
    cf_buf_free(&out);
    return result;
}

static CF_RESULT run(bool sealing, const char *what, const seal_args *a)
{
    cf_result result = CF_OK;
    uint8_t key[CF_PROTO_SECRET_LEN];
    const cf_proto_endpoint *ep = NULL;
    cf_proto_session *s = NULL;
    cf_buf in, out;
    cf_buf_init(&in, CF_PROTO_DEFAULT_MAX_BODY);
    cf_buf_init(&out, 0);

    CF_GUARD_OUT(cf_proto_endpoint_by_name(cf_slice_cstr(a->endpoint), &ep));
    CF_ENSURE_MSG_OUT(ep->encrypted, CF_E_INVALID_ARGUMENT, "this endpoint is not encrypted");
    CF_GUARD_OUT(load_key(a->key_path, key));
    bool is_request = strcmp(what, "request") == 0;
    bool is_stream = strcmp(what, "stream") == 0;
    if (!is_request) {
        CF_GUARD_OUT(sealing ? worker_session(ep, key, a, &s) : client_session(ep, key, a, &s));
    }
    if (is_stream) {
        if (a->status != 200) {
            /* begin() in pump_stream uses 200; streams are 2xx replies. */
            CF_BAIL_OUT(CF_E_INVALID_ARGUMENT, "streams are answered with status 200");
        }
        CF_GUARD_OUT(pump_stream(s, sealing));
        goto out;
    }
    CF_GUARD_OUT(read_fd(STDIN_FILENO, &in));
    if (is_request && sealing) {
        cf_proto_seal_options o = {.pad_bucket = a->pad, .now_ms = a->now_ms};
        CF_GUARD_OUT(cf_proto_request_seal(ep, key, cf_buf_slice(&in), &o, &out, &s));
    } else if (is_request) {
        cf_proto_open_options o = {.now_ms = a->now_ms, .window_ms = a->no_freshness ? -1 : 0};
        CF_GUARD_OUT(cf_proto_request_open(ep, cf_buf_slice(&in), key_lookup, key, &o, &out, &s));
    } else if (sealing) {
        CF_GUARD_OUT(cf_proto_response_seal(s, a->status, cf_buf_slice(&in), &out));
    } else {
        CF_GUARD_OUT(cf_proto_response_open(s, a->status, cf_buf_slice(&in), &out));
    }
    CF_GUARD_OUT(write_all(cf_buf_slice(&out)));
out:
    cf_wipe(key, sizeof key);
    cf_proto_session_free(s);
    cf_buf_free(&in);
    cf_buf_free(&out);
    return result;
}

static int seal_or_open(int argc, char **argv, bool sealing)
{
    seal_args a = {.endpoint = "chat.completions", .status = 200};
    static const struct option longopts[] = {
        {"key", required_argument, NULL, 'k'},    {"request", required_argument, NULL, 'r'},
        {"endpoint", required_argument, NULL, 'e'}, {"status", required_argument, NULL, 's'},
        {"pad", required_argument, NULL, 'p'},    {"now", required_argument, NULL, 'n'},
        {"no-freshness", no_argument, NULL, 'F'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = sealing ? "seal" : "open";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        seal_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    if (strcmp(what, "request") != 0 && strcmp(what, "response") != 0 && strcmp(what, "stream") != 0) {
        fprintf(stderr, "confide %s: expected request, response or stream\n", cmd);
        return 2;
    }
    int c;
    char *end;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k': a.key_path = optarg; break;
        case 'r': a.request_path = optarg; break;
        case 'e': a.endpoint = optarg; break;
        case 's':
            a.status = (int)strtol(optarg, &end, 10);
            if (*end != '\0' || a.status < 100 || a.status > 999) {
                fprintf(stderr, "confide %s: --status expects 100..999\n", cmd);
                return 2;
            }
            break;
        case 'p': {
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 0 || v > CF_PROTO_MAX_PAD_BUCKET) {
                fprintf(stderr, "confide %s: --pad expects 0..%d\n", cmd, CF_PROTO_MAX_PAD_BUCKET);
                return 2;
            }
            a.pad = (uint32_t)v;
            break;
        }
        case 'n':
            a.now_ms = strtoll(optarg, &end, 10);
            if (*end != '\0' || a.now_ms <= 0) {
                fprintf(stderr, "confide %s: --now expects milliseconds since the epoch\n", cmd);
                return 2;
            }
            break;
        case 'F': a.no_freshness = true; break;
        case 'h': seal_usage(stdout); return 0;
        default: seal_usage(stderr); return 2;
        }
    }
    if (optind != argc || a.key_path == NULL) {
        fprintf(stderr, "confide %s %s: --key is required (see --help)\n", cmd, what);
        return 2;
    }
    if (strcmp(what, "request") != 0 && a.request_path == NULL) {
        fprintf(stderr, "confide %s %s: --request FILE (the encrypted request) is required\n", cmd, what);
        return 2;
    }
    if (cf_is_error(run(sealing, what, &a))) {
        return cf_cli_fail(sealing ? "seal" : "open");
    }
    return 0;
}

static int cmd_seal(int argc, char **argv) { return seal_or_open(argc, argv, true); }
static int cmd_open(int argc, char **argv) { return seal_or_open(argc, argv, false); }

CF_CLI_COMMAND("seal", "encrypt a request, response or SSE stream (protocol v1)", cmd_seal)
CF_CLI_COMMAND("open", "decrypt a request, response or SSE stream (protocol v1)", cmd_open)
