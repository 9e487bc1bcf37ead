// Recovery from a crash of the WebAssembly module, and Cancel, in the page and the
// <kpl-classifier> widget, with the random fixture model.
//
// The crash is forced with the test hook (pages opened with ?test-hooks=1): a file
// whose name contains `__trap__` makes the module panic (`debugTrap`,
// src/wasm/test_hooks.rs), which in wasm aborts as `RuntimeError: unreachable`. Only that
// file may fail; the worker is replaced, the model and the knowledge base come back
// from the browser's caches (the server counts requests: no model file is fetched
// again), the backend is the one chosen before, and the batch goes on.
//
// In the threaded build (the test server sends COOP/COEP, so the page runs pkg/threads/)
// `__pooltrap__` / `__pooloom__` crash a thread of rayon's pool instead (a panic, an
// allocation failure: `debugPoolTrap`): the module worker then waits on rayon's latch
// for good, and only the pool thread's report on its crash channel ends the wait.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import {
  startServer, launchBrowser, ensureKnowledgeBases, fixtureImage, collectErrors, makePng, requestCounts, modelRequests,
} from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';

let server;
let browser;
let page;
let errors;

/** Console errors the forced crash is expected to print (the panic message, the trap). */
const expectedCrashNoise = (text) => /debugTrap|debugPoolTrap|unreachable|panicked|out of memory/.test(text);

/** Six different images; the third is named to make the module crash in test-hooks mode. */
function sixImages(prefix, trapAt = 2) {
  const names = ['a', 'b', 'c', 'd', 'e', 'f'];
  return names.map((n, i) => ({
    name: i === trapAt ? `${prefix}-${n}__trap__.png` : `${prefix}-${n}.png`,
    mimeType: 'image/png',
    buffer: makePng(40 + 9 * i, 30 + 7 * i, { seed: i + 1, color: i % 2 ? 'grey' : 'rgb' }),
  }));
}

before(async () => {
  ensureKnowledgeBases(MODEL);
  server = await startServer({ model: MODEL });
  browser = await launchBrowser({ viewport: { width: 1000, height: 900 } });
  page = await browser.context.newPage();
  errors = collectErrors(page);
  await page.goto(`${server.url}/?test-hooks=1`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
  // The service worker has cached the app, the wasm, the model and the bases.
  await page.locator('body[data-offline-ready="true"]').waitFor({ timeout: 60000 });
  await page.evaluate(() => {
    window.sameDocument = true;
  });
}, { timeout: 120000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

async function clearResults() {
  if (await page.locator('#clear').isEnabled()) await page.click('#clear');
  await page.waitForFunction(() => document.querySelectorAll('#results > li').length === 0);
}

/** Adds files and waits until no card is pending; returns the results and errors by file. */
async function addFiles(files, { timeout = 60000 } = {}) {
  await page.locator('#file-input').setInputFiles(files);
  await page.waitForFunction((n) => document.querySelectorAll('#results > li').length === n &&
    document.querySelectorAll('[data-kpl-pending]').length === 0, files.length, { timeout });
  return page.evaluate(() => ({
    results: Object.fromEntries(Array.from(document.querySelectorAll('[data-kpl-result]'), (c) => [c.dataset.file, {
      label: c.dataset.label, method: c.dataset.method, scores: JSON.parse(c.dataset.scores), backend: c.dataset.backend,
    }])),
    errors: Object.fromEntries(Array.from(document.querySelectorAll('[data-kpl-error]'), (c) => [c.dataset.file, c.textContent])),
  }));
}

test('a crash on one file: that file gets an error card naming it, the batch goes on, no reload, no model download', { timeout: 120000 }, async () => {
  await clearResults();
  const before = modelRequests(await requestCounts(server));
  assert.ok(before['GET /model/model.safetensors'] >= 1, JSON.stringify(before));
  const files = sixImages('one');
  const trap = files[2].name;
  const { results, errors: failed } = await addFiles(files);
  assert.deepEqual(Object.keys(failed), [trap]);
  assert.match(failed[trap], new RegExp(`${trap.replace('.', '\\.')}: the WebAssembly module crashed on this file \\(.*unreachable.*\\); the module was restarted`));
  const good = files.filter((f) => f.name !== trap).map((f) => f.name);
  assert.deepEqual(Object.keys(results).sort(), good.sort());
  for (const name of good) assert.equal(results[name].method, 'kpl', `${name}: KPL over the five that embedded`);
  // One restart, announced; the same document (no reload); nothing of the model fetched again.
  assert.equal(await page.locator('body').getAttribute('data-worker-restarts'), '1');
  assert.match(await page.locator('#worker-note').textContent(), new RegExp(`crashed on ${trap.replace('.', '\\.')} and was restarted`));
  assert.equal(await page.evaluate(() => window.sameDocument), true);
  assert.deepEqual(modelRequests(await requestCounts(server)), before, 'the model files and bases come from the browser cache');
  assert.match(await page.locator('#embed-progress-text').innerText(), /^6 of 6 images encoded\.$/);

  // A later batch works, on the restarted module: the same five images alone give the
  // same scores (the restarted model is the same model).
  await clearResults();
  const again = await addFiles(files.filter((f) => f.name !== trap));
  assert.deepEqual(Object.keys(again.errors), []);
  for (const name of good) assert.deepEqual(again.results[name].scores, results[name].scores, name);
  assert.equal(await page.locator('body').getAttribute('data-worker-restarts'), '1');
  assert.deepEqual(modelRequests(await requestCounts(server)), before);
});

test('the backend chosen before the crash is restored (WebGPU), and a crash on the first file', { timeout: 120000 }, async () => {
  await clearResults();
  await page.selectOption('#backend', 'webgpu');
  await page.locator('body[data-model-ready="true"][data-backend="webgpu"]').waitFor({ timeout: 60000 });
  const before = modelRequests(await requestCounts(server));
  const files = sixImages('gpu', 0);
  const { results, errors: failed } = await addFiles(files);
  assert.deepEqual(Object.keys(failed), [files[0].name]);
  assert.equal(Object.keys(results).length, 5);
  for (const r of Object.values(results)) assert.equal(r.backend, 'webgpu', 'embedded on WebGPU after the restart');
  assert.equal(await page.locator('body').getAttribute('data-backend'), 'webgpu');
  assert.equal(await page.locator('body').getAttribute('data-worker-restarts'), '2');
  assert.deepEqual(modelRequests(await requestCounts(server)), before);
  // Back to the CPU for the rest of the file.
  await page.selectOption('#backend', 'wasm');
  await page.locator('body[data-model-ready="true"][data-backend="wasm"]').waitFor({ timeout: 60000 });
});

test('Cancel in the page: stops after the image in progress, keeps and exports what finished (KPL over those), and the page carries on', { timeout: 120000 }, async () => {
  await clearResults();
  // After the file named with the hold marker the worker waits for the Cancel (test
  // hook, www/worker.js): the threaded build may embed all 60 small images before a
  // click on a loaded machine lands, and the Cancel button rightly goes away then.
  const HELD = 9;
  const files = Array.from({ length: 60 }, (_, i) => ({
    name: `cancel-${String(i).padStart(2, '0')}${i === HELD ? '__hold__' : ''}.png`, mimeType: 'image/png', buffer: makePng(300, 240, { seed: 100 + i }),
  }));
  await page.locator('#file-input').setInputFiles(files);
  const cancel = page.getByRole('button', { name: 'Cancel' });
  await cancel.waitFor({ state: 'visible' });
  await page.waitForFunction(() => Number(document.getElementById('embed-status').dataset.done) >= 5, null, { timeout: 60000 });
  await cancel.click();
  await page.waitForFunction(() => document.querySelectorAll('[data-kpl-pending]').length === 0, null, { timeout: 60000 });
  const state = await page.evaluate(() => ({
    results: Array.from(document.querySelectorAll('[data-kpl-result]'), (c) => ({ file: c.dataset.file, method: c.dataset.method })),
    errors: document.querySelectorAll('[data-kpl-error]').length,
    cancelled: Number(document.getElementById('embed-status').dataset.cancelled),
    text: document.getElementById('embed-progress-text').textContent,
  }));
  const n = state.results.length;
  // Stopped after the image in progress when the click landed: at the held one at the latest.
  assert.ok(n >= 5 && n <= HELD + 1, `${n} results`);
  assert.equal(state.errors, 0);
  assert.equal(state.cancelled, 60 - n, 'the rest were not processed');
  assert.match(state.text, new RegExp(`^${n} of ${n} images encoded\\. Cancelled: ${60 - n} images? not processed\\.$`));
  assert.deepEqual(state.results.map((r) => r.file), files.slice(0, n).map((f) => f.name), 'the first n, in order');
  for (const r of state.results) assert.equal(r.method, n > 1 ? 'kpl' : 'single-image');
  assert.ok(!(await cancel.isVisible()), 'no Cancel button once nothing runs');
  const [json] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  const exported = JSON.parse(fs.readFileSync(await json.path(), 'utf8'));
  assert.equal(exported.results.length, n);
  // The page carries on.
  await clearResults();
  const next = await addFiles(files.slice(0, 3));
  assert.equal(Object.keys(next.results).length, 3);
});

test('a crash in a thread of the pool (a panic, memory running out): that file fails naming it and the problem, the batch goes on', { timeout: 120000 }, async () => {
  await clearResults();
  assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'the page runs the threaded build');
  assert.ok(await page.locator('#threads-note').isHidden(), 'no note: the threads asked for run');
  const restarts = Number(await page.locator('body').getAttribute('data-worker-restarts') ?? '0');
  const before = modelRequests(await requestCounts(server));
  const files = sixImages('pool', -1).map((f, i) => (i === 1 ? { ...f, name: 'pool-b__pooltrap__.png' } : i === 3 ? { ...f, name: 'pool-d__pooloom__.png' } : f));
  const [panic, oom] = [files[1].name, files[3].name];
  const { results, errors: failed } = await addFiles(files);
  assert.deepEqual(Object.keys(failed).sort(), [panic, oom].sort());
  const crashed = (name, what) => new RegExp(`${name.replace('.', '\\.')}: the WebAssembly module crashed on this file \\(a thread of the WebAssembly pool crashed \\(RuntimeError: unreachable: ${what}\\)\\); the module was restarted`);
  assert.match(failed[panic], crashed(panic, 'panicked at .*debugPoolTrap: a deliberate panic in a pool thread \\(test hook\\)'));
  assert.match(failed[oom], crashed(oom, 'memory allocation of 1073741824 bytes failed \\(out of memory\\)'));
  const good = files.filter((f) => f.name !== panic && f.name !== oom).map((f) => f.name);
  assert.deepEqual(Object.keys(results).sort(), good.sort());
  for (const name of good) assert.equal(results[name].method, 'kpl', `${name}: KPL over the four that embedded`);
  assert.equal(await page.locator('body').getAttribute('data-worker-restarts'), String(restarts + 2));
  assert.match(await page.locator('#embed-progress-text').innerText(), /^6 of 6 images encoded\.$/);
  assert.deepEqual(modelRequests(await requestCounts(server)), before, 'the model files and bases come from the browser cache');
  // The restarted module embeds as before: the same scores for the same four alone.
  await clearResults();
  const again = await addFiles(files.filter((f) => good.includes(f.name)));
  assert.deepEqual(Object.keys(again.errors), []);
  for (const name of good) assert.deepEqual(again.results[name].scores, results[name].scores, name);
});

test('the widget: a crash on one file is an error entry, the others are classified, then Cancel', { timeout: 120000 }, async () => {
  const widget = await browser.context.newPage();
  const widgetErrors = collectErrors(widget);
  try {
    await widget.goto(`${server.url}/embed-example.html?test-hooks=1`);
    await widget.locator('kpl-classifier[data-ready="true"]').waitFor({ timeout: 60000 });
    const before = modelRequests(await requestCounts(server));
    const files = sixImages('widget').map((f) => ({ name: f.name, bytes: Array.from(f.buffer) }));
    const run = (list) => widget.evaluate(async (list) => {
      const w = document.querySelector('kpl-classifier');
      const out = await w.classifyFiles(list.map((f) => new File([new Uint8Array(f.bytes)], f.name, { type: 'image/png' })));
      return {
        out: out.map(({ file, method }) => ({ file, method })),
        errors: Array.from(w.shadowRoot.querySelectorAll('[data-kpl-error]'), (e) => [e.dataset.file, e.textContent]),
        restarts: w.dataset.workerRestarts ?? '0',
      };
    }, list);
    const first = await run(files);
    assert.deepEqual(first.out.map((o) => o.file), files.filter((_, i) => i !== 2).map((f) => f.name));
    assert.ok(first.out.every((o) => o.method === 'kpl'));
    assert.equal(first.errors.length, 1);
    assert.equal(first.errors[0][0], files[2].name);
    assert.match(first.errors[0][1], /the WebAssembly module crashed on this file \(.*unreachable.*\); the module was restarted/);
    assert.equal(first.restarts, '1');
    assert.deepEqual(modelRequests(await requestCounts(server)), before, 'no model file fetched again');
    // Then a clean batch works.
    const second = await run(files.filter((_, i) => i !== 2).map((f) => ({ ...f, name: `again-${f.name}` })));
    assert.equal(second.out.length, 5);

    // Cancel: 40 images, cancelled after a few.
    const cancelled = await widget.evaluate(async () => {
      const w = document.querySelector('kpl-classifier');
      const canvas = new OffscreenCanvas(256, 256);
      const ctx = canvas.getContext('2d');
      const files = [];
      for (let i = 0; i < 40; i++) {
        ctx.fillStyle = `rgb(${i * 6}, ${255 - i * 6}, ${(i * 37) % 256})`;
        ctx.fillRect(0, 0, 256, 256);
        ctx.fillStyle = '#fff';
        ctx.fillRect(i * 5, 0, 20, 256);
        files.push(new File([await canvas.convertToBlob({ type: 'image/png' })], `w-${i}.png`, { type: 'image/png' }));
      }
      let event = null;
      w.addEventListener('kpl-cancelled', (e) => (event = e.detail), { once: true });
      const bar = w.shadowRoot.querySelector('progress');
      const done = w.classifyFiles(files);
      const button = [...w.shadowRoot.querySelectorAll('button')].find((b) => b.textContent === 'Cancel');
      await new Promise((resolve) => {
        const poll = () => (bar.max === 40 && bar.value >= 3 ? resolve() : setTimeout(poll, 5));
        poll();
      });
      const visible = !button.hidden && button.getClientRects().length > 0;
      button.click();
      const out = await done;
      return { n: out.length, methods: [...new Set(out.map((o) => o.method))], event, visible, hiddenAfter: button.hidden, cancelledAttr: w.dataset.cancelled };
    });
    assert.ok(cancelled.visible, 'Cancel is shown while the batch runs');
    assert.ok(cancelled.hiddenAfter, 'and hidden after');
    assert.ok(cancelled.n >= 3 && cancelled.n < 40, `${cancelled.n} classified`);
    assert.deepEqual(cancelled.methods, ['kpl']);
    assert.deepEqual(cancelled.event, { classified: cancelled.n, notProcessed: 40 - cancelled.n });
    assert.equal(cancelled.cancelledAttr, String(40 - cancelled.n));
    assert.deepEqual(widgetErrors.filter((e) => !expectedCrashNoise(e)), []);
  } finally {
    await widget.close();
  }
});

test('the protocol: cancel and memory-usage are validated and answered at once; a plain client reports a crash without a restart', { timeout: 60000 }, async () => {
  const got = await page.evaluate(async () => {
    const { KplClient } = await import('/protocol.js');
    const worker = new Worker('/worker.js?test-hooks=1', { type: 'module' });
    const client = new KplClient(worker);
    try {
      const bad = await client.request({ type: 'cancel' }).then(() => 'accepted', (e) => e.message);
      const unknown = await client.request({ type: 'cancel', target: 9999 });
      await client.load('/model/', undefined, { backend: 'wasm' });
      const memory = await client.memoryUsage();
      const png = await (await fetch('/fixtures/images/rgb_97x61.png')).arrayBuffer();
      const out = await client.embedImages([
        { name: 'ok.png', data: png },
        { name: 'x__trap__.png', data: png },
        { name: 'after.png', data: png },
      ]);
      const later = await client.embedImage('later.png', png).then(() => 'accepted', (e) => e.message);
      return { bad, unknown, memory, results: out.results.map((r) => ({ name: r.name, ok: !!r.embedding, error: r.error ?? null })), later };
    } finally {
      worker.terminate();
    }
  });
  assert.equal(got.bad, 'cancel: target must be the integer id of a request');
  assert.deepEqual(got.unknown, { cancelled: false });
  assert.ok(got.memory.wasmBytes > 1e6, JSON.stringify(got.memory));
  assert.deepEqual(got.results.map((r) => [r.name, r.ok]), [['ok.png', true], ['x__trap__.png', false], ['after.png', false]]);
  assert.match(got.results[1].error, /x__trap__\.png: the WebAssembly module crashed on this file .*could not be restarted/);
  assert.match(got.results[2].error, /after\.png: not processed: the WebAssembly module crashed on x__trap__\.png/);
  assert.match(got.later, /crashed earlier/);
});

test('no unexpected error was logged', () => {
  assert.deepEqual(errors.filter((e) => !expectedCrashNoise(e)), []);
});
