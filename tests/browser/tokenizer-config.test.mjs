// A folder with both tokenizer.json and a tokenizer_config.json whose special tokens or
// settings differ from the file's, in wasm (pkg/, under Node): every case of
// tests/fixtures/tokenizer-config/expected.json (transformers 5's ids, written by
// tests/reference/tokenizer_config_reference.py) loaded through the API the worker calls
// (ClipModel.load for the CLIP and SigLIP fixtures, ClipModel.loadOpenClip for the BERT
// one, each with tokenizerConfig beside tokenizer); `tokenize` gives transformers' ids,
// and a config transformers cannot use, or one naming a token outside the vocabulary,
// throws an error naming tokenizer_config.json. tests/tokenizer_config.rs checks the
// same cases natively.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { REPO, FIXTURES } from './helpers.mjs';

const PKG = path.join(REPO, 'pkg');
const { cases } = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer-config', 'expected.json'), 'utf8'));

const mod = await import(pathToFileURL(path.join(PKG, 'kpl.js')).href);
await mod.default({ module_or_path: fs.readFileSync(path.join(PKG, 'kpl_bg.wasm')) });

/** The case's fixture loaded with its tokenizer_config.json, as the worker loads a folder. */
function load(c) {
  const dir = path.join(FIXTURES, c.fixture);
  const read = (name) => new Uint8Array(fs.readFileSync(path.join(dir, name)));
  const config = new TextEncoder().encode(JSON.stringify(c.config));
  if (c.family === 'bert') {
    const weights = 'open_clip_pytorch_model.bin';
    return mod.ClipModel.loadOpenClip(read('open_clip_config.json'), read(weights), weights, read('tokenizer.json'), undefined, undefined, config);
  }
  return mod.ClipModel.load(read('config.json'), read('model.safetensors'), read('tokenizer.json'), read('preprocessor_config.json'), undefined, config);
}

test('the cases cover every family, and refusals', () => {
  assert.equal(cases.length, 16);
  for (const family of ['bert', 'clip', 'siglip']) assert.ok(cases.some((c) => c.family === family && c.ids), family);
  assert.equal(cases.filter((c) => c.error).length, 4);
});

for (const c of cases) {
  test(`${c.name}: ${c.error ? `refused, naming tokenizer_config.json (${c.error})` : "transformers' ids"}`, () => {
    if (c.error) {
      assert.throws(() => load(c), (e) => e.message.includes('tokenizer_config.json') && e.message.includes(c.error), c.name);
      return;
    }
    const model = load(c);
    try {
      c.strings.forEach((text, i) => assert.deepEqual(Array.from(model.tokenize(text)), c.ids[i], `${c.name}: ${JSON.stringify(text)}`));
    } finally {
      model.free();
    }
  });
}
