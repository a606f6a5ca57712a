#!/bin/sh
# Kernel dispatch: the train step of a build with the Dockerfile's flags (its ARG ARCH, a
# baseline x86-64) against a -march=native build, in the same invocation, on every model
# preset. With run-time dispatch (common/cpu.h) both run the same AVX-512/AVX2 kernels, so the
# ratio (Dockerfile build / native build) should be about 1.
# Builds both into temporary directories (a minute or two each), then runs each model
# REPEATS times per build, interleaved, keeping each build's best.
# Environment: REPEATS (3), STEPS (bench_train_step's default per model when unset).
set -u
root=${NPID_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
repeats=${REPEATS:-3}
tmp=$(mktemp -d /tmp/npid-bench-dispatch.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
arch=$(sed -n 's/^ARG ARCH=//p' "$root/Dockerfile")
[ -n "$arch" ] || { echo "bench_dispatch: no 'ARG ARCH=' line in Dockerfile" >&2; exit 1; }
for b in docker native; do
    if [ $b = docker ]; then a=$arch; else a=-march=native; fi
    echo "bench_dispatch: building with ARCH=$a" >&2
    make -C "$root" -s -j"$(nproc)" BUILD="$tmp/$b" ARCH="$a" "$tmp/$b/bench/bench_train_step" \
        >"$tmp/$b.log" 2>&1 || { echo "bench_dispatch: build with ARCH=$a failed:" >&2;
                                  tail -20 "$tmp/$b.log" >&2; exit 1; }
done
# value FILE METRIC: the best value of METRIC in bench_train_step's JSON lines in FILE
value() {
    sed -n "s/.*\"metric\": \"$2\", \"value\": \([0-9.]*\).*/\1/p" "$1" | sort -g | tail -n 1
}
rc=0
for m in resnet20 resnet18-half resnet18; do
    : >"$tmp/docker.out"; : >"$tmp/native.out"
    i=0
    while [ $i -lt "$repeats" ]; do
        for b in docker native; do
            "$tmp/$b/bench/bench_train_step" --model $m ${STEPS:+--steps "$STEPS"} --no-peer \
                >>"$tmp/$b.out" 2>"$tmp/$b.err" ||
                { echo "bench_dispatch: $b build, $m failed: $(tail -3 "$tmp/$b.err")" >&2; rc=1; }
        done
        i=$((i + 1))
    done
    case_=$(sed -n 's/.*"case": "\([^"]*\)".*/\1/p' "$tmp/native.out" | head -n 1)
    for metric in img_per_s eval_img_per_s; do
        v=$(value "$tmp/docker.out" $metric); p=$(value "$tmp/native.out" $metric)
        [ -n "$v" ] && [ -n "$p" ] || continue
        awk -v c="$case_" -v m=$metric -v v="$v" -v p="$p" -v a="$arch" 'BEGIN {
            printf "{\"bench\": \"dispatch\", \"case\": \"%s\", \"metric\": \"%s\", \"value\": %s, \"unit\": \"img/s\", \"peer\": %s, \"ratio\": %.3f, \"build\": \"ARCH=%s\", \"peer_build\": \"ARCH=-march=native\"}\n", c, m, v, p, v / p, a }'
    done
done
exit $rc
