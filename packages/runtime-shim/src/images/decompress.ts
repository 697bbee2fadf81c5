// Layer decompression chosen by the bytes, not by the media type a manifest claims: gzip through
// Node's zlib (off the main thread); zstd through Debian's zstd(1) in a child process (another
// core, native speed) or, without it, fzstd (Node 20's zlib has no zstd); else plain tar.
import { spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { Readable, pipeline } from 'node:stream';
import * as zlib from 'node:zlib';
import { Decompress } from 'fzstd';
import { InvalidArgumentError } from '@berth/common';
import { spawnHelper } from './children';

export type Compression = 'gzip' | 'zstd' | 'none';

export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

async function* prepend(first: Buffer, it: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  if (first.length) yield first;
  for (;;) {
    const r = await it.next();
    if (r.done) return;
    yield r.value;
  }
}

/** Decompresses `src` (gzip, zstd or none, detected from its first bytes). */
export async function* decompress(src: AsyncIterable<Buffer>, field = 'layer'): AsyncGenerator<Buffer> {
  const it = src[Symbol.asyncIterator]();
  let head: Buffer = Buffer.alloc(0);
  while (head.length < 4) {
    const r = await it.next();
    if (r.done) break;
    head = head.length ? Buffer.concat([head, r.value]) : r.value;
  }
  const kind = sniffCompression(head);
  const input = prepend(head, it);
  if (kind === 'none') { yield* input; return; }
  if (kind === 'gzip') {
    const gunzip = zlib.createGunzip({ chunkSize: 256 * 1024 });
    let failed: Error | undefined;
    pipeline(Readable.from(input, { objectMode: false }), gunzip, (err) => { if (err) failed = err; });
    try {
      for await (const c of gunzip) yield c as Buffer;
    } catch (err) {
      throw new InvalidArgumentError(field, `bad gzip stream: ${(err as Error).message}`);
    } finally {
      gunzip.destroy();
    }
    if (failed) throw new InvalidArgumentError(field, `bad gzip stream: ${failed.message}`);
    return;
  }
  if (zstdBinary !== false) {
    const child = spawnZstd();
    if (child) { yield* zstdProcess(child, input, field); return; }
  }
  // zstd without zstd(1): fzstd decodes synchronously as chunks are pushed (about half the speed).
  let out: Buffer[] = [];
  const d = new Decompress((data) => { out.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength)); });
  const push = (c: Uint8Array, final: boolean): void => {
    try { d.push(c, final); } catch (err) { throw new InvalidArgumentError(field, `bad zstd stream: ${(err as Error).message}`); }
  };
  for await (const c of input) {
    push(c, false);
    if (out.length) { const o = out; out = []; yield* o; }
  }
  push(new Uint8Array(0), true);
  yield* out;
}

// Whether zstd(1) runs here: checked once (undefined: not yet).
let zstdBinary: boolean | undefined;

/** Chooses the zstd decoder: zstd(1) when present (default) or always fzstd (tests, benchmarks). */
export function useZstdBinary(on: boolean): void {
  zstdBinary = on ? undefined : false;
}

function spawnZstd(): ChildProcessWithoutNullStreams | undefined {
  if (zstdBinary === undefined) zstdBinary = spawnSync('zstd', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!zstdBinary) return undefined;
  return spawnHelper('zstd', ['-d', '-c', '-q', '--no-progress'], { stdio: ['pipe', 'pipe', 'pipe'] }) as ChildProcessWithoutNullStreams;
}

async function* zstdProcess(child: ChildProcessWithoutNullStreams, input: AsyncIterable<Buffer>, field: string): AsyncGenerator<Buffer> {
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let feedError: unknown;
  child.stdin.on('error', () => { /* the exit status and stderr tell */ });
  const feed = (async () => {
    try {
      for await (const c of input) {
        if (!child.stdin.write(c)) await new Promise<void>((r) => { child.stdin.once('drain', r); child.once('close', r); });
        if (child.exitCode !== null) break;
      }
    } catch (err) {
      feedError = err;
      child.kill('SIGKILL');
    } finally {
      child.stdin.end();
    }
  })();
  try {
    for await (const c of child.stdout) yield c as Buffer;
    await feed;
    if (feedError) throw feedError;
    const code = await exited;
    if (code !== 0) throw new InvalidArgumentError(field, `bad zstd stream: ${stderr.trim().replace(/^zstd: /, '') || `zstd exited with ${code}`}`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await feed.catch(() => undefined);
  }
}
