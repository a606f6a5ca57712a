#!/usr/bin/env python3
"""PyTorch peer of bench_softmax: the reference code's full softmax head (LinearAverage:
logits = f @ bank.T / tau, then CrossEntropyLoss) with autograd to the features.

Usage: /usr/bin/python3 bench/peer/softmax.py [--batch 128 --n 50000 --dim 128 --tau 0.5
       --calls 30 --threads 2]
Prints one JSON object on stdout: {"ms_per_call": median over the calls after 3 warm-ups}."""
import argparse
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--tau", type=float, default=0.5)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(7)
    bank = F.normalize(torch.randn(a.n, a.dim, generator=g), dim=1)
    f0 = F.normalize(torch.randn(a.batch, a.dim, generator=g), dim=1)
    idx = torch.randint(0, a.n, (a.batch,), generator=g)
    times = []
    for r in range(a.calls + 3):
        f = f0.clone().requires_grad_(True)
        t = time.perf_counter()
        loss = F.cross_entropy(f @ bank.t() / a.tau, idx)
        loss.backward()
        _ = f.grad
        if r >= 3:
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(json.dumps({"ms_per_call": times[len(times) // 2]}))


if __name__ == "__main__":
    main()
