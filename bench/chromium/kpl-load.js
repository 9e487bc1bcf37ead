// kpl-wasm's part of the Chromium bench, shared by the page (1 thread, pkg/) and
// kpl-worker.js (the threaded build, pkg/threads/): load the random ViT-B/16 of the
// given dtype with a started build's `ClipModel`, embed the PNG once (the warm-up).

export const fetchBytes = async (url) => {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
};

/**
 * @param {{ClipModel: any}} api a started wasm-bindgen build
 * @param {WebAssembly.Memory} memory its memory
 * @param {'f32' | 'q8' | 'q4'} dtype
 * @returns {Promise<{run: () => number, finish: () => object, loadS: number, embedding: number[]}>}
 *   run(): one embedding's seconds; finish(): the figures and the model freed.
 */
export async function loadKpl(api, memory, dtype) {
  let model;
  const t = performance.now();
  if (dtype === 'f32') {
    const [config, weights, tokenizer, preprocessor] = await Promise.all(
      ['config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json'].map((f) => fetchBytes(`/model/vit-b16-random/${f}`)));
    model = api.ClipModel.load(config, weights, tokenizer, preprocessor);
  } else {
    const manifest = await (await fetch(`/model/vit-b16-${dtype}/manifest.json`)).text();
    model = api.ClipModel.loadBundle(manifest, await fetchBytes(`/model/vit-b16-${dtype}/image_encoder.gguf`), null);
  }
  const loadS = (performance.now() - t) / 1000;
  const memoryAfterLoad = memory.buffer.byteLength;
  const png = await fetchBytes('/model/image-224.png');
  const embedding = Array.from(model.embedImage(png, 'image-224.png'));
  return {
    run: () => {
      const start = performance.now();
      model.embedImage(png, 'image-224.png');
      return (performance.now() - start) / 1000;
    },
    finish: () => {
      const peak = memory.buffer.byteLength;
      const heldWeightBytes = model.weightBytes;
      model.free();
      return { load_s: loadS, embedding, peak_memory_bytes: peak, memory_after_load_bytes: memoryAfterLoad, held_weight_bytes: heldWeightBytes };
    },
  };
}
