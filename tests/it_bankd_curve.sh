#!/bin/sh
# CURVE between bankd and its clients, real processes on TCP loopback: bankd with
# --curve-key/--curve-allow answers a client whose key is allowed (npid-bankd ping; the
# Python client, tests/bankd_client.py, its whole check list over CURVE; the trainer is in
# tests/it_trainer_curve.sh), and none that is not: an unknown key (bankd logs the refusal
# with the key, once per key), no CURVE at all, the wrong server key. Those clients' requests
# time out with the CURVE hint. --allow-remote on a non-loopback address warns at start that
# traffic is unencrypted and unauthenticated without keys, and does not with them.
set -u
name=it_bankd_curve
. "$(dirname "$0")/lib_trainer.sh"
root=${NPID_ROOT:-.}
$py -c 'import zmq, msgpack, numpy; assert zmq.has("curve")' 2>/dev/null ||
    { echo "$name: /usr/bin/python3 lacks zmq with CURVE, msgpack or numpy" >&2; exit 77; }

for k in srv cli cli2 bad; do
    "$bin/npid-bankd" keygen --out "$tmp/$k" >/dev/null 2>>"$tmp/keygen.log" || fail "keygen $k"
done
{ echo "# bankd's clients"; cat "$tmp/cli.pub"; echo; cat "$tmp/cli2.pub"; } >"$tmp/allow"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --snapshot-every 0 \
    --curve-key "$tmp/srv.key" --curve-allow "$tmp/allow"
bankd_pid=$last_pid

# ping_as LOG ARGS...: one ping, stdout and stderr to $tmp/LOG.{out,err}
ping_as() {
    n=$1; shift
    timeout 20 "$bin/npid-bankd" ping --bank "$NPID_BANK" "$@" >"$tmp/$n.out" 2>"$tmp/$n.err"
}
good() { ping_as good --bank-server-key "$tmp/srv.pub" --curve-key "$tmp/cli.key" "$@"; }
wait_for 20 good --timeout 0.5 ||
    fail "bankd did not answer an allowed client: $(cat "$tmp/good.err")"
grep -q '"err": "ENOBANK"' "$tmp/good.out" || fail "unexpected reply: $(cat "$tmp/good.out")"
grep -qF "CURVE on: public key $(cat "$tmp/srv.pub")" "$tmp/bankd.log" ||
    fail "bankd did not log CURVE on"
grep -q "unencrypted" "$tmp/bankd.log" && fail "a loopback bind warned about clear traffic"

# the Python client, every check of it, over CURVE; the key files also from the environment
timeout 60 $py "$root/tests/bankd_client.py" "$NPID_BANK" "$tmp/srv.pub" "$tmp/cli.key" \
    2>"$tmp/py.log" || fail "the Python client over CURVE: $(tail -3 "$tmp/py.log")"
NPID_BANK_SERVER_KEY=$tmp/srv.pub NPID_CURVE_KEY=$tmp/cli.key ping_as env --timeout 5 ||
    fail "ping with the keys from the environment: $(cat "$tmp/env.err")"
grep -q '"rows": 1000' "$tmp/env.out" || fail "unexpected reply: $(cat "$tmp/env.out")"
ping_as second --bank-server-key "$tmp/srv.pub" --curve-key "$tmp/cli2.key" --timeout 5 ||
    fail "the allow-list's second key: $(cat "$tmp/second.err")"

# refused_as LOG ARGS...: a ping that gets no answer, exits 1 and names the CURVE flags
refused_as() {
    n=$1; shift
    ping_as "$n" --timeout 1 "$@"
    st=$?
    [ $st -eq 1 ] || fail "$n: ping exited $st, expected 1 (no answer): $(cat "$tmp/$n.out")"
    [ ! -s "$tmp/$n.out" ] || fail "$n: ping printed a reply: $(cat "$tmp/$n.out")"
    grep -qF "no reply (if the server uses CURVE, check --bank-server-key/--curve-key)" \
        "$tmp/$n.err" || fail "$n: no CURVE hint: $(cat "$tmp/$n.err")"
}
refused_as unknown --bank-server-key "$tmp/srv.pub" --curve-key "$tmp/bad.key"
refused_as unknown2 --bank-server-key "$tmp/srv.pub" --curve-key "$tmp/bad.key"
refused_as plain
refused_as wrongsrv --bank-server-key "$tmp/cli.pub" --curve-key "$tmp/cli.key"
bad=$(cat "$tmp/bad.pub")
wait_for 5 grep -qF "refused client key $bad" "$tmp/bankd.log" ||
    fail "bankd did not log the refused key $bad"
[ "$(grep -cF "refused client key $bad" "$tmp/bankd.log")" -eq 1 ] ||
    fail "the refused key was logged more than once"
grep -qF "refused client key $(cat "$tmp/cli.pub")" "$tmp/bankd.log" &&
    fail "bankd logged the allowed key as refused"

# Python clients that must get no reply: unknown key, no CURVE
refused=$tmp/refused.py
cat >"$refused" <<'PY'
import os, sys, msgpack, zmq
sys.path.insert(0, os.path.join(os.environ.get("NPID_ROOT", "."), "tests"))
from bankd_client import load_curve
ep = sys.argv[1]
for curve in (load_curve(sys.argv[2], sys.argv[3]), None):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if curve:
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = curve
    s.connect(ep)
    s.send(msgpack.packb({"v": 1, "op": "info", "seq": 1}))
    if s.poll(1500):
        what = "with an unknown" if curve else "without a"
        sys.exit("a reply to a client %s CURVE key: %r" % (what, msgpack.unpackb(s.recv())))
    s.close()
PY
timeout 30 $py "$refused" "$NPID_BANK" "$tmp/srv.pub" "$tmp/bad.key" ||
    fail "Python: a refused client got a reply"
good --timeout 5 || fail "the allowed client after the refusals: $(cat "$tmp/good.err")"

kill -TERM "$bankd_pid"
wait "$bankd_pid" || fail "bankd exited $? on SIGTERM"

# --allow-remote on every address: a warning without keys, none with them (and it serves)
p=$(( ${NPID_BANK##*:} + 3 ))
start_bg open "$bin/npid-bankd" --bind "tcp://0.0.0.0:$p" --allow-remote --snapshot-every 0
open_pid=$last_pid
wait_for 20 grep -q "serving on" "$tmp/open.log" || fail "bankd on 0.0.0.0 did not start"
[ "$(grep -c "unencrypted and unauthenticated" "$tmp/open.log")" -eq 1 ] ||
    fail "no single warning about clear traffic: $(cat "$tmp/open.log")"
kill -TERM "$open_pid"; wait "$open_pid"
start_bg sealed "$bin/npid-bankd" --bind "tcp://0.0.0.0:$p" --allow-remote --snapshot-every 0 \
    --curve-key "$tmp/srv.key" --curve-allow "$tmp/allow"
sealed_pid=$last_pid
wait_for 20 timeout 20 "$bin/npid-bankd" ping --bank "tcp://127.0.0.1:$p" --timeout 0.5 \
    --bank-server-key "$tmp/srv.pub" --curve-key "$tmp/cli.key" >/dev/null ||
    fail "the CURVE bankd on 0.0.0.0 did not answer"
grep -q "unencrypted" "$tmp/sealed.log" && fail "a CURVE bankd warned about clear traffic"
kill -TERM "$sealed_pid"; wait "$sealed_pid" || fail "the CURVE bankd exited $? on SIGTERM"
exit 0
