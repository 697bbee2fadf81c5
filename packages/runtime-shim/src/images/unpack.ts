// Applies one image layer (a tar, maybe compressed) to an empty snapshot directory, treating every
// byte as hostile. The directory is private to the store (no container runs in it while it is
// written), so the only changes to the tree are our own; that is what makes the lexical checks
// below plus an lstat of each parent sound without openat2(RESOLVE_IN_ROOT):
//   - names are normalised; absolute names and `..` components are rejected, never rewritten;
//   - no parent of an entry may be a symlink (written earlier in this layer) or a non-directory;
//   - a hardlink must name a file already written in this layer, by the same rules;
//   - a relative symlink may not climb out of the layer; an absolute one is rooted in the
//     container's root at run time and is kept (every image has /bin/sh -> /bin/busybox-like links);
//   - files are created O_EXCL|O_NOFOLLOW, device nodes only when allowed, and the decompressed
//     stream, the number of entries and every name are bounded (decompression bombs);
//   - the whole stream is hashed: the caller compares the diff id with the image config.
// Whiteouts (`.wh.NAME`) become overlayfs whiteouts (char 0:0) and `.wh..wh..opq` an opaque
// directory (trusted.overlay.opaque=y).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError } from '@berth/common';
import { runHelper } from './children';
import { decompress } from './decompress';
import { readTar, type TarHeader } from './tar';
import type { Digest } from './digest';

export interface UnpackLimits {
  /** Most bytes the decompressed layer may have. */
  maxLayerBytes: number;
  maxEntries: number;
  /** Longest entry name or link target, in bytes. */
  maxPathBytes: number;
  /** Largest PAX or GNU long-name record. */
  maxMetaBytes: number;
  /** Create device nodes from layers (off: they are rejected). */
  allowDevices: boolean;
}

export const DEFAULT_UNPACK_LIMITS: UnpackLimits = {
  maxLayerBytes: 64 * 1024 ** 3,
  maxEntries: 2_000_000,
  maxPathBytes: 4096,
  maxMetaBytes: 1024 * 1024,
  allowDevices: false,
};

export interface UnpackResult {
  diffId: Digest;
  /** Bytes of the decompressed tar. */
  tarBytes: number;
  /** Bytes of file data written. */
  size: number;
  /** Entries created (inodes, roughly). */
  inodes: number;
}

/** Makes overlayfs whiteouts by hardlinking one char 0:0 device, so that no mknod(2) is needed per entry. */
export class WhiteoutMaker {
  private template: string | undefined;
  private seq = 0;
  constructor(private readonly dir: string) {}

  private async newTemplate(): Promise<string> {
    const p = path.join(this.dir, `whiteout-${process.pid}-${Date.now()}-${this.seq++}`);
    await runHelper('mknod', ['-m', '000', p, 'c', '0', '0']);
    return p;
  }

  async make(target: string): Promise<void> {
    this.template ??= await this.newTemplate();
    try {
      fs.linkSync(this.template, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EMLINK' && (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.template = await this.newTemplate();
      fs.linkSync(this.template, target);
    }
  }
}

function bad(name: string, message: string): InvalidArgumentError {
  return new InvalidArgumentError('layer', `entry ${JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}...` : name)}: ${message}`);
}

/** Splits an entry name into safe components; rejects absolute names, `..` and NUL. */
export function entryComponents(name: string, limits: UnpackLimits): string[] {
  if (Buffer.byteLength(name) > limits.maxPathBytes) throw bad(name, `name longer than ${limits.maxPathBytes} bytes`);
  if (name.includes('\0')) throw bad(name, 'name contains NUL');
  if (name.startsWith('/')) throw bad(name, 'absolute path');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw bad(name, 'path contains ".."');
  if (parts.some((p) => Buffer.byteLength(p) > 255)) throw bad(name, 'a path component is longer than 255 bytes');
  return parts;
}

// Xattrs a layer may set. trusted.* (overlayfs' own metadata among them) and security.* other
// than file capabilities would let an image steer the host's kernel.
function xattrAllowed(name: string): boolean {
  return name.startsWith('user.') || name === 'security.capability';
}

function escapeDumpPath(p: string): string {
  let out = '';
  for (const byte of Buffer.from(p)) {
    out += byte > 0x20 && byte < 0x7f && byte !== 0x5c && byte !== 0x3d && byte !== 0x22 ? String.fromCharCode(byte) : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/** Applies a layer stream to `dest` (an empty directory that exists). */
export async function applyLayer(
  source: AsyncIterable<Buffer>,
  dest: string,
  opts: { limits?: Partial<UnpackLimits>; whiteouts: WhiteoutMaker },
): Promise<UnpackResult> {
  const limits = { ...DEFAULT_UNPACK_LIMITS, ...opts.limits };
  const hash = createHash('sha256');
  let tarBytes = 0;
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const c of decompress(source)) {
      tarBytes += c.length;
      if (tarBytes > limits.maxLayerBytes) {
        throw new InvalidArgumentError('layer', `layer expands past the limit of ${limits.maxLayerBytes} bytes (decompression bomb?)`);
      }
      hash.update(c);
      yield c;
    }
  }
  const stream = counted();
  // Directories known to be real directories of this layer ("" is the root).
  const dirs = new Set<string>(['']);
  const dirTimes: Array<[string, number]> = [];
  const xattrs: Array<{ rel: string; name: string; value: Buffer }> = [];
  let entries = 0;
  let size = 0;
  const abs = (rel: string): string => (rel ? path.join(dest, rel) : dest);

  const ensureParents = (parts: string[], name: string): void => {
    let rel = '';
    for (let i = 0; i < parts.length - 1; i++) {
      rel = rel ? `${rel}/${parts[i]}` : parts[i];
      if (dirs.has(rel)) continue;
      let st: fs.Stats | undefined;
      try { st = fs.lstatSync(abs(rel)); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; }
      if (!st) { fs.mkdirSync(abs(rel), { mode: 0o755 }); entries++; }
      else if (st.isSymbolicLink()) throw bad(name, `parent "${rel}" is a symlink; entries may not be written through links`);
      else if (!st.isDirectory()) throw bad(name, `parent "${rel}" is not a directory`);
      dirs.add(rel);
    }
  };

  // Removes what is at rel (a later entry replaces an earlier one, as tar does).
  const clear = (rel: string, keepDir: boolean): boolean => {
    let st: fs.Stats;
    try { st = fs.lstatSync(abs(rel)); } catch { return false; }
    if (st.isDirectory()) {
      if (keepDir) return true;
      fs.rmSync(abs(rel), { recursive: true, force: true });
      for (const d of [...dirs]) if (d === rel || d.startsWith(`${rel}/`)) dirs.delete(d);
      return false;
    }
    fs.unlinkSync(abs(rel));
    return false;
  };

  const own = (p: string, h: TarHeader, link = false): void => {
    if (h.uid > 0xfffffffe || h.gid > 0xfffffffe) throw bad(h.name, 'uid/gid out of range');
    if (link) fs.lchownSync(p, h.uid, h.gid);
    else fs.chownSync(p, h.uid, h.gid);
  };

  try {
    for await (const { header: h, body } of readTar(stream, limits)) {
      if (++entries > limits.maxEntries) throw new InvalidArgumentError('layer', `layer has more than ${limits.maxEntries} entries`);
      const parts = entryComponents(h.name, limits);
      if (parts.length === 0) continue; // the layer's root "./": its metadata is the lower layers' business
      const base = parts[parts.length - 1];
      const rel = parts.join('/');
      if (base.startsWith('.wh.')) {
        ensureParents(parts, h.name);
        const dirRel = parts.slice(0, -1).join('/');
        if (base === '.wh..wh..opq') {
          xattrs.push({ rel: dirRel || '.', name: 'trusted.overlay.opaque', value: Buffer.from('y') });
        } else if (!base.startsWith('.wh..wh.')) {
          const hidden = base.slice(4);
          if (hidden === '' || hidden === '.' || hidden === '..') throw bad(h.name, 'whiteout of an invalid name');
          const target = dirRel ? `${dirRel}/${hidden}` : hidden;
          clear(target, false);
          await opts.whiteouts.make(abs(target));
        }
        continue; // other .wh..wh.* names are AUFS bookkeeping with no meaning for overlayfs
      }
      ensureParents(parts, h.name);
      const p = abs(rel);
      switch (h.type) {
        case 'dir': {
          if (!clear(rel, true)) fs.mkdirSync(p, { mode: 0o700 });
          own(p, h);
          fs.chmodSync(p, h.mode);
          dirs.add(rel);
          dirTimes.push([rel, h.mtime]);
          break;
        }
        case 'file': {
          if (h.size > limits.maxLayerBytes) throw bad(h.name, `file of ${h.size} bytes exceeds the layer limit of ${limits.maxLayerBytes} bytes (decompression bomb?)`);
          clear(rel, false);
          const fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
          try {
            for await (const chunk of body) {
              let off = 0;
              while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off);
            }
            fs.fchownSync(fd, h.uid, h.gid);
            fs.fchmodSync(fd, h.mode); // after chown, which clears set-id bits
            fs.futimesSync(fd, h.mtime, h.mtime);
          } finally {
            fs.closeSync(fd);
          }
          size += h.size;
          break;
        }
        case 'symlink': {
          const t = h.linkname;
          if (!t) throw bad(h.name, 'symlink with an empty target');
          if (t.includes('\0') || Buffer.byteLength(t) > limits.maxPathBytes) throw bad(h.name, 'symlink target is too long or contains NUL');
          if (!t.startsWith('/')) {
            let depth = parts.length - 1;
            for (const c of t.split('/')) {
              if (c === '..') depth--;
              else if (c !== '' && c !== '.') depth++;
              if (depth < 0) throw bad(h.name, `symlink target "${t}" points out of the layer`);
            }
          }
          clear(rel, false);
          fs.symlinkSync(t, p);
          own(p, h, true);
          fs.lutimesSync(p, h.mtime, h.mtime);
          break;
        }
        case 'link': {
          const tparts = entryComponents(h.linkname, limits);
          if (tparts.length === 0) throw bad(h.name, 'hardlink to the layer root');
          const trel = tparts.join('/');
          for (let i = 1; i < tparts.length; i++) {
            if (!dirs.has(tparts.slice(0, i).join('/'))) throw bad(h.name, `hardlink target "${h.linkname}" is not in this layer`);
          }
          let st: fs.Stats;
          try { st = fs.lstatSync(abs(trel)); } catch { throw bad(h.name, `hardlink target "${h.linkname}" is not in this layer`); }
          if (st.isDirectory()) throw bad(h.name, 'hardlink to a directory');
          if (trel === rel) break;
          clear(rel, false);
          fs.linkSync(abs(trel), p);
          break;
        }
        case 'char':
        case 'block':
        case 'fifo': {
          if (h.type !== 'fifo' && !limits.allowDevices) throw bad(h.name, `${h.type} device ${h.devmajor}:${h.devminor} is not allowed in a layer`);
          clear(rel, false);
          const kind = h.type === 'fifo' ? ['p'] : [h.type === 'char' ? 'c' : 'b', String(h.devmajor), String(h.devminor)];
          await runHelper('mknod', ['-m', '000', '--', p, ...kind]);
          own(p, h);
          fs.chmodSync(p, h.mode);
          break;
        }
      }
      if (h.xattrs.size && (h.type === 'file' || h.type === 'dir')) {
        for (const [name, value] of h.xattrs) if (xattrAllowed(name)) xattrs.push({ rel, name, value });
      }
    }
    // Anything after the end-of-archive blocks still counts for the diff id.
    for await (const _ of stream) { /* hash the tail */ }
  } finally {
    await stream.return(undefined);
  }
  // Xattrs and directory times are applied after the last entry, and a later entry may have
  // replaced a directory on their path with a symlink: each path is checked again, component by
  // component, and skipped unless it is still a real file or directory inside the layer.
  const stillInLayer = (rel: string): boolean => {
    if (rel === '.' || rel === '') return true;
    const parts = rel.split('/');
    let cur = dest;
    for (let i = 0; i < parts.length; i++) {
      cur = path.join(cur, parts[i]);
      let st: fs.Stats;
      try { st = fs.lstatSync(cur); } catch { return false; }
      if (i < parts.length - 1 ? !st.isDirectory() : !(st.isDirectory() || st.isFile())) return false;
    }
    return true;
  };
  const checked = xattrs.filter((x) => stillInLayer(x.rel));
  if (checked.length) {
    // One setfattr for the whole layer (Node has no setxattr); paths are relative to dest.
    let dump = '';
    let last = '';
    for (const x of checked) {
      if (x.rel !== last) { dump += `\n# file: ${escapeDumpPath(x.rel)}\n`; last = x.rel; }
      dump += `${x.name}=0s${x.value.toString('base64')}\n`;
    }
    await runHelper('setfattr', ['-h', '--restore=-'], { cwd: dest, input: dump });
  }
  for (let i = dirTimes.length - 1; i >= 0; i--) {
    const [rel, t] = dirTimes[i];
    if (stillInLayer(rel)) fs.lutimesSync(abs(rel), t, t);
  }
  return { diffId: `sha256:${hash.digest('hex')}`, tarBytes, size, inodes: entries };
}
