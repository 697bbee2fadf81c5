// Restart decisions as tables, the back-off schedule with a fake clock, and a crash loop of a
// real process (sh -c 'exit 1') driven by the decisions: restarts wait 0, 10, 20, 40, 80, 160,
// 300, 300 s of (fake) time, and a container that ran 10 minutes starts from 10 s again.
import { core } from '@berth/api';
import { afterEach, describe, expect, it } from 'vitest';
import { CrashLoopBackoff } from './backoff';
import { FakeClock } from './clock';
import { computePodActions, fmtDelay, type ObservedContainer, type ObservedPod } from './pod-actions';
import { LocalProcesses } from './testing/local-processes';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function spec(p: { policy?: string; init?: { name: string; sidecar?: boolean }[]; containers?: string[] }): core.PodSpec {
  return core.PodSpec.fromPartial({
    restartPolicy: p.policy ?? 'Always',
    initContainers: (p.init ?? []).map((i) => ({ name: i.name, image: 'busybox', restartPolicy: i.sidecar ? 'Always' : undefined })),
    containers: (p.containers ?? ['app']).map((name) => ({ name, image: 'busybox' })),
  });
}

const running = (name: string): ObservedContainer => ({ name, id: `${name}-id`, state: 'running', exitCode: 0, startedAt: T0, finishedAt: 0, reason: '', attempt: 0 });
const exited = (name: string, exitCode: number): ObservedContainer => ({ name, id: `${name}-id`, state: 'exited', exitCode, startedAt: T0, finishedAt: T0 + 1000, reason: exitCode ? 'Error' : 'Completed', attempt: 0 });
const sandbox = { id: 'sb', ready: true, attempt: 0 };

describe('computePodActions', () => {
  const cases: { name: string; spec: core.PodSpec; observed: ObservedPod; want: Partial<ReturnType<typeof computePodActions>> }[] = [
    { name: 'no sandbox: create it and start the containers', spec: spec({ containers: ['a', 'b'] }), observed: { containers: [] }, want: { createSandbox: true, killPod: false, start: ['a', 'b'] } },
    { name: 'no sandbox with init containers: only the first init starts', spec: spec({ init: [{ name: 'i1' }, { name: 'i2' }] }), observed: { containers: [] }, want: { createSandbox: true, start: ['i1'] } },
    { name: 'dead sandbox: kill and recreate', spec: spec({}), observed: { sandbox: { ...sandbox, ready: false }, containers: [running('app')] }, want: { createSandbox: true, killPod: true, start: ['app'] } },
    { name: 'dead sandbox of a Never pod that ran: no rerun, pod fails', spec: spec({ policy: 'Never' }), observed: { sandbox: { ...sandbox, ready: false }, containers: [running('app')] }, want: { createSandbox: false, killPod: true, done: 'Failed' } },
    { name: 'init containers run in order: i1 done -> start i2', spec: spec({ init: [{ name: 'i1' }, { name: 'i2' }] }), observed: { sandbox, containers: [exited('i1', 0)] }, want: { start: ['i2'] } },
    { name: 'init still running: wait', spec: spec({ init: [{ name: 'i1' }, { name: 'i2' }] }), observed: { sandbox, containers: [running('i1')] }, want: { start: [] } },
    { name: 'all init done: start app containers', spec: spec({ init: [{ name: 'i1' }], containers: ['a', 'b'] }), observed: { sandbox, containers: [exited('i1', 0)] }, want: { start: ['a', 'b'] } },
    { name: 'failed init with Always: retry it (first restart is immediate)', spec: spec({ init: [{ name: 'i1' }, { name: 'i2' }] }), observed: { sandbox, containers: [exited('i1', 1)] }, want: { start: ['i1'] } },
    { name: 'failed init with Never: pod fails', spec: spec({ policy: 'Never', init: [{ name: 'i1' }] }), observed: { sandbox, containers: [exited('i1', 2)] }, want: { start: [], done: 'Failed', initFailed: 'i1', killPod: true } },
    { name: 'sidecar is started and the next init waits for it to run', spec: spec({ init: [{ name: 'log', sidecar: true }, { name: 'i1' }] }), observed: { sandbox, containers: [] }, want: { start: ['log'] } },
    { name: 'running sidecar lets the next init start', spec: spec({ init: [{ name: 'log', sidecar: true }, { name: 'i1' }] }), observed: { sandbox, containers: [running('log')] }, want: { start: ['i1'] } },
    { name: 'Always restarts a container that exited 0', spec: spec({}), observed: { sandbox, containers: [exited('app', 0)] }, want: { start: ['app'] } },
    { name: 'OnFailure does not restart exit 0 and the pod succeeds', spec: spec({ policy: 'OnFailure' }), observed: { sandbox, containers: [exited('app', 0)] }, want: { start: [], done: 'Succeeded' } },
    { name: 'OnFailure restarts exit 1', spec: spec({ policy: 'OnFailure' }), observed: { sandbox, containers: [exited('app', 1)] }, want: { start: ['app'] } },
    { name: 'Never: one failed container fails the pod once all exited', spec: spec({ policy: 'Never', containers: ['a', 'b'] }), observed: { sandbox, containers: [exited('a', 0), exited('b', 137)] }, want: { start: [], done: 'Failed' } },
    { name: 'Never: not done while one still runs', spec: spec({ policy: 'Never', containers: ['a', 'b'] }), observed: { sandbox, containers: [exited('a', 0), running('b')] }, want: { start: [], done: undefined } },
    { name: 'finished pod stops its sidecars', spec: spec({ policy: 'Never', init: [{ name: 'log', sidecar: true }] }), observed: { sandbox, containers: [running('log'), exited('app', 0)] }, want: { done: 'Succeeded', kill: [{ name: 'log', id: 'log-id', reason: 'Stopping sidecar of a finished pod' }] } },
    { name: 'a created-but-never-started container is replaced', spec: spec({}), observed: { sandbox, containers: [{ ...running('app'), state: 'created' }] }, want: { start: ['app'], kill: [{ name: 'app', id: 'app-id', reason: 'Container app is in state created, will be recreated' }] } },
  ];
  it.each(cases)('$name', (c) => {
    const clock = new FakeClock(T0 + 1000);
    const got = computePodActions(c.spec, c.observed, { podUid: 'u', backoff: new CrashLoopBackoff(clock) });
    const defined = Object.fromEntries(Object.entries(c.want).filter(([, v]) => v !== undefined));
    expect(got).toMatchObject(defined);
    for (const [k, v] of Object.entries(c.want)) if (v === undefined) expect(got[k as keyof typeof got], k).toBeUndefined();
  });

  it('liveness failure kills the running container and restarts it unless the policy is Never', () => {
    const clock = new FakeClock(T0);
    for (const [policy, start] of [['Always', ['app']], ['OnFailure', ['app']], ['Never', []]] as const) {
      const got = computePodActions(spec({ policy }), { sandbox, containers: [running('app')] }, { podUid: 'u', backoff: new CrashLoopBackoff(clock), livenessFailed: new Set(['app']) });
      expect(got.kill, policy).toEqual([{ name: 'app', id: 'app-id', reason: 'Container app failed liveness probe, will be restarted' }]);
      expect(got.start, policy).toEqual(start);
    }
  });

  it('rejects an unknown restart policy naming the field', () => {
    expect(() => computePodActions(spec({ policy: 'Sometimes' }), { containers: [] }, { podUid: 'u', backoff: new CrashLoopBackoff(new FakeClock()) })).toThrow(/spec\.restartPolicy: unsupported value "Sometimes"/);
  });
});

describe('CrashLoopBackoff', () => {
  it('doubles from 10 s to 300 s and resets after 10 minutes of quiet', async () => {
    const clock = new FakeClock(T0);
    const b = new CrashLoopBackoff(clock);
    const seen = [];
    for (let i = 0; i < 8; i++) seen.push(b.next('k'));
    expect(seen).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
    expect(b.remaining('k', clock.now())).toBe(300_000);
    expect(b.next('k', 600_000)).toBe(10_000); // ran 10 min
    b.next('k');
    expect(b.delay('k')).toBe(20_000);
    await clock.advance(600_000);
    expect(b.next('k')).toBe(10_000); // 10 min since the last restart
  });

  it.each([[10_000, '10s'], [300_000, '5m0s'], [90_000, '1m30s']])('formats %s ms as %s', (ms, s) => expect(fmtDelay(ms)).toBe(s));
});

describe('crash loop of a real process', () => {
  let procs: LocalProcesses | undefined;
  afterEach(async () => { await procs?.close(); procs = undefined; });

  it('restarts a crashing container after 0, 10, 20, 40, 80, 160, 300, 300 s and reports CrashLoopBackOff in between', async () => {
    const clock = new FakeClock(T0);
    procs = new LocalProcesses(clock);
    const backoff = new CrashLoopBackoff(clock);
    const s = spec({ policy: 'Always' });
    const restarts: number[] = [];
    let lastStart = -1;
    let attempt = 0;
    let sawBackoffMessage = '';
    for (let loop = 0; loop < 2000 && restarts.length < 8; loop++) {
      const actions = computePodActions(s, { sandbox, containers: procs.observed() }, { podUid: 'u', backoff });
      if (actions.start.includes('app')) {
        const prev = procs.observed().find((c) => c.name === 'app');
        if (prev) restarts.push(clock.now() - prev.finishedAt);
        const id = procs.start('app', ['sh', '-c', 'exit 1'], attempt++);
        await procs.waitExit(id); // a real crash, exit status 1
        lastStart = clock.now();
        continue;
      }
      if (actions.backoff.length) sawBackoffMessage = actions.backoff[0].message;
      // Nothing to do yet: one simulated second passes (the pod worker's resync).
      await clock.advance(1000);
    }
    expect(lastStart).toBeGreaterThan(0);
    expect(restarts).toEqual([0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]);
    expect(sawBackoffMessage).toBe('back-off 5m0s restarting failed container=app');
    expect(procs.observed()[0]).toMatchObject({ state: 'exited', exitCode: 1, reason: 'Error' });
  });
});
