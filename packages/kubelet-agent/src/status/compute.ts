// The pod status the kubelet reports, computed purely from the spec, what the runtime shows, the
// probe results and the previous status: phase, conditions with transition times, container
// statuses with Kubernetes' reasons. The merge with the previous status makes sure a status
// never goes backwards (a terminal phase stays, restart counts only grow, a terminated container
// stays terminated even if the runtime forgot it after an agent restart).
import { core } from '@berth/api';
import type { ObservedContainer } from '../pod-actions';
import { restartPolicyOf } from '../pod-actions';
import { qosClassOf } from '../qos';

export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** What the pod worker knows about one container beyond the runtime's view. */
export interface ContainerView {
  current?: ObservedContainer;
  previous?: ObservedContainer;
  /** Why it is not running, when the worker knows better than "ContainerCreating". */
  waiting?: { reason: string; message: string };
  image: string;
  imageID?: string;
  ready: boolean;
  started: boolean;
}

export interface StatusInput {
  pod: core.Pod;
  containers: Map<string, ContainerView>;
  /** ms since epoch. */
  now: number;
  hostIPs: string[];
  podIPs: string[];
  /** When the worker accepted the pod (the pod's startTime). */
  startedAt?: number;
  /** Conditions of readiness gates (type -> true), set by others in the Store. */
  gates?: Map<string, boolean>;
  /** Pod-level terminal state (Evicted, DeadlineExceeded) with its message. */
  terminal?: { phase: 'Failed' | 'Succeeded'; reason: string; message: string };
  runtimeName?: string;
}

function terminatedOf(c: ObservedContainer, runtime: string): core.ContainerStateTerminated {
  const reason = c.reason === 'OOMKilled' || c.reason === 'StartError' || c.reason === 'ContainerCannotRun' ? c.reason : c.exitCode === 0 ? 'Completed' : 'Error';
  return core.ContainerStateTerminated.fromPartial({
    exitCode: c.exitCode,
    signal: c.exitCode > 128 && c.exitCode < 160 ? c.exitCode - 128 : 0,
    reason,
    startedAt: c.startedAt ? rfc3339(c.startedAt) : '',
    finishedAt: c.finishedAt ? rfc3339(c.finishedAt) : '',
    containerID: `${runtime}://${c.id}`,
  });
}

function containerStatus(name: string, v: ContainerView | undefined, defaultWaiting: string, runtime: string): core.ContainerStatus {
  const s = core.ContainerStatus.fromPartial({ name, image: v?.image ?? '', imageID: v?.imageID ?? '', ready: false, restartCount: 0, started: false });
  const cur = v?.current;
  if (v?.previous && v.previous.state === 'exited') s.lastState = core.ContainerState.fromPartial({ terminated: terminatedOf(v.previous, runtime) });
  if (!cur) {
    s.state = core.ContainerState.fromPartial({ waiting: v?.waiting ?? { reason: defaultWaiting, message: '' } });
    return s;
  }
  s.containerID = `${runtime}://${cur.id}`;
  s.restartCount = cur.attempt;
  if (cur.state === 'running') {
    s.state = core.ContainerState.fromPartial({ running: { startedAt: rfc3339(cur.startedAt) } });
    s.ready = v!.ready;
    s.started = v!.started;
  } else if (cur.state === 'exited') {
    if (v!.waiting) {
      // Exited and waiting to restart (CrashLoopBackOff): the exit becomes the last state.
      s.state = core.ContainerState.fromPartial({ waiting: v!.waiting });
      s.lastState = core.ContainerState.fromPartial({ terminated: terminatedOf(cur, runtime) });
    } else s.state = core.ContainerState.fromPartial({ terminated: terminatedOf(cur, runtime) });
  } else {
    s.state = core.ContainerState.fromPartial({ waiting: v!.waiting ?? { reason: 'ContainerCreating', message: '' } });
  }
  return s;
}

function condition(type: string, ok: boolean, reason: string, message: string, now: number, prev: core.PodCondition[]): core.PodCondition {
  const status = ok ? 'True' : 'False';
  const old = prev.find((c) => c.type === type);
  const since = old && old.status === status ? old.lastTransitionTime : rfc3339(now);
  return core.PodCondition.fromPartial({ type, status, lastTransitionTime: since, lastProbeTime: '', reason: ok ? '' : reason, message: ok ? '' : message });
}

export function computePodStatus(input: StatusInput): core.PodStatus {
  const { pod, now } = input;
  const spec = pod.spec;
  if (!spec) throw new TypeError('pod.spec: required to compute the status');
  const runtime = input.runtimeName ?? 'berth';
  const prev = pod.status ?? core.PodStatus.fromPartial({});
  const policy = restartPolicyOf(spec);

  // Init containers are complete when exited 0 (a sidecar: once started).
  const initStatuses: core.ContainerStatus[] = [];
  const incompleteInit: string[] = [];
  let initFailed = false;
  for (const c of spec.initContainers) {
    const st = containerStatus(c.name, input.containers.get(c.name), 'PodInitializing', runtime);
    initStatuses.push(st);
    const sidecar = c.restartPolicy === 'Always';
    const t = st.state?.terminated;
    const done = sidecar ? !!st.started : !!t && t.exitCode === 0;
    if (!done) incompleteInit.push(c.name);
    if (!sidecar && t && t.exitCode !== 0 && policy === 'Never') initFailed = true;
  }
  const initialized = incompleteInit.length === 0;
  const appStatuses = spec.containers.map((c) => containerStatus(c.name, input.containers.get(c.name), initialized ? 'ContainerCreating' : 'PodInitializing', runtime));

  let phase: string;
  if (input.terminal) phase = input.terminal.phase;
  else if (initFailed) phase = 'Failed';
  else if (!initialized) phase = 'Pending';
  else phase = appPhase(appStatuses, policy);

  const finished = phase === 'Succeeded' || phase === 'Failed';
  const notReady = appStatuses.filter((s) => !s.ready).map((s) => s.name);
  const containersReady = !finished && notReady.length === 0;
  const gatesFailing = spec.readinessGates.map((g) => g.conditionType).filter((g) => !input.gates?.get(g));
  const prevConds = prev.conditions;
  const completed = finished ? 'PodCompleted' : '';
  const unready = `containers with unready status: [${notReady.join(' ')}]`;
  const conditions = [
    condition('PodScheduled', true, '', '', now, prevConds),
    condition('Initialized', initialized, completed || 'ContainersNotInitialized', `containers with incomplete status: [${incompleteInit.join(' ')}]`, now, prevConds),
    condition('ContainersReady', containersReady, completed || 'ContainersNotReady', unready, now, prevConds),
    condition(
      'Ready',
      containersReady && gatesFailing.length === 0,
      completed || (containersReady ? 'ReadinessGatesNotReady' : 'ContainersNotReady'),
      containersReady ? `corresponding condition of pod readiness gate "${gatesFailing[0]}" does not exist.` : unready,
      now,
      prevConds,
    ),
  ];
  // Conditions others own (readiness gates, DisruptionTarget) are carried over untouched.
  for (const c of prevConds) if (!conditions.some((x) => x.type === c.type)) conditions.push(c);

  const next = core.PodStatus.fromPartial({
    phase,
    conditions,
    message: input.terminal?.message ?? '',
    reason: input.terminal?.reason ?? '',
    nominatedNodeName: prev.nominatedNodeName,
    hostIP: input.hostIPs[0] ?? '',
    hostIPs: input.hostIPs.map((ip) => ({ ip })),
    podIP: input.podIPs[0] ?? '',
    podIPs: input.podIPs.map((ip) => ({ ip })),
    startTime: prev.startTime || (input.startedAt !== undefined ? rfc3339(input.startedAt) : ''),
    initContainerStatuses: initStatuses,
    containerStatuses: appStatuses,
    qosClass: qosClassOf(spec),
  });
  return mergeNoRegress(prev, next);
}

function appPhase(statuses: core.ContainerStatus[], policy: string): string {
  let running = 0, waiting = 0, stopped = 0, succeeded = 0;
  for (const s of statuses) {
    if (s.state?.running) running++;
    else if (s.state?.terminated) {
      stopped++;
      if (s.state.terminated.exitCode === 0) succeeded++;
    } else if (s.lastState?.terminated) stopped++; // waiting to restart after an exit
    else waiting++;
  }
  if (waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped > 0) {
    if (policy === 'Always') return 'Running';
    if (stopped === succeeded) return 'Succeeded';
    if (policy === 'Never') return 'Failed';
    return 'Running';
  }
  return 'Pending';
}

const TERMINAL = new Set(['Succeeded', 'Failed']);

/**
 * Keeps a status from going backwards: a terminal phase is final, restart counts and last states
 * only grow, and a container reported terminated stays terminated when the runtime no longer
 * knows it (the agent restarted, the container was garbage-collected) instead of flapping back
 * to ContainerCreating.
 */
export function mergeNoRegress(prev: core.PodStatus, next: core.PodStatus): core.PodStatus {
  const terminal = TERMINAL.has(prev.phase) && !TERMINAL.has(next.phase);
  return {
    ...next,
    phase: terminal ? prev.phase : next.phase,
    reason: terminal ? prev.reason : next.reason,
    message: terminal ? prev.message : next.message,
    startTime: prev.startTime || next.startTime,
    containerStatuses: keepProgress(prev.containerStatuses, next.containerStatuses, terminal),
    initContainerStatuses: keepProgress(prev.initContainerStatuses, next.initContainerStatuses, terminal),
  };
}

function keepProgress(prev: core.ContainerStatus[], next: core.ContainerStatus[], terminal: boolean): core.ContainerStatus[] {
  return next.map((n) => {
    const p = prev.find((x) => x.name === n.name);
    if (!p) return n;
    const out = { ...n };
    if (p.restartCount > out.restartCount) out.restartCount = p.restartCount;
    if (!out.lastState?.terminated && p.lastState?.terminated) out.lastState = p.lastState;
    const w = n.state?.waiting?.reason;
    const forgotten = w === 'ContainerCreating' || w === 'PodInitializing';
    if (p.state?.terminated && (terminal || forgotten)) {
      out.state = p.state;
      out.containerID = p.containerID;
      out.ready = false;
      out.started = false;
    }
    return out;
  });
}

/** The status manager writes only when this is false. */
export function statusEqual(a: core.PodStatus | undefined, b: core.PodStatus | undefined): boolean {
  if (!a || !b) return a === b;
  return JSON.stringify(core.PodStatus.toJSON(a)) === JSON.stringify(core.PodStatus.toJSON(b));
}
