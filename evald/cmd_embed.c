/* npid-evald embed: one row per image to --out in --format (evald/export.h; docs/formats.md):
 * the features of a split computed with --checkpoint's network, the bank's rows (no
 * --checkpoint), or the features of the images a --files list names (no dataset). */
#include "evald/evald.h"

#include "common/bankc.h"
#include "common/log.h"
#include "evald/export.h"
#include "evald/files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --format and --out checked together: the format, or -1 after a usage message. */
static int embed_format(const struct evald_opts *o)
{
    int fmt = export_format_parse(o->format);
    if (fmt < 0) {
        fprintf(stderr, "npid-evald embed: unknown --format %s (npy, fvecs, jsonl, tsv)\n",
                o->format);
        return -1;
    }
    if (fmt == EXPORT_TSV && strcmp(o->out, "-") == 0) {
        fprintf(stderr, "npid-evald embed: --format tsv writes a directory: give --out DIR\n");
        return -1;
    }
    return fmt;
}

/* embed --files: the images of a list, no dataset (evald/files.h). */
static int embed_files(const struct evald_opts *o, const struct cfg_opt *opts)
{
    int fmt = embed_format(o);
    if (fmt < 0)
        return EXIT_USAGE;
    if (!o->checkpoint) {
        fprintf(stderr, "npid-evald embed --files: give --checkpoint P (the bank only holds "
                "dataset images)\n");
        return EXIT_USAGE;
    }
    /* npy and fvecs carry no paths: a file output gets its row -> path list beside it */
    char paths[4096];
    const char *po = o->paths_out;
    if (!po && strcmp(o->out, "-") != 0 && (fmt == EXPORT_NPY || fmt == EXPORT_FVECS)) {
        if (snprintf(paths, sizeof paths, "%s.paths", o->out) >= (int)sizeof paths) {
            fprintf(stderr, "npid-evald embed: --out %s: path too long\n", o->out);
            return EXIT_USAGE;
        }
        po = paths;
    }
    evald_start(o, opts);
    char err[1024];
    struct feat_model m;
    if (feat_model_init(&m, o->checkpoint, 1, err, sizeof err) != 0) {
        log_error("%s", err);
        return EXIT_FAIL;
    }
    int ret = files_embed(&m, o->files, (enum export_format)fmt, o->out, po);
    feat_model_deinit(&m);
    return ret;
}

/* What embed writes: the bank's rows, or the features of ds computed with m. */
struct embed_src {
    int from_bank;
    struct feat_model m;       /* zeroed when from_bank */
    struct dataset *ds;        /* the split named by --split (ev's train split, or owned) */
    size_t n, d;               /* rows (at most --limit), dimensions */
};

/* Opens the source: EXIT_OK, or EXIT_FAIL (logged) with nothing to release but s->m. */
static int embed_open(struct evald *ev, struct embed_src *s)
{
    const struct evald_opts *o = ev->o;
    char err[1024];
    memset(s, 0, sizeof *s);
    s->from_bank = o->checkpoint == NULL;
    s->ds = ev->train;
    if (s->from_bank) {
        struct bankc_info info;
        struct bankc *bc = evald_bank(ev);
        if (!bc || bankc_info(bc, &info) != 0) {
            log_error("bank %s: info failed: %s", o->bank_ep, bc ? bankc_error(bc) : "no client");
            return EXIT_FAIL;
        }
        s->n = (size_t)info.rows;
        s->d = (size_t)info.dim;
        if (s->n != ev->n_train) {
            log_error("bank %s has %zu rows but the train split %zu images: other data?",
                      o->bank_ep, s->n, ev->n_train);
            return EXIT_FAIL;
        }
    } else {
        if (feat_model_init(&s->m, o->checkpoint, o->batch, err, sizeof err) != 0) {
            log_error("%s", err);
            return EXIT_FAIL;
        }
        if (strcmp(o->split, "test") == 0) {
            s->ds = dataset_open_opts(o->data, "test", &o->dso, err, sizeof err);
            if (!s->ds) {
                log_error("%s", err);
                s->ds = ev->train;
                return EXIT_FAIL;
            }
        }
        s->n = dataset_count(s->ds);
        s->d = (size_t)s->m.low_dim;
    }
    if (o->limit && o->limit < s->n)
        s->n = (size_t)o->limit;
    return EXIT_OK;
}

/* Writes the source's rows, chunk by chunk, to --out. EXIT_OK or EXIT_FAIL (logged). */
static int embed_write(struct evald *ev, struct embed_src *s, int fmt)
{
    const struct evald_opts *o = ev->o;
    int ret = EXIT_FAIL;
    size_t n = s->n, d = s->d, chunk = s->from_bank ? (size_t)o->bank_chunk : 1024;
    float *f = malloc(chunk * d * sizeof *f);
    struct export *ex = export_new((enum export_format)fmt, o->out, n, d);
    if (!ex) {
        log_error("embed: cannot write %s: %s", o->out, strerror(errno));
        goto out;
    }
    if (!f)
        goto out;
    for (size_t r = 0; r < n; r += chunk) {
        size_t c = n - r < chunk ? n - r : chunk;
        if (s->from_bank ? bankc_get(evald_bank(ev), r, c, f)
                         : feat_dataset(&s->m, s->ds, r, c, f)) {
            log_error("embed: rows %zu+%zu: %s", r, c,
                      s->from_bank ? bankc_error(evald_bank(ev)) : strerror(errno));
            goto out;
        }
        for (size_t i = 0; i < c; i++) {
            uint32_t lab = dataset_label(s->ds, r + i);
            if (export_row(ex, r + i, f + i * d, lab, dataset_class_name(s->ds, lab),
                           dataset_path(s->ds, r + i)) != 0) {
                log_error("embed: row %zu to %s: %s", r + i, o->out, errno == EINVAL
                          ? "non-finite value (JSON cannot carry it)" : strerror(errno));
                goto out;
            }
        }
    }
    if (export_finish(ex) != 0) {
        log_error("embed: finishing %s: %s", o->out, strerror(errno));
        goto out;
    }
    log_info("embed: %zu x %zu %s from %s to %s", n, d, export_format_name((enum export_format)fmt),
             s->from_bank ? o->bank_ep : o->checkpoint, o->out);
    ret = EXIT_OK;
out:
    export_destroy(&ex);
    free(f);
    return ret;
}

/* embed of a split or the bank, once the splits are open. */
static int embed_dataset(struct evald *ev)
{
    const struct evald_opts *o = ev->o;
    int fmt = embed_format(o);
    if (fmt < 0)
        return EXIT_USAGE;
    if (o->checkpoint && strcmp(o->split, "train") != 0 && strcmp(o->split, "test") != 0) {
        fprintf(stderr, "npid-evald embed: --split must be train or test\n");
        return EXIT_USAGE;
    }
    struct embed_src s;
    int ret = embed_open(ev, &s);
    if (ret == EXIT_OK)
        ret = embed_write(ev, &s, fmt);
    if (s.ds != ev->train)
        dataset_destroy(&s.ds);
    feat_model_deinit(&s.m);
    return ret;
}

int evald_embed_main(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args)
{
    if (evald_no_args(nargs, args) != 0)
        return EXIT_USAGE;
    if (o->files)
        return embed_files(o, opts); /* named images: no dataset */
    if (evald_check_data(o) != 0)
        return EXIT_USAGE;
    evald_start(o, opts);
    struct evald ev;
    if (evald_open(&ev, o, 0) != 0) {
        evald_close(&ev);
        return EXIT_FAIL;
    }
    int ret = embed_dataset(&ev);
    evald_close(&ev);
    return ret;
}
