#!/usr/bin/python3
"""One training step of the reference recipe in npid and in PyTorch from the same state.

  step_parity.py --bin BUILD_DIR [--model resnet20] [--stem cifar] [--size 32] [--ckpt P]
                 [--batch 64] [--seed 0]

Loads one npid checkpoint (given, or an untrained one from `tools/npid-mkckpt`) into npid
(tools/npid-step) and into the PyTorch network of train_step.py (with the imagenet stem,
resnet18, resnet34 and resnet50 are torchvision.models' own, fc = Linear(C, 128), then L2
normalisation), feeds both the same
normalised pixels (real CIFAR-10 images when --data is given, else Gaussian noise, --size px
square), the same
positive rows and the same m = 4096 negatives of an n = 50,000-row bank, and runs one step:
train-mode forward, NCE loss with Z estimated on the step (tau 0.1), backward, SGD (lr 0.03,
momentum 0.9, weight decay 5e-4, fresh momentum buffer). Prints one JSON line comparing
features, loss, Z, dL/df, the parameter update and the BN running statistics; exits 1 when
any differs beyond float32 rounding (tolerances in TOL; an update beyond it is then judged
against the step in float64, UPDATE_F64)."""
import argparse
import atexit
import copy
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import STEMS, Net  # noqa: E402

# relative errors ||npid - torch|| / ||torch|| per quantity
TOL = {"features": 1e-4, "loss": 1e-4, "z": 1e-5, "dfeat": 1e-3, "update": 5e-3, "bn_stats": 1e-4}
# Deep nets at small maps and batches (resnet50 at 64 px, batch 4: 2x2 maps in the last stage)
# amplify float32 rounding in the update to a few per cent in PyTorch too; an update beyond
# TOL then passes when npid is no farther than this many times PyTorch's float32 step from
# the float64 step.
UPDATE_F64 = 2.0
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def load_ckpt(path, net):
    """npid checkpoint (docs/formats.md) -> net: parameters and BN running statistics in
    the network's block order, each tensor padded to 16 floats. Returns (params, buffers)."""
    ck = open(path, "rb").read()
    version, = struct.unpack_from("<I", ck, 8)
    n_p, n_b, _ = struct.unpack_from("<QQQ", ck, 96)
    cl, pl = struct.unpack_from("<II", ck, 120)
    off = 128 + (48 if version >= 2 else 0) + cl + pl  # version 2: the 48-byte model block
    P = np.frombuffer(ck, np.float32, n_p, off).copy()
    Bf = np.frombuffer(ck, np.float32, n_b, off + 4 * n_p).copy()
    po = bo = 0

    def take(arr, o, t):
        k = t.numel()
        t.data.copy_(torch.from_numpy(arr[o:o + k]).view_as(t))
        return o + ((k + 15) & ~15)

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            po = take(P, po, m.weight)
            if m.bias is not None:
                po = take(P, po, m.bias)
        elif isinstance(m, torch.nn.BatchNorm2d):
            po = take(P, po, m.weight)
            po = take(P, po, m.bias)
            bo = take(Bf, bo, m.running_mean)
            bo = take(Bf, bo, m.running_var)
    if po != n_p or bo != n_b:
        sys.exit(f"step_parity: layout mismatch ({po}/{n_p} params, {bo}/{n_b} buffers)")
    return P, Bf


def flat(net, kind):
    """The net's parameters or BN statistics in npid's padded block layout."""
    out = []
    for m in net.modules():
        if kind == "params" and isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            ts = [m.weight] + ([m.bias] if m.bias is not None else [])
        elif kind == "params" and isinstance(m, torch.nn.BatchNorm2d):
            ts = [m.weight, m.bias]
        elif kind == "buffers" and isinstance(m, torch.nn.BatchNorm2d):
            ts = [m.running_mean, m.running_var]
        else:
            continue
        for t in ts:
            v = t.detach().numpy().ravel()
            out += [v, np.zeros((-len(v)) % 16, np.float32)]
    return np.concatenate(out)


class Torchvision(torch.nn.Module):
    """torchvision.models.<model> with fc = Linear(C, low_dim), L2-normalised outputs."""

    def __init__(self, model, low_dim):
        super().__init__()
        import torchvision
        self.net = getattr(torchvision.models, model)(num_classes=low_dim)

    def forward(self, x):
        return F.normalize(self.net(x), dim=1)


def peer_net(model, low_dim, stem):
    """The PyTorch network of an npid preset and stem: torchvision's for the imagenet stem
    where it has one, else train_step.Net."""
    if stem == "imagenet" and model in ("resnet18", "resnet34", "resnet50"):
        return Torchvision(model, low_dim), "torchvision.models." + model
    return Net(model, low_dim, stem), "train_step.Net"


def torch_step(net, x, pos, neg, hp):
    """One step of the recipe on net in its own dtype (train-mode forward, NCE with Z from
    this batch, backward, SGD with a fresh momentum buffer). x, pos, neg: float32 arrays;
    hp: (m, n, tau, lr, momentum, wd). Returns the features (their .grad is dL/df), the loss
    and Z."""
    m, n, tau, lr, mom, wd = hp
    dt = next(net.parameters()).dtype
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    net.train()
    f = net(torch.from_numpy(x).to(dt))
    f.retain_grad()
    c = m / n
    e0 = torch.exp((f * torch.from_numpy(pos).to(dt)).sum(1, keepdim=True) / tau)
    e = torch.exp(f @ torch.from_numpy(neg).to(dt).t() / tau)
    z = (torch.cat([e0, e], 1).double().mean() * n).item()
    p0, p = e0 / z, e / z
    loss = -(torch.log(p0 / (p0 + c + 1e-7)).sum()
             + torch.log(c / (p + c + 1e-7)).sum()) / x.shape[0]
    opt.zero_grad()
    loss.backward()
    opt.step()
    return f, loss, z


def rel(a, b):
    """||a - b|| / ||b|| (2-norm over all elements)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    s = float(np.linalg.norm(b))
    d = float(np.linalg.norm(a - b))
    return d / s if s > 0 else d


def workdir_and_ckpt(a, prefix):
    """A temporary directory removed at exit, and the checkpoint to use: a.ckpt, else an
    untrained one of a.model, a.stem, a.size and a.seed written there by `tools/npid-mkckpt`
    (stem cifar and 32 px when a has no such fields)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, tmp, True)
    ck = a.ckpt
    if not ck:
        ck = os.path.join(tmp, "init.ckpt")
        subprocess.run([os.path.join(a.bin, "tools", "npid-mkckpt"), "--out", ck, "--model",
                        a.model, "--stem", getattr(a, "stem", "cifar"), "--size",
                        str(getattr(a, "size", 32)), "--seed", str(a.seed)],
                       check=True, stderr=subprocess.DEVNULL)
    return tmp, ck


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--stem", default="cifar", choices=STEMS,
                    help="the network's stem (a given --ckpt must hold this one)")
    ap.add_argument("--size", type=int, default=32, help="input height = width in pixels")
    ap.add_argument("--ckpt")
    ap.add_argument("--data", help="ImageFolder root: use its first train images")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    size, dim, m, n, tau, lr, mom, wd = a.size, 128, 4096, 50000, 0.1, 0.03, 0.9, 5e-4
    tmp, ck = workdir_and_ckpt(a, "npid-step-")
    g = np.random.default_rng(a.seed)
    if a.data:
        from torchvision import datasets, transforms
        ds = datasets.ImageFolder(os.path.join(a.data, "train"), transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]))
        pick = g.choice(len(ds), a.batch, replace=False)
        x = torch.stack([ds[int(i)][0] for i in pick]).numpy()
    else:
        x = g.standard_normal((a.batch, 3, size, size)).astype(np.float32)
    bank = g.standard_normal((a.batch + m, dim)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    pos, neg = bank[:a.batch], bank[a.batch:]
    inp, outp = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    with open(inp, "wb") as f:
        f.write(struct.pack("<IIQdddd", a.batch, m, n, tau, lr, mom, wd))
        for arr in (x, pos, neg):
            f.write(np.ascontiguousarray(arr, np.float32).tobytes())
    subprocess.run([os.path.join(a.bin, "tools", "npid-step"), ck, a.model, str(size),
                    str(dim), inp, outp], check=True, stderr=subprocess.DEVNULL)
    raw = open(outp, "rb").read()
    loss_n, z_n = struct.unpack_from("<dd", raw, 0)
    o = 16
    feat_n = np.frombuffer(raw, np.float32, a.batch * dim, o).reshape(a.batch, dim)
    o += 4 * a.batch * dim
    df_n = np.frombuffer(raw, np.float32, a.batch * dim, o).reshape(a.batch, dim)
    o += 4 * a.batch * dim

    net, peer = peer_net(a.model, dim, a.stem)
    p0, _ = load_ckpt(ck, net)
    n_p = len(p0)
    par_n = np.frombuffer(raw, np.float32, n_p, o)
    buf_n = np.frombuffer(raw, np.float32, (len(raw) - o - 4 * n_p) // 4, o + 4 * n_p)
    net64 = copy.deepcopy(net).double()
    hp = (m, n, tau, lr, mom, wd)
    f, loss, z = torch_step(net, x, pos, neg, hp)
    par_t, buf_t = flat(net, "params"), flat(net, "buffers")
    r = {"model": a.model, "stem": a.stem, "peer": peer, "size": size, "batch": a.batch, "m": m,
         "input": "cifar" if a.data else "noise",
         "features": rel(feat_n, f.detach().numpy()), "loss": rel([loss_n], [loss.item()]),
         "z": rel([z_n], [z]), "dfeat": rel(df_n, f.grad.numpy()),
         "update": rel(par_n - p0, par_t - p0), "bn_stats": rel(buf_n, buf_t),
         "loss_npid": loss_n, "loss_torch": loss.item()}
    bad = [k for k, t in TOL.items() if not r[k] <= t]
    if bad == ["update"]:
        # a second opinion: the exact step (float64 from the same state); npid passes when it
        # is within UPDATE_F64 times float32 PyTorch's distance from it
        torch_step(net64, x, pos, neg, hp)
        par64 = flat(net64, "params").astype(np.float64)
        r["update_npid_f64"] = rel(par_n - p0, par64 - p0)
        r["update_torch_f64"] = rel(par_t - p0, par64 - p0)
        if r["update_npid_f64"] <= UPDATE_F64 * r["update_torch_f64"]:
            bad = []
    r["ok"] = not bad
    print(json.dumps(r))
    if bad:
        print("step_parity: beyond tolerance: "
              + ", ".join(f"{k} {r[k]:.3g} > {TOL[k]}" for k in bad), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
