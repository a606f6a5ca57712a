/* How a run starts: see start.h. */
#include "trainer/start.h"

#include <inttypes.h>
#include <string.h>

#include "common/log.h"

int start_bank(struct start *s)
{
    const struct trainer_cfg *cfg = s->cfg;
    struct bankc *bank = bankview_client(s->bv);
    s->resume = cfg->resume == 1;
    if (cfg->resume == CFG_AUTO_VALUE) {
        /* auto: resume exactly when a checkpoint (or its .prev) is there to resume from */
        s->resume = ckptr_present(s->ck);
        log_info(s->resume ? "resume auto: %s holds a checkpoint; continuing the run"
                           : "resume auto: no checkpoint in %s; starting a fresh run",
                 cfg->run_dir);
    }
    struct bankc_info binfo;
    s->created = 0;
    s->bstep = 0;
    s->deferred = s->resume && bankc_info(bank, &binfo) != 0 &&
                  strcmp(bankc_error_code(bank), "ENOBANK") == 0;
    log_info("bank: connecting to %s (%zu x %d)", cfg->bank_ep, s->n, cfg->low_dim);
    if (s->deferred) {
        log_info("bank: bankd holds none; the resume restores it from the checkpoint's snapshot");
        return 0;
    }
    if (bankc_init(bank, s->n, (uint64_t)cfg->low_dim, cfg->seed, s->run, s->manifest,
                   &s->created, &s->bstep) != 0) {
        log_error("bank: init failed: %s", bankc_error(bank));
        return -1;
    }
    bankview_set_step(s->bv, s->bstep);
    log_info("bank: %s, at update %" PRIu64, s->created ? "created" : "exists", s->bstep);
    return 0;
}

int start_position(struct start *s, const struct warm_src *ws, struct run_pos *pos)
{
    const struct trainer_cfg *cfg = s->cfg;
    struct bankc *bank = bankview_client(s->bv);
    if (s->resume) {
        if (ckptr_restore(s->ck, pos) != 0)
            return -1;
        if (s->deferred && bankc_init(bank, s->n, (uint64_t)cfg->low_dim, cfg->seed, s->run,
                                      s->manifest, &s->created, &s->bstep) != 0) {
            log_error("bank: the restored bank does not fit this run: %s", bankc_error(bank));
            return -1;
        }
        return 0;
    }
    if (!s->created && s->bstep != 0) {
        log_error("bank: bankd already holds this run's bank at update %" PRIu64 "; pass --resume "
                  "to continue the run, or start bankd with an empty --dir for a new one",
                  s->bstep);
        return -1;
    }
    pos->step = 0;
    pos->epoch = pos->epoch_step = 0;
    if (cfg->center_init && warm_center(ws) != 0)
        return -1;
    if (!strcmp(cfg->bank_init, "warm") && warm_bank(ws, s->bv) != 0)
        return -1;
    return 0;
}
