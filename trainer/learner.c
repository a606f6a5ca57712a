/* What a training step computes: see learner.h. */
#include "trainer/learner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

int learner_init(struct learner *l, const struct trainer_cfg *cfg, size_t n)
{
    memset(l, 0, sizeof *l);
    l->softmax = cfg->nce_k == 0;
    l->infonce = strcmp(cfg->loss, "infonce") == 0; /* config.c: nce_k > 0 then */
    l->views = cfg->views; /* config.c: 2 only with infonce */
    l->size = cfg->size;
    l->dim = cfg->low_dim;
    pixnorm_for(cfg->aug, &l->norm);
    int rows = cfg->batch * cfg->views;
    struct net_config nc = { cfg->model, cfg->low_dim, cfg->size, cfg->size, rows, cfg->seed,
                             net_init_parse(cfg->init), net_stem_parse(cfg->stem), cfg->head };
    l->net = cfg->threads > 0 ? net_new_threads(&nc, cfg->threads) : net_new(&nc);
    if (!l->net)
        return -1;
    log_info("network: %s", net_describe(l->net));
    l->opt = sgd_new(net_param_count(l->net), (float)cfg->momentum, (float)cfg->wd);
    struct objective_config oc = {
        .max_batch = rows, .dim = cfg->low_dim, .m = l->softmax ? 0 : (size_t)cfg->nce_k,
        .n = n, .tau = cfg->nce_t,
        .z_mode = !strcmp(cfg->z_mode, "ema") ? OBJ_Z_EMA : OBJ_Z_FROZEN,
        .z_momentum = cfg->z_momentum, .prox_lambda = cfg->prox_lambda,
        .softmax = l->softmax, .team = net_team(l->net),
    };
    l->obj = objective_new(&oc);
    if (!l->opt || !l->obj)
        return -1;
    if (cfg->nce_z > 0)
        objective_set_z(l->obj, cfg->nce_z);
    if (trainer_cfg_schedule(cfg, &l->sched) != 0)
        return -1;
    size_t px = (size_t)rows * 3 * (size_t)l->size * (size_t)l->size;
    l->x = malloc(px * sizeof(float));
    l->feat = malloc((size_t)rows * (size_t)l->dim * sizeof(float));
    l->df = malloc((size_t)rows * (size_t)l->dim * sizeof(float));
    if (!l->x || !l->feat || !l->df) {
        log_error("out of memory allocating training buffers");
        return -1;
    }
    return 0;
}

void learner_deinit(struct learner *l)
{
    objective_destroy(&l->obj);
    sgd_destroy(&l->opt);
    net_destroy(&l->net);
    free(l->x);
    free(l->feat);
    free(l->df);
    l->x = l->feat = l->df = NULL;
}

void learner_forward(struct learner *l, const uint8_t *pixels, uint32_t rows)
{
    pixnorm_apply(&l->norm, pixels, rows, (size_t)l->size * (size_t)l->size, l->x);
    const float *f = net_forward(l->net, l->x, (int)rows, 1);
    memcpy(l->feat, f, (size_t)rows * (size_t)l->dim * sizeof(float));
}

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

double learner_loss(struct learner *l, const float *pos, const float *neg, const float *mirror,
                    const uint32_t *idx, uint32_t count, int *finite)
{
    double loss;
    if (l->views == 2)
        loss = objective_infonce_views(l->obj, l->feat, neg, (int)count, l->df);
    else if (!l->softmax && l->infonce)
        loss = objective_infonce_shared(l->obj, l->feat, pos, neg, (int)count, l->df);
    else if (!l->softmax)
        loss = objective_nce_shared(l->obj, l->feat, pos, neg, (int)count, l->df);
    else
        loss = objective_softmax(l->obj, l->feat, mirror, idx, (int)count, l->df);
    size_t rows = (size_t)count * (size_t)l->views;
    *finite = isfinite(loss) && all_finite(l->df, rows * (size_t)l->dim);
    return loss;
}

void learner_backward(struct learner *l)
{
    net_backward(l->net, l->df);
}

void learner_sgd(struct learner *l, double lr)
{
    sgd_step(l->opt, net_params(l->net), net_grads(l->net), (float)lr);
}
