// Accessibility of the page, with results of every kind on it (task KPL with evidence,
// a DICOM summary, custom labels with descriptions, an error card, the backend note):
//
// - the keyboard: Tab reaches every enabled control, in document order, each with a
//   visible focus indicator and an accessible name (Chromium's accessibility tree);
// - every control, progress bar and meter in the accessibility tree has a name;
// - at phone width (375 px), at 200 % zoom of a 1280 px window (640 CSS px) and at
//   400 % (320 CSS px, WCAG 1.4.10 reflow) the document does not scroll sideways and
//   no control or result card is cut off.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer, launchBrowser, ensureKnowledgeBases, fixtureImage, collectErrors, OUT } from './helpers.mjs';

const MODEL = 'tests/fixtures/tiny-quickgelu-f32';

let server;
let browser;
let page;
let cdp;
let errors;

/** The selector of what can take keyboard focus on this page (a <details>' summary opens it). */
const FOCUSABLE = 'a[href], button, input, select, textarea, [tabindex], details > summary';

before(async () => {
  ensureKnowledgeBases(MODEL);
  server = await startServer({ model: MODEL });
  browser = await launchBrowser({ viewport: { width: 1000, height: 900 } });
  page = await browser.context.newPage();
  errors = collectErrors(page);
  await page.goto(`${server.url}/`);
  await page.locator('body[data-kb-ready="true"]').waitFor({ timeout: 60000 });
  // Results of every kind.
  await page.locator('#file-input').setInputFiles([
    fixtureImage('rgb_97x61.png'), fixtureImage('CT_small.dcm'),
    { name: 'a-file-with-a-rather-long-name-that-has-no-spaces-in-it-at-all.txt', mimeType: 'text/plain', buffer: Buffer.from('no') },
  ]);
  await page.waitForFunction(() => document.querySelectorAll('[data-kpl-result]').length === 2 && document.querySelectorAll('[data-kpl-error]').length === 1, null, { timeout: 30000 });
  await page.selectOption('#task', 'custom');
  await page.fill('#labels', 'normal: clear lung fields; sharp costophrenic angles\npneumonia with a long class name: patchy consolidation; air bronchograms');
  await page.locator('#file-input').setInputFiles([fixtureImage('grey_80x120.png'), fixtureImage('small_30x40.png')]);
  await page.waitForFunction(() => document.querySelectorAll('[data-kpl-result][data-custom]').length === 2, null, { timeout: 30000 });
  await page.selectOption('#backend', 'webgpu');
  await page.locator('#backend-note').waitFor({ state: 'visible', timeout: 30000 });
  cdp = await browser.context.newCDPSession(page);
  await cdp.send('Accessibility.enable');
}, { timeout: 120000 });

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Chromium's accessibility tree of the page (ignored nodes left out). */
async function axTree() {
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  return nodes.filter((n) => !n.ignored);
}

const prop = (node, name) => node.properties?.find((p) => p.name === name)?.value?.value;

test('Tab reaches every control in order; each has an accessible name and a visible focus ring', { timeout: 60000 }, async () => {
  // A control's key: its id, else its tag and position among the focusable elements
  // (the "Technical details" disclosures have no id and the same text).
  const expected = await page.evaluate((sel) => {
    const all = Array.from(document.querySelectorAll(sel));
    return all
      .filter((e) => !e.disabled && e.tabIndex >= 0 && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden')
      .map((e) => e.id || `${e.tagName.toLowerCase()}#${all.indexOf(e)}`);
  }, FOCUSABLE);
  // Start from the top of the page, as after loading it: a click on the heading moves the
  // sequential focus navigation starting point there.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.locator('h1').click();
  const visited = [];
  const problems = [];
  for (let i = 0; i < expected.length + 5; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate((sel) => {
      const e = document.activeElement;
      if (!e || e === document.body) return null;
      const style = getComputedStyle(e);
      return {
        key: e.id || `${e.tagName.toLowerCase()}#${Array.from(document.querySelectorAll(sel)).indexOf(e)}`,
        ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
        focusVisible: e.matches(':focus-visible'),
      };
    }, FOCUSABLE);
    if (!focused) continue;
    if (visited.includes(focused.key)) break;
    visited.push(focused.key);
    const node = (await axTree()).find((n) => prop(n, 'focused') === true);
    const name = node?.name?.value?.trim();
    if (!name) problems.push(`${focused.key}: no accessible name (role ${node?.role?.value})`);
    if (!focused.ring || !focused.focusVisible) problems.push(`${focused.key}: no visible focus indicator`);
  }
  console.log(`Tab order: ${visited.join(' → ')}`);
  assert.deepEqual(visited, expected, 'Tab visits every enabled control once, in document order');
  assert.deepEqual(problems, []);
  for (const id of ['backend', 'task', 'labels', 'file-input', 'clear', 'export-csv', 'export-json', 'cache-refresh', 'cache-clear']) {
    assert.ok(visited.includes(id), `Tab reaches #${id}`);
  }
});

test('every control, progress bar and meter in the accessibility tree has a name', async () => {
  const roles = new Set(['button', 'combobox', 'textbox', 'checkbox', 'radio', 'link', 'slider', 'progressbar', 'meter', 'spinbutton', 'listbox', 'img', 'image']);
  const nodes = (await axTree()).filter((n) => roles.has(n.role?.value));
  const unnamed = nodes.filter((n) => !n.name?.value?.trim()).map((n) => `${n.role.value} #${n.backendDOMNodeId}`);
  const counts = {};
  for (const n of nodes) counts[n.role.value] = (counts[n.role.value] ?? 0) + 1;
  console.log(`named nodes: ${JSON.stringify(counts)}`);
  assert.ok(counts.progressbar >= 1 && counts.meter >= 4 && counts.combobox >= 2 && counts.image >= 4, JSON.stringify(counts));
  assert.deepEqual(unnamed, []);
});

/**
 * What does not fit the viewport: the document's scroll width, and every control,
 * meter, progress bar, label, heading or card that sticks out of the viewport or is
 * cut off by an ancestor that clips (overflow other than visible).
 */
function layoutReport() {
  return page.evaluate((sel) => {
    const doc = document.documentElement;
    const clipped = [];
    const check = (e, what) => {
      if (e.getClientRects().length === 0) return;
      const r = e.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) return;
      if (r.left < -0.5 || r.right > doc.clientWidth + 0.5) clipped.push(`${what} outside the viewport (${r.left.toFixed(0)}–${r.right.toFixed(0)})`);
      for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
        const s = getComputedStyle(a);
        if (s.overflowX === 'visible' && s.overflowY === 'visible') continue;
        const ar = a.getBoundingClientRect();
        if (r.left < ar.left - 0.5 || r.right > ar.right + 0.5) clipped.push(`${what} cut off by ${a.tagName.toLowerCase()}.${a.className}`);
      }
    };
    for (const e of document.querySelectorAll(`${sel}, meter, progress, label, .card, .badge, h1, h2`)) {
      check(e, `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.dataset.file ? `[${e.dataset.file}]` : ''}`);
    }
    for (const card of document.querySelectorAll('.card')) {
      if (card.scrollWidth > card.clientWidth + 1) clipped.push(`card ${card.dataset.file} content is ${card.scrollWidth - card.clientWidth}px wider than the card`);
    }
    return { scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, clipped };
  }, FOCUSABLE);
}

for (const [width, what] of [[375, 'phone width'], [640, '200 % zoom of a 1280 px window'], [320, '400 % zoom (WCAG reflow)']]) {
  test(`at ${width} px (${what}) nothing scrolls sideways and no control is cut off`, async () => {
    await page.setViewportSize({ width, height: 800 });
    const report = await layoutReport();
    fs.mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: path.join(OUT, `a11y-${width}.png`), fullPage: true });
    await page.setViewportSize({ width: 1000, height: 900 });
    assert.ok(report.scrollWidth <= report.clientWidth, `the document is ${report.scrollWidth}px wide in a ${report.clientWidth}px viewport`);
    assert.deepEqual(report.clipped, []);
  });
}

test('the layout check sees a control that does not fit (self-test)', async () => {
  await page.setViewportSize({ width: 375, height: 800 });
  await page.evaluate(() => {
    const b = Object.assign(document.createElement('button'), { id: 'too-wide', textContent: 'too wide' });
    b.style.width = '600px'; // CSSOM, allowed by the CSP
    document.querySelector('.actions').append(b);
  });
  try {
    const report = await layoutReport();
    assert.ok(report.scrollWidth > report.clientWidth);
    assert.ok(report.clipped.some((c) => c.startsWith('button#too-wide outside the viewport')), report.clipped.join('; '));
  } finally {
    await page.evaluate(() => document.getElementById('too-wide').remove());
    await page.setViewportSize({ width: 1000, height: 900 });
  }
});

test('no error was logged', () => {
  assert.deepEqual(errors, []);
});
