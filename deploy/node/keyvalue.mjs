// wasi:keyvalue@0.2.0-draft (store, atomics, batch) for a component transpiled by jco, over one
// SQLite file through Node.js's built-in `node:sqlite` (Node.js >= 22.13; package.json pins one):
// durable, like todo-host's default store (host/src/kv/sqlite.rs), and in the same layout.
//
// One table, `kv(bucket, key, value)` with `PRIMARY KEY (bucket, key)`; writes are upserts.
// Settings, and what they promise:
// * `journal_mode = WAL`: readers never block the writer, and several processes can share one
//   file;
// * `synchronous = NORMAL`: a commit has reached the WAL file in the OS before the call returns,
//   so an acknowledged write survives the process being killed (`kill -9`). After a power loss
//   the last commits may be gone, but the file is never corrupt; `FULL` would add an fsync to
//   every commit for that case;
// * `busy_timeout`: a write waits up to BUSY_TIMEOUT_MS for another process's write instead of
//   failing with `database is locked`. `node:sqlite` is synchronous, so that wait blocks this
//   process's one thread: it only happens when another process writes the same file.
//
// `increment` is one statement, an upsert whose new value a SQL function computes from the old
// one: SQLite runs it under the write lock, so concurrent increments, from this process or any
// other on the same file, never lose one. Counters are stored as decimal text, as todo-host
// stores them, so a component that reads a counter with `get` sees the same bytes on both hosts.
//
// `list-keys` pages by rowid, as todo-host's SQLite backend does: the cursor is the last rowid
// returned, so a page costs one index seek plus the page, and a key present for the whole
// listing is listed exactly once even while other keys come and go (an offset would skip one
// after a delete). Keys come in the order they were first written, not sorted.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/** Keys per `list-keys` page: the page size todo-host's backends use. */
export const LIST_PAGE_SIZE = 1000;

/** How long a write waits for another process's write lock: todo-host's `BUSY_TIMEOUT`. */
export const BUSY_TIMEOUT_MS = 10_000;

/** The path that asks SQLite for a database in this process's memory, gone on exit. */
export const IN_MEMORY = ':memory:';

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS kv (
    bucket TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (bucket, key)
  );
  -- Orders each bucket's keys by rowid: the list-keys cursor is the last rowid returned.
  CREATE INDEX IF NOT EXISTS kv_bucket ON kv (bucket);
`;

const U64_MAX = (1n << 64n) - 1n;
/** SQLite's largest rowid: a cursor beyond it is past the end. */
const I64_MAX = (1n << 63n) - 1n;

/**
 * The counter after adding `delta` (decimal text) to `current` (the stored bytes, or null when
 * the key is absent), as the bytes to store. Runs inside the increment's statement, under the
 * write lock; what it throws fails that statement and rolls it back.
 */
function addToCounter(key, current, delta) {
  let value = 0n;
  if (current !== null) {
    const text = Buffer.from(current).toString('utf8');
    if (!/^[0-9]{1,20}$/.test(text)) {
      throw new Error(`'${key}' does not hold a counter`);
    }
    value = BigInt(text);
  }
  const next = value + BigInt(delta);
  if (next > U64_MAX) {
    throw new Error(`'${key}' would overflow a u64 (${value} + ${delta})`);
  }
  return Buffer.from(next.toString(), 'utf8');
}

/** Buckets of keys and bytes in one SQLite file (or in memory: `new SqliteStore(IN_MEMORY)`). */
export class SqliteStore {
  #db;
  #path;
  #statements;

  /** Opens (creating it, and its folder, if need be) the SQLite file at `file`. */
  constructor(file) {
    this.#path = file;
    try {
      if (file !== IN_MEMORY) {
        mkdirSync(path.dirname(file), { recursive: true });
      }
      this.#db = new DatabaseSync(file);
      const db = this.#db;
      // First, so that even the switch to WAL waits for a process that holds the file.
      db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      const { journal_mode: mode } = db.prepare('PRAGMA journal_mode = WAL').get();
      if (file !== IN_MEMORY && mode !== 'wal') {
        throw new Error(`SQLite keeps journal_mode ${mode} instead of wal`);
      }
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec(SCHEMA);
      // `directOnly`: only our statements may call it, not a trigger or view in the file.
      db.function('todo_add_to_counter', { deterministic: true, directOnly: true }, addToCounter);
      this.#statements = {
        get: db.prepare('SELECT value FROM kv WHERE bucket = ? AND key = ?'),
        set: db.prepare(
          `INSERT INTO kv (bucket, key, value) VALUES (?, ?, ?)
           ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value`,
        ),
        delete: db.prepare('DELETE FROM kv WHERE bucket = ? AND key = ?'),
        exists: db.prepare('SELECT 1 FROM kv WHERE bucket = ? AND key = ?'),
        listKeys: db.prepare(
          `SELECT rowid, key FROM kv WHERE bucket = ? AND rowid > ?
           ORDER BY rowid LIMIT ${LIST_PAGE_SIZE}`,
        ),
        increment: db.prepare(
          `INSERT INTO kv (bucket, key, value) VALUES (?1, ?2, todo_add_to_counter(?2, NULL, ?3))
           ON CONFLICT (bucket, key) DO UPDATE SET value = todo_add_to_counter(?2, value, ?3)
           RETURNING value`,
        ),
      };
    } catch (err) {
      this.#db?.close();
      throw new Error(`--store ${file}: ${err.message}`);
    }
  }

  /** What the start-up line says about the store. */
  summary() {
    return this.#path === IN_MEMORY ? 'SQLite in memory' : `SQLite at ${this.#path}`;
  }

  /** Closes the file; the store answers nothing after. */
  close() {
    this.#db.close();
  }

  get(bucket, key) {
    const row = this.#statements.get.get(bucket, key);
    return row === undefined ? undefined : bytes(row.value);
  }

  set(bucket, key, value) {
    this.#statements.set.run(bucket, key, value);
  }

  delete(bucket, key) {
    this.#statements.delete.run(bucket, key);
  }

  exists(bucket, key) {
    return this.#statements.exists.get(bucket, key) !== undefined;
  }

  /** One page of keys after the rowid `cursor`, and the cursor of the next page if it is full. */
  listKeys(bucket, cursor) {
    // Rowids start at 1, so 0 means "from the start".
    const after = cursor === undefined ? 0n : cursor > I64_MAX ? I64_MAX : cursor;
    const rows = this.#statements.listKeys.all(bucket, after);
    const full = rows.length === LIST_PAGE_SIZE;
    return {
      keys: rows.map((row) => row.key),
      cursor: full ? BigInt(rows[rows.length - 1].rowid) : undefined,
    };
  }

  /** Adds `delta` to the counter at `key` (absent: 0) in one statement; returns the sum. */
  increment(bucket, key, delta) {
    const { value } = this.#statements.increment.get(bucket, key, delta.toString());
    return BigInt(Buffer.from(value).toString('utf8'));
  }

  /** The values of `keys`, all read from one snapshot; `undefined` for a missing key. */
  getMany(bucket, keys) {
    return this.#transaction('BEGIN', () => keys.map((key) => this.get(bucket, key)));
  }

  /** Sets every pair in one transaction: all of them or, on an error, none. */
  setMany(bucket, keyValues) {
    this.#transaction('BEGIN IMMEDIATE', () => {
      for (const [key, value] of keyValues) {
        this.set(bucket, key, value);
      }
    });
  }

  /** Deletes every key in one transaction: all of them or, on an error, none. */
  deleteMany(bucket, keys) {
    this.#transaction('BEGIN IMMEDIATE', () => {
      for (const key of keys) {
        this.delete(bucket, key);
      }
    });
  }

  /**
   * Runs `work` in a transaction that `begin` starts: `BEGIN IMMEDIATE` takes the write lock
   * first, so a write transaction waits its turn (busy_timeout) rather than failing half-way
   * when another process wrote since it read.
   */
  #transaction(begin, work) {
    this.#db.exec(begin);
    try {
      const result = work();
      this.#db.exec('COMMIT');
      return result;
    } catch (err) {
      if (this.#db.isTransaction) {
        this.#db.exec('ROLLBACK');
      }
      throw err;
    }
  }
}

/** A stored value as the bytes jco hands the guest. */
function bytes(value) {
  return typeof value === 'string' ? new TextEncoder().encode(value) : value;
}

const ok = (val) => ({ tag: 'ok', val });

/**
 * `fn()` as a `result`: what it throws becomes the `other` case of `wasi:keyvalue/store.error`,
 * naming the call, the key and the bucket. The one place a store error reaches the guest.
 */
function attempt(what, bucket, fn) {
  try {
    return ok(fn());
  } catch (err) {
    const message = `${what} in bucket '${bucket}': ${err.message}`;
    console.error(`keyvalue: ${message}`);
    return { tag: 'err', val: { tag: 'other', val: message } };
  }
}

/** The first key of a batch, to name it in an error. */
const batch = (keys) => (keys.length ? `of ${keys.length} keys from '${keys[0]}'` : 'of no keys');

/**
 * The import object entries for `wasi:keyvalue/{store,atomics,batch}` over `store`, keyed as
 * jco's `instantiate` asks for them.
 */
export function keyvalueImports(store) {
  // A fresh `Bucket` object per `open`: jco records an instance's resource handle on the object,
  // so one object handed to two instances would carry the first one's handle into the second.
  class Bucket {
    #name;

    constructor(name) {
      this.#name = name;
    }

    static nameOf(bucket) {
      return bucket.#name;
    }

    get(key) {
      return attempt(`get of '${key}'`, this.#name, () => store.get(this.#name, key));
    }

    set(key, value) {
      return attempt(`set of '${key}'`, this.#name, () => store.set(this.#name, key, value));
    }

    delete(key) {
      return attempt(`delete of '${key}'`, this.#name, () => store.delete(this.#name, key));
    }

    exists(key) {
      return attempt(`exists of '${key}'`, this.#name, () => store.exists(this.#name, key));
    }

    listKeys(cursor) {
      return attempt('list-keys', this.#name, () => store.listKeys(this.#name, cursor));
    }
  }

  return {
    'wasi:keyvalue/store': {
      Bucket,
      open(identifier) {
        return ok(new Bucket(identifier));
      },
    },
    'wasi:keyvalue/atomics': {
      increment(bucket, key, delta) {
        const name = Bucket.nameOf(bucket);
        return attempt(`increment of '${key}'`, name, () => store.increment(name, key, delta));
      },
    },
    'wasi:keyvalue/batch': {
      getMany(bucket, keys) {
        const name = Bucket.nameOf(bucket);
        return attempt(`get-many ${batch(keys)}`, name, () =>
          store.getMany(name, keys).map((value, i) =>
            value === undefined ? undefined : [keys[i], value],
          ),
        );
      },
      setMany(bucket, keyValues) {
        const name = Bucket.nameOf(bucket);
        const keys = keyValues.map(([key]) => key);
        return attempt(`set-many ${batch(keys)}`, name, () => store.setMany(name, keyValues));
      },
      deleteMany(bucket, keys) {
        const name = Bucket.nameOf(bucket);
        return attempt(`delete-many ${batch(keys)}`, name, () => store.deleteMany(name, keys));
      },
    },
  };
}
