// kpl-wasm's threaded build (pkg/threads/, or pkg/threads-relaxed/) in a module worker, for bench/chromium.mjs's
// 2-thread rows: rayon's pool makes its caller wait (Atomics.wait) while the pool
// works, which a page's main thread may not do. As the app's worker.js does, it starts
// the build, then `initThreadPool(threads)`. Messages: {type: 'setup', dtype, threads},
// {type: 'run'}, {type: 'finish'}; each answered with {result} or {error}. `simd`:
// 'simd128' or 'relaxed'.

import { loadKpl } from './kpl-load.js';

let current = null;

const steps = {
  async setup({ dtype, threads, simd }) {
    const dir = simd === 'relaxed' ? '/pkg/threads-relaxed/' : '/pkg/threads/';
    const api = await import(`${dir}kpl.js`);
    const wasm = await api.default({ module_or_path: `${dir}kpl_bg.wasm` });
    if (api.simdBuild() !== simd) throw new Error(`${dir} is the ${api.simdBuild()} build, not ${simd}`);
    await api.initThreadPool(threads);
    if (api.rayonThreads() !== threads) throw new Error(`rayon's pool has ${api.rayonThreads()} threads, not ${threads}`);
    current = await loadKpl(api, wasm.memory, dtype);
    return null;
  },
  run: () => current.run(),
  finish: () => current.finish(),
};

self.addEventListener('message', async ({ data }) => {
  try {
    self.postMessage({ result: await steps[data.type](data) });
  } catch (e) {
    self.postMessage({ error: e instanceof Error ? e.message : String(e) });
  }
});
