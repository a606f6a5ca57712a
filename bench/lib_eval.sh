# Sourced by bench/ten_minutes.sh and bench/parity.sh (POSIX sh): evaluating the epochs a run
# kept with `npid-trainer --keep-epochs`, after training, so evaluation never takes cores from
# it. Uses the caller's $bin (build dir); the pid of the bankd it runs is in $pids while that
# bankd lives (the caller's cleanup kills whatever is left there) and removed once reaped.
#
# eval_kept_epochs DIR EPOCHS DATA ENDPOINT OUT
#   for e in EVAL_FROM (default 0)..EPOCHS-1: serves DIR/bank/bank-epoch-NNN.snap from a fresh npid-bankd on
#   ENDPOINT (its own directory DIR/eval-NNN) and runs `npid-evald --once --checkpoint
#   DIR/run/checkpoints/epoch-NNN.ckpt --against both` against it, appending the two eval
#   lines to OUT; logs in DIR/logs/{bankd,evald}-eval-NNN.log. Returns 1 with a message on
#   stderr at the first missing file or failed evaluation.
eval_kept_epochs() {
    _d=$1 _epochs=$2 _data=$3 _ep=$4 _out=$5
    _e=${EVAL_FROM:-0}
    while [ $_e -lt "$_epochs" ]; do
        _n=$(printf '%03d' $_e)
        _ck=$_d/run/checkpoints/epoch-$_n.ckpt _snap=$_d/bank/bank-epoch-$_n.snap
        if [ ! -f "$_ck" ] || [ ! -f "$_snap" ]; then
            echo "epoch $_e: $_ck or $_snap missing" >&2
            return 1
        fi
        mkdir -p "$_d/eval-$_n" "$_d/logs"
        ln -sf "$_snap" "$_d/eval-$_n/bank-epoch-$_n.snap"
        "$bin/npid-bankd" --bind "$_ep" --dir "$_d/eval-$_n" --snapshot-every 0 \
            >"$_d/logs/bankd-eval-$_n.log" 2>&1 &
        _bankd=$!
        _pids_before=$pids
        pids="$pids $_bankd"
        timeout 3600 "$bin/npid-evald" --once --checkpoint "$_ck" --data "$_data" --bank "$_ep" \
            --against both >>"$_out" 2>"$_d/logs/evald-eval-$_n.log"
        _rc=$?
        kill "$_bankd" 2>/dev/null
        wait "$_bankd" 2>/dev/null
        pids=$_pids_before
        if [ $_rc -ne 0 ]; then
            echo "npid-evald failed on epoch $_e (exit $_rc):" >&2
            tail -5 "$_d/logs/evald-eval-$_n.log" >&2
            return 1
        fi
        grep -E 'against (bank|recomputed)' "$_d/logs/evald-eval-$_n.log" | sed 's/^/  /' >&2
        _e=$((_e + 1))
    done
}
