// The image side end to end: skopeo pushes the three-layer busybox image to a real registry on
// loopback, PullImage fetches it, prepareRootfs leases its snapshots, the overlay is mounted on
// the real kernel, and runc (the peer runtime; Berth's own runtime takes images with the
// container side of #8) runs a container in it that sees files from every layer, not the file a
// whiteout removed, and an opaque directory holding only the upper layer's entry.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from './image-store';
import { pullImage } from './registry';
import { startRegistry, skopeoPush, type TestRegistry } from './registry-testing';
import { buildTestImage } from './testing';

let dir: string;
let reg: TestRegistry | undefined;
let mounted: string | undefined;
let container: string | undefined;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-pull-run-')); });
afterEach(async () => {
  if (container) { try { execFileSync('runc', ['delete', '-f', container], { stdio: 'ignore' }); } catch { /* never created */ } }
  if (mounted) { try { execFileSync('umount', [mounted]); } catch { execFileSync('umount', ['-l', mounted]); } }
  container = mounted = undefined;
  await reg?.stop();
  reg = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

function runc(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => execFile('runc', args, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr })));
}

describe('pull, mount and run', () => {
  it('runs a container on a pulled image and sees the merged layers', async () => {
    reg = await startRegistry();
    const layout = path.join(dir, 'layout');
    buildTestImage(layout, { tag: 'v1' });
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    const store = new ImageStore({ root: path.join(dir, 'images') });
    const { image } = await pullImage(store, `${reg.host}/berth/busybox:v1`, {});

    const bundle = path.join(dir, 'bundle');
    const rootfs = path.join(bundle, 'rootfs');
    fs.mkdirSync(rootfs, { recursive: true });
    const id = `berth-img-${randomBytes(4).toString('hex')}`;
    const { options } = await store.prepareRootfs(id, image.id, bundle);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', options, rootfs]);
    mounted = rootfs;
    execFileSync('runc', ['spec'], { cwd: bundle });
    const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
    spec.process.terminal = false;
    spec.process.args = ['/bin/sh', '-c', 'cat /etc/layer2 /etc/layer3; ls /opq; test -e /etc/removed-later && echo WHITEOUT-FAILED; echo written > /tmp/new; id -u'];
    spec.root = { path: 'rootfs', readonly: false };
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
    container = id;
    const r = await runc(['run', '--bundle', bundle, id]);
    expect(r.out).toContain('from layer 2\nfrom layer 3\nb\n0\n');
    expect(r.out).not.toContain('WHITEOUT-FAILED');
    expect(r.code).toBe(0);
    // The container's write went to its own upper dir, not into a shared snapshot.
    expect(fs.readFileSync(path.join(bundle, 'upper', 'tmp', 'new'), 'utf8')).toBe('written\n');
    for (const c of image.chainIds) expect(fs.existsSync(path.join(store.snapshots.fsPath(c), 'tmp', 'new'))).toBe(false);
    execFileSync('umount', [rootfs]);
    mounted = undefined;
    await store.removeRootfs(id, bundle);
  });
});
