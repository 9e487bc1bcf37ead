// scripts/serve.mjs: security headers on every response, MIME types, the
// synthesised model manifest, and no way out of the served folders.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { startServer, CSP, FIXTURES } from './helpers.mjs';

const EXPECTED_HEADERS = {
  'content-security-policy': CSP,
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

let server;

before(async () => {
  server = await startServer({ model: 'tests/fixtures/tiny-gelu-f16' });
}, { timeout: 30000 });

after(async () => {
  await server?.close();
});

/** A GET with the path sent exactly as written (fetch() would normalise `..`). */
function rawGet(rawPath) {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = http.get({ hostname, port, path: rawPath, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
  });
}

function assertSecurityHeaders(headers, what) {
  for (const [name, value] of Object.entries(EXPECTED_HEADERS)) {
    const got = headers instanceof Headers ? headers.get(name) : headers[name];
    assert.equal(got, value, `${what}: ${name}`);
  }
}

test('every response carries the CSP and isolation headers, with the right MIME type', async () => {
  const cases = [
    ['/', 'text/html; charset=utf-8'],
    ['/app.js', 'text/javascript; charset=utf-8'],
    ['/worker.js', 'text/javascript; charset=utf-8'],
    ['/protocol.js', 'text/javascript; charset=utf-8'],
    ['/style.css', 'text/css; charset=utf-8'],
    ['/pkg/kpl.js', 'text/javascript; charset=utf-8'],
    ['/pkg/kpl_bg.wasm', 'application/wasm'],
    ['/pkg/threads/kpl_bg.wasm', 'application/wasm'],
    ['/pkg/threads/workerHelpers.js', 'text/javascript; charset=utf-8'],
    ['/pkg/relaxed/kpl_bg.wasm', 'application/wasm'],
    ['/pkg/threads-relaxed/kpl_bg.wasm', 'application/wasm'],
    ['/pkg/threads-relaxed/workerHelpers.js', 'text/javascript; charset=utf-8'],
    ['/simd-probe.js', 'text/javascript; charset=utf-8'],
    ['/model/config.json', 'application/json'],
    ['/model/manifest.json', 'application/json'],
    ['/model/tokenizer.json', 'application/json'], // a symlink to ../tokenizer.json
    ['/knowledge/SCHEMA.md', 'text/markdown; charset=utf-8'],
    ['/fixtures/images/rgb_97x61.png', 'image/png'],
    ['/fixtures/images/photo_120x100.jpg', 'image/jpeg'],
    ['/fixtures/images/rgb_97x61.webp', 'image/webp'],
    ['/test/parity.html', 'text/html; charset=utf-8'],
  ];
  for (const [p, type] of cases) {
    const res = await fetch(server.url + p);
    assert.equal(res.status, 200, `${p}: status`);
    assert.equal(res.headers.get('content-type'), type, `${p}: content-type`);
    assertSecurityHeaders(res.headers, p);
    await res.arrayBuffer();
  }
  const index = await (await fetch(server.url + '/')).text();
  assert.doesNotMatch(index, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline script in index.html');
  assert.doesNotMatch(index, /<style|\sstyle=/i, 'no inline style in index.html');
});

test('errors are plain-text 404s with the same headers', async () => {
  for (const p of ['/nope', '/pkg/nope.wasm', '/model/', '/fixtures/']) {
    const res = await fetch(server.url + p);
    assert.equal(res.status, 404, p);
    assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8', p);
    assertSecurityHeaders(res.headers, p);
    await res.text();
  }
  const post = await fetch(server.url + '/', { method: 'POST', body: 'x' });
  assert.equal(post.status, 405);
  assertSecurityHeaders(post.headers, 'POST /');
});

test('no path leaves the served folders', async () => {
  const attempts = [
    '/../Cargo.toml',
    '/../../etc/passwd',
    '/model/../../Cargo.toml',
    '/model/..%2f..%2fCargo.toml',
    '/model/%2e%2e/%2e%2e/Cargo.toml',
    '/pkg/..%5c..%5cCargo.toml',
    '/knowledge/../Cargo.toml',
    '/%2e%2e/Cargo.toml',
    '/model/config.json%00.png',
    '/.git/config',
    '/fixtures/../../Cargo.toml',
  ];
  for (const p of attempts) {
    const res = await rawGet(p);
    assert.equal(res.status, 404, `${p} must be refused (got ${res.status})`);
    assert.doesNotMatch(res.body, /\[package\]|root:/, p);
    assertSecurityHeaders(res.headers, p);
  }
});

test('the fixture folders are served only in test mode', async () => {
  const plain = await startServer({ model: 'tests/fixtures/tiny-gelu-f16', test: false });
  try {
    for (const p of ['/fixtures/reference.json', '/test/parity.html']) {
      const res = await fetch(plain.url + p);
      assert.equal(res.status, 404, p);
      await res.text();
    }
  } finally {
    await plain.close();
  }
});

test('the model manifest is synthesised from the files present', async () => {
  const res = await fetch(server.url + '/model/manifest.json');
  const manifest = await res.json();
  const dir = path.join(FIXTURES, 'tiny-gelu-f16');
  const names = { config: 'config.json', weights: 'model.safetensors', tokenizer: 'tokenizer.json', preprocessor: 'preprocessor_config.json' };
  assert.deepEqual(manifest.model.files, names);
  for (const [role, name] of Object.entries(names)) {
    assert.equal(manifest.model.sizes[role], fs.statSync(path.join(dir, name)).size, `${role} size`);
  }
  assert.equal(manifest.random_weights, true);
});
