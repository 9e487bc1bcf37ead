// What a clinician reads: every note and error card of the page and the widget
// says in plain words what happened (messages.js), neutral when it is only
// information (no GPU: classifying on the CPU), and keeps the technical text in a
// closed <details> disclosure. Chromium without a WebGPU adapter, as on most
// hospital desktops; real failures: files the module refuses, a model file the
// server does not have, a damaged knowledge base, a widget pointed at no model.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  startServer, launchBrowser, ensureKnowledgeBases, hugePng, corruptJpeg, fixtureImage, collectErrors, REPO,
} from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';

let server;
let browser;

before(async () => {
  ensureKnowledgeBases(MODEL);
  server = await startServer({ model: MODEL });
  browser = await launchBrowser({ webgpu: false });
}, { timeout: 120000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

/**
 * A DICOM file whose transfer syntax is JPIP Referenced (its pixels live on a JPIP
 * server, so no viewer can decode the file alone): a JPEG-LS file with its transfer
 * syntax UID replaced by one of the same length.
 */
function jpipDicom() {
  const bytes = Buffer.from(fixtureImage('MR_small_jpeg_ls_lossless.dcm').buffer);
  const from = Buffer.from('1.2.840.10008.1.2.4.80');
  const at = bytes.indexOf(from);
  assert.ok(at > 0 && bytes.indexOf(from, at + 1) < 0, 'one transfer syntax UID');
  bytes.write('1.2.840.10008.1.2.4.94', at, 'latin1');
  return { name: 'jpip.dcm', mimeType: 'application/dicom', buffer: bytes };
}

/**
 * A message element's parts: the plain summary, whether the disclosure is there and
 * closed, the technical text inside it, what is visible (innerText), and the tone.
 */
async function readMessage(locator) {
  return locator.evaluate((node) => {
    const details = node.querySelector('details.detail');
    const style = getComputedStyle(node);
    return {
      summary: node.querySelector('.plain')?.textContent ?? null,
      hasDetails: Boolean(details),
      open: details?.open ?? null,
      detail: details?.querySelector('.detail-text')?.textContent ?? '',
      visible: node.innerText,
      tone: node.dataset.tone ?? null,
      color: style.color,
      weight: Number(style.fontWeight),
    };
  });
}

/** The closed-disclosure form, with the technical text matching `technical`, hidden from view. */
function assertPlain(message, summary, technical, label) {
  assert.equal(message.summary, summary, `${label}: the summary`);
  assert.ok(message.hasDetails, `${label}: no disclosure`);
  assert.equal(message.open, false, `${label}: the disclosure is open`);
  assert.match(message.detail, technical, `${label}: the technical text`);
  assert.ok(!message.visible.includes(message.detail), `${label}: the technical text is visible: ${message.visible}`);
  assert.match(message.visible, /Technical details/, `${label}: the disclosure's label`);
}

test('no GPU: a neutral note in plain words, the adapter error behind the disclosure', { timeout: 90000 }, async () => {
  const page = await browser.context.newPage();
  const errors = collectErrors(page);
  try {
    await page.goto(`${server.url}/`);
    await page.locator('body[data-model-ready="true"]').waitFor({ timeout: 60000 });
    await page.selectOption('#backend', 'auto');
    await page.locator('body[data-backend-settled="true"]').waitFor({ timeout: 60000 });
    const note = await readMessage(page.locator('#backend-note'));
    assertPlain(note, 'No GPU is available to this page; classifying on the CPU.', /WebGPU could not start \(.*no GPU adapter/, 'backend note');
    assert.equal(note.tone, 'info');
    // Neutral: the muted text colour, not the warning amber (#b58400) nor bold.
    assert.notEqual(note.color, 'rgb(181, 132, 0)');
    assert.ok(note.weight < 600, `the note is bold (${note.weight})`);
    // The disclosure opens on a click and shows the technical text.
    await page.locator('#backend-note details summary').click();
    assert.match(await page.locator('#backend-note').innerText(), /no GPU adapter/);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('error cards: plain summaries for a non-image, a damaged and a too large image, and a DICOM file that cannot be decoded', { timeout: 90000 }, async () => {
  const page = await browser.context.newPage();
  try {
    await page.goto(`${server.url}/`);
    await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
    await page.locator('#file-input').setInputFiles([
      fixtureImage('rgb_97x61.png'),
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image\n') },
      { name: 'huge.png', mimeType: 'image/png', buffer: hugePng(40000, 40000) },
      { name: 'corrupt.jpg', mimeType: 'image/jpeg', buffer: corruptJpeg() },
      jpipDicom(),
    ]);
    await page.waitForFunction(() => document.querySelectorAll('[data-kpl-pending]').length === 0
      && document.querySelectorAll('[data-kpl-error]').length === 4, null, { timeout: 60000 });
    const card = (file) => readMessage(page.locator(`[data-kpl-error][data-file="${file}"] p`));
    assertPlain(await card('notes.txt'), 'This file is not an image this page can read. Use PNG, JPEG, WebP, BMP, TIFF or DICOM.',
      /^notes\.txt: not a supported image format/, 'notes.txt');
    const huge = await card('huge.png');
    assertPlain(huge, 'This image is too large for this page (1,600 megapixels; the limit is 100). Use a smaller copy of the image.',
      /^huge\.png: the image is 40000×40000 = 1600\.0 megapixels, above the limit of 100\.0 megapixels$/, 'huge.png');
    // The command line's flag means nothing in a page: neither shown nor in the disclosure.
    const hugeText = await page.locator('[data-kpl-error][data-file="huge.png"]').textContent();
    assert.ok(!hugeText.includes('--max-megapixels'), hugeText);
    assertPlain(await card('corrupt.jpg'), 'This image file seems damaged or incomplete, so it could not be read.',
      /^corrupt\.jpg: /, 'corrupt.jpg');
    assertPlain(await card('jpip.dcm'),
      'This DICOM image is stored in a form this page cannot read yet. Export it again as uncompressed DICOM, PNG or JPEG.',
      /^jpip\.dcm: the transfer syntax 1\.2\.840\.10008\.1\.2\.4\.94 \(JPIP Referenced\) is not supported/, 'JPIP DICOM');
    assert.equal(await page.locator('[data-kpl-result]').count(), 1, 'the good image still has its result');
  } finally {
    await page.close();
  }
});

test('a model folder without its weights and a damaged knowledge base: plain status lines', { timeout: 120000 }, async () => {
  // Two more servers (other origins: their own caches): one whose model folder lacks
  // its weights, one whose knowledge bases are damaged (a flipped byte: the hash check fails).
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-messages-'));
  const noWeights = path.join(tmp, 'no-weights');
  fs.mkdirSync(noWeights);
  for (const f of fs.readdirSync(path.join(REPO, MODEL))) {
    if (f !== 'model.safetensors') fs.copyFileSync(fs.realpathSync(path.join(REPO, MODEL, f)), path.join(noWeights, f));
  }
  const damaged = path.join(tmp, 'kb');
  fs.mkdirSync(damaged);
  const kbDir = ensureKnowledgeBases(MODEL);
  for (const f of fs.readdirSync(kbDir).filter((n) => n.endsWith('.kplkb'))) {
    const bytes = fs.readFileSync(path.join(kbDir, f));
    bytes[bytes.length - 3] ^= 0x55;
    fs.writeFileSync(path.join(damaged, f), bytes);
  }
  const missing = await startServer({ model: noWeights });
  const badKb = await startServer({ model: MODEL, kb: damaged });
  const page = await browser.context.newPage();
  try {
    await page.goto(`${missing.url}/`);
    await page.locator('body[data-model-ready="false"]').waitFor({ timeout: 60000 });
    const status = await readMessage(page.locator('#status-text'));
    assertPlain(status, 'The model folder on the server is incomplete or damaged.', /needs config\.json and model\.safetensors/, 'model load');
    assert.equal(status.tone, 'problem');
    assert.equal(await page.locator('#status.failed').count(), 1, 'the status line is marked failed');

    await page.goto(`${badKb.url}/`);
    await page.locator('body[data-kb-ready="failed"]').waitFor({ timeout: 60000 });
    const info = await readMessage(page.locator('#task-info'));
    assertPlain(info, 'A model or knowledge file is damaged (its integrity check failed). Reload the page; if it persists, the files on the server need replacing.',
      /\.kplkb/, 'knowledge base');
    assert.equal(info.tone, 'problem');
  } finally {
    await page.close();
    await missing.close();
    await badKb.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('the widget: plain error entries and start failure, the technical text in the event and the disclosure', { timeout: 90000 }, async () => {
  const page = await browser.context.newPage();
  const errors = collectErrors(page);
  try {
    await page.goto(`${server.url}/embed-example.html`);
    await page.locator('kpl-classifier[data-ready="true"]').waitFor({ timeout: 60000 });
    const events = await page.evaluate(async () => {
      const w = document.querySelector('kpl-classifier');
      const seen = [];
      w.addEventListener('kpl-error', (e) => seen.push(e.detail));
      const png = new File([await (await fetch('/fixtures/images/rgb_97x61.png')).arrayBuffer()], 'rgb_97x61.png', { type: 'image/png' });
      await w.classifyFiles([png, new File(['no'], 'notes.txt')]);
      return seen;
    });
    assert.equal(events.length, 1);
    assert.equal(events[0].file, 'notes.txt');
    assert.match(events[0].message, /not a supported image format/);
    assert.equal(events[0].summary, 'This file is not an image this page can read. Use PNG, JPEG, WebP, BMP, TIFF or DICOM.');
    const entry = await readMessage(page.locator('kpl-classifier [data-kpl-error][data-file="notes.txt"]'));
    assertPlain(entry, events[0].summary, /not a supported image format/, 'widget entry');
    assert.match(entry.visible, /^notes\.txt: /);

    // A widget pointed at a folder with no model: a plain start failure.
    await page.evaluate(() => {
      const w = document.createElement('kpl-classifier');
      w.id = 'broken';
      w.setAttribute('model', '/no-such-model/');
      document.body.append(w);
    });
    await page.locator('#broken[data-ready="false"]').waitFor({ timeout: 30000 });
    const status = await readMessage(page.locator('#broken .status'));
    assertPlain(status, 'A file the page needs was not found on the server. Ask whoever runs this page to check the model folder.',
      /no-such-model\/manifest\.json: HTTP 404/, 'widget start');
    // Only the 404 of the missing manifest is logged.
    assert.ok(errors.every((e) => /404/.test(e)), errors.join('\n'));
  } finally {
    await page.close();
  }
});
