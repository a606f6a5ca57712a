/* ResNet presets on the nn layers (see net.h). */
#include "common/nn/net.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/nn/act.h"
#include "common/nn/block.h"
#include "common/nn/bottleneck.h"
#include "common/nn/l2norm.h"
#include "common/nn/linear.h"
#include "common/nn/pool.h"
#include "common/nn/team.h"
#include "common/rng.h"

#define NET_MAX_BLOCKS 16 /* resnet34's and resnet50's 3 + 4 + 6 + 3 */
/* Per-thread im2col scratch in floats: at least one image of the largest convolution; the
 * chunks actually used are NN_CHUNK_COLS positions wide (NPID_CONV_CHUNK_COLS overrides).
 * 3x3 pad-1 convolutions with at most NN_DIRECT_MAX channels run direct (conv3x3.h);
 * NPID_CONV_DIRECT_MAX overrides (0: im2col everywhere), for measurements. */
#define NET_SCRATCH_TARGET ((size_t)1 << 20)

struct net {
    struct net_config cfg;
    char model[32];
    int nblocks, feat_c;
    int bottleneck;            /* blocks are bnecks[] (1) or blocks[] (0) */
    int hc, wc;                /* the stem convolution's output size */
    int h0, w0;                /* the stem's output size (after the max pool, if any) */
    struct conv stem;
    struct bn stem_bn;
    struct maxpool pool;       /* the imagenet stem's (pool.k == 0: none) */
    struct block blocks[NET_MAX_BLOCKS];
    struct bottleneck bnecks[NET_MAX_BLOCKS];
    struct linear fc;
    struct linear hid;         /* the head's hidden layer (hid.out == 0: none) */
    /* activations */
    float *xin;                /* (3, B, H, W) */
    float *z0, *a0;            /* (C0, B, hc, wc): the stem convolution, after BN + ReLU */
    float *p0;                 /* (C0, B, h0, w0): the max pool's output (imagenet stem) */
    int32_t *parg;             /* (C0, B, h0, w0): each pooled maximum's position in a0 */
    float *x0;                 /* the first block's input: p0, or a0 without a pool */
    float *pooled, *dpooled;   /* (B, C) */
    float *h, *dh;             /* (B, head): the hidden layer after its ReLU, and its gradient */
    float *u, *feat, *norms;   /* (B, d), (B, d), (B) */
    float *buf[4];             /* backward work, act_max floats each */
    float *scratch;            /* nt x scratch_floats */
    float *wt;                 /* nt x wt_floats: transposed conv weights */
    size_t scratch_floats, wt_floats, act_max, chunk_cols;
    int nt, direct_max;
    struct nn_team *team;
    float *tgrads;             /* (nt - 1) x n_params: per-thread weight gradients */
    const float *x_in;         /* input of the current team job */
    const float *dfeat;
    int job_train;
    /* blocks */
    float *params, *grads, *buffers, *acts;
    size_t n_params, n_buffers, n_acts, n_scalars;
    double flops;
    int last_B, last_train;
    char desc[256];
};

/* A preset: the stem's width, then per stage the block width (a bottleneck's 3x3 width; its
 * output is expansion times that), the number of blocks and the first block's stride. */
struct net_preset {
    const char *name;
    int stem, nstage, widths[4], depth[4], strides[4];
    int expansion;   /* 1: BasicBlocks (block.h); 4: bottlenecks (bottleneck.h) */
};

static const struct net_preset net_presets[] = {
    { "resnet18", 64, 4, { 64, 128, 256, 512 }, { 2, 2, 2, 2 }, { 1, 2, 2, 2 }, 1 },
    { "resnet18-half", 32, 4, { 32, 64, 128, 256 }, { 2, 2, 2, 2 }, { 1, 2, 2, 2 }, 1 },
    { "resnet18-quarter", 16, 4, { 16, 32, 64, 128 }, { 2, 2, 2, 2 }, { 1, 2, 2, 2 }, 1 },
    { "resnet20", 16, 3, { 16, 32, 64 }, { 3, 3, 3 }, { 1, 2, 2 }, 1 },
    { "resnet34", 64, 4, { 64, 128, 256, 512 }, { 3, 4, 6, 3 }, { 1, 2, 2, 2 }, 1 },
    { "resnet50", 64, 4, { 64, 128, 256, 512 }, { 3, 4, 6, 3 }, { 1, 2, 2, 2 }, 4 },
};
#define NET_N_PRESETS (sizeof(net_presets) / sizeof(net_presets[0]))

/* Block i's output (cout, B, Ho, Wo), its size, and its 3x3 convolution (either kind). */
static const float *net_block_y(const struct net *n, int i)
{
    return n->bottleneck ? n->bnecks[i].y : n->blocks[i].y;
}

static void net_block_out(const struct net *n, int i, int *c, int *h, int *w)
{
    if (n->bottleneck) {
        *c = n->bnecks[i].cout;
        *h = n->bnecks[i].Ho;
        *w = n->bnecks[i].Wo;
    } else {
        *c = n->blocks[i].cout;
        *h = n->blocks[i].Ho;
        *w = n->blocks[i].Wo;
    }
}

static const struct conv *net_block_c3x3(const struct net *n, int i)
{
    return n->bottleneck ? &n->bnecks[i].c2 : &n->blocks[i].c2;
}

static double conv_flops(const struct conv *c, int H, int W)
{
    return 2.0 * conv_weight_count(c) * conv_out_dim(H, c->R, c->stride, c->pad)
           * conv_out_dim(W, c->S, c->stride, c->pad);
}

/* Lays out the whole network in L; a counting pass when L's bases are NULL. */
static void net_layout(struct net *n, const struct net_preset *p, struct nn_layout *L)
{
    int B = n->cfg.max_batch, H = n->cfg.in_h, W = n->cfg.in_w;
    size_t smin = 0, amax = 0;
    n->flops = 0.0;
    n->xin = nn_carve(&L->acts, (size_t)3 * B * H * W);
    int in7 = n->cfg.stem == NET_STEM_IMAGENET;
    int sr = in7 ? 7 : 3, ss = n->cfg.stem == NET_STEM_CIFAR ? 1 : 2, sp = sr / 2;
    conv_layout(&n->stem, 3, p->stem, sr, ss, sp, L);
    bn_layout(&n->stem_bn, p->stem, L);
    n->flops += conv_flops(&n->stem, H, W);
    smin = conv_scratch_min(&n->stem, H, W);
    H = n->hc = conv_out_dim(H, sr, ss, sp);
    W = n->wc = conv_out_dim(W, sr, ss, sp);
    /* the backward buffers below hold the stem convolution's gradient too */
    amax = (size_t)p->stem * B * H * W;
    n->z0 = nn_carve(&L->acts, amax);
    n->a0 = nn_carve(&L->acts, amax);
    n->x0 = n->a0;
    n->pool = (struct maxpool){ 0, 1, 0 };
    n->p0 = NULL;
    n->parg = NULL;
    if (in7) {
        /* comparisons, no multiply-adds: not in the flop count */
        n->pool = (struct maxpool){ 3, 2, 1 };
        H = maxpool_out_dim(&n->pool, H);
        W = maxpool_out_dim(&n->pool, W);
        size_t np0 = (size_t)p->stem * B * H * W;
        n->p0 = nn_carve(&L->acts, np0);
        /* int32 positions in a float-sized run */
        n->parg = (int32_t *)(void *)nn_carve(&L->acts, np0);
        n->x0 = n->p0;
    }
    n->h0 = H;
    n->w0 = W;
    int cin = p->stem, nb = 0;
    n->bottleneck = p->expansion > 1;
    for (int s = 0; s < p->nstage; s++) {
        for (int d = 0; d < p->depth[s]; d++) {
            NPID_CHECK(nb < NET_MAX_BLOCKS);
            int st = d > 0 ? 1 : p->strides[s] * (s == 0 && n->cfg.stem == NET_STEM_S4 ? 2 : 1);
            size_t sm, am;
            if (n->bottleneck) {
                struct bottleneck *k = &n->bnecks[nb++];
                bottleneck_init(k, cin, p->widths[s], p->widths[s] * p->expansion, st, H, W, B,
                                L);
                n->flops += bottleneck_flops(k);
                sm = bottleneck_scratch_min(k);
                am = bottleneck_act_floats(k);
            } else {
                struct block *k = &n->blocks[nb++];
                block_init(k, cin, p->widths[s], st, H, W, B, L);
                n->flops += conv_flops(&k->c1, H, W) + conv_flops(&k->c2, k->Ho, k->Wo);
                if (k->has_sc) n->flops += conv_flops(&k->cs, H, W);
                sm = block_scratch_min(k);
                am = block_act_floats(k);
            }
            if (sm > smin) smin = sm;
            if (am > amax) amax = am;
            net_block_out(n, nb - 1, &cin, &H, &W);
        }
    }
    n->nblocks = nb;
    n->feat_c = cin;
    int hd = n->cfg.head;
    n->hid.in = cin;
    n->hid.out = hd;
    if (hd > 0) {
        nn_carve_param(L, (size_t)cin * hd, &n->hid.w, &n->hid.dw);
        nn_carve_param(L, (size_t)hd, &n->hid.b, &n->hid.db);
        n->flops += 2.0 * cin * hd;
    }
    n->fc.in = hd > 0 ? hd : cin;
    n->fc.out = n->cfg.low_dim;
    nn_carve_param(L, (size_t)n->fc.in * n->cfg.low_dim, &n->fc.w, &n->fc.dw);
    nn_carve_param(L, (size_t)n->cfg.low_dim, &n->fc.b, &n->fc.db);
    n->flops += 2.0 * n->fc.in * n->cfg.low_dim;
    n->pooled = nn_carve(&L->acts, (size_t)B * cin);
    n->dpooled = nn_carve(&L->acts, (size_t)B * cin);
    if (hd > 0) {
        n->h = nn_carve(&L->acts, (size_t)B * hd);
        n->dh = nn_carve(&L->acts, (size_t)B * hd);
    }
    n->u = nn_carve(&L->acts, (size_t)B * n->cfg.low_dim);
    n->feat = nn_carve(&L->acts, (size_t)B * n->cfg.low_dim);
    n->norms = nn_carve(&L->acts, (size_t)B);
    n->act_max = amax;
    for (int i = 0; i < 4; i++) n->buf[i] = nn_carve(&L->acts, amax);
    size_t target = NET_SCRATCH_TARGET;
    n->chunk_cols = NN_CHUNK_COLS;
    const char *env = getenv("NPID_CONV_CHUNK_COLS");
    if (env && atoi(env) > 0) n->chunk_cols = (size_t)atoi(env);
    n->direct_max = NN_DIRECT_MAX;
    env = getenv("NPID_CONV_DIRECT_MAX");
    if (env && *env) n->direct_max = atoi(env);
    /* room for a full chunk of the widest same convolution */
    for (int i = 0; i < n->nblocks; i++) {
        size_t crs = (size_t)net_block_c3x3(n, i)->C * 9;
        if (crs * n->chunk_cols > target) target = crs * n->chunk_cols;
    }
    n->scratch_floats = smin > target ? smin : target;
    n->scratch_floats = (n->scratch_floats + 15) & ~(size_t)15;
    n->scratch = nn_carve(&L->acts, n->scratch_floats * L->threads);
    n->wt_floats = 0;
    for (int i = 0; i < n->nblocks; i++) {
        size_t w = conv_weight_count(net_block_c3x3(n, i));
        if (w > n->wt_floats) n->wt_floats = w;
    }
    n->wt_floats = (n->wt_floats + 15) & ~(size_t)15;
    n->wt = nn_carve(&L->acts, n->wt_floats * L->threads);
}

static size_t net_count_scalars(const struct net *n)
{
    size_t s = conv_weight_count(&n->stem) + 2 * (size_t)n->stem_bn.C;
    for (int i = 0; i < n->nblocks; i++) {
        if (n->bottleneck) {
            s += bottleneck_scalars(&n->bnecks[i]);
            continue;
        }
        const struct block *k = &n->blocks[i];
        s += conv_weight_count(&k->c1) + conv_weight_count(&k->c2) + 4 * (size_t)k->cout;
        if (k->has_sc) s += conv_weight_count(&k->cs) + 2 * (size_t)k->cout;
    }
    s += (size_t)n->hid.in * n->hid.out + n->hid.out;
    return s + (size_t)n->fc.in * n->fc.out + n->fc.out;
}

int net_stem_parse(const char *name)
{
    static const char *const names[] = { "cifar", "s2", "s4", "imagenet" };
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0) return i;
    return -1;
}

const char *net_stem_name(int stem)
{
    return stem == NET_STEM_S2         ? "s2"
           : stem == NET_STEM_S4       ? "s4"
           : stem == NET_STEM_IMAGENET ? "imagenet"
                                       : "cifar";
}

int net_stem_stride(int stem)
{
    return stem == NET_STEM_S2 ? 2 : stem == NET_STEM_S4 || stem == NET_STEM_IMAGENET ? 4 : 1;
}

int net_init_parse(const char *name)
{
    if (strcmp(name, "he") == 0) return NET_INIT_HE;
    if (strcmp(name, "torch") == 0) return NET_INIT_TORCH;
    if (strcmp(name, "he-out") == 0) return NET_INIT_HE_OUT;
    return -1;
}

/* torch.nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias */
static void linear_init_torch(struct linear *l, struct rng *r)
{
    float bound = 1.0f / sqrtf((float)l->in);
    for (size_t i = 0; i < (size_t)l->in * l->out; i++)
        l->w[i] = (2.0f * rng_float(r) - 1.0f) * bound;
    for (int i = 0; i < l->out; i++) l->b[i] = (2.0f * rng_float(r) - 1.0f) * bound;
}

static void net_init_weights(struct net *n)
{
    struct rng r;
    rng_seed(&r, n->cfg.seed);
    conv_init_weights(&n->stem, &r, n->cfg.init);
    bn_init_params(&n->stem_bn);
    for (int i = 0; i < n->nblocks; i++) {
        if (n->bottleneck)
            bottleneck_init_weights(&n->bnecks[i], &r, n->cfg.init);
        else
            block_init_weights(&n->blocks[i], &r, n->cfg.init);
    }
    if (n->hid.out > 0) linear_init_torch(&n->hid, &r);
    linear_init_torch(&n->fc, &r);
}

int net_model_known(const char *name)
{
    for (size_t i = 0; i < NET_N_PRESETS; i++)
        if (name && strcmp(name, net_presets[i].name) == 0) return 1;
    return 0;
}

double net_config_flops(const struct net_config *cfg)
{
    const struct net_preset *p = NULL;
    for (size_t i = 0; i < NET_N_PRESETS; i++)
        if (cfg->model && strcmp(cfg->model, net_presets[i].name) == 0) p = &net_presets[i];
    if (!p || cfg->stem < NET_STEM_CIFAR || cfg->stem > NET_STEM_IMAGENET || cfg->low_dim < 1
        || cfg->low_dim > 65536 || cfg->head < 0 || cfg->head > 65536 || cfg->in_h < 8
        || cfg->in_w < 8 || cfg->in_h > 4096 || cfg->in_w > 4096)
        return -1.0;
    struct net *n = calloc(1, sizeof(*n));
    if (!n) return -1.0;
    n->cfg = *cfg;
    n->cfg.max_batch = 1;
    struct nn_layout L;
    memset(&L, 0, sizeof(L));
    L.threads = 1;
    net_layout(n, p, &L);
    double f = n->flops;
    free(n);
    return f;
}

struct net *net_new(const struct net_config *cfg)
{
    return net_new_threads(cfg, 0);
}

/* The preset and team size for cfg, or NULL when cfg is invalid (logged). */
static const struct net_preset *net_check(const struct net_config *cfg, int threads, int *nt_out)
{
    const struct net_preset *p = NULL;
    for (size_t i = 0; i < NET_N_PRESETS; i++)
        if (cfg->model && strcmp(cfg->model, net_presets[i].name) == 0) p = &net_presets[i];
    if (!p) {
        log_error("net: unknown model '%s' (resnet18, resnet18-half, resnet18-quarter, resnet20, "
                  "resnet34, resnet50)", cfg->model ? cfg->model : "(null)");
        return NULL;
    }
    int nt = threads;
    if (nt <= 0) {
        const char *env = getenv("NPID_NN_THREADS");
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nt = env && atoi(env) > 0 ? atoi(env) : (int)(cpus > 0 ? cpus : 1);
    }
    if (nt > 64) nt = 64;
    if (nt > cfg->max_batch) nt = cfg->max_batch > 0 ? cfg->max_batch : 1;
    if (cfg->stem < NET_STEM_CIFAR || cfg->stem > NET_STEM_IMAGENET) {
        log_error("net: unknown stem %d", cfg->stem);
        return NULL;
    }
    if (cfg->head < 0 || cfg->head > 65536) {
        log_error("net: bad head width %d", cfg->head);
        return NULL;
    }
    if (cfg->low_dim < 1 || cfg->low_dim > 65536 || cfg->in_h < 8 || cfg->in_w < 8
        || cfg->in_h > 4096 || cfg->in_w > 4096 || cfg->max_batch < 1
        || cfg->max_batch > 65536) {
        log_error("net: bad size (low_dim %d, input %dx%d, max_batch %d)", cfg->low_dim,
                  cfg->in_h, cfg->in_w, cfg->max_batch);
        return NULL;
    }
    *nt_out = nt;
    return p;
}

/* A net for cfg with its layout counted and nothing allocated but the struct itself, or
 * NULL (logged). */
static struct net *net_plan(const struct net_config *cfg, int threads,
                            const struct net_preset **pp)
{
    int nt;
    const struct net_preset *p = net_check(cfg, threads, &nt);
    if (!p) return NULL;
    struct net *n = calloc(1, sizeof(*n));
    if (!n) return NULL;
    n->cfg = *cfg;
    snprintf(n->model, sizeof(n->model), "%s", p->name);
    n->cfg.model = n->model;
    n->nt = nt;
    struct nn_layout L;
    memset(&L, 0, sizeof(L));
    L.threads = nt;
    net_layout(n, p, &L);
    n->n_params = L.params.used;
    n->n_buffers = L.buffers.used;
    n->n_acts = L.acts.used;
    *pp = p;
    return n;
}

int net_memory(const struct net_config *cfg, int threads, struct net_memory *m)
{
    const struct net_preset *p;
    struct net *n = net_plan(cfg, threads, &p);
    if (!n) return -1;
    m->threads = n->nt;
    m->params = n->n_params * sizeof(float);
    m->thread_grads = n->n_params * (size_t)(n->nt - 1) * sizeof(float);
    m->buffers = n->n_buffers * sizeof(float);
    m->acts = n->n_acts * sizeof(float);
    m->total = 2 * m->params + m->thread_grads + m->buffers + m->acts;
    free(n);
    return 0;
}

struct net *net_new_threads(const struct net_config *cfg, int threads)
{
    const struct net_preset *p;
    struct net *n = net_plan(cfg, threads, &p);
    if (!n) return NULL;
    int nt = n->nt;
    n->params = nn_alloc(n->n_params);
    n->grads = nn_alloc(n->n_params);
    n->buffers = nn_alloc(n->n_buffers);
    n->acts = nn_alloc(n->n_acts);
    n->tgrads = nt > 1 ? nn_alloc(n->n_params * (size_t)(nt - 1)) : NULL;
    n->team = nn_team_new(nt);
    if (!n->params || !n->grads || !n->buffers || !n->acts || (nt > 1 && !n->tgrads)
        || !n->team) {
        log_error("net: cannot allocate %.1f MB", ((1.0 + nt) * n->n_params + n->n_buffers
                                                    + n->n_acts) * 4.0 / 1e6);
        net_destroy(&n);
        return NULL;
    }
    struct nn_layout L;
    memset(&L, 0, sizeof(L));
    L.threads = nt;
    L.params.base = n->params;
    L.grads.base = n->grads;
    L.buffers.base = n->buffers;
    L.acts.base = n->acts;
    net_layout(n, p, &L);
    NPID_CHECK(L.params.used == n->n_params && L.acts.used == n->n_acts);
    n->n_scalars = net_count_scalars(n);
    net_init_weights(n);
    char head[32] = "linear";
    int c1, h1, w1;
    net_block_out(n, 0, &c1, &h1, &w1);
    if (cfg->head > 0) snprintf(head, sizeof head, "mlp %d", cfg->head);
    snprintf(n->desc, sizeof(n->desc),
             "%s: %zu params, input 3x%dx%d, stem %s (maps %dx%d), head %s, low_dim %d, "
             "max_batch %d, "
             "%.3f GFLOP/img fwd, %.0f MB activations, %d threads",
             n->model, n->n_scalars, cfg->in_h, cfg->in_w, net_stem_name(cfg->stem),
             h1, w1, head, cfg->low_dim, cfg->max_batch,
             n->flops / 1e9, n->n_acts * 4.0 / 1e6, nt);
    return n;
}

void net_destroy(struct net **np)
{
    if (!np || !*np) return;
    struct net *n = *np;
    nn_team_destroy(&n->team);
    nn_free(n->tgrads);
    nn_free(n->params);
    nn_free(n->grads);
    nn_free(n->buffers);
    nn_free(n->acts);
    free(n);
    *np = NULL;
}

/* The context of thread tid for a batch of B. */
static struct nn_ctx net_ctx(struct net *n, int tid, int B)
{
    struct nn_ctx c;
    c.tid = tid;
    c.nt = n->nt;
    c.team = n->nt > 1 ? n->team : NULL;
    c.B = B;
    c.b0 = (int)((long)B * tid / n->nt);
    c.b1 = (int)((long)B * (tid + 1) / n->nt);
    c.scratch = n->scratch + n->scratch_floats * (size_t)tid;
    c.scratch_floats = n->scratch_floats;
    c.wt = n->wt + n->wt_floats * (size_t)tid;
    c.chunk_cols = n->chunk_cols;
    c.direct_max = n->direct_max;
    c.grads0 = n->grads;
    c.grads = tid == 0 ? n->grads : n->tgrads + n->n_params * (size_t)(tid - 1);
    return c;
}

static void net_forward_job(void *arg, int tid)
{
    struct net *n = arg;
    int B = n->last_B, H = n->cfg.in_h, W = n->cfg.in_w, train = n->job_train;
    struct nn_ctx c = net_ctx(n, tid, B);
    size_t hw = (size_t)H * W;
    /* x (B,3,H,W) -> xin (3,B,H,W) */
    for (int b = c.b0; b < c.b1; b++)
        for (int ch = 0; ch < 3; ch++)
            memcpy(n->xin + ((size_t)ch * B + b) * hw, n->x_in + ((size_t)b * 3 + ch) * hw,
                   sizeof(float) * hw);
    conv_forward_ctx(&n->stem, n->xin, H, W, n->z0, &c);
    bn_forward_ctx(&n->stem_bn, n->z0, NULL, n->a0, (size_t)n->hc * n->wc, train, 1, &c);
    if (n->p0)
        maxpool_forward_range(&n->pool, n->a0, n->stem_bn.C, B, n->hc, n->wc, c.b0, c.b1, n->p0,
                              n->parg);
    const float *cur = n->x0;
    for (int i = 0; i < n->nblocks; i++) {
        if (n->bottleneck)
            bottleneck_forward(&n->bnecks[i], cur, train, &c);
        else
            block_forward(&n->blocks[i], cur, train, &c);
        cur = net_block_y(n, i);
    }
    int lc, lh, lw;
    net_block_out(n, n->nblocks - 1, &lc, &lh, &lw);
    int nb = c.b1 - c.b0, d = n->cfg.low_dim;
    if (nb <= 0) return;
    avgpool_forward_range(cur, n->feat_c, B, (size_t)lh * lw, c.b0, c.b1, n->pooled);
    const float *head_in = n->pooled + (size_t)c.b0 * n->feat_c;
    if (n->hid.out > 0) {
        float *h = n->h + (size_t)c.b0 * n->hid.out;
        linear_forward(&n->hid, head_in, nb, h);
        relu_forward(h, h, (size_t)nb * n->hid.out);
        head_in = h;
    }
    linear_forward(&n->fc, head_in, nb, n->u + (size_t)c.b0 * d);
    l2norm_forward(n->u + (size_t)c.b0 * d, nb, d, n->feat + (size_t)c.b0 * d, n->norms + c.b0);
}

/* Runs a job on the team with OpenBLAS on one thread (each team thread calls sgemm). */
static void net_run(struct net *n, void (*job)(void *, int))
{
    if (n->nt == 1) {
        job(n, 0);
        return;
    }
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    nn_team_run(n->team, job, n);
    openblas_set_num_threads(prev);
}

const float *net_forward(struct net *n, const float *x, int B, int train)
{
    NPID_CHECK(B >= 1 && B <= n->cfg.max_batch);
    n->last_B = B;
    n->job_train = train;
    n->x_in = x;
    net_run(n, net_forward_job);
    n->last_train = train;
    return n->feat;
}

static void net_backward_job(void *arg, int tid)
{
    struct net *n = arg;
    int B = n->last_B, H = n->cfg.in_h, W = n->cfg.in_w, d = n->cfg.low_dim;
    struct nn_ctx c = net_ctx(n, tid, B);
    int nb = c.b1 - c.b0;
    struct linear fc = n->fc, hid = n->hid;
    fc.dw = nn_ctx_grad(&c, n->fc.dw);
    fc.db = nn_ctx_grad(&c, n->fc.db);
    if (hid.out > 0) {
        hid.dw = nn_ctx_grad(&c, n->hid.dw);
        hid.db = nn_ctx_grad(&c, n->hid.db);
    }
    int lc, lh, lw;
    net_block_out(n, n->nblocks - 1, &lc, &lh, &lw);
    float *dy = n->buf[0], *dx = n->buf[1];
    if (nb > 0) {
        size_t r = (size_t)c.b0 * d;
        l2norm_backward(n->feat + r, n->norms + c.b0, n->dfeat + r, nb, d, n->u + r);
        const float *pooled = n->pooled + (size_t)c.b0 * n->feat_c;
        float *dpooled = n->dpooled + (size_t)c.b0 * n->feat_c;
        if (hid.out > 0) {
            size_t hr = (size_t)c.b0 * hid.out, hn = (size_t)nb * hid.out;
            linear_backward(&fc, n->h + hr, n->u + r, nb, n->dh + hr);
            relu_backward(n->h + hr, n->dh + hr, n->dh + hr, hn);
            linear_backward(&hid, pooled, n->dh + hr, nb, dpooled);
        } else {
            linear_backward(&fc, pooled, n->u + r, nb, dpooled);
        }
        avgpool_backward_range(n->dpooled, n->feat_c, B, (size_t)lh * lw, c.b0, c.b1, dy);
    } else {
        memset(fc.dw, 0, sizeof(float) * (size_t)fc.in * fc.out);
        memset(fc.db, 0, sizeof(float) * (size_t)fc.out);
        if (hid.out > 0) {
            memset(hid.dw, 0, sizeof(float) * (size_t)hid.in * hid.out);
            memset(hid.db, 0, sizeof(float) * (size_t)hid.out);
        }
    }
    for (int i = n->nblocks - 1; i >= 0; i--) {
        const float *in = i > 0 ? net_block_y(n, i - 1) : n->x0;
        if (n->bottleneck)
            bottleneck_backward(&n->bnecks[i], in, dy, dx, n->buf[2], n->buf[3], &c);
        else
            block_backward(&n->blocks[i], in, dy, dx, n->buf[2], n->buf[3], &c);
        float *t = dy;
        dy = dx;
        dx = t;
    }
    if (n->p0) {
        /* dx held the first block's dy, laid out for other images at (h0, w0): every thread
           must be done with it before this one's images are written at (hc, wc) */
        nn_team_barrier(c.team);
        maxpool_backward_range(&n->pool, dy, n->parg, n->stem_bn.C, B, n->hc, n->wc, c.b0,
                               c.b1, dx);
        dy = dx;
    }
    bn_backward_ctx(&n->stem_bn, n->z0, n->a0, dy, dy, (size_t)n->hc * n->wc, &c);
    conv_backward_ctx(&n->stem, n->xin, dy, H, W, NULL, 0, &c);
    if (n->nt == 1) return;
    /* sum the per-thread weight gradients into the net's block, each thread a range */
    nn_team_barrier(c.team);
    size_t np = n->n_params, lo = np * (size_t)tid / n->nt, hi = np * (size_t)(tid + 1) / n->nt;
    for (int t = 1; t < n->nt; t++) {
        const float *g = n->tgrads + np * (size_t)(t - 1);
        for (size_t i = lo; i < hi; i++) n->grads[i] += g[i];
    }
}

void net_backward(struct net *n, const float *dfeat)
{
    NPID_CHECK(n->last_train && n->last_B >= 1);
    n->dfeat = dfeat;
    net_run(n, net_backward_job);
    n->last_train = 0;
}

size_t net_param_count(const struct net *n) { return n->n_params; }
float *net_params(struct net *n) { return n->params; }
float *net_grads(struct net *n) { return n->grads; }
size_t net_buffer_count(const struct net *n) { return n->n_buffers; }
float *net_buffers(struct net *n) { return n->buffers; }
size_t net_param_scalars(const struct net *n) { return n->n_scalars; }
double net_flops_per_image(const struct net *n) { return n->flops; }
const char *net_describe(const struct net *n) { return n->desc; }
int net_low_dim(const struct net *n) { return n->cfg.low_dim; }
int net_max_batch(const struct net *n) { return n->cfg.max_batch; }
int net_threads(const struct net *n) { return n->nt; }
struct nn_team *net_team(struct net *n) { return n->team; }

/* Pre-normalisation outputs u (B, low_dim) of the last forward (f = u / ||u||). */
const float *net_output_raw(const struct net *n) { return n->u; }
const float *net_pooled(const struct net *n) { return n->pooled; }
int net_pool_dim(const struct net *n) { return n->feat_c; }
/* The final Linear layer's bias (low_dim), inside the parameter block. */
float *net_fc_bias(struct net *n) { return n->fc.b; }
