// The network a local multi-node cluster lives on: one underlay bridge on the host, not attached
// to any real interface and with no route or masquerade out of the machine, and one network
// namespace per node plugged into it by a veth. The control plane listens on the bridge's
// address; each node reaches it (and the other nodes) only through its own veth, so cutting a
// node's link is as real as pulling its cable.
//
// Every name carries the run id (a hash of the run dir), so concurrent clusters never collide and
// a restart after a crash finds exactly what the previous run left.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** 8 hex digits naming everything one `berth up` (one run dir) makes on the host. */
export function runId(runDir: string): string {
  return crypto.createHash('sha256').update(path.resolve(runDir)).digest('hex').slice(0, 8);
}

export function ip(args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(err.stderr || err.message).trim()}`);
  }
}

export const bridgeName = (id: string) => `bu${id}`;
export const hostVethName = (id: string, index: number) => `bu${id}-${index}`;
export const nodeNetnsName = (id: string, node: string) => `berth-${id}-${node}`;
export const NETNS_DIR = '/run/netns';

export interface Underlay {
  id: string;
  bridge: string;
  /** e.g. 10.250.17.0/24 */
  cidr: string;
  /** The host's (control plane's) address on the bridge. */
  hostIp: string;
}

export interface NodeNet {
  name: string;
  index: number;
  netns: string;
  netnsPath: string;
  ip: string;
  hostVeth: string;
}

/** The private /24s already routed on the host (other clusters, other tests): never reused. */
function usedSubnets(): Set<string> {
  const used = new Set<string>();
  for (const line of ip(['-4', '-o', 'addr', 'show']).split('\n')) {
    const m = / inet (10\.250\.\d+)\.\d+\//.exec(line);
    if (m) used.add(m[1]);
  }
  for (const line of ip(['-4', 'route', 'show']).split('\n')) {
    const m = /^(10\.250\.\d+)\.\d+/.exec(line);
    if (m) used.add(m[1]);
  }
  return used;
}

/**
 * Picks the underlay /24 inside 10.250.0.0/16: the one the run id hashes to, or the next free one
 * (a range no interface or route on the host uses).
 */
export function planUnderlay(id: string, requested?: string): Underlay {
  if (requested) {
    const m = /^(\d+\.\d+\.\d+)\.0\/24$/.exec(requested);
    if (!m || m[1].split('.').some((o) => Number(o) > 255)) throw new Error(`--underlay-cidr: expected a /24 such as 10.250.7.0/24, got "${requested}"`);
    if (!/^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(requested)) throw new Error(`--underlay-cidr: ${requested} is not a private (RFC 1918) range`);
    if (usedSubnets().has(m[1])) throw new Error(`--underlay-cidr: ${requested} is already used by an interface or route on this host`);
    return { id, bridge: bridgeName(id), cidr: requested, hostIp: `${m[1]}.1` };
  }
  const used = usedSubnets();
  const start = parseInt(id.slice(0, 4), 16) % 250;
  for (let k = 0; k < 250; k++) {
    const third = (start + k) % 250;
    const net = `10.250.${third}`;
    if (!used.has(net)) return { id, bridge: bridgeName(id), cidr: `${net}.0/24`, hostIp: `${net}.1` };
  }
  throw new Error('no free /24 left in 10.250.0.0/16 for the underlay; pass --underlay-cidr');
}

export function nodeIp(u: Underlay, index: number): string {
  return `${u.cidr.split('.').slice(0, 3).join('.')}.${10 + index}`;
}

/** Creates the bridge with the control plane's address. */
export function createUnderlay(u: Underlay): void {
  ip(['link', 'add', u.bridge, 'type', 'bridge']);
  ip(['addr', 'add', `${u.hostIp}/24`, 'dev', u.bridge]);
  ip(['link', 'set', u.bridge, 'up']);
}

/** A node's namespace, plugged into the underlay as eth0 with its address. No default route. */
export function createNodeNet(u: Underlay, node: string, index: number): NodeNet {
  const netns = nodeNetnsName(u.id, node);
  const hostVeth = hostVethName(u.id, index);
  const addr = nodeIp(u, index);
  ip(['netns', 'add', netns]);
  ip(['-n', netns, 'link', 'set', 'lo', 'up']);
  ip(['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  ip(['link', 'set', hostVeth, 'master', u.bridge, 'up']);
  ip(['-n', netns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
  ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
  // No route for routed mode's 169.254.1.1 here: cni-manager adds one itself when the node has
  // nothing that routes it (this node has no default route: nothing may leave the machine).
  return { name: node, index, netns, netnsPath: path.join(NETNS_DIR, netns), ip: addr, hostVeth };
}

/** Sets a node's underlay link down or up (its "cable"). */
export function setNodeLink(n: NodeNet, up: boolean): void {
  ip(['link', 'set', n.hostVeth, up ? 'up' : 'down']);
}

/** The node namespaces and links of run `id` that exist now (for clean-up and leak checks). */
export function leftoverNetwork(id: string): { netns: string[]; links: string[] } {
  let netns: string[] = [];
  try { netns = fs.readdirSync(NETNS_DIR).filter((n) => n.startsWith(`berth-${id}-`)); } catch { /* no /run/netns */ }
  const links = ip(['-o', 'link', 'show']).split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => !!n && n.startsWith(`bu${id}`));
  return { netns, links };
}

/**
 * Deletes everything run `id` made on the network: the node namespaces (with every pod link,
 * route, address and iptables rule made inside them) and the bridge with its veths. Processes
 * still inside a namespace only keep it alive unnamed until they exit; callers stop them first.
 */
export function deleteNetwork(id: string): string[] {
  const errors: string[] = [];
  const { netns, links } = leftoverNetwork(id);
  for (const ns of netns) {
    try { ip(['netns', 'delete', ns]); } catch (e) { errors.push((e as Error).message); }
  }
  for (const l of links) {
    try { ip(['link', 'delete', l]); } catch (e) {
      // A veth vanishes with its peer's namespace; only a link that is still there is an error.
      if (!/Cannot find device/.test((e as Error).message)) errors.push((e as Error).message);
    }
  }
  return errors;
}
