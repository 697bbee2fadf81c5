// Volumes on the real filesystem (as root): emptyDir on disk and as a real tmpfs with its size
// limit enforced by the kernel, hostPath type checks against real files, sockets and devices,
// and configMap/secret/downwardAPI files written atomically with the kubelet's layout.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { core } from '@berth/api';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryConfigs } from './testing/memory-configs';
import { atomicWrite, checkHostPath, cleanupVolumes, isMountPoint, mountPointsUnder, nativeMounter, prepareVolumes, VolumeError, type VolumeContext } from './volumes';

let root: string;
const mounter = nativeMounter();
beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-vol-')); });
afterEach(() => {
  // Unmount anything a failed test left before removing the directory.
  for (const m of mountPointsUnder(root).sort().reverse()) mounter.unmount(m);
  fs.rmSync(root, { recursive: true, force: true });
});

const uid = `u-${crypto.randomBytes(4).toString('hex')}`;
function ctx(volumes: Partial<core.Volume>[], configs = new MemoryConfigs()): VolumeContext {
  const pod = core.Pod.fromPartial({ metadata: { name: 'web', namespace: 'shop', uid, labels: { app: 'web', zone: 'b' } }, spec: { volumes, containers: [{ name: 'app', resources: { limits: { memory: '64Mi' } } }] } });
  return { rootDir: root, pod, configs, mounter, nodeAllocatable: { memory: '1Gi', cpu: '2' }, podIPs: ['10.244.0.9'], hostIPs: ['10.0.0.1'], now: () => Date.parse('2026-04-01T08:00:00Z') };
}

describe('emptyDir', () => {
  it('on disk: a world-writable directory under the pod directory', async () => {
    const [v] = await prepareVolumes(ctx([{ name: 'cache', emptyDir: {} }]));
    expect(v.hostPath).toBe(path.join(root, 'pods', uid, 'volumes', 'kubernetes.io~empty-dir', 'cache'));
    expect(fs.statSync(v.hostPath).mode & 0o777).toBe(0o777);
    expect(isMountPoint(v.hostPath)).toBe(false);
  });

  it('medium Memory: a real tmpfs of sizeLimit that refuses to grow past it, unmounted on cleanup', async () => {
    const c = ctx([{ name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: '8Mi' } }]);
    const [v] = await prepareVolumes(c);
    expect(isMountPoint(v.hostPath)).toBe(true);
    const st = fs.statfsSync(v.hostPath);
    expect(st.blocks * st.bsize).toBe(8 * 1024 * 1024);
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === v.hostPath)!;
    expect(line).toMatch(/nosuid,nodev/);
    expect(line).toMatch(/ - tmpfs tmpfs /);
    fs.writeFileSync(path.join(v.hostPath, 'a'), Buffer.alloc(6 * 1024 * 1024));
    expect(() => fs.writeFileSync(path.join(v.hostPath, 'b'), Buffer.alloc(4 * 1024 * 1024))).toThrow(/ENOSPC/);
    await prepareVolumes(c); // idempotent: not mounted twice
    expect(mountPointsUnder(root)).toEqual([v.hostPath]);
    cleanupVolumes(root, uid, mounter);
    expect(mountPointsUnder(root)).toEqual([]);
    expect(fs.existsSync(path.join(root, 'pods', uid))).toBe(false);
  });

  it('a bad sizeLimit is a FailedMount naming the field', async () => {
    const err = await prepareVolumes(ctx([{ name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: 'huge' } }])).catch((e) => e);
    expect(err).toBeInstanceOf(VolumeError);
    expect(err.reason).toBe('FailedMount');
    expect(err.message).toMatch(/^spec\.volumes\[0\]\.emptyDir\.sizeLimit: quantities must match/);
  });

  it('cleanup refuses to delete through something still mounted', async () => {
    const [v] = await prepareVolumes(ctx([{ name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } }]));
    const inner = path.join(root, 'pods', uid, 'volumes', 'extra');
    fs.mkdirSync(inner, { recursive: true });
    mounter.mountTmpfs(inner, 1024n * 1024n, 0o755);
    expect(() => cleanupVolumes(root, uid, mounter)).toThrow(/still mounted under .*extra/);
    expect(isMountPoint(v.hostPath)).toBe(false); // the emptyDir itself was unmounted first
    mounter.unmount(inner);
  });
});

describe('hostPath type checks', () => {
  let sockServer: net.Server | undefined;
  afterEach(() => new Promise<void>((r) => (sockServer ? sockServer.close(() => r()) : r())).then(() => { sockServer = undefined; }));

  it('checks against real files, directories, sockets and devices', async () => {
    const dir = path.join(root, 'd');
    const file = path.join(root, 'f');
    const sock = path.join(root, 's.sock');
    fs.mkdirSync(dir);
    fs.writeFileSync(file, 'x');
    sockServer = net.createServer();
    await new Promise<void>((r) => sockServer!.listen(sock, () => r()));
    const ok: [string, string][] = [[dir, 'Directory'], [file, 'File'], [sock, 'Socket'], ['/dev/null', 'CharDevice'], [dir, ''], [path.join(root, 'nope'), '']];
    for (const [p, type] of ok) expect(checkHostPath({ path: p, type }, 'spec.volumes[0].hostPath'), `${type} ${p}`).toBe(p);
    const bad: [string, string, RegExp][] = [
      [file, 'Directory', /spec\.volumes\[0\]\.hostPath\.type: hostPath type check failed: .*\/f is not a directory/],
      [dir, 'File', /is not a file/],
      [file, 'Socket', /is not a socket/],
      ['/dev/null', 'BlockDevice', /is not a block device/],
      [path.join(root, 'missing'), 'Directory', /is not a directory/],
      [file, 'DirectoryOrCreate', /is not a directory/],
      [dir, 'FileOrCreate', /is not a file/],
      [path.join(root, 'no-parent', 'f'), 'FileOrCreate', /hostPath\.path: creating .*: ENOENT \(the parent directory must exist\)/],
      ['relative/p', 'Directory', /hostPath\.path: must be an absolute path/],
      ['/tmp/../etc', '', /hostPath\.path: must not contain '\.\.'/],
      [dir, 'Dir', /hostPath\.type: unsupported value "Dir"/],
    ];
    for (const [p, type, re] of bad) expect(() => checkHostPath({ path: p, type }, 'spec.volumes[0].hostPath'), `${type} ${p}`).toThrow(re);
  });

  it('DirectoryOrCreate and FileOrCreate create what is missing', () => {
    const d = path.join(root, 'new', 'dir');
    const f = path.join(root, 'newfile');
    checkHostPath({ path: d, type: 'DirectoryOrCreate' }, 'h');
    checkHostPath({ path: f, type: 'FileOrCreate' }, 'h');
    expect(fs.statSync(d).isDirectory()).toBe(true);
    expect(fs.statSync(f).isFile()).toBe(true);
    expect(fs.statSync(f).mode & 0o777).toBe(0o644);
  });
});

describe('configMap, secret and downwardAPI volumes', () => {
  const configs = () => new MemoryConfigs().configMap('shop', 'web-conf', { 'nginx.conf': 'worker_processes 2;', 'mime.types': 'text/html html;' }, { 'logo.png': Buffer.from([0x89, 0x50]) }).secret('shop', 'tls', { 'tls.key': 'KEY', 'tls.crt': 'CRT' });

  it('projects all keys with the kubelet layout (..data symlink, per-key links) and modes', async () => {
    const [v] = await prepareVolumes(ctx([{ name: 'conf', configMap: { name: 'web-conf', defaultMode: 0o640 } }], configs()));
    expect(fs.readlinkSync(path.join(v.hostPath, 'nginx.conf'))).toBe('..data/nginx.conf');
    expect(fs.readlinkSync(path.join(v.hostPath, '..data'))).toMatch(/^\.\.2026_04_01_08_00_00\.000\./);
    expect(fs.readFileSync(path.join(v.hostPath, 'nginx.conf'), 'utf8')).toBe('worker_processes 2;');
    expect(fs.readFileSync(path.join(v.hostPath, 'logo.png'))).toEqual(Buffer.from([0x89, 0x50]));
    expect(fs.statSync(path.join(v.hostPath, 'mime.types')).mode & 0o777).toBe(0o640);
    expect(v.readOnly).toBe(true);
  });

  it('projects selected items to nested paths, secrets with per-item modes', async () => {
    const vols = await prepareVolumes(ctx([
      { name: 'conf', configMap: { name: 'web-conf', items: [{ key: 'nginx.conf', path: 'etc/nginx/nginx.conf' }] } },
      { name: 'tls', secret: { secretName: 'tls', items: [{ key: 'tls.key', path: 'key.pem', mode: 0o400 }, { key: 'tls.crt', path: 'cert.pem' }] } },
    ], configs()));
    expect(fs.readdirSync(vols[0].hostPath).filter((e) => !e.startsWith('..'))).toEqual(['etc']);
    expect(fs.readFileSync(path.join(vols[0].hostPath, 'etc/nginx/nginx.conf'), 'utf8')).toBe('worker_processes 2;');
    expect(fs.statSync(path.join(vols[1].hostPath, 'key.pem')).mode & 0o777).toBe(0o400);
    expect(fs.statSync(path.join(vols[1].hostPath, 'cert.pem')).mode & 0o777).toBe(0o644);
    expect(vols[1].hostPath).toContain('kubernetes.io~secret');
  });

  it('updates atomically: the old generation disappears, removed keys go, unchanged data is not rewritten', () => {
    const d = path.join(root, 'vol');
    expect(atomicWrite(d, [{ path: 'a', data: Buffer.from('1'), mode: 0o644 }, { path: 'b', data: Buffer.from('2'), mode: 0o644 }], 1000)).toBe(true);
    const gen1 = fs.readlinkSync(path.join(d, '..data'));
    expect(atomicWrite(d, [{ path: 'a', data: Buffer.from('1'), mode: 0o644 }, { path: 'b', data: Buffer.from('2'), mode: 0o644 }], 2000)).toBe(false);
    expect(fs.readlinkSync(path.join(d, '..data'))).toBe(gen1);
    expect(atomicWrite(d, [{ path: 'a', data: Buffer.from('one'), mode: 0o644 }], 3000)).toBe(true);
    const gen2 = fs.readlinkSync(path.join(d, '..data'));
    expect(gen2).not.toBe(gen1);
    expect(fs.existsSync(path.join(d, gen1))).toBe(false);
    expect(fs.readFileSync(path.join(d, 'a'), 'utf8')).toBe('one');
    expect(fs.existsSync(path.join(d, 'b'))).toBe(false);
    expect(fs.readdirSync(d).sort()).toEqual(['..data', gen2, 'a'].sort());
  });

  it('downwardAPI writes pod fields and resources', async () => {
    const [v] = await prepareVolumes(ctx([{ name: 'info', downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: "metadata.labels['zone']" } }, { path: 'mem', resourceFieldRef: { containerName: 'app', resource: 'limits.memory', divisor: '1Mi' } }] } }]));
    expect(fs.readFileSync(path.join(v.hostPath, 'labels'), 'utf8')).toBe('b');
    expect(fs.readFileSync(path.join(v.hostPath, 'mem'), 'utf8')).toBe('64');
  });

  it.each([
    [{ name: 'c', configMap: { name: 'absent' } }, 'spec.volumes[0].configMap: configmap "absent" not found'],
    [{ name: 'c', secret: { secretName: 'absent' } }, 'spec.volumes[0].secret: secret "absent" not found'],
    [{ name: 'c', configMap: { name: 'web-conf', items: [{ key: 'nope', path: 'x' }] } }, "spec.volumes[0].configMap.items[0].key: couldn't find key nope in ConfigMap shop/web-conf"],
    [{ name: 'c', configMap: { name: 'web-conf', items: [{ key: 'nginx.conf', path: '../../etc/passwd' }] } }, "spec.volumes[0].configMap.items[0].path: must not contain '..', got \"../../etc/passwd\""],
    [{ name: 'c', configMap: { name: 'web-conf', items: [{ key: 'nginx.conf', path: '/etc/passwd' }] } }, 'spec.volumes[0].configMap.items[0].path: must be a relative path, got "/etc/passwd"'],
    [{ name: 'c', configMap: { name: 'web-conf', items: [{ key: 'nginx.conf', path: '..data' }] } }, "spec.volumes[0].configMap.items[0].path: must not start with '..', got \"..data\""],
    [{ name: 'c', configMap: { name: 'web-conf', defaultMode: 0o1777 } }, /spec\.volumes\[0\]\.configMap\.defaultMode: must be a number between 0 and 0777/],
    [{ name: 'Bad_Name', emptyDir: {} }, 'spec.volumes[0].name: "Bad_Name" is not a DNS label'],
  ])('rejects %j', async (vol, msg) => {
    const err = await prepareVolumes(ctx([vol as Partial<core.Volume>], configs())).catch((e) => e);
    expect(err).toBeInstanceOf(VolumeError);
    if (typeof msg === 'string') expect(err.message).toBe(msg);
    else expect(err.message).toMatch(msg);
    expect(fs.existsSync('/etc/passwd')).toBe(true);
  });

  it('optional sources that are missing project nothing', async () => {
    const [v] = await prepareVolumes(ctx([{ name: 'c', configMap: { name: 'absent', optional: true } }], configs()));
    expect(fs.readdirSync(v.hostPath).filter((e) => !e.startsWith('..'))).toEqual([]);
  });
});
