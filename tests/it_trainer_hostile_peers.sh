#!/bin/sh
# Hostile peers on the task socket cannot stall or stop a run (docs/protocol.md, "Credit" and
# "Ordering and exactly-once"). Against a real npid-trainer with one real npid-loader, a
# Python peer (Debian python3-zmq, -msgpack) speaking the task protocol plays three parts:
#   - a silent loader: hello (capacity 8) every 300 ms, never answers its tasks;
#   - a forger: a registered loader that, for every task the silent one holds, sends a fail
#     ("the task can never succeed") and a well-formed batch of black images with the task's
#     indices;
#   - a stranger that never says hello and sends the same fail.
# The run must end "ok" with every image trained exactly once, and the trainer must log the
# forged frames as dropped. (Before: re-issues went to the silent loader, the one with most
# credit, until a step failed after 10 issues; a forged fail stopped training at once.)
set -u
name=it_trainer_hostile_peers
. "$(dirname "$0")/lib_trainer.sh"
$py -c 'import zmq, msgpack' 2>/dev/null || { echo "$name: /usr/bin/python3 lacks zmq or msgpack" >&2; exit 77; }

"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg trainer timeout -k 5 240 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" \
    --model resnet20 --epochs 3 --batch 20 --nce-k 64 --bank-init uniform --task-deadline 1 \
    --no-progress
trainer=$last_pid
wait_for 60 grep -q "listening: tasks" "$tmp/trainer.log" || fail "the trainer did not start"
cat >"$tmp/hostile.py" <<'PY'
import re, sys, time, zmq, msgpack
ep = sys.argv[1]
ctx = zmq.Context()
def dealer():
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ep)
    return s
def hello(s, manifest, cap, name):
    s.send(msgpack.packb({"v": 1, "t": "hello", "manifest": manifest, "count": 200,
                          "capacity": cap, "held": 0, "name": name}))
p = dealer()
hello(p, "not-this-dataset", 1, "probe")
manifest = None
while manifest is None and p.poll(10000):
    m = msgpack.unpackb(p.recv(), raw=False)
    if m.get("t") == "refuse":
        manifest = re.search(r"trainer dataset (\S+);", m["msg"]).group(1)
if manifest is None:
    sys.exit("no refusal with the trainer's manifest")
silent, forger, stranger = dealer(), dealer(), dealer()
tasks = forged = 0
last = 0.0
while True:
    if time.time() - last > 0.3:
        hello(silent, manifest, 8, "silent")
        hello(forger, manifest, 1, "forger")
        last = time.time()
    for s in (forger,):
        while s.poll(0):
            s.recv()  # its welcomes and tasks: the forger never answers its own
    if not silent.poll(50):
        continue
    m = msgpack.unpackb(silent.recv(), raw=False)
    if m.get("t") != "task":
        continue
    tasks += 1
    n = len(m["idx"]) // 4
    fail = {"v": 1, "t": "fail", "run": m["run"], "epoch": m["epoch"], "step": m["step"],
            "err": "ERANGE", "msg": "forged"}
    batch = {"v": 1, "t": "batch", "run": m["run"], "epoch": m["epoch"], "step": m["step"],
             "idx": m["idx"], "labels": bytes(4 * n), "bad": bytes(n), "size": m["size"],
             "layout": m["layout"], "views": m.get("views", 1),
             "pix": bytes(m.get("views", 1) * n * m["size"] * m["size"] * 3),
             "decode_ns": 0, "augment_ns": 0, "errors": []}
    forger.send(msgpack.packb(batch))
    forger.send(msgpack.packb(fail))
    stranger.send(msgpack.packb(fail))
    forged += 1
    print("silent loader got %d tasks, %d forged answers sent" % (tasks, forged), flush=True)
PY
start_bg hostile $py "$tmp/hostile.py" "$NPID_TASKS"
wait_for 30 grep -q "loader silent joined" "$tmp/trainer.log" || fail "the silent loader was not registered"
sleep 1  # the silent loader holds tasks before the real one joins
start_bg loader "$bin/npid-loader" --data "$tmp/data"
wait $trainer; rc=$?
[ $rc -eq 0 ] || fail "the trainer exited $rc"
grep -q '"type":"end".*"status":"ok"' "$tmp/run/metrics.jsonl" || fail "the run did not end ok"
[ "$(grep -c 'images trained (200 expected, 0 never, 0 twice)' "$tmp/trainer.log")" -eq 3 ] ||
    fail "exactly-once: $(grep 'images trained' "$tmp/trainer.log")"
grep -q "forged answers sent" "$tmp/hostile.log" || fail "the silent loader was given no task"
grep -q "which it does not hold" "$tmp/trainer.log" || fail "forged fails not reported as dropped"
grep -q "which was not issued to it" "$tmp/trainer.log" || fail "forged batches not reported as dropped"
echo "$name: run ok, 600 images exactly once, $(tail -1 "$tmp/hostile.log"); trainer dropped them"
