#!/usr/bin/python3
"""PyTorch peer of npid's end-to-end training: the reference NPID recipe (lemniscate.pytorch,
cifar.py) re-implemented with the NCE head npid uses (one shared draw of m negatives per step).

  npid_peer.py bench  --data ROOT --model M --max-steps S [--window W]
      End-to-end training loop for S steps; prints one JSON object on stdout:
      {"model", "steps", "img_s", "ms_data", "ms_bank", "ms_fwd", "ms_loss", "ms_bwd",
       "ms_sgd", "data_share", "bank_share"}  (per-step means after the first W steps).
  npid_peer.py train  --data ROOT --model M --epochs E
      Trains E epochs; after each epoch evaluates weighted kNN (k 200, sigma 0.1) on the test
      split against the memory bank as it stands and against train features recomputed with
      the test transform (the reference's recompute_memory, into a separate buffer). Prints
      one JSON line per epoch on stdout: {"epoch", "loss", "bank_top1", "bank_top5",
      "recomputed_top1", "recomputed_top5", "train_seconds", "eval_seconds", "img_s", "z"}.

Recipe (../shared/spec/algorithm.md, reference defaults): train transform
RandomResizedCrop(32, scale 0.2-1), ColorJitter(0.4 x4), RandomGrayscale(0.2), ToTensor,
Normalize(CIFAR mean/std), no flip; test transform ToTensor + Normalize. DataLoader with 2
workers, batch 128, shuffled, last partial batch kept. Network from train_step.py (-> Linear
128 -> L2 norm). Bank n x 128 uniform in +-1/sqrt(d/3). NCE m = 4096, tau 0.1: positives are
the bank rows read before the step's update, m negatives drawn uniformly once per step
(positive not excluded), Z = n * mean exp(s/tau) over the first step's B x (m+1) scores, then
frozen. SGD lr 0.03 (constant: the first step of the schedule is at epoch 120), momentum 0.9,
weight decay 5e-4. Bank update after the SGD step: v_i <- normalize(0.5 v_i + 0.5 f_i).
torch.set_num_threads(2). Progress goes to stderr."""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import PRESETS, Net  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def log(msg):
    print("npid_peer: " + msg, file=sys.stderr, flush=True)


class Indexed(datasets.ImageFolder):
    """ImageFolder that also returns the sample's index (the reference's CIFAR10Instance)."""

    def __getitem__(self, i):
        img, target = super().__getitem__(i)
        return img, target, i


def train_transform():
    return transforms.Compose([
        transforms.RandomResizedCrop(size=32, scale=(0.2, 1.0)),
        transforms.ColorJitter(0.4, 0.4, 0.4, 0.4),
        transforms.RandomGrayscale(p=0.2),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def test_transform():
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


class NCE:
    """Memory bank + NCE objective with one shared draw of m negatives per step."""

    def __init__(self, n, dim, m, tau, momentum, gen):
        stdv = 1.0 / math.sqrt(dim / 3)
        self.bank = torch.rand(n, dim, generator=gen).mul_(2 * stdv).add_(-stdv)
        self.n, self.m, self.tau, self.momentum, self.gen = n, m, tau, momentum, gen
        self.z = None

    def sample(self, idx):
        """Positives (rows before this step's update) and the step's negatives."""
        neg_idx = torch.randint(0, self.n, (self.m,), generator=self.gen)
        return self.bank[idx], self.bank[neg_idx]

    def loss(self, f, pos, neg):
        b = f.shape[0]
        c = self.m / self.n
        e0 = torch.exp((f * pos).sum(1, keepdim=True) / self.tau)   # B x 1
        e = torch.exp(f @ neg.t() / self.tau)                        # B x m
        if self.z is None:
            self.z = (torch.cat([e0, e], 1).mean().double() * self.n).item()
            log(f"normalisation constant Z = {self.z:.6g}")
        p0, p = e0 / self.z, e / self.z
        return -(torch.log(p0 / (p0 + c + 1e-7)).sum()
                 + torch.log(c / (p + c + 1e-7)).sum()) / b

    def update(self, idx, f):
        with torch.no_grad():
            v = self.bank[idx].mul_(self.momentum).add_(f.detach(), alpha=1 - self.momentum)
            self.bank[idx] = F.normalize(v, dim=1)


def setup(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    train = Indexed(os.path.join(a.data, "train"), train_transform())
    loader = DataLoader(train, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                        drop_last=False, persistent_workers=a.workers > 0,
                        generator=torch.Generator().manual_seed(a.seed))
    net = Net(a.model, a.low_dim)
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, weight_decay=a.wd)
    nce = NCE(len(train), a.low_dim, a.nce_k, a.nce_t, a.nce_m, gen)
    return train, loader, net, opt, nce


def step_timed(net, opt, nce, x, idx, t):
    """One training step; adds ms per stage into dict t."""
    c0 = time.perf_counter()
    pos, neg = nce.sample(idx)
    c1 = time.perf_counter()
    f = net(x)
    c2 = time.perf_counter()
    loss = nce.loss(f, pos, neg)
    c3 = time.perf_counter()
    opt.zero_grad()
    loss.backward()
    c4 = time.perf_counter()
    opt.step()
    c5 = time.perf_counter()
    nce.update(idx, f)
    c6 = time.perf_counter()
    for k, v in (("bank", (c1 - c0) + (c6 - c5)), ("fwd", c2 - c1), ("loss", c3 - c2),
                 ("bwd", c4 - c3), ("sgd", c5 - c4)):
        t[k] += v * 1e3
    return loss.item()


def cmd_bench(a):
    _, loader, net, opt, nce = setup(a)
    net.train()
    stages = ("data", "bank", "fwd", "loss", "bwd", "sgd")
    t = dict.fromkeys(stages, 0.0)
    steps = counted = 0
    t_start = None
    while steps < a.max_steps:
        it = iter(loader)
        while steps < a.max_steps:
            if steps == a.window:           # the first window (start-up, warm-up) is not counted
                t = dict.fromkeys(stages, 0.0)
                t_start, counted = time.perf_counter(), 0
            c0 = time.perf_counter()
            try:
                x, _, idx = next(it)
            except StopIteration:
                break
            t["data"] += (time.perf_counter() - c0) * 1e3
            step_timed(net, opt, nce, x, idx, t)
            steps += 1
            counted += x.shape[0]
    if t_start is None or counted == 0:
        log("--max-steps must exceed --window")
        return 2
    elapsed = time.perf_counter() - t_start
    nsteps = steps - a.window
    out = {"model": a.model, "steps": nsteps, "img_s": counted / elapsed}
    for k in stages:
        out["ms_" + k] = t[k] / nsteps
    total = sum(t.values())
    out["data_share"] = t["data"] / total
    out["bank_share"] = t["bank"] / total
    print(json.dumps(out), flush=True)
    return 0


@torch.no_grad()
def features(net, ds, batch, workers):
    net.eval()
    dl = DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers)
    out = [net(x) for x, _, _ in dl]
    return torch.cat(out)


@torch.no_grad()
def knn(q, ql, bank, bl, k, sigma, nclass, batch=100):
    """Weighted kNN as the reference's kNN(): top-k by dot product, votes exp(s / sigma)."""
    c1 = c5 = 0
    bt = bank.t().contiguous()
    k = min(k, bank.shape[0])
    for s in range(0, q.shape[0], batch):
        qb = q[s:s + batch]
        nb = qb.shape[0]
        yd, yi = torch.mm(qb, bt).topk(k, dim=1, largest=True, sorted=True)
        retrieval = bl[yi]                                            # nb x k
        oh = torch.zeros(nb * k, nclass).scatter_(1, retrieval.view(-1, 1), 1)
        w = yd.div(sigma).exp_()
        probs = (oh.view(nb, k, nclass) * w.view(nb, k, 1)).sum(1)
        pred = probs.topk(min(5, nclass), dim=1).indices
        correct = pred.eq(ql[s:s + nb].view(-1, 1))
        c1 += correct[:, :1].sum().item()
        c5 += correct.sum().item()
    return c1 / q.shape[0], c5 / q.shape[0]


def cmd_train(a):
    train, loader, net, opt, nce = setup(a)
    train_eval = Indexed(os.path.join(a.data, "train"), test_transform())
    test = Indexed(os.path.join(a.data, "test"), test_transform())
    bl = torch.tensor(train.targets)
    ql = torch.tensor(test.targets)
    nclass = len(train.classes)
    log(f"{len(train)} train / {len(test)} test images, {nclass} classes, model {a.model}")
    train_total = 0.0
    for epoch in range(1, a.epochs + 1):
        net.train()
        t0 = time.perf_counter()
        t = dict.fromkeys(("bank", "fwd", "loss", "bwd", "sgd"), 0.0)
        loss_sum, nb, images = 0.0, 0, 0
        for i, (x, _, idx) in enumerate(loader):
            loss_sum += step_timed(net, opt, nce, x, idx, t)
            nb += 1
            images += x.shape[0]
            if i % 50 == 0:
                log(f"epoch {epoch} step {i}/{len(loader)} loss {loss_sum / nb:.3f} "
                    f"{images / (time.perf_counter() - t0):.0f} img/s")
        train_s = time.perf_counter() - t0
        train_total += train_s
        t1 = time.perf_counter()
        q = features(net, test, 100, a.workers)
        b1, b5 = knn(q, ql, nce.bank, bl, a.k, a.sigma, nclass)
        rf = features(net, train_eval, 100, a.workers)
        r1, r5 = knn(q, ql, rf, bl, a.k, a.sigma, nclass)
        if a.dump:
            os.makedirs(a.dump, exist_ok=True)
            for nm, arr in (("bank", nce.bank), ("train", rf), ("test", q)):
                torch.save(arr, os.path.join(a.dump, f"{nm}-{epoch:03d}.pt"))
        eval_s = time.perf_counter() - t1
        rec = {"epoch": epoch, "loss": loss_sum / max(nb, 1), "bank_top1": b1, "bank_top5": b5,
               "recomputed_top1": r1, "recomputed_top5": r5, "train_seconds": train_s,
               "train_seconds_total": train_total, "eval_seconds": eval_s,
               "img_s": images / train_s, "z": nce.z}
        log(f"epoch {epoch}: loss {rec['loss']:.3f}, kNN bank {100 * b1:.2f}% recomputed "
            f"{100 * r1:.2f}%, train {train_s:.0f} s, eval {eval_s:.0f} s")
        print(json.dumps(rec), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["bench", "train"])
    ap.add_argument("--data", required=True, help="ImageFolder root with train/ (and test/)")
    ap.add_argument("--model", default="resnet20", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--low-dim", type=int, default=128)
    ap.add_argument("--nce-k", type=int, default=4096)
    ap.add_argument("--nce-t", type=float, default=0.1)
    ap.add_argument("--nce-m", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--max-steps", type=int, default=30, help="bench: steps to run")
    ap.add_argument("--window", type=int, default=5, help="bench: first steps not counted")
    ap.add_argument("--epochs", type=int, default=3, help="train: epochs")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--dump", default="", help="train: save bank, recomputed train and test "
                    "features after each epoch into this directory (bank-NNN.pt ...)")
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.data, "train")):
        log(f"{a.data}/train: no such directory")
        return 1
    return cmd_bench(a) if a.mode == "bench" else cmd_train(a)


if __name__ == "__main__":
    sys.exit(main())
