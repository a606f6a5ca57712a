#!/bin/sh
# npid-bankd ping (the docker-compose healthcheck): against a live bankd it prints the info
# reply as one JSON line and exits 0 (also when bankd holds no bank yet: it answered);
# against a dead endpoint or a stopped (SIGSTOP) bankd it exits 1 within its --timeout;
# usage errors exit 2.
set -u
bin=${NPID_BIN:-build}
py=/usr/bin/python3
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail() { echo "it_bankd_ping: $*" >&2; [ -f "$tmp/bankd.log" ] && cat "$tmp/bankd.log" >&2; exit 1; }
ep=ipc://$tmp/bankd.sock
ping() { timeout 20 "$bin/npid-bankd" ping --bank "$ep" "$@" >"$tmp/out" 2>"$tmp/err"; }
start() {
    "$bin/npid-bankd" --bind "$ep" --snapshot-every 0 "$@" 2>>"$tmp/bankd.log" &
    pid=$!
    i=0
    until ping --timeout 0.2; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "bankd did not answer within 20 s"
        kill -0 "$pid" 2>/dev/null || fail "bankd exited at start"
    done
}
stop() { kill -9 "$pid"; wait "$pid" 2>/dev/null; pid=; }
# the JSON line: one line, parses, and has the wanted fields
check_json() {
    [ "$(wc -l <"$tmp/out")" -eq 1 ] || fail "stdout is not one line: $(cat "$tmp/out")"
    $py -c 'import json, sys
r = json.loads(open(sys.argv[1]).read())
want = eval(sys.argv[2])
for k, v in want.items():
    assert r.get(k) == v, (k, r.get(k), v, r)' "$tmp/out" "$1" || fail "unexpected reply: $(cat "$tmp/out")"
}

# live, no bank yet: an answer is an answer
start
ping --timeout 5 || fail "ping of a live bankd without a bank exited $?: $(cat "$tmp/err")"
check_json '{"v": 1, "ok": False, "err": "ENOBANK"}'
stop
# live with a bank; the endpoint from the environment
start --rows 100 --dim 4 --seed 3
NPID_BANK=$ep timeout 20 "$bin/npid-bankd" ping --timeout 5 >"$tmp/out" 2>"$tmp/err" ||
    fail "ping of a live bankd exited $?: $(cat "$tmp/err")"
check_json '{"v": 1, "ok": True, "rows": 100, "dim": 4, "step": 0, "manifest": None}'
[ ! -s "$tmp/err" ] || fail "ping wrote to stderr: $(cat "$tmp/err")"
# stopped: no answer in time -> 1, within the timeout (plus start-up slack)
kill -STOP "$pid"
t0=$(date +%s)
ping --timeout 1
rc=$?
t1=$(date +%s)
kill -CONT "$pid"
[ $rc -eq 1 ] || fail "ping of a stopped bankd exited $rc, expected 1"
[ $((t1 - t0)) -le 4 ] || fail "ping of a stopped bankd took $((t1 - t0)) s with --timeout 1"
[ ! -s "$tmp/out" ] || fail "ping printed on stdout without an answer: $(cat "$tmp/out")"
grep -q "no answer" "$tmp/err" || fail "no reason on stderr: $(cat "$tmp/err")"
# answering again after SIGCONT
ping --timeout 5 || fail "ping after SIGCONT exited $?"
stop
# dead endpoints: nothing listening on the ipc path, nor on a tcp port
ping --timeout 1
[ $? -eq 1 ] || fail "ping of a dead ipc endpoint did not exit 1"
port=$((20000 + $$ % 20000))
timeout 20 "$bin/npid-bankd" ping --bank "tcp://127.0.0.1:$port" --timeout 1 >/dev/null 2>&1
[ $? -eq 1 ] || fail "ping of a dead tcp endpoint did not exit 1"
# usage
timeout 20 "$bin/npid-bankd" ping --timeout nope >/dev/null 2>&1
[ $? -eq 2 ] || fail "a bad --timeout did not exit 2"
timeout 20 "$bin/npid-bankd" ping extra >/dev/null 2>&1
[ $? -eq 2 ] || fail "an extra argument did not exit 2"
timeout 20 "$bin/npid-bankd" ping --help | grep -q "usage: npid-bankd ping" || fail "no ping --help"
exit 0
