// The host page's side of the widget example: listen to its events (no inline script).
const log = document.getElementById('log');
const write = (text) => log.append(Object.assign(document.createElement('li'), { textContent: text }));
document.addEventListener('kpl-ready', (e) => write(`ready: ${e.detail.title}`));
document.addEventListener('kpl-result', (e) => {
  const { file, label, method, scores } = e.detail;
  write(`kpl-result: ${file} → ${label} (${method}; scores ${scores.map((s) => s.toFixed(3)).join(', ')})`);
});
document.addEventListener('kpl-error', (e) => write(`kpl-error: ${e.detail.file ?? ''} ${e.detail.message}`));
