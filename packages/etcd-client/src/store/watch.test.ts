// Watch across etcd member failures (3 members, one killed mid-stream: zero lost or repeated
// events) and the shared informer over the real gRPC API (list + watch + cache, relist after
// 410 Expired).
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core, store } from '@berth/api';
import { Informer, StoreClient, decodeObject, type UserInfo } from '@berth/apimachinery';
import { AlreadyExistsError, BerthError, serve, type RunningServer } from '@berth/common';
import { afterEach, describe, expect, it } from 'vitest';
import { EtcdV3Client } from '../v3';
import { startEtcd, uniquePrefix, waitUntil } from '../v3/fixture';
import { Authenticator } from './authn';
import { EtcdV3Backend } from './backend-v3';
import { Registry } from './registry';
import { storeImplementation } from './server';

const admin: UserInfo = { name: 'admin', groups: ['system:masters', 'system:authenticated'], authenticator: 'test' };
const cm = (name: string, data: Record<string, string> = {}) => decodeObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data });

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** Creates, retrying through a member failure; a retry that finds the object already made counts. */
async function createRetrying(reg: Registry, obj: core.Object): Promise<void> {
  for (let i = 0; ; i++) {
    try { await reg.create(structuredClone(obj), admin); return; } catch (e) {
      if (e instanceof AlreadyExistsError && i > 0) return;
      if (i > 50) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe('watch across an etcd member failure', () => {
  it('delivers every event exactly once while a member is killed and restarted', async () => {
    const etcd = await startEtcd({ members: 3 });
    cleanups.push(() => etcd.destroy());
    const client = new EtcdV3Client({ endpoints: etcd.endpoints, keepAliveTimeMs: 1000, keepAliveTimeoutMs: 1000 });
    cleanups.push(() => client.close());
    const prefix = uniquePrefix('failover');
    const reg = new Registry(new EtcdV3Backend(client), { prefix });
    cleanups.push(() => reg.close());
    await reg.start();
    const start = await reg.list(store.ListRequest.fromPartial({ resource: 'configmaps', namespace: 'default' }), admin);
    const ac = new AbortController();
    const seen: string[] = [];
    const rvs: number[] = [];
    const watching = (async () => {
      for await (const e of reg.watch(store.WatchRequest.fromPartial({ resource: 'configmaps', namespace: 'default', resourceVersion: start.resourceVersion }), admin, ac.signal)) {
        seen.push(`${e.type} ${e.object!.configMap!.metadata!.name}`);
        rvs.push(Number(e.object!.configMap!.metadata!.resourceVersion));
      }
    })();
    cleanups.push(() => ac.abort());
    const N = 150;
    // The member the client talks to is the one to kill, so the stream must move.
    const active = etcd.endpoints.indexOf(client.activeEndpoint.replace(/\/$/, ''));
    const victim = active >= 0 ? active : 0;
    for (let i = 0; i < N; i++) {
      if (i === 50) await etcd.kill(victim);
      if (i === 110) await etcd.restart(victim);
      await createRetrying(reg, cm(`c${String(i).padStart(3, '0')}`));
    }
    await waitUntil(() => seen.length >= N, 20_000, `${N} events (have ${seen.length})`);
    await new Promise((r) => setTimeout(r, 300)); // anything extra would arrive now
    ac.abort();
    await watching;
    expect(seen).toEqual(Array.from({ length: N }, (_, i) => `ADDED c${String(i).padStart(3, '0')}`));
    expect(new Set(rvs).size).toBe(N);
    expect([...rvs].sort((a, b) => a - b)).toEqual(rvs);
  }, 120_000);
});

describe('watch cache', () => {
  it('serves many watchers of a resource from one etcd watch, each event to each once', async () => {
    const etcd = await startEtcd();
    cleanups.push(() => etcd.destroy());
    const client = new EtcdV3Client({ endpoints: etcd.endpoints });
    cleanups.push(() => client.close());
    const backend = new EtcdV3Backend(client);
    const opened: string[] = [];
    const orig = backend.watch.bind(backend);
    backend.watch = (p, rev, sig) => { opened.push(p); return orig(p, rev, sig); };
    const reg = new Registry(backend, { prefix: uniquePrefix('hub') });
    cleanups.push(() => reg.close());
    await reg.start();
    const start = await reg.list(store.ListRequest.fromPartial({ resource: 'configmaps' }), admin);
    const ac = new AbortController();
    cleanups.push(() => ac.abort());
    const W = 20;
    // W concurrent watches on one signal, each listening until it ends: not a leak.
    setMaxListeners(W + 1, ac.signal);
    const got: string[][] = Array.from({ length: W }, () => []);
    const all = got.map(async (g, i) => {
      // Half from the list's version, half from "now" with the initial list.
      const req = i % 2 ? { resourceVersion: start.resourceVersion } : { resourceVersion: '0' };
      for await (const e of reg.watch(store.WatchRequest.fromPartial({ resource: 'configmaps', namespace: 'default', ...req }), admin, ac.signal)) {
        g.push(e.object!.configMap!.metadata!.name);
        if (g.length === 30) return;
      }
    });
    for (let i = 0; i < 30; i++) await reg.create(cm(`m${String(i).padStart(2, '0')}`), admin);
    await Promise.all(all);
    const want = Array.from({ length: 30 }, (_, i) => `m${String(i).padStart(2, '0')}`);
    for (const g of got) expect(g).toEqual(want);
    expect(opened.filter((p) => p.endsWith('/configmaps/'))).toHaveLength(1);
  }, 60_000);
});

describe('informer over the gRPC API', () => {
  it('lists, follows changes, resumes and relists after 410 Expired', async () => {
    const etcd = await startEtcd();
    cleanups.push(() => etcd.destroy());
    const client = new EtcdV3Client({ endpoints: etcd.endpoints });
    cleanups.push(() => client.close());
    const prefix = uniquePrefix('informer');
    // A one-batch watch cache, so that a version two changes old has to come from etcd.
    const reg = new Registry(new EtcdV3Backend(client), { prefix, bookmarkIntervalMs: 200, maxWatchSeconds: 2, watchCacheSize: 1 });
    cleanups.push(() => reg.close());
    await reg.start();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-informer-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const server: RunningServer = await serve({ listen: `unix://${path.join(dir, 's.sock')}`, services: [{ definition: store.StoreService, implementation: storeImplementation(reg, new Authenticator(reg), { localAdmin: true }) }] });
    cleanups.push(() => server.shutdown(500));
    const sc = new StoreClient({ target: server.address });
    cleanups.push(() => sc.close());

    await reg.create(cm('a', { v: '1' }), admin);
    await reg.create(cm('b', { v: '1' }), admin);
    const inf = new Informer(sc, { resource: 'configmaps', namespace: 'default' });
    cleanups.push(() => inf.stop());
    const log: string[] = [];
    inf.on('add', (o) => log.push(`add ${o.configMap!.metadata!.name}`));
    inf.on('update', (o, n) => log.push(`update ${n.configMap!.metadata!.name} ${n.configMap!.data.v}`));
    inf.on('delete', (o) => log.push(`delete ${o.configMap!.metadata!.name}`));
    await inf.start();
    expect(inf.list().map((o) => o.configMap!.metadata!.name).sort()).toEqual(['a', 'b']);
    const a = await reg.get(store.GetRequest.fromPartial({ resource: 'configmaps', namespace: 'default', name: 'a' }), admin);
    a.configMap!.data.v = '2';
    await reg.update(a, admin);
    await reg.delete(store.DeleteRequest.fromPartial({ resource: 'configmaps', namespace: 'default', name: 'b' }), admin);
    await reg.create(cm('c', { v: '1' }), admin);
    await waitUntil(() => log.length >= 5, 10_000, 'informer events');
    expect(log).toEqual(['add a', 'add b', 'update a 2', 'delete b', 'add c']);
    // Resync re-delivers the cache as updates (a controller's periodic reconcile).
    const resynced: string[] = [];
    const inf3 = new Informer(sc, { resource: 'configmaps', namespace: 'default', resyncMs: 300 });
    cleanups.push(() => inf3.stop());
    inf3.on('update', (o, n) => { if (o === n) resynced.push(n.configMap!.metadata!.name); });
    await inf3.start();
    await waitUntil(() => resynced.length >= 2, 5000, 'a resync');
    expect(resynced.slice(0, 2).sort()).toEqual(['a', 'c']);
    inf3.stop();
    // The server ends watches after 2 s: the informer resumes from its resourceVersion without a relist.
    await new Promise((r) => setTimeout(r, 2500));
    await reg.create(cm('d'), admin);
    await waitUntil(() => inf.get('default/d') !== undefined, 10_000, 'd after the watch was resumed');
    expect(inf.lists).toBe(1);
    // Compact past the informer's version while it is between watches: it must relist.
    inf.stop();
    const stale = inf.resourceVersion;
    await reg.create(cm('e'), admin);
    await reg.create(cm('f'), admin);
    const rev = Number((await reg.get(store.GetRequest.fromPartial({ resource: 'configmaps', namespace: 'default', name: 'f' }), admin)).configMap!.metadata!.resourceVersion);
    await client.compact(rev);
    const events: string[] = [];
    for await (const e of sc.watch({ resource: 'configmaps', namespace: 'default', resourceVersion: stale })) events.push(`${e.type} ${e.error?.code ?? ''}`);
    expect(events).toEqual(['ERROR 410']);
    // An informer resuming from that stale checkpoint (which still has "b") relists and catches up.
    const checkpoint = [cm('b')];
    checkpoint[0].configMap!.metadata!.namespace = 'default';
    const inf2 = new Informer(sc, { resource: 'configmaps', namespace: 'default', resume: { resourceVersion: stale, items: checkpoint } });
    cleanups.push(() => inf2.stop());
    const log2: string[] = [];
    inf2.on('add', (o) => log2.push(`add ${o.configMap!.metadata!.name}`));
    inf2.on('delete', (o) => log2.push(`delete ${o.configMap!.metadata!.name}`));
    await inf2.start();
    await waitUntil(() => inf2.lists === 1, 10_000, 'the relist after 410');
    expect(inf2.list().map((o) => o.configMap!.metadata!.name).sort()).toEqual(['a', 'c', 'd', 'e', 'f']);
    expect(log2.sort()).toEqual(['add a', 'add c', 'add d', 'add e', 'add f', 'delete b']);
    // Errors reach the caller as domain errors.
    await expect(sc.get('configmaps', 'default', 'nope')).rejects.toBeInstanceOf(BerthError);
  }, 60_000);
});
