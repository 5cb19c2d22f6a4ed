// wasi:config/store@0.2.0-rc.1 for a component transpiled by jco: the operator's settings, from
// `--config KEY=VALUE` flags (or TODO_NODE_CONFIG), read by the guest with `get` and `get-all`.
// The todo component reads its accounts mode there (`accounts` = off | optional | required), and
// `session_ttl` and `signups_per_minute`; a key nobody set is `none`, and the guest takes its
// default. The values are fixed at start-up: every instance sees the same ones.
//
// What it is not: a secret store. Values come from the command line, which other users of the
// machine may read (`ps`).

/**
 * Key names as Spin writes its variables (lowercase ASCII letters, digits and underscores,
 * starting with a letter), so that one manifest's keys work on every host.
 */
const KEY = /^[a-z][a-z0-9_]*$/;

/**
 * `KEY=VALUE` strings (the values of repeated `--config` flags) as a Map, in order; a key given
 * twice keeps its last value. Throws, naming `flag` and the entry, on an entry that is not
 * `KEY=VALUE` or a key that breaks the rule above.
 */
export function parseConfig(entries, flag = '--config') {
  const config = new Map();
  for (const entry of entries) {
    const split = entry.indexOf('=');
    if (split < 0) {
      throw new Error(`${flag} ${entry}: expected KEY=VALUE`);
    }
    const key = entry.slice(0, split);
    if (!KEY.test(key)) {
      throw new Error(
        `${flag} ${entry}: the key must be lowercase letters, digits and underscores, ` +
          'starting with a letter',
      );
    }
    config.set(key, entry.slice(split + 1));
  }
  return config;
}

/**
 * The entries of TODO_NODE_CONFIG (`KEY=VALUE` pairs separated by commas, as todo-host's
 * TODO_HOST_CONFIG), or none when it is unset or empty.
 */
export function configFromEnv(value) {
  return value ? value.split(',').filter((entry) => entry !== '') : [];
}

/**
 * The import object entry for `wasi:config/store` over `config` (a Map of strings), keyed as
 * jco's `instantiate` asks for it. `get` answers `undefined` (`none`) for a key not set; neither
 * call can fail, so both answer `ok`.
 */
export function configImports(config) {
  const all = [...config.entries()];
  return {
    'wasi:config/store': {
      get(key) {
        return { tag: 'ok', val: config.get(key) };
      },
      getAll() {
        return { tag: 'ok', val: all.map(([key, value]) => [key, value]) };
      },
    },
  };
}
