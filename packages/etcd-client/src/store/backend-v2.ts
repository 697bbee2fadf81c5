// The v2 storage backend (--etcd-api=v2): the same interface over etcd's v2 keys API.
// Values are the protobuf bytes in base64 (v2 stores text); resourceVersion = modifiedIndex.
// v2 has no multi-key transactions. A commit of one key is one compare-and-swap. A commit of
// several keys (an object and its quota usage) runs under a commit lock (a TTL key created with
// prevExist=false, one per key root such as /registry) and leaves an intent record with every
// write's guard and previous value before it writes: the writes go one compare-and-swap at a
// time (usage first, then the object) and are undone if one loses. Multi-key commits are thus
// serialised against each other, and a committer that dies half-way is repaired by the next
// one (rolled forward if every guard still holds, else rolled back). What v2 cannot give:
// readers and watchers may see the usage written a moment before the object (v3 shows both at
// one revision), and a single-key write that races the window can still force a roll-back.
// v2 cannot read at a past index, so list pages are read at the current state, and a watch
// whose history etcd no longer holds (1000 events) ends with 410 Expired.
import { randomUUID } from 'node:crypto';
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

const LOCK = '.commit-lock';
const INTENT = '.commit-intent';
/** A holder that dies frees the lock after this long. */
const LOCK_TTL_S = 10;
const LOCK_WAIT_MS = 30_000;

/** What a multi-key commit is about to write: value null = delete; guard null = unguarded. */
interface Intent {
  writes: { key: string; value: string | null; guard: number | null; before: string | null }[];
}

/** "/registry/pods/ns/name" -> "/registry": the lock and intent of the Store's keys live there. */
function rootOf(key: string): string {
  const seg = key.split('/')[1];
  return seg ? `/${seg}` : '';
}

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
    if (mutations.length <= 1 && guards.every((g) => mutations.some((m) => m.key === g.key))) return this.apply(guards, mutations);
    return this.withCommitLock(rootOf(mutations[0]?.key ?? guards[0].key), async (root) => {
      const intentKey = `${root}/${INTENT}`;
      const intent: Intent = { writes: [] };
      for (const m of mutations) {
        const before = (await this.get(m.key)).kv;
        intent.writes.push({ key: m.key, value: 'delete' in m ? null : m.value.toString('base64'), guard: guards.find((g) => g.key === m.key)?.modRevision ?? null, before: before ? before.value.toString('base64') : null });
      }
      await this.client.set(intentKey, JSON.stringify(intent));
      try {
        return await this.apply(guards, mutations);
      } finally {
        await this.client.delete(intentKey).catch(() => undefined);
      }
    });
  }

  /** The guarded writes, one compare-and-swap at a time; the others undone if one loses. */
  private async apply(guards: Guard[], mutations: Mutation[]): Promise<CommitResult> {
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

  // One multi-key commit at a time per key root: in this process through a promise chain (so
  // waiters do not spin on etcd), across processes through the lock key.
  private readonly local = new Map<string, Promise<unknown>>();
  private readonly owner = randomUUID();
  private seq = 0;

  private async withCommitLock<T>(root: string, f: (root: string) => Promise<T>): Promise<T> {
    const prev = this.local.get(root) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(async () => {
      const lock = `${root}/${LOCK}`;
      const id = `${this.owner}/${++this.seq}`;
      const deadline = Date.now() + LOCK_WAIT_MS;
      for (let wait = 2; ; wait = Math.min(wait * 2, 20)) {
        try {
          await this.client.set(lock, id, { prevExist: false, ttl: LOCK_TTL_S });
          break;
        } catch (e) {
          if (!isCode(e, EtcdErrorCode.NodeExist)) throw e;
          if (Date.now() > deadline) throw new Error(`etcd v2 commit lock ${lock} is held by another writer for more than ${LOCK_WAIT_MS / 1000}s`);
          await new Promise((r) => setTimeout(r, wait + Math.random() * wait));
        }
      }
      try {
        await this.recover(root);
        return await f(root);
      } finally {
        await this.client.delete(lock, { prevValue: id }).catch(() => undefined);
      }
    });
    this.local.set(root, run);
    try {
      return await run;
    } finally {
      if (this.local.get(root) === run) this.local.delete(root);
    }
  }

  /** Repairs the commit of a writer that died holding the lock: forward if it still can, else back. */
  private async recover(root: string): Promise<void> {
    const intentKey = `${root}/${INTENT}`;
    let intent: Intent;
    try {
      intent = JSON.parse((await this.client.get(intentKey, { quorum: true })).node.value ?? '') as Intent;
    } catch (e) {
      if (isCode(e, EtcdErrorCode.KeyNotFound)) return;
      if (e instanceof SyntaxError) { await this.client.delete(intentKey).catch(() => undefined); return; }
      throw e;
    }
    const state = await Promise.all(intent.writes.map(async (w) => {
      const cur = (await this.get(w.key)).kv;
      const curValue = cur ? cur.value.toString('base64') : null;
      if (curValue === w.value) return { w, cur, s: 'done' as const };
      if ((cur?.modRevision ?? 0) === (w.guard ?? cur?.modRevision ?? 0)) return { w, cur, s: 'pending' as const };
      return { w, cur, s: 'conflict' as const };
    }));
    const forward = state.every((x) => x.s !== 'conflict');
    for (const x of state) {
      const guard = { key: x.w.key, modRevision: x.cur?.modRevision ?? 0 };
      if (forward && x.s === 'pending') await this.writeOne(x.w.value === null ? { key: x.w.key, delete: true } : { key: x.w.key, value: Buffer.from(x.w.value, 'base64') }, guard);
      if (!forward && x.s === 'done') await this.writeOne(x.w.before === null ? { key: x.w.key, delete: true } : { key: x.w.key, value: Buffer.from(x.w.before, 'base64') }, guard);
    }
    await this.client.delete(intentKey).catch(() => undefined);
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
