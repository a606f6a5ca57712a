#!/bin/sh
# A resume on a restarted bankd that holds no bank (docs/architecture.md, "The trainer dies"):
#   E  every snapshot of the run is corrupt: `--resume` fails with the reason and bankd is
#      left as it was, holding no bank (before: the trainer's `init` had created a new random
#      bank before the restore failed);
#   F  bankd restarted without a bank while the run's snapshots are intact: `--resume`
#      restores the bank from the checkpoint's snapshot (bankd adopts its shape), init then
#      only checks it, and the run finishes with every image trained exactly once.
set -u
name=it_trainer_resume_nobank
. "$(dirname "$0")/lib_trainer.sh"
"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
start_bg loader "$bin/npid-loader" --data "$tmp/data"
common="--data $tmp/data --model resnet20 --batch 20 --nce-k 64 --bank-init uniform --no-progress"
bankd_pid=""
new_bankd() { # new_bankd NAME DIR
    [ -n "$bankd_pid" ] && { kill "$bankd_pid" 2>/dev/null; wait "$bankd_pid" 2>/dev/null; }
    start_bg "bankd-$1" "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$2"
    bankd_pid=$last_pid
    wait_for 20 "$bin/npid-bankd" ping --bank "$NPID_BANK" --timeout 1 >/dev/null || fail "bankd $1 did not start"
}
info() { "$bin/npid-bankd" ping --bank "$NPID_BANK" --timeout 5 2>/dev/null; }

# a run of 2 epochs of 4 (--max-steps 20: 10 steps an epoch)
new_bankd first "$tmp/bank"
timeout -k 5 200 "$bin/npid-trainer" $common --run-dir "$tmp/run" --epochs 4 --max-steps 20 \
    >>"$tmp/trainer1.log" 2>&1 || fail "the first part of the run"

# E: all snapshots corrupt; bankd restarted on them holds no bank
mkdir "$tmp/bankE"
for f in "$tmp/bank"/bank*.snap*; do
    head -c 100 "$f" >"$tmp/bankE/$(basename "$f")"
done
new_bankd E "$tmp/bankE"
info | grep -q ENOBANK || fail "E: bankd on corrupt snapshots holds a bank: $(info)"
timeout -k 5 100 "$bin/npid-trainer" $common --run-dir "$tmp/run" --epochs 4 --resume \
    >>"$tmp/trainerE.log" 2>&1 && fail "E: the resume succeeded on corrupt snapshots"
grep -q "resume: bank restore failed" "$tmp/trainerE.log" || fail "E: no reason given"
info | grep -q ENOBANK || fail "E: a failed resume changed bankd: $(info)"

# F: bankd restarted without a bank, the run's snapshots intact
mkdir "$tmp/bankF"
new_bankd F "$tmp/bankF"
cp "$tmp/bank"/bank-trainer.snap* "$tmp/bankF/"
info | grep -q ENOBANK || fail "F: bankd holds a bank"
timeout -k 5 200 "$bin/npid-trainer" $common --run-dir "$tmp/run" --epochs 4 --resume \
    >>"$tmp/trainerF.log" 2>&1 || fail "F: the resume failed"
grep -q "resume: bankd holds no bank; restoring snapshot" "$tmp/trainerF.log" || fail "F: no restore on a bankd without a bank"
grep -q '"type":"end".*"status":"ok"' "$tmp/run/metrics.jsonl" || fail "F: the run did not end ok"
[ "$(grep -c 'images trained (200 expected, 0 never, 0 twice)' "$tmp/trainerF.log")" -eq 2 ] ||
    fail "F: exactly-once: $(grep 'images trained' "$tmp/trainerF.log")"
echo "$name: a failed resume left bankd without a bank; a resume on an empty bankd restored its bank and finished"
