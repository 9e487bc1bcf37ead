// A module worker for tests/browser/relaxed.test.mjs: starts one wasm build (`pkg`: a
// folder under /pkg/, e.g. 'relaxed'; '' for pkg/ itself), with a rayon pool of `threads`
// for a threaded build, and runs the GEMM cases given, answering the raw results.
// Message: {pkg, threads, q8: [{w, n, k, x, m}], f32: [{w, n, k, b, x, m}],
// q4: [{blocks, n, k, x, m}]} → {simd, fuses, threads, q8, f32, q4: [Float32Array],
// q8Kernels: the build's int8 kernels, q8ByKernel: {kernel: [Float32Array]},
// q8x8Kernels / q8x8ByKernel: the same for the q8_0 × q8_0 GEMM, q8x8RelaxedDot: its
// probe, q8x8Quantized: {kernel: Uint8Array}, the q8x8 quantiser's block_q8_0 bytes of
// `quantize` (a Float32Array of whole blocks; none when absent)} or {error}.

self.addEventListener('message', async ({ data }) => {
  try {
    const dir = `/pkg/${data.pkg ? `${data.pkg}/` : ''}`;
    const api = await import(`${dir}kpl.js`);
    await api.default({ module_or_path: `${dir}kpl_bg.wasm` });
    if (api.initThreadPool) await api.initThreadPool(data.threads);
    const q8Kernels = api.q8Kernels().split(',');
    const q8x8Kernels = api.q8x8Kernels().split(',');
    const out = {
      q8x8Kernels,
      q8x8ByKernel: Object.fromEntries(q8x8Kernels.map((kernel) => [kernel, data.q8.map((c) => api.q8x8GemmWith(c.w, c.n, c.k, c.x, c.m, kernel))])),
      q8x8RelaxedDot: api.q8x8RelaxedDot(),
      q8x8Quantized: Object.fromEntries(data.quantize ? q8x8Kernels.map((kernel) => [kernel, api.q8x8QuantizeWith(data.quantize, kernel)]) : []),
      q8Kernels,
      q8ByKernel: Object.fromEntries(q8Kernels.map((kernel) => [kernel, data.q8.map((c) => api.q8GemmWith(c.w, c.n, c.k, c.x, c.m, kernel))])),
      simd: api.simdBuild(),
      fuses: api.relaxedMaddFuses(),
      threads: api.rayonThreads ? api.rayonThreads() : 1,
      q8: data.q8.map((c) => api.q8Gemm(c.w, c.n, c.k, c.x, c.m)),
      f32: data.f32.map((c) => api.f32Gemm(c.w, c.n, c.k, c.b, c.x, c.m)),
      q4: data.q4.map((c) => api.q4Gemm(c.blocks, c.n, c.k, c.x, c.m)),
    };
    self.postMessage(out);
  } catch (e) {
    self.postMessage({ error: e instanceof Error ? e.message : String(e) });
  }
});
