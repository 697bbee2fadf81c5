// unshare/setns/sethostname on the real kernel (run as root). They change the namespaces of
// the calling thread, so they run in a forked helper process (testing/ns-helper.cjs), never
// in the vitest worker. Spawned children are killed and reaped after each test.
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { native, type SpawnedProcess } from './index';

const HELPER = join(__dirname, 'testing', 'ns-helper.cjs');

type HelperReply =
  | { ok: true; result: { hostname?: string; mntByThread?: string[]; exitCode?: number; pid?: number } }
  | { ok: false; error: { name: string; message: string; code: string; errno: number; syscall: string } };

/** Runs one command in a fresh Node process; `extraFd` is inherited as fd 4. */
function inHelper(command: Record<string, unknown>, extraFd?: number): Promise<HelperReply> {
  return new Promise((resolve, reject) => {
    const stdio: Array<'inherit' | 'ipc' | number> = ['inherit', 'inherit', 'inherit', 'ipc'];
    if (extraFd !== undefined) stdio.push(extraFd);
    const child = fork(HELPER, [JSON.stringify(command)], { stdio });
    let reply: HelperReply | undefined;
    child.on('message', (m) => {
      reply = m as HelperReply;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (reply !== undefined) resolve(reply);
      else reject(new Error(`ns-helper exited (code ${code}, signal ${signal}) without a reply`));
    });
  });
}

const children: SpawnedProcess[] = [];

afterEach(async () => {
  const all = children.splice(0);
  for (const child of all) child.kill('SIGKILL');
  await Promise.allSettled(all.map((child) => child.exited));
});

const uniqueHostname = (): string => `berth-test-${randomBytes(6).toString('hex')}`;

describe('unshare + sethostname', () => {
  it('gives a forked process its own hostname and leaves ours alone', async () => {
    const before = osHostname();
    const name = uniqueHostname();
    const reply = await inHelper({ op: 'unshare', namespaces: ['uts'], hostname: name });
    expect(reply).toEqual({ ok: true, result: expect.objectContaining({ hostname: name }) });
    expect(osHostname()).toBe(before);
  });

  it("refuses a new user namespace in a multi-threaded process (EINVAL)", async () => {
    const reply = await inHelper({ op: 'unshare', namespaces: ['user'] });
    expect(reply).toEqual({
      ok: false,
      error: expect.objectContaining({ name: 'SyscallError', code: 'EINVAL', errno: 22, syscall: 'unshare' }),
    });
  });

  it('moves only the JS thread into a new mount namespace', async () => {
    const reply = await inHelper({ op: 'unshare', namespaces: ['mount'] });
    if (!reply.ok) throw new Error(reply.error.message);
    const [main, ...others] = reply.result.mntByThread ?? [];
    expect(others.length).toBeGreaterThan(0);
    for (const other of others) expect(other).not.toBe(main);
  });
});

describe('setns', () => {
  async function utsChild(name: string): Promise<SpawnedProcess> {
    const child = await native.spawn({ file: '/bin/sleep', args: ['60'], namespaces: ['uts'], hostname: name });
    children.push(child);
    return child;
  }

  it('joins the uts namespace of a spawned child by path', async () => {
    const name = uniqueHostname();
    const child = await utsChild(name);
    const reply = await inHelper({ op: 'setns', path: `/proc/${child.pid}/ns/uts`, nstype: 'uts' });
    expect(reply).toEqual({ ok: true, result: { hostname: name } });
  });

  it('joins it by an open ns fd, with nstype omitted', async () => {
    const name = uniqueHostname();
    const child = await utsChild(name);
    const reply = await inHelper({ op: 'setns', path: `/proc/${child.pid}/ns/uts`, open: true });
    expect(reply).toEqual({ ok: true, result: { hostname: name } });
  });

  it("joins it through the child's pidfd", async () => {
    const name = uniqueHostname();
    const child = await utsChild(name);
    const reply = await inHelper({ op: 'setns', fd: 4, nstype: 'uts' }, child.pidfd);
    expect(reply).toEqual({ ok: true, result: { hostname: name } });
  });

  it('fails with EINVAL when the namespace is not of the given type, changing nothing', () => {
    // Safe in this process: the kernel rejects it before switching anything.
    expect(() => native.setns('/proc/self/ns/uts', 'net')).toThrow(
      expect.objectContaining({ code: 'EINVAL', syscall: 'setns', path: '/proc/self/ns/uts' }),
    );
  });

  it('fails with ENOENT from open for a missing path', () => {
    expect(() => native.setns('/proc/self/ns/berth-missing')).toThrow(
      expect.objectContaining({ code: 'ENOENT', syscall: 'open' }),
    );
  });
});

describe('worker threads', () => {
  it('survive a worker ending while its spawned child is still watched', async () => {
    const reply = await inHelper({ op: 'workerExit' });
    expect(reply).toEqual({ ok: true, result: { exitCode: 0, pid: expect.any(Number) } });
  });
});
