#!/bin/sh
# End-to-end training throughput: npid-bankd + N npid-loader + npid-trainer, all on this
# machine, against the PyTorch peer's end-to-end loop (bench/peer/npid_peer.py bench: a torch
# DataLoader with 2 workers over the same ImageFolder, the reference transforms, the same
# network and NCE head, SGD, 2 threads) run in the same invocation.
#
# Recipe: --preset reference --model M --bank-init uniform, batch 128, NCE m = 4096, on the
# CIFAR-10 JPEGs (extracted from ../shared to ${NPID_CACHE:-~/.cache/npid}/cifar10 if needed;
# skipped with a message when ../shared is absent). npid's figures come from the trainer's
# RUN_DIR/metrics.jsonl: images/s from the first to the last metrics event (the first window,
# start-up and warm-up, is not counted) and the mean per-step stage times of the later windows.
#
# Output: per model and loader count, one JSON line for img_per_s (with peer and ratio, and
# ms_data/ms_bank/ms_fwd/ms_loss/ms_bwd/ms_sgd, data_share, bank_share) and one for
# wait_share = (ms_data + ms_bank) / step time, the part of a step spent waiting for loaders
# and bankd (peer: waiting for the DataLoader plus the in-process bank gather/update).
#
# Environment: NPID_BIN (default build/), NPID_E2E_DATA (an ImageFolder root instead of
# CIFAR-10), NPID_E2E_MODELS (default "resnet20 resnet18"), NPID_E2E_LOADERS (default "1 2"),
# NPID_E2E_STEPS (steps per run for every model; default 30 resnet20, 8 resnet18),
# NPID_E2E_PEER=0 (skip the peer).
# The peer runs with OMP_WAIT_POLICY=PASSIVE: on a shared, oversubscribed machine libgomp's
# spinning threads otherwise cost PyTorch up to 4x (measured: resnet20 train step 88 vs 333
# img/s while other jobs ran), which would flatter npid.
set -u
name=bench_e2e
here=$(cd "$(dirname "$0")" && pwd)
root=${NPID_ROOT:-$(dirname "$here")}
bin=${NPID_BIN:-$root/build}
py=/usr/bin/python3
export OPENBLAS_CORETYPE=SkylakeX

say() { echo "$name: $*" >&2; }

for b in npid-bankd npid-loader npid-trainer; do
    [ -x "$bin/$b" ] || { say "$bin/$b not built"; exit 1; }
done

data=${NPID_E2E_DATA:-}
if [ -z "$data" ]; then
    tarball=$root/../shared/data/cifar10-jpeg.tar.gz
    cache=${NPID_CACHE:-$HOME/.cache/npid}
    if [ ! -d "$cache/cifar10/train" ]; then
        [ -f "$tarball" ] || { say "skipped: $tarball absent (needs ../shared)"; exit 0; }
        say "extracting $tarball to $cache"
        mkdir -p "$cache" && tar -xzf "$tarball" -C "$cache" || { say "cannot extract $tarball"; exit 1; }
    fi
    data=$cache/cifar10
fi
[ -d "$data/train" ] || { say "$data/train: no such directory"; exit 1; }

peer=${NPID_E2E_PEER:-1}
if [ "$peer" != 0 ] && ! $py -c 'import torch, torchvision' 2>/dev/null; then
    say "PyTorch/torchvision not importable by $py: figures without a peer"
    peer=0
fi

tmp=$(mktemp -d /tmp/npid-bench-e2e.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    pids=""
    [ -n "${NPID_KEEP_TMP:-}" ] && { say "kept $tmp"; return; }
    rm -rf "$tmp"
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
# ports from 26000..28999 (below the ephemeral range; clear of 5557-5560, 17000-18999 and the
# trainer tests' 21000-24999), skipping any that something already listens on
port=$(( 26000 + ($$ % 300) * 10 ))

# run_npid MODEL LOADERS STEPS WINDOW: one run; leaves $tmp/npid-MODEL-LOADERS/run/metrics.jsonl
run_npid() {
    d=$tmp/npid-$1-$2
    mkdir -p "$d"
    k=0
    while ! ports_free "$port" 3 && [ $k -lt 50 ]; do port=$((port + 3)); k=$((k + 1)); done
    bank=tcp://127.0.0.1:$port tasks=tcp://127.0.0.1:$((port + 1)) events=tcp://127.0.0.1:$((port + 2))
    port=$((port + 3))
    "$bin/npid-bankd" --bind "$bank" --dir "$d/bank" --snapshot-every 0 --log-level warn >"$d/bankd.log" 2>&1 &
    pids="$pids $!"
    i=0
    while [ $i -lt "$2" ]; do
        "$bin/npid-loader" --data "$data" --tasks "$tasks" --log-level warn >"$d/loader-$i.log" 2>&1 &
        pids="$pids $!"
        i=$((i + 1))
    done
    timeout 900 "$bin/npid-trainer" --data "$data" --run-dir "$d/run" --preset reference \
        --model "$1" --bank-init uniform --batch 128 --nce-k 4096 --max-steps "$3" \
        --metrics-every "$4" --bank "$bank" --tasks "$tasks" --events "$events" \
        --no-progress >"$d/trainer.log" 2>&1
    rc=$?
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    pids=""
    if [ $rc -ne 0 ]; then
        say "npid-trainer ($1, $2 loaders) failed (exit $rc):"
        tail -5 "$d/trainer.log" >&2
        return 1
    fi
    return 0
}

# report MODEL LOADERS METRICS_FILE PEER_JSON_FILE: prints the JSON lines
report() {
    $py - "$@" <<'EOF'
import json, sys
model, loaders, mfile, pfile = sys.argv[1:5]
ev = [json.loads(l) for l in open(mfile) if '"type":"metrics"' in l]
if len(ev) < 2:
    sys.exit(f"bench_e2e: {mfile}: fewer than two metrics windows")
first, rest = ev[0], ev[1:]
batch = 128
img_s = (rest[-1]["step"] - first["step"]) * batch / ((rest[-1]["time"] - first["time"]) / 1e3)
st = ("data", "bank", "fwd", "loss", "bwd", "sgd")
ms = {k: sum(e["ms_" + k] for e in rest) / len(rest) for k in st}
step = sum(ms.values())
peer = None
try:
    peer = json.loads(open(pfile).read())
except (OSError, ValueError):
    pass
case = f"{model}/b{batch}/m4096/loaders{loaders}"
r = lambda x, n=2: round(x, n)
line = {"bench": "e2e", "case": case, "metric": "img_per_s", "value": r(img_s, 1), "unit": "img/s"}
if peer:
    line.update(peer=r(peer["img_s"], 1), ratio=r(img_s / peer["img_s"]))
line.update({"ms_" + k: r(v, 3) for k, v in ms.items()})
line.update(ms_step=r(step, 1), data_share=r(ms["data"] / step, 4),
            bank_share=r(ms["bank"] / step, 4), steps=rest[-1]["step"] - first["step"])
if peer:
    line.update({"peer_ms_" + k: r(peer["ms_" + k], 3) for k in st})
print(json.dumps(line))
wait = {"bench": "e2e", "case": case, "metric": "wait_share",
        "value": r((ms["data"] + ms["bank"]) / step, 4), "unit": "fraction of step time"}
if peer:
    wait["peer"] = r(peer["data_share"] + peer["bank_share"], 4)
print(json.dumps(wait), flush=True)
EOF
}

rc=0
for model in ${NPID_E2E_MODELS:-resnet20 resnet18}; do
    case "$model" in
        resnet18*) steps=${NPID_E2E_STEPS:-8}; window=2 ;;
        *) steps=${NPID_E2E_STEPS:-30}; window=5 ;;
    esac
    [ "$steps" -gt "$window" ] || window=$((steps / 2))
    pfile=$tmp/peer-$model.json
    if [ "$peer" != 0 ]; then
        say "$model: PyTorch peer, $steps steps"
        if ! OMP_WAIT_POLICY=PASSIVE timeout 900 $py "$root/bench/peer/npid_peer.py" bench --data "$data" --model "$model" \
                --max-steps "$steps" --window "$window" >"$pfile" 2>"$tmp/peer-$model.log"; then
            say "peer ($model) failed:"; tail -5 "$tmp/peer-$model.log" >&2
            rm -f "$pfile"; rc=1
        fi
    fi
    for n in ${NPID_E2E_LOADERS:-1 2}; do
        say "$model: npid with $n loader(s), $steps steps"
        if run_npid "$model" "$n" "$steps" "$window"; then
            report "$model" "$n" "$tmp/npid-$model-$n/run/metrics.jsonl" "$pfile" || rc=1
        else
            rc=1
        fi
    done
done
exit $rc
