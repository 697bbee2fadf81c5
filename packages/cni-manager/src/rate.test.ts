// Bandwidth annotations through apimachinery's quantity parser, and tc-style fault rates.
import { describe, expect, it } from 'vitest';
import { parseBandwidth, parseTcRate } from './rate';

const F = 'annotations[kubernetes.io/ingress-bandwidth]';

describe('parseBandwidth', () => {
  it.each([
    ['10M', 10_000_000], ['1G', 1_000_000_000], ['1Gi', 2 ** 30], ['500k', 500_000], ['1.5M', 1_500_000], ['100Mi', 100 * 2 ** 20], ['1e6', 1_000_000], ['1P', 1e15], [' 10M ', 10_000_000],
  ])('%s is %d bit/s', (q, bits) => expect(parseBandwidth(q, F)).toBe(bits));

  it.each([
    ['10 potatoes', /expected a quantity like 10M or 1Gi, got '10 potatoes'/],
    ['', /expected a quantity/],
    ['100', /is below the 1k bit\/s minimum/],
    ['100m', /is below the 1k bit\/s minimum/],
    ['-1M', /is negative/],
    ['2P', /is above the 1P bit\/s maximum/],
  ])('%j is refused naming the annotation', (q, why) => {
    expect(() => parseBandwidth(q, F)).toThrow(new RegExp(`^annotations\\[kubernetes.io/ingress-bandwidth\\]: (\\S* )?${why.source}`));
  });
});

describe('parseTcRate', () => {
  it.each([['1mbit', 1e6], ['500kbit', 5e5], ['1gbit', 1e9], ['2mbps', 16e6], ['8000', 8000]])('%s is %d bit/s', (r, bits) => expect(parseTcRate(r, 'rate')).toBe(bits));
  it('refuses unknown units and tiny rates naming the field', () => {
    expect(() => parseTcRate('1 furlong', 'rate')).toThrow(/^rate: expected a tc rate like 1mbit/);
    expect(() => parseTcRate('10bit', 'rate')).toThrow(/^rate: 10bit is below 1kbit/);
  });
});
