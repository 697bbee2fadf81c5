// The v2 client's HTTP transport: keep-alive connections per endpoint, a header timeout, basic
// auth, TLS, and failover. A request is sent to the next endpoint when the current one refused
// the connection (nothing was sent) or, for GETs, after any transport failure. A write that
// failed after it was sent may have been applied, so it is reported, never replayed elsewhere.
import * as http from 'node:http';
import * as https from 'node:https';
import { EtcdArgumentError } from '../v3/errors';
import { readPem } from '../v3/types';
import { EtcdClusterUnavailableError, EtcdError, EtcdHttpError } from './errors';
import { H1Pool, type H1Error } from './http1';

export interface EtcdV2Tls {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  servername?: string;
}

export interface EtcdV2Options {
  /** `http://host:port` or `https://host:port`. */
  endpoints: string[];
  tls?: EtcdV2Tls;
  /** v2 auth user (sent as HTTP basic auth). */
  auth?: { username: string; password: string };
  /** Time to wait for response headers of a request (not of a watch), ms. Default 5000. */
  headerTimeoutMs?: number;
  /** Connections kept per endpoint. Default V2_MAX_SOCKETS (128). */
  maxSockets?: number;
}

export interface HttpResult {
  status: number;
  /** X-Etcd-Index, X-Raft-Index, X-Raft-Term, X-Etcd-Cluster-Id (0 or '' when absent). */
  etcd: EtcdHeaders;
  body: string;
  endpoint: string;
}

export interface EtcdHeaders {
  etcdIndex: number;
  raftIndex: number;
  raftTerm: number;
  clusterId: string;
}

/**
 * The etcd headers, read straight from the raw header list. Node builds `res.headers` lazily,
 * on first use, and building it cost more client CPU than everything else the client adds to a
 * request (about 5 % of a call against a fast server); only these four are ever needed.
 */
export function etcdHeaders(raw: string[]): EtcdHeaders {
  const h: EtcdHeaders = { etcdIndex: 0, raftIndex: 0, raftTerm: 0, clusterId: '' };
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i];
    // All four start with "x-" and are 11-17 characters long: skip the rest without lowercasing.
    if (name.length < 11 || name.length > 17 || (name.charCodeAt(0) | 0x20) !== 0x78) continue;
    switch (name.toLowerCase()) {
      case 'x-etcd-index': h.etcdIndex = Number(raw[i + 1]); break;
      case 'x-raft-index': h.raftIndex = Number(raw[i + 1]); break;
      case 'x-raft-term': h.raftTerm = Number(raw[i + 1]); break;
      case 'x-etcd-cluster-id': h.clusterId = raw[i + 1]; break;
    }
  }
  return h;
}

export interface RequestSpec {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  path: string;
  body?: string;
  contentType?: string;
  /** Long poll: no header timeout. */
  watch?: boolean;
  signal?: AbortSignal;
  /** Send to this endpoint only (no failover). */
  endpoint?: number;
}

/** Default keep-alive connections per endpoint. */
export const V2_MAX_SOCKETS = 128;

const NOT_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);

class TransportError extends Error {
  constructor(message: string, readonly notSent: boolean, readonly code?: string) {
    super(message);
  }
}

interface Endpoint {
  url: string;
  host: string;
  port: number;
  secure: boolean;
}

export class Transport {
  readonly endpoints: Endpoint[];
  private pinned = 0;
  /** Request/response calls: Berth's own HTTP/1.1 keep-alive pools, one per endpoint (http1.ts). */
  private readonly pools: H1Pool[];
  /** Long polls hold a connection each: they get their own unbounded pools so that many
   *  watches never queue requests behind them (or each other). */
  private readonly watchHttpAgent: http.Agent;
  private readonly watchHttpsAgent: https.Agent | undefined;
  private readonly authHeader: string | undefined;
  private readonly authLine: string;
  readonly headerTimeoutMs: number;

  constructor(opts: EtcdV2Options) {
    if (!opts || !Array.isArray(opts.endpoints) || opts.endpoints.length === 0) throw new EtcdArgumentError('endpoints', 'at least one endpoint is required');
    this.endpoints = opts.endpoints.map((raw, i) => {
      let u: URL;
      try {
        u = new URL(raw);
      } catch {
        throw new EtcdArgumentError(`endpoints[${i}]`, `${JSON.stringify(raw)} is not a URL like http://127.0.0.1:2379`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new EtcdArgumentError(`endpoints[${i}]`, `scheme ${u.protocol} is not http or https`);
      if (u.pathname !== '/' || u.search) throw new EtcdArgumentError(`endpoints[${i}]`, `${raw} must not have a path or query`);
      return { url: raw.replace(/\/$/, ''), host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)), secure: u.protocol === 'https:' };
    });
    if (opts.headerTimeoutMs !== undefined && (!Number.isInteger(opts.headerTimeoutMs) || opts.headerTimeoutMs <= 0)) throw new EtcdArgumentError('headerTimeoutMs', `must be a positive integer (milliseconds), got ${String(opts.headerTimeoutMs)}`);
    if (opts.maxSockets !== undefined && (!Number.isInteger(opts.maxSockets) || opts.maxSockets <= 0)) throw new EtcdArgumentError('maxSockets', 'must be a positive integer');
    if (opts.auth && (typeof opts.auth.username !== 'string' || !opts.auth.username || typeof opts.auth.password !== 'string')) throw new EtcdArgumentError('auth', 'needs a non-empty username and a password string');
    this.headerTimeoutMs = opts.headerTimeoutMs ?? 5000;
    this.watchHttpAgent = new http.Agent({ keepAlive: true });
    let tlsOpts: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string } | undefined;
    if (this.endpoints.some((e) => e.secure)) {
      const t = opts.tls ?? {};
      if ((t.cert === undefined) !== (t.key === undefined)) throw new EtcdArgumentError('tls', 'cert and key go together');
      tlsOpts = { ca: readPem(t.ca, 'tls.ca'), cert: readPem(t.cert, 'tls.cert'), key: readPem(t.key, 'tls.key'), servername: t.servername };
      this.watchHttpsAgent = new https.Agent({ keepAlive: true, ...tlsOpts });
    } else if (opts.tls) {
      throw new EtcdArgumentError('tls', 'is set but no endpoint is https://');
    }
    if (opts.auth) this.authHeader = `Basic ${Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString('base64')}`;
    this.authLine = this.authHeader ? `Authorization: ${this.authHeader}\r\n` : '';
    const maxSockets = opts.maxSockets ?? V2_MAX_SOCKETS;
    this.pools = this.endpoints.map((e) => new H1Pool({ host: e.host, port: e.port, secure: e.secure, tls: e.secure ? tlsOpts : undefined }, maxSockets, this.headerTimeoutMs));
  }

  get pinnedEndpoint(): string {
    return this.endpoints[this.pinned].url;
  }

  /** Moves requests off endpoint `i` if it is still the pinned one. */
  failover(i: number): void {
    if (this.pinned === i) this.pinned = (i + 1) % this.endpoints.length;
  }

  private once(idx: number, spec: RequestSpec): Promise<HttpResult> {
    const ep = this.endpoints[idx];
    if (spec.watch || spec.signal) return this.onceNode(ep, spec);
    const headers = spec.body === undefined ? this.authLine : `${this.authLine}Content-Type: ${spec.contentType ?? 'application/x-www-form-urlencoded'}\r\n`;
    return this.pools[idx].request(spec.method, spec.path, headers, spec.body, spec.method === 'GET').then(
      (r) => ({ status: r.status, etcd: r.etcd, body: r.body, endpoint: ep.url }),
      (e: H1Error) => { throw new TransportError(e.message, e.notSent, e.code); },
    );
  }

  /** Long polls (and anything cancellable) go through node:http and its own agents. */
  private onceNode(ep: Endpoint, spec: RequestSpec): Promise<HttpResult> {
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = {};
      if (this.authHeader) headers.authorization = this.authHeader;
      if (spec.body !== undefined) {
        headers['content-type'] = spec.contentType ?? 'application/x-www-form-urlencoded';
        headers['content-length'] = Buffer.byteLength(spec.body);
      }
      let sent = false;
      let settled = false;
      const req = (ep.secure ? https : http).request({
        host: ep.host, port: ep.port, method: spec.method, path: spec.path, headers,
        agent: ep.secure ? this.watchHttpsAgent : this.watchHttpAgent,
        signal: spec.signal,
      }, (res) => {
        clearTimeout(timer);
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          settled = true;
          resolve({ status: res.statusCode ?? 0, etcd: etcdHeaders(res.rawHeaders), body: chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8'), endpoint: ep.url });
        });
        res.on('error', (e) => { if (!settled) { settled = true; reject(new TransportError(e.message, false)); } });
        res.on('close', () => { if (!settled && !res.complete) { settled = true; reject(new TransportError('connection closed before the response ended', false)); } });
      });
      const timer = spec.watch ? undefined : setTimeout(() => req.destroy(Object.assign(new Error(`no response headers within ${this.headerTimeoutMs} ms`), { code: 'ETIMEDOUT' })), this.headerTimeoutMs);
      req.on('socket', (s) => {
        // Reused keep-alive sockets are connected already; new ones count as sent once connected.
        if (!s.connecting) sent = true;
        else s.once('connect', () => { sent = true; });
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        if (e.name === 'AbortError') { reject(e); return; }
        reject(new TransportError(e.message, !sent || NOT_SENT.has(e.code ?? ''), e.code));
      });
      req.end(spec.body);
    });
  }

  /** Sends with failover; returns the raw result of the first endpoint that answered. */
  request(spec: RequestSpec): Promise<HttpResult> {
    return this.attempt(spec, spec.endpoint ?? this.pinned, 0, spec.endpoint !== undefined ? 1 : this.endpoints.length, undefined);
  }

  /** Try `i` of `tries`, starting at endpoint `start`. A promise chain rather than an async
   *  loop: the first try is nearly every request, and this keeps it to one promise hop. */
  private attempt(spec: RequestSpec, start: number, i: number, tries: number, errors: { endpoint: string; error: Error }[] | undefined): Promise<HttpResult> {
    const n = this.endpoints.length;
    const idx = (start + i) % n;
    const ep = this.endpoints[idx];
    return this.once(idx, spec).then((r) => {
      if (r.status >= 500 && spec.method === 'GET' && i < tries - 1) {
        // A member without a leader (300/301) or a broken one: another may answer the read.
        (errors ??= []).push({ endpoint: ep.url, error: new EtcdHttpError(r.status, r.body, ep.url) });
        return this.attempt(spec, start, i + 1, tries, errors);
      }
      if (spec.endpoint === undefined && this.pinned !== idx) this.pinned = idx;
      return r;
    }, (e: unknown) => {
      if ((e as Error).name === 'AbortError') throw e;
      const err = e as TransportError;
      (errors ??= []).push({ endpoint: ep.url, error: err });
      if (spec.endpoint === undefined && this.pinned === idx) this.pinned = (idx + 1) % n;
      if (!err.notSent && spec.method !== 'GET') {
        throw new EtcdClusterUnavailableError(errors, `etcd ${spec.method} ${spec.path} failed after it was sent (it may have been applied; not retried)`);
      }
      if (i + 1 < tries) return this.attempt(spec, start, i + 1, tries, errors);
      throw new EtcdClusterUnavailableError(errors);
    });
  }

  /** Parses an etcd JSON answer; etcd error documents become EtcdError. */
  static json<T>(r: HttpResult, okStatuses?: number[]): T {
    if (okStatuses ? okStatuses.includes(r.status) : r.status === 200 || r.status === 201) return (r.body ? JSON.parse(r.body) : undefined) as T;
    let doc: { errorCode?: number; message?: string; cause?: string; index?: number } | undefined;
    try { doc = JSON.parse(r.body); } catch { /* not JSON */ }
    if (doc && typeof doc.errorCode === 'number') throw new EtcdError(doc as { errorCode: number; message: string }, r.endpoint);
    throw new EtcdHttpError(r.status, r.body, r.endpoint);
  }

  close(): void {
    for (const p of this.pools) p.destroy();
    this.watchHttpAgent.destroy();
    this.watchHttpsAgent?.destroy();
  }
}
