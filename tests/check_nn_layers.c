/* Unit tests for the nn layers (common/nn/): convolution (direct 3x3 kernels and
 * im2col+sgemm; forward, weight and input gradients, whole batch and thread slices) against
 * nested loops, and finite-difference gradient checks of conv, BN (train; plain, fused ReLU,
 * residual join), ReLU, add, average pool, max pool (also against nested loops), linear,
 * L2 norm, whole BasicBlocks and whole bottleneck blocks (identity, 1x1 stride-1 and 1x1
 * stride-2 projections); BN eval mode and running statistics; the BN and masked-add kernels
 * of every kernel level the CPU has (common/cpu.h) against plain loops. Loss for every
 * check: L = sum(y * R), R fixed random. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/nn/act.h"
#include "common/nn/block.h"
#include "common/nn/bottleneck.h"
#include "common/nn/net.h"
#include "common/nn/bn.h"
#include "common/nn/conv.h"
#include "common/nn/l2norm.h"
#include "common/nn/linear.h"
#include "common/nn/pool.h"
#include "common/nn/team.h"
#include "common/nn/tensor.h"
#include "tests/check_nn_util.h"

#define GC_TOL 2e-2

/* ---- convolution ---- */

struct conv_case { int C, K, R, stride, pad, B, H, W; };

static const struct conv_case conv_cases[] = {
    { 3, 5, 3, 1, 1, 2, 7, 7 },   /* 3x3 s1 p1, odd channels */
    { 5, 4, 3, 2, 1, 1, 9, 8 },   /* 3x3 s2 p1, batch 1, non-square */
    { 3, 6, 1, 1, 0, 2, 5, 5 },   /* 1x1 pointwise (no im2col) */
    { 5, 7, 1, 2, 0, 3, 6, 6 },   /* 1x1 s2 projection shortcut */
    { 3, 4, 3, 2, 0, 1, 8, 8 },   /* 3x3 s2 p0 */
    { 2, 3, 5, 1, 2, 2, 6, 5 },   /* 5x5 s1 p2 */
    { 3, 2, 5, 1, 2, 3, 1, 7 },   /* 5x5 s1 p2 on one-row images: shifts past the edge */
    { 4, 3, 3, 1, 1, 2, 2, 2 },   /* 3x3 on 2x2 images (late stages at small inputs) */
    { 3, 4, 3, 1, 1, 3, 20, 17 }, /* 340 positions per image */
    { 3, 4, 7, 2, 3, 2, 11, 10 }, /* 7x7 s2 p3: the imagenet stem, odd and even sizes */
};
#define N_CONV_CASES (sizeof(conv_cases) / sizeof(conv_cases[0]))

struct conv_ctx {
    struct conv c;
    int B, H, W, mode;
    float *in, *out, *R, *scratch;
    size_t scratch_floats, nout;
    struct nn_ctx nc;   /* mode 2: im2col in 37-column chunks through the context API */
};

static void conv_fwd(struct conv_ctx *x, float *out)
{
    if (x->mode == 2)
        conv_forward_ctx(&x->c, x->in, x->H, x->W, out, &x->nc);
    else
        conv_forward(&x->c, x->in, x->B, x->H, x->W, out, x->scratch, x->scratch_floats);
}

static void conv_bwd(struct conv_ctx *x, float *din, int accumulate)
{
    if (x->mode == 2)
        conv_backward_ctx(&x->c, x->in, x->R, x->H, x->W, din, accumulate, &x->nc);
    else
        conv_backward(&x->c, x->in, x->R, x->B, x->H, x->W, din, accumulate, x->scratch,
                      x->scratch_floats);
}

static double conv_loss(void *p)
{
    struct conv_ctx *x = p;
    conv_fwd(x, x->out);
    return dot_d(x->out, x->R, x->nout);
}

static void conv_ctx_init(struct conv_ctx *x, const struct conv_case *cc, int mode)
{
    int chunked = mode == 1;
    memset(x, 0, sizeof(*x));
    x->c = (struct conv){ cc->C, cc->K, cc->R, cc->R, cc->stride, cc->pad, NULL, NULL };
    x->B = cc->B;
    x->H = cc->H;
    x->W = cc->W;
    size_t nw = conv_weight_count(&x->c), nin = (size_t)cc->C * cc->B * cc->H * cc->W;
    int ho = conv_out_dim(cc->H, cc->R, cc->stride, cc->pad);
    int wo = conv_out_dim(cc->W, cc->R, cc->stride, cc->pad);
    x->nout = (size_t)cc->K * cc->B * ho * wo;
    x->c.w = nn_alloc(nw);
    x->c.dw = nn_alloc(nw);
    x->in = nn_alloc(nin);
    x->out = nn_alloc(x->nout);
    x->R = nn_alloc(x->nout);
    /* chunked: exactly one image per sgemm; else room for the whole batch */
    x->scratch_floats = conv_scratch_min(&x->c, cc->H, cc->W) * (chunked ? 1 : cc->B) + nw;
    x->scratch = nn_alloc(x->scratch_floats);
    x->mode = mode;
    x->nc = nn_ctx_single(cc->B, x->scratch + nw, x->scratch_floats - nw, x->scratch);
    x->nc.chunk_cols = 37; /* cuts rows and images at odd places */
    x->nc.direct_max = 0;  /* modes 0 and 1 take the direct 3x3 kernels where they apply */
    fill_normal(x->c.w, nw, 0.5, 1);
    fill_normal(x->in, nin, 1.0, 2);
    fill_normal(x->R, x->nout, 1.0, 3);
}

static void conv_ctx_free(struct conv_ctx *x)
{
    nn_free(x->c.w);
    nn_free(x->c.dw);
    nn_free(x->in);
    nn_free(x->out);
    nn_free(x->R);
    nn_free(x->scratch);
}

START_TEST(test_conv_vs_naive)
{
    for (int chunked = 0; chunked < 3; chunked++) {
        struct conv_ctx x;
        conv_ctx_init(&x, &conv_cases[_i], chunked);
        float *ref = nn_alloc(x.nout);
        conv_fwd(&x, x.out);
        conv_forward_naive(&x.c, x.in, x.B, x.H, x.W, ref);
        double maxerr = 0.0;
        for (size_t i = 0; i < x.nout; i++) {
            double e = fabs(x.out[i] - ref[i]);
            if (e > maxerr) maxerr = e;
        }
        ck_assert_msg(maxerr < 1e-4, "case %d chunked %d: max |fast - naive| = %g", _i,
                      chunked, maxerr);
        nn_free(ref);
        conv_ctx_free(&x);
    }
}
END_TEST

START_TEST(test_conv_grad)
{
    for (int chunked = 0; chunked < 3; chunked++) {
        const struct conv_case *cc = &conv_cases[_i];
        struct conv_ctx x;
        conv_ctx_init(&x, cc, chunked);
        size_t nin = (size_t)cc->C * cc->B * cc->H * cc->W, nw = conv_weight_count(&x.c);
        float *din = nn_alloc(nin);
        conv_fwd(&x, x.out);
        conv_bwd(&x, din, 0);
        double ew = gc_rel_error(conv_loss, &x, x.c.w, x.c.dw, nw, 200, 1e-2f);
        double ei = gc_rel_error(conv_loss, &x, x.in, din, nin, 200, 1e-2f);
        ck_assert_msg(ew < GC_TOL, "case %d chunked %d: dw rel err %g", _i, chunked, ew);
        ck_assert_msg(ei < GC_TOL, "case %d chunked %d: din rel err %g", _i, chunked, ei);
        /* accumulate adds to what din holds */
        float *acc = nn_alloc(nin);
        for (size_t i = 0; i < nin; i++) acc[i] = 1.0f;
        conv_bwd(&x, acc, 1);
        for (size_t i = 0; i < nin; i++)
            ck_assert_msg(fabsf(acc[i] - 1.0f - din[i]) < 1e-4f, "accumulate at %zu", i);
        nn_free(acc);
        nn_free(din);
        conv_ctx_free(&x);
    }
}
END_TEST

/* 3x3 pad-1 shapes for the direct kernels (conv3x3.h), stride 1 and 2: output positions a
 * multiple of 16 per image or not, several tiles with a partial last one, images shorter
 * than a chunk, channel counts that are not multiples of the register blocks (8 forward, 3
 * weight gradient), batch 1; then stride-2 shapes that only im2col takes (odd sizes, 1x1). */
static const struct conv_case same_cases[] = {
    { 16, 16, 3, 1, 1, 3, 32, 32 }, /* 3 forward tiles */
    { 5, 11, 3, 1, 1, 5, 8, 8 },    /* 64 positions: a chunk holds 1/4 image */
    { 3, 16, 3, 1, 1, 4, 7, 9 },    /* 63 positions: chunks straddle images */
    { 13, 4, 3, 1, 1, 2, 1, 20 },   /* one-row images */
    { 7, 9, 3, 1, 1, 4, 37, 29 },   /* 1073 positions: tiles of both passes cut images */
    { 2, 1, 3, 1, 1, 1, 4, 4 },     /* batch 1, one chunk */
    { 17, 10, 3, 1, 1, 3, 2, 3 },   /* several images per chunk */
    { 4, 5, 3, 1, 1, 40, 16, 16 },  /* middle weight-gradient tiles read rows in place */
    { 16, 32, 3, 2, 1, 17, 32, 32 }, /* stride 2: 16x16 out, 4352 positions, 5 tiles */
    { 5, 11, 3, 2, 1, 3, 16, 16 },  /* stride 2: 8x8 out */
    { 3, 4, 3, 2, 1, 5, 14, 22 },   /* stride 2: 7x11 out, row tails under 8 */
    { 4, 3, 3, 2, 1, 2, 2, 2 },     /* stride 2: 1x1 out */
    { 6, 7, 3, 2, 1, 1, 74, 62 },   /* stride 2: 37x31 out, batch 1, tiles cut rows */
    { 3, 5, 3, 2, 1, 2, 9, 8 },     /* stride 2, odd height: im2col */
    { 3, 5, 3, 2, 1, 2, 9, 35 },    /* stride 2, odd sizes: im2col's vector gather and tail */
    { 5, 7, 1, 2, 0, 3, 6, 40 },    /* 1x1 stride 2 (projection shortcut): im2col */
    { 6, 4, 1, 2, 0, 2, 8, 64 },    /* 1x1 stride 2, rows of whole vectors */
};
#define N_SAME_CASES (sizeof(same_cases) / sizeof(same_cases[0]))

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double e = 0.0, m = 1.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > e) e = d;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return e / m;
}

/* Forward, weight gradient and input gradient (overwrite and accumulate) of one shape against
 * the nested loops, through the direct kernels (direct 1) or im2col (direct 0), with the
 * batch split into nt thread slices as a team would (dw summed over the slices). */
START_TEST(test_conv_same_vs_naive)
{
    const struct conv_case *cc = &same_cases[_i];
    struct conv c = { cc->C, cc->K, cc->R, cc->R, cc->stride, cc->pad, NULL, NULL };
    int B = cc->B, H = cc->H, W = cc->W;
    int ho = conv_out_dim(H, cc->R, cc->stride, cc->pad);
    int wo = conv_out_dim(W, cc->R, cc->stride, cc->pad);
    size_t nw = conv_weight_count(&c), nin = (size_t)cc->C * B * H * W;
    size_t nout = (size_t)cc->K * B * ho * wo;
    c.w = nn_alloc(nw);
    c.dw = nn_alloc(nw);
    float *in = nn_alloc(nin), *dout = nn_alloc(nout), *out = nn_alloc(nout);
    float *din = nn_alloc(nin), *dacc = nn_alloc(nin), *dwsum = nn_alloc(nw);
    float *ref_out = nn_alloc(nout), *ref_dw = nn_alloc(nw), *ref_din = nn_alloc(nin);
    size_t sf = conv_scratch_min(&c, H, W);
    float *scratch = nn_alloc(sf), *wt = nn_alloc(nw);
    fill_normal(c.w, nw, 0.5, 11);
    fill_normal(in, nin, 1.0, 12);
    fill_normal(dout, nout, 1.0, 13);
    conv_forward_naive(&c, in, B, H, W, ref_out);
    conv_backward_naive(&c, in, dout, B, H, W, ref_dw, ref_din);
    for (int direct = 0; direct < 2; direct++)
        for (int nt = 1; nt <= 3 && nt <= B; nt++) {
            memset(dwsum, 0, sizeof(float) * nw);
            for (size_t i = 0; i < nin; i++) dacc[i] = 0.5f;
            for (int t = 0; t < nt; t++) {
                struct nn_ctx x = nn_ctx_single(B, scratch, sf, wt);
                x.direct_max = direct ? 1 << 20 : 0;
                x.b0 = B * t / nt;
                x.b1 = B * (t + 1) / nt;
                conv_forward_ctx(&c, in, H, W, out, &x);
                conv_backward_ctx(&c, in, dout, H, W, din, 0, &x);
                for (size_t i = 0; i < nw; i++) dwsum[i] += c.dw[i];
                conv_backward_ctx(&c, in, dout, H, W, dacc, 1, &x);
            }
            double eo = max_rel_diff(out, ref_out, nout);
            double ew = max_rel_diff(dwsum, ref_dw, nw);
            double ei = max_rel_diff(din, ref_din, nin);
            ck_assert_msg(eo < 1e-5 && ew < 1e-5 && ei < 1e-5,
                          "case %d direct %d threads %d: out %g dw %g din %g", _i, direct, nt,
                          eo, ew, ei);
            for (size_t i = 0; i < nin; i++)
                ck_assert_msg(fabsf(dacc[i] - 0.5f - din[i]) < 1e-4f,
                              "case %d direct %d threads %d: accumulate at %zu", _i, direct, nt,
                              i);
        }
    nn_free(c.w);
    nn_free(c.dw);
    nn_free(in);
    nn_free(dout);
    nn_free(out);
    nn_free(din);
    nn_free(dacc);
    nn_free(dwsum);
    nn_free(ref_out);
    nn_free(ref_dw);
    nn_free(ref_din);
    nn_free(scratch);
    nn_free(wt);
}
END_TEST

/* ---- batch norm ---- */

enum { BN_PLAIN, BN_RELU, BN_JOIN };

struct bn_ctx {
    struct bn b;
    size_t N;
    int mode;
    float *x, *res, *y, *R;
};

static double bn_loss(void *p)
{
    struct bn_ctx *c = p;
    if (c->mode == BN_JOIN)
        bn_forward_join(&c->b, c->x, c->res, c->y, c->N, 1);
    else
        bn_forward(&c->b, c->x, c->y, c->N, 1, c->mode == BN_RELU);
    return dot_d(c->y, c->R, (size_t)c->b.C * c->N);
}

static void bn_alloc(struct bn *b, int C)
{
    b->C = C;
    b->gamma = nn_alloc(C);
    b->beta = nn_alloc(C);
    b->dgamma = nn_alloc(C);
    b->dbeta = nn_alloc(C);
    b->rmean = nn_alloc(C);
    b->rvar = nn_alloc(C);
    b->mean = nn_alloc(C);
    b->invstd = nn_alloc(C);
    b->part = NULL;
    b->scratch = nn_alloc((size_t)BN_SCRATCH * C);
    bn_init_params(b);
}

static void bn_free(struct bn *b)
{
    nn_free(b->gamma);
    nn_free(b->beta);
    nn_free(b->dgamma);
    nn_free(b->dbeta);
    nn_free(b->rmean);
    nn_free(b->rvar);
    nn_free(b->mean);
    nn_free(b->invstd);
    nn_free(b->scratch);
}

START_TEST(test_bn_grad)
{
    int mode = _i;
    struct bn_ctx c;
    memset(&c, 0, sizeof(c));
    int C = 3;
    c.N = 2 * 5 * 4; /* B 2, 5x4 */
    c.mode = mode;
    bn_alloc(&c.b, C);
    fill_normal(c.b.gamma, C, 1.0, 7);
    fill_normal(c.b.beta, C, 0.5, 8);
    size_t n = C * c.N;
    c.x = nn_alloc(n);
    c.res = nn_alloc(n);
    c.y = nn_alloc(n);
    c.R = nn_alloc(n);
    float *dx = nn_alloc(n), *dy = nn_alloc(n);
    fill_normal(c.x, n, 2.0, 9);
    for (size_t i = 0; i < n; i++) c.x[i] += 1.0f;
    fill_normal(c.res, n, 1.0, 10);
    fill_normal(c.R, n, 1.0, 11);
    bn_loss(&c);
    /* the join's relu mask comes from y; its residual gradient is the masked dy itself */
    memcpy(dy, c.R, sizeof(float) * n);
    bn_backward(&c.b, c.x, mode == BN_PLAIN ? NULL : c.y, dy, dx, c.N);
    double ex = gc_rel_error(bn_loss, &c, c.x, dx, n, 120, 1e-2f);
    double eg = gc_rel_error(bn_loss, &c, c.b.gamma, c.b.dgamma, C, 10, 1e-2f);
    double eb = gc_rel_error(bn_loss, &c, c.b.beta, c.b.dbeta, C, 10, 1e-2f);
    ck_assert_msg(ex < GC_TOL, "mode %d: dx rel err %g", mode, ex);
    ck_assert_msg(eg < GC_TOL, "mode %d: dgamma rel err %g", mode, eg);
    ck_assert_msg(eb < GC_TOL, "mode %d: dbeta rel err %g", mode, eb);
    if (mode == BN_JOIN) {
        float *dres = nn_alloc(n);
        relu_backward(c.y, c.R, dres, n);
        double er = gc_rel_error(bn_loss, &c, c.res, dres, n, 120, 1e-2f);
        ck_assert_msg(er < GC_TOL, "join: dres rel err %g", er);
        nn_free(dres);
    }
    nn_free(dx);
    nn_free(dy);
    nn_free(c.x);
    nn_free(c.res);
    nn_free(c.y);
    nn_free(c.R);
    bn_free(&c.b);
}
END_TEST

/* ---- synchronised BN (bn_set_sync) over two "processes": two threads, one BN each ---------- */

/* The processes' sum: each thread adds its vector, waits for the other, reads the total. */
struct two_procs {
    pthread_mutex_t mu;
    pthread_barrier_t added, read, cleared;
    double acc[64];
};

static void two_procs_sum(double *v, int n, void *arg)
{
    struct two_procs *t = arg;
    ck_assert_int_le(n, 64);
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < n; i++)
        t->acc[i] += v[i];
    pthread_mutex_unlock(&t->mu);
    pthread_barrier_wait(&t->added);
    memcpy(v, t->acc, (size_t)n * sizeof *v);
    if (pthread_barrier_wait(&t->read) == PTHREAD_BARRIER_SERIAL_THREAD)
        memset(t->acc, 0, sizeof t->acc);
    pthread_barrier_wait(&t->cleared);
}

/* One process: its BN layer, its share x (C, N) of the batch, dy, and what it computes. */
struct bn_proc {
    struct bn b;
    size_t N;
    int relu;
    float *x, *y, *dy, *dx;
};

static void *bn_proc_run(void *p)
{
    struct bn_proc *q = p;
    bn_forward(&q->b, q->x, q->y, q->N, 1, q->relu);
    bn_backward(&q->b, q->x, q->relu ? q->y : NULL, q->dy, q->dx, q->N);
    return NULL;
}

/* Synchronised BN on two processes' rows (10 and 14 a channel) equals one BN on all 24 rows:
 * outputs, dx, running statistics on both, and dgamma / dbeta summed. The one BN's gradients
 * are checked by finite differences (test_bn_grad), so this carries that check to the
 * synchronised layer, with running means that are not zero (the sums are taken about them). */
START_TEST(test_bn_sync)
{
    int relu = _i, C = 3;
    size_t Ns[2] = { 10, 14 }, N = Ns[0] + Ns[1];
    struct bn whole;
    struct bn_proc pr[2];
    memset(pr, 0, sizeof pr);
    bn_alloc(&whole, C);
    fill_normal(whole.gamma, C, 1.0, 21);
    fill_normal(whole.beta, C, 0.5, 22);
    fill_normal(whole.rmean, C, 1.0, 23);
    float *x = nn_alloc(C * N), *y = nn_alloc(C * N), *dy = nn_alloc(C * N),
          *dx = nn_alloc(C * N);
    fill_normal(x, C * N, 2.0, 24);
    fill_normal(dy, C * N, 1.0, 25);
    for (int k = 0; k < 2; k++) {
        struct bn_proc *q = &pr[k];
        bn_alloc(&q->b, C);
        q->b.sync = calloc(2 * (size_t)C + 2, sizeof(double));
        memcpy(q->b.gamma, whole.gamma, C * sizeof(float));
        memcpy(q->b.beta, whole.beta, C * sizeof(float));
        memcpy(q->b.rmean, whole.rmean, C * sizeof(float));
        q->N = Ns[k];
        q->relu = relu;
        q->x = nn_alloc(C * q->N);
        q->y = nn_alloc(C * q->N);
        q->dy = nn_alloc(C * q->N);
        q->dx = nn_alloc(C * q->N);
        for (int ch = 0; ch < C; ch++) { /* process k holds rows [k ? 10 : 0, ...) */
            size_t at = (size_t)ch * N + (k ? Ns[0] : 0);
            memcpy(q->x + (size_t)ch * q->N, x + at, q->N * sizeof(float));
            memcpy(q->dy + (size_t)ch * q->N, dy + at, q->N * sizeof(float));
        }
    }
    bn_forward(&whole, x, y, N, 1, relu);
    bn_backward(&whole, x, relu ? y : NULL, dy, dx, N);

    struct two_procs t;
    memset(&t, 0, sizeof t);
    pthread_mutex_init(&t.mu, NULL);
    pthread_barrier_init(&t.added, NULL, 2);
    pthread_barrier_init(&t.read, NULL, 2);
    pthread_barrier_init(&t.cleared, NULL, 2);
    bn_set_sync(two_procs_sum, &t);
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(pthread_create(&th[k], NULL, bn_proc_run, &pr[k]), 0);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    bn_set_sync(NULL, NULL);

    double ey = 0, edx = 0, eg = 0, estat = 0;
    for (int k = 0; k < 2; k++)
        for (int ch = 0; ch < C; ch++)
            for (size_t i = 0; i < pr[k].N; i++) {
                size_t a = (size_t)ch * N + (k ? Ns[0] : 0) + i, b = (size_t)ch * pr[k].N + i;
                ey = fmax(ey, fabs(pr[k].y[b] - y[a]));
                edx = fmax(edx, fabs(pr[k].dx[b] - dx[a]));
            }
    for (int ch = 0; ch < C; ch++) {
        eg = fmax(eg, fabs(pr[0].b.dgamma[ch] + pr[1].b.dgamma[ch] - whole.dgamma[ch]));
        eg = fmax(eg, fabs(pr[0].b.dbeta[ch] + pr[1].b.dbeta[ch] - whole.dbeta[ch]));
        for (int k = 0; k < 2; k++) {
            estat = fmax(estat, fabs(pr[k].b.rmean[ch] - whole.rmean[ch]));
            estat = fmax(estat, fabs(pr[k].b.rvar[ch] - whole.rvar[ch]));
        }
    }
    ck_assert_msg(ey < 1e-5 && edx < 1e-5 && eg < 1e-4 && estat < 1e-5,
                  "relu %d: max |diff| y %.2g dx %.2g dgamma/dbeta %.2g running stats %.2g",
                  relu, ey, edx, eg, estat);
    /* without the sync each process normalises its own rows: the check above can fail */
    bn_forward(&pr[1].b, pr[1].x, pr[1].y, pr[1].N, 1, relu);
    double alone = 0;
    for (int ch = 0; ch < C; ch++)
        for (size_t i = 0; i < pr[1].N; i++)
            alone = fmax(alone, fabs(pr[1].y[(size_t)ch * pr[1].N + i] -
                                     y[(size_t)ch * N + Ns[0] + i]));
    ck_assert_msg(alone > 1e-3, "one process's own statistics match the whole batch's (%g)", alone);
    for (int k = 0; k < 2; k++) {
        free(pr[k].b.sync);
        bn_free(&pr[k].b);
        nn_free(pr[k].x);
        nn_free(pr[k].y);
        nn_free(pr[k].dy);
        nn_free(pr[k].dx);
    }
    bn_free(&whole);
    nn_free(x);
    nn_free(y);
    nn_free(dy);
    nn_free(dx);
    pthread_barrier_destroy(&t.added);
    pthread_barrier_destroy(&t.read);
    pthread_barrier_destroy(&t.cleared);
    pthread_mutex_destroy(&t.mu);
}
END_TEST

START_TEST(test_bn_modes)
{
    int C = 2;
    size_t N = 50;
    struct bn b;
    bn_alloc(&b, C);
    b.gamma[0] = 2.0f;
    b.beta[0] = 0.5f;
    b.gamma[1] = 0.5f;
    b.beta[1] = -1.0f;
    float x[100], y[100], y2[100];
    fill_normal(x, 100, 3.0, 21);
    for (int i = 0; i < 50; i++) x[i] += 4.0f;
    bn_forward(&b, x, y, N, 1, 0);
    for (int c = 0; c < C; c++) {
        double m = 0, v = 0;
        for (size_t i = 0; i < N; i++) m += x[c * N + i];
        m /= N;
        for (size_t i = 0; i < N; i++) v += (x[c * N + i] - m) * (x[c * N + i] - m);
        /* train: output has mean beta and std |gamma| (biased variance) */
        double ym = 0, yv = 0;
        for (size_t i = 0; i < N; i++) ym += y[c * N + i];
        ym /= N;
        for (size_t i = 0; i < N; i++) yv += (y[c * N + i] - ym) * (y[c * N + i] - ym);
        ck_assert_msg(fabs(ym - b.beta[c]) < 1e-4, "train mean %g", ym);
        ck_assert_msg(fabs(sqrt(yv / N) - fabs(b.gamma[c])) < 1e-3, "train std %g", sqrt(yv / N));
        /* running stats: momentum 0.1 from (0, 1), unbiased variance */
        ck_assert_msg(fabs(b.rmean[c] - 0.1 * m) < 1e-4, "rmean %g vs %g", b.rmean[c], 0.1 * m);
        ck_assert_msg(fabs(b.rvar[c] - (0.9 + 0.1 * v / (N - 1))) < 1e-3, "rvar %g", b.rvar[c]);
    }
    /* eval: running statistics, running stats untouched */
    float rm0 = b.rmean[0], rv0 = b.rvar[0];
    bn_forward(&b, x, y2, N, 0, 1);
    ck_assert(b.rmean[0] == rm0 && b.rvar[0] == rv0);
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < N; i++) {
            double e = (x[c * N + i] - b.rmean[c]) / sqrt(b.rvar[c] + 1e-5) * b.gamma[c]
                       + b.beta[c];
            if (e < 0) e = 0;
            ck_assert_msg(fabs(y2[c * N + i] - e) < 1e-4, "eval %g vs %g", y2[c * N + i], e);
        }
    bn_free(&b);
}
END_TEST

/* ---- kernel levels ---- */

/* The BN kernels (train forward plain, with ReLU and with the residual join; backward) and
 * the masked add at kernel level _i (common/cpu.h) against plain double loops, over a size
 * that is not a whole number of 16-float vectors. A level this CPU lacks is reported and
 * not run (tests/it_isa_levels.sh runs the whole suite at each lower level). */
START_TEST(test_levels_vs_plain)
{
    enum cpu_isa want = (enum cpu_isa)_i;
    if (cpu_isa_set(want) != want) {
        fprintf(stderr, "check_nn_layers: this CPU has no %s kernels; that level not run\n",
                cpu_isa_name(want));
        cpu_isa_set(cpu_isa_detected());
        return;
    }
    enum { C = 3, B = 3, HW = 39 }; /* 117 floats per channel: 7 vectors and a tail of 5 */
    const size_t N = (size_t)B * HW, n = (size_t)C * N;
    struct bn b;
    bn_alloc(&b, C);
    for (int c = 0; c < C; c++) {
        b.gamma[c] = 0.5f + 0.7f * (float)c;
        b.beta[c] = 0.3f - 0.4f * (float)c;
    }
    float *x = nn_alloc(n), *res = nn_alloc(n), *y = nn_alloc(n), *dy = nn_alloc(n);
    float *dx = nn_alloc(n);
    fill_normal(x, n, 2.0, 31);
    for (size_t i = 0; i < n; i++) x[i] += 1.5f; /* a mean away from the running mean */
    fill_normal(res, n, 1.0, 32);
    fill_normal(dy, n, 1.0, 33);
    for (int mode = BN_PLAIN; mode <= BN_JOIN; mode++) {
        if (mode == BN_JOIN)
            bn_forward_join(&b, x, res, y, N, 1);
        else
            bn_forward(&b, x, y, N, 1, mode == BN_RELU);
        bn_backward(&b, x, mode == BN_PLAIN ? NULL : y, dy, dx, N);
        for (int c = 0; c < C; c++) {
            const float *xc = x + c * N, *rc = res + c * N;
            double m = 0, v = 0, sg = 0, sgx = 0;
            for (size_t i = 0; i < N; i++) m += xc[i];
            m /= (double)N;
            for (size_t i = 0; i < N; i++) v += (xc[i] - m) * (xc[i] - m);
            double is = 1.0 / sqrt(v / (double)N + BN_EPS);
            double ref[B * HW], g[B * HW];
            for (size_t i = 0; i < N; i++) {
                double e = (xc[i] - m) * is * b.gamma[c] + b.beta[c];
                if (mode == BN_JOIN) e += rc[i];
                if (mode != BN_PLAIN && e < 0) e = 0;
                ref[i] = e;
                g[i] = mode != BN_PLAIN && e <= 0 ? 0.0 : dy[c * N + i];
                sg += g[i];
                sgx += g[i] * (xc[i] - m) * is;
            }
            for (size_t i = 0; i < N; i++) {
                double d = b.gamma[c] * is
                           * (g[i] - sg / (double)N - (xc[i] - m) * is * sgx / (double)N);
                ck_assert_msg(fabs(y[c * N + i] - ref[i]) < 1e-4 * (1 + fabs(ref[i])),
                              "%s mode %d ch %d y[%zu] %g vs %g", cpu_isa_name(want), mode, c,
                              i, y[c * N + i], ref[i]);
                ck_assert_msg(fabs(dx[c * N + i] - d) < 1e-4 * (1 + fabs(d)),
                              "%s mode %d ch %d dx[%zu] %g vs %g", cpu_isa_name(want), mode, c,
                              i, dx[c * N + i], d);
            }
            ck_assert_msg(fabs(b.dbeta[c] - sg) < 1e-3 * (1 + fabs(sg)) &&
                              fabs(b.dgamma[c] - sgx) < 1e-3 * (1 + fabs(sgx)),
                          "%s mode %d ch %d dbeta %g vs %g dgamma %g vs %g", cpu_isa_name(want),
                          mode, c, b.dbeta[c], sg, b.dgamma[c], sgx);
        }
    }
    /* masked add: dx += dy where y > 0, images [1, 3) of 3 */
    struct nn_ctx ctx = nn_ctx_single(B, NULL, 0, NULL);
    ctx.b0 = 1;
    for (size_t i = 0; i < n; i++) dx[i] = (float)i * 0.01f;
    add_masked_ctx(dx, dy, x, C, HW, &ctx);
    for (size_t i = 0; i < n; i++) {
        int mine = i % N >= (size_t)HW;
        double e = (float)i * 0.01f + (mine && x[i] > 0.0f ? dy[i] : 0.0f);
        ck_assert_msg(fabs(dx[i] - e) < 1e-5, "%s masked add at %zu: %g vs %g",
                      cpu_isa_name(want), i, dx[i], e);
    }
    nn_free(x);
    nn_free(res);
    nn_free(y);
    nn_free(dy);
    nn_free(dx);
    bn_free(&b);
    cpu_isa_set(cpu_isa_detected());
}
END_TEST

/* ---- relu, add, pool, linear, l2norm ---- */

struct ew_ctx {
    int kind;
    size_t n;
    float *a, *b, *y, *R;
    int C, B, d;
    size_t HW;
    struct linear l;
};

enum { EW_RELU, EW_ADD, EW_POOL, EW_LINEAR, EW_L2 };

static double ew_loss(void *p)
{
    struct ew_ctx *c = p;
    size_t ny = c->n;
    float norms[16];
    switch (c->kind) {
    case EW_RELU: relu_forward(c->a, c->y, c->n); break;
    case EW_ADD: add_forward(c->a, c->b, c->y, c->n); break;
    case EW_POOL:
        avgpool_forward(c->a, c->C, c->B, c->HW, c->y);
        ny = (size_t)c->B * c->C;
        break;
    case EW_LINEAR:
        linear_forward(&c->l, c->a, c->B, c->y);
        ny = (size_t)c->B * c->l.out;
        break;
    case EW_L2:
        l2norm_forward(c->a, c->B, c->d, c->y, norms);
        ny = (size_t)c->B * c->d;
        break;
    }
    return dot_d(c->y, c->R, ny);
}

START_TEST(test_elementwise_grads)
{
    struct ew_ctx c;
    memset(&c, 0, sizeof(c));
    c.n = 60;
    c.a = nn_alloc(c.n);
    c.b = nn_alloc(c.n);
    c.y = nn_alloc(c.n);
    c.R = nn_alloc(c.n);
    float *g = nn_alloc(c.n), *g2 = nn_alloc(c.n);
    fill_normal(c.a, c.n, 1.0, 31);
    fill_normal(c.b, c.n, 1.0, 32);
    fill_normal(c.R, c.n, 1.0, 33);
    /* keep relu inputs away from the kink */
    for (size_t i = 0; i < c.n; i++)
        if (fabsf(c.a[i]) < 0.05f) c.a[i] = 0.3f;

    c.kind = EW_RELU;
    ew_loss(&c);
    relu_backward(c.y, c.R, g, c.n);
    ck_assert_msg(gc_rel_error(ew_loss, &c, c.a, g, c.n, 60, 1e-2f) < GC_TOL, "relu");

    c.kind = EW_ADD;
    ck_assert_msg(gc_rel_error(ew_loss, &c, c.a, c.R, c.n, 60, 1e-2f) < GC_TOL, "add a");
    ck_assert_msg(gc_rel_error(ew_loss, &c, c.b, c.R, c.n, 60, 1e-2f) < GC_TOL, "add b");

    c.kind = EW_POOL; /* C 3, B 2, HW 10 */
    c.C = 3;
    c.B = 2;
    c.HW = 10;
    avgpool_backward(c.R, c.C, c.B, c.HW, g);
    ck_assert_msg(gc_rel_error(ew_loss, &c, c.a, g, c.n, 60, 1e-2f) < GC_TOL, "pool");

    c.kind = EW_LINEAR; /* B 4, in 15, out 3 */
    c.B = 4;
    c.l.in = 15;
    c.l.out = 3;
    c.l.w = nn_alloc(45);
    c.l.dw = nn_alloc(45);
    c.l.b = nn_alloc(3);
    c.l.db = nn_alloc(3);
    fill_normal(c.l.w, 45, 0.5, 34);
    fill_normal(c.l.b, 3, 0.5, 35);
    linear_backward(&c.l, c.a, c.R, c.B, g);
    ck_assert_msg(gc_rel_error(ew_loss, &c, c.a, g, 60, 60, 1e-2f) < GC_TOL, "linear dx");
    ck_assert_msg(gc_rel_error(ew_loss, &c, c.l.w, c.l.dw, 45, 45, 1e-2f) < GC_TOL, "linear dw");
    ck_assert_msg(gc_rel_error(ew_loss, &c, c.l.b, c.l.db, 3, 3, 1e-2f) < GC_TOL, "linear db");

    c.kind = EW_L2; /* B 4, d 15 */
    c.d = 15;
    float norms[4];
    l2norm_forward(c.a, c.B, c.d, c.y, norms);
    l2norm_backward(c.y, norms, c.R, c.B, c.d, g2);
    ck_assert_msg(gc_rel_error(ew_loss, &c, c.a, g2, 60, 60, 1e-3f) < GC_TOL, "l2norm");
    for (int i = 0; i < c.B; i++) {
        double s = dot_d(c.y + i * c.d, c.y + i * c.d, c.d);
        ck_assert_msg(fabs(s - 1.0) < 1e-5, "row %d norm^2 %g", i, s);
    }
    nn_free(c.l.w);
    nn_free(c.l.dw);
    nn_free(c.l.b);
    nn_free(c.l.db);
    nn_free(c.a);
    nn_free(c.b);
    nn_free(c.y);
    nn_free(c.R);
    nn_free(g);
    nn_free(g2);
}
END_TEST

/* ---- BasicBlock ---- */

struct blk_ctx {
    struct block k;
    float *params, *grads, *buffers, *acts;
    float *x, *R, *scratch, *wt;
    size_t scratch_floats, nout;
    int B;
    struct nn_ctx ctx;
};

static double blk_loss(void *p)
{
    struct blk_ctx *c = p;
    block_forward(&c->k, c->x, 1, &c->ctx);
    return dot_d(c->k.y, c->R, c->nout);
}

static void blk_check(int cin, int cout, int stride, int B, int H)
{
    struct blk_ctx c;
    memset(&c, 0, sizeof(c));
    struct nn_layout L;
    memset(&L, 0, sizeof(L));
    L.threads = 1;
    block_init(&c.k, cin, cout, stride, H, H, B, &L);
    c.params = nn_alloc(L.params.used);
    c.grads = nn_alloc(L.grads.used);
    c.buffers = nn_alloc(L.buffers.used);
    c.acts = nn_alloc(L.acts.used);
    size_t np = L.params.used;
    struct nn_layout L2 = { { c.params, 0 }, { c.grads, 0 }, { c.buffers, 0 }, { c.acts, 0 }, 1 };
    block_init(&c.k, cin, cout, stride, H, H, B, &L2);
    struct rng r;
    rng_seed(&r, 41);
    block_init_weights(&c.k, &r, NET_INIT_HE);
    /* non-trivial BN affine parameters so every term matters */
    fill_normal(c.k.b2.beta, cout, 0.3, 42);
    fill_normal(c.k.b1.beta, cout, 0.3, 43);
    c.B = B;
    size_t nin = (size_t)cin * B * H * H;
    c.nout = (size_t)cout * B * c.k.Ho * c.k.Wo;
    c.x = nn_alloc(nin);
    c.R = nn_alloc(c.nout);
    c.scratch_floats = block_scratch_min(&c.k);
    c.scratch = nn_alloc(c.scratch_floats);
    c.wt = nn_alloc(conv_weight_count(&c.k.c2) + conv_weight_count(&c.k.c1));
    c.ctx = nn_ctx_single(B, c.scratch, c.scratch_floats, c.wt);
    fill_normal(c.x, nin, 1.0, 44);
    fill_normal(c.R, c.nout, 1.0, 45);
    size_t na = block_act_floats(&c.k);
    float *dy = nn_alloc(na), *dx = nn_alloc(nin), *t1 = nn_alloc(na), *t2 = nn_alloc(na);
    blk_loss(&c);
    memcpy(dy, c.R, sizeof(float) * c.nout);
    block_backward(&c.k, c.x, dy, dx, t1, t2, &c.ctx);
    double ex = gc_rel_error(blk_loss, &c, c.x, dx, nin, 150, 1e-2f);
    double ep = gc_rel_error(blk_loss, &c, c.params, c.grads, np, 300, 1e-2f);
    ck_assert_msg(ex < 5e-2, "block %d->%d s%d: dx rel err %g", cin, cout, stride, ex);
    ck_assert_msg(ep < 5e-2, "block %d->%d s%d: dparams rel err %g", cin, cout, stride, ep);
    nn_free(dy);
    nn_free(dx);
    nn_free(t1);
    nn_free(t2);
    nn_free(c.x);
    nn_free(c.R);
    nn_free(c.scratch);
    nn_free(c.wt);
    nn_free(c.params);
    nn_free(c.grads);
    nn_free(c.buffers);
    nn_free(c.acts);
}

START_TEST(test_block_projection_grad) { blk_check(3, 5, 2, 2, 6); }
END_TEST

START_TEST(test_block_identity_grad) { blk_check(4, 4, 1, 2, 5); }
END_TEST

/* ---- bottleneck ---- */

struct bn_blk_ctx {
    struct bottleneck k;
    float *x, *R;
    size_t nout;
    struct nn_ctx ctx;
};

static double bneck_loss(void *p)
{
    struct bn_blk_ctx *c = p;
    bottleneck_forward(&c->k, c->x, 1, &c->ctx);
    return dot_d(c->k.y, c->R, c->nout);
}

/* A whole bottleneck block against central differences, input and every parameter, on one
 * thread; direct 0 puts its 3x3 on im2col too (the direct kernels have their own checks
 * above), so the 1x1 pointwise and strided paths are the ones under test either way. */
static void bneck_check(int cin, int width, int cout, int stride, int B, int H, int direct)
{
    struct bn_blk_ctx c;
    memset(&c, 0, sizeof(c));
    struct nn_layout L;
    memset(&L, 0, sizeof(L));
    L.threads = 1;
    bottleneck_init(&c.k, cin, width, cout, stride, H, H, B, &L);
    float *params = nn_alloc(L.params.used), *grads = nn_alloc(L.grads.used);
    float *buffers = nn_alloc(L.buffers.used), *acts = nn_alloc(L.acts.used);
    size_t np = L.params.used;
    struct nn_layout L2 = { { params, 0 }, { grads, 0 }, { buffers, 0 }, { acts, 0 }, 1 };
    bottleneck_init(&c.k, cin, width, cout, stride, H, H, B, &L2);
    ck_assert_int_eq(c.k.has_sc, stride != 1 || cin != cout);
    struct rng r;
    rng_seed(&r, 51);
    bottleneck_init_weights(&c.k, &r, NET_INIT_HE_OUT);
    /* non-trivial BN affine parameters so every term matters */
    fill_normal(c.k.b1.beta, width, 0.3, 52);
    fill_normal(c.k.b2.beta, width, 0.3, 53);
    fill_normal(c.k.b3.beta, cout, 0.3, 54);
    size_t nin = (size_t)cin * B * H * H;
    c.nout = (size_t)cout * B * c.k.Ho * c.k.Wo;
    c.x = nn_alloc(nin);
    c.R = nn_alloc(c.nout);
    size_t sf = bottleneck_scratch_min(&c.k) * (size_t)B;
    float *scratch = nn_alloc(sf), *wt = nn_alloc(conv_weight_count(&c.k.c2));
    c.ctx = nn_ctx_single(B, scratch, sf, wt);
    c.ctx.direct_max = direct ? NN_DIRECT_MAX : 0;
    fill_normal(c.x, nin, 1.0, 55);
    fill_normal(c.R, c.nout, 1.0, 56);
    size_t na = bottleneck_act_floats(&c.k);
    float *dy = nn_alloc(na), *dx = nn_alloc(nin), *t1 = nn_alloc(na), *t2 = nn_alloc(na);
    bneck_loss(&c);
    memcpy(dy, c.R, sizeof(float) * c.nout);
    bottleneck_backward(&c.k, c.x, dy, dx, t1, t2, &c.ctx);
    ck_assert(memcmp(dy, c.R, sizeof(float) * c.nout) == 0); /* dy only read */
    /* h 1e-3, not 1e-2: with 3 channels of 2 x 3 x 3 positions behind each BN, steps of 1e-2
       cross ReLU kinks often enough to give errors near 0.15 on a correct gradient */
    double ex = gc_rel_error(bneck_loss, &c, c.x, dx, nin, 150, 1e-3f);
    double ep = gc_rel_error(bneck_loss, &c, params, grads, np, 300, 1e-3f);
    ck_assert_msg(ex < 5e-2, "bottleneck %d->%d->%d s%d: dx rel err %g", cin, width, cout,
                  stride, ex);
    ck_assert_msg(ep < 5e-2, "bottleneck %d->%d->%d s%d: dparams rel err %g", cin, width, cout,
                  stride, ep);
    if (c.k.has_sc) {
        /* the projection's own conv weights (a miswired shortcut hides in the whole) */
        size_t ns = conv_weight_count(&c.k.cs);
        double es = gc_rel_error(bneck_loss, &c, c.k.cs.w, c.k.cs.dw, ns, ns, 1e-3f);
        ck_assert_msg(es < 5e-2, "bottleneck s%d: shortcut conv rel err %g", stride, es);
    }
    /* the parameter count bottleneck.h documents */
    size_t want = (size_t)cin * width + (size_t)width * width * 9 + (size_t)width * cout
                  + 4 * (size_t)width + 2 * (size_t)cout
                  + (c.k.has_sc ? (size_t)cin * cout + 2 * (size_t)cout : 0);
    ck_assert_uint_eq(bottleneck_scalars(&c.k), want);
    nn_free(dy);
    nn_free(dx);
    nn_free(t1);
    nn_free(t2);
    nn_free(c.x);
    nn_free(c.R);
    nn_free(scratch);
    nn_free(wt);
    nn_free(params);
    nn_free(grads);
    nn_free(buffers);
    nn_free(acts);
}

/* stage openings with a 1x1 stride-2 projection (even and odd sizes), a first stage's 1x1
 * stride-1 projection (cin != cout), an identity block; the 3x3 on im2col and direct */
START_TEST(test_bottleneck_grad)
{
    for (int direct = 0; direct < 2; direct++) {
        bneck_check(6, 3, 12, 2, 2, 6, direct);
        bneck_check(5, 2, 8, 2, 3, 7, direct);
        bneck_check(4, 2, 8, 1, 2, 5, direct);
        bneck_check(8, 2, 8, 1, 2, 5, direct);
    }
}
END_TEST

/* ---- max pool ---- */

struct mp_ctx {
    struct maxpool p;
    int C, B, H, W;
    float *x, *y, *R;
    int32_t *arg;
    size_t ny;
};

static double mp_loss(void *p)
{
    struct mp_ctx *c = p;
    maxpool_forward_range(&c->p, c->x, c->C, c->B, c->H, c->W, 0, c->B, c->y, c->arg);
    return dot_d(c->y, c->R, c->ny);
}

/* The imagenet stem's 3x3 stride-2 pad-1 pool on 7x6 images (a window hanging over each
 * edge) of negative, distinct inputs 0.05 apart, so a zero padding would win and no
 * difference of h = 1e-2 moves an argmax: values against nested loops, thread slices against
 * the whole batch, and the gradient against central differences. */
START_TEST(test_maxpool)
{
    struct mp_ctx c = { { 3, 2, 1 }, 2, 3, 7, 6, NULL, NULL, NULL, NULL, 0 };
    int Ho = maxpool_out_dim(&c.p, c.H), Wo = maxpool_out_dim(&c.p, c.W);
    ck_assert_int_eq(Ho, 4); /* floor((7 + 2 - 3) / 2) + 1 */
    ck_assert_int_eq(Wo, 3);
    size_t nx = (size_t)c.C * c.B * c.H * c.W;
    c.ny = (size_t)c.C * c.B * Ho * Wo;
    c.x = nn_alloc(nx);
    c.y = nn_alloc(c.ny);
    c.R = nn_alloc(c.ny);
    c.arg = (int32_t *)(void *)nn_alloc(c.ny);
    float *y2 = nn_alloc(c.ny), *g = nn_alloc(nx), *g2 = nn_alloc(nx);
    int32_t *arg2 = (int32_t *)(void *)nn_alloc(c.ny);
    for (size_t i = 0; i < nx; i++) c.x[i] = -0.05f * (float)(1 + (i * 37) % nx);
    fill_normal(c.R, c.ny, 1.0, 41);
    mp_loss(&c);
    for (int ch = 0; ch < c.C; ch++)
        for (int b = 0; b < c.B; b++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    const float *img = c.x + ((size_t)ch * c.B + b) * c.H * c.W;
                    float m = -INFINITY;
                    for (int h = 2 * oh - 1; h <= 2 * oh + 1; h++)
                        for (int w = 2 * ow - 1; w <= 2 * ow + 1; w++)
                            if (h >= 0 && h < c.H && w >= 0 && w < c.W && img[h * c.W + w] > m)
                                m = img[h * c.W + w];
                    size_t o = (((size_t)ch * c.B + b) * Ho + oh) * Wo + ow;
                    ck_assert_msg(c.y[o] == m && m < 0.0f, "out %zu: %g, expected %g", o,
                                  c.y[o], m);
                    ck_assert(img[c.arg[o]] == m);
                }
    maxpool_backward_range(&c.p, c.R, c.arg, c.C, c.B, c.H, c.W, 0, c.B, g);
    /* two slices, [0, 1) and [1, 3), give the whole batch's values and gradient */
    for (int s = 0; s < 2; s++) {
        int b0 = s == 0 ? 0 : 1, b1 = s == 0 ? 1 : c.B;
        maxpool_forward_range(&c.p, c.x, c.C, c.B, c.H, c.W, b0, b1, y2, arg2);
        maxpool_backward_range(&c.p, c.R, arg2, c.C, c.B, c.H, c.W, b0, b1, g2);
    }
    ck_assert(memcmp(y2, c.y, sizeof(float) * c.ny) == 0);
    ck_assert(memcmp(g2, g, sizeof(float) * nx) == 0);
    double e = gc_rel_error(mp_loss, &c, c.x, g, nx, nx, 1e-2f);
    ck_assert_msg(e < 1e-3, "max pool gradient rel err %g", e);
    nn_free(c.x);
    nn_free(c.y);
    nn_free(c.R);
    nn_free((float *)(void *)c.arg);
    nn_free((float *)(void *)arg2);
    nn_free(y2);
    nn_free(g);
    nn_free(g2);
}
END_TEST

static Suite *nn_layers_suite(void)
{
    Suite *s = suite_create("nn_layers");
    TCase *tc = tcase_create("layers");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_conv_vs_naive, 0, N_CONV_CASES);
    tcase_add_loop_test(tc, test_conv_grad, 0, N_CONV_CASES);
    tcase_add_loop_test(tc, test_conv_same_vs_naive, 0, N_SAME_CASES);
    tcase_add_loop_test(tc, test_bn_grad, BN_PLAIN, BN_JOIN + 1);
    tcase_add_test(tc, test_bn_modes);
    tcase_add_loop_test(tc, test_bn_sync, 0, 2);
    tcase_add_loop_test(tc, test_levels_vs_plain, CPU_ISA_BASE, CPU_ISA_AVX512 + 1);
    tcase_add_test(tc, test_elementwise_grads);
    tcase_add_test(tc, test_block_projection_grad);
    tcase_add_test(tc, test_block_identity_grad);
    tcase_add_test(tc, test_bottleneck_grad);
    tcase_add_test(tc, test_maxpool);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(nn_layers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
