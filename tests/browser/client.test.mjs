// KplClient (www/protocol.js) replacing its worker, in Node with scripted workers, so
// that each race is played in a fixed order: a thread change while a crashed worker is
// being replaced, a thread change in the middle of a batch, and a pool thread's crash
// (reported on the side channel `watch`, while the worker itself never answers again).
// The real thing in Chromium: tests/browser/recovery.test.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { KplClient, POOL_CRASH_GRACE_MS } from '../../www/protocol.js';

/** A worker that records what it is sent; the test answers for it. */
class ScriptedWorker extends EventTarget {
  constructor(threads, restarted) {
    super();
    this.threads = threads;
    this.restarted = restarted;
    this.terminated = false;
    this.inbox = [];
    this.waiters = [];
    this.onCrash = null;
  }

  postMessage(message) {
    if (this.terminated) return;
    const waiter = this.waiters.shift();
    if (waiter) waiter(message);
    else this.inbox.push(message);
  }

  /** The next message the client sends this worker. */
  next() {
    if (this.inbox.length) return Promise.resolve(this.inbox.shift());
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  reply(data) {
    if (!this.terminated) this.dispatchEvent(new MessageEvent('message', { data }));
  }

  terminate() {
    this.terminated = true;
  }
}

/** A client as `KplClient.start` makes it, over scripted workers (`workers`: every one started). */
function scriptedClient(threads) {
  const workers = [];
  let asked = threads;
  const make = (restarted) => {
    const w = new ScriptedWorker(asked, restarted);
    workers.push(w);
    return w;
  };
  const client = new KplClient(make(false), {
    restart: () => make(true),
    respawn: (n) => {
      asked = n;
      return make(false);
    },
    watch: (worker, onCrash) => {
      worker.onCrash = onCrash;
      return () => {
        worker.onCrash = null;
      };
    },
  });
  const restarts = [];
  client.onRestart = (e) => restarts.push(e);
  return { client, workers, restarts, last: () => workers[workers.length - 1] };
}

const LOAD_RESULT = { backend: 'wasm', backendSettled: true, backendNote: '', reused: false };
const items = (names) => names.map((name) => ({ name, data: new ArrayBuffer(4) }));
const embedded = (name, worker) => ({ name, embedding: new Float32Array([worker]), ms: 1 });

/** Answers a load (and checks it is one). */
async function answerLoad(worker, expect = {}) {
  const req = await worker.next();
  assert.equal(req.type, 'load');
  for (const [k, v] of Object.entries(expect)) assert.deepEqual(req[k], v, k);
  worker.reply({ id: req.id, type: 'result', result: LOAD_RESULT });
  return req;
}

/** Answers an embed-images part: each named file embedded, with its progress (and entry). */
async function answerPart(worker, expectNames, tag, { crashOn } = {}) {
  const req = await worker.next();
  assert.equal(req.type, 'embed-images');
  assert.deepEqual(req.items.map((i) => i.name), expectNames);
  const results = [];
  for (const { name } of req.items) {
    if (name === crashOn) {
      const error = `${name}: the WebAssembly module crashed on this file (unreachable)`;
      results.push({ name, error, crashed: true, ms: 1 });
      worker.reply({ id: req.id, type: 'result', result: { results, crashed: { file: name, message: error }, backend: 'wasm', backendNote: '', ms: 2 } });
      return req;
    }
    const item = embedded(name, tag);
    results.push(item);
    worker.reply({ id: req.id, type: 'progress', stage: 'embed', unit: 'images', file: name, loaded: results.length, total: req.items.length, item });
  }
  worker.reply({ id: req.id, type: 'result', result: { results, backend: 'wasm', backendNote: '', ms: 2 } });
  return req;
}

const summary = (result) => result.results.map((r) => [r.name, r.embedding ? r.embedding[0] : r.error]);

test('setThreads while a crashed worker is being replaced: the new count wins, the batch goes on in its worker, later restarts keep it', { timeout: 10000 }, async () => {
  const { client, workers, restarts, last } = scriptedClient(undefined);
  const loading = client.load('model/', undefined, { backend: 'auto' });
  await answerLoad(workers[0]);
  await loading;
  const batch = client.embedImages(items(['a', 'b', 'c', 'd']));
  await answerPart(workers[0], ['a', 'b', 'c', 'd'], 0, { crashOn: 'b' });
  // The crash started a replacement, which is replaying the load...
  const replacement = last();
  assert.equal(workers.length, 2);
  assert.equal(replacement.restarted, true);
  const replay = await replacement.next();
  assert.equal(replay.type, 'load');
  // ...when the thread setting changes.
  client.setThreads(3);
  assert.equal(replacement.terminated, true, 'the replacement being set up is ended');
  const third = last();
  assert.equal(third.threads, 3);
  replacement.reply({ id: replay.id, type: 'result', result: LOAD_RESULT }); // too late: ignored
  await answerLoad(third, { base: 'model/', backend: 'auto', restoreBackend: undefined });
  await answerPart(third, ['c', 'd'], 2);
  const result = await batch;
  assert.deepEqual(summary(result).map(([n]) => n), ['a', 'b', 'c', 'd']);
  assert.equal(result.results[0].embedding[0], 0);
  assert.match(result.results[1].error, /^b: the WebAssembly module crashed on this file \(unreachable\); the module was restarted/);
  assert.deepEqual([result.results[2].embedding[0], result.results[3].embedding[0]], [2, 2]);
  assert.equal(result.crashes.length, 1);
  assert.equal(client.failure, null);
  assert.deepEqual(restarts.map((r) => [r.file, r.ok]), [['b', true]]);
  assert.equal(workers.length, 3, 'no other worker');

  // A later crash restarts with the count set, not the one before.
  const again = client.embedImages(items(['e', 'f']));
  await answerPart(third, ['e', 'f'], 2, { crashOn: 'e' });
  const fourth = last();
  assert.equal(workers.length, 4);
  assert.equal(fourth.threads, 3, 'the setting survives the restart');
  assert.equal(fourth.restarted, true);
  await answerLoad(fourth, { restoreBackend: 'wasm' });
  await answerPart(fourth, ['f'], 3);
  assert.deepEqual(summary(await again).map(([n, v]) => [n, typeof v]), [['e', 'string'], ['f', 'number']]);
});

test('setThreads in the middle of a batch: the files done are kept, the rest run in the new worker', { timeout: 10000 }, async () => {
  const { client, workers, last } = scriptedClient(2);
  const loading = client.load('model/');
  await answerLoad(workers[0]);
  await loading;
  const kb = client.loadKb('kb/x.kplkb');
  const kbReq = await workers[0].next();
  workers[0].reply({ id: kbReq.id, type: 'result', result: { task: 'x' } });
  await kb;
  const seen = [];
  const batch = client.embedImages(items(['a', 'b', 'c']), (p) => seen.push([p.file, p.loaded, p.total, 'item' in p]));
  const part = await workers[0].next();
  const a = embedded('a', 0);
  workers[0].reply({ id: part.id, type: 'progress', stage: 'embed', unit: 'images', file: 'a', loaded: 1, total: 3, item: a });
  client.setThreads(4);
  assert.equal(workers[0].terminated, true);
  const second = last();
  assert.equal(second.threads, 4);
  await answerLoad(second);
  const kbReplay = await second.next();
  assert.deepEqual([kbReplay.type, kbReplay.url], ['load-kb', 'kb/x.kplkb']);
  second.reply({ id: kbReplay.id, type: 'result', result: { task: 'x' } });
  await answerPart(second, ['b', 'c'], 1);
  const result = await batch;
  assert.deepEqual(summary(result), [['a', 0], ['b', 1], ['c', 1]]);
  assert.deepEqual(seen, [['a', 1, 3, false], ['b', 2, 3, false], ['c', 3, 3, false]], 'progress counts the whole batch, without the entries');
  assert.equal(result.crashes.length, 0);
});

test("a pool thread's crash (the worker never answers): the file in progress fails naming it, the others go on in a new worker", { timeout: 10000 }, async () => {
  const { client, workers, restarts, last } = scriptedClient(3);
  const loading = client.load('model/', undefined, { backend: 'wasm' });
  await answerLoad(workers[0]);
  await loading;
  const seen = [];
  const batch = client.embedImages(items(['a', 'b', 'c']), (p) => seen.push([p.file, p.loaded, p.total]));
  const part = await workers[0].next();
  workers[0].reply({ id: part.id, type: 'progress', stage: 'embed', unit: 'images', file: 'a', loaded: 1, total: 3, item: embedded('a', 0) });
  // b is in progress when a pool thread reports its crash; the worker stays silent.
  workers[0].onCrash('a thread of the WebAssembly pool crashed (RuntimeError: unreachable: panicked at x.rs:1:1: boom)');
  // A report for a worker already replaced is ignored (checked below: one restart).
  await new Promise((resolve) => setTimeout(resolve, POOL_CRASH_GRACE_MS + 50));
  assert.equal(workers[0].terminated, true);
  assert.equal(workers.length, 2);
  const second = last();
  assert.equal(second.restarted, true);
  assert.equal(second.threads, 3);
  await answerLoad(second, { restoreBackend: 'wasm' });
  await answerPart(second, ['c'], 1);
  const result = await batch;
  assert.deepEqual(summary(result).map(([n]) => n), ['a', 'b', 'c']);
  assert.equal(result.results[0].embedding[0], 0, "a's embedding from the first worker is kept");
  assert.match(result.results[1].error,
    /^b: the WebAssembly module crashed on this file \(a thread of the WebAssembly pool crashed \(RuntimeError: unreachable: panicked at x\.rs:1:1: boom\)\); the module was restarted/);
  assert.equal(result.results[1].crashed, true);
  assert.equal(result.results[2].embedding[0], 1);
  assert.deepEqual(restarts.map((r) => [r.file, r.ok]), [['b', true]]);
  assert.deepEqual(seen, [['a', 1, 3], ['b', 2, 3], ['c', 3, 3]], 'one progress per file, the crashed one included');

  // Outside a batch: the request fails with the crash, and the next one runs in a new worker.
  const text = client.embedText(['x']);
  const textReq = await second.next();
  assert.equal(textReq.type, 'embed-text');
  second.onCrash('a thread of the WebAssembly pool crashed (RuntimeError: unreachable: memory allocation of 8 bytes failed (out of memory))');
  await assert.rejects(text, /the WebAssembly module crashed \(a thread of the WebAssembly pool crashed .*out of memory/);
  const third = last();
  assert.equal(workers.length, 3);
  await answerLoad(third, { restoreBackend: 'wasm' });
  const next = client.embedText(['y']);
  const nextReq = await third.next();
  third.reply({ id: nextReq.id, type: 'result', result: { embeddings: [new Float32Array([1])], ms: 1 } });
  assert.equal((await next).embeddings.length, 1);
  workers[0].onCrash?.('late');
  assert.equal(workers.length, 3);
});

test('a pool crash while the replacement replays the load fails the client once (no restart loop)', { timeout: 10000 }, async () => {
  const { client, workers, restarts, last } = scriptedClient(2);
  const loading = client.load('model/');
  await answerLoad(workers[0]);
  await loading;
  const text = client.embedText(['x']);
  await workers[0].next();
  workers[0].onCrash('a thread of the WebAssembly pool crashed (RuntimeError: unreachable)');
  await assert.rejects(text, /crashed/);
  const second = last();
  await second.next(); // the replayed load, never answered
  second.onCrash('a thread of the WebAssembly pool crashed (RuntimeError: unreachable)');
  await new Promise((resolve) => setTimeout(resolve, POOL_CRASH_GRACE_MS + 50));
  assert.equal(workers.length, 2, 'no third worker');
  assert.equal(second.terminated, true);
  assert.match(client.failure?.message ?? '', /could not be restarted/);
  assert.deepEqual(restarts.map((r) => r.ok), [false]);
  await assert.rejects(client.embedText(['y']), /could not be restarted/);
});
