/* npid-trainer _step: one training step from a checkpoint on given inputs (see step.c). */
#ifndef NPID_TRAINER_STEP_H
#define NPID_TRAINER_STEP_H

/* argv[0] is "_step". Returns the process exit code. */
int trainer_step_main(int argc, char **argv);

#endif
