// Hand-written protobuf codecs for the v3 client's hot calls, Range and Put: a request is
// written straight into one Buffer behind its 5-byte gRPC prefix, and a response is read
// straight into the client's public types (numbers, hex lease IDs). The generated code would
// build the request in a chunked writer and copy it twice, and decode the answer into BigInt
// fields that the client then converts again: on a ~100 µs call that is a measurable part.
// Every other message goes through the generated code (src/gen); wire.test.ts checks that both
// agree byte for byte. Field numbers are those of proto/etcdserverpb/rpc.proto and
// proto/mvccpb/kv.proto (the wire contract).
import { KVService, type PutRequest, type RangeRequest } from '../gen/etcdserverpb/rpc';
import type { MethodDef } from './connection';
import type { KeyValue } from './types';

const EMPTY = Buffer.alloc(0);
const TWO_32 = 2 ** 32;

// ---- writing ----

/** Writes a non-negative integer below 2^53 as a varint. */
function writeUint(b: Buffer, o: number, n: number): number {
  while (n >= 0x80) {
    b[o++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  b[o++] = n;
  return o;
}

/** Writes an int64 as a varint (negative values as their 64-bit two's complement, 10 bytes). */
function writeInt64(b: Buffer, o: number, v: bigint): number {
  if (v >= 0n && v <= 9007199254740991n) return writeUint(b, o, Number(v));
  let u = BigInt.asUintN(64, v);
  while (u >= 0x80n) {
    b[o++] = Number(u & 0x7fn) | 0x80;
    u >>= 7n;
  }
  b[o++] = Number(u);
  return o;
}

function writeBytes(b: Buffer, o: number, tag: number, v: Uint8Array): number {
  if (v.length === 0) return o;
  b[o++] = tag;
  o = writeUint(b, o, v.length);
  b.set(v, o);
  return o + v.length;
}

function writeInt64Field(b: Buffer, o: number, tag: number, v: bigint): number {
  if (v === 0n) return o;
  b[o++] = tag;
  return writeInt64(b, o, v);
}

function writeBoolField(b: Buffer, o: number, tag: number, v: boolean): number {
  if (!v) return o;
  b[o++] = tag;
  b[o++] = 1;
  return o;
}

/** Room for the 5-byte prefix, the bytes fields and `fields` tagged varints of at most 11 bytes. */
function alloc(bytes: number, fields: number): Buffer {
  return Buffer.allocUnsafe(5 + bytes + fields * 11 + 10);
}

/** Fills in the gRPC prefix (uncompressed, length) and trims. */
function framed(b: Buffer, end: number): Buffer {
  b[0] = 0;
  b.writeUInt32BE(end - 5, 1);
  return b.subarray(0, end);
}

/** A RangeRequest with its gRPC prefix; the same bytes as RangeRequest.encode. */
export function frameRangeRequest(r: RangeRequest): Buffer {
  const b = alloc(r.key.length + r.rangeEnd.length, 13);
  let o = writeBytes(b, 5, 0x0a, r.key);
  o = writeBytes(b, o, 0x12, r.rangeEnd);
  o = writeInt64Field(b, o, 0x18, r.limit);
  o = writeInt64Field(b, o, 0x20, r.revision);
  // Enums: small non-negative numbers.
  if (r.sortOrder !== 0) { b[o++] = 0x28; o = writeUint(b, o, r.sortOrder); }
  if (r.sortTarget !== 0) { b[o++] = 0x30; o = writeUint(b, o, r.sortTarget); }
  o = writeBoolField(b, o, 0x38, r.serializable);
  o = writeBoolField(b, o, 0x40, r.keysOnly);
  o = writeBoolField(b, o, 0x48, r.countOnly);
  o = writeInt64Field(b, o, 0x50, r.minModRevision);
  o = writeInt64Field(b, o, 0x58, r.maxModRevision);
  o = writeInt64Field(b, o, 0x60, r.minCreateRevision);
  o = writeInt64Field(b, o, 0x68, r.maxCreateRevision);
  return framed(b, o);
}

/** A PutRequest with its gRPC prefix; the same bytes as PutRequest.encode. */
export function framePutRequest(r: PutRequest): Buffer {
  const b = alloc(r.key.length + r.value.length, 6);
  let o = writeBytes(b, 5, 0x0a, r.key);
  o = writeBytes(b, o, 0x12, r.value);
  o = writeInt64Field(b, o, 0x18, r.lease);
  o = writeBoolField(b, o, 0x20, r.prevKv);
  o = writeBoolField(b, o, 0x28, r.ignoreValue);
  o = writeBoolField(b, o, 0x30, r.ignoreLease);
  return framed(b, o);
}

// ---- reading ----

class Reader {
  constructor(readonly buf: Buffer, public pos: number, readonly end: number) {}

  private truncated(): never {
    throw new Error(`truncated message (at byte ${this.pos} of ${this.end})`);
  }

  /** A varint as a number: exact below 2^53 (revisions, counts, lengths). */
  uint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.truncated();
      const byte = this.buf[this.pos++];
      result += (byte & 0x7f) * mul;
      if (byte < 0x80) return result;
      mul *= 0x80;
    }
    throw new Error('varint longer than 10 bytes');
  }

  /** A varint as the hex of its 64 bits (lease IDs, as idToHex prints them). */
  hex64(): string {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.truncated();
      const byte = this.buf[this.pos++];
      const bits = byte & 0x7f;
      const shift = 7 * i;
      if (shift < 28) lo += bits * 2 ** shift;
      else if (shift === 28) { lo += (bits & 0x0f) * 2 ** 28; hi += bits >> 4; }
      else hi += bits * 2 ** (shift - 32);
      if (byte < 0x80) {
        hi %= TWO_32;
        return hi === 0 ? lo.toString(16) : hi.toString(16) + lo.toString(16).padStart(8, '0');
      }
    }
    throw new Error('varint longer than 10 bytes');
  }

  /** The end of a length-delimited field that starts here. */
  sub(): number {
    const len = this.uint();
    const end = this.pos + len;
    if (end > this.end) this.truncated();
    return end;
  }

  bytes(): Buffer {
    const end = this.sub();
    const v = this.buf.subarray(this.pos, end);
    this.pos = end;
    return v;
  }

  /** Skips a field this client does not read (newer etcd versions add some). */
  skip(wireType: number): void {
    switch (wireType) {
      case 0: this.uint(); return;
      case 1: this.pos += 8; break;
      case 2: this.pos = this.sub(); return;
      case 5: this.pos += 4; break;
      default: throw new Error(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) this.truncated();
  }
}

/** ResponseHeader: only the revision (3) is used. */
function readRevision(r: Reader): number {
  const end = r.sub();
  let revision = 0;
  const inner = new Reader(r.buf, r.pos, end);
  while (inner.pos < end) {
    const tag = inner.uint();
    if (tag === 0x18) revision = inner.uint();
    else inner.skip(tag & 7);
  }
  r.pos = end;
  return revision;
}

/** mvccpb.KeyValue as the client's KeyValue. */
function readKv(r: Reader): KeyValue {
  const end = r.sub();
  const inner = new Reader(r.buf, r.pos, end);
  const kv: KeyValue = { key: EMPTY, value: EMPTY, createRevision: 0, modRevision: 0, version: 0 };
  while (inner.pos < end) {
    const tag = inner.uint();
    switch (tag) {
      case 0x0a: kv.key = inner.bytes(); break;
      case 0x10: kv.createRevision = inner.uint(); break;
      case 0x18: kv.modRevision = inner.uint(); break;
      case 0x20: kv.version = inner.uint(); break;
      case 0x2a: kv.value = inner.bytes(); break;
      case 0x30: { const lease = inner.hex64(); if (lease !== '0') kv.lease = lease; break; }
      default: inner.skip(tag & 7);
    }
  }
  r.pos = end;
  return kv;
}

export interface RangeAnswer {
  kvs: KeyValue[];
  more: boolean;
  count: number;
  revision: number;
}

/** A RangeResponse as the client's RangeResult. */
export function decodeRangeResponse(buf: Buffer): RangeAnswer {
  const r = new Reader(buf, 0, buf.length);
  const out: RangeAnswer = { kvs: [], more: false, count: 0, revision: 0 };
  while (r.pos < r.end) {
    const tag = r.uint();
    switch (tag) {
      case 0x0a: out.revision = readRevision(r); break;
      case 0x12: out.kvs.push(readKv(r)); break;
      case 0x18: out.more = r.uint() !== 0; break;
      case 0x20: out.count = r.uint(); break;
      default: r.skip(tag & 7);
    }
  }
  return out;
}

export interface PutAnswer {
  revision: number;
  prevKv?: KeyValue;
}

/** A PutResponse as the client's PutResult. */
export function decodePutResponse(buf: Buffer): PutAnswer {
  const r = new Reader(buf, 0, buf.length);
  const out: PutAnswer = { revision: 0 };
  while (r.pos < r.end) {
    const tag = r.uint();
    switch (tag) {
      case 0x0a: out.revision = readRevision(r); break;
      case 0x12: out.prevKv = readKv(r); break;
      default: r.skip(tag & 7);
    }
  }
  return out;
}

/** KV.Range and KV.Put through these codecs. */
export const RANGE: MethodDef<RangeRequest, RangeAnswer> = {
  path: KVService.range.path,
  requestSerialize: KVService.range.requestSerialize,
  requestFrame: frameRangeRequest,
  responseDeserialize: decodeRangeResponse,
};
export const PUT: MethodDef<PutRequest, PutAnswer> = {
  path: KVService.put.path,
  requestSerialize: KVService.put.requestSerialize,
  requestFrame: framePutRequest,
  responseDeserialize: decodePutResponse,
};
