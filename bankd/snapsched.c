/* npid-bankd's snapshot scheduling: see snapsched.h. */
#include "bankd/snapsched.h"

#include "bankd/snapshot.h"
#include "common/clock.h"
#include "common/durable.h"
#include "common/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int snapsched_init(struct snapsched *ss, const char *dir, double every)
{
    memset(ss, 0, sizeof *ss);
    ss->every = every;
    if (!dir || !dir[0])
        return 0;
    if (strlen(dir) >= sizeof ss->dir - 32) {
        log_error("--dir too long");
        return -1;
    }
    snprintf(ss->dir, sizeof ss->dir, "%s", dir);
    return 0;
}

void snapsched_start(struct snapsched *ss)
{
    ss->next = clock_seconds() + ss->every;
}

int snapsched_timeout(const struct snapsched *ss, int cap_ms)
{
    int timeout = cap_ms;
    if (ss->every > 0 && ss->dir[0]) {
        double left = ss->next - clock_seconds();
        if (left * 1000 < timeout)
            timeout = left > 0 ? (int)(left * 1000) + 1 : 0;
    }
    return timeout;
}

/* b differs from the newest bank.snap (or there is none). */
static int snapsched_dirty(const struct snapsched *ss, const struct bank *b)
{
    return b && (!ss->valid || ss->step != b->step || ss->stale);
}

int snapsched_write(struct snapsched *ss, struct bank *b, const struct replies *r,
                    const char *name, size_t name_len, char *path, size_t path_cap,
                    struct bank_err *e)
{
    if (!b)
        return bank_err_set(e, BANK_ENOBANK, "no bank: send init first");
    if (!ss->dir[0])
        return bank_err_set(e, BANK_EINVAL, "snapshots disabled (bankd started without --dir)");
    char file[96];
    if (name)
        snprintf(file, sizeof file, "bank-%.*s.snap", (int)name_len, name);
    else
        snprintf(file, sizeof file, "%s", SNAPSHOT_NAME);
    if (!name)
        snapsched_reap(ss, 1); /* one writer of the file at a time */
    double t0 = clock_seconds();
    if (replies_save(r, b) != 0)
        log_warn("out of memory saving the reply cache; the snapshot holds the bank only");
    int wrc = snapshot_write_as(b, ss->dir, file, path, path_cap);
    free(b->extra);
    b->extra = NULL;
    b->extra_len = 0;
    if (wrc != 0) {
        int err = errno;
        int full = err == ENOSPC || err == EDQUOT || err == EFBIG;
        log_error("snapshot to %s/%s failed: %s%s", ss->dir, file, strerror(err),
                  full ? " (disk full or file size limit); still serving from memory" : "");
        return bank_err_set(e, full ? BANK_ENOSPC : BANK_EIO, "snapshot to %s/%s failed: %s",
                            ss->dir, file, strerror(err));
    }
    if (!name) {
        ss->step = b->step;
        ss->valid = 1;
        ss->stale = 0;
    }
    ss->stat_step = b->step;
    log_info("snapshot step %llu written to %s/%s in %.3f s", (unsigned long long)b->step,
             ss->dir, file, clock_seconds() - t0);
    return 0;
}

/* Periodic snapshots are written by a forked child from a copy-on-write image of the bank,
 * so serving never stops for the disk (a 656 MB bank takes seconds to write and fsync).
 * The child touches nothing but the bank and the file and leaves with _exit: its status is
 * 0 or the errno of the failure. */
static void snapsched_fork(struct snapsched *ss, struct bank *b, const struct replies *r)
{
    double t0 = clock_seconds();
    pid_t pid = fork();
    if (pid < 0) {
        log_warn("cannot fork a snapshot writer (%s); writing in the foreground", strerror(errno));
        struct bank_err e;
        snapsched_write(ss, b, r, NULL, 0, NULL, 0, &e);
        return;
    }
    if (pid == 0) {
        /* die with the daemon, and hold none of its sockets (a restarted bankd must be able
         * to bind while an orphaned writer would still be running) */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close_range(3, ~0u, 0);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_IGN);
        replies_save(r, b); /* without it on failure: the bank still matters */
        int rc = snapshot_write(b, ss->dir, NULL, 0);
        _exit(rc == 0 ? 0 : (errno > 0 && errno < 256 ? errno : EIO));
    }
    ss->child = pid;
    ss->child_step = b->step;
    ss->child_stale = ss->stale;
    ss->stale = 0;
    ss->child_t0 = t0;
    log_debug("snapshot writer %d started for step %llu (fork took %.3f s)", (int)pid,
              (unsigned long long)ss->child_step, clock_seconds() - t0);
}

void snapsched_reap(struct snapsched *ss, int block)
{
    if (!ss->child)
        return;
    int st;
    pid_t r;
    do
        r = waitpid(ss->child, &st, block ? 0 : WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return;
    ss->child = 0;
    if (r > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        ss->step = ss->child_step;
        ss->valid = 1;
        ss->stat_step = ss->child_step;
        log_info("snapshot step %llu written to %s/%s in %.3f s (background)",
                 (unsigned long long)ss->step, ss->dir, SNAPSHOT_NAME,
                 clock_seconds() - ss->child_t0);
        return;
    }
    int err = r > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : EIO;
    int full = err == ENOSPC || err == EDQUOT || err == EFBIG;
    ss->stale |= ss->child_stale;
    log_error("background snapshot to %s failed: %s%s", ss->dir,
              r > 0 && WIFSIGNALED(st) ? "writer killed by a signal" : strerror(err),
              full ? " (disk full or file size limit); still serving from memory" : "");
}

void snapsched_tick(struct snapsched *ss, struct bank *b, const struct replies *r)
{
    snapsched_reap(ss, 0);
    if (ss->every > 0 && ss->dir[0] && clock_seconds() >= ss->next) {
        if (snapsched_dirty(ss, b) && !ss->child)
            snapsched_fork(ss, b, r);
        ss->next = clock_seconds() + ss->every;
    }
}

int snapsched_final(struct snapsched *ss, struct bank *b, const struct replies *r)
{
    snapsched_reap(ss, 1);
    if (snapsched_dirty(ss, b) && ss->dir[0]) {
        struct bank_err e;
        if (snapsched_write(ss, b, r, NULL, 0, NULL, 0, &e) != 0) {
            log_error("final snapshot failed: %s", e.msg);
            return -1;
        }
    }
    return 0;
}

void snapsched_abandon_newer(const struct snapsched *ss, uint64_t step)
{
    static const char *const names[] = { SNAPSHOT_NAME, SNAPSHOT_NAME ".prev" };
    int renamed = 0;
    char file[PATH_MAX + 32]; /* after the loop a file in DIR, for durable_sync_dir */
    for (int i = 0; i < 2; i++) {
        char to[PATH_MAX + 48];
        snprintf(file, sizeof file, "%s/%s", ss->dir, names[i]);
        struct snapshot_info info;
        const char *why;
        if (snapshot_peek(file, &info, &why) != 0 || info.step < step)
            continue;
        snprintf(to, sizeof to, "%s.abandoned", file);
        if (rename(file, to) != 0) {
            log_warn("cannot rename %s to %s: %s", file, to, strerror(errno));
            continue;
        }
        renamed = 1;
        log_info("%s holds step %llu, not older than the restored step %llu: renamed to %s",
                 file, (unsigned long long)info.step, (unsigned long long)step, to);
    }
    if (renamed && durable_sync_dir(file) != 0)
        log_warn("cannot fsync %s: %s", ss->dir, strerror(errno));
}
