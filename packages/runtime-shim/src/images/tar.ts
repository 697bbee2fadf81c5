// A streaming tar reader (ustar, GNU long names, PAX). Hand-written rather than a library because
// it sits on the hot path of every layer and is the first thing that touches hostile bytes: each
// header is checksummed, every length is bounded, and the stream may not end inside an entry.
import { InvalidArgumentError } from '@berth/common';

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';

export interface TarHeader {
  name: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from PAX `SCHILY.xattr.*` records. */
  xattrs: Map<string, Buffer>;
}

export interface TarLimits {
  /** Largest PAX or GNU long-name record accepted. */
  maxMetaBytes: number;
}

const BLOCK = 512;

/** Thrown for malformed or truncated archives; `field` names what was being read. */
export class TarFormatError extends InvalidArgumentError {
  constructor(field: string, message: string) { super(field, message); }
}

/** Pulls exact byte counts out of an async stream of chunks without copying when it can. */
class ChunkReader {
  private chunk: Buffer = Buffer.alloc(0);
  private off = 0;
  private done = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    while (this.off >= this.chunk.length) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) { this.done = true; return false; }
      this.chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
      this.off = 0;
    }
    return true;
  }

  /** Exactly n bytes, or null at a clean end of stream; throws if the stream ends midway. */
  async read(n: number, what: string): Promise<Buffer | null> {
    if (!(await this.fill())) return null;
    if (this.chunk.length - this.off >= n) {
      const b = this.chunk.subarray(this.off, this.off + n);
      this.off += n;
      return b;
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      if (!(await this.fill())) throw new TarFormatError('layer', `truncated archive: stream ended inside ${what}`);
      const take = Math.min(n - got, this.chunk.length - this.off);
      this.chunk.copy(out, got, this.off, this.off + take);
      this.off += take;
      got += take;
    }
    return out;
  }

  /** Yields the next n bytes as they arrive. */
  async *stream(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw new TarFormatError('layer', `truncated archive: stream ended inside ${what}`);
      const take = Math.min(left, this.chunk.length - this.off);
      const b = this.chunk.subarray(this.off, this.off + take);
      this.off += take;
      left -= take;
      yield b;
    }
  }

  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.stream(n, what)) { /* discard */ }
  }
}

function cstr(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

function num(b: Buffer, off: number, len: number, field: string): number {
  if (b[off] & 0x80) {
    // GNU base-256: big-endian two's complement with the top bit as the marker.
    if (b[off] & 0x40) throw new TarFormatError('layer', `negative ${field} in tar header`);
    let v = b[off] & 0x3f;
    for (let i = off + 1; i < off + len; i++) {
      v = v * 256 + b[i];
      if (v > Number.MAX_SAFE_INTEGER) throw new TarFormatError('layer', `${field} in tar header is too large`);
    }
    return v;
  }
  const s = b.toString('latin1', off, off + len).replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError('layer', `corrupt tar header: ${field} "${s}" is not octal`);
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw new TarFormatError('layer', `${field} in tar header is too large`);
  return v;
}

function checksumOk(h: Buffer): boolean {
  const want = num(h, 148, 8, 'checksum');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return sum === want;
}

function parsePax(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < buf.length) {
    if (buf[off] === 0) break;
    const sp = buf.indexOf(0x20, off);
    if (sp < 0) throw new TarFormatError('layer', 'corrupt PAX header: record without length');
    const lenStr = buf.toString('latin1', off, sp);
    if (!/^[0-9]+$/.test(lenStr)) throw new TarFormatError('layer', 'corrupt PAX header: bad record length');
    const len = parseInt(lenStr, 10);
    if (len <= sp - off + 1 || off + len > buf.length || buf[off + len - 1] !== 0x0a) throw new TarFormatError('layer', 'corrupt PAX header: record length out of range');
    const rec = buf.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarFormatError('layer', 'corrupt PAX header: record without "="');
    out.set(rec.toString('utf8', 0, eq), rec.subarray(eq + 1));
    off += len;
  }
  return out;
}

const TYPES: Record<string, TarEntryType> = { '0': 'file', '\0': 'file', '7': 'file', '1': 'link', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo' };

export interface TarEntry {
  header: TarHeader;
  /** The entry's data; must be consumed (or left: the reader skips what is left). */
  body: AsyncGenerator<Buffer>;
}

/** Reads a tar stream entry by entry. The caller must finish with one entry before asking for the next. */
export async function* readTar(source: AsyncIterable<Buffer>, limits: TarLimits): AsyncGenerator<TarEntry> {
  const r = new ChunkReader(source[Symbol.asyncIterator]());
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Map<string, Buffer> | undefined;
  for (;;) {
    const h = await r.read(BLOCK, 'a header');
    if (!h) break;
    if (h.every((x) => x === 0)) break;
    if (!checksumOk(h)) throw new TarFormatError('layer', 'corrupt tar header: checksum mismatch');
    const flag = String.fromCharCode(h[156]);
    const size = num(h, 124, 12, 'size');
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > limits.maxMetaBytes) throw new TarFormatError('layer', `tar ${flag === 'x' || flag === 'g' ? 'PAX' : 'long name'} record of ${size} bytes exceeds the limit of ${limits.maxMetaBytes}`);
      const data = (await r.read(padded, 'a metadata record')) ?? Buffer.alloc(0);
      if (data.length < padded) throw new TarFormatError('layer', 'truncated archive: stream ended inside a metadata record');
      const body = data.subarray(0, size);
      if (flag === 'x') pax = parsePax(body);
      else if (flag === 'L') longName = cstr(body, 0, body.length);
      else if (flag === 'K') longLink = cstr(body, 0, body.length);
      // Global PAX headers ('g') carry defaults no layer tool relies on; they are read and ignored.
      continue;
    }
    const type = TYPES[flag];
    if (!type) throw new TarFormatError('layer', `unsupported tar entry type "${flag.replace(/[^\x20-\x7e]/g, '?')}"`);
    let name = cstr(h, 0, 100);
    if (h.toString('latin1', 257, 262) === 'ustar') {
      const prefix = cstr(h, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    let linkname = cstr(h, 157, 100);
    const header: TarHeader = {
      name,
      type,
      mode: num(h, 100, 8, 'mode') & 0o7777,
      uid: num(h, 108, 8, 'uid'),
      gid: num(h, 116, 8, 'gid'),
      size: type === 'file' ? size : 0,
      mtime: num(h, 136, 12, 'mtime'),
      linkname,
      devmajor: type === 'char' || type === 'block' ? num(h, 329, 8, 'devmajor') : 0,
      devminor: type === 'char' || type === 'block' ? num(h, 337, 8, 'devminor') : 0,
      xattrs: new Map(),
    };
    if (longName !== undefined) header.name = longName;
    if (longLink !== undefined) header.linkname = longLink;
    if (pax) {
      for (const [k, v] of pax) {
        const s = (): string => v.toString('utf8');
        if (k === 'path') header.name = s();
        else if (k === 'linkpath') header.linkname = s();
        else if (k === 'size') { const n = Number(s()); if (!Number.isSafeInteger(n) || n < 0) throw new TarFormatError('layer', 'corrupt PAX size'); if (type === 'file') header.size = n; }
        else if (k === 'uid' || k === 'gid') { const n = Number(s()); if (!Number.isSafeInteger(n) || n < 0) throw new TarFormatError('layer', `corrupt PAX ${k}`); header[k] = n; }
        else if (k === 'mtime') { const n = Number(s()); if (Number.isFinite(n)) header.mtime = Math.floor(n); }
        else if (k.startsWith('SCHILY.xattr.')) header.xattrs.set(k.slice('SCHILY.xattr.'.length), v);
      }
    }
    linkname = header.linkname;
    longName = longLink = undefined;
    pax = undefined;
    // Only regular files carry data; hardlinks and others with a size field have none to read
    // except in odd writers, whose bytes are skipped.
    const dataBytes = type === 'file' ? header.size : size;
    const dataPadded = Math.ceil(dataBytes / BLOCK) * BLOCK;
    const body = type === 'file' ? r.stream(dataBytes, `the data of "${header.name}"`) : (async function* () { /* empty */ })();
    yield { header, body };
    // Drain whatever the consumer left, then the padding.
    if (type === 'file') for await (const _ of body) { /* drain */ }
    else if (dataBytes) await r.skip(dataBytes, `the data of "${header.name}"`);
    if (dataPadded > dataBytes) await r.skip(dataPadded - dataBytes, `the padding of "${header.name}"`);
  }
  if (longName !== undefined || longLink !== undefined || pax) throw new TarFormatError('layer', 'truncated archive: metadata record without an entry');
}
