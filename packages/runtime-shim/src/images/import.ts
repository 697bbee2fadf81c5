// Import of OCI image layouts (a directory, or a tar of one as `skopeo copy oci-archive:` and
// `podman save --format oci-archive` write) and docker-archive tarballs (`docker save`,
// `podman save`, `skopeo copy docker-archive:`), from a path or from a stream. Archive member
// names are never used as paths: each member is copied into the content store (verified when the
// layout names it by digest) and looked up by name afterwards.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '@berth/common';
import { decompress, sniffCompression } from './decompress';
import type { Digest } from './digest';
import type { ImageRecord, ImageStore, ProgressFn } from './image-store';
import { MT, parseManifestOrIndex, platformMatches, selectManifest, type ImageManifest } from './manifest';
import { formatReference, parseReference } from './reference';
import { readTar } from './tar';

export type ImportFormat = 'oci-layout' | 'docker-archive' | 'auto';

export interface ImportOptions {
  format?: string;
  /** Reference given to the image (needed when the archive names none). */
  name?: string;
  annotations?: Record<string, string>;
  onProgress?: ProgressFn;
}

const SMALL = new Set(['index.json', 'oci-layout', 'manifest.json', 'repositories']);
const MAX_SMALL = 4 * 1024 * 1024;
// Every member becomes a blob until the import ends: bound them (an image has a few per layer).
const MAX_MEMBERS = 100_000;

interface Member { digest: Digest; size: number }

/** What was read from an archive or directory: small metadata files and the blobs by name. */
class Members {
  small = new Map<string, Buffer>();
  files = new Map<string, Member>();
  links = new Map<string, string>();

  lookup(name: string, field: string): Member {
    let n = normalize(name, field);
    for (let i = 0; i < 8 && !this.files.has(n) && this.links.has(n); i++) n = this.links.get(n)!;
    const m = this.files.get(n);
    if (!m) throw new InvalidArgumentError(field, `"${name}" is not in the archive`);
    return m;
  }
}

function normalize(name: string, field: string): string {
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') { if (!parts.length) throw new InvalidArgumentError(field, `"${name}" points out of the archive`); parts.pop(); continue; }
    parts.push(p);
  }
  return parts.join('/');
}

function parseFormat(f: string | undefined): ImportFormat {
  if (!f || f === 'auto') return 'auto';
  if (f === 'oci-layout' || f === 'oci-archive' || f === 'oci') return 'oci-layout';
  if (f === 'docker-archive' || f === 'docker') return 'docker-archive';
  throw new InvalidArgumentError('metadata.format', `unknown format "${f}" (expected oci-layout, docker-archive or auto)`);
}

async function addMember(store: ImageStore, m: Members, name: string, body: AsyncIterable<Buffer>, size: number, lease: (d: Iterable<Digest>) => void, onProgress?: ProgressFn): Promise<void> {
  const n = normalize(name, 'archive');
  if (SMALL.has(n)) {
    if (size > MAX_SMALL) throw new InvalidArgumentError('archive', `${n} is larger than ${MAX_SMALL} bytes`);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(Buffer.from(c));
    m.small.set(n, Buffer.concat(chunks));
    return;
  }
  const named = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(n);
  const expected = named ? { digest: `sha256:${named[1]}` as Digest, size } : undefined;
  if (expected) lease([expected.digest]);
  onProgress?.({ digest: expected?.digest ?? n, current: 0, total: size, status: 'downloading' });
  const digest = await store.content.writeStream(body, expected, `archive member ${n}`, (d) => lease([d]));
  m.files.set(n, { digest, size });
  onProgress?.({ digest, current: size, total: size, status: 'verifying' });
}

async function readArchive(store: ImageStore, src: AsyncIterable<Buffer>, lease: (d: Iterable<Digest>) => void, onProgress?: ProgressFn): Promise<Members> {
  const m = new Members();
  let members = 0;
  for await (const { header, body } of readTar(decompress(src, 'archive'), { maxMetaBytes: 1024 * 1024 })) {
    if (++members > MAX_MEMBERS) throw new InvalidArgumentError('archive', `more than ${MAX_MEMBERS} members: not an image archive`);
    if (header.type === 'file') await addMember(store, m, header.name, body, header.size, lease, onProgress);
    else if (header.type === 'symlink') m.links.set(normalize(header.name, 'archive'), normalize(path.posix.join(path.posix.dirname(normalize(header.name, 'archive')), header.linkname), 'archive'));
    else if (header.type === 'link') m.links.set(normalize(header.name, 'archive'), normalize(header.linkname, 'archive'));
  }
  return m;
}

async function readDirectory(store: ImageStore, dir: string, lease: (d: Iterable<Digest>) => void, onProgress?: ProgressFn): Promise<Members> {
  const m = new Members();
  const walk = async (rel: string): Promise<void> => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) {
        const st = fs.statSync(path.join(dir, r));
        await addMember(store, m, r, fs.createReadStream(path.join(dir, r), { highWaterMark: 256 * 1024 }), st.size, lease, onProgress);
      } else if (e.isSymbolicLink()) {
        m.links.set(r, normalize(path.posix.join(path.posix.dirname(r), fs.readlinkSync(path.join(dir, r))), 'layout'));
      }
    }
  };
  await walk('');
  return m;
}

function json(buf: Buffer, field: string): unknown {
  try { return JSON.parse(buf.toString('utf8')); } catch (err) { throw new InvalidArgumentError(field, `not valid JSON: ${(err as Error).message}`); }
}

/** Names for an image from an OCI index entry's annotations. */
function ociNames(annotations: Record<string, string> | undefined, fallback: string | undefined): string[] {
  const full = annotations?.['io.containerd.image.name'];
  if (full) return [formatReference(parseReference(full, 'index.json annotations'))];
  const ref = annotations?.['org.opencontainers.image.ref.name'];
  if (ref && /[/:]/.test(ref)) {
    try { return [formatReference(parseReference(ref, 'index.json annotations'))]; } catch { /* a tag after all */ }
  }
  if (ref && fallback) {
    const f = parseReference(fallback, 'metadata.name');
    return [formatReference({ ...f, tag: ref, digest: undefined })];
  }
  return [];
}

async function registerAll(store: ImageStore, m: Members, opts: ImportOptions): Promise<ImageRecord[]> {
  let format = parseFormat(opts.format);
  if (format === 'auto') {
    if (m.small.has('index.json')) format = 'oci-layout';
    else if (m.small.has('manifest.json')) format = 'docker-archive';
    else throw new InvalidArgumentError('archive', 'neither an OCI image layout (no index.json) nor a docker archive (no manifest.json)');
  }
  const platform = store.platformFor(opts.annotations);
  const name = opts.name ? formatReference(parseReference(opts.name, 'metadata.name')) : undefined;
  const out: ImageRecord[] = [];
  if (format === 'oci-layout') {
    const idx = m.small.get('index.json');
    if (!idx) throw new InvalidArgumentError('archive', 'OCI layout without index.json');
    const layout = m.small.get('oci-layout');
    if (layout) {
      const v = (json(layout, 'oci-layout') as { imageLayoutVersion?: unknown }).imageLayoutVersion;
      if (v !== '1.0.0') throw new InvalidArgumentError('oci-layout', `unsupported imageLayoutVersion ${JSON.stringify(v)}`);
    }
    const index = parseManifestOrIndex(idx, MT.ociIndex, 'index.json');
    if (index.kind !== 'index') throw new InvalidArgumentError('index.json', 'is not an image index');
    const images = index.manifests.filter((d) => !d.platform || d.platform.os !== 'unknown'); // not attestations
    if (!images.length) throw new InvalidArgumentError('index.json', 'lists no images');
    // Manifests listed with a platform are chosen like an index's; nested indexes choose below.
    const entries = images.filter((d) => !d.platform || platformMatches(platform, d.platform));
    if (!entries.length) selectManifest({ kind: 'index', mediaType: MT.ociIndex, manifests: images }, platform); // throws, naming what there is
    for (const d of entries) {
      const r = store.resolveManifest(d, platform, `index.json manifest ${d.digest}`);
      const names = ociNames(d.annotations, opts.name);
      if (!names.length && name && entries.length === 1) names.push(name);
      out.push(await store.register({ ...r, platform, repoTags: names, repoDigests: [], onProgress: opts.onProgress }));
    }
  } else {
    const list = json(m.small.get('manifest.json') ?? Buffer.from(''), 'manifest.json');
    if (!Array.isArray(list) || !list.length) throw new InvalidArgumentError('manifest.json', 'expected a non-empty array');
    for (const [i, e] of (list as Array<Record<string, unknown>>).entries()) {
      const field = `manifest.json[${i}]`;
      if (typeof e?.Config !== 'string' || !Array.isArray(e.Layers)) throw new InvalidArgumentError(field, 'expected Config and Layers');
      const config = m.lookup(e.Config, `${field}.Config`);
      const layers = (e.Layers as unknown[]).map((l, j) => {
        if (typeof l !== 'string') throw new InvalidArgumentError(`${field}.Layers[${j}]`, 'expected a string');
        const mem = m.lookup(l, `${field}.Layers[${j}]`);
        return { mediaType: layerType(store, mem.digest), digest: mem.digest, size: mem.size };
      });
      // A docker archive carries no registry manifest: one is made, as `docker load` does.
      const manifest: ImageManifest = { kind: 'manifest', mediaType: MT.ociManifest, config: { mediaType: MT.ociConfig, digest: config.digest, size: config.size }, layers };
      const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config: manifest.config, layers }));
      const manifestDigest = store.content.writeBuffer(body);
      const tags = Array.isArray(e.RepoTags) ? (e.RepoTags as unknown[]).map((t, j) => formatReference(parseReference(String(t), `${field}.RepoTags[${j}]`))) : [];
      if (!tags.length && name && list.length === 1) tags.push(name);
      out.push(await store.register({ manifest, manifestDigest, platform, repoTags: tags, repoDigests: [], onProgress: opts.onProgress }));
    }
  }
  return out;
}

function layerType(store: ImageStore, d: Digest): string {
  const fd = fs.openSync(store.content.path(d), 'r');
  const head = Buffer.alloc(4);
  try { fs.readSync(fd, head, 0, 4, 0); } finally { fs.closeSync(fd); }
  return { gzip: MT.ociLayerGzip, zstd: MT.ociLayerZstd, none: MT.ociLayer }[sniffCompression(head)];
}

/** Imports the images of an archive streamed in `src`. */
export async function importStream(store: ImageStore, src: AsyncIterable<Buffer>, opts: ImportOptions = {}): Promise<ImageRecord[]> {
  parseFormat(opts.format);
  const out = await store.withCleanup(async (lease) => registerAll(store, await readArchive(store, src, lease, opts.onProgress), opts));
  await store.gc(); // archive members no image references (docker save's per-layer json, VERSION...)
  return out;
}

/** Imports from a path: an OCI layout directory, or an OCI/docker archive file (maybe gzipped). */
export async function importPath(store: ImageStore, p: string, opts: ImportOptions = {}): Promise<ImageRecord[]> {
  parseFormat(opts.format);
  let st: fs.Stats;
  try { st = fs.statSync(p); } catch { throw new InvalidArgumentError('path', `${p} does not exist`); }
  if (st.isDirectory()) {
    if (!fs.existsSync(path.join(p, 'index.json')) && !fs.existsSync(path.join(p, 'manifest.json'))) {
      throw new FailedPreconditionError(`${p} is neither an OCI image layout nor an unpacked docker archive`);
    }
    const out = await store.withCleanup(async (lease) => registerAll(store, await readDirectory(store, p, lease, opts.onProgress), opts));
    await store.gc();
    return out;
  }
  return importStream(store, fs.createReadStream(p, { highWaterMark: 256 * 1024 }), opts);
}

