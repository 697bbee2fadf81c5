import type { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { filterRow, scoreRow, type Row } from '../../testing/harness';
import { node, pod } from '../../testing/builders';
import { PodInfo } from '../../framework/types';

const req = (...terms: Partial<core.NodeSelectorTerm>[]): core.Affinity => ({
  nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms.map((t) => ({ matchExpressions: [], matchFields: [], ...t })) }, preferredDuringSchedulingIgnoredDuringExecution: [] },
} as core.Affinity);
const expr = (key: string, operator: string, values: string[] = []) => ({ key, operator, values });
const NOT_MATCH = "UnschedulableAndUnresolvable: node(s) didn't match Pod's node affinity/selector";
const nodes = [node('n1', { labels: { foo: 'bar', gpu: '4' } })];

describe('NodeAffinity filter', () => {
  it.each<{ name: string } & Row & { want: string }>([
    { name: 'no selector', pod: pod('p'), nodes, want: 'Success' },
    { name: 'nodeSelector matches', pod: pod('p', { nodeSelector: { foo: 'bar' } }), nodes, want: 'Success' },
    { name: 'nodeSelector does not match', pod: pod('p', { nodeSelector: { foo: 'baz' } }), nodes, want: NOT_MATCH },
    { name: 'In', pod: pod('p', { affinity: req({ matchExpressions: [expr('foo', 'In', ['x', 'bar'])] }) }), nodes, want: 'Success' },
    { name: 'NotIn', pod: pod('p', { affinity: req({ matchExpressions: [expr('foo', 'NotIn', ['bar'])] }) }), nodes, want: NOT_MATCH },
    { name: 'NotIn with a missing label matches', pod: pod('p', { affinity: req({ matchExpressions: [expr('zone', 'NotIn', ['a'])] }) }), nodes, want: 'Success' },
    { name: 'Exists', pod: pod('p', { affinity: req({ matchExpressions: [expr('foo', 'Exists')] }) }), nodes, want: 'Success' },
    { name: 'DoesNotExist', pod: pod('p', { affinity: req({ matchExpressions: [expr('foo', 'DoesNotExist')] }) }), nodes, want: NOT_MATCH },
    { name: 'Gt', pod: pod('p', { affinity: req({ matchExpressions: [expr('gpu', 'Gt', ['3'])] }) }), nodes, want: 'Success' },
    { name: 'Gt not greater', pod: pod('p', { affinity: req({ matchExpressions: [expr('gpu', 'Gt', ['4'])] }) }), nodes, want: NOT_MATCH },
    { name: 'Lt', pod: pod('p', { affinity: req({ matchExpressions: [expr('gpu', 'Lt', ['5'])] }) }), nodes, want: 'Success' },
    { name: 'Gt on a non-integer label value does not match', pod: pod('p', { affinity: req({ matchExpressions: [expr('foo', 'Gt', ['1'])] }) }), nodes, want: NOT_MATCH },
    { name: 'requirements of a term are ANDed', pod: pod('p', { affinity: req({ matchExpressions: [expr('foo', 'Exists'), expr('gpu', 'Lt', ['2'])] }) }), nodes, want: NOT_MATCH },
    { name: 'terms are ORed', pod: pod('p', { affinity: req({ matchExpressions: [expr('foo', 'DoesNotExist')] }, { matchExpressions: [expr('gpu', 'In', ['4'])] }) }), nodes, want: 'Success' },
    { name: 'an empty term matches nothing', pod: pod('p', { affinity: req({}) }), nodes, want: NOT_MATCH },
    { name: 'nodeSelector and affinity are ANDed', pod: pod('p', { nodeSelector: { foo: 'no' }, affinity: req({ matchExpressions: [expr('foo', 'Exists')] }) }), nodes, want: NOT_MATCH },
    { name: 'matchFields metadata.name narrows in PreFilter', pod: pod('p', { affinity: req({ matchFields: [expr('metadata.name', 'In', ['n2'])] }) }), nodes, want: 'NotInPreFilterResult' },
    { name: 'matchFields metadata.name matches', pod: pod('p', { affinity: req({ matchFields: [expr('metadata.name', 'In', ['n1'])] }) }), nodes, want: 'Success' },
    {
      name: 'scheduler-enforced affinity', pod: pod('p'), nodes,
      args: { addedAffinity: req({ matchExpressions: [expr('foo', 'In', ['other'])] }).nodeAffinity },
      want: "UnschedulableAndUnresolvable: node(s) didn't match scheduler-enforced node affinity",
    },
  ])('$name', (row) => {
    expect(filterRow('NodeAffinity', row).n1).toBe(row.want);
  });

  it.each([
    [expr('foo', 'Bad', ['x']), /matchExpressions\[0\]\.operator: "Bad" is not a valid operator/],
    [expr('gpu', 'Gt', ['a']), /matchExpressions\[0\]\.values: operator Gt needs exactly one integer value/],
    [expr('gpu', 'In', []), /matchExpressions\[0\]\.values: must be non-empty for operator In/],
    [expr('gpu', 'Exists', ['1']), /matchExpressions\[0\]\.values: must be empty for operator Exists/],
  ])('rejects the invalid requirement %j naming the field', (e, re) => {
    expect(() => new PodInfo(pod('p', { affinity: req({ matchExpressions: [e] }) }))).toThrow(re);
  });
});

describe('NodeAffinity score (preferred terms)', () => {
  const pref = (...terms: [number, ReturnType<typeof expr>[]][]): core.Affinity => ({
    nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: terms.map(([weight, matchExpressions]) => ({ weight, preference: { matchExpressions, matchFields: [] } })) },
  } as core.Affinity);
  const three = [node('n1', { labels: { foo: 'bar' } }), node('n2', { labels: { foo: 'bar', key: 'value' } }), node('n3')];
  it.each<{ name: string } & Row & { want: Record<string, number> | 'skip' }>([
    { name: 'no preferred terms: skipped', pod: pod('p'), nodes: three, want: 'skip' },
    { name: 'weights add up and normalize to the best node', pod: pod('p', { affinity: pref([2, [expr('foo', 'In', ['bar'])]], [4, [expr('key', 'In', ['value'])]]) }), nodes: three, want: { n1: 33, n2: 100, n3: 0 } },
    { name: 'no node matches: all zero', pod: pod('p', { affinity: pref([5, [expr('none', 'Exists')]]) }), nodes: three, want: { n1: 0, n2: 0, n3: 0 } },
  ])('$name', (row) => {
    expect(scoreRow('NodeAffinity', row)).toEqual(row.want);
  });
});
