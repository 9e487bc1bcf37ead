// Debian's nginx, Caddy and Apache on 127.0.0.1 for the site tests: a free port, a
// configuration and every runtime path (pid, logs, temp folders) in a temporary
// folder, so they need no root beyond what the machine gives and leave nothing behind.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

function executable(name, candidates) {
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`${name} is not installed: run \`make setup\` (apt-get install -y ${name})`);
  return found;
}

/** The emitted `_headers`: `{urlPath: {name: value}}` (blocks of a path and indented `Name: value` lines). */
export function parseHeadersFile(text) {
  const rules = {};
  let current = null;
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    if (!/^\s/.test(line)) {
      current = rules[line.trim()] = {};
    } else {
      const i = line.indexOf(':');
      current[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
  }
  return rules;
}

/** Runs a server in the foreground until `close()`; `ready` when its port answers. */
async function runServer({ exe, args, dir, port, env = {}, logFile }) {
  const proc = spawn(exe, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const log = () => `${stderr}${logFile && fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''}`;
  await waitForPort(port, proc, log);
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    close: async () => {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Caddy serving `siteDir` at `prefix` with the emitted snippet. */
export async function startCaddy({ prefix, siteDir, snippet }) {
  const exe = executable('caddy', ['/usr/bin/caddy']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-caddy-'));
  const port = await freePort();
  const conf = `{
\tadmin off
\tauto_https off
}
http://127.0.0.1:${port} {
\thandle_path ${prefix}* {
\t\troot * ${siteDir}
\t\timport ${snippet}
\t\tfile_server
\t}
}
`;
  const confPath = path.join(dir, 'Caddyfile');
  fs.writeFileSync(confPath, conf);
  const env = { XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir, HOME: dir };
  const check = spawnSync(exe, ['validate', '--config', confPath, '--adapter', 'caddyfile'], { encoding: 'utf8', env: { ...process.env, ...env } });
  if (check.status !== 0) throw new Error(`caddy validate failed:\n${check.stderr}\n${conf}`);
  return runServer({ exe, args: ['run', '--config', confPath, '--adapter', 'caddyfile'], dir, port, env });
}

/**
 * Apache serving `siteDir` at `prefix` with the site's own .htaccess (AllowOverride All).
 * As root its children run as www-data: the folders are opened to it (the test's own
 * temporary folders, mode 0700 when made).
 */
export async function startApache({ prefix, siteDir }) {
  const exe = executable('apache2', ['/usr/sbin/apache2']);
  const modules = '/usr/lib/apache2/modules';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-apache-'));
  const port = await freePort();
  const root = process.getuid?.() === 0;
  if (root) {
    for (let d = siteDir; d !== path.dirname(d); d = path.dirname(d)) fs.chmodSync(d, fs.statSync(d).mode | 0o055);
    spawnSync('chmod', ['-R', 'a+rX', siteDir]);
  }
  const load = ['mpm_event', 'authz_core', 'mime', 'headers', 'dir', 'alias']
    .map((m) => `LoadModule ${m}_module ${modules}/mod_${m}.so`).join('\n');
  const conf = `${load}
ServerRoot ${dir}
ServerName 127.0.0.1
Listen 127.0.0.1:${port}
PidFile ${dir}/httpd.pid
ErrorLog ${dir}/error.log
${root ? 'User www-data\nGroup www-data' : ''}
TypesConfig /etc/mime.types
Alias ${prefix} ${siteDir}/
<Directory ${siteDir}>
  AllowOverride All
  Require all granted
</Directory>
`;
  const confPath = path.join(dir, 'httpd.conf');
  fs.writeFileSync(confPath, conf);
  const check = spawnSync(exe, ['-f', confPath, '-t'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`apache2 -t failed:\n${check.stderr}\n${conf}`);
  return runServer({ exe, args: ['-f', confPath, '-DFOREGROUND'], dir, port, logFile: path.join(dir, 'error.log') });
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
  const exe = executable('nginx', ['/usr/sbin/nginx', '/usr/bin/nginx']);
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
