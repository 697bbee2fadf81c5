// Pure logic, no kernel: what the plan compiler asks the addon to do (through the recording
// fake), the seccomp compiler's program, config validation and mount option parsing. The
// same code is exercised on the real kernel in container.test.ts and security.test.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLONE_FLAGS, MOUNT_FLAGS, RecordingContainerFake } from '@berth/native';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { validateSpec } from './oci/config';
import { defaultSpec } from './oci/default-spec';
import { compilePlan, executableCandidates, parseMountOptions } from './oci/plan';
import { compileSeccomp } from './oci/seccomp';
import { Runtime } from './runtime';
import { makeBundle, type Bundle } from './testing/bundle';

let b: Bundle;
beforeEach(() => {
  b = makeBundle(['sh']);
});
afterEach(() => b.remove());

const plan = (edit?: (s: typeof b.spec) => void) => {
  const spec = structuredClone(b.spec);
  edit?.(spec);
  const c = compilePlan({ spec: validateSpec(spec), bundle: b.dir, fifo: null, cgroupProcs: [], cgroupDirs: {} });
  for (const fd of c.fds) fs.closeSync(fd);
  return c.plan;
};

describe('plan compiler', () => {
  it('the default spec: five new namespaces, devices by mknod, masks after sysctls, caps as masks', () => {
    const p = plan((s) => (s.linux!.sysctl = { 'kernel.shmmax': '1' }));
    expect(p.cloneFlags).toBe(CLONE_FLAGS.pid | CLONE_FLAGS.net | CLONE_FLAGS.ipc | CLONE_FLAGS.uts | CLONE_FLAGS.mount);
    const kinds = p.ops!.map((o) => o.kind);
    expect(kinds.filter((k) => k === 'mknod')).toHaveLength(6);
    expect(kinds.indexOf('sysctl')).toBeLessThan(kinds.indexOf('mask'));
    expect(kinds.lastIndexOf('mask')).toBeLessThan(kinds.indexOf('readonly'));
    expect(p.caps!.bounding).toBe((1n << 29n) | (1n << 5n) | (1n << 10n));
    // ambient needs permitted and inheritable: the default spec has no inheritable set
    expect(p.caps!.ambient).toBe(0n);
    expect(p.rootReadonly).toBe(true);
    expect(p.candidates[0]).toBe('/usr/local/sbin/sh');
  });

  it('in a user namespace, devices are bind mounts of the host nodes and maps are set', () => {
    const p = plan((s) => {
      s.linux!.namespaces!.push({ type: 'user' });
      s.linux!.uidMappings = [{ containerID: 0, hostID: 1000, size: 10 }];
      s.linux!.gidMappings = [{ containerID: 0, hostID: 2000, size: 10 }];
    });
    expect(p.ops!.filter((o) => o.kind === 'mknod')).toHaveLength(0);
    expect(p.ops!).toContainEqual({ kind: 'mount', source: '/dev/null', target: 'dev/null', fstype: null, flags: MOUNT_FLAGS.bind, data: null, mkdir: 'file' });
    expect([p.uidMap, p.gidMap]).toEqual(['0 1000 10\n', '0 2000 10\n']);
  });

  it('bind mount options become a bind, a remount with the flags, and a propagation step', () => {
    const p = plan((s) => s.mounts!.push({ destination: '/data', type: 'bind', source: b.rootfs, options: ['rbind', 'ro', 'nosuid', 'rslave'] }));
    const ops = p.ops!.filter((o) => o.target === 'data');
    expect(ops).toEqual([
      { kind: 'mount', source: b.rootfs, target: 'data', fstype: null, flags: MOUNT_FLAGS.rbind, data: null, mkdir: 'dir' },
      { kind: 'remount', target: 'data', flags: MOUNT_FLAGS.bind | MOUNT_FLAGS.rdonly | MOUNT_FLAGS.nosuid },
      { kind: 'propagate', target: 'data', flags: MOUNT_FLAGS.rslave },
    ]);
  });

  it.each([
    [['ro', 'nosuid', 'size=1m', 'mode=755'], MOUNT_FLAGS.rdonly | MOUNT_FLAGS.nosuid, 0, ['size=1m', 'mode=755']],
    [['rw', 'exec', 'rprivate'], 0, MOUNT_FLAGS.rprivate, []],
  ])('mount options %j', (opts, flags, prop, data) => expect(parseMountOptions(opts)).toEqual({ flags, propagation: prop, data }));

  it('executable lookup follows PATH of the container env, or takes a path as is', () => {
    expect(executableCandidates('ls', ['PATH=/a:/b:relative'])).toEqual(['/a/ls', '/b/ls']);
    expect(executableCandidates('./x', [])).toEqual(['/x']);
  });

  it('hostname without a uts namespace, sysctls without their namespace and no mount namespace are errors', () => {
    expect(() => plan((s) => (s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'uts')))).toThrow(/^hostname: setting the hostname needs a new uts namespace/);
    expect(() => plan((s) => {
      s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'network');
      s.linux!.sysctl = { 'net.ipv4.ip_forward': '1' };
    })).toThrow(/linux\.sysctl\.net\.ipv4\.ip_forward: needs a new network namespace/);
    expect(() => plan((s) => (s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'mount')))).toThrow(/a mount namespace is required/);
  });
});

describe('Runtime with the recording fake (no kernel)', () => {
  it('create hands one plan to the addon, holds at the fifo, and cleans up when the addon fails', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-fake-'));
    const fake = new RecordingContainerFake();
    // A cgroup v2 fixture: no real cgroup is touched.
    const cg = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-fake-cg-'));
    fs.writeFileSync(path.join(cg, 'cgroup.controllers'), '');
    fs.mkdirSync(path.join(cg, 'berth', 'c1'), { recursive: true });
    fs.writeFileSync(path.join(cg, 'berth', 'c1', 'cgroup.procs'), '');
    try {
      const rt = new Runtime({ root, syscalls: fake, cgroupRoot: cg });
      fake.failNext = new Error('scripted failure');
      await expect(rt.create('c1', { bundle: b.dir })).rejects.toThrow('scripted failure');
      expect(fake.plans).toHaveLength(1);
      expect(fake.plans[0]!.fifoFd).toBeGreaterThan(2);
      expect(fake.fifos).toEqual([path.join(root, 'c1', 'exec.fifo')]);
      expect(fs.existsSync(path.join(root, 'c1'))).toBe(false);
      // the fake never ran a process: nothing was written into the cgroup
      expect(fs.readFileSync(path.join(cg, 'berth', 'c1', 'cgroup.procs'), 'utf8')).toBe('');
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(cg, { recursive: true, force: true });
    }
  });
});

describe('seccomp compiler', () => {
  const word = (buf: Buffer, i: number) => ({ code: buf.readUInt16LE(i * 8), jt: buf[i * 8 + 2], jf: buf[i * 8 + 3], k: buf.readUInt32LE(i * 8 + 4) });

  it('checks the arch, tests each syscall in order, ends with the default action', () => {
    const { filter, flags } = compileSeccomp({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 38, flags: ['SECCOMP_FILTER_FLAG_LOG'], syscalls: [{ names: ['read', 'write', 'no_such_call'], action: 'SCMP_ACT_ALLOW' }] });
    expect(flags).toBe(2);
    const n = filter.length / 8;
    expect(n).toBe(4 + 2 * 2 + 1);
    expect(word(filter, 1)).toEqual({ code: 0x15, jt: 1, jf: 0, k: 0xc000003e });
    expect(word(filter, 4)).toEqual({ code: 0x15, jt: 0, jf: 1, k: 0 }); // read
    expect(word(filter, 5)).toEqual({ code: 0x06, jt: 0, jf: 0, k: 0x7fff0000 });
    expect(word(filter, n - 1)).toEqual({ code: 0x06, jt: 0, jf: 0, k: 0x00050026 });
  });

  it('argument blocks jump to the next rule on mismatch', () => {
    const { filter } = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['kill'], action: 'SCMP_ACT_KILL_PROCESS', args: [{ index: 1, value: 10, op: 'SCMP_CMP_EQ' }] }] });
    // jeq kill -> block of 4 tests + ret + reload
    const n = filter.length / 8;
    expect(word(filter, 4)).toMatchObject({ code: 0x15, jf: 6, k: 62 });
    expect(word(filter, 5)).toMatchObject({ code: 0x20, k: 16 + 8 + 4 }); // high word of arg 1
    expect(word(filter, 9)).toMatchObject({ code: 0x06, k: 0x80000000 });
    expect(word(filter, n - 1)).toMatchObject({ code: 0x06, k: 0x7fff0000 });
  });

  it.each([
    [{ defaultAction: 'SCMP_ACT_NOTIFY' }, /linux\.seccomp\.defaultAction: SCMP_ACT_NOTIFY needs a seccomp listener/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', flags: ['BOGUS'] }, /linux\.seccomp\.flags\[0\]: unknown seccomp flag 'BOGUS'/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 1, op: 'SCMP_CMP_SOMETIMES' }] }] }, /syscalls\[0\]\.args\[0\]\.op: unknown seccomp operator/],
  ])('rejects %j', (profile, re) => expect(() => compileSeccomp(profile)).toThrow(re));
});

describe('config validation', () => {
  it('accepts runc\'s default spec and names every bad field by path', () => {
    expect(() => validateSpec(defaultSpec())).not.toThrow();
    expect(() => validateSpec({ ...defaultSpec(), ociVersion: '2.0.0' })).toThrow(/^ociVersion: unsupported version/);
    expect(() => validateSpec({ ...defaultSpec(), solaris: {} })).toThrow(/^solaris: unknown field/);
    expect(() => validateSpec({ ...defaultSpec(), mounts: [{ destination: '/x', options: 'ro' }] })).toThrow(/^mounts\[0\]\.options: expected an array, got string/);
    expect(() => validateSpec({ ociVersion: '1.0.0', process: { cwd: 'rel', args: ['x'], user: { uid: 0, gid: 0 } } })).toThrow(/^process\.cwd: must be an absolute path/);
    expect(() => validateSpec({ ociVersion: '1.0.0', process: { cwd: '/', args: ['x'], user: { uid: 0, gid: 0 }, env: ['NOEQUALS'] } })).toThrow(/^process\.env\[0\]: expected KEY=value/);
  });
});
