#!/bin/sh
# A flat, unlabelled folder (images at the dataset root and in nested sub-folders, no train/
# and no class folders) is detected, and trains one epoch through real npid-bankd +
# npid-loader + npid-trainer, the trainer logging that it trains without labels; loader and
# trainer agree on its manifest. `npid-loader check` reports the skipped file by name and
# that there is no test split; a ROOT/train without class folders is read flat too. npid-evald
# refuses kNN and linear with one line naming the missing labels.
set -u
name=it_dataset_flat
. "$(dirname "$0")/lib_trainer.sh"

"$bin/npid-loader" synth --out "$tmp/syn" --per-class 8 --test-per-class 0 --log-level warn \
    >/dev/null 2>&1 || fail "synth"
# ROOT/<class>_<n>.jpg for five classes, ROOT/more/2020/<class>/... for the other five
flat=$tmp/flat
mkdir -p "$flat/more/2020"
k=0
for c in "$tmp"/syn/train/*; do
    cn=$(basename "$c")
    if [ $k -lt 5 ]; then
        for f in "$c"/*.jpg; do mv "$f" "$flat/${cn}_$(basename "$f")"; done
    else
        mv "$c" "$flat/more/2020/$cn"
    fi
    k=$((k + 1))
done
echo "holiday photos" >"$flat/README.txt"
[ "$(find "$flat" -name '*.jpg' | wc -l)" -eq 80 ] || fail "fixture: not 80 images"

# check: every image, the skip named with its reason, no test split
timeout 60 "$bin/npid-loader" check --data "$flat" >"$tmp/check.out" 2>"$tmp/check.log" ||
    fail "check failed: $(cat "$tmp/check.out")"
grep -q '"split": "train", "images": 80, "ok": 80, "bad": 0, "skipped": 1, "labelled": 0, "classes": 0' \
    "$tmp/check.out" || fail "check summary: $(grep images "$tmp/check.out")"
grep -q '"path": "README.txt", "skipped": "not an image name' "$tmp/check.out" ||
    fail "the skipped file is not named: $(cat "$tmp/check.out")"
grep -q "flat root: 80 images, unlabelled" "$tmp/check.log" || fail "layout not logged: $(cat "$tmp/check.log")"
grep -q "no test split" "$tmp/check.log" || fail "no test split not said"
# ROOT/train with images and no class folders: flat as well
mkdir -p "$tmp/flat2/train"
cp "$flat"/*.jpg "$tmp/flat2/train/"
timeout 60 "$bin/npid-loader" check --data "$tmp/flat2" --split train >"$tmp/check2.out" 2>"$tmp/check2.log" ||
    fail "check flat2 failed"
grep -q '"images": 40, "ok": 40, "bad": 0, "skipped": 0, "labelled": 0' "$tmp/check2.out" ||
    fail "flat2: $(cat "$tmp/check2.out")"
grep -q "flat train/: 40 images, unlabelled (no class folders)" "$tmp/check2.log" ||
    fail "flat2: detection not logged: $(cat "$tmp/check2.log")"

# one epoch through real processes
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg loader "$bin/npid-loader" --data "$flat"
timeout -k 5 180 "$bin/npid-trainer" --data "$flat" --run-dir "$tmp/run" --model resnet20 --epochs 1 \
    --batch 40 --nce-k 16 --loss infonce --bank-init uniform --metrics-every 1 --no-progress \
    >>"$tmp/trainer.log" 2>&1 || fail "the flat epoch failed"
grep -q "dataset layout: flat root: 80 images, unlabelled .*no labels: training unlabelled" "$tmp/trainer.log" ||
    fail "the trainer did not say it trains without labels"
grep -q "80 training images in 0 classes" "$tmp/trainer.log" || fail "trainer image count"
grep -q "manifest mismatch" "$tmp/trainer.log" "$tmp/loader.log" && fail "loader and trainer disagree"
[ "$(grep -c '"type":"metrics"' "$tmp/run/metrics.jsonl")" -eq 2 ] || fail "expected 2 steps of 40"
[ -f "$tmp/run/checkpoints/trainer.ckpt" ] || fail "no checkpoint"

# evaluation needs labels: one line, exit 1
for cmd in "--once --against bank" "linear"; do
    # shellcheck disable=SC2086
    timeout 60 "$bin/npid-evald" $cmd --checkpoint "$tmp/run/checkpoints/trainer.ckpt" --data "$flat" \
        --log-level warn >"$tmp/ev.out" 2>"$tmp/ev.err"
    rc=$?
    [ $rc -eq 1 ] || fail "evald $cmd: exit $rc, expected 1: $(cat "$tmp/ev.err")"
    # (the BLAS and kernel banners are printed before --log-level applies)
    [ "$(grep -vc ' blas: \| kernels: ' "$tmp/ev.err")" -eq 1 ] || fail "evald $cmd: not one line: $(cat "$tmp/ev.err")"
    grep -q "no labels to evaluate with: the train split is unlabelled" "$tmp/ev.err" ||
        fail "evald $cmd: $(cat "$tmp/ev.err")"
    [ -s "$tmp/ev.out" ] && fail "evald $cmd wrote a result"
done
# neighbours of a file among the unlabelled training images: label and class are null
q=$(find "$flat/more" -name '*.jpg' | head -1)
echo "$q" >"$tmp/q.txt"
timeout 60 "$bin/npid-evald" neighbours --checkpoint "$tmp/run/checkpoints/trainer.ckpt" \
    --data "$flat" --files "$tmp/q.txt" --top 3 >"$tmp/nb.jsonl" 2>"$tmp/nb.err" ||
    fail "neighbours --files on a flat set: $(cat "$tmp/nb.err")"
/usr/bin/python3 - "$tmp/nb.jsonl" <<'PY' || fail "neighbours on a flat set: $(cat "$tmp/nb.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 1 and "label" not in rows[0], rows
nb = rows[0]["neighbours"]
assert len(nb) == 3 and all(n["label"] is None and n["class"] is None for n in nb), nb
assert nb[0]["sim"] > 0.999, nb[0]  # the query is a training image: itself first
PY
echo "$name: 80 unlabelled images (top level and nested) trained $(grep -c '"type":"metrics"' "$tmp/run/metrics.jsonl") steps; evald refuses without labels; neighbours carry null labels"
