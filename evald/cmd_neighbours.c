/* npid-evald neighbours: the --top nearest train images of each query image (a file, test:N,
 * train:N, the images a --files list names, or --queries test images spread over the split),
 * among the bank's rows or the train features recomputed with the checkpoint's network; one
 * JSON line per query on stdout, and with --grid a retrieval grid JPEG (a row per query: the
 * query, then its neighbours framed by whether their class matches). */
#include "evald/evald.h"

#include "common/json.h"
#include "common/log.h"
#include "evald/export.h"
#include "evald/files.h"
#include "evald/grid.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses "test:N" / "train:N"; returns 1 with *ds and *idx set, 0 when s is a file path, -1 bad. */
static int nb_image_ref(struct evald *ev, const char *s, struct dataset **ds, size_t *idx)
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

/* Decodes a query image (file or dataset reference; with as_file always a file) into *img
 * with m's decoder, as feat_dataset decodes (feat_scale); img->pix is valid until the decoder
 * is used again. On -1 the reason (logged) is also copied to why when given. */
static int nb_load_image(struct evald *ev, struct feat_model *m, const char *s, int as_file,
                         struct jpeg_image *img, uint32_t *label, char *why, size_t why_len)
{
    char err[DATASET_ERR_LEN];
    struct dataset *ds = NULL;
    size_t idx = 0;
    int ref = as_file ? 0 : nb_image_ref(ev, s, &ds, &idx);
    if (why && why_len)
        snprintf(why, why_len, "out of memory");
    *label = EXPORT_NO_LABEL;
    if (ref < 0) {
        log_error("%s: no such dataset image", s);
        return -1;
    }
    if (ref == 1) {
        if (dataset_decode_pick(ds, idx, m->dec, feat_scale, m, img, err, sizeof err) != 0) {
            log_error("%s", err);
            if (why && why_len)
                snprintf(why, why_len, "%s", err);
            return -1;
        }
        *label = dataset_label(ds, idx);
    } else if (files_decode(m, s, img, err, sizeof err) != 0) {
        log_error("%s: %s", s, err);
        if (why && why_len)
            snprintf(why, why_len, "%s", err);
        return -1;
    }
    return 0;
}

/* The queries of one search: their features and, for the grid, their pixels. */
struct nb_queries {
    int n, nok;          /* queries, and those that could be read */
    float *q;            /* (n, d) features; one that failed is zeros, searched, never printed */
    uint8_t **rgb;       /* (n) decoded images, kept only with --grid */
    uint32_t *w, *h;     /* (n) their sizes */
    uint32_t *label;     /* (n) dataset label, EXPORT_NO_LABEL for a file */
    char **bad;          /* (n) --files: why query i failed, NULL when it did not */
};

static void nb_queries_deinit(struct nb_queries *qs)
{
    for (int i = 0; qs->rgb && i < qs->n; i++)
        free(qs->rgb[i]);
    for (int i = 0; qs->bad && i < qs->n; i++)
        free(qs->bad[i]);
    free(qs->q), free(qs->rgb), free(qs->w), free(qs->h), free(qs->label), free(qs->bad);
}

/* Reads and embeds the n queries imgs with m. as_files (--files): every query is a file path
 * and one that cannot be read is noted in bad while the others go on. 0, or -1 (logged);
 * either way free with nb_queries_deinit. */
static int nb_queries_load(struct evald *ev, struct feat_model *m, struct nb_queries *qs, int n,
                           char **imgs, int as_files)
{
    size_t d = (size_t)m->low_dim;
    memset(qs, 0, sizeof *qs);
    qs->n = n;
    qs->q = malloc((size_t)n * d * sizeof *qs->q);
    qs->rgb = calloc((size_t)n, sizeof *qs->rgb);
    qs->w = calloc((size_t)n, sizeof *qs->w);
    qs->h = calloc((size_t)n, sizeof *qs->h);
    qs->label = calloc((size_t)n, sizeof *qs->label);
    qs->bad = calloc((size_t)n, sizeof *qs->bad);
    if (!qs->q || !qs->rgb || !qs->w || !qs->h || !qs->label || !qs->bad)
        return -1;
    for (int i = 0; i < n; i++) {
        char why[512];
        struct jpeg_image img;
        if (nb_load_image(ev, m, imgs[i], as_files, &img, &qs->label[i], why,
                          sizeof why) != 0) {
            if (!as_files || !(qs->bad[i] = strdup(why)))
                return -1;
            memset(qs->q + (size_t)i * d, 0, d * sizeof *qs->q);
            continue;
        }
        qs->nok++;
        feat_image(m, &img, qs->q + (size_t)i * d);
        if (ev->o->grid) { /* only the grid needs the pixels: a long --files list stays small */
            qs->rgb[i] = malloc((size_t)img.w * img.h * 3);
            if (!qs->rgb[i])
                return -1;
            memcpy(qs->rgb[i], img.pix, (size_t)img.w * img.h * 3);
            qs->w[i] = img.w;
            qs->h[i] = img.h;
        }
    }
    return 0;
}

/* Prints query i's line (its neighbours idx, sim: n of them) and fills its grid row. */
static void nb_print(struct evald *ev, struct feat_model *m, const struct nb_queries *qs, int i,
                     const char *img, const uint32_t *idx, const float *sim, size_t n,
                     struct grid *g)
{
    fputs("{\"query\":", stdout);
    json_write_cstr(stdout, img);
    if (qs->label[i] != EXPORT_NO_LABEL)
        printf(",\"label\":%" PRIu32, qs->label[i]);
    printf(",\"step\":%" PRIu64 ",\"against\":\"%s\",\"neighbours\":[", m->step,
           strcmp(ev->o->against, "bank") == 0 ? "bank" : "recomputed");
    if (g)
        grid_put(g, (size_t)i, 0, qs->rgb[i], qs->w[i], qs->h[i]);
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
            struct jpeg_image nb;
            uint32_t lab2;
            char ref[64];
            snprintf(ref, sizeof ref, "train:%" PRIu32, idx[j]);
            if (nb_load_image(ev, m, ref, 0, &nb, &lab2, NULL, 0) == 0) {
                grid_put(g, (size_t)i, j + 1, nb.pix, nb.w, nb.h);
                if (qs->label[i] != EXPORT_NO_LABEL)
                    grid_mark_match(g, (size_t)i, j + 1, lab2 == qs->label[i]);
            }
        }
    }
    fputs("]}\n", stdout);
}

/* Prints the lines of every query (an error line for a --files query that failed) and fills
 * the grid. 0, or -1 (logged). */
static int nb_print_all(struct evald *ev, struct feat_model *m, const struct nb_queries *qs,
                        char **imgs, struct knn *kn, struct grid *g)
{
    size_t top = (size_t)ev->o->top;
    uint32_t *idx = malloc(top * sizeof *idx);
    float *sim = malloc(top * sizeof *sim);
    int rc = -1;
    if (!idx || !sim)
        goto out;
    for (int i = 0; i < qs->n; i++) {
        if (qs->bad[i]) {
            fputs("{\"query\":", stdout);
            json_write_cstr(stdout, imgs[i]);
            fputs(",\"error\":", stdout);
            json_write_cstr(stdout, qs->bad[i]);
            fputs("}\n", stdout);
            continue;
        }
        size_t n = knn_neighbours(kn, (size_t)i, idx, sim);
        nb_print(ev, m, qs, i, imgs[i], idx, sim, n, g);
    }
    if (fflush(stdout) != 0)
        log_error("stdout: %s", strerror(errno));
    else
        rc = 0;
out:
    free(idx);
    free(sim);
    return rc;
}

/* The search of nimg queries imgs. as_files (--files): every query is a file path, and one
 * that cannot be read gets a line {"query":path,"error":reason} while the others are
 * searched; EXIT_FAIL only when all fail. */
static int nb_run(struct evald *ev, int nimg, char **imgs, int as_files)
{
    const struct evald_opts *o = ev->o;
    char err[1024];
    struct feat_model m;
    for (int i = 0; i < nimg; i++) {
        if (!imgs[i]) {
            log_error("out of memory");
            return EXIT_FAIL;
        }
    }
    if (!o->checkpoint) {
        fprintf(stderr, "npid-evald neighbours: --checkpoint is required\n");
        return EXIT_USAGE;
    }
    if (feat_model_init(&m, o->checkpoint, o->batch, err, sizeof err) != 0) {
        log_error("%s", err);
        return EXIT_FAIL;
    }
    int ret = EXIT_FAIL;
    size_t d = (size_t)m.low_dim, top = (size_t)o->top;
    struct nb_queries qs;
    struct knn *kn = NULL;
    struct grid *g = NULL;
    if (nb_queries_load(ev, &m, &qs, nimg, imgs, as_files) != 0)
        goto out;
    kn = knn_new(qs.q, (size_t)nimg, d, top);
    if (!kn)
        goto out;
    uint64_t bank_step = 0;
    int brc = qs.nok == 0 ? 0 /* nothing to search for */
              : strcmp(o->against, "bank") == 0 ? evald_add_bank(ev, kn, d, &bank_step)
                                                 : evald_add_recomputed(ev, &m, kn);
    if (brc != 0)
        goto out;
    if (o->grid && qs.nok && !(g = grid_new((size_t)nimg, top + 1, (size_t)o->cell, 4))) {
        log_error("grid: %s", strerror(errno));
        goto out;
    }
    if (nb_print_all(ev, &m, &qs, imgs, kn, g) != 0)
        goto out;
    if (qs.nok == 0) {
        log_error("neighbours: none of the %d images could be read", nimg);
        goto out;
    }
    if (g && grid_write_jpeg(g, o->grid, 90, err, sizeof err) != 0) {
        log_error("grid: %s", err);
        goto out;
    }
    if (g)
        log_info("retrieval grid %zux%zu written to %s", grid_width(g), grid_height(g), o->grid);
    ret = EXIT_OK;
out:
    grid_destroy(&g);
    knn_destroy(&kn);
    nb_queries_deinit(&qs);
    feat_model_deinit(&m);
    return ret;
}

/* The queries: the --files list, the image arguments, or --queries test images. */
static int nb_queries_run(struct evald *ev, int nimg, char **imgs)
{
    const struct evald_opts *o = ev->o;
    char **auto_imgs = NULL;
    if (o->files) {
        char err[1024];
        struct files_list fl;
        if (nimg > 0) {
            fprintf(stderr, "npid-evald neighbours: images as arguments or --files, not both\n");
            return EXIT_USAGE;
        }
        if (files_list_read(&fl, o->files, err, sizeof err) != 0) {
            log_error("%s", err);
            return EXIT_FAIL;
        }
        int ret = EXIT_FAIL;
        if (fl.n == 0 || fl.n > 0x7fffffff)
            log_error("neighbours: --files %s holds %zu paths", o->files, fl.n);
        else
            ret = nb_run(ev, (int)fl.n, fl.paths, 1);
        files_list_deinit(&fl);
        return ret;
    }
    if (nimg < 1) {
        /* --queries N test images, evenly spread (a class-sorted split gives mixed classes) */
        size_t nt = dataset_count(ev->test);
        size_t nqr = (size_t)o->queries < nt ? (size_t)o->queries : nt;
        auto_imgs = calloc(nqr ? nqr : 1, sizeof *auto_imgs);
        if (!auto_imgs) {
            log_error("out of memory");
            return EXIT_FAIL;
        }
        for (size_t i = 0; i < nqr; i++) {
            auto_imgs[i] = malloc(32);
            if (auto_imgs[i])
                snprintf(auto_imgs[i], 32, "test:%zu", i * nt / nqr + nt / nqr / 2);
        }
        nimg = (int)nqr;
        imgs = auto_imgs;
    }
    int ret = nb_run(ev, nimg, imgs, 0);
    for (int i = 0; auto_imgs && i < nimg; i++)
        free(auto_imgs[i]);
    free(auto_imgs);
    return ret;
}

int evald_neighbours_main(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args)
{
    if (evald_check_data(o) != 0)
        return EXIT_USAGE;
    /* the bank's rows are stale; retrieval shows the network, unless --bank EP names a bank */
    if (!o->against)
        o->against = cfg_find(opts, "bank")->set_by == 2 ? "bank" : "recomputed";
    if (evald_check_against(o) != 0)
        return EXIT_USAGE;
    evald_start(o, opts);
    if (strcmp(o->split, "train") != 0) {
        fprintf(stderr, "npid-evald neighbours: --split %s: neighbours are train images (the "
                "bank's rows or their recomputed features)\n", o->split);
        return EXIT_USAGE;
    }
    if (!strcmp(o->against, "both")) {
        fprintf(stderr, "npid-evald neighbours: --against bank or recomputed\n");
        return EXIT_USAGE;
    }
    struct evald ev;
    /* neighbours of named images need no test split; --queries takes test images */
    int need = o->files ? 0 : nargs >= 1 ? EV_TEST_IF_ANY : EV_TEST;
    if (evald_open(&ev, o, need) != 0) {
        evald_close(&ev);
        return EXIT_FAIL;
    }
    int ret = nb_queries_run(&ev, nargs, args);
    evald_close(&ev);
    return ret;
}
