/* The trainer's checkpoints: RUN_DIR/checkpoints/trainer.ckpt (and its .prev), each paired
 * with the bank snapshot bankd writes for it (bank-trainer.snap), the unpaired weights of a
 * stop that cannot pair them (trainer.unpaired.ckpt), the per-epoch copies of --keep-epochs
 * (epoch-NNN.ckpt with bank-epoch-NNN.snap), and the restore of all of it (docs/formats.md).
 *
 * A snapshot request needs the bank connection idle: collect an outstanding sample first. */
#ifndef NPID_TRAINER_CKPTR_H
#define NPID_TRAINER_CKPTR_H

#include <stdint.h>

#include "common/ckpt.h"
#include "common/nn/net.h"
#include "common/nn/sgd.h"
#include "trainer/bankview.h"
#include "trainer/objective.h"
#include "trainer/plan.h"

/* What a checkpoint holds; owned by the caller, read at every save, written by a restore. */
struct ckptr_parts {
    struct net *net;
    struct sgd *opt;
    struct objective *obj;
    struct bankview *bv;      /* snapshots and restores go through its client */
    const char *config_json;  /* the run's configuration, recorded as is */
    uint64_t seed;
    struct ckpt_model model;  /* what net was built with; a restore refuses any other */
};

/* The position a checkpoint records: the next step to run. */
/* What a save wrote. */
struct ckptr_written {
    char sha256[65];          /* of the checkpoint file ("unknown" when it cannot be read) */
    char snap[4096];          /* the paired bank snapshot's path */
    uint64_t snap_step;       /* bankd's update count in it */
};

struct ckptr;

/* Checkpoints under RUN_DIR/checkpoints (the directory must exist). NULL on ENOMEM. */
struct ckptr *ckptr_new(const char *run_dir, const struct ckptr_parts *p);
void ckptr_destroy(struct ckptr **c);

const char *ckptr_path(const struct ckptr *c);
/* 1 when trainer.ckpt or its .prev is there to resume from (--resume auto). */
int ckptr_present(const struct ckptr *c);
/* Saves failed since the last good one; the step of the last good one (0: none yet). */
uint64_t ckptr_failures(const struct ckptr *c);
uint64_t ckptr_good_step(const struct ckptr *c);

/* Has bankd snapshot the bank, then writes the checkpoint paired with it (durably, the
 * previous one kept as .prev). While saves fail, the snapshot goes under another name so the
 * one paired with the last good checkpoint is never rotated away. 0, or -1 (logged). */
int ckptr_save(struct ckptr *c, const struct run_pos *pos, const char *why,
               struct ckptr_written *out);
/* Keeps the weights with no bank snapshot (bankd gone, a signal inside a bank update):
 * trainer.unpaired.ckpt; the paired checkpoint is left as it is. Failures are logged. */
void ckptr_save_unpaired(struct ckptr *c, const struct run_pos *pos);
/* --keep-epochs: copies the checkpoint just written to epoch-NNN.ckpt and has bankd write
 * bank-epoch-NNN.snap. 0 or -1. */
int ckptr_keep_epoch(struct ckptr *c, uint32_t epoch);
/* Restores weights, optimiser, Z and *pos from the newest readable checkpoint, and the
 * paired bank snapshot into bankd when bankd is not at its update count (or holds no bank);
 * sets the bank view's step. 0, or -1 (logged). */
int ckptr_restore(struct ckptr *c, struct run_pos *pos);

#endif
