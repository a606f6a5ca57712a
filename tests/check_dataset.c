/* Dataset index: ImageFolder order (bytewise class and file order, nested directories),
 * skipped files, split handling and labels, the manifest (against an independent SHA-256 of
 * the documented lines; stable, sensitive to renames and sizes), the CIFAR-10 binary layout,
 * loading, and the error paths. Everything is built in a temporary directory. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int main(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("dataset");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_imagefolder_order_labels_skips);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_cifar_binary);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
