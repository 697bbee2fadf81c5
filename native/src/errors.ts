import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

/**
 * Where a failure happened inside `spawn()`. `'clone'` and `'prepare'` fail synchronously in the
 * parent; the others are reported by the child over the exec-status pipe.
 */
export type SpawnStage = 'prepare' | 'clone' | 'sethostname' | 'stdio' | 'close_range' | 'chdir' | 'execve';

export interface SyscallErrorDetails {
  /** The step of a multi-step operation (`spawn()`) that failed. */
  stage?: string;
  /** The path the failing call was about, when there is one. */
  path?: string;
}

/** errno number -> name, first name wins for aliases (EAGAIN over EWOULDBLOCK, SIGABRT over SIGIOT). */
function reverse(table: Readonly<Record<string, number | undefined>>): Map<number, string> {
  const out = new Map<number, string>();
  for (const [name, value] of Object.entries(table)) {
    if (value !== undefined && !out.has(value)) out.set(value, name);
  }
  return out;
}

// Made on first use (an error, a signal exit): a one-shot CLI bundles node:os as a module loaded
// on its first property access (tools/bundle-cli.js), and its load is ~0.2 ms of a start.
let errnoNames: Map<number, string> | undefined;
let signalNames: Map<number, string> | undefined;

/** `'ENOENT'` for 2; `'E<n>'` for numbers Node does not name. */
export function errnoName(errno: number): string {
  errnoNames ??= reverse(constants.errno as Record<string, number>);
  return errnoNames.get(errno) ?? `E${errno}`;
}

/** `'SIGKILL'` for 9; `'SIG<n>'` for numbers Node does not name (real-time signals). */
export function signalName(signal: number): string {
  signalNames ??= reverse(constants.signals as Record<string, number>);
  return signalNames.get(signal) ?? `SIG${signal}`;
}

function describe(errno: number): string {
  // libuv's messages, keyed by negated errno (Node 20 has no strerror).
  return getSystemErrorMap().get(-errno)?.[1] ?? 'unknown error';
}

/**
 * A failed system call. Thrown by every call of the native addon (the class is handed to C++
 * once at load time, so C++ throws real instances of it).
 *
 * `errno` is the positive kernel value, as in C (`os.constants.errno.ENOENT === 2`); note that
 * Node's own fs errors carry the negated libuv value instead.
 */
export class SyscallError extends Error {
  /** The errno name, e.g. `'EPERM'`. */
  readonly code: string;
  /** The positive errno value, e.g. 1 for EPERM. */
  readonly errno: number;
  /** The system call that failed, e.g. `'mount'`, `'execve'`. */
  readonly syscall: string;
  // `declare`: no class-field initialisation, so an absent detail is an absent property.
  declare readonly stage?: string;
  declare readonly path?: string;

  constructor(errno: number, syscall: string, details: SyscallErrorDetails = {}) {
    const code = errnoName(errno);
    const where = details.stage !== undefined ? ` (stage ${details.stage})` : '';
    const about = details.path !== undefined ? ` '${details.path}'` : '';
    super(`${syscall}${about}${where}: ${code}, ${describe(errno)}`);
    this.name = 'SyscallError';
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    if (details.stage !== undefined) this.stage = details.stage;
    if (details.path !== undefined) this.path = details.path;
  }
}
