// Regression for a hang seen in about one import in three on a fresh berth-runtime-shim: the
// daemon's OrphanReaper (it is a child subreaper) reaped the image code's helper processes
// (mknod for the first whiteout, setfattr for opaque dirs, zstd) before libuv could, so their
// 'close' never came and the unpack of the test image's second layer waited forever, leaving its
// snapshots/tmp-* dir behind. Tested twice: in-process, with the real reaper polling as hard as it
// can while layers with whiteouts, opaque dirs, hard links and zstd are applied; and end to end,
// importing the test image into fresh berth-runtime-shim processes over gRPC.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { runtime } from '@berth/api';
import { createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { containerSyscalls } from '@berth/native';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hookPids } from '../hooks';
import { OrphanReaper } from '../reaper';
import { runHelper } from './children';
import { applyLayer, WhiteoutMaker } from './unpack';
import { useZstdBinary } from './decompress';
import { buildTestImage, makeTar } from './testing';

const bin = path.resolve(__dirname, '..', '..', 'dist', 'bin', 'berth-runtime-shim.js');

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-helper-reap-')); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Fails (instead of hanging the run) when `p` has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => { t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); })]).finally(() => clearTimeout(t));
}

// What the test image's second layer holds: a whiteout, an opaque dir, a hard link pair.
const layer2 = makeTar([
  { name: 'etc/', type: 'dir' },
  { name: 'etc/layer2', data: 'from layer 2\n' },
  { name: 'etc/.wh.removed-later', data: '' },
  { name: 'opq/', type: 'dir' },
  { name: 'opq/.wh..wh..opq', data: '' },
  { name: 'opq/b', data: 'b from layer 2\n' },
  { name: 'usr/share/hard1', data: 'hardlinked\n' },
  { name: 'usr/share/hard2', type: 'link', linkname: 'usr/share/hard1' },
]);

async function* once(b: Buffer): AsyncGenerator<Buffer> { yield b; }

describe('image helper processes and the OrphanReaper', () => {
  it('applies whiteout/opaque/zstd layers while the real reaper reaps every unregistered zombie', async () => {
    const reaper = new OrphanReaper(containerSyscalls, () => hookPids);
    reaper.start();
    // Besides SIGCHLD, reap on every turn of the loop: the window in which a helper is a zombie
    // libuv has not collected yet is then always covered, so an unregistered helper is stolen.
    let polling = true;
    const stolen: number[] = [];
    const poll = (): void => { if (!polling) return; stolen.push(...reaper.reap()); setImmediate(poll); };
    setImmediate(poll);
    const zst = execFileSync('zstd', ['-q', '-c'], { input: layer2 });
    try {
      for (let i = 0; i < 30; i++) {
        const dest = path.join(dir, `l${i}`, 'fs');
        fs.mkdirSync(dest, { recursive: true });
        fs.mkdirSync(path.join(dir, `l${i}`, 'wh'));
        // A fresh WhiteoutMaker makes its template with mknod, as a fresh daemon's first import does.
        const whiteouts = new WhiteoutMaker(path.join(dir, `l${i}`, 'wh'));
        useZstdBinary(true);
        await within(applyLayer(once(i % 3 === 2 ? zst : layer2), dest, { whiteouts }), 10_000, `layer ${i}`);
        expect(fs.statSync(path.join(dest, 'etc', 'removed-later')).rdev).toBe(0);
        expect(fs.lstatSync(path.join(dest, 'etc', 'removed-later')).isCharacterDevice()).toBe(true);
        expect(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'trusted.overlay.opaque', path.join(dest, 'opq')], { encoding: 'utf8' })).toBe('y');
        expect(fs.statSync(path.join(dest, 'usr/share/hard2')).ino).toBe(fs.statSync(path.join(dest, 'usr/share/hard1')).ino);
        fs.rmSync(path.join(dir, `l${i}`), { recursive: true, force: true });
      }
    } finally {
      polling = false;
      reaper.stop();
    }
    // The reaper ran and found nothing of ours to take; registrations are all released.
    expect(stolen).toEqual([]);
    expect([...hookPids]).toEqual([]);
  }, 120_000);

  it('a helper that never finishes fails with a clear error within its time bound', async () => {
    const t0 = Date.now();
    await expect(runHelper('sleep', ['30'], { timeoutMs: 300 })).rejects.toThrow(/sleep 30 did not finish within 300 ms/);
    expect(Date.now() - t0).toBeLessThan(5000);
    await expect(runHelper('false', [])).rejects.toThrow(/false\s+failed \(1\)/);
  });
});

describe('berth-runtime-shim imports the test image (layers with whiteouts, opaque dirs, hard links)', () => {
  let svc: ServiceProcess | undefined;
  let layoutTar: Buffer;
  beforeAll(() => {
    const layout = path.join(dir, 'layout');
    buildTestImage(layout, { tag: 'v1' });
    layoutTar = execFileSync('tar', ['-C', layout, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
  });
  afterEach(async () => { await svc?.stop(); svc = undefined; });

  it('every time, into a fresh daemon, and a restart removes an unpack a crash left behind', async () => {
    for (let i = 0; i < 6; i++) {
      const run = path.join(dir, `shim${i}`);
      const state = path.join(run, 'state');
      const stale = path.join(state, 'images', 'snapshots', 'tmp-00c0ffee00c0ffee');
      if (i === 0) fs.mkdirSync(path.join(stale, 'fs', 'etc'), { recursive: true });
      const sock = path.join(run, 's.sock');
      svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', state]);
      expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
      expect(fs.existsSync(stale)).toBe(false);
      const client = createClient(runtime.ImageServiceClient, { target: `unix://${sock}` });
      try {
        const res = await within(new Promise<runtime.ImportImageResponse>((resolve, reject) => {
          const call = client.importImage((err, r) => (err ? reject(err) : resolve(r)));
          call.write({ metadata: runtime.ImportImageMetadata.fromPartial({ name: 'berth.test/busybox:v1' }) });
          call.write({ chunk: layoutTar });
          call.end();
        }), 20_000, `import ${i}`);
        expect(res.images.map((im) => im.repoTags).flat()).toContain('berth.test/busybox:v1');
      } finally {
        client.close();
      }
      const snaps = fs.readdirSync(path.join(state, 'images', 'snapshots'));
      expect(snaps.filter((s) => s.startsWith('tmp-'))).toEqual([]);
      expect(snaps).toHaveLength(3);
      await svc.stop();
      svc = undefined;
      fs.rmSync(run, { recursive: true, force: true });
    }
  }, 170_000);
});
