// A lean gRPC server straight on node:http2, for services whose calls are on a latency-critical
// path (cni-manager's SetUpPod sits on every pod start). @grpc/grpc-js's server runs each call
// through interceptor chains, channelz bookkeeping and several stream objects: on this 2-core VM
// that is ~0.5 ms of CPU per unary call warm and ~0.75 ms when the caches are cold (as between
// two pod starts), against ~0.2-0.4 ms here. It speaks the same wire protocol (HTTP/2, 5-byte
// length-prefixed messages, grpc-status/grpc-message trailers, grpc-timeout deadlines, -bin
// metadata), so grpc-js, grpcurl or any other gRPC client talks to it unchanged, and it takes
// the same handler shapes as grpc-js (`(call, callback)` for unary, event-emitter calls for
// streams): `unary()`/`serverStream()`, grpc-health-check and @grpc/reflection plug in as they are.
// Not supported (answered with a clear status): compressed request messages.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import { Metadata, status, type MethodDefinition, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { InvalidArgumentError, toServiceError } from './errors';
import { isLoopbackHost, parseListen } from './listen';
import { registerServices, removeStaleSocket, type RunningServer, type ServeOptions } from './serve';

const MAX_RECEIVE = 16 * 1024 * 1024;
const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_PATH, HTTP2_HEADER_METHOD } = http2.constants;
/** Request headers that are transport, not call metadata. */
const RESERVED = new Set(['te', 'content-type', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'user-agent', 'content-length', 'host', 'connection']);
const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

type Kind = 'unary' | 'serverStream' | 'clientStream' | 'bidi';
interface Route { def: MethodDefinition<unknown, unknown>; handler: (...args: never[]) => void; kind: Kind }
type ErrorLike = { code?: number; details?: string; message?: string; metadata?: Metadata };

/** Percent-encodes a grpc-message value (bytes outside printable ASCII, and '%'), as the spec asks. */
function encodeMessage(s: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(s) ? s : Buffer.from(s, 'utf8').reduce((o, b) => o + (b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b)), '');
}

/** Metadata as HTTP/2 header fields (-bin values base64, several values comma-joined). */
function metadataHeaders(md: Metadata | undefined, into: http2.OutgoingHttpHeaders): http2.OutgoingHttpHeaders {
  if (!md) return into;
  for (const key of Object.keys(md.getMap())) {
    const values = md.get(key);
    into[key] = key.endsWith('-bin') ? values.map((v) => (Buffer.isBuffer(v) ? v : Buffer.from(v)).toString('base64')).join(',') : values.map(String).join(', ');
  }
  return into;
}

function parseTimeout(v: string | string[] | undefined): number | undefined {
  const m = typeof v === 'string' ? /^(\d{1,8})([HMSmun])$/.exec(v) : null;
  return m ? Number(m[1]) * TIMEOUT_UNITS[m[2]!]! : undefined;
}

/**
 * One call, shaped like grpc-js's server call objects: `request` (unary and server-streaming),
 * `metadata`, `cancelled`, `getPeer()`, `getDeadline()`, `sendMetadata()`, and for streams
 * `write()`/`end()`, `pause()`/`resume()` and the events 'data', 'end', 'cancelled', 'drain'; `emit('error', err)`
 * ends the call with that error's status, as in grpc-js.
 */
export class H2ServerCall extends EventEmitter {
  request: unknown = undefined;
  cancelled = false;
  private headersSent = false;
  private done = false;
  private pendingMetadata: Metadata | undefined;
  private trailer: http2.OutgoingHttpHeaders | undefined;
  private timer: NodeJS.Timeout | undefined;
  private md: Metadata | undefined;
  private readonly deadline: number;

  constructor(private readonly stream: http2.ServerHttp2Stream, private readonly headers: http2.IncomingHttpHeaders, private readonly route: Route) {
    super();
    const timeout = parseTimeout(headers['grpc-timeout']);
    this.deadline = timeout === undefined ? Infinity : Date.now() + timeout;
    if (timeout !== undefined) {
      this.timer = setTimeout(() => this.finish({ code: status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' }, true), timeout);
    }
    stream.once('close', () => {
      clearTimeout(this.timer);
      if (!this.done) {
        this.done = true;
        this.cancelled = true;
        this.emit('cancelled', 'cancelled');
      }
    });
    stream.on('error', () => undefined); // a reset by the peer shows as 'close'
    // grpc-js's convention: a handler (or serverStream/withUnimplemented) emits 'error' to fail the call.
    this.on('error', (err: ErrorLike) => this.finish(err));
    stream.on('drain', () => this.emit('drain'));
  }

  get metadata(): Metadata {
    if (!this.md) {
      const md = new Metadata();
      for (const [k, v] of Object.entries(this.headers)) {
        if (k.startsWith(':') || RESERVED.has(k) || v === undefined) continue;
        for (const part of Array.isArray(v) ? v : [v]) {
          if (k.endsWith('-bin')) for (const b of part.split(',')) md.add(k, Buffer.from(b.trim(), 'base64'));
          else md.add(k, part);
        }
      }
      this.md = md;
    }
    return this.md;
  }

  getPeer(): string {
    const s = this.stream.session?.socket;
    return s?.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : 'unix:';
  }

  /** Client streaming: stop reading request messages (HTTP/2 flow control holds the client back). */
  pause(): void { this.stream.pause(); }
  resume(): void { this.stream.resume(); }

  getDeadline(): Date | number { return this.deadline === Infinity ? Infinity : new Date(this.deadline); }
  getPath(): string { return this.route.def.path; }

  sendMetadata(md: Metadata): void {
    if (this.headersSent) return;
    this.pendingMetadata = md;
  }

  /** Sends one response message; false when the stream is congested ('drain' follows). */
  write(message: unknown): boolean {
    if (this.done || this.gone()) return false;
    let body: Buffer;
    try {
      body = this.route.def.responseSerialize(message);
    } catch (err) {
      this.finish({ code: status.INTERNAL, details: `cannot serialize the response: ${(err as Error).message}` });
      return false;
    }
    this.respond();
    return this.stream.write(frame(body));
  }

  /** Ends a streaming response with status OK. */
  end(): void {
    this.finish(null);
  }

  private respond(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    const h = metadataHeaders(this.pendingMetadata, { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc' });
    this.stream.respond(h, { waitForTrailers: true });
    this.stream.once('wantTrailers', () => this.stream.sendTrailers(this.trailer ?? { 'grpc-status': '0' }));
  }

  /** Sends the unary response (message then status OK) or the error status; once. */
  reply(err: ErrorLike | null, message?: unknown): void {
    if (err || this.done || this.gone()) { this.finish(err); return; }
    let body: Buffer;
    try {
      body = this.route.def.responseSerialize(message);
    } catch (e) {
      this.finish({ code: status.INTERNAL, details: `cannot serialize the response: ${(e as Error).message}` });
      return;
    }
    this.respond();
    this.done = true;
    clearTimeout(this.timer);
    this.stream.end(frame(body));
  }

  /** The peer reset the stream or the connection went: 'close' (and 'cancelled') are on their way. */
  private gone(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  /** Ends the call with `err`'s status (null: OK). `cancel`: the deadline passed, the handler is told. */
  finish(err: ErrorLike | null, cancel = false): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    const code = err ? (typeof err.code === 'number' ? err.code : status.UNKNOWN) : status.OK;
    const trailer = metadataHeaders(err?.metadata, { 'grpc-status': String(code) });
    const details = err ? (err.details ?? err.message ?? '') : '';
    if (details) trailer['grpc-message'] = encodeMessage(details);
    if (cancel) {
      this.cancelled = true;
      this.emit('cancelled', 'deadline');
    }
    if (this.gone()) return;
    if (this.headersSent) {
      this.trailer = trailer;
      this.stream.end();
    } else {
      // Trailers-only response: status in the one HEADERS frame.
      this.headersSent = true;
      this.stream.respond({ [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc', ...metadataHeaders(this.pendingMetadata, {}), ...trailer }, { endStream: true });
    }
  }
}

function frame(body: Buffer | Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

/** Splits the request body into messages as it arrives; calls `onMessage` per message. */
function deframer(onMessage: (body: Buffer) => void, onError: (code: number, details: string) => void): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  return (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf[0] !== 0) { onError(status.UNIMPLEMENTED, 'compressed request messages are not supported (send grpc-encoding identity)'); buf = Buffer.alloc(0); return; }
      if (len > MAX_RECEIVE) { onError(status.RESOURCE_EXHAUSTED, `request message of ${len} bytes exceeds the limit of ${MAX_RECEIVE}`); buf = Buffer.alloc(0); return; }
      if (buf.length < 5 + len) return;
      const body = buf.subarray(5, 5 + len);
      buf = buf.subarray(5 + len);
      onMessage(body);
    }
  };
}

/** The server: add services with grpc-js handler shapes, then listen on a unix socket or TCP (TLS). */
export class H2GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private server: http2.Http2Server | http2.Http2SecureServer | undefined;

  addService(definition: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    for (const [name, def] of Object.entries(definition) as Array<[string, MethodDefinition<unknown, unknown> & { originalName?: string }]>) {
      const handler = implementation[name] ?? (def.originalName ? implementation[def.originalName] : undefined);
      if (!handler) continue; // answered UNIMPLEMENTED, as grpc-js does
      const kind: Kind = def.requestStream ? (def.responseStream ? 'bidi' : 'clientStream') : def.responseStream ? 'serverStream' : 'unary';
      this.routes.set(def.path, { def, handler: handler as Route['handler'], kind });
    }
  }

  /** Starts listening: `unix:///path` (made 0600 under umask 0177) or `host:port`; resolves with the bound port (0 for unix). */
  async listen(listen: string, o: { tls?: ServeOptions['tls']; insecureLoopback?: boolean; logger?: ServeOptions['logger'] } = {}): Promise<{ address: string; port: number }> {
    const addr = parseListen(listen);
    const settings: http2.ServerOptions = { settings: { maxHeaderListSize: 16 * 1024 } };
    if (o.tls) {
      this.server = http2.createSecureServer({
        ...settings,
        ca: fs.readFileSync(o.tls.caFile), cert: fs.readFileSync(o.tls.certFile), key: fs.readFileSync(o.tls.keyFile),
        requestCert: o.tls.requireClientCert ?? true, rejectUnauthorized: o.tls.requireClientCert ?? true, ALPNProtocols: ['h2'],
      });
    } else if (addr.kind === 'tcp') {
      if (!o.insecureLoopback || !isLoopbackHost(addr.host)) throw new InvalidArgumentError('listen', `TCP listener ${listen} needs TLS (tls.caFile, tls.certFile, tls.keyFile)`);
      o.logger?.warn({ listen }, 'serving plain TCP on loopback without TLS');
      this.server = http2.createServer(settings);
    } else {
      this.server = http2.createServer(settings); // authenticated by the socket's 0600 root-only mode
    }
    const server = this.server;
    server.on('session', (s: http2.ServerHttp2Session) => {
      this.sessions.add(s);
      s.once('close', () => this.sessions.delete(s));
      s.on('error', () => undefined);
    });
    server.on('stream', (stream, headers) => this.dispatch(stream, headers));
    if (addr.kind === 'unix') {
      fs.mkdirSync(path.dirname(addr.path), { recursive: true, mode: 0o700 });
      await removeStaleSocket(addr.path);
      const old = process.umask(0o177); // never reachable by others, not even before the chmod
      try {
        await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(addr.path, () => { server.off('error', reject); resolve(); }); });
      } finally {
        process.umask(old);
      }
      fs.chmodSync(addr.path, 0o600);
      return { address: addr.target, port: 0 };
    }
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(addr.port, addr.host, () => { server.off('error', reject); resolve(); }); });
    const port = (server.address() as net.AddressInfo).port;
    return { address: `${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${port}`, port };
  }

  private dispatch(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    if (headers[HTTP2_HEADER_METHOD] !== 'POST') { stream.respond({ [HTTP2_HEADER_STATUS]: 405 }, { endStream: true }); return; }
    const ct = headers[HTTP2_HEADER_CONTENT_TYPE];
    if (typeof ct !== 'string' || !ct.startsWith('application/grpc')) { stream.respond({ [HTTP2_HEADER_STATUS]: 415 }, { endStream: true }); return; }
    const p = String(headers[HTTP2_HEADER_PATH] ?? '');
    const route = this.routes.get(p);
    if (!route) {
      stream.respond({ [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc', 'grpc-status': String(status.UNIMPLEMENTED), 'grpc-message': encodeMessage(`unknown method ${p}`) }, { endStream: true });
      return;
    }
    const call = new H2ServerCall(stream, headers, route);
    const decode = (body: Buffer): unknown => route.def.requestDeserialize(body);
    const fail = (code: number, details: string): void => call.finish({ code, details });
    if (route.kind === 'unary' || route.kind === 'serverStream') {
      let message: Buffer | undefined;
      let count = 0;
      stream.on('data', deframer((b) => { count++; message = b; }, fail));
      stream.once('end', () => {
        if (call.cancelled) return;
        if (count !== 1) { fail(status.INTERNAL, `expected one request message, got ${count}`); return; }
        try {
          call.request = decode(message!);
        } catch (err) {
          fail(status.INTERNAL, `cannot parse the request: ${(err as Error).message}`);
          return;
        }
        this.invoke(route, call);
      });
      return;
    }
    // Client streaming and bidi: messages as 'data', the client's half-close as 'end'.
    stream.on('data', deframer((b) => {
      let m: unknown;
      try { m = decode(b); } catch (err) { fail(status.INTERNAL, `cannot parse a request message: ${(err as Error).message}`); return; }
      call.emit('data', m);
    }, fail));
    stream.once('end', () => call.emit('end'));
    this.invoke(route, call);
  }

  private invoke(route: Route, call: H2ServerCall): void {
    const handler = route.handler as unknown as (call: H2ServerCall, cb?: (err: ErrorLike | null, res?: unknown) => void) => void;
    try {
      if (route.kind === 'unary' || route.kind === 'clientStream') handler(call, (err, res) => call.reply(err, res));
      else handler(call);
    } catch (err) {
      call.finish(toServiceError(err));
    }
  }

  /** Stops accepting; open calls get `graceMs` to finish, then every connection is closed. */
  async shutdown(graceMs = 5000): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sessions) s.close(); // GOAWAY: in-flight streams finish
    const timer = setTimeout(() => { for (const s of this.sessions) s.destroy(); }, graceMs);
    await closed;
    clearTimeout(timer);
  }
}

/** serve()'s handle, with the lean server in place of grpc-js's. */
export type RunningH2Server = Omit<RunningServer, 'server'> & { server: H2GrpcServer };

/**
 * serve() on the lean server: the same options and the same contract (0600 unix socket or
 * TLS/mTLS TCP, grpc.health.v1 NOT_SERVING until told, server reflection, socket removed on
 * shutdown).
 */
export async function serveH2(opts: ServeOptions): Promise<RunningH2Server> {
  const server = new H2GrpcServer();
  const { health, setServing } = registerServices(server as never, opts.services);
  const { address } = await server.listen(opts.listen, { ...(opts.tls ? { tls: opts.tls } : {}), ...(opts.insecureLoopback ? { insecureLoopback: true } : {}), ...(opts.logger ? { logger: opts.logger } : {}) });
  const addr = parseListen(opts.listen);
  const shutdown = async (graceMs = 5000): Promise<void> => {
    setServing(false);
    await server.shutdown(graceMs);
    if (addr.kind === 'unix') fs.rmSync(addr.path, { force: true });
  };
  return { server, address, health, setServing, shutdown };
}
