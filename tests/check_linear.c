/* Unit tests for the linear probe (evald/linear.h): the objective's gradient against central
 * finite differences, its value and gradient against plain double loops at every kernel level
 * and thread count (blocked, fused and threaded in evald/linear.c), linear_scores against a
 * plain loop, the fit reaching a stationary point (and, on separable data, every training row),
 * warm starts, the held-out selection and bad input. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/blas.h"
#include "common/cpu.h"
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

/* the objective in plain double loops (C <= 16), and its gradient into g unless g is NULL */
static double plain_objective(const float *Z, const uint32_t *y, size_t n, size_t d, size_t C,
                              double lambda, const double *w, double *g)
{
    double loss = 0, reg = 0;
    if (g)
        memset(g, 0, (C * d + C) * sizeof *g);
    for (size_t i = 0; i < n; i++) {
        double l[16] = { 0 }, mx = -INFINITY, z = 0;
        for (size_t c = 0; c < C; c++) {
            l[c] = w[C * d + c];
            for (size_t j = 0; j < d; j++)
                l[c] += w[c * d + j] * Z[i * d + j];
            mx = l[c] > mx ? l[c] : mx;
        }
        for (size_t c = 0; c < C; c++)
            z += exp(l[c] - mx);
        loss += log(z) + mx - l[y[i]];
        for (size_t c = 0; g && c < C; c++) {
            double p = (exp(l[c] - mx) / z - (c == y[i])) / (double)n;
            for (size_t j = 0; j < d; j++)
                g[c * d + j] += p * Z[i * d + j];
            g[C * d + c] += p;
        }
    }
    for (size_t i = 0; i < C * d; i++) {
        reg += w[i] * w[i];
        if (g)
            g[i] += lambda * w[i];
    }
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
    ck_assert_double_eq_tol(f, plain_objective(Z, y, n, d, C, lambda, w, NULL), 1e-5);
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

static double max_abs_diff(const double *a, const double *b, size_t n, double *bmax)
{
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs(a[i] - b[i]));
        m = fmax(m, fabs(b[i]));
    }
    *bmax = m;
    return e;
}

/* linear_objective at kernel level _i (common/cpu.h) against plain_objective: f within a
 * relative 1e-4, the gradient within 1e-4 of its largest entry. Row counts that are not a
 * whole number of the 64-row blocks (and one below a block), d not a whole number of vectors,
 * C odd and even (the kernels take classes in pairs and fours), logits of several units. And
 * the same f and g, bit for bit, on 1, 2 and 3 threads. */
START_TEST(test_objective_vs_plain)
{
    enum cpu_isa want = (enum cpu_isa)_i;
    if (cpu_isa_set(want) != want) {
        fprintf(stderr, "check_linear: this CPU has no %s kernels; that level not run\n",
                cpu_isa_name(want));
        cpu_isa_set(cpu_isa_detected());
        return;
    }
    static const size_t shapes[][2] = { { 1000, 37 }, { 203, 64 }, { 5, 19 } }; /* n, d */
    static const size_t classes[] = { 2, 10, 13 };
    const int threads0 = blas_threads();
    struct rng r;
    rng_seed(&r, 21);
    for (size_t si = 0; si < 3; si++)
        for (size_t ci = 0; ci < 3; ci++) {
            const size_t n = shapes[si][0], d = shapes[si][1], C = classes[ci], N = C * d + C;
            float *Z = malloc(n * d * sizeof *Z);
            uint32_t *y = malloc(n * sizeof *y);
            double *w = malloc(N * sizeof *w), *g = malloc(N * sizeof *g);
            double *gr = malloc(N * sizeof *gr), *g1 = malloc(N * sizeof *g1);
            ck_assert(Z && y && w && g && gr && g1);
            for (size_t i = 0; i < n * d; i++)
                Z[i] = (float)rng_normal(&r);
            for (size_t i = 0; i < n; i++)
                y[i] = (uint32_t)rng_below(&r, C);
            for (size_t i = 0; i < N; i++) /* logits with a spread of about 3 */
                w[i] = (i < C * d ? 3.0 / sqrt((double)d) : 1.0) * rng_normal(&r);
            double fr = plain_objective(Z, y, n, d, C, 1e-3, w, gr), f1 = 0, gmax;
            for (int nt = 1; nt <= 3; nt++) {
                blas_set_threads(nt);
                double f = linear_objective(Z, y, n, (int)d, (int)C, 1e-3, w, g);
                double e = max_abs_diff(g, gr, N, &gmax);
                ck_assert_msg(fabs(f - fr) <= 1e-4 * fabs(fr), "%s n %zu d %zu C %zu: f %.9g, plain %.9g",
                              cpu_isa_name(want), n, d, C, f, fr);
                ck_assert_msg(e <= 1e-4 * gmax, "%s n %zu d %zu C %zu: gradient off by %g (largest %g)",
                              cpu_isa_name(want), n, d, C, e, gmax);
                if (nt == 1) {
                    f1 = f;
                    memcpy(g1, g, N * sizeof *g);
                } else {
                    ck_assert_msg(f == f1 && memcmp(g, g1, N * sizeof *g) == 0,
                                  "%s n %zu d %zu C %zu: %d threads differ from one", cpu_isa_name(want),
                                  n, d, C, nt);
                }
            }
            free(Z), free(y), free(w), free(g), free(gr), free(g1);
        }
    blas_set_threads(threads0);
    cpu_isa_set(cpu_isa_detected());
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
    tcase_add_loop_test(tc, test_objective_vs_plain, CPU_ISA_BASE, CPU_ISA_AVX512 + 1);
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
