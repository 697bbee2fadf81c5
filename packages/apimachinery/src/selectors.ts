// Label selectors (Kubernetes string syntax and metav1.LabelSelector) and field selectors.
//
// String syntax, comma-separated requirements that are ANDed:
//   key=value  key==value  key!=value  key in (a,b)  key notin (a,b)  key  !key
// A `!=` / `notin` requirement matches objects without the key too, as in Kubernetes.
import type { core } from '@berth/api';
import { validateLabelKey, validateLabelValue } from './names';

export class SelectorError extends Error {
  constructor(readonly selector: string, reason: string, readonly field = 'labelSelector') {
    super(`${field}: Invalid value: ${JSON.stringify(selector)}: ${reason}`);
    this.name = 'SelectorError';
  }
}

export type Operator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | 'Equals' | 'NotEquals' | 'Gt' | 'Lt';

export interface Requirement {
  key: string;
  op: Operator;
  values: string[];
}

export class LabelSelector {
  constructor(readonly requirements: Requirement[]) {}

  static everything(): LabelSelector {
    return new LabelSelector([]);
  }

  matches(labels: Record<string, string> | undefined): boolean {
    const l = labels ?? {};
    return this.requirements.every((r) => matchRequirement(r, l));
  }

  isEmpty(): boolean {
    return this.requirements.length === 0;
  }

  toString(): string {
    return this.requirements.map((r) => {
      switch (r.op) {
        case 'Equals': return `${r.key}=${r.values[0]}`;
        case 'NotEquals': return `${r.key}!=${r.values[0]}`;
        case 'In': return `${r.key} in (${r.values.join(',')})`;
        case 'NotIn': return `${r.key} notin (${r.values.join(',')})`;
        case 'Exists': return r.key;
        case 'DoesNotExist': return `!${r.key}`;
        case 'Gt': return `${r.key}>${r.values[0]}`;
        case 'Lt': return `${r.key}<${r.values[0]}`;
      }
    }).join(',');
  }
}

function matchRequirement(r: Requirement, labels: Record<string, string>): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, r.key);
  const v = labels[r.key];
  switch (r.op) {
    case 'Equals':
    case 'In': return has && r.values.includes(v);
    case 'NotEquals':
    case 'NotIn': return !has || !r.values.includes(v);
    case 'Exists': return has;
    case 'DoesNotExist': return !has;
    case 'Gt': return has && /^-?\d+$/.test(v) && Number(v) > Number(r.values[0]);
    case 'Lt': return has && /^-?\d+$/.test(v) && Number(v) < Number(r.values[0]);
  }
}

// Splits on commas that are not inside parentheses.
function splitTerms(s: string, sel: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (depth < 0) throw new SelectorError(sel, 'unbalanced ")"');
    if (ch === ',' && depth === 0) { out.push(cur); cur = ''; continue; }
    cur += ch;
  }
  if (depth !== 0) throw new SelectorError(sel, 'unbalanced "("');
  out.push(cur);
  return out;
}

function checkKey(key: string, sel: string): void {
  const errs = validateLabelKey(key);
  if (errs.length) throw new SelectorError(sel, `key ${JSON.stringify(key)}: ${errs[0]}`);
}
function checkValue(v: string, sel: string): void {
  const errs = validateLabelValue(v);
  if (errs.length) throw new SelectorError(sel, `value ${JSON.stringify(v)}: ${errs[0]}`);
}

/** Parses a label selector string; "" selects everything. */
export function parseLabelSelector(selector: string): LabelSelector {
  const s = selector.trim();
  if (s === '') return LabelSelector.everything();
  const reqs: Requirement[] = [];
  for (const raw of splitTerms(s, selector)) {
    const t = raw.trim();
    if (t === '') throw new SelectorError(selector, 'empty requirement');
    let m: RegExpExecArray | null;
    if ((m = /^(\S+?)\s+(in|notin)\s*\((.*)\)$/.exec(t))) {
      const [, key, op, list] = m;
      checkKey(key, selector);
      const values = list.split(',').map((v) => v.trim());
      if (values.length === 1 && values[0] === '') throw new SelectorError(selector, `${op} requires at least one value`);
      values.forEach((v) => checkValue(v, selector));
      reqs.push({ key, op: op === 'in' ? 'In' : 'NotIn', values: [...new Set(values)].sort() });
    } else if ((m = /^([^=!<>\s]+)\s*(==|=|!=)\s*([^=!\s]*)$/.exec(t))) {
      const [, key, op, value] = m;
      checkKey(key, selector);
      checkValue(value, selector);
      reqs.push({ key, op: op === '!=' ? 'NotEquals' : 'Equals', values: [value] });
    } else if ((m = /^([^=!<>\s]+)\s*([<>])\s*(-?\d+)$/.exec(t))) {
      const [, key, op, value] = m;
      checkKey(key, selector);
      reqs.push({ key, op: op === '>' ? 'Gt' : 'Lt', values: [value] });
    } else if ((m = /^!\s*([^=!<>\s(),]+)$/.exec(t))) {
      checkKey(m[1], selector);
      reqs.push({ key: m[1], op: 'DoesNotExist', values: [] });
    } else if (/^[^=!<>\s(),]+$/.test(t)) {
      checkKey(t, selector);
      reqs.push({ key: t, op: 'Exists', values: [] });
    } else {
      throw new SelectorError(selector, `cannot parse requirement ${JSON.stringify(t)}`);
    }
  }
  return new LabelSelector(reqs);
}

/**
 * A metav1.LabelSelector (matchLabels + matchExpressions). `undefined` selects nothing; an
 * empty one selects everything, as in Kubernetes.
 */
export function labelSelectorFromProto(sel: core.LabelSelector | undefined, field = 'selector'): LabelSelector | null {
  if (!sel) return null;
  const reqs: Requirement[] = [];
  for (const [key, value] of Object.entries(sel.matchLabels ?? {})) reqs.push({ key, op: 'Equals', values: [value] });
  sel.matchExpressions?.forEach((e, i) => {
    const p = `${field}.matchExpressions[${i}]`;
    switch (e.operator) {
      case 'In':
      case 'NotIn':
        if (!e.values.length) throw new SelectorError(e.key, `${p}.values: Required value: must be specified when operator is ${e.operator}`, p);
        reqs.push({ key: e.key, op: e.operator, values: e.values });
        break;
      case 'Exists':
      case 'DoesNotExist':
        if (e.values.length) throw new SelectorError(e.key, `${p}.values: Forbidden: may not be specified when operator is ${e.operator}`, p);
        reqs.push({ key: e.key, op: e.operator, values: [] });
        break;
      default:
        throw new SelectorError(e.operator, `${p}.operator: Unsupported value: ${JSON.stringify(e.operator)}: supported values: "DoesNotExist", "Exists", "In", "NotIn"`, p);
    }
  });
  return new LabelSelector(reqs);
}

// ---- field selectors ----

export interface FieldRequirement {
  field: string;
  op: 'Equals' | 'NotEquals';
  value: string;
}

export class FieldSelector {
  constructor(readonly requirements: FieldRequirement[]) {}
  matches(fields: Record<string, string>): boolean {
    return this.requirements.every((r) => (r.op === 'Equals' ? fields[r.field] === r.value : fields[r.field] !== r.value));
  }
  isEmpty(): boolean {
    return this.requirements.length === 0;
  }
  /** The value an `=` requirement pins a field to, if any (lets the store narrow a scan). */
  exact(field: string): string | undefined {
    return this.requirements.find((r) => r.field === field && r.op === 'Equals')?.value;
  }
}

/**
 * Parses `a=b,c!=d`. `allowed` lists the fields this resource supports; others are refused with
 * Kubernetes' message ("field label not supported").
 */
export function parseFieldSelector(selector: string, allowed: readonly string[]): FieldSelector {
  const s = selector.trim();
  if (s === '') return new FieldSelector([]);
  const reqs: FieldRequirement[] = [];
  for (const raw of s.split(',')) {
    const t = raw.trim();
    const m = /^([A-Za-z0-9_.\-[\]']+)\s*(==|=|!=)\s*(.*)$/.exec(t);
    if (!m) throw new SelectorError(selector, `invalid field selector requirement ${JSON.stringify(t)}`, 'fieldSelector');
    const [, field, op, value] = m;
    if (!allowed.includes(field)) throw new SelectorError(selector, `field label not supported: ${field} (supported: ${allowed.join(', ')})`, 'fieldSelector');
    reqs.push({ field, op: op === '!=' ? 'NotEquals' : 'Equals', value: value.trim() });
  }
  return new FieldSelector(reqs);
}
