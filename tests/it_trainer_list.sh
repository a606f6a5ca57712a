#!/bin/sh
# A dataset given by file lists alone (no --data): the trainer and the loader open the same
# list (same manifest), train, and evald measures the checkpoint with the train and test lists.
set -u
name=it_trainer_list
. "$(dirname "$0")/lib_trainer.sh"
"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 4 >/dev/null 2>&1 || fail "synth"
# absolute paths in one list, relative ones in the other: both resolve
for f in "$tmp"/data/train/*/*.jpg; do printf '%s\t%s\n' "$f" "$(basename "$(dirname "$f")")"; done \
    >"$tmp/train.tsv"
(cd "$tmp/data" && for f in test/*/*.jpg; do printf '%s\t%s\n' "$f" "$(basename "$(dirname "$f")")"; done) \
    >"$tmp/data/test.tsv"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg loader "$bin/npid-loader" --list "$tmp/train.tsv"
timeout -k 5 120 "$bin/npid-trainer" --list "$tmp/train.tsv" --run-dir "$tmp/run" --model resnet20 \
    --epochs 1 --batch 50 --nce-k 64 --bank-init uniform --no-progress >>"$tmp/trainer.log" 2>&1 ||
    fail "training on --list alone: exit $?"
grep -q '"images":200,"expected":200' "$tmp/run/metrics.jsonl" || fail "the epoch did not train 200 images"
command -v "$bin/npid-evald" >/dev/null || fail "npid-evald not built"
timeout 120 "$bin/npid-evald" --once --checkpoint "$tmp/run/checkpoints/trainer.ckpt" \
    --list "$tmp/train.tsv" --test-list "$tmp/data/test.tsv" --bank "$NPID_BANK" --against bank \
    >"$tmp/eval.jsonl" 2>"$tmp/evald.log" || fail "evald on the lists: exit $?"
grep -q '"against":"bank"' "$tmp/eval.jsonl" || fail "evald wrote no result"
"$bin/npid-trainer" --run-dir "$tmp/x" 2>"$tmp/usage.log"; [ $? -eq 2 ] || fail "no --data and no --list should exit 2"
grep -q -- "--list FILE" "$tmp/usage.log" || fail "the usage error should name --list"
echo "$name: trained and evaluated from file lists alone"
