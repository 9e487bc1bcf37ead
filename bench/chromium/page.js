// The page bench/chromium.mjs opens in headless Chromium (cross-origin isolated: COOP
// same-origin + COEP require-corp). It exposes window.bench.kpl and window.bench.ort;
// each loads its model in this tab (a fresh tab per row, so each wasm instance starts
// empty) and returns { run, finish }: bench/chromium.mjs calls run() once per timed
// run (seconds, measured here with performance.now()), reading Chromium's CPU time
// around each call, then finish().

const fetchBytes = async (url) => {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
};

const timed = (fn) => async () => {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
};

/** kpl-wasm (pkg/, the page's build) on the random ViT-B/16: load and a warm-up. */
async function kpl({ dtype }) {
  const { default: init, ClipModel } = await import('/pkg/kpl.js');
  const wasm = await init({ module_or_path: '/pkg/kpl_bg.wasm' });
  let model;
  const t = performance.now();
  if (dtype === 'f32') {
    const [config, weights, tokenizer, preprocessor] = await Promise.all(
      ['config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json'].map((f) => fetchBytes(`/model/vit-b16-random/${f}`)));
    model = ClipModel.load(config, weights, tokenizer, preprocessor);
  } else {
    const manifest = await (await fetch(`/model/vit-b16-${dtype}/manifest.json`)).text();
    model = ClipModel.loadBundle(manifest, await fetchBytes(`/model/vit-b16-${dtype}/image_encoder.gguf`), null);
  }
  const loadS = (performance.now() - t) / 1000;
  const memoryAfterLoad = wasm.memory.buffer.byteLength;
  const png = await fetchBytes('/model/image-224.png');
  const embedding = Array.from(model.embedImage(png, 'image-224.png'));
  return {
    run: timed(() => model.embedImage(png, 'image-224.png')),
    finish: () => {
      const peak = wasm.memory.buffer.byteLength;
      model.free();
      return { load_s: loadS, embedding, peak_memory_bytes: peak, memory_after_load_bytes: memoryAfterLoad };
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

let current = null;
window.bench = {
  setup: async (name, spec) => {
    current = await { kpl, ort }[name](spec);
  },
  run: () => current.run(),
  finish: () => current.finish(),
  isolated: () => self.crossOriginIsolated, cores: () => navigator.hardwareConcurrency };
document.body.dataset.ready = 'true';
