// EtcdV2Client: etcd's v2 keys API (directories, TTLs, compare-and-swap, in-order keys,
// watches), members, version, health and v2 auth, over keep-alive HTTP with failover.
// Shaped like the Go client's KeysAPI; every option is checked before a request is made.
import { EtcdArgumentError } from '../v3/errors';
import { EtcdError } from './errors';
import { Transport, type EtcdV2Options, type HttpResult } from './transport';
import { V2Watcher, type V2WatchOptions } from './watch';

export interface Node {
  key: string;
  value?: string;
  dir?: boolean;
  nodes?: Node[];
  createdIndex: number;
  modifiedIndex: number;
  /** Seconds left, for keys with a TTL. */
  ttl?: number;
  /** RFC 3339 expiry time, for keys with a TTL. */
  expiration?: string;
}

export interface Response {
  /** get, set, create, update, delete, compareAndSwap, compareAndDelete, expire — and `resync`
   *  from a watch that fell more than 1000 events behind (node is then a fresh snapshot). */
  action: string;
  node: Node;
  prevNode?: Node;
  etcdIndex: number;
  raftIndex: number;
  raftTerm: number;
  clusterId: string;
}

export interface GetOptions {
  recursive?: boolean;
  sorted?: boolean;
  /** Linearizable read through the leader (Go client: Quorum). */
  quorum?: boolean;
}

export interface SetOptions {
  /** Seconds until the key expires (0 or absent: no TTL). */
  ttl?: number;
  /** Reset the TTL without changing the value (and without notifying watchers). Needs `ttl`
   *  and no value. */
  refresh?: boolean;
  /** true: the key must exist (update); false: it must not (create). */
  prevExist?: boolean;
  prevValue?: string;
  prevIndex?: number;
  /** Make a directory (no value). */
  dir?: boolean;
  /** Answer without the node on success (smaller responses). */
  noValueOnSuccess?: boolean;
}

export interface DeleteOptions {
  recursive?: boolean;
  dir?: boolean;
  prevValue?: string;
  prevIndex?: number;
}

export interface V2Member {
  id: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
}

export interface V2Version {
  etcdserver: string;
  etcdcluster: string;
}

export interface V2User {
  user: string;
  roles: string[];
}

export interface V2Permissions {
  read?: string[];
  write?: string[];
}

export interface V2Role {
  role: string;
  permissions: { kv: { read: string[]; write: string[] } };
}

function checkTtl(ttl: number | undefined, option: string): void {
  if (ttl === undefined) return;
  if (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl < 0) throw new EtcdArgumentError(option, `must be a non-negative integer number of seconds, got ${String(ttl)}`);
}
function checkIndex(v: number | undefined, option: string): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new EtcdArgumentError(option, `must be a positive integer, got ${String(v)}`);
}
function checkBool(v: unknown, option: string): void {
  if (v !== undefined && typeof v !== 'boolean') throw new EtcdArgumentError(option, `must be a boolean, got ${typeof v}`);
}

/** A key that is normal already and needs no escaping in a URL: "/" + segments of unreserved
 *  characters, none starting with "." (so none is "." or ".."). The common case, checked in one
 *  step before the general split-and-encode path. */
const SIMPLE_KEY = /^(?:\/[\w~-][\w.~-]*)+$/;

/**
 * Normalises a key: collapses repeated slashes, drops a trailing one, adds the leading one
 * ("foo//bar/" -> "/foo/bar"). Empty keys and "." or ".." segments are refused: etcd would
 * resolve them to another key than the caller named.
 */
export function normalizeKey(key: string, option = 'key'): string {
  if (typeof key === 'string' && SIMPLE_KEY.test(key)) return key;
  if (typeof key !== 'string') throw new EtcdArgumentError(option, `must be a string, got ${typeof key}`);
  if (key.length === 0) throw new EtcdArgumentError(option, 'must not be empty');
  const segs = key.split('/').filter((s) => s.length > 0);
  for (const s of segs) if (s === '..' || s === '.') throw new EtcdArgumentError(option, `${JSON.stringify(key)} contains a "${s}" segment`);
  if (/[\0]/.test(key)) throw new EtcdArgumentError(option, 'must not contain NUL');
  const norm = `/${segs.join('/')}`;
  if (!norm.startsWith('/')) throw new EtcdArgumentError(option, 'must start with "/"');
  return norm;
}

export function keyPath(key: string): string {
  if (SIMPLE_KEY.test(key)) return `/v2/keys${key}`;
  return `/v2/keys${key === '/' ? '/' : key.split('/').map(encodeURIComponent).join('/')}`;
}

function form(fields: Record<string, string | number | boolean | undefined>): string {
  let out = '';
  for (const k in fields) {
    const v = fields[k];
    if (v === undefined) continue;
    if (out) out += '&';
    out += `${k}=${encodeURIComponent(String(v))}`;
  }
  return out;
}

export function toResponse(r: HttpResult, body: { action: string; node: Node; prevNode?: Node }): Response {
  const out: Response = { action: body.action, node: body.node, etcdIndex: r.etcd.etcdIndex, raftIndex: r.etcd.raftIndex, raftTerm: r.etcd.raftTerm, clusterId: r.etcd.clusterId };
  if (body.prevNode) out.prevNode = body.prevNode;
  return out;
}

/** The form of a set (PUT), its options checked first. */
function setForm(value: string, o: SetOptions): string {
  // The plain set(key, value): nothing to check but the value, one field to encode.
  if (typeof value === 'string' && !hasOptions(o)) return `value=${encodeURIComponent(value)}`;
  checkTtl(o.ttl, 'ttl');
  checkIndex(o.prevIndex, 'prevIndex');
  checkBool(o.refresh, 'refresh'); checkBool(o.prevExist, 'prevExist'); checkBool(o.dir, 'dir'); checkBool(o.noValueOnSuccess, 'noValueOnSuccess');
  if (o.prevValue !== undefined && (typeof o.prevValue !== 'string' || o.prevValue === '')) throw new EtcdArgumentError('prevValue', 'must be a non-empty string');
  if (value !== undefined && typeof value !== 'string') throw new EtcdArgumentError('value', `must be a string, got ${typeof value}`);
  if (o.refresh) {
    if (value) throw new EtcdArgumentError('refresh', 'cannot be combined with a value (a refresh keeps the value)');
    if (!o.ttl) throw new EtcdArgumentError('refresh', 'needs a ttl');
  }
  if (o.dir && value) throw new EtcdArgumentError('dir', 'a directory has no value');
  if (o.prevExist === false && o.prevIndex !== undefined) throw new EtcdArgumentError('prevIndex', 'cannot be combined with prevExist=false (a key that must not exist has no index)');
  if (o.prevExist === false && o.prevValue !== undefined) throw new EtcdArgumentError('prevValue', 'cannot be combined with prevExist=false (a key that must not exist has no value)');
  return form({
    value: o.refresh || o.dir ? undefined : (value ?? ''),
    ttl: o.ttl ? o.ttl : undefined,
    refresh: o.refresh || undefined,
    prevExist: o.prevExist,
    prevValue: o.prevValue,
    prevIndex: o.prevIndex,
    dir: o.dir || undefined,
    noValueOnSuccess: o.noValueOnSuccess || undefined,
  });
}

function hasOptions(o: object): boolean {
  for (const k in o) if ((o as Record<string, unknown>)[k] !== undefined) return true;
  return false;
}

function keysResponse(r: HttpResult): Response {
  return toResponse(r, Transport.json(r));
}

export class EtcdV2Client {
  /** @internal */
  readonly transport: Transport;
  private readonly watchers = new Set<V2Watcher>();

  constructor(opts: EtcdV2Options) {
    this.transport = new Transport(opts);
  }

  /** The endpoint requests currently go to. */
  get activeEndpoint(): string {
    return this.transport.pinnedEndpoint;
  }

  private keys(method: 'GET' | 'PUT' | 'POST' | 'DELETE', key: string, fields: Record<string, string | number | boolean | undefined>): Promise<Response> {
    const f = form(fields);
    const path = keyPath(key);
    return this.transport.request(method === 'GET' || method === 'DELETE' ? { method, path: f ? `${path}?${f}` : path } : { method, path, body: f }).then(keysResponse);
  }

  get(key: string, o: GetOptions = {}): Promise<Response> {
    // Not an async function: a read is the hot path, and this saves a promise and its hops.
    // Bad options still reject (never throw), as from the async methods.
    let path: string;
    try {
      path = keyPath(normalizeKey(key));
      checkBool(o.recursive, 'recursive'); checkBool(o.sorted, 'sorted'); checkBool(o.quorum, 'quorum');
    } catch (e) {
      return Promise.reject(e);
    }
    // Same query as form() would build, without the intermediate object.
    const q = (o.recursive ? '&recursive=true' : '') + (o.sorted ? '&sorted=true' : '') + (o.quorum ? '&quorum=true' : '');
    return this.transport.request({ method: 'GET', path: q ? `${path}?${q.slice(1)}` : path }).then(keysResponse);
  }

  set(key: string, value: string, o: SetOptions = {}): Promise<Response> {
    // Not an async function, like get(): writes are a hot path too. Bad options still reject.
    let path: string, body: string;
    try {
      path = keyPath(normalizeKey(key));
      body = setForm(value, o);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.transport.request({ method: 'PUT', path, body }).then(keysResponse);
  }

  /** Sets the key only if it does not exist (error 105 otherwise). */
  create(key: string, value: string, o: { ttl?: number } = {}): Promise<Response> {
    return this.set(key, value, { ttl: o.ttl, prevExist: false });
  }

  /** Creates a key with a unique, increasing name under `dir` (sorted get lists them in order). */
  async createInOrder(dir: string, value: string, o: { ttl?: number } = {}): Promise<Response> {
    const k = normalizeKey(dir, 'dir');
    checkTtl(o.ttl, 'ttl');
    if (typeof value !== 'string') throw new EtcdArgumentError('value', `must be a string, got ${typeof value}`);
    return this.keys('POST', k, { value, ttl: o.ttl ? o.ttl : undefined });
  }

  /** Sets the key only if it exists (error 100 otherwise). */
  update(key: string, value: string, o: { ttl?: number } = {}): Promise<Response> {
    return this.set(key, value, { ttl: o.ttl, prevExist: true });
  }

  async delete(key: string, o: DeleteOptions = {}): Promise<Response> {
    const k = normalizeKey(key);
    checkBool(o.recursive, 'recursive'); checkBool(o.dir, 'dir');
    checkIndex(o.prevIndex, 'prevIndex');
    if (o.prevValue !== undefined && (typeof o.prevValue !== 'string' || o.prevValue === '')) throw new EtcdArgumentError('prevValue', 'must be a non-empty string');
    if (o.recursive && (o.prevValue !== undefined || o.prevIndex !== undefined)) throw new EtcdArgumentError('recursive', 'cannot be combined with prevValue or prevIndex');
    return this.keys('DELETE', k, { recursive: o.recursive || undefined, dir: o.dir || undefined, prevValue: o.prevValue, prevIndex: o.prevIndex });
  }

  /**
   * Watches a key (or a directory with `recursive`) from `afterIndex` (exclusive; default: now).
   * Never loses or repeats an event: on etcd's "event index cleared" (401: the watcher fell
   * more than 1000 events behind) it re-reads the subtree, yields `{ action: 'resync' }` with
   * the snapshot, and goes on from there.
   */
  watch(key: string, o: V2WatchOptions = {}): V2Watcher {
    const k = normalizeKey(key);
    checkBool(o.recursive, 'recursive');
    if (o.afterIndex !== undefined && (!Number.isSafeInteger(o.afterIndex) || o.afterIndex < 0)) throw new EtcdArgumentError('afterIndex', `must be a non-negative integer, got ${String(o.afterIndex)}`);
    const w = new V2Watcher(this, k, o, () => this.watchers.delete(w));
    this.watchers.add(w);
    return w;
  }

  // ---- members ----

  async listMembers(): Promise<V2Member[]> {
    const r = await this.transport.request({ method: 'GET', path: '/v2/members' });
    return Transport.json<{ members: V2Member[] }>(r).members.map((m) => ({ ...m, clientURLs: m.clientURLs ?? [] }));
  }

  async addMember(peerURLs: string[]): Promise<V2Member> {
    if (!Array.isArray(peerURLs) || peerURLs.length === 0) throw new EtcdArgumentError('peerURLs', 'at least one peer URL is required');
    const r = await this.transport.request({ method: 'POST', path: '/v2/members', body: JSON.stringify({ peerURLs }), contentType: 'application/json' });
    return Transport.json<V2Member>(r, [201]);
  }

  async removeMember(id: string): Promise<void> {
    if (!/^[0-9a-f]{1,16}$/.test(id)) throw new EtcdArgumentError('id', `must be a hex member ID, got ${JSON.stringify(id)}`);
    const r = await this.transport.request({ method: 'DELETE', path: `/v2/members/${id}` });
    Transport.json(r, [204]);
  }

  async updateMember(id: string, peerURLs: string[]): Promise<void> {
    if (!/^[0-9a-f]{1,16}$/.test(id)) throw new EtcdArgumentError('id', `must be a hex member ID, got ${JSON.stringify(id)}`);
    if (!Array.isArray(peerURLs) || peerURLs.length === 0) throw new EtcdArgumentError('peerURLs', 'at least one peer URL is required');
    const r = await this.transport.request({ method: 'PUT', path: `/v2/members/${id}`, body: JSON.stringify({ peerURLs }), contentType: 'application/json' });
    Transport.json(r, [204]);
  }

  async leader(): Promise<V2Member> {
    const r = await this.transport.request({ method: 'GET', path: '/v2/members/leader' });
    return Transport.json<V2Member>(r);
  }

  // ---- version and health ----

  /** Version of one endpoint (default: the active one). */
  async version(endpoint?: string): Promise<V2Version> {
    const r = await this.transport.request({ method: 'GET', path: '/version', endpoint: this.endpointIndex(endpoint) });
    return Transport.json<V2Version>(r);
  }

  /** Health of one endpoint: true when it has a leader and answers. */
  async health(endpoint?: string): Promise<boolean> {
    try {
      const r = await this.transport.request({ method: 'GET', path: '/health', endpoint: this.endpointIndex(endpoint) });
      return r.status === 200 && (JSON.parse(r.body) as { health?: string }).health === 'true';
    } catch {
      return false;
    }
  }

  private endpointIndex(endpoint: string | undefined): number | undefined {
    if (endpoint === undefined) return undefined;
    const i = this.transport.endpoints.findIndex((e) => e.url === endpoint.replace(/\/$/, ''));
    if (i < 0) throw new EtcdArgumentError('endpoint', `${endpoint} is not one of this client's endpoints`);
    return i;
  }

  // ---- v2 auth ----

  async authEnabled(): Promise<boolean> {
    return Transport.json<{ enabled: boolean }>(await this.transport.request({ method: 'GET', path: '/v2/auth/enable' })).enabled;
  }
  /** Turns v2 auth on (the root user must exist). */
  async enableAuth(): Promise<void> {
    Transport.json(await this.transport.request({ method: 'PUT', path: '/v2/auth/enable' }));
  }
  async disableAuth(): Promise<void> {
    Transport.json(await this.transport.request({ method: 'DELETE', path: '/v2/auth/enable' }));
  }

  async listUsers(): Promise<string[]> {
    const body = Transport.json<{ users: ({ user: string } | string)[] | null }>(await this.transport.request({ method: 'GET', path: '/v2/auth/users' }));
    return (body.users ?? []).map((u) => (typeof u === 'string' ? u : u.user));
  }
  async getUser(name: string): Promise<V2User> {
    const body = Transport.json<{ user: string; roles?: ({ role: string } | string)[] }>(await this.transport.request({ method: 'GET', path: `/v2/auth/users/${this.authName(name, 'name')}` }));
    return { user: body.user, roles: (body.roles ?? []).map((r) => (typeof r === 'string' ? r : r.role)) };
  }
  async addUser(name: string, password: string): Promise<void> {
    if (typeof password !== 'string' || !password) throw new EtcdArgumentError('password', 'must be a non-empty string');
    await this.putUser(name, { password });
  }
  async changePassword(name: string, password: string): Promise<void> {
    if (typeof password !== 'string' || !password) throw new EtcdArgumentError('password', 'must be a non-empty string');
    await this.putUser(name, { password });
  }
  async grantUser(name: string, roles: string[]): Promise<void> {
    await this.putUser(name, { grant: this.roleList(roles) });
  }
  async revokeUser(name: string, roles: string[]): Promise<void> {
    await this.putUser(name, { revoke: this.roleList(roles) });
  }
  async removeUser(name: string): Promise<void> {
    Transport.json(await this.transport.request({ method: 'DELETE', path: `/v2/auth/users/${this.authName(name, 'name')}` }));
  }
  async listRoles(): Promise<string[]> {
    const body = Transport.json<{ roles: ({ role: string } | string)[] | null }>(await this.transport.request({ method: 'GET', path: '/v2/auth/roles' }));
    return (body.roles ?? []).map((r) => (typeof r === 'string' ? r : r.role));
  }
  async getRole(name: string): Promise<V2Role> {
    return Transport.json<V2Role>(await this.transport.request({ method: 'GET', path: `/v2/auth/roles/${this.authName(name, 'name')}` }));
  }
  async addRole(name: string): Promise<void> {
    await this.putRole(name, {});
  }
  /** Lets a role read and/or write keys; patterns end in "*" for a subtree ("/app/*"). */
  async grantRoleKV(name: string, perms: V2Permissions): Promise<void> {
    await this.putRole(name, { grant: this.perms(perms) });
  }
  async revokeRoleKV(name: string, perms: V2Permissions): Promise<void> {
    await this.putRole(name, { revoke: this.perms(perms) });
  }
  async removeRole(name: string): Promise<void> {
    Transport.json(await this.transport.request({ method: 'DELETE', path: `/v2/auth/roles/${this.authName(name, 'name')}` }));
  }

  private async putUser(name: string, fields: Record<string, unknown>): Promise<void> {
    const user = this.authName(name, 'name');
    Transport.json(await this.transport.request({ method: 'PUT', path: `/v2/auth/users/${user}`, contentType: 'application/json', body: JSON.stringify({ user: name, ...fields }) }), [200, 201]);
  }
  private async putRole(name: string, fields: Record<string, unknown>): Promise<void> {
    const role = this.authName(name, 'name');
    Transport.json(await this.transport.request({ method: 'PUT', path: `/v2/auth/roles/${role}`, contentType: 'application/json', body: JSON.stringify({ role: name, ...fields }) }), [200, 201]);
  }
  private roleList(roles: string[]): string[] {
    if (!Array.isArray(roles) || roles.length === 0 || roles.some((r) => typeof r !== 'string' || !r)) throw new EtcdArgumentError('roles', 'must be a non-empty list of role names');
    return roles;
  }
  private perms(p: V2Permissions): { kv: { read: string[]; write: string[] } } {
    for (const k of ['read', 'write'] as const) {
      if (p[k] !== undefined && (!Array.isArray(p[k]) || p[k]!.some((x) => typeof x !== 'string' || !x.startsWith('/')))) throw new EtcdArgumentError(`perms.${k}`, 'must be a list of key patterns starting with "/"');
    }
    return { kv: { read: p.read ?? [], write: p.write ?? [] } };
  }

  private authName(name: string, option: string): string {
    if (typeof name !== 'string' || name.length === 0 || name.includes('/')) throw new EtcdArgumentError(option, 'must be a non-empty name without "/"');
    return encodeURIComponent(name);
  }

  close(): void {
    for (const w of [...this.watchers]) w.cancel();
    this.transport.close();
  }
}

export { EtcdError };
