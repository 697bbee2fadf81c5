import { describe, expect, it } from 'vitest';
import { filterRow, scoreRow, type Row } from '../../testing/harness';
import { node, pod } from '../../testing/builders';

const n = (alloc: Record<string, string>) => [node('n1', { alloc })];
const ALLOC = { cpu: '10', memory: '20', pods: '32', 'ephemeral-storage': '20', 'example.com/foo': '2' };

describe('NodeResourcesFit filter', () => {
  it.each<{ name: string } & Row & { want: string }>([
    { name: 'no resources requested always fits', pod: pod('p'), nodes: n(ALLOC), existingPods: [pod('e', { node: 'n1', req: { cpu: '10', memory: '20' } })], want: 'Success' },
    { name: 'too many resources fails', pod: pod('p', { req: { cpu: '1', memory: '1' } }), nodes: n(ALLOC), existingPods: [pod('e', { node: 'n1', req: { cpu: '10', memory: '20' } })], want: 'Unschedulable: Insufficient cpu, Insufficient memory' },
    { name: 'fits exactly', pod: pod('p', { req: { cpu: '1', memory: '1' } }), nodes: n(ALLOC), existingPods: [pod('e', { node: 'n1', req: { cpu: '9', memory: '19' } })], want: 'Success' },
    { name: 'too many resources fails due to init container cpu', pod: pod('p', { req: { cpu: '1', memory: '1' }, initContainers: [{ req: { cpu: '3', memory: '1' } }] }), nodes: n(ALLOC), existingPods: [pod('e', { node: 'n1', req: { cpu: '8', memory: '19' } })], want: 'Unschedulable: Insufficient cpu' },
    { name: 'a sidecar keeps running beside later init containers: max(1+1, 1+2) = 3 fits', pod: pod('p', { req: { cpu: '1' }, initContainers: [{ req: { cpu: '1' }, sidecar: true }, { req: { cpu: '2' } }] }), nodes: n(ALLOC), existingPods: [pod('e', { node: 'n1', req: { cpu: '7' } })], want: 'Success' },
    { name: 'sidecar plus init container exceeds free cpu', pod: pod('p', { req: { cpu: '1' }, initContainers: [{ req: { cpu: '1' }, sidecar: true }, { req: { cpu: '2' } }] }), nodes: n(ALLOC), existingPods: [pod('e', { node: 'n1', req: { cpu: '8' } })], want: 'Unschedulable: Insufficient cpu' },
    { name: 'pod overhead counts', pod: pod('p', { req: { cpu: '1' }, overhead: { cpu: '2' } }), nodes: n(ALLOC), existingPods: [pod('e', { node: 'n1', req: { cpu: '8' } })], want: 'Unschedulable: Insufficient cpu' },
    { name: 'millicores', pod: pod('p', { req: { cpu: '500m' } }), nodes: n(ALLOC), existingPods: [pod('e', { node: 'n1', req: { cpu: '9500m' } })], want: 'Success' },
    { name: 'extended resource', pod: pod('p', { req: { 'example.com/foo': '3' } }), nodes: n(ALLOC), want: 'Unschedulable: Insufficient example.com/foo' },
    { name: 'extended resource the node lacks', pod: pod('p', { req: { 'example.com/bar': '1' } }), nodes: n(ALLOC), want: 'Unschedulable: Insufficient example.com/bar' },
    { name: 'ignored extended resource', pod: pod('p', { req: { 'example.com/foo': '3' } }), nodes: n(ALLOC), args: { ignoredResources: ['example.com/foo'] }, want: 'Success' },
    { name: 'ignored resource group', pod: pod('p', { req: { 'example.com/foo': '3' } }), nodes: n(ALLOC), args: { ignoredResourceGroups: ['example.com'] }, want: 'Success' },
    { name: 'ephemeral storage', pod: pod('p', { req: { 'ephemeral-storage': '25' } }), nodes: n(ALLOC), want: 'Unschedulable: Insufficient ephemeral-storage' },
    { name: 'too many pods', pod: pod('p'), nodes: n({ ...ALLOC, pods: '1' }), existingPods: [pod('e', { node: 'n1' })], want: 'Unschedulable: Too many pods' },
    { name: 'memory with binary suffixes', pod: pod('p', { req: { memory: '1Gi' } }), nodes: n({ cpu: '1', memory: '1024Mi', pods: '10' }), want: 'Success' },
  ])('$name', (row) => {
    expect(filterRow('NodeResourcesFit', row).n1).toBe(row.want);
  });
});

describe('NodeResourcesFit score', () => {
  const nodes = [node('n1', { alloc: { cpu: '4000m', memory: '10000', pods: '10' } }), node('n2', { alloc: { cpu: '6000m', memory: '10000', pods: '10' } })];
  it.each<{ name: string } & Row & { want: Record<string, number> }>([
    { name: 'LeastAllocated, differently sized nodes', pod: pod('p', { req: { cpu: '3000m', memory: '5000' } }), nodes, want: { n1: 37, n2: 50 } },
    { name: 'MostAllocated, differently sized nodes', pod: pod('p', { req: { cpu: '3000m', memory: '5000' } }), nodes, args: { scoringStrategy: { type: 'MostAllocated' } }, want: { n1: 62, n2: 50 } },
    {
      name: 'RequestedToCapacityRatio, falling shape', pod: pod('p', { req: { cpu: '3000m', memory: '5000' } }), nodes,
      args: { scoringStrategy: { type: 'RequestedToCapacityRatio', requestedToCapacityRatio: { shape: [{ utilization: 0, score: 10 }, { utilization: 100, score: 0 }] } } },
      want: { n1: 38, n2: 50 },
    },
    {
      name: 'LeastAllocated counts existing pods', pod: pod('p', { req: { cpu: '1000m', memory: '2000' } }), nodes,
      existingPods: [pod('e', { node: 'n2', req: { cpu: '5000m', memory: '2000' } })], want: { n1: 77, n2: 30 },
    },
    {
      name: 'weighted resources', pod: pod('p', { req: { cpu: '3000m', memory: '5000' } }), nodes,
      args: { scoringStrategy: { type: 'LeastAllocated', resources: [{ name: 'cpu', weight: 3 }, { name: 'memory', weight: 1 }] } }, want: { n1: 31, n2: 50 },
    },
  ])('$name', (row) => {
    expect(scoreRow('NodeResourcesFit', row)).toEqual(row.want);
  });

  it('uses 100m/200Mi for containers without requests when scoring', () => {
    const big = [node('n1', { alloc: { cpu: '1', memory: '1Gi', pods: '10' } })];
    // cpu (1000-100)*100/1000 = 90, memory (1024-200)*100/1024 = 80 -> 85
    expect(scoreRow('NodeResourcesFit', { pod: pod('p'), nodes: big })).toEqual({ n1: 85 });
  });
});
