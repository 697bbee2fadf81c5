// The per-phase start-up trace of each pod — what no peer shows: how long admission,
// scheduling, sandbox, network, image, container create/start and first readiness took. Kept
// per pod until it is Ready, then written as an annotation (so `berth describe` can show it) and
// observed into Prometheus histograms.
import { Histogram, type Registry } from 'prom-client';
import type { Clock } from './clock';

export const STARTUP_TRACE_ANNOTATION = 'berth.dev/startup-trace';

export const PHASES = ['admission', 'scheduling', 'sandbox', 'network', 'volumes', 'image', 'containerCreate', 'containerStart', 'firstReady'] as const;
export type Phase = (typeof PHASES)[number];

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class StartupMetrics {
  readonly phase: Histogram<'phase'>;
  readonly total: Histogram<'until'>;
  constructor(registry: Registry) {
    this.phase = new Histogram({ name: 'berth_kubelet_pod_start_phase_seconds', help: 'Time spent in each phase of pod start-up', labelNames: ['phase'], buckets: BUCKETS, registers: [registry] });
    this.total = new Histogram({ name: 'berth_kubelet_pod_start_seconds', help: 'Time from pod creation until Running / Ready', labelNames: ['until'], buckets: BUCKETS, registers: [registry] });
  }
}

export interface TraceSummary {
  /** Milliseconds per phase (summed when a phase ran more than once, e.g. per container). */
  phasesMs: Partial<Record<Phase, number>>;
  runningMs?: number;
  readyMs?: number;
}

export class StartupTrace {
  private readonly open = new Map<Phase, number>();
  private readonly ms: Partial<Record<Phase, number>> = {};
  private runningAt?: number;
  private readyAt?: number;

  /** @param createdAt when the pod was created in the Store (ms since epoch). */
  constructor(private readonly clock: Clock, readonly createdAt: number) {}

  begin(p: Phase): void {
    if (!PHASES.includes(p)) throw new RangeError(`phase: unknown ${JSON.stringify(p)}`);
    this.open.set(p, this.clock.now());
  }

  end(p: Phase): void {
    const t = this.open.get(p);
    if (t === undefined) throw new Error(`phase ${p} ended without begin`);
    this.open.delete(p);
    this.add(p, this.clock.now() - t);
  }

  /** Records a phase measured elsewhere (e.g. scheduling, from the Store's timestamps). */
  add(p: Phase, ms: number): void {
    this.ms[p] = (this.ms[p] ?? 0) + Math.max(0, ms);
  }

  async time<T>(p: Phase, fn: () => Promise<T>): Promise<T> {
    this.begin(p);
    try {
      return await fn();
    } finally {
      this.end(p);
    }
  }

  running(): void {
    this.runningAt ??= this.clock.now();
  }

  ready(): void {
    this.readyAt ??= this.clock.now();
  }

  summary(): TraceSummary {
    return {
      phasesMs: { ...this.ms },
      runningMs: this.runningAt !== undefined ? this.runningAt - this.createdAt : undefined,
      readyMs: this.readyAt !== undefined ? this.readyAt - this.createdAt : undefined,
    };
  }

  /** The annotation value: compact JSON, phases in start-up order. */
  annotation(): string {
    const s = this.summary();
    const phases: Record<string, number> = {};
    for (const p of PHASES) if (s.phasesMs[p] !== undefined) phases[p] = s.phasesMs[p]!;
    return JSON.stringify({ phasesMs: phases, runningMs: s.runningMs, readyMs: s.readyMs });
  }

  observe(m: StartupMetrics): void {
    const s = this.summary();
    for (const p of PHASES) if (s.phasesMs[p] !== undefined) m.phase.observe({ phase: p }, s.phasesMs[p]! / 1000);
    if (s.runningMs !== undefined) m.total.observe({ until: 'running' }, s.runningMs / 1000);
    if (s.readyMs !== undefined) m.total.observe({ until: 'ready' }, s.readyMs / 1000);
  }
}
