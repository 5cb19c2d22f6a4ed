// wasi:keyvalue@0.2.0-draft (store, atomics, batch) for a component transpiled by jco: the
// imports it asks for, over one in-memory map per bucket that lives as long as this process.
//
// Every instance (one per request) opens the same maps, so what one request writes the next one
// reads; nothing survives a restart. Node.js runs each request to completion on one thread and
// these calls are synchronous, so a read-modify-write here (`increment`) cannot interleave with
// another request's: it is atomic without a lock.
//
// Counters are stored as decimal text, as todo-host stores them, so a component that reads a
// counter with `get` sees the same bytes on both hosts.

/** Keys per `list-keys` page: the page size todo-host's backends use. */
export const LIST_PAGE_SIZE = 1000;

/** The `error` variant of `wasi:keyvalue/store`. */
const other = (message) => ({ tag: 'err', val: { tag: 'other', val: message } });
const ok = (val) => ({ tag: 'ok', val });

/** Buckets by name, each a `Map` from key to bytes. */
export class MemoryStore {
  #buckets = new Map();

  /** The bucket `name`, created empty on first use. */
  bucket(name) {
    let bucket = this.#buckets.get(name);
    if (!bucket) {
      bucket = new Map();
      this.#buckets.set(name, bucket);
    }
    return bucket;
  }

  /** What the start-up line says about the store. */
  summary() {
    return 'memory';
  }
}

/** The counter stored under `key`, 0 when absent; an error when the value is not a counter. */
function counter(map, key) {
  const value = map.get(key);
  if (value === undefined) {
    return 0n;
  }
  const text = Buffer.from(value).toString('utf8');
  if (!/^[0-9]{1,20}$/.test(text)) {
    throw new Error(`'${key}' does not hold a counter`);
  }
  return BigInt(text);
}

const U64_MAX = (1n << 64n) - 1n;

/**
 * The import object entries for `wasi:keyvalue/{store,atomics,batch}` over `store`, keyed as
 * jco's `instantiate` asks for them.
 */
export function keyvalueImports(store) {
  // A fresh `Bucket` object per `open`: jco records an instance's resource handle on the object,
  // so one object handed to two instances would carry the first one's handle into the second.
  class Bucket {
    #map;

    constructor(map) {
      this.#map = map;
    }

    static map(bucket) {
      return bucket.#map;
    }

    get(key) {
      const value = this.#map.get(key);
      return ok(value === undefined ? undefined : Uint8Array.from(value));
    }

    set(key, value) {
      this.#map.set(key, Uint8Array.from(value));
      return ok(undefined);
    }

    delete(key) {
      this.#map.delete(key);
      return ok(undefined);
    }

    exists(key) {
      return ok(this.#map.has(key));
    }

    /** One page of keys in sorted order; the cursor is an offset into that order. */
    listKeys(cursor) {
      const start = Number(cursor ?? 0n);
      const keys = [...this.#map.keys()].sort().slice(start, start + LIST_PAGE_SIZE);
      const end = start + keys.length;
      const more = keys.length === LIST_PAGE_SIZE && end < this.#map.size;
      return ok({ keys, cursor: more ? BigInt(end) : undefined });
    }
  }

  return {
    'wasi:keyvalue/store': {
      Bucket,
      open(identifier) {
        return ok(new Bucket(store.bucket(identifier)));
      },
    },
    'wasi:keyvalue/atomics': {
      increment(bucket, key, delta) {
        const map = Bucket.map(bucket);
        let current;
        try {
          current = counter(map, key);
        } catch (err) {
          return other(err.message);
        }
        const next = current + delta;
        if (next > U64_MAX) {
          return other(`'${key}' would overflow a u64`);
        }
        map.set(key, Buffer.from(next.toString(), 'utf8'));
        return ok(next);
      },
    },
    'wasi:keyvalue/batch': {
      getMany(bucket, keys) {
        const map = Bucket.map(bucket);
        return ok(
          keys.map((key) => {
            const value = map.get(key);
            return value === undefined ? undefined : [key, Uint8Array.from(value)];
          }),
        );
      },
      setMany(bucket, keyValues) {
        const map = Bucket.map(bucket);
        for (const [key, value] of keyValues) {
          map.set(key, Uint8Array.from(value));
        }
        return ok(undefined);
      },
      deleteMany(bucket, keys) {
        const map = Bucket.map(bucket);
        for (const key of keys) {
          map.delete(key);
        }
        return ok(undefined);
      },
    },
  };
}
