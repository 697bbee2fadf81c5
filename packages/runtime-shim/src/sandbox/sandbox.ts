// Pod sandboxes without a pause process. A sandbox is a set of namespaces kept alive by bind
// mounts of their nsfs files (no process holds them), a pod cgroup, and the pod's hostname,
// hosts and resolv.conf files. The namespaces are made by unshare(2) on the JS thread alone
// (net, ipc and uts may be unshared per thread): the thread sets the hostname and the pod
// sysctls from inside, bind-mounts /proc/thread-self/ns/* onto the pin files (the thread's
// mount namespace is still the host's), then setns(2)es back. All of it is synchronous, so no
// other JS runs while the thread is elsewhere; libuv's pool threads never leave the host's.
//
// Crash safety: sandbox.json is written with state "creating" before anything is made, and
// "ready" once all is; a daemon that restarts removes what a crash left of a "creating" one.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { runtime } from '@berth/api';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@berth/common';
import { native, Netns, Rtnl } from '@berth/native';

import { cgroupDriver, cgroupPath } from '../cgroups/cgroups';
import { ociResources } from '../cri/resources';
import { runtimeDefaultSeccomp } from '../cri/seccomp';
import type { Spec } from '../oci/config';
import type { Runtime } from '../runtime';

/** The node's static busybox: the whole rootfs of a shared pid namespace's init. */
const BUSYBOX = '/bin/busybox';
/** Runtime ids of the inits of shared pid namespaces. */
export const POD_INIT_PREFIX = 'pod-init-';

export type NsMode = 'pod' | 'node' | 'container';
export type SandboxState = 'creating' | 'ready' | 'notready';

export interface SandboxRecord {
  id: string;
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
  state: SandboxState;
  createdAtUs: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtimeHandler: string;
  hostname: string;
  logDirectory: string;
  /** Absolute cgroupfs path of the pod cgroup, e.g. /kubepods/burstable/pod<uid>. */
  cgroupParent: string;
  /** Whether RunPodSandbox made the pod cgroup (a kubelet that made it itself also removes it). */
  ownsCgroup?: boolean;
  /** The cgroup levels RunPodSandbox made (e.g. /kubepods/besteffort), removed again when empty. */
  createdCgroups?: string[];
  modes: { network: NsMode; pid: NsMode; ipc: NsMode };
  /** Pin files of the pod's namespaces (absent where the node's is used). */
  ns: { net?: string; ipc?: string; uts?: string; pid?: string };
  /**
   * With a shared process namespace only: the runtime container id of the namespace's init.
   * A pid namespace dies with its init (and kills everything in it), so unlike the others it
   * cannot be kept by a bind mount alone; this tiny init (busybox sh reaping orphans) keeps it.
   */
  pidInit?: string;
  dir: string;
  privileged: boolean;
  /** The PodSandboxConfig as given (JSON), for containers created later. */
  config: unknown;
}

const ID = /^[0-9a-f]{64}$/;
const HOSTNAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/i;
const PIN_KINDS = ['net', 'ipc', 'uts'] as const;

const nowUs = (): number => Date.now() * 1000;

function mode(m: runtime.NamespaceMode, field: string, allowed: NsMode[], dflt: NsMode): NsMode {
  const M = runtime.NamespaceMode;
  const v: NsMode | undefined = m === M.NAMESPACE_MODE_UNSPECIFIED ? dflt : m === M.NAMESPACE_MODE_POD ? 'pod' : m === M.NAMESPACE_MODE_NODE ? 'node' : m === M.NAMESPACE_MODE_CONTAINER ? 'container' : undefined;
  if (v === undefined || !allowed.includes(v)) throw new InvalidArgumentError(field, `must be one of ${allowed.map((a) => a.toUpperCase()).join(', ')} for a sandbox`);
  return v;
}

/** Mount points under `prefix` in this process's mount table (decoded). */
export function mountsUnder(prefix: string): string[] {
  const out: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp === undefined) continue;
    const p = mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === prefix || p.startsWith(`${prefix}/`)) out.push(p);
  }
  return out;
}

/** Unmounts every mount at or below `dir` (deepest first). */
export function unmountAll(dir: string): void {
  for (const m of mountsUnder(dir).reverse()) {
    try {
      native.umount2(m, ['detach']);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EINVAL' && (err as { code?: string }).code !== 'ENOENT') throw err;
    }
  }
}

function hostsFile(hostname: string): string {
  return [
    '# Kubernetes-managed hosts file (written by berth runtime-shim).',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
    `127.0.1.1\t${hostname}`,
    '',
  ].join('\n');
}

function resolvConf(dns: runtime.DNSConfig | undefined): string {
  if (dns === undefined || (dns.servers.length === 0 && dns.searches.length === 0 && dns.options.length === 0)) {
    // No DNS config: the node's resolver, as containerd does.
    try {
      return fs.readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      return '';
    }
  }
  for (const [i, s] of dns.servers.entries()) if (!/^[0-9a-f.:]+$/i.test(s)) throw new InvalidArgumentError(`config.dns_config.servers[${i}]`, `'${s}' is not an IP address`);
  for (const [i, s] of [...dns.searches, ...dns.options].entries()) if (/[\s\0]/.test(s) || s === '') throw new InvalidArgumentError(`config.dns_config.${i < dns.searches.length ? `searches[${i}]` : `options[${i - dns.searches.length}]`}`, `'${s}' is empty or contains whitespace`);
  const lines = dns.servers.map((s) => `nameserver ${s}`);
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(' ')}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.join(' ')}`);
  return `${lines.join('\n')}\n`;
}

/** Sysctls a pod may set, and the namespace each needs (as the kubelet's safe/namespaced list). */
function sysctlNamespace(key: string): 'net' | 'ipc' | undefined {
  if (key.startsWith('net.')) return 'net';
  if (key.startsWith('kernel.shm') || key.startsWith('kernel.msg') || key === 'kernel.sem' || key.startsWith('fs.mqueue.')) return 'ipc';
  return undefined;
}

function writeAtomic(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}

export class SandboxManager {
  private readonly records = new Map<string, SandboxRecord>();
  /** Creations in flight per (name, namespace, uid, attempt): RunPodSandbox is idempotent. */
  private readonly inflight = new Map<string, Promise<SandboxRecord>>();

  /** `rt` runs the init of shared pid namespaces (the daemon's runtime library instance). */
  constructor(readonly root: string, private readonly warn: (msg: string) => void = () => undefined, private readonly rt?: Runtime) {
    fs.mkdirSync(root, { recursive: true, mode: 0o711 });
  }

  /** Loads the sandboxes a previous daemon left; removes the ones a crash left half-made. */
  async recover(): Promise<void> {
    for (const id of fs.readdirSync(this.root)) {
      if (!ID.test(id)) continue;
      const dir = path.join(this.root, id);
      let rec: SandboxRecord;
      try {
        rec = JSON.parse(fs.readFileSync(path.join(dir, 'sandbox.json'), 'utf8')) as SandboxRecord;
      } catch {
        // The directory was made but not its record: nothing else was.
        unmountAll(dir);
        fs.rmSync(dir, { recursive: true, force: true });
        continue;
      }
      if (rec.state === 'creating') {
        await this.teardown(rec).catch((e: Error) => this.warn(`sandbox ${id}: cleanup of a half-made sandbox: ${e.message}`));
        continue;
      }
      // A reboot (or someone) removed the pins: the sandbox cannot be used any more.
      const pinned = new Set(mountsUnder(dir));
      if (rec.state === 'ready' && Object.values(rec.ns).some((p) => !pinned.has(p))) rec.state = 'notready';
      if (rec.state === 'ready' && rec.pidInit !== undefined && this.rt !== undefined) {
        let status = 'stopped';
        try { status = this.rt.state(rec.pidInit).status; } catch { /* gone */ }
        if (status !== 'running') rec.state = 'notready';
      }
      this.records.set(id, rec);
    }
  }

  get(id: string): SandboxRecord {
    const r = this.records.get(id);
    if (r === undefined) throw new NotFoundError(`pod sandbox ${id} not found`);
    return r;
  }

  find(id: string): SandboxRecord | undefined {
    return this.records.get(id);
  }

  list(): SandboxRecord[] {
    return [...this.records.values()];
  }

  private save(rec: SandboxRecord): void {
    writeAtomic(path.join(rec.dir, 'sandbox.json'), JSON.stringify(rec), 0o600);
  }

  run(cfg: runtime.PodSandboxConfig | undefined, runtimeHandler: string): Promise<SandboxRecord> {
    if (cfg === undefined) throw new InvalidArgumentError('config', 'is required');
    const md = cfg.metadata;
    if (md === undefined || md.name === '') throw new InvalidArgumentError('config.metadata.name', 'must not be empty');
    if (md.uid === '') throw new InvalidArgumentError('config.metadata.uid', 'must not be empty');
    if (!/^[A-Za-z0-9_.-]+$/.test(md.uid)) throw new InvalidArgumentError('config.metadata.uid', `'${md.uid}' may contain only letters, digits, '-', '_' and '.'`);
    if (runtimeHandler !== '' && runtimeHandler !== 'berth') throw new InvalidArgumentError('runtime_handler', `unknown runtime handler '${runtimeHandler}' (this runtime has only the default)`);
    const key = JSON.stringify([md.name, md.namespace, md.uid, md.attempt]);
    const same = this.list().find((r) => JSON.stringify([r.name, r.namespace, r.uid, r.attempt]) === key && r.state === 'ready');
    if (same !== undefined) return Promise.resolve(same);
    let p = this.inflight.get(key);
    if (p === undefined) {
      p = this.create(cfg, runtimeHandler).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async create(cfg: runtime.PodSandboxConfig, runtimeHandler: string): Promise<SandboxRecord> {
    const md = cfg.metadata!;
    const linux = cfg.linux;
    const sc = linux?.securityContext;
    const nso = sc?.namespaceOptions;
    const modes = {
      network: mode(nso?.network ?? 0, 'config.linux.security_context.namespace_options.network', ['pod', 'node'], 'pod'),
      pid: mode(nso?.pid ?? 0, 'config.linux.security_context.namespace_options.pid', ['pod', 'container', 'node'], 'container'),
      ipc: mode(nso?.ipc ?? 0, 'config.linux.security_context.namespace_options.ipc', ['pod', 'node'], 'pod'),
    };
    if (modes.pid === 'pod' && this.rt === undefined) throw new InvalidArgumentError('config.linux.security_context.namespace_options.pid', 'POD needs a runtime for the namespace init');
    // With the node's network the pod keeps the node's hostname too (as the kubelet expects).
    const hostname = modes.network === 'node' ? '' : cfg.hostname !== '' ? cfg.hostname : md.name.slice(0, 63);
    if (hostname !== '' && (hostname.length > 64 || !HOSTNAME.test(hostname))) throw new InvalidArgumentError('config.hostname', `'${hostname}' is not a valid hostname`);
    if (cfg.logDirectory !== '' && !path.isAbsolute(cfg.logDirectory)) throw new InvalidArgumentError('config.log_directory', 'must be an absolute path');
    const sysctls = Object.entries(linux?.sysctls ?? {});
    for (const [k, v] of sysctls) {
      const ns = sysctlNamespace(k);
      if (ns === undefined || !/^[a-z0-9_.-]+$/i.test(k) || k.includes('..')) throw new InvalidArgumentError(`config.linux.sysctls.${k}`, 'not a namespaced sysctl a pod may set');
      if ((ns === 'net' && modes.network === 'node') || (ns === 'ipc' && modes.ipc === 'node')) throw new InvalidArgumentError(`config.linux.sysctls.${k}`, `cannot be set with the node's ${ns === 'net' ? 'network' : 'IPC'} namespace`);
      if (v.includes('\n') || v.includes('\0')) throw new InvalidArgumentError(`config.linux.sysctls.${k}`, 'value must be one line');
    }
    const parentRaw = linux?.cgroupParent ?? '';
    if (parentRaw.endsWith('.slice')) throw new InvalidArgumentError('config.linux.cgroup_parent', `'${parentRaw}' is a systemd slice; this node uses the cgroupfs driver (e.g. kubepods/burstable/pod<uid>)`);
    let cgParent: string;
    try {
      cgParent = cgroupPath(parentRaw === '' ? `/berth/pods/pod${md.uid}` : parentRaw.startsWith('/') ? parentRaw : `/${parentRaw}`, '', false);
    } catch (err) {
      throw new InvalidArgumentError('config.linux.cgroup_parent', (err as Error).message.replace(/^linux\.cgroupsPath: /, ''));
    }
    const resources = ociResources(linux?.resources, 'config.linux.resources');

    const id = randomBytes(32).toString('hex');
    const dir = path.join(this.root, id);
    const rec: SandboxRecord = {
      id, name: md.name, uid: md.uid, namespace: md.namespace, attempt: md.attempt, state: 'creating', createdAtUs: nowUs(),
      labels: { ...cfg.labels }, annotations: { ...cfg.annotations }, runtimeHandler, hostname, logDirectory: cfg.logDirectory,
      cgroupParent: cgParent, modes, ns: {}, dir, privileged: sc?.privileged === true,
      config: runtime.PodSandboxConfig.toJSON(cfg),
    };
    fs.mkdirSync(dir, { mode: 0o711 });
    this.save(rec);
    try {
      const cg = cgroupDriver(cgParent);
      rec.ownsCgroup = !Object.values(cg.paths).some((d) => fs.existsSync(d));
      this.save(rec);
      await cg.create();
      rec.createdCgroups = [...cg.created];
      this.save(rec);
      await cg.apply(resources, 'config.linux.resources');
      fs.writeFileSync(path.join(dir, 'hostname'), `${hostname !== '' ? hostname : fs.readFileSync('/proc/sys/kernel/hostname', 'utf8').trim()}\n`, { mode: 0o644 });
      fs.writeFileSync(path.join(dir, 'hosts'), modes.network === 'node' ? fs.readFileSync('/etc/hosts', 'utf8') : hostsFile(hostname), { mode: 0o644 });
      fs.writeFileSync(path.join(dir, 'resolv.conf'), resolvConf(cfg.dnsConfig), { mode: 0o644 });
      if (cfg.logDirectory !== '') fs.mkdirSync(cfg.logDirectory, { recursive: true, mode: 0o755 });
      const kinds = PIN_KINDS.filter((k) => (k === 'net' || k === 'uts' ? modes.network === 'pod' : modes.ipc === 'pod'));
      if (kinds.length > 0) {
        fs.mkdirSync(path.join(dir, 'ns'), { mode: 0o711 });
        for (const k of kinds) fs.writeFileSync(path.join(dir, 'ns', k), '', { mode: 0o444 });
        this.pinNamespaces(dir, kinds, hostname, sysctls);
        for (const k of kinds) rec.ns[k] = path.join(dir, 'ns', k);
      }
      if (modes.pid === 'pod') await this.startPidInit(rec);
      if (rec.ns.net !== undefined) {
        // The loopback device of a new network namespace starts down; containers of a pod talk
        // to each other over it.
        const ns = Netns.open(rec.ns.net);
        const rtnl = Rtnl.open(ns);
        try {
          await rtnl.setLink(1, { up: true });
        } finally {
          rtnl.close();
          ns.close();
        }
      }
      rec.state = 'ready';
      this.save(rec);
      this.records.set(id, rec);
      return rec;
    } catch (err) {
      await this.teardown(rec).catch((e: Error) => this.warn(`sandbox ${id}: cleanup after a failed create: ${e.message}`));
      throw err;
    }
  }

  /** The init of a shared pid namespace: a read-only rootfs holding only the node's static busybox. */
  private async startPidInit(rec: SandboxRecord): Promise<void> {
    const rt = this.rt!;
    const root = path.join(rec.dir, 'pid-init');
    fs.mkdirSync(path.join(root, 'proc'), { recursive: true, mode: 0o755 });
    fs.copyFileSync(BUSYBOX, path.join(root, 'busybox'));
    fs.chmodSync(path.join(root, 'busybox'), 0o755);
    const id = `${POD_INIT_PREFIX}${rec.id}`;
    rec.pidInit = id;
    this.save(rec);
    const ns: Array<{ type: string; path?: string }> = [{ type: 'pid' }, { type: 'mount' }];
    if (rec.ns.net !== undefined) ns.push({ type: 'network', path: rec.ns.net });
    if (rec.ns.ipc !== undefined) ns.push({ type: 'ipc', path: rec.ns.ipc });
    if (rec.ns.uts !== undefined) ns.push({ type: 'uts', path: rec.ns.uts });
    const spec: Spec = {
      ociVersion: '1.0.2',
      process: {
        user: { uid: 65534, gid: 65534 }, cwd: '/', env: [], noNewPrivileges: true, capabilities: {},
        // `wait` in ash reaps every child, orphans reparented to it included.
        args: ['/busybox', 'sh', '-c', 'trap "" TERM INT HUP; while :; do /busybox sleep 2147483647 & wait; done'],
      },
      root: { path: root, readonly: true },
      mounts: [{ destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] }],
      linux: { namespaces: ns, cgroupsPath: `${rec.cgroupParent}/pod-init`, resources: { devices: [{ allow: false, access: 'rwm' }] }, seccomp: runtimeDefaultSeccomp() },
    };
    const devNull = fs.openSync('/dev/null', 'r+');
    try {
      const created = await rt.create(id, { bundle: rec.dir, spec, stdio: [devNull, devNull, devNull] });
      created.exited.catch(() => undefined);
      await rt.start(id);
    } finally {
      fs.closeSync(devNull);
    }
    const pin = path.join(rec.dir, 'ns', 'pid');
    fs.mkdirSync(path.dirname(pin), { recursive: true, mode: 0o711 });
    fs.writeFileSync(pin, '', { mode: 0o444 });
    native.mount(`/proc/${rt.state(id).pid}/ns/pid`, pin, null, ['bind']);
    rec.ns.pid = pin;
  }

  /** Makes the new namespaces on the JS thread, configures them from inside, pins them, returns. */
  private pinNamespaces(dir: string, kinds: Array<(typeof PIN_KINDS)[number]>, hostname: string, sysctls: Array<[string, string]>): void {
    const home = kinds.map((k) => ({ k, fd: fs.openSync(`/proc/thread-self/ns/${k}`, 'r') }));
    try {
      native.unshare(kinds);
      let failure: unknown;
      try {
        if (kinds.includes('uts') && hostname !== '') native.sethostname(hostname);
        for (const [k, v] of sysctls) {
          try {
            fs.writeFileSync(`/proc/sys/${k.replace(/\./g, '/')}`, v);
          } catch (err) {
            throw new InvalidArgumentError(`config.linux.sysctls.${k}`, `cannot set to '${v}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
          }
        }
        for (const k of kinds) native.mount(`/proc/thread-self/ns/${k}`, path.join(dir, 'ns', k), null, ['bind']);
      } catch (err) {
        failure = err;
      }
      // Back home whatever happened: the JS thread must never stay in a pod's namespaces.
      for (const h of home) native.setns(h.fd, h.k);
      if (failure !== undefined) throw failure;
    } finally {
      for (const h of home) fs.closeSync(h.fd);
    }
  }

  /** NOTREADY; the caller has stopped the sandbox's containers. Idempotent. */
  stop(id: string): void {
    const rec = this.records.get(id);
    if (rec === undefined) return;
    if (rec.state !== 'notready') {
      rec.state = 'notready';
      this.save(rec);
    }
  }

  /** Removes everything the sandbox made; the caller has removed its containers. Idempotent. */
  async remove(id: string): Promise<void> {
    const rec = this.records.get(id);
    if (rec === undefined) return;
    rec.state = 'notready';
    await this.teardown(rec);
    this.records.delete(id);
  }

  private async teardown(rec: SandboxRecord): Promise<void> {
    // The pid namespace's init goes first: everything still in the namespace dies with it.
    if (rec.pidInit !== undefined && this.rt !== undefined) await this.rt.delete(rec.pidInit, true).catch((e: Error) => { if (!/does not exist/.test(e.message)) throw e; });
    unmountAll(rec.dir);
    const cg = cgroupDriver(rec.cgroupParent);
    // Processes left in the pod cgroup (a container the daemon lost track of) die with it.
    for (let i = 0; i < 100 && cg.pids().length > 0; i++) {
      for (const pid of cg.pids()) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const left = cg.pids();
    if (left.length > 0) throw new FailedPreconditionError(`pod cgroup ${rec.cgroupParent} still has processes ${left.join(', ')}`);
    if (rec.ownsCgroup !== false) await cg.destroy(rec.createdCgroups ?? []);
    fs.rmSync(rec.dir, { recursive: true, force: true });
  }
}
