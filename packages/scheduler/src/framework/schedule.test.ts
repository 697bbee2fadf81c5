import { describe, expect, it } from 'vitest';
import { FitError, numFeasibleNodesToFind } from './schedule';
import { Code, Status } from './status';
import { PodInfo } from './types';
import { pod } from '../testing/builders';

describe('percentageOfNodesToScore', () => {
  it.each([
    // [percentage, nodes, want]
    [0, 50, 50], [0, 99, 99], [0, 100, 100], [0, 500, 230], [0, 1000, 420], [0, 5000, 500], [0, 6000, 300], [0, 10000, 500],
    [30, 1000, 300], [10, 500, 100], [100, 5000, 5000], [50, 150, 100],
  ])('percentage %d of %d nodes -> %d to find', (p, n, want) => {
    expect(numFeasibleNodesToFind(p, n)).toBe(want);
  });
});

describe('FitError message', () => {
  it('counts each reason and sorts them like kube-scheduler', () => {
    const st = (code: Code, ...r: string[]) => new Status(code, r);
    const err = new FitError(new PodInfo(pod('p')), 5, new Map([
      ['a', st(Code.Unschedulable, 'Insufficient cpu')],
      ['b', st(Code.Unschedulable, 'Insufficient cpu', 'Insufficient memory')],
      ['c', st(Code.Unschedulable, 'Insufficient cpu')],
      ['d', st(Code.UnschedulableAndUnresolvable, 'node(s) had untolerated taint {k: v}')],
      ['e', st(Code.UnschedulableAndUnresolvable, 'node(s) had untolerated taint {k: v}')],
    ]));
    expect(err.summary()).toBe('0/5 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint {k: v}, 3 Insufficient cpu.');
    err.postFilterMsg = 'preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling.';
    expect(err.summary()).toMatch(/cpu\. preemption: 0\/5 nodes are available: 5 Preemption is not helpful for scheduling\.$/);
  });
  it('reports a PreFilter rejection once', () => {
    expect(new FitError(new PodInfo(pod('p')), 3, new Map(), 'waiting for scheduling gates').summary()).toBe('0/3 nodes are available: waiting for scheduling gates.');
  });
});
