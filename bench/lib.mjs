// Small helpers shared by the Node benchmark scripts.

import { readFileSync } from 'node:fs';

/** `--name value` pairs into an object; `defaults` lists the accepted names. */
export function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, '');
    if (!argv[i].startsWith('--') || !(name in defaults) || i + 1 >= argv.length) {
      console.error(`unknown or incomplete argument ${argv[i]}; accepted: ${Object.keys(defaults).map((k) => '--' + k).join(' ')}`);
      process.exit(2);
    }
    out[name] = argv[++i];
  }
  return out;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

/**
 * Runs `fn` (sync or async) `runs` times; returns wall-clock seconds and process CPU
 * seconds per run (on a shared machine the wall clock also counts waiting for a core).
 */
export async function timeRuns(runs, fn) {
  const times = [];
  const cpuTimes = [];
  for (let i = 0; i < runs; i++) {
    const c = process.cpuUsage();
    const t = performance.now();
    await fn();
    times.push((performance.now() - t) / 1000);
    const used = process.cpuUsage(c);
    cpuTimes.push((used.user + used.system) / 1e6);
  }
  return { times, cpuTimes };
}

export const round = (x, digits) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Loads the web build in pkg/ (wasm-bindgen --target web) in Node; returns the module and its exports. */
export async function loadKplWasm(pkgDir) {
  const mod = await import(new URL(`file://${pkgDir}/kpl.js`).href);
  const bytes = readFileSync(`${pkgDir}/kpl_bg.wasm`);
  const exports = await mod.default({ module_or_path: bytes });
  return { mod, exports };
}

/** Bytes of the tensors whose names start with one of `prefixes` in a safetensors file. */
export function safetensorsBytes(buffer, prefixes) {
  const n = Number(Buffer.from(buffer.buffer, buffer.byteOffset, 8).readBigUInt64LE(0));
  const header = JSON.parse(Buffer.from(buffer.buffer, buffer.byteOffset + 8, n).toString('utf8'));
  let total = 0;
  for (const [name, info] of Object.entries(header)) {
    if (name !== '__metadata__' && prefixes.some((p) => name.startsWith(p))) {
      total += info.data_offsets[1] - info.data_offsets[0];
    }
  }
  return total;
}
