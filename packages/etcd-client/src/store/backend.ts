// The storage backend under the Store: keys and opaque values with etcd revisions. Two
// implementations sit on the etcd-client library: v3 (default; any etcd 3.x) and v2
// (--etcd-api=v2). The Store never talks to etcd except through this interface.

export interface StoredKV {
  key: string;
  value: Buffer;
  /** Revision of the last write to this key: the object's resourceVersion. */
  modRevision: number;
  createRevision: number;
}

/** A condition a commit needs: the key's modRevision is still this (0 = the key is absent). */
export interface Guard {
  key: string;
  modRevision: number;
}

export type Mutation = { key: string; value: Buffer } | { key: string; delete: true };

export interface CommitResult {
  ok: boolean;
  /** Revision of the write (ok) or of the store when the guards failed. */
  revision: number;
}

export interface ListOptions {
  /** Start at this key (inclusive), for paging. */
  startKey?: string;
  /** At most this many keys (0 = all). */
  limit?: number;
  /** Read as of this revision (0 = now). Paging reads every page at the first page's revision. */
  revision?: number;
}

export interface ListResult {
  kvs: StoredKV[];
  revision: number;
  more: boolean;
}

export interface BackendEvent {
  type: 'put' | 'delete';
  kv: StoredKV;
  prevKv?: StoredKV;
}

export interface BackendWatchBatch {
  events: BackendEvent[];
  /** Everything up to this revision has been delivered (for bookmarks). */
  revision: number;
}

/** The revision asked for is gone from etcd's history (compacted): the client must relist. */
export class RevisionCompactedError extends Error {
  constructor(readonly requested: number, readonly compacted: number) {
    super(`too old resource version: ${requested} (${compacted})`);
    this.name = 'RevisionCompactedError';
  }
}

export interface StorageBackend {
  readonly api: 'v3' | 'v2';
  get(key: string): Promise<{ kv: StoredKV | undefined; revision: number }>;
  list(prefix: string, o?: ListOptions): Promise<ListResult>;
  /** Applies every mutation atomically if every guard holds (v3: one etcd transaction). */
  commit(guards: Guard[], mutations: Mutation[]): Promise<CommitResult>;
  /**
   * Streams changes under `prefix` with revision > `afterRevision`, in order, each exactly once
   * (across member failures too). Throws RevisionCompactedError when that history is gone.
   */
  watch(prefix: string, afterRevision: number, signal: AbortSignal): AsyncIterable<BackendWatchBatch>;
  currentRevision(): Promise<number>;
  close(): void;
}
