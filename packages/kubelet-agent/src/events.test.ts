// The correlator's three rules with a fake clock: identical events counted, similar ones folded
// after 10 distinct messages in 10 minutes, and the per-object spam filter (burst 25, +1 per 5 min).
import { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { FakeClock } from './clock';
import { EventRecorder, podRef } from './events';
import type { EventSink } from './seams';

class CollectingSink implements EventSink {
  log: { op: 'create' | 'update'; ev: core.Event }[] = [];
  async create(ev: core.Event) { this.log.push({ op: 'create', ev }); return ev; }
  async update(ev: core.Event) { this.log.push({ op: 'update', ev }); return ev; }
}

const pod = (name: string) => podRef(core.Pod.fromPartial({ metadata: { name, namespace: 'shop', uid: `uid-${name}` } }));

function setup() {
  const clock = new FakeClock(Date.parse('2026-05-01T12:00:00Z'));
  const sink = new CollectingSink();
  const rec = new EventRecorder({ clock, sink, host: 'node-a' });
  return { clock, sink, rec };
}

describe('EventRecorder', () => {
  it('writes a Kubernetes-shaped event', async () => {
    const { sink, rec } = setup();
    rec.event(pod('web'), 'Normal', 'Pulled', 'Successfully pulled image "busybox"');
    await rec.flush();
    expect(sink.log).toHaveLength(1);
    const ev = sink.log[0].ev;
    expect(ev).toMatchObject({
      apiVersion: 'v1', kind: 'Event', reason: 'Pulled', type: 'Normal', count: 1,
      involvedObject: { kind: 'Pod', name: 'web', namespace: 'shop', uid: 'uid-web' },
      source: { component: 'kubelet', host: 'node-a' }, reportingComponent: 'kubelet', reportingInstance: 'node-a',
      firstTimestamp: '2026-05-01T12:00:00Z', lastTimestamp: '2026-05-01T12:00:00Z',
    });
    expect(ev.metadata).toMatchObject({ namespace: 'shop' });
    expect(ev.metadata!.name).toMatch(/^web\.[0-9a-f]+$/);
  });

  it('aggregates identical events into one with a growing count', async () => {
    const { clock, sink, rec } = setup();
    for (let i = 0; i < 5; i++) {
      rec.event(pod('web'), 'Warning', 'BackOff', 'Back-off restarting failed container app');
      await clock.advance(10_000);
    }
    await rec.flush();
    expect(sink.log.map((l) => `${l.op}:${l.ev.count}`)).toEqual(['create:1', 'update:2', 'update:3', 'update:4', 'update:5']);
    expect(new Set(sink.log.map((l) => l.ev.metadata!.name)).size).toBe(1);
    const last = sink.log[4].ev;
    expect(last.firstTimestamp).toBe('2026-05-01T12:00:00Z');
    expect(last.lastTimestamp).toBe('2026-05-01T12:00:40Z');
  });

  it('folds similar events after 10 distinct messages within 10 minutes', async () => {
    const { clock, sink, rec } = setup();
    for (let i = 1; i <= 12; i++) {
      rec.event(pod('web'), 'Warning', 'Unhealthy', `Readiness probe failed: attempt ${i}`);
      await clock.advance(1000);
    }
    await rec.flush();
    const msgs = sink.log.map((l) => `${l.op}:${l.ev.count}:${l.ev.message}`);
    expect(msgs.slice(0, 9)).toEqual(Array.from({ length: 9 }, (_, i) => `create:1:Readiness probe failed: attempt ${i + 1}`));
    expect(msgs.slice(9)).toEqual([
      'create:1:(combined from similar events): Readiness probe failed: attempt 10',
      'update:2:(combined from similar events): Readiness probe failed: attempt 11',
      'update:3:(combined from similar events): Readiness probe failed: attempt 12',
    ]);
    // Ten quiet minutes later the similarity window starts over.
    await clock.advance(11 * 60_000);
    rec.event(pod('web'), 'Warning', 'Unhealthy', 'Readiness probe failed: attempt 13');
    await rec.flush();
    expect(sink.log.at(-1)!.ev.message).toBe('Readiness probe failed: attempt 13');
  });

  it('drops events over the per-object burst of 25 and lets one more through every 5 minutes', async () => {
    const { clock, sink, rec } = setup();
    for (let i = 0; i < 30; i++) rec.event(pod('noisy'), 'Normal', `Reason${i}`, 'x');
    rec.event(pod('quiet'), 'Normal', 'Started', 'Started container app');
    await rec.flush();
    expect(sink.log.filter((l) => l.ev.involvedObject!.name === 'noisy')).toHaveLength(25);
    expect(sink.log.filter((l) => l.ev.involvedObject!.name === 'quiet')).toHaveLength(1);
    expect(rec.dropped).toBe(5);
    await clock.advance(5 * 60_000);
    rec.event(pod('noisy'), 'Normal', 'Later1', 'x');
    rec.event(pod('noisy'), 'Normal', 'Later2', 'x');
    await rec.flush();
    expect(sink.log.map((l) => l.ev.reason).filter((r) => r.startsWith('Later'))).toEqual(['Later1']);
    expect(rec.dropped).toBe(6);
  });

  it.each([
    [() => ({ type: 'Error', reason: 'Started' }), /event type: unsupported value "Error"/],
    [() => ({ type: 'Normal', reason: 'not camel' }), /event reason: "not camel" must be CamelCase/],
  ])('refuses bad input %#', (mk, re) => {
    const { rec } = setup();
    const { type, reason } = mk();
    expect(() => rec.event(pod('web'), type as 'Normal', reason, 'm')).toThrow(re);
  });

  it('a failing sink does not stop later events', async () => {
    const clock = new FakeClock();
    const errors: string[] = [];
    let n = 0;
    const written: string[] = [];
    const rec = new EventRecorder({
      clock, host: 'n', onError: (e) => errors.push((e as Error).message),
      sink: { create: async (ev) => { if (n++ === 0) throw new Error('store down'); written.push(ev.reason); return ev; }, update: async (ev) => ev },
    });
    rec.event(pod('a'), 'Normal', 'Pulling', 'p');
    rec.event(pod('a'), 'Normal', 'Pulled', 'p');
    await rec.flush();
    expect(errors).toEqual(['store down']);
    expect(written).toEqual(['Pulled']);
  });
});
