// The container's user from the image's /etc/passwd and /etc/group. The rootfs is hostile: its
// /etc/passwd may be a symlink to /etc/shadow of the host, so every path is resolved inside
// the rootfs by hand (symlinks re-rooted, at most 40 of them), and files are read with a size cap.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { InvalidArgumentError } from '@berth/common';

const MAX_FILE = 1 << 20;

/** Resolves `p` (absolute in the container) to a host path inside `root`, following symlinks within it. */
export function resolveInRoot(root: string, p: string): string {
  let parts = p.split('/').filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let hops = 0;
  while (parts.length > 0) {
    const c = parts.shift()!;
    if (c === '..') {
      done.pop();
      continue;
    }
    const host = path.join(root, ...done, c);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(host);
    } catch {
      done.push(c, ...parts);
      return path.join(root, ...done);
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) throw new Error(`too many levels of symbolic links in ${p}`);
      const target = fs.readlinkSync(host);
      if (target.startsWith('/')) done.length = 0;
      parts = [...target.split('/').filter((x) => x !== '' && x !== '.'), ...parts];
      continue;
    }
    done.push(c);
  }
  return path.join(root, ...done);
}

/** Reads a regular file of the container (undefined if missing or not a regular file). */
export function readInRoot(root: string, p: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(resolveInRoot(root, p), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return undefined;
    const buf = Buffer.alloc(Math.min(st.size, MAX_FILE));
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

function table(text: string | undefined): string[][] {
  return (text ?? '').split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.split(':'));
}

const NUM = /^[0-9]+$/;

/**
 * `spec` is "user", "uid", "user:group" or "uid:gid" (an image's User, or the CRI fields
 * turned into it). A name must exist in the image; a number need not (as Docker and runc).
 */
export function resolveUser(root: string, spec: string, field: string, extraGids: number[] = []): ResolvedUser {
  const [u = '', g] = spec.split(':', 2);
  const passwd = table(readInRoot(root, '/etc/passwd'));
  const groups = table(readInRoot(root, '/etc/group'));
  let uid: number;
  let gid = 0;
  let home = '/';
  let name: string | undefined;
  if (u === '' || NUM.test(u)) {
    uid = u === '' ? 0 : Number(u);
    const row = passwd.find((r) => r[2] === String(uid));
    if (row !== undefined) {
      gid = Number(row[3]) || 0;
      home = row[5] || '/';
      name = row[0];
    }
  } else {
    const row = passwd.find((r) => r[0] === u);
    if (row === undefined) throw new InvalidArgumentError(field, `user "${u}" is not in the image's /etc/passwd`);
    uid = Number(row[2]);
    gid = Number(row[3]) || 0;
    home = row[5] || '/';
    name = u;
  }
  if (g !== undefined && g !== '') {
    if (NUM.test(g)) gid = Number(g);
    else {
      const row = groups.find((r) => r[0] === g);
      if (row === undefined) throw new InvalidArgumentError(field, `group "${g}" is not in the image's /etc/group`);
      gid = Number(row[2]);
    }
  }
  if (uid > 0xfffffffe || gid > 0xfffffffe) throw new InvalidArgumentError(field, `uid/gid out of range in "${spec}"`);
  // Supplementary groups the user is a member of in the image, as `id` would show them.
  const member = name === undefined ? [] : groups.filter((r) => (r[3] ?? '').split(',').includes(name)).map((r) => Number(r[2]));
  const additionalGids = [...new Set([...member, ...extraGids])].filter((x) => x !== gid && Number.isInteger(x));
  return { uid, gid, additionalGids, home };
}
