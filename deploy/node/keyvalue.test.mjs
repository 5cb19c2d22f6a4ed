// Unit tests of keyvalue.mjs, the Node host's wasi:keyvalue: `node --test` in deploy/node
// (tests/platforms.rs runs them). The API suite covers it end to end through the component.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LIST_PAGE_SIZE, MemoryStore, keyvalueImports } from './keyvalue.mjs';

const bytes = (text) => new TextEncoder().encode(text);
const text = (value) => new TextDecoder().decode(value);

function open(store = new MemoryStore(), name = 'default') {
  const imports = keyvalueImports(store);
  const { val: bucket } = imports['wasi:keyvalue/store'].open(name);
  return { bucket, imports, store };
}

test('what one instance writes another instance reads', () => {
  const store = new MemoryStore();
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

test('list-keys pages through every key in order, and a cursor past the end is empty', () => {
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
  assert.deepEqual(listed, keys);
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
  const store = new MemoryStore();
  assert.notEqual(open(store).bucket, open(store).bucket);
});
