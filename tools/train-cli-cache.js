#!/usr/bin/env node
// node ../../tools/train-cli-cache.js <bundle.js>   (run from packages/runtime-shim by its build,
// after tools/bundle-cli.js)
//
// Replaces the eagerly compiled V8 code cache of berth-runtime's bundle (every function of the
// bundle, ~260 KiB) by one made after a real `berth-runtime run` of /bin/true in a busybox
// bundle: the functions a run executes, ~150 KiB. A CLI start deserializes the whole cache, and
// the smaller one made `run` ~0.7 ms faster here (A/B, 65 alternating runs each way, twice);
// a command that needs a function it lacks compiles that function when it first calls it.
//
// The run happens in a child Node process that loads the bundle as the launcher does, without
// a cache, and writes the cache at the moment the CLI would _exit (the addon's exitNow, wrapped
// through process.dlopen). It needs what a container needs: root, cgroups, Debian's
// busybox-static. Without them (a build as a user, a machine not bootstrapped yet), or if the
// run or the new cache fail in any way, the eager cache stays and this says why: never an error.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { HASH_MARK, HASH_LEN, cacheAccepted } = require('./code-cache');

/** Why the eager cache stays (thrown, so that the cleanups run). */
class Skip extends Error {}
function skip(why) {
  throw new Skip(why);
}

/** The trainer, run with node -e: argv = bundle, cache out, OCI bundle dir, runtime root, id. */
const TRAINER = `
const fs = require('fs'), path = require('path'), { Script } = require('vm'), { wrap } = require('module');
const [bundle, out, ociBundle, root, id] = process.argv.slice(1);
const src = fs.readFileSync(bundle, 'utf8');
const at = src.lastIndexOf(${JSON.stringify(HASH_MARK)}) + ${HASH_MARK.length};
const hash = Buffer.from(src.slice(at, at + ${HASH_LEN}), 'latin1');
const script = new Script(wrap(src), { filename: bundle });
const dlopen = process.dlopen;
process.dlopen = function (mod, file, flags) {
  dlopen.call(this, mod, file, flags);
  const exitNow = mod.exports.exitNow;
  mod.exports.exitNow = (code) => {
    if (code === 0) fs.writeFileSync(out, Buffer.concat([hash, script.createCachedData()]));
    exitNow(code);
  };
};
const m = { exports: {} };
script.runInThisContext()(m.exports, require, m, bundle, path.dirname(bundle));
m.exports.runCli(['--root', root, 'run', '--bundle', ociBundle, id]);
`;

function main() {
  const bundle = path.resolve(process.argv[2] ?? '');
  if (!bundle.endsWith('.bundle.js') || !fs.existsSync(bundle)) {
    console.error('usage: node tools/train-cli-cache.js <berth-runtime.bundle.js>');
    process.exit(2);
  }
  const cacheFile = bundle.replace(/\.js$/, '.cache');
  if (process.env.BERTH_EAGER_CLI_CACHE === '1') skip('BERTH_EAGER_CLI_CACHE=1');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) skip('not root: a container run needs it');
  if (!fs.existsSync('/bin/busybox')) skip('no /bin/busybox yet (Debian busybox-static)');
  if (!fs.existsSync('/sys/fs/cgroup')) skip('no /sys/fs/cgroup');
  let makeBundle;
  try {
    makeBundle = require(path.resolve(path.dirname(bundle), '..', 'testing', 'bundle.js')).makeBundle;
  } catch (err) {
    skip(`the busybox bundle helper is not built: ${err.message}`);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-train-cache-'));
  let oci;
  try {
    oci = makeBundle(['/bin/true'], undefined, work);
    const out = path.join(work, 'trained.cache');
    const id = `berth-train-${process.pid}`;
    const r = spawnSync(process.execPath, ['-e', TRAINER, bundle, out, oci.dir, path.join(work, 'root'), id], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0 || !fs.existsSync(out)) skip(`the training run failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' / ')}`);
    if (!cacheAccepted(bundle, out)) skip('V8 rejects the trained cache in a fresh process');
    const src = fs.readFileSync(bundle, 'utf8');
    const at = src.lastIndexOf(HASH_MARK) + HASH_MARK.length;
    if (fs.readFileSync(out).toString('latin1', 0, HASH_LEN) !== src.slice(at, at + HASH_LEN)) skip('the trained cache names another bundle');
    const eager = fs.statSync(cacheFile).size;
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    fs.copyFileSync(out, tmp);
    fs.renameSync(tmp, cacheFile);
    const kb = (n) => `${(n / 1024).toFixed(0)} KiB`;
    console.log(`train-cli-cache: ${path.basename(cacheFile)} from a run of /bin/true: ${kb(fs.statSync(cacheFile).size)} (eager: ${kb(eager)})`);
  } finally {
    oci?.remove();
    fs.rmSync(work, { recursive: true, force: true });
    // The run removes its cgroups (/<id> in each hierarchy); a run that failed half-way may not.
    for (const h of fs.existsSync('/sys/fs/cgroup') ? fs.readdirSync('/sys/fs/cgroup') : []) {
      try { fs.rmdirSync(path.join('/sys/fs/cgroup', h, `berth-train-${process.pid}`)); } catch { /* none */ }
    }
  }
}

try {
  main();
} catch (err) {
  // Never a failed build: the eager cache bundle-cli made stays.
  console.log(`train-cli-cache: kept the eager code cache (${err instanceof Skip ? err.message : `unexpected: ${err.stack ?? err}`})`);
}
