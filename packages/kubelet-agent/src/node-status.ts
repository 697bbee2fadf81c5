// The node status reporter: every 10 s it reads the pressure signals from the machine, turns
// them into the node conditions (MemoryPressure, DiskPressure, PIDPressure, Ready), and writes
// the Node's status when a condition differs from the Node in the Store or 5 minutes passed
// since the last write (the lease is the frequent heartbeat). Events NodeReady/NodeNotReady and the pressure reasons are
// recorded on transitions.
import { core } from '@berth/api';
import type { Clock, Timer } from './clock';
import { thresholdsMet, type SignalName, type Signals } from './eviction';
import { nodeConditions, shouldReportNodeStatus, type NodeHealth } from './node';

export interface NodeStatusWriter {
  getNode(name: string): Promise<core.Node | undefined>;
  updateNodeStatus(node: core.Node): Promise<core.Node>;
}

export interface NodeStatusReporterOptions {
  clock: Clock;
  writer: NodeStatusWriter;
  nodeName: string;
  signals: () => Signals;
  evictionHard: Partial<Record<SignalName, string>>;
  /** Why the node cannot run pods right now (runtime/network down), or undefined. */
  notReady?: () => string | undefined;
  periodMs?: number;
  reportEveryMs?: number;
  onEvent?: (type: 'Normal' | 'Warning', reason: string, message: string) => void;
  onError?: (e: unknown) => void;
}

const EVENT_OF: Record<string, [string, string]> = {
  MemoryPressure: ['NodeHasInsufficientMemory', 'NodeHasSufficientMemory'],
  DiskPressure: ['NodeHasDiskPressure', 'NodeHasNoDiskPressure'],
  PIDPressure: ['NodeHasInsufficientPID', 'NodeHasSufficientPID'],
  Ready: ['NodeReady', 'NodeNotReady'],
};

export class NodeStatusReporter {
  private timer?: Timer;
  private stopped = false;
  private lastReport?: number;
  private conditions: core.NodeCondition[] = [];
  writes = 0;

  constructor(private readonly o: NodeStatusReporterOptions) {}

  /** What the machine says now. */
  health(): NodeHealth {
    const met = new Set(thresholdsMet(this.o.signals(), this.o.evictionHard));
    return { memoryPressure: met.has('memory.available'), diskPressure: met.has('nodefs.available'), pidPressure: met.has('pid.available'), notReadyReason: this.o.notReady?.() };
  }

  /** One round: compute, and write if due. Returns whether it wrote. */
  async report(): Promise<boolean> {
    const now = this.o.clock.now();
    const next = nodeConditions(this.conditions, this.health(), now);
    for (const c of next) {
      const before = this.conditions.find((p) => p.type === c.type)?.status;
      if (before === c.status) continue;
      const [on, off] = EVENT_OF[c.type];
      // Ready=True is the good state for Ready; False is the good state for the pressures.
      const good = c.type === 'Ready' ? c.status === 'True' : c.status === 'False';
      const reason = c.type === 'Ready' ? (good ? on : off) : good ? off : on;
      if (before !== undefined || !good) this.o.onEvent?.(good ? 'Normal' : 'Warning', reason, `Node ${this.o.nodeName} status is now: ${reason}`);
    }
    // Compared with the Node as the Store has it, as the kubelet does: someone else (the node
    // lifecycle controller marking a silent node Unknown) may have changed the conditions, and
    // the node must say Ready again at once when it is heard again, not at the 5-minute report.
    // A write that loses to another writer (the controller tainting the node) reads again, as the
    // kubelet's status update does (5 tries).
    for (let attempt = 1; ; attempt++) {
      const cur = await this.o.writer.getNode(this.o.nodeName);
      if (!cur) throw new Error(`node ${this.o.nodeName} is not registered`);
      const stored = cur.status?.conditions ?? [];
      if (!shouldReportNodeStatus(this.lastReport === undefined ? this.conditions : stored, next, this.lastReport, now, this.o.reportEveryMs)) {
        this.conditions = next;
        return false;
      }
      try {
        await this.o.writer.updateNodeStatus({ ...cur, status: core.NodeStatus.fromPartial({ ...cur.status, conditions: next }) });
        break;
      } catch (e) {
        // By kind, not class: the error may come from another copy of @berth/common.
        if (attempt >= 5 || (e as { kind?: string } | null)?.kind !== 'Conflict') throw e;
        // The node lifecycle controller writes a node in a few steps (conditions, then its
        // taints): a short pause keeps five quick tries from all landing inside one burst.
        await new Promise((r) => setTimeout(r, 25 * attempt));
      }
    }
    this.conditions = next;
    this.lastReport = now;
    this.writes++;
    return true;
  }

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      try {
        await this.report();
      } catch (e) {
        this.o.onError?.(e);
      }
      if (!this.stopped) this.timer = this.o.clock.setTimeout(() => void tick(), this.o.periodMs ?? 10_000);
    };
    void tick();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }
}
