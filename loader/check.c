/* `npid-loader check`: decodes every image of a dataset and reports the bad ones. */
#include "loader/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg.h"
#include "common/clock.h"
#include "common/dataset.h"
#include "common/jpeg.h"
#include "common/json.h"
#include "common/log.h"

/* The split being checked, for the skip lines. */
struct check_ctx {
    const char *split;
};

/* opts.on_skip: one JSON line per file or directory the index skipped, with the reason. */
static void check_on_skip(void *ctx, const char *path, const char *why)
{
    const struct check_ctx *c = ctx;
    printf("{\"split\": \"%s\", \"path\": ", c->split);
    json_write_cstr(stdout, path);
    printf(", \"skipped\": ");
    json_write_cstr(stdout, why);
    printf("}\n");
}

struct check_totals {
    size_t images, bad, skipped;
};

/* Indexes and decodes one split; prints its bad images and a summary line. Returns 0, or -1
 * when the split cannot be opened (reason logged). */
static int check_split(const char *data, const char *split, struct dataset_opts *dso,
                       struct jpeg_dec *dec, uint32_t min_side, struct check_totals *tot)
{
    char err[DATASET_ERR_LEN];
    struct check_ctx ctx = { split };
    dso->on_skip = check_on_skip;
    dso->skip_ctx = &ctx;
    uint64_t t0 = clock_now_ns();
    struct dataset *ds = dataset_open_opts(data, split, dso, err, sizeof err);
    dso->on_skip = NULL;
    if (!ds) {
        log_error("%s split: %s", split, err);
        return -1;
    }
    log_info("%s split: %s", split, dataset_describe(ds));
    size_t n = dataset_count(ds), bad = 0;
    for (size_t i = 0; i < n; i++) {
        struct jpeg_image img;
        if (dataset_decode(ds, i, dec, min_side, &img, err, sizeof err) == 0)
            continue;
        bad++;
        /* err is "relative/path: reason" */
        const char *path = dataset_path(ds, i);
        const char *reason = err;
        size_t pl = strlen(path);
        if (strncmp(err, path, pl) == 0 && err[pl] == ':')
            reason = err + pl + 2;
        printf("{\"split\": \"%s\", \"path\": ", split);
        json_write_cstr(stdout, path);
        printf(", \"reason\": ");
        json_write_cstr(stdout, reason);
        printf("}\n");
    }
    double secs = (clock_now_ns() - t0) / 1e9;
    printf("{\"split\": \"%s\", \"images\": %zu, \"ok\": %zu, \"bad\": %zu, \"skipped\": %zu, "
           "\"labelled\": %zu, \"classes\": %zu, \"nested_dirs\": %zu, \"manifest\": \"%s\", "
           "\"seconds\": %.3f}\n",
           split, n, n - bad, bad, dataset_skipped(ds), dataset_labelled(ds),
           dataset_num_classes(ds), dataset_nested_dirs(ds), dataset_manifest(ds), secs);
    tot->images += n;
    tot->bad += bad;
    tot->skipped += dataset_skipped(ds);
    dataset_destroy(&ds);
    return 0;
}

int loader_check_main(int argc, char **argv)
{
    const char *data, *split, *level;
    uint64_t max_side, max_scans, min_side;
    int strict;
    struct dataset_opts dso = { 0 };
    struct cfg_opt opts[] = {
        { "data", "NPID_DATA", CFG_STR, &data, NULL, 0, 0, "dataset root (or a file list)", 0 },
        { "split", NULL, CFG_STR, &split, "all", 0, 0,
          "all (the train split and the test split when there is one), train or test", 0 },
        DATASET_CFG_OPTS(&dso),
        { "max-side", NULL, CFG_U64, &max_side, "16384", 1, 1e6, "largest accepted width/height", 0 },
        { "max-scans", NULL, CFG_U64, &max_scans, "64", 1, 1e6, "most progressive scans accepted", 0 },
        { "min-side", NULL, CFG_U64, &min_side, "0", 0, 1e6,
          "allow DCT downscaling to this side (0: full size)", 0 },
        { "strict", NULL, CFG_BOOL, &strict, "0", 0, 0, "exit 1 when any image is bad", 0 },
        { "log-level", "NPID_LOG_LEVEL", CFG_STR, &level, "info", 0, 0, "debug, info, warn or error", 0 },
        { 0 }
    };
    int npos;
    int rc = cfg_parse("npid-loader check", "--data DIR [options]", opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    if (npos > 0) {
        fprintf(stderr, "npid-loader check: unexpected argument '%s'\n", argv[1]);
        return EXIT_USAGE;
    }
    int lvl = log_level_parse(level);
    if (lvl < 0) {
        fprintf(stderr, "npid-loader check: --log-level: unknown level '%s'\n", level);
        return EXIT_USAGE;
    }
    log_set_level(lvl);
    if ((!data || !*data) && !dso.list) {
        fprintf(stderr, "npid-loader check: --data DIR (or --list FILE) is required\n");
        return EXIT_USAGE;
    }
    char err[DATASET_ERR_LEN];
    if (dataset_opts_check(&dso, err, sizeof err) != 0) {
        fprintf(stderr, "npid-loader check: %s\n", err);
        return EXIT_USAGE;
    }
    int all = strcmp(split, "all") == 0;
    if (!all && strcmp(split, "train") && strcmp(split, "test") && strcmp(split, "val")) {
        fprintf(stderr, "npid-loader check: --split %s: expected all, train or test\n", split);
        return EXIT_USAGE;
    }
    struct jpeg_limits lim;
    jpeg_limits_default(&lim);
    lim.max_width = lim.max_height = (uint32_t)max_side;
    lim.max_scans = (uint32_t)max_scans;
    struct jpeg_dec *dec = jpeg_dec_new(&lim);
    if (!dec) {
        log_error("out of memory");
        return EXIT_FAIL;
    }
    uint64_t t0 = clock_now_ns();
    struct check_totals tot = { 0 };
    int failed = 0;
    if (all) {
        /* the test split's labels come from the train split: without it, stop */
        failed = check_split(data, "train", &dso, dec, (uint32_t)min_side, &tot) != 0;
        if (failed)
            goto out;
        if (dataset_split_exists(data, "test", &dso))
            failed |= check_split(data, "test", &dso, dec, (uint32_t)min_side, &tot) != 0;
        else
            log_info("no test split (no test/ or val/ directory, binary test file or --test-list)");
        printf("{\"split\": \"all\", \"images\": %zu, \"ok\": %zu, \"bad\": %zu, \"skipped\": "
               "%zu, \"seconds\": %.3f}\n", tot.images, tot.images - tot.bad, tot.bad,
               tot.skipped, (clock_now_ns() - t0) / 1e9);
    } else {
        failed = check_split(data, split, &dso, dec, (uint32_t)min_side, &tot) != 0;
    }
out:
    jpeg_dec_destroy(&dec);
    if (fflush(stdout) != 0 || failed)
        return EXIT_FAIL;
    return strict && tot.bad ? EXIT_FAIL : EXIT_OK;
}
