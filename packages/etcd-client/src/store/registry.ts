// The Store's domain object (kube-apiserver's registry + storage layers): validation, defaults,
// authorization, admission, optimistic concurrency, graceful deletion, quota, watch. The gRPC
// façade (server.ts) only converts requests; every rule lives here.
import { randomBytes, randomUUID } from 'node:crypto';
import { core, store } from '@berth/api';
import {
  AdmissionError,
  Authorizer,
  KINDS,
  MAX_OBJECT_BYTES,
  PolicyIndex,
  SelectorError,
  ValidationError,
  admit,
  applyDefaults,
  chargeQuota,
  encodedSize,
  forbiddenMessage,
  initialPodStatus,
  parseFieldSelector,
  parseLabelSelector,
  quotaMatchesScopes,
  quotaUsage,
  releaseQuota,
  resourceInfo,
  unwrap,
  validateObject,
  validateUpdate,
  withTypeMeta,
  type AdmissionLookups,
  type Attributes,
  type FieldSelector,
  type KindInfo,
  type LabelSelector,
  type Quantity,
  type UserInfo,
} from '@berth/apimachinery';
import {
  AlreadyExistsError,
  BerthError,
  ConflictError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
  type Logger,
} from '@berth/common';
import { RevisionCompactedError, type Guard, type Mutation, type StorageBackend, type StoredKV } from './backend';
import { fieldsOf, selectableFields } from './fields';
import { WatchHub } from './watch-hub';

export interface RegistryOptions {
  /** Key prefix of every object (default "/registry"). */
  prefix?: string;
  /** How often an idle watch with allowWatchBookmarks gets a BOOKMARK (default 5 s). */
  bookmarkIntervalMs?: number;
  /** Longest watch before the server ends it (default 30 min). */
  maxWatchSeconds?: number;
  /** Change batches per resource kept in memory for watches that start behind (default 20 000);
   *  older starting versions are read from etcd, and get 410 Expired once compacted there. */
  watchCacheSize?: number;
  logger?: Logger;
}

/** The error of a watch or list whose resourceVersion is no longer in etcd's history. */
export class ExpiredError extends BerthError {
  constructor(message: string) {
    super('FailedPrecondition', message);
  }
}

const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];
/** Finalizers of the garbage collector (Kubernetes' metav1.FinalizerDeleteDependents / FinalizerOrphanDependents). */
export const FOREGROUND_FINALIZER = 'foregroundDeletion';
export const ORPHAN_FINALIZER = 'orphan';
const RBAC_RESOURCES = ['roles', 'clusterroles', 'rolebindings', 'clusterrolebindings'];
const MAX_COMMIT_RETRIES = 200;

function nameChars(n: number): string {
  // Kubernetes' generateName alphabet: no vowels (no words), no look-alikes.
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  const b = randomBytes(n);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[b[i] % alphabet.length];
  return s;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function json(v: unknown): string {
  // The replacer reads the holder's raw value: by the time it sees `x`, Buffer's toJSON has
  // turned it into {type, data}, and a Uint8Array (after structuredClone) would not match it.
  return JSON.stringify(v, function (this: Record<string, unknown>, k, x) { const raw = this[k]; return raw instanceof Uint8Array ? Buffer.from(raw).toString('base64') : x; });
}

function resourceOf(name: string): KindInfo {
  const info = resourceInfo(name);
  if (!info) throw new NotFoundError(`the server doesn't have a resource type "${name}"`);
  return info;
}

/** INVALID_ARGUMENT carrying the field path in metadata, with Kubernetes' whole message as details. */
function invalid(field: string, message: string): BerthError {
  const e = new BerthError('InvalidArgument', message, { field });
  e.message = message;
  return e;
}

function toInvalid(err: unknown): never {
  if (err instanceof ValidationError) throw invalid(err.field, err.message);
  if (err instanceof SelectorError) throw invalid(err.field, err.message);
  if (err instanceof AdmissionError) {
    if (err.kind === 'NotFound') throw new NotFoundError(err.message);
    if (err.kind === 'Invalid') throw new InvalidArgumentError(undefined, err.message);
    throw new PermissionDeniedError(err.message);
  }
  throw err;
}

export interface Decoded {
  obj: core.Object;
  meta: core.ObjectMeta;
  kv: StoredKV;
}

export class Registry {
  readonly prefix: string;
  readonly policy = new PolicyIndex();
  readonly authorizer: Authorizer;
  private readonly bookmarkMs: number;
  private readonly maxWatchSeconds: number;
  private readonly ac = new AbortController();
  private readonly hubs = new Map<string, WatchHub>();

  constructor(readonly backend: StorageBackend, private readonly opts: RegistryOptions = {}) {
    this.prefix = (opts.prefix ?? '/registry').replace(/\/+$/, '');
    this.authorizer = new Authorizer(this.policy);
    this.bookmarkMs = opts.bookmarkIntervalMs ?? 5000;
    this.maxWatchSeconds = opts.maxWatchSeconds ?? 1800;
  }

  // ---- keys and encoding ----

  // Names and namespaces from requests become key segments: they may not hold '/', '%', or be
  // '.' / '..' (Kubernetes' path-segment rule), so no request can address another key (the v2
  // backend's keys are URL paths, where '..' would be resolved).
  private segment(field: string, v: string): string {
    if (v === '.' || v === '..' || /[/%\0]/.test(v)) throw new InvalidArgumentError(field, `Invalid value: ${JSON.stringify(v)}: may not be '.' or '..' and may not contain '/' or '%'`);
    return v;
  }

  key(info: KindInfo, namespace: string, name: string): string {
    if (!name) throw new InvalidArgumentError('metadata.name', 'Required value: name is required');
    const n = this.segment('metadata.name', name);
    return info.namespaced ? `${this.prefix}/${info.resource}/${this.segment('metadata.namespace', namespace)}/${n}` : `${this.prefix}/${info.resource}/${n}`;
  }
  collectionPrefix(info: KindInfo, namespace: string): string {
    return info.namespaced && namespace ? `${this.prefix}/${info.resource}/${this.segment('metadata.namespace', namespace)}/` : `${this.prefix}/${info.resource}/`;
  }

  decode(kv: StoredKV): Decoded {
    const obj = withTypeMeta(core.Object.decode(kv.value));
    const meta = unwrap(obj).value.metadata!;
    meta.resourceVersion = String(kv.modRevision);
    return { obj, meta, kv };
  }

  // Watchers fed by one WatchHub see the same StoredKV objects: decode each once for all of
  // them. The result is shared, so watch code treats it as read-only.
  private readonly decoded = new WeakMap<StoredKV, Decoded>();
  private decodeShared(kv: StoredKV): Decoded {
    let d = this.decoded.get(kv);
    if (!d) { d = this.decode(kv); this.decoded.set(kv, d); }
    return d;
  }

  private encode(obj: core.Object): Buffer {
    const meta = unwrap(obj).value.metadata!;
    const rv = meta.resourceVersion;
    meta.resourceVersion = '';
    try {
      return Buffer.from(core.Object.encode(obj).finish());
    } finally {
      meta.resourceVersion = rv;
    }
  }

  private async read(info: KindInfo, namespace: string, name: string): Promise<Decoded | undefined> {
    const { kv } = await this.backend.get(this.key(info, namespace, name));
    return kv ? this.decode(kv) : undefined;
  }

  // ---- lifecycle ----

  /** Ensures the system namespaces (with their default service accounts) exist and starts the RBAC cache. */
  async start(): Promise<void> {
    const system: UserInfo = { name: 'system:apiserver', groups: ['system:masters'], authenticator: 'internal' };
    for (const ns of SYSTEM_NAMESPACES) {
      try {
        await this.create(core.Object.fromPartial({ namespace: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } }), system);
      } catch (e) {
        if (!(e instanceof AlreadyExistsError)) throw e;
      }
    }
    await Promise.all(RBAC_RESOURCES.map((r) => this.followPolicy(resourceOf(r))));
  }

  close(): void {
    this.ac.abort();
    for (const h of this.hubs.values()) h.close();
  }

  private hub(info: KindInfo): WatchHub {
    let h = this.hubs.get(info.resource);
    if (!h) this.hubs.set(info.resource, (h = new WatchHub(this.backend, this.collectionPrefix(info, ''), this.opts.watchCacheSize)));
    return h;
  }

  private applyPolicy(info: KindInfo, d: Decoded | undefined, namespace: string, name: string): void {
    const o = d?.obj;
    switch (info.resource) {
      case 'clusterroles': this.policy.setClusterRole(o?.clusterRole, name); break;
      case 'clusterrolebindings': this.policy.setClusterRoleBinding(o?.clusterRoleBinding, name); break;
      case 'roles': this.policy.setRole(o?.role, namespace, name); break;
      case 'rolebindings': this.policy.setRoleBinding(o?.roleBinding, namespace, name); break;
    }
  }

  // Keeps the RBAC index in step with etcd (writes through this registry also apply at once).
  private async followPolicy(info: KindInfo): Promise<void> {
    const prefix = this.collectionPrefix(info, '');
    const list = await this.backend.list(prefix);
    for (const kv of list.kvs) { const d = this.decode(kv); this.applyPolicy(info, d, d.meta.namespace, d.meta.name); }
    let rev = list.revision;
    const loop = async () => {
      while (!this.ac.signal.aborted) {
        try {
          for await (const b of this.backend.watch(prefix, rev, this.ac.signal)) {
            for (const e of b.events) {
              const d = this.decode(e.type === 'put' ? e.kv : e.prevKv ?? e.kv);
              this.applyPolicy(info, e.type === 'put' ? d : undefined, d.meta.namespace, d.meta.name);
            }
            rev = b.revision;
          }
        } catch (err) {
          if (this.ac.signal.aborted) return;
          if (err instanceof RevisionCompactedError) {
            const l = await this.backend.list(prefix).catch(() => undefined);
            if (l) { for (const kv of l.kvs) { const d = this.decode(kv); this.applyPolicy(info, d, d.meta.namespace, d.meta.name); } rev = l.revision; }
          }
          this.opts.logger?.warn({ err: String(err), resource: info.resource }, 'RBAC watch broke; resuming');
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    };
    void loop();
  }

  // ---- authorization ----

  private async authorize(user: UserInfo, a: Attributes, pod?: core.Object): Promise<void> {
    let lookup: ((ns: string, name: string) => string | undefined) | undefined;
    if (pod) lookup = (ns, name) => (pod.pod && pod.pod.metadata?.namespace === ns && pod.pod.metadata.name === name ? pod.pod.spec?.nodeName ?? '' : undefined);
    else if (a.resource === 'pods' && a.name && user.groups.includes('system:nodes')) {
      const d = await this.read(resourceOf('pods'), a.namespace, a.name);
      lookup = () => (d ? d.obj.pod?.spec?.nodeName ?? '' : undefined);
    }
    const r = this.authorizer.authorize(user, a, lookup);
    if (!r.allowed) throw new PermissionDeniedError(forbiddenMessage(user, a, r.reason && !r.reason.startsWith('RBAC') ? r.reason : undefined));
  }

  // Approving or signing a certificate request also needs the verb on the signer (Kubernetes'
  // `signers` resource, by exact name or "<domain>/*"), so a right to update the approval
  // subresource alone cannot approve requests for every signer.
  private authorizeSigner(user: UserInfo, verb: 'approve' | 'sign', signerName: string): void {
    const names = [signerName, `${signerName.split('/')[0]}/*`];
    if (names.some((name) => this.authorizer.authorize(user, { verb, apiGroup: 'certificates.k8s.io', resource: 'signers', subresource: '', namespace: '', name }).allowed)) return;
    throw new PermissionDeniedError(`certificatesigningrequests.certificates.k8s.io is forbidden: user not permitted to ${verb} requests with signerName "${signerName}"`);
  }

  canI(user: UserInfo, req: store.CanIRequest): store.CanIResponse {
    const a: Attributes = { verb: req.verb, apiGroup: req.apiGroup, resource: req.resource, subresource: req.subresource, namespace: req.namespace, name: req.name, nonResourceURL: req.nonResourceUrl || undefined };
    const r = this.authorizer.authorize(user, a, () => undefined);
    return { allowed: r.allowed, reason: r.reason, evaluationError: r.evaluationError };
  }

  /** Admission's reads, memoised per request so they can be started together up front. */
  private lookups(): AdmissionLookups {
    const listAll = async (resource: string, ns: string) => (await this.backend.list(this.collectionPrefix(resourceOf(resource), ns))).kvs.map((kv) => this.decode(kv).obj);
    const memo = new Map<string, Promise<unknown>>();
    const once = <T>(k: string, f: () => Promise<T>): Promise<T> => {
      let p = memo.get(k) as Promise<T> | undefined;
      if (!p) { p = f(); p.catch(() => undefined); memo.set(k, p); }
      return p;
    };
    return {
      namespace: (n) => once(`ns/${n}`, async () => (await this.read(resourceOf('namespaces'), '', n))?.obj.namespace),
      limitRanges: (ns) => once(`lr/${ns}`, async () => (await listAll('limitranges', ns)).map((o) => o.limitRange!)),
      serviceAccount: (ns, n) => once(`sa/${ns}/${n}`, async () => (await this.read(resourceOf('serviceaccounts'), ns, n))?.obj.serviceAccount),
      priorityClasses: () => once('pc', async () => (await listAll('priorityclasses', '')).map((o) => o.priorityClass!)),
    };
  }

  // ---- quota ----

  /**
   * Guards and mutations that move an object's quota charge from `before` (as it counts now;
   * undefined = not stored) to `after` (undefined = removed): charged in the quotas it enters,
   * released from those it leaves (a pod leaves a Terminating/NotTerminating scope when its
   * activeDeadlineSeconds changes).
   */
  private async quotaOps(info: KindInfo, namespace: string, before: core.Object | undefined, after: core.Object | undefined, what: string): Promise<{ guards: Guard[]; mutations: Mutation[] }> {
    if (!info.namespaced || info.resource === 'events') return { guards: [], mutations: [] };
    const quotas = (await this.backend.list(this.collectionPrefix(resourceOf('resourcequotas'), namespace))).kvs.map((kv) => this.decode(kv));
    if (!quotas.length) return { guards: [], mutations: [] };
    const guards: Guard[] = [];
    const mutations: Mutation[] = [];
    for (const q of quotas) {
      const rq = q.obj.resourceQuota!;
      // A scoped quota counts only the pods in its scopes.
      const was = !!before && quotaMatchesScopes(rq, info, before);
      const is = !!after && quotaMatchesScopes(rq, info, after);
      if (was === is) continue;
      const delta: Record<string, Quantity> = quotaUsage(info, is ? after : before);
      const hard = rq.spec?.hard ?? {};
      if (!Object.keys(delta).some((k) => k in hard)) continue;
      const used = rq.status?.used ?? {};
      let next: Record<string, string>;
      try {
        next = is ? chargeQuota(rq, used, delta, what) : releaseQuota(rq, used, delta);
      } catch (e) { toInvalid(e); }
      rq.status = { hard: { ...hard }, used: next };
      guards.push({ key: q.kv.key, modRevision: q.kv.modRevision });
      mutations.push({ key: q.kv.key, value: this.encode(q.obj) });
    }
    return { guards, mutations };
  }

  /** Usage of what already exists in a namespace (and is in the quota's scopes), for a new quota's status. */
  private async currentUsage(namespace: string, quota: core.ResourceQuota): Promise<Record<string, string>> {
    const hard = quota.spec?.hard ?? {};
    const used: Record<string, string> = {};
    const fakeQuota = { spec: { hard: Object.fromEntries(Object.keys(hard).map((k) => [k, '1E'])), scopes: [], scopeSelector: undefined } } as unknown as core.ResourceQuota;
    let acc: Record<string, string> = {};
    for (const info of KINDS) {
      if (!info.namespaced || info.resource === 'events') continue;
      const kvs = (await this.backend.list(this.collectionPrefix(info, namespace))).kvs;
      for (const kv of kvs) {
        const o = this.decode(kv).obj;
        if (quotaMatchesScopes(quota, info, o)) acc = chargeQuota(fakeQuota, acc, quotaUsage(info, o), '');
      }
    }
    for (const k of Object.keys(hard)) used[k] = acc[k] ?? '0';
    return used;
  }

  // ---- operations ----

  async create(input: core.Object, user: UserInfo, o: { dryRun?: boolean } = {}): Promise<core.Object> {
    let info: KindInfo;
    let value;
    try { ({ info, value } = unwrap(input)); } catch (e) { throw new InvalidArgumentError('object', (e as Error).message.replace(/^object: /, '')); }
    const obj = withTypeMeta(input);
    const meta = (value.metadata ??= core.ObjectMeta.fromPartial({}));
    if (info.namespaced && !meta.namespace) meta.namespace = 'default';
    if (!info.namespaced) meta.namespace = '';
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${nameChars(5)}`;
    await this.authorize(user, { verb: 'create', apiGroup: info.group, resource: info.resource, subresource: '', namespace: meta.namespace, name: meta.name });
    meta.uid = randomUUID();
    meta.creationTimestamp = now();
    meta.resourceVersion = '';
    meta.generation = 1;
    meta.deletionTimestamp = '';
    meta.deletionGracePeriodSeconds = undefined;
    // Status is the server's (and the kubelet's) to write: a new pod starts Pending, a new
    // namespace Active, whatever the request said (Kubernetes' PrepareForCreate).
    if (obj.pod) obj.pod.status = undefined;
    if (obj.namespace) obj.namespace.status = undefined;
    // Who asks for a certificate is the caller, never what the request says (the approver and
    // the signer decide on it).
    const csr = obj.certificateSigningRequest;
    if (csr) {
      csr.status = undefined;
      csr.spec ??= core.CertificateSigningRequestSpec.fromPartial({});
      csr.spec.username = user.name;
      csr.spec.uid = user.uid ?? '';
      csr.spec.groups = [...user.groups];
      csr.spec.extra = {};
    }
    const look = this.lookups();
    if (info.namespaced) {
      // Start every read admission will need at once instead of one after another.
      void look.namespace(meta.namespace);
      if (obj.pod) {
        void look.limitRanges(meta.namespace);
        void look.serviceAccount(meta.namespace, obj.pod.spec?.serviceAccountName || 'default');
        void look.priorityClasses();
      }
    }
    try {
      applyDefaults(obj);
      validateObject(obj);
      await admit({ operation: 'CREATE', info, subresource: '', namespace: meta.namespace, name: meta.name, object: obj, old: undefined, user }, look);
      if (obj.pod) initialPodStatus(obj.pod); // admission may change resources (LimitRanger)
      validateObject(obj);
    } catch (e) { toInvalid(e); }
    if (obj.resourceQuota) {
      const hard = obj.resourceQuota.spec?.hard ?? {};
      obj.resourceQuota.status = { hard: { ...hard }, used: await this.currentUsage(meta.namespace, obj.resourceQuota) };
    }
    const size = encodedSize(obj);
    if (size > MAX_OBJECT_BYTES) throw new InvalidArgumentError(undefined, `${info.resource} "${meta.name}" is too large: ${size} bytes, the limit is ${MAX_OBJECT_BYTES} (1.5 MiB)`);
    const key = this.key(info, meta.namespace, meta.name);
    const what = `${info.resource} "${meta.name}"`;
    for (let attempt = 0; ; attempt++) {
      const q = await this.quotaOps(info, meta.namespace, undefined, obj, what);
      if (o.dryRun) return obj;
      const r = await this.backend.commit([{ key, modRevision: 0 }, ...q.guards], [{ key, value: this.encode(obj) }, ...q.mutations]);
      if (r.ok) {
        meta.resourceVersion = String(r.revision);
        break;
      }
      const cur = await this.backend.get(key);
      if (cur.kv) throw new AlreadyExistsError(`${info.resource} "${meta.name}" already exists`);
      if (attempt >= MAX_COMMIT_RETRIES) throw new ConflictError(`Operation cannot be fulfilled on ${what}: too much contention on resource quota`);
    }
    if (RBAC_RESOURCES.includes(info.resource)) this.applyPolicy(info, { obj, meta, kv: undefined as unknown as StoredKV }, meta.namespace, meta.name);
    if (obj.namespace) await this.ensureDefaultServiceAccount(meta.name);
    return obj;
  }

  private async ensureDefaultServiceAccount(namespace: string): Promise<void> {
    const info = resourceOf('serviceaccounts');
    const sa = core.Object.fromPartial({ serviceAccount: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace, uid: randomUUID(), creationTimestamp: now(), generation: 1 } } });
    const key = this.key(info, namespace, 'default');
    await this.backend.commit([{ key, modRevision: 0 }], [{ key, value: this.encode(sa) }]);
  }

  async get(req: store.GetRequest, user: UserInfo): Promise<core.Object> {
    const info = resourceOf(req.resource);
    const ns = info.namespaced ? req.namespace || 'default' : '';
    const atLeast = minResourceVersion(req.resourceVersion);
    const { kv, revision } = await this.backend.get(this.key(info, ns, req.name));
    const d = kv ? this.decode(kv) : undefined;
    await this.authorize(user, { verb: 'get', apiGroup: info.group, resource: info.resource, subresource: '', namespace: ns, name: req.name }, d?.obj ?? core.Object.fromPartial({}));
    tooLarge(atLeast, revision);
    if (!d) throw new NotFoundError(`${info.resource} "${req.name}" not found`);
    return d.obj;
  }

  parseSelectors(info: KindInfo, label: string, field: string): { labels: LabelSelector; fields: FieldSelector } {
    try {
      return { labels: parseLabelSelector(label), fields: parseFieldSelector(field, selectableFields(info)) };
    } catch (e) { toInvalid(e); }
  }

  matches(d: Decoded, namespace: string, labels: LabelSelector, fields: FieldSelector): boolean {
    if (namespace && d.meta.namespace !== namespace) return false;
    if (!labels.isEmpty() && !labels.matches(d.meta.labels)) return false;
    if (!fields.isEmpty() && !fields.matches(fieldsOf(d.obj, d.meta))) return false;
    return true;
  }

  async list(req: store.ListRequest, user: UserInfo): Promise<store.ListResponse> {
    const info = resourceOf(req.resource);
    const ns = info.namespaced ? req.namespace : '';
    await this.authorize(user, { verb: 'list', apiGroup: info.group, resource: info.resource, subresource: '', namespace: ns, name: '', fieldSelector: req.fieldSelector });
    const { labels, fields } = this.parseSelectors(info, req.labelSelector, req.fieldSelector);
    if (req.limit < 0) throw new InvalidArgumentError('limit', 'must be greater than or equal to 0');
    const atLeast = minResourceVersion(req.resourceVersion);
    const prefix = this.collectionPrefix(info, ns);
    let startKey = prefix;
    let revision = 0;
    if (req.continue) {
      try {
        const c = JSON.parse(Buffer.from(req.continue, 'base64url').toString()) as { rv: number; start: string };
        if (!c.start.startsWith(prefix) || !Number.isSafeInteger(c.rv)) throw new Error('mismatch');
        startKey = c.start;
        revision = c.rv;
      } catch {
        throw new InvalidArgumentError('continue', 'invalid continue token');
      }
    }
    const limit = req.limit;
    const items: core.Object[] = [];
    let more = false;
    let nextKey = '';
    try {
      for (;;) {
        const page = await this.backend.list(prefix, { startKey, limit: limit ? Math.max(limit - items.length, 50) : 0, revision });
        revision = page.revision;
        let i = 0;
        for (; i < page.kvs.length; i++) {
          const kv = page.kvs[i];
          if (limit && items.length >= limit) { more = true; nextKey = kv.key; break; }
          const d = this.decode(kv);
          if (this.matches(d, ns, labels, fields)) items.push(d.obj);
        }
        if (more) break;
        if (!page.more) break;
        startKey = `${page.kvs[page.kvs.length - 1].key}\0`;
        if (limit && items.length >= limit) { more = true; nextKey = startKey; break; }
      }
    } catch (e) {
      if (e instanceof RevisionCompactedError) throw new ExpiredError('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      throw e;
    }
    if (!req.continue) tooLarge(atLeast, revision);
    return {
      items,
      resourceVersion: String(revision),
      continue: more ? Buffer.from(JSON.stringify({ rv: revision, start: nextKey })).toString('base64url') : '',
      remainingItemCount: undefined,
    };
  }

  async update(input: core.Object, user: UserInfo, o: { dryRun?: boolean } = {}): Promise<core.Object> {
    return this.write(input, user, '', o);
  }

  /** `subresource` "approval": only the Approved/Denied conditions of a certificate request. */
  async updateStatus(input: core.Object, user: UserInfo, o: { dryRun?: boolean; subresource?: string } = {}): Promise<core.Object> {
    const sub = o.subresource || 'status';
    if (sub !== 'status' && sub !== 'approval') throw new InvalidArgumentError('subresource', `Unsupported value: ${JSON.stringify(sub)}: supported values: "status", "approval"`);
    return this.write(input, user, sub, o);
  }

  private async write(input: core.Object, user: UserInfo, subresource: '' | 'status' | 'approval', o: { dryRun?: boolean }): Promise<core.Object> {
    let info: KindInfo;
    let value;
    try { ({ info, value } = unwrap(input)); } catch (e) { throw new InvalidArgumentError('object', (e as Error).message.replace(/^object: /, '')); }
    withTypeMeta(input);
    const meta = value.metadata;
    if (!meta?.name) throw new InvalidArgumentError('metadata.name', 'Required value');
    const ns = info.namespaced ? meta.namespace || 'default' : '';
    meta.namespace = ns;
    if (subresource === 'status' && !info.hasStatus) throw new NotFoundError(`${info.resource} has no status subresource`);
    if (subresource === 'approval' && info.resource !== 'certificatesigningrequests') throw new NotFoundError(`${info.resource} has no approval subresource`);
    const what = `${info.resource} "${meta.name}"`;
    for (;;) {
      const old = await this.read(info, ns, meta.name);
      await this.authorize(user, { verb: 'update', apiGroup: info.group, resource: info.resource, subresource, namespace: ns, name: meta.name }, old?.obj ?? core.Object.fromPartial({}));
      if (!old) throw new NotFoundError(`${what} not found`);
      const signer = old.obj.certificateSigningRequest?.spec?.signerName;
      if (signer !== undefined && subresource !== '') this.authorizeSigner(user, subresource === 'approval' ? 'approve' : 'sign', signer);
      const wantRv = meta.resourceVersion;
      if (wantRv && wantRv !== old.meta.resourceVersion) {
        throw new ConflictError(`Operation cannot be fulfilled on ${what}: the object has been modified; please apply your changes to the latest version and try again`);
      }
      const next = this.merge(info, old, input, subresource);
      const nv = unwrap(next).value;
      const nm = nv.metadata!;
      try {
        applyDefaults(next);
        if (next.pod && subresource === '') next.pod.status = old.obj.pod!.status;
        validateUpdate(next, old.obj);
        await admit({ operation: 'UPDATE', info, subresource, namespace: ns, name: meta.name, object: next, old: old.obj, user }, this.lookups());
      } catch (e) { toInvalid(e); }
      const size = encodedSize(next);
      if (size > MAX_OBJECT_BYTES) throw new InvalidArgumentError(undefined, `${what} is too large: ${size} bytes, the limit is ${MAX_OBJECT_BYTES} (1.5 MiB)`);
      if (o.dryRun) return next;
      const key = old.kv.key;
      // A marked object whose last finalizer went away (and whose grace is over) is removed now.
      const finalize = !!nm.deletionTimestamp && nm.finalizers.length === 0 && (!next.pod || (nm.deletionGracePeriodSeconds ?? 0) === 0);
      // A pod that reaches Succeeded/Failed stops counting against quota (as Kubernetes' quota
      // controller does), in the same commit as its status.
      const terminal = (p: core.Pod | undefined) => p?.status?.phase === 'Succeeded' || p?.status?.phase === 'Failed';
      const finished = !finalize && !!next.pod && terminal(next.pod) && !terminal(old.obj.pod);
      const rescoped = !!next.pod && subresource === '' && next.pod.spec?.activeDeadlineSeconds !== old.obj.pod?.spec?.activeDeadlineSeconds;
      const q = finalize || finished ? await this.quotaOps(info, ns, old.obj, undefined, what) : rescoped ? await this.quotaOps(info, ns, old.obj, next, what) : { guards: [], mutations: [] };
      const r = await this.backend.commit([{ key, modRevision: old.kv.modRevision }, ...q.guards], finalize ? [{ key, delete: true }, ...q.mutations] : [{ key, value: this.encode(next) }, ...q.mutations]);
      if (!r.ok) {
        if (wantRv) throw new ConflictError(`Operation cannot be fulfilled on ${what}: the object has been modified; please apply your changes to the latest version and try again`);
        continue; // an unconditional update retries on the latest version
      }
      nm.resourceVersion = String(r.revision);
      if (RBAC_RESOURCES.includes(info.resource)) this.applyPolicy(info, finalize ? undefined : { obj: next, meta: nm, kv: undefined as unknown as StoredKV }, ns, nm.name);
      return next;
    }
  }

  /** The new stored state: the caller's spec/metadata (or status) over the server-owned fields. */
  private merge(info: KindInfo, old: Decoded, input: core.Object, subresource: '' | 'status' | 'approval'): core.Object {
    if (old.obj.certificateSigningRequest && subresource !== '') {
      // Approval decides Approved/Denied only; status writes (the signer) everything else.
      const next = structuredClone(old.obj);
      const ns = (next.certificateSigningRequest!.status ??= core.CertificateSigningRequestStatus.fromPartial({}));
      const is = input.certificateSigningRequest?.status ?? core.CertificateSigningRequestStatus.fromPartial({});
      const approval = (c: core.CertificateSigningRequestCondition) => c.type === 'Approved' || c.type === 'Denied';
      if (subresource === 'approval') ns.conditions = [...ns.conditions.filter((c) => !approval(c)), ...is.conditions.filter(approval)];
      else {
        ns.conditions = [...ns.conditions.filter(approval), ...is.conditions.filter((c) => !approval(c))];
        ns.certificate = is.certificate;
      }
      return next;
    }
    if (subresource === 'status') {
      const next = structuredClone(old.obj);
      const nv = unwrap(next).value;
      const iv = unwrap(input).value;
      const st = iv.status as { qosClass?: string } | undefined;
      if (next.pod && st && !st.qosClass) st.qosClass = next.pod.status?.qosClass ?? '';
      nv.status = iv.status;
      return next;
    }
    const next = structuredClone(input);
    const nv = unwrap(next).value;
    const ov = unwrap(old.obj).value;
    const nm = nv.metadata!;
    const om = ov.metadata!;
    nm.uid = om.uid;
    nm.creationTimestamp = om.creationTimestamp;
    nm.generateName = om.generateName;
    nm.deletionTimestamp = om.deletionTimestamp;
    nm.deletionGracePeriodSeconds = om.deletionGracePeriodSeconds;
    if (info.hasStatus) nv.status = ov.status;
    nm.generation = json(nv.spec) !== json(ov.spec) || (!('spec' in nv) && json(stripMeta(nv)) !== json(stripMeta(ov))) ? om.generation + 1 : om.generation;
    return next;
  }

  async delete(req: store.DeleteRequest, user: UserInfo): Promise<core.Object> {
    const info = resourceOf(req.resource);
    const ns = info.namespaced ? req.namespace || 'default' : '';
    const what = `${info.resource} "${req.name}"`;
    if (req.propagationPolicy && !['Orphan', 'Background', 'Foreground'].includes(req.propagationPolicy)) throw new InvalidArgumentError('propagationPolicy', `Unsupported value: "${req.propagationPolicy}": supported values: "Orphan", "Background", "Foreground"`);
    if (req.gracePeriodSeconds !== undefined && req.gracePeriodSeconds < 0) throw new InvalidArgumentError('gracePeriodSeconds', 'must be greater than or equal to 0');
    for (;;) {
      const old = await this.read(info, ns, req.name);
      await this.authorize(user, { verb: 'delete', apiGroup: info.group, resource: info.resource, subresource: '', namespace: ns, name: req.name }, old?.obj ?? core.Object.fromPartial({}));
      if (!old) throw new NotFoundError(`${what} not found`);
      const pre = req.preconditions;
      if (pre?.uid !== undefined && pre.uid !== old.meta.uid) throw new FailedPreconditionError(`Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.meta.uid}`);
      if (pre?.resourceVersion !== undefined && pre.resourceVersion !== old.meta.resourceVersion) throw new FailedPreconditionError(`Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.meta.resourceVersion}`);
      try {
        await admit({ operation: 'DELETE', info, subresource: '', namespace: ns, name: req.name, object: undefined, old: old.obj, user }, this.lookups());
      } catch (e) { toInvalid(e); }
      if (req.dryRun) return old.obj;
      if (info.kind === 'Namespace') return this.deleteNamespace(old);
      const next = structuredClone(old.obj);
      const nm = unwrap(next).value.metadata!;
      let grace = 0;
      const pod = next.pod;
      if (pod) {
        grace = req.gracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
        // An unscheduled or finished pod has nothing to stop: it goes at once.
        if (!pod.spec?.nodeName || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') grace = 0;
      }
      // Foreground and Orphan hand the object to the garbage collector through a finalizer: it
      // deletes the dependents (or frees them) first, then drops the finalizer and the object goes.
      const policyFinalizer = req.propagationPolicy === 'Foreground' ? FOREGROUND_FINALIZER : req.propagationPolicy === 'Orphan' ? ORPHAN_FINALIZER : undefined;
      let finalizerChanged = false;
      if (policyFinalizer) {
        const rest = nm.finalizers.filter((f) => f !== FOREGROUND_FINALIZER && f !== ORPHAN_FINALIZER);
        finalizerChanged = !nm.finalizers.includes(policyFinalizer) || rest.length !== nm.finalizers.length - 1;
        nm.finalizers = [...rest, policyFinalizer];
      }
      const graceful = grace > 0;
      if (graceful || nm.finalizers.length) {
        const shorter = !nm.deletionTimestamp || (nm.deletionGracePeriodSeconds ?? 0) > grace;
        // Already marked with a grace period at least this short: nothing changes.
        if (!shorter && !finalizerChanged && !(grace === 0 && nm.finalizers.length === 0)) return old.obj;
        if (!(grace === 0 && nm.finalizers.length === 0)) {
          if (shorter) {
            nm.deletionTimestamp = new Date(Date.now() + grace * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
            nm.deletionGracePeriodSeconds = grace;
          }
          const r = await this.backend.commit([{ key: old.kv.key, modRevision: old.kv.modRevision }], [{ key: old.kv.key, value: this.encode(next) }]);
          if (!r.ok) continue;
          nm.resourceVersion = String(r.revision);
          return next;
        }
      }
      const q = await this.quotaOps(info, ns, old.obj, undefined, what);
      const r = await this.backend.commit([{ key: old.kv.key, modRevision: old.kv.modRevision }, ...q.guards], [{ key: old.kv.key, delete: true }, ...q.mutations]);
      if (!r.ok) continue;
      if (RBAC_RESOURCES.includes(info.resource)) this.applyPolicy(info, undefined, ns, req.name);
      return old.obj;
    }
  }

  // Namespace deletion: mark Terminating (no new content), remove everything in it, then it.
  private async deleteNamespace(old: Decoded): Promise<core.Object> {
    const name = old.meta.name;
    const next = structuredClone(old.obj);
    const ns = next.namespace!;
    ns.metadata!.deletionTimestamp = now();
    ns.metadata!.deletionGracePeriodSeconds = 0;
    ns.status = { phase: 'Terminating', conditions: ns.status?.conditions ?? [] };
    const r = await this.backend.commit([{ key: old.kv.key, modRevision: old.kv.modRevision }], [{ key: old.kv.key, value: this.encode(next) }]);
    if (!r.ok) throw new ConflictError(`Operation cannot be fulfilled on namespaces "${name}": the object has been modified; please apply your changes to the latest version and try again`);
    for (const info of KINDS) {
      if (!info.namespaced) continue;
      const prefix = this.collectionPrefix(info, name);
      for (const kv of (await this.backend.list(prefix)).kvs) {
        await this.backend.commit([{ key: kv.key, modRevision: kv.modRevision }], [{ key: kv.key, delete: true }]);
        if (RBAC_RESOURCES.includes(info.resource)) { const d = this.decode(kv); this.applyPolicy(info, undefined, name, d.meta.name); }
      }
    }
    const cur = await this.backend.get(old.kv.key);
    if (cur.kv) await this.backend.commit([{ key: cur.kv.key, modRevision: cur.kv.modRevision }], [{ key: cur.kv.key, delete: true }]);
    ns.metadata!.resourceVersion = String(r.revision);
    return next;
  }

  async bind(req: store.BindRequest, user: UserInfo): Promise<core.Object> {
    const info = resourceOf('pods');
    const ns = req.namespace || 'default';
    await this.authorize(user, { verb: 'create', apiGroup: '', resource: 'pods', subresource: 'binding', namespace: ns, name: req.name });
    if (!req.nodeName) throw new InvalidArgumentError('target.name', 'Required value');
    const what = `pods "${req.name}"`;
    for (;;) {
      const old = await this.read(info, ns, req.name);
      if (!old) throw new NotFoundError(`${what} not found`);
      if (req.uid && req.uid !== old.meta.uid) throw new ConflictError(`Operation cannot be fulfilled on ${what}: the UID in the binding (${req.uid}) does not match the pod's (${old.meta.uid})`);
      if (req.resourceVersion && req.resourceVersion !== old.meta.resourceVersion) throw new ConflictError(`Operation cannot be fulfilled on ${what}: the object has been modified; please apply your changes to the latest version and try again`);
      const pod = structuredClone(old.obj);
      const p = pod.pod!;
      if (p.spec!.nodeName) throw new ConflictError(`Operation cannot be fulfilled on ${what}: pod ${req.name} is already assigned to node "${p.spec!.nodeName}"`);
      if (p.metadata!.deletionTimestamp) throw new ConflictError(`Operation cannot be fulfilled on ${what}: pod ${req.name} is being deleted, cannot be assigned to a host`);
      p.spec!.nodeName = req.nodeName;
      const conds = p.status!.conditions.filter((c) => c.type !== 'PodScheduled');
      conds.push({ type: 'PodScheduled', status: 'True', lastProbeTime: '', lastTransitionTime: now(), reason: '', message: '' });
      p.status!.conditions = conds;
      const r = await this.backend.commit([{ key: old.kv.key, modRevision: old.kv.modRevision }], [{ key: old.kv.key, value: this.encode(pod) }]);
      if (!r.ok) {
        if (req.resourceVersion) throw new ConflictError(`Operation cannot be fulfilled on ${what}: the object has been modified; please apply your changes to the latest version and try again`);
        continue;
      }
      p.metadata!.resourceVersion = String(r.revision);
      return pod;
    }
  }

  // ---- watch ----

  async *watch(req: store.WatchRequest, user: UserInfo, signal: AbortSignal): AsyncGenerator<store.WatchEvent> {
    const info = resourceOf(req.resource);
    const ns = info.namespaced ? req.namespace : '';
    await this.authorize(user, { verb: 'watch', apiGroup: info.group, resource: info.resource, subresource: '', namespace: ns, name: '', fieldSelector: req.fieldSelector });
    const { labels, fields } = this.parseSelectors(info, req.labelSelector, req.fieldSelector);
    const ac = new AbortController();
    const stop = () => ac.abort();
    signal.addEventListener('abort', stop, { once: true });
    if (signal.aborted) stop(); // 'abort' has fired already and will not again
    const timeout = Math.min(req.timeoutSeconds ?? this.maxWatchSeconds, this.maxWatchSeconds);
    const timer = setTimeout(stop, timeout * 1000);
    const prefix = this.collectionPrefix(info, ns);
    const bookmark = (rv: number, initialEnd = false): store.WatchEvent => {
      const o = core.Object.fromPartial({ [info.field]: { apiVersion: info.apiVersion, kind: info.kind, metadata: { resourceVersion: String(rv), annotations: initialEnd ? { 'k8s.io/initial-events-end': 'true' } : {} } } } as Parameters<typeof core.Object.fromPartial>[0]);
      return { type: 'BOOKMARK', object: o, error: undefined };
    };
    try {
      let after: number;
      const rv = req.resourceVersion;
      const initial = req.sendInitialEvents ?? (rv === '' || rv === '0');
      if (rv !== '' && rv !== '0' && !/^\d+$/.test(rv)) throw new InvalidArgumentError('resourceVersion', `invalid resource version ${JSON.stringify(rv)}`);
      if (initial) {
        const l = await this.backend.list(prefix);
        for (const kv of l.kvs) {
          const d = this.decode(kv);
          if (this.matches(d, ns, labels, fields)) yield { type: 'ADDED', object: d.obj, error: undefined };
        }
        after = l.revision;
        if (req.sendInitialEvents && req.allowWatchBookmarks) yield bookmark(after, true);
      } else {
        after = Number(rv);
      }
      let lastSent = after;
      let lastBookmarkAt = Date.now();
      const iter = this.hub(info).watch(prefix, after, ac.signal)[Symbol.asyncIterator]();
      let tick: NodeJS.Timeout | undefined;
      for (;;) {
        // Wake up for bookmarks even when etcd is quiet.
        const next = iter.next();
        let res: IteratorResult<Awaited<ReturnType<typeof iter.next>>['value']> | 'tick';
        if (req.allowWatchBookmarks) {
          res = await Promise.race([next, new Promise<'tick'>((r) => { tick = setTimeout(() => r('tick'), this.bookmarkMs); })]);
          clearTimeout(tick);
          while (res === 'tick') {
            if (lastSent > 0) yield bookmark(lastSent);
            lastBookmarkAt = Date.now();
            res = await Promise.race([next, new Promise<'tick'>((r) => { tick = setTimeout(() => r('tick'), this.bookmarkMs); })]);
            clearTimeout(tick);
          }
        } else {
          res = await next;
        }
        if (res.done) break;
        const batch = res.value;
        for (const e of batch.events) {
          const cur = e.type === 'put' ? this.decodeShared(e.kv) : undefined;
          const prev = e.prevKv ? this.decodeShared(e.prevKv) : undefined;
          const curOk = cur ? this.matches(cur, ns, labels, fields) : false;
          const prevOk = prev ? this.matches(prev, ns, labels, fields) : false;
          let out: store.WatchEvent | undefined;
          if (e.type === 'delete') {
            if (prevOk) {
              const gone = structuredClone(prev!.obj); // the shared copy stays untouched
              unwrap(gone).value.metadata!.resourceVersion = String(e.kv.modRevision);
              out = { type: 'DELETED', object: gone, error: undefined };
            }
          } else if (curOk && prevOk) out = { type: 'MODIFIED', object: cur!.obj, error: undefined };
          else if (curOk) out = { type: 'ADDED', object: cur!.obj, error: undefined };
          else if (prevOk) out = { type: 'DELETED', object: cur!.obj, error: undefined };
          if (out) yield out;
        }
        if (batch.revision > lastSent) lastSent = batch.revision;
        if (req.allowWatchBookmarks && Date.now() - lastBookmarkAt >= this.bookmarkMs) {
          yield bookmark(lastSent);
          lastBookmarkAt = Date.now();
        }
      }
    } catch (e) {
      if (e instanceof RevisionCompactedError) {
        yield { type: 'ERROR', object: undefined, error: { apiVersion: 'v1', kind: 'Status', metadata: undefined, status: 'Failure', message: `too old resource version: ${e.requested} (${e.compacted})`, reason: 'Expired', details: undefined, code: 410 } };
        return;
      }
      if (ac.signal.aborted) return;
      throw e;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', stop);
      ac.abort();
    }
  }
}

// Reads are always from etcd's latest state, which satisfies "" (latest), "0" (any) and "at
// least N" alike; a version the store has not reached yet is Kubernetes' "Too large resource
// version" (retryable), and anything else is not a resource version.
function minResourceVersion(rv: string): number {
  if (rv === '' || rv === '0') return 0;
  if (!/^\d+$/.test(rv)) throw new InvalidArgumentError('resourceVersion', `invalid resource version ${JSON.stringify(rv)}`);
  return Number(rv);
}

function tooLarge(atLeast: number, revision: number): void {
  if (atLeast > revision) throw new UnavailableError(`Too large resource version: ${atLeast}, current resource version: ${revision}`);
}

function stripMeta(v: object): object {
  const { metadata: _m, apiVersion: _a, kind: _k, ...rest } = v as Record<string, unknown>;
  void _m; void _a; void _k;
  return rest;
}

export { SYSTEM_NAMESPACES };
