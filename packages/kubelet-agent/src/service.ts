// berth-kubelet-agent: the node agent. This process loads and checks its configuration, reads
// the node's facts from the machine, checks the services it depends on (and says which one is
// missing), and serves the Kubelet gRPC API. The RPCs that are not built yet answer UNIMPLEMENTED
// naming issue #9; the pod machinery (sync loop, workers, probes, status, events, GC, eviction)
// lives in this package and is wired to the Store/runtime/network clients as those land.
import * as path from 'node:path';
import { kubelet } from '@berth/api';
import { ConfigError, runDir, unary, withUnimplemented, type ServiceSpec } from '@berth/common';
import { agentOptions, agentSchema, checkAgentConfig, keyValues, parseTaints, type AgentConfig } from './agent-config';
import { checkDependencies, describeMissing, type Dependency } from './dependencies';
import { buildNode } from './node';
import { StartupMetrics } from './startup-trace';

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
        cgroupRoot: cfg.cgroupRoot,
      });
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
    new StartupMetrics(metrics);
    logger.info({ node: node.metadata!.name, capacity: node.status!.capacity, allocatable: node.status!.allocatable, addresses: node.status!.addresses }, 'node facts');
    const run = runDir();
    const deps: Dependency[] = [
      { name: 'runtime-shim', endpoint: cfg.runtimeEndpoint ?? `unix://${path.join(run, 'runtime-shim.sock')}` },
      { name: 'cni-manager', endpoint: cfg.cniEndpoint ?? `unix://${path.join(run, 'cni-manager.sock')}` },
    ];
    if (cfg.imageEndpoint && cfg.imageEndpoint !== deps[0].endpoint) deps.push({ name: 'image service', endpoint: cfg.imageEndpoint });
    if (cfg.store) deps.push({ name: 'store', endpoint: cfg.store });
    // Healthz is real: each dependency's health as seen now, and the pod sync loop, which is
    // honestly reported as not running until it is wired (issue #9).
    const healthz = async (): Promise<kubelet.HealthzResponse> => {
      const report = await checkDependencies(deps.filter((d) => d.endpoint.startsWith('unix://')));
      const checks: Record<string, string> = { syncloop: 'not running: the pod sync is not wired yet (issue #9)' };
      for (const d of report.ok) checks[d.name] = 'ok';
      for (const m of report.missing) checks[m.name] = m.reason;
      const failing = Object.entries(checks).filter(([, v]) => v !== 'ok').map(([k]) => k).sort();
      return { status: failing.length ? `failing: ${failing.join(', ')}` : 'ok', checks };
    };
    return {
      services: [{ definition: kubelet.KubeletService, implementation: withUnimplemented(kubelet.KubeletService, 'issue #9', { healthz: unary(healthz) }) }],
      started: async () => {
        // TCP endpoints need the node's client certificate, which arrives with the Store wiring;
        // unix sockets are checked now.
        const local = deps.filter((d) => d.endpoint.startsWith('unix://'));
        const report = await checkDependencies(local);
        if (report.missing.length) logger.warn({ missing: report.missing.map((m) => m.name) }, `dependencies missing: ${describeMissing(report)}`);
        else logger.info({ ok: report.ok.map((d) => d.name) }, 'dependencies reachable');
      },
    };
  },
};
