#!/bin/sh
# npid-evald's commands each have their own options: `npid-evald CMD --help` lists CMD's and
# not another command's, a flag of another command is refused (exit 2, one line naming the
# flag and the command, before anything starts), and a flag is still taken where it is read,
# also before the command's name. No dataset or network is needed: everything here stops at
# the command line.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
ev=$bin/npid-evald
[ -x "$ev" ] || { echo "it_evald_help: npid-evald not built" >&2; exit 77; }
tmp=$(mktemp -d /tmp/npid-it-evald-help.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "it_evald_help: FAIL: $*" >&2; exit 1; }
unset NPID_PORT_BASE NPID_LOG_LEVEL
# run STATUS ARGS...: runs npid-evald ARGS (bounded), output in $tmp/out and $tmp/err
run() {
    want=$1; shift
    timeout 20 "$ev" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; rc=$?
    [ $rc -eq "$want" ] || fail "'npid-evald $*' exit $rc, expected $want: $(head -3 "$tmp/err")"
}
# listed FLAG: the help in $tmp/out has an option line for --FLAG
listed() { grep -q -- "^  --$1[ <]" "$tmp/out"; }

# CMD OWN FOREIGN OWNER: CMD reads --OWN, not --FOREIGN, an option of OWNER
# ("" as CMD: the default command, attach)
while read -r cmd own foreign owner; do
    [ "$cmd" = - ] && cmd=""
    name=${cmd:-attach}
    [ "$name" = neighbors ] && name=neighbours # the alias answers as neighbours
    # shellcheck disable=SC2086
    run 0 $cmd --help
    grep -q "^usage: npid-evald" "$tmp/out" || fail "$name --help: no usage line"
    [ ! -s "$tmp/err" ] || fail "$name --help wrote to stderr: $(head -2 "$tmp/err")"
    listed "$own" || fail "$name --help does not list its --$own"
    ! listed "$foreign" || fail "$name --help lists $owner's --$foreign"
    # shellcheck disable=SC2086
    run 0 $cmd --"$own"=1 --help
    # shellcheck disable=SC2086
    run 2 $cmd --"$foreign" 1
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$name --$foreign: not one line: $(cat "$tmp/err")"
    grep -q -- "--$foreign is an option of [a-z, ]*$owner" "$tmp/err" ||
        fail "$name --$foreign: the message does not name the flag and $owner: $(cat "$tmp/err")"
    grep -q "not of $name" "$tmp/err" ||
        fail "$name --$foreign: the message does not name $name: $(cat "$tmp/err")"
done <<'EOF'
- every lambda linear
attach k format embed
embed format grid neighbours
neighbours grid lambda linear
neighbors top format embed
linear lambda k attach
EOF

# the default command's own flags that --once does not read are refused with --once
run 2 --once --checkpoint "$tmp/none.ckpt" --data "$tmp" --every 2
grep -q -- "--every is read when attached, not with --once" "$tmp/err" ||
    fail "--once --every: $(cat "$tmp/err")"
# a boolean of another command, negated
run 2 embed --no-once
grep -q -- "--no-once is an option of attach, not of embed" "$tmp/err" ||
    fail "embed --no-once: $(cat "$tmp/err")"
# the command after flags, one of them with a value that is another command's name
run 0 --layer embed linear --help
grep -q "^usage: npid-evald linear" "$tmp/out" ||
    fail "--layer embed linear --help: not linear's help: $(head -1 "$tmp/out")"
# a flag no command has is the parser's unknown option, as before
run 2 neighbours --no-such-flag
grep -q "unknown option '--no-such-flag'" "$tmp/err" ||
    fail "neighbours --no-such-flag: $(cat "$tmp/err")"
run 2 nosuchcommand
grep -q 'unknown command "nosuchcommand"' "$tmp/err" || fail "nosuchcommand: $(cat "$tmp/err")"
echo "it_evald_help: each command's --help lists its own options; another's refused by name" >&2
exit 0
