// The content store: blobs named by their sha256, verified before they get that name, written
// atomically (ingest file, fsync, rename), resumable by expected digest, and garbage-collected by
// reference (the image store says what is referenced; leases protect blobs of an operation in
// flight).
import { createHash, randomBytes, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@berth/common';
import { hexOf, isDigest, type Digest } from './digest';

export interface Expected {
  digest: Digest;
  /** Declared size; more or fewer bytes fail the write. */
  size?: number;
}

const PARTIAL_TTL_MS = 24 * 3600 * 1000;

/** A blob that did not match what it claimed to be (digest or size). */
export class ContentMismatchError extends FailedPreconditionError {}

export class ContentWriter {
  private hash: Hash = createHash('sha256');
  private fd: number;
  private closed = false;
  offset = 0;

  constructor(
    private readonly store: ContentStore,
    private readonly file: string,
    private readonly expected: Expected | undefined,
    private readonly what: string,
    resume: boolean,
  ) {
    if (resume) {
      // Re-hash what an interrupted download left so that it can go on from where it stopped.
      try {
        const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        try {
          const buf = Buffer.allocUnsafe(1024 * 1024);
          let n: number;
          while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) { this.hash.update(buf.subarray(0, n)); this.offset += n; }
        } finally { fs.closeSync(fd); }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (expected?.size !== undefined && this.offset > expected.size) { fs.rmSync(file, { force: true }); this.offset = 0; this.hash = createHash('sha256'); }
    }
    this.fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND | fs.constants.O_NOFOLLOW | (this.offset ? 0 : fs.constants.O_TRUNC), 0o600);
  }

  /** Drops the resumed bytes (the server ignored a Range request). */
  restart(): void {
    fs.ftruncateSync(this.fd, 0);
    this.offset = 0;
    this.hash = createHash('sha256');
  }

  write(chunk: Buffer): void {
    if (this.expected?.size !== undefined && this.offset + chunk.length > this.expected.size) {
      throw new ContentMismatchError(`${this.what}: more data than the declared size of ${this.expected.size} bytes`);
    }
    let off = 0;
    while (off < chunk.length) off += fs.writeSync(this.fd, chunk, off, chunk.length - off);
    this.hash.update(chunk);
    this.offset += chunk.length;
  }

  /** Verifies and publishes the blob; returns its digest. `hold` runs before it is visible (a lease against GC). */
  commit(hold?: (d: Digest) => void): Digest {
    const digest: Digest = `sha256:${this.hash.digest('hex')}`;
    try {
      if (this.expected?.size !== undefined && this.offset !== this.expected.size) {
        throw new ContentMismatchError(`${this.what}: got ${this.offset} bytes, declared size is ${this.expected.size}`);
      }
      if (this.expected && digest !== this.expected.digest) {
        throw new ContentMismatchError(`${this.what}: digest mismatch: expected ${this.expected.digest}, got ${digest}`);
      }
      fs.fsyncSync(this.fd);
    } catch (err) {
      this.abort(false);
      throw err;
    }
    fs.closeSync(this.fd);
    this.closed = true;
    hold?.(digest);
    this.store.publish(this.file, digest);
    return digest;
  }

  /** Closes; keeps the partial file for a later resume when asked and the digest is known. */
  abort(keep: boolean): void {
    if (!this.closed) { fs.closeSync(this.fd); this.closed = true; }
    if (!keep || !this.expected) fs.rmSync(this.file, { force: true });
  }
}

export class ContentStore {
  readonly blobDir: string;
  readonly ingestDir: string;
  private readonly leases = new Map<Digest, number>();

  constructor(readonly root: string) {
    this.blobDir = path.join(root, 'blobs', 'sha256');
    this.ingestDir = path.join(root, 'ingest');
    fs.mkdirSync(this.blobDir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.ingestDir, { recursive: true, mode: 0o700 });
    // Unnamed ingests cannot be resumed: whatever a crash left of them is garbage.
    // Partial downloads are kept for a resume, but not forever.
    for (const f of fs.readdirSync(this.ingestDir)) {
      const p = path.join(this.ingestDir, f);
      if (f.startsWith('tmp-')) fs.rmSync(p, { force: true });
      else { try { if (Date.now() - fs.statSync(p).mtimeMs > PARTIAL_TTL_MS) fs.rmSync(p, { force: true }); } catch { /* gone */ } }
    }
  }

  path(d: Digest): string {
    return path.join(this.blobDir, hexOf(d));
  }

  has(d: Digest): boolean {
    try { return fs.statSync(this.path(d)).isFile(); } catch { return false; }
  }

  size(d: Digest): number {
    try { return fs.statSync(this.path(d)).size; } catch { throw new NotFoundError(`blob ${d} is not in the content store`); }
  }

  /** Starts a write. With an expected digest the ingest is named by it and can be resumed. */
  writer(expected?: Expected, what = expected?.digest ?? 'blob', opts: { resume?: boolean } = {}): ContentWriter {
    const file = expected
      ? path.join(this.ingestDir, `${hexOf(expected.digest)}.partial`)
      : path.join(this.ingestDir, `tmp-${randomBytes(8).toString('hex')}`);
    return new ContentWriter(this, file, expected, what, !!(expected && opts.resume));
  }

  /** Called by a writer after verification. */
  publish(file: string, d: Digest): void {
    fs.renameSync(file, this.path(d));
  }

  async writeStream(src: AsyncIterable<Buffer>, expected?: Expected, what?: string, hold?: (d: Digest) => void): Promise<Digest> {
    if (expected && this.has(expected.digest)) {
      hold?.(expected.digest);
      for await (const _ of src) { /* the caller's stream must still be consumed */ }
      return expected.digest;
    }
    const w = this.writer(expected, what);
    try {
      for await (const c of src) w.write(c);
    } catch (err) {
      w.abort(false);
      throw err;
    }
    return w.commit(hold);
  }

  writeBuffer(data: Buffer, expected?: Expected, what?: string): Digest {
    if (expected && this.has(expected.digest)) return expected.digest;
    const w = this.writer(expected, what);
    try { w.write(data); } catch (err) { w.abort(false); throw err; }
    return w.commit();
  }

  /** Reads a small blob (manifests, configs), refusing anything larger than `max`. */
  readBuffer(d: Digest, max = 4 * 1024 * 1024): Buffer {
    let fd: number;
    try { fd = fs.openSync(this.path(d), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW); } catch { throw new NotFoundError(`blob ${d} is not in the content store`); }
    try {
      const st = fs.fstatSync(fd);
      if (st.size > max) throw new InvalidArgumentError('blob', `${d} is ${st.size} bytes, more than the ${max} allowed for a manifest or config`);
      const buf = Buffer.allocUnsafe(st.size);
      let off = 0;
      while (off < st.size) { const n = fs.readSync(fd, buf, off, st.size - off, off); if (n === 0) break; off += n; }
      const got = createHash('sha256').update(buf.subarray(0, off)).digest('hex');
      if (`sha256:${got}` !== d) throw new ContentMismatchError(`blob ${d} is corrupt on disk (sha256 ${got})`);
      return buf.subarray(0, off);
    } finally {
      fs.closeSync(fd);
    }
  }

  readStream(d: Digest): fs.ReadStream {
    if (!this.has(d)) throw new NotFoundError(`blob ${d} is not in the content store`);
    return fs.createReadStream(this.path(d), { highWaterMark: 256 * 1024 });
  }

  list(): Digest[] {
    return fs.readdirSync(this.blobDir).map((h) => `sha256:${h}`).filter(isDigest);
  }

  delete(d: Digest): void {
    fs.rmSync(this.path(d), { force: true });
  }

  /** Protects blobs from GC while an operation that has not registered them yet runs. */
  lease(digests: Iterable<Digest>): () => void {
    const held = [...digests];
    for (const d of held) this.leases.set(d, (this.leases.get(d) ?? 0) + 1);
    return () => {
      for (const d of held) {
        const n = (this.leases.get(d) ?? 1) - 1;
        if (n <= 0) this.leases.delete(d); else this.leases.set(d, n);
      }
    };
  }

  leased(d: Digest): boolean {
    return this.leases.has(d);
  }

  /**
   * Removes every blob that is neither referenced nor leased; returns what it removed. Partial
   * downloads are kept for a resume unless `partials` is set.
   */
  gc(referenced: Set<Digest>, partials = false): Digest[] {
    const removed: Digest[] = [];
    for (const d of this.list()) {
      if (referenced.has(d) || this.leased(d)) continue;
      this.delete(d);
      removed.push(d);
    }
    if (!partials) return removed;
    for (const f of fs.readdirSync(this.ingestDir)) {
      const d = `sha256:${f.replace(/\.partial$/, '')}`;
      if (isDigest(d) && !this.leased(d)) fs.rmSync(path.join(this.ingestDir, f), { force: true });
    }
    return removed;
  }

  /** Bytes and files held. */
  usage(): { bytes: number; inodes: number } {
    let bytes = 0;
    let inodes = 0;
    for (const h of fs.readdirSync(this.blobDir)) {
      try { bytes += fs.statSync(path.join(this.blobDir, h)).size; inodes++; } catch { /* removed meanwhile */ }
    }
    return { bytes, inodes };
  }
}
