// Screenshots a `kpl eval --report DIR` page for the README, served under the
// dev server's strict Content-Security-Policy; fails if the page logs any error
// (a CSP violation included) or asks for anything outside its folder.
//
//   node scripts/screenshot-report.mjs REPORT_DIR OUT.png

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { CSP, launchBrowser } from '../tests/browser/helpers.mjs';

const TYPES = { '.html': 'text/html', '.css': 'text/css', '.svg': 'image/svg+xml', '.json': 'application/json' };

/** Serves `dir` on 127.0.0.1 (a free port) with the CSP; resolves { url, requests, close }. */
export async function serveReport(dir) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
    // Chromium asks for a favicon on its own; the report has none.
    if (name === 'favicon.ico') return res.writeHead(204).end();
    requests.push(name);
    const file = path.join(dir, name);
    if (!file.startsWith(path.resolve(dir)) || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(fs.readFileSync(file));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return { url, requests, close: () => new Promise((resolve) => server.close(resolve)) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir, out] = process.argv.slice(2);
  if (!dir || !out) {
    console.error('usage: node scripts/screenshot-report.mjs REPORT_DIR OUT.png');
    process.exit(2);
  }
  const server = await serveReport(path.resolve(dir));
  const browser = await launchBrowser({ viewport: { width: 1100, height: 900 }, webgpu: false });
  try {
    const page = await browser.context.newPage();
    const problems = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    page.on('pageerror', (e) => problems.push(String(e)));
    page.on('requestfailed', (r) => problems.push(`failed: ${r.url()}`));
    await page.goto(server.url, { waitUntil: 'networkidle' });
    if (problems.length) throw new Error(`the report has problems:\n${problems.join('\n')}`);
    await page.screenshot({ path: out, fullPage: true });
    console.log(`wrote ${out}`);
  } finally {
    await browser.close();
    await server.close();
  }
}
