/*
 * daemon.h — what every confide daemon needs around its event loop:
 * declarative command-line flags with environment fallback and generated
 * --help, @file secrets, a log level flag, SIGTERM/SIGINT -> graceful
 * shutdown through libevent, SIGPIPE ignored, and a bounded per-peer
 * token-bucket rate limiter.
 *
 * Flags. A daemon declares a table of cf_flag (long name, type, default,
 * help, where to store) and calls cf_flags_parse(). For every flag the value
 * comes from, in order: the command line (--name=value or --name value), the
 * environment variable <PREFIX>_<NAME> (upper case, '-' -> '_', e.g.
 * CONFIDE_AS_LISTEN for --listen), the default. --help prints every flag
 * with its default and environment name. --log-level (debug|info|warn|error,
 * env <PREFIX>_LOG_LEVEL) is built in and applied with cf_log_set_level.
 *
 * Secrets. A CF_FLAG_SECRET value of the form @/path/file is replaced by the
 * file's content (one trailing newline stripped, at most 64 KiB), so secrets
 * need not appear in argv or the environment. Secret values are never
 * printed (--help shows "(secret)"), are wiped by cf_flags_free() and have
 * no default shown.
 *
 * Strings parsed into a table are owned by the table's storage and freed by
 * cf_flags_free(); integer flags accept decimal with optional k/M/G (x1024)
 * suffix for sizes; bool flags take no value on the command line (--flag),
 * or true/false/1/0/yes/no from the environment or --flag=value.
 */
#ifndef CONFIDE_DAEMON_H
#define CONFIDE_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "confide/result.h"

struct event_base;

typedef enum cf_flag_type {
    CF_FLAG_STRING, /* char ** (heap copy, or NULL if no value/default) */
    CF_FLAG_SECRET, /* char ** ; @file allowed; wiped by cf_flags_free */
    CF_FLAG_INT,    /* int64_t *; k/M/G suffixes = x1024 */
    CF_FLAG_BOOL,   /* bool * */
} cf_flag_type;

typedef struct cf_flag {
    const char *name;          /* long option without "--", [a-z0-9-] */
    cf_flag_type type;
    const char *default_value; /* text form, NULL = none */
    const char *help;          /* one line */
    void *target;              /* see cf_flag_type */
    bool required;             /* fail when no value from argv/env/default */
    int64_t min, max;          /* CF_FLAG_INT range; both 0 = unchecked */
} cf_flag;

typedef struct cf_flag_set {
    const char *program;    /* "confide-as" */
    const char *summary;    /* one paragraph for --help */
    const char *env_prefix; /* "CONFIDE_AS" */
    cf_flag *flags;
    size_t count;
} cf_flag_set;

typedef enum cf_flags_outcome {
    CF_FLAGS_RUN = 0, /* parsed: run the daemon */
    CF_FLAGS_HELP,    /* --help printed to `help_out`: exit 0 */
} cf_flags_outcome;

/* Parse argv (positional arguments are rejected). Errors (unknown flag, bad
 * value, missing required flag, unreadable @file) fail with CF_E_CONFIG and a
 * detail naming the flag; the caller prints it and exits 2. */
CF_RESULT cf_flags_parse(cf_flag_set *set, int argc, char **argv, FILE *help_out, cf_flags_outcome *outcome);
void cf_flags_print_help(const cf_flag_set *set, FILE *out);
/* The daemons' prologue: parse; on a bad flag print
 * "<program>: <code>: <detail>" and a --help hint on stderr. Returns true
 * when the daemon should run; otherwise the flags are freed and *exit_code
 * is the process status (0 after --help, 2 after a usage error). */
bool cf_flags_parse_or_exit(cf_flag_set *set, const char *program, int argc, char **argv, int *exit_code);
/* Free (and wipe secret) strings stored by cf_flags_parse. */
void cf_flags_free(cf_flag_set *set);

/* Split a listen/connect address "host:port", "[v6addr]:port" or "host"
 * (then default_port; 0 = port required). Host: letters, digits, '.', '-'
 * (names, IPv4) or hex digits, ':' and '.' inside brackets (IPv6, brackets
 * removed in `host`). Port: decimal 0..65535 (0 = any free port). Fails
 * with CF_E_CONFIG on anything else. */
CF_RESULT cf_parse_host_port(const char *spec, uint16_t default_port, char *host, size_t host_size,
                             uint16_t *port);

/* ---- signals --------------------------------------------------------------- */

typedef struct cf_daemon_signals cf_daemon_signals;

/* Ignore SIGPIPE (writes to closed sockets fail with EPIPE instead of killing
 * the process) and call on_shutdown(signo, arg) from the loop on SIGTERM or
 * SIGINT (each time; the daemon starts its graceful shutdown on the first
 * and may exit at once on a second). */
CF_RESULT cf_daemon_signals_new(struct event_base *base, void (*on_shutdown)(int signo, void *arg), void *arg,
                                cf_daemon_signals **out);
void cf_daemon_signals_free(cf_daemon_signals *s);

/* ---- rate limiting ------------------------------------------------------------ */

typedef struct cf_rate_limiter cf_rate_limiter;

/* Token bucket per peer key (e.g. the client IP): `rate_per_s` tokens added
 * per second up to `burst`; each allowed event takes one. At most
 * `max_peers` keys are tracked; beyond that the least recently seen peer is
 * forgotten (it starts again with a full bucket), so memory is fixed. */
CF_RESULT cf_rate_limiter_new(double rate_per_s, double burst, size_t max_peers, cf_rate_limiter **out);
void cf_rate_limiter_free(cf_rate_limiter *rl);
/* True if the peer may proceed now (one token taken). `now_ms` is a
 * monotonic clock in milliseconds (cf_monotonic_ms()); keys longer than 63
 * bytes are cut. */
bool cf_rate_limiter_allow(cf_rate_limiter *rl, const char *peer, uint64_t now_ms);
/* Peers currently tracked (tests, metrics). */
size_t cf_rate_limiter_size(const cf_rate_limiter *rl);

uint64_t cf_monotonic_ms(void);

#endif /* CONFIDE_DAEMON_H */
