// `npm run bench -- scheduler [--nodes 5000] [--pods 10000] [--workloads a,b] [--preemption-pods 2000]`
//
// A scheduler_perf-like harness: for each workload, N nodes and some placed pods are loaded into
// an in-process store (MemoryCluster: watch events delivered on a microtask, binds applied with
// compare-and-swap), then M pods are created and scheduled by the real Scheduler (queue, cache,
// framework, default plugins, DefaultBinder). It prints pods/s and the p50/p99 of the scheduling
// attempt latency beside kube-scheduler's own regression thresholds (test/integration/
// scheduler_perf, 5000 nodes). kube-scheduler itself cannot run on this machine (no Go toolchain
// or binaries in the reachable registries), so its published thresholds are the peer column.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { core } from '@berth/api';
import { MemoryCluster } from '../cluster';
import { resolveConfig } from '../config';
import { Scheduler } from '../scheduler';
import { node, pod, term } from '../testing/builders';

const ZONE = 'topology.kubernetes.io/zone';
const HOST = 'kubernetes.io/hostname';

interface Workload {
  name: string;
  /** Measured pods when --pods is not given for this workload (see Preemption). */
  defaultPods?: number;
  /** kube-scheduler's threshold in pods/s (scheduler_perf), when it has one. */
  threshold?: number;
  nodes(n: number): core.Node[];
  /** Pods placed before measuring (spec.nodeName set). */
  initPods(nodes: core.Node[], m: number): core.Pod[];
  pod(i: number, m: number): core.Pod;
}

const zoneOf = (i: number, zones: number) => `zone${i % zones}`;
const plainNodes = (zones: number) => (n: number) => Array.from({ length: n }, (_, i) => node(`node-${i}`, { labels: { [ZONE]: zoneOf(i, zones) }, alloc: { cpu: '4', memory: '32Gi', pods: '110' } }));
const basicPod = (name: string, extra: Parameters<typeof pod>[1] = {}) => pod(name, { req: { cpu: '100m', memory: '500Mi' }, ...extra });

const WORKLOADS: Workload[] = [
  {
    name: 'SchedulingBasic', threshold: 680,
    nodes: plainNodes(10),
    initPods: (nodes) => nodes.slice(0, 1000).map((n, i) => basicPod(`init-${i}`, { node: n.metadata!.name })),
    pod: (i) => basicPod(`p-${i}`),
  },
  {
    name: 'NodeAffinity', threshold: 220,
    nodes: plainNodes(10),
    initPods: () => [],
    pod: (i) => basicPod(`p-${i}`, {
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: ZONE, operator: 'In', values: ['zone0', 'zone1', 'zone2', 'zone3', 'zone4'] }], matchFields: [] }] }, preferredDuringSchedulingIgnoredDuringExecution: [] } } as core.Affinity,
    }),
  },
  {
    name: 'PodAffinity (required)', threshold: 35,
    nodes: plainNodes(50),
    // One "blue" pod per zone so every zone is a valid target.
    initPods: (nodes) => Array.from({ length: 50 }, (_, z) => basicPod(`init-${z}`, { node: nodes[z].metadata!.name, labels: { color: 'blue' } })),
    pod: (i) => basicPod(`p-${i}`, { labels: { color: 'blue' }, affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term({ color: 'blue' }, ZONE)], preferredDuringSchedulingIgnoredDuringExecution: [] } } as core.Affinity }),
  },
  {
    name: 'PodAntiAffinity (required)', threshold: 60,
    nodes: plainNodes(10),
    initPods: () => [],
    // Groups of 1000 pods, each pod kept off every node holding another pod of its group.
    pod: (i) => basicPod(`p-${i}`, { labels: { group: `g${Math.floor(i / 1000)}` }, affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term({ group: `g${Math.floor(i / 1000)}` }, HOST)], preferredDuringSchedulingIgnoredDuringExecution: [] } } as core.Affinity }),
  },
  {
    name: 'Preferred affinity/anti-affinity', threshold: 90,
    nodes: plainNodes(50),
    initPods: (nodes) => nodes.slice(0, 500).map((n, i) => basicPod(`init-${i}`, { node: n.metadata!.name, labels: { color: i % 2 ? 'blue' : 'red' } })),
    pod: (i) => basicPod(`p-${i}`, {
      labels: { color: 'blue', group: `g${Math.floor(i / 1000)}` },
      affinity: {
        podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [], preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, podAffinityTerm: term({ color: 'blue' }, ZONE) }] },
        podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [], preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 5, podAffinityTerm: term({ group: `g${Math.floor(i / 1000)}` }, HOST) }] },
      } as core.Affinity,
    }),
  },
  {
    name: 'TopologySpread', // no published threshold
    nodes: plainNodes(10),
    initPods: () => [],
    pod: (i) => basicPod(`p-${i}`, { labels: { app: 'spread' }, spread: [{ maxSkew: 1, topologyKey: ZONE, whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { app: 'spread' }, matchExpressions: [] } }] }),
  },
  {
    name: 'Preemption', // no published threshold in the issue
    // Each preemptor fails on every node, then dry-runs victim selection on 500 candidates,
    // single threaded: 2000 by default keeps the run to minutes; --preemption-pods 10000 for all.
    defaultPods: 2000,
    nodes: (n) => Array.from({ length: n }, (_, i) => node(`node-${i}`, { labels: { [ZONE]: zoneOf(i, 10) }, alloc: { cpu: '4', memory: '32Gi', pods: '110' } })),
    // Every node full of low-priority pods (4 x 1 cpu): each measured pod must evict one.
    initPods: (nodes) => nodes.flatMap((n, j) => Array.from({ length: 4 }, (_, k) => pod(`low-${j}-${k}`, { node: n.metadata!.name, priority: 1, req: { cpu: '1' }, startTime: '2026-01-01T00:00:00Z' }))),
    pod: (i) => pod(`p-${i}`, { priority: 1000, req: { cpu: '1' } }),
  },
];

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}

function pct(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

interface Result { workload: string; nodes: number; pods: number; scheduled: number; seconds: number; podsPerSecond: number; podsPerCpuSecond: number; cpuSeconds: number; p50Ms: number; p99Ms: number; threshold?: number; ratio?: number }

async function runWorkload(w: Workload, nNodes: number, nPods: number): Promise<Result> {
  const cluster = new MemoryCluster(true);
  const nodes = w.nodes(nNodes);
  for (const n of nodes) cluster.putNode(n);
  for (const p of w.initPods(nodes, nPods)) cluster.putPod(p);
  // Backoff is waiting, not work: keep it short so preemptors retry as soon as victims are gone.
  const config = resolveConfig({ podInitialBackoffSeconds: 0.001, podMaxBackoffSeconds: 0.001 });
  const sched = new Scheduler(cluster, { config });
  await cluster.start(sched);
  const latencies: number[] = [];
  // Every attempt counts, like kube-scheduler's scheduling_attempt_duration_seconds (a preemption
  // attempt ends unschedulable with a nominated node).
  sched.observer = (_p, _result, ms) => { latencies.push(ms); };
  const pods = Array.from({ length: nPods }, (_, i) => w.pod(i, nPods));
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  for (const p of pods) cluster.putPod(p);
  await new Promise((r) => setImmediate(r));
  const deadline = start + 600_000;
  while (sched.counters.scheduled < nPods && performance.now() < deadline) {
    // Pop one at a time so the deadline holds even when a round takes long.
    for (let q = sched.queue.tryPop(); q; q = performance.now() < deadline ? sched.queue.tryPop() : undefined) await sched.scheduleOne(q);
    await sched.drainBindings();
    await new Promise((r) => setImmediate(r));
    sched.queue.flushBackoffCompleted();
    const c = sched.queue.counts();
    if (c.active) continue;
    if (!c.backoff) {
      // Let pending watch events (victim deletions) arrive; stop when nothing can move any more.
      await new Promise((r) => setImmediate(r));
      sched.queue.flushBackoffCompleted();
      if (!sched.queue.counts().active && !sched.queue.counts().backoff) break;
    } else await new Promise((r) => setTimeout(r, 1));
  }
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  await sched.stop();
  latencies.sort((a, b) => a - b);
  const podsPerSecond = sched.counters.scheduled / seconds;
  return {
    workload: w.name, nodes: nNodes, pods: nPods, scheduled: sched.counters.scheduled, seconds,
    podsPerSecond, podsPerCpuSecond: sched.counters.scheduled / cpuSeconds, cpuSeconds, p50Ms: pct(latencies, 50), p99Ms: pct(latencies, 99),
    threshold: w.threshold, ratio: w.threshold ? podsPerSecond / w.threshold : undefined,
  };
}

async function main(): Promise<void> {
  const nNodes = Number(arg('nodes', '5000'));
  const nPods = Number(arg('pods', '10000'));
  const only = arg('workloads', '').split(',').filter(Boolean).map((s) => s.toLowerCase());
  const chosen = WORKLOADS.filter((w) => !only.length || only.some((o) => w.name.toLowerCase().startsWith(o)));
  console.log(`berth scheduler benchmark: ${nNodes} nodes, ${nPods} pods per workload, in-process store (MemoryCluster), node ${process.version}`);
  console.log('peer: kube-scheduler scheduler_perf thresholds (5000 nodes); kube-scheduler cannot run here.');
  console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} cpus (pods/cpu-s is the throughput per second of this process's own CPU time)\n`);
  const rows: Result[] = [];
  const preemptionPods = Number(arg('preemption-pods', '0'));
  for (const w of chosen) {
    const pods = w.name === 'Preemption' && preemptionPods ? preemptionPods : Math.min(nPods, w.defaultPods ?? nPods);
    const r = await runWorkload(w, nNodes, pods);
    rows.push(r);
    const thr = r.threshold ? `${r.threshold}`.padStart(8) : '       -';
    const ratio = r.ratio ? `${r.ratio.toFixed(1)}x wall, ${(r.podsPerCpuSecond / r.threshold!).toFixed(1)}x per cpu-s` : '-';
    console.log(`${r.workload.padEnd(34)} ${String(r.scheduled).padStart(6)}/${r.pods} in ${r.seconds.toFixed(1).padStart(6)}s  ${r.podsPerSecond.toFixed(0).padStart(7)} pods/s ${r.podsPerCpuSecond.toFixed(0).padStart(7)} pods/cpu-s  p50 ${r.p50Ms.toFixed(2).padStart(6)}ms  p99 ${r.p99Ms.toFixed(2).padStart(6)}ms  kube-scheduler ≥${thr} pods/s  ${ratio}`);
  }
  const out = process.env.BERTH_BENCH_RESULTS;
  if (out) {
    fs.mkdirSync(out, { recursive: true });
    const file = path.join(out, `scheduler-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    fs.writeFileSync(file, JSON.stringify({ benchmark: 'scheduler', date: new Date().toISOString(), node: process.version, store: 'in-process MemoryCluster', nodes: nNodes, pods: nPods, results: rows }, null, 2) + '\n');
    console.log(`\nresults: ${file}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
