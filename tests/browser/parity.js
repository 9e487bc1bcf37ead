// Loaded by parity.html (served at /test/ by `scripts/serve.mjs --test`). Runs the
// wasm build directly, on the page's thread, so that the numbers compared with the
// native CLI come from the same entry points the worker uses (ClipModel.load,
// embedImage, embedText) and nothing else.

import init, { ClipModel } from '/pkg/kpl.js';
import { MODEL_FILES } from '/protocol.js';

async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * @param {{models: string[], images: string[], texts: string[]}} job
 *   models: folder names under /fixtures/; images: paths under /fixtures/.
 */
async function run({ models, images, texts }) {
  await init();
  const out = {};
  for (const name of models) {
    const base = `/fixtures/${name}/`;
    const { config, weights, tokenizer, preprocessor } = MODEL_FILES;
    const bytes = await Promise.all([config, weights, tokenizer, preprocessor].map((f) => fetchBytes(base + f)));
    const model = ClipModel.load(...bytes);
    try {
      const result = { isRandom: model.isRandom, embeddingDim: model.embeddingDim, images: [], texts: [] };
      for (const file of images) {
        const bytes = await fetchBytes(`/fixtures/${file}`);
        result.images.push({ file, embedding: Array.from(model.embedImage(bytes, file)) });
      }
      for (const text of texts) {
        result.texts.push({ text, embedding: Array.from(model.embedText(text)) });
      }
      out[name] = result;
    } finally {
      model.free();
    }
  }
  return out;
}

window.kplParity = run;
document.documentElement.dataset.ready = 'true';
