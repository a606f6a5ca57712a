/* npid-trainer configuration: one table of every hyper-parameter and endpoint, and the
 * presets that change defaults.
 *
 * Precedence: flag > environment > preset > table default. Presets:
 *   reference  the reference CIFAR recipe exactly (lemniscate.pytorch cifar.py, NCE m=4096)
 *   cifar      the CPU default chosen from measured runs (docs/recipes.md)
 *   imagenet   the reference ImageNet recipe on torchvision's ResNet50 (resnet50, the imagenet
 *              stem; tau 0.07, wd 1e-4, batch 256, 224 px) */
#ifndef NPID_TRAINER_CONFIG_H
#define NPID_TRAINER_CONFIG_H
#include <stddef.h>
#include <stdint.h>
#include "common/cfg.h"
#include "common/dataset.h"
#include "common/nn/sgd.h"
#include "trainer/taskq.h"

struct trainer_cfg {
    const char *data, *run_dir, *preset, *model, *aug;
    const char *bank_ep, *tasks_ep, *events_ep;
    const char *lr_schedule, *lr_steps, *z_mode, *bank_init, *init, *objective_name;
    const char *run_name;
    const char *curve_key, *bank_server_key; /* CURVE: own key pair, bankd's public key ("") */
    const char *curve_allow;                 /* CURVE: loaders admitted on --tasks ("") */
    const char *loss;      /* after parsing: nce, infonce or softmax (auto resolved) */
    const char *stem;      /* cifar | s2 | s4 | imagenet, or auto until trainer_cfg_set_input */
    const char *crop_scale, *jitter, *gray, *flip, *blur; /* as given; "" means the preset's */
    const char *aug_spec;  /* after parsing: those flags as an augment_override spec */
    int low_dim, head, nce_k, batch, epochs, size, exclude_pos, drop_last, allow_remote;
    int resume, threads, metrics_every, ckpt_every, max_steps;
    int progress, keep_epochs, center_init, init_only, refresh_bank;
    int views;             /* augmented views per image per step: 1, or 2 (--loss infonce) */
    int micro_batch;       /* rows per forward (0: from the --memory budget) */
    int dp_check;          /* steps between the ranks' weight-hash checks (0: none) */
    int sync_bn;           /* BN statistics over all ranks (bn_set_sync) */
    double memory_gb;      /* the step's memory budget in GB (0: from the machine) */
    double nce_t, nce_m, nce_z, z_momentum, prox_lambda, lr, momentum, wd, warmup, lr_min;
    double task_deadline, bank_timeout, stop_timeout;
    uint64_t seed;
    struct dataset_opts dso; /* --layout, --train-splits, --list, --test-list, --labels */
};

/* Parses argv into c; returns CFG_OK, CFG_HELP or CFG_USAGE (message printed). */
int trainer_cfg_parse(struct trainer_cfg *c, int argc, char **argv);
/* Effective configuration as one JSON object (for the checkpoint and metrics.jsonl);
 * writes at most cap bytes; returns the length or -1 when it does not fit. */
int trainer_cfg_json(const struct trainer_cfg *c, char *buf, size_t cap);
void trainer_cfg_log(void);

/* The rules from the data (docs/recipes.md, "Resolution, stem and epochs from the data"):
 * the size for images whose median short side is native (32 for 0, an unknown size), the
 * stem for a size, and the epochs for n training images seen views times per epoch (the
 * fewest that show TRAINER_IMAGES_SEEN views, within 20..200 views of each image). */
#define TRAINER_IMAGES_SEEN 500000
int trainer_size_rule(uint32_t native);
int trainer_stem_rule(int size);
int trainer_epochs_rule(size_t n, int views);
/* Records the size, stem and epochs in force (after the rules) in c and in what
 * trainer_cfg_json reports. */
void trainer_cfg_set_input(struct trainer_cfg *c, int size, const char *stem, int epochs);
/* --size 0, --stem auto and --epochs 0: the rules above applied to the dataset (its images'
 * median short side, its image count), each logged with its reason, and recorded with
 * trainer_cfg_set_input; given values are kept. -1 when no sampled image has a readable
 * header (logged). */
struct dataset;
int trainer_cfg_from_data(struct trainer_cfg *c, struct dataset *ds);
/* The training set of c (--data or --list), logged, with the rules applied
 * (trainer_cfg_from_data) and the configuration in force written to json (cap bytes, what the
 * checkpoints record). NULL on failure (logged). */
struct dataset *trainer_cfg_open_data(struct trainer_cfg *c, char *json, size_t cap);
/* The run's name: --run, or the last component of --run-dir. */
void trainer_cfg_run_name(const struct trainer_cfg *c, char *buf, size_t cap);

/* Batches the trainer keeps requested from the loaders ahead of the step (each held as
 * batch x views x 3 x size x size bytes when it arrives). */
#define TRAINER_TASK_WINDOW 8

/* The learning-rate schedule of c (--lr, --lr-schedule, --lr-steps, --lr-min, --warmup,
 * --epochs). 0, or -1 for bad --lr-steps (logged). */
int trainer_cfg_schedule(const struct trainer_cfg *c, struct lr_schedule *s);
/* What the loaders are asked for (augmentation, size, views, deadlines), logging the
 * augmentation in force; run is the run's name carried in tasks. */
void trainer_cfg_task_opts(const struct trainer_cfg *c, const char *run, struct taskq_opts *o);

#endif
