/**
 * Names for the kernel's flag bits. The numbers are Linux ABI (x86-64 and every other
 * architecture agree on these); the kernel tests check them against the values the addon was
 * compiled with (`binding().constants`).
 */

export const NAMESPACES = ['mount', 'uts', 'ipc', 'net', 'pid', 'user', 'cgroup', 'time'] as const;
export type NamespaceName = (typeof NAMESPACES)[number];

/** CLONE_NEW* bit of each namespace. */
export const CLONE_FLAGS: Readonly<Record<NamespaceName, number>> = {
  mount: 0x0002_0000, // CLONE_NEWNS
  uts: 0x0400_0000, // CLONE_NEWUTS
  ipc: 0x0800_0000, // CLONE_NEWIPC
  net: 0x4000_0000, // CLONE_NEWNET
  pid: 0x2000_0000, // CLONE_NEWPID
  user: 0x1000_0000, // CLONE_NEWUSER
  cgroup: 0x0200_0000, // CLONE_NEWCGROUP
  time: 0x0000_0080, // CLONE_NEWTIME
};

/** MS_* bits by name; the `r…` names are the recursive forms (`rbind` = bind | rec). */
export const MOUNT_FLAGS = {
  rdonly: 0x1, // MS_RDONLY
  nosuid: 0x2, // MS_NOSUID
  nodev: 0x4, // MS_NODEV
  noexec: 0x8, // MS_NOEXEC
  synchronous: 0x10, // MS_SYNCHRONOUS
  remount: 0x20, // MS_REMOUNT
  mandlock: 0x40, // MS_MANDLOCK
  dirsync: 0x80, // MS_DIRSYNC
  nosymfollow: 0x100, // MS_NOSYMFOLLOW
  noatime: 0x400, // MS_NOATIME
  nodiratime: 0x800, // MS_NODIRATIME
  bind: 0x1000, // MS_BIND
  move: 0x2000, // MS_MOVE
  rec: 0x4000, // MS_REC
  silent: 0x8000, // MS_SILENT
  posixacl: 0x1_0000, // MS_POSIXACL
  unbindable: 0x2_0000, // MS_UNBINDABLE
  private: 0x4_0000, // MS_PRIVATE
  slave: 0x8_0000, // MS_SLAVE
  shared: 0x10_0000, // MS_SHARED
  relatime: 0x20_0000, // MS_RELATIME
  iversion: 0x80_0000, // MS_I_VERSION
  strictatime: 0x100_0000, // MS_STRICTATIME
  lazytime: 0x200_0000, // MS_LAZYTIME
  rbind: 0x1000 | 0x4000,
  runbindable: 0x2_0000 | 0x4000,
  rprivate: 0x4_0000 | 0x4000,
  rslave: 0x8_0000 | 0x4000,
  rshared: 0x10_0000 | 0x4000,
} as const;
export type MountFlag = keyof typeof MOUNT_FLAGS;

/** umount2() flags: MNT_FORCE, MNT_DETACH, MNT_EXPIRE, UMOUNT_NOFOLLOW. */
export const UMOUNT_FLAGS = {
  force: 0x1,
  detach: 0x2,
  expire: 0x4,
  nofollow: 0x8,
} as const;
export type UmountFlag = keyof typeof UMOUNT_FLAGS;
