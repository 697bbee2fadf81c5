// The outcome of a plugin call. "Does not fit" is a returned Status with a reason, never an
// exception; `null` stands for Success on the hot path so a passing filter allocates nothing.

export enum Code {
  Success = 0,
  Error = 1,
  /** The node does not fit now; preemption may help. */
  Unschedulable = 2,
  /** The node does not fit and preemption cannot help. */
  UnschedulableAndUnresolvable = 3,
  Wait = 4,
  /** The plugin has nothing to do for this pod (PreFilter/PreScore). */
  Skip = 5,
}

export class Status {
  plugin = '';
  constructor(readonly code: Code, readonly reasons: string[] = []) {}
  get message(): string { return this.reasons.join(', '); }
  isRejection(): boolean { return this.code === Code.Unschedulable || this.code === Code.UnschedulableAndUnresolvable; }
  withPlugin(name: string): this { this.plugin = name; return this; }
}

/** A status or null for Success. */
export type MaybeStatus = Status | null;

export const unschedulable = (...reasons: string[]) => new Status(Code.Unschedulable, reasons);
export const unresolvable = (...reasons: string[]) => new Status(Code.UnschedulableAndUnresolvable, reasons);
export const asError = (message: string) => new Status(Code.Error, [message]);
export const SKIP = new Status(Code.Skip);
export const isSuccess = (s: MaybeStatus): boolean => s === null || s.code === Code.Success;
