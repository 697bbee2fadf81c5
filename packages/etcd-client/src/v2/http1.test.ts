// The v2 client's own HTTP/1.1 exchange, against a loopback server that answers the way real
// servers may (every framing, split anywhere, closes, stalls): pure protocol logic beside the
// real-etcd tests of keys.test.ts, secure.test.ts and cluster.test.ts, which use it for every call.
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { H1Error, H1Pool } from './http1';

interface Server { port: number; requests: string[]; connections: number; close(): Promise<void> }
const open: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (open.length) await open.pop()!();
});

/** A server whose `answer` gets each request's head and the socket to write the answer on. */
async function server(answer: (head: string, s: net.Socket, n: number) => void): Promise<Server> {
  const sockets = new Set<net.Socket>();
  const st: Server = { port: 0, requests: [], connections: 0, close: async () => undefined };
  const srv = net.createServer((s) => {
    st.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        const len = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        st.requests.push(buf.slice(0, end + 4 + len));
        buf = buf.slice(end + 4 + len);
        answer(head, s, st.requests.length);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  st.port = (srv.address() as net.AddressInfo).port;
  st.close = () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); });
  open.push(st.close);
  return st;
}

function pool(port: number, max = 4, timeoutMs = 2000): H1Pool {
  const p = new H1Pool({ host: '127.0.0.1', port, secure: false }, max, timeoutMs);
  open.push(() => p.destroy());
  return p;
}

/** Writes `text` one byte per write, each on its own tick: every split point is exercised. */
async function trickle(s: net.Socket, text: string): Promise<void> {
  for (const ch of Buffer.from(text)) {
    s.write(Buffer.of(ch));
    await new Promise((r) => setImmediate(r));
  }
}

const ETCD_HEAD = 'X-Etcd-Cluster-Id: cdf818194e3a8c32\r\nX-Etcd-Index: 42\r\nX-Raft-Index: 77\r\nX-Raft-Term: 3\r\n';

describe('H1Pool', () => {
  it('reads a Content-Length answer, with the etcd headers, split at every byte', async () => {
    const body = '{"action":"get","node":{"key":"/a","value":"é"}}';
    const srv = await server((_h, s) => void trickle(s, `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n${ETCD_HEAD}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`));
    const r = await pool(srv.port).request('GET', '/v2/keys/a?quorum=true', '', undefined, true);
    expect(r).toEqual({ status: 200, etcd: { etcdIndex: 42, raftIndex: 77, raftTerm: 3, clusterId: 'cdf818194e3a8c32' }, body });
    expect(srv.requests[0]).toBe(`GET /v2/keys/a?quorum=true HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\n\r\n`);
  });

  it('reads a chunked answer with extensions and trailers, split at every byte, and reuses the connection', async () => {
    const srv = await server((_h, s, n) => void trickle(s, `HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n${ETCD_HEAD}\r\n5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld${n}\r\n0\r\nX-Trailer: 1\r\n\r\n`));
    const p = pool(srv.port);
    expect((await p.request('PUT', '/v2/keys/a', 'Content-Type: application/x-www-form-urlencoded\r\n', 'value=x', false)).body).toBe('hello world1');
    expect((await p.request('GET', '/v2/keys/a', '', undefined, true)).body).toBe('hello world2');
    expect(srv.connections).toBe(1);
    expect(srv.requests[0]).toContain('\r\nContent-Length: 7\r\n\r\nvalue=x');
  });

  it('reads an answer without a length until the close, and a Connection: close answer, then connects anew', async () => {
    const srv = await server((_h, s, n) => {
      if (n === 1) s.end('HTTP/1.1 200 OK\r\n\r\nuntil-close');
      else s.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}');
    });
    const p = pool(srv.port);
    expect(await p.request('GET', '/a', '', undefined, true)).toMatchObject({ status: 200, body: 'until-close' });
    expect(await p.request('GET', '/b', '', undefined, true)).toMatchObject({ status: 404, body: '{}' });
    expect(srv.connections).toBe(2);
  });

  it('skips a 100 Continue and answers 204 without a body', async () => {
    const srv = await server((_h, s) => s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-Etcd-Index: 9\r\n\r\n'));
    const r = await pool(srv.port).request('DELETE', '/v2/members/1', '', undefined, false);
    expect(r).toMatchObject({ status: 204, body: '', etcd: { etcdIndex: 9 } });
  });

  it('a GET on a keep-alive connection the server closed while idle goes out again on a new one; a PUT reports it', async () => {
    // The server answers, then closes each connection a moment later without saying so.
    const srv = await server((_h, s) => { s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'); setTimeout(() => s.destroy(), 20); });
    const p = pool(srv.port);
    await p.request('GET', '/a', '', undefined, true);
    await new Promise((r) => setTimeout(r, 60));
    // The pool saw that close (the socket is gone from it), so this goes on a new connection too.
    expect((await p.request('GET', '/b', '', undefined, true)).body).toBe('ok');
    expect(srv.connections).toBe(2);
  });

  it('a request whose reused connection dies before any answer byte: a write fails as stale (it may have been applied), a GET goes out again', async () => {
    const srv = await server((_h, s, n) => {
      // Requests 2 and 4 arrive on reused connections, which then die without an answer.
      if (n === 2 || n === 4) s.destroy();
      else s.write(`HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok${n}`);
    });
    const p = pool(srv.port);
    await p.request('GET', '/a', '', undefined, true);
    const err = await p.request('PUT', '/b', '', 'value=1', false).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(H1Error);
    expect(err).toMatchObject({ stale: true, notSent: false });
    expect((await p.request('GET', '/c', '', undefined, true)).body).toBe('ok3');
    expect((await p.request('GET', '/d', '', undefined, true)).body).toBe('ok5');
    expect(srv.requests.map((r) => r.split(' ')[1])).toEqual(['/a', '/b', '/c', '/d', '/d']);
  });

  it('a refused connection is reported as not sent', async () => {
    const srv = await server(() => undefined);
    const port = srv.port;
    await srv.close();
    const err = await pool(port).request('PUT', '/a', '', 'v', false).catch((e: unknown) => e);
    expect(err).toMatchObject({ notSent: true, code: 'ECONNREFUSED' });
  });

  it('times out an answer that does not start, and fails malformed answers', async () => {
    const srv = await server((h, s) => {
      if (h.startsWith('GET /stall')) return;
      if (h.startsWith('GET /junk')) s.write('SSH-2.0-OpenSSH\r\n\r\n');
      if (h.startsWith('GET /len')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ntoo long');
      if (h.startsWith('GET /chunk')) s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n');
    });
    const p = pool(srv.port, 4, 150);
    const t0 = Date.now();
    await expect(p.request('GET', '/stall', '', undefined, true)).rejects.toMatchObject({ code: 'ETIMEDOUT', stale: false });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    await expect(p.request('GET', '/junk', '', undefined, true)).rejects.toThrow(/bad HTTP response from etcd: status line/);
    await expect(p.request('GET', '/len', '', undefined, true)).rejects.toThrow(/more bytes than content-length/);
    await expect(p.request('GET', '/chunk', '', undefined, true)).rejects.toThrow(/chunk size "zz"/);
  });

  it('refuses a path that could split the request, before sending anything', async () => {
    const srv = await server(() => undefined);
    await expect(pool(srv.port).request('GET', '/a HTTP/1.1\r\nX-Evil: 1', '', undefined, true)).rejects.toMatchObject({ notSent: true, code: 'EINVAL' });
    expect(srv.connections).toBe(0);
  });

  it('holds at most maxSockets connections and queues the rest in order', async () => {
    const srv = await server((h, s) => setTimeout(() => s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${h.split(' ')[1].length}\r\n\r\n${h.split(' ')[1]}`), 5));
    const p = pool(srv.port, 3);
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => p.request('GET', `/k${i}`, '', undefined, true)));
    expect(got.map((r) => r.body)).toEqual(Array.from({ length: 20 }, (_, i) => `/k${i}`));
    expect(srv.connections).toBe(3);
  });
});
