/* What a training step computes: see learner.h. */
#include "trainer/learner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/sysmem.h"
#include "trainer/dp.h"

#define GB 1e9

/* The step's memory apart from the network's, for rows rows: the normalised input, the
 * batches in flight from the loaders, the SGD momentum, the accumulated gradients (when
 * split), the objective's scores and the bank rows the step reads. */
static double step_other_bytes(const struct trainer_cfg *cfg, const struct net_memory *nm,
                               size_t n, int rows, int split)
{
    double r = rows, d = cfg->low_dim, m = cfg->nce_k > 0 ? cfg->nce_k : 1;
    double input = r * 3.0 * cfg->size * cfg->size * (4.0 + TRAINER_TASK_WINDOW);
    double opt = (double)nm->params * (split ? 2.0 : 1.0);
    double obj = (r * (cfg->nce_k > 0 ? m : 512.0 * nm->threads) + r * r
                  + nm->threads * r * d) * 4.0;
    double bank = (cfg->nce_k > 0 ? m * d + r * d : (double)n * d) * 4.0;
    return input + opt + obj + bank;
}

/* The network's configuration for forwards of micro rows. */
static struct net_config net_config_of(const struct trainer_cfg *cfg, int micro)
{
    struct net_config nc = { cfg->model, cfg->low_dim, cfg->size, cfg->size, micro, cfg->seed,
                             net_init_parse(cfg->init), net_stem_parse(cfg->stem), cfg->head };
    return nc;
}

/* The step's estimated bytes with forwards of micro rows (of rows), or -1 when the network
 * refuses the configuration (logged). */
static double step_bytes(const struct trainer_cfg *cfg, size_t n, int rows, int micro,
                         struct net_memory *nm)
{
    struct net_config nc = net_config_of(cfg, micro);
    if (net_memory(&nc, cfg->threads, nm) != 0)
        return -1;
    return (double)nm->total + step_other_bytes(cfg, nm, n, rows, micro < rows);
}

/* Rows per forward for a step of rows rows: --micro-batch, or the most that --memory (or
 * 80 % of the machine's memory) holds, balanced over the forwards a step then needs; the
 * estimate and the choice logged. 0 when nothing fits (logged). */
static int plan_micro(const struct trainer_cfg *cfg, size_t n, int batch, int rows)
{
    char what[64];
    double limit = (double)sysmem_limit(what, sizeof what), budget = cfg->memory_gb * GB;
    if (budget <= 0)
        budget = limit > 0 ? 0.8 * limit : 1e30;
    struct net_memory full, nm;
    double need = step_bytes(cfg, n, rows, rows, &full);
    if (need < 0)
        return 0;
    int micro = rows;
    if (cfg->micro_batch > 0) {
        micro = cfg->micro_batch < rows ? cfg->micro_batch : rows;
    } else if (need > budget) {
        int lo = 0, hi = rows; /* the largest micro < rows that fits: lo fits, hi does not */
        while (hi - lo > 1) {
            int mid = lo + (hi - lo) / 2;
            double b = step_bytes(cfg, n, rows, mid, &nm);
            if (b < 0)
                return 0;
            if (b <= budget) lo = mid; else hi = mid;
        }
        if (lo == 0) {
            log_error("memory: a step needs %.2f GB even one row per forward; the budget is "
                      "%.2f GB (--memory): give a larger --memory, a smaller --size or model",
                      step_bytes(cfg, n, rows, 1, &nm) / GB, budget / GB);
            return 0;
        }
        micro = lo;
    }
    int forwards = (rows + micro - 1) / micro;
    micro = (rows + forwards - 1) / forwards;
    double used = step_bytes(cfg, n, rows, micro, &nm);
    char src[96];
    if (cfg->memory_gb > 0)
        snprintf(src, sizeof src, "--memory %g GB", cfg->memory_gb);
    else if (limit > 0)
        snprintf(src, sizeof src, "80%% of %s, %.2f GB", what, limit / GB);
    else
        snprintf(src, sizeof src, "no limit known");
    log_info("memory: a step of %d rows (batch %d x %d view%s) at %d px needs %.2f GB in one "
             "forward (activations %.2f GB); budget %.2f GB (%s)", rows, batch, cfg->views,
             cfg->views == 1 ? "" : "s", cfg->size, need / GB, (double)full.acts / GB, budget / GB,
             src);
    if (forwards == 1)
        log_info("memory: one forward per step, %.2f GB", used / GB);
    else
        log_info("memory: %d forwards of %d rows per step%s, %.2f GB (activations %.2f GB): "
                 "gradients accumulated, BN statistics per forward, each forward run twice "
                 "(features, then gradients)", forwards, micro,
                 cfg->micro_batch > 0 ? " (--micro-batch)" : "", used / GB, (double)nm.acts / GB);
    return micro;
}

int learner_init(struct learner *l, const struct trainer_cfg *cfg, size_t n)
{
    memset(l, 0, sizeof *l);
    l->softmax = cfg->nce_k == 0;
    l->infonce = strcmp(cfg->loss, "infonce") == 0; /* config.c: nce_k > 0 then */
    l->views = cfg->views; /* config.c: 2 only with infonce */
    l->size = cfg->size;
    l->dim = cfg->low_dim;
    pixnorm_for(cfg->aug, &l->norm);
    int rows = cfg->batch * cfg->views; /* the step's, over all ranks */
    int batch_loc = cfg->batch / dp_size(), rows_loc = batch_loc * cfg->views;
    l->micro = plan_micro(cfg, n, batch_loc, rows_loc);
    if (l->micro == 0)
        return -1;
    struct net_config nc = net_config_of(cfg, l->micro);
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
    size_t px = (size_t)rows_loc * 3 * (size_t)l->size * (size_t)l->size;
    l->x = malloc(px * sizeof(float));
    l->feat = malloc((size_t)rows * (size_t)l->dim * sizeof(float));
    l->df = malloc((size_t)rows * (size_t)l->dim * sizeof(float));
    l->feat_loc = l->feat;
    l->df_loc = l->df;
    if (dp_active()) {
        l->feat_loc = malloc((size_t)rows_loc * (size_t)l->dim * sizeof(float));
        l->df_loc = malloc((size_t)rows_loc * (size_t)l->dim * sizeof(float));
        if (!l->feat_loc || !l->df_loc) {
            log_error("out of memory allocating training buffers");
            return -1;
        }
    }
    size_t nbuf = net_buffer_count(l->net), np = net_param_count(l->net);
    if (l->micro < rows_loc) {
        l->bn_saved = malloc(nbuf * sizeof(float));
        l->grad_acc = malloc(np * sizeof(float));
    }
    if (!l->x || !l->feat || !l->df ||
        (l->micro < rows_loc && (!l->bn_saved || !l->grad_acc))) {
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
    if (l->feat_loc != l->feat)
        free(l->feat_loc);
    if (l->df_loc != l->df)
        free(l->df_loc);
    l->feat_loc = l->df_loc = NULL;
    free(l->x);
    free(l->feat);
    free(l->df);
    free(l->bn_saved);
    free(l->grad_acc);
    l->x = l->feat = l->df = l->bn_saved = l->grad_acc = NULL;
}

void learner_forward(struct learner *l, const uint8_t *pixels, uint32_t rows)
{
    size_t plane = 3 * (size_t)l->size * (size_t)l->size, d = (size_t)l->dim;
    pixnorm_apply(&l->norm, pixels, rows, (size_t)l->size * (size_t)l->size, l->x);
    l->rows = rows;
    if (rows <= (uint32_t)l->micro) {
        memcpy(l->feat_loc, net_forward(l->net, l->x, (int)rows, 1), rows * d * sizeof(float));
        return;
    }
    /* the features only: learner_backward runs these forwards again, and their updates of
       the BN running statistics are the ones kept */
    size_t nbuf = net_buffer_count(l->net);
    memcpy(l->bn_saved, net_buffers(l->net), nbuf * sizeof(float));
    for (uint32_t r0 = 0; r0 < rows; r0 += (uint32_t)l->micro) {
        uint32_t r = rows - r0 < (uint32_t)l->micro ? rows - r0 : (uint32_t)l->micro;
        const float *f = net_forward(l->net, l->x + r0 * plane, (int)r, 1);
        memcpy(l->feat_loc + r0 * d, f, r * d * sizeof(float));
    }
    memcpy(net_buffers(l->net), l->bn_saved, nbuf * sizeof(float));
}

void learner_gather(struct learner *l, uint32_t total)
{
    l->total = total;
    dp_slice(total, dp_rank(), dp_size(), &l->lo, &l->count);
    NPID_CHECK(l->count * (uint32_t)l->views == l->rows);
    if (!dp_active())
        return;
    size_t d = (size_t)l->dim;
    for (int v = 0; v < l->views; v++)
        dp_gather_rows(l->feat_loc + (size_t)v * l->count * d, l->feat + (size_t)v * total * d,
                       total, d);
}

/* This rank's rows of df (view by view) into df_loc. */
static void scatter_df(struct learner *l)
{
    size_t d = (size_t)l->dim;
    for (int v = 0; v < l->views; v++)
        memcpy(l->df_loc + (size_t)v * l->count * d,
               l->df + ((size_t)v * l->total + l->lo) * d, l->count * d * sizeof(float));
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

static void backward_rows(struct learner *l);

void learner_backward(struct learner *l)
{
    if (dp_active())
        scatter_df(l);
    backward_rows(l);
    dp_sum_f32(net_grads(l->net), net_param_count(l->net));
}

/* The gradients of this rank's rows from df_loc, in forwards of at most micro rows. */
static void backward_rows(struct learner *l)
{
    uint32_t rows = l->rows;
    if (rows <= (uint32_t)l->micro) {
        net_backward(l->net, l->df_loc);
        return;
    }
    size_t plane = 3 * (size_t)l->size * (size_t)l->size, d = (size_t)l->dim;
    size_t np = net_param_count(l->net);
    float *g = net_grads(l->net);
    for (uint32_t r0 = 0; r0 < rows; r0 += (uint32_t)l->micro) {
        uint32_t r = rows - r0 < (uint32_t)l->micro ? rows - r0 : (uint32_t)l->micro;
        net_forward(l->net, l->x + r0 * plane, (int)r, 1);
        net_backward(l->net, l->df_loc + r0 * d);
        if (r0 == 0) {
            memcpy(l->grad_acc, g, np * sizeof(float));
        } else {
            for (size_t i = 0; i < np; i++)
                l->grad_acc[i] += g[i];
        }
    }
    memcpy(g, l->grad_acc, np * sizeof(float));
}

void learner_sgd(struct learner *l, double lr)
{
    sgd_step(l->opt, net_params(l->net), net_grads(l->net), (float)lr);
}
