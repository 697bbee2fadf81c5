// Test and benchmark fixtures: network namespaces standing in for nodes and pods, an underlay
// bridge joining the nodes, and programs run inside a namespace. Everything is named with a
// per-run random suffix and removed by `destroy()`. Traffic stays between these namespaces.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';

export const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

export interface TestNode {
  name: string;
  netns: string;
  /** Address on the underlay. */
  address: string;
  podCidr: string;
}

export class Topology {
  readonly id = randomBytes(3).toString('hex');
  private readonly namespaces: string[] = [];
  private readonly procs: ChildProcess[] = [];
  private underlay?: string;
  /** Third octet of the underlay subnet, random per run. */
  readonly subnet = 100 + (parseInt(this.id.slice(0, 2), 16) % 100);

  /** A fresh, empty network namespace; returns its name. */
  netns(role: string): string {
    const name = `bt${role}-${this.id}-${this.namespaces.length}`;
    sh('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /**
   * A "node": its own namespace with address 192.168.<subnet>.<n> (and `address6`/64 when given) on an underlay bridge (in a
   * namespace of its own), and a default route into the underlay, as a real node has, unless
   * `defaultRoute: false` (a node that must not send anything out, as `berth up`'s nodes).
   */
  node(n: number, podCidr: string, address6?: string, o: { defaultRoute?: boolean } = {}): TestNode {
    if (!this.underlay) {
      this.underlay = this.netns('u');
      sh('ip', ['-n', this.underlay, 'link', 'add', 'ul0', 'type', 'bridge']);
      sh('ip', ['-n', this.underlay, 'link', 'set', 'ul0', 'up']);
    }
    const name = this.netns(`n${n}`);
    const address = `192.168.${this.subnet}.${n}`;
    sh('ip', ['-n', name, 'link', 'add', 'ul', 'type', 'veth', 'peer', 'name', `n${n}`, 'netns', this.underlay]);
    sh('ip', ['-n', this.underlay, 'link', 'set', `n${n}`, 'master', 'ul0', 'up']);
    sh('ip', ['-n', name, 'addr', 'add', `${address}/24`, 'dev', 'ul']);
    // An IPv6 underlay address too, without DAD (it would keep the address tentative for a second).
    if (address6) sh('ip', ['-n', name, 'addr', 'add', `${address6}/64`, 'dev', 'ul', 'nodad']);
    sh('ip', ['-n', name, 'link', 'set', 'ul', 'up']);
    if (o.defaultRoute !== false) sh('ip', ['-n', name, 'route', 'add', 'default', 'via', `192.168.${this.subnet}.254`]);
    return { name, netns: netnsPath(name), address, podCidr };
  }

  /** Runs a long-lived program in a namespace; killed by destroy(). */
  spawnIn(ns: string, cmd: string, args: string[]): ChildProcess {
    const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(p);
    return p;
  }

  destroy(): void {
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const n of this.namespaces.reverse()) {
      try { sh('ip', ['netns', 'del', n]); } catch { /* already gone */ }
    }
    for (const n of this.namespaces) if (fs.existsSync(netnsPath(n))) throw new Error(`netns ${n} was not removed`);
  }
}

const SERVER = `
const net = require('net'), dgram = require('dgram');
const [port, name] = [Number(process.argv[1]), process.argv[2]];
// "who?" is answered with the address the connection came from (to see masquerade).
net.createServer((s) => { s.on('data', (d) => s.write(name + ':' + (String(d) === 'who?' ? String(s.remoteAddress).replace(/^::ffff:/, '') : d))); s.on('error', () => {}); }).listen(port, () => {
  const echo = function (m, r) { this.send(name + ':' + m, r.port, r.address); };
  dgram.createSocket({ type: 'udp6', ipv6Only: true }).on('message', echo).on('error', () => {}).bind(port);
  dgram.createSocket('udp4').on('message', echo).bind(port, () => console.log('ready'));
});`;

/** A TCP+UDP echo server (replies "<name>:<data>") in `ns`; resolves once it listens. */
export async function startEchoServer(topo: Topology, ns: string, port: number, name: string): Promise<ChildProcess> {
  const p = topo.spawnIn(ns, process.execPath, ['-e', SERVER, String(port), name]);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('ready')) resolve(); });
    p.once('exit', (code) => reject(new Error(`echo server in ${ns} exited ${code}`)));
  });
  return p;
}

const CLIENT = `
const net = require('net'), dgram = require('dgram');
const [proto, host, port, msg, srcPort] = process.argv.slice(1);
const t = setTimeout(() => { console.log('TIMEOUT'); process.exit(0); }, 1500);
if (proto === 'tcp') {
  const s = net.connect(Number(port), host, () => s.write(msg));
  s.on('data', (d) => { console.log(String(d)); clearTimeout(t); s.destroy(); });
  s.on('error', (e) => { console.log('ERROR ' + e.code); clearTimeout(t); });
} else {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.on('message', (m) => { console.log(String(m)); clearTimeout(t); s.close(); });
  s.bind(Number(srcPort) || 0, () => s.send(msg, Number(port), host));
}`;

/** Sends `msg` over TCP or UDP from inside `ns`; resolves with the reply, or 'TIMEOUT' / 'ERROR <code>'. */
export function probe(ns: string, proto: 'tcp' | 'udp', host: string, port: number, msg = 'hi', srcPort = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', ns, process.execPath, '-e', CLIENT, proto, host, String(port), msg, String(srcPort)], { encoding: 'utf8', timeout: 10_000 }, (err, stdout) => {
      if (err) reject(err);
      else resolve(stdout.trim());
    });
  });
}

const SINK = `
const net = require('net'), dgram = require('dgram');
const [port] = [Number(process.argv[1])];
net.createServer((s) => { let n = 0; s.on('data', (d) => { n += d.length; }); s.on('end', () => s.end(String(n))); s.on('error', () => {}); }).listen(port, () => {
  let udp = 0; const count = function (m, r) { if (String(m) === 'count?') this.send(String(udp), r.port, r.address); else udp++; };
  dgram.createSocket({ type: 'udp6', ipv6Only: true }).on('message', count).on('error', () => {}).bind(port);
  dgram.createSocket('udp4').on('message', count).bind(port, () => console.log('ready'));
});`;

/** A TCP byte sink (answers the byte count at end) and UDP datagram counter ("count?") in `ns`. */
export async function startSink(topo: Topology, ns: string, port: number): Promise<void> {
  const p = topo.spawnIn(ns, process.execPath, ['-e', SINK, String(port)]);
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
    p.once('exit', (code) => reject(new Error(`sink in ${ns} exited ${code}`)));
  });
}

const SEND = `
const net = require('net'), dgram = require('dgram');
const [proto, host, port, amount] = process.argv.slice(1);
if (proto === 'tcp') {
  const t0 = process.hrtime.bigint();
  const s = net.connect(Number(port), host, () => { s.end(Buffer.alloc(Number(amount), 120)); });
  let reply = ''; s.on('data', (d) => (reply += d));
  s.on('close', () => console.log(JSON.stringify({ seconds: Number(process.hrtime.bigint() - t0) / 1e9, received: Number(reply) })));
} else {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4'); let i = 0;
  // The count query may itself be dropped by a loss fault: ask until answered.
  const ask = () => { s.send('count?', Number(port), host); timer = setTimeout(ask, 200); };
  let timer;
  s.on('message', (m) => { clearTimeout(timer); console.log(JSON.stringify({ received: Number(String(m)) })); s.close(); });
  const next = () => { if (i++ < Number(amount)) s.send('x', Number(port), host, () => setTimeout(next, 2)); else setTimeout(ask, 300); };
  next();
}`;

/** TCP: seconds to push `amount` bytes (and bytes the sink got); UDP: datagrams of `amount` the sink counted. */
export function send(ns: string, proto: 'tcp' | 'udp', host: string, port: number, amount: number): Promise<{ seconds?: number; received: number }> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', ns, process.execPath, '-e', SEND, proto, host, String(port), String(amount)], { encoding: 'utf8', timeout: 30_000 }, (err, stdout) => {
      if (err) reject(err);
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as { seconds?: number; received: number });
    });
  });
}
