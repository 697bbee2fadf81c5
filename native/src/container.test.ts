// containerSyscalls.spawnContainer with a cgroup spawner, on the real kernel (run as root):
// that launch is watched from the JS thread (container.cc, SpawnOnLoop), so every outcome the
// pool path reports must come back the same way: exec'd, ready at the fifo, a failure in the
// init (killed and reaped before the rejection), a failed attach (before or after the hand-over),
// a spawner that made namespaces the plan does not want. No cgroups are touched (a spawner with
// no `tasks` files stays where it is); every child is reaped and every fd and dir removed.
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { containerSyscalls as sys, isDumpable, type ContainerPlan } from './index';

const CLONE_NEWUTS = 0x04000000;
const CLONE_NEWNS = 0x00020000;
const CLONE_NEWPID = 0x20000000;
const MS = { rdonly: 1, nosuid: 2, nodev: 4, noexec: 8, bind: 4096, rec: 16384, slave: 1 << 19 } as const;
const O_PATH = 0o10000000;

let dir: string;
let fds: number[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-native-container-'));
  fds = [];
});

afterEach(() => {
  for (const fd of fds) closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
});

function open(path: string, flags: string): number {
  const fd = openSync(path, flags);
  fds.push(fd);
  return fd;
}

/** Children of this process, from every thread's /proc children list. */
function children(): Set<number> {
  const out = new Set<number>();
  for (const t of readdirSync('/proc/self/task')) {
    let text = '';
    try {
      text = readFileSync(`/proc/self/task/${t}/children`, 'utf8');
    } catch {
      continue;  // the thread has gone
    }
    for (const p of text.split(' ').filter(Boolean)) out.add(Number(p));
  }
  return out;
}

function plan(edit: Partial<ContainerPlan> = {}): ContainerPlan {
  const devNull = open('/dev/null', 'r+');
  return { cloneFlags: 0, argv: ['true'], envp: [], candidates: ['/bin/true'], stdio: [devNull, devNull, devNull], ...edit };
}

/** Rejects with the spawn's error; fails if it resolved. */
async function spawnError(p: ContainerPlan, spawner = sys.createSpawner([])): Promise<Record<string, unknown>> {
  const before = children();
  const err = await sys.spawnContainer(p, undefined, spawner).then(
    () => { throw new Error('the spawn succeeded'); },
    (e: unknown) => e as Record<string, unknown>,
  );
  // The failed init (if there was one) is reaped before the rejection: no new child is left.
  expect([...children()].filter((c) => !before.has(c))).toEqual([]);
  return err;
}

describe('spawnContainer with a spawner (watched on the event loop)', () => {
  it('resolves once the init has exec\'d, and its exit is reported', async () => {
    const { pid, pidfd } = await sys.spawnContainer(plan(), undefined, sys.createSpawner([]));
    expect(pid).toBeGreaterThan(0);
    expect(await sys.watchExit(pidfd)).toEqual({ code: 0, signal: null });
    // Dumpable again once the spawner's thread, woken by the execve, has let go of the launch.
    for (let i = 0; i < 100 && !isDumpable(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(isDumpable()).toBe(true);
  });

  it('refuses an op string with a NUL before any launch (the ops reach the addon packed, NUL-separated)', () => {
    const spawner = sys.createSpawner([]);
    try {
      expect(() => sys.spawnContainer(plan({ rootfs: dir, cloneFlags: CLONE_NEWNS, ops: [{ kind: 'mkdir', target: 'a' }, { kind: 'mkdir', target: 'b\0c' }] }), undefined, spawner))
        .toThrow(/ops\[1\]\.target must not contain NUL bytes/);
    } finally {
      sys.releaseSpawner(spawner);
    }
  });

  it('runs many launches at once, each to its own outcome', async () => {
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) => {
        const p = i % 3 === 2 ? plan({ candidates: ['/nonexistent/bin'] }) : plan({ argv: ['sh', '-c', `exit ${i % 3}`], candidates: ['/bin/sh'] });
        return sys.spawnContainer(p, undefined, sys.createSpawner([])).then(
          async ({ pidfd }) => (await sys.watchExit(pidfd)).code,
          (e: { stage?: string }) => e.stage,
        );
      }),
    );
    expect(results).toEqual(Array.from({ length: 24 }, (_, i) => (i % 3 === 2 ? 'executable' : i % 3)));
  });

  it('resolves at "ready" when the init holds at the exec fifo, which runs it once opened', async () => {
    const fifo = join(dir, 'exec.fifo');
    sys.mkfifo(fifo, 0o600);
    const fifoFd = openSync(fifo, O_PATH);
    fds.push(fifoFd);
    const out = join(dir, 'out');
    const outFd = open(out, 'w');
    const { pidfd } = await sys.spawnContainer(
      plan({ argv: ['sh', '-c', 'echo ran'], candidates: ['/bin/sh'], fifoFd, stdio: [outFd, outFd, outFd] }),
      undefined,
      sys.createSpawner([]),
    );
    expect(readFileSync(out, 'utf8')).toBe('');
    // The init is blocked opening the fifo for writing; our read end lets it through.
    readFileSync(fifo);
    expect(await sys.watchExit(pidfd)).toEqual({ code: 0, signal: null });
    expect(readFileSync(out, 'utf8')).toBe('ran\n');
  });

  it('reports a failure in the init with its stage, the init reaped', async () => {
    const err = await spawnError(plan({ candidates: ['/nonexistent/bin'] }));
    expect(err).toMatchObject({ code: 'ENOENT', syscall: 'execve', stage: 'executable' });
  });

  it('reports a failed parent step after the hello (oom_score_adj), the init killed and reaped', async () => {
    const err = await spawnError(plan({ oomScoreAdj: 5000 }));
    expect(err).toMatchObject({ code: 'EINVAL', syscall: 'write', stage: 'oom_score_adj' });
  });

  it('reports a spawner that could not attach, handed the launch before or after it tried', async () => {
    for (const wait of [0, 50]) {
      const spawner = sys.createSpawner([open('/dev/full', 'w')]);
      fds.pop();  // the spawner's thread closes it
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const err = await spawnError(plan(), spawner);
      expect(err).toMatchObject({ code: 'ENOSPC', syscall: 'write', stage: 'cgroup' });
    }
  });

  it('refuses a spawner whose namespaces the plan does not ask for', async () => {
    const err = await spawnError(plan(), sys.createSpawner([], CLONE_NEWUTS));
    expect(err).toMatchObject({ code: 'EINVAL', syscall: 'clone', stage: 'clone' });
  });

  it('gives the init the namespaces its spawner made', async () => {
    const out = join(dir, 'out');
    const outFd = open(out, 'w');
    const { pidfd } = await sys.spawnContainer(
      plan({ cloneFlags: CLONE_NEWUTS, hostname: 'spawned', argv: ['hostname'], candidates: ['/bin/hostname'], stdio: [outFd, outFd, outFd] }),
      undefined,
      sys.createSpawner([], CLONE_NEWUTS),
    );
    expect(await sys.watchExit(pidfd)).toEqual({ code: 0, signal: null });
    expect(readFileSync(out, 'utf8')).toBe('spawned\n');
  });
});

describe('read-only binds (the new mount API where nothing can propagate)', () => {
  /** The container's own view of its mounts below the rootfs: mount point, options, type, super options. */
  async function mountsSeen(extraOps: ContainerPlan['ops']): Promise<string[]> {
    const rootfs = join(dir, `rootfs-${extraOps!.length}`);
    for (const d of ['bin', 'proc', 'mnt']) mkdirSync(join(rootfs, d), { recursive: true });
    copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
    chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
    const host = join(dir, 'host');
    const out = join(dir, `mounts-${extraOps!.length}`);
    const outFd = open(out, 'w');
    const { pidfd } = await sys.spawnContainer(
      plan({
        cloneFlags: CLONE_NEWNS | CLONE_NEWPID,
        rootfs,
        rootPropagation: MS.slave,
        argv: ['cat', '/proc/self/mountinfo'],
        candidates: ['/bin/busybox'],
        stdio: [outFd, outFd, outFd],
        ops: [
          { kind: 'mount', source: 'proc', target: 'proc', fstype: 'proc', flags: 0, data: null, mkdir: 'dir' },
          { kind: 'mount', source: 'tmpfs', target: 'mnt', fstype: 'tmpfs', flags: MS.nosuid | MS.nodev, data: 'mode=755', mkdir: 'dir' },
          // Cgroup-style: bind, then every settable flag.
          { kind: 'mount', source: host, target: 'mnt/all', fstype: null, flags: MS.bind, data: null, mkdir: 'dir' },
          { kind: 'remount', target: 'mnt/all', flags: MS.bind | MS.rdonly | MS.nosuid | MS.nodev | MS.noexec },
          // rbind with a submount, some flags only (nodev/noexec of the source cleared as a remount does).
          { kind: 'mount', source: host, target: 'mnt/rec', fstype: null, flags: MS.bind | MS.rec, data: null, mkdir: 'dir' },
          { kind: 'remount', target: 'mnt/rec', flags: MS.bind | MS.rdonly | MS.nosuid },
          // A file bind.
          { kind: 'mount', source: join(host, 'file'), target: 'mnt/file', fstype: null, flags: MS.bind, data: null, mkdir: 'file' },
          { kind: 'remount', target: 'mnt/file', flags: MS.bind | MS.rdonly },
          { kind: 'readonly', target: 'proc/sys' },
          { kind: 'readonly', target: 'mnt/rec' },
          { kind: 'readonly', target: 'mnt/missing' },
          ...extraOps!,
        ],
      }),
      undefined,
      sys.createSpawner([]),
    );
    expect(await sys.watchExit(pidfd)).toEqual({ code: 0, signal: null });
    return readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((line) => {
        const f = line.split(' ');
        const dash = f.indexOf('-');
        return [f[4], f[5], ...f.slice(6, dash).filter((o) => !o.startsWith('shared:')), f[dash + 1], f[dash + 3]].join(' ');
      });
  }

  let hostMounts: string[] = [];
  beforeEach(() => {
    // The bind source: a tmpfs with flags a bind remount clears when it does not ask for them
    // (nodev, noexec, nosymfollow), and a submount (for the rbind). Unmounted after the test.
    const host = join(dir, 'host');
    mkdirSync(host);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'nodev,noexec,nosymfollow,size=1m', 'berth-test', host]);
    hostMounts = [host];
    mkdirSync(join(host, 'sub'));
    writeFileSync(join(host, 'file'), 'x');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'berth-test-sub', join(host, 'sub')]);
    hostMounts.unshift(join(host, 'sub'));
  });
  afterEach(() => {
    for (const m of hostMounts) execFileSync('umount', [m]);
    hostMounts = [];
  });

  it('a spawner\'s prebuilt cgroup tree gives the mounts of the ops it replaces, which run without one', async () => {
    const host = join(dir, 'host');
    const sources: Array<[string, string]> = [['a', host], ['b', join(host, 'sub')]];
    let n = 0;
    const seen = async (spawner: ReturnType<typeof sys.createSpawner>): Promise<{ mounts: string[]; fallbackRan: boolean }> => {
      const rootfs = join(dir, `tree-rootfs-${n++}`);
      for (const d of ['bin', 'proc']) mkdirSync(join(rootfs, d), { recursive: true });
      copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
      chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
      const out = join(dir, `tree-mounts-${n}`);
      const outFd = open(out, 'w');
      const { pidfd } = await sys.spawnContainer(
        plan({
          cloneFlags: CLONE_NEWNS | CLONE_NEWPID, rootfs, rootPropagation: MS.slave | MS.rec,
          argv: ['cat', '/proc/self/mountinfo'], candidates: ['/bin/busybox'], stdio: [outFd, outFd, outFd],
          ops: [
            { kind: 'mount', source: 'proc', target: 'proc', fstype: 'proc', flags: 0, data: null, mkdir: 'dir' },
            { kind: 'cgroupTree', target: 'mnt', skip: 6 },
            { kind: 'mount', source: 'tmpfs', target: 'mnt', fstype: 'tmpfs', flags: MS.nosuid | MS.nodev | MS.noexec, data: 'mode=755', mkdir: 'dir' },
            ...sources.flatMap(([name, d]): NonNullable<ContainerPlan['ops']> => [
              { kind: 'mount', source: d, target: `mnt/${name}`, fstype: null, flags: MS.bind, data: null, mkdir: 'dir' },
              { kind: 'remount', target: `mnt/${name}`, flags: MS.bind | MS.rdonly | MS.nosuid | MS.nodev | MS.noexec },
            ]),
            // Skipped with a tree too: shows which way the tree was made.
            { kind: 'mkdir', target: 'fallback-ran' },
            { kind: 'remount', target: 'mnt', flags: MS.rdonly | MS.nosuid | MS.nodev | MS.noexec },
          ],
        }),
        undefined,
        spawner,
      );
      expect(await sys.watchExit(pidfd)).toEqual({ code: 0, signal: null });
      const mounts = readFileSync(out, 'utf8').trim().split('\n').map((line) => {
        const f = line.split(' ');
        const dash = f.indexOf('-');
        return [f[3]!.replace(rootfs, '<rootfs>'), f[4], f[5], ...f.slice(6, dash).filter((o) => !o.startsWith('shared:')), f[dash + 1], f[dash + 3]].join(' ');
      });
      return { mounts, fallbackRan: existsSync(join(rootfs, 'fallback-ran')) };
    };
    const withTree = await seen(sys.createSpawner([], 0, sources));
    const withoutTree = await seen(sys.createSpawner([]));
    expect(withTree.fallbackRan).toBe(false);
    expect(withoutTree.fallbackRan).toBe(true);
    // The same mounts; the tree's are listed first (mountinfo goes by mount age, and the tree is
    // older than the container's namespace).
    expect([...withTree.mounts].sort()).toEqual([...withoutTree.mounts].sort());
    expect(withTree.mounts.filter((l) => / \/mnt/.test(l))).toEqual([
      expect.stringMatching(/^\/ \/mnt ro,nosuid,nodev,noexec,relatime tmpfs /),
      expect.stringMatching(/^\/ \/mnt\/a ro,nosuid,nodev,noexec,relatime tmpfs /),
      expect.stringMatching(/^\/ \/mnt\/b ro,nosuid,nodev,noexec,relatime tmpfs /),
    ]);
    // A tree that cannot be built (a source that is not there): the ops run.
    const broken = await seen(sys.createSpawner([], 0, [['a', join(dir, 'no-such-dir')]]));
    expect(broken.fallbackRan).toBe(true);
    expect([...broken.mounts].sort()).toEqual([...withoutTree.mounts].sort());
    expect(() => sys.createSpawner([], 0, [['../x', host]])).toThrow(/cgroupTree\[0\]/);
    // Shared sources (a systemd host's cgroup mounts are): slaves of their peer group either way,
    // never peers that would carry the container's mounts back out.
    execFileSync('mount', ['--make-shared', host]);
    execFileSync('mount', ['--make-shared', join(host, 'sub')]);
    const sharedTree = await seen(sys.createSpawner([], 0, sources));
    const sharedOps = await seen(sys.createSpawner([]));
    expect(sharedTree.fallbackRan).toBe(false);
    expect([...sharedTree.mounts].sort()).toEqual([...sharedOps.mounts].sort());
    expect(sharedTree.mounts.filter((l) => / \/mnt\/[ab] /.test(l))).toEqual([expect.stringMatching(/ master:\d+ /), expect.stringMatching(/ master:\d+ /)]);
  });

  it('give the same mounts with the same options as mount + bind remount', async () => {
    const folded = await mountsSeen([]);
    // A propagation op turns the new API off (the tree is already slave: this one changes nothing).
    const plain = await mountsSeen([{ kind: 'propagate', target: '.', flags: MS.slave | MS.rec }]);
    expect(folded).toEqual(plain);
    const byPoint = new Map(folded.map((l) => [l.split(' ')[0], l]));
    expect(byPoint.get('/mnt/all')).toMatch(/^\/mnt\/all ro,nosuid,nodev,noexec,relatime tmpfs /);
    expect(byPoint.get('/mnt/file')).toMatch(/^\/mnt\/file ro,relatime tmpfs /);
    expect(byPoint.get('/proc/sys')).toMatch(/^\/proc\/sys ro,nosuid,nodev,noexec,relatime proc /);
    // The rbind (ro,nosuid: the source's nodev,noexec,nosymfollow cleared), its submount (as it
    // was), then the read-only bind of both on top.
    expect(folded.filter((l) => l.startsWith('/mnt/rec'))).toEqual([
      expect.stringMatching(/^\/mnt\/rec ro,nosuid,relatime tmpfs /),
      expect.stringMatching(/^\/mnt\/rec\/sub rw,relatime tmpfs /),
      expect.stringMatching(/^\/mnt\/rec ro,nosuid,nodev,noexec,relatime tmpfs /),
      expect.stringMatching(/^\/mnt\/rec\/sub rw,relatime tmpfs /),
    ]);
  });
});
