#!/bin/sh
# The launcher (scripts/npid run, what `make run` calls) with real processes: a short run
# leaves the run directory (metrics, checkpoint, bank snapshots, eval results, plots, the
# retrieval grid); a loader SIGKILLed mid-run is restarted; SIGTERM stops everything cleanly
# with a checkpoint and no process left behind, and the same command again continues the run
# (the launcher handles SIGINT, Ctrl-C, the same
# way, but a background job of a non-interactive shell cannot receive SIGINT); a failing run
# exits non-zero; on an unlabelled set the launcher says once that there is nothing to evaluate
# with and neither restarts evald nor runs the final evaluation; the same set labelled by file
# lists given among the trainer's flags (-- --list ... --test-list ...) trains and is
# evaluated: the loaders and evald open the lists too.
set -u
name=it_launcher
. "$(dirname "$0")/lib_trainer.sh"
command -v bash >/dev/null || { echo "$name: bash needed" >&2; exit 77; }
npid=${NPID_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}/scripts/npid
export NPID_PORT_BASE=$(( 30000 + ($$ % 300) * 10 ))
tasks_port=$((NPID_PORT_BASE + 1))
small="--batch 50 --nce-k 64 --bank-init uniform --metrics-every 1 --no-progress"
left_behind() { pgrep -f "127.0.0.1:$NPID_PORT_BASE|127.0.0.1:$tasks_port" >/dev/null; }

"$bin/npid-loader" synth --out "$tmp/data" --per-class 30 --test-per-class 5 >/dev/null 2>&1 || fail "synth"

# 1. a short run, with a loader killed mid-run
bash "$npid" run --data "$tmp/data" --epochs 3 --model resnet20 --run-dir "$tmp/r1" -- $small \
    >"$tmp/r1.log" 2>&1 &
launcher=$!
pids="$pids $launcher"
wait_for 120 step_at_least "$tmp/r1/metrics.jsonl" 3 || fail "run 1 did not start training"
pkill -9 -f "npid-loader --data $tmp/data --tasks tcp://127.0.0.1:$tasks_port" || fail "no loader to kill"
wait "$launcher"; rc=$?
[ $rc -eq 0 ] || fail "run 1: launcher exit $rc"
grep -q "loader 1 exited; restarting it" "$tmp/r1.log" || fail "run 1: the dead loader was not restarted"
for f in metrics.jsonl checkpoints/trainer.ckpt eval/final.jsonl plots/retrieval.jpg logs/trainer.log; do
    [ -s "$tmp/r1/$f" ] || fail "run 1: $f missing"
done
ls "$tmp/r1/bank/"*.snap >/dev/null 2>&1 || fail "run 1: no bank snapshot"
[ "$(grep -c '"against"' "$tmp/r1/eval/final.jsonl")" -eq 2 ] || fail "run 1: final eval should hold bank and recomputed"
if command -v gnuplot >/dev/null; then
    [ -s "$tmp/r1/plots/loss.png" ] && [ -s "$tmp/r1/plots/knn.png" ] || fail "run 1: plots missing"
fi
grep -q "npid: epoch 3/3  kNN top-1 bank [0-9.]*%  recomputed [0-9.]*%" "$tmp/r1.log" || fail "run 1: no line for the last epoch with both kNN figures"
grep -q '"type":"linear".*"layer":"pool"' "$tmp/r1/eval/linear.jsonl" || fail "run 1: no linear probe result"
grep -q "npid: linear top-1 [0-9.]*% top-5 [0-9.]*% (lambda [0-9.e-]*); kNN top-1 (recomputed, k 200) [0-9.]*%" "$tmp/r1.log" ||
    fail "run 1: the linear probe is not printed next to kNN"
left_behind && fail "run 1: processes left behind"

# 2. SIGTERM mid-run: a clean stop with a checkpoint; the same command again continues the run
bash "$npid" run --data "$tmp/data" --epochs 4 --model resnet20 --run-dir "$tmp/r2" -- $small \
    >"$tmp/r2.log" 2>&1 &
launcher=$!
pids="$pids $launcher"
wait_for 120 step_at_least "$tmp/r2/metrics.jsonl" 3 || fail "run 2 did not start training"
kill -TERM "$launcher"
i=0; while kill -0 "$launcher" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
kill -0 "$launcher" 2>/dev/null && fail "run 2: the launcher did not stop within 60 s of SIGTERM"
grep -q '"reason":"signal"' "$tmp/r2/metrics.jsonl" || fail "run 2: no checkpoint on SIGTERM"
sleep 1
left_behind && fail "run 2: processes left behind"
bash "$npid" run --data "$tmp/data" --epochs 4 --model resnet20 --run-dir "$tmp/r2" -- $small \
    >"$tmp/r2b.log" 2>&1 || fail "run 2, the same command again: launcher exit $?"
grep -q "holds a checkpoint: continuing that run" "$tmp/r2b.log" || fail "run 2 again: the launcher did not continue the run"
grep -q "resume auto: .* holds a checkpoint; continuing" "$tmp/r2/logs/trainer.log" || fail "run 2 again: the trainer did not resume"
grep -q '"type":"end".*"reason":"done"' "$tmp/r2/metrics.jsonl" || grep -q "npid: epoch 4/4" "$tmp/r2b.log" ||
    fail "run 2 again: the run did not finish its 4 epochs"
left_behind && fail "run 2 again: processes left behind"

# 3. a failing run exits non-zero
bash "$npid" run --data "$tmp/data" --epochs 2 --model resnet20 --run-dir "$tmp/r3" -- $small --nce-t 0.0001 \
    >"$tmp/r3.log" 2>&1
rc=$?
[ $rc -ne 0 ] || fail "run 3: a failing training run should make the launcher exit non-zero"
left_behind && fail "run 3: processes left behind"

# 4. an unlabelled (flat) set trains; evald's refusal is said once and not retried
mkdir -p "$tmp/flat"
for f in "$tmp"/data/train/*/*.jpg; do
    c=$(basename "$(dirname "$f")"); mv "$f" "$tmp/flat/${c}_$(basename "$f")"
done
bash "$npid" run --data "$tmp/flat" --epochs 2 --model resnet20 --run-dir "$tmp/r4" -- $small \
    >"$tmp/r4.log" 2>&1 || fail "run 4 (flat): launcher exit $?: $(cat "$tmp/r4.log")"
[ "$(grep -c "has no labels: no kNN evaluation, linear probe or baselines" "$tmp/r4.log")" -eq 1 ] ||
    fail "run 4 (flat): the missing labels not said once: $(cat "$tmp/r4.log")"
grep -q "restarting\|failed" "$tmp/r4.log" && fail "run 4 (flat): $(cat "$tmp/r4.log")"
[ -s "$tmp/r4/checkpoints/trainer.ckpt" ] || fail "run 4 (flat): no checkpoint"
left_behind && fail "run 4: processes left behind"

# 5. the flat set labelled by file lists, passed as trainer flags
for f in "$tmp"/flat/*.jpg; do
    b=$(basename "$f"); printf '%s\t%s\n' "$b" "${b%%_*}"
done >"$tmp/flat/train.tsv"
(cd "$tmp/data" && for f in test/*/*.jpg; do printf '%s\t%s\n' "$f" "$(basename "$(dirname "$f")")"; done) \
    >"$tmp/data/test.tsv"
timeout -k 5 180 bash "$npid" run --data "$tmp/flat" --epochs 2 --model resnet20 --run-dir "$tmp/r5" \
    -- $small --list "$tmp/flat/train.tsv" --test-list "$tmp/data/test.tsv" >"$tmp/r5.log" 2>&1 ||
    fail "run 5 (lists): launcher exit $?: $(tail -5 "$tmp/r5.log"; tail -3 "$tmp/r5/logs/loader-1.log")"
grep -q "has no labels" "$tmp/r5.log" && fail "run 5 (lists): the lists' labels were not seen"
grep -q '"against":"recomputed"' "$tmp/r5/eval/final.jsonl" || fail "run 5 (lists): no final kNN"
grep -q "npid: linear top-1" "$tmp/r5.log" || fail "run 5 (lists): no linear probe"
left_behind && fail "run 5: processes left behind"
echo "$name: run dir complete, dead loader restarted, SIGTERM checkpointed, failure exit $rc, flat set without evaluation, file lists to every process"
