// `npm run bench -- store [--seconds S] [--rounds R] [--concurrency C] [--watchers W] [--updates U]`
// The cost of the cluster state API over the etcd-client library alone, in the same run:
// create / get / list throughput and latency through berth-etcd-client's gRPC API with mutual
// TLS on (a real process, a real etcd), against the same operations done with EtcdV3Client
// directly (same keys, same protobuf payload); then watch fan-out: W watchers of the Store vs
// W etcd watchers, U pod updates, delivery latency p50/p99 from the start of each update to
// its arrival at each watcher.
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core, store } from '@berth/api';
import { StoreClient, decodeObject } from '@berth/apimachinery';
import { EtcdCluster, freePort, makeTestPki, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { EtcdV3Client } from '../v3';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}
const SECONDS = Number(arg('seconds', '1'));
const ROUNDS = Number(arg('rounds', '3'));
const CONC = Number(arg('concurrency', '16'));
const WATCHERS = Number(arg('watchers', '100'));
const UPDATES = Number(arg('updates', '10000'));
const LIST_ITEMS = 100;

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const pct = (sorted: Float64Array | number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

interface Subject {
  name: string;
  create(i: number): Promise<unknown>;
  get(i: number): Promise<unknown>;
  list(): Promise<unknown>;
}

function pod(name: string, ns = 'bench'): core.Object {
  return decodeObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels: { app: 'bench' } }, spec: { containers: [{ name: 'c', image: 'busybox:1.36', resources: { requests: { cpu: '10m', memory: '16Mi' } } }] } });
}

async function measure(fn: (i: number) => Promise<unknown>, seconds: number, conc: number, start: { n: number }): Promise<{ ops: number; p50: number; p99: number }> {
  const lat: number[] = [];
  const until = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (performance.now() < until) {
      const t = performance.now();
      await fn(start.n++);
      lat.push(performance.now() - t);
      done++;
    }
  }));
  lat.sort((a, b) => a - b);
  return { ops: done / seconds, p50: pct(lat, 0.5), p99: pct(lat, 0.99) };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-store-bench-'));
  let etcd: EtcdCluster | undefined;
  let svc: ServiceProcess | undefined;
  const closers: (() => void)[] = [];
  try {
    etcd = await EtcdCluster.start({ dataRoot: path.join(dir, 'etcd'), removeDataOnDestroy: true });
    const pki = makeTestPki(path.join(dir, 'pki'), 'bench-admin', 'system:masters');
    const port = await freePort();
    const bin = path.resolve(__dirname, '..', 'bin', 'berth-etcd-client.js');
    svc = startServiceProcess(bin, ['--listen', `unix://${path.join(dir, 'etcd-client.sock')}`, '--state-dir', path.join(dir, 'state'), '--log-level', 'warn',
      '--etcd-endpoints', etcd.endpoints.join(','), '--secure-listen', `127.0.0.1:${port}`, '--client-ca-file', pki.ca, '--tls-cert-file', pki.serverCert, '--tls-private-key-file', pki.serverKey,
      '--watch-bookmark-interval-ms', '60000'], process.env,
    // BERTH_BENCH_SERVICE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p": profile the Store process.
    { nodeArgs: (process.env['BERTH_BENCH_SERVICE_NODE_ARGS'] ?? '').split(' ').filter(Boolean) });
    if ((await waitServing(`unix://${path.join(dir, 'etcd-client.sock')}`, 30_000)) !== 'SERVING') throw new Error(`berth-etcd-client did not start:\n${svc.output()}`);
    const api = new StoreClient({ target: `127.0.0.1:${port}`, tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey, serverName: 'localhost' }, channelOptions: { 'grpc.max_concurrent_streams': 1000 } });
    closers.push(() => api.close());
    const kv = new EtcdV3Client({ endpoints: etcd.endpoints });
    closers.push(() => kv.close());
    await api.create(decodeObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bench' } }));
    const payload = Buffer.from(core.Object.encode(pod('template')).finish());
    const run = `r${Date.now().toString(36)}`;

    const subjects: Subject[] = [
      {
        name: 'Store API (gRPC, mTLS)',
        create: (i) => api.create(pod(`${run}-s-${i}`)),
        get: (i) => api.get('pods', 'bench', `get-${i % 200}`),
        list: () => api.list({ resource: 'pods', namespace: 'list' }),
      },
      {
        name: 'etcd v3 library alone',
        create: (i) => { const k = `/bench-lib/pods/bench/${run}-l-${i}`; return kv.txn({ compare: [{ key: k, target: 'modRevision', op: '=', value: 0 }], success: [{ put: { key: k, value: payload } }] }); },
        get: (i) => kv.get(`/bench-lib/pods/get/get-${i % 200}`),
        list: () => kv.range('/bench-lib/pods/list/', { prefix: true }),
      },
    ];
    // The list fixture: 100 pods in namespace "list" for both.
    await api.create(decodeObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'list' } }));
    for (let i = 0; i < 200; i++) {
      await api.create(pod(`get-${i}`));
      await kv.put(`/bench-lib/pods/get/get-${i}`, payload);
    }
    for (let i = 0; i < LIST_ITEMS; i++) {
      await api.create(pod(`item-${i}`, 'list'));
      await kv.put(`/bench-lib/pods/list/item-${i}`, payload);
    }
    console.log(`etcd at ${etcd.endpoints[0]}; berth-etcd-client with --secure-listen (mTLS); node ${process.version}; ${os.cpus().length} cpus`);
    console.log(`${ROUNDS} rounds x ${SECONDS}s per case, concurrency ${CONC}; list = ${LIST_ITEMS} pods; watch fan-out = ${WATCHERS} watchers x ${UPDATES} updates\n`);

    const results: Record<string, Record<string, { ops: number; p50: number; p99: number }>> = {};
    const counters = new Map(subjects.map((s) => [s.name, { n: 0 }]));
    for (const op of ['create', 'get', 'list'] as const) {
      const rounds: Record<string, { ops: number[]; p50: number[]; p99: number[] }> = {};
      for (let r = 0; r < ROUNDS; r++) {
        for (const s of subjects) {
          const c = op === 'get' ? { n: 0 } : counters.get(s.name)!;
          const m = await measure((i) => (op === 'create' ? s.create(i) : op === 'get' ? s.get(i) : s.list()), SECONDS, CONC, c);
          const x = (rounds[s.name] ??= { ops: [], p50: [], p99: [] });
          x.ops.push(m.ops); x.p50.push(m.p50); x.p99.push(m.p99);
        }
      }
      for (const [name, x] of Object.entries(rounds)) (results[op] ??= {})[name] = { ops: median(x.ops), p50: median(x.p50), p99: median(x.p99) };
    }

    // Watch fan-out.
    const fanout: Record<string, { p50: number; p99: number; max: number; delivered: number; seconds: number }> = {};
    {
      await api.create(pod('hot'));
      const sent = new Float64Array(UPDATES);
      const lat = new Float64Array(UPDATES * WATCHERS);
      let got = 0;
      const ac = new AbortController();
      setMaxListeners(0, ac.signal); // one signal ends every watcher
      const start = await api.list({ resource: 'pods', namespace: 'bench', fieldSelector: 'metadata.name=hot' });
      let allDone!: () => void;
      const finished = new Promise<void>((r) => { allDone = r; });
      const watchers = Array.from({ length: WATCHERS }, async () => {
        let seen = 0;
        for await (const e of api.watch({ resource: 'pods', namespace: 'bench', fieldSelector: 'metadata.name=hot', resourceVersion: start.resourceVersion }, ac.signal)) {
          if (e.type !== 'MODIFIED') continue;
          const i = Number(e.object!.pod!.status!.message);
          lat[got++] = performance.now() - sent[i];
          if (++seen === UPDATES) break;
        }
        if (got === UPDATES * WATCHERS) allDone();
      });
      await new Promise((r) => setTimeout(r, 500)); // let every watch open
      const t0 = performance.now();
      let cur = (await api.get('pods', 'bench', 'hot')).pod!;
      for (let i = 0; i < UPDATES; i++) {
        cur.status!.message = String(i);
        sent[i] = performance.now();
        cur = (await api.updateStatus({ pod: cur } as core.Object)).pod!;
      }
      await Promise.race([finished, new Promise((r) => setTimeout(r, 120_000))]);
      const secs = (performance.now() - t0) / 1000;
      ac.abort();
      await Promise.allSettled(watchers);
      const l = lat.slice(0, got).sort();
      fanout['Store API (gRPC, mTLS)'] = { p50: pct(l, 0.5), p99: pct(l, 0.99), max: l[l.length - 1], delivered: got, seconds: secs };
    }
    {
      const key = `/bench-lib/hot-${run}`;
      await kv.put(key, payload);
      const sent = new Float64Array(UPDATES);
      const lat = new Float64Array(UPDATES * WATCHERS);
      let got = 0;
      const ac = new AbortController();
      setMaxListeners(0, ac.signal);
      const ws = Array.from({ length: WATCHERS }, () => kv.watch(key, { signal: ac.signal }));
      await Promise.all(ws.map((w) => w.ready));
      let allDone!: () => void;
      const finished = new Promise<void>((r) => { allDone = r; });
      const readers = ws.map(async (w) => {
        let seen = 0;
        for await (const resp of w) {
          for (const e of resp.events) {
            const i = Number(e.kv.value.subarray(0, 12).toString().trim());
            lat[got++] = performance.now() - sent[i];
            seen++;
          }
          if (seen >= UPDATES) break;
        }
        if (got >= UPDATES * WATCHERS) allDone();
      });
      const t0 = performance.now();
      for (let i = 0; i < UPDATES; i++) {
        sent[i] = performance.now();
        await kv.put(key, Buffer.concat([Buffer.from(String(i).padEnd(12)), payload]));
      }
      await Promise.race([finished, new Promise((r) => setTimeout(r, 120_000))]);
      const secs = (performance.now() - t0) / 1000;
      ac.abort();
      await Promise.allSettled(readers);
      const l = lat.slice(0, got).sort();
      fanout['etcd v3 library alone'] = { p50: pct(l, 0.5), p99: pct(l, 0.99), max: l[l.length - 1], delivered: got, seconds: secs };
    }

    const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(2));
    const lines: string[] = [];
    lines.push('| operation | Store API (gRPC, mTLS) | etcd v3 library alone | API / library |');
    lines.push('|---|---|---|---|');
    const [a, b] = subjects.map((s) => s.name);
    for (const op of ['create', 'get', 'list'] as const) {
      const x = results[op][a];
      const y = results[op][b];
      lines.push(`| ${op}${op === 'list' ? ` (${LIST_ITEMS} pods)` : ''} x${CONC} | ${f(x.ops)} ops/s, p50 ${f(x.p50)} ms, p99 ${f(x.p99)} ms | ${f(y.ops)} ops/s, p50 ${f(y.p50)} ms, p99 ${f(y.p99)} ms | ${(x.ops / y.ops).toFixed(2)}x throughput |`);
    }
    const wa = fanout[a];
    const wb = fanout[b];
    lines.push(`| watch fan-out ${WATCHERS}x${UPDATES} | delivered ${wa.delivered}/${WATCHERS * UPDATES}, p50 ${f(wa.p50)} ms, p99 ${f(wa.p99)} ms, ${f(wa.delivered / wa.seconds)} events/s | delivered ${wb.delivered}/${WATCHERS * UPDATES}, p50 ${f(wb.p50)} ms, p99 ${f(wb.p99)} ms, ${f(wb.delivered / wb.seconds)} events/s | ${(wa.p99 / wb.p99).toFixed(2)}x p99 |`);
    console.log(lines.join('\n'));
    const out = process.env.BERTH_BENCH_RESULTS ?? path.resolve(__dirname, '..', '..', '..', '..', 'bench', 'results');
    fs.mkdirSync(out, { recursive: true });
    const file = path.join(out, `store-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    fs.writeFileSync(file, JSON.stringify({ bench: 'store', date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, seconds: SECONDS, rounds: ROUNDS, concurrency: CONC, listItems: LIST_ITEMS, watchers: WATCHERS, updates: UPDATES, results, fanout, table: lines.join('\n') }, null, 2));
    console.log(`\nresults: ${file}`);
  } finally {
    for (const c of closers) c();
    await svc?.stop();
    await etcd?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
