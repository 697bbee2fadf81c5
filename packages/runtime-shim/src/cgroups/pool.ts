// A daemon's warm pool of container cgroups (cgroup v1): directories made ahead of need under
// the runtime's parent as /berth/.pool-<tag>-<n>, each with a spawner thread of the daemon
// already inside (see CgroupSpawner in @berth/native). A create takes one and has the spawner
// clone the init there; once the init is set up (its binds of these dirs made by name), while
// the container runs, it renames the entry to its container's own name (/berth/<id>: v1 renames
// a cgroup in place, within its parent). The mkdirs, the cpuset setup, the attach (the kernel's RCU
// grace period, 4-14 ms here) and the network, IPC and UTS namespaces (made by the thread,
// inherited by the init) all happen off the create's path; a new entry is made after, once the
// takes pause. A deleted container's cgroup is removed on libuv's threads after the delete has
// returned (removeLeaf()), and its state dir only after that.
//
// Crash safety: a dir is either a pool dir (named with this runtime's tag; a restarted daemon
// removes every such dir it finds, their threads died with the old process), or the pool dir
// of a create in flight, whose name the create noted in its state dir before the spawn
// (StateStore.notePooledCgroup(): a delete --force of that half-made container kills what is in
// it and removes it), or, once renamed, the cgroup of a container whose state dir was claimed
// first and is removed only after the cgroup, so the runtime's own recovery (delete --force)
// removes it at its default path.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CLONE_FLAGS, type CgroupSpawner, type ContainerSyscalls } from '@berth/native';

import { CgroupV1, RUNTIME_PARENT, v1Mounts } from './cgroups';

interface Entry {
  cgPath: string;
  spawner: CgroupSpawner;
  /** The controller names of the /sys/fs/cgroup tree its spawner builds ahead. */
  cgroupTree: string[];
}

export interface PooledCgroup {
  /** The entry's cgroup, still under its pool name: for the limits and the init's binds. */
  driver: CgroupV1;
  spawner: CgroupSpawner;
  /** The pool name of the entry (under the runtime's parent). */
  poolPath: string;
  /**
   * The controllers, in order, of the container's /sys/fs/cgroup that the spawner builds ahead
   * (a plan asks for it with a 'cgroupTree' op where its binds are exactly these).
   */
  cgroupTree: string[];
  /**
   * Renames the entry to the container's own name (the cgPath given to take()) once its init is
   * set up (its binds of the cgroup dirs are made by name); returns the driver at that name.
   * Undoes a partial rename and throws if a hierarchy refuses.
   */
  commit(): CgroupV1;
}

const POOL_PREFIX = '.pool-';

/** Whether `cgPath` is a pool entry's name (`/berth/.pool-<tag>-<n>`), as a noted one must be. */
export function isPoolPath(cgPath: string): boolean {
  return path.posix.dirname(cgPath) === RUNTIME_PARENT && /^\.pool-[0-9a-f]{12}-[0-9a-f]{12}$/.test(path.posix.basename(cgPath));
}
/** How long after a delete its cgroup's removal starts (see removeLeaf()). */
const REMOVE_DELAY_MS = 5;
/** How long the takes must pause before a pool that still has an entry is topped up. */
const REFILL_IDLE_MS = 10;

/**
 * rmdir of a deleted container's cgroup on libuv's threads (the kernel's teardown of a v1 cgroup
 * is not the event loop's work), retried while the kernel still lets go of the last task (~1 s at
 * most; then left for removeStale()).
 */
async function rmdirOffThread(dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await fs.promises.rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || i >= 200) throw err;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The namespaces an entry's spawner thread makes ahead (the costliest part of a clone, a
 * network namespace, among them): an entry serves only a container that asks for new ones of
 * each kind and no new user namespace (which would have to own them).
 */
const PREMADE: ReadonlyArray<[string, number]> = [['network', CLONE_FLAGS.net], ['ipc', CLONE_FLAGS.ipc], ['uts', CLONE_FLAGS.uts]];

export class CgroupPool {
  private readonly entries: Entry[] = [];
  private readonly mounts: Record<string, string>;
  /** One dir per hierarchy (co-mounted controllers share one). */
  private readonly hierarchies: string[];
  /** The name every dir of this pool starts with (under the runtime's parent). */
  readonly dirPrefix: string;
  /** A refill waiting for the takes to pause (fill(true)). */
  private idleTimer: NodeJS.Timeout | undefined;
  /** The refill in progress, if any (close() waits for it). */
  private filling: Promise<void> | undefined;
  private closed = false;
  /** The last error of a refill (the pool then stays empty; creates take the normal path). */
  lastError: Error | undefined;

  /**
   * `owner` names the runtime the pool belongs to (its state root): pool dirs carry a tag made
   * from it, so that a daemon's cleanup never touches the pool of another daemon on the node.
   */
  constructor(private readonly sys: ContainerSyscalls, owner: string, private readonly size = 2) {
    this.mounts = v1Mounts();
    this.hierarchies = [...new Set(Object.values(this.mounts))];
    this.dirPrefix = `${POOL_PREFIX}${createHash('sha256').update(path.resolve(owner)).digest('hex').slice(0, 12)}-`;
  }


  get available(): number {
    return this.entries.length;
  }

  /** What the refill is doing: waiting for the takes to pause, filling, or nothing. */
  get refill(): 'waiting' | 'filling' | 'none' {
    return this.filling !== undefined ? 'filling' : this.idleTimer !== undefined ? 'waiting' : 'none';
  }

  /**
   * Removes the pool dirs a previous process with this owner left (killed: its threads died
   * with it, so they are empty). The pool itself fills on its first take().
   */
  removeStale(): void {
    const mine = this.dirPrefix;
    for (const mnt of this.hierarchies) {
      let names: string[];
      try {
        names = fs.readdirSync(path.join(mnt, RUNTIME_PARENT));
      } catch {
        continue;
      }
      for (const n of names) {
        if (!n.startsWith(mine)) continue;
        try {
          fs.rmdirSync(path.join(mnt, RUNTIME_PARENT, n));
        } catch {
          // still in use (cannot be ours) or already gone
        }
      }
    }
  }

  private async makeEntry(): Promise<Entry> {
    const cgPath = `${RUNTIME_PARENT}/${this.dirPrefix}${randomBytes(6).toString('hex')}`;
    const cg = new CgroupV1(cgPath, this.mounts);
    const fds: number[] = [];
    try {
      // The kernel's part of a cgroup mkdir (~70 us per hierarchy here) runs on libuv's threads
      // while the event loop serves requests; the parent already exists after the first entry
      // (and passes cpuset cpus/mems on by itself: cgroup.clone_children). Without it, or on
      // any error, the event loop's create() makes the parent levels and sets them up.
      const leaves = this.hierarchies.map((mnt) => path.join(mnt, cgPath));
      const made = await Promise.allSettled(leaves.map((dir) => fs.promises.mkdir(dir)));
      if (made.some((r) => r.status === 'rejected')) await cg.create();
      for (const dir of new Set(Object.values(cg.paths))) fds.push(fs.openSync(path.join(dir, 'tasks'), 'w'));
      // The container's /sys/fs/cgroup too (each controller's dir bound read-only in a tmpfs),
      // built detached by the thread: ~17 mount calls fewer in the init.
      const tree = Object.entries(cg.paths);
      const spawner = this.sys.createSpawner(fds, PREMADE.reduce((f, [, bit]) => f | bit, 0), tree);
      return { cgPath, spawner, cgroupTree: tree.map(([name]) => name) };
    } catch (err) {
      for (const fd of fds) fs.closeSync(fd);
      await cg.destroyLeaf().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Fills the pool now and resolves when it is full (or a refill failed: lastError). A daemon
   * awaits this before it serves, so that its first create is as warm as the next ones.
   */
  async ready(): Promise<void> {
    this.fill();
    await this.filling;
  }

  /**
   * Tops the pool up on the next turn of the event loop (never on a create's path). A refill
   * is kernel work on both CPUs of a small node (eight cgroup mkdirs, a thread's attach, a
   * network namespace): made while the container that took the entry is still being set up
   * and run, it slowed that container's run by ~0.7 ms here. So while an entry is left, the
   * refill waits until no entry has been taken for REFILL_IDLE_MS (`later`); an empty pool
   * refills at once.
   */
  fill(later = false): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (later && this.entries.length > 0 && !this.closed) {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = undefined;
        this.fill();
      }, REFILL_IDLE_MS);
      this.idleTimer.unref();
      return;
    }
    if (this.filling !== undefined || this.closed) return;
    this.filling = (async () => {
      await new Promise((r) => setImmediate(r));
      try {
        while (!this.closed && this.entries.length < this.size) {
          const e = await this.makeEntry();
          if (this.closed) await this.discard(e);
          else this.entries.push(e);
        }
        this.lastError = undefined;
      } catch (err) {
        this.lastError = err as Error;
      } finally {
        this.filling = undefined;
      }
    })();
  }

  /**
   * An entry renamed to `cgPath` (a cgroup that does not exist yet, in the runtime's parent),
   * for a container whose new namespaces (linux.namespaces without a path) are `newNamespaces`;
   * undefined when the pool is empty, the container cannot use an entry, or the rename is
   * refused (the caller then makes the cgroup and the namespaces itself).
   */
  take(cgPath: string, newNamespaces: ReadonlySet<string>): PooledCgroup | undefined {
    if (path.posix.dirname(cgPath) !== RUNTIME_PARENT) return undefined;
    if (newNamespaces.has('user') || PREMADE.some(([type]) => !newNamespaces.has(type))) return undefined;
    // A cgroup of that name already there (a crashed run's): the caller makes its own, as before.
    if (this.hierarchies.length > 0 && fs.existsSync(path.join(this.hierarchies[0]!, cgPath))) return undefined;
    const e = this.entries.shift();
    this.fill(true);
    if (e === undefined) return undefined;
    const commit = (): CgroupV1 => {
      // Eight renames (~0.2 ms): after the spawn, while the container runs, not before it.
      const done: string[] = [];
      try {
        for (const mnt of this.hierarchies) {
          fs.renameSync(path.join(mnt, e.cgPath), path.join(mnt, cgPath));
          done.push(mnt);
        }
      } catch (err) {
        for (const mnt of done) {
          try { fs.renameSync(path.join(mnt, cgPath), path.join(mnt, e.cgPath)); } catch { /* the caller destroys both names */ }
        }
        throw err;
      }
      return new CgroupV1(cgPath, this.mounts);
    };
    return { driver: new CgroupV1(e.cgPath, this.mounts), spawner: e.spawner, poolPath: e.cgPath, cgroupTree: e.cgroupTree, commit };
  }

  /**
   * Removes a deleted container's cgroup (in the runtime's parent, every hierarchy) on libuv's
   * threads, retried while the kernel lets go of it; undefined if it is elsewhere (the caller
   * then removes it itself).
   */
  removeLeaf(cgPath: string): Promise<void> | undefined {
    if (path.posix.dirname(cgPath) !== RUNTIME_PARENT) return undefined;
    // Handing eight rmdirs to libuv's threads costs the event loop ~0.4 ms here: done a little
    // later, once the answer to the delete has gone out (node:http2 sends a call's trailers
    // one turn of the loop after its last message, so the next turn is too early).
    return new Promise<void>((r) => setTimeout(r, REMOVE_DELAY_MS)).then(() => Promise.all(this.hierarchies.map((mnt) => rmdirOffThread(path.join(mnt, cgPath))))).then(() => undefined);
  }

  /** Lets the entry's thread go and removes its dirs (retried while the thread leaves). */
  private discard(e: Entry): Promise<void> {
    this.sys.releaseSpawner(e.spawner);
    return new CgroupV1(e.cgPath, this.mounts).destroyLeaf().catch(() => undefined);
  }

  /** Releases every entry and removes its cgroups. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    await this.filling;
    const all = this.entries.splice(0);
    await Promise.all(all.map((e) => this.discard(e)));
    // The runtime's parent goes with the last cgroup in it, as after a delete (a create racing
    // with this makes it again: its mkdir retries a parent that vanished). Still in use: kept.
    await Promise.all(this.hierarchies.map((mnt) => fs.promises.rmdir(path.join(mnt, RUNTIME_PARENT)).catch(() => undefined)));
  }
}
