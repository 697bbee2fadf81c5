// OrphanReaper: the daemon is a child subreaper, so processes orphaned inside containers that
// share its pid namespace are reparented to it; this reaps them when they die. Driven by
// SIGCHLD, it reaps only zombies that nobody else waits for: never a container init or exec
// (their pidfd watches reap them) and never a child of Node's child_process (libuv reaps those
// by pid, and would lose the exit status).
import * as fs from 'node:fs';

import type { ContainerSyscalls } from '@berth/native';

/**
 * How long a SIGCHLD waits before the scan. The scan reads every thread's children list from
 * /proc (~0.1 ms of the event loop with a daemon's threads), and every container init's exit
 * raises SIGCHLD although its pidfd watch reaps it: one scan per burst of exits, not per exit.
 * An orphan stays a zombie that much longer.
 */
const REAP_DELAY_MS = 20;

export class OrphanReaper {
  private scheduled = false;
  private readonly onSignal = (): void => {
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      // A child whose pid is not known yet may be among the zombies: scan once it is.
      if (this.busy()) this.onSignal();
      else this.reap();
    }, REAP_DELAY_MS).unref();
  };

  constructor(
    private readonly sys: Pick<ContainerSyscalls, 'reapZombie'>,
    /** Pids someone else waits for. */
    private readonly owned: () => ReadonlySet<number>,
    /** True while children are being made whose pids `owned` does not list yet. */
    private readonly busy: () => boolean = () => false,
  ) {}

  start(): void {
    process.on('SIGCHLD', this.onSignal);
  }

  stop(): void {
    process.off('SIGCHLD', this.onSignal);
  }

  /**
   * Children of this process's main thread, from /proc: where the kernel puts an orphan
   * reparented to a subreaper (the first live thread of its group, the leader while the process
   * runs). The other threads' children are the inits and execs they cloned, which their pidfd
   * watches reap. One file, not one per thread: the daemon has ~20 threads, and reading them all
   * took the event loop ~0.25 ms per burst of exits.
   */
  static children(): number[] {
    const out: number[] = [];
    for (const p of fs.readFileSync(`/proc/self/task/${process.pid}/children`, 'utf8').trim().split(/\s+/)) if (p !== '') out.push(Number(p));
    return out;
  }

  /** Reaps the orphaned zombies now (none while busy); returns their pids. */
  reap(): number[] {
    if (this.busy()) return [];
    const owned = this.owned();
    const reaped: number[] = [];
    for (const pid of OrphanReaper.children()) {
      if (owned.has(pid)) continue;
      let stat: string;
      try {
        stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      } catch {
        continue;
      }
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z') continue;
      // An unknown zombie: either an orphan, or a child_process child whose pid we were not
      // told about. Only orphans have been reparented: their start time predates nothing we
      // can check, so child_process children are registered in `owned` by their spawners.
      if (this.sys.reapZombie(pid)) reaped.push(pid);
    }
    return reaped;
  }
}
