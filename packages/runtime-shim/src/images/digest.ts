// Digests ("sha256:<64 hex>") are the only names blobs have. Everything that comes from an image
// or a registry is parsed here before it is used as part of a path.
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '@berth/common';

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export type Digest = `sha256:${string}`;

export function isDigest(s: unknown): s is Digest {
  return typeof s === 'string' && DIGEST_RE.test(s);
}

/** Validates a digest; only sha256 is accepted (as containerd does by default). */
export function parseDigest(s: unknown, field: string): Digest {
  if (typeof s !== 'string' || !DIGEST_RE.test(s)) {
    throw new InvalidArgumentError(field, `invalid digest ${JSON.stringify(s)}: expected sha256:<64 lowercase hex>`);
  }
  return s as Digest;
}

export function hexOf(d: Digest): string {
  return d.slice('sha256:'.length);
}

export function sha256(data: Buffer | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** chainID per the OCI image spec: the identity of a stack of layers (diff ids), bottom first. */
export function chainIds(diffIds: Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : sha256(`${out[out.length - 1]} ${d}`));
  return out;
}
