#!/usr/bin/python3
"""Write tokens against a real npid-bankd, from docs/protocol.md alone (Debian python3-zmq,
python3-msgpack, python3-numpy). Used by tests/it_bankd_token.sh.

Usage: bankd_token_client.py ENDPOINT SNAPDIR PHASE TOKEN
  create   init a bank with TOKEN; every writing op without it or with a wrong one is EPERM
           and changes nothing (rows, step, files); readers need none; with it writes work;
           leaves bank-ck.snap at step 3 and the bank at step 4
  restart  (bankd restarted from its snapshot) the same refusals and the same grants hold,
           restore needs the token, and the restored bank keeps requiring it
Exit 0 when every check passed."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bankd_client import Bank, check  # noqa: E402  (the shared client)

ROWS, DIM = 300, 8


def rows(b):
    rep = b.call("get", start=0, count=ROWS)
    check(rep["ok"], "get: %r" % rep)
    return np.frombuffer(rep["rows"], "<f4").reshape(ROWS, DIM).copy()


def feats(seed, n):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype("<f4")


IDX = np.array([0, 7, 299], "<u4")


def writes(name):
    """Every writing op, as (label, op, fields)."""
    f = feats(5, 3).tobytes()
    return [
        ("set", "set", dict(idx=IDX.tobytes(), feat=f)),
        ("update", "update", dict(idx=IDX.tobytes(), feat=f, momentum=0.5)),
        ("snapshot", "snapshot", {}),
        ("snapshot named", "snapshot", dict(name=name)),
        ("restore", "restore", dict(name="ck", step=3)),
        ("init of the same shape", "init", dict(rows=ROWS, dim=DIM, seed=1, run="tok")),
        ("init of another shape", "init", dict(rows=ROWS + 1, dim=DIM, seed=1)),
    ]


def snap_files(snapdir):
    return sorted((n, os.stat(os.path.join(snapdir, n)).st_mtime_ns)
                  for n in os.listdir(snapdir) if ".snap" in n)


def expect_refused(ep, snapdir, token, reader):
    """Writes without the token and with a wrong one: EPERM, nothing changed."""
    before, info0, files0 = rows(reader), reader.call("info"), snap_files(snapdir)
    wrong = token[:-1] + ("0" if token[-1] != "0" else "1")
    for who, tok in (("no token", None), ("a wrong token", wrong)):
        b = Bank(ep, "intruder", tok)
        for label, op, fields in writes("intruder"):
            rep = b.call(op, **fields)
            check(not rep["ok"] and rep["err"] == "EPERM",
                  "%s with %s: want EPERM, got %r" % (label, who, rep))
            check(token not in rep["msg"] and "token" in rep["msg"],
                  "%s: the EPERM message: %r" % (label, rep["msg"]))
        info = reader.call("info")
        check(info["step"] == info0["step"] and info["run"] == info0["run"],
              "refused writes with %s changed the bank: %r -> %r" % (who, info0, info))
        check(np.array_equal(rows(reader), before), "refused writes with %s changed rows" % who)
        check(snap_files(snapdir) == files0, "a refused snapshot with %s wrote a file" % who)
    # a token of the wrong length is a malformed request
    rep = Bank(ep, "short", "abc").call("set", idx=IDX.tobytes(), feat=feats(1, 3).tobytes())
    check(not rep["ok"] and rep["err"] == "EINVAL", "short token: %r" % rep)


def expect_readers(ep):
    r = Bank(ep, "reader")
    info = r.call("info")
    check(info["ok"] and info["rows"] == ROWS and info["has_token"] is True, "info: %r" % info)
    rep = r.call("sample", k=16, pos=IDX.tobytes())
    check(rep["ok"] and len(rep["neg"]) == 16 * DIM * 4, "sample: %r" % rep.get("err"))
    rep = r.call("sample", k=3, neg_idx=IDX.tobytes(), pos=b"")
    check(rep["ok"], "sample with neg_idx: %r" % rep.get("err"))
    check(r.call("stats")["ok"], "stats")
    rows(r)
    return r


def main():
    ep, snapdir, phase, token = sys.argv[1:5]
    owner = Bank(ep, "owner", token)
    if phase == "create":
        rep = owner.call("init", rows=ROWS, dim=DIM, seed=1, run="tok", manifest="m-tok")
        check(rep["ok"] and rep["created"] is True, "init with a token: %r" % rep)
        reader = expect_readers(ep)
        f = feats(2, 3)
        for i in range(3):
            rep = owner.call("update", idx=IDX.tobytes(), feat=f.tobytes(), momentum=0.5)
            check(rep["ok"] and rep["step"] == i + 1, "update with the token: %r" % rep)
        rep = owner.call("snapshot", name="ck")
        check(rep["ok"] and rep["step"] == 3, "named snapshot with the token: %r" % rep)
        at3 = rows(reader)
        expect_refused(ep, snapdir, token, reader)
        rep = owner.call("set", idx=IDX.tobytes(), feat=f.tobytes())
        check(rep["ok"] and rep["step"] == 4, "set with the token: %r" % rep)
        rep = owner.call("init", rows=ROWS, dim=DIM, seed=1, run="tok")
        check(rep["ok"] and rep["created"] is False and rep["step"] == 4, "init again: %r" % rep)
        rep = owner.call("snapshot")
        check(rep["ok"] and rep["step"] == 4, "snapshot with the token: %r" % rep)
        rep = owner.call("restore", name="ck", step=3)
        check(rep["ok"] and rep["step"] == 3, "restore with the token: %r" % rep)
        check(np.array_equal(rows(reader), at3), "restore gave back step 3")
        expect_refused(ep, snapdir, token, reader)   # the restored bank needs it too
        rep = owner.call("set", idx=IDX.tobytes(), feat=f.tobytes())
        check(rep["ok"] and rep["step"] == 4, "set after the restore: %r" % rep)
    elif phase == "restart":
        reader = expect_readers(ep)
        check(reader.call("info")["step"] == 4, "the restarted bank is at step 4")
        expect_refused(ep, snapdir, token, reader)
        rep = owner.call("restore", name="ck", step=3)
        check(rep["ok"] and rep["step"] == 3, "restore after the restart: %r" % rep)
        expect_refused(ep, snapdir, token, reader)
        rep = owner.call("update", idx=IDX.tobytes(), feat=feats(3, 3).tobytes(), momentum=0.9)
        check(rep["ok"] and rep["step"] == 4, "update after the restart: %r" % rep)
    else:
        check(False, "unknown phase %s" % phase)
    print("bankd_token_client.py %s: all checks passed" % phase, file=sys.stderr)


if __name__ == "__main__":
    main()
