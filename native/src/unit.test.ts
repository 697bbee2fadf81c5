// Pure-logic tests: argument validation, flag tables, SyscallError, the loader's failure
// report and the RecordingFake. No root, no addon needed.
import { constants } from 'node:os';

import { describe, expect, it } from 'vitest';

import {
  errnoName,
  FakeProcess,
  loadNativeBinding,
  RecordingFake,
  signalName,
  SyscallError,
  type NativeSyscalls,
  type SpawnOptions,
} from './index';
import { RTLD_NOW } from './loader';
import { mountFlags, namespaceFlags, spawnPlan, umountFlags } from './validate';

describe('argument validation', () => {
  const fake = new RecordingFake();

  it.each<[string, () => unknown, typeof TypeError | typeof RangeError, RegExp]>([
    ['unshare with no namespace', () => fake.unshare([]), RangeError, /at least one namespace/],
    ['unshare with an unknown namespace', () => fake.unshare(['uts', 'nope' as never]), RangeError, /unknown namespace 'nope'/],
    ['unshare with a non-array', () => fake.unshare('uts' as never), TypeError, /must be an array/],
    ['setns with a negative fd', () => fake.setns(-1), RangeError, /file descriptor/],
    ['setns with a fractional fd', () => fake.setns(3.5), RangeError, /file descriptor/],
    ['setns with an object', () => fake.setns({} as never), TypeError, /path or an open fd/],
    ['setns with an empty path', () => fake.setns(''), RangeError, /must not be empty/],
    ['setns with a bad nstype', () => fake.setns('/proc/1/ns/uts', 'utc' as never), RangeError, /unknown namespace/],
    ['mount with a NUL in the target', () => fake.mount(null, '/a\0b', null, []), RangeError, /NUL/],
    ['mount with an unknown flag', () => fake.mount('x', '/mnt', 'tmpfs', ['readonly' as never]), RangeError, /unknown flag 'readonly'/],
    ['mount with a negative mask', () => fake.mount('x', '/mnt', 'tmpfs', -1), RangeError, /unsigned 32-bit/],
    ['mount with a mask over 32 bits', () => fake.mount('x', '/mnt', 'tmpfs', 2 ** 32), RangeError, /unsigned 32-bit/],
    ['mount with a numeric target', () => fake.mount('x', 5 as never, 'tmpfs', []), TypeError, /mount target must be a string/],
    ['umount2 with an unknown flag', () => fake.umount2('/mnt', ['lazy' as never]), RangeError, /unknown flag 'lazy'/],
    ['sethostname over 64 bytes', () => fake.sethostname('h'.repeat(65)), RangeError, /at most 64 bytes, got 65/],
    ['sethostname counting UTF-8 bytes', () => fake.sethostname('é'.repeat(33)), RangeError, /got 66/],
    ['sethostname with a number', () => fake.sethostname(42 as never), TypeError, /hostname must be a string/],
  ])('rejects %s', (_name, call, type, message) => {
    expect(call).toThrow(type);
    expect(call).toThrow(message);
  });

  const base: SpawnOptions = { file: '/bin/true', args: [] };
  it.each<[string, unknown, typeof TypeError | typeof RangeError, RegExp]>([
    ['a non-object', 'nope', TypeError, /must be an object/],
    ['a file without a slash', { ...base, file: 'true' }, RangeError, /no PATH lookup/],
    ['a missing args array', { file: '/bin/true' }, TypeError, /spawn args must be an array/],
    ['a non-string arg', { ...base, args: ['a', 1] }, TypeError, /spawn args\[1\]/],
    ['an env entry without =', { ...base, env: ['PATH'] }, RangeError, /KEY=value/],
    ['an env entry starting with =', { ...base, env: ['=x'] }, RangeError, /KEY=value/],
    ['a hostname without a uts namespace', { ...base, namespaces: ['pid'], hostname: 'h' }, RangeError, /add 'uts'/],
    ['a hostname that is too long', { ...base, namespaces: ['uts'], hostname: 'x'.repeat(65) }, RangeError, /64 bytes/],
    ['two stdio fds', { ...base, stdio: [0, 1] }, RangeError, /exactly 3/],
    ['a bad stdio fd', { ...base, stdio: [0, 1, -2] }, RangeError, /stdio\[2\]/],
    ['an unknown namespace', { ...base, namespaces: ['uts', 'mnt'] }, RangeError, /unknown namespace 'mnt'/],
  ])('spawn rejects %s', async (_name, opts, type, message) => {
    await expect(fake.spawn(opts as SpawnOptions)).rejects.toThrow(type);
    await expect(fake.spawn(opts as SpawnOptions)).rejects.toThrow(message);
  });

  it('does not record calls that failed validation', () => {
    const f = new RecordingFake();
    expect(() => f.sethostname('x'.repeat(100))).toThrow(RangeError);
    expect(f.calls).toEqual([]);
  });
});

describe('flag tables', () => {
  it('maps namespace names to CLONE_NEW* bits', () => {
    expect(namespaceFlags(['uts', 'pid'], 'ns', false)).toBe(0x0400_0000 | 0x2000_0000);
    expect(namespaceFlags(['net', 'net'], 'ns', false)).toBe(0x4000_0000);
    expect(namespaceFlags([], 'ns', true)).toBe(0);
  });

  it('maps mount flag names, compound names and raw masks', () => {
    expect(mountFlags(['bind', 'rec'])).toBe(mountFlags(['rbind']));
    expect(mountFlags(['remount', 'bind', 'rdonly'])).toBe(0x20 | 0x1000 | 0x1);
    expect(mountFlags(['rprivate'])).toBe(0x4_0000 | 0x4000);
    expect(mountFlags(0x8000_0000)).toBe(0x8000_0000);
    expect(umountFlags(['detach', 'nofollow'])).toBe(0x2 | 0x8);
    expect(umountFlags(undefined)).toBe(0);
  });

  it('does not treat inherited object keys as flags', () => {
    expect(() => mountFlags(['toString'])).toThrow(RangeError);
  });

  it('lays out a spawn plan: argv[0] is the file, env defaults to ours', () => {
    const plan = spawnPlan({ file: '/bin/echo', args: ['a', ''], namespaces: ['uts'], hostname: 'h', cwd: '/' });
    expect(plan.argv).toEqual(['/bin/echo', 'a', '']);
    expect(plan.cloneFlags).toBe(0x0400_0000);
    expect(plan.hostname).toBe('h');
    expect(plan.cwd).toBe('/');
    expect(plan.stdio).toBeNull();
    expect(plan.envp).toContain(`PATH=${process.env['PATH']}`);
    expect(spawnPlan({ file: '/bin/true', args: [], env: [] }).envp).toEqual([]);
  });
});

describe('SyscallError', () => {
  it('names the errno and keeps the call, stage and path', () => {
    const err = new SyscallError(constants.errno.ENOENT, 'execve', { stage: 'execve', path: '/no/such' });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('SyscallError');
    expect(err.code).toBe('ENOENT');
    expect(err.errno).toBe(2);
    expect(err.syscall).toBe('execve');
    expect(err.stage).toBe('execve');
    expect(err.path).toBe('/no/such');
    expect(err.message).toBe("execve '/no/such' (stage execve): ENOENT, no such file or directory");
  });

  it('omits absent details', () => {
    const err = new SyscallError(constants.errno.EPERM, 'unshare');
    expect(err.message).toBe('unshare: EPERM, operation not permitted');
    expect('stage' in err).toBe(false);
    expect('path' in err).toBe(false);
  });

  it('prefers the first name of aliased numbers and falls back for unknown ones', () => {
    expect(errnoName(constants.errno.EAGAIN)).toBe('EAGAIN');
    expect(errnoName(4095)).toBe('E4095');
    expect(signalName(constants.signals.SIGABRT)).toBe('SIGABRT');
    expect(signalName(40)).toBe('SIG40');
  });
});

describe('loader', () => {
  it("binds every symbol at load: its RTLD_NOW is the platform's", () => {
    expect(RTLD_NOW).toBe(constants.dlopen.RTLD_NOW);
  });

  it('lists every path it tried and why each failed', () => {
    const missing = '/nonexistent-berth/berth_native.node';
    const notAddon = __filename; // exists, but is not a shared object
    let message = '';
    try {
      loadNativeBinding([missing, notAddon]);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('could not load the native addon');
    expect(message).toContain(`${missing}: not found`);
    expect(message).toContain(`${notAddon}: `);
    expect(message.split('\n')).toHaveLength(3);
  });
});

describe('RecordingFake', () => {
  it('records calls with their arguments, in order', () => {
    const fake: NativeSyscalls & RecordingFake = new RecordingFake();
    fake.unshare(['uts']);
    fake.sethostname('pod-a');
    fake.mount('tmpfs', '/run/x', 'tmpfs', ['nosuid'], 'size=1m');
    fake.umount2('/run/x', ['detach']);
    fake.setns('/proc/42/ns/net', 'net');
    expect(fake.calls.map((c) => c.method)).toEqual(['unshare', 'sethostname', 'mount', 'umount2', 'setns']);
    expect(fake.callsOf('mount')).toEqual([['tmpfs', '/run/x', 'tmpfs', ['nosuid'], 'size=1m']]);
  });

  it('plays scripted results in order, then falls back to success', () => {
    const fake = new RecordingFake();
    const busy = new SyscallError(constants.errno.EBUSY, 'umount2', { path: '/mnt' });
    fake.respond('umount2', busy);
    expect(() => fake.umount2('/mnt')).toThrow(busy);
    expect(() => fake.umount2('/mnt')).not.toThrow();
    expect(fake.callsOf('umount2')).toHaveLength(2);
  });

  it('scripts spawn with processes the test ends, errors, or functions of the options', async () => {
    const fake = new RecordingFake();
    const running = new FakeProcess(4242);
    const enoent = new SyscallError(constants.errno.ENOENT, 'execve', { stage: 'execve', path: '/x' });
    fake.respond('spawn', running, enoent, (opts) => {
      const p = new FakeProcess(opts.args.length);
      p.exit({ code: 3, signal: null });
      return p;
    });

    const first = await fake.spawn({ file: '/bin/sleep', args: ['60'] });
    expect(first.pid).toBe(4242);
    expect(first.kill('SIGTERM')).toBe(true);
    await expect(first.exited).resolves.toEqual({ code: null, signal: 'SIGTERM' });
    expect(running.signals).toEqual(['SIGTERM']);
    expect(first.kill()).toBe(false);

    await expect(fake.spawn({ file: '/x', args: [] })).rejects.toBe(enoent);

    const third = await fake.spawn({ file: '/bin/sh', args: ['-c', 'exit 3'] });
    expect(third.pid).toBe(2);
    await expect(third.exited).resolves.toEqual({ code: 3, signal: null });

    const unscripted = await fake.spawn({ file: '/bin/true', args: [] });
    await expect(unscripted.exited).resolves.toEqual({ code: 0, signal: null });
    expect(fake.callsOf('spawn')).toHaveLength(4);
  });
});
