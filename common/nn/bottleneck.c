/* ResNet bottleneck block forward and backward (see bottleneck.h). */
#include "common/nn/bottleneck.h"

#include <string.h>

#include "common/nn/act.h"
#include "common/nn/block.h"

void bottleneck_init(struct bottleneck *k, int cin, int width, int cout, int stride, int H,
                     int W, int max_batch, struct nn_layout *L)
{
    memset(k, 0, sizeof(*k));
    k->cin = cin;
    k->width = width;
    k->cout = cout;
    k->stride = stride;
    k->H = H;
    k->W = W;
    k->Ho = conv_out_dim(H, 3, stride, 1);
    k->Wo = conv_out_dim(W, 3, stride, 1);
    k->max_batch = max_batch;
    k->has_sc = stride != 1 || cin != cout;
    conv_layout(&k->c1, cin, width, 1, 1, 0, L);
    bn_layout(&k->b1, width, L);
    conv_layout(&k->c2, width, width, 3, stride, 1, L);
    bn_layout(&k->b2, width, L);
    conv_layout(&k->c3, width, cout, 1, 1, 0, L);
    bn_layout(&k->b3, cout, L);
    if (k->has_sc) {
        conv_layout(&k->cs, cin, cout, 1, stride, 0, L);
        bn_layout(&k->bs, cout, L);
    }
    size_t B = (size_t)max_batch, hw = (size_t)H * W, ohw = (size_t)k->Ho * k->Wo;
    k->z1 = nn_carve(&L->acts, (size_t)width * B * hw);
    k->a1 = nn_carve(&L->acts, (size_t)width * B * hw);
    k->z2 = nn_carve(&L->acts, (size_t)width * B * ohw);
    k->a2 = nn_carve(&L->acts, (size_t)width * B * ohw);
    k->z3 = nn_carve(&L->acts, (size_t)cout * B * ohw);
    k->zs = k->has_sc ? nn_carve(&L->acts, (size_t)cout * B * ohw) : NULL;
    k->y = nn_carve(&L->acts, (size_t)cout * B * ohw);
}

void bottleneck_init_weights(struct bottleneck *k, struct rng *r, int init)
{
    conv_init_weights(&k->c1, r, init);
    bn_init_params(&k->b1);
    conv_init_weights(&k->c2, r, init);
    bn_init_params(&k->b2);
    conv_init_weights(&k->c3, r, init);
    bn_init_params(&k->b3);
    if (k->has_sc) {
        conv_init_weights(&k->cs, r, init);
        bn_init_params(&k->bs);
    }
}

static size_t max_z(size_t a, size_t b)
{
    return a > b ? a : b;
}

size_t bottleneck_act_floats(const struct bottleneck *k)
{
    size_t B = (size_t)k->max_batch, hw = (size_t)k->H * k->W, ohw = (size_t)k->Ho * k->Wo;
    size_t in = (size_t)k->cin * B * hw, mid = (size_t)k->width * B * hw;
    size_t out = (size_t)k->cout * B * ohw;
    return max_z(max_z(in, mid), out);
}

size_t bottleneck_scratch_min(const struct bottleneck *k)
{
    size_t s = max_z(conv_scratch_min(&k->c1, k->H, k->W), conv_scratch_min(&k->c2, k->H, k->W));
    s = max_z(s, conv_scratch_min(&k->c3, k->Ho, k->Wo));
    return k->has_sc ? max_z(s, conv_scratch_min(&k->cs, k->H, k->W)) : s;
}

double bottleneck_flops(const struct bottleneck *k)
{
    double hw = (double)k->H * k->W, ohw = (double)k->Ho * k->Wo;
    double f = conv_weight_count(&k->c1) * hw + conv_weight_count(&k->c2) * ohw
               + conv_weight_count(&k->c3) * ohw;
    if (k->has_sc) f += conv_weight_count(&k->cs) * ohw;
    return 2.0 * f;
}

size_t bottleneck_scalars(const struct bottleneck *k)
{
    size_t s = conv_weight_count(&k->c1) + conv_weight_count(&k->c2) + conv_weight_count(&k->c3)
               + 4 * (size_t)k->width + 2 * (size_t)k->cout;
    if (k->has_sc) s += conv_weight_count(&k->cs) + 2 * (size_t)k->cout;
    return s;
}

void bottleneck_forward(struct bottleneck *k, const float *x, int train, const struct nn_ctx *c)
{
    /* x (cin,B,H,W) -> z1, a1 (width,B,H,W) -> z2, a2 (width,B,Ho,Wo)
     * -> z3, [zs], y (cout,B,Ho,Wo) */
    size_t hw = (size_t)k->H * k->W, ohw = (size_t)k->Ho * k->Wo;
    conv_forward_ctx(&k->c1, x, k->H, k->W, k->z1, c);
    bn_forward_ctx(&k->b1, k->z1, NULL, k->a1, hw, train, 1, c);
    conv_forward_ctx(&k->c2, k->a1, k->H, k->W, k->z2, c);
    bn_forward_ctx(&k->b2, k->z2, NULL, k->a2, ohw, train, 1, c);
    conv_forward_ctx(&k->c3, k->a2, k->Ho, k->Wo, k->z3, c);
    if (k->has_sc) {
        conv_forward_ctx(&k->cs, x, k->H, k->W, k->zs, c);
        bn_forward_ctx(&k->bs, k->zs, NULL, k->y, ohw, train, 0, c);
        bn_forward_ctx(&k->b3, k->z3, k->y, k->y, ohw, train, 1, c);
    } else {
        bn_forward_ctx(&k->b3, k->z3, x, k->y, ohw, train, 1, c);
    }
}

void bottleneck_backward(struct bottleneck *k, const float *x, const float *dy, float *dx,
                         float *t1, float *t2, const struct nn_ctx *c)
{
    /* dy (cout,B,Ho,Wo) -> dx (cin,B,H,W). t1: dz3 (cout,B,Ho,Wo), then da1 (width,B,H,W)
     * once bn2's barrier has passed, then the shortcut's dzs (cout,B,Ho,Wo) once bs's has;
     * t2: da2, dz2 (width,B,Ho,Wo). The join's ReLU mask is y > 0, applied inside the bn3
     * and shortcut BN backward passes and the identity add. */
    size_t hw = (size_t)k->H * k->W, ohw = (size_t)k->Ho * k->Wo;
    bn_backward_ctx(&k->b3, k->z3, k->y, dy, t1, ohw, c);
    conv_backward_ctx(&k->c3, k->a2, t1, k->Ho, k->Wo, t2, 0, c);
    bn_backward_ctx(&k->b2, k->z2, k->a2, t2, t2, ohw, c);
    conv_backward_ctx(&k->c2, k->a1, t2, k->H, k->W, t1, 0, c);
    bn_backward_ctx(&k->b1, k->z1, k->a1, t1, t1, hw, c);
    conv_backward_ctx(&k->c1, x, t1, k->H, k->W, dx, 0, c);
    if (k->has_sc) {
        bn_backward_ctx(&k->bs, k->zs, k->y, dy, t1, ohw, c);
        conv_backward_ctx(&k->cs, x, t1, k->H, k->W, dx, 1, c);
    } else {
        add_masked_ctx(dx, dy, k->y, k->cout, ohw, c);
    }
}
