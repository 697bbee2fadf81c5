import { describe, expect, it } from 'vitest';
import { filterRow, type Row } from '../../testing/harness';
import { node, pod } from '../../testing/builders';

describe('NodeUnschedulable filter', () => {
  it.each<{ name: string } & Row & { want: string }>([
    { name: 'schedulable node', pod: pod('p'), nodes: [node('n1')], want: 'Success' },
    { name: 'cordoned node', pod: pod('p'), nodes: [node('n1', { unschedulable: true })], want: 'UnschedulableAndUnresolvable: node(s) were unschedulable' },
    {
      name: 'cordoned node, pod tolerates the unschedulable taint', nodes: [node('n1', { unschedulable: true })],
      pod: pod('p', { tolerations: [{ key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' }] }), want: 'Success',
    },
  ])('$name', (row) => {
    expect(filterRow('NodeUnschedulable', row).n1).toBe(row.want);
  });
});
