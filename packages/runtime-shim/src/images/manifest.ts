// OCI image indexes and manifests and Docker v2 schema 2 manifests (and manifest lists): parsed
// and checked before anything in them is used, and the platform selection done by the CRI
// (linux/amd64 here, variants for arm).
import { FailedPreconditionError, InvalidArgumentError } from '@berth/common';
import { parseDigest, type Digest } from './digest';

export const MT = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

export const MANIFEST_ACCEPT = [MT.ociIndex, MT.ociManifest, MT.dockerList, MT.dockerManifest].join(', ');

const LAYER_TYPES = new Set<string>([
  MT.dockerLayer, MT.ociLayer, MT.ociLayerGzip, MT.ociLayerZstd,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  MT.dockerForeignLayer,
]);

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  config?: { User?: string; Env?: string[]; Entrypoint?: string[]; Cmd?: string[]; WorkingDir?: string; Labels?: Record<string, string> };
  rootfs: { type: string; diff_ids: Digest[] };
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError(field, 'expected a JSON object');
  return v as Record<string, unknown>;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new InvalidArgumentError(field, 'expected a string');
  return v;
}

function strMap(v: unknown, field: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  const o = obj(v, field);
  for (const [k, x] of Object.entries(o)) str(x, `${field}.${k}`);
  return o as Record<string, string>;
}

export function parseDescriptor(v: unknown, field: string): Descriptor {
  const o = obj(v, field);
  const size = o.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new InvalidArgumentError(`${field}.size`, 'expected a non-negative integer');
  const d: Descriptor = { mediaType: str(o.mediaType, `${field}.mediaType`), digest: parseDigest(o.digest, `${field}.digest`), size };
  if (o.platform !== undefined) {
    const p = obj(o.platform, `${field}.platform`);
    d.platform = { os: str(p.os, `${field}.platform.os`), architecture: str(p.architecture, `${field}.platform.architecture`) };
    if (p.variant !== undefined) d.platform.variant = str(p.variant, `${field}.platform.variant`);
  }
  d.annotations = strMap(o.annotations, `${field}.annotations`);
  if (Array.isArray(o.urls)) d.urls = o.urls.map((u, i) => str(u, `${field}.urls[${i}]`));
  return d;
}

/** Parses an index or manifest; `mediaTypeHint` is the Content-Type or the descriptor's type. */
export function parseManifestOrIndex(data: Buffer, mediaTypeHint: string | undefined, field = 'manifest'): ImageIndex | ImageManifest {
  let json: unknown;
  try { json = JSON.parse(data.toString('utf8')); } catch (err) { throw new InvalidArgumentError(field, `not valid JSON: ${(err as Error).message}`); }
  const o = obj(json, field);
  if (o.schemaVersion === 1) throw new FailedPreconditionError(`${field}: Docker image manifest schema 1 is not supported (deprecated since 2017); push the image again with a current client`);
  if (o.schemaVersion !== 2) throw new InvalidArgumentError(`${field}.schemaVersion`, `expected 2, got ${JSON.stringify(o.schemaVersion)}`);
  const hint = mediaTypeHint?.split(';')[0].trim();
  const mediaType = typeof o.mediaType === 'string' ? o.mediaType : hint && hint !== 'application/json' && hint !== 'application/octet-stream' ? hint : Array.isArray(o.manifests) ? MT.ociIndex : MT.ociManifest;
  if (mediaType === MT.ociIndex || mediaType === MT.dockerList) {
    if (!Array.isArray(o.manifests)) throw new InvalidArgumentError(`${field}.manifests`, 'expected an array');
    return { kind: 'index', mediaType, manifests: o.manifests.map((m, i) => parseDescriptor(m, `${field}.manifests[${i}]`)), annotations: strMap(o.annotations, `${field}.annotations`) };
  }
  if (mediaType === MT.ociManifest || mediaType === MT.dockerManifest) {
    if (!Array.isArray(o.layers)) throw new InvalidArgumentError(`${field}.layers`, 'expected an array');
    const config = parseDescriptor(o.config, `${field}.config`);
    const layers = o.layers.map((l, i) => parseDescriptor(l, `${field}.layers[${i}]`));
    layers.forEach((l, i) => {
      if (!LAYER_TYPES.has(l.mediaType)) throw new FailedPreconditionError(`${field}.layers[${i}].mediaType: unsupported layer media type "${l.mediaType}" (not an image: artifacts and encrypted layers cannot be run)`);
    });
    return { kind: 'manifest', mediaType, config, layers, annotations: strMap(o.annotations, `${field}.annotations`) };
  }
  throw new FailedPreconditionError(`${field}.mediaType: unsupported media type "${mediaType}"`);
}

export function parseConfig(data: Buffer, field = 'config'): ImageConfig {
  let json: unknown;
  try { json = JSON.parse(data.toString('utf8')); } catch (err) { throw new InvalidArgumentError(field, `not valid JSON: ${(err as Error).message}`); }
  const o = obj(json, field);
  const rootfs = obj(o.rootfs, `${field}.rootfs`);
  if (rootfs.type !== 'layers') throw new InvalidArgumentError(`${field}.rootfs.type`, `expected "layers", got ${JSON.stringify(rootfs.type)}`);
  if (!Array.isArray(rootfs.diff_ids)) throw new InvalidArgumentError(`${field}.rootfs.diff_ids`, 'expected an array');
  const cfg: ImageConfig = {
    architecture: str(o.architecture, `${field}.architecture`),
    os: str(o.os, `${field}.os`),
    rootfs: { type: 'layers', diff_ids: rootfs.diff_ids.map((d, i) => parseDigest(d, `${field}.rootfs.diff_ids[${i}]`)) },
  };
  if (typeof o.variant === 'string') cfg.variant = o.variant;
  if (o.config !== undefined && o.config !== null) cfg.config = obj(o.config, `${field}.config`) as ImageConfig['config'];
  return cfg;
}

const ARCH: Record<string, Platform> = {
  x64: { os: 'linux', architecture: 'amd64' },
  arm64: { os: 'linux', architecture: 'arm64', variant: 'v8' },
  arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
  ia32: { os: 'linux', architecture: '386' },
  ppc64: { os: 'linux', architecture: 'ppc64le' },
  s390x: { os: 'linux', architecture: 's390x' },
  riscv64: { os: 'linux', architecture: 'riscv64' },
};

export function hostPlatform(): Platform {
  return ARCH[process.arch] ?? { os: 'linux', architecture: process.arch };
}

/** "os/arch[/variant]". */
export function parsePlatform(s: string, field = 'platform'): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/.test(p))) throw new InvalidArgumentError(field, `expected os/arch[/variant], got "${s}"`);
  return { os: parts[0], architecture: parts[1], ...(parts[2] ? { variant: parts[2] } : {}) };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** Whether an image for `have` runs on `want` (arm64's v8 is its only variant and may be omitted). */
export function platformMatches(want: Platform, have: Platform): boolean {
  if (want.os !== have.os || want.architecture !== have.architecture) return false;
  if (!want.variant || !have.variant) return !have.variant || !want.variant || want.architecture === 'arm64';
  if (want.architecture === 'arm') return Number(have.variant.slice(1)) <= Number(want.variant.slice(1)); // v7 runs v6, v5
  return want.variant === have.variant;
}

/** Picks the manifest of an index for a platform, preferring the exact variant. */
export function selectManifest(index: ImageIndex, want: Platform): Descriptor {
  const candidates = index.manifests.filter((m) => (m.mediaType === MT.ociManifest || m.mediaType === MT.dockerManifest) && m.platform && platformMatches(want, m.platform));
  // Attestation manifests (buildkit) carry platform unknown/unknown and never match above.
  candidates.sort((a, b) => (b.platform!.variant === want.variant ? 1 : 0) - (a.platform!.variant === want.variant ? 1 : 0));
  if (candidates.length) return candidates[0];
  const noPlatform = index.manifests.filter((m) => (m.mediaType === MT.ociManifest || m.mediaType === MT.dockerManifest) && !m.platform);
  if (noPlatform.length === 1) return noPlatform[0]; // checked against the config's platform later
  const have = index.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown')).join(', ');
  throw new FailedPreconditionError(`no image for platform ${formatPlatform(want)} (the index has: ${have || 'nothing'})`);
}
