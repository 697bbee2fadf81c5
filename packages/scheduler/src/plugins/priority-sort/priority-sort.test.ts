import { describe, expect, it } from 'vitest';
import type { QueuedPodInfo } from '../../framework/interfaces';
import { PodInfo } from '../../framework/types';
import { pod } from '../../testing/builders';
import { PrioritySort } from './priority-sort';

const q = (priority: number | undefined, timestamp: number): QueuedPodInfo => ({
  info: new PodInfo(pod(`p${priority}-${timestamp}`, { priority })), timestamp, initialAttemptTimestamp: timestamp, attempts: 0,
  unschedulablePlugins: new Set(), pendingPlugins: new Set(), lastFailure: '', gated: false,
});

describe('PrioritySort', () => {
  it.each([
    { name: 'higher priority first', a: q(100, 2), b: q(10, 1), want: true },
    { name: 'lower priority later', a: q(10, 1), b: q(100, 2), want: false },
    { name: 'equal priority: earlier first', a: q(5, 1), b: q(5, 2), want: true },
    { name: 'equal priority: later second', a: q(5, 2), b: q(5, 1), want: false },
    { name: 'unset priority is 0', a: q(undefined, 2), b: q(-1, 1), want: true },
  ])('$name', ({ a, b, want }) => {
    expect(new PrioritySort().less(a, b)).toBe(want);
  });
});
