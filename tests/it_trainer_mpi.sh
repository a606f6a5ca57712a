#!/bin/sh
# Data-parallel trainers over MPI (trainer/dp.h), on loopback with real processes: bankd, one
# loader per rank, `mpirun -np 2 --oversubscribe npid-trainer`, one thread per rank.
# 1. One step of 2 ranks x 64 images equals one step of 1 trainer x 128 images, both in
#    forwards of 64 rows (--micro-batch 64: BN statistics per 64 rows, the forwards of one view
#    of 64 images on either side): the same loss (relative difference <= 1e-5) and the same
#    weights within float noise (||w1 - w2|| <= 1e-4 ||w1||, max |w1 - w2| <= 2e-4 max |w1|;
#    measured 1.0e-5 and 1.7e-5 with one view, 1.7e-5 and 3.7e-5 with two; BN in 2 ranks x 128
#    rows, both views together, gives 1.7e-2). Not bit for bit: BN's sums are shifted by each
#    process's running mean, which differ, and gradients are summed in another order. For the
#    default recipe (two views) and for one view; --dp-check finds the two ranks' weights
#    bit-identical after the step. With --sync-bn (BN statistics over both ranks), 2 ranks x 64
#    equal 1 trainer x 128 in one forward: measured 2e-8 of ||w|| (per-rank BN: 1.4e-2).
# 2. A rank killed mid-epoch ends the job; --resume auto continues the run on 1 trainer and
#    every image is trained exactly once in each epoch.
# 3. `npid run --ranks 2` trains with two ranks and a loader each.
# 4. A batch that is not a multiple of the ranks is refused with the reason.
set -u
name=it_trainer_mpi
. "$(dirname "$0")/lib_trainer.sh"
command -v mpirun >/dev/null || { echo "$name: mpirun needed (package openmpi-bin)" >&2; exit 77; }
readelf -d "$bin/npid-trainer" 2>/dev/null | grep -q 'libmpi' ||
    { echo "$name: npid-trainer built without MPI (install libopenmpi-dev, make MPI=1)" >&2; exit 77; }
"$py" -c 'import numpy' 2>/dev/null || { echo "$name: python3-numpy needed" >&2; exit 77; }
"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 4 >/dev/null 2>&1 ||
    fail "synth"
bank_port=${NPID_BANK##*:}
tasks_port=${NPID_TASKS##*:}
mpi() {
    timeout -k 5 180 mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$@"
}
common="--data $tmp/data --model resnet20 --batch 128 --threads 1 --no-progress --metrics-every 1"

# run_pair NAME RANKS TRAINER-FLAGS...: a fresh bankd and one loader per rank, the trainer
# (under mpirun when RANKS > 1) with its log in NAME.log; bankd and loaders stopped after
run_pair() {
    rn=$1; ranks=$2; shift 2
    before=$pids
    start_bg "bankd_$rn" "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank_$rn"
    r=0
    while [ $r -lt "$ranks" ]; do
        start_bg "loader_${rn}_$r" "$bin/npid-loader" --data "$tmp/data" \
            --tasks "tcp://127.0.0.1:$((tasks_port + 100 * r))"
        r=$((r + 1))
    done
    if [ "$ranks" -eq 1 ]; then
        timeout -k 5 180 "$bin/npid-trainer" $common --run-dir "$tmp/run_$rn" "$@" \
            >"$tmp/$rn.log" 2>&1
    else
        mpi "$ranks" "$bin/npid-trainer" $common --run-dir "$tmp/run_$rn" "$@" \
            >"$tmp/$rn.log" 2>&1
    fi
    rc=$?
    kill_tree 9 ${pids#"$before"}
    for p in ${pids#"$before"}; do wait "$p" 2>/dev/null; done # their ports are free again
    pids=$before
    return $rc
}
# step1_loss RUN: the loss of the first metrics event
step1_loss() {
    sed -n 's/.*"type":"metrics".*"step":1,.*"loss":\([-0-9.e+]*\).*/\1/p' \
        "$tmp/run_$1/metrics.jsonl" | head -1
}
# compare A B WHAT: A's and B's first-step losses and checkpoint weights agree
compare() {
    la=$(step1_loss "$1"); lb=$(step1_loss "$2")
    [ -n "$la" ] && [ -n "$lb" ] || fail "$3: no first-step loss ($la / $lb)"
    "$py" - "$tmp/run_$1/checkpoints/trainer.ckpt" "$tmp/run_$2/checkpoints/trainer.ckpt" \
        "$la" "$lb" "$3" <<'EOF' || fail "$3: 2 ranks differ from 1 trainer"
import struct, sys
import numpy as np
def params(path):
    b = open(path, "rb").read()
    n_params, = struct.unpack_from("<Q", b, 96)
    cfg_len, path_len = struct.unpack_from("<II", b, 120)
    off = 176 + cfg_len + path_len
    return np.frombuffer(b, dtype="<f4", count=n_params, offset=off)
a, b = params(sys.argv[1]), params(sys.argv[2])
la, lb = float(sys.argv[3]), float(sys.argv[4])
dw = float(np.max(np.abs(a - b))) / float(np.max(np.abs(a)))
dn = float(np.linalg.norm(a - b)) / float(np.linalg.norm(a))
dl = abs(la - lb) / abs(la)
print("it_trainer_mpi: %s: loss %.8g vs %.8g (relative %.2g), weights: ||diff|| %.2g of "
      "||w||, max |diff| %.2g of the largest" % (sys.argv[5], la, lb, dl, dn, dw))
sys.exit(0 if a.shape == b.shape and dl <= 1e-5 and dn <= 1e-4 and dw <= 2e-4 else 1)
EOF
}

for recipe in views2 views1 syncbn; do
    extra="" one="--micro-batch 64" two="--micro-batch 64"
    [ $recipe = views1 ] && extra="--views 1 --nce-k 64"
    [ $recipe = syncbn ] && one="" two="--sync-bn"
    run_pair "one_$recipe" 1 $one --max-steps 1 $extra ||
        fail "$recipe: 1 trainer, one step: exit $?"
    run_pair "two_$recipe" 2 $two --max-steps 1 --dp-check 1 $extra ||
        fail "$recipe: 2 ranks, one step: exit $?"
    grep -q "dp-check: step 1: weights hash [0-9a-f]* on 2 ranks" "$tmp/two_$recipe.log" ||
        fail "$recipe: no --dp-check of the 2 ranks' weights"
    grep -q "rank 1 of 2: 64 images of every step of 128" "$tmp/two_$recipe.log" ||
        fail "$recipe: rank 1 did not take 64 images of the step"
    # every rank's lines are told apart from the first one (the BLAS set-up, before MPI)
    grep -q "npid-trainer\[1/2\] info: blas: OpenBLAS kernel" "$tmp/two_$recipe.log" ||
        fail "$recipe: rank 1's first line (blas) lacks its [1/2] prefix"
    compare "one_$recipe" "two_$recipe" "$recipe"
    [ -f "$tmp/run_two_$recipe/checkpoints/trainer.ckpt" ] || fail "$recipe: no checkpoint"
done

# a rank killed mid-epoch: the job ends; the run resumes on one trainer, nothing lost or doubled
before=$pids
start_bg bankd_kill "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank_kill"
start_bg loader_kill_0 "$bin/npid-loader" --data "$tmp/data" --tasks "$NPID_TASKS"
start_bg loader_kill_1 "$bin/npid-loader" --data "$tmp/data" \
    --tasks "tcp://127.0.0.1:$((tasks_port + 100))"
# batch 32: 7 steps an epoch (the last of 8 images, 4 a rank)
mpi 2 "$bin/npid-trainer" $common --run-dir "$tmp/run_kill" --batch 32 --epochs 3 \
    --ckpt-every 1 >"$tmp/kill.log" 2>&1 &
job=$!
pids="$pids $job"
wait_for 120 step_at_least "$tmp/run_kill/metrics.jsonl" 9 || fail "the 2-rank run did not train"
victim=$(pgrep -f "npid-trainer.*run_kill" | while read -r p; do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && echo "$p"
done | head -1)
[ -n "$victim" ] || fail "rank 1's process not found"
kill -9 "$victim"
wait "$job"
rc=$?
[ $rc -ne 0 ] || fail "the job went on with a rank killed"
timeout -k 5 180 "$bin/npid-trainer" $common --run-dir "$tmp/run_kill" --batch 32 --epochs 3 \
    --ckpt-every 1 --resume auto >"$tmp/resume.log" 2>&1 || fail "resume on 1 trainer: exit $?"
grep -q "resume: step" "$tmp/resume.log" || fail "the run did not resume from its checkpoint"
for e in 0 1 2; do
    grep "\"type\":\"epoch\"" "$tmp/run_kill/metrics.jsonl" | grep "\"epoch\":$e," | tail -1 |
        grep -q '"images":200,"expected":200' ||
        fail "epoch $e did not train each of the 200 images once"
done
grep -q "0 never, 0 twice" "$tmp/resume.log" || fail "the resumed epoch lost or repeated images"
kill_tree 9 ${pids#"$before"}
for p in ${pids#"$before"}; do wait "$p" 2>/dev/null; done
pids=$before

# the launcher: --ranks 2 runs the trainer under mpirun with a loader per rank
NPID_PORT_BASE=$bank_port timeout -k 5 180 "$(dirname "$0")/../scripts/npid" run \
    --data "$tmp/data" --epochs 1 --ranks 2 --run-dir "$tmp/run_launch" --no-baselines \
    --no-linear --eval-every 0 -- --batch 64 --threads 1 >"$tmp/launch.log" 2>&1 ||
    fail "npid run --ranks 2: exit $?"
grep -q "npid: done:" "$tmp/launch.log" || fail "npid run --ranks 2 did not end well"
grep -q "npid-trainer\[1/2\] info: training ended" "$tmp/run_launch/logs/trainer.log" ||
    fail "npid run --ranks 2: no second rank trained"

# a batch the ranks cannot share evenly
start_bg bankd_bad "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank_bad"
mpi 2 "$bin/npid-trainer" $common --run-dir "$tmp/run_bad" --batch 127 >"$tmp/bad.log" 2>&1 &&
    fail "--batch 127 on 2 ranks was accepted"
grep -q -- "--batch 127 is not a multiple of the 2 ranks" "$tmp/bad.log" ||
    fail "--batch 127 on 2 ranks: no reason given"
echo "$name: 2 ranks x 64 = 1 trainer x 128 (two views and one); a killed rank resumed on 1"
