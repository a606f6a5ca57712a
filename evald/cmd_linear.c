/* npid-evald linear: the linear probe. Multinomial logistic regression (evald/linear.h) on
 * frozen features of the train split (the test transform, or the mean of --train-views
 * train-transform views), lambda given or chosen on a held-out fifth of train, scored on the
 * test split; one JSON line on stdout, the same map as a "linear" event on --pub. */
#include "evald/evald.h"

#include "common/clock.h"
#include "common/event.h"
#include "common/log.h"
#include "common/mp.h"
#include "evald/linear.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A probe's result, for the line and the event. */
struct lin_result {
    struct linear_selection sel;
    struct linear_fit_info info;
    double top1, top5, t_feat, secs;
    double *per_class;         /* (nclass) test top-1 per class, NaN without test images */
};

/* Refuses train images 0..n-1 that cannot train a probe: one class only, or a class of the
 * test split among none of them. 0, or -1 (logged). */
static int lin_check_classes(const struct evald *ev, size_t n)
{
    const char *data = ev->o->data;
    size_t C = ev->nclass;
    size_t *per = calloc(C, sizeof *per);
    if (!per)
        return -1;
    for (size_t i = 0; i < n; i++)
        per[ev->train_labels[i]]++;
    size_t present = 0;
    for (size_t c = 0; c < C; c++)
        present += per[c] > 0;
    for (size_t i = 0; i < ev->nq; i++) {
        if (per[ev->test_labels[i]] == 0) {
            log_error("%s: test images of class \"%s\" have no training image among the %zu "
                      "used; a linear probe cannot predict a class it never saw", data,
                      dataset_class_name(ev->train, ev->test_labels[i]), n);
            free(per);
            return -1;
        }
    }
    free(per);
    if (present < 2) {
        log_error("%s: the %zu training images used are all of one class; a linear probe needs "
                  "at least two", data, n);
        return -1;
    }
    return 0;
}

/* The probe's features: train rows 0..n-1 into Xtr (n, d), each the mean of --train-views
 * views of the train transform, or with --train-views 1 one test-transform view; the test
 * split into Xte (nq, d), one test-transform view. 0, or -1 (logged; a signal: EINTR). */
static int lin_features(struct evald *ev, struct feat_model *m, size_t n, float *Xtr, float *Xte)
{
    const struct evald_opts *o = ev->o;
    char err[1024];
    if (o->train_views == 1)
        return feat_dataset(m, ev->train, 0, n, Xtr) != 0 ||
               feat_dataset(m, ev->test, 0, ev->nq, Xte) != 0 ? -1 : 0;
    if (feat_train_aug_init(m, err, sizeof err) != 0) {
        log_error("linear: --train-views %d: %s", o->train_views, err);
        return -1;
    }
    const struct augment_params *ap = &m->train_ap;
    log_info("linear: train features the mean of %d views of the %s train transform: crop "
             "%g-%g, jitter %g/%g/%g/%g, gray %g, flip %s, blur %g", o->train_views, m->aug_name,
             ap->scale_min, ap->scale_max, ap->brightness, ap->contrast, ap->saturation, ap->hue,
             ap->gray_p, ap->flip ? "on" : "off", ap->blur_p);
    if (feat_dataset_views(m, ev->train, 0, n, o->train_views, o->seed, Xtr) != 0) {
        if (errno != EINTR)
            log_error("linear: train views: %s", strerror(errno));
        return -1;
    }
    return feat_dataset(m, ev->test, 0, ev->nq, Xte);
}

/* Fits lm on Xtr (n, d) at --lambda, or choosing lambda on held-out train rows. 0, or -1
 * (logged). */
static int lin_fit(const struct evald *ev, struct linear_model *lm, const float *Xtr, size_t n,
                   int d, struct lin_result *r)
{
    const struct evald_opts *o = ev->o;
    int C = (int)ev->nclass, rc;
    if (o->lambda > 0) {
        r->sel.lambda = o->lambda;
        rc = linear_fit(lm, Xtr, ev->train_labels, n, d, C, o->lambda, o->max_iter, o->tol,
                        &r->info);
    } else {
        rc = linear_select(lm, Xtr, ev->train_labels, n, d, C, o->seed, o->max_iter, o->tol,
                           &r->sel, &r->info);
        if (rc != 0 && errno == EINVAL)
            log_error("linear: %zu training images are too few to hold out a fifth for choosing "
                      "lambda; give --lambda", n);
    }
    if (rc != 0) {
        if (errno == EINTR)
            log_error("linear: stopped by a signal during the fit; no result");
        else if (errno != EINVAL || o->lambda > 0)
            log_error("linear: fit failed: %s", strerror(errno));
    }
    return rc;
}

/* Publishes and prints the result of m's features (d dimensions, n train images). 0, or -1
 * when stdout cannot take it (logged). */
static int lin_emit(struct evald *ev, const struct feat_model *m, int d, size_t n,
                    const struct lin_result *r)
{
    const struct evald_opts *o = ev->o;
    size_t C = ev->nclass;
    msgpack_packer *pk = event_begin(ev->pub, "linear", 21);
    mp_pack_kv_u64(pk, "step", m->step);
    mp_pack_kv_u64(pk, "epoch", m->epoch);
    mp_pack_kv_str(pk, "checkpoint", o->pixels ? "pixels" : o->checkpoint);
    mp_pack_kv_str(pk, "train_run", m->run);
    mp_pack_kv_str(pk, "model", m->model);
    mp_pack_kv_str(pk, "layer", o->pixels ? "pixels" : o->layer);
    mp_pack_kv_u64(pk, "dim", (uint64_t)d);
    mp_pack_kv_u64(pk, "train_views", (uint64_t)o->train_views);
    mp_pack_kv_double(pk, "lambda", r->sel.lambda);
    mp_pack_kv_str(pk, "lambda_from", o->lambda > 0 ? "flag" : "held-out");
    mp_pack_key(pk, "val_top1");
    if (o->lambda > 0) {
        msgpack_pack_nil(pk);
    } else {
        msgpack_pack_map(pk, LINEAR_GRID);
        for (int i = 0; i < LINEAR_GRID; i++) {
            char key[32];
            snprintf(key, sizeof key, "%g", linear_grid(i));
            mp_pack_kv_double(pk, key, r->sel.val_top1[i]);
        }
    }
    mp_pack_kv_double(pk, "top1", r->top1);
    mp_pack_kv_double(pk, "top5", r->top5);
    mp_pack_kv_u64(pk, "n_train", n);
    mp_pack_kv_u64(pk, "n_query", ev->nq);
    mp_pack_kv_u64(pk, "iters", (uint64_t)r->info.iters);
    mp_pack_key(pk, "converged");
    if (r->info.converged)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    mp_pack_kv_u64(pk, "bad_images", m->bad_images);
    mp_pack_kv_double(pk, "seconds_features", r->t_feat);
    mp_pack_kv_double(pk, "seconds", r->secs);
    mp_pack_key(pk, "per_class");
    msgpack_pack_map(pk, C);
    for (size_t c = 0; c < C; c++) {
        mp_pack_key(pk, dataset_class_name(ev->train, c));
        if (isnan(r->per_class[c]))
            msgpack_pack_nil(pk);
        else
            msgpack_pack_double(pk, r->per_class[c]);
    }
    if (event_end(ev->pub) != 0)
        log_warn("linear event not published");
    if (event_json_line(ev->pub, stdout) != 0) {
        log_error("cannot write the result to stdout: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The warnings and the summary of a result that was emitted. */
static void lin_report(const struct evald_opts *o, const struct lin_result *r)
{
    double lo = linear_grid(0), hi = linear_grid(LINEAR_GRID - 1);
    if (o->lambda == 0 && (r->sel.lambda == lo || r->sel.lambda == hi))
        log_warn("linear: the held-out choice is lambda %g, the end of the grid (%g..%g): the "
                 "best may lie beyond it; try --lambda", r->sel.lambda, lo, hi);
    if (!r->info.converged)
        log_warn("linear: L-BFGS stopped after %d iterations with the largest gradient entry "
                 "%.3g (--tol %g); raise --max-iter", r->info.iters, r->info.grad_max, o->tol);
    log_info("linear: top1 %.2f%% top5 %.2f%% (lambda %g, %d iterations, features %.1f s, "
             "total %.1f s)", 100 * r->top1, 100 * r->top5, r->sel.lambda, r->info.iters,
             r->t_feat, r->secs);
}

/* The probe of m's features on train images 0..n-1, m opened at t0. EXIT_OK or EXIT_FAIL. */
static int lin_probe(struct evald *ev, struct feat_model *m, size_t n, double t0)
{
    const struct evald_opts *o = ev->o;
    int ret = EXIT_FAIL, d = m->low_dim;
    struct linear_model lm = { 0 };
    struct lin_result r = { 0 };
    float *Xtr = malloc(n * (size_t)d * sizeof *Xtr);
    float *Xte = malloc((ev->nq ? ev->nq : 1) * (size_t)d * sizeof *Xte);
    r.per_class = calloc(ev->nclass, sizeof *r.per_class);
    if (!Xtr || !Xte || !r.per_class) {
        log_error("linear: %zu x %d features: out of memory", n + ev->nq, d);
        goto out;
    }
    log_info("linear: %s, %s features (%d), %zu train and %zu test images, %zu classes",
             o->pixels ? "raw pixels" : o->checkpoint, o->pixels ? "pixel" : o->layer, d, n,
             ev->nq, ev->nclass);
    if (lin_features(ev, m, n, Xtr, Xte) != 0)
        goto out;
    r.t_feat = clock_seconds() - t0;
    if (o->lambda > 0)
        log_info("linear: features in %.1f s; fitting at lambda %g", r.t_feat, o->lambda);
    else
        log_info("linear: features in %.1f s; choosing lambda on a held-out fifth of train",
                 r.t_feat);
    if (lin_fit(ev, &lm, Xtr, n, d, &r) != 0 ||
        linear_accuracy(&lm, Xte, ev->test_labels, ev->nq, &r.top1, &r.top5, r.per_class) != 0)
        goto out;
    r.secs = clock_seconds() - t0;
    if (lin_emit(ev, m, d, n, &r) != 0)
        goto out;
    lin_report(o, &r);
    ret = EXIT_OK;
out:
    linear_model_free(&lm);
    free(Xtr);
    free(Xte);
    free(r.per_class);
    return ret;
}

/* The probe, once the splits are open. */
static int lin_run(struct evald *ev)
{
    const struct evald_opts *o = ev->o;
    char err[1024];
    size_t C = ev->nclass;
    if (C < 2) {
        log_error("%s: the train split has %zu class%s; a linear probe needs at least two",
                  o->data, C, C == 1 ? "" : "es");
        return EXIT_FAIL;
    }
    size_t n = ev->n_train;
    if (o->train_limit && o->train_limit < n)
        n = (size_t)o->train_limit;
    if (lin_check_classes(ev, n) != 0)
        return EXIT_FAIL;
    struct feat_model m;
    double t0 = clock_seconds();
    if ((o->pixels ? feat_pixels_init(&m, o->size, o->batch, err, sizeof err)
                   : feat_model_init(&m, o->checkpoint, o->batch, err, sizeof err)) != 0) {
        log_error("%s", err);
        return EXIT_FAIL;
    }
    if (strcmp(o->layer, "pool") == 0 && !o->pixels)
        feat_use_pool(&m);
    int ret = lin_probe(ev, &m, n, t0);
    feat_model_deinit(&m);
    return ret;
}

int evald_linear_main(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args)
{
    if (evald_no_args(nargs, args) != 0 || evald_check_data(o) != 0)
        return EXIT_USAGE;
    if (!o->checkpoint == !o->pixels) {
        fprintf(stderr, "npid-evald linear: give --checkpoint PATH or --pixels (not both)\n");
        return EXIT_USAGE;
    }
    if (strcmp(o->layer, "embed") && strcmp(o->layer, "pool")) {
        fprintf(stderr, "npid-evald linear: --layer %s: expected embed or pool\n", o->layer);
        return EXIT_USAGE;
    }
    struct evald ev;
    int ret = evald_open_results(&ev, o, opts);
    if (ret == 0)
        ret = lin_run(&ev);
    evald_close(&ev);
    return ret;
}
