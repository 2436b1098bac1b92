/*
 * cli.h — subcommands of the `confide` tool.
 *
 * Each cli/cmd_<name>.c registers its subcommands with CF_CLI_COMMAND, so a
 * new command needs no edit elsewhere. A command returns the process exit
 * status: 0 success, 1 verification/operation failed (the reason printed on
 * stderr as "confide: <code>: <detail>"), 2 usage error.
 */
#ifndef CONFIDE_CLI_H
#define CONFIDE_CLI_H

typedef int (*cf_cli_fn)(int argc, char **argv);

void cf_cli_register(const char *name, const char *summary, cf_cli_fn fn);

#define CF_CLI_COMMAND(name, summary, fn)                                                          \
    __attribute__((constructor)) static void cf_cli_register_##fn(void) { cf_cli_register(name, summary, fn); }

/* Print "confide: <code>: <detail>" for the last recorded error, return 1. */
int cf_cli_fail(const char *what);

#endif /* CONFIDE_CLI_H */
