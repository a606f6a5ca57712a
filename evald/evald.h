/* What the npid-evald commands share: the parsed options, and the state of an evaluation
 * (the dataset splits with their labels, the bank client, the results socket) with its
 * start-up checks (evald/evald.c). Each command's table of options is in evald/main.c and
 * fills only the fields that command reads; each command runs in evald/cmd_<name>.c. */
#ifndef NPID_EVALD_EVALD_H
#define NPID_EVALD_EVALD_H
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "common/curve.h"
#include "common/dataset.h"
#include "evald/features.h"
#include "evald/knn.h"

struct bankc;
struct event_pub;

enum { EVALD_MAX_KS = 16 };

/* The options, each field filled by the tables of the commands that read it. */
struct evald_opts {
    /* every command (limit: attach, embed, linear;
     * train_limit: attach, neighbours, linear) */
    const char *data, *checkpoint, *log_level;
    struct dataset_opts dso; /* --layout, --train-splits, --list, --test-list, --labels */
    int threads, batch;
    uint64_t limit, train_limit;
    /* the bank (attach, embed, neighbours): --curve-key with --bank-server-key talks to a
     * CURVE bankd, with --events-server-key subscribes to a CURVE trainer ("": none) */
    const char *bank_ep, *curve_key, *bank_server_key;
    uint64_t bank_chunk;
    double bank_timeout;
    /* the results socket (attach, linear) */
    const char *pub_ep, *curve_allow; /* --curve-allow: --pub is a CURVE server (curve_key) */
    int allow_remote;
    /* attach and --once; pixels and size also linear */
    const char *events_ep, *events_server_key, *against, *k_list;
    int once, pixels, size, max_evals, every, exit_on_end;
    double sigma;
    size_t ks[EVALD_MAX_KS], n_ks; /* --k parsed: ascending, distinct */
    /* embed, neighbours */
    const char *format, *out, *split, *files, *paths_out, *grid;
    int queries, top, cell;
    /* linear */
    const char *layer;
    double lambda, tol;
    int max_iter, train_views;
    uint64_t seed;
};

/* The commands. o is filled by cfg_parse with opts, the command's table; args are the nargs
 * positional arguments after the command's name. Each returns the exit status. */
int evald_attach_main(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args);
int evald_embed_main(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args);
int evald_neighbours_main(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args);
int evald_linear_main(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args);

/* Start-up checks shared by the commands; each returns 0, or EXIT_USAGE after a one-line
 * reason on stderr. evald_no_args: no positional argument; evald_check_data: --data (or
 * --list) given and the dataset options well-formed; evald_check_against: bank, recomputed
 * or both. */
int evald_no_args(int nargs, char **args);
int evald_check_data(const struct evald_opts *o);
int evald_check_against(const struct evald_opts *o);
/* Applies --threads, installs the signal handlers and logs the configuration (opts) and the
 * OpenBLAS kernel: the start of a command once its flags are checked. */
void evald_start(const struct evald_opts *o, const struct cfg_opt *opts);

/* What every evaluation needs besides the checkpoint: the splits, the query labels. */
struct evald {
    const struct evald_opts *o;
    struct dataset *train, *test;
    uint32_t *train_labels;    /* (n_train) */
    uint32_t *test_labels;     /* (nq) */
    size_t n_train, nq, nclass;
    struct bankc *bank;
    struct event_pub *pub;
    struct curve_sock pub_curve; /* --pub's CURVE server options (with zap) */
    struct curve_zap *zap;    /* admits --curve-allow's subscribers; NULL: --pub in clear */
    uint64_t evals;
};

/* What evald_open opens: the test split (required, or when there is one), and whether the
 * evaluation needs labels (kNN, linear: then n_train is the labelled train images, the first
 * dataset_labelled rows of the bank; otherwise every train image). */
enum { EV_TEST = 1, EV_TEST_IF_ANY = 2, EV_LABELS = 4 };

/* Opens the splits of o->data as need asks (--limit caps nq). 0, or -1 (logged); either way
 * close with evald_close, which accepts a partly opened ev. */
int evald_open(struct evald *ev, const struct evald_opts *o, int need);
void evald_close(struct evald *ev);
/* What the commands that publish results (attach, linear) open: the --curve-allow flags
 * checked first (before any work), evald_start, the labelled test and train splits, then
 * ev->pub for --pub (none given: no socket, results still encoded for stdout), with
 * --curve-allow a CURVE server with --curve-key's pair that admits only the allow-list's
 * subscribers. EXIT_OK, EXIT_USAGE or EXIT_FAIL (logged); close ev with evald_close either
 * way. */
int evald_open_results(struct evald *ev, const struct evald_opts *o, struct cfg_opt *opts);
/* The bank client of --bank, created on first use (owned by ev). NULL when it cannot be
 * created (logged). */
struct bankc *evald_bank(struct evald *ev);
/* Streams the bank's rows 0..n_train-1 into kn after checking that the bank matches the train
 * split and dim; *bank_step receives the bank's step. 0, or -1 (logged). */
int evald_add_bank(struct evald *ev, struct knn *kn, size_t dim, uint64_t *bank_step);
/* Adds the features of train images 0..n-1 (n: n_train, at most --train-limit) computed with
 * m into kn. 0, or -1. */
int evald_add_recomputed(struct evald *ev, struct feat_model *m, struct knn *kn);

#endif
