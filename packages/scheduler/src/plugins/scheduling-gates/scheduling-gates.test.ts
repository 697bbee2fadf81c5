import { describe, expect, it } from 'vitest';
import { PodInfo } from '../../framework/types';
import { Code } from '../../framework/status';
import { pod } from '../../testing/builders';
import { SchedulingGates } from './scheduling-gates';

describe('SchedulingGates PreEnqueue', () => {
  it.each([
    { name: 'no gates', gates: [], want: null },
    { name: 'one gate', gates: ['example.com/a'], want: 'waiting for scheduling gates: [example.com/a]' },
    { name: 'two gates', gates: ['a', 'b'], want: 'waiting for scheduling gates: [a b]' },
  ])('$name', ({ gates, want }) => {
    const s = new SchedulingGates().preEnqueue(new PodInfo(pod('p', { gates })));
    if (want === null) expect(s).toBeNull();
    else expect([s!.code, s!.message]).toEqual([Code.UnschedulableAndUnresolvable, want]);
  });
});
