/* npid-trainer configuration table and presets: see config.h. */
#include "trainer/config.h"
#include "common/augment.h"
#include "common/dataset.h"
#include "common/json.h"
#include "common/log.h"
#include "common/nn/net.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static struct trainer_cfg tc_store;

#define OPT(name, env, type, field, def, lo, hi, help) \
    { name, env, type, &tc_store.field, def, lo, hi, help, 0 }

static struct cfg_opt trainer_opts[] = {
    OPT("data", "NPID_DATA", CFG_STR, data, NULL, 0, 0, "dataset root (ImageFolder or flat tree, binary directory; or a file list) [required without --list]"),
    OPT("layout", "NPID_LAYOUT", CFG_STR, dso.layout, "auto", 0, 0, DATASET_HELP_LAYOUT),
    OPT("train-splits", "NPID_TRAIN_SPLITS", CFG_STR, dso.train_splits, "train", 0, 0, DATASET_HELP_TRAIN_SPLITS),
    OPT("list", "NPID_LIST", CFG_STR, dso.list, NULL, 0, 0, DATASET_HELP_LIST),
    OPT("test-list", "NPID_TEST_LIST", CFG_STR, dso.test_list, NULL, 0, 0, DATASET_HELP_TEST_LIST),
    OPT("labels", "NPID_LABELS", CFG_STR, dso.labels, "fine", 0, 0, DATASET_HELP_LABELS),
    OPT("run-dir", "NPID_RUN_DIR", CFG_STR, run_dir, "runs/latest", 0, 0, "run directory: checkpoints, metrics.jsonl"),
    OPT("preset", "NPID_PRESET", CFG_STR, preset, "cifar", 0, 0, "reference | cifar | imagenet (sets the defaults shown)"),
    OPT("model", "NPID_MODEL", CFG_STR, model, "resnet18", 0, 0, "resnet18 | resnet18-half | resnet18-quarter | resnet20 | resnet34 | resnet50 (with --stem imagenet, resnet18/34/50 are torchvision's)"),
    OPT("low-dim", NULL, CFG_INT, low_dim, "128", 1, 4096, "feature dimension d"),
    OPT("head", NULL, CFG_INT, head, "0", 0, 8192, "hidden width H of a two-layer head, pooled -> Linear(H) -> ReLU -> Linear(d) (SimCLR's projection head); 0: one Linear(d)"),
    OPT("nce-k", NULL, CFG_INT, nce_k, "4096", 0, 1000000, "negatives m per step (0: full non-parametric softmax)"),
    OPT("loss", "NPID_LOSS", CFG_STR, loss, "auto", 0, 0, "auto (nce when nce-k > 0, else softmax) | nce | infonce (own row vs nce-k drawn rows) | softmax (all n rows; nce-k 0)"),
    OPT("views", NULL, CFG_INT, views, "1", 1, 2, "augmented views of each image per step (2: each view's InfoNCE positive is the other view, its negatives the m bank rows and the batch's other images; needs --loss infonce)"),
    OPT("nce-t", NULL, CFG_DOUBLE, nce_t, "0.1", 1e-4, 10, "temperature tau"),
    OPT("nce-m", NULL, CFG_DOUBLE, nce_m, "0.5", 0, 0.9999, "bank momentum (weight on the old row)"),
    OPT("nce-z", NULL, CFG_DOUBLE, nce_z, "0", 0, 0, "fixed normaliser Z (0: estimate on the first step)"),
    OPT("z-mode", NULL, CFG_STR, z_mode, "frozen", 0, 0, "frozen (reference) | ema"),
    OPT("z-momentum", NULL, CFG_DOUBLE, z_momentum, "0.99", 0, 1, "EMA momentum for --z-mode ema"),
    OPT("prox-lambda", NULL, CFG_DOUBLE, prox_lambda, "0", 0, 1e6, "proximal regularisation weight (paper)"),
    OPT("exclude-pos", NULL, CFG_BOOL, exclude_pos, "false", 0, 0, "never draw a batch's own rows as negatives"),
    OPT("bank-init", NULL, CFG_STR, bank_init, "uniform", 0, 0, "uniform (reference) | unit | warm (untrained network's features)"),
    OPT("init", NULL, CFG_STR, init, "he", 0, 0, "convolution weights: he (N(0, 2/fan_in)) | torch (torch.nn.Conv2d's default, the reference CIFAR network) | he-out (N(0, 2/fan_out), torchvision's ResNet)"),
    OPT("center-init", NULL, CFG_BOOL, center_init, "false", 0, 0, "centre the untrained network's outputs (output-bias init from a data sample)"),
    OPT("refresh-bank", NULL, CFG_BOOL, refresh_bank, "false", 0, 0, "at the end of the last epoch, set every bank row to the trained network's feature of its image under the test transform (one forward over the training set, as lemniscate's recompute_memory), so the final kNN against the bank equals the recomputed one"),
    OPT("lr", NULL, CFG_DOUBLE, lr, "0.03", 0, 100, "base learning rate"),
    OPT("momentum", NULL, CFG_DOUBLE, momentum, "0.9", 0, 0.9999, "SGD momentum"),
    OPT("wd", NULL, CFG_DOUBLE, wd, "5e-4", 0, 1, "weight decay"),
    OPT("lr-schedule", NULL, CFG_STR, lr_schedule, "step", 0, 0, "step | cosine"),
    OPT("lr-steps", NULL, CFG_STR, lr_steps, "120,160", 0, 0, "epochs where a step schedule multiplies lr by 0.1"),
    OPT("lr-min", NULL, CFG_DOUBLE, lr_min, "0", 0, 100, "final lr of the cosine schedule"),
    OPT("warmup", NULL, CFG_DOUBLE, warmup, "0", 0, 1000, "linear warm-up, in epochs (fractions allowed)"),
    OPT("batch", NULL, CFG_INT, batch, "128", 1, 65536, "batch size"),
    OPT("drop-last", NULL, CFG_BOOL, drop_last, "false", 0, 0, "drop the last partial batch of an epoch"),
    OPT("epochs", "NPID_EPOCHS", CFG_INT, epochs, "200", 0, 100000, "epochs to train; 0: from the data, the fewest that show the network 500,000 views, within 20..200 views of each image (docs/recipes.md)"),
    OPT("max-steps", NULL, CFG_INT, max_steps, "0", 0, 2000000000, "stop after this many steps in total (0: no limit)"),
    OPT("aug", NULL, CFG_STR, aug, "cifar", 0, 0, "augmentation preset: cifar | imagenet | none"),
    OPT("crop-scale", NULL, CFG_STR, crop_scale, "", 0, 0, "RandomResizedCrop area range MIN-MAX, e.g. 0.08-1 (empty: the --aug preset's, 0.2-1)"),
    OPT("jitter", NULL, CFG_STR, jitter, "", 0, 0, "ColorJitter strength S (brightness, contrast, saturation, hue) or B/C/S/H, e.g. 0.4/0.4/0.4/0.1; 0: none (empty: the preset's, 0.4)"),
    OPT("gray", NULL, CFG_STR, gray, "", 0, 0, "RandomGrayscale probability (empty: the preset's, 0.2)"),
    OPT("flip", NULL, CFG_STR, flip, "", 0, 0, "RandomHorizontalFlip: true | false (empty: the preset's; cifar false, imagenet true)"),
    OPT("blur", NULL, CFG_STR, blur, "", 0, 0, "probability P of a Gaussian blur after the flip, jitter and grayscale (SimCLR, MoCo v2): sigma uniform in [0.1, 2], kernel side the odd number nearest 10% of --size, at least 3 (SimCLR's rule: 3 at 32 px, 7 at 64, 23 at 224), reflect padding, torchvision's GaussianBlur (empty: the preset's, 0 = off)"),
    OPT("size", NULL, CFG_INT, size, "32", 0, 1024, "training and evaluation image size (square); 0: from the data, the median short side of 200 images' headers rounded down to a multiple of 16 within 32..128 (docs/recipes.md)"),
    OPT("stem", NULL, CFG_STR, stem, "cifar", 0, 0, "cifar (3x3 stride 1) | s2 (3x3 stride 2) | s4 (s2 and the first stage at stride 2) | imagenet (torchvision's 7x7 stride 2 + 3x3 max pool stride 2) | auto (the stride bringing the feature maps nearest 32 px among cifar, s2, s4)"),
    OPT("seed", "NPID_SEED", CFG_U64, seed, "0", 0, 0, "seed for weights, epoch plans, augmentation, negatives"),
    OPT("bank", "NPID_BANK", CFG_STR, bank_ep, "tcp://127.0.0.1:5557", 0, 0, "npid-bankd endpoint (default port: NPID_PORT_BASE)"),
    OPT("tasks", "NPID_TASKS", CFG_STR, tasks_ep, "tcp://127.0.0.1:5558", 0, 0, "endpoint loaders connect to (default port: NPID_PORT_BASE + 1)"),
    OPT("events", "NPID_EVENTS", CFG_STR, events_ep, "tcp://127.0.0.1:5559", 0, 0, "PUB endpoint for metrics and checkpoint events (default port: NPID_PORT_BASE + 2)"),
    OPT("allow-remote", NULL, CFG_BOOL, allow_remote, "false", 0, 0, "allow binding non-loopback addresses"),
    OPT("curve-key", "NPID_CURVE_KEY", CFG_STR, curve_key, "", 0, 0, "this trainer's CURVE key pair file (npid-bankd keygen; mode 0600): with --bank-server-key, talk to a CURVE bankd; with --curve-allow, make --tasks and --events CURVE servers"),
    OPT("bank-server-key", "NPID_BANK_SERVER_KEY", CFG_STR, bank_server_key, "", 0, 0, "public key file (.pub) of a CURVE bankd (--curve-key's .pub must be in its --curve-allow)"),
    OPT("curve-allow", "NPID_CURVE_ALLOW", CFG_STR, curve_allow, "", 0, 0, "with --curve-key: file of the public keys admitted on --tasks and --events (loaders, evald), one Z85 key per line (e.g. cat a.pub b.pub)"),
    OPT("run", "NPID_RUN", CFG_STR, run_name, NULL, 0, 0, "run name (default: basename of --run-dir)"),
    OPT("resume", "NPID_RESUME", CFG_AUTO, resume, "false", 0, 0, "true (bare --resume): continue from the run directory's last checkpoint; auto: continue when the run directory holds one, start fresh otherwise"),
    OPT("init-only", NULL, CFG_BOOL, init_only, "false", 0, 0, "initialise (and warm-start the bank), checkpoint, exit: the untrained baseline"),
    OPT("ckpt-every", NULL, CFG_INT, ckpt_every, "0", 0, 2000000000, "checkpoint every N steps (0: epoch ends and SIGTERM only)"),
    OPT("metrics-every", NULL, CFG_INT, metrics_every, "10", 1, 1000000, "publish metrics every N steps"),
    OPT("memory", "NPID_MEMORY", CFG_DOUBLE, memory_gb, "0", 0, 1e6, "memory budget in GB for a training step (0: 80% of physical memory or of the cgroup's limit); a step that needs more is split into forwards that fit, their gradients accumulated (the trainer logs its estimate)"),
    OPT("micro-batch", NULL, CFG_INT, micro_batch, "0", 0, 131072, "rows (images x views) per forward: fewer than a step's rows accumulates gradients over several forwards, BN statistics per forward as on data-parallel replicas (0: as many as --memory fits)"),
    OPT("threads", "NPID_THREADS", CFG_INT, threads, "0", 0, 256, "compute threads for the network and OpenBLAS (0: one per CPU)"),
    OPT("sync-bn", NULL, CFG_BOOL, sync_bn, "false", 0, 0, "under mpirun: batch-norm statistics over every rank's images of the step (one allreduce per BN layer, forward and backward; not with micro-batches); false: per rank, as DDP"),
    OPT("dp-check", NULL, CFG_INT, dp_check, "0", 0, 2000000000, "under mpirun: check every N steps that all ranks hold bit-identical weights (a hash each; a difference stops the job); also logs the hash (0: never)"),
    OPT("task-deadline", NULL, CFG_DOUBLE, task_deadline, "20", 0.1, 3600, "seconds before a loader task is re-issued"),
    OPT("bank-timeout", NULL, CFG_DOUBLE, bank_timeout, "5", 0.05, 3600, "seconds before a bank request is retried"),
    OPT("stop-timeout", NULL, CFG_DOUBLE, stop_timeout, "60", 0.05, 3600, "seconds a stopping trainer (SIGTERM/SIGINT) waits for bankd to take its last checkpoint"),
    OPT("keep-epochs", NULL, CFG_BOOL, keep_epochs, "false", 0, 0, "keep every epoch's checkpoint and bank snapshot (for per-epoch evaluation)"),
    OPT("progress", NULL, CFG_BOOL, progress, "true", 0, 0, "progress line on stderr when it is a terminal"),
    { 0 },
};

/* name=value pairs applied for a preset unless a flag or the environment set them */
struct preset_entry { const char *preset, *name, *value; };
static const struct preset_entry trainer_presets[] = {
    /* the reference CIFAR recipe (cifar.py, NCE m = 4096) */
    { "reference", "model", "resnet18" }, { "reference", "nce-k", "4096" },
    { "reference", "nce-t", "0.1" }, { "reference", "nce-m", "0.5" },
    { "reference", "z-mode", "frozen" }, { "reference", "bank-init", "uniform" },
    { "reference", "lr", "0.03" }, { "reference", "wd", "5e-4" }, { "reference", "batch", "128" },
    { "reference", "epochs", "200" }, { "reference", "lr-schedule", "step" },
    { "reference", "lr-steps", "120,160" }, { "reference", "aug", "cifar" }, { "reference", "size", "32" },
    { "reference", "stem", "cifar" },
    { "reference", "warmup", "0" }, { "reference", "center-init", "false" },
    { "reference", "init", "torch" },
    /* CPU default: see docs/recipes.md for the measurements behind each value */
    { "cifar", "model", "resnet20" }, { "cifar", "loss", "infonce" }, { "cifar", "views", "2" },
    { "cifar", "nce-k", "1" }, { "cifar", "nce-t", "0.2" }, { "cifar", "flip", "true" },
    { "cifar", "crop-scale", "0.08-1" }, { "cifar", "jitter", "0.4/0.4/0.4/0.1" },
    { "cifar", "nce-m", "0.5" }, { "cifar", "z-mode", "ema" }, { "cifar", "bank-init", "warm" },
    { "cifar", "center-init", "true" }, { "cifar", "lr", "0.1" }, { "cifar", "wd", "5e-4" },
    { "cifar", "batch", "128" }, { "cifar", "epochs", "0" }, { "cifar", "lr-schedule", "cosine" },
    { "cifar", "warmup", "0" }, { "cifar", "aug", "cifar" }, { "cifar", "size", "0" },
    { "cifar", "stem", "auto" },
    { "cifar", "init", "he" }, { "cifar", "refresh-bank", "true" },
    /* the reference ImageNet recipe (main.py) */
    { "imagenet", "model", "resnet50" }, { "imagenet", "nce-k", "4096" }, { "imagenet", "nce-t", "0.07" },
    { "imagenet", "nce-m", "0.5" }, { "imagenet", "z-mode", "frozen" }, { "imagenet", "bank-init", "uniform" },
    { "imagenet", "lr", "0.03" }, { "imagenet", "wd", "1e-4" }, { "imagenet", "batch", "256" },
    { "imagenet", "epochs", "200" }, { "imagenet", "lr-schedule", "step" },
    { "imagenet", "lr-steps", "120,160" }, { "imagenet", "aug", "imagenet" }, { "imagenet", "size", "224" },
    { "imagenet", "stem", "imagenet" },
    { "imagenet", "warmup", "0" }, { "imagenet", "center-init", "false" },
    { "imagenet", "init", "he-out" },
    { NULL, NULL, NULL },
};

static int one_of(const char *v, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(v, *set) == 0)
            return 1;
    return 0;
}

/* The preset in force: the last --preset flag before "--", else NPID_PRESET, else the
 * table's default; NULL when a --preset flag has no value. */
static const char *preset_in_force(int argc, char **argv)
{
    const char *p = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--preset")) {
            if (i + 1 >= argc)
                return NULL;
            p = argv[++i];
        } else if (!strncmp(argv[i], "--preset=", 9)) {
            p = argv[i] + 9;
        }
    }
    if (!p)
        p = getenv("NPID_PRESET");
    if (!p || !*p)
        p = cfg_find(trainer_opts, "preset")->def;
    return p;
}

int trainer_cfg_parse(struct trainer_cfg *c, int argc, char **argv)
{
    static const char *const presets[] = { "reference", "cifar", "imagenet", NULL };
    static const char *const models[] = { "resnet18", "resnet18-half", "resnet18-quarter", "resnet20",
                                          "resnet34", "resnet50", NULL };
    static const char *const zmodes[] = { "frozen", "ema", NULL };
    static const char *const inits[] = { "uniform", "unit", "warm", NULL };
    static const char *const winits[] = { "he", "torch", "he-out", NULL };
    static const char *const scheds[] = { "step", "cosine", NULL };
    static const char *const augs[] = { "cifar", "imagenet", "none", NULL };
    static const char *const losses[] = { "auto", "nce", "infonce", "softmax", NULL };
    static const char *const stems[] = { "auto", "cifar", "s2", "s4", "imagenet", NULL };
    static char eps[3][32];
    static char usage[160];
    static const char *const ep_names[3] = { "bank", "tasks", "events" };
    for (int i = 0; i < 3; i++) {
        if (cfg_endpoint_default(trainer_opts, ep_names[i], i, "npid-trainer", eps[i], sizeof eps[i]) != 0)
            return CFG_USAGE;
    }
    /* the preset's values become the table's defaults, so --help shows what runs */
    const char *preset = preset_in_force(argc, argv);
    if (preset && !one_of(preset, presets)) {
        fprintf(stderr, "npid-trainer: --preset %s: expected reference, cifar or imagenet\n", preset);
        return CFG_USAGE;
    }
    if (preset)
        for (const struct preset_entry *p = trainer_presets; p->preset; p++)
            if (strcmp(p->preset, preset) == 0)
                NPID_CHECK(cfg_set_default(trainer_opts, p->name, p->value) == 0);
    snprintf(usage, sizeof usage, "--data ROOT [options]\n\ndefaults of preset %s; "
             "--preset reference|cifar|imagenet changes them", preset ? preset : "cifar");
    int npos = 0;
    int rc = cfg_parse("npid-trainer", usage, trainer_opts, argc, argv, &npos);
    if (rc != CFG_OK)
        return rc;
    if (npos > 0) {
        fprintf(stderr, "npid-trainer: unexpected argument '%s' (try --help)\n", argv[1]);
        return CFG_USAGE;
    }
    const struct { const char *flag; const char *value; const char *const *set; } enums[] = {
        { "model", tc_store.model, models }, { "z-mode", tc_store.z_mode, zmodes },
        { "bank-init", tc_store.bank_init, inits }, { "lr-schedule", tc_store.lr_schedule, scheds },
        { "aug", tc_store.aug, augs }, { "init", tc_store.init, winits },
        { "loss", tc_store.loss, losses }, { "stem", tc_store.stem, stems },
    };
    for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++) {
        if (!one_of(enums[i].value, enums[i].set)) {
            fprintf(stderr, "npid-trainer: --%s %s: expected one of", enums[i].flag, enums[i].value);
            for (const char *const *s = enums[i].set; *s; s++)
                fprintf(stderr, " %s", *s);
            fputc('\n', stderr);
            return CFG_USAGE;
        }
    }
    struct cfg_opt *k_opt = cfg_find(trainer_opts, "nce-k");
    struct cfg_opt *loss_opt = cfg_find(trainer_opts, "loss");
    struct cfg_opt *views_opt = cfg_find(trainer_opts, "views");
    NPID_CHECK(k_opt && loss_opt && views_opt);
    /* A preset's objective (loss, views, nce-k) applies as a whole: naming --loss or --nce-k
       selects that objective with one view (unless --views is given too), the loss auto and
       m = 4096 where the flags leave them open. */
    if ((loss_opt->set_by || k_opt->set_by) && views_opt->set_by == 0 && tc_store.views > 1) {
        tc_store.views = 1;
        if (!loss_opt->set_by)
            tc_store.loss = "auto";
        if (!k_opt->set_by && strcmp(tc_store.loss, "softmax") != 0)
            tc_store.nce_k = 4096;
    }
    /* --loss: auto is what nce-k selects; softmax replaces a preset's nce-k by 0 */
    if (strcmp(tc_store.loss, "auto") == 0) {
        tc_store.loss = tc_store.nce_k > 0 ? "nce" : "softmax";
    } else if (strcmp(tc_store.loss, "softmax") == 0) {
        if (tc_store.nce_k > 0 && k_opt->set_by != 0) {
            fprintf(stderr, "npid-trainer: --loss softmax scores all n bank rows: drop --nce-k %d "
                            "(or give --nce-k 0)\n", tc_store.nce_k);
            return CFG_USAGE;
        }
        tc_store.nce_k = 0;
    } else if (tc_store.nce_k == 0) {
        fprintf(stderr, "npid-trainer: --loss %s draws --nce-k negatives per step: give --nce-k > 0 "
                        "(e.g. 4096)\n", tc_store.loss);
        return CFG_USAGE;
    }
    if (tc_store.views > 1 && strcmp(tc_store.loss, "infonce") != 0) {
        fprintf(stderr, "npid-trainer: --views %d needs --loss infonce (each view's positive is "
                        "the other view's feature; --loss is %s)\n", tc_store.views, tc_store.loss);
        return CFG_USAGE;
    }
    if (tc_store.views > 1 && tc_store.prox_lambda > 0) {
        fprintf(stderr, "npid-trainer: --prox-lambda applies to one view (a feature and its own "
                        "bank row): drop it or use --views 1\n");
        return CFG_USAGE;
    }
    /* the augmentation flags as one augment_override spec, checked on the preset */
    static char aug_spec[256];
    aug_spec[0] = 0;
    const struct { const char *key, *value; } ov[] = {
        { "crop", tc_store.crop_scale }, { "jitter", tc_store.jitter }, { "gray", tc_store.gray },
        { "flip", !strcmp(tc_store.flip, "true") ? "1" : !strcmp(tc_store.flip, "false") ? "0" : tc_store.flip },
        { "blur", tc_store.blur },
    };
    static const char *const ov_flag[] = { "crop-scale", "jitter", "gray", "flip", "blur" };
    for (size_t i = 0; i < sizeof ov / sizeof ov[0]; i++) {
        if (!*ov[i].value)
            continue;
        if (strpbrk(ov[i].value, ",=")) {
            fprintf(stderr, "npid-trainer: --%s %s: one value, without ',' or '='\n", ov_flag[i], ov[i].value);
            return CFG_USAGE;
        }
        size_t n = strlen(aug_spec);
        snprintf(aug_spec + n, sizeof aug_spec - n, "%s%s=%s", n ? "," : "", ov[i].key, ov[i].value);
    }
    if (*tc_store.flip && strcmp(tc_store.flip, "true") && strcmp(tc_store.flip, "false")) {
        fprintf(stderr, "npid-trainer: --flip %s: expected true or false\n", tc_store.flip);
        return CFG_USAGE;
    }
    struct augment_params ap;
    char why[320];
    NPID_CHECK(augment_preset(tc_store.aug, 1, 32, AUGMENT_CHW, &ap) == 0);
    if (augment_override(&ap, aug_spec, why, sizeof why) != 0) {
        fprintf(stderr, "npid-trainer: %s (flags --crop-scale, --jitter, --gray, --flip, --blur)\n", why);
        return CFG_USAGE;
    }
    tc_store.aug_spec = aug_spec;
    if (tc_store.size != 0 && tc_store.size < 8) {
        fprintf(stderr, "npid-trainer: --size %d: expected 0 (from the data) or 8..1024\n", tc_store.size);
        return CFG_USAGE;
    }
    if (!tc_store.curve_key[0] != (!tc_store.bank_server_key[0] && !tc_store.curve_allow[0])) {
        fprintf(stderr, "npid-trainer: --curve-key goes with --bank-server-key (bankd's public "
                "key), --curve-allow (the loaders admitted on --tasks) or both\n");
        return CFG_USAGE;
    }
    if ((!tc_store.data || !*tc_store.data) && !tc_store.dso.list) {
        fprintf(stderr, "npid-trainer: --data ROOT (or NPID_DATA) or --list FILE is required\n");
        return CFG_USAGE;
    }

    *c = tc_store;
    return CFG_OK;
}

int trainer_epochs_rule(size_t n, int views)
{
    size_t v = views > 1 ? (size_t)views : 1, lo = 20 / v, hi = 200 / v;
    if (n == 0)
        return (int)lo;
    size_t e = (TRAINER_IMAGES_SEEN + n * v - 1) / (n * v);
    return (int)(e < lo ? lo : e > hi ? hi : e);
}

int trainer_size_rule(uint32_t native)
{
    if (native < 40)
        return 32;
    uint32_t s = native > 128 ? 128 : native;
    return (int)(s / 16 * 16);
}

int trainer_stem_rule(int size)
{
    /* the stride in 1, 2, 4 whose feature maps are nearest 32 px on a log scale (ties: the
       smaller stride, the finer maps); of the 3x3 stems only, never imagenet */
    int best = NET_STEM_CIFAR;
    double best_d = 1e9;
    for (int st = NET_STEM_CIFAR; st <= NET_STEM_S4; st++) {
        double d = fabs(log((double)size / net_stem_stride(st) / 32.0));
        if (d < best_d - 1e-9) {
            best_d = d;
            best = st;
        }
    }
    return best;
}

void trainer_cfg_set_input(struct trainer_cfg *c, int size, const char *stem, int epochs)
{
    tc_store.size = c->size = size;
    tc_store.stem = c->stem = stem;
    tc_store.epochs = c->epochs = epochs;
}

void trainer_cfg_log(void)
{
    cfg_log(trainer_opts);
}

int trainer_cfg_json(const struct trainer_cfg *c, char *buf, size_t cap)
{
    (void)c; /* the table points at the parsed values, which c copies */
    size_t n = 0;
    int w = snprintf(buf, cap, "{");
    if (w < 0 || (size_t)w >= cap)
        return -1;
    n = (size_t)w;
    for (const struct cfg_opt *o = trainer_opts; o->name; o++) {
        const char *sep = o == trainer_opts ? "" : ",";
        switch (o->type) {
        case CFG_STR: {
            const char *s = *(const char **)o->dst;
            if (!s) {
                w = snprintf(buf + n, cap - n, "%s\"%s\":null", sep, o->name);
                break;
            }
            w = snprintf(buf + n, cap - n, "%s\"%s\":", sep, o->name);
            if (w < 0 || (size_t)w >= cap - n)
                return -1;
            n += (size_t)w;
            w = (int)json_format_str(buf + n, cap - n, s);
            break;
        }
        case CFG_BOOL:
            w = snprintf(buf + n, cap - n, "%s\"%s\":%s", sep, o->name, *(int *)o->dst ? "true" : "false");
            break;
        case CFG_AUTO: {
            int v = *(int *)o->dst;
            w = snprintf(buf + n, cap - n, "%s\"%s\":%s", sep, o->name,
                         v == CFG_AUTO_VALUE ? "\"auto\"" : v ? "true" : "false");
            break;
        }
        case CFG_INT:
            w = snprintf(buf + n, cap - n, "%s\"%s\":%d", sep, o->name, *(int *)o->dst);
            break;
        case CFG_U64:
            w = snprintf(buf + n, cap - n, "%s\"%s\":%llu", sep, o->name, (unsigned long long)*(uint64_t *)o->dst);
            break;
        case CFG_DOUBLE:
            w = snprintf(buf + n, cap - n, "%s\"%s\":%.17g", sep, o->name, *(double *)o->dst);
            break;
        }
        if (w < 0 || (size_t)w >= cap - n)
            return -1;
        n += (size_t)w;
    }
    if (n + 2 > cap)
        return -1;
    buf[n++] = '}';
    buf[n] = 0;
    return (int)n;
}

int trainer_cfg_schedule(const struct trainer_cfg *c, struct lr_schedule *s)
{
    memset(s, 0, sizeof *s);
    s->kind = !strcmp(c->lr_schedule, "cosine") ? LR_COSINE : LR_STEP;
    s->base = c->lr;
    s->epochs = c->epochs;
    s->min = c->lr_min;
    s->warmup = c->warmup;
    s->gamma = 0.1;
    if (s->kind == LR_STEP && lr_parse_milestones(s, c->lr_steps) != 0) {
        log_error("--lr-steps %s: expected increasing epochs like 120,160", c->lr_steps);
        return -1;
    }
    return 0;
}

void trainer_cfg_task_opts(const struct trainer_cfg *c, const char *run, struct taskq_opts *o)
{
    taskq_opts_default(o);
    o->window = TRAINER_TASK_WINDOW;
    o->deadline_ms = (uint32_t)(c->task_deadline * 1000);
    o->drop_last = c->drop_last;
    o->preset = c->aug;
    o->aug = c->aug_spec;
    o->train = 1;
    o->size = (uint32_t)c->size;
    o->layout = AUGMENT_CHW;
    o->views = (uint32_t)c->views;
    o->allow_remote = c->allow_remote;
    o->run = run;
    /* o->curve: set by the caller, which runs the ZAP handler (trainer/links.c) */
    struct augment_params ap;
    char why[320];
    if (augment_preset(c->aug, 1, (uint32_t)c->size, AUGMENT_CHW, &ap) == 0 &&
        augment_override(&ap, c->aug_spec, why, sizeof why) == 0)
        log_info("augmentation (%s preset%s%s): crop %g-%g, jitter %g/%g/%g/%g, gray %g, flip %s",
                 c->aug, *c->aug_spec ? ", overridden by " : "", c->aug_spec, ap.scale_min,
                 ap.scale_max, ap.brightness, ap.contrast, ap.saturation, ap.hue, ap.gray_p,
                 ap.flip ? "on" : "off");
}

int trainer_cfg_from_data(struct trainer_cfg *c, struct dataset *ds)
{
    size_t n = dataset_count(ds);
    int size = c->size;
    char why[256] = "";
    if (size == 0) {
        uint32_t sh, lo;
        size_t bad, got = dataset_probe_sides(ds, 200, &sh, &lo, &bad);
        if (got == 0) {
            log_error("--size 0: none of %zu sampled images has a readable header; give --size",
                      bad);
            return -1;
        }
        size = trainer_size_rule(sh);
        snprintf(why, sizeof why, "the median image of %zu sampled is %ux%u (short side %u%s)", got,
                 lo, sh, sh,
                 sh < 40 ? ": 32 px" : sh > 128 ? ", capped at 128" : ", to a multiple of 16");
    } else {
        snprintf(why, sizeof why, "--size %d given", size);
    }
    const char *stem = c->stem;
    int st = net_stem_parse(stem), auto_stem = st < 0;
    if (auto_stem) {
        st = trainer_stem_rule(size);
        stem = net_stem_name(st);
    }
    int epochs = c->epochs;
    if (epochs == 0) {
        int v = c->views;
        epochs = trainer_epochs_rule(n, v);
        log_info("epochs: %d, the fewest that show the network %d views (%zu training images, "
                 "%d view%s each an epoch; within %d..%d epochs)", epochs, TRAINER_IMAGES_SEEN,
                 n, v, v > 1 ? "s" : "", trainer_epochs_rule(0, v), 200 / (v > 1 ? v : 1));
    }
    trainer_cfg_set_input(c, size, stem, epochs);
    int maps = (size + net_stem_stride(st) - 1) / net_stem_stride(st);
    log_info("input: %d px, stem %s (%dx%d feature maps): %s; %s", size, stem, maps, maps, why,
             auto_stem ? "the stem's stride brings the maps nearest 32 px" : "--stem given");
    struct net_config nc = { c->model, c->low_dim, size, size, 1, 0, 0, st, c->head };
    double fl = net_config_flops(&nc);
    if (fl > 0)
        log_info("network: %s, stem %s, %d px: %.3f G multiply-adds per image forward (a "
                 "training step about 3x)", c->model, stem, size, fl / 2e9);
    return 0;
}

static const char *path_base(const char *p)
{
    const char *s = strrchr(p, '/');
    while (s && s[1] == 0 && s != p) { /* trailing slash */
        const char *q = s - 1;
        while (q > p && *q != '/')
            q--;
        return *q == '/' ? q + 1 : q;
    }
    return s ? s + 1 : p;
}

void trainer_cfg_run_name(const struct trainer_cfg *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", c->run_name && *c->run_name ? c->run_name : path_base(c->run_dir));
}

struct dataset *trainer_cfg_open_data(struct trainer_cfg *c, char *json, size_t cap)
{
    char err[DATASET_ERR_LEN];
    struct dataset *ds = dataset_open_opts(c->data, "train", &c->dso, err, sizeof err);
    if (!ds) {
        log_error("dataset: %s", err);
        return NULL;
    }
    log_info("dataset: %s: %zu training images in %zu classes (%zu other files skipped), "
             "manifest %.12s", dataset_root(ds), dataset_count(ds), dataset_num_classes(ds),
             dataset_skipped(ds), dataset_manifest(ds));
    /* the layout, and when nothing is labelled the trainer still trains: NPID needs no labels */
    log_info("dataset layout: %s%s", dataset_describe(ds),
             dataset_labelled(ds) == 0 ? "; no labels: training unlabelled (kNN and linear "
                                         "evaluation need labels)" : "");
    if (trainer_cfg_from_data(c, ds) != 0)
        goto fail;
    if (trainer_cfg_json(c, json, cap) < 0) {
        log_error("configuration too long to record");
        goto fail;
    }
    return ds;
fail:
    dataset_destroy(&ds);
    return NULL;
}
