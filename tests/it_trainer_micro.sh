#!/bin/sh
# Gradient accumulation end to end: a step of 100 rows (batch 50, two views) in forwards of at
# most 30 rows (--micro-batch 30: four of 25), the warm start in batches the network holds;
# the epoch trains every image, the loss is finite, and npid-evald measures the checkpoint.
# A --memory budget too small for one row per forward is refused before any allocation, and
# the estimate is logged either way.
set -u
name=it_trainer_micro
. "$(dirname "$0")/lib_trainer.sh"
"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 4 >/dev/null 2>&1 ||
    fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg loader "$bin/npid-loader" --data "$tmp/data"
timeout -k 5 120 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" --model resnet20 \
    --epochs 1 --batch 50 --micro-batch 30 --no-progress >>"$tmp/trainer.log" 2>&1 ||
    fail "training with --micro-batch 30: exit $?"
grep -q "memory: a step of 100 rows (batch 50 x 2 views)" "$tmp/trainer.log" ||
    fail "the trainer did not log its memory estimate"
grep -q "memory: 4 forwards of 25 rows per step (--micro-batch)" "$tmp/trainer.log" ||
    fail "the trainer did not split the step into 4 forwards of 25 rows"
grep -q "max_batch 25" "$tmp/trainer.log" || fail "the network was not built for 25 rows"
grep -q "warm start: BN statistics recalibrated" "$tmp/trainer.log" ||
    fail "no warm start in forwards of 25 rows"
grep -q '"images":200,"expected":200' "$tmp/run/metrics.jsonl" ||
    fail "the epoch did not train 200 images"
grep -q '"loss_mean":[0-9]' "$tmp/run/metrics.jsonl" || fail "no finite mean loss in metrics"
timeout 120 "$bin/npid-evald" --once --checkpoint "$tmp/run/checkpoints/trainer.ckpt" \
    --data "$tmp/data" --bank "$NPID_BANK" --against recomputed >"$tmp/eval.jsonl" \
    2>"$tmp/evald.log" || fail "evald on the checkpoint: exit $?"
grep -q '"against":"recomputed"' "$tmp/eval.jsonl" || fail "evald wrote no result"
timeout -k 5 60 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/small" --model resnet20 \
    --epochs 1 --batch 50 --memory 0.000001 --no-progress >"$tmp/small.log" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "--memory 0.000001 should fail with exit 1, got $rc"
grep -q "memory: a step needs .* GB even one row per forward" "$tmp/small.log" ||
    fail "the refusal does not say what the step needs"
echo "$name: a step of 100 rows in 4 forwards of 25 trained an epoch; evald measured it"
