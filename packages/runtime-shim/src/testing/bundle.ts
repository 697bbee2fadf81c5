// Test bundles: a rootfs made of Debian's busybox-static (/bin/busybox) and its applet
// symlinks, with a config.json derived from the default spec.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import type { Spec } from '../oci/config';
import { defaultSpec } from '../oci/default-spec';

export const BUSYBOX = '/bin/busybox';

let applets: string[] | undefined;

function busyboxApplets(): string[] {
  applets ??= execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => /^[\w.[-]+$/.test(a));
  return applets;
}

/** A unique id: tests and benchmarks never collide with each other or with repeated runs. */
export function uniqueId(prefix = 'bt'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** Makes `<dir>/rootfs` with busybox + applet links under /bin, and the usual empty dirs. */
export function makeBusyboxRootfs(rootfs: string): void {
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp', 'etc', 'root', 'var', 'usr/bin', 'sbin']) {
    fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  }
  fs.copyFileSync(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of busyboxApplets()) {
    if (applet === 'busybox') continue;
    const link = path.join(rootfs, 'bin', applet);
    if (!fs.existsSync(link)) fs.symlinkSync('busybox', link);
  }
  fs.writeFileSync(path.join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  fs.writeFileSync(path.join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
}

export interface Bundle {
  dir: string;
  rootfs: string;
  spec: Spec;
  /** Rewrites config.json from `spec`. */
  write(): void;
  remove(): void;
}

/**
 * A bundle under `parent` (default: the OS temp dir) running `args`, non-terminal, with the
 * default spec otherwise. `edit` may change the spec before it is written.
 */
export function makeBundle(args: string[], edit?: (spec: Spec) => void, parent = os.tmpdir()): Bundle {
  const dir = fs.mkdtempSync(path.join(parent, 'berth-bundle-'));
  // Traversable by a user-namespaced container root (an unprivileged id on the host).
  fs.chmodSync(dir, 0o755);
  const rootfs = path.join(dir, 'rootfs');
  makeBusyboxRootfs(rootfs);
  const spec = defaultSpec();
  spec.process!.terminal = false;
  spec.process!.args = args;
  // The sandbox forbids raising hard limits: stay at or below the current one.
  spec.process!.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }];
  edit?.(spec);
  const bundle: Bundle = {
    dir,
    rootfs,
    spec,
    write: () => fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(bundle.spec, null, 2)),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
  bundle.write();
  return bundle;
}

/**
 * A container's /proc/self/mountinfo as comparable lines: root, mount point, options, optional
 * fields (shared:N dropped, master:N numberless), fstype, super options; `id` replaced by <id>.
 * Mount ids and parents are left out, the order kept (it is the mounts' age).
 */
export function mountinfoView(text: string, id: string): string[] {
  return text.trim().split('\n').map((line) => {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    return [f[3]!.replaceAll(id, '<id>'), f[4], f[5], ...f.slice(6, dash).filter((o) => !o.startsWith('shared:')).map((o) => o.replace(/^master:\d+$/, 'master:N')), f[dash + 1], f[dash + 3]].join(' ');
  });
}

/** The /sys/fs/cgroup lines of a mountinfoView(), sorted. */
export function cgroupMounts(view: string[]): string[] {
  return view.filter((l) => / \/sys\/fs\/cgroup( |\/)/.test(l)).sort();
}
