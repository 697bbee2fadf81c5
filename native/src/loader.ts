import { existsSync } from 'node:fs';
import * as path from 'node:path';

import { SyscallError } from './errors';

/**
 * dlopen's RTLD_NOW on Linux (<dlfcn.h>, glibc and musl alike; loader.test checks it against
 * os.constants.dlopen): a literal, so that loading the addon does not load node:os (~0.2 ms of
 * a one-shot CLI start). Every symbol is bound at load, as before: the container init calls into
 * libc between clone() and execve(), on the runtime's memory and after its seccomp filter.
 */
export const RTLD_NOW = 2;

/** The raw shape of build/Release/berth_native.node. Only index.ts talks to it. */
export interface NativeBinding {
  init(opts: { SyscallError: typeof SyscallError }): void;
  exitNow(code: number): never;
  readonly constants: Readonly<Record<string, number>>;
  unshare(flags: number): void;
  setns(target: string | number, nstype: number): void;
  sethostname(name: string): void;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  /**
   * Clones on a libuv pool thread. `onExec` is called once: with an error (nothing left
   * running or open) or with the pid and pidfd after a successful execve; `onExit` once
   * after that, when the child has been reaped.
   */
  spawn(
    plan: RawSpawnPlan,
    onExec: (err: SyscallError | null, pid: number, pidfd: number) => void,
    onExit: (err: SyscallError | null, code: number | null, signal: number | null) => void,
  ): void;
  pidfdSendSignal(pidfd: number, signal: number): void;
}

/** What index.ts hands to the binding's spawn() after validation. */
export interface RawSpawnPlan {
  file: string;
  /** Including argv[0]. */
  argv: string[];
  envp: string[];
  cwd: string | null;
  cloneFlags: number;
  hostname: string | null;
  stdio: [number, number, number] | null;
}

const FILE_NAME = 'berth_native.node';

/**
 * Defined by tools/bundle-cli.js when it inlines this file into a bundle (the berth-runtime
 * CLI): this package's root relative to the bundle's folder. Undefined otherwise.
 */
declare const BERTH_NATIVE_ROOT_FROM_BUNDLE: string | undefined;

/**
 * This package's root: `src/` (tests) and `dist/` (built) are both one level below it. Inlined
 * into a bundle, this code looks where the bundle was built beside, then where require() would
 * find the package from the bundle.
 */
function packageRoot(): string {
  if (typeof BERTH_NATIVE_ROOT_FROM_BUNDLE === 'string') {
    const root = path.resolve(__dirname, BERTH_NATIVE_ROOT_FROM_BUNDLE);
    if (existsSync(path.join(root, 'package.json'))) return root;
    try {
      return path.dirname(require.resolve('@berth/native/package.json'));
    } catch {
      // not installed where the bundle is: the paths below are listed as not found
    }
  }
  return path.resolve(__dirname, '..');
}

/**
 * Where the addon is looked for, in order: `$BERTH_NATIVE_PATH` (a .node file), then the
 * node-gyp output folders of this package.
 */
export function candidatePaths(env: NodeJS.ProcessEnv = process.env): string[] {
  const root = packageRoot();
  const paths: string[] = [];
  const override = env['BERTH_NATIVE_PATH'];
  if (override !== undefined && override !== '') paths.push(path.resolve(override));
  paths.push(path.join(root, 'build', 'Release', FILE_NAME), path.join(root, 'build', 'Debug', FILE_NAME));
  return paths;
}

/**
 * Loads the first candidate that loads, and hands it the SyscallError class. Throws an Error
 * that lists every path tried and why each failed.
 */
export function loadNativeBinding(paths: readonly string[] = candidatePaths()): NativeBinding {
  const failures: string[] = [];
  for (const file of paths) {
    if (!existsSync(file)) {
      failures.push(`  ${file}: not found`);
      continue;
    }
    try {
      const mod = { exports: {} as NativeBinding };
      process.dlopen(mod, file, RTLD_NOW);
      mod.exports.init({ SyscallError });
      return mod.exports;
    } catch (err) {
      failures.push(`  ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  throw new Error(
    `@berth/native: could not load the native addon ${FILE_NAME}. Build it with ` +
      `\`npm run build:native -w @berth/native\` or point BERTH_NATIVE_PATH at it. Tried:\n${failures.join('\n')}`,
  );
}

let cached: NativeBinding | undefined;

/** The addon, loaded on first use (so that code using only the RecordingFake never loads it). */
export function binding(): NativeBinding {
  cached ??= loadNativeBinding();
  return cached;
}

/**
 * Ends the process at once with `code`: _exit(2), without 'exit' handlers or Node's teardown
 * (joining V8's and libuv's threads, static destructors: ~0.9 ms of a one-shot CLI). Only when
 * the addon is loaded already (loading it to exit would cost more); otherwise returns. The
 * caller must have nothing left to flush or restore (use fs.writeSync; no raw-mode tty).
 */
export function exitNow(code: number): void {
  cached?.exitNow(code);
}
