#!/bin/sh
# The input follows the data (docs/recipes.md, "Resolution"), end to end with real processes:
# on 64 px JPEGs the default trainer picks 64 px and the s2 stem and logs why; its checkpoint
# records both, and npid-evald rebuilds that network and transform from it: the warm bank
# (the trainer's features) equals evald's recomputed features row for row. 32 px images keep
# the CIFAR stem, 160 px ones train at 128 px with s4; --size and --stem override the rules.
# The epochs follow the number of images and views (120 here: the caps, 100 epochs with the
# default two views, 200 with one).
set -u
name=it_input_rule
. "$(dirname "$0")/lib_trainer.sh"

bankd_pid=""
init() { # init NAME DATA FLAGS...: an untrained run with a warm bank in a bankd of its own
    rn=$1; d=$2; shift 2
    [ -n "$bankd_pid" ] && { kill "$bankd_pid" 2>/dev/null; wait "$bankd_pid" 2>/dev/null; }
    start_bg "bankd-$rn" "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank-$rn"
    bankd_pid=$last_pid
    timeout -k 5 200 "$bin/npid-trainer" --data "$d" --run-dir "$tmp/$rn" --model resnet20 --batch 50 \
        --bank-init warm --init-only --no-progress --run "$rn" "$@" >>"$tmp/$rn.log" 2>&1 ||
        fail "trainer --init-only ($rn)"
}
expect_input() { # expect_input NAME SIZE STEM: the log line and the checkpoint's config agree
    grep -q "input: $2 px, stem $3 " "$tmp/$1.log" || fail "$1: expected input $2 px, stem $3: $(grep 'input:' "$tmp/$1.log")"
    grep -q "input 3x$2x$2, stem $3 " "$tmp/$1.log" || fail "$1: the network is not $2 px / $3"
    grep -q "network: resnet20, stem $3, $2 px: 0\.[0-9]* G multiply-adds per image" "$tmp/$1.log" ||
        fail "$1: no multiply-adds per image logged: $(grep 'network:' "$tmp/$1.log")"
    ck=$tmp/$1/checkpoints/trainer.ckpt
    grep -a -q "\"size\":$2,.*\"stem\":\"$3\"" "$ck" || fail "$1: the checkpoint does not record size $2, stem $3"
}

for s in 32 64 160; do
    "$bin/npid-loader" synth --out "$tmp/d$s" --size $s --per-class 12 --test-per-class 4 >/dev/null 2>&1 ||
        fail "synth $s px"
done
start_bg loader "$bin/npid-loader" --data "$tmp/d64"
loader_pid=$last_pid
init a64 "$tmp/d64"
expect_input a64 64 s2
grep -q "median image of [0-9]* sampled is 64x64" "$tmp/a64.log" || fail "a64: the log does not say why"
grep -q "epochs: 100, the fewest that show the network 500000 views (120 training images, 2 views" "$tmp/a64.log" ||
    fail "a64: the epochs do not follow the data: $(grep 'epochs' "$tmp/a64.log" | head -2)"
grep -a -q '"epochs":100,' "$tmp/a64/checkpoints/trainer.ckpt" || fail "a64: the checkpoint does not record 100 epochs"

# evald builds the same network and test transform from the checkpoint alone
"$bin/npid-evald" embed --data "$tmp/d64" --checkpoint "$tmp/a64/checkpoints/trainer.ckpt" --split train \
    --format npy --out "$tmp/recomputed.npy" >>"$tmp/evald.log" 2>&1 || fail "embed recomputed"
"$bin/npid-evald" embed --data "$tmp/d64" --bank "$NPID_BANK" --format npy \
    --out "$tmp/bank.npy" >>"$tmp/evald.log" 2>&1 || fail "embed bank"
"$py" - "$tmp/recomputed.npy" "$tmp/bank.npy" <<'PY' || fail "64 px / s2: bank rows differ from evald's recomputed features"
import sys, numpy as np
rec, bank = np.load(sys.argv[1]), np.load(sys.argv[2])
assert rec.shape == bank.shape, (rec.shape, bank.shape)
cos = (rec * bank).sum(1) / np.linalg.norm(rec, axis=1) / np.linalg.norm(bank, axis=1)
print(f"it_input_rule: 64 px / s2, {len(cos)} rows: cosine min {cos.min():.4f}", file=sys.stderr)
sys.exit(0 if cos.min() >= 0.99 else 1)
PY

# overrides, on the same data and loader
init b64 "$tmp/d64" --stem cifar --nce-k 0
expect_input b64 64 cifar
grep -q "epochs: 200, the fewest that show the network 500000 views (120 training images, 1 view " "$tmp/b64.log" ||
    fail "b64 (one view): the epochs do not follow the data: $(grep 'epochs' "$tmp/b64.log" | head -2)"
init c64 "$tmp/d64" --size 48 --crop-scale 0.08-1 --flip true --jitter 0.4/0.4/0.4/0.1
expect_input c64 48 s2
grep -q "augmentation (cifar preset, overridden by crop=0.08-1,jitter=0.4/0.4/0.4/0.1,flip=1): crop 0.08-1, jitter 0.4/0.4/0.4/0.1, gray 0.2, flip on" "$tmp/c64.log" ||
    fail "c64: the augmentation flags are not in force: $(grep 'augmentation' "$tmp/c64.log")"
grep -q -- "--size 48 given" "$tmp/c64.log" || fail "c64: the log does not say the size was given"

kill_tree 9 $loader_pid
start_bg loader32 "$bin/npid-loader" --data "$tmp/d32"
loader_pid=$last_pid
init a32 "$tmp/d32"
expect_input a32 32 cifar
kill_tree 9 $loader_pid
start_bg loader160 "$bin/npid-loader" --data "$tmp/d160"
init a160 "$tmp/d160"
expect_input a160 128 s4

timeout 20 "$bin/npid-trainer" --data "$tmp/d64" --size 5 >"$tmp/usage.log" 2>&1
[ $? -eq 2 ] && grep -q "expected 0 (from the data) or 8..1024" "$tmp/usage.log" || fail "--size 5 is not a usage error"
timeout 20 "$bin/npid-trainer" --data "$tmp/d64" --stem s8 >"$tmp/usage.log" 2>&1
[ $? -eq 2 ] && grep -q "stem s8: expected one of auto cifar s2 s4" "$tmp/usage.log" || fail "--stem s8 is not a usage error"
echo "$name: 64 px -> s2 (evald agrees), 32 px -> cifar, 160 px -> 128 px s4, overrides kept" >&2
