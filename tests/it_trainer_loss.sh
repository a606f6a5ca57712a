#!/bin/sh
# --loss: usage errors exit 2 with a specific reason; auto resolves to nce for the reference
# and imagenet presets; the cifar preset's two-view objective gives way to a named --loss or
# --nce-k (one view) and keeps with --views; a real --loss infonce run
# trains an epoch with finite losses, logs its loss kind, and never estimates Z (NCE would);
# --views 2 (two augmentations per image, each the other's positive) trains an epoch through
# a real loader (the trainer rejects a batch without both views).
set -u
name=it_trainer_loss
. "$(dirname "$0")/lib_trainer.sh"

tr=$bin/npid-trainer
"$tr" --data x --loss bogus 2>"$tmp/u1.log"; [ $? -eq 2 ] || fail "--loss bogus should exit 2"
grep -q "infonce" "$tmp/u1.log" || fail "--loss bogus: the message should list the choices"
"$tr" --data x --loss infonce --nce-k 0 2>"$tmp/u2.log"; [ $? -eq 2 ] ||
    fail "--loss infonce --nce-k 0 should exit 2"
grep -q "nce-k > 0" "$tmp/u2.log" || fail "--loss infonce, nce-k 0: no reason given"
"$tr" --data x --loss softmax --nce-k 16 2>"$tmp/u3.log"; [ $? -eq 2 ] ||
    fail "--loss softmax with an explicit --nce-k 16 should exit 2"
grep -q "drop --nce-k 16" "$tmp/u3.log" || fail "--loss softmax --nce-k 16: no reason given"
"$tr" --data x --views 2 --loss nce 2>"$tmp/u4.log"; [ $? -eq 2 ] || fail "--views 2 with nce should exit 2"
grep -q "needs --loss infonce" "$tmp/u4.log" || fail "--views 2 without infonce: no reason given"
"$tr" --data x --views 2 --loss infonce --nce-k 64 --prox-lambda 1 2>/dev/null; [ $? -eq 2 ] ||
    fail "--views 2 with --prox-lambda should exit 2"
"$tr" --data x --views 3 2>/dev/null; [ $? -eq 2 ] || fail "--views 3 should exit 2"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
# the effective configuration line, without training: a missing run dir parent is not
# needed; --init-only stops before the first step but needs bankd, so read the config line
# of runs that fail on a missing dataset instead (logged before the dataset is opened)
for p in reference:nce imagenet:nce; do
    timeout 30 "$tr" --data "$tmp/nowhere" --run-dir "$tmp/r-${p%%:*}" --preset "${p%%:*}" \
        2>"$tmp/cfg-${p%%:*}.log"
    grep -q "loss=${p#*:}\b" "$tmp/cfg-${p%%:*}.log" ||
        fail "--preset ${p%%:*}: --loss auto should resolve to ${p#*:}"
done
# the cifar preset's objective is two views, InfoNCE, one bank row; naming --loss or --nce-k
# selects that objective with one view (m = 4096 unless given), --views keeps two
objective() { # objective "FLAGS" "EXPECTED": the config line has every key=value of EXPECTED
    timeout 30 "$tr" --data "$tmp/nowhere" --run-dir "$tmp/r-obj" $1 2>"$tmp/cfg-obj.log"
    for kv in $2; do
        grep -q " $kv " "$tmp/cfg-obj.log" || fail "flags '$1': expected $kv in $(grep -o 'nce-k=[^ ]* loss=[^ ]* views=[^ ]*' "$tmp/cfg-obj.log")"
    done
}
objective "" "nce-k=1 loss=infonce views=2"
objective "--preset cifar --nce-k 4096" "nce-k=4096 loss=nce views=1"
objective "--nce-k 0" "nce-k=0 loss=softmax views=1"
objective "--loss softmax" "nce-k=0 loss=softmax views=1"
objective "--loss infonce" "nce-k=4096 loss=infonce views=1"
objective "--loss nce" "nce-k=4096 loss=nce views=1"
objective "--nce-k 64 --views 2" "nce-k=64 loss=infonce views=2"
objective "--preset reference --loss infonce" "nce-k=4096 loss=infonce views=1"

start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
bankd=$last_pid
start_bg loader "$bin/npid-loader" --data "$tmp/data"
timeout -k 5 120 "$tr" --data "$tmp/data" --run-dir "$tmp/run" --model resnet20 --epochs 1 \
    --batch 50 --nce-k 64 --loss infonce --bank-init uniform --metrics-every 1 --no-progress \
    >>"$tmp/trainer.log" 2>&1 || fail "the infonce epoch failed"
grep -q "training: .*loss infonce" "$tmp/trainer.log" || fail "the loss kind is not logged at start"
m=$tmp/run/metrics.jsonl
[ "$(grep -c '"type":"metrics"' "$m")" -ge 4 ] || fail "fewer than 4 metrics events"
$py - "$m" <<'PY' || fail "metrics"
import json, math, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"type":"metrics"' in l]
for e in ev:
    assert math.isfinite(e["loss"]) and e["loss"] > 0, e
    assert e["z"] == 0 and e["z_est"] == 0, "InfoNCE estimated Z: %r" % e
# with 64 negatives the untrained loss is near log(65) = 4.17 (it is a 65-way cross entropy)
assert 2.0 < ev[0]["loss"] < 8.0, ev[0]
PY
# a bank serves one run: a fresh bankd for the second
kill "$bankd"; wait "$bankd" 2>/dev/null
start_bg bankd2 "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank2"
timeout -k 5 120 "$tr" --data "$tmp/data" --run-dir "$tmp/run2" --model resnet20 --epochs 1 \
    --batch 50 --nce-k 64 --loss infonce --views 2 --bank-init uniform --metrics-every 1 --task-deadline 1 \
    --no-progress >>"$tmp/trainer2.log" 2>&1 || fail "the two-view epoch failed"
grep -q "training: .*loss infonce, views 2" "$tmp/trainer2.log" || fail "views 2 not logged at start"
grep -q "epoch 0 .*exactly-once\|exactly-once violated" "$tmp/trainer2.log" && fail "exactly-once violated"
$py - "$tmp/run2/metrics.jsonl" <<'PY' || fail "two-view metrics"
import json, math, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"type":"metrics"' in l]
assert len(ev) == 4, len(ev)
for e in ev:
    assert math.isfinite(e["loss"]) and e["loss"] > 0 and e["z"] == 0, e
PY
echo "$name: usage errors exit 2, presets keep their objective, infonce trained $(grep -c '"type":"metrics"' "$m") steps, first loss $(sed -n 's/.*"type":"metrics".*"loss":\([0-9.e+-]*\).*/\1/p' "$m" | head -1), two views 4 steps (first loss $(sed -n 's/.*"type":"metrics".*"loss":\([0-9.e+-]*\).*/\1/p' "$tmp/run2/metrics.jsonl" | head -1))"
