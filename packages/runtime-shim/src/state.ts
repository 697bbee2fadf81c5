// Container state under --root: one directory per container holding state.json (written
// atomically: temp file then rename, so a crash leaves the old or the new file, never half
// of one) and the exec fifo while the container is "created".
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Spec } from './oci/config';

export interface StoredState {
  id: string;
  pid: number;
  /** Field 22 of /proc/<pid>/stat at create time: tells our process from a reused pid. */
  pidStartTime: string;
  bundle: string;
  rootfs: string;
  created: string;
  annotations: Record<string, string>;
  cgroupPath: string;
  cgroupVersion: 1 | 2;
  cgroupPaths: Record<string, string>;
  spec: Spec;
}

export type Status = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

/** The OCI state, with the same fields runc prints. */
export interface OciState {
  ociVersion: string;
  id: string;
  pid: number;
  status: Status;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations?: Record<string, string>;
}

export const ID_PATTERN = /^[\w+.-]+$/;
/** A create's pooled cgroup path, until state.json names the container's own (see notePooledCgroup()). */
const POOLED_CGROUP_FILE = 'pooled-cgroup';

export class RuntimeError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'RuntimeError';
  }
}

export function checkId(id: string | undefined): string {
  if (id === undefined || id === '') throw new RuntimeError('container id cannot be empty');
  if (!ID_PATTERN.test(id) || id === '.' || id === '..') throw new RuntimeError(`invalid container id format: ${id}`);
  return id;
}

export class StateStore {
  /**
   * The states this process wrote, by id: a long-running runtime reads its own containers'
   * state from here instead of parsing state.json again on every start, kill and delete. Only
   * what this process wrote (a monitor process writing to the same root keeps its own), and
   * gone with remove(). Callers must not mutate what read() returns.
   */
  private readonly mine = new Map<string, StoredState>();

  constructor(readonly root: string) {}

  dir(id: string): string {
    return path.join(this.root, checkId(id));
  }

  fifo(id: string): string {
    return path.join(this.dir(id), 'exec.fifo');
  }

  /** Claims the id: fails if a container (or the remains of a crashed create) has it. */
  claim(id: string): string {
    fs.mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const dir = this.dir(id);
    try {
      fs.mkdirSync(dir, { mode: 0o711 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        if (!fs.existsSync(path.join(dir, 'state.json'))) {
          throw new RuntimeError(`container with id ${id} has a state directory without state.json (a crashed create?); remove it with \`delete --force ${id}\``);
        }
        throw new RuntimeError(`container with given ID already exists: ${id}`);
      }
      throw err;
    }
    return dir;
  }

  /**
   * Notes, before its init exists, that a create runs its container in a pooled cgroup still
   * named `cgPath` (renamed to the container's own only after the spawn): a forced delete of a
   * create that crashed before state.json looks there too.
   */
  notePooledCgroup(id: string, cgPath: string): void {
    fs.writeFileSync(path.join(this.dir(id), POOLED_CGROUP_FILE), cgPath, { mode: 0o600 });
  }

  /** What notePooledCgroup() wrote for a create that has no state.json, if anything. */
  pooledCgroup(id: string): string | undefined {
    try {
      return fs.readFileSync(path.join(this.dir(id), POOLED_CGROUP_FILE), 'utf8');
    } catch {
      return undefined;
    }
  }

  write(state: StoredState): void {
    const dir = this.dir(state.id);
    const tmp = path.join(dir, `.state.json.${process.pid}`);
    // Atomic replace: a runtime that dies mid-write leaves the old file or the new one, never
    // a torn one. No fsync: --root lives on /run (tmpfs), which a power loss empties anyway,
    // and the fsync was the single most expensive step of create on a busy disk.
    fs.writeFileSync(tmp, JSON.stringify(state), { mode: 0o600 });
    fs.renameSync(tmp, path.join(dir, 'state.json'));
    this.mine.set(state.id, state);
  }

  read(id: string): StoredState {
    const own = this.mine.get(id);
    if (own !== undefined) return own;
    let text: string;
    try {
      text = fs.readFileSync(path.join(this.dir(id), 'state.json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new RuntimeError(`container does not exist: ${id}`);
      throw err;
    }
    return JSON.parse(text) as StoredState;
  }

  /** Ids with a state dir (including half-created ones). */
  ids(): string[] {
    try {
      return fs.readdirSync(this.root).filter((n) => ID_PATTERN.test(n)).sort();
    } catch {
      return [];
    }
  }

  remove(id: string): void {
    const dir = this.dir(id);
    this.mine.delete(id);
    removeFlatDir(dir);
  }
}

/**
 * Removes a directory of plain files (a state dir, a container record dir) entry by entry:
 * unlink does not follow a symlink, and only an unexpected subdirectory takes fs.rmSync, whose
 * first call loads Node's rimraf module (~0.9 ms of a one-shot CLI run) and which walks the
 * tree with a stat per entry. Gone already: done.
 */
export function removeFlatDir(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const n of names) {
    const p = path.join(dir, n);
    try {
      fs.unlinkSync(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EISDIR' || code === 'EPERM') fs.rmSync(p, { recursive: true, force: true });
      else if (code !== 'ENOENT') throw err;
    }
  }
  try {
    fs.rmdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY') fs.rmSync(dir, { recursive: true, force: true });
    else if (code !== 'ENOENT') throw err;
  }
}

/** unlink that is done when the file is already gone (fs.rmSync with force loads rimraf). */
export function unlinkIfExists(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Field 22 (starttime) of /proc/<pid>/stat, or undefined if there is no such process. */
export function pidStartTime(pid: number): { start: string; state: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: fields start after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0]!, start: rest[19]! };
}

/**
 * `ms` (default: now) as Date's toISOString() prints it, UTC to the millisecond, for years 1970
 * to 9999: computed, because the first toISOString() of a process costs ~0.25 ms here, which a
 * one-shot CLI would pay on every create (days to a civil date: H. Hinnant's algorithm).
 */
export function isoTime(ms = Date.now()): string {
  const days = Math.floor(ms / 86_400_000);
  let rest = ms - days * 86_400_000;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const hour = Math.floor(rest / 3_600_000);
  rest -= hour * 3_600_000;
  const min = Math.floor(rest / 60_000);
  rest -= min * 60_000;
  const sec = Math.floor(rest / 1000);
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${pad(year, 4)}-${pad(month)}-${pad(day)}T${pad(hour)}:${pad(min)}:${pad(sec)}.${pad(rest - sec * 1000, 3)}Z`;
}
