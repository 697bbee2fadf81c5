// The queue with a fake clock: order, backoff, unschedulable pods moved back only by events
// that can help them, the move-request race, gates and the leftover flush.
import { describe, expect, it } from 'vitest';
import type { ClusterEvent, QueuedPodInfo } from './framework/interfaces';
import { PrioritySort } from './plugins/priority-sort/priority-sort';
import { SchedulingGates } from './plugins/scheduling-gates/scheduling-gates';
import { PodInfo } from './framework/types';
import { SchedulingQueue } from './queue';
import { pod } from './testing/builders';

function setup(events: Record<string, ClusterEvent[]> = { NodeResourcesFit: ['NodeAdd', 'AssignedPodDelete'], TaintToleration: ['NodeTaintChange'] }) {
  const clock = { t: 1_000_000 };
  const sort = new PrioritySort();
  const gates = new SchedulingGates();
  const q = new SchedulingQueue({
    now: () => clock.t,
    less: (a, b) => sort.less(a, b),
    preEnqueue: (p) => gates.preEnqueue(p)?.withPlugin('SchedulingGates') ?? null,
    helps: (qp, ev) => [...qp.unschedulablePlugins].some((pl) => events[pl]?.includes(ev)),
  });
  const add = (name: string, o: Parameters<typeof pod>[1] = {}) => q.add(new PodInfo(pod(name, o)));
  const fail = (qp: QueuedPodInfo, plugins: string[], cycle = q.schedulingCycle) => { qp.unschedulablePlugins = new Set(plugins); q.addUnschedulable(qp, cycle); };
  return { q, clock, add, fail };
}

describe('SchedulingQueue', () => {
  it('pops by priority, then by arrival', () => {
    const { q, clock, add } = setup();
    add('low', { priority: 1 }); clock.t += 1;
    add('high', { priority: 100 }); clock.t += 1;
    add('low2', { priority: 1 }); clock.t += 1;
    add('high2', { priority: 100 });
    expect([1, 2, 3, 4].map(() => q.tryPop()!.info.name)).toEqual(['high', 'high2', 'low', 'low2']);
    expect(q.tryPop()).toBeUndefined();
  });

  it('backs off 1s, doubling to at most 10s', () => {
    const { q } = setup();
    expect([1, 2, 3, 4, 5, 6, 10].map((n) => q.backoffDuration(n))).toEqual([1000, 2000, 4000, 8000, 10000, 10000, 10000]);
  });

  it('keeps an unschedulable pod until an event that can help it, then waits out the backoff', () => {
    const { q, clock, add, fail } = setup();
    add('p');
    const qp = q.tryPop()!;
    fail(qp, ['NodeResourcesFit']);
    expect(q.where('default/p')).toBe('unschedulable');
    // A taint change cannot help a pod that did not fit for resources.
    expect(q.moveAllToActiveOrBackoff('NodeTaintChange')).toBe(0);
    expect(q.where('default/p')).toBe('unschedulable');
    clock.t += 200;
    expect(q.moveAllToActiveOrBackoff('NodeAdd')).toBe(1);
    // First failure: 1 s backoff from when it failed.
    expect(q.where('default/p')).toBe('backoff');
    clock.t += 700;
    q.flushBackoffCompleted();
    expect(q.where('default/p')).toBe('backoff');
    clock.t += 400;
    q.flushBackoffCompleted();
    expect(q.where('default/p')).toBe('active');
    expect(q.tryPop()!.attempts).toBe(2);
  });

  it('an event during the pod\'s own cycle sends it to backoff instead of unschedulable', () => {
    const { q, add, fail } = setup();
    add('p');
    const qp = q.tryPop()!;
    const cycle = q.schedulingCycle;
    q.moveAllToActiveOrBackoff('NodeAdd');
    fail(qp, ['NodeResourcesFit'], cycle);
    expect(q.where('default/p')).toBe('backoff');
  });

  it('a failure with an error goes to backoff', () => {
    const { q, add } = setup();
    add('p');
    const qp = q.tryPop()!;
    q.addUnschedulable(qp, q.schedulingCycle, true);
    expect(q.where('default/p')).toBe('backoff');
  });

  it('unschedulable pods are retried after 5 minutes without events', () => {
    const { q, clock, add, fail } = setup();
    add('p');
    fail(q.tryPop()!, ['NodeResourcesFit']);
    clock.t += 4 * 60_000;
    q.flushUnschedulableLeftover();
    expect(q.where('default/p')).toBe('unschedulable');
    clock.t += 61_000;
    q.flushUnschedulableLeftover();
    expect(q.where('default/p')).toBe('active');
  });

  it('gated pods wait until an update removes their gates', () => {
    const { q, add } = setup();
    add('p', { gates: ['example.com/wait'] });
    expect(q.where('default/p')).toBe('unschedulable');
    expect(q.list()[0].q.lastFailure).toBe('waiting for scheduling gates: [example.com/wait]');
    expect(q.moveAllToActiveOrBackoff('NodeAdd')).toBe(0);
    q.update(new PodInfo(pod('p')));
    expect(q.where('default/p')).toBe('active');
  });

  it('pop waits for a pod and close releases waiters', async () => {
    const { q, add } = setup();
    const waiting = q.pop();
    add('p');
    expect((await waiting)!.info.name).toBe('p');
    const again = q.pop();
    q.close();
    expect(await again).toBeUndefined();
  });

  it('remembers nominated pods per node', () => {
    const { q } = setup();
    const a = new PodInfo(pod('a'));
    q.addNominated(a, 'n1');
    expect(q.nominatedPodsForNode('n1').map((p) => p.name)).toEqual(['a']);
    q.addNominated(a, 'n2');
    expect(q.nominatedPodsForNode('n1')).toEqual([]);
    q.delete('default/a');
    expect(q.nominatedPodsForNode('n2')).toEqual([]);
  });
});
