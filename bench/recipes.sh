#!/bin/sh
# Reproduces the experiment log of docs/recipes.md: trains each named configuration with real
# processes (npid-bankd, one npid-loader, npid-trainer, and npid-evald attached, --against
# both, niced so the trainer keeps the cores), scores the untrained network of the same flags
# first (`npid-trainer --init-only`, epoch 0), and writes per configuration
#   OUT/NAME.tsv   epoch  step  train_seconds  bank_top1  recomputed_top1   (kNN %, k 200)
# then OUT/recipes.md (one markdown table of every configuration run into OUT so far) and
# OUT/recipes.png (kNN per epoch, gnuplot).
#
# Usage: bench/recipes.sh [-o OUT] NAME...      (NAME from `bench/recipes.sh -l`; "all": every one)
#        bench/recipes.sh [-o OUT] -p            (only the table and plot from OUT's .tsv files)
# Environment: NPID_BIN (build dir, default build), NPID_CACHE (CIFAR-10 cache),
# OPENBLAS_CORETYPE (SkylakeX on AVX-512 machines unless set), RECIPES_PORT (base port, 23700),
# BASELINE (a kNN % drawn as a dashed line in the plot, e.g. the raw-pixel 41.10).
# Not part of `make bench` (minutes per configuration); data: the shared CIFAR-10 JPEGs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${NPID_BIN:-$root/build}
out=$root/docs/recipes
py=/usr/bin/python3

# name | data (c5k: 500 train / 100 test images per class; full: all of CIFAR-10) | epochs | trainer flags
# (c5k epochs are 40 steps of 128; full ones 391)
configs() {
    cat <<'EOF'
ref-c5k|c5k|4|--preset reference --model resnet20
t01-c5k|c5k|4|--preset cifar --nce-t 0.1
t01-m0-c5k|c5k|4|--preset cifar --nce-t 0.1 --nce-m 0
t01-m09-c5k|c5k|4|--preset cifar --nce-t 0.1 --nce-m 0.9
t01-m099-c5k|c5k|4|--preset cifar --nce-t 0.1 --nce-m 0.99
t01-augnone-c5k|c5k|4|--preset cifar --nce-t 0.1 --aug none
t1-c5k|c5k|4|--preset cifar --nce-t 1.0
lr03-c5k|c5k|4|--preset cifar --lr 0.03
lr3-c5k|c5k|4|--preset cifar --lr 0.3
cifar-c5k|c5k|16|--preset cifar
learn16-c5k|c5k|40|--preset cifar --size 16 --lr-schedule step
cifar-full|full|3|--preset cifar
cifar-full-r18h|full|2|--preset cifar --model resnet18-half
EOF
}

usage() { echo "usage: bench/recipes.sh [-o OUT] NAME... | -l | -p   (NAME: $(configs | cut -d'|' -f1 | tr '\n' ' ')all)"; }
plot_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        -o) out=$2; shift 2 ;;
        -l) configs | sed 's/|/\t/g'; exit 0 ;;
        -p) plot_only=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || [ $plot_only = 1 ] || { usage >&2; exit 2; }
names="$*"
if [ $plot_only = 0 ]; then
[ "$names" = all ] && names=$(configs | cut -d'|' -f1)
for n in $names; do
    configs | cut -d'|' -f1 | grep -qx "$n" || { echo "recipes: unknown configuration '$n'" >&2; usage >&2; exit 2; }
done
for b in npid-bankd npid-loader npid-trainer npid-evald; do
    [ -x "$bin/$b" ] || { echo "recipes: $bin/$b not built (make -j2)" >&2; exit 1; }
done
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    if grep -q avx512f /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=SkylakeX
    else export OPENBLAS_CORETYPE=Haswell; fi
fi
cifar=$("$root/loader/cifar-cache.sh") || { echo "recipes: the shared CIFAR-10 data is needed" >&2; exit 1; }
mkdir -p "$out"

# subset DIR PER_CLASS TEST_PER_CLASS: the first images (sorted names) of every class, symlinked
subset() {
    [ -d "$1/test" ] && return 0
    tmpd=$1.tmp.$$
    for split in train test; do
        count=$2; [ $split = test ] && count=$3
        for cdir in "$cifar/$split"/*/; do
            c=$(basename "$cdir"); mkdir -p "$tmpd/$split/$c"
            ls "$cdir" | sort | head -n "$count" | sed "s|^|$cdir|" | xargs ln -s -t "$tmpd/$split/$c" || exit 1
        done
    done
    mv "$tmpd" "$1"
}
cache=${NPID_CACHE:-${HOME:-/tmp}/.cache/npid}

work=$(mktemp -d /tmp/npid-recipes.XXXXXX)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; sleep 1; for p in $pids; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
port=${RECIPES_PORT:-23700}
bank=tcp://127.0.0.1:$port tasks=tcp://127.0.0.1:$((port + 1)) events=tcp://127.0.0.1:$((port + 2))
export NPID_LOG_LEVEL=${NPID_LOG_LEVEL:-info}
# top1 FILE AGAINST [STEP]: top-1 (%) of the eval line against AGAINST (at STEP) in FILE
top1() {
    $py - "$@" <<'PY'
import json, sys
f, against = sys.argv[1], sys.argv[2]
step = int(sys.argv[3]) if len(sys.argv) > 3 else None
v = "-"
for l in open(f):
    try: e = json.loads(l)
    except ValueError: continue
    if e.get("type") == "eval" and e.get("against") == against and (step is None or e.get("step") == step):
        v = "%.1f" % (100 * e["top1"])
print(v)
PY
}
bankd_pid=""
new_bankd() {
    [ -n "$bankd_pid" ] && { kill "$bankd_pid" 2>/dev/null; wait "$bankd_pid" 2>/dev/null; }
    "$bin/npid-bankd" --bind "$bank" --dir "$work/bank-$1" >>"$work/bankd.log" 2>&1 &
    bankd_pid=$!; pids="$pids $bankd_pid"
}

for n in $names; do
    line=$(configs | grep "^$n|")
    data=$(echo "$line" | cut -d'|' -f2); epochs=$(echo "$line" | cut -d'|' -f3); flags=$(echo "$line" | cut -d'|' -f4)
    case $data in
        c5k) dir=$cache/cifar10-sub500-100; subset "$dir" 500 100 ;;
        full) dir=$cifar ;;
    esac
    rd=$work/$n; mkdir -p "$rd"
    echo "recipes: $n: $data, $epochs epochs: npid-trainer $flags" >&2
    "$bin/npid-loader" --data "$dir" --tasks "$tasks" >>"$rd/loader.log" 2>&1 &
    loader=$!; pids="$pids $loader"
    # epoch 0: the untrained network of the same flags (the bank as the trainer initialised it)
    new_bankd "$n-init"
    timeout -k 5 1800 "$bin/npid-trainer" --data "$dir" --run-dir "$rd/init" --bank "$bank" --tasks "$tasks" \
        --events "$events" $flags --init-only --no-progress >>"$rd/trainer-init.log" 2>&1 ||
        { echo "recipes: $n: --init-only failed (see $rd)" >&2; exit 1; }
    timeout -k 5 1800 nice -n 10 "$bin/npid-evald" --once --checkpoint "$rd/init/checkpoints/trainer.ckpt" \
        --data "$dir" --bank "$bank" --against both >"$rd/evals0.jsonl" 2>>"$rd/evald.log"
    # training with evald attached
    new_bankd "$n"
    every=1; [ "$epochs" -gt 20 ] && every=4
    nice -n 10 "$bin/npid-evald" attach --data "$dir" --bank "$bank" --events "$events" --against both \
        --every "$every" --exit-on-end >"$rd/evals.jsonl" 2>>"$rd/evald.log" &
    evald=$!; pids="$pids $evald"
    sleep 1
    t0=$(date +%s%3N)
    timeout -k 5 14400 "$bin/npid-trainer" --data "$dir" --run-dir "$rd/run" --bank "$bank" --tasks "$tasks" \
        --events "$events" $flags --epochs "$epochs" --no-progress >>"$rd/trainer.log" 2>&1 ||
        { echo "recipes: $n: training failed (see $rd/trainer.log)" >&2; exit 1; }
    timeout 1800 sh -c "while kill -0 $evald 2>/dev/null; do sleep 1; done"
    kill "$loader" 2>/dev/null
    {
        printf '%s\t%s\t%s\t%s\t%s\n' 0 0 0 "$(top1 "$rd/evals0.jsonl" bank)" "$(top1 "$rd/evals0.jsonl" recomputed)"
        sed -n 's/.*"type":"checkpoint".*"time":\([0-9]*\),"step":\([0-9]*\),"epoch":\([0-9]*\),"epoch_step":0.*"reason":"epoch".*/\3 \2 \1/p' \
            "$rd/run/metrics.jsonl" | while read -r ep st tm; do
            b=$(top1 "$rd/evals.jsonl" bank "$st"); r=$(top1 "$rd/evals.jsonl" recomputed "$st")
            [ "$b$r" = "--" ] || printf '%s\t%s\t%s\t%s\t%s\n' "$ep" "$st" "$(( (tm - t0) / 1000 ))" "$b" "$r"
        done
    } >"$out/$n.tsv"
    echo "$flags" >"$out/$n.flags"
    echo "$data" >"$out/$n.data"
    cat "$out/$n.tsv" >&2
done
fi

# the table of every configuration in OUT, and the plot
{
    echo "| configuration | data | trainer flags | epoch | step | train s | kNN bank % | kNN recomputed % |"
    echo "|---|---|---|---|---|---|---|---|"
    for t in "$out"/*.tsv; do
        n=$(basename "$t" .tsv)
        while IFS='	' read -r ep st s b r; do
            echo "| $n | $(cat "$out/$n.data") | \`$(cat "$out/$n.flags")\` | $ep | $st | $s | $b | $r |"
        done <"$t"
    done
} >"$out/recipes.md"
plot=""
for t in "$out"/*.tsv; do
    n=$(basename "$t" .tsv)
    plot="$plot${plot:+, }'$t' using 1:5 with linespoints lw 2 title '$n recomputed', '$t' using 1:4 with lines title '$n bank'"
done
# BASELINE=PCT: also a horizontal line there (the raw-pixel kNN, say)
[ -n "${BASELINE:-}" ] && plot="$plot, ${BASELINE} with lines dt 2 lc rgb 'black' title 'raw pixels (${BASELINE} %)'"
gnuplot -e "set terminal png size 1000,640; set output '$out/recipes.png'; set datafile missing '-';
    set xlabel 'epoch'; set ylabel 'weighted kNN top-1 (%)'; set key outside right; set grid;
    set title 'npid on CIFAR-10: kNN per epoch (with points: recomputed; plain lines: bank)'; plot $plot" ||
    { echo "recipes: gnuplot failed" >&2; exit 1; }
echo "recipes: wrote $out/recipes.md and $out/recipes.png" >&2
