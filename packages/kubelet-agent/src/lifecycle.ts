// Container life-cycle hooks and graceful termination, as the kubelet runs them:
//  - postStart runs right after the container started; if it fails the container is killed
//    (event FailedPostStartHook) and restarted by policy;
//  - on stop, preStop runs first and its time counts against the grace period; what is left
//    (at least 2 s) is handed to the runtime, which sends the stop signal and SIGKILLs after it.
// Grace period: the delete call's, else the pod's deletionGracePeriodSeconds, else
// terminationGracePeriodSeconds (default 30); a liveness/startup kill may override it.
import type { core } from '@berth/api';
import type { Clock } from './clock';
import { httpProbe, tcpProbe, resolvePort, type ContainerExec } from './probes/prober';

export const MIN_GRACE_SECONDS = 2;
export const DEFAULT_GRACE_SECONDS = 30;

export interface HookResult {
  ok: boolean;
  message: string;
  elapsedMs: number;
}

export interface HookTarget {
  podIP: string;
  containerId: string;
  container: core.Container;
}

export async function runHandler(h: core.LifecycleHandler, t: HookTarget, exec: ContainerExec, clock: Clock, timeoutMs: number, field: string): Promise<HookResult> {
  const t0 = clock.now();
  const done = (ok: boolean, message: string): HookResult => ({ ok, message, elapsedMs: clock.now() - t0 });
  try {
    if (h.exec) {
      if (!h.exec.command.length) return done(false, `${field}.exec.command: Required value`);
      const r = await exec.exec(t.containerId, h.exec.command, timeoutMs);
      if (r.timedOut) return done(false, `command ${JSON.stringify(h.exec.command)} timed out`);
      return done(r.exitCode === 0, r.exitCode === 0 ? r.output : `command ${JSON.stringify(h.exec.command)} exited with ${r.exitCode}: ${r.output}`);
    }
    if (h.httpGet) {
      const r = await httpProbe(h.httpGet, t, timeoutMs, `${field}.httpGet`);
      return done(r.result === 'success', r.output);
    }
    if (h.tcpSocket) {
      const r = await tcpProbe(h.tcpSocket.host || t.podIP, resolvePort(h.tcpSocket.port, t.container, `${field}.tcpSocket.port`), timeoutMs);
      return done(r.result === 'success', r.output);
    }
    if (h.sleep) {
      const ms = Math.min(Number(h.sleep.seconds) * 1000, timeoutMs);
      if (!(ms >= 0)) return done(false, `${field}.sleep.seconds: must be non-negative`);
      await clock.sleep(ms);
      return done(true, '');
    }
    return done(false, `${field}: must specify exec, httpGet, tcpSocket or sleep`);
  } catch (e) {
    return done(false, (e as Error).message);
  }
}

/** The grace period for stopping a pod's containers, in seconds. */
export function gracePeriodSeconds(pod: core.Pod, opts: { deleteGrace?: number; probeOverride?: number } = {}): number {
  const pick = opts.probeOverride ?? opts.deleteGrace ?? (pod.metadata?.deletionGracePeriodSeconds !== undefined ? Number(pod.metadata.deletionGracePeriodSeconds) : undefined) ?? (pod.spec?.terminationGracePeriodSeconds !== undefined ? Number(pod.spec.terminationGracePeriodSeconds) : DEFAULT_GRACE_SECONDS);
  if (!Number.isFinite(pick) || pick < 0) throw new RangeError(`gracePeriodSeconds: must be a non-negative number, got ${pick}`);
  return pick;
}

export interface StopOutcome {
  preStop?: HookResult;
  /** Seconds handed to the runtime's StopContainer after preStop. */
  stopTimeoutSeconds: number;
}

/**
 * Stops one container gracefully: preStop (bounded by the grace period), then the runtime's stop
 * with what is left of the grace period. A grace period of 0 skips preStop and kills at once.
 */
export async function stopContainer(
  t: HookTarget,
  graceSeconds: number,
  deps: { exec: ContainerExec; clock: Clock; stop: (containerId: string, timeoutSeconds: number) => Promise<void>; onHookFailed?: (msg: string) => void },
): Promise<StopOutcome> {
  const out: StopOutcome = { stopTimeoutSeconds: graceSeconds };
  const pre = t.container.lifecycle?.preStop;
  if (pre && graceSeconds > 0) {
    out.preStop = await runHandler(pre, t, deps.exec, deps.clock, graceSeconds * 1000, 'lifecycle.preStop');
    if (!out.preStop.ok) deps.onHookFailed?.(`PreStopHook failed: ${out.preStop.message}`);
    const left = graceSeconds - Math.floor(out.preStop.elapsedMs / 1000);
    out.stopTimeoutSeconds = Math.max(left, MIN_GRACE_SECONDS);
  }
  await deps.stop(t.containerId, out.stopTimeoutSeconds);
  return out;
}
