// Pod volumes on the node: where each lives, and making it real before the containers start.
//  - emptyDir: a directory under the pod's directory; medium Memory is a tmpfs sized by
//    sizeLimit (else the node's allocatable memory), mounted nosuid,nodev.
//  - hostPath: the type checks Kubernetes does (Directory, DirectoryOrCreate, File,
//    FileOrCreate, Socket, CharDevice, BlockDevice) on the real filesystem.
//  - configMap / secret / downwardAPI: files written atomically the way the kubelet's atomic
//    writer does: a fresh timestamped directory, a `..data` symlink swapped with rename(2), and
//    per-entry symlinks through `..data`, so a reader never sees half an update.
// Paths from manifests are never trusted: item paths are relative, without "..", and files are
// only ever created inside the volume directory.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { core } from '@berth/api';
import { Quantity } from '@berth/apimachinery';
import { podFieldValue, resourceFieldValue } from './env';
import type { ConfigSource } from './seams';

export class VolumeError extends Error {
  /** Event reason (FailedMount) and the field of the volume at fault. */
  readonly reason = 'FailedMount';
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'VolumeError';
  }
}

/** The mount seam (the native addon in production; tests use it for real as root). */
export interface Mounter {
  mountTmpfs(target: string, sizeBytes: bigint, mode: number): void;
  unmount(target: string): void;
  isMountPoint(target: string): boolean;
}

export function nativeMounter(): Mounter {
  // Loaded lazily: only pods with memory-backed emptyDirs need the addon.
  const { native } = require('@berth/native') as typeof import('@berth/native');
  return {
    mountTmpfs(target, sizeBytes, mode) {
      native.mount('tmpfs', target, 'tmpfs', ['nosuid', 'nodev'], `size=${sizeBytes},mode=${mode.toString(8)}`);
    },
    unmount(target) {
      native.umount2(target, ['detach']);
    },
    isMountPoint,
  };
}

export function isMountPoint(target: string): boolean {
  const want = path.resolve(target);
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && f[4].replace(/\\040/g, ' ') === want) return true;
  }
  return false;
}

export const PLUGIN_DIRS = {
  emptyDir: 'kubernetes.io~empty-dir',
  configMap: 'kubernetes.io~configmap',
  secret: 'kubernetes.io~secret',
  downwardAPI: 'kubernetes.io~downward-api',
} as const;

export function podDir(rootDir: string, uid: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/.test(uid)) throw new VolumeError('metadata.uid', `${JSON.stringify(uid)} is not a valid pod uid`);
  return path.join(rootDir, 'pods', uid);
}

export interface VolumeContext {
  rootDir: string;
  pod: core.Pod;
  configs: ConfigSource;
  mounter: Mounter;
  nodeAllocatable: Record<string, string>;
  podIPs: string[];
  hostIPs: string[];
  now?: () => number;
}

export interface PreparedVolume {
  name: string;
  /** Host path the runtime bind-mounts into the containers. */
  hostPath: string;
  readOnly: boolean;
}

function fileMode(m: number | undefined, field: string): number {
  if (m === undefined) return 0o644;
  if (!Number.isInteger(m) || m < 0 || m > 0o777) throw new VolumeError(field, `must be a number between 0 and 0777 (octal), both inclusive, got ${m}`);
  return m;
}

/** Checks an item path from a manifest: relative, no "..", no leading "..". */
export function checkItemPath(p: string, field: string): string {
  if (!p) throw new VolumeError(field, 'Required value');
  if (path.isAbsolute(p)) throw new VolumeError(field, `must be a relative path, got ${JSON.stringify(p)}`);
  const parts = p.split('/');
  if (parts.some((s) => s === '..')) throw new VolumeError(field, `must not contain '..', got ${JSON.stringify(p)}`);
  if (parts[0].startsWith('..')) throw new VolumeError(field, `must not start with '..', got ${JSON.stringify(p)}`);
  if (p.includes('\0')) throw new VolumeError(field, 'must not contain NUL');
  return path.normalize(p);
}

export interface FileEntry {
  path: string;
  data: Buffer;
  mode: number;
}

/**
 * Writes `files` into `dir` atomically (the kubelet's AtomicWriter layout). Returns false when
 * the content was already there (nothing written).
 */
export function atomicWrite(dir: string, files: FileEntry[], now = Date.now()): boolean {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const dataLink = path.join(dir, '..data');
  let oldTarget: string | undefined;
  try { oldTarget = fs.readlinkSync(dataLink); } catch { /* first write */ }
  if (oldTarget && sameContent(path.join(dir, oldTarget), files)) return false;
  const ts = new Date(now).toISOString().replace(/[-:]/g, '_').replace('T', '_').replace('Z', '');
  const tsDir = fs.mkdtempSync(path.join(dir, `..${ts}.`));
  fs.chmodSync(tsDir, 0o755);
  for (const f of files) {
    const p = path.join(tsDir, f.path);
    if (!p.startsWith(tsDir + path.sep)) throw new VolumeError('items.path', `escapes the volume: ${JSON.stringify(f.path)}`);
    fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
    fs.writeFileSync(p, f.data, { mode: f.mode, flag: 'wx' });
    fs.chmodSync(p, f.mode); // umask must not change the mode asked for
  }
  const tmpLink = path.join(dir, '..data_tmp');
  fs.rmSync(tmpLink, { force: true });
  fs.symlinkSync(path.basename(tsDir), tmpLink);
  fs.renameSync(tmpLink, dataLink); // the atomic switch
  // User-visible names: one symlink per top-level entry, through ..data.
  const top = new Set(files.map((f) => f.path.split('/')[0]));
  for (const t of top) {
    const link = path.join(dir, t);
    let cur: string | undefined;
    try { cur = fs.readlinkSync(link); } catch { /* missing */ }
    if (cur !== path.join('..data', t)) {
      fs.rmSync(link, { force: true, recursive: false });
      fs.symlinkSync(path.join('..data', t), link);
    }
  }
  // Remove entries that are gone, and the previous data directory.
  for (const e of fs.readdirSync(dir)) {
    if (e.startsWith('..')) continue;
    if (!top.has(e)) fs.rmSync(path.join(dir, e), { force: true });
  }
  if (oldTarget) fs.rmSync(path.join(dir, oldTarget), { recursive: true, force: true });
  return true;
}

function sameContent(dataDir: string, files: FileEntry[]): boolean {
  try {
    let count = 0;
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else count++;
      }
    };
    walk(dataDir);
    if (count !== files.length) return false;
    return files.every((f) => {
      const p = path.join(dataDir, f.path);
      const st = fs.statSync(p);
      return (st.mode & 0o777) === f.mode && fs.readFileSync(p).equals(f.data);
    });
  } catch {
    return false;
  }
}

function projectKeys(data: Map<string, Buffer>, items: core.KeyToPath[], defaultMode: number, optional: boolean, what: string, field: string): FileEntry[] | undefined {
  if (!items.length) return [...data].map(([k, v]) => ({ path: checkItemPath(k, `${field}.data[${k}]`), data: v, mode: defaultMode }));
  const out: FileEntry[] = [];
  for (const [i, it] of items.entries()) {
    const v = data.get(it.key);
    if (v === undefined) {
      if (optional) continue;
      throw new VolumeError(`${field}.items[${i}].key`, `couldn't find key ${it.key} in ${what}`);
    }
    out.push({ path: checkItemPath(it.path, `${field}.items[${i}].path`), data: v, mode: it.mode !== undefined ? fileMode(it.mode, `${field}.items[${i}].mode`) : defaultMode });
  }
  return out;
}

const HOST_PATH_TYPES = ['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket', 'CharDevice', 'BlockDevice'];

/** Kubernetes' hostPath type checks against the real filesystem (following symlinks, as it does). */
export function checkHostPath(src: core.HostPathVolumeSource, field: string): string {
  const p = src.path;
  const type = src.type ?? '';
  if (!HOST_PATH_TYPES.includes(type)) throw new VolumeError(`${field}.type`, `unsupported value ${JSON.stringify(type)} (${HOST_PATH_TYPES.filter(Boolean).join(', ')})`);
  if (!path.isAbsolute(p)) throw new VolumeError(`${field}.path`, `must be an absolute path, got ${JSON.stringify(p)}`);
  if (p.split('/').includes('..')) throw new VolumeError(`${field}.path`, `must not contain '..', got ${JSON.stringify(p)}`);
  let st: fs.Stats | undefined;
  try { st = fs.statSync(p); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new VolumeError(`${field}.path`, `${p}: ${(e as NodeJS.ErrnoException).code}`); }
  const fail = (what: string) => new VolumeError(`${field}.type`, `hostPath type check failed: ${p} is not a ${what}`);
  if (type === '') return p;
  if (!st && type === 'DirectoryOrCreate') {
    fs.mkdirSync(p, { recursive: true, mode: 0o755 });
    return p;
  }
  if (!st && type === 'FileOrCreate') {
    try {
      fs.writeFileSync(p, '', { mode: 0o644, flag: 'wx' });
    } catch (e) {
      throw new VolumeError(`${field}.path`, `creating ${p}: ${(e as NodeJS.ErrnoException).code} (the parent directory must exist)`);
    }
    return p;
  }
  const [is, what] = HOST_PATH_CHECKS[type];
  if (!st || !is(st)) throw fail(what);
  return p;
}

const HOST_PATH_CHECKS: Record<string, [(st: fs.Stats) => boolean, string]> = {
  DirectoryOrCreate: [(st) => st.isDirectory(), 'directory'],
  Directory: [(st) => st.isDirectory(), 'directory'],
  FileOrCreate: [(st) => st.isFile(), 'file'],
  File: [(st) => st.isFile(), 'file'],
  Socket: [(st) => st.isSocket(), 'socket'],
  CharDevice: [(st) => st.isCharacterDevice(), 'character device'],
  BlockDevice: [(st) => st.isBlockDevice(), 'block device'],
};

/** Makes every volume of the pod real; returns where each one is on the host. */
export async function prepareVolumes(ctx: VolumeContext): Promise<PreparedVolume[]> {
  const spec = ctx.pod.spec;
  if (!spec) throw new TypeError('pod.spec: required to prepare volumes');
  const ns = ctx.pod.metadata?.namespace || 'default';
  const base = podDir(ctx.rootDir, ctx.pod.metadata?.uid ?? '');
  const out: PreparedVolume[] = [];
  const now = ctx.now ?? Date.now;
  for (const [i, v] of spec.volumes.entries()) {
    const field = `spec.volumes[${i}]`;
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v.name)) throw new VolumeError(`${field}.name`, `${JSON.stringify(v.name)} is not a DNS label`);
    const dirOf = (plugin: keyof typeof PLUGIN_DIRS) => path.join(base, 'volumes', PLUGIN_DIRS[plugin], v.name);
    if (v.emptyDir) {
      const d = dirOf('emptyDir');
      fs.mkdirSync(d, { recursive: true });
      fs.chmodSync(d, 0o777); // emptyDir is world-writable, as in Kubernetes, for non-root containers
      if (v.emptyDir.medium === 'Memory') {
        let size: bigint;
        try {
          size = v.emptyDir.sizeLimit ? Quantity.parse(v.emptyDir.sizeLimit).value() : Quantity.parse(ctx.nodeAllocatable.memory ?? '0').value();
        } catch (e) {
          throw new VolumeError(`${field}.emptyDir.sizeLimit`, (e as Error).message);
        }
        if (size <= 0n) throw new VolumeError(`${field}.emptyDir.sizeLimit`, 'must be greater than 0 for medium Memory');
        if (!ctx.mounter.isMountPoint(d)) ctx.mounter.mountTmpfs(d, size, 0o777);
      } else if (v.emptyDir.medium && v.emptyDir.medium !== '') {
        throw new VolumeError(`${field}.emptyDir.medium`, `unsupported value ${JSON.stringify(v.emptyDir.medium)} ("" or Memory)`);
      }
      out.push({ name: v.name, hostPath: d, readOnly: false });
    } else if (v.hostPath) {
      out.push({ name: v.name, hostPath: checkHostPath(v.hostPath, `${field}.hostPath`), readOnly: false });
    } else if (v.configMap) {
      const src = v.configMap;
      const mode = fileMode(src.defaultMode, `${field}.configMap.defaultMode`);
      const cm = await ctx.configs.getConfigMap(ns, src.name);
      if (!cm && !src.optional) throw new VolumeError(`${field}.configMap`, `configmap "${src.name}" not found`);
      const data = new Map<string, Buffer>();
      for (const [k, val] of Object.entries(cm?.data ?? {})) data.set(k, Buffer.from(val, 'utf8'));
      for (const [k, val] of Object.entries(cm?.binaryData ?? {})) data.set(k, Buffer.from(val));
      const files = projectKeys(data, src.items, mode, src.optional ?? false, `ConfigMap ${ns}/${src.name}`, `${field}.configMap`)!;
      const d = dirOf('configMap');
      atomicWrite(d, files, now());
      out.push({ name: v.name, hostPath: d, readOnly: true });
    } else if (v.secret) {
      const src = v.secret;
      const mode = fileMode(src.defaultMode, `${field}.secret.defaultMode`);
      const s = await ctx.configs.getSecret(ns, src.secretName);
      if (!s && !src.optional) throw new VolumeError(`${field}.secret`, `secret "${src.secretName}" not found`);
      const data = new Map<string, Buffer>(Object.entries(s?.data ?? {}).map(([k, val]) => [k, Buffer.from(val)]));
      const files = projectKeys(data, src.items, mode, src.optional ?? false, `Secret ${ns}/${src.secretName}`, `${field}.secret`)!;
      const d = dirOf('secret');
      fs.mkdirSync(d, { recursive: true, mode: 0o700 });
      atomicWrite(d, files, now());
      out.push({ name: v.name, hostPath: d, readOnly: true });
    } else if (v.downwardAPI) {
      const mode = fileMode(v.downwardAPI.defaultMode, `${field}.downwardAPI.defaultMode`);
      const files: FileEntry[] = v.downwardAPI.items.map((it, j) => {
        const f = `${field}.downwardAPI.items[${j}]`;
        let value: string;
        if (it.fieldRef) value = podFieldValue(ctx.pod, it.fieldRef.fieldPath, ctx.podIPs, ctx.hostIPs, `${f}.fieldRef`);
        else if (it.resourceFieldRef) value = resourceFieldValue(ctx.pod, it.resourceFieldRef, undefined, ctx.nodeAllocatable, `${f}.resourceFieldRef`);
        else throw new VolumeError(f, 'must specify fieldRef or resourceFieldRef');
        return { path: checkItemPath(it.path, `${f}.path`), data: Buffer.from(value, 'utf8'), mode: it.mode !== undefined ? fileMode(it.mode, `${f}.mode`) : mode };
      });
      const d = dirOf('downwardAPI');
      atomicWrite(d, files, now());
      out.push({ name: v.name, hostPath: d, readOnly: true });
    } else {
      throw new VolumeError(field, 'volume source not supported on this node (emptyDir, hostPath, configMap, secret, downwardAPI)');
    }
  }
  return out;
}

/** Tears down what prepareVolumes made (unmounts tmpfs, removes the pod's directory). */
export function cleanupVolumes(rootDir: string, uid: string, mounter: Mounter): void {
  const base = podDir(rootDir, uid);
  const emptyDirs = path.join(base, 'volumes', PLUGIN_DIRS.emptyDir);
  let names: string[] = [];
  try { names = fs.readdirSync(emptyDirs); } catch { /* none */ }
  for (const n of names) {
    const d = path.join(emptyDirs, n);
    if (mounter.isMountPoint(d)) mounter.unmount(d);
  }
  // A recursive removal would walk into anything still mounted below the pod directory and
  // delete the mount's contents: refuse instead.
  const still = mountPointsUnder(base);
  if (still.length) throw new VolumeError('volumes', `still mounted under ${base}: ${still.join(', ')}`);
  fs.rmSync(base, { recursive: true, force: true });
}

export function mountPointsUnder(dir: string): string[] {
  const prefix = path.resolve(dir) + path.sep;
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]?.replace(/\\040/g, ' ')).filter((m): m is string => !!m && m.startsWith(prefix));
}
