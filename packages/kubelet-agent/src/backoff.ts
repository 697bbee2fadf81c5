// The crash-loop back-off: 10 s, doubling to 300 s per container, forgotten once the container
// has run for 10 minutes (or nothing happened to it for that long). Kept per key
// (pod uid + container name) so a restarted pod worker finds its container's delay again.
import type { Clock } from './clock';

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  /** A container that ran at least this long starts again from initialMs. */
  resetAfterMs?: number;
}

interface Entry {
  delayMs: number;
  /** When the current back-off window started (the last restart decision). */
  since: number;
}

export class CrashLoopBackoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly resetAfterMs: number;
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly clock: Clock, opts: BackoffOptions = {}) {
    this.initialMs = opts.initialMs ?? 10_000;
    this.maxMs = opts.maxMs ?? 300_000;
    this.resetAfterMs = opts.resetAfterMs ?? 600_000;
  }

  static key(podUid: string, container: string): string {
    return `${podUid}/${container}`;
  }

  /**
   * Is a restart of a container that exited at `finishedAt` still held back? Returns the
   * remaining wait in ms (0 = may restart now).
   */
  remaining(key: string, finishedAt: number): number {
    const e = this.entries.get(key);
    if (!e) return 0;
    const left = finishedAt + e.delayMs - this.clock.now();
    return left > 0 ? left : 0;
  }

  /** Current delay for `key` (0 when it has none). */
  delay(key: string): number {
    return this.entries.get(key)?.delayMs ?? 0;
  }

  /**
   * Records a restart decision and returns the delay that the next crash will wait. `ranForMs`
   * is how long the container ran before it exited; a long run resets the back-off.
   */
  next(key: string, ranForMs = 0): number {
    const now = this.clock.now();
    const e = this.entries.get(key);
    let delayMs: number;
    if (!e || ranForMs >= this.resetAfterMs || now - e.since >= this.resetAfterMs) delayMs = this.initialMs;
    else delayMs = Math.min(e.delayMs * 2, this.maxMs);
    this.entries.set(key, { delayMs, since: now });
    return delayMs;
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  /** Drops entries idle for longer than the reset window (bounded memory on busy nodes). */
  gc(): void {
    const now = this.clock.now();
    for (const [k, e] of this.entries) if (now - e.since >= 2 * this.resetAfterMs) this.entries.delete(k);
  }
}
