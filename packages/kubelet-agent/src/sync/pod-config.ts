// The merged view of the pods this node should run, fed by several sources — the Store (its
// informer: incremental changes), static manifests from a directory and from an HTTP URL (full
// snapshots) — turned into ADD / UPDATE / DELETE updates for the sync loop. A pod is owned by
// the source that brought it; a snapshot that no longer lists a pod deletes it.
import { core } from '@berth/api';
import { ResultChannel } from '../probes/manager';

export type PodSourceName = 'store' | 'file' | 'http';
export type PodOp = 'ADD' | 'UPDATE' | 'DELETE';

export interface PodUpdate {
  op: PodOp;
  source: PodSourceName;
  pod: core.Pod;
}

export const CONFIG_SOURCE_ANNOTATION = 'kubernetes.io/config.source';
export const CONFIG_HASH_ANNOTATION = 'kubernetes.io/config.hash';
export const CONFIG_MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

/** Annotations the agent writes itself (its start-up trace): a change of them is no UPDATE. */
const OWN_ANNOTATIONS = ['berth.dev/startup-trace'];

function specKey(p: core.Pod): string {
  // What makes an UPDATE: spec, labels, annotations, deletion — not status (the agent writes that).
  const annotations = p.metadata && OWN_ANNOTATIONS.some((k) => k in p.metadata!.annotations) ? Object.fromEntries(Object.entries(p.metadata.annotations).filter(([k]) => !OWN_ANNOTATIONS.includes(k))) : p.metadata?.annotations;
  return JSON.stringify(core.Pod.toJSON({ ...p, status: undefined, metadata: p.metadata && { ...p.metadata, resourceVersion: '', managedFields: [], annotations: annotations ?? {} } as core.ObjectMeta }));
}

export class PodConfig {
  readonly updates = new ResultChannel<PodUpdate>();
  private readonly bySource = new Map<PodSourceName, Map<string, { pod: core.Pod; key: string }>>();

  private table(source: PodSourceName): Map<string, { pod: core.Pod; key: string }> {
    let t = this.bySource.get(source);
    if (!t) this.bySource.set(source, (t = new Map()));
    return t;
  }

  /** Incremental change from a watching source. */
  apply(source: PodSourceName, op: PodOp, pod: core.Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid) throw new TypeError('metadata.uid: a pod from a source must have a uid');
    const t = this.table(source);
    if (op === 'DELETE') {
      if (t.delete(uid)) this.updates.push({ op, source, pod });
      return;
    }
    const key = specKey(pod);
    const old = t.get(uid);
    t.set(uid, { pod, key });
    if (!old) this.updates.push({ op: 'ADD', source, pod });
    else if (old.key !== key) this.updates.push({ op: 'UPDATE', source, pod });
  }

  /** The full current set of a snapshot source: emits what was added, changed and removed. */
  setSnapshot(source: PodSourceName, pods: core.Pod[]): void {
    const t = this.table(source);
    const seen = new Set<string>();
    for (const p of pods) {
      seen.add(p.metadata!.uid);
      this.apply(source, 'ADD', p);
    }
    for (const [uid, e] of [...t]) if (!seen.has(uid)) this.apply(source, 'DELETE', e.pod);
  }

  /** Every pod known now, across sources. */
  all(): core.Pod[] {
    return [...this.bySource.values()].flatMap((t) => [...t.values()].map((e) => e.pod));
  }

  get(uid: string): core.Pod | undefined {
    for (const t of this.bySource.values()) {
      const e = t.get(uid);
      if (e) return e.pod;
    }
    return undefined;
  }
}
