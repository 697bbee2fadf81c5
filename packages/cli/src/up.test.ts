// `berth up` for real: etcd and the five services come up SERVING on their sockets in
// $BERTH_RUN_DIR, and SIGTERM (what Ctrl-C sends to npm's child too) leaves no process behind.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkHealth, startServiceProcess, type ServiceProcess } from '@berth/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SERVICES } from './services';
import { nodeNetnsName } from './up';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth.js');

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
/** Running and not a zombie. */
const alive = (pid: number) => { try { return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; } };

async function waitForOutput(p: ServiceProcess, re: RegExp, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(p.output())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; output:\n${p.output()}`);
    if (p.proc.exitCode !== null) throw new Error(`berth up exited ${p.proc.exitCode}; output:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('berth up', () => {
  let dir: string;
  let up: ServiceProcess | undefined;
  let pids: number[] = [];
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-up-')); });
  afterEach(async () => {
    await up?.stop();
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    const ns = nodeNetnsName(path.join(dir, 'run'));
    if (fs.existsSync(path.join('/run/netns', ns))) execFileSync('ip', ['netns', 'delete', ns]);
    up = undefined;
    pids = [];
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('brings up etcd and the five services, and SIGTERM stops them all', async () => {
    const runDir = path.join(dir, 'run');
    const env = { ...process.env, BERTH_RUN_DIR: runDir, BERTH_STATE_DIR: path.join(dir, 'state') };
    up = startServiceProcess(bin, ['up'], env);
    await waitForOutput(up, /Berth is up/);
    for (const name of SERVICES) {
      expect(up.output()).toMatch(new RegExp(`${name}\\s+unix://\\S+\\s+SERVING`));
      expect(await checkHealth(`unix://${path.join(runDir, `${name}.sock`)}`)).toBe('SERVING');
    }
    // berth finds the admin config of this cluster with no flags, over the socket and over mTLS
    const kubectl = (args: string[]) => {
      const r = spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' });
      return { code: r.status, out: r.stdout + r.stderr };
    };
    expect(kubectl(['get', 'pods'])).toMatchObject({ code: 0, out: expect.stringMatching(/No resources found in default namespace/) });
    expect(kubectl(['auth', 'whoami', '--context', 'local-tls'])).toMatchObject({ code: 0, out: expect.stringMatching(/Username\s+admin/) });
    expect(fs.statSync(path.join(dir, 'state', 'pki', 'ca.key')).mode & 0o777).toBe(0o600);
    // a client in another language (Python grpcio) sees the same health on every socket
    const py = execFileSync('/usr/bin/python3', [path.resolve(__dirname, '../../../tools/checks/py/health_check.py'),
      ...SERVICES.map((n) => `unix://${path.join(runDir, `${n}.sock`)}`)], { encoding: 'utf8' });
    expect(py.trim().split('\n').map((l) => l.split(' ')[1])).toEqual(SERVICES.map(() => 'SERVING'));
    pids = childrenOf(up.proc.pid!);
    expect(pids.length).toBe(SERVICES.length + 1); // the services and etcd
    // a second `berth up` on the same run dir refuses to start
    const second = startServiceProcess(bin, ['up'], env);
    expect((await second.exited).code).toBe(1);
    expect(second.output()).toMatch(/another berth up \(pid \d+\) is running/);

    expect(await up.stop(30_000)).toEqual({ code: 0, signal: null });
    expect(up.output()).toMatch(/stopped; nothing left running/);
    expect(pids.filter(alive)).toEqual([]);
    for (const name of SERVICES) expect(fs.existsSync(path.join(runDir, `${name}.sock`))).toBe(false);
    expect(fs.existsSync(path.join(runDir, 'up.pid'))).toBe(false);
    // the node's network namespace (where the pod bridge lives) is gone, and the host has no bridge
    expect(fs.existsSync(path.join('/run/netns', nodeNetnsName(runDir)))).toBe(false);
    expect(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })).not.toMatch(/ berth0[:@]/);
  });

  it('after a kill -9 of berth up, the next berth up stops the leftovers and comes up again', async () => {
    const runDir = path.join(dir, 'run');
    const env = { ...process.env, BERTH_RUN_DIR: runDir, BERTH_STATE_DIR: path.join(dir, 'state') };
    up = startServiceProcess(bin, ['up'], env);
    await waitForOutput(up, /Berth is up/);
    const first = childrenOf(up.proc.pid!);
    pids.push(...first);
    up.proc.kill('SIGKILL');
    await up.exited;
    expect(first.filter(alive).length).toBe(first.length); // orphans keep running...
    up = startServiceProcess(bin, ['up'], env);
    await waitForOutput(up, /Berth is up/);
    expect(up.output()).toMatch(/taking over from a previous run/);
    expect(first.filter(alive)).toEqual([]); // ...until the next berth up stops them
    pids.push(...childrenOf(up.proc.pid!));
    expect(await up.stop(30_000)).toEqual({ code: 0, signal: null });
    expect(pids.filter(alive)).toEqual([]);
  });
});
