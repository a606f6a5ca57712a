#!/bin/sh
# npid-evald linear against scikit-learn: the same features (exported with `embed`, with
# labels, as JSON lines) fitted by sklearn's LogisticRegression (multinomial, L-BFGS) on
# StandardScaler features with C = 1 / (lambda n) must score within 0.5 points of npid's
# test top-1 at the same lambda, and agree on at least 98 % of the test predictions. Also: the
# held-out choice of lambda, the pooled layer, train features averaged over augmented views
# (--train-views), the raw-pixel probe, and the error paths (a single-class train split, test
# classes the used train images lack, bad flags) and SIGTERM during a fit.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
ev=$bin/npid-evald
py=/usr/bin/python3
[ -x "$ev" ] && [ -x "$bin/npid-loader" ] ||
    { echo "it_evald_linear: npid-evald or npid-loader not built" >&2; exit 77; }
$py -c 'import sklearn, numpy' 2>/dev/null ||
    { echo "it_evald_linear: /usr/bin/python3 with sklearn (python3-sklearn) needed" >&2; exit 77; }

tmp=$(mktemp -d /tmp/npid-it-evald-linear.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
fail() { echo "it_evald_linear: FAIL: $*" >&2; [ -f "$tmp/err" ] && tail -5 "$tmp/err" >&2; exit 1; }
T="timeout -k 5 120"
export NPID_LOG_LEVEL=warn

"$bin/npid-loader" synth --out "$tmp/data" --per-class 60 --test-per-class 50 >/dev/null 2>&1 ||
    fail "synth dataset"
$T "$bin/tools/npid-mkckpt" --out "$tmp/c.ckpt" --model resnet20 --seed 3 2>"$tmp/err" || fail "mkckpt"

# the same features for sklearn, with their labels
for s in train test; do
    $T "$ev" embed --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --split $s --format jsonl \
        --out "$tmp/$s.jsonl" 2>"$tmp/err" || fail "embed $s"
done

lam=0.01
$T "$ev" linear --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --layer embed --lambda $lam \
    --tol 1e-6 >"$tmp/fixed.jsonl" 2>"$tmp/err" || fail "linear --lambda $lam"
$py - "$tmp" $lam <<'EOF' || fail "linear differs from scikit-learn"
import json, sys, warnings
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
tmp, lam = sys.argv[1], float(sys.argv[2])
def load(s):
    rows = [json.loads(l) for l in open(f"{tmp}/{s}.jsonl")]
    return np.array([r["v"] for r in rows], dtype=np.float64), np.array([r["label"] for r in rows])
Xtr, ytr = load("train")
Xte, yte = load("test")
sc = StandardScaler().fit(Xtr)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    clf = LogisticRegression(C=1.0 / (lam * len(ytr)), multi_class="multinomial", solver="lbfgs",
                             max_iter=10000, tol=1e-8).fit(sc.transform(Xtr), ytr)
ref = clf.score(sc.transform(Xte), yte)
r = json.loads(open(f"{tmp}/fixed.jsonl").read())
assert r["type"] == "linear" and r["layer"] == "embed" and r["dim"] == 128, r
assert r["lambda"] == lam and r["lambda_from"] == "flag" and r["converged"], r
assert r["n_train"] == len(ytr) == 600 and r["n_query"] == len(yte) == 500, r
assert len(r["per_class"]) == 10, r
pc = np.mean(list(r["per_class"].values()))
assert abs(pc - r["top1"]) < 1e-9, (pc, r["top1"])  # balanced test split
print(f"it_evald_linear: npid top1 {100 * r['top1']:.2f} %, scikit-learn {100 * ref:.2f} % "
      f"(lambda {lam}, {r['iters']} iterations)")
assert abs(r["top1"] - ref) <= 0.005, (r["top1"], ref)
assert r["top1"] > 0.2, r["top1"]  # well above chance: the probe learns something
EOF

# lambda chosen on a held-out fifth of the train split; the pooled layer (64-d for resnet20)
$T "$ev" linear --data "$tmp/data" --checkpoint "$tmp/c.ckpt" >"$tmp/sel.jsonl" 2>"$tmp/err" ||
    fail "linear (held-out lambda)"
$py - "$tmp/sel.jsonl" <<'EOF' || fail "held-out selection"
import json, sys
r = json.loads(open(sys.argv[1]).read())
assert r["layer"] == "pool" and r["dim"] == 64 and r["lambda_from"] == "held-out", r
v = r["val_top1"]
assert len(v) == 15, v
best = max(v.values())
assert abs(v[f"{r['lambda']:g}"] - best) < 1e-12, (r["lambda"], v)
assert 0.0 <= r["top1"] <= r["top5"] <= 1.0, r
EOF

# --train-views 3: each train feature the mean of 3 train-transform views. Seeded per (view,
# image), so a run with another batch size (7: an image's views span two forwards) and thread
# count gives the same line; the held-out curve, computed on the averaged train features only,
# differs from the one-view fit's (identical were the flag ignored).
$T "$ev" linear --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --train-views 3 \
    >"$tmp/tv3.jsonl" 2>"$tmp/err" || fail "linear --train-views 3"
$T "$ev" linear --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --train-views 3 --batch 7 \
    --threads 2 >"$tmp/tv3b.jsonl" 2>"$tmp/err" || fail "linear --train-views 3 --batch 7"
$py - "$tmp/sel.jsonl" "$tmp/tv3.jsonl" "$tmp/tv3b.jsonl" <<'EOF' || fail "--train-views 3"
import json, sys
one, a, b = (json.loads(open(f).read()) for f in sys.argv[1:])
assert one["train_views"] == 1 and a["train_views"] == 3, (one["train_views"], a["train_views"])
def fields(r):
    return {k: v for k, v in r.items() if k not in ("seq", "time", "seconds", "seconds_features")}
assert fields(a) == fields(b), ("not deterministic", fields(a), fields(b))
assert a["n_train"] == one["n_train"] and a["dim"] == one["dim"] == 64, (a, one)
assert a["val_top1"] != one["val_top1"], ("same held-out curve as one test view", a["val_top1"])
assert 0.0 <= a["top1"] <= a["top5"] <= 1.0, a
EOF

# the raw-pixel probe, also with 2 augmented views per train image
$T "$ev" linear --data "$tmp/data" --pixels --size 16 --lambda 0.1 >"$tmp/px.jsonl" 2>"$tmp/err" ||
    fail "linear --pixels"
grep -q '"layer":"pixels","dim":768,"train_views":1,' "$tmp/px.jsonl" ||
    fail "pixel probe: $(cat "$tmp/px.jsonl")"
$T "$ev" linear --data "$tmp/data" --pixels --size 16 --lambda 0.1 --train-views 2 \
    >"$tmp/px2.jsonl" 2>"$tmp/err" || fail "linear --pixels --train-views 2"
grep -q '"layer":"pixels","dim":768,"train_views":2,' "$tmp/px2.jsonl" ||
    fail "pixel probe, 2 views: $(cat "$tmp/px2.jsonl")"

# SIGTERM during a long fit: it stops at the next iteration with a reason, no result line. The
# work after the features (16 fits of 3072-d pixels at tol 1e-12: the held-out lambda grid,
# then the refit) lasts seconds; the signal follows the log line that ends the features within
# 0.1 s.
NPID_LOG_LEVEL=info $T "$ev" linear --data "$tmp/data" --pixels --size 32 --tol 1e-12 \
    --max-iter 1000000 >"$tmp/term.jsonl" 2>"$tmp/term.log" &
lp=$!
i=0
until grep -q "features in .* choosing lambda" "$tmp/term.log" 2>/dev/null || [ $i -ge 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM $lp
wait $lp; rc=$?
[ $rc -eq 1 ] && grep -q "stopped by a signal during the fit" "$tmp/term.log" && [ ! -s "$tmp/term.jsonl" ] ||
    fail "SIGTERM during the fit: exit $rc, $(tail -1 "$tmp/term.log")"

# errors: each a clear one-line reason
$T "$ev" linear --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --layer fc 2>"$tmp/e1"
[ $? -eq 2 ] && grep -q "expected embed or pool" "$tmp/e1" || fail "bad --layer: $(cat "$tmp/e1")"
for nv in 0 65; do
    $T "$ev" linear --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --train-views $nv 2>"$tmp/e5"
    [ $? -eq 2 ] && [ "$(wc -l <"$tmp/e5")" -eq 1 ] &&
        grep -q -- "--train-views $nv: out of range \\[1, 64\\]" "$tmp/e5" ||
        fail "--train-views $nv: $(cat "$tmp/e5")"
done
$T "$ev" linear --data "$tmp/data" 2>"$tmp/e2"
[ $? -eq 2 ] && grep -q "give --checkpoint PATH or --pixels" "$tmp/e2" || fail "no model: $(cat "$tmp/e2")"
$T "$ev" linear --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --train-limit 100 2>"$tmp/e3"
[ $? -eq 1 ] && grep -q 'have no training image among the 100 used' "$tmp/e3" ||
    fail "test classes missing from train: $(cat "$tmp/e3")"
mkdir -p "$tmp/one/train" "$tmp/one/test"
cls=$(ls "$tmp/data/train" | head -1)
cp -r "$tmp/data/train/$cls" "$tmp/one/train/"
cp -r "$tmp/data/test/$cls" "$tmp/one/test/"
$T "$ev" linear --data "$tmp/one" --checkpoint "$tmp/c.ckpt" 2>"$tmp/e4"
[ $? -eq 1 ] && grep -q 'has 1 class; a linear probe needs at least two' "$tmp/e4" ||
    fail "single-class set: $(cat "$tmp/e4")"
echo "it_evald_linear: ok"
