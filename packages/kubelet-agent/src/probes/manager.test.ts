// The probe manager's timing and thresholds with a fake clock, probing a real HTTP server on
// 127.0.0.1 whose answers the test flips: initial delay, period, success/failure thresholds,
// startup gating, liveness hold until the container is replaced, readiness flips.
import * as http from 'node:http';
import type * as net from 'node:net';
import { core } from '@berth/api';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../clock';
import { ProbeManager, type ProbeUpdate } from './manager';

describe('ProbeManager', () => {
  let server: http.Server;
  let port: number;
  const healthy: Record<string, boolean> = {};
  const hits: Record<string, number> = {};
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const p = req.url!.slice(1);
      hits[p] = (hits[p] ?? 0) + 1;
      res.writeHead(healthy[p] ? 200 : 500);
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  let clock: FakeClock;
  let mgr: ProbeManager;
  afterEach(() => {
    mgr?.close();
    for (const k of Object.keys(hits)) delete hits[k];
    for (const k of Object.keys(healthy)) delete healthy[k];
  });

  const uid = 'pod-1';
  const httpProbe = (path: string, p: Partial<core.Probe>) => core.Probe.fromPartial({ httpGet: { path: `/${path}`, port: { intValue: port } }, ...p });
  function setup(container: Partial<core.Container>) {
    clock = new FakeClock();
    mgr = new ProbeManager({ clock, exec: { exec: () => Promise.reject(new Error('no exec')) } });
    const pod = core.Pod.fromPartial({ metadata: { uid, name: 'p', namespace: 'default' }, spec: { containers: [{ name: 'app', ...container }] } });
    mgr.setContainerState(uid, 'app', { id: 'c1', running: true, startedAt: clock.now() });
    mgr.addPod(pod, '127.0.0.1');
  }
  async function step(ms: number) {
    await clock.advance(ms);
    await mgr.settled();
  }
  const updates = (): Omit<ProbeUpdate, 'output' | 'podUid'>[] => mgr.updates.drain().map(({ container, containerId, kind, result }) => ({ container, containerId, kind, result }));

  it('readiness: waits initialDelaySeconds, needs successThreshold successes, flips on failureThreshold failures', async () => {
    healthy.ready = true;
    setup({ readinessProbe: httpProbe('ready', { initialDelaySeconds: 5, periodSeconds: 2, successThreshold: 2, failureThreshold: 2 }) });
    expect(mgr.isReady(uid, 'app')).toBe(false);
    await step(0);
    await step(2000);
    await step(2000);
    expect(hits.ready ?? 0).toBe(0); // t=4s: still inside the initial delay
    await step(2000); // t=6s: first success
    expect(hits.ready).toBe(1);
    expect(updates()).toEqual([]);
    await step(2000); // second success reaches the threshold
    expect(updates()).toEqual([{ container: 'app', containerId: 'c1', kind: 'readiness', result: 'success' }]);
    expect(mgr.isReady(uid, 'app')).toBe(true);

    healthy.ready = false;
    await step(2000);
    expect(mgr.isReady(uid, 'app')).toBe(true); // one failure is below the threshold
    await step(2000);
    expect(updates()).toEqual([{ container: 'app', containerId: 'c1', kind: 'readiness', result: 'failure' }]);
    expect(mgr.isReady(uid, 'app')).toBe(false);
    healthy.ready = true;
    await step(2000);
    await step(2000);
    expect(updates().map((u) => u.result)).toEqual(['success']);
  });

  it('liveness: reports failure once after failureThreshold, then holds until the container is replaced', async () => {
    healthy.live = true;
    setup({ livenessProbe: httpProbe('live', { periodSeconds: 10, failureThreshold: 3 }) });
    await step(0);
    expect(mgr.livenessFailed(uid).size).toBe(0);
    healthy.live = false;
    for (let i = 0; i < 3; i++) await step(10_000);
    expect(updates()).toEqual([{ container: 'app', containerId: 'c1', kind: 'liveness', result: 'failure' }]);
    expect([...mgr.livenessFailed(uid)]).toEqual(['app']);
    const before = hits.live;
    await step(10_000);
    await step(10_000);
    expect(hits.live).toBe(before); // on hold: the container is about to be killed

    // The pod worker restarted it: a new container id starts probing from scratch.
    healthy.live = true;
    mgr.setContainerState(uid, 'app', { id: 'c2', running: true, startedAt: clock.now() });
    // The old instance's failure does not stick to the new one, even before the next probe.
    expect(mgr.livenessFailed(uid).size).toBe(0);
    await step(10_000);
    expect(hits.live).toBe(before + 1);
    expect(mgr.livenessFailed(uid).size).toBe(0);
    expect(updates()).toEqual([]);
  });

  it('startup gates liveness and readiness until it succeeds', async () => {
    healthy.live = true;
    healthy.ready = true;
    setup({
      startupProbe: httpProbe('startup', { periodSeconds: 1, failureThreshold: 30 }),
      livenessProbe: httpProbe('live', { periodSeconds: 1 }),
      readinessProbe: httpProbe('ready', { periodSeconds: 1 }),
    });
    for (let i = 0; i < 4; i++) await step(i ? 1000 : 0);
    expect(hits.startup).toBe(4);
    expect(hits.live ?? 0).toBe(0);
    expect(hits.ready ?? 0).toBe(0);
    expect(mgr.isStarted(uid, 'app')).toBe(false);
    healthy.startup = true;
    await step(1000);
    expect(mgr.isStarted(uid, 'app')).toBe(true);
    await step(1000);
    await step(1000);
    expect(hits.startup).toBe(5); // never again once started
    expect(hits.live).toBeGreaterThanOrEqual(1);
    expect(mgr.isReady(uid, 'app')).toBe(true);
    expect(updates().map((u) => `${u.kind}:${u.result}`)).toEqual(['startup:success', 'readiness:success']);
  });

  it('a container that stops running is not ready', async () => {
    healthy.ready = true;
    setup({ readinessProbe: httpProbe('ready', { periodSeconds: 1 }) });
    await step(0);
    expect(mgr.isReady(uid, 'app')).toBe(true);
    mgr.setContainerState(uid, 'app', { id: 'c1', running: false, startedAt: clock.now() });
    await step(1000);
    expect(mgr.isReady(uid, 'app')).toBe(false);
    expect(updates().map((u) => u.result)).toEqual(['success', 'failure']);
  });

  it('removePod stops its workers', async () => {
    healthy.ready = true;
    setup({ readinessProbe: httpProbe('ready', { periodSeconds: 1 }) });
    await step(0);
    mgr.removePod(uid);
    const n = hits.ready;
    await step(5000);
    expect(hits.ready).toBe(n);
    expect(clock.pending()).toBe(0);
  });
});
