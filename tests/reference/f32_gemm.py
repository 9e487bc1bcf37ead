"""Reference outputs of the f32 GEMM (src/nn/gemm/f32.rs), computed independently in
numpy, for tests/gemm.rs (native) and tests/browser/gemm.test.mjs (wasm).

`y` is the kernels' algorithm without fused multiply-adds (wasm simd128 and the scalar
kernel): per output, in f32 and in k order from 0, acc = acc + x * w (the product rounded
to f32, then the sum), then y = acc + b when there is a bias. Those kernels must reproduce
it bit for bit. `y_f64` is the exact product in f64 (the fused kernels are checked against
it within the f32 rounding bound).

    python tests/reference/f32_gemm.py   # rewrites tests/fixtures/f32-gemm/cases.json
"""
import json
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "f32-gemm" / "cases.json"
# (m, k, n, bias): k = 1, one row, m off every kernel's rows (4, 6, 12), n off the
# 16-column panel, k across the 256-value block.
SHAPES = [(1, 1, 1, False), (3, 1, 17, True), (1, 260, 5, True), (5, 33, 16, False),
          (7, 257, 20, True), (13, 270, 18, True), (25, 64, 3, False), (2, 16, 50, True)]


def case(rng, m, k, n, bias):
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(n) * 0.1).astype(np.float32)
    acc = np.zeros((m, n), np.float32)
    for j in range(k):
        acc = (acc + (x[:, j, None] * w[None, :, j]).astype(np.float32)).astype(np.float32)
    y = (acc + b[None, :]).astype(np.float32) if bias else acc
    y64 = x.astype(np.float64) @ w.astype(np.float64).T + (b.astype(np.float64) if bias else 0.0)
    out = {
        "m": m, "k": k, "n": n,
        "x": x.astype("<f4").tobytes().hex(),
        "w": w.astype("<f4").tobytes().hex(),
        "y": y.astype("<f4").tobytes().hex(),
        "y_f64": y64.astype("<f8").tobytes().hex(),
    }
    if bias:
        out["b"] = b.astype("<f4").tobytes().hex()
    return out


def main():
    rng = np.random.default_rng(1414)
    cases = [case(rng, *s) for s in SHAPES]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"source": "tests/reference/f32_gemm.py", "cases": cases}, indent=1) + "\n")
    print(f"{OUT}: {len(cases)} cases, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
