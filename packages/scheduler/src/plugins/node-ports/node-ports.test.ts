import { describe, expect, it } from 'vitest';
import { filterRow, type Row } from '../../testing/harness';
import { node, pod } from '../../testing/builders';

const CONFLICT = "Unschedulable: node(s) didn't have free ports for the requested pod ports";
const existing = (port: number, protocol = 'TCP', ip?: string) => [pod('e', { node: 'n1', hostPorts: [{ port, protocol, ip }] })];

describe('NodePorts filter', () => {
  it.each<{ name: string } & Row & { want: string }>([
    { name: 'nothing in use', pod: pod('p', { hostPorts: [{ port: 8080 }] }), nodes: [node('n1')], want: 'Success' },
    { name: 'same port and protocol', pod: pod('p', { hostPorts: [{ port: 8080 }] }), nodes: [node('n1')], existingPods: existing(8080), want: CONFLICT },
    { name: 'other protocol', pod: pod('p', { hostPorts: [{ port: 8080, protocol: 'UDP' }] }), nodes: [node('n1')], existingPods: existing(8080), want: 'Success' },
    { name: 'other port', pod: pod('p', { hostPorts: [{ port: 8081 }] }), nodes: [node('n1')], existingPods: existing(8080), want: 'Success' },
    { name: 'different host IPs', pod: pod('p', { hostPorts: [{ port: 8080, ip: '127.0.0.2' }] }), nodes: [node('n1')], existingPods: existing(8080, 'TCP', '127.0.0.1'), want: 'Success' },
    { name: 'wildcard against a specific IP', pod: pod('p', { hostPorts: [{ port: 8080 }] }), nodes: [node('n1')], existingPods: existing(8080, 'TCP', '127.0.0.1'), want: CONFLICT },
    { name: 'specific IP against the wildcard', pod: pod('p', { hostPorts: [{ port: 8080, ip: '127.0.0.1' }] }), nodes: [node('n1')], existingPods: existing(8080), want: CONFLICT },
    { name: 'no host ports requested', pod: pod('p'), nodes: [node('n1')], existingPods: existing(8080), want: 'Success' },
  ])('$name', (row) => {
    expect(filterRow('NodePorts', row).n1).toBe(row.want);
  });
});
