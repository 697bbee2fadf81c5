// Keeping a v3 lease alive over the LeaseKeepAlive stream. A renewal is sent every TTL/3; when
// the stream breaks the keeper moves to another endpoint and goes on. The lease is reported
// lost (event 'lost', promise `lost`) when etcd answers TTL <= 0 or when no renewal succeeded
// before the last granted TTL ran out — whoever holds the lease must then stop acting on it.
import { EventEmitter } from 'node:events';
import { LeaseService, type LeaseKeepAliveRequest, type LeaseKeepAliveResponse } from '../gen/etcdserverpb/rpc';
import type { Connection } from './connection';
import type { GrpcError, GrpcStream } from './grpc-channel';
import { EtcdArgumentError, EtcdLeaseNotFoundError, EtcdV3Error, fromGrpcError } from './errors';
import { leaseToWire } from './types';

export interface KeepAliveOptions {
  /** Renewal interval; default a third of the TTL etcd reports. */
  intervalMs?: number;
  /** The lease's TTL in seconds, if known: until the first renewal succeeds, the lease counts
   *  as lost only after this long (default: the client's request timeout). */
  ttl?: number;
  /** @internal */
  once?: boolean;
}

export class LeaseKeepAlive extends EventEmitter {
  /** Resolves with the reason when the lease is lost (never rejects). */
  readonly lost: Promise<Error>;
  /** TTL of the last renewal, in seconds. */
  ttl = 0;
  private readonly wireId: bigint;
  private call: GrpcStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> | undefined;
  private endpoint = 0;
  private timer: NodeJS.Timeout | undefined;
  private expiresAt = 0;
  private stopped = false;
  private resolveLost!: (e: Error) => void;
  private onceWaiter: { resolve: (ttl: number) => void; reject: (e: Error) => void } | undefined;

  constructor(private readonly conn: Connection, readonly id: string, private readonly o: KeepAliveOptions, private readonly onClose: () => void = () => undefined) {
    super();
    this.wireId = leaseToWire(id, 'id');
    if (o.intervalMs !== undefined && (!Number.isInteger(o.intervalMs) || o.intervalMs < 10)) throw new EtcdArgumentError('intervalMs', 'must be an integer >= 10');
    if (o.ttl !== undefined && (!Number.isInteger(o.ttl) || o.ttl <= 0)) throw new EtcdArgumentError('ttl', 'must be a positive integer number of seconds');
    this.lost = new Promise((r) => { this.resolveLost = r; });
  }

  /** @internal */
  start(): void {
    this.expiresAt = Date.now() + (this.o.ttl ? this.o.ttl * 1000 : this.conn.requestTimeoutMs);
    void this.open();
  }

  /** @internal one renewal on a short-lived stream. */
  renewOnce(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.onceWaiter = { resolve, reject };
      const t = setTimeout(() => this.finishOnce(new EtcdV3Error('lease keepalive timed out', 4)), this.conn.requestTimeoutMs);
      const done = this.onceWaiter;
      this.onceWaiter = {
        resolve: (v) => { clearTimeout(t); done.resolve(v); },
        reject: (e) => { clearTimeout(t); done.reject(e); },
      };
      void this.open();
    });
  }

  private finishOnce(err: Error | undefined, ttl = 0): void {
    const w = this.onceWaiter;
    this.onceWaiter = undefined;
    this.stopped = true;
    this.call?.cancel();
    if (!w) return;
    if (err) w.reject(err);
    else w.resolve(ttl);
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    try {
      const { call, endpoint } = await this.conn.bidi(LeaseService.leaseKeepAlive);
      if (this.stopped) { call.cancel(); return; }
      this.call = call;
      this.endpoint = endpoint;
      call.on('data', (r: LeaseKeepAliveResponse) => { if (this.call === call) this.onData(r); });
      call.on('error', (e: GrpcError) => { if (this.call === call) this.onBroken(e); });
      call.on('end', () => { if (this.call === call) this.onBroken(undefined); });
      this.send();
    } catch (e) {
      if (this.onceWaiter) this.finishOnce(e as Error);
      else this.schedule(200);
    }
  }

  private send(): void {
    this.call?.write({ ID: this.wireId });
  }

  private onData(r: LeaseKeepAliveResponse): void {
    if (r.TTL <= 0n) {
      const err = new EtcdLeaseNotFoundError(`etcd lease ${this.id} expired or was revoked`, this.conn.endpoints[this.endpoint].url);
      if (this.onceWaiter) { this.finishOnce(err); return; }
      this.markLost(err);
      return;
    }
    this.ttl = Number(r.TTL);
    if (this.onceWaiter) { this.finishOnce(undefined, this.ttl); return; }
    this.expiresAt = Date.now() + this.ttl * 1000;
    this.emit('keepalive', this.ttl);
    this.schedule(this.o.intervalMs ?? Math.max(100, Math.floor((this.ttl * 1000) / 3)));
  }

  private onBroken(err: GrpcError | undefined): void {
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    if (this.stopped) return;
    if (this.onceWaiter) {
      this.finishOnce(err ? fromGrpcError(err, this.conn.endpoints[this.endpoint].url) : new EtcdV3Error('lease keepalive stream ended', 14));
      return;
    }
    if (err && this.conn.onStreamError(err, this.endpoint) === 'fatal') {
      this.markLost(fromGrpcError(err, this.conn.endpoints[this.endpoint].url));
      return;
    }
    if (!err) this.conn.failover(this.endpoint);
    this.schedule(100);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (Date.now() > this.expiresAt) {
        this.markLost(new EtcdLeaseNotFoundError(`etcd lease ${this.id}: no renewal succeeded before its TTL ran out`));
        return;
      }
      if (this.call) this.send();
      else void this.open();
      // No answer within the interval: the next tick tries again (and the deadline check runs).
      if (!this.stopped && !this.timer) this.schedule(Math.max(100, Math.min(1000, this.o.intervalMs ?? ((this.ttl * 1000) / 3 || 1000))));
    }, ms);
  }

  private markLost(err: Error): void {
    if (this.stopped) return;
    this.stop();
    this.emit('lost', err);
    this.resolveLost(err);
  }

  /** Stops renewing (the lease then expires after its TTL unless revoked). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.call?.cancel();
    this.call = undefined;
    this.onClose();
  }
}
