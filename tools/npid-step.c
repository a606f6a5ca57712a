/* npid-step: one training step from a checkpoint on given inputs, for comparing npid's
 * numerics with another implementation (bench/peer/step_parity.py). A test and benchmark
 * helper (built by `make check`, not installed): no progress, no bank, no loaders.
 *
 *   npid-step CKPT MODEL SIZE LOW_DIM IN OUT
 * IN (little-endian): u32 B, u32 m, u64 n, f64 tau, f64 lr, f64 momentum, f64 wd,
 *   then f32 x (B, 3, SIZE, SIZE) normalised pixels, f32 pos (B, LOW_DIM), f32 neg (m, LOW_DIM).
 * The network is MODEL with CKPT's stem (its model block) and takes CKPT's parameters and BN
 * running statistics; the step is the trainer's:
 * train-mode forward, objective_nce_shared (Z estimated on this call, as on a first step),
 * backward, SGD with a zero momentum buffer.
 * OUT: f64 loss, f64 Z, f32 features (B, LOW_DIM), f32 dL/df (B, LOW_DIM), f32 parameter
 * block after the step (the checkpoint's layout), f32 BN running statistics after the step.
 * The kernel level in force is logged first (common/blas.h), also before a usage error
 * (tests/it_isa_levels.sh reads it from `npid-step` without operands).
 * Exit 0, 1 with a one-line reason, or 2 on a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/blas.h"
#include "common/ckpt.h"
#include "common/log.h"
#include "common/nn/net.h"
#include "common/nn/sgd.h"
#include "trainer/objective.h"

static int read_exact(FILE *f, void *p, size_t n)
{
    return fread(p, 1, n, f) == n ? 0 : -1;
}

#define USAGE "usage: npid-step CKPT MODEL SIZE LOW_DIM IN OUT\n"

int main(int argc, char **argv)
{
    log_init("npid-step");
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    blas_setup(argc, argv);
    if (argc != 7) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    int size = atoi(argv[3]), dim = atoi(argv[4]), rc = EXIT_FAIL;
    struct ckpt c;
    char err[256];
    if (ckpt_load(argv[1], &c, err, sizeof err) != 0) {
        log_error("%s", err);
        return EXIT_FAIL;
    }
    FILE *in = fopen(argv[5], "rb");
    uint32_t B = 0, m = 0;
    uint64_t n = 0;
    double hp[3], tau = 0; /* lr, momentum, wd */
    float *x = NULL, *pos = NULL, *neg = NULL, *df = NULL;
    struct net *net = NULL;
    struct objective *obj = NULL;
    struct sgd *opt = NULL;
    if (!in || read_exact(in, &B, 4) || read_exact(in, &m, 4) || read_exact(in, &n, 8) ||
        read_exact(in, &tau, 8) || read_exact(in, hp, sizeof hp) || B == 0 || B > 4096 ||
        m == 0 || n == 0) {
        log_error("%s: bad or truncated header", argv[5]);
        goto out;
    }
    size_t nx = (size_t)B * 3 * (size_t)size * (size_t)size;
    x = malloc(nx * sizeof *x);
    pos = malloc((size_t)B * (size_t)dim * sizeof *pos);
    neg = malloc((size_t)m * (size_t)dim * sizeof *neg);
    df = malloc((size_t)B * (size_t)dim * sizeof *df);
    if (!x || !pos || !neg || !df || read_exact(in, x, nx * 4) ||
        read_exact(in, pos, (size_t)B * (size_t)dim * 4) ||
        read_exact(in, neg, (size_t)m * (size_t)dim * 4)) {
        log_error("%s: truncated inputs", argv[5]);
        goto out;
    }
    struct net_config nc = { argv[2], dim, size, size, (int)B, 0, NET_INIT_HE,
                             (int)c.model.stem, 0 };
    net = net_new(&nc);
    if (!net)
        goto out;
    if (net_param_count(net) != c.n_params || net_buffer_count(net) != c.n_buffers) {
        log_error("%s does not hold a %s / %d px / d %d / stem %s network", argv[1], argv[2], size,
                  dim, net_stem_name((int)c.model.stem));
        goto out;
    }
    memcpy(net_params(net), c.params, c.n_params * sizeof(float));
    memcpy(net_buffers(net), c.buffers, c.n_buffers * sizeof(float));
    struct objective_config oc = { (int)B, dim, m, n, tau, OBJ_Z_FROZEN, 0.99, 0.0, 0, NULL };
    obj = objective_new(&oc);
    opt = sgd_new(net_param_count(net), (float)hp[1], (float)hp[2]);
    if (!obj || !opt)
        goto out;
    const float *f = net_forward(net, x, (int)B, 1);
    float *feat = malloc((size_t)B * (size_t)dim * sizeof *feat);
    if (!feat)
        goto out;
    memcpy(feat, f, (size_t)B * (size_t)dim * sizeof *feat);
    double loss = objective_nce_shared(obj, feat, pos, neg, (int)B, df);
    double z = objective_z(obj);
    net_backward(net, df);
    sgd_step(opt, net_params(net), net_grads(net), (float)hp[0]);
    FILE *o = fopen(argv[6], "wb");
    if (!o || fwrite(&loss, 8, 1, o) != 1 || fwrite(&z, 8, 1, o) != 1 ||
        fwrite(feat, 4, (size_t)B * (size_t)dim, o) != (size_t)B * (size_t)dim ||
        fwrite(df, 4, (size_t)B * (size_t)dim, o) != (size_t)B * (size_t)dim ||
        fwrite(net_params(net), 4, c.n_params, o) != c.n_params ||
        fwrite(net_buffers(net), 4, c.n_buffers, o) != c.n_buffers || fclose(o) != 0) {
        log_error("cannot write %s", argv[6]);
        free(feat);
        goto out;
    }
    free(feat);
    rc = EXIT_OK;
out:
    if (in)
        fclose(in);
    free(x);
    free(pos);
    free(neg);
    free(df);
    net_destroy(&net);
    objective_destroy(&obj);
    sgd_destroy(&opt);
    ckpt_free(&c);
    return rc;
}
