// Test support shared by the v2, v3 and recipe tests: a real etcd (EtcdCluster from
// @berth/common) in a unique temporary directory, always torn down, and unique key prefixes so
// tests sharing one etcd never see each other's keys.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdCluster, type EtcdClusterOptions } from '@berth/common';
import { EtcdV2Client } from '../v2/client';
import { EtcdV3Client } from './client';

export async function startEtcd(opts: Partial<EtcdClusterOptions> = {}): Promise<EtcdCluster> {
  const dataRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-etcd-test-'));
  return EtcdCluster.start({ dataRoot, removeDataOnDestroy: true, enableV2: true, ...opts });
}

/**
 * A real etcd (v2 API on) with a v2 and a v3 client on it, shared by the tests of one file:
 * `beforeAll(() => env.start())`, `afterAll(() => env.destroy())`. The fields are set once
 * start() has run; destroy() closes what was made, also after a start that failed half-way.
 */
export class EtcdWithClients {
  etcd!: EtcdCluster;
  v2!: EtcdV2Client;
  v3!: EtcdV3Client;

  async start(opts: Partial<EtcdClusterOptions> = {}): Promise<void> {
    this.etcd = await startEtcd(opts);
    this.v3 = new EtcdV3Client({ endpoints: this.etcd.endpoints });
    this.v2 = new EtcdV2Client({ endpoints: this.etcd.endpoints });
  }

  async destroy(): Promise<void> {
    this.v3?.close();
    this.v2?.close();
    await this.etcd?.destroy();
  }
}

let counter = 0;
/** A key prefix no other test (or earlier run) uses. */
export function uniquePrefix(name: string): string {
  return `/t-${process.pid.toString(36)}-${Date.now().toString(36)}-${(counter++).toString(36)}-${name}`;
}

export async function waitUntil(fn: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A loopback TCP proxy in front of one etcd member, to cut a client off (every connection
 * reset, new ones refused) and let it back in — a network fault without touching etcd.
 */
export interface CutProxy {
  url: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startCutProxy(targetUrl: string): Promise<CutProxy> {
  const net = await import('node:net');
  const target = new URL(targetUrl);
  const sockets = new Set<import('node:net').Socket>();
  let server: import('node:net').Server | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as import('node:net').AddressInfo).port; s.close(() => resolve(p)); });
  });
  const listen = () => new Promise<void>((resolve, reject) => {
    server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port), target.hostname);
      sockets.add(client);
      sockets.add(upstream);
      const drop = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream).pipe(client);
    });
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const stop = () => new Promise<void>((resolve) => {
    for (const s of sockets) s.resetAndDestroy();
    sockets.clear();
    if (!server) { resolve(); return; }
    server.close(() => resolve());
    server = undefined;
  });
  await listen();
  return { url: `http://127.0.0.1:${port}`, cut: stop, restore: listen, close: stop };
}

/** etcd refuses membership changes ("unhealthy cluster") until every member has been
 *  connected for 5 s; that rejection happens before anything is applied, so retry it. */
export async function untilConnected<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline || !/unhealthy cluster|Internal Server Error/.test((e as Error).message)) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
