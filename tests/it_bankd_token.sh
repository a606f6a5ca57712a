#!/bin/sh
# Write tokens with a real npid-bankd and a Python client (tests/bankd_token_client.py,
# Debian python3-zmq, -msgpack, -numpy): after an init with a token, set, update, snapshot,
# restore and init without it or with a wrong one get EPERM and change nothing (rows, step,
# files); readers need none (`npid-bankd ping` too); with it every write works, also after
# a restore. bankd is then SIGTERMed and restarted from its snapshot: the requirement holds
# (refusals, restore, the restored bank). The token never appears in bankd's log (debug
# level) and each refused client is logged once.
set -u
bin=${NPID_BIN:-build}
root=${NPID_ROOT:-.}
py=/usr/bin/python3
name=it_bankd_token
if ! $py -c 'import zmq, msgpack, numpy' 2>/dev/null; then
    echo "$name: /usr/bin/python3 lacks zmq, msgpack or numpy" >&2
    exit 77
fi
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "$name: FAIL: $*" >&2
    [ -f "$tmp/bankd.log" ] && tail -20 "$tmp/bankd.log" >&2
    exit 1
}
port=$((20000 + ($$ + 7) % 20000))
ep=tcp://127.0.0.1:$port
token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
[ ${#token} -eq 64 ] || fail "no token from /dev/urandom"

start_bankd() {
    "$bin/npid-bankd" --bind "$ep" --dir "$tmp/snap" --snapshot-every 0 --log-level debug \
        2>>"$tmp/bankd.log" &
    pid=$!
    i=0
    until "$bin/npid-bankd" ping --bank "$ep" --timeout 1 >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 50 ] || fail "bankd did not answer"
        kill -0 "$pid" 2>/dev/null || fail "bankd exited at start"
    done
}
stop_bankd() {
    kill -TERM "$pid"
    wait "$pid"
    st=$?
    pid=
    [ $st -eq 0 ] || fail "bankd exited $st after SIGTERM"
}

start_bankd
timeout 60 $py "$root/tests/bankd_token_client.py" "$ep" "$tmp/snap" create "$token" ||
    fail "phase create"
# the health check is a reader: it needs no token and shows the bank wants one
"$bin/npid-bankd" ping --bank "$ep" >"$tmp/ping.json" || fail "ping"
grep -q '"has_token": true' "$tmp/ping.json" || fail "ping: $(cat "$tmp/ping.json")"
stop_bankd
[ -s "$tmp/snap/bank.snap" ] || fail "no snapshot written on SIGTERM"
# snapshots hold a hash of the token, never the token
! grep -qF "$token" "$tmp/snap"/bank*.snap* || fail "a snapshot holds the token"

start_bankd
grep -q "loaded snapshot .*writes need its token" "$tmp/bankd.log" ||
    fail "the restarted bankd does not say its bank needs a token"
timeout 60 $py "$root/tests/bankd_token_client.py" "$ep" "$tmp/snap" restart "$token" ||
    fail "phase restart"
stop_bankd

! grep -qF "$token" "$tmp/bankd.log" || fail "the token appears in bankd's log"
half=$(echo "$token" | cut -c1-32)
! grep -qF "$half" "$tmp/bankd.log" || fail "half of the token appears in bankd's log"
n=$(grep -c "warn: refused .* from client 'intruder'" "$tmp/bankd.log")
# the intruder was refused 14 times per bankd life in 2 (create) and 3 (restart) rounds:
# one line per bankd process
[ "$n" -ge 1 ] && [ "$n" -le 2 ] || fail "'intruder' refusals logged $n times, want once per bankd"
grep -q "warn: refused .*not logged" "$tmp/bankd.log" || fail "no refusal count in the log"
echo "$name: EPERM without the token, grants with it, across a restart and restores; token not logged" >&2
exit 0
