/* When npid-bankd writes its snapshots: DIR/bank.snap every `every` seconds when the bank
 * changed since the last one, written by a forked child so that serving never stops for the
 * disk; named snapshots on request; a final one at stop. Each snapshot carries the reply
 * cache (replies.h) in the bank's extra section. A failed write is logged and leaves the
 * bank serving from memory.
 *
 * The server owns the struct and sets step, valid, stale and stat_step itself when it loads,
 * creates, changes or replaces the bank other than by a step. */
#ifndef NPID_BANKD_SNAPSCHED_H
#define NPID_BANKD_SNAPSCHED_H

#include "bankd/bank.h"
#include "bankd/replies.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct snapsched {
    char dir[PATH_MAX];        /* snapshot directory; "": snapshots disabled */
    double every;              /* seconds between periodic snapshots (0: off) */
    uint64_t step;             /* bank step of the last bank.snap written or loaded */
    int valid;                 /* a bank.snap of the current bank exists */
    uint64_t stat_step;        /* step of the newest snapshot of any name written or loaded
                                  (stats snapshot_step; 0: none) */
    int stale;                 /* bank.snap lacks a change the step does not show (run or
                                  manifest adopted, bank restored) */
    double next;               /* clock_seconds() of the next periodic snapshot */
    pid_t child;               /* background snapshot writer, 0 when none */
    uint64_t child_step;       /* the step it is writing */
    int child_stale;           /* stale when it was forked */
    double child_t0;
};

/* Sets the directory (NULL or "": snapshots disabled) and the period (seconds; 0: no
 * periodic snapshots), with nothing written yet. 0, or -1 when dir is too long (logged). */
int snapsched_init(struct snapsched *ss, const char *dir, double every);
/* Starts the period: the first periodic snapshot is due `every` seconds from now. */
void snapsched_start(struct snapsched *ss);
/* Milliseconds until the next periodic snapshot is due, at most cap_ms (0: due now). */
int snapsched_timeout(const struct snapsched *ss, int cap_ms);
/* Collects a finished background writer; when a periodic snapshot is due, forks one for b
 * (b and r as they are now) if b changed since the last and none runs (b may be NULL). */
void snapsched_tick(struct snapsched *ss, struct bank *b, const struct replies *r);
/* Collects a finished background writer, or waits for it with block. */
void snapsched_reap(struct snapsched *ss, int block);

/* Writes b with r in the foreground: DIR/bank.snap, or DIR/bank-<name>.snap when name is
 * given (those do not count as the daemon's own snapshot: bank.snap is still written when
 * the bank changed); path (may be NULL) receives the file's path. 0, or -1 with e filled
 * (ENOBANK for no b, EINVAL without a directory, ENOSPC / EIO) and a write failure logged. */
int snapsched_write(struct snapsched *ss, struct bank *b, const struct replies *r,
                    const char *name, size_t name_len, char *path, size_t path_cap,
                    struct bank_err *e);
/* At stop: waits for a background writer, then writes DIR/bank.snap when b changed since
 * the last one. 0, or -1 when that write failed (logged). */
int snapsched_final(struct snapsched *ss, struct bank *b, const struct replies *r);

/* Renames DIR/bank.snap and DIR/bank.snap.prev to *.abandoned when their step is >= step:
 * after a restore to step they hold a future that was given up, and bankd would otherwise
 * load them at its next start (it loads the highest step). The caller reaped the writer. */
void snapsched_abandon_newer(const struct snapsched *ss, uint64_t step);

#endif
