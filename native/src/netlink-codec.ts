/**
 * Netlink message encoding and decoding, in TS (policy side): the addon only moves bytes.
 * Layouts follow the kernel's uapi headers (linux/netlink.h, rtnetlink.h, if_link.h,
 * neighbour.h, pkt_sched.h, netfilter/nfnetlink_conntrack.h).
 */
import { isIPv4, isIPv6 } from 'node:net';

export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  ECHO: 0x8,
  DUMP: 0x300,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
} as const;

export const RTM = {
  NEWLINK: 16, DELLINK: 17, GETLINK: 18, SETLINK: 19,
  NEWADDR: 20, DELADDR: 21, GETADDR: 22,
  NEWROUTE: 24, DELROUTE: 25, GETROUTE: 26,
  NEWNEIGH: 28, DELNEIGH: 29, GETNEIGH: 30,
  NEWQDISC: 36, DELQDISC: 37, GETQDISC: 38,
  NEWTFILTER: 44, DELTFILTER: 45, GETTFILTER: 46,
} as const;

export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_BRIDGE = 7;

/** A netlink attribute to encode: a raw payload or nested attributes. */
export type Attr = [type: number, value: Buffer | Attr[]];

/**
 * A zero-filled buffer from Node's shared pool (Buffer.alloc gives every small buffer an
 * ArrayBuffer of its own, which the garbage collector then has to track and free one by one).
 */
export function zeroed(n: number): Buffer {
  return Buffer.allocUnsafe(n).fill(0);
}

export function u8(v: number): Buffer { return Buffer.from([v & 0xff]); }
export function u16(v: number): Buffer { const b = zeroed(2); b.writeUInt16LE(v); return b; }
export function be16(v: number): Buffer { const b = zeroed(2); b.writeUInt16BE(v); return b; }
export function u32(v: number): Buffer { const b = zeroed(4); b.writeUInt32LE(v >>> 0); return b; }
export function u64(v: bigint | number): Buffer { const b = zeroed(8); b.writeBigUInt64LE(BigInt(v)); return b; }
export function cstr(s: string): Buffer {
  const b = zeroed(Buffer.byteLength(s, 'utf8') + 1);
  b.write(s, 0, 'utf8');
  return b;
}

const align4 = (n: number): number => (n + 3) & ~3;

// Messages are encoded into one buffer sized up front: a pod setup encodes dozens of
// attributes, and a buffer (plus a concat) per attribute, header and padding kept the garbage
// collector busy on the pod start path.
function attrsSize(attrs: readonly Attr[]): number {
  let n = 0;
  for (const [, value] of attrs) n += 4 + align4(Buffer.isBuffer(value) ? value.length : attrsSize(value));
  return n;
}

/** Writes `attrs` at `off` of a zero-filled `buf`; returns the offset after them. */
function writeAttrs(buf: Buffer, off: number, attrs: readonly Attr[]): number {
  for (const [type, value] of attrs) {
    const start = off;
    const nested = !Buffer.isBuffer(value);
    off = nested ? writeAttrs(buf, start + 4, value) : start + 4 + value.copy(buf, start + 4);
    buf.writeUInt16LE(off - start, start);
    buf.writeUInt16LE(nested ? type | NLA_F_NESTED : type, start + 2);
    off = start + align4(off - start);
  }
  return off;
}

export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const b = zeroed(attrsSize(attrs));
  writeAttrs(b, 0, attrs);
  return b;
}

/** Attributes by type (the last one wins for repeated types; use listAttrs for lists). */
export function parseAttrs(buf: Buffer, offset = 0, end = buf.length): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const [type, value] of listAttrs(buf, offset, end)) out.set(type, value);
  return out;
}

export function listAttrs(buf: Buffer, offset = 0, end = buf.length): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  let off = offset;
  while (off + 4 <= end) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (len < 4 || off + len > end) break;
    out.push([type, buf.subarray(off + 4, off + len)]);
    off += align4(len);
  }
  return out;
}

/** One whole netlink message: header + fixed family header + attributes. */
export function encodeMessage(type: number, flags: number, seq: number, header: Buffer, attrs: readonly Attr[] = []): Buffer {
  const attrsAt = 16 + align4(header.length);
  const b = zeroed(attrsAt + attrsSize(attrs));
  b.writeUInt32LE(b.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags | NLM_F.REQUEST, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  header.copy(b, 16);
  writeAttrs(b, attrsAt, attrs);
  return b;
}

export interface Message {
  type: number;
  flags: number;
  seq: number;
  /** Everything after the 16-byte header. */
  payload: Buffer;
}

export function parseMessages(buf: Buffer): Message[] {
  const out: Message[] = [];
  let off = 0;
  while (off + 16 <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < 16 || off + len > buf.length) break;
    out.push({ type: buf.readUInt16LE(off + 4), flags: buf.readUInt16LE(off + 6), seq: buf.readUInt32LE(off + 8), payload: buf.subarray(off + 16, off + len) });
    off += align4(len);
  }
  return out;
}

// ---- fixed headers ----

/** struct ifinfomsg (16 bytes). */
export function ifinfomsg(o: { family?: number; type?: number; index?: number; flags?: number; change?: number } = {}): Buffer {
  const b = zeroed(16);
  b.writeUInt8(o.family ?? AF_UNSPEC, 0);
  b.writeUInt16LE(o.type ?? 0, 2);
  b.writeInt32LE(o.index ?? 0, 4);
  b.writeUInt32LE((o.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((o.change ?? 0) >>> 0, 12);
  return b;
}

/** struct ifaddrmsg (8 bytes). */
export function ifaddrmsg(o: { family: number; prefixlen: number; flags?: number; scope?: number; index: number }): Buffer {
  const b = zeroed(8);
  b.writeUInt8(o.family, 0);
  b.writeUInt8(o.prefixlen, 1);
  b.writeUInt8(o.flags ?? 0, 2);
  b.writeUInt8(o.scope ?? 0, 3);
  b.writeUInt32LE(o.index, 4);
  return b;
}

/** struct rtmsg (12 bytes). */
export function rtmsg(o: { family: number; dstLen?: number; table?: number; protocol?: number; scope?: number; type?: number; flags?: number }): Buffer {
  const b = zeroed(12);
  b.writeUInt8(o.family, 0);
  b.writeUInt8(o.dstLen ?? 0, 1);
  b.writeUInt8(0, 2); // src_len
  b.writeUInt8(0, 3); // tos
  b.writeUInt8(o.table === undefined ? 0 : Math.min(o.table, 255), 4);
  b.writeUInt8(o.protocol ?? 0, 5);
  b.writeUInt8(o.scope ?? 0, 6);
  b.writeUInt8(o.type ?? 0, 7);
  b.writeUInt32LE(o.flags ?? 0, 8);
  return b;
}

/** struct ndmsg (12 bytes). */
export function ndmsg(o: { family: number; ifindex: number; state?: number; flags?: number; type?: number }): Buffer {
  const b = zeroed(12);
  b.writeUInt8(o.family, 0);
  b.writeInt32LE(o.ifindex, 4);
  b.writeUInt16LE(o.state ?? 0, 8);
  b.writeUInt8(o.flags ?? 0, 10);
  b.writeUInt8(o.type ?? 0, 11);
  return b;
}

/** struct tcmsg (20 bytes). */
export function tcmsg(o: { ifindex: number; handle?: number; parent?: number; info?: number }): Buffer {
  const b = zeroed(20);
  b.writeUInt8(AF_UNSPEC, 0);
  b.writeInt32LE(o.ifindex, 4);
  b.writeUInt32LE((o.handle ?? 0) >>> 0, 8);
  b.writeUInt32LE((o.parent ?? 0) >>> 0, 12);
  b.writeUInt32LE((o.info ?? 0) >>> 0, 16);
  return b;
}

/** struct nfgenmsg (4 bytes). */
export function nfgenmsg(family: number): Buffer {
  const b = zeroed(4);
  b.writeUInt8(family, 0);
  return b;
}

// ---- addresses ----

export function ipv4Bytes(ip: string, field = 'address'): Buffer {
  if (!isIPv4(ip)) throw new TypeError(`${field}: expected an IPv4 address, got '${ip}'`);
  const b = Buffer.allocUnsafe(4);
  let i = 0;
  for (const part of ip.split('.')) b[i++] = Number(part);
  return b;
}

export function ipv4String(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

export function macBytes(mac: string, field = 'mac'): Buffer {
  if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac)) throw new TypeError(`${field}: expected a MAC address like 02:42:ac:11:00:02, got '${mac}'`);
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function macString(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * A gratuitous ARP (RFC 5227 announcement: a request whose sender and target address are both
 * `ip`) from `mac`, as an Ethernet frame to `to` (default broadcast). A neighbour that has an
 * entry for `ip` replaces its MAC with `mac`.
 */
export function gratuitousArp(o: { mac: string; ip: string; to?: string }): Buffer {
  const f = zeroed(42);
  macBytes(o.to ?? 'ff:ff:ff:ff:ff:ff', 'gratuitous ARP destination').copy(f, 0);
  const mac = macBytes(o.mac, 'gratuitous ARP mac');
  mac.copy(f, 6);
  f.writeUInt16BE(0x0806, 12); // ETH_P_ARP
  f.writeUInt16BE(1, 14); // hardware: Ethernet
  f.writeUInt16BE(0x0800, 16); // protocol: IPv4
  f.writeUInt8(6, 18);
  f.writeUInt8(4, 19);
  f.writeUInt16BE(1, 20); // request
  mac.copy(f, 22);
  const ip = ipv4Bytes(o.ip);
  ip.copy(f, 28);
  // Target hardware address stays zero; the target protocol address is the sender's own.
  ip.copy(f, 38);
  return f;
}

/** Parses "10.1.2.3/24" into address and prefix length; names `field` on error. */
export function parseCidr(cidr: string, field = 'cidr'): { ip: string; prefix: number } {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m || !isIPv4(m[1]!) || Number(m[2]) > 32) throw new TypeError(`${field}: expected an IPv4 CIDR like 10.88.0.0/16, got '${cidr}'`);
  return { ip: m[1]!, prefix: Number(m[2]) };
}

export function ipToInt(ip: string): number {
  return ipv4Bytes(ip).readUInt32BE(0);
}

export function intToIp(n: number): string {
  const b = zeroed(4);
  b.writeUInt32BE(n >>> 0);
  return ipv4String(b);
}

// ---- IPv6 (and either family) ----

export function ipv6Bytes(ip: string, field = 'address'): Buffer {
  if (!isIPv6(ip) || ip.includes('%')) throw new TypeError(`${field}: expected an IPv6 address, got '${ip}'`);
  let text = ip;
  const out = zeroed(16);
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two hextets.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipv4Bytes(v4[1]!);
    text = `${text.slice(0, -v4[1]!.length)}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (>= 2) of zero groups as '::'. */
export function ipv6String(b: Buffer): string {
  const g = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Address bytes and family of an IPv4 or IPv6 address. */
export function ipBytes(ip: string, field = 'address'): { family: number; bytes: Buffer } {
  if (isIPv4(ip)) return { family: AF_INET, bytes: ipv4Bytes(ip, field) };
  if (isIPv6(ip)) return { family: AF_INET6, bytes: ipv6Bytes(ip, field) };
  throw new TypeError(`${field}: expected an IPv4 or IPv6 address, got '${ip}'`);
}

export function ipString(b: Buffer): string {
  return b.length === 16 ? ipv6String(b) : ipv4String(b);
}

/** "10.1.2.3/24" or "2001:db8::1/64": address, prefix length, family and bytes. */
export function parseIpCidr(cidr: string, field = 'cidr'): { ip: string; prefix: number; family: number; bytes: Buffer } {
  const i = cidr.lastIndexOf('/');
  const ip = i < 0 ? '' : cidr.slice(0, i);
  const len = i < 0 ? '' : cidr.slice(i + 1);
  const fam = isIPv4(ip) ? AF_INET : isIPv6(ip) ? AF_INET6 : 0;
  if (!fam || !/^\d{1,3}$/.test(len) || Number(len) > (fam === AF_INET ? 32 : 128)) {
    throw new TypeError(`${field}: expected a CIDR like 10.88.0.0/16 or 2001:db8::/64, got '${cidr}'`);
  }
  return { ip, prefix: Number(len), family: fam, bytes: ipBytes(ip, field).bytes };
}
