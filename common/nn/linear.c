/* Fully connected layer (see linear.h). */
#include "common/nn/linear.h"

#include <cblas.h>
#include <stddef.h>

void linear_forward(const struct linear *l, const float *x, int B, float *y)
{
    /* x (B, I) w (O, I) y (B, O) */
    for (int i = 0; i < B; i++)
        for (int o = 0; o < l->out; o++) y[(size_t)i * l->out + o] = l->b[o];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, l->out, l->in, 1.0f, x, l->in,
                l->w, l->in, 1.0f, y, l->out);
}

void linear_backward(const struct linear *l, const float *x, const float *dy, int B, float *dx)
{
    /* dw (O, I) = dy^T (O, B) x (B, I); db = column sums of dy; dx (B, I) = dy (B, O) w */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, l->out, l->in, B, 1.0f, dy, l->out,
                x, l->in, 0.0f, l->dw, l->in);
    for (int o = 0; o < l->out; o++) {
        float s = 0.0f;
        for (int i = 0; i < B; i++) s += dy[(size_t)i * l->out + o];
        l->db[o] = s;
    }
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, l->in, l->out, 1.0f, dy,
                    l->out, l->w, l->in, 0.0f, dx, l->in);
}
