/* The training run: wires the dataset index, the task dispatcher (loaders), the bank client
 * (bankd), the network, the objective and SGD into the step loop, with checkpoints, resume,
 * events and metrics.
 *
 * One step (docs/architecture.md): take the next batch in step order from the loaders,
 * normalise, forward, collect the step's bank sample (requested before the forward), loss
 * and dL/df, send the bank update and then the next step's sample request, backward, SGD.
 * Negative indices are drawn by the trainer from rng_derive(seed, "neg", step), so a resumed
 * run draws the same negatives; bankd is asked for the rows of those indices and of the
 * batch's own indices. */
#ifndef NPID_TRAINER_TRAIN_H
#define NPID_TRAINER_TRAIN_H

#include "trainer/config.h"

struct trainer;

/* Opens the dataset, connects to bankd, creates or checks the bank, builds the network and
 * binds the task and event endpoints; restores the last checkpoint when cfg->resume. NULL on
 * failure, with the reason logged. */
struct trainer *trainer_new(const struct trainer_cfg *cfg);
void trainer_destroy(struct trainer **t);

/* Runs until the configured epochs (or --max-steps) are done, or sig_stop. Returns
 * EXIT_OK (done or stopped cleanly with a checkpoint) or EXIT_FAIL (a NaN loss, a lost
 * bank, a fatal loader error; the last good checkpoint stays). */
int trainer_run(struct trainer *t);

#endif
