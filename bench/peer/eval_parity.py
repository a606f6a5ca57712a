#!/usr/bin/python3
"""The same checkpoint evaluated by npid and by the PyTorch peer.

  eval_parity.py --bin BUILD_DIR --data ROOT [--ckpt P] [--model resnet20] [--seed 0]

Loads one npid checkpoint (given, or an untrained one from `tools/npid-mkckpt`) into the
PyTorch network of train_step.py and compares (1) the test split's features, npid's
(`npid-evald embed --split test`) against PyTorch's (eval mode, test transform: ToTensor +
Normalize), and (2) the weighted kNN top-1 with recomputed train features (k 200, sigma 0.1),
npid's (`npid-evald --once --against recomputed`) against the peer's evaluation
(npid_peer.py: features() and knn()). Prints one JSON line; exits 1 when the features differ
beyond float32 rounding, or when the top-1 differs by more than TOL_FLIPS test images plus the
"fragile" ones: queries whose two leading classes' votes (recomputed in float64 from PyTorch's
features) lie within FRAGILE of each other, relatively. Float32 rounding decides those: in the
reference recipe's first epochs the features nearly collapse (a query's 200 nearest train
features can lie within 5e-6 in similarity), and such a query's vote turns on the last bit."""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from npid_peer import Indexed, features, knn, test_transform  # noqa: E402
from step_parity import load_ckpt, rel, workdir_and_ckpt  # noqa: E402
from train_step import Net  # noqa: E402

TOL_FEATURES = 1e-4     # ||npid - torch|| / ||torch|| over the test split's features
TOL_FLIPS = 3           # test images, besides the fragile ones
FRAGILE = 1e-4          # relative vote margin below which a query is fragile


@torch.no_grad()
def fragile_queries(q, bank, labels, nclass, k=200, sigma=0.1, batch=500):
    """How many queries' weighted-kNN votes (float64) put the two leading classes within
    FRAGILE of each other, relatively."""
    n = 0
    b = bank.double()
    for s in range(0, q.shape[0], batch):
        sim = q[s:s + batch].double() @ b.t()
        yd, yi = sim.topk(min(k, b.shape[0]), dim=1)
        votes = torch.zeros(sim.shape[0], nclass, dtype=torch.float64)
        votes.scatter_add_(1, labels[yi], (yd / sigma).exp())
        top2 = votes.topk(2, dim=1).values
        n += int(((top2[:, 0] - top2[:, 1]) <= FRAGILE * top2[:, 0]).sum())
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ckpt")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    tmp, ck = workdir_and_ckpt(a, "npid-evalpar-")
    evald = os.path.join(a.bin, "npid-evald")

    t0 = time.perf_counter()
    npy = os.path.join(tmp, "test.npy")
    subprocess.run([evald, "embed", "--checkpoint", ck, "--data", a.data, "--split", "test",
                    "--format", "npy", "--out", npy, "--log-level", "warn"], check=True)
    f_npid = np.load(npy)
    out = subprocess.run([evald, "--once", "--checkpoint", ck, "--data", a.data, "--against",
                          "recomputed", "--log-level", "warn"], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    res = [json.loads(l) for l in out.splitlines() if l.strip()]
    rec = [e for e in res if e.get("against") == "recomputed"][-1]
    npid_top1, n_query = rec["top1"] * 100, rec["n_query"]
    t1 = time.perf_counter()

    net = Net(a.model, f_npid.shape[1])
    load_ckpt(ck, net)
    train = Indexed(os.path.join(a.data, "train"), test_transform())
    test = Indexed(os.path.join(a.data, "test"), test_transform())
    q = features(net, test, 100, 2)
    rf = features(net, train, 100, 2)
    top1, _ = knn(q, torch.tensor(test.targets), rf, torch.tensor(train.targets), 200, 0.1,
                  len(train.classes))
    torch_top1 = top1 * 100
    t2 = time.perf_counter()
    fragile = fragile_queries(q, rf, torch.tensor(train.targets), len(train.classes))

    r = {"checkpoint": ck if a.ckpt else "untrained (tools/npid-mkckpt)",
         "features": rel(f_npid, q.numpy()), "npid_top1": round(npid_top1, 2),
         "peer_top1": round(torch_top1, 2), "top1_diff": round(npid_top1 - torch_top1, 2),
         "npid_s": round(t1 - t0, 1), "peer_s": round(t2 - t1, 1)}
    r["fragile"] = fragile
    flips = abs(npid_top1 - torch_top1) * n_query / 100
    r["ok"] = r["features"] <= TOL_FEATURES and flips <= TOL_FLIPS + fragile + 1e-6
    print(json.dumps(r), flush=True)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as e:
        sys.exit(f"eval_parity: {os.path.basename(e.cmd[0])} {e.cmd[1]} failed (exit "
                 f"{e.returncode}; its error is above)")
