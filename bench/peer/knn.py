#!/usr/bin/python3
"""Peer for bench_knn: weighted kNN as the reference does it (lemniscate.pytorch's kNN()):
similarities by matrix product in query batches, top-k, one-hot vote weighted by
exp(s / sigma), top-1 / top-5. Runs with PyTorch (2 threads) and with NumPy, on the data
that bench_knn wrote (raw little-endian float32 / uint32 files), and prints one JSON line
per implementation: {"impl": ..., "seconds": ..., "top1": ..., "top5": ...}.

usage: knn.py DIR NQ N D K NCLASS SIGMA [torch|numpy ...]
"""
import json
import sys
import time

import numpy as np


def load(d, nq, n, dim):
    q = np.fromfile(f"{d}/queries.f32", dtype="<f4").reshape(nq, dim)
    b = np.fromfile(f"{d}/bank.f32", dtype="<f4").reshape(n, dim)
    bl = np.fromfile(f"{d}/bank_labels.u32", dtype="<u4").astype(np.int64)
    ql = np.fromfile(f"{d}/query_labels.u32", dtype="<u4").astype(np.int64)
    return q, b, bl, ql


def run_torch(q, b, bl, ql, k, nclass, sigma, batch=1000):
    import torch
    torch.set_num_threads(2)
    q, b = torch.from_numpy(q), torch.from_numpy(b)
    bl, ql = torch.from_numpy(bl), torch.from_numpy(ql)
    bt = b.t().contiguous()
    t0 = time.perf_counter()
    c1 = c5 = 0
    one_hot = torch.zeros(batch * k, nclass)
    with torch.no_grad():
        for s in range(0, q.shape[0], batch):
            qb = q[s:s + batch]
            nb = qb.shape[0]
            dist = torch.mm(qb, bt)
            yd, yi = dist.topk(k, dim=1, largest=True, sorted=True)
            cand = bl.view(1, -1).expand(nb, -1)
            retrieval = torch.gather(cand, 1, yi)
            oh = one_hot[:nb * k].zero_()
            oh.scatter_(1, retrieval.view(-1, 1), 1)
            w = yd.div(sigma).exp_()
            probs = torch.sum(oh.view(nb, -1, nclass) * w.view(nb, -1, 1), 1)
            _, pred = probs.sort(1, True)
            correct = pred.eq(ql[s:s + nb].view(-1, 1))
            c1 += correct[:, :1].sum().item()
            c5 += correct[:, :5].sum().item()
    t = time.perf_counter() - t0
    return t, c1 / q.shape[0], c5 / q.shape[0]


def run_numpy(q, b, bl, ql, k, nclass, sigma, batch=1000):
    t0 = time.perf_counter()
    c1 = c5 = 0
    for s in range(0, q.shape[0], batch):
        qb = q[s:s + batch]
        nb = qb.shape[0]
        dist = qb @ b.T
        part = np.argpartition(-dist, k - 1, axis=1)[:, :k]
        yd = np.take_along_axis(dist, part, axis=1)
        w = np.exp(yd.astype(np.float64) / sigma)
        lab = bl[part]
        probs = np.zeros((nb, nclass))
        rows = np.repeat(np.arange(nb), k)
        np.add.at(probs, (rows, lab.ravel()), w.ravel())
        pred = np.argsort(-probs, axis=1, kind="stable")[:, :5]
        correct = pred == ql[s:s + nb, None]
        c1 += int(correct[:, 0].sum())
        c5 += int(correct.sum())
    t = time.perf_counter() - t0
    return t, c1 / q.shape[0], c5 / q.shape[0]


def main():
    if len(sys.argv) < 8:
        print(__doc__, file=sys.stderr)
        return 2
    d = sys.argv[1]
    nq, n, dim, k, nclass = (int(x) for x in sys.argv[2:7])
    sigma = float(sys.argv[7])
    impls = sys.argv[8:] or ["torch", "numpy"]
    q, b, bl, ql = load(d, nq, n, dim)
    for impl in impls:
        try:
            fn = run_torch if impl == "torch" else run_numpy
            t, top1, top5 = fn(q, b, bl, ql, k, nclass, sigma)
        except ImportError as e:
            print(f"knn.py: {impl} unavailable: {e}", file=sys.stderr)
            continue
        print(json.dumps({"impl": impl, "seconds": t, "top1": top1, "top5": top5}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
