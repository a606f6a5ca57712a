#!/bin/sh
# A run whose loss becomes non-finite stops with a clear message and exit 1, publishes an
# "end" event with status "failed", and keeps the last checkpoint from before the bad step.
# Also: usage errors exit 2, --help exits 0 on stdout, a missing dataset exits 1 with a reason.
set -u
name=it_trainer_nan
. "$(dirname "$0")/lib_trainer.sh"

tr=$bin/npid-trainer
"$tr" --help >"$tmp/help" 2>/dev/null && grep -q "usage: npid-trainer" "$tmp/help" || fail "--help"
"$tr" --data x --lr abc 2>/dev/null; [ $? -eq 2 ] || fail "bad --lr should exit 2"
"$tr" --data x --model resnet99 2>"$tmp/usage.log"; [ $? -eq 2 ] || fail "bad --model should exit 2"
grep -q "resnet20" "$tmp/usage.log" || fail "bad --model: the message should list the choices"
"$tr" 2>/dev/null; [ $? -eq 2 ] || fail "missing --data should exit 2"
timeout 60 "$tr" --data "$tmp/nowhere" --run-dir "$tmp/r0" 2>"$tmp/missing.log"; rc=$?
[ $rc -eq 1 ] || fail "missing dataset: exit $rc"
grep -q "nowhere" "$tmp/missing.log" || fail "missing dataset: the reason should name the path"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg loader "$bin/npid-loader" --data "$tmp/data"
# one sane epoch (checkpointed), then a learning rate that blows the weights up
timeout -k 5 120 "$tr" --data "$tmp/data" --run-dir "$tmp/run" --model resnet20 --epochs 1 \
    --batch 50 --nce-k 64 --bank-init uniform --no-progress >>"$tmp/trainer.log" 2>&1 || fail "first epoch"
[ -f "$tmp/run/checkpoints/trainer.ckpt" ] || fail "no checkpoint after the first epoch"
cp "$tmp/run/checkpoints/trainer.ckpt" "$tmp/good.ckpt"
timeout -k 5 120 "$tr" --data "$tmp/data" --run-dir "$tmp/run" --model resnet20 --epochs 3 \
    --batch 50 --nce-k 64 --resume --nce-t 0.0001 --no-progress >>"$tmp/trainer.log" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "non-finite loss: exit $rc, expected 1"
grep -q "the loss is" "$tmp/trainer.log" || fail "no clear message about the loss"
cmp -s "$tmp/good.ckpt" "$tmp/run/checkpoints/trainer.ckpt" ||
    fail "the checkpoint from before the bad step was replaced"
grep '"type":"end"' "$tmp/run/metrics.jsonl" | tail -1 | grep -q '"status":"failed"' ||
    fail "no failed end event"
echo "it_trainer_nan: non-finite loss stopped the run with exit 1, checkpoint kept"
