// berth-runtime: a runc-compatible OCI runtime CLI over the same library the runtime-shim
// daemon uses. Global flags, commands, flags, state JSON, error lines and exit codes follow
// runc, so engines that take a runtime path can use it in place of runc.
//
// Started by ./berth-runtime (the bin), which loads this module bundled into one file with a
// V8 code cache (see tools/bundle-cli.js); whatever this module imports is loaded at every start
// of the CLI, so it imports only what the commands need and never @berth/api or @berth/common.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { ConfigError, loadSpec, validateSpec, type Process, type Resources } from '../oci/config';
import { defaultSpec } from '../oci/default-spec';
import { CAPABILITIES } from '../oci/plan';
import { parseSignal, Runtime, type CreateOptions } from '../runtime';
import { RuntimeError } from '../state';
import { exitNow, recvFd, setWinsize, socketpair, SyscallError } from '@berth/native';

const VERSION = '0.1.0';
const SPEC_VERSION = '1.0.2';

type Flags = Record<string, string | boolean | string[]>;
interface FlagDef { name: string; short?: string; value?: boolean; multi?: boolean }

class UsageError extends Error {}

/** The runtime of this invocation, settled before exit. */
let runtime: Runtime | undefined;

const GLOBAL: FlagDef[] = [
  { name: 'root', value: true }, { name: 'log', value: true }, { name: 'log-format', value: true }, { name: 'debug' },
  { name: 'systemd-cgroup' }, { name: 'criu', value: true }, { name: 'rootless', value: true }, { name: 'help', short: 'h' }, { name: 'version', short: 'v' },
];

const COMMANDS: Record<string, FlagDef[]> = {
  create: [{ name: 'bundle', short: 'b', value: true }, { name: 'pid-file', value: true }, { name: 'console-socket', value: true }, { name: 'no-pivot' }, { name: 'no-new-keyring' }, { name: 'preserve-fds', value: true }],
  run: [{ name: 'bundle', short: 'b', value: true }, { name: 'pid-file', value: true }, { name: 'console-socket', value: true }, { name: 'no-pivot' }, { name: 'no-new-keyring' }, { name: 'preserve-fds', value: true }, { name: 'detach', short: 'd' }, { name: 'keep' }],
  start: [],
  state: [],
  kill: [{ name: 'all', short: 'a' }],
  delete: [{ name: 'force', short: 'f' }],
  exec: [{ name: 'process', short: 'p', value: true }, { name: 'tty', short: 't' }, { name: 'detach', short: 'd' }, { name: 'pid-file', value: true }, { name: 'env', short: 'e', value: true, multi: true }, { name: 'cwd', value: true }, { name: 'user', short: 'u', value: true }, { name: 'additional-gids', short: 'g', value: true, multi: true }, { name: 'cap', short: 'c', value: true, multi: true }, { name: 'no-new-privs' }, { name: 'console-socket', value: true }, { name: 'preserve-fds', value: true }, { name: 'process-label', value: true }, { name: 'apparmor', value: true }],
  list: [{ name: 'format', short: 'f', value: true }, { name: 'quiet', short: 'q' }],
  ps: [{ name: 'format', short: 'f', value: true }],
  pause: [],
  resume: [],
  events: [{ name: 'stats' }, { name: 'interval', value: true }],
  update: [{ name: 'resources', short: 'r', value: true }, { name: 'memory', value: true }, { name: 'memory-swap', value: true }, { name: 'memory-reservation', value: true }, { name: 'cpu-shares', value: true }, { name: 'cpu-quota', value: true }, { name: 'cpu-period', value: true }, { name: 'cpuset-cpus', value: true }, { name: 'cpuset-mems', value: true }, { name: 'pids-limit', value: true }, { name: 'blkio-weight', value: true }],
  spec: [{ name: 'bundle', short: 'b', value: true }, { name: 'rootless' }],
  features: [],
};

/** Parses flags (--x v, --x=v, -x v; single or double dash, like Go's flag package) up to the first positional arg. */
function parseFlags(argv: string[], defs: FlagDef[], stopAtPositional: boolean): { flags: Flags; rest: string[] } {
  const flags: Flags = {};
  let i = 0;
  const rest: string[] = [];
  while (i < argv.length) {
    const arg = argv[i]!;
    if (arg === '--') {
      rest.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (stopAtPositional) {
        rest.push(...argv.slice(i));
        break;
      }
      rest.push(arg);
      i++;
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const key = eq >= 0 ? body.slice(0, eq) : body;
    const def = defs.find((d) => d.name === key || d.short === key);
    if (def === undefined) throw new UsageError(`flag provided but not defined: -${key}`);
    let value: string | boolean = true;
    if (def.value === true) {
      if (eq >= 0) value = body.slice(eq + 1);
      else {
        if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: -${key}`);
        value = argv[++i]!;
      }
    } else if (eq >= 0) {
      value = body.slice(eq + 1) !== 'false';
    }
    if (def.multi === true) flags[def.name] = [...((flags[def.name] as string[] | undefined) ?? []), value as string];
    else flags[def.name] = value;
    i++;
  }
  return { flags, rest };
}

const str = (f: Flags, k: string): string | undefined => (typeof f[k] === 'string' ? (f[k] as string) : undefined);
const bool = (f: Flags, k: string): boolean => f[k] === true;

function out(text: string): void {
  // fs.writeSync, not process.stdout: touching process.stdout would make libuv switch a pipe
  // on fd 1 to O_NONBLOCK, which the container (sharing that pipe) would inherit.
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(1, buf, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

let logFile: string | undefined;
let logJson = false;

function logError(msg: string): void {
  const time = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const line = logJson ? JSON.stringify({ level: 'error', msg, time }) : `time="${time}" level=error msg=${JSON.stringify(msg)}`;
  if (logFile !== undefined) {
    try { fs.appendFileSync(logFile, line + '\n'); } catch { /* fall back to stderr only */ }
  }
  fs.writeSync(2, line + '\n');
}

function positional(rest: string[], cmd: string, n = 1): string {
  const id = rest[0];
  if (id === undefined || id === '') throw new RuntimeError(`"${cmd}" requires a minimum of ${n} argument(s)`);
  return id;
}

function preserveFds(f: Flags): number {
  const v = str(f, 'preserve-fds');
  if (v === undefined) return 0;
  if (!/^\d+$/.test(v)) throw new UsageError(`invalid value "${v}" for flag -preserve-fds: parse error`);
  return Number(v);
}

function parseUser(u: string): { uid: number; gid: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(u);
  if (m === null) throw new RuntimeError(`--user: expected uid[:gid] as numbers, got '${u}'`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? 0) };
}

const num = (f: Flags, k: string): number | undefined => {
  const v = str(f, k);
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v)) throw new UsageError(`invalid value "${v}" for flag -${k}`);
  return Number(v);
};

async function main(argv: string[]): Promise<number> {
  const { flags: g, rest } = parseFlags(argv, GLOBAL, true);
  logFile = str(g, 'log');
  const fmt = str(g, 'log-format') ?? 'text';
  if (fmt !== 'text' && fmt !== 'json') throw new RuntimeError(`invalid log-format: ${fmt}`);
  logJson = fmt === 'json';
  if (bool(g, 'version')) {
    out(`berth-runtime version ${VERSION}\nspec: ${SPEC_VERSION}\n`);
    return 0;
  }
  const [cmd, ...args] = rest;
  if (cmd === undefined || bool(g, 'help') || cmd === 'help') {
    out(`NAME:\n   berth-runtime - Open Container Initiative runtime (runc-compatible)\n\nUSAGE:\n   berth-runtime [global options] command [command options] [arguments...]\n\nCOMMANDS:\n   ${Object.keys(COMMANDS).join(', ')}\n`);
    return 0;
  }
  const defs = COMMANDS[cmd];
  if (defs === undefined) {
    fs.writeSync(2, `No help topic for '${cmd}'\n`);
    return 3;
  }
  const { flags: f, rest: pos } = parseFlags(args, defs, cmd === 'exec');
  const log = (level: string, m: string): void => {
    const time = new Date().toISOString();
    const line = logJson ? JSON.stringify({ level, msg: m, time }) : `time="${time}" level=${level} msg=${JSON.stringify(m)}`;
    if (logFile !== undefined) fs.appendFileSync(logFile, line + '\n');
    else fs.writeSync(2, line + '\n');
  };
  const debug = bool(g, 'debug') ? (m: string): void => log('debug', m) : undefined;
  // No linux.cgroupsPath: the container's cgroup is /<id> of each hierarchy, as with runc and crun.
  const rt = new Runtime({ root: str(g, 'root') ?? '/run/berth-runtime', systemdCgroup: bool(g, 'systemd-cgroup'), warn: (m) => log('warning', m), debug, defaultCgroupParent: '', oneShot: true });
  runtime = rt;
  debug?.(`${cmd} ${args.join(' ')}`);
  switch (cmd) {
    case 'spec': {
      const file = path.join(str(f, 'bundle') ?? '.', 'config.json');
      if (fs.existsSync(file)) throw new RuntimeError(`File ${file} exists. Remove it first`);
      fs.writeFileSync(file, JSON.stringify(defaultSpec({ rootless: bool(f, 'rootless') }), null, '\t'));
      return 0;
    }
    case 'features':
      out(JSON.stringify({
        ociVersionMin: '1.0.0', ociVersionMax: SPEC_VERSION,
        hooks: ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'],
        mountOptions: ['ro', 'rw', 'nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec', 'bind', 'rbind', 'private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'unbindable', 'runbindable', 'relatime', 'noatime', 'strictatime', 'nosymfollow'],
        linux: {
          namespaces: ['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'time', ...(fs.existsSync('/proc/self/ns/cgroup') ? ['cgroup'] : [])],
          capabilities: CAPABILITIES,
          cgroup: { v1: true, v2: true, systemd: false, systemdUser: false },
          seccomp: { enabled: true, actions: ['SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO', 'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_LOG', 'SCMP_ACT_TRACE', 'SCMP_ACT_TRAP'], operators: ['SCMP_CMP_EQ', 'SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_GT', 'SCMP_CMP_GE', 'SCMP_CMP_MASKED_EQ'], archs: ['SCMP_ARCH_X86_64'] },
          apparmor: { enabled: false }, selinux: { enabled: false },
        },
      }, null, '    ') + '\n');
      return 0;
    case 'create':
    case 'run': {
      const id = positional(pos, cmd);
      const bundle = path.resolve(str(f, 'bundle') ?? '.');
      const spec = loadSpec(bundle);
      const o = { bundle, spec, specFromLoadSpec: true, pidFile: str(f, 'pid-file'), noPivot: bool(f, 'no-pivot'), preserveFds: preserveFds(f), consoleSocket: str(f, 'console-socket'), noNewKeyring: bool(f, 'no-new-keyring') };
      if (cmd === 'create') {
        await rt.create(id, o);
        return 0;
      }
      if (bool(f, 'detach')) return await rt.run(id, { ...o, detach: true, keep: bool(f, 'keep') });
      // In the foreground, like runc: signals sent to us go to the container.
      const stopForwarding = forwardSignals((sig) => rt.kill(id, sig));
      try {
        if (spec.process?.terminal === true && o.consoleSocket === undefined) return await runAttached(rt, id, o, bool(f, 'keep'));
        return await rt.run(id, { ...o, keep: bool(f, 'keep') });
      } finally {
        stopForwarding();
      }
    }
    case 'start':
      await rt.start(positional(pos, cmd));
      return 0;
    case 'state':
      out(JSON.stringify(rt.state(positional(pos, cmd)), null, '  ') + '\n');
      return 0;
    case 'kill': {
      const id = positional(pos, cmd);
      rt.kill(id, parseSignal(pos[1] ?? 'SIGTERM'), bool(f, 'all'));
      return 0;
    }
    case 'delete':
      await rt.delete(positional(pos, cmd), bool(f, 'force'));
      return 0;
    case 'list': {
      const list = rt.list();
      if (bool(f, 'quiet')) out(list.map((s) => s.id + '\n').join(''));
      else if ((str(f, 'format') ?? 'table') === 'json') out(JSON.stringify(list) + '\n');
      else {
        const rows = [['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'], ...list.map((s) => [s.id, String(s.pid), s.status, s.bundle, s.created, s.owner === '' ? 'root' : s.owner])];
        const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)) + 4);
        out(rows.map((r) => r.map((x, c) => (c === r.length - 1 ? x : x.padEnd(w[c]!))).join('') + '\n').join(''));
      }
      return 0;
    }
    case 'ps': {
      const pids = rt.ps(positional(pos, cmd));
      const format = str(f, 'format') ?? 'table';
      if (format === 'json') {
        out(JSON.stringify(pids) + '\n');
        return 0;
      }
      if (format !== 'table') throw new RuntimeError(`invalid format option: ${format}`);
      // Like runc: run ps(1) with the given arguments (default -ef) and keep the header and the
      // rows whose PID column is one of the container's processes.
      const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
      const r = spawnSync('ps', pos.length > 1 ? pos.slice(1) : ['-ef'], { encoding: 'utf8' });
      if (r.status !== 0) throw new RuntimeError(`ps failed: ${r.stderr.trim()}`);
      const lines = r.stdout.split('\n').filter((l) => l !== '');
      const col = lines[0]!.trim().split(/\s+/).indexOf('PID');
      if (col < 0) throw new RuntimeError("couldn't find PID field in ps output");
      const want = new Set(pids.map(String));
      out([lines[0]!, ...lines.slice(1).filter((l) => want.has(l.trim().split(/\s+/)[col]!))].join('\n') + '\n');
      return 0;
    }
    case 'pause':
      await rt.pause(positional(pos, cmd));
      return 0;
    case 'resume':
      rt.resume(positional(pos, cmd));
      return 0;
    case 'events': {
      const id = positional(pos, cmd);
      // runc's event shape (libcontainer's types.Stats subset), which engines parse.
      const event = (): string => {
        const st = rt.stats(id);
        return JSON.stringify({
          type: 'stats',
          id,
          data: {
            cpu: { usage: { total: st.cpu.usageNs, kernel: st.cpu.systemNs, user: st.cpu.userNs }, throttling: { periods: st.cpu.periods, throttledPeriods: st.cpu.throttledPeriods, throttledTime: st.cpu.throttledNs } },
            memory: { usage: { usage: st.memory.usage, max: st.memory.maxUsage, limit: st.memory.limit, failcnt: st.memory.oomEvents } },
            pids: { current: st.pids.current, limit: st.pids.limit < 0 ? 0 : st.pids.limit },
          },
        }) + '\n';
      };
      if (bool(f, 'stats')) {
        out(event());
        return 0;
      }
      const iv = str(f, 'interval') ?? '5s';
      const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(iv);
      if (m === null) throw new UsageError(`invalid value "${iv}" for flag -interval: parse error`);
      const ms = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : 60000);
      let lastOom = rt.stats(id).memory.oomKills;
      for (;;) {
        const st = rt.state(id);
        if (st.status === 'stopped') return 0;
        const stats = rt.stats(id);
        if (stats.memory.oomKills > lastOom) out(JSON.stringify({ type: 'oom', id }) + '\n');
        lastOom = stats.memory.oomKills;
        out(event());
        await new Promise((r) => setTimeout(r, ms));
      }
    }
    case 'update': {
      const id = positional(pos, cmd);
      let res: Resources = {};
      const r = str(f, 'resources');
      if (r !== undefined) {
        const text = fs.readFileSync(r === '-' ? 0 : r, 'utf8');
        try {
          res = JSON.parse(text) as Resources;
        } catch (err) {
          throw new ConfigError('resources', `invalid JSON: ${(err as Error).message}`);
        }
      }
      const mem = { limit: num(f, 'memory'), swap: num(f, 'memory-swap'), reservation: num(f, 'memory-reservation') };
      if (Object.values(mem).some((v) => v !== undefined)) res.memory = { ...res.memory, ...Object.fromEntries(Object.entries(mem).filter(([, v]) => v !== undefined)) };
      const cpu = { shares: num(f, 'cpu-shares'), quota: num(f, 'cpu-quota'), period: num(f, 'cpu-period'), cpus: str(f, 'cpuset-cpus'), mems: str(f, 'cpuset-mems') };
      if (Object.values(cpu).some((v) => v !== undefined)) res.cpu = { ...res.cpu, ...Object.fromEntries(Object.entries(cpu).filter(([, v]) => v !== undefined)) };
      const pids = num(f, 'pids-limit');
      if (pids !== undefined) res.pids = { limit: pids };
      const bw = num(f, 'blkio-weight');
      if (bw !== undefined) res.blockIO = { ...res.blockIO, weight: bw };
      await rt.update(id, res);
      return 0;
    }
    case 'exec': {
      const id = positional(pos, cmd);
      const st = rt.store.read(id);
      let proc: Process;
      const pfile = str(f, 'process');
      if (pfile !== undefined) {
        try {
          proc = JSON.parse(fs.readFileSync(pfile, 'utf8')) as Process;
        } catch (err) {
          throw new ConfigError('process', `cannot read ${pfile}: ${(err as Error).message}`);
        }
      } else {
        const base = st.spec.process!;
        if (pos.length < 2) throw new RuntimeError('exec failed: args must not be empty');
        proc = { ...base, args: pos.slice(1), terminal: bool(f, 'tty'), env: [...(base.env ?? []), ...((f['env'] as string[] | undefined) ?? [])], cwd: str(f, 'cwd') ?? base.cwd };
        const u = str(f, 'user');
        if (u !== undefined) proc.user = { ...parseUser(u), additionalGids: ((f['additional-gids'] as string[] | undefined) ?? []).map(Number) };
        if (f['cap'] !== undefined) {
          const extra = f['cap'] as string[];
          const c = proc.capabilities ?? {};
          proc.capabilities = Object.fromEntries(['bounding', 'effective', 'permitted', 'ambient', 'inheritable'].map((k) => [k, [...((c as Record<string, string[]>)[k] ?? []), ...extra]]));
        }
        if (bool(f, 'no-new-privs')) proc.noNewPrivileges = true;
      }
      validateSpec({ ociVersion: SPEC_VERSION, process: proc });
      const detach = bool(f, 'detach');
      // In the foreground, like runc: signals sent to us go to the process we started. The
      // handlers are in place before it starts (a signal that came before its pid was known is
      // passed on then); installed after, a signal in between would end this CLI instead.
      let target: number | undefined;
      const early: NodeJS.Signals[] = [];
      const stop = detach ? () => undefined : forwardSignals((sig) => { if (target === undefined) early.push(sig); else process.kill(target, sig); });
      try {
        const { pid, exited } = await rt.exec(id, proc, { pidFile: str(f, 'pid-file'), preserveFds: preserveFds(f), consoleSocket: str(f, 'console-socket') });
        if (detach) return 0;
        target = pid;
        for (const sig of early.splice(0)) try { process.kill(pid, sig); } catch { /* already gone */ }
        const e = await exited;
        return e.code ?? 128 + parseSignal(e.signal ?? 'SIGKILL');
      } finally {
        stop();
      }
    }
  }
  return 0;
}

/** Signals a foreground `run` passes on to the container's init (not SIGCHLD, SIGWINCH, SIGURG). */
const FORWARDED: NodeJS.Signals[] = ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGPIPE', 'SIGALRM', 'SIGCONT', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGPWR', 'SIGVTALRM', 'SIGPROF', 'SIGXCPU', 'SIGXFSZ'];

/**
 * Passes the signals we get on through `send` until the returned stop(). After stop() they are
 * ignored rather than unhandled again: the CLI exits right after its command, and taking the
 * 17 listeners off would cost more (~0.23 ms here) than the whole rest of that exit.
 */
function forwardSignals(send: (sig: NodeJS.Signals) => void): () => void {
  let on = true;
  for (const sig of FORWARDED) {
    process.on(sig, () => {
      if (!on) return;
      try {
        send(sig);
      } catch {
        // not created yet, or already gone
      }
    });
  }
  return () => {
    on = false;
  };
}

/**
 * `run` of a terminal container without --console-socket, like runc: the pty master comes back
 * over a socketpair and is attached to our own stdio (our stdin in raw mode when it is a tty),
 * until the container exits.
 */
async function runAttached(rt: Runtime, id: string, o: CreateOptions, keep: boolean): Promise<number> {
  stdioTouched = true;
  const proc = o.spec!.process!;
  if (proc.consoleSize === undefined && process.stdout.isTTY === true) proc.consoleSize = { height: process.stdout.rows, width: process.stdout.columns };
  const [mine, theirs] = socketpair();
  let created: Awaited<ReturnType<Runtime['create']>>;
  try {
    created = await rt.create(id, { ...o, consoleFd: theirs });
  } finally {
    fs.closeSync(theirs);
  }
  let master: number;
  try {
    master = recvFd(mine);
  } catch (err) {
    await rt.delete(id, true).catch(() => undefined);
    throw err;
  } finally {
    fs.closeSync(mine);
  }
  const stdin = process.stdin;
  const rawMode = stdin.isTTY === true;
  if (rawMode) stdin.setRawMode(true);
  // Our terminal's size changes follow to the container's (the kernel then signals it).
  const onResize = (): void => {
    try {
      setWinsize(master, process.stdout.rows, process.stdout.columns);
    } catch {
      // the container's side is gone
    }
  };
  if (process.stdout.isTTY === true) process.stdout.on('resize', onResize);
  const onInput = (d: Buffer): void => {
    try {
      fs.writeSync(master, d);
    } catch {
      // the container's side is gone
    }
  };
  stdin.on('data', onInput);
  stdin.on('error', () => undefined);
  // Reads on the pool (a pty master is not a socket); EIO once the last slave fd is closed.
  const copied = new Promise<void>((resolve) => {
    const rs = fs.createReadStream('', { fd: master, autoClose: false, highWaterMark: 16384 });
    rs.on('data', (d) => fs.writeSync(1, d as Buffer));
    rs.on('error', () => resolve());
    rs.on('end', () => resolve());
  });
  try {
    await rt.start(id);
    const exit = await created.exited;
    // The rest of the output; a process outside a pid namespace may keep the slave open.
    await Promise.race([copied, new Promise((r) => setTimeout(r, 1000).unref())]);
    if (!keep) await rt.delete(id, true);
    return exit.code ?? 128 + parseSignal(exit.signal ?? 'SIGKILL');
  } catch (err) {
    await rt.delete(id, true).catch(() => undefined);
    throw err;
  } finally {
    stdin.off('data', onInput);
    process.stdout.off('resize', onResize);
    if (rawMode) stdin.setRawMode(false);
    stdin.pause();
  }
}

/**
 * Whether process.stdin/stdout were used (a terminal's raw mode, a pipe switched to non-blocking
 * mode): then only process.exit() puts them back as they were.
 */
let stdioTouched = false;

/**
 * Ends the process: at once (_exit) when the addon is loaded and stdio untouched (all output went
 * through fs.writeSync), skipping Node's ~1 ms of teardown; else with process.exit().
 */
function exit(code: number): never {
  if (!stdioTouched) exitNow(code);
  process.exit(code);
}

/** Runs one invocation (argv without node and the script) and exits the process with its code. */
export function runCli(argv: string[]): void {
  main(argv).then(
    async (code) => {
      // Empty cgroup parents of a deleted container are removed in the background: let it finish.
      await runtime?.settle();
      exit(code);
    },
    async (err: unknown) => {
      await runtime?.settle().catch(() => undefined);
      if (err instanceof UsageError) {
        fs.writeSync(2, `Incorrect Usage: ${err.message}\n`);
        exit(1);
      }
      const msg = err instanceof ConfigError ? `config.json: ${err.message}` : err instanceof Error ? err.message : String(err);
      logError(err instanceof SyscallError ? `container init: ${msg}` : msg);
      exit(err instanceof RuntimeError ? err.exitCode : 1);
    },
  );
}
