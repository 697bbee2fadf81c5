// `berth up`: a Berth cluster on this machine on embedded defaults — a local etcd that Berth
// manages itself, and the five services on unix sockets in $BERTH_RUN_DIR with state under
// $BERTH_STATE_DIR — in the foreground. Ctrl-C or SIGTERM stops everything it started.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EtcdCluster, checkHealth, freePort, runDir as defaultRunDir, stateRoot, waitServing } from '@berth/common';
import { createClusterPki } from './certs';
import { writeAdminConfig } from './kubeconfig';
import { SERVICES, serviceBin, type ServiceName } from './services';

export interface UpOptions {
  runDir?: string;
  stateDir?: string;
  /** Print progress to this stream (default stdout). */
  out?: NodeJS.WritableStream;
  /** Resolve once everything is serving instead of waiting for a signal (tests). */
  signal?: AbortSignal;
}

interface Child {
  name: string;
  proc: ChildProcess;
  socket: string;
  exited: Promise<number | null>;
}

/** Running and not a zombie (a killed orphan stays a zombie until init reaps it). */
function isRunning(pid: number): boolean {
  try { return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/**
 * The node's network namespace: pod networks live there, never on the host's own interfaces, and
 * deleting it on stop removes every link, route and address they made. Named after the run dir so
 * a restart after a crash finds (and replaces) the one it left.
 */
export function nodeNetnsName(runDir: string): string {
  return `berth-${crypto.createHash('sha256').update(path.resolve(runDir)).digest('hex').slice(0, 8)}-node0`;
}
function netnsExists(name: string): boolean {
  return fs.existsSync(path.join('/run/netns', name));
}
function deleteNetns(name: string): void {
  if (netnsExists(name)) execFileSync('ip', ['netns', 'delete', name], { stdio: 'ignore' });
}
function createNetns(name: string): string {
  deleteNetns(name);
  execFileSync('ip', ['netns', 'add', name], { stdio: 'ignore' });
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { stdio: 'ignore' });
  return path.join('/run/netns', name);
}

/** Kills the processes a crashed `berth up` left behind (its pids file), if they still run one of ours. */
function killLeftovers(pidsFile: string, say: (s: string) => void): void {
  let pids: number[] = [];
  try { pids = fs.readFileSync(pidsFile, 'utf8').split('\n').filter(Boolean).map(Number); } catch { return; }
  for (const pid of pids) {
    let cmd = '';
    try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
    // Only what we started: a berth service or etcd (a recycled pid is left alone).
    if (!/berth-[a-z-]+\.js|\betcd\b/.test(cmd)) continue;
    try { process.kill(pid, 'SIGKILL'); say(`berth up: stopped leftover process ${pid}`); } catch { /* gone */ }
    // Wait until it is gone (reaped by init), so its ports and sockets are free for us.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && isRunning(pid)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  fs.rmSync(pidsFile, { force: true });
}

export async function up(opts: UpOptions = {}): Promise<number> {
  const out = opts.out ?? process.stdout;
  const runDir = opts.runDir ?? defaultRunDir();
  const stateDir = opts.stateDir ?? stateRoot();
  const say = (s: string) => out.write(s + '\n');
  fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const logDir = path.join(stateDir, 'logs');
  fs.mkdirSync(logDir, { recursive: true, mode: 0o700 });

  // One `berth up` per run dir. A lock left by a crashed run (its pid is gone) is taken over.
  const lock = path.join(runDir, 'up.pid');
  try {
    const pid = Number(fs.readFileSync(lock, 'utf8'));
    if (pid && pid !== process.pid && isAlive(pid)) {
      say(`berth up: another berth up (pid ${pid}) is running with run dir ${runDir}`);
      return 1;
    }
    say(`berth up: taking over from a previous run that did not stop cleanly (pid ${pid})`);
    killLeftovers(path.join(runDir, 'up.children'), say);
  } catch { /* no lock */ }
  fs.writeFileSync(lock, String(process.pid), { mode: 0o600 });

  const children: Child[] = [];
  let etcd: EtcdCluster | undefined;
  const pidsFile = path.join(runDir, 'up.children');
  const netns = nodeNetnsName(runDir);
  const recordPids = () => {
    const pids = [...children.map((c) => c.proc.pid), ...(etcd?.memberInfo.map((m) => m.pid) ?? [])].filter(Boolean);
    fs.writeFileSync(pidsFile, pids.join('\n'), { mode: 0o600 });
  };
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    stopping = true;
    await Promise.all(children.map(async (c) => {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
      c.proc.kill('SIGTERM');
      const t = setTimeout(() => c.proc.kill('SIGKILL'), 10_000);
      await c.exited;
      clearTimeout(t);
    }));
    await etcd?.destroy();
    try { deleteNetns(netns); } catch (err) { say(`berth up: could not delete netns ${netns}: ${(err as Error).message}`); }
    fs.rmSync(pidsFile, { force: true });
    fs.rmSync(lock, { force: true });
  };

  let resolveSignal!: (sig: string) => void;
  const signalled = new Promise<string>((r) => (resolveSignal = r));
  const onSig = (sig: NodeJS.Signals) => resolveSignal(sig);
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);
  opts.signal?.addEventListener('abort', () => resolveSignal('abort'), { once: true });

  try {
    // etcd on fixed loopback ports remembered in the state dir, so a restart finds its data.
    const etcdRoot = path.join(stateDir, 'etcd');
    const portsFile = path.join(etcdRoot, 'ports.json');
    let clientPorts: number[] | undefined;
    try { clientPorts = (JSON.parse(fs.readFileSync(portsFile, 'utf8')) as { client: number[] }).client; } catch { /* first run */ }
    say('starting etcd ...');
    etcd = await EtcdCluster.start({ dataRoot: etcdRoot, members: 1, namePrefix: 'berth', clientPorts, enableV2: true });
    fs.writeFileSync(portsFile, JSON.stringify({ client: etcd.endpoints.map((e) => Number(new URL(e).port)) }));
    recordPids();
    say(`etcd        ${etcd.endpoints.join(',')}  (data ${etcdRoot})`);

    // The cluster CA and component certificates (kept across restarts; leaves reissued), and the
    // Store's mutual-TLS listener for nodes and users besides the node-local unix socket.
    const pki = createClusterPki(path.join(stateDir, 'pki'));
    const securePort = await freePort();
    const secureListen = `127.0.0.1:${securePort}`;
    say(`cluster CA  ${pki.ca.cert}`);
    const netnsPath = createNetns(netns);
    say(`node netns  ${netnsPath}`);
    for (const name of SERVICES) {
      const socket = `unix://${path.join(runDir, `${name}.sock`)}`;
      const args = [serviceBin(name), '--listen', socket, '--state-dir', path.join(stateDir, name)];
      if (name === 'etcd-client') {
        args.push('--etcd-endpoints', etcd.endpoints.join(','), '--secure-listen', secureListen,
          '--client-ca-file', pki.ca.cert, '--tls-cert-file', pki.server.cert, '--tls-private-key-file', pki.server.key);
      }
      if (name === 'cni-manager') args.push('--host-netns', netnsPath);
      const log = fs.openSync(path.join(logDir, `${name}.log`), 'a', 0o600);
      // Own process group: a terminal's Ctrl-C reaches only `berth up`, which then stops each
      // service once, gracefully, instead of the service seeing SIGINT and SIGTERM at once.
      const proc = spawn(process.execPath, args, { stdio: ['ignore', log, log], detached: true, env: { ...process.env, BERTH_RUN_DIR: runDir, BERTH_STATE_DIR: stateDir } });
      fs.closeSync(log);
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      const child: Child = { name, proc, socket, exited };
      children.push(child);
      recordPids();
      void exited.then((code) => {
        if (!stopping) say(`berth up: ${name} exited unexpectedly (code ${code}); see ${path.join(logDir, `${name}.log`)}`);
      });
    }

    const statuses = await Promise.all(children.map((c) => waitServing(c.socket, 20_000)));
    say('');
    say('SERVICE         SOCKET                                        HEALTH');
    children.forEach((c, i) => say(`${c.name.padEnd(15)} ${c.socket.padEnd(45)} ${statuses[i]}`));
    const ok = statuses.every((s) => s === 'SERVING');
    say('');
    if (!ok) {
      say(`berth up: not every service is serving; logs are in ${logDir}`);
      await stopAll();
      return 1;
    }
    const adminConf = writeAdminConfig({ stateDir, runDir, tcp: { server: secureListen, ca: pki.ca.cert, cert: pki.admin.cert, key: pki.admin.key } });
    say(`Store API   unix://${path.join(runDir, 'etcd-client.sock')} and mTLS on ${secureListen}`);
    say(`admin config ${adminConf} (berth finds it for this BERTH_STATE_DIR; context local-tls uses mTLS)`);
    say('');
    say('Berth is up: etcd and all five services are SERVING.');
    say(`In another terminal: node ${path.resolve(__dirname, 'bin', 'berth.js')} get pods`);
    say('Press Ctrl-C to stop everything.');

    const sig = await signalled;
    say(`\nberth up: ${sig}: stopping services and etcd ...`);
    await stopAll();
    say('berth up: stopped; nothing left running.');
    return 0;
  } catch (err) {
    say(`berth up: ${(err as Error).message}`);
    await stopAll();
    return 1;
  } finally {
    process.off('SIGINT', onSig);
    process.off('SIGTERM', onSig);
  }
}

export async function status(runDir = defaultRunDir()): Promise<Record<ServiceName, string>> {
  const res = {} as Record<ServiceName, string>;
  for (const name of SERVICES) res[name] = await checkHealth(`unix://${path.join(runDir, `${name}.sock`)}`);
  return res;
}
