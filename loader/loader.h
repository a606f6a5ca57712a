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
/* Decodes every image of a dataset and reports the ones that fail (loader/check.c). */
int loader_check_main(int argc, char **argv);

#endif
