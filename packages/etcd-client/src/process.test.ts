// berth-etcd-client as a real process against a real etcd: NOT_SERVING while etcd is
// unreachable, SERVING once it answers, NOT_SERVING again when it dies; clean exit on SIGTERM.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdCluster, checkHealth, freePort, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreClient, decodeObject } from '@berth/apimachinery';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-etcd-client.js');

async function waitFor(fn: () => Promise<boolean>, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe('berth-etcd-client process', () => {
  let dir: string;
  let svc: ServiceProcess | undefined;
  let etcd: EtcdCluster | undefined;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-etcd-client-')); });
  afterEach(async () => {
    await svc?.stop();
    await etcd?.destroy();
    svc = undefined;
    etcd = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('follows etcd health and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const sock = `unix://${path.join(dir, 'etcd-client.sock')}`;
    svc = startServiceProcess(bin, ['--listen', sock, '--state-dir', path.join(dir, 'state'), '--etcd-endpoints', `http://127.0.0.1:${port}`, '--etcd-health-interval-ms', '200']);
    expect(await waitFor(async () => (await checkHealth(sock)) === 'NOT_SERVING'), svc.output()).toBe(true);
    etcd = await EtcdCluster.start({ dataRoot: path.join(dir, 'etcd'), clientPorts: [port] });
    expect(await waitServing(sock), svc.output()).toBe('SERVING');
    expect(await checkHealth(sock, 'berth.store.v1.Store')).toBe('SERVING');
    await etcd.kill(0);
    expect(await waitFor(async () => (await checkHealth(sock)) === 'NOT_SERVING'), svc.output()).toBe(true);
    expect(await svc.stop()).toEqual({ code: 0, signal: null });
  });

  it('serves the Store on the v2 backend with --etcd-api=v2', async () => {
    etcd = await EtcdCluster.start({ dataRoot: path.join(dir, 'etcd'), enableV2: true });
    const sock = `unix://${path.join(dir, 'etcd-client.sock')}`;
    svc = startServiceProcess(bin, ['--listen', sock, '--state-dir', path.join(dir, 'state'), '--etcd-endpoints', etcd.endpoints.join(','), '--etcd-api', 'v2', '--etcd-health-interval-ms', '200']);
    expect(await waitServing(sock), svc.output()).toBe('SERVING');
    const client = new StoreClient({ target: sock });
    try {
      const created = await client.create(decodeObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'v2-check' }, data: { a: '1' } }));
      const got = await client.get('configmaps', 'default', 'v2-check');
      expect(got.configMap!.data).toEqual({ a: '1' });
      expect(got.configMap!.metadata!.resourceVersion).toBe(created.configMap!.metadata!.resourceVersion);
      expect((await client.whoAmI()).username).toBe('system:admin');
    } finally {
      client.close();
    }
  });

  it('rejects a malformed endpoint naming the flag', async () => {
    svc = startServiceProcess(bin, ['--listen', `unix://${path.join(dir, 's.sock')}`, '--etcd-endpoints', 'not a url']);
    expect((await svc.exited).code).toBe(2);
    expect(svc.output()).toMatch(/berth-etcd-client: error: --etcd-endpoints\.0: each endpoint must be a URL/);
  });
});
