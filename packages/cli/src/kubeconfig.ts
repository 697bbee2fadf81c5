// The berth config file (kubeconfig-like, `~/.berth/config`): clusters (server, CA), users
// (client certificate or token) and contexts that pair them with a default namespace.
//
// Which file `berth` reads: --kubeconfig, then $BERTH_KUBECONFIG, then — when $BERTH_STATE_DIR
// or $BERTH_RUN_DIR name a local cluster — that cluster's admin config (or its unix socket),
// then ~/.berth/config, then the default local cluster's admin config; with none of them, the
// default local unix socket.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultSocket, stateRoot } from '@berth/common';
import { parse as parseYaml, stringify as toYaml } from 'yaml';

export interface ClusterEntry { name: string; cluster: { server: string; 'certificate-authority'?: string; 'tls-server-name'?: string } }
export interface UserEntry { name: string; user: { 'client-certificate'?: string; 'client-key'?: string; token?: string } }
export interface ContextEntry { name: string; context: { cluster: string; user: string; namespace?: string } }

export interface BerthConfig {
  apiVersion: 'v1';
  kind: 'Config';
  'current-context': string;
  clusters: ClusterEntry[];
  users: UserEntry[];
  contexts: ContextEntry[];
}

export class ConfigFileError extends Error {}

export function emptyConfig(): BerthConfig {
  return { apiVersion: 'v1', kind: 'Config', 'current-context': '', clusters: [], users: [], contexts: [] };
}

/** The admin config `berth up` writes for a local cluster. */
export function adminConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateRoot(env), 'admin.conf');
}

export function userConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.HOME || os.homedir(), '.berth', 'config');
}

export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): { path: string | undefined; explicit: boolean } {
  if (flag) return { path: flag, explicit: true };
  if (env.BERTH_KUBECONFIG) return { path: env.BERTH_KUBECONFIG, explicit: true };
  // A local cluster named by the environment wins over ~/.berth/config: its admin config, or
  // else its unix socket directly.
  if (env.BERTH_STATE_DIR || env.BERTH_RUN_DIR) return { path: fs.existsSync(adminConfigPath(env)) ? adminConfigPath(env) : undefined, explicit: false };
  if (fs.existsSync(userConfigPath(env))) return { path: userConfigPath(env), explicit: false };
  if (fs.existsSync(adminConfigPath(env))) return { path: adminConfigPath(env), explicit: false };
  return { path: undefined, explicit: false };
}

export function readConfig(file: string): BerthConfig {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) { throw new ConfigFileError(`cannot read config ${file}: ${(e as Error).message}`); }
  let raw: unknown;
  try { raw = parseYaml(text); } catch (e) { throw new ConfigFileError(`${file}: malformed YAML: ${(e as Error).message.split('\n')[0]}`); }
  if (raw === null || raw === undefined) return emptyConfig();
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigFileError(`${file}: expected a mapping`);
  const c = { ...emptyConfig(), ...(raw as object) } as BerthConfig;
  for (const k of ['clusters', 'users', 'contexts'] as const) if (!Array.isArray(c[k])) throw new ConfigFileError(`${file}: ${k}: expected a list`);
  const known = new Set(['apiVersion', 'kind', 'current-context', 'clusters', 'users', 'contexts', 'preferences']);
  for (const k of Object.keys(raw as object)) if (!known.has(k)) throw new ConfigFileError(`${file}: unknown field "${k}"`);
  return c;
}

export function writeConfig(file: string, c: BerthConfig): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // Written 0600: it may hold a token or point at private keys.
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, toYaml(c), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export interface Connection {
  target: string;
  namespace: string;
  tls?: { caFile: string; certFile?: string; keyFile?: string; serverName?: string };
  token?: string;
  context: string;
}

/** The connection of a context (the current one by default). */
export function connectionFrom(c: BerthConfig, file: string, contextName?: string): Connection {
  const name = contextName || c['current-context'];
  if (!name) throw new ConfigFileError(`${file}: no current-context is set (berth config use-context NAME)`);
  const ctx = c.contexts.find((x) => x.name === name);
  if (!ctx) throw new ConfigFileError(`${file}: context "${name}" does not exist`);
  const cl = c.clusters.find((x) => x.name === ctx.context.cluster);
  if (!cl) throw new ConfigFileError(`${file}: cluster "${ctx.context.cluster}" of context "${name}" does not exist`);
  const u = c.users.find((x) => x.name === ctx.context.user);
  const rel = (p?: string) => (p ? path.resolve(path.dirname(file), p) : undefined);
  const server = cl.cluster.server.replace(/^https:\/\//, '');
  const conn: Connection = { target: server, namespace: ctx.context.namespace || 'default', context: name };
  if (!server.startsWith('unix:')) {
    const ca = rel(cl.cluster['certificate-authority']);
    if (!ca) throw new ConfigFileError(`${file}: cluster "${cl.name}" needs certificate-authority for a TCP server`);
    conn.tls = { caFile: ca, certFile: rel(u?.user['client-certificate']), keyFile: rel(u?.user['client-key']), serverName: cl.cluster['tls-server-name'] };
  }
  if (u?.user.token) conn.token = u.user.token;
  return conn;
}

/** What to connect to with no config at all: the local cluster's unix socket (root = admin). */
export function localConnection(env: NodeJS.ProcessEnv = process.env): Connection {
  return { target: defaultSocket('etcd-client', env), namespace: 'default', context: 'local' };
}

/**
 * Writes the admin config of a local cluster (`berth up` calls this): the unix socket, and —
 * when a PKI is given — a second context over mutual TLS with the admin certificate.
 */
export function writeAdminConfig(opts: { stateDir: string; runDir: string; tcp?: { server: string; ca: string; cert: string; key: string } }): string {
  const file = path.join(opts.stateDir, 'admin.conf');
  const c = emptyConfig();
  c.clusters.push({ name: 'local', cluster: { server: `unix://${path.join(opts.runDir, 'etcd-client.sock')}` } });
  c.users.push({ name: 'local-root', user: {} });
  c.contexts.push({ name: 'local', context: { cluster: 'local', user: 'local-root', namespace: 'default' } });
  if (opts.tcp) {
    c.clusters.push({ name: 'local-tls', cluster: { server: opts.tcp.server, 'certificate-authority': opts.tcp.ca } });
    c.users.push({ name: 'admin', user: { 'client-certificate': opts.tcp.cert, 'client-key': opts.tcp.key } });
    c.contexts.push({ name: 'local-tls', context: { cluster: 'local-tls', user: 'admin', namespace: 'default' } });
  }
  c['current-context'] = 'local';
  writeConfig(file, c);
  return file;
}
