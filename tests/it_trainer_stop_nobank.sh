#!/bin/sh
# A trainer told to stop (SIGTERM) while bankd is gone does not wait for bankd forever: after
# --stop-timeout seconds without an answer it exits 1 saying its last checkpoint stands (the
# trainer otherwise retries bank requests until bankd is back, which is right while training
# and wrong while stopping: `docker compose stop`, a test's cleanup).
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
grep -q 'stopping without a checkpoint\|checkpoint.*failed\|bank.*failed' "$tmp/trainer.log" ||
    fail "no reason logged"
echo "$name: stopped in ${secs} s with bankd gone (exit 1): $(grep -m1 'stopping without\|failed' "$tmp/trainer.log" | cut -c1-160)"
