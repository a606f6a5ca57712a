/* npid-mkckpt: a checkpoint of an untrained (seeded) network in the trainer's format
 * (common/ckpt.h, docs/formats.md), for tests and the one-step parity check.
 *
 *   npid-mkckpt --out P [--model M --stem S --low-dim D --size S --aug A --seed N --step N]
 * The weights are drawn as the trainer's --init he draws them (NET_INIT_HE). */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/cfg.h"
#include "common/ckpt.h"
#include "common/log.h"
#include "common/nn/net.h"

int main(int argc, char **argv)
{
    const char *out, *model, *stem, *aug, *level;
    int low_dim, size;
    uint64_t seed, step;
    struct cfg_opt opts[] = {
        { "out", NULL, CFG_STR, &out, NULL, 0, 0, "the checkpoint file to write", 0 },
        { "model", NULL, CFG_STR, &model, "resnet18", 0, 0, "network preset", 0 },
        { "stem", NULL, CFG_STR, &stem, "cifar", 0, 0, "cifar | s2 | s4 | imagenet (net.h)", 0 },
        { "low-dim", NULL, CFG_INT, &low_dim, "128", 1, 4096, "feature dimension", 0 },
        { "size", NULL, CFG_INT, &size, "32", 8, 1024, "image size", 0 },
        { "aug", NULL, CFG_STR, &aug, "cifar", 0, 0, "augmentation preset (the test transform evald uses)", 0 },
        { "seed", NULL, CFG_U64, &seed, "0", 0, 0, "weight seed", 0 },
        { "step", NULL, CFG_U64, &step, "0", 0, 0, "step recorded in the checkpoint", 0 },
        { "log-level", "NPID_LOG_LEVEL", CFG_STR, &level, "info", 0, 0, "debug, info, warn or error", 0 },
        { 0 }
    };
    log_init("npid-mkckpt");
    int npos;
    int rc = cfg_parse("npid-mkckpt", "--out P [options]", opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    if (npos > 0) {
        fprintf(stderr, "npid-mkckpt: unexpected argument '%s'\n", argv[1]);
        return EXIT_USAGE;
    }
    int lvl = log_level_parse(level);
    if (lvl < 0) {
        fprintf(stderr, "npid-mkckpt: --log-level: unknown level '%s'\n", level);
        return EXIT_USAGE;
    }
    log_set_level(lvl);
    if (!out || !*out || strcmp(out, "-") == 0) {
        fprintf(stderr, "npid-mkckpt: give --out PATH\n");
        return EXIT_USAGE;
    }
    int st = net_stem_parse(stem);
    if (st < 0) {
        fprintf(stderr, "npid-mkckpt: --stem: unknown stem '%s' (cifar, s2, s4, imagenet)\n", stem);
        return EXIT_USAGE;
    }
    struct net_config nc = { model, low_dim, size, size, 1, seed, NET_INIT_HE, st, 0 };
    struct net *n = net_new(&nc);
    if (!n) {
        log_error("npid-mkckpt: cannot build %s", model);
        return EXIT_FAIL;
    }
    char config[512];
    snprintf(config, sizeof config,
             "{\"model\":\"%s\",\"low-dim\":%d,\"size\":%d,\"stem\":\"%s\",\"aug\":\"%s\","
             "\"seed\":%" PRIu64 ",\"run\":\"mkckpt\"}", model, low_dim, size, net_stem_name(st),
             aug, seed);
    struct ckpt c;
    memset(&c, 0, sizeof c);
    c.model = (struct ckpt_model){ "", (uint32_t)low_dim, (uint32_t)size, (uint32_t)st, 0 };
    snprintf(c.model.name, sizeof c.model.name, "%s", model);
    c.config = config;
    c.bank_path = "";
    c.step = step;
    c.n_params = net_param_count(n);
    c.params = net_params(n);
    c.n_buffers = net_buffer_count(n);
    c.buffers = net_buffers(n);
    rc = ckpt_save(out, &c);
    if (rc != 0)
        log_error("npid-mkckpt: %s: %s", out, strerror(errno));
    else
        log_info("npid-mkckpt: %s (%s, step %" PRIu64 ")", out, net_describe(n), step);
    net_destroy(&n);
    return rc == 0 ? EXIT_OK : EXIT_FAIL;
}
