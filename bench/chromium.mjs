// The browser rows of `make bench`: kpl-wasm and ONNX Runtime Web in headless Chromium,
// on a cross-origin-isolated page (COOP same-origin + COEP require-corp, as the app's),
// on the random ViT-B/16 and the ONNX export the Node rows use.
//
//     node bench/chromium.mjs [--runs 5] [--out bench/out] [--pkg pkg] [--dtypes "f32 q8 q4"]
//                             [--engines "kpl-wasm ort-web"] [--simd "simd128 relaxed"]
//                             [--gemm 197x768x3072] [--threads "1 2"]
//
// First, per SIMD build at 1 thread (pkg/, pkg/relaxed/), the GEMM rates on the --gemm
// shape (kpl::nn::gemm::rates, as bench/wasm_gemm.mjs in Node; '' skips them): one row
// per kernel, model "gemm-SHAPE", with `kernel`, `isa` and `gops`.
//
// Rows (one JSON line each, runtime "chromium"): kpl-wasm per SIMD build and dtype at 1
// thread (pkg/, or its relaxed-SIMD twin pkg/relaxed/, on the page's thread) and at 2
// threads (the threaded build, pkg/threads/ or pkg/threads-relaxed/, in a module worker
// with a pool of 2 Web Workers, as the app runs it; printed {"status": "absent", ...}
// when that build is not there),
// ort-web per dtype at 1 and 2 threads (its wasm backend, SIMD build, numThreads; f32 and q8
// only: the ONNX export has no q4_K counterpart). A row that
// fails is printed with "status": "failed" and the others still run. Each row runs
// in a fresh tab (a fresh wasm instance: kpl-wasm's peak_memory_bytes is its linear
// memory after loading and running, which never shrinks). Times are the page's
// performance.now() around each call: a warm-up, then --runs runs. cpu_median_s is the
// CPU time (user + system, /proc) of every Chromium process during each call: on a
// loaded machine the steadier figure; for ONNX Runtime at 2 threads it adds up both.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, median, cosine, round, safetensorsBytes } from './lib.mjs';
import { launchBrowser } from '../tests/browser/helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = parseArgs(process.argv.slice(2), {
  runs: '5', out: path.join(here, 'out'), pkg: path.join(here, '..', 'pkg'), dtypes: 'f32 q8 q4', simd: 'simd128 relaxed', engines: 'kpl-wasm ort-web', gemm: '197x768x3072', threads: '1 2',
});
const runs = Number(args.runs);
const dtypes = args.dtypes.split(/\s+/).filter(Boolean);
const engines = args.engines.split(/\s+/).filter(Boolean);
const IMAGE = 'vit-b16-image';
const simds = args.simd.split(/\s+/).filter(Boolean);
const threadCounts = args.threads.split(/\s+/).filter(Boolean).map(Number);
/** The folder under pkg/ of kpl's build for a SIMD and a thread count. */
const buildDir = (simd, threads) => [threads > 1 ? 'threads' : '', simd === 'relaxed' ? 'relaxed' : ''].filter(Boolean).join('-');
const MAKE_TARGET = { '': 'wasm-single', threads: 'wasm-threads', relaxed: 'wasm-relaxed', 'threads-relaxed': 'wasm-threads-relaxed' };

// ------------------------------------------------------------------ static server
const ROOTS = {
  '/bench/': path.join(here, 'chromium'),
  '/pkg/': path.resolve(args.pkg),
  '/ort/': path.join(here, 'node_modules', 'onnxruntime-web', 'dist'),
  '/model/': path.resolve(args.out),
};
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png' };

function serve(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const prefix = Object.keys(ROOTS).find((p) => url.pathname.startsWith(p));
  const file = prefix && path.join(ROOTS[prefix], decodeURIComponent(url.pathname.slice(prefix.length)));
  if (!file || !file.startsWith(ROOTS[prefix] + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, {
    'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    'Content-Length': fs.statSync(file).size,
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  });
  fs.createReadStream(file).pipe(res);
}

const server = http.createServer(serve);
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}`;

// ------------------------------------------------------------------ rows
const nativeEmbedding = (dtype) => {
  try {
    return JSON.parse(fs.readFileSync(path.join(args.out, `embedding-kpl-native-${dtype}.json`), 'utf8'));
  } catch {
    return null;
  }
};

/** The image encoder's weight bytes for a dtype: the whole file, and its vision part. */
function weightBytes(dtype) {
  if (dtype === 'f32') {
    const file = path.join(args.out, 'vit-b16-random', 'model.safetensors');
    const header = Buffer.alloc(8);
    const fd = fs.openSync(file, 'r');
    fs.readSync(fd, header, 0, 8, 0);
    const n = Number(header.readBigUInt64LE(0));
    const head = Buffer.alloc(8 + n);
    fs.readSync(fd, head, 0, 8 + n, 0);
    fs.closeSync(fd);
    return { weights_bytes: fs.statSync(file).size, vision_weights_bytes: safetensorsBytes(head, ['vision_model.', 'visual_projection.']) };
  }
  const size = fs.statSync(path.join(args.out, `vit-b16-${dtype}`, 'image_encoder.gguf')).size;
  return { weights_bytes: size, vision_weights_bytes: size };
}

/** CPU seconds used so far by every descendant of this process (Chromium's processes). */
function chromiumCpuSeconds() {
  const children = new Map();
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      children.set(Number(pid), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // the process ended meanwhile
    }
  }
  let ticks = 0;
  const todo = [process.pid];
  while (todo.length) {
    const parent = todo.pop();
    for (const [pid, c] of children) {
      if (c.ppid === parent) {
        ticks += c.ticks;
        todo.push(pid);
      }
    }
  }
  return ticks / 100; // USER_HZ
}

const browser = await launchBrowser({ webgpu: false });
let failed = 0;

async function inPage(name, spec) {
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(`${base}/bench/index.html`);
    await page.locator('body[data-ready="true"]').waitFor({ state: 'attached', timeout: 60000 });
    if (!(await page.evaluate(() => window.bench.isolated()))) throw new Error('the page is not cross-origin isolated');
    await page.evaluate(([n, s]) => window.bench.setup(n, s), [name, spec]);
    const times = [];
    const cpuTimes = [];
    for (let i = 0; i < runs; i++) {
      const c = chromiumCpuSeconds();
      times.push(await page.evaluate(() => window.bench.run()));
      cpuTimes.push(chromiumCpuSeconds() - c);
    }
    return { times, cpuTimes, ...(await page.evaluate(() => window.bench.finish())) };
  } catch (e) {
    throw new Error(`${e.message.split('\n')[0]}${errors.length ? `; page errors: ${errors.join('; ')}` : ''}`);
  } finally {
    await page.close();
  }
}

function emit(row) {
  console.log(JSON.stringify({ runtime: 'chromium', model: IMAGE, ...row }));
}

async function measure(head, fn) {
  try {
    emit({ ...head, ...(await fn()) });
  } catch (e) {
    failed++;
    console.error(`# chromium ${head.engine} ${head.dtype} ${head.threads} thr: ${e.message}`);
    emit({ ...head, status: 'failed', reason: e.message.slice(0, 400) });
  }
}

const timing = (r) => ({ median_s: round(median(r.times), 4), cpu_median_s: round(median(r.cpuTimes), 4), runs_s: r.times.map((x) => round(x, 4)) });

for (const simd of engines.includes('kpl-wasm') && args.gemm ? simds : []) {
  const dir = buildDir(simd, 1);
  const head = { engine: 'kpl-wasm', dtype: 'q8', model: `gemm-${args.gemm}`, threads: 1, simd };
  if (!fs.existsSync(path.join(args.pkg, dir, 'kpl_bg.wasm'))) {
    emit({ ...head, status: 'absent', reason: `${path.join(args.pkg, dir)}/ is missing (make ${MAKE_TARGET[dir]})` });
    continue;
  }
  try {
    const page = await browser.context.newPage();
    try {
      await page.goto(`${base}/bench/index.html`);
      await page.locator('body[data-ready="true"]').waitFor({ state: 'attached', timeout: 60000 });
      const [m, k, n] = args.gemm.split('x').map(Number);
      const rates = await page.evaluate((spec) => window.bench.gemmRates(spec), { simd, m, k, n, runs });
      for (const r of rates) {
        const dtype = r.kernel.startsWith('q4') ? 'q4' : r.kernel.startsWith('q8') || r.kernel === 'peak-int8' ? 'q8' : 'f32';
        emit({ ...head, dtype, kernel: r.kernel, isa: r.isa, median_s: r.median_s, gops: round(r.ops_per_s / 1e9, 2), runs, clock: 'wall' });
        console.error(`# chromium gemm ${simd} ${r.kernel} (${r.isa}): ${(r.ops_per_s / 1e9).toFixed(2)} G/s`);
      }
    } finally {
      await page.close();
    }
  } catch (e) {
    failed++;
    emit({ ...head, status: 'failed', reason: e.message.slice(0, 400) });
  }
}

for (const simd of engines.includes('kpl-wasm') ? simds : []) for (const dtype of dtypes) {
  for (const threads of threadCounts) {
    const dir = buildDir(simd, threads);
    if (!fs.existsSync(path.join(args.pkg, dir, 'kpl_bg.wasm'))) {
      const reason = `${path.join(args.pkg, dir)}/ is missing: kpl's ${simd} build for ${threads} thread(s) is not built (make ${MAKE_TARGET[dir]})`;
      emit({ engine: 'kpl-wasm', dtype, threads, simd, status: 'absent', reason });
      continue;
    }
    await measure({ engine: 'kpl-wasm', dtype, threads, simd }, async () => {
      const r = await inPage('kpl', { dtype, threads, simd });
      console.error(`# chromium kpl-wasm ${simd} ${dtype} ${threads} thr: runs ${r.times.map((x) => x.toFixed(3)).join(', ')}`);
      const reference = nativeEmbedding(dtype);
      return {
        ...timing(r),
        build: `pkg/${dir}`,
        load_s: round(r.load_s, 3),
        peak_memory_bytes: r.peak_memory_bytes,
        peak_memory_source: 'wasm-memory',
        memory_after_load_bytes: r.memory_after_load_bytes,
        held_weight_bytes: r.held_weight_bytes,
        ...weightBytes(dtype),
        ...(reference ? { cos_vs_kpl_native: round(cosine(r.embedding, reference), 6) } : {}),
      };
    });
  }
}
for (const dtype of engines.includes('ort-web') ? dtypes.filter((d) => d !== 'q4') : []) {
  for (const threads of threadCounts) {
    if (!fs.existsSync(ROOTS['/ort/'])) {
      emit({ engine: 'ort-web', dtype, threads, status: 'skipped', reason: 'onnxruntime-web is not installed (npm ci --prefix bench)' });
      continue;
    }
    if (!fs.existsSync(path.join(args.out, 'onnx', `vision-${dtype}.onnx`))) {
      emit({ engine: 'ort-web', dtype, threads, status: 'skipped', reason: `no ONNX export (${path.join(args.out, 'onnx', `vision-${dtype}.onnx`)}; run.sh makes it)` });
      continue;
    }
    await measure({ engine: 'ort-web', dtype, threads }, async () => {
      const r = await inPage('ort', { dtype, threads });
      console.error(`# chromium ort-web ${dtype} ${threads} thr: runs ${r.times.map((x) => x.toFixed(3)).join(', ')}`);
      const reference = nativeEmbedding('f32');
      return {
        ...timing(r),
        load_s: round(r.load_s, 3),
        onnxruntime_web: r.version,
        backend: `wasm (SIMD build), numThreads ${threads}`,
        model_bytes: fs.statSync(path.join(args.out, 'onnx', `vision-${dtype}.onnx`)).size,
        ...(reference ? { cos_vs_kpl_f32: round(cosine(r.embedding, reference), 6) } : {}),
      };
    });
  }
}

await browser.close();
server.close();
if (failed) console.error(`# chromium: ${failed} row(s) failed`);
