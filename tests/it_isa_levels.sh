#!/bin/sh
# Kernel dispatch (common/cpu.h): NPID_ISA caps the level the hand-written kernels run at and
# the choice is logged; an unknown NPID_ISA stops a program with exit 1 and a one-line reason;
# and every Check suite passes at every level below the CPU's best, as it would on a CPU
# without AVX-512 (or without AVX2).
set -u
bin=${NPID_BIN:?NPID_BIN not set}
tmp=$(mktemp -d /tmp/npid-it-isa.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "it_isa_levels: FAIL: $*" >&2; exit 1; }

# the level in force is logged, capped by NPID_ISA (tools/npid-step with no operands logs it,
# then prints its usage and exits 2)
timeout 20 "$bin/tools/npid-step" >/dev/null 2>"$tmp/err"
best=$(sed -n 's/.*kernels: \([a-z0-9]*\) (the CPU.s best).*/\1/p' "$tmp/err")
[ -n "$best" ] || fail "no 'kernels: LEVEL (the CPU's best)' line: $(cat "$tmp/err")"
case $best in
    avx512) levels="avx2 base" ;;
    avx2) levels="base" ;;
    base) levels="" ;;
    *) fail "unknown level '$best' logged" ;;
esac
for l in $levels; do
    NPID_ISA=$l timeout 20 "$bin/tools/npid-step" >/dev/null 2>"$tmp/err"
    grep -q "kernels: $l (NPID_ISA=$l; the CPU has $best)" "$tmp/err" ||
        fail "NPID_ISA=$l not in force: $(grep kernels "$tmp/err")"
done
# a level above the CPU's is capped to the CPU's
NPID_ISA=avx512 timeout 20 "$bin/tools/npid-step" >/dev/null 2>"$tmp/err"
grep -q "kernels: $best " "$tmp/err" || fail "NPID_ISA=avx512 not capped to $best: $(grep kernels "$tmp/err")"

# an unknown level is refused before anything runs
for p in trainer evald; do
    NPID_ISA=sse9 timeout 20 "$bin/npid-$p" --data /nonexistent >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] || fail "npid-$p with NPID_ISA=sse9 exit $rc, expected 1: $(head -3 "$tmp/err")"
    grep -q "NPID_ISA=sse9 is not a kernel level (base, avx2 or avx512)" "$tmp/err" ||
        fail "npid-$p with NPID_ISA=sse9: unclear error: $(head -3 "$tmp/err")"
done

# every Check suite at every lower level (tests/run runs them at the best one)
n=0
for l in $levels; do
    for t in "$bin"/tests/check_*; do
        [ -x "$t" ] || continue
        NPID_ISA=$l timeout 300 "$t" >"$tmp/out" 2>&1; rc=$?
        if [ $rc -eq 77 ] && grep -q "\.\./shared" "$tmp/out"; then continue; fi
        [ $rc -eq 0 ] || fail "$(basename "$t") at NPID_ISA=$l exit $rc: $(grep -v '^Running\|^[0-9]*%' "$tmp/out" | tail -5)"
        n=$((n + 1))
    done
done
echo "it_isa_levels: best level $best; $n Check suites passed at lower levels ($levels)" >&2
