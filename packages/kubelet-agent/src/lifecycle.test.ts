// Hooks and graceful termination with real processes: preStop runs before the stop and its time
// counts against the grace period (never below 2 s), a process that handles SIGTERM exits in
// time, one that ignores it is SIGKILLed after the grace period; sleep hooks on a fake clock;
// postStart over HTTP against a real server. Image pull policies and pull back-off as tables.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { core } from '@berth/api';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock, realClock } from './clock';
import { ImagePuller, ImagePullError, type ImageAccess } from './images';
import { gracePeriodSeconds, runHandler, stopContainer } from './lifecycle';
import { LocalProcesses } from './testing/local-processes';

describe('graceful termination (real processes)', () => {
  let procs: LocalProcesses;
  let dir: string;
  afterEach(async () => {
    await procs?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs preStop first, counts its time against the grace period, and the process exits on SIGTERM', async () => {
    procs = new LocalProcesses(realClock);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-stop-'));
    const marker = path.join(dir, 'prestop');
    const id = procs.start('app', ['sh', '-c', `trap 'echo term >> ${marker}; exit 0' TERM; while :; do sleep 0.05; done`], 0);
    const container = core.Container.fromPartial({ name: 'app', lifecycle: { preStop: { exec: { command: ['sh', '-c', `sleep 1.2; echo prestop > ${marker}`] } } } });
    const stops: number[] = [];
    const t0 = Date.now();
    const out = await stopContainer({ podIP: '', containerId: id, container }, 5, { exec: procs, clock: realClock, stop: async (cid, s) => { stops.push(s); await procs.stop(cid, s); } });
    expect(out.preStop?.ok).toBe(true);
    expect(stops).toEqual([4]); // 5 s grace - 1 s spent in preStop
    expect(fs.readFileSync(marker, 'utf8')).toBe('prestop\nterm\n');
    expect(procs.observed()[0]).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(Date.now() - t0).toBeLessThan(4000);
  });

  it('a preStop longer than the grace period is cut off, the container still gets 2 s, then SIGKILL', async () => {
    procs = new LocalProcesses(realClock);
    const id = procs.start('app', ['sh', '-c', "trap '' TERM; while :; do sleep 0.05; done"], 0);
    const container = core.Container.fromPartial({ name: 'app', lifecycle: { preStop: { exec: { command: ['sleep', '30'] } } } });
    const failed: string[] = [];
    const stops: number[] = [];
    const t0 = Date.now();
    const out = await stopContainer({ podIP: '', containerId: id, container }, 1, { exec: procs, clock: realClock, onHookFailed: (m) => failed.push(m), stop: async (cid, s) => { stops.push(s); await procs.stop(cid, s); } });
    expect(out.preStop?.ok).toBe(false);
    expect(failed[0]).toMatch(/^PreStopHook failed: command \["sleep","30"\] timed out/);
    expect(stops).toEqual([2]);
    expect(procs.observed()[0]).toMatchObject({ state: 'exited', exitCode: 137 }); // ignored TERM, got KILL
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(2900);
    expect(took).toBeLessThan(8000);
  });

  it('grace 0 skips preStop and kills at once', async () => {
    procs = new LocalProcesses(realClock);
    const id = procs.start('app', ['sleep', '30'], 0);
    const container = core.Container.fromPartial({ name: 'app', lifecycle: { preStop: { exec: { command: ['false'] } } } });
    const out = await stopContainer({ podIP: '', containerId: id, container }, 0, { exec: procs, clock: realClock, stop: (cid, s) => procs.stop(cid, s) });
    expect(out).toEqual({ stopTimeoutSeconds: 0 });
    expect(procs.observed()[0]).toMatchObject({ state: 'exited', exitCode: 137 });
  });

  it('a sleep preStop waits on the clock', async () => {
    const clock = new FakeClock();
    const stops: number[] = [];
    const container = core.Container.fromPartial({ name: 'app', lifecycle: { preStop: { sleep: { seconds: 5 } } } });
    const p = stopContainer({ podIP: '', containerId: 'x', container }, 30, { exec: { exec: () => Promise.reject(new Error('no')) }, clock, stop: async (_c, s) => { stops.push(s); } });
    await clock.advance(4999);
    expect(stops).toEqual([]);
    await clock.advance(1);
    await p;
    expect(stops).toEqual([25]);
  });
});

describe('postStart over HTTP', () => {
  it('succeeds on 2xx and fails with the status otherwise', async () => {
    let code = 200;
    const server = http.createServer((_q, r) => { r.writeHead(code); r.end(); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const c = core.Container.fromPartial({ name: 'app', ports: [{ name: 'web', containerPort: port }] });
      const h = core.LifecycleHandler.fromPartial({ httpGet: { path: '/started', port: { stringValue: 'web' } } });
      expect((await runHandler(h, { podIP: '127.0.0.1', containerId: 'x', container: c }, { exec: () => Promise.reject(new Error()) }, realClock, 1000, 'lifecycle.postStart')).ok).toBe(true);
      code = 500;
      const r = await runHandler(h, { podIP: '127.0.0.1', containerId: 'x', container: c }, { exec: () => Promise.reject(new Error()) }, realClock, 1000, 'lifecycle.postStart');
      expect(r).toMatchObject({ ok: false, message: 'HTTP probe failed with statuscode: 500' });
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('gracePeriodSeconds', () => {
  const pod = (spec?: number, meta?: number) => core.Pod.fromPartial({ metadata: { name: 'p', deletionGracePeriodSeconds: meta }, spec: { terminationGracePeriodSeconds: spec } });
  it.each([
    [pod(), {}, 30], [pod(10), {}, 10], [pod(10, 3), {}, 3], [pod(10, 3), { deleteGrace: 0 }, 0], [pod(60), { probeOverride: 5 }, 5],
  ])('%#', (p, o, want) => expect(gracePeriodSeconds(p, o)).toBe(want));
  it('rejects a negative grace period', () => expect(() => gracePeriodSeconds(pod(), { deleteGrace: -1 })).toThrow(/gracePeriodSeconds: must be a non-negative number/));
});

describe('ImagePuller', () => {
  class Images implements ImageAccess {
    have = new Map<string, string>();
    failures = 0;
    pulls: string[] = [];
    async present(image: string) { return this.have.get(image); }
    async pull(image: string) {
      this.pulls.push(image);
      if (this.failures > 0) { this.failures--; throw new Error('manifest unknown'); }
      this.have.set(image, `sha256:${image.length}`);
      return `sha256:${image.length}`;
    }
  }
  const pod = core.Pod.fromPartial({ metadata: { uid: 'u1', name: 'p' } });
  const ctr = (image: string, imagePullPolicy = '') => core.Container.fromPartial({ name: 'c', image, imagePullPolicy });

  it.each([
    ['IfNotPresent uses what is there', 'busybox:1.36', 'IfNotPresent', true, [], ['Normal Pulled Container image "busybox:1.36" already present on machine']],
    ['IfNotPresent pulls what is missing', 'busybox:1.36', 'IfNotPresent', false, ['busybox:1.36'], ['Normal Pulling Pulling image "busybox:1.36"', /^Normal Pulled Successfully pulled image "busybox:1\.36" in \d+ms$/]],
    ['Always pulls even when present', 'busybox:1.36', 'Always', true, ['busybox:1.36'], ['Normal Pulling Pulling image "busybox:1.36"', /^Normal Pulled Successfully/]],
    ['default for :latest is Always', 'busybox:latest', '', true, ['busybox:latest'], ['Normal Pulling Pulling image "busybox:latest"', /^Normal Pulled/]],
    ['default for a tag is IfNotPresent', 'busybox:1.36', '', true, [], [/already present/]],
  ])('%s', async (_n, image, policy, present, pulls, events) => {
    const imgs = new Images();
    if (present) imgs.have.set(image, 'sha256:x');
    const ev: string[] = [];
    await new ImagePuller(imgs, new FakeClock()).ensure(pod, ctr(image, policy), (t, r, m) => ev.push(`${t} ${r} ${m}`));
    expect(imgs.pulls).toEqual(pulls);
    expect(ev).toHaveLength(events.length);
    events.forEach((e, i) => (typeof e === 'string' ? expect(ev[i]).toBe(e) : expect(ev[i]).toMatch(e)));
  });

  it('Never without the image is ErrImageNeverPull; a bad name is InvalidImageName', async () => {
    const p = new ImagePuller(new Images(), new FakeClock());
    await expect(p.ensure(pod, ctr('busybox:1', 'Never'), () => undefined)).rejects.toMatchObject({ reason: 'ErrImageNeverPull', message: 'Container image "busybox:1" is not present with pull policy of Never' });
    await expect(p.ensure(pod, ctr('Bad Image!'), () => undefined)).rejects.toMatchObject({ reason: 'InvalidImageName' });
    await expect(p.ensure(pod, ctr('busybox:1', 'Sometimes'), () => undefined)).rejects.toThrow(/imagePullPolicy: unsupported value "Sometimes"/);
  });

  it('a failed pull is ErrImagePull, retries wait (ImagePullBackOff) 10 s, then 20 s', async () => {
    const clock = new FakeClock();
    const imgs = new Images();
    imgs.failures = 2;
    const p = new ImagePuller(imgs, clock);
    const reasons: string[] = [];
    const attempt = async () => {
      try { await p.ensure(pod, ctr('app:v1'), () => undefined); reasons.push('ok'); } catch (e) { reasons.push((e as ImagePullError).reason); }
    };
    await attempt();
    await clock.advance(9_000);
    await attempt();
    await clock.advance(1_000);
    await attempt();
    await clock.advance(19_000);
    await attempt();
    await clock.advance(1_000);
    await attempt();
    expect(reasons).toEqual(['ErrImagePull', 'ImagePullBackOff', 'ErrImagePull', 'ImagePullBackOff', 'ok']);
    expect(imgs.pulls).toHaveLength(3);
  });
});
