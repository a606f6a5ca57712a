/* Global average pooling (see pool.h). */
#include "common/nn/pool.h"

void avgpool_forward(const float *in, int C, int B, size_t HW, float *out)
{
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++) {
            const float *p = in + ((size_t)c * B + b) * HW;
            float s = 0.0f;
            for (size_t i = 0; i < HW; i++) s += p[i];
            out[(size_t)b * C + c] = s / (float)HW;
        }
}

void avgpool_backward(const float *dout, int C, int B, size_t HW, float *din)
{
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++) {
            float g = dout[(size_t)b * C + c] / (float)HW;
            float *p = din + ((size_t)c * B + b) * HW;
            for (size_t i = 0; i < HW; i++) p[i] = g;
        }
}
