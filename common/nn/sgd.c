/* SGD with momentum and learning-rate schedules (see sgd.h). */
#include "common/nn/sgd.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "common/nn/tensor.h"

struct sgd *sgd_new(size_t n, float momentum, float weight_decay)
{
    struct sgd *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->n = n;
    s->momentum = momentum;
    s->wd = weight_decay;
    s->buf = nn_alloc(n);
    if (!s->buf) {
        free(s);
        return NULL;
    }
    return s;
}

void sgd_destroy(struct sgd **sp)
{
    if (!sp || !*sp) return;
    nn_free((*sp)->buf);
    free(*sp);
    *sp = NULL;
}

void sgd_step(struct sgd *s, float *w, const float *g, float lr)
{
    float mu = s->momentum, wd = s->wd;
    float *buf = s->buf;
    for (size_t i = 0; i < s->n; i++) {
        float d = g[i] + wd * w[i];
        float b = mu * buf[i] + d;
        buf[i] = b;
        w[i] -= lr * b;
    }
}

double lr_at(const struct lr_schedule *s, double epoch)
{
    double lr;
    if (s->kind == LR_COSINE) {
        double t = s->epochs > 0 ? epoch / s->epochs : 1.0;
        if (t < 0) t = 0;
        if (t > 1) t = 1;
        lr = s->min + (s->base - s->min) * 0.5 * (1.0 + cos(M_PI * t));
    } else {
        lr = s->base;
        for (int i = 0; i < s->n_milestones; i++)
            if (epoch >= s->milestones[i]) lr *= s->gamma;
    }
    if (s->warmup > 0 && epoch < s->warmup) lr *= (epoch > 0 ? epoch : 0) / s->warmup;
    return lr;
}

int lr_parse_milestones(struct lr_schedule *s, const char *text)
{
    s->n_milestones = 0;
    const char *p = text;
    while (p && *p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || v < 0) return -1;
        if (s->n_milestones == LR_MAX_MILESTONES) return -1;
        if (s->n_milestones && v <= s->milestones[s->n_milestones - 1]) return -1;
        s->milestones[s->n_milestones++] = v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return 0;
}
