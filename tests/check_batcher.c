/* The batcher (common/batcher.h) on a tiny ImageFolder dataset with one undecodable image:
 * the bad-image policy (training transform: the next image that decodes, with the bad
 * index's random stream; test transform: every byte 128; flagged, counted, reason kept),
 * the two view seedings, the job errors, and the premise of the test policy (the test
 * transform maps a constant image to itself). Everything is built in a temporary directory. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/augment.h"
#include "common/batcher.h"
#include "common/dataset.h"
#include "common/durable.h"
#include "common/jpeg.h"

#define SIZE 16
#define IMG (SIZE * SIZE * 3)

static char tmpdir[256];

static void put(const char *rel, const void *data, size_t len)
{
    char path[1024], dir[1024];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    ck_assert_int_eq(mkdir_p(dir), 0);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* A 20 x 24 JPEG whose pixels depend on seed (not constant, so transforms differ). */
static void put_jpeg(const char *rel, int seed)
{
    uint32_t w = 20, h = 24;
    uint8_t rgb[20 * 24 * 3];
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(seed * 50 + (i * 7) % 97);
    uint8_t *j;
    size_t len;
    ck_assert_int_eq(jpeg_encode_rgb(rgb, w, h, 90, &j, &len), 0);
    put(rel, j, len);
    free(j);
}

/* train/a/img0.jpg, train/a/img1.jpg (text: undecodable), train/a/img2.jpg, train/b/img3.jpg
 * (indices 0..3); test/a/bad.jpg, the only image of its split, undecodable. */
static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/npid-check-batcher.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    put_jpeg("train/a/img0.jpg", 0);
    put("train/a/img1.jpg", "not an image\n", 13);
    put_jpeg("train/a/img2.jpg", 2);
    put_jpeg("train/b/img3.jpg", 3);
    put("test/a/bad.jpg", "not an image\n", 13);
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static struct dataset *open_split(const char *split)
{
    char err[DATASET_ERR_LEN];
    struct dataset *ds = dataset_open(tmpdir, split, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    return ds;
}

/* What the batcher should give for dataset image `src` transformed with stream (seed,
 * epoch, index): decoded at full size (the batcher runs with DCT scaling off). */
static void expect_pixels(const struct dataset *ds, size_t src, int train, uint64_t seed,
                          uint64_t epoch, uint64_t index, uint8_t *out)
{
    struct augment_params p;
    ck_assert_int_eq(augment_preset("cifar", train, SIZE, AUGMENT_CHW, &p), 0);
    struct augment *a = augment_new(&p);
    struct jpeg_dec *dec = jpeg_dec_new(NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(dec);
    struct jpeg_image img;
    char err[DATASET_ERR_LEN];
    ck_assert_int_eq(dataset_decode(ds, src, dec, 0, &img, err, sizeof err), 0);
    augment_apply_seeded(a, img.pix, img.w, img.h, seed, epoch, index, out, NULL);
    jpeg_dec_destroy(&dec);
    augment_destroy(&a);
}

static int all_grey(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != BATCH_GREY)
            return 0;
    return 1;
}

/* Runs indices {1 (bad), 2} with 2 views under the given transform and bad-image policy. */
static void run_bad_then_good(struct batcher *b, const struct dataset *ds, int train,
                              int own_rows, uint8_t pix[2 * 2 * IMG], uint32_t labels[2],
                              uint8_t bad[2], struct batch_out *out)
{
    static const uint32_t idx[2] = { 1, 2 };
    struct batch_job job = { .ds = ds, .idx = idx, .count = 2, .preset = "cifar",
                             .train = train, .own_rows = own_rows, .size = SIZE,
                             .layout = AUGMENT_CHW, .seed = 7, .epoch = 3, .views = 2 };
    *out = (struct batch_out){ .pix = pix, .labels = labels, .bad = bad };
    char err[256];
    ck_assert_msg(batcher_run(b, &job, out, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(out->n_bad, 1);
    ck_assert_uint_eq(bad[0], 1);
    ck_assert_uint_eq(bad[1], 0);
    ck_assert_uint_eq(labels[0], 0); /* the bad index's own label (class a) */
    ck_assert_uint_eq(labels[1], 0);
    const char *const *why;
    ck_assert_uint_eq(batcher_errors(b, &why), 1);
    ck_assert_msg(strstr(why[0], "train/a/img1.jpg") != NULL, "reason '%s'", why[0]);
}

START_TEST(test_training_substitutes_next)
{
    struct dataset *ds = open_split("train");
    ck_assert_uint_eq(dataset_count(ds), 4);
    struct batcher *b = batcher_new(0);
    ck_assert_ptr_nonnull(b);
    uint8_t pix[2 * 2 * IMG], bad[2], want[IMG];
    uint32_t labels[2];
    struct batch_out out;
    run_bad_then_good(b, ds, 1, 0, pix, labels, bad, &out);
    uint64_t vseed[2] = { 7, batch_view_seed(7, 1) };
    for (int v = 0; v < 2; v++) {
        /* position 0 (index 1, bad): image 2's pixels with index 1's stream */
        expect_pixels(ds, 2, 1, vseed[v], 3, 1, want);
        ck_assert_msg(memcmp(pix + (size_t)(v * 2 + 0) * IMG, want, IMG) == 0,
                      "view %d: the bad position is not the next image with its stream", v);
        /* position 1: image 2 itself */
        expect_pixels(ds, 2, 1, vseed[v], 3, 2, want);
        ck_assert(memcmp(pix + (size_t)(v * 2 + 1) * IMG, want, IMG) == 0);
        ck_assert(!all_grey(pix + (size_t)(v * 2) * IMG, IMG));
    }
    batcher_destroy(&b);
    ck_assert_ptr_null(b);
    dataset_destroy(&ds);
}
END_TEST

START_TEST(test_test_transform_grey)
{
    struct dataset *ds = open_split("train");
    struct batcher *b = batcher_new(0);
    ck_assert_ptr_nonnull(b);
    uint8_t pix[2 * 2 * IMG], bad[2], want[IMG];
    uint32_t labels[2];
    struct batch_out out;
    run_bad_then_good(b, ds, 0, 1, pix, labels, bad, &out);
    expect_pixels(ds, 2, 0, 0, 0, 0, want);
    for (int v = 0; v < 2; v++) {
        ck_assert_msg(all_grey(pix + (size_t)(v * 2 + 0) * IMG, IMG),
                      "view %d: the bad position is not uniform mid grey", v);
        ck_assert(memcmp(pix + (size_t)(v * 2 + 1) * IMG, want, IMG) == 0);
    }
    /* the training transform for rows that stand for their image (evald's --train-views):
       grey in every view, the good image's views as the training transform makes them */
    run_bad_then_good(b, ds, 1, 1, pix, labels, bad, &out);
    uint64_t vseed[2] = { 7, batch_view_seed(7, 1) };
    for (int v = 0; v < 2; v++) {
        ck_assert(all_grey(pix + (size_t)(v * 2 + 0) * IMG, IMG));
        expect_pixels(ds, 2, 1, vseed[v], 3, 2, want);
        ck_assert(memcmp(pix + (size_t)(v * 2 + 1) * IMG, want, IMG) == 0);
    }
    /* the same batcher back on training rows substitutes again */
    run_bad_then_good(b, ds, 1, 0, pix, labels, bad, &out);
    ck_assert(!all_grey(pix, IMG));
    batcher_destroy(&b);
    dataset_destroy(&ds);
}
END_TEST

START_TEST(test_training_nothing_decodes)
{
    struct dataset *ds = open_split("test");
    ck_assert_uint_eq(dataset_count(ds), 1);
    struct batcher *b = batcher_new(0);
    uint32_t idx = 0, label;
    uint8_t pix[IMG], bad;
    struct batch_job job = { .ds = ds, .idx = &idx, .count = 1, .preset = "cifar", .train = 1,
                             .size = SIZE, .layout = AUGMENT_CHW, .seed = 1 };
    struct batch_out out = { .pix = pix, .labels = &label, .bad = &bad };
    char err[256];
    ck_assert_int_eq(batcher_run(b, &job, &out, err, sizeof err), 0);
    ck_assert_uint_eq(out.n_bad, 1);
    ck_assert_uint_eq(bad, 1);
    ck_assert(all_grey(pix, IMG));
    batcher_destroy(&b);
    dataset_destroy(&ds);
}
END_TEST

START_TEST(test_view_seedings)
{
    struct dataset *ds = open_split("train");
    struct batcher *b = batcher_new(0);
    uint32_t idx = 3, label;
    uint8_t pix[3 * IMG], bad, want[IMG];
    struct batch_job job = { .ds = ds, .idx = &idx, .count = 1, .preset = "cifar", .train = 1,
                             .size = SIZE, .layout = AUGMENT_CHW, .seed = 11, .epoch = 5,
                             .views = 3, .view_seeding = BATCH_VIEWS_EPOCH };
    struct batch_out out = { .pix = pix, .labels = &label, .bad = &bad };
    char err[256];
    ck_assert_int_eq(batcher_run(b, &job, &out, err, sizeof err), 0);
    ck_assert_uint_eq(label, 1);
    for (uint32_t v = 0; v < 3; v++) {
        expect_pixels(ds, 3, 1, 11, 5 + v, 3, want);
        ck_assert_msg(memcmp(pix + v * IMG, want, IMG) == 0, "epoch seeding, view %u", v);
    }
    job.view_seeding = BATCH_VIEWS_TASK;
    ck_assert_int_eq(batcher_run(b, &job, &out, err, sizeof err), 0);
    for (uint32_t v = 0; v < 3; v++) {
        expect_pixels(ds, 3, 1, v ? batch_view_seed(11, v) : 11, 5, 3, want);
        ck_assert_msg(memcmp(pix + v * IMG, want, IMG) == 0, "task seeding, view %u", v);
    }
    /* invalid jobs */
    idx = 4;
    ck_assert_int_eq(batcher_run(b, &job, &out, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, "ERANGE", 6) == 0, "%s", err);
    idx = 0;
    job.views = BATCH_MAX_VIEWS + 1;
    ck_assert_int_eq(batcher_run(b, &job, &out, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, "EINVAL", 6) == 0, "%s", err);
    job.views = 1;
    job.preset = "bogus";
    ck_assert_int_eq(batcher_run(b, &job, &out, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, "EINVAL", 6) == 0, "%s", err);
    batcher_destroy(&b);
    batcher_destroy(&b); /* accepts NULL */
    dataset_destroy(&ds);
}
END_TEST

/* The premise of the test policy: every preset's test transform maps a constant mid-grey
 * image, of any size, to a constant mid-grey image. */
START_TEST(test_test_transform_keeps_grey)
{
    static const char *const preset[] = { "cifar", "imagenet", "none" };
    static const uint32_t size[] = { 16, 32, 40, 64 };
    static const uint32_t side[][2] = { { 8, 8 }, { 1, 1 }, { 50, 37 }, { 300, 200 } };
    uint8_t *src = malloc(300 * 200 * 3), *dst = malloc(64 * 64 * 3);
    ck_assert_ptr_nonnull(src);
    ck_assert_ptr_nonnull(dst);
    memset(src, BATCH_GREY, 300 * 200 * 3);
    for (size_t p = 0; p < 3; p++)
        for (size_t s = 0; s < 4; s++) {
            struct augment_params ap;
            ck_assert_int_eq(augment_preset(preset[p], 0, size[s], AUGMENT_CHW, &ap), 0);
            struct augment *a = augment_new(&ap);
            ck_assert_ptr_nonnull(a);
            for (size_t k = 0; k < 4; k++) {
                augment_apply(a, src, side[k][0], side[k][1], NULL, dst, NULL);
                ck_assert_msg(all_grey(dst, augment_out_bytes(a)), "%s at %u from %ux%u",
                              preset[p], size[s], side[k][0], side[k][1]);
            }
            augment_destroy(&a);
        }
    free(src);
    free(dst);
}
END_TEST

/* big/train/a/img<k>.jpg (a dataset of its own): BIG_W x BIG_H smooth images (gradients and a
 * slow wave; seed k shifts them), large enough at SIZE for every DCT scale. */
#define BIG_W 300
#define BIG_H 260
static void put_big_jpegs(int n)
{
    uint8_t *rgb = malloc((size_t)BIG_W * BIG_H * 3);
    ck_assert_ptr_nonnull(rgb);
    for (int k = 0; k < n; k++) {
        for (uint32_t y = 0; y < BIG_H; y++)
            for (uint32_t x = 0; x < BIG_W; x++) {
                uint8_t *px = rgb + ((size_t)y * BIG_W + x) * 3;
                px[0] = (uint8_t)((x * 255 / BIG_W + 40 * k) & 255);
                px[1] = (uint8_t)(y * 255 / BIG_H);
                px[2] = (uint8_t)(127.5 + 127.5 * sin((x + 2.0 * y + 30 * k) / 40.0));
            }
        uint8_t *j;
        size_t len;
        ck_assert_int_eq(jpeg_encode_rgb(rgb, BIG_W, BIG_H, 95, &j, &len), 0);
        char rel[64];
        snprintf(rel, sizeof rel, "big/train/a/img%d.jpg", k);
        put(rel, j, len);
        free(j);
    }
    free(rgb);
}

/* The draw of one view, for the decode's pick: geometry from the stream, the rule's scale. */
struct one_view {
    const struct augment_params *p;
    struct rng r;
    struct augment_draw d;
    uint32_t denom;
};

static uint32_t pick_one(void *ctx, uint32_t w, uint32_t h, struct jpeg_region *roi)
{
    struct one_view *v = ctx;
    (void)roi; /* all of it: the batcher's region must not change the result */
    augment_geometry(v->p, &v->r, w, h, &v->d);
    v->denom = augment_scale_denom(v->p, &v->d, w, h);
    return v->denom;
}

/* With DCT scaling on, the batcher decodes each JPEG at the scale the rule gives its draw and
 * finishes the transform from there: one view equals that path done by hand (and the scale
 * was reduced), and every view of a 4-view job stays close to the full-size decode's, whose
 * draws it shares (train and test transform). */
START_TEST(test_dct_scaling_per_draw)
{
    enum { N = 6, V = 4 };
    put_big_jpegs(N);
    char root[512], derr[DATASET_ERR_LEN];
    snprintf(root, sizeof root, "%s/big", tmpdir);
    struct dataset *ds = dataset_open(root, "train", derr, sizeof derr);
    ck_assert_msg(ds != NULL, "%s", derr);
    ck_assert_uint_eq(dataset_count(ds), N);
    struct batcher *on = batcher_new(1), *off = batcher_new(0);
    uint32_t idx[N], labels[N];
    uint8_t bad[N], *pa = malloc((size_t)V * N * IMG), *pb = malloc((size_t)V * N * IMG);
    for (uint32_t i = 0; i < N; i++)
        idx[i] = i;
    struct augment_params p;
    ck_assert_int_eq(augment_preset("imagenet", 1, SIZE, AUGMENT_CHW, &p), 0);
    struct augment *a = augment_new(&p);
    struct jpeg_dec *dec = jpeg_dec_new(NULL);
    uint32_t reduced = 0;
    char err[256];
    for (int train = 1; train >= 0; train--) {
        struct batch_job job = { .ds = ds, .idx = idx, .count = N, .preset = "imagenet",
                                 .train = train, .size = SIZE, .layout = AUGMENT_CHW,
                                 .seed = 5, .epoch = 2, .views = 1 };
        struct batch_out oa = { .pix = pa, .labels = labels, .bad = bad };
        struct batch_out ob = { .pix = pb, .labels = labels, .bad = bad };
        ck_assert_msg(batcher_run(on, &job, &oa, err, sizeof err) == 0, "%s", err);
        for (uint32_t i = 0; train && i < N; i++) {
            struct one_view v = { .p = &p, .r = rng_derive(5, 2, i) };
            struct jpeg_image img;
            ck_assert_int_eq(dataset_decode_pick(ds, i, dec, pick_one, &v, &img, err,
                                                 sizeof err), 0);
            ck_assert_uint_eq(img.scale_denom, v.denom);
            reduced += v.denom > 1;
            uint8_t want[IMG];
            augment_apply_scaled(a, img.pix, img.w, img.h, img.scale_denom, img.src_w,
                                 img.src_h, &v.r, want, &v.d);
            ck_assert_msg(memcmp(pa + (size_t)i * IMG, want, IMG) == 0, "image %u", i);
        }
        job.views = V;
        ck_assert_msg(batcher_run(on, &job, &oa, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(batcher_run(off, &job, &ob, err, sizeof err) == 0, "%s", err);
        for (size_t r = 0; r < (size_t)V * N; r++) {
            double e = 0;
            for (size_t k = 0; k < IMG; k++)
                e += fabs((double)pa[r * IMG + k] - pb[r * IMG + k]);
            ck_assert_msg(e / IMG < 4.0, "%s row %zu: mean |diff| %.2f from the full-size decode",
                          train ? "train" : "test", r, e / IMG);
        }
    }
    ck_assert_uint_gt(reduced, 0);
    jpeg_dec_destroy(&dec);
    augment_destroy(&a);
    free(pa);
    free(pb);
    batcher_destroy(&on);
    batcher_destroy(&off);
    dataset_destroy(&ds);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("batcher");
    TCase *tc = tcase_create("batcher");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_training_substitutes_next);
    tcase_add_test(tc, test_test_transform_grey);
    tcase_add_test(tc, test_training_nothing_decodes);
    tcase_add_test(tc, test_view_seedings);
    tcase_add_test(tc, test_test_transform_keeps_grey);
    tcase_add_test(tc, test_dct_scaling_per_draw);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
