// The parts `berth up`, `berth init` and `berth join` share: a foreground run that owns its run
// dir (lock, take-over after a crash, signals, stop everything), the local etcd, the control
// plane (Store API + scheduler) and the three services of a node.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EtcdCluster, waitServing } from '@berth/common';
import type { ClusterPki, CertPair } from './certs';
import { ServiceProcesses, isAlive, type ServiceChild } from './cluster-processes';
import { cleanupRun } from './down';
import { serviceBin, type ServiceName } from './services';

export type NetworkMode = 'bridge' | 'routed';
export const NODE_SERVICES = ['runtime-shim', 'cni-manager', 'kubelet-agent'] as const satisfies readonly ServiceName[];
export const CONTROL_PLANE = ['etcd-client', 'scheduler'] as const satisfies readonly ServiceName[];

/**
 * One foreground command's life: the lock on its run dir (one run per dir; a lock whose pid is
 * gone is taken over after cleaning up what that run left), SIGINT/SIGTERM or an AbortSignal
 * to stop, and a stop that ends every process and removes what the run made.
 */
export class ForegroundRun {
  readonly logDir: string;
  readonly procs: ServiceProcesses;
  etcd?: EtcdCluster;
  readonly stop = new AbortController();
  readonly stopped: Promise<void>;
  reason = '';
  private readonly lock: string;
  private readonly onSig = (sig: NodeJS.Signals) => { this.reason ||= sig; this.stop.abort(); };

  constructor(readonly command: string, readonly runDir: string, readonly stateDir: string, private readonly out: NodeJS.WritableStream, signal?: AbortSignal) {
    fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.logDir = path.join(stateDir, 'logs');
    fs.mkdirSync(this.logDir, { recursive: true, mode: 0o700 });
    this.lock = path.join(runDir, 'up.pid');
    this.procs = new ServiceProcesses(path.join(runDir, 'up.children'), this.logDir, (s) => this.say(`berth ${command}: ${s}`));
    this.procs.extraPids = () => this.etcd?.memberInfo.map((m) => m.pid ?? 0) ?? [];
    this.stopped = new Promise<void>((r) => this.stop.signal.addEventListener('abort', () => r(), { once: true }));
    process.on('SIGINT', this.onSig);
    process.on('SIGTERM', this.onSig);
    signal?.addEventListener('abort', () => { this.reason ||= 'abort'; this.stop.abort(); }, { once: true });
  }

  say(s: string): void {
    this.out.write(s + '\n');
  }

  /** Takes the run dir; false when another live run holds it. */
  async begin(): Promise<boolean> {
    let previous = 0;
    try { previous = Number(fs.readFileSync(this.lock, 'utf8')); } catch { /* no lock */ }
    if (previous && previous !== process.pid && isAlive(previous)) {
      this.say(`berth ${this.command}: another berth up/init/join (pid ${previous}) is running with run dir ${this.runDir}`);
      return false;
    }
    if (previous) this.say(`berth ${this.command}: taking over from a previous run that did not stop cleanly (pid ${previous})`);
    // Whatever a crashed run left (recorded processes, mounts, namespaces, links, cgroups) goes first.
    const stale = await cleanupRun(this.runDir, this.stateDir, (s) => this.say(`berth ${this.command}: ${s}`));
    if (stale.length) this.say(`berth ${this.command}: could not remove everything a previous run left:\n  ${stale.join('\n  ')}`);
    fs.writeFileSync(this.lock, String(process.pid), { mode: 0o600 });
    return true;
  }

  checkStop(): void {
    if (this.stop.signal.aborted) throw new Error('stopped');
  }

  /** Nodes first (their agents may still report to the Store), then the control plane and etcd, then the host clean-up. */
  async stopAll(): Promise<void> {
    await this.procs.stop((c) => c.name.includes('/'));
    await this.procs.stop();
    await this.etcd?.destroy();
    const errors = await cleanupRun(this.runDir, this.stateDir, (s) => this.say(`berth ${this.command}: ${s}`));
    for (const e of errors) this.say(`berth ${this.command}: ${e}`);
    fs.rmSync(path.join(this.runDir, 'cluster.json'), { force: true });
    fs.rmSync(this.lock, { force: true });
  }

  /** Ends the run after `body`: stops everything; exit code 0 after a signal, 1 after an error. */
  async run(body: () => Promise<void>): Promise<number> {
    try {
      // A signal ends the run at once, even while a step (an image import, a wait) is still in
      // flight: stopping the processes ends that step too.
      await Promise.race([body(), this.stopped]);
      await this.stopped;
      throw new Error('stopped');
    } catch (err) {
      if (!this.stop.signal.aborted) {
        this.say(`berth ${this.command}: ${(err as Error).message}`);
        this.say(`berth ${this.command}: stopping ...`);
        await this.stopAll();
        return 1;
      }
      this.say(`\nberth ${this.command}: ${this.reason}: stopping everything ...`);
      await this.stopAll();
      this.say(`berth ${this.command}: stopped; nothing left running.`);
      return 0;
    } finally {
      process.off('SIGINT', this.onSig);
      process.off('SIGTERM', this.onSig);
    }
  }
}

/**
 * The local etcd: loopback ports remembered in the state dir, so a restart finds its data. A
 * multi-member local etcd starts afresh each time: its members' peer ports are chosen anew and
 * members remember each other's peer URLs, so old data could not rejoin.
 */
export async function startLocalEtcd(run: ForegroundRun, members: number): Promise<string[]> {
  const etcdRoot = path.join(run.stateDir, 'etcd');
  const portsFile = path.join(etcdRoot, 'ports.json');
  let saved: { client: number[] } | undefined;
  try { saved = JSON.parse(fs.readFileSync(portsFile, 'utf8')) as { client: number[] }; } catch { /* first run */ }
  if (saved && (saved.client.length !== members || members > 1)) {
    run.say(saved.client.length !== members
      ? `berth ${run.command}: the local etcd had ${saved.client.length} member(s), now ${members}: starting it afresh`
      : `berth ${run.command}: a ${members}-member local etcd starts afresh (its members' peer addresses change between runs)`);
    fs.rmSync(etcdRoot, { recursive: true, force: true });
    saved = undefined;
  }
  run.say(`starting etcd (${members} member${members > 1 ? 's' : ''}) ...`);
  run.etcd = await EtcdCluster.start({ dataRoot: etcdRoot, members, namePrefix: 'berth', clientPorts: saved?.client, enableV2: true });
  fs.writeFileSync(portsFile, JSON.stringify({ client: run.etcd.endpoints.map((e) => Number(new URL(e).port)) }));
  run.procs.record();
  run.say(`etcd         ${run.etcd.endpoints.join(',')}  (data ${etcdRoot})`);
  superviseEtcd(run, run.etcd);
  return run.etcd.endpoints;
}

/**
 * Starts a member that exits while the run is up again with its data dir, so it rejoins its
 * cluster (like the services: Restart=always, 1 s doubling to 30 s while it keeps failing).
 * Without this a 3-member cluster that lost one member stays one failure from losing quorum.
 */
function superviseEtcd(run: ForegroundRun, etcd: EtcdCluster): void {
  const members = etcd.memberInfo;
  const backoffMs = members.map(() => 1000);
  const startedAt = members.map(() => Date.now());
  const due = members.map(() => 0);
  const restarting = members.map(() => false);
  const timer = setInterval(() => {
    if (run.etcd !== etcd || run.procs.stopping) { clearInterval(timer); return; }
    members.forEach((m, i) => {
      if (restarting[i] || etcd.isRunning(i)) return;
      const now = Date.now();
      if (!due[i]) {
        if (now - startedAt[i] > 60_000) backoffMs[i] = 1000;
        due[i] = now + backoffMs[i];
        run.say(`berth ${run.command}: etcd member ${m.name} exited unexpectedly; starting it again in ${backoffMs[i] / 1000} s; see ${path.join(run.stateDir, 'etcd', `${m.name}.log`)}`);
        backoffMs[i] = Math.min(backoffMs[i] * 2, 30_000);
        return;
      }
      if (now < due[i]) return;
      restarting[i] = true;
      due[i] = 0;
      etcd.restart(i, false).then(() => {
        startedAt[i] = Date.now();
        run.procs.record();
        run.say(`berth ${run.command}: etcd member ${m.name} started again (pid ${etcd.memberInfo[i].pid})`);
      }, (err: Error) => run.say(`berth ${run.command}: etcd member ${m.name}: ${err.message}`)).finally(() => { restarting[i] = false; });
    });
  }, 250);
  timer.unref();
}

/**
 * The Store's server certificate followed by the CA: a joining node that has only the CA's
 * public-key hash finds the CA in the handshake and pins it before it sends its token.
 */
export function serverChain(pki: ClusterPki): string {
  const file = path.join(pki.dir, 'etcd-client-chain.crt');
  fs.writeFileSync(file, fs.readFileSync(pki.server.cert, 'utf8').trimEnd() + '\n' + fs.readFileSync(pki.ca.cert, 'utf8'), { mode: 0o644 });
  return file;
}

/**
 * Waits until each child serves (its health is SERVING) or 60 s pass. A child that exits on the
 * way is started again by the supervisor and may still make it (a start-up race with a peer),
 * so an exit alone does not fail the wait; its log says why it exited.
 */
export function waitAllServing(run: ForegroundRun, children: ServiceChild[], timeoutMs = 60_000): Promise<string[]> {
  return Promise.all(children.map((c) => Promise.race([waitServing(c.socket, timeoutMs), run.stopped.then(() => 'STOPPED')])));
}

export interface ControlPlane { children: ServiceChild[]; storeUnix: string; storeTcp: string }

/** etcd-client (unix socket + mutual TLS on `storeTcp`) and the scheduler (mTLS with its own certificate). */
export function startControlPlane(run: ForegroundRun, o: { etcdEndpoints: string[]; pki: ClusterPki; storeTcp: string; signing?: boolean; nodeMonitorGracePeriodMs?: number }): ControlPlane {
  const env = { ...process.env, BERTH_RUN_DIR: run.runDir, BERTH_STATE_DIR: run.stateDir };
  const storeUnix = `unix://${path.join(run.runDir, 'etcd-client.sock')}`;
  const children: ServiceChild[] = [];
  children.push(run.procs.start('etcd-client', serviceBin('etcd-client'), [
    '--listen', storeUnix, '--state-dir', path.join(run.stateDir, 'etcd-client'), '--etcd-endpoints', o.etcdEndpoints.join(','),
    '--secure-listen', o.storeTcp, '--client-ca-file', o.pki.ca.cert, '--tls-cert-file', serverChain(o.pki), '--tls-private-key-file', o.pki.server.key,
    ...(o.signing && serviceTakes('etcd-client', '--cluster-signing-cert-file') ? ['--cluster-signing-cert-file', o.pki.ca.cert, '--cluster-signing-key-file', o.pki.ca.key] : []),
    // The service takes Go durations; whole milliseconds say any parsed value exactly.
    ...(o.nodeMonitorGracePeriodMs !== undefined ? ['--node-monitor-grace-period', `${o.nodeMonitorGracePeriodMs}ms`] : []),
  ], { socket: storeUnix, env }));
  const schedSock = `unix://${path.join(run.runDir, 'scheduler.sock')}`;
  children.push(run.procs.start('scheduler', serviceBin('scheduler'), [
    '--listen', schedSock, '--state-dir', path.join(run.stateDir, 'scheduler'),
    '--store', o.storeTcp, '--store-ca', o.pki.ca.cert, '--store-cert', o.pki.scheduler.cert, '--store-key', o.pki.scheduler.key,
  ], { socket: schedSock, env }));
  return { children, storeUnix, storeTcp: o.storeTcp };
}

const helps = new Map<ServiceName, string>();
/**
 * Whether this build of a service takes a flag. Services grow flags while this cluster is being
 * assembled (cni-manager's `--store` with mutual TLS replaces its unix-only `--store-endpoint`;
 * the Store's certificate signer is new); asking `--help` keeps each combination working.
 */
export function serviceTakes(name: ServiceName, flag: string): boolean {
  if (!helps.has(name)) helps.set(name, spawnSync(process.execPath, [serviceBin(name), '--help'], { encoding: 'utf8' }).stdout ?? '');
  return new RegExp(`${flag}\\b`).test(helps.get(name)!);
}

export interface NodeSpec {
  name: string;
  ip: string;
  podCidr: string;
  network: NetworkMode;
  /** The node's network namespace file (services run inside it), or none: this process's. */
  netnsPath?: string;
  runDir: string;
  stateDir: string;
  /** --cgroup-root of the kubelet-agent (default the machine's cgroupfs). */
  cgroupRoot?: string;
  store: { tcp: string; ca: string } & CertPair;
  /** The other nodes, when known up front: static routes to their pods. */
  others?: { podCidr: string; ip: string }[];
  labels?: string[];
  taints?: string[];
}

export function nodeServiceArgs(service: ServiceName, n: NodeSpec): string[] {
  const sock = (s: ServiceName) => `unix://${path.join(n.runDir, `${s}.sock`)}`;
  const args = ['--listen', sock(service), '--state-dir', path.join(n.stateDir, service)];
  const tlsStore = ['--store', n.store.tcp, '--store-ca', n.store.ca, '--store-cert', n.store.cert, '--store-key', n.store.key];
  if (service === 'cni-manager') {
    args.push('--mode', n.network, '--pod-cidr', n.podCidr, '--node-name', n.name);
    if (n.netnsPath) args.push('--host-netns', n.netnsPath);
    // Routes to the other nodes' pods: from the plan when the nodes are known up front (berth
    // up), else from the Node objects, which this cni-manager watches over mutual TLS like the
    // other node services (berth join).
    if (n.others?.length) args.push('--node-routes', n.others.map((x) => `${x.podCidr}=${x.ip}`).join(','));
    else if (serviceTakes('cni-manager', '--store-cert')) args.push(...tlsStore);
  }
  if (service === 'kubelet-agent') {
    args.push('--node-name', n.name, '--node-ip', n.ip, '--pod-cidr', n.podCidr,
      '--runtime-endpoint', sock('runtime-shim'), '--cni-endpoint', sock('cni-manager'), ...tlsStore);
    if (n.cgroupRoot) args.push('--cgroup-root', n.cgroupRoot);
    if (n.labels?.length) args.push('--node-labels', n.labels.join(','));
    if (n.taints?.length) args.push('--register-with-taints', n.taints.join(','));
  }
  return args;
}

/** Starts the node's runtime-shim, cni-manager and kubelet-agent, or some of them (inside its netns when it has one). */
export function startNode(run: ForegroundRun, n: NodeSpec, services: readonly ServiceName[] = NODE_SERVICES): ServiceChild[] {
  fs.mkdirSync(n.runDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(n.stateDir, { recursive: true, mode: 0o700 });
  const env = { ...process.env, BERTH_RUN_DIR: n.runDir, BERTH_STATE_DIR: n.stateDir, BERTH_NODE_NAME: n.name };
  return services.map((s) => run.procs.start(`${n.name}/${s}`, serviceBin(s), nodeServiceArgs(s, n), { socket: `unix://${path.join(n.runDir, `${s}.sock`)}`, env, netns: n.netnsPath }));
}
