#!/bin/sh
# Exactly-once with real processes: a trainer, a bankd and two loaders; one loader is
# SIGKILLed mid-epoch while it holds a task. Its tasks must be re-issued to the other, and
# every index of every epoch trained exactly once (the trainer's "epoch" events count it).
# Loader A is stopped (SIGSTOP) first so that it certainly holds an unanswered task when it
# dies, then loader B joins, then A is SIGKILLed.
# --keep-epochs keeps each epoch's checkpoint with its own bank snapshot.
set -u
name=it_trainer_loader_kill
. "$(dirname "$0")/lib_trainer.sh"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 60 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg loaderA "$bin/npid-loader" --data "$tmp/data" --capacity 1
loaderA=$last_pid
start_bg trainer timeout -k 5 240 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" \
    --model resnet20 --epochs 2 --batch 25 --nce-k 256 --bank-init uniform --metrics-every 1 \
    --task-deadline 2 --no-progress --keep-epochs
trainer=$last_pid
wait_for 120 step_at_least "$tmp/run/metrics.jsonl" 3 || fail "training did not start"
kill -STOP "$loaderA"
sleep 1
start_bg loaderB "$bin/npid-loader" --data "$tmp/data" --capacity 1
sleep 1
kill -9 "$loaderA"
wait "$trainer"; rc=$?
[ $rc -eq 0 ] || fail "trainer exit $rc"
for e in 000 001; do
    [ -s "$tmp/run/checkpoints/epoch-$e.ckpt" ] || fail "--keep-epochs: no checkpoints/epoch-$e.ckpt"
    [ -s "$tmp/bank/bank-epoch-$e.snap" ] || fail "--keep-epochs: no bank-epoch-$e.snap"
done
cmp -s "$tmp/run/checkpoints/epoch-001.ckpt" "$tmp/run/checkpoints/trainer.ckpt" ||
    fail "--keep-epochs: the last epoch's copy differs from trainer.ckpt"
cmp -s "$tmp/run/checkpoints/epoch-000.ckpt" "$tmp/run/checkpoints/epoch-001.ckpt" &&
    fail "--keep-epochs: epochs 0 and 1 kept the same checkpoint"
$py - "$tmp/run/metrics.jsonl" <<'PY' || fail "exactly-once accounting"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
epochs = [e for e in ev if e["type"] == "epoch"]
assert len(epochs) == 2, "expected 2 epoch events, got %d" % len(epochs)
for e in epochs:
    assert e["images"] == e["expected"] == 600, e
    assert e["twice"] == 0, e
assert epochs[-1]["reissued"] >= 1, "the killed loader's tasks were not re-issued: %r" % epochs[-1]
end = [e for e in ev if e["type"] == "end"]
assert end and end[-1]["status"] == "ok", end
print("it_trainer_loader_kill: 2 epochs x 600 images, each exactly once; %d tasks re-issued"
      % epochs[-1]["reissued"])
PY
