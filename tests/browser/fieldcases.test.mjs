// The field cases (inputs that reproduce faults other readers of the same formats have
// had; see their README) in the browser, through the wasm build:
//
// - be_rgb8_ow_3x3.dcm (Explicit VR Big Endian, 8-bit RGB, Pixel Data as OW with its
//   byte pairs swapped on the wire) decodes to exactly the pixels of
//   be_rgb8_ow_3x3.expected_rgb.npy (`decodeImage`, src/wasm/dicom.rs), and the page
//   classifies it: a result card, not an error; pydicom's SC_rgb_small_odd_big_endian.dcm
//   (the same fault, from pydicom's test suite) decodes to pydicom's pixels;
// - mojibake.txt tokenises to exactly OpenAI's ids (mojibake.openai_ids.json), which
//   needs ftfy's repair of UTF-8 read as Windows-1252 before BPE.
//
// The cases are read from ../shared/field-cases/ beside the repository when it is
// there, else from the copies committed in tests/browser/fixtures/field-cases/: the
// test never skips.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, launchBrowser, ensureKnowledgeBases, collectErrors, REPO } from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';
const SOURCES = [path.join(REPO, '..', 'shared', 'field-cases'), path.join(REPO, 'tests', 'browser', 'fixtures', 'field-cases')];

/** A field case's bytes, from the first source that has it. */
function fieldCase(name) {
  for (const dir of SOURCES) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return fs.readFileSync(file);
  }
  throw new Error(`field case ${name} is in none of ${SOURCES.join(', ')}`);
}

/** A .npy array of unsigned bytes (format 1.0/2.0, C order): {shape, data}. */
function readNpyU8(buf) {
  assert.equal(buf.subarray(0, 6).toString('latin1'), '\x93NUMPY', 'npy magic');
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.subarray(start, start + headerLen).toString('latin1');
  assert.match(header, /'descr':\s*'\|u1'/, header);
  assert.match(header, /'fortran_order':\s*False/, header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const data = buf.subarray(start + headerLen);
  assert.equal(data.length, shape.reduce((a, b) => a * b, 1));
  return { shape, data: Array.from(data) };
}

let server;
let browser;
let page;
let errors;

before(async () => {
  ensureKnowledgeBases(MODEL);
  server = await startServer({ model: MODEL });
  browser = await launchBrowser();
  page = await browser.context.newPage();
  errors = collectErrors(page);
}, { timeout: 60000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

test('be_rgb8_ow_3x3.dcm decodes in wasm to exactly the expected RGB pixels', { timeout: 60000 }, async () => {
  const expected = readNpyU8(fieldCase('be_rgb8_ow_3x3.expected_rgb.npy'));
  assert.deepEqual(expected.shape, [3, 3, 3]);
  await page.goto(`${server.url}/`);
  const decoded = await page.evaluate(async (b64) => {
    const kpl = await import('/pkg/kpl.js');
    await kpl.default();
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    try {
      const image = kpl.decodeImage(bytes, 'be_rgb8_ow_3x3.dcm');
      return { width: image.width, height: image.height, rgb: Array.from(image.rgb) };
    } catch (e) {
      return { error: `${e.constructor.name}: ${e.message}` };
    }
  }, fieldCase('be_rgb8_ow_3x3.dcm').toString('base64'));
  assert.equal(decoded.error, undefined, `decodeImage failed: ${decoded.error}`);
  assert.deepEqual([decoded.height, decoded.width], expected.shape.slice(0, 2));
  assert.deepEqual(decoded.rgb, expected.data);
});

test('pydicom\'s SC_rgb_small_odd_big_endian.dcm decodes in wasm to pydicom\'s pixels', { timeout: 60000 }, async () => {
  // The same fault class as be_rgb8_ow_3x3.dcm, in pydicom's own test suite (fetched by
  // scripts/setup.sh; pydicom's rendering in tests/dicom/suite/suite.json).
  const name = 'SC_rgb_small_odd_big_endian.dcm';
  const file = path.join(REPO, 'build', 'pydicom-3.0.2', 'test_files', name);
  assert.ok(fs.existsSync(file), `${file} is missing: run scripts/setup.sh`);
  const suite = JSON.parse(fs.readFileSync(path.join(REPO, 'tests', 'dicom', 'suite', 'suite.json'), 'utf8'));
  const expected = suite.files[name].rgb;
  assert.equal(expected.length, 27);
  await page.goto(`${server.url}/`);
  const decoded = await page.evaluate(async ([b64, name]) => {
    const kpl = await import('/pkg/kpl.js');
    await kpl.default();
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const image = kpl.decodeImage(bytes, name);
    return { width: image.width, height: image.height, rgb: Array.from(image.rgb) };
  }, [fs.readFileSync(file).toString('base64'), name]);
  assert.deepEqual([decoded.height, decoded.width], [3, 3]);
  assert.deepEqual(decoded.rgb, expected);
});

test('be_rgb8_ow_3x3.dcm in the page: a result card, not an error', { timeout: 90000 }, async () => {
  await page.goto(`${server.url}/`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
  await page.locator('#file-input').setInputFiles([
    { name: 'be_rgb8_ow_3x3.dcm', mimeType: 'application/dicom', buffer: fieldCase('be_rgb8_ow_3x3.dcm') },
  ]);
  await page.waitForFunction(() => document.querySelectorAll('#results > li').length === 1 &&
    document.querySelectorAll('[data-kpl-pending]').length === 0, null, { timeout: 60000 });
  const error = await page.locator('[data-kpl-error]').allTextContents();
  assert.deepEqual(error, [], 'no error card');
  const card = page.locator('[data-kpl-result][data-file="be_rgb8_ow_3x3.dcm"]');
  assert.equal(await card.count(), 1);
  // A card far from the viewport, or not yet painted, is not rendered (content-visibility:
  // auto) and its innerText is empty: read it rendered.
  const summary = await card.evaluate((c) => {
    c.style.contentVisibility = 'visible';
    const text = c.querySelector('.dicom').innerText;
    c.style.contentVisibility = '';
    return text;
  });
  assert.match(summary, /Rows × columns\s+3 × 3/);
});

test('mojibake.txt tokenises in wasm to exactly the ids of OpenAI\'s tokenizer', { timeout: 60000 }, async () => {
  const text = fieldCase('mojibake.txt').toString('utf8');
  const expected = JSON.parse(fieldCase('mojibake.openai_ids.json').toString('utf8'));
  assert.equal(text, expected.text, 'the .txt and the .json hold the same text');
  await page.goto(`${server.url}/`);
  const ids = await page.evaluate(async (text) => {
    const kpl = await import('/pkg/kpl.js');
    await kpl.default();
    const get = async (f) => new Uint8Array(await (await fetch(`/fixtures/tiny-quickgelu-f32/${f}`)).arrayBuffer());
    const model = kpl.ClipModel.load(await get('config.json'), await get('model.safetensors'), await get('tokenizer.json'), await get('preprocessor_config.json'));
    try {
      return Array.from(model.tokenize(text));
    } finally {
      model.free();
    }
  }, text);
  assert.deepEqual(ids, expected.openai_ids);
});

test('no error was logged', () => {
  assert.deepEqual(errors, []);
});
