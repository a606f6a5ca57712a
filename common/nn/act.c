/* ReLU and residual add (see act.h). */
#include "common/nn/act.h"

#include "common/cpu.h"
#include "common/nn/team.h"
#include "common/nn/vec.h"

void relu_forward(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward(const float *y, const float *dy, float *dx, size_t n)
{
    for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void add_forward(const float *a, const float *b, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void add_relu_forward(const float *a, const float *b, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

/* dx += dy where y > 0, over n floats; compiled per kernel level (common/cpu.h) */
CPU_INLINE void add_masked_run_body(float *dx, const float *dy, const float *y, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        v16_store(dx + i, v16_load(dx + i) + v16_mask_pos(v16_load(dy + i), v16_load(y + i)));
    for (; i < n; i++)
        if (y[i] > 0.0f) dx[i] += dy[i];
}
CPU_VARIANTS(add_masked_run, (float *dx, const float *dy, const float *y, size_t n),
             (dx, dy, y, n))

void add_masked_ctx(float *dx, const float *dy, const float *y, int C, size_t HW,
                    const struct nn_ctx *c)
{
    size_t N = (size_t)c->B * HW, n = c->b1 > c->b0 ? (size_t)(c->b1 - c->b0) * HW : 0;
    for (int ch = 0; ch < C; ch++) {
        size_t o = (size_t)ch * N + (size_t)c->b0 * HW;
        add_masked_run(dx + o, dy + o, y + o, n);
    }
}
