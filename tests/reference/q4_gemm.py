"""Reference outputs of the int8 GEMM for q4_K weights (src/nn/gemm/q4.rs), computed
independently in numpy, for tests/gemm.rs (native) and tests/browser/gemm.test.mjs (wasm).

The weight: random ggml `block_q4_K` bytes, written as ggml's `quantize_row_q4_K_ref`
lays them out (f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles:
value j+l of each 64 in the low nibble of qs[j/2 + l], value j+l+32 in the high one), and
`w_deq`, their dequantisation as ggml's `dequantize_row_q4_K` defines it, in f32:
d1 = d * sc, m1 = dmin * m (get_scale_min_k4), w = d1 * q - m1, each op rounded to f32.

The product (q4.rs's module doc): activations quantised to int16 per row and 32-value
block as for q8 (d = max|x| / 32767, q = round-half-to-even(x * (1/d)) clamped to
+-32767); per 32-value sub-block the exact integer sums isum = sum(a * q) and
asum = sum(a), then in f32, in k order, acc = acc + (f32(isum) * d1 - f32(asum) * m1) * d_x.
The kernels must reproduce `y` bit for bit. `y_f64` is the product of the unquantised
activations with `w_deq`, in f64.

    python tests/reference/q4_gemm.py   # rewrites tests/fixtures/q4-gemm/cases.json
"""
import json
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "q4-gemm" / "cases.json"
# (m, k, n): 1 row, rows and columns off the 4 x 8 tile, k = 256 * odd and even.
SHAPES = [(1, 256, 1), (2, 256, 3), (4, 512, 8), (5, 256, 13), (7, 768, 3), (9, 256, 17), (3, 256, 9)]


def encode_scales(sc, m):
    """ggml's quantize_row_q4_K_ref packing of 8 six-bit scales and mins into 12 bytes."""
    q = np.zeros(12, np.uint8)
    for j in range(8):
        ls, lm = int(sc[j]), int(m[j])
        if j < 4:
            q[j] = ls
            q[j + 4] = lm
        else:
            q[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
            q[j - 4] |= (ls >> 4) << 6
            q[j] |= (lm >> 4) << 6
    return q


def get_scale_min_k4(j, q):
    """ggml-quants.c get_scale_min_k4."""
    if j < 4:
        return int(q[j]) & 63, int(q[j + 4]) & 63
    return (int(q[j + 4]) & 0xF) | ((int(q[j - 4]) >> 6) << 4), (int(q[j + 4]) >> 4) | ((int(q[j]) >> 6) << 4)


def dequantize_block(block):
    """ggml-quants.c dequantize_row_q4_K for one 144-byte block, in f32."""
    d = np.frombuffer(block[0:2].tobytes(), "<f2")[0].astype(np.float32)
    dmin = np.frombuffer(block[2:4].tobytes(), "<f2")[0].astype(np.float32)
    scales, qs = block[4:16], block[16:144]
    y = np.zeros(256, np.float32)
    is_, out = 0, 0
    for j in range(0, 256, 64):
        q = qs[j // 2:j // 2 + 32]
        sc, m = get_scale_min_k4(is_, scales)
        d1, m1 = np.float32(d * np.float32(sc)), np.float32(dmin * np.float32(m))
        sc, m = get_scale_min_k4(is_ + 1, scales)
        d2, m2 = np.float32(d * np.float32(sc)), np.float32(dmin * np.float32(m))
        y[out:out + 32] = (d1 * (q & 0xF).astype(np.float32)).astype(np.float32) - m1
        y[out + 32:out + 64] = (d2 * (q >> 4).astype(np.float32)).astype(np.float32) - m2
        out += 64
        is_ += 2
    return y, d, dmin


def case(rng, m, k, n):
    x = rng.standard_normal((m, k)).astype(np.float32)
    # An outlier per row and a zero block, as activations have.
    x[:, rng.integers(0, k, m)] *= np.float32(20.0)
    if k >= 64:
        x[0, 32:64] = 0.0

    ks = k // 256
    blocks = np.zeros((n, ks, 144), np.uint8)
    sc_all = np.zeros((n, k // 32), np.int64)
    m_all = np.zeros((n, k // 32), np.int64)
    d_all = np.zeros((n, ks), np.float32)
    dmin_all = np.zeros((n, ks), np.float32)
    w_deq = np.zeros((n, k), np.float32)
    for row in range(n):
        for sb in range(ks):
            d = np.float16(rng.uniform(0.0, 0.01))
            dmin = np.float16(rng.uniform(0.0, 0.01))
            if row == 0 and sb == 0:
                d = np.float16(0.0)  # a zero scale
            sc = rng.integers(0, 64, 8)
            mn = rng.integers(0, 64, 8)
            sc[0], mn[0] = 0, 63  # a sub-block of mins only
            L = rng.integers(0, 16, 256).astype(np.uint8)
            qs = np.zeros(128, np.uint8)
            for j in range(0, 256, 64):
                qs[j // 2:j // 2 + 32] = L[j:j + 32] | (L[j + 32:j + 64] << 4)
            block = np.concatenate([
                np.frombuffer(np.array([d], "<f2").tobytes(), np.uint8),
                np.frombuffer(np.array([dmin], "<f2").tobytes(), np.uint8),
                encode_scales(sc, mn), qs,
            ])
            blocks[row, sb] = block
            y, dd, dm = dequantize_block(block)
            w_deq[row, sb * 256:(sb + 1) * 256] = y
            d_all[row, sb], dmin_all[row, sb] = dd, dm
            for s in range(8):
                got = get_scale_min_k4(s, block[4:16])
                assert got == (sc[s], mn[s]), (got, sc[s], mn[s])
                sc_all[row, sb * 8 + s], m_all[row, sb * 8 + s] = sc[s], mn[s]
    # The nibbles in k order, for the integer sums.
    wq = np.zeros((n, k), np.int64)
    for row in range(n):
        for sb in range(ks):
            qs = blocks[row, sb, 16:144]
            for j in range(0, 256, 64):
                wq[row, sb * 256 + j:sb * 256 + j + 32] = qs[j // 2:j // 2 + 32] & 0xF
                wq[row, sb * 256 + j + 32:sb * 256 + j + 64] = qs[j // 2:j // 2 + 32] >> 4

    xb = x.reshape(m, k // 32, 32)
    amax = np.abs(xb).max(axis=2)
    dx = (amax / np.float32(32767.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(dx != 0, np.float32(1.0) / dx, np.float32(0.0)).astype(np.float32)
    qa = np.clip(np.rint((xb * inv[:, :, None]).astype(np.float32)), -32767, 32767).astype(np.int64)

    isum = np.einsum("mbk,nbk->mnb", qa, wq.reshape(n, k // 32, 32))  # exact integers
    asum = qa.sum(axis=2)  # [m, kb]
    d1 = (np.repeat(d_all, 8, axis=1) * sc_all.astype(np.float32)).astype(np.float32)  # [n, kb]
    m1 = (np.repeat(dmin_all, 8, axis=1) * m_all.astype(np.float32)).astype(np.float32)
    acc = np.zeros((m, n), np.float32)
    for b in range(k // 32):
        # int64 -> float32 is exact here (|isum| < 2**24).
        t1 = (isum[:, :, b].astype(np.float32) * d1[None, :, b]).astype(np.float32)
        t2 = (asum[:, None, b].astype(np.float32) * m1[None, :, b]).astype(np.float32)
        t = (t1 - t2).astype(np.float32)
        acc = (acc + (t * dx[:, None, b]).astype(np.float32)).astype(np.float32)

    return {
        "m": m, "k": k, "n": n,
        "x": x.astype("<f4").tobytes().hex(),
        "blocks": blocks.tobytes().hex(),
        "w_deq": w_deq.astype("<f4").tobytes().hex(),
        "y": acc.astype("<f4").tobytes().hex(),
        "y_f64": (x.astype(np.float64) @ w_deq.astype(np.float64).T).astype("<f8").tobytes().hex(),
    }


def main():
    rng = np.random.default_rng(1404)
    cases = [case(rng, *s) for s in SHAPES]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"source": "tests/reference/q4_gemm.py", "cases": cases}, indent=1) + "\n")
    print(f"{OUT}: {len(cases)} cases, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
