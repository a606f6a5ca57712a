/* Dataset index: ImageFolder order (bytewise class and file order, nested directories),
 * skipped files, split handling and labels, the manifest (against an independent SHA-256 of
 * the documented lines; stable, sensitive to renames and sizes), the CIFAR-10 binary layout,
 * loading, and the error paths; the flat (unlabelled) layouts, train + unlabeled, file
 * lists, the CIFAR-100 and STL-10 binaries (pixels land where the formats put them), and the
 * skip diagnostics (links, loops, unreadable files). Everything is built in a temporary
 * directory. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/dataset.h"
#include "common/durable.h"
#include "common/jpeg.h"
#include "common/sha256.h"

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

/* A small valid JPEG of w x h with a colour depending on seed. */
static void put_jpeg(const char *rel, uint32_t w, uint32_t h, int seed)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        rgb[i] = (uint8_t)(seed * 40 + i % 7);
    uint8_t *j;
    size_t len;
    ck_assert_int_eq(jpeg_encode_rgb(rgb, w, h, 90, &j, &len), 0);
    put(rel, j, len);
    free(j);
    free(rgb);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/npid-check-dataset.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *root_path(const char *sub)
{
    static char p[512];
    snprintf(p, sizeof p, "%s%s%s", tmpdir, sub[0] ? "/" : "", sub);
    return p;
}

START_TEST(test_imagefolder_order_labels_skips)
{
    /* classes "C" < "a" < "b" bytewise; files "10.jpg" < "2.jpg" < "b.JPEG"; nested dir */
    put_jpeg("train/b/2.jpg", 8, 8, 1);
    put_jpeg("train/b/10.jpg", 8, 8, 2);
    put_jpeg("train/b/b.JPEG", 8, 8, 3);
    put_jpeg("train/a/x.jpg", 8, 8, 4);
    put_jpeg("train/a/sub/y.jpg", 8, 8, 5);
    put_jpeg("train/C/z.jpeg", 8, 8, 6);
    put("train/a/notes.txt", "hello", 5);
    put("train/a/.hidden.jpg", "x", 1);
    put("train/b/pic.gif", "GIF89a", 6);
    put("train/stray.jpg", "x", 1);
    put_jpeg("test/a/t1.jpg", 8, 8, 7);
    put_jpeg("test/C/t2.jpg", 8, 8, 8);
    char err[DATASET_ERR_LEN];
    struct dataset *ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_int_eq(dataset_format(ds), DATASET_IMAGEFOLDER);
    ck_assert_uint_eq(dataset_num_classes(ds), 3);
    ck_assert_str_eq(dataset_class_name(ds, 0), "C");
    ck_assert_str_eq(dataset_class_name(ds, 1), "a");
    ck_assert_str_eq(dataset_class_name(ds, 2), "b");
    const char *want[] = { "train/C/z.jpeg", "train/a/sub/y.jpg", "train/a/x.jpg",
                           "train/b/10.jpg", "train/b/2.jpg", "train/b/b.JPEG" };
    uint32_t labels[] = { 0, 1, 1, 2, 2, 2 };
    ck_assert_uint_eq(dataset_count(ds), 6);
    for (size_t i = 0; i < 6; i++) {
        ck_assert_str_eq(dataset_path(ds, i), want[i]);
        ck_assert_uint_eq(dataset_label(ds, i), labels[i]);
    }
    ck_assert_uint_eq(dataset_skipped(ds), 4);
    /* the manifest is SHA-256 over "path\tsize\n" lines */
    struct sha256 h;
    sha256_init(&h);
    for (size_t i = 0; i < 6; i++) {
        char line[600];
        struct stat st;
        char full[1024];
        snprintf(full, sizeof full, "%s/%s", tmpdir, want[i]);
        ck_assert_int_eq(stat(full, &st), 0);
        int n = snprintf(line, sizeof line, "%s\t%lld\n", want[i], (long long)st.st_size);
        sha256_update(&h, line, (size_t)n);
        ck_assert_uint_eq(dataset_file_size(ds, i), (uint64_t)st.st_size);
    }
    unsigned char dg[32];
    char hex[65];
    sha256_final(&h, dg);
    sha256_hex(dg, hex);
    ck_assert_str_eq(dataset_manifest(ds), hex);
    char m1[65];
    snprintf(m1, sizeof m1, "%s", dataset_manifest(ds));
    /* loading */
    uint8_t buf[8 * 8 * 3];
    uint32_t w = 0, hh = 0;
    ck_assert_int_eq(dataset_load_rgb(ds, 0, buf, sizeof buf, &w, &hh, err, sizeof err), 0);
    ck_assert(w == 8 && hh == 8);
    ck_assert_int_eq(dataset_load_rgb(ds, 0, buf, 10, &w, &hh, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "buffer too small"));
    ck_assert(w == 8 && hh == 8);
    dataset_destroy(&ds);
    ck_assert_ptr_null(ds);
    dataset_destroy(&ds);
    /* test split: labels from train's class list */
    ds = dataset_open(root_path(""), "test", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_count(ds), 2);
    ck_assert_str_eq(dataset_path(ds, 0), "test/C/t2.jpg");
    ck_assert_uint_eq(dataset_label(ds, 0), 0);
    ck_assert_uint_eq(dataset_label(ds, 1), 1);
    ck_assert_uint_eq(dataset_num_classes(ds), 3);
    ck_assert_str_eq(dataset_split(ds), "test");
    dataset_destroy(&ds);
    /* same tree, same manifest; a renamed file or a changed size changes it */
    ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_str_eq(dataset_manifest(ds), m1);
    dataset_destroy(&ds);
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/train/b/2.jpg", tmpdir);
    snprintf(b, sizeof b, "%s/train/b/3.jpg", tmpdir);
    ck_assert_int_eq(rename(a, b), 0);
    ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_str_ne(dataset_manifest(ds), m1);
    dataset_destroy(&ds);
    ck_assert_int_eq(rename(b, a), 0);
    put_jpeg("train/b/2.jpg", 9, 8, 1);
    ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_str_ne(dataset_manifest(ds), m1);
    dataset_destroy(&ds);
    /* a test class unknown to train is an error */
    put_jpeg("test/zzz/q.jpg", 8, 8, 1);
    ck_assert_ptr_null(dataset_open(root_path(""), "test", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "zzz"));
}
END_TEST

START_TEST(test_errors)
{
    char err[DATASET_ERR_LEN];
    ck_assert_ptr_null(dataset_open(root_path("missing"), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "not a directory"));
    ck_assert_ptr_null(dataset_open(root_path(""), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "neither an ImageFolder"));
    ck_assert_ptr_null(dataset_open(root_path(""), "bogus", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "unknown split"));
    put("train/a/readme.txt", "x", 1);
    ck_assert_ptr_null(dataset_open(root_path(""), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "no images"));
    ck_assert_ptr_nonnull(strstr(err, "1 other files skipped"));
    ck_assert_ptr_null(dataset_open(root_path(""), "test", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "no test/ or val/"));
    put_jpeg("train/a/ok.jpg", 4, 4, 1);
    put_jpeg("val/a/v.jpg", 4, 4, 1);
    struct dataset *ds = dataset_open(root_path(""), "val", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_str_eq(dataset_path(ds, 0), "val/a/v.jpg");
    dataset_destroy(&ds);
    ck_assert_ptr_null(dataset_open(NULL, "train", err, sizeof err));
    /* a corrupt image: a clear reason naming the path */
    put("train/a/zz.jpg", "garbage!", 8);
    ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_ptr_nonnull(ds);
    struct jpeg_dec *dec = jpeg_dec_new(NULL);
    struct jpeg_image img;
    ck_assert_int_eq(dataset_decode(ds, 1, dec, 0, &img, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "train/a/zz.jpg: not a JPEG"));
    ck_assert_int_eq(dataset_decode(ds, 0, dec, 0, &img, err, sizeof err), 0);
    ck_assert(img.w == 4 && img.h == 4);
    jpeg_dec_destroy(&dec);
    dataset_destroy(&ds);
}
END_TEST

static void put_cifar(const char *name, int records, int first_label)
{
    size_t len = (size_t)records * 3073;
    uint8_t *b = malloc(len);
    for (int r = 0; r < records; r++) {
        uint8_t *rec = b + (size_t)r * 3073;
        rec[0] = (uint8_t)((first_label + r) % 10);
        for (int i = 0; i < 3072; i++)
            rec[1 + i] = (uint8_t)(r * 3 + i / 1024 * 80 + i % 32);
    }
    put(name, b, len);
    free(b);
}

START_TEST(test_cifar_binary)
{
    for (int f = 1; f <= 5; f++) {
        char name[64];
        snprintf(name, sizeof name, "cifar-10-batches-bin/data_batch_%d.bin", f);
        put_cifar(name, 3, f);
    }
    put_cifar("cifar-10-batches-bin/test_batch.bin", 4, 0);
    put("cifar-10-batches-bin/batches.meta.txt",
        "a0\na1\na2\na3\na4\na5\na6\na7\na8\na9\n\n", 31);
    char err[DATASET_ERR_LEN];
    struct dataset *ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_int_eq(dataset_format(ds), DATASET_CIFAR_BIN);
    ck_assert_uint_eq(dataset_count(ds), 15);
    ck_assert_uint_eq(dataset_num_classes(ds), 10);
    ck_assert_str_eq(dataset_class_name(ds, 3), "a3");
    ck_assert_str_eq(dataset_path(ds, 4), "data_batch_2.bin#1");
    ck_assert_uint_eq(dataset_label(ds, 4), 3);
    ck_assert_uint_eq(dataset_file_size(ds, 4), 3073);
    uint8_t px[3072];
    uint32_t w, h;
    ck_assert_int_eq(dataset_load_rgb(ds, 4, px, sizeof px, &w, &h, err, sizeof err), 0);
    ck_assert(w == 32 && h == 32);
    /* record 1: planes R, G, B -> packed */
    for (int i = 0; i < 1024; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_uint_eq(px[3 * i + c], (uint8_t)(3 + c * 80 + i % 32));
    dataset_destroy(&ds);
    ds = dataset_open(root_path(""), "test", err, sizeof err);
    ck_assert_uint_eq(dataset_count(ds), 4);
    dataset_destroy(&ds);
    /* a truncated file and a bad label are refused */
    put("cifar-10-batches-bin/data_batch_3.bin", "abc", 3);
    ck_assert_ptr_null(dataset_open(root_path(""), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "truncated"));
    put_cifar("cifar-10-batches-bin/data_batch_3.bin", 2, 0);
    ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_ptr_nonnull(ds);
    dataset_destroy(&ds);
    uint8_t bad[3073] = { 12 };
    put("cifar-10-batches-bin/data_batch_3.bin", bad, sizeof bad);
    ck_assert_ptr_null(dataset_open(root_path(""), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "label 12"));
}
END_TEST


/* The manifest as documented: SHA-256 over "path\tsize\n" of each image in index order. */
static void expect_manifest(const struct dataset *ds)
{
    struct sha256 h;
    sha256_init(&h);
    for (size_t i = 0; i < dataset_count(ds); i++) {
        char line[1200];
        int n = snprintf(line, sizeof line, "%s\t%llu\n", dataset_path(ds, i),
                         (unsigned long long)dataset_file_size(ds, i));
        sha256_update(&h, line, (size_t)n);
    }
    unsigned char dg[32];
    char hex[65];
    sha256_final(&h, dg);
    sha256_hex(dg, hex);
    ck_assert_str_eq(dataset_manifest(ds), hex);
}

static void expect_paths(const struct dataset *ds, const char *const *want, size_t n)
{
    ck_assert_uint_eq(dataset_count(ds), n);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(dataset_path(ds, i), want[i]);
}

START_TEST(test_flat)
{
    char err[DATASET_ERR_LEN];
    /* images directly in train/, with a nested sub-folder: detected as flat */
    put_jpeg("train/b.jpg", 8, 8, 1);
    put_jpeg("train/a.png", 8, 8, 2);  /* a JPEG named .png: indexed by name, decoded by bytes */
    put_jpeg("train/2019/x.jpg", 8, 8, 3);
    put("train/notes.txt", "x", 1);
    /* "2019" is a sub-folder, so train/ has class folders: ImageFolder, loose files skipped */
    struct dataset *ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_int_eq(dataset_format(ds), DATASET_IMAGEFOLDER);
    ck_assert_uint_eq(dataset_count(ds), 1);
    ck_assert_uint_eq(dataset_skipped(ds), 3);
    dataset_destroy(&ds);
    struct dataset_opts fo = { .layout = "flat" };
    ds = dataset_open_opts(root_path(""), "train", &fo, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    const char *want[] = { "train/2019/x.jpg", "train/a.png", "train/b.jpg" };
    expect_paths(ds, want, 3);
    ck_assert_int_eq(dataset_format(ds), DATASET_FLAT);
    ck_assert_uint_eq(dataset_labelled(ds), 0);
    ck_assert_uint_eq(dataset_num_classes(ds), 0);
    for (size_t i = 0; i < 3; i++)
        ck_assert_uint_eq(dataset_label(ds, i), DATASET_NO_LABEL);
    ck_assert_str_eq(dataset_class_name(ds, DATASET_NO_LABEL), "");
    ck_assert_uint_eq(dataset_skipped(ds), 1);
    ck_assert_ptr_nonnull(strstr(dataset_describe(ds), "--layout flat"));
    expect_manifest(ds);
    uint8_t px[8 * 8 * 3];
    uint32_t w, h;
    ck_assert_int_eq(dataset_load_rgb(ds, 1, px, sizeof px, &w, &h, err, sizeof err), 0);
    dataset_destroy(&ds);
    /* without the sub-folder, auto-detection says so */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/train/2019'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_count(ds), 2);
    ck_assert_int_eq(dataset_format(ds), DATASET_FLAT);
    ck_assert_ptr_nonnull(strstr(dataset_describe(ds), "no class folders"));
    ck_assert_ptr_nonnull(strstr(dataset_describe(ds), "unlabelled"));
    dataset_destroy(&ds);
    /* --layout imagefolder refuses a split without class folders */
    struct dataset_opts io = { .layout = "imagefolder" };
    ck_assert_ptr_null(dataset_open_opts(root_path(""), "train", &io, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "no class directories"));
    /* --layout flat over class folders: one unlabelled set */
    put_jpeg("train/cls/c.jpg", 8, 8, 4);
    ds = dataset_open_opts(root_path(""), "train", &fo, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_count(ds), 3);
    ck_assert_uint_eq(dataset_labelled(ds), 0);
    ck_assert_uint_eq(dataset_nested_dirs(ds), 0);
    dataset_destroy(&ds);
}
END_TEST

START_TEST(test_flat_root)
{
    char err[DATASET_ERR_LEN];
    /* only sub-folders: refused with a hint, read with --layout flat */
    put_jpeg("photos/2020/a.jpg", 8, 8, 1);
    put_jpeg("photos/2021/deep/b.webp.jpg", 8, 8, 2);
    ck_assert_ptr_null(dataset_open(root_path("photos"), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "neither an ImageFolder"));
    ck_assert_ptr_nonnull(strstr(err, "--layout flat"));
    struct dataset_opts fo = { .layout = "flat" };
    struct dataset *ds = dataset_open_opts(root_path("photos"), "train", &fo, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    const char *want[] = { "2020/a.jpg", "2021/deep/b.webp.jpg" };
    expect_paths(ds, want, 2);
    expect_manifest(ds);
    dataset_destroy(&ds);
    /* an image at the top: detected */
    put_jpeg("photos/top.JPG", 8, 8, 3);
    ds = dataset_open(root_path("photos"), "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    const char *want2[] = { "2020/a.jpg", "2021/deep/b.webp.jpg", "top.JPG" };
    expect_paths(ds, want2, 3);
    ck_assert_int_eq(dataset_format(ds), DATASET_FLAT);
    ck_assert_ptr_nonnull(strstr(dataset_describe(ds), "no train/"));
    uint8_t px[8 * 8 * 3];
    uint32_t w, h;
    ck_assert_int_eq(dataset_load_rgb(ds, 2, px, sizeof px, &w, &h, err, sizeof err), 0);
    ck_assert(w == 8 && h == 8);
    dataset_destroy(&ds);
    /* no test split there */
    ck_assert_int_eq(dataset_split_exists(root_path("photos"), "test", NULL), 0);
    ck_assert_ptr_null(dataset_open(root_path("photos"), "test", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "no test/"));
}
END_TEST

START_TEST(test_train_unlabeled)
{
    char err[DATASET_ERR_LEN];
    put_jpeg("train/dog/d1.jpg", 8, 8, 1);
    put_jpeg("train/cat/c1.jpg", 8, 8, 2);
    put_jpeg("train/cat/c2.jpg", 8, 8, 3);
    put_jpeg("unlabeled/u2.jpg", 8, 8, 4);
    put_jpeg("unlabeled/u1.jpg", 8, 8, 5);
    put_jpeg("unlabeled/batch7/u0.jpg", 8, 8, 6); /* class-less sub-folder: still unlabelled */
    put_jpeg("test/dog/t1.jpg", 8, 8, 7);
    put_jpeg("extra/cow/e1.jpg", 8, 8, 8);
    struct dataset_opts o = { .train_splits = "train,unlabeled" };
    struct dataset *ds = dataset_open_opts(root_path(""), "train", &o, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    const char *want[] = { "train/cat/c1.jpg", "train/cat/c2.jpg", "train/dog/d1.jpg",
                           "unlabeled/batch7/u0.jpg", "unlabeled/u1.jpg", "unlabeled/u2.jpg" };
    expect_paths(ds, want, 6);
    ck_assert_uint_eq(dataset_labelled(ds), 3);
    ck_assert_uint_eq(dataset_num_classes(ds), 2);
    ck_assert_uint_eq(dataset_label(ds, 0), 0);
    ck_assert_uint_eq(dataset_label(ds, 2), 1);
    for (size_t i = 3; i < 6; i++)
        ck_assert_uint_eq(dataset_label(ds, i), DATASET_NO_LABEL);
    ck_assert_int_eq(dataset_format(ds), DATASET_IMAGEFOLDER);
    ck_assert_ptr_nonnull(strstr(dataset_describe(ds), "ImageFolder train/"));
    ck_assert_ptr_nonnull(strstr(dataset_describe(ds), "flat unlabeled/"));
    expect_manifest(ds);
    char m1[65];
    snprintf(m1, sizeof m1, "%s", dataset_manifest(ds));
    dataset_destroy(&ds);
    /* the order of the flag does not matter: labelled splits come first */
    struct dataset_opts r = { .train_splits = "unlabeled,train" };
    ds = dataset_open_opts(root_path(""), "train", &r, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_str_eq(dataset_manifest(ds), m1);
    dataset_destroy(&ds);
    /* the labelled part alone is another index */
    ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_uint_eq(dataset_count(ds), 3);
    ck_assert_str_ne(dataset_manifest(ds), m1);
    dataset_destroy(&ds);
    /* the test split takes the train split's classes */
    ds = dataset_open_opts(root_path(""), "test", &o, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_label(ds, 0), 1);
    ck_assert_uint_eq(dataset_num_classes(ds), 2);
    dataset_destroy(&ds);
    /* a second labelled split adds its classes (sorted union) */
    struct dataset_opts e = { .train_splits = "train,extra,unlabeled" };
    ds = dataset_open_opts(root_path(""), "train", &e, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_num_classes(ds), 3);
    ck_assert_str_eq(dataset_class_name(ds, 1), "cow");
    ck_assert_uint_eq(dataset_labelled(ds), 4);
    ck_assert_str_eq(dataset_path(ds, 3), "extra/cow/e1.jpg");
    dataset_destroy(&ds);
    /* errors */
    struct dataset_opts m = { .train_splits = "train,missing" };
    ck_assert_ptr_null(dataset_open_opts(root_path(""), "train", &m, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "no missing/ directory"));
    const char *bad[] = { "train,train", "train,../x", "train,", ".hidden", "a/b" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct dataset_opts b = { .train_splits = bad[i] };
        ck_assert_int_eq(dataset_opts_check(&b, err, sizeof err), -1);
        ck_assert_ptr_nonnull(strstr(err, "--train-splits"));
    }
    struct dataset_opts bl = { .layout = "folders" };
    ck_assert_int_eq(dataset_opts_check(&bl, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "--layout folders"));
    struct dataset_opts bb = { .labels = "medium" };
    ck_assert_int_eq(dataset_opts_check(&bb, err, sizeof err), -1);
    struct dataset_opts ok = { .layout = "auto", .train_splits = "train,unlabeled", .labels = "coarse" };
    ck_assert_int_eq(dataset_opts_check(&ok, err, sizeof err), 0);
}
END_TEST

START_TEST(test_list)
{
    char err[DATASET_ERR_LEN];
    put_jpeg("d/img/a.jpg", 8, 8, 1);
    put_jpeg("d/img/b.jpg", 8, 8, 2);
    put_jpeg("d/img/sub/c.png", 8, 8, 3);
    put_jpeg("d/img/e.bin", 8, 8, 4); /* any name: a list names its files */
    put_jpeg("d/test/t.jpg", 8, 8, 5);
    const char list[] = "# path<TAB>label\n"
                        "img/b.jpg\t10\n"
                        "\n"
                        "img/sub/c.png\n"
                        "img/a.jpg\t2\r\n"
                        "img/e.bin\t2\n";
    put("d/lists/../train.tsv", list, sizeof list - 1);
    char lp[600];
    snprintf(lp, sizeof lp, "%s/d/train.tsv", tmpdir);
    struct dataset_opts o = { .list = lp };
    struct dataset *ds = dataset_open_opts(NULL, "train", &o, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    /* labelled lines first, in file order; then the unlabelled */
    const char *want[] = { "img/b.jpg", "img/a.jpg", "img/e.bin", "img/sub/c.png" };
    expect_paths(ds, want, 4);
    ck_assert_int_eq(dataset_format(ds), DATASET_LIST);
    ck_assert_uint_eq(dataset_labelled(ds), 3);
    /* numeric labels sort by value: "2" before "10" */
    ck_assert_uint_eq(dataset_num_classes(ds), 2);
    ck_assert_str_eq(dataset_class_name(ds, 0), "2");
    ck_assert_str_eq(dataset_class_name(ds, 1), "10");
    ck_assert_uint_eq(dataset_label(ds, 0), 1);
    ck_assert_uint_eq(dataset_label(ds, 1), 0);
    ck_assert_uint_eq(dataset_label(ds, 3), DATASET_NO_LABEL);
    expect_manifest(ds);
    uint8_t px[8 * 8 * 3];
    uint32_t w, h;
    ck_assert_int_eq(dataset_load_rgb(ds, 3, px, sizeof px, &w, &h, err, sizeof err), 0);
    char m1[65];
    snprintf(m1, sizeof m1, "%s", dataset_manifest(ds));
    dataset_destroy(&ds);
    /* the list as --data: the same index */
    ds = dataset_open(lp, "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_str_eq(dataset_manifest(ds), m1);
    dataset_destroy(&ds);
    ck_assert_ptr_null(dataset_open(lp, "test", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "--test-list"));
    /* a test list: labels mapped to the train list's classes */
    put("d/test.tsv", "test/t.jpg\t10\n", 14);
    char tp[600];
    snprintf(tp, sizeof tp, "%s/d/test.tsv", tmpdir);
    struct dataset_opts ot = { .list = lp, .test_list = tp };
    ck_assert_int_eq(dataset_split_exists(NULL, "test", &ot), 1);
    ds = dataset_open_opts(NULL, "test", &ot, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_label(ds, 0), 1);
    ck_assert_uint_eq(dataset_num_classes(ds), 2);
    dataset_destroy(&ds);
    put("d/test.tsv", "test/t.jpg\tzebra\n", 17);
    ck_assert_ptr_null(dataset_open_opts(NULL, "test", &ot, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "test.tsv line 1: label 'zebra' is not a class"));
    /* bad lines name their line */
    struct { const char *text, *expect; } bad[] = {
        { "img/a.jpg\n# c\nimg/nope.jpg\n", "train.tsv line 3: img/nope.jpg: No such file" },
        { "img/a.jpg\tx\ty\n", "line 1: more than two fields" },
        { "img/a.jpg\t\n", "line 1: empty label" },
        { "\tcat\n", "line 1: empty path" },
        { "img/a.jpg\nimg/b.jpg\nimg/a.jpg\tk\n", "line 3: img/a.jpg is already listed on line 1" },
        { "img/a.jpg cat\n", "separated by a TAB" },
        { "img\n", "line 1: img: a directory" },
        { "# nothing\n\n", "no image lines" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put("d/train.tsv", bad[i].text, strlen(bad[i].text));
        ck_assert_ptr_null(dataset_open_opts(NULL, "train", &o, err, sizeof err));
        ck_assert_msg(strstr(err, bad[i].expect) != NULL, "case %zu: %s", i, err);
    }
    /* --list with other --train-splits, --layout list without --list */
    struct dataset_opts c1 = { .list = lp, .train_splits = "train,unlabeled" };
    ck_assert_int_eq(dataset_opts_check(&c1, err, sizeof err), -1);
    struct dataset_opts c2 = { .layout = "list" };
    ck_assert_ptr_null(dataset_open_opts(root_path("d"), "train", &c2, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "--list FILE"));
}
END_TEST

/* CIFAR-100 record r: coarse label, fine label, planes; pixel (x, y) of channel c holds
 * x + 2y + 50c + r (mod 256). */
static void put_cifar100(const char *name, int records, int coarse0, int fine0)
{
    size_t len = (size_t)records * 3074;
    uint8_t *b = malloc(len);
    for (int r = 0; r < records; r++) {
        uint8_t *rec = b + (size_t)r * 3074;
        rec[0] = (uint8_t)((coarse0 + r) % 20);
        rec[1] = (uint8_t)((fine0 + 7 * r) % 100);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    rec[2 + c * 1024 + y * 32 + x] = (uint8_t)(x + 2 * y + 50 * c + r);
    }
    put(name, b, len);
    free(b);
}

START_TEST(test_cifar100_binary)
{
    char err[DATASET_ERR_LEN];
    put_cifar100("cifar-100-binary/train.bin", 4, 3, 90);
    put_cifar100("cifar-100-binary/test.bin", 2, 0, 0);
    struct dataset *ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_int_eq(dataset_format(ds), DATASET_CIFAR100_BIN);
    ck_assert_uint_eq(dataset_count(ds), 4);
    ck_assert_uint_eq(dataset_labelled(ds), 4);
    ck_assert_uint_eq(dataset_num_classes(ds), 100);
    ck_assert_str_eq(dataset_class_name(ds, 0), "apple");
    ck_assert_str_eq(dataset_class_name(ds, 99), "worm");
    ck_assert_uint_eq(dataset_label(ds, 2), (90 + 14) % 100); /* fine by default */
    ck_assert_str_eq(dataset_path(ds, 2), "train.bin#2");
    ck_assert_uint_eq(dataset_file_size(ds, 2), 3074);
    expect_manifest(ds);
    uint8_t px[3072];
    uint32_t w, h;
    ck_assert_int_eq(dataset_load_rgb(ds, 2, px, sizeof px, &w, &h, err, sizeof err), 0);
    ck_assert(w == 32 && h == 32);
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 3; c++)
                ck_assert_uint_eq(px[3 * (y * 32 + x) + c], (uint8_t)(x + 2 * y + 50 * c + 2));
    uint32_t s, l;
    size_t bad;
    ck_assert_uint_eq(dataset_probe_sides(ds, 10, &s, &l, &bad), 4);
    ck_assert(s == 32 && l == 32);
    char m1[65];
    snprintf(m1, sizeof m1, "%s", dataset_manifest(ds));
    dataset_destroy(&ds);
    /* coarse labels: 20 classes, the same images and manifest */
    struct dataset_opts co = { .labels = "coarse" };
    ds = dataset_open_opts(root_path(""), "train", &co, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_num_classes(ds), 20);
    ck_assert_uint_eq(dataset_label(ds, 2), 5);
    ck_assert_str_eq(dataset_class_name(ds, 19), "vehicles_2");
    ck_assert_str_eq(dataset_manifest(ds), m1);
    dataset_destroy(&ds);
    /* names from the archive's files */
    char names[400] = "";
    for (int c = 0; c < 20; c++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "k%d\n", c);
    put("cifar-100-binary/coarse_label_names.txt", names, strlen(names));
    ds = dataset_open_opts(root_path(""), "train", &co, err, sizeof err);
    ck_assert_str_eq(dataset_class_name(ds, 5), "k5");
    dataset_destroy(&ds);
    ck_assert_int_eq(dataset_split_exists(root_path(""), "test", NULL), 1);
    ds = dataset_open(root_path(""), "test", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_count(ds), 2);
    ck_assert_str_eq(dataset_path(ds, 1), "test.bin#1");
    dataset_destroy(&ds);
    /* --layout cifar10 does not read it; a bad label and a truncated file are refused */
    struct dataset_opts c10 = { .layout = "cifar10" };
    ck_assert_ptr_null(dataset_open_opts(root_path(""), "train", &c10, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "--layout cifar10"));
    struct dataset_opts tsp = { .train_splits = "train,unlabeled" };
    ck_assert_ptr_null(dataset_open_opts(root_path(""), "train", &tsp, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "one train split"));
    uint8_t rec[3074] = { 3, 100 };
    put("cifar-100-binary/train.bin", rec, sizeof rec);
    ck_assert_ptr_null(dataset_open(root_path(""), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "fine label 100"));
    put("cifar-100-binary/train.bin", rec, 3073);
    ck_assert_ptr_null(dataset_open(root_path(""), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "truncated"));
}
END_TEST

/* STL-10 X record r: 3 planes of 96x96, each stored column by column (byte x * 96 + y of a
 * plane is pixel (x, y)); pixel (x, y) of channel c holds 3x + 7y + 50c + r (mod 256), which
 * differs from its transpose. */
static void put_stl10_x(const char *name, int records, int r0)
{
    size_t len = (size_t)records * 27648;
    uint8_t *b = malloc(len);
    for (int r = 0; r < records; r++)
        for (int c = 0; c < 3; c++)
            for (int x = 0; x < 96; x++)
                for (int y = 0; y < 96; y++)
                    b[(size_t)r * 27648 + c * 9216 + x * 96 + y] =
                        (uint8_t)(3 * x + 7 * y + 50 * c + r0 + r);
    put(name, b, len);
    free(b);
}

START_TEST(test_stl10_binary)
{
    char err[DATASET_ERR_LEN];
    put_stl10_x("stl10_binary/train_X.bin", 3, 0);
    put("stl10_binary/train_y.bin", "\x01\x0a\x04", 3);
    put_stl10_x("stl10_binary/unlabeled_X.bin", 2, 100);
    put_stl10_x("stl10_binary/test_X.bin", 1, 200);
    put("stl10_binary/test_y.bin", "\x02", 1);
    struct dataset *ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_int_eq(dataset_format(ds), DATASET_STL10_BIN);
    ck_assert_uint_eq(dataset_count(ds), 3);
    ck_assert_uint_eq(dataset_num_classes(ds), 10);
    /* labels 1..10 in the file are classes 0..9 */
    ck_assert_uint_eq(dataset_label(ds, 0), 0);
    ck_assert_uint_eq(dataset_label(ds, 1), 9);
    ck_assert_str_eq(dataset_class_name(ds, 9), "truck");
    ck_assert_str_eq(dataset_class_name(ds, 3), "cat");
    ck_assert_uint_eq(dataset_file_size(ds, 0), 27648);
    dataset_destroy(&ds);
    struct dataset_opts o = { .train_splits = "unlabeled,train" };
    ds = dataset_open_opts(root_path(""), "train", &o, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    const char *want[] = { "train_X.bin#0", "train_X.bin#1", "train_X.bin#2",
                           "unlabeled_X.bin#0", "unlabeled_X.bin#1" };
    expect_paths(ds, want, 5);
    ck_assert_uint_eq(dataset_labelled(ds), 3);
    ck_assert_uint_eq(dataset_label(ds, 4), DATASET_NO_LABEL);
    expect_manifest(ds);
    static uint8_t px[96 * 96 * 3];
    uint32_t w, h;
    for (size_t i = 0; i < 5; i++) {
        int r = i < 3 ? (int)i : 100 + (int)i - 3;
        ck_assert_int_eq(dataset_load_rgb(ds, i, px, sizeof px, &w, &h, err, sizeof err), 0);
        ck_assert(w == 96 && h == 96);
        for (int y = 0; y < 96; y++)
            for (int x = 0; x < 96; x++)
                for (int c = 0; c < 3; c++)
                    ck_assert_uint_eq(px[3 * (y * 96 + x) + c],
                                      (uint8_t)(3 * x + 7 * y + 50 * c + r));
    }
    uint32_t s, l;
    size_t bad;
    ck_assert_uint_eq(dataset_probe_sides(ds, 10, &s, &l, &bad), 5);
    ck_assert(s == 96 && l == 96);
    dataset_destroy(&ds);
    ds = dataset_open(root_path(""), "test", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_label(ds, 0), 1);
    ck_assert_int_eq(dataset_load_rgb(ds, 0, px, sizeof px, &w, &h, err, sizeof err), 0);
    ck_assert_uint_eq(px[3 * (5 * 96 + 2) + 1], (uint8_t)(3 * 2 + 7 * 5 + 50 + 200));
    dataset_destroy(&ds);
    /* errors: a split STL-10 does not have, label 0, too few labels */
    struct dataset_opts x = { .train_splits = "train,extra" };
    ck_assert_ptr_null(dataset_open_opts(root_path(""), "train", &x, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "not extra"));
    put("stl10_binary/train_y.bin", "\x01\x00\x04", 3);
    ck_assert_ptr_null(dataset_open(root_path(""), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "record 1 has label 0"));
    put("stl10_binary/train_y.bin", "\x01\x02", 2);
    ck_assert_ptr_null(dataset_open(root_path(""), "train", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "fewer labels"));
}
END_TEST

/* on_skip: collects "path: why" lines */
struct skips {
    char text[8192];
    size_t n;
};

static void on_skip(void *ctx, const char *path, const char *why)
{
    struct skips *s = ctx;
    size_t len = strlen(s->text);
    snprintf(s->text + len, sizeof s->text - len, "%s: %s\n", path, why);
    s->n++;
}

static void link_at(const char *target, const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
    ck_assert_int_eq(symlink(target, p), 0);
}

START_TEST(test_diagnostics)
{
    char err[DATASET_ERR_LEN];
    put_jpeg("train/cat/a.jpg", 8, 8, 1);
    put_jpeg("train/cat/sub/b.jpg", 8, 8, 2);
    put_jpeg("train/cat/sub/sub2/c.jpg", 8, 8, 3);
    put_jpeg("train/dog/d.jpg", 8, 8, 4);
    put("train/dog/readme.txt", "x", 1);
    put_jpeg("train/loose.jpg", 8, 8, 5);
    link_at("..", "train/cat/sub/loop");          /* back to train/cat */
    link_at("../../train", "train/dog/up");       /* back to the split directory */
    link_at("/nonexistent/x.jpg", "train/dog/dangling.jpg");
    link_at("self.jpg", "train/dog/self.jpg");    /* a symlink loop */
    char fifo[600];
    snprintf(fifo, sizeof fifo, "%s/train/dog/pipe.jpg", tmpdir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    /* 17 levels below a class folder: one more than indexed */
    char deep[600] = "train/dog";
    for (int i = 0; i < 17; i++)
        strcat(deep, "/d");
    char deepf[700];
    snprintf(deepf, sizeof deepf, "%s/x.jpg", deep);
    put_jpeg(deepf, 8, 8, 6);
    int unreadable = geteuid() != 0; /* root reads everything */
    if (unreadable) {
        put_jpeg("train/dog/locked.jpg", 8, 8, 7);
        char lp[600];
        snprintf(lp, sizeof lp, "%s/train/dog/locked.jpg", tmpdir);
        ck_assert_int_eq(chmod(lp, 0), 0);
    }
    struct skips sk = { "", 0 };
    struct dataset_opts o = { .on_skip = on_skip, .skip_ctx = &sk };
    struct dataset *ds = dataset_open_opts(root_path(""), "train", &o, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    const char *want[] = { "train/cat/a.jpg", "train/cat/sub/b.jpg", "train/cat/sub/sub2/c.jpg",
                           "train/dog/d.jpg" };
    expect_paths(ds, want, 4);
    /* sub, sub2 and the 16 levels of d: the 17th is skipped */
    ck_assert_uint_eq(dataset_nested_dirs(ds), 2 + 16);
    ck_assert_ptr_nonnull(strstr(dataset_describe(ds), "18 sub-folders inside class folders"));
    const char *lines[] = {
        "train/cat/sub/loop: directory loop: leads back to train/cat, skipped\n",
        "train/dog/up: directory loop: leads back to train, skipped\n",
        "train/dog/dangling.jpg: dangling link\n",
        "train/dog/self.jpg: symlink loop\n",
        "train/dog/pipe.jpg: not a regular file\n",
        "train/dog/readme.txt: not an image name",
        "train/loose.jpg: not in a class folder",
        "/d/d: directory nested deeper than 16 levels, skipped\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        ck_assert_msg(strstr(sk.text, lines[i]) != NULL, "missing '%s' in\n%s", lines[i], sk.text);
    if (unreadable)
        ck_assert_msg(strstr(sk.text, "train/dog/locked.jpg: unreadable: Permission denied"),
                      "%s", sk.text);
    size_t expect_n = 8 + (size_t)unreadable;
    ck_assert_msg(sk.n == expect_n, "%zu skips:\n%s", sk.n, sk.text);
    ck_assert_uint_eq(dataset_skipped(ds), expect_n);
    /* each skip is one short line */
    for (const char *p = sk.text, *e; (e = strchr(p, '\n')) != NULL; p = e + 1)
        ck_assert_int_lt(e - p, 200);
    dataset_destroy(&ds);
    /* without a callback: counted only */
    ds = dataset_open(root_path(""), "train", err, sizeof err);
    ck_assert_uint_eq(dataset_skipped(ds), expect_n);
    dataset_destroy(&ds);
    /* in a flat split the same loop is skipped too */
    struct dataset_opts fo = { .layout = "flat" };
    ds = dataset_open_opts(root_path(""), "train", &fo, err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_count(ds), 5); /* with train/loose.jpg */
    ck_assert_uint_eq(dataset_nested_dirs(ds), 0);
    dataset_destroy(&ds);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("dataset");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_imagefolder_order_labels_skips);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_cifar_binary);
    tcase_add_test(tc, test_flat);
    tcase_add_test(tc, test_flat_root);
    tcase_add_test(tc, test_train_unlabeled);
    tcase_add_test(tc, test_list);
    tcase_add_test(tc, test_cifar100_binary);
    tcase_add_test(tc, test_stl10_binary);
    tcase_add_test(tc, test_diagnostics);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
