#!/bin/sh
# A full disk does not end a run (docs/architecture.md, "Failure semantics"): the run
# directory is a small tmpfs (needs mount rights, as tests/it_bankd_diskfull.sh; skips
# otherwise). After the first epoch's checkpoint a filler file takes every free byte: the
# epoch checkpoints fail with a loud warning and training goes on; the filler is removed and
# the next checkpoint is written again (its bank snapshot under the retry name, so the pair
# of the last good checkpoint was never rotated away). The run ends ok at its last step,
# every image trained exactly once in every epoch. (Before: "training FAILED ...
# (checkpoint failed)" at the first failure.)
set -u
name=it_trainer_diskfull
. "$(dirname "$0")/lib_trainer.sh"
mounted=""
umount_full() { [ -n "$mounted" ] && umount "$tmp/full" 2>/dev/null; mounted=""; }
# processes first (a busy mount cannot be unmounted), then the mount, then the directory
trap 'kill_tree 9 $pids; for p in $pids; do wait "$p" 2>/dev/null; done; umount_full; cleanup' EXIT
mkdir "$tmp/full"
if ! mount -t tmpfs -o size=24m tmpfs "$tmp/full" 2>/dev/null; then
    echo "$name: cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN)" >&2
    exit 77
fi
mounted=1
"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg loader "$bin/npid-loader" --data "$tmp/data"
epochs=40
start_bg trainer timeout -k 5 300 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/full/run" \
    --model resnet20 --epochs $epochs --batch 20 --nce-k 64 --bank-init uniform --no-progress
trainer=$last_pid
wait_for 120 grep -q "checkpoint (epoch): step" "$tmp/trainer.log" || fail "no first epoch checkpoint"
dd if=/dev/zero of="$tmp/full/filler" bs=64k 2>/dev/null  # until ENOSPC
wait_for 120 grep -q "CHECKPOINT FAILED at the end of epoch" "$tmp/trainer.log" || fail "no failed checkpoint reported"
n_failed_before=$(grep -c "CHECKPOINT FAILED" "$tmp/trainer.log")
sleep 2
rm -f "$tmp/full/filler"
wait $trainer; rc=$?
[ $rc -eq 0 ] || fail "the trainer exited $rc"
grep -q '"type":"end".*"status":"ok"' "$tmp/full/run/metrics.jsonl" || fail "the run did not end ok"
[ "$(grep -c 'images trained (200 expected, 0 never, 0 twice)' "$tmp/trainer.log")" -eq $epochs ] ||
    fail "exactly-once: $(grep -c 'images trained (200 expected, 0 never, 0 twice)' "$tmp/trainer.log") of $epochs epochs"
grep -q "written again after [0-9]* failed attempt.*(bank snapshot trainer-retry)" "$tmp/trainer.log" ||
    fail "the checkpoint was not written again under the retry snapshot name"
[ -f "$tmp/bank/bank-trainer-retry.snap" ] && [ -f "$tmp/bank/bank-trainer.snap.prev" ] ||
    fail "bank snapshots: $(ls "$tmp/bank")"
# the final checkpoint is the last step's and pairs with a snapshot bankd can restore
$py - "$tmp/full/run/checkpoints/trainer.ckpt" <<'PY' || fail "final checkpoint"
import struct, sys
h = open(sys.argv[1], "rb").read(128)
assert h[:8] == b"NPIDCKPT", h[:8]
step, epoch = struct.unpack_from("<QQ", h, 24)
assert epoch == 40 and step == 400, (step, epoch)
PY
umount_full
echo "$name: $n_failed_before epoch checkpoint(s) failed on a full disk, training went on, the run ended ok at step 400, exactly once"
