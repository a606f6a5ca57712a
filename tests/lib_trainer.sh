# Shared by the tests/it_trainer_*.sh scripts (sourced; POSIX sh): a temp dir, port choice,
# starting real processes, bounded waits, and cleanup of every child on exit.
# The caller sets `name` before sourcing.
bin=${NPID_BIN:?NPID_BIN not set}
py=/usr/bin/python3
. "$(dirname "$0")/lib_reap.sh"
for b in npid-bankd npid-loader npid-trainer; do
    [ -x "$bin/$b" ] || { echo "$name: $b not built" >&2; exit 77; }
done
tmp=$(mktemp -d "/tmp/npid-$name.XXXXXX")
pids=""
cleanup() {
    # whole trees: a process started as `timeout ... npid-trainer` must not outlive its wrapper
    kill_tree 9 $pids
    for p in $pids; do wait "$p" 2>/dev/null; done
    [ -n "${NPID_KEEP_TMP:-}" ] && { echo "$name: kept $tmp" >&2; return; }
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "$name: FAIL: $*" >&2
    for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -8 "$f" >&2; }; done
    exit 1
}
# ports BASE..BASE+2 from 21000..24999, skipping bases something already listens on (a
# training run on the same machine, another test); without ss, the first pick is taken
base_free() {
    command -v ss >/dev/null || return 0
    [ -z "$(ss -Hltn "( sport = :$1 or sport = :$(($1 + 1)) or sport = :$(($1 + 2)) )" 2>/dev/null)" ]
}
base=$(( 21000 + ($$ % 400) * 10 ))
tries=0
while ! base_free "$base" && [ $tries -lt 400 ]; do
    base=$(( 21000 + (base - 21000 + 10) % 4000 ))
    tries=$((tries + 1))
done
export NPID_BANK=tcp://127.0.0.1:$base
export NPID_TASKS=tcp://127.0.0.1:$((base + 1))
export NPID_EVENTS=tcp://127.0.0.1:$((base + 2))
# the generic kernel is much slower; tests are not timed but should stay fast
[ -n "${OPENBLAS_CORETYPE:-}" ] || export OPENBLAS_CORETYPE=Haswell

# start_bg NAME CMD...: runs CMD in the background, logging to $tmp/NAME.log; sets $last_pid
start_bg() {
    n=$1; shift
    "$@" >>"$tmp/$n.log" 2>&1 &
    last_pid=$!
    pids="$pids $last_pid"
}
# wait_for SECONDS CMD...: polls CMD every 0.2 s until it succeeds; 1 when SECONDS of wall
# time have passed (however long each CMD takes)
wait_for() {
    limit=$1; shift
    end=$(( $(date +%s) + limit ))
    while ! "$@" 2>/dev/null; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.2
    done
    return 0
}
# metrics_step FILE: the largest "step" of the metrics events in a metrics.jsonl so far
metrics_step() {
    [ -f "$1" ] || { echo 0; return; }
    sed -n 's/.*"type":"metrics".*"step":\([0-9]*\).*/\1/p' "$1" | tail -1 | grep . || echo 0
}
step_at_least() { [ "$(metrics_step "$1")" -ge "$2" ]; }
