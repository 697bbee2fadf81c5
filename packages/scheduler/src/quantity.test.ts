import { describe, expect, it } from 'vitest';
import { milliValue, parseQuantity, value } from './quantity';

describe('quantities', () => {
  it.each([
    ['100m', 100, 1], ['1', 1000, 1], ['1.5', 1500, 2], ['0.1', 100, 1], ['2k', 2_000_000, 2000],
    ['64Mi', 64 * 2 ** 20 * 1000, 64 * 2 ** 20], ['1G', 1e12, 1e9], ['1Gi', 2 ** 30 * 1000, 2 ** 30], ['2e3', 2_000_000, 2000],
    ['500n', 1, 1], ['.5', 500, 1], ['0.3', 300, 1], ['1.0000001', 1001, 2], ['0', 0, 0],
  ])('%s -> %d milli, %d units (rounded up)', (q, milli, units) => {
    // Twice: the second answer comes from the memo and must be the same.
    for (let i = 0; i < 2; i++) {
      expect(milliValue(q as string)).toBe(milli);
      expect(value(q as string)).toBe(units);
    }
  });
  it.each(['', 'abc', '1.2.3', '5 Mi', '10mi', 'Mi', ' 1'])('rejects %j with an error naming it', (q) => {
    expect(() => parseQuantity(q)).toThrow(/quantities must match/);
    expect(() => milliValue(q)).toThrow(/quantities must match/);
    expect(() => value(q)).toThrow(/quantities must match/);
  });
  it('stays exact where floating point would not: 0.1 + 0.2 CPUs', () => {
    expect(milliValue('0.1') + milliValue('0.2')).toBe(300);
    expect(parseQuantity('0.1').add(parseQuantity('0.2')).milli()).toBe(300n);
  });
});
