#!/bin/sh
# The learning test (issue 7): a real training run through npid-bankd, npid-loader,
# npid-trainer and npid-evald must raise the test set's weighted-kNN top-1 (k 200, sigma 0.1,
# features recomputed with the test transform) by at least NPID_LEARN_MARGIN points (15) over
# the SAME untrained network, measured here in the same way: `npid-trainer --init-only` with the
# training flags writes the initialised network (after --center-init and the warm bank pass)
# and `npid-evald --once --against recomputed` scores both checkpoints.
# Data: a CIFAR-10 subset (first 500 train images per class, all 10,000 test images of the shared JPEGs,
# extracted into the cache by loader/cifar-cache.sh), else the synthetic set of
# `npid-loader synth` when ../shared is absent. The setting (model, objective, subset, steps)
# is chosen from the measured runs in docs/recipes.md. Prints the margin; about 3 minutes on
# 2 cores (training is bounded at 10 minutes, for a machine shared with other work).
set -u
name=it_learning
# the generic OpenBLAS kernel is about 2x slower on AVX-512 machines; pick the fast one
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    if grep -q avx512f /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=SkylakeX
    else export OPENBLAS_CORETYPE=Haswell; fi
fi
. "$(dirname "$0")/lib_trainer.sh"
[ -x "$bin/npid-evald" ] || { echo "$name: npid-evald not built" >&2; exit 77; }
root=${NPID_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
need=${NPID_LEARN_MARGIN:-15}
per_class=500
test_per_class=1000   # all 10,000 CIFAR-10 test images: the margin's noise is about 0.5 point
# the recipe under test (see docs/recipes.md, "The learning test"): the default (--preset
# cifar: two views, InfoNCE against the batch, its augmentation and cosine lr) at 16 px (4x
# the steps per second of 32 px) for 40 epochs of the 5,000-image subset (1,600 steps of 128)
epochs=${NPID_LEARN_EPOCHS:-40}
flags="--preset cifar --size 16 --seed 0"
export NPID_LOG_LEVEL=warn

# data: a fixed CIFAR-10 subset (symlinks), else the synthetic set
cifar=$("$root/loader/cifar-cache.sh" 2>"$tmp/cache.log"); rc=$?
if [ $rc -eq 0 ]; then
    for split in train test; do
        n=$per_class; [ $split = test ] && n=$test_per_class
        for cdir in "$cifar/$split"/*/; do
            c=$(basename "$cdir")
            mkdir -p "$tmp/data/$split/$c"
            ls "$cdir" | sort | head -n "$n" | sed "s|^|$cdir|" | xargs ln -s -t "$tmp/data/$split/$c" ||
                fail "subset of $cdir"
        done
    done
    what="CIFAR-10 subset ($per_class train / $test_per_class test images per class)"
elif [ $rc -eq 77 ]; then
    test_per_class=100
    "$bin/npid-loader" synth --out "$tmp/data" --per-class $per_class --test-per-class $test_per_class \
        >/dev/null 2>"$tmp/synth.log" || fail "synthetic dataset"
    what="synthetic set (no shared CIFAR-10 here; $per_class train / $test_per_class test per class)"
else
    fail "cannot prepare the CIFAR-10 cache: $(tail -n 1 "$tmp/cache.log")"
fi
echo "$name: data: $what" >&2

start_bg loader "$bin/npid-loader" --data "$tmp/data"
new_bankd() { # new_bankd NAME: a fresh bankd on the test's port
    [ -n "${bankd_pid:-}" ] && { kill "$bankd_pid" 2>/dev/null; wait "$bankd_pid" 2>/dev/null; }
    start_bg "bankd-$1" "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank-$1"
    bankd_pid=$last_pid
}
# top1 CKPT LOG: weighted-kNN top-1 (%) of a checkpoint, recomputed train features
top1() {
    timeout -k 5 120 "$bin/npid-evald" --once --checkpoint "$1" --data "$tmp/data" \
        --against recomputed >"$tmp/$2.jsonl" 2>>"$tmp/$2.log" || return 1
    sed -n 's/.*"top1":\([0-9.e-]*\).*/\1/p' "$tmp/$2.jsonl" | head -n 1 | awk '{ printf "%.2f", 100 * $1 }'
}
t0=$(date +%s)

# the untrained network, initialised exactly as the training run initialises it
new_bankd init
timeout -k 5 120 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/init" $flags --init-only \
    --no-progress >>"$tmp/trainer-init.log" 2>&1 || fail "npid-trainer --init-only"
before=$(top1 "$tmp/init/checkpoints/trainer.ckpt" eval-init) || fail "evald on the untrained network"
[ -n "$before" ] || fail "no top1 for the untrained network"

# the same network trained
new_bankd train
t1=$(date +%s)
timeout -k 5 600 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/train" $flags \
    --epochs "$epochs" --no-progress >>"$tmp/trainer.log" 2>&1 || fail "npid-trainer"
t2=$(date +%s)
steps=$(sed -n 's/.*"type":"end".*"status":"ok".*"step":\([0-9]*\).*/\1/p' "$tmp/train/metrics.jsonl")
[ -n "$steps" ] || fail "training did not end cleanly"
after=$(top1 "$tmp/train/checkpoints/trainer.ckpt" eval-train) || fail "evald on the trained network"
[ -n "$after" ] || fail "no top1 for the trained network"
t3=$(date +%s)

# the loss falls: mean of the first three metrics windows against the last three
losses=$(sed -n 's/.*"type":"metrics".*"loss":\([0-9.e+-]*\).*/\1/p' "$tmp/train/metrics.jsonl")
loss_ok=$(echo "$losses" | awk '{ v[NR] = $1 } END { if (NR < 6) { print "few"; exit }
    a = (v[1] + v[2] + v[3]) / 3; b = (v[NR] + v[NR-1] + v[NR-2]) / 3
    printf "%s %.3f -> %.3f", (b < a ? "yes" : "no"), a, b }')
case "$loss_ok" in yes*) ;; *) fail "the training loss did not decrease ($loss_ok)" ;; esac
echo "$name: training loss ${loss_ok#yes }" >&2

margin=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%+.2f", a - b }')
echo "$name: kNN top-1 (recomputed) untrained $before %, trained $after % after $steps steps ($epochs epochs)" \
    "($((t2 - t1)) s of training, $((t3 - t0)) s in all): margin $margin points (need +$need)" >&2
awk -v m="$margin" -v n="$need" 'BEGIN { exit !(m + 0 >= n + 0) }' ||
    fail "the network did not learn enough: margin $margin points < $need"
exit 0
