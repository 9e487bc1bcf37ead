#!/usr/bin/env python3
"""Independent float64 numpy reference of the KPL method, and the parity-case generator.

Written from /work/shared/docs/kpl-method.md (the spec), not from the Rust engine, so
that the Rust parity tests compare two independent readings of the same text.

    /work/venv-np/bin/python tests/reference/kpl_reference.py            # regenerate cases
    /work/venv-np/bin/python tests/reference/kpl_reference.py --check    # recompute, compare

Every case is a JSON file in tests/reference/cases/. Inputs are written as decimal
numbers with 7 significant digits; both this script and the Rust tests read them as
float64 and round to float32, so both sides start from bit-identical float32 inputs.
The reference itself then computes in float64.
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CASES_DIR = os.path.join(HERE, "cases")

DEFAULTS = dict(k=8, tau_t=0.01, tau_i=0.04, alpha=0.6, gamma=0.0,
                iters_ot=20, iters_proxy=2000, lr=10.0)


# ----------------------------------------------------------------------------- the method

def normalize(a, axis=-1):
    return a / np.linalg.norm(a, axis=axis, keepdims=True)


def logsumexp(v, axis=None):
    m = np.max(v, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(v - m), axis=axis, keepdims=True))
    return np.squeeze(out, axis=axis) if axis is not None else out.item()


def log_softmax_rows(z):
    return z - logsumexp(z, axis=1)[:, None]


def text_proxy(X, T, desc_class, C, k):
    """Step 2: dataset-level retrieval. Returns W_t (C x d) and, per class, the selected
    rows of T (global row indices), best first; ties go to the lower index."""
    W = np.zeros((C, X.shape[1]))
    selected = []
    for c in range(C):
        rows = np.flatnonzero(desc_class == c)          # ascending global indices
        s = (X @ T[rows].T).mean(axis=0)                 # mean cosine over all images
        kc = min(k, len(rows))
        order = np.argsort(-s, kind="stable")[:kc]       # stable => lower index wins ties
        sel = rows[order]
        selected.append([int(i) for i in sel])
        W[c] = normalize(T[sel].mean(axis=0))
    return W, selected


def class_marginal(P0, gamma):
    C = P0.shape[1]
    if gamma > 0:
        q = P0.sum(axis=0) ** gamma
        return q / q.sum()
    return np.full(C, 1.0 / C)


def greedy_ot(logits, tau_t, gamma, iters):
    """Step 4a, KPL's stable Greenkhorn in log space (one row or column per iteration)."""
    L = log_softmax_rows(logits / tau_t)
    n, C = L.shape
    q = class_marginal(np.exp(L), gamma)
    r = 1.0 / n
    for _ in range(iters):
        P = np.exp(L)
        col_viol = np.abs(P.sum(axis=0) - q)
        row_viol = np.abs(P.sum(axis=1) - r)
        if col_viol.max() > row_viol.max():
            j = int(np.argmax(col_viol))                 # first maximum
            L[:, j] += np.log(q[j]) - logsumexp(L[:, j])
        else:
            i = int(np.argmax(row_viol))
            L[i, :] += np.log(r) - logsumexp(L[i, :])
    return np.exp(L)


def sinkhorn(logits, tau_t, gamma, iters):
    """Step 4b, InMaP's Sinkhorn; rows of the result sum to 1."""
    P0 = np.exp(log_softmax_rows(logits / tau_t))
    n, C = P0.shape
    P = P0 / n
    q = class_marginal(P0, gamma)
    for _ in range(iters):
        P = P / P.sum(axis=0, keepdims=True)
        if gamma > 0:
            P = P * q[None, :]
        else:
            P = P / C
        P = P / P.sum(axis=1, keepdims=True)
        P = P / n
    return P * n


def proxy_learning(X, W_init, P, tau_i, alpha, lr, iters, dtype=np.float64):
    """Step 5. W is kept as C x d (one proxy per row); the spec's d x C is its transpose."""
    X = X.astype(dtype)
    P = np.array(P, dtype=np.float64)
    n = X.shape[0]
    top = np.argmax(P, axis=1)
    hard = P.max(axis=1) > alpha
    P[hard, :] = 0.0
    P[hard, top[hard]] = 1.0
    B = (P.T @ X).astype(dtype)                            # C x d, fixed
    W = W_init.astype(dtype).copy()
    eta = lr
    prev = np.inf
    for _ in range(iters):
        Q = np.exp(log_softmax_rows(X @ W.T / tau_i))
        G = Q.T @ X - B
        g = np.linalg.norm(G)
        if g > prev:
            eta /= 2.0
        prev = g
        W = W - (eta / (n * tau_i)) * G
        W = normalize(W, axis=1)
    return W.astype(np.float64)


def predict(X, W):
    return [int(i) for i in np.argmax(X @ W.T, axis=1)]


def run_all(X, T, desc_class, C, p):
    W_t, selected = text_proxy(X, T, desc_class, C, p["k"])
    logits = X @ W_t.T
    P0 = np.exp(log_softmax_rows(logits / p["tau_t"]))
    P_greedy = greedy_ot(logits, p["tau_t"], p["gamma"], p["iters_ot"])
    P_sink = sinkhorn(logits, p["tau_t"], p["gamma"], p["iters_ot"])
    fit = lambda P: proxy_learning(X, W_t, P, p["tau_i"], p["alpha"], p["lr"], p["iters_proxy"])
    W = {"text_proxy": W_t, "proxy": fit(P0), "kpl": fit(P_greedy), "inmap": fit(P_sink)}
    out = {"selected": selected, "ot_greedy": P_greedy, "ot_sinkhorn": P_sink}
    for m, Wm in W.items():
        out[m] = {"weights": Wm, "predictions": predict(X, Wm)}
    return out


def classify_single(x, T, desc_class, C, k):
    """Product mode without a pool: per-image retrieval, score = x . w_c, no learning."""
    scores, selected = [], []
    for c in range(C):
        rows = np.flatnonzero(desc_class == c)
        s = T[rows] @ x
        kc = min(k, len(rows))
        sel = rows[np.argsort(-s, kind="stable")[:kc]]
        selected.append([int(i) for i in sel])
        scores.append(float(x @ normalize(T[sel].mean(axis=0))))
    return scores, selected, int(np.argmax(scores))


# ----------------------------------------------------------------------------- synthetic data

def quantize(a):
    """7 significant digits; returns (the decimal values written to JSON, float64 of their
    float32 rounding, i.e. exactly what a reader that parses f64 and casts to f32 sees)."""
    flat = [float("%.7g" % v) for v in np.asarray(a, dtype=np.float64).ravel()]
    as32 = np.array(flat, dtype=np.float64).astype(np.float32).astype(np.float64)
    return flat, as32.reshape(np.shape(a))


def make_data(rng, n, d, C, M, props):
    """Clustered image embeddings with a modality gap. Text: every description of class c
    lies near a class direction u_c plus a component shared by all prompts; relevance
    varies, so retrieval matters. Images: a large shared offset (the gap) plus a class
    centre that is u_c pushed off in a random direction, plus noise."""
    U = normalize(rng.normal(size=(C, d)))
    t_shared = normalize(rng.normal(size=d))
    T, desc_class = [], []
    for c in range(C):
        for m in range(M[c]):
            relevance = rng.uniform(0.1, 1.0)
            # a few descriptions point at another class (confusable knowledge)
            other = U[rng.integers(C)] if rng.uniform() < 0.15 else np.zeros(d)
            t = 0.8 * t_shared + relevance * U[c] + 0.4 * other + 0.35 * normalize(rng.normal(size=d))
            T.append(normalize(t))
            desc_class.append(c)
    T = np.array(T)
    gap = normalize(rng.normal(size=d))
    centres = normalize(U + 0.9 * normalize(rng.normal(size=(C, d))))
    labels = rng.choice(C, size=n, p=props)
    X = normalize(1.2 * gap + 0.55 * centres[labels] + 0.45 * normalize(rng.normal(size=(n, d))) * rng.uniform(0.5, 1.5, size=(n, 1)))
    return X, T, np.array(desc_class), labels


CASE_SPECS = [
    # name, seed, n, d, C, M per class (None: random 10..60 with one < k), proportions, params, store_ot
    ("c2_tiny", 11, 12, 32, 2, [10, 5], [0.7, 0.3], {}, True),
    ("c2_n300_d96", 12, 300, 96, 2, [45, 18], [0.8, 0.2], {}, False),
    ("c5_n80_d64", 13, 80, 64, 5, None, "imbalanced", {}, True),
    ("c5_n300_d128", 14, 300, 128, 5, None, "imbalanced", {}, False),
    ("c5_n150_d48_gamma_k5", 15, 150, 48, 5, None, "imbalanced", {"k": 5, "gamma": 0.5}, True),
    ("c21_n150_d64", 16, 150, 64, 21, "small", "imbalanced", {}, True),
    ("c24_n60_d32", 17, 60, 32, 24, "small", "imbalanced", {}, True),
    ("c4_n10_d40_k20", 18, 10, 40, 4, [12, 25, 3, 30], [0.4, 0.3, 0.2, 0.1], {"k": 20, "iters_proxy": 500}, True),
]


def build_case(spec):
    name, seed, n, d, C, M, props, overrides, store_ot = spec
    rng = np.random.default_rng(seed)
    p = dict(DEFAULTS, **overrides)
    if M is None:
        M = [int(m) for m in rng.integers(10, 61, size=C)]
        M[int(rng.integers(C))] = int(rng.integers(2, p["k"]))   # one class with < k descriptions
    elif M == "small":     # many classes: keep the file small
        M = [int(m) for m in rng.integers(10, 16, size=C)]
        M[int(rng.integers(C))] = int(rng.integers(2, p["k"]))
    if props == "imbalanced":
        w = 0.6 ** np.arange(C) + 0.05
        props = rng.permutation(w / w.sum())
    props = np.asarray(props, dtype=np.float64)
    X, T, desc_class, labels = make_data(rng, n, d, C, M, props / props.sum())
    X_json, X = quantize(X)
    T_json, T = quantize(T)

    res = run_all(X, T, desc_class, C, p)
    single = []
    for i in range(min(n, 4)):
        scores, sel, pred = classify_single(X[i], T, desc_class, C, p["k"])
        single.append({"image": i, "selected": sel, "scores": scores, "prediction": pred})

    hi = lambda a: [float("%.9g" % v) for v in np.asarray(a).ravel()]
    expected = {"selected": res["selected"], "single_image": single}
    for m in ("text_proxy", "proxy", "kpl", "inmap"):
        expected[m] = {"predictions": res[m]["predictions"], "weights": hi(res[m]["weights"]),
                       "accuracy": float(np.mean(np.array(res[m]["predictions"]) == labels))}
    if store_ot:
        expected["ot_greedy"] = hi(res["ot_greedy"])
        expected["ot_sinkhorn"] = hi(res["ot_sinkhorn"])
    case = {
        "name": name, "n": n, "d": d, "classes": C,
        "class_names": ["class_%d" % c for c in range(C)],
        "descriptions_per_class": M,
        "params": p,
        "labels": [int(v) for v in labels],
        "images": X_json,
        "descriptions": T_json,
        "description_class": [int(v) for v in desc_class],
        "expected": expected,
    }
    return case, res, X, T, desc_class, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="recompute and compare to the stored cases; write nothing")
    ap.add_argument("--only", help="only the case with this name")
    args = ap.parse_args()
    os.makedirs(CASES_DIR, exist_ok=True)
    worst = 0.0
    for spec in CASE_SPECS:
        if args.only and spec[0] != args.only:
            continue
        case, res, X, T, dc, labels = build_case(spec)
        path = os.path.join(CASES_DIR, spec[0] + ".json")
        acc = " ".join("%s=%.3f" % (m, case["expected"][m]["accuracy"]) for m in ("text_proxy", "proxy", "kpl", "inmap"))
        if args.check:
            with open(path) as f:
                old = json.load(f)
            for m in ("text_proxy", "proxy", "kpl", "inmap"):
                diff = np.max(np.abs(np.array(old["expected"][m]["weights"]) - np.array(case["expected"][m]["weights"])))
                worst = max(worst, diff)
                if old["expected"][m]["predictions"] != case["expected"][m]["predictions"]:
                    print("MISMATCH predictions", spec[0], m)
                    worst = np.inf
            print("%-24s checked, %s" % (spec[0], acc))
        else:
            with open(path, "w") as f:
                json.dump(case, f, separators=(",", ":"))
                f.write("\n")
            print("%-24s n=%d d=%d C=%d %6.0f KB  %s" % (spec[0], case["n"], case["d"], case["classes"], os.path.getsize(path) / 1024, acc))
    if args.check:
        print("max |W - stored W| = %.3g" % worst)
        return 0 if worst < 1e-6 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
