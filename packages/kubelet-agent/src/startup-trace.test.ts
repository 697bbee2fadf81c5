// The start-up trace on a fake clock: phases timed and summed, the annotation, and the
// Prometheus histograms as the metrics endpoint would expose them.
import { createRegistry } from '@berth/common';
import { describe, expect, it } from 'vitest';
import { FakeClock } from './clock';
import { StartupMetrics, StartupTrace } from './startup-trace';

describe('StartupTrace', () => {
  it('times each phase and reports running/ready since creation', async () => {
    const clock = new FakeClock(1_000_000);
    const trace = new StartupTrace(clock, 1_000_000 - 40);
    trace.add('scheduling', 12);
    trace.begin('sandbox');
    await clock.advance(7);
    trace.end('sandbox');
    await trace.time('network', () => clock.advance(9));
    for (const d of [3, 4]) await trace.time('containerStart', () => clock.advance(d));
    trace.running();
    await clock.advance(20);
    trace.ready();
    trace.ready(); // only the first counts
    expect(trace.summary()).toEqual({ phasesMs: { scheduling: 12, sandbox: 7, network: 9, containerStart: 7 }, runningMs: 63, readyMs: 83 });
    expect(JSON.parse(trace.annotation())).toEqual({ phasesMs: { scheduling: 12, sandbox: 7, network: 9, containerStart: 7 }, runningMs: 63, readyMs: 83 });
    expect(() => trace.end('image')).toThrow(/phase image ended without begin/);
    expect(() => trace.begin('warp' as never)).toThrow(/phase: unknown "warp"/);

    const registry = createRegistry('kubelet-agent-test');
    const m = new StartupMetrics(registry);
    trace.observe(m);
    const text = await registry.metrics();
    expect(text).toMatch(/berth_kubelet_pod_start_phase_seconds_bucket\{le="0.01",.*phase="sandbox"\} 1/);
    expect(text).toMatch(/berth_kubelet_pod_start_phase_seconds_sum\{.*phase="network"\} 0.009/);
    expect(text).toMatch(/berth_kubelet_pod_start_seconds_count\{.*until="ready"\} 1/);
  });
});
