/* The training run's events and metrics.jsonl (see metrics.h). */
#include "trainer/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/event.h"
#include "common/log.h"

struct metrics {
    struct event_pub *ev;
    FILE *file;               /* RUN_DIR/metrics.jsonl, once opened */
    int progress;
    struct stage_times win;
    size_t n;
    uint8_t *seen;            /* (n) this epoch's delivery counts (saturating at 255) */
    uint64_t epoch_images;
    double last_loss;
    double epoch_loss_sum;    /* losses of this epoch's steps run by this process */
    uint64_t epoch_loss_n;
};

struct metrics *metrics_new(const char *events_ep, const char *run, int allow_remote,
                            const struct curve_sock *curve, size_t n, int progress)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (m)
        m->seen = calloc(n ? n : 1, 1);
    if (!m || !m->seen) {
        log_error("out of memory for the metrics of %zu images", n);
        metrics_destroy(&m);
        return NULL;
    }
    m->n = n;
    m->progress = progress;
    m->ev = event_pub_new_curve(events_ep, run, allow_remote, curve);
    if (!m->ev) {
        metrics_destroy(&m);
        return NULL;
    }
    m->win.start = clock_seconds();
    return m;
}

int metrics_open(struct metrics *m, const char *path)
{
    /* an append log: opened where it is, never through a link planted at its name */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    m->file = fd < 0 ? NULL : fdopen(fd, "a");
    if (!m->file) {
        if (fd >= 0)
            close(fd);
        log_error("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

void metrics_destroy(struct metrics **mp)
{
    if (!mp || !*mp)
        return;
    struct metrics *m = *mp;
    if (m->file)
        fclose(m->file);
    event_pub_destroy(&m->ev);
    free(m->seen);
    free(m);
    *mp = NULL;
}

struct stage_times *metrics_window(struct metrics *m) { return &m->win; }

void metrics_delivered(struct metrics *m, const uint32_t *idx, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        m->seen[idx[i]] = 1;
    m->epoch_images += count;
}

void metrics_trained(struct metrics *m, const uint32_t *idx, uint32_t count, double loss)
{
    for (uint32_t i = 0; i < count; i++)
        if (m->seen[idx[i]] < 255)
            m->seen[idx[i]]++;
    m->epoch_images += count;
    m->last_loss = loss;
    m->epoch_loss_sum += loss;
    m->epoch_loss_n++;
}

/* Ends the event being packed: sent, and appended to metrics.jsonl once it is open. */
static void send_event(struct metrics *m)
{
    event_end(m->ev);
    if (m->file)
        event_json_line(m->ev, m->file);
}

void metrics_publish(struct metrics *m, const struct run_pos *pos, double lr, double z,
                     double z_est, const struct taskq_stats *ts)
{
    struct stage_times *w = &m->win;
    if (w->steps == 0)
        return;
    double el = clock_seconds() - w->start;
    double per = 1000.0 / w->steps, ips = el > 0 ? w->images / el : 0;
    msgpack_packer *pk = event_begin(m->ev, "metrics", 20);
    mp_pack_kv_u64(pk, "step", pos->step);
    mp_pack_kv_u64(pk, "epoch", pos->epoch);
    mp_pack_kv_u64(pk, "epoch_step", pos->epoch_step);
    mp_pack_kv_u64(pk, "steps_per_epoch", pos->steps_per_epoch);
    mp_pack_kv_double(pk, "loss", w->loss_sum / w->steps);
    mp_pack_kv_double(pk, "pos_sim", w->pos_sim / w->steps);
    mp_pack_kv_double(pk, "neg_sim", w->neg_sim / w->steps);
    mp_pack_kv_double(pk, "lr", lr);
    mp_pack_kv_double(pk, "z", z);
    mp_pack_kv_double(pk, "z_est", z_est);
    mp_pack_kv_double(pk, "img_s", ips);
    mp_pack_kv_double(pk, "ms_data", w->data * per);
    mp_pack_kv_double(pk, "ms_bank", w->bank * per);
    mp_pack_kv_double(pk, "ms_fwd", w->fwd * per);
    mp_pack_kv_double(pk, "ms_loss", w->loss * per);
    mp_pack_kv_double(pk, "ms_bwd", w->bwd * per);
    mp_pack_kv_double(pk, "ms_sgd", w->sgd * per);
    mp_pack_kv_u64(pk, "loaders", ts->loaders);
    mp_pack_kv_u64(pk, "bad_images", ts->bad_images);
    mp_pack_kv_u64(pk, "reissued", ts->reissued);
    send_event(m);
    if (m->progress && isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r\033[Kepoch %u step %u/%u  loss %.4f  lr %.4g  %.0f img/s  wait: data "
                "%.0f%% bank %.0f%%  loaders %u", pos->epoch, pos->epoch_step,
                pos->steps_per_epoch, w->loss_sum / w->steps, lr, ips,
                el > 0 ? 100 * w->data / el : 0, el > 0 ? 100 * w->bank / el : 0, ts->loaders);
        fflush(stderr);
    }
    memset(w, 0, sizeof *w);
    w->start = clock_seconds();
}

void metrics_epoch(struct metrics *m, const struct run_pos *pos, uint32_t epoch, double secs,
                   size_t expected, int drop_last, const struct taskq_stats *ts)
{
    size_t missing = 0, twice = 0;
    for (size_t i = 0; i < m->n; i++) {
        missing += m->seen[i] == 0;
        twice += m->seen[i] > 1;
    }
    msgpack_packer *pk = event_begin(m->ev, "epoch", 10);
    mp_pack_kv_u64(pk, "epoch", epoch);
    mp_pack_kv_u64(pk, "step", pos->step);
    mp_pack_kv_u64(pk, "images", m->epoch_images);
    mp_pack_kv_u64(pk, "expected", expected);
    mp_pack_kv_u64(pk, "twice", twice);
    mp_pack_kv_u64(pk, "bad_images", ts->bad_images);
    mp_pack_kv_u64(pk, "reissued", ts->reissued);
    mp_pack_kv_double(pk, "loss", m->last_loss);
    mp_pack_kv_double(pk, "loss_mean", m->epoch_loss_n ? m->epoch_loss_sum / (double)m->epoch_loss_n
                                                       : m->last_loss);
    mp_pack_kv_double(pk, "seconds", secs);
    send_event(m);
    if (m->progress && isatty(STDERR_FILENO))
        fputc('\n', stderr);
    log_info("epoch %u done: %" PRIu64 " images trained (%zu expected, %zu never, %zu twice), "
             "%.1f s, %" PRIu64 " tasks re-issued, %" PRIu64 " bad images", epoch, m->epoch_images,
             expected, drop_last ? 0 : missing, twice, secs, ts->reissued, ts->bad_images);
    if (!drop_last && (missing || twice))
        log_error("epoch %u: exactly-once violated: %zu images never trained, %zu twice", epoch,
                  missing, twice);
    memset(m->seen, 0, m->n);
    m->epoch_images = 0;
    m->epoch_loss_sum = 0;
    m->epoch_loss_n = 0;
}

void metrics_checkpoint(struct metrics *m, const struct run_pos *pos, const char *path,
                        const struct ckptr_written *w, const char *why)
{
    msgpack_packer *pk = event_begin(m->ev, "checkpoint", 8);
    mp_pack_kv_u64(pk, "step", pos->step);
    mp_pack_kv_u64(pk, "epoch", pos->epoch);
    mp_pack_kv_u64(pk, "epoch_step", pos->epoch_step);
    mp_pack_kv_str(pk, "path", path);
    mp_pack_kv_str(pk, "sha256", w->sha256);
    mp_pack_kv_u64(pk, "bank_step", w->snap_step);
    mp_pack_kv_str(pk, "bank_snapshot", w->snap);
    mp_pack_kv_str(pk, "reason", why);
    send_event(m);
}

void metrics_end(struct metrics *m, const struct run_pos *pos, const char *status,
                 const char *reason)
{
    msgpack_packer *pk = event_begin(m->ev, "end", 4);
    mp_pack_kv_str(pk, "status", status);
    mp_pack_kv_str(pk, "reason", reason);
    mp_pack_kv_u64(pk, "step", pos->step);
    mp_pack_kv_u64(pk, "epoch", pos->epoch);
    send_event(m);
}
