// The configurations `kpl site` emits for Caddy and Apache, each run by the real server
// (Debian's caddy and apache2) on the site under a sub-path: every file is served with
// the headers the site's `_headers` table lists (the dev server's security headers, its
// Content-Type and Cache-Control), errors carry the security headers, and the other
// servers' configuration files are not served. (nginx, with the page in Chromium:
// site.test.mjs.)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { runNative } from './helpers.mjs';
import { startCaddy, startApache, parseHeadersFile } from './web-servers.mjs';
import { SECURITY_HEADERS } from '../../scripts/serve.mjs';

const PREFIX = '/radiology/kpl/';

let dir;
let site;
let built;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-site-servers-'));
  site = path.join(dir, 'kpl');
  built = runNative(['site', '--model', 'tests/fixtures/tiny-quickgelu-f32', '--knowledge', 'chest-xray-pneumonia', '--threads', '1', '--base-path', PREFIX, '-o', site]);
}, { timeout: 60000 });

after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function get(base, p) {
  return new Promise((resolve, reject) => {
    http
      .get(base + p, { agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers }));
      })
      .on('error', reject);
  });
}

async function checkServer(server) {
  const rules = parseHeadersFile(fs.readFileSync(path.join(site, '_headers'), 'utf8'));
  const security = Object.fromEntries(Object.entries(SECURITY_HEADERS).map(([k, v]) => [k.toLowerCase(), v]));
  assert.deepEqual(rules[`${PREFIX}*`], security);
  const files = built.files.filter((f) => f !== '_headers' && f !== 'web.config');
  for (const file of [...files, '']) {
    const url = PREFIX + file;
    const res = await get(server.url, url);
    assert.equal(res.status, 200, url);
    for (const [name, value] of Object.entries({ ...security, ...rules[url] })) assert.equal(res.headers[name], value, `${url}: ${name}`);
  }
  const missing = await get(server.url, `${PREFIX}missing.js`);
  assert.equal(missing.status, 404);
  for (const [name, value] of Object.entries(security)) assert.equal(missing.headers[name], value, `404: ${name}`);
  for (const hidden of ['.htaccess', 'web.config', '_headers']) {
    const res = await get(server.url, PREFIX + hidden);
    assert.ok(res.status === 403 || res.status === 404, `${hidden}: ${res.status}`);
  }
}

test('Caddy with the emitted Caddyfile snippet serves every file with the table\'s headers', { timeout: 60000 }, async () => {
  const server = await startCaddy({ prefix: PREFIX, siteDir: site, snippet: `${site}.server/Caddyfile` });
  try {
    await checkServer(server);
  } finally {
    await server.close();
  }
});

test('Apache with the emitted .htaccess serves every file with the table\'s headers', { timeout: 60000 }, async () => {
  const server = await startApache({ prefix: PREFIX, siteDir: site });
  try {
    await checkServer(server);
  } finally {
    await server.close();
  }
});
