/* npid-consume: a stand-in trainer built on the trainer's task dispatcher (trainer/taskq.h),
 * for tests and benchmarks (built by `make check` and `make bench`, not installed).
 *
 * It plans epochs with the trainer's own planner (trainer/plan.h), so for the same dataset,
 * batch size, seed and drop-last its batches hold exactly the images npid-trainer's would;
 * it takes every batch from taskq_next and checks what the real trainer relies on: steps
 * arrive in order, each planned index exactly once per epoch, labels equal the dataset's,
 * pixel counts right. It folds (epoch, step, indices, pixels) of every batch into a CRC-32C,
 * which depends only on the data, the plan and the augmentation seed (not on how many
 * loaders ran or which of them died), so runs can be compared. With --views 2 the CRC folds
 * view 0 only (equal to the one-view run's) and view1_crc the second views, with
 * views_identical the number of images whose two views are byte-equal. One JSON summary line
 * goes to stdout; the exit status is 0 only when every check passed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cfg.h"
#include "common/clock.h"
#include "common/dataset.h"
#include "common/durable.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/proto_task.h"
#include "common/sig.h"
#include "trainer/plan.h"
#include "trainer/taskq.h"

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !sig_stop)
        ;
}

int main(int argc, char **argv)
{
    log_init("npid-consume");
    const char *data, *split, *bind, *preset, *aug, *layout_s, *level;
    uint64_t epochs, batch, seed, size, window, deadline_ms, loader_timeout_ms, max_attempts,
        images, first_step, step_ms, wait_loaders, views;
    double timeout_s;
    int allow_remote, drop_last, exit_refused, train, quiet_batches;
    struct cfg_opt opts[] = {
        { "data", "NPID_DATA", CFG_STR, &data, NULL, 0, 0, "dataset root (for the manifest and labels)", 0 },
        { "split", NULL, CFG_STR, &split, "train", 0, 0, "split: train or test", 0 },
        { "bind", "NPID_TASKS", CFG_STR, &bind, "tcp://127.0.0.1:5558", 0, 0, "task endpoint to bind (default port: NPID_PORT_BASE + 1)", 0 },
        { "allow-remote", "NPID_ALLOW_REMOTE", CFG_BOOL, &allow_remote, "0", 0, 0,
          "allow binding a non-loopback address", 0 },
        { "epochs", NULL, CFG_U64, &epochs, "1", 1, 1000000, "epochs to run", 0 },
        { "batch", NULL, CFG_U64, &batch, "128", 1, 65536, "batch size", 0 },
        { "images", NULL, CFG_U64, &images, "0", 0, 0,
          "use only the first N images of the dataset (0: all)", 0 },
        { "first-step", NULL, CFG_U64, &first_step, "0", 0, 4294967295.0,
          "start the first epoch at this step (resume)", 0 },
        { "seed", NULL, CFG_U64, &seed, "1", 0, 0, "plan and augmentation seed", 0 },
        { "preset", NULL, CFG_STR, &preset, "cifar", 0, 0, "augmentation preset: cifar, imagenet, none", 0 },
        { "aug", NULL, CFG_STR, &aug, "", 0, 0, "override of the preset's train transform, e.g. crop=0.08-1,jitter=0.4/0.4/0.4/0.1,gray=0.2,flip=1", 0 },
        { "train", NULL, CFG_BOOL, &train, "1", 0, 0, "train transform (--no-train: test transform)", 0 },
        { "size", NULL, CFG_U64, &size, "32", 1, 4096, "output side", 0 },
        { "views", NULL, CFG_U64, &views, "1", 1, TASK_MAX_VIEWS, "augmented views per image", 0 },
        { "layout", NULL, CFG_STR, &layout_s, "chw", 0, 0, "chw or hwc", 0 },
        { "window", NULL, CFG_U64, &window, "8", 1, 4096, "steps in flight", 0 },
        { "deadline-ms", NULL, CFG_U64, &deadline_ms, "30000", 1, 1e9, "task deadline", 0 },
        { "loader-timeout-ms", NULL, CFG_U64, &loader_timeout_ms, "3000", 1, 1e9,
          "loader silence before it is dropped", 0 },
        { "max-attempts", NULL, CFG_U64, &max_attempts, "10", 1, 1e6, "issues per step before failing", 0 },
        { "drop-last", NULL, CFG_BOOL, &drop_last, "0", 0, 0, "drop the last partial batch", 0 },
        { "step-ms", NULL, CFG_U64, &step_ms, "0", 0, 1e7,
          "simulated training time per batch (away from the socket)", 0 },
        { "wait-loaders", NULL, CFG_U64, &wait_loaders, "0", 0, 1e6,
          "wait for this many loaders before planning (timing starts then)", 0 },
        { "timeout-s", NULL, CFG_DOUBLE, &timeout_s, "300", 0.1, 1e9, "give up after this long", 0 },
        { "exit-when-refused", NULL, CFG_BOOL, &exit_refused, "0", 0, 0,
          "stop (successfully) as soon as a loader has been refused", 0 },
        { "quiet-batches", NULL, CFG_BOOL, &quiet_batches, "1", 0, 0,
          "do not log each batch (--no-quiet-batches: one debug line per batch)", 0 },
        { "log-level", "NPID_LOG_LEVEL", CFG_STR, &level, "info", 0, 0, "debug, info, warn or error", 0 },
        { 0 }
    };
    int npos;
    static char ep_def[32];
    if (cfg_endpoint_default(opts, "bind", 1, "npid-consume", ep_def, sizeof ep_def) != 0)
        return EXIT_USAGE;
    int rc = cfg_parse("npid-consume", "--data DIR [options]", opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    if (npos > 0) {
        fprintf(stderr, "npid-consume: unexpected argument '%s'\n", argv[1]);
        return EXIT_USAGE;
    }
    int lvl = log_level_parse(level);
    if (lvl < 0) {
        fprintf(stderr, "npid-consume: --log-level: unknown level '%s'\n", level);
        return EXIT_USAGE;
    }
    log_set_level(lvl);
    enum augment_layout layout;
    if (strcmp(layout_s, "chw") == 0)
        layout = AUGMENT_CHW;
    else if (strcmp(layout_s, "hwc") == 0)
        layout = AUGMENT_HWC;
    else {
        fprintf(stderr, "npid-consume: --layout must be chw or hwc\n");
        return EXIT_USAGE;
    }
    if (!data || !*data) {
        fprintf(stderr, "npid-consume: --data DIR is required\n");
        return EXIT_USAGE;
    }
    if (sig_install() != 0)
        npid_fatal("cannot install signal handlers");

    int status = EXIT_FAIL;
    char err[DATASET_ERR_LEN];
    struct taskq *tq = NULL;
    struct plan plan = { 0 };
    uint8_t *seen = NULL;
    struct dataset *ds = dataset_open(data, split, err, sizeof err);
    if (!ds) {
        log_error("%s", err);
        return EXIT_FAIL;
    }
    size_t n = dataset_count(ds);
    if (images && images < n)
        n = (size_t)images;
    struct taskq_opts o;
    taskq_opts_default(&o);
    o.window = (uint32_t)window;
    o.deadline_ms = (uint32_t)deadline_ms;
    o.loader_timeout_ms = (uint32_t)loader_timeout_ms;
    o.max_attempts = (uint32_t)max_attempts;
    o.drop_last = drop_last;
    o.preset = preset;
    o.aug = aug;
    o.train = train;
    o.size = (uint32_t)size;
    o.layout = layout;
    o.views = (uint32_t)views;
    o.allow_remote = allow_remote;
    o.stop = &sig_stop;
    tq = taskq_new(bind, dataset_manifest(ds), &o, err, sizeof err);
    if (!tq) {
        log_error("%s", err);
        goto out;
    }
    log_info("serving tasks on %s: %zu images, batch %llu, %llu epoch(s)", taskq_endpoint(tq), n,
             (unsigned long long)batch, (unsigned long long)epochs);
    if (plan_init(&plan, n, (uint32_t)batch, seed, drop_last) != 0) {
        log_error("cannot plan %zu images in batches of %llu: %s", n, (unsigned long long)batch,
                  strerror(errno));
        goto out;
    }
    seen = malloc(n);
    if (!seen) {
        log_error("out of memory");
        goto out;
    }
    uint64_t t_start = clock_now_ns();
    uint64_t limit = t_start + (uint64_t)(timeout_s * 1e9);
    struct taskq_batch b;
    struct taskq_stats st;
    int refused_stop = 0, failed = 0, timed_out = 0;
    /* optionally wait for loaders before the clock starts */
    while (wait_loaders && !sig_stop) {
        int r = taskq_next(tq, 50, &b);
        if (r < 0) {
            log_error("%s", taskq_error(tq));
            goto out;
        }
        taskq_get_stats(tq, &st);
        if (st.loaders >= wait_loaders)
            break;
        if (clock_now_ns() > limit) {
            log_error("timed out waiting for %llu loader(s)", (unsigned long long)wait_loaders);
            goto out;
        }
    }
    uint64_t t0 = clock_now_ns();
    uint64_t batches = 0, delivered_images = 0, missing = 0, repeated = 0, out_of_order = 0,
             label_errors = 0, shape_errors = 0;
    uint32_t crc = 0, crc1 = 0;
    uint64_t views_identical = 0;
    for (uint32_t e = 0; e < epochs && !failed && !refused_stop; e++) {
        plan_epoch(&plan, e);
        uint32_t fs = e == 0 ? (uint32_t)first_step : 0;
        int64_t steps = taskq_plan(tq, e, plan.perm, plan.n, plan.batch, fs, seed);
        if (steps < 0) {
            log_error("taskq_plan failed: %s", strerror(errno));
            goto out;
        }
        memset(seen, 0, n);
        uint32_t expect_step = fs;
        for (;;) {
            int k = taskq_next(tq, 200, &b);
            if (k == TASKQ_EPOCH_END)
                break;
            if (k < 0) {
                log_error("%s", taskq_error(tq));
                failed = 1;
                break;
            }
            if (exit_refused) {
                taskq_get_stats(tq, &st);
                if (st.loaders_refused > 0) {
                    refused_stop = 1;
                    break;
                }
            }
            if (k == TASKQ_TIMEOUT) {
                if (clock_now_ns() > limit) {
                    log_error("timed out after %.1f s in epoch %u (step %u)", timeout_s, e,
                              expect_step);
                    timed_out = failed = 1;
                    break;
                }
                continue;
            }
            /* a batch */
            batches++;
            delivered_images += b.count;
            if (b.epoch != e || b.step != expect_step)
                out_of_order++;
            expect_step = b.step + 1;
            if (b.size != size || b.layout != layout)
                shape_errors++;
            for (uint32_t j = 0; j < b.count; j++) {
                uint32_t idx = b.indices[j];
                if (idx >= n) {
                    shape_errors++;
                    continue;
                }
                if (seen[idx]++)
                    repeated++;
                if (b.labels[j] != dataset_label(ds, idx))
                    label_errors++;
            }
            uint32_t hdr[2] = { b.epoch, b.step };
            crc = crc32c(crc, hdr, sizeof hdr);
            crc = crc32c(crc, b.indices, (size_t)b.count * 4);
            size_t img = (size_t)b.size * b.size * 3, view = (size_t)b.count * img;
            crc = crc32c(crc, b.pixels, view);
            if (b.views != views)
                shape_errors++;
            else if (views > 1) {
                crc1 = crc32c(crc1, b.pixels + view, view);
                for (uint32_t j = 0; j < b.count; j++)
                    views_identical += memcmp(b.pixels + j * img, b.pixels + view + j * img, img) == 0;
            }
            if (!quiet_batches)
                log_debug("epoch %u step %u: %u images, %u bad, attempts %u, waited %.1f ms",
                          b.epoch, b.step, b.count, b.n_bad, b.attempts, b.wait_ns / 1e6);
            if (step_ms)
                sleep_ms(step_ms);
        }
        if (failed || refused_stop)
            break;
        /* every planned index of the delivered steps exactly once */
        for (uint32_t s = fs; s < plan.steps; s++) {
            uint32_t count;
            const uint32_t *idx = plan_step(&plan, s, &count);
            for (uint32_t j = 0; j < count; j++)
                missing += !seen[idx[j]];
        }
    }
    uint64_t t1 = clock_now_ns();
    taskq_get_stats(tq, &st);
    int ok = !failed && missing == 0 && repeated == 0 && out_of_order == 0 && label_errors == 0 &&
             shape_errors == 0;
    if (refused_stop)
        ok = 1;
    double secs = (t1 - t0) / 1e9;
    printf("{\"ok\": %s, \"epochs\": %llu, \"batches\": %llu, \"images\": %llu, "
           "\"missing\": %llu, \"repeated\": %llu, \"out_of_order\": %llu, "
           "\"label_errors\": %llu, \"shape_errors\": %llu, \"bad_images\": %llu, "
           "\"issued\": %llu, \"reissued\": %llu, \"deadline_expired\": %llu, "
           "\"duplicates\": %llu, \"stale\": %llu, \"rejected\": %llu, "
           "\"loaders_joined\": %llu, \"loaders_lost\": %llu, \"loaders_refused\": %llu, "
           "\"timed_out\": %s, \"seconds\": %.3f, \"img_per_s\": %.1f, \"wait_s\": %.3f, "
           "\"loader_decode_s\": %.3f, \"loader_augment_s\": %.3f, \"pix_crc\": \"%08x\"",
           ok ? "true" : "false", (unsigned long long)epochs, (unsigned long long)batches,
           (unsigned long long)delivered_images, (unsigned long long)missing,
           (unsigned long long)repeated, (unsigned long long)out_of_order,
           (unsigned long long)label_errors, (unsigned long long)shape_errors,
           (unsigned long long)st.bad_images, (unsigned long long)st.issued,
           (unsigned long long)st.reissued, (unsigned long long)st.deadline_expired,
           (unsigned long long)st.duplicates, (unsigned long long)st.stale,
           (unsigned long long)st.rejected, (unsigned long long)st.loaders_joined,
           (unsigned long long)st.loaders_lost, (unsigned long long)st.loaders_refused,
           timed_out ? "true" : "false", secs, secs > 0 ? delivered_images / secs : 0.0,
           st.wait_ns / 1e9, st.loader_decode_ns / 1e9, st.loader_augment_ns / 1e9, crc);
    if (views > 1)
        printf(", \"view1_crc\": \"%08x\", \"views_identical\": %llu", crc1,
               (unsigned long long)views_identical);
    printf("}\n");
    fflush(stdout);
    status = ok ? EXIT_OK : EXIT_FAIL;
out:
    plan_deinit(&plan);
    free(seen);
    taskq_destroy(&tq);
    dataset_destroy(&ds);
    msg_ctx_term();
    return status;
}
