#!/bin/sh
# The build states the architecture: each program needs at run time exactly the libraries of
# its job (programs link with --no-as-needed, so a library listed for a program is needed by
# it): bankd is messaging only; the loader decodes images but runs no BLAS; the trainer and
# evald run the network.
set -u
name=it_build_deps
bin=${NPID_BIN:?NPID_BIN not set}
command -v readelf >/dev/null || { echo "$name: readelf needed (package binutils)" >&2; exit 77; }
fail() { echo "$name: FAIL: $*" >&2; exit 1; }
# needs PROG: the sonames PROG needs, one line
needs() { readelf -d "$bin/npid-$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' '; }
# expect PROG WANTED FORBIDDEN: each WANTED soname prefix is needed, no FORBIDDEN one is
expect() {
    [ -x "$bin/npid-$1" ] || fail "npid-$1 not built"
    n=$(needs "$1")
    for w in $2; do case " $n" in *" $w"*) ;; *) fail "npid-$1 does not need $w (needs: $n)" ;; esac; done
    for f in $3; do case " $n" in *" $f"*) fail "npid-$1 needs $f (needs: $n)" ;; esac; done
    echo "$name: npid-$1: $n"
}
# MPI: the trainer only (its data-parallel ranks), and only in a build with it (make MPI=1, the
# default when libopenmpi-dev is installed, as deps/build.txt does)
mpi=""
pkg-config --exists ompi-c 2>/dev/null && mpi=libmpi
expect bankd "libzmq" "libopenblas libjpeg libpng libwebp libmsgpack libmpi"
expect loader "libzmq libjpeg libpng libwebp" "libopenblas libmsgpack libmpi"
expect trainer "libzmq libopenblas $mpi" "libmsgpack libjpeg libpng libwebp"
expect evald "libzmq libopenblas libjpeg" "libmsgpack libmpi"
