// berth-cni-manager: NetworkService on a unix socket (0600). A thin façade: it checks and maps
// requests and hands them to PodNetwork; errors become gRPC status in `unary` and nowhere else.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cni } from '@berth/api';
import { StoreClient, storeClientFromConfig, storeClientOptions, storeClientSchema, type StoreClientConfig } from '@berth/apimachinery';
import { BerthError, FailedPreconditionError, InvalidArgumentError, NotFoundError, unary, z, type Logger, type OptionSpec, type ServiceSpec } from '@berth/common';
import { PodNetwork, type FaultSpec, type Mode, type NodeRoute } from './network';
import { NodeRouteWatcher } from './node-routes';

export const DEFAULT_POD_CIDR = '10.244.0.0/24';

const options = {
  mode: { flag: 'mode', type: 'string', env: 'BERTH_CNI_MODE', description: 'bridge (default) or routed' },
  podCidr: { flag: 'pod-cidr', type: 'string', env: 'BERTH_POD_CIDR', description: `this node's pod CIDR (default: its Node's spec.podCIDR with --store, else ${DEFAULT_POD_CIDR})` },
  podCidrV6: { flag: 'pod-cidr-v6', type: 'string', env: 'BERTH_POD_CIDR_V6', description: "optional IPv6 pod CIDR for dual-stack pods (default with --store: the IPv6 entry of its Node's spec.podCIDRs)" },
  bridgeName: { flag: 'bridge-name', type: 'string', description: 'bridge of bridge mode (default berth0)' },
  mtu: { flag: 'mtu', type: 'number', description: 'MTU of pod interfaces (default 1500)' },
  hostNetns: { flag: 'host-netns', type: 'string', env: 'BERTH_HOST_NETNS', description: "the node's network namespace file (default: this process's)" },
  nodeRoutes: { flag: 'node-routes', type: 'list', description: 'other nodes, as podCIDR=nodeAddress,... (routes to their pods)' },
  masquerade: { flag: 'masquerade', type: 'boolean', description: 'masquerade pod traffic leaving the pod CIDR (default off)' },
  dnsNameservers: { flag: 'dns-nameservers', type: 'list', description: 'nameservers suggested to pods' },
  dnsSearch: { flag: 'dns-search', type: 'list', description: 'DNS search domains suggested to pods' },
  // --store and its TLS files: Node objects give this node's pod CIDR and the routes to the others.
  ...storeClientOptions,
  storeEndpoint: { flag: 'store-endpoint', type: 'string', env: 'BERTH_STORE_ENDPOINT', description: 'deprecated: use --store' },
  nodeName: { flag: 'node-name', type: 'string', env: 'BERTH_NODE_NAME', description: 'this node\'s name in the cluster (default: the hostname)' },
} satisfies Record<string, OptionSpec>;

const schema = {
  mode: z.enum(['bridge', 'routed']).default('bridge'),
  podCidr: z.string().regex(/^\d+\.\d+\.\d+\.\d+\/\d+$/, 'expected an IPv4 CIDR like 10.244.0.0/24').optional(),
  podCidrV6: z.string().optional(),
  bridgeName: z.string().default('berth0'),
  mtu: z.number().int().min(576).max(65535).default(1500),
  hostNetns: z.string().refine((p) => path.isAbsolute(p), { message: 'must be an absolute path' }).optional(),
  nodeRoutes: z.array(z.string().regex(/^[0-9a-fA-F.:]+\/\d+=[0-9a-fA-F.:]+$/, 'expected podCIDR=nodeAddress, e.g. 10.244.1.0/24=192.168.1.2')).default([]),
  masquerade: z.boolean().default(false),
  dnsNameservers: z.array(z.string()).default([]),
  dnsSearch: z.array(z.string()).default([]),
  ...storeClientSchema,
  storeEndpoint: storeClientSchema.store,
  nodeName: z.string().min(1).default(os.hostname()),
};

const DIRECTIONS: Record<number, FaultSpec['direction']> = {
  [cni.FaultDirection.FAULT_DIRECTION_UNSPECIFIED]: 'egress',
  [cni.FaultDirection.FAULT_DIRECTION_EGRESS]: 'egress',
  [cni.FaultDirection.FAULT_DIRECTION_INGRESS]: 'ingress',
  [cni.FaultDirection.FAULT_DIRECTION_BOTH]: 'both',
};
const DIRECTION_ENUM = { egress: cni.FaultDirection.FAULT_DIRECTION_EGRESS, ingress: cni.FaultDirection.FAULT_DIRECTION_INGRESS };

/** The NetworkService implementation over a started PodNetwork. */
export function networkService(net: PodNetwork, nodeRoutes?: () => NodeRouteWatcher | undefined): cni.NetworkServiceServer {
  const attachmentOf = (r: ReturnType<PodNetwork['list']>[number]): cni.Attachment => cni.Attachment.fromPartial({
    sandboxId: r.sandboxId, podUid: r.podUid, podNamespace: r.podNamespace, podName: r.podName, netnsPath: r.netnsPath,
    interfaceName: r.ifName, ips: [`${r.ip}/${r.prefix}`], hostVeth: r.hostVeth, createdAt: r.createdAt,
  });
  return {
    setUpPod: unary(async (req: cni.SetUpPodRequest) => {
      const res = await net.setUp({
        podUid: req.podUid, podNamespace: req.podNamespace, podName: req.podName, sandboxId: req.sandboxId, netnsPath: req.netnsPath,
        interfaceName: req.interfaceName, annotations: req.annotations ?? {},
        portMappings: req.portMappings.map((m) => ({ protocol: m.protocol as 'tcp', containerPort: m.containerPort, hostPort: m.hostPort, hostIp: m.hostIp })),
        ...(req.bandwidth ? { bandwidth: { ingressRate: Number(req.bandwidth.ingressRate), ingressBurst: Number(req.bandwidth.ingressBurst), egressRate: Number(req.bandwidth.egressRate), egressBurst: Number(req.bandwidth.egressBurst) } } : {}),
      });
      return cni.SetUpPodResponse.fromPartial(res);
    }),
    tearDownPod: unary(async (req: cni.TearDownPodRequest) => {
      await net.tearDown({ sandboxId: req.sandboxId, netnsPath: req.netnsPath });
      return cni.TearDownPodResponse.fromPartial({});
    }),
    checkPod: unary(async (req: cni.CheckPodRequest) => {
      const problems = await net.check(req.sandboxId);
      return cni.CheckPodResponse.fromPartial({ ok: problems.length === 0, problems });
    }),
    podNetworkStatus: unary(async (req: cni.PodNetworkStatusRequest) => {
      const r = net.record(req.sandboxId);
      if (!r) throw new NotFoundError(`sandbox ${req.sandboxId} is not attached`);
      const res = net.resultOf(r);
      return cni.PodNetworkStatusResponse.fromPartial({
        ips: res.ips, interfaces: res.interfaces, gateway: res.gateway,
        faults: r.faults.map((f) => ({ ...f, direction: DIRECTION_ENUM[f.direction] })),
      });
    }),
    listAttachments: unary(async () => cni.ListAttachmentsResponse.fromPartial({ attachments: net.list().map(attachmentOf) })),
    garbageCollect: unary(async (req: cni.GarbageCollectRequest) => {
      const r = await net.gc(req.validSandboxIds);
      return cni.GarbageCollectResponse.fromPartial({ removedSandboxIds: r.removed, releasedIps: r.released });
    }),
    setPodFaults: unary(async (req: cni.SetPodFaultsRequest) => {
      const direction = DIRECTIONS[req.direction];
      if (!direction) throw new InvalidArgumentError('direction', `unknown direction ${req.direction}`);
      const r = await net.setFaults(req.sandboxId, {
        direction, delayMs: req.delayMs, jitterMs: req.jitterMs, lossPercent: req.lossPercent, duplicatePercent: req.duplicatePercent,
        reorderPercent: req.reorderPercent, corruptPercent: req.corruptPercent, rate: req.rate,
      });
      return cni.SetPodFaultsResponse.fromPartial({ applied: r.applied.map((f) => ({ ...f, direction: DIRECTION_ENUM[f.direction] })), unsupported: r.unsupported });
    }),
    clearPodFaults: unary(async (req: cni.ClearPodFaultsRequest) => {
      await net.clearFaults(req.sandboxId);
      return cni.ClearPodFaultsResponse.fromPartial({});
    }),
    status: unary(async () => {
      const ready = net.isReady;
      const plugins = fs.existsSync('/usr/lib/cni') ? fs.readdirSync('/usr/lib/cni').sort() : [];
      return cni.StatusResponse.fromPartial({
        ready, mode: net.mode, podCidr: net.ipam.cidr,
        conditions: [
          { type: 'NetworkReady', status: ready ? 'True' : 'False', reason: ready ? 'Ready' : 'NotReady', message: ready ? `${net.mode} network on ${net.ipam.cidr}` : net.notReadyReason },
          { type: 'IPAMReady', status: 'True', reason: 'Ready', message: `${net.ipam.size} addresses allocated` },
          ...nodeRouteCondition(nodeRoutes?.()),
        ],
        capabilities: { netem: net.caps.netem, tbf: net.caps.tbf, iptablesStatistic: net.caps.iptablesStatistic, ingressShaping: net.caps.ingressShaping, portMapping: net.caps.iptablesStatistic, cniPlugins: plugins },
      });
    }),
  };
}

/** With a Store: whether the routes to other nodes follow their Node objects, and why not. */
function nodeRouteCondition(w: NodeRouteWatcher | undefined): cni.NetworkCondition[] {
  if (!w) return [];
  const h = w.health;
  return [cni.NetworkCondition.fromPartial({ type: 'NodeRoutesSynced', status: h.synced ? 'True' : 'False', reason: h.reason, message: h.message })];
}

/**
 * This node's pod CIDRs from its Node object (spec.podCIDRs, else spec.podCIDR), as kubelet and
 * CNI plugins take them: the IPv4 one, and the IPv6 one of a dual-stack node. Waits (not
 * serving) until the node is registered with one, up to `timeoutMs`. A Store that refuses us
 * (authentication, RBAC) is an error at once, not something to wait out.
 */
export async function podCidrsOfNode(client: StoreClient, nodeName: string, logger?: Logger, timeoutMs = 120_000): Promise<{ v4?: string; v6?: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let cidrs: string[] = [];
    try {
      const node = (await client.get('nodes', '', nodeName)).node;
      cidrs = node?.spec?.podCIDRs?.length ? node.spec.podCIDRs : node?.spec?.podCIDR ? [node.spec.podCIDR] : [];
    } catch (err) {
      // Not registered yet, or the Store not up yet: wait. Anything else (auth, RBAC) is final.
      if (!(err instanceof BerthError) || (err.kind !== 'NotFound' && err.kind !== 'Unavailable' && err.kind !== 'DeadlineExceeded')) throw err;
    }
    if (cidrs.length) {
      const v4 = cidrs.find((c) => !c.includes(':'));
      const v6 = cidrs.find((c) => c.includes(':'));
      return { ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}) };
    }
    if (Date.now() > deadline) throw new FailedPreconditionError(`node ${nodeName} has no spec.podCIDR in the Store; give --pod-cidr or register the node with one`);
    logger?.info({ nodeName }, 'waiting for this node\'s podCIDR');
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * The Store client of --store (with --store-ca/--store-cert/--store-key for mutual TLS), or of
 * the deprecated --store-endpoint, which says so.
 */
export function storeOf(config: StoreClientConfig & { storeEndpoint?: string | undefined }, logger?: Logger): StoreClient | undefined {
  let c = config;
  if (config.storeEndpoint) {
    if (config.store && config.store !== config.storeEndpoint) throw new InvalidArgumentError('store-endpoint', `conflicts with --store ${config.store} (--store-endpoint is a deprecated alias of --store)`);
    const warning = '--store-endpoint (BERTH_STORE_ENDPOINT) is deprecated; use --store (BERTH_STORE)';
    if (logger) logger.warn(warning);
    else process.emitWarning(warning, 'DeprecationWarning');
    c = { ...config, store: config.storeEndpoint };
  }
  try {
    return storeClientFromConfig(c);
  } catch (err) {
    throw new InvalidArgumentError('store-cert', (err as Error).message);
  }
}

export const spec: ServiceSpec<typeof schema> = {
  name: 'cni-manager',
  options,
  schema,
  setup: async ({ config, logger }) => {
    const nodeRoutes: NodeRoute[] = config.nodeRoutes.map((s) => {
      const [podCidr, via] = s.split('=') as [string, string];
      return { podCidr, via };
    });
    const storeClient = storeOf(config, logger);
    // Without --pod-cidr, a node in a cluster takes its ranges from its Node object.
    const fromNode = !config.podCidr && storeClient ? await podCidrsOfNode(storeClient, config.nodeName, logger) : {};
    if (!config.podCidr && storeClient && !fromNode.v4) throw new FailedPreconditionError(`node ${config.nodeName} has only an IPv6 pod CIDR (${fromNode.v6}); IPv6-only pod networks are not supported yet: give --pod-cidr too`);
    const podCidrV6 = config.podCidrV6 ?? fromNode.v6;
    const net = new PodNetwork({
      ...(podCidrV6 ? { podCidrV6 } : {}),
      mode: config.mode as Mode, podCidr: config.podCidr ?? fromNode.v4 ?? DEFAULT_POD_CIDR, stateDir: config.stateDir, bridgeName: config.bridgeName, mtu: config.mtu,
      hostNetns: config.hostNetns ?? null, nodeRoutes, masquerade: config.masquerade,
      dns: { nameservers: config.dnsNameservers, search: config.dnsSearch }, logger,
    });
    let watcher: NodeRouteWatcher | undefined;
    // The kernel and the state dir are touched only once serving (and config fully valid);
    // until the bridge and routes are in place, health is NOT_SERVING and Status says not ready.
    return {
      services: [{ definition: cni.NetworkServiceService, implementation: networkService(net, () => watcher) }],
      servingOnStart: false,
      started: async (server) => {
        await net.start();
        if (storeClient) {
          watcher = new NodeRouteWatcher({ client: storeClient, nodeName: config.nodeName, net, logger });
          watcher.start();
        }
        server.setServing(true);
      },
      close: async () => {
        watcher?.stop();
        storeClient?.close();
        await net.close();
      },
    };
  },
};
