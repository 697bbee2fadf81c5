// The v3 client's gRPC transport, written directly on node:http2: one HTTP/2 session per etcd
// endpoint carrying unary calls and bidirectional streams, with deadlines, keepalive pings and
// an exact answer to "did this request ever reach the server?" for the retry rules in
// connection.ts.
//
// Why not @grpc/grpc-js: on this path its per-call machinery (call stacks, filters,
// interceptors, Metadata objects, the resolver and load-balancer layers) cost about twice the
// client CPU of a plain http2 request per call, and the etcd client is the hot path of every
// service. gRPC over HTTP/2 is small: a POST with content-type application/grpc, messages
// prefixed by a compressed-flag byte and a 4-byte length, and the status in the trailers (or,
// for an immediate error, in the only HEADERS frame: "Trailers-Only").
import * as http2 from 'node:http2';
import { EventEmitter } from 'node:events';

/** gRPC status codes used here (the rest arrive from the server as numbers). */
export const Code = { OK: 0, CANCELLED: 1, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8 } as const;

/** A failed call: gRPC `code`, the server's (or transport's) `details`, and `notSent` when the
 *  request provably never reached the server (so even a write may be retried elsewhere). */
export interface GrpcError extends Error {
  code: number;
  details: string;
  notSent: boolean;
}

export function grpcError(code: number, details: string, notSent = false): GrpcError {
  const e = new Error(`${code}: ${details}`) as GrpcError;
  e.code = code;
  e.details = details;
  e.notSent = notSent;
  return e;
}

export interface GrpcChannelOptions {
  secure: boolean;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Name the server certificate is checked against (and the :authority), when not the host. */
  serverName?: string;
  keepAliveTimeMs: number;
  keepAliveTimeoutMs: number;
  maxReceiveMessageLength: number;
}

const {
  NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_ENHANCE_YOUR_CALM,
} = http2.constants;
// Flow-control windows: etcd answers (a list of many keys) are often larger than HTTP/2's
// default 64 KiB window, which would cost a WINDOW_UPDATE round trip per 64 KiB.
const STREAM_WINDOW = 1 << 20;
const SESSION_WINDOW = 16 << 20;
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2000;

interface Session {
  h2: http2.ClientHttp2Session;
  /** The server's SETTINGS arrived: requests from now on may have been processed. */
  connected: boolean;
  /** Streams above this id were never processed by the server (set by GOAWAY). */
  lastStreamId: number;
  /** Open calls and streams: keepalive pings are only sent while there are some (etcd counts
   *  pings on an idle connection as abuse and closes it). */
  active: number;
  pingTimer: NodeJS.Timeout | undefined;
}

/** gRPC's mapping of an HTTP status without a gRPC status to a gRPC code. */
function httpToCode(status: number): number {
  switch (status) {
    case 400: return Code.INTERNAL;
    case 401: return Code.UNAUTHENTICATED;
    case 403: return Code.PERMISSION_DENIED;
    case 404: return Code.UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return Code.UNAVAILABLE;
    default: return Code.UNKNOWN;
  }
}

/** grpc-message is percent-encoded. */
function decodeMessage(m: string | string[] | undefined): string {
  if (m === undefined) return '';
  const s = Array.isArray(m) ? m.join(',') : m;
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** A message with its 5-byte gRPC prefix (uncompressed). */
export function frameMessage(msg: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + msg.length);
  b[0] = 0;
  b.writeUInt32BE(msg.length, 1);
  b.set(msg, 5);
  return b;
}

/** What the response headers and trailers said. */
class CallStatus {
  code = -1;
  message = '';
  httpStatus = 0;
  read(h: http2.IncomingHttpHeaders): void {
    const s = h[':status'];
    if (s !== undefined) this.httpStatus = Number(s);
    const gs = h['grpc-status'];
    if (gs !== undefined) {
      this.code = Number(gs);
      this.message = decodeMessage(h['grpc-message']);
    }
  }
}

export class GrpcChannel {
  private session: Session | undefined;
  private downUntil = 0;
  private backoff = MIN_BACKOFF_MS;
  private lastConnectError = '';
  private keepAliveTimeMs: number;
  private closed = false;
  private readonly url: string;
  private readonly connectOptions: http2.SecureClientSessionOptions;

  constructor(readonly target: string, private readonly o: GrpcChannelOptions) {
    this.url = `${o.secure ? 'https' : 'http'}://${target}`;
    this.keepAliveTimeMs = o.keepAliveTimeMs;
    this.connectOptions = {
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
      maxSessionMemory: 64,
      ...(o.secure ? { ca: o.ca, cert: o.cert, key: o.key, ...(o.serverName ? { servername: o.serverName } : {}) } : {}),
    };
  }

  private getSession(): Session {
    const cur = this.session;
    if (cur && !cur.h2.destroyed && !cur.h2.closed) return cur;
    if (this.closed) throw grpcError(Code.CANCELLED, 'channel closed', true);
    if (Date.now() < this.downUntil) throw grpcError(Code.UNAVAILABLE, `no connection established to ${this.target}: ${this.lastConnectError}`, true);
    const h2 = http2.connect(this.url, this.connectOptions);
    const s: Session = { h2, connected: false, lastStreamId: 2 ** 31, active: 0, pingTimer: undefined };
    // A member that accepts TCP but never speaks HTTP/2 (a paused process: the kernel still
    // completes the handshake) must not hold calls and streams forever.
    const connectTimer = setTimeout(() => {
      if (!s.connected) h2.destroy(grpcError(Code.UNAVAILABLE, `no HTTP/2 handshake from ${this.target} within ${this.o.keepAliveTimeoutMs} ms`, true));
    }, this.o.keepAliveTimeoutMs);
    connectTimer.unref();
    h2.on('connect', () => {
      try { h2.setLocalWindowSize(SESSION_WINDOW); } catch { /* closing already */ }
    });
    // 'connect' only means TCP (and TLS) is up; the server has spoken once its SETTINGS arrive
    // (a Go server sends them before it reads any request).
    h2.once('remoteSettings', () => {
      clearTimeout(connectTimer);
      s.connected = true;
      this.backoff = MIN_BACKOFF_MS;
    });
    h2.on('error', (err: Error) => {
      if (!s.connected) {
        // Calls fail fast (as "not sent") until the backoff has passed, instead of each one
        // paying for a connect attempt to a member that is down.
        this.lastConnectError = err.message;
        this.downUntil = Date.now() + this.backoff;
        this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      }
    });
    h2.on('goaway', (code: number, lastStreamId: number) => {
      s.lastStreamId = lastStreamId;
      if (this.session === s) this.session = undefined;
      // "too_many_pings": ping less often from now on, as grpc-js does.
      if (code === NGHTTP2_ENHANCE_YOUR_CALM) this.keepAliveTimeMs *= 2;
    });
    h2.on('close', () => {
      clearTimeout(connectTimer);
      clearInterval(s.pingTimer);
      if (this.session === s) this.session = undefined;
    });
    s.pingTimer = setInterval(() => this.ping(s), this.keepAliveTimeMs);
    s.pingTimer.unref();
    // An idle session must not keep the process alive; open calls ref it (see open/closeCall).
    h2.unref();
    this.session = s;
    return s;
  }

  /** A keepalive ping while calls are open: a member that stopped answering (paused, cut off)
   *  is detected, and its open streams fail over, within keepAliveTimeoutMs. */
  private ping(s: Session): void {
    if (s.active === 0 || !s.connected || s.h2.destroyed) return;
    const timer = setTimeout(() => s.h2.destroy(grpcError(Code.UNAVAILABLE, `keepalive ping to ${this.target} not answered within ${this.o.keepAliveTimeoutMs} ms`)), this.o.keepAliveTimeoutMs);
    try {
      s.h2.ping((err) => { clearTimeout(timer); if (err && !s.h2.destroyed) s.h2.destroy(err); });
    } catch {
      clearTimeout(timer);
    }
  }

  private open(s: Session, headers: http2.OutgoingHttpHeaders): http2.ClientHttp2Stream {
    if (this.o.serverName) headers[':authority'] = this.o.serverName;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = s.h2.request(headers, { endStream: false });
    } catch (e) {
      // The session is going away (GOAWAY received) or already destroyed: nothing was sent.
      if (this.session === s) this.session = undefined;
      throw grpcError(Code.UNAVAILABLE, (e as Error).message, true);
    }
    if (s.active++ === 0) s.h2.ref();
    return stream;
  }

  private closeCall(s: Session): void {
    if (--s.active === 0 && !s.h2.destroyed) s.h2.unref();
  }

  /** Why a stream closed without a gRPC status. */
  private brokenError(s: Session, stream: http2.ClientHttp2Stream, st: CallStatus, err: Error | undefined, what: string): GrpcError {
    if (st.httpStatus && st.httpStatus !== 200) return grpcError(httpToCode(st.httpStatus), `HTTP status ${st.httpStatus} from ${this.target}`);
    const id = stream.id;
    const notSent = id === undefined || id > s.lastStreamId || stream.rstCode === NGHTTP2_REFUSED_STREAM || !s.connected;
    const reason = err ? err.message : stream.rstCode ? `stream reset (HTTP/2 error ${stream.rstCode})` : 'connection closed';
    const code = (err as GrpcError | undefined)?.code;
    return grpcError(typeof code === 'number' ? code : Code.UNAVAILABLE, `${what} to ${this.target} failed: ${reason}`, notSent);
  }

  /**
   * One unary call. `body` is the encoded request behind its 5-byte prefix (frameMessage);
   * `deadline` an absolute Date.now() time. Calls back exactly once with the encoded response
   * or a GrpcError.
   */
  unary(path: string, body: Buffer, extra: Record<string, string> | undefined, deadline: number, cb: (err: GrpcError | null, res?: Buffer) => void): void {
    let s: Session;
    let stream: http2.ClientHttp2Stream;
    const timeout = deadline - Date.now();
    if (timeout <= 0) { cb(grpcError(Code.DEADLINE_EXCEEDED, 'deadline exceeded before the call was sent', true)); return; }
    try {
      s = this.getSession();
      // The server's copy of the deadline, rounded up to whole seconds: it only tells etcd when
      // to give up (the timer below is what ends the call), and a value that repeats is sent
      // as a one-byte HPACK index instead of a new literal each call.
      const headers: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': `${Math.ceil(timeout / 1000)}S` };
      if (extra) for (const k in extra) headers[k] = extra[k];
      stream = this.open(s, headers);
    } catch (e) {
      cb(e as GrpcError);
      return;
    }
    const st = new CallStatus();
    let chunks: Buffer[] = [];
    let size = 0;
    let error: Error | undefined;
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; stream.close(NGHTTP2_CANCEL); }, timeout);
    stream.on('response', (h) => st.read(h));
    stream.on('trailers', (h) => st.read(h));
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size > this.o.maxReceiveMessageLength + 5) {
        error = grpcError(Code.RESOURCE_EXHAUSTED, `response larger than ${this.o.maxReceiveMessageLength} bytes`);
        chunks = [];
        stream.close(NGHTTP2_CANCEL);
      } else {
        chunks.push(c);
      }
    });
    stream.on('error', (e: Error) => { error ??= e; });
    stream.on('close', () => {
      clearTimeout(timer);
      this.closeCall(s);
      if ((error as GrpcError | undefined)?.code === Code.RESOURCE_EXHAUSTED) { cb(error as GrpcError); return; }
      if (st.code > 0) { cb(grpcError(st.code, st.message)); return; }
      if (st.code === 0) {
        const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        if (buf.length < 5 || buf.readUInt32BE(1) !== buf.length - 5) { cb(grpcError(Code.INTERNAL, `malformed response from ${this.target} (${buf.length} bytes)`)); return; }
        if (buf[0] !== 0) { cb(grpcError(Code.INTERNAL, `compressed response from ${this.target} (none was asked for)`)); return; }
        cb(null, buf.subarray(5));
        return;
      }
      if (timedOut) { cb(grpcError(Code.DEADLINE_EXCEEDED, `deadline of ${timeout} ms exceeded waiting for ${this.target}`)); return; }
      cb(this.brokenError(s, stream, st, error, 'call'));
    });
    stream.end(body);
  }

  /** Opens a bidirectional stream (throws a GrpcError when no session can be had). */
  bidi<Req, Res>(path: string, serialize: (r: Req) => Uint8Array, deserialize: (b: Buffer) => Res, extra: Record<string, string> | undefined): GrpcStream<Req, Res> {
    const s = this.getSession();
    const headers: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' };
    if (extra) for (const k in extra) headers[k] = extra[k];
    const stream = this.open(s, headers);
    return new GrpcStream<Req, Res>(stream, serialize, deserialize, this.o.maxReceiveMessageLength, (st, err) => {
      this.closeCall(s);
      return st.code > 0 ? grpcError(st.code, st.message) : this.brokenError(s, stream, st, err, 'stream');
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const s = this.session;
    this.session = undefined;
    if (s) {
      clearInterval(s.pingTimer);
      // Calls still in flight may finish; the session ends when they have.
      s.h2.close();
    }
  }
}

/**
 * A bidirectional gRPC stream with the part of grpc-js's ClientDuplexStream interface the
 * client uses: write(), pause()/resume(), cancel(), and the events 'data' (a decoded message),
 * 'end' (the server finished with status OK) and 'error' (a GrpcError). Nothing is emitted
 * after cancel().
 */
export class GrpcStream<Req, Res> extends EventEmitter {
  private pending: Buffer | undefined;
  private readonly queue: Res[] = [];
  private paused = false;
  private finished = false;
  private final: { error?: GrpcError } | undefined;
  private readonly st = new CallStatus();
  private error: Error | undefined;

  constructor(
    private readonly stream: http2.ClientHttp2Stream,
    private readonly serialize: (r: Req) => Uint8Array,
    private readonly deserialize: (b: Buffer) => Res,
    private readonly maxMessage: number,
    onClose: (st: CallStatus, err: Error | undefined) => GrpcError,
  ) {
    super();
    stream.on('response', (h) => this.st.read(h));
    stream.on('trailers', (h) => this.st.read(h));
    stream.on('data', (c: Buffer) => this.onChunk(c));
    stream.on('error', (e: Error) => { this.error ??= e; });
    stream.on('close', () => {
      const err = onClose(this.st, this.error);
      if (this.finished) return;
      this.final = this.st.code === 0 ? {} : { error: err };
      this.drain();
    });
  }

  private onChunk(c: Buffer): void {
    if (this.finished) return;
    let buf = this.pending ? Buffer.concat([this.pending, c]) : c;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (len > this.maxMessage || buf[0] !== 0) {
        this.error = grpcError(len > this.maxMessage ? Code.RESOURCE_EXHAUSTED : Code.INTERNAL, len > this.maxMessage ? `stream message larger than ${this.maxMessage} bytes` : 'compressed stream message (none was asked for)');
        this.pending = undefined;
        this.stream.close(NGHTTP2_CANCEL);
        return;
      }
      if (buf.length < 5 + len) break;
      let msg: Res;
      try {
        msg = this.deserialize(buf.subarray(5, 5 + len));
      } catch (e) {
        this.error = grpcError(Code.INTERNAL, `undecodable stream message: ${(e as Error).message}`);
        this.stream.close(NGHTTP2_CANCEL);
        return;
      }
      this.queue.push(msg);
      buf = buf.subarray(5 + len);
    }
    this.pending = buf.length ? buf : undefined;
    this.drain();
  }

  private drain(): void {
    while (!this.paused && !this.finished && this.queue.length) this.emit('data', this.queue.shift()!);
    if (this.paused || this.finished || this.queue.length || !this.final) return;
    this.finished = true;
    if (this.final.error) this.emit('error', this.final.error);
    else this.emit('end');
  }

  write(req: Req): void {
    if (this.finished || this.stream.destroyed) return;
    this.stream.write(frameMessage(this.serialize(req)));
  }

  pause(): void {
    this.paused = true;
    this.stream.pause();
  }

  resume(): void {
    this.paused = false;
    this.stream.resume();
    this.drain();
  }

  /** Ends the stream from our side (RST_STREAM CANCEL); no event follows. */
  cancel(): void {
    if (this.finished) return;
    this.finished = true;
    this.queue.length = 0;
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_CANCEL);
  }
}
