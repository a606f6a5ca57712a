/* Unit tests for the linear probe (evald/linear.h): the objective's gradient against central
 * finite differences and its value against a plain double loop, linear_scores against a plain
 * loop, the fit reaching a stationary point (and, on separable data, every training row),
 * warm starts, the held-out selection and bad input. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "evald/linear.h"

/* n rows of d features: class centres (scaled by sep) plus unit noise; labels uniform */
static void make(float *x, uint32_t *y, size_t n, size_t d, size_t C, double sep, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    double *c = malloc(C * d * sizeof *c);
    ck_assert_ptr_nonnull(c);
    struct rng rc;
    rng_seed(&rc, 1234);
    for (size_t i = 0; i < C * d; i++)
        c[i] = sep * rng_normal(&rc);
    for (size_t i = 0; i < n; i++) {
        y[i] = (uint32_t)rng_below(&r, C);
        for (size_t j = 0; j < d; j++)
            x[i * d + j] = (float)(c[y[i] * d + j] + rng_normal(&r));
    }
    free(c);
}

/* the objective in plain double loops */
static double plain_objective(const float *Z, const uint32_t *y, size_t n, size_t d, size_t C,
                              double lambda, const double *w)
{
    double loss = 0, reg = 0;
    for (size_t i = 0; i < n; i++) {
        double l[16], mx = -INFINITY, z = 0;
        for (size_t c = 0; c < C; c++) {
            l[c] = w[C * d + c];
            for (size_t j = 0; j < d; j++)
                l[c] += w[c * d + j] * Z[i * d + j];
            mx = l[c] > mx ? l[c] : mx;
        }
        for (size_t c = 0; c < C; c++)
            z += exp(l[c] - mx);
        loss += log(z) + mx - l[y[i]];
    }
    for (size_t i = 0; i < C * d; i++)
        reg += w[i] * w[i];
    return loss / (double)n + 0.5 * lambda * reg;
}

START_TEST(test_gradient_finite_differences)
{
    const size_t n = 37, d = 6, C = 4, N = C * d + C;
    float Z[37 * 6];
    uint32_t y[37];
    make(Z, y, n, d, C, 0.5, 3);
    double w[28], g[28], gp[28], gm[28];
    struct rng r;
    rng_seed(&r, 9);
    for (size_t i = 0; i < N; i++)
        w[i] = 0.3 * rng_normal(&r);
    const double lambda = 0.05;
    double f = linear_objective(Z, y, n, (int)d, (int)C, lambda, w, g);
    ck_assert_double_eq_tol(f, plain_objective(Z, y, n, d, C, lambda, w), 1e-5);
    for (size_t i = 0; i < N; i++) {
        const double h = 1e-3, w0 = w[i];
        w[i] = w0 + h;
        double fp = linear_objective(Z, y, n, (int)d, (int)C, lambda, w, gp);
        w[i] = w0 - h;
        double fm = linear_objective(Z, y, n, (int)d, (int)C, lambda, w, gm);
        w[i] = w0;
        double fd = (fp - fm) / (2 * h);
        ck_assert_msg(fabs(fd - g[i]) < 2e-3 * (1 + fabs(fd)), "entry %zu: analytic %g, FD %g", i,
                      g[i], fd);
    }
}
END_TEST

START_TEST(test_fit_stationary_and_scores)
{
    const size_t n = 400, d = 10, C = 3;
    float *x = malloc(n * d * sizeof *x), *S = malloc(n * C * sizeof *S);
    uint32_t *y = malloc(n * sizeof *y);
    ck_assert(x && S && y);
    make(x, y, n, d, C, 0.4, 5);
    for (size_t i = 0; i < n; i++) /* shifted, scaled columns: the standardisation matters */
        for (size_t j = 0; j < d; j++)
            x[i * d + j] = x[i * d + j] * (float)(j + 1) + 3.0f * (float)j;
    struct linear_model m = { 0 };
    struct linear_fit_info info;
    ck_assert_int_eq(linear_fit(&m, x, y, n, (int)d, (int)C, 1e-3, 1000, 1e-6, &info), 0);
    ck_assert(info.converged);
    ck_assert(info.grad_max < 1e-5);
    /* the gradient at the returned weights, on the standardised rows, is (near) zero */
    float *Z = malloc(n * d * sizeof *Z);
    double *g = malloc((C * d + C) * sizeof *g);
    ck_assert(Z && g);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++)
            Z[i * d + j] = (x[i * d + j] - m.mean[j]) * m.inv_std[j];
    linear_objective(Z, y, n, (int)d, (int)C, 1e-3, m.w, g);
    for (size_t i = 0; i < C * d + C; i++)
        ck_assert_msg(fabs(g[i]) < 1e-6, "gradient entry %zu is %g", i, g[i]);
    /* scores against a plain loop */
    linear_scores(&m, x, n, S);
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < C; c++) {
            double s = m.w[C * d + c];
            for (size_t j = 0; j < d; j++)
                s += m.w[c * d + j] * ((double)x[i * d + j] - m.mean[j]) * m.inv_std[j];
            ck_assert_double_eq_tol(S[i * C + c], s, 1e-3 * (1 + fabs(s)));
        }
    /* a warm start from the optimum stops at once */
    struct linear_fit_info again;
    ck_assert_int_eq(linear_fit(&m, x, y, n, (int)d, (int)C, 1e-3, 1000, 1e-6, &again), 0);
    ck_assert_int_le(again.iters, 1);
    double top1, top5, pc[3];
    ck_assert_int_eq(linear_accuracy(&m, x, y, n, &top1, &top5, pc), 0);
    ck_assert(top1 > 0.6 && top5 == 1.0); /* 3 classes: top-5 holds all */
    linear_model_free(&m);
    free(x), free(S), free(y), free(Z), free(g);
}
END_TEST

START_TEST(test_separable_and_select)
{
    const size_t n = 500, d = 8, C = 5;
    float *x = malloc(n * d * sizeof *x);
    uint32_t *y = malloc(n * sizeof *y);
    ck_assert(x && y);
    make(x, y, n, d, C, 3.0, 8);
    struct linear_model m = { 0 };
    struct linear_selection sel;
    struct linear_fit_info info;
    ck_assert_int_eq(linear_select(&m, x, y, n, (int)d, (int)C, 0, 1000, 1e-6, &sel, &info), 0);
    ck_assert_uint_eq(sel.n_fit + sel.n_val, n);
    ck_assert(sel.n_val > n / 8 && sel.n_val < n / 3);
    int found = 0;
    for (int i = 0; i < LINEAR_GRID; i++) {
        ck_assert(sel.val_top1[i] >= 0 && sel.val_top1[i] <= 1);
        found |= linear_grid(i) == sel.lambda;
    }
    ck_assert(found);
    double top1, top5, pc[5];
    ck_assert_int_eq(linear_accuracy(&m, x, y, n, &top1, &top5, pc), 0);
    ck_assert_msg(top1 > 0.99, "train top-1 %g on well-separated clusters", top1);
    for (size_t c = 0; c < C; c++)
        ck_assert(pc[c] > 0.95);
    ck_assert_double_eq(linear_grid(0), 0.1);
    ck_assert_double_eq_tol(linear_grid(LINEAR_GRID - 1), 1e-8, 1e-20);
    linear_model_free(&m);
    free(x), free(y);
}
END_TEST

START_TEST(test_bad_input)
{
    float x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    uint32_t y[4] = { 0, 1, 0, 1 };
    struct linear_model m = { 0 };
    errno = 0;
    ck_assert_int_eq(linear_fit(&m, x, y, 4, 2, 1, 0.1, 10, 1e-6, NULL), -1); /* one class */
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(linear_fit(&m, x, y, 0, 2, 2, 0.1, 10, 1e-6, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    uint32_t bad[4] = { 0, 2, 0, 1 };
    ck_assert_int_eq(linear_fit(&m, x, bad, 4, 2, 2, 0.1, 10, 1e-6, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    x[3] = NAN;
    ck_assert_int_eq(linear_fit(&m, x, y, 4, 2, 2, 0.1, 10, 1e-6, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    x[3] = 4;
    ck_assert_int_eq(linear_fit(&m, x, y, 4, 2, 2, 0.1, 100, 1e-6, NULL), 0);
    linear_model_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("linear");
    TCase *tc = tcase_create("linear");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_gradient_finite_differences);
    tcase_add_test(tc, test_fit_stationary_and_scores);
    tcase_add_test(tc, test_separable_and_select);
    tcase_add_test(tc, test_bad_input);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
