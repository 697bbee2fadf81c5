// spawn() on the real kernel (run as root). Every child is SIGKILLed and reaped, and every
// temp dir removed, after each test, whatever happened.
import { spawn as spawnNode } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { hostname as osHostname, tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NAMESPACES, native, SyscallError, type ExitStatus, type SpawnedProcess, type SpawnOptions } from './index';

const SH = '/bin/sh';

let dir: string;
let children: SpawnedProcess[];
let fds: number[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-native-spawn-'));
  children = [];
  fds = [];
});

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.allSettled(children.map((child) => child.exited));
  for (const fd of fds) closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
});

async function start(opts: SpawnOptions): Promise<SpawnedProcess> {
  const child = await native.spawn(opts);
  children.push(child);
  return child;
}

/** Runs to completion with stdout and stderr captured in a file; returns status and output. */
async function run(opts: SpawnOptions): Promise<{ status: ExitStatus; output: string }> {
  const file = join(dir, `out-${randomBytes(4).toString('hex')}`);
  const out = openSync(file, 'w');
  const devnull = openSync('/dev/null', 'r');
  fds.push(out, devnull);
  const child = await start({ stdio: [devnull, out, out], ...opts });
  const status = await child.exited;
  return { status, output: readFileSync(file, 'utf8') };
}

/** Waits (bounded) until the process is in interruptible sleep, e.g. sleep(1) in nanosleep. */
async function untilSleeping(pid: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('S')) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`process ${pid} never went to sleep`);
}

describe('spawn', () => {
  it('runs a child in new uts and pid namespaces with its own hostname, as PID 1', async () => {
    const name = `berth-test-${randomBytes(6).toString('hex')}`;
    const before = osHostname();
    const { status, output } = await run({
      file: SH,
      args: ['-c', 'hostname; echo $$'],
      namespaces: ['uts', 'pid'],
      hostname: name,
    });
    expect(status).toEqual({ code: 0, signal: null });
    expect(output).toBe(`${name}\n1\n`);
    expect(osHostname()).toBe(before);
  });

  it('rejects with SyscallError stage execve / ENOENT for a missing file, leaving no child', async () => {
    const missing = `/nonexistent-berth-${randomBytes(4).toString('hex')}/prog`;
    const err: unknown = await native.spawn({ file: missing, args: [] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SyscallError);
    expect(err).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'execve', stage: 'execve', path: missing });
  });

  it('reports a failing step before execve with its stage', async () => {
    const missing = join(dir, 'no-such-dir');
    await expect(native.spawn({ file: '/bin/true', args: [], cwd: missing })).rejects.toMatchObject({
      code: 'ENOENT',
      syscall: 'chdir',
      stage: 'chdir',
      path: missing,
    });
    await expect(native.spawn({ file: '/bin/true', args: [], stdio: [0, 1, 99_999] })).rejects.toMatchObject({
      code: 'EBADF',
      stage: 'stdio',
    });
  });

  it('passes args, env and cwd', async () => {
    const { output } = await run({
      file: SH,
      args: ['-c', 'echo "$0|$1|$BERTH_X|$(pwd)"', 'arg0', 'two words'],
      env: ['BERTH_X=y=z'],
      cwd: dir,
    });
    expect(output).toBe(`arg0|two words|y=z|${dir}\n`);
  });

  it('reports exit codes and signals, and kill() is false once exited', async () => {
    expect((await run({ file: SH, args: ['-c', 'exit 3'] })).status).toEqual({ code: 3, signal: null });

    const sleeper = await start({ file: '/bin/sleep', args: ['60'] });
    expect(sleeper.pid).toBeGreaterThan(0);
    expect(sleeper.pidfd).toBeGreaterThan(2);
    expect(sleeper.kill('SIGKILL')).toBe(true);
    await expect(sleeper.exited).resolves.toEqual({ code: null, signal: 'SIGKILL' });
    expect(sleeper.kill()).toBe(false);
  });

  it('hands the child only fds 0-2, default signal dispositions and an empty signal mask', async () => {
    // Inspected from here, on a program that leaves its signals alone (a shell blocks some
    // while it waits for its own children). Node itself ignores SIGPIPE: the child must not.
    const child = await start({ file: '/bin/sleep', args: ['60'] });
    await untilSleeping(child.pid); // past the dynamic loader, which opens files of its own
    expect(readdirSync(`/proc/${child.pid}/fd`).sort()).toEqual(['0', '1', '2']);
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8').split('\n');
    expect(status).toContain('SigBlk:\t0000000000000000');
    expect(status).toContain('SigIgn:\t0000000000000000');
  });

  it("inherits this process's 0, 1 and 2 by default, although Node marks them O_CLOEXEC", async () => {
    const child = await start({ file: SH, args: ['-c', 'for fd in 0 1 2; do test -e /proc/$$/fd/$fd || exit 1; done'] });
    await expect(child.exited).resolves.toEqual({ code: 0, signal: null });
  });

  it('maps stdio even when a source is also a target', async () => {
    // [out, 0, out]: dup2-ing in order would make fd 1 a copy of the new fd 0 (the file);
    // it must be a copy of this process's fd 0. (The readlink runs in a command substitution:
    // dash applies `cmd >&2` by moving the shell's own fd 1 aside, which would hide it.)
    const file = join(dir, 'overlap');
    const out = openSync(file, 'w');
    fds.push(out);
    const child = await start({ file: SH, args: ['-c', 'fd1=$(readlink /proc/$$/fd/1); echo "$fd1" >&2'], stdio: [out, 0, out] });
    await child.exited;
    expect(readFileSync(file, 'utf8')).toBe(`${readlinkSync('/proc/self/fd/0')}\n`);
  });

  it('creates every namespace it is asked for', async () => {
    const child = await start({ file: '/bin/sleep', args: ['60'], namespaces: [...NAMESPACES] });
    const procName = { mount: 'mnt' } as Record<string, string>;
    for (const ns of NAMESPACES) {
      const kind = procName[ns] ?? ns;
      expect(readlinkSync(`/proc/${child.pid}/ns/${kind}`), ns).not.toBe(readlinkSync(`/proc/self/ns/${kind}`));
    }
  });

  it('exposes a live pidfd while the child runs', async () => {
    // setns() through it is exercised in a forked process (namespaces.test.ts).
    const child = await start({ file: '/bin/sleep', args: ['60'] });
    expect(readlinkSync(`/proc/self/fd/${child.pidfd}`)).toBe('anon_inode:[pidfd]');
  });

  it('is not reaped by libuv while child_process children exit at the same time', async () => {
    const nodeChildren = Array.from({ length: 4 }, () => {
      const c = spawnNode(SH, ['-c', 'sleep 0.05; exit 5']);
      return new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code)));
    });
    const ours = await Promise.all(
      Array.from({ length: 4 }, (_, i) => start({ file: SH, args: ['-c', `sleep 0.05; exit ${10 + i}`] })),
    );
    const statuses = await Promise.all(ours.map((c) => c.exited));
    expect(statuses.map((s) => s.code)).toEqual([10, 11, 12, 13]);
    expect(await Promise.all(nodeChildren)).toEqual([5, 5, 5, 5]);
  });

  it('spawns many children concurrently', async () => {
    const many = await Promise.all(
      Array.from({ length: 20 }, (_, i) => start({ file: SH, args: ['-c', `exit ${i}`], namespaces: ['uts', 'ipc'] })),
    );
    const codes = (await Promise.all(many.map((c) => c.exited))).map((s) => s.code);
    expect(codes).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });
});
