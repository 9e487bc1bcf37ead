// Plain words for what the page and the widget tell a person. The worker, the
// WebAssembly module and the browser speak in technical terms ("WebGPU could not
// start (GPU: no GPU adapter (…))"); a clinician reads a short summary of what it
// means and what to do, and the technical text stays one click away, in a closed
// <details> disclosure, for whoever supports the page.
//
// One table of rules, used by the page (app.js) and the widget (kpl-classifier.js).
// A rule matches the technical text; the first match gives the summary. Text no
// rule knows gets the context's general summary, never a guess.

/**
 * @typedef {'backend' | 'file' | 'model' | 'kb' | 'restart' | 'offline' | 'start' | 'window'} MessageContext
 * Where the message is shown: the engine note, a file's error card, the model's or
 * the knowledge base's load, the worker restart note, the offline cache, the
 * widget's start, a DICOM card's window choice.
 *
 * @typedef {object} PlainMessage
 * @property {string} summary what it means, in plain words (one or two sentences).
 * @property {string} detail the technical text, for the disclosure ('' when none).
 * @property {'info' | 'problem'} tone 'info' for neutral information (the page
 *   works, perhaps more slowly), 'problem' when something did not happen.
 */

const CPU = 'classifying on the CPU';

/** The number before `unit` in `text` (e.g. "1600.0 megapixels"), formatted, or null. */
function numberBefore(text, unit, nth = 0) {
  const all = [...text.matchAll(new RegExp(`([\\d.]+) ${unit}`, 'g'))];
  const value = Number(all[nth]?.[1]);
  return Number.isFinite(value) ? value.toLocaleString('en', { maximumFractionDigits: 1 }) : null;
}

/**
 * [context or '*', pattern, summary (a string, or a function of the technical
 * text), tone]. Order matters: the first match wins. '*': any context where
 * something failed (not the engine note, the restart note or the offline cache).
 * @type {Array<[MessageContext | '*', RegExp, string | ((text: string) => string), 'info' | 'problem']>}
 */
const RULES = [
  // The engine (backend notes): information, not a fault: the page still classifies.
  ['backend', /running on the CPU while WebGPU is measured/, `Classifying on the CPU while this computer's GPU is tested.`, 'info'],
  ['backend', /WebGPU is not available in this browser|WebGPU could not start|no GPU adapter/, `No GPU is available to this page; ${CPU}.`, 'info'],
  ['backend', /disagreed with the CPU/, `The GPU gave different results from the CPU on a test image, so it is not used; ${CPU}.`, 'info'],
  ['backend', /WebGPU failed on a test image/, `The GPU failed on a test image, so it is not used; ${CPU}.`, 'info'],
  ['backend', /WebGPU failed \(.*continuing/, `The GPU stopped working; the next images are classified on the CPU. No result was lost.`, 'info'],
  ['backend', /could not be opened again|not available any more/, `The GPU could not be used again after a restart; ${CPU}.`, 'info'],
  ['backend', /^Auto: .*per image against .* on WebGPU/, `The CPU is faster than the GPU on this computer; ${CPU}.`, 'info'],
  ['backend', /^Auto: WebGPU on /, 'Classifying on the GPU, the faster engine on this computer.', 'info'],
  ['backend', /^WebGPU on /, 'Classifying on the GPU.', 'info'],
  // Thread notes (the worker's `threadsNote`): the page still classifies, on one thread.
  ['backend', /not cross-origin isolated/, 'This page is not set up for parallel work (cross-origin isolation), so the CPU classifies on one thread, more slowly.', 'info'],
  ['backend', /threaded WebAssembly build .*could not start/, 'Parallel work could not start in this browser, so the CPU classifies on one thread, more slowly.', 'info'],

  // The worker restart note.
  ['restart', /could not be restarted/, 'The classifier stopped unexpectedly and could not be started again. Reload the page.', 'problem'],
  ['restart', /./, 'The classifier stopped unexpectedly on one file and was started again; the other images went on.', 'info'],

  // The model or a knowledge base is unusable: first, since a file's card shows
  // these too when the model or the base it waited for failed.
  ['*', /another model/, `This task's knowledge was prepared for another model and cannot be used with this one.`, 'problem'],
  ['*', /SHA-256/, 'A model or knowledge file is damaged (its integrity check failed). Reload the page; if it persists, the files on the server need replacing.', 'problem'],
  ['*', /cannot start the WebAssembly module/, 'This browser could not start the classifier. Use an up-to-date Chrome, Edge, Firefox or Safari.', 'problem'],
  ['*', /needs config\.json|missing tensor|wrongly shaped|not JSON|no "model\.files"/, 'The model folder on the server is incomplete or damaged.', 'problem'],

  // One file.
  ['file', /crashed on this file.*could not be restarted/, 'The classifier stopped on this file and could not be started again. Reload the page.', 'problem'],
  ['file', /crashed on this file/, 'The classifier stopped on this file, so it has no result. The other images went on.', 'problem'],
  ['file', /not processed: the WebAssembly module crashed/, 'Not classified: the classifier stopped on an earlier file. Reload the page and add this file again.', 'problem'],
  ['file', /above the limit of [\d.]+ megapixels/, (t) => {
    // "= 1600.0 megapixels, above the limit of 100.0 megapixels", or for DICOM
    // "= 1048.6 million samples, above the limit of 100.0 megapixels".
    const samples = t.includes('million samples');
    const size = numberBefore(t, samples ? 'million samples' : 'megapixels');
    const limit = numberBefore(t, 'megapixels', samples ? 0 : 1);
    return `This image is too large for this page${size && limit ? ` (${size} megapixels; the limit is ${limit})` : ''}. Use a smaller copy of the image.`;
  }, 'problem'],
  ['file', /above the limit of [\d.]+ MB/, 'This file is too large to read here. Use a smaller copy of the image.', 'problem'],
  ['file', /not a supported image format/, 'This file is not an image this page can read. Use PNG, JPEG, WebP, BMP, TIFF or DICOM.', 'problem'],
  ['file', /the file is empty/, 'This file is empty.', 'problem'],
  ['file', /has no Pixel Data/, 'This DICOM file contains no image (it may be a report or a structured document).', 'problem'],
  ['file', /frame \d+ does not exist/, 'This DICOM file has fewer images (frames) than the one asked for.', 'problem'],
  ['file', /(transfer syntax|Photometric Interpretation|Bits Allocated|float pixel data|palette).*not supported|not supported.*transfer syntax/i,
    'This DICOM image is stored in a form this page cannot read yet. Export it again as uncompressed DICOM, PNG or JPEG.', 'problem'],
  ['file', /DICOM|\(7FE0|\(0028|\(0002|data set|file meta information|Pixel Data|Bits Stored|Samples per Pixel|transfer syntax/,
    'This DICOM file is damaged or not valid, so it could not be read.', 'problem'],
  ['file', /the image has no pixels/, 'This image is empty (it has no pixels).', 'problem'],
  ['file', /cannot (decode|read)|corrupt|truncat|unexpected end|end of file|ends inside|invalid/i,
    'This image file seems damaged or incomplete, so it could not be read.', 'problem'],
  ['file', /no knowledge base (selected|is loaded)/, 'No task is loaded, so nothing was classified. Choose a task.', 'problem'],
  ['file', /no text encoder/, 'This model cannot score typed labels. Choose a task from the list instead.', 'problem'],
  ['file', /no model is loaded/, 'The model is not loaded, so nothing was classified. Reload the page.', 'problem'],

  // Fetching the model or a knowledge base (the page's status line, the widget's start).
  ['*', /HTTP 404/, 'A file the page needs was not found on the server. Ask whoever runs this page to check the model folder.', 'problem'],
  ['*', /HTTP \d+/, 'The server did not send a file the page needs. Try again later.', 'problem'],
  ['*', /Failed to fetch|NetworkError|network|offline/i, 'A file could not be downloaded. Check the network connection and reload the page.', 'problem'],
  ['*', /threads must be a whole number/, `The page's settings ask for a number of threads this classifier does not accept.`, 'problem'],
  ['*', /backend ".*" is unknown|unknown backend/, `The page's settings name an engine this classifier does not know.`, 'problem'],
  ['*', /has no knowledge base for task|lists no knowledge base/, 'This model has no knowledge for the task this page asks for.', 'problem'],
];

/** What each context says when no rule knows the text. */
const FALLBACK = {
  backend: ['Note about the engine that runs the classifier.', 'info'],
  file: ['This file could not be classified.', 'problem'],
  model: ['The model could not be loaded, so images cannot be classified.', 'problem'],
  kb: [`The task's knowledge could not be loaded; choose another task or reload the page.`, 'problem'],
  restart: ['The classifier stopped unexpectedly.', 'problem'],
  offline: ['Offline use is not available in this browser; the page works while online.', 'info'],
  start: ['The classifier could not start.', 'problem'],
  window: ['The other DICOM window could not be applied; the card keeps the window it had.', 'problem'],
};

/** The command-line hints in shared error texts ("raise it with --max-megapixels") mean nothing in a page. */
const CLI_HINT = /\s*\((?:raise it with|use) --[a-z-]+[^)]*\)/g;

/**
 * The plain summary of a technical message.
 * @param {MessageContext} context
 * @param {string} technical the message as the worker, the module or the browser gave it.
 * @returns {PlainMessage}
 */
export function explain(context, technical) {
  const detail = String(technical ?? '').replace(CLI_HINT, '').trim();
  // The offline cache has its own words: its failures never stop classifying.
  const anyFailure = !['backend', 'restart', 'offline'].includes(context);
  const rules = RULES.filter(([c]) => c === context || (c === '*' && anyFailure));
  for (const [, pattern, summary, tone] of rules) {
    if (pattern.test(detail)) return { summary: typeof summary === 'function' ? summary(detail) : summary, detail, tone };
  }
  const [summary, tone] = FALLBACK[context] ?? FALLBACK.file;
  return { summary, detail, tone };
}

/**
 * The nodes showing a message: the summary (a `span.plain`) and, when there is
 * technical text, a closed `<details class="detail">` holding it.
 * @param {PlainMessage} message
 * @param {Document} [doc]
 * @returns {Node[]}
 */
export function messageNodes(message, doc = document) {
  const summary = doc.createElement('span');
  summary.className = 'plain';
  summary.textContent = message.summary;
  if (!message.detail) return [summary];
  const details = doc.createElement('details');
  details.className = 'detail';
  const label = doc.createElement('summary');
  label.textContent = 'Technical details';
  const text = doc.createElement('span');
  text.className = 'detail-text';
  text.textContent = message.detail;
  details.append(label, text);
  return [summary, ' ', details];
}

/**
 * Shows `message` in `node` (replacing its content) and marks its tone in
 * `data-tone`, which the style sheets colour: neutral for 'info'.
 * @param {HTMLElement} node
 * @param {PlainMessage} message
 */
export function showMessage(node, message) {
  node.replaceChildren(...messageNodes(message, node.ownerDocument));
  node.dataset.tone = message.tone;
}
