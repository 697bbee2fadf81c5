// Scheduler.Explain: runs a profile's filter and score plugins for one pod without binding it and
// reports every node's verdict. The target is a pod the scheduler knows (decided against its live
// cache) or a self-contained snapshot (a what-if on a throwaway cache; no cluster needed).
import { scheduler, type core } from '@berth/api';
import { InvalidArgumentError, NotFoundError } from '@berth/common';
import { SchedulerCache } from './cache';
import { Framework } from './framework/framework';
import { CycleState } from './framework/interfaces';
import { inTreeRegistry } from './framework/registry';
import { FitError, schedulePod } from './framework/schedule';
import { DEFAULT_SCHEDULER_NAME, PodInfo } from './framework/types';
import type { Scheduler } from './scheduler';

function compile(pod: core.Pod, field: string): PodInfo {
  try {
    return new PodInfo(pod);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new InvalidArgumentError(`${field}.${err.field}`, err.message.slice((err.field ?? '').length + 2));
    throw new InvalidArgumentError(field, (err as Error).message);
  }
}

function pickProfile(s: Scheduler, requested: string, pod: PodInfo): { name: string; cfg: Scheduler['config']['profiles'][number] } {
  const name = requested || pod.pod.spec?.schedulerName || DEFAULT_SCHEDULER_NAME;
  const cfg = s.config.profiles.find((p) => p.schedulerName === name);
  if (!cfg) {
    const field = requested ? 'profile' : 'pod.spec.schedulerName';
    throw new InvalidArgumentError(field, `no profile named "${name}" (profiles: ${s.config.profiles.map((p) => p.schedulerName).join(', ')})`);
  }
  return { name, cfg };
}

async function run(s: Scheduler, fwk: Framework, cache: SchedulerCache, pod: PodInfo): Promise<scheduler.ExplainResponse> {
  const state = new CycleState();
  try {
    const r = await schedulePod(fwk, state, pod, cache, { explain: true, extenders: s.extenders });
    return scheduler.ExplainResponse.fromPartial({
      selectedNode: r.suggestedHost,
      nodes: (r.reports ?? []).map((rep) => ({
        nodeName: rep.node.name,
        feasible: !rep.status,
        failedPlugin: rep.status?.plugin ?? '',
        reasons: rep.status?.reasons ?? [],
        scores: (rep.scores ?? []).map((x) => ({ plugin: x.plugin, score: x.score, weight: x.weight, weighted: x.score * x.weight })),
        totalScore: rep.total ?? 0,
      })),
      message: '',
    });
  } catch (err) {
    if (!(err instanceof FitError)) throw err;
    if (fwk.postFilter.length && err.numAllNodes > 0) {
      const pf = await fwk.runPostFilter(state, pod, err.statuses, true);
      if (pf?.message) err.postFilterMsg = pf.message;
    }
    return scheduler.ExplainResponse.fromPartial({
      selectedNode: '',
      nodes: cache.nodes().map((n) => {
        const st = err.statuses.get(n.name);
        return { nodeName: n.name, feasible: false, failedPlugin: st?.plugin ?? '', reasons: st?.reasons ?? [], scores: [], totalScore: 0 };
      }),
      message: err.summary(),
    });
  }
}

export async function explain(s: Scheduler, req: scheduler.ExplainRequest): Promise<scheduler.ExplainResponse> {
  if (req.snapshot) {
    const snap = req.snapshot;
    if (!snap.pod) throw new InvalidArgumentError('snapshot.pod', 'must be set');
    const pod = compile({ ...snap.pod, metadata: { ...snap.pod.metadata!, name: snap.pod.metadata?.name || 'explained-pod' } }, 'snapshot.pod');
    const { cfg } = pickProfile(s, req.profile, pod);
    const cache = new SchedulerCache();
    const names = new Set<string>();
    snap.nodes.forEach((n, i) => {
      const name = n.metadata?.name;
      if (!name) throw new InvalidArgumentError(`snapshot.nodes[${i}].metadata.name`, 'must not be empty');
      if (names.has(name)) throw new InvalidArgumentError(`snapshot.nodes[${i}].metadata.name`, `duplicate node "${name}"`);
      names.add(name);
      try { cache.addOrUpdateNode(n); } catch (err) { throw new InvalidArgumentError(`snapshot.nodes[${i}]`, (err as Error).message); }
    });
    snap.existingPods.forEach((p, i) => {
      if (!p.spec?.nodeName) throw new InvalidArgumentError(`snapshot.existingPods[${i}].spec.nodeName`, 'must be set (existing pods are placed pods)');
      if (!p.metadata?.name) throw new InvalidArgumentError(`snapshot.existingPods[${i}].metadata.name`, 'must not be empty');
      cache.addOrUpdatePod(p);
    });
    let fwk!: Framework;
    fwk = new Framework(cfg, inTreeRegistry(), s.handleFor(() => fwk, cache, true));
    return run(s, fwk, cache, pod);
  }
  if (req.podRef) {
    const key = `${req.podRef.namespace || 'default'}/${req.podRef.name}`;
    if (!req.podRef.name) throw new InvalidArgumentError('podRef.name', 'must not be empty');
    const queued = s.queue.list().find((x) => x.q.info.key === key)?.q.info;
    const placed = s.cache.placedPod(key)?.info;
    const info = queued ?? placed;
    if (!info) throw new NotFoundError(`pod ${key} is not known to the scheduler (neither pending for one of its profiles nor placed)`);
    // A placed pod is evaluated as if it were pending (its own placement still counts in the cache).
    const pod = placed ? compile({ ...info.pod, spec: { ...info.pod.spec!, nodeName: '' } }, 'pod') : info;
    const { name } = pickProfile(s, req.profile, pod);
    return run(s, s.profiles.get(name)!, s.cache, pod);
  }
  throw new InvalidArgumentError('target', 'set pod_ref or snapshot');
}
