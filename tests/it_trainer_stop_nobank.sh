#!/bin/sh
# A trainer told to stop (SIGTERM) while bankd is gone does not wait for bankd forever: after
# --stop-timeout seconds without an answer it exits 1 saying its last checkpoint stands, and
# keeps its weights in trainer.unpaired.ckpt (no bank snapshot pairs with them; evald reads
# them); it says what it waits for first. (The trainer otherwise retries bank requests until
# bankd is back, which is right while training and wrong while stopping: `docker compose
# stop`, a test's cleanup.)
set -u
name=it_trainer_stop_nobank
. "$(dirname "$0")/lib_trainer.sh"
"$bin/npid-loader" synth --out "$tmp/data" --per-class 200 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
bankd=$last_pid
start_bg loader "$bin/npid-loader" --data "$tmp/data"
start_bg trainer "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" --model resnet20 \
    --epochs 1000 --batch 20 --nce-k 64 --bank-init uniform --no-progress --metrics-every 1 \
    --bank-timeout 0.5 --stop-timeout 2
trainer=$last_pid
wait_for 60 step_at_least "$tmp/run/metrics.jsonl" 5 || fail "the trainer did not train"
kill -9 "$bankd"
sleep 1
kill -TERM "$trainer"
start=$(date +%s)
i=0
while kill -0 "$trainer" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
kill -0 "$trainer" 2>/dev/null && fail "the trainer still runs 30 s after SIGTERM with bankd gone"
wait "$trainer"; rc=$?
secs=$(( $(date +%s) - start ))
[ $rc -eq 1 ] || fail "exit $rc, expected 1 (stopped without its last checkpoint)"
grep -q 'stopping without a paired checkpoint\|checkpoint.*failed\|bank.*failed' "$tmp/trainer.log" ||
    fail "no reason logged"
# and it said what it waited for, before waiting
grep -q "stopping: each bank request now waits at most 2 s (--stop-timeout) for bankd at $NPID_BANK" \
    "$tmp/trainer.log" || fail "the trainer did not say what its stop waits for"
# the weights are kept all the same, marked as paired with no bank snapshot
u=$tmp/run/checkpoints/trainer.unpaired.ckpt
[ -f "$u" ] || fail "no trainer.unpaired.ckpt: $(grep -m1 'weights of step\|cannot keep' "$tmp/trainer.log")"
$py - "$u" <<'PY' || fail "the unpaired checkpoint"
import struct, sys
h = open(sys.argv[1], "rb").read(128)
assert h[:8] == b"NPIDCKPT", h[:8]
step, = struct.unpack_from("<Q", h, 24)
bank_path_len, = struct.unpack_from("<I", h, 124)
assert step >= 5 and bank_path_len == 0, (step, bank_path_len)
PY
"$bin/npid-evald" embed --data "$tmp/data" --checkpoint "$u" --split test --format npy \
    --out "$tmp/u.npy" >/dev/null 2>"$tmp/evald.log" || fail "npid-evald cannot read the unpaired checkpoint"
echo "$name: stopped in ${secs} s with bankd gone (exit 1): $(grep -m1 'stopping without\|failed' "$tmp/trainer.log" | cut -c1-160)"
