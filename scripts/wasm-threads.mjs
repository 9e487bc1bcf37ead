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
// It also makes a pool thread report its own crash to the page (see below).
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
// (LF endings: the crate ships the file with CRLF.)
let helperText = replaceOnce(fs.readFileSync(helper, 'utf8').replace(/\r\n/g, '\n'), `import('../../..')`, `import('./kpl.js')`, helper);

// A trap in a pool thread (a panic, memory running out) ends that Web Worker's task
// while the module's caller waits on rayon's latch for good: the module worker can
// never see it (its event loop is blocked), so the pool thread itself tells the page
// through the BroadcastChannel the module worker names in `globalThis.kplPoolCrashChannel`
// (www/worker.js), and the page's KplClient replaces the module worker (www/protocol.js).
helperText = replaceOnce(helperText, `.then(async ({ init, receiver }) => {`,
  `.then(async ({ init, receiver, kplCrashChannel }) => {\n  try {`, helper);
helperText = replaceOnce(helperText, `  pkg.wbg_rayon_start_worker(receiver);\n});`, `  pkg.wbg_rayon_start_worker(receiver);
  } catch (error) {
    kplReportCrash(kplCrashChannel, error);
    throw error;
  }
});

// kpl: how a pool thread reports its own trap (scripts/wasm-threads.mjs). \`kplCrashNote\`
// is what the module's panic / allocation hooks left on this thread (src/wasm/crash_note.rs).
function kplReportCrash(channel, error) {
  if (typeof channel !== 'string' || typeof BroadcastChannel !== 'function') return;
  const what = error instanceof Error ? \`\${error.name}: \${error.message}\` : String(error);
  const note = typeof self.kplCrashNote === 'string' ? \`: \${self.kplCrashNote}\` : '';
  new BroadcastChannel(channel).postMessage({ type: 'kpl-pool-crashed', message: \`a thread of the WebAssembly pool crashed (\${what}\${note})\` });
}`, helper);
helperText = replaceOnce(helperText, `    receiver: builder.receiver()\n`,
  `    receiver: builder.receiver(),\n    kplCrashChannel: globalThis.kplPoolCrashChannel ?? null\n`, helper);

// Each pool thread's stack is allocated from the heap of the shared memory when the
// thread starts, and wasm memory never shrinks: wasm-bindgen's default of 2 MiB a
// thread took 4 MiB at two threads, 8 % of a q4 ViT-B/16's weights (issue #14 item 3:
// peak memory ≤ 1.25× the weights). 1 MiB is the stack the single-threaded build runs
// the whole model on (rustc's wasm32 default); a pool thread runs only parts of it
// (GEMM panel ranges, attention heads, candle's element-wise splits).
helperText = replaceOnce(helperText, `  await pkg.default(init);`,
  `  await pkg.default({ ...init, thread_stack_size: KPL_POOL_STACK_BYTES });`, helper);
helperText = helperText.replace(/^(function waitForMsgType)/m, `// kpl: a pool thread's stack (scripts/wasm-threads.mjs says why).
const KPL_POOL_STACK_BYTES = 1 << 20;

$1`);
if (!helperText.includes('const KPL_POOL_STACK_BYTES')) fail(`${helper}: no waitForMsgType function to put the stack size before`);
fs.writeFileSync(path.join(dir, 'workerHelpers.js'), helperText);
fs.writeFileSync(main, mainText);
fs.rmSync(path.join(snippets, rayonDirs[0]), { recursive: true });
if (fs.readdirSync(snippets).length === 0) fs.rmdirSync(snippets);
console.log(`[wasm-threads] ${path.join(dir, 'workerHelpers.js')}: the pool's worker module, importing ./kpl.js`);
