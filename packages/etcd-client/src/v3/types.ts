// The v3 client's public value types and the conversions between them and the wire messages.
// Revisions are plain numbers (exact up to 2^53, far beyond any etcd history); lease and member
// IDs are random 64-bit values, so they travel as hex strings, as etcdctl prints them.
import * as fs from 'node:fs';
import type { KeyValue as PbKeyValue } from '../gen/mvccpb/kv';
import { EtcdArgumentError } from './errors';

export type Bytes = string | Uint8Array;

export interface KeyValue {
  key: Buffer;
  value: Buffer;
  createRevision: number;
  modRevision: number;
  /** Number of writes since creation. */
  version: number;
  /** Hex lease ID, absent when the key has no lease. */
  lease?: string;
}

const EMPTY = Buffer.alloc(0);

export function toBuffer(v: Bytes | undefined, option: string, allowEmpty = true): Buffer {
  if (v === undefined) return EMPTY;
  let b: Buffer;
  if (typeof v === 'string') b = Buffer.from(v);
  else if (Buffer.isBuffer(v)) b = v;
  else if (v instanceof Uint8Array) b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  else throw new EtcdArgumentError(option, `must be a string or bytes, got ${typeof v}`);
  if (!allowEmpty && b.length === 0) throw new EtcdArgumentError(option, 'must not be empty');
  return b;
}

/** The smallest key greater than every key starting with `prefix` ("\0" = no upper bound). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

export function leaseToWire(id: string | bigint | undefined, option: string): bigint {
  if (id === undefined) return 0n;
  if (typeof id === 'bigint') return id;
  if (typeof id !== 'string' || !/^[0-9a-f]{1,16}$/i.test(id)) throw new EtcdArgumentError(option, `must be a hex lease ID like "694d7d0f3d5a4c0b", got ${JSON.stringify(id)}`);
  return BigInt.asIntN(64, BigInt(`0x${id}`));
}

export function idToHex(id: bigint): string {
  return BigInt.asUintN(64, id).toString(16);
}

export function memberIdToWire(id: string, option: string): bigint {
  if (typeof id !== 'string' || !/^[0-9a-f]{1,16}$/i.test(id)) throw new EtcdArgumentError(option, `must be a hex member ID, got ${JSON.stringify(id)}`);
  return BigInt(`0x${id}`);
}

export function fromPbKv(kv: PbKeyValue): KeyValue {
  const out: KeyValue = {
    key: kv.key,
    value: kv.value,
    createRevision: Number(kv.createRevision),
    modRevision: Number(kv.modRevision),
    version: Number(kv.version),
  };
  if (kv.lease !== 0n) out.lease = idToHex(kv.lease);
  return out;
}

export function checkRevision(v: number | undefined, option: string): bigint {
  if (v === undefined) return 0n;
  if (!Number.isSafeInteger(v) || v < 0) throw new EtcdArgumentError(option, `must be a non-negative integer, got ${String(v)}`);
  return BigInt(v);
}

/** TLS material given as a PEM path or PEM contents. */
export function readPem(v: string | Buffer | undefined, option: string): Buffer | undefined {
  if (v === undefined) return undefined;
  if (Buffer.isBuffer(v)) return v;
  if (v.includes('-----BEGIN')) return Buffer.from(v);
  try {
    return fs.readFileSync(v);
  } catch (err) {
    throw new EtcdArgumentError(option, `cannot read ${v}: ${(err as Error).message}`);
  }
}
