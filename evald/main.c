/* npid-evald: weighted kNN evaluation of checkpoints (once, or attached to a live run),
 * embedding export, and nearest-neighbour retrieval with a grid image.
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
 * Results are JSON lines on stdout (one per evaluation and "against"), the same maps are
 * published as "eval" events on --pub. Attached, evald subscribes to the trainer's
 * "checkpoint" events and always evaluates the newest one, skipping those it fell behind on;
 * it only reads (checkpoint files, bank rows through `get`), so attaching and detaching never
 * disturbs training. */
#include "common/bankc.h"
#include "common/blas.h"
#include "common/ckpt.h"
#include "common/cfg.h"
#include "common/clock.h"
#include "common/curve.h"
#include "common/json.h"
#include "common/dataset.h"
#include "common/durable.h"
#include "common/event.h"
#include "common/image.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/sig.h"
#include "evald/export.h"
#include "evald/features.h"
#include "evald/files.h"
#include "evald/grid.h"
#include "evald/knn.h"
#include "evald/linear.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static struct {
    const char *data, *bank_ep, *events_ep, *pub_ep, *checkpoint, *against, *format, *out;
    const char *split, *grid, *log_level, *model, *aug, *layer, *k_list;
    int once, pixels, allow_remote, batch, threads, top, max_evals, exit_on_end, cell, low_dim, size;
    int every, queries, max_iter, train_views;
    uint64_t limit, bank_chunk, train_limit, seed, step;
    double sigma, bank_timeout, lambda, tol;
    const char *files, *paths_out;  /* embed / neighbours --files (evald/files.h) */
} o;

/* --layout, --train-splits, --list, --test-list, --labels (common/dataset.h) */
static struct dataset_opts eval_dso;

/* --curve-key with --bank-server-key, --events-server-key: CURVE client of a CURVE bankd, of a
 * CURVE trainer's events (common/curve.h; "": none) */
static const char *curve_key_path, *bank_server_key_path, *events_server_key_path;

/* --k parsed: ascending, distinct */
#define MAX_KS 16
static size_t ks[MAX_KS], n_ks;

/* Parses --k ("200" or "10,20,100,200") into ks. 0, or -1 with the reason on stderr. */
static int parse_ks(const char *s)
{
    n_ks = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || v < 1 || v > 100000 || (*end && *end != ',') || *p == '-') {
            fprintf(stderr, "npid-evald: --k %s: expected numbers in 1..100000 separated by commas\n", s);
            return -1;
        }
        if (n_ks == MAX_KS) {
            fprintf(stderr, "npid-evald: --k %s: at most %d values\n", s, MAX_KS);
            return -1;
        }
        size_t i = n_ks++;
        while (i > 0 && ks[i - 1] > v) {
            ks[i] = ks[i - 1];
            i--;
        }
        ks[i] = (size_t)v;
        if (i > 0 && ks[i - 1] == v) {
            fprintf(stderr, "npid-evald: --k %s: %llu given twice\n", s, v);
            return -1;
        }
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) {
            fprintf(stderr, "npid-evald: --k %s: expected numbers in 1..100000 separated by commas\n", s);
            return -1;
        }
    }
    if (n_ks == 0) {
        fprintf(stderr, "npid-evald: --k is empty\n");
        return -1;
    }
    return 0;
}

static struct cfg_opt opts[] = {
    { "data", "NPID_DATA", CFG_STR, &o.data, NULL, 0, 0, "dataset root (ImageFolder or flat tree, binary directory; or a file list)", 0 },
    DATASET_CFG_OPTS(&eval_dso),
    { "checkpoint", "NPID_CHECKPOINT", CFG_STR, &o.checkpoint, NULL, 0, 0, "trainer checkpoint (with --once; attached: evaluated first)", 0 },
    { "once", NULL, CFG_BOOL, &o.once, "false", 0, 0, "evaluate --checkpoint once and exit", 0 },
    { "pixels", NULL, CFG_BOOL, &o.pixels, "false", 0, 0, "with --once, instead of a checkpoint: kNN on raw pixels (test transform, CIFAR mean/std, L2-normalised; --size), the baseline a network must beat", 0 },
    { "bank", "NPID_BANK", CFG_STR, &o.bank_ep, "tcp://127.0.0.1:5557", 0, 0, "npid-bankd endpoint (default port: NPID_PORT_BASE)", 0 },
    { "events", "NPID_EVENTS", CFG_STR, &o.events_ep, "tcp://127.0.0.1:5559", 0, 0, "trainer events endpoint to subscribe to (default port: NPID_PORT_BASE + 2)", 0 },
    { "pub", "NPID_EVALD_PUB", CFG_STR, &o.pub_ep, "", 0, 0, "PUB endpoint for eval results (empty: none)", 0 },
    { "allow-remote", NULL, CFG_BOOL, &o.allow_remote, "false", 0, 0, "allow binding --pub to a non-loopback address", 0 },
    { "against", NULL, CFG_STR, &o.against, "bank", 0, 0, "bank | recomputed | both (neighbours: recomputed unless given)", 0 },
    { "k", NULL, CFG_STR, &o.k_list, "200", 0, 0, "neighbours that vote; a list (10,20,100,200) reports each k from one neighbour search", 0 },
    { "sigma", NULL, CFG_DOUBLE, &o.sigma, "0.1", 1e-4, 100, "vote weight exp(s / sigma)", 0 },
    { "batch", NULL, CFG_INT, &o.batch, "100", 1, 4096, "images per forward", 0 },
    { "limit", NULL, CFG_U64, &o.limit, "0", 0, 0, "use only the first N query (test) images (0: all)", 0 },
    { "train-limit", NULL, CFG_U64, &o.train_limit, "0", 0, 0, "recomputed / neighbours: only the first N train images (0: all)", 0 },
    { "bank-chunk", NULL, CFG_U64, &o.bank_chunk, "8192", 1, 1 << 24, "bank rows per get request", 0 },
    { "bank-timeout", NULL, CFG_DOUBLE, &o.bank_timeout, "5", 0.05, 3600, "seconds before a bank request is retried", 0 },
    { "curve-key", "NPID_CURVE_KEY", CFG_STR, &curve_key_path, "", 0, 0, "this client's CURVE key pair file (npid-bankd keygen; mode 0600): with --bank-server-key, talk to a CURVE bankd; with --events-server-key, subscribe to a CURVE trainer", 0 },
    { "bank-server-key", "NPID_BANK_SERVER_KEY", CFG_STR, &bank_server_key_path, "", 0, 0, "public key file (.pub) of a CURVE bankd (--curve-key's .pub must be in its --curve-allow)", 0 },
    { "events-server-key", "NPID_EVENTS_SERVER_KEY", CFG_STR, &events_server_key_path, "", 0, 0, "attached: public key file (.pub) of a CURVE trainer's --events (--curve-key's .pub must be in its --curve-allow)", 0 },
    { "max-evals", NULL, CFG_INT, &o.max_evals, "0", 0, 1000000, "attached: exit after N evaluations (0: no limit)", 0 },
    { "every", NULL, CFG_INT, &o.every, "1", 0, 1000000, "attached: evaluate every N-th checkpoint announced (0: none; --checkpoint still is)", 0 },
    { "exit-on-end", NULL, CFG_BOOL, &o.exit_on_end, "false", 0, 0, "attached: exit when the trainer publishes \"end\"", 0 },
    { "format", NULL, CFG_STR, &o.format, "npy", 0, 0, "embed: npy | fvecs | jsonl | tsv", 0 },
    { "out", NULL, CFG_STR, &o.out, "-", 0, 0, "embed: output file, directory (tsv) or - for stdout", 0 },
    { "split", NULL, CFG_STR, &o.split, "train", 0, 0, "embed: train | test", 0 },
    { "files", NULL, CFG_STR, &o.files, NULL, 0, 0, "embed, neighbours: the images named in this file (- for stdin), one path per line, instead of a split; embed needs no --data", 0 },
    { "paths-out", NULL, CFG_STR, &o.paths_out, NULL, 0, 0, "embed --files: the paths of the rows written, one per line, to this file (default with npy or fvecs to a file: OUT.paths)", 0 },
    { "grid", NULL, CFG_STR, &o.grid, NULL, 0, 0, "neighbours: write a retrieval grid JPEG here", 0 },
    { "queries", NULL, CFG_INT, &o.queries, "8", 1, 1000, "neighbours: without IMAGE arguments, N test images spread over the split", 0 },
    { "top", NULL, CFG_INT, &o.top, "10", 1, 100, "neighbours: how many per query", 0 },
    { "cell", NULL, CFG_INT, &o.cell, "64", 8, 512, "neighbours: grid cell size in pixels", 0 },
    { "layer", NULL, CFG_STR, &o.layer, "pool", 0, 0, "linear: embed (the normalised low-dim output) | pool (the pooled features before the head)", 0 },
    { "lambda", NULL, CFG_DOUBLE, &o.lambda, "0", 0, 1e6, "linear: L2 weight on the standardised features (0: chosen from 1e-1..1e-8 on a held-out 20 % of the train split)", 0 },
    { "max-iter", NULL, CFG_INT, &o.max_iter, "1000", 1, 1000000, "linear: L-BFGS iterations per fit at most", 0 },
    { "train-views", NULL, CFG_INT, &o.train_views, "1", 1, FEAT_MAX_VIEWS,
      "linear: each train image's feature is the mean of N views drawn with the checkpoint's "
      "train augmentation (view v of image i seeded from --seed, v, i; N forwards per image); "
      "with --layer embed the mean of the L2-normalised embeddings, not renormalised; --pixels: "
      "the cifar preset's train transform; 1: one test-transform view", 0 },
    { "tol", NULL, CFG_DOUBLE, &o.tol, "1e-6", 1e-12, 1, "linear: stop when every entry of the gradient of the mean objective is below this", 0 },
    { "model", NULL, CFG_STR, &o.model, "resnet18", 0, 0, "mkckpt: network preset", 0 },
    { "low-dim", NULL, CFG_INT, &o.low_dim, "128", 1, 4096, "mkckpt: feature dimension", 0 },
    { "size", NULL, CFG_INT, &o.size, "32", 8, 1024, "mkckpt and --pixels: image size", 0 },
    { "aug", NULL, CFG_STR, &o.aug, "cifar", 0, 0, "mkckpt: augmentation preset (sets the test transform)", 0 },
    { "seed", NULL, CFG_U64, &o.seed, "0", 0, 0, "mkckpt: weight seed; linear: which train images are held out for choosing lambda", 0 },
    { "step", NULL, CFG_U64, &o.step, "0", 0, 0, "mkckpt: step recorded in the checkpoint", 0 },
    { "threads", "NPID_THREADS", CFG_INT, &o.threads, "0", 0, 256, "OpenBLAS threads (0: library default)", 0 },
    { "log-level", "NPID_LOG_LEVEL", CFG_STR, &o.log_level, "info", 0, 0, "debug, info, warn or error", 0 },
    { 0 },
};

static const char usage[] =
    "[attach|embed|neighbours|linear] [options] [IMAGE|test:N|train:N ...]\n\n"
    "  npid-evald --data ROOT [--checkpoint P]         attach to --events; evaluate each new checkpoint\n"
    "  npid-evald --once --checkpoint P --data ROOT    evaluate one checkpoint and exit\n"
    "  npid-evald embed --data ROOT --checkpoint P --split train|test --format npy --out FILE\n"
    "  npid-evald embed --data ROOT --bank EP --format tsv --out DIR   (the bank's rows)\n"
    "  npid-evald neighbours --checkpoint P --data ROOT --grid out.jpg IMAGE...\n"
    "  find photos -name '*.jpg' | npid-evald embed --checkpoint P --files - --format jsonl\n"
    "  npid-evald neighbours --checkpoint P --data ROOT --files LIST   (nearest train images of each)\n"
    "  npid-evald linear --checkpoint P --data ROOT [--layer embed|pool]   logistic regression probe\n"
    "  npid-evald mkckpt --out P [--model M --low-dim D --size S --aug A --seed N --step N]\n"
    "      (a checkpoint of an untrained network, for smoke tests)\n"
    "Results: one JSON line per evaluation on stdout (and as \"eval\" events on --pub).";

/* What every evaluation needs besides the checkpoint: the splits, the query labels. */
struct evald {
    struct dataset *train, *test;
    uint32_t *train_labels;    /* (n_train) */
    uint32_t *test_labels;     /* (nq) */
    size_t n_train, nq, nclass;
    struct bankc *bank;
    struct event_pub *pub;
    uint64_t evals;
};

/* What evald_open opens: the test split (required, or when there is one), and whether the
 * evaluation needs labels (kNN, linear: then n_train is the labelled train images, the first
 * dataset_labelled rows of the bank; otherwise every train image). */
enum { EV_TEST = 1, EV_TEST_IF_ANY = 2, EV_LABELS = 4 };

static int evald_open(struct evald *ev, int need)
{
    char err[DATASET_ERR_LEN];
    memset(ev, 0, sizeof *ev);
    ev->train = dataset_open_opts(o.data, "train", &eval_dso, err, sizeof err);
    if (!ev->train) {
        log_error("%s", err);
        return -1;
    }
    log_info("train split: %s", dataset_describe(ev->train));
    /* the labelled images come first (common/dataset.h): kNN and linear use rows
       [0, labelled), the unlabelled ones are never neighbours */
    ev->n_train = need & EV_LABELS ? dataset_labelled(ev->train) : dataset_count(ev->train);
    if ((need & EV_LABELS) && ev->n_train == 0) {
        log_error("%s: no labels to evaluate with: the train split is unlabelled (%s); kNN and "
                  "linear need labelled train images (class folders, a labelled --list, or "
                  "--train-splits train,unlabeled with class folders in train/)",
                  dataset_root(ev->train), dataset_describe(ev->train));
        return -1;
    }
    ev->nclass = dataset_num_classes(ev->train);
    ev->train_labels = malloc((ev->n_train ? ev->n_train : 1) * sizeof *ev->train_labels);
    if (!ev->train_labels)
        return -1;
    for (size_t i = 0; i < ev->n_train; i++)
        ev->train_labels[i] = dataset_label(ev->train, i);
    if (!(need & (EV_TEST | EV_TEST_IF_ANY)) ||
        ((need & EV_TEST_IF_ANY) && !dataset_split_exists(o.data, "test", &eval_dso)))
        return 0;
    ev->test = dataset_open_opts(o.data, "test", &eval_dso, err, sizeof err);
    if (!ev->test) {
        log_error("%s", err);
        return -1;
    }
    ev->nq = need & EV_LABELS ? dataset_labelled(ev->test) : dataset_count(ev->test);
    if ((need & EV_LABELS) && ev->nq == 0) {
        log_error("%s: no labels to evaluate with: the test split is unlabelled (%s)",
                  dataset_root(ev->test), dataset_describe(ev->test));
        return -1;
    }
    if (o.limit && o.limit < ev->nq)
        ev->nq = (size_t)o.limit;
    ev->test_labels = malloc((ev->nq ? ev->nq : 1) * sizeof *ev->test_labels);
    if (!ev->test_labels)
        return -1;
    for (size_t i = 0; i < ev->nq; i++)
        ev->test_labels[i] = dataset_label(ev->test, i);
    return 0;
}

static void evald_close(struct evald *ev)
{
    dataset_destroy(&ev->train);
    dataset_destroy(&ev->test);
    free(ev->train_labels);
    free(ev->test_labels);
    bankc_destroy(&ev->bank);
    event_pub_destroy(&ev->pub);
}

static struct bankc *evald_bank(struct evald *ev)
{
    if (!ev->bank) {
        static struct curve_sock cs;
        char cerr[4400];
        /* --curve-key may be for the events only: CURVE to bankd with --bank-server-key */
        int con = !bank_server_key_path[0] ? 0 :
                  curve_sock_client_flags(&cs, curve_key_path, bank_server_key_path,
                                          "bank-server-key", cerr, sizeof cerr);
        if (con < 0) {
            log_error("bank %s: %s", o.bank_ep, cerr);
            return NULL;
        }
        struct msg_opts mo = MSG_OPTS_DEFAULT;
        mo.curve = con ? &cs : NULL;
        ev->bank = bankc_new_opts(o.bank_ep, NULL, (int)(o.bank_timeout * 1000), 2, &mo);
        if (!ev->bank)
            log_error("bank %s: cannot create a client: %s", o.bank_ep, strerror(errno));
        else
            bankc_set_stop(ev->bank, &sig_stop);
    }
    return ev->bank;
}

/* Streams the bank's rows into kn. Returns 0 or -1 (reason logged). */
static int evald_add_bank(struct evald *ev, struct knn *kn, size_t dim, uint64_t *bank_step)
{
    struct bankc *bc = evald_bank(ev);
    struct bankc_info info;
    if (!bc)
        return -1;
    if (bankc_info(bc, &info) != 0) {
        log_error("bank %s: info failed: %s", o.bank_ep, bankc_error(bc));
        return -1;
    }
    if (info.rows != dataset_count(ev->train) || info.dim != dim) {
        log_error("bank %s holds %" PRIu64 " x %" PRIu64 ", but the train split has %zu images "
                  "and the network %zu dimensions", o.bank_ep, info.rows, info.dim,
                  dataset_count(ev->train), dim);
        return -1;
    }
    if (info.has_manifest && strcmp(info.manifest, dataset_manifest(ev->train)) != 0) {
        log_error("bank %s belongs to another dataset (manifest %.12s..., --data has %.12s...)",
                  o.bank_ep, info.manifest, dataset_manifest(ev->train));
        return -1;
    }
    *bank_step = info.step;
    size_t chunk = (size_t)o.bank_chunk;
    float *rows = malloc(chunk * dim * sizeof *rows);
    if (!rows)
        return -1;
    int rc = 0;
    for (size_t s = 0; s < ev->n_train && rc == 0; s += chunk) {
        size_t c = ev->n_train - s < chunk ? ev->n_train - s : chunk;
        if (bankc_get(bc, s, c, rows) != 0) {
            log_error("bank %s: get %zu+%zu failed: %s", o.bank_ep, s, c, bankc_error(bc));
            rc = -1;
        } else if (knn_add(kn, rows, s, c) != 0) {
            rc = -1;
        }
    }
    free(rows);
    return rc;
}

/* Recomputes train features with the current network into kn, chunk by chunk. */
static int evald_add_recomputed(struct evald *ev, struct feat_model *m, struct knn *kn)
{
    size_t n = ev->n_train, chunk = 1024;
    if (o.train_limit && o.train_limit < n)
        n = (size_t)o.train_limit;
    float *f = malloc(chunk * (size_t)m->low_dim * sizeof *f);
    if (!f)
        return -1;
    int rc = 0;
    for (size_t s = 0; s < n && rc == 0; s += chunk) {
        size_t c = n - s < chunk ? n - s : chunk;
        rc = feat_dataset(m, ev->train, s, c, f);
        if (rc == 0)
            rc = knn_add(kn, f, s, c);
    }
    free(f);
    return rc;
}

/* Publishes and prints one result. */
static void evald_emit(struct evald *ev, const struct feat_model *m, const char *path,
                       const char *against, const struct knn_result *r, uint64_t bank_step,
                       uint64_t n_bank, double secs)
{
    int with_confusion = r->nclass <= 100;
    msgpack_packer *pk = event_begin(ev->pub, "eval", 17 + (uint32_t)with_confusion);
    mp_pack_kv_u64(pk, "step", m->step);
    mp_pack_kv_u64(pk, "epoch", m->epoch);
    mp_pack_kv_str(pk, "against", against);
    mp_pack_kv_str(pk, "checkpoint", path);
    mp_pack_kv_str(pk, "train_run", m->run);
    mp_pack_kv_str(pk, "model", m->model);
    mp_pack_kv_u64(pk, "k", r->k);
    mp_pack_kv_double(pk, "sigma", r->sigma);
    mp_pack_kv_double(pk, "top1", r->top1);
    mp_pack_kv_double(pk, "top5", r->top5);
    mp_pack_kv_double(pk, "nn1", r->nn1);
    mp_pack_kv_u64(pk, "n_query", r->nq);
    mp_pack_kv_u64(pk, "n_bank", n_bank);
    if (strcmp(against, "bank") == 0)
        mp_pack_kv_u64(pk, "bank_step", bank_step);
    else
        mp_pack_kv_nil(pk, "bank_step");
    mp_pack_kv_u64(pk, "bad_images", m->bad_images);
    mp_pack_kv_double(pk, "seconds", secs);
    mp_pack_key(pk, "per_class");
    msgpack_pack_map(pk, r->nclass);
    for (size_t c = 0; c < r->nclass; c++)
        mp_pack_kv_double(pk, dataset_class_name(ev->train, c), knn_result_class_acc(r, c));
    if (with_confusion) {
        mp_pack_key(pk, "confusion");
        msgpack_pack_array(pk, r->nclass);
        for (size_t a = 0; a < r->nclass; a++) {
            msgpack_pack_array(pk, r->nclass);
            for (size_t b = 0; b < r->nclass; b++)
                msgpack_pack_uint64(pk, r->confusion[a * r->nclass + b]);
        }
    }
    if (event_end(ev->pub) != 0)
        log_warn("eval event not published");
    if (event_json_line(ev->pub, stdout) != 0)
        log_error("cannot write the result to stdout: %s", strerror(errno));
    log_info("step %" PRIu64 " against %s: top1 %.2f%% top5 %.2f%% 1-NN %.2f%% (k %zu, %zu queries, %.1f s)",
             m->step, against, 100 * r->top1, 100 * r->top5, 100 * r->nn1, r->k, r->nq, secs);
}

/* Evaluates one checkpoint against the bank and/or recomputed features. 0 or -1. */
static int evald_eval(struct evald *ev, const char *path)
{
    char err[1024];
    struct feat_model m;
    double t0 = clock_seconds();
    if ((o.pixels ? feat_pixels_init(&m, o.size, o.batch, err, sizeof err)
                  : feat_model_init(&m, path, o.batch, err, sizeof err)) != 0) {
        log_error("%s", err);
        return -1;
    }
    int rc = -1;
    float *q = malloc(ev->nq * (size_t)m.low_dim * sizeof *q);
    if (!q)
        goto out;
    log_info("checkpoint %s: step %" PRIu64 ", %s; %zu test images", path, m.step, m.model, ev->nq);
    if (feat_dataset(&m, ev->test, 0, ev->nq, q) != 0)
        goto out;
    double tq = clock_seconds() - t0;
    int both = strcmp(o.against, "both") == 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *against = pass == 0 ? "bank" : "recomputed";
        if (!both && strcmp(o.against, against) != 0)
            continue;
        double t1 = clock_seconds();
        struct knn *kn = knn_new(q, ev->nq, (size_t)m.low_dim, ks[n_ks - 1]);
        if (!kn) {
            log_error("kNN: %s", strerror(errno));
            goto out;
        }
        uint64_t bank_step = 0;
        int arc = pass == 0 ? evald_add_bank(ev, kn, (size_t)m.low_dim, &bank_step)
                            : evald_add_recomputed(ev, &m, kn);
        /* one neighbour search, a vote (and a result line) per --k value, ascending */
        for (size_t i = 0; arc == 0 && i < n_ks; i++) {
            uint64_t n_bank = knn_rows_seen(kn);
            struct knn_result *r = knn_classify(kn, ev->train_labels, ev->n_train,
                                                ev->test_labels, ev->nclass, ks[i], o.sigma);
            if (r)
                evald_emit(ev, &m, path, against, r, bank_step, n_bank, tq + clock_seconds() - t1);
            else
                log_error("kNN classification failed: %s", strerror(errno));
            knn_result_destroy(&r);
        }
        knn_destroy(&kn);
        if (arc != 0 || sig_stop)
            goto out;
    }
    rc = 0;
    ev->evals++;
out:
    free(q);
    feat_model_deinit(&m);
    return rc;
}

/* A checkpoint announced by the trainer and not evaluated yet. */
struct pending {
    int set;
    uint64_t step, seq;
    char path[4096];
};

/* Reads one event (topic + body) if one is waiting within timeout_ms. Returns 1 when a
 * checkpoint was noted (newer than *p), 2 on "end", 0 otherwise; -1 on EINTR. */
static int evald_poll_event(void *sub, int timeout_ms, struct pending *p, uint64_t *last_seq,
                            uint64_t *skipped, uint64_t *malformed, uint64_t *announced)
{
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    if (msg_recv(sub, &topic, timeout_ms, &sig_stop) != 0) {
        zmq_msg_close(&topic);
        return errno == EINTR ? -1 : 0;
    }
    int ret = 0;
    if (!zmq_msg_more(&topic)) {
        log_warn("malformed event: one frame of %zu bytes (expected topic + msgpack map)",
                 zmq_msg_size(&topic));
        (*malformed)++;
        zmq_msg_close(&topic);
        return 0;
    }
    zmq_msg_init(&body);
    if (msg_recv(sub, &body, 1000, &sig_stop) != 0) {
        zmq_msg_close(&topic);
        zmq_msg_close(&body);
        return errno == EINTR ? -1 : 0;
    }
    if (zmq_msg_more(&body))
        msg_drain_more(sub);
    struct event e;
    const char *why = NULL;
    const char *path;
    size_t path_len;
    uint64_t step = 0;
    if (event_decode(zmq_msg_data(&body), zmq_msg_size(&body), &e, &why) != 0) {
        log_warn("malformed event (topic \"%.*s\"): %s", (int)(zmq_msg_size(&topic) > 32 ? 32 : zmq_msg_size(&topic)),
                 (const char *)zmq_msg_data(&topic), why);
        (*malformed)++;
        goto done;
    }
    if (*last_seq && e.seq > *last_seq + 1)
        log_info("events: missed %" PRIu64 " (seq %" PRIu64 " after %" PRIu64 ")",
                 e.seq - *last_seq - 1, e.seq, *last_seq);
    *last_seq = e.seq;
    if (e.type_len == 3 && memcmp(e.type, "end", 3) == 0) {
        ret = 2;
        goto done;
    }
    if (!(e.type_len == 10 && memcmp(e.type, "checkpoint", 10) == 0))
        goto done;
    if (mp_get_str(&e.map, "path", &path, &path_len) != MP_OK || path_len == 0 ||
        path_len >= sizeof p->path || memchr(path, 0, path_len)) {
        log_warn("malformed checkpoint event (seq %" PRIu64 "): no usable \"path\"", e.seq);
        (*malformed)++;
        goto done;
    }
    if (mp_get_u64(&e.map, "step", &step) != MP_OK) {
        log_warn("malformed checkpoint event (seq %" PRIu64 "): no \"step\"", e.seq);
        (*malformed)++;
        goto done;
    }
    (*announced)++;
    if (o.every == 0 || *announced % (uint64_t)o.every != 0) {
        log_debug("checkpoint step %" PRIu64 " not evaluated (--every %d)", step, o.every);
        goto done;
    }
    if (p->set) {
        (*skipped)++;
        log_info("skipping checkpoint step %" PRIu64 ": step %" PRIu64 " is newer", p->step, step);
    }
    p->set = 1;
    p->step = step;
    p->seq = e.seq;
    memcpy(p->path, path, path_len);
    p->path[path_len] = 0;
    ret = 1;
done:
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    return ret;
}

static int cmd_attach(struct evald *ev)
{
    struct curve_sock cs;
    char cerr[4400];
    int con = !events_server_key_path[0] ? 0 :
              curve_sock_client_flags(&cs, curve_key_path, events_server_key_path,
                                      "events-server-key", cerr, sizeof cerr);
    if (con < 0) {
        log_error("events %s: %s", o.events_ep, cerr);
        return con == -2 ? EXIT_USAGE : EXIT_FAIL;
    }
    struct msg_opts mo = MSG_OPTS_DEFAULT;
    mo.curve = con ? &cs : NULL;
    void *sub = msg_socket(ZMQ_SUB, &mo);
    if (!sub || msg_connect(sub, o.events_ep) != 0) {
        log_error("events %s: cannot subscribe: %s", o.events_ep, strerror(errno));
        msg_close(&sub);
        return EXIT_FAIL;
    }
    /* every topic, so that a gap in seq means events were really lost; only "checkpoint"
     * and "end" are acted on */
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    struct pending p = { 0 };
    uint64_t last_seq = 0, skipped = 0, malformed = 0, failed = 0, announced = 0;
    if (o.checkpoint) {
        p.set = 1;
        snprintf(p.path, sizeof p.path, "%s", o.checkpoint);
    }
    log_info("attached to %s (bank %s); waiting for checkpoints", o.events_ep, o.bank_ep);
    int end = 0;
    while (!sig_stop) {
        /* take everything that is waiting: the newest checkpoint wins */
        int rc;
        while ((rc = evald_poll_event(sub, p.set ? 0 : 200, &p, &last_seq, &skipped, &malformed,
                                       &announced)) > 0) {
            if (rc == 2) {
                log_info("trainer published \"end\"");
                end = 1;
            }
        }
        if (rc < 0)
            break;
        if (p.set) {
            p.set = 0;
            if (evald_eval(ev, p.path) != 0 && !sig_stop) {
                failed++;
                log_error("evaluation of %s failed; still attached", p.path);
            }
            if (o.max_evals && ev->evals >= (uint64_t)o.max_evals)
                break;
        } else if (end && o.exit_on_end) {
            break;
        }
    }
    log_info("detached: %" PRIu64 " evaluations, %" PRIu64 " skipped, %" PRIu64 " failed, %" PRIu64
             " malformed events", ev->evals, skipped, failed, malformed);
    msg_close(&sub);
    return EXIT_OK;
}

/* Parses "test:N" / "train:N"; returns 1 with *ds and *idx set, 0 when s is a file path, -1 bad. */
static int evald_image_ref(struct evald *ev, const char *s, struct dataset **ds, size_t *idx)
{
    const char *num;
    if (strncmp(s, "test:", 5) == 0) {
        *ds = ev->test;
        num = s + 5;
    } else if (strncmp(s, "train:", 6) == 0) {
        *ds = ev->train;
        num = s + 6;
    } else {
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(num, &end, 10);
    if (!*ds || end == num || *end || errno || v >= dataset_count(*ds))
        return -1;
    *idx = (size_t)v;
    return 1;
}

/* Loads a query image (file or dataset reference; with as_file always a file) as RGB,
 * malloc'd into *rgb, decoded as feat_dataset decodes. On -1 the reason (logged) is also
 * copied to why when given. */
static int evald_load_query(struct evald *ev, struct feat_model *m, const char *s, int as_file,
                            uint8_t **rgb, uint32_t *w, uint32_t *h, uint32_t *label, char *why,
                            size_t why_len)
{
    char err[DATASET_ERR_LEN];
    struct dataset *ds = NULL;
    size_t idx = 0;
    int ref = as_file ? 0 : evald_image_ref(ev, s, &ds, &idx);
    if (why && why_len)
        snprintf(why, why_len, "out of memory");
    struct jpeg_image img;
    *label = EXPORT_NO_LABEL;
    if (ref < 0) {
        log_error("%s: no such dataset image", s);
        return -1;
    }
    if (ref == 1) {
        if (dataset_decode(ds, idx, m->dec, 0, &img, err, sizeof err) != 0) {
            log_error("%s", err);
            if (why && why_len)
                snprintf(why, why_len, "%s", err);
            return -1;
        }
        *label = dataset_label(ds, idx);
    } else if (files_decode(m, s, &img, err, sizeof err) != 0) {
        log_error("%s: %s", s, err);
        if (why && why_len)
            snprintf(why, why_len, "%s", err);
        return -1;
    }
    *rgb = malloc((size_t)img.w * img.h * 3);
    if (!*rgb)
        return -1;
    memcpy(*rgb, img.pix, (size_t)img.w * img.h * 3);
    *w = img.w;
    *h = img.h;
    return 0;
}

static int cmd_neighbours_run(struct evald *ev, int nimg, char **imgs, int as_files);

static int cmd_neighbours(struct evald *ev, int nimg, char **imgs)
{
    char **auto_imgs = NULL;
    if (o.files) {
        char err[1024];
        struct files_list fl;
        if (nimg > 0) {
            fprintf(stderr, "npid-evald neighbours: images as arguments or --files, not both\n");
            return EXIT_USAGE;
        }
        if (files_list_read(&fl, o.files, err, sizeof err) != 0) {
            log_error("%s", err);
            return EXIT_FAIL;
        }
        int ret = EXIT_FAIL;
        if (fl.n == 0 || fl.n > 0x7fffffff)
            log_error("neighbours: --files %s holds %zu paths", o.files, fl.n);
        else
            ret = cmd_neighbours_run(ev, (int)fl.n, fl.paths, 1);
        files_list_deinit(&fl);
        return ret;
    }
    if (nimg < 1) {
        /* --queries N test images, evenly spread (a class-sorted split gives mixed classes) */
        size_t nt = dataset_count(ev->test), nqr = (size_t)o.queries < nt ? (size_t)o.queries : nt;
        auto_imgs = calloc(nqr, sizeof *auto_imgs);
        for (size_t i = 0; auto_imgs && i < nqr; i++) {
            auto_imgs[i] = malloc(32);
            if (auto_imgs[i])
                snprintf(auto_imgs[i], 32, "test:%zu", i * nt / nqr + nt / nqr / 2);
        }
        nimg = (int)nqr;
        imgs = auto_imgs;
    }
    int ret = cmd_neighbours_run(ev, nimg, imgs, 0);
    for (int i = 0; auto_imgs && i < nimg; i++)
        free(auto_imgs[i]);
    free(auto_imgs);
    return ret;
}

/* as_files (--files): every query is a file path, and one that cannot be read gets a line
 * {"query":path,"error":reason} while the others are searched; EXIT_FAIL only when all fail. */
static int cmd_neighbours_run(struct evald *ev, int nimg, char **imgs, int as_files)
{
    char err[1024];
    struct feat_model m;
    for (int i = 0; i < nimg; i++) {
        if (!imgs[i]) {
            log_error("out of memory");
            return EXIT_FAIL;
        }
    }
    if (!o.checkpoint) {
        fprintf(stderr, "npid-evald neighbours: --checkpoint is required\n");
        return EXIT_USAGE;
    }
    if (feat_model_init(&m, o.checkpoint, o.batch, err, sizeof err) != 0) {
        log_error("%s", err);
        return EXIT_FAIL;
    }
    int ret = EXIT_FAIL;
    size_t d = (size_t)m.low_dim, top = (size_t)o.top;
    float *q = malloc((size_t)nimg * d * sizeof *q);
    uint8_t **rgb = calloc((size_t)nimg, sizeof *rgb);
    uint32_t *qw = calloc((size_t)nimg, sizeof *qw), *qh = calloc((size_t)nimg, sizeof *qh);
    uint32_t *ql = calloc((size_t)nimg, sizeof *ql);
    uint32_t *idx = malloc(top * sizeof *idx);
    float *sim = malloc(top * sizeof *sim);
    char **bad = calloc((size_t)nimg, sizeof *bad); /* (nimg) --files: why query i failed */
    struct knn *kn = NULL;
    struct grid *g = NULL;
    int nok = 0;
    if (!q || !rgb || !qw || !qh || !ql || !idx || !sim || !bad)
        goto out;
    for (int i = 0; i < nimg; i++) {
        char why[512];
        if (evald_load_query(ev, &m, imgs[i], as_files, &rgb[i], &qw[i], &qh[i], &ql[i], why,
                             sizeof why) != 0) {
            if (!as_files || !(bad[i] = strdup(why)))
                goto out;
            memset(q + (size_t)i * d, 0, d * sizeof *q); /* searched, never printed */
            continue;
        }
        nok++;
        feat_rgb(&m, rgb[i], qw[i], qh[i], q + (size_t)i * d);
        if (!o.grid) { /* only the grid needs the pixels: a long --files list stays small */
            free(rgb[i]);
            rgb[i] = NULL;
        }
    }
    kn = knn_new(q, (size_t)nimg, d, top);
    if (!kn)
        goto out;
    uint64_t bank_step = 0;
    int brc = nok == 0 ? 0 /* nothing to search for */
              : strcmp(o.against, "bank") == 0 ? evald_add_bank(ev, kn, d, &bank_step)
                                                : evald_add_recomputed(ev, &m, kn);
    if (brc != 0)
        goto out;
    if (o.grid && nok && !(g = grid_new((size_t)nimg, top + 1, (size_t)o.cell, 4))) {
        log_error("grid: %s", strerror(errno));
        goto out;
    }
    for (int i = 0; i < nimg; i++) {
        if (bad[i]) {
            fputs("{\"query\":", stdout);
            json_write_cstr(stdout, imgs[i]);
            fputs(",\"error\":", stdout);
            json_write_cstr(stdout, bad[i]);
            fputs("}\n", stdout);
            continue;
        }
        size_t n = knn_neighbours(kn, (size_t)i, idx, sim);
        fputs("{\"query\":", stdout);
        json_write_cstr(stdout, imgs[i]);
        if (ql[i] != EXPORT_NO_LABEL)
            printf(",\"label\":%" PRIu32, ql[i]);
        printf(",\"step\":%" PRIu64 ",\"against\":\"%s\",\"neighbours\":[", m.step,
               strcmp(o.against, "bank") == 0 ? "bank" : "recomputed");
        if (g)
            grid_put(g, (size_t)i, 0, rgb[i], qw[i], qh[i]);
        for (size_t j = 0; j < n; j++) {
            uint32_t lab = dataset_label(ev->train, idx[j]);
            printf("%s{\"index\":%" PRIu32 ",\"sim\":%.6f", j ? "," : "", idx[j], (double)sim[j]);
            if (lab == DATASET_NO_LABEL) { /* an unlabelled training image */
                fputs(",\"label\":null,\"class\":null", stdout);
            } else {
                printf(",\"label\":%" PRIu32 ",\"class\":", lab);
                json_write_cstr(stdout, dataset_class_name(ev->train, lab));
            }
            fputs(",\"path\":", stdout);
            json_write_cstr(stdout, dataset_path(ev->train, idx[j]));
            fputc('}', stdout);
            if (g) {
                uint8_t *pix = NULL;
                uint32_t w = 0, h = 0, lab2;
                char ref[64];
                snprintf(ref, sizeof ref, "train:%" PRIu32, idx[j]);
                if (evald_load_query(ev, &m, ref, 0, &pix, &w, &h, &lab2, NULL, 0) == 0) {
                    grid_put(g, (size_t)i, j + 1, pix, w, h);
                    if (ql[i] != EXPORT_NO_LABEL)
                        grid_mark_match(g, (size_t)i, j + 1, lab2 == ql[i]);
                }
                free(pix);
            }
        }
        fputs("]}\n", stdout);
    }
    if (fflush(stdout) != 0) {
        log_error("stdout: %s", strerror(errno));
        goto out;
    }
    if (nok == 0) {
        log_error("neighbours: none of the %d images could be read", nimg);
        goto out;
    }
    if (g && grid_write_jpeg(g, o.grid, 90, err, sizeof err) != 0) {
        log_error("grid: %s", err);
        goto out;
    }
    if (g)
        log_info("retrieval grid %zux%zu written to %s", grid_width(g), grid_height(g), o.grid);
    ret = EXIT_OK;
out:
    grid_destroy(&g);
    knn_destroy(&kn);
    for (int i = 0; rgb && i < nimg; i++)
        free(rgb[i]);
    for (int i = 0; bad && i < nimg; i++)
        free(bad[i]);
    free(rgb), free(q), free(qw), free(qh), free(ql), free(idx), free(sim), free(bad);
    feat_model_deinit(&m);
    return ret;
}

/* embed's --format and --out checked together: the format, or -1 after a usage message. */
static int embed_format(void)
{
    int fmt = export_format_parse(o.format);
    if (fmt < 0) {
        fprintf(stderr, "npid-evald embed: unknown --format %s (npy, fvecs, jsonl, tsv)\n", o.format);
        return -1;
    }
    if (fmt == EXPORT_TSV && strcmp(o.out, "-") == 0) {
        fprintf(stderr, "npid-evald embed: --format tsv writes a directory: give --out DIR\n");
        return -1;
    }
    return fmt;
}

/* embed --files: the images of a list, no dataset (evald/files.h). Runs before any dataset
 * is opened, so it does its own start-up (threads, signals, config log). */
static int cmd_embed_files(void)
{
    int fmt = embed_format();
    if (fmt < 0)
        return EXIT_USAGE;
    if (!o.checkpoint) {
        fprintf(stderr, "npid-evald embed --files: give --checkpoint P (the bank only holds dataset images)\n");
        return EXIT_USAGE;
    }
    /* npy and fvecs carry no paths: a file output gets its row -> path list beside it */
    char paths[4096];
    const char *po = o.paths_out;
    if (!po && strcmp(o.out, "-") != 0 && (fmt == EXPORT_NPY || fmt == EXPORT_FVECS)) {
        if (snprintf(paths, sizeof paths, "%s.paths", o.out) >= (int)sizeof paths) {
            fprintf(stderr, "npid-evald embed: --out %s: path too long\n", o.out);
            return EXIT_USAGE;
        }
        po = paths;
    }
    if (o.threads > 0)
        blas_set_threads(o.threads);
    sig_install();
    cfg_log(opts);
    char err[1024];
    struct feat_model m;
    if (feat_model_init(&m, o.checkpoint, 1, err, sizeof err) != 0) {
        log_error("%s", err);
        return EXIT_FAIL;
    }
    int ret = files_embed(&m, o.files, (enum export_format)fmt, o.out, po);
    feat_model_deinit(&m);
    return ret;
}

static int cmd_embed(struct evald *ev)
{
    int fmt = embed_format();
    if (fmt < 0)
        return EXIT_USAGE;
    int from_bank = o.checkpoint == NULL;
    if (!from_bank && strcmp(o.split, "train") != 0 && strcmp(o.split, "test") != 0) {
        fprintf(stderr, "npid-evald embed: --split must be train or test\n");
        return EXIT_USAGE;
    }
    char err[1024];
    struct feat_model m;
    struct dataset *ds = ev->train;
    size_t n = 0, d = 0;
    memset(&m, 0, sizeof m);
    struct bankc_info info;
    if (from_bank) {
        struct bankc *bc = evald_bank(ev);
        if (!bc || bankc_info(bc, &info) != 0) {
            log_error("bank %s: info failed: %s", o.bank_ep, bc ? bankc_error(bc) : "no client");
            return EXIT_FAIL;
        }
        n = (size_t)info.rows;
        d = (size_t)info.dim;
        if (n != ev->n_train) {
            log_error("bank %s has %zu rows but the train split %zu images: other data?", o.bank_ep,
                      n, ev->n_train);
            return EXIT_FAIL;
        }
    } else {
        if (feat_model_init(&m, o.checkpoint, o.batch, err, sizeof err) != 0) {
            log_error("%s", err);
            return EXIT_FAIL;
        }
        if (strcmp(o.split, "test") == 0) {
            ds = dataset_open_opts(o.data, "test", &eval_dso, err, sizeof err);
            if (!ds) {
                log_error("%s", err);
                feat_model_deinit(&m);
                return EXIT_FAIL;
            }
        }
        n = dataset_count(ds);
        d = (size_t)m.low_dim;
    }
    if (o.limit && o.limit < n)
        n = (size_t)o.limit;
    int ret = EXIT_FAIL;
    size_t chunk = from_bank ? (size_t)o.bank_chunk : 1024;
    float *f = malloc(chunk * d * sizeof *f);
    struct export *ex = export_new((enum export_format)fmt, o.out, n, d);
    if (!ex) {
        log_error("embed: cannot write %s: %s", o.out, strerror(errno));
        goto out;
    }
    if (!f)
        goto out;
    for (size_t s = 0; s < n; s += chunk) {
        size_t c = n - s < chunk ? n - s : chunk;
        if (from_bank ? bankc_get(evald_bank(ev), s, c, f) : feat_dataset(&m, ds, s, c, f)) {
            log_error("embed: rows %zu+%zu: %s", s, c,
                      from_bank ? bankc_error(evald_bank(ev)) : strerror(errno));
            goto out;
        }
        for (size_t i = 0; i < c; i++) {
            uint32_t lab = dataset_label(ds, s + i);
            if (export_row(ex, s + i, f + i * d, lab, dataset_class_name(ds, lab),
                           dataset_path(ds, s + i)) != 0) {
                log_error("embed: row %zu to %s: %s", s + i, o.out,
                          errno == EINVAL ? "non-finite value (JSON cannot carry it)" : strerror(errno));
                goto out;
            }
        }
    }
    if (export_finish(ex) != 0) {
        log_error("embed: finishing %s: %s", o.out, strerror(errno));
        goto out;
    }
    log_info("embed: %zu x %zu %s from %s to %s", n, d, export_format_name((enum export_format)fmt),
             from_bank ? o.bank_ep : o.checkpoint, o.out);
    ret = EXIT_OK;
out:
    export_destroy(&ex);
    free(f);
    if (ds != ev->train)
        dataset_destroy(&ds);
    feat_model_deinit(&m);
    return ret;
}

/* The probe's features: train rows 0..n-1 into Xtr (n, d), each the mean of --train-views
 * views of the train transform, or with --train-views 1 one test-transform view; the test
 * split into Xte (nq, d), one test-transform view. 0, or -1 (logged; a signal: EINTR). */
static int cmd_linear_features(struct evald *ev, struct feat_model *m, size_t n, float *Xtr,
                               float *Xte)
{
    char err[1024];
    if (o.train_views == 1)
        return feat_dataset(m, ev->train, 0, n, Xtr) != 0 ||
               feat_dataset(m, ev->test, 0, ev->nq, Xte) != 0 ? -1 : 0;
    if (feat_train_aug_init(m, err, sizeof err) != 0) {
        log_error("linear: --train-views %d: %s", o.train_views, err);
        return -1;
    }
    const struct augment_params *ap = augment_get_params(m->train_aug);
    log_info("linear: train features the mean of %d views of the %s train transform: crop "
             "%g-%g, jitter %g/%g/%g/%g, gray %g, flip %s, blur %g", o.train_views, m->aug_name,
             ap->scale_min, ap->scale_max, ap->brightness, ap->contrast, ap->saturation, ap->hue,
             ap->gray_p, ap->flip ? "on" : "off", ap->blur_p);
    if (feat_dataset_views(m, ev->train, 0, n, o.train_views, o.seed, Xtr) != 0) {
        if (errno != EINTR)
            log_error("linear: train views: %s", strerror(errno));
        return -1;
    }
    return feat_dataset(m, ev->test, 0, ev->nq, Xte);
}

/* Writes a checkpoint of an untrained (seeded) network in the trainer's format. */
/* linear: multinomial logistic regression on frozen features of the train split (test
 * transform, or the mean of --train-views train-transform views), scored on the test split;
 * one JSON line ("linear" event). */
static int cmd_linear(struct evald *ev)
{
    char err[1024];
    size_t C = ev->nclass;
    if (C < 2) {
        log_error("%s: the train split has %zu class%s; a linear probe needs at least two",
                  o.data, C, C == 1 ? "" : "es");
        return EXIT_FAIL;
    }
    size_t n = ev->n_train;
    if (o.train_limit && o.train_limit < n)
        n = (size_t)o.train_limit;
    size_t *per = calloc(C, sizeof *per);
    if (!per)
        return EXIT_FAIL;
    for (size_t i = 0; i < n; i++)
        per[ev->train_labels[i]]++;
    size_t present = 0;
    for (size_t c = 0; c < C; c++)
        present += per[c] > 0;
    for (size_t i = 0; i < ev->nq; i++)
        if (per[ev->test_labels[i]] == 0) {
            log_error("%s: test images of class \"%s\" have no training image among the %zu used; "
                      "a linear probe cannot predict a class it never saw", o.data,
                      dataset_class_name(ev->train, ev->test_labels[i]), n);
            free(per);
            return EXIT_FAIL;
        }
    free(per);
    if (present < 2) {
        log_error("%s: the %zu training images used are all of one class; a linear probe needs "
                  "at least two", o.data, n);
        return EXIT_FAIL;
    }
    struct feat_model m;
    double t0 = clock_seconds();
    if ((o.pixels ? feat_pixels_init(&m, o.size, o.batch, err, sizeof err)
                  : feat_model_init(&m, o.checkpoint, o.batch, err, sizeof err)) != 0) {
        log_error("%s", err);
        return EXIT_FAIL;
    }
    int pool = strcmp(o.layer, "pool") == 0;
    if (pool && !o.pixels)
        feat_use_pool(&m);
    int ret = EXIT_FAIL, d = m.low_dim;
    struct linear_model lm = { 0 };
    float *Xtr = malloc(n * (size_t)d * sizeof *Xtr);
    float *Xte = malloc((ev->nq ? ev->nq : 1) * (size_t)d * sizeof *Xte);
    double *pc = calloc(C, sizeof *pc);
    if (!Xtr || !Xte || !pc) {
        log_error("linear: %zu x %d features: out of memory", n + ev->nq, d);
        goto out;
    }
    log_info("linear: %s, %s features (%d), %zu train and %zu test images, %zu classes",
             o.pixels ? "raw pixels" : o.checkpoint, o.pixels ? "pixel" : o.layer, d, n, ev->nq, C);
    if (cmd_linear_features(ev, &m, n, Xtr, Xte) != 0)
        goto out;
    double t_feat = clock_seconds() - t0;
    if (o.lambda > 0)
        log_info("linear: features in %.1f s; fitting at lambda %g", t_feat, o.lambda);
    else
        log_info("linear: features in %.1f s; choosing lambda on a held-out fifth of train",
                 t_feat);
    struct linear_selection sel = { 0 };
    struct linear_fit_info info = { 0 };
    int rc;
    if (o.lambda > 0) {
        sel.lambda = o.lambda;
        rc = linear_fit(&lm, Xtr, ev->train_labels, n, d, (int)C, o.lambda, o.max_iter, o.tol, &info);
    } else {
        rc = linear_select(&lm, Xtr, ev->train_labels, n, d, (int)C, o.seed, o.max_iter, o.tol,
                           &sel, &info);
        if (rc != 0 && errno == EINVAL)
            log_error("linear: %zu training images are too few to hold out a fifth for choosing "
                      "lambda; give --lambda", n);
    }
    if (rc != 0) {
        if (errno == EINTR)
            log_error("linear: stopped by a signal during the fit; no result");
        else if (errno != EINVAL || o.lambda > 0)
            log_error("linear: fit failed: %s", strerror(errno));
        goto out;
    }
    double top1, top5;
    if (linear_accuracy(&lm, Xte, ev->test_labels, ev->nq, &top1, &top5, pc) != 0)
        goto out;
    double secs = clock_seconds() - t0;
    msgpack_packer *pk = event_begin(ev->pub, "linear", 21);
    mp_pack_kv_u64(pk, "step", m.step);
    mp_pack_kv_u64(pk, "epoch", m.epoch);
    mp_pack_kv_str(pk, "checkpoint", o.pixels ? "pixels" : o.checkpoint);
    mp_pack_kv_str(pk, "train_run", m.run);
    mp_pack_kv_str(pk, "model", m.model);
    mp_pack_kv_str(pk, "layer", o.pixels ? "pixels" : o.layer);
    mp_pack_kv_u64(pk, "dim", (uint64_t)d);
    mp_pack_kv_u64(pk, "train_views", (uint64_t)o.train_views);
    mp_pack_kv_double(pk, "lambda", sel.lambda);
    mp_pack_kv_str(pk, "lambda_from", o.lambda > 0 ? "flag" : "held-out");
    mp_pack_key(pk, "val_top1");
    if (o.lambda > 0) {
        msgpack_pack_nil(pk);
    } else {
        msgpack_pack_map(pk, LINEAR_GRID);
        for (int i = 0; i < LINEAR_GRID; i++) {
            char key[32];
            snprintf(key, sizeof key, "%g", linear_grid(i));
            mp_pack_kv_double(pk, key, sel.val_top1[i]);
        }
    }
    mp_pack_kv_double(pk, "top1", top1);
    mp_pack_kv_double(pk, "top5", top5);
    mp_pack_kv_u64(pk, "n_train", n);
    mp_pack_kv_u64(pk, "n_query", ev->nq);
    mp_pack_kv_u64(pk, "iters", (uint64_t)info.iters);
    mp_pack_key(pk, "converged");
    if (info.converged)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    mp_pack_kv_u64(pk, "bad_images", m.bad_images);
    mp_pack_kv_double(pk, "seconds_features", t_feat);
    mp_pack_kv_double(pk, "seconds", secs);
    mp_pack_key(pk, "per_class");
    msgpack_pack_map(pk, C);
    for (size_t c = 0; c < C; c++) {
        mp_pack_key(pk, dataset_class_name(ev->train, c));
        if (isnan(pc[c]))
            msgpack_pack_nil(pk);
        else
            msgpack_pack_double(pk, pc[c]);
    }
    if (event_end(ev->pub) != 0)
        log_warn("linear event not published");
    if (event_json_line(ev->pub, stdout) != 0) {
        log_error("cannot write the result to stdout: %s", strerror(errno));
        goto out;
    }
    if (o.lambda == 0 && (sel.lambda == linear_grid(0) || sel.lambda == linear_grid(LINEAR_GRID - 1)))
        log_warn("linear: the held-out choice is lambda %g, the end of the grid (%g..%g): the best "
                 "may lie beyond it; try --lambda", sel.lambda, linear_grid(0),
                 linear_grid(LINEAR_GRID - 1));
    if (!info.converged)
        log_warn("linear: L-BFGS stopped after %d iterations with the largest gradient entry %.3g "
                 "(--tol %g); raise --max-iter", info.iters, info.grad_max, o.tol);
    log_info("linear: top1 %.2f%% top5 %.2f%% (lambda %g, %d iterations, features %.1f s, total %.1f s)",
             100 * top1, 100 * top5, sel.lambda, info.iters, t_feat, secs);
    ret = EXIT_OK;
out:
    linear_model_free(&lm);
    free(Xtr);
    free(Xte);
    free(pc);
    feat_model_deinit(&m);
    return ret;
}

static int cmd_mkckpt(void)
{
    if (!o.out || strcmp(o.out, "-") == 0) {
        fprintf(stderr, "npid-evald mkckpt: give --out PATH\n");
        return EXIT_USAGE;
    }
    struct net_config nc = { o.model, o.low_dim, o.size, o.size, 1, o.seed, NET_INIT_HE, NET_STEM_CIFAR, 0 };
    struct net *n = net_new(&nc);
    if (!n) {
        log_error("mkckpt: cannot build %s", o.model);
        return EXIT_FAIL;
    }
    char config[512];
    snprintf(config, sizeof config,
             "{\"model\":\"%s\",\"low-dim\":%d,\"size\":%d,\"stem\":\"cifar\",\"aug\":\"%s\",\"seed\":%" PRIu64
             ",\"run\":\"mkckpt\"}", o.model, o.low_dim, o.size, o.aug, o.seed);
    struct ckpt c;
    memset(&c, 0, sizeof c);
    c.model = (struct ckpt_model){ "", (uint32_t)o.low_dim, (uint32_t)o.size, NET_STEM_CIFAR, 0 };
    snprintf(c.model.name, sizeof c.model.name, "%s", o.model);
    c.config = config;
    c.bank_path = "";
    c.step = o.step;
    c.z = 0;
    c.n_params = net_param_count(n);
    c.params = net_params(n);
    c.n_buffers = net_buffer_count(n);
    c.buffers = net_buffers(n);
    int rc = ckpt_save(o.out, &c);
    if (rc != 0)
        log_error("mkckpt: %s: %s", o.out, strerror(errno));
    else
        log_info("mkckpt: %s (%s, step %" PRIu64 ")", o.out, net_describe(n), o.step);
    net_destroy(&n);
    return rc == 0 ? EXIT_OK : EXIT_FAIL;
}

int main(int argc, char **argv)
{
    log_init("npid-evald");
    /* endpoint defaults follow NPID_PORT_BASE like the launcher's (bankd base, events base + 2) */
    static char bank_def[32], events_def[32];
    if (cfg_endpoint_default(opts, "bank", 0, "npid-evald", bank_def, sizeof bank_def) != 0 ||
        cfg_endpoint_default(opts, "events", 2, "npid-evald", events_def, sizeof events_def) != 0)
        return EXIT_USAGE;
    char **argv0 = blas_argv_copy(argc, argv); /* blas_setup after parsing (common/blas.h) */
    int npos = 0;
    int rc = cfg_parse("npid-evald", usage, opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    blas_setup(argc, argv0);
    free(argv0); /* blas_setup re-execs or returns: the copy is done with */
    if (parse_ks(o.k_list) != 0)
        return EXIT_USAGE;
    int lvl = log_level_parse(o.log_level);
    if (lvl < 0) {
        fprintf(stderr, "npid-evald: --log-level %s: expected debug, info, warn or error\n", o.log_level);
        return EXIT_USAGE;
    }
    log_set_level(lvl);
    const char *cmd = npos >= 1 ? argv[1] : "attach";
    int first = npos >= 1 ? 2 : 1;
    if (strcmp(cmd, "attach") && strcmp(cmd, "embed") && strcmp(cmd, "neighbours") &&
        strcmp(cmd, "neighbors") && strcmp(cmd, "mkckpt") && strcmp(cmd, "linear")) {
        fprintf(stderr, "npid-evald: unknown command \"%s\" (attach, embed, neighbours, linear, mkckpt)\n", cmd);
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "mkckpt") == 0)
        return cmd_mkckpt();
    if (strcmp(cmd, "neighbours") && strcmp(cmd, "neighbors") && npos >= 2) {
        fprintf(stderr, "npid-evald: unexpected argument \"%s\"\n", argv[2]);
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "embed") == 0 && o.files)
        return cmd_embed_files(); /* named images: no dataset */
    if (!o.data && !eval_dso.list) {
        fprintf(stderr, "npid-evald: --data ROOT is required\n");
        return EXIT_USAGE;
    }
    char dso_err[DATASET_ERR_LEN];
    if (dataset_opts_check(&eval_dso, dso_err, sizeof dso_err) != 0) {
        fprintf(stderr, "npid-evald: %s\n", dso_err);
        return EXIT_USAGE;
    }
    if (strcmp(o.against, "bank") && strcmp(o.against, "recomputed") && strcmp(o.against, "both")) {
        fprintf(stderr, "npid-evald: --against must be bank, recomputed or both\n");
        return EXIT_USAGE;
    }
    int is_linear = strcmp(cmd, "linear") == 0;
    if (is_linear) {
        if (!o.checkpoint == !o.pixels) {
            fprintf(stderr, "npid-evald linear: give --checkpoint PATH or --pixels (not both)\n");
            return EXIT_USAGE;
        }
        if (strcmp(o.layer, "embed") && strcmp(o.layer, "pool")) {
            fprintf(stderr, "npid-evald linear: --layer %s: expected embed or pool\n", o.layer);
            return EXIT_USAGE;
        }
    } else if (o.pixels) {
        if (strcmp(cmd, "attach") || !o.once || o.checkpoint) {
            fprintf(stderr, "npid-evald: --pixels goes with --once and without --checkpoint\n");
            return EXIT_USAGE;
        }
        if (cfg_find(opts, "against")->set_by == 0)
            o.against = "recomputed";
        if (strcmp(o.against, "recomputed")) {
            fprintf(stderr, "npid-evald: --pixels: raw pixels have no bank; --against recomputed\n");
            return EXIT_USAGE;
        }
        o.checkpoint = "pixels";
    }
    if (o.once && !o.checkpoint) {
        fprintf(stderr, "npid-evald: --once needs --checkpoint PATH\n");
        return EXIT_USAGE;
    }
    if (o.threads > 0)
        blas_set_threads(o.threads);
    sig_install();
    cfg_log(opts);
    log_info("OpenBLAS kernel %s", blas_corename());

    int is_attach = strcmp(cmd, "attach") == 0;
    int is_nb = !strcmp(cmd, "neighbours") || !strcmp(cmd, "neighbors");
    /* the bank's rows are stale; retrieval shows the network, unless --bank EP names a bank */
    if (is_nb && cfg_find(opts, "against")->set_by == 0)
        o.against = cfg_find(opts, "bank")->set_by == 2 ? "bank" : "recomputed";
    if (is_nb && strcmp(o.split, "train") != 0) {
        fprintf(stderr, "npid-evald neighbours: --split %s: neighbours are train images (the bank's "
                "rows or their recomputed features)\n", o.split);
        return EXIT_USAGE;
    }
    if (is_nb && !strcmp(o.against, "both")) {
        fprintf(stderr, "npid-evald neighbours: --against bank or recomputed\n");
        return EXIT_USAGE;
    }
    struct evald ev;
    /* neighbours of named images need no test split; --queries takes test images */
    int need = is_attach || is_linear ? EV_TEST | EV_LABELS
             : is_nb && !o.files ? (npos >= 2 ? EV_TEST_IF_ANY : EV_TEST) : 0;
    if (evald_open(&ev, need) != 0) {
        evald_close(&ev);
        return EXIT_FAIL;
    }
    int ret;
    if (is_attach) {
        ev.pub = event_pub_new(o.pub_ep, "evald", o.allow_remote);
        if (!ev.pub) {
            evald_close(&ev);
            return EXIT_FAIL;
        }
        ret = o.once ? (evald_eval(&ev, o.checkpoint) == 0 ? EXIT_OK : EXIT_FAIL) : cmd_attach(&ev);
    } else if (is_nb) {
        ret = cmd_neighbours(&ev, npos - 1, argv + first);
    } else if (is_linear) {
        ev.pub = event_pub_new(o.pub_ep, "evald", o.allow_remote);
        ret = ev.pub ? cmd_linear(&ev) : EXIT_FAIL;
    } else {
        ret = cmd_embed(&ev);
    }
    evald_close(&ev);
    msg_ctx_term();
    return ret;
}
