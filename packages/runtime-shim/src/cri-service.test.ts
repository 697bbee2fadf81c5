// The RuntimeService over gRPC with the real binary: a pod's life as the kubelet drives it
// (RunPodSandbox, PodSandboxStatus with the netns path, CreateContainer/Start, streaming Exec
// with stdin, ContainerLogs, stats, UpdateContainerResources, ReopenContainerLog, Status,
// StopPodSandbox, RemovePodSandbox) and the errors a kubelet must be able to tell apart.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { status } from '@grpc/grpc-js';
import { runtime } from '@berth/api';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { mountsUnder } from './sandbox/sandbox';
import { uniqueId } from './testing/bundle';
import { removeTestImageLayout, ShimFixture, TEST_IMAGE } from './testing/cri';

let fx: ShimFixture | undefined;
afterAll(() => removeTestImageLayout());
afterEach(async () => {
  await fx?.cleanup();
  fx = undefined;
});

describe('RuntimeService over gRPC', () => {
  it('runs a pod the way the kubelet does', async () => {
    fx = new ShimFixture('berth-cri-svc-');
    const { stateDir, cgroupRoot, dir } = fx;
    await fx.importImage();
    const client = await fx.start();
    const { call } = fx;
    try {
      const uid = uniqueId('uid');
      const sandboxConfig = runtime.PodSandboxConfig.fromPartial({
        metadata: { name: 'web', uid, namespace: 'default' }, hostname: 'web', logDirectory: path.join(dir, 'logs', uid), labels: { app: 'web' },
        linux: { cgroupParent: `${cgroupRoot}/kubepods/burstable/pod${uid}` },
      });
      const { podSandboxId } = await call(client.runPodSandbox, { config: sandboxConfig, runtimeHandler: '' });
      const sst = await call(client.podSandboxStatus, { podSandboxId, verbose: true });
      expect(sst.status).toMatchObject({ id: podSandboxId, state: runtime.PodSandboxState.POD_SANDBOX_STATE_READY, metadata: { name: 'web', uid } });
      const netns = sst.status!.linux!.namespaces!.paths!.network;
      expect(fs.statSync(netns).ino).not.toBe(fs.statSync('/proc/self/ns/net').ino);
      expect(mountsUnder(netns)).toEqual([netns]);
      expect((await call(client.listPodSandbox, { filter: { id: '', state: 0, labelSelector: { app: 'web' } } })).items.map((i) => i.id)).toEqual([podSandboxId]);
      expect((await call(client.listPodSandbox, { filter: { id: '', state: 0, labelSelector: { app: 'db' } } })).items).toEqual([]);

      const { containerId } = await call(client.createContainer, runtime.CreateContainerRequest.fromPartial({
        podSandboxId, sandboxConfig,
        config: { metadata: { name: 'app' }, image: { image: TEST_IMAGE }, logPath: 'app/0.log', command: ['sh', '-c', 'echo started; while true; do sleep 0.2; done'] },
      }));
      await call(client.startContainer, { containerId });
      const cst = await call(client.containerStatus, { containerId, verbose: false });
      expect(cst.status).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_RUNNING, logPath: path.join(dir, 'logs', uid, 'app', '0.log'), image: { image: TEST_IMAGE } });
      expect(cst.status!.startedAtUs).toBeGreaterThan(0);

      // Streaming exec with stdin.
      const stream = client.exec();
      const frames: runtime.ExecResponse[] = [];
      const ended = new Promise<void>((resolve, reject) => { stream.on('data', (f: runtime.ExecResponse) => frames.push(f)); stream.on('end', resolve); stream.on('error', reject); });
      stream.write(runtime.ExecRequest.fromPartial({ start: { containerId, cmd: ['sh', '-c', 'read a; echo "got $a"; echo warn >&2; exit 5'], stdin: true } }));
      stream.write(runtime.ExecRequest.fromPartial({ stdin: Buffer.from('hello\n') }));
      stream.write(runtime.ExecRequest.fromPartial({ stdinClose: true }));
      stream.end();
      await ended;
      expect(Buffer.concat(frames.filter((f) => f.stdout !== undefined).map((f) => Buffer.from(f.stdout!))).toString()).toBe('got hello\n');
      expect(Buffer.concat(frames.filter((f) => f.stderr !== undefined).map((f) => Buffer.from(f.stderr!))).toString()).toBe('warn\n');
      expect(frames.at(-1)?.exit).toEqual({ exitCode: 5, reason: '' });

      const sync = await call(client.execSync, { containerId, cmd: ['hostname'], timeout: 5 });
      expect(Buffer.from(sync.stdout).toString()).toBe('web\n');
      await expect(call(client.execSync, { containerId, cmd: ['sleep', '5'], timeout: 1 })).rejects.toMatchObject({ code: status.DEADLINE_EXCEEDED });

      // Logs, stats, resources, reopen, status.
      const logs: runtime.LogFrame[] = [];
      await new Promise<void>((resolve, reject) => {
        const s = client.containerLogs(runtime.ContainerLogsRequest.fromPartial({ containerId, tailLines: 1 }));
        s.on('data', (f: runtime.LogFrame) => logs.push(f));
        s.on('end', resolve);
        s.on('error', reject);
      });
      expect(logs.map((l) => [l.stream, Buffer.from(l.log).toString(), l.partial])).toEqual([['stdout', 'started', false]]);
      expect(logs[0]!.timestampUs).toBeGreaterThan(cst.status!.createdAtUs - 1);
      const st = await call(client.containerStats, { containerId });
      expect(st.stats?.attributes?.id).toBe(containerId);
      expect(st.stats?.memory?.workingSetBytes).toBeGreaterThan(0);
      expect((await call(client.listContainerStats, { filter: { id: '', podSandboxId, labelSelector: {} } })).stats).toHaveLength(1);
      await call(client.updateContainerResources, runtime.UpdateContainerResourcesRequest.fromPartial({ containerId, linux: { memoryLimitInBytes: 48 * 1024 * 1024 } }));
      expect((await call(client.containerStatus, { containerId, verbose: false })).status?.resources?.linux?.memoryLimitInBytes).toBe(48 * 1024 * 1024);
      await expect(call(client.updateContainerResources, runtime.UpdateContainerResourcesRequest.fromPartial({ containerId, linux: { memoryLimitInBytes: -1 } }))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      await call(client.reopenContainerLog, { containerId });
      const rs = await call(client.status, { verbose: false });
      expect(rs.status?.conditions.map((c) => [c.type, c.status])).toEqual([['RuntimeReady', true], ['NetworkReady', true]]);

      // What a kubelet must tell apart.
      await expect(call(client.containerStatus, { containerId: 'nope', verbose: false })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(call(client.podSandboxStatus, { podSandboxId: 'nope', verbose: false })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(call(client.startContainer, { containerId })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
      await expect(call(client.runPodSandbox, { config: runtime.PodSandboxConfig.fromPartial({ metadata: { name: 'x', uid: 'u' } }), runtimeHandler: 'kata' })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^runtime_handler: /) });

      await call(client.stopPodSandbox, { podSandboxId });
      expect((await call(client.containerStatus, { containerId, verbose: false })).status).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: 137 });
      await expect(call(client.execSync, { containerId, cmd: ['true'], timeout: 1 })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
      expect((await call(client.podSandboxStatus, { podSandboxId, verbose: false })).status?.state).toBe(runtime.PodSandboxState.POD_SANDBOX_STATE_NOTREADY);
      await call(client.removePodSandbox, { podSandboxId });
      await call(client.removePodSandbox, { podSandboxId });
      await expect(call(client.containerStatus, { containerId, verbose: false })).rejects.toMatchObject({ code: status.NOT_FOUND });
      expect(mountsUnder(stateDir)).toEqual([]);
      expect(fs.existsSync(path.join(dir, 'logs', uid, 'app', '0.log'))).toBe(true); // logs are the kubelet's to remove
    } finally {
      client.close();
    }
  }, 180_000);
});
