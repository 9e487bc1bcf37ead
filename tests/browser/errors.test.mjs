// Every public wasm function, given bad input, throws a JS Error with a message
// (never a panic: a Rust panic in wasm surfaces as `RuntimeError: unreachable` and
// leaves the module unusable), and the module still works afterwards.
//
// The calls run in headless Chromium on the test page (served by
// `scripts/serve.mjs --test`), straight against /pkg/kpl.js, as the worker uses it.
// Needs `make native` (to pack a small bundle) and the wasm build in pkg/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startServer, launchBrowser, ensureKnowledgeBases, runNative, REPO } from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';
const OTHER_MODEL = 'tests/fixtures/tiny-gelu-f16';
const TASK = 'chest-xray-pneumonia';
const REGRESSIONS = path.join(REPO, 'tests', 'fuzz_regressions', 'gguf_bundle');

let server;
let browser;
let results;

const b64 = (buf) => Buffer.from(buf).toString('base64');
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

function crc32(buf) {
  let crc = 0xffffffff;
  for (const b of buf) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(kind, data) {
  const body = Buffer.concat([Buffer.from(kind, 'latin1'), data]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

function png40000() {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(40000, 0);
  ihdr.writeUInt32BE(40000, 4);
  ihdr.set([8, 0, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from('89504e470d0a1a0a', 'hex'),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Runs in the page: calls every export with bad input, then good input. */
async function runInPage(input) {
  const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const kpl = await import('/pkg/kpl.js');
  await kpl.default();
  const { ClipModel, KnowledgeBase, setQuantKernel, verifyBundleFile, runKpl } = kpl;

  const fetchBytes = async (url) => {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  };
  const model = async (dir, { tokenizer = true } = {}) => {
    const base = `/fixtures/${dir}/`;
    const [config, weights, tok, pre] = await Promise.all(
      ['config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json'].map((f) => fetchBytes(base + f)),
    );
    return { config, weights, tokenizer: tokenizer ? tok : undefined, preprocessor: pre };
  };

  const files = await model('tiny-quickgelu-f32');
  const png = await fetchBytes('/fixtures/images/rgb_97x61.png');
  const kbBytes = bytes(input.kb);
  const bundle = {
    manifest: input.bundle.manifest,
    image: bytes(input.bundle.image),
    text: bytes(input.bundle.text),
  };
  const garbage = bytes(input.garbage);
  const hugePng = bytes(input.hugePng);

  // Models the failing calls need; loading these must succeed.
  const good = ClipModel.load(files.config, files.weights, files.tokenizer, files.preprocessor);
  const noTokenizer = ClipModel.load(files.config, files.weights, undefined, files.preprocessor);
  const other = await model('tiny-gelu-f16');
  const otherModel = ClipModel.load(other.config, other.weights, other.tokenizer, other.preprocessor);
  const imageOnly = ClipModel.loadBundle(bundle.manifest, bundle.image, undefined);
  const kb = KnowledgeBase.load(kbBytes, 'task.kplkb');
  const embedding = good.embedImage(png, 'rgb_97x61.png');

  const garbageManifest = JSON.stringify({
    ...JSON.parse(bundle.manifest),
    files: { image_encoder: { path: 'image_encoder.gguf', bytes: garbage.length, sha256: input.garbageSha256 } },
  });
  const newerManifest = JSON.stringify({ ...JSON.parse(bundle.manifest), format_version: 99 });
  const truncatedKb = kbBytes.slice(0, Math.floor(kbBytes.length / 2));
  const dim = embedding.length;

  // Inputs that once crashed a fuzz target (tests/fuzz_regressions/gguf_bundle/),
  // each with a manifest that matches it, so that the GGUF parser sees them.
  const regressions = input.ggufRegressions.map(({ file, bytes: data, sha256 }) => {
    const gguf = bytes(data);
    const manifest = JSON.stringify({
      ...JSON.parse(bundle.manifest),
      files: { image_encoder: { path: 'image_encoder.gguf', bytes: gguf.length, sha256 } },
    });
    return [`ClipModel.loadBundle: fuzz regression ${file}`, () => ClipModel.loadBundle(manifest, gguf)];
  });

  const cases = [
    ...regressions,
    ['ClipModel.load: garbage weights', () => ClipModel.load(files.config, garbage, files.tokenizer, files.preprocessor)],
    ['ClipModel.load: empty weights', () => ClipModel.load(files.config, new Uint8Array(0))],
    ['ClipModel.load: truncated weights', () => ClipModel.load(files.config, files.weights.slice(0, 5000))],
    ['ClipModel.load: malformed config', () => ClipModel.load(new TextEncoder().encode('{ not json'), files.weights)],
    ['ClipModel.load: config of another model', () => ClipModel.load(other.config, files.weights)],
    ['ClipModel.load: garbage tokenizer', () => ClipModel.load(files.config, files.weights, garbage)],
    ['ClipModel.load: garbage preprocessor', () => ClipModel.load(files.config, files.weights, undefined, garbage)],
    ['ClipModel.loadBundle: malformed manifest', () => ClipModel.loadBundle('{ not json', bundle.image)],
    ['ClipModel.loadBundle: manifest from the future', () => ClipModel.loadBundle(newerManifest, bundle.image)],
    ['ClipModel.loadBundle: altered image encoder', () => ClipModel.loadBundle(bundle.manifest, garbage)],
    ['ClipModel.loadBundle: garbage GGUF that matches its manifest', () => ClipModel.loadBundle(garbageManifest, garbage)],
    ['ClipModel.loadBundle: text encoder in place of the image encoder', () => ClipModel.loadBundle(bundle.manifest, bundle.text)],
    ['addTextEncoder: garbage bytes', () => imageOnly.addTextEncoder(bundle.manifest, garbage)],
    ['addTextEncoder: malformed manifest', () => imageOnly.addTextEncoder('[]', bundle.text)],
    ['embedImage: garbage bytes', () => good.embedImage(garbage, 'garbage.png')],
    ['embedImage: empty bytes', () => good.embedImage(new Uint8Array(0), 'empty.png')],
    ['embedImage: truncated PNG', () => good.embedImage(png.slice(0, png.length / 2), 'truncated.png')],
    ['embedImage: 40000x40000 PNG header', () => good.embedImage(hugePng, 'huge.png')],
    ['embedImage: garbage DICOM', () => good.embedImage(garbage, 'garbage.dcm')],
    ['embedText: model without tokenizer', () => noTokenizer.embedText('a chest x-ray')],
    ['tokenize: model without tokenizer', () => noTokenizer.tokenize('a chest x-ray')],
    ['embedText: bundle without text encoder', () => imageOnly.embedText('a chest x-ray')],
    ['zeroShot: model without tokenizer', () => noTokenizer.zeroShot(embedding, ['normal', 'pneumonia'])],
    ['zeroShot: wrong-length embedding', () => good.zeroShot(new Float32Array(3), ['normal', 'pneumonia'])],
    ['KnowledgeBase.load: garbage', () => KnowledgeBase.load(garbage, 'garbage.kplkb')],
    ['KnowledgeBase.load: truncated', () => KnowledgeBase.load(truncatedKb, 'truncated.kplkb')],
    ['KnowledgeBase.load: empty', () => KnowledgeBase.load(new Uint8Array(0), 'empty.kplkb')],
    ['checkModel: another model', () => kb.checkModel(otherModel, 'task.kplkb')],
    ['classify: n = 0', () => kb.classify(embedding, 0, good, undefined, 3)],
    ['classify: values that do not split into n rows', () => kb.classify(embedding, 3, good, undefined, 3)],
    ['classify: wrong-length embedding', () => kb.classify(new Float32Array(dim + 1), 1, good, undefined, 3)],
    ['classify: bad params', () => kb.classify(embedding, 1, good, { k: 'many' }, 3)],
    ['verifyBundleFile: wrong bytes', () => verifyBundleFile(bundle.manifest, 'image_encoder.gguf', garbage)],
    ['verifyBundleFile: unlisted path', () => verifyBundleFile(bundle.manifest, 'nope.gguf', garbage)],
    ['verifyBundleFile: malformed manifest', () => verifyBundleFile('nope', 'image_encoder.gguf', garbage)],
    ['setQuantKernel: unknown kernel', () => setQuantKernel('nope')],
    ['runKpl: n = 0', () => runKpl(new Float32Array(8), 0, new Float32Array(8), new Uint32Array([0, 1]), 2, 1, 10)],
    ['runKpl: descriptions of another width', () => runKpl(new Float32Array(8), 2, new Float32Array(6), new Uint32Array([0, 1]), 2, 1, 10)],
    ['runKpl: class index out of range', () => runKpl(new Float32Array(8).fill(0.5), 2, new Float32Array(8).fill(0.5), new Uint32Array([0, 7]), 2, 1, 10)],
    ['runKpl: no classes', () => runKpl(new Float32Array(8), 2, new Float32Array(8), new Uint32Array([0, 0]), 0, 1, 10)],
  ];

  const failures = [];
  for (const [name, call] of cases) {
    let outcome;
    try {
      const value = call();
      outcome = { name, threw: false, value: String(value).slice(0, 80) };
    } catch (e) {
      outcome = {
        name,
        threw: true,
        isError: e instanceof Error,
        ctor: e?.constructor?.name ?? typeof e,
        message: String(e?.message ?? e),
      };
    }
    failures.push(outcome);
  }

  // The module still works: new loads and every kind of call succeed.
  const after = {};
  const again = ClipModel.load(files.config, files.weights, files.tokenizer, files.preprocessor);
  const e2 = again.embedImage(png, 'rgb_97x61.png');
  after.sameEmbedding = e2.length === embedding.length && e2.every((v, i) => v === embedding[i]);
  after.textDim = again.embedText('a chest x-ray').length;
  after.tokens = Array.from(again.tokenize('a chest x-ray')).length;
  after.zeroShot = Array.from(again.zeroShot(e2, ['normal', 'pneumonia'])).reduce((a, b) => a + b, 0);
  const kb2 = KnowledgeBase.load(kbBytes, 'task.kplkb');
  kb2.checkModel(again, 'task.kplkb');
  after.classified = kb2.classify(e2, 1, again, undefined, 3)[0].label;
  const bundled = ClipModel.loadBundle(bundle.manifest, bundle.image, undefined);
  bundled.addTextEncoder(bundle.manifest, bundle.text);
  after.bundleText = bundled.embedText('a chest x-ray').length;
  verifyBundleFile(bundle.manifest, 'image_encoder.gguf', bundle.image);
  setQuantKernel('dequantize');
  after.runKpl = Array.from(
    runKpl(new Float32Array([1, 0, 0, 1]), 2, new Float32Array([1, 0, 0, 1]), new Uint32Array([0, 1]), 2, 1, 10),
  );
  after.dim = dim;
  for (const m of [good, noTokenizer, otherModel, imageOnly, again, bundled]) m.free();
  kb.free();
  kb2.free();
  return { failures, after };
}

before(async () => {
  ensureKnowledgeBases(MODEL);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-errors-'));
  runNative(['pack', '--model', MODEL, '--dtype', 'q8', '-o', dir]);
  const read = (f) => fs.readFileSync(path.join(dir, f));
  const garbage = Buffer.from(Array.from({ length: 5000 }, (_, i) => (Math.imul(i, 2654435761) >>> 13) & 0xff));
  // A PNG whose header says 40000×40000 (tiny on disk, 4.8 GB decoded).
  const hugePng = png40000();
  const input = {
    kb: b64(fs.readFileSync(path.join('build', 'kb', path.basename(MODEL), `${TASK}.kplkb`))),
    bundle: { manifest: read('manifest.json').toString('utf8'), image: b64(read('image_encoder.gguf')), text: b64(read('text_encoder.gguf')) },
    garbage: b64(garbage),
    garbageSha256: sha256(garbage),
    hugePng: b64(hugePng),
    ggufRegressions: fs.readdirSync(REGRESSIONS).sort().map((file) => {
      const data = fs.readFileSync(path.join(REGRESSIONS, file));
      return { file, bytes: b64(data), sha256: sha256(data) };
    }),
  };
  fs.rmSync(dir, { recursive: true, force: true });

  server = await startServer({ model: MODEL });
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${server.url}/test/parity.html`);
  await page.waitForFunction(() => document.documentElement.dataset.ready === 'true', null, { timeout: 30000 });
  results = await page.evaluate(runInPage, input);
  results.pageErrors = pageErrors;
}, { timeout: 180000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

// Gaps reported to the lead, to be fixed outside the files this test's author may
// edit: each is checked in its own `todo` test (reported, not failing the run).
const KNOWN_GAPS = {};

const isThrownError = (r) =>
  r.threw && r.isError && r.message.trim() !== '' && !/unreachable|RuntimeError/i.test(r.message) && r.ctor !== 'RuntimeError';

test('every failing wasm call throws an Error with a message, never a panic', () => {
  const bad = [];
  for (const r of results.failures) {
    const ok = isThrownError(r);
    const tag = ok ? 'ok  ' : r.name in KNOWN_GAPS ? 'TODO' : 'FAIL';
    console.log(`# ${tag} ${r.name}: ${r.threw ? `${r.ctor}: ${r.message.split('\n')[0].slice(0, 160)}` : `returned ${r.value}`}`);
    if (!ok && !(r.name in KNOWN_GAPS)) bad.push(r);
  }
  assert.ok(results.failures.length >= 35, `only ${results.failures.length} cases ran`);
  assert.deepEqual(bad, [], 'calls that did not throw an Error with a message');
});

for (const [name, why] of Object.entries(KNOWN_GAPS)) {
  test(`known gap: ${name}`, { todo: why }, () => {
    const r = results.failures.find((f) => f.name === name);
    assert.ok(r, `no case named ${name}`);
    assert.ok(isThrownError(r), `${name}: ${r.threw ? r.message : `returned ${r.value}`}`);
  });
}

test('the module still works after the failures', () => {
  const a = results.after;
  assert.equal(a.sameEmbedding, true, 'the same image embeds to the same bits');
  assert.equal(a.textDim, a.dim);
  assert.ok(a.tokens >= 2);
  assert.ok(Math.abs(a.zeroShot - 1) < 1e-5, `zero-shot probabilities sum to ${a.zeroShot}`);
  assert.ok(['normal', 'pneumonia'].includes(a.classified), a.classified);
  assert.equal(a.bundleText, a.dim);
  assert.equal(a.runKpl.length, 2);
  assert.deepEqual(results.pageErrors, [], 'no uncaught error on the page');
});
