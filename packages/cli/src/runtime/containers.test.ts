// `berth runtime pods|ps|inspect|inspectp|exec|logs|stats` against the real berth-runtime-shim:
// the image is imported with `berth runtime import`, a pod with one container is made over
// the RuntimeService (as the kubelet would), and the commands are checked on what they print.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { runtime } from '@berth/api';
// The runtime-shim's own test teardown: kills monitors, unmounts, removes the state and cgroups.
import { removeCgroupTree, scrubStateDir } from '@berth/runtime-shim';
import { callUnary, createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceBin } from '../services';
import { runRuntime, type RuntimeIo } from './index';

const root = path.resolve(__dirname, '..', '..', '..', '..');

let dir: string;
let sock: string;
let svc: ServiceProcess;
let client: runtime.RuntimeServiceClient;
const cgroupRoot = `/berth-test-cli-${process.pid}-${Date.now().toString(36)}`;
let podId: string;
let containerId: string;

async function run(args: string[], stdin?: string, terminal?: RuntimeIo['terminalSize']): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: RuntimeIo = {
    stdout: (s) => { out += s; }, stderr: (s) => { err += s; }, env: {}, tty: false,
    stdinStream: () => { const p = new PassThrough(); p.end(stdin ?? ''); return p; },
    ...(terminal !== undefined ? { terminalSize: terminal } : {}),
  };
  const code = await runRuntime(['--runtime-endpoint', sock, ...args], io);
  return { code, out, err };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cli-ctr-'));
  sock = `unix://${path.join(dir, 'rs.sock')}`;
  execFileSync(path.join(root, 'tools', 'build-test-image.sh'), ['--out', path.join(dir, 'layout'), '--tag', 'v1']);
  svc = startServiceProcess(serviceBin('runtime-shim'), ['--listen', sock, '--state-dir', path.join(dir, 'state'), '--log-level', 'warn']);
  expect(await waitServing(sock), svc.output()).toBe('SERVING');
  expect((await run(['import', '--name', 'cli.test/busybox:v1', path.join(dir, 'layout')])).code).toBe(0);
  client = createClient(runtime.RuntimeServiceClient, { target: sock });
  const uid = `uid-${process.pid}`;
  ({ podSandboxId: podId } = await callUnary<runtime.RunPodSandboxRequest, runtime.RunPodSandboxResponse>(client.runPodSandbox.bind(client), runtime.RunPodSandboxRequest.fromPartial({
    config: { metadata: { name: 'cli-pod', uid, namespace: 'tools' }, labels: { app: 'cli' }, logDirectory: path.join(dir, 'logs'), linux: { cgroupParent: `${cgroupRoot}/kubepods/besteffort/pod${uid}` } },
  })));
  ({ containerId } = await callUnary<runtime.CreateContainerRequest, runtime.CreateContainerResponse>(client.createContainer.bind(client), runtime.CreateContainerRequest.fromPartial({
    podSandboxId: podId,
    config: { metadata: { name: 'web' }, image: { image: 'cli.test/busybox:v1' }, logPath: 'web.log', command: ['sh', '-c', 'echo one; echo two; echo oops >&2; while true; do sleep 0.2; done'] },
  })));
  await callUnary(client.startContainer.bind(client), { containerId });
}, 60_000);
afterAll(async () => {
  client?.close();
  await svc?.stop();
  scrubStateDir(path.join(dir, 'state'));
  removeCgroupTree(cgroupRoot);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('berth runtime (pods and containers)', () => {
  it('lists pods and containers, and inspects them', async () => {
    const pods = await run(['pods']);
    expect(pods.code).toBe(0);
    expect(pods.out).toMatch(/^POD ID\s+CREATED\s+STATE\s+NAME\s+NAMESPACE\s+ATTEMPT\s+RUNTIME\n/);
    expect(pods.out).toMatch(new RegExp(`${podId.slice(0, 13)}\\s+\\d+ seconds ago\\s+Ready\\s+cli-pod\\s+tools\\s+0\\s+\\(default\\)`));
    expect((await run(['pods', '-q', '--label', 'app=cli'])).out).toBe(`${podId}\n`);
    expect((await run(['pods', '-q', '--label', 'app=other'])).out).toBe('');
    const ps = await run(['ps']);
    expect(ps.out).toMatch(new RegExp(`${containerId.slice(0, 13)}\\s+cli.test/busybox:v1\\s+\\d+ seconds ago\\s+Running\\s+web\\s+0\\s+${podId.slice(0, 13)}`));
    expect((await run(['ps', '-q', '--pod', 'cli-pod'])).out).toBe(`${containerId}\n`);
    const insp = JSON.parse((await run(['inspect', containerId.slice(0, 8)])).out);
    expect(insp.status).toMatchObject({ id: containerId, state: 'CONTAINER_STATE_RUNNING', metadata: { name: 'web' } });
    expect(insp.info.pid).toBeGreaterThan(0);
    const inspp = JSON.parse((await run(['inspectp', 'cli-pod'])).out);
    expect(inspp.status.linux.namespaces.paths.network).toMatch(/\/ns\/net$/);
    expect(await run(['inspect'])).toMatchObject({ code: 2, err: expect.stringContaining('needs at least one CONTAINER') });
  });

  it('execs (streaming with stdin, and sync), prints logs and stats', async () => {
    expect(await run(['exec', '-i', 'web', 'sh', '-c', 'read x; echo "in:$x"; exit 3'], 'hello\n')).toEqual({ code: 3, out: 'in:hello\n', err: '' });
    expect(await run(['exec', '-s', '--timeout', '5', containerId, 'hostname'])).toEqual({ code: 0, out: 'cli-pod\n', err: '' });
    // With -t our terminal's size goes along in the start frame (the image has no stty to show it).
    const t = await run(['exec', '-t', 'web', 'sh', '-c', '[ -t 1 ] && echo in-a-tty; exit 4'], undefined, () => ({ width: 123, height: 45 }));
    expect({ ...t, out: t.out.replace(/\r/g, '') }).toEqual({ code: 4, out: 'in-a-tty\n', err: '' });
    for (let i = 0; i < 50 && !(await run(['logs', 'web'])).out.includes('two'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await run(['logs', 'web'])).toEqual({ code: 0, out: 'one\ntwo\n', err: 'oops\n' });
    expect((await run(['logs', '--tail', '1', 'web'])).out + (await run(['logs', '--tail', '1', 'web'])).err).toMatch(/^(two\n|oops\n)$/);
    expect((await run(['logs', '-t', 'web'])).out).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z one\n/);
    const st = await run(['stats']);
    expect(st.out).toMatch(new RegExp(`^CONTAINER\\s+NAME\\s+CPU %\\s+MEM\\s+DISK\\s+INODES\\s+PIDS\\n${containerId.slice(0, 13)}\\s+web\\s+\\d+\\.\\d\\d\\s+[\\d.]+[kMG]?B\\s+[\\d.]+[kMG]?B\\s+\\d+\\s+[1-9]`));
    expect(JSON.parse((await run(['stats', '-o', 'json', 'web'])).out).stats[0].attributes.id).toBe(containerId);
    expect(await run(['exec', 'web'])).toMatchObject({ code: 2, err: expect.stringContaining('needs CONTAINER and COMMAND') });
  });
});
