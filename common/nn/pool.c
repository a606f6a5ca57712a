/* Global average pooling (see pool.h). */
#include "common/nn/pool.h"

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
