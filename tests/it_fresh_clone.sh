#!/bin/sh
# What a fresh machine gets: the repository cloned into a temporary directory (so no
# ../shared beside it). Checks, on the committed tree:
#  - .ci/run installs exactly the packages of deps/build.txt + deps/test.txt and then runs the
#    README's test command, then `make fuzz-ci`, then the unit tests under ASan (.ci/run is
#    executed with apt-get and make replaced by recorders);
#  - README's Quick start `apt-get install` lists exactly those packages;
#  - the Dockerfile installs deps/build.txt;
#  - a test that needs ../shared skips there, naming ../shared (what tests/run allows under
#    CI=true only when ../shared is absent).
set -u
name=it_fresh_clone
root=${NPID_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
bin=${NPID_BIN:?NPID_BIN not set}
fail() { echo "$name: FAIL: $*" >&2; exit 1; }
command -v git >/dev/null || { echo "$name: git not installed (deps/test.txt)" >&2; exit 77; }
tmp=$(mktemp -d /tmp/npid-$name.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
git clone -q "$root" "$tmp/npid" 2>"$tmp/clone.log" || fail "git clone: $(tail -n 1 "$tmp/clone.log")"
clone=$tmp/npid
[ -e "$tmp/shared" ] && fail "a ../shared beside the clone"

# the package lists, one name a line, sorted
pkgs() { sed 's/#.*//' "$@" | tr -s ' \t' '\n\n' | grep . | sort -u; }
pkgs "$clone/deps/build.txt" "$clone/deps/test.txt" > "$tmp/deps"
[ -s "$tmp/deps" ] || fail "deps/build.txt and deps/test.txt list no packages"

# .ci/run with recorders for apt-get and make
mkdir -p "$tmp/fake"
for tool in apt-get make; do
    printf '#!/bin/sh\necho "$*" >> "%s/%s.calls"\n' "$tmp" "$tool" > "$tmp/fake/$tool"
    chmod +x "$tmp/fake/$tool"
done
PATH="$tmp/fake:$PATH" sh "$clone/.ci/run" >"$tmp/ci.log" 2>&1 || fail ".ci/run failed: $(tail -n 3 "$tmp/ci.log")"
grep -qx 'update' "$tmp/apt-get.calls" || fail ".ci/run does not run apt-get update"
grep '^install' "$tmp/apt-get.calls" | tr ' ' '\n' | grep -v '^-' | grep -vx install | grep . |
    sort -u > "$tmp/ci-pkgs"
if ! cmp -s "$tmp/deps" "$tmp/ci-pkgs"; then
    diff "$tmp/deps" "$tmp/ci-pkgs" >&2
    fail ".ci/run installs other packages than deps/*.txt (diff above: < deps, > .ci/run)"
fi
# the README's test command, then the fuzz step (mk/fuzz.mk), then the unit tests under ASan
calls=$(tr '\n' ' ' < "$tmp/make.calls")
[ "$calls" = "check fuzz-ci asan ONLY=check_ " ] ||
    fail ".ci/run runs 'make $calls', not 'make check', 'make fuzz-ci', 'make asan ONLY=check_'"

# README: the Quick start's install command (backslash-continued lines) and its test command
awk '/^## Quick start/ { q = 1; next } /^## / { q = 0 } q' "$clone/README.md" > "$tmp/quick"
sed -n '/apt-get install/,/[^\\]$/p' "$tmp/quick" | tr -d '\\' | tr -s ' \t' '\n\n' |
    sed '1,/^install$/d' | grep -v '^-' | grep . | sort -u > "$tmp/readme-pkgs"
if ! cmp -s "$tmp/deps" "$tmp/readme-pkgs"; then
    diff "$tmp/deps" "$tmp/readme-pkgs" >&2
    fail "README's Quick start installs other packages than deps/*.txt (diff above: < deps, > README)"
fi
grep -Eq '^ +make check( |$)' "$tmp/quick" || fail "README's Quick start has no 'make check'"

grep -q 'deps/build.txt' "$clone/Dockerfile" || fail "the Dockerfile does not install deps/build.txt"

# a test that needs ../shared, run from the clone with an empty cache: a skip naming ../shared
mkdir -p "$tmp/cache"
NPID_ROOT=$clone NPID_CACHE=$tmp/cache sh "$clone/tests/it_loader_cifar.sh" >"$tmp/cifar.out" 2>"$tmp/cifar.err"
rc=$?
[ $rc -eq 77 ] || fail "it_loader_cifar.sh in the clone: exit $rc, expected a skip (77): $(tail -n 2 "$tmp/cifar.err")"
tail -n 1 "$tmp/cifar.err" | grep -q '\.\./shared' || fail "its skip does not name ../shared: $(tail -n 1 "$tmp/cifar.err")"
echo "$name: .ci/run, README and Dockerfile agree on $(wc -l < "$tmp/deps") packages; without ../shared the data test skips naming it"
