#!/bin/sh
# npid-evald offline paths with real processes: --once against a running npid-bankd, against
# recomputed features and both; embed in every format (the .npy read back with NumPy, bank
# rows compared across formats); neighbours with a retrieval grid; and the error paths
# (usage errors, missing / corrupt checkpoint, a bank of the wrong shape, a corrupt image).
# The checkpoint is an untrained resnet20 written by tools/npid-mkckpt (the trainer's format).
set -u
bin=${NPID_BIN:?NPID_BIN not set}
ev=$bin/npid-evald
py=/usr/bin/python3
[ -x "$ev" ] && [ -x "$bin/npid-bankd" ] && [ -x "$bin/npid-loader" ] ||
    { echo "it_evald_once: npid-evald, npid-bankd or npid-loader not built" >&2; exit 77; }
$py -c 'import numpy' 2>/dev/null || { echo "it_evald_once: /usr/bin/python3 with numpy needed" >&2; exit 77; }

tmp=$(mktemp -d /tmp/npid-it-evald-once.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "it_evald_once: FAIL: $*" >&2; for f in "$tmp"/err*; do [ -f "$f" ] && tail -5 "$f" >&2; done; exit 1; }
port=$(( 20000 + $$ % 20000 ))
bank=tcp://127.0.0.1:$port
bank2=tcp://127.0.0.1:$((port + 1))
T="timeout -k 5 60"
export NPID_LOG_LEVEL=warn

"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 5 >/dev/null 2>&1 || fail "synth dataset"
$T "$bin/tools/npid-mkckpt" --out "$tmp/c.ckpt" --model resnet20 --step 5 2>"$tmp/err" || fail "mkckpt"

# CLI manners
$T "$ev" --help >"$tmp/help" 2>/dev/null && grep -q "usage: npid-evald" "$tmp/help" || fail "--help"
$T "$ev" --bogus 2>/dev/null; [ $? -eq 2 ] || fail "unknown flag should exit 2"
$T "$ev" --once --data "$tmp/data" 2>/dev/null; [ $? -eq 2 ] || fail "--once without --checkpoint should exit 2"
$T "$ev" --once --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --against nowhere 2>/dev/null; [ $? -eq 2 ] ||
    fail "bad --against should exit 2"
$T "$ev" embed --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --format parquet 2>/dev/null; [ $? -eq 2 ] ||
    fail "bad --format should exit 2"

# a missing checkpoint: exit 1, one reason naming the file, nothing on stdout
$T "$ev" --once --checkpoint "$tmp/nope.ckpt" --data "$tmp/data" --against recomputed >"$tmp/out" 2>"$tmp/err1"
rc=$?; [ $rc -eq 1 ] || fail "missing checkpoint: exit $rc"
grep -q "nope.ckpt" "$tmp/err1" || fail "missing checkpoint: reason does not name the file"
[ -s "$tmp/out" ] && fail "missing checkpoint: stdout not empty"
# a truncated checkpoint (no .prev to fall back to)
head -c 5000 "$tmp/c.ckpt" >"$tmp/trunc.ckpt"
$T "$ev" --once --checkpoint "$tmp/trunc.ckpt" --data "$tmp/data" --against recomputed >/dev/null 2>"$tmp/err1"
rc=$?; [ $rc -eq 1 ] || fail "truncated checkpoint: exit $rc"
grep -qi "trunc" "$tmp/err1" || fail "truncated checkpoint: no reason"

# against recomputed features
$T "$ev" --once --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --against recomputed --k 20 \
    >"$tmp/r.jsonl" 2>"$tmp/err2" || fail "--once recomputed"
$py - "$tmp/r.jsonl" <<'EOF' || fail "recomputed result"
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
assert len(L) == 1, L
r = L[0]
assert r["type"] == "eval" and r["against"] == "recomputed" and r["step"] == 5, r
assert r["n_query"] == 50 and r["n_bank"] == 200 and r["k"] == 20, r
assert 0 <= r["top1"] <= r["top5"] <= 1 and 0 <= r["nn1"] <= 1, r
assert len(r["per_class"]) == 10 and "star" in r["per_class"], r["per_class"]
C = r["confusion"]
assert len(C) == 10 and sum(map(sum, C)) == 50, C
assert abs(sum(C[i][i] for i in range(10)) / 50 - r["top1"]) < 1e-9
assert r["bank_step"] is None and r["bad_images"] == 0
EOF

# a bank of the right shape (unit rows), then both
"$bin/npid-bankd" --bind "$bank" --rows 200 --dim 128 --seed 3 --init unit 2>"$tmp/err-bankd" &
pids="$pids $!"
"$bin/npid-bankd" --bind "$bank2" --rows 150 --dim 128 --seed 3 --init unit 2>"$tmp/err-bankd2" &
pids="$pids $!"
sleep 0.3
$T "$ev" --once --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --bank "$bank" --against both --k 20 \
    >"$tmp/b.jsonl" 2>"$tmp/err3" || fail "--once both"
$py - "$tmp/b.jsonl" "$tmp/r.jsonl" <<'EOF' || fail "both results"
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
R = json.loads(open(sys.argv[2]).readline())
assert [r["against"] for r in L] == ["bank", "recomputed"], L
assert L[0]["bank_step"] == 0 and L[0]["n_bank"] == 200
# recomputed is deterministic: the same numbers as the run above
assert L[1]["top1"] == R["top1"] and L[1]["confusion"] == R["confusion"]
EOF
# a bank that does not match the train split: clear error, exit 1
$T "$ev" --once --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --bank "$bank2" --against bank \
    >/dev/null 2>"$tmp/err4"; rc=$?
[ $rc -eq 1 ] || fail "mismatched bank: exit $rc"
grep -q "150" "$tmp/err4" || fail "mismatched bank: reason"

# embed: checkpoint features (npy to stdout and to a file), bank rows in every format
$T "$ev" embed --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --split test --format npy --out - \
    >"$tmp/test.npy" 2>"$tmp/err5" || fail "embed npy stdout"
$T "$ev" embed --data "$tmp/data" --checkpoint "$tmp/c.ckpt" --split train --format npy \
    --out "$tmp/train.npy" 2>"$tmp/err5" || fail "embed npy file"
for f in npy fvecs jsonl; do
    $T "$ev" embed --data "$tmp/data" --bank "$bank" --format $f --out "$tmp/bank.$f" 2>"$tmp/err6" ||
        fail "embed bank $f"
done
$T "$ev" embed --data "$tmp/data" --bank "$bank" --format tsv --out "$tmp/proj" 2>"$tmp/err6" || fail "embed tsv"
$py - "$tmp" <<'EOF' || fail "embed outputs"
import json, sys
import numpy as np
d = sys.argv[1]
te, tr = np.load(d + "/test.npy"), np.load(d + "/train.npy")
assert te.shape == (50, 128) and tr.shape == (200, 128) and te.dtype == np.float32
assert np.allclose(np.linalg.norm(tr, axis=1), 1, atol=1e-4)
b = np.load(d + "/bank.npy")
assert b.shape == (200, 128)
fv = np.fromfile(d + "/bank.fvecs", dtype="<i4").reshape(200, 129)
assert (fv[:, 0] == 128).all()
assert (fv[:, 1:].view("<f4") == b).all()
J = [json.loads(l) for l in open(d + "/bank.jsonl")]
assert len(J) == 200 and J[0]["index"] == 0 and J[0]["path"] == "train/checker/00000.jpg"
assert np.array_equal(np.array(J[57]["v"], dtype=np.float32), b[57])
assert J[199]["label"] == 9
V = np.loadtxt(d + "/proj/vectors.tsv", delimiter="\t", dtype=np.float32)
assert np.array_equal(V, b)
M = open(d + "/proj/metadata.tsv").read().splitlines()
assert M[0] == "index\tlabel\tclass\tpath" and len(M) == 201
assert M[1] == "0\t0\tchecker\ttrain/checker/00000.jpg", M[1]
EOF

# neighbours: dataset references and a file, with a grid; a corrupt image is refused
cp "$tmp/data/test/star/00000.jpg" "$tmp/q.jpg"
$T "$ev" neighbours --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --against recomputed \
    --grid "$tmp/grid.jpg" test:0 test:7 "$tmp/q.jpg" >"$tmp/nb.jsonl" 2>"$tmp/err7" || fail "neighbours"
$py - "$tmp/nb.jsonl" "$tmp/grid.jpg" <<'EOF' || fail "neighbours output"
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
assert len(L) == 3 and L[0]["query"] == "test:0" and L[0]["label"] == 0 and "label" not in L[2]
for r in L:
    n = r["neighbours"]
    assert len(n) == 10
    s = [x["sim"] for x in n]
    assert s == sorted(s, reverse=True) and all(-1.001 <= x <= 1.001 for x in s)
    assert all(x["path"].startswith("train/") for x in n)
g = open(sys.argv[2], "rb").read()
assert g[:2] == b"\xff\xd8" and len(g) > 1000
EOF
# without IMAGE arguments: --queries test images spread over the split (5 per class here)
$T "$ev" neighbours --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --queries 5 --top 3 \
    >"$tmp/nb2.jsonl" 2>"$tmp/err7" || fail "neighbours --queries"
q=$($py -c 'import json, sys; print(" ".join(json.loads(l)["query"] + "/" + json.loads(l)["against"] for l in open(sys.argv[1])))' "$tmp/nb2.jsonl")
[ "$q" = "test:5/recomputed test:15/recomputed test:25/recomputed test:35/recomputed test:45/recomputed" ] ||
    fail "neighbours --queries: $q"
printf 'not a jpeg at all' >"$tmp/bad.jpg"
$T "$ev" neighbours --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --against recomputed "$tmp/bad.jpg" \
    >/dev/null 2>"$tmp/err8"; rc=$?
[ $rc -eq 1 ] || fail "corrupt query image: exit $rc"
grep -q "bad.jpg" "$tmp/err8" || fail "corrupt query image: reason"
$T "$ev" neighbours --checkpoint "$tmp/c.ckpt" --data "$tmp/data" test:999 >/dev/null 2>"$tmp/err8"; rc=$?
[ $rc -eq 1 ] || fail "out-of-range test:999: exit $rc"
# the raw-pixel baseline: usage rules, then the same weighted kNN computed with PIL + NumPy
$T "$ev" --once --pixels --data "$tmp/data" --against bank 2>/dev/null; [ $? -eq 2 ] ||
    fail "--pixels --against bank should exit 2"
$T "$ev" --once --pixels --checkpoint "$tmp/c.ckpt" --data "$tmp/data" 2>/dev/null; [ $? -eq 2 ] ||
    fail "--pixels with --checkpoint should exit 2"
$T "$ev" --once --pixels --data "$tmp/data" --k 20 >"$tmp/px.jsonl" 2>"$tmp/err9" || fail "--pixels"
$py - "$tmp/px.jsonl" "$tmp/data" <<'EOF' || fail "--pixels differs from the NumPy computation"
import json, os, sys
import numpy as np
from PIL import Image
r = json.loads(open(sys.argv[1]).read())
assert r["model"] == "pixels" and r["against"] == "recomputed" and r["k"] == 20, r
mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2023, 0.1994, 0.2010])
def load(split):
    root = os.path.join(sys.argv[2], split)
    xs, ys = [], []
    for ci, c in enumerate(sorted(os.listdir(root))):
        for f in sorted(os.listdir(os.path.join(root, c))):
            im = Image.open(os.path.join(root, c, f)).convert("RGB")
            if im.size != (32, 32):
                im = im.resize((32, 32), Image.BILINEAR)
            v = ((np.asarray(im, np.float64) / 255 - mean) / std).transpose(2, 0, 1).ravel()
            xs.append(v / np.linalg.norm(v))
            ys.append(ci)
    return np.array(xs), np.array(ys)
xt, yt = load("train")
xq, yq = load("test")
s = xq @ xt.T
top = np.argsort(-s, axis=1)[:, :20]
votes = np.zeros((len(xq), yt.max() + 1))
for i in range(len(xq)):
    np.add.at(votes[i], yt[top[i]], np.exp(s[i, top[i]] / 0.1))
acc = float((votes.argmax(1) == yq).mean())
assert abs(acc - r["top1"]) <= 1.0 / len(xq) + 1e-9, (acc, r["top1"])
print("it_evald_once: pixels top-1 %.3f (NumPy %.3f)" % (r["top1"], acc), file=sys.stderr)
EOF
# --k list: one neighbour search, one line per k (ascending), each equal to a run with that k alone
$T "$ev" --once --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --against recomputed --k 200,10,20,100 \
    >"$tmp/ks.jsonl" 2>"$tmp/err" || fail "--k 200,10,20,100"
for k in 10 100; do
    $T "$ev" --once --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --against recomputed --k $k \
        >"$tmp/k$k.jsonl" 2>"$tmp/err" || fail "--k $k"
done
$py - "$tmp" <<'EOF' || fail "--k list differs from single-k runs"
import json, sys
t = sys.argv[1]
rows = [json.loads(l) for l in open(t + "/ks.jsonl")]
assert [r["k"] for r in rows] == [10, 20, 100, 200], [r["k"] for r in rows]
for k in (10, 100):
    one = json.loads(open(f"{t}/k{k}.jsonl").read())
    r = rows[[10, 20, 100, 200].index(k)]
    for key in ("top1", "top5", "nn1", "per_class", "confusion"):
        assert r[key] == one[key], (k, key, r[key], one[key])
EOF
for bad in 0 10,10 10,,20 x -5; do
    $T "$ev" --once --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --k "$bad" 2>"$tmp/err"
    [ $? -eq 2 ] && grep -q -- "--k" "$tmp/err" || fail "--k $bad should be a usage error"
done
echo "it_evald_once: ok" >&2
exit 0
