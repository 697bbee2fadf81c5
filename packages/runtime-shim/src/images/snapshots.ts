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
  /** Short name under `<root>/l/` linking to the snapshot's fs dir (keeps overlay options short). */
  link?: string;
  /** Bytes of file data. */
  size: number;
  inodes: number;
  createdAt: number;
}

export class SnapshotStore {
  readonly dir: string;
  /** Short symlinks to snapshot fs dirs: overlayfs takes at most a page of mount options. */
  readonly linkDir: string;
  private readonly whiteouts: WhiteoutMaker;
  private readonly inflight = new Map<Digest, Promise<SnapshotInfo>>();

  constructor(root: string, private readonly limits: Partial<UnpackLimits> = {}) {
    this.dir = path.join(root, 'snapshots');
    this.linkDir = path.join(root, 'l');
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.linkDir, { recursive: true, mode: 0o700 });
    const wdir = path.join(root, 'whiteouts');
    fs.rmSync(wdir, { recursive: true, force: true });
    fs.mkdirSync(wdir, { mode: 0o700 });
    this.whiteouts = new WhiteoutMaker(wdir);
    // Unpacks a crash interrupted.
    for (const f of fs.readdirSync(this.dir)) if (f.startsWith('tmp-')) fs.rmSync(path.join(this.dir, f), { recursive: true, force: true });
    this.sweepLinks();
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
      const link = randomBytes(8).toString('base64url').replace(/[-_]/g, 'x');
      const info: SnapshotInfo = { chainId, diffId, ...(parent ? { parent } : {}), link, size: r.size, inodes: r.inodes, createdAt: Date.now() };
      fs.writeFileSync(path.join(tmp, 'info.json'), JSON.stringify(info));
      // The link first: a committed snapshot always has its link (a dangling one is swept).
      fs.symlinkSync(path.join('..', 'snapshots', hexOf(chainId), 'fs'), path.join(this.linkDir, link));
      try {
        fs.renameSync(tmp, path.join(this.dir, hexOf(chainId)));
      } catch (err) {
        fs.rmSync(path.join(this.linkDir, link), { force: true });
        // Someone (another process on the same store) committed it first: theirs is as good.
        if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        fs.rmSync(tmp, { recursive: true, force: true });
        return this.get(chainId) ?? info;
      }
      return info;
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  remove(chainId: Digest): void {
    const d = path.join(this.dir, hexOf(chainId));
    const link = this.get(chainId)?.link;
    // Rename first so a crash midway never leaves a committed snapshot with missing files.
    const tmp = path.join(this.dir, `tmp-${randomBytes(8).toString('hex')}`);
    try { fs.renameSync(d, tmp); } catch { return; }
    if (link) fs.rmSync(path.join(this.linkDir, link), { force: true });
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  /** Removes links whose snapshot is gone (a crash between link and commit, or during remove). */
  private sweepLinks(): void {
    for (const l of fs.readdirSync(this.linkDir)) {
      const p = path.join(this.linkDir, l);
      if (!fs.existsSync(p)) fs.rmSync(p, { force: true });
    }
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
   * upper and work dirs. The kernel takes one page of options: when absolute lower dirs do not
   * fit, they are given relative to `cwd`, and the mount must be made from there (as Docker's
   * overlay2 does for deep images).
   */
  overlayOptions(chainIds: Digest[], upper: string, work: string): { options: string; cwd?: string } {
    const links = chainIds.slice().reverse().map((c) => {
      const link = this.get(c)?.link;
      if (!link) throw new FailedPreconditionError(`snapshot ${c} is missing`);
      return link;
    });
    for (const p of [upper, work]) if (/[,:]/.test(p)) throw new FailedPreconditionError(`${p} contains "," or ":", which overlayfs cannot take`);
    const tail = `,upperdir=${upper},workdir=${work}`;
    const absolute = `lowerdir=${links.map((l) => path.join(this.linkDir, l)).join(':')}${tail}`;
    if (absolute.length < 4000) return { options: absolute };
    const relative = `lowerdir=${links.map((l) => `l/${l}`).join(':')}${tail}`;
    if (relative.length >= 4000) throw new FailedPreconditionError(`image has too many layers (${chainIds.length}) for one overlay mount`);
    return { options: relative, cwd: path.dirname(this.linkDir) };
  }
}
