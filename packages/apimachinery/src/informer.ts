// A reflector + informer: list, then watch from the list's resourceVersion, keeping a local
// cache and calling handlers for each change. It resumes a broken watch from the last
// resourceVersion it saw (bookmarks advance it), relists when the server answers 410 Expired,
// and re-delivers every cached object as an update each resync period.
import { EventEmitter } from 'node:events';
import type { core, store } from '@berth/api';
import { BerthError } from '@berth/common';
import { objectKey, type StoreClient } from './client';
import { unwrap } from './kinds';

export interface InformerOptions {
  resource: string;
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Re-deliver every cached object as an update this often (0 = never). */
  resyncMs?: number;
  /** Delay before re-watching after an error (doubles up to 5 s). */
  backoffMs?: number;
  /** Resume from a checkpoint instead of listing first: watch from this version with these
   *  objects in the cache (relisting if the server says the version is too old). */
  resume?: { resourceVersion: string; items: core.Object[] };
}

export interface InformerEvents {
  add: [core.Object];
  update: [core.Object, core.Object];
  delete: [core.Object];
  /** A relist happened (after 410 Expired or at start). */
  relist: [string];
  error: [Error];
}

const rvOf = (o: core.Object) => unwrap(o).value.metadata?.resourceVersion ?? '';

export class Informer extends EventEmitter<InformerEvents> {
  private readonly cache = new Map<string, core.Object>();
  private rv = '';
  private readonly ac = new AbortController();
  private synced!: Promise<void>;
  private resync?: NodeJS.Timeout;
  /** Times the informer listed (1 + relists). */
  lists = 0;

  constructor(private readonly client: StoreClient, private readonly o: InformerOptions) {
    super();
  }

  /** Starts the loop; resolves once the first list is in the cache. */
  start(): Promise<void> {
    let resolve!: () => void;
    this.synced = new Promise((r) => { resolve = r; });
    void this.run(resolve);
    if (this.o.resyncMs) {
      this.resync = setInterval(() => { for (const o of this.cache.values()) this.emit('update', o, o); }, this.o.resyncMs);
      this.resync.unref();
    }
    return this.synced;
  }

  stop(): void {
    this.ac.abort();
    clearInterval(this.resync);
  }

  get resourceVersion(): string {
    return this.rv;
  }
  list(): core.Object[] {
    return [...this.cache.values()];
  }
  get(key: string): core.Object | undefined {
    return this.cache.get(key);
  }

  private async relist(): Promise<void> {
    const r = await this.client.listAll({ resource: this.o.resource, namespace: this.o.namespace ?? '', labelSelector: this.o.labelSelector ?? '', fieldSelector: this.o.fieldSelector ?? '' });
    this.lists++;
    const seen = new Set<string>();
    for (const obj of r.items) {
      const k = objectKey(obj);
      seen.add(k);
      const old = this.cache.get(k);
      this.cache.set(k, obj);
      if (!old) this.emit('add', obj);
      else if (rvOf(old) !== rvOf(obj)) this.emit('update', old, obj);
    }
    for (const [k, old] of this.cache) if (!seen.has(k)) { this.cache.delete(k); this.emit('delete', old); }
    this.rv = r.resourceVersion;
    this.emit('relist', this.rv);
  }

  private apply(e: store.WatchEvent): 'ok' | 'expired' {
    if (e.type === 'ERROR') {
      if (e.error?.code === 410) return 'expired';
      throw new Error(`watch error ${e.error?.code}: ${e.error?.message}`);
    }
    const obj = e.object!;
    const rv = rvOf(obj);
    if (e.type === 'BOOKMARK') { this.rv = rv; return 'ok'; }
    const k = objectKey(obj);
    const old = this.cache.get(k);
    if (e.type === 'DELETED') {
      this.cache.delete(k);
      this.emit('delete', obj);
    } else {
      this.cache.set(k, obj);
      if (old) this.emit('update', old, obj);
      else this.emit('add', obj);
    }
    this.rv = rv;
    return 'ok';
  }

  private async run(synced: () => void): Promise<void> {
    let backoff = this.o.backoffMs ?? 100;
    let needList = true;
    if (this.o.resume) {
      for (const obj of this.o.resume.items) this.cache.set(objectKey(obj), obj);
      this.rv = this.o.resume.resourceVersion;
      needList = false;
      synced();
    }
    while (!this.ac.signal.aborted) {
      try {
        if (needList) {
          await this.relist();
          needList = false;
          synced();
        }
        let expired = false;
        for await (const e of this.client.watch({ resource: this.o.resource, namespace: this.o.namespace ?? '', labelSelector: this.o.labelSelector ?? '', fieldSelector: this.o.fieldSelector ?? '', resourceVersion: this.rv, allowWatchBookmarks: true }, this.ac.signal)) {
          if (this.apply(e) === 'expired') { expired = true; break; }
          backoff = this.o.backoffMs ?? 100;
        }
        if (expired) needList = true;
      } catch (err) {
        if (this.ac.signal.aborted) return;
        if (this.listenerCount('error')) this.emit('error', err instanceof Error ? err : new Error(String(err)));
        if (err instanceof BerthError && err.kind === 'FailedPrecondition') needList = true;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }
}
