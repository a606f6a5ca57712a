/* ResNet BasicBlock forward and backward (see block.h). */
#include "common/nn/block.h"

#include <math.h>
#include <string.h>

#include "common/nn/act.h"
#include "common/nn/net.h"

void conv_layout(struct conv *c, int C, int K, int R, int stride, int pad, struct nn_layout *L)
{
    c->C = C;
    c->K = K;
    c->R = R;
    c->S = R;
    c->stride = stride;
    c->pad = pad;
    nn_carve_param(L, conv_weight_count(c), &c->w, &c->dw);
}

void bn_layout(struct bn *b, int C, struct nn_layout *L)
{
    b->C = C;
    nn_carve_param(L, (size_t)C, &b->gamma, &b->dgamma);
    nn_carve_param(L, (size_t)C, &b->beta, &b->dbeta);
    b->rmean = nn_carve(&L->buffers, (size_t)C);
    b->rvar = nn_carve(&L->buffers, (size_t)C);
    b->mean = nn_carve(&L->acts, (size_t)C);
    b->invstd = nn_carve(&L->acts, (size_t)C);
    b->part = NULL;
    if (L->threads > 1) {
        /* doubles carved as floats: 2 floats each, 64-byte aligned */
        float *p = nn_carve(&L->acts, (size_t)4 * C * L->threads);
        b->part = (double *)(void *)p;
    }
    b->scratch = nn_carve(&L->acts, (size_t)BN_SCRATCH * C * (L->threads > 1 ? L->threads : 1));
    b->sync = (double *)(void *)nn_carve(&L->acts, (size_t)4 * C + 4);
}

void conv_init_weights(struct conv *c, struct rng *r, int init)
{
    double fan_in = (double)c->C * c->R * c->S, fan_out = (double)c->K * c->R * c->S;
    size_t n = conv_weight_count(c);
    if (init == NET_INIT_TORCH) {
        double bound = 1.0 / sqrt(fan_in);
        for (size_t i = 0; i < n; i++) c->w[i] = (float)((2.0 * rng_float(r) - 1.0) * bound);
        return;
    }
    double std = sqrt(2.0 / (init == NET_INIT_HE_OUT ? fan_out : fan_in));
    for (size_t i = 0; i < n; i++) c->w[i] = (float)(rng_normal(r) * std);
}

void bn_init_params(struct bn *b)
{
    for (int i = 0; i < b->C; i++) {
        b->gamma[i] = 1.0f;
        b->beta[i] = 0.0f;
        b->rmean[i] = 0.0f;
        b->rvar[i] = 1.0f;
    }
}

void block_init(struct block *k, int cin, int cout, int stride, int H, int W, int max_batch,
                struct nn_layout *L)
{
    memset(k, 0, sizeof(*k));
    k->cin = cin;
    k->cout = cout;
    k->stride = stride;
    k->H = H;
    k->W = W;
    k->Ho = conv_out_dim(H, 3, stride, 1);
    k->Wo = conv_out_dim(W, 3, stride, 1);
    k->max_batch = max_batch;
    k->has_sc = stride != 1 || cin != cout;
    conv_layout(&k->c1, cin, cout, 3, stride, 1, L);
    bn_layout(&k->b1, cout, L);
    conv_layout(&k->c2, cout, cout, 3, 1, 1, L);
    bn_layout(&k->b2, cout, L);
    if (k->has_sc) {
        conv_layout(&k->cs, cin, cout, 1, stride, 0, L);
        bn_layout(&k->bs, cout, L);
    }
    size_t n = block_act_floats(k);
    k->z1 = nn_carve(&L->acts, n);
    k->a1 = nn_carve(&L->acts, n);
    k->z2 = nn_carve(&L->acts, n);
    k->zs = k->has_sc ? nn_carve(&L->acts, n) : NULL;
    k->y = nn_carve(&L->acts, n);
}

void block_init_weights(struct block *k, struct rng *r, int init)
{
    conv_init_weights(&k->c1, r, init);
    bn_init_params(&k->b1);
    conv_init_weights(&k->c2, r, init);
    bn_init_params(&k->b2);
    if (k->has_sc) {
        conv_init_weights(&k->cs, r, init);
        bn_init_params(&k->bs);
    }
}

size_t block_act_floats(const struct block *k)
{
    size_t out = (size_t)k->cout * k->max_batch * k->Ho * k->Wo;
    size_t in = (size_t)k->cin * k->max_batch * k->H * k->W;
    return out > in ? out : in;
}

size_t block_scratch_min(const struct block *k)
{
    size_t a = conv_scratch_min(&k->c1, k->H, k->W);
    size_t b = conv_scratch_min(&k->c2, k->Ho, k->Wo);
    return a > b ? a : b;
}

void block_forward(struct block *k, const float *x, int train, const struct nn_ctx *c)
{
    /* x (cin,B,H,W) -> z1, a1, z2, [zs], y (cout,B,Ho,Wo) */
    size_t ohw = (size_t)k->Ho * k->Wo;
    conv_forward_ctx(&k->c1, x, k->H, k->W, k->z1, c);
    bn_forward_ctx(&k->b1, k->z1, NULL, k->a1, ohw, train, 1, c);
    conv_forward_ctx(&k->c2, k->a1, k->Ho, k->Wo, k->z2, c);
    if (k->has_sc) {
        conv_forward_ctx(&k->cs, x, k->H, k->W, k->zs, c);
        bn_forward_ctx(&k->bs, k->zs, NULL, k->y, ohw, train, 0, c);
        bn_forward_ctx(&k->b2, k->z2, k->y, k->y, ohw, train, 1, c);
    } else {
        bn_forward_ctx(&k->b2, k->z2, x, k->y, ohw, train, 1, c);
    }
}

void block_backward(struct block *k, const float *x, const float *dy, float *dx, float *t1,
                    float *t2, const struct nn_ctx *c)
{
    /* dy (cout,B,Ho,Wo) -> dx (cin,B,H,W); t1, t2 (cout,B,Ho,Wo). The join's ReLU mask is
     * y > 0, applied inside the BN backward passes and the identity add. */
    size_t ohw = (size_t)k->Ho * k->Wo;
    bn_backward_ctx(&k->b2, k->z2, k->y, dy, t1, ohw, c);
    conv_backward_ctx(&k->c2, k->a1, t1, k->Ho, k->Wo, t2, 0, c);
    bn_backward_ctx(&k->b1, k->z1, k->a1, t2, t2, ohw, c);
    conv_backward_ctx(&k->c1, x, t2, k->H, k->W, dx, 0, c);
    if (k->has_sc) {
        bn_backward_ctx(&k->bs, k->zs, k->y, dy, t1, ohw, c);
        conv_backward_ctx(&k->cs, x, t1, k->H, k->W, dx, 1, c);
    } else {
        add_masked_ctx(dx, dy, k->y, k->cout, ohw, c);
    }
}
