// The manifest codec: Kubernetes YAML/JSON <-> berth.core.v1 messages.
//
// Driven by the proto descriptors (packages/api/descriptor), so a field added to proto/ is known
// here without code changes. Decoding is strict, like kubectl's strict decoding: an unknown or
// duplicate field, or a value of the wrong type, is an error naming its path
// (`spec.containers[0].imagePullPolcy: unknown field "imagePullPolcy"`). IntOrString takes the
// Kubernetes form (a bare 8080 or "http"); bytes are base64 as in Kubernetes JSON.
import * as fs from 'node:fs';
import { core, descriptorSetPath } from '@berth/api';
import { createFileRegistry, fromBinary, ScalarType, type DescField, type DescMessage, type FileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { parseAllDocuments } from 'yaml';
import { KINDS, kindInfo, unwrap, wrap, type KindInfo, type TypedObject } from './kinds';

/** A manifest that cannot be decoded; `field` is the path of the first problem. */
export class DecodeError extends Error {
  constructor(readonly field: string, readonly reason: string, readonly source?: string) {
    super(`${source ? `${source}: ` : ''}${field ? `${field}: ` : ''}${reason}`);
    this.name = 'DecodeError';
  }
}

/** Kubernetes' limit on a stored object (etcd's default request limit is 1.5 MiB). */
export const MAX_OBJECT_BYTES = 1.5 * 1024 * 1024;

let registry: FileRegistry | undefined;
function reg(): FileRegistry {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, fs.readFileSync(descriptorSetPath)));
  return registry;
}
function messageDesc(name: string): DescMessage {
  const d = reg().getMessage(name);
  if (!d) throw new Error(`descriptor for ${name} not found in ${descriptorSetPath}`);
  return d;
}

const INT_OR_STRING = 'berth.core.v1.IntOrString';
const join = (path: string, key: string) => (path ? `${path}.${key}` : key);

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function decodeScalar(t: ScalarType, v: unknown, path: string): unknown {
  switch (t) {
    case ScalarType.STRING:
      if (typeof v !== 'string') throw new DecodeError(path, `expected a string, got ${typeName(v)} ${JSON.stringify(v)}`);
      return v;
    case ScalarType.BOOL:
      if (typeof v !== 'boolean') throw new DecodeError(path, `expected a boolean, got ${typeName(v)} ${JSON.stringify(v)}`);
      return v;
    case ScalarType.BYTES: {
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) throw new DecodeError(path, 'expected base64-encoded data');
      return Buffer.from(v, 'base64');
    }
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      if (typeof v !== 'number') throw new DecodeError(path, `expected a number, got ${typeName(v)} ${JSON.stringify(v)}`);
      return v;
    default: {
      // Integers. Kubernetes JSON writes int64 as numbers; accept a decimal string too, as protojson does.
      const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isInteger(n)) throw new DecodeError(path, `expected an integer, got ${typeName(v)} ${JSON.stringify(v)}`);
      const is32 = t === ScalarType.INT32 || t === ScalarType.SINT32 || t === ScalarType.SFIXED32;
      const isU32 = t === ScalarType.UINT32 || t === ScalarType.FIXED32;
      if (is32 && (n < -2147483648 || n > 2147483647)) throw new DecodeError(path, `${n} is out of range for a 32-bit integer`);
      if (isU32 && (n < 0 || n > 4294967295)) throw new DecodeError(path, `${n} is out of range for an unsigned 32-bit integer`);
      if (!Number.isSafeInteger(n)) throw new DecodeError(path, `${n} is out of range`);
      return n;
    }
  }
}

function decodeMessage(desc: DescMessage, v: unknown, path: string): Record<string, unknown> {
  if (desc.typeName === INT_OR_STRING) {
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) throw new DecodeError(path, `expected an integer or a string, got ${v}`);
      return { intValue: v };
    }
    if (typeof v === 'string') return { stringValue: v };
    throw new DecodeError(path, `expected an integer or a string, got ${typeName(v)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DecodeError(path, `expected an object, got ${typeName(v)}`);
  const out: Record<string, unknown> = {};
  const byJson = new Map<string, DescField>();
  for (const f of desc.fields) byJson.set(f.jsonName, f);
  for (const [key, val] of Object.entries(v)) {
    const f = byJson.get(key);
    const p = join(path, key);
    if (!f) throw new DecodeError(p, `unknown field "${key}"`);
    // null means "not set", as in Kubernetes JSON.
    if (val === null || val === undefined) continue;
    out[f.jsonName] = decodeField(f, val, p);
  }
  return out;
}

function decodeField(f: DescField, v: unknown, path: string): unknown {
  switch (f.fieldKind) {
    case 'scalar':
      return decodeScalar(f.scalar, v, path);
    case 'enum':
      // The core model keeps Kubernetes enums as strings; protobuf enums are not used.
      throw new DecodeError(path, 'enum fields are not supported in manifests');
    case 'message':
      return decodeMessage(f.message, v, path);
    case 'list': {
      if (!Array.isArray(v)) throw new DecodeError(path, `expected an array, got ${typeName(v)}`);
      return v.map((item, i) => {
        const p = `${path}[${i}]`;
        if (item === null) throw new DecodeError(p, 'null is not allowed in a list');
        if (f.listKind === 'message') return decodeMessage(f.message, item, p);
        if (f.listKind === 'scalar') return decodeScalar(f.scalar, item, p);
        throw new DecodeError(p, 'enum lists are not supported');
      });
    }
    case 'map': {
      if (typeof v !== 'object' || Array.isArray(v)) throw new DecodeError(path, `expected an object, got ${typeName(v)}`);
      const out: Record<string, unknown> = {};
      for (const [mk, mv] of Object.entries(v as Record<string, unknown>)) {
        const p = `${path}[${JSON.stringify(mk)}]`;
        if (mv === null) throw new DecodeError(p, 'null is not allowed as a map value');
        if (f.mapKind === 'message') out[mk] = decodeMessage(f.message, mv, p);
        else if (f.mapKind === 'scalar') out[mk] = decodeScalar(f.scalar, mv, p);
        else throw new DecodeError(p, 'enum maps are not supported');
      }
      return out;
    }
  }
}

/** Decodes one parsed manifest (a plain object with apiVersion and kind) into the envelope. */
export function decodeObject(manifest: unknown, source?: string): core.Object {
  if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) throw new DecodeError('', `expected an object, got ${typeName(manifest)}`, source);
  const m = manifest as Record<string, unknown>;
  if (m.kind === undefined || m.kind === '') throw new DecodeError('kind', 'Required value', source);
  if (m.apiVersion === undefined || m.apiVersion === '') throw new DecodeError('apiVersion', 'Required value', source);
  if (typeof m.kind !== 'string') throw new DecodeError('kind', 'expected a string', source);
  const info = kindInfo(m.kind);
  if (!info) throw new DecodeError('kind', `no kind "${m.kind}" is registered (known: ${knownKinds()})`, source);
  if (m.apiVersion !== info.apiVersion) throw new DecodeError('apiVersion', `kind ${info.kind} is served as "${info.apiVersion}", not ${JSON.stringify(m.apiVersion)}`, source);
  let partial: Record<string, unknown>;
  try {
    partial = decodeMessage(messageDesc(info.message), m, '');
  } catch (e) {
    if (e instanceof DecodeError && source) throw new DecodeError(e.field, e.reason, source);
    throw e;
  }
  return core.Object.fromPartial({ [info.field]: partial } as Parameters<typeof core.Object.fromPartial>[0]);
}

function knownKinds(): string {
  return KINDS.map((i) => i.kind).join(', ');
}

/**
 * Parses a manifest file's text: multi-document YAML or JSON, and `kind: List` (or any `*List`)
 * with `items`. Empty documents are skipped. `source` prefixes errors (a file name).
 */
export function parseManifests(text: string, source?: string): core.Object[] {
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true });
  const out: core.Object[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const where = list.length > 1 ? `${source ?? 'stdin'} (document ${i + 1})` : source;
    if (doc.errors.length) {
      const e = doc.errors[0];
      const pos = e.linePos?.[0];
      throw new DecodeError('', `malformed YAML${pos ? ` at line ${pos.line}, column ${pos.col}` : ''}: ${e.message.split('\n')[0]}`, source);
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return;
    if (typeof value === 'object' && !Array.isArray(value) && typeof (value as { kind?: unknown }).kind === 'string' && /List$/.test((value as { kind: string }).kind)) {
      const items = (value as { items?: unknown }).items;
      if (!Array.isArray(items)) throw new DecodeError('items', 'expected an array', where);
      items.forEach((item, j) => {
        try {
          out.push(decodeObject(item));
        } catch (err) {
          if (err instanceof DecodeError) throw new DecodeError(err.field ? `items[${j}].${err.field}` : `items[${j}]`, err.reason, where);
          throw err;
        }
      });
      return;
    }
    out.push(decodeObject(value, where));
  });
  return out;
}

// ---- encoding ----

function encodeScalar(t: ScalarType, v: unknown): unknown {
  if (t === ScalarType.BYTES) return Buffer.from(v as Uint8Array).toString('base64');
  return v;
}

function isZero(f: DescField, v: unknown): boolean {
  if (v === undefined || v === null) return true;
  if (f.fieldKind === 'list') return (v as unknown[]).length === 0;
  if (f.fieldKind === 'map') return Object.keys(v as object).length === 0;
  if (f.fieldKind === 'message') return false; // presence is explicit: an empty emptyDir: {} matters
  if (f.presence === 1 /* EXPLICIT */) return false;
  return v === '' || v === 0 || v === false || (v instanceof Uint8Array && v.length === 0);
}

function encodeMessage(desc: DescMessage, v: Record<string, unknown>): unknown {
  if (desc.typeName === INT_OR_STRING) return v.intValue !== undefined ? v.intValue : (v.stringValue ?? '');
  const out: Record<string, unknown> = {};
  for (const f of desc.fields) {
    const val = v[f.jsonName];
    if (isZero(f, val)) continue;
    switch (f.fieldKind) {
      case 'scalar': out[f.jsonName] = encodeScalar(f.scalar, val); break;
      case 'message': out[f.jsonName] = encodeMessage(f.message, val as Record<string, unknown>); break;
      case 'list':
        out[f.jsonName] = (val as unknown[]).map((x) => (f.listKind === 'message' ? encodeMessage(f.message, x as Record<string, unknown>) : f.listKind === 'scalar' ? encodeScalar(f.scalar, x) : x));
        break;
      case 'map': {
        const m: Record<string, unknown> = {};
        for (const [mk, mv] of Object.entries(val as Record<string, unknown>)) {
          m[mk] = f.mapKind === 'message' ? encodeMessage(f.message, mv as Record<string, unknown>) : f.mapKind === 'scalar' ? encodeScalar(f.scalar, mv) : mv;
        }
        out[f.jsonName] = m;
        break;
      }
      default: out[f.jsonName] = val;
    }
  }
  return out;
}

/**
 * The Kubernetes JSON form of an object (apiVersion and kind first, zero values omitted, as
 * kubectl prints it).
 */
export function encodeObject(obj: core.Object): Record<string, unknown> {
  const { info, value } = unwrap(obj);
  const body = encodeMessage(messageDesc(info.message), value as unknown as Record<string, unknown>) as Record<string, unknown>;
  return { apiVersion: info.apiVersion, kind: info.kind, ...body };
}

/** Encodes a typed value of a known kind. */
export function encodeTyped(info: KindInfo, value: TypedObject): Record<string, unknown> {
  return encodeObject(wrap(info, value));
}

/** Size of an object as stored (the protobuf encoding), to enforce MAX_OBJECT_BYTES. */
export function encodedSize(obj: core.Object): number {
  return core.Object.encode(obj).finish().length;
}

/** Fills apiVersion/kind from the envelope field, so an object is self-describing. */
export function withTypeMeta(obj: core.Object): core.Object {
  const { info, value } = unwrap(obj);
  value.apiVersion = info.apiVersion;
  value.kind = info.kind;
  return obj;
}
