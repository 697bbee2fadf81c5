import { signalName } from './errors';
import type { ExitStatus, NativeSyscalls, SpawnedProcess } from './index';
import {
  checkCString,
  checkHostname,
  checkNamespace,
  checkOptionalString,
  checkSetnsTarget,
  mountFlags,
  namespaceFlags,
  signalNumber,
  spawnPlan,
  umountFlags,
} from './validate';

type Method = keyof NativeSyscalls;

/** One call made on a RecordingFake, with the arguments exactly as passed. */
export type RecordedCall = { [M in Method]: { method: M; args: Parameters<NativeSyscalls[M]> } }[Method];

/**
 * A scripted outcome for one call of `M`: a value to return (resolve, for spawn), an Error to
 * throw (reject), or a function computing either from the call's arguments.
 */
export type Scripted<M extends Method> =
  | Awaited<ReturnType<NativeSyscalls[M]>>
  | Error
  | ((...args: Parameters<NativeSyscalls[M]>) => Awaited<ReturnType<NativeSyscalls[M]>>);

/**
 * A process handed out by RecordingFake.spawn(). It runs until the test calls `exit()`;
 * `kill()` records the signal and, by default, ends it with that signal like a real process.
 */
export class FakeProcess implements SpawnedProcess {
  readonly exited: Promise<ExitStatus>;
  /** Signals passed to kill(), by name. */
  readonly signals: string[] = [];
  private finish!: (status: ExitStatus) => void;
  private done = false;

  constructor(
    readonly pid: number,
    readonly pidfd = -1,
    private readonly diesOnKill = true,
  ) {
    this.exited = new Promise((resolve) => {
      this.finish = resolve;
    });
  }

  /** Ends the process with this status (once; later calls are ignored). */
  exit(status: ExitStatus = { code: 0, signal: null }): void {
    if (this.done) return;
    this.done = true;
    this.finish(status);
  }

  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    const num = signalNumber(signal);
    if (this.done) return false;
    const name = typeof signal === 'string' ? signal : signalName(num);
    this.signals.push(name);
    if (this.diesOnKill && num !== 0) this.exit({ code: null, signal: name });
    return true;
  }
}

/**
 * NativeSyscalls for pure-logic tests: validates arguments like the real thing, records every
 * call in `calls`, and answers with scripted results (`respond()`), in order, one per call.
 * Without a script, calls succeed; spawn() resolves to a FakeProcess that exits 0 at once.
 */
export class RecordingFake implements NativeSyscalls {
  readonly calls: RecordedCall[] = [];
  private readonly scripts = new Map<Method, unknown[]>();
  private nextPid = 1000;

  /** Queues results for the next calls of `method`. */
  respond<M extends Method>(method: M, ...results: Array<Scripted<M>>): this {
    const queue = this.scripts.get(method) ?? [];
    queue.push(...results);
    this.scripts.set(method, queue);
    return this;
  }

  /** The argument lists of every recorded call of `method`, in order. */
  callsOf<M extends Method>(method: M): Array<Parameters<NativeSyscalls[M]>> {
    return this.calls
      .filter((call) => call.method === method)
      .map((call) => call.args as Parameters<NativeSyscalls[M]>);
  }

  private answer<M extends Method>(method: M, args: Parameters<NativeSyscalls[M]>, fallback: () => unknown): unknown {
    this.calls.push({ method, args } as RecordedCall);
    const queue = this.scripts.get(method);
    const scripted = queue !== undefined && queue.length > 0 ? queue.shift() : undefined;
    if (scripted === undefined) return fallback();
    if (scripted instanceof Error) throw scripted;
    if (typeof scripted === 'function') return (scripted as (...a: unknown[]) => unknown)(...args);
    return scripted;
  }

  unshare(...args: Parameters<NativeSyscalls['unshare']>): void {
    namespaceFlags(args[0], 'unshare namespaces', false);
    this.answer('unshare', args, () => undefined);
  }

  setns(...args: Parameters<NativeSyscalls['setns']>): void {
    checkSetnsTarget(args[0]);
    if (args[1] !== undefined) checkNamespace(args[1], 'setns nstype');
    this.answer('setns', args, () => undefined);
  }

  mount(...args: Parameters<NativeSyscalls['mount']>): void {
    checkOptionalString(args[0], 'mount source');
    checkCString(args[1], 'mount target');
    checkOptionalString(args[2], 'mount fstype');
    mountFlags(args[3]);
    checkOptionalString(args[4], 'mount data');
    this.answer('mount', args, () => undefined);
  }

  umount2(...args: Parameters<NativeSyscalls['umount2']>): void {
    checkCString(args[0], 'umount2 target');
    umountFlags(args[1]);
    this.answer('umount2', args, () => undefined);
  }

  sethostname(...args: Parameters<NativeSyscalls['sethostname']>): void {
    checkHostname(args[0]);
    this.answer('sethostname', args, () => undefined);
  }

  async spawn(...args: Parameters<NativeSyscalls['spawn']>): Promise<SpawnedProcess> {
    spawnPlan(args[0]);
    return this.answer('spawn', args, () => {
      const child = new FakeProcess(this.nextPid++);
      child.exit({ code: 0, signal: null });
      return child;
    }) as SpawnedProcess;
  }
}
