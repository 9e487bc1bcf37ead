// Debian's nginx on 127.0.0.1 for the site test: a free port, a configuration and
// every runtime path (pid, logs, temp folders) in a temporary folder, so it needs
// no root beyond what the machine gives and leaves nothing behind.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export function nginxPath() {
  const found = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));
  if (!found) throw new Error('nginx is not installed: run `make setup` (apt-get install -y nginx)');
  return found;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, proc, log) {
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) throw new Error(`nginx exited with ${proc.exitCode}:\n${log()}`);
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => c.end(() => resolve(true)));
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nginx did not listen on ${port}:\n${log()}`);
}

/**
 * Starts nginx with `locations` (the text of the server block's location blocks)
 * and returns `{url, conf, close()}`.
 */
export async function startNginx(locations) {
  const exe = nginxPath();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-nginx-'));
  const port = await freePort();
  const temp = ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t === 'body' ? 'client_body' : t}_temp_path ${dir}/${t};`).join('\n');
  // As root, nginx's workers run as `nobody` unless told otherwise: the folders
  // the test made (mode 0700) stay readable by running them as the same user.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  const conf = `${user}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 64; }
http {
  access_log ${dir}/access.log;
${temp}
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
${locations}
  }
}
`;
  const confPath = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confPath, conf);
  const args = ['-e', path.join(dir, 'error.log'), '-p', dir, '-c', confPath];
  const check = spawnSync(exe, [...args, '-t'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx -t failed:\n${check.stderr}\n${conf}`);
  const proc = spawn(exe, [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const log = () => `${stderr}${fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : ''}`;
  await waitForPort(port, proc, log);
  return {
    url: `http://127.0.0.1:${port}`,
    conf,
    log,
    accessLog: () => fs.readFileSync(path.join(dir, 'access.log'), 'utf8'),
    close: async () => {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGQUIT');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
