// A small HTTP/1.1 keep-alive client for the v2 keys API's request/response calls (watches keep
// node:http, which suits long polls). Node's http client (Agent, ClientRequest, IncomingMessage
// streams, the header objects) was 75-80 % of the v2 client's CPU per call against a local etcd,
// which made the client the bottleneck whenever it shares the machine with etcd. This one writes
// each request as one string and parses each response from the socket's buffers in place: the
// status line, Content-Length or chunked bodies, `Connection: close`, and the four X-Etcd/X-Raft
// headers; nothing else is kept.
//
// Connections: up to maxSockets per endpoint, reused last-in-first-out (the warmest socket; the
// others may idle out), requests queued in order beyond that. One request per connection at a
// time (no pipelining), so a response always belongs to the request in flight.
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { EtcdHeaders } from './transport';

export interface H1Response {
  status: number;
  etcd: EtcdHeaders;
  body: string;
}

export interface H1Target {
  host: string;
  port: number;
  secure: boolean;
  tls?: tls.ConnectionOptions;
}

/**
 * A failed exchange. `notSent`: the request certainly did not reach the server (the connection
 * was never made), so any request may be sent elsewhere. `stale`: a reused keep-alive connection
 * turned out closed before any byte of the answer came back (the server closed it while idle).
 */
export class H1Error extends Error {
  constructor(message: string, readonly notSent: boolean, readonly code?: string, readonly stale = false) {
    super(message);
  }
}

const CRLF = 0x0a0d; // "\r\n" read as a little-endian uint16
const HEADER_END = Buffer.from('\r\n\r\n');
/** A response head larger than this is not etcd's: the connection is dropped. */
const MAX_HEAD = 64 * 1024;

/** What one request is waiting for. */
interface Pending {
  head: string;
  body: string | undefined;
  deadline: number;
  resolve(r: H1Response): void;
  reject(e: H1Error): void;
}

const enum Body { None, Length, Chunked, UntilClose }

/** One keep-alive connection and the parser state of the response in flight on it. */
class Conn {
  readonly socket: net.Socket;
  connected = false;
  /** Requests this connection has carried; > 0 when reused. */
  served = 0;
  cur: Pending | undefined;
  private buf: Buffer | undefined;
  private gotBytes = false;
  // Parsed head of the current response.
  private status = 0;
  private etcd: EtcdHeaders = { etcdIndex: 0, raftIndex: 0, raftTerm: 0, clusterId: '' };
  private mode = Body.None;
  private remaining = 0;
  private keepAlive = true;
  private headDone = false;
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** Chunked decoding: inside a chunk's data (remaining bytes) or between chunks. */
  private inChunk = false;
  private trailers = false;
  /** Closed or failed: the pool has let go of it. */
  gone = false;

  constructor(private readonly pool: H1Pool, t: H1Target) {
    const s = t.secure ? tls.connect({ ...t.tls, host: t.host, port: t.port }) : net.connect({ host: t.host, port: t.port });
    this.socket = s;
    s.setNoDelay(true);
    s.once(t.secure ? 'secureConnect' : 'connect', () => {
      this.connected = true;
      if (this.cur) this.write(this.cur);
    });
    s.on('data', (d: Buffer) => this.onData(d));
    s.on('error', (e: NodeJS.ErrnoException) => this.fail(e.message, e.code));
    s.on('close', () => {
      // A body that runs until the close is complete when the close comes.
      if (this.cur && this.headDone && this.mode === Body.UntilClose && !this.gone) {
        const p = this.cur;
        this.cur = undefined;
        this.gone = true;
        this.pool.dropped(this);
        p.resolve(this.response());
        return;
      }
      this.fail('connection closed before the response ended', 'ECONNRESET');
    });
  }

  send(p: Pending): void {
    this.cur = p;
    this.gotBytes = false;
    this.headDone = false;
    if (this.connected) this.write(p);
  }

  private write(p: Pending): void {
    this.socket.write(p.body === undefined ? p.head : p.head + p.body);
  }

  /** The socket failed or closed: the request in flight (if any) fails; the connection is gone. */
  fail(message: string, code?: string, staleable = true): void {
    const p = this.cur;
    this.cur = undefined;
    this.socket.destroy();
    if (!this.gone) { this.gone = true; this.pool.dropped(this); }
    if (!p) return;
    p.reject(new H1Error(message, !this.connected, code, staleable && this.connected && this.served > 0 && !this.gotBytes));
  }

  private protocolError(message: string): void {
    this.fail(`bad HTTP response from etcd: ${message}`, 'EPROTO', false);
  }

  private onData(d: Buffer): void {
    if (!this.cur) {
      // Bytes while idle are not an answer to anything: the connection cannot be trusted.
      this.protocolError('data on an idle connection');
      return;
    }
    this.gotBytes = true;
    let b = this.buf ? Buffer.concat([this.buf, d]) : d;
    this.buf = undefined;
    if (!this.headDone) {
      const end = b.indexOf(HEADER_END);
      if (end < 0) {
        if (b.length > MAX_HEAD) return this.protocolError('response head too large');
        this.buf = b;
        return;
      }
      if (!this.parseHead(b.toString('latin1', 0, end))) return;
      b = b.subarray(end + 4);
      if (this.status >= 100 && this.status < 200) {
        // An interim answer (100 Continue): the real one follows.
        this.headDone = false;
        if (b.length) this.onData(b);
        return;
      }
    }
    this.onBody(b);
  }

  /** Parses the status line and the headers that matter; false when it failed the connection. */
  private parseHead(head: string): boolean {
    // "HTTP/1.1 200 OK"
    if (!head.startsWith('HTTP/1.')) { this.protocolError(`status line ${JSON.stringify(head.slice(0, 40))}`); return false; }
    const status = Number(head.slice(9, 12));
    if (!(status >= 100 && status <= 999) || (head.length > 12 && head.charCodeAt(12) !== 32 && head.charCodeAt(12) !== 13)) { this.protocolError(`status line ${JSON.stringify(head.slice(0, 40))}`); return false; }
    this.status = status;
    this.keepAlive = head.charCodeAt(7) === 0x31; // HTTP/1.1 keeps the connection unless told otherwise
    const etcd: EtcdHeaders = { etcdIndex: 0, raftIndex: 0, raftTerm: 0, clusterId: '' };
    let length = -1;
    let chunked = false;
    let pos = head.indexOf('\r\n');
    while (pos >= 0) {
      const next = head.indexOf('\r\n', pos + 2);
      const line = next < 0 ? head.slice(pos + 2) : head.slice(pos + 2, next);
      pos = next;
      const colon = line.indexOf(':');
      if (colon <= 0) { this.protocolError(`header line ${JSON.stringify(line.slice(0, 40))}`); return false; }
      const n = colon; // name length
      // Only names of these lengths matter: skip the rest without building strings.
      if (n !== 10 && n !== 11 && n !== 12 && n !== 14 && n !== 17) continue;
      const name = line.slice(0, n).toLowerCase();
      const value = line.slice(colon + 1).trim();
      switch (name) {
        case 'x-etcd-index': etcd.etcdIndex = Number(value); break;
        case 'x-raft-index': etcd.raftIndex = Number(value); break;
        case 'x-raft-term': etcd.raftTerm = Number(value); break;
        case 'x-etcd-cluster-id': etcd.clusterId = value; break;
        case 'content-length': {
          if (!/^\d+$/.test(value) || (length >= 0 && Number(value) !== length)) { this.protocolError(`content-length ${JSON.stringify(value)}`); return false; }
          length = Number(value);
          break;
        }
        case 'transfer-encoding': {
          const codings = value.toLowerCase().split(',').map((x) => x.trim());
          if (codings[codings.length - 1] !== 'chunked' || codings.length > 1) { this.protocolError(`transfer-encoding ${JSON.stringify(value)}`); return false; }
          chunked = true;
          break;
        }
        case 'connection': {
          const v = value.toLowerCase();
          if (v.includes('close')) this.keepAlive = false;
          else if (v.includes('keep-alive')) this.keepAlive = true;
          break;
        }
      }
    }
    this.etcd = etcd;
    this.headDone = true;
    // The timeout is for the answer to start, as a header timeout: a long body is not cut.
    if (this.cur) this.cur.deadline = Infinity;
    this.parts = [];
    this.partsLen = 0;
    this.inChunk = false;
    this.trailers = false;
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) this.mode = Body.None;
    else if (chunked) this.mode = Body.Chunked;
    else if (length >= 0) { this.mode = Body.Length; this.remaining = length; }
    else { this.mode = Body.UntilClose; this.keepAlive = false; }
    return true;
  }

  private onBody(b: Buffer): void {
    switch (this.mode) {
      case Body.None:
        if (b.length) return this.protocolError('bytes after a response without a body');
        return this.done();
      case Body.UntilClose:
        if (b.length) this.take(b);
        return;
      case Body.Length:
        if (b.length > this.remaining) return this.protocolError('more bytes than content-length');
        if (b.length) { this.take(b); this.remaining -= b.length; }
        if (this.remaining === 0) this.done();
        return;
      case Body.Chunked:
        return this.onChunked(b);
    }
  }

  private onChunked(b: Buffer): void {
    let i = 0;
    while (i < b.length) {
      if (this.inChunk) {
        const n = Math.min(this.remaining, b.length - i);
        if (n > 0) { this.take(b.subarray(i, i + n)); this.remaining -= n; i += n; }
        if (this.remaining > 0) return;
        // The chunk's data ends with CRLF.
        if (b.length - i < 2) { this.buf = b.subarray(i); return; }
        if (b.readUInt16LE(i) !== CRLF) return this.protocolError('chunk not followed by CRLF');
        i += 2;
        this.inChunk = false;
        continue;
      }
      const eol = b.indexOf('\r\n', i);
      if (eol < 0) {
        if (b.length - i > 4096) return this.protocolError('chunk header too long');
        this.buf = b.subarray(i);
        return;
      }
      const line = b.toString('latin1', i, eol);
      i = eol + 2;
      if (this.trailers) {
        if (line === '') {
          if (i !== b.length) return this.protocolError('bytes after the last chunk');
          return this.done();
        }
        continue; // a trailer field: etcd sends none we need
      }
      const semi = line.indexOf(';');
      const hex = (semi < 0 ? line : line.slice(0, semi)).trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(hex)) return this.protocolError(`chunk size ${JSON.stringify(hex)}`);
      const size = parseInt(hex, 16);
      if (size === 0) { this.trailers = true; continue; }
      this.inChunk = true;
      this.remaining = size;
    }
  }

  private take(b: Buffer): void {
    this.parts.push(b);
    this.partsLen += b.length;
  }

  private response(): H1Response {
    const body = this.parts.length === 1 ? this.parts[0].toString('utf8') : this.parts.length === 0 ? '' : Buffer.concat(this.parts, this.partsLen).toString('utf8');
    this.parts = [];
    return { status: this.status, etcd: this.etcd, body };
  }

  private done(): void {
    const p = this.cur!;
    this.cur = undefined;
    this.served++;
    const r = this.response();
    if (this.keepAlive) this.pool.release(this);
    else { this.gone = true; this.socket.destroy(); this.pool.dropped(this); }
    p.resolve(r);
  }
}

/** Connections to one endpoint. */
export class H1Pool {
  private readonly free: Conn[] = [];
  private readonly all = new Set<Conn>();
  private readonly queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly hostHeader: string;

  constructor(private readonly target: H1Target, private readonly maxSockets: number, private readonly headerTimeoutMs: number) {
    this.hostHeader = `Host: ${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}\r\n`;
  }

  /**
   * Sends one request. `headers` are complete header lines ("Name: value\r\n"), already checked;
   * the path must be a request-target without spaces or control characters (the caller encodes
   * keys). A request on a reused connection that finds it closed before any answer byte is sent
   * again on a new connection when `idempotent` (a GET); otherwise it fails with `stale` set.
   */
  request(method: string, path: string, headers: string, body: string | undefined, idempotent: boolean): Promise<H1Response> {
    if (this.closed) return Promise.reject(new H1Error('client closed', true, 'ECLOSED'));
    // eslint-disable-next-line no-control-regex
    if (/[\s\x00-\x1f\x7f]/.test(path)) return Promise.reject(new H1Error(`request path ${JSON.stringify(path)} has spaces or control characters`, true, 'EINVAL'));
    const head = `${method} ${path} HTTP/1.1\r\n${this.hostHeader}${headers}${body !== undefined ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ''}\r\n`;
    return new Promise<H1Response>((resolve, reject) => {
      const p: Pending = {
        head, body, deadline: Date.now() + this.headerTimeoutMs, resolve,
        reject: (e) => {
          if (e.stale && idempotent && !this.closed) {
            // Once, on a connection made for it: the server closed the idle one under us.
            p.reject = reject;
            this.start(p, true);
            return;
          }
          reject(e);
        },
      };
      this.start(p, false);
    });
  }

  private start(p: Pending, fresh: boolean): void {
    let c = fresh ? undefined : this.free.pop();
    if (!c) {
      if (this.all.size >= this.maxSockets && !fresh) { this.queue.push(p); this.arm(); return; }
      c = new Conn(this, this.target);
      this.all.add(c);
    }
    c.send(p);
    this.arm();
  }

  /** A connection finished a response and can carry the next request. */
  release(c: Conn): void {
    const next = this.queue.shift();
    if (next) { c.send(next); return; }
    this.free.push(c);
  }

  /** A connection is gone (closed, failed, or `Connection: close`). */
  dropped(c: Conn): void {
    this.all.delete(c);
    const i = this.free.indexOf(c);
    if (i >= 0) this.free.splice(i, 1);
    // A queued request takes the freed slot on a new connection.
    const next = !this.closed && this.all.size < this.maxSockets ? this.queue.shift() : undefined;
    if (next) this.start(next, true);
  }

  /**
   * The header timeout: one coarse timer for the whole pool instead of one per request (a timer
   * per call was a measurable part of the client's CPU). A request waiting longer than
   * headerTimeoutMs for its answer fails with ETIMEDOUT, within a tick of ~1/8 of the timeout.
   */
  private arm(): void {
    if (this.timer) return;
    const tick = Math.max(5, Math.min(250, Math.floor(this.headerTimeoutMs / 8)));
    this.timer = setInterval(() => this.sweep(), tick);
    this.timer.unref();
  }

  private sweep(): void {
    const now = Date.now();
    let busy = this.queue.length > 0;
    for (const c of this.all) {
      if (!c.cur) continue;
      busy = true;
      if (c.cur.deadline <= now) c.fail(`no response headers within ${this.headerTimeoutMs} ms`, 'ETIMEDOUT', false);
    }
    for (let i = 0; i < this.queue.length; i++) {
      const p = this.queue[i];
      if (p.deadline > now) continue;
      this.queue.splice(i--, 1);
      p.reject(new H1Error(`no connection free within ${this.headerTimeoutMs} ms`, true, 'ETIMEDOUT'));
    }
    if (!busy && this.timer) { clearInterval(this.timer); this.timer = undefined; }
  }

  /** Closes every connection; requests in flight fail. */
  destroy(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const p of this.queue.splice(0)) p.reject(new H1Error('client closed', true, 'ECLOSED'));
    for (const c of [...this.all]) c.socket.destroy();
  }
}
