/* main.c — `confide`, the tool for users and operators: dispatches to the
 * subcommands registered by cli/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "confide/log.h"
#include "confide/result.h"

#define MAX_COMMANDS 32

static struct {
    const char *name;
    const char *summary;
    cf_cli_fn fn;
} commands[MAX_COMMANDS];
static int command_count;

void cf_cli_register(const char *name, const char *summary, cf_cli_fn fn)
{
    if (command_count < MAX_COMMANDS) {
        commands[command_count].name = name;
        commands[command_count].summary = summary;
        commands[command_count].fn = fn;
        command_count++;
    }
}

int cf_cli_fail(const char *what)
{
    const cf_error_info *e = cf_error_last();
    fprintf(stderr, "confide: %s: %s%s%s\n", cf_error_name(e->code), what ? what : "",
            (what && e->detail[0]) ? ": " : "", e->detail);
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: confide <command> [options]   (confide <command> --help for details)\n\ncommands:\n");
    for (int i = 0; i < command_count; i++) {
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
}

int main(int argc, char **argv)
{
    cf_log_init("confide", CF_LOG_WARN);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < command_count; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "confide: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
