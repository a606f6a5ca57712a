#!/bin/sh
# The two-layer head (--head H): the trainer builds and checkpoints it, and npid-evald rebuilds
# the same network from the checkpoint alone (a network without the head has other parameter
# counts and is refused), measuring it against the bank and on recomputed features.
set -u
name=it_trainer_head
. "$(dirname "$0")/lib_trainer.sh"
"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 4 >/dev/null 2>&1 ||
    fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg loader "$bin/npid-loader" --data "$tmp/data"
timeout -k 5 120 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" --model resnet20 \
    --head 24 --epochs 1 --batch 50 --no-progress >>"$tmp/trainer.log" 2>&1 ||
    fail "training with --head 24: exit $?"
grep -q "head mlp 24" "$tmp/trainer.log" || fail "the trainer log does not describe the head"
grep -q '"images":200,"expected":200' "$tmp/run/metrics.jsonl" ||
    fail "the epoch did not train 200 images"
timeout 120 "$bin/npid-evald" --once --checkpoint "$tmp/run/checkpoints/trainer.ckpt" \
    --data "$tmp/data" --bank "$NPID_BANK" --against both >"$tmp/eval.jsonl" 2>"$tmp/evald.log" ||
    fail "evald on the checkpoint with a head: exit $?"
grep -q '"against":"bank"' "$tmp/eval.jsonl" || fail "evald wrote no bank result"
grep -q '"against":"recomputed"' "$tmp/eval.jsonl" || fail "evald wrote no recomputed result"
"$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/x" --head -1 2>"$tmp/usage.log"
[ $? -eq 2 ] || fail "--head -1 should exit 2"
grep -q -- "head" "$tmp/usage.log" || fail "the usage error should name --head"
echo "$name: trained with a two-layer head; evald rebuilt it from the checkpoint"
