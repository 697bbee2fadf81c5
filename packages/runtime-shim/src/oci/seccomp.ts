// OCI seccomp JSON -> a classic BPF program (struct sock_filter[]) for seccomp(2).
//
// Layout: check the architecture (anything but x86-64 is killed: a 32-bit or x32 syscall
// table would make every number below mean something else), load the syscall number, then
// one test per (rule, name) in the config's order, first match wins, then the default action.
// Rules with argument conditions get a block that falls through to the next rule on mismatch.
import { ConfigError, type Seccomp } from './config';
import { syscallsX8664 } from './syscalls-x86_64';

const AUDIT_ARCH_X86_64 = 0xc000003e;
const RET = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  TRACE: 0x7ff00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;
const EPERM = 1;

// BPF opcodes.
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGT_K = 0x25;
const JGE_K = 0x35;
const AND_K = 0x54;
const RET_K = 0x06;

export const SECCOMP_FLAGS: Readonly<Record<string, number>> = {
  SECCOMP_FILTER_FLAG_TSYNC: 1,
  SECCOMP_FILTER_FLAG_LOG: 2,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: 4,
};

type Insn = [code: number, jt: number, jf: number, k: number];

function action(name: string, errnoRet: number | undefined, field: string): number {
  switch (name) {
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return RET.KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return RET.KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return RET.TRAP;
    case 'SCMP_ACT_ERRNO':
      return (RET.ERRNO | ((errnoRet ?? EPERM) & 0xffff)) >>> 0;
    case 'SCMP_ACT_TRACE':
      return (RET.TRACE | ((errnoRet ?? EPERM) & 0xffff)) >>> 0;
    case 'SCMP_ACT_LOG':
      return RET.LOG;
    case 'SCMP_ACT_ALLOW':
      return RET.ALLOW;
    case 'SCMP_ACT_NOTIFY':
      throw new ConfigError(field, 'SCMP_ACT_NOTIFY needs a seccomp listener, which berth-runtime does not support');
    default:
      throw new ConfigError(field, `unknown seccomp action '${name}'`);
  }
}

const hi = (v: bigint): number => Number((v >> 32n) & 0xffffffffn);
const lo = (v: bigint): number => Number(v & 0xffffffffn);

/**
 * The instructions testing one argument condition; on mismatch they jump to `fail` (an offset
 * resolved by the caller: we return [insns, indexes of jumps to patch]).
 */
function argTest(index: number, op: string, value: bigint, valueTwo: bigint, field: string): Array<Insn | 'FAIL'> {
  const loOff = 16 + 8 * index;
  const hiOff = loOff + 4;
  // 'FAIL' marks "jump to the rule's end"; patched by the caller. Instructions here use
  // [code, jt, jf, k] where a jt/jf of -1 means FAIL.
  const out: Array<Insn | 'FAIL'> = [];
  const ld = (off: number): Insn => [LD_W_ABS, 0, 0, off];
  switch (op) {
    case 'SCMP_CMP_EQ':
      out.push(ld(hiOff), [JEQ_K, 0, -1, hi(value)], ld(loOff), [JEQ_K, 0, -1, lo(value)]);
      break;
    case 'SCMP_CMP_NE':
      // Matches unless both halves are equal.
      out.push(ld(hiOff), [JEQ_K, 0, 2, hi(value)], ld(loOff), [JEQ_K, -1, 0, lo(value)]);
      break;
    case 'SCMP_CMP_MASKED_EQ':
      out.push(ld(hiOff), [AND_K, 0, 0, hi(value)], [JEQ_K, 0, -1, hi(valueTwo)], ld(loOff), [AND_K, 0, 0, lo(value)], [JEQ_K, 0, -1, lo(valueTwo)]);
      break;
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_GE':
    case 'SCMP_CMP_LT':
    case 'SCMP_CMP_LE': {
      // Compare high words first; decide on them unless equal, then compare low words.
      const greater = op === 'SCMP_CMP_GT' || op === 'SCMP_CMP_GE';
      const loJump = op === 'SCMP_CMP_GT' || op === 'SCMP_CMP_LE' ? JGT_K : JGE_K;
      if (greater) {
        // hi > vhi: match (skip rest); hi < vhi: fail; equal: test lo.
        out.push(ld(hiOff), [JGT_K, 3, 0, hi(value)], [JEQ_K, 0, -1, hi(value)], ld(loOff), [loJump, 0, -1, lo(value)]);
      } else {
        // LT: hi < vhi match; LE likewise; hi > vhi fail; equal: lo < v (i.e. not lo >= v).
        out.push(ld(hiOff), [JGT_K, -1, 0, hi(value)], [JEQ_K, 0, 2, hi(value)], ld(loOff), [loJump, -1, 0, lo(value)]);
      }
      break;
    }
    default:
      throw new ConfigError(field, `unknown seccomp operator '${op}'`);
  }
  return out;
}

/** Compiles the profile; unknown syscall names are skipped (like runc), everything else is checked. */
export function compileSeccomp(profile: Seccomp, at = 'linux.seccomp'): { filter: Buffer; flags: number } {
  for (const [i, a] of (profile.architectures ?? []).entries()) {
    if (!/^SCMP_ARCH_[A-Z0-9_]+$/.test(a)) throw new ConfigError(`${at}.architectures[${i}]`, `unknown architecture '${a}'`);
  }
  let flags = 0;
  for (const [i, f] of (profile.flags ?? []).entries()) {
    const bit = SECCOMP_FLAGS[f];
    if (bit === undefined) throw new ConfigError(`${at}.flags[${i}]`, `unknown seccomp flag '${f}'`);
    flags |= bit;
  }
  if (profile.listenerPath !== undefined) throw new ConfigError(`${at}.listenerPath`, 'seccomp listeners are not supported');
  const defaultAction = action(profile.defaultAction, profile.defaultErrnoRet, `${at}.defaultAction`);

  const prog: Insn[] = [
    [LD_W_ABS, 0, 0, 4],
    [JEQ_K, 1, 0, AUDIT_ARCH_X86_64],
    [RET_K, 0, 0, RET.KILL_PROCESS],
    [LD_W_ABS, 0, 0, 0],
  ];
  for (const [r, rule] of (profile.syscalls ?? []).entries()) {
    const field = `${at}.syscalls[${r}]`;
    const ret = action(rule.action, rule.errnoRet, `${field}.action`);
    const args = rule.args ?? [];
    for (const [a, arg] of args.entries()) if (arg.index > 5) throw new ConfigError(`${field}.args[${a}].index`, 'must be 0..5');
    for (const name of rule.names) {
      const nr = syscallsX8664()[name];
      if (nr === undefined) continue;
      if (args.length === 0) {
        prog.push([JEQ_K, 0, 1, nr], [RET_K, 0, 0, ret]);
        continue;
      }
      const body: Array<Insn | 'FAIL'> = [];
      for (const [a, arg] of args.entries()) {
        body.push(...argTest(arg.index, arg.op, BigInt.asUintN(64, BigInt(arg.value)), BigInt.asUintN(64, BigInt(arg.valueTwo ?? 0)), `${field}.args[${a}].op`));
      }
      // Block: [jeq nr (else skip block)] body... [ret] [reload nr]
      const blockLen = body.length + 2; // + ret + reload of the syscall number
      if (blockLen > 255) throw new ConfigError(`${field}.args`, 'too many argument conditions');
      prog.push([JEQ_K, 0, blockLen, nr]);
      const start = prog.length;
      const end = start + body.length + 1; // index of the reload instruction
      for (const [i, insn] of body.entries()) {
        const [code, jt, jf, k] = insn as Insn;
        const here = start + i;
        const fix = (j: number): number => (j === -1 ? end - here - 1 : j);
        prog.push([code, fix(jt), fix(jf), k]);
      }
      prog.push([RET_K, 0, 0, ret], [LD_W_ABS, 0, 0, 0]);
    }
  }
  prog.push([RET_K, 0, 0, defaultAction]);
  if (prog.length > 4096) throw new ConfigError(`${at}.syscalls`, `profile compiles to ${prog.length} BPF instructions (the kernel takes 4096)`);
  const filter = Buffer.alloc(prog.length * 8);
  prog.forEach(([code, jt, jf, k], i) => {
    filter.writeUInt16LE(code, i * 8);
    filter.writeUInt8(jt, i * 8 + 2);
    filter.writeUInt8(jf, i * 8 + 3);
    filter.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return { filter, flags };
}
