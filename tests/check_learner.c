/* Unit tests for the training step's gradient accumulation (trainer/learner.h): with forwards
 * of fewer rows than the step (--micro-batch), the accumulated gradient is the gradient of
 * the whole step's loss over the concatenated chunk features (finite differences, two-view
 * InfoNCE, whose in-batch negatives couple every row), the features equal chunk-by-chunk
 * forwards of the same network, the BN running statistics are those of one forward per
 * chunk, and a budget (--memory) too small for the step in one forward splits it. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg.h"
#include "common/log.h"
#include "common/rng.h"
#include "tests/check_nn_util.h"
#include "trainer/config.h"
#include "trainer/learner.h"

#define IMAGES 6                 /* per step; two views: 12 rows */
#define ROWS (2 * IMAGES)
#define SIZE 8
#define N 40

static int parse(struct trainer_cfg *c, const char *size, const char *micro, const char *memory)
{
    char *argv[] = { "npid-trainer", "--data", "/nonexistent", "--preset", "cifar",
                     "--size", (char *)size, "--stem", "cifar", "--epochs", "1", "--batch", "6",
                     "--threads", "1", "--micro-batch", (char *)micro, "--memory",
                     (char *)memory, NULL };
    return trainer_cfg_parse(c, (int)(sizeof argv / sizeof argv[0]) - 1, argv);
}

struct step_ctx {
    struct learner *l;
    uint8_t pix[ROWS * 3 * SIZE * SIZE];
    float neg[128];
};

static double step_loss(void *p)
{
    struct step_ctx *c = p;
    int finite;
    learner_forward(c->l, c->pix, ROWS);
    return learner_loss(c->l, c->neg, c->neg, NULL, NULL, IMAGES, &finite);
}

static void fill_step(struct step_ctx *c, int dim)
{
    struct rng r;
    rng_seed(&r, 7);
    for (size_t i = 0; i < sizeof c->pix; i++)
        c->pix[i] = (uint8_t)(rng_u64(&r) >> 56);
    fill_normal(c->neg, (size_t)dim, 1.0 / sqrt(dim), 9);
}

START_TEST(test_accumulated_gradient)
{
    struct trainer_cfg cfg;
    ck_assert_int_eq(parse(&cfg, "8", "5", "0"), CFG_OK);
    ck_assert_int_eq(cfg.views, 2);
    struct learner l;
    ck_assert_int_eq(learner_init(&l, &cfg, N), 0);
    ck_assert_int_eq(l.micro, 4); /* 12 rows in forwards of at most 5: three of 4 */
    struct step_ctx *c = calloc(1, sizeof *c);
    c->l = &l;
    fill_step(c, l.dim);
    step_loss(c);
    /* the features are those of separate forwards of each chunk */
    size_t plane = 3 * SIZE * SIZE, d = (size_t)l.dim;
    for (int r0 = 0; r0 < ROWS; r0 += 4) {
        const float *f = net_forward(l.net, l.x + r0 * plane, 4, 1);
        for (size_t i = 0; i < 4 * d; i++)
            ck_assert_msg(f[i] == l.feat[r0 * d + i], "row %zu of chunk %d differs",
                          i / d, r0 / 4);
    }
    step_loss(c);
    size_t nbuf = net_buffer_count(l.net), np = net_param_count(l.net);
    float *before = malloc(nbuf * sizeof(float));
    memcpy(before, net_buffers(l.net), nbuf * sizeof(float));
    learner_backward(&l);
    /* the running statistics: one update per chunk, as three forwards from before give */
    float *after = malloc(nbuf * sizeof(float));
    memcpy(after, net_buffers(l.net), nbuf * sizeof(float));
    memcpy(net_buffers(l.net), before, nbuf * sizeof(float));
    for (int r0 = 0; r0 < ROWS; r0 += 4)
        net_forward(l.net, l.x + r0 * plane, 4, 1);
    for (size_t i = 0; i < nbuf; i++)
        ck_assert_msg(after[i] == net_buffers(l.net)[i], "BN buffer %zu: %g, expected %g", i,
                      after[i], net_buffers(l.net)[i]);
    float *g = malloc(np * sizeof(float));
    memcpy(g, net_grads(l.net), np * sizeof(float));
    double e = gc_rel_error(step_loss, c, net_params(l.net), g, np, 400, 1e-3f);
    ck_assert_msg(e < 6e-2, "accumulated gradient rel err %g", e);
    /* and the features' forward leaves the running statistics as they were */
    memcpy(before, net_buffers(l.net), nbuf * sizeof(float));
    step_loss(c);
    ck_assert(memcmp(before, net_buffers(l.net), nbuf * sizeof(float)) == 0);
    free(g);
    free(after);
    free(before);
    free(c);
    learner_deinit(&l);
}
END_TEST

START_TEST(test_memory_budget)
{
    struct trainer_cfg cfg;
    struct learner l;
    ck_assert_int_eq(parse(&cfg, "32", "0", "0"), CFG_OK);
    ck_assert_int_eq(learner_init(&l, &cfg, N), 0);
    ck_assert_int_eq(l.micro, ROWS); /* the machine holds a 12-row step at 32 px */
    learner_deinit(&l);
    /* what the network of a 12-row step needs (activations most of it at 32 px), then a
       budget of 60 % of it */
    struct net_config nc = { cfg.model, cfg.low_dim, 32, 32, ROWS, cfg.seed, 0, 0, 0 };
    struct net_memory nm;
    ck_assert_int_eq(net_memory(&nc, 1, &nm), 0);
    ck_assert(nm.acts > 0 && nm.params > 0 && nm.total >= nm.acts + 2 * nm.params);
    ck_assert_msg(nm.acts > 10 * nm.params, "acts %zu, params %zu", nm.acts, nm.params);
    char budget[32];
    snprintf(budget, sizeof budget, "%.9f", 0.6 * (double)nm.total / 1e9);
    ck_assert_int_eq(parse(&cfg, "32", "0", budget), CFG_OK);
    ck_assert_int_eq(learner_init(&l, &cfg, N), 0);
    ck_assert_msg(l.micro > 1 && l.micro < ROWS, "micro %d", l.micro);
    learner_deinit(&l);
    /* nothing fits: refused */
    ck_assert_int_eq(parse(&cfg, "32", "0", "0.000001"), CFG_OK);
    ck_assert_int_eq(learner_init(&l, &cfg, N), -1);
    learner_deinit(&l);
}
END_TEST

int main(void)
{
    log_set_level(LOG_LVL_WARN);
    Suite *s = suite_create("learner");
    TCase *tc = tcase_create("accumulation");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_accumulated_gradient);
    tcase_add_test(tc, test_memory_budget);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
