/**
 * @berth/native: the one typed interface the rest of Berth uses to reach the kernel.
 *
 * `native` is the real implementation (the C++ addon, loaded on first use); `RecordingFake`
 * implements the same interface for pure-logic tests. Arguments are validated here, in TS,
 * before they reach C++.
 *
 * A Node process always runs several threads (libuv's pool, V8's platform threads). Three
 * consequences for the calls below (all checked by the kernel tests):
 * - `unshare()` and `setns()` change the namespaces of the calling thread only (the JS main
 *   thread); pool threads, and so async fs calls, keep the old ones.
 * - `spawn()` clones on a pool thread, so its children start from the namespaces the process
 *   started with, not from what unshare()/setns() did to the JS thread. Give them namespaces
 *   through `spawn({ namespaces })`.
 * - The kernel refuses `unshare(['user'])` and `setns()` into a mount or user namespace in a
 *   multi-threaded process (EINVAL). `unshare(['mount'])` succeeds but for the JS thread only.
 *   Fork a helper process, or better, spawn the workload into new namespaces.
 *
 * Every call throws (or rejects with) a SyscallError when the kernel says no, and a
 * TypeError/RangeError for arguments it would never accept.
 */
import { signalName, SyscallError } from './errors';
import type { NamespaceName, MountFlag, UmountFlag } from './flags';
import { CLONE_FLAGS } from './flags';
import { binding } from './loader';
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
  type SpawnOptions,
} from './validate';

export { errnoName, signalName, SyscallError, type SpawnStage, type SyscallErrorDetails } from './errors';
export { CLONE_FLAGS, MOUNT_FLAGS, NAMESPACES, UMOUNT_FLAGS } from './flags';
export type { MountFlag, NamespaceName, UmountFlag } from './flags';
export { candidatePaths, exitNow, loadNativeBinding } from './loader';
export { FakeProcess, RecordingFake, type RecordedCall, type Scripted } from './recording-fake';
export { HOST_NAME_MAX, type SpawnOptions } from './validate';
export * from './container';
export * from './netlink';

/** How a spawned process ended: `code` if it exited, `signal` (e.g. 'SIGKILL') if it was killed. */
export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

/** A process started by `spawn()`, already past a successful execve. */
export interface SpawnedProcess {
  /** Its pid in this process's pid namespace. */
  readonly pid: number;
  /**
   * A pidfd for it (O_CLOEXEC), owned by the addon: valid until `exited` settles, closed then.
   * Usable with setns() (e.g. `setns(p.pidfd, 'uts')`) while the process runs.
   */
  readonly pidfd: number;
  /** Settles once, when the process has exited and been reaped. Never polls. */
  readonly exited: Promise<ExitStatus>;
  /** Sends a signal through the pidfd (no pid-reuse race). Returns false once it has exited. */
  kill(signal?: NodeJS.Signals | number): boolean;
}

export interface NativeSyscalls {
  /**
   * unshare(2): moves the calling (JS) thread into new namespaces; 'pid' and 'time' affect
   * only its future children. In Node, 'user' always fails with EINVAL (the process is
   * multi-threaded), and 'mount' gives the JS thread alone a new mount namespace (the kernel
   * also unshares its fs_struct), so async fs calls, which run on pool threads, still see the
   * old mounts. Use spawn({ namespaces }) to put a workload into new namespaces.
   */
  unshare(namespaces: readonly NamespaceName[]): void;

  /**
   * setns(2): joins the namespace of `target`, a namespace file path (/proc/<pid>/ns/uts) or an
   * open descriptor (an ns file or a pidfd; a pidfd needs `nstype`). `nstype` makes the kernel
   * check the namespace kind. Affects the calling thread only; mount and user namespaces fail
   * with EINVAL in a multi-threaded process.
   */
  setns(target: string | number, nstype?: NamespaceName): void;

  /**
   * mount(2). `flags` are names ('bind', 'rdonly', 'rprivate', ...) or a raw MS_* mask.
   * Read-only bind mounts take two calls: bind, then remount+bind+rdonly.
   */
  mount(
    source: string | null,
    target: string,
    fstype: string | null,
    flags: readonly MountFlag[] | number,
    data?: string,
  ): void;

  /** umount2(2). */
  umount2(target: string, flags?: readonly UmountFlag[]): void;

  /** sethostname(2) for the calling thread's UTS namespace; at most 64 bytes of UTF-8. */
  sethostname(name: string): void;

  /**
   * clone (vfork-style, CLONE_PIDFD, new namespaces) + execve. Resolves once execve has
   * succeeded; rejects with a SyscallError whose `stage` says which step failed ('clone',
   * 'sethostname', 'stdio', 'chdir', 'execve', ...). A child that failed before execve has been
   * reaped by the time the promise rejects.
   *
   * The clone runs on a libuv pool thread (creating net/mount namespaces takes milliseconds of
   * kernel time), so the child starts from the namespaces the process started with: unshare()
   * and setns() done on the JS thread do not carry over. Exit is reported from the pidfd,
   * watched on the event loop; nothing polls or blocks.
   */
  spawn(opts: SpawnOptions): Promise<SpawnedProcess>;
}

class NativeProcess implements SpawnedProcess {
  private done = false;
  readonly exited: Promise<ExitStatus>;

  constructor(
    readonly pid: number,
    readonly pidfd: number,
    exited: Promise<ExitStatus>,
  ) {
    this.exited = exited.finally(() => {
      this.done = true;
    });
    // Nobody may ever await `exited`; a waitid failure must not become an unhandled rejection.
    this.exited.catch(() => undefined);
  }

  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    const num = signalNumber(signal);
    if (this.done) return false;
    try {
      binding().pidfdSendSignal(this.pidfd, num);
      return true;
    } catch (err) {
      // Exited but not reaped yet: the exit report is on its way.
      if (err instanceof SyscallError && err.code === 'ESRCH') return false;
      throw err;
    }
  }
}

/** The real implementation, backed by the addon (loaded on first call). */
export const native: NativeSyscalls = {
  unshare(namespaces) {
    binding().unshare(namespaceFlags(namespaces, 'unshare namespaces', false));
  },

  setns(target, nstype) {
    const checked = checkSetnsTarget(target);
    const type = nstype === undefined ? 0 : CLONE_FLAGS[checkNamespace(nstype, 'setns nstype')];
    binding().setns(checked, type);
  },

  mount(source, target, fstype, flags, data) {
    binding().mount(
      checkOptionalString(source, 'mount source'),
      checkCString(target, 'mount target'),
      checkOptionalString(fstype, 'mount fstype'),
      mountFlags(flags),
      checkOptionalString(data, 'mount data'),
    );
  },

  umount2(target, flags) {
    binding().umount2(checkCString(target, 'umount2 target'), umountFlags(flags));
  },

  sethostname(name) {
    binding().sethostname(checkHostname(name));
  },

  async spawn(opts) {
    const plan = spawnPlan(opts);
    return await new Promise<SpawnedProcess>((resolve, reject) => {
      let exitOk!: (status: ExitStatus) => void;
      let exitFail!: (err: SyscallError) => void;
      const exited = new Promise<ExitStatus>((res, rej) => {
        exitOk = res;
        exitFail = rej;
      });
      binding().spawn(
        plan,
        (err, pid, pidfd) => {
          if (err !== null) reject(err);
          else resolve(new NativeProcess(pid, pidfd, exited));
        },
        (err, code, signal) => {
          if (err !== null) exitFail(err);
          else exitOk({ code, signal: signal === null ? null : signalName(signal) });
        },
      );
    });
  },
};
