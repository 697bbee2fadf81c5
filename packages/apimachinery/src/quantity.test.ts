import { describe, expect, it } from 'vitest';
import { Quantity, addResourceLists, formatResourceList, isQuantity } from './quantity';

describe('quantities', () => {
  it.each([
    ['100m', 100_000_000n, '100m'],
    ['1.5', 1_500_000_000n, '1500m'],
    ['0.1', 100_000_000n, '100m'],
    ['64Mi', 64n * 1024n * 1024n * 1_000_000_000n, '64Mi'],
    ['1G', 1_000_000_000n * 1_000_000_000n, '1G'],
    ['1e3', 1000n * 1_000_000_000n, '1k'],
    ['1.5Gi', 1536n * 1024n * 1024n * 1_000_000_000n, '1536Mi'],
    ['2', 2_000_000_000n, '2'],
    ['1n', 1n, '1n'],
    ['0.5n', 1n, '1n'], // below a nano rounds up, as Kubernetes does
    ['-1', -1_000_000_000n, '-1'],
    ['+3k', 3_000_000_000_000n, '3k'],
    ['.5', 500_000_000n, '500m'],
  ])('%s = %s nanos, canonical %s', (input, nanos, canon) => {
    const q = Quantity.parse(input);
    expect(q.nanos).toBe(nanos);
    expect(q.toString()).toBe(canon);
  });

  it.each(['', 'abc', '1.2.3', '10 Mi', '1mi', 'Mi', '1KiB', ' 1', '1e', '--1'])('rejects %j', (s) => {
    expect(isQuantity(s)).toBe(false);
    expect(() => Quantity.parse(s)).toThrow(/quantities must match/);
  });

  it('compares across suffixes', () => {
    expect(Quantity.parse('1Gi').cmp(Quantity.parse('1G'))).toBe(1);
    expect(Quantity.parse('1000m').cmp(Quantity.parse('1'))).toBe(0);
    expect(Quantity.parse('999m').cmp(Quantity.parse('1'))).toBe(-1);
    expect(Quantity.parse('1024Ki').cmp(Quantity.parse('1Mi'))).toBe(0);
  });

  it('adds exactly', () => {
    expect(Quantity.parse('0.1').add(Quantity.parse('0.2')).toString()).toBe('300m');
    expect(formatResourceList(addResourceLists({ cpu: '250m', memory: '64Mi' }, { cpu: '250m', memory: '64Mi' }, undefined))).toEqual({ cpu: '500m', memory: '128Mi' });
    expect(Quantity.parse('1Gi').add(Quantity.parse('512Mi')).toString()).toBe('1536Mi');
    expect(Quantity.parse('1').sub(Quantity.parse('250m')).toString()).toBe('750m');
  });

  it('gives milli-units and whole units rounded up', () => {
    expect(Quantity.parse('1.5').milli()).toBe(1500n);
    expect(Quantity.parse('1n').milli()).toBe(1n);
    expect(Quantity.parse('64Mi').value()).toBe(67108864n);
  });
});
