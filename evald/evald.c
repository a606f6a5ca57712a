/* The state every npid-evald evaluation shares and the start-up checks: see evald/evald.h. */
#include "evald/evald.h"

#include "common/bankc.h"
#include "common/blas.h"
#include "common/curve.h"
#include "common/event.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/sig.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int evald_no_args(int nargs, char **args)
{
    if (nargs < 1)
        return 0;
    fprintf(stderr, "npid-evald: unexpected argument \"%s\"\n", args[0]);
    return EXIT_USAGE;
}

int evald_check_data(const struct evald_opts *o)
{
    if (!o->data && !o->dso.list) {
        fprintf(stderr, "npid-evald: --data ROOT is required\n");
        return EXIT_USAGE;
    }
    char err[DATASET_ERR_LEN];
    if (dataset_opts_check(&o->dso, err, sizeof err) != 0) {
        fprintf(stderr, "npid-evald: %s\n", err);
        return EXIT_USAGE;
    }
    return 0;
}

int evald_check_against(const struct evald_opts *o)
{
    const char *a = o->against;
    if (strcmp(a, "bank") && strcmp(a, "recomputed") && strcmp(a, "both")) {
        fprintf(stderr, "npid-evald: --against must be bank, recomputed or both\n");
        return EXIT_USAGE;
    }
    return 0;
}

void evald_start(const struct evald_opts *o, const struct cfg_opt *opts)
{
    if (o->threads > 0)
        blas_set_threads(o->threads);
    sig_install();
    cfg_log(opts);
    log_info("OpenBLAS kernel %s", blas_corename());
}

/* The test split and its labels, when need asks for it. 0 or -1 (logged). */
static int evald_open_test(struct evald *ev, int need)
{
    const struct evald_opts *o = ev->o;
    char err[DATASET_ERR_LEN];
    if (!(need & (EV_TEST | EV_TEST_IF_ANY)) ||
        ((need & EV_TEST_IF_ANY) && !dataset_split_exists(o->data, "test", &o->dso)))
        return 0;
    ev->test = dataset_open_opts(o->data, "test", &o->dso, err, sizeof err);
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
    if (o->limit && o->limit < ev->nq)
        ev->nq = (size_t)o->limit;
    ev->test_labels = malloc((ev->nq ? ev->nq : 1) * sizeof *ev->test_labels);
    if (!ev->test_labels)
        return -1;
    for (size_t i = 0; i < ev->nq; i++)
        ev->test_labels[i] = dataset_label(ev->test, i);
    return 0;
}

int evald_open(struct evald *ev, const struct evald_opts *o, int need)
{
    char err[DATASET_ERR_LEN];
    memset(ev, 0, sizeof *ev);
    ev->o = o;
    ev->train = dataset_open_opts(o->data, "train", &o->dso, err, sizeof err);
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
    return evald_open_test(ev, need);
}

void evald_close(struct evald *ev)
{
    dataset_destroy(&ev->train);
    dataset_destroy(&ev->test);
    free(ev->train_labels);
    free(ev->test_labels);
    bankc_destroy(&ev->bank);
    event_pub_destroy(&ev->pub);
    curve_zap_destroy(&ev->zap);
}

int evald_open_results(struct evald *ev, const struct evald_opts *o, struct cfg_opt *opts)
{
    int curve = o->curve_allow && *o->curve_allow;
    memset(ev, 0, sizeof *ev);
    if (curve && (!o->pub_ep || !*o->pub_ep || !o->curve_key || !*o->curve_key)) {
        log_error("--curve-allow needs --pub (the socket it admits subscribers to) and "
                  "--curve-key (the key pair --pub serves with)");
        return EXIT_USAGE;
    }
    evald_start(o, opts);
    if (evald_open(ev, o, EV_TEST | EV_LABELS) != 0)
        return EXIT_FAIL;
    const struct curve_sock *cs = NULL;
    if (curve) {
        char err[PATH_MAX + 300];
        if (curve_sock_server(&ev->pub_curve, o->curve_key, "evald-pub", err, sizeof err)) {
            log_error("--pub: --curve-key: %s", err);
            return EXIT_FAIL;
        }
        /* the ZAP handler runs before --pub binds: no subscriber is admitted unchecked */
        ev->zap = curve_zap_new(msg_ctx(), o->curve_allow, err, sizeof err);
        if (!ev->zap) {
            log_error("--pub: --curve-allow: %s", err);
            return EXIT_FAIL;
        }
        cs = &ev->pub_curve;
        log_info("--pub: CURVE on: public key %s, %zu subscriber keys allowed (%s)",
                 ev->pub_curve.own.pub, curve_zap_allowed_keys(ev->zap), o->curve_allow);
    }
    ev->pub = event_pub_new_curve(o->pub_ep, "evald", o->allow_remote, cs);
    return ev->pub ? EXIT_OK : EXIT_FAIL;
}

struct bankc *evald_bank(struct evald *ev)
{
    const struct evald_opts *o = ev->o;
    if (!ev->bank) {
        static struct curve_sock cs;
        char cerr[4400];
        /* --curve-key may be for the events only: CURVE to bankd with --bank-server-key */
        int con = !o->bank_server_key[0] ? 0 :
                  curve_sock_client_flags(&cs, o->curve_key, o->bank_server_key,
                                          "bank-server-key", cerr, sizeof cerr);
        if (con < 0) {
            log_error("bank %s: %s", o->bank_ep, cerr);
            return NULL;
        }
        struct msg_opts mo = MSG_OPTS_DEFAULT;
        mo.curve = con ? &cs : NULL;
        ev->bank = bankc_new_opts(o->bank_ep, NULL, (int)(o->bank_timeout * 1000), 2, &mo);
        if (!ev->bank)
            log_error("bank %s: cannot create a client: %s", o->bank_ep, strerror(errno));
        else
            bankc_set_stop(ev->bank, &sig_stop);
    }
    return ev->bank;
}

int evald_add_bank(struct evald *ev, struct knn *kn, size_t dim, uint64_t *bank_step)
{
    const struct evald_opts *o = ev->o;
    struct bankc *bc = evald_bank(ev);
    struct bankc_info info;
    if (!bc)
        return -1;
    if (bankc_info(bc, &info) != 0) {
        log_error("bank %s: info failed: %s", o->bank_ep, bankc_error(bc));
        return -1;
    }
    if (info.rows != dataset_count(ev->train) || info.dim != dim) {
        log_error("bank %s holds %" PRIu64 " x %" PRIu64 ", but the train split has %zu images "
                  "and the network %zu dimensions", o->bank_ep, info.rows, info.dim,
                  dataset_count(ev->train), dim);
        return -1;
    }
    if (info.has_manifest && strcmp(info.manifest, dataset_manifest(ev->train)) != 0) {
        log_error("bank %s belongs to another dataset (manifest %.12s..., --data has %.12s...)",
                  o->bank_ep, info.manifest, dataset_manifest(ev->train));
        return -1;
    }
    *bank_step = info.step;
    size_t chunk = (size_t)o->bank_chunk;
    float *rows = malloc(chunk * dim * sizeof *rows);
    if (!rows)
        return -1;
    int rc = 0;
    for (size_t s = 0; s < ev->n_train && rc == 0; s += chunk) {
        size_t c = ev->n_train - s < chunk ? ev->n_train - s : chunk;
        if (bankc_get(bc, s, c, rows) != 0) {
            log_error("bank %s: get %zu+%zu failed: %s", o->bank_ep, s, c, bankc_error(bc));
            rc = -1;
        } else if (knn_add(kn, rows, s, c) != 0) {
            rc = -1;
        }
    }
    free(rows);
    return rc;
}

int evald_add_recomputed(struct evald *ev, struct feat_model *m, struct knn *kn)
{
    size_t n = ev->n_train, chunk = 1024;
    if (ev->o->train_limit && ev->o->train_limit < n)
        n = (size_t)ev->o->train_limit;
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
