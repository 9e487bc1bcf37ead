// KPL fit in WebAssembly (the web build in pkg/, run in Node, one thread): runKpl on
// the same synthetic n=1000, d=768, C=5 data as crates/kpl-core/examples/bench_fit.rs
// (bit-identical, see fit_data.mjs): retrieval (k = 8), pseudo-labels, greedy OT and
// 2000 proxy-learning iterations with the default parameters.
//
//     node bench/wasm_fit.mjs [--runs 5] [--pkg pkg]
//
// runKpl uses KplParams::default(), whose proxy-learning arithmetic is f64 (inputs
// f32), so the row's dtype is "f64", comparable with bench_fit's f64 row. Prints one
// JSON row: a warm-up, then the median of --runs runs; `accuracy` against the data's
// generating labels is a sanity check that the fit did its work.

import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, median, round, loadKplWasm, timeRuns } from './lib.mjs';
import { fitData, N, D, C } from './fit_data.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = parseArgs(process.argv.slice(2), { runs: '5', pkg: join(here, '..', 'pkg') });
const runs = Number(args.runs);
const K = 8, ITERS = 2000;

const { mod } = await loadKplWasm(resolve(args.pkg));
if (typeof mod.runKpl !== 'function') {
  console.error('wasm_fit: pkg/kpl.js has no runKpl export (rebuild with `make wasm`)');
  process.exit(3);
}
const { images, descriptions, classOf, labels } = fitData();
const fit = () => mod.runKpl(images, N, descriptions, classOf, C, K, ITERS);

const predictions = fit();
const { times, cpuTimes } = await timeRuns(runs, fit);
console.error(`# kpl-wasm fit: runs ${times.map((x) => x.toFixed(4)).join(', ')}`);
let correct = 0;
for (let i = 0; i < N; i++) correct += predictions[i] === labels[i] ? 1 : 0;

console.log(JSON.stringify({
  engine: 'kpl-wasm',
  runtime: 'node',
  simd: 'simd128',
  dtype: 'f64',
  model: `kpl-fit-n${N}-d${D}-c${C}`,
  threads: 1,
  median_s: round(median(times), 4),
  cpu_median_s: round(median(cpuTimes), 4),
  runs_s: times.map((x) => round(x, 4)),
  accuracy: round((100 * correct) / N, 1),
}));
