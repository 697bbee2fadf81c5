// The garbage collector (kube-controller-manager's garbagecollector): follows every stored kind
// through watches, keeps the graph owner uid -> dependents, and
//   - deletes a dependent once none of its owners exists any more (Background propagation: the
//     owner went first) — dangling references of a dependent that still has a live owner are
//     dropped instead;
//   - for an owner deleted in the foreground (finalizer "foregroundDeletion") deletes its
//     dependents, and drops the finalizer once no dependent with blockOwnerDeletion is left;
//   - for an owner deleted with Orphan (finalizer "orphan") removes its references from the
//     dependents, then drops the finalizer.
// Every decision is re-checked against the Store (by uid) before it acts, so a stale graph can
// delay work but never delete the wrong object.
import { core, store } from '@berth/api';
import { KINDS, kindInfo, unwrap, type KindInfo, type UserInfo } from '@berth/apimachinery';
import { ConflictError, FailedPreconditionError, NotFoundError, type Logger } from '@berth/common';
import { FOREGROUND_FINALIZER, ORPHAN_FINALIZER, type Registry } from './registry';

const GC_USER: UserInfo = { name: 'system:serviceaccount:kube-system:generic-garbage-collector', groups: ['system:masters', 'system:authenticated'], authenticator: 'internal' };

interface Node {
  info: KindInfo;
  namespace: string;
  name: string;
  owners: core.OwnerReference[];
}

type Work = { kind: 'dependent'; uid: string } | { kind: 'owner'; uid: string; info: KindInfo; namespace: string; name: string };

export interface GarbageCollectorOptions {
  logger?: Logger;
  /** Kinds to follow (default every stored kind but events). */
  resources?: string[];
  /** Delay before a failed item is tried again (default 500 ms). */
  retryMs?: number;
}

export class GarbageCollector {
  private readonly ac = new AbortController();
  /** Objects that have owner references, by uid. */
  private readonly nodes = new Map<string, Node>();
  /** Owner uid -> uids of its dependents. */
  private readonly dependents = new Map<string, Set<string>>();
  private readonly queue = new Map<string, Work>();
  private wake: (() => void) | undefined;
  private loops: Promise<void>[] = [];

  constructor(private readonly registry: Registry, private readonly o: GarbageCollectorOptions = {}) {}

  start(): void {
    if (this.loops.length) return;
    const kinds = KINDS.filter((k) => (this.o.resources ? this.o.resources.includes(k.resource) : k.resource !== 'events'));
    const listed = kinds.map(() => { let done!: () => void; const p = new Promise<void>((r) => { done = r; }); return { p, done }; });
    this.loops = kinds.map((k, i) => this.follow(k, listed[i].done));
    // Decisions wait until every kind has been listed once, so no dependent is missing from the graph.
    this.loops.push(Promise.race([Promise.all(listed.map((l) => l.p)), new Promise((r) => this.ac.signal.addEventListener('abort', r, { once: true }))]).then(() => this.work()));
  }

  async close(): Promise<void> {
    this.ac.abort();
    this.wake?.();
    await Promise.all(this.loops);
  }

  /** True when nothing is queued (for tests and shutdown). */
  get idle(): boolean {
    return this.queue.size === 0;
  }

  private enqueue(w: Work): void {
    this.queue.set(`${w.kind}/${w.uid}`, w);
    this.wake?.();
  }

  private observe(info: KindInfo, type: string, obj: core.Object): void {
    const m = unwrap(obj).value.metadata!;
    const uid = m.uid;
    const prev = this.nodes.get(uid);
    if (prev) {
      for (const r of prev.owners) {
        const set = this.dependents.get(r.uid);
        set?.delete(uid);
        if (set?.size === 0) this.dependents.delete(r.uid);
      }
    }
    if (type === 'DELETED') {
      this.nodes.delete(uid);
      for (const r of m.ownerReferences) this.wakeOwner(r.uid);
      // Its dependents may have lost their last owner.
      for (const d of this.dependents.get(uid) ?? []) this.enqueue({ kind: 'dependent', uid: d });
      this.dependents.delete(uid);
      return;
    }
    if (m.ownerReferences.length) {
      this.nodes.set(uid, { info, namespace: m.namespace, name: m.name, owners: m.ownerReferences });
      for (const r of m.ownerReferences) {
        let s = this.dependents.get(r.uid);
        if (!s) this.dependents.set(r.uid, (s = new Set()));
        s.add(uid);
      }
      // A new or changed reference may point at an owner that is gone or being deleted.
      if (type === 'ADDED' || JSON.stringify(prev?.owners) !== JSON.stringify(m.ownerReferences)) this.enqueue({ kind: 'dependent', uid });
    } else {
      this.nodes.delete(uid);
    }
    if (m.deletionTimestamp && (m.finalizers.includes(FOREGROUND_FINALIZER) || m.finalizers.includes(ORPHAN_FINALIZER))) {
      this.enqueue({ kind: 'owner', uid, info, namespace: m.namespace, name: m.name });
    }
    // A dependent going away may unblock its owners' foreground deletion.
    if (m.deletionTimestamp) for (const r of m.ownerReferences) this.wakeOwner(r.uid);
  }

  private wakeOwner(ownerUid: string): void {
    const w = [...this.queue.values()].find((x) => x.kind === 'owner' && x.uid === ownerUid);
    if (w) return;
    const pending = this.pendingOwners.get(ownerUid);
    if (pending) this.enqueue(pending);
  }

  /** Owners in foreground deletion still waiting for dependents, to look at again when one goes. */
  private readonly pendingOwners = new Map<string, Work>();

  private async follow(info: KindInfo, listed: () => void): Promise<void> {
    const signal = this.ac.signal;
    while (!signal.aborted) {
      try {
        const l = await this.registry.list(store.ListRequest.fromPartial({ resource: info.resource }), GC_USER);
        for (const o of l.items) this.observe(info, 'ADDED', o);
        listed();
        if (signal.aborted) return;
        for await (const e of this.registry.watch(store.WatchRequest.fromPartial({ resource: info.resource, resourceVersion: l.resourceVersion }), GC_USER, signal)) {
          if (e.type === 'ERROR') break; // too old: relist
          if (e.object && (e.type === 'ADDED' || e.type === 'MODIFIED' || e.type === 'DELETED')) this.observe(info, e.type, e.object);
        }
      } catch (err) {
        if (signal.aborted) return;
        this.o.logger?.warn({ err: String(err), resource: info.resource }, 'garbage collector: watch broke; relisting');
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private async work(): Promise<void> {
    const signal = this.ac.signal;
    while (!signal.aborted) {
      const next = this.queue.entries().next();
      if (next.done) {
        await new Promise<void>((r) => { this.wake = r; });
        this.wake = undefined;
        continue;
      }
      const [key, w] = next.value;
      this.queue.delete(key);
      try {
        if (w.kind === 'dependent') await this.checkDependent(w.uid);
        else await this.checkOwner(w);
      } catch (err) {
        if (signal.aborted) return;
        // Conflicts and races resolve on the next look; anything else is logged and retried.
        if (!(err instanceof ConflictError || err instanceof FailedPreconditionError)) this.o.logger?.warn({ err: String(err), work: w }, 'garbage collector: retrying');
        setTimeout(() => { if (!signal.aborted && !this.queue.has(key)) this.enqueue(w); }, this.o.retryMs ?? 500).unref();
      }
    }
  }

  /** The live object an owner reference names, if it still is that object (same uid). */
  private async resolve(ref: core.OwnerReference, namespace: string): Promise<{ obj: core.Object; info: KindInfo } | undefined | 'unknown'> {
    const info = kindInfo(ref.kind);
    // A kind this store does not serve (a ReplicaSet in a manifest copied from Kubernetes):
    // whether it exists cannot be known, so the dependent is left alone, as Kubernetes does.
    if (!info || info.apiVersion !== ref.apiVersion) return 'unknown';
    try {
      const obj = await this.registry.get(store.GetRequest.fromPartial({ resource: info.resource, namespace: info.namespaced ? namespace : '', name: ref.name }), GC_USER);
      return unwrap(obj).value.metadata!.uid === ref.uid ? { obj, info } : undefined;
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
  }

  private async readNode(n: Node): Promise<core.Object | undefined> {
    try {
      return await this.registry.get(store.GetRequest.fromPartial({ resource: n.info.resource, namespace: n.namespace, name: n.name }), GC_USER);
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
  }

  private async deleteObject(n: Node, uid: string, policy: 'Background' | 'Foreground'): Promise<void> {
    try {
      await this.registry.delete(store.DeleteRequest.fromPartial({ resource: n.info.resource, namespace: n.namespace, name: n.name, preconditions: { uid }, propagationPolicy: policy }), GC_USER);
      this.o.logger?.info({ resource: n.info.resource, namespace: n.namespace, name: n.name, policy }, 'garbage collector: deleted a dependent');
    } catch (e) {
      if (e instanceof NotFoundError) return;
      throw e;
    }
  }

  // attemptToDelete: a dependent whose owners are all gone goes; one whose remaining owners are
  // all being deleted in the foreground goes in the foreground (if it blocks them); dangling
  // references of a dependent with a live owner are removed.
  private async checkDependent(uid: string): Promise<void> {
    const n = this.nodes.get(uid);
    if (!n) return;
    const obj = await this.readNode(n);
    if (!obj) return;
    const m = unwrap(obj).value.metadata!;
    if (m.uid !== uid) return;
    const live: { ref: core.OwnerReference; owner: core.ObjectMeta }[] = [];
    const dangling: core.OwnerReference[] = [];
    for (const ref of m.ownerReferences) {
      const r = await this.resolve(ref, m.namespace);
      if (r === 'unknown') {
        this.o.logger?.debug({ resource: n.info.resource, namespace: n.namespace, name: n.name, owner: `${ref.apiVersion}/${ref.kind}` }, 'garbage collector: owner kind not served; leaving the object');
        return;
      }
      if (r) live.push({ ref, owner: unwrap(r.obj).value.metadata! });
      else dangling.push(ref);
    }
    if (!live.length) {
      if (!m.deletionTimestamp) await this.deleteObject(n, uid, 'Background');
      return;
    }
    const waiting = live.filter((l) => l.owner.deletionTimestamp && l.owner.finalizers.includes(FOREGROUND_FINALIZER));
    if (waiting.length === live.length && waiting.some((l) => l.ref.blockOwnerDeletion)) {
      if (!m.deletionTimestamp || !m.finalizers.includes(FOREGROUND_FINALIZER)) await this.deleteObject(n, uid, 'Foreground');
      return;
    }
    if (waiting.length === live.length && !m.deletionTimestamp) {
      await this.deleteObject(n, uid, 'Background');
      return;
    }
    if (dangling.length) {
      const next = structuredClone(obj);
      const nm = unwrap(next).value.metadata!;
      const gone = new Set(dangling.map((d) => d.uid));
      nm.ownerReferences = nm.ownerReferences.filter((r) => !gone.has(r.uid));
      await this.registry.update(next, GC_USER);
    }
  }

  // An owner with the foregroundDeletion or orphan finalizer.
  private async checkOwner(w: Extract<Work, { kind: 'owner' }>): Promise<void> {
    const n: Node = { info: w.info, namespace: w.namespace, name: w.name, owners: [] };
    const obj = await this.readNode(n);
    if (!obj) { this.pendingOwners.delete(w.uid); return; }
    const m = unwrap(obj).value.metadata!;
    if (m.uid !== w.uid || !m.deletionTimestamp) { this.pendingOwners.delete(w.uid); return; }
    const deps = [...(this.dependents.get(w.uid) ?? [])];
    if (m.finalizers.includes(ORPHAN_FINALIZER)) {
      for (const d of deps) {
        const dep = await this.liveDependent(d, w.uid);
        if (!dep) continue;
        dep.meta.ownerReferences = dep.meta.ownerReferences.filter((r) => r.uid !== w.uid);
        await this.registry.update(dep.obj, GC_USER);
      }
      await this.dropFinalizer(obj, ORPHAN_FINALIZER);
      this.pendingOwners.delete(w.uid);
      return;
    }
    if (!m.finalizers.includes(FOREGROUND_FINALIZER)) { this.pendingOwners.delete(w.uid); return; }
    // Foreground: delete every dependent; wait only for those that block the owner's deletion.
    let blocking = 0;
    for (const d of deps) {
      const dep = await this.liveDependent(d, w.uid);
      if (!dep) continue;
      if (dep.ref.blockOwnerDeletion) blocking++;
      if (!dep.meta.deletionTimestamp) await this.deleteObject(dep.node, d, dep.ref.blockOwnerDeletion ? 'Foreground' : 'Background');
    }
    if (blocking) {
      // Looked at again when one of them changes or goes.
      this.pendingOwners.set(w.uid, w);
      return;
    }
    this.pendingOwners.delete(w.uid);
    await this.dropFinalizer(obj, FOREGROUND_FINALIZER);
  }

  /** Dependent `uid` as stored now, if it still is that object and still refers to the owner. */
  private async liveDependent(uid: string, ownerUid: string): Promise<{ node: Node; obj: core.Object; meta: core.ObjectMeta; ref: core.OwnerReference } | undefined> {
    const node = this.nodes.get(uid);
    if (!node) return undefined;
    const obj = await this.readNode(node);
    if (!obj) return undefined;
    const meta = unwrap(obj).value.metadata!;
    const ref = meta.ownerReferences.find((r) => r.uid === ownerUid);
    return meta.uid === uid && ref ? { node, obj, meta, ref } : undefined;
  }

  private async dropFinalizer(obj: core.Object, finalizer: string): Promise<void> {
    const next = structuredClone(obj);
    const nm = unwrap(next).value.metadata!;
    nm.finalizers = nm.finalizers.filter((f) => f !== finalizer);
    await this.registry.update(next, GC_USER);
    this.o.logger?.info({ name: nm.name, namespace: nm.namespace, finalizer }, 'garbage collector: dependents handled, finalizer removed');
  }
}
