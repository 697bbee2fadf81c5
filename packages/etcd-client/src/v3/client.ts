// EtcdV3Client: etcd's v3 API over gRPC — keys, transactions, watches, leases, cluster members,
// status, auth — with endpoint failover (see connection.ts for which calls are retried).
import {
  AuthService,
  ClusterService,
  Compare_CompareResult,
  Compare_CompareTarget,
  KVService,
  LeaseService,
  MaintenanceService,
  RangeRequest_SortOrder,
  WatchService,
  RangeRequest_SortTarget,
  type Compare as PbCompare,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type Member as PbMember,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from '../gen/etcdserverpb/rpc';
import { Permission_Type } from '../gen/authpb/auth';
import { Connection, type EtcdV3Options } from './connection';
import { EtcdArgumentError, EtcdCompactedError, EtcdV3Error } from './errors';
import { LeaseKeepAlive, type KeepAliveOptions } from './lease';
import { checkRevision, fromPbKv, idToHex, leaseToWire, memberIdToWire, prefixEnd, toBuffer, type Bytes, type KeyValue } from './types';
import { Watcher, type WatchOptions } from './watch';
import { PUT, RANGE, type RangeAnswer } from './wire';

export type SortTarget = 'key' | 'version' | 'createRevision' | 'modRevision' | 'value';

/** Which keys an operation covers: one key (default), a prefix, [key, end) or every key >= key. */
export interface KeyRangeOptions {
  prefix?: boolean;
  end?: Bytes;
  fromKey?: boolean;
}

export interface RangeOptions extends KeyRangeOptions {
  /** At most this many keys (0 = no limit). */
  limit?: number;
  /** Read the store as of this revision (0 = now). */
  revision?: number;
  /** Served by the member alone, without a quorum round: faster, possibly stale. */
  serializable?: boolean;
  keysOnly?: boolean;
  countOnly?: boolean;
  sort?: { target?: SortTarget; order: 'ascend' | 'descend' };
  minModRevision?: number;
  maxModRevision?: number;
  minCreateRevision?: number;
  maxCreateRevision?: number;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** More keys matched than `limit` returned. */
  more: boolean;
  /** Keys in the range (unaffected by limit). */
  count: number;
  revision: number;
}

export interface PutOptions {
  /** Hex lease ID (from grantLease) that owns the key. */
  lease?: string;
  prevKv?: boolean;
  /** Keep the current value (update the lease only); fails when the key does not exist. */
  ignoreValue?: boolean;
  /** Keep the current lease; fails when the key does not exist. */
  ignoreLease?: boolean;
}
export interface PutResult {
  revision: number;
  prevKv?: KeyValue;
}

export interface DeleteOptions extends KeyRangeOptions {
  prevKv?: boolean;
}
export interface DeleteResult {
  revision: number;
  deleted: number;
  prevKvs: KeyValue[];
}

export type CompareTarget = 'value' | 'version' | 'createRevision' | 'modRevision' | 'lease';
export type CompareOp = '=' | '==' | '!=' | '<' | '>';

/** A guard: `target(key) op value`. A key that does not exist has version, createRevision and
 *  modRevision 0 and no lease, so `{ target: 'version', op: '=', value: 0 }` means "absent". */
export interface Compare extends KeyRangeOptions {
  key: Bytes;
  target: CompareTarget;
  op: CompareOp;
  /** Bytes for 'value', a hex lease ID (or 0) for 'lease', a number otherwise. */
  value: Bytes | number;
}

export type TxnOp =
  | { put: { key: Bytes; value: Bytes } & PutOptions }
  | { get: { key: Bytes } & RangeOptions }
  | { delete: { key: Bytes } & DeleteOptions }
  | { txn: TxnRequestSpec };

export type TxnOpResult = { put: PutResult } | { get: RangeResult } | { delete: DeleteResult } | { txn: TxnResult };

export interface TxnRequestSpec {
  compare?: Compare[];
  success?: TxnOp[];
  failure?: TxnOp[];
}
export interface TxnResult {
  succeeded: boolean;
  revision: number;
  responses: TxnOpResult[];
}

export interface LeaseGrant {
  id: string;
  ttl: number;
}
export interface LeaseTimeToLive {
  id: string;
  /** Remaining seconds; -1 when the lease expired or never existed. */
  ttl: number;
  grantedTtl: number;
  keys: Buffer[];
}

export interface Member {
  id: string;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export interface MemberStatus {
  endpoint: string;
  memberId: string;
  clusterId: string;
  version: string;
  dbSize: number;
  dbSizeInUse: number;
  leader: string;
  raftIndex: number;
  raftTerm: number;
  raftAppliedIndex: number;
  revision: number;
  isLearner: boolean;
  errors: string[];
}

export type PermissionType = 'read' | 'write' | 'readwrite';

const SORT_TARGET: Record<SortTarget, RangeRequest_SortTarget> = {
  key: RangeRequest_SortTarget.KEY,
  version: RangeRequest_SortTarget.VERSION,
  createRevision: RangeRequest_SortTarget.CREATE,
  modRevision: RangeRequest_SortTarget.MOD,
  value: RangeRequest_SortTarget.VALUE,
};
const COMPARE_OP: Record<CompareOp, Compare_CompareResult> = {
  '=': Compare_CompareResult.EQUAL,
  '==': Compare_CompareResult.EQUAL,
  '!=': Compare_CompareResult.NOT_EQUAL,
  '<': Compare_CompareResult.LESS,
  '>': Compare_CompareResult.GREATER,
};
const EMPTY = Buffer.alloc(0);
const ZERO_KEY = Buffer.from([0]);

function rangeEnd(key: Buffer, o: KeyRangeOptions, option: string): Buffer {
  const n = (o.prefix ? 1 : 0) + (o.end !== undefined ? 1 : 0) + (o.fromKey ? 1 : 0);
  if (n > 1) throw new EtcdArgumentError(`${option}`, 'prefix, end and fromKey exclude each other');
  if (o.prefix) return key.length === 0 ? ZERO_KEY : prefixEnd(key);
  if (o.fromKey) return ZERO_KEY;
  if (o.end !== undefined) return toBuffer(o.end, `${option}.end`, false);
  return EMPTY;
}

function checkCount(v: number | undefined, option: string): bigint {
  if (v === undefined) return 0n;
  if (!Number.isSafeInteger(v) || v < 0) throw new EtcdArgumentError(option, `must be a non-negative integer, got ${String(v)}`);
  return BigInt(v);
}

function rangeRequest(key: Bytes, o: RangeOptions = {}, option = 'range'): RangeRequest {
  const k = toBuffer(key, `${option}.key`, !!(o.prefix || o.fromKey));
  if (o.sort && !['ascend', 'descend'].includes(o.sort.order)) throw new EtcdArgumentError(`${option}.sort.order`, `must be "ascend" or "descend", got ${JSON.stringify(o.sort.order)}`);
  if (o.sort?.target !== undefined && !(o.sort.target in SORT_TARGET)) throw new EtcdArgumentError(`${option}.sort.target`, `must be one of ${Object.keys(SORT_TARGET).join(', ')}`);
  return {
    key: k.length === 0 ? ZERO_KEY : k,
    rangeEnd: rangeEnd(k, o, option),
    limit: checkCount(o.limit, `${option}.limit`),
    revision: checkRevision(o.revision, `${option}.revision`),
    sortOrder: o.sort ? (o.sort.order === 'ascend' ? RangeRequest_SortOrder.ASCEND : RangeRequest_SortOrder.DESCEND) : RangeRequest_SortOrder.NONE,
    sortTarget: o.sort ? SORT_TARGET[o.sort.target ?? 'key'] : RangeRequest_SortTarget.KEY,
    serializable: !!o.serializable,
    keysOnly: !!o.keysOnly,
    countOnly: !!o.countOnly,
    minModRevision: checkRevision(o.minModRevision, `${option}.minModRevision`),
    maxModRevision: checkRevision(o.maxModRevision, `${option}.maxModRevision`),
    minCreateRevision: checkRevision(o.minCreateRevision, `${option}.minCreateRevision`),
    maxCreateRevision: checkRevision(o.maxCreateRevision, `${option}.maxCreateRevision`),
  };
}

function putRequest(key: Bytes, value: Bytes, o: PutOptions = {}, option = 'put'): PutRequest {
  if (o.ignoreValue && value !== undefined && toBuffer(value, `${option}.value`).length > 0) throw new EtcdArgumentError(`${option}.ignoreValue`, 'cannot be combined with a value');
  if (o.ignoreLease && o.lease !== undefined) throw new EtcdArgumentError(`${option}.ignoreLease`, 'cannot be combined with lease');
  return {
    key: toBuffer(key, `${option}.key`, false),
    value: toBuffer(value ?? EMPTY, `${option}.value`),
    lease: leaseToWire(o.lease, `${option}.lease`),
    prevKv: !!o.prevKv,
    ignoreValue: !!o.ignoreValue,
    ignoreLease: !!o.ignoreLease,
  };
}

function deleteRequest(key: Bytes, o: DeleteOptions = {}, option = 'delete'): DeleteRangeRequest {
  const k = toBuffer(key, `${option}.key`, !!(o.prefix || o.fromKey));
  return { key: k.length === 0 ? ZERO_KEY : k, rangeEnd: rangeEnd(k, o, option), prevKv: !!o.prevKv };
}

function compareRequest(c: Compare, option: string): PbCompare {
  if (!c || typeof c !== 'object') throw new EtcdArgumentError(option, 'must be an object');
  const result = COMPARE_OP[c.op];
  if (result === undefined) throw new EtcdArgumentError(`${option}.op`, `must be one of = != < >, got ${JSON.stringify(c.op)}`);
  const key = toBuffer(c.key, `${option}.key`, !!(c.prefix || c.fromKey));
  const out: PbCompare = { result, target: Compare_CompareTarget.VALUE, key: key.length === 0 ? ZERO_KEY : key, rangeEnd: rangeEnd(key, c, option) };
  const num = (what: string): bigint => {
    if (typeof c.value !== 'number' || !Number.isSafeInteger(c.value)) throw new EtcdArgumentError(`${option}.value`, `must be an integer for target ${what}`);
    return BigInt(c.value);
  };
  switch (c.target) {
    case 'value': out.target = Compare_CompareTarget.VALUE; out.value = toBuffer(c.value as Bytes, `${option}.value`); break;
    case 'version': out.target = Compare_CompareTarget.VERSION; out.version = num('version'); break;
    case 'createRevision': out.target = Compare_CompareTarget.CREATE; out.createRevision = num('createRevision'); break;
    case 'modRevision': out.target = Compare_CompareTarget.MOD; out.modRevision = num('modRevision'); break;
    case 'lease': out.target = Compare_CompareTarget.LEASE; out.lease = c.value === 0 ? 0n : leaseToWire(c.value as string, `${option}.value`); break;
    default: throw new EtcdArgumentError(`${option}.target`, `must be one of value, version, createRevision, modRevision, lease; got ${JSON.stringify(c.target)}`);
  }
  return out;
}

function opRequest(op: TxnOp, option: string): RequestOp {
  if (!op || typeof op !== 'object') throw new EtcdArgumentError(option, 'must be an object');
  if ('put' in op) return { requestPut: putRequest(op.put.key, op.put.value, op.put, `${option}.put`) };
  if ('get' in op) return { requestRange: rangeRequest(op.get.key, op.get, `${option}.get`) };
  if ('delete' in op) return { requestDeleteRange: deleteRequest(op.delete.key, op.delete, `${option}.delete`) };
  if ('txn' in op) return { requestTxn: txnRequest(op.txn, `${option}.txn`) };
  throw new EtcdArgumentError(option, 'must be one of { put }, { get }, { delete }, { txn }');
}

function txnRequest(t: TxnRequestSpec, option = 'txn'): TxnRequest {
  if (!t || typeof t !== 'object') throw new EtcdArgumentError(option, 'must be an object');
  return {
    compare: (t.compare ?? []).map((c, i) => compareRequest(c, `${option}.compare[${i}]`)),
    success: (t.success ?? []).map((o, i) => opRequest(o, `${option}.success[${i}]`)),
    failure: (t.failure ?? []).map((o, i) => opRequest(o, `${option}.failure[${i}]`)),
  };
}

function rangeResult(r: RangeResponse): RangeResult {
  return { kvs: r.kvs.map(fromPbKv), more: r.more, count: Number(r.count), revision: Number(r.header?.revision ?? 0n) };
}
function putResult(r: PutResponse): PutResult {
  const out: PutResult = { revision: Number(r.header?.revision ?? 0n) };
  if (r.prevKv) out.prevKv = fromPbKv(r.prevKv);
  return out;
}
function deleteResult(r: DeleteRangeResponse): DeleteResult {
  return { revision: Number(r.header?.revision ?? 0n), deleted: Number(r.deleted), prevKvs: r.prevKvs.map(fromPbKv) };
}
function opResult(r: ResponseOp): TxnOpResult {
  if (r.responsePut) return { put: putResult(r.responsePut) };
  if (r.responseRange) return { get: rangeResult(r.responseRange) };
  if (r.responseDeleteRange) return { delete: deleteResult(r.responseDeleteRange) };
  return { txn: txnResult(r.responseTxn!) };
}
function txnResult(r: TxnResponse): TxnResult {
  return { succeeded: r.succeeded, revision: Number(r.header?.revision ?? 0n), responses: r.responses.map(opResult) };
}
function firstKv(r: RangeAnswer): KeyValue | undefined {
  return r.kvs[0];
}
function isReadOnly(t: TxnRequest): boolean {
  const ops = [...t.success, ...t.failure];
  return ops.every((o) => o.requestRange || (o.requestTxn && isReadOnly(o.requestTxn)));
}
function member(m: PbMember): Member {
  return { id: idToHex(m.ID), name: m.name, peerUrls: m.peerURLs, clientUrls: m.clientURLs, isLearner: m.isLearner };
}
function checkTtl(ttl: number, option: string): bigint {
  if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new EtcdArgumentError(option, `must be a positive integer number of seconds, got ${String(ttl)}`);
  return BigInt(ttl);
}

export class EtcdV3Client {
  /** @internal */
  readonly conn: Connection;
  private readonly watchers = new Set<Watcher>();
  private readonly keepAlives = new Set<LeaseKeepAlive>();

  constructor(opts: EtcdV3Options) {
    this.conn = new Connection(opts);
  }

  /** The endpoint calls currently go to. */
  get activeEndpoint(): string {
    return this.conn.activeEndpoint;
  }

  // ---- keys ----

  /** One key, or undefined. Linearizable unless `serializable`. */
  get(key: Bytes, o: { revision?: number; serializable?: boolean } = {}): Promise<KeyValue | undefined> {
    let req: RangeRequest;
    try {
      req = rangeRequest(key, { revision: o.revision, serializable: o.serializable }, 'get');
    } catch (e) {
      return Promise.reject(e);
    }
    return this.withCompactRevision(this.conn.unary(RANGE, req, { repeatable: true })).then(firstKv);
  }

  /** Keys of a range: `{ prefix: true }`, `{ end }` or `{ fromKey: true }`, with limit, revision,
   *  keysOnly, countOnly, sort and revision filters. */
  async range(key: Bytes, o: RangeOptions = {}): Promise<RangeResult> {
    return this.withCompactRevision(this.conn.unary(RANGE, rangeRequest(key, o), { repeatable: true }));
  }

  /** Every key starting with `prefix` (sorted by key). */
  getPrefix(prefix: Bytes, o: Omit<RangeOptions, 'prefix' | 'end' | 'fromKey'> = {}): Promise<RangeResult> {
    return this.range(prefix, { sort: { target: 'key', order: 'ascend' }, ...o, prefix: true });
  }

  async put(key: Bytes, value: Bytes, o: PutOptions = {}): Promise<PutResult> {
    return this.conn.unary(PUT, putRequest(key, value, o), { repeatable: false });
  }

  /** Deletes a key or a range (`prefix`, `end`, `fromKey`). */
  async delete(key: Bytes, o: DeleteOptions = {}): Promise<DeleteResult> {
    return deleteResult(await this.conn.unary(KVService.deleteRange, deleteRequest(key, o), { repeatable: false }));
  }

  /** Atomic compare-and-do. A read-only transaction is retried like a read. */
  async txn(t: TxnRequestSpec): Promise<TxnResult> {
    const req = txnRequest(t);
    return txnResult(await this.withCompactRevision(this.conn.unary(KVService.txn, req, { repeatable: isReadOnly(req) })));
  }

  /**
   * The revision etcd has compacted up to (0: never compacted). etcd's error for a read at a
   * compacted revision does not carry it, but a watch from revision 1 is answered with it.
   */
  async compactRevision(): Promise<number> {
    const { call } = await this.conn.bidi(WatchService.watch);
    try {
      return await new Promise<number>((resolve, reject) => {
        // etcd first confirms the watch, then (from its sync loop, every 100 ms) cancels it with
        // the compact revision; an uncompacted store never sends the second answer.
        let created = false;
        const t = setTimeout(() => (created ? resolve(0) : reject(new EtcdV3Error('no answer to the compaction probe', 4))), Math.min(1000, this.conn.requestTimeoutMs));
        call.on('data', (r: { compactRevision: bigint; created: boolean }) => {
          if (r.created) created = true;
          if (r.compactRevision > 0n) {
            clearTimeout(t);
            resolve(Number(r.compactRevision));
          }
        });
        call.on('error', (e) => { clearTimeout(t); reject(e); });
        call.write({ createRequest: { key: ZERO_KEY, rangeEnd: EMPTY, startRevision: 1n, progressNotify: false, filters: [], prevKv: false, watchId: 0n, fragment: false } });
      });
    } finally {
      call.cancel();
    }
  }

  /** etcd's "compacted" error lacks the compact revision: ask for it (failures only). */
  private withCompactRevision<T>(p: Promise<T>): Promise<T> {
    return p.catch(async (e) => {
      if (e instanceof EtcdCompactedError && e.compactRevision === 0) {
        throw new EtcdCompactedError(await this.compactRevision().catch(() => 0), e.endpoint);
      }
      throw e;
    });
  }

  /** Drops the history before `revision`; watches and reads from older revisions then fail
   *  with EtcdCompactedError. */
  async compact(revision: number, o: { physical?: boolean } = {}): Promise<void> {
    const rev = checkRevision(revision, 'revision');
    if (rev === 0n) throw new EtcdArgumentError('revision', 'must be positive');
    await this.conn.unary(KVService.compact, { revision: rev, physical: !!o.physical }, { repeatable: false });
  }

  // ---- watch ----

  /**
   * Watches a key or range from `startRevision` (default: now). Iterate the returned Watcher
   * with `for await`; it survives member failures (resumes at the next revision on another
   * endpoint, never repeating or skipping an event) and throws EtcdCompactedError when the
   * revision it needs was compacted, so the caller relists.
   */
  watch(key: Bytes, o: WatchOptions = {}): Watcher {
    const w = new Watcher(this.conn, key, o, () => this.watchers.delete(w));
    this.watchers.add(w);
    return w;
  }

  // ---- leases ----

  /** Grants a lease of `ttl` seconds (etcd may round a tiny TTL up). */
  async grantLease(ttl: number, o: { id?: string } = {}): Promise<LeaseGrant> {
    const r = await this.conn.unary(LeaseService.leaseGrant, { TTL: checkTtl(ttl, 'ttl'), ID: leaseToWire(o.id, 'id') }, { repeatable: false });
    return { id: idToHex(r.ID), ttl: Number(r.TTL) };
  }

  /** Revokes a lease; its keys are deleted. */
  async revokeLease(id: string): Promise<void> {
    await this.conn.unary(LeaseService.leaseRevoke, { ID: leaseToWire(id, 'id') }, { repeatable: true });
  }

  async leaseTimeToLive(id: string, o: { keys?: boolean } = {}): Promise<LeaseTimeToLive> {
    const r = await this.conn.unary(LeaseService.leaseTimeToLive, { ID: leaseToWire(id, 'id'), keys: !!o.keys }, { repeatable: true });
    return { id: idToHex(r.ID), ttl: Number(r.TTL), grantedTtl: Number(r.grantedTTL), keys: r.keys };
  }

  async leases(): Promise<string[]> {
    const r = await this.conn.unary(LeaseService.leaseLeases, {}, { repeatable: true });
    return r.leases.map((l) => idToHex(l.ID));
  }

  /** Renews the lease once; returns the new TTL (throws EtcdLeaseNotFoundError when gone). */
  async keepAliveOnce(id: string): Promise<number> {
    const ka = new LeaseKeepAlive(this.conn, id, { once: true });
    return ka.renewOnce();
  }

  /** Keeps the lease alive until `stop()` (or close); emits 'keepalive' (ttl) and 'lost'. */
  keepAlive(id: string, o: KeepAliveOptions = {}): LeaseKeepAlive {
    leaseToWire(id, 'id');
    const ka = new LeaseKeepAlive(this.conn, id, o, () => this.keepAlives.delete(ka));
    this.keepAlives.add(ka);
    ka.start();
    return ka;
  }

  // ---- cluster ----

  async memberList(): Promise<Member[]> {
    const r = await this.conn.unary(ClusterService.memberList, { linearizable: false }, { repeatable: true });
    return r.members.map(member);
  }

  async memberAdd(peerUrls: string[], o: { isLearner?: boolean } = {}): Promise<{ member: Member; members: Member[] }> {
    if (!Array.isArray(peerUrls) || peerUrls.length === 0) throw new EtcdArgumentError('peerUrls', 'at least one peer URL is required');
    const r = await this.conn.unary(ClusterService.memberAdd, { peerURLs: peerUrls, isLearner: !!o.isLearner }, { repeatable: false });
    return { member: member(r.member!), members: r.members.map(member) };
  }

  async memberRemove(id: string): Promise<Member[]> {
    const r = await this.conn.unary(ClusterService.memberRemove, { ID: memberIdToWire(id, 'id') }, { repeatable: false });
    return r.members.map(member);
  }

  async memberUpdate(id: string, peerUrls: string[]): Promise<Member[]> {
    if (!Array.isArray(peerUrls) || peerUrls.length === 0) throw new EtcdArgumentError('peerUrls', 'at least one peer URL is required');
    const r = await this.conn.unary(ClusterService.memberUpdate, { ID: memberIdToWire(id, 'id'), peerURLs: peerUrls }, { repeatable: false });
    return r.members.map(member);
  }

  /** Status of one endpoint (default: the active one), asked of that endpoint only. */
  async status(endpoint?: string): Promise<MemberStatus> {
    let idx = this.conn.endpoints.findIndex((e) => e.url === (endpoint ?? this.conn.activeEndpoint));
    if (idx < 0) throw new EtcdArgumentError('endpoint', `${endpoint} is not one of this client's endpoints`);
    const r = await this.conn.unary(MaintenanceService.status, {}, { repeatable: true, endpoint: idx });
    const h = r.header!;
    return {
      endpoint: this.conn.endpoints[idx].url,
      memberId: idToHex(h.memberId),
      clusterId: idToHex(h.clusterId),
      version: r.version,
      dbSize: Number(r.dbSize),
      dbSizeInUse: Number(r.dbSizeInUse),
      leader: idToHex(r.leader),
      raftIndex: Number(r.raftIndex),
      raftTerm: Number(r.raftTerm),
      raftAppliedIndex: Number(r.raftAppliedIndex),
      revision: Number(h.revision),
      isLearner: r.isLearner,
      errors: r.errors,
    };
  }

  // ---- auth administration ----

  async userAdd(name: string, password: string): Promise<void> {
    if (!name) throw new EtcdArgumentError('name', 'must not be empty');
    await this.conn.unary(AuthService.userAdd, { name, password, options: { noPassword: false } }, { repeatable: false });
  }
  async userDelete(name: string): Promise<void> {
    await this.conn.unary(AuthService.userDelete, { name }, { repeatable: false });
  }
  async userGrantRole(user: string, role: string): Promise<void> {
    await this.conn.unary(AuthService.userGrantRole, { user, role }, { repeatable: false });
  }
  async roleAdd(name: string): Promise<void> {
    if (!name) throw new EtcdArgumentError('name', 'must not be empty');
    await this.conn.unary(AuthService.roleAdd, { name }, { repeatable: false });
  }
  async roleDelete(role: string): Promise<void> {
    await this.conn.unary(AuthService.roleDelete, { role }, { repeatable: false });
  }
  /** Lets `role` read and/or write `key` (or a range: `prefix`, `end`, `fromKey`). */
  async roleGrantPermission(role: string, perm: { key: Bytes; type: PermissionType } & KeyRangeOptions): Promise<void> {
    const types: Record<PermissionType, Permission_Type> = { read: Permission_Type.READ, write: Permission_Type.WRITE, readwrite: Permission_Type.READWRITE };
    if (!(perm.type in types)) throw new EtcdArgumentError('perm.type', 'must be read, write or readwrite');
    const key = toBuffer(perm.key, 'perm.key', !!(perm.prefix || perm.fromKey));
    await this.conn.unary(AuthService.roleGrantPermission, { name: role, perm: { permType: types[perm.type], key: key.length ? key : ZERO_KEY, rangeEnd: rangeEnd(key, perm, 'perm') } }, { repeatable: false });
  }
  /** Turns authentication on (a `root` user with the `root` role must exist). */
  async authEnable(): Promise<void> {
    await this.conn.unary(AuthService.authEnable, {}, { repeatable: false });
  }
  async authDisable(): Promise<void> {
    await this.conn.unary(AuthService.authDisable, {}, { repeatable: false });
  }

  /** Stops watchers and keep-alives and closes every channel. */
  close(): void {
    for (const w of [...this.watchers]) w.cancel();
    for (const k of [...this.keepAlives]) k.stop();
    this.conn.close();
  }
}
