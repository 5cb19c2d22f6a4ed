#!/usr/bin/env node
// A JavaScript host for the todo component: jco transpiles the component to JavaScript and core
// wasm, and this server gives it what it imports (WASI from @bytecodealliance/preview2-shim,
// wasi:keyvalue@0.2.0-draft from ./keyvalue.mjs, over a SQLite file, and wasi:config@0.2.0-rc.1
// from ./config.mjs, the `--config` flags) and serves HTTP with a fresh instance of the component
// for every request, as todo-host does.
//
//   npm ci --prefix deploy/node                # jco, the WASI shims, and Node.js 24 (node:sqlite)
//   npm start --prefix deploy/node             # http://127.0.0.1:3002/, the default (draft) build
//   deploy/node/node_modules/.bin/node deploy/node/server.mjs --store /tmp/todo.db
//   npm start --prefix deploy/node -- --config accounts=optional   # accounts (issue #24)
//
// Flags (`--help`): --listen ADDR, --component FILE, --store PATH, --config KEY=VALUE,
// --max-body BYTES, --cache-dir DIR, --public DIR, --files-component FILE.
//
// With `--public DIR` it is an app of two components, as `todo-host --public` runs it: the todo
// component on the API's routes, and the files component (guest/files/) on every other path, with
// DIR as its `/public`. preview2-shim has no read-only preopen: the files component only reads,
// but the folder is not read-only to it as it is on todo-host.
//
// What it is not: a production server. Requests run one at a time on Node.js's main thread (the
// component's calls are synchronous, and so are node:sqlite's); there is no deadline for a guest
// that loops.

import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { transpile } from '@bytecodealliance/jco';
import { HTTPServer, types as httpTypes } from '@bytecodealliance/preview2-shim/http';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';

import { configFromEnv, configImports, parseConfig } from './config.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The default (draft) build of the todo component, where `cargo build -p todo-host` leaves it. */
const DEFAULT_COMPONENT = path.join(
  HERE,
  '../../target/wasm/todo_guest.wasm',
);

/** The files component, where `cargo build -p todo-host` leaves it (host/build.rs). */
const DEFAULT_FILES_COMPONENT = path.join(HERE, '../../target/wasm-files/todo_files.wasm');

/**
 * The todo component's routes, as Spin writes them (`API_ROUTES` in guest/src/router.rs): with
 * `--public`, every other path goes to the files component.
 */
const API_ROUTES = ['/openapi.json', '/todos/...', '/api/...'];

/** Whether `pathname` is on one of API_ROUTES, matched as todo-host matches routes. */
function isApiPath(pathname) {
  const trimmed = pathname.replace(/\/+$/, '');
  return API_ROUTES.some((route) =>
    route.endsWith('/...')
      ? trimmed === route.slice(0, -4) || trimmed.startsWith(route.slice(0, -3))
      : trimmed === route,
  );
}

/**
 * The store's default file: inside deploy/node/, like the transpile cache, and ignored by git
 * (`deploy/node/.gitignore`).
 */
const DEFAULT_STORE = path.join(HERE, '.data/todo.db');

/** What `--store` takes for a store in this process's memory, gone on exit (SQLite's name). */
const IN_MEMORY_FLAG = ':memory:';

/** The oldest Node.js with `node:sqlite` unflagged. */
const NODE_SQLITE_SINCE = '22.13';

/** todo-host's default address is 3001; this one can run beside it. */
const DEFAULT_LISTEN = '127.0.0.1:3002';

/** The largest body a request may declare: todo-host's default `--max-body`, 1 MiB. */
const DEFAULT_MAX_BODY = 1024 * 1024;

const USAGE = `usage: node server.mjs [--listen ADDR] [--component FILE] [--store PATH] [--config KEY=VALUE]... [--max-body BYTES] [--cache-dir DIR] [--public DIR [--files-component FILE]]

  --listen ADDR      address to listen on; port 0 picks a free one (env TODO_NODE_LISTEN; default ${DEFAULT_LISTEN})
  --component FILE   the component to serve (env TODO_NODE_COMPONENT; default the todo component's draft build)
  --store PATH       the SQLite file of wasi:keyvalue, created if missing; ${IN_MEMORY_FLAG} keeps it in memory
                     (env TODO_NODE_STORE; default deploy/node/.data/todo.db)
  --config KEY=VALUE a value of the component's configuration (wasi:config/store), repeatable:
                     accounts=off|optional|required, session_ttl=SECS, signups_per_minute=N
                     (env TODO_NODE_CONFIG, comma separated; default none: accounts off)
  --max-body BYTES   answer 413 to a request whose Content-Length is larger (default ${DEFAULT_MAX_BODY})
  --cache-dir DIR    where transpiled components are kept, one folder per component hash (default deploy/node/.jco)
  --public DIR       serve DIR on every path that is not the API's, by the files component (DIR is its /public)
  --files-component FILE  the files component (default the build todo-host embeds, target/wasm-files/todo_files.wasm)`;

/** Flags into a plain config; every error names the flag and is raised before anything starts. */
function config(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string', default: process.env.TODO_NODE_LISTEN ?? DEFAULT_LISTEN },
      component: { type: 'string', default: process.env.TODO_NODE_COMPONENT ?? DEFAULT_COMPONENT },
      store: { type: 'string', default: process.env.TODO_NODE_STORE ?? DEFAULT_STORE },
      config: { type: 'string', multiple: true },
      'max-body': { type: 'string', default: String(DEFAULT_MAX_BODY) },
      'cache-dir': { type: 'string', default: path.join(HERE, '.jco') },
      public: { type: 'string' },
      'files-component': { type: 'string', default: DEFAULT_FILES_COMPONENT },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const match = /^(.+):([0-9]{1,5})$/.exec(values.listen);
  if (!match || Number(match[2]) > 65535) {
    throw new Error(`--listen ${values.listen}: expected HOST:PORT`);
  }
  if (values.store === '') {
    throw new Error(`--store: expected a file, or ${IN_MEMORY_FLAG}`);
  }
  if (values.public !== undefined && !statSync(values.public, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`--public ${values.public}: not a directory`);
  }
  // The flags, if any, replace the environment's list, as clap's `env` does on todo-host.
  const componentConfig = values.config
    ? parseConfig(values.config)
    : parseConfig(configFromEnv(process.env.TODO_NODE_CONFIG), 'TODO_NODE_CONFIG');
  const maxBody = Number(values['max-body']);
  if (!Number.isSafeInteger(maxBody) || maxBody < 0) {
    throw new Error(`--max-body ${values['max-body']}: expected a number of bytes`);
  }
  return {
    host: match[1].replace(/^\[(.*)\]$/, '$1'),
    port: Number(match[2]),
    component: path.resolve(values.component),
    store: values.store === IN_MEMORY_FLAG ? IN_MEMORY_FLAG : path.resolve(values.store),
    config: componentConfig,
    maxBody,
    cacheDir: path.resolve(values['cache-dir']),
    public: values.public === undefined ? null : path.resolve(values.public),
    filesComponent: path.resolve(values['files-component']),
  };
}

/**
 * Transpiles `component` with jco, once per component: the output goes to a folder named after
 * the component's hash, so a restart with the same component skips the work (about 3 s).
 * Returns that folder.
 */
async function transpiled(component, cacheDir) {
  const bytes = await readFile(component).catch((err) => {
    throw new Error(`--component ${component}: ${err.message}`);
  });
  const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  const dir = path.join(cacheDir, hash);
  if (existsSync(path.join(dir, 'todo.js'))) {
    return dir;
  }
  const { files } = await transpile(bytes, {
    name: 'todo',
    // `instantiate()` as a function we call per request, synchronously: the HTTP shim calls the
    // handler synchronously, so the instance must exist before it returns.
    instantiation: 'sync',
    noTypescript: true,
    quiet: true,
  }).catch((err) => {
    throw new Error(`--component ${component}: jco cannot transpile it: ${err.message ?? err}`);
  });
  // Written beside the final folder and renamed into place, so a reader never sees half of it.
  const partial = `${dir}.${process.pid}.partial`;
  await rm(partial, { recursive: true, force: true });
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(partial, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }
  await rename(partial, dir).catch(async (err) => {
    // Another process renamed the same component into place first: use theirs.
    await rm(partial, { recursive: true, force: true });
    if (!existsSync(path.join(dir, 'todo.js'))) {
      throw err;
    }
  });
  return dir;
}

/** The transpiled component's `instantiate`, with its core modules compiled once. */
async function load(dir) {
  const { instantiate } = await import(pathToFileURL(path.join(dir, 'todo.js')).href);
  const modules = new Map();
  const getCoreModule = (name) => {
    let module = modules.get(name);
    if (!module) {
      throw new Error(`the transpiled component has no core module ${name}`);
    }
    return module;
  };
  // Compile every core module now, not on the first request.
  for (const name of ['todo.core.wasm', 'todo.core2.wasm', 'todo.core3.wasm', 'todo.core4.wasm']) {
    const file = path.join(dir, name);
    if (existsSync(file)) {
      modules.set(name, await WebAssembly.compile(await readFile(file)));
    }
  }
  return (imports) => instantiate(getCoreModule, imports);
}

/** A JSON error answered by this host itself, before any instance runs. */
function refuse(responseOutparam, status, message) {
  const { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } = httpTypes;
  const body = new TextEncoder().encode(JSON.stringify({ error: message }));
  const headers = Fields.fromList([
    ['content-type', new TextEncoder().encode('application/json')],
    ['content-length', new TextEncoder().encode(String(body.length))],
    ['access-control-allow-origin', new TextEncoder().encode('*')],
  ]);
  const response = new OutgoingResponse(headers);
  response.setStatusCode(status);
  const outgoing = response.body();
  ResponseOutparam.set(responseOutparam, { tag: 'ok', val: response });
  const stream = outgoing.write();
  stream.blockingWriteAndFlush(body);
  stream[Symbol.dispose]?.();
  OutgoingBody.finish(outgoing, undefined);
}

/**
 * keyvalue.mjs, imported only now: it needs `node:sqlite`, and an older Node.js should hear
 * which one to run rather than `No such built-in module`.
 */
async function keyvalue() {
  return import('./keyvalue.mjs').catch((err) => {
    if (err.code !== 'ERR_UNKNOWN_BUILTIN_MODULE') {
      throw err;
    }
    const version = process.versions.node;
    throw new Error(
      `Node.js ${version} has no node:sqlite (it needs ${NODE_SQLITE_SINCE} or later): run ` +
        'the one `npm ci --prefix deploy/node` installs, deploy/node/node_modules/.bin/node, ' +
        'or `npm start --prefix deploy/node`',
    );
  });
}

async function main() {
  const settings = config(process.argv.slice(2));
  const { SqliteStore, keyvalueImports } = await keyvalue();
  const instantiate = await load(await transpiled(settings.component, settings.cacheDir));
  const store = new SqliteStore(settings.store);

  // What every instance imports. The shim's defaults would hand the guest this process's
  // environment and arguments, and its sockets the network: the guest gets none of them, as on
  // todo-host. No preopens: no files.
  const shim = new WASIShim({
    environment: {},
    arguments: [],
    sandbox: { preopens: {}, enableNetwork: false },
  });
  const imports = {
    ...shim.getImportObject(),
    ...keyvalueImports(store),
    ...configImports(settings.config),
  };

  // Which outparams the guest has answered, to tell a trap before its answer from one after it.
  const answered = new WeakSet();
  const ResponseOutparam = new Proxy(httpTypes.ResponseOutparam, {
    get(target, property, receiver) {
      if (property === 'set') {
        return (param, response) => {
          answered.add(param);
          return target.set(param, response);
        };
      }
      return Reflect.get(target, property, receiver);
    },
  });
  imports['wasi:http/types'] = { ...imports['wasi:http/types'], ResponseOutparam };

  // Instantiate once before listening: a component that does not link fails here, not on the
  // first request.
  instantiate(imports);

  // With --public: the files component, with the folder and no store, for every path that is
  // not the API's.
  let files = null;
  if (settings.public) {
    const instantiateFiles = await load(
      await transpiled(settings.filesComponent, settings.cacheDir),
    );
    const filesShim = new WASIShim({
      environment: {},
      arguments: [],
      sandbox: { preopens: { '/public': settings.public }, enableNetwork: false },
    });
    const filesImports = {
      ...filesShim.getImportObject(),
      'wasi:http/types': imports['wasi:http/types'],
    };
    instantiateFiles(filesImports);
    files = () => instantiateFiles(filesImports);
  }

  const server = new HTTPServer({
    handle(request, responseOutparam) {
      const declared = request.headers().get('content-length');
      const length = declared.length ? Number(new TextDecoder().decode(declared[0])) : 0;
      if (length > settings.maxBody) {
        refuse(responseOutparam, 413, `request body is larger than ${settings.maxBody} bytes`);
        return;
      }
      try {
        // A fresh instance per request: nothing the guest keeps in memory reaches the next one.
        const pathname = (request.pathWithQuery() ?? '/').split('?')[0];
        const instance =
          files && !isApiPath(pathname) ? files() : instantiate(imports);
        instance.incomingHandler.handle(request, responseOutparam);
      } catch (err) {
        console.error(`the component failed: ${err?.stack ?? err}`);
        if (!answered.has(responseOutparam)) {
          refuse(responseOutparam, 500, 'the component failed');
        }
      }
    },
  });
  server.listen(settings.port, settings.host);
  const { address, port } = server.address();
  const shown = address.includes(':') ? `[${address}]` : address;
  // The one stable start-up line, as todo-host and `wasmtime serve` print it: tests read the port
  // from it.
  const publicDir = settings.public ? `, public: ${settings.public}` : '';
  // The keys only: a value may be something not to print.
  const keys = settings.config.size ? `, config: ${[...settings.config.keys()].join(', ')}` : '';
  console.log(
    `Serving HTTP on http://${shown}:${port}/ (store: ${store.summary()}${keys}${publicDir})`,
  );

  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      server.stop();
      // Checkpoints the WAL into the file; a kill without it loses nothing (synchronous=NORMAL).
      store.close();
      process.exit(0);
    });
  }
}

main().catch((err) => {
  console.error(`node server: ${err.message ?? err}`);
  process.exit(1);
});
