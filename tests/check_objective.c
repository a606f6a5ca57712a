/* Unit tests for the objectives (trainer/objective.h): loss values against a direct double
 * computation of the formulas in ../shared/spec/algorithm.md, finite-difference gradients of
 * NCE (shared and per-element draw), InfoNCE, the full softmax and the proximal term, InfoNCE
 * with every other bank row as its negatives against the full softmax, two-view InfoNCE (loss
 * and finite-difference gradient through both roles of each feature), Z handling
 * (first-step estimate, frozen, EMA, setter), shared == per-element on the same rows, the
 * blocked multi-threaded softmax against a plain double loop, and the vector exp. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/team.h"
#include "common/nn/vec.h"
#include "tests/check_nn_util.h"
#include "trainer/objective.h"

#define B_ 5
#define D_ 8
#define M_ 7
#define N_ 40

static void unit_rows(float *x, int rows, int d, uint64_t seed)
{
    fill_normal(x, (size_t)rows * d, 1.0, seed);
    for (int i = 0; i < rows; i++) {
        double s = sqrt(dot_d(x + i * d, x + i * d, d));
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(x[i * d + j] / s);
    }
}

struct obj_ctx {
    struct objective *o;
    int kind; /* 0 shared, 1 per-element, 2 softmax, 3 InfoNCE */
    float f[B_ * D_], pos[B_ * D_], neg[M_ * D_], negpe[B_ * M_ * D_], bank[N_ * D_];
    uint32_t idx[B_];
    float df[B_ * D_];
};

static double obj_loss(void *p)
{
    struct obj_ctx *c = p;
    float scratch[B_ * D_];
    switch (c->kind) {
    case 0: return objective_nce_shared(c->o, c->f, c->pos, c->neg, B_, scratch);
    case 1: return objective_nce_per_element(c->o, c->f, c->pos, c->negpe, B_, scratch);
    case 3: return objective_infonce_shared(c->o, c->f, c->pos, c->neg, B_, scratch);
    default: return objective_softmax(c->o, c->f, c->bank, c->idx, B_, scratch);
    }
}

static void ctx_fill(struct obj_ctx *c)
{
    unit_rows(c->f, B_, D_, 81);
    unit_rows(c->pos, B_, D_, 82);
    unit_rows(c->neg, M_, D_, 83);
    unit_rows(c->negpe, B_ * M_, D_, 84);
    unit_rows(c->bank, N_, D_, 85);
    for (int i = 0; i < B_; i++) c->idx[i] = (uint32_t)(i * 7 + 3) % N_;
}

/* Direct NCE loss in double for element scores against rows neg_i (m each). */
static double nce_ref(const float *f, const float *pos, const float *neg, int per_element,
                      double tau, double z, double lambda)
{
    double c = (double)M_ / N_, loss = 0.0;
    for (int i = 0; i < B_; i++) {
        double p0 = exp(dot_d(f + i * D_, pos + i * D_, D_) / tau) / z;
        loss -= log(p0 / (p0 + c + 1e-7));
        for (int j = 0; j < M_; j++) {
            const float *v = per_element ? neg + ((size_t)i * M_ + j) * D_ : neg + j * D_;
            double p = exp(dot_d(f + i * D_, v, D_) / tau) / z;
            loss -= log(c / (p + c + 1e-7));
        }
        for (int j = 0; j < D_; j++) {
            double d = f[i * D_ + j] - pos[i * D_ + j];
            loss += lambda * d * d;
        }
    }
    return loss / B_;
}

START_TEST(test_nce_grad)
{
    /* _i: bit 0 per-element, bit 1 proximal term */
    int per = _i & 1;
    double lambda = (_i & 2) ? 0.7 : 0.0;
    struct objective_config cfg = { B_, D_, M_, N_, 0.1, OBJ_Z_FROZEN, 0.99, lambda, 0, NULL };
    struct obj_ctx *c = calloc(1, sizeof(*c));
    c->o = objective_new(&cfg);
    ck_assert_ptr_nonnull(c->o);
    c->kind = per;
    ctx_fill(c);
    objective_set_z(c->o, 3.0 * N_);
    double loss = per ? objective_nce_per_element(c->o, c->f, c->pos, c->negpe, B_, c->df)
                      : objective_nce_shared(c->o, c->f, c->pos, c->neg, B_, c->df);
    double ref = nce_ref(c->f, c->pos, per ? c->negpe : c->neg, per, 0.1, 3.0 * N_, lambda);
    ck_assert_msg(fabs(loss - ref) < 1e-4 * fabs(ref), "loss %g vs %g", loss, ref);
    double e = gc_rel_error(obj_loss, c, c->f, c->df, B_ * D_, B_ * D_, 1e-3f);
    ck_assert_msg(e < 1e-2, "case %d: df rel err %g", _i, e);
    objective_destroy(&c->o);
    ck_assert_ptr_null(c->o);
    free(c);
}
END_TEST

START_TEST(test_softmax_grad)
{
    double lambda = _i ? 0.5 : 0.0;
    struct objective_config cfg = { B_, D_, 0, N_, 0.1, OBJ_Z_FROZEN, 0.99, lambda, 1, NULL };
    struct obj_ctx *c = calloc(1, sizeof(*c));
    c->o = objective_new(&cfg);
    ck_assert_ptr_nonnull(c->o);
    c->kind = 2;
    ctx_fill(c);
    double loss = objective_softmax(c->o, c->f, c->bank, c->idx, B_, c->df);
    double ref = 0.0;
    for (int i = 0; i < B_; i++) {
        double s = 0.0, t = 0.0;
        for (int j = 0; j < N_; j++) s += exp(dot_d(c->f + i * D_, c->bank + j * D_, D_) / 0.1);
        t = dot_d(c->f + i * D_, c->bank + c->idx[i] * D_, D_) / 0.1;
        ref += log(s) - t;
        for (int j = 0; j < D_; j++) {
            double d = c->f[i * D_ + j] - c->bank[c->idx[i] * D_ + j];
            ref += lambda * d * d;
        }
    }
    ref /= B_;
    ck_assert_msg(fabs(loss - ref) < 1e-4 * fabs(ref), "loss %g vs %g", loss, ref);
    double e = gc_rel_error(obj_loss, c, c->f, c->df, B_ * D_, B_ * D_, 1e-3f);
    ck_assert_msg(e < 1e-2, "softmax lambda %g: df rel err %g", lambda, e);
    objective_destroy(&c->o);
    free(c);
}
END_TEST

/* InfoNCE on the shared draw: the loss against a direct double computation (positive and
 * m negatives, -log of the positive's softmax share), finite-difference dL/df, Z untouched. */
START_TEST(test_infonce_grad)
{
    double lambda = _i ? 0.6 : 0.0, tau = 0.1;
    struct objective_config cfg = { B_, D_, M_, N_, tau, OBJ_Z_FROZEN, 0.99, lambda, 0, NULL };
    struct obj_ctx *c = calloc(1, sizeof(*c));
    c->o = objective_new(&cfg);
    ck_assert_ptr_nonnull(c->o);
    c->kind = 3;
    ctx_fill(c);
    /* one negative equal to element 0's positive and one far above the rest: the
       log-sum-exp must hold both */
    memcpy(c->neg, c->pos, sizeof(float) * D_);
    memcpy(c->neg + 2 * D_, c->f + D_, sizeof(float) * D_);
    double loss = objective_infonce_shared(c->o, c->f, c->pos, c->neg, B_, c->df);
    double ref = 0.0;
    for (int i = 0; i < B_; i++) {
        double s0 = dot_d(c->f + i * D_, c->pos + i * D_, D_) / tau, z = exp(s0);
        for (int j = 0; j < M_; j++) z += exp(dot_d(c->f + i * D_, c->neg + j * D_, D_) / tau);
        ref += log(z) - s0;
        for (int j = 0; j < D_; j++) {
            double d = c->f[i * D_ + j] - c->pos[i * D_ + j];
            ref += lambda * d * d;
        }
    }
    ref /= B_;
    ck_assert_msg(fabs(loss - ref) < 1e-5 * fabs(ref), "loss %.9g vs %.9g", loss, ref);
    ck_assert_double_eq(objective_z(c->o), 0.0);
    double e = gc_rel_error(obj_loss, c, c->f, c->df, B_ * D_, B_ * D_, 1e-3f);
    ck_assert_msg(e < 1e-2, "InfoNCE lambda %g: df rel err %g", lambda, e);
    objective_destroy(&c->o);
    free(c);
}
END_TEST

/* InfoNCE whose negatives are exactly the other n - 1 bank rows (one element per call, as
 * the draw is shared by a batch) gives the full softmax's loss and dL/df per element. */
START_TEST(test_infonce_equals_softmax)
{
    double tau = 0.07;
    struct obj_ctx *c = calloc(1, sizeof(*c));
    ctx_fill(c);
    struct objective_config sc = { B_, D_, 0, N_, tau, OBJ_Z_FROZEN, 0.99, 0.0, 1, NULL };
    struct objective_config ic = { 1, D_, N_ - 1, N_, tau, OBJ_Z_FROZEN, 0.99, 0.0, 0, NULL };
    struct objective *so = objective_new(&sc), *io = objective_new(&ic);
    ck_assert(so && io);
    float dsm[B_ * D_], dinf[D_], others[(N_ - 1) * D_];
    double lsm = objective_softmax(so, c->f, c->bank, c->idx, B_, dsm), linf = 0.0;
    for (int i = 0; i < B_; i++) {
        for (int j = 0, k = 0; j < N_; j++)
            if ((uint32_t)j != c->idx[i])
                memcpy(others + (size_t)k++ * D_, c->bank + (size_t)j * D_, sizeof(float) * D_);
        linf += objective_infonce_shared(io, c->f + i * D_, c->bank + c->idx[i] * D_, others, 1,
                                         dinf);
        /* the softmax's df is a mean over B_: element i's share times B_ */
        for (int k = 0; k < D_; k++)
            ck_assert_msg(fabsf(dinf[k] - dsm[i * D_ + k] * B_) < 1e-4f * (1 + fabsf(dinf[k])),
                          "element %d df[%d] %g vs %g", i, k, dinf[k], dsm[i * D_ + k] * B_);
    }
    linf /= B_;
    ck_assert_msg(fabs(linf - lsm) < 1e-5 * fabs(lsm), "InfoNCE %.9g vs softmax %.9g", linf, lsm);
    objective_destroy(&so);
    objective_destroy(&io);
    free(c);
}
END_TEST

/* Two-view InfoNCE: rows i and B + i are views of image i, each the other's positive, the bank
 * rows and the batch's other rows the negatives. The loss against a direct double
 * computation; dL/df by finite differences, so the gradient through a feature's roles as its
 * partner's positive and as the other rows' negative is checked too. */
struct views_ctx {
    struct objective *o;
    float f[2 * B_ * D_], neg[M_ * D_], df[2 * B_ * D_];
};

static double views_loss(void *p)
{
    struct views_ctx *c = p;
    float scratch[2 * B_ * D_];
    return objective_infonce_views(c->o, c->f, c->neg, B_, scratch);
}

START_TEST(test_infonce_views_grad)
{
    double tau = 0.2;
    struct objective_config cfg = { 2 * B_, D_, M_, N_, tau, OBJ_Z_FROZEN, 0.99, 0.0, 0, NULL };
    struct views_ctx *c = calloc(1, sizeof(*c));
    c->o = objective_new(&cfg);
    ck_assert_ptr_nonnull(c->o);
    unit_rows(c->f, 2 * B_, D_, 71);
    unit_rows(c->neg, M_, D_, 72);
    double loss = objective_infonce_views(c->o, c->f, c->neg, B_, c->df), ref = 0.0;
    for (int k = 0; k < 2 * B_; k++) {
        const float *q = c->f + k * D_, *pos = c->f + ((k + B_) % (2 * B_)) * D_;
        double s0 = dot_d(q, pos, D_) / tau, z = exp(s0);
        for (int j = 0; j < M_; j++) z += exp(dot_d(q, c->neg + j * D_, D_) / tau);
        for (int l = 0; l < 2 * B_; l++) /* the batch's other images */
            if (l != k && l != (k + B_) % (2 * B_)) z += exp(dot_d(q, c->f + l * D_, D_) / tau);
        ref += log(z) - s0;
    }
    ref /= 2 * B_;
    ck_assert_msg(fabs(loss - ref) < 1e-5 * fabs(ref), "loss %.9g vs %.9g", loss, ref);
    double e = gc_rel_error(views_loss, c, c->f, c->df, 2 * B_ * D_, 2 * B_ * D_, 1e-3f);
    ck_assert_msg(e < 1e-2, "two-view df rel err %g", e);
    objective_destroy(&c->o);
    free(c);
}
END_TEST

/* The two-view bank feature: the unit vector along the sum of the two views, in place too. */
START_TEST(test_views_mean)
{
    float f[2 * B_ * D_], out[B_ * D_];
    unit_rows(f, 2 * B_, D_, 73);
    memcpy(f + (2 * B_ - 1) * D_, f + (B_ - 1) * D_, sizeof(float) * D_); /* equal views */
    objective_views_mean(f, B_, D_, out);
    for (int i = 0; i < B_; i++) {
        double s[D_], n = 0.0;
        for (int k = 0; k < D_; k++) {
            s[k] = (double)f[i * D_ + k] + f[(B_ + i) * D_ + k];
            n += s[k] * s[k];
        }
        for (int k = 0; k < D_; k++)
            ck_assert_msg(fabs(out[i * D_ + k] - s[k] / sqrt(n)) < 1e-6, "row %d [%d] %g vs %g", i,
                          k, out[i * D_ + k], s[k] / sqrt(n));
    }
    for (int k = 0; k < D_; k++) /* equal views: the view itself */
        ck_assert(fabsf(out[(B_ - 1) * D_ + k] - f[(B_ - 1) * D_ + k]) < 1e-6f);
    objective_views_mean(f, B_, D_, f);
    ck_assert(memcmp(f, out, sizeof out) == 0);
}
END_TEST

START_TEST(test_z_handling)
{
    struct objective_config cfg = { B_, D_, M_, N_, 0.1, OBJ_Z_FROZEN, 0.99, 0.0, 0, NULL };
    struct obj_ctx *c = calloc(1, sizeof(*c));
    ctx_fill(c);
    c->o = objective_new(&cfg);
    ck_assert_double_eq(objective_z(c->o), 0.0);
    objective_nce_shared(c->o, c->f, c->pos, c->neg, B_, c->df);
    /* Z = n * mean(exp(s/tau)) over all B x (m+1) scores */
    double sum = 0.0;
    for (int i = 0; i < B_; i++) {
        sum += exp(dot_d(c->f + i * D_, c->pos + i * D_, D_) / 0.1);
        for (int j = 0; j < M_; j++) sum += exp(dot_d(c->f + i * D_, c->neg + j * D_, D_) / 0.1);
    }
    double z0 = N_ * sum / (B_ * (M_ + 1));
    ck_assert_msg(fabs(objective_z(c->o) - z0) < 1e-5 * z0, "Z %g vs %g", objective_z(c->o), z0);
    /* frozen: a different batch leaves Z, but the estimate follows the batch */
    unit_rows(c->f, B_, D_, 99);
    objective_nce_shared(c->o, c->f, c->pos, c->neg, B_, c->df);
    ck_assert_msg(fabs(objective_z(c->o) - z0) < 1e-5 * z0, "frozen Z moved");
    double est = objective_z_estimate(c->o);
    ck_assert_msg(fabs(est - z0) > 1e-3 * z0, "estimate did not follow the batch");
    objective_destroy(&c->o);

    /* EMA: Z = 0.99 Z + 0.01 estimate after the first call */
    cfg.z_mode = OBJ_Z_EMA;
    c->o = objective_new(&cfg);
    unit_rows(c->f, B_, D_, 81);
    objective_nce_shared(c->o, c->f, c->pos, c->neg, B_, c->df);
    double za = objective_z(c->o); /* first call: estimate, then one EMA step onto itself */
    ck_assert_msg(fabs(za - z0) < 1e-5 * z0, "EMA first Z %g vs %g", za, z0);
    unit_rows(c->f, B_, D_, 99);
    objective_nce_shared(c->o, c->f, c->pos, c->neg, B_, c->df);
    double want = 0.99 * za + 0.01 * objective_z_estimate(c->o);
    ck_assert_msg(fabs(objective_z(c->o) - want) < 1e-9 * want, "EMA Z %g vs %g",
                  objective_z(c->o), want);
    objective_destroy(&c->o);

    /* setter: the set value is used from the first call on */
    cfg.z_mode = OBJ_Z_FROZEN;
    c->o = objective_new(&cfg);
    objective_set_z(c->o, 1234.5);
    double loss = objective_nce_shared(c->o, c->f, c->pos, c->neg, B_, c->df);
    ck_assert_double_eq(objective_z(c->o), 1234.5);
    double ref = nce_ref(c->f, c->pos, c->neg, 0, 0.1, 1234.5, 0.0);
    ck_assert_msg(fabs(loss - ref) < 1e-4 * ref, "loss with set Z %g vs %g", loss, ref);
    objective_destroy(&c->o);
    free(c);

    cfg.tau = 0.0;
    ck_assert_ptr_null(objective_new(&cfg));
}
END_TEST

START_TEST(test_shared_equals_per_element)
{
    struct objective_config cfg = { B_, D_, M_, N_, 0.07, OBJ_Z_FROZEN, 0.99, 0.0, 0, NULL };
    struct obj_ctx *c = calloc(1, sizeof(*c));
    ctx_fill(c);
    for (int i = 0; i < B_; i++) memcpy(c->negpe + (size_t)i * M_ * D_, c->neg, sizeof(c->neg));
    struct objective *a = objective_new(&cfg), *b = objective_new(&cfg);
    float da[B_ * D_], db[B_ * D_];
    double la = objective_nce_shared(a, c->f, c->pos, c->neg, B_, da);
    double lb = objective_nce_per_element(b, c->f, c->pos, c->negpe, B_, db);
    ck_assert_msg(fabs(la - lb) < 1e-5 * fabs(la), "%g vs %g", la, lb);
    ck_assert_msg(fabs(objective_z(a) - objective_z(b)) < 1e-6 * objective_z(a), "Z differs");
    for (int i = 0; i < B_ * D_; i++)
        ck_assert_msg(fabsf(da[i] - db[i]) < 1e-4f * (1 + fabsf(da[i])), "df[%d]", i);
    objective_destroy(&a);
    objective_destroy(&b);
    free(c);
}
END_TEST

/* v16_exp against exp() in double over its whole clamped range. */
START_TEST(test_vec_exp)
{
    double worst = 0.0;
    float x[16];
    for (int k = 0; k <= 200000; k += 16) {
        for (int l = 0; l < 16; l++) x[l] = -87.3f + (float)(k + l) * (175.6f / 200016.0f);
        v16f e = v16_exp(v16_load(x));
        for (int l = 0; l < 16; l++) {
            double ref = exp((double)x[l]), err = fabs(e[l] - ref) / ref;
            worst = err > worst ? err : worst;
        }
    }
    /* 2 ulp of float is 2.4e-7 */
    ck_assert_msg(worst < 2.4e-7, "v16_exp: worst relative error %g", worst);
    x[0] = -1000.0f;
    x[1] = 1000.0f;
    v16f e = v16_exp(v16_load(x));
    ck_assert_msg(e[0] >= 0.0f && e[0] < 1.3e-38f, "exp(-1000) = %g", (double)e[0]);
    ck_assert(isfinite(e[1]) && e[1] > 1e38f);
}
END_TEST

/* The softmax over several blocks per thread (n = 1,300, blocks of 512), team sizes 1-3,
 * against a double loop for the loss and the analytic dL/df; one row's maximum lies in
 * the bank's last block, so the running-maximum rescale runs. */
START_TEST(test_softmax_blocks)
{
    enum { B = 7, D = 16, NMAX = 1300 };
    /* _i 0..2: 1-3 threads over 1,300 rows; 3: 3 threads over 2 rows (an empty share) */
    int nt = _i < 3 ? _i + 1 : 3, N = _i < 3 ? NMAX : 2;
    double tau = 0.07;
    float *f = malloc(sizeof(float) * B * D), *bank = malloc(sizeof(float) * N * D);
    float *df = malloc(sizeof(float) * B * D);
    double *ref = malloc(sizeof(double) * B * D);
    uint32_t idx[B] = { 0, 511, 512, 1299, 700, 3, 1024 };
    for (int i = 0; i < B; i++) idx[i] %= (uint32_t)N;
    unit_rows(f, B, D, 91);
    unit_rows(bank, N, D, 92);
    memcpy(bank + (size_t)(N - 1) * D, f, sizeof(float) * D);
    struct nn_team *team = nt > 1 ? nn_team_new(nt) : NULL;
    struct objective_config cfg = { B, D, 0, N, tau, OBJ_Z_FROZEN, 0.99, 0.0, 1, team };
    struct objective *o = objective_new(&cfg);
    ck_assert_ptr_nonnull(o);
    double loss = objective_softmax(o, f, bank, idx, B, df);
    double lref = 0.0;
    for (int i = 0; i < B; i++) {
        double mx = -1e300, z = 0.0, s[NMAX];
        for (int j = 0; j < N; j++) {
            s[j] = dot_d(f + i * D, bank + (size_t)j * D, D) / tau;
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < N; j++) z += exp(s[j] - mx);
        lref += log(z) + mx - s[idx[i]];
        for (int k = 0; k < D; k++) {
            double a = 0.0;
            for (int j = 0; j < N; j++) a += exp(s[j] - mx) / z * bank[(size_t)j * D + k];
            ref[i * D + k] = (a - bank[(size_t)idx[i] * D + k]) / (tau * B);
        }
    }
    lref /= B;
    ck_assert_msg(fabs(loss - lref) < 1e-5 * fabs(lref), "%d threads: loss %.9g vs %.9g", nt,
                  loss, lref);
    for (int i = 0; i < B * D; i++)
        ck_assert_msg(fabs(df[i] - ref[i]) < 1e-5 * (fabs(ref[i]) + 1e-2),
                      "%d threads: df[%d] %g vs %g", nt, i, df[i], ref[i]);
    objective_destroy(&o);
    nn_team_destroy(&team);
    free(f);
    free(bank);
    free(df);
    free(ref);
}
END_TEST

static Suite *objective_suite(void)
{
    Suite *s = suite_create("objective");
    TCase *tc = tcase_create("objective");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_nce_grad, 0, 4);
    tcase_add_loop_test(tc, test_softmax_grad, 0, 2);
    tcase_add_loop_test(tc, test_infonce_grad, 0, 2);
    tcase_add_test(tc, test_infonce_equals_softmax);
    tcase_add_test(tc, test_infonce_views_grad);
    tcase_add_test(tc, test_views_mean);
    tcase_add_loop_test(tc, test_softmax_blocks, 0, 4);
    tcase_add_test(tc, test_vec_exp);
    tcase_add_test(tc, test_z_handling);
    tcase_add_test(tc, test_shared_equals_per_element);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(objective_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
