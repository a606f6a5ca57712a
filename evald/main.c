/* npid-evald: weighted kNN evaluation of checkpoints (once, or attached to a live run),
 * embedding export, nearest-neighbour retrieval with a grid image, and the linear probe.
 *
 *   npid-evald [attach] --data ROOT [--checkpoint PATH] --events EP --bank EP [--pub EP]
 *   npid-evald --once --checkpoint PATH --data ROOT [--against bank|recomputed|both]
 *   npid-evald --once --pixels --data ROOT     (the raw-pixel baseline, against recomputed)
 *   npid-evald embed --data ROOT (--checkpoint P --split train|test | --bank EP) --format F --out O
 *   npid-evald embed --checkpoint P --files LIST|- --format F --out O    (images named on a list)
 *   npid-evald neighbours --checkpoint P --data ROOT [--grid out.jpg] IMAGE|test:N|train:N ...
 *   npid-evald neighbours --checkpoint P --data ROOT [--bank EP] --files LIST|-
 *   npid-evald linear --checkpoint P --data ROOT [--layer embed|pool] [--lambda L]
 *       [--train-views N]
 *
 * This file holds the options and the dispatch: each command has its own table, joined from
 * shared groups of rows and its own (`npid-evald CMD --help` lists what CMD reads), and runs
 * in evald/cmd_<name>.c. The command is the first positional argument (attach when there is
 * none); a flag of another command is refused naming both. */
#include "common/blas.h"
#include "common/cfg.h"
#include "common/log.h"
#include "common/msg.h"
#include "evald/evald.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct evald_opts opt;

/* Shared groups. Rows of one name in several groups agree on the type (evald_tables checks). */
static struct cfg_opt opts_data[] = {
    { "data", "NPID_DATA", CFG_STR, &opt.data, NULL, 0, 0, "dataset root (ImageFolder or flat tree, binary directory; or a file list)", 0 },
    DATASET_CFG_OPTS(&opt.dso),
    { 0 },
};

static struct cfg_opt opts_bank[] = {
    { "bank", "NPID_BANK", CFG_STR, &opt.bank_ep, "tcp://127.0.0.1:5557", 0, 0, "npid-bankd endpoint (default port: NPID_PORT_BASE)", 0 },
    { "bank-chunk", NULL, CFG_U64, &opt.bank_chunk, "8192", 1, 1 << 24, "bank rows per get request", 0 },
    { "bank-timeout", NULL, CFG_DOUBLE, &opt.bank_timeout, "5", 0.05, 3600, "seconds before a bank request is retried", 0 },
    { "bank-server-key", "NPID_BANK_SERVER_KEY", CFG_STR, &opt.bank_server_key, "", 0, 0, "public key file (.pub) of a CURVE bankd (--curve-key's .pub must be in its --curve-allow)", 0 },
    { 0 },
};

static struct cfg_opt opts_key[] = {
    { "curve-key", "NPID_CURVE_KEY", CFG_STR, &opt.curve_key, "", 0, 0, "this process's CURVE key pair file (npid-bankd keygen; mode 0600): with a server's public key (--*-server-key), talk to it over CURVE; with --curve-allow, serve --pub over CURVE", 0 },
    { 0 },
};

static struct cfg_opt opts_pub[] = {
    { "pub", "NPID_EVALD_PUB", CFG_STR, &opt.pub_ep, "", 0, 0, "PUB endpoint for results (empty: none)", 0 },
    { "allow-remote", NULL, CFG_BOOL, &opt.allow_remote, "false", 0, 0, "allow binding --pub to a non-loopback address", 0 },
    { "curve-allow", "NPID_CURVE_ALLOW", CFG_STR, &opt.curve_allow, "", 0, 0, "public keys (one .pub file's line each, or a file of them) that may subscribe to --pub: CURVE with --curve-key's pair, others refused", 0 },
    { 0 },
};

static struct cfg_opt opts_batch[] = {
    { "batch", NULL, CFG_INT, &opt.batch, "100", 1, 4096, "images per forward", 0 },
    { 0 },
};

static struct cfg_opt opts_threads[] = {
    { "threads", "NPID_THREADS", CFG_INT, &opt.threads, "0", 0, 256, "OpenBLAS threads (0: library default)", 0 },
    { 0 },
};

static struct cfg_opt opts_log[] = {
    { "log-level", "NPID_LOG_LEVEL", CFG_STR, &opt.log_level, "info", 0, 0, "debug, info, warn or error", 0 },
    { 0 },
};

/* Each command's own rows. */
static struct cfg_opt opts_attach[] = {
    { "checkpoint", "NPID_CHECKPOINT", CFG_STR, &opt.checkpoint, NULL, 0, 0, "trainer checkpoint (with --once; attached: evaluated first)", 0 },
    { "once", NULL, CFG_BOOL, &opt.once, "false", 0, 0, "evaluate --checkpoint once and exit", 0 },
    { "pixels", NULL, CFG_BOOL, &opt.pixels, "false", 0, 0, "with --once, instead of a checkpoint: kNN on raw pixels (test transform, CIFAR mean/std, L2-normalised; --size), the baseline a network must beat", 0 },
    { "size", NULL, CFG_INT, &opt.size, "32", 8, 1024, "--pixels: image size", 0 },
    { "events", "NPID_EVENTS", CFG_STR, &opt.events_ep, "tcp://127.0.0.1:5559", 0, 0, "attached: trainer events endpoint to subscribe to (default port: NPID_PORT_BASE + 2)", 0 },
    { "events-server-key", "NPID_EVENTS_SERVER_KEY", CFG_STR, &opt.events_server_key, "", 0, 0, "attached: public key file (.pub) of a CURVE trainer's --events (--curve-key's .pub must be in its --curve-allow)", 0 },
    { "max-evals", NULL, CFG_INT, &opt.max_evals, "0", 0, 1000000, "attached: exit after N evaluations (0: no limit)", 0 },
    { "every", NULL, CFG_INT, &opt.every, "1", 0, 1000000, "attached: evaluate every N-th checkpoint announced (0: none; --checkpoint still is)", 0 },
    { "exit-on-end", NULL, CFG_BOOL, &opt.exit_on_end, "false", 0, 0, "attached: exit when the trainer publishes \"end\"", 0 },
    { "against", NULL, CFG_STR, &opt.against, "bank", 0, 0, "bank | recomputed | both", 0 },
    { "k", NULL, CFG_STR, &opt.k_list, "200", 0, 0, "neighbours that vote; a list (10,20,100,200) reports each k from one neighbour search", 0 },
    { "sigma", NULL, CFG_DOUBLE, &opt.sigma, "0.1", 1e-4, 100, "vote weight exp(s / sigma)", 0 },
    { "limit", NULL, CFG_U64, &opt.limit, "0", 0, 0, "use only the first N query (test) images (0: all)", 0 },
    { "train-limit", NULL, CFG_U64, &opt.train_limit, "0", 0, 0, "against recomputed: only the first N train images (0: all)", 0 },
    { 0 },
};

static struct cfg_opt opts_embed[] = {
    { "checkpoint", "NPID_CHECKPOINT", CFG_STR, &opt.checkpoint, NULL, 0, 0, "trainer checkpoint whose features are written (without it: the rows of --bank)", 0 },
    { "split", NULL, CFG_STR, &opt.split, "train", 0, 0, "train | test", 0 },
    { "limit", NULL, CFG_U64, &opt.limit, "0", 0, 0, "write only the first N rows (0: all)", 0 },
    { "format", NULL, CFG_STR, &opt.format, "npy", 0, 0, "npy | fvecs | jsonl | tsv", 0 },
    { "out", NULL, CFG_STR, &opt.out, "-", 0, 0, "output file, directory (tsv) or - for stdout", 0 },
    { "files", NULL, CFG_STR, &opt.files, NULL, 0, 0, "the images named in this file (- for stdin), one path per line, instead of a split; needs no --data", 0 },
    { "paths-out", NULL, CFG_STR, &opt.paths_out, NULL, 0, 0, "with --files: the paths of the rows written, one per line, to this file (default with npy or fvecs to a file: OUT.paths)", 0 },
    { 0 },
};

static struct cfg_opt opts_neighbours[] = {
    { "checkpoint", "NPID_CHECKPOINT", CFG_STR, &opt.checkpoint, NULL, 0, 0, "trainer checkpoint (required)", 0 },
    { "files", NULL, CFG_STR, &opt.files, NULL, 0, 0, "the images named in this file (- for stdin), one path per line, are the queries", 0 },
    { "against", NULL, CFG_STR, &opt.against, NULL, 0, 0, "bank | recomputed (default: bank when --bank is given, else recomputed)", 0 },
    { "split", NULL, CFG_STR, &opt.split, "train", 0, 0, "train only: neighbours are train images", 0 },
    { "train-limit", NULL, CFG_U64, &opt.train_limit, "0", 0, 0, "against recomputed: only the first N train images (0: all)", 0 },
    { "queries", NULL, CFG_INT, &opt.queries, "8", 1, 1000, "without IMAGE arguments, N test images spread over the split", 0 },
    { "top", NULL, CFG_INT, &opt.top, "10", 1, 100, "how many per query", 0 },
    { "grid", NULL, CFG_STR, &opt.grid, NULL, 0, 0, "write a retrieval grid JPEG here", 0 },
    { "cell", NULL, CFG_INT, &opt.cell, "64", 8, 512, "grid cell size in pixels", 0 },
    { 0 },
};

static struct cfg_opt opts_linear[] = {
    { "checkpoint", "NPID_CHECKPOINT", CFG_STR, &opt.checkpoint, NULL, 0, 0, "trainer checkpoint whose features are probed (or --pixels)", 0 },
    { "pixels", NULL, CFG_BOOL, &opt.pixels, "false", 0, 0, "instead of a checkpoint: the probe on raw pixels (test transform, CIFAR mean/std, L2-normalised; --size), the baseline a network must beat", 0 },
    { "size", NULL, CFG_INT, &opt.size, "32", 8, 1024, "--pixels: image size", 0 },
    { "layer", NULL, CFG_STR, &opt.layer, "pool", 0, 0, "embed (the normalised low-dim output) | pool (the pooled features before the head)", 0 },
    { "lambda", NULL, CFG_DOUBLE, &opt.lambda, "0", 0, 1e6, "L2 weight on the standardised features (0: chosen from 1e-1..1e-8 on a held-out 20 % of the train split)", 0 },
    { "max-iter", NULL, CFG_INT, &opt.max_iter, "1000", 1, 1000000, "L-BFGS iterations per fit at most", 0 },
    { "tol", NULL, CFG_DOUBLE, &opt.tol, "1e-6", 1e-12, 1, "stop when every entry of the gradient of the mean objective is below this", 0 },
    { "train-views", NULL, CFG_INT, &opt.train_views, "1", 1, FEAT_MAX_VIEWS,
      "each train image's feature is the mean of N views drawn with the checkpoint's "
      "train augmentation (view v of image i seeded from --seed, v, i; N forwards per image); "
      "with --layer embed the mean of the L2-normalised embeddings, not renormalised; --pixels: "
      "the cifar preset's train transform; 1: one test-transform view", 0 },
    { "seed", NULL, CFG_U64, &opt.seed, "0", 0, 0, "which train images are held out for choosing lambda; the views of --train-views", 0 },
    { "limit", NULL, CFG_U64, &opt.limit, "0", 0, 0, "use only the first N test images (0: all)", 0 },
    { "train-limit", NULL, CFG_U64, &opt.train_limit, "0", 0, 0, "use only the first N train images (0: all)", 0 },
    { 0 },
};

static const char usage_attach[] =
    "[attach] --data ROOT [--checkpoint P] [options]\n"
    "       npid-evald --once --checkpoint P --data ROOT [options]\n"
    "       npid-evald --once --pixels --data ROOT [options]\n"
    "       npid-evald embed|neighbours|linear [options]\n\n"
    "Attached (the default), evaluates each new checkpoint the trainer announces on --events;\n"
    "with --once, --checkpoint (or raw pixels) and exits. Results: one JSON line per evaluation\n"
    "on stdout (and as \"eval\" events on --pub).\n\n"
    "commands (npid-evald CMD --help lists the options of each):\n"
    "  attach      weighted kNN of checkpoints, attached to a run or --once (options below)\n"
    "  embed       features of a split, the bank's rows, or images named on a list, to a file\n"
    "  neighbours  nearest train images of images, as JSON lines and a retrieval grid\n"
    "  linear      logistic regression probe on frozen features";

static const char usage_embed[] =
    "embed --data ROOT --checkpoint P [--split train|test] [--format F] [--out FILE]\n"
    "       npid-evald embed --data ROOT --bank EP --format tsv --out DIR   (the bank's rows)\n"
    "       find photos -name '*.jpg' | npid-evald embed --checkpoint P --files - --format jsonl\n"
    "\nOne row per image in --format (docs/formats.md).";

static const char usage_neighbours[] =
    "neighbours --checkpoint P --data ROOT [--grid out.jpg] [IMAGE|test:N|train:N ...]\n"
    "       npid-evald neighbours --checkpoint P --data ROOT [--bank EP] --files LIST|-\n"
    "\nOne JSON line per query: its --top nearest train images (without IMAGE arguments or\n"
    "--files, the queries are --queries test images).";

static const char usage_linear[] =
    "linear (--checkpoint P | --pixels) --data ROOT [--layer embed|pool] [--lambda L]\n"
    "       [--train-views N]\n"
    "\nLogistic regression on frozen train features, scored on the test split: one JSON line\n"
    "(and a \"linear\" event on --pub).";


struct evald_cmd {
    const char *name, *alias;
    const char *usage;
    const struct cfg_opt *const *groups; /* NULL-terminated, in --help order */
    int (*run)(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args);
};

static const struct cfg_opt *const groups_attach[] = {
    opts_data, opts_attach, opts_bank, opts_key, opts_pub, opts_batch, opts_threads, opts_log, NULL
};
static const struct cfg_opt *const groups_embed[] = {
    opts_data, opts_embed, opts_bank, opts_key, opts_batch, opts_threads, opts_log, NULL
};
static const struct cfg_opt *const groups_neighbours[] = {
    opts_data, opts_neighbours, opts_bank, opts_key, opts_batch, opts_threads, opts_log, NULL
};
static const struct cfg_opt *const groups_linear[] = {
    opts_data, opts_linear, opts_key, opts_pub, opts_batch, opts_threads, opts_log, NULL
};

/* The commands; the first is the default. */
static const struct evald_cmd cmds[] = {
    { "attach", NULL, usage_attach, groups_attach, evald_attach_main },
    { "embed", NULL, usage_embed, groups_embed, evald_embed_main },
    { "neighbours", "neighbors", usage_neighbours, groups_neighbours, evald_neighbours_main },
    { "linear", NULL, usage_linear, groups_linear, evald_linear_main },
};
enum { N_CMDS = sizeof cmds / sizeof cmds[0], TABLE_CAP = 96 };

static struct cfg_opt tables[N_CMDS][TABLE_CAP]; /* each command's, joined from its groups */
static struct cfg_opt all[TABLE_CAP];            /* every row once per name, to find the command */

/* Joins every command's table, and the table of all names. */
static void evald_tables(void)
{
    size_t n = 0;
    for (size_t c = 0; c < N_CMDS; c++) {
        NPID_CHECK(cfg_join(tables[c], TABLE_CAP, cmds[c].groups) > 0);
        for (struct cfg_opt *o = tables[c]; o->name; o++) {
            struct cfg_opt *seen = cfg_find(all, o->name);
            NPID_CHECK(!seen || seen->type == o->type);
            if (!seen) {
                NPID_CHECK(n + 1 < TABLE_CAP);
                all[n++] = *o;
            }
        }
    }
}

static const struct evald_cmd *evald_cmd_find(const char *name)
{
    for (size_t c = 0; c < N_CMDS; c++)
        if (!strcmp(cmds[c].name, name) || (cmds[c].alias && !strcmp(cmds[c].alias, name)))
            return &cmds[c];
    return NULL;
}

/* Whether table t has the flag named name as typed ("no-x" for a boolean x included). */
static int evald_has_flag(struct cfg_opt *t, const char *name)
{
    if (cfg_find(t, name))
        return 1;
    struct cfg_opt *o = strncmp(name, "no-", 3) ? NULL : cfg_find(t, name + 3);
    return o && (o->type == CFG_BOOL || o->type == CFG_AUTO);
}

/* Refuses the first flag that cmd's table lacks and another command's has, naming both
 * (by_default: cmd runs without its name given). 0, or -1 after the message; other unknown
 * flags are left to cfg_parse. */
static int evald_foreign_flag(const struct evald_cmd *cmd, int by_default, int argc, char **argv)
{
    size_t me = (size_t)(cmd - cmds);
    int at = 0;
    cfg_scan(tables[me], argc, argv, &at);
    if (at == 0 || argv[at][1] != '-')
        return 0;
    char name[128], takers[128] = "";
    snprintf(name, sizeof name, "%.*s", (int)strcspn(argv[at] + 2, "="), argv[at] + 2);
    for (size_t c = 0; c < N_CMDS; c++) {
        if (c != me && evald_has_flag(tables[c], name)) {
            size_t len = strlen(takers);
            snprintf(takers + len, sizeof takers - len, "%s%s", len ? ", " : "", cmds[c].name);
        }
    }
    if (!takers[0])
        return 0;
    if (by_default)
        fprintf(stderr, "npid-evald: --%s is an option of %s, not of %s, the default command "
                "(see npid-evald --help)\n", name, takers, cmd->name);
    else
        fprintf(stderr, "npid-evald: --%s is an option of %s, not of %s (see npid-evald %s "
                "--help)\n", name, takers, cmd->name, cmd->name);
    return -1;
}

int main(int argc, char **argv)
{
    log_init("npid-evald");
    evald_tables();
    int at = cfg_scan(all, argc, argv, NULL);
    const struct evald_cmd *cmd = at ? evald_cmd_find(argv[at]) : &cmds[0];
    if (!cmd) {
        fprintf(stderr, "npid-evald: unknown command \"%s\" (attach, embed, neighbours, "
                "linear)\n", argv[at]);
        return EXIT_USAGE;
    }
    struct cfg_opt *opts = tables[cmd - cmds];
    /* endpoint defaults follow NPID_PORT_BASE like the launcher's (bankd base, events base + 2) */
    static char bank_def[32], events_def[32];
    if ((cfg_find(opts, "bank") &&
         cfg_endpoint_default(opts, "bank", 0, "npid-evald", bank_def, sizeof bank_def) != 0) ||
        (cfg_find(opts, "events") &&
         cfg_endpoint_default(opts, "events", 2, "npid-evald", events_def, sizeof events_def) != 0))
        return EXIT_USAGE;
    if (evald_foreign_flag(cmd, at == 0, argc, argv) != 0)
        return EXIT_USAGE;
    char **argv0 = blas_argv_copy(argc, argv); /* blas_setup after parsing (common/blas.h) */
    int npos = 0;
    int rc = cfg_parse("npid-evald", cmd->usage, opts, argc, argv, &npos);
    if (rc != CFG_OK) {
        free(argv0);
        return rc == CFG_HELP ? EXIT_OK : EXIT_USAGE;
    }
    blas_setup(argc, argv0);
    free(argv0); /* blas_setup re-execs or returns: the copy is done with */
    int lvl = log_level_parse(opt.log_level);
    if (lvl < 0) {
        fprintf(stderr, "npid-evald: --log-level %s: expected debug, info, warn or error\n",
                opt.log_level);
        return EXIT_USAGE;
    }
    log_set_level(lvl);
    /* argv[1] is the command's name when it was given */
    int named = at ? 1 : 0;
    int ret = cmd->run(&opt, opts, npos - named, argv + 1 + named);
    msg_ctx_term();
    return ret;
}
