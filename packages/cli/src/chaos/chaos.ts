// `npm run chaos`: a bounded chaos and soak run against a real `berth up` cluster. For
// --duration it churns up to --pods pods (create/delete through the Store), kills a random
// service with SIGKILL now and then (berth up restarts it), and injects loss/rate faults on
// random pods through their node's cni-manager. Then it lets the cluster settle and checks the
// invariants: every pod the Store calls Running runs each of its containers exactly once in its
// node's runtime and has processes in its cgroup in the kernel, nothing runs or stays in a cgroup
// of a pod the Store does not have, no network attachment (IP) or veth is held for a pod the
// Store does not have, no two attachments share an IP, a watch on pods saw every change, and after `berth up` stops nothing
// of the run is left on the host (processes, mounts, netns, links, cgroups).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { cni, core, runtime } from '@berth/api';
import { StoreClient, kindInfo, wrap } from '@berth/apimachinery';
import { callUnary, checkHealth, createClient, startServiceProcess, type ServiceProcess } from '@berth/common';
import { EXAMPLE_IMAGE } from '../cluster-examples';
import { CommandUsageError, parseDuration, parseFlags, parseInteger, parseNetwork } from '../cluster-flags';
import { cleanupRun, leftovers, type Leftovers } from '../down';
import { readClusterInfo, type ClusterInfo } from '../up';
import { kernelMismatches, nodeKernelView } from './kernel';

export interface ChaosOptions {
  durationMs: number;
  pods: number;
  nodes: number;
  network: 'bridge' | 'routed';
  /** Mean time between service kills. */
  killEveryMs: number;
  resultsDir: string;
}

export const CHAOS_HELP = `Usage: npm run chaos -- [flags]

  --duration DURATION      how long to churn, kill and inject faults (default 3m)
  --pods N                 most pods alive at once (default 200)
  --nodes N                nodes of the cluster (default 2)
  --network bridge|routed  pod network (default bridge)
  --kill-every DURATION    mean time between service kills (default 20s)
  --results DIR            where chaos-<time>.json goes (default bench/results, or $BERTH_BENCH_RESULTS)
`;

export function parseChaosArgs(args: string[]): ChaosOptions | 'help' {
  const v = parseFlags(args, { duration: { type: 'string' }, pods: { type: 'string' }, nodes: { type: 'string' }, network: { type: 'string' }, 'kill-every': { type: 'string' }, results: { type: 'string' } });
  if (v.help) return 'help';
  const durationMs = v.duration !== undefined ? parseDuration(v.duration, '--duration') : 180_000;
  if (durationMs < 5_000 || durationMs > 3_600_000) throw new CommandUsageError('--duration: expected between 5s and 1h');
  return {
    durationMs,
    pods: v.pods !== undefined ? parseInteger(v.pods, '--pods', 1, 1000) : 200,
    nodes: v.nodes !== undefined ? parseInteger(v.nodes, '--nodes', 1, 10) : 2,
    network: v.network !== undefined ? parseNetwork(v.network) : 'bridge',
    killEveryMs: v['kill-every'] !== undefined ? parseDuration(v['kill-every'], '--kill-every') : 20_000,
    resultsDir: path.resolve(v.results ?? process.env.BERTH_BENCH_RESULTS ?? path.resolve(__dirname, '..', '..', '..', '..', 'bench', 'results')),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: T[]): T => xs[crypto.randomInt(xs.length)];
const shuffle = <T>(xs: T[]): T[] => {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) { const j = crypto.randomInt(i + 1); [out[i], out[j]] = [out[j], out[i]]; }
  return out;
};
const bin = path.resolve(__dirname, '..', 'bin', 'berth.js');
const NS = 'default';

async function waitForOutput(p: ServiceProcess, re: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(p.output())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; berth up said:\n${p.output().slice(-4000)}`);
    if (p.proc.exitCode !== null) throw new Error(`berth up exited ${p.proc.exitCode}:\n${p.output().slice(-4000)}`);
    await sleep(250);
  }
}

/** The one-pod manifest dir berth up applies, so it imports the example image into every node. */
function anchorManifest(dir: string): string {
  const ex = path.join(dir, 'examples');
  fs.mkdirSync(ex, { recursive: true });
  fs.writeFileSync(path.join(ex, 'anchor.yaml'), `apiVersion: v1
kind: Pod
metadata:
  name: chaos-anchor
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: ${EXAMPLE_IMAGE}
      imagePullPolicy: Never
      command: ["sleep", "36000"]
`);
  return ex;
}

function churnPod(name: string): core.Object {
  return wrap(kindInfo('Pod')!, core.Pod.fromPartial({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: NS, labels: { app: 'chaos' } },
    spec: {
      terminationGracePeriodSeconds: 1,
      // Tolerate the batch taint berth up puts on its last node, so churn lands on every node.
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'batch', effect: 'NoSchedule' }],
      containers: [{ name: 'c', image: EXAMPLE_IMAGE, imagePullPolicy: 'Never', command: ['sleep', '36000'], resources: { requests: { cpu: '1m', memory: '1Mi' } } }],
    },
  }));
}

const nodeSocket = (info: ClusterInfo, node: string, svc: string) => info.nodes.find((n) => n.name === node)?.services.find((s) => s.name === svc)?.socket;

async function attachments(socket: string): Promise<cni.Attachment[]> {
  const c = createClient(cni.NetworkServiceClient, { target: socket, defaultDeadlineMs: 10_000 });
  try { return (await callUnary<cni.ListAttachmentsRequest, cni.ListAttachmentsResponse>(c.listAttachments.bind(c), {})).attachments; } finally { c.close(); }
}

/** Per pod uid: how many containers run in this node's runtime (by their sandbox's metadata). */
async function runningByUid(socket: string): Promise<Map<string, number>> {
  const c = createClient(runtime.RuntimeServiceClient, { target: socket, defaultDeadlineMs: 10_000 });
  try {
    const { items } = await callUnary<runtime.ListPodSandboxRequest, runtime.ListPodSandboxResponse>(c.listPodSandbox.bind(c), {});
    const uidOf = new Map(items.map((s) => [s.id, s.metadata?.uid ?? '']));
    const { containers } = await callUnary<runtime.ListContainersRequest, runtime.ListContainersResponse>(c.listContainers.bind(c),
      runtime.ListContainersRequest.fromPartial({ filter: { state: runtime.ContainerState.CONTAINER_STATE_RUNNING } }));
    const out = new Map<string, number>();
    for (const k of containers) {
      const uid = uidOf.get(k.podSandboxId) ?? `?sandbox ${k.podSandboxId}`;
      out.set(uid, (out.get(uid) ?? 0) + 1);
    }
    return out;
  } finally { c.close(); }
}

/** Why a pod is not Running, from its status: the pod's reason and each container's state. */
function whyNot(p: core.Pod): string {
  const st = p.status;
  const parts = [st?.reason && `${st.reason}: ${st.message}`, ...[...(st?.initContainerStatuses ?? []), ...(st?.containerStatuses ?? [])].map((c) => {
    const t = c.state?.terminated;
    const w = c.state?.waiting;
    return `${c.name} ${t ? `terminated ${t.reason} (exit ${t.exitCode}) ${t.message}` : w ? `waiting ${w.reason} ${w.message}` : c.state?.running ? 'running' : 'unknown'}`.trim();
  })].filter(Boolean);
  return parts.length ? ` (${parts.join('; ')})` : '';
}

export interface ChaosReport {
  startedAt: string;
  options: Omit<ChaosOptions, 'resultsDir'>;
  created: number;
  deleted: number;
  createErrors: number;
  deleteErrors: number;
  kills: { service: string; at: string; backAfterMs: number | null }[];
  faults: { pod: string; node: string; loss: number; rate: string; applied: string[]; unsupported: string[]; error?: string }[];
  watch: { events: number; restarts: number; relists: number };
  final: { podsInStore: number; running: number; settleMs: number; mismatchesAtFirstCheck: number };
  violations: string[];
  leftovers?: Leftovers;
  ok: boolean;
}

/**
 * Watches pods from `rv` and keeps name -> resourceVersion. A stream that breaks (the Store
 * killed) is resumed from the last seen resourceVersion, as an informer does; only when the Store
 * says that version is gone does it relist (counted).
 */
function watchPods(store: StoreClient, rv: string, seen: Map<string, string>, stats: ChaosReport['watch'], signal: AbortSignal): Promise<void> {
  return (async () => {
    while (!signal.aborted) {
      let gone = false;
      try {
        for await (const ev of store.watch({ resource: 'pods', namespace: NS, resourceVersion: rv, allowWatchBookmarks: true }, signal)) {
          if (ev.type === 'ERROR') { gone = ev.error?.code === 410; break; }
          const p = ev.object?.pod;
          if (!p?.metadata) continue;
          rv = p.metadata.resourceVersion || rv;
          if (ev.type === 'BOOKMARK') continue;
          stats.events++;
          if (ev.type === 'DELETED') seen.delete(p.metadata.name);
          else seen.set(p.metadata.name, p.metadata.resourceVersion);
        }
      } catch (e) {
        if (signal.aborted) return;
        gone = /gone|too old|expired/i.test((e as Error).message);
      }
      if (gone) {
        stats.relists++;
        const l = await store.list({ resource: 'pods', namespace: NS }).catch(() => undefined);
        if (l) {
          seen.clear();
          for (const o of l.items) seen.set(o.pod!.metadata!.name, o.pod!.metadata!.resourceVersion);
          rv = l.resourceVersion;
        }
      }
      if (signal.aborted) return;
      stats.restarts++;
      await sleep(500);
    }
  })();
}

export async function chaos(o: ChaosOptions, say: (s: string) => void = (s) => process.stdout.write(`${s}\n`)): Promise<ChaosReport> {
  const id = crypto.randomBytes(3).toString('hex');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-chaos-${id}-`));
  const runDir = path.join(dir, 'run');
  const stateDir = path.join(dir, 'state');
  const report: ChaosReport = {
    startedAt: new Date().toISOString(), options: { durationMs: o.durationMs, pods: o.pods, nodes: o.nodes, network: o.network, killEveryMs: o.killEveryMs },
    created: 0, deleted: 0, createErrors: 0, deleteErrors: 0, kills: [], faults: [], watch: { events: 0, restarts: 0, relists: 0 },
    final: { podsInStore: 0, running: 0, settleMs: 0, mismatchesAtFirstCheck: 0 }, violations: [], ok: false,
  };
  const v = (s: string) => { report.violations.push(s); say(`  VIOLATION ${s}`); };
  say(`chaos: berth up --nodes ${o.nodes} --network ${o.network} in ${dir}`);
  const up = startServiceProcess(bin, ['up', '--nodes', String(o.nodes), '--network', o.network, '--examples', anchorManifest(dir), '--wait-timeout', '180s'],
    { ...process.env, BERTH_RUN_DIR: runDir, BERTH_STATE_DIR: stateDir });
  let store: StoreClient | undefined;
  const stopWatch = new AbortController();
  try {
    await waitForOutput(up, /All examples are Running and Ready|not every example is Running and Ready/, 300_000);
    const info = readClusterInfo(runDir)!;
    store = new StoreClient({ target: info.store.unix, defaultDeadlineMs: 10_000 });
    const st = store;
    const seen = new Map<string, string>();
    const l0 = await st.list({ resource: 'pods', namespace: NS });
    for (const x of l0.items) seen.set(x.pod!.metadata!.name, x.pod!.metadata!.resourceVersion);
    const watching = watchPods(st, l0.resourceVersion, seen, report.watch, stopWatch.signal);

    const services = [...info.controlPlane, ...info.nodes.flatMap((n) => n.services.map((x) => ({ name: `${n.name}/${x.name}`, socket: x.socket })))];
    const pidOf = (socket: string) => Number(spawnSync('pgrep', ['-f', '--', `--listen ${socket} --state-dir`], { encoding: 'utf8' }).stdout.trim().split('\n')[0]) || 0;
    const alive = new Set<string>();
    let seq = 0;
    const end = Date.now() + o.durationMs;
    let nextKill = Date.now() + crypto.randomInt(o.killEveryMs / 2, o.killEveryMs * 1.5);
    let nextFault = Date.now() + 3_000;
    const pendingKills: Promise<void>[] = [];
    const killOrder: typeof services = [];
    say(`chaos: cluster up; churning up to ${o.pods} pods for ${Math.round(o.durationMs / 1000)} s, killing a service every ~${Math.round(o.killEveryMs / 1000)} s, injecting faults`);
    let lastLine = 0;
    while (Date.now() < end) {
      // Churn: mostly grow toward the limit, with deletes all along (more once it is full).
      const grow = alive.size < o.pods && crypto.randomInt(100) < (alive.size < o.pods * 0.8 ? 80 : 40);
      const batch = Array.from({ length: 10 }, () => grow);
      await Promise.all(batch.map(async (g) => {
        if (g && alive.size < o.pods) {
          const name = `chaos-${id}-${++seq}`;
          alive.add(name);
          try { await st.create(churnPod(name)); report.created++; } catch { alive.delete(name); report.createErrors++; }
        } else if (alive.size) {
          const name = pick([...alive]);
          alive.delete(name);
          try { await st.delete({ resource: 'pods', namespace: NS, name, gracePeriodSeconds: 1 }); report.deleted++; } catch { alive.add(name); report.deleteErrors++; }
        }
      }));
      if (Date.now() >= nextKill) {
        nextKill = Date.now() + crypto.randomInt(o.killEveryMs / 2, o.killEveryMs * 1.5);
        // Every service in turn, in a random order each round: a run with as many kills as
        // services kills each of them once (runtime-shim and cni-manager of every node too).
        if (!killOrder.length) killOrder.push(...shuffle(services));
        const svc = killOrder.shift()!;
        const pid = pidOf(svc.socket);
        if (pid) {
          const k = { service: svc.name, at: new Date().toISOString(), backAfterMs: null as number | null };
          report.kills.push(k);
          say(`chaos: kill -9 ${svc.name} (pid ${pid})`);
          try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
          const t0 = Date.now();
          pendingKills.push((async () => {
            while (Date.now() - t0 < 90_000) {
              const now = pidOf(svc.socket);
              if (now && now !== pid && (await checkHealth(svc.socket)) === 'SERVING') { k.backAfterMs = Date.now() - t0; return; }
              await sleep(300);
            }
          })());
        }
      }
      if (Date.now() >= nextFault) {
        nextFault = Date.now() + 4_000;
        const running = (await st.list({ resource: 'pods', namespace: NS, labelSelector: 'app=chaos' }).catch(() => ({ items: [] as core.Object[] }))).items
          .map((x) => x.pod!).filter((p) => p.status?.phase === 'Running' && p.spec?.nodeName && !p.metadata?.deletionTimestamp);
        if (running.length) {
          const p = pick(running);
          const node = p.spec!.nodeName;
          const loss = crypto.randomInt(1, 40);
          const rate = pick(['512kbit', '1mbit', '10mbit']);
          const f: ChaosReport['faults'][number] = { pod: p.metadata!.name, node, loss, rate, applied: [], unsupported: [] };
          report.faults.push(f);
          const sock = nodeSocket(info, node, 'cni-manager')!;
          try {
            const att = (await attachments(sock)).find((a) => a.podUid === p.metadata!.uid);
            if (!att) throw new Error('no attachment for the pod on its node');
            const c = createClient(cni.NetworkServiceClient, { target: sock, defaultDeadlineMs: 10_000 });
            try {
              const r = await callUnary<cni.SetPodFaultsRequest, cni.SetPodFaultsResponse>(c.setPodFaults.bind(c), cni.SetPodFaultsRequest.fromPartial({
                sandboxId: att.sandboxId, direction: cni.FaultDirection.FAULT_DIRECTION_BOTH, lossPercent: loss, rate,
              }));
              f.applied = r.applied.map((a) => `${a.fault}:${a.mechanism}:${a.detail}`);
              f.unsupported = r.unsupported.map((u) => `${u.fault}: ${u.reason}`);
            } finally { c.close(); }
          } catch (e) { f.error = (e as Error).message; }
        }
      }
      if (Date.now() - lastLine > 10_000) {
        lastLine = Date.now();
        say(`chaos: ${Math.round((end - Date.now()) / 1000)} s left: ${alive.size} pods alive, ${report.created} created, ${report.deleted} deleted, ${report.kills.length} kills, ${report.faults.length} faults`);
      }
      await sleep(200);
    }

    say('chaos: churn over; waiting for every killed service to be back');
    await Promise.all(pendingKills);
    for (const k of report.kills) if (k.backAfterMs === null) v(`${k.service} killed at ${k.at} did not come back SERVING within 90 s`);
    // A service may go down once more after the churn, as a consequence of a kill: the scheduler
    // exits when it loses its leader lease (as kube-scheduler does) while the Store is away, and
    // berth up starts it again. Each gets 60 s to serve.
    const serveBy = Date.now() + 60_000;
    for (const s of services) {
      while (Date.now() < serveBy && (await checkHealth(s.socket)) !== 'SERVING') await sleep(500);
      if ((await checkHealth(s.socket)) !== 'SERVING') v(`${s.name} is not SERVING 60 s after the run`);
    }

    // Settle: the Store and the runtimes agree again within a bound, or the mismatch is a violation.
    say('chaos: settling (up to 180 s) until the Store and every runtime and network agree');
    const t0 = Date.now();
    let mismatch: string[] = [];
    let pods: core.Pod[] = [];
    let firstMismatch = -1;
    while (Date.now() - t0 < 180_000) {
      pods = (await st.list({ resource: 'pods', namespace: NS }).catch(() => ({ items: [] as core.Object[] }))).items.map((x) => x.pod!);
      mismatch = [];
      const uids = new Set(pods.map((p) => p.metadata!.uid));
      const ips = new Map<string, string>();
      for (const n of info.nodes) {
        const run = await runningByUid(nodeSocket(info, n.name, 'runtime-shim')!).catch((e: Error) => { mismatch.push(`${n.name}: runtime: ${e.message}`); return new Map<string, number>(); });
        for (const p of pods.filter((x) => x.spec?.nodeName === n.name && x.status?.phase === 'Running')) {
          const got = run.get(p.metadata!.uid) ?? 0;
          if (got !== p.spec!.containers.length) mismatch.push(`pod ${p.metadata!.name} is Running in the Store but ${n.name}'s runtime runs ${got} of its ${p.spec!.containers.length} containers`);
        }
        // A pod that ended (Succeeded, Failed) runs nothing any more.
        for (const p of pods.filter((x) => x.spec?.nodeName === n.name && (x.status?.phase === 'Succeeded' || x.status?.phase === 'Failed'))) {
          const got = run.get(p.metadata!.uid) ?? 0;
          if (got) mismatch.push(`pod ${p.metadata!.name} is ${p.status!.phase} in the Store but ${n.name}'s runtime runs ${got} of its containers`);
        }
        for (const [uid, count] of run) if (!uids.has(uid)) mismatch.push(`${n.name}'s runtime runs ${count} container(s) of pod uid ${uid}, which the Store does not have`);
        const atts = await attachments(nodeSocket(info, n.name, 'cni-manager')!).catch((e: Error) => { mismatch.push(`${n.name}: cni-manager: ${e.message}`); return [] as cni.Attachment[]; });
        for (const a of atts) {
          if (!uids.has(a.podUid)) mismatch.push(`${n.name}: leaked IP ${a.ips.join(',')} (sandbox ${a.sandboxId.slice(0, 13)} of ${a.podName}, not in the Store)`);
          for (const ip of a.ips) {
            const addr = ip.split('/')[0];
            if (ips.has(addr)) mismatch.push(`IP ${addr} held by both ${ips.get(addr)} and ${a.podName}`);
            ips.set(addr, a.podName);
          }
        }
        // The kernel's own view: processes in the pod cgroups, veths in the node's namespace.
        try {
          const mine = pods.filter((x) => x.spec?.nodeName === n.name).map((x) => ({ uid: x.metadata!.uid, name: x.metadata!.name, phase: x.status?.phase ?? '' }));
          mismatch.push(...kernelMismatches(n.name, nodeKernelView(n), mine, atts));
        } catch (e) { mismatch.push(`${n.name}: kernel view: ${(e as Error).message}`); }
        for (const p of pods.filter((x) => x.spec?.nodeName === n.name && x.status?.phase === 'Running' && x.status.podIP)) {
          if (!atts.some((a) => a.podUid === p.metadata!.uid && a.ips.some((ip) => ip.split('/')[0] === p.status!.podIP))) mismatch.push(`pod ${p.metadata!.name} says IP ${p.status!.podIP} but ${n.name}'s cni-manager has no such attachment`);
        }
      }
      // No pod lost: every pod not being deleted gets to Running again (restartPolicy Always,
      // containers that sleep), whatever was killed while it was created or started.
      for (const p of pods.filter((x) => x.status?.phase !== 'Running' && !x.metadata?.deletionTimestamp)) mismatch.push(`pod ${p.metadata!.name} is ${p.status?.phase || 'without a phase'} on ${p.spec?.nodeName || 'no node'}, not Running${whyNot(p)}`);
      if (firstMismatch < 0) firstMismatch = mismatch.length;
      if (!mismatch.length) break;
      await sleep(3000);
    }
    report.final = { podsInStore: pods.length, running: pods.filter((p) => p.status?.phase === 'Running').length, settleMs: Date.now() - t0, mismatchesAtFirstCheck: firstMismatch };
    for (const m of mismatch) v(m);

    // The watch saw every change: its view equals a fresh list (after it caught up).
    const listRvs = async () => new Map((await st.list({ resource: 'pods', namespace: NS })).items.map((x) => [x.pod!.metadata!.name, x.pod!.metadata!.resourceVersion] as const));
    const older = (a: string, b: string) => { try { return BigInt(a) < BigInt(b); } catch { return a !== b; } };
    // A pod in a fresh list the watch never saw (or only at an older version) is a missed
    // ADDED/MODIFIED; one the watch still holds that the list does not is a missed DELETED. The
    // watch gets a few seconds to catch up with the list.
    const differs = (fresh: Map<string, string>) => [
      ...[...fresh].filter(([k, rv]) => !seen.has(k) || older(seen.get(k)!, rv)).map(([k, rv]) => `pod ${k} (list resourceVersion ${rv}, watch ${seen.get(k) ?? 'none'})`),
      ...[...seen.keys()].filter((k) => !fresh.has(k)).map((k) => `deletion of pod ${k}`),
    ];
    let missed = differs(await listRvs());
    for (const caught = Date.now() + 15_000; missed.length && Date.now() < caught;) { await sleep(500); missed = differs(await listRvs()); }
    for (const m of missed) v(`watch missed an event: ${m}`);
    stopWatch.abort();
    await watching;

    // Delete what the churn left, gracefully, so Ctrl-C does not race pod teardowns.
    say(`chaos: deleting the ${pods.length} pods left and stopping berth up`);
    await Promise.all(pods.map((p) => st.delete({ resource: 'pods', namespace: NS, name: p.metadata!.name, gracePeriodSeconds: 1 }).catch(() => undefined)));
    const gone = Date.now() + 120_000;
    while (Date.now() < gone && (await st.list({ resource: 'pods', namespace: NS }).catch(() => ({ items: [1] }))).items.length) await sleep(1000);
  } catch (e) {
    v(`run failed: ${(e as Error).message}`);
  } finally {
    stopWatch.abort();
    store?.raw.close();
    up.proc.kill('SIGINT');
    const stopped = await Promise.race([up.exited, sleep(90_000).then(() => undefined)]);
    if (!stopped) { v('berth up did not stop within 90 s of SIGINT'); up.proc.kill('SIGKILL'); await up.exited; } else if (stopped.code !== 0) v(`berth up exited ${stopped.code ?? stopped.signal} on SIGINT`);
    const left = leftovers(runDir, stateDir);
    report.leftovers = left;
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dir));
    for (const [what, xs] of Object.entries(left) as [string, unknown[]][]) if (xs.length) v(`left after berth up stopped: ${what}: ${xs.join(', ')}`);
    if (mounts.length && !left.mounts.length) v(`left after berth up stopped: mounts: ${mounts.length} under ${dir}`);
    fs.writeFileSync(path.join(dir, 'berth-up.log'), up.output());
    // Leave the host clean for the next run whatever happened (what was left is in the report).
    const errs = await cleanupRun(runDir, stateDir, () => undefined);
    if (errs.length) say(`chaos: clean-up could not remove: ${errs.join('; ')}`);
    report.ok = report.violations.length === 0;
    if (report.ok) fs.rmSync(dir, { recursive: true, force: true });
    else say(`chaos: berth up's output is kept in ${path.join(dir, 'berth-up.log')}`);
  }
  return report;
}
