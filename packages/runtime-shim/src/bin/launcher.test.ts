// The berth-runtime bin as built: it runs the CLI from the one bundled file with its V8 code
// cache, a cache that belongs to another build of the bundle is never used, and without the
// bundle the unbundled modules give the same CLI.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { wrap } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { Script } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';

const DIST_BIN = path.resolve(__dirname, '..', '..', 'dist', 'bin');
const LAUNCHER = path.join(DIST_BIN, 'berth-runtime.js');
const BUNDLE = path.join(DIST_BIN, 'berth-runtime.bundle.js');
const CACHE = path.join(DIST_BIN, 'berth-runtime.bundle.cache');
const HASH_LEN = 32;

const node = (args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; out: string; err: string } => {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A --require'd script that writes the JSON of `expr` to stderr when the process exits. */
function exitProbe(expr: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-launcher-'));
  dirs.push(dir);
  const probe = path.join(dir, 'probe.js');
  fs.writeFileSync(probe, `process.on('exit', () => require('fs').writeSync(2, JSON.stringify(${expr})));\n`);
  return probe;
}

describe('berth-runtime bin', () => {
  it('is built with its bundle and a code cache that V8 accepts for it', () => {
    const source = fs.readFileSync(BUNDLE, 'utf8');
    const cache = fs.readFileSync(CACHE);
    expect(source).toMatch(new RegExp(`//# berth-bundle-hash=${cache.toString('latin1', 0, HASH_LEN)}\\n$`));
    const script = new Script(wrap(source), { filename: BUNDLE, cachedData: cache.subarray(HASH_LEN) });
    expect(script.cachedDataRejected).toBe(false);
  });

  it('built as root, its cache is the one a real run trained (tools/train-cli-cache.js): smaller than an eager compile of every function', () => {
    if (process.getuid?.() !== 0) return; // a build as a user keeps the eager cache
    // The eager cache, made as bundle-cli makes it, in a process of its own (--no-lazy).
    const eager = spawnSync(process.execPath, ['--no-lazy', '-e', `const {Script}=require('vm'),{wrap}=require('module');process.stdout.write(String(new Script(wrap(require('fs').readFileSync(${JSON.stringify(BUNDLE)},'utf8')),{filename:${JSON.stringify(BUNDLE)}}).createCachedData().length))`], { encoding: 'utf8' });
    expect(eager.status).toBe(0);
    const trained = fs.statSync(CACHE).size - HASH_LEN;
    expect(trained).toBeLessThan(Number(eager.stdout) * 0.8);
    expect(trained).toBeGreaterThan(Number(eager.stdout) * 0.25); // more than the top level: the run's functions
  });

  it('loads no module files but itself: the CLI and the library come from the bundle', () => {
    const probe = exitProbe('Object.keys(require.cache)');
    const r = node(['--require', probe, LAUNCHER, '--version']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^berth-runtime version \S+\nspec: 1\.0\.2\n$/);
    expect((JSON.parse(r.err) as string[]).filter((f) => f !== probe)).toEqual([LAUNCHER]);
  });

  it('loads the heavier Node modules only for the commands that use them', () => {
    // The library imports node:crypto (cgroup pool) and node:net (netlink codec) at its top,
    // for paths these commands never take.
    const probe = exitProbe('process.moduleLoadList.filter((m) => /^NativeModule (crypto|net|child_process|stream)$/.test(m))');
    const dir = path.dirname(probe);
    const version = node(['--require', probe, LAUNCHER, '--version']);
    expect(version.code).toBe(0);
    expect(JSON.parse(version.err)).toEqual([]);
    const state = node(['--require', probe, LAUNCHER, '--root', dir, 'state', 'no-such-container']);
    expect(state.code).toBe(1);
    expect(state.err).toContain('container does not exist');
    expect(JSON.parse(state.err.slice(state.err.lastIndexOf('[')))).toEqual([]);
  });

  it('never takes a cache made for another build of the bundle, even one of the same length', () => {
    // A rebuild that changes one character keeps the length, the only thing V8 checks itself:
    // with the old cache the old code would run.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-launcher-'));
    dirs.push(dir);
    for (const f of [LAUNCHER, CACHE]) fs.copyFileSync(f, path.join(dir, path.basename(f)));
    const source = fs.readFileSync(BUNDLE, 'utf8');
    // (The bundle is minified: `VERSION="0.1.0"`.)
    const version = /\bVERSION\s*=\s*"([^"]+)"/.exec(source);
    expect(version).not.toBeNull();
    const other = version![1]!.replace(/^./, (c) => (c === '9' ? '8' : '9'));
    const rebuilt = source
      .replace(version![0], version![0].replace(version![1]!, other))
      .replace(/(berth-bundle-hash=)(.)/, (_, mark: string, c: string) => mark + (c === '0' ? '1' : '0'));
    expect(rebuilt.length).toBe(source.length);
    fs.writeFileSync(path.join(dir, 'berth-runtime.bundle.js'), rebuilt);
    const r = node([path.join(dir, 'berth-runtime.js'), '--version']);
    expect(r.err).toBe('');
    expect(r.out).toBe(`berth-runtime version ${other}\nspec: 1.0.2\n`);
  });

  it('runs the unbundled modules when there is no bundle or only a stale one, with the same output', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-launcher-'));
    dirs.push(dir);
    // The launcher beside a runtime-cli.js that only names itself: no bundle there.
    fs.copyFileSync(LAUNCHER, path.join(dir, 'berth-runtime.js'));
    fs.writeFileSync(path.join(dir, 'runtime-cli.js'), "exports.runCli = (argv) => process.stdout.write('unbundled ' + argv.join(' ') + '\\n');\n");
    expect(node([path.join(dir, 'berth-runtime.js'), 'state', 'x']).out).toBe('unbundled state x\n');
    // A bundle older than the compiled modules (tsc run again without the bundle step) is not used.
    for (const f of [BUNDLE, CACHE]) fs.copyFileSync(f, path.join(dir, path.basename(f)));
    const now = Date.now() / 1000;
    fs.utimesSync(path.join(dir, 'berth-runtime.bundle.js'), now - 60, now - 60);
    expect(node([path.join(dir, 'berth-runtime.js'), 'state', 'x']).out).toBe('unbundled state x\n');
    fs.utimesSync(path.join(dir, 'runtime-cli.js'), now - 120, now - 120);
    expect(node([path.join(dir, 'berth-runtime.js'), '--version']).out).toMatch(/^berth-runtime version /);
    // And the real unbundled CLI says what the bundled one says.
    const unbundled = node(['-e', `require(${JSON.stringify(path.join(DIST_BIN, 'runtime-cli.js'))}).runCli(process.argv.slice(1))`, 'features']);
    const bundled = node([LAUNCHER, 'features']);
    expect(unbundled.code).toBe(0);
    expect(unbundled.out).toBe(bundled.out);
    expect(JSON.parse(bundled.out)).toHaveProperty('ociVersionMax', '1.0.2');
  });
});
