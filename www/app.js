// The page: input (file picker, drag and drop, paste), the labels field, and the
// result cards. It does no heavy work itself: worker.js owns the wasm and the model,
// and every exchange with it goes through the protocol in protocol.js.

import { KplClient, parseLabels } from './protocol.js';

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  statusText: $('status-text'),
  progress: $('load-progress'),
  banner: $('random-banner'),
  labels: $('labels'),
  labelsError: $('labels-error'),
  dropZone: $('drop-zone'),
  fileInput: $('file-input'),
  clear: $('clear'),
  results: $('results'),
  empty: $('results-empty'),
};

/** Object URLs of thumbnails, revoked when the results are cleared. */
const objectUrls = new Set();

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'kpl' });
const client = new KplClient(worker);

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
const ms = (t) => (t < 10 ? `${t.toFixed(1)} ms` : `${Math.round(t)} ms`);

/** Creates an element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function setStatus(text, { failed = false } = {}) {
  ui.statusText.textContent = text;
  ui.status.classList.toggle('failed', failed);
}

async function loadModel() {
  setStatus('Loading the model…');
  try {
    const info = await client.load('/model/', ({ file, loaded, total }) => {
      ui.progress.max = total || 1;
      ui.progress.value = loaded;
      setStatus(`Downloading ${file}: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''}`);
    });
    ui.progress.hidden = true;
    ui.banner.hidden = !info.isRandom;
    document.body.dataset.modelReady = 'true';
    document.body.dataset.modelRandom = String(info.isRandom);
    setStatus(
      `Model ready (${mb(info.bytes)} in ${ms(info.ms)}): image ${info.imageSize}×${info.imageSize} px, ` +
        `${info.embeddingDim}-dimensional embeddings, CPU (WebAssembly).` +
        (info.isRandom ? ' Random test weights.' : ''),
    );
    if (!info.hasTokenizer) setStatus(`${ui.statusText.textContent} No tokenizer.json: labels cannot be scored.`);
  } catch (e) {
    ui.progress.hidden = true;
    document.body.dataset.modelReady = 'false';
    setStatus(`The model could not be loaded: ${e.message}`, { failed: true });
  }
}

function currentLabels() {
  const labels = parseLabels(ui.labels.value);
  const bad = labels.length === 0;
  ui.labels.setAttribute('aria-invalid', String(bad));
  ui.labelsError.hidden = !bad;
  ui.labelsError.textContent = bad ? 'Enter at least one label.' : '';
  return labels;
}

function updateEmpty() {
  const any = ui.results.children.length > 0;
  ui.empty.hidden = any;
  ui.clear.disabled = !any;
}

function pendingCard(name) {
  return el('li', { class: 'card pending', 'data-kpl-pending': true, 'data-file': name },
    el('div', {}, el('h3', {}, name), el('p', {}, 'Working…')));
}

function resultCard(file, result) {
  const best = result.labels.indexOf(result.label);
  const url = URL.createObjectURL(file);
  objectUrls.add(url);
  const thumb = el('img', { class: 'thumb', src: url, alt: `Thumbnail of ${result.name}` });
  // Browsers cannot show every format the decoder reads (TIFF): drop the thumbnail then.
  thumb.addEventListener('error', () => thumb.replaceWith(el('div', { class: 'thumb no-preview' }, 'No preview')));
  const scores = el('ul', { class: 'scores', 'aria-label': 'Scores' },
    result.labels.map((label, i) =>
      el('li', { class: i === best ? 'score best' : 'score' },
        el('span', { class: 'name' }, label),
        el('meter', { min: 0, max: 1, value: result.probs[i], 'aria-label': label }),
        el('span', { class: 'pct' }, `${(100 * result.probs[i]).toFixed(1)} %`))));
  const head = Array.from(result.embedding.slice(0, 8), (v) => v.toFixed(4)).join(', ');
  return el('li', {
      class: 'card',
      'data-kpl-result': true,
      'data-file': result.name,
      'data-label': result.label,
      'data-method': result.method,
      'data-scores': JSON.stringify(result.probs),
    },
    thumb,
    el('div', { class: 'card-body' },
      el('h3', {}, result.name),
      el('p', { class: 'top-label' }, 'Top label: ', el('strong', {}, result.label),
        ` (${(100 * result.probs[best]).toFixed(1)} %, plain CLIP zero-shot)`),
      scores,
      el('p', { class: 'meta' }, `Embedded and scored in ${ms(result.ms)} in the worker.`),
      el('code', { class: 'embedding', 'aria-label': 'First values of the image embedding' },
        `embedding[0..8] of ${result.embedding.length}: ${head}, …`)));
}

function errorCard(name, message) {
  return el('li', { class: 'card error', 'data-kpl-error': true, 'data-file': name },
    el('div', {}, el('h3', {}, name), el('p', {}, `Could not classify this file: ${message}`)));
}

/** Sends every file to the worker; each gets its own card, and one failure stops nothing. */
function handleFiles(fileList) {
  const files = Array.from(fileList ?? []);
  if (files.length === 0) return;
  const labels = currentLabels();
  if (labels.length === 0) {
    ui.labels.focus();
    return;
  }
  for (const file of files) {
    const name = file.name || 'pasted image';
    const card = pendingCard(name);
    ui.results.append(card);
    client
      .classify(name, file, labels)
      .then((result) => card.replaceWith(resultCard(file, result)))
      .catch((e) => card.replaceWith(errorCard(name, e.message)));
  }
  updateEmpty();
}

ui.fileInput.addEventListener('change', () => {
  handleFiles(ui.fileInput.files);
  ui.fileInput.value = ''; // choosing the same file again fires `change` again
});

for (const type of ['dragenter', 'dragover']) {
  ui.dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    ui.dropZone.classList.add('dragging');
  });
}
ui.dropZone.addEventListener('dragleave', (event) => {
  if (!ui.dropZone.contains(event.relatedTarget)) ui.dropZone.classList.remove('dragging');
});
ui.dropZone.addEventListener('drop', (event) => {
  event.preventDefault();
  ui.dropZone.classList.remove('dragging');
  handleFiles(event.dataTransfer.files);
});
// A file dropped beside the zone must not make the browser navigate away to it.
window.addEventListener('dragover', (event) => event.preventDefault());
window.addEventListener('drop', (event) => event.preventDefault());

document.addEventListener('paste', (event) => {
  const files = event.clipboardData?.files;
  if (files && files.length > 0) {
    event.preventDefault();
    handleFiles(files);
  }
});

ui.labels.addEventListener('input', () => currentLabels());

ui.clear.addEventListener('click', () => {
  ui.results.replaceChildren();
  for (const url of objectUrls) URL.revokeObjectURL(url);
  objectUrls.clear();
  updateEmpty();
  ui.fileInput.focus();
});

updateEmpty();
loadModel();
