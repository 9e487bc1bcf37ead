// The relaxed-SIMD builds in Chromium (issue #14 item 1): pkg/relaxed/ and
// pkg/threads-relaxed/, the crate compiled with +relaxed-simd, whose GEMMs use
// `i32x4.relaxed_dot_i8x16_i7x16_add_s` (int8) and `f32x4.relaxed_madd` (f32).
//
// - The GEMM kernels of all four builds (simd128 and relaxed, single and threaded on 2
//   threads) against the numpy references on the fixtures' odd shapes: q8 bit for bit,
//   by default (simd128's kernel in every build: the relaxed one is slower in V8,
//   bench/README.md) and through each kernel of the build (the relaxed builds' relaxed
//   kernel is exact by construction, src/nn/gemm/q8_relaxed.rs), so the builds are
//   bit-identical; the q8_0 × q8_0 GEMM (q8x8) through each kernel of the build bit for bit to
//   numpy's `y_q8x8`, its relaxed kernel offered only where the engine's relaxed dot reads the
//   weights' u8 exactly (vpdpbusd: Chromium on AVX-VNNI CPUs) and relaxed_madd fuses, and
//   reported unavailable, not used, in Node 20 (whose relaxed dot saturates); q4 bit for bit (every build runs the simd128 q4 kernel); f32 bit for bit to `y` (multiply, then add) for the simd128 builds and,
//   for the relaxed ones, to `y_fma` (fused, as the native AVX2 / AVX-512 kernels)
//   where the engine fuses `relaxed_madd`, else to `y`.
// - The q8x8 GEMM's activation quantiser of each kernel of every build (the relaxed
//   kernel's is simd128 code) byte for byte a JavaScript `quantize_row_q8_0` on ties,
//   NaN, ±∞, saturation and subnormal scales.
// - The worker's choice: relaxed where Chromium validates the probe (simd-probe.js),
//   simd128 when the worker's URL asks for it (`simd=simd128`, the page's `?simd=`),
//   when the probe says no (an engine without relaxed SIMD: Node 20 without its flag is
//   one, and a worker given a probe answering no fetches no relaxed build), and when
//   the relaxed build cannot start (with the reason in `simdNote`). The embeddings of
//   the two builds agree within the parity tolerance, with threads and without, on each
//   quantised kernel (int8, int8x8); the relaxed build's q8 default is one of them bit
//   for bit (int8x8 where its relaxed kernel is offered).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, bundleServers, embedWithWorkers, collectErrors, maxAbsDiff, REPO } from './helpers.mjs';
import { q8Cases, f32Cases, q4Cases, differingBits } from './gemm-cases.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';
const TASK = 'chest-xray-pneumonia';
const IMAGES = ['photo_120x100.jpg', 'rgb_97x61.png'];
const TEXTS = ['a chest x-ray', 'pneumonia'];
/** The builds: folder under pkg/, threads, SIMD. */
const BUILDS = [['', 1, 'simd128'], ['threads', 2, 'simd128'], ['relaxed', 1, 'relaxed'], ['threads-relaxed', 2, 'relaxed']];
/**
 * The largest |difference| allowed between the relaxed and the simd128 build's
 * embeddings: f32, the parity tolerance of wasm against native (the relaxed build's
 * fused products are native's); q8, as between the single and threaded builds
 * (threads.test.mjs: a last-bit change of an activation may move its int16 step).
 */
const MAX_BUILD_DIFF = { 'f32 folder': 1e-5, 'q8 bundle': 1e-4 };

let servers;
let isolated;
let notIsolated;
let browser;

before(async () => {
  for (const [dir] of BUILDS) {
    for (const f of ['kpl.js', 'kpl_bg.wasm']) {
      assert.ok(fs.existsSync(path.join(REPO, 'pkg', dir, f)), `pkg/${dir}${dir ? '/' : ''}${f} is missing: run \`make wasm\``);
    }
  }
  // The q8 bundle at /model/; the f32 folder at /fixtures/.
  servers = await bundleServers(MODEL, TASK, 'kpl-relaxed-bundle-');
  ({ isolated, notIsolated, browser } = servers);
}, { timeout: 120000 });

after(() => servers?.close());

/** A new page of `server` (its embed example), with its errors and requests logged. */
async function openPage(server, { probe } = {}) {
  const page = await browser.context.newPage();
  const errors = collectErrors(page);
  const requests = [];
  page.on('request', (r) => requests.push(new URL(r.url()).pathname));
  // An engine without relaxed SIMD, as far as the worker can tell.
  if (probe === false) {
    await page.route('**/simd-probe.js', (route) => route.fulfill({
      contentType: 'text/javascript', body: 'self.kplRelaxedSimd = () => false;\n',
    }));
  }
  await page.goto(`${server.url}/embed-example.html`);
  return { page, errors, requests };
}

test('the GEMMs of the four builds against the numpy references: int8 bit for bit, f32 bit for bit to its fused or unfused reference', { timeout: 120000 }, async () => {
  const q8 = q8Cases();
  const f32 = f32Cases();
  const q4 = q4Cases();
  assert.ok(q8.length >= 7 && f32.length >= 8 && q4.length >= 7);
  const { page, errors } = await openPage(isolated);
  try {
    for (const [dir, threads, simd] of BUILDS) {
      const r = await page.evaluate(({ dir, threads, q8, f32, q4 }) => new Promise((resolve) => {
        const worker = new Worker('/test/gemm-worker.js', { type: 'module' });
        worker.addEventListener('message', ({ data }) => {
          worker.terminate();
          const plain = (ys) => ys.map((y) => Array.from(y));
          resolve(data.error ? data : {
            ...data, q8: plain(data.q8), f32: plain(data.f32), q4: plain(data.q4),
            q8ByKernel: Object.fromEntries(Object.entries(data.q8ByKernel).map(([kernel, ys]) => [kernel, plain(ys)])),
            q8x8ByKernel: Object.fromEntries(Object.entries(data.q8x8ByKernel).map(([kernel, ys]) => [kernel, plain(ys)])),
          });
        });
        worker.postMessage({ pkg: dir, threads, q8, f32, q4 });
      }), {
        dir, threads,
        q8: q8.map(({ w, n, k, x, m }) => ({ w: Array.from(w), n, k, x: Array.from(x), m })),
        f32: f32.map(({ w, n, k, b, x, m }) => ({ w: Array.from(w), n, k, b: Array.from(b), x: Array.from(x), m })),
        q4: q4.map(({ blocks, n, k, x, m }) => ({ blocks: Array.from(blocks), n, k, x: Array.from(x), m })),
      });
      const name = `pkg/${dir}`;
      if (r.error) throw new Error(`${name}: ${r.error}`);
      assert.equal(r.simd, simd, `${name}: simdBuild()`);
      assert.equal(r.threads, threads, `${name}: rayon's pool`);
      // The int8 kernels: the relaxed one in the relaxed builds only, never the default.
      assert.deepEqual(r.q8Kernels, simd === 'relaxed' ? ['Scalar', 'Relaxed', 'Simd128'] : ['Scalar', 'Simd128'], `${name}: q8Kernels()`);
      // The q8_0 × q8_0 kernels: the relaxed one only where the engine passes both
      // probes (its relaxed dot reads the weights' u8 exactly, relaxed_madd fuses).
      if (simd !== 'relaxed') assert.equal(r.q8x8RelaxedDot, false, `${name}: q8x8RelaxedDot() in a simd128 build`);
      const relaxedQ8x8 = simd === 'relaxed' && r.q8x8RelaxedDot && r.fuses;
      assert.deepEqual(r.q8x8Kernels, relaxedQ8x8 ? ['Scalar', 'Relaxed'] : ['Scalar'], `${name}: q8x8Kernels()`);
      const int8 = [['q8', q8, r.q8, 'y'], ['q4', q4, r.q4, 'y'], ...r.q8Kernels.map((kernel) => [`q8 ${kernel}`, q8, r.q8ByKernel[kernel], 'y']),
        ...r.q8x8Kernels.map((kernel) => [`q8x8 ${kernel}`, q8, r.q8x8ByKernel[kernel], 'yQ8x8'])];
      for (const [label, cases, ys, reference] of int8) {
        cases.forEach((c, i) => {
          const d = differingBits(new Float32Array(ys[i]), c[reference]);
          assert.equal(d, 0, `${name} ${label} [${c.m}, ${c.k}, ${c.n}]: ${d} of ${c.y.length} values differ from numpy's`);
        });
      }
      // The relaxed build's f32 GEMM: one rounding per step where the engine fuses.
      const reference = simd === 'relaxed' && r.fuses ? 'yFma' : 'y';
      let againstOther = 0;
      f32.forEach((c, i) => {
        const y = new Float32Array(r.f32[i]);
        const d = differingBits(y, c[reference]);
        assert.equal(d, 0, `${name} f32 [${c.m}, ${c.k}, ${c.n}]: ${d} of ${c.y.length} values differ from numpy's ${reference}`);
        againstOther += differingBits(y, c[reference === 'y' ? 'yFma' : 'y']);
      });
      // The two references differ on most outputs, so matching one is telling.
      assert.ok(againstOther > 100, `${name}: only ${againstOther} values differ from the other reference`);
      console.log(`# ${name} (${simd}, ${threads} thread${threads > 1 ? 's' : ''}): q8 (default and ${r.q8Kernels.join(', ')}), q8x8 (${r.q8x8Kernels.join(', ')}), q4 = numpy bit for bit; f32 = numpy ${reference} bit for bit` +
        `${simd === 'relaxed' ? ` (relaxed_madd ${r.fuses ? 'fuses' : 'does not fuse'} here; the relaxed dot ${r.q8x8RelaxedDot ? 'reads u8 exactly' : 'does not read u8 exactly'})` : ''}`);
    }
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

/**
 * Blocks of activations for the q8x8 quantiser: all zero (d = 0), ties of x / d, a
 * subnormal f16 scale, NaN and +∞ (d = ∞: 1/d = 0, ∞ · 0 = NaN → 0), −∞, a value far
 * above the rest (the others round to 0), values whose x / d is 127 · (1 + ε), then
 * pseudo-random blocks from 1e-30 to 1e30 (`Math.fround`ed, as f32).
 */
function quantiserCases() {
  const x = new Float32Array(96 * 32);
  let s = 12345;
  const next = () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s / 2 ** 32 - 0.5; };
  for (let j = 0; j < 32; j++) {
    x[32 + j] = j === 0 ? 127 * 0.25 : 0.25 * ((j % 20) - 10.5);
    x[64 + j] = next() * 1e-5;
    x[96 + j] = next();
    x[128 + j] = next() * 3;
    x[160 + j] = next();
    x[192 + j] = 1 + j / 1024;
  }
  x[96 + 5] = NaN;
  x[96 + 6] = Infinity;
  x[128 + 7] = -Infinity;
  x[160 + 7] = 1e30;
  for (let b = 8; b < 96; b++) {
    const scale = 10 ** (Math.floor(next() * 60));
    for (let j = 0; j < 32; j++) x[b * 32 + j] = next() * scale;
  }
  return x;
}

test('the q8x8 activation quantiser of each kernel of the four builds: quantize_row_q8_0\'s bytes (a JavaScript reference) on ties, NaN, ±∞, saturation, subnormal scales', { timeout: 120000 }, async () => {
  const x = quantiserCases();
  const { page, errors } = await openPage(isolated);
  try {
    // ggml's `quantize_row_q8_0` (candle's `BlockQ8_0::from_float`), in the page for
    // `DataView.setFloat16`: per 32 values `d = max|x| / 127` (a NaN skipped, as
    // `fmaxf`), `q = round(x · (1/d))` half away from zero, saturated to int8 (NaN → 0),
    // then `d` as f16. Each quotient and product is the f32 one (`Math.fround` of the
    // double result is the same number).
    const want = await page.evaluate((xs) => {
      const x = new Float32Array(xs);
      const out = new Uint8Array(x.length / 32 * 34);
      const view = new DataView(out.buffer);
      for (let b = 0; b < x.length / 32; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.abs(x[b * 32 + j]) > amax ? Math.abs(x[b * 32 + j]) : amax;
        const d = Math.fround(amax / 127);
        const id = d !== 0 ? Math.fround(1 / d) : 0;
        view.setFloat16(b * 34, d, true);
        for (let j = 0; j < 32; j++) {
          const v = Math.fround(x[b * 32 + j] * id);
          const q = Number.isNaN(v) ? 0 : Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
          view.setInt8(b * 34 + 2 + j, Math.min(127, Math.max(-128, q)));
        }
      }
      return Array.from(out);
    }, Array.from(x));
    // Ties of x / d (−9.5, −8.5, −7.5) round away from zero, not to even.
    assert.deepEqual(want.slice(34 + 2, 34 + 6).map((v) => (v << 24) >> 24), [127, -10, -9, -8]);
    for (const [dir, threads] of BUILDS) {
      const r = await page.evaluate(({ dir, threads, x }) => new Promise((resolve) => {
        const worker = new Worker('/test/gemm-worker.js', { type: 'module' });
        worker.addEventListener('message', ({ data }) => {
          worker.terminate();
          resolve(data.error ? data : { kernels: data.q8x8Kernels, bytes: Object.fromEntries(Object.entries(data.q8x8Quantized).map(([k, v]) => [k, Array.from(v)])) });
        });
        worker.postMessage({ pkg: dir, threads, q8: [], f32: [], q4: [], quantize: new Float32Array(x) });
      }), { dir, threads, x: Array.from(x) });
      const name = `pkg/${dir}`;
      if (r.error) throw new Error(`${name}: ${r.error}`);
      for (const kernel of r.kernels) {
        const got = r.bytes[kernel];
        const bad = got.findIndex((v, i) => v !== want[i]);
        assert.equal(bad, -1, `${name} q8x8 ${kernel}: byte ${bad} (block ${Math.floor(bad / 34)}) is ${got[bad]}, quantize_row_q8_0's ${want[bad]}`);
      }
      console.log(`# ${name}: the q8x8 quantiser of ${r.kernels.join(', ')} = quantize_row_q8_0 on ${x.length / 32} blocks`);
    }
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

/** Workers with each of `runs` ({threads, simd}) embed the fixture images and texts. */
const embedRuns = (page, base, runs) => embedWithWorkers(page, base, runs, { images: IMAGES, texts: TEXTS });

for (const [label, base] of [['f32 folder', `/fixtures/${path.basename(MODEL)}/`], ['q8 bundle', '/model/']]) {
  test(`${label}: the worker runs the relaxed build by default and simd128 when asked; their embeddings within ${MAX_BUILD_DIFF[label]}`, { timeout: 180000 }, async () => {
    let worst = 0;
    const defaults = new Set();
    for (const [server, threads, dirs] of [[isolated, 2, ['threads-relaxed', 'threads']], [notIsolated, 1, ['relaxed', '']]]) {
      const { page, errors, requests } = await openPage(server);
      try {
        // The q8 bundle: the relaxed build's default is the q8_0 × q8_0 GEMM (int8x8) where
        // its relaxed kernel is offered, simd128's int8 GEMM elsewhere: the default must be
        // one of the two, bit for bit. The builds are compared on each kernel asked by name
        // (in the simd128 builds int8x8 runs its scalar kernel, the same bits as the relaxed
        // one: only the f32 parts differ between the builds).
        const q8 = label === 'q8 bundle';
        const [relaxedDefault, plain, ...kernels] = await embedRuns(page, base, [{ threads }, { threads, simd: 'simd128' },
          ...(q8 ? [{ threads, quantKernel: 'int8' }, { threads, quantKernel: 'int8x8' }, { threads, simd: 'simd128', quantKernel: 'int8x8' }] : [])]);
        const relaxed = q8 ? kernels[0] : relaxedDefault;
        const pairs = [[relaxed, plain, 'int8']];
        if (q8) {
          assert.equal(relaxedDefault.info.simd, 'relaxed');
          const [, relaxedQ8x8, plainQ8x8] = kernels;
          pairs.push([relaxedQ8x8, plainQ8x8, 'int8x8']);
          const sameAs = (other) => ['images', 'texts'].every((kind) => relaxedDefault[kind].every((e, i) => maxAbsDiff(e, other[kind][i]) === 0));
          const asInt8 = sameAs(relaxed), asInt8x8 = sameAs(relaxedQ8x8);
          assert.ok(asInt8 || asInt8x8, `${threads} thread(s): the relaxed build's q8 default is neither its int8 nor its int8x8 kernel`);
          assert.ok(!(asInt8 && asInt8x8), `${threads} thread(s): int8 and int8x8 gave the same bits (the kernel asked was not used)`);
          defaults.add(asInt8x8 ? 'int8x8' : 'int8');
        }
        assert.equal(relaxed.info.simd, 'relaxed', `${server.url}: the default where Chromium runs relaxed SIMD`);
        assert.equal(relaxed.info.simdNote, '');
        assert.equal(relaxed.info.threads, threads);
        assert.equal(plain.info.simd, 'simd128', `${server.url}: simd=simd128 asked`);
        assert.equal(plain.info.threads, threads);
        for (const dir of dirs) assert.ok(requests.includes(`/pkg/${dir}${dir ? '/' : ''}kpl_bg.wasm`), `pkg/${dir} was fetched`);
        for (const [inRelaxed, inPlain, kernel] of pairs) {
          assert.equal(inPlain.info.simd, 'simd128');
          for (const kind of ['images', 'texts']) {
            inRelaxed[kind].forEach((e, i) => {
              const d = maxAbsDiff(e, inPlain[kind][i]);
              worst = Math.max(worst, d);
              assert.ok(d <= MAX_BUILD_DIFF[label], `${kind}[${i}], ${threads} thread(s), ${q8 ? kernel : 'f32'}: relaxed vs simd128 max |diff| ${d} > ${MAX_BUILD_DIFF[label]}`);
            });
          }
        }
        assert.deepEqual(errors, []);
      } finally {
        await page.close();
      }
    }
    console.log(`# ${label}: relaxed vs simd128 builds, 1 and 2 threads${label === 'q8 bundle' ? ', int8 and int8x8' : ''}: max |diff| ${worst.toExponential(2)}` +
      `${defaults.size ? `; the relaxed build's q8 default: ${[...defaults].join(', ')} (bit for bit)` : ''}`);
  });
}

test('an engine whose relaxed dot is not vpdpbusd\'s (Node 20: it saturates): the q8x8 relaxed kernel is reported unavailable and not used', { timeout: 120000 }, async () => {
  // pkg/relaxed under Node with relaxed SIMD switched on: its V8 lowers the relaxed dot
  // to pmaddubsw + pmaddwd, whose 16-bit pair sums saturate for weight bytes above 127.
  const c = q8Cases()[4];
  const script = `
    import { loadKplWasm } from ${JSON.stringify(path.join(REPO, 'bench', 'lib.mjs'))};
    const { mod } = await loadKplWasm(${JSON.stringify(path.join(REPO, 'pkg', 'relaxed'))});
    const [w, x] = [Uint8Array.from(${JSON.stringify(Array.from(c.w))}), Float32Array.from(${JSON.stringify(Array.from(c.x))})];
    let relaxedError = '';
    try { mod.q8x8GemmWith(w, ${c.n}, ${c.k}, x, ${c.m}, 'Relaxed'); } catch (e) { relaxedError = e.message; }
    console.log(JSON.stringify({ simd: mod.simdBuild(), dot: mod.q8x8RelaxedDot(), fuses: mod.relaxedMaddFuses(), kernels: mod.q8x8Kernels(),
      relaxedError, scalar: Array.from(mod.q8x8GemmWith(w, ${c.n}, ${c.k}, x, ${c.m}, 'Scalar')) }));`;
  const r = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: REPO });
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout.trim().split('\n').at(-1));
  assert.equal(got.simd, 'relaxed');
  if (process.versions.node.startsWith('20.')) assert.equal(got.dot, false, 'Node 20\'s relaxed dot read the weights as u8 exactly');
  const offered = got.dot && got.fuses;
  assert.equal(got.kernels, offered ? 'Scalar,Relaxed' : 'Scalar');
  if (!offered) assert.match(got.relaxedError, /no q8x8 kernel "Relaxed" in this build and engine \(it has Scalar\)/);
  // The fallback computes the numpy reference.
  assert.equal(differingBits(new Float32Array(got.scalar), c.yQ8x8), 0);
  console.log(`# node ${process.versions.node}, pkg/relaxed: relaxed dot ${got.dot ? 'reads u8 exactly' : 'does not read u8 exactly'}, relaxed_madd ${got.fuses ? 'fuses' : 'does not fuse'}: q8x8 kernels ${got.kernels}`);
});

test('an engine without relaxed SIMD: the probe says no (Node 20 without its flag), and the worker then fetches no relaxed build', { timeout: 120000 }, async () => {
  const probe = path.join(REPO, 'www', 'simd-probe.js');
  const script = `globalThis.self = globalThis; await import(${JSON.stringify(probe)}); console.log(self.kplRelaxedSimd());`;
  for (const [flags, expected] of [[[], 'false'], [['--experimental-wasm-relaxed-simd'], 'true']]) {
    const r = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    // Node 22+ runs relaxed SIMD without the flag: only the flagged run is telling there.
    if (flags.length || process.versions.node.startsWith('20.')) assert.equal(r.stdout.trim(), expected, `node ${flags.join(' ')}`);
  }
  const { page, errors, requests } = await openPage(isolated, { probe: false });
  try {
    const [run] = await embedRuns(page, '/model/', [{ threads: 2 }]);
    assert.equal(run.info.simd, 'simd128');
    assert.equal(run.info.simdNote, '');
    assert.equal(run.info.threads, 2);
    assert.ok(requests.includes('/pkg/threads/kpl_bg.wasm'));
    assert.deepEqual(requests.filter((u) => /relaxed/.test(u)), [], 'no relaxed build fetched');
    // Asking for relaxed there: simd128, and the note says why.
    const [asked] = await embedRuns(page, '/model/', [{ threads: 1, simd: 'relaxed' }]);
    assert.equal(asked.info.simd, 'simd128');
    assert.match(asked.info.simdNote, /^The simd128 build: this browser does not run relaxed SIMD\.$/);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('the relaxed builds failing to start: the simd128 ones run, and simdNote says why', { timeout: 120000 }, async () => {
  const { page } = await openPage(isolated);
  try {
    // As a server or proxy that does not deliver the relaxed folders would.
    await page.route('**/pkg/*relaxed/**', (route) => route.abort());
    const [threaded] = await embedRuns(page, '/model/', [{ threads: 2 }]);
    assert.equal(threaded.info.simd, 'simd128');
    assert.equal(threaded.info.threads, 2);
    assert.match(threaded.info.simdNote, /^The simd128 build: the relaxed-SIMD build \(pkg\/threads-relaxed\/\) could not start \(.+\)\.$/);
  } finally {
    await page.close();
  }
});

test("the page: relaxed SIMD by default (its status says so), simd128 with ?simd=simd128", { timeout: 120000 }, async () => {
  const server = await startServer({ model: MODEL });
  const page = await browser.context.newPage();
  const errors = collectErrors(page);
  try {
    await page.goto(`${server.url}/?threads=2`);
    await page.locator('body[data-model-ready="true"]').waitFor({ timeout: 60000 });
    assert.equal(await page.getAttribute('body', 'data-simd'), 'relaxed');
    assert.match(await page.locator('#status').innerText(), /2 threads, relaxed SIMD\./);
    await page.goto(`${server.url}/?threads=2&simd=simd128`);
    await page.locator('body[data-model-ready="true"]').waitFor({ timeout: 60000 });
    assert.equal(await page.getAttribute('body', 'data-simd'), 'simd128');
    assert.doesNotMatch(await page.locator('#status').innerText(), /relaxed/);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await server.close();
  }
});
