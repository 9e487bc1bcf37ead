// wasm threads in Chromium (issue #14 item 2): the worker runs the threaded build
// (pkg/threads/, rayon's pool over Web Workers sharing the wasm memory) when the page is
// cross-origin isolated and more than one thread is asked for, the single-threaded
// build (pkg/) otherwise, and says why. In Chromium, which runs relaxed SIMD, these are
// their relaxed-SIMD twins (pkg/threads-relaxed/, pkg/relaxed/: worker.js; both with a
// global simd128, so the bound below holds with room).
//
// - The embeddings of the committed f32 fixture and of its q8 bundle (`kpl pack`) at 1,
//   2 and 3 threads are the same bits (the GEMM's panel split and candle's row splits
//   each sum in one fixed order), and close to the single-threaded build's (pkg/, run
//   where the page is not isolated): a build without the threaded one's global
//   simd128, so candle's vector sums round differently (f32 within 1e-6; q8 within
//   1e-4, since a last-bit change of an activation may move its int16 quantisation
//   step).
// - A page without COOP/COEP runs on one thread, with the reason in the page's note
//   and the widget's.
// - The page's setting and the widget's `threads` attribute are honoured.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, bundleServers, embedWithWorkers, collectErrors, maxAbsDiff, REPO } from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';
const TASK = 'chest-xray-pneumonia';
const IMAGES = ['photo_120x100.jpg', 'rgb_97x61.png', 'grey_80x120.png'];
const TEXTS = ['a chest x-ray', 'pneumonia', 'an MRI of the knee with a long description of what it shows'];
/** The largest |difference| allowed between the single-threaded and the threaded build. */
const MAX_BUILD_DIFF = { 'f32 folder': 1e-6, 'q8 bundle': 1e-4 };

let servers;
let isolated;
let notIsolated;
let browser;

before(async () => {
  for (const f of ['kpl.js', 'kpl_bg.wasm', 'workerHelpers.js']) {
    assert.ok(fs.existsSync(path.join(REPO, 'pkg', 'threads', f)), `pkg/threads/${f} is missing: run \`make wasm\``);
  }
  // The q8 bundle at /model/; the f32 folder at /fixtures/.
  servers = await bundleServers(MODEL, TASK, 'kpl-threads-bundle-');
  ({ isolated, notIsolated, browser } = servers);
}, { timeout: 120000 });

after(() => servers?.close());

/**
 * For each thread count, a worker started by KplClient.start with it loads `base` on
 * the CPU and embeds the fixture images and texts: {threads: {info, images, texts}}.
 */
async function embedAtThreads(page, base, counts) {
  const runs = await embedWithWorkers(page, base, counts.map((threads) => ({ threads })), { images: IMAGES, texts: TEXTS });
  return Object.fromEntries(counts.map((threads, i) => [threads, runs[i]]));
}

/** `embedAtThreads` on a new page of `server`, checking the page's isolation first. */
async function embedOn(server, base, counts, crossOriginIsolated) {
  const page = await browser.context.newPage();
  const errors = collectErrors(page);
  try {
    await page.goto(`${server.url}/embed-example.html`);
    assert.equal(await page.evaluate(() => crossOriginIsolated), crossOriginIsolated, `${server.url}: crossOriginIsolated`);
    const r = await embedAtThreads(page, base, counts);
    assert.deepEqual(errors, []);
    return r;
  } finally {
    await page.close();
  }
}

for (const [label, base] of [['f32 folder', `/fixtures/${path.basename(MODEL)}/`], ['q8 bundle', '/model/']]) {
  test(`${label}: 1, 2 and 3 threads give the same bits; the one-thread build is within ${MAX_BUILD_DIFF[label]}`, { timeout: 120000 }, async () => {
    const r = await embedOn(isolated, base, [1, 2, 3], true);
    for (const n of [1, 2, 3]) {
      assert.equal(r[n].info.threads, n, `${n} thread(s) asked: the load result says ${r[n].info.threads}`);
      assert.equal(r[n].info.threadsNote, '', `${n} thread(s): no note`);
    }
    const single = (await embedOn(notIsolated, base, [2], false))[2];
    assert.equal(single.info.threads, 1, 'not isolated: one thread');
    assert.match(single.info.threadsNote, /^One thread instead of 2: this page is not cross-origin isolated/);
    let worst = 0;
    for (const kind of ['images', 'texts']) {
      r[1][kind].forEach((e1, i) => {
        assert.deepEqual(r[2][kind][i], e1, `${kind}[${i}]: 2 threads differ from 1`);
        assert.deepEqual(r[3][kind][i], e1, `${kind}[${i}]: 3 threads differ from 1`);
        const d = maxAbsDiff(e1, single[kind][i]);
        worst = Math.max(worst, d);
        assert.ok(d <= MAX_BUILD_DIFF[label], `${kind}[${i}]: pkg/threads vs pkg/: max |diff| ${d} > ${MAX_BUILD_DIFF[label]}`);
      });
    }
    console.log(`# ${label}: 1, 2, 3 threads identical; pkg/threads vs pkg/ max |diff| ${worst.toExponential(2)}`);
  });
}

test('the page: every core by default, its threads setting starts a new worker with that count', { timeout: 120000 }, async () => {
  const server = await startServer({ model: MODEL });
  const page = await browser.context.newPage();
  const errors = collectErrors(page);
  try {
    await page.goto(`${server.url}/?threads=2`);
    await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
    assert.equal(await page.getAttribute('body', 'data-threads'), '2');
    assert.equal(await page.inputValue('#threads'), '2');
    assert.equal(await page.locator('#threads-note').isHidden(), true, 'no note when the threads asked for run');
    await page.selectOption('#threads', '1');
    await page.locator('body[data-threads="1"][data-model-ready="true"][data-kb-ready="true"]').waitFor({ timeout: 60000 });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await server.close();
  }
});

test('a page without COOP/COEP: one thread, and the page and the widget say why', { timeout: 120000 }, async () => {
  const server = await startServer({ model: MODEL, isolated: false });
  const page = await browser.context.newPage();
  const errors = collectErrors(page);
  try {
    const res = await page.goto(`${server.url}/?threads=2`);
    assert.equal(res.headers()['cross-origin-embedder-policy'], undefined);
    assert.equal(await page.evaluate(() => crossOriginIsolated), false);
    await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
    assert.equal(await page.getAttribute('body', 'data-threads'), '1');
    const note = page.locator('#threads-note');
    assert.equal(await note.isVisible(), true, 'the page shows why');
    assert.match(await note.innerText(), /one thread/i);
    assert.match(await note.locator('details').textContent(), /not cross-origin isolated/);

    await page.goto(`${server.url}/embed-example.html`);
    await page.locator('kpl-classifier[data-ready="true"]').waitFor({ timeout: 60000 });
    await page.evaluate(() => document.querySelector('kpl-classifier').setAttribute('threads', '2'));
    const widget = page.locator('kpl-classifier[data-ready="true"][data-threads="1"]');
    await widget.waitFor({ timeout: 60000 });
    const widgetNote = await widget.evaluate((w) => {
      const n = w.shadowRoot.querySelector('.threads-note');
      return n.hidden ? '' : n.textContent;
    });
    assert.match(widgetNote, /not cross-origin isolated/);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await server.close();
  }
});

test("the widget's threads attribute: 2, then 1, then a bad value refused", { timeout: 120000 }, async () => {
  const server = await startServer({ model: MODEL });
  const page = await browser.context.newPage();
  const errors = collectErrors(page);
  try {
    await page.goto(`${server.url}/embed-example.html`);
    await page.locator('kpl-classifier[data-ready="true"]').waitFor({ timeout: 60000 });
    const set = (v) => page.evaluate((v) => document.querySelector('kpl-classifier').setAttribute('threads', v), v);
    await set('2');
    await page.locator('kpl-classifier[data-ready="true"][data-threads="2"]').waitFor({ timeout: 60000 });
    await set('1');
    await page.locator('kpl-classifier[data-ready="true"][data-threads="1"]').waitFor({ timeout: 60000 });
    const failed = page.evaluate(() => new Promise((resolve) =>
      document.querySelector('kpl-classifier').addEventListener('kpl-error', (e) => resolve(e.detail.message), { once: true })));
    await set('many');
    assert.match(await failed, /threads must be a whole number from 1 to 64, not "many"/);
    assert.deepEqual(errors.filter((e) => !/threads must be/.test(e)), []);
  } finally {
    await page.close();
    await server.close();
  }
});

test('the threaded build failing to start: the single-threaded one runs, and the note says why', { timeout: 120000 }, async () => {
  const page = await browser.context.newPage();
  try {
    // As a server or proxy that does not deliver pkg/threads/ (nor its relaxed twin) would.
    await page.route('**/pkg/threads*/**', (route) => route.abort());
    await page.goto(`${isolated.url}/embed-example.html`);
    const info = await page.evaluate(async () => {
      const { KplClient } = await import('/protocol.js');
      const client = KplClient.start('/worker.js', { threads: 2 });
      try {
        return await client.load('/model/', undefined, { backend: 'wasm' });
      } finally {
        client.terminate();
      }
    });
    assert.equal(info.threads, 1);
    assert.match(info.threadsNote, /^One thread: the threaded WebAssembly build \(pkg\/threads\/\) could not start \(.+\)\.$/);
  } finally {
    await page.close();
  }
});
