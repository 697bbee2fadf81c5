// berth-runtime (the built CLI, as a process) and runc on the same bundle: the same state
// fields, state transitions, exit codes and error style.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeBundle, uniqueId, type Bundle } from './testing/bundle';

const BIN = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-runtime.js');
const RUNC = '/usr/sbin/runc';

interface Result { code: number | null; out: string; err: string }

let roots: { berth: string; runc: string };
let bundle: Bundle;
const ids: Array<[string, string]> = [];

// Output goes to files, not pipes: a detached container inherits the runtime's stdio (runc's
// too), and a pipe would stay open as long as the container runs.
function invoke(cmd: string, args: string[]): Result {
  const out = path.join(roots.berth, `${uniqueId('o')}`);
  const err = `${out}.err`;
  const fo = fs.openSync(out, 'w');
  const fe = fs.openSync(err, 'w');
  try {
    const r = spawnSync(cmd, args, { stdio: ['ignore', fo, fe], timeout: 30_000 });
    return { code: r.status, out: fs.readFileSync(out, 'utf8'), err: fs.readFileSync(err, 'utf8') };
  } finally {
    fs.closeSync(fo);
    fs.closeSync(fe);
    fs.rmSync(out, { force: true });
    fs.rmSync(err, { force: true });
  }
}
const berth = (...args: string[]): Result => invoke(process.execPath, [BIN, '--root', roots.berth, ...args]);
const runc = (...args: string[]): Result => invoke(RUNC, ['--root', roots.runc, ...args]);
const both = (...args: string[]): [Result, Result] => [berth(...args), runc(...args)];

/**
 * Runs argv[1:] in a real pty (python's pty module) of 30x100 and prints what it wrote, then
 * "EXIT <code>". $TYPE is typed into it: at once, or with $RESIZE_AFTER once that text has
 * appeared, after resizing the pty to 40x120.
 */
const PTY_DRIVER = [
  'import os, pty, sys, struct, fcntl, termios, time',
  'pid, fd = pty.fork()',
  'if pid == 0:',
  '    fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))',
  '    os.execv(sys.argv[1], sys.argv[1:])',
  'after = os.environ.get("RESIZE_AFTER", "").encode()',
  'typed = os.environ.get("TYPE", "").encode()',
  'if not after: os.write(fd, typed)',
  'out = b""',
  'while True:',
  '    try: d = os.read(fd, 4096)',
  '    except OSError: break',
  '    if not d: break',
  '    out += d',
  '    if after and after in out:',
  '        after = b""',
  '        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))',
  '        time.sleep(0.5)',
  '        os.write(fd, typed)',
  '_, st = os.waitpid(pid, 0)',
  'sys.stdout.write(out.decode(errors="replace").replace("\\r", "").replace("go\\n", "", 1) if os.environ.get("RESIZE_AFTER") else out.decode(errors="replace").replace("\\r", ""))',
  'sys.stdout.write("\\nEXIT %d\\n" % os.waitstatus_to_exitcode(st))',
].join('\n');

beforeAll(() => {
  roots = { berth: fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cli-')), runc: fs.mkdtempSync(path.join(os.tmpdir(), 'runc-cli-')) };
  bundle = makeBundle(['sleep', '30']);
});
afterAll(() => {
  for (const [tool, id] of ids) (tool === 'runc' ? runc : berth)('delete', '--force', id);
  bundle.remove();
  fs.rmSync(roots.berth, { recursive: true, force: true });
  fs.rmSync(roots.runc, { recursive: true, force: true });
});

function newId(): string {
  const id = uniqueId('cli');
  ids.push(['runc', id], ['berth', id]);
  return id;
}

describe('berth-runtime vs runc', () => {
  it('create/start/kill/delete: the same state fields and transitions', async () => {
    const id = newId();
    const [bc, rc] = both('create', '--bundle', bundle.dir, id);
    expect([bc.code, rc.code], bc.err + rc.err).toEqual([0, 0]);
    const states = (): [Record<string, unknown>, Record<string, unknown>] => {
      const [b, r] = both('state', id);
      expect([b.code, r.code], b.err + r.err).toEqual([0, 0]);
      return [JSON.parse(b.out), JSON.parse(r.out)];
    };
    let [b, r] = states();
    expect(Object.keys(b).sort()).toEqual(Object.keys(r).sort());
    for (const k of ['id', 'status', 'bundle', 'rootfs', 'owner']) expect(b[k], k).toEqual(r[k]);
    expect(b['status']).toBe('created');
    expect(b['pid']).toBeGreaterThan(0);
    expect(Date.parse(b['created'] as string)).toBeGreaterThan(Date.now() - 60_000);
    expect(JSON.parse(berth('list', '--format', 'json').out).map((s: { id: string }) => s.id)).toContain(id);

    // With no linux.cgroupsPath the container is at /<id> of every v1 hierarchy, as with crun
    // (runc nests it under its own cgroup in each hierarchy, which is /<id> for a runc in the root).
    const cgroupsOf = (pid: unknown): string[] => fs.readFileSync(`/proc/${String(pid)}/cgroup`, 'utf8').trim().split('\n')
      .filter((l) => /^\d+:(cpu|cpuacct|cpuset|memory|devices|freezer|blkio|pids):/.test(l)).map((l) => l.split(':').slice(1).join(':'));
    expect(cgroupsOf(b['pid']).length).toBeGreaterThan(0);
    expect(cgroupsOf(b['pid']).every((l) => l.endsWith(`:/${id}`)), cgroupsOf(b['pid']).join(' ')).toBe(true);

    expect(both('start', id).map((x) => x.code)).toEqual([0, 0]);
    [b, r] = states();
    expect([b['status'], r['status']]).toEqual(['running', 'running']);
    // starting twice is an error for both
    expect(both('start', id).map((x) => x.code)).toEqual([1, 1]);
    // deleting a running container needs --force
    expect(both('delete', id).map((x) => x.code)).toEqual([1, 1]);

    expect(both('kill', id, 'KILL').map((x) => x.code)).toEqual([0, 0]);
    for (let i = 0; i < 100; i++) {
      [b, r] = states();
      if (b['status'] === 'stopped' && r['status'] === 'stopped') break;
      await new Promise((res) => setTimeout(res, 20));
    }
    expect([b['status'], b['pid'], r['status'], r['pid']]).toEqual(['stopped', 0, 'stopped', 0]);
    expect(both('kill', id, 'KILL').map((x) => x.code)).toEqual([1, 1]);
    expect(both('delete', id).map((x) => x.code)).toEqual([0, 0]);
    const [gb, gr] = both('state', id);
    expect([gb.code, gr.code]).toEqual([1, 1]);
    expect(gb.err).toMatch(/^time="[^"]+" level=error msg="container does not exist/);
    expect(gr.err).toMatch(/level=error msg="container does not exist/);
  });

  it('run: the container exit code is the exit code', () => {
    const b = makeBundle(['sh', '-c', 'echo out; exit 3']);
    try {
      const id = newId();
      const [x, y] = both('run', '--bundle', b.dir, id);
      expect([x.code, y.code]).toEqual([3, 3]);
      expect(x.out).toBe(y.out);
      expect(x.out).toBe('out\n');
      // removed after run, for both
      expect(both('state', id).map((s) => s.code)).toEqual([1, 1]);
    } finally {
      b.remove();
    }
  });

  it.each([
    ['an unknown command', ['bogus'], 3, /No help topic for 'bogus'/],
    ['state of a missing container', ['state', 'nope-x'], 1, /level=error msg="container does not exist/],
    ['kill of a missing container', ['kill', 'nope-x'], 1, /level=error msg="container does not exist/],
  ])('%s: same exit code and error style', (_n, args, code, re) => {
    const [b, r] = both(...(args as string[]));
    expect([b.code, r.code]).toEqual([code, code]);
    expect(b.err).toMatch(re);
    expect(r.err).toMatch(re);
  });

  it('duplicate id and an unknown signal: exit 1 from both, the id/signal named', () => {
    const id = newId();
    expect(both('create', '--bundle', bundle.dir, id).map((x) => x.code)).toEqual([0, 0]);
    const [b, r] = both('create', '--bundle', bundle.dir, id);
    expect([b.code, r.code]).toEqual([1, 1]);
    expect(b.err).toMatch(/container with given ID already exists/);
    expect(r.err).toMatch(/container with given ID already exists/);
    const [kb, kr] = both('kill', id, 'FOO');
    expect([kb.code, kr.code]).toEqual([1, 1]);
    expect(kb.err).toMatch(/unknown signal \\"FOO\\"/);
    expect(kr.err).toMatch(/unknown signal \\"FOO\\"/);
    expect(both('delete', '--force', id).map((x) => x.code)).toEqual([0, 0]);
  });

  it('a bad config.json: exit 1 and the field named', () => {
    const b = makeBundle(['true'], (s) => ((s.process as unknown as Record<string, unknown>)['bogus'] = 1));
    try {
      const r = berth('create', '--bundle', b.dir, newId());
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/msg="config.json: process.bogus: unknown field"/);
    } finally {
      b.remove();
    }
  });

  it('spec writes a config.json with runc\'s shape; --version, features, --log-format json', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-spec-'));
    const dir2 = fs.mkdtempSync(path.join(os.tmpdir(), 'runc-spec-'));
    try {
      expect(berth('spec', '--bundle', dir).code).toBe(0);
      expect(runc('spec', '--bundle', dir2).code).toBe(0);
      const ours = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      const theirs = JSON.parse(fs.readFileSync(path.join(dir2, 'config.json'), 'utf8'));
      expect(Object.keys(ours).sort()).toEqual(Object.keys(theirs).sort());
      expect(ours.linux.maskedPaths).toEqual(theirs.linux.maskedPaths);
      expect(ours.mounts.map((m: { destination: string }) => m.destination)).toEqual(theirs.mounts.map((m: { destination: string }) => m.destination));
      expect(berth('spec', '--bundle', dir).code).toBe(1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(dir2, { recursive: true, force: true });
    }
    expect(berth('--version').out).toMatch(/^berth-runtime version \S+\nspec: 1\.0\.2\n$/);
    expect(JSON.parse(berth('features').out).linux.namespaces).toContain('pid');
    const j = berth('--log-format', 'json', 'state', 'nope-y');
    expect(JSON.parse(j.err.trim())).toMatchObject({ level: 'error', msg: 'container does not exist: nope-y' });
    expect(berth('--systemd-cgroup', 'create', '--bundle', bundle.dir, newId()).err).toMatch(/systemd cgroup driver is not supported/);
    const dbgId = newId();
    const dbg = berth('--debug', 'create', '--bundle', bundle.dir, dbgId);
    expect(dbg.err).toMatch(new RegExp(`level=debug msg="create ${dbgId}: rootfs .*rootfs ops.*\\n.*level=debug msg="create ${dbgId}: init pid \\d+ holds`));
    expect(berth('delete', '-f', dbgId).code).toBe(0);
  });

  it('--console-socket: a pty inside the container, the master sent to the socket (same as runc)', async () => {
    const b = makeBundle(['sh', '-c', 'tty; stty size; echo typed: $(head -n1)'], (s) => {
      s.process!.terminal = true;
      s.process!.consoleSize = { height: 33, width: 101 };
    });
    try {
      for (const tool of [berth, runc]) {
        const sock = path.join(b.dir, `${uniqueId('cs')}.sock`);
        // The peer (python: Node cannot receive SCM_RIGHTS) prints what the container wrote.
        const peer = spawn('python3', [path.join(__dirname, 'testing', 'console-recv.py'), sock, 'hello\n'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        peer.stdout.on('data', (d: Buffer) => (out += d.toString()));
        const done = new Promise((r) => peer.once('exit', r));
        await new Promise<void>((r) => peer.stdout.once('data', () => r()));
        const id = newId();
        expect(tool('create', '--console-socket', sock, '--bundle', b.dir, id).code).toBe(0);
        expect(tool('start', id).code).toBe(0);
        await done;
        // the pty echoes the typed line whenever it arrives (before or after the size)
        expect(out.replace(/\r/g, '').replace(/^hello\n/m, '')).toMatch(/\/dev\/pts\/0\n33 101\ntyped: hello\n/);
        expect(tool('delete', '--force', id).code).toBe(0);
      }
      // exec --tty into a running container: the pty comes from the container's devpts
      const id = newId();
      expect(berth('run', '-d', '--bundle', bundle.dir, id).code).toBe(0);
      const sock = path.join(b.dir, `${uniqueId('cs')}.sock`);
      const peer = spawn('python3', [path.join(__dirname, 'testing', 'console-recv.py'), sock], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      peer.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const done = new Promise((r) => peer.once('exit', r));
      await new Promise<void>((r) => peer.stdout.once('data', () => r()));
      const e = berth('exec', '--tty', '--console-socket', sock, id, 'sh', '-c', 'tty; echo pid=$$; exit 6');
      expect(e.code).toBe(6);
      await done;
      expect(out.replace(/\r/g, '')).toMatch(/\/dev\/pts\/\d+\npid=\d+\n/);
      // a terminal without a console socket, and a socket without a terminal: clear errors
      const r = berth('create', '--bundle', b.dir, newId());
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/process\.terminal: a terminal needs --console-socket/);
    } finally {
      b.remove();
    }
  });

  it('run of a terminal container without --console-socket: the pty is attached to the runtime\'s own terminal (same as runc)', () => {
    const b = makeBundle(['sh', '-c', 'tty; stty size; read line; echo typed: $line; exit 3'], (s) => {
      s.process!.terminal = true;
    });
    // A real pty around the runtime, 30 rows x 100 columns; the input line is typed at once.
    try {
      for (const [cmd, root] of [[process.execPath, roots.berth], [RUNC, roots.runc]] as const) {
        const id = newId();
        const args = cmd === RUNC ? [RUNC, '--root', root, 'run', '--bundle', b.dir, id] : [cmd, BIN, '--root', root, 'run', '--bundle', b.dir, id];
        const r = spawnSync('python3', ['-c', PTY_DRIVER, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, TYPE: 'hello\n' } });
        expect(r.stdout, `${cmd}: ${r.stderr}`).toMatch(/\/dev\/pts\/0\n/);
        // our size is the runtime's terminal's (runc 1.1 sets it after start: under load
        // its stty races the resize)
        // (the typed line is echoed by both terminals whenever it arrives: before, between or after)
        if (cmd !== RUNC) expect(r.stdout.replace(/^hello\n/gm, '')).toMatch(/\/dev\/pts\/0\n30 100\n/);
        expect(r.stdout).toMatch(/typed: hello\n/);
        expect(r.stdout).toMatch(/\nEXIT 3\n$/);
        expect(fs.existsSync(path.join(root, id))).toBe(false);
      }
      // create cannot attach a terminal to anything: a clear error naming the field
      const r = berth('create', '--bundle', b.dir, newId());
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/process\.terminal: a terminal needs --console-socket .*cannot allocate tty if berth-runtime will detach/);
      expect(berth('run', '-d', '--bundle', b.dir, newId()).err).toMatch(/cannot allocate tty if berth-runtime will detach without setting console socket/);
    } finally {
      b.remove();
    }
  });

  it('a foreground run or exec passes signals on to its process, and terminal size changes to its pty (same as runc)', async () => {
    const b = makeBundle(['sh', '-c', 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done']);
    const t = makeBundle(['sh', '-c', 'stty size; echo ready; read x; stty size'], (s) => {
      s.process!.terminal = true;
    });
    try {
      for (const [cmd, root] of [[process.execPath, roots.berth], [RUNC, roots.runc]] as const) {
        const id = newId();
        const args = cmd === RUNC ? ['--root', root, 'run', '--bundle', b.dir, id] : [BIN, '--root', root, 'run', '--bundle', b.dir, id];
        const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
        for (let i = 0; i < 300 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 20));
        // exec in the foreground: to the process it started
        const tool = cmd === RUNC ? runc : berth;
        const x = spawn(cmd, [...args.slice(0, args.indexOf('run')), 'exec', id, 'sh', '-c', 'trap "echo exec got TERM; exit 5" TERM; echo up; while :; do sleep 0.1; done'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let xout = '';
        x.stdout.on('data', (d: Buffer) => (xout += d.toString()));
        const xexited = new Promise<number | null>((r) => x.once('exit', (code) => r(code)));
        for (let i = 0; i < 300 && !xout.includes('up'); i++) await new Promise((r) => setTimeout(r, 20));
        x.kill('SIGTERM');
        expect(await xexited, `${cmd} exec: ${xout}`).toBe(5);
        expect(xout).toBe('up\nexec got TERM\n');
        expect(JSON.parse(tool('state', id).out).status).toBe('running');
        p.kill('SIGTERM');
        expect(await exited, `${cmd}: ${out}`).toBe(7);
        expect(out).toBe('ready\ngot TERM\n');
        expect(fs.existsSync(path.join(root, id))).toBe(false);

        // the outer pty goes from 30x100 to 40x120 after "ready"
        const tid = newId();
        const targs = cmd === RUNC ? [RUNC, '--root', root, 'run', '--bundle', t.dir, tid] : [cmd, BIN, '--root', root, 'run', '--bundle', t.dir, tid];
        const r = spawnSync('python3', ['-c', PTY_DRIVER, ...targs], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, RESIZE_AFTER: 'ready', TYPE: 'go\n' } });
        if (cmd !== RUNC) expect(r.stdout, r.stderr).toMatch(/^30 100\nready\n/);
        expect(r.stdout, `${cmd}: ${r.stderr}`).toMatch(/\n40 120\n\nEXIT 0\n$/);
      }
    } finally {
      b.remove();
      t.remove();
    }
  });

  it('exec, ps, pause/resume, events --stats, update', () => {
    const id = newId();
    expect(berth('run', '-d', '--bundle', bundle.dir, id).code).toBe(0);
    const e = berth('exec', '--env', 'X=42', '--cwd', '/tmp', id, 'sh', '-c', 'echo $X $(pwd) $$; exit 4');
    expect(e.code).toBe(4);
    expect(e.out).toMatch(/^42 \/tmp \d+\n$/);
    const pids = JSON.parse(berth('ps', '--format', 'json', id).out) as number[];
    expect(pids.length).toBe(1);
    const table = berth('ps', id).out.trim().split('\n');
    expect(table[0]).toMatch(/^UID\s+PID\s+PPID/);
    expect(table.slice(1).map((l) => Number(l.trim().split(/\s+/)[1]))).toEqual(pids);
    expect(berth('pause', id).code).toBe(0);
    expect(JSON.parse(berth('state', id).out).status).toBe('paused');
    expect(berth('resume', id).code).toBe(0);
    const ev = JSON.parse(berth('events', '--stats', id).out);
    expect(ev).toMatchObject({ type: 'stats', id, data: { pids: { current: 1 } } });
    // the same shape as runc's
    const rid = newId();
    expect(runc('run', '-d', '--bundle', bundle.dir, rid).code).toBe(0);
    const rev = JSON.parse(runc('events', '--stats', rid).out);
    const shape = (o: Record<string, unknown>, keys: string[]): void => {
      for (const k of keys) expect(k.split('.').reduce<unknown>((v, p) => (v as Record<string, unknown>)?.[p], o), k).toBeTypeOf('number');
    };
    const keys = ['data.cpu.usage.total', 'data.cpu.usage.kernel', 'data.cpu.usage.user', 'data.memory.usage.usage', 'data.memory.usage.max', 'data.memory.usage.limit', 'data.pids.current'];
    shape(ev, keys);
    shape(rev, keys);
    expect(runc('delete', '-f', rid).code).toBe(0);
    expect(berth('update', '--pids-limit', '33', '--memory', '100000000', id).code).toBe(0);
    expect(JSON.parse(berth('events', '--stats', id).out).data.pids.limit).toBe(33);
    expect(berth('delete', '-f', id).code).toBe(0);
  });
});
