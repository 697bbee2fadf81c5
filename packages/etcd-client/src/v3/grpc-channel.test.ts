// The v3 client's own gRPC transport against a real etcd and against loopback sockets that
// misbehave: status from Trailers-Only answers, "never sent" for refused connections (so even a
// write may go to the next endpoint), deadlines, the handshake timeout, the response size limit.
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdCluster } from '@berth/common';
import { EtcdV3Client } from '..';
import { KVService, RangeRequest } from '../gen/etcdserverpb/rpc';
import { startEtcd, uniquePrefix } from './fixture';
import { Code, GrpcChannel, frameMessage, type GrpcError } from './grpc-channel';

let etcd: EtcdCluster;
const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) await new Promise((r) => s.close(r));
  await etcd?.destroy();
});

const options = { secure: false, keepAliveTimeMs: 10_000, keepAliveTimeoutMs: 5_000, maxReceiveMessageLength: 64 << 20 };
const target = () => new URL(etcd.endpoints[0]).host;

function call(ch: GrpcChannel, path: string, msg: Uint8Array, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => ch.unary(path, frameMessage(msg), undefined, Date.now() + timeoutMs, (err, res) => (err ? reject(err) : resolve(res!))));
}

/** A loopback port that accepts connections and never answers (like a paused process). */
async function silentPort(): Promise<number> {
  const s = net.createServer((sock) => { sockets.push(sock); sock.on('error', () => undefined); });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as net.AddressInfo).port;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('GrpcChannel', () => {
  it('decodes a real answer, and an error status sent in the only HEADERS frame', async () => {
    const ch = new GrpcChannel(target(), options);
    try {
      const res = await call(ch, KVService.range.path, RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from('/nothing-here') })).finish());
      expect(Number(KVService.range.responseDeserialize(res).header!.revision)).toBeGreaterThan(0);
      const err = await call(ch, '/etcdserverpb.KV/NoSuchMethod', new Uint8Array()).catch((e: GrpcError) => e);
      expect(err).toMatchObject({ code: Code.UNIMPLEMENTED, notSent: false });
      expect((err as GrpcError).details).toMatch(/NoSuchMethod/);
    } finally {
      ch.close();
    }
  });

  it('a refused connection fails fast as never sent; a write then goes to the next endpoint', async () => {
    const port = await closedPort();
    const ch = new GrpcChannel(`127.0.0.1:${port}`, options);
    try {
      const err = await call(ch, KVService.put.path, new Uint8Array()).catch((e: GrpcError) => e);
      expect(err).toMatchObject({ code: Code.UNAVAILABLE, notSent: true });
      expect((err as GrpcError).details).toMatch(/ECONNREFUSED/);
    } finally {
      ch.close();
    }
    const c = new EtcdV3Client({ endpoints: [`http://127.0.0.1:${port}`, etcd.endpoints[0]] });
    try {
      const k = `${uniquePrefix('refused')}/k`;
      await c.put(k, 'v');
      expect((await c.get(k))?.value.toString()).toBe('v');
      expect(c.activeEndpoint).toBe(etcd.endpoints[0]);
    } finally {
      c.close();
    }
  });

  it('a silent peer: unary calls end at their deadline, streams at the handshake timeout', async () => {
    const port = await silentPort();
    const ch = new GrpcChannel(`127.0.0.1:${port}`, { ...options, keepAliveTimeoutMs: 600 });
    try {
      const t0 = Date.now();
      const err = await call(ch, KVService.range.path, new Uint8Array(), 250).catch((e: GrpcError) => e);
      expect(err).toMatchObject({ code: Code.DEADLINE_EXCEEDED });
      expect(Date.now() - t0).toBeLessThan(5000);
      const stream = ch.bidi('/etcdserverpb.Watch/Watch', (b: Uint8Array) => b, (b: Buffer) => b, undefined);
      const streamErr = await new Promise<GrpcError>((resolve) => stream.on('error', resolve));
      expect(streamErr).toMatchObject({ code: Code.UNAVAILABLE, notSent: true });
      expect(streamErr.details).toMatch(/handshake/);
    } finally {
      ch.close();
    }
  });

  it('refuses a response larger than maxReceiveMessageLength and stays usable', async () => {
    const p = uniquePrefix('big');
    const c = new EtcdV3Client({ endpoints: etcd.endpoints });
    try {
      await Promise.all(Array.from({ length: 8 }, (_, i) => c.put(`${p}/${i}`, 'x'.repeat(4096))));
    } finally {
      c.close();
    }
    const ch = new GrpcChannel(target(), { ...options, maxReceiveMessageLength: 16 * 1024 });
    try {
      const range = (limit: number) => RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from(`${p}/`), rangeEnd: Buffer.from(`${p}0`), limit: BigInt(limit) })).finish();
      const err = await call(ch, KVService.range.path, range(0)).catch((e: GrpcError) => e);
      expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
      const small = KVService.range.responseDeserialize(await call(ch, KVService.range.path, range(2)));
      expect(small.kvs).toHaveLength(2);
    } finally {
      ch.close();
    }
  });
});
