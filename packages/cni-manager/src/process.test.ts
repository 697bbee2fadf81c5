// The real binary as a real process: it serves health on its socket, runs bridge mode on the
// default pod CIDR with no config, rejects bad config naming the key, and exits cleanly on
// SIGTERM. It runs in a node namespace of the test's own (--host-netns), never on the host.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { cni } from '@berth/api';
import { checkHealth, createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IpamStore } from './ipam';
import { hostVethName } from './network';
import { netnsPath, sh, Topology } from './testing/topology';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-cni-manager.js');

describe('berth-cni-manager process', () => {
  let dir: string;
  let svc: ServiceProcess | undefined;
  let topo: Topology;
  let nodeNs: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-manager-'));
    topo = new Topology();
    nodeNs = netnsPath(topo.netns('n'));
  });
  afterEach(async () => {
    await svc?.stop();
    svc = undefined;
    topo.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const call = <T>(client: unknown, method: string, req: unknown): Promise<T> =>
    new Promise((resolve, reject) => (client as Record<string, Function>)[method]!(req, (e: ServiceError | null, r: T) => (e ? reject(e) : resolve(r))));

  it('serves SERVING health on its 0600 socket and exits 0 on SIGTERM', async () => {
    const sock = path.join(dir, 'run', 'cni-manager.sock');
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--host-netns', nodeNs]);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    for (const name of ['berth.cni.v1.NetworkService']) expect(await checkHealth(`unix://${sock}`, name)).toBe('SERVING');
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(dir, 'state')).isDirectory()).toBe(true);
    const client = createClient(cni.NetworkServiceClient, { target: `unix://${sock}` });
    try {
      const st = await call<cni.StatusResponse>(client, 'status', {});
      expect(st).toMatchObject({ ready: true, mode: 'bridge', podCidr: '10.244.0.0/24' });
      expect(st.capabilities?.cniPlugins).toContain('bridge');
      const podNs = netnsPath(topo.netns('p'));
      const req = { podUid: 'u1', podNamespace: 'default', podName: 'web', sandboxId: `sb-${topo.id}`, netnsPath: podNs };
      const res = await call<cni.SetUpPodResponse>(client, 'setUpPod', cni.SetUpPodRequest.fromPartial(req));
      expect(res).toMatchObject({ ips: ['10.244.0.2/24'], gateway: '10.244.0.1', routes: [{ dst: '0.0.0.0/0', gw: '10.244.0.1' }] });
      expect((await call<cni.CheckPodResponse>(client, 'checkPod', req)).ok).toBe(true);
      expect((await call<cni.ListAttachmentsResponse>(client, 'listAttachments', {})).attachments.map((a) => a.sandboxId)).toEqual([req.sandboxId]);
      expect((await call<cni.PodNetworkStatusResponse>(client, 'podNetworkStatus', { sandboxId: req.sandboxId })).ips).toEqual(['10.244.0.2/24']);
      const faults = await call(client, 'setPodFaults', cni.SetPodFaultsRequest.fromPartial({ sandboxId: req.sandboxId, delayMs: 50 })).catch((e: ServiceError) => e);
      if (st.capabilities?.netem === false) {
        expect((faults as ServiceError).code).toBe(status.FAILED_PRECONDITION);
        expect((faults as ServiceError).details).toMatch(/delay \(sch_netem is not available in this kernel\)/);
      }
      const loss = await call<cni.SetPodFaultsResponse>(client, 'setPodFaults', cni.SetPodFaultsRequest.fromPartial({ sandboxId: req.sandboxId, lossPercent: 10, direction: cni.FaultDirection.FAULT_DIRECTION_BOTH }));
      expect(loss.applied.map((f) => f.mechanism)).toEqual(['iptables-statistic', 'iptables-statistic']);
      expect((await call<cni.PodNetworkStatusResponse>(client, 'podNetworkStatus', { sandboxId: req.sandboxId })).faults).toHaveLength(2);
      await call(client, 'clearPodFaults', { sandboxId: req.sandboxId });
      expect((await call<cni.PodNetworkStatusResponse>(client, 'podNetworkStatus', { sandboxId: req.sandboxId })).faults).toEqual([]);
      await call(client, 'tearDownPod', req);
      await call(client, 'tearDownPod', req);
      const gone = await call(client, 'podNetworkStatus', { sandboxId: req.sandboxId }).catch((e: ServiceError) => e);
      expect((gone as ServiceError).code).toBe(status.NOT_FOUND);
      const bad = await call(client, 'setUpPod', cni.SetUpPodRequest.fromPartial({ ...req, netnsPath: '/etc/hostname' })).catch((e: ServiceError) => e);
      expect((bad as ServiceError).code).toBe(status.INVALID_ARGUMENT);
      expect((bad as ServiceError).details).toMatch(/netns_path/);
    } finally {
      client.close();
    }
    const exit = await svc.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('after kill -9 during a burst of SetUpPod and a restart, every pod is fully set up or cleaned, and IPAM agrees', async () => {
    const sock = path.join(dir, 'cni.sock');
    const args = ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--host-netns', nodeNs, '--mode', 'routed', '--log-level', 'warn'];
    svc = startServiceProcess(bin, args);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    const pods = Array.from({ length: 24 }, (_, i) => ({ sandboxId: `crash-${topo.id}-${i}`, netnsPath: netnsPath(topo.netns('p')) }));
    let client = createClient(cni.NetworkServiceClient, { target: `unix://${sock}` });
    let done = 0;
    const killed = new Promise<void>((resolve) => {
      for (const p of pods) {
        void call(client, 'setUpPod', cni.SetUpPodRequest.fromPartial(p)).then(() => { if (++done === 6) { svc!.proc.kill('SIGKILL'); resolve(); } }, () => undefined);
      }
    });
    await killed;
    await svc.exited;
    client.close();
    svc = startServiceProcess(bin, args);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    client = createClient(cni.NetworkServiceClient, { target: `unix://${sock}` });
    try {
      const attached = new Set((await call<cni.ListAttachmentsResponse>(client, 'listAttachments', {})).attachments.map((a) => a.sandboxId));
      expect(attached.size).toBeGreaterThanOrEqual(6);
      const ips: string[] = [];
      for (const p of pods) {
        const podLinks = sh('ip', ['-n', p.netnsPath.split('/').pop()!, '-br', 'link']);
        const hostLinks = sh('ip', ['-n', nodeNs.split('/').pop()!, '-br', 'link']);
        if (attached.has(p.sandboxId)) {
          expect((await call<cni.CheckPodResponse>(client, 'checkPod', p)).problems).toEqual([]);
          ips.push(...(await call<cni.PodNetworkStatusResponse>(client, 'podNetworkStatus', p)).ips.map((c) => c.split('/')[0]!));
        } else {
          expect(podLinks).not.toMatch(/eth0/);
          expect(hostLinks).not.toContain(hostVethName(p.sandboxId));
        }
      }
      expect([...IpamStore.claimsOnDisk(path.join(dir, 'state', 'ipam')).keys()].sort()).toEqual([...ips].sort());
      expect(new Set(ips).size).toBe(ips.length);
      // The survivors still work, and everything goes away on teardown.
      for (const p of pods) await call(client, 'tearDownPod', p);
      const gc = await call<cni.GarbageCollectResponse>(client, 'garbageCollect', { validSandboxIds: [] });
      expect(gc.releasedIps).toEqual([]);
    } finally {
      client.close();
    }
    await svc.stop();
    expect(sh('ip', ['-n', nodeNs.split('/').pop()!, '-br', 'link'])).not.toMatch(/^bv/m);
    expect(IpamStore.claimsOnDisk(path.join(dir, 'state', 'ipam')).size).toBe(0);
  });

  it('idles without waking up; process metrics only with --metrics-listen, served there', async () => {
    const sock = path.join(dir, 'cni.sock');
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--host-netns', nodeNs]);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    // Nothing to do, nothing done: no timer wakes the main thread (prom-client's event-loop
    // monitor did 100 times a second). A few switches may come from exiting pool threads.
    const switches = (): number => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(fs.readFileSync(`/proc/${svc!.proc.pid}/status`, 'utf8'))![1]);
    await new Promise((r) => setTimeout(r, 500));
    const before = switches();
    await new Promise((r) => setTimeout(r, 1000));
    expect(switches() - before).toBeLessThan(20);
    await svc.stop();
    const metricsSock = path.join(dir, 'metrics.sock');
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--host-netns', nodeNs, '--metrics-listen', `unix://${metricsSock}`]);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    const body = sh('curl', ['-sf', '--unix-socket', metricsSock, 'http://localhost/metrics']);
    expect(body).toMatch(/^process_cpu_user_seconds_total\{service="cni-manager"\} /m);
    expect(body).toMatch(/^nodejs_eventloop_lag_seconds\{service="cni-manager"\} /m);
  });

  it('refuses a second cni-manager on the same state dir, naming the one that has it', async () => {
    const sock = path.join(dir, 'one.sock');
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--host-netns', nodeNs]);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    const second = startServiceProcess(bin, ['--listen', `unix://${path.join(dir, 'two.sock')}`, '--state-dir', path.join(dir, 'state'), '--host-netns', nodeNs]);
    const exit = await second.exited;
    expect(exit.code, second.output()).not.toBe(0);
    expect(second.output()).toMatch(new RegExp(`attachments.journal is in use by another process \\(pid ${svc.proc.pid}\\)`));
  });

  it('uses BERTH_RUN_DIR for its default socket', async () => {
    const runDir = path.join(dir, 'run');
    svc = startServiceProcess(bin, ['--state-dir', path.join(dir, 'state'), '--host-netns', nodeNs], { ...process.env, BERTH_RUN_DIR: runDir });
    expect(await waitServing(`unix://${path.join(runDir, 'cni-manager.sock')}`), svc.output()).toBe('SERVING');
  });

  it.each([
    [['--listen', 'not-an-address'], /--listen: expected unix:\/\/\/absolute\/path or host:port/],
    [['--no-such-flag'], /Unknown option '--no-such-flag'/],
    [['--listen', '127.0.0.1:0'], /TCP listener 127\.0\.0\.1:0 needs TLS/],
    [['--mode', 'mesh'], /mode/],
    [['--pod-cidr', '10.0.0.0/99', '--host-netns', '/etc/hostname'], /podCidr|pod-cidr/],
    [['--host-netns', '/etc/hostname'], /hostNetns: \/etc\/hostname is not a network namespace/],
    [['--store', 'not an address'], /--store: expected unix:\/\/\/absolute\/path or host:port/],
    [['--store-endpoint', 'etcd.example'], /--store-endpoint: expected unix:\/\/\/absolute\/path or host:port/],
    [['--store', 'unix:///a.sock', '--store-endpoint', 'unix:///b.sock'], /store-endpoint: conflicts with --store unix:\/\/\/a.sock/],
    [['--store', '127.0.0.1:1', '--store-ca', '/ca.crt', '--store-cert', '/c.crt'], /store-cert and store-key must be given together/],
  ])('exits 2 with a clear error for %j', async (args, re) => {
    const argv = args as string[];
    // Never the real state dir or the real network: a state dir and node netns of the test's own.
    if (!argv.includes('--state-dir')) argv.push('--state-dir', path.join(dir, 'state'));
    if (!argv.includes('--host-netns')) argv.push('--host-netns', nodeNs);
    svc = startServiceProcess(bin, argv);
    const exit = await svc.exited;
    expect(exit.code).toBe(2);
    expect(svc.output()).toMatch(re);
    expect(svc.output()).toMatch(/^berth-cni-manager: error: /m);
  });
});
