// Layer decompression chosen by the bytes, not by the media type a manifest claims: gzip through
// Node's zlib (off the main thread), zstd through fzstd (Node 20's zlib has no zstd), else plain tar.
import { Readable, pipeline } from 'node:stream';
import * as zlib from 'node:zlib';
import { Decompress } from 'fzstd';
import { InvalidArgumentError } from '@berth/common';

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
  // zstd: fzstd decodes synchronously as chunks are pushed; its output is handed on per input chunk.
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
