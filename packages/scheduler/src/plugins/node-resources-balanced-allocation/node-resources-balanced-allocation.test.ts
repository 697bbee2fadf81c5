import { describe, expect, it } from 'vitest';
import { scoreRow, type Row } from '../../testing/harness';
import { node, pod } from '../../testing/builders';

const nodes = [node('n1', { alloc: { cpu: '4000m', memory: '10000', pods: '10' } }), node('n2', { alloc: { cpu: '6000m', memory: '10000', pods: '10' } })];

describe('NodeResourcesBalancedAllocation score', () => {
  it.each<{ name: string } & Row & { want: Record<string, number> | 'skip' }>([
    { name: 'uneven use scores lower', pod: pod('p', { req: { cpu: '3000m', memory: '5000' } }), nodes, want: { n1: 87, n2: 100 } },
    { name: 'existing pods count (real requests)', pod: pod('p', { req: { cpu: '1000m', memory: '2000' } }), nodes, existingPods: [pod('e', { node: 'n1', req: { cpu: '1000m', memory: '6000' } })], want: { n1: 85, n2: 98 } },
    { name: 'fractions over 1 are capped', pod: pod('p', { req: { cpu: '8000m', memory: '5000' } }), nodes, want: { n1: 75, n2: 75 } },
    { name: 'best-effort pods are skipped', pod: pod('p'), nodes, want: 'skip' },
    {
      name: 'three resources use the standard deviation', pod: pod('p', { req: { cpu: '2000m', memory: '5000', 'example.com/gpu': '1' } }),
      nodes: [node('n1', { alloc: { cpu: '4000m', memory: '10000', pods: '10', 'example.com/gpu': '4' } })],
      args: { resources: [{ name: 'cpu', weight: 1 }, { name: 'memory', weight: 1 }, { name: 'example.com/gpu', weight: 1 }] },
      want: { n1: 88 },
    },
  ])('$name', (row) => {
    expect(scoreRow('NodeResourcesBalancedAllocation', row)).toEqual(row.want);
  });
});
