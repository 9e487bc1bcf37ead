// Browser (wasm, headless Chromium) vs native CLI vs Hugging Face reference, for
// both CLIP fixture models: every image in reference.json and every reference text;
// and for the SigLIP fixtures tiny-siglip-a (tokenizer.json) and tiny-siglip-b
// (spiece.model): every image and text of siglip_reference.json.
//
//   browser vs native `kpl embed-image` / `kpl embed-text`: max |diff| <= 1e-5
//   browser vs reference.json (transformers, CLIP):        cosine >= 0.999
//     (SigLIP's against transformers: tests/parity.rs, natively)
//   WebGPU engine in the browser (SwiftShader's software adapter in CI) vs native
//   CPU: cosine >= 0.9999 and max |diff| <= 1e-3, the GPU engine's tolerance
//     (SigLIP: the MAP head, the key-padding mask, no class token on the GPU)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { startServer, launchBrowser, openParityPage, assertGpuMatchesNative, GPU_MIN_COSINE, GPU_MAX_DIFF, readReference, runNative, maxAbsDiff, cosine } from './helpers.mjs';

const MODELS = ['tiny-quickgelu-f32', 'tiny-gelu-f16'];
const SIGLIP_MODELS = ['tiny-siglip-a', 'tiny-siglip-b'];
const NATIVE_TOLERANCE = 1e-5;
const REFERENCE_MIN_COSINE = 0.999;

/** The native CLI's embeddings of the browser's images and texts, once per model. */
const nativeCache = new Map();
function nativeOf(name) {
  if (!nativeCache.has(name)) {
    const ours = browserResults[name];
    const modelDir = path.join('tests', 'fixtures', name);
    const files = ours.images.map((i) => path.join('tests', 'fixtures', i.file));
    const texts = ours.texts.map((t) => t.text);
    nativeCache.set(name, {
      files,
      images: runNative(['embed-image', '--model', modelDir, ...files]).embeddings,
      texts: runNative(['embed-text', '--model', modelDir, '--', ...texts]).embeddings,
    });
  }
  return nativeCache.get(name);
}

const reference = readReference();
const siglipReference = readReference('siglip_reference.json');
let server;
let browser;
let browserResults;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  const page = await openParityPage(server, browser);
  const job = {
    models: MODELS,
    // Every reference image; the file lists are the same for both models.
    images: reference.models[MODELS[0]].images.map((i) => i.file),
    texts: reference.models[MODELS[0]].texts.map((t) => t.text),
    gpu: true,
  };
  browserResults = await page.evaluate((j) => window.kplParity(j), job);
  const siglip = siglipReference.models[SIGLIP_MODELS[0]];
  const siglipJob = {
    models: SIGLIP_MODELS,
    images: siglip.images.map((i) => i.file),
    texts: siglip.texts.map((t) => t.text),
    gpu: true,
  };
  Object.assign(browserResults, await page.evaluate((j) => window.kplParity(j), siglipJob));
}, { timeout: 240000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

for (const name of [...MODELS, ...SIGLIP_MODELS]) {
  test(`${name}: browser embeddings match the native CLI (max |diff| <= ${NATIVE_TOLERANCE})`, () => {
    const ours = browserResults[name];
    assert.ok(ours, `no browser result for ${name}`);
    assert.equal(ours.isRandom, true, 'the fixture models are marked as random weights');
    const { files, images: nativeImages, texts: nativeTexts } = nativeOf(name);
    assert.equal(nativeImages.length, files.length, 'the CLI embedded every image');
    let worstImage = 0;
    ours.images.forEach((img, i) => {
      assert.equal(nativeImages[i].file, files[i]);
      assert.equal(nativeImages[i].embedding.length, ours.embeddingDim);
      const d = maxAbsDiff(img.embedding, nativeImages[i].embedding);
      worstImage = Math.max(worstImage, d);
      assert.ok(d <= NATIVE_TOLERANCE, `${img.file}: browser vs native max |diff| = ${d}`);
    });

    const texts = ours.texts.map((t) => t.text);
    assert.equal(nativeTexts.length, texts.length, 'the CLI embedded every text');
    let worstText = 0;
    ours.texts.forEach((t, i) => {
      assert.equal(nativeTexts[i].text, t.text);
      const d = maxAbsDiff(t.embedding, nativeTexts[i].embedding);
      worstText = Math.max(worstText, d);
      assert.ok(d <= NATIVE_TOLERANCE, `${JSON.stringify(t.text)}: browser vs native max |diff| = ${d}`);
    });
    console.log(
      `# ${name}: browser vs native, max |diff| images ${worstImage.toExponential(2)} (${files.length}), ` +
        `texts ${worstText.toExponential(2)} (${texts.length})`,
    );
  });

  test(`${name}: the WebGPU engine in the browser matches the native CPU (cosine >= ${GPU_MIN_COSINE}, max |diff| <= ${GPU_MAX_DIFF})`, () => {
    assertGpuMatchesNative(name, browserResults[name].gpu, nativeOf(name));
  });
}

for (const name of MODELS) {
  test(`${name}: browser embeddings match the transformers reference (cosine >= ${REFERENCE_MIN_COSINE})`, () => {
    const ours = browserResults[name];
    const ref = reference.models[name];
    assert.equal(ours.images.length, ref.images.length);
    let minCos = 1;
    let maxDiff = 0;
    ref.images.forEach((r, i) => {
      assert.equal(ours.images[i].file, r.file);
      const c = cosine(ours.images[i].embedding, r.embedding);
      minCos = Math.min(minCos, c);
      maxDiff = Math.max(maxDiff, maxAbsDiff(ours.images[i].embedding, r.embedding));
      assert.ok(c >= REFERENCE_MIN_COSINE, `${r.file}: cosine to the reference ${c}`);
    });
    ref.texts.forEach((r, i) => {
      assert.equal(ours.texts[i].text, r.text);
      const c = cosine(ours.texts[i].embedding, r.embedding);
      minCos = Math.min(minCos, c);
      maxDiff = Math.max(maxDiff, maxAbsDiff(ours.texts[i].embedding, r.embedding));
      assert.ok(c >= REFERENCE_MIN_COSINE, `${JSON.stringify(r.text)}: cosine to the reference ${c}`);
    });
    console.log(`# ${name}: browser vs reference, min cosine ${minCos.toFixed(7)}, max |diff| ${maxDiff.toExponential(2)}`);
  });
}
