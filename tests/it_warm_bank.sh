#!/bin/sh
# The warm bank is the untrained network's features: `--bank-init warm --init-only` on a
# synthetic set, then every bank row must have cosine >= 0.99 with the feature npid-evald
# recomputes for the same training image from the written checkpoint (test transform, BN in
# eval mode), and the untrained network's kNN against the bank must equal the recomputed one.
set -u
name=it_warm_bank
. "$(dirname "$0")/lib_trainer.sh"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 40 --test-per-class 10 >/dev/null 2>&1 || fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg loader "$bin/npid-loader" --data "$tmp/data" # the warm start's images
timeout -k 5 200 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" --model resnet20 \
    --batch 50 --bank-init warm --init-only --no-progress >>"$tmp/trainer.log" 2>&1 || fail "trainer --init-only"
ck=$tmp/run/checkpoints/trainer.ckpt
[ -f "$ck" ] || fail "no checkpoint written"
"$bin/npid-evald" embed --data "$tmp/data" --checkpoint "$ck" --split train --format npy \
    --out "$tmp/recomputed.npy" >>"$tmp/evald.log" 2>&1 || fail "embed recomputed"
"$bin/npid-evald" embed --data "$tmp/data" --bank "$NPID_BANK" --format tsv \
    --out "$tmp/bank-tsv" >>"$tmp/evald.log" 2>&1 || fail "embed bank"
"$py" - "$tmp/recomputed.npy" "$tmp/bank-tsv" <<'PY' || fail "bank rows differ from the recomputed features"
import sys, os, numpy as np
rec = np.load(sys.argv[1])
vec = [f for f in os.listdir(sys.argv[2]) if 'vector' in f or 'embedding' in f]
bank = np.loadtxt(os.path.join(sys.argv[2], sorted(vec)[0]), delimiter='\t', dtype=np.float64)
assert rec.shape == bank.shape, (rec.shape, bank.shape)
cos = (rec * bank).sum(1) / np.linalg.norm(rec, axis=1) / np.linalg.norm(bank, axis=1)
print(f"rows {len(cos)}: cosine min {cos.min():.4f} mean {cos.mean():.4f}", file=sys.stderr)
sys.exit(0 if cos.min() >= 0.99 else 1)
PY
"$bin/npid-evald" --once --checkpoint "$ck" --data "$tmp/data" --bank "$NPID_BANK" --against both \
    >"$tmp/knn.jsonl" 2>>"$tmp/evald.log" || fail "evald --once"
b=$(sed -n 's/.*"against":"bank".*"top1":\([0-9.]*\).*/\1/p' "$tmp/knn.jsonl")
r=$(sed -n 's/.*"against":"recomputed".*"top1":\([0-9.]*\).*/\1/p' "$tmp/knn.jsonl")
[ -n "$b" ] && [ -n "$r" ] || { cat "$tmp/knn.jsonl" >&2; fail "no kNN results"; }
echo "$name: untrained kNN top-1 bank $b recomputed $r" >&2
awk -v b="$b" -v r="$r" 'BEGIN { d = b - r; exit !(d < 0.005 && d > -0.005) }' || fail "kNN bank $b != recomputed $r"
echo "$name: ok"
