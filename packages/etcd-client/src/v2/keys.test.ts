// EtcdV2Client against one real etcd member (v2 API on): every keys-API option and error code,
// TTL expiry and refresh, directories, in-order keys, CAS races, the watch through a >1000-event
// burst (resync reported, nothing lost or repeated), members, version, health, v2 auth.
import { getEventListeners } from 'node:events';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdCluster } from '@berth/common';
import { EtcdArgumentError, EtcdError, EtcdV2Client, type V2Response } from '..';
import { keyPath, normalizeKey } from './client';
import { etcdHeaders, Transport } from './transport';
import { startEtcd, uniquePrefix, waitUntil } from '../v3/fixture';

let etcd: EtcdCluster;
let c: EtcdV2Client;
beforeAll(async () => {
  etcd = await startEtcd();
  c = new EtcdV2Client({ endpoints: etcd.endpoints });
});
afterAll(async () => {
  c?.close();
  await etcd?.destroy();
});

async function code(p: Promise<unknown>): Promise<number | string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof EtcdError) return e.errorCode;
    throw e;
  }
}

describe('EtcdV2Client keys', () => {
  it('sets, gets and deletes a key; responses carry indexes and cluster id', async () => {
    const k = `${uniquePrefix('v2')}/a`;
    const s = await c.set(k, 'one');
    expect(s.action).toBe('set');
    expect(s.node).toMatchObject({ key: k, value: 'one' });
    expect(s.node.createdIndex).toBe(s.node.modifiedIndex);
    expect(s.etcdIndex).toBe(s.node.modifiedIndex);
    expect(s.raftIndex).toBeGreaterThan(0);
    expect(s.raftTerm).toBeGreaterThan(0);
    expect(s.clusterId).toMatch(/^[0-9a-f]+$/);
    const s2 = await c.set(k, 'two');
    expect(s2.prevNode?.value).toBe('one');
    const g = await c.get(k, { quorum: true });
    // A v2 set replaces the node: createdIndex moves too.
    expect(g).toMatchObject({ action: 'get', node: { key: k, value: 'two', createdIndex: s2.node.modifiedIndex, modifiedIndex: s2.node.modifiedIndex } });
    // The plain set(key, value) form-encodes the value on its own short path.
    for (const v of ['a&b=c d%+ü', '']) {
      await c.set(`${k}-enc`, v);
      expect((await c.get(`${k}-enc`)).node.value).toBe(v);
    }
    await c.delete(`${k}-enc`);
    const d = await c.delete(k);
    expect(d.action).toBe('delete');
    expect(d.prevNode?.value).toBe('two');
    const err = await c.get(k).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EtcdError);
    expect(err).toMatchObject({ errorCode: 100, cause: k, etcdMessage: 'Key not found' });
    expect((err as EtcdError).index).toBeGreaterThanOrEqual(d.node.modifiedIndex);
  });

  it('normalises keys and refuses bad ones before sending', async () => {
    const p = uniquePrefix('norm');
    await c.set(`${p.slice(1)}//x/`, 'v');
    expect((await c.get(`${p}/x`)).node.value).toBe('v');
    await c.set(`${p}/sp ace&q=1`, 'w');
    expect((await c.get(`${p}/sp ace&q=1`)).node.key).toBe(`${p}/sp ace&q=1`);
    await expect(c.get('')).rejects.toBeInstanceOf(EtcdArgumentError);
    await expect(c.get('')).rejects.toThrow(/key: must not be empty/);
    await expect(c.set(`${p}/../etc`, 'x')).rejects.toThrow(/key: .* contains a "\.\." segment/);
    await expect(c.set(`${p}/a`, 'x', { ttl: -1 })).rejects.toThrow(/ttl: must be a non-negative integer/);
    await expect(c.set(`${p}/a`, 'x', { ttl: 1.5 })).rejects.toThrow(/ttl: must be a non-negative integer/);
    await expect(c.set(`${p}/a`, 'x', { refresh: true, ttl: 5 })).rejects.toThrow(/refresh: cannot be combined with a value/);
    await expect(c.set(`${p}/a`, '', { refresh: true })).rejects.toThrow(/refresh: needs a ttl/);
    await expect(c.set(`${p}/a`, 'x', { prevExist: false, prevIndex: 3 })).rejects.toThrow(/prevIndex: cannot be combined with prevExist=false/);
    await expect(c.set(`${p}/a`, 'x', { prevIndex: 0 })).rejects.toThrow(/prevIndex: must be a positive integer/);
    await expect(c.set(`${p}/a`, 'x', { dir: true })).rejects.toThrow(/dir: a directory has no value/);
    await expect(c.delete(`${p}/a`, { recursive: true, prevValue: 'x' })).rejects.toThrow(/recursive: cannot be combined/);
    await expect(c.createInOrder('', 'x')).rejects.toThrow(/dir: must not be empty/);
    expect(() => c.watch(`${p}`, { afterIndex: -2 })).toThrow(/afterIndex/);
    expect(() => new EtcdV2Client({ endpoints: ['127.0.0.1:2379'] })).toThrow(/endpoints\[0\]/);
    expect(() => new EtcdV2Client({ endpoints: [etcd.endpoints[0]], headerTimeoutMs: 0 })).toThrow(/headerTimeoutMs/);
  });

  // normalizeKey and keyPath answer simple keys in one regex test; the rest take the general
  // split-and-encode path. Both must agree on every key.
  it.each([
    ['/a/b', '/a/b', '/v2/keys/a/b'],
    ['/a/b.c/-x/~y/Z_9', '/a/b.c/-x/~y/Z_9', '/v2/keys/a/b.c/-x/~y/Z_9'],
    ['a/b', '/a/b', '/v2/keys/a/b'],
    ['/a//b/', '/a/b', '/v2/keys/a/b'],
    ['/a/.hidden', '/a/.hidden', '/v2/keys/a/.hidden'],
    ['/a/b..c', '/a/b..c', '/v2/keys/a/b..c'],
    ['/a/sp ace&q=1', '/a/sp ace&q=1', '/v2/keys/a/sp%20ace%26q%3D1'],
    ['/a/ü?#', '/a/ü?#', '/v2/keys/a/%C3%BC%3F%23'],
    ['/', '/', '/v2/keys/'],
  ])('key %j is %j, sent as %j', (key, norm, p) => {
    expect(normalizeKey(key)).toBe(norm);
    expect(keyPath(normalizeKey(key))).toBe(p);
  });

  it.each(['', '/a/../b', '/a/./b', '..', '/a/\0'])('refuses key %j', (key) => {
    expect(() => normalizeKey(key)).toThrow(EtcdArgumentError);
  });

  it('reads the etcd headers from the raw header list, in any case, 0 or empty when absent', () => {
    expect(etcdHeaders(['Content-Type', 'application/json', 'X-Etcd-Cluster-Id', 'cdf818194e3a8c32', 'X-Etcd-Index', '1005', 'X-Raft-Index', '2000', 'X-Raft-Term', '3', 'Date', 'x']))
      .toEqual({ etcdIndex: 1005, raftIndex: 2000, raftTerm: 3, clusterId: 'cdf818194e3a8c32' });
    expect(etcdHeaders(['x-etcd-index', '7', 'X-RAFT-TERM', '2', 'X-Etcd-Indexes', '9', 'Content-Length', '10'])).toEqual({ etcdIndex: 7, raftIndex: 0, raftTerm: 2, clusterId: '' });
    expect(etcdHeaders([])).toEqual({ etcdIndex: 0, raftIndex: 0, raftTerm: 0, clusterId: '' });
  });

  it('compare-and-swap and compare-and-delete on prevExist, prevValue and prevIndex (101, 100, 105)', async () => {
    const k = `${uniquePrefix('cas')}/k`;
    const created = await c.create(k, 'v1');
    expect(created.action).toBe('create');
    expect(await code(c.create(k, 'again'))).toBe(105);
    expect(await code(c.update(`${k}-missing`, 'x'))).toBe(100);
    const upd = await c.update(k, 'v2');
    expect(upd.action).toBe('update');
    expect(await code(c.set(k, 'v3', { prevValue: 'nope' }))).toBe(101);
    const cas = await c.set(k, 'v3', { prevValue: 'v2' });
    expect(cas.action).toBe('compareAndSwap');
    expect(await code(c.set(k, 'v4', { prevIndex: upd.node.modifiedIndex }))).toBe(101);
    await c.set(k, 'v4', { prevIndex: cas.node.modifiedIndex, prevExist: true });
    expect(await code(c.delete(k, { prevValue: 'v3' }))).toBe(101);
    expect(await code(c.delete(k, { prevIndex: cas.node.modifiedIndex }))).toBe(101);
    const cad = await c.delete(k, { prevValue: 'v4' });
    expect(cad.action).toBe('compareAndDelete');
    const nv = await c.set(k, 'quiet', { noValueOnSuccess: true });
    expect(nv.node).toBeUndefined();
    expect((await c.get(k)).node.value).toBe('quiet');
  });

  it('directories: dir create, listing recursive and sorted, 102/104/108/107, recursive delete', async () => {
    const p = uniquePrefix('dir');
    const d = await c.set(`${p}/d`, '', { dir: true });
    expect(d.node.dir).toBe(true);
    await c.set(`${p}/d/b`, '2');
    await c.set(`${p}/d/a`, '1');
    await c.set(`${p}/d/sub/c`, '3');
    const flat = await c.get(`${p}/d`, { sorted: true });
    expect(flat.node.nodes?.map((n) => [n.key, n.value, n.dir ?? false])).toEqual([[`${p}/d/a`, '1', false], [`${p}/d/b`, '2', false], [`${p}/d/sub`, undefined, true]]);
    expect(flat.node.nodes?.[2].nodes).toBeUndefined();
    const deep = await c.get(`${p}/d`, { recursive: true, sorted: true });
    expect(deep.node.nodes?.[2].nodes?.map((n) => n.value)).toEqual(['3']);
    // All three read options in one query (the read path builds it by hand).
    expect(await c.get(`${p}/d`, { recursive: true, sorted: true, quorum: true })).toMatchObject({ node: deep.node });
    expect((await c.get(`${p}/d`, { recursive: false, sorted: true, quorum: false })).node.nodes?.[2].nodes).toBeUndefined();
    expect(await code(c.set(`${p}/d`, 'x'))).toBe(102); // not a file
    expect(await code(c.delete(`${p}/d`))).toBe(102);
    expect(await code(c.set(`${p}/d/a/under-a-file`, 'x'))).toBe(104); // not a directory
    expect(await code(c.delete(`${p}/d`, { dir: true }))).toBe(108); // not empty
    expect(await code(c.set('/', 'x'))).toBe(107); // root is read-only
    await c.set(`${p}/empty`, '', { dir: true });
    expect((await c.delete(`${p}/empty`, { dir: true })).action).toBe('delete');
    expect((await c.delete(`${p}/d`, { recursive: true })).node.dir).toBe(true);
    expect(await code(c.get(`${p}/d/a`))).toBe(100);
  });

  it('in-order keys sort by creation', async () => {
    const q = `${uniquePrefix('queue')}/jobs`;
    const made: string[] = [];
    for (const v of ['first', 'second', 'third']) made.push((await c.createInOrder(q, v)).node.key);
    expect(made.every((k) => k.startsWith(`${q}/`))).toBe(true);
    const list = await c.get(q, { sorted: true });
    expect(list.node.nodes?.map((n) => n.value)).toEqual(['first', 'second', 'third']);
    expect(list.node.nodes?.map((n) => n.key)).toEqual(made);
  });

  it('TTL: expiry (seen by a watcher as expire), refresh without notifying watchers', async () => {
    const p = uniquePrefix('ttl');
    const s = await c.set(`${p}/short`, 'v', { ttl: 1 });
    expect(s.node.ttl).toBe(1);
    expect(s.node.expiration).toMatch(/^\d{4}-\d\d-\d\dT/);
    const w = c.watch(`${p}/short`, { afterIndex: s.node.modifiedIndex });
    const it = w[Symbol.asyncIterator]();
    const ev = (await it.next()).value as V2Response;
    expect(ev.action).toBe('expire');
    expect(ev.prevNode?.value).toBe('v');
    w.cancel();

    const r = await c.set(`${p}/long`, 'keep', { ttl: 3 });
    const watcher = c.watch(`${p}/long`, { afterIndex: r.node.modifiedIndex });
    const seen: string[] = [];
    const reading = (async () => { for await (const e of watcher) seen.push(e.action); })();
    // Refreshed every second for 5 s: well past the 3 s TTL it was created with.
    for (let i = 0; i < 5; i++) {
      await new Promise((res) => setTimeout(res, 1000));
      const ref = await c.set(`${p}/long`, '', { refresh: true, ttl: 3 });
      expect(ref.node.value).toBe('keep');
      expect(ref.node.ttl).toBe(3);
    }
    expect((await c.get(`${p}/long`)).node.value).toBe('keep');
    await c.delete(`${p}/long`);
    await new Promise((res) => setTimeout(res, 200));
    watcher.cancel();
    await reading;
    expect(seen).toEqual(['delete']); // refreshes are invisible to watchers
    // Removing the TTL: a plain set without ttl keeps the key forever.
    expect(await code(c.set(`${p}/missing`, '', { refresh: true, ttl: 1 }))).toBe(100);
  });

  it('maps form errors (2xx) and watch errors (401) from the server', async () => {
    const k = `${uniquePrefix('form')}/k`;
    const raw = async (method: 'PUT' | 'GET', q: string): Promise<number> => {
      const r = await c.transport.request(method === 'GET' ? { method, path: `/v2/keys${k}?${q}` } : { method, path: `/v2/keys${k}`, body: q });
      try { Transport.json(r); return 0; } catch (e) { return (e as EtcdError).errorCode; }
    };
    expect(await raw('PUT', 'value=x&ttl=abc')).toBe(202);
    expect(await raw('PUT', 'value=x&prevIndex=abc')).toBe(203);
    expect(await raw('PUT', 'value=x&prevExist=maybe')).toBe(209);
    expect(await raw('PUT', 'refresh=true&ttl=5&value=x')).toBe(211);
    expect(await raw('PUT', 'refresh=true&prevExist=true')).toBe(212);
    // Enough writes to push index 1 out of the 1000-event history.
    const base = uniquePrefix('fill');
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 1010; i++) writes.push(c.set(`${base}/${i % 10}`, String(i)));
    await Promise.all(writes);
    expect(await raw('GET', 'wait=true&waitIndex=1')).toBe(401);
  });

  it('a slow watcher through a 1500-write burst: resync reported, nothing lost, nothing repeated', async () => {
    const p = uniquePrefix('burst');
    const first = await c.set(`${p}/k0`, 'start');
    const w = c.watch(p, { recursive: true, afterIndex: first.node.modifiedIndex });
    const got: V2Response[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    let lastIndex = Infinity;
    const reading = (async () => {
      for await (const r of w) {
        got.push(r);
        if (got.length === 5) await gate; // the slow consumer
        if ((r.action === 'resync' ? r.etcdIndex : r.node.modifiedIndex) >= lastIndex) return;
      }
    })();
    const writes: { i: number; index: number; key: string }[] = [];
    const n = 1500;
    for (let b = 0; b < n; b += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, (_, j) => c.set(`${p}/k${(b + j) % 40}`, String(b + j))));
      batch.forEach((r, j) => writes.push({ i: b + j, index: r.node.modifiedIndex, key: r.node.key }));
      // The consumer wakes up with more than 1000 events behind it; writes go on meanwhile.
      if (b === 1200) {
        release();
        await waitUntil(() => w.resyncs === 1, 10_000, 'the watcher to resync');
      }
    }
    lastIndex = Math.max(...writes.map((x) => x.index));
    await reading;
    expect(got.slice(got.findIndex((r) => r.action === 'resync') + 1).length).toBeGreaterThanOrEqual(250);

    const resyncAt = got.findIndex((r) => r.action === 'resync');
    expect(resyncAt).toBeGreaterThan(0);
    expect(w.resyncs).toBe(1);
    const before = got.slice(0, resyncAt);
    const snap = got[resyncAt];
    const after = got.slice(resyncAt + 1);
    const idx = (rs: V2Response[]) => rs.map((r) => r.node.modifiedIndex);
    // No repeats: strictly increasing indexes across the whole stream.
    const all = [...idx(before), snap.etcdIndex, ...idx(after)];
    for (let i = 1; i < all.length; i++) expect(all[i]).toBeGreaterThan(all[i - 1]);
    // Nothing lost: before the resync, a gap-free run of our writes; after it, every write newer
    // than the snapshot; and the snapshot holds each key's last write up to its index.
    const sorted = writes.map((x) => x.index).sort((a, b) => a - b);
    expect(idx(before)).toEqual(sorted.slice(0, before.length));
    expect(idx(after)).toEqual(sorted.filter((i) => i > snap.etcdIndex));
    const lastUpTo = new Map<string, string>();
    for (const x of [...writes].sort((a, b) => a.index - b.index)) if (x.index <= snap.etcdIndex) lastUpTo.set(x.key, String(x.i));
    const snapVals = new Map((snap.node.nodes ?? []).map((nd) => [nd.key, nd.value]));
    for (const [key, v] of lastUpTo) expect(snapVals.get(key)).toBe(v);
  });

  it('treats a long poll that closes empty as a retry, not an event or a failure', async () => {
    const k = `${uniquePrefix('empty')}/k`;
    const target = new URL(etcd.endpoints[0]);
    let emptied = 0;
    // A front that answers the first two long polls with an empty 200, as etcd (or a proxy)
    // does when it closes an idle wait, and forwards everything else.
    const front = http.createServer((req, res) => {
      if (req.url?.includes('wait=true') && emptied < 2) {
        emptied++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end();
        return;
      }
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
    const viaFront = new EtcdV2Client({ endpoints: [`http://127.0.0.1:${(front.address() as AddressInfo).port}`] });
    try {
      const base = await c.set(k, 'base');
      const w = viaFront.watch(k, { afterIndex: base.node.modifiedIndex });
      const next = w[Symbol.asyncIterator]().next();
      await waitUntil(() => emptied === 2, 5000, 'two empty polls');
      const s = await c.set(k, 'after-empty');
      const got = (await next).value as V2Response;
      expect(got.node).toMatchObject({ value: 'after-empty', modifiedIndex: s.node.modifiedIndex });
      expect(w.reconnects).toBe(0);
      w.cancel();
    } finally {
      viaFront.close();
      front.closeAllConnections();
      await new Promise((r) => front.close(r));
    }
  });

  it('150 watchers on one client all see the same write (long polls never starve each other)', async () => {
    const k = `${uniquePrefix('many')}/k`;
    const base = await c.set(k, 'base');
    const watchers = Array.from({ length: 150 }, () => c.watch(k, { afterIndex: base.node.modifiedIndex }));
    try {
      const firsts = watchers.map((w) => w[Symbol.asyncIterator]().next());
      await new Promise((r) => setTimeout(r, 300));
      await c.set(k, 'news');
      const got = await Promise.all(firsts);
      expect(got.map((g) => (g.value as V2Response).node.value)).toEqual(Array(150).fill('news'));
      // Ordinary requests still go through while 150 polls are open.
      expect((await c.get(k)).node.value).toBe('news');
    } finally {
      for (const w of watchers) w.cancel();
    }
  });

  it('20 concurrent clients race compare-and-swap: exactly one wins each round', async () => {
    const k = `${uniquePrefix('race')}/k`;
    const clients = Array.from({ length: 20 }, () => new EtcdV2Client({ endpoints: etcd.endpoints }));
    try {
      await c.set(k, 'round-0');
      for (let round = 1; round <= 10; round++) {
        const cur = await c.get(k);
        const results = await Promise.all(clients.map((cl, i) => cl.set(k, `round-${round}-by-${i}`, { prevIndex: cur.node.modifiedIndex }).then(() => 'won', (e: EtcdError) => e.errorCode)));
        expect(results.filter((r) => r === 'won')).toHaveLength(1);
        expect(results.filter((r) => r === 101)).toHaveLength(19);
        const winner = results.indexOf('won');
        expect((await c.get(k)).node.value).toBe(`round-${round}-by-${winner}`);
      }
    } finally {
      for (const cl of clients) cl.close();
    }
  });
});

describe('EtcdV2Client watch and the caller\'s signal', () => {
  it('a watch that ends takes its listener off the signal; the signal still ends a live one', async () => {
    const p = uniquePrefix('v2-watch-signal');
    const ac = new AbortController();
    for (let i = 0; i < 12; i++) {
      const s = await c.set(`${p}/k`, String(i));
      const w = c.watch(`${p}/k`, { afterIndex: s.node.modifiedIndex - 1, signal: ac.signal });
      if (i % 2 === 0) w.cancel();
      else for await (const r of w) if (r.node.value === String(i)) break;
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    }
    // Also when the abort comes while the watch still reads the index to start from.
    const w = c.watch(`${p}/k`, { signal: ac.signal });
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    const ended = (async () => { for await (const r of w) void r; })();
    ac.abort();
    await ended;
  });
});

describe('EtcdV2Client cluster information', () => {
  it('members, leader, version and health', async () => {
    const members = await c.listMembers();
    expect(members).toHaveLength(1);
    expect(members[0].clientURLs).toEqual([etcd.endpoints[0]]);
    expect(await c.leader()).toMatchObject({ id: members[0].id });
    expect((await c.version()).etcdserver).toMatch(/^3\.\d+\.\d+$/);
    expect(await c.health()).toBe(true);
    await expect(c.removeMember('xyz')).rejects.toThrow(/id: must be a hex member ID/);
  });

  it('reports a dead endpoint as unhealthy and fails over to a live one', async () => {
    const { freePort } = await import('@berth/common');
    const dead = `http://127.0.0.1:${await freePort()}`;
    const two = new EtcdV2Client({ endpoints: [dead, etcd.endpoints[0]] });
    try {
      expect(await two.health(dead)).toBe(false);
      const k = `${uniquePrefix('fo')}/k`;
      await two.set(k, 'v'); // refused by the dead one (never sent), so safe to send to the next
      expect(two.activeEndpoint).toBe(etcd.endpoints[0]);
      expect((await two.get(k)).node.value).toBe('v');
    } finally {
      two.close();
    }
  });
});
