#!/usr/bin/env node
// Makes the threaded wasm build (wasm-bindgen --target web output, `make wasm-threads`)
// work without a bundler, under any path, with a strict CSP:
//
//   node scripts/wasm-threads.mjs pkg/threads
//
// wasm-bindgen-rayon's worker helper (snippets/wasm-bindgen-rayon-<hash>/src/
// workerHelpers.js) starts each pool thread as a module Worker of itself, which then
// imports the package by its directory URL (`import('../../..')`): a bundler resolves
// that, a static server answers it with 404. This moves the helper to
// <dir>/workerHelpers.js (a fixed name the service worker can precache), points its
// import at ./kpl.js, and points kpl.js's import of the helper at the new place.
// Any pattern not found exactly once is an error: a wasm-bindgen or wasm-bindgen-rayon
// upgrade that changes them must be looked at, not silently half-fixed.

import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node scripts/wasm-threads.mjs <wasm-bindgen out dir>');
  process.exit(2);
}

function fail(message) {
  console.error(`wasm-threads.mjs: ${message}`);
  process.exit(1);
}

/** `text` with the one occurrence of `from` replaced by `to` (`what` names it in errors). */
function replaceOnce(text, from, to, what) {
  const count = text.split(from).length - 1;
  if (count !== 1) fail(`${what}: expected ${JSON.stringify(from)} once, found it ${count} times`);
  return text.replace(from, to);
}

const snippets = path.join(dir, 'snippets');
const rayonDirs = fs.existsSync(snippets) ? fs.readdirSync(snippets).filter((n) => n.startsWith('wasm-bindgen-rayon-')) : [];
if (rayonDirs.length !== 1) fail(`${snippets}: expected one wasm-bindgen-rayon-* folder, found ${rayonDirs.length} (is the build threaded?)`);
const helperRel = `./snippets/${rayonDirs[0]}/src/workerHelpers.js`;
const helper = path.join(dir, helperRel);
if (!fs.existsSync(helper)) fail(`${helper}: missing`);

const main = path.join(dir, 'kpl.js');
const mainText = replaceOnce(fs.readFileSync(main, 'utf8'), `'${helperRel}'`, `'./workerHelpers.js'`, main);
const helperText = replaceOnce(fs.readFileSync(helper, 'utf8'), `import('../../..')`, `import('./kpl.js')`, helper);

fs.writeFileSync(path.join(dir, 'workerHelpers.js'), helperText);
fs.writeFileSync(main, mainText);
fs.rmSync(path.join(snippets, rayonDirs[0]), { recursive: true });
if (fs.readdirSync(snippets).length === 0) fs.rmdirSync(snippets);
console.log(`[wasm-threads] ${path.join(dir, 'workerHelpers.js')}: the pool's worker module, importing ./kpl.js`);
