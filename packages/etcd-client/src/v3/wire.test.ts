// The hand-written Range/Put codecs against the generated ones (the reference): the same bytes
// for every request field, the same values for every response field (unknown fields skipped),
// and a clear error for a truncated answer. Pure logic: the real-etcd tests in kv.test.ts run
// every call through these codecs.
import { describe, expect, it } from 'vitest';
import { PutRequest, PutResponse, RangeRequest, RangeResponse } from '../gen/etcdserverpb/rpc';
import { fromPbKv, idToHex } from './types';
import { decodePutResponse, decodeRangeResponse, framePutRequest, frameRangeRequest } from './wire';

/** A deterministic pseudo-random generator, so a failure is reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
const INT64S = [0n, 1n, 127n, 128n, 300n, 2n ** 31n, 2n ** 32n + 5n, 2n ** 53n - 1n, 2n ** 62n, 2n ** 63n - 1n, -1n, -(2n ** 63n)];

function randomBytes(r: () => number, max: number): Buffer {
  const n = Math.floor(r() * max);
  return Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));
}
const pick = <T,>(r: () => number, xs: T[]): T => xs[Math.floor(r() * xs.length)];
const maybe = (r: () => number, v: bigint) => (r() < 0.5 ? 0n : v);

function unframe(b: Buffer): Buffer {
  expect(b[0]).toBe(0);
  expect(b.readUInt32BE(1)).toBe(b.length - 5);
  return b.subarray(5);
}

describe('wire codecs', () => {
  it('RangeRequest: the same bytes as the generated encoder', () => {
    const r = rng(1);
    for (let i = 0; i < 500; i++) {
      const req = RangeRequest.fromPartial({
        key: randomBytes(r, 40), rangeEnd: randomBytes(r, 300), limit: maybe(r, pick(r, INT64S)), revision: maybe(r, pick(r, INT64S)),
        sortOrder: Math.floor(r() * 3), sortTarget: Math.floor(r() * 5), serializable: r() < 0.5, keysOnly: r() < 0.5, countOnly: r() < 0.5,
        minModRevision: maybe(r, pick(r, INT64S)), maxModRevision: maybe(r, pick(r, INT64S)), minCreateRevision: maybe(r, pick(r, INT64S)), maxCreateRevision: maybe(r, pick(r, INT64S)),
      });
      expect(unframe(frameRangeRequest(req)).toString('hex')).toBe(Buffer.from(RangeRequest.encode(req).finish()).toString('hex'));
    }
  });

  it('PutRequest: the same bytes as the generated encoder, negative lease IDs included', () => {
    const r = rng(2);
    for (let i = 0; i < 500; i++) {
      const req = PutRequest.fromPartial({ key: randomBytes(r, 40), value: randomBytes(r, 20000), lease: maybe(r, pick(r, INT64S)), prevKv: r() < 0.5, ignoreValue: r() < 0.5, ignoreLease: r() < 0.5 });
      expect(unframe(framePutRequest(req)).toString('hex')).toBe(Buffer.from(PutRequest.encode(req).finish()).toString('hex'));
    }
  });

  const header = (r: () => number) => ({ clusterId: BigInt.asUintN(64, pick(r, INT64S)), memberId: BigInt.asUintN(64, pick(r, INT64S)), revision: BigInt(Math.floor(r() * 2 ** 53)), raftTerm: BigInt(Math.floor(r() * 1000)) });
  const kv = (r: () => number) => ({
    key: randomBytes(r, 40), value: randomBytes(r, 300), createRevision: BigInt(Math.floor(r() * 2 ** 53)), modRevision: BigInt(Math.floor(r() * 2 ** 40)),
    version: BigInt(Math.floor(r() * 100)), lease: maybe(r, pick(r, INT64S)),
  });

  it('RangeResponse: the same values as the generated decoder plus fromPbKv', () => {
    const r = rng(3);
    for (let i = 0; i < 200; i++) {
      const msg = RangeResponse.fromPartial({ header: header(r), kvs: Array.from({ length: Math.floor(r() * 5) }, () => kv(r)), more: r() < 0.5, count: BigInt(Math.floor(r() * 1e6)) });
      const bytes = Buffer.from(RangeResponse.encode(msg).finish());
      const ref = RangeResponse.decode(bytes);
      expect(decodeRangeResponse(bytes)).toEqual({ kvs: ref.kvs.map(fromPbKv), more: ref.more, count: Number(ref.count), revision: Number(ref.header!.revision) });
    }
  });

  it('PutResponse with and without prevKv; lease IDs print like idToHex', () => {
    const r = rng(4);
    for (let i = 0; i < 300; i++) {
      const msg = PutResponse.fromPartial({ header: header(r), prevKv: r() < 0.5 ? kv(r) : undefined });
      const bytes = Buffer.from(PutResponse.encode(msg).finish());
      const got = decodePutResponse(bytes);
      expect(got.revision).toBe(Number(msg.header!.revision));
      if (msg.prevKv) {
        expect(got.prevKv).toEqual(fromPbKv(PutResponse.decode(bytes).prevKv!));
        if (msg.prevKv.lease !== 0n) expect(got.prevKv!.lease).toBe(idToHex(msg.prevKv.lease));
      } else {
        expect(got.prevKv).toBeUndefined();
      }
    }
  });

  it('skips fields it does not know (of every wire type), at every level', () => {
    const kvBytes = Buffer.concat([
      Buffer.from(RangeResponse.encode(RangeResponse.fromPartial({ kvs: [{ key: Buffer.from('k'), value: Buffer.from('v'), modRevision: 7n }] })).finish()),
    ]);
    // field 9 varint, field 10 fixed64, field 11 length-delimited, field 12 fixed32
    const unknown = Buffer.from([0x48, 0x96, 0x01, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5a, 0x02, 0xaa, 0xbb, 0x65, 1, 2, 3, 4]);
    const got = decodeRangeResponse(Buffer.concat([unknown, kvBytes, unknown]));
    expect(got.kvs).toHaveLength(1);
    expect(got.kvs[0]).toMatchObject({ key: Buffer.from('k'), value: Buffer.from('v'), modRevision: 7 });
  });

  it('a truncated answer is an error, not a partial result', () => {
    const bytes = Buffer.from(RangeResponse.encode(RangeResponse.fromPartial({ header: { revision: 5n }, kvs: [{ key: Buffer.from('key'), value: Buffer.alloc(100, 1) }] })).finish());
    for (const cut of [1, 3, 10, bytes.length - 1]) expect(() => decodeRangeResponse(bytes.subarray(0, cut))).toThrow(/truncated/);
  });
});
