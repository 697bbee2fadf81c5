// The v3 client's connection: one gRPC channel (grpc-channel.ts) per etcd endpoint, one "active" endpoint that calls
// go to, and failover to the next one when the active one stops answering.
//
// Retry rules (why a call may be sent twice): a call that provably never reached a server
// ("No connection established", "etcdserver: no leader", a rejected auth token) is retried on
// any endpoint; a read that failed mid-flight is retried too (it is repeatable); a write that
// failed mid-flight is NOT retried, because it may have been applied — the caller gets the
// error and decides (as etcd's Go client does).
import { AuthService } from '../gen/etcdserverpb/rpc';
import { EtcdArgumentError, EtcdV3Error, fromGrpcError } from './errors';
import { Code, GrpcChannel, frameMessage, grpcError, type GrpcError, type GrpcStream } from './grpc-channel';
import { readPem } from './types';

export interface EtcdV3Tls {
  /** CA bundle (PEM path or contents) that signed the etcd server certificates. */
  ca?: string | Buffer;
  /** Client certificate and key for mutual TLS (PEM paths or contents). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name to check the server certificate against, when it differs from the endpoint host. */
  serverName?: string;
}

export interface EtcdV3Options {
  /** `http://host:port`, `https://host:port` or `host:port`; https (or `tls`) turns TLS on. */
  endpoints: string[];
  tls?: EtcdV3Tls;
  /** etcd user; the client exchanges it for a token and renews the token when it is rejected. */
  auth?: { username: string; password: string };
  /** Deadline of a unary call including retries (default 10 s). */
  requestTimeoutMs?: number;
  /** Deadline of one attempt of a repeatable call before the next endpoint is tried (default 3 s). */
  attemptTimeoutMs?: number;
  /** gRPC keepalive ping interval on each channel; etcd refuses pings more often than 5 s by
   *  default (--grpc-keepalive-min-time). Detects a hung (paused) member under an open stream. */
  keepAliveTimeMs?: number;
  /** How long a ping answer, or the HTTP/2 handshake of a new connection, may take before the
   *  member counts as dead (default 5 s). */
  keepAliveTimeoutMs?: number;
  /** Largest response accepted, bytes (default 64 MiB). */
  maxReceiveMessageLength?: number;
}

export interface MethodDef<Req, Res> {
  path: string;
  requestSerialize: (v: Req) => Buffer;
  /** The request already behind its 5-byte gRPC prefix (hand-written codecs, see wire.ts). */
  requestFrame?: (v: Req) => Buffer;
  responseDeserialize: (b: Buffer) => Res;
}

interface Endpoint {
  url: string;
  target: string;
  channel: GrpcChannel;
}

/** What a failure means for a retry. */
type Verdict = 'not-sent' | 'maybe-applied' | 'bad-token' | 'fatal';

const NOT_SENT = /No connection established|failed to connect|Name resolution failed|etcdserver: no leader|etcdserver: not capable|Connection refused|ECONNREFUSED/i;
const BAD_TOKEN = /invalid auth token|user name is empty/i;

export function parseEndpoint(raw: string, index: number): { target: string; secure: boolean } {
  const option = `endpoints[${index}]`;
  if (typeof raw !== 'string' || raw.length === 0) throw new EtcdArgumentError(option, 'must be a non-empty string like http://127.0.0.1:2379');
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new EtcdArgumentError(option, `${JSON.stringify(raw)} is not a URL like http://127.0.0.1:2379`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EtcdArgumentError(option, `scheme ${url.protocol} is not http or https`);
  if (!url.port) throw new EtcdArgumentError(option, `${raw} has no port`);
  if (url.pathname !== '/' && url.pathname !== '') throw new EtcdArgumentError(option, `${raw} must not have a path`);
  // WHATWG URL keeps IPv6 hosts bracketed ([::1]), which is what gRPC targets want.
  return { target: `${url.hostname}:${url.port}`, secure: url.protocol === 'https:' };
}

export class Connection {
  readonly endpoints: Endpoint[];
  private active = 0;
  private token: string | undefined;
  private tokenHeaders: Record<string, string> | undefined;
  private authenticating: Promise<void> | undefined;
  private closed = false;
  /** How many tokens this connection obtained (a renewal after expiry counts). */
  authentications = 0;
  readonly requestTimeoutMs: number;
  readonly attemptTimeoutMs: number;

  constructor(readonly opts: EtcdV3Options) {
    if (!opts || !Array.isArray(opts.endpoints) || opts.endpoints.length === 0) throw new EtcdArgumentError('endpoints', 'at least one endpoint is required');
    const parsed = opts.endpoints.map((e, i) => parseEndpoint(e, i));
    const secure = !!opts.tls || parsed.some((p) => p.secure);
    if (secure && parsed.some((p) => !p.secure) && !opts.tls) throw new EtcdArgumentError('endpoints', 'mixes http and https endpoints');
    for (const [k, v] of [['requestTimeoutMs', opts.requestTimeoutMs], ['attemptTimeoutMs', opts.attemptTimeoutMs], ['keepAliveTimeMs', opts.keepAliveTimeMs], ['keepAliveTimeoutMs', opts.keepAliveTimeoutMs]] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v <= 0)) throw new EtcdArgumentError(k, `must be a positive integer (milliseconds), got ${String(v)}`);
    }
    if (opts.auth && (typeof opts.auth.username !== 'string' || !opts.auth.username || typeof opts.auth.password !== 'string')) {
      throw new EtcdArgumentError('auth', 'needs a non-empty username and a password string');
    }
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? 3_000;
    if (opts.maxReceiveMessageLength !== undefined && (!Number.isInteger(opts.maxReceiveMessageLength) || opts.maxReceiveMessageLength <= 0)) throw new EtcdArgumentError('maxReceiveMessageLength', `must be a positive integer (bytes), got ${String(opts.maxReceiveMessageLength)}`);
    const t = opts.tls ?? {};
    if (secure && (t.cert === undefined) !== (t.key === undefined)) throw new EtcdArgumentError('tls', 'cert and key go together');
    const channelOptions = {
      secure,
      ...(secure ? { ca: readPem(t.ca, 'tls.ca'), cert: readPem(t.cert, 'tls.cert'), key: readPem(t.key, 'tls.key'), serverName: t.serverName } : {}),
      keepAliveTimeMs: opts.keepAliveTimeMs ?? 10_000,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 5_000,
      maxReceiveMessageLength: opts.maxReceiveMessageLength ?? 64 * 1024 * 1024,
    };
    this.endpoints = parsed.map((p, i) => ({ url: opts.endpoints[i], target: p.target, channel: new GrpcChannel(p.target, channelOptions) }));
  }

  get activeEndpoint(): string {
    return this.endpoints[this.active].url;
  }

  /** Moves calls off endpoint `i` (only if it is still the active one: concurrent failures
   *  of the same endpoint must not skip the healthy ones). */
  failover(i: number): void {
    if (this.active === i) this.active = (i + 1) % this.endpoints.length;
  }

  private classify(err: GrpcError): Verdict {
    const msg = err.details || err.message || '';
    if (err.code === Code.UNAUTHENTICATED && BAD_TOKEN.test(msg) && this.opts.auth) return 'bad-token';
    if (err.code === Code.UNAVAILABLE && (err.notSent || NOT_SENT.test(msg))) return 'not-sent';
    if (err.code === Code.UNAVAILABLE || err.code === Code.DEADLINE_EXCEEDED) return 'maybe-applied';
    return 'fatal';
  }

  /** The request headers of an authenticated call ({ token }), plus `extra`. */
  async headers(extra?: Record<string, string>): Promise<Record<string, string> | undefined> {
    if (!this.opts.auth) return extra;
    if (!this.token) await this.authenticate();
    return { ...extra, token: this.token! };
  }

  /** Exchanges the configured user for a token (one exchange at a time). */
  authenticate(): Promise<void> {
    if (!this.authenticating) {
      const { username, password } = this.opts.auth!;
      this.authenticating = this.unary(AuthService.authenticate, { name: username, password }, { repeatable: true, noAuth: true })
        .then((r) => { this.setToken(r.token); this.authentications++; })
        .finally(() => { this.authenticating = undefined; });
    }
    return this.authenticating;
  }

  private setToken(token: string | undefined): void {
    this.token = token;
    this.tokenHeaders = token ? { token } : undefined;
  }

  private attempt<Req, Res>(ep: Endpoint, def: MethodDef<Req, Res>, req: Req, headers: Record<string, string> | undefined, deadline: number): Promise<Res> {
    return new Promise((resolve, reject) => {
      const body = def.requestFrame ? def.requestFrame(req) : frameMessage(def.requestSerialize(req));
      ep.channel.unary(def.path, body, headers, deadline, (err, res) => {
        if (err) { reject(err); return; }
        try {
          resolve(def.responseDeserialize(res!));
        } catch (e) {
          reject(grpcError(Code.INTERNAL, `undecodable response from ${ep.url}: ${(e as Error).message}`));
        }
      });
    });
  }

  /**
   * One unary call with failover. `repeatable`: the call has no effect when repeated (reads),
   * so it is retried after any transport failure; other calls only when they never left.
   */
  async unary<Req, Res>(def: MethodDef<Req, Res>, req: Req, o: { repeatable: boolean; timeoutMs?: number; noAuth?: boolean; endpoint?: number }): Promise<Res> {
    if (this.closed) throw new EtcdV3Error('etcd client is closed', Code.CANCELLED);
    const overall = Date.now() + (o.timeoutMs ?? this.requestTimeoutMs);
    let tokenRetried = false;
    let backoff = 25;
    for (let attempt = 0; ; attempt++) {
      const idx = o.endpoint ?? this.active;
      const ep = this.endpoints[idx];
      // Without auth (or with a token in hand) no await: the common path stays synchronous.
      if (!o.noAuth && this.opts.auth && !this.token) await this.authenticate();
      const headers = o.noAuth ? undefined : this.tokenHeaders;
      // A per-attempt deadline only helps when there is another endpoint to try.
      const deadline = o.repeatable && this.endpoints.length > 1 ? Math.min(overall, Date.now() + this.attemptTimeoutMs) : overall;
      try {
        return await this.attempt(ep, def, req, headers, deadline);
      } catch (e) {
        const err = e as GrpcError;
        if (typeof err.code !== 'number') throw e;
        const verdict = this.classify(err);
        if (verdict === 'bad-token' && !tokenRetried) {
          tokenRetried = true;
          this.setToken(undefined);
          continue;
        }
        const retry = verdict === 'not-sent' || (verdict === 'maybe-applied' && o.repeatable);
        if (verdict === 'not-sent' || verdict === 'maybe-applied') {
          if (o.endpoint === undefined && !/no leader/i.test(err.details ?? '')) this.failover(idx);
        }
        if (!retry || this.closed || Date.now() + backoff >= overall || o.endpoint !== undefined && attempt >= 2) throw fromGrpcError(err, ep.url);
        // Cycle through every endpoint quickly, then back off (a cluster electing a leader).
        if (attempt >= this.endpoints.length - 1) {
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(backoff * 2, 500);
        }
      }
    }
  }

  /** Opens a bidirectional stream on the active endpoint (the caller handles failover). */
  async bidi<Req, Res>(def: MethodDef<Req, Res>, extra?: Record<string, string>): Promise<{ call: GrpcStream<Req, Res>; endpoint: number }> {
    if (this.closed) throw new EtcdV3Error('etcd client is closed', Code.CANCELLED);
    const headers = await this.headers(extra);
    const endpoint = this.active;
    const ep = this.endpoints[endpoint];
    try {
      return { call: ep.channel.bidi(def.path, def.requestSerialize, def.responseDeserialize, headers), endpoint };
    } catch (e) {
      // No session to this member (down, or going away): the next attempt goes elsewhere.
      this.failover(endpoint);
      throw fromGrpcError(e as GrpcError, ep.url);
    }
  }

  /** After a stream failed: should it move to another endpoint / renew the token? */
  onStreamError(err: GrpcError, endpoint: number): 'retry' | 'fatal' {
    const v = this.classify(err);
    if (v === 'bad-token') { this.setToken(undefined); return 'retry'; }
    if (v === 'not-sent' || v === 'maybe-applied' || err.code === Code.CANCELLED) {
      this.failover(endpoint);
      return 'retry';
    }
    return 'fatal';
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ep of this.endpoints) ep.channel.close();
  }
}
