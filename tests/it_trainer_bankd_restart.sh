#!/bin/sh
# bankd SIGKILLed mid-run and restarted: the trainer keeps retrying the same (cid, seq), the
# new bankd loads its newest snapshot, the trainer reports the updates lost with the old
# process once, and the run finishes with every index of every epoch trained exactly once.
set -u
name=it_trainer_bankd_restart
. "$(dirname "$0")/lib_trainer.sh"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 30 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
bankd=$last_pid
start_bg loader "$bin/npid-loader" --data "$tmp/data"
start_bg trainer timeout -k 5 300 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" \
    --model resnet20 --epochs 4 --batch 50 --nce-k 128 --bank-init uniform --ckpt-every 5 \
    --metrics-every 1 --bank-timeout 0.5 --no-progress
trainer=$last_pid
wait_for 200 step_at_least "$tmp/run/metrics.jsonl" 13 || fail "training did not reach step 13"
kill -9 "$bankd"
sleep 2
start_bg bankd2 "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
wait "$trainer"; rc=$?
[ $rc -eq 0 ] || fail "trainer exit $rc after the bankd restart"
grep -q "loaded snapshot" "$tmp/bankd2.log" || fail "the restarted bankd did not load a snapshot"
lost=$(grep -c "updates lost" "$tmp/trainer.log")
[ "$lost" -le 1 ] || fail "the trainer reported lost updates $lost times (duplicates or repeated losses)"
grep -q "applied more than once" "$tmp/trainer.log" && fail "bankd applied an update twice"
$py - "$tmp/run/metrics.jsonl" <<'PY' || fail "exactly-once accounting"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
epochs = [e for e in ev if e["type"] == "epoch"]
assert len(epochs) == 4, len(epochs)
for e in epochs:
    assert e["images"] == e["expected"] == 300 and e["twice"] == 0, e
print("it_trainer_bankd_restart: bankd restarted mid-run; 4 epochs x 300 images, each once")
PY
