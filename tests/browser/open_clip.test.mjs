// open_clip in the browser: tiny-open-clip-bert (BiomedCLIP-shaped: timm ViT, BERT text
// tower, WordPiece, PyTorch pickle weights) and tiny-open-clip-vit (open_clip's own ViT
// and text transformer, f16 safetensors) and tiny-open-clip-mean (mean pooling on both
// towers, a BERT config.json, vocab.txt only), each as its folder (the pickle read by the
// wasm's io::pytorch) and as `kpl pack` q8 and q4 bundles (the resolved configuration
// stored: no pickle in the page), and tiny-open-clip-bert with vocab.txt instead of
// tokenizer.json, loaded by the worker through the protocol's KplClient
// (the page's and the widget's path):
//
//   image and text embeddings, zero-shot scores: max |diff| <= 1e-5 to the native CLI
//              on the same files. A bundle's quantised layers are expanded to f32 on
//              both sides (the worker's quantKernel and the CLI's --quant-kernel
//              'dequantize'): the kernels that quantise activations to 8 bits ('blocks',
//              'int8') turn float-rounding differences between the two builds into
//              whole quantisation steps wherever an activation sits at a rounding
//              boundary, which the fc2 layers of these fixtures (256 inputs) meet:
//              measured 3.5e-3 (image) and 7.8e-3 (text) with 'blocks';
//   embeddings: cosine to open_clip's own (tests/fixtures/open_clip_reference.json)
//              >= 0.999 for the folders, >= 0.99 for the q8 bundles and >= 0.98 for
//              q4 (4-bit fc2 layers; the native suite, tests/open_clip.rs, bounds both
//              at 0.99 against the f32 model on fewer texts);
//   the page names the family ("plain open_clip zero-shot") and says the weights are
//   random; the <kpl-classifier> widget classifies with the open_clip model;
//   bad input (a bundle with a tensor missing or a vision tower of an architecture we do
//   not implement, an open_clip_config.json asking for a tower the pickle lacks) is
//   refused by the worker, naming the file.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { openApp, workerResults, workerLoadMessages, widgetClassifies, classifyCustomLabels, runNative, ensureKnowledgeBases, fixtureImage, maxAbsDiff, cosine, FIXTURES, OUT, CSP } from './helpers.mjs';

const MODELS = ['tiny-open-clip-bert', 'tiny-open-clip-vit', 'tiny-open-clip-mean'];
const IMAGES = ['rgb_97x61.png', 'grey_80x120.png', 'photo_120x100.jpg'];
// From the reference's texts: accents, CJK, the empty text, one longer than BERT's 256 tokens.
const TEXTS = ['a photo of a chest x-ray', 'pneumonia', 'opacité pulmonaire café naïve', '肺炎 胸部X光', ''];
const LONG = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'open_clip_reference.json'), 'utf8'))
  .models['tiny-open-clip-bert'].texts.map((t) => t.text).filter((t) => t.startsWith('nodule 1:')).sort((a, b) => b.length - a.length)[0];
TEXTS.push(LONG);
const LABELS = ['normal', 'pneumonia', 'tuberculosis'];
const NATIVE_TOLERANCE = 1e-5;
const OUT_DIR = path.join(OUT, 'open-clip');
const URL_DIR = '/test/out/open-clip';
const PAGE_MODEL = 'tests/fixtures/tiny-open-clip-bert';
/** The CPU kernel of quantised layers on both sides (see above). */
const KERNEL = 'dequantize';
const native = (args) => runNative(['--quant-kernel', KERNEL, ...args]);

/**
 * Every model source: [label, folder on disk, URL the worker loads, model name, min cosine
 * to open_clip, the dtype `before` packs it to (null: a folder)].
 */
const SOURCES = [
  ...MODELS.flatMap((name) => [
    [`${name} folder`, path.join('tests', 'fixtures', name), `/fixtures/${name}/`, name, 0.999, null],
    ...[['q8', 0.99], ['q4', 0.98]].map(([dtype, min]) => [`${name} ${dtype} bundle`, path.join(OUT_DIR, `${name}-${dtype}`), `${URL_DIR}/${name}-${dtype}/`, name, min, dtype]),
  ]),
  // BiomedCLIP's repository layout without tokenizer.json: vocab.txt + tokenizer_config.json.
  ['tiny-open-clip-bert vocab.txt folder', path.join(OUT_DIR, 'vocab-only'), `${URL_DIR}/vocab-only/`, 'tiny-open-clip-bert', 0.999, null],
];

let app;
let page;
let browserResults;
const reference = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'open_clip_reference.json'), 'utf8'));

/** A copy of a folder under OUT_DIR/`to`. */
function copy(from, to) {
  const dir = path.join(OUT_DIR, to);
  fs.cpSync(from, dir, { recursive: true });
  return dir;
}

/**
 * Replaces `from` by `to` (the same length, so the GGUF stays well formed) once in a
 * bundle's encoder file, and lists the edited file's size and SHA-256 in its manifest:
 * the manifest check passes and the loader meets the edit.
 */
function editEncoder(bundle, file, from, to) {
  assert.equal(from.length, to.length);
  const f = path.join(bundle, file);
  const bytes = fs.readFileSync(f);
  const at = bytes.indexOf(from);
  assert.ok(at >= 0 && bytes.indexOf(from, at + 1) < 0, `${from} once in ${file}`);
  bytes.write(to, at, 'latin1');
  fs.writeFileSync(f, bytes);
  const manifest = JSON.parse(fs.readFileSync(path.join(bundle, 'manifest.json'), 'utf8'));
  const entry = Object.values(manifest.files).find((e) => e.path === file);
  entry.sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
  entry.bytes = bytes.length;
  fs.writeFileSync(path.join(bundle, 'manifest.json'), JSON.stringify(manifest, null, 2));
}

before(async () => {
  fs.rmSync(OUT_DIR, { recursive: true, force: true });
  for (const [, dir, , name, , dtype] of SOURCES) {
    if (dtype) runNative(['pack', '--model', path.join('tests', 'fixtures', name), '--dtype', dtype, '--threads', '1', '-o', dir]);
  }
  fs.rmSync(path.join(copy(path.join('tests', 'fixtures', 'tiny-open-clip-bert'), 'vocab-only'), 'tokenizer.json'));
  // Bad bundles: a tensor renamed away, a vision tower kind we do not implement.
  const missing = copy(path.join(OUT_DIR, 'tiny-open-clip-bert-q8'), 'missing-tensor');
  editEncoder(missing, 'image_encoder.gguf', 'visual.trunk.norm.weight', 'visual.trunk.nxrm.weight');
  const arch = copy(path.join(OUT_DIR, 'tiny-open-clip-bert-q8'), 'unknown-arch');
  editEncoder(arch, 'image_encoder.gguf', '"kind":"timm_vit"', '"kind":"timm_cnn"');
  // A folder whose open_clip_config.json asks for open_clip's own ViT, which the pickle lacks.
  const tower = copy(path.join('tests', 'fixtures', 'tiny-open-clip-bert'), 'pickle-missing');
  const config = JSON.parse(fs.readFileSync(path.join(tower, 'open_clip_config.json'), 'utf8'));
  config.model_cfg.vision_cfg = { image_size: 64, layers: 2, width: 128, patch_size: 16 };
  fs.writeFileSync(path.join(tower, 'open_clip_config.json'), JSON.stringify(config));
  app = await openApp({ model: PAGE_MODEL, kb: ensureKnowledgeBases(PAGE_MODEL) });
  page = app.page;
  browserResults = await workerResults(page, { sources: SOURCES, images: IMAGES, texts: TEXTS, labels: LABELS, quantKernel: KERNEL });
}, { timeout: 300000 });

after(async () => {
  await app?.close();
  fs.rmSync(OUT_DIR, { recursive: true, force: true });
});

for (const [label, dir, , name, minCosine] of SOURCES) {
  test(`${label}: the worker's embeddings and zero-shot scores equal native (max |diff| <= ${NATIVE_TOLERANCE}), cosine to open_clip >= ${minCosine}`, { timeout: 120000 }, () => {
    const ours = browserResults[label];
    assert.ok(ours, `no browser result for ${label}`);
    assert.equal(ours.info.family, 'open_clip');
    assert.equal(ours.info.familyName, 'open_clip');
    assert.equal(ours.info.isRandom, true, 'the fixtures are marked as random weights');
    assert.match(ours.info.scoringNote, /sum to 1/);
    const files = IMAGES.map((f) => path.join('tests', 'fixtures', 'images', f));
    const images = native(['embed-image', '--model', dir, ...files]).embeddings;
    const texts = native(['embed-text', '--model', dir, '--', ...TEXTS]).embeddings;
    const ref = reference.models[name];
    IMAGES.forEach((file, i) => {
      const d = maxAbsDiff(ours.images[i], images[i].embedding);
      assert.ok(d <= NATIVE_TOLERANCE, `${label} ${file}: image max |diff| ${d}`);
      const expected = ref.images.find((r) => r.file === `images/${file}`);
      const c = cosine(ours.images[i], expected.embedding);
      assert.ok(c >= minCosine, `${label} ${file}: cosine to open_clip ${c}`);
    });
    TEXTS.forEach((text, i) => {
      assert.equal(texts[i].text, text);
      const d = maxAbsDiff(ours.texts[i], texts[i].embedding);
      assert.ok(d <= NATIVE_TOLERANCE, `${label} ${JSON.stringify(text.slice(0, 40))}: text max |diff| ${d}`);
      const expected = ref.texts.find((r) => r.text === text);
      const c = cosine(ours.texts[i], expected.embedding);
      assert.ok(c >= minCosine, `${label} ${JSON.stringify(text.slice(0, 40))}: cosine to open_clip ${c}`);
    });
    IMAGES.forEach((file, i) => {
      const scores = native(['classify', '--model', dir, '--labels', LABELS.join(','), files[i]]).results[0];
      const got = ours.classify[i];
      assert.deepEqual(got.labels, LABELS);
      const d = maxAbsDiff(got.probs, LABELS.map((l) => scores.scores[l]));
      assert.ok(d <= NATIVE_TOLERANCE, `${label} ${file}: zero-shot max |diff| ${d}`);
      assert.equal(got.label, scores.label);
      // open_clip's softmax: one image's scores sum to 1.
      assert.ok(Math.abs(got.probs.reduce((a, b) => a + b, 0) - 1) < 1e-5);
    });
  });
}

test('the page: plain open_clip zero-shot on custom labels, with the random-weights banner', { timeout: 60000 }, async () => {
  const { banner, method, text, scores } = await classifyCustomLabels(page, LABELS, 'rgb_97x61.png');
  assert.match(banner, /Random test weights/);
  assert.equal(method, 'clip');
  assert.match(text, /Method: plain open_clip zero-shot/);
  assert.match(text, /Plain open_clip scores: softmax over the labels/);
  const native = runNative(['classify', '--model', PAGE_MODEL, '--labels', LABELS.join(','), path.join('tests', 'fixtures', 'images', 'rgb_97x61.png')]);
  assert.ok(maxAbsDiff(scores, LABELS.map((l) => native.results[0].scores[l])) <= NATIVE_TOLERANCE, `${scores}`);
  assert.deepEqual(app.errors, []);
});

test('the <kpl-classifier> widget classifies with an open_clip model', { timeout: 60000 }, async () => {
  const { detail, warning, errors, csp } = await widgetClassifies(app.browser, app.server, 'rgb_97x61.png');
  assert.equal(csp, CSP);
  assert.equal(detail.file, 'rgb_97x61.png');
  // The same base and image natively: the same label, method and KPL scores.
  const kb = path.join('build', 'kb', path.basename(PAGE_MODEL), 'chest-xray-pneumonia.kplkb');
  const native = runNative(['classify', '--model', PAGE_MODEL, '--kb', kb, path.join('tests', 'fixtures', 'images', 'rgb_97x61.png')]).results[0];
  assert.equal(detail.label, native.label);
  assert.equal(detail.method, native.method);
  const classes = Object.keys(native.scores);
  assert.ok(maxAbsDiff(detail.scores, classes.map((c) => native.scores[c])) <= 1e-4, `${detail.scores}`);
  assert.match(warning, /Random test weights/);
  assert.deepEqual(errors, [], 'no CSP violation or error');
});

test('bad open_clip bundles and folders are refused by the worker, naming the file and the problem', { timeout: 60000 }, async () => {
  const [missing, arch, tower] = await workerLoadMessages(page, ['missing-tensor', 'unknown-arch', 'pickle-missing'].map((d) => `${URL_DIR}/${d}/`));
  assert.match(missing, /image_encoder\.gguf/);
  assert.match(missing, /visual\.trunk\.norm\.weight/);
  assert.match(arch, /image_encoder\.gguf/);
  assert.match(arch, /timm_cnn/);
  assert.match(tower, /open_clip_pytorch_model\.bin/);
  assert.match(tower, /visual\.conv1\.weight/);
});

test('an open_clip folder opened from this computer is stored, listed and classifies (its pickle read in the page)', { timeout: 240000 }, async () => {
  const folder = path.join(FIXTURES, 'tiny-open-clip-bert');
  await page.evaluate(() => delete document.body.dataset.modelOpen);
  await page.locator('#model-folder').setInputFiles(folder);
  await page.locator('body[data-model-open="stored"], body[data-model-open="failed"]').waitFor({ timeout: 60000 });
  assert.equal(await page.evaluate(() => document.body.dataset.modelOpen), 'stored', await page.locator('#models-message').innerText());
  const rows = await page.locator('#stored-list tbody tr').evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.deepEqual(rows.map(([name, kind]) => [name, kind]), [['tiny-open-clip-bert (random test weights: outputs mean nothing)', 'open_clip folder']]);
  // The task's base is built in the worker with the stored model's BERT tower.
  await page.selectOption('#task', 'chest-xray-pneumonia');
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 180000 });
  await page.locator('#file-input').setInputFiles([fixtureImage('grey_80x120.png')]);
  const card = page.locator('[data-kpl-result][data-file="grey_80x120.png"]');
  await card.waitFor({ state: 'attached', timeout: 60000 });
  const kb = path.join('build', 'kb', path.basename(PAGE_MODEL), 'chest-xray-pneumonia.kplkb');
  const expected = runNative(['classify', '--model', PAGE_MODEL, '--kb', kb, path.join('tests', 'fixtures', 'images', 'grey_80x120.png')]).results[0];
  assert.equal(await card.getAttribute('data-label'), expected.label);
  assert.equal(await card.getAttribute('data-method'), expected.method);
  assert.deepEqual(app.errors, []);
});
