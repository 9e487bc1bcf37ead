"""Reference outputs of the fused attention (src/nn/attention.rs) and of the layer norm
(src/nn/norm.rs), computed independently, for tests/attention.rs (native) and
tests/browser/attention.test.mjs (wasm).

Attention: per sequence and head, softmax(q·kᵀ·d^-0.5 + mask)·v in float64 numpy (stored
rounded to float32), the output in the [batch, q_len, heads·head_dim] layout; the mask is additive and the same for
every head: "causal" (-inf above the diagonal, CLIP's text tower), "keys" (f32's most
negative finite value at the keys past each sequence's length, as transformers'
_prepare_4d_attention_mask; a length of 0 attends uniformly) or none. Each case is also
run through torch.nn.functional.scaled_dot_product_attention in float32 and checked here
against numpy, so the definition is the one PyTorch computes.

Layer norm: torch.nn.functional.layer_norm in float64 (the definition) and in float32
(PyTorch's own CPU kernel), on rows far from zero as a deep tower's residual stream.

    /work/venv-siglip/bin/python tests/reference/attention.py
    # rewrites tests/fixtures/attention/{attention,layer_norm}.json
"""
import json
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "attention"
F32_MIN = float(np.finfo(np.float32).min)

# (batch, heads, head_dim, q_len, k_len, mask, lengths): heads 1/3/12, head dims 8/64/72
# (off the kernels' 16-wide panels), lengths off every kernel's row tile (4, 6, 12) and
# off the 16-key panel, cross-attention (q_len != k_len, one query as SigLIP's MAP head),
# a sequence of length 0.
SHAPES = [
    (1, 1, 8, 1, 1, "none", None),
    (2, 3, 8, 13, 13, "causal", None),
    (1, 3, 8, 33, 33, "causal", None),
    (2, 2, 72, 9, 9, "keys", [9, 4]),
    (1, 12, 8, 5, 5, "none", None),
    (2, 1, 64, 1, 29, "keys", [29, 0]),
    (1, 1, 72, 7, 19, "none", None),
    (1, 1, 64, 23, 23, "keys", [17]),
]


def hexf32(a):
    return np.ascontiguousarray(a, dtype="<f4").tobytes().hex()


def attention_case(rng, batch, heads, d, q_len, k_len, mask_kind, lengths):
    hidden = heads * d
    q = rng.standard_normal((batch, q_len, hidden)).astype(np.float32)
    k = rng.standard_normal((batch, k_len, hidden)).astype(np.float32)
    v = rng.standard_normal((batch, k_len, hidden)).astype(np.float32)
    mask = np.zeros((batch, 1, q_len, k_len), np.float32)
    if mask_kind == "causal":
        mask[:] = np.where(np.arange(k_len)[None, :] > np.arange(q_len)[:, None], -np.inf, 0.0)
    elif mask_kind == "keys":
        for b, n in enumerate(lengths):
            mask[b, :, :, n:] = F32_MIN
    split = lambda t, n: t.astype(np.float64).reshape(batch, n, heads, d).transpose(0, 2, 1, 3)
    qh, kh, vh = split(q, q_len), split(k, k_len), split(v, k_len)
    scores = qh @ kh.transpose(0, 1, 3, 2) * d ** -0.5 + mask.astype(np.float64)
    scores -= scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    y = (weights @ vh).transpose(0, 2, 1, 3).reshape(batch, q_len, hidden)
    # PyTorch's own attention in float32 agrees with the definition.
    t = lambda a, n: torch.from_numpy(a).reshape(batch, n, heads, d).transpose(1, 2)
    y_torch = torch.nn.functional.scaled_dot_product_attention(
        t(q, q_len), t(k, k_len), t(v, k_len), attn_mask=torch.from_numpy(mask)
    ).transpose(1, 2).reshape(batch, q_len, hidden).numpy()
    assert np.abs(y_torch - y).max() < 1e-5, np.abs(y_torch - y).max()
    case = {"batch": batch, "heads": heads, "head_dim": d, "q_len": q_len, "k_len": k_len,
            "mask": mask_kind, "q": hexf32(q), "k": hexf32(k), "v": hexf32(v),
            "y": hexf32(y)}
    if lengths is not None:
        case["lengths"] = lengths
    return case


def layer_norm_case(rng, rows, width, offset):
    x = (rng.standard_normal((rows, width)) * 2.0 + offset).astype(np.float32)
    g = (1.0 + rng.standard_normal(width) * 0.1).astype(np.float32)
    b = (rng.standard_normal(width) * 0.1).astype(np.float32)
    f = torch.nn.functional.layer_norm
    y64 = f(torch.from_numpy(x).double(), (width,), torch.from_numpy(g).double(), torch.from_numpy(b).double(), 1e-5)
    y32 = f(torch.from_numpy(x), (width,), torch.from_numpy(g), torch.from_numpy(b), 1e-5)
    return {"rows": rows, "width": width, "eps": 1e-5, "x": hexf32(x), "gamma": hexf32(g), "beta": hexf32(b),
            "y_f64": y64.numpy().astype("<f8").tobytes().hex(), "y_torch_f32": hexf32(y32.numpy())}


def main():
    rng = np.random.default_rng(1414)
    OUT.mkdir(parents=True, exist_ok=True)
    source = "tests/reference/attention.py"
    cases = [attention_case(rng, *s) for s in SHAPES]
    (OUT / "attention.json").write_text(json.dumps({"source": source, "cases": cases}) + "\n")
    norms = [layer_norm_case(rng, r, w, o) for r, w, o in [(1, 8, 0.0), (5, 75, 0.0), (2, 768, 40.0), (1, 1024, -300.0)]]
    (OUT / "layer_norm.json").write_text(json.dumps({"source": source, "cases": norms}) + "\n")
    for name in ["attention.json", "layer_norm.json"]:
        print(f"{OUT / name}: {(OUT / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
