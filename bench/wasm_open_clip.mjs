// kpl in WebAssembly (the web build in pkg/, run in Node, one thread) on the
// BiomedCLIP-sized random open_clip bundle that bench_open_clip packed: seconds per
// image of the timm ViT-B/16 image encoder and seconds per description of 256 and of 32
// tokens of the BERT text encoder (the report prints them in ms below 1 s).
//
//     node bench/wasm_open_clip.mjs [--dtype q8] [--runs 5] [--out bench/out] [--pkg pkg]
//
// Loads OUT/biomedclip-DTYPE/ with ClipModel.loadBundle (both encoders; the quantised
// layers with the page's default kernel) and times embedImage on OUT/image-224.png (PNG
// decoding and preprocessing included, a few ms) and embedText on
// OUT/biomedclip-text-256.txt and -32.txt (tokenizer included): a warm-up, then the
// median of --runs.

import { readFileSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, median, round, loadKplWasm, timeRuns } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = parseArgs(process.argv.slice(2), { dtype: 'q8', runs: '5', out: join(here, 'out'), pkg: join(here, '..', 'pkg') });
const runs = Number(args.runs);
const bundle = join(args.out, `biomedclip-${args.dtype}`);
const read = (name) => new Uint8Array(readFileSync(join(bundle, name)));

const { mod } = await loadKplWasm(resolve(args.pkg));
const t = performance.now();
const model = mod.ClipModel.loadBundle(readFileSync(join(bundle, 'manifest.json'), 'utf8'), read('image_encoder.gguf'), read('text_encoder.gguf'));
const loadS = (performance.now() - t) / 1000;
const png = new Uint8Array(readFileSync(join(args.out, 'image-224.png')));
const measured = { 'biomedclip-image': () => model.embedImage(png, 'image-224.png') };
for (const length of [256, 32]) {
  const text = readFileSync(join(args.out, `biomedclip-text-${length}.txt`), 'utf8');
  const tokens = model.tokenize(text).filter((id) => id !== 0).length;
  if (tokens !== length) throw new Error(`the description is ${tokens} tokens, not ${length}`);
  measured[`biomedclip-text-${length}`] = () => model.embedText(text);
}
for (const [name, fn] of Object.entries(measured)) {
  fn();
  const { times, cpuTimes } = await timeRuns(runs, fn);
  console.error(`# kpl-wasm ${args.dtype} ${name}: runs ${times.map((x) => x.toFixed(3)).join(', ')}`);
  console.log(JSON.stringify({
    engine: 'kpl-wasm',
    runtime: 'node',
    simd: 'simd128',
    dtype: args.dtype,
    model: name,
    threads: 1,
    median_s: round(median(times), 4),
    cpu_median_s: round(median(cpuTimes), 4),
    runs_s: times.map((x) => round(x, 4)),
    load_s: round(loadS, 3),
  }));
}
model.free();
