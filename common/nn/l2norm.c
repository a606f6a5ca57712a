/* L2 normalisation (see l2norm.h). */
#include "common/nn/l2norm.h"

#include <math.h>
#include <stddef.h>

void l2norm_forward(const float *u, int B, int d, float *f, float *norms)
{
    for (int i = 0; i < B; i++) {
        const float *ui = u + (size_t)i * d;
        double s = 0.0;
        for (int j = 0; j < d; j++) s += (double)ui[j] * ui[j];
        double n = sqrt(s);
        if (n < 1e-12) n = 1e-12;
        norms[i] = (float)n;
        float inv = (float)(1.0 / n);
        for (int j = 0; j < d; j++) f[(size_t)i * d + j] = ui[j] * inv;
    }
}

void l2norm_backward(const float *f, const float *norms, const float *df, int B, int d,
                     float *du)
{
    for (int i = 0; i < B; i++) {
        const float *fi = f + (size_t)i * d;
        const float *gi = df + (size_t)i * d;
        double dot = 0.0;
        for (int j = 0; j < d; j++) dot += (double)fi[j] * gi[j];
        float inv = 1.0f / norms[i], fd = (float)dot;
        for (int j = 0; j < d; j++) du[(size_t)i * d + j] = (gi[j] - fi[j] * fd) * inv;
    }
}
