/* Convolution as batched im2col + one sgemm per chunk of images (see conv.h). */
#include "common/nn/conv.h"

#include <cblas.h>
#include <string.h>

#include "common/log.h"

size_t conv_scratch_min(const struct conv *c, int H, int W)
{
    size_t ho = (size_t)conv_out_dim(H, c->R, c->stride, c->pad);
    size_t wo = (size_t)conv_out_dim(W, c->S, c->stride, c->pad);
    return (size_t)c->C * c->R * c->S * ho * wo;
}

static int conv_is_pointwise(const struct conv *c)
{
    return c->R == 1 && c->S == 1 && c->stride == 1 && c->pad == 0;
}

/* Images per chunk so that the im2col matrix fits in scratch_floats. */
static int conv_chunk(const struct conv *c, int B, int H, int W, size_t scratch_floats)
{
    size_t per = conv_scratch_min(c, H, W);
    size_t nb = scratch_floats / per;
    NPID_CHECK(nb >= 1);
    return nb > (size_t)B ? B : (int)nb;
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
                    const float *src = in + ((size_t)ch * B + b0 + b) * hw;
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
                        } else {
                            for (int ow = wlo; ow < whi; ow++) drow[(size_t)ow * st] += crow[ow];
                        }
                    }
                }
            }
        }
    }
}

void conv_forward(const struct conv *c, const float *in, int B, int H, int W, float *out,
                  float *scratch, size_t scratch_floats)
{
    /* in (C,B,H,W) w (K,C,R,S) out (K,B,Ho,Wo) */
    int ho = conv_out_dim(H, c->R, c->stride, c->pad);
    int wo = conv_out_dim(W, c->S, c->stride, c->pad);
    size_t ohw = (size_t)ho * wo, crs = (size_t)c->C * c->R * c->S;
    if (conv_is_pointwise(c)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->K, (int)((size_t)B * ohw),
                    c->C, 1.0f, c->w, c->C, in, (int)((size_t)B * ohw), 0.0f, out,
                    (int)((size_t)B * ohw));
        return;
    }
    int chunk = conv_chunk(c, B, H, W, scratch_floats);
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t n = (size_t)nb * ohw;
        conv_im2col(c, in, B, H, W, b0, nb, scratch);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->K, (int)n, (int)crs, 1.0f,
                    c->w, (int)crs, scratch, (int)n, 0.0f, out + (size_t)b0 * ohw,
                    (int)((size_t)B * ohw));
    }
}

void conv_backward(const struct conv *c, const float *in, const float *dout, int B, int H,
                   int W, float *din, int accumulate, float *scratch, size_t scratch_floats)
{
    /* in (C,B,H,W) dout (K,B,Ho,Wo) dw (K,C,R,S) din (C,B,H,W) */
    int ho = conv_out_dim(H, c->R, c->stride, c->pad);
    int wo = conv_out_dim(W, c->S, c->stride, c->pad);
    size_t ohw = (size_t)ho * wo, crs = (size_t)c->C * c->R * c->S;
    size_t ld = (size_t)B * ohw;
    if (conv_is_pointwise(c)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->K, c->C, (int)ld, 1.0f, dout,
                    (int)ld, in, (int)ld, 0.0f, c->dw, c->C);
        if (din)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->C, (int)ld, c->K, 1.0f,
                        c->w, c->C, dout, (int)ld, accumulate ? 1.0f : 0.0f, din, (int)ld);
        return;
    }
    if (din && !accumulate) memset(din, 0, sizeof(float) * (size_t)c->C * B * H * W);
    int chunk = conv_chunk(c, B, H, W, scratch_floats);
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        size_t n = (size_t)nb * ohw;
        const float *dchunk = dout + (size_t)b0 * ohw;
        conv_im2col(c, in, B, H, W, b0, nb, scratch);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->K, (int)crs, (int)n, 1.0f,
                    dchunk, (int)ld, scratch, (int)n, b0 ? 1.0f : 0.0f, c->dw, (int)crs);
        if (!din) continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)crs, (int)n, c->K, 1.0f,
                    c->w, (int)crs, dchunk, (int)ld, 0.0f, scratch, (int)n);
        conv_col2im(c, scratch, B, H, W, b0, nb, din);
    }
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
