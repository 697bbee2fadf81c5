// Counts per topology value read from shared, live index maps plus a private delta, so that a
// cycle can use the cache's indexes without copying them and preemption's what-ifs (add/remove
// a pod) change only the delta.
export class LayeredCounts {
  private readonly delta = new Map<string, number>();
  constructor(private readonly bases: readonly ReadonlyMap<string, number>[] = []) {}

  get(value: string): number {
    let n = this.delta.get(value) ?? 0;
    for (const b of this.bases) n += b.get(value) ?? 0;
    return n;
  }

  add(value: string, by: number): void {
    const n = (this.delta.get(value) ?? 0) + by;
    if (n === 0) this.delta.delete(value); else this.delta.set(value, n);
  }

  /** Some value has a positive count. */
  any(): boolean {
    for (const b of this.bases) for (const v of b.keys()) if (this.get(v) > 0) return true;
    for (const v of this.delta.keys()) if (this.get(v) > 0) return true;
    return false;
  }

  /** Values with a non-zero count, each once. */
  *values(): IterableIterator<string> {
    const seen = new Set<string>();
    for (const m of [...this.bases, this.delta]) {
      for (const v of m.keys()) {
        if (seen.has(v)) continue;
        seen.add(v);
        if (this.get(v) !== 0) yield v;
      }
    }
  }

  /** Number of base maps layered (0 means the counts live in the delta only). */
  get layers(): number { return this.bases.length; }

  clone(): LayeredCounts {
    const c = new LayeredCounts(this.bases);
    for (const [k, v] of this.delta) c.delta.set(k, v);
    return c;
  }
}
