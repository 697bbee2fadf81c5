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
import { buildTestImage, chunks } from './testing';
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
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', store.overlayOptions(img, upper, work), merged]);
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
    const [d] = await importPath(store, dockerArchive);
    expect(d.repoTags).toEqual(['berth.test/busybox:v1']);
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
