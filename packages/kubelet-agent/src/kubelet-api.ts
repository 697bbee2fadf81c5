// The Kubelet gRPC API the agent serves: ListPods from the agent's own view, and ContainerLogs,
// Exec and StatsSummary proxied to the runtime for the container a (namespace, pod, container)
// names. A thin façade: requests are checked here with the field named, the work is the
// runtime's; Healthz reports each dependency and the sync loop.
import * as fs from 'node:fs';
import type { ServerDuplexStream, ServerWritableStream } from '@grpc/grpc-js';
import { kubelet, runtime, type core } from '@berth/api';
import { InvalidArgumentError, NotFoundError, serverStream, toServiceError, UnavailableError, unary } from '@berth/common';
import type { NodeAgent } from './agent';
import { CONTAINER_NAME_LABEL, POD_UID_LABEL } from './runtime-view';
import { rfc3339 } from './status/compute';

export interface KubeletApiDeps {
  agent: () => NodeAgent | undefined;
  runtimeRaw: () => runtime.RuntimeServiceClient | undefined;
  healthz: () => Promise<kubelet.HealthzResponse>;
  nodeName: string;
  rootDir: string;
}

function need<T>(v: T | undefined, what: string): T {
  if (!v) throw new UnavailableError(`${what} is not running yet`);
  return v;
}

/** The container a request names: the pod must run here; the container defaults to the only one. */
async function resolveContainer(d: KubeletApiDeps, namespace: string, podName: string, container: string, previous = false): Promise<{ pod: core.Pod; id: string }> {
  if (!podName) throw new InvalidArgumentError('pod', 'Required value');
  const ns = namespace || 'default';
  const pod = need(d.agent(), 'the pod sync loop').findPod(ns, podName);
  if (!pod) throw new NotFoundError(`pod ${ns}/${podName} does not run on node ${d.nodeName}`);
  const names = [...pod.spec!.initContainers, ...pod.spec!.containers].map((c) => c.name);
  let name = container;
  if (!name) {
    if (pod.spec!.containers.length !== 1) throw new InvalidArgumentError('container', `a container name must be specified for pod ${podName}, choose one of: [${pod.spec!.containers.map((c) => c.name).join(' ')}]`);
    name = pod.spec!.containers[0].name;
  }
  if (!names.includes(name)) throw new InvalidArgumentError('container', `container ${name} is not valid for pod ${podName}`);
  const rt = need(d.runtimeRaw(), 'the runtime client');
  const list = await new Promise<runtime.ListContainersResponse>((res, rej) => rt.listContainers(runtime.ListContainersRequest.fromPartial({ filter: { labelSelector: { [POD_UID_LABEL]: pod.metadata!.uid, [CONTAINER_NAME_LABEL]: name } } }), (e, r) => (e ? rej(e) : res(r))));
  const sorted = list.containers.sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0));
  const c = previous ? sorted[1] : sorted[0];
  if (!c) throw new NotFoundError(previous ? `previous terminated container "${name}" in pod "${podName}" not found` : `container "${name}" in pod "${podName}" is waiting to start`);
  return { pod, id: c.id };
}

function rfc3339Nano(us: number): string {
  const d = new Date(Math.floor(us / 1000));
  return d.toISOString().replace(/\.\d{3}Z$/, `.${String(us % 1_000_000).padStart(6, '0')}000Z`);
}

function containerLogs(d: KubeletApiDeps) {
  return serverStream(async function* (req: kubelet.ContainerLogsRequest, _call: ServerWritableStream<kubelet.ContainerLogsRequest, kubelet.LogChunk>, signal: AbortSignal) {
    if (req.tailLines !== undefined && req.tailLines < 0) throw new InvalidArgumentError('tailLines', 'must be greater than or equal to 0');
    if (req.limitBytes !== undefined && req.limitBytes <= 0) throw new InvalidArgumentError('limitBytes', 'must be greater than 0');
    if (req.sinceSeconds !== undefined && req.sinceSeconds <= 0) throw new InvalidArgumentError('sinceSeconds', 'must be greater than 0');
    if (req.sinceSeconds !== undefined && req.sinceTime) throw new InvalidArgumentError('sinceTime', 'at most one of sinceTime or sinceSeconds may be specified');
    let sinceUs = 0;
    if (req.sinceTime) {
      const t = Date.parse(req.sinceTime);
      if (!Number.isFinite(t)) throw new InvalidArgumentError('sinceTime', `${JSON.stringify(req.sinceTime)} is not an RFC 3339 time`);
      sinceUs = t * 1000;
    } else if (req.sinceSeconds !== undefined) sinceUs = (Date.now() - Number(req.sinceSeconds) * 1000) * 1000;
    const { id } = await resolveContainer(d, req.namespace, req.pod, req.container, req.previous);
    const rt = need(d.runtimeRaw(), 'the runtime client');
    // previous is resolved to the older instance's id here; the runtime reads that one's log.
    const stream = rt.containerLogs(runtime.ContainerLogsRequest.fromPartial({ containerId: id, follow: req.follow, tailLines: req.tailLines, sinceTimeUs: sinceUs, timestamps: req.timestamps, limitBytes: req.limitBytes }));
    signal.addEventListener('abort', () => stream.cancel(), { once: true });
    try {
      for await (const f of stream as AsyncIterable<runtime.LogFrame>) {
        const prefix = req.timestamps ? `${rfc3339Nano(Number(f.timestampUs))} ` : '';
        yield kubelet.LogChunk.fromPartial({ data: Buffer.concat([Buffer.from(prefix), Buffer.from(f.log), Buffer.from(f.partial ? '' : '\n')]), stream: f.stream });
      }
    } catch (e) {
      if ((e as { code?: number }).code !== 1) throw e; // cancelled by our caller
    }
  });
}

function exec(d: KubeletApiDeps) {
  return (call: ServerDuplexStream<kubelet.ExecRequest, kubelet.ExecResponse>): void => {
    let upstream: ReturnType<runtime.RuntimeServiceClient['exec']> | undefined;
    const pending: runtime.ExecRequest[] = [];
    const fail = (e: unknown) => {
      upstream?.cancel();
      call.emit('error', toServiceError(e));
    };
    let first = true;
    call.on('data', (f: kubelet.ExecRequest) => {
      if (first) {
        first = false;
        const s = f.start;
        if (!s) return fail(new InvalidArgumentError('start', 'the first frame must be start'));
        if (!s.cmd.length) return fail(new InvalidArgumentError('start.cmd', 'Required value'));
        resolveContainer(d, s.namespace, s.pod, s.container).then(({ id }) => {
          const rt = need(d.runtimeRaw(), 'the runtime client');
          upstream = rt.exec();
          upstream.on('data', (r: runtime.ExecResponse) => call.write(kubelet.ExecResponse.fromPartial(r as never)));
          upstream.on('end', () => call.end());
          upstream.on('error', (e: Error & { code?: number }) => { if (e.code !== 1) fail(e); });
          upstream.write(runtime.ExecRequest.fromPartial({ start: { containerId: id, cmd: s.cmd, tty: s.tty, stdin: s.stdin, env: s.env, workingDir: s.workingDir, user: s.user, terminalSize: s.terminalSize } }));
          for (const p of pending.splice(0)) upstream.write(p);
        }, fail);
        return;
      }
      const r = runtime.ExecRequest.fromPartial(f as never);
      if (upstream) upstream.write(r);
      else pending.push(r);
    });
    call.on('end', () => upstream?.end());
    call.on('cancelled', () => upstream?.cancel());
  };
}

function readProcStat(): { cpuNs: number; memTotal: number; memAvail: number } {
  const stat = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const ticks = stat[0] + stat[1] + stat[2] + stat[5] + stat[6] + stat[7]; // user nice system irq softirq steal
  const mem = Object.fromEntries(fs.readFileSync('/proc/meminfo', 'utf8').split('\n').filter(Boolean).map((l) => { const [k, v] = l.split(':'); return [k, parseInt(v, 10) * 1024]; }));
  return { cpuNs: Math.round((ticks * 1e9) / 100), memTotal: mem.MemTotal, memAvail: mem.MemAvailable };
}

function statsSummary(d: KubeletApiDeps) {
  return unary(async (req: kubelet.StatsSummaryRequest): Promise<kubelet.Summary> => {
    const agent = need(d.agent(), 'the pod sync loop');
    const rt = need(d.runtimeRaw(), 'the runtime client');
    const now = rfc3339(Date.now());
    const m = readProcStat();
    const st = fs.statfsSync(d.rootDir);
    const node = kubelet.NodeStats.fromPartial({
      nodeName: d.nodeName,
      cpu: { time: now, usageCoreNanoSeconds: m.cpuNs },
      memory: { time: now, availableBytes: m.memAvail, usageBytes: m.memTotal - m.memAvail, workingSetBytes: m.memTotal - m.memAvail },
      fs: req.onlyCpuAndMemory ? undefined : { time: now, availableBytes: st.bavail * st.bsize, capacityBytes: st.blocks * st.bsize, usedBytes: (st.blocks - st.bfree) * st.bsize, inodesFree: st.ffree, inodes: st.files, inodesUsed: st.files - st.ffree },
    });
    const stats = await new Promise<runtime.ListContainerStatsResponse>((res, rej) => rt.listContainerStats(runtime.ListContainerStatsRequest.fromPartial({}), (e, r) => (e ? rej(e) : res(r))));
    const pods: kubelet.PodStats[] = [];
    for (const p of agent.listPods()) {
      const uid = p.metadata!.uid;
      const mine = stats.stats.filter((s) => s.attributes?.labels[POD_UID_LABEL] === uid);
      const containers = mine.map((s) => kubelet.ContainerStats.fromPartial({
        name: s.attributes?.labels[CONTAINER_NAME_LABEL] ?? s.attributes?.metadata?.name ?? '',
        cpu: s.cpu && { time: rfc3339(Number(s.cpu.timestampUs) / 1000), usageCoreNanoSeconds: s.cpu.usageCoreNanoSeconds, usageNanoCores: s.cpu.usageNanoCores },
        memory: s.memory && { time: rfc3339(Number(s.memory.timestampUs) / 1000), workingSetBytes: s.memory.workingSetBytes, usageBytes: s.memory.usageBytes, rssBytes: s.memory.rssBytes, availableBytes: s.memory.availableBytes, pageFaults: s.memory.pageFaults, majorPageFaults: s.memory.majorPageFaults },
        rootfs: req.onlyCpuAndMemory || !s.writableLayer ? undefined : { time: now, usedBytes: s.writableLayer.usedBytes, inodesUsed: s.writableLayer.inodesUsed },
      }));
      const sum = (f: (c: kubelet.ContainerStats) => number | undefined) => containers.reduce((a, c) => a + (f(c) ?? 0), 0);
      pods.push(kubelet.PodStats.fromPartial({
        podRef: { name: p.metadata!.name, namespace: p.metadata!.namespace || 'default', uid },
        startTime: p.status?.startTime ?? '',
        containers,
        cpu: { time: now, usageCoreNanoSeconds: sum((c) => c.cpu?.usageCoreNanoSeconds), usageNanoCores: sum((c) => c.cpu?.usageNanoCores) },
        memory: { time: now, workingSetBytes: sum((c) => c.memory?.workingSetBytes), usageBytes: sum((c) => c.memory?.usageBytes) },
      }));
    }
    return kubelet.Summary.fromPartial({ node, pods });
  });
}

/** The Kubelet service implementation. */
export function kubeletService(d: KubeletApiDeps) {
  return {
    listPods: unary(async (): Promise<kubelet.ListPodsResponse> => ({ pods: need(d.agent(), 'the pod sync loop').listPods() })),
    containerLogs: containerLogs(d),
    exec: exec(d),
    statsSummary: statsSummary(d),
    healthz: unary(() => d.healthz()),
  };
}
