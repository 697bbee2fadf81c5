// Crash safety with the real binary: 20 containers run in a pod, berth-runtime-shim is killed
// with SIGKILL, a new one starts on the same state; every container is still running, exec
// works again, an exit that happened while no daemon ran is recorded, and so are later exits.
// And a bundle container whose create a kill -9 cut short before its record was written is
// removed, init, cgroups and state, by the next daemon.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { runtime } from '@berth/api';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { mountsUnder } from './sandbox/sandbox';
import { makeBundle, uniqueId, type Bundle } from './testing/bundle';
import { removeTestImageLayout, ShimFixture, TEST_IMAGE } from './testing/cri';

let fx: ShimFixture | undefined;
let bundle: Bundle | undefined;
afterAll(() => removeTestImageLayout());
afterEach(async () => {
  await fx?.cleanup();
  fx = undefined;
  bundle?.remove();
  bundle = undefined;
});

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !ok(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Gone, or a zombie of someone else's (killed; its new parent reaps it). */
function dead(pid: number): boolean {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

describe('crash safety', () => {
  it('keeps 20 containers running across a kill -9 of the daemon and records their exits', async () => {
    fx = new ShimFixture('berth-crash-');
    const { stateDir, cgroupRoot, dir } = fx;
    await fx.importImage();
    let client = await fx.start();
    const { call } = fx;
    const uid = uniqueId('uid');
    const { podSandboxId } = await call(client.runPodSandbox, runtime.RunPodSandboxRequest.fromPartial({
      config: { metadata: { name: 'crash', uid, namespace: 'default' }, logDirectory: path.join(dir, 'logs'), linux: { cgroupParent: `${cgroupRoot}/kubepods/besteffort/pod${uid}` } },
    }));
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { containerId } = await call(client.createContainer, runtime.CreateContainerRequest.fromPartial({
        podSandboxId,
        config: { metadata: { name: `c${i}` }, image: { image: TEST_IMAGE }, logPath: `c${i}.log`, command: ['sh', '-c', `echo hello ${i}; while [ ! -e /tmp/stop ]; do sleep 1; done; echo bye ${i}; exit ${i + 1}`] },
      }));
      await call(client.startContainer, { containerId });
      ids.push(containerId);
    }
    const pids = ids.map((id) => JSON.parse(fs.readFileSync(path.join(stateDir, 'containers', id, 'state.json'), 'utf8')).pid as number);
    // c0 is told to stop right before the daemon dies: it exits while no daemon runs.
    await call(client.execSync, { containerId: ids[0]!, cmd: ['mkdir', '/tmp/stop'], timeout: 10 });
    fx.svc!.proc.kill('SIGKILL');
    await fx.svc!.exited;
    // The containers do not care.
    for (const pid of pids.slice(1)) expect(fs.existsSync(`/proc/${pid}`)).toBe(true);

    client = await fx.start();
    const list = await call(client.listContainers, { filter: { podSandboxId, id: '', state: 0, labelSelector: {} } });
    expect(list.containers).toHaveLength(20);
    for (const c of list.containers) if (c.id !== ids[0]) expect(c.state, c.metadata?.name).toBe(runtime.ContainerState.CONTAINER_STATE_RUNNING);
    const sb = await call(client.podSandboxStatus, { podSandboxId, verbose: false });
    expect(sb.status?.state).toBe(runtime.PodSandboxState.POD_SANDBOX_STATE_READY);

    // c0's exit, which no daemon saw, is recorded.
    for (let i = 0; i < 50; i++) {
      const st = await call(client.containerStatus, { containerId: ids[0]!, verbose: false });
      if (st.status?.state === runtime.ContainerState.CONTAINER_STATE_EXITED) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await call(client.containerStatus, { containerId: ids[0]!, verbose: false })).status).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: 1, reason: 'Error' });

    // Later exits are seen by the new daemon.
    const events = client.events({ podSandboxId });
    const stopped = new Map<string, number>();
    const allStopped = new Promise<void>((resolve) => events.on('data', (e: runtime.ContainerEvent) => {
      if (e.eventType === runtime.ContainerEventType.CONTAINER_EVENT_TYPE_STOPPED) stopped.set(e.containerId, e.exitCode);
      if (stopped.size === 19) resolve();
    }));
    events.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 100));
    try {
      for (const id of ids.slice(1)) await call(client.execSync, { containerId: id, cmd: ['mkdir', '/tmp/stop'], timeout: 10 });
      await allStopped;
    } finally {
      events.cancel();
    }
    for (const [i, id] of ids.entries()) {
      if (i > 0) expect(stopped.get(id)).toBe(i + 1);
      const st = await call(client.containerStatus, { containerId: id, verbose: false });
      expect(st.status).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: i + 1 });
      // The monitor kept writing the log across the crash.
      const log = fs.readFileSync(path.join(dir, 'logs', `c${i}.log`), 'utf8');
      expect(log).toMatch(new RegExp(`stdout F hello ${i}\\n.*stdout F bye ${i}\\n$`, 's'));
    }

    await call(client.removePodSandbox, { podSandboxId });
    expect(mountsUnder(stateDir)).toEqual([]);
    expect(fs.readdirSync(path.join(stateDir, 'cri'))).toEqual([]);
    expect(fs.readdirSync(path.join(stateDir, 'sandboxes'))).toEqual([]);
  }, 240_000); // 20 containers, two daemon starts: well over a minute on a loaded 2-core machine

  it('removes a bundle container whose create was cut short before its record: init, cgroups and state', async () => {
    fx = new ShimFixture('berth-crash-bundle-');
    const { stateDir, call } = fx;
    let client = await fx.start();
    bundle = makeBundle(['sleep', '60']);
    const { containerId } = await call(client.createContainer, runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'cut' }, annotations: { 'berth.io/oci-bundle': bundle.dir } } }));
    const st = JSON.parse(fs.readFileSync(path.join(stateDir, 'containers', containerId, 'state.json'), 'utf8')) as { pid: number; cgroupPaths: Record<string, string> };
    const cgroups = [...new Set(Object.values(st.cgroupPaths))];
    expect(cgroups.length).toBeGreaterThan(0);
    for (const d of cgroups) expect(fs.existsSync(d)).toBe(true);
    // What a kill -9 between the runtime's create and the daemon's record leaves.
    fs.unlinkSync(path.join(stateDir, 'cri', containerId, 'meta.json'));
    fx.svc!.proc.kill('SIGKILL');
    await fx.svc!.exited;
    expect(dead(st.pid)).toBe(false);

    client = await fx.start();
    expect(fs.existsSync(path.join(stateDir, 'cri', containerId))).toBe(false);
    const list = await call(client.listContainers, {});
    expect(list.containers.map((c) => c.id)).not.toContain(containerId);
    await until('the init to be killed', () => dead(st.pid));
    await until('its cgroups and state to go', () => cgroups.every((d) => !fs.existsSync(d)) && !fs.existsSync(path.join(stateDir, 'containers', containerId)));
  }, 60_000);
});
