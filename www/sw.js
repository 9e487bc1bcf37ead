// The service worker: makes the page work with the network off after one visit.
//
// On install it caches the app shell, the model files listed in
// model/manifest.json (a bundle's image encoder) and every knowledge base the
// manifest lists (/kb/, or relative to model/ in a bundle), all relative to the
// service worker's scope (the app's folder: it may be served under any path). Of the
// WebAssembly builds (pkg/, pkg/threads/, and any other folder under pkg/) it keeps only
// the one this browser runs, ~7 MB each: which one is the worker's choice (worker.js
// `startWasm`: cross-origin isolation, the threads asked for), so the page tells it
// after a load (`keep-build` with the worker's `wasmFiles`), and every file of pkg/
// fetched through here is kept as any other (a build appears in the cache only once it
// ran). A new build variant needs nothing here. Afterwards
// every same-origin GET goes to the network first (so a rebuilt app or model is picked
// up) and falls back to the cache when the network fails; a response is written to the
// cache only when it differs from the cached copy (Last-Modified, Content-Length), so
// a large checkpoint is not copied again on every visit.
//
// Only same-origin requests are touched; nothing here talks to any other server, and
// no image or result ever goes into the cache (they never leave the page's memory).

// v2: v1 precached every WebAssembly build; activating this worker drops it.
const CACHE = 'kpl-v2';
/** The folder the app is served from (its scope): every path below is relative to it. */
const SCOPE = self.registration.scope;
const at = (p) => new URL(p, SCOPE).href;
const SHELL = [
  '',
  'index.html',
  'app.js',
  'protocol.js',
  'messages.js',
  'worker.js',
  'style.css',
  'favicon.svg',
  'kpl-classifier.js',
  'dicom-window.js',
  'manifest.webmanifest',
  'icon-192.png',
  'icon-512.png',
  'icon-maskable-512.png',
  'models-panel.js',
  'stored-models.js',
  'opfs.js',
  'simd-probe.js', // imported by worker.js (self.kplRelaxedSimd)
  'model/manifest.json',
].map(at);
/** Folders of the dev server's test mode: never cached. (knowledge/TASK/task.json is: a
 * stored model without a task's base builds it from there, offline too.) */
const UNCACHED = ['fixtures/', 'test/'].map(at);

/** URLs worth keeping offline: this app's own files. */
function cacheable(url) {
  if (url.origin !== self.location.origin || !url.href.startsWith(SCOPE)) return false;
  return !UNCACHED.some((prefix) => url.href.startsWith(prefix));
}

async function precache() {
  const cache = await caches.open(CACHE);
  const urls = new Set(SHELL);
  try {
    const res = await fetch(at('model/manifest.json'), { cache: 'no-cache' });
    if (res.ok) {
      const manifest = await res.json();
      const inModel = (p) => new URL(p, at('model/')).href;
      for (const name of Object.values(manifest?.model?.files ?? {})) if (typeof name === 'string') urls.add(inModel(name));
      // A `kpl pack` bundle: the image encoder now; the text encoder is cached when
      // custom labels first fetch it (so it is downloaded only by those who use it).
      const image = manifest?.files?.image_encoder?.path;
      if (typeof image === 'string') urls.add(inModel(image));
      for (const kb of manifest?.knowledge ?? []) if (typeof kb.path === 'string') urls.add(inModel(kb.path));
    }
  } catch {
    // Offline during install: the runtime cache fills on the next visit.
  }
  await Promise.all(
    [...urls].map(async (u) => {
      try {
        const res = await fetch(u, { cache: 'no-cache' });
        if (res.ok) await cache.put(u, res);
      } catch {
        // A missing optional file (kpl-classifier.js, tokenizer.json) is not fatal.
      }
    }),
  );
}

/** The folder of the WebAssembly builds: a `keep-build` may name files under it only. */
const BUILDS = at('pkg/');

/**
 * Keeps the files of the WebAssembly build the page's worker runs (`files`: URLs
 * relative to the scope, from the load result's `wasmFiles`), fetching those not kept
 * yet. Resolves with how many are kept.
 */
async function keepBuild(files) {
  if (!Array.isArray(files) || files.length === 0 || files.length > 16) throw new Error('keep-build: files must be a short, non-empty list');
  const urls = files.map((f) => new URL(String(f), SCOPE));
  for (const u of urls) {
    if (!u.href.startsWith(BUILDS) || u.search || u.hash) throw new Error(`keep-build: ${u.pathname} is not a file of a WebAssembly build`);
  }
  const cache = await caches.open(CACHE);
  for (const u of urls) {
    if (await cache.match(u.href)) continue;
    const res = await fetch(u.href);
    if (!res.ok) throw new Error(`keep-build: ${u.pathname}: HTTP ${res.status}`);
    await cache.put(u.href, res);
  }
  return urls.length;
}

self.addEventListener('message', (event) => {
  if (event.data?.type !== 'keep-build') return;
  const port = event.ports?.[0];
  event.waitUntil(
    keepBuild(event.data.files).then(
      (kept) => port?.postMessage({ kept }),
      (e) => port?.postMessage({ error: e.message }),
    ),
  );
});

self.addEventListener('install', (event) => {
  event.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
      await self.clients.claim();
    })(),
  );
});

const same = (a, b, h) => a.headers.get(h) === b.headers.get(h);

async function networkFirst(request) {
  const url = new URL(request.url);
  const key = url.origin + url.pathname;
  const cache = await caches.open(CACHE);
  try {
    const res = await fetch(request);
    if (res.ok && res.status === 200) {
      const old = await cache.match(key);
      if (!old || !same(old, res, 'Last-Modified') || !same(old, res, 'Content-Length') || key === at('model/manifest.json')) {
        await cache.put(key, res.clone()).catch(() => {});
      }
    }
    return res;
  } catch (e) {
    const hit = (await cache.match(key)) ?? (request.mode === 'navigate' ? await cache.match(SHELL[0]) : undefined);
    if (hit) return hit;
    throw e;
  }
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (!cacheable(url)) return;
  if (request.headers.has('range')) return;
  event.respondWith(networkFirst(request));
});
