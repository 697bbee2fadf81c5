// Runs one plugin the way the framework does (PreFilter then Filter per node; PreScore, Score
// and NormalizeScore over the feasible nodes) on a cache built from a table row.
import type { core } from '@berth/api';
import { SchedulerCache } from '../cache';
import { CycleState, type FilterPlugin, type Handle, type Plugin, type PreFilterPlugin, type PreScorePlugin, type ScorePlugin } from '../framework/interfaces';
import { inTreeRegistry } from '../framework/registry';
import { Code } from '../framework/status';
import { PodInfo } from '../framework/types';

export interface Row {
  pod: core.Pod;
  nodes: core.Node[];
  existingPods?: core.Pod[];
  namespaces?: { name: string; labels: Record<string, string> }[];
  args?: unknown;
}

export function buildCache(row: Row): SchedulerCache {
  const cache = new SchedulerCache();
  for (const ns of row.namespaces ?? []) cache.setNamespace(ns);
  for (const n of row.nodes) cache.addOrUpdateNode(n);
  for (const p of row.existingPods ?? []) cache.addOrUpdatePod(p);
  return cache;
}

export function testHandle(cache: SchedulerCache): Handle {
  return {
    snapshot: cache,
    nominatedPodsForNode: () => [],
    bindPod: async () => undefined,
    deletePod: async () => undefined,
    clearNomination: async () => undefined,
    runFilterPluginsWithNominatedPods: () => null,
    runPreFilterExtensionAddPod: () => null,
    runPreFilterExtensionRemovePod: () => null,
    now: () => 0,
    random: () => 0,
  };
}

export function makePlugin(name: string, cache: SchedulerCache, args?: unknown): Plugin {
  const reg = inTreeRegistry().get(name)!;
  return reg.factory(reg.parseArgs ? reg.parseArgs(args, 'args') : args, testHandle(cache));
}

/** "Success", or "<Code>: reason, reason" per node. */
export function filterRow(name: string, row: Row): Record<string, string> {
  const cache = buildCache(row);
  const p = makePlugin(name, cache, row.args);
  const pod = new PodInfo(row.pod);
  const state = new CycleState();
  const out: Record<string, string> = {};
  const pre = (p as Partial<PreFilterPlugin>).preFilter?.(state, pod, cache.nodes());
  const fmt = (code: Code, reasons: string[]) => `${Code[code]}: ${reasons.join(', ')}`;
  if (pre?.status && pre.status.code !== Code.Success && pre.status.code !== Code.Skip) {
    for (const n of cache.nodes()) out[n.name] = fmt(pre.status.code, pre.status.reasons);
    return out;
  }
  const skipped = pre?.status?.code === Code.Skip;
  for (const n of cache.nodes()) {
    if (pre?.result?.nodeNames && !pre.result.nodeNames.has(n.name)) { out[n.name] = 'NotInPreFilterResult'; continue; }
    const s = skipped ? null : (p as FilterPlugin).filter(state, pod, n);
    out[n.name] = s ? fmt(s.code, s.reasons) : 'Success';
  }
  return out;
}

/** Normalized scores per node (all nodes are taken as feasible); "skip" when PreScore skipped. */
export function scoreRow(name: string, row: Row): Record<string, number> | 'skip' {
  const cache = buildCache(row);
  const p = makePlugin(name, cache, row.args) as ScorePlugin & Partial<PreScorePlugin>;
  const pod = new PodInfo(row.pod);
  const state = new CycleState();
  const nodes = cache.nodes();
  const pre = p.preScore?.(state, pod, nodes);
  if (pre?.code === Code.Skip) return 'skip';
  const scores = nodes.map((n) => p.score(state, pod, n));
  p.normalizeScore?.(state, pod, scores, nodes);
  return Object.fromEntries(nodes.map((n, i) => [n.name, scores[i]]));
}
