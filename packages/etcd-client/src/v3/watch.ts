// A v3 watcher on its own gRPC stream. It remembers the next revision it needs: after every
// batch of events (last modRevision + 1) and every progress notification (header.revision + 1).
// When the stream breaks (member killed, no leader, keepalive timeout) it reopens on the next
// endpoint from exactly that revision and drops anything older, so the caller sees every event
// once, in order. If that revision was compacted meanwhile, the iteration throws
// EtcdCompactedError: the caller must relist and watch again from the list's revision.
import { EventEmitter } from 'node:events';
import { WatchCreateRequest_FilterType, WatchService, type WatchRequest, type WatchResponse as PbWatchResponse } from '../gen/etcdserverpb/rpc';
import { Event_EventType } from '../gen/mvccpb/kv';
import type { KeyRangeOptions } from './client';
import type { Connection } from './connection';
import type { GrpcError, GrpcStream } from './grpc-channel';
import { EtcdArgumentError, EtcdAuthError, EtcdCompactedError, EtcdV3Error, fromGrpcError } from './errors';
import { checkRevision, fromPbKv, prefixEnd, toBuffer, type Bytes, type KeyValue } from './types';

export interface WatchOptions extends KeyRangeOptions {
  /** First revision to report (inclusive); default: changes after the watch is created. */
  startRevision?: number;
  /** Include the previous key-value in each event. */
  prevKv?: boolean;
  /** Ask etcd for periodic empty responses that advance the resume revision; they are yielded
   *  as `{ events: [], progressNotify: true }`. */
  progressNotify?: boolean;
  noPut?: boolean;
  noDelete?: boolean;
  signal?: AbortSignal;
  /** Responses buffered for a slow consumer before the stream is paused (default 1024). */
  highWaterMark?: number;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KeyValue;
  prevKv?: KeyValue;
}

export interface WatchResponse {
  events: WatchEvent[];
  /** Store revision when etcd sent this response. */
  revision: number;
  progressNotify: boolean;
}

const END = Symbol('end');
type Item = WatchResponse | Error | typeof END;

export class Watcher extends EventEmitter implements AsyncIterable<WatchResponse> {
  /** Resolves once etcd confirms the watch (events after that revision are delivered). */
  readonly ready: Promise<void>;
  /** How many times the stream was re-established. */
  reconnects = 0;
  private nextRev: bigint;
  private readonly create: WatchRequest;
  private call: GrpcStream<WatchRequest, PbWatchResponse> | undefined;
  private endpoint = 0;
  private queue: Item[] = [];
  private waiter: (() => void) | undefined;
  private done = false;
  private paused = false;
  private backoff = 50;
  private timer: NodeJS.Timeout | undefined;
  private resolveReady!: () => void;
  private rejectReady!: (e: Error) => void;
  private readonly highWaterMark: number;
  private readonly wantProgress: boolean;

  constructor(private readonly conn: Connection, key: Bytes, private readonly o: WatchOptions, private readonly onClose: () => void) {
    super();
    const n = (o.prefix ? 1 : 0) + (o.end !== undefined ? 1 : 0) + (o.fromKey ? 1 : 0);
    if (n > 1) throw new EtcdArgumentError('watch', 'prefix, end and fromKey exclude each other');
    const k = toBuffer(key, 'watch.key', !!(o.prefix || o.fromKey));
    if (o.highWaterMark !== undefined && (!Number.isInteger(o.highWaterMark) || o.highWaterMark < 1)) throw new EtcdArgumentError('watch.highWaterMark', 'must be a positive integer');
    this.nextRev = checkRevision(o.startRevision, 'watch.startRevision');
    this.highWaterMark = o.highWaterMark ?? 1024;
    this.wantProgress = !!o.progressNotify;
    const filters: WatchCreateRequest_FilterType[] = [];
    if (o.noPut) filters.push(WatchCreateRequest_FilterType.NOPUT);
    if (o.noDelete) filters.push(WatchCreateRequest_FilterType.NODELETE);
    const zero = Buffer.from([0]);
    this.create = {
      createRequest: {
        key: k.length ? k : zero,
        rangeEnd: o.prefix ? (k.length ? prefixEnd(k) : zero) : o.fromKey ? zero : o.end !== undefined ? toBuffer(o.end, 'watch.end', false) : Buffer.alloc(0),
        startRevision: 0n,
        progressNotify: this.wantProgress,
        filters,
        prevKv: !!o.prevKv,
        watchId: 0n,
        fragment: false,
      },
    };
    this.ready = new Promise<void>((res, rej) => { this.resolveReady = res; this.rejectReady = rej; });
    this.ready.catch(() => undefined);
    if (o.signal) {
      if (o.signal.aborted) queueMicrotask(() => this.cancel());
      else o.signal.addEventListener('abort', this.onAbort, { once: true });
    }
    void this.connect();
  }

  /** The revision the watcher resumes from after a reconnect. */
  get nextRevision(): number {
    return Number(this.nextRev);
  }

  private async connect(): Promise<void> {
    if (this.done) return;
    try {
      const { call, endpoint } = await this.conn.bidi(WatchService.watch, { hasleader: 'true' });
      if (this.done) { call.cancel(); return; }
      this.call = call;
      this.endpoint = endpoint;
      call.on('data', (r: PbWatchResponse) => { if (this.call === call) this.onData(r); });
      call.on('error', (e: GrpcError) => { if (this.call === call) this.onBroken(e); });
      call.on('end', () => { if (this.call === call) this.onBroken(undefined); });
      if (this.paused) call.pause();
      this.create.createRequest!.startRevision = this.nextRev;
      call.write(this.create);
    } catch (e) {
      if (e instanceof EtcdV3Error && (e instanceof EtcdAuthError || e.code === 3)) this.fail(e);
      else this.retryLater();
    }
  }

  private onData(r: PbWatchResponse): void {
    if (this.done) return;
    const headerRev = r.header?.revision ?? 0n;
    if (r.compactRevision > 0n) {
      this.fail(new EtcdCompactedError(Number(r.compactRevision), this.conn.endpoints[this.endpoint].url));
      return;
    }
    if (r.canceled) {
      const reason = r.cancelReason || 'watch canceled by etcd';
      if (/permission denied|auth/i.test(reason)) this.fail(new EtcdAuthError(reason, 7, this.conn.endpoints[this.endpoint].url));
      else this.onBroken(undefined);
      return;
    }
    if (r.created) {
      if (this.nextRev === 0n) this.nextRev = headerRev + 1n;
      this.backoff = 50;
      this.resolveReady();
      if (r.events.length === 0) return;
    }
    if (r.events.length === 0) {
      // Progress notification: every later event on this stream is newer than headerRev.
      if (headerRev + 1n > this.nextRev) this.nextRev = headerRev + 1n;
      if (this.wantProgress) this.push({ events: [], revision: Number(headerRev), progressNotify: true });
      return;
    }
    const events: WatchEvent[] = [];
    for (const ev of r.events) {
      const kv = ev.kv!;
      if (kv.modRevision < this.nextRev) continue; // already delivered before a reconnect
      const out: WatchEvent = { type: ev.type === Event_EventType.DELETE ? 'delete' : 'put', kv: fromPbKv(kv) };
      if (ev.prevKv) out.prevKv = fromPbKv(ev.prevKv);
      events.push(out);
    }
    if (events.length === 0) return;
    this.nextRev = r.events[r.events.length - 1].kv!.modRevision + 1n;
    this.push({ events, revision: Number(headerRev), progressNotify: false });
  }

  private onBroken(err: GrpcError | undefined): void {
    if (this.done) return;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    if (err && this.conn.onStreamError(err, this.endpoint) === 'fatal') {
      this.fail(fromGrpcError(err, this.conn.endpoints[this.endpoint].url));
      return;
    }
    if (!err) this.conn.failover(this.endpoint);
    this.retryLater();
  }

  private retryLater(): void {
    if (this.done || this.timer) return;
    if (this.conn.isClosed) { this.fail(new EtcdV3Error('etcd client is closed', 1)); return; }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reconnects++;
      this.emit('reconnect', this.conn.activeEndpoint);
      void this.connect();
    }, this.backoff);
    this.backoff = Math.min(this.backoff * 2, 1000);
  }

  private push(item: Item): void {
    this.queue.push(item);
    if (!this.paused && this.queue.length >= this.highWaterMark) {
      this.paused = true;
      this.call?.pause();
    }
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private fail(err: Error): void {
    if (this.done) return;
    this.rejectReady(err);
    this.push(err);
    this.stop();
  }

  /** The caller's signal ends the watch; its listener goes when the watch ends otherwise (a
   * long-lived signal passed to watch after watch, e.g. on each relist, must not gather them). */
  private readonly onAbort = (): void => this.cancel();

  private stop(): void {
    this.done = true;
    this.o.signal?.removeEventListener('abort', this.onAbort);
    clearTimeout(this.timer);
    this.timer = undefined;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.onClose();
  }

  /** Asks etcd for a progress notification now (yielded only with `progressNotify`). */
  requestProgress(): void {
    this.call?.write({ progressRequest: {} });
  }

  /** Stops the watch; a pending iteration ends normally. */
  cancel(): void {
    if (this.done) return;
    this.rejectReady(new EtcdV3Error('watch canceled', 1));
    this.push(END);
    this.stop();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchResponse> {
    try {
      for (;;) {
        if (this.queue.length === 0) {
          await new Promise<void>((r) => { this.waiter = r; });
          continue;
        }
        const item = this.queue.shift()!;
        if (this.paused && this.queue.length <= this.highWaterMark >> 1) {
          this.paused = false;
          this.call?.resume();
        }
        if (item === END) return;
        if (item instanceof Error) throw item;
        yield item;
      }
    } finally {
      this.cancel();
    }
  }
}
