#!/bin/sh
# compose.yaml is valid (Debian's docker-compose; no engine runs here) and declares the four
# services with the scaling, healthchecks and graceful stop the README promises.
set -u
root=${NPID_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
command -v docker-compose >/dev/null || { echo "it_compose: docker-compose not installed" >&2; exit 77; }
cd "$root" || exit 1
fail() { echo "it_compose: FAIL: $*" >&2; exit 1; }
docker-compose -f compose.yaml config -q || fail "docker-compose config rejects compose.yaml"
out=$(LOADERS=4 docker-compose -f compose.yaml config) || fail "config"
for s in bankd trainer loader evald; do
    echo "$out" | grep -q "^  $s:" || fail "service $s missing"
done
echo "$out" | grep -q "replicas: 4" || fail "LOADERS=4 does not set the loader replicas"
[ "$(echo "$out" | grep -c 'healthcheck:')" -ge 2 ] || fail "healthchecks missing"
echo "$out" | grep -q "npid-bankd" && echo "$out" | grep -q "ping" || fail "bankd healthcheck should ping it"
echo "$out" | grep -q "stop_grace_period" || fail "no graceful stop period"
# a second `up` after stop continues the run: the trainer resumes when RUN_DIR holds a checkpoint
echo "$out" | grep -A1 -- "- --resume" | grep -q -- "- auto" || fail "the trainer is not given --resume auto"
grep -q "^FROM debian:12" Dockerfile || fail "the image should be Debian 12"
echo "it_compose: compose.yaml valid; 4 services, LOADERS scales the loaders, healthchecks, graceful stop, resume auto"
