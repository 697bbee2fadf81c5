#!/usr/bin/env node
// node tools/bundle-cli.js <entry.ts> <out.js> [<bin.js>]   (run from the package directory by its build)
//
// Bundles a CLI into one CommonJS file and makes a V8 code cache for it, so that a start of the
// CLI reads two files instead of resolving, reading and compiling a module tree. The entry's
// TypeScript sources are bundled (not tsc's CommonJS output) so that esbuild can drop what the
// CLI never uses (e.g. the netlink half of @berth/native, which loads node:net).
//
// <out.js>            the bundle; its last line names the hash of what comes before it
// <out minus .js>.cache  that hash (hex) + the code cache, compiled eagerly (--no-lazy) so that
//                     the functions a command runs need no compiling either
//
// <bin.js>            the launcher that loads them, made executable (engines exec it by path)
//
// The bundle may only hold sources of this repository: an npm package or a generated API in it
// would be loaded at every start of the CLI, so this fails naming them. The cache is checked
// in a fresh Node process before it is kept (V8 ignores a cache made under other flags).
'use strict';
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const { builtinModules, wrap } = require('node:module');
const path = require('node:path');
const v8 = require('node:v8');
const { Script } = require('node:vm');

const { HASH_MARK, HASH_LEN, cacheAccepted } = require('./code-cache');

/** Writes through a temporary file: a CLI starting meanwhile reads the old file or the new one. */
function writeAtomic(file, data) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

/**
 * Node's own modules that its start-up has not loaded (node:crypto, node:net and the stream
 * stack under them, node:child_process, ...) cost 2-40 ms each to load on this machine. A
 * library module may import one at its top for a path the CLI never takes (the daemon's cgroup
 * pool hashes with node:crypto): in the bundle, each such import gets a Proxy that loads the
 * module on its first property access, so a command pays only for what it uses (a Proxy, not
 * an object with a getter per export: made in O(1) at start, where ~100 getters cost 0.2 ms).
 */
const EAGER_BUILTINS = new Set(['buffer', 'events', 'fs', 'module', 'path', 'process', 'timers', 'util', 'vm']);
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    b.onResolve({ filter: /^(node:)?[a-z_]+(\/[a-z_]+)?$/ }, (args) => {
      const name = args.path.replace(/^node:/, '');
      if (args.namespace === 'lazy-builtin' || EAGER_BUILTINS.has(name) || !builtinModules.includes(name)) return undefined;
      return { path: name, namespace: 'lazy-builtin' };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => {
      const id = JSON.stringify(`node:${args.path}`);
      return {
        loader: 'js',
        contents: `let m;\nconst load = () => (m ??= require(${id}));\n` +
          'module.exports = new Proxy({}, {\n' +
          '  get: (_, k) => load()[k],\n' +
          '  has: (_, k) => k in load(),\n' +
          '  ownKeys: () => Reflect.ownKeys(load()),\n' +
          '  getOwnPropertyDescriptor: (_, k) => { const d = Reflect.getOwnPropertyDescriptor(load(), k); return d === undefined ? undefined : { ...d, configurable: true }; },\n' +
          '});\n',
      };
    });
  },
};

/**
 * `import * as fs from 'node:fs'` becomes `__toESM(require("node:fs"))` in a CommonJS bundle: a
 * fresh object with a getter for each of the module's ~100 properties, made once per importing
 * module (1.1 ms of every CLI start with fs and path imported by eight modules). Node's own
 * modules are used here through named properties only, so the module object itself serves; so
 * does a lazy builtin's Proxy (whose properties __toESM's copy would read, loading the module at
 * start). A `.default` of one (a default import) would need the wrapper, so that fails the build.
 */
function plainBuiltinNamespaces(code) {
  const lazy = [...code.matchAll(/\b(require_\w+)\s*=\s*__commonJS\(\{\s*"lazy-builtin:/g)].map((m) => m[1]);
  const wrapped = new RegExp(`\\b__toESM\\((require\\("node:[\\w/]+"\\)${lazy.map((r) => `|${r}\\(\\)`).join('')})\\)`, 'g');
  const names = [...code.matchAll(new RegExp(`\\b(\\w+)\\s*=\\s*${wrapped.source}`, 'g'))].map((m) => m[1]);
  const withDefault = names.filter((n) => new RegExp(`\\b${n}\\.default\\b`).test(code));
  if (withDefault.length > 0) {
    console.error(`bundle-cli: a default import of a Node module (${withDefault.join(', ')}) needs esbuild's __toESM wrapper; import names instead`);
    process.exit(1);
  }
  const out = code.replace(wrapped, '$1');
  // A wrapper left (e.g. the patterns above no longer match esbuild's output) would load every
  // lazy builtin at start through __toESM's property copy: ~5 ms of each CLI start.
  const left = out.match(/\b__toESM\((require\("node:[\w/]+"\)|require_\w+\(\))\)/);
  if (left !== null) {
    console.error(`bundle-cli: a Node module is still wrapped by esbuild's __toESM: ${left[0]}`);
    process.exit(1);
  }
  return out;
}

async function main() {
  const [entry, out, bin] = process.argv.slice(2);
  if (!entry || !out || !out.endsWith('.js')) {
    console.error('usage: node tools/bundle-cli.js <entry.ts> <out.js> [<bin.js>]');
    process.exit(2);
  }
  const esbuild = require(require.resolve('esbuild', { paths: [process.cwd()] }));
  const nativeRoot = path.dirname(require.resolve('@berth/native/package.json', { paths: [process.cwd()] }));
  const repo = path.resolve(__dirname, '..');
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: `node${process.versions.node.split('.')[0]}`,
    plugins: [{
      name: 'berth-native-source',
      setup(b) {
        // The TS sources of @berth/native rather than its CommonJS dist: tree-shakable.
        b.onResolve({ filter: /^@berth\/native$/ }, () => ({ path: path.join(nativeRoot, 'src', 'index.ts') }));
      },
    }, lazyBuiltins],
    // The addon loader finds the package's build/ folder from the bundle's folder, else through
    // require.resolve at run time.
    define: { BERTH_NATIVE_ROOT_FROM_BUNDLE: JSON.stringify(path.relative(path.dirname(path.resolve(out)), nativeRoot)) },
    external: ['@berth/native/package.json'],
    write: false,
    metafile: true,
    sourcemap: 'linked',
    minifyWhitespace: true,
    minifySyntax: true,
    keepNames: false,
    outfile: out,
    logLevel: 'warning',
  });
  const foreign = Object.keys(result.metafile.inputs)
    .map((f) => path.resolve(f))
    .filter((f) => !f.startsWith(repo + path.sep) || f.includes(`${path.sep}node_modules${path.sep}`) || /[/\\]packages[/\\](api|common)[/\\]/.test(f));
  if (foreign.length > 0) {
    console.error(`bundle-cli: ${entry} must not reach npm packages or @berth/api|common (loaded at every CLI start):\n  ${foreign.join('\n  ')}`);
    process.exit(1);
  }
  let code;
  let map;
  for (const f of result.outputFiles) {
    if (f.path.endsWith('.map')) map = f.contents;
    else code = f.text;
  }
  code = code.replace(/^#!.*\n/, '');
  code = plainBuiltinNamespaces(code);
  const hash = createHash('sha256').update(code).digest('hex').slice(0, HASH_LEN);
  code += `${HASH_MARK}${hash}\n`;

  const cacheFile = out.replace(/\.js$/, '.cache');
  // Eagerly compiled: every function of the bundle in the cache, not only the top level.
  v8.setFlagsFromString('--no-lazy');
  const script = new Script(wrap(code), { filename: path.resolve(out) });
  v8.setFlagsFromString('--lazy');
  const cache = Buffer.concat([Buffer.from(hash), script.createCachedData()]);

  fs.mkdirSync(path.dirname(out), { recursive: true });
  writeAtomic(`${out}.map`, map);
  writeAtomic(out, code);
  writeAtomic(cacheFile, cache);

  if (!cacheAccepted(path.resolve(out), path.resolve(cacheFile))) {
    fs.rmSync(cacheFile, { force: true });
    console.error(`bundle-cli: V8 rejects the code cache made for ${out} in a fresh process`);
    process.exit(1);
  }
  if (bin) fs.chmodSync(bin, 0o755);
  const kb = (n) => `${(n / 1024).toFixed(0)} KiB`;
  console.log(`bundle-cli: ${out} (${kb(code.length)}, ${Object.keys(result.metafile.inputs).length} modules), code cache ${kb(cache.length)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
