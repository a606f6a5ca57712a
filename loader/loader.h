/* npid-loader's subcommands, each a function returning the process exit status
 * (EXIT_OK, EXIT_FAIL, EXIT_USAGE). argv[0] is the subcommand name; options are parsed with
 * common/cfg.h inside each. */
#ifndef NPID_LOADER_H
#define NPID_LOADER_H

/* The loader process: connects to the trainer's task endpoint, announces its dataset, and
 * turns tasks into batches until SIGTERM/SIGINT or a refusal (loader/worker.c). */
int loader_worker_main(int argc, char **argv);
/* Writes a procedurally generated ImageFolder dataset of JPEGs (loader/synth.c). */
int loader_synth_main(int argc, char **argv);
/* A stand-in trainer built on common/taskq: plans epochs, receives every batch in order and
 * verifies exactly-once delivery; prints one JSON summary line (loader/consume.c). */
int loader_consume_main(int argc, char **argv);
/* Decodes every image of a dataset and reports the ones that fail (loader/tools.c). */
int loader_check_main(int argc, char **argv);
/* Test hook: applies deterministic augmentation primitives to a stream of raw RGB requests
 * on stdin (loader/tools.c; used by tests/it_loader_pil.sh to compare with Pillow). */
int loader_pixop_main(int argc, char **argv);

#endif
