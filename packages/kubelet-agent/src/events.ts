// The event recorder with Kubernetes' correlator, so a crash-looping pod produces a handful of
// events with counts instead of a flood:
//  - identical events (same object, type, reason and message) become one event with a count;
//  - similar events (same object, type and reason, different messages) — once 10 distinct
//    messages arrived within 10 minutes — fold into one "(combined from similar events)" event;
//  - a per-object token bucket (burst 25, one more every 5 minutes) drops the rest.
import { core } from '@berth/api';
import type { Clock } from './clock';
import type { EventSink } from './seams';
import { rfc3339 } from './status/compute';

export type EventType = 'Normal' | 'Warning';

export interface CorrelatorOptions {
  maxSimilar?: number;
  similarWindowMs?: number;
  burst?: number;
  refillEveryMs?: number;
  /** Bound on remembered keys (LRU-ish: oldest dropped first). */
  maxKeys?: number;
}

interface Observed {
  event: core.Event;
}

interface Similar {
  messages: Set<string>;
  last: number;
}

interface Bucket {
  tokens: number;
  last: number;
}

export interface CorrelateResult {
  /** The event to write; undefined when the spam filter dropped it. */
  event?: core.Event;
  /** True when `event` is an update (count bump) of an event written earlier. */
  update: boolean;
}

function objectKey(ref: core.ObjectReference | undefined): string {
  return [ref?.kind, ref?.namespace, ref?.name, ref?.uid, ref?.apiVersion].join('\x00');
}

function sourceKey(e: core.Event): string {
  return [e.source?.component, e.source?.host].join('\x00');
}

class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly max: number) { super(); }
  override set(k: K, v: V): this {
    if (this.has(k)) this.delete(k);
    super.set(k, v);
    if (this.size > this.max) this.delete(this.keys().next().value as K);
    return this;
  }
}

export class EventCorrelator {
  private readonly maxSimilar: number;
  private readonly windowMs: number;
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly similar: BoundedMap<string, Similar>;
  private readonly observed: BoundedMap<string, Observed>;
  private readonly buckets: BoundedMap<string, Bucket>;

  constructor(private readonly clock: Clock, opts: CorrelatorOptions = {}) {
    this.maxSimilar = opts.maxSimilar ?? 10;
    this.windowMs = opts.similarWindowMs ?? 600_000;
    this.burst = opts.burst ?? 25;
    this.refillMs = opts.refillEveryMs ?? 300_000;
    const max = opts.maxKeys ?? 4096;
    this.similar = new BoundedMap(max);
    this.observed = new BoundedMap(max);
    this.buckets = new BoundedMap(max);
  }

  correlate(input: core.Event): CorrelateResult {
    const now = this.clock.now();
    let ev = input;
    // 1. Similar events: the key leaves the message out.
    const aggKey = [sourceKey(ev), objectKey(ev.involvedObject), ev.type, ev.reason, ev.reportingComponent, ev.reportingInstance].join('\x01');
    let rec = this.similar.get(aggKey);
    if (!rec || now - rec.last > this.windowMs) rec = { messages: new Set(), last: now };
    rec.messages.add(ev.message);
    rec.last = now;
    this.similar.set(aggKey, rec);
    let key = `${aggKey}\x01${ev.message}`;
    if (rec.messages.size >= this.maxSimilar) {
      ev = { ...ev, message: `(combined from similar events): ${ev.message}` };
      key = aggKey;
    }
    // 2. Identical events: bump the count of the one written before.
    let update = false;
    const seen = this.observed.get(key);
    if (seen) {
      ev = {
        ...ev,
        metadata: seen.event.metadata,
        count: seen.event.count + 1,
        firstTimestamp: seen.event.firstTimestamp,
        lastTimestamp: rfc3339(now),
      };
      update = true;
    }
    // 3. Spam filter per source + object (also for count bumps, as in Kubernetes).
    const sk = `${sourceKey(ev)}\x01${objectKey(ev.involvedObject)}`;
    const b = this.buckets.get(sk) ?? { tokens: this.burst, last: now };
    b.tokens = Math.min(this.burst, b.tokens + (now - b.last) / this.refillMs);
    b.last = now;
    this.buckets.set(sk, b);
    if (b.tokens < 1) return { update: false };
    b.tokens -= 1;
    this.observed.set(key, { event: ev });
    return { event: ev, update };
  }
}

export interface EventRecorderOptions {
  clock: Clock;
  sink: EventSink;
  component?: string;
  host: string;
  correlator?: CorrelatorOptions;
  onError?: (err: unknown, ev: core.Event) => void;
}

/** Records events about pods and the node; writes go out in the background, in order. */
export class EventRecorder {
  readonly correlator: EventCorrelator;
  private chain: Promise<void> = Promise.resolve();
  private seq = 0;
  dropped = 0;

  constructor(private readonly opts: EventRecorderOptions) {
    this.correlator = new EventCorrelator(opts.clock, opts.correlator);
  }

  event(obj: core.ObjectReference, type: EventType, reason: string, message: string): void {
    if (type !== 'Normal' && type !== 'Warning') throw new TypeError(`event type: unsupported value ${JSON.stringify(type)} (Normal, Warning)`);
    if (!/^[A-Z][A-Za-z0-9]*$/.test(reason)) throw new TypeError(`event reason: ${JSON.stringify(reason)} must be CamelCase`);
    if (!obj.name) throw new TypeError('involvedObject.name: Required value');
    const now = this.opts.clock.now();
    const ts = rfc3339(now);
    const component = this.opts.component ?? 'kubelet';
    // Unique names: the object's name plus a hex timestamp (as Kubernetes does) and a counter
    // for events made in the same nanosecond-free millisecond.
    const name = `${obj.name}.${(BigInt(now) * 1_000_000n + BigInt(this.seq++ % 1_000_000)).toString(16)}`;
    const ev = core.Event.fromPartial({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace: obj.namespace || 'default' },
      involvedObject: obj,
      reason,
      message: message.length > 1024 ? `${message.slice(0, 1021)}...` : message,
      source: { component, host: this.opts.host },
      firstTimestamp: ts,
      lastTimestamp: ts,
      count: 1,
      type,
      reportingComponent: component,
      reportingInstance: this.opts.host,
    });
    const r = this.correlator.correlate(ev);
    if (!r.event) {
      this.dropped++;
      return;
    }
    const out = r.event;
    this.chain = this.chain.then(async () => {
      try {
        if (r.update) await this.opts.sink.update(out);
        else await this.opts.sink.create(out);
      } catch (e) {
        this.opts.onError?.(e, out);
      }
    });
  }

  /** Resolves when every event recorded so far has been handed to the sink. */
  flush(): Promise<void> {
    return this.chain;
  }
}

export function podRef(pod: core.Pod, fieldPath = ''): core.ObjectReference {
  const m = pod.metadata;
  return core.ObjectReference.fromPartial({ kind: 'Pod', apiVersion: 'v1', namespace: m?.namespace || 'default', name: m?.name ?? '', uid: m?.uid ?? '', fieldPath });
}
