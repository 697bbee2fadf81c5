// Containers from images in a sandbox, on the real kernel: the merged layers, exit codes and
// reasons (OOMKilled too), stop with a grace period, CRI logs with rotation and reopen, exec,
// stats under load, resource updates, and the cleanup of what a crash left half-made.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { runtime } from '@berth/api';
import { native } from '@berth/native';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { StatsSampler } from './cri/stats';
import { execSync, ExecSession } from './exec/exec';
import { parseCriLine } from './logs/cri-log';
import { readLog } from './logs/reader';
import { mountsUnder } from './sandbox/sandbox';
import { CriFixture, removeTestImageLayout, testImageLayout } from './testing/cri';

let fx: CriFixture;
beforeAll(() => { testImageLayout(); });
afterAll(() => removeTestImageLayout());
afterEach(async () => {
  await fx?.cleanup();
});

async function run(fx: CriFixture, sandboxId: string, name: string, command: string[], over: Partial<runtime.ContainerConfig> = {}): Promise<string> {
  const c = await fx.containers.create({ sandboxId, config: fx.containerConfig(name, command, over) });
  await fx.containers.start(c.id);
  return c.id;
}

const logLines = (file: string): string[] => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => l.replace(/^\S+ (stdout|stderr) [FP] /, '$1 '));

describe('containers from images', () => {
  it('sees files from every layer, not what a whiteout removed, writes to its own upper dir, and reports exit codes and reasons', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const a = await run(fx, sb.id, 'layers', ['sh', '-c', 'cat /etc/layer2 /etc/layer3; ls /opq; test -e /etc/removed-later && echo WHITEOUT-FAILED; echo written > /tmp/new; echo err >&2; id -u; pwd; echo $HOSTNAME; exit 3'], { workingDir: '/etc' });
    await fx.containers.get(a).exited;
    expect(fx.containers.get(a)).toMatchObject({ phase: 'exited', exitCode: 3, reason: 'Error' });
    const rec = fx.containers.get(a);
    // Two pipes: the order between stdout and stderr is not defined, within each it is.
    expect(logLines(rec.logPath).filter((l) => l.startsWith('stdout'))).toEqual(['stdout from layer 2', 'stdout from layer 3', 'stdout b', 'stdout 0', 'stdout /etc', `stdout ${sb.name}`]);
    expect(logLines(rec.logPath).filter((l) => l.startsWith('stderr'))).toEqual(['stderr err']);
    expect(fs.readFileSync(path.join(rec.dir, 'upper', 'tmp', 'new'), 'utf8')).toBe('written\n');
    for (const c of fx.images.find('berth.test/busybox:v1')!.chainIds) expect(fs.existsSync(path.join(fx.images.snapshots.fsPath(c), 'tmp', 'new'))).toBe(false);
    expect(rec.imageId).toMatch(/^sha256:/);

    // The image's Cmd when the config names no command; a user from the image's /etc/passwd.
    const b = await run(fx, sb.id, 'cmd', [], { args: [], linux: { securityContext: { runAsUsername: 'nobody' } } as never });
    await fx.containers.get(b).exited;
    expect(fx.containers.get(b)).toMatchObject({ exitCode: 0, reason: 'Completed' });
    const c = await run(fx, sb.id, 'user', ['id'], { linux: { securityContext: { runAsUsername: 'nobody' } } as never });
    await fx.containers.get(c).exited;
    expect(logLines(fx.containers.get(c).logPath)).toEqual(['stdout uid=65534(nobody) gid=65534(nogroup)']);

    await expect(fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('noimg', ['true'], { image: { image: 'berth.test/none:v9', annotations: {} } }) })).rejects.toThrow(/image "berth\.test\/none:v9" is not present/);
    await expect(fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('nouser', ['true'], { linux: { securityContext: { runAsUsername: 'ghost' } } as never }) })).rejects.toThrow(/user "ghost" is not in the image's \/etc\/passwd/);
    await expect(fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('noexe', ['/no/such/binary']) })).rejects.toThrow(/executable file not found/);
    await expect(fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('escape', ['true'], { logPath: '../../escape.log' }) })).rejects.toThrow(/config\.log_path/);
    await expect(fx.containers.create({ sandboxId: 'f'.repeat(64), config: fx.containerConfig('x', ['true']) })).rejects.toThrow(/pod sandbox f+ not found/);
    await expect(fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('layers', ['true']) })).rejects.toThrow(/already exists/);
    // Two creates of one name at once: one wins.
    const race = await Promise.allSettled([0, 1].map(() => fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('twin', ['true']) })));
    expect(race.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    await fx.containers.remove((race.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ id: string }>).value.id);
    // Failed creates left nothing: only the three containers are there.
    expect(fs.readdirSync(fx.containers.criRoot).sort()).toEqual([a, b, c].sort());
    expect(mountsUnder(fx.containers.criRoot).length).toBe(3);
    for (const id of [a, b, c]) await fx.containers.remove(id);
    expect(mountsUnder(fx.containers.criRoot)).toEqual([]);
    expect(fs.readdirSync(fx.containers.criRoot)).toEqual([]);
  });

  it('run() an image container through its monitor: created, started, exited and removed, its log written', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const { rec, started, removed } = await fx.containers.run({ sandboxId: sb.id, config: fx.containerConfig('once', ['sh', '-c', 'echo hello; exit 5']) }, true);
    const logPath = rec.logPath;
    await started;
    expect(rec.startedAtUs).toBeGreaterThan(0);
    expect(await removed).toBe(true);
    expect(rec).toMatchObject({ phase: 'exited', exitCode: 5, reason: 'Error' });
    expect(rec.finishedAtUs).toBeGreaterThanOrEqual(rec.startedAtUs);
    expect(fx.containers.list().map((c) => c.id)).not.toContain(rec.id);
    expect(fs.existsSync(rec.dir)).toBe(false);
    expect(logLines(logPath)).toEqual(['stdout hello']);
  });

  it('runs a container with a terminal and logs what it writes to it as stdout', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const id = await run(fx, sb.id, 'tty', ['sh', '-c', '[ -t 0 ] && [ -t 1 ] && echo tty-ok; echo to-err >&2; exit 3'], { tty: true });
    await fx.containers.get(id).exited;
    expect(fx.containers.get(id)).toMatchObject({ exitCode: 3, reason: 'Error' });
    expect(logLines(fx.containers.get(id).logPath).map((l) => l.replace(/\r$/, ''))).toEqual(['stdout tty-ok', 'stdout to-err']);
  });

  it('stops a container whose monitor was killed and says its exit status was lost', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const id = await run(fx, sb.id, 'orphan', ['sleep', '60']);
    const pid = fx.containers.rt.state(id).pid;
    process.kill(fx.containers.get(id).monitorPid, 'SIGKILL');
    await fx.containers.get(id).exited;
    expect(fx.containers.get(id)).toMatchObject({ phase: 'exited', exitCode: 255, reason: 'Error', message: expect.stringMatching(/monitor died/) });
    for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 20));
    expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
  });

  it('reports OOMKilled for a container over its memory limit', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const id = await run(fx, sb.id, 'hog', ['sh', '-c', 'x=$(head -c 40000000 /dev/urandom); echo survived'], { linux: { resources: { memoryLimitInBytes: 16 * 1024 * 1024 } } as never });
    await fx.containers.get(id).exited;
    expect(fx.containers.get(id)).toMatchObject({ phase: 'exited', reason: 'OOMKilled', exitCode: 137 });
  });

  it('honours the stop grace period: SIGTERM first, SIGKILL only after the timeout', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const polite = await run(fx, sb.id, 'polite', ['sh', '-c', 'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 0.1; done']);
    const stubborn = await run(fx, sb.id, 'stubborn', ['sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 0.1; done']);
    for (const id of [polite, stubborn]) {
      for (let i = 0; i < 100 && !fs.readFileSync(fx.containers.get(id).logPath, 'utf8').includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
    }
    let t = Date.now();
    await fx.containers.stop(polite, 10);
    expect(Date.now() - t).toBeLessThan(5000);
    expect(fx.containers.get(polite)).toMatchObject({ exitCode: 0, reason: 'Completed' });
    expect(fs.readFileSync(fx.containers.get(polite).logPath, 'utf8')).toContain('stdout F got TERM');
    t = Date.now();
    await fx.containers.stop(stubborn, 1);
    expect(Date.now() - t).toBeGreaterThanOrEqual(950);
    expect(fx.containers.get(stubborn)).toMatchObject({ exitCode: 137, reason: 'Error' });
    await fx.containers.stop(stubborn, 1); // idempotent
  });

  it('writes CRI logs, rotates them by size and count, reopens on request, and reads them back with tail and follow', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const id = await run(fx, sb.id, 'chatty', ['sh', '-c', 'i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; printf no-newline; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo after-reopen; echo to-stderr >&2'], {
      annotations: { 'berth.io/log-max-size': '2000', 'berth.io/log-max-files': '3' },
    });
    const rec = fx.containers.get(id);
    for (let i = 0; i < 100 && !fs.existsSync(`${rec.logPath}.2`); i++) await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 100 && !(await collect(readLog(rec.logPath))).some((e) => e.log.toString() === 'line-299'); i++) await new Promise((r) => setTimeout(r, 50));
    // Three files at most, each under the size limit, every record in the CRI format.
    expect(fs.existsSync(`${rec.logPath}.3`)).toBe(false);
    for (const f of [rec.logPath, `${rec.logPath}.1`, `${rec.logPath}.2`]) {
      expect(fs.statSync(f).size).toBeLessThanOrEqual(2000);
      for (const l of fs.readFileSync(f, 'utf8').split('\n').filter(Boolean)) {
        expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout F line-\d+$/);
        expect(parseCriLine(Buffer.from(l))).toBeDefined();
      }
    }
    const tail = await collect(readLog(rec.logPath, { tailLines: 3 }));
    expect(tail.map((e) => e.log.toString())).toEqual(['line-297', 'line-298', 'line-299']);
    // The kubelet's own rotation: it moves the file away and asks for a reopen.
    fs.renameSync(rec.logPath, `${rec.logPath}.kubelet`);
    fx.containers.reopenLog(id);
    await new Promise((r) => setTimeout(r, 200));
    const followed = collect(readLog(rec.logPath, { follow: true, tailLines: 0, writerDone: () => rec.phase === 'exited' }));
    await execSync(fx.containers, id, ['mkdir', '/tmp/go'], 5);
    await rec.exited;
    const lines = (await followed).map((e) => `${e.stream} ${e.partial ? 'P' : 'F'} ${e.log.toString()}`);
    // The unterminated line comes out whole with the next newline, after the reopen.
    expect(lines).toEqual(['stdout F no-newlineafter-reopen', 'stderr F to-stderr']);
    expect(fs.existsSync(rec.logPath)).toBe(true);
  });

  it('execs into a running container (output, exit code, stdin, tty, resize, timeout) and refuses a stopped one', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig({ hostname: 'exec-pod' }), '');
    const id = await run(fx, sb.id, 'target', ['sh', '-c', 'echo hi > /tmp/mark; sleep 60'], { envs: [{ key: 'GREETING', value: 'hello' }] });
    for (let i = 0; i < 50 && !fs.existsSync(path.join(fx.containers.get(id).dir, 'upper', 'tmp', 'mark')); i++) await new Promise((r) => setTimeout(r, 50));
    const r = await execSync(fx.containers, id, ['sh', '-c', 'cat /tmp/mark; echo $GREETING; hostname; echo oops >&2; exit 4'], 10);
    expect(r).toEqual({ stdout: Buffer.from('hi\nhello\nexec-pod\n'), stderr: Buffer.from('oops\n'), exitCode: 4 });
    // RuntimeDefault seccomp (a filter, mode 2) for the container and its execs; Unconfined has none.
    expect((await execSync(fx.containers, id, ['grep', 'Seccomp:', '/proc/self/status'], 10)).stdout.toString()).toMatch(/Seccomp:\s+2/);
    const free = await run(fx, sb.id, 'unconfined', ['grep', 'Seccomp:', '/proc/self/status'], { linux: { securityContext: { seccomp: { profileType: runtime.ProfileType.PROFILE_TYPE_UNCONFINED, localhostRef: '' } } } as never });
    await fx.containers.get(free).exited;
    expect(logLines(fx.containers.get(free).logPath)).toEqual(['stdout Seccomp:\t0']);
    await expect(fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('badprofile', ['true'], { linux: { securityContext: { seccomp: { profileType: runtime.ProfileType.PROFILE_TYPE_LOCALHOST, localhostRef: '/no/such/profile.json' } } } as never }) })).rejects.toThrow(/config\.linux\.security_context\.seccomp\.localhost_ref: cannot load/);
    // It runs in the container's cgroup and pid namespace.
    const ps = await execSync(fx.containers, id, ['sh', '-c', 'cat /proc/self/cgroup | grep memory; cat /proc/1/cmdline'], 10);
    expect(ps.stdout.toString()).toContain(`/pod${sb.uid}/${id}`);
    expect(ps.stdout.toString()).toContain('sleep');
    await expect(execSync(fx.containers, id, ['sleep', '10'], 1)).rejects.toMatchObject({ kind: 'DeadlineExceeded' });
    const who: Buffer[] = [];
    const asNobody = await ExecSession.start(fx.containers, id, { cmd: ['id'], user: 'nobody', stdin: false, tty: false }, { stdout: (d) => who.push(d), stderr: (d) => who.push(d) });
    expect(await asNobody.done).toEqual({ exitCode: 0, reason: '' });
    expect(Buffer.concat(who).toString()).toBe('uid=65534(nobody) gid=65534(nogroup)\n');
    await expect(ExecSession.start(fx.containers, id, { cmd: ['id'], user: 'ghost', stdin: false, tty: false }, { stdout: () => undefined, stderr: () => undefined })).rejects.toThrow(/user: user "ghost" is not in the image's \/etc\/passwd/);
    await expect(execSync(fx.containers, id, ['no-such-tool'], 1)).rejects.toThrow(/cmd\[0\].*executable file not found/);

    const out: Buffer[] = [];
    const s = await ExecSession.start(fx.containers, id, { cmd: ['sh', '-c', 'wc -c; echo done >&2; exit 9'], stdin: true, tty: false }, { stdout: (d) => out.push(d), stderr: (d) => out.push(d) });
    s.write(Buffer.from('12345'));
    s.write(Buffer.from('678'));
    s.closeStdin();
    expect(await s.done).toEqual({ exitCode: 9, reason: '' });
    expect(Buffer.concat(out).toString()).toMatch(/^8\ndone\n$/);
    const sig = await ExecSession.start(fx.containers, id, { cmd: ['sleep', '30'], stdin: false, tty: false }, { stdout: () => undefined, stderr: () => undefined });
    sig.signal('SIGKILL');
    expect(await sig.done).toEqual({ exitCode: 137, reason: 'Signaled' });

    // With a terminal: stdin and stderr go through the pty, which echoes what is typed.
    const tty: Buffer[] = [];
    const t = await ExecSession.start(fx.containers, id, { cmd: ['sh', '-c', '[ -t 0 ] && [ -t 1 ] && echo is-a-tty; read x; echo "got $x" >&2; exit 6'], stdin: true, tty: true, size: { width: 100, height: 30 } }, { stdout: (d) => tty.push(d), stderr: (d) => tty.push(d) });
    t.write(Buffer.from('typed\n'));
    expect(await t.done).toEqual({ exitCode: 6, reason: '' });
    expect(Buffer.concat(tty).toString().replace(/\r/g, '')).toMatch(/is-a-tty\n(typed\n)?got typed\n/);

    // A resize reaches the process as SIGWINCH.
    const winch: Buffer[] = [];
    const w = await ExecSession.start(fx.containers, id, { cmd: ['sh', '-c', 'trap "echo winched; exit 0" WINCH; echo ready; while :; do sleep 0.1; done'], stdin: false, tty: true, size: { width: 80, height: 24 } }, { stdout: (d) => winch.push(d), stderr: (d) => winch.push(d) });
    for (let i = 0; i < 100 && !Buffer.concat(winch).toString().includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
    w.resize(120, 40);
    expect(await w.done).toEqual({ exitCode: 0, reason: '' });
    expect(Buffer.concat(winch).toString()).toContain('winched');
    expect(() => s.resize(10, 10)).toThrow(/the exec has no terminal/);

    await fx.containers.stop(id, 0);
    await expect(execSync(fx.containers, id, ['true'], 1)).rejects.toMatchObject({ kind: 'FailedPrecondition' });
  });

  it('samples stats from the cgroups under load and updates resources in place', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const id = await run(fx, sb.id, 'burn', ['sh', '-c', 'x=$(head -c 3000000 /dev/urandom); while true; do :; done']);
    const stats = new StatsSampler(fx.containers);
    await new Promise((r) => setTimeout(r, 300));
    const s1 = stats.sample(fx.containers.get(id));
    await new Promise((r) => setTimeout(r, 500));
    const s2 = stats.sample(fx.containers.get(id));
    expect(s2.cpu!.usageCoreNanoSeconds).toBeGreaterThan(s1.cpu!.usageCoreNanoSeconds);
    expect(s1.cpu!.usageNanoCores).toBeUndefined();
    expect(s2.cpu!.usageNanoCores).toBeGreaterThan(100_000_000); // a busy loop: well over 0.1 core
    expect(s2.memory!.workingSetBytes).toBeGreaterThan(1_000_000);
    expect(s2.pids!.current).toBeGreaterThanOrEqual(1);
    expect(s2.writableLayer?.fsId?.mountpoint).toBe(path.join(fx.containers.get(id).dir, 'upper'));
    expect(s2.attributes).toMatchObject({ id, metadata: { name: 'burn' } });

    await fx.containers.rt.update(id, { memory: { limit: 64 * 1024 * 1024 }, cpu: { quota: 20000, period: 100000 } });
    const st = fx.containers.rt.store.read(id);
    expect(fs.readFileSync(path.join(st.cgroupPaths['memory']!, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(64 * 1024 * 1024));
    expect(fs.readFileSync(path.join(st.cgroupPaths['cpu']!, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('20000');
    const s3 = stats.sample(fx.containers.get(id));
    expect(s3.memory!.availableBytes).toBeGreaterThan(0);
  });

  it('removes what a crash left half-made when the daemon starts again', async () => {
    fx = await new CriFixture().init();
    const sb = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const keep = await run(fx, sb.id, 'keep', ['sleep', '60']);
    // A container record still "creating", with its rootfs mounted, and a sandbox still
    // "creating" with a pinned namespace: what a daemon killed mid-create leaves.
    const halfC = path.join(fx.containers.criRoot, 'a'.repeat(64));
    fs.mkdirSync(path.join(halfC, 'rootfs'), { recursive: true });
    native.mount('tmpfs', path.join(halfC, 'rootfs'), 'tmpfs', [], 'size=1m');
    fs.writeFileSync(path.join(halfC, 'meta.json'), JSON.stringify({ id: 'a'.repeat(64), state: 'creating', rootfs: path.join(halfC, 'rootfs'), imageId: '', monitorPid: 0, monitorStart: '', dir: halfC }));
    const halfS = path.join(fx.sandboxes.root, 'b'.repeat(64));
    fs.mkdirSync(path.join(halfS, 'ns'), { recursive: true });
    fs.writeFileSync(path.join(halfS, 'ns', 'uts'), '');
    native.mount('/proc/self/ns/uts', path.join(halfS, 'ns', 'uts'), null, ['bind']);
    fs.writeFileSync(path.join(halfS, 'sandbox.json'), JSON.stringify({ ...fx.sandboxes.get(sb.id), id: 'b'.repeat(64), state: 'creating', dir: halfS, cgroupParent: `${fx.cgroupRoot}/half` }));

    fx.open();
    await fx.sandboxes.recover();
    await fx.containers.recover();
    expect(fs.existsSync(halfC)).toBe(false);
    expect(fs.existsSync(halfS)).toBe(false);
    expect(mountsUnder(halfC)).toEqual([]);
    expect(mountsUnder(halfS)).toEqual([]);
    expect(fx.sandboxes.get(sb.id).state).toBe('ready');
    expect(fx.containers.get(keep).phase).toBe('running');
    await fx.containers.stop(keep, 0);
    expect(fx.containers.get(keep).exitCode).toBe(137);
  });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
