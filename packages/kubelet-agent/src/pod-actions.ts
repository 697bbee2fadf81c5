// What a pod worker must do next to move a pod's containers towards its spec, decided from the
// spec and what the runtime reports (the kubelet's computePodActions): make the sandbox, run
// init containers one by one to success (sidecars started in order and kept running), start
// or restart app containers by the restart policy under the crash-loop back-off, and say when a
// pod that will not restart anything is finished.
import type { core } from '@berth/api';
import { CrashLoopBackoff } from './backoff';

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

/** The latest instance of one container, as the runtime reports it (times in ms since epoch). */
export interface ObservedContainer {
  name: string;
  id: string;
  state: 'created' | 'running' | 'exited' | 'unknown';
  exitCode: number;
  startedAt: number;
  finishedAt: number;
  /** Runtime's reason, e.g. OOMKilled. */
  reason: string;
  /** How many times this container was started before (the restart count). */
  attempt: number;
}

export interface ObservedPod {
  sandbox?: { id: string; ready: boolean; attempt: number };
  containers: ObservedContainer[];
}

export interface PodActions {
  /** Stop everything (sandbox changed or pod finished). */
  killPod: boolean;
  createSandbox: boolean;
  /** Containers (init or app, by name) to create and start now, in this order. */
  start: string[];
  /** Running containers to kill, with the reason shown in the Killing event. */
  kill: { name: string; id: string; reason: string }[];
  /** Containers that would restart but wait for the back-off (CrashLoopBackOff). */
  backoff: { name: string; remainingMs: number; message: string }[];
  /** Set when no container will run again: the pod's final phase. */
  done?: 'Succeeded' | 'Failed';
  /** Name of the init container that failed for good (restartPolicy Never). */
  initFailed?: string;
}

export function restartPolicyOf(spec: core.PodSpec): RestartPolicy {
  const p = spec.restartPolicy || 'Always';
  if (p !== 'Always' && p !== 'OnFailure' && p !== 'Never') throw new RangeError(`spec.restartPolicy: unsupported value ${JSON.stringify(p)} (Always, OnFailure, Never)`);
  return p;
}

export function shouldRestart(policy: RestartPolicy, c: ObservedContainer): boolean {
  if (c.state !== 'exited') return false;
  if (policy === 'Always') return true;
  if (policy === 'OnFailure') return c.exitCode !== 0;
  return false;
}

export interface ComputeOptions {
  podUid: string;
  backoff: CrashLoopBackoff;
  /** Containers whose liveness (or startup) probe failed: killed and restarted by policy. */
  livenessFailed?: ReadonlySet<string>;
}

export function computePodActions(spec: core.PodSpec, observed: ObservedPod, opts: ComputeOptions): PodActions {
  const policy = restartPolicyOf(spec);
  const byName = new Map(observed.containers.map((c) => [c.name, c]));
  const actions: PodActions = { killPod: false, createSandbox: false, start: [], kill: [], backoff: [] };
  const everRan = observed.containers.length > 0;

  if (!observed.sandbox || !observed.sandbox.ready) {
    // A pod that must never restart does not get a new sandbox once its containers ran: that
    // would rerun them.
    if (policy === 'Never' && everRan && observed.sandbox) {
      actions.killPod = true;
      actions.done = finalPhase(spec, byName) ?? 'Failed';
      return actions;
    }
    actions.createSandbox = true;
    actions.killPod = !!observed.sandbox;
    const first = spec.initContainers[0];
    // A new sandbox restarts the pod from its first init container.
    if (first) actions.start.push(first.name);
    else actions.start.push(...spec.containers.map((c) => c.name));
    return actions;
  }

  const tryStart = (name: string, prev: ObservedContainer | undefined): void => {
    if (!prev) {
      actions.start.push(name);
      return;
    }
    const key = CrashLoopBackoff.key(opts.podUid, name);
    const remaining = opts.backoff.remaining(key, prev.finishedAt);
    if (remaining > 0) {
      actions.backoff.push({ name, remainingMs: remaining, message: `back-off ${fmtDelay(opts.backoff.delay(key))} restarting failed container=${name}` });
      return;
    }
    opts.backoff.next(key, prev.finishedAt > prev.startedAt && prev.startedAt > 0 ? prev.finishedAt - prev.startedAt : 0);
    actions.start.push(name);
  };

  // Init containers, in order. Regular ones must exit 0 before the next starts; sidecars
  // (restartPolicy Always) only need to be running.
  for (const ic of spec.initContainers) {
    const prev = byName.get(ic.name);
    const sidecar = ic.restartPolicy === 'Always';
    if (sidecar) {
      if (prev?.state === 'running') {
        if (opts.livenessFailed?.has(ic.name)) {
          actions.kill.push({ name: ic.name, id: prev.id, reason: `Container ${ic.name} failed liveness probe, will be restarted` });
          actions.start.push(ic.name);
        }
        continue;
      }
      tryStart(ic.name, prev);
      return actions; // later init containers wait for this sidecar to run
    }
    if (!prev) {
      actions.start.push(ic.name);
      return actions;
    }
    if (prev.state === 'running' || prev.state === 'created') return actions; // still working
    if (prev.state === 'exited' && prev.exitCode === 0) continue;
    // Failed (or unknown): Never fails the pod; otherwise retry this init container.
    if (policy === 'Never') {
      actions.initFailed = ic.name;
      actions.done = 'Failed';
      actions.killPod = true;
      return actions;
    }
    tryStart(ic.name, prev);
    return actions;
  }

  for (const c of spec.containers) {
    const prev = byName.get(c.name);
    if (!prev) {
      actions.start.push(c.name);
      continue;
    }
    if (prev.state === 'running') {
      if (opts.livenessFailed?.has(c.name)) {
        actions.kill.push({ name: c.name, id: prev.id, reason: `Container ${c.name} failed liveness probe, will be restarted` });
        if (policy !== 'Never') actions.start.push(c.name);
      }
      continue;
    }
    if (prev.state === 'created' || prev.state === 'unknown') {
      // Never started (or lost): replace it.
      actions.kill.push({ name: c.name, id: prev.id, reason: `Container ${c.name} is in state ${prev.state}, will be recreated` });
      actions.start.push(c.name);
      continue;
    }
    if (shouldRestart(policy, prev)) tryStart(c.name, prev);
  }

  if (policy !== 'Always' && !actions.start.length && !actions.backoff.length) {
    const phase = finalPhase(spec, byName);
    if (phase) {
      actions.done = phase;
      // Sidecars are stopped once the app containers are finished.
      for (const ic of spec.initContainers) {
        const prev = byName.get(ic.name);
        if (ic.restartPolicy === 'Always' && prev?.state === 'running') actions.kill.push({ name: ic.name, id: prev.id, reason: 'Stopping sidecar of a finished pod' });
      }
    }
  }
  return actions;
}

/** Succeeded/Failed when every app container exited, else undefined. */
function finalPhase(spec: core.PodSpec, byName: Map<string, ObservedContainer>): 'Succeeded' | 'Failed' | undefined {
  let failed = false;
  for (const c of spec.containers) {
    const o = byName.get(c.name);
    if (!o || o.state !== 'exited') return undefined;
    if (o.exitCode !== 0) failed = true;
  }
  return failed ? 'Failed' : 'Succeeded';
}

export function fmtDelay(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  return s % 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s / 60}m0s`;
}
