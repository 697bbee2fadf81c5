/**
 * Argument checks done in TS before anything crosses into C++ (which assumes valid input).
 * A value of the wrong JS type is a TypeError; a value of the right type that the call cannot
 * take is a RangeError. Both the real implementation and the RecordingFake run these, so logic
 * tested against the fake fails the same way it would on the kernel.
 */
import { constants } from 'node:os';

import {
  CLONE_FLAGS,
  MOUNT_FLAGS,
  NAMESPACES,
  UMOUNT_FLAGS,
  type MountFlag,
  type NamespaceName,
  type UmountFlag,
} from './flags';
import type { RawSpawnPlan } from './loader';

/** The kernel's limit for sethostname(), in bytes (HOST_NAME_MAX). */
export const HOST_NAME_MAX = 64;

const NAMESPACE_SET: ReadonlySet<string> = new Set(NAMESPACES);

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? `the string '${value}'` : typeof value;
}

/** A string that can become a C string: no NUL bytes. `empty` says whether '' is allowed. */
export function checkCString(value: unknown, what: string, empty = false): string {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string, got ${typeName(value)}`);
  if (!empty && value.length === 0) throw new RangeError(`${what} must not be empty`);
  if (value.includes('\0')) throw new RangeError(`${what} must not contain NUL bytes`);
  return value;
}

export function checkFd(value: unknown, what: string): number {
  if (typeof value !== 'number') throw new TypeError(`${what} must be a file descriptor number, got ${typeName(value)}`);
  if (!Number.isInteger(value) || value < 0 || value > 0x7fff_ffff) {
    throw new RangeError(`${what} must be a file descriptor (an integer from 0 to 2^31-1), got ${value}`);
  }
  return value;
}

function checkArray(value: unknown, what: string): readonly unknown[] {
  if (!Array.isArray(value)) throw new TypeError(`${what} must be an array, got ${typeName(value)}`);
  return value;
}

export function checkNamespace(value: unknown, what: string): NamespaceName {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a namespace name, got ${typeName(value)}`);
  if (!NAMESPACE_SET.has(value)) {
    throw new RangeError(`${what}: unknown namespace '${value}' (expected one of ${NAMESPACES.join(', ')})`);
  }
  return value as NamespaceName;
}

/** ['uts', 'pid'] -> CLONE_NEWUTS | CLONE_NEWPID. */
export function namespaceFlags(value: unknown, what: string, allowEmpty: boolean): number {
  const names = checkArray(value, what);
  if (!allowEmpty && names.length === 0) throw new RangeError(`${what} must name at least one namespace`);
  let flags = 0;
  names.forEach((name, i) => {
    flags |= CLONE_FLAGS[checkNamespace(name, `${what}[${i}]`)];
  });
  return flags >>> 0;
}

function namedFlags(value: unknown, table: Readonly<Record<string, number>>, what: string): number {
  const names = checkArray(value, what);
  let flags = 0;
  names.forEach((name, i) => {
    if (typeof name !== 'string') throw new TypeError(`${what}[${i}] must be a flag name, got ${typeName(name)}`);
    const bits = Object.hasOwn(table, name) ? table[name] : undefined;
    if (bits === undefined) {
      throw new RangeError(`${what}[${i}]: unknown flag '${name}' (expected one of ${Object.keys(table).join(', ')})`);
    }
    flags |= bits;
  });
  return flags >>> 0;
}

/** Flag names or a raw MS_* bit mask (an unsigned 32-bit integer) -> bit mask. */
export function mountFlags(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
      throw new RangeError(`mount flags must be an unsigned 32-bit integer, got ${value}`);
    }
    return value;
  }
  return namedFlags(value, MOUNT_FLAGS, 'mount flags');
}

export function umountFlags(value: unknown): number {
  return namedFlags(value ?? [], UMOUNT_FLAGS, 'umount2 flags');
}

export function checkHostname(value: unknown): string {
  const name = checkCString(value, 'hostname', true);
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > HOST_NAME_MAX) {
    throw new RangeError(`hostname must be at most ${HOST_NAME_MAX} bytes, got ${bytes}: '${name}'`);
  }
  return name;
}

export function checkSetnsTarget(value: unknown): string | number {
  if (typeof value === 'number') return checkFd(value, 'setns target');
  if (typeof value === 'string') return checkCString(value, 'setns target path');
  throw new TypeError(`setns target must be a namespace file path or an open fd, got ${typeName(value)}`);
}

export function checkOptionalString(value: unknown, what: string): string | null {
  if (value === undefined || value === null) return null;
  return checkCString(value, what, true);
}

export function signalNumber(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 64) throw new RangeError(`signal must be 0..64, got ${value}`);
    return value;
  }
  if (typeof value !== 'string') throw new TypeError(`signal must be a signal name or number, got ${typeName(value)}`);
  const num = (constants.signals as Record<string, number | undefined>)[value];
  if (num === undefined) throw new RangeError(`unknown signal '${value}'`);
  return num;
}

/** Options of `NativeSyscalls.spawn()`. */
export interface SpawnOptions {
  /** The program, as a path: no PATH lookup is done (relative paths resolve against `cwd`). */
  file: string;
  /** Arguments after argv[0]; argv[0] is `file`. */
  args: readonly string[];
  /** `KEY=value` entries; defaults to this process's environment. */
  env?: readonly string[];
  /** Working directory of the child, entered just before execve. */
  cwd?: string;
  /** New namespaces for the child (clone flags). */
  namespaces?: readonly NamespaceName[];
  /** Hostname set inside the child's new UTS namespace before execve: needs 'uts' in `namespaces`. */
  hostname?: string;
  /** Descriptors dup2'ed onto the child's 0, 1 and 2; by default this process's own 0, 1 and 2. */
  stdio?: readonly [number, number, number];
}

function currentEnvironment(): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.includes('\0') && !value.includes('\0')) out.push(`${key}=${value}`);
  }
  return out;
}

/** Validates spawn options and lays them out the way the binding takes them. */
export function spawnPlan(value: unknown): RawSpawnPlan {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`spawn options must be an object, got ${typeName(value)}`);
  }
  const opts = value as Record<string, unknown>;
  const file = checkCString(opts['file'], 'spawn file');
  if (!file.includes('/')) {
    throw new RangeError(`spawn file must be a path ('/bin/sh', './run'): no PATH lookup is done, got '${file}'`);
  }
  const args = checkArray(opts['args'], 'spawn args').map((arg, i) => checkCString(arg, `spawn args[${i}]`, true));
  let envp: string[];
  if (opts['env'] === undefined) {
    envp = currentEnvironment();
  } else {
    envp = checkArray(opts['env'], 'spawn env').map((entry, i) => {
      const text = checkCString(entry, `spawn env[${i}]`);
      if (text.indexOf('=') <= 0) throw new RangeError(`spawn env[${i}] must look like KEY=value, got '${text}'`);
      return text;
    });
  }
  const cwd = opts['cwd'] === undefined ? null : checkCString(opts['cwd'], 'spawn cwd');
  const cloneFlags = opts['namespaces'] === undefined ? 0 : namespaceFlags(opts['namespaces'], 'spawn namespaces', true);
  let hostname: string | null = null;
  if (opts['hostname'] !== undefined) {
    hostname = checkHostname(opts['hostname']);
    if ((cloneFlags & CLONE_FLAGS.uts) === 0) {
      // Without a new UTS namespace, the child would rename the whole machine.
      throw new RangeError("spawn hostname needs a new UTS namespace: add 'uts' to namespaces");
    }
  }
  let stdio: [number, number, number] | null = null;
  if (opts['stdio'] !== undefined) {
    const fds = checkArray(opts['stdio'], 'spawn stdio');
    if (fds.length !== 3) throw new RangeError(`spawn stdio must have exactly 3 descriptors, got ${fds.length}`);
    stdio = [checkFd(fds[0], 'spawn stdio[0]'), checkFd(fds[1], 'spawn stdio[1]'), checkFd(fds[2], 'spawn stdio[2]')];
  }
  return { file, argv: [file, ...args], envp, cwd, cloneFlags, hostname, stdio };
}

export type { MountFlag, NamespaceName, UmountFlag };
