// "Models on this computer": a model folder opened from disk (a `kpl pack` bundle, a
// Hugging Face CLIP or SigLIP folder, or an open_clip folder) is checked, stored in the
// origin private file system (see opfs.js) so it works offline later, listed with its
// size and date, and deleted on request. Knowledge bases the model lacks are built in
// the worker with its text encoder and stored beside it. Nothing is sent anywhere: the
// files go from the disk to this browser's storage and to the worker.
//
// Every failure leaves the stored models as they were: a new model is written into a
// new folder, which is removed if anything goes wrong, and is listed only once its
// stored.json exists, written by `finishStoredModel` after the model has loaded.

import { MODEL_FILES, OPEN_CLIP_CONFIG, OPEN_CLIP_FILES, OPEN_CLIP_WEIGHTS } from './protocol.js';
import { modelsDirectory, storedModelBase } from './opfs.js';

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
/** The record written last into a stored model's folder: {id, name, kind, random, bytes, date}. */
const RECORD = 'stored.json';
/** Folders of this page being stored or loaded: not listed, and not removed as unfinished. */
const unfinished = new Set();
/**
 * A folder without a record is removed as an abandoned store (a tab closed mid-write or
 * mid-load) once it is this old (ms): another tab may be storing it now.
 */
const ABANDONED_AFTER = 60 * 60 * 1000;
/** What a model folder is, for the messages below. */
const FOLDER_KINDS = 'a kpl pack bundle, a Hugging Face CLIP or SigLIP folder, or an open_clip folder';

/** A clear error for the page (`detail`, when given, is the technical part). */
export class ModelFolderError extends Error {}

/** `[name, File]` of the top-level files of a folder chosen with <input webkitdirectory>. */
export function filesOfInput(fileList) {
  const files = new Map();
  let folder = '';
  for (const f of fileList) {
    const parts = (f.webkitRelativePath || f.name).split('/');
    folder ||= parts.length > 1 ? parts[0] : '';
    if (parts.length <= 2) files.set(parts.at(-1), f);
  }
  return { folder, files };
}

/** The same for a folder dropped on the page (DataTransferItem → FileSystemDirectoryEntry). */
export async function filesOfDrop(dataTransfer) {
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  const dir = entries.find((e) => e.isDirectory);
  if (!dir) throw new ModelFolderError(`Drop a model folder here (not single files): ${FOLDER_KINDS}.`);
  const reader = dir.createReader();
  const all = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    all.push(...batch);
  }
  const files = new Map();
  for (const e of all.filter((e) => e.isFile)) files.set(e.name, await new Promise((resolve, reject) => e.file(resolve, reject)));
  return { folder: dir.name, files };
}

const plainName = (p) => typeof p === 'string' && p !== '' && !p.includes('/') && !p.includes('\\') && !p.startsWith('.');

async function sha256Hex(file) {
  const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function readJson(file, name) {
  try {
    return JSON.parse(await file.text());
  } catch (e) {
    throw new ModelFolderError(`${name} is not valid JSON (${e.message}).`);
  }
}

/**
 * Checks a folder's files and says what to store: `{kind, name, manifest, store: [names]}`.
 * A bundle: every file its manifest.json lists must be there with the listed size and
 * SHA-256. A Hugging Face folder: config.json and model.safetensors (the tokenizer files
 * and preprocessor_config.json when present); an open_clip folder: open_clip_config.json
 * and the first weight file of OPEN_CLIP_WEIGHTS (the other OPEN_CLIP_FILES when
 * present); their manifest is written here.
 * `onProgress(done, total)` counts bytes hashed.
 */
export async function checkModelFolder({ folder, files }, onProgress = () => {}) {
  const label = folder ? `“${folder}”` : 'The folder';
  if (files.has('manifest.json')) {
    const manifest = await readJson(files.get('manifest.json'), 'manifest.json');
    const listed = [manifest?.files?.image_encoder, manifest?.files?.text_encoder, ...(Array.isArray(manifest?.knowledge) ? manifest.knowledge : [])].filter(Boolean);
    if (!manifest?.files?.image_encoder) {
      throw new ModelFolderError(`${label}: manifest.json is not a kpl pack bundle's (it lists no image encoder).`);
    }
    for (const entry of listed) {
      if (!plainName(entry.path)) throw new ModelFolderError(`${label}: manifest.json lists "${entry.path}", which is not a file name inside the folder.`);
    }
    const total = listed.reduce((s, e) => s + (Number(e.bytes) || 0), 0);
    let done = 0;
    for (const entry of listed) {
      const file = files.get(entry.path);
      if (!file) throw new ModelFolderError(`${label}: ${entry.path} is missing (manifest.json lists it).`);
      if (file.size !== entry.bytes) {
        throw new ModelFolderError(`${label}: ${entry.path} is ${file.size} bytes; manifest.json lists ${entry.bytes} (a truncated or altered file).`);
      }
      const sha = await sha256Hex(file);
      if (sha !== entry.sha256) {
        throw new ModelFolderError(`${label}: ${entry.path} is altered: its SHA-256 is ${sha.slice(0, 16)}…, manifest.json lists ${String(entry.sha256).slice(0, 16)}….`);
      }
      done += file.size;
      onProgress(done, total);
    }
    const name = manifest.model?.name || folder || 'bundle';
    return { kind: 'bundle', name, random: manifest.model?.random_weights === true, manifest, store: ['manifest.json', ...listed.map((e) => e.path)] };
  }
  const openClipWeights = OPEN_CLIP_WEIGHTS.find((n) => files.has(n));
  if (files.has(OPEN_CLIP_CONFIG) && openClipWeights) {
    const config = await readJson(files.get(OPEN_CLIP_CONFIG), OPEN_CLIP_CONFIG);
    if (!config?.model_cfg || typeof config.model_cfg !== 'object') {
      throw new ModelFolderError(`${label}: ${OPEN_CLIP_CONFIG} is not an open_clip configuration (no model_cfg).`);
    }
    const roles = Object.entries({ ...OPEN_CLIP_FILES, weights: openClipWeights }).filter(([, n]) => files.has(n));
    const manifest = {
      model: { files: Object.fromEntries(roles), sizes: Object.fromEntries(roles.map(([r, n]) => [r, files.get(n).size])) },
      random_weights: config.kpl_random_weights === true,
      knowledge: [],
    };
    return { kind: 'open_clip', name: folder || 'open_clip model', random: manifest.random_weights, manifest, store: roles.map(([, n]) => n) };
  }
  if (files.has(MODEL_FILES.config) && files.has(MODEL_FILES.weights)) {
    const config = await readJson(files.get(MODEL_FILES.config), MODEL_FILES.config);
    if (!config || typeof config !== 'object' || !config.vision_config) {
      throw new ModelFolderError(`${label}: ${MODEL_FILES.config} is not a CLIP or SigLIP configuration (no vision_config).`);
    }
    const roles = Object.entries(MODEL_FILES).filter(([, n]) => files.has(n));
    const manifest = {
      model: { files: Object.fromEntries(roles), sizes: Object.fromEntries(roles.map(([r, n]) => [r, files.get(n).size])) },
      random_weights: config.kpl_random_weights === true,
      knowledge: [],
    };
    const name = folder || config._name_or_path || 'CLIP model';
    return { kind: 'huggingface', name, random: manifest.random_weights, manifest, store: roles.map(([, n]) => n) };
  }
  const seen = [...files.keys()].slice(0, 5).join(', ');
  throw new ModelFolderError(
    `${label} is not a model: it needs manifest.json (a kpl pack bundle) or ${MODEL_FILES.config} and ${MODEL_FILES.weights} ` +
      `(a Hugging Face CLIP or SigLIP folder) or ${OPEN_CLIP_CONFIG} and its weights (an open_clip folder). It holds ${files.size ? seen + (files.size > 5 ? ', …' : '') : 'no files'}.`,
  );
}

async function writeFile(dir, name, data) {
  const writable = await (await dir.getFileHandle(name, { create: true })).createWritable();
  if (data instanceof Blob) await data.stream().pipeTo(writable);
  else {
    await writable.write(data);
    await writable.close();
  }
}

/**
 * Stores a checked folder under a new id: refused with the sizes when the browser's
 * quota leaves too little room; removed again if any write fails. The folder is not
 * listed until `finishStoredModel(record)` (call it once the model has loaded; on any
 * failure call `deleteStoredModel(record.id)`). `onProgress(done, total)` counts bytes
 * written. Returns the stored model's record {id, name, kind, random, bytes, date}.
 */
export async function storeModel(checked, files, onProgress = () => {}) {
  const sizes = checked.store.filter((n) => n !== 'manifest.json').map((n) => files.get(n).size);
  const bytes = sizes.reduce((a, b) => a + b, 0);
  const { quota = 0, usage = 0 } = (await navigator.storage.estimate?.()) ?? {};
  const free = quota - usage;
  const advice = 'Delete stored models or the offline cache, or use a smaller bundle (kpl pack --dtype q4). Nothing was stored.';
  if (quota && bytes > free) {
    throw new ModelFolderError(
      `“${checked.name}” needs ${mb(bytes)}, but this browser lets this page store only ${mb(Math.max(free, 0))} more ` +
        `(${mb(usage)} of its ${mb(quota)} used). ${advice}`,
    );
  }
  await navigator.storage.persist?.().catch(() => false);
  const root = await modelsDirectory(true);
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  unfinished.add(id);
  const dir = await root.getDirectoryHandle(id, { create: true });
  try {
    let done = 0;
    for (const name of checked.store) {
      if (name === 'manifest.json') continue;
      await writeFile(dir, name, files.get(name));
      done += files.get(name).size;
      onProgress(done, bytes);
    }
    await writeFile(dir, 'manifest.json', JSON.stringify(checked.manifest, null, 2));
    return { id, name: checked.name, kind: checked.kind, random: checked.random, bytes, date: new Date().toISOString() };
  } catch (e) {
    unfinished.delete(id);
    await root.removeEntry(id, { recursive: true }).catch(() => {});
    if (e.name === 'QuotaExceededError') {
      // The browser's own limit can be below what estimate() reported (a policy, an
      // almost full disk): say what it refused, with the sizes known.
      throw new ModelFolderError(
        `“${checked.name}” needs ${mb(bytes)}, but this browser refused to store that much for this page ` +
          `(it reports ${mb(usage)} used of ${mb(quota)}; its limit is lower). ${advice}`,
      );
    }
    throw e;
  }
}

/** Lists a model stored by `storeModel`: its record is written, the last file. */
export async function finishStoredModel(record) {
  const dir = await (await modelsDirectory(false)).getDirectoryHandle(record.id);
  await writeFile(dir, RECORD, JSON.stringify(record));
  unfinished.delete(record.id);
}

/** When the folder `id` (`storeModel`'s: base-36 milliseconds, a dash, random) was made. */
const storedAt = (id) => parseInt(id.split('-')[0], 36);

/**
 * The stored models, newest first: [{id, name, kind, bytes, date}]. Folders without a
 * record are left out, and removed once abandoned (see `ABANDONED_AFTER`).
 */
export async function listStoredModels() {
  const root = await modelsDirectory(false);
  if (!root) return [];
  const out = [];
  for await (const [id, handle] of root.entries()) {
    if (handle.kind !== 'directory' || unfinished.has(id)) continue;
    try {
      const record = JSON.parse(await (await (await handle.getFileHandle(RECORD)).getFile()).text());
      out.push({ ...record, id });
    } catch {
      // No record: a store that never finished, or one another tab is making now.
      const age = Date.now() - storedAt(id);
      if (!(age < ABANDONED_AFTER)) await root.removeEntry(id, { recursive: true }).catch(() => {});
    }
  }
  return out.sort((a, b) => (a.date < b.date ? 1 : -1));
}

export async function deleteStoredModel(id) {
  unfinished.delete(id);
  const root = await modelsDirectory(false);
  await root?.removeEntry(id, { recursive: true });
}

/** A stored model's manifest. */
async function readManifest(id) {
  const dir = await (await modelsDirectory(false)).getDirectoryHandle(id);
  return { dir, manifest: JSON.parse(await (await (await dir.getFileHandle('manifest.json')).getFile()).text()) };
}

/**
 * Stores a knowledge base built in the browser beside a stored model and lists it in
 * its manifest (with size and SHA-256 for a bundle, whose loader checks them).
 * `kb`: {task, title, classes}. Returns the manifest entry.
 */
export async function addKnowledgeBase(id, kb, bytes) {
  const { dir, manifest } = await readManifest(id);
  const path = `${kb.task}.kplkb`;
  await writeFile(dir, path, bytes);
  const entry = { task: kb.task, title: kb.title, path, classes: kb.classes };
  if (manifest.files?.image_encoder) {
    entry.bytes = bytes.byteLength;
    entry.sha256 = await sha256Hex(new Blob([bytes]));
  }
  manifest.knowledge = [...(manifest.knowledge ?? []).filter((k) => k.task !== kb.task), entry];
  // createWritable writes a copy and swaps it in on close: the manifest is never half written.
  await writeFile(dir, 'manifest.json', JSON.stringify(manifest, null, 2));
  return entry;
}

export { storedModelBase };
