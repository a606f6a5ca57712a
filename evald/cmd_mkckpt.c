/* npid-evald mkckpt: a checkpoint of an untrained (seeded) network in the trainer's format
 * (common/ckpt.h), for smoke tests and the untrained baseline. */
#include "evald/evald.h"

#include "common/ckpt.h"
#include "common/log.h"
#include "common/nn/net.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int evald_mkckpt_main(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args)
{
    (void)opts, (void)nargs, (void)args; /* extra arguments are ignored */
    if (!o->out || strcmp(o->out, "-") == 0) {
        fprintf(stderr, "npid-evald mkckpt: give --out PATH\n");
        return EXIT_USAGE;
    }
    struct net_config nc = { o->model, o->low_dim, o->size, o->size, 1, o->seed, NET_INIT_HE,
                             NET_STEM_CIFAR, 0 };
    struct net *n = net_new(&nc);
    if (!n) {
        log_error("mkckpt: cannot build %s", o->model);
        return EXIT_FAIL;
    }
    char config[512];
    snprintf(config, sizeof config,
             "{\"model\":\"%s\",\"low-dim\":%d,\"size\":%d,\"stem\":\"cifar\",\"aug\":\"%s\","
             "\"seed\":%" PRIu64 ",\"run\":\"mkckpt\"}", o->model, o->low_dim, o->size, o->aug,
             o->seed);
    struct ckpt c;
    memset(&c, 0, sizeof c);
    c.model = (struct ckpt_model){ "", (uint32_t)o->low_dim, (uint32_t)o->size, NET_STEM_CIFAR, 0 };
    snprintf(c.model.name, sizeof c.model.name, "%s", o->model);
    c.config = config;
    c.bank_path = "";
    c.step = o->step;
    c.z = 0;
    c.n_params = net_param_count(n);
    c.params = net_params(n);
    c.n_buffers = net_buffer_count(n);
    c.buffers = net_buffers(n);
    int rc = ckpt_save(o->out, &c);
    if (rc != 0)
        log_error("mkckpt: %s: %s", o->out, strerror(errno));
    else
        log_info("mkckpt: %s (%s, step %" PRIu64 ")", o->out, net_describe(n), o->step);
    net_destroy(&n);
    return rc == 0 ? EXIT_OK : EXIT_FAIL;
}
