/* Unit tests for weight initialisation (common/nn/net.h, enum net_init): the distribution of
 * the first convolution's weights under each scheme, the names accepted, and that the
 * scheme changes only the convolutions (the output Linear layer is torch.nn.Linear's in
 * every case). */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "common/nn/net.h"

/* resnet20's stem: 16 x 3 x 3 x 3 weights, first in the parameter block (net.h). */
#define STEM_N 432
#define STEM_FAN_IN 27.0
#define STEM_FAN_OUT 144.0

static void stem_stats(int init, double *maxabs, double *std)
{
    struct net_config cfg = { "resnet20", 8, 8, 8, 2, 7, init, NET_STEM_CIFAR, 0 };
    struct net *n = net_new(&cfg);
    ck_assert_ptr_nonnull(n);
    const float *w = net_params(n);
    double s = 0.0, s2 = 0.0, m = 0.0;
    for (int i = 0; i < STEM_N; i++) {
        s += w[i];
        s2 += (double)w[i] * w[i];
        if (fabs(w[i]) > m) m = fabs(w[i]);
    }
    double mean = s / STEM_N;
    *std = sqrt(s2 / STEM_N - mean * mean);
    *maxabs = m;
    net_destroy(&n);
}

START_TEST(test_init_torch)
{
    /* U(-b, b), b = 1/sqrt(fan_in): bounded by b, std b/sqrt(3) (432 draws: within 10 %) */
    double m, sd, b = 1.0 / sqrt(STEM_FAN_IN);
    stem_stats(NET_INIT_TORCH, &m, &sd);
    ck_assert_double_le(m, b);
    ck_assert_double_ge(m, 0.95 * b);
    ck_assert_double_eq_tol(sd, b / sqrt(3.0), 0.1 * b / sqrt(3.0));
}
END_TEST

START_TEST(test_init_he)
{
    double m, sd, want = sqrt(2.0 / STEM_FAN_IN);
    stem_stats(NET_INIT_HE, &m, &sd);
    ck_assert_double_eq_tol(sd, want, 0.1 * want);
    ck_assert_double_gt(m, 2.0 * want); /* a normal, not a bounded uniform */
}
END_TEST

START_TEST(test_init_he_out)
{
    double m, sd, want = sqrt(2.0 / STEM_FAN_OUT);
    stem_stats(NET_INIT_HE_OUT, &m, &sd);
    ck_assert_double_eq_tol(sd, want, 0.1 * want);
}
END_TEST

START_TEST(test_init_linear_same)
{
    /* the output layer (the tail of the block) is drawn the same way whatever the scheme;
     * the draws differ because the convolutions consumed the generator differently, so
     * compare the bound instead: U(-1/sqrt(64), 1/sqrt(64)) */
    const int inits[] = { NET_INIT_HE, NET_INIT_TORCH, NET_INIT_HE_OUT };
    for (int k = 0; k < 3; k++) {
        struct net_config cfg = { "resnet20", 8, 8, 8, 2, 7, inits[k], NET_STEM_CIFAR, 0 };
        struct net *n = net_new(&cfg);
        ck_assert_ptr_nonnull(n);
        float *bias = net_fc_bias(n);
        for (int i = 0; i < 8; i++) ck_assert_float_le(fabsf(bias[i]), 0.125f);
        const float *w = bias - 8 * 64; /* fc weight (8, 64) precedes its bias */
        double m = 0.0;
        for (int i = 0; i < 8 * 64; i++)
            if (fabs(w[i]) > m) m = fabs(w[i]);
        ck_assert_double_le(m, 0.125);
        ck_assert_double_ge(m, 0.11);
        net_destroy(&n);
    }
}
END_TEST

START_TEST(test_init_parse)
{
    ck_assert_int_eq(net_init_parse("he"), NET_INIT_HE);
    ck_assert_int_eq(net_init_parse("torch"), NET_INIT_TORCH);
    ck_assert_int_eq(net_init_parse("he-out"), NET_INIT_HE_OUT);
    ck_assert_int_eq(net_init_parse("xavier"), -1);
    ck_assert_int_eq(net_init_parse(""), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_init");
    TCase *tc = tcase_create("init");
    tcase_add_test(tc, test_init_torch);
    tcase_add_test(tc, test_init_he);
    tcase_add_test(tc, test_init_he_out);
    tcase_add_test(tc, test_init_linear_same);
    tcase_add_test(tc, test_init_parse);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
