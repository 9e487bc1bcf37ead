// The DICOM card's window choice (www/dicom-window.js) in Chromium: the windows the
// file carries with their explanations and, for CT, the presets; choosing one
// re-embeds and re-classifies the image, the card and the export say which window was
// used (the same words as `kpl decode`), and the same window reached two ways gives
// the same scores. Also: a data set whose encoding contradicts its transfer syntax
// shows its warning on the card.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startServer, launchBrowser, ensureKnowledgeBases, runNative, fixtureImage, collectErrors, REPO } from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';
const TASK = 'chest-xray-pneumonia';
const KINDS = path.join(REPO, 'tests', 'dicom', 'kinds');
const CT = 'ct_two_windows.dcm';
const MISMATCH = 'implicit_under_explicit.dcm';

let server;
let browser;
let page;
let errors;

before(async () => {
  ensureKnowledgeBases(MODEL);
  server = await startServer({ model: MODEL });
  browser = await launchBrowser({ viewport: { width: 1000, height: 900 } });
  page = await browser.context.newPage();
  errors = collectErrors(page);
  await page.goto(`${server.url}/`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
  await page.selectOption('#task', TASK);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 30000 });
}, { timeout: 120000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

const dicomFile = (name) => ({ name, mimeType: 'application/dicom', buffer: fs.readFileSync(path.join(KINDS, name)) });

/** A card's DICOM section (rendered: see page.test.mjs) and its scores. */
async function card(name) {
  return page.locator(`[data-kpl-result][data-file="${name}"]`).evaluate((c) => {
    c.style.contentVisibility = 'visible';
    const text = c.querySelector('.dicom').innerText;
    c.style.contentVisibility = '';
    const select = c.querySelector('select.dicom-window');
    return {
      text,
      scores: JSON.parse(c.dataset.scores),
      options: select ? Array.from(select.options, (o) => o.textContent) : null,
      selected: select ? select.selectedOptions[0].textContent : null,
    };
  });
}

/** Picks the option whose label starts with `prefix`, and waits for the card to say `used`. */
async function choose(prefix, used) {
  const select = page.locator(`[data-kpl-result][data-file="${CT}"] select.dicom-window`);
  const label = (await select.locator('option').allTextContents()).find((o) => o.startsWith(prefix));
  assert.ok(label, `an option starting with ${prefix}`);
  await select.selectOption({ label });
  await page.waitForFunction(([file, used]) => {
    const c = document.querySelector(`[data-kpl-result][data-file="${file}"]`);
    return c && !c.hasAttribute('aria-busy') && c.querySelector('.dicom').textContent.includes(used);
  }, [CT, used], { timeout: 30000 });
  return card(CT);
}

test('the DICOM card offers the file\'s windows and the CT presets, and re-classifies on a choice', { timeout: 120000 }, async () => {
  await page.locator('#file-input').setInputFiles([dicomFile(CT), dicomFile(MISMATCH), fixtureImage('rgb_97x61.png')]);
  await page.waitForFunction(() => document.querySelectorAll('[data-kpl-result]').length === 3 &&
    document.querySelectorAll('[data-kpl-pending]').length === 0, null, { timeout: 60000 });

  // The default: the file's first window, said in the words of `kpl decode`.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-voi-'));
  const native = (args) => runNative(['decode', path.join(KINDS, CT), '-o', path.join(tmp, 'x.png'), ...args]);
  try {
    const first = await card(CT);
    assert.match(first.text, new RegExp(`Window used\\s+${native([]).voi_description.replace(/[()]/g, '\\$&')}`));
    assert.deepEqual(first.options, [
      'Default (the file\'s first window, else its full range)',
      'File window 0, SOFT TISSUE: C 40 / W 400',
      'File window 1, LUNG: C -600 / W 1500',
      'Lung preset: C -600 / W 1500',
      'Mediastinum preset: C 50 / W 350',
      'Bone preset: C 500 / W 2000',
      'Brain preset: C 40 / W 80',
    ]);
    assert.match(first.selected, /^Default/);

    // The lung preset: another rendering, so other scores; the card says so.
    const lung = await choose('Lung preset', native(['--window=-600,1500']).voi_description);
    assert.match(lung.selected, /^Lung preset/);
    assert.notDeepEqual(lung.scores, first.scores, 'another window, other pixels, other scores');
    // The file's own lung window is the same window: the same scores.
    const fileLung = await choose('File window 1', native(['--voi', '1']).voi_description);
    assert.deepEqual(fileLung.scores, lung.scores);
    // Back to the default: the first scores again.
    const back = await choose('Default', native([]).voi_description);
    assert.deepEqual(back.scores, first.scores);
    await choose('Bone preset', native(['--window=500,2000']).voi_description);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  // A colour PNG has no DICOM section; the mismatched file shows its warning.
  assert.equal(await page.locator('[data-kpl-result][data-file="rgb_97x61.png"] .dicom').count(), 0);
  const mismatch = await card(MISMATCH);
  assert.match(mismatch.text, /Warning\s+the data set is encoded in implicit VR little endian/);
  assert.equal(mismatch.options, null, 'no window choice: the file carries no window and is not CT');

  // The export says which window each image used: one row per image, the last choice.
  const [json] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  const rows = JSON.parse(fs.readFileSync(await json.path(), 'utf8')).results;
  assert.equal(rows.length, 3);
  const ct = rows.find((r) => r.file === CT);
  assert.equal(ct.dicom_window, 'given window (C 500, W 2000)');
  assert.equal(ct.dicom.voi.kind, 'given');
  assert.equal(rows.find((r) => r.file === 'rgb_97x61.png').dicom_window, null);
  const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const lines = fs.readFileSync(await csv.path(), 'utf8').trim().split('\n');
  const header = lines[0].split(',');
  const col = header.indexOf('dicom_window');
  assert.ok(col >= 0, lines[0]);
  assert.ok(lines.some((l) => l.startsWith(`${CT},`) && l.includes('given window (C 500')), lines.join('\n'));
});

test('no error was logged', () => {
  assert.deepEqual(errors, []);
});
