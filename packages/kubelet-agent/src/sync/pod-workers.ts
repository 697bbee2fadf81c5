// One worker per pod: updates of the same pod run one at a time, in order, and updates that
// arrive while one runs are folded into the newest (the pod worker only needs the latest desired
// state); different pods run in parallel, up to a limit.
export interface WorkItem<T> {
  uid: string;
  data: T;
}

export type SyncFn<T> = (item: WorkItem<T>) => Promise<void>;

interface WorkerState<T> {
  running: boolean;
  next?: WorkItem<T>;
}

export class PodWorkers<T> {
  private readonly workers = new Map<string, WorkerState<T>>();
  private active = 0;
  private readonly ready: string[] = [];
  private idleWaiters: (() => void)[] = [];
  syncs = 0;

  constructor(private readonly sync: SyncFn<T>, private readonly maxParallel = 16, private readonly onError?: (uid: string, e: unknown) => void) {}

  /** Queues an update for a pod; returns at once. */
  update(uid: string, data: T): void {
    let w = this.workers.get(uid);
    if (!w) this.workers.set(uid, (w = { running: false }));
    const queued = w.next !== undefined;
    w.next = { uid, data };
    if (!w.running && !queued) this.ready.push(uid);
    this.pump();
  }

  private pump(): void {
    while (this.active < this.maxParallel && this.ready.length) {
      const uid = this.ready.shift()!;
      const w = this.workers.get(uid);
      if (!w || w.running || !w.next) continue;
      const item = w.next;
      w.next = undefined;
      w.running = true;
      this.active++;
      void this.run(w, item);
    }
    if (this.active === 0 && this.ready.length === 0) for (const f of this.idleWaiters.splice(0)) f();
  }

  private async run(w: WorkerState<T>, item: WorkItem<T>): Promise<void> {
    try {
      this.syncs++;
      await this.sync(item);
    } catch (e) {
      this.onError?.(item.uid, e);
    } finally {
      w.running = false;
      this.active--;
      if (w.next) this.ready.push(item.uid);
      this.pump();
    }
  }

  /** Drops the worker of a pod that is gone (after its last sync finished). */
  forget(uid: string): void {
    const w = this.workers.get(uid);
    if (w && !w.running && !w.next) this.workers.delete(uid);
  }

  known(): string[] {
    return [...this.workers.keys()];
  }

  isBusy(uid: string): boolean {
    const w = this.workers.get(uid);
    return !!w && (w.running || !!w.next);
  }

  /** Resolves when nothing runs or waits. */
  idle(): Promise<void> {
    if (this.active === 0 && this.ready.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }
}
