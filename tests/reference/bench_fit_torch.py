#!/usr/bin/env python3
"""PyTorch (CPU, one thread) timing of the same fit as crates/kpl-core/examples/bench_fit.rs:
retrieval, pseudo-labels, KPL's greedy OT and 2000 proxy-learning iterations on the same
synthetic n=1000, d=768, C=5 data (same xorshift64* stream, same construction).

    /work/venv-ref/bin/python tests/reference/bench_fit_torch.py [f32|f64]

Prints one JSON line per dtype: median seconds of 5 runs after a warm-up.
"""
import json
import math
import sys
import time

import torch

N, D, C, M, RUNS = 1000, 768, 5, 50, 5
MASK = (1 << 64) - 1


class Rng:
    """xorshift64*, bit-identical to the Rust example's."""

    def __init__(self, seed):
        self.s = seed

    def next_u64(self):
        s = self.s
        s ^= s >> 12
        s ^= (s << 25) & MASK
        s ^= s >> 27
        self.s = s
        return (s * 0x2545F4914F6CDD1D) & MASK

    def uniform(self):
        return (self.next_u64() >> 11) / float(1 << 53)

    def normal(self):
        return (sum(self.uniform() for _ in range(4)) - 2.0) * math.sqrt(3.0)

    def unit(self, d):
        v = [self.normal() for _ in range(d)]
        n = math.sqrt(sum(a * a for a in v))
        return [a / n for a in v]


def normalized(v):
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v]


def data():
    rng = Rng(0x9E3779B97F4A7C15)
    classes = [rng.unit(D) for _ in range(C)]
    shared = rng.unit(D)
    gap = rng.unit(D)
    text, class_of = [], []
    for c, u in enumerate(classes):
        for _ in range(M):
            rel = 0.1 + 0.9 * rng.uniform()
            noise = rng.unit(D)
            text.append(normalized([0.8 * shared[k] + rel * u[k] + 0.35 * noise[k] for k in range(D)]))
            class_of.append(c)
    images = []
    for i in range(N):
        c = (i * i + 3 * i) % 7 % C
        off = rng.unit(D)
        noise = rng.unit(D)
        images.append(normalized([1.2 * gap[k] + 0.55 * (classes[c][k] + 0.9 * off[k]) + 0.45 * noise[k] for k in range(D)]))
    return (torch.tensor(images, dtype=torch.float32), torch.tensor(text, dtype=torch.float32),
            torch.tensor(class_of))


def fit(X, T, class_of, k=8, tau_t=0.01, tau_i=0.04, alpha=0.6, iters_ot=20, iters=2000, lr=10.0):
    n = X.shape[0]
    # step 2: dataset-level retrieval
    W = []
    for c in range(C):
        Tc = T[class_of == c]
        s = (X @ Tc.T).mean(dim=0)
        idx = torch.topk(s, min(k, Tc.shape[0])).indices
        W.append(torch.nn.functional.normalize(Tc[idx].mean(dim=0), dim=0))
    W = torch.stack(W, dim=1)                                   # d x C
    # steps 3-4a: pseudo-labels, greedy OT in log space
    L = torch.log_softmax(X @ W / tau_t, dim=1)
    q = torch.full((C,), 1.0 / C, dtype=X.dtype)
    r = 1.0 / n
    for _ in range(iters_ot):
        P = L.exp()
        cv = (P.sum(0) - q).abs()
        rv = (P.sum(1) - r).abs()
        if cv.max() > rv.max():
            j = int(cv.argmax())
            L[:, j] += math.log(q[j]) - torch.logsumexp(L[:, j], dim=0)
        else:
            i = int(rv.argmax())
            L[i, :] += math.log(r) - torch.logsumexp(L[i, :], dim=0)
    P = L.exp()
    # step 5: proxy learning (InMaP's image_opt)
    val, idx = P.max(dim=1)
    mask = val > alpha
    P[mask, :] = 0
    P[mask, idx[mask]] = 1
    base = X.T @ P
    Wp = W.clone()
    pre = float("inf")
    for _ in range(iters):
        prob = torch.softmax(X @ Wp / tau_i, dim=1)
        grad = X.T @ prob - base
        g = torch.norm(grad)
        if g > pre:
            lr /= 2.0
        pre = g
        Wp -= (lr / (n * tau_i)) * grad
        Wp = torch.nn.functional.normalize(Wp, dim=0)
    return (X @ Wp).argmax(dim=1)


def main():
    torch.set_num_threads(1)
    which = sys.argv[1] if len(sys.argv) > 1 else None
    X32, T32, class_of = data()
    for name, dt in (("f32", torch.float32), ("f64", torch.float64)):
        if which and which != name:
            continue
        X, T = X32.to(dt), T32.to(dt)
        with torch.no_grad():
            fit(X, T, class_of)
            times = []
            for _ in range(RUNS):
                t = time.perf_counter()
                fit(X, T, class_of)
                times.append(time.perf_counter() - t)
        times.sort()
        print("# %s: runs %s" % (name, times), file=sys.stderr)
        print(json.dumps({"model": "kpl-fit-n%d-d%d-c%d" % (N, D, C), "engine": "torch", "dtype": name,
                          "threads": 1, "median_s": round(times[RUNS // 2], 4)}))


if __name__ == "__main__":
    main()
