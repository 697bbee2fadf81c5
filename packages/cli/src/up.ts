// `berth up`: a multi-node Berth cluster on this machine, in the foreground. A local etcd that
// Berth manages (or an existing one), the control plane (Store API with its mutual-TLS listener,
// scheduler) on the host, and N nodes, each in its own network namespace on an underlay bridge
// with its own runtime-shim, cni-manager and kubelet-agent (sockets, state and cgroups per node)
// that reach the control plane over the underlay with a node certificate. Then the example image
// goes into every node, examples/ are applied, and a live view runs until they are Running and
// Ready. Ctrl-C or SIGTERM stops everything and removes what the run made on the host.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StoreClient } from '@berth/apimachinery';
import { checkHealth, freePort, runDir as defaultRunDir, stateRoot } from '@berth/common';
import { createClusterPki, type ClusterPki } from './certs';
import { CONTROL_PLANE, NODE_SERVICES, ForegroundRun, waitAllServing, startControlPlane, startLocalEtcd, startNode, type NetworkMode, type NodeSpec } from './cluster';
import { createNodeCgroupRoot } from './cluster-cgroups';
import { CommandUsageError, ETCD_FLAGS, parseDuration, parseEtcdFlags, parseFlags, parseInteger, parseNetwork } from './cluster-flags';
import { DEFAULT_EXAMPLES, applyManifests, buildExampleImage, examplePods, importImage, liveView } from './cluster-examples';
import { createNodeNet, createUnderlay, planUnderlay, runId, type NodeNet, type Underlay } from './cluster-net';
import type { ServiceChild } from './cluster-processes';
import { writeAdminConfig } from './kubeconfig';

export type { NetworkMode } from './cluster';

export interface UpOptions {
  runDir?: string;
  stateDir?: string;
  /** Print progress to this stream (default stdout). */
  out?: NodeJS.WritableStream;
  /** Stop when this aborts, as on SIGTERM (tests). */
  signal?: AbortSignal;
  /** Nodes to run (default 2). */
  nodes?: number;
  network?: NetworkMode;
  /** Members of the local etcd (default 1). */
  etcdMembers?: number;
  /** An existing etcd cluster instead of a local one. */
  etcdEndpoints?: string[];
  /** Manifests to apply once up (default the repository's examples/); false: none. */
  examples?: string | false;
  /** How long the live view waits for the examples (default 300 s). */
  waitTimeoutMs?: number;
  /** The underlay /24 (default: a free one in 10.250.0.0/16). */
  underlayCidr?: string;
  /** How long a node may stay silent before the Store marks it Unknown (default: the service's 40 s). */
  nodeMonitorGracePeriodMs?: number;
}


export const UP_HELP = `Usage: berth up [flags]

  --nodes N                 nodes to run, each in its own network namespace (default 2)
  --network bridge|routed   pod network: a bridge per node, or Calico-style routes (default bridge)
  --etcd-members N          members of the local etcd cluster (default 1); a member that exits
                            is started again with its data and rejoins
  --etcd-endpoints URLS     use an existing etcd cluster (comma-separated http:// URLs) instead
  --examples DIR            manifests to apply once up (default: the repository's examples/)
  --no-examples             apply nothing
  --wait-timeout DURATION   how long to wait for the examples to be Running and Ready (default 5m)
  --underlay-cidr CIDR      the nodes' /24 (default: a free /24 in 10.250.0.0/16)
  --node-monitor-grace-period DURATION
                            how long a node may go without renewing its lease before it is
                            marked NotReady (Ready=Unknown) and tainted unreachable (default 40s;
                            at least 1s; shorter than the agents' 10 s lease renewal flaps)

Environment: BERTH_RUN_DIR (sockets, default /run/berth), BERTH_STATE_DIR (state, default /var/lib/berth)
`;

export function parseUpArgs(args: string[]): UpOptions | 'help' {
  const v = parseFlags(args, {
    nodes: { type: 'string' }, network: { type: 'string' }, ...ETCD_FLAGS,
    examples: { type: 'string' }, 'no-examples': { type: 'boolean' }, 'wait-timeout': { type: 'string' }, 'underlay-cidr': { type: 'string' },
    'node-monitor-grace-period': { type: 'string' },
  });
  if (v.help) return 'help';
  const o: UpOptions = {};
  if (v.nodes !== undefined) o.nodes = parseInteger(v.nodes, '--nodes', 1, 50);
  if (v.network !== undefined) o.network = parseNetwork(v.network);
  Object.assign(o, parseEtcdFlags(v));
  if (v['no-examples'] && v.examples !== undefined) throw new CommandUsageError('--examples and --no-examples exclude each other');
  if (v['no-examples']) o.examples = false;
  if (v.examples !== undefined) {
    if (!fs.existsSync(v.examples) || !fs.statSync(v.examples).isDirectory()) throw new CommandUsageError(`--examples: ${v.examples} is not a directory`);
    o.examples = path.resolve(v.examples);
  }
  if (v['wait-timeout'] !== undefined) o.waitTimeoutMs = parseDuration(v['wait-timeout'], '--wait-timeout');
  if (v['underlay-cidr'] !== undefined) o.underlayCidr = v['underlay-cidr'];
  if (v['node-monitor-grace-period'] !== undefined) {
    o.nodeMonitorGracePeriodMs = parseDuration(v['node-monitor-grace-period'], '--node-monitor-grace-period');
    if (o.nodeMonitorGracePeriodMs < 1000) throw new CommandUsageError(`--node-monitor-grace-period: must be at least 1s, got "${v['node-monitor-grace-period']}"`);
  }
  return o;
}

/** What `berth up` writes to $BERTH_RUN_DIR/cluster.json for `berth status`, `berth down` and tests. */
export interface ClusterInfo {
  runId: string;
  network: NetworkMode;
  underlay: { bridge: string; cidr: string; hostIp: string };
  etcd: string[];
  store: { unix: string; tcp: string; ca: string };
  controlPlane: { name: string; socket: string }[];
  nodes: { name: string; ip: string; podCidr: string; netns: string; hostVeth: string; runDir: string; stateDir: string; cgroupRoot: string; services: { name: string; socket: string }[] }[];
}

export function readClusterInfo(runDir = defaultRunDir()): ClusterInfo | undefined {
  try { return JSON.parse(fs.readFileSync(path.join(runDir, 'cluster.json'), 'utf8')) as ClusterInfo; } catch { return undefined; }
}

export const nodeName = (i: number) => `node-${i}`;
export const podCidrOf = (i: number) => `10.244.${i}.0/24`;

export async function up(opts: UpOptions = {}): Promise<number> {
  const out = opts.out ?? process.stdout;
  const runDir = path.resolve(opts.runDir ?? defaultRunDir());
  const stateDir = path.resolve(opts.stateDir ?? stateRoot());
  const nodeCount = opts.nodes ?? 2;
  const network = opts.network ?? 'bridge';
  const run = new ForegroundRun('up', runDir, stateDir, out, opts.signal);
  const say = (s: string) => run.say(s);
  if (!(await run.begin())) return 1;
  const id = runId(runDir);
  let store: StoreClient | undefined;
  try {
    return await run.run(async () => {
      // etcd: a local one that Berth manages, or an existing cluster.
      let etcdEndpoints = opts.etcdEndpoints;
      if (etcdEndpoints) say(`etcd         ${etcdEndpoints.join(',')}  (existing cluster)`);
      else etcdEndpoints = await startLocalEtcd(run, opts.etcdMembers ?? 1);
      run.checkStop();

      // The underlay and the PKI: the Store's server certificate names the underlay address, and
      // every node gets its own client certificate (CN system:node:<name>, O system:nodes).
      const underlay: Underlay = planUnderlay(id, opts.underlayCidr);
      createUnderlay(underlay);
      say(`underlay     ${underlay.bridge} ${underlay.cidr} (control plane ${underlay.hostIp}; not connected to any host interface)`);
      const names = Array.from({ length: nodeCount }, (_, i) => nodeName(i + 1));
      const pki: ClusterPki = createClusterPki(path.join(stateDir, 'pki'), { sans: [underlay.hostIp], nodes: names });
      say(`cluster CA   ${pki.ca.cert}`);
      const storeTcp = `${underlay.hostIp}:${await freePort(underlay.hostIp)}`;
      const cp = startControlPlane(run, { etcdEndpoints, pki, storeTcp, signing: true, nodeMonitorGracePeriodMs: opts.nodeMonitorGracePeriodMs });

      // The nodes: a namespace on the underlay, a cgroup root, and the three node services in it.
      const info: ClusterInfo = {
        runId: id, network, underlay: { bridge: underlay.bridge, cidr: underlay.cidr, hostIp: underlay.hostIp }, etcd: etcdEndpoints,
        store: { unix: cp.storeUnix, tcp: storeTcp, ca: pki.ca.cert }, controlPlane: cp.children.map((c) => ({ name: c.name, socket: c.socket })), nodes: [],
      };
      const nets: NodeNet[] = names.map((n, i) => createNodeNet(underlay, n, i + 1));
      const specs: NodeSpec[] = nets.map((net) => ({
        name: net.name, ip: net.ip, podCidr: podCidrOf(net.index), network, netnsPath: net.netnsPath,
        runDir: path.join(runDir, 'nodes', net.name), stateDir: path.join(stateDir, 'nodes', net.name),
        store: { tcp: storeTcp, ca: pki.ca.cert, ...pki.nodes[net.name] },
        others: nets.filter((x) => x !== net).map((x) => ({ podCidr: podCidrOf(x.index), ip: x.ip })),
        cgroupRoot: createNodeCgroupRoot(id, net.name, path.join(runDir, 'nodes', net.name, 'cgroup')),
        // The last node of a multi-node cluster is dedicated to batch work (examples/placement.yaml).
        ...(nodeCount > 1 && net.index === nodeCount ? { labels: ['dedicated=batch'], taints: ['dedicated=batch:NoSchedule'] } : {}),
      }));
      for (const [i, spec] of specs.entries()) {
        info.nodes.push({
          name: spec.name, ip: spec.ip, podCidr: spec.podCidr, netns: nets[i].netns, hostVeth: nets[i].hostVeth, runDir: spec.runDir, stateDir: spec.stateDir,
          cgroupRoot: spec.cgroupRoot!, services: NODE_SERVICES.map((s) => ({ name: s, socket: `unix://${path.join(spec.runDir, `${s}.sock`)}` })),
        });
      }
      fs.writeFileSync(path.join(runDir, 'cluster.json'), JSON.stringify(info, null, 2), { mode: 0o600 });
      const serving = (children: ServiceChild[]) => waitAllServing(run, children);

      // Each node's runtime and network first; the example image goes into every runtime before
      // the kubelet-agents start, so a node is registered with its image already there (and no
      // import races the agent's first calls to its runtime).
      const first = [...cp.children, ...specs.flatMap((spec) => startNode(run, spec, ['runtime-shim', 'cni-manager']))];
      const firstStatus = await serving(first);
      run.checkStop();
      const examplesDir = opts.examples === false ? undefined : opts.examples ?? DEFAULT_EXAMPLES;
      if (examplesDir && firstStatus.every((s) => s === 'SERVING')) {
        say('importing the example image into every node ...');
        const image = buildExampleImage(stateDir);
        await Promise.all(info.nodes.map((n) => {
          const shim = first.find((c) => c.name === `${n.name}/runtime-shim`)!;
          const unstick = async () => { shim.proc.kill('SIGKILL'); await shim.exited; await waitAllServing(run, [shim]); };
          return importImage(shim.socket, image, { unstick, say: (m) => say(`berth up: ${m}`) });
        }));
        run.checkStop();
      }
      const agents = specs.flatMap((spec) => startNode(run, spec, ['kubelet-agent']));
      const all = [...first, ...agents];
      const statuses = [...firstStatus, ...(await serving(agents))];
      run.checkStop();
      say('');
      say(`${'SERVICE'.padEnd(26)} ${'SOCKET'.padEnd(60)} HEALTH`);
      all.forEach((c, i) => say(`${c.name.padEnd(26)} ${c.socket.padEnd(60)} ${statuses[i]}`));
      say('');
      if (!statuses.every((s) => s === 'SERVING')) throw new Error(`not every service is serving; logs are in ${run.logDir}`);
      for (const n of info.nodes) say(`${n.name.padEnd(8)} ${n.ip.padEnd(14)} pods ${n.podCidr.padEnd(15)} netns ${n.netns}`);
      const adminConf = writeAdminConfig({ stateDir, runDir, tcp: { server: storeTcp, ca: pki.ca.cert, cert: pki.admin.cert, key: pki.admin.key } });
      say(`Store API    ${cp.storeUnix} and mTLS on ${storeTcp}`);
      say(`admin config ${adminConf} (context local-tls uses mTLS over the underlay)`);
      say('');
      say(`Berth is up: etcd, the control plane and ${nodeCount} node${nodeCount > 1 ? 's' : ''} (${network} network) are SERVING.`);

      if (examplesDir) {
        const dir = examplesDir;
        say(`applying ${dir} ...`);
        say((await applyManifests(adminConf, dir)).trimEnd());
        say('');
        store = new StoreClient({ target: cp.storeUnix, defaultDeadlineMs: 10_000 });
        const timeoutMs = opts.waitTimeoutMs ?? 300_000;
        const pending = await liveView({ client: store, wanted: examplePods(dir), nodes: names, timeoutMs, out, tty: !!(out as { isTTY?: boolean }).isTTY, signal: run.stop.signal });
        run.checkStop();
        say('');
        if (pending.length) {
          say(`berth up: after ${Math.round(timeoutMs / 1000)} s not every example is Running and Ready:`);
          for (const l of pending) say(`  ${l}`);
        } else {
          say('All examples are Running and Ready.');
        }
      }
      const berth = `node ${path.resolve(__dirname, 'bin', 'berth.js')}`;
      const envHint = runDir === path.resolve(defaultRunDir({})) && stateDir === path.resolve(stateRoot({})) ? '' : `BERTH_RUN_DIR=${runDir} BERTH_STATE_DIR=${stateDir} `;
      say('');
      say('In another terminal:');
      say(`  ${envHint}${berth} get nodes -o wide`);
      say(`  ${envHint}${berth} get pods -o wide`);
      say(`  ${envHint}${berth} status            # health of every service`);
      say(`  ${envHint}${berth} down              # stop this cluster (or press Ctrl-C here)`);
      say('Press Ctrl-C to stop everything.');
    });
  } finally {
    store?.raw.close();
  }
}

/** `berth status`: every service of the local cluster with its health. */
export async function status(runDir = defaultRunDir()): Promise<{ name: string; socket: string; health: string }[]> {
  const info = readClusterInfo(runDir);
  const svc = info
    ? [...info.controlPlane, ...info.nodes.flatMap((n) => n.services.map((s) => ({ name: `${n.name}/${s.name}`, socket: s.socket })))]
    : CONTROL_PLANE.map((name) => ({ name, socket: `unix://${path.join(runDir, `${name}.sock`)}` }));
  return Promise.all(svc.map(async (s) => ({ ...s, health: await checkHealth(s.socket) })));
}

