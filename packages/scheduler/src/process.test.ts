// The real binary as a real process: it serves health on its socket, answers Status and Explain
// on an inline snapshot without any cluster, rejects bad config naming the key, and exits
// cleanly on SIGTERM.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { scheduler } from '@berth/api';
import { callUnary, checkHealth, createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { node, pod } from './testing/builders';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-scheduler.js');

describe('berth-scheduler process', () => {
  let dir: string;
  let svc: ServiceProcess | undefined;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-scheduler-')); });
  afterEach(async () => {
    await svc?.stop();
    svc = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves SERVING health on its 0600 socket and exits 0 on SIGTERM', async () => {
    const sock = path.join(dir, 'run', 'scheduler.sock');
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state')]);
    expect(await waitServing(`unix://${sock}`, 30_000), svc.output()).toBe('SERVING');
    for (const name of ['berth.scheduler.v1.Scheduler']) expect(await checkHealth(`unix://${sock}`, name)).toBe('SERVING');
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(dir, 'state')).isDirectory()).toBe(true);
    const client = createClient(scheduler.SchedulerClient, { target: `unix://${sock}` });
    const st = await callUnary<scheduler.StatusRequest, scheduler.StatusResponse>(client.status.bind(client), {});
    client.close();
    expect(st.profiles).toEqual(['default-scheduler']);
    expect(st.nodeCount).toBe(0);
    const exit = await svc.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('uses BERTH_RUN_DIR for its default socket', async () => {
    const runDir = path.join(dir, 'run');
    svc = startServiceProcess(bin, ['--state-dir', path.join(dir, 'state')], { ...process.env, BERTH_RUN_DIR: runDir });
    expect(await waitServing(`unix://${path.join(runDir, 'scheduler.sock')}`, 30_000), svc.output()).toBe('SERVING');
  });

  it('explains an inline snapshot with Kubernetes\' reasons and scores, with no cluster running', async () => {
    const sock = path.join(dir, 'run', 'scheduler.sock');
    const cfg = path.join(dir, 'sched.yaml');
    fs.writeFileSync(cfg, 'profiles:\n  - schedulerName: default-scheduler\n  - schedulerName: packer\n    pluginConfig:\n      - name: NodeResourcesFit\n        args: {scoringStrategy: {type: MostAllocated}}\n');
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--scheduler-config', cfg]);
    expect(await waitServing(`unix://${sock}`, 30_000), svc.output()).toBe('SERVING');
    const client = createClient(scheduler.SchedulerClient, { target: `unix://${sock}` });
    try {
      const nodes = [
        node('big', { alloc: { cpu: '8', memory: '16Gi', pods: '110' } }),
        node('small', { alloc: { cpu: '2', memory: '4Gi', pods: '110' } }),
        node('tainted', { taints: [{ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' }] }),
        node('full', { alloc: { cpu: '1', memory: '1Gi', pods: '110' } }),
      ];
      const snapshot = { pod: pod('web', { req: { cpu: '1500m', memory: '1Gi' } }), nodes, existingPods: [pod('old', { node: 'small', req: { cpu: '100m' } })] };
      const explain = (req: Partial<scheduler.ExplainRequest>) => callUnary<scheduler.ExplainRequest, scheduler.ExplainResponse>(client.explain.bind(client), scheduler.ExplainRequest.fromPartial(req));
      const res = await explain({ snapshot });
      const by = Object.fromEntries(res.nodes.map((n) => [n.nodeName, n]));
      expect(by.tainted).toMatchObject({ feasible: false, failedPlugin: 'TaintToleration', reasons: ['node(s) had untolerated taint {dedicated: gpu}'] });
      expect(by.full).toMatchObject({ feasible: false, failedPlugin: 'NodeResourcesFit', reasons: ['Insufficient cpu'] });
      expect(by.big.feasible && by.small.feasible).toBe(true);
      // LeastAllocated spreads: the big node has more left.
      expect(res.selectedNode).toBe('big');
      const fit = by.big.scores.find((s) => s.plugin === 'NodeResourcesFit')!;
      expect(fit.weight).toBe(1);
      expect(by.big.totalScore).toBe(by.big.scores.reduce((a, s) => a + s.weighted, 0));
      // ImageLocality skips itself: no node holds the pod's image.
      expect(by.big.scores.map((s) => s.plugin)).toEqual(['TaintToleration', 'NodeResourcesFit', 'NodeResourcesBalancedAllocation']);
      // The bin-packing profile picks the fuller node.
      expect((await explain({ snapshot, profile: 'packer' })).selectedNode).toBe('small');
      // Nothing fits: the message has Kubernetes' shape, preemption included.
      const none = await explain({ snapshot: { ...snapshot, pod: pod('huge', { req: { cpu: '64' } }) } });
      expect(none.selectedNode).toBe('');
      expect(none.message).toBe('0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu. preemption: 0/4 nodes are available: 1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod.');
      // Bad input names the field and the service keeps serving.
      const bad = await explain({ snapshot: { ...snapshot, pod: pod('bad', { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'gpu', operator: 'Gt', values: ['many'] }], matchFields: [] }] }, preferredDuringSchedulingIgnoredDuringExecution: [] } } as any }) } }).catch((e: ServiceError) => e);
      expect((bad as ServiceError).code).toBe(status.INVALID_ARGUMENT);
      expect((bad as ServiceError).details).toMatch(/snapshot\.pod\.spec\.affinity\.nodeAffinity\.requiredDuringSchedulingIgnoredDuringExecution\.nodeSelectorTerms\[0\]\.matchExpressions\[0\]\.values: operator Gt needs exactly one integer value/);
      const unknown = await explain({ snapshot: { ...snapshot, pod: pod('x', { schedulerName: 'nope' }) } }).catch((e: ServiceError) => e);
      expect((unknown as ServiceError).details).toMatch(/pod\.spec\.schedulerName: no profile named "nope" \(profiles: default-scheduler, packer\)/);
      const q = await callUnary<scheduler.QueueStatusRequest, scheduler.QueueStatusResponse>(client.queueStatus.bind(client), scheduler.QueueStatusRequest.fromPartial({}));
      expect(q).toMatchObject({ activeCount: 0, backoffCount: 0, unschedulableCount: 0, pods: [] });
    } finally {
      client.close();
    }
  });

  it.each([
    ['profiles:\n  - plugins:\n      filter:\n        enabled: [{name: NoSuchPlugin}]\n', /profiles\[0\]\.plugins\.filter\.enabled\[0\]\.name: unknown plugin "NoSuchPlugin"/],
    ['profiles:\n  - plugins:\n      score:\n        enabled: [{name: NodeAffinity, weight: 1000}]\n', /profiles\[0\]\.plugins\.score\.enabled\[0\]\.weight: must be an integer in the range 0-100, got 1000/],
  ])('exits 2 naming the bad key of the scheduler config %#', async (text, re) => {
    const cfg = path.join(dir, 'sched.yaml');
    fs.writeFileSync(cfg, text);
    svc = startServiceProcess(bin, ['--listen', `unix://${path.join(dir, 's.sock')}`, '--state-dir', path.join(dir, 'state'), '--scheduler-config', cfg]);
    const exit = await svc.exited;
    expect(exit.code, svc.output()).toBe(2);
    expect(svc.output()).toMatch(re);
  });

  it.each([
    [['--listen', 'not-an-address'], /--listen: expected unix:\/\/\/absolute\/path or host:port/],
    [['--no-such-flag'], /Unknown option '--no-such-flag'/],
    [['--listen', '127.0.0.1:0', '--state-dir', '/tmp'], /TCP listener 127\.0\.0\.1:0 needs TLS/],
  ])('exits 2 with a clear error for %j', async (args, re) => {
    svc = startServiceProcess(bin, args as string[]);
    const exit = await svc.exited;
    expect(exit.code).toBe(2);
    expect(svc.output()).toMatch(re);
    expect(svc.output()).toMatch(/^berth-scheduler: error: /m);
  });
});
