// The WebGPU engine in headless Chromium at full ViT-B/16 size: the image tower's
// every kernel shape (224 px, 16 px patches, 197 tokens, width 768, 12 heads, MLP
// 3072) and the text tower's (width 512, 8 heads, 77 positions), against the CPU
// (wasm) in the same page: cosine >= 0.9999 and max |diff| <= 1e-3.
//
// One layer per tower: Chromium's software adapter (SwiftShader) needs about 190 s
// per image for all twelve, which CI cannot afford; depth repeats the same
// dispatches, and the full 12-layer model is compared natively on lavapipe
// (tests/gpu.rs). The weights are random (`kpl random-model`, std 0.06 so that the two test images embed apart).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { startServer, launchBrowser, runNative, maxAbsDiff, cosine, REPO } from './helpers.mjs';

const MODEL = path.join('build', 'vit-b16-1layer');
const MIN_COSINE = 0.9999;
const MAX_DIFF = 1e-3;
const IMAGES = ['images/rgb_97x61.png', 'images/grey_80x120.png'];
const TEXTS = ['a chest x-ray with pneumonia', 'a normal fundus photograph with a healthy optic disc', 'x'];

let server;
let browser;
let got;

before(async () => {
  const written = runNative(['random-model', '--preset', 'vit-b16', '--vision-layers', '1', '--text-layers', '1', '--std', '0.06', '-o', MODEL]);
  assert.equal(written.random_weights, true);
  server = await startServer({ model: path.join(REPO, MODEL), test: true });
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  await page.goto(`${server.url}/test/parity.html`);
  await page.waitForFunction(() => document.documentElement.dataset.ready === 'true', null, { timeout: 30000 });
  got = await page.evaluate((job) => window.kplServedModelParity(job), { images: IMAGES, texts: TEXTS });
}, { timeout: 600000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

test('ViT-B/16-sized towers: WebGPU in Chromium matches the CPU in the same page', () => {
  assert.equal(got.isRandom, true);
  let minCos = 1;
  let maxDiff = 0;
  const check = (what, a, b) => {
    const c = cosine(a, b);
    const d = maxAbsDiff(a, b);
    minCos = Math.min(minCos, c);
    maxDiff = Math.max(maxDiff, d);
    assert.ok(c >= MIN_COSINE && d <= MAX_DIFF, `${what}: cosine ${c}, max |diff| ${d}`);
  };
  assert.equal(got.gpu.images.length, IMAGES.length);
  IMAGES.forEach((f, i) => check(f, got.gpu.images[i], got.cpu.images[i]));
  TEXTS.forEach((t, i) => check(JSON.stringify(t), got.gpu.texts[i], got.cpu.texts[i]));
  // Different images must embed differently, or agreement would prove little.
  const between = cosine(got.cpu.images[0], got.cpu.images[1]);
  assert.ok(between < 0.99, `the two images embed alike (cosine ${between})`);
  console.log(
    `# ViT-B/16 sizes (1 layer) on ${got.gpu.adapter}: min cosine ${minCos.toFixed(7)}, max |diff| ${maxDiff.toExponential(2)}; ` +
      `CPU ${got.cpuImageMs.toFixed(0)} ms per image, WebGPU ${got.gpuMs.toFixed(0)} ms for ${IMAGES.length} images + ${TEXTS.length} texts`,
  );
});
