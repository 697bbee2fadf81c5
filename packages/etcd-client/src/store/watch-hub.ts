// One etcd watch per resource, shared by every Store watcher of it (kube-apiserver's watch
// cache in small): events are kept in a bounded history and fanned out in memory, so 100
// watchers cost one etcd stream, not 100. A watcher whose starting revision the history does
// not cover (too old, or before the hub started) gets its own backend watch instead, which
// answers "too old" with RevisionCompactedError as before.
import type { BackendWatchBatch, StorageBackend } from './backend';

/** Batches buffered for one slow watcher before its stream is ended (it resumes from its last version). */
const MAX_QUEUE = 50_000;

interface Subscriber {
  filter: string;
  push(b: BackendWatchBatch): void;
  end(err?: unknown): void;
}

export class WatchHub {
  private history: BackendWatchBatch[] = [];
  /** Everything after `base` and up to `rev` is in `history`. */
  private base = 0;
  private rev = 0;
  private subs = new Set<Subscriber>();
  private running: Promise<void> | undefined;
  private ac = new AbortController();

  /** `historySize`: batches of events kept for watchers that start behind (default 20 000). */
  constructor(private readonly backend: StorageBackend, private readonly prefix: string, private readonly historySize = 20_000) {}

  private start(): Promise<void> {
    if (this.running) return this.running;
    this.ac = new AbortController();
    let ready!: () => void;
    let failed!: (e: unknown) => void;
    const started = new Promise<void>((res, rej) => { ready = res; failed = rej; });
    this.running = started;
    void (async () => {
      try {
        this.base = this.rev = await this.backend.currentRevision();
        this.history = [];
        ready();
        for await (const b of this.backend.watch(this.prefix, this.rev, this.ac.signal)) {
          this.rev = Math.max(this.rev, b.revision);
          if (b.events.length) {
            this.history.push(b);
            if (this.history.length > this.historySize) {
              const dropped = this.history.splice(0, this.history.length - this.historySize);
              this.base = dropped[dropped.length - 1].revision;
            }
          }
          for (const s of this.subs) s.push(b);
        }
        throw new Error('watch ended');
      } catch (e) {
        failed(e);
        // Watchers end and resume from their last version; the next one restarts the hub.
        for (const s of this.subs) s.end(this.ac.signal.aborted ? undefined : e);
        this.subs.clear();
        this.running = undefined;
      }
    })();
    return started;
  }

  close(): void {
    this.ac.abort();
  }

  /** Changes under `filter` (a prefix inside the hub's) with revision > afterRevision. */
  async *watch(filter: string, afterRevision: number, signal: AbortSignal): AsyncGenerator<BackendWatchBatch> {
    await this.start();
    // A signal that fired while the hub started will not fire again: nothing would end the watch.
    if (signal.aborted) return;
    if (afterRevision < this.base) {
      yield* this.backend.watch(filter, afterRevision, signal);
      return;
    }
    const queue: BackendWatchBatch[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
    let error: unknown;
    const keep = (b: BackendWatchBatch): BackendWatchBatch | undefined => {
      const events = b.events.filter((e) => e.kv.modRevision > afterRevision && e.kv.key.startsWith(filter));
      if (!events.length && b.events.length) return b.revision > afterRevision ? { events: [], revision: b.revision } : undefined;
      return { events, revision: b.revision };
    };
    const sub: Subscriber = {
      filter,
      push: (b) => {
        const k = keep(b);
        if (!k) return;
        if (queue.length >= MAX_QUEUE) { sub.end(); return; }
        queue.push(k);
        wake?.();
      },
      end: (err) => { ended = true; error = err; this.subs.delete(sub); wake?.(); },
    };
    // Replay and subscribe in one turn of the event loop: nothing can fall between them.
    for (const b of this.history) if (b.revision > afterRevision) { const k = keep(b); if (k) queue.push(k); }
    this.subs.add(sub);
    const onAbort = () => sub.end();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        while (queue.length) yield queue.shift()!;
        if (ended) break;
        await new Promise<void>((r) => { wake = r; });
        wake = undefined;
      }
      if (error && !signal.aborted) throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.subs.delete(sub);
    }
  }
}
