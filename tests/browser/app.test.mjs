// The app page (www/) with the random fixture model: pick files through the file
// input, get a result card for the image and an error card for the non-image, see
// the random-weights banner, and make no request to any other origin.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, launchBrowser, readReference, maxAbsDiff, FIXTURES, OUT } from './helpers.mjs';

const MODEL = 'tiny-quickgelu-f32';
const IMAGE = 'images/rgb_97x61.png';
const LABELS = ['normal', 'pneumonia', 'tuberculosis'];

let server;
let browser;
let page;
const requests = [];
const failedResponses = [];
const consoleErrors = [];
const pageErrors = [];

before(async () => {
  server = await startServer({ model: `tests/fixtures/${MODEL}` });
  browser = await launchBrowser({ viewport: { width: 900, height: 900 } });
  page = await browser.context.newPage();
  page.on('request', (r) => requests.push(r.url()));
  page.on('response', (r) => r.status() >= 400 && failedResponses.push(`${r.status()} ${r.url()}`));
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${server.url}/`);
  // Plain CLIP over typed labels: the "custom labels" mode of the task selector.
  await page.locator('#task option[value="custom"]').waitFor({ state: 'attached', timeout: 30000 });
  await page.selectOption('#task', 'custom');
  await page.locator('#file-input').setInputFiles([
    { name: path.basename(IMAGE), mimeType: 'image/png', buffer: fs.readFileSync(path.join(FIXTURES, IMAGE)) },
    { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('this is not an image\n') },
  ]);
  await page.locator('[data-kpl-result]').first().waitFor({ timeout: 60000 });
  await page.locator('[data-kpl-error]').first().waitFor({ timeout: 30000 });
}, { timeout: 180000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

test('the image gets a result card with a top label among the labels', async () => {
  const cards = page.locator('[data-kpl-result]');
  assert.equal(await cards.count(), 1);
  const card = cards.first();
  assert.equal(await card.getAttribute('data-file'), path.basename(IMAGE));
  assert.equal(await card.getAttribute('data-method'), 'clip');
  const label = await card.getAttribute('data-label');
  assert.ok(LABELS.includes(label), `data-label ${label} is one of the labels`);
  assert.equal(await card.locator('meter').count(), LABELS.length, 'one score bar per label');
  assert.match(await card.innerText(), /Embedded and scored in [\d.]+ ms/);
  assert.match(await card.locator('.embedding').innerText(), /embedding\[0\.\.8\] of 24: (-?\d\.\d{4}, ){8}/);

  // The page's probabilities are transformers' (PNG decoding is exact, see parity.test.mjs).
  const scores = JSON.parse(await card.getAttribute('data-scores'));
  const expected = readReference().models[MODEL].classify.find((c) => c.file === IMAGE);
  assert.deepEqual(expected.labels, LABELS);
  scores.forEach((p, i) => assert.ok(Math.abs(p - expected.probs[i]) <= 1e-4, `${LABELS[i]}: ${p} vs ${expected.probs[i]}`));
  const best = expected.probs.indexOf(Math.max(...expected.probs));
  assert.equal(label, LABELS[best]);
});

test('a non-image file gets an error card and does not stop the batch', async () => {
  const errors = page.locator('[data-kpl-error]');
  assert.equal(await errors.count(), 1);
  assert.equal(await errors.first().getAttribute('data-file'), 'notes.txt');
  assert.match(await errors.first().innerText(), /notes\.txt[\s\S]*not an image this page can read/);
  assert.equal(await page.locator('[data-kpl-pending]').count(), 0, 'no card is left pending');
});

test('the random-weights banner is visible', async () => {
  const banner = page.locator('#random-banner');
  assert.ok(await banner.isVisible());
  assert.match(await banner.innerText(), /random test weights.*meaningless.*not a diagnosis/i);
  assert.match(await page.locator('#status-text').innerText(), /Model ready/);
});

test('every request goes to the server, and nothing fails or violates the CSP', () => {
  const origin = new URL(server.url).origin;
  // The test server isolates the page: the worker runs the threaded build (its
  // relaxed-SIMD twin in Chromium), whose pool's Web Workers start from a same-origin
  // module file (no blob: URL).
  assert.ok(requests.some((u) => u.endsWith('/pkg/threads-relaxed/kpl_bg.wasm')), 'the request log covers the worker (wasm)');
  assert.ok(requests.some((u) => u.endsWith('/pkg/threads-relaxed/workerHelpers.js')), 'the pool\'s workers are in the request log');
  assert.ok(requests.some((u) => u.endsWith('/model/model.safetensors')), 'the request log covers the model fetch');
  const foreign = requests.filter((u) => {
    const url = new URL(u);
    if (url.protocol === 'data:') return false;
    return url.origin !== origin; // blob: URLs carry their creator's origin
  });
  assert.deepEqual(foreign, [], 'no request leaves the server');
  assert.deepEqual(failedResponses, [], 'every request succeeds');
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(consoleErrors, []);
});

test('the worker protocol: embed-image and embed-text match the reference; bad requests are refused', { timeout: 60000 }, async () => {
  const ref = readReference().models[MODEL];
  const image = ref.images.find((i) => i.file === IMAGE);
  const text = ref.texts.find((t) => t.text === 'pneumonia');
  const got = await page.evaluate(async ({ imagePath, text }) => {
    const { KplClient } = await import('/protocol.js');
    const worker = new Worker('/worker.js', { type: 'module' });
    try {
      const client = new KplClient(worker);
      const progress = [];
      const info = await client.load('/model/', (p) => progress.push(p));
      const bytes = await (await fetch(imagePath)).arrayBuffer();
      const img = await client.embedImage('x.png', bytes);
      const txt = await client.embedText([text]);
      const refused = await client.classify('x.png', bytes, []).then(() => 'accepted', (e) => e.message);
      const bad = await client.embedImage('bad.png', new ArrayBuffer(8)).then(() => 'accepted', (e) => e.message);
      const last = progress.at(-1);
      return {
        info,
        image: Array.from(img.embedding),
        text: Array.from(txt.embeddings[0]),
        refused,
        bad,
        progress: { count: progress.length, loaded: last.loaded, total: last.total },
      };
    } finally {
      worker.terminate();
    }
  }, { imagePath: `/fixtures/${IMAGE}`, text: text.text });
  assert.equal(got.info.isRandom, true);
  assert.equal(got.info.embeddingDim, 24);
  assert.equal(got.info.imageSize, 64);
  assert.ok(got.progress.count >= 2 && got.progress.loaded === got.progress.total && got.progress.total === got.info.bytes,
    `progress counts bytes: ${JSON.stringify(got.progress)}, ${got.info.bytes} bytes`);
  assert.ok(maxAbsDiff(got.image, image.embedding) <= 1e-5, 'embed-image');
  assert.ok(maxAbsDiff(got.text, text.embedding) <= 1e-5, 'embed-text');
  assert.match(got.refused, /labels must be a non-empty list/);
  assert.match(got.bad, /bad\.png/);
});

test('the controls are labelled and the page fits a phone-width screen', async () => {
  for (const name of ['Export CSV', 'Export JSON', 'Clear offline cache']) {
    assert.equal(await page.getByRole('button', { name }).count(), 1, `one button named ${name}`);
  }
  for (const name of ['Task', 'Labels', 'Choose images']) {
    assert.equal(await page.getByLabel(name, { exact: false }).count(), 1, `one control labelled ${name}`);
  }
  // The full page for the test record (gitignored); the README's docs/screenshot.png
  // comes from kpl.test.mjs (KPL results).
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, 'page.png'), fullPage: true });

  await page.setViewportSize({ width: 360, height: 740 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 360px screen`);
  await page.screenshot({ path: path.join(OUT, 'page-phone.png'), fullPage: true });
});
