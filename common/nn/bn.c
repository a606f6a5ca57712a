/* Batch normalisation (see bn.h). */
#include "common/nn/bn.h"

#include <math.h>
#include <string.h>

#include "common/cpu.h"
#include "common/nn/team.h"
#include "common/nn/vec.h"

/* float lanes are flushed into double every BN_FLUSH vectors */
#define BN_FLUSH 256

/* The four per-channel kernels are compiled once per kernel level and chosen at run time
 * (CPU_VARIANTS, common/cpu.h). */

/* sum(x - k) and sum((x - k)^2) over n floats */
CPU_INLINE void bn_sums_body(const float *x, size_t n, float k, double *s, double *ss)
{
    double ds = 0.0, dss = 0.0;
    v16f vk = v16_set1(k);
    size_t i = 0;
    while (i + 16 <= n) {
        v16f a = { 0 }, a2 = { 0 };
        for (int j = 0; j < BN_FLUSH && i + 16 <= n; j++, i += 16) {
            v16f v = v16_load(x + i) - vk;
            a += v;
            a2 += v * v;
        }
        ds += v16_hsum(a);
        dss += v16_hsum(a2);
    }
    for (; i < n; i++) {
        double v = x[i] - k;
        ds += v;
        dss += v * v;
    }
    *s = ds;
    *ss = dss;
}
CPU_VARIANTS(bn_sums, (const float *x, size_t n, float k, double *s, double *ss),
             (x, n, k, s, ss))

/* sum(g) and sum(g * (x - mean)) with g = dy, or dy masked by y > 0 */
CPU_INLINE void bn_grad_sums_body(const float *x, const float *y, const float *dy, size_t n,
                                  float mean, double *sg, double *sgx)
{
    double ds = 0.0, dsx = 0.0;
    v16f vm = v16_set1(mean);
    size_t i = 0;
    while (i + 16 <= n) {
        v16f a = { 0 }, b = { 0 };
        for (int j = 0; j < BN_FLUSH && i + 16 <= n; j++, i += 16) {
            v16f g = v16_load(dy + i);
            if (y) g = v16_mask_pos(g, v16_load(y + i));
            a += g;
            b += g * (v16_load(x + i) - vm);
        }
        ds += v16_hsum(a);
        dsx += v16_hsum(b);
    }
    for (; i < n; i++) {
        float g = y && y[i] <= 0.0f ? 0.0f : dy[i];
        ds += g;
        dsx += (double)g * (x[i] - mean);
    }
    *sg = ds;
    *sgx = dsx;
}
CPU_VARIANTS(bn_grad_sums,
             (const float *x, const float *y, const float *dy, size_t n, float mean, double *sg,
              double *sgx),
             (x, y, dy, n, mean, sg, sgx))

/* y = x * a + s, plus r and through ReLU when r is given, through ReLU alone when relu */
CPU_INLINE void bn_apply_body(const float *xc, const float *rc, float *yc, size_t n, float a,
                              float s, int relu)
{
    v16f va = v16_set1(a), vs = v16_set1(s);
    size_t i = 0;
    if (rc) {
        for (; i + 16 <= n; i += 16)
            v16_store(yc + i, v16_relu(v16_load(xc + i) * va + vs + v16_load(rc + i)));
        for (; i < n; i++) {
            float v = xc[i] * a + s + rc[i];
            yc[i] = v > 0.0f ? v : 0.0f;
        }
    } else if (relu) {
        for (; i + 16 <= n; i += 16)
            v16_store(yc + i, v16_relu(v16_load(xc + i) * va + vs));
        for (; i < n; i++) {
            float v = xc[i] * a + s;
            yc[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (; i + 16 <= n; i += 16) v16_store(yc + i, v16_load(xc + i) * va + vs);
        for (; i < n; i++) yc[i] = xc[i] * a + s;
    }
}
CPU_VARIANTS(bn_apply,
             (const float *xc, const float *rc, float *yc, size_t n, float a, float s, int relu),
             (xc, rc, yc, n, a, s, relu))

/* dx = k * (g - mb - (x - mean) * mg), g = dy, or dy masked by y > 0 when y is given */
CPU_INLINE void bn_dx_body(const float *xc, const float *yc, const float *dyc, float *dxc,
                           size_t n, float k, float mb, float mg, float mean)
{
    v16f vk = v16_set1(k), vmb = v16_set1(mb), vmg = v16_set1(mg), vmean = v16_set1(mean);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16f g = v16_load(dyc + i);
        if (yc) g = v16_mask_pos(g, v16_load(yc + i));
        v16_store(dxc + i, vk * (g - vmb - (v16_load(xc + i) - vmean) * vmg));
    }
    for (; i < n; i++) {
        float g = yc && yc[i] <= 0.0f ? 0.0f : dyc[i];
        dxc[i] = k * (g - mb - (xc[i] - mean) * mg);
    }
}
CPU_VARIANTS(bn_dx,
             (const float *xc, const float *yc, const float *dyc, float *dxc, size_t n, float k,
              float mb, float mg, float mean),
             (xc, yc, dyc, dxc, n, k, mb, mg, mean))

/* Sums (s, ss) of every thread for C channels: returns pointers to the team's totals in
 * out (2, C) (computed identically by every thread, in thread order). */
static void bn_exchange(struct bn *b, const struct nn_ctx *c, double *mine, double *out)
{
    int C = b->C;
    if (c->nt == 1) {
        for (int i = 0; i < 2 * C; i++) out[i] = mine[i];
        return;
    }
    double *slot = b->part + (size_t)c->tid * 2 * C;
    for (int i = 0; i < 2 * C; i++) slot[i] = mine[i];
    nn_team_barrier(c->team);
    for (int i = 0; i < 2 * C; i++) {
        double t = 0.0;
        for (int k = 0; k < c->nt; k++) t += b->part[(size_t)k * 2 * C + i];
        out[i] = t;
    }
}

static bn_sync_fn g_sync;
static void *g_sync_arg;

void bn_set_sync(bn_sync_fn sum, void *arg)
{
    g_sync = sum;
    g_sync_arg = arg;
}

/* Synchronised BN: the team's totals tot (2, C) of count elements a channel, summed over the
 * processes into out (may be tot); returns the processes' count. Without bn_set_sync: a copy
 * and count. Thread 0 sums; the others wait for it at a team barrier. */
static double bn_sync_sums(struct bn *b, const struct nn_ctx *c, const double *tot,
                           double *out, double count)
{
    int C = b->C;
    if (!g_sync) {
        if (out != tot)
            memcpy(out, tot, 2 * (size_t)C * sizeof *out);
        return count;
    }
    if (c->tid == 0) {
        memcpy(b->sync, tot, 2 * (size_t)C * sizeof *tot);
        b->sync[2 * C] = count;
        g_sync(b->sync, 2 * C + 1, g_sync_arg);
    }
    if (c->nt > 1)
        nn_team_barrier(c->team);
    memcpy(out, b->sync, 2 * (size_t)C * sizeof *out);
    return b->sync[2 * C];
}

void bn_forward_ctx(struct bn *b, const float *x, const float *res, float *y, size_t HW,
                    int train, int relu, const struct nn_ctx *c)
{
    /* x (C, B, HW) res (C, B, HW) or NULL, y (C, B, HW) */
    int C = b->C;
    size_t N = (size_t)c->B * HW, off = (size_t)c->b0 * HW;
    size_t n = c->b1 > c->b0 ? (size_t)(c->b1 - c->b0) * HW : 0;
    /* this thread's scratch: mine (2C doubles), tot (2C doubles), scale, shift, k (C each) */
    float *sc = b->scratch + (size_t)c->tid * BN_SCRATCH * C;
    double *mine = (double *)(void *)sc, *tot = mine + 2 * C;
    float *scale = sc + 8 * C, *shift = scale + C;
    if (train) {
        float *k = shift + C;
        for (int ch = 0; ch < C; ch++) {
            k[ch] = b->rmean[ch];
            bn_sums(x + (size_t)ch * N + off, n, k[ch], &mine[ch], &mine[C + ch]);
        }
        bn_exchange(b, c, mine, tot);
        double Ns = bn_sync_sums(b, c, tot, tot, (double)N); /* N over the processes */
        for (int ch = 0; ch < C; ch++) {
            double m1 = tot[ch] / Ns, var = tot[C + ch] / Ns - m1 * m1;
            if (var < 0.0) var = 0.0;
            float mean = (float)(k[ch] + m1), invstd = (float)(1.0 / sqrt(var + BN_EPS));
            if (c->tid == 0) {
                double unbiased = Ns > 1 ? var * Ns / (Ns - 1) : var;
                b->mean[ch] = mean;
                b->invstd[ch] = invstd;
                b->rmean[ch] = (1.0f - BN_MOMENTUM) * b->rmean[ch] + BN_MOMENTUM * mean;
                b->rvar[ch] = (1.0f - BN_MOMENTUM) * b->rvar[ch] + BN_MOMENTUM * (float)unbiased;
            }
            scale[ch] = b->gamma[ch] * invstd;
            shift[ch] = b->beta[ch] - mean * scale[ch];
        }
    } else {
        for (int ch = 0; ch < C; ch++) {
            float invstd = 1.0f / sqrtf(b->rvar[ch] + BN_EPS);
            scale[ch] = b->gamma[ch] * invstd;
            shift[ch] = b->beta[ch] - b->rmean[ch] * scale[ch];
        }
    }
    for (int ch = 0; ch < C; ch++) {
        const float *xc = x + (size_t)ch * N + off;
        const float *rc = res ? res + (size_t)ch * N + off : NULL;
        float *yc = y + (size_t)ch * N + off;
        bn_apply(xc, rc, yc, n, scale[ch], shift[ch], relu);
    }
}

void bn_backward_ctx(struct bn *b, const float *x, const float *y, const float *dy, float *dx,
                     size_t HW, const struct nn_ctx *c)
{
    /* x (C, B, HW) y (C, B, HW) or NULL, dy (C, B, HW) dx (C, B, HW) */
    int C = b->C;
    size_t N = (size_t)c->B * HW, off = (size_t)c->b0 * HW;
    size_t n = c->b1 > c->b0 ? (size_t)(c->b1 - c->b0) * HW : 0;
    double *mine = (double *)(void *)(b->scratch + (size_t)c->tid * BN_SCRATCH * C);
    double *tot = mine + 2 * C;
    for (int ch = 0; ch < C; ch++) {
        size_t o = (size_t)ch * N + off;
        bn_grad_sums(x + o, y ? y + o : NULL, dy + o, n, b->mean[ch], &mine[ch], &mine[C + ch]);
    }
    bn_exchange(b, c, mine, tot);
    /* this process's sums make the gradients of gamma and beta; the processes' sums (mine,
       done with) make dx */
    double Ns = bn_sync_sums(b, c, tot, mine, (double)N);
    for (int ch = 0; ch < C; ch++) {
        float mean = b->mean[ch], invstd = b->invstd[ch];
        if (c->tid == 0) {
            b->dbeta[ch] = (float)tot[ch];
            b->dgamma[ch] = (float)(tot[C + ch] * invstd);
        }
        float dbeta = (float)mine[ch], dgamma = (float)(mine[C + ch] * invstd);
        /* dx = gamma*invstd * (g - dbeta/N - (x - mean) * invstd * dgamma/N) */
        float k = b->gamma[ch] * invstd;
        float mb = dbeta / (float)Ns, mg = dgamma * invstd / (float)Ns;
        size_t o = (size_t)ch * N + off;
        const float *xc = x + o, *dyc = dy + o, *yc = y ? y + o : NULL;
        float *dxc = dx + o;
        bn_dx(xc, yc, dyc, dxc, n, k, mb, mg, mean);
    }
}

void bn_forward(struct bn *b, const float *x, float *y, size_t N, int train, int relu)
{
    struct nn_ctx c = nn_ctx_single(1, NULL, 0, NULL);
    bn_forward_ctx(b, x, NULL, y, N, train, relu, &c);
}

void bn_forward_join(struct bn *b, const float *x, const float *res, float *y, size_t N,
                     int train)
{
    struct nn_ctx c = nn_ctx_single(1, NULL, 0, NULL);
    bn_forward_ctx(b, x, res, y, N, train, 1, &c);
}

void bn_backward(struct bn *b, const float *x, const float *y, const float *dy, float *dx,
                 size_t N)
{
    struct nn_ctx c = nn_ctx_single(1, NULL, 0, NULL);
    bn_backward_ctx(b, x, y, dy, dx, N, &c);
}
