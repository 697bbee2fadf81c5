// The ImageService gRPC façade: checks each request, hands it to the ImageStore / importers /
// registry client, and turns their progress into stream frames. Errors become gRPC status in
// common's unary/serverStream wrappers (and in importImage's callback), nowhere else.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ServerReadableStream, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import { runtime } from '@berth/api';
import { InvalidArgumentError, serverStream, toServiceError, unary, type Logger } from '@berth/common';
import { ImageStore, type ImageRecord, type Progress } from './image-store';
import { importStream } from './import';
import { pullImage, type RegistryAuth, type RegistryConfig } from './registry';
import { parseManifestOrIndex } from './manifest';

/** Turns callbacks into an async iterable (progress events into stream frames). */
class AsyncQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private wake: (() => void) | undefined;
  private done = false;
  private error: unknown;
  private paused = false;
  /** With `flow`, the producer is paused at `high` queued items and resumed at half of it. */
  constructor(private readonly flow?: { high: number; pause(): void; resume(): void }) {}
  push(t: T): void {
    this.items.push(t);
    if (this.flow && !this.paused && this.items.length >= this.flow.high) { this.paused = true; this.flow.pause(); }
    this.wake?.();
  }
  end(err?: unknown): void { this.done = true; this.error = err; this.wake?.(); }
  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      while (this.items.length) {
        const t = this.items.shift()!;
        if (this.paused && this.items.length <= this.flow!.high / 2) { this.paused = false; this.flow!.resume(); }
        yield t;
      }
      if (this.done) { if (this.error !== undefined) throw this.error; return; }
      await new Promise<void>((r) => { this.wake = r; });
      this.wake = undefined;
    }
  }
}

/**
 * The request messages of a client-streaming call. A grpc-js call is an async iterable (with
 * backpressure); the lean node:http2 server's call (the daemon's) is an emitter of 'data' and
 * 'end', whose messages queue here until read, the call paused while the queue is full.
 */
function requestsOf<T>(call: ServerReadableStream<T, unknown>): AsyncIterator<T> {
  if (typeof (call as Partial<AsyncIterable<T>>)[Symbol.asyncIterator] === 'function') return call[Symbol.asyncIterator]() as AsyncIterator<T>;
  // At most 16 chunks (16 MiB at the importer's 1 MiB) wait here; beyond that the call is paused
  // and HTTP/2 flow control holds the client back, so a fast client cannot fill the daemon's memory.
  const c = call as unknown as { pause(): void; resume(): void };
  const q = new AsyncQueue<T>({ high: 16, pause: () => c.pause(), resume: () => c.resume() });
  call.on('data', (m: T) => q.push(m));
  call.once('end', () => q.end());
  call.once('cancelled', () => q.end(new Error('the client cancelled the call')));
  return q[Symbol.asyncIterator]();
}

export function toApiImage(r: ImageRecord): runtime.Image {
  const user = r.user.split(':')[0];
  const numeric = /^[0-9]+$/.test(user);
  return runtime.Image.fromPartial({
    id: r.id,
    repoTags: r.repoTags,
    repoDigests: r.repoDigests,
    size: r.size,
    ...(numeric ? { uid: Number(user) } : {}),
    username: numeric ? '' : user,
    spec: { image: r.id, annotations: {} },
    pinned: r.pinned,
  });
}

function specRef(spec: runtime.ImageSpec | undefined, field: string): string {
  const ref = spec?.image?.trim();
  if (!ref) throw new InvalidArgumentError(field, 'is required');
  return ref;
}

function authOf(a: runtime.AuthConfig | undefined): RegistryAuth | undefined {
  if (!a) return undefined;
  const out: RegistryAuth = {};
  if (a.username) out.username = a.username;
  if (a.password) out.password = a.password;
  if (a.auth) out.auth = a.auth;
  if (a.identityToken) out.identityToken = a.identityToken;
  if (a.registryToken) out.registryToken = a.registryToken;
  return Object.keys(out).length ? out : undefined;
}

/** Reads `<root>/registries.json` ({mirrors, insecureRegistries, concurrency, retries}) if present. */
export function loadRegistryConfig(root: string): RegistryConfig {
  const file = path.join(root, 'registries.json');
  let raw: unknown;
  try { raw = JSON.parse(fs.readFileSync(file, 'utf8')); } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new InvalidArgumentError(file, `not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidArgumentError(file, 'expected an object');
  const cfg: RegistryConfig = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (k === 'mirrors') {
      if (typeof v !== 'object' || v === null || Object.values(v).some((l) => !Array.isArray(l) || l.some((u) => typeof u !== 'string'))) throw new InvalidArgumentError(`${file}: mirrors`, 'expected {"registry": ["url", ...]}');
      cfg.mirrors = v as Record<string, string[]>;
    } else if (k === 'insecureRegistries') {
      if (!Array.isArray(v) || v.some((u) => typeof u !== 'string')) throw new InvalidArgumentError(`${file}: insecureRegistries`, 'expected a list of host[:port]');
      cfg.insecureRegistries = v as string[];
    } else if (k === 'concurrency' || k === 'retries') {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < (k === 'concurrency' ? 1 : 0) || v > 32) throw new InvalidArgumentError(`${file}: ${k}`, 'expected a small non-negative integer');
      cfg[k] = v;
    } else {
      throw new InvalidArgumentError(`${file}: ${k}`, 'unknown key (expected mirrors, insecureRegistries, concurrency, retries)');
    }
  }
  return cfg;
}

export interface ImageServiceOptions {
  store: ImageStore;
  registry?: RegistryConfig;
  logger?: Logger;
}

/** Opens the image store under a service's state dir (`<stateDir>/images`). */
export function openImageStore(stateDir: string): ImageStore {
  return new ImageStore({ root: path.join(stateDir, 'images') });
}

/** The ImageService handlers, for `{ definition: runtime.ImageServiceService, implementation }`. */
export function imageService(opts: ImageServiceOptions): UntypedServiceImplementation {
  const { store, logger } = opts;
  const registry = opts.registry ?? loadRegistryConfig(store.root);
  // Blobs and snapshots a crash left without an image (an import or pull cut short).
  store.gc().then(
    (r) => { if (r.blobs.length || r.snapshots.length) logger?.info({ blobs: r.blobs.length, snapshots: r.snapshots.length }, 'removed unreferenced image content'); },
    (err: unknown) => logger?.warn({ err }, 'image GC at start failed'),
  );

  const listImages = unary(async (req: runtime.ListImagesRequest): Promise<runtime.ListImagesResponse> => {
    const f = req.filter?.image?.image?.trim();
    const images = f ? [store.find(f)].filter((r): r is ImageRecord => !!r) : store.list();
    return runtime.ListImagesResponse.fromPartial({ images: images.map(toApiImage) });
  });

  const imageStatus = unary(async (req: runtime.ImageStatusRequest): Promise<runtime.ImageStatusResponse> => {
    const r = store.find(specRef(req.image, 'image.image'));
    if (!r) return runtime.ImageStatusResponse.fromPartial({});
    const info: Record<string, string> = {};
    if (req.verbose) {
      info.config = store.content.readBuffer(r.id).toString('utf8');
      const m = parseManifestOrIndex(store.content.readBuffer(r.manifestDigest), undefined);
      info.manifest = JSON.stringify({ digest: r.manifestDigest, mediaType: m.mediaType, indexDigest: r.indexDigest });
      info.snapshots = JSON.stringify(r.chainIds.map((c) => store.snapshots.fsPath(c)));
      info.platform = r.platform;
    }
    return runtime.ImageStatusResponse.fromPartial({ image: toApiImage(r), info });
  });

  const pull = serverStream(async function* (req: runtime.PullImageRequest, _call, signal): AsyncGenerator<runtime.PullImageProgress> {
    const ref = specRef(req.image, 'image.image');
    const platform = store.platformFor(req.image?.annotations);
    const q = new AsyncQueue<Progress>();
    const started = Date.now();
    const result = pullImage(store, ref, registry, { auth: authOf(req.auth), insecure: req.insecure, platform, signal, onProgress: (p) => q.push(p) });
    result.then(() => q.end(), (err) => q.end(err));
    for await (const p of q) yield runtime.PullImageProgress.fromPartial({ progress: p });
    const { image, imageRef } = await result;
    logger?.info({ image: ref, id: image.id, ms: Date.now() - started }, 'pulled image');
    yield runtime.PullImageProgress.fromPartial({ done: { imageRef, imageId: image.id, size: image.size } });
  });

  const importImage = (call: ServerReadableStream<runtime.ImportImageRequest, runtime.ImportImageResponse>, callback: sendUnaryData<runtime.ImportImageResponse>): void => {
    (async () => {
      const it = requestsOf(call);
      const first = await it.next();
      if (first.done || !first.value.metadata) throw new InvalidArgumentError('metadata', 'the first frame of ImportImage must be metadata');
      const meta = first.value.metadata;
      async function* chunks(): AsyncGenerator<Buffer> {
        for (;;) {
          const r = await it.next();
          if (r.done) return;
          if (r.value.metadata) throw new InvalidArgumentError('metadata', 'only the first frame may be metadata');
          if (r.value.chunk?.length) yield r.value.chunk;
        }
      }
      const images = await importStream(store, chunks(), { format: meta.format, name: meta.name || undefined });
      logger?.info({ images: images.map((i) => i.id) }, 'imported images');
      return runtime.ImportImageResponse.fromPartial({ images: images.map(toApiImage) });
    })().then((res) => callback(null, res), (err: unknown) => { call.destroy(); callback(toServiceError(err)); });
  };

  const removeImage = unary(async (req: runtime.RemoveImageRequest): Promise<runtime.RemoveImageResponse> => {
    await store.remove(specRef(req.image, 'image.image'));
    return {};
  });

  const imageFsInfo = unary(async (): Promise<runtime.ImageFsInfoResponse> => {
    const u = store.usage();
    return runtime.ImageFsInfoResponse.fromPartial({
      imageFilesystems: [{ timestampUs: Date.now() * 1000, fsId: { mountpoint: store.root }, usedBytes: u.bytes, inodesUsed: u.inodes }],
    });
  });

  return { listImages, imageStatus, pullImage: pull, importImage, removeImage, imageFsInfo };
}
