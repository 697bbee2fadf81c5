// The warm cgroup pool of a long-running runtime, on the real kernel (cgroup v1 here): the init
// is born in its own cgroups by a spawner thread (never migrated, the daemon never left in
// them), the pool refills, and nothing of it outlives close(), a failed create or a kill -9.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { containerSyscalls, type CgroupSpawner, type ContainerSyscalls } from '@berth/native';

import { Runtime } from '../runtime';
import { cgroupMounts, makeBundle, mountinfoView, uniqueId, type Bundle } from '../testing/bundle';
import { RUNTIME_PARENT, v1Mounts } from './cgroups';
import { isPoolPath } from './pool';

const mounts = v1Mounts();
const hierarchies = [...new Set(Object.values(mounts))];

/** The dirs under /berth of every hierarchy whose name starts with `prefix`. */
function dirsNamed(prefix: string): string[] {
  return hierarchies.flatMap((mnt) => {
    try {
      return fs.readdirSync(path.join(mnt, RUNTIME_PARENT)).filter((n) => n.startsWith(prefix)).map((n) => path.join(mnt, RUNTIME_PARENT, n));
    } catch {
      return [];
    }
  });
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !ok(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** containerSyscalls, recording whether each spawn went through a spawner. */
function recording(): { sys: ContainerSyscalls; viaSpawner: boolean[] } {
  const viaSpawner: boolean[] = [];
  const sys: ContainerSyscalls = {
    ...containerSyscalls,
    spawnContainer(plan, onPause, spawner?: CgroupSpawner) {
      viaSpawner.push(spawner !== undefined);
      return containerSyscalls.spawnContainer(plan, onPause, spawner);
    },
  };
  return { sys, viaSpawner };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup(edit?: Parameters<typeof makeBundle>[1]): { rt: Runtime; root: string; bundle: Bundle; viaSpawner: boolean[]; prefix: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-pool-'));
  const bundle = makeBundle(['/bin/sh', '-c', 'cat /proc/self/cgroup'], edit);
  const { sys, viaSpawner } = recording();
  const rt = new Runtime({ root, cgroupPool: 2, syscalls: sys });
  const prefix = rt.pool!.dirPrefix;
  cleanups.push(async () => {
    for (const id of rt.store.ids()) await rt.delete(id, true).catch(() => undefined);
    await rt.close();
    bundle.remove();
    fs.rmSync(root, { recursive: true, force: true });
    // Whatever happened, no pool dir of this runtime stays behind.
    for (const d of dirsNamed(prefix)) fs.rmdirSync(d);
  });
  return { rt, root, bundle, viaSpawner, prefix };
}

async function runOnce(rt: Runtime, bundle: Bundle, id: string): Promise<{ code: number | null; out: string; procs: string[] }> {
  const out = path.join(path.dirname(bundle.dir), `${id}.out`);
  const fd = fs.openSync(out, 'w+');
  const nul = fs.openSync('/dev/null', 'r');
  try {
    const c = await rt.create(id, { bundle: bundle.dir, stdio: [nul, fd, fd] });
    // Before start: the init is in its cgroup, in every hierarchy; so is the thread of ours that
    // cloned it while it waits for the init's exec (its process is ours: filtered out).
    const procsOf = (mnt: string): string[] => fs.readFileSync(path.join(mnt, RUNTIME_PARENT, id, 'cgroup.procs'), 'utf8').split('\n').filter((p) => p !== '' && p !== String(process.pid));
    const procs = hierarchies.map((mnt) => procsOf(mnt).join(','));
    expect(rt.ps(id)).toEqual([c.state.pid]);
    await rt.start(id);
    const exit = await c.exited;
    // After the exec the launching thread leaves: nothing of ours stays in the container's cgroups.
    await until('our thread to leave the cgroup', () => hierarchies.every((mnt) => !fs.readFileSync(path.join(mnt, RUNTIME_PARENT, id, 'tasks'), 'utf8').split('\n').filter(Boolean).some((t) => fs.existsSync(`/proc/self/task/${t}`))));
    await rt.delete(id);
    return { code: exit.code, out: fs.readFileSync(out, 'utf8'), procs: procs.map((p) => (p === String(c.state.pid) ? 'init' : p)) };
  } finally {
    fs.closeSync(fd);
    fs.closeSync(nul);
    fs.rmSync(out, { force: true });
  }
}

describe('cgroup pool (v1)', () => {
  it('the init is born in its own cgroups by a pooled spawner; the pool refills; close() leaves nothing', async () => {
    const { rt, bundle, viaSpawner, prefix } = setup();
    // The first create finds the pool empty (it fills on first use) and makes its cgroup itself.
    const first = await runOnce(rt, bundle, uniqueId());
    expect(first.code).toBe(0);
    await until('the pool to fill', () => rt.pool!.available === 2);
    expect(dirsNamed(prefix)).toHaveLength(2 * hierarchies.length);
    for (let i = 0; i < 3; i++) {
      const id = uniqueId();
      const r = await runOnce(rt, bundle, id);
      expect(r.code).toBe(0);
      // Only the init: the daemon's spawner thread has left (it exited after the clone).
      expect(r.procs).toEqual(hierarchies.map(() => 'init'));
      // Seen from inside, every controller's cgroup is the container's own.
      const lines = r.out.trim().split('\n').filter((l) => !/:name=|^0::/.test(l));
      expect(lines.length).toBeGreaterThanOrEqual(hierarchies.length);
      for (const l of lines) expect(l).toMatch(new RegExp(`:${RUNTIME_PARENT}/${id}$`));
      // Removed after delete returned: the cgroup, then the state dir.
      await until('the cgroup and the state to go', () => dirsNamed(id).length === 0 && rt.store.ids().length === 0);
      await until('the pool to refill', () => rt.pool!.available === 2);
    }
    expect(viaSpawner).toEqual([false, true, true, true]);
    await rt.close();
    expect(dirsNamed(prefix)).toEqual([]);
  });

  it('refills once the takes pause while an entry is left, at once when a take empties the pool', async () => {
    const { rt } = setup();
    await rt.warm();
    const pool = rt.pool!;
    const taken: Array<NonNullable<ReturnType<typeof pool.take>>> = [];
    const all = new Set(['network', 'ipc', 'uts', 'mount', 'pid']);
    cleanups.push(async () => {
      for (const t of taken) {
        containerSyscalls.releaseSpawner(t.spawner);
        await t.driver.destroyLeaf().catch(() => undefined);
      }
    });
    taken.push(pool.take(`${RUNTIME_PARENT}/${uniqueId('tk')}`, all)!);
    expect(pool.available).toBe(1);
    expect(pool.refill).toBe('waiting'); // not while a container is being set up
    taken.push(pool.take(`${RUNTIME_PARENT}/${uniqueId('tk')}`, all)!);
    expect(pool.available).toBe(0);
    expect(pool.refill).toBe('filling'); // nothing left: at once
    await until('the pool to refill', () => pool.available === 2);
    expect(pool.refill).toBe('none');
    taken.push(pool.take(`${RUNTIME_PARENT}/${uniqueId('tk')}`, all)!);
    await until('the refill after the pause', () => pool.available === 2);
    expect(taken.every((t) => t !== undefined)).toBe(true);
  });

  it('a pooled container gets its /sys/fs/cgroup from the spawner\'s prebuilt tree, the same mounts the ops make', async () => {
    const mountinfo = (s: Parameters<NonNullable<Parameters<typeof makeBundle>[1]>>[0]): void => { s.process!.args = ['cat', '/proc/self/mountinfo']; };
    const pooled = setup(mountinfo);
    await pooled.rt.warm();
    const a = uniqueId();
    const withTree = mountinfoView((await runOnce(pooled.rt, pooled.bundle, a)).out, a);
    expect(pooled.viaSpawner).toEqual([true]);
    // A pids limit keeps a create off the pool: its /sys/fs/cgroup is made by the ops.
    const plain = setup((s) => { mountinfo(s); s.linux!.resources = { ...s.linux!.resources, pids: { limit: 100 } }; });
    const b = uniqueId();
    const withOps = mountinfoView((await runOnce(plain.rt, plain.bundle, b)).out, b);
    expect(plain.viaSpawner).toEqual([false]);
    expect(cgroupMounts(withTree).length).toBe(1 + hierarchies.length);
    expect(cgroupMounts(withTree)).toEqual(cgroupMounts(withOps));
    for (const l of cgroupMounts(withTree)) expect(l).toMatch(/ ro,nosuid,nodev,noexec,relatime /);
    // Attached, not mounted in place: the tree's mounts are older than the container's root.
    expect(withTree[0]).toMatch(/ \/sys\/fs\/cgroup /);
    expect(withOps[0]).toMatch(/^<?\S* \/ /);
  });

  it('warm() fills the pool before the first create, which then takes a pooled cgroup; after delete its cgroup goes, then its state', async () => {
    const { rt, bundle, viaSpawner, prefix } = setup();
    expect(rt.pool!.available).toBe(0);
    await rt.warm();
    expect(rt.pool!.available).toBe(2);
    expect(dirsNamed(prefix)).toHaveLength(2 * hierarchies.length);
    const id = uniqueId();
    const r = await runOnce(rt, bundle, id);
    expect(r.code).toBe(0);
    expect(r.procs).toEqual(hierarchies.map(() => 'init'));
    expect(viaSpawner).toEqual([true]);
    // The container's cgroup is removed in the background after delete, and its state dir only
    // after it (a crash in between leaves the state for delete --force); the runtime's parent
    // stays (it holds the refilled entries).
    // Never the state without the cgroup's removal done first: checked state first, then the
    // cgroup, so a cgroup still seen means the state was still there at the first look.
    const stateDir = rt.store.dir(id);
    await until('the deleted cgroup and its state to go', () => {
      const state = fs.existsSync(stateDir);
      const cgroup = dirsNamed(id).length > 0;
      if (cgroup && !state) throw new Error(`the state dir of ${id} went before its cgroup`);
      return !state && !cgroup;
    });
    await until('the pool to refill', () => rt.pool!.available === 2);
    expect(dirsNamed(prefix)).toHaveLength(2 * hierarchies.length);
    await rt.close();
    expect(dirsNamed(prefix)).toEqual([]);
  });

  it('a pids limit takes the normal path (the spawner would count as a task) and is enforced', async () => {
    const { rt, bundle, viaSpawner } = setup((s) => {
      s.process!.args = ['/bin/sh', '-c', 'cat /sys/fs/cgroup/pids/pids.max'];
      s.linux!.resources = { ...s.linux!.resources, pids: { limit: 7 } };
    });
    rt.pool!.fill();
    await until('the pool to fill', () => rt.pool!.available === 2);
    const r = await runOnce(rt, bundle, uniqueId());
    expect(r.out.trim()).toBe('7');
    expect(rt.pool!.available).toBe(2);
    expect(viaSpawner).toEqual([false]);
  });

  it('a failed create with a pooled cgroup leaves no cgroup, state or thread in a cgroup', async () => {
    const { rt, bundle, viaSpawner } = setup((s) => {
      s.process!.args = ['/no/such/binary'];
    });
    await expect(rt.create(uniqueId(), { bundle: bundle.dir })).rejects.toThrow(/executable file not found/);
    await until('the pool to fill', () => rt.pool!.available === 2);
    const id = uniqueId();
    await expect(rt.create(id, { bundle: bundle.dir })).rejects.toThrow(/process.args\[0\].*no\/such\/binary/);
    expect(viaSpawner).toEqual([false, true]);
    expect(dirsNamed(id)).toEqual([]);
    expect(rt.store.ids()).toEqual([]);
    // No thread of this process is left in any container cgroup (only the pool's own spawners).
    const own = new Set(fs.readdirSync('/proc/self/task'));
    for (const mnt of hierarchies) {
      for (const d of fs.readdirSync(path.join(mnt, RUNTIME_PARENT)).filter((n) => !n.startsWith(rt.pool!.dirPrefix))) {
        const tasks = path.join(mnt, RUNTIME_PARENT, d, 'tasks');
        if (!fs.existsSync(tasks)) continue;
        for (const t of fs.readFileSync(tasks, 'utf8').split('\n').filter(Boolean)) expect(own.has(t)).toBe(false);
      }
    }
  });

  it('a spawn refused before the hand-over (a synchronous throw) releases the pooled spawner: no cgroup or thread is left', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-pool-'));
    const bundle = makeBundle(['/bin/true']);
    const sys: ContainerSyscalls = { ...containerSyscalls, spawnContainer: () => { throw new RangeError('container plan refused'); } };
    const rt = new Runtime({ root, cgroupPool: 2, syscalls: sys });
    const prefix = rt.pool!.dirPrefix;
    cleanups.push(async () => {
      await rt.close();
      bundle.remove();
      fs.rmSync(root, { recursive: true, force: true });
      for (const d of dirsNamed(prefix)) fs.rmdirSync(d);
    });
    await rt.warm();
    // Each entry's thread is in its cgroups (a thread still attaching would find none left).
    const attached = (): boolean => dirsNamed(prefix).every((d) => fs.readFileSync(path.join(d, 'tasks'), 'utf8').split('\n').some((t) => t !== '' && fs.existsSync(`/proc/self/task/${t}`)));
    await until('the spawner threads to attach', attached);
    const id = uniqueId();
    await expect(rt.create(id, { bundle: bundle.dir })).rejects.toThrow(/container plan refused/);
    expect(dirsNamed(id)).toEqual([]);
    expect(rt.store.ids()).toEqual([]);
  });

  it('a forced delete of a create that died before state.json kills and removes what is in the pool cgroup it noted', async () => {
    const { rt } = setup();
    await rt.warm();
    const id = uniqueId();
    // What a create leaves when its daemon dies between the spawn and the rename: the claimed
    // state dir with the pool name noted, and the init in the pool-named cgroup.
    rt.store.claim(id);
    const t = rt.pool!.take(`${RUNTIME_PARENT}/${id}`, new Set(['network', 'ipc', 'uts', 'mount', 'pid']))!;
    rt.store.notePooledCgroup(id, t.poolPath);
    containerSyscalls.releaseSpawner(t.spawner);
    expect(isPoolPath(t.poolPath)).toBe(true);
    expect(isPoolPath('/berth/..')).toBe(false);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const gone = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, sig) => r(sig)));
    cleanups.push(() => { child.kill('SIGKILL'); });
    for (const d of new Set(Object.values(t.driver.paths))) fs.writeFileSync(path.join(d, 'cgroup.procs'), String(child.pid));
    await rt.delete(id, true);
    expect(await gone).toBe('SIGKILL');
    expect(dirsNamed(path.basename(t.poolPath))).toEqual([]);
    expect(dirsNamed(id)).toEqual([]);
    expect(rt.store.ids()).toEqual([]);
  });

  it('after a kill -9 of the process holding a pool, a runtime on the same root removes its dirs', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-pool-crash-'));
    const dist = path.resolve(__dirname, '..', '..', 'dist', 'runtime.js');
    // A process that fills a pool and says so.
    const script = `
      const { Runtime } = require(${JSON.stringify(dist)});
      const rt = new Runtime({ root: ${JSON.stringify(root)}, cgroupPool: 2 });
      rt.pool.fill();
      const t = setInterval(() => { if (rt.pool.available === 2) { clearInterval(t); console.log(rt.pool.dirPrefix); } }, 10);
      setInterval(() => undefined, 1000);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const gone = new Promise((r) => child.once('exit', r));
    cleanups.push(async () => {
      child.kill('SIGKILL');
      await gone;
      fs.rmSync(root, { recursive: true, force: true });
    });
    const prefix = await new Promise<string>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
      child.once('exit', (code) => reject(new Error(`pool process exited early (${code})`)));
    });
    cleanups.push(() => {
      for (const d of dirsNamed(prefix)) fs.rmdirSync(d);
    });
    expect(dirsNamed(prefix)).toHaveLength(2 * hierarchies.length);
    child.kill('SIGKILL');
    await gone;
    // Its threads died with it, the dirs are still there ...
    await until('the dead spawners to leave their cgroups', () => dirsNamed(prefix).every((d) => fs.readFileSync(path.join(d, 'tasks'), 'utf8') === ''));
    expect(dirsNamed(prefix)).toHaveLength(2 * hierarchies.length);
    // ... until a runtime with the same root starts.
    const rt = new Runtime({ root, cgroupPool: 2 });
    expect(rt.pool!.dirPrefix).toBe(prefix);
    expect(dirsNamed(prefix)).toEqual([]);
    await rt.close();
  });
});

describe('CLONE_VM init', () => {
  it('a held init shares the runtime memory (no copy) until its exec; a time namespace init is a copy', async () => {
    const { rt, bundle } = setup();
    const maps = (pid: number | 'self'): string => fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
    // Same mm: a mapping made by us after the clone shows up in the init's maps too (read
    // back to back; retried in case another thread of ours maps something in between).
    const sameMm = (pid: number): boolean => {
      for (let i = 0; i < 5; i++) if (maps(pid) === maps('self')) return true;
      return false;
    };
    const id = uniqueId();
    const c = await rt.create(id, { bundle: bundle.dir });
    const ballast = Buffer.alloc(64 << 20, 1);
    expect(sameMm(c.state.pid)).toBe(true);
    await rt.start(id);
    await c.exited;
    await rt.delete(id);
    ballast.fill(2);

    const timeBundle = makeBundle(['/bin/true'], (s) => s.linux!.namespaces!.push({ type: 'time' }));
    cleanups.push(() => timeBundle.remove());
    const tid = uniqueId();
    const t = await rt.create(tid, { bundle: timeBundle.dir });
    const more = Buffer.alloc(64 << 20, 1);
    expect(sameMm(t.state.pid)).toBe(false);
    await rt.delete(tid, true);
    more.fill(2);
  });
});

describe('namespaces made ahead by the spawner', () => {
  const ns = (pid: number | 'self', t: string): string => fs.readlinkSync(`/proc/${pid}/ns/${t}`);

  it('a pooled init has new net, ipc and uts namespaces of its own (lo only, its hostname), unlike the host and each other', async () => {
    const { rt, bundle, viaSpawner } = setup((s) => {
      s.process!.args = ['/bin/sh', '-c', 'hostname; ls /sys/class/net'];
      s.hostname = 'pooled';
    });
    rt.pool!.fill();
    await until('the pool to fill', () => rt.pool!.available === 2);
    // Both exist at once while their namespaces are compared: a namespace's inode number is
    // reused once it is freed, so one of a deleted container could equal a later one's.
    const made: Array<{ id: string; out: string; fd: number; c: Awaited<ReturnType<typeof rt.create>> }> = [];
    for (let i = 0; i < 2; i++) {
      const id = uniqueId();
      const out = path.join(os.tmpdir(), `${id}.out`);
      const fd = fs.openSync(out, 'w+');
      cleanups.push(() => fs.rmSync(out, { force: true }));
      made.push({ id, out, fd, c: await rt.create(id, { bundle: bundle.dir, stdio: [fd, fd, fd] }) });
    }
    const seen = made.map(({ c }) => ['net', 'ipc', 'uts', 'mnt', 'pid'].map((t) => ns(c.state.pid, t)));
    for (const { c } of made) for (const t of ['net', 'ipc', 'uts']) expect(ns(c.state.pid, t)).not.toBe(ns('self', t));
    for (let k = 0; k < 5; k++) expect(seen[0]![k]).not.toBe(seen[1]![k]);
    for (const { id, out, fd, c } of made) {
      await rt.start(id);
      expect((await c.exited).code).toBe(0);
      fs.closeSync(fd);
      expect(fs.readFileSync(out, 'utf8')).toBe('pooled\nlo\n');
      await rt.delete(id);
    }
    expect(viaSpawner).toEqual([true, true]);
  });

  it('a container without a new network namespace, or with a user namespace, is not pooled', async () => {
    const { rt, bundle, viaSpawner } = setup((s) => {
      s.process!.args = ['/bin/true'];
      s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'network');
    });
    rt.pool!.fill();
    await until('the pool to fill', () => rt.pool!.available === 2);
    const id = uniqueId();
    const c = await rt.create(id, { bundle: bundle.dir });
    expect(ns(c.state.pid, 'net')).toBe(ns('self', 'net'));
    await rt.delete(id, true);
    const userBundle = makeBundle(['/bin/true'], (s) => {
      s.linux!.namespaces!.push({ type: 'user' });
      s.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      s.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      s.linux!.resources = {};
    });
    cleanups.push(() => userBundle.remove());
    const uid = uniqueId();
    const u = await rt.create(uid, { bundle: userBundle.dir });
    // Its network namespace belongs to its own user namespace (it can configure it).
    expect(ns(u.state.pid, 'user')).not.toBe(ns('self', 'user'));
    await rt.delete(uid, true);
    expect(viaSpawner).toEqual([false, false]);
    expect(rt.pool!.available).toBe(2);
  });
});
