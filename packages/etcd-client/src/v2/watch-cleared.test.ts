// Error 400 "watcher is cleared due to etcd recovery" on a real etcd. etcd 3.4/3.5 define the
// code but never send it: a long-poll watcher is removed after its first event (so it cannot
// overflow), a streaming watcher that overflows is dropped by closing its channel (the
// response ends empty), and a snapshot recovery clones the watcher hub without its watchers.
// So the answer is injected by a loopback proxy in front of the real member, exactly as etcd's
// error document would be (HTTP 400, errorCode 400, X-Etcd-Index), once; everything else —
// the resync read and the polls after it — is served by etcd itself.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdCluster } from '@berth/common';
import { EtcdV2Client, type V2Response } from '..';
import { startEtcd, uniquePrefix } from '../v3/fixture';

let etcd: EtcdCluster;
let proxy: http.Server;
let proxyUrl: string;
/** The next long poll on this key prefix is answered with error 400. */
let clearNextWatchOf: string | undefined;
let injected = 0;

beforeAll(async () => {
  etcd = await startEtcd();
  const target = new URL(etcd.endpoints[0]);
  const agent = new http.Agent({ keepAlive: true });
  proxy = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (clearNextWatchOf && url.startsWith(`/v2/keys${clearNextWatchOf}`) && url.includes('wait=true')) {
      clearNextWatchOf = undefined;
      injected++;
      // The index etcd would put in the document and header: its current one.
      http.get({ host: target.hostname, port: target.port, path: '/v2/keys/', agent }, (idx) => {
        idx.resume();
        const index = String(idx.headers['x-etcd-index']);
        res.writeHead(400, { 'content-type': 'application/json', 'x-etcd-index': index });
        res.end(JSON.stringify({ errorCode: 400, message: 'watcher is cleared due to etcd recovery', cause: url.split('?')[0].slice('/v2/keys'.length), index: Number(index) }));
      });
      return;
    }
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: url, headers: req.headers, agent }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});
afterAll(async () => {
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  await etcd?.destroy();
});

describe('EtcdV2Client watch', () => {
  it('error 400 (watcher cleared): re-reads the key, reports the resync, and goes on with nothing lost', async () => {
    const key = `${uniquePrefix('cleared')}/k`;
    const direct = new EtcdV2Client({ endpoints: etcd.endpoints });
    const viaProxy = new EtcdV2Client({ endpoints: [proxyUrl] });
    try {
      const first = await direct.set(key, 'a');
      clearNextWatchOf = key;
      // Written while the watcher is "cleared": only the resync can tell about them.
      await direct.set(key, 'b');
      const c = await direct.set(key, 'c');
      const w = viaProxy.watch(key, { afterIndex: first.node.modifiedIndex });
      const got: V2Response[] = [];
      for await (const r of w) {
        got.push(r);
        if (got.length === 1) await direct.set(key, 'd');
        if (got.length === 2) break;
      }
      expect(injected).toBe(1);
      expect(w.resyncs).toBe(1);
      expect(got[0].action).toBe('resync');
      expect(got[0].node.value).toBe('c');
      expect(got[0].node.modifiedIndex).toBe(c.node.modifiedIndex);
      expect(got[0].etcdIndex).toBeGreaterThanOrEqual(c.node.modifiedIndex);
      expect(got[1]).toMatchObject({ action: 'set', node: { value: 'd' }, prevNode: { value: 'c' } });
    } finally {
      direct.close();
      viaProxy.close();
    }
  });
});
