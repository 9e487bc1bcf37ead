// `kpl site` served by a real web server: Debian's nginx with the emitted snippet, the
// site under a sub-path (/radiology/kpl/). The page loads and classifies, works again
// with the network off, every response carries the headers the site emitted (the same
// as the dev server's), nothing leaves the origin, and the widget works from a page
// at another path of the same server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { launchBrowser, runNative, fixtureImage, collectErrors } from './helpers.mjs';
import { startNginx, parseHeadersFile } from './web-servers.mjs';
import { SECURITY_HEADERS } from '../../scripts/serve.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';
const PREFIX = '/radiology/kpl/';
const TASK = 'chest-xray-pneumonia';

let dir;
let site;
let built;
let nginx;
let browser;
let page;
let errors;
/** Every URL the browser requested (pages, workers, service worker). */
const requests = [];

/** A GET of a path on the nginx server: `{status, headers}`. */
function get(p) {
  return new Promise((resolve, reject) => {
    http
      .get(nginx.url + p, { agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers }));
      })
      .on('error', reject);
  });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-site-'));
  site = path.join(dir, 'kpl');
  built = runNative(['site', '--model', MODEL, '--threads', '1', '--base-path', PREFIX, '-o', site]);
  // Another page of the same intranet server, embedding the widget from the site.
  const wiki = path.join(dir, 'wiki');
  fs.mkdirSync(wiki);
  fs.writeFileSync(path.join(wiki, 'triage.html'), `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Wiki page with the widget</title><link rel="icon" href="data:,">
<script type="module" src="${PREFIX}kpl-classifier.js"></script></head>
<body><h1>Triage</h1><kpl-classifier task="${TASK}" backend="wasm"></kpl-classifier></body></html>
`);
  nginx = await startNginx(`
    location ${PREFIX} {
      alias ${site}/;
      include ${site}.server/nginx.conf;
    }
    location /wiki/ {
      root ${dir};
      include ${site}.server/nginx.conf;
    }`);
  browser = await launchBrowser({ webgpu: false });
  browser.context.on('request', (r) => requests.push(r.url()));
  page = await browser.context.newPage();
  errors = collectErrors(page);
}, { timeout: 120000 });

after(async () => {
  await browser?.close();
  await nginx?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the site holds no test-only hooks of the dev server, only relative URLs', async () => {
  assert.ok(built.files.includes('index.html') && built.files.includes('pkg/kpl_bg.wasm') && built.files.includes('model/manifest.json'));
  // The threaded build and its pool's worker module (the name the service worker
  // precaches), and both relaxed-SIMD twins.
  for (const dir of ['threads', 'threads-relaxed']) {
    for (const f of ['kpl.js', 'kpl_bg.wasm', 'workerHelpers.js']) assert.ok(built.files.includes(`pkg/${dir}/${f}`), `pkg/${dir}/${f}`);
  }
  for (const f of ['kpl.js', 'kpl_bg.wasm']) assert.ok(built.files.includes(`pkg/relaxed/${f}`), `pkg/relaxed/${f}`);
  assert.ok(built.files.includes('simd-probe.js'));
  assert.deepEqual(built.files.filter((f) => /^(fixtures|test|kb)\//.test(f)), []);
  assert.equal((await get(`${PREFIX}test-server/requests`)).status, 404);
  for (const f of built.files.filter((f) => /\.(html|js)$/.test(f))) {
    const text = fs.readFileSync(path.join(site, f), 'utf8').split('\n').filter((l) => !/^\s*(\/\/|\*)/.test(l)).join('\n');
    // No root-relative URL in an attribute, import or fetch: the site works under any path.
    assert.doesNotMatch(text, /(src|href)="\/[^/]|from '\/|fetch\('\/|new URL\('\//, f);
  }
  const manifest = JSON.parse(fs.readFileSync(path.join(site, 'model', 'manifest.json'), 'utf8'));
  assert.match(manifest.files.image_encoder.path, /^image_encoder\.[0-9a-f]{16}\.gguf$/);
  assert.ok(manifest.knowledge.some((k) => k.task === TASK));
});

test('every file is served with the headers the site emitted, the dev server\'s security headers included', async () => {
  const rules = parseHeadersFile(fs.readFileSync(path.join(site, '_headers'), 'utf8'));
  const security = rules[`${PREFIX}*`];
  const expectedSecurity = Object.fromEntries(Object.entries(SECURITY_HEADERS).map(([k, v]) => [k.toLowerCase(), v]));
  assert.deepEqual(security, expectedSecurity, '_headers: the security headers of scripts/serve.mjs');
  const served = built.files.filter((f) => !f.startsWith('.') && f !== '_headers' && f !== 'web.config');
  let immutable = 0;
  for (const file of [...served, '']) {
    const url = PREFIX + file;
    const expected = { ...security, ...rules[url] };
    assert.ok(rules[url], `_headers lists ${url}`);
    const res = await get(url);
    assert.equal(res.status, 200, url);
    for (const [name, value] of Object.entries(expected)) assert.equal(res.headers[name], value, `${url}: ${name}`);
    if (expected['cache-control'].includes('immutable')) immutable++;
  }
  assert.ok(immutable >= 3, 'the encoders and bases are immutable');
  assert.equal(rules[PREFIX + 'model/manifest.json']['cache-control'], 'no-cache');
  assert.equal(rules[PREFIX + 'pkg/kpl_bg.wasm']['content-type'], 'application/wasm');
  // Errors carry the security headers too; the other servers' configurations are not served.
  for (const p of [`${PREFIX}missing.js`, `${PREFIX}.htaccess`, `${PREFIX}web.config`, `${PREFIX}_headers`]) {
    const res = await get(p);
    assert.equal(res.status, 404, p);
    for (const [name, value] of Object.entries(expectedSecurity)) assert.equal(res.headers[name], value, `${p}: ${name}`);
  }
});

test('the page loads under the sub-path and classifies', { timeout: 90000 }, async () => {
  await page.goto(`${nginx.url}${PREFIX}`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
  assert.equal(await page.locator('#task').inputValue(), TASK);
  assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'COOP + COEP from nginx');
  // Isolated, so every core: the threaded build from the export (one thread on a 1-core machine).
  const cores = Math.min(await page.evaluate(() => navigator.hardwareConcurrency), 64);
  assert.equal(await page.getAttribute('body', 'data-threads'), String(cores));
  await page.locator('#file-input').setInputFiles(['rgb_97x61.png', 'grey_80x120.png'].map(fixtureImage));
  await page.waitForFunction(() => document.querySelectorAll('[data-kpl-result][data-method="kpl"]').length === 2, null, { timeout: 30000 });
});

test('the widget works from a page at another path of the same server', { timeout: 90000 }, async () => {
  const wiki = await browser.context.newPage();
  const wikiErrors = collectErrors(wiki);
  await wiki.goto(`${nginx.url}/wiki/triage.html`);
  await wiki.locator('kpl-classifier[data-ready="true"]').waitFor({ timeout: 60000 });
  const detail = wiki.evaluate(() => new Promise((resolve) =>
    document.querySelector('kpl-classifier').addEventListener('kpl-result', (e) => resolve(e.detail), { once: true })));
  await wiki.locator('kpl-classifier input[type=file]').setInputFiles([fixtureImage('rgb_97x61.png')]);
  const d = await detail;
  assert.equal(d.file, 'rgb_97x61.png');
  assert.equal(d.scores.length, 2);
  // The site's own example page, beside the app.
  const example = await browser.context.newPage();
  await example.goto(`${nginx.url}${PREFIX}embed-example.html`);
  await example.locator('kpl-classifier[data-ready="true"]').waitFor({ timeout: 60000 });
  assert.deepEqual(wikiErrors, []);
  await wiki.close();
  await example.close();
});

/** The start URL of the web app manifest, as Chromium resolved it. */
let startUrl;

test('the app is installable: a valid manifest, icons, a service worker; Chromium reports no installability error', { timeout: 60000 }, async () => {
  await page.locator('body[data-offline-ready="true"]').waitFor({ timeout: 30000 });
  const cdp = await browser.context.newCDPSession(page);
  const { url, errors: manifestErrors, data } = await cdp.send('Page.getAppManifest');
  assert.equal(url, `${nginx.url}${PREFIX}manifest.webmanifest`);
  assert.deepEqual(manifestErrors, [], 'the manifest parses without errors');
  const manifest = JSON.parse(data);
  assert.equal(manifest.display, 'standalone');
  assert.ok(manifest.name && manifest.short_name);
  const icons = manifest.icons.map((i) => `${i.sizes} ${i.purpose}`);
  assert.deepEqual(icons.sort(), ['192x192 any', '512x512 any', '512x512 maskable']);
  for (const icon of manifest.icons) {
    const res = await get(new URL(icon.src, url).pathname);
    assert.equal(res.status, 200, icon.src);
    assert.equal(res.headers['content-type'], 'image/png');
  }
  // The start URL and scope are relative: the app's folder, wherever it is served.
  startUrl = new URL(manifest.start_url, url).href;
  assert.equal(startUrl, `${nginx.url}${PREFIX}`);
  assert.equal(new URL(manifest.scope, url).href, `${nginx.url}${PREFIX}`);
  // Chromium's own check (what decides whether it offers to install).
  let installability = [];
  for (let i = 0; i < 20; i++) {
    ({ installabilityErrors: installability } = await cdp.send('Page.getInstallabilityErrors'));
    if (installability.length === 0) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  assert.deepEqual(installability, [], 'Page.getInstallabilityErrors');
  await cdp.detach();
});

test('after one visit the page reloads and classifies with the network off and nginx stopped; the start URL opens offline', { timeout: 90000 }, async () => {
  await page.locator('body[data-offline-ready="true"]').waitFor({ timeout: 30000 });
  await page.reload();
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
  await browser.context.setOffline(true);
  await nginx.close();
  try {
    // The installed app starts at the manifest's start URL.
    const started = await browser.context.newPage();
    await started.goto(startUrl);
    await started.locator('body[data-kb-ready="true"]').waitFor({ timeout: 30000 });
    await started.close();
    await page.reload();
    await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 30000 });
    await page.locator('#file-input').setInputFiles([fixtureImage('grey_80x120.png')]);
    await page.waitForFunction(() => document.querySelectorAll('[data-kpl-result]:not([data-kpl-pending])').length >= 1, null, { timeout: 30000 });
  } finally {
    await browser.context.setOffline(false);
  }
});

test('no request left the origin, and nothing failed', () => {
  const origin = new URL(nginx.url).origin;
  assert.ok(requests.some((u) => /\/model\/image_encoder\.[0-9a-f]{16}\.gguf$/.test(u)), 'the log covers the model');
  const foreign = requests.filter((u) => {
    const url = new URL(u);
    return url.protocol !== 'data:' && url.protocol !== 'blob:' && url.origin !== origin;
  });
  assert.deepEqual(foreign, []);
  assert.deepEqual(errors.filter((m) => !/ERR_INTERNET_DISCONNECTED|Failed to load resource/.test(m)), []);
});
