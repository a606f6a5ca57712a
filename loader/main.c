/* npid-loader: decodes and augments images for the trainer (the default subcommand "run"),
 * and a few dataset tools. See `npid-loader --help`. */
#include "loader/loader.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: npid-loader [run] [options]       serve tasks from the trainer (default)\n"
            "       npid-loader synth --out DIR [...]  write a synthetic ImageFolder dataset\n"
            "       npid-loader check --data DIR [...] decode every image, report bad ones\n"
            "Run `npid-loader SUBCOMMAND --help` for the options of each.\n");
}

int main(int argc, char **argv)
{
    log_init("npid-loader");
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return EXIT_OK;
    }
    if (argc >= 2 && argv[1][0] != '-') {
        const char *cmd = argv[1];
        if (strcmp(cmd, "run") == 0)
            return loader_worker_main(argc - 1, argv + 1);
        if (strcmp(cmd, "synth") == 0)
            return loader_synth_main(argc - 1, argv + 1);
        if (strcmp(cmd, "check") == 0)
            return loader_check_main(argc - 1, argv + 1);
        fprintf(stderr, "npid-loader: unknown subcommand '%s'\n", cmd);
        usage(stderr);
        return EXIT_USAGE;
    }
    return loader_worker_main(argc, argv);
}
