# Reaping for the integration scripts (sourced; POSIX sh; needs pgrep from procps).
# kill_tree SIG PID...: sends SIG to each PID and to all of its descendants, children first
# collected before anything is signalled, so that a wrapper (timeout, sh -c) killed first
# cannot orphan its child. A process that is already gone is skipped.
kill_tree() {
    sig=$1; shift
    all=""
    todo="$*"
    while [ -n "$todo" ]; do
        next=""
        for p in $todo; do
            all="$all $p"
            next="$next $(pgrep -P "$p" 2>/dev/null | tr '\n' ' ')"
        done
        todo=$(echo $next)
    done
    for p in $all; do kill "-$sig" "$p" 2>/dev/null; done
    return 0
}
