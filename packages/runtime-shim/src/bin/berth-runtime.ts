#!/usr/bin/env node
// berth-runtime, the bin. Node's own start-up is most of what a CLI run costs, so what this adds
// to it must stay small. The CLI (./runtime-cli and the library under it) is loaded from one
// bundled file (one read instead of resolving and reading a module tree) and compiled from the
// V8 code cache made beside it at build time (no parsing or compiling at start); both are made
// by tools/bundle-cli.js in the package's build. Without the bundle, or with a bundle older than
// the compiled modules (a plain `tsc` build), the modules load one by one: the same CLI, a
// slower start. A cache V8 does not accept (another Node binary) only costs the compile.
import { readFileSync, statSync } from 'node:fs';
import { wrap } from 'node:module';
import { join } from 'node:path';
import { Script } from 'node:vm';

type Cli = typeof import('./runtime-cli');

const BUNDLE = join(__dirname, 'berth-runtime.bundle.js');
const CACHE = join(__dirname, 'berth-runtime.bundle.cache');
const HASH_MARK = '//# berth-bundle-hash=';
const HASH_LEN = 32;
const STALE_AFTER_MS = 1000;

function loadBundle(): Cli | undefined {
  // tsc alone (without the package build's bundle step) leaves a bundle of older sources: the
  // compiled modules beside it are the current CLI then. The build writes the bundle right
  // after them, and a restore from the Nx cache writes both within moments.
  const bundled = statSync(BUNDLE, { throwIfNoEntry: false });
  const compiled = statSync(join(__dirname, 'runtime-cli.js'), { throwIfNoEntry: false });
  if (bundled === undefined || (compiled !== undefined && compiled.mtimeMs > bundled.mtimeMs + STALE_AFTER_MS)) return undefined;
  let source: string;
  try {
    source = readFileSync(BUNDLE, 'utf8');
  } catch {
    return undefined;
  }
  // The cache starts with the hash that the bundle's last line names: V8 itself checks only the
  // length of the source, so a cache of another build of the same length would be taken.
  let cachedData: Buffer | undefined;
  try {
    const cache = readFileSync(CACHE);
    const at = source.lastIndexOf(HASH_MARK) + HASH_MARK.length;
    if (at > HASH_MARK.length && cache.toString('latin1', 0, HASH_LEN) === source.slice(at, at + HASH_LEN)) cachedData = cache.subarray(HASH_LEN);
  } catch {
    // compiled from source
  }
  // The same CommonJS wrapper as the one the cache was made from (its source must match).
  const script = new Script(wrap(source), { filename: BUNDLE, cachedData });
  const mod = { exports: {} as Cli };
  (script.runInThisContext() as (e: object, r: NodeJS.Require, m: object, f: string, d: string) => void)(mod.exports, require, mod, BUNDLE, __dirname);
  return mod.exports;
}

(loadBundle() ?? (require('./runtime-cli') as Cli)).runCli(process.argv.slice(2));
