// ONNX Runtime Web (npm `onnxruntime-web`, wasm backend with SIMD, one thread) in Node:
// timing of the random ViT-B/16 image encoder exported by bench/export_onnx.py.
//
//     node bench/ort_web.mjs --dtype f32|q8 [--runs 5] [--out bench/out]
//
// Input: OUT/pixels-224.f32 (the preprocessed pixels bench_image wrote). Times
// session.run on one image: a warm-up, then the median of --runs runs. Prints one JSON
// row, with the cosine against kpl-native's f32 embedding as a same-weights check.
// onnxruntime-web is a devDependency of bench/package.json (`npm ci --prefix bench`).

import { readFileSync, existsSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, median, cosine, round, timeRuns } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = parseArgs(process.argv.slice(2), { dtype: null, runs: '5', out: join(here, 'out') });
if (!['f32', 'q8'].includes(args.dtype)) {
  console.error('ort_web: --dtype f32|q8 is required');
  process.exit(2);
}
const runs = Number(args.runs);

const ort = await import('onnxruntime-web');
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
// SIMD: 1.30 ships only SIMD wasm binaries (ort-wasm-simd-threaded*.wasm); older releases had a switch.
if ('simd' in ort.env.wasm) ort.env.wasm.simd = true;
ort.env.logLevel = 'error';

const modelPath = join(args.out, 'onnx', `vision-${args.dtype}.onnx`);
const pixels = new Float32Array(new Uint8Array(readFileSync(join(args.out, 'pixels-224.f32'))).buffer);
const t = performance.now();
const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(modelPath)), {
  executionProviders: ['wasm'],
  graphOptimizationLevel: 'all',
});
const loadS = (performance.now() - t) / 1000;
const feed = { pixel_values: new ort.Tensor('float32', pixels, [1, 3, 224, 224]) };

const first = await session.run(feed);
const embedding = Array.from(first.image_embeds.data);
const { times, cpuTimes } = await timeRuns(runs, () => session.run(feed));
console.error(`# ort-web ${args.dtype}: runs ${times.map((x) => x.toFixed(3)).join(', ')}`);

const row = {
  engine: 'ort-web',
  runtime: 'node',
  dtype: args.dtype,
  model: 'vit-b16-image',
  threads: 1,
  median_s: round(median(times), 4),
  cpu_median_s: round(median(cpuTimes), 4),
  runs_s: times.map((x) => round(x, 4)),
  load_s: round(loadS, 3),
  onnxruntime_web: ort.env.versions?.web ?? null,
  backend: 'wasm (SIMD build), numThreads 1',
  model_bytes: statSync(modelPath).size,
  process_rss_bytes: process.memoryUsage().rss,
};
const reference = join(args.out, 'embedding-kpl-native-f32.json');
if (existsSync(reference)) row.cos_vs_kpl_f32 = round(cosine(embedding, JSON.parse(readFileSync(reference, 'utf8'))), 6);
console.log(JSON.stringify(row));
await session.release();
