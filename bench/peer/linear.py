#!/usr/bin/python3
"""Peer for bench_linear: scikit-learn's LogisticRegression (multinomial, L-BFGS) on
StandardScaler features, C = 1 / (lambda n) (the same objective as evald/linear.h), on the data
bench_linear wrote (raw little-endian float32 / uint32 files). Times the scaler and the fit,
scores the test rows, prints one JSON line: {"impl": "sklearn", "seconds": ..., "top1": ...,
"iters": ...}.

usage: linear.py DIR N NQ D NCLASS LAMBDA TOL
"""
import json
import sys
import time
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def main():
    d, n, nq, dim, nclass = sys.argv[1], *map(int, sys.argv[2:6])
    lam, tol = float(sys.argv[6]), float(sys.argv[7])
    x = np.fromfile(f"{d}/train.f32", dtype="<f4").reshape(n, dim)
    y = np.fromfile(f"{d}/train_labels.u32", dtype="<u4").astype(np.int64)
    xq = np.fromfile(f"{d}/test.f32", dtype="<f4").reshape(nq, dim)
    yq = np.fromfile(f"{d}/test_labels.u32", dtype="<u4").astype(np.int64)
    t0 = time.perf_counter()
    sc = StandardScaler().fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(C=1.0 / (lam * n), multi_class="multinomial", solver="lbfgs",
                                 max_iter=1000, tol=tol).fit(sc.transform(x), y)
    secs = time.perf_counter() - t0
    top1 = float(clf.score(sc.transform(xq), yq))
    print(json.dumps({"impl": "sklearn", "seconds": secs, "top1": top1,
                      "iters": int(np.max(clf.n_iter_))}))


if __name__ == "__main__":
    main()
