// The page bench/chromium.mjs opens in headless Chromium (cross-origin isolated: COOP
// same-origin + COEP require-corp). It exposes window.bench.kpl and window.bench.ort;
// each loads its model in this tab (a fresh tab per row, so each wasm instance starts
// empty) and returns { run, finish }: bench/chromium.mjs calls run() once per timed
// run (seconds, measured here with performance.now()), reading Chromium's CPU time
// around each call, then finish().

import { fetchBytes, loadKpl } from './kpl-load.js';

const timed = (fn) => async () => {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
};

/**
 * kpl-wasm on the random ViT-B/16: load and a warm-up. One thread: pkg/ (the default
 * build; pkg/relaxed/ for simd 'relaxed') on this page's thread; more: pkg/threads/
 * (pkg/threads-relaxed/) in kpl-worker.js (a worker, as the app runs it), its pool of
 * `threads` Web Workers; run() is then the worker's time.
 */
async function kpl({ dtype, threads = 1, simd = 'simd128' }) {
  if (threads === 1) {
    const dir = simd === 'relaxed' ? '/pkg/relaxed/' : '/pkg/';
    const api = await import(`${dir}kpl.js`);
    const wasm = await api.default({ module_or_path: `${dir}kpl_bg.wasm` });
    if (api.simdBuild() !== simd) throw new Error(`${dir} is the ${api.simdBuild()} build, not ${simd}`);
    return loadKpl(api, wasm.memory, dtype);
  }
  const worker = new Worker('/bench/kpl-worker.js', { type: 'module' });
  const call = (msg) => new Promise((resolve, reject) => {
    worker.addEventListener('message', ({ data }) => (data.error ? reject(new Error(data.error)) : resolve(data.result)), { once: true });
    worker.postMessage(msg);
  });
  await call({ type: 'setup', dtype, threads, simd });
  return {
    run: () => call({ type: 'run' }),
    finish: async () => {
      const out = await call({ type: 'finish' });
      worker.terminate();
      return out;
    },
  };
}

/** ONNX Runtime Web, wasm backend (its SIMD build), `threads` intra-op threads. */
async function ort({ dtype, threads }) {
  const ortWeb = await import('/ort/ort.wasm.min.mjs');
  ortWeb.env.wasm.numThreads = threads;
  ortWeb.env.wasm.proxy = false;
  ortWeb.env.wasm.wasmPaths = '/ort/';
  ortWeb.env.logLevel = 'error';
  const bytes = await fetchBytes(`/model/onnx/vision-${dtype}.onnx`);
  const t = performance.now();
  const session = await ortWeb.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  const loadS = (performance.now() - t) / 1000;
  const pixels = new Float32Array((await fetchBytes('/model/pixels-224.f32')).buffer);
  const feed = { pixel_values: new ortWeb.Tensor('float32', pixels, [1, 3, 224, 224]) };
  const first = await session.run(feed);
  const embedding = Array.from(first.image_embeds.data);
  return {
    run: timed(() => session.run(feed)),
    finish: async () => {
      await session.release();
      return { load_s: loadS, embedding, version: ortWeb.env.versions?.web ?? null };
    },
  };
}

/** The GEMM rates (kpl::nn::gemm::rates) of one single-threaded build on this page's thread. */
async function gemmRates({ simd, m, k, n, runs }) {
  const dir = simd === 'relaxed' ? '/pkg/relaxed/' : '/pkg/';
  const api = await import(`${dir}kpl.js`);
  await api.default({ module_or_path: `${dir}kpl_bg.wasm` });
  if (api.simdBuild() !== simd) throw new Error(`${dir} is the ${api.simdBuild()} build, not ${simd}`);
  return JSON.parse(api.gemmRates(m, k, n, runs));
}

let current = null;
window.bench = {
  setup: async (name, spec) => {
    current = await { kpl, ort }[name](spec);
  },
  run: () => current.run(),
  finish: () => current.finish(),
  gemmRates,
  isolated: () => self.crossOriginIsolated, cores: () => navigator.hardwareConcurrency };
document.body.dataset.ready = 'true';
