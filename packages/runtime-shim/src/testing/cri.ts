// Test fixtures for sandboxes and containers from images: a temp state dir with the busybox
// test image imported, the managers the daemon uses, unique cgroup parents, and a teardown that
// removes everything (processes, mounts, cgroups, files) even after a failed test.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import type { ServiceError } from '@grpc/grpc-js';
import { runtime } from '@berth/api';
import { createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';

import { v1Mounts } from '../cgroups/cgroups';
import { ContainerManager } from '../containers';
import { ImageStore, importPath } from '../images';
import { buildTestImage } from '../images/testing';
import { SandboxManager, unmountAll } from '../sandbox/sandbox';
import { pidStartTime } from '../state';
import { uniqueId } from './bundle';

let layout: string | undefined;

/** The busybox test image as an OCI layout (built once per test file: removeTestImageLayout in afterAll). */
export function testImageLayout(): string {
  if (layout === undefined) {
    layout = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cri-image-'));
    buildTestImage(layout, { tag: 'v1' });
  }
  return layout;
}

export function removeTestImageLayout(): void {
  if (layout !== undefined) fs.rmSync(layout, { recursive: true, force: true });
  layout = undefined;
}

export const TEST_IMAGE = 'berth.test/busybox:v1';

/** Removes a cgroup subtree (deepest first) in every hierarchy (crun also uses name=systemd and the v2 root). */
export function removeCgroupTree(rel: string): void {
  const roots = new Set(Object.values(v1Mounts()));
  for (const e of fs.readdirSync('/sys/fs/cgroup', { withFileTypes: true })) if (e.isDirectory()) roots.add(path.join('/sys/fs/cgroup', e.name));
  for (const mnt of roots) {
    const root = path.join(mnt, rel);
    const dirs: string[] = [];
    const walk = (d: string): void => {
      let names: fs.Dirent[];
      try { names = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
      dirs.push(d);
      for (const n of names) if (n.isDirectory()) walk(path.join(d, n.name));
    };
    walk(root);
    for (const d of dirs.reverse()) {
      try {
        for (const pid of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
          try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
        }
      } catch { /* no procs file */ }
      for (let i = 0; i < 50; i++) {
        try { fs.rmdirSync(d); break; } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
        }
      }
    }
  }
}

/** Kills the monitors and containers recorded under a daemon state dir, then removes it all. */
export function scrubStateDir(stateDir: string): void {
  const cri = path.join(stateDir, 'cri');
  for (const id of fs.existsSync(cri) ? fs.readdirSync(cri) : []) {
    try {
      const meta = JSON.parse(fs.readFileSync(path.join(cri, id, 'meta.json'), 'utf8')) as { monitorPid: number; monitorStart: string };
      if (meta.monitorPid > 0 && pidStartTime(meta.monitorPid)?.start === meta.monitorStart) process.kill(meta.monitorPid, 'SIGKILL');
    } catch { /* no record */ }
  }
  const rt = path.join(stateDir, 'containers');
  for (const id of fs.existsSync(rt) ? fs.readdirSync(rt) : []) {
    try {
      const st = JSON.parse(fs.readFileSync(path.join(rt, id, 'state.json'), 'utf8')) as { pid: number; pidStartTime: string };
      if (pidStartTime(st.pid)?.start === st.pidStartTime) process.kill(st.pid, 'SIGKILL');
    } catch { /* no state */ }
  }
  unmountAll(stateDir);
  fs.rmSync(stateDir, { recursive: true, force: true });
}

export class CriFixture {
  readonly stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cri-'));
  readonly logDir = path.join(this.stateDir, 'pod-logs');
  /** Parent of every cgroup this fixture makes: /berth-test-<rand>. */
  readonly cgroupRoot = `/${uniqueId('berth-test')}`;
  images!: ImageStore;
  sandboxes!: SandboxManager;
  containers!: ContainerManager;

  async init(): Promise<this> {
    this.images = new ImageStore({ root: path.join(this.stateDir, 'images') });
    await importPath(this.images, testImageLayout(), { name: TEST_IMAGE });
    this.open();
    return this;
  }

  /** (Re)creates the managers over the same state, as a restarted daemon does. */
  open(): void {
    void this.containers?.close();
    this.containers = new ContainerManager({ stateDir: this.stateDir, images: this.images });
    this.sandboxes = new SandboxManager(path.join(this.stateDir, 'sandboxes'), undefined, this.containers.rt);
    this.containers.sandboxes = this.sandboxes;
  }

  sandboxConfig(over: Partial<runtime.PodSandboxConfig> = {}, qos = 'burstable'): runtime.PodSandboxConfig {
    const uid = uniqueId('uid');
    return runtime.PodSandboxConfig.fromPartial({
      metadata: { name: uniqueId('pod'), uid, namespace: 'default', attempt: 0 },
      logDirectory: path.join(this.logDir, uid),
      linux: { cgroupParent: `${this.cgroupRoot}/kubepods/${qos}/pod${uid}` },
      ...over,
    });
  }

  containerConfig(name: string, command: string[], over: Partial<runtime.ContainerConfig> = {}): runtime.ContainerConfig {
    return runtime.ContainerConfig.fromPartial({ metadata: { name }, image: { image: TEST_IMAGE }, command, logPath: `${name}/0.log`, ...over });
  }

  async cleanup(): Promise<void> {
    for (const c of this.containers?.list() ?? []) await this.containers.remove(c.id).catch(() => undefined);
    for (const s of this.sandboxes?.list() ?? []) await this.sandboxes.remove(s.id).catch(() => undefined);
    await this.containers?.close();
    scrubStateDir(this.stateDir);
    removeCgroupTree(this.cgroupRoot);
  }
}

/** The real berth-runtime-shim binary (dist), from the sources or from dist itself. */
export function shimBin(): string {
  const here = path.resolve(__dirname, '..', 'bin', 'berth-runtime-shim.js');
  return fs.existsSync(here) && here.includes(`${path.sep}dist${path.sep}`) ? here : path.resolve(__dirname, '..', '..', 'dist', 'bin', 'berth-runtime-shim.js');
}

/**
 * A real berth-runtime-shim on a temp state dir with the test image imported, a unique cgroup
 * root for its pods, and a teardown that removes everything its containers left.
 */
export class ShimFixture {
  readonly dir: string;
  readonly stateDir: string;
  readonly sock: string;
  readonly cgroupRoot = `/${uniqueId('berth-test')}`;
  svc: ServiceProcess | undefined;
  client: runtime.RuntimeServiceClient | undefined;

  constructor(prefix: string) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.stateDir = path.join(this.dir, 'state');
    this.sock = path.join(this.dir, 'shim.sock');
  }

  async importImage(): Promise<void> {
    await importPath(new ImageStore({ root: path.join(this.stateDir, 'images') }), testImageLayout(), { name: TEST_IMAGE });
  }

  /** Starts the daemon (again) and connects a client; throws with its output if it does not serve. */
  async start(extraArgs: string[] = []): Promise<runtime.RuntimeServiceClient> {
    this.client?.close();
    this.svc = startServiceProcess(shimBin(), ['--listen', `unix://${this.sock}`, '--state-dir', this.stateDir, ...extraArgs]);
    const health = await waitServing(`unix://${this.sock}`);
    if (health !== 'SERVING') throw new Error(`berth-runtime-shim did not serve (${health}): ${this.svc.output()}`);
    this.client = createClient(runtime.RuntimeServiceClient, { target: `unix://${this.sock}` });
    return this.client;
  }

  /** A unary call on the client as a promise (an arrow: `const { call } = fx` keeps its types). */
  readonly call = <Req, Res>(fn: (req: Req, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: Req): Promise<Res> => {
    const client = this.client!;
    return new Promise((resolve, reject) => fn.call(client, req, (e: ServiceError | null, r: Res) => (e ? reject(e) : resolve(r))));
  };

  async cleanup(): Promise<void> {
    this.client?.close();
    await this.svc?.stop();
    scrubStateDir(this.stateDir);
    fs.rmSync(this.dir, { recursive: true, force: true });
    removeCgroupTree(this.cgroupRoot);
  }
}
