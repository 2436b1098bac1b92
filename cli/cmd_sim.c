/* cmd_sim.c — `confide sim init DIR`: create a simulated TEE platform
 * (root CA + platform attestation key) for development and tests. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "confide/sim.h"

static void sim_usage(FILE *f)
{
    fprintf(f,
            "usage: confide sim init DIR [--svn N] [--debug]\n"
            "\n"
            "Create a simulated TEE platform in DIR (created 0700 if missing; existing\n"
            "key files are never overwritten):\n"
            "  root.pem / root.key          self-signed root CA (ECDSA P-384; key 0600)\n"
            "  platform.pem / platform.key  platform attestation key certified by the root\n"
            "  platform.json                svn and debug flag put into every report\n"
            "Prints the root's SHA-256 fingerprint: a manifest accepts evidence from this\n"
            "platform only if it lists that fingerprint in accepted_roots.\n"
            "Anyone who can read DIR can forge evidence: development only.\n"
            "\n"
            "  --svn N     security version number reported by the platform (default 1)\n"
            "  --debug     reports carry the debug flag (policies refuse it by default)\n");
}

static int sim_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        sim_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "init") != 0) {
        fprintf(stderr, "confide sim: unknown subcommand '%s'\n", argv[1]);
        sim_usage(stderr);
        return 2;
    }
    cf_sim_init_options opt = {.svn = 1, .debug = false, .now = (int64_t)time(NULL)};
    static const struct option longopts[] = {
        {"svn", required_argument, NULL, 's'},
        {"debug", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    argc--;
    argv++;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': {
            char *end = NULL;
            unsigned long v = strtoul(optarg, &end, 10);
            if (end == optarg || *end != '\0' || v > 0xffffffffUL) {
                fprintf(stderr, "confide sim init: --svn expects an integer 0..4294967295\n");
                return 2;
            }
            opt.svn = (uint32_t)v;
            break;
        }
        case 'd': opt.debug = true; break;
        case 'h': sim_usage(stdout); return 0;
        default: sim_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        sim_usage(stderr);
        return 2;
    }
    const char *dir = argv[optind];
    if (cf_is_error(cf_sim_init(dir, &opt))) {
        return cf_cli_fail("sim init");
    }
    char fp[65];
    if (cf_is_error(cf_sim_root_fingerprint(dir, fp))) {
        return cf_cli_fail("sim init");
    }
    printf("sim platform created in %s\nroot fingerprint (manifest accepted_roots): %s\n", dir, fp);
    return 0;
}

CF_CLI_COMMAND("sim", "simulated TEE platform for development (sim init DIR)", sim_main)
