#!/usr/bin/python3
"""A bankd client written from docs/protocol.md alone (Debian python3-zmq, python3-msgpack,
python3-numpy): init, info, sample, update, set, get, stats, error replies. Checks every
reply against numpy. Usage: bankd_client.py ENDPOINT [SERVER_PUB CLIENT_KEY]: with the two
key files (docs/protocol.md, "Encryption and who may connect"), over CURVE. Exit 0 when every
check passed."""
import sys
import time

import msgpack
import numpy as np
import zmq

ROWS, DIM = 1000, 16


def key_lines(path):
    """The lines of a key file that are not blank or comments ('#' first, and not a key: '#'
    is a Z85 digit)."""
    out = []
    for line in open(path):
        line = line.strip()
        if not line or (line.startswith("#") and len(line) != 40):
            continue
        out.append(line)
    return out


def load_curve(server_pub, client_key):
    """(server public, client public, client secret) Z85 keys from a .pub and a .key file."""
    srv = key_lines(server_pub)
    pair = dict(line.split(None, 1) for line in key_lines(client_key))
    assert len(srv) == 1 and set(pair) == {"public", "secret"}, (srv, sorted(pair))
    return srv[0].encode(), pair["public"].encode(), pair["secret"].encode()


class Bank:
    """One client id; with token, every request carries it (docs/protocol.md, "Write token");
    with curve (load_curve's triple), the socket is a CURVE client."""
    def __init__(self, endpoint, cid=None, token=None, curve=None):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            self.sock.curve_serverkey, self.sock.curve_publickey, self.sock.curve_secretkey = curve
        self.sock.connect(endpoint)
        self.cid = cid or "py-%d" % int(time.time() * 1e6)
        self.token = token
        self.seq = int(time.time() * 1e6)

    def call(self, op, **fields):
        self.seq += 1
        req = {"v": 1, "op": op, "cid": self.cid, "seq": self.seq}
        if self.token is not None:
            req["token"] = self.token
        req.update(fields)
        self.sock.send(msgpack.packb(req, use_bin_type=True))
        if not self.sock.poll(5000):
            raise RuntimeError("no reply to %s" % op)
        rep = msgpack.unpackb(self.sock.recv(), raw=False)
        assert rep["v"] == 1, rep
        assert rep["seq"] == self.seq, (rep, self.seq)
        return rep


def check(cond, what):
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
        sys.exit(1)


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main():
    curve = load_curve(sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else None
    b = Bank(sys.argv[1], curve=curve)
    rep = b.call("init", rows=ROWS, dim=DIM, seed=7, run="py", manifest="m-py")
    check(rep["ok"] and rep["rows"] == ROWS and rep["dim"] == DIM, "init: %r" % rep)
    rep = b.call("init", rows=ROWS, dim=DIM, seed=7, run="py", manifest="m-py")
    check(rep["ok"] and rep["created"] is False, "init again accepted: %r" % rep)
    rep = b.call("init", rows=ROWS + 1, dim=DIM, seed=7, run="py", manifest="m-py")
    check(not rep["ok"] and rep["err"] == "EMISMATCH", "init other shape refused: %r" % rep)

    info = b.call("info")
    check(info["ok"] and info["rows"] == ROWS and info["dim"] == DIM and info["manifest"] == "m-py"
          and info["run"] == "py", "info: %r" % info)
    step0 = info["step"]

    # the whole bank through get, in two chunks
    bank = np.concatenate([
        np.frombuffer(b.call("get", start=s, count=c)["rows"], "<f4").reshape(c, DIM)
        for s, c in ((0, 600), (600, 400))])
    s = 1 / np.sqrt(DIM / 3)
    if step0 == 0:
        check(np.all(np.abs(bank) <= s + 1e-6), "uniform init within [-s, s]")

    pos = np.array([1, 5, 999], "<u4")
    rep = b.call("sample", k=64, pos=pos.tobytes())
    check(rep["ok"], "sample: %r" % rep)
    neg_idx = np.frombuffer(rep["neg_idx"], "<u4")
    neg = np.frombuffer(rep["neg"], "<f4").reshape(64, DIM)
    prow = np.frombuffer(rep["pos"], "<f4").reshape(3, DIM)
    check(neg_idx.shape == (64,) and np.all(neg_idx < ROWS), "neg_idx in range")
    check(np.array_equal(neg, bank[neg_idx]), "neg rows equal the bank rows")
    check(np.array_equal(prow, bank[pos]), "pos rows equal the bank rows")
    rep = b.call("sample", k=500, pos=np.arange(990, dtype="<u4").tobytes(), exclude_pos=True)
    check(rep["ok"] and np.all(np.frombuffer(rep["neg_idx"], "<u4") >= 990), "exclude_pos")

    rng = np.random.default_rng(1)
    idx = np.array([3, 9, 3], "<u4")
    feat = rng.standard_normal((3, DIM)).astype("<f4")
    rep = b.call("update", idx=idx.tobytes(), feat=feat.tobytes(), momentum=0.5)
    check(rep["ok"] and rep["step"] == step0 + 1, "update: %r" % rep)
    want = bank.copy()
    for i, r in enumerate(idx):
        want[r] = normalize(0.5 * want[r] + 0.5 * feat[i])
    got = np.frombuffer(b.call("get", start=0, count=ROWS)["rows"], "<f4").reshape(ROWS, DIM)
    check(np.allclose(got, want, atol=1e-6), "update matches numpy")

    bad = feat.copy()
    bad[1, 2] = np.nan
    rep = b.call("update", idx=idx.tobytes(), feat=bad.tobytes(), momentum=0.5)
    check(not rep["ok"] and rep["err"] == "EINVAL", "NaN rejected: %r" % rep)
    rep = b.call("update", idx=np.array([3, ROWS], "<u4").tobytes(), feat=feat[:2].tobytes(),
                 momentum=0.5)
    check(not rep["ok"] and rep["err"] == "ERANGE", "index out of range rejected: %r" % rep)
    got2 = np.frombuffer(b.call("get", start=0, count=ROWS)["rows"], "<f4").reshape(ROWS, DIM)
    check(np.array_equal(got, got2), "rejected updates changed nothing")

    rep = b.call("set", idx=np.array([7], "<u4").tobytes(), feat=feat[:1].tobytes())
    check(rep["ok"] and rep["step"] == step0 + 2, "set: %r" % rep)
    row7 = np.frombuffer(b.call("get", start=7, count=1)["rows"], "<f4")
    check(np.allclose(row7, normalize(feat[0]), atol=1e-6), "set stores normalize(f)")

    st = b.call("stats")
    check(st["ok"] and st["step"] == step0 + 2 and len(st["stale_hist"]) == st["stale_buckets"]
          and sum(st["stale_hist"]) == ROWS, "stats: %r" % st)

    rep = b.call("frobnicate")
    check(not rep["ok"] and rep["err"] == "EINVAL", "unknown op: %r" % rep)
    b.seq += 1
    b.sock.send(msgpack.packb({"v": 2, "op": "info", "seq": b.seq}))
    rep = msgpack.unpackb(b.sock.recv(), raw=False)
    check(not rep["ok"] and rep["err"] == "EVERSION" and rep["seq"] == b.seq, "v=2: %r" % rep)
    print("bankd_client.py: all checks passed", file=sys.stderr)


if __name__ == "__main__":
    main()
