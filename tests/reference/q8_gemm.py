"""Reference outputs of the int8 GEMM for q8_0 weights (src/nn/gemm/q8.rs), computed
independently in numpy, for tests/gemm.rs (native) and tests/browser/gemm.test.mjs (wasm).

The algorithm (q8.rs's module doc): activations quantised to int16 per row and 32-value
block, d = max|x| / 32767 (f32), q = round-half-to-even(x * (1/d)) clamped to +-32767; per block
the exact integer dot product with the weight's int8 values, then, in f32 and in k order,
acc = acc + f32(isum) * (d_x * d_w). The kernels must reproduce `y` bit for bit.
`y_q8x8`: the q8_0 x q8_0 GEMM (src/nn/gemm/q8x8.rs), ggml's semantics: activations quantised
as ggml's quantize_row_q8_0 (d = max|x| / 127 in f32, q = roundf(x * (1/d)), half away from zero,
d stored as f16), per block the exact integer dot product (ggml's vec_dot_q8_0_q8_0), then in f32
and in k order acc = fma(f32(isum), f16(d_x) * d_w, acc), one rounding (ggml's x86 kernels fuse
the block's multiply-add; computed exactly in rationals, rounded to f32 once); bit for bit. The last case has ties
(x * (1/d) = j + 1/2) where half-away and half-to-even rounding differ.
`y_f64` is the product of the unquantised activations with the dequantised weight, in f64.
Epilogue (src/nn/gemm/epilogue.rs): `y_epi` = (y + b) + r in f32, bit for bit, for a bias `b`
[n] and a residual `r` [m, n].

    python tests/reference/q8_gemm.py   # rewrites tests/fixtures/q8-gemm/cases.json
"""
import json
import math
import pathlib
from fractions import Fraction

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "q8-gemm" / "cases.json"
# (m, k, n): 1 row, rows and columns not multiples of the 4 x 8 tile, k = 32 * odd.
SHAPES = [(1, 32, 1), (2, 64, 3), (4, 96, 8), (5, 160, 13), (7, 288, 17), (9, 32, 9), (3, 416, 24)]
# For the q8_0 x q8_0 GEMM's 12 x 16 tile: rows and columns off it, k = 32 * odd, one row of ties.
SHAPES_Q8X8 = [(13, 96, 21), (25, 160, 33)]
# Last, the extremes: every activation at +-32767 once quantised and every weight -128 or
# 127 (the relaxed-SIMD kernel splits the activations into 7-bit pieces, q8_relaxed.rs).
EXTREME = (5, 64, 11)


def q8x8(x, wq, wd):
    """ggml's q8_0 x q8_0 product of x [m, k] (f32) and the q8_0 weight (wq [n, k] int8, wd [n, k/32] f16)."""
    m, k = x.shape
    xb = x.reshape(m, k // 32, 32)
    amax = np.abs(xb).max(axis=2)
    d = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    v = (xb * inv[:, :, None]).astype(np.float32).astype(np.float64)
    q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -128, 127).astype(np.int64)  # roundf
    d16 = d.astype(np.float16).astype(np.float32)
    isum = np.einsum("mbk,nbk->mnb", q, wq.reshape(-1, k // 32, 32).astype(np.int64))
    scale = (d16[:, None, :] * wd.astype(np.float32)[None, :, :]).astype(np.float32)
    acc = np.zeros((m, wq.shape[0]), np.float32)
    for b in range(k // 32):
        for i, j in np.ndindex(acc.shape):
            acc[i, j] = fma_f32(np.float32(isum[i, j, b]), scale[i, j, b], acc[i, j])
    return acc


def fma_f32(a, b, c):
    """a * b + c for f32 a, b, c with a single rounding to f32 (nearest, ties to even)."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    return round_f32(exact)


def round_f32(v):
    """The f32 nearest the rational v (ties to even), for |v| in f32's normal or subnormal range."""
    if v == 0:
        return np.float32(0.0)
    sign, v = (-1 if v < 0 else 1), abs(v)
    # v = mant * 2^e with 2^23 <= mant < 2^24 (or the subnormal exponent floor, -149).
    e = max(v.numerator.bit_length() - v.denominator.bit_length() - 24, -149)
    while v / Fraction(2) ** e >= 2**24:
        e += 1
    while e > -149 and v / Fraction(2) ** e < 2**23:
        e -= 1
    scaled = v / Fraction(2) ** e
    mant = math.floor(scaled)
    rest = scaled - mant
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and mant % 2 == 1):
        mant += 1
    return np.float32(sign * math.ldexp(mant, e))


def case(rng, m, k, n, ties=False, extreme=False):
    x = rng.standard_normal((m, k)).astype(np.float32)
    # An outlier per row and a zero block, as activations have.
    x[:, rng.integers(0, k, m)] *= np.float32(20.0)
    if k >= 64 and not extreme:
        x[0, 32:64] = 0.0
    if ties:
        # max|x| = 127 * 0.25: d = 0.25, 1/d = 4, x * 4 = j + 1/2 exactly.
        x[m - 1, :32] = np.float32(0.25) * np.array([127] + [(j % 20 - 10) + 0.5 for j in range(31)], np.float32)
    wq = rng.integers(-127, 128, (n, k)).astype(np.int8)
    if extreme:
        x = np.where(rng.integers(0, 2, (m, k)) == 1, np.float32(1.5), np.float32(-1.5)).astype(np.float32)
        wq = np.where(rng.integers(0, 2, (n, k)) == 1, 127, -128).astype(np.int8)
    wd = (rng.uniform(0.0, 0.02, (n, k // 32))).astype(np.float16)
    wd[0, 0] = 0.0

    xb = x.reshape(m, k // 32, 32)
    amax = np.abs(xb).max(axis=2)
    d = (amax / np.float32(32767.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    q = np.clip(np.rint((xb * inv[:, :, None]).astype(np.float32)), -32767, 32767).astype(np.int64)

    wb = wq.reshape(n, k // 32, 32).astype(np.int64)
    isum = np.einsum("mbk,nbk->mnb", q, wb)  # exact integers
    scale = (d[:, None, :] * wd.astype(np.float32)[None, :, :]).astype(np.float32)
    acc = np.zeros((m, n), np.float32)
    for b in range(k // 32):
        # int64 -> float32 rounds to nearest even, like cvtdq2ps and f32x4.convert_i32x4_s.
        acc = (acc + (isum[:, :, b].astype(np.float32) * scale[:, :, b]).astype(np.float32)).astype(np.float32)

    w64 = wq.astype(np.float64) * np.repeat(wd.astype(np.float64), 32, axis=1)
    # Drawn from a second generator, so the cases above keep their values.
    extra = np.random.default_rng(m * 1000 + k * 10 + n)
    b = (extra.standard_normal(n) * 0.1).astype(np.float32)
    r = extra.standard_normal((m, n)).astype(np.float32)
    y_epi = (r + (acc + b[None, :]).astype(np.float32)).astype(np.float32)
    return {
        "b": b.astype("<f4").tobytes().hex(),
        "r": r.astype("<f4").tobytes().hex(),
        "y_epi": y_epi.astype("<f4").tobytes().hex(),
        "m": m, "k": k, "n": n,
        "x": x.astype("<f4").tobytes().hex(),
        "w_q": wq.tobytes().hex(),
        "w_d": wd.astype("<f2").tobytes().hex(),
        "y": acc.astype("<f4").tobytes().hex(),
        "y_f64": (x.astype(np.float64) @ w64.T).astype("<f8").tobytes().hex(),
        "y_q8x8": q8x8(x, wq, wd).astype("<f4").tobytes().hex(),
    }


def main():
    rng = np.random.default_rng(14)
    cases = [case(rng, *s) for s in SHAPES] + [case(rng, *s, ties=True) for s in SHAPES_Q8X8] + [case(rng, *EXTREME, extreme=True)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"source": "tests/reference/q8_gemm.py", "cases": cases}, indent=1) + "\n")
    print(f"{OUT}: {len(cases)} cases, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
