// The "Models on this computer" panel of the page: open a model folder (a control and
// drag and drop), the stored models with their size and date (use, delete), and the
// progress of checking, storing and building knowledge bases. The storage itself is
// stored-models.js; which model the page uses is app.js's (through `useModel`).

import {
  ModelFolderError, filesOfInput, filesOfDrop, checkModelFolder, storeModel, finishStoredModel, listStoredModels,
  deleteStoredModel, addKnowledgeBase, storedModelBase,
} from './stored-models.js';

const $ = (id) => document.getElementById(id);
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
/** The stored model in use, remembered across visits (its id; it never leaves this browser). */
const IN_USE = 'kpl-stored-model';
const KIND = { bundle: 'kpl pack bundle', huggingface: 'Hugging Face folder', open_clip: 'open_clip folder' };

/**
 * Wires the panel. `client`: the page's KplClient; `useModel(base)` switches the page to
 * the model at `base` and rejects when it cannot be loaded; `servedBase`: the server's model.
 * Returns {initialBase(), buildKnowledgeBase(kb)}.
 */
export function initModelsPanel({ client, useModel, servedBase }) {
  const ui = {
    input: $('model-folder'),
    drop: $('model-drop'),
    message: $('models-message'),
    progress: $('models-progress'),
    bar: $('models-progress-bar'),
    barLabel: $('models-progress-label'),
    list: $('stored-list'),
    rows: $('stored-list').querySelector('tbody'),
    empty: $('stored-empty'),
    useServed: $('use-served'),
  };
  let inUse = null;
  /** The name of the stored model in use (recorded in the bases built for it). */
  let inUseName = '';
  let busy = false;

  function say(text, { error = false } = {}) {
    ui.message.hidden = !text;
    ui.message.textContent = text;
    ui.message.classList.toggle('failed', error);
    ui.message.setAttribute('role', error ? 'alert' : 'status');
    ui.message.dataset.kind = error ? 'error' : 'info';
  }

  function progress(label, done, total) {
    ui.progress.hidden = label === null;
    if (label === null) return;
    ui.barLabel.textContent = label;
    ui.bar.max = total || 1;
    ui.bar.value = done;
  }

  async function refresh() {
    const models = await listStoredModels().catch(() => []);
    ui.rows.replaceChildren();
    for (const m of models) {
      if (m.id === inUse) inUseName = m.name;
      const row = document.createElement('tr');
      row.dataset.storedModel = m.id;
      const cell = (text) => Object.assign(document.createElement('td'), { textContent: text });
      const use = Object.assign(document.createElement('button'), { type: 'button', textContent: m.id === inUse ? 'In use' : 'Use' });
      use.disabled = m.id === inUse;
      use.setAttribute('aria-label', `Use ${m.name}`);
      use.addEventListener('click', () => switchTo(m));
      const del = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Delete' });
      del.setAttribute('aria-label', `Delete ${m.name}`);
      del.addEventListener('click', () => remove(m));
      const actions = document.createElement('td');
      actions.append(use, ' ', del);
      const name = cell(m.name);
      if (m.random) name.append(Object.assign(document.createElement('span'), { className: 'hint', textContent: ' (random test weights: outputs mean nothing)' }));
      row.append(name, cell(KIND[m.kind] ?? m.kind), cell(mb(m.bytes)), cell(new Date(m.date).toLocaleString()), actions);
      if (m.id === inUse) row.setAttribute('aria-current', 'true');
      ui.rows.append(row);
    }
    ui.list.hidden = models.length === 0;
    ui.empty.hidden = models.length > 0;
    ui.useServed.disabled = inUse === null;
    document.body.dataset.storedModels = String(models.length);
    return models;
  }

  /**
   * Loads `m` (a stored model's record, or null for the server's model) and makes it the
   * one in use; on failure the one in use stays. The list is not redrawn here.
   */
  async function activate(m) {
    const previous = { id: inUse, name: inUseName };
    // Set before loading: a base the model lacks is built during `useModel`, for this model.
    inUse = m?.id ?? null;
    inUseName = m?.name ?? '';
    try {
      await useModel(m ? storedModelBase(m.id) : servedBase);
    } catch (e) {
      ({ id: inUse, name: inUseName } = previous);
      throw e;
    }
    if (m) localStorage.setItem(IN_USE, m.id);
    else localStorage.removeItem(IN_USE);
    say(m ? `Using “${m.name}”, stored in this browser.` : 'Using the server’s model.');
  }

  async function switchTo(m) {
    try {
      await activate(m);
    } finally {
      await refresh();
    }
  }

  async function remove(m) {
    await deleteStoredModel(m.id);
    if (m.id === inUse) await switchTo(null).catch((e) => say(`The server's model could not be loaded: ${e.message}`, { error: true }));
    say(`Deleted “${m.name}” (${mb(m.bytes)}) from this browser.`);
    await refresh();
  }

  /**
   * Checks, stores and switches to a folder; on any error nothing stored changes. The
   * model is listed only once it has loaded (`finishStoredModel`): a checkpoint that
   * does not load is never shown, even for a moment, and `data-model-open` is set after
   * the list is final.
   */
  async function open(folder) {
    if (busy) return;
    busy = true;
    document.body.dataset.modelOpen = 'busy';
    const before = { id: inUse, name: inUseName };
    let stored = null;
    try {
      say('');
      progress('Checking the files', 0, 1);
      const checked = await checkModelFolder(folder, (d, t) => progress('Checking the files (SHA-256)', d, t));
      stored = await storeModel(checked, folder.files, (d, t) => progress(`Storing ${mb(d)} of ${mb(t)}`, d, t));
      progress(null);
      await activate(stored);
      await finishStoredModel(stored);
      await refresh();
      document.body.dataset.modelOpen = 'stored';
    } catch (e) {
      progress(null);
      if (stored) {
        // Stored but not loadable (a broken checkpoint): removed again (never listed: it
        // has no record; if the removal fails, the next listing removes it), and the page
        // goes back to the model it used before.
        await deleteStoredModel(stored.id).catch(() => {});
        if (inUse === stored.id) {
          ({ id: inUse, name: inUseName } = before);
          if (inUse) localStorage.setItem(IN_USE, inUse);
          else localStorage.removeItem(IN_USE);
        }
        await useModel(inUse ? storedModelBase(inUse) : servedBase).catch(() => {});
      }
      const text = e instanceof ModelFolderError ? e.message : `The model could not be opened: ${e.message}`;
      say(text, { error: true });
      await refresh();
      document.body.dataset.modelOpen = 'failed';
    } finally {
      busy = false;
    }
  }

  ui.input.addEventListener('change', () => {
    const chosen = filesOfInput(ui.input.files ?? []);
    ui.input.value = '';
    if (chosen.files.size) open(chosen);
  });
  for (const type of ['dragenter', 'dragover']) {
    ui.drop.addEventListener(type, (event) => {
      event.preventDefault();
      event.stopPropagation();
      ui.drop.classList.add('dragging');
    });
  }
  ui.drop.addEventListener('dragleave', (event) => {
    if (!ui.drop.contains(event.relatedTarget)) ui.drop.classList.remove('dragging');
  });
  ui.drop.addEventListener('drop', async (event) => {
    event.preventDefault();
    event.stopPropagation();
    ui.drop.classList.remove('dragging');
    try {
      open(await filesOfDrop(event.dataTransfer));
    } catch (e) {
      say(e.message, { error: true });
    }
  });
  ui.useServed.addEventListener('click', () => switchTo(null).catch((e) => say(e.message, { error: true })));

  return {
    /** The model to start with: the stored one last used, if it is still stored. */
    async initialBase() {
      const id = localStorage.getItem(IN_USE);
      const models = await refresh();
      if (id && models.some((m) => m.id === id)) {
        inUse = id;
        await refresh();
        return storedModelBase(id);
      }
      return servedBase;
    },

    /**
     * Builds the knowledge base of `kb` ({task, title, classes}) for the stored model in
     * use, from knowledge/TASK/task.json, with a progress bar; stores it beside the model.
     * Returns its manifest entry.
     */
    async buildKnowledgeBase(kb) {
      const id = inUse;
      if (!id) throw new Error(`the model has no knowledge base for ${kb.task}`);
      const taskUrl = new URL(`knowledge/${encodeURIComponent(kb.task)}/task.json`, import.meta.url).href;
      progress(`Building the knowledge base of ${kb.title}`, 0, 1);
      document.body.dataset.kbBuild = 'running';
      try {
        const { bytes } = await client.buildKb(taskUrl, inUseName || 'stored model', ({ loaded, total, unit }) =>
          progress(`Building the knowledge base of ${kb.title}: ${loaded} of ${total} ${unit}`, loaded, total));
        const entry = await addKnowledgeBase(id, kb, bytes);
        say(`Built and stored the knowledge base of ${kb.title} for this model (${(bytes.byteLength / 1e3).toFixed(0)} kB).`);
        document.body.dataset.kbBuild = 'done';
        return entry;
      } catch (e) {
        document.body.dataset.kbBuild = 'failed';
        throw e;
      } finally {
        progress(null);
      }
    },
  };
}
