// Runs Debian's etcd as a child process on free loopback ports: one member or a cluster, with
// stop, kill -9, restart and pause (SIGSTOP) of a member. Used by `berth up` (a local etcd that
// Berth manages itself) and by every test and benchmark that needs a real etcd.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';

export interface EtcdMemberInfo {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  pid?: number;
}

export interface EtcdClusterOptions {
  /** Parent directory for member data dirs (created; removed by `destroy` if `removeDataOnDestroy`). */
  dataRoot: string;
  members?: number;
  /** Prefix of member names; a unique token is added so concurrent clusters never collide. */
  namePrefix?: string;
  enableV2?: boolean;
  /** etcd binary (default `etcd` on PATH, falling back to /usr/bin/etcd). */
  binary?: string;
  /** Where each member's stdout/stderr goes (default: a log file in its data dir). */
  logToFile?: boolean;
  removeDataOnDestroy?: boolean;
  /** Fixed client ports (one per member); free ports are picked when omitted. */
  clientPorts?: number[];
  /** How a free port is picked (default freePort(); tests give one that races). */
  pickPort?: () => Promise<number>;
  extraArgs?: string[];
  /** Serve clients over TLS (https client URLs); peer traffic stays plain on loopback. */
  clientTls?: EtcdClientTls;
  /** Auto-compaction etc. are left at etcd defaults; the v2 event history (1000) is etcd's own. */
}

export interface EtcdClientTls {
  certFile: string;
  keyFile: string;
  /** CA that client certificates must chain to (etcd --trusted-ca-file). */
  caFile: string;
  /** Require a client certificate (etcd --client-cert-auth). */
  clientCertAuth?: boolean;
  /** The certificate the harness itself presents for its health checks when one is required. */
  clientCertFile?: string;
  clientKeyFile?: string;
}

/** TLS material for an https GET (paths). */
export interface HttpsGetTls {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function etcdBinary(explicit?: string): string {
  if (explicit) return explicit;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/bin', '/usr/local/bin'])) {
    const p = path.join(dir, 'etcd');
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  throw new Error('etcd not found on PATH or in /usr/bin (Debian package etcd-server; tools/bootstrap installs it)');
}

export function httpGetJson(url: string, timeoutMs = 1000, tls?: HttpsGetTls): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const onRes = (res: http.IncomingMessage) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (data += c));
      res.on('end', () => {
        try { resolve({ status: res.statusCode ?? 0, body: data ? JSON.parse(data) : undefined }); } catch (e) { reject(e); }
      });
    };
    const req = url.startsWith('https:')
      ? https.get(url, {
        timeout: timeoutMs,
        agent: false,
        ca: tls?.caFile ? fs.readFileSync(tls.caFile) : undefined,
        cert: tls?.certFile ? fs.readFileSync(tls.certFile) : undefined,
        key: tls?.keyFile ? fs.readFileSync(tls.keyFile) : undefined,
      }, onRes)
      : http.get(url, { timeout: timeoutMs, agent: false }, onRes);
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

class Member {
  proc?: ChildProcess;
  exited?: Promise<void>;
  constructor(public info: EtcdMemberInfo, public args: string[], readonly logFile?: string) {}

  /** Where this start's output begins in the (appended) log file. */
  logOffset = 0;

  start(bin: string): void {
    if (this.logFile) try { this.logOffset = fs.statSync(this.logFile).size; } catch { this.logOffset = 0; }
    const out = this.logFile ? fs.openSync(this.logFile, 'a') : 'ignore';
    // Own process group: a terminal's Ctrl-C goes to the owner, which stops etcd itself.
    const proc = spawn(bin, this.args, { stdio: ['ignore', out, out], detached: true });
    if (typeof out === 'number') fs.closeSync(out);
    this.proc = proc;
    this.info.pid = proc.pid;
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
  }
  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }
}

export class EtcdCluster {
  private members: Member[] = [];
  private fresh: string[] = [];
  private picked = new Set<number>();
  private bin: string;
  private state = 'new';
  readonly token: string;

  private constructor(private opts: EtcdClusterOptions) {
    this.bin = etcdBinary(opts.binary);
    this.token = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  }

  /** Starts the members and waits until every one reports healthy. */
  static async start(opts: EtcdClusterOptions): Promise<EtcdCluster> {
    // freePort() releases the port before etcd binds it, so another process (a parallel test
    // run) can take it in between; etcd then exits with "address already in use". Such a start
    // is retried on new ports; any other failure is reported as it is.
    for (let attempt = 1; ; attempt++) {
      const c = new EtcdCluster(opts);
      try {
        await c.init();
        return c;
      } catch (err) {
        const raced = c.lostPortRace();
        await c.destroy();
        c.removeFreshDataDirs();
        if (!raced || attempt >= 4) throw err;
      }
    }
  }

  /** Whether a member exited because one of its ports was taken after freePort() picked it. */
  private lostPortRace(): boolean {
    return this.members.some((m) => {
      if (m.running || !m.logFile) return false;
      let log: string;
      try { log = fs.readFileSync(m.logFile).subarray(m.logOffset).toString('utf8'); } catch { return false; }
      // etcd: `listen tcp 127.0.0.1:PORT: bind: address already in use`; a port the caller fixed
      // is taken for good, so only a picked one counts.
      return [...log.matchAll(/:(\d+): bind: address already in use/g)].some((x) => this.picked.has(Number(x[1])));
    });
  }

  /** Data dirs this attempt created (never a member's existing data), with their logs. */
  private removeFreshDataDirs(): void {
    for (const dir of this.fresh) fs.rmSync(dir, { recursive: true, force: true });
    for (const m of this.members) if (m.logFile && this.fresh.includes(m.info.dataDir)) fs.rmSync(m.logFile, { force: true });
  }

  private async init(): Promise<void> {
    const n = this.opts.members ?? 1;
    const prefix = this.opts.namePrefix ?? 'berth-etcd';
    fs.mkdirSync(this.opts.dataRoot, { recursive: true, mode: 0o700 });
    const infos: EtcdMemberInfo[] = [];
    for (let i = 0; i < n; i++) {
      const pick = this.opts.pickPort ?? freePort;
      const clientPort = this.opts.clientPorts?.[i] ?? (await pick());
      const peerPort = await pick();
      if (this.opts.clientPorts?.[i] === undefined) this.picked.add(clientPort);
      this.picked.add(peerPort);
      const name = `${prefix}-${i}`;
      const scheme = this.opts.clientTls ? 'https' : 'http';
      infos.push({ name, clientUrl: `${scheme}://127.0.0.1:${clientPort}`, peerUrl: `http://127.0.0.1:${peerPort}`, dataDir: path.join(this.opts.dataRoot, name) });
    }
    const initialCluster = infos.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    for (const info of infos) {
      // An existing data dir (restart of `berth up`) rejoins its cluster; a new one bootstraps.
      const existing = fs.existsSync(path.join(info.dataDir, 'member'));
      if (!existing && !fs.existsSync(info.dataDir)) this.fresh.push(info.dataDir);
      const args = [
        '--name', info.name,
        '--data-dir', info.dataDir,
        '--listen-client-urls', info.clientUrl,
        '--advertise-client-urls', info.clientUrl,
        '--listen-peer-urls', info.peerUrl,
        '--initial-advertise-peer-urls', info.peerUrl,
        '--initial-cluster', initialCluster,
        '--initial-cluster-state', existing ? 'existing' : 'new',
        '--initial-cluster-token', `berth-${this.token}`,
        '--heartbeat-interval', '50',
        '--election-timeout', '500',
        '--logger', 'zap',
        '--log-outputs', 'stderr',
        ...(this.opts.enableV2 ?? true ? ['--enable-v2=true'] : []),
        ...(this.opts.clientTls ? [
          '--cert-file', this.opts.clientTls.certFile,
          '--key-file', this.opts.clientTls.keyFile,
          '--trusted-ca-file', this.opts.clientTls.caFile,
          ...(this.opts.clientTls.clientCertAuth ? ['--client-cert-auth'] : []),
        ] : []),
        ...(this.opts.extraArgs ?? []),
      ];
      fs.mkdirSync(info.dataDir, { recursive: true, mode: 0o700 });
      const logFile = (this.opts.logToFile ?? true) ? path.join(this.opts.dataRoot, `${info.name}.log`) : undefined;
      const m = new Member(info, args, logFile);
      this.members.push(m);
      m.start(this.bin);
    }
    this.state = 'running';
    await Promise.all(this.members.map((_, i) => this.waitHealthy(i)));
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.info.clientUrl);
  }
  get memberInfo(): EtcdMemberInfo[] {
    return this.members.map((m) => ({ ...m.info }));
  }
  isRunning(i: number): boolean {
    return this.members[i].running;
  }

  /** Waits until member i answers /health with health=true (the cluster has a leader). */
  async waitHealthy(i: number, timeoutMs = 20_000): Promise<void> {
    const m = this.members[i];
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (!m.running) throw new Error(`etcd member ${m.info.name} exited during start-up (log: ${path.join(this.opts.dataRoot, `${m.info.name}.log`)})`);
      try {
        const t = this.opts.clientTls;
        const r = await httpGetJson(`${m.info.clientUrl}/health`, 500, t && { caFile: t.caFile, certFile: t.clientCertFile, keyFile: t.clientKeyFile });
        if (r.status === 200 && (r.body as { health?: string }).health === 'true') return;
        last = JSON.stringify(r.body);
      } catch (err) {
        last = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`etcd member ${m.info.name} not healthy after ${timeoutMs} ms: ${last}`);
  }

  /** SIGTERM and wait. */
  async stop(i: number): Promise<void> {
    const m = this.members[i];
    if (!m.running) return;
    m.proc!.kill('SIGCONT');
    m.proc!.kill('SIGTERM');
    const t = setTimeout(() => m.proc?.kill('SIGKILL'), 10_000);
    await m.exited;
    clearTimeout(t);
  }
  /** kill -9 and wait for the exit. */
  async kill(i: number): Promise<void> {
    const m = this.members[i];
    if (!m.running) return;
    m.proc!.kill('SIGKILL');
    await m.exited;
  }
  /** Restarts a stopped or killed member with its data dir (it rejoins). */
  async restart(i: number, waitHealthy = true): Promise<void> {
    const m = this.members[i];
    if (m.running) await this.stop(i);
    const idx = m.args.indexOf('--initial-cluster-state');
    m.args[idx + 1] = 'existing';
    m.start(this.bin);
    if (waitHealthy) await this.waitHealthy(i);
  }
  /** SIGSTOP: the member stops answering but keeps its sockets open. */
  pause(i: number): void {
    this.members[i].proc?.kill('SIGSTOP');
  }
  resume(i: number): void {
    this.members[i].proc?.kill('SIGCONT');
  }

  /** Stops every member; removes data when asked. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.state === 'destroyed') return;
    this.state = 'destroyed';
    await Promise.all(this.members.map((_, i) => this.stop(i)));
    if (this.opts.removeDataOnDestroy) fs.rmSync(this.opts.dataRoot, { recursive: true, force: true });
  }
}
