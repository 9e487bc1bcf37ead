// open_clip's BiomedCLIP-shaped fixture (timm ViT + BERT text tower: pad-id key mask,
// [CLS] pooling, MLP head) on the WebGPU engine in the browser (SwiftShader's software
// adapter in CI), loaded by ClipModel.loadOpenClip from its pickle, against the native
// CPU: cosine >= 0.9999 and max |diff| <= 1e-3, the GPU engine's tolerance (tests/gpu.rs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { startServer, launchBrowser, openParityPage, runNative, maxAbsDiff, cosine } from './helpers.mjs';

const NAME = 'tiny-open-clip-bert';
const IMAGES = ['images/rgb_97x61.png', 'images/grey_80x120.png', 'images/photo_120x100.jpg'];
// The last one writes the pad id inside the text: the mask must leave it out.
const TEXTS = ['a photo of a chest x-ray', 'pneumonia', '[CLS] [SEP] [PAD] [MASK] written out', ''];
const GPU_MIN_COSINE = 0.9999;
const GPU_MAX_DIFF = 1e-3;

let server;
let browser;
let result;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  const page = await openParityPage(server, browser);
  const job = { models: [NAME], images: IMAGES, texts: TEXTS, gpu: true };
  result = (await page.evaluate((j) => window.kplParity(j), job))[NAME];
}, { timeout: 180000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

test(`${NAME}: both towers on WebGPU in the browser match the native CPU (cosine >= ${GPU_MIN_COSINE}, max |diff| <= ${GPU_MAX_DIFF})`, () => {
  assert.ok(result?.gpu, 'no WebGPU result');
  const modelDir = path.join('tests', 'fixtures', NAME);
  const images = runNative(['embed-image', '--model', modelDir, ...IMAGES.map((f) => path.join('tests', 'fixtures', f))]).embeddings;
  const texts = runNative(['embed-text', '--model', modelDir, '--', ...TEXTS]).embeddings;
  let minCos = 1;
  let maxDiff = 0;
  const check = (what, got, want) => {
    const c = cosine(got, want);
    const d = maxAbsDiff(got, want);
    minCos = Math.min(minCos, c);
    maxDiff = Math.max(maxDiff, d);
    assert.ok(c >= GPU_MIN_COSINE && d <= GPU_MAX_DIFF, `${what}: WebGPU vs native cosine ${c}, max |diff| ${d}`);
  };
  assert.equal(result.gpu.images.length, IMAGES.length);
  result.gpu.images.forEach((e, i) => check(IMAGES[i], e, images[i].embedding));
  assert.equal(result.gpu.texts.length, TEXTS.length);
  result.gpu.texts.forEach((e, i) => check(JSON.stringify(TEXTS[i]), e, texts[i].embedding));
  // Different texts embed differently, or agreement would prove little.
  assert.ok(cosine(result.gpu.texts[0], result.gpu.texts[1]) < 0.999, 'two texts embed alike');
  console.log(
    `# ${NAME}: WebGPU (${result.gpu.adapter}${result.gpu.software ? ', software' : ''}) vs native CPU, ` +
      `${IMAGES.length} images + ${TEXTS.length} texts, min cosine ${minCos.toFixed(7)}, max |diff| ${maxDiff.toExponential(2)}`,
  );
});
