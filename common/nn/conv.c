/* Convolution: the direct 3x3 kernels or batched im2col + one sgemm per chunk of images
 * (see conv.h). */
#include "common/nn/conv.h"

#include <cblas.h>
#include <string.h>

#include "common/log.h"
#include "common/nn/conv3x3.h"
#include "common/nn/team.h"
#include "common/nn/vec.h"

/* d[i] = s[2*i] for i < n; reads s[0 .. 2n-2] only */
static void conv_gather2(float *d, const float *s, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        v16f a = v16_load(s + 2 * i), b = v16_load(s + 2 * i + 15);
        v16_store(d + i, __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21,
                                                 23, 25, 27, 29, 31));
    }
    for (; i < n; i++) d[i] = s[2 * i];
}

/* d[2*i] += s[i] for i < n; touches d[0 .. 2n-2] only */
static void conv_scatter_add2(float *d, const float *s, int n)
{
    int i = 0;
    v16f z = { 0 };
    for (; i + 16 <= n; i += 16) {
        v16f c = v16_load(s + i);
        v16_store(d + 2 * i, v16_load(d + 2 * i)
                             + __builtin_shufflevector(c, z, 0, 16, 1, 16, 2, 16, 3, 16, 4, 16,
                                                       5, 16, 6, 16, 7, 16));
        v16_store(d + 2 * i + 15, v16_load(d + 2 * i + 15)
                                  + __builtin_shufflevector(c, z, 16, 8, 16, 9, 16, 10, 16, 11,
                                                            16, 12, 16, 13, 16, 14, 16, 15));
    }
    for (; i < n; i++) d[2 * i] += s[i];
}

static int conv_is_pointwise(const struct conv *c)
{
    return c->R == 1 && c->S == 1 && c->stride == 1 && c->pad == 0;
}

static int conv_is_same(const struct conv *c, int H, int W)
{
    return c->stride == 1 && conv_out_dim(H, c->R, 1, c->pad) == H
           && conv_out_dim(W, c->S, 1, c->pad) == W;
}

size_t conv_scratch_min(const struct conv *c, int H, int W)
{
    size_t ho = (size_t)conv_out_dim(H, c->R, c->stride, c->pad);
    size_t wo = (size_t)conv_out_dim(W, c->S, c->stride, c->pad);
    size_t fwd = (size_t)c->C * c->R * c->S * ho * wo;
    size_t bwd = conv_is_same(c, H, W) ? (size_t)c->K * c->R * c->S * H * W : 0;
    size_t m = fwd > bwd ? fwd : bwd;
    if (conv3x3_available(c, H, W)) {
        size_t d = conv3x3_scratch(c, H, W);
        if (d > m) m = d;
    }
    return m;
}

/* Whether this thread runs c through the direct 3x3 kernels (conv3x3.h). */
static int conv_direct(const struct conv *c, int H, int W, const struct nn_ctx *x)
{
    return conv3x3_available(c, H, W) && c->C <= x->direct_max && c->K <= x->direct_max;
}

/* Images per chunk: as many as give about chunk_cols output positions (at least one),
 * within the scratch. */
static int conv_chunk(size_t per_image, size_t ohw, int nb, const struct nn_ctx *x)
{
    size_t k = x->chunk_cols / ohw, cap = x->scratch_floats / per_image;
    NPID_CHECK(cap >= 1);
    if (k < 1) k = 1;
    if (k > cap) k = cap;
    return k > (size_t)nb ? nb : (int)k;
}

/* Output positions per chunk of a same convolution with crs rows: chunk_cols (see
 * NN_CHUNK_COLS), within the scratch. */
static size_t conv_chunk_cols(size_t crs, const struct nn_ctx *x)
{
    size_t cols = x->chunk_cols, cap = x->scratch_floats / crs;
    if (cols > cap) cols = cap;
    NPID_CHECK(cols >= 1);
    return cols;
}

/* Valid output range [lo, hi) along one axis for kernel offset k: input index
 * o*stride - pad + k must lie in [0, in). */
static void conv_valid_range(int out, int in, int stride, int pad, int k, int *lo, int *hi)
{
    int l = 0, h = out;
    while (l < out && l * stride - pad + k < 0) l++;
    while (h > l && (h - 1) * stride - pad + k >= in) h--;
    *lo = l;
    *hi = h;
}

/* im2col of a stride-1 "same" convolution for the output positions [p0, p0 + n) of the
 * whole batch (position p = (b*H + oh)*W + ow): col (C*R*S, n). Each row is one shifted copy
 * d[p] = in[p + delta], delta = dr*W + ds; the positions whose source lies across an image
 * edge (or outside the channel) are then zeroed. */
static void conv_im2col_cols(const struct conv *c, const float *in, int B, int H, int W,
                             size_t p0, size_t n, float *col)
{
    size_t hw = (size_t)H * W, total = (size_t)B * hw, p1 = p0 + n;
    long img_lo = (long)(p0 / hw * hw), img_hi = (long)((p1 + hw - 1) / hw * hw);
    for (int ch = 0; ch < c->C; ch++) {
        const float *src = in + (size_t)ch * total;
        for (int r = 0; r < c->R; r++) {
            int dr = r - c->pad;
            for (int s = 0; s < c->S; s++) {
                int ds = s - c->pad;
                long delta = (long)dr * W + ds;
                float *d = col + ((size_t)(ch * c->R + r) * c->S + s) * n;
                /* read only the chunk's own images (another thread may be writing the
                 * neighbours): a source outside them is an edge position, zeroed below */
                long lo = (long)p0, hi = (long)p1;
                if (lo + delta < img_lo) lo = img_lo - delta;
                if (hi + delta > img_hi) hi = img_hi - delta;
                if (lo > (long)p1) lo = (long)p1;
                if (hi < lo) hi = lo;
                if (lo > (long)p0) memset(d, 0, sizeof(float) * (size_t)(lo - (long)p0));
                memcpy(d + (lo - (long)p0), src + lo + delta, sizeof(float) * (size_t)(hi - lo));
                if (hi < (long)p1) memset(d + (hi - (long)p0), 0, sizeof(float) * (size_t)((long)p1 - hi));
                if (dr != 0) {
                    /* the |dr| rows at the top (dr < 0) or bottom of each image */
                    size_t rows = (size_t)(dr < 0 ? -dr : dr) * W;
                    if (rows > hw) rows = hw;
                    size_t first = dr < 0 ? 0 : hw - rows;
                    for (size_t b = p0 / hw; b * hw < p1; b++) {
                        size_t z0 = b * hw + first, z1 = z0 + rows;
                        if (z0 < p0) z0 = p0;
                        if (z1 > p1) z1 = p1;
                        if (z1 > z0) memset(d + (z0 - p0), 0, sizeof(float) * (z1 - z0));
                    }
                }
                if (ds != 0) {
                    /* the |ds| columns at the left (ds < 0) or right of every row */
                    int c0 = ds < 0 ? 0 : W - ds, c1 = ds < 0 ? -ds : W;
                    if (c0 < 0) c0 = 0;
                    if (c1 > W) c1 = W;
                    for (int cc = c0; cc < c1; cc++) {
                        size_t q0 = p0 <= (size_t)cc ? 0 : (p0 - (size_t)cc + W - 1) / W;
                        for (size_t p = q0 * W + cc; p < p1; p += W) d[p - p0] = 0.0f;
                    }
                }
            }
        }
    }
}

/* col (C*R*S, nb*Ho*Wo) from images [b0, b0+nb) of in (C, B, H, W). */
static void conv_im2col(const struct conv *c, const float *in, int B, int H, int W, int b0,
                        int nb, float *col)
{
    int ho = conv_out_dim(H, c->R, c->stride, c->pad);
    int wo = conv_out_dim(W, c->S, c->stride, c->pad);
    size_t hw = (size_t)H * W, ohw = (size_t)ho * wo, ncol = (size_t)nb * ohw;
    int st = c->stride;
    for (int ch = 0; ch < c->C; ch++) {
        for (int r = 0; r < c->R; r++) {
            int hlo, hhi;
            conv_valid_range(ho, H, st, c->pad, r, &hlo, &hhi);
            for (int s = 0; s < c->S; s++) {
                int wlo, whi;
                conv_valid_range(wo, W, st, c->pad, s, &wlo, &whi);
                float *dst = col + ((size_t)(ch * c->R + r) * c->S + s) * ncol;
                for (int b = 0; b < nb; b++) {
                    const float *src = in + ((size_t)ch * B + b0) * hw + (size_t)b * hw;
                    float *d = dst + (size_t)b * ohw;
                    for (int oh = 0; oh < ho; oh++, d += wo) {
                        if (oh < hlo || oh >= hhi) {
                            memset(d, 0, sizeof(float) * wo);
                            continue;
                        }
                        const float *srow = src + (size_t)(oh * st - c->pad + r) * W
                                            - c->pad + s;
                        for (int ow = 0; ow < wlo; ow++) d[ow] = 0.0f;
                        if (st == 1) {
                            memcpy(d + wlo, srow + wlo, sizeof(float) * (whi - wlo));
                        } else if (st == 2) {
                            conv_gather2(d + wlo, srow + 2 * (size_t)wlo, whi - wlo);
                        } else {
                            for (int ow = wlo; ow < whi; ow++) d[ow] = srow[(size_t)ow * st];
                        }
                        for (int ow = whi; ow < wo; ow++) d[ow] = 0.0f;
                    }
                }
            }
        }
    }
}

/* din (C, B, H, W) images [b0, b0+nb) += col2im(col). */
static void conv_col2im(const struct conv *c, const float *col, int B, int H, int W, int b0,
                        int nb, float *din)
{
    int ho = conv_out_dim(H, c->R, c->stride, c->pad);
    int wo = conv_out_dim(W, c->S, c->stride, c->pad);
    size_t hw = (size_t)H * W, ohw = (size_t)ho * wo, ncol = (size_t)nb * ohw;
    int st = c->stride;
    for (int ch = 0; ch < c->C; ch++) {
        for (int r = 0; r < c->R; r++) {
            int hlo, hhi;
            conv_valid_range(ho, H, st, c->pad, r, &hlo, &hhi);
            for (int s = 0; s < c->S; s++) {
                int wlo, whi;
                conv_valid_range(wo, W, st, c->pad, s, &wlo, &whi);
                const float *srcc = col + ((size_t)(ch * c->R + r) * c->S + s) * ncol;
                for (int b = 0; b < nb; b++) {
                    float *dimg = din + ((size_t)ch * B + b0 + b) * hw;
                    const float *d = srcc + (size_t)b * ohw;
                    for (int oh = hlo; oh < hhi; oh++) {
                        float *drow = dimg + (size_t)(oh * st - c->pad + r) * W - c->pad + s;
                        const float *crow = d + (size_t)oh * wo;
                        if (st == 1) {
                            for (int ow = wlo; ow < whi; ow++) drow[ow] += crow[ow];
                        } else if (st == 2) {
                            conv_scatter_add2(drow + 2 * (size_t)wlo, crow + wlo, whi - wlo);
                        } else {
                            for (int ow = wlo; ow < whi; ow++) drow[(size_t)ow * st] += crow[ow];
                        }
                    }
                }
            }
        }
    }
}

/* out (K, B, Ho, Wo) images [b0, b1) = beta * out + conv(in), weights w (K, C, R, S). */
static void conv_apply(const struct conv *c, const float *w, const float *in, int B, int H,
                       int W, int b0, int b1, float *out, float beta, const struct nn_ctx *x)
{
    int ho = conv_out_dim(H, c->R, c->stride, c->pad);
    int wo = conv_out_dim(W, c->S, c->stride, c->pad);
    size_t ohw = (size_t)ho * wo, crs = (size_t)c->C * c->R * c->S, ld = (size_t)B * ohw;
    if (b1 <= b0) return;
    if (conv_is_pointwise(c)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->K, (int)((size_t)(b1 - b0) * ohw),
                    c->C, 1.0f, w, c->C, in + (size_t)b0 * ohw, (int)ld, beta,
                    out + (size_t)b0 * ohw, (int)ld);
        return;
    }
    if (conv_is_same(c, H, W)) {
        size_t cols = conv_chunk_cols(crs, x), end = (size_t)b1 * ohw;
        for (size_t p = (size_t)b0 * ohw; p < end; p += cols) {
            size_t n = end - p < cols ? end - p : cols;
            conv_im2col_cols(c, in, B, H, W, p, n, x->scratch);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->K, (int)n, (int)crs, 1.0f,
                        w, (int)crs, x->scratch, (int)n, beta, out + p, (int)ld);
        }
        return;
    }
    int chunk = conv_chunk(crs * ohw, ohw, b1 - b0, x);
    for (int i = b0; i < b1; i += chunk) {
        int nb = b1 - i < chunk ? b1 - i : chunk;
        size_t n = (size_t)nb * ohw;
        conv_im2col(c, in, B, H, W, i, nb, x->scratch);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->K, (int)n, (int)crs, 1.0f, w,
                    (int)crs, x->scratch, (int)n, beta, out + (size_t)i * ohw, (int)ld);
    }
}

void conv_forward_ctx(const struct conv *c, const float *in, int H, int W, float *out,
                      const struct nn_ctx *x)
{
    /* in (C,B,H,W) w (K,C,R,S) out (K,B,Ho,Wo) */
    if (conv_direct(c, H, W, x)) {
        conv3x3_forward(c, 0, in, x->B, H, W, x->b0, x->b1, out, 0, x->scratch,
                        x->scratch_floats);
        return;
    }
    conv_apply(c, c->w, in, x->B, H, W, x->b0, x->b1, out, 0.0f, x);
}

void conv_backward_ctx(const struct conv *c, const float *in, const float *dout, int H, int W,
                       float *din, int accumulate, const struct nn_ctx *x)
{
    /* in (C,B,H,W) dout (K,B,Ho,Wo) dw (K,C,R,S) din (C,B,H,W) */
    int B = x->B, b0 = x->b0, b1 = x->b1;
    int ho = conv_out_dim(H, c->R, c->stride, c->pad);
    int wo = conv_out_dim(W, c->S, c->stride, c->pad);
    size_t ohw = (size_t)ho * wo, hw = (size_t)H * W, crs = (size_t)c->C * c->R * c->S;
    size_t ld = (size_t)B * ohw;
    float *dw = nn_ctx_grad(x, c->dw);
    if (b1 <= b0) {
        memset(dw, 0, sizeof(float) * conv_weight_count(c));
        return;
    }
    if (conv_direct(c, H, W, x)) {
        conv3x3_weight_grad(c, in, dout, B, H, W, b0, b1, dw, x->scratch, x->scratch_floats);
        if (din)
            conv3x3_forward(c, 1, dout, B, H, W, b0, b1, din, accumulate, x->scratch,
                            x->scratch_floats);
        return;
    }
    /* dw = dout (K, n) x col^T (n, CRS), summed over the chunks */
    if (conv_is_pointwise(c)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->K, c->C,
                    (int)((size_t)(b1 - b0) * ohw), 1.0f, dout + (size_t)b0 * ohw, (int)ld,
                    in + (size_t)b0 * hw, (int)ld, 0.0f, dw, c->C);
    } else if (conv_is_same(c, H, W)) {
        size_t cols = conv_chunk_cols(crs, x), start = (size_t)b0 * ohw, end = (size_t)b1 * ohw;
        for (size_t p = start; p < end; p += cols) {
            size_t n = end - p < cols ? end - p : cols;
            conv_im2col_cols(c, in, B, H, W, p, n, x->scratch);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->K, (int)crs, (int)n, 1.0f,
                        dout + p, (int)ld, x->scratch, (int)n, p > start ? 1.0f : 0.0f, dw,
                        (int)crs);
        }
    } else {
        int chunk = conv_chunk(crs * ohw, ohw, b1 - b0, x);
        for (int i = b0; i < b1; i += chunk) {
            int nb = b1 - i < chunk ? b1 - i : chunk;
            size_t n = (size_t)nb * ohw;
            conv_im2col(c, in, B, H, W, i, nb, x->scratch);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->K, (int)crs, (int)n, 1.0f,
                        dout + (size_t)i * ohw, (int)ld, x->scratch, (int)n,
                        i > b0 ? 1.0f : 0.0f, dw, (int)crs);
        }
    }
    if (!din) return;
    float beta = accumulate ? 1.0f : 0.0f;
    if (conv_is_pointwise(c)) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->C, (int)((size_t)(b1 - b0) * ohw),
                    c->K, 1.0f, c->w, c->C, dout + (size_t)b0 * ohw, (int)ld, beta,
                    din + (size_t)b0 * hw, (int)ld);
        return;
    }
    if (conv_is_same(c, H, W)) {
        /* din = conv(dout; w^T flipped): wt[c][k][r][s] = w[k][c][R-1-r][S-1-s] */
        int R = c->R, S = c->S;
        for (int k = 0; k < c->K; k++)
            for (int ch = 0; ch < c->C; ch++)
                for (int r = 0; r < R; r++)
                    for (int s = 0; s < S; s++)
                        x->wt[(((size_t)ch * c->K + k) * R + r) * S + s] =
                            c->w[(((size_t)k * c->C + ch) * R + (R - 1 - r)) * S + (S - 1 - s)];
        struct conv t = { c->K, c->C, R, S, 1, c->pad, x->wt, NULL };
        conv_apply(&t, x->wt, dout, B, H, W, b0, b1, din, beta, x);
        return;
    }
    if (!accumulate)
        for (int ch = 0; ch < c->C; ch++)
            memset(din + ((size_t)ch * B + b0) * hw, 0, sizeof(float) * (size_t)(b1 - b0) * hw);
    int chunk = conv_chunk(crs * ohw, ohw, b1 - b0, x);
    for (int i = b0; i < b1; i += chunk) {
        int nb = b1 - i < chunk ? b1 - i : chunk;
        size_t n = (size_t)nb * ohw;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)crs, (int)n, c->K, 1.0f, c->w,
                    (int)crs, dout + (size_t)i * ohw, (int)ld, 0.0f, x->scratch, (int)n);
        conv_col2im(c, x->scratch, B, H, W, i, nb, din);
    }
}

void conv_forward(const struct conv *c, const float *in, int B, int H, int W, float *out,
                  float *scratch, size_t scratch_floats)
{
    struct nn_ctx x = nn_ctx_single(B, scratch, scratch_floats, NULL);
    conv_forward_ctx(c, in, H, W, out, &x);
}

void conv_backward(const struct conv *c, const float *in, const float *dout, int B, int H,
                   int W, float *din, int accumulate, float *scratch, size_t scratch_floats)
{
    size_t nw = conv_weight_count(c);
    NPID_CHECK(scratch_floats > nw);
    struct nn_ctx x = nn_ctx_single(B, scratch + nw, scratch_floats - nw, scratch);
    conv_backward_ctx(c, in, dout, H, W, din, accumulate, &x);
}

void conv_forward_naive(const struct conv *c, const float *in, int B, int H, int W, float *out)
{
    int ho = conv_out_dim(H, c->R, c->stride, c->pad);
    int wo = conv_out_dim(W, c->S, c->stride, c->pad);
    for (int k = 0; k < c->K; k++)
        for (int b = 0; b < B; b++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++) {
                    double acc = 0.0;
                    for (int ch = 0; ch < c->C; ch++)
                        for (int r = 0; r < c->R; r++)
                            for (int s = 0; s < c->S; s++) {
                                int ih = oh * c->stride - c->pad + r;
                                int iw = ow * c->stride - c->pad + s;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)c->w[((size_t)(k * c->C + ch) * c->R + r) * c->S + s]
                                       * in[(((size_t)ch * B + b) * H + ih) * W + iw];
                            }
                    out[(((size_t)k * B + b) * ho + oh) * wo + ow] = (float)acc;
                }
}

void conv_backward_naive(const struct conv *c, const float *in, const float *dout, int B, int H,
                         int W, float *dw, float *din)
{
    int ho = conv_out_dim(H, c->R, c->stride, c->pad);
    int wo = conv_out_dim(W, c->S, c->stride, c->pad);
    for (int k = 0; k < c->K; k++)
        for (int ch = 0; ch < c->C; ch++)
            for (int r = 0; r < c->R; r++)
                for (int s = 0; s < c->S; s++) {
                    double acc = 0.0;
                    for (int b = 0; b < B; b++)
                        for (int oh = 0; oh < ho; oh++)
                            for (int ow = 0; ow < wo; ow++) {
                                int ih = oh * c->stride - c->pad + r;
                                int iw = ow * c->stride - c->pad + s;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)dout[(((size_t)k * B + b) * ho + oh) * wo + ow]
                                       * in[(((size_t)ch * B + b) * H + ih) * W + iw];
                            }
                    dw[((size_t)(k * c->C + ch) * c->R + r) * c->S + s] = (float)acc;
                }
    for (int ch = 0; ch < c->C; ch++)
        for (int b = 0; b < B; b++)
            for (int ih = 0; ih < H; ih++)
                for (int iw = 0; iw < W; iw++) {
                    double acc = 0.0;
                    for (int k = 0; k < c->K; k++)
                        for (int r = 0; r < c->R; r++)
                            for (int s = 0; s < c->S; s++) {
                                int oh = ih + c->pad - r, ow = iw + c->pad - s;
                                if (oh < 0 || ow < 0) continue;
                                if (oh % c->stride || ow % c->stride) continue;
                                oh /= c->stride;
                                ow /= c->stride;
                                if (oh >= ho || ow >= wo) continue;
                                size_t wi = ((size_t)(k * c->C + ch) * c->R + r) * c->S + s;
                                acc += (double)c->w[wi]
                                       * dout[(((size_t)k * B + b) * ho + oh) * wo + ow];
                            }
                    din[(((size_t)ch * B + b) * H + ih) * W + iw] = (float)acc;
                }
}
