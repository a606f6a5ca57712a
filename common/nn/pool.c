/* Average and max pooling (see pool.h). */
#include "common/nn/pool.h"

#include <math.h>
#include <string.h>

#include "common/log.h"

void avgpool_forward(const float *in, int C, int B, size_t HW, float *out)
{
    avgpool_forward_range(in, C, B, HW, 0, B, out);
}

void avgpool_backward(const float *dout, int C, int B, size_t HW, float *din)
{
    avgpool_backward_range(dout, C, B, HW, 0, B, din);
}

void avgpool_forward_range(const float *in, int C, int B, size_t HW, int b0, int b1,
                           float *out)
{
    for (int c = 0; c < C; c++)
        for (int b = b0; b < b1; b++) {
            const float *p = in + ((size_t)c * B + b) * HW;
            float s = 0.0f;
            for (size_t i = 0; i < HW; i++) s += p[i];
            out[(size_t)b * C + c] = s / (float)HW;
        }
}

void avgpool_backward_range(const float *dout, int C, int B, size_t HW, int b0, int b1,
                            float *din)
{
    for (int c = 0; c < C; c++)
        for (int b = b0; b < b1; b++) {
            float g = dout[(size_t)b * C + c] / (float)HW;
            float *p = din + ((size_t)c * B + b) * HW;
            for (size_t i = 0; i < HW; i++) p[i] = g;
        }
}

void maxpool_forward_range(const struct maxpool *p, const float *in, int C, int B, int H, int W,
                           int b0, int b1, float *out, int32_t *arg)
{
    /* in (C, B, H, W) -> out, arg (C, B, Ho, Wo) */
    NPID_CHECK(p->k >= 1 && p->stride >= 1 && p->pad >= 0 && p->pad < p->k);
    int Ho = maxpool_out_dim(p, H), Wo = maxpool_out_dim(p, W);
    size_t hw = (size_t)H * W, ohw = (size_t)Ho * Wo;
    for (int c = 0; c < C; c++)
        for (int b = b0; b < b1; b++) {
            const float *x = in + ((size_t)c * B + b) * hw;
            float *y = out + ((size_t)c * B + b) * ohw;
            int32_t *a = arg + ((size_t)c * B + b) * ohw;
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    int h0 = oh * p->stride - p->pad, w0 = ow * p->stride - p->pad;
                    float m = -INFINITY;
                    int32_t best = -1;
                    for (int h = h0 < 0 ? 0 : h0; h < h0 + p->k && h < H; h++)
                        for (int w = w0 < 0 ? 0 : w0; w < w0 + p->k && w < W; w++) {
                            float v = x[(size_t)h * W + w];
                            if (best < 0 || v > m || isnan(v)) {
                                m = v;
                                best = (int32_t)(h * W + w);
                            }
                        }
                    y[(size_t)oh * Wo + ow] = m;
                    a[(size_t)oh * Wo + ow] = best;
                }
        }
}

void maxpool_backward_range(const struct maxpool *p, const float *dout, const int32_t *arg,
                            int C, int B, int H, int W, int b0, int b1, float *din)
{
    /* dout, arg (C, B, Ho, Wo) -> din (C, B, H, W) */
    size_t hw = (size_t)H * W;
    size_t ohw = (size_t)maxpool_out_dim(p, H) * maxpool_out_dim(p, W);
    for (int c = 0; c < C; c++)
        for (int b = b0; b < b1; b++) {
            float *dx = din + ((size_t)c * B + b) * hw;
            const float *dy = dout + ((size_t)c * B + b) * ohw;
            const int32_t *a = arg + ((size_t)c * B + b) * ohw;
            memset(dx, 0, sizeof(float) * hw);
            for (size_t i = 0; i < ohw; i++) dx[a[i]] += dy[i];
        }
}
