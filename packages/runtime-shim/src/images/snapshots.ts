// Layer snapshots for overlayfs: one directory per layer stack position, named by its chain id,
// holding only that layer's own files (with overlay whiteouts). A container's rootfs is an overlay
// of the chain (top first) with its own upper/work dirs; images that share a base share its
// snapshots. A snapshot is unpacked under a temporary name and renamed into place only once its
// diff id is verified, so a crash or a bad layer never leaves a committed half-snapshot.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FailedPreconditionError } from '@berth/common';
import { hexOf, isDigest, type Digest } from './digest';
import { applyLayer, WhiteoutMaker, type UnpackLimits } from './unpack';

export interface SnapshotInfo {
  chainId: Digest;
  diffId: Digest;
  parent?: Digest;
  /** Bytes of file data. */
  size: number;
  inodes: number;
  createdAt: number;
}

export class SnapshotStore {
  readonly dir: string;
  private readonly whiteouts: WhiteoutMaker;
  private readonly inflight = new Map<Digest, Promise<SnapshotInfo>>();

  constructor(root: string, private readonly limits: Partial<UnpackLimits> = {}) {
    this.dir = path.join(root, 'snapshots');
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const wdir = path.join(root, 'whiteouts');
    fs.rmSync(wdir, { recursive: true, force: true });
    fs.mkdirSync(wdir, { mode: 0o700 });
    this.whiteouts = new WhiteoutMaker(wdir);
    // Unpacks a crash interrupted.
    for (const f of fs.readdirSync(this.dir)) if (f.startsWith('tmp-')) fs.rmSync(path.join(this.dir, f), { recursive: true, force: true });
  }

  /** The directory overlayfs uses as a lower dir for this snapshot. */
  fsPath(chainId: Digest): string {
    return path.join(this.dir, hexOf(chainId), 'fs');
  }

  get(chainId: Digest): SnapshotInfo | undefined {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.dir, hexOf(chainId), 'info.json'), 'utf8')) as SnapshotInfo;
    } catch {
      return undefined;
    }
  }

  list(): SnapshotInfo[] {
    const out: SnapshotInfo[] = [];
    for (const f of fs.readdirSync(this.dir)) {
      const d = `sha256:${f}`;
      if (!isDigest(d)) continue;
      const info = this.get(d);
      if (info) out.push(info);
    }
    return out;
  }

  /**
   * Makes the snapshot for `chainId` unless it exists: `open` gives the layer's (compressed) bytes.
   * Concurrent calls for the same chain share one unpack.
   */
  ensure(chainId: Digest, diffId: Digest, parent: Digest | undefined, open: () => AsyncIterable<Buffer>): Promise<SnapshotInfo> {
    const have = this.get(chainId);
    if (have) return Promise.resolve(have);
    let p = this.inflight.get(chainId);
    if (!p) {
      p = this.unpack(chainId, diffId, parent, open).finally(() => this.inflight.delete(chainId));
      this.inflight.set(chainId, p);
    }
    return p;
  }

  private async unpack(chainId: Digest, diffId: Digest, parent: Digest | undefined, open: () => AsyncIterable<Buffer>): Promise<SnapshotInfo> {
    if (parent && !this.get(parent)) throw new FailedPreconditionError(`snapshot ${chainId}: parent ${parent} is missing`);
    const tmp = path.join(this.dir, `tmp-${randomBytes(8).toString('hex')}`);
    fs.mkdirSync(path.join(tmp, 'fs'), { recursive: true, mode: 0o700 });
    fs.chmodSync(path.join(tmp, 'fs'), 0o755);
    try {
      const r = await applyLayer(open(), path.join(tmp, 'fs'), { limits: this.limits, whiteouts: this.whiteouts });
      if (r.diffId !== diffId) throw new FailedPreconditionError(`layer ${diffId}: the uncompressed layer's digest is ${r.diffId}; it does not match the image config (corrupt or tampered layer)`);
      const info: SnapshotInfo = { chainId, diffId, ...(parent ? { parent } : {}), size: r.size, inodes: r.inodes, createdAt: Date.now() };
      fs.writeFileSync(path.join(tmp, 'info.json'), JSON.stringify(info));
      try {
        fs.renameSync(tmp, path.join(this.dir, hexOf(chainId)));
      } catch (err) {
        // Someone (another process on the same store) committed it first: theirs is as good.
        if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        fs.rmSync(tmp, { recursive: true, force: true });
      }
      return info;
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  remove(chainId: Digest): void {
    const d = path.join(this.dir, hexOf(chainId));
    // Rename first so a crash midway never leaves a committed snapshot with missing files.
    const tmp = path.join(this.dir, `tmp-${randomBytes(8).toString('hex')}`);
    try { fs.renameSync(d, tmp); } catch { return; }
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  /** Removes snapshots not in `keep`; returns what it removed. */
  gc(keep: Set<Digest>): Digest[] {
    const removed: Digest[] = [];
    for (const s of this.list()) {
      if (keep.has(s.chainId) || this.inflight.has(s.chainId)) continue;
      this.remove(s.chainId);
      removed.push(s.chainId);
    }
    return removed;
  }

  /**
   * overlayfs options for a rootfs made of the chain `chainIds` (bottom first) with the given
   * upper and work dirs; with only one layer and no upper dir the snapshot is used as it is.
   */
  overlayOptions(chainIds: Digest[], upper: string, work: string): string {
    const lower = chainIds.slice().reverse().map((c) => this.fsPath(c));
    for (const l of lower) if (/[,:]/.test(l)) throw new FailedPreconditionError(`snapshot path ${l} contains "," or ":", which overlayfs cannot take`);
    return `lowerdir=${lower.join(':')},upperdir=${upper},workdir=${work}`;
  }
}
