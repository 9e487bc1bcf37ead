// The app with knowledge bases (built by `make kb` from knowledge/ with the random
// fixture model): one image → single-image/proxies result, three images together →
// transductive KPL; export; the <kpl-classifier> widget under the strict CSP; then,
// after one visit, the page works offline (service worker + Cache API; the server is
// stopped for that, so this file's offline test runs last but one); and no
// request ever leaves the origin.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, launchBrowser, ensureKnowledgeBases, CSP, FIXTURES, OUT, REPO } from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';
const TASK = 'chest-xray-pneumonia';
const image = (name) => ({ name, mimeType: name.endsWith('.jpg') ? 'image/jpeg' : 'image/png', buffer: fs.readFileSync(path.join(FIXTURES, 'images', name)) });

let server;
let browser;
let page;
let classes;
const requests = [];
const consoleErrors = [];
const pageErrors = [];

before(async () => {
  ensureKnowledgeBases(MODEL);
  server = await startServer({ model: MODEL });
  browser = await launchBrowser({ viewport: { width: 1000, height: 900 } });
  // The context sees the requests of every page, worker and the service worker.
  browser.context.on('request', (r) => requests.push(r.url()));
  page = await browser.context.newPage();
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const manifest = await (await fetch(`${server.url}/model/manifest.json`)).json();
  classes = manifest.knowledge.find((k) => k.task === TASK).classes;
  await page.goto(`${server.url}/`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
}, { timeout: 120000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

test('the manifest lists one knowledge base per task, served at /kb/', async () => {
  const manifest = await (await fetch(`${server.url}/model/manifest.json`)).json();
  const tasks = fs.readdirSync(path.join(FIXTURES, '..', '..', 'knowledge')).filter((t) =>
    fs.existsSync(path.join(FIXTURES, '..', '..', 'knowledge', t, 'task.json')));
  assert.deepEqual(manifest.knowledge.map((k) => k.task), tasks.sort());
  for (const k of manifest.knowledge) {
    assert.equal(k.path, `/kb/${k.task}.kplkb`);
    assert.ok(k.title && k.classes.length >= 2, k.task);
    const res = await fetch(server.url + k.path, { method: 'HEAD' });
    assert.equal(res.status, 200, k.path);
  }
  assert.equal(await page.locator('#task').inputValue(), TASK, 'a chest X-ray task is the default');
});

test('one image → a result with one of the task labels, single-image or proxies', { timeout: 60000 }, async () => {
  const t0 = Date.now();
  await page.locator('#file-input').setInputFiles([image('grey_80x120.png')]);
  const card = page.locator('[data-kpl-result][data-file="grey_80x120.png"]');
  await card.waitFor({ timeout: 30000 });
  const ms = Date.now() - t0;
  assert.ok(classes.includes(await card.getAttribute('data-label')));
  assert.ok(['single-image', 'proxies'].includes(await card.getAttribute('data-method')));
  assert.equal(await card.locator('meter').count(), 2 * classes.length, 'plain CLIP and KPL bars');
  // Cards are `content-visibility: auto`: read the text from the DOM, not from the rendering
  // (innerText once returned '' for this card in a full-suite run on a loaded machine).
  const text = await card.textContent();
  assert.match(text, /Plain CLIP[\s\S]*KPL/);
  assert.match(text, /similarity 0\.\d{3}/, 'the evidence with its similarity');
  assert.match(text, /CPU \(WebAssembly\)/);
  console.log(`# one image: result in ${ms} ms`);
});

test('three images chosen together → three transductive KPL results', { timeout: 60000 }, async () => {
  const names = ['rgb_97x61.png', 'small_30x40.png', 'photo_120x100.jpg'];
  const t0 = Date.now();
  await page.locator('#file-input').setInputFiles(names.map(image));
  await page.waitForFunction((n) => document.querySelectorAll('[data-kpl-result][data-method="kpl"]').length === n, 3, { timeout: 30000 });
  console.log(`# three images: KPL results in ${Date.now() - t0} ms`);
  for (const name of names) {
    const card = page.locator(`[data-kpl-result][data-file="${name}"]`);
    assert.equal(await card.getAttribute('data-method'), 'kpl');
    assert.ok(classes.includes(await card.getAttribute('data-label')));
  }
  assert.equal(await page.locator('[data-kpl-pending]').count(), 0);
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, 'page-kpl.png'), fullPage: true });
  // The README's docs/screenshot.png: committed, and its timings differ on every run, so
  // rewritten only when missing or with UPDATE_SCREENSHOT=1 (`make screenshot`).
  const readmeShot = path.join(REPO, 'docs', 'screenshot.png');
  if (process.env.UPDATE_SCREENSHOT === '1' || !fs.existsSync(readmeShot)) {
    fs.mkdirSync(path.dirname(readmeShot), { recursive: true });
    await page.screenshot({ path: readmeShot, fullPage: true });
  }
  await page.setViewportSize({ width: 360, height: 740 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: path.join(OUT, 'page-kpl-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1000, height: 900 });
  assert.ok(overflow <= 0, `the KPL cards are ${overflow}px wider than a 360px screen`);
});

test('the results export as JSON and CSV (Blob URLs, no network)', async () => {
  const [json] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  const data = JSON.parse(fs.readFileSync(await json.path(), 'utf8'));
  assert.equal(data.results.length, 4);
  assert.deepEqual(data.results.map((r) => r.method).slice(1), ['kpl', 'kpl', 'kpl']);
  const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const lines = fs.readFileSync(await csv.path(), 'utf8').trim().split('\n');
  assert.equal(lines.length, 5);
  assert.match(lines[0], /^file,task,method,label/);
});

test('a non-image file in a batch gets an error card; the rest still runs KPL together', { timeout: 60000 }, async () => {
  const before = await page.locator('[data-kpl-result]').count();
  await page.locator('#file-input').setInputFiles([
    image('grey16_70x90.png'),
    { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image\n') },
    image('rgba_64x48.png'),
  ]);
  await page.locator('[data-kpl-error][data-file="notes.txt"]').waitFor({ timeout: 30000 });
  await page.waitForFunction((n) => document.querySelectorAll('[data-kpl-result]').length === n, before + 2, { timeout: 30000 });
  for (const name of ['grey16_70x90.png', 'rgba_64x48.png']) {
    assert.equal(await page.locator(`[data-kpl-result][data-file="${name}"]`).getAttribute('data-method'), 'kpl');
  }
  assert.equal(await page.locator('[data-kpl-pending]').count(), 0);
});

test('the <kpl-classifier> widget works under the strict CSP and emits kpl-result', { timeout: 60000 }, async () => {
  const widget = await browser.context.newPage();
  const errors = [];
  widget.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  widget.on('pageerror', (e) => errors.push(e.message));
  const res = await widget.goto(`${server.url}/embed-example.html`);
  assert.equal(res.headers()['content-security-policy'], CSP);
  await widget.locator('kpl-classifier[data-ready="true"]').waitFor({ timeout: 30000 });
  const detail = widget.evaluate(() => new Promise((resolve) =>
    document.querySelector('kpl-classifier').addEventListener('kpl-result', (e) => resolve(e.detail), { once: true })));
  await widget.locator('kpl-classifier input[type=file]').setInputFiles([image('rgb_97x61.png')]);
  const d = await detail;
  assert.equal(d.file, 'rgb_97x61.png');
  assert.ok(classes.includes(d.label));
  assert.equal(d.scores.length, classes.length);
  assert.ok(['single-image', 'proxies'].includes(d.method));
  assert.ok(Array.isArray(d.evidence) && d.evidence.length > 0);
  assert.match(await widget.locator('#log').innerText(), /kpl-result: rgb_97x61\.png/);
  assert.deepEqual(errors, [], 'no CSP violation or error');
  await widget.close();
});

test('after one visit the page loads and classifies with the network off', { timeout: 90000 }, async () => {
  await page.locator('body[data-offline-ready="true"]').waitFor({ timeout: 30000 });
  await page.click('#cache-refresh');
  await page.waitForFunction(() => Number(document.getElementById('cache-info').dataset.bytes) > 1e6, null, { timeout: 10000 });
  await browser.context.setOffline(true);
  // And really off: the server goes away, so only the service worker's cache can answer
  // (whether or not the browser's offline emulation reaches the service worker).
  await server.close();
  try {
    await page.reload();
    await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 30000 });
    assert.equal(await page.evaluate(() => navigator.onLine), false);
    await page.locator('#file-input').setInputFiles([image('grey_80x120.png'), image('rgb_97x61.png')]);
    await page.waitForFunction(() => document.querySelectorAll('[data-kpl-result][data-method="kpl"]').length === 2, null, { timeout: 30000 });
  } finally {
    await browser.context.setOffline(false);
  }
  await page.click('#cache-clear');
  await page.waitForFunction(() => document.getElementById('cache-info').dataset.bytes === '0', null, { timeout: 10000 });
});

test('nothing left the origin, and nothing failed', () => {
  const origin = new URL(server.url).origin;
  assert.ok(requests.some((u) => u.endsWith('/kb/chest-xray-pneumonia.kplkb')), 'the log covers the knowledge base');
  const foreign = requests.filter((u) => {
    const url = new URL(u);
    return url.protocol !== 'data:' && url.protocol !== 'blob:' && url.origin !== origin;
  });
  assert.deepEqual(foreign, []);
  assert.deepEqual(pageErrors, []);
  // Offline, the browser logs the failed network attempts the service worker answers from the cache.
  assert.deepEqual(consoleErrors.filter((m) => !/ERR_INTERNET_DISCONNECTED|Failed to load resource/.test(m)), []);
});
