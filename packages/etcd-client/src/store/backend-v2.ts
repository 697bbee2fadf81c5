// The v2 storage backend (--etcd-api=v2): the same interface over etcd's v2 keys API.
// Values are the protobuf bytes in base64 (v2 stores text); resourceVersion = modifiedIndex.
// v2 has no multi-key transactions: a commit with several guarded writes applies them one
// compare-and-swap at a time (quota usage first, then the object) and undoes the usage writes
// if the object's own write loses; each write is still exact, the set is not atomic as on v3.
// v2 cannot read at a past index, so list pages are read at the current state, and a watch
// whose history etcd no longer holds (1000 events) ends with 410 Expired.
import { EtcdError, EtcdErrorCode, type EtcdV2Client, type V2Node, type V2Response } from '../v2';
import { RevisionCompactedError, type BackendWatchBatch, type CommitResult, type Guard, type ListOptions, type ListResult, type Mutation, type StorageBackend, type StoredKV } from './backend';

function toStored(n: V2Node): StoredKV {
  return { key: n.key, value: Buffer.from(n.value ?? '', 'base64'), modRevision: n.modifiedIndex, createRevision: n.createdIndex };
}

function leaves(n: V2Node, out: V2Node[]): V2Node[] {
  if (n.dir) for (const c of n.nodes ?? []) leaves(c, out);
  else out.push(n);
  return out;
}

const isCode = (e: unknown, code: number) => e instanceof EtcdError && e.errorCode === code;

export class EtcdV2Backend implements StorageBackend {
  readonly api = 'v2' as const;
  constructor(readonly client: EtcdV2Client) {}

  async get(key: string): Promise<{ kv: StoredKV | undefined; revision: number }> {
    try {
      const r = await this.client.get(key, { quorum: true });
      return { kv: r.node.dir ? undefined : toStored(r.node), revision: r.etcdIndex };
    } catch (e) {
      if (isCode(e, EtcdErrorCode.KeyNotFound)) return { kv: undefined, revision: (e as EtcdError).index };
      throw e;
    }
  }

  async list(prefix: string, o: ListOptions = {}): Promise<ListResult> {
    const dir = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix.slice(0, prefix.lastIndexOf('/'));
    let r: V2Response;
    try {
      r = await this.client.get(dir, { recursive: true, quorum: true });
    } catch (e) {
      if (isCode(e, EtcdErrorCode.KeyNotFound)) return { kvs: [], revision: (e as EtcdError).index, more: false };
      throw e;
    }
    let kvs = leaves(r.node, []).filter((n) => n.key.startsWith(prefix) && (!o.startKey || n.key >= o.startKey)).map(toStored);
    kvs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let more = false;
    if (o.limit && kvs.length > o.limit) { kvs = kvs.slice(0, o.limit); more = true; }
    return { kvs, revision: r.etcdIndex, more };
  }

  private async writeOne(m: Mutation, g: Guard | undefined): Promise<number | undefined> {
    try {
      if ('delete' in m) {
        const r = await this.client.delete(m.key, g ? { prevIndex: g.modRevision || undefined } : {});
        return r.node.modifiedIndex;
      }
      const value = m.value.toString('base64');
      const r = await this.client.set(m.key, value, g ? (g.modRevision === 0 ? { prevExist: false } : { prevIndex: g.modRevision }) : {});
      return r.node.modifiedIndex;
    } catch (e) {
      if (isCode(e, EtcdErrorCode.TestFailed) || isCode(e, EtcdErrorCode.NodeExist) || isCode(e, EtcdErrorCode.KeyNotFound)) return undefined;
      throw e;
    }
  }

  async commit(guards: Guard[], mutations: Mutation[]): Promise<CommitResult> {
    const guardOf = (k: string) => guards.find((g) => g.key === k);
    // Guards on keys that are not written (none in the Store today) are checked first.
    for (const g of guards) {
      if (mutations.some((m) => m.key === g.key)) continue;
      const cur = await this.get(g.key);
      if ((cur.kv?.modRevision ?? 0) !== g.modRevision) return { ok: false, revision: cur.revision };
    }
    const [main, ...rest] = mutations;
    const applied: { m: Mutation; index: number; before: StoredKV | undefined }[] = [];
    for (const m of rest) {
      const before = (await this.get(m.key)).kv;
      const idx = await this.writeOne(m, guardOf(m.key));
      if (idx === undefined) { await this.undo(applied); return { ok: false, revision: (await this.get(m.key)).revision }; }
      applied.push({ m, index: idx, before });
    }
    const idx = main ? await this.writeOne(main, guardOf(main.key)) : 0;
    if (idx === undefined) { await this.undo(applied); return { ok: false, revision: (await this.get(main.key)).revision }; }
    return { ok: true, revision: idx };
  }

  // Puts back what a failed commit had already written, unless someone changed it since.
  private async undo(applied: { m: Mutation; index: number; before: StoredKV | undefined }[]): Promise<void> {
    for (const a of applied.reverse()) {
      if (a.before) await this.writeOne({ key: a.m.key, value: a.before.value }, { key: a.m.key, modRevision: a.index });
      else await this.writeOne({ key: a.m.key, delete: true }, { key: a.m.key, modRevision: a.index });
    }
  }

  async *watch(prefix: string, afterRevision: number, signal: AbortSignal): AsyncIterable<BackendWatchBatch> {
    const dir = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix.slice(0, prefix.lastIndexOf('/'));
    const w = this.client.watch(dir, { recursive: true, afterIndex: afterRevision, signal });
    try {
      for await (const r of w) {
        if (r.action === 'resync') throw new RevisionCompactedError(afterRevision, r.etcdIndex);
        if (r.node.dir || !r.node.key.startsWith(prefix)) continue;
        const del = r.action === 'delete' || r.action === 'compareAndDelete' || r.action === 'expire';
        const kv = toStored({ ...r.node, value: del ? r.prevNode?.value : r.node.value });
        kv.modRevision = r.node.modifiedIndex;
        yield { events: [{ type: del ? 'delete' : 'put', kv, prevKv: r.prevNode ? toStored(r.prevNode) : undefined }], revision: r.node.modifiedIndex };
        afterRevision = r.node.modifiedIndex;
      }
    } finally {
      w.cancel();
    }
  }

  async currentRevision(): Promise<number> {
    return (await this.get('/')).revision;
  }

  close(): void {
    (this.client as { close?: () => void }).close?.();
  }
}
