// Label selectors (metav1.LabelSelector) compiled once into a matcher, with a hint of the
// narrowest exact-match requirement so indexes can start from a short posting list.
import type { core } from '@berth/api';
import { InvalidArgumentError } from '@berth/common';

export type Labels = { readonly [key: string]: string };

export interface Requirement {
  key: string;
  op: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values: ReadonlySet<string>;
}

export interface Selector {
  /** Everything matches (the empty selector `{}`). */
  readonly everything: boolean;
  /** Nothing matches (an absent selector). */
  readonly nothing: boolean;
  readonly requirements: readonly Requirement[];
  /** An `In` requirement usable to narrow candidates through a label index. */
  readonly hint?: Requirement;
  /** Canonical text: equal selectors have equal keys. */
  readonly key: string;
  matches(labels: Labels | undefined): boolean;
}

const NOTHING: Selector = { everything: false, nothing: true, requirements: [], key: '!', matches: () => false };
const EVERYTHING: Selector = { everything: true, nothing: false, requirements: [], key: '*', matches: () => true };

export function selectorFromRequirements(reqs: Requirement[]): Selector {
  if (reqs.length === 0) return EVERYTHING;
  reqs = [...reqs].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.op < b.op ? -1 : 1));
  const key = reqs.map((r) => `${r.key} ${r.op} ${[...r.values].sort().join(',')}`).join(';');
  let hint: Requirement | undefined;
  for (const r of reqs) if (r.op === 'In' && (!hint || r.values.size < hint.values.size)) hint = r;
  const matches = (labels: Labels | undefined): boolean => {
    for (const r of reqs) {
      const v = labels?.[r.key];
      switch (r.op) {
        case 'In': if (v === undefined || !r.values.has(v)) return false; break;
        case 'NotIn': if (v !== undefined && r.values.has(v)) return false; break;
        case 'Exists': if (v === undefined) return false; break;
        case 'DoesNotExist': if (v !== undefined) return false; break;
      }
    }
    return true;
  };
  return { everything: false, nothing: false, requirements: reqs, hint, key, matches };
}

/** Compiles a LabelSelector; `field` names it in errors. Absent = nothing, `{}` = everything. */
export function compileSelector(sel: core.LabelSelector | undefined, field: string, extra: Requirement[] = []): Selector {
  if (!sel) return NOTHING;
  const reqs: Requirement[] = [];
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) reqs.push({ key: k, op: 'In', values: new Set([v]) });
  (sel.matchExpressions ?? []).forEach((e, i) => {
    const f = `${field}.matchExpressions[${i}]`;
    if (!e.key) throw new InvalidArgumentError(`${f}.key`, 'must not be empty');
    switch (e.operator) {
      case 'In': case 'NotIn':
        if (!e.values?.length) throw new InvalidArgumentError(`${f}.values`, `must be non-empty for operator ${e.operator}`);
        break;
      case 'Exists': case 'DoesNotExist':
        if (e.values?.length) throw new InvalidArgumentError(`${f}.values`, `must be empty for operator ${e.operator}`);
        break;
      default:
        throw new InvalidArgumentError(`${f}.operator`, `"${e.operator}" is not a valid operator (In, NotIn, Exists, DoesNotExist)`);
    }
    reqs.push({ key: e.key, op: e.operator, values: new Set(e.values ?? []) });
  });
  return selectorFromRequirements([...reqs, ...extra]);
}

export const everything = EVERYTHING;
export const nothing = NOTHING;
