#!/usr/bin/env node
// A dependency-free static server for the KPL web app (Node 20+).
//
//   node scripts/serve.mjs [--port N] [--model DIR] [--kb DIR] [--test] [--no-isolation]
//
// Bound to 127.0.0.1 only (a secure context, so WebGPU is available, and nothing
// outside this machine can reach it). It serves:
//
//   /             www/           the app
//   /pkg/         pkg/           wasm-bindgen output (`make wasm`)
//   /model/       --model DIR    a Hugging Face CLIP folder (default: the random test model)
//                                or a `kpl pack` bundle (manifest.json, *.gguf, *.kplkb)
//   /knowledge/   knowledge/     the KPL knowledge bases (sources: task.json)
//   /kb/          --kb DIR       the .kplkb bases built by the model (`make kb`;
//                                default build/kb/<model folder name>/)
//   /fixtures/    tests/fixtures/   only with --test
//   /test/        tests/browser/    only with --test (the parity page)
//   /test-server/requests   only with --test: JSON {"GET /path": count} of every
//                 request served so far (the tests check that a restarted worker
//                 reads the model from the browser's caches, not the network)
//
// `GET /model/manifest.json` returns the folder's manifest.json, or one synthesised
// from the files present (see `modelManifest`), plus `"knowledge": [{task, title, path,
// classes}]` listing the bases in the --kb folder (see `knowledgeList`).
//
// Every response, errors included, carries a strict Content-Security-Policy and the
// cross-origin isolation headers (see ARCHITECTURE.md, "Strict CSP"). `--no-isolation`
// leaves out COOP and COEP, as a host page without them (the tests: the worker's
// one-thread fallback).
//
// Port: --port N, else the first positional argument, else $PORT, else 8080; 0 picks
// a free port. The first line printed is "KPL: serving http://127.0.0.1:PORT/".

import http from 'node:http';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { MODEL_FILES, OPEN_CLIP_CONFIG, OPEN_CLIP_FILES, OPEN_CLIP_WEIGHTS } from '../www/protocol.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const DEFAULT_MODEL = 'tests/fixtures/tiny-quickgelu-f32';

export const SECURITY_HEADERS = Object.freeze({
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; " +
    "img-src 'self' blob: data:; connect-src 'self'; worker-src 'self'; object-src 'none'; " +
    "base-uri 'none'; frame-ancestors 'self'",
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
});

/** SECURITY_HEADERS less the two that make a page cross-origin isolated. */
const NOT_ISOLATED_HEADERS = Object.freeze(Object.fromEntries(
  Object.entries(SECURITY_HEADERS).filter(([name]) => name !== 'Cross-Origin-Opener-Policy' && name !== 'Cross-Origin-Embedder-Policy'),
));
/** The security headers of a response (`res.notIsolated`: set by a `--no-isolation` server). */
const securityHeaders = (res) => (res.notIsolated ? NOT_ISOLATED_HEADERS : SECURITY_HEADERS);

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.ts': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
};

export function mimeType(file) {
  return MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

async function isFile(file) {
  try {
    return (await fsp.stat(file)).isFile();
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
    return false;
  }
}

/**
 * The manifest of a model folder: its own manifest.json when it has one, else
 * `{"model": {"files": {role: name}, "sizes": {role: bytes}}, "random_weights": bool}`
 * listing only the files that exist (symlinks followed), with `random_weights`
 * taken from config.json's (open_clip_config.json's) `kpl_random_weights`.
 * An open_clip folder lists its files by OPEN_CLIP_FILES' roles, its weights being the
 * first of OPEN_CLIP_WEIGHTS present.
 */
export async function modelManifest(dir) {
  const own = path.join(dir, 'manifest.json');
  try {
    return JSON.parse(await fsp.readFile(own, 'utf8'));
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  const files = {};
  const sizes = {};
  let roles = MODEL_FILES;
  if (await isFile(path.join(dir, OPEN_CLIP_CONFIG))) {
    let weights = OPEN_CLIP_WEIGHTS[0];
    for (const name of OPEN_CLIP_WEIGHTS.toReversed()) if (await isFile(path.join(dir, name))) weights = name;
    roles = { ...OPEN_CLIP_FILES, weights };
  }
  for (const [role, name] of Object.entries(roles)) {
    try {
      const st = await fsp.stat(path.join(dir, name));
      if (!st.isFile()) continue;
      files[role] = name;
      sizes[role] = st.size;
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
  }
  let random = false;
  const configFile = files.openClipConfig ?? files.config;
  if (configFile) {
    try {
      const config = JSON.parse(await fsp.readFile(path.join(dir, configFile), 'utf8'));
      random = config.kpl_random_weights === true;
    } catch {
      // An unreadable config.json is reported by the model loader, with its name.
    }
  }
  return { model: { files, sizes }, random_weights: random };
}

/** Whether a model folder's manifest is a `kpl pack` bundle's (image_encoder.gguf, …). */
export function isBundle(manifest) {
  return typeof manifest?.files?.image_encoder?.path === 'string';
}

/** The default folder of a model's built knowledge bases (see the Makefile's `kb`). */
export function defaultKbDir(modelDir) {
  return path.join(REPO, 'build', 'kb', path.basename(path.resolve(modelDir)));
}

/**
 * The knowledge bases in `kbDir` (`TASK.kplkb`), sorted by task name, each with the
 * title and class names of knowledge/TASK/task.json:
 * `[{task, title, path: "/kb/TASK.kplkb", classes: [...]}]`.
 */
export async function knowledgeList(kbDir) {
  let names;
  try {
    names = await fsp.readdir(kbDir);
  } catch (e) {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return [];
    throw e;
  }
  const out = [];
  const tasks = names.filter((n) => n.endsWith('.kplkb') && !n.startsWith('.')).map((n) => n.slice(0, -6)).sort();
  for (const task of tasks) {
    const name = `${task}.kplkb`;
    let title = task;
    let classes = [];
    try {
      const spec = JSON.parse(await fsp.readFile(path.join(REPO, 'knowledge', task, 'task.json'), 'utf8'));
      title = spec.title ?? task;
      classes = (spec.classes ?? []).map((c) => c.name);
    } catch {
      // A base without its source folder is still listed; the page reads its header.
    }
    out.push({ task, title, path: `/kb/${encodeURIComponent(name)}`, classes });
  }
  return out;
}

/**
 * Maps a URL path inside a mount to a file path inside `root`, or null when the
 * path tries to leave it. Checked on the decoded path: no `..` or `.`-prefixed
 * segments (which also hides dotfiles), no backslashes or NUL bytes, and the
 * resolved path must stay under the root. Symlinks that the folder itself contains
 * are followed (a fixture folder links tokenizer.json to ../tokenizer.json, a
 * Hugging Face cache snapshot links every file into ../../blobs): they were put
 * there by whoever owns the folder, whereas the request path is what an attacker
 * controls.
 */
export function resolveInside(root, rest) {
  let decoded;
  try {
    decoded = decodeURIComponent(rest);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const segments = decoded.split('/').filter((s) => s !== '');
  if (segments.some((s) => s.startsWith('.'))) return null;
  const full = path.resolve(root, ...segments);
  if (full !== root && !full.startsWith(root + path.sep)) return null;
  return full;
}

function send(res, status, body, headers = {}) {
  const buf = Buffer.from(body);
  res.writeHead(status, {
    ...securityHeaders(res),
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': buf.length,
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : buf);
}

const notFound = (res) => send(res, 404, 'Not found\n');

async function sendFile(res, file) {
  let st;
  try {
    st = await fsp.stat(file); // follows symlinks
  } catch {
    return notFound(res);
  }
  if (st.isDirectory()) {
    const index = path.join(file, 'index.html');
    if (res.req.url.split('?')[0].endsWith('/') && fs.existsSync(index)) return sendFile(res, index);
    return notFound(res);
  }
  if (!st.isFile()) return notFound(res);
  res.writeHead(200, {
    ...securityHeaders(res),
    'Content-Type': mimeType(file),
    'Content-Length': st.size,
    'Cache-Control': 'no-cache',
    'Last-Modified': st.mtime.toUTCString(),
  });
  if (res.req.method === 'HEAD') return res.end();
  const stream = fs.createReadStream(file);
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

/** Creates the server (not listening yet). */
export function createServer({ model = DEFAULT_MODEL, test = false, kb = null, isolated = true } = {}) {
  const modelDir = path.resolve(REPO, model);
  const kbDir = kb ? path.resolve(REPO, kb) : defaultKbDir(modelDir);
  const mounts = [
    ['/kb/', kbDir],
    ['/pkg/', path.join(REPO, 'pkg')],
    ['/model/', modelDir],
    ['/knowledge/', path.join(REPO, 'knowledge')],
    ...(test
      ? [
          ['/fixtures/', path.join(REPO, 'tests', 'fixtures')],
          ['/test/', path.join(REPO, 'tests', 'browser')],
        ]
      : []),
    ['/', path.join(REPO, 'www')],
  ];

  /** Requests served, by "METHOD /path" (test mode only). */
  const requestCounts = new Map();

  return http.createServer(async (req, res) => {
    res.notIsolated = !isolated;
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return send(res, 405, 'Method not allowed\n', { Allow: 'GET, HEAD' });
      }
      const pathname = (req.url ?? '/').split('?')[0].split('#')[0];
      if (!pathname.startsWith('/')) return send(res, 400, 'Bad request\n');
      if (test) {
        if (pathname === '/test-server/requests') {
          const body = JSON.stringify(Object.fromEntries(requestCounts), null, 1) + '\n';
          return send(res, 200, body, { 'Content-Type': 'application/json' });
        }
        const key = `${req.method} ${pathname}`;
        requestCounts.set(key, (requestCounts.get(key) ?? 0) + 1);
      }
      if (pathname === '/model/manifest.json') {
        const own = await modelManifest(modelDir);
        // A `kpl pack` bundle lists its own bases (paths relative to /model/), built with
        // the model it was packed from; any other folder gets the bases of the --kb folder.
        const knowledge = isBundle(own) && Array.isArray(own.knowledge) && own.knowledge.length > 0 ? own.knowledge : await knowledgeList(kbDir);
        const manifest = { ...own, knowledge };
        const body = JSON.stringify(manifest, null, 2) + '\n';
        return send(res, 200, body, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache' });
      }
      const mount = mounts.find(([prefix]) => pathname.startsWith(prefix));
      if (!mount) return notFound(res);
      const [prefix, root] = mount;
      const file = resolveInside(root, pathname.slice(prefix.length) || '');
      if (file === null) return notFound(res);
      return await sendFile(res, file);
    } catch (e) {
      if (!res.headersSent) send(res, 500, 'Internal server error\n');
      else res.destroy();
      console.error(`KPL: ${req.method} ${req.url}: ${e.message}`);
    }
  });
}

function parseArgs(argv) {
  const opts = { port: process.env.PORT ?? '8080', model: process.env.MODEL || DEFAULT_MODEL, test: false };
  let portGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port' || a === '-p') [opts.port, portGiven] = [value(), true];
    else if (a.startsWith('--port=')) [opts.port, portGiven] = [a.slice(7), true];
    else if (a === '--model') opts.model = value();
    else if (a.startsWith('--model=')) opts.model = a.slice(8);
    else if (a === '--kb') opts.kb = value();
    else if (a.startsWith('--kb=')) opts.kb = a.slice(5);
    else if (a === '--test') opts.test = true;
    else if (a === '--no-isolation') opts.isolated = false;
    else if (a === '--help' || a === '-h') opts.help = true;
    else if (/^\d+$/.test(a) && !portGiven) [opts.port, portGiven] = [a, true];
    else throw new Error(`unknown argument ${a}`);
  }
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port ${opts.port}`);
  return { ...opts, port };
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`serve.mjs: ${e.message}\nusage: node scripts/serve.mjs [--port N] [--model DIR] [--kb DIR] [--test] [--no-isolation]`);
    process.exit(2);
  }
  if (opts.help) {
    console.log('usage: node scripts/serve.mjs [--port N] [--model DIR] [--kb DIR] [--test] [--no-isolation]');
    return;
  }
  const modelDir = path.resolve(REPO, opts.model);
  let manifest;
  try {
    manifest = await modelManifest(modelDir);
  } catch (e) {
    console.error(`serve.mjs: ${modelDir}/manifest.json: ${e.message}`);
    process.exit(2);
  }
  if (!manifest.model?.files?.config && !manifest.model?.files?.openClipConfig && !isBundle(manifest)) {
    console.error(`serve.mjs: ${modelDir} has no config.json nor ${OPEN_CLIP_CONFIG}: MODEL must be a Hugging Face CLIP or SigLIP folder, an open_clip folder or a \`kpl pack\` bundle`);
    process.exit(2);
  }
  if (!fs.existsSync(path.join(REPO, 'pkg', 'kpl.js'))) {
    console.error('serve.mjs: warning: pkg/kpl.js is missing; run `make wasm`');
  }
  const server = createServer(opts);
  server.on('error', (e) => {
    console.error(`serve.mjs: ${e.message}`);
    process.exit(1);
  });
  server.listen(opts.port, HOST, () => {
    const { port } = server.address();
    console.log(`KPL: serving http://${HOST}:${port}/`);
    const random = manifest.random_weights === true || manifest.model?.random_weights === true;
    console.log(`     model: ${modelDir}${isBundle(manifest) ? ' (kpl pack bundle)' : ''}${random ? '  (RANDOM test weights: outputs mean nothing)' : ''}`);
    const kbDir = opts.kb ? path.resolve(REPO, opts.kb) : defaultKbDir(modelDir);
    console.log(`     knowledge bases: ${kbDir}`);
    if (opts.test) console.log('     test mode: /fixtures/ and /test/ are served');
    if (opts.isolated === false) console.log('     --no-isolation: no COOP/COEP headers (the page is not cross-origin isolated: one thread)');
    console.log('     Ctrl-C to stop');
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main();
}
