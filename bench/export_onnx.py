#!/usr/bin/env python3
"""Exports the random ViT-B/16 vision tower that `bench_image` wrote to ONNX, for the
ONNX Runtime peers of `make bench` (ort-native, ort-web).

    python bench/export_onnx.py [--model bench/out/vit-b16-random] [--out bench/out/onnx]

Builds transformers' CLIPVisionModelWithProjection from the folder's config.json,
loads the SAME model.safetensors weights (vision_model.* and visual_projection.*;
every tensor must be used), and writes
  OUT/vision-f32.onnx  torch.onnx.export(dynamo=False, opset 17); input pixel_values
                       [batch, 3, 224, 224], output image_embeds [batch, 512]
  OUT/vision-q8.onnx   onnxruntime.quantization.quantize_dynamic(weight_type=QUInt8),
                       ONNX Runtime's dynamic int8 (what transformers.js ships by default)
  OUT/stamp.json       what they were made from; a later run with the same weights reuses them.
Needs torch, transformers, onnx and onnxruntime (never in CI: `make bench` skips the
ONNX Runtime rows without them).
"""
import argparse
import hashlib
import json
import os
import sys
import time


def stamp_of(model_dir):
    st = os.stat(os.path.join(model_dir, "model.safetensors"))
    with open(os.path.join(model_dir, "config.json"), "rb") as f:
        config_sha = hashlib.sha256(f.read()).hexdigest()
    return {"config_sha256": config_sha, "weights_bytes": st.st_size, "weights_mtime_ns": st.st_mtime_ns,
            "opset": 17, "q8": "quantize_dynamic QUInt8"}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(here, "out", "vit-b16-random"))
    ap.add_argument("--out", default=os.path.join(here, "out", "onnx"))
    ap.add_argument("--force", action="store_true", help="export even when the stamp matches")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    f32_path = os.path.join(args.out, "vision-f32.onnx")
    q8_path = os.path.join(args.out, "vision-q8.onnx")
    stamp_path = os.path.join(args.out, "stamp.json")
    stamp = stamp_of(args.model)
    if not args.force and all(os.path.exists(p) for p in (f32_path, q8_path, stamp_path)):
        with open(stamp_path) as f:
            if json.load(f) == stamp:
                print("# export_onnx: reusing %s (same weights)" % args.out, file=sys.stderr)
                return

    import torch
    from safetensors.torch import load_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    t0 = time.time()
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    vision = dict(config["vision_config"])
    vision["projection_dim"] = config.get("projection_dim", 512)
    vision_config = CLIPVisionConfig(**vision)
    vision_config._attn_implementation = "eager"
    model = CLIPVisionModelWithProjection(vision_config).eval()

    weights = load_file(os.path.join(args.model, "model.safetensors"))
    state = {k: v for k, v in weights.items() if k.startswith(("vision_model.", "visual_projection."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # position_ids is a buffer transformers builds itself (absent from published checkpoints too).
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        sys.exit("export_onnx: weights do not match the model: missing %s, unexpected %s" % (missing, unexpected))

    class ImageEmbeds(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).image_embeds

    size = vision_config.image_size
    example = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(
            ImageEmbeds(model), (example,), f32_path, dynamo=False, opset_version=17,
            input_names=["pixel_values"], output_names=["image_embeds"],
            dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
        )
    t1 = time.time()

    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(f32_path, q8_path, weight_type=QuantType.QUInt8)
    t2 = time.time()

    with open(stamp_path, "w") as f:
        json.dump(stamp, f)
    print("# export_onnx: %s (%.0f MB) in %.1f s, %s (%.0f MB) in %.1f s" % (
        f32_path, os.path.getsize(f32_path) / 1e6, t1 - t0, q8_path, os.path.getsize(q8_path) / 1e6, t2 - t1),
        file=sys.stderr)


if __name__ == "__main__":
    main()
