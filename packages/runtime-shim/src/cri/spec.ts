// ContainerConfig + image config + sandbox -> the OCI spec the runtime library runs. Defaults
// follow what containerd's CRI plugin gives a Kubernetes container (capabilities, mounts,
// masked paths, HOSTNAME), so workloads behave as they do on a kubelet node.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { runtime } from '@berth/api';
import { InvalidArgumentError } from '@berth/common';

import type { Mount, Spec } from '../oci/config';
import { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from '../oci/default-spec';
import { CAPABILITIES } from '../oci/plan';
import type { SandboxRecord } from '../sandbox/sandbox';
import { ociResources } from './resources';
import { seccompFor } from './seccomp';
import { resolveUser } from './user';

/** The OCI image config fields a container uses. */
export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  StopSignal?: string;
}

/** containerd's default capability set for CRI containers. */
export const CRI_DEFAULT_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

function capName(c: string, field: string): string {
  const n = c.toUpperCase().startsWith('CAP_') ? c.toUpperCase() : `CAP_${c.toUpperCase()}`;
  if (!CAPABILITIES.includes(n)) throw new InvalidArgumentError(field, `unknown capability '${c}'`);
  return n;
}

function capabilities(c: runtime.Capability | undefined, privileged: boolean): string[] {
  if (privileged) return [...CAPABILITIES];
  const set = new Set(CRI_DEFAULT_CAPS);
  const all = (l: string[]): boolean => l.some((x) => x.toUpperCase() === 'ALL');
  if (c !== undefined) {
    if (all(c.add)) for (const x of CAPABILITIES) set.add(x);
    if (all(c.drop)) set.clear();
    for (const [i, x] of c.add.entries()) if (x.toUpperCase() !== 'ALL') set.add(capName(x, `config.linux.security_context.capabilities.add[${i}]`));
    for (const [i, x] of c.drop.entries()) if (x.toUpperCase() !== 'ALL') set.delete(capName(x, `config.linux.security_context.capabilities.drop[${i}]`));
  }
  return [...set];
}

function mergeEnv(base: string[], extra: Array<{ key: string; value: string }>): string[] {
  const out = new Map<string, string>();
  for (const e of base) {
    const i = e.indexOf('=');
    if (i > 0) out.set(e.slice(0, i), e.slice(i + 1));
  }
  for (const [i, e] of extra.entries()) {
    if (e.key === '' || e.key.includes('=') || e.key.includes('\0') || e.value.includes('\0')) throw new InvalidArgumentError(`config.envs[${i}].key`, `'${e.key}' is not a valid variable name`);
    out.set(e.key, e.value);
  }
  return [...out].map(([k, v]) => `${k}=${v}`);
}

export interface BuildSpecInput {
  id: string;
  cfg: runtime.ContainerConfig;
  image: ImageConfig;
  sandbox: SandboxRecord;
  /** Host path of the mounted rootfs. */
  rootfs: string;
  /** Where the container's /dev/shm-less bits live (its dir). */
  dir: string;
}

export function buildSpec(inp: BuildSpecInput): Spec {
  const { cfg, image, sandbox } = inp;
  const sc = cfg.linux?.securityContext;
  const privileged = sc?.privileged === true;
  if (privileged && !sandbox.privileged) throw new InvalidArgumentError('config.linux.security_context.privileged', 'the sandbox was not created privileged');
  if (cfg.stdin) throw new InvalidArgumentError('config.stdin', 'attaching to a container\'s stdin is not supported (use Exec)');

  const entry = cfg.command.length > 0 ? cfg.command : image.Entrypoint ?? [];
  const cmd = cfg.command.length > 0 || cfg.args.length > 0 ? cfg.args : image.Cmd ?? [];
  const args = [...entry, ...cmd];
  if (args.length === 0) throw new InvalidArgumentError('config.command', 'no command given and the image has no Entrypoint or Cmd');

  const env = mergeEnv(image.Env ?? [], cfg.envs);
  if (!env.some((e) => e.startsWith('PATH='))) env.unshift('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  if (!env.some((e) => e.startsWith('HOSTNAME='))) env.push(`HOSTNAME=${fs.readFileSync(path.join(sandbox.dir, 'hostname'), 'utf8').trim()}`);

  const cwd = cfg.workingDir !== '' ? cfg.workingDir : image.WorkingDir !== undefined && image.WorkingDir !== '' ? image.WorkingDir : '/';
  if (!cwd.startsWith('/')) throw new InvalidArgumentError('config.working_dir', `must be an absolute path, got '${cwd}'`);

  let userSpec = image.User ?? '';
  if (sc?.runAsUser !== undefined) userSpec = String(sc.runAsUser);
  else if (sc?.runAsUsername !== undefined && sc.runAsUsername !== '') userSpec = sc.runAsUsername;
  if (sc?.runAsGroup !== undefined) {
    if (sc.runAsUser === undefined && (sc.runAsUsername ?? '') === '' && userSpec === '') userSpec = '0';
    userSpec = `${userSpec.split(':')[0]}:${sc.runAsGroup}`;
  }
  const user = resolveUser(inp.rootfs, userSpec, sc?.runAsUser !== undefined || (sc?.runAsUsername ?? '') !== '' ? 'config.linux.security_context.run_as_user' : 'image.User', (sc?.supplementalGroups ?? []).map(Number));
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home}`);

  const caps = capabilities(sc?.capabilities, privileged);
  const resources = ociResources(cfg.linux?.resources, 'config.linux.resources');
  resources.devices = privileged ? [{ allow: true, access: 'rwm' }] : [{ allow: false, access: 'rwm' }];

  const mounts: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', privileged ? 'rw' : 'ro'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
  ];
  const userTargets = new Set(cfg.mounts.map((m) => path.posix.normalize(m.containerPath)));
  for (const f of ['hostname', 'hosts', 'resolv.conf']) {
    if (!userTargets.has(`/etc/${f}`)) mounts.push({ destination: `/etc/${f}`, type: 'bind', source: path.join(sandbox.dir, f), options: ['rbind', 'rprivate', ...(sc?.readonlyRootfs === true ? ['ro'] : [])] });
  }
  for (const [i, m] of cfg.mounts.entries()) {
    const at = `config.mounts[${i}]`;
    if (!m.containerPath.startsWith('/')) throw new InvalidArgumentError(`${at}.container_path`, `must be an absolute path, got '${m.containerPath}'`);
    if (!m.hostPath.startsWith('/')) throw new InvalidArgumentError(`${at}.host_path`, `must be an absolute path, got '${m.hostPath}'`);
    if (!fs.existsSync(m.hostPath)) throw new InvalidArgumentError(`${at}.host_path`, `'${m.hostPath}' does not exist`);
    const P = runtime.MountPropagation;
    const prop = m.propagation === P.MOUNT_PROPAGATION_BIDIRECTIONAL ? 'rshared' : m.propagation === P.MOUNT_PROPAGATION_HOST_TO_CONTAINER ? 'rslave' : 'rprivate';
    if (prop === 'rshared' && !privileged) throw new InvalidArgumentError(`${at}.propagation`, 'BIDIRECTIONAL needs a privileged container');
    mounts.push({ destination: m.containerPath, type: 'bind', source: m.hostPath, options: ['rbind', prop, ...(m.readonly ? ['ro'] : [])] });
  }

  const devices: NonNullable<NonNullable<Spec['linux']>['devices']> = [];
  for (const [i, d] of cfg.devices.entries()) {
    const at = `config.devices[${i}]`;
    let st: fs.Stats;
    try {
      st = fs.statSync(d.hostPath);
    } catch {
      throw new InvalidArgumentError(`${at}.host_path`, `'${d.hostPath}' does not exist`);
    }
    if (!st.isCharacterDevice() && !st.isBlockDevice()) throw new InvalidArgumentError(`${at}.host_path`, `'${d.hostPath}' is not a device`);
    const perms = d.permissions === '' ? 'rwm' : d.permissions;
    if (!/^[rwm]+$/.test(perms)) throw new InvalidArgumentError(`${at}.permissions`, `expected letters of "rwm", got '${perms}'`);
    const major = Math.floor(st.rdev / 256) & 0xfff;
    const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
    const type = st.isBlockDevice() ? 'b' : 'c';
    devices.push({ path: d.containerPath, type, major, minor, fileMode: st.mode & 0o777, uid: 0, gid: 0 });
    resources.devices.push({ allow: true, type, major, minor, access: perms });
  }

  const ns: Array<{ type: string; path?: string }> = [{ type: 'mount' }];
  if (sandbox.ns.net !== undefined) ns.push({ type: 'network', path: sandbox.ns.net });
  if (sandbox.ns.uts !== undefined) ns.push({ type: 'uts', path: sandbox.ns.uts });
  if (sandbox.ns.ipc !== undefined) ns.push({ type: 'ipc', path: sandbox.ns.ipc });
  const pidMode = sc?.namespaceOptions?.pid ?? runtime.NamespaceMode.NAMESPACE_MODE_UNSPECIFIED;
  if (pidMode === runtime.NamespaceMode.NAMESPACE_MODE_TARGET) throw new InvalidArgumentError('config.linux.security_context.namespace_options.pid', 'TARGET is not supported yet');
  const M = runtime.NamespaceMode;
  // The container's own setting wins where it names one; else the sandbox's.
  const pid = pidMode === M.NAMESPACE_MODE_NODE ? 'node' : pidMode === M.NAMESPACE_MODE_CONTAINER ? 'container' : pidMode === M.NAMESPACE_MODE_POD ? 'pod' : sandbox.modes.pid;
  if (pid === 'pod') {
    if (sandbox.ns.pid === undefined) throw new InvalidArgumentError('config.linux.security_context.namespace_options.pid', 'POD needs a sandbox created with a shared process namespace');
    ns.push({ type: 'pid', path: sandbox.ns.pid });
  } else if (pid === 'container') {
    ns.push({ type: 'pid' });
  }
  if (Object.keys(sc?.sysctls ?? {}).length > 0) throw new InvalidArgumentError('config.linux.security_context.sysctls', 'set namespaced sysctls on the sandbox (the containers share its namespaces)');

  const seccomp = seccompFor(sc?.seccomp, privileged, 'config.linux.security_context.seccomp');
  const spec: Spec = {
    ociVersion: '1.0.2',
    process: {
      // With a terminal the monitor holds the pty master and logs what comes out as stdout.
      terminal: cfg.tty,
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length > 0 ? { additionalGids: user.additionalGids } : {}) },
      args,
      env,
      cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: sc?.noNewPrivs === true,
      ...(cfg.linux?.resources?.oomScoreAdj ? { oomScoreAdj: cfg.linux.resources.oomScoreAdj } : {}),
    },
    root: { path: inp.rootfs, readonly: sc?.readonlyRootfs === true },
    mounts,
    annotations: { ...cfg.annotations },
    linux: {
      namespaces: ns,
      cgroupsPath: `${sandbox.cgroupParent}/${inp.id}`,
      resources,
      devices,
      ...(seccomp !== undefined ? { seccomp } : {}),
      maskedPaths: privileged ? [] : sc !== undefined && sc.maskedPaths.length > 0 ? sc.maskedPaths : [...DEFAULT_MASKED_PATHS],
      readonlyPaths: privileged ? [] : sc !== undefined && sc.readonlyPaths.length > 0 ? sc.readonlyPaths : [...DEFAULT_READONLY_PATHS],
    },
  };
  return spec;
}
