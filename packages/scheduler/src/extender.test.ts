// Extenders as real out-of-process peers: a gRPC Extender server on a unix socket (here in the
// test process) that filters, prioritizes and binds, called with a timeout, in ignorable and
// non-ignorable modes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scheduler } from '@berth/api';
import { serve, unary, type RunningServer } from '@berth/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryCluster } from './cluster';
import { resolveConfig, type SchedulerConfigInput } from './config';
import { Scheduler } from './scheduler';
import { node, pod } from './testing/builders';

describe('scheduler extenders over gRPC', () => {
  let dir: string;
  let server: RunningServer | undefined;
  let sched: Scheduler | undefined;
  const binds: string[] = [];
  let calls = 0;
  let delayMs = 0;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-extender-'));
    binds.length = 0;
    calls = 0;
    delayMs = 0;
    const wait = () => new Promise((r) => setTimeout(r, delayMs));
    server = await serve({
      listen: `unix://${path.join(dir, 'ext.sock')}`,
      services: [{
        definition: scheduler.ExtenderService,
        implementation: {
          // Rejects nodes whose name ends in an odd digit; scores n4 highest.
          filter: unary(async (req: scheduler.ExtenderArgs) => {
            calls++;
            await wait();
            const names = req.nodeNames.length ? req.nodeNames : req.nodes.map((n) => n.metadata!.name);
            const odd = names.filter((n) => Number(n.slice(-1)) % 2 === 1);
            return scheduler.ExtenderFilterResult.fromPartial({
              nodeNames: req.nodeNames.length ? names.filter((n) => !odd.includes(n)) : [],
              nodes: req.nodeNames.length ? [] : req.nodes.filter((n) => !odd.includes(n.metadata!.name)),
              failedNodes: Object.fromEntries(odd.map((n) => [n, 'extender says odd nodes are out'])),
            });
          }),
          prioritize: unary(async (req: scheduler.ExtenderArgs) => {
            await wait();
            const names = req.nodeNames.length ? req.nodeNames : req.nodes.map((n) => n.metadata!.name);
            return scheduler.HostPriorityList.fromPartial({ items: names.map((host) => ({ host, score: host === 'n4' ? 10 : 0 })) });
          }),
          bind: unary(async (req: scheduler.ExtenderBindingArgs) => {
            binds.push(`${req.podNamespace}/${req.podName}->${req.node}`);
            return scheduler.ExtenderBindingResult.fromPartial({});
          }),
        },
      }],
    });
  });
  afterEach(async () => {
    await sched?.stop();
    sched = undefined;
    await server?.shutdown(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function run(ext: Record<string, unknown>, extra: Partial<SchedulerConfigInput> = {}) {
    const cluster = new MemoryCluster(false);
    for (let i = 0; i < 6; i++) cluster.putNode(node(`n${i}`));
    const cfg = resolveConfig({ extenders: [{ address: `unix://${path.join(dir, 'ext.sock')}`, ...ext }], ...extra });
    sched = new Scheduler(cluster, { config: cfg });
    await cluster.start(sched);
    cluster.putPod(pod('p', { req: { cpu: '100m' } }));
    await sched.scheduleUntilIdle();
    return { cluster, placed: cluster.pods.get('default/p')!.spec!.nodeName };
  }

  it.each([false, true])('filters and prioritizes (nodeCacheCapable %s)', async (nodeCacheCapable) => {
    const { placed } = await run({ filterVerb: true, prioritizeVerb: true, weight: 5, nodeCacheCapable });
    expect(calls).toBe(1);
    expect(placed).toBe('n4');
  });

  it('binds through a binder extender', async () => {
    const { cluster } = await run({ filterVerb: true, bindVerb: true });
    expect(binds).toHaveLength(1);
    expect(binds[0]).toMatch(/^default\/p->n[024]$/);
    expect(cluster.events.find((e) => e.reason === 'Scheduled')).toBeTruthy();
  });

  it('an ignorable extender that times out is skipped', async () => {
    delayMs = 500;
    const { placed } = await run({ filterVerb: true, prioritizeVerb: true, ignorable: true, timeoutMs: 100 });
    expect(placed).toMatch(/^n\d$/);
  });

  it('a non-ignorable extender that times out fails the attempt with an error event', async () => {
    delayMs = 500;
    const { cluster, placed } = await run({ filterVerb: true, timeoutMs: 100 });
    expect(placed).toBe('');
    const ev = cluster.events.find((e) => e.reason === 'FailedScheduling')!;
    expect(ev.message).toMatch(/^scheduling: extender\(unix:\/\/.*ext\.sock\) filter: Deadline exceeded/);
    expect(sched!.queue.where('default/p')).toBe('backoff');
  });

  it('only pods that use a managed resource go to the extender', async () => {
    const { placed } = await run({ filterVerb: true, prioritizeVerb: true, weight: 5, managedResources: ['example.com/gpu'] });
    expect(calls).toBe(0);
    expect(placed).toMatch(/^n\d$/);
  });
});
