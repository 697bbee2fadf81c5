// One real Berth node for the agent's acceptance tests and the pods benchmark: a real etcd and
// berth-etcd-client (the Store), berth-runtime-shim with the busybox test image imported,
// berth-cni-manager working in a network namespace made for the run (the node's), and
// berth-kubelet-agent itself running inside that namespace — so its httpGet/tcp probes reach pod
// IPs the way they do on a node. Every name carries a random suffix; stop() removes everything
// it made (pods' sandboxes, namespaces, cgroups, processes, files), also after a failure.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core, kubelet, runtime } from '@berth/api';
import { kindInfo, StoreClient, unwrap, wrap } from '@berth/apimachinery';
import { createClient, EtcdCluster, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { NODE_NAME_LABEL } from '../runtime-view';

const pkg = path.resolve(__dirname, '..', '..');
const bins = {
  store: path.resolve(pkg, '..', 'etcd-client', 'dist', 'bin', 'berth-etcd-client.js'),
  runtime: path.resolve(pkg, '..', 'runtime-shim', 'dist', 'bin', 'berth-runtime-shim.js'),
  cni: path.resolve(pkg, '..', 'cni-manager', 'dist', 'bin', 'berth-cni-manager.js'),
  agent: path.resolve(pkg, 'dist', 'bin', 'berth-kubelet-agent.js'),
};
const POD = kindInfo('Pod')!;
const NS = kindInfo('Namespace')!;
export const TEST_IMAGE = 'berth.test/busybox:v1';

/** The first RPC the agent needs of issue #8: runtime-shim answers it, or the acceptance tests skip. */
export async function sandboxesMissing(runtimeSock: string): Promise<string | undefined> {
  const c = createClient(runtime.RuntimeServiceClient, { target: `unix://${runtimeSock}` });
  try {
    await new Promise<void>((res, rej) => c.podSandboxStatus(runtime.PodSandboxStatusRequest.fromPartial({ podSandboxId: 'berth-probe-none' }), (e) => (e ? rej(e) : res())));
    return undefined;
  } catch (e) {
    const err = e as { code?: number; details?: string };
    return err.code === 12 ? `runtime-shim RuntimeService.PodSandboxStatus/RunPodSandbox: ${err.details}` : undefined;
  } finally {
    c.close();
  }
}

/**
 * A Berth binary inside a network namespace, as a ServiceProcess. nsenter changes only the network
 * namespace (`ip netns exec` would also remount /sys and hide cgroupfs).
 */
function startInNetns(netns: string, bin: string, args: string[], nodeArgs: string[] = []): ServiceProcess {
  return startServiceProcess(bin, args, process.env, { netns: `/run/netns/${netns}`, nodeArgs });
}

export class NodeHarness {
  readonly id = crypto.randomBytes(3).toString('hex');
  readonly nodeName = `ka-node-${this.id}`;
  readonly netns = `ka-n-${this.id}`;
  readonly namespace = `ka-${this.id}`;
  readonly cgroupParent = `berth-test-${this.id}`;
  dir = '';
  etcd?: EtcdCluster;
  storeProc?: ServiceProcess;
  runtimeProc?: ServiceProcess;
  cniProc?: ServiceProcess;
  agent?: ServiceProcess;
  store?: StoreClient;
  rt?: runtime.RuntimeServiceClient;
  missing?: string;
  private netnsMade = false;

  get sock() {
    return { store: path.join(this.dir, 'store.sock'), runtime: path.join(this.dir, 'rt.sock'), cni: path.join(this.dir, 'cni.sock'), agent: path.join(this.dir, 'agent.sock') };
  }

  /** Starts the Store, runtime and network; returns what is missing (then the agent is not started). */
  async start(opts: { podCidr?: string; staticPods?: Record<string, string>; agentArgs?: string[] } = {}): Promise<string | undefined> {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ka-node-'));
    fs.chmodSync(this.dir, 0o755);
    execFileSync('ip', ['netns', 'add', this.netns]);
    this.netnsMade = true;
    execFileSync('ip', ['-n', this.netns, 'link', 'set', 'lo', 'up']);
    this.etcd = await EtcdCluster.start({ dataRoot: path.join(this.dir, 'etcd'), removeDataOnDestroy: true });
    this.storeProc = this.startStore();
    // The runtime works in the node's namespace too: hostNetwork pods share it with the agent.
    this.runtimeProc = startInNetns(this.netns, bins.runtime, ['--listen', `unix://${this.sock.runtime}`, '--state-dir', path.join(this.dir, 'rt'), '--log-level', 'warn']);
    this.cniProc = startServiceProcess(bins.cni, ['--listen', `unix://${this.sock.cni}`, '--state-dir', path.join(this.dir, 'cni'), '--host-netns', `/run/netns/${this.netns}`, '--pod-cidr', opts.podCidr ?? '10.77.0.0/16', '--bridge-name', `kab${this.id}`, '--log-level', 'warn']);
    for (const [name, p, s] of [['store', this.storeProc, this.sock.store], ['runtime-shim', this.runtimeProc, this.sock.runtime], ['cni-manager', this.cniProc, this.sock.cni]] as const) {
      if ((await waitServing(`unix://${s}`, 30_000)) !== 'SERVING') throw new Error(`${name} did not start: ${p.output()}`);
    }
    this.store = new StoreClient({ target: `unix://${this.sock.store}` });
    for (const ns of [this.namespace, 'kube-node-lease']) {
      try {
        await this.store.create(wrap(NS, core.Namespace.fromPartial({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })));
      } catch (e) {
        if ((e as { kind?: string }).kind !== 'AlreadyExists') throw e;
      }
    }
    this.rt = createClient(runtime.RuntimeServiceClient, { target: `unix://${this.sock.runtime}` });
    this.missing = await sandboxesMissing(this.sock.runtime);
    if (this.missing) return this.missing;
    await this.importTestImage();
    fs.mkdirSync(path.join(this.dir, 'manifests'));
    for (const [file, text] of Object.entries(opts.staticPods ?? {})) fs.writeFileSync(path.join(this.dir, 'manifests', file), text);
    this.startAgent(opts.agentArgs);
    if ((await waitServing(`unix://${this.sock.agent}`, 30_000)) !== 'SERVING') throw new Error(`kubelet-agent did not start: ${this.agent!.output()}`);
    return undefined;
  }

  private startStore(): ServiceProcess {
    // BERTH_STORE_NODE_ARGS: extra node flags for the Store (e.g. --cpu-prof when profiling the bench).
    return startServiceProcess(bins.store, ['--listen', `unix://${this.sock.store}`, '--state-dir', path.join(this.dir, 'store'), '--etcd-endpoints', this.etcd!.endpoints.join(','), '--log-level', 'warn'],
      process.env, { nodeArgs: (process.env['BERTH_STORE_NODE_ARGS'] ?? '').split(' ').filter(Boolean) });
  }

  /** Takes the Store away (its process stops); `storeBack()` brings it back on the same socket. */
  async storeAway(): Promise<void> {
    await this.storeProc!.stop();
  }

  async storeBack(): Promise<void> {
    this.storeProc = this.startStore();
    if ((await waitServing(`unix://${this.sock.store}`, 30_000)) !== 'SERVING') throw new Error(`store did not come back: ${this.storeProc.output()}`);
  }

  private async importTestImage(): Promise<void> {
    const archive = path.join(this.dir, 'busybox.tar');
    execFileSync(path.resolve(pkg, '..', '..', 'tools', 'build-test-image.sh'), ['--out', path.join(this.dir, 'img'), '--tag', 'v1', '--docker-archive', archive], { stdio: 'pipe' });
    const img = createClient(runtime.ImageServiceClient, { target: `unix://${this.sock.runtime}` });
    try {
      await new Promise<runtime.ImportImageResponse>((resolve, reject) => {
        const call = img.importImage((err, res) => (err ? reject(err) : resolve(res)));
        call.write({ metadata: runtime.ImportImageMetadata.fromPartial({ format: 'docker-archive', name: TEST_IMAGE }) });
        const data = fs.readFileSync(archive);
        for (let i = 0; i < data.length; i += 1 << 20) call.write({ chunk: data.subarray(i, i + (1 << 20)) });
        call.end();
      });
    } finally {
      img.close();
    }
  }

  /** The agent binary, inside the node's network namespace (where pod IPs are reachable). */
  startAgent(extra: string[] = []): ServiceProcess {
    // BERTH_AGENT_NODE_ARGS: extra node flags for the agent (e.g. --cpu-prof when profiling the bench).
    this.agent = startInNetns(this.netns, bins.agent, [
      '--listen', `unix://${this.sock.agent}`, '--state-dir', path.join(this.dir, 'agent'), '--node-name', this.nodeName, '--node-ip', '127.0.0.1',
      '--store', `unix://${this.sock.store}`, '--runtime-endpoint', `unix://${this.sock.runtime}`, '--cni-endpoint', `unix://${this.sock.cni}`,
      '--pod-cgroup-parent', this.cgroupParent, '--pod-manifest-path', path.join(this.dir, 'manifests'), '--log-level', 'info', ...extra,
    ], process.env['BERTH_AGENT_NODE_ARGS']?.split(' ').filter(Boolean));
    return this.agent;
  }

  async stopAgent(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const a = this.agent;
    if (!a || a.proc.exitCode !== null || a.proc.signalCode !== null) return;
    if (signal === 'SIGTERM') {
      await a.stop();
      return;
    }
    a.proc.kill(signal);
    await a.exited;
  }

  kubeletClient(): kubelet.KubeletClient {
    return createClient(kubelet.KubeletClient, { target: `unix://${this.sock.agent}` });
  }

  async createPod(p: core.Pod): Promise<core.Pod> {
    p.metadata!.namespace ||= this.namespace;
    p.spec!.nodeName ||= this.nodeName;
    return unwrap(await this.store!.create(wrap(POD, p))).value as core.Pod;
  }

  async getPod(name: string): Promise<core.Pod | undefined> {
    try {
      return (await this.store!.get('pods', this.namespace, name)).pod;
    } catch (e) {
      if ((e as { kind?: string }).kind === 'NotFound') return undefined;
      throw e;
    }
  }

  async until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, ms = 30_000): Promise<T> {
    const end = Date.now() + ms;
    let last: unknown;
    for (;;) {
      try {
        const v = await fn();
        if (v) return v;
      } catch (e) {
        last = e;
      }
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}\n--- agent log (tail) ---\n${this.agent?.output().split('\n').slice(-30).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Runs a command in the node's network namespace (e.g. wget to a pod IP). */
  inNode(cmd: string[], timeoutMs = 10_000): string {
    return execFileSync('ip', ['netns', 'exec', this.netns, ...cmd], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  async sandboxes(): Promise<runtime.PodSandbox[]> {
    return new Promise((res, rej) => this.rt!.listPodSandbox(runtime.ListPodSandboxRequest.fromPartial({ filter: { labelSelector: { [NODE_NAME_LABEL]: this.nodeName } } }), (e, r) => (e ? rej(e) : res(r.items))));
  }

  async stop(): Promise<void> {
    const errors: string[] = [];
    const step = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };
    await step('agent', () => this.stopAgent());
    // The agent leaves pods running on purpose (a restarted agent adopts them): remove them here.
    if (this.rt && !this.missing) {
      await step('sandboxes', async () => {
        for (const s of await this.sandboxes()) await new Promise<void>((res, rej) => this.rt!.removePodSandbox({ podSandboxId: s.id }, (e) => (e ? rej(e) : res())));
      });
    }
    this.rt?.close();
    this.store?.close();
    await step('cni-manager', () => this.cniProc?.stop());
    await step('runtime-shim', () => this.runtimeProc?.stop());
    await step('store', () => this.storeProc?.stop());
    await step('etcd', () => this.etcd?.destroy());
    if (this.netnsMade) await step('netns', () => execFileSync('ip', ['netns', 'del', this.netns]));
    await step('cgroups', () => removeCgroupTree(this.cgroupParent));
    if (this.dir) await step('dir', () => fs.rmSync(this.dir, { recursive: true, force: true }));
    if (errors.length) throw new Error(`node harness cleanup: ${errors.join('; ')}`);
  }
}

/** rmdir, deepest first, of <controller>/<parent> in every mounted hierarchy. */
export function removeCgroupTree(parent: string): void {
  const roots = fs.readdirSync('/sys/fs/cgroup').map((c) => path.join('/sys/fs/cgroup', c, parent)).concat(path.join('/sys/fs/cgroup', parent));
  const rm = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) rm(path.join(d, e.name));
    fs.rmdirSync(d);
  };
  for (const r of roots) rm(r);
}
