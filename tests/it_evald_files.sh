#!/bin/sh
# npid-evald on images named by a list (--files, issue 19), with real processes: embed reads
# paths from stdin or a file, with no dataset, and writes one row per image in input order
# (jsonl, npy to a file with its .paths companion and to a pipe, fvecs, tsv); the vectors equal
# those `embed --data` gives for the same JPEG, PNG (and WebP when Pillow writes it) files of a
# dataset; a missing path, a corrupt JPEG, a directory and a CRLF line each get their stderr
# line (path and reason) and, in jsonl, an error line, and the exit status stays 0; all-bad
# and empty lists exit 1 and leave no output file; neighbours --files finds a training image
# itself first (cosine ~1) among recomputed features, and with --bank EP the bank rows a NumPy
# search over the bank finds; usage errors exit 2.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
ev=$bin/npid-evald
py=/usr/bin/python3
[ -x "$ev" ] && [ -x "$bin/npid-bankd" ] && [ -x "$bin/npid-loader" ] ||
    { echo "it_evald_files: npid-evald, npid-bankd or npid-loader not built" >&2; exit 77; }
$py -c 'import numpy, PIL' 2>/dev/null ||
    { echo "it_evald_files: /usr/bin/python3 with numpy and PIL (python3-pil) needed" >&2; exit 77; }

tmp=$(mktemp -d /tmp/npid-it-evald-files.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "it_evald_files: FAIL: $*" >&2; for f in "$tmp"/err*; do [ -f "$f" ] && tail -5 "$f" >&2; done; exit 1; }
port=$(( 20000 + ($$ * 13) % 20000 ))
bank=tcp://127.0.0.1:$port
T="timeout -k 5 60"
export NPID_LOG_LEVEL=warn

"$bin/npid-loader" synth --out "$tmp/data" --per-class 4 --test-per-class 1 >/dev/null 2>&1 || fail "synth dataset"
$T "$bin/tools/npid-mkckpt" --out "$tmp/c.ckpt" --model resnet20 --seed 7 2>"$tmp/err" || fail "mkckpt"
# a PNG (and a WebP) in the dataset too, so that each format is compared with the dataset path
$py - "$tmp/data/train" <<'EOF' || fail "writing PNG / WebP files"
import random, sys
from PIL import Image, features
d = sys.argv[1]
r = random.Random(5)
im = Image.new("RGB", (40, 36))
im.putdata([(r.randrange(256), r.randrange(256), r.randrange(256)) for _ in range(40 * 36)])
im.save(d + "/ring/zz.png")
if features.check("webp"):
    im.resize((48, 40)).save(d + "/checker/zz.webp", lossless=True)
EOF
cd "$tmp" || fail "cd"
# every train image through the dataset (the reference), as jsonl: path -> vector
$T "$ev" embed --checkpoint c.ckpt --data data --split train --format jsonl --out ref.jsonl 2>err-ref ||
    fail "embed --data"

# the list: not in dataset order, with a missing path, a corrupt JPEG, a directory, a blank
# line and a CRLF line
head -c 400 data/train/ring/00001.jpg >corrupt.jpg
webp=$(ls data/train/checker/zz.webp 2>/dev/null)
printf '%s\n' data/train/triangle/00002.jpg data/train/ring/zz.png missing.jpg data/train/checker/00000.jpg \
    corrupt.jpg "" data data/test/ring/00000.jpg $webp >list.txt
printf 'data/train/ring/00003.jpg\r\n' >>list.txt

# jsonl from stdin, no --data: rows and error lines in input order
$T "$ev" embed --checkpoint c.ckpt --files - --format jsonl <list.txt >files.jsonl 2>err-jsonl
rc=$?; [ $rc -eq 0 ] || fail "embed --files jsonl: exit $rc"
grep -q "missing.jpg: No such file or directory" err-jsonl || fail "no stderr line for missing.jpg"
grep -q "corrupt.jpg: .*JPEG" err-jsonl || fail "no stderr line for corrupt.jpg"
grep -q "error: data: not a regular file" err-jsonl || fail "no stderr line for the directory"
# the same from a file argument, as npy (with the .paths companion), fvecs and tsv; npy to a pipe
$T "$ev" embed --checkpoint c.ckpt --files list.txt --format npy --out files.npy 2>err-npy || fail "npy"
$T "$ev" embed --checkpoint c.ckpt --files list.txt --format fvecs --out files.fvecs 2>err-fv || fail "fvecs"
$T "$ev" embed --checkpoint c.ckpt --files list.txt --format tsv --out proj 2>err-tsv || fail "tsv"
$T "$ev" embed --checkpoint c.ckpt --files - --format npy --out - <list.txt 2>err-pipe | $py -c '
import io, sys, numpy as np
np.save(sys.argv[1], np.load(io.BytesIO(sys.stdin.buffer.read())))' pipe.npy || fail "npy to a pipe"
ls files.fvecs.paths >/dev/null 2>&1 || fail "no files.fvecs.paths"
ls proj.paths proj/*.paths 2>/dev/null && fail "a .paths file where metadata already has them"

$py - "$webp" <<'EOF' || fail "vectors"
import json, sys, numpy as np
webp = sys.argv[1]
ref = {}
for l in open("ref.jsonl"):
    r = json.loads(l)
    ref["data/" + r["path"]] = np.array(r["v"], np.float32)
good = ["data/train/triangle/00002.jpg", "data/train/ring/zz.png", "data/train/checker/00000.jpg",
        "data/test/ring/00000.jpg"] + ([webp] if webp else []) + ["data/train/ring/00003.jpg"]
order = ["data/train/triangle/00002.jpg", "data/train/ring/zz.png", "missing.jpg",
         "data/train/checker/00000.jpg", "corrupt.jpg", "data", "data/test/ring/00000.jpg"] + \
        ([webp] if webp else []) + ["data/train/ring/00003.jpg"]
J = [json.loads(l) for l in open("files.jsonl")]
assert [j["path"] for j in J] == order, [j["path"] for j in J]
assert [j["index"] for j in J] == list(range(len(order)))
for j in J:
    assert j["label"] is None, j
    if j["path"] in good:
        assert "error" not in j and len(j["v"]) == 128, j
    else:
        assert "v" not in j and j["error"], j
err = {j["path"]: j["error"] for j in J if "error" in j}
assert err["missing.jpg"] == "No such file or directory", err
assert "JPEG" in err["corrupt.jpg"] and err["data"] == "not a regular file", err
V = np.array([j["v"] for j in J if "v" in j], np.float32)
# the test image is not in the train reference: compare it with the test split below
R = np.array([ref.get(p, np.full(128, np.nan, np.float32)) for p in good])
tr = [i for i, p in enumerate(good) if p in ref]
assert len(tr) == len(good) - 1, (good, list(ref)[:3])
assert np.allclose(V[tr], R[tr], rtol=0, atol=1e-5), np.abs(V[tr] - R[tr]).max()
assert np.allclose(np.linalg.norm(V, axis=1), 1, atol=1e-5)
# npy (file and pipe), fvecs, tsv: the good rows only, in input order, the same values
X = np.load("files.npy")
assert X.dtype == np.float32 and X.shape == V.shape, X.shape
assert np.array_equal(X, V) and np.array_equal(np.load("pipe.npy"), V)
assert open("files.npy.paths").read().splitlines() == good
assert open("files.fvecs.paths").read().splitlines() == good
F = np.fromfile("files.fvecs", "<i4").reshape(len(good), 129)
assert (F[:, 0] == 128).all() and np.array_equal(F[:, 1:].view("<f4"), V)
T = np.loadtxt("proj/vectors.tsv", dtype=np.float32, delimiter="\t")
assert np.allclose(T, V, rtol=0, atol=1e-7)
M = [l.split("\t") for l in open("proj/metadata.tsv").read().splitlines()]
assert M[0] == ["index", "label", "class", "path"]
assert [m[3] for m in M[1:]] == good and [int(m[0]) for m in M[1:]] == [order.index(p) for p in good], M
EOF
# the test image against the test split
$T "$ev" embed --checkpoint c.ckpt --data data --split test --format jsonl --out ref-test.jsonl 2>err-ref ||
    fail "embed --data test"
$py - <<'EOF' || fail "test image vector"
import json, numpy as np
t = {json.loads(l)["path"]: json.loads(l)["v"] for l in open("ref-test.jsonl")}
f = {json.loads(l)["path"]: json.loads(l).get("v") for l in open("files.jsonl")}
assert np.allclose(f["data/test/ring/00000.jpg"], t["test/ring/00000.jpg"], rtol=0, atol=1e-5)
EOF

# all bad: exit 1, a reason, error lines on stdout, no file at the final name
printf 'missing.jpg\ncorrupt.jpg\n' >bad.txt
$T "$ev" embed --checkpoint c.ckpt --files bad.txt --format jsonl --out - >bad.jsonl 2>err-bad
rc=$?; [ $rc -eq 1 ] || fail "all-bad list: exit $rc, expected 1"
grep -q "none of the 2 images" err-bad || fail "all-bad list: no reason"
[ "$(grep -c '"error"' bad.jsonl)" -eq 2 ] || fail "all-bad list: error lines: $(cat bad.jsonl)"
$T "$ev" embed --checkpoint c.ckpt --files bad.txt --format npy --out bad.npy 2>err-bad
rc=$?; [ $rc -eq 1 ] || fail "all-bad list to npy: exit $rc"
ls bad.npy* 2>/dev/null && fail "all-bad list left a file"
printf '\n\n' | $T "$ev" embed --checkpoint c.ckpt --files - --format npy --out empty.npy 2>err-bad
rc=$?; [ $rc -eq 1 ] || fail "empty list: exit $rc"
grep -q "holds no path" err-bad || fail "empty list: no reason"
ls empty.npy* 2>/dev/null && fail "empty list left a file"
printf 'a\0b\n' | $T "$ev" embed --checkpoint c.ckpt --files - --format jsonl 2>err-bad >/dev/null
rc=$?; [ $rc -eq 1 ] && grep -q "NUL byte" err-bad || fail "a NUL in the list: exit $rc, $(cat err-bad)"

# usage errors
$T "$ev" embed --files list.txt --format jsonl 2>/dev/null; [ $? -eq 2 ] || fail "embed --files without --checkpoint"
$T "$ev" embed --checkpoint c.ckpt --files list.txt --format tsv 2>/dev/null; [ $? -eq 2 ] || fail "tsv to stdout"
$T "$ev" neighbours --checkpoint c.ckpt --data data --files list.txt test:0 2>/dev/null; [ $? -eq 2 ] ||
    fail "neighbours: --files and arguments"
$T "$ev" neighbours --checkpoint c.ckpt --data data --files list.txt --split test 2>/dev/null; [ $? -eq 2 ] ||
    fail "neighbours: --split test"

# neighbours among recomputed train features: a training image finds itself first; a file
# that is a dataset reference by name ("train:0") is a path here
printf 'data/train/ring/00002.jpg\nmissing.jpg\ntrain:0\ndata/train/checker/00003.jpg\n' >nb.txt
$T "$ev" neighbours --checkpoint c.ckpt --data data --files nb.txt --top 5 >nb.jsonl 2>err-nb
rc=$?; [ $rc -eq 0 ] || fail "neighbours --files: exit $rc"
grep -q "missing.jpg: No such file or directory" err-nb || fail "neighbours: no stderr line for missing.jpg"
$py - <<'EOF' || fail "neighbours result"
import json
L = [json.loads(l) for l in open("nb.jsonl")]
assert [l["query"] for l in L] == ["data/train/ring/00002.jpg", "missing.jpg", "train:0",
                                    "data/train/checker/00003.jpg"], L
ref = [json.loads(l)["path"] for l in open("ref.jsonl")]
for l, want in ((L[0], "train/ring/00002.jpg"), (L[3], "train/checker/00003.jpg")):
    assert l["against"] == "recomputed" and len(l["neighbours"]) == 5, l
    n0 = l["neighbours"][0]
    assert n0["path"] == want and n0["index"] == ref.index(want) and n0["sim"] > 0.9999, l
    assert n0["class"] == want.split("/")[1] and isinstance(n0["label"], int), n0
    s = [n["sim"] for n in l["neighbours"]]
    assert s == sorted(s, reverse=True), s
assert L[1]["error"] == "No such file or directory" and "neighbours" not in L[1], L[1]
assert L[2]["error"] == "No such file or directory", L[2]
EOF
$T "$ev" neighbours --checkpoint c.ckpt --data data --files bad.txt >nb-bad.jsonl 2>err-nb
rc=$?; [ $rc -eq 1 ] || fail "neighbours, all bad: exit $rc"
[ "$(grep -c '"error"' nb-bad.jsonl)" -eq 2 ] || fail "neighbours, all bad: $(cat nb-bad.jsonl)"

# neighbours among a bank's rows (--bank EP alone selects them): the rows NumPy finds
n=$(grep -c . ref.jsonl)
"$bin/npid-bankd" --bind "$bank" --rows "$n" --dim 128 --seed 3 --init unit 2>err-bankd &
pids="$pids $!"
sleep 0.3
$T "$ev" embed --data data --bank "$bank" --format npy --out bank.npy 2>err-bank || fail "embed --bank"
$T "$ev" neighbours --checkpoint c.ckpt --data data --bank "$bank" --files nb.txt --top 4 >nbb.jsonl 2>err-nbb ||
    fail "neighbours --bank"
$py - <<'EOF' || fail "neighbours against the bank"
import json, numpy as np
B = np.load("bank.npy")
ref = {json.loads(l)["path"]: np.array(json.loads(l)["v"], np.float32) for l in open("ref.jsonl")}
L = [json.loads(l) for l in open("nbb.jsonl")]
for l in L:
    if "error" in l:
        continue
    assert l["against"] == "bank", l
    v = ref[l["query"][len("data/"):]]
    s = B @ v
    top = np.argsort(-s, kind="stable")[:4]
    assert [n["index"] for n in l["neighbours"]] == list(top), (l, top)
    assert np.allclose([n["sim"] for n in l["neighbours"]], s[top], atol=1e-5)
assert sum("error" in l for l in L) == 2
EOF
echo "it_evald_files: ok" >&2
