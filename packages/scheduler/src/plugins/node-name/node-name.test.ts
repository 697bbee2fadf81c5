import { describe, expect, it } from 'vitest';
import { filterRow, type Row } from '../../testing/harness';
import { node, pod } from '../../testing/builders';

describe('NodeName filter', () => {
  it.each<{ name: string } & Row & { want: Record<string, string> }>([
    { name: 'no node name', pod: pod('p'), nodes: [node('n1'), node('n2')], want: { n1: 'Success', n2: 'Success' } },
    { name: 'named node only', pod: pod('p', { node: 'n2' }), nodes: [node('n1'), node('n2')], want: { n1: "UnschedulableAndUnresolvable: node(s) didn't match the requested node name", n2: 'Success' } },
  ])('$name', (row) => {
    expect(filterRow('NodeName', row)).toEqual(row.want);
  });
});
