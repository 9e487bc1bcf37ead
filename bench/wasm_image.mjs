// kpl in WebAssembly (the web build in pkg/, run in Node, one thread): seconds per image
// of the image encoder on the random model that bench_image wrote: --model vit-b16
// (default) or medsiglip-448 (its q8/q4 bundle only: the f32 folder is 1.7 GB).
//
//     node bench/wasm_image.mjs [--model vit-b16] [--dtype f32] [--runs 5] [--out bench/out] [--pkg pkg] [--kernel int8x8|int8|dequantize|blocks] [--f32-kernel packed] [--attention fused]
//
// --kernel: how quantised layers compute (setQuantKernel: int8, int8x8, dequantize or
// blocks); set before loading, so q8_0 weights are held as that kernel reads them. Unset:
// the wasm's own default, as the app runs it (int8; int8x8 in the relaxed build where the
// engine's relaxed dot is vpdpbusd's, e.g. Node 22+ on an AVX-VNNI CPU, not Node 20); the
// row's `kernel` names the one that ran (quantKernel()).
// --f32-kernel: how dense f32 layers compute (setF32Kernel: packed, the default, our
// f32 GEMM, or candle's gemm), also set before loading. --attention: fused (default, our
// kernel) or candle (setAttentionKernel).
//
// Loads OUT/vit-b16-random/ with ClipModel.load(config, weights, tokenizer, preprocessor)
// (a quantised dtype: the bundle OUT/MODEL-DTYPE/ with ClipModel.loadBundle) and times
// ClipModel.embedImage on OUT/image-S.png (S the model's input size): a warm-up, then the median of
// --runs runs. embedImage takes the PNG's bytes, so this includes PNG decoding and
// preprocessing (a few ms; the native row times the encoder on ready pixels).
// peak_memory_bytes is the wasm instance's linear memory after loading and running (wasm
// memory never shrinks, so this is its peak, static data and stack included);
// held_weight_bytes the weights of the towers loaded (f32: both towers, the page needs
// the text tower for labels; a bundle: the image encoder) in the form the model holds
// them (ClipModel.weightBytes: f32, f16 tables, packed q8_0 panels, q4_K blocks), the
// denominator of the memory goal; weights_bytes is the file (model.safetensors or
// image_encoder.gguf), vision_weights_bytes its image-encoder part.

import { readFileSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, median, cosine, round, loadKplWasm, safetensorsBytes, timeRuns } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = parseArgs(process.argv.slice(2), {
  model: 'vit-b16', dtype: 'f32', runs: '5', out: join(here, 'out'), pkg: join(here, '..', 'pkg'), kernel: '',
  'f32-kernel': 'packed', attention: 'fused',
});
const runs = Number(args.runs);

/** The model files for a dtype. A quantised bundle adds its branch here. */
function modelFiles(dtype) {
  const dir = join(args.out, `${args.model}-random`);
  if (dtype === 'f32') {
    if (args.model !== 'vit-b16') throw new Error(`--model ${args.model}: only its quantised bundles run here`);
    const read = (name) => new Uint8Array(readFileSync(join(dir, name)));
    return {
      config: read('config.json'),
      weights: read('model.safetensors'),
      tokenizer: read('tokenizer.json'),
      preprocessor: read('preprocessor_config.json'),
    };
  }
  // q8 / q4: the bundle bench_image packed beside the random folder; image encoder only.
  const bundle = join(args.out, `${args.model}-${dtype}`);
  return {
    manifest: readFileSync(join(bundle, 'manifest.json'), 'utf8'),
    weights: new Uint8Array(readFileSync(join(bundle, 'image_encoder.gguf'))),
  };
}

const files = modelFiles(args.dtype);
const weightsBytes = files.weights.byteLength;
const visionBytes = files.manifest ? weightsBytes : safetensorsBytes(files.weights, ['vision_model.', 'visual_projection.']);
const { mod, exports } = await loadKplWasm(resolve(args.pkg));
const memoryBytes = () => (exports.memory ? exports.memory.buffer.byteLength : null);

if (args.kernel) mod.setQuantKernel(args.kernel);
const quantKernel = mod.quantKernel();
mod.setF32Kernel(args['f32-kernel']);
mod.setAttentionKernel(args.attention);
const t = performance.now();
const model = files.manifest
  ? mod.ClipModel.loadBundle(files.manifest, files.weights, null)
  : mod.ClipModel.load(files.config, files.weights, files.tokenizer, files.preprocessor);
const loadS = (performance.now() - t) / 1000;
delete files.weights; // the JS copy can go; the wasm instance has its own
const memoryAfterLoad = memoryBytes();

const pngName = `image-${model.imageSize}.png`;
const png = new Uint8Array(readFileSync(join(args.out, pngName)));
const embedding = model.embedImage(png, pngName);
const { times, cpuTimes } = await timeRuns(runs, () => model.embedImage(png, pngName));
console.error(`# kpl-wasm ${args.dtype}: runs ${times.map((x) => x.toFixed(3)).join(', ')}`);

const row = {
  engine: 'kpl-wasm',
  runtime: 'node',
  simd: mod.simdBuild?.() ?? 'simd128',
  dtype: args.dtype,
  model: `${args.model}-image`,
  random_weights: true,
  threads: 1,
  kernel: files.manifest ? quantKernel : args['f32-kernel'],
  attention: args.attention,
  median_s: round(median(times), 4),
  cpu_median_s: round(median(cpuTimes), 4),
  runs_s: times.map((x) => round(x, 4)),
  load_s: round(loadS, 3),
  peak_memory_bytes: memoryBytes() ?? process.memoryUsage().rss,
  peak_memory_source: exports.memory ? 'wasm-memory' : 'process-rss',
  memory_after_load_bytes: memoryAfterLoad,
  held_weight_bytes: model.weightBytes,
  weights_bytes: weightsBytes,
  vision_weights_bytes: visionBytes,
};
try {
  const tag = args.model === 'vit-b16' ? '' : `${args.model}-`;
  const reference = JSON.parse(readFileSync(join(args.out, `embedding-kpl-native-${tag}${args.dtype}.json`), 'utf8'));
  row.cos_vs_kpl_native = round(cosine(Array.from(embedding), reference), 6);
} catch {
  // no native embedding to compare with
}
console.log(JSON.stringify(row));
model.free();
