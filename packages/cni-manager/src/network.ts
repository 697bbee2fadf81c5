// PodNetwork: attaches sandboxes to the node's pod network over netlink, in two modes.
//
//  bridge: a bridge (berth0) holding the gateway address; one veth per pod, host end enslaved
//          with hairpin on; the pod's default route goes via the gateway.
//  routed: Calico's pure-L3 model: no bridge; the host end has proxy_arp on and a /32 route to
//          the pod; inside the pod 169.254.1.1 is a link-scope route and the default gateway,
//          which the host end answers ARP for.
//
// Across nodes, every other node's pod CIDR is routed via that node's address.
//
// Crash safety with one small append per state change (journal.ts; no file created, renamed
// or removed on the hot path): the IPAM claim naming the sandbox is the first thing made and
// every host-side name derives from the sandbox id, so a claim without a record is a
// half-made attachment that start() undoes by those names. The record is appended once, when
// the attachment is complete; TearDown appends "deleting" before answering and "dropped" when
// the kernel is done. So after kill -9 every pod is either fully set up or cleaned, and no
// address is leaked or doubly used.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as path from 'node:path';
import {
  BerthError, FailedPreconditionError, InvalidArgumentError, NotFoundError, type Logger,
} from '@berth/common';
import {
  Conntrack, NLM_F, Netns, PacketSocket, RTM, gratuitousArp, RTPROT_BERTH, RT_TABLE_MAIN, Rtnl, SyscallError, SysctlFile, TC_H_ROOT, checkIfName, cstr, ipBytes, ipv4Bytes, parseIpCidr, sysctl, tcmsg, type Link,
} from '@berth/native';
import { iptables } from './host';
import { IpamStore } from './ipam';
import { Journal } from './journal';
import { parseBandwidth, parseTcRate } from './rate';

export type Mode = 'bridge' | 'routed';

export interface NodeRoute {
  /** Another node's pod CIDR. */
  podCidr: string;
  /** That node's address on the underlay. */
  via: string;
}

export interface PodNetworkConfig {
  mode: Mode;
  podCidr: string;
  /** Optional IPv6 pod CIDR (dual-stack; bridge mode). */
  podCidrV6?: string;
  stateDir: string;
  bridgeName?: string;
  mtu?: number;
  /** The node's network namespace (default: this process's). Tests use a namespace of their own. */
  hostNetns?: string | null;
  nodeRoutes?: NodeRoute[];
  /** Masquerade pod traffic leaving the pod CIDR (off by default). */
  masquerade?: boolean;
  /** How long start() waits for another process using the same state dir (default 0: fail at once naming it). */
  stateLockWaitMs?: number;
  /** Probe netem/tbf/ifb/iptables at start (default true); a one-shot CNI plugin skips it. */
  probeCapabilities?: boolean;
  /** Delete the conntrack entries of a pod address on teardown and reuse (default true; off only to show why). */
  conntrackFlush?: boolean;
  dns?: { nameservers?: string[]; search?: string[]; domain?: string; options?: string[] };
  logger?: Logger;
}

export interface Bandwidth { ingressRate: number; ingressBurst: number; egressRate: number; egressBurst: number }

export interface FaultSpec {
  direction: 'egress' | 'ingress' | 'both';
  delayMs: number;
  jitterMs: number;
  lossPercent: number;
  duplicatePercent: number;
  reorderPercent: number;
  corruptPercent: number;
  rate: string;
}

export interface PortMapping { protocol: 'tcp' | 'udp' | 'sctp'; containerPort: number; hostPort: number; hostIp: string }

export interface AppliedFault { fault: string; direction: 'egress' | 'ingress'; mechanism: string; detail: string }

/** A rule as given to iptables after -A/-I/-D CHAIN; family 6 for ip6tables. */
export interface NetfilterRule { chain: string; spec: string[]; family?: 6 }

export interface AttachmentRecord {
  sandboxId: string;
  podUid: string;
  podNamespace: string;
  podName: string;
  netnsPath: string;
  ifName: string;
  hostVeth: string;
  ifb?: string;
  ip: string;
  prefix: number;
  /** IPv6 address and prefix length (dual-stack). */
  ip6?: string;
  prefix6?: number;
  gateway: string;
  mac: string;
  mode: Mode;
  createdAt: string;
  /** pending: being set up; ready: attached; deleting: TearDown answered, kernel work still running. */
  phase: 'pending' | 'ready' | 'deleting';
  bandwidth?: Bandwidth;
  faults: AppliedFault[];
  /** iptables rule specs (after -A/-D CHAIN) installed in the pod's netns for faults. */
  faultRules: NetfilterRule[];
  /** Host port mappings and the nat-table DNAT rules (in the node's netns) that implement them. */
  portMappings?: PortMapping[];
  portRules?: NetfilterRule[];
}

export interface SetUpRequest {
  podUid: string;
  podNamespace: string;
  podName: string;
  sandboxId: string;
  netnsPath: string;
  interfaceName: string;
  annotations: Record<string, string>;
  bandwidth?: Partial<Bandwidth>;
  portMappings?: PortMapping[];
}

export interface SetUpResult {
  interfaces: Array<{ name: string; mac: string; sandbox: string }>;
  ips: string[];
  gateway: string;
  routes: Array<{ dst: string; gw: string }>;
  dns: { nameservers: string[]; domain: string; search: string[]; options: string[] };
}

/** The attachments journal: a ready record, a teardown answered, a teardown finished. */
type RecordEntry = { ready: AttachmentRecord } | { deleting: string } | { dropped: string };

export const ROUTED_GATEWAY = '169.254.1.1';

/** Whether IPv4 route destination `dst` ('default' or a CIDR) contains the address `ip` (as a u32). */
function covers(dst: string, ip: number): boolean {
  if (dst === 'default') return true;
  const [net, len] = dst.split('/');
  const bits = Number(len);
  if (!net || !Number.isInteger(bits) || bits < 0 || bits > 32 || isIP(net) !== 4) return false;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return ((ipv4Bytes(net, 'dst').readUInt32BE(0) & mask) >>> 0) === ((ip & mask) >>> 0);
}
/**
 * Routed mode, IPv6 (as Calico): every host end has the MAC ee:ee:ee:ee:ee:ee, so its EUI-64
 * link-local address, the pods' IPv6 gateway, is the same on every veth; it answers neighbour
 * solicitations itself, no proxy NDP needed.
 */
export const ROUTED_HOST_MAC = 'ee:ee:ee:ee:ee:ee';
export const ROUTED_GATEWAY6 = 'fe80::ecee:eeff:feee:eeee';
const HOST_VETH_PREFIX = 'bv';
const IFB_PREFIX = 'bi';
const FAULT_COMMENT = 'berth-fault';
/** lo is the first device of every network namespace. */
const LOOPBACK_IFINDEX = 1;

export interface Capabilities { netem: boolean; tbf: boolean; iptablesStatistic: boolean; ingressShaping: boolean }

function digest(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** Deterministic host-side names, so a crashed setup can be found and undone. */
export function hostVethName(sandboxId: string): string {
  return HOST_VETH_PREFIX + digest(sandboxId).slice(0, 12);
}
function ifbName(sandboxId: string): string {
  return IFB_PREFIX + digest(sandboxId).slice(0, 12);
}

/**
 * Bridge mode: the gratuitous ARP of a new pod, sent to the node alone (to the bridge's MAC)
 * instead of broadcast. A broadcast, as arp_notify sends, is flooded to every pod on the bridge
 * and each one routes the address to decide it is not for it: kernel work in this call that
 * grows with the number of pods (a fifth to a third of a SetUp's kernel time at 200-300 pods,
 * by perf). Only the node can hold an entry worth correcting: a pod's MAC derives from its IP,
 * so another pod's entry for a reused address is already right. The node replaces an entry it
 * has, as with a broadcast, and the bridge learns the port.
 */
function announce(podNs: Netns, podIndex: number, bridgeMac: string, rec: AttachmentRecord): void {
  const sock = PacketSocket.open(podNs);
  try {
    sock.send(podIndex, gratuitousArp({ mac: rec.mac, ip: rec.ip, to: bridgeMac }));
  } finally {
    sock.close();
  }
}

function errnoOf(err: unknown): string | undefined {
  return err instanceof SyscallError ? err.code : undefined;
}

export class PodNetwork {
  readonly mode: Mode;
  readonly ipam: IpamStore;
  readonly ipam6: IpamStore | null;
  readonly bridgeName: string;
  readonly mtu: number;
  private readonly hostNetnsPath: string | null;
  private hostNetns: Netns | null = null;
  /** net.netfilter.nf_conntrack_count of the node's namespace, once conntrack is loaded. */
  private conntrackCount: SysctlFile | undefined;
  private host!: Rtnl;
  private bridge: Link | null = null;
  private readonly records = new Map<string, AttachmentRecord>();
  private readonly recordDir: string;
  private journal: Journal<RecordEntry> | null = null;
  /** Per-sandbox serialisation: SetUp/TearDown of one sandbox never interleave. */
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Teardowns answered but still unregistering links in the kernel, by sandbox id. */
  private readonly deleting = new Map<string, Promise<void>>();
  private ready = false;
  private hostNetnsIno = -1;
  private readyError = '';
  caps: Capabilities = { netem: false, tbf: true, iptablesStatistic: false, ingressShaping: true };

  constructor(readonly config: PodNetworkConfig) {
    if (config.mode !== 'bridge' && config.mode !== 'routed') throw new InvalidArgumentError('mode', `expected "bridge" or "routed", got "${String(config.mode)}"`);
    this.mode = config.mode;
    this.bridgeName = checkIfName(config.bridgeName ?? 'berth0', 'bridgeName');
    this.mtu = config.mtu ?? 1500;
    if (!Number.isInteger(this.mtu) || this.mtu < 576 || this.mtu > 65535) throw new InvalidArgumentError('mtu', `expected 576..65535, got ${config.mtu}`);
    this.hostNetnsPath = config.hostNetns ?? null;
    this.ipam = new IpamStore(path.join(config.stateDir, 'ipam'), { cidr: config.podCidr });
    if (this.ipam.family !== 4) throw new InvalidArgumentError('podCidr', `must be an IPv4 CIDR (give IPv6 as podCidrV6), got '${config.podCidr}'`);
    this.ipam6 = config.podCidrV6 ? new IpamStore(path.join(config.stateDir, 'ipam6'), { cidr: config.podCidrV6, field: 'podCidrV6' }) : null;
    if (this.ipam6 && this.ipam6.family !== 6) throw new InvalidArgumentError('podCidrV6', `must be an IPv6 CIDR, got '${config.podCidrV6}'`);
    this.recordDir = path.join(config.stateDir, 'attachments');
    for (const [i, r] of (config.nodeRoutes ?? []).entries()) {
      let fam: number;
      try {
        fam = parseIpCidr(r.podCidr, 'podCidr').family;
      } catch {
        throw new InvalidArgumentError(`nodeRoutes[${i}].podCidr`, `expected a CIDR, got '${r.podCidr}'`);
      }
      if (ipBytes(r.via, `nodeRoutes[${i}].via`).family !== fam) throw new InvalidArgumentError(`nodeRoutes[${i}].via`, `${r.via} is not of the family of ${r.podCidr}`);
    }
  }

  get isReady(): boolean { return this.ready; }
  get notReadyReason(): string { return this.readyError; }
  get gateway(): string { return this.mode === 'bridge' ? this.ipam.gateway : ROUTED_GATEWAY; }

  /** Opens the node namespace, makes the bridge / forwarding / node routes, and recovers from a crash. */
  async start(): Promise<void> {
    try {
      this.hostNetns = this.hostNetnsPath ? Netns.open(this.hostNetnsPath) : null;
    } catch (err) {
      if (!(err instanceof SyscallError)) throw err;
      throw new InvalidArgumentError('hostNetns', `${this.hostNetnsPath} is not a network namespace (${err.code})`);
    }
    try {
      this.hostNetnsIno = fs.statSync(this.hostNetnsPath ?? '/proc/self/ns/net').ino;
      // The journals first: another process on this state dir must be found before the kernel is touched.
      const lock = { waitMs: this.config.stateLockWaitMs ?? 0 };
      this.records.clear();
      this.journal = await Journal.open<RecordEntry>(path.join(this.config.stateDir, 'attachments.journal'), (e) => this.replayRecord(e), lock);
      await this.ipam.load(lock);
      await this.ipam6?.load(lock);
      this.host = Rtnl.open(this.hostNetns);
      sysctl(this.hostNetns, 'net/ipv4/ip_forward', '1');
      if (this.ipam6) sysctl(this.hostNetns, 'net/ipv6/conf/all/forwarding', '1');
      if (this.mode === 'bridge') await this.ensureBridge();
      else await this.ensureGatewayRoutable();
      for (const r of this.config.nodeRoutes ?? []) await this.host.addRoute({ dst: r.podCidr, gw: r.via }, { replace: true });
      if (this.config.masquerade) await this.ensureMasquerade();
      if (this.config.probeCapabilities !== false) this.caps = await this.probeCapabilities();
      await this.recover();
    } catch (err) {
      // Nothing held after a failed start: the state dir's locks, sockets, the namespace.
      await this.close().catch(() => undefined);
      throw err;
    }
    this.ready = true;
  }

  async close(): Promise<void> {
    await this.drain();
    this.host?.close();
    this.conntrackCount?.close();
    this.conntrackCount = undefined;
    this.hostNetns?.close();
    this.hostNetns = null;
    this.ipam.close();
    this.ipam6?.close();
    this.journal?.close();
    this.journal = null;
  }

  private async ensureBridge(): Promise<void> {
    let br = await this.host.link(this.bridgeName);
    if (br && br.kind !== 'bridge') throw new FailedPreconditionError(`bridgeName: ${this.bridgeName} exists and is a ${br.kind || 'plain'} device, not a bridge`);
    // The bridge's MAC is pinned (set explicitly, which the kernel then keeps). Left to itself,
    // a bridge takes the lowest MAC among its ports and changes it as pods come and go: each
    // change flushes the node's ARP cache for the bridge, and pods keep sending to the old
    // gateway MAC until their entry expires (the bridge sends no ARP about it). A new bridge
    // gets one derived from the gateway address, as pods' are; an existing one keeps its own.
    if (!br) {
      try {
        br = await this.host.addBridge(this.bridgeName, { mtu: this.mtu, mac: `0a:58:${ipv4Bytes(this.ipam.gateway).toString('hex').match(/../g)!.join(':')}` });
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
        br = (await this.host.link(this.bridgeName))!;
      }
    }
    await this.host.setLink(br.index, { mac: br.mac });
    const want = `${this.ipam.gateway}/${this.ipam.prefix}`;
    const have = await this.host.addresses(br.index);
    if (!have.some((a) => a.ip === this.ipam.gateway && a.prefix === this.ipam.prefix)) await this.host.addAddress(br.index, want, { replace: true });
    if (this.ipam6) {
      const have6 = await this.host.addresses(br.index, 6);
      if (!have6.some((a) => a.ip === this.ipam6!.gateway)) await this.host.addAddress(br.index, `${this.ipam6.gateway}/${this.ipam6.prefix}`, { replace: true, nodad: true });
    }
    await this.host.setLink(br.index, { up: true });
    this.bridge = br;
  }

  /**
   * Routed mode: pods ARP for 169.254.1.1 and the host end answers by proxy ARP, but the kernel
   * proxies only a target it can route out of another interface (arp_process: a unicast route
   * whose device is not the asking one). A real host's default route covers that; a node netns
   * without one (nothing may leave it) would leave every pod without a gateway. So when no route
   * in the tables the default rules consult (local, main, default) covers 169.254.1.1, add
   * `169.254.1.1/32 dev lo` (protocol berth): it only makes the address routable, the node
   * does not own it, and nothing is ever sent to it (pods use it as a next hop only). Once
   * another route covers it, ours goes again. Node state like ip_forward: kept across restarts
   * and pod teardowns, since running pods depend on it.
   */
  private async ensureGatewayRoutable(): Promise<void> {
    const gw = ipv4Bytes(ROUTED_GATEWAY, 'gateway').readUInt32BE(0);
    const lo = await this.host.link('lo');
    if (!lo) throw new FailedPreconditionError(`hostNetns: ${this.hostNetnsPath ?? 'the host namespace'} has no loopback device`);
    const ours = (r: { dst: string; protocol: number; oif?: number; table: number }) =>
      r.dst === `${ROUTED_GATEWAY}/32` && r.protocol === RTPROT_BERTH && r.oif === lo.index && r.table === RT_TABLE_MAIN;
    const routes = (await this.host.routes(0)).filter((r) => r.table === 255 || r.table === RT_TABLE_MAIN || r.table === 253);
    const mine = routes.find(ours);
    const covered = routes.some((r) => !ours(r) && covers(r.dst, gw));
    if (covered) {
      if (mine) await this.host.deleteRoute({ dst: mine.dst, oif: lo.index });
      return;
    }
    if (mine) return;
    // A route through a device that is down is refused (ENETDOWN); a namespace's lo is down until set up.
    if (!lo.up) await this.host.setLink(lo.index, { up: true });
    await this.host.addRoute({ dst: `${ROUTED_GATEWAY}/32`, oif: lo.index, scope: 'link' }, { replace: true });
    this.config.logger?.info({ route: `${ROUTED_GATEWAY}/32 dev lo` }, 'no route covers the routed-mode gateway here: added one so proxy ARP answers for it');
  }

  /** Routes to other nodes learned from Node objects: pod CIDR -> node address. */
  private dynamicRoutes = new Map<string, string>();

  /** Makes the learned node routes exactly `routes` (static ones from config stay as they are). */
  async setNodeRoutes(routes: NodeRoute[]): Promise<void> {
    const fixed = new Set((this.config.nodeRoutes ?? []).map((r) => r.podCidr));
    const want = new Map<string, string>();
    for (const r of routes) {
      try {
        const fam = parseIpCidr(r.podCidr, 'podCIDR').family;
        if (ipBytes(r.via, 'InternalIP').family !== fam) throw new TypeError(`InternalIP ${r.via} is not of the family of ${r.podCidr}`);
      } catch (err) {
        this.config.logger?.warn({ route: r, err }, 'ignoring a node with an unusable podCIDR or address');
        continue;
      }
      if (r.podCidr === this.ipam.cidr || r.podCidr === this.ipam6?.cidr || fixed.has(r.podCidr)) continue;
      want.set(r.podCidr, r.via);
    }
    for (const [cidr, via] of this.dynamicRoutes) if (want.get(cidr) !== via && !want.has(cidr)) await this.host.deleteRoute({ dst: cidr, gw: via });
    for (const [cidr, via] of want) {
      if (this.dynamicRoutes.get(cidr) === via) continue;
      try {
        await this.host.addRoute({ dst: cidr, gw: via }, { replace: true });
      } catch (err) {
        // One node with an address this node cannot reach must not stop the others' routes.
        this.config.logger?.warn({ podCidr: cidr, via, err }, 'cannot route to a node');
        want.delete(cidr);
      }
    }
    this.dynamicRoutes = want;
  }

  /** The node routes in force, static and learned. */
  nodeRoutes(): NodeRoute[] {
    return [...(this.config.nodeRoutes ?? []), ...[...this.dynamicRoutes].map(([podCidr, via]) => ({ podCidr, via }))];
  }

  private async ensureMasquerade(): Promise<void> {
    for (const [cidr, family] of [[this.ipam.cidr, 4], ...(this.ipam6 ? [[this.ipam6.cidr, 6]] : [])] as Array<[string, 4 | 6]>) {
      const rule = ['POSTROUTING', '-s', cidr, '!', '-d', cidr, '-m', 'comment', '--comment', 'berth-masquerade', '-j', 'MASQUERADE'];
      try {
        await iptables(this.hostNetnsPath, ['-t', 'nat', '-C', ...rule], family);
      } catch {
        await iptables(this.hostNetnsPath, ['-t', 'nat', '-A', ...rule], family);
      }
    }
  }

  private async probeCapabilities(): Promise<Capabilities> {
    const caps: Capabilities = { netem: false, tbf: false, iptablesStatistic: false, ingressShaping: false };
    // Probe the qdisc kinds on a throwaway ifb in the node namespace (ifb itself proves ingress shaping).
    const probe = `bp${digest(`${process.pid}${Date.now()}`).slice(0, 10)}`;
    try {
      const ifb = await this.host.addIfb(probe);
      caps.ingressShaping = true;
      try { await this.host.setTbf(ifb.index, { rate: 1e6, burst: 16384 }); caps.tbf = true; } catch { /* no sch_tbf */ }
      try { await this.host.deleteQdisc(ifb.index); } catch { /* none */ }
      caps.netem = await this.host.transport
        .request(RTM.NEWQDISC, NLM_F.CREATE | NLM_F.REPLACE, tcmsg({ ifindex: ifb.index, handle: 0x00010000, parent: TC_H_ROOT }), [[1, cstr('netem')], [2, Buffer.alloc(24)]], 'probe netem')
        .then(() => true, () => false);
    } catch {
      /* no ifb: no ingress shaping */
    } finally {
      await this.host.deleteLink(probe).catch(() => undefined);
    }
    caps.iptablesStatistic = await this.probeIptablesStatistic();
    return caps;
  }

  /** Whether iptables with the statistic match runs here (the loss fault without netem). */
  private probeIptablesStatistic(): Promise<boolean> {
    return iptables(this.hostNetnsPath, ['-m', 'statistic', '-h']).then(() => true, () => false);
  }

  // ---- records ----

  private replayRecord(e: RecordEntry): void {
    if ('ready' in e) this.records.set(e.ready.sandboxId, e.ready);
    else if ('deleting' in e) {
      const r = this.records.get(e.deleting);
      if (r) r.phase = 'deleting';
    } else this.records.delete(e.dropped);
  }

  private get records$(): Journal<RecordEntry> {
    if (!this.journal) throw new BerthError('Unavailable', 'network is not started');
    return this.journal;
  }

  /** Records a ready attachment (again, after a change such as faults). */
  private saveRecord(r: AttachmentRecord): void {
    this.records.set(r.sandboxId, r);
    if (r.phase === 'ready') this.records$.append({ ready: r });
  }

  /** Marks a record as being deleted: once on disk, a crash cannot bring the pod back. */
  private markDeleting(r: AttachmentRecord): void {
    r.phase = 'deleting';
    this.records$.append({ deleting: r.sandboxId });
  }

  private dropRecord(sandboxId: string): void {
    if (!this.records.delete(sandboxId)) return;
    const j = this.records$;
    j.append({ dropped: sandboxId });
    j.compact(() => [...this.records.values()].flatMap((r): RecordEntry[] => (r.phase === 'pending' ? [] : r.phase === 'ready' ? [{ ready: r }] : [{ ready: r }, { deleting: r.sandboxId }])));
  }

  /** Records kept as one file per attachment (`attachments/<hash>.json`, `<hash>.deleting` once TearDown answered) by earlier versions. */
  private adoptRecordFiles(): void {
    if (!fs.existsSync(this.recordDir)) return;
    for (const name of fs.readdirSync(this.recordDir)) {
      const file = path.join(this.recordDir, name);
      try {
        const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as AttachmentRecord;
        if (!this.records.has(rec.sandboxId)) {
          rec.phase = 'ready';
          this.saveRecord(rec);
          if (name.endsWith('.deleting')) this.markDeleting(rec);
        }
      } catch {
        /* torn by a crash: the IPAM claim undoes it below */
      }
      fs.rmSync(file, { force: true });
    }
    fs.rmSync(this.recordDir, { recursive: true, force: true });
  }

  private async recover(): Promise<void> {
    this.adoptRecordFiles();
    for (const rec of [...this.records.values()]) {
      if (rec.phase !== 'deleting') continue;
      this.config.logger?.warn({ sandboxId: rec.sandboxId }, 'finishing a teardown interrupted by a crash');
      await this.undo(rec);
    }
    // Claims without a record: attachments a crash left half-made.
    for (const [ip, owner] of [...this.ipam.allocations(), ...(this.ipam6?.allocations() ?? [])]) {
      if (this.records.has(owner)) continue;
      this.config.logger?.warn({ sandboxId: owner, ip }, 'undoing an attachment left half-made by a crash');
      await this.host.deleteLink(hostVethName(owner));
      await this.host.deleteLink(ifbName(owner));
    }
    const released = [...(await this.ipam.gc(this.records.keys())), ...((await this.ipam6?.gc(this.records.keys())) ?? [])];
    for (const ip of released) await this.flushConntrack(ip);
    if (released.length) this.config.logger?.warn({ released }, 'released addresses leaked by a crash');
  }

  private serial<T>(sandboxId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(sandboxId) ?? Promise.resolve();
    const p = prev.then(fn, fn);
    const tail = p.catch(() => undefined);
    this.locks.set(sandboxId, tail);
    void tail.then(() => { if (this.locks.get(sandboxId) === tail) this.locks.delete(sandboxId); });
    return p;
  }

  private checkReady(): void {
    if (!this.ready) throw new BerthError('Unavailable', `network is not ready${this.readyError ? `: ${this.readyError}` : ''}`);
  }

  // ---- SetUp ----

  async setUp(req: SetUpRequest): Promise<SetUpResult> {
    this.checkReady();
    if (!req.sandboxId) throw new InvalidArgumentError('sandbox_id', 'is required');
    if (!req.netnsPath) throw new InvalidArgumentError('netns_path', 'is required');
    if (!path.isAbsolute(req.netnsPath)) throw new InvalidArgumentError('netns_path', `must be an absolute path, got '${req.netnsPath}'`);
    const ifName = req.interfaceName || 'eth0';
    try {
      checkIfName(ifName, 'interface_name');
    } catch (err) {
      throw new InvalidArgumentError('interface_name', (err as Error).message.replace(/^interface_name: /, ''));
    }
    const bandwidth = bandwidthOf(req.annotations, req.bandwidth);
    const portMappings = checkPortMappings(req.portMappings ?? [], { ipv6: !!this.ipam6 });
    return this.serial(req.sandboxId, async () => {
      await this.deleting.get(req.sandboxId);
      const existing = this.records.get(req.sandboxId);
      if (existing?.phase === 'ready') {
        if (existing.netnsPath !== req.netnsPath) throw new BerthError('AlreadyExists', `sandbox ${req.sandboxId} is already attached with netns ${existing.netnsPath}`);
        return this.resultOf(existing);
      }
      const rec: AttachmentRecord = {
        sandboxId: req.sandboxId, podUid: req.podUid, podNamespace: req.podNamespace, podName: req.podName,
        netnsPath: req.netnsPath, ifName, hostVeth: hostVethName(req.sandboxId), ip: '', prefix: 0, gateway: this.gateway, mac: '',
        mode: this.mode, createdAt: new Date().toISOString(), phase: 'pending', faults: [], faultRules: [],
        ...(bandwidth ? { bandwidth } : {}),
        ...(portMappings.length ? { portMappings } : {}),
      };
      this.checkPortConflicts(rec);
      let podNs: Netns;
      try {
        podNs = Netns.open(req.netnsPath);
      } catch (err) {
        throw new InvalidArgumentError('netns_path', `${req.netnsPath} is not a network namespace (${errnoOf(err) ?? (err as Error).message})`);
      }
      // Attaching the node's own namespace as a "pod" would hand the node's network to it.
      if (fs.statSync(req.netnsPath).ino === this.hostNetnsIno) {
        podNs.close();
        throw new InvalidArgumentError('netns_path', `${req.netnsPath} is the node's own network namespace`);
      }
      this.records.set(rec.sandboxId, rec);
      try {
        await this.attach(rec, podNs);
        rec.phase = 'ready';
        this.saveRecord(rec);
        return this.resultOf(rec);
      } catch (err) {
        await this.undo(rec).catch((e: unknown) => this.config.logger?.error({ err: e, sandboxId: rec.sandboxId }, 'rollback failed'));
        throw this.explain(err, rec);
      } finally {
        podNs.close();
      }
    });
  }

  private explain(err: unknown, rec: AttachmentRecord): unknown {
    if (!(err instanceof SyscallError)) return err;
    if (err.code === 'EEXIST' && /create veth/.test(err.message)) {
      return new InvalidArgumentError('interface_name', `${rec.ifName} is already taken in ${rec.netnsPath} (or the host veth ${rec.hostVeth} exists)`, { cause: err });
    }
    return err;
  }

  private async attach(rec: AttachmentRecord, podNs: Netns): Promise<void> {
    rec.ip = await this.ipam.allocate(rec.sandboxId);
    rec.prefix = this.mode === 'bridge' ? this.ipam.prefix : 32;
    if (this.ipam6) {
      rec.ip6 = await this.ipam6.allocate(rec.sandboxId);
      rec.prefix6 = this.mode === 'bridge' ? this.ipam6.prefix : 128;
    }
    // A reused address may still have conntrack entries of its previous pod (the UDP pitfall).
    await this.flushConntrack(rec.ip);
    if (rec.ip6) await this.flushConntrack(rec.ip6);
    // The pod end gets a MAC derived from its address (0a:58:<ip>, locally administered), so
    // the result needs no lookup. The whole attachment is one native call on one pool thread:
    // create the veth (its peer directly in the pod's netns), then one batch on the node's side
    // and one in the pod's, their link indexes patched in from the create's echo. Interface
    // settings go over netlink too, so no sysctl file is opened per pod.
    rec.mac = `0a:58:${ipv4Bytes(rec.ip).toString('hex').match(/../g)!.join(':')}`;
    const bridge = this.mode === 'bridge';
    const pod = Rtnl.open(podNs);
    let hostEnd: Link;
    try {
      hostEnd = await this.host.addVethThen({
        name: rec.hostVeth, peer: rec.ifName, peerNetns: podNs, mtu: this.mtu, peerMac: rec.mac,
        ...(bridge ? { master: this.bridge!.index } : { mac: ROUTED_HOST_MAC }),
      }, [
        // The node's end first, so it is up (carrier on) when the pod's end comes up and
        // announces itself.
        { rtnl: this.host, build: async (b, l) => {
          // No automatic IPv6 link-local on the node's end (brought up here, after that is
          // set, not in the create): a bridge port needs no address of its own, and a routed
          // end gets the one fixed below. Each one would cost DAD and MLD work, multicast to
          // every pod on the bridge, for nothing.
          await b.setAddrGenMode(l.created, 'none');
          if (bridge) {
            await b.setHairpin(l.created, true);
            await b.setLink(l.created, { up: true });
            return;
          }
          await b.setInetConf(l.created, { proxy_arp: 1, forwarding: 1 });
          // Proxy ARP must answer at once, not after the default 0-800 ms random delay.
          await b.setProxyDelay(l.created, 0);
          if (rec.ip6) {
            // The pods' IPv6 gateway is this fixed link-local, given without DAD (a tentative
            // address would stay deaf to the pod for a second or more) and no other.
            await b.addAddress(l.created, `${ROUTED_GATEWAY6}/64`, { nodad: true });
          }
          await b.setLink(l.created, { up: true });
          await b.addRoute({ dst: `${rec.ip}/32`, oif: l.created, scope: 'link' }, { replace: true });
          if (rec.ip6) await b.addRoute({ dst: `${rec.ip6}/128`, oif: l.created }, { replace: true });
        } },
        { rtnl: pod, build: async (b, l) => {
          await b.setLink(LOOPBACK_IFINDEX, { up: true });
          // Routed: the kernel sends a gratuitous ARP when the interface comes up with its
          // address; the link is point to point, so it reaches the node's end only. (Bridge
          // mode announces the pod after the plan, to the node alone: see announce().)
          if (!bridge) await b.setInetConf(l.peer, { arp_notify: 1 });
          // A single-stack pod gets no IPv6 link-local either (nor its DAD and MLD traffic).
          if (!rec.ip6) await b.setAddrGenMode(l.peer, 'none');
          await b.addAddress(l.peer, `${rec.ip}/${rec.prefix}`);
          // No duplicate address detection: IPAM already guarantees uniqueness, and DAD would
          // keep the address unusable for a second or more.
          if (rec.ip6) await b.addAddress(l.peer, `${rec.ip6}/${rec.prefix6}`, { nodad: true });
          await b.setLink(l.peer, { up: true });
          if (bridge) {
            await b.addRoute({ dst: 'default', gw: this.ipam.gateway, oif: l.peer });
            if (rec.ip6) await b.addRoute({ dst: 'default', gw: this.ipam6!.gateway, oif: l.peer });
          } else {
            await b.addRoute({ dst: `${ROUTED_GATEWAY}/32`, oif: l.peer, scope: 'link' });
            await b.addRoute({ dst: 'default', gw: ROUTED_GATEWAY, oif: l.peer, onlink: true });
            if (rec.ip6) await b.addRoute({ dst: 'default', gw: ROUTED_GATEWAY6, oif: l.peer });
          }
        } },
      ]);
    } finally {
      pod.close();
    }
    if (bridge) announce(podNs, hostEnd.link, this.bridge!.mac, rec);
    if (rec.bandwidth) await this.applyBandwidth(rec, hostEnd.index);
    if (rec.portMappings) await this.applyPortMappings(rec);
  }

  private async applyBandwidth(rec: AttachmentRecord, hostIndex: number): Promise<void> {
    const bw = rec.bandwidth!;
    // Into the pod = out of the host end.
    if (bw.ingressRate > 0) await this.host.setTbf(hostIndex, { rate: bw.ingressRate, burst: bw.ingressBurst || defaultBurst(bw.ingressRate) });
    // Out of the pod = into the host end: redirect to an ifb and shape its egress.
    if (bw.egressRate > 0) {
      if (!this.caps.ingressShaping) throw new FailedPreconditionError('egress bandwidth needs the ifb driver, which this kernel lacks');
      rec.ifb = ifbName(rec.sandboxId);
      const ifb = await this.host.addIfb(rec.ifb);
      await this.host.setLink(ifb.index, { up: true, mtu: this.mtu });
      await this.host.setTbf(ifb.index, { rate: bw.egressRate, burst: bw.egressBurst || defaultBurst(bw.egressRate) });
      await this.host.addIngressQdisc(hostIndex);
      await this.host.addIngressRedirect(hostIndex, ifb.index);
    }
  }

  /** Two pods may not claim the same host port (per protocol and host address). */
  private checkPortConflicts(rec: AttachmentRecord): void {
    for (const [i, m] of (rec.portMappings ?? []).entries()) {
      for (const other of this.records.values()) {
        if (other.sandboxId === rec.sandboxId) continue;
        const clash = (other.portMappings ?? []).find((o) => o.protocol === m.protocol && o.hostPort === m.hostPort && (o.hostIp === m.hostIp || !o.hostIp || !m.hostIp));
        if (clash) throw new BerthError('AlreadyExists', `port_mappings[${i}].host_port: ${m.protocol}/${m.hostPort} is already mapped to sandbox ${other.sandboxId}`);
      }
    }
  }

  /**
   * DNAT from the node's addresses (or host_ip) to the pod, for traffic arriving and made
   * locally: to its IPv4 address, and to its IPv6 one too when it has one (a host_ip picks its
   * family).
   */
  private async applyPortMappings(rec: AttachmentRecord): Promise<void> {
    rec.portRules = [];
    for (const m of rec.portMappings ?? []) {
      const families: Array<4 | 6> = m.hostIp ? [m.hostIp.includes(':') ? 6 : 4] : [4, ...(rec.ip6 ? [6 as const] : [])];
      for (const family of families) {
        const spec = [
          '-p', m.protocol, '--dport', String(m.hostPort),
          ...(m.hostIp ? ['-d', m.hostIp] : ['-m', 'addrtype', '--dst-type', 'LOCAL']),
          '-m', 'comment', '--comment', `berth-hostport ${rec.hostVeth}`,
          '-j', 'DNAT', '--to-destination', family === 6 ? `[${rec.ip6}]:${m.containerPort}` : `${rec.ip}:${m.containerPort}`,
        ];
        for (const chain of ['PREROUTING', 'OUTPUT']) {
          await iptables(this.hostNetnsPath, ['-t', 'nat', '-A', chain, ...spec], family);
          rec.portRules.push({ chain, spec, ...(family === 6 ? { family } : {}) });
        }
      }
    }
  }

  private async flushConntrack(ip: string): Promise<number> {
    if (this.config.conntrackFlush === false) return 0;
    // A dump walks the kernel's whole (global) conntrack hash, ~10 ms with 256k buckets; the
    // per-namespace entry count tells for free when there is nothing to find.
    // The count's file stays open (read on every SetUp and TearDown); until conntrack is
    // loaded there is no file and nothing to flush, and it is looked for again next time.
    try {
      this.conntrackCount ??= SysctlFile.open(this.hostNetns, 'net/netfilter/nf_conntrack_count');
      if (this.conntrackCount.read() === '0') return 0;
    } catch {
      return 0;
    }
    const ct = Conntrack.open(this.hostNetns);
    try {
      return await ct.deleteByIp(ip);
    } finally {
      ct.close();
    }
  }

  /** Removes whatever exists of an attachment; idempotent. */
  private async undo(rec: AttachmentRecord): Promise<string[]> {
    // The pod end, its addresses and routes, the /32 route and the qdiscs go with the veth.
    await this.host.deleteLink(rec.hostVeth);
    if (rec.ifb) await this.host.deleteLink(rec.ifb);
    if (rec.faultRules.length) await this.removeFaultRules(rec).catch(() => undefined);
    for (const r of rec.portRules ?? []) await iptables(this.hostNetnsPath, ['-t', 'nat', '-D', r.chain, ...r.spec], r.family ?? 4).catch(() => undefined);
    const released = [...(await this.ipam.release(rec.sandboxId)), ...((await this.ipam6?.release(rec.sandboxId)) ?? [])];
    for (const ip of released) await this.flushConntrack(ip);
    this.dropRecord(rec.sandboxId);
    return released;
  }

  resultOf(rec: AttachmentRecord): SetUpResult {
    const routes = this.mode === 'bridge'
      ? [{ dst: '0.0.0.0/0', gw: this.ipam.gateway }, ...(rec.ip6 ? [{ dst: '::/0', gw: this.ipam6!.gateway }] : [])]
      : [{ dst: `${ROUTED_GATEWAY}/32`, gw: '' }, { dst: '0.0.0.0/0', gw: ROUTED_GATEWAY }, ...(rec.ip6 ? [{ dst: '::/0', gw: ROUTED_GATEWAY6 }] : [])];
    const dns = this.config.dns ?? {};
    return {
      interfaces: [{ name: rec.ifName, mac: rec.mac, sandbox: rec.netnsPath }, { name: rec.hostVeth, mac: '', sandbox: '' }],
      ips: [`${rec.ip}/${rec.prefix}`, ...(rec.ip6 ? [`${rec.ip6}/${rec.prefix6}`] : [])],
      gateway: rec.gateway,
      routes,
      dns: { nameservers: dns.nameservers ?? [], domain: dns.domain ?? '', search: dns.search ?? [], options: dns.options ?? [] },
    };
  }

  // ---- TearDown / Check / status / list / GC ----

  async tearDown(req: { sandboxId: string; netnsPath?: string }): Promise<void> {
    if (!req.sandboxId) throw new InvalidArgumentError('sandbox_id', 'is required');
    return this.serial(req.sandboxId, async () => {
      const rec = this.records.get(req.sandboxId);
      if (rec) {
        if (this.deleting.has(rec.sandboxId)) return;
        // Answer once the intent is on disk: unregistering a veth costs the kernel ~20 ms of RCU
        // grace periods that nobody needs to wait for. The address stays allocated (and the
        // sandbox locked for a new SetUp) until the links are gone and conntrack is flushed;
        // a crash meanwhile is finished by recover().
        this.markDeleting(rec);
        this.finishInBackground(rec);
        return;
      }
      // State lost (or never attached): remove what the deterministic names point at.
      await this.host.deleteLink(hostVethName(req.sandboxId));
      await this.host.deleteLink(ifbName(req.sandboxId));
      for (const ip of [...(await this.ipam.release(req.sandboxId)), ...((await this.ipam6?.release(req.sandboxId)) ?? [])]) await this.flushConntrack(ip);
    });
  }

  private finishInBackground(rec: AttachmentRecord): void {
    const p = this.undo(rec).then(
      () => undefined,
      (err: unknown) => this.config.logger?.error({ err, sandboxId: rec.sandboxId }, 'teardown failed; GarbageCollect or a restart retries it'),
    ).finally(() => this.deleting.delete(rec.sandboxId));
    this.deleting.set(rec.sandboxId, p);
  }

  /** Resolves when every answered teardown has finished in the kernel. */
  async drain(): Promise<void> {
    while (this.deleting.size) await Promise.all([...this.deleting.values()]);
  }

  async check(sandboxId: string): Promise<string[]> {
    const rec = this.records.get(sandboxId);
    if (!rec || rec.phase !== 'ready') throw new NotFoundError(`sandbox ${sandboxId} is not attached`);
    const problems: string[] = [];
    const hostEnd = await this.host.link(rec.hostVeth);
    if (!hostEnd) problems.push(`host veth ${rec.hostVeth} missing`);
    else {
      if (!hostEnd.up) problems.push(`host veth ${rec.hostVeth} is down`);
      if (this.mode === 'bridge' && hostEnd.master !== this.bridge?.index) problems.push(`host veth ${rec.hostVeth} is not a port of ${this.bridgeName}`);
    }
    let podNs: Netns;
    try {
      podNs = Netns.open(rec.netnsPath);
    } catch {
      problems.push(`netns ${rec.netnsPath} is gone`);
      return problems;
    }
    const pod = Rtnl.open(podNs);
    try {
      const eth = await pod.link(rec.ifName);
      if (!eth) problems.push(`interface ${rec.ifName} missing in ${rec.netnsPath}`);
      else {
        if (!eth.up) problems.push(`interface ${rec.ifName} is down`);
        const addrs = await pod.addresses(eth.index);
        if (!addrs.some((a) => a.ip === rec.ip && a.prefix === rec.prefix)) problems.push(`address ${rec.ip}/${rec.prefix} missing on ${rec.ifName}`);
        if (rec.ip6 && !(await pod.addresses(eth.index, 6)).some((a) => a.ip === rec.ip6)) problems.push(`address ${rec.ip6}/${rec.prefix6} missing on ${rec.ifName}`);
        const routes = await pod.routes();
        if (!routes.some((r) => r.dst === 'default' && r.gw === rec.gateway)) problems.push(`default route via ${rec.gateway} missing`);
      }
    } finally {
      pod.close();
      podNs.close();
    }
    return problems;
  }

  record(sandboxId: string): AttachmentRecord | undefined {
    const r = this.records.get(sandboxId);
    return r?.phase === 'ready' ? r : undefined;
  }

  list(): AttachmentRecord[] {
    return [...this.records.values()].filter((r) => r.phase === 'ready');
  }

  async gc(valid: string[]): Promise<{ removed: string[]; released: string[] }> {
    const keep = new Set(valid);
    const removed: string[] = [];
    const released: string[] = [];
    for (const rec of [...this.records.values()]) {
      if (keep.has(rec.sandboxId)) continue;
      await this.serial(rec.sandboxId, async () => {
        await this.deleting.get(rec.sandboxId);
        if (!this.records.has(rec.sandboxId)) return;
        released.push(...(await this.undo(rec)));
        removed.push(rec.sandboxId);
      });
    }
    // Host veths / ifbs of ours that no record explains (a lost state dir).
    const known = new Set([...this.records.values()].flatMap((r) => [r.hostVeth, r.ifb ?? '']));
    for (const l of await this.host.links()) {
      if ((l.name.startsWith(HOST_VETH_PREFIX) && l.kind === 'veth') || (l.name.startsWith(IFB_PREFIX) && l.kind === 'ifb')) {
        if (/^b[vi][0-9a-f]{12}$/.test(l.name) && !known.has(l.name)) await this.host.deleteLink(l.index);
      }
    }
    const leaked = [...(await this.ipam.gc(this.records.keys())), ...((await this.ipam6?.gc(this.records.keys())) ?? [])];
    for (const ip of leaked) await this.flushConntrack(ip);
    released.push(...leaked);
    return { removed, released };
  }

  // ---- faults ----

  async setFaults(sandboxId: string, f: FaultSpec): Promise<{ applied: AppliedFault[]; unsupported: Array<{ fault: string; reason: string }> }> {
    return this.serial(sandboxId, async () => {
      const rec = this.record(sandboxId);
      if (!rec) throw new NotFoundError(`sandbox ${sandboxId} is not attached`);
      for (const [k, v] of Object.entries({ loss_percent: f.lossPercent, duplicate_percent: f.duplicatePercent, reorder_percent: f.reorderPercent, corrupt_percent: f.corruptPercent })) {
        if (!(v >= 0 && v <= 100)) throw new InvalidArgumentError(k, `expected 0..100, got ${v}`);
      }
      if (f.reorderPercent > 0 && f.delayMs === 0) throw new InvalidArgumentError('reorder_percent', 'needs delay_ms > 0');
      if (f.jitterMs > 0 && f.delayMs === 0) throw new InvalidArgumentError('jitter_ms', 'needs delay_ms > 0');
      const rate = f.rate ? parseTcRate(f.rate, 'rate') : 0;
      const dirs: Array<'egress' | 'ingress'> = f.direction === 'both' ? ['egress', 'ingress'] : [f.direction];
      await this.clearFaultsOf(rec);
      const applied: AppliedFault[] = [];
      const unsupported: Array<{ fault: string; reason: string }> = [];
      const netemOnly: Array<[string, number, string]> = [
        ['delay', f.delayMs, `${f.delayMs}ms`], ['jitter', f.jitterMs, `${f.jitterMs}ms`], ['duplicate', f.duplicatePercent, `${f.duplicatePercent}%`],
        ['reorder', f.reorderPercent, `${f.reorderPercent}%`], ['corrupt', f.corruptPercent, `${f.corruptPercent}%`],
      ];
      for (const [name, v] of netemOnly) {
        if (v > 0) unsupported.push({ fault: name, reason: this.caps.netem ? 'netem is available but Berth applies only loss and rate without it so far' : 'sch_netem is not available in this kernel' });
      }
      const requested = netemOnly.some(([, v]) => v > 0) || f.lossPercent > 0 || rate > 0;
      if (!requested) {
        this.saveRecord(rec);
        return { applied, unsupported };
      }
      if (f.lossPercent > 0) {
        // The start-up probe can fail for a passing reason (an exec that timed out under load):
        // a loss fault asks again rather than staying off until the next restart.
        if (!this.caps.iptablesStatistic && this.config.probeCapabilities !== false) this.caps.iptablesStatistic = await this.probeIptablesStatistic();
        if (!this.caps.iptablesStatistic) unsupported.push({ fault: 'loss', reason: 'neither sch_netem nor the iptables statistic match is available' });
        else {
          for (const dir of dirs) {
            const chain = dir === 'egress' ? 'OUTPUT' : 'INPUT';
            const spec = ['-m', 'statistic', '--mode', 'random', '--probability', (f.lossPercent / 100).toFixed(6), '-m', 'comment', '--comment', FAULT_COMMENT, '-j', 'DROP'];
            // A dual-stack pod loses IPv6 packets alike (ip6tables; neighbour discovery included, as on a lossy link).
            for (const family of [4, ...(rec.ip6 ? [6] : [])] as Array<4 | 6>) {
              await iptables(rec.netnsPath, ['-I', chain, ...spec], family);
              rec.faultRules.push({ chain, spec, ...(family === 6 ? { family } : {}) });
            }
            applied.push({ fault: 'loss', direction: dir, mechanism: 'iptables-statistic', detail: `${f.lossPercent}%` });
          }
        }
      }
      if (rate > 0) {
        for (const dir of dirs) {
          if (dir === 'ingress') {
            if (rec.bandwidth?.ingressRate) { unsupported.push({ fault: 'rate', reason: 'ingress is already shaped by kubernetes.io/ingress-bandwidth' }); continue; }
            const h = await this.host.link(rec.hostVeth);
            await this.host.setTbf(h!.index, { rate, burst: defaultBurst(rate) });
            applied.push({ fault: 'rate', direction: dir, mechanism: 'tbf', detail: f.rate });
          } else {
            const podNs = Netns.open(rec.netnsPath);
            const pod = Rtnl.open(podNs);
            try {
              const eth = await pod.link(rec.ifName);
              await pod.setTbf(eth!.index, { rate, burst: defaultBurst(rate) });
            } finally {
              pod.close();
              podNs.close();
            }
            applied.push({ fault: 'rate', direction: dir, mechanism: 'tbf', detail: f.rate });
          }
        }
      }
      rec.faults = applied;
      this.saveRecord(rec);
      if (applied.length === 0) {
        throw new FailedPreconditionError(`none of the requested faults can be applied here: ${unsupported.map((u) => `${u.fault} (${u.reason})`).join('; ')}`);
      }
      return { applied, unsupported };
    });
  }

  clearFaults(sandboxId: string): Promise<void> {
    return this.serial(sandboxId, async () => {
      const rec = this.record(sandboxId);
      if (!rec) return;
      await this.clearFaultsOf(rec);
      this.saveRecord(rec);
    });
  }

  private async clearFaultsOf(rec: AttachmentRecord): Promise<void> {
    await this.removeFaultRules(rec);
    for (const f of rec.faults.filter((x) => x.fault === 'rate')) {
      if (f.direction === 'ingress') {
        const h = await this.host.link(rec.hostVeth);
        if (h) await this.host.deleteQdisc(h.index);
      } else {
        const podNs = Netns.open(rec.netnsPath);
        const pod = Rtnl.open(podNs);
        try {
          const eth = await pod.link(rec.ifName);
          if (eth) await pod.deleteQdisc(eth.index);
        } finally {
          pod.close();
          podNs.close();
        }
      }
    }
    rec.faults = [];
  }

  private async removeFaultRules(rec: AttachmentRecord): Promise<void> {
    for (const r of rec.faultRules.splice(0)) {
      await iptables(rec.netnsPath, ['-D', r.chain, ...r.spec], r.family ?? 4).catch(() => undefined);
    }
  }
}

/** Bandwidth from the request and the Kubernetes annotations; conflicting values are an error. */
export function bandwidthOf(annotations: Record<string, string>, req?: Partial<Bandwidth>): Bandwidth | undefined {
  const ing = annotations['kubernetes.io/ingress-bandwidth'];
  const eg = annotations['kubernetes.io/egress-bandwidth'];
  const bw: Bandwidth = {
    ingressRate: req?.ingressRate ?? 0, ingressBurst: req?.ingressBurst ?? 0,
    egressRate: req?.egressRate ?? 0, egressBurst: req?.egressBurst ?? 0,
  };
  if (ing !== undefined) {
    const v = parseBandwidth(ing, 'annotations[kubernetes.io/ingress-bandwidth]');
    if (bw.ingressRate && bw.ingressRate !== v) throw new InvalidArgumentError('annotations[kubernetes.io/ingress-bandwidth]', `${ing} conflicts with bandwidth.ingress_rate ${bw.ingressRate}`);
    bw.ingressRate = v;
  }
  if (eg !== undefined) {
    const v = parseBandwidth(eg, 'annotations[kubernetes.io/egress-bandwidth]');
    if (bw.egressRate && bw.egressRate !== v) throw new InvalidArgumentError('annotations[kubernetes.io/egress-bandwidth]', `${eg} conflicts with bandwidth.egress_rate ${bw.egressRate}`);
    bw.egressRate = v;
  }
  return bw.ingressRate || bw.egressRate ? bw : undefined;
}

/** Like the CNI bandwidth plugin: enough burst for 100 ms at the rate, at least 16 KiB. */
function defaultBurst(rateBits: number): number {
  return Math.max(16384, Math.floor(rateBits / 8 / 10));
}

/** Validates port mappings, naming the field; fills the default protocol. */
export function checkPortMappings(list: ReadonlyArray<Partial<PortMapping> & { protocol?: string }>, opts: { ipv6?: boolean } = {}): PortMapping[] {
  const out: PortMapping[] = [];
  const seen = new Set<string>();
  list.forEach((m, i) => {
    const f = `port_mappings[${i}]`;
    const protocol = (m.protocol || 'tcp').toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') throw new InvalidArgumentError(`${f}.protocol`, `expected tcp, udp or sctp, got "${m.protocol}"`);
    for (const k of ['containerPort', 'hostPort'] as const) {
      const v = m[k];
      if (!Number.isInteger(v) || v! < 1 || v! > 65535) throw new InvalidArgumentError(`${f}.${k === 'hostPort' ? 'host_port' : 'container_port'}`, `expected 1..65535, got ${v}`);
    }
    const hostIp = m.hostIp ?? '';
    if (hostIp) {
      const family = isIP(hostIp);
      if (!family) throw new InvalidArgumentError(`${f}.host_ip`, `expected an IPv4 or IPv6 address, got "${hostIp}"`);
      if (hostIp.startsWith('127.') || hostIp === '::1') throw new InvalidArgumentError(`${f}.host_ip`, 'loopback host addresses are not supported (DNAT from loopback needs route_localnet, and IPv6 has none)');
      if (family === 6 && !opts.ipv6) throw new InvalidArgumentError(`${f}.host_ip`, `${hostIp} is IPv6 but the pod network has no IPv6 range (podCidrV6)`);
    }
    const key = `${protocol}/${m.hostPort}/${hostIp}`;
    if (seen.has(key)) throw new InvalidArgumentError(`${f}.host_port`, `${protocol}/${m.hostPort} is mapped twice`);
    seen.add(key);
    out.push({ protocol, containerPort: m.containerPort!, hostPort: m.hostPort!, hostIp });
  });
  return out;
}
