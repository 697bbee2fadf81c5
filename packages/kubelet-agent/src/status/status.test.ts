// Status computation as tables (phase, conditions, container reasons), transition times over a
// sequence, the no-regress merge, and the status manager's batching, diffing and conflict retry.
import { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../clock';
import type { ObservedContainer } from '../pod-actions';
import { MemoryPodStore } from '../testing/memory-store';
import { computePodStatus, rfc3339, type ContainerView } from './compute';
import { StatusManager } from './manager';

const T0 = Date.parse('2026-03-01T10:00:00Z');

function mkPod(p: { policy?: string; init?: string[]; containers?: string[]; gates?: string[]; status?: core.PodStatus } = {}): core.Pod {
  return core.Pod.fromPartial({
    metadata: { name: 'web', namespace: 'default', uid: 'u1' },
    spec: {
      restartPolicy: p.policy ?? 'Always',
      initContainers: (p.init ?? []).map((name) => ({ name, image: 'busybox' })),
      containers: (p.containers ?? ['app']).map((name) => ({ name, image: 'busybox' })),
      readinessGates: (p.gates ?? []).map((conditionType) => ({ conditionType })),
    },
    status: p.status,
  });
}

const run = (name: string, attempt = 0): ObservedContainer => ({ name, id: `${name}-${attempt}`, state: 'running', exitCode: 0, startedAt: T0, finishedAt: 0, reason: '', attempt });
const exit = (name: string, code: number, reason = '', attempt = 0): ObservedContainer => ({ name, id: `${name}-${attempt}`, state: 'exited', exitCode: code, startedAt: T0, finishedAt: T0 + 5000, reason, attempt });
const view = (cur?: ObservedContainer, extra: Partial<ContainerView> = {}): ContainerView => ({ current: cur, image: 'busybox', ready: cur?.state === 'running', started: cur?.state === 'running', ...extra });

function status(pod: core.Pod, containers: Record<string, ContainerView>, now = T0, extra: Partial<Parameters<typeof computePodStatus>[0]> = {}) {
  return computePodStatus({ pod, containers: new Map(Object.entries(containers)), now, hostIPs: ['10.0.0.5'], podIPs: ['10.244.0.7'], startedAt: T0, ...extra });
}
const cond = (s: core.PodStatus) => Object.fromEntries(s.conditions.map((c) => [c.type, c.status === 'True' ? 'True' : `False:${c.reason}`]));
const stateOf = (s: core.ContainerStatus) => (s.state?.running ? 'running' : s.state?.terminated ? `terminated:${s.state.terminated.reason}` : `waiting:${s.state?.waiting?.reason}`);

describe('computePodStatus', () => {
  const cases = [
    { name: 'nothing created yet', pod: mkPod(), c: {}, phase: 'Pending', conds: { PodScheduled: 'True', Initialized: 'True', ContainersReady: 'False:ContainersNotReady', Ready: 'False:ContainersNotReady' }, states: ['waiting:ContainerCreating'] },
    { name: 'init container running', pod: mkPod({ init: ['i1'] }), c: { i1: view(run('i1')) }, phase: 'Pending', conds: { Initialized: 'False:ContainersNotInitialized' }, states: ['waiting:PodInitializing'], init: ['running'] },
    { name: 'all running and ready', pod: mkPod({ init: ['i1'] }), c: { i1: view(exit('i1', 0)), app: view(run('app')) }, phase: 'Running', conds: { Initialized: 'True', ContainersReady: 'True', Ready: 'True' }, states: ['running'], init: ['terminated:Completed'] },
    { name: 'running but readiness failing', pod: mkPod(), c: { app: view(run('app'), { ready: false }) }, phase: 'Running', conds: { ContainersReady: 'False:ContainersNotReady', Ready: 'False:ContainersNotReady' }, states: ['running'] },
    { name: 'readiness gate not met', pod: mkPod({ gates: ['example.com/lb'] }), c: { app: view(run('app')) }, phase: 'Running', conds: { ContainersReady: 'True', Ready: 'False:ReadinessGatesNotReady' }, states: ['running'] },
    { name: 'crash loop: waiting CrashLoopBackOff with the exit as last state', pod: mkPod(), c: { app: view(exit('app', 1, '', 4), { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 2m40s restarting failed container=app' } }) }, phase: 'Running', conds: { Ready: 'False:ContainersNotReady' }, states: ['waiting:CrashLoopBackOff'] },
    { name: 'image pull failing', pod: mkPod(), c: { app: view(undefined, { waiting: { reason: 'ErrImagePull', message: 'not found' } }) }, phase: 'Pending', conds: {}, states: ['waiting:ErrImagePull'] },
    { name: 'image pull backing off', pod: mkPod(), c: { app: view(undefined, { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "busybox"' } }) }, phase: 'Pending', conds: {}, states: ['waiting:ImagePullBackOff'] },
    { name: 'OOM-killed under Never fails the pod', pod: mkPod({ policy: 'Never' }), c: { app: view(exit('app', 137, 'OOMKilled')) }, phase: 'Failed', conds: { ContainersReady: 'False:PodCompleted', Ready: 'False:PodCompleted' }, states: ['terminated:OOMKilled'] },
    { name: 'OnFailure with all exit 0 succeeds', pod: mkPod({ policy: 'OnFailure', containers: ['a', 'b'] }), c: { a: view(exit('a', 0)), b: view(exit('b', 0)) }, phase: 'Succeeded', conds: { Ready: 'False:PodCompleted' }, states: ['terminated:Completed', 'terminated:Completed'] },
    { name: 'OnFailure with a failure keeps Running (it will restart)', pod: mkPod({ policy: 'OnFailure' }), c: { app: view(exit('app', 2)) }, phase: 'Running', conds: {}, states: ['terminated:Error'] },
    { name: 'Never with one failed and one ok fails', pod: mkPod({ policy: 'Never', containers: ['a', 'b'] }), c: { a: view(exit('a', 0)), b: view(exit('b', 1)) }, phase: 'Failed', conds: {}, states: ['terminated:Completed', 'terminated:Error'] },
    { name: 'failed init under Never fails the pod', pod: mkPod({ policy: 'Never', init: ['i1'] }), c: { i1: view(exit('i1', 3)) }, phase: 'Failed', conds: { Initialized: 'False:PodCompleted' }, states: ['waiting:PodInitializing'], init: ['terminated:Error'] },
  ];
  it.each(cases)('$name', (c) => {
    const s = status(c.pod, c.c as Record<string, ContainerView>);
    expect(s.phase).toBe(c.phase);
    expect(cond(s)).toMatchObject(c.conds);
    expect(s.containerStatuses.map(stateOf)).toEqual(c.states);
    if (c.init) expect(s.initContainerStatuses.map(stateOf)).toEqual(c.init);
    expect(s.hostIP).toBe('10.0.0.5');
    expect(s.podIPs).toEqual([{ ip: '10.244.0.7' }]);
    expect(s.qosClass).toBe('BestEffort');
    expect(s.startTime).toBe('2026-03-01T10:00:00Z');
  });

  it('reports exit details, signal, restart count and the runtime-prefixed container id', () => {
    const s = status(mkPod({ policy: 'Never' }), { app: view(exit('app', 137, 'OOMKilled', 2), { previous: exit('app', 1, '', 1), imageID: 'sha256:abc' }) });
    const cs = s.containerStatuses[0];
    expect(cs.state?.terminated).toMatchObject({ exitCode: 137, signal: 9, reason: 'OOMKilled', containerID: 'berth://app-2', startedAt: '2026-03-01T10:00:00Z', finishedAt: '2026-03-01T10:00:05Z' });
    expect(cs.lastState?.terminated).toMatchObject({ exitCode: 1, reason: 'Error' });
    expect(cs).toMatchObject({ restartCount: 2, imageID: 'sha256:abc', containerID: 'berth://app-2', ready: false });
  });

  it('keeps lastTransitionTime while a condition holds and moves it when it flips', () => {
    let pod = mkPod();
    const s1 = status(pod, { app: view(run('app'), { ready: false }) }, T0);
    pod = { ...pod, status: s1 };
    const s2 = status(pod, { app: view(run('app'), { ready: true }) }, T0 + 7000);
    pod = { ...pod, status: s2 };
    const s3 = status(pod, { app: view(run('app'), { ready: true }) }, T0 + 60_000);
    const t = (s: core.PodStatus, type: string) => s.conditions.find((c) => c.type === type)!.lastTransitionTime;
    expect(t(s1, 'Ready')).toBe(rfc3339(T0));
    expect(t(s2, 'Ready')).toBe(rfc3339(T0 + 7000));
    expect(t(s3, 'Ready')).toBe(rfc3339(T0 + 7000));
    expect(t(s3, 'PodScheduled')).toBe(rfc3339(T0));
  });

  it('never goes backwards: a finished pod whose containers the runtime forgot stays finished', () => {
    const done = status(mkPod({ policy: 'Never' }), { app: view(exit('app', 0, '', 3)) });
    expect(done.phase).toBe('Succeeded');
    // The agent restarted and the runtime lost the container: it would look "ContainerCreating".
    const after = status({ ...mkPod({ policy: 'Never' }), status: done }, {}, T0 + 100_000);
    expect(after.phase).toBe('Succeeded');
    expect(stateOf(after.containerStatuses[0])).toBe('terminated:Completed');
    expect(after.containerStatuses[0].restartCount).toBe(3);
    expect(after.startTime).toBe(done.startTime);
  });

  it('carries conditions owned by others', () => {
    const prev = core.PodStatus.fromPartial({ conditions: [{ type: 'example.com/lb', status: 'True', lastTransitionTime: '2026-01-01T00:00:00Z' }] });
    const s = status(mkPod({ gates: ['example.com/lb'], status: prev }), { app: view(run('app')) }, T0, { gates: new Map([['example.com/lb', true]]) });
    expect(cond(s)).toMatchObject({ Ready: 'True', 'example.com/lb': 'True' });
  });
});

describe('StatusManager', () => {
  function setup(batchMs = 10) {
    const clock = new FakeClock(T0);
    const store = new MemoryPodStore();
    const errors: string[] = [];
    const mgr = new StatusManager({ clock, store, batchMs, onError: (p, e) => errors.push(`${p}: ${(e as Error).message}`) });
    return { clock, store, mgr, errors };
  }
  const pods = (n: number) => Array.from({ length: n }, (_, i) => core.Pod.fromPartial({ metadata: { name: `p${i}`, namespace: 'default', uid: `u${i}` }, spec: { containers: [{ name: 'app' }] } }));

  it('batches writes: many updates to many pods within the window make one write per pod, with the last status', async () => {
    const { clock, store, mgr } = setup();
    const ps = pods(5).map((p) => store.put(p));
    for (const phase of ['Pending', 'Running']) for (const p of ps) mgr.setStatus(p, core.PodStatus.fromPartial({ phase }));
    expect(store.updates).toBe(0);
    await clock.advance(10);
    await mgr.flush();
    expect(store.updates).toBe(5);
    for (const p of ps) expect(store.pods.get(`default/${p.metadata!.name}`)!.status!.phase).toBe('Running');
  });

  it('does not write an unchanged status', async () => {
    const { clock, store, mgr } = setup();
    const p = store.put(pods(1)[0]);
    mgr.setStatus(p, core.PodStatus.fromPartial({ phase: 'Running' }));
    await clock.advance(10);
    await mgr.flush();
    mgr.setStatus(p, core.PodStatus.fromPartial({ phase: 'Running' }));
    await clock.advance(10);
    await mgr.flush();
    expect(store.updates).toBe(1);
  });

  it('retries on conflict with the re-read object and keeps the other writer\'s condition', async () => {
    const { clock, store, mgr } = setup();
    const p = store.put(pods(1)[0]);
    store.conflictsToInject = 2;
    mgr.setStatus(p, core.PodStatus.fromPartial({ phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] }));
    await clock.advance(10);
    await mgr.flush();
    const saved = store.pods.get('default/p0')!;
    expect(saved.status!.phase).toBe('Running');
    expect(store.updates).toBe(1);
    expect(mgr.writes).toBe(1);
  });

  it('keeps the newest status while the Store is unreachable and writes it when it returns', async () => {
    const { clock, store, mgr, errors } = setup();
    const p = store.put(pods(1)[0]);
    store.unreachable = true;
    mgr.setStatus(p, core.PodStatus.fromPartial({ phase: 'Running' }));
    await clock.advance(10);
    await mgr.flush();
    expect(new Set(errors)).toEqual(new Set(['default/p0: store is unreachable']));
    expect(store.pods.get('default/p0')!.status?.phase ?? '').toBe('');
    store.unreachable = false;
    await mgr.flush();
    expect(store.pods.get('default/p0')!.status!.phase).toBe('Running');
  });

  it('a pod whose writes keep failing does not hold back the next pod\'s status, and is retried with back-off', async () => {
    const { clock, store, mgr, errors } = setup();
    const settle = () => new Promise((r) => setImmediate(r));
    const [a, b] = pods(2).map((p) => store.put(p));
    store.failing.add('default/p0');
    mgr.setStatus(a, core.PodStatus.fromPartial({ phase: 'Running' }));
    await clock.advance(10);
    await settle();
    expect(errors).toEqual(['default/p0: default/p0: unavailable']);
    // b's status goes out after the batch window, not after p0's retry back-off (500 ms)
    mgr.setStatus(b, core.PodStatus.fromPartial({ phase: 'Running' }));
    await clock.advance(10);
    await settle();
    expect(store.pods.get('default/p1')!.status?.phase).toBe('Running');
    store.failing.clear();
    await clock.advance(10_000);
    await settle();
    expect(store.pods.get('default/p0')!.status?.phase).toBe('Running');
  });

  it('a write the node authorizer forbids (the pod was deleted or bound elsewhere) is not retried', async () => {
    const { clock, store, mgr, errors } = setup();
    const settle = () => new Promise((r) => setImmediate(r));
    const [a] = pods(1).map((p) => store.put(p));
    store.forbidden.add('default/p0');
    mgr.setStatus(a, core.PodStatus.fromPartial({ phase: 'Running' }));
    await clock.advance(10);
    await settle();
    expect(errors).toEqual(['default/p0: default/p0: forbidden']);
    // Even once the Store would take it, nothing is re-posted on the retry timer.
    store.forbidden.clear();
    await clock.advance(20_000);
    await settle();
    expect(errors).toHaveLength(1);
    expect(store.updates).toBe(0);
    // A new status for the pod (it is ours again) is written as usual.
    mgr.setStatus(a, core.PodStatus.fromPartial({ phase: 'Succeeded' }));
    await clock.advance(10);
    await settle();
    expect(store.pods.get('default/p0')!.status?.phase).toBe('Succeeded');
  });

  it('current() is the status being written while its write is out, not the older one the Store still holds', async () => {
    const { clock, store, mgr } = setup();
    const p = store.put({ ...pods(1)[0], status: core.PodStatus.fromPartial({ phase: 'Pending' }) });
    mgr.observe(p);
    let open!: () => void;
    store.gate = new Promise<void>((r) => { open = r; });
    mgr.setStatus(p, core.PodStatus.fromPartial({ phase: 'Failed', reason: 'OutOfpods' }));
    await clock.advance(10);
    const writing = mgr.flush();
    expect(mgr.current('u0')?.phase).toBe('Failed');
    open();
    await writing;
    expect(mgr.current('u0')?.phase).toBe('Failed');
  });

  it('a restarted agent does not regress what the Store holds', async () => {
    const { clock, store } = setup();
    const p = store.put({ ...pods(1)[0], status: core.PodStatus.fromPartial({ phase: 'Succeeded', containerStatuses: [{ name: 'app', restartCount: 4, state: { terminated: { exitCode: 0, reason: 'Completed' } } }] }) });
    const fresh = new StatusManager({ clock, store });
    fresh.setStatus(p, core.PodStatus.fromPartial({ phase: 'Pending', containerStatuses: [{ name: 'app', restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } }] }));
    await fresh.flush();
    const s = store.pods.get('default/p0')!.status!;
    expect(s.phase).toBe('Succeeded');
    expect(s.containerStatuses[0].restartCount).toBe(4);
    expect(s.containerStatuses[0].state?.terminated?.reason).toBe('Completed');
  });

  describe('reconcile (another writer changed a condition the kubelet owns)', () => {
    const readyStatus = core.PodStatus.fromPartial({ phase: 'Running', conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: rfc3339(T0) }, { type: 'ContainersReady', status: 'True', lastTransitionTime: rfc3339(T0) }] });
    const withReady = (p: core.Pod, status: string, extra: core.PodCondition[] = []) => ({ ...p, status: { ...p.status!, conditions: [...p.status!.conditions.map((c) => (c.type === 'Ready' ? { ...c, status } : c)), ...extra] } });
    async function written() {
      const { clock, store, mgr } = setup();
      const p = store.put(pods(1)[0]);
      mgr.setStatus(p, readyStatus);
      await clock.advance(10);
      await mgr.flush();
      return { clock, store, mgr, p: store.pods.get('default/p0')! };
    }

    it('posts the own view again, with the time it flips back as the transition time', async () => {
      const { clock, store, mgr, p } = await written();
      // the node lifecycle controller: Ready=False
      const marked = store.put(withReady(p, 'False'));
      await clock.advance(5000);
      expect(mgr.reconcile(marked)).toBe(true);
      await clock.advance(10);
      await mgr.flush();
      const ready = store.pods.get('default/p0')!.status!.conditions.find((c) => c.type === 'Ready')!;
      expect(ready).toMatchObject({ status: 'True', lastTransitionTime: rfc3339(T0 + 5010) });
      expect(store.updates).toBe(2);
    });

    it('leaves alone the echo of its own write, a stale event, conditions others own, and pods it never wrote', async () => {
      const { store, mgr, p } = await written();
      expect(mgr.reconcile(p)).toBe(false);
      const gate = store.put(withReady(p, 'True', [core.PodCondition.fromPartial({ type: 'example.com/gate', status: 'False' })]));
      expect(mgr.reconcile(gate)).toBe(false);
      // an event older than what the manager saw last
      expect(mgr.reconcile({ ...withReady(p, 'False'), metadata: { ...p.metadata!, resourceVersion: '1' } })).toBe(false);
      const other = store.put({ ...pods(2)[1], status: core.PodStatus.fromPartial({ phase: 'Running', conditions: [{ type: 'Ready', status: 'False' }] }) });
      expect(mgr.reconcile(other)).toBe(false);
      await mgr.flush();
      expect(store.updates).toBe(1);
    });

    it('forgets a pod once told to: no re-post after it is gone', async () => {
      const { store, mgr, p } = await written();
      mgr.forget(p.metadata!.uid);
      expect(mgr.reconcile(store.put(withReady(p, 'False')))).toBe(false);
    });
  });
});
