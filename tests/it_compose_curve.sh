#!/bin/sh
# compose.yaml's services over CURVE, run as real processes on loopback: the commands come from
# `docker-compose config` (no engine runs here), with the container paths, host names and
# ports mapped onto this machine. The keys service makes the key pairs once (a second run keeps
# them); bankd's healthcheck answers over CURVE and a plaintext ping is refused; the trainer
# trains an epoch fed by two loaders; the attached evald evaluates its final checkpoint against
# the bank (and stays attached, as in compose, until SIGTERM).
set -u
name=it_compose_curve
. "$(dirname "$0")/lib_trainer.sh"
root=$(cd "$(dirname "$0")/.." && pwd)
command -v docker-compose >/dev/null || { echo "$name: docker-compose not installed" >&2; exit 77; }
$py -c 'import yaml' 2>/dev/null || { echo "$name: python3-yaml needed" >&2; exit 77; }
"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 4 >/dev/null 2>&1 ||
    fail "synth"
(cd "$root" && EPOCHS=1 docker-compose -f compose.yaml config) >"$tmp/compose.yml" ||
    fail "docker-compose config"
# one shell-quoted command line per service (and bankd's healthcheck), mapped onto $tmp
$py - "$tmp" "$bin" "$root" "$base" >"$tmp/cmds.sh" <<'PY' || fail "mapping"
import shlex, sys, yaml
tmp, bin_, root, base = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
doc = yaml.safe_load(open(tmp + "/compose.yml"))
ports = {"5557": base, "5558": base + 1, "5559": base + 2, "5560": base + 3}
def mapped(arg):
    arg = str(arg).replace("/run/npid", tmp + "/run")
    if arg == "/data":
        return tmp + "/data"
    for host in ("0.0.0.0", "bankd", "trainer", "127.0.0.1"):
        for p, q in ports.items():
            arg = arg.replace("tcp://%s:%s" % (host, p), "tcp://127.0.0.1:%d" % q)
    if arg == "npid-keys":
        return root + "/scripts/npid-keys"
    if arg.startswith("npid-"):
        return bin_ + "/" + arg
    return arg
def line(var, cmd):
    print("%s=%s" % (var, shlex.quote(" ".join(shlex.quote(mapped(a)) for a in cmd))))
svc = doc["services"]
for s in ("keys", "bankd", "trainer", "loader", "evald"):
    line("cmd_" + s, svc[s]["command"])
    for k, v in svc[s].get("environment", {}).items():
        if k.startswith("NPID_"):
            print("export %s=%s" % (k, shlex.quote(mapped(v))))
line("cmd_health", svc["bankd"]["healthcheck"]["test"][1:])
PY
. "$tmp/cmds.sh"
export NPID_BIN="$bin"
mkdir -p "$tmp/run"
eval "$cmd_keys" >"$tmp/keys.log" 2>&1 || fail "the keys service: exit $?"
sum=$(cat "$tmp/run/keys/bankd.key" | cksum)
eval "$cmd_keys" >>"$tmp/keys.log" 2>&1 || fail "the keys service, second run: exit $?"
[ "$(cat "$tmp/run/keys/bankd.key" | cksum)" = "$sum" ] || fail "a second up replaced bankd's key"
[ "$(stat -c %a "$tmp/run/keys/trainer.key")" = 600 ] || fail "trainer.key is not mode 0600"
eval "start_bg bankd $cmd_bankd"
wait_for 20 sh -c "$cmd_health >/dev/null 2>&1" || fail "bankd's healthcheck never answered"
timeout 5 "$bin/npid-bankd" ping --bank "$NPID_BANK" --timeout 2 >"$tmp/plain.log" 2>&1 &&
    fail "a plaintext ping was answered by the CURVE bankd"
eval "start_bg evald $cmd_evald"
evald_pid=$last_pid
eval "start_bg trainer $cmd_trainer"
trainer_pid=$last_pid
eval "start_bg loader1 $cmd_loader"
eval "start_bg loader2 $cmd_loader"
wait_for 180 sh -c "! kill -0 $trainer_pid 2>/dev/null" || fail "the trainer did not finish"
wait "$trainer_pid"
rc=$?
[ $rc -eq 0 ] || fail "trainer exit $rc"
grep -q '"images":200,"expected":200' "$tmp/run/metrics.jsonl" ||
    fail "the epoch did not train 200 images"
grep -q "CURVE" "$tmp/trainer.log" || fail "the trainer log does not say it uses CURVE"
wait_for 120 grep -q 'step 2 against bank' "$tmp/evald.log" ||
    fail "evald did not evaluate the final checkpoint"
kill -TERM "$evald_pid"
wait "$evald_pid"
rc=$?
[ $rc -eq 0 ] || fail "evald exit $rc after SIGTERM"
echo "$name: the compose services trained and evaluated over CURVE; plaintext was refused"
