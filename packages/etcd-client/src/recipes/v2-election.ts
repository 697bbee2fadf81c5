// Leader election and a mutex on the etcd v2 keys API: the leader owns one key with a TTL,
// created with prevExist=false (exactly one create wins) and kept alive by TTL refreshes that
// compare the value (prevValue = this candidate's id), so a candidate whose key expired can
// never refresh someone else's. Losers watch the key and retry when it is deleted or expires.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { EtcdV2Client } from '../v2/client';
import { EtcdError, EtcdErrorCode } from '../v2/errors';
import { normalizeKey } from '../v2/client';
import { EtcdArgumentError } from '../v3/errors';
import { ElectionMutex } from './mutex';

export interface V2ElectionOptions {
  /** Key TTL in seconds (default 10): how long a dead leader keeps the key. */
  ttl?: number;
}

export class EtcdV2Election extends EventEmitter {
  readonly key: string;
  readonly ttl: number;
  /** This candidate's unique token (the key's value while it leads). */
  readonly id: string;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private resolveLost: (e: Error) => void = () => undefined;
  /** Resolves when leadership is lost (key expired, deleted or taken). */
  lost: Promise<Error> = new Promise(() => undefined);

  constructor(private readonly client: EtcdV2Client, key: string, o: V2ElectionOptions = {}) {
    super();
    this.key = normalizeKey(key);
    this.ttl = o.ttl ?? 10;
    if (!Number.isInteger(this.ttl) || this.ttl <= 0) throw new EtcdArgumentError('ttl', `must be a positive integer number of seconds, got ${String(o.ttl)}`);
    this.id = randomBytes(8).toString('hex');
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Waits until this candidate holds the key; the key's value is `<id>` and `value` is kept
   *  alongside as `<id>:<value>`. */
  async campaign(value = '', signal?: AbortSignal): Promise<void> {
    if (this.leading) throw new Error('already leading');
    const mine = `${this.id}:${value}`;
    for (;;) {
      if (signal?.aborted) throw new Error('campaign aborted');
      try {
        await this.client.create(this.key, mine, { ttl: this.ttl });
        this.startRefresh(mine);
        return;
      } catch (e) {
        if (!(e instanceof EtcdError)) {
          // In flight when a member failed: the create may have happened. Our value is unique,
          // so reading the key tells; otherwise try again.
          await new Promise((r) => setTimeout(r, 200));
          const v = await this.client.get(this.key, { quorum: true }).then((r) => r.node.value, () => undefined);
          if (v === mine) { this.startRefresh(mine); return; }
          continue;
        }
        if (e.errorCode !== EtcdErrorCode.NodeExist) throw e;
      }
      // Someone leads: wait for the key to go (delete, expire or compareAndDelete).
      let cur;
      try {
        cur = await this.client.get(this.key, { quorum: true });
      } catch (e) {
        if (e instanceof EtcdError && e.errorCode === EtcdErrorCode.KeyNotFound) continue;
        throw e;
      }
      const w = this.client.watch(this.key, { afterIndex: cur.node.modifiedIndex, signal });
      try {
        for await (const r of w) if (r.action === 'delete' || r.action === 'expire' || r.action === 'compareAndDelete' || r.action === 'resync') break;
      } finally {
        w.cancel();
      }
    }
  }

  private startRefresh(mine: string): void {
    this.leading = true;
    this.lost = new Promise((r) => { this.resolveLost = r; });
    const every = Math.max(200, Math.floor((this.ttl * 1000) / 3));
    const tick = async () => {
      try {
        await this.client.set(this.key, '', { refresh: true, ttl: this.ttl, prevValue: mine });
      } catch (e) {
        if (e instanceof EtcdError && (e.errorCode === EtcdErrorCode.KeyNotFound || e.errorCode === EtcdErrorCode.TestFailed)) {
          this.stepDown(e);
          return;
        }
        // Transient (a member died): try again at the next tick; the TTL gives us time.
      }
      if (this.leading) this.timer = setTimeout(() => void tick(), every);
    };
    this.timer = setTimeout(() => void tick(), every);
  }

  private stepDown(err: Error): void {
    if (!this.leading) return;
    this.leading = false;
    clearTimeout(this.timer);
    this.emit('lost', err);
    this.resolveLost(err);
  }

  /** Gives up leadership: deletes the key only if it is still ours. */
  async resign(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    clearTimeout(this.timer);
    try {
      const cur = await this.client.get(this.key, { quorum: true });
      if (cur.node.value?.startsWith(`${this.id}:`)) await this.client.delete(this.key, { prevValue: cur.node.value });
    } catch (e) {
      if (!(e instanceof EtcdError) || (e.errorCode !== EtcdErrorCode.KeyNotFound && e.errorCode !== EtcdErrorCode.TestFailed)) throw e;
    }
  }

  /** The leader's value, if someone leads. */
  async leader(): Promise<string | undefined> {
    return v2LeaderOf(this.client, this.key);
  }
}

export async function v2LeaderOf(client: EtcdV2Client, key: string): Promise<string | undefined> {
  try {
    const v = (await client.get(key, { quorum: true })).node.value ?? '';
    return v.slice(v.indexOf(':') + 1);
  } catch (e) {
    if (e instanceof EtcdError && e.errorCode === EtcdErrorCode.KeyNotFound) return undefined;
    throw e;
  }
}

/** A distributed mutex on v2: the election's leader holds the lock. */
export class EtcdV2Mutex extends ElectionMutex<EtcdV2Election> {
  constructor(client: EtcdV2Client, key: string, o: V2ElectionOptions = {}) {
    super(new EtcdV2Election(client, key, o));
  }
}
