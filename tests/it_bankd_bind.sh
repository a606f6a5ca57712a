#!/bin/sh
# Loopback binds without --allow-remote: tcp://localhost:PORT, tcp://[::1]:PORT and
# tcp://127.x.y.z:PORT start npid-bankd and it answers there (a strict Python client); a
# non-loopback endpoint (0.0.0.0, *, a name that does not resolve, this machine's own
# non-loopback address when it has one) is refused at start (exit 1, "refusing to bind").
# The [::1] case is skipped, with a message, when lo has no IPv6 address.
set -u
bin=${NPID_BIN:-build}
py=/usr/bin/python3
if ! $py -c 'import zmq, msgpack' 2>/dev/null; then
    echo "it_bankd_bind: /usr/bin/python3 lacks zmq or msgpack" >&2
    exit 77
fi
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
failed=""
note() { echo "it_bankd_bind: $*" >&2; }

# free_port ADDR: a TCP port nothing listens on at ADDR (the kernel's pick, released)
free_port() {
    $py -c 'import socket, sys
a = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
s.bind((a, 0)); print(s.getsockname()[1])' "$1"
}

# ask EP: sends info and waits for a strict-decodable ok reply for up to 15 s
ask() {
    timeout 30 $py - "$1" <<'PY'
import sys, time, msgpack, zmq
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.IPV6, 1)
s.connect(sys.argv[1])
deadline = time.time() + 15
while time.time() < deadline:
    s.send(msgpack.packb({"v": 1, "op": "info", "seq": 1}))
    if s.poll(500):
        rep = msgpack.unpackb(s.recv(), raw=False)
        assert rep["ok"] and rep["rows"] == 10 and rep["dim"] == 4, rep
        sys.exit(0)
sys.exit("no reply from " + sys.argv[1])
PY
}

# serves BIND CONNECT: bankd bound at BIND answers at CONNECT and stops cleanly on SIGTERM
serves() {
    "$bin/npid-bankd" --bind "$1" --snapshot-every 0 --rows 10 --dim 4 2>"$tmp/bankd.log" &
    pid=$!
    if ! ask "$2"; then
        note "FAIL: bankd bound at $1 did not answer at $2:"
        cat "$tmp/bankd.log" >&2
        failed="$failed $1"
    fi
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    st=$?
    pid=
    [ $st -eq 0 ] || { note "FAIL: bankd at $1 exited $st"; failed="$failed $1(exit)"; }
}

# refused BIND: bankd exits 1 at start with the reason
refused() {
    timeout 20 "$bin/npid-bankd" --bind "$1" --snapshot-every 0 2>"$tmp/refused.log"
    st=$?
    if [ $st -ne 1 ] || ! grep -q "refusing to bind" "$tmp/refused.log"; then
        note "FAIL: --bind $1 without --allow-remote: exit $st, expected 1 and a refusal:"
        cat "$tmp/refused.log" >&2
        failed="$failed refused:$1"
    fi
}

p=$(free_port 127.0.0.1)
serves "tcp://localhost:$p" "tcp://localhost:$p"
p=$(free_port 127.0.0.1)
serves "tcp://127.0.0.1:$p" "tcp://127.0.0.1:$p"
p=$(free_port 127.3.4.5)
serves "tcp://127.3.4.5:$p" "tcp://127.3.4.5:$p"
if ip -6 addr show lo 2>/dev/null | grep -q "inet6 ::1/"; then
    p=$(free_port ::1)
    serves "tcp://[::1]:$p" "tcp://[::1]:$p"
else
    note "skipping the tcp://[::1] case: lo has no IPv6 address (ip -6 addr show lo)"
fi

p=$(free_port 127.0.0.1)
refused "tcp://0.0.0.0:$p"
refused "tcp://*:$p"
refused "tcp://[::]:$p"
refused "tcp://no-such-host.invalid:$p"
own=$(ip -4 -o addr show scope global 2>/dev/null | awk '{sub(/\/.*/, "", $4); print $4; exit}')
[ -n "$own" ] && refused "tcp://$own:$p"

[ -z "$failed" ] || { note "failed:$failed"; exit 1; }
exit 0
