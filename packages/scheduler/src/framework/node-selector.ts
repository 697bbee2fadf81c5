// Node selection terms (nodeSelector, required/preferred node affinity) compiled once per pod.
import type { core } from '@berth/api';
import { InvalidArgumentError } from '@berth/common';
import type { Labels } from '../labels';

export type NodeMatcher = (labels: Labels, name: string) => boolean;

const INT = /^[+-]?\d+$/;

function compileRequirement(r: core.NodeSelectorRequirement, field: string, isField: boolean): NodeMatcher {
  if (!r.key) throw new InvalidArgumentError(`${field}.key`, 'must not be empty');
  const values = r.values ?? [];
  if (isField) {
    if (r.key !== 'metadata.name') throw new InvalidArgumentError(`${field}.key`, `"${r.key}" is not a supported field selector (only metadata.name)`);
    if (r.operator !== 'In' && r.operator !== 'NotIn') throw new InvalidArgumentError(`${field}.operator`, `"${r.operator}" is not a valid operator for matchFields (In, NotIn)`);
    if (values.length !== 1) throw new InvalidArgumentError(`${field}.values`, 'must have exactly one entry for matchFields');
  }
  const set = new Set(values);
  const get = isField ? (_l: Labels, name: string) => name : (l: Labels) => l[r.key];
  switch (r.operator) {
    case 'In':
      if (!values.length) throw new InvalidArgumentError(`${field}.values`, 'must be non-empty for operator In');
      return (l, n) => { const v = get(l, n); return v !== undefined && set.has(v); };
    case 'NotIn':
      if (!values.length) throw new InvalidArgumentError(`${field}.values`, 'must be non-empty for operator NotIn');
      return (l, n) => { const v = get(l, n); return v === undefined || !set.has(v); };
    case 'Exists':
      if (values.length) throw new InvalidArgumentError(`${field}.values`, 'must be empty for operator Exists');
      return (l) => l[r.key] !== undefined;
    case 'DoesNotExist':
      if (values.length) throw new InvalidArgumentError(`${field}.values`, 'must be empty for operator DoesNotExist');
      return (l) => l[r.key] === undefined;
    case 'Gt': case 'Lt': {
      if (values.length !== 1 || !INT.test(values[0])) {
        throw new InvalidArgumentError(`${field}.values`, `operator ${r.operator} needs exactly one integer value, got ${JSON.stringify(values)}`);
      }
      const bound = Number(values[0]);
      const gt = r.operator === 'Gt';
      return (l) => {
        const v = l[r.key];
        if (v === undefined || !INT.test(v)) return false;
        const n = Number(v);
        return gt ? n > bound : n < bound;
      };
    }
    default:
      throw new InvalidArgumentError(`${field}.operator`, `"${r.operator}" is not a valid operator (In, NotIn, Exists, DoesNotExist, Gt, Lt)`);
  }
}

/** One NodeSelectorTerm: its requirements ANDed; a term with none matches nothing. */
export function compileTerm(t: core.NodeSelectorTerm | undefined, field: string): NodeMatcher {
  const ms = [
    ...(t?.matchExpressions ?? []).map((r, i) => compileRequirement(r, `${field}.matchExpressions[${i}]`, false)),
    ...(t?.matchFields ?? []).map((r, i) => compileRequirement(r, `${field}.matchFields[${i}]`, true)),
  ];
  if (!ms.length) return () => false;
  if (ms.length === 1) return ms[0];
  return (l, n) => { for (const m of ms) if (!m(l, n)) return false; return true; };
}

/** A NodeSelector: its terms ORed. */
export function compileNodeSelector(sel: core.NodeSelector, field: string): NodeMatcher {
  const terms = (sel.nodeSelectorTerms ?? []).map((t, i) => compileTerm(t, `${field}.nodeSelectorTerms[${i}]`));
  if (!terms.length) return () => false;
  return (l, n) => { for (const m of terms) if (m(l, n)) return true; return false; };
}

export interface RequiredNodeAffinity {
  /** True when the pod has neither a nodeSelector nor required node affinity. */
  readonly any: boolean;
  match: NodeMatcher;
  /** Node names the pod is limited to by matchFields metadata.name In, when every term says so. */
  readonly nodeNames?: ReadonlySet<string>;
}

/** nodeSelector AND spec.affinity.nodeAffinity.requiredDuringScheduling... (GetRequiredNodeAffinity). */
export function requiredNodeAffinity(spec: core.PodSpec | undefined): RequiredNodeAffinity {
  const selector = Object.entries(spec?.nodeSelector ?? {});
  const req = spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  const field = 'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution';
  const aff = req ? compileNodeSelector(req, field) : undefined;
  if (!selector.length && !aff) return { any: true, match: () => true };
  const match: NodeMatcher = (l, n) => {
    for (const [k, v] of selector) if (l[k] !== v) return false;
    return aff ? aff(l, n) : true;
  };
  // PreFilter can narrow to named nodes when every term pins metadata.name with In.
  let nodeNames: Set<string> | undefined;
  if (req && req.nodeSelectorTerms.length) {
    const names = new Set<string>();
    let all = true;
    for (const t of req.nodeSelectorTerms) {
      const f = t.matchFields?.find((r) => r.key === 'metadata.name' && r.operator === 'In');
      if (!f) { all = false; break; }
      for (const v of f.values) names.add(v);
    }
    if (all) nodeNames = names;
  }
  return { any: false, match, nodeNames };
}

export interface PreferredNodeTerm { weight: number; match: NodeMatcher }

export function preferredNodeTerms(spec: core.PodSpec | undefined): PreferredNodeTerm[] {
  const field = 'spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution';
  return (spec?.affinity?.nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((t, i) => {
    if (!(t.weight >= 1 && t.weight <= 100)) throw new InvalidArgumentError(`${field}[${i}].weight`, `must be in the range 1-100, got ${t.weight}`);
    return { weight: t.weight, match: compileTerm(t.preference, `${field}[${i}].preference`) };
  });
}
