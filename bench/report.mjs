// Collects the rows bench/run.sh gathered into bench/results.json and prints them as a
// table with the ratios the issues set goals on.
//
//     node bench/report.mjs ROWS.jsonl NOTES.jsonl RESULTS.json [TOTAL_SECONDS]
//
// ROWS.jsonl: one JSON row per line ({engine, dtype, model, threads, median_s, ...}).
// NOTES.jsonl: {engine, dtype, model, status: "skipped"|"failed", reason} per row that
// did not run. RESULTS.json gets {"rows": [...], "skipped": [...], "failed": [...], ...}.

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';

const [rowsPath, notesPath, resultsPath, totalSeconds] = process.argv.slice(2);
const readLines = (path) =>
  existsSync(path)
    ? readFileSync(path, 'utf8').split('\n').filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l))
    : [];
// A script that prints several rows (bench/chromium.mjs) reports the ones it could not
// run inline, with a status: those join the notes.
const printed = readLines(rowsPath);
const rows = printed.filter((r) => !r.status);
const notes = [...readLines(notesPath), ...printed.filter((r) => r.status)];

const IMAGE = 'vit-b16-image';
const MEDSIGLIP = 'medsiglip-448-image';
const FIT = 'kpl-fit-n1000-d768-c5';
// Rows without a runtime (native engines, older results) count as Node's for the wasm engines.
const runtimeOf = (r) => r.runtime ?? (['kpl-wasm', 'ort-web'].includes(r.engine) ? 'node' : 'native');
// kpl-wasm's rows of its relaxed-SIMD builds are found only when asked for (`simd`).
const simdOf = (r) => r.simd ?? 'simd128';
const find = (engine, dtype, model, { runtime = null, threads = 1, simd = 'simd128' } = {}) =>
  rows.find((r) => r.engine === engine && r.dtype === dtype && r.model === model && (r.threads ?? 1) === threads &&
    (runtime == null ? runtimeOf(r) !== 'chromium' : runtimeOf(r) === runtime) && (engine !== 'kpl-wasm' || simdOf(r) === simd));
const absentNote = (engine, dtype, model, runtime, threads, simd = 'simd128') =>
  notes.find((n) => n.engine === engine && n.dtype === dtype && n.model === model && n.runtime === runtime && (n.threads ?? 1) === threads &&
    (engine !== 'kpl-wasm' || simdOf(n) === simd));
const order = ['kpl-native', 'kpl-wgpu', 'kpl-wasm', 'ort-native', 'ort-web', 'torch'];
const dtypeOrder = ['f32', 'f16', 'q8', 'q4', 'f64'];
const rank = (list, x) => (list.includes(x) ? list.indexOf(x) : list.length);
const models = [IMAGE, MEDSIGLIP];
const sortKey = (r) => [rank(models, r.model), r.runtime === 'chromium' ? 1 : 0, rank(order, r.engine), rank(dtypeOrder, r.dtype), r.threads ?? 1, simdOf(r) === 'relaxed' ? 1 : 0];
const cmp = (a, b) => {
  const ka = sortKey(a), kb = sortKey(b);
  for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] - kb[i];
  return 0;
};
rows.sort(cmp);

// Floating-point operations (2 per multiply-add) of one image through a CLIP vision tower
// (Hugging Face config.json, `vision_config` or the tower's own): patch embedding, per
// layer the q, k, v, out and MLP projections and both attention products, and the final
// projection. Layer norms, softmax and GELU are left out: this is a lower bound. null
// when the file is absent.
function imageFlops(configPath) {
  if (!existsSync(configPath)) return null;
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  const v = config.vision_config ?? config;
  const patches = (v.image_size / v.patch_size) ** 2, tokens = patches + 1, h = v.hidden_size;
  const patchEmbedding = patches * h * v.num_channels * v.patch_size ** 2;
  const perLayer = tokens * (4 * h * h + 2 * h * v.intermediate_size) + 2 * tokens * tokens * h;
  const projection = h * (v.projection_dim ?? 0);
  return 2 * (patchEmbedding + v.num_hidden_layers * perLayer + projection);
}

const mb = (bytes) => (bytes == null ? '' : `${(bytes / 2 ** 20).toFixed(0)} MiB`);
const time = (s) => (s >= 1 ? `${s.toFixed(3)} s` : `${(s * 1000).toFixed(1)} ms`);

// ------------------------------------------------------------------ table of rows
const table = [['model', 'engine', 'runtime', 'dtype', 'thr', 'median', 'cpu', 'runs', 'notes']];
for (const r of [...rows, ...notes].sort(cmp)) {
  if (r.status) {
    table.push([r.model, r.engine, runtimeOf(r), r.dtype, String(r.threads ?? 1), r.status.toUpperCase(), '', '', r.reason]);
    continue;
  }
  const extra = [];
  if (r.simd) extra.push(r.simd);
  if (r.peak_memory_bytes != null) extra.push(`wasm memory ${mb(r.peak_memory_bytes)}`);
  if (r.cos_vs_kpl_native != null) extra.push(`cos vs native ${r.cos_vs_kpl_native}`);
  if (r.cos_vs_kpl_f32 != null) extra.push(`cos vs kpl ${r.cos_vs_kpl_f32}`);
  if (r.model_bytes != null) extra.push(`model ${mb(r.model_bytes)}`);
  if (r.accuracy != null) extra.push(`acc ${r.accuracy}%`);
  if (r.gflops != null) extra.push(`${r.gflops} GFLOP/s`);
  // GEMM rows give a rate; image rows of a quantised model only name their kernel.
  if (r.kernel != null && r.gops != null) extra.push(`${r.kernel} (${r.isa}): ${r.gops.toFixed(1)} ${r.dtype === 'f32' ? 'GFLOP/s' : 'GOP/s'}`);
  else if (r.kernel != null) extra.push(`${r.kernel} kernel`);
  if (r.adapter) extra.push(`on ${r.adapter}`);
  const cpu = r.cpu_median_s == null ? '' : time(r.cpu_median_s);
  const model = r.random_weights ? `${r.model} (random)` : r.model;
  table.push([model, r.engine, runtimeOf(r), r.dtype, String(r.threads), time(r.median_s), cpu, String(r.runs_s?.length ?? ''), extra.join(', ')]);
}
const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
const line = (row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
console.log(`${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores; runtime "node": Node ${process.version}`);
console.log(line(table[0]));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const row of table.slice(1)) console.log(line(row));

// ------------------------------------------------------------------ ratios
const ratios = [];
const ratio = (label, a, b, goal, why = null) => {
  if (!a || !b) {
    if (why) {
      ratios.push({ label, value: null, goal: goal ?? null, note: `n/a (${why})` });
      return;
    }
    const [num, den] = label.split(': ')[1].split(' / ');
    const missing = [!a && num, !b && den].filter(Boolean);
    ratios.push({ label, value: null, goal: goal ?? null, note: `n/a (no ${missing.join(' or ')} row${missing.length > 1 ? 's' : ''})` });
    return;
  }
  const value = a.median_s / b.median_s;
  const cpu = a.cpu_median_s && b.cpu_median_s ? Math.round((a.cpu_median_s / b.cpu_median_s) * 1000) / 1000 : null;
  ratios.push({ label, value: Math.round(value * 1000) / 1000, cpu_value: cpu, goal: goal ?? null });
};
for (const dtype of ['f32', 'q8', 'q4']) {
  const kw = find('kpl-wasm', dtype, IMAGE), ow = find('ort-web', dtype, IMAGE);
  if (kw || ow || dtype !== 'q4') ratio(`image ${dtype}: kpl-wasm / ort-web`, kw, ow, { f32: 0.8, q8: 0.7 }[dtype] ?? null);
}
ratio('image f32: kpl-wgpu / kpl-native', find('kpl-wgpu', 'f32', IMAGE), find('kpl-native', 'f32', IMAGE));
for (const dtype of ['f32', 'q8']) {
  const kn = find('kpl-native', dtype, IMAGE), on = find('ort-native', dtype, IMAGE);
  ratio(`image ${dtype}: kpl-native / ort-native`, kn, on, 0.9);
}
// Native threads: our split and candle's, next to ONNX Runtime's intra-op threads.
for (const dtype of ['f32', 'q8']) {
  const kn2 = find('kpl-native', dtype, IMAGE, { threads: 2 });
  ratio(`image ${dtype}: kpl-native 2 thr / 1 thr`, kn2, find('kpl-native', dtype, IMAGE));
  ratio(`image ${dtype} 2 thr: kpl-native / ort-native`, kn2, find('ort-native', dtype, IMAGE, { threads: 2 }));
}
for (const dtype of ['f32', 'q8', 'q4']) {
  const kw = find('kpl-wasm', dtype, IMAGE), kn = find('kpl-native', dtype, IMAGE);
  if (kw && kn) ratio(`image ${dtype}: kpl-wasm / kpl-native`, kw, kn);
}
for (const dtype of ['f32', 'f64']) {
  ratio(`fit ${dtype}: kpl-native / torch`, find('kpl-native', dtype, FIT), find('torch', dtype, FIT), 0.5);
}
// The Chromium rows (bench/chromium.mjs): goals of issue #14 at 1 and 2 threads.
const chromium = { runtime: 'chromium' };
for (const dtype of ['f32', 'q8']) {
  const kw1 = find('kpl-wasm', dtype, IMAGE, chromium), ow1 = find('ort-web', dtype, IMAGE, chromium);
  const kw2 = find('kpl-wasm', dtype, IMAGE, { ...chromium, threads: 2 }), ow2 = find('ort-web', dtype, IMAGE, { ...chromium, threads: 2 });
  const kpl2Why = kw2 ? null : absentNote('kpl-wasm', dtype, IMAGE, 'chromium', 2)?.reason;
  ratio(`chromium ${dtype} 1 thr: kpl-wasm / ort-web`, kw1, ow1, dtype === 'q8' ? 0.7 : 0.8);
  ratio(`chromium ${dtype} 2 thr: kpl-wasm / ort-web`, kw2, ow2, 0.8, kpl2Why && `kpl-wasm 2 thr absent: ${kpl2Why}`);
  ratio(`chromium ${dtype}: kpl-wasm 2 thr / 1 thr`, kw2, kw1, 0.6, kpl2Why && 'kpl-wasm 2 thr absent');
  ratio(`chromium ${dtype}: ort-web 2 thr / 1 thr`, ow2, ow1);
  ratio(`chromium ${dtype}: kpl-wasm chromium / node`, kw1, find('kpl-wasm', dtype, IMAGE));
}
// The relaxed-SIMD builds (pkg/relaxed/, pkg/threads-relaxed/): what the app runs in a
// browser with relaxed SIMD (Chromium), so the goals apply to them too.
const relaxed = { simd: 'relaxed' };
for (const dtype of ['f32', 'q8']) {
  ratio(`node ${dtype}: kpl-wasm relaxed / simd128`, find('kpl-wasm', dtype, IMAGE, relaxed), find('kpl-wasm', dtype, IMAGE));
  // A Node with relaxed SIMD runs the relaxed build as the app would: the goal applies.
  ratio(`node ${dtype}: kpl-wasm relaxed / ort-web`, find('kpl-wasm', dtype, IMAGE, relaxed), find('ort-web', dtype, IMAGE), dtype === 'q8' ? 0.7 : 0.8);
  for (const threads of [1, 2]) {
    const at = { ...chromium, threads };
    const kr = find('kpl-wasm', dtype, IMAGE, { ...at, ...relaxed });
    const why = kr ? null : absentNote('kpl-wasm', dtype, IMAGE, 'chromium', threads, 'relaxed')?.reason;
    ratio(`chromium ${dtype} ${threads} thr: kpl-wasm relaxed / simd128`, kr, find('kpl-wasm', dtype, IMAGE, at), null, why && `relaxed absent: ${why}`);
    ratio(`chromium ${dtype} ${threads} thr: kpl-wasm relaxed / ort-web`, kr, find('ort-web', dtype, IMAGE, at),
      threads === 2 || dtype === 'f32' ? 0.8 : 0.7, why && `relaxed absent: ${why}`);
  }
  ratio(`chromium ${dtype}: kpl-wasm relaxed 2 thr / 1 thr`, find('kpl-wasm', dtype, IMAGE, { ...chromium, ...relaxed, threads: 2 }),
    find('kpl-wasm', dtype, IMAGE, { ...chromium, ...relaxed }), 0.6);
}
const wasmFit = rows.find((r) => r.engine === 'kpl-wasm' && r.model === FIT);
if (wasmFit) {
  ratio(`fit ${wasmFit.dtype}: kpl-wasm / kpl-native`, wasmFit, find('kpl-native', wasmFit.dtype, FIT));
}

console.log('\nratios of medians (same run; < 1 means kpl is faster; cpu: the same from CPU time, which');
console.log('ignores time spent waiting for a core on a shared machine; goals are judged on wall time)');
for (const r of ratios) {
  const goal = r.goal == null ? '' : `   goal <= ${r.goal}: ${r.value == null ? '-' : r.value <= r.goal ? 'met' : 'NOT met'}`;
  const value = r.value == null ? r.note : `${r.value.toFixed(3)}×${r.cpu_value == null ? '' : ` (cpu ${r.cpu_value.toFixed(3)}×)`}`;
  console.log(`  ${r.label.padEnd(40)} ${value}${goal}`);
}
// GEMM throughput against the arithmetic limit of the same instruction mix (peak-*).
for (const engine of ['kpl-native', 'kpl-wasm']) {
  const gemm = rows.filter((r) => r.engine === engine && r.model.startsWith('gemm-') && r.kernel);
  // The peaks are one thread's, taken from the one-thread run (its CPU clock is the
  // steadier); a row on N threads is compared with N times that.
  // An int8 kernel is compared with the peak of its own instructions where the run has
  // it (the relaxed build's Relaxed and Simd128 kernels), else with the best kernel's.
  const peak = (name, of, isa = null) => gemm.find((r) => r.kernel === name && (r.threads ?? 1) === 1 && simdOf(r) === simdOf(of) &&
    runtimeOf(r) === runtimeOf(of) && (isa == null || r.isa === isa));
  for (const r of gemm.filter((r) => !r.kernel.startsWith('peak-'))) {
    // The q8_0 × q8_0 kernel's limit is vpdpbusd's (4 products per lane); another int8
    // kernel's that of its own instructions where the run has it (the relaxed build's
    // Relaxed and Simd128), else the best kernel's (vpdpwssd's or vpmaddwd's).
    const limit = r.kernel.startsWith('f32-') ? peak('peak-f32', r)
      : (r.kernel === 'q8-int8x8' && peak('peak-int8x8', r)) || peak('peak-int8', r, r.isa) || peak('peak-int8', r);
    const unit = r.kernel.startsWith('f32-') ? 'GFLOP/s' : 'GOP/s';
    const threads = r.threads ?? 1;
    const times = threads > 1 ? `${threads} × ` : '';
    const share = limit
      ? ` = ${((100 * r.gops) / (threads * limit.gops)).toFixed(0)}% of ${times}${limit.kernel} (${limit.isa}) ${limit.gops.toFixed(1)}`
      : '';
    const build = engine === 'kpl-wasm' ? ` ${simdOf(r)}${runtimeOf(r) === 'chromium' ? ' chromium' : ''}` : '';
    console.log(`  ${`${r.model} ${engine}${build} ${threads} thr: ${r.kernel}`.padEnd(40)} ${r.gops.toFixed(1)} ${unit}${share}`);
  }
}
const absolute = [];
if (wasmFit) {
  const ms = wasmFit.median_s * 1000;
  absolute.push({ label: `fit ${wasmFit.dtype}: kpl-wasm (issue #14)`, value: `${ms.toFixed(1)} ms`, goal: '<= 1500 ms', met: ms <= 1500 });
}
// Issue #14 item 3: the peak wasm memory (after load and runs, static data and stack
// included) against the weights of the towers loaded, in the form held
// (held_weight_bytes = ClipModel.weightBytes: the f32 folder's two towers, a bundle's
// image encoder with q8_0 packed for the int8 GEMM), in Node and in Chromium.
for (const r of rows.filter((r) => r.engine === 'kpl-wasm' && r.model === IMAGE && r.peak_memory_bytes)) {
  const label = `${runtimeOf(r)} ${r.dtype}${(r.threads ?? 1) > 1 ? ` ${r.threads} thr` : ''}${r.simd === 'relaxed' ? ' relaxed' : ''}: kpl-wasm memory / weights held`;
  if (!r.held_weight_bytes) {
    absolute.push({ label, value: `n/a (row without held_weight_bytes; ${mb(r.peak_memory_bytes)})`, goal: '<= 1.25×', met: false });
    continue;
  }
  const m = r.peak_memory_bytes / r.held_weight_bytes;
  absolute.push({
    label,
    value: `${m.toFixed(2)}× (${mb(r.peak_memory_bytes)} / ${mb(r.held_weight_bytes)}; ${(r.peak_memory_bytes / r.weights_bytes).toFixed(2)}× the weight file, ${mb(r.weights_bytes)})`,
    goal: '<= 1.25×',
    met: m <= 1.25,
  });
}
// The native f32 goal against the machine's limit: the image's multiply-adds (from the
// random model's config.json) at the measured FMA peak (peak-f32, one thread) give the
// fastest any f32 engine could be here; the share of that peak each engine reaches end to
// end, and the share the goal asks for, show how far a goal is reachable at all.
const flops = imageFlops(join(dirname(rowsPath), 'vit-b16-random', 'config.json'));
const peakF32 = rows.find((r) => r.engine === 'kpl-native' && r.kernel === 'peak-f32' && (r.threads ?? 1) === 1);
const kplF32 = find('kpl-native', 'f32', IMAGE), ortF32 = find('ort-native', 'f32', IMAGE);
if (flops && peakF32 && kplF32 && ortF32) {
  const floor = flops / (peakF32.gops * 1e9);
  const share = (s) => `${((100 * floor) / s).toFixed(0)}%`;
  const goalShare = share(0.9 * ortF32.median_s);
  absolute.push({
    label: 'image f32: native floor at peak-f32',
    value: `${(flops / 1e9).toFixed(1)} GFLOP / ${peakF32.gops.toFixed(1)} GFLOP/s = ${time(floor)} = ${(floor / ortF32.median_s).toFixed(3)}× ort-native; ` +
      `end to end kpl-native ${share(kplF32.median_s)}, ort-native ${share(ortF32.median_s)} of peak; the 0.9× goal needs ${goalShare}`,
  });
}
for (const a of absolute) {
  if (a.goal == null) {
    console.log(`  ${a.label.padEnd(40)} ${a.value}`);
    continue;
  }
  console.log(`  ${a.label.padEnd(40)} ${a.value}   goal ${a.goal}: ${a.met ? 'met' : 'NOT met'}`);
}

const failed = notes.filter((n) => n.status === 'failed');
const skipped = notes.filter((n) => n.status === 'skipped');
const absent = notes.filter((n) => n.status === 'absent');
const results = {
  rows,
  skipped,
  absent,
  failed,
  ratios,
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? null, node: process.version, platform: `${os.platform()} ${os.arch()}` },
  date: new Date().toISOString(),
  total_s: totalSeconds ? Number(totalSeconds) : null,
};
writeFileSync(resultsPath, JSON.stringify(results, null, 1) + '\n');
console.log(`\nwrote ${resultsPath}: ${rows.length} rows, ${skipped.length} skipped, ${absent.length} absent, ${failed.length} failed`);
