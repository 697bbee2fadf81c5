// Crash safety with the real binary: 20 containers run in a pod, berth-runtime-shim is killed
// with SIGKILL, a new one starts on the same state; every container is still running, exec
// works again, an exit that happened while no daemon ran is recorded, and so are later exits.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import type { ServiceError } from '@grpc/grpc-js';
import { runtime } from '@berth/api';
import { createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { ImageStore, importPath } from './images';
import { mountsUnder } from './sandbox/sandbox';
import { uniqueId } from './testing/bundle';
import { removeCgroupTree, removeTestImageLayout, scrubStateDir, TEST_IMAGE, testImageLayout } from './testing/cri';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-runtime-shim.js');

type Client = runtime.RuntimeServiceClient;
function call<Req, Res>(client: Client, fn: (req: Req, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => fn.call(client, req, (e: ServiceError | null, r: Res) => (e ? reject(e) : resolve(r))));
}

let dir: string | undefined;
let svc: ServiceProcess | undefined;
let cgroupRoot: string | undefined;
afterAll(() => removeTestImageLayout());
afterEach(async () => {
  await svc?.stop();
  svc = undefined;
  if (dir !== undefined) {
    scrubStateDir(path.join(dir, 'state'));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (cgroupRoot !== undefined) removeCgroupTree(cgroupRoot);
  dir = cgroupRoot = undefined;
});

async function startDaemon(stateDir: string, sock: string): Promise<{ svc: ServiceProcess; client: Client }> {
  const s = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', stateDir]);
  expect(await waitServing(`unix://${sock}`), s.output()).toBe('SERVING');
  return { svc: s, client: createClient(runtime.RuntimeServiceClient, { target: `unix://${sock}` }) };
}

describe('crash safety', () => {
  it('keeps 20 containers running across a kill -9 of the daemon and records their exits', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-crash-'));
    cgroupRoot = `/${uniqueId('berth-test')}`;
    const stateDir = path.join(dir, 'state');
    const sock = path.join(dir, 'shim.sock');
    await importPath(new ImageStore({ root: path.join(stateDir, 'images') }), testImageLayout(), { name: TEST_IMAGE });

    let d = await startDaemon(stateDir, sock);
    svc = d.svc;
    const uid = uniqueId('uid');
    const { podSandboxId } = await call(d.client, d.client.runPodSandbox, runtime.RunPodSandboxRequest.fromPartial({
      config: { metadata: { name: 'crash', uid, namespace: 'default' }, logDirectory: path.join(dir, 'logs'), linux: { cgroupParent: `${cgroupRoot}/kubepods/besteffort/pod${uid}` } },
    }));
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { containerId } = await call(d.client, d.client.createContainer, runtime.CreateContainerRequest.fromPartial({
        podSandboxId,
        config: { metadata: { name: `c${i}` }, image: { image: TEST_IMAGE }, logPath: `c${i}.log`, command: ['sh', '-c', `echo hello ${i}; while [ ! -e /tmp/stop ]; do sleep 1; done; echo bye ${i}; exit ${i + 1}`] },
      }));
      await call(d.client, d.client.startContainer, { containerId });
      ids.push(containerId);
    }
    const pids = ids.map((id) => JSON.parse(fs.readFileSync(path.join(stateDir, 'containers', id, 'state.json'), 'utf8')).pid as number);
    // c0 is told to stop right before the daemon dies: it exits while no daemon runs.
    await call(d.client, d.client.execSync, { containerId: ids[0]!, cmd: ['mkdir', '/tmp/stop'], timeout: 10 });
    d.client.close();
    svc.proc.kill('SIGKILL');
    await svc.exited;
    // The containers do not care.
    for (const pid of pids.slice(1)) expect(fs.existsSync(`/proc/${pid}`)).toBe(true);

    d = await startDaemon(stateDir, sock);
    svc = d.svc;
    const list = await call(d.client, d.client.listContainers, { filter: { podSandboxId, id: '', state: 0, labelSelector: {} } });
    expect(list.containers).toHaveLength(20);
    for (const c of list.containers) if (c.id !== ids[0]) expect(c.state, c.metadata?.name).toBe(runtime.ContainerState.CONTAINER_STATE_RUNNING);
    const sb = await call(d.client, d.client.podSandboxStatus, { podSandboxId, verbose: false });
    expect(sb.status?.state).toBe(runtime.PodSandboxState.POD_SANDBOX_STATE_READY);

    // c0's exit, which no daemon saw, is recorded.
    for (let i = 0; i < 50; i++) {
      const st = await call(d.client, d.client.containerStatus, { containerId: ids[0]!, verbose: false });
      if (st.status?.state === runtime.ContainerState.CONTAINER_STATE_EXITED) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await call(d.client, d.client.containerStatus, { containerId: ids[0]!, verbose: false })).status).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: 1, reason: 'Error' });

    // Later exits are seen by the new daemon.
    const events = d.client.events({ podSandboxId });
    const stopped = new Map<string, number>();
    const allStopped = new Promise<void>((resolve) => events.on('data', (e: runtime.ContainerEvent) => {
      if (e.eventType === runtime.ContainerEventType.CONTAINER_EVENT_TYPE_STOPPED) stopped.set(e.containerId, e.exitCode);
      if (stopped.size === 19) resolve();
    }));
    events.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 100));
    try {
      for (const id of ids.slice(1)) await call(d.client, d.client.execSync, { containerId: id, cmd: ['mkdir', '/tmp/stop'], timeout: 10 });
      await allStopped;
    } finally {
      events.cancel();
    }
    for (const [i, id] of ids.entries()) {
      if (i > 0) expect(stopped.get(id)).toBe(i + 1);
      const st = await call(d.client, d.client.containerStatus, { containerId: id, verbose: false });
      expect(st.status).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: i + 1 });
      // The monitor kept writing the log across the crash.
      const log = fs.readFileSync(path.join(dir, 'logs', `c${i}.log`), 'utf8');
      expect(log).toMatch(new RegExp(`stdout F hello ${i}\\n.*stdout F bye ${i}\\n$`, 's'));
    }

    await call(d.client, d.client.removePodSandbox, { podSandboxId });
    d.client.close();
    expect(mountsUnder(stateDir)).toEqual([]);
    expect(fs.readdirSync(path.join(stateDir, 'cri'))).toEqual([]);
    expect(fs.readdirSync(path.join(stateDir, 'sandboxes'))).toEqual([]);
  }, 240_000); // 20 containers, two daemon starts: well over a minute on a loaded 2-core machine
});
