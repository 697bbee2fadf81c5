// Leader election and a mutex on etcd v3: each candidate puts `<prefix>/<lease>` under its own
// lease; candidates are ordered by createRevision; one waits for the deletion of its immediate
// predecessor only (no thundering herd) and leads when no older key is left. A candidate that
// dies stops renewing its lease, so its key vanishes after the TTL and the next one takes over.
import { EventEmitter } from 'node:events';
import type { EtcdV3Client } from '../v3/client';
import { EtcdArgumentError } from '../v3/errors';
import type { LeaseKeepAlive } from '../v3/lease';
import type { KeyValue } from '../v3/types';
import { ElectionMutex } from './mutex';

export interface V3ElectionOptions {
  /** Lease TTL in seconds: how long a dead leader keeps its place (default 10). */
  ttl?: number;
}

function checkPrefix(prefix: string): string {
  if (typeof prefix !== 'string' || prefix.length === 0) throw new EtcdArgumentError('prefix', 'must be a non-empty string');
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

/**
 * One candidate in one election. `campaign()` resolves once this candidate leads; 'lost' is
 * emitted (and `lost` resolves) if the lease behind the leadership is lost — the caller must
 * stop acting as leader then.
 */
export class EtcdV3Election extends EventEmitter {
  readonly prefix: string;
  private readonly ttl: number;
  private keepAlive: LeaseKeepAlive | undefined;
  private leaseId: string | undefined;
  private myKey: string | undefined;
  private myRev = 0;
  private abort = new AbortController();
  /** Resolves when leadership (or the candidacy) is lost. */
  lost: Promise<Error> = new Promise(() => undefined);

  constructor(private readonly client: EtcdV3Client, prefix: string, o: V3ElectionOptions = {}) {
    super();
    this.prefix = checkPrefix(prefix);
    this.ttl = o.ttl ?? 10;
    if (!Number.isInteger(this.ttl) || this.ttl <= 0) throw new EtcdArgumentError('ttl', `must be a positive integer number of seconds, got ${String(o.ttl)}`);
  }

  get key(): string | undefined {
    return this.myKey;
  }

  /** Becomes a candidate with `value` and waits until this candidate leads. */
  async campaign(value: string, signal?: AbortSignal): Promise<void> {
    if (this.myKey) throw new Error(`already campaigning as ${this.myKey}`);
    this.abort = new AbortController();
    const lease = await this.client.grantLease(this.ttl);
    this.leaseId = lease.id;
    const ka = this.client.keepAlive(lease.id, { ttl: lease.ttl });
    this.keepAlive = ka;
    this.lost = ka.lost;
    ka.lost.then((err) => { if (this.keepAlive === ka) this.emit('lost', err); });
    const key = `${this.prefix}${lease.id}`;
    // The key is ours alone (it is named after our lease), so this create-or-read can be
    // repeated safely when an attempt fails in flight (a member died under it).
    const createOrRead = () => this.client.txn({
      compare: [{ key, target: 'createRevision', op: '=', value: 0 }],
      success: [{ put: { key, value, lease: lease.id } }],
      failure: [{ get: { key } }],
    });
    let r;
    for (let attempt = 0; ; attempt++) {
      try {
        r = await createOrRead();
        break;
      } catch (err) {
        if (attempt >= 4 || signal?.aborted || (err as { code?: number }).code !== 14 && (err as { code?: number }).code !== 4) {
          await this.resign().catch(() => undefined);
          throw err;
        }
        await new Promise((res) => setTimeout(res, 100 * (attempt + 1)));
      }
    }
    this.myKey = key;
    this.myRev = r.succeeded ? r.revision : (r.responses[0] as { get: { kvs: KeyValue[] } }).get.kvs[0].createRevision;
    const onAbort = () => this.abort.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.waitPredecessors();
    } catch (err) {
      await this.resign().catch(() => undefined);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Waits until no key older than ours is left, watching only the immediate predecessor. */
  private async waitPredecessors(): Promise<void> {
    for (;;) {
      if (this.abort.signal.aborted) throw new Error('campaign aborted');
      const older = await this.client.getPrefix(this.prefix, { maxCreateRevision: this.myRev - 1, sort: { target: 'createRevision', order: 'descend' }, limit: 1 });
      if (older.kvs.length === 0) return;
      const pred = older.kvs[0];
      const w = this.client.watch(pred.key, { startRevision: older.revision + 1, noPut: true, signal: this.abort.signal });
      const lost = this.lost.then((e) => ({ lost: e }));
      const gone = (async () => { for await (const r of w) if (r.events.some((e) => e.type === 'delete')) return undefined; return undefined; })();
      let outcome: { lost: Error } | undefined;
      try {
        outcome = await Promise.race([gone, lost]);
      } finally {
        w.cancel();
      }
      if (outcome) throw outcome.lost;
    }
  }

  /** Replaces the leader's value (only while this candidate still holds its key). */
  async proclaim(value: string): Promise<void> {
    if (!this.myKey) throw new Error('not a candidate');
    const r = await this.client.txn({ compare: [{ key: this.myKey, target: 'createRevision', op: '=', value: this.myRev }], success: [{ put: { key: this.myKey, value, lease: this.leaseId } }] });
    if (!r.succeeded) throw new Error('leadership lost: the election key is gone');
  }

  /** Gives up leadership (or the candidacy) and revokes the lease. */
  async resign(): Promise<void> {
    const ka = this.keepAlive;
    const id = this.leaseId;
    this.abort.abort();
    this.keepAlive = undefined;
    this.myKey = undefined;
    this.leaseId = undefined;
    ka?.stop();
    if (id) await this.client.revokeLease(id).catch(() => undefined);
  }

  /** The current leader's key and value, if any. */
  async leader(): Promise<KeyValue | undefined> {
    return leaderOf(this.client, this.prefix);
  }
}

export async function leaderOf(client: EtcdV3Client, prefix: string): Promise<KeyValue | undefined> {
  const r = await client.getPrefix(checkPrefix(prefix), { sort: { target: 'createRevision', order: 'ascend' }, limit: 1 });
  return r.kvs[0];
}

/**
 * Yields the leader's value every time leadership (or the leader's value) changes; `undefined`
 * while nobody leads.
 */
export async function* observeLeader(client: EtcdV3Client, prefix: string, signal?: AbortSignal): AsyncGenerator<string | undefined> {
  const p = checkPrefix(prefix);
  // The candidates' keys by createRevision, kept from the watch's own events: the leader is the
  // oldest key. Re-reading the leader on each event would fold proclamations that are followed
  // quickly by a resignation; following the events reports every value in order.
  const first = await client.getPrefix(p);
  const keys = new Map<string, { createRevision: number; value: string }>();
  for (const kv of first.kvs) keys.set(kv.key.toString('latin1'), { createRevision: kv.createRevision, value: kv.value.toString() });
  const leader = (): string | undefined => {
    let best: { createRevision: number; value: string } | undefined;
    for (const k of keys.values()) if (!best || k.createRevision < best.createRevision) best = k;
    return best?.value;
  };
  let last = leader();
  yield last;
  const w = client.watch(p, { prefix: true, startRevision: first.revision + 1, signal });
  for await (const res of w) {
    for (const ev of res.events) {
      const k = ev.kv.key.toString('latin1');
      if (ev.type === 'delete') keys.delete(k);
      else keys.set(k, { createRevision: ev.kv.createRevision, value: ev.kv.value.toString() });
      const cur = leader();
      if (cur !== last) {
        last = cur;
        yield cur;
      }
    }
  }
}

/** A distributed mutex: an election whose leader holds the lock (locks are granted in arrival
 *  order, as candidates queue by createRevision). */
export class EtcdV3Mutex extends ElectionMutex<EtcdV3Election> {
  constructor(client: EtcdV3Client, prefix: string, o: V3ElectionOptions = {}) {
    super(new EtcdV3Election(client, prefix, o));
  }
  get key(): string | undefined {
    return this.election.key;
  }
}
