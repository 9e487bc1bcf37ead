// SigLIP in the browser: tiny-siglip-a (tokenizer.json) and tiny-siglip-b (only
// spiece.model, read by the pure-Rust SentencePiece in the wasm), each as its folder
// and as a `kpl pack` q8 bundle, loaded by the worker (the page's and the widget's
// path, through the protocol's KplClient), against the native CLI on the same files:
//
//   image and text embeddings, zero-shot scores:   max |diff| <= 1e-5 (same dtype; a
//              bundle's q8 layers with the native kernel, the load request's quantKernel)
//   zero-shot: a sigmoid per label (Rust's scoring; nothing family-specific in JS),
//              so the scores need not sum to 1 — the page says so, and that the
//              weights are random; the <kpl-classifier> widget classifies with SigLIP.
//   a CLIP-built knowledge base is refused by a SigLIP model, naming both families.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { openApp, workerResults, workerLoadMessages, widgetClassifies, classifyCustomLabels, runNative, ensureKnowledgeBases, maxAbsDiff, OUT, CSP } from './helpers.mjs';

const MODELS = ['tiny-siglip-a', 'tiny-siglip-b'];
const IMAGES = ['rgb_97x61.png', 'grey_80x120.png', 'photo_120x100.jpg'];
const TEXTS = ['pneumonia', 'A photo of a normal chest X-ray.', 'opacité pulmonaire café naïve', '肺炎 胸部X光', ''];
const LABELS = ['normal', 'pneumonia', 'tuberculosis'];
const NATIVE_TOLERANCE = 1e-5;
const BUNDLES = path.join(OUT, 'siglip-bundles');

/** Every model source: [label, folder on disk, URL the worker loads]. */
const SOURCES = MODELS.flatMap((name) => [
  [`${name} folder`, path.join('tests', 'fixtures', name), `/fixtures/${name}/`],
  [`${name} q8 bundle`, path.join(BUNDLES, `${name}-q8`), `/test/out/siglip-bundles/${name}-q8/`],
]);

let app;
let page;
let browserResults;

before(async () => {
  fs.rmSync(BUNDLES, { recursive: true, force: true });
  for (const name of MODELS) {
    runNative(['pack', '--model', path.join('tests', 'fixtures', name), '--dtype', 'q8', '--threads', '1', '-o', path.join(BUNDLES, `${name}-q8`)]);
  }
  // The page and the widget run tiny-siglip-b (spiece.model only) with its own bases;
  // a CLIP model's base is made to be refused.
  const kb = ensureKnowledgeBases('tests/fixtures/tiny-siglip-b');
  const clipKb = ensureKnowledgeBases('tests/fixtures/tiny-quickgelu-f32');
  fs.mkdirSync(path.join(BUNDLES, 'clip-kb'), { recursive: true });
  fs.copyFileSync(path.join(clipKb, 'chest-xray-pneumonia.kplkb'), path.join(BUNDLES, 'clip-kb', 'chest-xray-pneumonia.kplkb'));
  // Bad folders (as tests/siglip.rs makes them for the CLI): a config.json without
  // text_config, a tokenizer.json padding with an id past the embedding table.
  const copy = (name, to) => {
    fs.mkdirSync(path.join(BUNDLES, to), { recursive: true });
    for (const f of fs.readdirSync(path.join('tests', 'fixtures', name))) fs.copyFileSync(path.join('tests', 'fixtures', name, f), path.join(BUNDLES, to, f));
    return path.join(BUNDLES, to);
  };
  const noField = copy('tiny-siglip-b', 'no-text-config');
  const config = JSON.parse(fs.readFileSync(path.join(noField, 'config.json'), 'utf8'));
  delete config.text_config;
  fs.writeFileSync(path.join(noField, 'config.json'), JSON.stringify(config));
  const padId = copy('tiny-siglip-a', 'pad-id');
  // Without its tokenizer_config.json, whose pad_token would take precedence (as in
  // transformers; tests/tokenizer-config.test.mjs covers that pair).
  fs.rmSync(path.join(padId, 'tokenizer_config.json'), { force: true });
  const tokenizer = JSON.parse(fs.readFileSync(path.join(padId, 'tokenizer.json'), 'utf8'));
  tokenizer.padding = { strategy: 'BatchLongest', direction: 'Right', pad_to_multiple_of: null, pad_id: 5000, pad_type_id: 0, pad_token: '<pad>' };
  fs.writeFileSync(path.join(padId, 'tokenizer.json'), JSON.stringify(tokenizer));
  app = await openApp({ model: 'tests/fixtures/tiny-siglip-b', kb });
  page = app.page;
  // A bundle's q8 layers with the native CLI's kernel (quantised activations).
  browserResults = await workerResults(page, { sources: SOURCES, images: IMAGES, texts: TEXTS, labels: LABELS });
}, { timeout: 300000 });

after(async () => {
  await app?.close();
  fs.rmSync(BUNDLES, { recursive: true, force: true });
});

for (const [label, dir] of SOURCES) {
  test(`${label}: the worker's image and text embeddings and zero-shot scores equal native (max |diff| <= ${NATIVE_TOLERANCE})`, { timeout: 120000 }, () => {
    const ours = browserResults[label];
    assert.ok(ours, `no browser result for ${label}`);
    assert.equal(ours.info.family, 'siglip');
    assert.equal(ours.info.isRandom, true, 'the fixtures are marked as random weights');
    assert.match(ours.info.scoringNote, /need not sum to 1/);
    const files = IMAGES.map((f) => path.join('tests', 'fixtures', 'images', f));
    const images = runNative(['embed-image', '--model', dir, ...files]).embeddings;
    const texts = runNative(['embed-text', '--model', dir, '--', ...TEXTS]).embeddings;
    assert.equal(images.length, IMAGES.length);
    assert.equal(texts.length, TEXTS.length);
    IMAGES.forEach((file, i) => {
      const d = maxAbsDiff(ours.images[i], images[i].embedding);
      assert.ok(d <= NATIVE_TOLERANCE, `${label} ${file}: image max |diff| ${d}`);
    });
    TEXTS.forEach((text, i) => {
      assert.equal(texts[i].text, text);
      const d = maxAbsDiff(ours.texts[i], texts[i].embedding);
      assert.ok(d <= NATIVE_TOLERANCE, `${label} ${JSON.stringify(text)}: text max |diff| ${d}`);
    });
    IMAGES.forEach((file, i) => {
      const native = runNative(['classify', '--model', dir, '--labels', LABELS.join(','), path.join('tests', 'fixtures', 'images', file)]);
      assert.match(native.scoring, /need not sum to 1/);
      const expected = LABELS.map((l) => native.results[0].scores[l]);
      const got = ours.classify[i];
      assert.deepEqual(got.labels, LABELS);
      const d = maxAbsDiff(got.probs, expected);
      assert.ok(d <= NATIVE_TOLERANCE, `${label} ${file}: zero-shot max |diff| ${d}`);
      assert.equal(got.label, native.results[0].label);
    });
    // A sigmoid per label: over every image, the scores do not sum to 1.
    const sums = ours.classify.map((c) => c.probs.reduce((a, b) => a + b, 0));
    assert.ok(sums.some((s) => Math.abs(s - 1) > 1e-3), `sums ${sums}`);
  });
}

test('the page: SigLIP zero-shot on custom labels says the scores need not sum to 1 and the weights are random', { timeout: 60000 }, async () => {
  const { banner, method, text, scores } = await classifyCustomLabels(page, LABELS, 'rgb_97x61.png');
  assert.match(banner, /Random test weights/);
  assert.equal(method, 'clip');
  assert.match(text, /Method: plain SigLIP zero-shot/);
  assert.match(text, /Plain SigLIP scores: sigmoid per label .*need not sum to 1/);
  const native = runNative(['classify', '--model', 'tests/fixtures/tiny-siglip-b', '--labels', LABELS.join(','), path.join('tests', 'fixtures', 'images', 'rgb_97x61.png')]);
  assert.ok(maxAbsDiff(scores, LABELS.map((l) => native.results[0].scores[l])) <= NATIVE_TOLERANCE, `${scores}`);
  assert.deepEqual(app.errors, []);
});

test('a knowledge base built by a CLIP model is refused by the SigLIP model, naming the base and both families', { timeout: 60000 }, async () => {
  const message = await page.evaluate(async () => {
    const { KplClient } = await import('/protocol.js');
    const worker = new Worker('/worker.js', { type: 'module' });
    try {
      const client = new KplClient(worker);
      await client.load('/fixtures/tiny-siglip-b/', undefined, { backend: 'wasm' });
      return await client.loadKb('/test/out/siglip-bundles/clip-kb/chest-xray-pneumonia.kplkb').then(() => 'accepted', (e) => e.message);
    } finally {
      worker.terminate();
    }
  }).catch((e) => e.message);
  assert.match(message, /chest-xray-pneumonia\.kplkb/);
  assert.match(message, /CLIP model/);
  assert.match(message, /SigLIP model/);
});

test('bad SigLIP folders are refused by the worker, naming the file and the problem', { timeout: 60000 }, async () => {
  const messages = await workerLoadMessages(page, ['/test/out/siglip-bundles/no-text-config/', '/test/out/siglip-bundles/pad-id/']);
  assert.match(messages[0], /config\.json/);
  assert.match(messages[0], /text_config/);
  assert.match(messages[1], /tokenizer\.json/);
  assert.match(messages[1], /pad id 5000/);
});

test('the <kpl-classifier> widget classifies with a SigLIP model', { timeout: 60000 }, async () => {
  const { detail: d, warning, errors, csp } = await widgetClassifies(app.browser, app.server, 'rgb_97x61.png');
  assert.equal(csp, CSP);
  assert.equal(d.file, 'rgb_97x61.png');
  // The same base and image natively: the same label, method and KPL scores.
  const kb = path.join('build', 'kb', 'tiny-siglip-b', 'chest-xray-pneumonia.kplkb');
  const native = runNative(['classify', '--model', 'tests/fixtures/tiny-siglip-b', '--kb', kb, path.join('tests', 'fixtures', 'images', 'rgb_97x61.png')]);
  const expected = native.results[0];
  assert.equal(d.label, expected.label);
  assert.equal(d.method, expected.method);
  const classes = Object.keys(expected.scores);
  assert.equal(d.scores.length, classes.length);
  // The widget's own warning that the weights are random is shown.
  assert.match(warning, /Random test weights/);
  assert.deepEqual(errors, [], 'no CSP violation or error');
});
