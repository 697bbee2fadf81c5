// `npm run bench -- etcd [--seconds S] [--rounds R] [--concurrency 1,16,64] [--ops put,get,get-quorum]
//                        [--subjects berth-v2,raw-http,...]`
// Put and get throughput and p50/p99 latency against one etcd started by the harness, for
// Berth's EtcdV2Client and EtcdV3Client, npm `node-etcd` (v2) and `etcd3` (v3), and four
// baselines that do no client work at all: raw keep-alive HTTP/1.1 through node:http (the
// issue's floor), ready-made HTTP/1.1 requests on plain sockets (a lower floor), raw
// HTTP/2 gRPC requests with pre-encoded bodies (node:http2, the floor of a gRPC client) and
// @grpc/grpc-js with the same pre-encoded bodies. Like is compared with like: v2 plain reads with
// v3 serializable reads, v2 quorum reads with v3 linearizable reads.
// Every case runs once per round for every subject. A shared 2-core machine drifts by 2-3x within
// seconds (etcd's own CPU per request swings as much as the throughput), so a comparison is made
// inside each round: subjects run back to back, each next to the one it is compared with, in
// forward order in even rounds and reverse order in odd ones (A B B A ...), and the median of the
// per-round ratios is reported beside the ratio of the medians. Before each subject the bench
// process is garbage-collected and etcd is let go idle, so no subject is billed for another's
// leftovers. Client CPU and etcd CPU per operation are reported too: the first is the client's
// own cost, the second shows how much of a throughput swing was the server's.
import * as diagnostics from 'node:diagnostics_channel';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Client as GrpcClient, credentials } from '@grpc/grpc-js';
import { EtcdCluster } from '@berth/common';
import { Etcd3 } from 'etcd3';
import { EtcdV2Client } from '../v2/client';
import { V2_MAX_SOCKETS } from '../v2/transport';
import { EtcdV3Client } from '../v3/client';
import { KVService, PutRequest, RangeRequest } from '../gen/etcdserverpb/rpc';

// node-etcd ships no types.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const NodeEtcd = require('node-etcd') as new (hosts: string[]) => {
  set(k: string, v: string, cb: (e: Error | null) => void): void;
  get(k: string, o: Record<string, unknown>, cb: (e: Error | null, body?: unknown) => void): void;
};

type OpKind = 'put' | 'get' | 'get-quorum';
interface Subject {
  name: string;
  api: 'v2' | 'v3';
  floor: boolean;
  ops: Record<OpKind, (key: string, value: string) => Promise<unknown>>;
  close(): void;
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}
const SECONDS = Number(arg('seconds', '0.5'));
const ROUNDS = Number(arg('rounds', '7'));
const CONCURRENCY = arg('concurrency', '1,16,64').split(',').map(Number);
const KINDS = arg('ops', 'put,get,get-quorum').split(',') as OpKind[];
const ONLY = arg('subjects', '').split(',').filter(Boolean);
const KEYS = 1000;
const VALUE = 'v'.repeat(256);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function rawHttp(endpoint: string): Subject {
  const u = new URL(endpoint);
  // The same pool as EtcdV2Client's (size, free-socket limit, LIFO reuse): the floor differs
  // from the client only in the work it leaves out.
  const agent = new http.Agent({ keepAlive: true, maxSockets: V2_MAX_SOCKETS, maxFreeSockets: V2_MAX_SOCKETS, scheduling: 'lifo' });
  const req = (method: string, p: string, body?: string) => new Promise<unknown>((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = body ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } : {};
    const r = http.request({ host: u.hostname, port: u.port, method, path: p, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if ((res.statusCode ?? 0) >= 300) reject(new Error(text));
        else resolve(JSON.parse(text));
      });
    });
    r.on('error', reject);
    r.end(body);
  });
  return {
    name: 'raw-http', api: 'v2', floor: true,
    ops: {
      put: (k, v) => req('PUT', `/v2/keys${k}`, `value=${v}`),
      get: (k) => req('GET', `/v2/keys${k}`),
      'get-quorum': (k) => req('GET', `/v2/keys${k}?quorum=true`),
    },
    close: () => agent.destroy(),
  };
}

/**
 * A lower floor for any HTTP/1.1 client in Node: requests written as ready-made strings on 64
 * keep-alive sockets, answers framed by Content-Length alone (etcd always sends it for these)
 * and the body JSON-parsed, as raw-http does. It shows how much of raw-http is node:http itself.
 */
function rawTcp(endpoint: string): Subject {
  const u = new URL(endpoint);
  const host = `Host: ${u.host}\r\n`;
  const free: net.Socket[] = [];
  const all = new Set<net.Socket>();
  const waiting: Array<(s: net.Socket) => void> = [];
  const getSocket = (): Promise<net.Socket> => {
    const s = free.pop();
    if (s) return Promise.resolve(s);
    if (all.size < 64) {
      const c = net.connect({ host: u.hostname, port: Number(u.port) });
      c.setNoDelay(true);
      all.add(c);
      c.on('close', () => all.delete(c));
      return new Promise((resolve) => c.once('connect', () => resolve(c)));
    }
    return new Promise((resolve) => waiting.push(resolve));
  };
  const put = (s: net.Socket) => { const w = waiting.shift(); if (w) w(s); else free.push(s); };
  const req = async (text: string) => {
    const s = await getSocket();
    return new Promise<unknown>((resolve, reject) => {
      let buf: Buffer = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        buf = buf.length ? Buffer.concat([buf, d]) : d;
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end);
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
        if (!(len >= 0)) { s.destroy(); reject(new Error('no content-length')); return; }
        if (buf.length < end + 4 + len) return;
        s.off('data', onData);
        s.off('error', reject);
        put(s);
        const status = Number(head.slice(9, 12));
        const body = buf.toString('utf8', end + 4, end + 4 + len);
        if (status >= 300) reject(new Error(body)); else resolve(JSON.parse(body));
      };
      s.on('data', onData);
      s.on('error', reject);
      s.write(text);
    });
  };
  return {
    name: 'raw-tcp', api: 'v2', floor: true,
    ops: {
      put: (k, v) => { const b = `value=${v}`; return req(`PUT /v2/keys${k} HTTP/1.1\r\n${host}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${b.length}\r\n\r\n${b}`); },
      get: (k) => req(`GET /v2/keys${k} HTTP/1.1\r\n${host}\r\n`),
      'get-quorum': (k) => req(`GET /v2/keys${k}?quorum=true HTTP/1.1\r\n${host}\r\n`),
    },
    close: () => { for (const s of all) s.destroy(); },
  };
}

/** The three v3 requests of the benchmark, encoded once per key. */
function preEncoded(): Record<OpKind, (k: string, v: string) => Buffer> {
  const gets = new Map<string, Buffer>(), sgets = new Map<string, Buffer>(), puts = new Map<string, Buffer>();
  const enc = (m: Map<string, Buffer>, k: string, f: () => Buffer) => { let b = m.get(k); if (!b) { b = f(); m.set(k, b); } return b; };
  return {
    put: (k, v) => enc(puts, k, () => Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key: Buffer.from(k), value: Buffer.from(v) })).finish())),
    get: (k) => enc(sgets, k, () => Buffer.from(RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from(k), serializable: true })).finish())),
    'get-quorum': (k) => enc(gets, k, () => Buffer.from(RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from(k) })).finish())),
  };
}
const PATHS: Record<OpKind, string> = { put: KVService.put.path, get: KVService.range.path, 'get-quorum': KVService.range.path };

/** @grpc/grpc-js with pre-encoded requests: what any client built on grpc-js pays at least. */
function grpcJs(endpoint: string): Subject {
  const u = new URL(endpoint);
  const client = new GrpcClient(`${u.hostname}:${u.port}`, credentials.createInsecure());
  const id = (b: Buffer) => b;
  const call = (p: string, req: Buffer) => new Promise<Buffer>((resolve, reject) => {
    client.makeUnaryRequest(p, id, id, req, (err, res) => (err ? reject(err) : resolve(res!)));
  });
  const enc = preEncoded();
  const op = (kind: OpKind) => (k: string, v: string) => call(PATHS[kind], enc[kind](k, v));
  return { name: 'grpc-js', api: 'v3', floor: true, ops: { put: op('put'), get: op('get'), 'get-quorum': op('get-quorum') }, close: () => client.close() };
}

/** Bare gRPC over node:http2 with pre-encoded requests, status only checked: a gRPC floor. */
function rawH2(endpoint: string): Subject {
  const session = http2.connect(endpoint);
  const call = (p: string, req: Buffer) => new Promise<void>((resolve, reject) => {
    const s = session.request({ ':method': 'POST', ':path': p, 'content-type': 'application/grpc', te: 'trailers' });
    let status: string | undefined;
    s.on('trailers', (t) => { status = t['grpc-status'] as string; });
    s.on('response', (h) => { status ??= h['grpc-status'] as string | undefined; });
    s.on('data', () => undefined);
    s.on('error', reject);
    s.on('close', () => (status === '0' ? resolve() : reject(new Error(`grpc-status ${status}`))));
    const framed = Buffer.allocUnsafe(5 + req.length);
    framed[0] = 0;
    framed.writeUInt32BE(req.length, 1);
    req.copy(framed, 5);
    s.end(framed);
  });
  const enc = preEncoded();
  const op = (kind: OpKind) => (k: string, v: string) => call(PATHS[kind], enc[kind](k, v));
  return { name: 'raw-h2', api: 'v3', floor: true, ops: { put: op('put'), get: op('get'), 'get-quorum': op('get-quorum') }, close: () => session.close() };
}

/** In run order: each subject sits next to the one it is compared with (see PAIRS). */
function subjects(endpoint: string): Subject[] {
  const v2 = new EtcdV2Client({ endpoints: [endpoint] });
  const v3 = new EtcdV3Client({ endpoints: [endpoint] });
  const ne = new NodeEtcd([endpoint.replace(/^http:\/\//, '')]);
  const e3 = new Etcd3({ hosts: endpoint });
  const cb = (f: (done: (e: Error | null) => void) => void) => new Promise<void>((res, rej) => f((e) => (e ? rej(e) : res())));
  return [
    {
      name: 'node-etcd', api: 'v2', floor: false,
      ops: {
        put: (k, v) => cb((d) => ne.set(k, v, d)),
        get: (k) => cb((d) => ne.get(k, {}, d)),
        'get-quorum': (k) => cb((d) => ne.get(k, { quorum: true }, d)),
      },
      close: () => undefined,
    },
    {
      name: 'berth-v2', api: 'v2', floor: false,
      ops: { put: (k, v) => v2.set(k, v), get: (k) => v2.get(k), 'get-quorum': (k) => v2.get(k, { quorum: true }) },
      close: () => v2.close(),
    },
    rawHttp(endpoint),
    rawTcp(endpoint),
    rawH2(endpoint),
    {
      name: 'berth-v3', api: 'v3', floor: false,
      ops: { put: (k, v) => v3.put(k, v), get: (k) => v3.get(k, { serializable: true }), 'get-quorum': (k) => v3.get(k) },
      close: () => v3.close(),
    },
    {
      name: 'etcd3', api: 'v3', floor: false,
      ops: { put: (k, v) => e3.put(k).value(v).exec(), get: (k) => e3.get(k).serializable(true).buffer(), 'get-quorum': (k) => e3.get(k).buffer() },
      close: () => e3.close(),
    },
    grpcJs(endpoint),
  ];
}

/** Subject / what it is compared with. */
const PAIRS: [string, string][] = [['berth-v3', 'etcd3'], ['berth-v2', 'node-etcd'], ['berth-v2', 'raw-http'], ['berth-v2', 'raw-tcp'], ['berth-v3', 'raw-http'], ['berth-v3', 'raw-h2']];

interface CaseResult { opsPerSec: number; latMs: Float64Array; errors: number; cpuUsPerOp: number; etcdCpuUsPerOp: number; connections: number }

/** CPU time of every thread of a process, µs (schedstat: ns, finer than stat's 10 ms ticks). */
function processCpuUs(pid: number): number {
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try { ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch { /* thread ended */ }
  }
  return ns / 1000;
}

// A full GC before each subject, so none pays for the garbage of the one before (node-etcd makes
// several times more than the others). The flag can be set at run time; the function is then
// reachable from a new context.
v8.setFlagsFromString('--expose-gc');
const fullGc = vm.runInNewContext('gc') as () => void;

/**
 * Starts every subject on an idle etcd: after a subject, etcd may still be closing its
 * connections (node-etcd opens one per request) or collecting its garbage, which would be
 * billed to whoever runs next. Waits until etcd uses under 10 % of a core over 50 ms (1 s at most).
 */
async function settle(etcdPid: number): Promise<void> {
  fullGc();
  const deadline = Date.now() + 1000;
  for (;;) {
    const c0 = processCpuUs(etcdPid);
    await new Promise((r) => setTimeout(r, 50));
    if (processCpuUs(etcdPid) - c0 < 5000 || Date.now() > deadline) return;
  }
}

// Every TCP connection the process opens (http agents, http2 sessions and grpc-js all go through
// net): counted per case, so it shows how many each client opened and that keep-alive held.
let connectionsOpened = 0;
diagnostics.subscribe('net.client.socket', () => { connectionsOpened++; });

async function runCase(fn: (k: string, v: string) => Promise<unknown>, concurrency: number, seconds: number, etcdPid: number): Promise<CaseResult> {
  const lat: number[] = [];
  let errors = 0;
  let seq = 0;
  const conn0 = connectionsOpened;
  const etcd0 = processCpuUs(etcdPid);
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (process.hrtime.bigint() < end) {
      const k = `/bench/k${(seq++ * 7919) % KEYS}`;
      const t0 = process.hrtime.bigint();
      try {
        await fn(k, VALUE);
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      } catch {
        errors++;
      }
    }
  }));
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const n = Math.max(1, lat.length);
  return { opsPerSec: lat.length / elapsed, latMs: Float64Array.from(lat), errors, cpuUsPerOp: (cpu.user + cpu.system) / n, etcdCpuUsPerOp: (processCpuUs(etcdPid) - etcd0) / n, connections: connectionsOpened - conn0 };
}

interface Row {
  op: OpKind; concurrency: number; subject: string;
  /** Medians over rounds; p50/p99 over the latencies of all rounds together. */
  opsPerSec: number; p50Ms: number; p99Ms: number; cpuUsPerOp: number; etcdCpuUsPerOp: number;
  errors: number; connections: number; rounds: number[];
}
interface Ratio {
  op: OpKind; concurrency: number; subject: string; versus: string;
  /** Ratio of the median throughputs. */
  ratio: number;
  /** Median of the ratios measured within each round (subjects run back to back). */
  roundRatio: number; roundMin: number; roundMax: number; roundRatios: number[];
  /** Client CPU per operation, subject / versus. */
  cpuRatio: number;
}

async function main(): Promise<void> {
  const dataRoot = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'berth-etcd-bench-'));
  const etcd = await EtcdCluster.start({ dataRoot, removeDataOnDestroy: true, enableV2: true });
  const endpoint = etcd.endpoints[0];
  const etcdPid = etcd.memberInfo[0].pid!;
  // Other work on a shared machine adds noise: raise this process and etcd above it (best
  // effort, root only). Every subject gets the same treatment, so the ratios stay fair.
  for (const pid of [process.pid, etcdPid]) {
    try { os.setPriority(pid, -10); } catch { /* not permitted: measure as is */ }
  }
  const all = subjects(endpoint);
  for (const name of ONLY) if (!all.some((s) => s.name === name)) throw new Error(`--subjects: unknown subject ${name} (known: ${all.map((s) => s.name).join(', ')})`);
  for (const k of KINDS) if (!['put', 'get', 'get-quorum'].includes(k)) throw new Error(`--ops: unknown op ${k} (known: put, get, get-quorum)`);
  if (!(SECONDS > 0) || !(ROUNDS >= 1) || CONCURRENCY.some((c) => !(Number.isInteger(c) && c > 0))) throw new Error('--seconds, --rounds and --concurrency must be positive numbers');
  const subs = ONLY.length ? all.filter((s) => ONLY.includes(s.name)) : all;
  try {
    // Preload both key spaces (v2 store and v3 MVCC are separate in etcd 3.4) with clients of
    // their own, so every subject starts with no connection and opens all it uses.
    const v2 = new EtcdV2Client({ endpoints: [endpoint] }), v3 = new EtcdV3Client({ endpoints: [endpoint] });
    const version = await v2.version();
    try {
      for (let i = 0; i < KEYS; i += 50) {
        await Promise.all(Array.from({ length: 50 }, (_, j) => Promise.all([v2.set(`/bench/k${i + j}`, VALUE), v3.put(`/bench/k${i + j}`, VALUE)])));
      }
    } finally {
      v2.close();
      v3.close();
    }
    const connectionsBefore = connectionsOpened;
    const load0 = os.loadavg();
    console.log(`etcd ${version.etcdserver} at ${endpoint} (data on ${dataRoot}); node ${process.version}; ${os.cpus().length} cpus; load ${load0.map((l) => l.toFixed(1)).join(' ')}`);
    console.log(`${ROUNDS} rounds x ${SECONDS}s per case (order A..Z, Z..A, ...), concurrency ${CONCURRENCY.join('/')}, ${KEYS} keys, ${VALUE.length}-byte values\n`);
    const raw: Record<string, CaseResult[]> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const kind of KINDS) {
        for (const conc of CONCURRENCY) {
          const order = round % 2 ? [...subs].reverse() : subs;
          for (const s of order) {
            // Warm-up: the JIT and the connections in the first round; after that it fills
            // the pipeline again.
            await settle(etcdPid);
            const warm = await runCase(s.ops[kind], conc, round === 0 ? 0.3 : 0.1, etcdPid);
            const r = await runCase(s.ops[kind], conc, SECONDS, etcdPid);
            r.connections += warm.connections;
            (raw[`${kind}|${conc}|${s.name}`] ??= []).push(r);
          }
        }
      }
      process.stderr.write(`round ${round + 1}/${ROUNDS} done (load ${os.loadavg()[0].toFixed(1)})\n`);
    }
    const results: Row[] = [];
    for (const kind of KINDS) for (const conc of CONCURRENCY) for (const s of subs) {
      const rs = raw[`${kind}|${conc}|${s.name}`];
      const lat = new Float64Array(rs.reduce((a, r) => a + r.latMs.length, 0));
      let off = 0;
      for (const r of rs) { lat.set(r.latMs, off); off += r.latMs.length; }
      lat.sort();
      results.push({
        op: kind, concurrency: conc, subject: s.name,
        opsPerSec: median(rs.map((r) => r.opsPerSec)), p50Ms: percentile(lat, 0.5), p99Ms: percentile(lat, 0.99),
        cpuUsPerOp: median(rs.map((r) => r.cpuUsPerOp)), etcdCpuUsPerOp: median(rs.map((r) => r.etcdCpuUsPerOp)),
        errors: rs.reduce((a, r) => a + r.errors, 0), connections: rs.reduce((a, r) => a + r.connections, 0), rounds: rs.map((r) => Math.round(r.opsPerSec)),
      });
    }
    const get = (op: OpKind, c: number, s: string) => results.find((r) => r.op === op && r.concurrency === c && r.subject === s);
    const label: Record<OpKind, string> = { put: 'put', get: 'get (v2 plain / v3 serializable)', 'get-quorum': 'get (v2 quorum / v3 linearizable)' };
    const pairs = PAIRS.filter(([a, b]) => subs.some((s) => s.name === a) && subs.some((s) => s.name === b));
    const ratios: Ratio[] = [];
    for (const kind of KINDS) for (const c of CONCURRENCY) for (const [a, b] of pairs) {
      const ra = raw[`${kind}|${c}|${a}`], rb = raw[`${kind}|${c}|${b}`];
      const per = ra.map((r, i) => r.opsPerSec / rb[i].opsPerSec);
      ratios.push({
        op: kind, concurrency: c, subject: a, versus: b,
        ratio: get(kind, c, a)!.opsPerSec / get(kind, c, b)!.opsPerSec,
        roundRatio: median(per), roundMin: Math.min(...per), roundMax: Math.max(...per), roundRatios: per.map((x) => Number(x.toFixed(3))),
        cpuRatio: get(kind, c, a)!.cpuUsPerOp / get(kind, c, b)!.cpuUsPerOp,
      });
    }
    const ratioOf = (op: OpKind, c: number, a: string, b: string) => ratios.find((r) => r.op === op && r.concurrency === c && r.subject === a && r.versus === b)!;

    const lines: string[] = [];
    lines.push('| op | conc | ' + subs.map((s) => s.name).join(' | ') + ' | ' + pairs.map(([a, b]) => `${a}/${b}`).join(' | ') + ' |');
    lines.push('|---|---:|' + subs.map(() => '---:').join('|') + '|' + pairs.map(() => '---:').join('|') + '|');
    for (const kind of KINDS) for (const c of CONCURRENCY) {
      const cells = subs.map((s) => { const r = get(kind, c, s.name)!; return `${Math.round(r.opsPerSec)}/s ${r.p50Ms.toFixed(2)}/${r.p99Ms.toFixed(2)} ms${r.errors ? ` (${r.errors} err)` : ''}`; });
      lines.push(`| ${label[kind]} | ${c} | ${cells.join(' | ')} | ${pairs.map(([a, b]) => `${ratioOf(kind, c, a, b).ratio.toFixed(2)}x`).join(' | ')} |`);
    }
    const roundLines = ['| op | conc | ' + pairs.map(([a, b]) => `${a}/${b}`).join(' | ') + ' |', '|---|---:|' + pairs.map(() => '---:').join('|') + '|'];
    for (const kind of KINDS) for (const c of CONCURRENCY) {
      roundLines.push(`| ${label[kind]} | ${c} | ${pairs.map(([a, b]) => { const r = ratioOf(kind, c, a, b); return `${r.roundRatio.toFixed(2)}x [${r.roundMin.toFixed(2)}-${r.roundMax.toFixed(2)}]`; }).join(' | ')} |`);
    }
    const cpuLines = ['| op | conc | ' + subs.map((s) => s.name).join(' | ') + ' |', '|---|---:|' + subs.map(() => '---:').join('|') + '|'];
    for (const kind of KINDS) for (const c of CONCURRENCY) {
      cpuLines.push(`| ${label[kind]} | ${c} | ${subs.map((s) => { const r = get(kind, c, s.name)!; return `${Math.round(r.cpuUsPerOp)} / ${Math.round(r.etcdCpuUsPerOp)} µs`; }).join(' | ')} |`);
    }
    const connLine = `connections opened during the runs (warm-ups included): ${subs.map((s) => `${s.name} ${results.filter((r) => r.subject === s.name).reduce((a, r) => a + r.connections, 0)}`).join(', ')}; `
      + `before them: ${connectionsBefore} (the preload clients; raw-h2 and grpc-js connect when created)`;
    console.log('throughput (median ops/s over rounds) and latency p50/p99 (all rounds); ratios of the median throughputs\n');
    console.log(lines.join('\n'));
    console.log('\nthroughput ratio measured within each round (back to back): median [min-max] over rounds\n');
    console.log(roundLines.join('\n'));
    console.log('\nCPU per operation (median over rounds, user+system): the client / etcd\n');
    console.log(cpuLines.join('\n'));
    console.log(`\n${connLine}; load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    const table = [...lines, '', ...roundLines, '', ...cpuLines, '', connLine].join('\n');
    const out = process.env.BERTH_BENCH_RESULTS ?? path.resolve(__dirname, '..', '..', '..', '..', 'bench', 'results');
    fs.mkdirSync(out, { recursive: true });
    const file = path.join(out, `etcd-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    fs.writeFileSync(file, JSON.stringify({ bench: 'etcd', date: new Date().toISOString(), etcd: version, node: process.version, cpus: os.cpus().length, loadBefore: load0, loadAfter: os.loadavg(), seconds: SECONDS, rounds: ROUNDS, keys: KEYS, valueBytes: VALUE.length, order: subs.map((s) => s.name), results, ratios, table }, null, 2));
    console.log(`\nresults: ${file}`);
  } finally {
    for (const s of all) s.close();
    await etcd.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
