// The flags of `npm run chaos` (pure logic; the run itself needs a whole cluster and is not part
// of `npm test`: `npm run chaos -- --duration 60s`).
import { describe, expect, it } from 'vitest';
import { parseChaosArgs } from './chaos';

describe('parseChaosArgs', () => {
  it('defaults: 3 minutes, 200 pods, 2 bridge nodes, a kill every ~20 s', () => {
    expect(parseChaosArgs([])).toMatchObject({ durationMs: 180_000, pods: 200, nodes: 2, network: 'bridge', killEveryMs: 20_000 });
  });
  it('takes every flag', () => {
    expect(parseChaosArgs(['--duration', '60s', '--pods', '50', '--nodes', '3', '--network', 'routed', '--kill-every', '5s', '--results', '/tmp/x']))
      .toEqual({ durationMs: 60_000, pods: 50, nodes: 3, network: 'routed', killEveryMs: 5_000, resultsDir: '/tmp/x' });
  });
  it('names the bad flag', () => {
    expect(() => parseChaosArgs(['--duration', '1s'])).toThrow(/--duration/);
    expect(() => parseChaosArgs(['--pods', '0'])).toThrow(/--pods/);
    expect(() => parseChaosArgs(['--network', 'mesh'])).toThrow(/network/);
    expect(() => parseChaosArgs(['--bogus'])).toThrow(/bogus/);
  });
});
