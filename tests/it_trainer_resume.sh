#!/bin/sh
# Resume equivalence with real processes. Three runs of the same seed and data:
#   A  uninterrupted;
#   B  stopped cleanly by --max-steps in the middle of an epoch, then --resume;
#   C  SIGKILLed after a periodic checkpoint (bankd has moved on since), then --resume, which
#      must roll bankd back to the snapshot paired with the checkpoint;
#   D  --resume auto on an empty run directory (a fresh run), SIGTERMed mid-run, then the same
#      command again, which must continue from the checkpoint the SIGTERM wrote.
# B, C and D must end with the same weights, BN statistics, optimiser momentum, Z and step as A,
# bit for bit.
set -u
name=it_trainer_resume
. "$(dirname "$0")/lib_trainer.sh"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 30 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
common="--data $tmp/data --model resnet20 --epochs 5 --batch 50 --nce-k 128 --bank-init uniform --no-progress"
start_bg loader "$bin/npid-loader" --data "$tmp/data"

run_trainer() { # run_trainer LOGNAME ARGS...: foreground, bounded
    n=$1; shift
    timeout -k 5 300 "$bin/npid-trainer" $common "$@" >>"$tmp/$n.log" 2>&1
}
new_bankd() { # new_bankd NAME: a fresh bankd on the test's port; sets $bankd_pid
    [ -n "${bankd_pid:-}" ] && { kill "$bankd_pid" 2>/dev/null; wait "$bankd_pid" 2>/dev/null; }
    start_bg "bankd-$1" "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank-$1"
    bankd_pid=$last_pid
}

# A: uninterrupted
new_bankd A
run_trainer trainerA --run-dir "$tmp/A" || fail "run A"

# B: stop at step 8 (epoch 1, step 2 of 6), resume
new_bankd B
run_trainer trainerB --run-dir "$tmp/B" --max-steps 8 || fail "run B (first part)"
grep -q '"reason":"max-steps"' "$tmp/B/metrics.jsonl" || fail "run B did not stop at --max-steps"
run_trainer trainerB --run-dir "$tmp/B" --resume || fail "run B (resumed)"

# C: checkpoints every 4 steps; SIGKILL once past step 14; resume
new_bankd C
start_bg trainerC "$bin/npid-trainer" $common --run-dir "$tmp/C" --ckpt-every 4 --metrics-every 1
trainerC=$last_pid
wait_for 200 step_at_least "$tmp/C/metrics.jsonl" 14 || fail "run C did not reach step 14"
# kill only when bankd is surely past the last checkpoint: stopped, the trainer has published
# step S (its update S was sent; S - 1 was surely applied) and checkpointed last at P <= S - 2.
# P is read from the checkpoint file itself (its step, a u64 at offset 24; written by atomic
# rename, so a stopped trainer's file is final): the log line of a checkpoint taken right
# after step S can lag behind it.
last_ckpt() {
    f=$tmp/C/checkpoints/trainer.ckpt
    [ -f "$f" ] && od -An -t u8 -j 24 -N 8 "$f" | tr -d ' ' || echo 0
}
tries=0
while :; do
    kill -STOP "$trainerC"
    s_now=$(metrics_step "$tmp/C/metrics.jsonl"); p_now=$(last_ckpt)
    [ "$s_now" -ge $(( ${p_now:-0} + 2 )) ] && break
    kill -CONT "$trainerC"
    tries=$((tries + 1))
    [ $tries -lt 100 ] || fail "run C: no moment with bankd two updates past a checkpoint"
    sleep 0.05
done
echo "it_trainer_resume: run C killed after step $s_now, last checkpoint at step $p_now" >&2
kill -9 "$trainerC"
wait "$trainerC" 2>/dev/null
run_trainer trainerC --run-dir "$tmp/C" --resume || fail "run C (resumed)"
grep -q "restoring snapshot" "$tmp/trainerC.log" || fail "run C: the resume did not roll bankd back"
# a resumed epoch counts the steps trained before the checkpoint (every index exactly once)
! grep -h "exactly-once violated" "$tmp/trainerB.log" "$tmp/trainerC.log" ||
    fail "a resumed epoch's accounting missed the steps before the checkpoint"

# D: the same command twice, a SIGTERM between
new_bankd D
start_bg trainerD "$bin/npid-trainer" $common --run-dir "$tmp/D" --resume auto --metrics-every 1
trainerD=$last_pid
wait_for 200 step_at_least "$tmp/D/metrics.jsonl" 10 || fail "run D did not reach step 10"
kill -TERM "$trainerD"
wait "$trainerD" 2>/dev/null
grep -q "resume auto: no checkpoint in" "$tmp/trainerD.log" || fail "run D: --resume auto on an empty directory did not start fresh"
d_step=$(od -An -t u8 -j 24 -N 8 "$tmp/D/checkpoints/trainer.ckpt" | tr -d ' ')
[ "${d_step:-0}" -ge 10 ] && [ "$d_step" -lt 30 ] || fail "run D: the SIGTERM checkpoint is at step ${d_step:-none}, not mid-run"
run_trainer trainerD2 --run-dir "$tmp/D" --resume auto || fail "run D (same command again)"
grep -q "resume auto: .* holds a checkpoint; continuing" "$tmp/trainerD2.log" &&
    grep -q "resume: step $d_step," "$tmp/trainerD2.log" || fail "run D: the second start did not resume from step $d_step"
echo "it_trainer_resume: run D stopped by SIGTERM at step $d_step, continued by --resume auto" >&2

$py - "$tmp/A/checkpoints/trainer.ckpt" "$tmp/B/checkpoints/trainer.ckpt" "$tmp/C/checkpoints/trainer.ckpt" "$tmp/D/checkpoints/trainer.ckpt" <<'PY' || fail "resumed runs differ from the uninterrupted one"
import struct, sys
def load(p):
    b = open(p, "rb").read()
    assert b[:8] == b"NPIDCKPT", p
    step, epoch, pos = struct.unpack_from("<QQQ", b, 24)
    z, = struct.unpack_from("<d", b, 48)
    npar, nbuf, nmom = struct.unpack_from("<QQQ", b, 96)
    floats = 4 * (npar + nbuf + nmom)
    return dict(step=step, epoch=epoch, z=z, body=b[len(b) - floats:], n=(npar, nbuf, nmom))
A, B, C, D = (load(p) for p in sys.argv[1:5])
for name, X in (("B (max-steps + resume)", B), ("C (SIGKILL + resume)", C), ("D (SIGTERM + resume auto)", D)):
    for k in ("step", "epoch", "z", "n"):
        assert X[k] == A[k], "%s: %s %r != %r" % (name, k, X[k], A[k])
    assert X["body"] == A["body"], "%s: weights/BN/momentum differ from the uninterrupted run" % name
print("it_trainer_resume: B, C and D equal A bit for bit at step %d (%d parameters)" % (A["step"], A["n"][0]))
PY
