// The service worker keeps only the WebAssembly build this browser runs (www/sw.js
// `keep-build`): the threaded one on a cross-origin-isolated page, the single-threaded
// one elsewhere, never two (~7 MB each); in Chromium, which runs relaxed SIMD, the
// relaxed-SIMD twins (pkg/threads-relaxed/, pkg/relaxed/), and the simd128 build when the
// page asks for it (`?simd=simd128`). Offline use keeps working with that build alone:
// the page without COOP/COEP reloads and classifies with its server gone (the isolated
// page's offline run is tests/browser/kpl.test.mjs's).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, launchBrowser, ensureKnowledgeBases, fixtureImage } from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';

let browser;

before(async () => {
  ensureKnowledgeBases(MODEL);
  browser = await launchBrowser({ webgpu: false });
}, { timeout: 60000 });

after(async () => {
  await browser?.close();
});

/** Opens the app on `server`, waits until it works offline; the cache's pkg/ files and its size. */
async function visit(server, query = '') {
  const page = await browser.context.newPage();
  await page.goto(`${server.url}/${query}`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
  await page.locator('body[data-offline-ready="true"]').waitFor({ timeout: 60000 });
  const state = await page.evaluate(async () => {
    const files = [];
    for (const key of await caches.keys()) {
      for (const req of await (await caches.open(key)).keys()) {
        const { pathname } = new URL(req.url);
        if (pathname.startsWith('/pkg/')) files.push(pathname);
      }
    }
    return { files: files.sort(), isolated: crossOriginIsolated, threads: document.body.dataset.threads, simd: document.body.dataset.simd };
  });
  await page.click('#cache-refresh');
  await page.waitForFunction(() => Number(document.getElementById('cache-info').dataset.bytes) > 1e6, null, { timeout: 10000 });
  state.bytes = Number(await page.locator('#cache-info').getAttribute('data-bytes'));
  return { page, ...state };
}

for (const [query, simd, dir] of [['', 'relaxed', 'threads-relaxed'], ['?simd=simd128', 'simd128', 'threads']]) {
  test(`a cross-origin-isolated page${query ? ` with ${query}` : ''} keeps the threaded ${simd} build only (pkg/${dir}/)`, { timeout: 120000 }, async () => {
    const server = await startServer({ model: MODEL });
    try {
      const { page, files, isolated, bytes, ...state } = await visit(server, query);
      assert.equal(isolated, true);
      assert.equal(state.simd, simd);
      assert.deepEqual(files, ['kpl.js', 'kpl_bg.wasm', 'workerHelpers.js'].map((f) => `/pkg/${dir}/${f}`));
      console.log(`isolated page${query ? ` (${query})` : ''}: offline cache ${(bytes / 1e6).toFixed(1)} MB`);
      await page.close();
    } finally {
      await server.close();
    }
  });
}

test('a page without COOP/COEP keeps the single-threaded build only (pkg/relaxed/), and works offline with it', { timeout: 120000 }, async () => {
  const server = await startServer({ model: MODEL, isolated: false });
  let closed = false;
  try {
    const { page, files, isolated, threads, simd, bytes } = await visit(server);
    assert.equal(isolated, false);
    assert.equal(threads, '1');
    assert.equal(simd, 'relaxed');
    assert.deepEqual(files, ['/pkg/relaxed/kpl.js', '/pkg/relaxed/kpl_bg.wasm']);
    console.log(`page without isolation: offline cache ${(bytes / 1e6).toFixed(1)} MB`);
    await browser.context.setOffline(true);
    await server.close();
    closed = true;
    await page.reload();
    await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 30000 });
    await page.locator('#file-input').setInputFiles([fixtureImage('grey_80x120.png'), fixtureImage('rgb_97x61.png')]);
    await page.waitForFunction(() => document.querySelectorAll('[data-kpl-result][data-method="kpl"]').length === 2, null, { timeout: 30000 });
    await page.close();
  } finally {
    await browser.context.setOffline(false);
    if (!closed) await server.close();
  }
});
