// The image store on a real filesystem and kernel: imports of the busybox test image as an OCI
// layout directory, an OCI archive, a docker archive and a stream; the snapshot chain mounted with
// overlayfs; shared snapshots; GC by reference; and bad images leaving nothing registered.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeAll, afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from './image-store';
import { importPath, importStream } from './import';
import { toApiImage } from './service';
import { buildTestImage, chunks, corpus, makeTar, writeLayout } from './testing';
import { hexOf, sha256 } from './digest';

let fixtures: string;
let layout: string;
let dockerArchive: string;
let zstdLayout: string;

beforeAll(() => {
  fixtures = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-image-fixtures-'));
  layout = path.join(fixtures, 'layout');
  dockerArchive = path.join(fixtures, 'docker.tar');
  zstdLayout = path.join(fixtures, 'zstd');
  buildTestImage(layout, { tag: 'v1', dockerArchive });
  buildTestImage(zstdLayout, { tag: 'zstd', compress: 'zstd' });
});
afterAll(() => fs.rmSync(fixtures, { recursive: true, force: true }));

let dir: string;
let store: ImageStore;
const mounts: string[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-images-'));
  store = new ImageStore({ root: path.join(dir, 'images') });
});
afterEach(() => {
  for (const m of mounts.splice(0)) { try { execFileSync('umount', [m]); } catch { execFileSync('umount', ['-l', m]); } }
  fs.rmSync(dir, { recursive: true, force: true });
});

function blobs(): string[] {
  return fs.readdirSync(path.join(dir, 'images', 'blobs', 'sha256')).sort();
}
function snapshotDirs(): string[] {
  return fs.readdirSync(path.join(dir, 'images', 'snapshots')).sort();
}

describe('ImageStore', () => {
  it('imports an OCI layout directory and mounts its layers as an overlay with whiteouts and opaque dirs', async () => {
    const [img] = await importPath(store, layout, { name: 'berth.test/busybox' });
    expect(img.repoTags).toEqual(['berth.test/busybox:v1']);
    expect(img.layers).toHaveLength(3);
    expect(img.chainIds).toHaveLength(3);
    expect(store.find('berth.test/busybox:v1')?.id).toBe(img.id);
    expect(store.find(img.id.slice(7, 19))?.id).toBe(img.id);
    const upper = path.join(dir, 'upper');
    const work = path.join(dir, 'work');
    const merged = path.join(dir, 'merged');
    for (const d of [upper, work, merged]) fs.mkdirSync(d);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', store.overlayOptions(img, upper, work).options, merged]);
    mounts.push(merged);
    expect(fs.existsSync(path.join(merged, 'etc/removed-later'))).toBe(false);
    expect(fs.readdirSync(path.join(merged, 'opq'))).toEqual(['b']);
    expect(fs.readFileSync(path.join(merged, 'etc/layer2'), 'utf8')).toBe('from layer 2\n');
    expect(fs.readFileSync(path.join(merged, 'etc/layer3'), 'utf8')).toBe('from layer 3\n');
    expect(fs.readlinkSync(path.join(merged, 'bin/sh'))).toBe('/bin/busybox');
    // The merged rootfs runs: busybox from layer 1 sees layer 2's and 3's files.
    const out = execFileSync('chroot', [merged, '/bin/sh', '-c', 'cat /etc/layer2 /etc/layer3; ls /opq; ls /etc'], { encoding: 'utf8' });
    expect(out).toContain('from layer 2\nfrom layer 3\nb\n');
    expect(out).not.toContain('removed-later');
    expect(fs.statSync(path.join(merged, 'tmp')).mode & 0o7777).toBe(0o1777);
  });

  it('imports a docker archive and an OCI archive stream; the same layers share snapshots', async () => {
    const withJunk = path.join(dir, 'junk.tar');
    fs.copyFileSync(dockerArchive, withJunk);
    fs.writeFileSync(path.join(dir, 'VERSION'), '1.0');
    execFileSync('tar', ['-rf', withJunk, '-C', dir, 'VERSION']);
    const [d] = await importPath(store, withJunk);
    expect(d.repoTags).toEqual(['berth.test/busybox:v1']);
    // Members no image references (docker save's VERSION, json) do not stay in the store.
    expect(blobs()).toHaveLength(5); // config, generated manifest, 3 layers
    const snaps = snapshotDirs();
    expect(snaps).toHaveLength(3);
    const ociTar = execFileSync('tar', ['-C', layout, '-cf', '-', '.'], { maxBuffer: 64 * 1024 * 1024 });
    const [o] = await importStream(store, chunks(ociTar, 65536), { name: 'berth.test/other' });
    expect(o.repoTags).toContain('berth.test/other:v1');
    // Docker archives hold uncompressed layers, the layout gzip ones: same diff ids, same chain.
    expect(o.chainIds).toEqual(d.chainIds);
    expect(snapshotDirs()).toEqual(snaps);
    expect(store.list()).toHaveLength(1); // same config digest: one image with both names
    expect(store.list()[0].repoTags.sort()).toEqual(['berth.test/busybox:v1', 'berth.test/other:v1']);
  });

  it.each(['docker-archive', 'oci-archive'])('imports a %s written by skopeo', async (kind) => {
    const out = path.join(dir, `${kind}.tar`);
    const dest = kind === 'docker-archive' ? `docker-archive:${out}:berth.test/skopeo:v2` : `oci-archive:${out}:v2`;
    execFileSync('skopeo', ['--insecure-policy', 'copy', '-q', `oci:${layout}:v1`, dest]);
    const [img] = await importPath(store, out, { name: 'berth.test/skopeo' });
    expect(img.repoTags).toEqual(['berth.test/skopeo:v2']);
    expect(fs.readFileSync(path.join(store.snapshots.fsPath(img.chainIds[1]), 'etc/layer2'), 'utf8')).toBe('from layer 2\n');
  });

  it('imports zstd layers', async () => {
    const [img] = await importPath(store, zstdLayout, { name: 'berth.test/z' });
    expect(img.layers.every((l) => l.mediaType.endsWith('+zstd'))).toBe(true);
    expect(fs.readFileSync(path.join(store.snapshots.fsPath(img.chainIds[2]), 'etc/layer3'), 'utf8')).toBe('from layer 3\n');
  });

  it('remove deletes the record and GC removes unreferenced blobs and snapshots', async () => {
    const [img] = await importPath(store, layout, { name: 'berth.test/busybox' });
    expect(blobs()).toHaveLength(5);
    expect(await store.remove('berth.test/busybox:v1')).toBe(true);
    expect(store.find(img.id)).toBeUndefined();
    expect(blobs()).toEqual([]);
    expect(snapshotDirs()).toEqual([]);
    expect(await store.remove('berth.test/busybox:v1')).toBe(false);
    // Records survive a restart of the store.
    await importPath(store, layout, { name: 'berth.test/busybox' });
    const reopened = new ImageStore({ root: path.join(dir, 'images') });
    expect(reopened.find('berth.test/busybox:v1')?.id).toBe(img.id);
  });

  it('a lease keeps the snapshots of a removed image until released, across a restart', async () => {
    const [img] = await importPath(store, layout, { name: 'berth.test/busybox' });
    await store.lease('container-1', img);
    await store.remove(img.id);
    expect(store.find(img.id)).toBeUndefined();
    expect(snapshotDirs()).toHaveLength(3);
    const reopened = new ImageStore({ root: path.join(dir, 'images') });
    await reopened.gc();
    expect(snapshotDirs()).toHaveLength(3);
    await reopened.release('container-1');
    expect(snapshotDirs()).toEqual([]);
  });

  it('concurrent leases and releases are each on disk when they return, in fewer writes than calls', async () => {
    const [img] = await importPath(store, layout, { name: 'berth.test/busybox' });
    const file = path.join(dir, 'images', 'images.json');
    const onDisk = () => Object.keys((JSON.parse(fs.readFileSync(file, 'utf8')) as { leases: Record<string, string[]> }).leases).sort();
    // Each write of the records ends in a rename onto images.json: count them (inotify).
    let writes = 0;
    const watcher = fs.watch(path.dirname(file), (_e, name) => { if (name === 'images.json') writes++; });
    const owners = Array.from({ length: 40 }, (_, i) => `c${String(i).padStart(2, '0')}`);
    try {
      await Promise.all(owners.map(async (o) => {
        await store.lease(o, img!);
        // Durable when it returns: a restarted daemon sees this lease.
        expect(onDisk()).toContain(o);
      }));
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      watcher.close();
    }
    expect(writes).toBeGreaterThan(0);
    expect(writes).toBeLessThan(owners.length);
    expect(onDisk()).toEqual(owners);
    expect(new ImageStore({ root: path.join(dir, 'images') }).find(img!.id)).toBeDefined();
    await Promise.all(owners.slice(0, 30).map(async (o) => {
      await store.release(o);
      expect(onDisk()).not.toContain(o);
    }));
    expect(onDisk()).toEqual(owners.slice(30));
    await store.remove(img!.id);
    expect(snapshotDirs()).toHaveLength(3);
    await Promise.all(owners.slice(30).map((o) => store.release(o)));
    expect(onDisk()).toEqual([]);
    expect(snapshotDirs()).toEqual([]);
  });

  it('two containers share the snapshots of one image, each with its own writable layer', async () => {
    await importPath(store, layout, { name: 'berth.test/busybox' });
    const roots: string[] = [];
    for (const c of ['c1', 'c2']) {
      const cdir = path.join(dir, 'containers', c);
      const merged = path.join(cdir, 'rootfs');
      fs.mkdirSync(merged, { recursive: true });
      const { options } = await store.prepareRootfs(c, 'berth.test/busybox:v1', cdir);
      expect(options.length).toBeLessThan(1024);
      execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', options, merged]);
      mounts.push(merged);
      roots.push(merged);
    }
    execFileSync('chroot', [roots[0], '/bin/sh', '-c', 'echo mine > /etc/c1-only; rm /etc/layer2']);
    expect(fs.readFileSync(path.join(roots[0], 'etc/c1-only'), 'utf8')).toBe('mine\n');
    expect(fs.existsSync(path.join(roots[1], 'etc/c1-only'))).toBe(false);
    expect(fs.readFileSync(path.join(roots[1], 'etc/layer2'), 'utf8')).toBe('from layer 2\n');
    // Removing the image keeps what the containers run on; the last release frees it.
    await store.remove('berth.test/busybox:v1');
    expect(snapshotDirs()).toHaveLength(3);
    for (const [i, c] of ['c1', 'c2'].entries()) {
      execFileSync('umount', [roots[i]]);
      mounts.splice(mounts.indexOf(roots[i]), 1);
      await store.removeRootfs(c, path.join(dir, 'containers', c));
    }
    expect(snapshotDirs()).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'images', 'l'))).toEqual([]);
    await expect(store.prepareRootfs('c3', 'berth.test/busybox:v1', path.join(dir, 'c3'))).rejects.toThrow(/not present; pull it first/);
  });

  it('mounts an image of 100 layers (short lower dir links keep the options under a page)', async () => {
    const oci = path.join(dir, 'deep');
    writeLayout(oci, Array.from({ length: 100 }, (_, i) => makeTar([{ name: `layers/l${i}`, data: `layer ${i}\n` }, ...(i === 99 ? [{ name: 'layers/.wh.l0', data: '' }] : [])])), 'deep');
    const [img] = await importPath(store, oci, { name: 'berth.test/deep' });
    expect(img.chainIds).toHaveLength(100);
    const cdir = path.join(dir, 'c');
    const merged = path.join(cdir, 'rootfs');
    fs.mkdirSync(merged, { recursive: true });
    const { options, cwd } = await store.prepareRootfs('deep', img.id, cdir);
    expect(cwd).toBe(path.join(dir, 'images'));
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', options, merged], { cwd });
    mounts.push(merged);
    const names = fs.readdirSync(path.join(merged, 'layers'));
    expect(names).toHaveLength(99);
    expect(names).not.toContain('l0');
    expect(fs.readFileSync(path.join(merged, 'layers/l98'), 'utf8')).toBe('layer 98\n');
  });

  it('sweeps what a crash left half-made when the store opens, keeping partial downloads', async () => {
    const root = path.join(dir, 'images');
    fs.mkdirSync(path.join(root, 'snapshots', 'tmp-deadbeef', 'fs'), { recursive: true });
    fs.writeFileSync(path.join(root, 'ingest', 'tmp-0123'), 'half');
    fs.writeFileSync(path.join(root, 'ingest', `${'a'.repeat(64)}.partial`), 'resume me');
    fs.writeFileSync(path.join(root, 'ingest', `${'b'.repeat(64)}.partial`), 'two days old');
    fs.utimesSync(path.join(root, 'ingest', `${'b'.repeat(64)}.partial`), Date.now() / 1000 - 2 * 86400, Date.now() / 1000 - 2 * 86400);
    fs.symlinkSync('../snapshots/gone/fs', path.join(root, 'l', 'dangling'));
    new ImageStore({ root });
    expect(fs.readdirSync(path.join(root, 'snapshots'))).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'ingest'))).toEqual([`${'a'.repeat(64)}.partial`]);
    expect(fs.readdirSync(path.join(root, 'l'))).toEqual([]);
  });

  it('moving the only tag to another image removes the untagged one and its unshared content', async () => {
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    const base = makeTar([{ name: 'shared', data: 'base' }]);
    writeLayout(a, [base, makeTar([{ name: 'v', data: '1' }])], 'v1');
    writeLayout(b, [base, makeTar([{ name: 'v', data: '2' }])], 'v1');
    const [ia] = await importPath(store, a, { name: 'berth.test/moving' });
    const [ib] = await importPath(store, b, { name: 'berth.test/moving' });
    expect(ib.id).not.toBe(ia.id);
    expect(store.list().map((i) => i.id)).toEqual([ib.id]);
    expect(snapshotDirs()).toHaveLength(2); // the shared base and b's top layer
    expect(blobs()).toHaveLength(4);
  });

  it('reports the numeric user or the user name of the config', async () => {
    writeLayout(path.join(dir, 'u'), [makeTar([{ name: 'f', data: 'x' }])], 'v1', { config: { User: '1000:1000' } });
    const [img] = await importPath(store, path.join(dir, 'u'), { name: 'berth.test/user' });
    expect(img.user).toBe('1000:1000');
    expect(toApiImage(img)).toMatchObject({ uid: 1000, username: '' });
    expect(toApiImage({ ...img, user: 'nobody' })).toMatchObject({ uid: undefined, username: 'nobody' });
  });

  it.each(corpus.filter((c) => !c.limits))('an image with a hostile layer ($name) is rejected and leaves nothing', async ({ entries, error }) => {
    const evil = path.join(dir, 'evil');
    writeLayout(evil, [makeTar([{ name: 'ok', data: 'fine' }]), makeTar(entries)], 'v1');
    const tar = execFileSync('tar', ['-C', evil, '-cf', '-', '.']);
    await expect(importStream(store, chunks(tar, 65536), { name: 'berth.test/evil' })).rejects.toThrow(error);
    expect(store.list()).toEqual([]);
    expect(snapshotDirs()).toEqual([]);
    expect(blobs()).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'images', 'l'))).toEqual([]);
    expect(fs.readdirSync(dir).sort()).toEqual(['evil', 'images']);
  });

  it('a layer whose bytes do not match its digest is rejected and nothing stays registered', async () => {
    const bad = path.join(dir, 'bad');
    fs.cpSync(layout, bad, { recursive: true });
    const idx = JSON.parse(fs.readFileSync(path.join(bad, 'index.json'), 'utf8'));
    const manifest = JSON.parse(fs.readFileSync(path.join(bad, 'blobs/sha256', hexOf(idx.manifests[0].digest)), 'utf8'));
    const layer = path.join(bad, 'blobs/sha256', hexOf(manifest.layers[1].digest));
    const data = fs.readFileSync(layer);
    data[data.length - 30] ^= 0x55;
    fs.writeFileSync(layer, data);
    await expect(importPath(store, bad, { name: 'berth.test/bad' })).rejects.toThrow(/digest mismatch/);
    expect(store.list()).toEqual([]);
    expect(blobs()).toEqual([]);
    expect(snapshotDirs()).toEqual([]);
  });

  it('a layer that does not match the config diff id is rejected after unpacking, leaving no snapshot', async () => {
    const bad = path.join(dir, 'bad');
    fs.cpSync(layout, bad, { recursive: true });
    const idx = JSON.parse(fs.readFileSync(path.join(bad, 'index.json'), 'utf8'));
    const mPath = path.join(bad, 'blobs/sha256', hexOf(idx.manifests[0].digest));
    const manifest = JSON.parse(fs.readFileSync(mPath, 'utf8'));
    const cPath = path.join(bad, 'blobs/sha256', hexOf(manifest.config.digest));
    const config = JSON.parse(fs.readFileSync(cPath, 'utf8'));
    config.rootfs.diff_ids[2] = sha256('not the layer');
    const cBuf = Buffer.from(JSON.stringify(config));
    fs.writeFileSync(path.join(bad, 'blobs/sha256', hexOf(sha256(cBuf))), cBuf);
    manifest.config = { ...manifest.config, digest: sha256(cBuf), size: cBuf.length };
    const mBuf = Buffer.from(JSON.stringify(manifest));
    fs.writeFileSync(path.join(bad, 'blobs/sha256', hexOf(sha256(mBuf))), mBuf);
    idx.manifests[0] = { ...idx.manifests[0], digest: sha256(mBuf), size: mBuf.length };
    fs.writeFileSync(path.join(bad, 'index.json'), JSON.stringify(idx));
    await expect(importPath(store, bad, { name: 'berth.test/bad' })).rejects.toThrow(/does not match the image config/);
    expect(store.list()).toEqual([]);
    expect(snapshotDirs()).toEqual([]);
    expect(blobs()).toEqual([]);
  });

  it('refuses an image for another platform, and selects by annotation', async () => {
    await expect(importPath(store, layout, { name: 'berth.test/x', annotations: { 'berth.io/platform': 'linux/arm64' } })).rejects.toThrow(/no image for platform linux\/arm64 \(the index has: linux\/amd64\)/);
    expect(store.list()).toEqual([]);
    await expect(importPath(store, layout, { annotations: { 'berth.io/platform': 'linux' } })).rejects.toThrow(/expected os\/arch/);
  });

  it('rejects archives that are not images, naming what is missing', async () => {
    const junk = path.join(dir, 'junk.tar');
    execFileSync('tar', ['-C', layout, '-cf', junk, 'oci-layout']);
    await expect(importPath(store, junk)).rejects.toThrow(/neither an OCI image layout/);
    await expect(importPath(store, layout, { format: 'zip' })).rejects.toThrow(/metadata.format: unknown format "zip"/);
    await expect(importPath(store, path.join(dir, 'nope'))).rejects.toThrow(/does not exist/);
  });
});
