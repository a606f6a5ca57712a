#!/bin/sh
# --refresh-bank (on in the default recipe): at the end of the last epoch the trainer sets
# every bank row to the trained network's feature of its image under the test transform.
# After two epochs of the default recipe on a synthetic set, every bank row must have cosine
# >= 0.9999 with the feature npid-evald recomputes from the final checkpoint, and the kNN
# against the bank must equal the recomputed one; the same run with --refresh-bank false
# must not pass that check (its rows are momentum averages of augmented views).
set -u
name=it_trainer_refresh
. "$(dirname "$0")/lib_trainer.sh"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 40 --test-per-class 10 >/dev/null 2>&1 || fail "synth"
start_bg loader "$bin/npid-loader" --data "$tmp/data"

bankd_pid=""
train() { # train RUN FLAGS...: two epochs of the default recipe, in a bankd of its own
    rn=$1; shift
    [ -n "$bankd_pid" ] && { kill "$bankd_pid" 2>/dev/null; wait "$bankd_pid" 2>/dev/null; }
    start_bg "bankd-$rn" "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank-$rn"
    bankd_pid=$last_pid
    timeout -k 5 300 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/$rn" --run "$rn" \
        --epochs 2 --batch 50 --no-progress "$@" >>"$tmp/$rn.log" 2>&1 || fail "trainer ($rn)"
}
min_cosine() { # min_cosine RUN: the least cosine of a bank row with its recomputed feature
    ck=$tmp/$1/checkpoints/trainer.ckpt
    "$bin/npid-evald" embed --data "$tmp/data" --checkpoint "$ck" --split train --format npy \
        --out "$tmp/$1-rec.npy" >>"$tmp/evald.log" 2>&1 || fail "embed recomputed ($1)"
    "$bin/npid-evald" embed --data "$tmp/data" --bank "$NPID_BANK" --format npy \
        --out "$tmp/$1-bank.npy" >>"$tmp/evald.log" 2>&1 || fail "embed bank ($1)"
    "$py" - "$tmp/$1-rec.npy" "$tmp/$1-bank.npy" <<'PY' || fail "cosine ($1)"
import sys, numpy as np
rec, bank = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
assert rec.shape == bank.shape, (rec.shape, bank.shape)
cos = (rec * bank).sum(1) / np.linalg.norm(rec, axis=1) / np.linalg.norm(bank, axis=1)
print(f"{cos.min():.6f}")
PY
}

train stale --refresh-bank false
stale=$(min_cosine stale)
grep -q "refresh:" "$tmp/stale.log" && fail "--refresh-bank false refreshed the bank"
awk -v c="$stale" 'BEGIN { exit !(c < 0.99) }' ||
    fail "without the refresh the bank already equals the recomputed features (cosine min $stale)"

train fresh
grep -q "refresh: bank rows set to the trained network's features of 400 images" "$tmp/fresh.log" ||
    fail "the default recipe did not refresh the bank: $(grep -E 'refresh|ended' "$tmp/fresh.log")"
fresh=$(min_cosine fresh)
echo "$name: bank vs recomputed cosine min: $stale without the refresh, $fresh with it" >&2
awk -v c="$fresh" 'BEGIN { exit !(c >= 0.9999) }' || fail "refreshed bank rows differ (cosine min $fresh)"

ck=$tmp/fresh/checkpoints/trainer.ckpt
"$bin/npid-evald" --once --checkpoint "$ck" --data "$tmp/data" --bank "$NPID_BANK" --against both \
    >"$tmp/knn.jsonl" 2>>"$tmp/evald.log" || fail "evald --once"
b=$(sed -n 's/.*"against":"bank".*"top1":\([0-9.]*\).*/\1/p' "$tmp/knn.jsonl")
r=$(sed -n 's/.*"against":"recomputed".*"top1":\([0-9.]*\).*/\1/p' "$tmp/knn.jsonl")
[ -n "$b" ] && [ -n "$r" ] || { cat "$tmp/knn.jsonl" >&2; fail "no kNN results"; }
[ "$b" = "$r" ] || fail "kNN against the refreshed bank $b != recomputed $r"
echo "$name: ok (kNN top-1 $b against both)"
