// PullImage from an OCI distribution registry: manifests by tag or digest (verified against the
// digest asked for or the one the registry announces), Basic and Bearer-token auth, blobs
// downloaded a few at a time into the content store, resumed with Range after a broken
// connection, and refused when the registry sends more bytes or other bytes than it declared.
// Loopback registries are reached over plain HTTP without extra flags, as Docker does.
import * as http from 'node:http';
import * as https from 'node:https';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnauthenticatedError, UnavailableError } from '@berth/common';
import { ContentMismatchError } from './content-store';
import { sha256, type Digest } from './digest';
import type { ImageRecord, ImageStore, ProgressFn } from './image-store';
import { MANIFEST_ACCEPT, parseManifestOrIndex, selectManifest, type Descriptor, type ImageManifest, type Platform } from './manifest';
import { formatReference, isLoopbackRegistry, parseReference, repoName, type Reference } from './reference';

export interface RegistryAuth {
  username?: string;
  password?: string;
  /** base64("username:password"). */
  auth?: string;
  /** Refresh token exchanged for a registry token (OAuth2). */
  identityToken?: string;
  /** Bearer token sent as it is. */
  registryToken?: string;
}

export interface RegistryConfig {
  /** Registries (host[:port]) reached over plain HTTP or unverified TLS. */
  insecureRegistries?: string[];
  /** Mirrors tried before a registry, e.g. {"docker.io": ["http://127.0.0.1:5000"]}. */
  mirrors?: Record<string, string[]>;
  /** Layers downloaded at once. Default 3. */
  concurrency?: number;
  /** Retries of a broken blob download (each resumes where it stopped). Default 3. */
  retries?: number;
}

export interface PullOptions {
  auth?: RegistryAuth;
  insecure?: boolean;
  platform?: Platform;
  onProgress?: ProgressFn;
  signal?: AbortSignal;
}

export interface PullResult {
  image: ImageRecord;
  /** "registry/repo@sha256:..." of what was pulled. */
  imageRef: string;
}

const MAX_MANIFEST = 4 * 1024 * 1024;

interface Endpoint {
  /** e.g. "http://127.0.0.1:5000" */
  base: URL;
  insecureTls: boolean;
  /** Try plain HTTP when TLS fails (insecure registries). */
  httpFallback: boolean;
  mirror: boolean;
}

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
  url: URL;
}

function send(url: URL, opts: { method?: string; headers?: Record<string, string>; insecureTls?: boolean; signal?: AbortSignal; body?: string }): Promise<Response> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(url, {
      method: opts.method ?? 'GET',
      headers: { 'user-agent': 'berth-runtime-shim', ...opts.headers },
      signal: opts.signal,
      ...(url.protocol === 'https:' ? { rejectUnauthorized: !opts.insecureTls } : {}),
    }, (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url }));
    req.setTimeout(60_000, () => req.destroy(new Error('timed out after 60 s without data')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function readBody(res: Response, max: number, what: string): Promise<Buffer> {
  const out: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > max) { res.body.destroy(); throw new FailedPreconditionError(`${what}: response larger than ${max} bytes`); }
    out.push(c as Buffer);
  }
  return Buffer.concat(out);
}

function drain(res: Response): void {
  res.body.resume();
}

/** Parses `Bearer realm="...",service="..."` (or Basic) challenges. */
export function parseChallenge(h: string | undefined): { scheme: string; params: Record<string, string> } | undefined {
  if (!h) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/.exec(h);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]))) params[p[1].toLowerCase()] = (p[2] ?? p[3]).replace(/\\(.)/g, '$1');
  return { scheme: m[1].toLowerCase(), params };
}

function basicCredentials(auth: RegistryAuth | undefined): string | undefined {
  if (!auth) return undefined;
  if (auth.username || auth.password) return Buffer.from(`${auth.username ?? ''}:${auth.password ?? ''}`).toString('base64');
  if (auth.auth) {
    const dec = Buffer.from(auth.auth, 'base64').toString('utf8');
    if (!dec.includes(':')) throw new InvalidArgumentError('auth.auth', 'expected base64("username:password")');
    return auth.auth;
  }
  return undefined;
}

/** One repository on one endpoint, with the auth state for it. */
class RepositoryClient {
  private authorization: string | undefined;

  constructor(private readonly ep: Endpoint, private readonly repository: string, private readonly auth: RegistryAuth | undefined, private readonly signal?: AbortSignal) {
    if (auth?.registryToken) this.authorization = `Bearer ${auth.registryToken}`;
  }

  private url(p: string): URL {
    return new URL(`/v2/${this.repository}/${p}`, this.ep.base);
  }

  /** A GET with the auth dance and redirects; returns the final response (any status). */
  async get(p: string, headers: Record<string, string> = {}): Promise<Response> {
    const res = await this.follow(this.url(p), headers);
    if (res.status !== 401) return res;
    drain(res);
    // Answer the challenge once (a token may also have expired midway through a pull).
    await this.authenticate(res.headers['www-authenticate']);
    const again = await this.follow(this.url(p), headers);
    if (again.status !== 401) return again;
    drain(again);
    throw new UnauthenticatedError(`registry ${this.ep.base.host} refused the credentials for ${this.repository}`);
  }

  private async follow(start: URL, headers: Record<string, string>): Promise<Response> {
    let url = start;
    for (let hops = 0; hops < 6; hops++) {
      const h = { ...headers };
      // Credentials go only to the registry itself, never to where it redirects (blob storage).
      if (this.authorization && url.host === this.ep.base.host) h.authorization = this.authorization;
      const res = await send(url, { headers: h, insecureTls: this.ep.insecureTls, signal: this.signal });
      if ([301, 302, 303, 307, 308].includes(res.status) && res.headers.location) {
        drain(res);
        const next = new URL(res.headers.location, url);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new FailedPreconditionError(`registry redirected to a ${next.protocol} URL`);
        if (url.protocol === 'https:' && next.protocol === 'http:' && !this.ep.insecureTls) throw new FailedPreconditionError('registry redirected from HTTPS to plain HTTP');
        url = next;
        continue;
      }
      return res;
    }
    throw new FailedPreconditionError(`registry ${this.ep.base.host}: too many redirects`);
  }

  private async authenticate(header: string | string[] | undefined): Promise<void> {
    const c = parseChallenge(Array.isArray(header) ? header[0] : header);
    const basic = basicCredentials(this.auth);
    if (!c) throw new UnauthenticatedError(`registry ${this.ep.base.host} asks for authentication without a challenge`);
    if (c.scheme === 'basic') {
      if (!basic) throw new UnauthenticatedError(`registry ${this.ep.base.host} needs credentials (basic auth) for ${this.repository}`);
      this.authorization = `Basic ${basic}`;
      return;
    }
    if (c.scheme !== 'bearer' || !c.params.realm) throw new UnauthenticatedError(`registry ${this.ep.base.host}: unsupported auth challenge "${c.scheme}"`);
    let realm: URL;
    try { realm = new URL(c.params.realm); } catch { throw new FailedPreconditionError(`registry ${this.ep.base.host}: bad token realm "${c.params.realm}"`); }
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && this.ep.base.protocol === 'http:')) {
      throw new FailedPreconditionError(`registry ${this.ep.base.host}: token realm ${realm.href} is not HTTPS`);
    }
    const scope = c.params.scope ?? `repository:${this.repository}:pull`;
    let res: Response;
    if (this.auth?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: this.auth.identityToken, service: c.params.service ?? '', scope, client_id: 'berth' });
      res = await send(realm, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(), insecureTls: this.ep.insecureTls, signal: this.signal });
    } else {
      if (c.params.service) realm.searchParams.set('service', c.params.service);
      realm.searchParams.set('scope', scope);
      res = await send(realm, { headers: basic ? { authorization: `Basic ${basic}` } : {}, insecureTls: this.ep.insecureTls, signal: this.signal });
    }
    const body = await readBody(res, 1024 * 1024, 'token response');
    if (res.status === 401 || res.status === 403) throw new UnauthenticatedError(`token service ${realm.host} refused ${basic ? 'the credentials' : 'anonymous access'} for ${scope}`);
    if (res.status !== 200) throw new UnavailableError(`token service ${realm.host} answered ${res.status}`);
    let tok: { token?: string; access_token?: string };
    try { tok = JSON.parse(body.toString('utf8')); } catch { throw new FailedPreconditionError(`token service ${realm.host} sent no JSON`); }
    const token = tok.token ?? tok.access_token;
    if (!token) throw new FailedPreconditionError(`token service ${realm.host} sent no token`);
    this.authorization = `Bearer ${token}`;
  }
}

function endpointsFor(ref: Reference, cfg: RegistryConfig, insecure: boolean): Endpoint[] {
  const eps: Endpoint[] = [];
  for (const m of cfg.mirrors?.[ref.registry] ?? []) {
    let u: URL;
    try { u = new URL(m); } catch { throw new InvalidArgumentError(`mirrors["${ref.registry}"]`, `"${m}" is not a URL`); }
    eps.push({ base: u, insecureTls: insecure || !!cfg.insecureRegistries?.includes(u.host), httpFallback: false, mirror: true });
  }
  const host = ref.registry === 'docker.io' ? 'registry-1.docker.io' : ref.registry;
  // Loopback registries are insecure registries without asking, as with Docker: HTTPS without
  // certificate checks first, then plain HTTP.
  const insecureHost = insecure || isLoopbackRegistry(ref.registry) || !!cfg.insecureRegistries?.includes(ref.registry);
  eps.push({ base: new URL(`https://${host}`), insecureTls: insecureHost, httpFallback: insecureHost, mirror: false });
  return eps;
}

function contentDigest(h: http.IncomingHttpHeaders): string | undefined {
  const v = h['docker-content-digest'];
  return Array.isArray(v) ? v[0] : v;
}

/** Pulls `reference` into the store and registers it; progress goes to `opts.onProgress`. */
export async function pullImage(store: ImageStore, reference: string, cfg: RegistryConfig, opts: PullOptions = {}): Promise<PullResult> {
  const ref = parseReference(reference, 'image.image');
  const platform = opts.platform ?? store.platform;
  const errors: string[] = [];
  for (const ep of endpointsFor(ref, cfg, !!opts.insecure)) {
    const tries = ep.httpFallback ? [ep, { ...ep, base: new URL(ep.base.href.replace(/^https:/, 'http:')), httpFallback: false }] : [ep];
    for (const e of tries) {
      try {
        return await pullFrom(store, e, ref, platform, cfg, opts);
      } catch (err) {
        // A mirror that fails or lacks the image passes to the next endpoint; so does a failed
        // TLS attempt of an insecure registry. Anything else (bad content, auth) is final.
        const reachable = !(err instanceof UnavailableError) && !(err instanceof NotFoundError && e.mirror);
        const tlsFailed = e.httpFallback && /EPROTO|wrong version|SSL|ECONNRESET/i.test(String((err as Error).message));
        if (reachable && !tlsFailed) throw err;
        errors.push(`${e.base.origin}: ${(err as Error).message}`);
        if (opts.signal?.aborted) throw err;
      }
    }
  }
  throw new UnavailableError(`cannot pull ${formatReference(ref)}: ${errors.join('; ')}`);
}

async function pullFrom(store: ImageStore, ep: Endpoint, ref: Reference, platform: Platform, cfg: RegistryConfig, opts: PullOptions): Promise<PullResult> {
  const client = new RepositoryClient(ep, ref.repository, opts.auth, opts.signal);
  const progress = opts.onProgress ?? (() => undefined);
  const request = async (p: string, headers: Record<string, string> = {}): Promise<Response> => {
    try {
      return await client.get(p, headers);
    } catch (err) {
      if ((err as { code?: string }).code && !(err instanceof Error && 'kind' in err)) throw new UnavailableError(`registry ${ep.base.host}: ${(err as Error).message}`, { cause: err });
      throw err;
    }
  };

  const fetchManifest = async (tagOrDigest: string, expect?: Digest): Promise<{ body: Buffer; digest: Digest; mediaType?: string }> => {
    progress({ digest: expect ?? tagOrDigest, current: 0, total: 0, status: 'resolving' });
    const res = await request(`manifests/${tagOrDigest}`, { accept: MANIFEST_ACCEPT });
    if (res.status === 404) { drain(res); throw new NotFoundError(`${repoName(ref)}:${tagOrDigest} not found in ${ep.base.host}`); }
    if (res.status >= 500 || res.status === 429) { drain(res); throw new UnavailableError(`registry ${ep.base.host} answered ${res.status} for the manifest`); }
    if (res.status !== 200) { drain(res); throw new FailedPreconditionError(`registry ${ep.base.host} answered ${res.status} for manifest ${tagOrDigest}`); }
    const body = await readBody(res, MAX_MANIFEST, `manifest ${tagOrDigest}`);
    const digest = sha256(body);
    const announced = contentDigest(res.headers);
    if (expect && digest !== expect) throw new ContentMismatchError(`manifest ${expect}: the registry sent content with digest ${digest}`);
    if (!expect && announced && announced.startsWith('sha256:') && announced !== digest) throw new ContentMismatchError(`manifest ${tagOrDigest}: the registry announced ${announced} but sent ${digest}`);
    const ct = res.headers['content-type'];
    return { body, digest, mediaType: Array.isArray(ct) ? ct[0] : ct };
  };

  return store.withCleanup(async (lease) => {
    const top = await fetchManifest(ref.digest ?? ref.tag!, ref.digest);
    lease([top.digest]);
    store.content.writeBuffer(top.body, { digest: top.digest }, 'manifest');
    let parsed = parseManifestOrIndex(top.body, top.mediaType, 'manifest');
    let manifestDigest = top.digest;
    let indexDigest: Digest | undefined;
    if (parsed.kind === 'index') {
      indexDigest = top.digest;
      const chosen = selectManifest(parsed, platform);
      const m = await fetchManifest(chosen.digest, chosen.digest);
      lease([m.digest]);
      store.content.writeBuffer(m.body, { digest: m.digest, size: chosen.size }, `manifest ${chosen.digest}`);
      parsed = parseManifestOrIndex(m.body, chosen.mediaType, `manifest ${chosen.digest}`);
      if (parsed.kind !== 'manifest') throw new FailedPreconditionError(`manifest ${chosen.digest}: an index inside an index is not supported for pulls`);
      manifestDigest = m.digest;
    }
    const manifest: ImageManifest = parsed;
    const blobs = [manifest.config, ...manifest.layers];
    lease(blobs.map((b) => b.digest));
    for (const b of manifest.layers) {
      if (b.urls?.length) throw new FailedPreconditionError(`layer ${b.digest} is a foreign layer (only at ${b.urls[0]}); Berth does not fetch from URLs a manifest names`);
    }
    // Layers download a few at a time while the ones already here are unpacked in order.
    const downloads = limited(blobs, cfg.concurrency ?? 3, (b) => downloadBlob(store, request, b, cfg.retries ?? 3, progress, ep));
    try {
      await downloads[0]; // the config: register reads it first
      const repoDigest = `${repoName(ref)}@${indexDigest ?? manifestDigest}`;
      const image = await store.register({
        manifest, manifestDigest, indexDigest, platform,
        repoTags: ref.tag ? [formatReference({ ...ref, digest: undefined })] : [],
        repoDigests: [repoDigest],
        onProgress: progress,
        layerReady: downloads.slice(1),
      });
      return { image, imageRef: repoDigest };
    } finally {
      // On failure, let the other downloads stop before the cleanup's GC runs.
      await Promise.allSettled(downloads);
    }
  });
}

/** Runs fn over items with at most `limit` at once, in order; one promise per item. After a failure the rest are skipped. */
function limited<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Array<Promise<void>> {
  let running = 0;
  let failed: unknown;
  const queue: Array<() => void> = [];
  const next = (): void => { if (running < limit && queue.length) { running++; queue.shift()!(); } };
  const out = items.map((t) => new Promise<void>((resolve, reject) => {
    queue.push(() => {
      const p = failed !== undefined ? Promise.reject(failed) : fn(t);
      p.then(resolve, (err: unknown) => { failed ??= err; reject(err); }).finally(() => { running--; next(); });
    });
  }));
  for (let i = 0; i < limit; i++) next();
  // Unobserved rejections of skipped items are expected: the first failure is what is reported.
  for (const p of out) p.catch(() => undefined);
  return out;
}

// One download per blob at a time in this process: two writers resuming the same ingest file
// would interleave their bytes.
const downloading = new Map<string, Promise<void>>();

function downloadBlob(
  store: ImageStore,
  request: (p: string, h?: Record<string, string>) => Promise<Response>,
  d: Descriptor,
  retries: number,
  progress: ProgressFn,
  ep: Endpoint,
): Promise<void> {
  const key = `${store.root}\0${d.digest}`;
  const prev = downloading.get(key) ?? Promise.resolve();
  const p = prev.catch(() => undefined).then(() => downloadOnce(store, request, d, retries, progress, ep));
  const tail = p.finally(() => { if (downloading.get(key) === tail) downloading.delete(key); });
  downloading.set(key, tail.catch(() => undefined));
  return p;
}

async function downloadOnce(
  store: ImageStore,
  request: (p: string, h?: Record<string, string>) => Promise<Response>,
  d: Descriptor,
  retries: number,
  progress: ProgressFn,
  ep: Endpoint,
): Promise<void> {
  if (store.content.has(d.digest)) { progress({ digest: d.digest, current: d.size, total: d.size, status: 'exists' }); return; }
  for (let attempt = 0; ; attempt++) {
    const w = store.content.writer({ digest: d.digest, size: d.size }, `blob ${d.digest}`, { resume: true });
    try {
      const res = await request(`blobs/${d.digest}`, w.offset > 0 ? { range: `bytes=${w.offset}-` } : {});
      if (res.status === 416 && w.offset > 0) { drain(res); w.restart(); throw new UnavailableError('range not satisfiable; restarting'); }
      if (res.status === 404) { drain(res); throw new NotFoundError(`blob ${d.digest} not found in ${ep.base.host}`); }
      if (res.status >= 500 || res.status === 429) { drain(res); throw new UnavailableError(`registry ${ep.base.host} answered ${res.status} for blob ${d.digest}`); }
      if (res.status === 206) {
        // Bytes must continue exactly where the ingest file ends.
        const m = /^bytes ([0-9]+)-/.exec(String(res.headers['content-range'] ?? ''));
        if (!m || Number(m[1]) !== w.offset) { drain(res); w.restart(); throw new UnavailableError(`registry ${ep.base.host} answered a range other than the one asked for; restarting`); }
      }
      if (res.status === 200 && w.offset > 0) w.restart(); // the registry ignored the Range
      else if (res.status !== 200 && res.status !== 206) { drain(res); throw new FailedPreconditionError(`registry ${ep.base.host} answered ${res.status} for blob ${d.digest}`); }
      const len = Number(res.headers['content-length']);
      if (Number.isFinite(len) && res.status === 200 && len !== d.size) { drain(res); throw new ContentMismatchError(`blob ${d.digest}: the registry sends ${len} bytes, the manifest declares ${d.size}`); }
      let last = 0;
      progress({ digest: d.digest, current: w.offset, total: d.size, status: 'downloading' });
      for await (const c of res.body) {
        w.write(c as Buffer);
        if (w.offset - last >= 1024 * 1024) { last = w.offset; progress({ digest: d.digest, current: w.offset, total: d.size, status: 'downloading' }); }
      }
      progress({ digest: d.digest, current: w.offset, total: d.size, status: 'verifying' });
      w.commit();
      progress({ digest: d.digest, current: d.size, total: d.size, status: 'done' });
      return;
    } catch (err) {
      const transient = !(err instanceof ContentMismatchError) && !(err instanceof NotFoundError) && !(err instanceof FailedPreconditionError) && !(err instanceof UnauthenticatedError);
      w.abort(transient);
      if (!transient || attempt >= retries) throw transient && !(err instanceof UnavailableError) ? new UnavailableError(`blob ${d.digest}: ${(err as Error).message}`, { cause: err }) : err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
    }
  }
}
