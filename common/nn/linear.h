/* Fully connected layer with bias, batch-major: y (B, O) = x (B, I) W^T + b, W (O, I) as
 * torch.nn.Linear stores it. */
#ifndef NPID_NN_LINEAR_H
#define NPID_NN_LINEAR_H

struct linear {
    int in, out;
    float *w, *b;    /* (out, in), (out) */
    float *dw, *db;  /* gradients, same shapes */
};

void linear_forward(const struct linear *l, const float *x, int B, float *y);
/* Writes dw, db (overwrite) and, when dx is not NULL, dx (B, in). */
void linear_backward(const struct linear *l, const float *x, const float *dy, int B, float *dx);

#endif
