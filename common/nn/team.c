/* Thread team (see team.h). Work is handed out with a generation counter under a mutex;
 * idle workers sleep on a condition variable, and the in-run barrier is a pthread barrier,
 * so no thread spins. */
#include "common/nn/team.h"

#include <pthread.h>
#include <stdlib.h>

struct nn_worker { struct nn_team *t; int tid; };

struct nn_team {
    int n, started, stop, pending;
    unsigned long gen;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_barrier_t sync;
    void (*fn)(void *, int);
    void *arg;
    pthread_t *th;
    struct nn_worker *w;
};

static void *nn_team_loop(void *p)
{
    struct nn_worker *w = p;
    struct nn_team *t = w->t;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&t->mu);
        while (t->gen == seen && !t->stop) pthread_cond_wait(&t->go, &t->mu);
        if (t->stop) {
            pthread_mutex_unlock(&t->mu);
            return NULL;
        }
        seen = t->gen;
        pthread_mutex_unlock(&t->mu);
        t->fn(t->arg, w->tid);
        pthread_mutex_lock(&t->mu);
        if (--t->pending == 0) pthread_cond_signal(&t->done);
        pthread_mutex_unlock(&t->mu);
    }
}

struct nn_team *nn_team_new(int n)
{
    if (n < 1) return NULL;
    struct nn_team *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->n = n;
    t->th = calloc((size_t)n, sizeof(*t->th));
    t->w = calloc((size_t)n, sizeof(*t->w));
    if (!t->th || !t->w || pthread_barrier_init(&t->sync, NULL, (unsigned)n) != 0) {
        free(t->th);
        free(t->w);
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->go, NULL);
    pthread_cond_init(&t->done, NULL);
    t->started = 1;
    for (int i = 1; i < n; i++) {
        t->w[i].t = t;
        t->w[i].tid = i;
        if (pthread_create(&t->th[i], NULL, nn_team_loop, &t->w[i]) != 0) {
            nn_team_destroy(&t);
            return NULL;
        }
        t->started = i + 1;
    }
    return t;
}

void nn_team_destroy(struct nn_team **tp)
{
    if (!tp || !*tp) return;
    struct nn_team *t = *tp;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    for (int i = 1; i < t->started; i++) pthread_join(t->th[i], NULL);
    pthread_barrier_destroy(&t->sync);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->go);
    pthread_cond_destroy(&t->done);
    free(t->th);
    free(t->w);
    free(t);
    *tp = NULL;
}

void nn_team_run(struct nn_team *t, void (*fn)(void *arg, int tid), void *arg)
{
    if (t->n == 1) {
        fn(arg, 0);
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->arg = arg;
    t->pending = t->n - 1;
    t->gen++;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    fn(arg, 0);
    pthread_mutex_lock(&t->mu);
    while (t->pending > 0) pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

int nn_team_size(const struct nn_team *t)
{
    return t ? t->n : 1;
}

void nn_team_barrier(struct nn_team *t)
{
    if (t && t->n > 1) pthread_barrier_wait(&t->sync);
}
