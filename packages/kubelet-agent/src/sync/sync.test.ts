// The sync-loop skeleton: pod workers (serialized per pod, latest update wins, parallel across
// pods), the merged pod config, static pods from a real directory and a real HTTP server on
// 127.0.0.1, and the loop's triggers (config, runtime events, probe results, resync, requeue)
// with a fake clock.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { core } from '@berth/api';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../clock';
import { ResultChannel, type ProbeUpdate } from '../probes/manager';
import { PodConfig, type PodUpdate } from './pod-config';
import { PodWorkers } from './pod-workers';
import { mirrorPod, readManifestDir, StaticPodDirSource, StaticPodHttpSource } from './static-pods';
import { SyncLoop, type RuntimeEvent, type SyncWork } from './sync-loop';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('PodWorkers', () => {
  it('serializes one pod, folds queued updates into the newest, runs other pods in parallel', async () => {
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const log: string[] = [];
    let concurrent = 0, maxConcurrent = 0;
    const perPod = new Map<string, number>();
    const w = new PodWorkers<string>(async ({ uid, data }) => {
      concurrent++;
      perPod.set(uid, (perPod.get(uid) ?? 0) + 1);
      expect(perPod.get(uid)).toBe(1); // never two syncs of one pod at once
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      log.push(`start ${uid}:${data}`);
      const g = deferred();
      gates.set(`${uid}:${data}`, g);
      await g.promise;
      log.push(`end ${uid}:${data}`);
      perPod.set(uid, perPod.get(uid)! - 1);
      concurrent--;
    });
    w.update('a', 'v1');
    w.update('b', 'v1');
    w.update('a', 'v2');
    w.update('a', 'v3');
    await tick();
    expect(log).toEqual(['start a:v1', 'start b:v1']);
    gates.get('a:v1')!.resolve();
    await tick();
    expect(log.slice(2)).toEqual(['end a:v1', 'start a:v3']); // v2 was folded into v3
    gates.get('b:v1')!.resolve();
    gates.get('a:v3')!.resolve();
    await w.idle();
    expect(maxConcurrent).toBe(2);
    expect(w.syncs).toBe(3);
  });

  it('respects the parallel limit and reports errors without stopping', async () => {
    const errors: string[] = [];
    let concurrent = 0, max = 0;
    const w = new PodWorkers<number>(async ({ uid }) => {
      concurrent++;
      max = Math.max(max, concurrent);
      await tick();
      concurrent--;
      if (uid === 'p3') throw new Error('boom');
    }, 2, (uid, e) => errors.push(`${uid}: ${(e as Error).message}`));
    for (let i = 0; i < 8; i++) w.update(`p${i}`, i);
    await w.idle();
    expect(max).toBe(2);
    expect(w.syncs).toBe(8);
    expect(errors).toEqual(['p3: boom']);
  });
});

const mk = (name: string, uid: string, image = 'busybox') => core.Pod.fromPartial({ metadata: { name, namespace: 'default', uid, resourceVersion: '1' }, spec: { containers: [{ name: 'c', image }] } });
const ops = (ch: ResultChannel<PodUpdate>) => ch.drain().map((u) => `${u.op} ${u.source} ${u.pod.metadata!.name}`);

describe('PodConfig', () => {
  it('turns snapshots and incremental changes into ADD/UPDATE/DELETE, ignoring status-only changes', () => {
    const c = new PodConfig();
    c.apply('store', 'ADD', mk('a', '1'));
    c.apply('store', 'UPDATE', { ...mk('a', '1'), status: core.PodStatus.fromPartial({ phase: 'Running' }), metadata: { ...mk('a', '1').metadata!, resourceVersion: '9' } });
    c.apply('store', 'UPDATE', mk('a', '1', 'nginx'));
    c.setSnapshot('file', [mk('s1', 's1'), mk('s2', 's2')]);
    c.setSnapshot('file', [mk('s2', 's2')]);
    c.apply('store', 'DELETE', mk('a', '1'));
    expect(ops(c.updates)).toEqual(['ADD store a', 'UPDATE store a', 'ADD file s1', 'ADD file s2', 'DELETE file s1', 'DELETE store a']);
    expect(c.all().map((p) => p.metadata!.name)).toEqual(['s2']);
  });
});

describe('static pods', () => {
  let dir: string;
  let server: http.Server | undefined;
  afterEach(async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    if (server) await new Promise<void>((r) => server!.close(() => r()));
    server = undefined;
  });
  const manifest = (name: string, image: string) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  labels: {tier: control}\nspec:\n  containers:\n  - name: main\n    image: ${image}\n`;

  it('reads a real directory: pods named after the node, stable uids, problems per file', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-static-'));
    fs.writeFileSync(path.join(dir, 'etcd.yaml'), manifest('etcd', 'etcd:3.4'));
    fs.writeFileSync(path.join(dir, 'proxy.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'proxy', namespace: 'kube-system' }, spec: { containers: [{ name: 'p', image: 'proxy:1' }] } }));
    fs.writeFileSync(path.join(dir, 'broken.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: a, imagee: b}]\n');
    fs.writeFileSync(path.join(dir, 'svc.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n');
    fs.writeFileSync(path.join(dir, '.hidden.yaml'), manifest('hidden', 'x'));
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not a manifest');
    const r1 = readManifestDir(dir, 'node-a');
    expect(r1.pods.map((p) => `${p.metadata!.namespace}/${p.metadata!.name}`)).toEqual(['default/etcd-node-a', 'kube-system/proxy-node-a']);
    expect(r1.problems.map((p) => path.basename(p.source))).toEqual(['broken.yaml', 'svc.yaml']);
    expect(r1.problems[0].message).toMatch(/imagee/);
    expect(r1.problems[1].message).toMatch(/only Pod manifests can be static pods/);
    const etcd = r1.pods[0];
    expect(etcd.spec!.nodeName).toBe('node-a');
    expect(etcd.metadata!.annotations).toMatchObject({ 'kubernetes.io/config.source': 'file', 'kubernetes.io/config.hash': etcd.metadata!.uid });
    expect(etcd.metadata!.uid).toMatch(/^[0-9a-f]{32}$/);
    expect(readManifestDir(dir, 'node-a').pods[0].metadata!.uid).toBe(etcd.metadata!.uid);
    expect(readManifestDir(dir, 'node-b').pods[0].metadata!.uid).not.toBe(etcd.metadata!.uid);
    const mirror = mirrorPod(etcd);
    expect(mirror.metadata!.annotations['kubernetes.io/config.mirror']).toBe(etcd.metadata!.uid);
    expect(mirror.metadata!.uid).toBe('');
  });

  it('a directory source reports edits as a new pod and removals as deletes', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-static-'));
    const clock = new FakeClock();
    const config = new PodConfig();
    const src = new StaticPodDirSource({ clock, config, nodeName: 'n1', periodMs: 20_000 }, dir);
    fs.writeFileSync(path.join(dir, 'a.yaml'), manifest('a', 'busybox:1'));
    src.start();
    await clock.advance(0);
    expect(ops(config.updates)).toEqual(['ADD file a-n1']);
    fs.writeFileSync(path.join(dir, 'a.yaml'), manifest('a', 'busybox:2'));
    await clock.advance(20_000);
    expect(ops(config.updates)).toEqual(['ADD file a-n1', 'DELETE file a-n1']);
    expect(config.all()[0].spec!.containers[0].image).toBe('busybox:2');
    fs.rmSync(path.join(dir, 'a.yaml'));
    await clock.advance(20_000);
    expect(ops(config.updates)).toEqual(['DELETE file a-n1']);
    src.stop();
    expect(clock.pending()).toBe(0);
  });

  it('an HTTP source serves the same, and keeps its pods while the URL is unreachable', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-static-'));
    let body = `${manifest('web', 'nginx')}---\n${manifest('cache', 'redis')}`;
    let statusCode = 200;
    server = http.createServer((req, res) => { res.writeHead(statusCode); res.end(statusCode === 200 ? body : 'nope'); });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/pods.yaml`;
    const clock = new FakeClock();
    const config = new PodConfig();
    const problems: string[] = [];
    const src = new StaticPodHttpSource({ clock, config, nodeName: 'n1', onProblem: (p) => problems.push(p.message) }, url);
    await src.rescan();
    expect(ops(config.updates)).toEqual(['ADD http web-n1', 'ADD http cache-n1']);
    statusCode = 503;
    await src.rescan();
    expect(ops(config.updates)).toEqual([]);
    expect(problems).toEqual([`${url}: HTTP 503`]);
    statusCode = 200;
    body = manifest('web', 'nginx');
    await src.rescan();
    expect(ops(config.updates)).toEqual(['DELETE http cache-n1']);
    expect(() => new StaticPodHttpSource({ clock, config, nodeName: 'n1' }, 'ftp://x')).toThrow(/manifestURL: expected an http/);
  });
});

describe('SyncLoop', () => {
  it('syncs on config changes, runtime events, probe results, resync and requeue; stops after delete', async () => {
    const clock = new FakeClock();
    const config = new PodConfig();
    const events = new ResultChannel<RuntimeEvent>();
    const probes = new ResultChannel<ProbeUpdate>();
    const seen: string[] = [];
    const loop = new SyncLoop({
      clock, config, runtimeEvents: events, probeUpdates: probes, syncFrequencyMs: 60_000, tickMs: 1000,
      syncPod: async (w: SyncWork) => {
        seen.push(`${w.pod.metadata!.name}:${w.reason}${w.deleted ? ':deleted' : ''}`);
        // Ask to be looked at again in 10 s while "backing off".
        if (w.pod.metadata!.name === 'crashy' && !w.deleted) return { requeueAfterMs: 10_000 };
      },
    });
    loop.start();
    config.apply('store', 'ADD', mk('web', 'u1'));
    config.apply('store', 'ADD', mk('crashy', 'u2'));
    await clock.advance(0);
    await loop.workers.idle();
    expect(seen.splice(0).sort()).toEqual(['crashy:ADD', 'web:ADD']);

    events.push({ podUid: 'u1', containerId: 'c', type: 'exited' });
    events.push({ podUid: 'someone-else', containerId: 'x', type: 'exited' });
    probes.push({ podUid: 'u1', container: 'c', containerId: 'c', kind: 'readiness', result: 'success', output: '' });
    await clock.advance(0);
    await loop.workers.idle();
    expect(seen.splice(0)).toEqual(['web:pleg', 'web:probe']);

    await clock.advance(10_000);
    await loop.workers.idle();
    expect(seen.splice(0)).toEqual(['crashy:resync']);
    await clock.advance(50_000);
    await loop.workers.idle();
    expect(seen.splice(0).sort()).toEqual(['crashy:resync', 'crashy:resync', 'crashy:resync', 'crashy:resync', 'crashy:resync', 'web:resync']);

    config.apply('store', 'DELETE', mk('web', 'u1'));
    await clock.advance(0);
    await loop.workers.idle();
    expect(seen.splice(0)).toEqual(['web:DELETE:deleted']);
    events.push({ podUid: 'u1', containerId: 'c', type: 'deleted' });
    await clock.advance(120_000);
    await loop.workers.idle();
    expect(seen.filter((s) => s.startsWith('web'))).toEqual([]);
    expect(loop.running().map((p) => p.metadata!.name)).toEqual(['crashy']);
    loop.stop();
    events.close();
    probes.close();
    config.updates.close();
  });
});

describe('SyncLoop after a failed sync', () => {
  it('tries a pod again 2 s after its sync threw, and a deleted pod whose tear-down threw as a DELETE again', async () => {
    const clock = new FakeClock();
    const config = new PodConfig();
    const seen: string[] = [];
    const errors: string[] = [];
    let failures = 2;
    const loop = new SyncLoop({
      clock, config, syncFrequencyMs: 60_000, tickMs: 500,
      onError: (uid) => errors.push(uid),
      syncPod: async (w: SyncWork) => {
        seen.push(`${w.pod.metadata!.name}:${w.reason}`);
        if (failures-- > 0) throw new Error('runtime unreachable');
      },
    });
    loop.start();
    config.apply('store', 'ADD', mk('web', 'u1'));
    await clock.advance(0);
    await loop.workers.idle();
    expect(seen.splice(0)).toEqual(['web:ADD']);
    await clock.advance(2_000);
    await loop.workers.idle();
    expect(seen.splice(0)).toEqual(['web:resync']); // failed again: one more try
    await clock.advance(2_000);
    await loop.workers.idle();
    expect(seen.splice(0)).toEqual(['web:resync']);
    await clock.advance(10_000);
    await loop.workers.idle();
    expect(seen.splice(0)).toEqual([]); // succeeded: back to the normal period
    failures = 1;
    config.apply('store', 'DELETE', mk('web', 'u1'));
    await clock.advance(0);
    await loop.workers.idle();
    await clock.advance(2_000);
    await loop.workers.idle();
    expect(seen.splice(0)).toEqual(['web:DELETE', 'web:DELETE']);
    await clock.advance(120_000);
    await loop.workers.idle();
    expect(seen).toEqual([]);
    expect(errors).toEqual(['u1', 'u1', 'u1']);
    loop.stop();
    config.updates.close();
  });
});
