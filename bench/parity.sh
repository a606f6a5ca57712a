#!/bin/sh
# Parity benchmark (`make parity`; not part of `make check` or CI): the reference recipe
# (--preset reference: m = 4096, tau 0.1, batch 128, lr 0.03, reference CIFAR augmentations,
# uniform bank init) for EPOCHS epochs on full CIFAR-10, in npid and in the PyTorch peer
# (bench/peer/npid_peer.py train), one after the other on this machine, once per seed in
# SEEDS. Prints both weighted kNN curves (k 200, sigma 0.1; against the bank and against
# recomputed train features; per seed and the mean over seeds) and wall times, and writes
# PARITY_OUT/parity.md (the table) and PARITY_OUT/parity.png.
# Seeds accumulate: each seed's figures are stored in PARITY_OUT/parity-runs.jsonl (a seed run
# again replaces its record), and the report covers every stored seed of the same MODEL and
# EPOCHS, so `make parity EPOCHS=2 SEEDS="3 4"` adds two seeds to the ones already there.
#
# npid side: bankd + LOADERS loaders + npid-trainer --keep-epochs (checkpoints/epoch-NNN.ckpt
# and bank-epoch-NNN.snap); after training, each epoch is evaluated with
# npid-evald --once --against both, its --bank a bankd started on a directory holding only
# that epoch's snapshot. Evaluation therefore does not share the cores with training, and the
# training wall time excludes it (it is reported separately, as is the peer's).
#
# Environment: EPOCHS (3), SEEDS ("0"; e.g. "0 1 2"), MODEL (resnet20), LOADERS (1), NPID_BIN (build/), PARITY_DATA (an
# ImageFolder root; default CIFAR-10 from ../shared, extracted to ${NPID_CACHE:-~/.cache/npid}),
# PARITY_OUT (default docs/), NPID_KEEP_TMP=1 keeps the work directory, PARITY_CHECKS=0 skips
# the one-step and evaluation checks (when adding seeds; the report keeps the stored ones).
# `bench/parity.sh --report` (`make parity-report`) runs nothing: it rewrites parity.md and
# parity.png from the runs stored in PARITY_OUT for MODEL and EPOCHS.
set -u
name=parity
here=$(cd "$(dirname "$0")" && pwd)
root=${NPID_ROOT:-$(dirname "$here")}
bin=${NPID_BIN:-$root/build}
py=/usr/bin/python3
epochs=${EPOCHS:-3}
seeds=${SEEDS:-0}
model=${MODEL:-resnet20}
loaders=${LOADERS:-1}
out=${PARITY_OUT:-}
[ -n "$out" ] || out=$root/docs
export OPENBLAS_CORETYPE=SkylakeX

. "$here/lib_eval.sh"
say() { echo "$name: $*" >&2; }
die() { echo "$name: $*" >&2; exit 1; }

case "${1:-}" in
    --report) report_only=1 ;;
    '') report_only= ;;
    *) echo "usage: $name [--report]" >&2; exit 2 ;;
esac

# --report without EPOCHS: the stored epoch count with the most seeds of MODEL
[ -n "$report_only" ] && [ -z "${EPOCHS:-}" ] && epochs=0
case "$epochs" in ''|*[!0-9]*) echo "$name: EPOCHS must be a positive number" >&2; exit 2 ;; esac
[ -n "$report_only" ] || [ "$epochs" != 0 ] || { echo "$name: EPOCHS must be a positive number" >&2; exit 2; }
$py -c 'import torch, torchvision' 2>/dev/null || die "PyTorch/torchvision not importable by $py"
command -v gnuplot >/dev/null || die "gnuplot not installed (apt-get install gnuplot-nox)"
# report [ARGS]: parity.md and parity.png in $out over the stored runs (ARGS: the fresh
# seeds' details for parity_report.py); the plot's epoch range is the report's last epoch
report() {
    $py "$here/parity_report.py" --out "$out" --work "$w" --model "$model" --epochs "$epochs" \
        "$@" || die "cannot write the report"
    last_epoch=$(tail -n 1 "$w/parity.dat" | cut -d' ' -f1)
    gnuplot -e "datafile='$w/parity.dat'; outfile='$out/parity.png'; epochs=$last_epoch" \
        "$here/parity-plot.gp" || die "gnuplot failed"
    say "wrote $out/parity.md and $out/parity.png"
}
if [ -n "$report_only" ]; then
    w=$(mktemp -d /tmp/npid-parity.XXXXXX)
    trap 'rm -rf "$w"' EXIT
    report
    exit 0
fi
for sd in $seeds; do
    case "$sd" in *[!0-9]*) echo "$name: SEEDS must be non-negative numbers" >&2; exit 2 ;; esac
done
[ -n "$seeds" ] || { echo "$name: SEEDS is empty" >&2; exit 2; }
case "$loaders" in ''|*[!0-9]*|0) echo "$name: LOADERS must be a positive number" >&2; exit 2 ;; esac
for b in npid-bankd npid-loader npid-trainer npid-evald; do
    [ -x "$bin/$b" ] || die "$bin/$b not built (run make)"
done

data=${PARITY_DATA:-}
if [ -z "$data" ]; then
    tarball=$root/../shared/data/cifar10-jpeg.tar.gz
    cache=${NPID_CACHE:-$HOME/.cache/npid}
    if [ ! -d "$cache/cifar10/train" ]; then
        [ -f "$tarball" ] || die "$tarball absent (needs ../shared, or PARITY_DATA=dir)"
        say "extracting $tarball to $cache"
        mkdir -p "$cache" && tar -xzf "$tarball" -C "$cache" || die "cannot extract $tarball"
    fi
    data=$cache/cifar10
fi
[ -d "$data/train" ] && [ -d "$data/test" ] || die "$data: needs train/ and test/"
mkdir -p "$out" || die "cannot create $out"

w=$(mktemp -d /tmp/npid-parity.XXXXXX)
pids=""
stop_children() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    pids=""
}
cleanup() {
    stop_children
    [ -n "${NPID_KEEP_TMP:-}" ] && { say "kept $w"; return; }
    rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ports_free BASE COUNT: 0 when none of BASE..BASE+COUNT-1 is listening (ss; assume free without it)
ports_free() {
    command -v ss >/dev/null || return 0
    j=0
    while [ $j -lt "$2" ]; do
        [ -z "$(ss -Hltn "sport = :$(($1 + j))" 2>/dev/null)" ] || return 1
        j=$((j + 1))
    done
    return 0
}
# ports from 29000..29999 (clear of 5557-5560, 17000-18999, the trainer tests', bench_e2e's and
# the launcher test's ranges), skipping any that something already listens on
port=$(( 29000 + ($$ % 100) * 10 ))
k=0
while ! ports_free "$port" 4 && [ $k -lt 50 ]; do port=$((port + 4)); k=$((k + 1)); done
bank_ep=tcp://127.0.0.1:$port
tasks_ep=tcp://127.0.0.1:$((port + 1))
events_ep=tcp://127.0.0.1:$((port + 2))
eval_ep=tcp://127.0.0.1:$((port + 3))
now() { date +%s.%N; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
say "data $data, model $model, $epochs epoch(s), work dir $w"
load_before=$(load)

# ---- npid: run_npid SEED DIR --------------------------------------------------------------
run_npid() {
    sd=$1; d=$2
    mkdir -p "$d/bank" "$d/logs"
    "$bin/npid-bankd" --bind "$bank_ep" --dir "$d/bank" --snapshot-every 0 \
        >"$d/logs/bankd.log" 2>&1 &
    pids="$pids $!"
    i=0
    while [ $i -lt "$loaders" ]; do
        "$bin/npid-loader" --data "$data" --tasks "$tasks_ep" --log-level warn \
            >"$d/logs/loader-$i.log" 2>&1 &
        pids="$pids $!"
        i=$((i + 1))
    done
    say "npid seed $sd: training ($loaders loader(s))"
    t0=$(now)
    timeout $((epochs * 3600)) "$bin/npid-trainer" --data "$data" --run-dir "$d/run" \
        --preset reference --model "$model" --bank-init uniform --epochs "$epochs" --keep-epochs \
        --seed "$sd" --bank "$bank_ep" --tasks "$tasks_ep" --events "$events_ep" --no-progress \
        >"$d/logs/trainer.log" 2>&1
    rc=$?
    t1=$(now)
    stop_children
    if [ $rc -ne 0 ]; then
        tail -5 "$d/logs/trainer.log" >&2
        die "npid-trainer failed (exit $rc)"
    fi
    grep -E 'epoch [0-9]+ done' "$d/logs/trainer.log" | sed 's/^/  /' >&2
    say "npid seed $sd: evaluating each epoch's checkpoint (npid-evald --once --against both)"
    : >"$d/evals.jsonl"
    t2=$(now)
    eval_kept_epochs "$d" "$epochs" "$data" "$eval_ep" "$d/evals.jsonl" || die "evaluation failed"
    stop_children
    t3=$(now)
    echo "$t0 $t1 $t2 $t3" >"$d/times"
}

# ---- peer: run_peer SEED DIR --------------------------------------------------------------
run_peer() {
    sd=$1; d=$2
    mkdir -p "$d"
    say "peer seed $sd: training and evaluating (bench/peer/npid_peer.py train, OMP_WAIT_POLICY=PASSIVE)"
    t4=$(now)
    OMP_WAIT_POLICY=PASSIVE timeout $((epochs * 7200)) $py "$root/bench/peer/npid_peer.py" train \
        --data "$data" --model "$model" --epochs "$epochs" --seed "$sd" >"$d/peer.jsonl" 2>"$d/peer.log"
    rc=$?
    t5=$(now)
    grep 'epoch [0-9]*:' "$d/peer.log" | sed 's/^/  /' >&2
    [ $rc -eq 0 ] || { tail -5 "$d/peer.log" >&2; die "peer failed (exit $rc)"; }
    echo "$t4 $t5" >"$d/times"
}

for sd in $seeds; do
    run_npid "$sd" "$w/npid-$sd"
    run_peer "$sd" "$w/peer-$sd"
done

# ---- one step, same state, both implementations (bench/peer/step_parity.py) ----------------
# A failed check still lets the report store this invocation's seeds (and show the failure);
# the script then exits 1.
checks_failed=
if [ "${PARITY_CHECKS:-1}" != 0 ]; then
    say "one-step check: npid-step vs PyTorch from the same checkpoints and inputs"
    first=$(echo $seeds | cut -d' ' -f1)
    last=$w/npid-$first/run/checkpoints/epoch-$(printf '%03d' $((epochs - 1))).ckpt
    : >"$w/step.jsonl"
    $py "$root/bench/peer/step_parity.py" --bin "$bin" --model "$model" --data "$data" --batch 128 \
        >>"$w/step.jsonl" || checks_failed="$checks_failed one-step(untrained)"
    $py "$root/bench/peer/step_parity.py" --bin "$bin" --model "$model" --data "$data" --batch 128 \
        --ckpt "$last" >>"$w/step.jsonl" || checks_failed="$checks_failed one-step(trained)"
    sed 's/^/  /' "$w/step.jsonl" >&2
    say "evaluation check: $last through npid-evald and through the peer's evaluation"
    OMP_WAIT_POLICY=PASSIVE $py "$root/bench/peer/eval_parity.py" --bin "$bin" --model "$model" \
        --data "$data" --ckpt "$last" >"$w/evalpar.jsonl" 2>"$w/evalpar.log" \
        || { tail -3 "$w/evalpar.log" >&2; checks_failed="$checks_failed evaluation"; }
    sed 's/^/  /' "$w/evalpar.jsonl" >&2
    # a check that printed nothing (it crashed) must not replace the stored results
    [ -s "$w/evalpar.jsonl" ] || rm -f "$w/evalpar.jsonl"
    [ "$(wc -l <"$w/step.jsonl")" -eq 2 ] || rm -f "$w/step.jsonl"
else
    say "PARITY_CHECKS=0: the one-step and evaluation checks are skipped (the report keeps the stored ones)"
fi

# ---- table and plot ---------------------------------------------------------------------------
report --seeds "$seeds" --commit "$commit" --loaders "$loaders" --data "$data" \
    --load-before "$load_before" --load-after "$(load)"
[ -z "$checks_failed" ] || die "failed:$checks_failed (npid and PyTorch differ; see $out/parity.md)"
