// Tests of keyvalue.mjs, the Node host's wasi:keyvalue over SQLite, and of what it promises the
// server: `npm test` in deploy/node, or `node --test keyvalue.test.mjs` with the Node.js that
// `npm ci` installs (tests/platforms.rs runs them). Most run on an in-memory database; the last
// ones on a file, with real processes: two that increment one counter at once, and server.mjs
// killed and started again (it serves the todo component: the default build, or
// $TODO_NODE_COMPONENT). The API suite covers the store end to end through the component.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { IN_MEMORY, LIST_PAGE_SIZE, SqliteStore, keyvalueImports } from './keyvalue.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const bytes = (text) => new TextEncoder().encode(text);
const text = (value) => new TextDecoder().decode(value);

function open(store = new SqliteStore(IN_MEMORY), name = 'default') {
  const imports = keyvalueImports(store);
  const { val: bucket } = imports['wasi:keyvalue/store'].open(name);
  return { bucket, imports, store };
}

test('what one instance writes another instance reads', () => {
  const store = new SqliteStore(IN_MEMORY);
  open(store).bucket.set('todo/1', bytes('a'));
  const { val } = open(store).bucket.get('todo/1');
  assert.equal(text(val), 'a');
  assert.equal(open(store, 'other').bucket.get('todo/1').val, undefined);
});

test('a stored value is a copy, not a view of the caller\'s bytes', () => {
  const { bucket } = open();
  const value = bytes('abc');
  bucket.set('k', value);
  value[0] = 0x7a;
  assert.equal(text(bucket.get('k').val), 'abc');
});

test('increment starts at zero, stores decimal text, and refuses a value that is no counter', () => {
  const { bucket, imports } = open();
  const { increment } = imports['wasi:keyvalue/atomics'];
  assert.deepEqual(increment(bucket, 'meta/next-id', 1n), { tag: 'ok', val: 1n });
  assert.deepEqual(increment(bucket, 'meta/next-id', 41n), { tag: 'ok', val: 42n });
  assert.equal(text(bucket.get('meta/next-id').val), '42');
  bucket.set('title', bytes('milk'));
  const refused = increment(bucket, 'title', 1n);
  assert.equal(refused.tag, 'err');
  assert.equal(refused.val.tag, 'other');
  assert.match(refused.val.val, /does not hold a counter/);
  bucket.set('big', bytes('18446744073709551615'));
  assert.equal(increment(bucket, 'big', 1n).tag, 'err', 'u64 overflow is an error');
});

test('list-keys pages through every key once, in the order written; past the end is empty', () => {
  const { bucket } = open();
  const count = LIST_PAGE_SIZE * 2 + 5;
  const keys = Array.from({ length: count }, (_, i) => `k/${String(i).padStart(5, '0')}`);
  for (const key of [...keys].reverse()) {
    bucket.set(key, bytes('v'));
  }
  const listed = [];
  let cursor;
  let pages = 0;
  do {
    const { val } = bucket.listKeys(cursor);
    listed.push(...val.keys);
    cursor = val.cursor;
    pages += 1;
  } while (cursor !== undefined);
  // Rowid order: the order the keys were first written, as todo-host's SQLite backend lists them.
  assert.deepEqual(listed, [...keys].reverse());
  assert.equal(pages, 3);
  assert.deepEqual(bucket.listKeys(BigInt(count + 10)).val, { keys: [], cursor: undefined });
});

test('batch calls get, set and delete many keys, and answer a missing key with nothing', () => {
  const { bucket, imports } = open();
  const { getMany, setMany, deleteMany } = imports['wasi:keyvalue/batch'];
  setMany(bucket, [['a', bytes('1')], ['b', bytes('2')]]);
  const got = getMany(bucket, ['a', 'missing', 'b']).val;
  assert.equal(got.length, 3);
  assert.deepEqual([got[0][0], text(got[0][1])], ['a', '1']);
  assert.equal(got[1], undefined);
  assert.deepEqual([got[2][0], text(got[2][1])], ['b', '2']);
  deleteMany(bucket, ['a', 'missing']);
  assert.equal(bucket.exists('a').val, false);
  assert.equal(bucket.exists('b').val, true);
});

test('every open hands out a new bucket object', () => {
  const store = new SqliteStore(IN_MEMORY);
  assert.notEqual(open(store).bucket, open(store).bucket);
});

test('a cursor stays right when keys before it are deleted between pages', () => {
  const { bucket } = open();
  const keys = Array.from({ length: LIST_PAGE_SIZE + 10 }, (_, i) => `k/${i}`);
  for (const key of keys) {
    bucket.set(key, bytes('v'));
  }
  const first = bucket.listKeys(undefined).val;
  assert.equal(first.keys.length, LIST_PAGE_SIZE);
  // An offset would now skip the first ten keys of the next page.
  for (const key of first.keys.slice(0, 10)) {
    bucket.delete(key);
  }
  const second = bucket.listKeys(first.cursor).val;
  assert.deepEqual(second, { keys: keys.slice(LIST_PAGE_SIZE), cursor: undefined });
});

test('set-many is one transaction: a pair that fails leaves none of the others written', () => {
  const { bucket, imports } = open();
  const { setMany } = imports['wasi:keyvalue/batch'];
  bucket.set('a', bytes('old'));
  // A value the table refuses (NOT NULL), after one it would take.
  const failed = setMany(bucket, [['a', bytes('new')], ['b', null]]);
  assert.equal(failed.tag, 'err');
  assert.match(failed.val.val, /set-many of 2 keys from 'a' in bucket 'default'/);
  assert.equal(text(bucket.get('a').val), 'old');
  assert.equal(bucket.exists('b').val, false);
});

/** A fresh folder for a store file, removed when the test ends. */
function tempDir(t) {
  const dir = mkdtempSync(path.join(tmpdir(), 'todo-node-kv-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('what one store writes to a file, a store opened on it later reads', (t) => {
  const file = path.join(tempDir(t), 'todo.db');
  const first = new SqliteStore(file);
  const before = open(first);
  before.bucket.set('todo/1', bytes('a'));
  before.imports['wasi:keyvalue/atomics'].increment(before.bucket, 'meta/next-id', 5n);
  first.close();
  const again = new SqliteStore(file);
  t.after(() => again.close());
  assert.equal(text(open(again).bucket.get('todo/1').val), 'a');
  assert.equal(again.summary(), `SQLite at ${file}`);
  const { bucket, imports } = open(again);
  assert.deepEqual(imports['wasi:keyvalue/atomics'].increment(bucket, 'meta/next-id', 1n), {
    tag: 'ok',
    val: 6n,
  });
});

/**
 * Lines from `child`'s stdout, one at a time; `next()` fails, with what it printed on stderr,
 * if it exits or stays silent for `ms`.
 */
function lines(child, what, ms = 120_000) {
  const reader = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  return {
    async next() {
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} said nothing for ${ms} ms`)), ms);
      });
      try {
        const { value, done } = await Promise.race([reader.next(), timeout]);
        if (done) {
          await once(child, 'close');
          throw new Error(`${what} exited (${child.exitCode}) first; its stderr:\n${stderr}`);
        }
        return value;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

test('two processes incrementing one counter at once, on one file, get distinct values', async (t) => {
  const file = path.join(tempDir(t), 'todo.db');
  const PER_PROCESS = 500;
  // Each opens the store, says so, waits for the word on stdin, then increments, pausing up to a
  // millisecond after each: back to back, one process would take the write lock again at once
  // while the other sleeps in SQLite's busy handler, and they would hardly interleave.
  const script = `
    import { SqliteStore } from ${JSON.stringify(new URL('./keyvalue.mjs', import.meta.url).href)};
    import { once } from 'node:events';
    const store = new SqliteStore(${JSON.stringify(file)});
    console.log('ready');
    await once(process.stdin, 'data');
    const values = [];
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < ${PER_PROCESS}; i++) {
      values.push(String(store.increment('default', 'meta/next-id', 1n)));
      Atomics.wait(pause, 0, 0, Math.random());
    }
    console.log(JSON.stringify(values));
    store.close();
    process.exit(0);
  `;
  const children = [0, 1].map((i) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script]);
    t.after(() => child.kill('SIGKILL'));
    return { child, out: lines(child, `incrementer ${i}`) };
  });
  for (const { out } of children) {
    assert.equal(await out.next(), 'ready');
  }
  for (const { child } of children) {
    child.stdin.write('go\n');
  }
  const got = await Promise.all(
    children.map(async ({ out }) => JSON.parse(await out.next()).map(Number)),
  );
  const all = got.flat().sort((a, b) => a - b);
  const expected = Array.from({ length: 2 * PER_PROCESS }, (_, i) => i + 1);
  assert.deepEqual(all, expected, 'each value once');
  // How much the two interleaved: how often one process's next value was not its previous + 1.
  const jumps = got.map((values) => values.filter((v, i) => i && v !== values[i - 1] + 1).length);
  t.diagnostic(`jumps per process (the other one incremented in between): ${jumps.join(', ')}`);
  // At least one switch: otherwise one ran wholly before the other, and nothing was tested.
  assert.ok(jumps.some((n) => n > 0), `the two did not run at once (jumps ${jumps})`);
});

/** server.mjs on a free port with its store in `file`, and the base URL it serves. */
async function startServer(t, file) {
  const child = spawn(process.execPath, [
    path.join(HERE, 'server.mjs'),
    '--listen',
    '127.0.0.1:0',
    '--store',
    file,
  ]);
  t.after(() => child.kill('SIGKILL'));
  const banner = await lines(child, 'server.mjs').next();
  const address = /^Serving HTTP on (http:\/\/[^/]+)\//.exec(banner);
  assert.ok(address, `no start-up line: ${banner}`);
  assert.match(banner, /\(store: SQLite at /);
  return { child, base: address[1] };
}

test('todos survive server.mjs being killed and started again on the same file', async (t) => {
  const file = path.join(tempDir(t), 'todo.db');
  const first = await startServer(t, file);
  const created = await fetch(`${first.base}/todos`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'survive a restart' }),
  });
  assert.equal(created.status, 201, await created.clone().text());
  const { id } = await created.json();
  // SIGKILL: no shutdown code runs; what was acknowledged must already be in the file.
  first.child.kill('SIGKILL');
  await once(first.child, 'close');

  const again = await startServer(t, file);
  const read = await fetch(`${again.base}/todos/${id}`);
  assert.equal(read.status, 200);
  assert.equal((await read.json()).title, 'survive a restart');
  const next = await fetch(`${again.base}/todos`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'after' }),
  });
  assert.equal((await next.json()).id, id + 1, 'the id counter survived too');
});
