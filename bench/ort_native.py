#!/usr/bin/env python3
"""ONNX Runtime (PyPI `onnxruntime`, CPU, --threads intra-op threads, default 1) timing
of the random ViT-B/16 image encoder exported by bench/export_onnx.py.

    python bench/ort_native.py --dtype f32|q8 [--threads 1] [--runs 5] [--out bench/out]

Input: OUT/pixels-224.f32, the preprocessed pixels `bench_image` wrote (so the peers see
the very same tensor). Times InferenceSession.run on one image: a warm-up, then the
median of --runs runs. Also reports the cosine between ONNX Runtime's embedding and
kpl-native's f32 one (OUT/embedding-kpl-native-f32.json): ~1 shows that both run the
same weights. Prints one JSON row.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", choices=["f32", "q8"], required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(here, "out"))
    args = ap.parse_args()

    model_path = os.path.join(args.out, "onnx", "vision-%s.onnx" % args.dtype)
    pixels = np.fromfile(os.path.join(args.out, "pixels-224.f32"), dtype="<f4").reshape(1, 3, 224, 224)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t = time.perf_counter()
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t

    feed = {"pixel_values": pixels}
    embedding = session.run(None, feed)[0][0]
    times, cpu_times = [], []
    for _ in range(args.runs):
        c = time.process_time()
        t = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    print("# ort-native %s: runs %s" % (args.dtype, ["%.3f" % x for x in times]), file=sys.stderr)

    row = {"engine": "ort-native", "dtype": args.dtype, "model": "vit-b16-image", "threads": args.threads,
           "median_s": round(statistics.median(times), 4),
           # With more threads the process's CPU time adds them up: only one thread's means time.
           "cpu_median_s": round(statistics.median(cpu_times), 4) if args.threads == 1 else None,
           "runs_s": [round(x, 4) for x in times],
           "load_s": round(load_s, 3), "onnxruntime": ort.__version__,
           "model_bytes": os.path.getsize(model_path)}
    reference = os.path.join(args.out, "embedding-kpl-native-f32.json")
    if os.path.exists(reference):
        with open(reference) as f:
            row["cos_vs_kpl_f32"] = round(cosine(embedding.tolist(), json.load(f)), 6)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
