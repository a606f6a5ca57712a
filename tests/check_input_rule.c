/* The rules of docs/recipes.md ("Resolution, stem and epochs from the data"), in
 * trainer/config.h: the training size from the images' median short side, the stem from the
 * size and the epochs from the number of images, on a table of the resolutions users bring;
 * and the dataset header probe they read (common/dataset.h) on real JPEG files of mixed
 * sizes, a corrupt one among them. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/dataset.h"
#include "common/jpeg.h"
#include "common/nn/net.h"
#include "trainer/config.h"

START_TEST(test_rules)
{
    static const struct { uint32_t native; int size, stem; } t[] = {
        { 0, 32, NET_STEM_CIFAR },    { 28, 32, NET_STEM_CIFAR },  { 32, 32, NET_STEM_CIFAR },
        { 39, 32, NET_STEM_CIFAR },   { 40, 32, NET_STEM_CIFAR },  { 48, 48, NET_STEM_S2 },
        { 64, 64, NET_STEM_S2 },      { 79, 64, NET_STEM_S2 },     { 80, 80, NET_STEM_S2 },
        { 96, 96, NET_STEM_S4 },      { 100, 96, NET_STEM_S4 },    { 128, 128, NET_STEM_S4 },
        { 160, 128, NET_STEM_S4 },    { 500, 128, NET_STEM_S4 },   { 4000, 128, NET_STEM_S4 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int s = trainer_size_rule(t[i].native);
        ck_assert_msg(s == t[i].size, "native %u: size %d, expected %d", t[i].native, s, t[i].size);
        int st = trainer_stem_rule(s);
        ck_assert_msg(st == t[i].stem, "size %d: stem %s, expected %s", s, net_stem_name(st),
                      net_stem_name(t[i].stem));
    }
    /* epochs, one view: 500,000 images seen, within 20..200 */
    ck_assert_int_eq(trainer_epochs_rule(50000, 1), 20);   /* CIFAR-10 */
    ck_assert_int_eq(trainer_epochs_rule(1281167, 1), 20); /* ImageNet */
    ck_assert_int_eq(trainer_epochs_rule(5000, 1), 100);
    ck_assert_int_eq(trainer_epochs_rule(9469, 1), 53);
    ck_assert_int_eq(trainer_epochs_rule(2000, 1), 200);
    ck_assert_int_eq(trainer_epochs_rule(120, 1), 200);
    ck_assert_int_eq(trainer_epochs_rule(0, 1), 20);
    /* two views: 500,000 views, within 10..100 epochs (20..200 views of each image) */
    ck_assert_int_eq(trainer_epochs_rule(50000, 2), 10);   /* CIFAR-10 */
    ck_assert_int_eq(trainer_epochs_rule(5000, 2), 50);    /* tinyimagenet10 */
    ck_assert_int_eq(trainer_epochs_rule(9469, 2), 27);
    ck_assert_int_eq(trainer_epochs_rule(120, 2), 100);
    ck_assert_int_eq(trainer_epochs_rule(0, 2), 10);
    /* given sizes outside the data rule */
    ck_assert_int_eq(trainer_stem_rule(16), NET_STEM_CIFAR);
    ck_assert_int_eq(trainer_stem_rule(45), NET_STEM_CIFAR); /* 45/32 < 32/22.5 */
    ck_assert_int_eq(trainer_stem_rule(224), NET_STEM_S4);
}
END_TEST

static void write_jpeg(const char *path, uint32_t w, uint32_t h)
{
    uint8_t *rgb = calloc((size_t)w * h, 3);
    ck_assert_ptr_nonnull(rgb);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) rgb[i] = (uint8_t)(i * 7);
    uint8_t *out;
    size_t len;
    ck_assert_int_eq(jpeg_encode_rgb(rgb, w, h, 90, &out, &len), 0);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(out, 1, len, f), len);
    fclose(f);
    free(out);
    free(rgb);
}

START_TEST(test_probe)
{
    char root[] = "/tmp/npid-check-input.XXXXXX", p[512];
    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(p, sizeof p, "%s/train", root);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/train/a", root);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    /* short sides 60, 70, 80, 90, 100 (landscape and portrait) and one corrupt file */
    static const uint32_t wh[5][2] = { { 90, 60 }, { 70, 120 }, { 80, 80 }, { 200, 90 }, { 100, 150 } };
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/train/a/%d.jpg", root, i);
        write_jpeg(p, wh[i][0], wh[i][1]);
    }
    snprintf(p, sizeof p, "%s/train/a/9.jpg", root);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("not a jpeg", f);
    fclose(f);
    char err[DATASET_ERR_LEN];
    struct dataset *ds = dataset_open(root, "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    uint32_t s, l;
    size_t bad;
    ck_assert_uint_eq(dataset_probe_sides(ds, 200, &s, &l, &bad), 5);
    ck_assert_uint_eq(bad, 1);
    ck_assert_uint_eq(s, 80);  /* median of 60 70 80 90 100 */
    ck_assert_uint_eq(l, 120); /* median of 90 120 80 200 150 */
    ck_assert_int_eq(trainer_size_rule(s), 80);
    /* a sample of 2 of the 6: images 0 and 3 */
    ck_assert_uint_eq(dataset_probe_sides(ds, 2, &s, &l, &bad), 2);
    ck_assert_uint_eq(s, 90);
    dataset_destroy(&ds);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("input_rule");
    TCase *tc = tcase_create("input_rule");
    tcase_add_test(tc, test_rules);
    tcase_add_test(tc, test_probe);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
