// The v3 storage backend: one key per object, resourceVersion = the key's modRevision, every
// conditional write one etcd transaction (so quota usage and the object it pays for change
// together or not at all).
import { EtcdCompactedError, EtcdV3Client, prefixEnd, type Compare, type KeyValue, type TxnOp } from '../v3';
import { RevisionCompactedError, type BackendWatchBatch, type CommitResult, type Guard, type ListOptions, type ListResult, type Mutation, type StorageBackend, type StoredKV } from './backend';

function toStored(kv: KeyValue): StoredKV {
  return { key: kv.key.toString(), value: kv.value, modRevision: kv.modRevision, createRevision: kv.createRevision };
}

export class EtcdV3Backend implements StorageBackend {
  readonly api = 'v3' as const;
  constructor(readonly client: EtcdV3Client) {}

  async get(key: string): Promise<{ kv: StoredKV | undefined; revision: number }> {
    const r = await this.client.range(key);
    return { kv: r.kvs[0] ? toStored(r.kvs[0]) : undefined, revision: r.revision };
  }

  async list(prefix: string, o: ListOptions = {}): Promise<ListResult> {
    try {
      const start = o.startKey && o.startKey > prefix ? o.startKey : prefix;
      const end = prefixEnd(Buffer.from(prefix));
      const r = await this.client.range(start, { end, limit: o.limit ?? 0, revision: o.revision ?? 0 });
      return { kvs: r.kvs.map(toStored), revision: o.revision || r.revision, more: r.more };
    } catch (e) {
      if (e instanceof EtcdCompactedError) throw new RevisionCompactedError(o.revision ?? 0, e.compactRevision);
      throw e;
    }
  }

  async commit(guards: Guard[], mutations: Mutation[]): Promise<CommitResult> {
    const compare: Compare[] = guards.map((g) => ({ key: g.key, target: 'modRevision', op: '=', value: g.modRevision }));
    const success: TxnOp[] = mutations.map((m) => ('delete' in m ? { delete: { key: m.key } } : { put: { key: m.key, value: m.value } }));
    const r = await this.client.txn({ compare, success, failure: [] });
    return { ok: r.succeeded, revision: r.revision };
  }

  async *watch(prefix: string, afterRevision: number, signal: AbortSignal): AsyncIterable<BackendWatchBatch> {
    const w = this.client.watch(prefix, { prefix: true, startRevision: afterRevision + 1, prevKv: true, progressNotify: true, signal });
    try {
      for await (const resp of w) {
        const events = resp.events.map((e) => ({ type: e.type, kv: toStored(e.kv), prevKv: e.prevKv ? toStored(e.prevKv) : undefined }));
        const last = events.length ? events[events.length - 1].kv.modRevision : Math.max(afterRevision, resp.revision);
        yield { events, revision: last };
      }
    } catch (e) {
      if (e instanceof EtcdCompactedError) throw new RevisionCompactedError(afterRevision, e.compactRevision);
      throw e;
    } finally {
      w.cancel();
    }
  }

  async currentRevision(): Promise<number> {
    return (await this.client.range('\0', { countOnly: true, limit: 1 })).revision;
  }

  close(): void {
    this.client.close();
  }
}

