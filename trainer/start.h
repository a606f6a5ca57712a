/* How a run starts: fresh, or resumed from its checkpoint, with bankd's bank created, found
 * or restored (docs/architecture.md, "Failure semantics").
 *
 * start_bank comes first (before the task socket binds): it resolves --resume auto and
 * creates or finds the run's bank; resuming on a bankd that holds no bank defers the bank to
 * the restore, so a resume that fails leaves bankd as it was. start_position then restores
 * the checkpoint (and checks the restored bank against the run), or checks that the bank is
 * new and runs the in-process start of a fresh run (trainer/warm.h). */
#ifndef NPID_TRAINER_START_H
#define NPID_TRAINER_START_H
#include <stddef.h>
#include <stdint.h>
#include "trainer/bankview.h"
#include "trainer/ckptr.h"
#include "trainer/config.h"
#include "trainer/warm.h"

struct start {
    const struct trainer_cfg *cfg;
    const char *run;          /* the run's name: bankd's bank carries it */
    const char *manifest;     /* the dataset's: bankd's bank carries it */
    size_t n;
    struct bankview *bv;
    struct ckptr *ck;
    /* set by start_bank */
    int resume;               /* continue from the checkpoint */
    int created;              /* bankd created the bank now */
    int deferred;             /* bankd holds no bank: the restore creates it */
    uint64_t bstep;           /* bankd's update count when found */
};

/* s's inputs set (cfg .. ck). 0, or -1 (logged). */
int start_bank(struct start *s);
/* pos (its steps_per_epoch kept): the checkpoint's position, or step 0 after the fresh start
 * over ws. 0, or -1 (logged;
 * the fresh start stopped by a signal included). */
int start_position(struct start *s, const struct warm_src *ws, struct run_pos *pos);
#endif
