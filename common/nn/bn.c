/* Batch normalisation (see bn.h). Per-channel sums are accumulated in double. */
#include "common/nn/bn.h"

#include <math.h>

static void bn_forward_any(struct bn *b, const float *x, const float *res, float *y, size_t N,
                           int train, int relu)
{
    /* x (C, N) y (C, N) */
    for (int c = 0; c < b->C; c++) {
        const float *xc = x + (size_t)c * N;
        float *yc = y + (size_t)c * N;
        float mean, invstd;
        if (train) {
            double s = 0.0, ss = 0.0;
            for (size_t i = 0; i < N; i++) s += xc[i];
            double m = s / (double)N;
            for (size_t i = 0; i < N; i++) {
                double d = xc[i] - m;
                ss += d * d;
            }
            double var = ss / (double)N;
            mean = (float)m;
            invstd = (float)(1.0 / sqrt(var + BN_EPS));
            b->mean[c] = mean;
            b->invstd[c] = invstd;
            double unbiased = N > 1 ? ss / (double)(N - 1) : var;
            b->rmean[c] = (1.0f - BN_MOMENTUM) * b->rmean[c] + BN_MOMENTUM * mean;
            b->rvar[c] = (1.0f - BN_MOMENTUM) * b->rvar[c] + BN_MOMENTUM * (float)unbiased;
        } else {
            mean = b->rmean[c];
            invstd = 1.0f / sqrtf(b->rvar[c] + BN_EPS);
        }
        float scale = b->gamma[c] * invstd;
        float shift = b->beta[c] - mean * scale;
        if (res) {
            const float *rc = res + (size_t)c * N;
            for (size_t i = 0; i < N; i++) {
                float v = xc[i] * scale + shift + rc[i];
                yc[i] = v > 0.0f ? v : 0.0f;
            }
        } else if (relu) {
            for (size_t i = 0; i < N; i++) {
                float v = xc[i] * scale + shift;
                yc[i] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (size_t i = 0; i < N; i++) yc[i] = xc[i] * scale + shift;
        }
    }
}

void bn_forward(struct bn *b, const float *x, float *y, size_t N, int train, int relu)
{
    bn_forward_any(b, x, NULL, y, N, train, relu);
}

void bn_forward_join(struct bn *b, const float *x, const float *res, float *y, size_t N,
                     int train)
{
    bn_forward_any(b, x, res, y, N, train, 1);
}

void bn_backward(struct bn *b, const float *x, const float *y, const float *dy, float *dx,
                 size_t N)
{
    /* x (C, N) y (C, N) or NULL, dy (C, N) dx (C, N) */
    for (int c = 0; c < b->C; c++) {
        const float *xc = x + (size_t)c * N;
        const float *dyc = dy + (size_t)c * N;
        const float *yc = y ? y + (size_t)c * N : NULL;
        float *dxc = dx + (size_t)c * N;
        float mean = b->mean[c], invstd = b->invstd[c];
        double sdy = 0.0, sdyx = 0.0;
        if (yc) {
            for (size_t i = 0; i < N; i++) {
                float g = yc[i] > 0.0f ? dyc[i] : 0.0f;
                sdy += g;
                sdyx += (double)g * (xc[i] - mean);
            }
        } else {
            for (size_t i = 0; i < N; i++) {
                sdy += dyc[i];
                sdyx += (double)dyc[i] * (xc[i] - mean);
            }
        }
        float dbeta = (float)sdy, dgamma = (float)(sdyx * invstd);
        b->dbeta[c] = dbeta;
        b->dgamma[c] = dgamma;
        /* dx = gamma*invstd * (dy - dbeta/N - xhat * dgamma/N) */
        float k = b->gamma[c] * invstd;
        float mb = dbeta / (float)N;
        float mg = dgamma * invstd / (float)N;
        if (yc) {
            for (size_t i = 0; i < N; i++) {
                float g = yc[i] > 0.0f ? dyc[i] : 0.0f;
                dxc[i] = k * (g - mb - (xc[i] - mean) * mg);
            }
        } else {
            for (size_t i = 0; i < N; i++) dxc[i] = k * (dyc[i] - mb - (xc[i] - mean) * mg);
        }
    }
}
