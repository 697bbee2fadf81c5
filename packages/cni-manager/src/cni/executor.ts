// CniExecutor: runs standard CNI plugins (spec 1.0 / 1.1) the way a container runtime does.
//
// - Network configuration lists from a directory (*.conflist; *.conf/*.json single plugins are
//   wrapped into a list), picked by name or the first in lexical order.
// - ADD runs the plugins in order, chaining each result into the next as prevResult; DEL runs
//   them in reverse with the cached ADD result; CHECK in order with it (spec >= 0.4.0).
// - The ADD result is cached on disk (per network, container and interface), so DEL and CHECK
//   get what ADD returned, also after a restart.
// - Capabilities: runtimeConfig gets only the capabilities a plugin declares (portMappings,
//   bandwidth, ...). CNI_ARGS is passed as K=V;K=V.
// - VERSION asks a plugin what it supports; GC and STATUS (spec 1.1) are sent to plugins that
//   support 1.1.0, and GC also drops cached results of attachments that are gone.
// - Errors follow the spec's error object ({code, msg, details}) and become CniError; a plugin
//   that hangs is killed after `timeoutMs`; output that is not a result is an error naming it.
// - With `hostNetns`, plugins run inside that network namespace (nsenter), so tests and
//   benchmarks never touch the machine's own namespace.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface CniPluginConf { type: string; capabilities?: Record<string, boolean>; [k: string]: unknown }
export interface CniNetworkList { cniVersion: string; name: string; plugins: CniPluginConf[]; disableCheck?: boolean; disableGC?: boolean; file?: string }

export interface CniRuntimeConf {
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS, e.g. { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'web' }. */
  args?: Record<string, string>;
  /** Capability arguments: portMappings, bandwidth, ... (passed as runtimeConfig when declared). */
  capabilityArgs?: Record<string, unknown>;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number }>;
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  [k: string]: unknown;
}

/** A plugin's error, as the spec defines it (code 1-99 reserved; 100+ plugin-specific). */
export class CniError extends Error {
  constructor(readonly code: number, readonly msg: string, readonly details = '', readonly plugin = '') {
    super(`${plugin ? `${plugin}: ` : ''}${msg}${details ? ` (${details})` : ''} [CNI error ${code}]`);
    this.name = 'CniError';
  }
}

/** Spec error codes. */
export const CNI_ERR = { incompatibleVersion: 1, unsupportedField: 2, unknownContainer: 3, invalidEnv: 4, ioFailure: 5, decodeFailure: 6, invalidConfig: 7, tryAgainLater: 11, notReady: 50, limitedConnectivity: 51 } as const;

export interface CniExecutorOptions {
  confDir: string;
  binDirs: string[];
  cacheDir: string;
  hostNetns?: string | null;
  timeoutMs?: number;
}

export class CniExecutor {
  readonly timeoutMs: number;
  constructor(readonly opts: CniExecutorOptions) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** Every network configuration list in confDir, in lexical file order. Bad files are errors naming them. */
  loadNetworks(): CniNetworkList[] {
    const out: CniNetworkList[] = [];
    for (const f of fs.readdirSync(this.opts.confDir).sort()) {
      if (!/\.(conflist|conf|json)$/.test(f)) continue;
      const file = path.join(this.opts.confDir, f);
      let doc: Record<string, unknown>;
      try {
        doc = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
      } catch (err) {
        throw new CniError(CNI_ERR.decodeFailure, `${file}: not valid JSON (${(err as Error).message})`);
      }
      const list: CniNetworkList = f.endsWith('.conflist')
        ? (doc as unknown as CniNetworkList)
        : { cniVersion: String(doc['cniVersion'] ?? ''), name: String(doc['name'] ?? ''), plugins: [doc as CniPluginConf] };
      if (typeof list.name !== 'string' || !list.name) throw new CniError(CNI_ERR.invalidConfig, `${file}: missing "name"`);
      if (typeof list.cniVersion !== 'string' || !list.cniVersion) throw new CniError(CNI_ERR.invalidConfig, `${file}: missing "cniVersion"`);
      if (!Array.isArray(list.plugins) || list.plugins.length === 0) throw new CniError(CNI_ERR.invalidConfig, `${file}: "plugins" must be a non-empty list`);
      list.plugins.forEach((p, i) => {
        if (!p || typeof p.type !== 'string' || !/^[A-Za-z0-9._-]+$/.test(p.type)) throw new CniError(CNI_ERR.invalidConfig, `${file}: plugins[${i}].type must be a plugin name`);
      });
      out.push({ ...list, file });
    }
    return out;
  }

  network(name?: string): CniNetworkList {
    const all = this.loadNetworks();
    const n = name === undefined ? all[0] : all.find((x) => x.name === name);
    if (!n) throw new CniError(CNI_ERR.invalidConfig, name === undefined ? `no network configuration in ${this.opts.confDir}` : `network "${name}" not found in ${this.opts.confDir}`);
    return n;
  }

  private pluginPath(type: string): string {
    for (const d of this.opts.binDirs) {
      const p = path.join(d, type);
      if (fs.existsSync(p)) return p;
    }
    throw new CniError(CNI_ERR.invalidConfig, `plugin "${type}" not found in ${this.opts.binDirs.join(':')}`);
  }

  private cacheFile(net: string, rt: Pick<CniRuntimeConf, 'containerId' | 'ifName'>): string {
    const key = createHash('sha256').update(`${net}\0${rt.containerId}\0${rt.ifName}`).digest('hex').slice(0, 40);
    return path.join(this.opts.cacheDir, 'results', `${key}.json`);
  }

  private pluginConf(list: CniNetworkList, p: CniPluginConf, rt: CniRuntimeConf | null, prevResult?: CniResult): Record<string, unknown> {
    const conf: Record<string, unknown> = { ...p, cniVersion: list.cniVersion, name: list.name };
    if (prevResult) conf['prevResult'] = prevResult;
    if (rt?.capabilityArgs && p.capabilities) {
      const runtimeConfig: Record<string, unknown> = {};
      for (const [cap, on] of Object.entries(p.capabilities)) if (on && rt.capabilityArgs[cap] !== undefined) runtimeConfig[cap] = rt.capabilityArgs[cap];
      if (Object.keys(runtimeConfig).length) conf['runtimeConfig'] = runtimeConfig;
    }
    return conf;
  }

  /** Runs one plugin; resolves with its parsed stdout (or null when empty). */
  async exec(type: string, command: string, conf: Record<string, unknown>, rt: Partial<CniRuntimeConf> = {}): Promise<Record<string, unknown> | null> {
    // K=V;K=V has no escaping: a ';' or '=' in a key, or a ';' in a value, would forge arguments.
    for (const [k, v] of Object.entries(rt.args ?? {})) {
      if (!/^[A-Za-z0-9_]+$/.test(k)) throw new CniError(CNI_ERR.invalidEnv, `CNI_ARGS key ${JSON.stringify(k)} must be letters, digits and _`);
      if (/[;\0]/.test(v)) throw new CniError(CNI_ERR.invalidEnv, `CNI_ARGS ${k}: value must not contain ';'`);
    }
    const bin = this.pluginPath(type);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: command,
      CNI_PATH: this.opts.binDirs.join(':'),
    };
    if (rt.containerId) env['CNI_CONTAINERID'] = rt.containerId;
    if (rt.netns) env['CNI_NETNS'] = rt.netns;
    if (rt.ifName) env['CNI_IFNAME'] = rt.ifName;
    if (rt.args && Object.keys(rt.args).length) {
      env['CNI_ARGS'] = Object.entries(rt.args).map(([k, v]) => `${k}=${v}`).join(';');
    }
    const [file, argv] = this.opts.hostNetns ? ['nsenter', [`--net=${this.opts.hostNetns}`, '--', bin]] : [bin, []];
    const { code, stdout, stderr, timedOut } = await new Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }>((resolve, reject) => {
      const child = spawn(file, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let errOut = '';
      let timedOut = false;
      const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, this.timeoutMs);
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (errOut += d.toString()));
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('close', (c) => { clearTimeout(timer); resolve({ code: c, stdout: out, stderr: errOut, timedOut }); });
      child.stdin.on('error', () => undefined);
      child.stdin.end(JSON.stringify(conf));
    });
    if (timedOut) throw new CniError(CNI_ERR.tryAgainLater, `${command} timed out after ${this.timeoutMs} ms and was killed`, '', type);
    let parsed: Record<string, unknown> | null = null;
    if (stdout.trim()) {
      try {
        parsed = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        if (code === 0) throw new CniError(CNI_ERR.decodeFailure, `${command} printed malformed output: ${JSON.stringify(stdout.slice(0, 200))}`, '', type);
      }
    }
    if (code !== 0) {
      if (parsed && typeof parsed['code'] === 'number') throw new CniError(parsed['code'] as number, String(parsed['msg'] ?? ''), String(parsed['details'] ?? ''), type);
      throw new CniError(CNI_ERR.ioFailure, `${command} exited ${code}`, (stderr || stdout).trim().slice(0, 500), type);
    }
    return parsed;
  }

  private checkResult(type: string, r: Record<string, unknown> | null): CniResult {
    if (!r || typeof r !== 'object' || typeof r['cniVersion'] !== 'string' || (r['ips'] !== undefined && !Array.isArray(r['ips'])) || (r['interfaces'] !== undefined && !Array.isArray(r['interfaces']))) {
      throw new CniError(CNI_ERR.decodeFailure, `ADD returned something that is not a CNI result: ${JSON.stringify(r)?.slice(0, 200)}`, '', type);
    }
    return r as CniResult;
  }

  /** ADD through the whole list; the final result is cached for DEL/CHECK. On failure, the plugins already run are DELeted. */
  async add(rt: CniRuntimeConf, network?: string): Promise<CniResult> {
    const list = this.network(network);
    let prev: CniResult | undefined;
    let done = 0;
    try {
      for (const p of list.plugins) {
        prev = this.checkResult(p.type, await this.exec(p.type, 'ADD', this.pluginConf(list, p, rt, prev), rt));
        done++;
      }
    } catch (err) {
      // Undo what was made: DEL the plugins that ran, in reverse, with what they returned.
      for (const p of list.plugins.slice(0, done + 1).reverse()) {
        await this.exec(p.type, 'DEL', this.pluginConf(list, p, rt, prev), rt).catch(() => undefined);
      }
      throw err;
    }
    const file = this.cacheFile(list.name, rt);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(`${file}.tmp`, JSON.stringify({ kind: 'cniCacheV1', network: list.name, containerId: rt.containerId, ifName: rt.ifName, netns: rt.netns, args: rt.args ?? {}, capabilityArgs: rt.capabilityArgs ?? {}, result: prev }), { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
    return prev!;
  }

  cachedResult(rt: Pick<CniRuntimeConf, 'containerId' | 'ifName'>, network?: string): CniResult | undefined {
    const list = this.network(network);
    try {
      return (JSON.parse(fs.readFileSync(this.cacheFile(list.name, rt), 'utf8')) as { result: CniResult }).result;
    } catch {
      return undefined;
    }
  }

  /** DEL in reverse order with the cached ADD result; idempotent. */
  async del(rt: CniRuntimeConf, network?: string): Promise<void> {
    const list = this.network(network);
    const cached = this.cachedResult(rt, network);
    for (const p of [...list.plugins].reverse()) await this.exec(p.type, 'DEL', this.pluginConf(list, p, rt, cached), rt);
    fs.rmSync(this.cacheFile(list.name, rt), { force: true });
  }

  /** CHECK in order with the cached result; throws the first plugin's error. */
  async check(rt: CniRuntimeConf, network?: string): Promise<void> {
    const list = this.network(network);
    if (list.disableCheck) return;
    const cached = this.cachedResult(rt, network);
    if (!cached) throw new CniError(CNI_ERR.unknownContainer, `no cached ADD result for container ${rt.containerId} on ${list.name}`);
    for (const p of list.plugins) await this.exec(p.type, 'CHECK', this.pluginConf(list, p, rt, cached), rt);
  }

  async version(type: string, cniVersion = '1.0.0'): Promise<string[]> {
    const r = await this.exec(type, 'VERSION', { cniVersion });
    const v = r?.['supportedVersions'];
    if (!Array.isArray(v)) throw new CniError(CNI_ERR.decodeFailure, `VERSION returned no supportedVersions`, '', type);
    return v as string[];
  }

  private async supports11(type: string): Promise<boolean> {
    return (await this.version(type).catch(() => [] as string[])).some((v) => v === '1.1.0');
  }

  /** GC (spec 1.1): keep only `valid` attachments; drops stale cache entries and tells 1.1 plugins. */
  async gc(valid: Array<{ containerId: string; ifName: string }>, network?: string): Promise<{ droppedCache: number }> {
    const list = this.network(network);
    const keep = new Set(valid.map((v) => this.cacheFile(list.name, v)));
    let dropped = 0;
    const dir = path.join(this.opts.cacheDir, 'results');
    for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      const file = path.join(dir, f);
      let entry: { network?: string; containerId: string; ifName: string; netns?: string; args?: Record<string, string>; result?: CniResult };
      try { entry = JSON.parse(fs.readFileSync(file, 'utf8')); } catch { continue; }
      if (entry.network !== list.name || keep.has(file)) continue;
      // DEL what the stale attachment left (IPAM allocations above all), then forget it.
      await this.del({ containerId: entry.containerId, ifName: entry.ifName, netns: entry.netns ?? '', args: entry.args ?? {} }, list.name).catch(() => fs.rmSync(file, { force: true }));
      dropped++;
    }
    if (list.disableGC) return { droppedCache: dropped };
    for (const p of list.plugins) {
      if (!(await this.supports11(p.type))) continue;
      const conf = { ...this.pluginConf(list, p, null), cniVersion: '1.1.0', 'cni.dev/valid-attachments': valid.map((v) => ({ containerID: v.containerId, ifname: v.ifName })) };
      await this.exec(p.type, 'GC', conf);
    }
    return { droppedCache: dropped };
  }

  /** STATUS (spec 1.1): resolves if every 1.1 plugin of the list is ready; plugins older than 1.1 are assumed ready. */
  async status(network?: string): Promise<void> {
    const list = this.network(network);
    for (const p of list.plugins) {
      if (!(await this.supports11(p.type))) continue;
      await this.exec(p.type, 'STATUS', { ...this.pluginConf(list, p, null), cniVersion: '1.1.0' });
    }
  }
}
