// The page's batch features with the random fixture model and its knowledge bases:
// the per-image progress bar (and the worker's progress replies behind it), custom
// labels with and without descriptions, the DICOM summary on result cards, a batch
// with broken files, and the backend selector with its WebGPU fallback note.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  startServer, launchBrowser, ensureKnowledgeBases, runNative, hugePng, corruptJpeg, fixtureImage, collectErrors, REPO,
} from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';
const TASK = 'chest-xray-pneumonia';

let server;
let browser;
let page;
let classes;
let errors;

before(async () => {
  ensureKnowledgeBases(MODEL);
  server = await startServer({ model: MODEL });
  browser = await launchBrowser({ viewport: { width: 1000, height: 900 } });
  page = await browser.context.newPage();
  errors = collectErrors(page);
  const manifest = await (await fetch(`${server.url}/model/manifest.json`)).json();
  classes = manifest.knowledge.find((k) => k.task === TASK).classes;
  await page.goto(`${server.url}/`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
}, { timeout: 120000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Clears the results, so each test counts only its own cards. */
async function clearResults() {
  if (await page.locator('#clear').isEnabled()) await page.click('#clear');
  await page.waitForFunction(() => document.querySelectorAll('#results > li').length === 0);
}

/** Adds files and waits until no card is pending; returns the results and errors by file. */
async function addFiles(files, { timeout = 30000 } = {}) {
  await page.locator('#file-input').setInputFiles(files);
  await page.waitForFunction((n) => document.querySelectorAll('#results > li').length === n &&
    document.querySelectorAll('[data-kpl-pending]').length === 0, files.length, { timeout });
  return page.evaluate(() => {
    // Cards far from the viewport are not rendered (content-visibility: auto), and
    // innerText of an unrendered card is empty: render each one while it is read.
    const renderedText = (card) => {
      card.style.contentVisibility = 'visible';
      const text = card.innerText;
      card.style.contentVisibility = '';
      return text;
    };
    return {
      results: Object.fromEntries(Array.from(document.querySelectorAll('[data-kpl-result]'), (c) => [c.dataset.file, {
        label: c.dataset.label, method: c.dataset.method, task: c.dataset.task, custom: c.dataset.custom === 'true',
        scores: JSON.parse(c.dataset.scores), backend: c.dataset.backend, encodeMs: Number(c.dataset.encodeMs),
        modality: c.dataset.dicomModality, text: renderedText(c),
      }])),
      errors: Object.fromEntries(Array.from(document.querySelectorAll('[data-kpl-error]'), (c) => [c.dataset.file, renderedText(c)])),
    };
  });
}

async function selectTask(task) {
  await page.selectOption('#task', task);
  if (task !== 'custom') await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 30000 });
}

test('the worker posts one progress reply per image encoded, in the shared protocol', { timeout: 60000 }, async () => {
  const got = await page.evaluate(async () => {
    const { KplClient } = await import('/protocol.js');
    const worker = new Worker('/worker.js', { type: 'module' });
    try {
      const client = new KplClient(worker);
      const downloads = [];
      await client.load('/model/', (p) => downloads.push(p));
      const bytes = async (p) => (await fetch(`/fixtures/images/${p}`)).arrayBuffer();
      const items = [
        { name: 'a.png', data: await bytes('rgb_97x61.png') },
        { name: 'bad.png', data: new ArrayBuffer(8) },
        { name: 'c.png', data: await bytes('grey_80x120.png') },
      ];
      const progress = [];
      const out = await client.embedImages(items, (p) => progress.push(p));
      return {
        downloads: downloads.map(({ stage, unit }) => ({ stage, unit })),
        progress: progress.map(({ stage, unit, file, loaded, total }) => ({ stage, unit, file, loaded, total })),
        results: out.results.map((r) => ({ name: r.name, dim: r.embedding?.length ?? 0, error: r.error ?? null, encodeMs: r.encodeMs })),
        backend: out.backend,
      };
    } finally {
      worker.terminate();
    }
  });
  assert.ok(got.downloads.length >= 1 && got.downloads.every((d) => d.stage === 'download' && d.unit === 'bytes'));
  assert.deepEqual(got.progress, [
    { stage: 'embed', unit: 'images', file: 'a.png', loaded: 1, total: 3 },
    { stage: 'embed', unit: 'images', file: 'bad.png', loaded: 2, total: 3 },
    { stage: 'embed', unit: 'images', file: 'c.png', loaded: 3, total: 3 },
  ]);
  assert.equal(got.results[0].dim, 24);
  assert.ok(got.results[0].encodeMs > 0);
  assert.match(got.results[1].error, /bad\.png/);
  assert.equal(got.results[2].dim, 24);
  assert.equal(got.backend, 'wasm');
});

test('a batch fills an accessible <progress>: images encoded of images added', { timeout: 60000 }, async () => {
  await clearResults();
  // Every value the bar takes, from the attribute's successive old values and the last one.
  await page.evaluate(() => {
    const bar = document.getElementById('embed-progress');
    window.progressValues = [];
    new MutationObserver((records) => {
      for (const r of records) if (r.attributeName === 'value') window.progressValues.push([r.oldValue, bar.getAttribute('max')]);
    }).observe(bar, { attributes: true, attributeOldValue: true, attributeFilter: ['value'] });
  });
  const names = ['rgb_97x61.png', 'grey_80x120.png', 'small_30x40.png'];
  const { results } = await addFiles(names.map(fixtureImage));
  assert.equal(Object.keys(results).length, 3);
  const bar = page.getByRole('progressbar', { name: 'Encoding images' });
  assert.equal(await bar.count(), 1, 'a progressbar named "Encoding images"');
  assert.ok(await bar.isVisible());
  assert.equal(await bar.evaluate((b) => b.tagName), 'PROGRESS');
  assert.equal(await bar.evaluate((b) => [b.value, b.max].join('/')), '3/3');
  assert.match(await page.locator('#embed-progress-text').innerText(), /^3 of 3 images encoded\.$/);
  assert.equal(await bar.getAttribute('aria-describedby'), 'embed-progress-text');
  const seen = await page.evaluate(() => [...window.progressValues.map(([v]) => v), document.getElementById('embed-progress').getAttribute('value')]);
  const steps = seen.filter((v, i) => i === 0 || v !== seen[i - 1]).map(Number);
  assert.deepEqual(steps.slice(-4), [0, 1, 2, 3], `the bar goes 0 → 1 → 2 → 3 of 3 (saw ${seen.join(', ')})`);
  // The model download bar counts bytes: its max is the total size of the model files.
  const manifest = await (await fetch(`${server.url}/model/manifest.json`)).json();
  const total = Object.values(manifest.model.sizes).reduce((a, b) => a + b, 0);
  const download = page.locator('#load-progress');
  assert.equal(Number(await download.getAttribute('max')), total);
  assert.equal(Number(await download.getAttribute('value')), total);
  assert.equal(await download.getAttribute('aria-label'), 'Model download (bytes)');
});

test('a batch with a non-image, a 40000×40000 PNG and a corrupt JPEG: an error card each, KPL over the rest', { timeout: 90000 }, async () => {
  await selectTask(TASK);
  await clearResults();
  const huge = hugePng(40000, 40000);
  assert.ok(huge.length < 100, `the huge PNG is ${huge.length} bytes on disk`);
  const good = ['rgb_97x61.png', 'grey_80x120.png', 'small_30x40.png'];
  const { results, errors: failed } = await addFiles([
    fixtureImage(good[0]),
    { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image\n') },
    fixtureImage(good[1]),
    { name: 'huge.png', mimeType: 'image/png', buffer: huge },
    { name: 'corrupt.jpg', mimeType: 'image/jpeg', buffer: corruptJpeg() },
    fixtureImage(good[2]),
  ]);
  assert.deepEqual(Object.keys(failed).sort(), ['corrupt.jpg', 'huge.png', 'notes.txt']);
  // What is shown: plain words (messages.js; the technical text is in a closed disclosure).
  assert.match(failed['huge.png'], /This image is too large for this page \(1,600 megapixels; the limit is 100\)/);
  assert.match(failed['corrupt.jpg'], /This image file seems damaged or incomplete/);
  assert.match(failed['notes.txt'], /This file is not an image this page can read/);
  assert.deepEqual(Object.keys(results).sort(), [...good].sort());
  for (const name of good) {
    assert.equal(results[name].method, 'kpl', name);
    assert.ok(classes.includes(results[name].label), name);
  }
  assert.match(await page.locator('#embed-progress-text').innerText(), /^6 of 6 images encoded\.$/);
  // The failures change nothing: the three good images alone give the same KPL scores.
  await clearResults();
  const alone = await addFiles(good.map(fixtureImage));
  for (const name of good) {
    assert.deepEqual(alone.results[name].scores, results[name].scores, `${name}: same scores without the broken files`);
  }
});

test('DICOM files: the card shows modality, body part, rows × columns, frames and transfer syntax', { timeout: 60000 }, async () => {
  await selectTask(TASK);
  await clearResults();
  const files = ['CT_small.dcm', 'emri_small.dcm'];
  const { results } = await addFiles(files.map(fixtureImage));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-dicom-'));
  try {
    for (const name of files) {
      const card = results[name];
      assert.ok(card, `${name} is classified`);
      assert.equal(card.method, 'kpl');
      // The native decoder's summary of the same file (kpl decode).
      const native = runNative(['decode', path.join(REPO, 'tests', 'dicom', 'files', name), '-o', path.join(tmp, `${name}.png`)]);
      assert.equal(card.modality, native.modality, `${name}: modality`);
      const dicom = await page.locator(`[data-kpl-result][data-file="${name}"] .dicom`).innerText();
      assert.match(dicom, new RegExp(`Modality\\s+${native.modality}`));
      assert.match(dicom, new RegExp(`Body part\\s+${native.body_part ?? '—'}`));
      assert.match(dicom, new RegExp(`Rows × columns\\s+${native.rows} × ${native.columns}`));
      assert.match(dicom, new RegExp(`Frames\\s+${native.frames}`));
      assert.ok(dicom.includes(`${native.transfer_syntax_name} (${native.transfer_syntax})`), dicom);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  // Each card names the body part of its own file.
  assert.match(await page.locator('[data-file="emri_small.dcm"] .dicom').innerText(), /Body part\s+HEAD[\s\S]*Frames\s+10/);
  // The export carries the summary.
  const [json] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  const data = JSON.parse(fs.readFileSync(await json.path(), 'utf8'));
  assert.deepEqual(data.results.map((r) => r.dicom?.modality), ['CT', 'MR']);
});

test('custom labels without descriptions: plain CLIP, labelled as custom labels', { timeout: 60000 }, async () => {
  await selectTask('custom');
  await clearResults();
  await page.fill('#labels', 'normal, pneumonia, tuberculosis');
  const { results } = await addFiles([fixtureImage('rgb_97x61.png')]);
  const r = results['rgb_97x61.png'];
  assert.equal(r.method, 'clip');
  assert.equal(r.task, 'custom');
  assert.equal(r.custom, true);
  assert.match(r.text, /Custom labels\s+Method: plain CLIP zero-shot/);
  assert.equal(r.scores.length, 3);
});

test('custom labels with descriptions: KPL on the prompt + descriptions, checked against the text embeddings', { timeout: 90000 }, async () => {
  await selectTask('custom');
  await clearResults();
  const spec = {
    normal: ['clear lung fields', 'sharp costophrenic angles'],
    pneumonia: ['patchy consolidation', 'air bronchograms', 'lobar opacity'],
  };
  await page.fill('#labels', Object.entries(spec).map(([c, d]) => `${c}: ${d.join('; ')}`).join('\n'));
  // One image: the class proxy is the average of the prompt and its descriptions (≤ k = 8 texts).
  const one = await addFiles([fixtureImage('grey_80x120.png')]);
  const r = one.results['grey_80x120.png'];
  assert.equal(r.method, 'single-image');
  assert.equal(r.custom, true);
  assert.match(r.text, /Custom labels\s+Method: the class prompt averaged with your descriptions/);
  assert.match(r.text, /KPL \(your descriptions\)/);
  assert.match(r.text, /Evidence/);
  // Independently: embed the texts and the image through the protocol and average.
  const expected = await page.evaluate(async (spec) => {
    const { KplClient } = await import('/protocol.js');
    const worker = new Worker('/worker.js', { type: 'module' });
    try {
      const client = new KplClient(worker);
      const info = await client.load('/model/');
      const image = (await client.embedImage('x.png', await (await fetch('/fixtures/images/grey_80x120.png')).arrayBuffer())).embedding;
      const scores = [];
      for (const [c, descriptions] of Object.entries(spec)) {
        const { embeddings } = await client.embedText([`a photo of a ${c}.`, ...descriptions]);
        const mean = embeddings[0].map((_, j) => embeddings.reduce((s, e) => s + e[j], 0) / embeddings.length);
        const norm = Math.hypot(...mean);
        scores.push(info.logitScale * mean.reduce((s, v, j) => s + (v / norm) * image[j], 0));
      }
      const max = Math.max(...scores);
      const exps = scores.map((s) => Math.exp(s - max));
      return exps.map((e) => e / exps.reduce((a, b) => a + b, 0));
    } finally {
      worker.terminate();
    }
  }, spec);
  r.scores.forEach((p, i) => assert.ok(Math.abs(p - expected[i]) <= 1e-4, `class ${i}: ${p} vs ${expected[i]}`));
  const evidence = await page.locator('[data-file="grey_80x120.png"] .evidence li').allInnerTexts();
  const texts = spec[r.label].concat(`a photo of a ${r.label}.`);
  assert.ok(evidence.length > 0 && evidence.every((e) => texts.some((t) => e.startsWith(t))), evidence.join(' | '));

  // Several images: transductive KPL with the same knowledge.
  await clearResults();
  const names = ['rgb_97x61.png', 'small_30x40.png', 'photo_120x100.jpg'];
  const many = await addFiles(names.map(fixtureImage));
  for (const name of names) {
    assert.equal(many.results[name].method, 'kpl', name);
    assert.ok(Object.keys(spec).includes(many.results[name].label));
    assert.match(many.results[name].text, /Custom labels\s+Method: transductive KPL over the images added together, with the class prompts and your descriptions/);
  }
});

test('an empty custom-labels field is refused with a message, not sent', async () => {
  await selectTask('custom');
  await clearResults();
  await page.fill('#labels', '  \n ');
  await page.locator('#file-input').setInputFiles([fixtureImage('rgb_97x61.png')]);
  await page.locator('#labels-error').waitFor();
  assert.match(await page.locator('#labels-error').innerText(), /at least one class/);
  assert.equal(await page.locator('#labels').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('#results > li').count(), 0);
  await page.fill('#labels', 'normal\npneumonia');
  assert.equal(await page.locator('#labels').getAttribute('aria-invalid'), 'false');
});

test('the backend selector: WebGPU runs the encoder, auto chooses by its probe, results name the backend', { timeout: 120000 }, async () => {
  await selectTask(TASK);
  await clearResults();
  const note = page.locator('#backend-note');
  assert.equal(await page.getByLabel('Compute backend').count(), 1);
  assert.deepEqual(await page.locator('#backend option').evaluateAll((o) => o.map((x) => x.value)), ['auto', 'wasm', 'webgpu']);
  // WebGPU asked for: Chromium's software adapter (SwiftShader) runs the encoder.
  await page.selectOption('#backend', 'webgpu');
  await page.locator('body[data-model-ready="true"][data-backend="webgpu"]').waitFor({ timeout: 60000 });
  assert.equal(await note.locator('.plain').innerText(), 'Classifying on the GPU.');
  assert.match(await note.locator('.detail-text').textContent(), /^WebGPU on .*per image against .* on the CPU\.$/);
  const gpuRun = await addFiles([fixtureImage('rgb_97x61.png'), fixtureImage('grey_80x120.png')]);
  for (const r of Object.values(gpuRun.results)) {
    assert.equal(r.backend, 'webgpu');
    assert.match(r.text, /Backend: GPU \(WebGPU\)/);
  }
  // The CPU asked for: no probe, no note, and the same labels and scores within 1e-4.
  await clearResults();
  await page.selectOption('#backend', 'wasm');
  await page.locator('body[data-model-ready="true"][data-backend="wasm"]').waitFor({ timeout: 30000 });
  assert.ok(!(await note.isVisible()), 'no note when the CPU is asked for');
  const cpuRun = await addFiles([fixtureImage('rgb_97x61.png'), fixtureImage('grey_80x120.png')]);
  for (const [file, r] of Object.entries(cpuRun.results)) {
    assert.equal(r.backend, 'wasm');
    assert.equal(r.label, gpuRun.results[file].label, `${file}: the label does not depend on the backend`);
    const diff = Math.max(...r.scores.map((v, i) => Math.abs(v - gpuRun.results[file].scores[i])));
    assert.ok(diff <= 1e-4, `${file}: CPU and WebGPU scores differ by ${diff}`);
  }
  // Auto: the model answers on the CPU at once; in the background both engines embed a
  // probe image, the faster is kept, and the note says so.
  await page.selectOption('#backend', 'auto');
  await page.locator('body[data-model-ready="true"][data-backend-settled="true"]').waitFor({ timeout: 60000 });
  assert.match(await note.locator('.detail-text').textContent(), /^Auto: .* per image against /);
  const probe = { cpu: Number(await note.getAttribute('data-cpu-ms')), gpu: Number(await note.getAttribute('data-gpu-ms')) };
  assert.ok(probe.cpu > 0 && probe.gpu > 0, `the probe timed both engines: ${JSON.stringify(probe)}`);
  const chosen = await page.locator('body').getAttribute('data-backend');
  assert.equal(chosen, probe.gpu < probe.cpu ? 'webgpu' : 'wasm', `auto chose ${chosen} with ${JSON.stringify(probe)}`);
  console.log(`# auto: probe CPU ${probe.cpu.toFixed(1)} ms, WebGPU ${probe.gpu.toFixed(1)} ms -> ${chosen}`);
  // The load request carries the backend; an unknown one is refused before it is sent.
  const bad = await page.evaluate(async () => {
    const { KplClient } = await import('/protocol.js');
    const worker = new Worker('/worker.js', { type: 'module' });
    try {
      return await new KplClient(worker).load('/model/', undefined, { backend: 'cuda' }).then(() => 'accepted', (e) => e.message);
    } finally {
      worker.terminate();
    }
  });
  assert.match(bad, /unknown backend "cuda"/);
});

test('without a WebGPU adapter, asking for WebGPU falls back to the CPU with a visible note and still classifies', { timeout: 90000 }, async () => {
  const plain = await launchBrowser({ webgpu: false });
  try {
    const p = await plain.context.newPage();
    const errors = collectErrors(p);
    await p.goto(`${server.url}/`);
    await p.locator('body[data-model-ready="true"]').waitFor({ timeout: 30000 });
    await p.selectOption('#backend', 'webgpu');
    const note = p.locator('#backend-note');
    await p.waitForFunction(() => /WebGPU could not start/.test(document.getElementById('backend-note').textContent), null, { timeout: 30000 });
    assert.equal(await note.locator('.plain').innerText(), 'No GPU is available to this page; classifying on the CPU.');
    assert.match(await note.locator('.detail-text').textContent(), /WebGPU could not start \(.*no GPU adapter.*\); using the CPU \(WebAssembly\)\./);
    assert.equal(await p.locator('body').getAttribute('data-backend'), 'wasm');
    await p.locator('#file-input').setInputFiles([fixtureImage('rgb_97x61.png'), fixtureImage('grey_80x120.png')]);
    await p.waitForFunction(() => document.querySelectorAll('[data-kpl-result]').length === 2, null, { timeout: 30000 });
    const backends = await p.locator('[data-kpl-result]').evaluateAll((cards) => cards.map((c) => c.dataset.backend));
    assert.deepEqual(backends, ['wasm', 'wasm']);
    assert.deepEqual(errors, []);
  } finally {
    await plain.close();
  }
});

test('the <kpl-classifier> widget speaks the same protocol: backend note, per-image progress, error entries', { timeout: 60000 }, async () => {
  const widget = await browser.context.newPage();
  const widgetErrors = collectErrors(widget);
  try {
    await widget.goto(`${server.url}/embed-example.html`);
    await widget.locator('kpl-classifier[data-ready="true"]').waitFor({ timeout: 30000 });
    // A new backend restarts the widget, which asks the worker for it.
    await widget.evaluate(() => {
      const w = document.querySelector('kpl-classifier');
      w.removeAttribute('data-ready');
      w.setAttribute('backend', 'webgpu');
    });
    await widget.locator('kpl-classifier[data-ready="true"][data-backend="webgpu"]').waitFor({ timeout: 60000 });
    assert.match(await widget.locator('kpl-classifier .note .detail-text').textContent(), /^WebGPU on /);
    const details = await widget.evaluate(async () => {
      const w = document.querySelector('kpl-classifier');
      const bytes = async (p) => new File([await (await fetch(`/fixtures/images/${p}`)).arrayBuffer()], p, { type: 'image/png' });
      const out = await w.classifyFiles([await bytes('rgb_97x61.png'), new File(['no'], 'notes.txt'), await bytes('grey_80x120.png')]);
      const bar = w.shadowRoot.querySelector('progress');
      return { out: out.map(({ file, method, backend }) => ({ file, method, backend })), bar: [bar.value, bar.max] };
    });
    assert.deepEqual(details.out, [
      { file: 'rgb_97x61.png', method: 'kpl', backend: 'webgpu' },
      { file: 'grey_80x120.png', method: 'kpl', backend: 'webgpu' },
    ]);
    assert.deepEqual(details.bar, [3, 3]);
    assert.equal(await widget.getByRole('progressbar', { name: 'Encoding images' }).count(), 1);
    assert.equal(await widget.locator('kpl-classifier [data-kpl-error][data-file="notes.txt"]').count(), 1);
    assert.deepEqual(widgetErrors, []);
  } finally {
    await widget.close();
  }
});

test('no error was logged', () => {
  assert.deepEqual(errors, []);
});
