// The container init path on the real kernel, through the runtime library: namespaces,
// mounts, devices, identity, capabilities, rlimits, seccomp, masked/readonly paths, hooks.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { cgroupMounts, mountinfoView, uniqueId } from './testing/bundle';
import { Harness } from './testing/harness';

let h: Harness;
beforeEach(() => {
  h = new Harness();
});
afterEach(async () => {
  await h.cleanup();
});

const ino = (p: string): string => fs.readlinkSync(p);

describe('namespaces, seen from inside', () => {
  it('pid: the process is pid 1 and sees only its own processes', async () => {
    const r = await h.run(['sh', '-c', 'echo pid=$$; ls /proc | grep -E "^[0-9]+$" | wc -l']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^pid=1\n/);
    // sh, ls, grep, wc at most
    expect(Number(r.out.split('\n')[1])).toBeLessThanOrEqual(4);
  });

  it('uts: the hostname and domainname of the spec', async () => {
    const r = await h.run(['sh', '-c', 'hostname; cat /proc/sys/kernel/domainname'], (s) => {
      s.hostname = 'berth-box';
      s.domainname = 'example.test';
    });
    expect(r.out).toBe('berth-box\nexample.test\n');
    expect(fs.readFileSync('/proc/sys/kernel/hostname', 'utf8').trim()).not.toBe('berth-box');
  });

  it('net, ipc, mount, uts: namespaces differ from the host', async () => {
    const r = await h.run(['sh', '-c', 'ls /sys/class/net; for n in net ipc mnt uts pid; do readlink /proc/self/ns/$n; done']);
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toBe('lo');
    for (const [i, n] of ['net', 'ipc', 'mnt', 'uts', 'pid'].entries()) expect(lines[i + 1]).not.toBe(ino(`/proc/self/ns/${n}`));
  });

  it('mount: only the container mounts are visible, none propagate to the host', async () => {
    const r = await h.run(['cat', '/proc/self/mounts']);
    expect(r.out).toMatch(/^\S+ \/ /m);
    expect(r.out).toMatch(/ \/proc proc /);
    expect(r.out).toMatch(/ \/dev\/pts devpts /);
    expect(r.out).not.toMatch(/ \/work /);
    expect(h.leakedMounts()).toEqual([]);
  });

  it('user: uid/gid maps, root inside is an unprivileged id outside', async () => {
    const r = await h.run(['sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map; id -u; sleep 0.3 & cat /proc/$!/status | grep ^Uid'], (s) => {
      s.linux!.namespaces!.push({ type: 'user' });
      s.linux!.uidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
      s.linux!.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
      // sysfs and cgroup binds belong to the host user namespace's mounts
      s.mounts = s.mounts!.filter((m) => m.type !== 'sysfs' && m.type !== 'cgroup');
      s.linux!.maskedPaths = s.linux!.maskedPaths!.filter((p) => !p.startsWith('/sys'));
    });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^\s+0\s+200000\s+65536\n\s+0\s+200000\s+65536\n0\n/);
  });

  it('time: boottime offset moves /proc/uptime', async () => {
    const r = await h.run(['cat', '/proc/uptime'], (s) => {
      s.linux!.namespaces!.push({ type: 'time' });
      s.linux!.timeOffsets = { boottime: { secs: 86400 * 365, nanosecs: 0 } };
    });
    expect(r.code, r.out).toBe(0);
    const host = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    expect(Number(r.out.split(' ')[0]) - host).toBeGreaterThan(86400 * 364);
  });

  it('cgroup: a new cgroup namespace is rooted at the container\'s own cgroups', async () => {
    if (!fs.existsSync('/proc/self/ns/cgroup')) {
      await expect(h.run(['true'], (s) => s.linux!.namespaces!.push({ type: 'cgroup' }))).rejects.toThrow(/linux\.namespaces\[5\]: this kernel has no cgroup namespace/);
      return;
    }
    const r = await h.run(['sh', '-c', 'readlink /proc/self/ns/cgroup; cat /proc/self/cgroup'], (s) => s.linux!.namespaces!.push({ type: 'cgroup' }));
    expect(r.code, r.out).toBe(0);
    const [ns, ...cgroups] = r.out.trim().split('\n');
    expect(ns).not.toBe(ino('/proc/self/ns/cgroup'));
    // Every v1 hierarchy the runtime placed it in is "/" from inside (made after the move, not
    // by clone(), which would root it at the runtime's own cgroup).
    const v1 = cgroups.filter((l) => !l.startsWith('0::') && !/:name=/.test(l));
    expect(v1.length).toBeGreaterThan(3);
    for (const l of v1) expect(l).toMatch(/:\/$/);
    // without one, the container sees its path on the host
    const plain = await h.run(['cat', '/proc/self/cgroup'], undefined, 'nocgns-' + uniqueId());
    expect(plain.out).toMatch(new RegExp(`:memory:/berth/${plain.id}\n`));
  });

  it('joins an existing namespace by path', async () => {
    const b = h.bundle(['sleep', '30']);
    const id = uniqueId();
    const c = await h.rt.create(id, { bundle: b.dir });
    const r = await h.run(['readlink', '/proc/self/ns/net'], (s) => {
      s.linux!.namespaces = s.linux!.namespaces!.map((n) => (n.type === 'network' ? { type: 'network', path: `/proc/${c.state.pid}/ns/net` } : n));
    });
    expect(r.out.trim()).toBe(ino(`/proc/${c.state.pid}/ns/net`));
  });
});

describe('process identity and privileges', () => {
  it('uid, gid, additionalGids, umask, cwd, env', async () => {
    const r = await h.run(['sh', '-c', 'id; umask; pwd; echo $FOO'], (s) => {
      s.process!.user = { uid: 1000, gid: 1001, additionalGids: [5, 7], umask: 0o077 };
      s.process!.cwd = '/work/dir';
      s.process!.env!.push('FOO=bar baz');
    });
    expect(r.out).toBe('uid=1000 gid=1001 groups=5,7\n0077\n/work/dir\nbar baz\n');
  });

  it('dropped capabilities: mknod and chown fail; bounding set is the spec', async () => {
    const r = await h.run(['sh', '-c', 'mknod /tmp/n c 1 3; echo mknod=$?; touch /tmp/f; chown 5:5 /tmp/f; echo chown=$?; grep CapBnd /proc/self/status']);
    expect(r.out).toMatch(/mknod=1/);
    expect(r.out).toMatch(/chown=1/);
    expect(r.out).toMatch(/CapBnd:\s+0000000020000420/);
  });

  it('with CAP_MKNOD and CAP_CHOWN granted, the same commands work', async () => {
    const r = await h.run(['sh', '-c', 'mknod /tmp/n c 1 3; echo mknod=$?; touch /tmp/f; chown 5:5 /tmp/f; echo chown=$?'], (s) => {
      for (const k of ['bounding', 'effective', 'permitted'] as const) s.process!.capabilities![k]!.push('CAP_MKNOD', 'CAP_CHOWN');
      s.root!.readonly = false;
    });
    expect(r.out).toBe('mknod=0\nchown=0\n');
  });

  it('rlimits are applied', async () => {
    const r = await h.run(['sh', '-c', 'ulimit -n; ulimit -Hn'], (s) => {
      s.process!.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 123, hard: 456 }];
    });
    expect(r.out).toBe('123\n456\n');
  });

  it('a new session keyring unless --no-new-keyring', async () => {
    // In a user namespace with a host uid range of its own, /proc/keys shows only this
    // container's keyrings (root-owned ones of other containers are not viewable).
    // Each container gets a range of its own: a dead container's keyring stays listed (owned by
    // its uid) until the kernel's key GC gets to it, and must not show up in the next one.
    const base = Math.floor(Math.random() * 500) * 2;
    const inUserns = (hostId: number) => (s: Parameters<NonNullable<Parameters<Harness['run']>[1]>>[0]): void => {
      s.linux!.maskedPaths = s.linux!.maskedPaths!.filter((p) => p !== '/proc/keys' && !p.startsWith('/sys'));
      s.linux!.namespaces!.push({ type: 'user' });
      s.linux!.uidMappings = [{ containerID: 0, hostID: hostId, size: 65536 }];
      s.linux!.gidMappings = [{ containerID: 0, hostID: hostId, size: 65536 }];
      s.mounts = s.mounts!.filter((m) => m.type !== 'sysfs' && m.type !== 'cgroup');
    };
    const r = await h.run(['cat', '/proc/keys'], inUserns(300000 + base * 65536));
    expect(r.code, r.out).toBe(0);
    // its session keyring is a new, anonymous, empty one; the runtime's is not reachable
    expect(r.out).toMatch(/keyring\s+_ses: empty/);
    expect(r.out).not.toMatch(/_uid_ses\.0/);
    // control: with --no-new-keyring it possesses the runtime's session keyring instead
    const b = h.bundle(['cat', '/proc/keys'], inUserns(300000 + (base + 1) * 65536));
    const o = h.outFile();
    await h.rt.run(uniqueId(), { bundle: b.dir, stdio: [0, o.fd, o.fd], noNewKeyring: true });
    expect(o.read()).not.toMatch(/keyring\s+_ses: /);
  });

  it('no_new_privileges is set', async () => {
    const r = await h.run(['grep', 'NoNewPrivs', '/proc/self/status']);
    expect(r.out).toMatch(/NoNewPrivs:\s+1/);
  });

  it('seccomp: a rule blocks a syscall with the chosen errno, others pass', async () => {
    const r = await h.run(['sh', '-c', 'mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && echo touch=ok'], (s) => {
      s.root!.readonly = false;
      s.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 122 }] };
    });
    expect(r.out).toMatch(/Disk quota exceeded/);
    expect(r.out).toMatch(/mkdir=1\ntouch=ok/);
  });

  it('seccomp: argument conditions and KILL_PROCESS', async () => {
    // kill(pid, 0) passes; kill(pid, SIGUSR1) kills the caller with SIGSYS.
    const r = await h.run(['sh', '-c', 'kill -0 $$ && echo probe-ok; kill -USR1 $$; echo not-reached'], (s) => {
      s.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['kill'], action: 'SCMP_ACT_KILL_PROCESS', args: [{ index: 1, value: 10, op: 'SCMP_CMP_EQ' }] }] };
    });
    expect(r.out).toBe('probe-ok\n');
    expect(r.code).toBe(128 + 31); // SIGSYS
  });

  it.each([
    // mkdir runs in a forked child of sh: it dies of SIGSYS, sh reports it and goes on
    ['SCMP_ACT_TRAP', 0, 'Bad system call\nran\n'],
    ['SCMP_ACT_KILL_THREAD', 0, 'Bad system call\nran\n'],
    ['SCMP_ACT_LOG', 0, 'ran\n'], // logged and allowed
  ])('seccomp action %s', async (action, code, out) => {
    const r = await h.run(['sh', '-c', 'mkdir -p /tmp/q; echo ran'], (s) => {
      s.root!.readonly = false;
      s.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action }] };
    });
    expect([r.code, r.out]).toEqual([code, out]);
  });

  it('oom_score_adj and sysctls', async () => {
    const r = await h.run(['cat', '/proc/self/oom_score_adj', '/proc/sys/net/ipv4/ip_forward', '/proc/sys/kernel/shmmni'], (s) => {
      s.process!.oomScoreAdj = 345;
      s.linux!.sysctl = { 'net.ipv4.ip_forward': '1', 'kernel.shmmni': '1234' };
    });
    expect(r.out).toBe('345\n1\n1234\n');
  });
});

describe('filesystem', () => {
  it('read-only root, /dev devices and symlinks, shm and mqueue', async () => {
    const r = await h.run(['sh', '-c', 'touch /x 2>&1; ls -l /dev/null /dev/ptmx /dev/fd | cut -c1,45-; grep -E " /dev/(shm|mqueue) " /proc/self/mounts | cut -d" " -f2,3']);
    expect(r.out).toMatch(/Read-only file system/);
    expect(r.out).toMatch(/^c/m);
    expect(r.out).toMatch(/ptmx -> pts\/ptmx/);
    expect(r.out).toMatch(/fd -> \/proc\/self\/fd/);
    expect(r.out).toMatch(/\/dev\/shm tmpfs\n\/dev\/mqueue mqueue/);
  });

  it('masked and read-only paths', async () => {
    const r = await h.run(['sh', '-c', 'cat /proc/keys | wc -c; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/ns_last_pid; echo rc=$?']);
    expect(r.out).toMatch(/^0\n0\n/);
    expect(r.out).toMatch(/Read-only file system\nrc=1/);
  });

  it('bind mounts with options (ro, file bind, rbind)', async () => {
    const hostDir = fs.mkdtempSync(path.join(h.root, 'hostdir-'));
    fs.writeFileSync(path.join(hostDir, 'f'), 'from host\n');
    const r = await h.run(['sh', '-c', 'cat /mnt/data/f /etc/extra; touch /mnt/data/g; echo rc=$?'], (s) => {
      s.mounts!.push({ destination: '/mnt/data', type: 'bind', source: hostDir, options: ['rbind', 'ro', 'nosuid'] });
      s.mounts!.push({ destination: '/etc/extra', type: 'bind', source: path.join(hostDir, 'f'), options: ['bind'] });
    });
    expect(r.out).toMatch(/^from host\nfrom host\n.*Read-only file system\nrc=1/s);
    expect(fs.existsSync(path.join(hostDir, 'g'))).toBe(false);
  });

  it('overlay mounts (lower from the host, writes land in the upper dir)', async () => {
    const base = fs.mkdtempSync(path.join(h.root, 'ovl-'));
    for (const d of ['lower', 'upper', 'work']) fs.mkdirSync(path.join(base, d));
    fs.writeFileSync(path.join(base, 'lower', 'from-lower'), 'L\n');
    const r = await h.run(['sh', '-c', 'cat /ov/from-lower; echo U > /ov/new; grep " /ov " /proc/self/mounts | cut -d" " -f3'], (s) => {
      s.mounts!.push({ destination: '/ov', type: 'overlay', source: 'overlay', options: [`lowerdir=${base}/lower,upperdir=${base}/upper,workdir=${base}/work`] });
    });
    expect(r.out).toBe('L\noverlay\n');
    expect(fs.readFileSync(path.join(base, 'upper', 'new'), 'utf8')).toBe('U\n');
    expect(fs.existsSync(path.join(base, 'lower', 'new'))).toBe(false);
  });

  it('--no-pivot uses chroot and still isolates the root', async () => {
    const b = h.bundle(['ls', '/']);
    const o = h.outFile();
    const code = await h.rt.run(uniqueId(), { bundle: b.dir, noPivot: true, stdio: [0, o.fd, o.fd] });
    expect(code).toBe(0);
    expect(o.read()).toMatch(/^bin$/m);
    expect(o.read()).not.toMatch(/^work$/m);
  });

  it('hooks get the state on stdin (prestart/createRuntime, poststart, poststop)', async () => {
    const log = path.join(h.root, 'hook.log');
    const r = await h.run(['true'], (s) => {
      s.hooks = {
        createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${log}.cr`] }],
        poststart: [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${log}.ps`] }],
        poststop: [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${log}.stop`] }],
      };
    }, 'hooked-' + uniqueId());
    expect(r.code).toBe(0);
    const cr = JSON.parse(fs.readFileSync(`${log}.cr`, 'utf8'));
    expect(cr).toMatchObject({ id: r.id, status: 'creating', ociVersion: '1.0.2' });
    expect(cr.pid).toBeGreaterThan(1);
    expect(JSON.parse(fs.readFileSync(`${log}.ps`, 'utf8'))).toMatchObject({ id: r.id, status: 'running' });
    expect(JSON.parse(fs.readFileSync(`${log}.stop`, 'utf8'))).toMatchObject({ id: r.id, status: 'stopped' });
  });

  it('hooks run at their OCI points and in their namespaces (inode and state recorded by each)', async () => {
    const out = fs.mkdtempSync(path.join(h.root, 'hooks-'));
    fs.chmodSync(out, 0o777);
    // Each hook writes: its mnt/net/pid namespace, what is mounted at the rootfs' host path
    // /proc (a procfs only inside the container's mount namespace before pivot_root), and the
    // state it got on stdin.
    const record = (name: string): string =>
      `st=$(cat); b=$(echo "$st" | sed 's/.*"bundle":"\\([^"]*\\)".*/\\1/'); { for n in mnt net pid; do readlink /proc/self/ns/$n; done; stat -f -c %T $b/rootfs/proc 2>&1; echo "$st"; } > ${out}/${name}`;
    const r = await h.run(['sh', '-c', 'for n in mnt net pid; do readlink /proc/self/ns/$n; done; cat /hookout/start'], (s) => {
      s.mounts!.push({ destination: '/hookout', type: 'bind', source: out, options: ['rbind'] });
      s.hooks = {
        createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', record('createRuntime')] }],
        createContainer: [{ path: '/bin/sh', args: ['sh', '-c', record('createContainer')] }],
        // resolved in the container's root (busybox): writes through the bind mount
        startContainer: [{ path: '/bin/sh', args: ['sh', '-c', '{ for n in mnt net pid; do readlink /proc/self/ns/$n; done; cat; } > /hookout/start'] }],
        poststart: [{ path: '/bin/sh', args: ['sh', '-c', record('poststart')] }],
      };
    }, 'hooks-' + uniqueId());
    expect(r.code, r.out).toBe(0);
    const lines = r.out.trim().split('\n');
    const container = lines.slice(0, 3);
    const host = ['mnt', 'net', 'pid'].map((n) => ino(`/proc/self/ns/${n}`));
    for (const i of [0, 1, 2]) expect(container[i]).not.toBe(host[i]);
    const read = (name: string): { ns: string[]; proc: string; state: Record<string, unknown> } => {
      const [a, b, c, proc, ...state] = fs.readFileSync(path.join(out, name), 'utf8').split('\n');
      return { ns: [a!, b!, c!], proc: proc!, state: JSON.parse(state.join('\n')) as Record<string, unknown> };
    };
    // createRuntime: the runtime's namespaces, before pivot_root; the container is "creating"
    const cr = read('createRuntime');
    expect(cr.ns).toEqual(host);
    expect(cr.proc).not.toBe('proc');
    expect(cr.state).toMatchObject({ id: r.id, status: 'creating', ociVersion: '1.0.2' });
    expect(cr.state['pid']).toBeGreaterThan(1);
    // createContainer: the container's namespaces, before pivot_root (its procfs is at the
    // rootfs' host path there), the path resolved in the runtime's filesystem
    const cc = read('createContainer');
    expect(cc.ns).toEqual(container);
    expect(cc.proc).toBe('proc');
    expect(cc.state).toMatchObject({ id: r.id, status: 'creating', pid: cr.state['pid'] });
    // startContainer: the container's namespaces after pivot_root, before the process
    expect(lines.slice(3, 6)).toEqual(container);
    expect(JSON.parse(lines.slice(6).join('\n'))).toMatchObject({ id: r.id, status: 'created' });
    // poststart: the runtime's namespaces again
    const ps = read('poststart');
    expect(ps.ns).toEqual(host);
    expect(ps.state).toMatchObject({ id: r.id, status: 'running' });
  });

  it('run (startAtOnce): the init execs without holding at an exec fifo, unless a startContainer hook must run first', async () => {
    const nul = fs.openSync('/dev/null', 'r');
    try {
      const at = h.bundle(['sh', '-c', 'echo ran']);
      const o = h.outFile();
      const id = uniqueId();
      const c = await h.rt.create(id, { bundle: at.dir, stdio: [nul, o.fd, o.fd], startAtOnce: true });
      expect(c.started).toBe(true);
      expect(c.state.status).toBe('running');
      expect(fs.existsSync(h.rt.store.fifo(id))).toBe(false);
      // No start: the process runs to its end by itself.
      expect((await c.exited).code).toBe(0);
      expect(o.read()).toBe('ran\n');
      await expect(h.rt.start(id)).rejects.toThrow(/cannot start a container that has stopped/);
      await h.rt.delete(id);
      fs.closeSync(o.fd);

      const hooked = h.bundle(['sh', '-c', 'echo ran'], (s) => {
        s.hooks = { startContainer: [{ path: '/bin/true' }] };
      });
      const o2 = h.outFile();
      const id2 = uniqueId();
      const c2 = await h.rt.create(id2, { bundle: hooked.dir, stdio: [nul, o2.fd, o2.fd], startAtOnce: true });
      expect(c2.started).toBe(false);
      expect(h.rt.state(id2).status).toBe('created');
      expect(o2.read()).toBe('');
      await h.rt.start(id2);
      expect((await c2.exited).code).toBe(0);
      expect(o2.read()).toBe('ran\n');
      await h.rt.delete(id2);
      fs.closeSync(o2.fd);
    } finally {
      fs.closeSync(nul);
    }
  });

  it('a failing createContainer hook stops create before pivot_root and leaves nothing', async () => {
    const id = uniqueId();
    const b = h.bundle(['true'], (s) => {
      s.hooks = { createContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'echo nope >&2; exit 7'] }] };
    });
    await expect(h.rt.create(id, { bundle: b.dir })).rejects.toThrow(/createContainer hook \/bin\/sh failed: exit status 7: nope/);
    expect(fs.existsSync(h.rt.store.dir(id))).toBe(false);
    expect(fs.existsSync(`/sys/fs/cgroup/memory/berth/${id}`)).toBe(false);
    expect(h.leakedMounts()).toEqual([]);
  });

  it('hook timeout', async () => {
    const b = h.bundle(['true'], (s) => {
      s.hooks = { prestart: [{ path: '/bin/sleep', args: ['sleep', '10'], timeout: 1 }] };
    });
    await expect(h.rt.create(uniqueId(), { bundle: b.dir })).rejects.toThrow(/timed out after 1s/);
  });
});

describe('an init killed before its first report', () => {
  // The CLONE_VM init's first act is prctl(PR_SET_DUMPABLE) and then its "hello" (its pidfd) on
  // the status pipe. strace holds each thread's first prctl for 1 s, and the helper kills its
  // child (the init) meanwhile: it dies before the hello. The create must fail (it used to wait
  // forever, with the pidfd leaked and the init a zombie) and leave no fd, child, state or cgroup.
  it('fails the create with a clear error and leaves nothing behind', async () => {
    const id = uniqueId();
    const b = h.bundle(['true']);
    const dist = path.resolve(__dirname, '..', 'dist', 'runtime.js');
    const script = `
      const fs = require('fs');
      const { Runtime } = require(${JSON.stringify(dist)});
      const rt = new Runtime({ root: ${JSON.stringify(h.root)} });
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      const children = () => fs.readdirSync('/proc/self/task').flatMap((t) => fs.readFileSync('/proc/self/task/' + t + '/children', 'utf8').trim().split(' ').filter(Boolean));
      const before = fds();
      const hang = setTimeout(() => { console.log(JSON.stringify({ hang: true })); process.exit(3); }, 20000);
      const killer = setInterval(() => { for (const c of children()) { try { process.kill(Number(c), 'SIGKILL'); } catch {} } }, 5);
      rt.create(${JSON.stringify(id)}, { bundle: ${JSON.stringify(b.dir)} }).then(() => ({ created: true }), (e) => ({ error: e.message }))
        .then((r) => { clearTimeout(hang); clearInterval(killer); console.log(JSON.stringify({ ...r, before, after: fds(), children: children() })); process.exit(0); });`;
    const { stdout } = await promisify(execFile)('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=prctl', '-e', 'inject=prctl:delay_enter=1000000:when=1', process.execPath, '-e', script], { timeout: 60_000 });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { hang?: boolean; error?: string; before: number; after: number; children: string[] };
    expect(r.hang).toBeUndefined();
    expect(r.error).toMatch(/container init failed: the init process died before its first report/);
    expect(r.after).toBe(r.before);
    expect(r.children).toEqual([]);
    expect(fs.existsSync(h.rt.store.dir(id))).toBe(false);
    expect(fs.existsSync(`/sys/fs/cgroup/memory/berth/${id}`)).toBe(false);
    expect(h.leakedMounts()).toEqual([]);
  });
});

describe('/sys/fs/cgroup of a one-shot run (the CLI\'s way)', () => {
  it('is attached from the tree its spawner thread built, with the mounts the ops make', async () => {
    const oneShot = new Harness({ oneShot: true });
    try {
      const view = async (hh: Harness): Promise<string[]> => {
        const id = uniqueId();
        const r = await hh.run(['cat', '/proc/self/mountinfo'], undefined, id);
        expect(r.code).toBe(0);
        return mountinfoView(r.out, id);
      };
      const tree = await view(oneShot);
      const ops = await view(h); // a runtime without a spawner: the ops mount it
      expect(cgroupMounts(tree).length).toBeGreaterThan(1);
      expect(cgroupMounts(tree)).toEqual(cgroupMounts(ops));
      // Attached, not mounted in place: the tree's mounts are older than the container's root.
      expect(tree[0]).toMatch(/ \/sys\/fs\/cgroup /);
      expect(ops[0]).not.toMatch(/ \/sys\/fs\/cgroup /);
    } finally {
      await oneShot.cleanup();
    }
  });
});
