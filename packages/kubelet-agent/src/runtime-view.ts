// How the agent reads the runtime: the generated RuntimeService client behind the PodRuntime
// seam, container statuses turned into ObservedContainer (µs → ms, state, reason), and the
// runtime's event stream turned into the sync loop's RuntimeEvents (the PLEG equivalent), with
// the pod found through the labels the agent puts on every container.
import { runtime } from '@berth/api';
import type { ObservedContainer } from './pod-actions';
import { promisify, type PodRuntime } from './seams';
import type { RuntimeEvent } from './sync/sync-loop';

/** Labels the agent sets on containers, as the kubelet does (so a restarted agent can adopt them). */
export const POD_UID_LABEL = 'io.kubernetes.pod.uid';
export const POD_NAME_LABEL = 'io.kubernetes.pod.name';
export const POD_NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
export const CONTAINER_NAME_LABEL = 'io.kubernetes.container.name';
/** The node whose agent made a sandbox: only that agent ever cleans it up as an orphan. */
export const NODE_NAME_LABEL = 'berth.dev/node';

const STATE: Record<number, ObservedContainer['state']> = {
  [runtime.ContainerState.CONTAINER_STATE_CREATED]: 'created',
  [runtime.ContainerState.CONTAINER_STATE_RUNNING]: 'running',
  [runtime.ContainerState.CONTAINER_STATE_EXITED]: 'exited',
};

export function observedFromStatus(s: runtime.ContainerStatus): ObservedContainer {
  return {
    name: s.labels[CONTAINER_NAME_LABEL] ?? s.metadata?.name ?? '',
    id: s.id,
    state: STATE[s.state as number] ?? 'unknown',
    exitCode: s.exitCode,
    startedAt: Math.floor(Number(s.startedAtUs) / 1000),
    finishedAt: Math.floor(Number(s.finishedAtUs) / 1000),
    reason: s.reason,
    attempt: s.metadata?.attempt ?? 0,
  };
}

const EVENT: Record<number, RuntimeEvent['type'] | undefined> = {
  [runtime.ContainerEventType.CONTAINER_EVENT_TYPE_CREATED]: 'created',
  [runtime.ContainerEventType.CONTAINER_EVENT_TYPE_STARTED]: 'started',
  [runtime.ContainerEventType.CONTAINER_EVENT_TYPE_STOPPED]: 'exited',
  [runtime.ContainerEventType.CONTAINER_EVENT_TYPE_OOM]: 'exited',
  [runtime.ContainerEventType.CONTAINER_EVENT_TYPE_DELETED]: 'deleted',
};

/**
 * Maps runtime events to pods. `podOf` resolves a container id to its pod uid (from the labels
 * the agent set, cached from ListContainers); unknown containers are dropped.
 */
export async function* runtimeEvents(stream: AsyncIterable<runtime.ContainerEvent>, podOf: (containerId: string) => Promise<string | undefined>): AsyncGenerator<RuntimeEvent> {
  for await (const e of stream) {
    const type = EVENT[e.eventType as number];
    if (!type) continue;
    const podUid = await podOf(e.containerId);
    if (podUid) yield { podUid, containerId: e.containerId, type };
  }
}

export const RUNTIME_METHODS = ['runPodSandbox', 'stopPodSandbox', 'removePodSandbox', 'listPodSandbox', 'podSandboxStatus', 'createContainer', 'startContainer', 'stopContainer', 'removeContainer', 'listContainers', 'containerStatus', 'execSync'] as const;

export function runtimeSeam(client: unknown): PodRuntime {
  return promisify<PodRuntime>(client as Record<string, unknown>, RUNTIME_METHODS);
}

/** Exited containers the agent made (they carry its pod label), for container GC. */
export async function listDeadContainers(rt: PodRuntime): Promise<{ id: string; podUid: string; name: string; createdAt: number }[]> {
  const { containers } = await rt.listContainers(runtime.ListContainersRequest.fromPartial({ filter: { state: runtime.ContainerState.CONTAINER_STATE_EXITED } }));
  return containers
    .filter((c) => c.labels[POD_UID_LABEL])
    .map((c) => ({ id: c.id, podUid: c.labels[POD_UID_LABEL], name: c.labels[CONTAINER_NAME_LABEL] ?? c.metadata?.name ?? '', createdAt: Math.floor(Number(c.createdAtUs) / 1000) }));
}

/**
 * What the runtime runs for each pod, rebuilt from its containers and their labels alone — what
 * a restarted agent adopts instead of starting anything again. Per container name: the newest
 * instance (highest attempt) as `current`, the one before as `previous`.
 */
export async function observedPodsFromRuntime(rt: PodRuntime): Promise<Map<string, Map<string, { current: ObservedContainer; previous?: ObservedContainer }>>> {
  const { containers } = await rt.listContainers(runtime.ListContainersRequest.fromPartial({}));
  const out = new Map<string, Map<string, { current: ObservedContainer; previous?: ObservedContainer }>>();
  const statuses = await Promise.all(containers.filter((c) => c.labels[POD_UID_LABEL]).map(async (c) => ({ uid: c.labels[POD_UID_LABEL], st: (await rt.containerStatus({ containerId: c.id, verbose: false })).status! })));
  for (const { uid, st } of statuses) {
    const o = observedFromStatus(st);
    let pod = out.get(uid);
    if (!pod) out.set(uid, (pod = new Map()));
    const cur = pod.get(o.name);
    if (!cur) pod.set(o.name, { current: o });
    else if (o.attempt > cur.current.attempt) pod.set(o.name, { current: o, previous: cur.current });
    else if (!cur.previous || o.attempt > cur.previous.attempt) cur.previous = o;
  }
  return out;
}
