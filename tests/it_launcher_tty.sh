#!/bin/sh
# What the launcher (scripts/npid run) shows, with real processes on a tiny synthetic set:
#   1. under a pseudo-terminal (script(1)): one line per evaluated epoch with its kNN figures
#      (bank at every checkpoint, recomputed where evald measured it: here every epoch, and
#      the end), the baselines' lines, and a progress line drawn with \r + clear-to-end-of-line
#      that is erased before any other line is printed;
#   2. under a pipe: the same per-epoch lines, no \r and no escape sequence at all;
#      --no-baselines measures none;
#   3. Ctrl-C (SIGINT to the launcher's process group on its terminal) stops the run cleanly:
#      the trainer checkpoints, the launcher exits, no process is left;
#   4. SIGHUP (the terminal closed) ends the launcher at once, and what it started still
#      stops: the trainer checkpoints, no process is left.
set -u
name=it_launcher_tty
. "$(dirname "$0")/lib_trainer.sh"
command -v bash >/dev/null || { echo "$name: bash needed" >&2; exit 77; }
command -v script >/dev/null || { echo "$name: script(1) needed (package bsdutils)" >&2; exit 77; }
npid=${NPID_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}/scripts/npid
export NPID_PORT_BASE=$(( 36000 + ($$ % 300) * 10 ))
small="--batch 50 --nce-k 64 --bank-init uniform --metrics-every 1"
cr=$(printf '\r')
esc=$(printf '\033')
# left_behind: a process of these runs still there (each one names a path under $tmp/)
left_behind() { pgrep -f "$tmp/" >/dev/null; }
# lines_for RUN LOG: every step that evald measured has its line in LOG, with the figures of
# the results files (bank top-1; recomputed top-1 where measured)
lines_for() {
    for s in $(sed -n 's/.*"step":\([0-9]*\),.*"against":"bank".*/\1/p' "$1/eval/results.jsonl" "$1/eval/final.jsonl" | sort -un); do
        e=$((s / 6))
        grep -aq "npid: epoch $e/2  kNN top-1 bank [0-9.]*%  recomputed " "$2" ||
            fail "no line for epoch $e (step $s, measured) in $2"
    done
    for s in $(sed -n 's/.*"step":\([0-9]*\),.*"against":"recomputed".*/\1/p' "$1/eval/recomputed.jsonl" "$1/eval/final.jsonl" | sort -un); do
        e=$((s / 6))
        grep -aq "npid: epoch $e/2  kNN top-1 bank [0-9.-]*%*  recomputed [0-9.]*%  top-5 [0-9.]*%  loss [0-9.]*  [0-9]* img/s  elapsed [0-9ms]*  ETA " "$2" ||
            fail "epoch $e: recomputed was measured (step $s) but its line does not show it"
    done
}

"$bin/npid-loader" synth --out "$tmp/data" --per-class 30 --test-per-class 5 >/dev/null 2>&1 || fail "synth"

# 1. a terminal
script -qfc "exec bash '$npid' run --data '$tmp/data' --epochs 2 --model resnet20 --run-dir '$tmp/t1' --recompute-every 1 -- $small" \
    /dev/null >"$tmp/tty.log" 2>&1 </dev/null &
pids="$pids $!"
wait $!; rc=$?
[ $rc -eq 0 ] || fail "terminal run: exit $rc"
grep -aq "npid: done: $tmp/t1" "$tmp/tty.log" || fail "terminal run did not finish"
lines_for "$tmp/t1" "$tmp/tty.log"
grep -aq "npid: epoch 2/2  kNN top-1 bank [0-9.]*%  recomputed [0-9.]*%" "$tmp/tty.log" ||
    fail "terminal run: the last epoch's line lacks bank or recomputed kNN"
grep -aq "${cr}${esc}\[Knpid: epoch [12]/2  step [0-9]/6  loss [0-9.]*  [0-9]* img/s  data wait [0-9.]* ms  elapsed [0-9ms]*  ETA " "$tmp/tty.log" ||
    fail "terminal run: no progress line drawn with CR and clear-to-end-of-line"
# a progress line is always erased before the next line: never "ETA <d>npid:" on one line
grep -aq "ETA [0-9a-z-]*npid:" "$tmp/tty.log" && fail "terminal run: a line printed over the progress line"
grep -aq "npid: baseline raw pixels kNN top-1 [0-9.]*%" "$tmp/tty.log" || fail "terminal run: no raw-pixel baseline line"
grep -aq "npid: baseline untrained network kNN top-1 bank [0-9.]*%" "$tmp/tty.log" || fail "terminal run: no untrained (bank) baseline line"
grep -aq "npid: baseline untrained network kNN top-1 recomputed [0-9.]*%" "$tmp/tty.log" || fail "terminal run: no untrained (recomputed) baseline line"
[ "$(grep -c '"baseline"' "$tmp/t1/eval/baselines.jsonl")" -eq 3 ] || fail "terminal run: eval/baselines.jsonl should hold 3 lines"
left_behind && fail "terminal run: processes left behind"

# 2. a pipe, without baselines
bash "$npid" run --data "$tmp/data" --epochs 2 --model resnet20 --run-dir "$tmp/p1" --no-baselines -- $small \
    2>&1 </dev/null | cat >"$tmp/pipe.log"
grep -aq "npid: done: $tmp/p1" "$tmp/pipe.log" || fail "pipe run did not finish"
lines_for "$tmp/p1" "$tmp/pipe.log"
grep -aq "npid: epoch 2/2  kNN top-1 bank [0-9.]*%  recomputed [0-9.]*%" "$tmp/pipe.log" ||
    fail "pipe run: the last epoch's line lacks bank or recomputed kNN"
grep -aq "$cr" "$tmp/pipe.log" && fail "pipe run: a CR was written to a pipe"
grep -aq "$esc" "$tmp/pipe.log" && fail "pipe run: an escape sequence was written to a pipe"
grep -aq "baseline" "$tmp/pipe.log" && fail "pipe run: --no-baselines still measured baselines"
left_behind && fail "pipe run: processes left behind"

# long_run WHAT DIR LOG: a 100-epoch run in a pseudo-terminal, in the background, until it
# has trained 3 steps; sets $sc (script's pid) and $launcher. A background job of this shell
# starts with SIGINT ignored, which bash could not trap; env --default-signal gives the
# launcher the disposition a terminal's foreground job has.
long_run() {
    env --default-signal=INT script -qfc "exec bash '$npid' run --data '$tmp/data' --epochs 100 --model resnet20 --run-dir '$2' -- $small" \
        /dev/null >"$3" 2>&1 </dev/null &
    sc=$!
    pids="$pids $sc"
    wait_for 60 step_at_least "$2/metrics.jsonl" 3 || fail "$1 run did not start training"
    launcher=$(pgrep -P "$sc" | head -1)
    [ -n "$launcher" ] || fail "$1 run: no launcher under script"
}

# 3. Ctrl-C on the terminal
long_run Ctrl-C "$tmp/c1" "$tmp/ctrlc.log"
pgid=$(ps -o pgid= -p "$launcher" | tr -d ' ')
kill -INT "-$pgid" || fail "Ctrl-C run: cannot signal process group $pgid"
i=0; while kill -0 "$sc" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
kill -0 "$sc" 2>/dev/null && fail "Ctrl-C run: the launcher did not stop within 60 s of SIGINT"
wait "$sc"
grep -aq "npid: stopping: the trainer checkpoints first" "$tmp/ctrlc.log" || fail "Ctrl-C run: no stop message"
grep -aq "npid: stopped: $tmp/c1 holds a checkpoint; the same command continues the run" "$tmp/ctrlc.log" ||
    fail "Ctrl-C run: no word on how to continue"
grep -q '"reason":"signal"' "$tmp/c1/metrics.jsonl" || fail "Ctrl-C run: no checkpoint on SIGINT"
grep -a "scripts/npid: " "$tmp/ctrlc.log" && fail "Ctrl-C run: bash reported an error in the launcher"
sleep 1
left_behind && fail "Ctrl-C run: processes left behind"

# 4. the terminal goes away
long_run SIGHUP "$tmp/h1" "$tmp/hup.log"
kill -HUP "$launcher"
wait "$sc"
nothing_left() { ! left_behind; }
wait_for 60 nothing_left || fail "SIGHUP run: processes left behind after 60 s"
grep -q '"reason":"signal"' "$tmp/h1/metrics.jsonl" || fail "SIGHUP run: no checkpoint"
echo "$name: terminal lines + progress, pipe without CR, Ctrl-C stop clean, SIGHUP leaves nothing"
