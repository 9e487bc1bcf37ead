// Shared by the browser tests: start scripts/serve.mjs on a free port, launch
// headless Chromium (system package, driven by playwright-core), clean up.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = path.join(REPO, 'tests', 'fixtures');
export const OUT = path.join(REPO, 'tests', 'browser', 'out');

export const CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; " +
  "img-src 'self' blob: data:; connect-src 'self'; worker-src 'self'; object-src 'none'; " +
  "base-uri 'none'; frame-ancestors 'self'";

export function readReference(file = 'reference.json') {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, file), 'utf8'));
}

/**
 * Starts the server (`--port 0`, so the OS picks a free port) and resolves once it
 * prints its URL. `close()` stops it. `isolated: false`: without COOP/COEP
 * (`--no-isolation`), as a host page that is not cross-origin isolated.
 */
export async function startServer({ model = 'tests/fixtures/tiny-quickgelu-f32', test = true, kb = null, isolated = true } = {}) {
  const args = [path.join(REPO, 'scripts', 'serve.mjs'), '--port', '0', '--model', model];
  if (kb) args.push('--kb', kb);
  if (!isolated) args.push('--no-isolation');
  if (test) args.push('--test');
  const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve.mjs did not start:\n${output}`)), 15000);
    const onData = (chunk) => {
      output += chunk;
      const m = /serving (http:\/\/127\.0\.0\.1:\d+)\//.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve.mjs exited with ${code}:\n${output}`));
    });
  });
  return {
    url,
    output: () => output,
    close: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      }),
  };
}

export function chromiumPath() {
  const candidates = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/lib/chromium/chromium'].filter(Boolean);
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`no Chromium found (tried ${candidates.join(', ')}); run \`make setup\``);
  return found;
}

/**
 * Launches headless Chromium with a fresh profile; `close()` removes the profile too.
 * `webgpu`: Chromium's software WebGPU adapter (SwiftShader); without it
 * `navigator.gpu` exists but finds no adapter, as on a machine without a usable GPU.
 */
export async function launchBrowser({ viewport = { width: 1000, height: 800 }, webgpu = true } = {}) {
  const { chromium } = await import('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath(),
    headless: true,
    viewport,
    deviceScaleFactor: 1,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-dev-shm-usage',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...(webgpu ? ['--enable-unsafe-webgpu'] : []),
    ],
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** `model` packed as a q8 bundle with `task`'s knowledge base into a new temporary folder (the caller removes it). */
export function packQ8Bundle(model, task, prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  runNative(['pack', '--model', model, '--dtype', 'q8', '--threads', '1', '--knowledge', `knowledge/${task}`, '-o', dir]);
  return dir;
}

/**
 * What the build tests (threads, relaxed) share: `model`'s knowledge bases, `model`
 * packed as a q8 bundle with `task`'s (a new temporary folder, served at /model/; the
 * f32 folder at /fixtures/), a server of it cross-origin isolated and one not, and a
 * browser without WebGPU: {isolated, notIsolated, browser, close()}; close() removes
 * the folder too.
 */
export async function bundleServers(model, task, prefix) {
  ensureKnowledgeBases(model);
  const bundleDir = packQ8Bundle(model, task, prefix);
  const servers = {
    close: async () => {
      await servers.browser?.close();
      await servers.isolated?.close();
      await servers.notIsolated?.close();
      fs.rmSync(bundleDir, { recursive: true, force: true });
    },
  };
  try {
    servers.isolated = await startServer({ model: bundleDir });
    servers.notIsolated = await startServer({ model: bundleDir, isolated: false });
    servers.browser = await launchBrowser({ webgpu: false });
  } catch (e) {
    await servers.close();
    throw e;
  }
  return servers;
}

/**
 * On `page`, workers started by KplClient.start with each of `runs` ({threads, simd,
 * quantKernel}: the worker's `simd` parameter and the load's `quantKernel` when given)
 * load `base` on the CPU and embed `images`
 * (fixture file names) and `texts`: [{info, images, texts}], one per run.
 */
export function embedWithWorkers(page, base, runs, { images, texts }) {
  return page.evaluate(async ({ base, runs, images, texts }) => {
    const { KplClient } = await import('/protocol.js');
    const out = [];
    for (const { threads, simd, quantKernel } of runs) {
      const client = KplClient.start('/worker.js', { threads, params: simd ? { simd } : {} });
      try {
        const info = await client.load(base, undefined, { backend: 'wasm', ...(quantKernel ? { quantKernel } : {}) });
        const result = { info, images: [], texts: [] };
        for (const file of images) {
          const bytes = await (await fetch(`/fixtures/images/${file}`)).arrayBuffer();
          result.images.push(Array.from((await client.embedImage(file, bytes)).embedding));
        }
        result.texts = (await client.embedText(texts)).embeddings.map((e) => Array.from(e));
        out.push(result);
      } finally {
        client.terminate();
      }
    }
    return out;
  }, { base, runs, images, texts });
}

/** Runs the native CLI and returns its parsed JSON output. */
export function runNative(args) {
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
  const exe = path.join(targetDir, 'release', 'kpl');
  if (!fs.existsSync(exe)) throw new Error(`${exe} is missing: run \`make native\``);
  const r = spawnSync(exe, args, { cwd: REPO, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    throw new Error(`kpl ${args.join(' ')} exited with ${r.status}:\n${r.stderr}${r.stdout}`);
  }
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    throw new Error(`kpl ${args.join(' ')} printed no JSON (${e.message}):\n${r.stdout.slice(0, 500)}\n${r.stderr}`);
  }
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function cosine(a, b) {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

/**
 * Builds build/kb/<model>/TASK.kplkb for every task of knowledge/ that lacks one (what
 * `make kb` does), so `node --test tests/browser/` also works alone.
 */
export function ensureKnowledgeBases(model = 'tests/fixtures/tiny-quickgelu-f32') {
  const dir = path.join(REPO, 'build', 'kb', path.basename(model));
  const tasks = fs.readdirSync(path.join(REPO, 'knowledge')).filter((t) => fs.existsSync(path.join(REPO, 'knowledge', t, 'task.json')));
  fs.mkdirSync(dir, { recursive: true });
  for (const t of tasks) {
    const out = path.join(dir, `${t}.kplkb`);
    if (!fs.existsSync(out)) runNativeRaw(['build-kb', '--model', model, path.join('knowledge', t), '-o', out]);
  }
  return dir;
}

function runNativeRaw(args) {
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
  const exe = path.join(targetDir, 'release', 'kpl');
  if (!fs.existsSync(exe)) throw new Error(`${exe} is missing: run \`make native\``);
  const r = spawnSync(exe, args, { cwd: REPO, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`kpl ${args.join(' ')} exited with ${r.status}:\n${r.stderr}`);
}

function crc32(buf) {
  let crc = 0xffffffff;
  for (const byte of buf) {
    let c = (crc ^ byte) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * A valid PNG header declaring `width`×`height` 8-bit grey pixels with an empty image
 * stream: a few dozen bytes on disk that a decoder without a size check would try to
 * allocate width × height bytes for (what tests/cli.rs builds for the CLI).
 */
export function hugePng(width = 40000, height = 40000) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth; colour type 0 (grey), compression, filter, interlace 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(Buffer.alloc(0))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * A corrupt JPEG: tests/fixtures/images/photo_120x100.jpg with everything from its
 * start-of-scan marker on overwritten by 0xFF (headers intact, no decodable scan).
 */
export function corruptJpeg() {
  const jpg = Buffer.from(fs.readFileSync(path.join(FIXTURES, 'images', 'photo_120x100.jpg')));
  const sos = jpg.indexOf(Buffer.from([0xff, 0xda]));
  if (sos < 0) throw new Error('photo_120x100.jpg has no start-of-scan marker');
  jpg.fill(0xff, sos);
  return jpg;
}

/** Bytes of a fixture image as playwright's setInputFiles takes them. */
export function fixtureImage(name) {
  const type = name.endsWith('.jpg') ? 'image/jpeg' : name.endsWith('.dcm') ? 'application/dicom' : 'image/png';
  const file = name.endsWith('.dcm') ? path.join(REPO, 'tests', 'dicom', 'files', name) : path.join(FIXTURES, 'images', name);
  return { name, mimeType: type, buffer: fs.readFileSync(file) };
}

/** The page's first-party errors only (offline runs log failed fetches the service worker answers). */
export function collectErrors(page) {
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  return errors;
}

/**
 * A PNG of `width`×`height` made from numbers: smooth gradients with stripes whose
 * frequency and phase follow `seed`, so each seed embeds differently. `color`: 'rgb'
 * (colour type 2), 'grey' (0) or 'rgba' (6).
 */
export function makePng(width, height, { seed = 0, color = 'rgb' } = {}) {
  const channels = { grey: 1, rgb: 3, rgba: 4 }[color];
  const colorType = { grey: 0, rgb: 2, rgba: 6 }[color];
  const stride = width * channels + 1;
  const raw = Buffer.alloc(stride * height);
  const period = 3 + (seed % 17);
  for (let y = 0; y < height; y++) {
    raw[y * stride] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const stripe = ((x + y * (seed % 5) + seed) % period) < period / 2 ? 60 : 0;
      const base = [(255 * x) / Math.max(1, width - 1), (255 * y) / Math.max(1, height - 1), (37 * seed) % 256, 255];
      for (let c = 0; c < channels; c++) {
        const v = c === 3 ? 255 - (seed % 50) : Math.min(255, Math.round(base[c] * 0.7 + stripe));
        raw[y * stride + 1 + x * channels + c] = v;
      }
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = colorType;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(raw, { level: 1 })),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The server's count of each "GET /path" request so far (`scripts/serve.mjs --test`). */
export async function requestCounts(server) {
  return (await fetch(`${server.url}/test-server/requests`)).json();
}

/** The files of a model folder and the knowledge bases, as the server counts them. */
export function modelRequests(counts) {
  return Object.fromEntries(Object.entries(counts).filter(([k]) => /^GET \/(model\/(?!manifest\.json)|kb\/)/.test(k)));
}

/**
 * The app served with `model` (and `kb`) in a fresh headless Chromium, its page open
 * once its knowledge bases are ready: the set-up the model-family test files share.
 * `close()` closes the browser, then the server.
 */
export async function openApp({ model, kb = null, webgpu = true } = {}) {
  const server = await startServer({ model, kb });
  const browser = await launchBrowser({ webgpu });
  try {
    const page = await browser.context.newPage();
    const errors = collectErrors(page);
    await page.goto(`${server.url}/`);
    await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
    return {
      server,
      browser,
      page,
      errors,
      close: async () => {
        await browser.close();
        await server.close();
      },
    };
  } catch (e) {
    await browser.close();
    await server.close();
    throw e;
  }
}

/**
 * Each model source `[label, folder, base URL]` loaded by a fresh worker through the
 * protocol's KplClient (the page's and the widget's path) on the wasm CPU backend, with
 * the quantised layers computed by `quantKernel` (default 'blocks', the native CLI's
 * default): `{label: {info, images, texts, classify}}` with the embeddings of `images`
 * (fixture image names) and `texts`, and the zero-shot scores of each image over `labels`.
 */
export function workerResults(page, { sources, images, texts, labels, quantKernel = 'blocks' }) {
  return page.evaluate(async ({ sources, images, texts, labels, quantKernel }) => {
    const { KplClient } = await import('/protocol.js');
    const out = {};
    for (const [label, , base] of sources) {
      const worker = new Worker('/worker.js', { type: 'module' });
      try {
        const client = new KplClient(worker);
        const info = await client.load(base, undefined, { backend: 'wasm', quantKernel });
        const result = { info, images: [], texts: [], classify: [] };
        for (const file of images) {
          const bytes = await (await fetch(`/fixtures/images/${file}`)).arrayBuffer();
          result.images.push(Array.from((await client.embedImage(file, bytes)).embedding));
          const c = await client.classify(file, bytes, labels);
          result.classify.push({ labels: c.labels, probs: Array.from(c.probs), label: c.label });
        }
        result.texts = (await client.embedText(texts)).embeddings.map((e) => Array.from(e));
        out[label] = result;
      } finally {
        worker.terminate();
      }
    }
    return out;
  }, { sources, images, texts, labels, quantKernel });
}

/** What a fresh worker answers to loading each of `bases`: 'accepted' or the error's message. */
export function workerLoadMessages(page, bases) {
  return page.evaluate(async (bases) => {
    const { KplClient } = await import('/protocol.js');
    const out = [];
    for (const base of bases) {
      const worker = new Worker('/worker.js', { type: 'module' });
      try {
        out.push(await new KplClient(worker).load(base, undefined, { backend: 'wasm' }).then(() => 'accepted', (e) => e.message));
      } finally {
        worker.terminate();
      }
    }
    return out;
  }, bases);
}

/**
 * The <kpl-classifier> widget of embed-example.html (served by `server`) given one
 * fixture image: `{detail, warning, errors, csp}`, the kpl-result event's detail, the
 * widget's random-weights warning ('' when hidden), console errors and the page's CSP.
 */
export async function widgetClassifies(browser, server, image) {
  const widget = await browser.context.newPage();
  try {
    const errors = collectErrors(widget);
    const res = await widget.goto(`${server.url}/embed-example.html`);
    await widget.locator('kpl-classifier[data-ready="true"]').waitFor({ timeout: 30000 });
    const detail = widget.evaluate(() => new Promise((resolve) =>
      document.querySelector('kpl-classifier').addEventListener('kpl-result', (e) => resolve(e.detail), { once: true })));
    await widget.locator('kpl-classifier input[type=file]').setInputFiles([fixtureImage(image)]);
    const d = await detail;
    const warning = await widget.locator('kpl-classifier').evaluate((e) => {
      const warn = e.shadowRoot.querySelector('.warn');
      return warn && !warn.hidden ? warn.textContent : '';
    });
    return { detail: d, warning, errors, csp: res.headers()['content-security-policy'] };
  } finally {
    await widget.close();
  }
}

/**
 * The page's custom-labels mode on one fixture image: `{banner, method, text, scores}`,
 * the random-weights banner's text ('' when hidden), the result card's data-method, its
 * rendered text and its scores (data-scores, one per label).
 */
export async function classifyCustomLabels(page, labels, image) {
  const bannerShown = await page.locator('#random-banner').isVisible();
  const banner = bannerShown ? await page.locator('#random-banner').innerText() : '';
  await page.selectOption('#task', 'custom');
  await page.fill('#labels', labels.join(', '));
  await page.locator('#file-input').setInputFiles([fixtureImage(image)]);
  const card = page.locator(`[data-kpl-result][data-file="${image}"]`);
  await card.waitFor({ state: 'attached', timeout: 30000 });
  await page.waitForFunction(() => document.querySelectorAll('[data-kpl-pending]').length === 0);
  // Read rendered (cards off screen are content-visibility: auto, so innerText would be empty).
  const text = await card.evaluate((c) => {
    c.style.contentVisibility = 'visible';
    return c.innerText;
  });
  return { banner, method: await card.getAttribute('data-method'), text, scores: JSON.parse(await card.getAttribute('data-scores')) };
}

/**
 * A new page of `browser` on the test parity page (tests/browser/parity.html), once its
 * wasm has started (`window.kplParity` and `window.kplServedModelParity` are then set);
 * a page that does not start throws with its page errors.
 */
export async function openParityPage(server, browser) {
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}/test/parity.html`);
  await page.waitForFunction(() => document.documentElement.dataset.ready === 'true', null, { timeout: 30000 }).catch(() => {
    throw new Error(`the parity page did not start: ${errors.join('; ') || 'no page error'}`);
  });
  return page;
}

/** The WebGPU engine's tolerance against the CPU (as tests/gpu.rs). */
export const GPU_MIN_COSINE = 0.9999;
export const GPU_MAX_DIFF = 1e-3;

/**
 * Asserts that the parity page's WebGPU result for `name` matches the native CLI's
 * embeddings of the same inputs (`native.files[i]` names image i; `native.images` and
 * `native.texts` are `kpl embed-image` / `embed-text` entries), within
 * GPU_MIN_COSINE / GPU_MAX_DIFF, and logs the worst figures.
 */
export function assertGpuMatchesNative(name, gpu, native) {
  assert.ok(gpu, `no WebGPU result for ${name}`);
  let minCos = 1;
  let maxDiff = 0;
  const check = (what, got, want) => {
    const c = cosine(got, want);
    const d = maxAbsDiff(got, want);
    minCos = Math.min(minCos, c);
    maxDiff = Math.max(maxDiff, d);
    assert.ok(c >= GPU_MIN_COSINE && d <= GPU_MAX_DIFF, `${what}: WebGPU vs native cosine ${c}, max |diff| ${d}`);
  };
  assert.equal(gpu.images.length, native.images.length);
  gpu.images.forEach((e, i) => check(native.files[i], e, native.images[i].embedding));
  assert.equal(gpu.texts.length, native.texts.length);
  gpu.texts.forEach((e, i) => check(JSON.stringify(native.texts[i].text), e, native.texts[i].embedding));
  console.log(
    `# ${name}: WebGPU (${gpu.adapter}${gpu.software ? ', software' : ''}${gpu.f16 ? ', shader-f16' : ''}) vs native CPU, ` +
      `${gpu.images.length} images + ${gpu.texts.length} texts, min cosine ${minCos.toFixed(7)}, max |diff| ${maxDiff.toExponential(2)}`,
  );
}
