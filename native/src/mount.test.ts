// mount/umount2 on the real kernel (run as root), in this process's mount namespace: every
// mount is undone and every temp dir removed after each test, even when the test failed.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { binding } from './loader';
import { CLONE_FLAGS, MOUNT_FLAGS, native, SyscallError, UMOUNT_FLAGS } from './index';

interface MountEntry {
  mountPoint: string;
  options: string[];
  fstype: string;
  source: string;
}

function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** The mounts stacked on `path`, bottom first, from /proc/self/mountinfo. */
function mountsAt(path: string): MountEntry[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const [left = '', right = ''] = line.split(' - ');
      const fields = left.split(' ');
      const [fstype = '', source = ''] = right.split(' ');
      return { mountPoint: unescape(fields[4] ?? ''), options: (fields[5] ?? '').split(','), fstype, source };
    })
    .filter((m) => m.mountPoint === path);
}

const dirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-native-mount-'));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0).reverse()) {
    while (mountsAt(dir).length > 0) native.umount2(dir, ['detach']);
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('mount / umount2', () => {
  it('mounts and unmounts a tmpfs with flags and data', () => {
    const dir = tempDir();
    native.mount('berth-test', dir, 'tmpfs', ['nosuid', 'nodev', 'noexec'], 'size=1m,mode=0700');
    const [mounted] = mountsAt(dir);
    expect(mounted).toMatchObject({ fstype: 'tmpfs', source: 'berth-test' });
    expect(mounted?.options).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'noexec']));
    writeFileSync(join(dir, 'f'), 'x');

    native.umount2(dir);
    expect(mountsAt(dir)).toEqual([]);
    expect(existsSync(join(dir, 'f'))).toBe(false);
  });

  it('makes a read-only bind mount with a bind remount', () => {
    const src = tempDir();
    const dst = tempDir();
    writeFileSync(join(src, 'file'), 'content');

    native.mount(src, dst, null, ['bind']);
    native.mount(null, dst, null, ['remount', 'bind', 'rdonly']);
    expect(mountsAt(dst)[0]?.options).toContain('ro');
    expect(readFileSync(join(dst, 'file'), 'utf8')).toBe('content');
    expect(() => writeFileSync(join(dst, 'other'), 'x')).toThrow(expect.objectContaining({ code: 'EROFS' }));
    writeFileSync(join(src, 'other'), 'x'); // the source stays writable
    expect(readFileSync(join(dst, 'other'), 'utf8')).toBe('x');

    native.umount2(dst, ['nofollow']);
    expect(mountsAt(dst)).toEqual([]);
  });

  it('accepts a raw flag mask', () => {
    const dir = tempDir();
    native.mount('tmpfs', dir, 'tmpfs', MOUNT_FLAGS.rdonly | MOUNT_FLAGS.nosuid);
    expect(mountsAt(dir)[0]?.options).toEqual(expect.arrayContaining(['ro', 'nosuid']));
  });

  it('throws SyscallError with code, errno, syscall and path for a missing target', () => {
    const target = join(tmpdir(), `berth-missing-${randomBytes(6).toString('hex')}`, 'x');
    let caught: unknown;
    try {
      native.mount('tmpfs', target, 'tmpfs', []);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SyscallError);
    expect(caught).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'mount', path: target });
    expect((caught as Error).message).toBe(`mount '${target}': ENOENT, no such file or directory`);
  });

  it('throws EINVAL when unmounting something that is not a mount point', () => {
    const dir = tempDir();
    expect(() => native.umount2(dir)).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'umount2' }));
  });
});

describe('flag tables against the headers the addon was built with', () => {
  it('agree', () => {
    const c = binding().constants;
    const clone = { mount: 'NS', uts: 'UTS', ipc: 'IPC', net: 'NET', pid: 'PID', user: 'USER', cgroup: 'CGROUP', time: 'TIME' };
    for (const [name, suffix] of Object.entries(clone)) {
      expect(CLONE_FLAGS[name as keyof typeof CLONE_FLAGS], name).toBe(c[`CLONE_NEW${suffix}`]);
    }
    const recursive = new Set(['rbind', 'runbindable', 'rprivate', 'rslave', 'rshared']);
    for (const [name, bits] of Object.entries(MOUNT_FLAGS)) {
      if (recursive.has(name)) {
        expect(bits, name).toBe(MOUNT_FLAGS[name.slice(1) as keyof typeof MOUNT_FLAGS] | c['MS_REC']!);
        continue;
      }
      const header = name === 'iversion' ? 'MS_I_VERSION' : `MS_${name.toUpperCase()}`;
      if (c[header] !== undefined) expect(bits, name).toBe(c[header]);
    }
    expect(UMOUNT_FLAGS).toEqual({
      force: c['MNT_FORCE'],
      detach: c['MNT_DETACH'],
      expire: c['MNT_EXPIRE'],
      nofollow: c['UMOUNT_NOFOLLOW'],
    });
  });
});
