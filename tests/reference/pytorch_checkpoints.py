"""Writes the PyTorch checkpoints of tests/pytorch.rs with torch.save, and what
open_clip reads from them.

    /work/venv-openclip/bin/python tests/reference/pytorch_checkpoints.py

writes tests/fixtures/pytorch/*.bin and tests/fixtures/pytorch/expected.json:

- good checkpoints: for each, the tensors open_clip's own
  `open_clip.factory.load_state_dict` returns (torch.load with weights_only=True,
  the `state_dict` entry of a nested checkpoint, `module.` prefixes stripped),
  in order, with dtype, shape and the raw bits of every element (f32 as int32,
  f16/bf16 as int16, f64 as int64), so the Rust test compares exactly;
- hostile ones: what the Rust reader's error must name, and whether torch's
  own weights_only loader refuses the file too.

Nothing is downloaded; writing a hostile file never runs what it refers to.
"""

import collections
import io
import json
import os
import pathlib
import struct
import warnings
import zipfile

import torch
from open_clip.factory import load_state_dict

warnings.filterwarnings("ignore")
OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "pytorch"
torch.manual_seed(16)

BITS = {
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float64: torch.int64,
}


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(7, 4)
        self.proj = torch.nn.Linear(4, 3)
        self.norm = torch.nn.LayerNorm(3)
        self.bn = torch.nn.BatchNorm1d(3)  # num_batches_tracked: a 0-d int64 buffer
        self.register_buffer("position_ids", torch.arange(5).unsqueeze(0))


def views():
    """Tensors that are views of one storage: offsets, strides, transposes."""
    base = torch.randn(60)
    grid = base.view(6, 10)
    return collections.OrderedDict(
        [
            ("whole", base),
            ("slice", base[10:30].view(4, 5)),
            ("transposed", grid.t()),
            ("strided", grid[1:5:2, 2:8:3]),
            ("scalar", base[7]),
            ("column", grid[:, 3]),
            ("other_dtype_f64", torch.randn(2, 3, dtype=torch.float64)),
            ("flags", torch.tensor([True, False, True])),
            ("ints", torch.tensor([[-3, 2**40], [7, -(2**62)]], dtype=torch.int64)),
            ("empty", torch.zeros(0, 4)),
        ]
    )


class Evil:
    """Pickles as a call of os.system (never called here)."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


class OutOfBounds:
    """Pickles as a tensor view past the end of its storage."""

    def __reduce__(self):
        storage = torch.zeros(4).storage()
        return (torch._utils._rebuild_tensor_v2, (storage, 2, (4,), (1,), False, collections.OrderedDict()))


def rewrite(src, dst, change):
    """Copies a checkpoint's zip, entries stored, with `change(name, bytes)`
    returning new bytes or None to drop the entry."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


def describe(state_dict):
    out = []
    for name, t in state_dict.items():
        t = t.detach().contiguous()
        if t.dtype in BITS:
            bits = t.view(BITS[t.dtype]).flatten().tolist()
        else:
            bits = t.to(torch.int64).flatten().tolist()
        out.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "bits": bits})
    return out


def write_fuzz_seeds(good):
    """Seeds of the `pytorch_pickle` fuzz target (fuzz/src/lib.rs): byte 0 then
    a whole checkpoint; byte 1 then a data.pkl whose storages 0..3 are the
    64-byte entries the target puts next to it."""
    seeds = OUT.parents[2] / "fuzz" / "seeds" / "pytorch_pickle"
    seeds.mkdir(parents=True, exist_ok=True)
    for name in ["views.bin", "f16.bin", "nested.bin", "protocol4.bin", "parameters.bin"]:
        (seeds / f"file-{name}").write_bytes(b"\x00" + good[name].read_bytes())
    base = torch.arange(16, dtype=torch.float32)
    pickles = {
        "views": collections.OrderedDict(
            [
                ("a", base),
                ("b", torch.zeros(32, dtype=torch.float16)),
                ("c", torch.arange(8).view(2, 4).t()),
                ("d", base[3:15].view(3, 4)[:, ::2]),
                ("e", torch.zeros(64, dtype=torch.uint8)),
            ]
        ),
        "parameter": {"w": torch.nn.Parameter(torch.ones(4, 4)), "s": torch.zeros(32, dtype=torch.bfloat16)},
    }
    for name, obj in pickles.items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        with zipfile.ZipFile(buf) as z:
            for info in z.infolist():
                if "/data/" in info.filename:
                    assert info.file_size == 64, (name, info.filename, info.file_size)
            (seeds / f"pickle-{name}").write_bytes(b"\x01" + z.read("archive/data.pkl"))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = Tiny()
    good = {}

    def save(name, obj, **kw):
        path = OUT / name
        torch.save(obj, path, **kw)
        return path

    good["f32.bin"] = save("f32.bin", model.state_dict())
    good["f16.bin"] = save("f16.bin", Tiny().half().state_dict())
    good["bf16.bin"] = save("bf16.bin", Tiny().to(torch.bfloat16).state_dict())
    good["views.bin"] = save("views.bin", views())
    good["protocol4.bin"] = save("protocol4.bin", model.state_dict(), pickle_protocol=4)
    good["parameters.bin"] = save(
        "parameters.bin", {"weight": torch.nn.Parameter(torch.randn(2, 2)), "bias": torch.nn.Parameter(torch.randn(2))}
    )
    ddp = collections.OrderedDict(("module." + k, v) for k, v in Tiny().state_dict().items())
    good["nested.bin"] = save(
        "nested.bin",
        {
            "epoch": 3,
            "name": "tiny",
            "state_dict": ddp,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.98), "params": [0, 1], "amsgrad": False}]},
        },
    )

    hostile = {}
    save("os_system.bin", {"weight": torch.zeros(2), "x": Evil()})
    hostile["os_system.bin"] = ["posix.system"]
    save("out_of_bounds.bin", {"x": OutOfBounds()})
    hostile["out_of_bounds.bin"] = ["tensor x", "reaches past its storage"]
    save("not_a_tensor.bin", {"weight": torch.zeros(2), "steps": 3})
    hostile["not_a_tensor.bin"] = ['"steps"', "not a tensor"]
    save("legacy.bin", model.state_dict(), _use_new_zipfile_serialization=False)
    hostile["legacy.bin"] = ["legacy format"]
    save("whole_model.bin", torch.nn.Linear(2, 2))
    hostile["whole_model.bin"] = ["torch.nn.modules.linear"]
    data = (OUT / "f32.bin").read_bytes()
    (OUT / "truncated.bin").write_bytes(data[: len(data) // 2])
    hostile["truncated.bin"] = ["zip"]

    def shorten(name, data):
        return data[:-4] if name.endswith("/data/0") else data

    rewrite(OUT / "f32.bin", OUT / "wrong_size.bin", shorten)
    hostile["wrong_size.bin"] = ["storage 0 holds", "bytes but declares"]

    def drop(name, data):
        return None if name.endswith("/data/1") else data

    rewrite(OUT / "f32.bin", OUT / "missing_storage.bin", drop)
    hostile["missing_storage.bin"] = ["no entry", "data/1"]

    expected = {"good": {}, "hostile": {}}
    for name, path in good.items():
        # torch's weights_only loader has no FRAME opcode (protocol 4); that file is ours.
        expected["good"][name] = describe(load_state_dict(str(path), weights_only=name != "protocol4.bin"))
    for name, needles in hostile.items():
        try:
            torch.load(OUT / name, weights_only=True)
            torch_refuses = False
        except Exception:
            torch_refuses = True
        expected["hostile"][name] = {"error_names": needles, "torch_weights_only_refuses": torch_refuses}
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    write_fuzz_seeds(good)
    print(f"wrote {len(good)} good and {len(hostile)} hostile checkpoints to {OUT}")


if __name__ == "__main__":
    main()
