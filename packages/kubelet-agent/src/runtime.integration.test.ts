// A crash loop on the real runtime: berth-runtime-shim runs a container (busybox `sh -c 'exit 1'`
// from an OCI bundle whose config.json comes from `runc spec`) again and again as the agent's
// restart decisions say, the STOPPED events come back through the agent's PLEG mapping, and the
// restarts wait 0, 10, 20, 40, 80 s of (fake) time — CrashLoopBackOff in between, with the status
// the agent would report.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runtime } from '@berth/api';
import { createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrashLoopBackoff } from './backoff';
import { FakeClock } from './clock';
import { computePodActions } from './pod-actions';
import { CONTAINER_NAME_LABEL, POD_UID_LABEL, listDeadContainers, observedFromStatus, observedPodsFromRuntime, runtimeEvents, runtimeSeam } from './runtime-view';
import { containersToRemove } from './gc';
import { cleanupVolumes, nativeMounter, prepareVolumes } from './volumes';
import { MemoryConfigs } from './testing/memory-configs';
import { stopContainer } from './lifecycle';
import { realClock } from './clock';
import { core } from '@berth/api';
import { computePodStatus } from './status/compute';
import { ProbeManager, ResultChannel } from './probes/manager';
import type { RuntimeEvent } from './sync/sync-loop';
import { container, pod } from './testing/pods';

const shimBin = path.resolve(__dirname, '..', '..', 'runtime-shim', 'dist', 'bin', 'berth-runtime-shim.js');
let dir: string;
let svc: ServiceProcess | undefined;
let raw: (runtime.RuntimeServiceClient & { close(): void }) | undefined;

/** An OCI bundle: busybox rootfs, config.json from `runc spec` (the peer's defaults), our args. */
function makeBundle(parent: string, args: string[], memoryLimit?: number, hostNetwork = false, mounts: { destination: string; source: string; readOnly: boolean }[] = []): string {
  const b = fs.mkdtempSync(path.join(parent, 'bundle-'));
  fs.chmodSync(b, 0o755);
  const bin = path.join(b, 'rootfs', 'bin');
  fs.mkdirSync(bin, { recursive: true });
  for (const d of ['proc', 'dev', 'sys', 'tmp']) fs.mkdirSync(path.join(b, 'rootfs', d));
  fs.copyFileSync('/bin/busybox', path.join(bin, 'busybox'));
  fs.chmodSync(path.join(bin, 'busybox'), 0o755);
  for (const applet of ['sh', 'head', 'tr', 'httpd', 'sleep', 'cat', 'test']) fs.symlinkSync('busybox', path.join(bin, applet));
  execFileSync('runc', ['spec'], { cwd: b });
  const spec = JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = args;
  spec.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }];
  // hostNetwork: share the node's network namespace (probes then reach it on 127.0.0.1).
  if (hostNetwork) spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'network');
  for (const m of mounts) spec.mounts.push({ destination: m.destination, type: 'bind', source: m.source, options: ['rbind', m.readOnly ? 'ro' : 'rw'] });
  if (memoryLimit) spec.linux.resources = { ...spec.linux.resources, memory: { limit: memoryLimit, swap: memoryLimit } };
  fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify(spec));
  return b;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ka-rt-'));
  const sock = path.join(dir, 'rt.sock');
  svc = startServiceProcess(shimBin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--log-level', 'warn']);
  expect(await waitServing(`unix://${sock}`, 30_000), svc.output()).toBe('SERVING');
  raw = createClient(runtime.RuntimeServiceClient, { target: `unix://${sock}` }) as typeof raw;
}, 60_000);

afterAll(async () => {
  raw?.close();
  await svc?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('crash loop on the real runtime-shim', () => {
  it('restarts after 0, 10, 20, 40, 80 s with CrashLoopBackOff in between, seen through runtime events', async () => {
    const rt = runtimeSeam(raw);
    const bundle = makeBundle(dir, ['sh', '-c', 'exit 1']);
    const p = pod([container('app')], { uid: 'crash-1', name: 'crashy' });
    const clock = new FakeClock(Date.now());
    const backoff = new CrashLoopBackoff(clock);
    // The PLEG: runtime events mapped to pods through the labels the agent sets.
    const stream = raw!.events(runtime.EventsRequest.fromPartial({}));
    const labelsOf = new Map<string, string>();
    const events = new ResultChannel<RuntimeEvent>();
    const pump = (async () => { for await (const e of runtimeEvents(stream as AsyncIterable<runtime.ContainerEvent>, async (id) => labelsOf.get(id))) events.push(e); })().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100)); // the stream is registered
    const made: string[] = [];
    const restarts: number[] = [];
    let last: ReturnType<typeof observedFromStatus> | undefined;
    let sawBackoff = '';
    try {
      for (let loop = 0; loop < 400 && restarts.length < 5; loop++) {
        const actions = computePodActions(p.spec!, { sandbox: { id: 'sb', ready: true, attempt: 0 }, containers: last ? [last] : [] }, { podUid: 'crash-1', backoff });
        if (actions.start.includes('app')) {
          if (last) restarts.push(clock.now() - last.finishedAt);
          const attempt = last ? last.attempt + 1 : 0;
          const { containerId } = await rt.createContainer(runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'app', attempt }, labels: { [POD_UID_LABEL]: 'crash-1', [CONTAINER_NAME_LABEL]: 'app' }, annotations: { 'berth.io/oci-bundle': bundle } } }));
          labelsOf.set(containerId, 'crash-1');
          made.push(containerId);
          await rt.startContainer({ containerId });
          // Wait for the PLEG to say it exited, then read its status from the runtime.
          for (;;) {
            const ev = (await events.next()).value as RuntimeEvent;
            if (ev.containerId === containerId && ev.type === 'exited') break;
          }
          last = observedFromStatus((await rt.containerStatus({ containerId, verbose: false })).status!);
          // The runtime's clock is real; the agent's is fake: restart timing is in agent time.
          last = { ...last, finishedAt: clock.now() };
          continue;
        }
        if (actions.backoff.length && !sawBackoff) {
          sawBackoff = actions.backoff[0].message;
          const st = computePodStatus({ pod: p, containers: new Map([['app', { current: last, image: 'busybox', ready: false, started: false, waiting: { reason: 'CrashLoopBackOff', message: sawBackoff } }]]), now: clock.now(), hostIPs: [], podIPs: [] });
          expect(st.containerStatuses[0].state?.waiting?.reason).toBe('CrashLoopBackOff');
          expect(st.containerStatuses[0].lastState?.terminated).toMatchObject({ exitCode: 1, reason: 'Error' });
          expect(st.phase).toBe('Running');
        }
        await clock.advance(1000);
      }
      expect(restarts).toEqual([0, 10_000, 20_000, 40_000, 80_000]);
      expect(last).toMatchObject({ name: 'app', state: 'exited', exitCode: 1, reason: 'Error', attempt: 5 });
      expect(sawBackoff).toBe('back-off 10s restarting failed container=app');
      expect((await rt.listContainers({})).containers.filter((c) => c.labels[POD_UID_LABEL] === 'crash-1')).toHaveLength(6);
      // Container GC with the kubelet's defaults keeps the newest dead instance only.
      const dead = (await listDeadContainers(rt)).filter((c) => c.podUid === 'crash-1');
      expect(dead).toHaveLength(6);
      const remove = containersToRemove(dead, (uid) => uid === 'crash-1', Date.now() + 1000);
      expect(remove.map((c) => c.id).sort()).toEqual(made.slice(0, 5).sort());
      for (const c of remove) await rt.removeContainer({ containerId: c.id });
      expect((await listDeadContainers(rt)).filter((c) => c.podUid === 'crash-1').map((c) => c.id)).toEqual([made[5]]);
    } finally {
      stream.cancel();
      await pump;
      for (const id of made) await rt.removeContainer({ containerId: id }).catch(() => undefined);
    }
  });

  it('a container killed by the kernel OOM killer is reported OOMKilled', async () => {
    const rt = runtimeSeam(raw);
    const bundle = makeBundle(dir, ['sh', '-c', 'a=$(head -c 134217728 /dev/zero | tr "\\0" x); echo survived'], 16 * 1024 * 1024);
    const { containerId } = await rt.createContainer(runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'hog' }, labels: { [CONTAINER_NAME_LABEL]: 'hog' }, annotations: { 'berth.io/oci-bundle': bundle } } }));
    try {
      await rt.startContainer({ containerId });
      let st = (await rt.containerStatus({ containerId, verbose: false })).status!;
      for (let i = 0; i < 200 && st.state !== runtime.ContainerState.CONTAINER_STATE_EXITED; i++) {
        await new Promise((r) => setTimeout(r, 50));
        st = (await rt.containerStatus({ containerId, verbose: false })).status!;
      }
      const obs = observedFromStatus(st);
      expect(obs).toMatchObject({ name: 'hog', state: 'exited', reason: 'OOMKilled', exitCode: 137 });
      const p = pod([container('hog', { limits: { memory: '16Mi' } })], { uid: 'oom-1', name: 'oomy', spec: { restartPolicy: 'Never' } });
      const status = computePodStatus({ pod: p, containers: new Map([['hog', { current: obs, image: 'busybox', ready: false, started: false }]]), now: Date.now(), hostIPs: [], podIPs: [] });
      expect(status.phase).toBe('Failed');
      expect(status.containerStatuses[0].state?.terminated).toMatchObject({ reason: 'OOMKilled', exitCode: 137, signal: 9 });
    } finally {
      await rt.removeContainer({ containerId }).catch(() => undefined);
    }
  });

  it.each([
    ['handles SIGTERM: exits 0 within the grace period, after preStop', "trap 'exit 0' TERM; while :; do sleep 0.05; done", 0, 0, 1500],
    ['ignores SIGTERM: killed after the (minimum 2 s) grace period', "trap '' TERM; while :; do sleep 0.05; done", 137, 1900, 6000],
  ])('graceful stop through the real runtime: %s', async (_n, script, code, minMs, maxMs) => {
    const rt = runtimeSeam(raw);
    const bundle = makeBundle(dir, ['sh', '-c', script]);
    const { containerId } = await rt.createContainer(runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'web' }, labels: { [CONTAINER_NAME_LABEL]: 'web' }, annotations: { 'berth.io/oci-bundle': bundle } } }));
    try {
      await rt.startContainer({ containerId });
      await new Promise((r) => setTimeout(r, 200)); // the trap is installed
      const c = core.Container.fromPartial({ name: 'web', lifecycle: { preStop: { sleep: { seconds: 1 } } } });
      const t0 = Date.now();
      const out = await stopContainer({ podIP: '', containerId, container: c }, 2, {
        exec: { exec: () => Promise.reject(new Error('no exec')) },
        clock: realClock,
        stop: async (id, timeoutSeconds) => { await rt.stopContainer({ containerId: id, timeout: timeoutSeconds }); },
      });
      const took = Date.now() - t0 - (out.preStop?.elapsedMs ?? 0);
      expect(out.preStop?.ok).toBe(true);
      expect(out.stopTimeoutSeconds).toBe(2); // 2 s grace − 1 s preStop, but never under 2 s
      const st = observedFromStatus((await rt.containerStatus({ containerId, verbose: false })).status!);
      expect(st).toMatchObject({ state: 'exited', exitCode: code });
      expect(took).toBeGreaterThanOrEqual(minMs);
      expect(took).toBeLessThan(maxMs);
    } finally {
      await rt.removeContainer({ containerId }).catch(() => undefined);
    }
  });

  it('a restarted agent adopts running containers from the runtime instead of restarting them', async () => {
    const rt = runtimeSeam(raw);
    const long = makeBundle(dir, ['sh', '-c', 'while :; do sleep 0.1; done']);
    const quick = makeBundle(dir, ['sh', '-c', 'exit 3']);
    const labels = (name: string) => ({ [POD_UID_LABEL]: 'adopt-1', [CONTAINER_NAME_LABEL]: name });
    const ids: string[] = [];
    const run = async (name: string, attempt: number, bundle: string) => {
      const { containerId } = await rt.createContainer(runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name, attempt }, labels: labels(name), annotations: { 'berth.io/oci-bundle': bundle } } }));
      ids.push(containerId);
      await rt.startContainer({ containerId });
      return containerId;
    };
    try {
      // Before the "crash" of the agent: the sidecar-less pod has web (running, 2nd attempt)
      // and its first attempt that exited 3.
      const first = await run('web', 0, quick);
      for (let i = 0; i < 100 && observedFromStatus((await rt.containerStatus({ containerId: first, verbose: false })).status!).state !== 'exited'; i++) await new Promise((r) => setTimeout(r, 20));
      const second = await run('web', 1, long);
      // A fresh agent: nothing in memory, only the runtime.
      const pods = await observedPodsFromRuntime(rt);
      const web = pods.get('adopt-1')!.get('web')!;
      expect(web.current).toMatchObject({ id: second, state: 'running', attempt: 1 });
      expect(web.previous).toMatchObject({ id: first, state: 'exited', exitCode: 3, attempt: 0 });
      const p = pod([container('web')], { uid: 'adopt-1', name: 'adopt' });
      const actions = computePodActions(p.spec!, { sandbox: { id: 'sb', ready: true, attempt: 0 }, containers: [web.current] }, { podUid: 'adopt-1', backoff: new CrashLoopBackoff(new FakeClock()) });
      expect(actions).toMatchObject({ start: [], kill: [], backoff: [], createSandbox: false, killPod: false });
      const st = computePodStatus({ pod: p, containers: new Map([['web', { ...web, image: 'busybox', ready: true, started: true }]]), now: Date.now(), hostIPs: [], podIPs: [] });
      expect(st.containerStatuses[0]).toMatchObject({ restartCount: 1, ready: true, containerID: `berth://${second}` });
      expect(st.containerStatuses[0].lastState?.terminated).toMatchObject({ exitCode: 3, reason: 'Error' });
    } finally {
      for (const id of ids) {
        await rt.stopContainer({ containerId: id, timeout: 0 }).catch(() => undefined);
        await rt.removeContainer({ containerId: id }).catch(() => undefined);
      }
    }
  });

  it('readiness flips and a liveness failure restarts the container, probing a real container over HTTP', async () => {
    const rt = runtimeSeam(raw);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const bundle = makeBundle(dir, ['httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', '/www'], undefined, true);
    const www = path.join(bundle, 'rootfs', 'www');
    fs.mkdirSync(www);
    fs.writeFileSync(path.join(www, 'healthz'), 'ok');
    fs.writeFileSync(path.join(www, 'ready'), 'ok');
    const p = pod([container('web', {}, {
      ports: [{ name: 'http', containerPort: port, hostPort: 0, protocol: 'TCP', hostIP: '' }],
      // The startup probe holds liveness back while httpd comes up (it takes real time to start).
      startupProbe: core.Probe.fromPartial({ httpGet: { path: '/healthz', port: { stringValue: 'http' } }, periodSeconds: 1, failureThreshold: 1000, timeoutSeconds: 1 }),
      livenessProbe: core.Probe.fromPartial({ httpGet: { path: '/healthz', port: { stringValue: 'http' } }, periodSeconds: 10, failureThreshold: 2, timeoutSeconds: 1 }),
      readinessProbe: core.Probe.fromPartial({ httpGet: { path: '/ready', port: { stringValue: 'http' } }, periodSeconds: 5, failureThreshold: 3, timeoutSeconds: 1 }),
    })], { uid: 'probe-1', name: 'probed' });
    const clock = new FakeClock(Date.now());
    const mgr = new ProbeManager({ clock, exec: { exec: () => Promise.reject(new Error('no exec')) } });
    const backoff = new CrashLoopBackoff(clock);
    const ids: string[] = [];
    const start = async (attempt: number) => {
      const { containerId } = await rt.createContainer(runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'web', attempt }, labels: { [POD_UID_LABEL]: 'probe-1', [CONTAINER_NAME_LABEL]: 'web' }, annotations: { 'berth.io/oci-bundle': bundle } } }));
      ids.push(containerId);
      await rt.startContainer({ containerId });
      mgr.setContainerState('probe-1', 'web', { id: containerId, running: true, startedAt: clock.now() });
      return containerId;
    };
    const step = async (ms: number) => { await clock.advance(ms); await mgr.settled(); };
    const stepUntil = async (what: string, cond: () => boolean) => {
      for (let i = 0; i < 60 && !cond(); i++) { await new Promise((r) => setTimeout(r, 50)); await step(5000); }
      if (!cond()) throw new Error(`timed out waiting for ${what}`);
    };
    try {
      const first = await start(0);
      mgr.addPod(p, '127.0.0.1');
      await stepUntil('ready', () => mgr.isReady('probe-1', 'web'));

      // Readiness flips off after 3 failures and back on with the next success.
      fs.rmSync(path.join(www, 'ready'));
      await stepUntil('not ready', () => !mgr.isReady('probe-1', 'web'));
      fs.writeFileSync(path.join(www, 'ready'), 'ok');
      await stepUntil('ready again', () => mgr.isReady('probe-1', 'web'));
      expect(mgr.livenessFailed('probe-1').size).toBe(0);

      // Liveness fails twice: the pod worker kills and restarts the container.
      fs.rmSync(path.join(www, 'healthz'));
      await stepUntil('liveness failure', () => mgr.livenessFailed('probe-1').has('web'));
      const updates = mgr.updates.drain().filter((u) => u.kind === 'liveness');
      expect(updates.map((u) => `${u.result}:${u.output}`)).toEqual(['failure:HTTP probe failed with statuscode: 404']);
      const cur = observedFromStatus((await rt.containerStatus({ containerId: first, verbose: false })).status!);
      const actions = computePodActions(p.spec!, { sandbox: { id: 'sb', ready: true, attempt: 0 }, containers: [cur] }, { podUid: 'probe-1', backoff, livenessFailed: mgr.livenessFailed('probe-1') });
      expect(actions.kill).toEqual([{ name: 'web', id: first, reason: 'Container web failed liveness probe, will be restarted' }]);
      expect(actions.start).toEqual(['web']);
      await rt.stopContainer({ containerId: first, timeout: 2 });
      expect(observedFromStatus((await rt.containerStatus({ containerId: first, verbose: false })).status!).state).toBe('exited');
      fs.writeFileSync(path.join(www, 'healthz'), 'ok');
      const second = await start(1);
      await stepUntil('new instance ready', () => mgr.isReady('probe-1', 'web'));
      expect(mgr.livenessFailed('probe-1').size).toBe(0);
      expect(second).not.toBe(first);
    } finally {
      mgr.close();
      for (const id of ids) {
        await rt.stopContainer({ containerId: id, timeout: 0 }).catch(() => undefined);
        await rt.removeContainer({ containerId: id }).catch(() => undefined);
      }
    }
  });

  it.each([
    ['init containers run one by one to success, then the app starts', 'Always', ['exit 0', 'exit 0'], ['i0', 'i1', 'app'], 'Running'],
    ['a failed init container fails a Never pod and the app never starts', 'Never', ['exit 0', 'exit 4'], ['i0', 'i1'], 'Failed'],
    ['a failed init container is retried (OnFailure) and the next waits', 'OnFailure', ['exit 0', 'exit 4'], ['i0', 'i1', 'i1'], 'Pending'],
  ])('%s (real runtime)', async (_n, policy, inits, wantStarts, wantPhase) => {
    const rt = runtimeSeam(raw);
    const bundles = new Map<string, string>([['app', makeBundle(dir, ['sh', '-c', 'while :; do sleep 0.1; done'])]]);
    inits.forEach((script, i) => bundles.set(`i${i}`, makeBundle(dir, ['sh', '-c', script])));
    const p = pod([container('app')], { uid: `init-${policy}`, name: 'init', init: inits.map((_, i) => container(`i${i}`)), spec: { restartPolicy: policy } });
    const clock = new FakeClock(Date.now());
    const backoff = new CrashLoopBackoff(clock);
    const latest = new Map<string, ReturnType<typeof observedFromStatus>>();
    const starts: string[] = [];
    const ids: string[] = [];
    try {
      for (let round = 0; round < 40 && starts.length < wantStarts.length; round++) {
        // What the runtime says now (real exits), then what to do next.
        for (const [name, o] of latest) latest.set(name, { ...observedFromStatus((await rt.containerStatus({ containerId: o.id, verbose: false })).status!), finishedAt: o.state === 'exited' ? o.finishedAt : clock.now() });
        const actions = computePodActions(p.spec!, { sandbox: { id: 'sb', ready: true, attempt: 0 }, containers: [...latest.values()] }, { podUid: p.metadata!.uid, backoff });
        if (actions.done) break;
        for (const name of actions.start) {
          const attempt = latest.has(name) ? latest.get(name)!.attempt + 1 : 0;
          const { containerId } = await rt.createContainer(runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name, attempt }, labels: { [POD_UID_LABEL]: p.metadata!.uid, [CONTAINER_NAME_LABEL]: name }, annotations: { 'berth.io/oci-bundle': bundles.get(name)! } } }));
          ids.push(containerId);
          await rt.startContainer({ containerId });
          starts.push(name);
          latest.set(name, observedFromStatus((await rt.containerStatus({ containerId, verbose: false })).status!));
        }
        await new Promise((r) => setTimeout(r, 100)); // let real processes exit
        await clock.advance(1000);
      }
      expect(starts).toEqual(wantStarts);
      for (const [name, o] of latest) latest.set(name, observedFromStatus((await rt.containerStatus({ containerId: o.id, verbose: false })).status!));
      const st = computePodStatus({ pod: p, containers: new Map([...latest].map(([n, o]) => [n, { current: o, image: 'busybox', ready: o.state === 'running', started: o.state === 'running' }])), now: clock.now(), hostIPs: [], podIPs: [] });
      expect(st.phase).toBe(wantPhase);
      if (wantPhase === 'Running') expect(st.conditions.find((c) => c.type === 'Initialized')?.status).toBe('True');
      else expect(st.conditions.find((c) => c.type === 'Initialized')).toMatchObject({ status: 'False' });
    } finally {
      for (const id of ids) {
        await rt.stopContainer({ containerId: id, timeout: 0 }).catch(() => undefined);
        await rt.removeContainer({ containerId: id }).catch(() => undefined);
      }
    }
  });

  it('an emptyDir (tmpfs) is shared between two containers and a configMap volume is mounted read-only', async () => {
    const rt = runtimeSeam(raw);
    const p = pod([container('writer'), container('reader')], { uid: 'vol-1', name: 'vols', spec: { volumes: [
      core.Volume.fromPartial({ name: 'shared', emptyDir: { medium: 'Memory', sizeLimit: '4Mi' } }),
      core.Volume.fromPartial({ name: 'conf', configMap: { name: 'greetings' } }),
    ] } });
    const mounter = nativeMounter();
    const vols = await prepareVolumes({ rootDir: path.join(dir, 'kubelet'), pod: p, configs: new MemoryConfigs().configMap('default', 'greetings', { greeting: 'hi' }), mounter, nodeAllocatable: { memory: '1Gi' }, podIPs: [], hostIPs: [] });
    const mounts = vols.map((v) => ({ destination: v.name === 'shared' ? '/data' : '/config', source: v.hostPath, readOnly: v.readOnly }));
    const run = async (name: string, script: string) => {
      const { containerId } = await rt.createContainer(runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name }, labels: { [CONTAINER_NAME_LABEL]: name }, annotations: { 'berth.io/oci-bundle': makeBundle(dir, ['sh', '-c', script], undefined, false, mounts) } } }));
      await rt.startContainer({ containerId });
      let o = observedFromStatus((await rt.containerStatus({ containerId, verbose: false })).status!);
      for (let i = 0; i < 100 && o.state !== 'exited'; i++) {
        await new Promise((r) => setTimeout(r, 30));
        o = observedFromStatus((await rt.containerStatus({ containerId, verbose: false })).status!);
      }
      await rt.removeContainer({ containerId });
      return o.exitCode;
    };
    try {
      expect(await run('writer', 'echo hello > /data/msg')).toBe(0);
      expect(fs.readFileSync(path.join(vols[0].hostPath, 'msg'), 'utf8')).toBe('hello\n');
      expect(await run('reader', 'test "$(cat /data/msg)" = hello && test "$(cat /config/greeting)" = hi')).toBe(0);
      // The configMap volume is read-only inside the container.
      expect(await run('vandal', 'echo x > /config/greeting')).not.toBe(0);
      expect(fs.readFileSync(path.join(vols[1].hostPath, 'greeting'), 'utf8')).toBe('hi');
    } finally {
      cleanupVolumes(path.join(dir, 'kubelet'), 'vol-1', mounter);
    }
  });
});
