#!/bin/sh
# A training run against a bank in two shards (npid-bankd --shard 0/2 and 1/2, the trainer's
# --bank the comma-separated list): the run finishes with every index of every epoch trained
# exactly once, both shards end at the same step, each holds its own paired snapshot of the
# checkpoints, and a resume that must restore them (the shards moved on) restores both;
# npid-evald reads the sharded bank as one (embed, kNN against it).
set -u
name=it_trainer_shards
. "$(dirname "$0")/lib_trainer.sh"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 30 --test-per-class 2 >/dev/null 2>&1 ||
    fail "synth"
s0=ipc://$tmp/s0.sock
s1=ipc://$tmp/s1.sock
start_bg shard0 "$bin/npid-bankd" --bind "$s0" --dir "$tmp/bank0" --shard 0/2
start_bg shard1 "$bin/npid-bankd" --bind "$s1" --dir "$tmp/bank1" --shard 1/2
start_bg loader "$bin/npid-loader" --data "$tmp/data"
train() {
    timeout -k 5 300 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" --bank "$s0,$s1" \
        --model resnet20 --batch 50 --nce-k 128 --bank-init uniform --ckpt-every 5 \
        --metrics-every 1 --bank-timeout 2 --no-progress "$@" >>"$tmp/trainer.log" 2>&1
}
# part one stops at step 8 (a checkpoint paired with a snapshot on each shard); then both
# shards move on by one (empty) write the checkpoint does not know of, so the resume must
# restore both; the run then finishes its 2 epochs
train --epochs 2 --max-steps 8 || fail "trainer exit $? against two shards"
for d in bank0 bank1; do
    ls "$tmp/$d"/bank-trainer*.snap >/dev/null 2>&1 || fail "no paired snapshot in $d"
done
$py - "$s0" "$s1" "$tmp/run/bank.token" <<'PY' || fail "moving the shards on"
import sys, zmq, msgpack
tok = open(sys.argv[3]).read().strip()
for i, ep in enumerate(sys.argv[1:3]):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ep)
    s.send(msgpack.packb({"v": 1, "op": "update", "idx": b"", "feat": b"", "momentum": 0.5,
                          "token": tok}))
    assert s.poll(5000), "no reply from shard %d" % i
    rep = msgpack.unpackb(s.recv())
    assert rep["ok"] and rep["step"] == 9, rep
PY
train --epochs 2 --resume || fail "resume exit $?"
grep -q "restoring snapshot" "$tmp/trainer.log" || fail "the resume did not roll the shards back"
$py - "$tmp/run/metrics.jsonl" <<'PY' || fail "exactly-once accounting"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
epochs = [e for e in ev if e["type"] == "epoch"]
assert len(epochs) == 2, len(epochs)
for e in epochs:
    assert e["images"] == e["expected"] == 300 and e["twice"] == 0, e
PY
# info of each shard: its number and range of the 300 rows, and the same step: 12 updates
# (2 epochs of 6 steps) and the 6 sets of the default recipe's closing --refresh-bank
info() { timeout 20 "$bin/npid-bankd" ping --bank "$1" --timeout 5; }
i0=$(info "$s0") || fail "ping shard 0"
i1=$(info "$s1") || fail "ping shard 1"
$py - "$i0" "$i1" <<'PY' || fail "shard info: $i0 / $i1"
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert a["shard"] == 0 and b["shard"] == 1 and a["shards"] == b["shards"] == 2, (a, b)
assert (a["shard_start"], a["shard_end"], b["shard_start"], b["shard_end"]) == (0, 150, 150, 300)
assert a["rows"] == b["rows"] == 300 and a["step"] == b["step"] == 18, (a["step"], b["step"])
PY
# evald reads the sharded bank as one: after the closing refresh every row of it is the
# feature evald recomputes from the final checkpoint, and the two kNN figures agree
ck=$tmp/run/checkpoints/trainer.ckpt
"$bin/npid-evald" embed --data "$tmp/data" --checkpoint "$ck" --split train --format npy \
    --out "$tmp/rec.npy" >>"$tmp/evald.log" 2>&1 || fail "embed recomputed"
"$bin/npid-evald" embed --data "$tmp/data" --bank "$s0,$s1" --format npy \
    --out "$tmp/bank.npy" >>"$tmp/evald.log" 2>&1 || fail "embed the sharded bank"
$py - "$tmp/rec.npy" "$tmp/bank.npy" <<'PY' || fail "the sharded bank's rows are not the refreshed features"
import sys, numpy as np
rec, bank = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
assert rec.shape == bank.shape == (300, 128), (rec.shape, bank.shape)
cos = (rec * bank).sum(1) / np.linalg.norm(rec, axis=1) / np.linalg.norm(bank, axis=1)
assert cos.min() >= 0.9999, cos.min()
PY
"$bin/npid-evald" --once --checkpoint "$ck" --data "$tmp/data" --bank "$s0,$s1" --against both \
    >"$tmp/knn.jsonl" 2>>"$tmp/evald.log" || fail "evald --once against the sharded bank"
b=$(sed -n 's/.*"against":"bank".*"top1":\([0-9.]*\).*/\1/p' "$tmp/knn.jsonl")
r=$(sed -n 's/.*"against":"recomputed".*"top1":\([0-9.]*\).*/\1/p' "$tmp/knn.jsonl")
[ -n "$b" ] && [ "$b" = "$r" ] || fail "kNN against the sharded bank '$b', recomputed '$r'"
echo "it_trainer_shards: 2 epochs x 300 images over two bank shards, each image once per epoch"
