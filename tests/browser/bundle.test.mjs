// The page with a `kpl pack` bundle of the random fixture model (made here with the
// native CLI): the image encoder is fetched at start, the text encoder only when
// custom labels are first used, and a bundle's knowledge base (a path relative to
// the model folder) is checked against the manifest and classifies as a task's does.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startServer, launchBrowser, runNative, ensureKnowledgeBases, fixtureImage, collectErrors } from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';
const TASK = 'chest-xray-pneumonia';

let dir;
let server;
let browser;
let page;
let errors;
/** URLs requested by the page and its worker (not the service worker's own fetches). */
const requests = [];
const fetched = (file, list = requests) => list.filter((u) => new URL(u).pathname === `/model/${file}`).length;
/** Every request, the service worker's (precache) included. */
const all = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-bundle-'));
  runNative(['pack', '--model', MODEL, '--dtype', 'q8', '--threads', '1', '--knowledge', `knowledge/${TASK}`, '-o', dir]);
  server = await startServer({ model: dir });
  browser = await launchBrowser();
  browser.context.on('request', (r) => {
    all.push(r.url());
    if (!r.serviceWorker()) requests.push(r.url());
  });
  page = await browser.context.newPage();
  errors = collectErrors(page);
  await page.goto(`${server.url}/`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
}, { timeout: 120000 });

after(async () => {
  await browser?.close();
  await server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a bundle loads its image encoder only, and its knowledge base classifies', { timeout: 60000 }, async () => {
  const manifest = await (await fetch(`${server.url}/model/manifest.json`)).json();
  assert.equal(manifest.knowledge[0].path, `${TASK}.kplkb`, 'the bundle lists its own base, relative to /model/');
  assert.equal(await page.locator('#task').inputValue(), TASK);
  assert.equal(fetched('image_encoder.gguf') >= 1, true);
  assert.equal(fetched(`${TASK}.kplkb`) >= 1, true);
  assert.match(await page.locator('#status-text').innerText(), /text encoder is fetched when custom labels are first used/);
  await page.locator('#file-input').setInputFiles(['rgb_97x61.png', 'grey_80x120.png'].map(fixtureImage));
  await page.waitForFunction(() => document.querySelectorAll('[data-kpl-result][data-method="kpl"]').length === 2, null, { timeout: 30000 });
  await page.locator('body[data-offline-ready="true"]').waitFor({ timeout: 30000 });
  assert.equal(fetched('text_encoder.gguf', all), 0, 'no text encoder for a task, not even in the offline cache');
});

test('custom labels fetch the text encoder once, then classify', { timeout: 60000 }, async () => {
  await page.selectOption('#task', 'custom');
  await page.fill('#labels', 'normal: clear lungs\npneumonia: consolidation; air bronchograms');
  await page.click('#clear');
  await page.locator('#file-input').setInputFiles([fixtureImage('small_30x40.png')]);
  const card = page.locator('[data-kpl-result][data-file="small_30x40.png"]');
  await card.waitFor({ timeout: 30000 });
  assert.equal(await card.getAttribute('data-method'), 'single-image');
  assert.equal(await card.getAttribute('data-custom'), 'true');
  assert.equal(fetched('text_encoder.gguf'), 1);
  assert.match(await page.locator('#status-text').innerText(), /Model ready .*Text encoder loaded\./);
  await page.fill('#labels', 'normal, pneumonia');
  await page.locator('#file-input').setInputFiles([fixtureImage('rgb_97x61.png')]);
  await page.locator('[data-kpl-result][data-file="rgb_97x61.png"][data-method="clip"]').waitFor({ timeout: 30000 });
  assert.equal(fetched('text_encoder.gguf'), 1, 'fetched once');
  assert.deepEqual(errors, []);
});

test('a bundle without bases, served with --kb: the server adds its /kb/ bases and the bundle still loads', { timeout: 60000 }, async () => {
  const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-bundle-bare-'));
  let other;
  let p;
  try {
    runNative(['pack', '--model', MODEL, '--dtype', 'q8', '--threads', '1', '-o', bare]);
    other = await startServer({ model: bare, kb: ensureKnowledgeBases(MODEL) });
    const manifest = await (await fetch(`${other.url}/model/manifest.json`)).json();
    assert.ok(manifest.knowledge.length > 1 && manifest.knowledge.every((k) => k.path.startsWith('/kb/') && !k.sha256));
    p = await browser.context.newPage();
    const pageErrors = collectErrors(p);
    await p.goto(`${other.url}/`);
    await p.locator('body[data-kb-ready="true"]').waitFor({ timeout: 30000 });
    await p.locator('#file-input').setInputFiles([fixtureImage('rgb_97x61.png')]);
    await p.locator('[data-kpl-result][data-file="rgb_97x61.png"]').waitFor({ timeout: 30000 });
    assert.deepEqual(pageErrors, []);
  } finally {
    await p?.close();
    await other?.close();
    fs.rmSync(bare, { recursive: true, force: true });
  }
});
