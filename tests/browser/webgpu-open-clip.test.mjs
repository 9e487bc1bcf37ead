// open_clip's BiomedCLIP-shaped fixture (timm ViT + BERT text tower: pad-id key mask,
// [CLS] pooling, MLP head) on the WebGPU engine in the browser (SwiftShader's software
// adapter in CI), loaded by ClipModel.loadOpenClip from its pickle, against the native
// CPU: cosine >= 0.9999 and max |diff| <= 1e-3, the GPU engine's tolerance (tests/gpu.rs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { startServer, launchBrowser, openParityPage, assertGpuMatchesNative, runNative, cosine, GPU_MIN_COSINE, GPU_MAX_DIFF } from './helpers.mjs';

const NAME = 'tiny-open-clip-bert';
const IMAGES = ['images/rgb_97x61.png', 'images/grey_80x120.png', 'images/photo_120x100.jpg'];
// The last one writes the pad id inside the text: the mask must leave it out.
const TEXTS = ['a photo of a chest x-ray', 'pneumonia', '[CLS] [SEP] [PAD] [MASK] written out', ''];

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
  const modelDir = path.join('tests', 'fixtures', NAME);
  const files = IMAGES.map((f) => path.join('tests', 'fixtures', f));
  assertGpuMatchesNative(NAME, result?.gpu, {
    files,
    images: runNative(['embed-image', '--model', modelDir, ...files]).embeddings,
    texts: runNative(['embed-text', '--model', modelDir, '--', ...TEXTS]).embeddings,
  });
  // Different texts embed differently, or agreement would prove little.
  assert.ok(cosine(result.gpu.texts[0], result.gpu.texts[1]) < 0.999, 'two texts embed alike');
});
