// Image references as Docker and the CRI normalise them: "busybox" is
// "docker.io/library/busybox:latest", a first component with a dot, a colon or "localhost" is a
// registry host, and "name@sha256:..." pins a manifest digest.
import { InvalidArgumentError } from '@berth/common';
import { isDigest, type Digest } from './digest';

export const DEFAULT_REGISTRY = 'docker.io';

export interface Reference {
  /** Registry host[:port], e.g. "docker.io" or "127.0.0.1:5000". */
  registry: string;
  /** Repository path inside the registry, e.g. "library/busybox". */
  repository: string;
  tag?: string;
  digest?: Digest;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

/** Parses and normalises a reference; without tag or digest the tag is "latest". */
export function parseReference(input: string, field = 'image'): Reference {
  const s = input.trim();
  if (!s) throw new InvalidArgumentError(field, 'image reference is empty');
  if (s.length > 4096) throw new InvalidArgumentError(field, 'image reference is longer than 4096 characters');
  let rest = s;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw new InvalidArgumentError(field, `invalid digest in reference "${input}": expected sha256:<64 lowercase hex>`);
    digest = d;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidArgumentError(field, `invalid tag "${tag}" in reference "${input}"`);
  }
  const parts = rest.split('/');
  let registry = DEFAULT_REGISTRY;
  if (parts.length > 1 && (parts[0].includes('.') || parts[0].includes(':') || parts[0] === 'localhost' || parts[0] !== parts[0].toLowerCase())) {
    registry = parts.shift()!;
    if (!HOST.test(registry)) throw new InvalidArgumentError(field, `invalid registry host "${registry}" in reference "${input}"`);
  }
  if (registry === 'index.docker.io') registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && parts.length === 1) parts.unshift('library');
  for (const p of parts) {
    if (!COMPONENT.test(p)) throw new InvalidArgumentError(field, `invalid repository name component "${p}" in reference "${input}" (lowercase letters, digits and . _ - separators)`);
  }
  const repository = parts.join('/');
  if (repository.length > 255) throw new InvalidArgumentError(field, 'repository name is longer than 255 characters');
  if (!tag && !digest) tag = 'latest';
  return { registry, repository, tag, digest };
}

export function repoName(r: Reference): string {
  return `${r.registry}/${r.repository}`;
}

/** "registry/repo:tag" (or "registry/repo@digest" when there is no tag). */
export function formatReference(r: Reference): string {
  if (r.tag) return `${repoName(r)}:${r.tag}`;
  return `${repoName(r)}@${r.digest}`;
}

export function isLoopbackRegistry(host: string): boolean {
  const h = host.replace(/:[0-9]+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(h);
}
