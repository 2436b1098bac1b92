/* daemon.c — flags with env fallback, signals, rate limiter (see daemon.h). */
#include "confide/daemon.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "confide/buf.h"
#include "confide/log.h"
#include "confide/slice.h"

#define SECRET_FILE_MAX ((size_t)64 * 1024)
#define ENV_NAME_MAX 128
#define HELP_FLAG_ID 1000
#define LOG_LEVEL_ID 1001

/* ---- flags ------------------------------------------------------------------ */

static CF_RESULT env_name(const cf_flag_set *set, const char *flag, char *out, size_t outsize)
{
    int n = snprintf(out, outsize, "%s_%s", set->env_prefix != NULL ? set->env_prefix : "CONFIDE", flag);
    CF_ENSURE_MSG(n > 0 && (size_t)n < outsize, CF_E_CONFIG, "flag name too long");
    for (char *p = out; *p; p++) {
        *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
    return CF_OK;
}

static bool valid_flag_name(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 64) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            return false;
        }
    }
    return strcmp(s, "help") != 0 && strcmp(s, "log-level") != 0;
}

/* Read a secret file: bounded, one trailing newline stripped, no NUL bytes. */
static CF_RESULT read_secret_file(const char *flag, const char *path, char **out)
{
    cf_result result = CF_OK;
    cf_buf buf;
    cf_buf_init(&buf, SECRET_FILE_MAX + 1);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        cf_error_setf(CF_E_CONFIG, __FILE__, __LINE__, "--%s: cannot read secret file %s", flag, path);
        return CF_ERROR;
    }
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (cf_is_error(cf_buf_append(&buf, chunk, n))) {
            cf_error_setf(CF_E_CONFIG, __FILE__, __LINE__, "--%s: secret file larger than 64 KiB", flag);
            result = CF_ERROR;
            goto out;
        }
    }
    CF_ENSURE_MSG_OUT(!ferror(f), CF_E_CONFIG, "error reading secret file");
    if (buf.len > 0 && buf.data[buf.len - 1] == '\n') {
        buf.len--;
        if (buf.len > 0 && buf.data[buf.len - 1] == '\r') {
            buf.len--;
        }
    }
    CF_ENSURE_MSG_OUT(memchr(buf.data, '\0', buf.len) == NULL, CF_E_CONFIG, "secret file contains a NUL byte");
    const char *s = NULL;
    CF_GUARD_OUT(cf_buf_cstr(&buf, &s));
    size_t len = 0;
    uint8_t *taken = cf_buf_take(&buf, &len);
    *out = (char *)taken;
out:
    cf_wipe(chunk, sizeof chunk);
    fclose(f);
    cf_buf_free(&buf);
    return result;
}

static CF_RESULT parse_int(const cf_flag *fl, const char *v, int64_t *out)
{
    errno = 0;
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    CF_ENSURE_MSG(end != v && errno == 0, CF_E_CONFIG, "not an integer");
    int64_t mult = 1;
    if (*end != '\0') {
        switch (*end) {
        case 'k': case 'K': mult = 1024; break;
        case 'm': case 'M': mult = 1024 * 1024; break;
        case 'g': case 'G': mult = 1024 * 1024 * 1024; break;
        default: CF_BAIL_MSG(CF_E_CONFIG, "not an integer");
        }
        CF_ENSURE_MSG(end[1] == '\0', CF_E_CONFIG, "not an integer");
    }
    CF_ENSURE_MSG(x <= INT64_MAX / mult && x >= INT64_MIN / mult, CF_E_CONFIG, "integer out of range");
    int64_t r = (int64_t)x * mult;
    if (fl->min != 0 || fl->max != 0) {
        CF_ENSURE_MSG(r >= fl->min && r <= fl->max, CF_E_CONFIG, "integer out of range");
    }
    *out = r;
    return CF_OK;
}

static CF_RESULT parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return CF_OK;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return CF_OK;
        }
    }
    CF_BAIL_MSG(CF_E_CONFIG, "not a boolean (true/false)");
}

static void free_target(cf_flag *fl)
{
    if (fl->type != CF_FLAG_STRING && fl->type != CF_FLAG_SECRET) {
        return;
    }
    char **t = fl->target;
    if (*t != NULL) {
        cf_free_secret(*t, strlen(*t));
        *t = NULL;
    }
}

static CF_RESULT apply_value(cf_flag *fl, const char *v, bool from_default)
{
    switch (fl->type) {
    case CF_FLAG_STRING:
    case CF_FLAG_SECRET: {
        char **t = fl->target;
        char *copy = NULL;
        if (v == NULL) {
            *t = NULL;
            return CF_OK;
        }
        if (fl->type == CF_FLAG_SECRET && v[0] == '@' && !from_default) {
            CF_GUARD(read_secret_file(fl->name, v + 1, &copy));
        } else {
            copy = strdup(v);
            CF_ENSURE(copy != NULL, CF_E_NO_MEMORY);
        }
        *t = copy;
        return CF_OK;
    }
    case CF_FLAG_INT: {
        int64_t x = 0;
        if (v != NULL) {
            CF_GUARD(parse_int(fl, v, &x));
        }
        *(int64_t *)fl->target = x;
        return CF_OK;
    }
    case CF_FLAG_BOOL: {
        bool b = false;
        if (v != NULL) {
            CF_GUARD(parse_bool(v, &b));
        }
        *(bool *)fl->target = b;
        return CF_OK;
    }
    }
    CF_BAIL(CF_E_INTERNAL);
}

void cf_flags_print_help(const cf_flag_set *set, FILE *out)
{
    char env[ENV_NAME_MAX];
    static const char *const kinds[] = {"STRING", "SECRET", "INT", ""};
    fprintf(out, "Usage: %s [flags]\n\n%s\n\nFlags (each also read from the environment):\n", set->program,
            set->summary != NULL ? set->summary : "");
    for (size_t i = 0; i < set->count; i++) {
        const cf_flag *fl = &set->flags[i];
        if (cf_is_error(env_name(set, fl->name, env, sizeof env))) {
            env[0] = '\0';
        }
        fprintf(out, "  --%s%s%s\n      %s\n", fl->name, fl->type == CF_FLAG_BOOL ? "" : "=",
                kinds[fl->type], fl->help != NULL ? fl->help : "");
        if (fl->type == CF_FLAG_SECRET) {
            fprintf(out, "      (secret; @/path reads it from a file)");
        } else if (fl->default_value != NULL) {
            fprintf(out, "      (default: %s)", fl->default_value);
        } else {
            fprintf(out, "      (%s)", fl->required ? "required" : "no default");
        }
        fprintf(out, " env %s\n", env);
    }
    if (cf_is_error(env_name(set, "log-level", env, sizeof env))) {
        env[0] = '\0';
    }
    fprintf(out, "  --log-level=LEVEL\n      debug, info, warn or error\n      (default: info) env %s\n", env);
    fprintf(out, "  --help\n      print this help and exit\n");
}

CF_RESULT cf_flags_parse(cf_flag_set *set, int argc, char **argv, FILE *help_out, cf_flags_outcome *outcome)
{
    cf_result result = CF_OK;
    struct option *longopts = NULL;
    const char **cli = NULL;
    const char *cli_log_level = NULL;
    char env[ENV_NAME_MAX];

    CF_ENSURE_REF(set);
    CF_ENSURE_REF(outcome);
    CF_ENSURE(set->count < 1000 && (set->flags != NULL || set->count == 0), CF_E_INVALID_ARGUMENT);
    *outcome = CF_FLAGS_RUN;
    for (size_t i = 0; i < set->count; i++) {
        CF_ENSURE_MSG(valid_flag_name(set->flags[i].name) && set->flags[i].target != NULL, CF_E_INVALID_ARGUMENT,
                      "flag table: bad name or no target");
        for (size_t j = 0; j < i; j++) {
            CF_ENSURE_MSG(strcmp(set->flags[i].name, set->flags[j].name) != 0, CF_E_INVALID_ARGUMENT,
                          "flag table: duplicate name");
        }
    }
    longopts = calloc(set->count + 3, sizeof *longopts);
    cli = calloc(set->count + 1, sizeof *cli);
    CF_ENSURE_OUT(longopts != NULL && cli != NULL, CF_E_NO_MEMORY);
    for (size_t i = 0; i < set->count; i++) {
        longopts[i].name = set->flags[i].name;
        longopts[i].has_arg = set->flags[i].type == CF_FLAG_BOOL ? optional_argument : required_argument;
        longopts[i].val = (int)i;
    }
    longopts[set->count] = (struct option){"help", no_argument, NULL, HELP_FLAG_ID};
    longopts[set->count + 1] = (struct option){"log-level", required_argument, NULL, LOG_LEVEL_ID};

    optind = 0; /* GNU: full re-initialisation, so parsing can run again */
    opterr = 0;
    for (;;) {
        int idx = -1;
        int c = getopt_long(argc, argv, "+:", longopts, &idx);
        if (c == -1) {
            break;
        }
        if (c == HELP_FLAG_ID) {
            cf_flags_print_help(set, help_out != NULL ? help_out : stdout);
            *outcome = CF_FLAGS_HELP;
            goto out;
        }
        if (c == LOG_LEVEL_ID) {
            cli_log_level = optarg;
            continue;
        }
        if (c == ':' || c == '?') {
            const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
            result = CF_ERROR;
            cf_error_setf(CF_E_CONFIG, __FILE__, __LINE__, "%s: %.64s", c == ':' ? "missing value for" : "unknown flag",
                          bad);
            goto out;
        }
        CF_ENSURE_OUT(c >= 0 && (size_t)c < set->count, CF_E_INTERNAL);
        cli[c] = set->flags[c].type == CF_FLAG_BOOL && optarg == NULL ? "true" : optarg;
    }
    if (optind < argc) {
        result = CF_ERROR;
        cf_error_setf(CF_E_CONFIG, __FILE__, __LINE__, "unexpected argument: %.64s", argv[optind]);
        goto out;
    }

    for (size_t i = 0; i < set->count; i++) {
        cf_flag *fl = &set->flags[i];
        CF_GUARD_OUT(env_name(set, fl->name, env, sizeof env));
        const char *envv = getenv(env);
        const char *v = cli[i] != NULL ? cli[i] : (envv != NULL ? envv : fl->default_value);
        bool from_default = cli[i] == NULL && envv == NULL;
        free_target(fl);
        if (v == NULL && fl->required) {
            result = CF_ERROR;
            cf_error_setf(CF_E_CONFIG, __FILE__, __LINE__, "--%s (or %s) is required", fl->name, env);
            goto out;
        }
        if (cf_is_error(apply_value(fl, v, from_default))) {
            /* The detail names the flag; never the value (it may be secret). */
            char ctx[96];
            snprintf(ctx, sizeof ctx, "--%s", fl->name);
            cf_error_add_context(ctx);
            result = CF_ERROR;
            goto out;
        }
    }

    CF_GUARD_OUT(env_name(set, "log-level", env, sizeof env));
    const char *level = cli_log_level != NULL ? cli_log_level : getenv(env);
    if (level != NULL) {
        int lv = cf_log_level_parse(level);
        CF_ENSURE_MSG_OUT(lv >= 0, CF_E_CONFIG, "--log-level must be debug, info, warn or error");
        cf_log_set_level((cf_log_level)lv);
    }
out:
    free(longopts);
    free(cli);
    if (cf_is_error(result)) {
        cf_flags_free(set);
    }
    return result;
}

void cf_flags_free(cf_flag_set *set)
{
    if (set == NULL) {
        return;
    }
    for (size_t i = 0; i < set->count; i++) {
        if (set->flags[i].target != NULL) {
            free_target(&set->flags[i]);
        }
    }
}

/* ---- addresses ---------------------------------------------------------------- */

static bool host_char(char c, bool bracketed)
{
    bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (bracketed) {
        return hex || c == ':' || c == '.';
    }
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

CF_RESULT cf_parse_host_port(const char *spec, uint16_t default_port, char *host, size_t host_size, uint16_t *port)
{
    CF_ENSURE_REF(spec);
    CF_ENSURE_REF(host);
    CF_ENSURE_REF(port);
    CF_ENSURE(host_size > 0, CF_E_INVALID_ARGUMENT);
    size_t len = strnlen(spec, 300);
    CF_ENSURE_MSG(len > 0 && len < 300, CF_E_CONFIG, "address empty or too long");
    cf_reader r = cf_reader_make(cf_slice_make(spec, len));
    bool bracketed = spec[0] == '[';
    const char *host_start = spec + (bracketed ? 1 : 0);
    size_t host_len = 0;
    const char *port_str = NULL;
    if (bracketed) {
        const char *close = memchr(spec, ']', len);
        CF_ENSURE_MSG(close != NULL, CF_E_CONFIG, "missing ']' in address");
        host_len = (size_t)(close - host_start);
        size_t after = (size_t)(close - spec) + 1;
        CF_GUARD(cf_reader_skip(&r, after));
        if (!cf_reader_done(&r)) {
            CF_ENSURE_MSG(spec[after] == ':', CF_E_CONFIG, "expected ':' after ']'");
            port_str = spec + after + 1;
        }
    } else {
        const char *colon = memchr(spec, ':', len);
        if (colon != NULL) {
            CF_ENSURE_MSG(memchr(colon + 1, ':', len - (size_t)(colon - spec) - 1) == NULL, CF_E_CONFIG,
                          "IPv6 addresses need brackets: [addr]:port");
            host_len = (size_t)(colon - spec);
            port_str = colon + 1;
        } else {
            host_len = len;
        }
    }
    CF_ENSURE_MSG(host_len > 0, CF_E_CONFIG, "address has no host");
    CF_ENSURE_MSG(!bracketed || memchr(host_start, ':', host_len) != NULL, CF_E_CONFIG,
                  "brackets are for IPv6 addresses only");
    CF_ENSURE_MSG(host_len < host_size, CF_E_CONFIG, "host too long");
    for (size_t i = 0; i < host_len; i++) {
        CF_ENSURE_MSG(host_char(host_start[i], bracketed), CF_E_CONFIG, "bad character in host");
    }
    uint32_t p = default_port;
    if (port_str != NULL) {
        size_t plen = len - (size_t)(port_str - spec);
        CF_ENSURE_MSG(plen >= 1 && plen <= 5, CF_E_CONFIG, "port must be 0..65535");
        p = 0;
        for (size_t i = 0; i < plen; i++) {
            CF_ENSURE_MSG(port_str[i] >= '0' && port_str[i] <= '9', CF_E_CONFIG, "port must be 0..65535");
            p = p * 10 + (uint32_t)(port_str[i] - '0');
        }
        CF_ENSURE_MSG(p <= 65535, CF_E_CONFIG, "port must be 0..65535");
    } else {
        CF_ENSURE_MSG(default_port != 0, CF_E_CONFIG, "address needs a port: host:port");
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    *port = (uint16_t)p;
    return CF_OK;
}

/* ---- signals ------------------------------------------------------------------ */

struct cf_daemon_signals {
    struct event *term;
    struct event *intr;
    void (*on_shutdown)(int signo, void *arg);
    void *arg;
};

static void signal_cb(evutil_socket_t signo, short what, void *arg)
{
    cf_daemon_signals *s = arg;
    (void)what;
    CF_LOG_INFO("signal", cf_kv_int("signo", (int64_t)signo));
    s->on_shutdown((int)signo, s->arg);
}

CF_RESULT cf_daemon_signals_new(struct event_base *base, void (*on_shutdown)(int signo, void *arg), void *arg,
                                cf_daemon_signals **out)
{
    CF_ENSURE_REF(base);
    CF_ENSURE_REF(on_shutdown);
    CF_ENSURE_REF(out);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    CF_ENSURE_MSG(sigaction(SIGPIPE, &sa, NULL) == 0, CF_E_IO, "cannot ignore SIGPIPE");
    cf_daemon_signals *s = calloc(1, sizeof *s);
    CF_ENSURE(s != NULL, CF_E_NO_MEMORY);
    s->on_shutdown = on_shutdown;
    s->arg = arg;
    s->term = evsignal_new(base, SIGTERM, signal_cb, s);
    s->intr = evsignal_new(base, SIGINT, signal_cb, s);
    if (s->term == NULL || s->intr == NULL || evsignal_add(s->term, NULL) != 0 || evsignal_add(s->intr, NULL) != 0) {
        cf_daemon_signals_free(s);
        CF_BAIL_MSG(CF_E_IO, "cannot install signal handlers");
    }
    *out = s;
    return CF_OK;
}

void cf_daemon_signals_free(cf_daemon_signals *s)
{
    if (s == NULL) {
        return;
    }
    if (s->term != NULL) {
        event_free(s->term);
    }
    if (s->intr != NULL) {
        event_free(s->intr);
    }
    free(s);
}

/* ---- rate limiter ----------------------------------------------------------------- */

#define PEER_KEY_MAX 64
#define NIL UINT32_MAX

typedef struct peer_entry {
    char key[PEER_KEY_MAX];
    double tokens;
    uint64_t last_ms;
    uint32_t hash_next; /* chain in the bucket */
    uint32_t lru_prev;  /* towards most recent */
    uint32_t lru_next;  /* towards least recent */
    bool used;
} peer_entry;

struct cf_rate_limiter {
    double rate_per_ms;
    double burst;
    uint64_t seed;
    size_t max;
    size_t used;
    uint32_t nbuckets; /* power of two */
    uint32_t *buckets;
    peer_entry *entries;
    uint32_t lru_head; /* most recent */
    uint32_t lru_tail; /* least recent: evicted first */
};

uint64_t cf_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Seeded FNV-1a with a murmur3 finaliser: the seed is random per process so
 * peers cannot aim at one chain; chains are bounded by max_peers anyway. */
static uint32_t peer_hash(const cf_rate_limiter *rl, const char *key)
{
    uint64_t h = 1469598103934665603ull ^ rl->seed;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (uint32_t)h & (rl->nbuckets - 1);
}

CF_RESULT cf_rate_limiter_new(double rate_per_s, double burst, size_t max_peers, cf_rate_limiter **out)
{
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(rate_per_s > 0 && burst >= 1 && max_peers > 0 && max_peers <= (1u << 24), CF_E_INVALID_ARGUMENT,
                  "rate > 0, burst >= 1, 0 < max_peers <= 16M");
    cf_rate_limiter *rl = calloc(1, sizeof *rl);
    CF_ENSURE(rl != NULL, CF_E_NO_MEMORY);
    rl->rate_per_ms = rate_per_s / 1000.0;
    rl->burst = burst;
    rl->max = max_peers;
    rl->nbuckets = 1;
    while (rl->nbuckets < 2 * max_peers) {
        rl->nbuckets <<= 1;
    }
    rl->buckets = malloc(rl->nbuckets * sizeof *rl->buckets);
    rl->entries = calloc(max_peers, sizeof *rl->entries);
    if (rl->buckets == NULL || rl->entries == NULL || RAND_bytes((unsigned char *)&rl->seed, sizeof rl->seed) != 1) {
        cf_rate_limiter_free(rl);
        CF_BAIL(CF_E_NO_MEMORY);
    }
    for (uint32_t i = 0; i < rl->nbuckets; i++) {
        rl->buckets[i] = NIL;
    }
    rl->lru_head = rl->lru_tail = NIL;
    *out = rl;
    return CF_OK;
}

void cf_rate_limiter_free(cf_rate_limiter *rl)
{
    if (rl == NULL) {
        return;
    }
    free(rl->buckets);
    free(rl->entries);
    free(rl);
}

size_t cf_rate_limiter_size(const cf_rate_limiter *rl) { return rl != NULL ? rl->used : 0; }

static void lru_unlink(cf_rate_limiter *rl, uint32_t i)
{
    peer_entry *e = &rl->entries[i];
    if (e->lru_prev != NIL) {
        rl->entries[e->lru_prev].lru_next = e->lru_next;
    } else {
        rl->lru_head = e->lru_next;
    }
    if (e->lru_next != NIL) {
        rl->entries[e->lru_next].lru_prev = e->lru_prev;
    } else {
        rl->lru_tail = e->lru_prev;
    }
    e->lru_prev = e->lru_next = NIL;
}

static void lru_push_front(cf_rate_limiter *rl, uint32_t i)
{
    peer_entry *e = &rl->entries[i];
    e->lru_prev = NIL;
    e->lru_next = rl->lru_head;
    if (rl->lru_head != NIL) {
        rl->entries[rl->lru_head].lru_prev = i;
    }
    rl->lru_head = i;
    if (rl->lru_tail == NIL) {
        rl->lru_tail = i;
    }
}

static void hash_remove(cf_rate_limiter *rl, uint32_t i)
{
    uint32_t b = peer_hash(rl, rl->entries[i].key);
    uint32_t *link = &rl->buckets[b];
    while (*link != NIL) {
        if (*link == i) {
            *link = rl->entries[i].hash_next;
            return;
        }
        link = &rl->entries[*link].hash_next;
    }
}

bool cf_rate_limiter_allow(cf_rate_limiter *rl, const char *peer, uint64_t now_ms)
{
    if (rl == NULL) {
        return true;
    }
    char key[PEER_KEY_MAX];
    snprintf(key, sizeof key, "%s", peer != NULL ? peer : "");
    uint32_t b = peer_hash(rl, key);
    uint32_t i = rl->buckets[b];
    while (i != NIL && strcmp(rl->entries[i].key, key) != 0) {
        i = rl->entries[i].hash_next;
    }
    peer_entry *e;
    if (i == NIL) {
        if (rl->used < rl->max) {
            i = (uint32_t)rl->used++;
        } else {
            i = rl->lru_tail; /* forget the least recently seen peer */
            lru_unlink(rl, i);
            hash_remove(rl, i);
        }
        e = &rl->entries[i];
        memcpy(e->key, key, sizeof key);
        e->tokens = rl->burst;
        e->last_ms = now_ms;
        e->used = true;
        e->hash_next = rl->buckets[b];
        rl->buckets[b] = i;
        lru_push_front(rl, i);
    } else {
        e = &rl->entries[i];
        lru_unlink(rl, i);
        lru_push_front(rl, i);
    }
    if (now_ms > e->last_ms) {
        e->tokens += (double)(now_ms - e->last_ms) * rl->rate_per_ms;
        if (e->tokens > rl->burst) {
            e->tokens = rl->burst;
        }
        e->last_ms = now_ms;
    }
    if (e->tokens >= 1.0) {
        e->tokens -= 1.0;
        return true;
    }
    return false;
}

bool cf_flags_parse_or_exit(cf_flag_set *set, const char *program, int argc, char **argv, int *exit_code)
{
    cf_flags_outcome outcome;
    if (cf_is_error(cf_flags_parse(set, argc, argv, stdout, &outcome))) {
        char buf[512];
        fprintf(stderr, "%s: %s\n(see %s --help)\n", program, cf_error_describe_user(buf, sizeof buf), program);
        cf_flags_free(set);
        *exit_code = 2;
        return false;
    }
    if (outcome == CF_FLAGS_HELP) {
        cf_flags_free(set);
        *exit_code = 0;
        return false;
    }
    return true;
}
