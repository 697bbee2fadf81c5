// The runc CVE regressions and bad input: each safety rule proved on the real kernel, and
// a failed create leaves nothing behind. Through a one-shot runtime (the CLI's way: the init is
// cloned by a thread that attached itself to the container's cgroups); container.test runs the
// long-running runtime's way.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { isDumpable } from '@berth/native';

import { v1Mounts } from './cgroups/cgroups';
import { parseSignal } from './runtime';
import { uniqueId } from './testing/bundle';
import { Harness } from './testing/harness';

let h: Harness;
beforeEach(() => {
  h = new Harness({ oneShot: true });
});
afterEach(async () => {
  await h.cleanup();
});

const cgroupDirs = (id: string): string[] => Object.values(v1Mounts()).map((m) => path.join(m, 'berth', id)).filter((d) => fs.existsSync(d));

async function expectNothingLeft(id: string): Promise<void> {
  expect(fs.existsSync(h.rt.store.dir(id))).toBe(false);
  expect(cgroupDirs(id)).toEqual([]);
  expect(h.leakedMounts()).toEqual([]);
}

describe('CVE regressions', () => {
  it('CVE-2019-5736: the held init is non-dumpable; /proc/1/exe cannot be opened from the container', async () => {
    const b = h.bundle(['sleep', '30']);
    const id = uniqueId();
    await h.rt.create(id, { bundle: b.dir });
    const o = h.outFile();
    // Same uid and capabilities as the init: only its dumpable flag can make the kernel refuse.
    const caps = b.spec.process!.capabilities;
    const before = await h.rt.exec(id, { user: { uid: 0, gid: 0 }, capabilities: caps, cwd: '/', args: ['sh', '-c', 'readlink /proc/1/exe; echo rc=$?; cat /proc/1/exe > /dev/null; echo rc=$?'], env: ['PATH=/bin'] }, { stdio: [0, o.fd, o.fd] });
    await before.exited;
    expect(o.read()).toBe("rc=1\ncat: can't open '/proc/1/exe': Permission denied\nrc=1\n");
    // Control: once the container binary runs (dumpable again), the same probe works. (start
    // returns when init has read the fifo, a moment before its execve: hence the sleep.)
    await h.rt.start(id);
    const o2 = h.outFile();
    const after = await h.rt.exec(id, { user: { uid: 0, gid: 0 }, capabilities: caps, cwd: '/', args: ['sh', '-c', 'sleep 0.2; readlink /proc/1/exe'], env: ['PATH=/bin'] }, { stdio: [0, o2.fd, o2.fd] });
    await after.exited;
    expect(o2.read()).toBe('/bin/busybox\n');
  });

  it('the runtime process is non-dumpable only while a CLONE_VM init shares its memory', async () => {
    const until = async (ok: () => boolean): Promise<boolean> => {
      for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
      return ok();
    };
    expect(isDumpable()).toBe(true);
    const b = h.bundle(['true']);
    const ids = [uniqueId(), uniqueId()];
    const held = [];
    for (const id of ids) held.push(await h.rt.create(id, { bundle: b.dir }));
    // Two held inits run on our memory: both made it non-dumpable.
    expect(isDumpable()).toBe(false);
    await h.rt.start(ids[0]!);
    await held[0]!.exited;
    // One has exec'd; the other still shares our memory.
    await new Promise((r) => setTimeout(r, 100));
    expect(isDumpable()).toBe(false);
    await h.rt.start(ids[1]!);
    await held[1]!.exited;
    // The last one has exec'd: dumpable again (the launching thread says so once its clone returns).
    expect(await until(isDumpable)).toBe(true);
  });

  it('only stdio (and preserved fds) reach the container', async () => {
    const r = await h.run(['ls', '/proc/self/fd']);
    expect(r.out).toBe('0\n1\n2\n3\n'); // 3: ls's own directory fd
    const b = h.bundle(['ls', '/proc/self/fd']);
    const o = h.outFile();
    const extra = fs.openSync('/dev/null', 'r'); // CLOEXEC like every Node fd
    try {
      // preserve 1 fd: fd 3 of this process, whatever it is, crosses; the rest does not
      await h.rt.run(uniqueId(), { bundle: b.dir, stdio: [0, o.fd, o.fd], preserveFds: 1 });
    } finally {
      fs.closeSync(extra);
    }
    expect(o.read()).toBe('0\n1\n2\n3\n4\n');
  });

  it('CVE-2021-30465: a mount target behind a symlink is resolved inside the rootfs', async () => {
    const hostDir = fs.mkdtempSync(path.join(h.root, 'host-'));
    const b = h.bundle(['sh', '-c', `grep -E "/sub " /proc/self/mounts | cut -d" " -f2; ls ${hostDir}`], (s) => {
      s.mounts!.push({ destination: '/evil/sub', type: 'tmpfs', source: 'tmpfs' }, { destination: '/rel/sub', type: 'tmpfs', source: 'tmpfs' });
    });
    fs.symlinkSync(hostDir, path.join(b.rootfs, 'evil'));
    fs.symlinkSync('../../../../../../../..' + hostDir, path.join(b.rootfs, 'rel'));
    // The symlinks resolve inside the rootfs, where their target exists (a dangling one fails).
    fs.mkdirSync(path.join(b.rootfs, hostDir), { recursive: true });
    const o = h.outFile();
    expect(await h.rt.run(uniqueId(), { bundle: b.dir, stdio: [0, o.fd, o.fd] })).toBe(0);
    // Both mounts landed at <rootfs><hostDir>/sub, i.e. inside the container.
    expect(o.read()).toBe(`${hostDir}/sub\n${hostDir}/sub\nsub\n`);
    expect(fs.readdirSync(hostDir)).toEqual([]);
    expect(fs.existsSync(path.join(b.rootfs, hostDir, 'sub'))).toBe(true);
    expect(h.leakedMounts()).toEqual([]);
    // Dangling inside the rootfs (like an image's /var/run -> /run without /run): its target is
    // created inside the rootfs, as runc does, and still nothing happens on the host.
    const d = h.bundle(['sh', '-c', `grep -E "/sub " /proc/self/mounts | cut -d" " -f2`], (s) => s.mounts!.push({ destination: '/evil/sub', type: 'tmpfs', source: 'tmpfs' }));
    fs.symlinkSync(hostDir, path.join(d.rootfs, 'evil'));
    const o2 = h.outFile();
    expect(await h.rt.run(uniqueId(), { bundle: d.dir, stdio: [0, o2.fd, o2.fd] })).toBe(0);
    expect(o2.read()).toBe(`${hostDir}/sub\n`);
    expect(fs.existsSync(path.join(d.rootfs, hostDir, 'sub'))).toBe(true);
    expect(fs.readdirSync(hostDir)).toEqual([]);
    expect(h.leakedMounts()).toEqual([]);
    // A symlink loop is refused (ELOOP), not followed forever.
    const id = uniqueId();
    const l = h.bundle(['true'], (s) => s.mounts!.push({ destination: '/loop/sub', type: 'tmpfs', source: 'tmpfs' }));
    fs.symlinkSync('/loop2', path.join(l.rootfs, 'loop'));
    fs.symlinkSync('/loop', path.join(l.rootfs, 'loop2'));
    await expect(h.rt.run(id, { bundle: l.dir })).rejects.toThrow(/mount 'tmpfs' on '\/loop\/sub'.*ELOOP/);
    await expectNothingLeft(id);
  });

  it('CVE-2024-21626: a cwd through a magic link is refused; a symlinked cwd stays inside', async () => {
    const id = uniqueId();
    // /proc/self/cwd is a magic link to a directory (the init's cwd: outside the rootfs then).
    await expect(h.run(['pwd'], (s) => (s.process!.cwd = '/proc/self/cwd'), id)).rejects.toThrow(/process\.cwd: '\/proc\/self\/cwd'.*ELOOP/);
    await expectNothingLeft(id);
    const b = h.bundle(['sh', '-c', 'pwd; ls'], (s) => (s.process!.cwd = '/up'));
    fs.symlinkSync('../../../../..', path.join(b.rootfs, 'up'));
    const o = h.outFile();
    await h.rt.run(uniqueId(), { bundle: b.dir, stdio: [0, o.fd, o.fd] });
    expect(o.read()).toMatch(/^\/\n(.*\n)*bin\n/);
    expect(o.read()).not.toMatch(/^work$/m);
  });

  it('CVE-2025-31133: a masked path swapped for a symlink does not mask its target', async () => {
    const b = h.bundle(['sh', '-c', 'head -c 4 /bin/busybox | od -c | head -1; grep -c busybox /proc/self/mounts'], (s) => {
      s.linux!.maskedPaths = ['/etc/masked', '/proc/kcore'];
    });
    fs.symlinkSync('/bin/busybox', path.join(b.rootfs, 'etc', 'masked'));
    const o = h.outFile();
    await h.rt.run(uniqueId(), { bundle: b.dir, stdio: [0, o.fd, o.fd] });
    expect(o.read()).toMatch(/177\s+E\s+L\s+F\n0\n/);
  });

  it('CVE-2019-16884: sysctl writes go only to a real procfs', async () => {
    const id = uniqueId();
    const hostValue = fs.readFileSync('/proc/sys/kernel/shmmni', 'utf8');
    await expect(
      h.run(['true'], (s) => {
        s.mounts = s.mounts!.map((m) => (m.destination === '/proc' ? { destination: '/proc', type: 'tmpfs', source: 'tmpfs' } : m));
        s.linux!.maskedPaths = [];
        s.linux!.readonlyPaths = [];
        s.linux!.sysctl = { 'kernel.shmmni': '777' };
      }, id),
    ).rejects.toThrow(/linux\.sysctl\.kernel\.shmmni: \/proc in the container is not a procfs/);
    expect(fs.readFileSync('/proc/sys/kernel/shmmni', 'utf8')).toBe(hostValue);
    await expectNothingLeft(id);
  });
});

describe('bad input', () => {
  it.each([
    ['an unknown field', (s: any) => (s.process.bogus = 1), /process\.bogus: unknown field/],
    ['an unknown nested field', (s: any) => (s.linux.resources = { memory: { limt: 1 } }), /linux\.resources\.memory\.limt: unknown field/],
    ['a wrong type', (s: any) => (s.process.user.uid = -1), /process\.user\.uid: expected a non-negative integer, got number/],
    ['a missing rootfs', (s: any) => (s.root.path = 'nope'), /root\.path: rootfs '.*\/nope' does not exist/],
    ['uid maps without a user namespace', (s: any) => (s.linux.uidMappings = [{ containerID: 0, hostID: 1000, size: 1 }]), /linux\.uidMappings: mappings need a new user namespace/],
    ['a user namespace without maps', (s: any) => s.linux.namespaces.push({ type: 'user' }), /linux\.uidMappings: a new user namespace needs uid and gid mappings/],
    ['overlapping uid maps (the kernel refuses them)', (s: any) => {
      s.linux.namespaces.push({ type: 'user' });
      s.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 10 }, { containerID: 5, hostID: 200000, size: 10 }];
      s.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 10 }];
    }, /container init failed: linux\.uidMappings: write \(stage uid_map\): EINVAL/],
    ['an unknown capability', (s: any) => s.process.capabilities.bounding.push('CAP_FLY'), /process\.capabilities\.bounding\[3\]: unknown capability 'CAP_FLY'/],
    ['an unknown rlimit', (s: any) => s.process.rlimits.push({ type: 'RLIMIT_FUN', soft: 1, hard: 1 }), /process\.rlimits\[1\]\.type: unknown rlimit/],
    ['an unknown namespace', (s: any) => s.linux.namespaces.push({ type: 'bogus' }), /linux\.namespaces\[5\]\.type: unknown namespace type 'bogus'/],
    ['an unknown seccomp action', (s: any) => (s.linux.seccomp = { defaultAction: 'SCMP_ACT_NOPE' }), /linux\.seccomp\.defaultAction: unknown seccomp action/],
    ['a relative mount destination', (s: any) => s.mounts.push({ destination: 'tmp', type: 'tmpfs' }), /mounts\[7\]\.destination: must be an absolute path/],
    ['a missing executable', (s: any) => (s.process.args = ['nope-cmd']), /process\.args\[0\]: exec: "nope-cmd": executable file not found in \$PATH/],
    ['an rlimit above the hard limit', (s: any) => (s.process.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 30000 }]), /process\.rlimits\[0\]: RLIMIT_NOFILE soft 1024 hard 30000 \(above the hard limit this runtime may set\).*EPERM/],
  ])('%s: a clear error and nothing left behind', async (_name, edit, re) => {
    const id = uniqueId();
    await expect(h.run(['true'], edit, id)).rejects.toThrow(re);
    await expectNothingLeft(id);
  });

  it('duplicate ids and a crashed state dir name the id', async () => {
    const b = h.bundle(['sleep', '10']);
    const id = uniqueId();
    await h.rt.create(id, { bundle: b.dir });
    await expect(h.rt.create(id, { bundle: b.dir })).rejects.toThrow(`container with given ID already exists: ${id}`);
    const crashed = uniqueId();
    fs.mkdirSync(h.rt.store.dir(crashed));
    await expect(h.rt.create(crashed, { bundle: b.dir })).rejects.toThrow(new RegExp(`container with id ${crashed} has a state directory without state.json`));
    // as if the crash came after the cgroup was made
    const crashedCg = path.join(v1Mounts()['pids']!, 'berth', crashed);
    fs.mkdirSync(crashedCg, { recursive: true });
    await h.rt.delete(crashed, true);
    expect(fs.existsSync(h.rt.store.dir(crashed))).toBe(false);
    expect(fs.existsSync(crashedCg)).toBe(false);
    expect(() => h.rt.state('no-such')).toThrow('container does not exist: no-such');
    expect(() => h.rt.state('../x')).toThrow('invalid container id format: ../x');
  });

  it.each([['FOO'], ['SIGFOO'], ['99'], ['0']])('unknown signal %s', (sig) => expect(() => parseSignal(sig)).toThrow(`unknown signal "${sig}"`));
  it.each([['KILL', 9], ['SIGTERM', 15], ['hup', 1], ['10', 10]])('signal %s is %d', (sig, n) => expect(parseSignal(sig)).toBe(n));
});
