// Test helpers for images: a tar writer that can express what a hostile layer contains (tar(1)
// refuses to write most of it), and the busybox test image built by tools/build-test-image.sh.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface TarSpec {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';
  data?: Buffer | string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  devmajor?: number;
  devminor?: number;
  /** PAX records to put before the entry (e.g. long paths, xattrs). */
  pax?: Record<string, string>;
}

const FLAG = { file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' } as const;

function header(name: string, flag: string, size: number, o: Partial<TarSpec>): Buffer {
  const h = Buffer.alloc(512);
  const put = (s: string, off: number, len: number) => { Buffer.from(s).copy(h, off, 0, len); };
  const oct = (n: number, off: number, len: number) => put(n.toString(8).padStart(len - 1, '0'), off, len - 1);
  put(name, 0, 100);
  oct(o.mode ?? (flag === '5' ? 0o755 : 0o644), 100, 8);
  oct(o.uid ?? 0, 108, 8);
  oct(o.gid ?? 0, 116, 8);
  oct(size, 124, 12);
  oct(1700000000, 136, 12);
  h[156] = flag.charCodeAt(0);
  put(o.linkname ?? '', 157, 100);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  oct(o.devmajor ?? 0, 329, 8);
  oct(o.devminor ?? 0, 337, 8);
  h.fill(32, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return h;
}

function pad(b: Buffer): Buffer {
  const n = Math.ceil(b.length / 512) * 512;
  return n === b.length ? b : Buffer.concat([b, Buffer.alloc(n - b.length)]);
}

/** Writes a tar with exactly the given entries (no checks: it is for hostile inputs). */
export function makeTar(entries: TarSpec[], opts: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.pax) {
      let body = '';
      for (const [k, v] of Object.entries(e.pax)) {
        const rec = ` ${k}=${v}\n`;
        let len = rec.length + 1;
        while (String(len).length + rec.length !== len) len = String(len).length + rec.length;
        body += `${len}${rec}`;
      }
      const b = Buffer.from(body);
      parts.push(header('PaxHeader', 'x', b.length, {}), pad(b));
    }
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    const type = e.type ?? 'file';
    parts.push(header(e.name, FLAG[type], type === 'file' ? data.length : 0, e));
    if (type === 'file' && data.length) parts.push(pad(data));
  }
  if (opts.end !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export const repoRoot = path.resolve(__dirname, '..', '..', '..', '..');

/** Builds the busybox test image as an OCI layout in `out`; returns its manifest digest. */
export function buildTestImage(out: string, opts: { tag?: string; compress?: 'gzip' | 'zstd' | 'none'; padMb?: number; dockerArchive?: string } = {}): string {
  const args = ['--out', out, '--tag', opts.tag ?? 'latest', '--compress', opts.compress ?? 'gzip'];
  if (opts.padMb) args.push('--pad-mb', String(opts.padMb));
  if (opts.dockerArchive) args.push('--docker-archive', opts.dockerArchive);
  return execFileSync(path.join(repoRoot, 'tools', 'build-test-image.sh'), args, { encoding: 'utf8' }).trim();
}

export async function* chunks(b: Buffer, size = 7919): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

/** Writes an OCI layout holding one image made of `layers` (uncompressed tars), tagged `tag`. */
export function writeLayout(dir: string, layers: Buffer[], tag: string, config: Record<string, unknown> = {}): void {
  fs.mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (b: Buffer): { digest: string; size: number } => {
    const hex = createHash('sha256').update(b).digest('hex');
    fs.writeFileSync(path.join(dir, 'blobs', 'sha256', hex), b);
    return { digest: `sha256:${hex}`, size: b.length };
  };
  const descs = layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...put(l) }));
  const diffIds = descs.map((d) => d.digest);
  const cfg = put(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', ...config, rootfs: { type: 'layers', diff_ids: diffIds } })));
  const manifest = put(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg }, layers: descs })));
  fs.writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }] }));
}

/** Hostile layers and the error each must be rejected with. */
export const corpus: Array<{ name: string; entries: TarSpec[]; error: RegExp; limits?: Record<string, number> }> = [
  { name: 'dot-dot path', entries: [{ name: '../evil', data: 'x' }], error: /path contains "\.\."/ },
  { name: 'dot-dot in the middle', entries: [{ name: 'a/../../evil', data: 'x' }], error: /path contains "\.\."/ },
  { name: 'absolute path', entries: [{ name: '/etc/evil', data: 'x' }], error: /absolute path/ },
  { name: 'write through a symlink to a dir outside', entries: [{ name: 'esc', type: 'symlink', linkname: '/' }, { name: 'esc/evil', data: 'x' }], error: /parent "esc" is a symlink/ },
  { name: 'write through a relative symlink', entries: [{ name: 'd', type: 'dir' }, { name: 'd/up', type: 'symlink', linkname: '.' }, { name: 'd/up/f', data: 'x' }], error: /parent "d\/up" is a symlink/ },
  { name: 'relative symlink that climbs out', entries: [{ name: 'a/link', type: 'symlink', linkname: '../../../etc/passwd' }], error: /points out of the layer/ },
  { name: 'hardlink to a host file', entries: [{ name: 'h', type: 'link', linkname: '/etc/passwd' }], error: /absolute path/ },
  { name: 'hardlink climbing out', entries: [{ name: 'h', type: 'link', linkname: '../evil-target' }], error: /path contains "\.\."/ },
  { name: 'hardlink through a symlink', entries: [{ name: 's', type: 'symlink', linkname: '/etc' }, { name: 'h', type: 'link', linkname: 's/passwd' }], error: /not in this layer/ },
  { name: 'hardlink to a file not in the layer', entries: [{ name: 'h', type: 'link', linkname: 'etc/shadow' }], error: /not in this layer/ },
  { name: 'char device', entries: [{ name: 'dev/mem', type: 'char', devmajor: 1, devminor: 1 }], error: /char device 1:1 is not allowed/ },
  { name: 'block device', entries: [{ name: 'sda', type: 'block', devmajor: 8, devminor: 0 }], error: /block device 8:0 is not allowed/ },
  { name: 'PAX path with ..', entries: [{ name: 'innocent', data: 'x', pax: { path: '../../pax-evil' } }], error: /path contains "\.\."/ },
  { name: 'whiteout of ..', entries: [{ name: 'a/.wh...', data: '' }], error: /whiteout of an invalid name/ },
  { name: 'name with NUL via PAX', entries: [{ name: 'x', data: 'x', pax: { path: 'a\0b' } }], error: /NUL/ },
  { name: 'component longer than NAME_MAX', entries: [{ name: 'x', data: 'x', pax: { path: 'z'.repeat(300) } }], error: /longer than 255 bytes/ },
  { name: 'too many entries', entries: Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, data: 'x' })), error: /more than 10 entries/, limits: { maxEntries: 10 } },
];
