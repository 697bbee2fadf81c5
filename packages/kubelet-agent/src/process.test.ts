// The real binary as a real process: it serves health on its socket, lists its pods, rejects bad
// config naming the key, and exits cleanly on SIGTERM.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { kubelet } from '@berth/api';
import { checkHealth, createClient, serve, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-kubelet-agent.js');

describe('berth-kubelet-agent process', () => {
  let dir: string;
  let svc: ServiceProcess | undefined;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-kubelet-agent-')); });
  afterEach(async () => {
    await svc?.stop();
    svc = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves SERVING health on its 0600 socket and exits 0 on SIGTERM', async () => {
    const sock = path.join(dir, 'run', 'kubelet-agent.sock');
    // Endpoints and cgroup root of its own: never another engineer's runtime or cgroups.
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--runtime-endpoint', `unix://${path.join(dir, 'no-rt.sock')}`, '--cni-endpoint', `unix://${path.join(dir, 'no-cni.sock')}`, '--cgroup-root', path.join(dir, 'no-cgroupfs')]);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    for (const name of ['berth.kubelet.v1.Kubelet']) expect(await checkHealth(`unix://${sock}`, name)).toBe('SERVING');
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(dir, 'state')).isDirectory()).toBe(true);
    const client = createClient(kubelet.KubeletClient, { target: `unix://${sock}` });
    // No Store and no static pods: the node runs nothing (UNAVAILABLE only while starting).
    let res: { err: ServiceError | null; pods?: unknown[] } = { err: null };
    for (let i = 0; i < 100; i++) {
      res = await new Promise((resolve) => (client as any).listPods({}, (e: ServiceError | null, r?: kubelet.ListPodsResponse) => resolve({ err: e, pods: r?.pods })));
      if (res.err?.code !== status.UNAVAILABLE) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    client.close();
    expect(res.err).toBeNull();
    expect(res.pods).toEqual([]);
    const exit = await svc.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('uses BERTH_RUN_DIR for its default socket', async () => {
    const runDir = path.join(dir, 'run');
    svc = startServiceProcess(bin, ['--state-dir', path.join(dir, 'state'), '--cgroup-root', path.join(dir, 'no-cgroupfs')], { ...process.env, BERTH_RUN_DIR: runDir });
    expect(await waitServing(`unix://${path.join(runDir, 'kubelet-agent.sock')}`), svc.output()).toBe('SERVING');
  });

  it('reads the node from the machine and names the dependencies it cannot reach', async () => {
    const sock = path.join(dir, 'run', 'kubelet-agent.sock');
    // A real service for cni-manager's endpoint (health SERVING); none for runtime-shim's.
    const cni = await serve({ listen: `unix://${path.join(dir, 'cni.sock')}`, services: [] });
    cni.setServing(true);
    try {
      svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--runtime-endpoint', `unix://${path.join(dir, 'no-runtime.sock')}`, '--cni-endpoint', `unix://${path.join(dir, 'cni.sock')}`, '--max-pods', '42', '--system-reserved', 'cpu=100m,memory=64Mi', '--cgroup-root', path.join(dir, 'no-cgroupfs')]);
      expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
      const deadline = Date.now() + 10_000;
      while (!/dependencies missing/.test(svc.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const line = svc.output().split('\n').find((l) => l.includes('dependencies missing'))!;
      expect(line).toContain(`runtime-shim at unix://${path.join(dir, 'no-runtime.sock')}`);
      expect(line).not.toContain('cni-manager');
      // Healthz names each check: the missing runtime, the reachable network, the sync loop.
      const client = createClient(kubelet.KubeletClient, { target: `unix://${sock}` });
      const hz = await new Promise<kubelet.HealthzResponse>((resolve, reject) => (client as any).healthz({}, (e: ServiceError | null, r: kubelet.HealthzResponse) => (e ? reject(e) : resolve(r))));
      client.close();
      expect(hz.status).toBe('failing: runtime-shim, syncloop');
      expect(hz.checks['cni-manager']).toBe('ok');
      expect(hz.checks['runtime-shim']).toMatch(/^UNREACHABLE: /);
      const facts = JSON.parse(svc.output().split('\n').find((l) => l.includes('"node facts"'))!);
      expect(facts.capacity).toMatchObject({ pods: '42', cpu: String(os.cpus().length) });
      expect(facts.allocatable.cpu).toBe(`${os.cpus().length * 1000 - 100}m`);
      expect(facts.node).toBe(os.hostname().toLowerCase());
    } finally {
      await cni.shutdown(100);
    }
  });

  it.each([
    [['--eviction-hard', 'memory.free<1Gi'], /eviction-hard: unknown signal "memory\.free"/],
    [['--image-gc-low-threshold', '90'], /image-gc-low-threshold \(90\) must not be above image-gc-high-threshold \(85\)/],
    [['--node-name', 'Bad_Name'], /--node-name: must be a lowercase DNS subdomain/],
    [['--register-with-taints', 'dedicated=ci:Sometimes'], /register-with-taints: expected key\[=value\]:NoSchedule/],
    [['--system-reserved', 'gpu=1'], /systemReserved\.gpu: unknown resource/],
    [['--listen', 'not-an-address'], /--listen: expected unix:\/\/\/absolute\/path or host:port/],
    [['--no-such-flag'], /Unknown option '--no-such-flag'/],
    [['--listen', '127.0.0.1:0', '--state-dir', '/tmp'], /TCP listener 127\.0\.0\.1:0 needs TLS/],
  ])('exits 2 with a clear error for %j', async (args, re) => {
    svc = startServiceProcess(bin, args as string[]);
    const exit = await svc.exited;
    expect(exit.code).toBe(2);
    expect(svc.output()).toMatch(re);
    expect(svc.output()).toMatch(/^berth-kubelet-agent: error: /m);
  });
});
