// berth-kubelet-agent: the node agent. This process loads and checks its configuration, reads
// the node's facts from the machine, checks the services it depends on (and says which one is
// missing), connects to runtime-shim, cni-manager and the Store, runs the pods bound to this node
// (NodeAgent: registration, lease, informer, pod workers, PLEG, probes, status, events, GC) and
// serves the Kubelet gRPC API. Stopping the agent leaves the pods running: a restarted agent
// adopts them.
import * as path from 'node:path';
import { kubelet } from '@berth/api';
import { bootstrapNodeCertificate, CertificateRequestRefusedError, storeClientFromConfig } from '@berth/apimachinery';
import { ConfigError, runDir, withUnimplemented, type Logger, type ServiceSpec } from '@berth/common';
import { NodeAgent } from './agent';
import { connectServices, type ServiceClients } from './clients';
import { kubeletService } from './kubelet-api';
import { agentOptions, agentSchema, checkAgentConfig, keyValues, parseTaints, type AgentConfig } from './agent-config';
import { checkDependencies, describeMissing, type Dependency } from './dependencies';
import { buildNode } from './node';

export const spec: ServiceSpec<typeof agentSchema> = {
  name: 'kubelet-agent',
  options: agentOptions,
  schema: agentSchema,
  setup: ({ config, logger, metrics }) => {
    const cfg = config as unknown as AgentConfig & { stateDir: string };
    try {
      checkAgentConfig(cfg);
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
    let node;
    try {
      node = buildNode({
        nodeName: cfg.nodeName,
        rootDir: cfg.stateDir,
        maxPods: cfg.maxPods,
        systemReserved: keyValues(cfg.systemReserved, 'system-reserved'),
        kubeReserved: keyValues(cfg.kubeReserved, 'kube-reserved'),
        evictionHard: cfg.evictionHard ? keyValues(cfg.evictionHard, 'eviction-hard', '<') : undefined,
        nodeIP: cfg.nodeIp,
        labels: keyValues(cfg.nodeLabels, 'node-labels'),
        taints: parseTaints(cfg.registerWithTaints),
        podCidr: cfg.podCidr,
        cgroupRoot: cfg.cgroupRoot,
      });
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
    logger.info({ node: node.metadata!.name, capacity: node.status!.capacity, allocatable: node.status!.allocatable, addresses: node.status!.addresses }, 'node facts');
    const run = runDir();
    const deps: Dependency[] = [
      { name: 'runtime-shim', endpoint: cfg.runtimeEndpoint ?? `unix://${path.join(run, 'runtime-shim.sock')}` },
      { name: 'cni-manager', endpoint: cfg.cniEndpoint ?? `unix://${path.join(run, 'cni-manager.sock')}` },
    ];
    if (cfg.imageEndpoint && cfg.imageEndpoint !== deps[0].endpoint) deps.push({ name: 'image service', endpoint: cfg.imageEndpoint });
    if (cfg.store) deps.push({ name: 'store', endpoint: cfg.store });
    let agent: NodeAgent | undefined;
    let clients: ServiceClients | undefined;
    const healthz = async (): Promise<kubelet.HealthzResponse> => {
      const report = await checkDependencies(deps.filter((d) => d.endpoint.startsWith('unix://')));
      const checks: Record<string, string> = { syncloop: agent ? agent.syncHealth() : 'not running: starting' };
      for (const d of report.ok) checks[d.name] = 'ok';
      for (const m of report.missing) checks[m.name] = m.reason;
      const failing = Object.entries(checks).filter(([, v]) => v !== 'ok').map(([k]) => k).sort();
      return { status: failing.length ? `failing: ${failing.join(', ')}` : 'ok', checks };
    };
    // With a bootstrap token the node may have no client certificate yet: it gets one first (in
    // started(), as the kubelet's TLS bootstrap does) and connects to the Store with it after.
    const boot = cfg.bootstrapToken ? bootstrapPlan(cfg) : undefined;
    let store = boot ? undefined : storeClientFromConfig(cfg);
    const stopping = new AbortController();
    const log = (level: 'info' | 'warn', obj: object, msg: string) => logger[level](obj, msg);
    const impl = kubeletService({ agent: () => agent, runtimeRaw: () => clients?.runtimeRaw, healthz, nodeName: node.metadata!.name, rootDir: cfg.stateDir });
    return {
      services: [{ definition: kubelet.KubeletService, implementation: withUnimplemented(kubelet.KubeletService, 'issue #9', impl) }],
      started: async () => {
        // TCP endpoints need the node's client certificate, which arrives with the Store wiring;
        // unix sockets are checked now.
        const local = deps.filter((d) => d.endpoint.startsWith('unix://'));
        const report = await checkDependencies(local);
        if (report.missing.length) logger.warn({ missing: report.missing.map((m) => m.name) }, `dependencies missing: ${describeMissing(report)}`);
        else logger.info({ ok: report.ok.map((d) => d.name) }, 'dependencies reachable');
        clients = connectServices({ runtimeEndpoint: deps[0].endpoint, imageEndpoint: cfg.imageEndpoint, cniEndpoint: deps[1].endpoint });
        if (boot) {
          const creds = await bootstrapUntilIssued(boot, node.metadata!.name, stopping.signal, logger);
          if (!creds) return;
          store = storeClientFromConfig({ ...cfg, storeCert: creds.certFile, storeKey: creds.keyFile });
        }
        agent = new NodeAgent({
          node,
          stateDir: cfg.stateDir,
          clients,
          store,
          cgroupRoot: cfg.cgroupRoot,
          // On the machine's own cgroupfs the node's name keeps two agents apart; a per-node
          // --cgroup-root (berth up) is apart already.
          cgroupParent: (cfg.podCgroupParent ?? (path.resolve(cfg.cgroupRoot) === '/sys/fs/cgroup' ? `berth/${node.metadata!.name}` : '')).split('/').filter(Boolean),
          staticPodPath: cfg.staticPodPath,
          manifestUrl: cfg.manifestUrl,
          syncFrequencyMs: cfg.syncFrequencyMs,
          evictionHard: cfg.evictionHard ? keyValues(cfg.evictionHard, 'eviction-hard', '<') : undefined,
          imageGc: { highThresholdPercent: cfg.imageGcHighThresholdPercent, lowThresholdPercent: cfg.imageGcLowThresholdPercent },
          dns: { clusterDNS: cfg.clusterDns, clusterDomain: cfg.clusterDomain },
          metrics,
          log,
        });
        // The Store may be away for a while: the agent keeps retrying in the background.
        agent.start().then(() => logger.info({ node: node.metadata!.name }, 'pod sync loop running'), (e) => logger.error({ err: e }, 'pod sync loop failed to start'));
      },
      close: async () => {
        stopping.abort();
        await agent?.stop();
        clients?.close();
        store?.close();
      },
    };
  },
};

interface BootstrapPlan { server: string; caFile: string; token: string; certFile: string; keyFile: string }

/** What --bootstrap-token needs: a TLS Store address and its CA; where the node's credentials go. */
export function bootstrapPlan(cfg: AgentConfig & { stateDir: string }): BootstrapPlan {
  if (!cfg.store || cfg.store.startsWith('unix://')) throw new ConfigError('bootstrap-token: needs --store host:port (the Store\'s TLS address); a unix socket has no TLS bootstrap');
  if (!cfg.storeCa) throw new ConfigError('bootstrap-token: needs --store-ca (the cluster CA to trust before the token is sent)');
  const pki = path.join(cfg.stateDir, 'pki');
  return {
    server: cfg.store, caFile: cfg.storeCa, token: cfg.bootstrapToken!,
    certFile: cfg.storeCert ?? path.join(pki, 'kubelet-client.crt'), keyFile: cfg.storeKey ?? path.join(pki, 'kubelet-client.key'),
  };
}

/**
 * The node's client certificate: the one on disk while it is valid, else a new one asked for with
 * the bootstrap token. A Store that is away or a request that waits for an administrator is
 * retried with back-off until it is issued or the agent stops (undefined then).
 */
async function bootstrapUntilIssued(b: BootstrapPlan, node: string, signal: AbortSignal, logger: Logger): Promise<{ certFile: string; keyFile: string } | undefined> {
  for (let delay = 1000; !signal.aborted; delay = Math.min(delay * 2, 30_000)) {
    try {
      const got = await bootstrapNodeCertificate({ ...b, node, signal, onRequested: (name) => logger.info({ csr: name }, 'certificate signing request sent; waiting for it to be approved and signed') });
      logger.info({ certFile: b.certFile, node }, got === 'existing' ? 'node client certificate on disk is valid' : 'node client certificate issued through the bootstrap token');
      return { certFile: b.certFile, keyFile: b.keyFile };
    } catch (e) {
      if (signal.aborted) break;
      logger[e instanceof CertificateRequestRefusedError ? 'error' : 'warn']({ err: e, retryInMs: delay }, 'node TLS bootstrap failed');
      await new Promise<void>((r) => { const t = setTimeout(r, delay); signal.addEventListener('abort', () => { clearTimeout(t); r(); }, { once: true }); });
    }
  }
  return undefined;
}
