// Pure-logic tests of the pod worker's sync over an in-memory runtime/network/images (the same
// worker runs against the real runtime-shim, cni-manager and Store in
// pod-sync.integration.test.ts): the order of the start-up path and what each request carries,
// restarts under the back-off, terminal pods, graceful deletion, bad input, and adoption.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core, runtime } from '@berth/api';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CrashLoopBackoff } from './backoff';
import { imageAccess, runtimeExec } from './clients';
import { FakeClock } from './clock';
import { EventRecorder } from './events';
import { PodSyncer } from './pod-sync';
import { ProbeManager } from './probes/manager';
import type { EventSink } from './seams';
import { StatusManager } from './status/manager';
import type { SyncWork } from './sync/sync-loop';
import { MemoryConfigs } from './testing/memory-configs';
import { MemoryRuntime } from './testing/memory-runtime';
import { MemoryPodStore } from './testing/memory-store';
import type { Mounter } from './volumes';

class Events implements EventSink {
  readonly list: core.Event[] = [];
  async create(e: core.Event) { this.list.push(e); return e; }
  async update(e: core.Event) { this.list.push(e); return e; }
  reasons(): string[] { return this.list.map((e) => `${e.reason}${e.involvedObject?.fieldPath ? ` ${e.involvedObject.fieldPath}` : ''}`); }
}

const noMounts: Mounter = { mountTmpfs: () => { throw new Error('no tmpfs in this test'); }, unmount: () => undefined, isMountPoint: () => false };

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-podsync-')); });
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function world(rt?: MemoryRuntime, clock = new FakeClock(Date.parse('2026-03-01T10:00:00Z')), nodeAllocatable: Record<string, string> = { cpu: '2', memory: '4Gi', pods: '110' }, inSource?: (uid: string) => boolean) {
  rt ??= new MemoryRuntime(clock);
  const store = new MemoryPodStore();
  const events = new Events();
  const configs = new MemoryConfigs();
  const deleted: string[] = [];
  const probes = new ProbeManager({ clock, exec: runtimeExec(rt) });
  const status = new StatusManager({ clock, store });
  const recorder = new EventRecorder({ clock, sink: events, host: 'node-a' });
  const syncer = new PodSyncer({
    clock, nodeName: 'node-a', rootDir: dir, runtime: rt, images: imageAccess(rt), network: rt, exec: runtimeExec(rt), configs, status, probes, recorder,
    backoff: new CrashLoopBackoff(clock), mounter: noMounts, cgroupParent: ['berth', 'node-a'], nodeAllocatable,
    memoryCapacityBytes: 4n << 30n, hostIPs: ['192.0.2.10'], dns: { resolvConf: path.join(dir, 'resolv.conf') }, inSource,
    store: { deletePod: async (ns, name, uid) => { deleted.push(`${ns}/${name}/${uid}`); }, annotatePod: async () => undefined },
  });
  fs.writeFileSync(path.join(dir, 'resolv.conf'), 'nameserver 192.0.2.53\nsearch example.test\noptions ndots:2\n');
  const sync = async (pod: core.Pod, extra: Partial<SyncWork> = {}) => {
    const r = await syncer.sync({ pod, reason: 'UPDATE', deleted: false, ...extra });
    await status.flush();
    await recorder.flush();
    return r;
  };
  const statusOf = (pod: core.Pod) => store.pods.get(`${pod.metadata!.namespace}/${pod.metadata!.name}`)!.status!;
  return { rt, clock, store, events, configs, deleted, probes, status, recorder, syncer, sync, statusOf };
}

function mkPod(name: string, spec: Partial<core.PodSpec>, meta: Partial<core.ObjectMeta> = {}): core.Pod {
  return core.Pod.fromPartial({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', uid: `uid-${name}`, ...meta }, spec: { nodeName: 'node-a', restartPolicy: 'Always', ...spec } as core.PodSpec });
}

describe('PodSyncer start-up path', () => {
  it('cgroup parent, sandbox, network, image, init containers in order, then app containers; Running and Ready with the pod IP', async () => {
    const w = world();
    w.rt.pullable.add('busybox:1.36');
    const pod = w.store.put(mkPod('web', {
      hostname: 'web-host',
      shareProcessNamespace: true,
      securityContext: { sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }] } as core.PodSecurityContext,
      initContainers: [{ name: 'init-a', image: 'busybox:1.36' }, { name: 'init-b', image: 'busybox:1.36' }] as core.Container[],
      containers: [
        { name: 'app', image: 'busybox:1.36', command: ['sh', '-c'], args: ['echo $(GREETING)'], env: [{ name: 'GREETING', value: 'hi' }], resources: { requests: { cpu: '250m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } } },
        { name: 'side', image: 'busybox:1.36', imagePullPolicy: 'IfNotPresent' },
      ] as core.Container[],
    }, { annotations: { 'kubernetes.io/ingress-bandwidth': '10M' } }));

    await w.sync(pod);
    expect(w.rt.calls).toEqual(['runPodSandbox web#0', 'setUpPod web /run/netns/sb1', 'pull busybox:1.36', 'createContainer init-a#0', 'startContainer init-a']);
    const sb = [...w.rt.sandboxes.values()][0].config;
    expect(sb.hostname).toBe('web-host');
    expect(sb.linux!.cgroupParent).toBe('berth/node-a/kubepods/burstable/poduid-web');
    expect(sb.linux!.sysctls).toEqual({ 'net.ipv4.ip_unprivileged_port_start': '0' });
    expect(sb.linux!.securityContext!.namespaceOptions).toMatchObject({ pid: 1, network: 1, ipc: 1 }); // POD: shared
    expect(sb.dnsConfig).toMatchObject({ servers: ['192.0.2.53'], searches: ['example.test'], options: ['ndots:2'] });
    expect(sb.labels).toMatchObject({ 'io.kubernetes.pod.uid': 'uid-web', 'berth.dev/node': 'node-a' });
    expect(sb.logDirectory).toBe(path.join(dir, 'logs', 'pods', 'default_web_uid-web'));
    expect(w.rt.setUps[0].bandwidth).toMatchObject({ ingressRate: 10_000_000 });
    let st = w.statusOf(pod);
    expect(st.phase).toBe('Pending');
    expect(st.podIP).toBe('10.88.0.2');
    expect(st.initContainerStatuses.map((c) => Object.keys(c.state!).find((k) => (c.state as never)[k]))).toEqual(['running', 'waiting']);

    // init-a still running: nothing else starts.
    w.rt.calls.length = 0;
    await w.sync(pod);
    expect(w.rt.calls).toEqual([]);
    w.rt.exit('init-a', 0);
    await w.sync(pod);
    expect(w.rt.calls).toEqual(['createContainer init-b#0', 'startContainer init-b']);
    w.rt.exit('init-b', 0);
    w.rt.calls.length = 0;
    await w.sync(pod);
    expect(w.rt.calls).toEqual(['createContainer app#0', 'startContainer app', 'createContainer side#0', 'startContainer side']);
    const app = [...w.rt.containers.values()].find((c) => c.config.metadata!.name === 'app')!.config;
    expect(app.args).toEqual(['echo hi']);
    expect(app.linux!.resources).toMatchObject({ cpuShares: 256, cpuQuota: 50_000, cpuPeriod: 100_000, memoryLimitInBytes: 128 * 1024 * 1024 });
    expect(app.logPath).toBe('app/0.log');
    st = w.statusOf(pod);
    expect(st.phase).toBe('Running');
    expect(st.conditions.filter((c) => c.status === 'True').map((c) => c.type)).toEqual(['PodScheduled', 'Initialized', 'ContainersReady', 'Ready']);
    expect(st.containerStatuses.map((c) => [c.name, c.ready, c.restartCount, !!c.state?.running])).toEqual([['app', true, 0, true], ['side', true, 0, true]]);
    expect(st.hostIP).toBe('192.0.2.10');
    // The image was pulled once; the second container found it present.
    expect(w.events.reasons().filter((r) => r.startsWith('Pull'))).toEqual(['Pulling spec.initContainers{init-a}', 'Pulled spec.initContainers{init-a}', 'Pulled spec.initContainers{init-b}', 'Pulled spec.containers{app}', 'Pulled spec.containers{side}']);
    expect(w.events.reasons()).toContain('Started spec.containers{app}');
  });

  it('restarts a crashing container at once, then waits 10 s, 20 s (CrashLoopBackOff) with the restart count in the status', async () => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    const pod = w.store.put(mkPod('crashy', { containers: [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never' }] as core.Container[] }));
    w.rt.onStart = () => 1; // exits 1 as soon as it starts
    await w.sync(pod);
    const r1 = await w.sync(pod); // exited: restarted at once (attempt 1)
    expect(r1).toBeUndefined();
    const r2 = await w.sync(pod); // exited again: back-off 10 s
    expect(r2?.requeueAfterMs).toBeGreaterThan(9_000);
    let st = w.statusOf(pod);
    expect(st.containerStatuses[0].state?.waiting).toMatchObject({ reason: 'CrashLoopBackOff', message: 'back-off 10s restarting failed container=app' });
    expect(st.containerStatuses[0].lastState?.terminated).toMatchObject({ exitCode: 1, reason: 'Error' });
    expect(st.containerStatuses[0].restartCount).toBe(1);
    expect(w.rt.calls.filter((c) => c.startsWith('startContainer'))).toHaveLength(2);
    await w.clock.advance(10_001);
    await w.sync(pod);
    expect(w.rt.calls.filter((c) => c.startsWith('startContainer'))).toHaveLength(3);
    const r3 = await w.sync(pod);
    expect(r3?.requeueAfterMs).toBeGreaterThan(19_000);
    st = w.statusOf(pod);
    expect(st.containerStatuses[0].restartCount).toBe(2);
    expect(w.events.reasons()).toContain('BackOff spec.containers{app}');
  });

  it('OnFailure: a container that exits 0 makes the pod Succeeded, stops the sandbox and never runs again', async () => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    const pod = w.store.put(mkPod('job', { restartPolicy: 'OnFailure', containers: [{ name: 'work', image: 'busybox', imagePullPolicy: 'IfNotPresent' }] as core.Container[] }));
    await w.sync(pod);
    w.rt.exit('work', 0);
    await w.sync(pod);
    expect(w.statusOf(pod).phase).toBe('Succeeded');
    expect(w.rt.calls).toContain('stopPodSandbox sb1');
    expect(w.rt.calls).toContain('tearDownPod job');
    const before = w.rt.calls.length;
    await w.sync(pod);
    await w.sync(pod);
    expect(w.rt.calls.slice(before).filter((c) => /^(run|create|start)/.test(c))).toEqual([]);
    expect(w.statusOf(pod).containerStatuses[0].state?.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' });
  });

  it('graceful delete: preStop, StopContainer with what is left of the grace period, network, sandbox, then the pod object', async () => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    const pod = w.store.put(mkPod('web', {
      containers: [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never', lifecycle: { preStop: { exec: { command: ['sh', '-c', 'drain'] } } } }] as core.Container[],
    }));
    await w.sync(pod);
    w.rt.calls.length = 0;
    const deleting = w.store.put({ ...pod, metadata: { ...pod.metadata!, deletionTimestamp: '2026-03-01T10:00:20Z', deletionGracePeriodSeconds: 20 } });
    await w.sync(deleting);
    expect(w.rt.calls).toEqual(['exec app sh -c drain', 'stopContainer app 20', 'tearDownPod web', 'stopPodSandbox sb1', 'removePodSandbox sb1']);
    expect(w.deleted).toEqual(['default/web/uid-web']);
    expect(w.statusOf(pod).containerStatuses[0].state?.terminated).toMatchObject({ exitCode: 143 });
    expect(w.rt.containers.size).toBe(0);
    expect(fs.existsSync(path.join(dir, 'pods', 'uid-web'))).toBe(false);
    // The informer's DELETE that follows finds nothing left to do.
    w.rt.calls.length = 0;
    await w.sync(deleting, { deleted: true, reason: 'DELETE' });
    expect(w.rt.calls).toEqual([]);
  });
});

describe('PodSyncer volumes', () => {
  it('a configMap volume follows its configMap while the pod runs (once a minute), swapped atomically', async () => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    w.configs.configMap('default', 'settings', { 'mode.txt': 'one' });
    const pod = w.store.put(mkPod('cfg', {
      volumes: [{ name: 'conf', configMap: { name: 'settings' } }] as core.Volume[],
      containers: [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never', volumeMounts: [{ name: 'conf', mountPath: '/etc/app' }] }] as core.Container[],
    }));
    await w.sync(pod);
    const app = [...w.rt.containers.values()][0].config;
    const host = app.mounts.find((m) => m.containerPath === '/etc/app')!;
    expect(host.readonly).toBe(true);
    expect(fs.readFileSync(path.join(host.hostPath, 'mode.txt'), 'utf8')).toBe('one');
    w.configs.configMap('default', 'settings', { 'mode.txt': 'two' });
    await w.sync(pod);
    expect(fs.readFileSync(path.join(host.hostPath, 'mode.txt'), 'utf8')).toBe('one'); // within the minute
    await w.clock.advance(60_000);
    await w.sync(pod);
    expect(fs.readFileSync(path.join(host.hostPath, 'mode.txt'), 'utf8')).toBe('two');
    expect(w.rt.calls.filter((c) => c.startsWith('startContainer'))).toHaveLength(1); // nothing restarted
  });
});

describe('PodSyncer admission', () => {
  it('rejects a pod the node has no room for (Failed, OutOf<resource>, event) and admits it once a pod finished', async () => {
    const w = world(undefined, undefined, { cpu: '1', memory: '1Gi', pods: '2' });
    w.rt.images.set('busybox', 'sha256:1');
    const ctr = (cpu: string) => [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never', resources: { requests: { cpu } } }] as core.Container[];
    const a = w.store.put(mkPod('a', { restartPolicy: 'Never', containers: ctr('600m') }));
    const b = w.store.put(mkPod('b', { containers: ctr('500m') }));
    await w.sync(a);
    await w.sync(b);
    expect(w.statusOf(b)).toMatchObject({ phase: 'Failed', reason: 'OutOfcpu', message: "Pod was rejected: Node didn't have enough resource: cpu, requested: 500, used: 600, capacity: 1000" });
    expect(w.rt.sandboxes.size).toBe(1);
    expect(w.events.reasons()).toContain('OutOfcpu');
    const c = w.store.put(mkPod('c', { containers: ctr('100m') }));
    await w.sync(c);
    expect(w.statusOf(c).phase).toBe('Running'); // 600m + 100m fit
    const d = w.store.put(mkPod('d', { containers: ctr('0') }));
    await w.sync(d);
    expect(w.statusOf(d)).toMatchObject({ phase: 'Failed', reason: 'OutOfpods', message: "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2" });
    // a finishes: its room is free again for a new pod.
    w.rt.exit('app', 0);
    await w.sync(a);
    expect(w.statusOf(a).phase).toBe('Succeeded');
    const e = w.store.put(mkPod('e', { containers: ctr('500m') }));
    await w.sync(e);
    expect(w.statusOf(e).phase).not.toBe('Failed');
  });
});

describe('PodSyncer admission of a rejected pod', () => {
  it('a rejected pod synced again while its Failed status is still being written stays rejected: nothing of it runs', async () => {
    const w = world(undefined, undefined, { cpu: '2', memory: '1Gi', pods: '1' });
    w.rt.images.set('busybox', 'sha256:1');
    const ctr = [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never' }] as core.Container[];
    const a = w.store.put(mkPod('a', { containers: ctr }));
    await w.sync(a);
    const b = w.store.put(mkPod('b', { containers: ctr }));
    let open!: () => void;
    w.store.gate = new Promise<void>((r) => { open = r; });
    await w.syncer.sync({ pod: b, reason: 'ADD', deleted: false });
    await w.clock.advance(10); // the status manager's batch goes out and waits in the Store
    // b as the informer still has it (no status yet), synced again (a probe, a runtime event)
    await w.syncer.sync({ pod: b, reason: 'UPDATE', deleted: false });
    open();
    await w.status.flush();
    expect(w.statusOf(b)).toMatchObject({ phase: 'Failed', reason: 'OutOfpods' });
    expect(w.rt.sandboxes.size).toBe(1);
  });
});

describe('PodSyncer admission of pods removed from the Store', () => {
  it('a pod deleted from the Store whose teardown is still running no longer counts: the pod bound in its place is admitted', async () => {
    const inSource = new Set<string>();
    const w = world(undefined, undefined, { cpu: '2', memory: '1Gi', pods: '2' }, (uid) => inSource.has(uid));
    w.rt.images.set('busybox', 'sha256:1');
    const ctr = [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never' }] as core.Container[];
    const [a, b] = ['a', 'b'].map((n) => { const p = w.store.put(mkPod(n, { containers: ctr })); inSource.add(p.metadata!.uid); return p; });
    await w.sync(a);
    await w.sync(b);
    // a is deleted in the Store (the scheduler stops counting it) but its teardown has not run
    // yet; c takes its place.
    inSource.delete(a.metadata!.uid);
    const c = w.store.put(mkPod('c', { containers: ctr }));
    inSource.add(c.metadata!.uid);
    await w.sync(c);
    expect(w.statusOf(c).phase).toBe('Running');
    // while a pod still in the Store keeps its room
    const d = w.store.put(mkPod('d', { containers: ctr }));
    inSource.add(d.metadata!.uid);
    await w.sync(d);
    expect(w.statusOf(d)).toMatchObject({ phase: 'Failed', reason: 'OutOfpods' });
  });
});

describe('PodSyncer eviction', () => {
  it('an evicted pod is killed, reported Failed/Evicted with the message and an event, and never restarted', async () => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    const pod = w.store.put(mkPod('hog', { containers: [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never' }] as core.Container[] }));
    await w.sync(pod);
    await w.syncer.evict(pod, 'The node was low on resource: memory. Threshold quantity: 100Mi, available: 90Mi.');
    await w.recorder.flush();
    const st = w.statusOf(pod);
    expect(st).toMatchObject({ phase: 'Failed', reason: 'Evicted', message: 'The node was low on resource: memory. Threshold quantity: 100Mi, available: 90Mi.' });
    expect(w.rt.running()).toEqual([]);
    expect(w.events.reasons()).toContain('Evicted');
    const before = w.rt.calls.length;
    await w.sync(pod);
    expect(w.rt.calls.slice(before).filter((c) => /^(run|create|start)/.test(c))).toEqual([]);
    expect(w.statusOf(pod).phase).toBe('Failed');
  });
});

describe('PodSyncer bad input', () => {
  it('a missing configMap and an image that may not be pulled: the right waiting reason and event, other pods unaffected', async () => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    const bad = w.store.put(mkPod('bad', {
      containers: [
        { name: 'env', image: 'busybox', imagePullPolicy: 'Never', env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'missing', key: 'k' } } }] },
        { name: 'img', image: 'example.test/nope:1', imagePullPolicy: 'Never' },
      ] as core.Container[],
    }));
    const good = w.store.put(mkPod('good', { containers: [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never' }] as core.Container[] }));
    await w.sync(bad);
    await w.sync(good);
    const st = w.statusOf(bad);
    expect(st.phase).toBe('Pending');
    expect(st.containerStatuses.map((c) => c.state?.waiting?.reason)).toEqual(['CreateContainerConfigError', 'ErrImageNeverPull']);
    expect(st.containerStatuses[0].state?.waiting?.message).toBe('spec.containers[0].env[0].valueFrom.configMapKeyRef: configmap "missing" not found');
    expect(w.events.reasons()).toEqual(expect.arrayContaining(['Failed spec.containers{env}', 'ErrImageNeverPull spec.containers{img}']));
    expect(w.statusOf(good).phase).toBe('Running');
    // The configMap appears: the next sync starts the container.
    w.configs.configMap('default', 'missing', { k: 'v' });
    await w.sync(bad);
    expect(w.statusOf(bad).containerStatuses[0].state?.running).toBeTruthy();
  });

  it('a sandbox that failed while the network service was away is made on the next sync (not stuck Pending)', async () => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    const pod = w.store.put(mkPod('retry', { containers: [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never' }] as core.Container[] }));
    const setUp = w.rt.setUpPod.bind(w.rt);
    w.rt.setUpPod = async () => { throw new Error('14 UNAVAILABLE: connect ECONNREFUSED cni-manager.sock'); };
    expect((await w.sync(pod))?.requeueAfterMs).toBe(10_000);
    expect(w.statusOf(pod).phase).toBe('Pending');
    expect(w.rt.sandboxes.size).toBe(0); // the half-made sandbox was removed
    expect(w.events.reasons()).toContain('FailedCreatePodSandBox');
    w.rt.setUpPod = setUp;
    await w.clock.advance(10_000);
    await w.sync(pod, { reason: 'requeue' });
    expect(w.statusOf(pod).phase).toBe('Running');
    expect(w.statusOf(pod).containerStatuses[0].state?.running).toBeTruthy();
  });

  it.each([
    [{ volumes: [{ name: 'h', hostPath: { path: '/nonexistent-berth-path', type: 'Directory' } }] }, 'ContainerCreating', 'FailedMount', /hostPath.*nonexistent-berth-path/],
    [{ dnsPolicy: 'Sometimes' }, 'CreateContainerConfigError', 'Failed', /spec\.dnsPolicy: unsupported value "Sometimes"/],
    [{ securityContext: { sysctls: [{ name: 'bad name', value: '1' }] } }, 'CreateContainerConfigError', 'Failed', /sysctls\[0\]\.name/],
  ])('pod-level problem %j: no sandbox, reason %s, event %s', async (spec, reason, event, msg) => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    const pod = w.store.put(mkPod('p', { ...(spec as Partial<core.PodSpec>), containers: [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never' }] as core.Container[] }));
    const r = await w.sync(pod);
    expect(r?.requeueAfterMs).toBe(10_000);
    expect(w.rt.sandboxes.size).toBe(0);
    const c = w.statusOf(pod).containerStatuses[0];
    expect(c.state?.waiting?.reason).toBe(reason);
    expect(c.state?.waiting?.message).toMatch(msg);
    expect(w.events.reasons()).toContain(event);
  });
});

describe('PodSyncer adoption', () => {
  it('a new worker over the same runtime (agent restart) starts nothing and reports the same pod', async () => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    const pod = w.store.put(mkPod('web', { containers: [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never' }] as core.Container[] }));
    await w.sync(pod);
    const before = w.statusOf(pod);
    const w2 = world(w.rt, w.clock);
    w2.store.put({ ...pod, status: before });
    w.rt.calls.length = 0;
    await w2.sync(w2.store.pods.get('default/web')!);
    expect(w.rt.calls.filter((c) => !c.startsWith('exec'))).toEqual([]);
    const after = w2.statusOf(pod);
    expect(after.phase).toBe('Running');
    expect(after.podIP).toBe(before.podIP);
    expect(after.containerStatuses[0].containerID).toBe(before.containerStatuses[0].containerID);
  });
});

describe('PodSyncer half-made sandbox', () => {
  it('a sandbox left without its network (agent killed between RunPodSandbox and SetUpPod) is finished, not made again', async () => {
    const w = world();
    w.rt.images.set('busybox', 'sha256:1');
    const pod = w.store.put(mkPod('half', { containers: [{ name: 'app', image: 'busybox', imagePullPolicy: 'Never' }] as core.Container[] }));
    await w.rt.runPodSandbox(runtime.RunPodSandboxRequest.fromPartial({ config: { metadata: { name: 'half', uid: 'uid-half', namespace: 'default' }, labels: { 'io.kubernetes.pod.uid': 'uid-half' } } }));
    w.rt.calls.length = 0;
    await w.sync(pod);
    expect(w.rt.calls).toEqual(['setUpPod half /run/netns/sb1', 'createContainer app#0', 'startContainer app']);
    expect(w.statusOf(pod)).toMatchObject({ phase: 'Running', podIP: '10.88.0.2' });
  });
});

describe('imageAccess', () => {
  it('shares one ImageStatus answer among containers starting at once, asks again after the TTL, never caches "missing"', async () => {
    let t = 0;
    const rt = new MemoryRuntime();
    rt.images.set('busybox', 'sha256:1');
    let asked = 0;
    const orig = rt.imageStatus.bind(rt);
    rt.imageStatus = async (req) => { asked++; return orig(req); };
    const access = imageAccess(rt, 1000, () => t);
    expect(await Promise.all(Array.from({ length: 20 }, () => access.present('busybox')))).toEqual(Array(20).fill('sha256:1'));
    expect(asked).toBe(1);
    t = 1500;
    await access.present('busybox');
    expect(asked).toBe(2);
    expect(await access.present('nope')).toBeUndefined();
    expect(await access.present('nope')).toBeUndefined();
    expect(asked).toBe(4);
  });
});
