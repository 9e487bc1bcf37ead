// GEMM throughput in wasm (pkg/ in Node, one thread) on one shape: the int8 GEMMs
// (simd128; q8_0 and q4_K), candle's q8_0 and q4_K block kernels and its f32 gemm, next to the arithmetic limit
// of each instruction mix (kpl::nn::gemm::rates). One JSON row per kernel on stdout.
// --pkg pkg/relaxed: the relaxed-SIMD build (Node 20 needs --experimental-wasm-relaxed-simd).
//
//     node bench/wasm_gemm.mjs [--runs 5] [--shape 197x768x3072] [--pkg pkg]

import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, loadKplWasm } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = parseArgs(process.argv.slice(2), { runs: '5', shape: '197x768x3072', pkg: join(here, '..', 'pkg') });
const [m, k, n] = args.shape.split('x').map(Number);
const { mod } = await loadKplWasm(resolve(args.pkg));
for (const r of JSON.parse(mod.gemmRates(m, k, n, Number(args.runs)))) {
  const dtype = r.kernel.startsWith('q4') ? 'q4' : r.kernel.startsWith('q8') || r.kernel === 'peak-int8' ? 'q8' : 'f32';
  console.log(JSON.stringify({
    engine: 'kpl-wasm', runtime: 'node', simd: mod.simdBuild?.() ?? 'simd128', dtype, model: `gemm-${args.shape}`, threads: 1, kernel: r.kernel,
    isa: r.isa, median_s: r.median_s, gops: r.ops_per_s / 1e9, runs: Number(args.runs), clock: 'wall',
  }));
}
