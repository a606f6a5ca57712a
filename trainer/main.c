/* npid-trainer: trains the encoder. See trainer/train.h and docs/architecture.md. */
#include <stdio.h>
#include <stdlib.h>

#include "common/blas.h"
#include "common/log.h"
#include "common/sig.h"
#include "trainer/config.h"
#include "trainer/dp.h"
#include "trainer/train.h"

int main(int argc, char **argv)
{
    char prog[48]; /* every rank's lines told apart, from the first */
    dp_log_name("npid-trainer", prog, sizeof prog);
    log_init(prog);
    char **argv0 = blas_argv_copy(argc, argv); /* blas_setup after parsing (common/blas.h) */
    struct trainer_cfg cfg;
    int rc = trainer_cfg_parse(&cfg, argc, argv);
    if (rc != CFG_OK) {
        free(argv0);
        return rc == CFG_HELP ? EXIT_OK : EXIT_USAGE;
    }
    blas_setup(argc, argv0);
    free(argv0); /* blas_setup re-execs or returns: the copy is done with */
    if (dp_init(&argc, &argv) != 0)
        return EXIT_FAIL;
    if (cfg.threads > 0)
        blas_set_threads(cfg.threads);
    if (sig_install() != 0)
        npid_fatal("cannot install signal handlers");
    trainer_cfg_log();
    log_info("BLAS kernel: %s", blas_corename());
    struct trainer *t = trainer_new(&cfg);
    if (!t)
        dp_abort(EXIT_FAIL); /* the other ranks wait for this one: end them too */
    rc = trainer_run(t);
    trainer_destroy(&t);
    if (rc != EXIT_OK)
        dp_abort(rc);
    dp_finalize();
    return rc;
}
