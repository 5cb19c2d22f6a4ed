// Tests of config.mjs, the Node host's wasi:config/store over its `--config` flags, and of the
// flags themselves: `npm test` in deploy/node, or `node --test config.test.mjs` with the Node.js
// that `npm ci` installs (tests/platforms.rs runs them). The last one starts server.mjs with the
// todo component (the default build, or $TODO_NODE_COMPONENT) and asks it which accounts mode it
// read.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { configFromEnv, configImports, parseConfig } from './config.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

test('get answers a value that was set, and none for a key that was not', () => {
  const { get } = configImports(parseConfig(['accounts=optional']))['wasi:config/store'];
  assert.deepEqual(get('accounts'), { tag: 'ok', val: 'optional' });
  assert.deepEqual(get('session_ttl'), { tag: 'ok', val: undefined });
});

test('get-all answers every pair in the order given, and nothing without flags', () => {
  const store = configImports(parseConfig(['accounts=required', 'session_ttl=60']));
  assert.deepEqual(store['wasi:config/store'].getAll(), {
    tag: 'ok',
    val: [
      ['accounts', 'required'],
      ['session_ttl', '60'],
    ],
  });
  const empty = configImports(parseConfig([]))['wasi:config/store'];
  assert.deepEqual(empty.getAll(), { tag: 'ok', val: [] });
  assert.deepEqual(empty.get('accounts'), { tag: 'ok', val: undefined });
});

test('a key given twice keeps its last value; a value may hold = or be empty', () => {
  const config = parseConfig(['accounts=off', 'accounts=optional', 'note=a=b', 'empty=']);
  assert.deepEqual([...config], [
    ['accounts', 'optional'],
    ['note', 'a=b'],
    ['empty', ''],
  ]);
});

test('an entry not KEY=VALUE, or a key outside the rule, is refused naming the flag', () => {
  assert.throws(() => parseConfig(['accounts']), /^Error: --config accounts: expected KEY=VALUE$/);
  for (const key of ['Accounts', '', '1st', 'with-dash', 'with.dot']) {
    assert.throws(() => parseConfig([`${key}=x`]), /--config .*: the key must be lowercase/, key);
  }
  assert.throws(() => parseConfig(['x'], 'TODO_NODE_CONFIG'), /^Error: TODO_NODE_CONFIG x:/);
});

test('TODO_NODE_CONFIG is a comma-separated list of KEY=VALUE', () => {
  assert.deepEqual(configFromEnv(undefined), []);
  assert.deepEqual(configFromEnv(''), []);
  assert.deepEqual(configFromEnv('accounts=optional,session_ttl=60,'), [
    'accounts=optional',
    'session_ttl=60',
  ]);
});

test('server.mjs refuses a malformed --config before it listens', () => {
  const run = spawnSync(
    process.execPath,
    [path.join(HERE, 'server.mjs'), '--listen', '127.0.0.1:0', '--config', 'accounts'],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(run.status, 1, run.stderr);
  assert.match(run.stderr, /--config accounts: expected KEY=VALUE/);
  assert.doesNotMatch(run.stdout, /Serving HTTP/);
});

test('the todo component reads its accounts mode from --config', async () => {
  const session = async (flags) => {
    const child = spawn(process.execPath, [
      path.join(HERE, 'server.mjs'),
      '--listen',
      '127.0.0.1:0',
      '--store',
      ':memory:',
      ...flags,
    ]);
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    try {
      const reader = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      const { value: banner = '' } = await reader.next();
      const base = /^Serving HTTP on (http:\/\/[^/]+)\//.exec(banner)?.[1];
      assert.ok(base, `no start-up line: ${banner}; stderr:\n${stderr}`);
      const response = await fetch(`${base}/api/session`);
      return { banner, status: response.status, body: await response.json() };
    } finally {
      child.kill('SIGKILL');
    }
  };
  const optional = await session(['--config', 'accounts=optional']);
  assert.match(optional.banner, /, config: accounts[,)]/, 'the banner names the keys');
  assert.deepEqual([optional.status, optional.body], [200, { mode: 'optional', user: null }]);
  // No value: accounts are off, and the account routes do not exist.
  const off = await session([]);
  assert.equal(off.status, 404, JSON.stringify(off.body));
});
