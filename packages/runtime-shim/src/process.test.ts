// The real binary as a real process: it serves health on its socket, answers what is not built
// yet with UNIMPLEMENTED, rejects bad config naming the key, and exits cleanly on SIGTERM.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { runtime } from '@berth/api';
import { checkHealth, createClient, createH2UnaryClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { makeBundle } from './testing/bundle';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-runtime-shim.js');

describe('berth-runtime-shim process', () => {
  let dir: string;
  let svc: ServiceProcess | undefined;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-runtime-shim-')); });
  afterEach(async () => {
    await svc?.stop();
    svc = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The daemon on a socket under `dir`, serving, and a grpc-js client with a promise `call`. */
  async function startShim() {
    const sock = path.join(dir, 'run', 'runtime-shim.sock');
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state')]);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    const client = createClient(runtime.RuntimeServiceClient, { target: `unix://${sock}` });
    const call = <Req, Res>(fn: (req: Req, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: Req): Promise<Res> =>
      new Promise((resolve, reject) => fn.call(client, req, (e: ServiceError | null, r: Res) => (e ? reject(e) : resolve(r))));
    return { client, call };
  }

  it('serves SERVING health on its 0600 socket and exits 0 on SIGTERM', async () => {
    const sock = path.join(dir, 'run', 'runtime-shim.sock');
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state')]);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    for (const name of ['berth.runtime.v1.RuntimeService', 'berth.runtime.v1.ImageService']) expect(await checkHealth(`unix://${sock}`, name)).toBe('SERVING');
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(dir, 'state')).isDirectory()).toBe(true);
    const client = createClient(runtime.RuntimeServiceClient, { target: `unix://${sock}` });
    const version = await new Promise<runtime.VersionResponse>((resolve, reject) => client.version({ version: 'v1' }, (e, r) => (e ? reject(e) : resolve(r))));
    expect(version).toMatchObject({ runtimeName: 'berth', runtimeApiVersion: 'v1' });
    const err = await new Promise<ServiceError | null>((resolve) => (client as any).runPodSandbox({}, (e: ServiceError | null) => resolve(e)));
    client.close();
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/^config: is required/);
    const exit = await svc.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('runs a container from an OCI bundle over gRPC: create, start, STOPPED event with the exit code, status, remove', async () => {
    const { client, call } = await startShim();
    const bundle = makeBundle(['sh', '-c', 'exit 7']);
    const events = client.events({ podSandboxId: '' });
    const stopped = new Promise<runtime.ContainerEvent>((resolve) => events.on('data', (e: runtime.ContainerEvent) => e.eventType === runtime.ContainerEventType.CONTAINER_EVENT_TYPE_STOPPED && resolve(e)));
    events.on('error', () => undefined);
    try {
      await new Promise((r) => setTimeout(r, 100)); // the stream is registered
      const { containerId } = await call(client.createContainer, runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'c1' }, annotations: { 'berth.io/oci-bundle': bundle.dir } } }));
      const st1 = await call(client.containerStatus, { containerId, verbose: false });
      expect(st1.status?.state).toBe(runtime.ContainerState.CONTAINER_STATE_CREATED);
      await call(client.startContainer, { containerId });
      const ev = await stopped;
      expect(ev).toMatchObject({ containerId, exitCode: 7 });
      const st2 = await call(client.containerStatus, { containerId, verbose: false });
      expect(st2.status).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: 7, reason: 'Error' });
      const list = await call(client.listContainers, {});
      expect(list.containers.map((c) => c.id)).toEqual([containerId]);
      await call(client.removeContainer, { containerId });
      await expect(call(client.containerStatus, { containerId, verbose: false })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(call(client.createContainer, runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'c2' } } }))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^pod_sandbox_id: is required/) });
      await expect(call(client.createContainer, runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'c3' }, annotations: { 'berth.io/oci-bundle': '/nonexistent-bundle' } } }))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    } finally {
      events.cancel();
      client.close();
      bundle.remove();
    }
  });

  it('WaitContainer: called before the start it returns the exit; at once once exited; NOT_FOUND for none; a removed created container is waited out', async () => {
    const { client, call } = await startShim();
    const bundle = makeBundle(['sh', '-c', 'sleep 0.2; exit 3']);
    const create = async (name: string): Promise<string> => (await call(client.createContainer, runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name }, annotations: { 'berth.io/oci-bundle': bundle.dir } } }))).containerId;
    try {
      const a = await create('a');
      let done = false;
      const waited = call(client.waitContainer, { containerId: a }).finally(() => { done = true; });
      await new Promise((r) => setTimeout(r, 100));
      expect(done).toBe(false); // created, not started: still waiting
      const t0 = Date.now();
      await call(client.startContainer, { containerId: a });
      const w = await waited;
      expect(Date.now() - t0).toBeGreaterThanOrEqual(150); // returned at the exit, not before
      expect(w).toMatchObject({ exitCode: 3, reason: 'Error' });
      expect(w.finishedAtUs).toBeGreaterThan(0);
      const st = await call(client.containerStatus, { containerId: a, verbose: false });
      expect(st.status).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: 3, finishedAtUs: w.finishedAtUs });
      // Exited already: at once, the same answer.
      expect(await call(client.waitContainer, { containerId: a })).toEqual(w);
      await call(client.removeContainer, { containerId: a });
      await expect(call(client.waitContainer, { containerId: a })).rejects.toMatchObject({ code: status.NOT_FOUND });
      // A created container removed while waited for: the wait returns with its kill.
      const b = await create('b');
      const killed = call(client.waitContainer, { containerId: b });
      await call(client.removeContainer, { containerId: b });
      expect(await killed).toMatchObject({ exitCode: 137 });
    } finally {
      client.close();
      bundle.remove();
    }
  });

  it('RunContainer: created, started, exited in order; removed with remove; kept without; runs on when the caller goes; bad input names the field', async () => {
    const { client, call } = await startShim();
    const sock = `unix://${path.join(dir, 'run', 'runtime-shim.sock')}`;
    const lean = createH2UnaryClient(runtime.RuntimeServiceService, { target: sock });
    const P = runtime.RunContainerPhase;
    const exit3 = makeBundle(['sh', '-c', 'exit 3']);
    const slow = makeBundle(['sh', '-c', 'sleep 0.4']);
    // A startContainer hook: the init holds for a start, as a plain create does.
    const hooked = makeBundle(['true'], (s) => { s.hooks = { startContainer: [{ path: '/bin/true' }] }; });
    const req = (b: { dir: string }, name: string, remove: boolean): runtime.RunContainerRequest =>
      runtime.RunContainerRequest.fromPartial({ config: { metadata: { name }, annotations: { 'berth.io/oci-bundle': b.dir } }, remove });
    const list = async (): Promise<string[]> => (await call<runtime.ListContainersRequest, runtime.ListContainersResponse>(client.listContainers, {})).containers.map((c) => c.id);
    const events: runtime.ContainerEvent[] = [];
    const stream = client.events({ podSandboxId: '' });
    stream.on('data', (e: runtime.ContainerEvent) => events.push(e));
    stream.on('error', () => undefined);
    try {
      await new Promise((r) => setTimeout(r, 100)); // the event stream is open
      for (const b of [exit3, hooked]) {
        const got: runtime.RunContainerResponse[] = [];
        for await (const m of lean.runContainer(req(b, `rm-${got.length}`, true))) got.push(m);
        const id = got[0]!.containerId;
        expect(got.map((m) => m.phase)).toEqual([P.RUN_CONTAINER_PHASE_CREATED, P.RUN_CONTAINER_PHASE_STARTED, P.RUN_CONTAINER_PHASE_EXITED]);
        expect(got.every((m) => m.containerId === id)).toBe(true);
        expect(got[1]!.startedAtUs).toBeGreaterThan(0);
        expect(got[2]).toMatchObject({ removed: true, exit: { exitCode: b === exit3 ? 3 : 0, reason: b === exit3 ? 'Error' : 'Completed' } });
        expect(got[2]!.exit!.finishedAtUs).toBeGreaterThanOrEqual(got[1]!.startedAtUs);
        await expect(call(client.containerStatus, { containerId: id, verbose: false })).rejects.toMatchObject({ code: status.NOT_FOUND });
        const of = (): runtime.ContainerEvent[] => events.filter((e) => e.containerId === id);
        for (let i = 0; i < 100 && of().length < 4; i++) await new Promise((r) => setTimeout(r, 20));
        const kinds = of().map((e) => e.eventType);
        const T = runtime.ContainerEventType;
        expect(kinds).toEqual([T.CONTAINER_EVENT_TYPE_CREATED, T.CONTAINER_EVENT_TYPE_STARTED, T.CONTAINER_EVENT_TYPE_STOPPED, T.CONTAINER_EVENT_TYPE_DELETED]);
      }
      // Without remove the exited container stays, as after WaitContainer (grpc-js client here).
      const kept: runtime.RunContainerResponse[] = await new Promise((resolve, reject) => {
        const out: runtime.RunContainerResponse[] = [];
        const st = client.runContainer(req(exit3, 'kept', false));
        st.on('data', (m: runtime.RunContainerResponse) => out.push(m));
        st.on('error', reject);
        st.on('end', () => resolve(out));
      });
      expect(kept.at(-1)).toMatchObject({ phase: P.RUN_CONTAINER_PHASE_EXITED, removed: false, exit: { exitCode: 3 } });
      const keptId = kept[0]!.containerId;
      expect((await call(client.containerStatus, { containerId: keptId, verbose: false })).status).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: 3 });
      await call(client.removeContainer, { containerId: keptId });
      // The caller leaves after the first message: the container runs on and is removed at its exit.
      let slowId = '';
      for await (const m of lean.runContainer(req(slow, 'left', true))) {
        slowId = m.containerId;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
      expect((await call(client.containerStatus, { containerId: slowId, verbose: false })).status?.state).toBe(runtime.ContainerState.CONTAINER_STATE_RUNNING);
      for (let i = 0; i < 100 && (await list()).includes(slowId); i++) await new Promise((r) => setTimeout(r, 50));
      expect(await list()).not.toContain(slowId);
      // Bad input: the field is named and nothing is left behind.
      const drain = async (r: runtime.RunContainerRequest): Promise<unknown> => {
        try {
          for await (const _ of lean.runContainer(r)) { /* none expected */ }
          return undefined;
        } catch (err) {
          return err;
        }
      };
      expect(await drain(runtime.RunContainerRequest.fromPartial({ remove: true }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'config: is required' });
      expect(await drain(req({ dir: path.join(dir, 'no-such-bundle') }, 'missing', true))).toMatchObject({ code: status.INVALID_ARGUMENT });
      expect(await drain(req({ dir: 'relative/bundle' }, 'relative', true))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('config.annotations.berth.io/oci-bundle') });
      expect(await list()).toEqual([]);
      expect(fs.readdirSync(path.join(dir, 'state', 'containers')).filter((n) => !n.startsWith('.'))).toEqual([]);
    } finally {
      stream.cancel();
      lean.close();
      client.close();
      for (const b of [exit3, slow, hooked]) b.remove();
    }
  });

  it('reads a bundle\'s config.json again once it has changed (the parsed spec is kept only while the file is the same)', async () => {
    await startShim();
    const lean = createH2UnaryClient(runtime.RuntimeServiceService, { target: `unix://${path.join(dir, 'run', 'runtime-shim.sock')}` });
    const bundle = makeBundle(['sh', '-c', 'exit 3']);
    const run = async (): Promise<number | unknown> => {
      try {
        let code = -1;
        for await (const m of lean.runContainer(runtime.RunContainerRequest.fromPartial({ config: { metadata: { name: 'c' }, annotations: { 'berth.io/oci-bundle': bundle.dir } }, remove: true }))) code = m.exit?.exitCode ?? code;
        return code;
      } catch (err) {
        return err;
      }
    };
    try {
      expect(await run()).toBe(3);
      expect(await run()).toBe(3);
      bundle.spec.process!.args = ['sh', '-c', 'exit 4'];
      bundle.write();
      expect(await run()).toBe(4);
      fs.writeFileSync(path.join(bundle.dir, 'config.json'), '{"ociVersion": "1.0.2", "process": ');
      expect(await run()).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('invalid JSON') });
      bundle.write();
      expect(await run()).toBe(4);
    } finally {
      lean.close();
      bundle.remove();
    }
  });

  it('empties removed containers\' dirs after the answer, and those a stopped daemon left at its next start', async () => {
    // What a daemon killed between a remove and the emptying of its dir leaves behind.
    const cri = path.join(dir, 'state', 'cri');
    const left = path.join(cri, `.removed-${'a'.repeat(64)}`);
    fs.mkdirSync(left, { recursive: true });
    fs.writeFileSync(path.join(left, 'meta.json'), '{}');
    const { client, call } = await startShim();
    const bundle = makeBundle(['true']);
    try {
      expect(fs.existsSync(left)).toBe(false);
      const { containerId } = await call<runtime.CreateContainerRequest, runtime.CreateContainerResponse>(client.createContainer, runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'gone' }, annotations: { 'berth.io/oci-bundle': bundle.dir } } }));
      await call(client.startContainer, { containerId });
      await call(client.waitContainer, { containerId });
      await call(client.removeContainer, { containerId });
      expect(fs.existsSync(path.join(cri, containerId))).toBe(false);
      for (let i = 0; i < 100 && fs.readdirSync(cri).length > 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(fs.readdirSync(cri)).toEqual([]);
    } finally {
      client.close();
      bundle.remove();
    }
  });

  it('reaps orphans of a container without its own pid namespace (the daemon is their subreaper)', async () => {
    const { client, call } = await startShim();
    // sh exits at once; its two sleeps are orphaned to the daemon and die 0.3 s later
    const bundle = makeBundle(['sh', '-c', 'sleep 0.3 & sleep 0.3 & exit 0'], (s) => {
      s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'pid');
    });
    const daemon = svc.proc.pid!;
    const children = (): string[] => fs.readdirSync(`/proc/${daemon}/task`).flatMap((t) => fs.readFileSync(`/proc/${daemon}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
    try {
      const { containerId } = await call(client.createContainer, runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'orphans' }, annotations: { 'berth.io/oci-bundle': bundle.dir } } }));
      await call(client.startContainer, { containerId });
      await new Promise((r) => setTimeout(r, 150));
      expect(children().length).toBeGreaterThanOrEqual(2); // the orphaned sleeps are the daemon's now
      let left = children();
      for (let i = 0; i < 100 && left.length > 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        left = children();
      }
      expect(left).toEqual([]); // no zombie left behind
      await call(client.removeContainer, { containerId });
    } finally {
      client.close();
      bundle.remove();
    }
  });

  it('uses BERTH_RUN_DIR for its default socket', async () => {
    const runDir = path.join(dir, 'run');
    svc = startServiceProcess(bin, ['--state-dir', path.join(dir, 'state')], { ...process.env, BERTH_RUN_DIR: runDir });
    expect(await waitServing(`unix://${path.join(runDir, 'runtime-shim.sock')}`), svc.output()).toBe('SERVING');
  });

  it.each([
    [['--listen', 'not-an-address'], /--listen: expected unix:\/\/\/absolute\/path or host:port/],
    [['--no-such-flag'], /Unknown option '--no-such-flag'/],
    [['--listen', '127.0.0.1:0', '--state-dir', '/tmp'], /TCP listener 127\.0\.0\.1:0 needs TLS/],
  ])('exits 2 with a clear error for %j', async (args, re) => {
    svc = startServiceProcess(bin, args as string[]);
    const exit = await svc.exited;
    expect(exit.code).toBe(2);
    expect(svc.output()).toMatch(re);
    expect(svc.output()).toMatch(/^berth-runtime-shim: error: /m);
  });
});
