import { describe, expect, it } from 'vitest';
import { filterRow, scoreRow, type Row } from '../../testing/harness';
import { node, pod } from '../../testing/builders';

const tainted = (taints: { key: string; value?: string; effect: string }[]) => [node('n1', { taints })];

describe('TaintToleration filter', () => {
  it.each<{ name: string } & Row & { want: string }>([
    { name: 'no taints', pod: pod('p'), nodes: [node('n1')], want: 'Success' },
    { name: 'untolerated NoSchedule taint', pod: pod('p'), nodes: tainted([{ key: 'dedicated', value: 'user1', effect: 'NoSchedule' }]), want: 'UnschedulableAndUnresolvable: node(s) had untolerated taint {dedicated: user1}' },
    { name: 'untolerated NoExecute taint', pod: pod('p'), nodes: tainted([{ key: 'k', value: '', effect: 'NoExecute' }]), want: 'UnschedulableAndUnresolvable: node(s) had untolerated taint {k: }' },
    { name: 'Equal toleration with the same value', pod: pod('p', { tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'user1', effect: 'NoSchedule' }] }), nodes: tainted([{ key: 'dedicated', value: 'user1', effect: 'NoSchedule' }]), want: 'Success' },
    { name: 'default operator is Equal', pod: pod('p', { tolerations: [{ key: 'dedicated', value: 'user1' }] }), nodes: tainted([{ key: 'dedicated', value: 'user1', effect: 'NoSchedule' }]), want: 'Success' },
    { name: 'Equal toleration with another value', pod: pod('p', { tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'user2', effect: 'NoSchedule' }] }), nodes: tainted([{ key: 'dedicated', value: 'user1', effect: 'NoSchedule' }]), want: 'UnschedulableAndUnresolvable: node(s) had untolerated taint {dedicated: user1}' },
    { name: 'Exists toleration ignores the value', pod: pod('p', { tolerations: [{ key: 'dedicated', operator: 'Exists' }] }), nodes: tainted([{ key: 'dedicated', value: 'user1', effect: 'NoSchedule' }]), want: 'Success' },
    { name: 'toleration of another effect', pod: pod('p', { tolerations: [{ key: 'dedicated', operator: 'Exists', effect: 'NoExecute' }] }), nodes: tainted([{ key: 'dedicated', value: 'user1', effect: 'NoSchedule' }]), want: 'UnschedulableAndUnresolvable: node(s) had untolerated taint {dedicated: user1}' },
    { name: 'empty key with Exists tolerates everything', pod: pod('p', { tolerations: [{ operator: 'Exists' }] }), nodes: tainted([{ key: 'a', value: '1', effect: 'NoSchedule' }, { key: 'b', effect: 'NoExecute' }]), want: 'Success' },
    { name: 'PreferNoSchedule never filters', pod: pod('p'), nodes: tainted([{ key: 'a', value: '1', effect: 'PreferNoSchedule' }]), want: 'Success' },
    { name: 'first untolerated taint is reported', pod: pod('p', { tolerations: [{ key: 'a', operator: 'Exists' }] }), nodes: tainted([{ key: 'a', value: '1', effect: 'NoSchedule' }, { key: 'b', value: '2', effect: 'NoSchedule' }]), want: 'UnschedulableAndUnresolvable: node(s) had untolerated taint {b: 2}' },
  ])('$name', (row) => {
    expect(filterRow('TaintToleration', row).n1).toBe(row.want);
  });
});

describe('TaintToleration score (PreferNoSchedule, scored inversely)', () => {
  const nodes = [
    node('n1'),
    node('n2', { taints: [{ key: 'foo', value: 'bar', effect: 'PreferNoSchedule' }] }),
    node('n3', { taints: [{ key: 'foo', value: 'bar', effect: 'PreferNoSchedule' }, { key: 'cpu-type', value: 'arm64', effect: 'PreferNoSchedule' }] }),
    node('n4', { taints: [{ key: 'x', value: 'y', effect: 'NoSchedule' }] }),
  ];
  it.each<{ name: string } & Row & { want: Record<string, number> }>([
    { name: 'more untolerated taints score lower', pod: pod('p'), nodes, want: { n1: 100, n2: 50, n3: 0, n4: 100 } },
    { name: 'tolerated taints do not count', pod: pod('p', { tolerations: [{ key: 'foo', operator: 'Equal', value: 'bar', effect: 'PreferNoSchedule' }] }), nodes, want: { n1: 100, n2: 100, n3: 0, n4: 100 } },
    { name: 'a NoSchedule toleration does not help PreferNoSchedule', pod: pod('p', { tolerations: [{ key: 'foo', operator: 'Exists', effect: 'NoSchedule' }] }), nodes, want: { n1: 100, n2: 50, n3: 0, n4: 100 } },
    { name: 'no PreferNoSchedule taints anywhere: all max', pod: pod('p'), nodes: [node('n1'), node('n2')], want: { n1: 100, n2: 100 } },
  ])('$name', (row) => {
    expect(scoreRow('TaintToleration', row)).toEqual(row.want);
  });
});
