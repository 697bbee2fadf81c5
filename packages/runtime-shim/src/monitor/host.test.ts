// Monitor hosts on the real kernel: several containers share one monitor process, each with its
// own exit.json, CRI log and log reopen; the bound on containers per host; a kill -9 of the
// daemon leaves every container of every host running with its exit recorded, and a host without
// a daemon exits after its last container; a kill -9 of a host stops its containers and reports
// their status as lost, as for any dead monitor.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { runtime } from '@berth/api';
import { startServiceProcess } from '@berth/common';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { execSync } from '../exec/exec';
import { mountsUnder } from '../sandbox/sandbox';
import { DEFAULT_ROTATE } from '../logs/cri-log';
import { Runtime } from '../runtime';
import { makeBundle, uniqueId } from '../testing/bundle';
import { CriFixture, removeCgroupTree, removeTestImageLayout, shimBin, ShimFixture, TEST_IMAGE, testImageLayout } from '../testing/cri';
import { hostScript, pickHostScript } from './hosts';
import { EXIT_FILE, type HostRequest } from './monitor';

let fx: CriFixture | undefined;
let shim: ShimFixture | undefined;
beforeAll(() => { testImageLayout(); });
afterAll(() => removeTestImageLayout());
afterEach(async () => {
  await fx?.cleanup();
  fx = undefined;
  await shim?.cleanup();
  shim = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => fs.existsSync(`/proc/${pid}`);
async function until(what: string, f: () => boolean, ms = 20_000): Promise<void> {
  for (const end = Date.now() + ms; !f(); await sleep(50)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}
const readOr = (f: string): string => { try { return fs.readFileSync(f, 'utf8'); } catch { return ''; } };
/** Waits for `/tmp/<flag>` in the container, then prints `after`; prints `before` at once. */
const waitsFor = (flag: string, code = 0) => ['sh', '-c', `echo before; while [ ! -e /tmp/${flag} ]; do sleep 0.1; done; echo after; exit ${code}`];

describe('monitor hosts', () => {
  it('run several containers in one monitor: separate exits, logs and reopen; a killed host loses the status of each', async () => {
    fx = await new CriFixture().init();
    const c = fx.containers;
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const ids: string[] = [];
    for (const name of ['a', 'b', 'c']) {
      const r = await c.create({ sandboxId: sb.id, config: fx.containerConfig(name, waitsFor('go', name === 'a' ? 7 : 0)) });
      await c.start(r.id);
      ids.push(r.id);
    }
    const [a, b, cc] = ids.map((id) => c.get(id));
    const host = a!.monitorPid;
    expect(host).toBeGreaterThan(0);
    expect([b!.monitorPid, cc!.monitorPid]).toEqual([host, host]);
    // The host is the parent of each init.
    for (const r of [a!, b!, cc!]) expect(fs.readFileSync(`/proc/${c.rt.state(r.id).pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]).toBe(String(host));
    for (const r of [a!, b!, cc!]) await until(`${r.name} started`, () => readOr(r.logPath).includes('before'));

    // One exits: its own exit.json, the others run on in the same host.
    await execSync(c, a!.id, ['mkdir', '/tmp/go'], 10);
    await a!.exited;
    expect(c.get(a!.id)).toMatchObject({ phase: 'exited', exitCode: 7, reason: 'Error' });
    expect(JSON.parse(fs.readFileSync(path.join(a!.dir, EXIT_FILE), 'utf8'))).toMatchObject({ code: 7, signal: null, oomKilled: false });
    for (const r of [b!, cc!]) {
      expect(r.phase).toBe('running');
      expect(fs.existsSync(path.join(r.dir, EXIT_FILE))).toBe(false);
    }
    expect(alive(host)).toBe(true);
    expect(readOr(a!.logPath)).toMatch(/stdout F before\n.*stdout F after\n$/s);

    // ReopenContainerLog of b: the host reopens the logs it holds; b writes to its new file, c
    // (whose file nobody moved) on in its own, and a's closed log is left alone.
    fs.renameSync(b!.logPath, `${b!.logPath}.rotated`);
    const aLog = readOr(a!.logPath);
    c.reopenLog(b!.id);
    await until('the reopened log of b', () => fs.existsSync(b!.logPath));
    await execSync(c, b!.id, ['mkdir', '/tmp/go'], 10);
    await execSync(c, cc!.id, ['mkdir', '/tmp/go'], 10);
    await b!.exited;
    await cc!.exited;
    expect(readOr(`${b!.logPath}.rotated`)).toMatch(/^\S+ stdout F before\n$/);
    expect(readOr(b!.logPath)).toMatch(/^\S+ stdout F after\n$/);
    expect(readOr(cc!.logPath)).toMatch(/^\S+ stdout F before\n\S+ stdout F after\n$/);
    expect(readOr(a!.logPath)).toBe(aLog);
    expect(c.get(cc!.id)).toMatchObject({ phase: 'exited', exitCode: 0, reason: 'Completed' });

    // A host killed with -9: each of its running containers is stopped and reported as lost.
    const more: string[] = [];
    for (const name of ['d', 'e']) {
      const r = await c.create({ sandboxId: sb.id, config: fx.containerConfig(name, ['sleep', '600']) });
      await c.start(r.id);
      more.push(r.id);
    }
    expect(c.get(more[0]!).monitorPid).toBe(host);
    expect(c.get(more[1]!).monitorPid).toBe(host);
    const pids = more.map((id) => c.rt.state(id).pid);
    process.kill(host, 'SIGKILL');
    for (const id of more) {
      await c.get(id).exited;
      expect(c.get(id)).toMatchObject({ phase: 'exited', exitCode: 255, reason: 'Error', message: expect.stringMatching(/monitor died/) });
    }
    await until('the inits of the killed host to be gone', () => pids.every((p) => !alive(p)));
    // The exits recorded before the kill stand.
    expect(c.get(a!.id).exitCode).toBe(7);
    expect(c.get(cc!.id).exitCode).toBe(0);

    // The next create gets a live host, not the dead one.
    const f = await c.create({ sandboxId: sb.id, config: fx.containerConfig('f', ['true']) });
    expect(f.monitorPid).not.toBe(host);
    await c.start(f.id);
    await f.exited;
    expect(c.get(f.id)).toMatchObject({ exitCode: 0, reason: 'Completed' });
  }, 120_000);

  it('bounds the containers per host; after a kill -9 of the daemon every container runs on, exits are recorded and an orphaned host exits after its last container', async () => {
    shim = new ShimFixture('berth-hosts-');
    const { stateDir, cgroupRoot, dir } = shim;
    await shim.importImage();
    let client = await shim.start(['--containers-per-monitor', '2']);
    const { call } = shim;
    const uid = uniqueId('uid');
    const { podSandboxId } = await call(client.runPodSandbox, runtime.RunPodSandboxRequest.fromPartial({
      config: { metadata: { name: 'hosts', uid, namespace: 'default' }, logDirectory: path.join(dir, 'logs'), linux: { cgroupParent: `${cgroupRoot}/kubepods/besteffort/pod${uid}` } },
    }));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { containerId } = await call(client.createContainer, runtime.CreateContainerRequest.fromPartial({
        podSandboxId,
        config: { metadata: { name: `c${i}` }, image: { image: TEST_IMAGE }, logPath: `c${i}.log`, command: ['sh', '-c', `echo hello ${i}; while [ ! -e /tmp/stop ]; do sleep 0.1; done; echo bye ${i}; exit ${i + 1}`] },
      }));
      await call(client.startContainer, { containerId });
      ids.push(containerId);
    }
    const meta = (id: string) => JSON.parse(fs.readFileSync(path.join(stateDir, 'cri', id, 'meta.json'), 'utf8')) as { monitorPid: number; monitorStart: string };
    const hosts = ids.map((id) => meta(id).monitorPid);
    // Two per host: c0 and c1 share one, c2 has the next.
    expect(hosts[0]).toBe(hosts[1]);
    expect(hosts[2]).not.toBe(hosts[0]);
    const pids = ids.map((id) => JSON.parse(fs.readFileSync(path.join(stateDir, 'containers', id, 'state.json'), 'utf8')).pid as number);

    // c0 is told to stop right before the daemon dies: its exit may happen while no daemon runs.
    await call(client.execSync, { containerId: ids[0]!, cmd: ['mkdir', '/tmp/stop'], timeout: 10 });
    shim.svc!.proc.kill('SIGKILL');
    await shim.svc!.exited;
    for (const pid of pids.slice(1)) expect(alive(pid)).toBe(true);
    for (const h of hosts) expect(alive(h)).toBe(true);

    client = await shim.start(['--containers-per-monitor', '2']);
    const status = async (id: string) => (await call(client.containerStatus, { containerId: id, verbose: false })).status!;
    for (let i = 0; i < 100 && (await status(ids[0]!)).state !== runtime.ContainerState.CONTAINER_STATE_EXITED; i++) await sleep(100);
    expect(await status(ids[0]!)).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: 1, reason: 'Error' });
    for (const id of ids.slice(1)) expect((await status(id)).state).toBe(runtime.ContainerState.CONTAINER_STATE_RUNNING);

    // c1 exits under the new daemon, which sees it through the exit file of the old host.
    await call(client.execSync, { containerId: ids[1]!, cmd: ['mkdir', '/tmp/stop'], timeout: 10 });
    for (let i = 0; i < 100 && (await status(ids[1]!)).state !== runtime.ContainerState.CONTAINER_STATE_EXITED; i++) await sleep(100);
    expect(await status(ids[1]!)).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: 2, reason: 'Error' });
    for (let i = 0; i < 2; i++) expect(fs.readFileSync(path.join(dir, 'logs', `c${i}.log`), 'utf8')).toMatch(new RegExp(`stdout F hello ${i}\\n.*stdout F bye ${i}\\n$`, 's'));
    // The first host lost its daemon and ran its last container: it is gone.
    await until('the orphaned host to exit', () => !alive(hosts[0]!));

    // The new daemon gives its jobs to hosts of its own, never to the old ones.
    const { containerId: late } = await call(client.createContainer, runtime.CreateContainerRequest.fromPartial({
      podSandboxId, config: { metadata: { name: 'late' }, image: { image: TEST_IMAGE }, command: ['sleep', '600'] },
    }));
    expect(hosts).not.toContain(meta(late).monitorPid);

    // A kill -9 of the other old host: c2 is stopped and reported as lost by the new daemon.
    process.kill(hosts[2]!, 'SIGKILL');
    for (let i = 0; i < 100 && (await status(ids[2]!)).state !== runtime.ContainerState.CONTAINER_STATE_EXITED; i++) await sleep(100);
    expect(await status(ids[2]!)).toMatchObject({ state: runtime.ContainerState.CONTAINER_STATE_EXITED, exitCode: 255, reason: 'Error', message: expect.stringMatching(/monitor died/) });
    await until('the init of the killed host', () => !alive(pids[2]!));

    await call(client.removePodSandbox, { podSandboxId });
    expect(mountsUnder(stateDir)).toEqual([]);
    expect(fs.readdirSync(path.join(stateDir, 'cri'))).toEqual([]);
  }, 180_000);

  it('removes a container whose create finishes after its daemon went away, then exits', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-host-orphan-'));
    const cgroup = `/${uniqueId('berth-test')}`;
    const id = uniqueId('orphan');
    const host = spawn(process.execPath, [hostScript()], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      const bundle = makeBundle(['sleep', '600'], (s) => { s.linux!.cgroupsPath = `${cgroup}/${id}`; }, work);
      const dir = path.join(work, 'c');
      fs.mkdirSync(dir);
      const runtimeRoot = path.join(work, 'state');
      let out = '';
      let err = '';
      host.stdout.on('data', (d: Buffer) => (out += d.toString()));
      host.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((r) => host.on('exit', (code) => r(code)));
      // The job, then at once the end of stdin (what a kill -9 of the daemon does): the create
      // is still running when the host learns that nobody will take its reply.
      const req: HostRequest = { seq: 1, job: { id, runtimeRoot, bundle: bundle.dir, spec: bundle.spec, dir, logPath: '', rotate: DEFAULT_ROTATE } };
      host.stdin.end(`${JSON.stringify(req)}\n`);
      expect(await exited, err).toBe(0);
      expect(out).toBe('');
      expect(err).toMatch(new RegExp(`container ${id}: created after the daemon went away; removed`));
      expect(new Runtime({ root: runtimeRoot }).store.ids()).toEqual([]);
    } finally {
      host.kill('SIGKILL');
      removeCgroupTree(cgroup);
      fs.rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);

  it('starts hosts from the bundle the build made, and from the modules when the bundle is older', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-host-script-'));
    try {
      const [mod, bundle] = [path.join(dir, 'monitor.js'), path.join(dir, 'monitor.bundle.js')];
      fs.writeFileSync(mod, '');
      expect(pickHostScript(dir)).toBe(mod);
      fs.writeFileSync(bundle, '');
      const t = Date.now() / 1000;
      fs.utimesSync(mod, t, t);
      fs.utimesSync(bundle, t + 0.5, t + 0.5);
      expect(pickHostScript(dir)).toBe(bundle);
      // tsc ran again after the bundle was made: the bundle holds older code.
      fs.utimesSync(mod, t + 60, t + 60);
      expect(pickHostScript(dir)).toBe(mod);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a bad --containers-per-monitor, naming the flag', async () => {
    const dir = fs.mkdtempSync(path.join('/tmp', 'berth-hosts-flag-'));
    try {
      for (const bad of ['0', 'many', '2.5']) {
        const svc = startServiceProcess(shimBin(), ['--listen', `unix://${dir}/s.sock`, '--state-dir', path.join(dir, 'state'), '--containers-per-monitor', bad]);
        const { code } = await svc.exited;
        expect(code, svc.output()).toBe(2);
        expect(svc.output()).toMatch(/containers-per-monitor/);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
