// Seccomp for CRI containers: RuntimeDefault (the zero value) is an allow-list of every x86-64
// system call except the ones a container has no business making (kernel modules, kexec, BPF,
// perf, ptrace and process_vm_*, keyrings, mounts and namespace changes, clock and swap
// control...), close to Docker's default profile. Being an allow-list, anything else (x32-ABI
// numbers, syscalls newer than the table) fails with EPERM, which is what containerd's default
// does too. Unconfined (and privileged) means no filter; Localhost loads an OCI profile from the node.
import * as fs from 'node:fs';

import { runtime } from '@berth/api';
import { InvalidArgumentError } from '@berth/common';

import type { Seccomp } from '../oci/config';
import { compileSeccomp } from '../oci/seccomp';
import { syscallsX8664 } from '../oci/syscalls-x86_64';

const DENIED = new Set([
  'acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'create_module', 'delete_module', 'finit_module', 'fsconfig', 'fsmount',
  'fsopen', 'fspick', 'get_kernel_syms', 'get_mempolicy', 'init_module', 'ioperm', 'iopl', 'kcmp', 'kexec_file_load', 'kexec_load',
  'keyctl', 'lookup_dcookie', 'mbind', 'mount', 'mount_setattr', 'move_mount', 'move_pages', 'name_to_handle_at', 'nfsservctl',
  'open_by_handle_at', 'open_tree', 'perf_event_open', 'pivot_root', 'process_vm_readv', 'process_vm_writev', 'ptrace',
  'query_module', 'quotactl', 'quotactl_fd', 'reboot', 'request_key', 'set_mempolicy', 'setns', 'settimeofday', 'swapoff', 'swapon',
  'sysfs', '_sysctl', 'umount2', 'unshare', 'uselib', 'userfaultfd', 'ustat', 'vhangup', 'afs_syscall', 'tuxcall', 'security',
  'vserver', 'getpmsg', 'putpmsg', 'lsm_set_self_attr',
]);

let runtimeDefault: Seccomp | undefined;

/** The RuntimeDefault profile (built once). */
export function runtimeDefaultSeccomp(): Seccomp {
  runtimeDefault ??= {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 1, // EPERM
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [{ names: Object.keys(syscallsX8664()).filter((n) => !DENIED.has(n)), action: 'SCMP_ACT_ALLOW' }],
  };
  return runtimeDefault;
}

/** The seccomp profile for a container's (or exec's) SecurityProfile; undefined = no filter. */
export function seccompFor(p: runtime.SecurityProfile | undefined, privileged: boolean, field: string): Seccomp | undefined {
  const T = runtime.ProfileType;
  const type = p?.profileType ?? T.PROFILE_TYPE_UNSPECIFIED;
  if (type === T.PROFILE_TYPE_UNCONFINED) return undefined;
  if (type === T.PROFILE_TYPE_LOCALHOST) {
    const ref = p!.localhostRef;
    if (!ref.startsWith('/')) throw new InvalidArgumentError(`${field}.localhost_ref`, `must be an absolute path on the node, got '${ref}'`);
    let profile: Seccomp;
    try {
      profile = JSON.parse(fs.readFileSync(ref, 'utf8')) as Seccomp;
    } catch (err) {
      throw new InvalidArgumentError(`${field}.localhost_ref`, `cannot load '${ref}': ${(err as Error).message}`);
    }
    try {
      compileSeccomp(profile, `${field}.localhost_ref`);
    } catch (err) {
      throw new InvalidArgumentError(undefined, (err as Error).message);
    }
    return profile;
  }
  // RuntimeDefault, and the zero value as CRI defines it; a privileged container runs unconfined.
  return privileged ? undefined : runtimeDefaultSeccomp();
}
