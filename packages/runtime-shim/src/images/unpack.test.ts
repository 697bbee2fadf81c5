// Secure layer unpacking on the real filesystem and kernel: a corpus of hostile layers, each
// rejected with a clear error and nothing written outside the snapshot; whiteouts and opaque
// directories as overlayfs reads them, checked through a real overlay mount.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyLayer, WhiteoutMaker } from './unpack';
import { useZstdBinary } from './decompress';
import { chunks, corpus, makeTar } from './testing';
import { sha256 } from './digest';

let dir: string;
let dest: string;
let outside: string;
let whiteouts: WhiteoutMaker;
const mounts: string[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-unpack-'));
  dest = path.join(dir, 'root', 'layer');
  outside = path.join(dir, 'root');
  fs.mkdirSync(dest, { recursive: true });
  fs.mkdirSync(path.join(dir, 'wh'));
  whiteouts = new WhiteoutMaker(path.join(dir, 'wh'));
});
afterEach(() => {
  for (const m of mounts.splice(0)) { try { execFileSync('umount', ['-l', m]); } catch { /* not mounted */ } }
  fs.rmSync(dir, { recursive: true, force: true });
});

function listOutside(): string[] {
  // Everything under root/ except the layer itself, plus anything new in the temp dir.
  return fs.readdirSync(outside).filter((f) => f !== 'layer').concat(fs.readdirSync(dir).filter((f) => !['root', 'wh'].includes(f)));
}


describe('applyLayer rejects hostile layers', () => {
  it.each(corpus)('$name', async ({ entries, error, limits }) => {
    await expect(applyLayer(chunks(makeTar(entries)), dest, { whiteouts, limits })).rejects.toThrow(error);
    expect(listOutside()).toEqual([]);
    expect(fs.existsSync('/etc/evil') || fs.existsSync('/pax-evil')).toBe(false);
  });

  it('does not set xattrs or times through a directory that a later entry turned into a symlink', async () => {
    const victim = path.join(dir, 'victim');
    fs.mkdirSync(victim);
    fs.writeFileSync(path.join(victim, 'f'), 'host file');
    fs.utimesSync(victim, 1000, 1000);
    await applyLayer(chunks(makeTar([
      { name: 'd/', type: 'dir' },
      { name: 'd/f', data: 'x', pax: { 'SCHILY.xattr.user.pwned': 'yes' } },
      { name: 'd', type: 'symlink', linkname: victim },
      { name: 'e/', type: 'dir' },
      { name: 'e', type: 'symlink', linkname: victim },
    ])), dest, { whiteouts });
    expect(execFileSync('getfattr', ['-d', path.join(victim, 'f')], { encoding: 'utf8' })).not.toContain('pwned');
    expect(fs.statSync(victim).mtimeMs).toBe(1000 * 1000);
    expect(fs.readlinkSync(path.join(dest, 'd'))).toBe(victim);
  });

  it('rejects a gzip decompression bomb by the size limit', async () => {
    const bomb = zlib.gzipSync(makeTar([{ name: 'zeros', data: Buffer.alloc(64 * 1024 * 1024) }]));
    expect(bomb.length).toBeLessThan(256 * 1024);
    await expect(applyLayer(chunks(bomb, 65536), dest, { whiteouts, limits: { maxLayerBytes: 8 * 1024 * 1024 } })).rejects.toThrow(/decompression bomb/);
  });

  it('rejects truncated archives: plain, gzip and zstd', async () => {
    const tar = makeTar([{ name: 'big', data: Buffer.alloc(100_000, 7) }]);
    await expect(applyLayer(chunks(tar.subarray(0, 50_000)), dest, { whiteouts })).rejects.toThrow(/truncated archive/);
    const gz = zlib.gzipSync(tar);
    fs.rmSync(dest, { recursive: true }); fs.mkdirSync(dest);
    await expect(applyLayer(chunks(gz.subarray(0, gz.length - 20)), dest, { whiteouts })).rejects.toThrow(/bad gzip stream|truncated/);
    const zst = execFileSync('zstd', ['-q', '-c'], { input: tar });
    fs.rmSync(dest, { recursive: true }); fs.mkdirSync(dest);
    await expect(applyLayer(chunks(zst.subarray(0, zst.length - 10)), dest, { whiteouts })).rejects.toThrow(/bad zstd stream|truncated/);
  });

  it('rejects a corrupt header checksum', async () => {
    const tar = makeTar([{ name: 'f', data: 'x' }]);
    tar[0] ^= 0xff;
    await expect(applyLayer(chunks(tar), dest, { whiteouts })).rejects.toThrow(/checksum mismatch/);
  });
});

describe('applyLayer writes what a layer says', () => {
  it('unpacks files, dirs, symlinks, hardlinks, modes, owners and xattrs; hashes the diff id', async () => {
    const tar = makeTar([
      { name: './', type: 'dir' },
      { name: 'bin/', type: 'dir', mode: 0o755 },
      { name: 'bin/busybox', data: 'ELF', mode: 0o4755, uid: 0 },
      { name: 'bin/sh', type: 'symlink', linkname: '/bin/busybox' },
      { name: 'bin/rel', type: 'symlink', linkname: '../bin/busybox' },
      { name: 'home/u/f', data: 'owned', uid: 1000, gid: 1001, mode: 0o640 },
      { name: 'home/u/hl', type: 'link', linkname: 'home/u/f' },
      { name: 'ping', data: 'p', pax: { 'SCHILY.xattr.user.berth': 'yes', 'SCHILY.xattr.trusted.overlay.redirect': '/etc' } },
      { name: 'fifo', type: 'fifo' },
      { name: 'replaced', data: 'old' },
      { name: 'replaced', data: 'new' },
      { name: 'p/' + 'x'.repeat(150), data: 'long', pax: { path: 'p/' + 'y'.repeat(200) } },
    ]);
    const r = await applyLayer(chunks(zlib.gzipSync(tar)), dest, { whiteouts });
    expect(r.diffId).toBe(sha256(tar));
    expect(fs.readFileSync(path.join(dest, 'bin/busybox'), 'utf8')).toBe('ELF');
    expect(fs.statSync(path.join(dest, 'bin/busybox')).mode & 0o7777).toBe(0o4755);
    expect(fs.readlinkSync(path.join(dest, 'bin/sh'))).toBe('/bin/busybox');
    const st = fs.statSync(path.join(dest, 'home/u/f'));
    expect([st.uid, st.gid, st.mode & 0o777, st.nlink]).toEqual([1000, 1001, 0o640, 2]);
    expect(fs.statSync(path.join(dest, 'home/u/hl')).ino).toBe(st.ino);
    expect(fs.statSync(path.join(dest, 'fifo')).isFIFO()).toBe(true);
    expect(fs.readFileSync(path.join(dest, 'replaced'), 'utf8')).toBe('new');
    expect(fs.readFileSync(path.join(dest, 'p', 'y'.repeat(200)), 'utf8')).toBe('long');
    const attrs = execFileSync('getfattr', ['-d', '-m', '-', path.join(dest, 'ping')], { encoding: 'utf8' });
    expect(attrs).toContain('user.berth="yes"');
    expect(attrs).not.toContain('trusted.overlay');
    expect(fs.statSync(path.join(dest, 'home/u/f')).mtimeMs).toBe(1700000000 * 1000);
  });

  it.each([['zstd(1)', true], ['fzstd', false]])('zstd layers decompress to the same tree with %s; truncation and junk are errors', async (_n, binary) => {
    useZstdBinary(binary);
    try {
      const tar = makeTar([{ name: 'a/b', data: 'zstd!' }, { name: 'big', data: Buffer.alloc(300_000, 3) }]);
      const zst = execFileSync('zstd', ['-q', '-c'], { input: tar });
      const r = await applyLayer(chunks(zst), dest, { whiteouts });
      expect(r.diffId).toBe(sha256(tar));
      expect(fs.readFileSync(path.join(dest, 'a/b'), 'utf8')).toBe('zstd!');
      for (const bad of [zst.subarray(0, zst.length - 8), Buffer.concat([zst.subarray(0, 12), Buffer.alloc(64, 0x55)])]) {
        const d = fs.mkdtempSync(path.join(dir, 'z-'));
        await expect(applyLayer(chunks(bad), d, { whiteouts })).rejects.toThrow(/bad zstd stream|truncated/);
      }
    } finally {
      useZstdBinary(true);
    }
  });

  it('whiteouts and opaque dirs hide lower files in a real overlay mount', async () => {
    const lower = path.join(dir, 'lower');
    const upperLayer = path.join(dir, 'upper-layer');
    fs.mkdirSync(lower); fs.mkdirSync(upperLayer);
    await applyLayer(chunks(makeTar([
      { name: 'etc/gone', data: 'lower' },
      { name: 'etc/stays', data: 'lower' },
      { name: 'opq/a', data: 'lower a' },
      { name: 'opq/sub/deep', data: 'lower deep' },
    ])), lower, { whiteouts });
    await applyLayer(chunks(makeTar([
      { name: 'etc/.wh.gone', data: '' },
      { name: 'opq/.wh..wh..opq', data: '' },
      { name: 'opq/b', data: 'upper b' },
      { name: 'new', data: 'upper' },
    ])), upperLayer, { whiteouts });
    const wh = fs.statSync(path.join(upperLayer, 'etc/gone'));
    expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    expect(execFileSync('getfattr', ['-n', 'trusted.overlay.opaque', '--only-values', path.join(upperLayer, 'opq')], { encoding: 'utf8' })).toBe('y');
    const merged = path.join(dir, 'merged');
    const work = path.join(dir, 'work');
    const upper = path.join(dir, 'upper');
    for (const d of [merged, work, upper]) fs.mkdirSync(d);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${upperLayer}:${lower},upperdir=${upper},workdir=${work}`, merged]);
    mounts.push(merged);
    expect(fs.readdirSync(path.join(merged, 'etc')).sort()).toEqual(['stays']);
    expect(fs.readdirSync(path.join(merged, 'opq')).sort()).toEqual(['b']);
    expect(fs.readFileSync(path.join(merged, 'new'), 'utf8')).toBe('upper');
    expect(fs.readFileSync(path.join(merged, 'etc/stays'), 'utf8')).toBe('lower');
  });
});
