// Eviction under a synthetic memory threshold on the real kernel: two pods with real cgroups,
// a real process holding ~48 MiB in the BestEffort one; the manager reads the working sets from
// the kernel, evicts that pod (the callback kills it), and its status becomes Failed/Evicted.
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { core } from '@berth/api';
import { afterEach, describe, expect, it } from 'vitest';
import { CgroupV1Manager, V1_CONTROLLERS } from './cgroups/manager';
import { podCgroupPlan } from './cgroups/plan';
import { readSignals } from './eviction';
import { EvictionManager, memoryWorkingSet } from './eviction-manager';
import { computePodStatus } from './status/compute';
import { container, pod } from './testing/pods';

describe('EvictionManager on the real kernel', () => {
  const root = `berth-test-${crypto.randomBytes(4).toString('hex')}`;
  const children: ReturnType<typeof spawn>[] = [];
  afterEach(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
    children.length = 0;
    for (const c of V1_CONTROLLERS) if (fs.existsSync(path.join('/sys/fs/cgroup', c, root))) new CgroupV1Manager('/sys/fs/cgroup', [], [c]).remove([root]);
  });

  it('evicts the pod over its request that uses the most memory, when the threshold is met', async () => {
    const m = new CgroupV1Manager('/sys/fs/cgroup', [root], ['cpu', 'memory']);
    const hog = pod([container('app')], { uid: 'hog-1', name: 'hog' });
    const calm = pod([container('app', { requests: { memory: '256Mi' } })], { uid: 'calm-1', name: 'calm' });
    for (const p of [hog, calm]) { const plan = podCgroupPlan(p); m.ensure(plan.path, plan.resources); }
    const memDir = (p: string[]) => m.dir('memory', p);
    // A real process in the hog's cgroup that allocates and touches ~48 MiB, then waits.
    const child = spawn(process.execPath, ['-e', "process.stdin.once('data', () => { globalThis.b = Buffer.alloc(48 * 1024 * 1024, 1); process.stdout.write('ready'); setInterval(() => {}, 1000); })"], { stdio: ['pipe', 'pipe', 'ignore'] });
    children.push(child);
    fs.writeFileSync(path.join(memDir(podCgroupPlan(hog).path), 'cgroup.procs'), String(child.pid));
    child.stdin!.write('go');
    await new Promise((r) => child.stdout!.once('data', r));
    expect(memoryWorkingSet(memDir(podCgroupPlan(hog).path))).toBeGreaterThan(40n * 1024n * 1024n);

    const evicted: { pod: core.Pod; message: string }[] = [];
    const evictionHard: Record<string, string> = { 'memory.available': '1Mi' };
    const mgr = new EvictionManager({
      signals: () => readSignals(os.tmpdir()),
      evictionHard,
      pods: () => [calm, hog],
      memoryCgroupDir: memDir,
      evict: async (p, _reason, message) => {
        evicted.push({ pod: p, message });
        child.kill('SIGKILL');
      },
    });
    expect(await mgr.synchronize()).toEqual({ met: [] });
    expect(evicted).toEqual([]);
    // Synthetic threshold: more than this machine has free.
    evictionHard['memory.available'] = String(readSignals(os.tmpdir())['memory.available'] + 1024n ** 3n);
    const round = await mgr.synchronize();
    expect(round.met).toEqual(['memory.available']);
    expect(round.victim?.metadata?.name).toBe('hog');
    expect(evicted[0].message).toMatch(/^The node was low on resource: memory\. Threshold quantity: \d+\.$/);
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    expect(child.signalCode).toBe('SIGKILL');

    const status = computePodStatus({ pod: hog, containers: new Map(), now: Date.now(), hostIPs: [], podIPs: [], terminal: { phase: 'Failed', reason: 'Evicted', message: evicted[0].message } });
    expect(status).toMatchObject({ phase: 'Failed', reason: 'Evicted', message: evicted[0].message });
    expect(status.conditions.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'PodCompleted' });
  });
});
