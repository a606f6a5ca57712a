#!/bin/sh
# Prints the directory of the extracted CIFAR-10 JPEG ImageFolder tree (ROOT with train/ and
# test/), extracting ../shared/data/cifar10-jpeg.tar.gz into ${NPID_CACHE:-$HOME/.cache/npid}
# on first use. Extraction goes to a temporary directory renamed into place, so concurrent
# callers never see a half-written tree. Exit 77 (skip) when the shared data is absent.
set -eu
root=${NPID_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tarball=${NPID_CIFAR_TAR:-$root/../shared/data/cifar10-jpeg.tar.gz}
cache=${NPID_CACHE:-${HOME:-/tmp}/.cache/npid}
dest=$cache/cifar10
if [ -d "$dest/train" ] && [ -d "$dest/test" ]; then
    echo "$dest"; exit 0
fi
if [ ! -f "$tarball" ]; then
    echo "cifar-cache: $tarball not found (no shared data on this machine)" >&2
    exit 77
fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.cifar10.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar xzf "$tarball" -C "$tmp"
# the archive holds cifar10/{train,test}/<class>/*.jpg
if [ ! -d "$dest" ]; then
    mv "$tmp/cifar10" "$dest" 2>/dev/null || true
fi
[ -d "$dest/train" ] || { echo "cifar-cache: extraction into $dest failed" >&2; exit 1; }
echo "$dest"
