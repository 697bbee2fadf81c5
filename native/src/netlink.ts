/**
 * rtnetlink and ctnetlink over the addon's raw netlink sockets, plus per-netns sysctls.
 *
 * How we work inside a pod's network namespace: a netlink socket belongs to the namespace it
 * was created in, so `Rtnl.open(netns)` creates it there with a setns-and-back of the calling
 * thread that lasts one call (microseconds), and every later request on it acts on that
 * namespace from libuv's pool threads, which never move. The same holds for sysctl files.
 *
 * `Rtnl` sits on a `NetlinkTransport`: the real one is a socket; `RecordingNetlink` records the
 * encoded requests and answers with scripted replies, for pure-logic tests.
 */
import { readSync } from 'node:fs';

import { SyscallError } from './errors';
import { binding } from './loader';
import {
  AF_BRIDGE, AF_INET, AF_INET6, ipBytes, ipString, parseIpCidr, type Attr, NLM_F, RTM, be16, cstr, encodeAttrs, encodeMessage, ifaddrmsg, ifinfomsg,
  ipv4Bytes, ipv4String, listAttrs, macBytes, macString, ndmsg, nfgenmsg, parseAttrs, parseCidr, parseMessages,
  rtmsg, tcmsg, u32, u64, u8, zeroed, type Message,
} from './netlink-codec';

// The codec's public part: message framing for tests and tools, and address helpers. The
// struct builders and attribute encoders stay internal (generic names like u32 would crowd
// the package's namespace).
export {
  AF_INET, AF_INET6, NLM_F, RTM, cstr, encodeMessage, gratuitousArp, intToIp, ipBytes, ipString, ipToInt, ipv4Bytes, ipv4String,
  macBytes, macString, parseCidr, parseIpCidr, parseMessages, tcmsg, type Attr, type Message,
} from './netlink-codec';

interface NetlinkBinding {
  nlOpen(protocol: number, netnsFd: number): number;
  nlClose(fd: number): void;
  nlTransact(fd: number, req: Buffer, cb: (errno: number, syscall: string, extack: string | null, data: Buffer, failedIndex: number) => void): void;
  nlPlan(steps: Array<{ fd: number; req: Buffer; fixups: Uint32Array }>, cb: (errno: number, syscall: string, extack: string | null, data: Buffer, failedStep: number, failedIndex: number) => void): void;
  fileLock(fd: number, exclusive: boolean, wait: boolean): boolean;
  netnsOpen(path: string): number;
  netnsCloseFd(fd: number): void;
  netnsSysctl(netnsFd: number, path: string, value: string | null): string;
  packetOpen(netnsFd: number): number;
  packetSend(fd: number, ifindex: number, frame: Buffer): void;
  packetClose(fd: number): void;
  sysctlOpen(netnsFd: number, path: string): number;
}
const nl = (): NetlinkBinding => binding() as unknown as NetlinkBinding;

export const NETLINK_ROUTE = 0;
export const NETLINK_NETFILTER = 12;

/** An open network namespace file (checked to be a netns). Close it when done. */
export class Netns {
  private closed = false;
  private constructor(readonly fd: number, readonly path: string) {}

  /** Opens `path`; throws SyscallError ENOTTY/EINVAL (with the path) when it is not a network namespace. */
  static open(path: string): Netns {
    if (typeof path !== 'string' || path === '' || path.includes('\0')) throw new TypeError(`netns path: expected a non-empty path, got ${JSON.stringify(path)}`);
    return new Netns(nl().netnsOpen(path), path);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    nl().netnsCloseFd(this.fd);
  }
}

/**
 * A raw packet socket in one network namespace (opened there, like a netlink socket, by a
 * setns-and-back that lasts the call), for the few frames Berth writes itself. It only sends.
 */
export class PacketSocket {
  private closed = false;
  private constructor(readonly fd: number) {}

  static open(netns: Netns | null = null): PacketSocket {
    return new PacketSocket(nl().packetOpen(netns?.fd ?? -1));
  }

  /** Sends one Ethernet frame (header included) out of interface `ifindex` of the socket's namespace. */
  send(ifindex: number, frame: Buffer): void {
    if (this.closed) throw new Error('packet socket is closed');
    if (!Number.isInteger(ifindex) || ifindex <= 0) throw new RangeError(`packet send: expected an interface index, got ${ifindex}`);
    if (frame.length < 14) throw new RangeError(`packet send: a frame needs at least an Ethernet header (14 bytes), got ${frame.length}`);
    nl().packetSend(this.fd, ifindex, frame);
  }

  /** Returns at once: the kernel's close waits for an RCU grace period, on a thread of its own. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    nl().packetClose(this.fd);
  }
}

/** 'net.ipv4.ip_forward' or 'net/ipv4/ip_forward' -> 'net/ipv4/ip_forward'; only net.* keys, no '..'. */
function sysctlPath(key: string): string {
  if (!/^net[./][A-Za-z0-9_./-]+$/.test(key) || key.includes('..')) throw new TypeError(`sysctl key: expected a net.* key like net.ipv4.ip_forward, got '${key}'`);
  return key.includes('/') ? key : key.replace(/\./g, '/');
}

/** Reads (no value) or writes a sysctl such as 'net/ipv4/ip_forward' or 'net.ipv4.conf.all.rp_filter' in `netns` (null: ours). */
export function sysctl(netns: Netns | null, key: string, value?: string): string {
  const rel = sysctlPath(key);
  if (value !== undefined && (value.includes('\0') || value.length > 256)) throw new TypeError(`sysctl ${key}: bad value`);
  return nl().netnsSysctl(netns?.fd ?? -1, `/proc/sys/${rel}`, value ?? null).trim();
}

/**
 * One sysctl of a namespace kept open for reading on a hot path (one pread per read, where
 * `sysctl()` opens the file in the namespace each time). Throws like `sysctl()` when the
 * namespace has no such key (e.g. nf_conntrack_count before conntrack is loaded).
 */
export class SysctlFile {
  private closed = false;
  private readonly buf = Buffer.allocUnsafe(256);
  private constructor(private readonly fd: number, readonly key: string) {}

  static open(netns: Netns | null, key: string): SysctlFile {
    return new SysctlFile(nl().sysctlOpen(netns?.fd ?? -1, `/proc/sys/${sysctlPath(key)}`), key);
  }

  read(): string {
    if (this.closed) throw new Error(`sysctl ${this.key}: closed`);
    const n = readSync(this.fd, this.buf, 0, this.buf.length, 0);
    return this.buf.toString('utf8', 0, n).trim();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    nl().netnsCloseFd(this.fd);
  }
}

/**
 * flock(2) on an open file: an exclusive (or shared) lock the kernel drops when the holder's
 * descriptor closes or its process dies. With `wait: false` returns false instead of waiting
 * when another holder has it.
 */
export function lockFile(fd: number, o: { exclusive?: boolean; wait?: boolean } = {}): boolean {
  if (!Number.isInteger(fd) || fd < 0) throw new TypeError(`lockFile: expected an open file descriptor, got ${fd}`);
  return nl().fileLock(fd, o.exclusive ?? true, o.wait ?? false);
}

/** One request, as Rtnl builds it. */
export interface NetlinkRequest { type: number; flags: number; header: Buffer; attrs: readonly Attr[]; what: string }

/** What Rtnl needs from a netlink socket. */
export interface NetlinkTransport {
  /** Sends one request and resolves with every reply message (a dump's records, or an echo); rejects with SyscallError. */
  request(type: number, flags: number, header: Buffer, attrs?: readonly Attr[], what?: string): Promise<Message[]>;
  /** Sends several (non-dump) requests in one write and one thread hop; rejects with the first failure. */
  batch(requests: readonly NetlinkRequest[]): Promise<Message[]>;
  close(): void;
}

let seqCounter = (Date.now() & 0xffff) << 8;

/** A real netlink socket in one network namespace. Requests on it are serialised. */
export class NetlinkSocket implements NetlinkTransport {
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private constructor(readonly fd: number) {}

  static open(protocol: number, netns: Netns | null = null): NetlinkSocket {
    return new NetlinkSocket(nl().nlOpen(protocol, netns?.fd ?? -1));
  }

  request(type: number, flags: number, header: Buffer, attrs: readonly Attr[] = [], what = `netlink type ${type}`): Promise<Message[]> {
    return this.batch([{ type, flags, header, attrs, what }]);
  }

  batch(requests: readonly NetlinkRequest[]): Promise<Message[]> {
    if (requests.length === 0) return Promise.resolve([]);
    if (this.closed) return Promise.reject(new Error(`${requests[0]!.what}: netlink socket is closed`));
    const msg = this.encode(requests);
    const run = (): Promise<Message[]> =>
      new Promise((resolve, reject) => {
        nl().nlTransact(this.fd, msg, (errno, syscall, extack, data, failed) => {
          const what = requests[Math.max(0, failed)]?.what ?? 'netlink';
          if (errno !== 0) reject(new SyscallError(errno, syscall, { stage: extack ? `${what}: ${extack}` : what }));
          else resolve(parseMessages(data));
        });
      });
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Let queued requests finish first: closing an fd a pool thread is reading is a bug.
    void this.tail.then(() => nl().nlClose(this.fd));
  }

  /**
   * Runs batches on several sockets in order on one pool thread (one hop for all); later
   * batches get link indexes the first link create of the plan echoed, patched in at
   * `fixups` ([byte offset, slot] pairs: slot 0 the created link, 1 its peer). Every socket
   * involved is held for the whole plan. Resolves with every reply; rejects with the first failure.
   */
  static plan(steps: ReadonlyArray<{ socket: NetlinkSocket; requests: readonly NetlinkRequest[]; fixups: ReadonlyArray<[number, number]> }>): Promise<Message[]> {
    const encoded = steps.map((st) => {
      if (st.socket.closed) throw new Error(`${st.requests[0]?.what ?? 'netlink'}: netlink socket is closed`);
      return { fd: st.socket.fd, req: st.socket.encode(st.requests), fixups: Uint32Array.from(st.fixups.flat()) };
    });
    const sockets = [...new Set(steps.map((st) => st.socket))];
    const run = (): Promise<Message[]> =>
      new Promise((resolve, reject) => {
        nl().nlPlan(encoded, (errno, syscall, extack, data, failedStep, failed) => {
          const what = steps[Math.max(0, failedStep)]?.requests[Math.max(0, failed)]?.what ?? 'netlink';
          if (errno !== 0) reject(new SyscallError(errno, syscall, { stage: extack ? `${what}: ${extack}` : what }));
          else resolve(parseMessages(data));
        });
      });
    const p = Promise.all(sockets.map((so) => so.tail)).then(run, run);
    for (const so of sockets) so.tail = p.catch(() => undefined);
    return p;
  }

  /** Frames requests with consecutive sequence numbers; non-dump requests ask for an ACK. */
  private encode(requests: readonly NetlinkRequest[]): Buffer {
    const first = (seqCounter + 1) >>> 0;
    seqCounter = (seqCounter + requests.length) >>> 0;
    return Buffer.concat(requests.map((r, i) => {
      const dump = (r.flags & NLM_F.DUMP) === NLM_F.DUMP;
      if (dump && requests.length > 1) throw new TypeError(`${r.what}: a dump cannot be batched`);
      return encodeMessage(r.type, dump ? r.flags : r.flags | NLM_F.ACK, (first + i) >>> 0, r.header, r.attrs);
    }));
  }
}

/** Records requests (decoded enough to assert on) and answers with scripted replies; for pure-logic tests. */
export class RecordingNetlink implements NetlinkTransport {
  readonly requests: NetlinkRequest[] = [];
  private readonly replies: Array<Message[] | Error> = [];
  closed = false;

  respond(...replies: Array<Message[] | Error>): this {
    this.replies.push(...replies);
    return this;
  }

  async request(type: number, flags: number, header: Buffer, attrs: readonly Attr[] = [], what = `netlink type ${type}`): Promise<Message[]> {
    this.requests.push({ type, flags, header, attrs, what });
    const r = this.replies.shift();
    if (r instanceof Error) throw r;
    return r ?? [];
  }

  async batch(requests: readonly NetlinkRequest[]): Promise<Message[]> {
    const out: Message[] = [];
    for (const r of requests) out.push(...(await this.request(r.type, r.flags, r.header, r.attrs, r.what)));
    return out;
  }

  close(): void { this.closed = true; }
}

// ---- rtnetlink ----

const IFLA = { ADDRESS: 1, IFNAME: 3, MTU: 4, LINK: 5, MASTER: 10, PROTINFO: 12, OPERSTATE: 16, LINKINFO: 18, AF_SPEC: 26, NET_NS_FD: 28, LINK_NETNSID: 37 } as const;
const IFLA_INET_CONF = 1;
const IFLA_INET6_ADDR_GEN_MODE = 8;
/** Indexes of the per-interface IPv4 settings (linux/ip.h). */
export const IPV4_DEVCONF = { forwarding: 1, proxy_arp: 3, rp_filter: 8, arp_ignore: 19, arp_accept: 21, arp_notify: 22, route_localnet: 26 } as const;
const RTM_SETNEIGHTBL = 67;
const NDTA_NAME = 1;
const NDTA_PARMS = 6;
const NDTPA_IFINDEX = 1;
const NDTPA_PROXY_DELAY = 13;
const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
const VETH_INFO_PEER = 1;
const IFLA_VXLAN = { ID: 1, LINK: 3, LOCAL: 4, PORT: 15 } as const;
const IFLA_BRPORT_MODE = 4;
const IFF_UP = 0x1;
const IFA = { ADDRESS: 1, LOCAL: 2, BROADCAST: 4 } as const;
const RTA = { DST: 1, OIF: 4, GATEWAY: 5, PRIORITY: 6, PREFSRC: 7, TABLE: 15 } as const;
const NDA = { DST: 1, LLADDR: 2 } as const;
const TCA = { KIND: 1, OPTIONS: 2 } as const;

export const RT_SCOPE = { universe: 0, link: 253, host: 254, nowhere: 255 } as const;
export const RT_TABLE_MAIN = 254;
export const RTPROT_BOOT = 3;
export const RTPROT_STATIC = 4;
/** rtm_protocol of routes Berth makes, so they can be told apart (and garbage-collected). */
export const RTPROT_BERTH = 0xbe;
const RTN_UNICAST = 1;
const RTNH_F_ONLINK = 4;
export const NUD_PERMANENT = 0x80;
export const NTF_PROXY = 0x08;
export const TC_H_ROOT = 0xffffffff;
export const TC_H_INGRESS = 0xfffffff1;
const INGRESS_HANDLE = 0xffff0000;

export const LINK_NAME_MAX = 15;

export function checkIfName(name: string, field = 'interface name'): string {
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > LINK_NAME_MAX || /[\s/:\0]/.test(name) || name === '.' || name === '..') {
    throw new RangeError(`${field}: '${name}' is not a valid interface name (1-${LINK_NAME_MAX} bytes, no whitespace, '/' or ':')`);
  }
  return name;
}

export interface Link {
  index: number;
  name: string;
  flags: number;
  up: boolean;
  mtu: number;
  mac: string;
  /** Index of the bridge it is a port of; 0 if none. */
  master: number;
  /** 'veth', 'bridge', 'vxlan', ...; '' for a plain device. */
  kind: string;
  /** Peer/lower link index (veth peer), 0 if none. */
  link: number;
}

export interface Address { index: number; ip: string; prefix: number; scope: number }

export interface Route {
  /** 'default' or a CIDR. */
  dst: string;
  gw?: string;
  oif?: number;
  table: number;
  protocol: number;
  scope: number;
  onlink: boolean;
  prefsrc?: string;
  metric?: number;
}

export interface Neighbour { ifindex: number; ip: string; mac?: string; state: number; proxy: boolean }

export interface Qdisc { ifindex: number; kind: string; handle: number; parent: number }

export interface RouteSpec {
  /** 'default' or a CIDR ('10.1.0.0/24', '10.1.0.5/32', '2001:db8::/64', '::/0'). */
  dst: string;
  /** Family of a 'default' route without gateway (default 4; a gateway decides otherwise). */
  family?: 4 | 6;
  gw?: string;
  /** Output interface index. */
  oif?: number;
  /** Default: 'link' when there is no gateway, 'universe' otherwise. */
  scope?: keyof typeof RT_SCOPE;
  onlink?: boolean;
  table?: number;
  protocol?: number;
  prefsrc?: string;
  metric?: number;
}

function parseLink(m: Message): Link {
  const p = m.payload;
  const a = parseAttrs(p, 16);
  const info = a.get(IFLA.LINKINFO);
  const kind = info ? parseAttrs(info).get(IFLA_INFO.KIND) : undefined;
  const flags = p.readUInt32LE(8);
  return {
    index: p.readInt32LE(4),
    name: a.get(IFLA.IFNAME)?.toString('utf8').replace(/\0.*$/s, '') ?? '',
    flags,
    up: (flags & IFF_UP) !== 0,
    mtu: a.get(IFLA.MTU)?.readUInt32LE(0) ?? 0,
    mac: a.get(IFLA.ADDRESS) ? macString(a.get(IFLA.ADDRESS)!) : '',
    master: a.get(IFLA.MASTER)?.readUInt32LE(0) ?? 0,
    kind: kind ? kind.toString('utf8').replace(/\0.*$/s, '') : '',
    link: a.get(IFLA.LINK)?.readUInt32LE(0) ?? 0,
  };
}

function dstOf(spec: { dst: string; gw?: string; family?: 4 | 6 }, field: string): { ip: Buffer | null; len: number; family: number } {
  if (spec.dst === 'default' || spec.dst === '0.0.0.0/0' || spec.dst === '::/0') {
    const v6 = spec.dst === '::/0' || spec.family === 6 || (spec.gw !== undefined && spec.gw.includes(':'));
    return { ip: null, len: 0, family: v6 ? AF_INET6 : AF_INET };
  }
  const { prefix, family, bytes } = parseIpCidr(spec.dst, field);
  return { ip: bytes, len: prefix, family };
}

function isNoEnt(err: unknown): boolean {
  return err instanceof SyscallError && (err.code === 'ENODEV' || err.code === 'ENOENT' || err.code === 'ESRCH' || err.code === 'EADDRNOTAVAIL');
}

export interface VethOptions { name: string; peer: string; peerNetns?: Netns; mtu?: number; mac?: string; peerMac?: string; master?: number; up?: boolean }

/** Link indexes a plan's later steps use before the link exists: see Rtnl.addVethThen. */
export interface PlannedLinks { created: number; peer: number }

// Two sets of stand-in indexes: a step is recorded with each and the encodings compared, so
// the byte offsets to patch are found from what the codec actually wrote, whatever the message.
const PLACEHOLDER_A: PlannedLinks = { created: 0x7e5e0001, peer: 0x7e5e0002 };
const PLACEHOLDER_B: PlannedLinks = { created: 0x7e5e0101, peer: 0x7e5e0102 };

async function recordBatch(build: (b: Rtnl, links: PlannedLinks) => Promise<void> | void, links: PlannedLinks): Promise<NetlinkRequest[]> {
  const rec = new RecordingNetlink();
  await build(new Rtnl(rec), links);
  return rec.requests;
}

/** [offset, slot] of every placeholder index in the batch encoding of `a` (recorded with A) against `b` (with B). */
function placeholderOffsets(a: readonly NetlinkRequest[], b: readonly NetlinkRequest[]): Array<[number, number]> {
  const enc = (rs: readonly NetlinkRequest[]): Buffer => Buffer.concat(rs.map((r) => encodeMessage(r.type, r.flags, 0, r.header, r.attrs)));
  const x = enc(a);
  const y = enc(b);
  if (x.length !== y.length || a.length !== b.length) throw new TypeError('plan: a step must make the same requests whatever the link indexes');
  const out: Array<[number, number]> = [];
  for (let i = 0; i < x.length; i++) {
    if (x[i] === y[i]) continue;
    const off = i & ~3;
    const [va, vb] = [x.readUInt32LE(off), y.readUInt32LE(off)];
    const slot = va === PLACEHOLDER_A.created && vb === PLACEHOLDER_B.created ? 0 : va === PLACEHOLDER_A.peer && vb === PLACEHOLDER_B.peer ? 1 : -1;
    if (slot < 0) throw new TypeError(`plan: a planned link index is used at byte ${i} other than as a 32-bit index`);
    out.push([off, slot]);
    i = off + 3;
  }
  return out;
}

function vethRequest(o: VethOptions): NetlinkRequest {
  checkIfName(o.name, 'veth name');
  checkIfName(o.peer, 'veth peer name');
  const peerAttrs: Attr[] = [[IFLA.IFNAME, cstr(o.peer)]];
  if (o.mtu) peerAttrs.push([IFLA.MTU, u32(o.mtu)]);
  if (o.peerMac) peerAttrs.push([IFLA.ADDRESS, macBytes(o.peerMac, 'veth peer mac')]);
  if (o.peerNetns) peerAttrs.push([IFLA.NET_NS_FD, u32(o.peerNetns.fd)]);
  // No IFF_UP for the peer here: the kernel opens the peer before the pair is linked, and
  // veth_open then fails with ENOTCONN. Bring it up afterwards, in its namespace.
  const peer = Buffer.concat([ifinfomsg({}), encodeAttrs(peerAttrs)]);
  return newLinkRequest(o.name, 'veth', [[VETH_INFO_PEER, peer]], o.mtu, o.mac, { master: o.master, up: o.up });
}

/** RTM_NEWLINK creating `name`, echoed back (one round trip tells its index). */
function newLinkRequest(name: string, kind: string, data: Attr[] | null, mtu?: number, mac?: string, o: { master?: number | undefined; up?: boolean | undefined } = {}): NetlinkRequest {
  const info: Attr[] = [[IFLA_INFO.KIND, cstr(kind)]];
  if (data) info.push([IFLA_INFO.DATA, data]);
  const attrs: Attr[] = [[IFLA.IFNAME, cstr(name)], [IFLA.LINKINFO, info]];
  if (mtu) attrs.push([IFLA.MTU, u32(mtu)]);
  if (mac) attrs.push([IFLA.ADDRESS, macBytes(mac)]);
  // Enslaving and bringing up in the create itself saves a round trip each.
  if (o.master) attrs.push([IFLA.MASTER, u32(o.master)]);
  const header = ifinfomsg(o.up ? { flags: IFF_UP, change: IFF_UP } : {});
  return { type: RTM.NEWLINK, flags: NLM_F.CREATE | NLM_F.EXCL | NLM_F.ECHO, header, attrs, what: `create ${kind} ${name}` };
}

/** rtnetlink operations in one network namespace. */
export class Rtnl {
  constructor(readonly transport: NetlinkTransport) {}

  /** A real socket in `netns` (null: this process's netns). */
  static open(netns: Netns | null = null): Rtnl {
    return new Rtnl(NetlinkSocket.open(NETLINK_ROUTE, netns));
  }

  close(): void { this.transport.close(); }

  /**
   * Runs the changes `fn` makes on the Rtnl it is given as one batch: one write, one thread hop,
   * the kernel applying them in order. Only for changes whose replies are not needed.
   */
  async batch(fn: (b: Rtnl) => Promise<void> | void): Promise<void> {
    const rec = new RecordingNetlink();
    await fn(new Rtnl(rec));
    await this.transport.batch(rec.requests);
  }

  // -- links --

  async links(): Promise<Link[]> {
    const msgs = await this.transport.request(RTM.GETLINK, NLM_F.DUMP, ifinfomsg(), [], 'list links');
    return msgs.filter((m) => m.type === RTM.NEWLINK).map(parseLink);
  }

  /** The link named `name` (or with index `name`), or null. */
  async link(name: string | number): Promise<Link | null> {
    const byIndex = typeof name === 'number';
    if (!byIndex) checkIfName(name);
    try {
      const msgs = await this.transport.request(RTM.GETLINK, 0, ifinfomsg({ index: byIndex ? name : 0 }), byIndex ? [] : [[IFLA.IFNAME, cstr(name)]], `get link ${name}`);
      const m = msgs.find((x) => x.type === RTM.NEWLINK);
      return m ? parseLink(m) : null;
    } catch (err) {
      if (isNoEnt(err)) return null;
      throw err;
    }
  }

  private async mustLink(name: string): Promise<Link> {
    const l = await this.link(name);
    if (!l) throw new SyscallError(19 /* ENODEV */, 'netlink', { stage: `link ${name} was created but cannot be found` });
    return l;
  }

  /** A veth pair: `name` here, `peer` here or, with `peerNetns`, created directly in that namespace. Returns the local end. */
  async addVeth(o: VethOptions): Promise<Link> {
    const r = vethRequest(o);
    const echoed = await this.transport.request(r.type, r.flags, r.header, r.attrs, r.what);
    return echoed.some((m) => m.type === RTM.NEWLINK) ? this.echoedLink(echoed, o.name) : this.mustLink(o.name);
  }

  /**
   * Creates a veth pair (as addVeth) and then runs each step's changes as one batch on that
   * step's Rtnl (the pod's namespace, the node's...), all in one native call: one thread hop
   * for the whole sequence. Steps may use the index of the created end (`links.created`) and
   * of its peer (`links.peer`, in the peer's namespace) before they are known: the addon patches
   * them in from the create's echo.
   */
  async addVethThen(o: VethOptions, steps: ReadonlyArray<{ rtnl: Rtnl; build: (b: Rtnl, links: PlannedLinks) => Promise<void> | void }>): Promise<Link> {
    const create = vethRequest(o);
    const recorded: Array<{ rtnl: Rtnl; requests: NetlinkRequest[]; fixups: Array<[number, number]> }> = [];
    for (const st of steps) {
      const a = await recordBatch(st.build, PLACEHOLDER_A);
      const b = await recordBatch(st.build, PLACEHOLDER_B);
      recorded.push({ rtnl: st.rtnl, requests: a, fixups: placeholderOffsets(a, b) });
    }
    const transports = [this.transport, ...steps.map((st) => st.rtnl.transport)];
    if (transports.every((t) => t instanceof NetlinkSocket)) {
      const replies = await NetlinkSocket.plan([
        { socket: this.transport as NetlinkSocket, requests: [create], fixups: [] },
        ...recorded.map((r) => ({ socket: r.rtnl.transport as NetlinkSocket, requests: r.requests, fixups: r.fixups })),
      ]);
      return this.echoedLink(replies, o.name);
    }
    // Recording transports (pure-logic tests): the same requests step by step, indexes filled in.
    const link = this.echoedLink(await this.transport.batch([create]), o.name);
    for (const st of steps) await st.rtnl.batch((b) => st.build(b, { created: link.index, peer: link.link }));
    return link;
  }

  private echoedLink(replies: Message[], name: string): Link {
    const mine = replies.filter((m) => m.type === RTM.NEWLINK).map(parseLink).find((l) => l.name === name);
    if (!mine) throw new SyscallError(19 /* ENODEV */, 'netlink', { stage: `link ${name} was created but the kernel did not echo it` });
    return mine;
  }

  async addBridge(name: string, o: { mtu?: number; mac?: string } = {}): Promise<Link> {
    return this.newLink(checkIfName(name, 'bridge name'), 'bridge', null, o.mtu, o.mac);
  }

  /** A dummy device (needs the kernel's dummy driver; EOPNOTSUPP where it is missing). */
  async addDummy(name: string): Promise<Link> {
    return this.newLink(checkIfName(name, 'dummy name'), 'dummy', null);
  }

  /** An ifb device (the target of an ingress redirect, for ingress shaping). */
  async addIfb(name: string): Promise<Link> {
    return this.newLink(checkIfName(name, 'ifb name'), 'ifb', null);
  }

  async addVxlan(name: string, o: { vni: number; local?: string; port?: number; dev?: number; mtu?: number }): Promise<Link> {
    checkIfName(name, 'vxlan name');
    if (!Number.isInteger(o.vni) || o.vni < 0 || o.vni > 0xffffff) throw new RangeError(`vxlan vni: expected 0..16777215, got ${o.vni}`);
    const data: Attr[] = [[IFLA_VXLAN.ID, u32(o.vni)], [IFLA_VXLAN.PORT, be16(o.port ?? 4789)]];
    if (o.local) data.push([IFLA_VXLAN.LOCAL, ipv4Bytes(o.local, 'vxlan local')]);
    if (o.dev) data.push([IFLA_VXLAN.LINK, u32(o.dev)]);
    return this.newLink(name, 'vxlan', data, o.mtu);
  }

  /** Creates a link and returns it: from the kernel's echo (one round trip), or by asking after. */
  private async newLink(name: string, kind: string, data: Attr[] | null, mtu?: number, mac?: string): Promise<Link> {
    const r = newLinkRequest(name, kind, data, mtu, mac);
    const echoed = await this.transport.request(r.type, r.flags, r.header, r.attrs, r.what);
    const mine = echoed.filter((m) => m.type === RTM.NEWLINK).map(parseLink).find((l) => l.name === name);
    return mine ?? this.mustLink(name);
  }

  /**
   * Changes a link: up/down, mtu, mac, master (0 = none), rename, or move it to another network
   * namespace by fd.
   */
  async setLink(index: number, o: { up?: boolean; mtu?: number; mac?: string; master?: number; name?: string; netns?: Netns }): Promise<void> {
    const attrs: Attr[] = [];
    if (o.mtu !== undefined) attrs.push([IFLA.MTU, u32(o.mtu)]);
    if (o.mac !== undefined) attrs.push([IFLA.ADDRESS, macBytes(o.mac)]);
    if (o.master !== undefined) attrs.push([IFLA.MASTER, u32(o.master)]);
    if (o.name !== undefined) attrs.push([IFLA.IFNAME, cstr(checkIfName(o.name, 'new interface name'))]);
    if (o.netns !== undefined) attrs.push([IFLA.NET_NS_FD, u32(o.netns.fd)]);
    const hdr = ifinfomsg({ index, flags: o.up ? IFF_UP : 0, change: o.up === undefined ? 0 : IFF_UP });
    await this.transport.request(RTM.SETLINK, 0, hdr, attrs, `set link ${index}`);
  }

  /** Hairpin mode on a bridge port (frames may leave by the port they came in). */
  async setHairpin(index: number, on: boolean): Promise<void> {
    await this.transport.request(RTM.SETLINK, 0, ifinfomsg({ family: AF_BRIDGE, index }), [[IFLA.PROTINFO, [[IFLA_BRPORT_MODE, u8(on ? 1 : 0)]]]], `hairpin ${index}`);
  }

  /**
   * Per-interface IPv4 settings (the /proc/sys/net/ipv4/conf/<if>/ ones) over netlink, so a
   * pod setup needs no file open in another namespace: proxy_arp, forwarding, arp_notify, ...
   */
  async setInetConf(index: number, conf: Partial<Record<keyof typeof IPV4_DEVCONF, number>>): Promise<void> {
    const entries = Object.entries(conf).map(([k, v]): Attr => {
      const id = IPV4_DEVCONF[k as keyof typeof IPV4_DEVCONF];
      if (id === undefined) throw new TypeError(`inet conf: unknown setting '${k}'`);
      if (!Number.isInteger(v) || v! < 0) throw new RangeError(`inet conf ${k}: expected a non-negative integer, got ${v}`);
      return [id, u32(v!)];
    });
    await this.transport.request(RTM.SETLINK, 0, ifinfomsg({ index }), [[IFLA.AF_SPEC, [[AF_INET, [[IFLA_INET_CONF, entries]]]]]], `inet conf of ${index}`);
  }

  /** How the kernel makes IPv6 link-local addresses on `index` ('none': no automatic ones). */
  async setAddrGenMode(index: number, mode: 'eui64' | 'none' | 'stable-privacy' | 'random'): Promise<void> {
    const m = { eui64: 0, none: 1, 'stable-privacy': 2, random: 3 }[mode];
    await this.transport.request(RTM.SETLINK, 0, ifinfomsg({ index }), [[IFLA.AF_SPEC, [[AF_INET6, [[IFLA_INET6_ADDR_GEN_MODE, u8(m)]]]]]], `addr gen mode of ${index}`);
  }

  /** The proxy ARP (4) / proxy NDP (6) answer delay of one interface, in ms (the kernel's default is up to 800). */
  async setProxyDelay(index: number, ms: number, family: 4 | 6 = 4): Promise<void> {
    if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`proxy delay: expected a non-negative number of ms, got ${ms}`);
    const hdr = zeroed(4);
    hdr.writeUInt8(family === 6 ? AF_INET6 : AF_INET, 0);
    await this.transport.request(RTM_SETNEIGHTBL, 0, hdr, [[NDTA_NAME, cstr(family === 6 ? 'ndisc_cache' : 'arp_cache')], [NDTA_PARMS, [[NDTPA_IFINDEX, u32(index)], [NDTPA_PROXY_DELAY, u64(ms)]]]], `proxy delay of ${index}`);
  }

  /** Deletes a link; false if it did not exist. Deleting one end of a veth deletes both. */
  async deleteLink(name: string | number): Promise<boolean> {
    const byIndex = typeof name === 'number';
    try {
      await this.transport.request(RTM.DELLINK, 0, ifinfomsg({ index: byIndex ? name : 0 }), byIndex ? [] : [[IFLA.IFNAME, cstr(checkIfName(name))]], `delete link ${name}`);
      return true;
    } catch (err) {
      if (isNoEnt(err)) return false;
      throw err;
    }
  }

  // -- addresses --

  /** Adds an IPv4 or IPv6 address; IPv6 ones skip duplicate address detection with `nodad`. */
  async addAddress(index: number, cidr: string, o: { replace?: boolean; nodad?: boolean } = {}): Promise<void> {
    const { ip, prefix, family, bytes } = parseIpCidr(cidr, 'address');
    const attrs: Attr[] = family === AF_INET ? [[IFA.LOCAL, bytes], [IFA.ADDRESS, bytes]] : [[IFA.ADDRESS, bytes]];
    if (family === AF_INET && prefix < 31) {
      const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
      const bcast = zeroed(4);
      bcast.writeUInt32BE(((ipv4Bytes(ip).readUInt32BE(0) & mask) | (~mask >>> 0)) >>> 0);
      attrs.push([IFA.BROADCAST, bcast]);
    }
    const flags = NLM_F.CREATE | (o.replace ? NLM_F.REPLACE : NLM_F.EXCL);
    const ifaFlags = o.nodad && family === AF_INET6 ? 0x02 /* IFA_F_NODAD */ : 0;
    await this.transport.request(RTM.NEWADDR, flags, ifaddrmsg({ family, prefixlen: prefix, index, flags: ifaFlags }), attrs, `add address ${cidr} to ${index}`);
  }

  async deleteAddress(index: number, cidr: string): Promise<boolean> {
    const { prefix, family, bytes } = parseIpCidr(cidr, 'address');
    try {
      await this.transport.request(RTM.DELADDR, 0, ifaddrmsg({ family, prefixlen: prefix, index }), [[family === AF_INET ? IFA.LOCAL : IFA.ADDRESS, bytes]], `delete address ${cidr}`);
      return true;
    } catch (err) {
      if (isNoEnt(err)) return false;
      throw err;
    }
  }

  /** Addresses of one family (4 by default), optionally of one interface. */
  async addresses(index?: number, family: 4 | 6 = 4): Promise<Address[]> {
    const af = family === 6 ? AF_INET6 : AF_INET;
    const msgs = await this.transport.request(RTM.GETADDR, NLM_F.DUMP, ifaddrmsg({ family: af, prefixlen: 0, index: 0 }), [], 'list addresses');
    const out: Address[] = [];
    for (const m of msgs) {
      if (m.type !== RTM.NEWADDR || m.payload[0] !== af) continue;
      const a = parseAttrs(m.payload, 8);
      const local = a.get(IFA.LOCAL) ?? a.get(IFA.ADDRESS);
      const idx = m.payload.readUInt32LE(4);
      if (!local || (index !== undefined && idx !== index)) continue;
      out.push({ index: idx, ip: ipString(local), prefix: m.payload[1]!, scope: m.payload[3]! });
    }
    return out;
  }

  // -- routes --

  private routeMessage(r: RouteSpec, forDelete: boolean): { hdr: Buffer; attrs: Attr[] } {
    const { ip, len, family } = dstOf(r, 'route dst');
    const table = r.table ?? RT_TABLE_MAIN;
    const scope = r.scope ? RT_SCOPE[r.scope] : r.gw ? RT_SCOPE.universe : RT_SCOPE.link;
    const hdr = rtmsg({
      family, dstLen: len, table: table > 255 ? 0 : table, protocol: forDelete ? 0 : r.protocol ?? RTPROT_BERTH,
      scope: forDelete ? RT_SCOPE.nowhere : scope, type: forDelete ? 0 : RTN_UNICAST, flags: r.onlink ? RTNH_F_ONLINK : 0,
    });
    const attrs: Attr[] = [];
    if (ip) attrs.push([RTA.DST, ip]);
    if (r.gw) {
      const gw = ipBytes(r.gw, 'route gw');
      if (gw.family !== family) throw new TypeError(`route gw: ${r.gw} is not of the family of ${r.dst}`);
      attrs.push([RTA.GATEWAY, gw.bytes]);
    }
    if (r.oif) attrs.push([RTA.OIF, u32(r.oif)]);
    if (r.prefsrc) attrs.push([RTA.PREFSRC, ipBytes(r.prefsrc, 'route prefsrc').bytes]);
    if (r.metric !== undefined) attrs.push([RTA.PRIORITY, u32(r.metric)]);
    if (table > 255) attrs.push([RTA.TABLE, u32(table)]);
    return { hdr, attrs };
  }

  async addRoute(r: RouteSpec, o: { replace?: boolean } = {}): Promise<void> {
    const { hdr, attrs } = this.routeMessage(r, false);
    await this.transport.request(RTM.NEWROUTE, NLM_F.CREATE | (o.replace ? NLM_F.REPLACE : NLM_F.EXCL), hdr, attrs, `add route ${r.dst}${r.gw ? ` via ${r.gw}` : ''}`);
  }

  async deleteRoute(r: RouteSpec): Promise<boolean> {
    const { hdr, attrs } = this.routeMessage(r, true);
    try {
      await this.transport.request(RTM.DELROUTE, 0, hdr, attrs, `delete route ${r.dst}`);
      return true;
    } catch (err) {
      if (isNoEnt(err)) return false;
      throw err;
    }
  }

  /** Routes of one family (4 by default) in `table` (default main; 0 = every table). */
  async routes(table = RT_TABLE_MAIN, family: 4 | 6 = 4): Promise<Route[]> {
    const af = family === 6 ? AF_INET6 : AF_INET;
    const msgs = await this.transport.request(RTM.GETROUTE, NLM_F.DUMP, rtmsg({ family: af }), [], 'list routes');
    const out: Route[] = [];
    for (const m of msgs) {
      if (m.type !== RTM.NEWROUTE || m.payload[0] !== af) continue;
      const p = m.payload;
      const a = parseAttrs(p, 12);
      const t = a.get(RTA.TABLE)?.readUInt32LE(0) ?? p[4]!;
      if (table !== 0 && t !== table) continue;
      const dst = a.get(RTA.DST);
      const route: Route = {
        dst: p[1] === 0 ? 'default' : `${dst ? ipString(dst) : af === AF_INET ? '0.0.0.0' : '::'}/${p[1]}`,
        table: t, protocol: p[5]!, scope: p[6]!, onlink: (p.readUInt32LE(8) & RTNH_F_ONLINK) !== 0,
      };
      const gw = a.get(RTA.GATEWAY);
      if (gw) route.gw = ipString(gw);
      const oif = a.get(RTA.OIF);
      if (oif) route.oif = oif.readUInt32LE(0);
      const src = a.get(RTA.PREFSRC);
      if (src) route.prefsrc = ipString(src);
      const prio = a.get(RTA.PRIORITY);
      if (prio) route.metric = prio.readUInt32LE(0);
      out.push(route);
    }
    return out;
  }

  // -- neighbours --

  /** A permanent ARP/NDP entry, or (proxy: true) a proxy-ARP / proxy-NDP entry for `ip` on `ifindex`. */
  async addNeighbour(n: { ifindex: number; ip: string; mac?: string; proxy?: boolean }): Promise<void> {
    const dst = ipBytes(n.ip, 'neighbour ip');
    const attrs: Attr[] = [[NDA.DST, dst.bytes]];
    if (n.mac) attrs.push([NDA.LLADDR, macBytes(n.mac, 'neighbour mac')]);
    else if (!n.proxy) throw new TypeError('neighbour mac: required for a non-proxy entry');
    const hdr = ndmsg({ family: dst.family, ifindex: n.ifindex, state: NUD_PERMANENT, flags: n.proxy ? NTF_PROXY : 0 });
    await this.transport.request(RTM.NEWNEIGH, NLM_F.CREATE | NLM_F.REPLACE, hdr, attrs, `add neighbour ${n.ip}`);
  }

  async deleteNeighbour(n: { ifindex: number; ip: string; proxy?: boolean }): Promise<boolean> {
    try {
      const dst = ipBytes(n.ip, 'neighbour ip');
      await this.transport.request(RTM.DELNEIGH, 0, ndmsg({ family: dst.family, ifindex: n.ifindex, flags: n.proxy ? NTF_PROXY : 0 }), [[NDA.DST, dst.bytes]], `delete neighbour ${n.ip}`);
      return true;
    } catch (err) {
      if (isNoEnt(err)) return false;
      throw err;
    }
  }

  /** Neighbours of one family (4 by default); `proxy` lists the proxy entries instead. */
  async neighbours(o: { proxy?: boolean; family?: 4 | 6 } = {}): Promise<Neighbour[]> {
    const af = o.family === 6 ? AF_INET6 : AF_INET;
    const msgs = await this.transport.request(RTM.GETNEIGH, NLM_F.DUMP, ndmsg({ family: af, ifindex: 0, flags: o.proxy ? NTF_PROXY : 0 }), [], 'list neighbours');
    const out: Neighbour[] = [];
    for (const m of msgs) {
      if (m.type !== RTM.NEWNEIGH || m.payload[0] !== af) continue;
      const a = parseAttrs(m.payload, 12);
      const dst = a.get(NDA.DST);
      if (!dst) continue;
      const proxy = (m.payload[10]! & NTF_PROXY) !== 0;
      if (proxy !== (o.proxy ?? false)) continue;
      const ll = a.get(NDA.LLADDR);
      out.push({ ifindex: m.payload.readInt32LE(4), ip: ipString(dst), state: m.payload.readUInt16LE(8), proxy, ...(ll ? { mac: macString(ll) } : {}) });
    }
    return out;
  }

  // -- traffic control --

  /**
   * A tbf root qdisc: `rate` bits/s, `burst` bytes, `latency` ms of queue. Replaces what is there.
   * The rate is given as a linklayer-aware ratespec plus the 64-bit rate and burst attributes,
   * so no rate table is needed.
   */
  async setTbf(ifindex: number, o: { rate: number; burst: number; latencyMs?: number; parent?: number }): Promise<void> {
    if (!(o.rate > 0) || !Number.isFinite(o.rate)) throw new RangeError(`tbf rate: expected a positive bits/s value, got ${o.rate}`);
    if (!(o.burst > 0) || o.burst > 0xffffffff) throw new RangeError(`tbf burst: expected 1..4294967295 bytes, got ${o.burst}`);
    const bytesPerSec = Math.floor(o.rate / 8);
    const limit = Math.min(0xffffffff, Math.floor((bytesPerSec * (o.latencyMs ?? 50)) / 1000) + o.burst);
    const qopt = zeroed(36);
    // rate: cell_log 0, linklayer 1 (ethernet), overhead 0, cell_align -1, mpu 0, rate u32
    qopt.writeUInt8(1, 1);
    qopt.writeInt16LE(-1, 4);
    qopt.writeUInt32LE(Math.min(bytesPerSec, 0xffffffff), 8);
    qopt.writeUInt8(1, 13); // peakrate linklayer
    qopt.writeUInt32LE(limit, 24);
    qopt.writeUInt32LE(1, 28); // buffer (ticks): replaced by TCA_TBF_BURST
    const opts: Attr[] = [[1 /* PARMS */, qopt], [6 /* BURST */, u32(o.burst)]];
    if (bytesPerSec > 0xffffffff) opts.push([4 /* RATE64 */, u64(bytesPerSec)]);
    await this.transport.request(
      RTM.NEWQDISC, NLM_F.CREATE | NLM_F.REPLACE,
      tcmsg({ ifindex, handle: 0x00010000, parent: o.parent ?? TC_H_ROOT }),
      [[TCA.KIND, cstr('tbf')], [TCA.OPTIONS, opts]], `tbf on ${ifindex}`,
    );
  }

  /** Adds the ingress qdisc (ffff:) on `ifindex`. */
  async addIngressQdisc(ifindex: number): Promise<void> {
    await this.transport.request(RTM.NEWQDISC, NLM_F.CREATE | NLM_F.EXCL, tcmsg({ ifindex, handle: INGRESS_HANDLE, parent: TC_H_INGRESS }), [[TCA.KIND, cstr('ingress')]], `ingress qdisc on ${ifindex}`);
  }

  /** Removes the root (or ingress) qdisc; false if there was none of ours. */
  async deleteQdisc(ifindex: number, which: 'root' | 'ingress' = 'root'): Promise<boolean> {
    const hdr = which === 'root' ? tcmsg({ ifindex, parent: TC_H_ROOT }) : tcmsg({ ifindex, handle: INGRESS_HANDLE, parent: TC_H_INGRESS });
    try {
      await this.transport.request(RTM.DELQDISC, 0, hdr, [], `delete ${which} qdisc on ${ifindex}`);
      return true;
    } catch (err) {
      if (isNoEnt(err) || (err instanceof SyscallError && err.code === 'EINVAL')) return false;
      throw err;
    }
  }

  async qdiscs(ifindex?: number): Promise<Qdisc[]> {
    const msgs = await this.transport.request(RTM.GETQDISC, NLM_F.DUMP, tcmsg({ ifindex: 0 }), [], 'list qdiscs');
    return msgs
      .filter((m) => m.type === RTM.NEWQDISC)
      .map((m) => ({
        ifindex: m.payload.readInt32LE(4), handle: m.payload.readUInt32LE(8), parent: m.payload.readUInt32LE(12),
        kind: parseAttrs(m.payload, 20).get(TCA.KIND)?.toString('utf8').replace(/\0.*$/s, '') ?? '',
      }))
      .filter((q) => ifindex === undefined || q.ifindex === ifindex);
  }

  /**
   * Redirects everything arriving on `ifindex` to the egress of `toIfindex` (an ifb): a u32
   * match-all filter with a mirred action on the ingress qdisc. This kernel has u32 but not
   * matchall.
   */
  async addIngressRedirect(ifindex: number, toIfindex: number): Promise<void> {
    const sel = zeroed(16 + 16);
    sel.writeUInt8(1, 0); // TC_U32_TERMINAL
    sel.writeUInt8(1, 2); // nkeys: one key, mask 0 value 0 (matches all)
    const mirred = zeroed(28);
    mirred.writeInt32LE(4, 8); // tc_gen.action = TC_ACT_STOLEN
    mirred.writeInt32LE(1, 20); // eaction = TCA_EGRESS_REDIR
    mirred.writeUInt32LE(toIfindex, 24);
    const act: Attr[] = [[1, [[1 /* TCA_ACT_KIND */, cstr('mirred')], [2 /* TCA_ACT_OPTIONS */, [[2 /* TCA_MIRRED_PARMS */, mirred]]]]]];
    const info = ((1 << 16) | 0x0300) >>> 0; // prio 1, protocol htons(ETH_P_ALL)
    await this.transport.request(
      RTM.NEWTFILTER, NLM_F.CREATE | NLM_F.EXCL, tcmsg({ ifindex, parent: INGRESS_HANDLE, info }),
      [[TCA.KIND, cstr('u32')], [TCA.OPTIONS, [[5 /* TCA_U32_SEL */, sel], [7 /* TCA_U32_ACT */, act]]]], `ingress redirect ${ifindex} -> ${toIfindex}`,
    );
  }
}

// ---- ctnetlink ----

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_PROTO_NUM = 1;
export const IPPROTO = { tcp: 6, udp: 17, sctp: 132, icmp: 1 } as const;

export interface ConntrackEntry { proto: number; origSrc: string; origDst: string; replySrc: string; replyDst: string }

/** Connection-tracking entries of one network namespace, over ctnetlink. */
export class Conntrack {
  constructor(readonly transport: NetlinkTransport) {}

  static open(netns: Netns | null = null): Conntrack {
    return new Conntrack(NetlinkSocket.open(NETLINK_NETFILTER, netns));
  }

  close(): void { this.transport.close(); }

  /** Entries of one family (the kernel dumps per family). */
  private async dump(family: 4 | 6 = 4): Promise<Array<{ entry: ConntrackEntry; orig: Buffer }>> {
    const af = family === 6 ? AF_INET6 : AF_INET;
    const msgs = await this.transport.request((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F.DUMP, nfgenmsg(af), [], 'list conntrack');
    const out: Array<{ entry: ConntrackEntry; orig: Buffer }> = [];
    for (const m of msgs) {
      if (m.type !== ((NFNL_SUBSYS_CTNETLINK << 8) | 0 /* IPCTNL_MSG_CT_NEW */)) continue;
      const a = parseAttrs(m.payload, 4);
      const orig = a.get(CTA_TUPLE_ORIG);
      const reply = a.get(CTA_TUPLE_REPLY);
      if (!orig || !reply) continue;
      const tuple = (t: Buffer): { src: string; dst: string; proto: number } => {
        const ta = parseAttrs(t);
        const ip = parseAttrs(ta.get(CTA_TUPLE_IP) ?? zeroed(0));
        const proto = parseAttrs(ta.get(CTA_TUPLE_PROTO) ?? zeroed(0));
        // CTA_IP_V4_SRC/DST are 1/2, CTA_IP_V6_SRC/DST 3/4.
        const s = ip.get(family === 6 ? 3 : 1);
        const d = ip.get(family === 6 ? 4 : 2);
        return { src: s ? ipString(s) : '', dst: d ? ipString(d) : '', proto: proto.get(CTA_PROTO_NUM)?.[0] ?? 0 };
      };
      const o = tuple(orig);
      const r = tuple(reply);
      out.push({ entry: { proto: o.proto, origSrc: o.src, origDst: o.dst, replySrc: r.src, replyDst: r.dst }, orig });
    }
    return out;
  }

  async list(family: 4 | 6 = 4): Promise<ConntrackEntry[]> {
    return (await this.dump(family)).map((x) => x.entry);
  }

  /** Deletes every entry (IPv4 or IPv6, by the address) that involves `ip` in either tuple, optionally of one protocol. Returns how many. */
  async deleteByIp(ip: string, proto?: keyof typeof IPPROTO): Promise<number> {
    const { family: af } = ipBytes(ip, 'conntrack ip');
    const family = af === AF_INET6 ? 6 : 4;
    const want = proto === undefined ? undefined : IPPROTO[proto];
    let n = 0;
    for (const { entry, orig } of await this.dump(family)) {
      if (want !== undefined && entry.proto !== want) continue;
      if (![entry.origSrc, entry.origDst, entry.replySrc, entry.replyDst].includes(ip)) continue;
      // The original tuple, as the kernel gave it, identifies the entry.
      const attrs: Attr[] = [[CTA_TUPLE_ORIG, listAttrs(orig).map(([t, v]): Attr => [t, t === CTA_TUPLE_IP || t === CTA_TUPLE_PROTO ? listAttrs(v).map(([t2, v2]): Attr => [t2, v2]) : v])]];
      try {
        await this.transport.request((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, 0, nfgenmsg(af), attrs, `delete conntrack ${entry.origSrc}->${entry.origDst}`);
        n++;
      } catch (err) {
        if (!isNoEnt(err)) throw err; // gone meanwhile
      }
    }
    return n;
  }
}

