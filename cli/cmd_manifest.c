/* cmd_manifest.c — `confide manifest new|hash|show`: build a sim manifest,
 * print the SHA-256 clients pin, print a manifest in readable form. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "confide/manifest.h"

#define MAX_MODELS CF_MANIFEST_MAX_MODELS

static void manifest_usage(FILE *f)
{
    fprintf(f,
            "usage: confide manifest new --sim-dir DIR --as-binary PATH --worker-binary PATH\n"
            "                            --models a,b[,...] [--ttl-min S] [--ttl-max S]\n"
            "                            [--name TEXT] [--out FILE]\n"
            "       confide manifest hash FILE\n"
            "       confide manifest show FILE\n"
            "\n"
            "new   build a manifest for the sim platform: the AS and worker policies pin\n"
            "      the SHA-384 of the given binaries, debug is refused, the sim root of\n"
            "      DIR is the only accepted root. Written to FILE or stdout.\n"
            "        --ttl-min S / --ttl-max S   bounds on key TTLs in seconds\n"
            "                                    (default 60 / 86400; at most 2592000)\n"
            "hash  print the manifest's SHA-256 (over the exact file bytes; what\n"
            "      clients pin), after checking that the manifest is valid\n"
            "show  validate and print the manifest in readable form\n");
}

static int parse_ttl(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < 1 || v > CF_MANIFEST_TTL_CEILING_S) {
        fprintf(stderr, "confide manifest new: TTL expects seconds 1..%d\n", CF_MANIFEST_TTL_CEILING_S);
        return -1;
    }
    *out = v;
    return 0;
}

static int cmd_new(int argc, char **argv)
{
    cf_manifest_sim_params p = {0};
    const char *out_path = NULL;
    char *models_arg = NULL;
    const char *models[MAX_MODELS];
    static const struct option longopts[] = {
        {"sim-dir", required_argument, NULL, 'd'}, {"as-binary", required_argument, NULL, 'a'},
        {"worker-binary", required_argument, NULL, 'w'}, {"models", required_argument, NULL, 'm'},
        {"ttl-min", required_argument, NULL, 'n'}, {"ttl-max", required_argument, NULL, 'x'},
        {"name", required_argument, NULL, 'N'}, {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': p.sim_dir = optarg; break;
        case 'a': p.as_binary = optarg; break;
        case 'w': p.worker_binary = optarg; break;
        case 'm': models_arg = optarg; break;
        case 'n': if (parse_ttl(optarg, &p.ttl_min_s) != 0) return 2; break;
        case 'x': if (parse_ttl(optarg, &p.ttl_max_s) != 0) return 2; break;
        case 'N': p.name = optarg; break;
        case 'o': out_path = optarg; break;
        case 'h': manifest_usage(stdout); return 0;
        default: manifest_usage(stderr); return 2;
        }
    }
    if (optind != argc || !p.sim_dir || !p.as_binary || !p.worker_binary || !models_arg) {
        fprintf(stderr, "confide manifest new: --sim-dir, --as-binary, --worker-binary and --models are required\n");
        return 2;
    }
    char *copy = strdup(models_arg);
    if (copy == NULL) {
        return 1;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (p.model_count == MAX_MODELS) {
            fprintf(stderr, "confide manifest new: at most %d models\n", MAX_MODELS);
            free(copy);
            return 2;
        }
        models[p.model_count++] = tok;
    }
    p.models = models;
    cf_buf out;
    cf_buf_init(&out, CF_MANIFEST_MAX_BYTES);
    int rc = 0;
    if (cf_is_error(cf_manifest_build_sim(&p, &out))) {
        rc = cf_cli_fail("manifest new");
    } else {
        FILE *f = out_path ? fopen(out_path, "wx") : stdout;
        if (f == NULL) {
            fprintf(stderr, "confide: io_error: cannot create %s (exists?)\n", out_path);
            rc = 1;
        } else {
            if (fwrite(out.data, 1, out.len, f) != out.len) {
                rc = 1;
            }
            if (f != stdout && fclose(f) != 0) {
                rc = 1;
            }
        }
    }
    cf_buf_free(&out);
    free(copy);
    return rc;
}

static int cmd_hash_or_show(int argc, char **argv, bool show)
{
    if (argc != 2) {
        manifest_usage(stderr);
        return 2;
    }
    cf_manifest *m = NULL;
    if (cf_is_error(cf_manifest_load(argv[1], &m))) {
        return cf_cli_fail(argv[1]);
    }
    int rc = 0;
    if (show) {
        cf_buf text;
        cf_buf_init(&text, 0);
        if (cf_is_error(cf_manifest_describe(m, &text))) {
            rc = cf_cli_fail("manifest show");
        } else {
            fwrite(text.data, 1, text.len, stdout);
        }
        cf_buf_free(&text);
    } else {
        printf("%s\n", m->sha256_hex);
    }
    cf_manifest_free(m);
    return rc;
}

static int manifest_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        manifest_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "new") == 0) {
        return cmd_new(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "hash") == 0) {
        return cmd_hash_or_show(argc - 1, argv + 1, false);
    }
    if (strcmp(argv[1], "show") == 0) {
        return cmd_hash_or_show(argc - 1, argv + 1, true);
    }
    fprintf(stderr, "confide manifest: unknown subcommand '%s'\n", argv[1]);
    manifest_usage(stderr);
    return 2;
}

CF_CLI_COMMAND("manifest", "create, hash and show manifests", manifest_main)
