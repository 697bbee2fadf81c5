// Image records on top of the content and snapshot stores: what the ImageService serves. An
// image is registered only after every blob is verified and every layer is unpacked and checked
// against the config's diff ids; a failure leaves no record, and the garbage collection that
// follows removes the snapshots and blobs nothing references.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@berth/common';
import { ContentStore } from './content-store';
import { chainIds, isDigest, type Digest } from './digest';
import { formatPlatform, hostPlatform, parseConfig, parseManifestOrIndex, parsePlatform, platformMatches, selectManifest, type ImageManifest, type Platform } from './manifest';
import { formatReference, parseReference, repoName } from './reference';
import { SnapshotStore } from './snapshots';
import type { UnpackLimits } from './unpack';

export interface LayerRecord {
  digest: Digest;
  mediaType: string;
  size: number;
  diffId: Digest;
}

export interface ImageRecord {
  /** The config digest (the CRI image id). */
  id: Digest;
  repoTags: string[];
  repoDigests: string[];
  manifestDigest: Digest;
  indexDigest?: Digest;
  layers: LayerRecord[];
  chainIds: Digest[];
  /** Bytes of the image's blobs (manifest, config, layers). */
  size: number;
  /** The config's User. */
  user: string;
  platform: string;
  pinned: boolean;
  createdAt: number;
}

/** Progress of a pull or import, one layer (or manifest/config) at a time. */
export interface Progress {
  digest: string;
  current: number;
  total: number;
  status: 'resolving' | 'downloading' | 'verifying' | 'extracting' | 'exists' | 'done';
}

export type ProgressFn = (p: Progress) => void;

export interface ImageStoreOptions {
  root: string;
  limits?: Partial<UnpackLimits>;
  /** Platform images are selected for (default: this machine's). */
  platform?: Platform;
}

/** Annotation on an ImageSpec that picks a platform other than the host's. */
export const PLATFORM_ANNOTATION = 'berth.io/platform';

export class ImageStore {
  readonly content: ContentStore;
  readonly snapshots: SnapshotStore;
  readonly platform: Platform;
  readonly root: string;
  private images = new Map<Digest, ImageRecord>();
  // Snapshot chains held by owners outside the store (containers whose rootfs uses them), kept
  // across restarts so that GC never removes a lower dir of a running container.
  private leases = new Map<string, Digest[]>();
  private readonly file: string;
  private lock: Promise<unknown> = Promise.resolve();
  /** A commit() queued on `lock` and not started yet: callers until it starts share its write. */
  private commitQueued: Promise<void> | undefined;
  // Chains being built by operations in flight: GC keeps them (guarded by `lock` for mutation by gc).
  private readonly activeChains = new Map<Digest, number>();

  constructor(opts: ImageStoreOptions) {
    this.root = opts.root;
    fs.mkdirSync(opts.root, { recursive: true, mode: 0o700 });
    this.content = new ContentStore(opts.root);
    this.snapshots = new SnapshotStore(opts.root, opts.limits);
    this.platform = opts.platform ?? hostPlatform();
    this.file = path.join(opts.root, 'images.json');
    try {
      const data = JSON.parse(fs.readFileSync(this.file, 'utf8')) as { images: ImageRecord[]; leases?: Record<string, Digest[]> };
      for (const r of data.images) this.images.set(r.id, r);
      for (const [k, v] of Object.entries(data.leases ?? {})) this.leases.set(k, v);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new FailedPreconditionError(`image store ${this.file} is unreadable: ${(err as Error).message}`);
    }
  }

  /** Runs `fn` with the store's records locked (one writer at a time). */
  private locked<T>(fn: () => Promise<T> | T): Promise<T> {
    const p = this.lock.then(fn, fn);
    this.lock = p.catch(() => undefined);
    return p;
  }

  private serialized(): string {
    return JSON.stringify({ images: [...this.images.values()], leases: Object.fromEntries(this.leases) });
  }

  private save(): void {
    const tmp = `${this.file}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, this.serialized());
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
  }

  /**
   * Saves the records, in a group commit: every change made before the write starts goes into
   * one write and one fsync, which runs on the thread pool. A burst of container creates took a
   * lease each, and each lease's own synchronous fsync held the daemon's loop, one after another
   * (p50 0.67 s of a create's time in a burst of 32 on this machine).
   */
  private commit(): Promise<void> {
    this.commitQueued ??= this.locked(async () => {
      this.commitQueued = undefined;
      const data = this.serialized();
      const tmp = `${this.file}.tmp-${process.pid}`;
      const fh = await fs.promises.open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.promises.rename(tmp, this.file);
    });
    return this.commitQueued;
  }

  list(): ImageRecord[] {
    return [...this.images.values()].sort((a, b) => a.createdAt - b.createdAt);
  }

  /** Finds an image by reference ("busybox", "name:tag", "name@sha256:..."), full id, or id prefix. */
  find(ref: string): ImageRecord | undefined {
    const s = ref.trim();
    if (!s) throw new InvalidArgumentError('image.image', 'image is empty');
    if (isDigest(s)) return this.images.get(s);
    const hex = s.startsWith('sha256:') ? s.slice(7) : s;
    if (/^[a-f0-9]{12,64}$/.test(hex)) {
      const hits = this.list().filter((r) => r.id.slice(7).startsWith(hex));
      if (hits.length === 1) return hits[0];
      if (hits.length > 1) throw new InvalidArgumentError('image.image', `id prefix "${s}" is ambiguous`);
    }
    let r;
    try { r = parseReference(s, 'image.image'); } catch (err) { if (/^[a-f0-9]{12,64}$/.test(hex)) return undefined; throw err; }
    if (r.digest) {
      const want = `${repoName(r)}@${r.digest}`;
      return this.list().find((i) => i.repoDigests.includes(want) || (i.manifestDigest === r.digest && i.repoTags.some((t) => t.startsWith(`${repoName(r)}:`))));
    }
    const want = formatReference(r);
    return this.list().find((i) => i.repoTags.includes(want));
  }

  /** Platform wanted by an ImageSpec's annotations, else the store's. */
  platformFor(annotations: Record<string, string> | undefined): Platform {
    const p = annotations?.[PLATFORM_ANNOTATION];
    return p ? parsePlatform(p, `image.annotations["${PLATFORM_ANNOTATION}"]`) : this.platform;
  }

  /** Records an operation's chains as in use until the returned function is called. */
  holdChains(ids: Digest[]): () => void {
    for (const c of ids) this.activeChains.set(c, (this.activeChains.get(c) ?? 0) + 1);
    return () => {
      for (const c of ids) {
        const n = (this.activeChains.get(c) ?? 1) - 1;
        if (n <= 0) this.activeChains.delete(c); else this.activeChains.set(c, n);
      }
    };
  }

  /** Reads the manifest behind a descriptor, descending through an index to the platform's manifest. */
  resolveManifest(desc: { digest: Digest; mediaType?: string }, platform: Platform, field = 'manifest'): { manifest: ImageManifest; manifestDigest: Digest; indexDigest?: Digest } {
    let digest = desc.digest;
    let mediaType = desc.mediaType;
    let indexDigest: Digest | undefined;
    for (let depth = 0; depth < 4; depth++) {
      const m = parseManifestOrIndex(this.content.readBuffer(digest), mediaType, field);
      if (m.kind === 'manifest') return { manifest: m, manifestDigest: digest, indexDigest };
      indexDigest ??= digest;
      const chosen = selectManifest(m, platform);
      if (!this.content.has(chosen.digest)) throw new FailedPreconditionError(`${field}: manifest ${chosen.digest} for ${formatPlatform(platform)} is missing`);
      digest = chosen.digest;
      mediaType = chosen.mediaType;
    }
    throw new InvalidArgumentError(field, 'image indexes nested more than 4 deep');
  }

  /**
   * Registers an image whose manifest, config and layer blobs are in the content store: checks
   * the platform, unpacks each layer into its snapshot (verifying diff ids) and records the names.
   */
  async register(opts: {
    manifest: ImageManifest;
    manifestDigest: Digest;
    indexDigest?: Digest;
    platform: Platform;
    repoTags: string[];
    repoDigests: string[];
    onProgress?: ProgressFn;
    /** Resolves when layer i's blob is in the content store (a pull unpacks while it downloads). */
    layerReady?: Array<Promise<void>>;
  }): Promise<ImageRecord> {
    const { manifest } = opts;
    const configDigest = manifest.config.digest;
    const config = parseConfig(this.content.readBuffer(configDigest), 'config');
    const have: Platform = { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
    if (!platformMatches(opts.platform, have)) {
      throw new FailedPreconditionError(`image is for ${formatPlatform(have)}, not ${formatPlatform(opts.platform)}`);
    }
    if (config.rootfs.diff_ids.length !== manifest.layers.length) {
      throw new InvalidArgumentError('config.rootfs.diff_ids', `has ${config.rootfs.diff_ids.length} entries for ${manifest.layers.length} layers`);
    }
    if (!opts.layerReady) {
      manifest.layers.forEach((l, i) => {
        if (!this.content.has(l.digest)) throw new FailedPreconditionError(`layer ${i} (${l.digest}) is missing`);
      });
    }
    const chains = chainIds(config.rootfs.diff_ids);
    const release = this.holdChains(chains);
    try {
      for (let i = 0; i < manifest.layers.length; i++) {
        const l = manifest.layers[i];
        await opts.layerReady?.[i];
        const exists = !!this.snapshots.get(chains[i]);
        opts.onProgress?.({ digest: l.digest, current: exists ? l.size : 0, total: l.size, status: exists ? 'exists' : 'extracting' });
        await this.snapshots.ensure(chains[i], config.rootfs.diff_ids[i], i ? chains[i - 1] : undefined, () => this.content.readStream(l.digest));
        opts.onProgress?.({ digest: l.digest, current: l.size, total: l.size, status: 'done' });
      }
    } finally {
      release();
    }
    const user = config.config?.User ?? '';
    const layers: LayerRecord[] = manifest.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size, diffId: config.rootfs.diff_ids[i] }));
    const size = manifest.layers.reduce((n, l) => n + l.size, 0) + manifest.config.size + this.content.size(opts.manifestDigest);
    let dropped = false;
    const rec = await this.locked(() => {
      const prev = this.images.get(configDigest);
      const rec: ImageRecord = {
        id: configDigest,
        repoTags: [...new Set([...(prev?.repoTags ?? []), ...opts.repoTags])],
        repoDigests: [...new Set([...(prev?.repoDigests ?? []), ...opts.repoDigests])],
        manifestDigest: opts.manifestDigest,
        ...(opts.indexDigest ? { indexDigest: opts.indexDigest } : {}),
        layers,
        chainIds: chains,
        size,
        user,
        platform: formatPlatform(have),
        pinned: prev?.pinned ?? false,
        createdAt: prev?.createdAt ?? Date.now(),
      };
      // A tag names one image: moving it takes it from the image that had it.
      for (const other of this.images.values()) {
        if (other.id === rec.id) continue;
        const before = other.repoTags.length;
        other.repoTags = other.repoTags.filter((t) => !rec.repoTags.includes(t));
        if (before && !other.repoTags.length && !other.repoDigests.length && !other.pinned) { this.images.delete(other.id); dropped = true; }
      }
      this.images.set(rec.id, rec);
      this.save();
      return rec;
    });
    if (dropped) await this.gc();
    return rec;
  }

  /**
   * Holds an image's snapshots for `owner` (e.g. a container id) until `release(owner)`, across
   * restarts: removing the image then removes its record, not the layers the owner runs on.
   */
  async lease(owner: string, image: ImageRecord): Promise<void> {
    await this.locked(() => { this.leases.set(owner, [...image.chainIds]); });
    await this.commit();
  }

  async release(owner: string): Promise<void> {
    const had = await this.locked(() => this.leases.delete(owner));
    if (!had) return;
    await this.commit();
    await this.gc();
  }

  /** Removes an image with all its names; absent is not an error. Returns whether one was removed. */
  async remove(ref: string): Promise<boolean> {
    const removed = await this.locked(() => {
      const rec = this.find(ref);
      if (!rec) return false;
      this.images.delete(rec.id);
      this.save();
      return true;
    });
    if (removed) await this.gc();
    return removed;
  }

  /** Removes blobs and snapshots that no image references and no operation holds. */
  gc(): Promise<{ blobs: Digest[]; snapshots: Digest[] }> {
    return this.locked(() => {
      const blobs = new Set<Digest>();
      const chains = new Set<Digest>(this.activeChains.keys());
      for (const held of this.leases.values()) for (const c of held) chains.add(c);
      for (const r of this.images.values()) {
        blobs.add(r.id);
        blobs.add(r.manifestDigest);
        if (r.indexDigest) blobs.add(r.indexDigest);
        for (const l of r.layers) blobs.add(l.digest);
        for (const c of r.chainIds) chains.add(c);
      }
      // An index keeps the manifests of other platforms it lists only if they are here anyway;
      // they are not needed to run, so they go.
      return { blobs: this.content.gc(blobs), snapshots: this.snapshots.gc(chains) };
    });
  }

  /** Runs `fn` holding a content lease; on failure the GC removes whatever `fn` left unreferenced. */
  async withCleanup<T>(fn: (lease: (d: Iterable<Digest>) => void) => Promise<T>): Promise<T> {
    const releases: Array<() => void> = [];
    try {
      return await fn((d) => releases.push(this.content.lease(d)));
    } catch (err) {
      for (const r of releases.splice(0)) r();
      await this.gc().catch(() => undefined);
      throw err;
    } finally {
      for (const r of releases) r();
    }
  }

  usage(): { bytes: number; inodes: number } {
    const c = this.content.usage();
    let bytes = c.bytes;
    let inodes = c.inodes;
    for (const s of this.snapshots.list()) { bytes += s.size; inodes += s.inodes; }
    return { bytes, inodes };
  }

  /**
   * Prepares a container's rootfs on `imageRef`: leases the image's snapshots for `owner`, makes
   * `<dir>/upper` and `<dir>/work`, and returns the overlay mount options (the caller mounts).
   */
  async prepareRootfs(owner: string, imageRef: string, dir: string): Promise<{ image: ImageRecord; options: string; cwd?: string; upper: string; work: string }> {
    const image = this.find(imageRef);
    if (!image) throw new NotFoundError(`image "${imageRef}" is not present; pull it first`);
    const upper = path.join(dir, 'upper');
    const work = path.join(dir, 'work');
    fs.mkdirSync(upper, { recursive: true, mode: 0o755 });
    fs.mkdirSync(work, { recursive: true, mode: 0o700 });
    await this.lease(owner, image);
    return { image, ...this.overlayOptions(image, upper, work), upper, work };
  }

  /** Undoes prepareRootfs once the caller has unmounted: removes the dirs and the lease. */
  async removeRootfs(owner: string, dir: string): Promise<void> {
    fs.rmSync(path.join(dir, 'upper'), { recursive: true, force: true });
    fs.rmSync(path.join(dir, 'work'), { recursive: true, force: true });
    await this.release(owner);
  }

  /** overlayfs options for a container rootfs of `image` (see SnapshotStore.overlayOptions). */
  overlayOptions(image: ImageRecord, upper: string, work: string): { options: string; cwd?: string } {
    return this.snapshots.overlayOptions(image.chainIds, upper, work);
  }
}
