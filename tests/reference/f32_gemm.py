"""Reference outputs of the f32 GEMM (src/nn/gemm/f32.rs), computed independently in
numpy, for tests/gemm.rs (native) and tests/browser/gemm.test.mjs (wasm).

`y` is the kernels' algorithm without fused multiply-adds (wasm simd128 and the scalar
kernel): per output, in f32 and in k order from 0, acc = acc + x * w (the product rounded
to f32, then the sum), then y = acc + b when there is a bias. Those kernels must reproduce
it bit for bit. `y_fma` is the same chain with fused multiply-adds, acc = fma(x, w, acc)
rounded once (the native AVX2/AVX-512 kernels, and wasm's relaxed-SIMD build where the
engine fuses `f32x4.relaxed_madd`); those kernels must reproduce it bit for bit. `y_f64`
is the exact product in f64 (every kernel is within the f32 rounding bound of it).

Epilogues (src/nn/gemm/epilogue.rs): for every case, `r` is a residual [m, n] and
`y_res` = r + y in f32 (bit for bit); `act_<name>` is the activation of `y` (f32 values)
computed in f64 with Python's math.erf / math.tanh / math.exp (quick_gelu = x sigmoid(1.702 x);
gelu = x (1 + erf(x / sqrt 2)) / 2; gelu_tanh = x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2,
torch's formulas), for the fused activations to be checked within a few f32 roundings.

    python tests/reference/f32_gemm.py   # rewrites tests/fixtures/f32-gemm/cases.json
"""
import json
import math
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "f32-gemm" / "cases.json"
# (m, k, n, bias): k = 1, one row, m off every kernel's rows (4, 6, 12), n off the
# 16-column panel, k across the 256-value block.
SHAPES = [(1, 1, 1, False), (3, 1, 17, True), (1, 260, 5, True), (5, 33, 16, False),
          (7, 257, 20, True), (13, 270, 18, True), (25, 64, 3, False), (2, 16, 50, True)]


def fma32(a, b, c):
    """round_f32(a·b + c) with one rounding, elementwise (f32 arrays): the product is
    exact in f64, the f64 sum and its exact error come from TwoSum (Knuth), and the
    f64 → f32 rounding is corrected where it would round twice (the f64 sum exactly
    halfway between two f32 while the true sum is not)."""
    p = a.astype(np.float64) * b.astype(np.float64)
    c = c.astype(np.float64)
    s = p + c
    bv = s - p
    e = (p - (s - bv)) + (c - bv)
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    other = np.nextafter(r, np.where(s > r64, np.float32(np.inf), np.float32(-np.inf))).astype(np.float32)
    halfway = (s != r64) & (s - r64 == other.astype(np.float64) - s)
    # Halfway in f64 but not exactly: the true sum lies on e's side.
    toward_other = halfway & (e != 0) & ((e > 0) == (other.astype(np.float64) > r64))
    return np.where(toward_other, other, r).astype(np.float32)


def case(rng, m, k, n, bias):
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(n) * 0.1).astype(np.float32)
    acc = np.zeros((m, n), np.float32)
    for j in range(k):
        acc = (acc + (x[:, j, None] * w[None, :, j]).astype(np.float32)).astype(np.float32)
    y = (acc + b[None, :]).astype(np.float32) if bias else acc
    acc = np.zeros((m, n), np.float32)
    for j in range(k):
        acc = fma32(np.broadcast_to(x[:, j, None], (m, n)), np.broadcast_to(w[None, :, j], (m, n)), acc)
    y_fma = (acc + b[None, :]).astype(np.float32) if bias else acc
    y64 = x.astype(np.float64) @ w.astype(np.float64).T + (b.astype(np.float64) if bias else 0.0)
    out = {
        "m": m, "k": k, "n": n,
        "x": x.astype("<f4").tobytes().hex(),
        "w": w.astype("<f4").tobytes().hex(),
        "y": y.astype("<f4").tobytes().hex(),
        "y_fma": y_fma.astype("<f4").tobytes().hex(),
        "y_f64": y64.astype("<f8").tobytes().hex(),
    }
    if bias:
        out["b"] = b.astype("<f4").tobytes().hex()
    # Drawn from a second generator, so the cases above keep their values.
    r = np.random.default_rng(m * 1000 + k * 10 + n).standard_normal((m, n)).astype(np.float32)
    out["r"] = r.astype("<f4").tobytes().hex()
    out["y_res"] = (r + y).astype(np.float32).astype("<f4").tobytes().hex()
    for name, f in ACTIVATIONS.items():
        out["act_" + name] = np.array([f(float(v)) for v in y.ravel()], np.float64).astype("<f8").tobytes().hex()
    return out


ACTIVATIONS = {
    "quick_gelu": lambda x: x / (1.0 + math.exp(-1.702 * x)) if x > -400 else 0.0,
    "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
}


def main():
    rng = np.random.default_rng(1414)
    cases = [case(rng, *s) for s in SHAPES]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"source": "tests/reference/f32_gemm.py", "cases": cases}, indent=1) + "\n")
    print(f"{OUT}: {len(cases)} cases, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
