#!/bin/sh
# --train-splits train,unlabeled (the STL-10 / tinyimagenet10 layout): ROOT/train/<class>/
# plus a class-less ROOT/unlabeled/ (with a nested sub-folder) form one train split that
# trains one epoch through real npid-bankd + npid-loader + npid-trainer (the loader by flag,
# the trainer by NPID_TRAIN_SPLITS); the bank has a row for every image, labelled first. A
# loader reading train/ alone is refused (the manifest covers the unlabelled files). kNN
# against the bank votes with the labelled rows only (n_bank = labelled images), and an evald
# that does not know about unlabeled/ is refused by the bank's row count.
set -u
name=it_dataset_unlabeled
. "$(dirname "$0")/lib_trainer.sh"

data=$tmp/data
"$bin/npid-loader" synth --out "$data" --per-class 6 --test-per-class 2 --seed 1 --log-level warn \
    >/dev/null 2>&1 || fail "synth"
"$bin/npid-loader" synth --out "$tmp/pool" --per-class 4 --test-per-class 0 --seed 2 --log-level warn \
    >/dev/null 2>&1 || fail "synth pool"
mkdir -p "$data/unlabeled/part2"
k=0
for f in "$tmp"/pool/train/*/*.jpg; do
    c=$(basename "$(dirname "$f")")
    if [ $((k % 4)) -eq 0 ]; then mv "$f" "$data/unlabeled/part2/u$k.jpg"; else mv "$f" "$data/unlabeled/${c}_$k.jpg"; fi
    k=$((k + 1))
done
[ $k -eq 40 ] || fail "fixture: $k unlabelled images"

timeout 60 "$bin/npid-loader" check --data "$data" --train-splits train,unlabeled >"$tmp/check.out" \
    2>"$tmp/check.log" || fail "check: $(cat "$tmp/check.out")"
grep -q '"split": "train", "images": 100, "ok": 100, "bad": 0, "skipped": 0, "labelled": 60, "classes": 10' \
    "$tmp/check.out" || fail "check train: $(cat "$tmp/check.out")"
grep -q '"split": "test", "images": 20, "ok": 20, "bad": 0, "skipped": 0, "labelled": 20' "$tmp/check.out" ||
    fail "check test: $(cat "$tmp/check.out")"
grep -q '"split": "all", "images": 120' "$tmp/check.out" || fail "check all: $(tail -1 "$tmp/check.out")"
grep -q "ImageFolder train/: 60 images in 10 classes + flat unlabeled/: 40 images, unlabelled" "$tmp/check.log" ||
    fail "layout not logged: $(cat "$tmp/check.log")"

start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg trainer env NPID_TRAIN_SPLITS=train,unlabeled timeout -k 5 180 "$bin/npid-trainer" \
    --data "$data" --run-dir "$tmp/run" --model resnet20 --epochs 1 --batch 50 --nce-k 16 \
    --loss infonce --bank-init uniform --metrics-every 1 --no-progress
trainer=$last_pid
# before any good loader (the trainer waits for one): a loader reading train/ alone has
# another manifest and is refused
timeout 60 "$bin/npid-loader" --data "$data" >"$tmp/loader-alone.log" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "a loader without --train-splits: exit $rc, expected 1 (refused)"
grep -q "manifest mismatch" "$tmp/loader-alone.log" || fail "the refusal does not name the manifest"
start_bg loader "$bin/npid-loader" --data "$data" --train-splits train,unlabeled
wait "$trainer" || fail "the train+unlabeled epoch failed"
grep -q "100 training images in 10 classes" "$tmp/trainer.log" || fail "trainer image count"
grep -q "dataset layout: ImageFolder train/: 60 images in 10 classes + flat unlabeled/: 40 images" \
    "$tmp/trainer.log" || fail "trainer layout line"
grep -q "epoch 0 done: 100 images trained (100 expected, 0 never, 0 twice)" "$tmp/trainer.log" ||
    fail "the epoch did not train every image exactly once"
[ "$(grep -c '"type":"metrics"' "$tmp/run/metrics.jsonl")" -eq 2 ] || fail "expected 2 steps of 50"

# kNN against the bank: 100 rows, the 60 labelled ones vote
ck=$tmp/run/checkpoints/trainer.ckpt
timeout 120 "$bin/npid-evald" --once --checkpoint "$ck" --data "$data" --train-splits train,unlabeled \
    --against bank --k 5 >"$tmp/eval.jsonl" 2>"$tmp/evald.log" || fail "evald --once failed"
grep -q '"n_bank":60' "$tmp/eval.jsonl" || fail "kNN used other rows than the 60 labelled: $(cat "$tmp/eval.jsonl")"
grep -q '"n_query":20' "$tmp/eval.jsonl" || fail "queries: $(cat "$tmp/eval.jsonl")"
timeout 60 "$bin/npid-evald" --once --checkpoint "$ck" --data "$data" --against bank \
    >"$tmp/eval2.jsonl" 2>"$tmp/evald2.log"
[ $? -eq 1 ] || fail "evald without --train-splits should fail against this bank"
grep -q "holds 100 x 128, but the train split has 60 images" "$tmp/evald2.log" ||
    fail "no reason for the row count: $(tail -2 "$tmp/evald2.log")"
echo "$name: 60 labelled + 40 unlabelled images trained one epoch, a train/-only loader refused, kNN votes with the 60 labelled rows of 100"
