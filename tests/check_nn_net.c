/* Unit tests for the network presets (common/nn/net.h) and the optimiser (common/nn/sgd.h):
 * a finite-difference check of the whole network's gradient, preset sizes, input sizes
 * 32..224, train vs eval mode, one SGD step against a hand calculation, learning-rate
 * schedules, and determinism (same seed -> identical weights after three steps). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/net.h"
#include "common/nn/sgd.h"
#include "tests/check_nn_util.h"

struct net_ctx {
    struct net *n;
    float *x, *R;
    int B, d;
};

static double net_loss(void *p)
{
    struct net_ctx *c = p;
    const float *f = net_forward(c->n, c->x, c->B, 1);
    return dot_d(f, c->R, (size_t)c->B * c->d);
}

START_TEST(test_net_grad)
{
    /* resnet20 on 8x8 inputs: every layer kind, three stages, projection shortcuts; one
     * thread and a team of two */
    struct net_config cfg = { "resnet20", 6, 8, 8, 3, 5, NET_INIT_HE, NET_STEM_CIFAR, 0 };
    struct net_ctx c = { net_new_threads(&cfg, _i + 1), NULL, NULL, 3, 6 };
    ck_assert_ptr_nonnull(c.n);
    size_t nx = (size_t)3 * 3 * 8 * 8;
    c.x = malloc(sizeof(float) * nx);
    c.R = malloc(sizeof(float) * 18);
    fill_normal(c.x, nx, 1.0, 51);
    fill_normal(c.R, 18, 1.0, 52);
    net_loss(&c);
    net_backward(c.n, c.R);
    size_t np = net_param_count(c.n);
    float *g = malloc(sizeof(float) * np);
    memcpy(g, net_grads(c.n), sizeof(float) * np);
    /* float forward: h 1e-3 balances curvature (ReLU kinks, BN) against rounding */
    double e = gc_rel_error(net_loss, &c, net_params(c.n), g, np, 400, 1e-3f);
    ck_assert_msg(e < 3e-2, "whole-net parameter gradient rel err %g", e);
    free(g);
    free(c.x);
    free(c.R);
    net_destroy(&c.n);
    ck_assert_ptr_null(c.n);
    net_destroy(&c.n); /* accepts NULL */
}
END_TEST

/* The two-layer head (Linear(H) -> ReLU -> Linear(d)): the whole-network gradient and, every
 * one of them, the head's own parameters at the end of the block; its size in the count. */
START_TEST(test_head_grad)
{
    struct net_config cfg = { "resnet20", 6, 8, 8, 3, 5, NET_INIT_HE, NET_STEM_CIFAR, 10 };
    struct net_config lin = cfg;
    lin.head = 0;
    struct net *l = net_new(&lin);
    struct net_ctx c = { net_new_threads(&cfg, _i + 1), NULL, NULL, 3, 6 };
    ck_assert_ptr_nonnull(c.n);
    ck_assert_ptr_nonnull(l);
    /* hidden (10, 64) + 10, fc (6, 10) + 6 in place of fc (6, 64) + 6 */
    ck_assert_uint_eq(net_param_scalars(c.n), net_param_scalars(l) + 64 * 10 + 10 - 6 * 64
                                                  + 6 * 10);
    net_destroy(&l);
    size_t nx = (size_t)3 * 3 * 8 * 8;
    c.x = malloc(sizeof(float) * nx);
    c.R = malloc(sizeof(float) * 18);
    fill_normal(c.x, nx, 1.0, 53);
    fill_normal(c.R, 18, 1.0, 54);
    net_loss(&c);
    net_backward(c.n, c.R);
    size_t np = net_param_count(c.n), tail = 640 + 16 + 64 + 16; /* padded to 16 floats */
    float *g = malloc(sizeof(float) * np);
    memcpy(g, net_grads(c.n), sizeof(float) * np);
    double e = gc_rel_error(net_loss, &c, net_params(c.n), g, np, 400, 1e-3f);
    ck_assert_msg(e < 3e-2, "whole-net parameter gradient rel err %g", e);
    e = gc_rel_error(net_loss, &c, net_params(c.n) + np - tail, g + np - tail, tail, tail, 1e-3f);
    ck_assert_msg(e < 3e-2, "head parameter gradient rel err %g", e);
    free(g);
    free(c.x);
    free(c.R);
    net_destroy(&c.n);
}
END_TEST

/* The strided stems: the whole-network gradient on 8*stride px inputs (s2: 16 px, 8x8 maps
 * from the stem; s4: 32 px, 16x16 then 8x8 after the first stage; imagenet: 32 px, 16x16 then
 * 8x8 after the max pool), the stem's own parameters (the gradient through the pool), and
 * their cost: a stride-s stem on an s*8 px input costs what the CIFAR stem costs on 8 px but
 * for its own first convolution (and, s4, the first block's projection shortcut). */
START_TEST(test_stems)
{
    static const int stems[] = { NET_STEM_S2, NET_STEM_S4, NET_STEM_IMAGENET };
    int stem = stems[_i], s = 8 * net_stem_stride(stem), r = stem == NET_STEM_IMAGENET ? 7 : 3;
    struct net_config cfg = { "resnet20", 6, s, s, 3, 5, NET_INIT_HE, stem, 0 };
    struct net_ctx c = { net_new_threads(&cfg, 2), NULL, NULL, 3, 6 };
    ck_assert_ptr_nonnull(c.n);
    char want_desc[64];
    snprintf(want_desc, sizeof want_desc, "stem %s (maps 8x8)", net_stem_name(stem));
    ck_assert_msg(strstr(net_describe(c.n), want_desc), "%s", net_describe(c.n));
    size_t nx = (size_t)3 * 3 * s * s;
    c.x = malloc(sizeof(float) * nx);
    c.R = malloc(sizeof(float) * 18);
    fill_normal(c.x, nx, 1.0, 53);
    fill_normal(c.R, 18, 1.0, 54);
    net_loss(&c);
    net_backward(c.n, c.R);
    size_t np = net_param_count(c.n);
    float *g = malloc(sizeof(float) * np);
    memcpy(g, net_grads(c.n), sizeof(float) * np);
    /* float differences through ReLU and BN kinks: about 0.02-0.05 on every part of the net,
       the CIFAR stem's included (a miswired stem or BN size gives errors near 1) */
    double e = gc_rel_error(net_loss, &c, net_params(c.n), g, np, 400, 1e-3f);
    ck_assert_msg(e < 6e-2, "stem %s: whole-net gradient rel err %g", net_stem_name(stem), e);
    size_t ns = (size_t)16 * 3 * r * r; /* the stem convolution, first in the block */
    e = gc_rel_error(net_loss, &c, net_params(c.n), g, ns, 200, 1e-3f);
    ck_assert_msg(e < 6e-2, "stem %s: stem conv gradient rel err %g", net_stem_name(stem), e);
    struct net_config small = { "resnet20", 6, 8, 8, 3, 5, NET_INIT_HE, NET_STEM_CIFAR, 0 };
    struct net *ref = net_new_threads(&small, 1);
    ck_assert_ptr_nonnull(ref);
    double stem_fl = 2.0 * 3 * 16 * 9 * 8 * 8, f = net_flops_per_image(c.n);
    double want = net_flops_per_image(ref) - stem_fl + stem_fl * (stem == NET_STEM_S2 ? 1 : 4);
    if (stem == NET_STEM_IMAGENET) /* 7x7 on the 16x16 maps, before the pool */
        want = net_flops_per_image(ref) - stem_fl + 2.0 * 3 * 16 * 49 * 16 * 16;
    if (stem == NET_STEM_S4) /* the 1x1 shortcut 16 -> 16 channels on the 8x8 maps */
        want += 2.0 * 16 * 16 * 8 * 8;
    ck_assert_msg(fabs(f - want) < 1e-6 * want, "stem %s: %g FLOP/img, expected %g",
                  net_stem_name(stem), f, want);
    size_t extra = stem == NET_STEM_S4 ? (size_t)16 * 16 + 2 * 16
                   : stem == NET_STEM_IMAGENET ? (size_t)16 * 3 * (49 - 9)
                                              : 0;
    ck_assert_uint_eq(net_param_scalars(c.n), net_param_scalars(ref) + extra);
    net_destroy(&ref);
    free(g);
    free(c.x);
    free(c.R);
    net_destroy(&c.n);
    ck_assert_int_eq(net_stem_parse("s4"), NET_STEM_S4);
    ck_assert_int_eq(net_stem_parse("cifar"), NET_STEM_CIFAR);
    ck_assert_int_eq(net_stem_parse("S2"), -1);
    ck_assert_int_eq(net_stem_parse("imagenet"), NET_STEM_IMAGENET);
    ck_assert_str_eq(net_stem_name(NET_STEM_IMAGENET), "imagenet");
    ck_assert_int_eq(net_stem_stride(NET_STEM_IMAGENET), 4);
    cfg.stem = 7;
    ck_assert_ptr_null(net_new(&cfg));
}
END_TEST

/* The team splits the batch: 1, 2 and 3 threads (3 does not divide the batch) agree, with the
 * CIFAR stem and with the imagenet stem (its max pool per thread slice). resnet50 at 64 px
 * (bottlenecks, whose work buffers change layout between barriers): 1 and 2 threads agree
 * in features and BN statistics, and in gradients to 5e-2 only, the spread float32 rounding
 * alone gives its 16 blocks at init (PyTorch's float32 step is 2e-2 from its float64 one,
 * bench/peer/step_parity.py); so a second 2-thread net must give identical bits, which a
 * thread reading another's images mid-change would not. */
START_TEST(test_threads_agree)
{
    int stem = _i == 0 ? NET_STEM_CIFAR : NET_STEM_IMAGENET;
    int B = 5, S = _i == 2 ? 64 : 16;
    const char *model = _i == 2 ? "resnet50" : "resnet20";
    size_t nx = (size_t)B * 3 * S * S;
    float *x = malloc(sizeof(float) * nx), df[5 * 8];
    fill_normal(x, nx, 1.0, 91);
    fill_normal(df, 40, 1.0, 92);
    float *feat[3], *grad[3], *buf[3];
    size_t np = 0, nbuf = 0;
    for (int t = 0; t < 3; t++) {
        struct net_config cfg = { model, 8, S, S, B, 4, NET_INIT_HE, stem, 0 };
        int nt = _i == 2 && t == 2 ? 2 : t + 1;
        struct net *n = net_new_threads(&cfg, nt);
        ck_assert_ptr_nonnull(n);
        ck_assert_int_eq(net_threads(n), nt);
        np = net_param_count(n);
        nbuf = net_buffer_count(n);
        feat[t] = malloc(sizeof(float) * 40);
        grad[t] = malloc(sizeof(float) * np);
        buf[t] = malloc(sizeof(float) * nbuf);
        net_forward(n, x, B, 1);
        memcpy(feat[t], net_forward(n, x, B, 1), sizeof(float) * 40);
        net_backward(n, df);
        memcpy(grad[t], net_grads(n), sizeof(float) * np);
        memcpy(buf[t], net_buffers(n), sizeof(float) * nbuf);
        net_destroy(&n);
    }
    for (int t = 1; t < 3; t++) {
        double fd = 0, gd = 0, gn = 0, bd = 0;
        for (int i = 0; i < 40; i++) fd = fmax(fd, fabs(feat[t][i] - feat[0][i]));
        for (size_t i = 0; i < np; i++) {
            gd += (double)(grad[t][i] - grad[0][i]) * (grad[t][i] - grad[0][i]);
            gn += (double)grad[0][i] * grad[0][i];
        }
        for (size_t i = 0; i < nbuf; i++) bd = fmax(bd, fabs(buf[t][i] - buf[0][i]));
        ck_assert_msg(fd < 1e-4, "stem %s, %d threads: features differ by %g",
                      net_stem_name(stem), t + 1, fd);
        double gtol = _i == 2 ? 5e-2 : 1e-3;
        ck_assert_msg(sqrt(gd / gn) < gtol, "%s, %d threads: grads rel diff %g", model, t + 1,
                      sqrt(gd / gn));
        ck_assert_msg(bd < 1e-4, "%d threads: BN running stats differ by %g", t + 1, bd);
    }
    if (_i == 2) {
        ck_assert(memcmp(feat[2], feat[1], sizeof(float) * 40) == 0);
        ck_assert(memcmp(grad[2], grad[1], sizeof(float) * np) == 0);
        ck_assert(memcmp(buf[2], buf[1], sizeof(float) * nbuf) == 0);
    }
    for (int t = 0; t < 3; t++) {
        free(feat[t]);
        free(grad[t]);
        free(buf[t]);
    }
    free(x);
}
END_TEST

START_TEST(test_presets)
{
    struct net_config cfg = { "resnet18", 128, 32, 32, 2, 1, NET_INIT_HE, NET_STEM_CIFAR, 0 };
    struct net *n = net_new(&cfg);
    ck_assert_ptr_nonnull(n);
    /* reference CIFAR ResNet18 (11,173,962 with a 10-way fc) with Linear(512, 128) */
    ck_assert_uint_eq(net_param_scalars(n), 11173962 - 5130 + 65664);
    double gmac = net_flops_per_image(n) / 2e9;
    ck_assert_msg(gmac > 0.55 && gmac < 0.57, "resnet18 %g GMAC/img", gmac);
    net_destroy(&n);
    cfg.model = "resnet18-half";
    n = net_new(&cfg);
    ck_assert_ptr_nonnull(n);
    ck_assert_msg(net_param_scalars(n) > 2700000 && net_param_scalars(n) < 2900000, "%zu",
                  net_param_scalars(n));
    net_destroy(&n);
    cfg.model = "resnet18-quarter";
    n = net_new(&cfg);
    ck_assert_ptr_nonnull(n);
    ck_assert_msg(net_param_scalars(n) > 680000 && net_param_scalars(n) < 720000, "%zu",
                  net_param_scalars(n));
    gmac = net_flops_per_image(n) / 2e9;
    ck_assert_msg(gmac > 0.035 && gmac < 0.045, "resnet18-quarter %g GMAC/img", gmac);
    net_destroy(&n);
    cfg.model = "resnet20";
    n = net_new(&cfg);
    ck_assert_ptr_nonnull(n);
    ck_assert_msg(net_param_scalars(n) > 270000 && net_param_scalars(n) < 300000, "%zu",
                  net_param_scalars(n));
    net_destroy(&n);
    cfg.model = "vgg";
    ck_assert_ptr_null(net_new(&cfg));
    ck_assert(net_model_known("resnet34") && net_model_known("resnet50"));
    ck_assert(!net_model_known("resnet101") && !net_model_known(NULL));
    cfg.model = "resnet20";
    cfg.in_h = 4;
    ck_assert_ptr_null(net_new(&cfg));
}
END_TEST

/* torchvision's ResNets (--stem imagenet) at 224 px: the parameter counts of
 * torchvision.models.resnet18/34/50 with fc Linear(C, 128) in place of Linear(C, 1000), and
 * their multiply-adds (torchvision's 1.82 / 3.67 / 4.09 G with the 1000-way fc) */
START_TEST(test_torchvision_presets)
{
    static const struct { const char *model; size_t tv, c; double gmac; } want[] = {
        { "resnet18", 11689512, 512, 1.814 },
        { "resnet34", 21797672, 512, 3.665 },
        { "resnet50", 25557032, 2048, 4.087 },
    };
    const int i = _i;
    struct net_config cfg = { want[i].model, 128, 224, 224, 1, 1, NET_INIT_HE_OUT,
                              NET_STEM_IMAGENET, 0 };
    struct net *n = net_new_threads(&cfg, 1);
    ck_assert_ptr_nonnull(n);
    size_t c = want[i].c;
    ck_assert_uint_eq(net_param_scalars(n), want[i].tv - (c * 1000 + 1000) + c * 128 + 128);
    ck_assert_int_eq(net_pool_dim(n), (int)c);
    double fc = (double)c * (1000 - 128), gmac = (net_flops_per_image(n) / 2 + fc) / 1e9;
    ck_assert_msg(fabs(gmac - want[i].gmac) < 0.01, "%s: %g GMAC/img", want[i].model, gmac);
    ck_assert_msg(strstr(net_describe(n), "stem imagenet (maps 56x56)"), "%s", net_describe(n));
    /* the count without building agrees, whatever the batch */
    cfg.max_batch = 4096;
    ck_assert(net_config_flops(&cfg) == net_flops_per_image(n));
    cfg.model = "vgg";
    ck_assert(net_config_flops(&cfg) < 0);
    net_destroy(&n);
}
END_TEST

START_TEST(test_input_sizes)
{
    static const int sizes[] = { 32, 64, 96, 224 };
    int s = sizes[_i];
    struct net_config cfg = { _i == 3 ? "resnet20" : "resnet18-half", 16, s, s, 2, 9, NET_INIT_HE, NET_STEM_CIFAR, 0 };
    struct net *n = net_new(&cfg);
    ck_assert_ptr_nonnull(n);
    size_t nx = (size_t)2 * 3 * s * s;
    float *x = malloc(sizeof(float) * nx), df[32];
    fill_normal(x, nx, 1.0, 61);
    fill_normal(df, 32, 1.0, 62);
    const float *f = net_forward(n, x, 2, 1);
    for (int i = 0; i < 2; i++) {
        double nn2 = dot_d(f + i * 16, f + i * 16, 16);
        ck_assert_msg(fabs(nn2 - 1.0) < 1e-5, "size %d: |f|^2 = %g", s, nn2);
    }
    net_backward(n, df);
    double gs = dot_d(net_grads(n), net_grads(n), net_param_count(n));
    ck_assert_msg(isfinite(gs) && gs > 0, "size %d: grad norm^2 %g", s, gs);
    free(x);
    net_destroy(&n);
}
END_TEST

START_TEST(test_train_eval)
{
    struct net_config cfg = { "resnet20", 8, 16, 16, 4, 3, NET_INIT_HE, NET_STEM_CIFAR, 0 };
    struct net *n = net_new(&cfg);
    ck_assert_ptr_nonnull(n);
    size_t nx = (size_t)4 * 3 * 16 * 16;
    float *x = malloc(sizeof(float) * nx), a[32], b[32], c[8];
    fill_normal(x, nx, 1.0, 71);
    float *bufs = malloc(sizeof(float) * net_buffer_count(n));
    memcpy(bufs, net_buffers(n), sizeof(float) * net_buffer_count(n));
    memcpy(a, net_forward(n, x, 4, 0), sizeof a);
    ck_assert_msg(memcmp(bufs, net_buffers(n), sizeof(float) * net_buffer_count(n)) == 0,
                  "eval forward changed BN running statistics");
    /* eval: an image's feature does not depend on the rest of the batch */
    memcpy(c, net_forward(n, x, 1, 0), sizeof c);
    for (int j = 0; j < 8; j++) ck_assert_msg(fabsf(c[j] - a[j]) < 1e-5f, "eval batch dependence");
    memcpy(b, net_forward(n, x, 4, 1), sizeof b);
    ck_assert_msg(memcmp(bufs, net_buffers(n), sizeof(float) * net_buffer_count(n)) != 0,
                  "train forward left BN running statistics unchanged");
    double diff = 0;
    for (int j = 0; j < 32; j++) diff += fabs(a[j] - b[j]);
    ck_assert_msg(diff > 1e-3, "train and eval outputs identical");
    free(bufs);
    free(x);
    net_destroy(&n);
}
END_TEST

START_TEST(test_sgd_hand)
{
    struct sgd *s = sgd_new(2, 0.9f, 0.1f);
    ck_assert_ptr_nonnull(s);
    float w[2] = { 1.0f, -2.0f }, g[2] = { 0.5f, 0.25f };
    sgd_step(s, w, g, 0.1f);
    /* d = g + wd w = (0.6, 0.05); buf = d; w -= 0.1 d */
    ck_assert_float_eq_tol(w[0], 0.94f, 1e-6f);
    ck_assert_float_eq_tol(w[1], -2.005f, 1e-6f);
    sgd_step(s, w, g, 0.1f);
    /* d = (0.5 + 0.094, 0.25 - 0.2005); buf = 0.9*(0.6, 0.05) + d */
    double b0 = 0.9 * 0.6 + 0.5 + 0.1 * 0.94, b1 = 0.9 * 0.05 + 0.25 + 0.1 * -2.005;
    ck_assert_float_eq_tol(s->buf[0], (float)b0, 1e-6f);
    ck_assert_float_eq_tol(w[0], (float)(0.94 - 0.1 * b0), 1e-6f);
    ck_assert_float_eq_tol(w[1], (float)(-2.005 - 0.1 * b1), 1e-6f);
    sgd_destroy(&s);
    ck_assert_ptr_null(s);
}
END_TEST

START_TEST(test_lr_schedules)
{
    struct lr_schedule st = { LR_STEP, 0.03, 200, 0, 0, 0.1, 0, { 0 } };
    ck_assert_int_eq(lr_parse_milestones(&st, "120,160"), 0);
    ck_assert_int_eq(st.n_milestones, 2);
    ck_assert_double_eq_tol(lr_at(&st, 0), 0.03, 1e-12);
    ck_assert_double_eq_tol(lr_at(&st, 119.99), 0.03, 1e-12);
    ck_assert_double_eq_tol(lr_at(&st, 120), 0.003, 1e-12);
    ck_assert_double_eq_tol(lr_at(&st, 170), 0.0003, 1e-12);
    ck_assert_int_eq(lr_parse_milestones(&st, "160,120"), -1);
    ck_assert_int_eq(lr_parse_milestones(&st, "12x"), -1);
    struct lr_schedule co = { LR_COSINE, 0.1, 10, 0.001, 2, 0.1, 0, { 0 } };
    ck_assert_double_eq_tol(lr_at(&co, 0), 0.0, 1e-12);
    ck_assert_double_eq_tol(lr_at(&co, 1), 0.5 * (0.001 + 0.099 * 0.5 * (1 + cos(M_PI * 0.1))),
                            1e-12);
    ck_assert_double_eq_tol(lr_at(&co, 5), 0.001 + 0.099 * 0.5, 1e-12);
    ck_assert_double_eq_tol(lr_at(&co, 10), 0.001, 1e-12);
}
END_TEST

/* Three steps of a small training loop; returns the weights (caller frees). */
static float *three_steps(uint64_t seed, size_t *np)
{
    struct net_config cfg = { "resnet20", 8, 16, 16, 4, seed, NET_INIT_HE, NET_STEM_CIFAR, 0 };
    struct net *n = net_new(&cfg);
    ck_assert_ptr_nonnull(n);
    struct sgd *s = sgd_new(net_param_count(n), 0.9f, 5e-4f);
    size_t nx = (size_t)4 * 3 * 16 * 16;
    float *x = malloc(sizeof(float) * nx), df[32];
    for (int step = 0; step < 3; step++) {
        fill_normal(x, nx, 1.0, 100 + step);
        const float *f = net_forward(n, x, 4, 1);
        for (int j = 0; j < 32; j++) df[j] = f[j] - (j % 8 == 0 ? 1.0f : 0.0f);
        net_backward(n, df);
        sgd_step(s, net_params(n), net_grads(n), 0.05f);
    }
    *np = net_param_count(n);
    float *w = malloc(sizeof(float) * *np);
    memcpy(w, net_params(n), sizeof(float) * *np);
    free(x);
    sgd_destroy(&s);
    net_destroy(&n);
    return w;
}

START_TEST(test_determinism)
{
    size_t n1, n2, n3;
    float *a = three_steps(7, &n1), *b = three_steps(7, &n2), *c = three_steps(8, &n3);
    ck_assert_uint_eq(n1, n2);
    ck_assert_msg(memcmp(a, b, sizeof(float) * n1) == 0, "same seed, different weights");
    ck_assert_msg(memcmp(a, c, sizeof(float) * n1) != 0, "different seeds, same weights");
    free(a);
    free(b);
    free(c);
}
END_TEST

static Suite *nn_net_suite(void)
{
    Suite *s = suite_create("nn_net");
    TCase *tc = tcase_create("net");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_net_grad, 0, 2);
    tcase_add_loop_test(tc, test_head_grad, 0, 2);
    tcase_add_loop_test(tc, test_stems, 0, 3);
    tcase_add_loop_test(tc, test_threads_agree, 0, 3);
    tcase_add_test(tc, test_presets);
    tcase_add_loop_test(tc, test_torchvision_presets, 0, 3);
    tcase_add_loop_test(tc, test_input_sizes, 0, 4);
    tcase_add_test(tc, test_train_eval);
    tcase_add_test(tc, test_sgd_hand);
    tcase_add_test(tc, test_lr_schedules);
    tcase_add_test(tc, test_determinism);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(nn_net_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
