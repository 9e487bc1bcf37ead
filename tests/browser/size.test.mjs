// What a first visit downloads besides the model: the wasm module and all the app's
// JavaScript, gzipped at level 9 (what a server with static compression would send).
// Budget: 2.25 MiB. It was 2 MiB until the JPEG-LS decoder, SentencePiece (prost), the
// SigLIP family and the page's stored-models, messages and DICOM-window modules took the
// total to 2.07 MiB (2026-12-02); raised once, on purpose, rather than dropping features.
// Raised again to 2.3 MiB on 2026-12-03: the f32 GEMM took it to 99.96 %, and the
// page's threads setting, the worker's choice of build and its notes (+2.9 kB of
// JavaScript) to 100.1 %. A cross-origin-isolated page downloads the threaded build
// (pkg/threads/) instead of pkg/: its own budget, 2.4 MiB, for what threads add (std
// rebuilt with atomics, the global simd128, wasm-bindgen-rayon and its worker module:
// +3 %).
// pkg/ raised to 2.4 MiB on 2026-12-03 (later): the own CPU kernels of issue #14 (fused
// attention, layer norm, the q4_K int8 GEMM, the GEMM epilogues) took it to 2.314 MiB
// (100.6 % of 2.3). Both builds now share 2.4 MiB; the threaded one is at 99.8 %.
// The next growth should be paid by size work (e.g. a wasm-only release profile with
// LTO and one codegen unit: not measured yet), not by a third raise.
// The relaxed-SIMD twins (pkg/relaxed/, pkg/threads-relaxed/: what a browser with relaxed
// SIMD downloads instead, worker.js) have the same 2.4 MiB budget.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

import { REPO } from './helpers.mjs';

const MIB = 1024 * 1024;

for (const [pkg, budget, extra] of [
  ['pkg', 2.4, []], ['pkg/threads', 2.4, ['workerHelpers.js']],
  ['pkg/relaxed', 2.4, []], ['pkg/threads-relaxed', 2.4, ['workerHelpers.js']],
]) {
  test(`${pkg}/kpl_bg.wasm + ${pkg}/kpl.js${extra.map((f) => ` + ${pkg}/${f}`).join('')} + www/*.js gzip -9 to at most ${budget} MiB`, () => {
    const files = [
      `${pkg}/kpl_bg.wasm`,
      `${pkg}/kpl.js`,
      ...extra.map((f) => `${pkg}/${f}`),
      ...fs.readdirSync(path.join(REPO, 'www')).filter((f) => f.endsWith('.js')).sort().map((f) => `www/${f}`),
    ];
    let raw = 0;
    let gz = 0;
    const rows = [];
    for (const f of files) {
      const bytes = fs.readFileSync(path.join(REPO, f));
      const packed = zlib.gzipSync(bytes, { level: 9 }).length;
      raw += bytes.length;
      gz += packed;
      rows.push(`${f} ${bytes.length} → ${packed}`);
    }
    console.log(`${rows.join('; ')}`);
    console.log(`total ${raw} bytes → gzip -9 ${gz} bytes (${(gz / 1e6).toFixed(3)} MB, ${(gz / (budget * MIB) * 100).toFixed(1)} % of ${budget} MiB)`);
    assert.ok(files.length >= 7, files.join(', '));
    assert.ok(gz <= budget * MIB, `${gz} bytes gzipped > ${budget} MiB`);
  });
}
