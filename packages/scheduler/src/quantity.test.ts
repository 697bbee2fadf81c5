import { describe, expect, it } from 'vitest';
import { milliValue, parseQuantity, value } from './quantity';

describe('quantities', () => {
  it.each([
    ['100m', 100, 1], ['1', 1000, 1], ['1.5', 1500, 2], ['0.1', 100, 1], ['2k', 2_000_000, 2000],
    ['64Mi', 64 * 2 ** 20 * 1000, 64 * 2 ** 20], ['1G', 1e12, 1e9], ['1Gi', 2 ** 30 * 1000, 2 ** 30], ['2e3', 2_000_000, 2000],
    ['500n', 1, 1], ['.5', 500, 1],
  ])('%s -> %d milli, %d units (rounded up)', (q, milli, units) => {
    expect(milliValue(q as string)).toBe(milli);
    expect(value(q as string)).toBe(units);
  });
  it.each(['', 'abc', '1.2.3', '5 Mi', '10mi', 'Mi'])('rejects %j with a clear error', (q) => {
    expect(() => parseQuantity(q)).toThrow(/is not a valid quantity/);
  });
});
