// A v2 watch: a chain of long polls (?wait=true&waitIndex=N). It remembers the next index it
// needs (modifiedIndex + 1 of the last event) so that a poll closed empty, a member that dies
// or hangs, or a reconnect to another member resumes exactly there. When etcd answers 401
// (its 1000-event history no longer reaches back that far) the watcher re-reads the subtree,
// yields it as `{ action: 'resync' }` and continues from X-Etcd-Index + 1: the caller
// reconciles against the snapshot and misses nothing.
import type { EtcdV2Client, Response } from './client';
import { keyPath, toResponse } from './client';
import { EtcdClusterUnavailableError, EtcdError, EtcdErrorCode, EtcdHttpError } from './errors';
import { Transport } from './transport';

export interface V2WatchOptions {
  /** Report events after this etcd index (exclusive); default: from now on. */
  afterIndex?: number;
  recursive?: boolean;
  signal?: AbortSignal;
  /** While a poll waits, the member is probed this often (ms; default 5000): a hung (paused)
   *  member is left for another one instead of waiting forever. */
  livenessIntervalMs?: number;
}

export class V2Watcher implements AsyncIterable<Response> {
  /** How often the watcher fell behind etcd's history and re-read the subtree. */
  resyncs = 0;
  /** How often a poll failed and was retried (another member, or the same after backoff). */
  reconnects = 0;
  private next: number | undefined;
  private readonly ac = new AbortController();
  private done = false;

  constructor(private readonly client: EtcdV2Client, private readonly key: string, private readonly o: V2WatchOptions, private readonly onClose: () => void) {
    if (o.afterIndex !== undefined) this.next = o.afterIndex + 1;
    if (o.signal) {
      if (o.signal.aborted) this.cancel();
      else o.signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  /** The index the next poll waits for. */
  get nextIndex(): number | undefined {
    return this.next;
  }

  /** The caller's signal ends the watch; its listener goes when the watch ends otherwise. */
  private readonly onAbort = (): void => this.cancel();

  cancel(): void {
    if (this.done) return;
    this.done = true;
    this.o.signal?.removeEventListener('abort', this.onAbort);
    this.ac.abort();
    this.onClose();
  }

  private get transport(): Transport {
    return this.client.transport;
  }

  /** Reads the subtree; returns it as a resync response (node absent -> empty placeholder). */
  private async snapshot(): Promise<Response> {
    try {
      const r = await this.client.get(this.key, { recursive: !!this.o.recursive, sorted: true, quorum: true });
      return { ...r, action: 'resync' };
    } catch (e) {
      if (e instanceof EtcdError && e.errorCode === EtcdErrorCode.KeyNotFound) {
        return { action: 'resync', node: { key: this.key, createdIndex: 0, modifiedIndex: 0 }, etcdIndex: e.index, raftIndex: 0, raftTerm: 0, clusterId: '' };
      }
      throw e;
    }
  }

  private async pollOnce(waitIndex: number): Promise<{ kind: 'event'; resp: Response } | { kind: 'empty' } | { kind: 'cleared' }> {
    const ep = this.transport.endpoints.findIndex((e) => e.url === this.transport.pinnedEndpoint);
    const poll = new AbortController();
    const onAbort = () => poll.abort();
    this.ac.signal.addEventListener('abort', onAbort, { once: true });
    // Cancelled while the snapshot before this poll was in flight: an aborted signal fires no
    // more 'abort', and the long poll would wait for the key's next change.
    if (this.ac.signal.aborted) poll.abort();
    const interval = this.o.livenessIntervalMs ?? 5000;
    let hung = false;
    const probe = setInterval(() => {
      this.transport.request({ method: 'GET', path: '/version', endpoint: ep }).catch(() => { hung = true; poll.abort(); });
    }, interval);
    try {
      const q = `wait=true&waitIndex=${waitIndex}${this.o.recursive ? '&recursive=true' : ''}`;
      const r = await this.transport.request({ method: 'GET', path: `${keyPath(this.key)}?${q}`, watch: true, signal: poll.signal, endpoint: ep });
      if (r.status === 200 && r.body.trim() === '') return { kind: 'empty' };
      try {
        const body = Transport.json<{ action: string; node: Response['node']; prevNode?: Response['node'] }>(r);
        return { kind: 'event', resp: toResponse(r, body) };
      } catch (e) {
        if (e instanceof EtcdError && (e.errorCode === EtcdErrorCode.EventIndexCleared || e.errorCode === EtcdErrorCode.WatcherCleared)) return { kind: 'cleared' };
        throw e;
      }
    } catch (e) {
      if (hung && !this.done) throw new EtcdClusterUnavailableError([{ endpoint: this.transport.endpoints[ep].url, error: new Error('member stopped answering during a watch') }]);
      throw e;
    } finally {
      clearInterval(probe);
      this.ac.signal.removeEventListener('abort', onAbort);
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Response> {
    let backoff = 50;
    try {
      while (!this.done) {
        try {
          if (this.next === undefined) {
            // Learn the current index first, so that a reconnect before the first event
            // still resumes from the right place.
            const s = await this.snapshot();
            this.next = s.etcdIndex + 1;
          }
          const got = await this.pollOnce(this.next);
          backoff = 50;
          if (got.kind === 'empty') continue;
          if (got.kind === 'cleared') {
            const s = await this.snapshot();
            this.resyncs++;
            this.next = s.etcdIndex + 1;
            yield s;
            continue;
          }
          this.next = got.resp.node.modifiedIndex + 1;
          yield got.resp;
        } catch (e) {
          if (this.done) return;
          const transient = e instanceof EtcdClusterUnavailableError || (e instanceof EtcdHttpError && e.status >= 500) ||
            (e instanceof EtcdError && (e.errorCode === EtcdErrorCode.RaftInternal || e.errorCode === EtcdErrorCode.LeaderElect)) ||
            (e as Error).name === 'AbortError' || (e as NodeJS.ErrnoException).code === 'ECONNRESET';
          if (!transient) throw e;
          this.reconnects++;
          this.transport.failover(this.transport.endpoints.findIndex((x) => x.url === this.transport.pinnedEndpoint));
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(backoff * 2, 1000);
        }
      }
    } finally {
      this.cancel();
    }
  }
}
