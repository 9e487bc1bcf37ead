// Time to the first result on a page load with the weights already cached (the second
// visit), against the image encoder's own time for one image.
//
// The image is given as soon as the page's script has run (the worker queues it
// behind the model and the knowledge base), and the time to the first result is the
// page's 'kpl-first-result' performance mark (milliseconds since navigation start).
// The encoder time is the worker's own measure of its embedImage call for that image
// (decode, preprocess, vision tower), on the card as data-encode-ms.
//
// Goal: first result ≤ 2 × encoder time + ALLOWANCE_MS. With the tiny random fixture
// model the encoder takes ~50 ms for the first image (cold code; ~6 ms warm), so the
// fixed costs (navigation, wasm compilation, model and base loading: 0.7–1.2 s on a
// busy 2-core machine) dominate: ratio 15–22. The test prints the numbers and their
// breakdown and asserts a looser bound, a 3 s allowance (KPL_SPEED_ALLOWANCE_MS).
// Measured with the random ViT-B/16 q8 bundle (below): first result 4.4 s, encoder
// 2.6 s, ratio 1.7, within the goal. Set
// KPL_SPEED_MODEL to a real-size model folder or bundle (and KPL_SPEED_KB to a folder
// with its TASK.kplkb when the bundle lists none) to measure a realistic ratio, e.g.
//
//   kpl build-kb --model bench/out/vit-b16-random knowledge/chest-xray-pneumonia \
//     -o /tmp/kb/chest-xray-pneumonia.kplkb
//   KPL_SPEED_MODEL=bench/out/vit-b16-q8 KPL_SPEED_KB=/tmp/kb node --test tests/browser/speed.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, launchBrowser, ensureKnowledgeBases, fixtureImage } from './helpers.mjs';

const MODEL = process.env.KPL_SPEED_MODEL || 'tests/fixtures/tiny-quickgelu-f32';
/** Navigation + wasm compile + model and base load from the cache, on a slow 2-core CI machine. */
const ALLOWANCE_MS = Number(process.env.KPL_SPEED_ALLOWANCE_MS || 3000);
const KB = process.env.KPL_SPEED_KB || null;
const RUNS = Number(process.env.KPL_SPEED_RUNS || 3);
const IMAGE = process.env.KPL_SPEED_IMAGE || 'grey_80x120.png';

let server;
let browser;
let page;

before(async () => {
  if (!KB && !process.env.KPL_SPEED_MODEL) ensureKnowledgeBases(MODEL);
  server = await startServer({ model: MODEL, kb: KB });
  browser = await launchBrowser();
  page = await browser.context.newPage();
  // First visit: the service worker installs and caches the app, the wasm and the model,
  await page.goto(`${server.url}/`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 120000 });
  await page.locator('body[data-offline-ready="true"]').waitFor({ timeout: 60000 });
  // ... and 'auto' measures the backends once; later visits reuse its choice.
  await page.locator('body[data-backend-settled="true"]').waitFor({ timeout: 120000 });
}, { timeout: 240000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

async function secondLoad(image) {
  await page.goto(`${server.url}/`, { waitUntil: 'domcontentloaded' });
  await page.locator('#file-input').setInputFiles([fixtureImage(image)]);
  const card = page.locator(`[data-kpl-result][data-file="${image}"]`);
  await card.waitFor({ timeout: 120000 });
  return page.evaluate(() => {
    const mark = (name) => performance.getEntriesByName(name)[0]?.startTime ?? NaN;
    const card = document.querySelector('[data-kpl-result]');
    const nav = performance.getEntriesByType('navigation')[0];
    return {
      firstResult: mark('kpl-first-result'),
      modelReady: mark('kpl-model-ready'),
      kbReady: mark('kpl-kb-ready'),
      domContentLoaded: nav?.domContentLoadedEventEnd ?? NaN,
      encode: Number(card.dataset.encodeMs),
      classify: Number(card.dataset.classifyMs),
      wasm: performance.getEntriesByName('kpl-model-ready')[0]?.detail?.wasm ?? NaN,
      fetch: performance.getEntriesByName('kpl-model-ready')[0]?.detail?.fetch ?? NaN,
      parse: performance.getEntriesByName('kpl-model-ready')[0]?.detail?.parse ?? NaN,
      controlled: Boolean(navigator.serviceWorker.controller),
    };
  });
}

test('first result on a cached load vs the encoder time for one image', { timeout: 600000 }, async () => {
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await secondLoad(IMAGE));
  const median = (key) => runs.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  const m = Object.fromEntries(Object.keys(runs[0]).filter((k) => k !== 'controlled').map((k) => [k, median(k)]));
  const ratio = m.firstResult / m.encode;
  console.log(`model ${MODEL}, ${RUNS} cached loads (median ms): DOMContentLoaded ${m.domContentLoaded.toFixed(0)}, ` +
    `model ready ${m.modelReady.toFixed(0)}, base ready ${m.kbReady.toFixed(0)}, first result ${m.firstResult.toFixed(0)}; ` +
    `image encoder ${m.encode.toFixed(2)}, classify ${m.classify.toFixed(2)}; in the worker's load: wasm ready ${m.wasm.toFixed(0)}, ` +
    `fetch ${m.fetch.toFixed(0)}, model built ${m.parse.toFixed(0)}`);
  console.log(`first result / encoder time = ${ratio.toFixed(1)}; overhead beyond 2 × encoder = ${(m.firstResult - 2 * m.encode).toFixed(0)} ms ` +
    `(allowance ${ALLOWANCE_MS} ms)`);
  assert.ok(runs.every((r) => r.controlled), 'the cached loads go through the service worker');
  assert.ok(m.encode > 0 && Number.isFinite(m.firstResult), JSON.stringify(runs));
  assert.ok(m.modelReady <= m.firstResult && m.kbReady <= m.firstResult);
  assert.ok(m.firstResult <= 2 * m.encode + ALLOWANCE_MS,
    `first result after ${m.firstResult.toFixed(0)} ms > 2 × ${m.encode.toFixed(1)} ms + ${ALLOWANCE_MS} ms`);
});
