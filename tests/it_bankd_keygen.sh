#!/bin/sh
# npid-bankd keygen and the key files (common/curve.h): PREFIX.key (mode 0600, "public" and
# "secret" lines, the public key the secret's) and PREFIX.pub (the public key, printed on
# stdout too); an existing file or a link at either name is never overwritten, and then
# nothing is written; a key pair file others may read (0644) is refused by bankd and by a
# client with a reason naming the file and its mode; malformed key files and allow-lists are
# refused at start naming file and line; flags that go together are usage errors (exit 2).
set -u
bin=${NPID_BIN:-build}
tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "it_bankd_keygen: FAIL: $*" >&2; exit 1; }
kg() { timeout 20 "$bin/npid-bankd" keygen "$@"; }
umask 022

# a pair: modes, content, stdout
kg --out "$tmp/srv" >"$tmp/out" 2>"$tmp/err" || fail "keygen exited $?: $(cat "$tmp/err")"
[ "$(stat -c %a "$tmp/srv.key")" = 600 ] || fail "srv.key has mode $(stat -c %a "$tmp/srv.key")"
[ "$(stat -c %a "$tmp/srv.pub")" = 644 ] || fail "srv.pub has mode $(stat -c %a "$tmp/srv.pub")"
pub=$(cat "$tmp/srv.pub")
[ ${#pub} -eq 40 ] && [ "$(wc -l <"$tmp/srv.pub")" -eq 1 ] ||
    fail "srv.pub is not one 40-character key: '$pub'"
[ "$(cat "$tmp/out")" = "$pub" ] || fail "stdout '$(cat "$tmp/out")' is not the public key '$pub'"
grep -qxF "public $pub" "$tmp/srv.key" || fail "srv.key has no line 'public $pub'"
[ "$(grep -c '^secret ' "$tmp/srv.key")" -eq 1 ] || fail "srv.key has no single secret line"
grep -qF "$(sed -n 's/^secret //p' "$tmp/srv.key")" "$tmp/out" "$tmp/err" "$tmp/srv.pub" &&
    fail "the secret key appears outside srv.key"
kg --out "$tmp/other" >/dev/null 2>&1 || fail "a second pair"
[ "$(cat "$tmp/other.pub")" != "$pub" ] || fail "two key pairs are the same"

# never overwritten: an existing pair, a lone .pub, a link at .key
sum=$(cat "$tmp/srv.key" "$tmp/srv.pub" | cksum)
kg --out "$tmp/srv" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] || fail "keygen over an existing pair did not exit 1"
grep -q "never overwritten" "$tmp/err" || fail "no reason for the refusal: $(cat "$tmp/err")"
[ ! -s "$tmp/out" ] || fail "a refused keygen printed a key"
[ "$(cat "$tmp/srv.key" "$tmp/srv.pub" | cksum)" = "$sum" ] || fail "the existing pair changed"
echo keep >"$tmp/lone.pub"
kg --out "$tmp/lone" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "keygen over an existing .pub did not exit 1"
[ ! -e "$tmp/lone.key" ] || fail "a refused keygen left lone.key behind"
[ "$(cat "$tmp/lone.pub")" = keep ] || fail "lone.pub was overwritten"
echo target >"$tmp/target"
ln -s "$tmp/target" "$tmp/linked.key"
kg --out "$tmp/linked" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "keygen through a link did not exit 1"
[ "$(cat "$tmp/target")" = target ] || fail "keygen wrote through a link"
[ ! -e "$tmp/linked.pub" ] || fail "a refused keygen left linked.pub behind"

# usage
kg >/dev/null 2>&1
[ $? -eq 2 ] || fail "keygen without --out did not exit 2"
kg --out "$tmp/x" extra >/dev/null 2>&1
[ $? -eq 2 ] || fail "keygen with an extra argument did not exit 2"
kg --help | grep -q "usage: npid-bankd keygen" || fail "no keygen --help"
cp "$tmp/other.pub" "$tmp/allow"
timeout 20 "$bin/npid-bankd" --bind "ipc://$tmp/b.sock" --curve-key "$tmp/srv.key" >/dev/null 2>&1
[ $? -eq 2 ] || fail "bankd --curve-key without --curve-allow did not exit 2"
timeout 20 "$bin/npid-bankd" ping --bank "ipc://$tmp/b.sock" --curve-key "$tmp/other.key" \
    >/dev/null 2>&1
[ $? -eq 2 ] || fail "ping --curve-key without --bank-server-key did not exit 2"

# bankd_fails WHAT WANT ARGS...: bankd exits 1 at start and its log holds WANT
bankd_fails() {
    what=$1 want=$2; shift 2
    timeout 20 "$bin/npid-bankd" --bind "ipc://$tmp/b.sock" --snapshot-every 0 "$@" \
        >/dev/null 2>"$tmp/bankd.log"
    st=$?
    [ $st -eq 1 ] || fail "$what: bankd exited $st, expected 1: $(cat "$tmp/bankd.log")"
    grep -qF -- "$want" "$tmp/bankd.log" || fail "$what: no '$want' in: $(cat "$tmp/bankd.log")"
    grep -qF "$(sed -n 's/^secret //p' "$tmp/srv.key")" "$tmp/bankd.log" &&
        fail "$what: bankd logged the secret key"
    return 0
}
# a secret others may read
chmod 644 "$tmp/srv.key"
bankd_fails "a 0644 key pair" "$tmp/srv.key: mode 0644 lets other users read the secret key" \
    --curve-key "$tmp/srv.key" --curve-allow "$tmp/allow"
chmod 640 "$tmp/srv.key"
bankd_fails "a 0640 key pair" "mode 0640" --curve-key "$tmp/srv.key" --curve-allow "$tmp/allow"
chmod 600 "$tmp/srv.key"
chmod 644 "$tmp/other.key"
timeout 20 "$bin/npid-bankd" ping --bank "ipc://$tmp/b.sock" --curve-key "$tmp/other.key" \
    --bank-server-key "$tmp/srv.pub" --timeout 1 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "ping with a 0644 key pair did not exit 1"
grep -qF "$tmp/other.key: mode 0644" "$tmp/err" || fail "ping's reason: $(cat "$tmp/err")"
chmod 600 "$tmp/other.key"
# malformed files, named with their line; a missing file
allow="--curve-allow $tmp/allow"
bankd_fails "a missing key pair" "$tmp/none.key" --curve-key "$tmp/none.key" $allow
bankd_fails "a 0644 .pub as key pair" "mode 0644" --curve-key "$tmp/srv.pub" $allow
chmod 600 "$tmp/srv.pub"
bankd_fails "a .pub as key pair" "$tmp/srv.pub:1:" --curve-key "$tmp/srv.pub" $allow
chmod 644 "$tmp/srv.pub"
{ grep '^public' "$tmp/other.key"; sed -n 's/^secret /secret /p' "$tmp/srv.key"; } >"$tmp/mixed.key"
chmod 600 "$tmp/mixed.key"
bankd_fails "a mismatched pair" "not the secret key's" --curve-key "$tmp/mixed.key" $allow
{ echo "# clients"; cat "$tmp/other.pub"; echo "not-a-key"; } >"$tmp/bad-allow"
bankd_fails "a bad allow-list line" "$tmp/bad-allow:3:" --curve-key "$tmp/srv.key" \
    --curve-allow "$tmp/bad-allow"
echo "# nobody" >"$tmp/empty-allow"
bankd_fails "an empty allow-list" "no key in it" --curve-key "$tmp/srv.key" \
    --curve-allow "$tmp/empty-allow"
[ -e "$tmp/b.sock" ] && fail "a bankd refused at start bound its socket"
exit 0
