// EtcdV3Client against one real etcd member: keys, ranges, transactions, leases, watches,
// compaction, cluster calls and argument checks.
import { getEventListeners } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdCluster } from '@berth/common';
import { EtcdArgumentError, EtcdCompactedError, EtcdLeaseNotFoundError, EtcdV3Client, type WatchEvent } from '..';
import { startCutProxy, startEtcd, uniquePrefix, waitUntil } from './fixture';

let etcd: EtcdCluster;
let c: EtcdV3Client;
beforeAll(async () => {
  etcd = await startEtcd();
  c = new EtcdV3Client({ endpoints: etcd.endpoints });
});
afterAll(async () => {
  c?.close();
  await etcd?.destroy();
});

describe('EtcdV3Client keys', () => {
  it('puts, gets, overwrites and deletes one key with revisions', async () => {
    const k = `${uniquePrefix('kv')}/a`;
    expect(await c.get(k)).toBeUndefined();
    const p1 = await c.put(k, 'one');
    const kv1 = await c.get(k);
    expect(kv1?.value.toString()).toBe('one');
    expect(kv1?.createRevision).toBe(p1.revision);
    expect(kv1?.modRevision).toBe(p1.revision);
    expect(kv1?.version).toBe(1);
    const p2 = await c.put(k, Buffer.from('two'), { prevKv: true });
    expect(p2.prevKv?.value.toString()).toBe('one');
    expect(p2.revision).toBeGreaterThan(p1.revision);
    const kv2 = await c.get(k);
    expect(kv2).toMatchObject({ createRevision: p1.revision, modRevision: p2.revision, version: 2 });
    expect((await c.get(k, { revision: p1.revision }))?.value.toString()).toBe('one');
    expect((await c.get(k, { serializable: true }))?.value.toString()).toBe('two');
    const d = await c.delete(k, { prevKv: true });
    expect(d.deleted).toBe(1);
    expect(d.prevKvs.map((kv) => kv.value.toString())).toEqual(['two']);
    expect(await c.get(k)).toBeUndefined();
    expect((await c.delete(k)).deleted).toBe(0);
  });

  it('reads ranges: prefix, [key, end), fromKey, limit, keysOnly, countOnly, sort', async () => {
    const p = uniquePrefix('range');
    for (const s of ['c', 'a', 'b', 'd']) await c.put(`${p}/${s}`, `v-${s}`);
    await c.put(`${p}0`, 'outside'); // shares the string prefix but not the "dir/"
    const all = await c.getPrefix(`${p}/`);
    expect(all.kvs.map((kv) => kv.key.toString())).toEqual(['a', 'b', 'c', 'd'].map((s) => `${p}/${s}`));
    expect(all.count).toBe(4);
    expect(all.more).toBe(false);
    const limited = await c.getPrefix(`${p}/`, { limit: 2 });
    expect(limited.kvs).toHaveLength(2);
    expect(limited.more).toBe(true);
    expect(limited.count).toBe(4);
    const between = await c.range(`${p}/b`, { end: `${p}/d`, sort: { order: 'ascend' } });
    expect(between.kvs.map((kv) => kv.value.toString())).toEqual(['v-b', 'v-c']);
    const from = await c.range(`${p}/c`, { fromKey: true, sort: { order: 'ascend' }, limit: 3 });
    expect(from.kvs.map((kv) => kv.key.toString())).toEqual([`${p}/c`, `${p}/d`, `${p}0`]);
    const keysOnly = await c.getPrefix(`${p}/`, { keysOnly: true });
    expect(keysOnly.kvs.every((kv) => kv.value.length === 0)).toBe(true);
    const count = await c.getPrefix(`${p}/`, { countOnly: true });
    expect(count).toMatchObject({ count: 4, kvs: [] });
    const desc = await c.getPrefix(`${p}/`, { sort: { target: 'value', order: 'descend' } });
    expect(desc.kvs.map((kv) => kv.value.toString())).toEqual(['v-d', 'v-c', 'v-b', 'v-a']);
    const byMod = await c.getPrefix(`${p}/`, { sort: { target: 'modRevision', order: 'ascend' } });
    expect(byMod.kvs.map((kv) => kv.value.toString())).toEqual(['v-c', 'v-a', 'v-b', 'v-d']);
    const del = await c.delete(`${p}/`, { prefix: true, prevKv: true });
    expect(del.deleted).toBe(4);
    expect(del.prevKvs).toHaveLength(4);
    expect((await c.get(`${p}0`))?.value.toString()).toBe('outside');
    expect((await c.delete(`${p}/a`, { end: `${p}1` })).deleted).toBe(1);
  });

  it('runs transactions comparing value, version, createRevision, modRevision and lease', async () => {
    const k = `${uniquePrefix('txn')}/k`;
    // Create only if absent (version 0).
    const created = await c.txn({ compare: [{ key: k, target: 'version', op: '=', value: 0 }], success: [{ put: { key: k, value: 'v1' } }], failure: [{ get: { key: k } }] });
    expect(created.succeeded).toBe(true);
    const again = await c.txn({ compare: [{ key: k, target: 'version', op: '=', value: 0 }], success: [{ put: { key: k, value: 'v1' } }], failure: [{ get: { key: k } }] });
    expect(again.succeeded).toBe(false);
    const got = again.responses[0] as { get: { kvs: { value: Buffer; modRevision: number; createRevision: number }[] } };
    expect(got.get.kvs[0].value.toString()).toBe('v1');
    const mod = got.get.kvs[0].modRevision;
    expect((await c.txn({ compare: [{ key: k, target: 'value', op: '=', value: 'v1' }], success: [{ put: { key: k, value: 'v2', prevKv: true } }] })).responses[0]).toMatchObject({ put: { prevKv: { value: Buffer.from('v1') } } });
    expect((await c.txn({ compare: [{ key: k, target: 'modRevision', op: '=', value: mod }] })).succeeded).toBe(false);
    expect((await c.txn({ compare: [{ key: k, target: 'modRevision', op: '>', value: mod }] })).succeeded).toBe(true);
    expect((await c.txn({ compare: [{ key: k, target: 'createRevision', op: '=', value: mod }] })).succeeded).toBe(true);
    expect((await c.txn({ compare: [{ key: k, target: 'version', op: '<', value: 3 }, { key: k, target: 'value', op: '!=', value: 'v1' }] })).succeeded).toBe(true);
    expect((await c.txn({ compare: [{ key: k, target: 'lease', op: '=', value: 0 }] })).succeeded).toBe(true);
    const lease = await c.grantLease(30);
    await c.put(k, 'leased', { lease: lease.id });
    expect((await c.txn({ compare: [{ key: k, target: 'lease', op: '=', value: lease.id }] })).succeeded).toBe(true);
    // Nested transaction and delete inside a txn.
    const nested = await c.txn({ success: [{ txn: { compare: [{ key: k, target: 'value', op: '=', value: 'leased' }], success: [{ delete: { key: k, prevKv: true } }] } }] });
    expect(nested.responses[0]).toMatchObject({ txn: { succeeded: true, responses: [{ delete: { deleted: 1 } }] } });
    await c.revokeLease(lease.id);
  });

  it('grants, inspects, keeps alive and revokes leases; keys die with their lease', async () => {
    const p = uniquePrefix('lease');
    const l = await c.grantLease(5);
    expect(l.ttl).toBe(5);
    expect(l.id).toMatch(/^[0-9a-f]+$/);
    await c.put(`${p}/a`, 'x', { lease: l.id });
    await c.put(`${p}/b`, 'y', { lease: l.id });
    const ttl = await c.leaseTimeToLive(l.id, { keys: true });
    expect(ttl.grantedTtl).toBe(5);
    expect(ttl.ttl).toBeGreaterThan(0);
    expect(ttl.keys.map(String).sort()).toEqual([`${p}/a`, `${p}/b`]);
    expect((await c.get(`${p}/a`))?.lease).toBe(l.id);
    expect(await c.leases()).toContain(l.id);
    expect(await c.keepAliveOnce(l.id)).toBe(5);
    // ignoreValue moves a key to a new lease without touching its value.
    const l2 = await c.grantLease(60);
    await c.put(`${p}/a`, '', { lease: l2.id, ignoreValue: true });
    expect(await c.get(`${p}/a`)).toMatchObject({ value: Buffer.from('x'), lease: l2.id });
    await c.revokeLease(l.id);
    expect(await c.get(`${p}/b`)).toBeUndefined();
    expect((await c.leaseTimeToLive(l.id)).ttl).toBe(-1);
    await expect(c.keepAliveOnce(l.id)).rejects.toBeInstanceOf(EtcdLeaseNotFoundError);
    await expect(c.revokeLease(l.id)).rejects.toBeInstanceOf(EtcdLeaseNotFoundError);
    await c.revokeLease(l2.id);
    expect(await c.get(`${p}/a`)).toBeUndefined();
  });

  it('keepAlive holds a short lease past its TTL, and reports loss after revoke', async () => {
    const k = `${uniquePrefix('ka')}/k`;
    const l = await c.grantLease(2);
    await c.put(k, 'alive', { lease: l.id });
    const ka = c.keepAlive(l.id);
    let renewals = 0;
    ka.on('keepalive', () => renewals++);
    await new Promise((r) => setTimeout(r, 3500));
    expect(renewals).toBeGreaterThanOrEqual(2);
    expect((await c.get(k))?.value.toString()).toBe('alive');
    await c.revokeLease(l.id);
    const lost = await Promise.race([ka.lost, new Promise((r) => setTimeout(() => r('not lost'), 5000))]);
    expect(lost).toBeInstanceOf(EtcdLeaseNotFoundError);
  });

  it('a lease without keepAlive expires and takes its key', async () => {
    const k = `${uniquePrefix('expire')}/k`;
    const l = await c.grantLease(1);
    await c.put(k, 'short', { lease: l.id });
    await waitUntil(async () => (await c.get(k)) === undefined, 8000, 'lease expiry');
  });
});

describe('EtcdV3Client races', () => {
  it('20 concurrent clients race a modRevision compare-and-swap: exactly one wins each round', async () => {
    const k = `${uniquePrefix('race')}/k`;
    const clients = Array.from({ length: 20 }, () => new EtcdV3Client({ endpoints: etcd.endpoints }));
    try {
      await c.put(k, 'round-0');
      for (let round = 1; round <= 10; round++) {
        const cur = (await c.get(k))!;
        const results = await Promise.all(clients.map((cl, i) => cl.txn({
          compare: [{ key: k, target: 'modRevision', op: '=', value: cur.modRevision }],
          success: [{ put: { key: k, value: `round-${round}-by-${i}` } }],
        })));
        const winners = results.flatMap((r, i) => (r.succeeded ? [i] : []));
        expect(winners).toHaveLength(1);
        expect((await c.get(k))?.value.toString()).toBe(`round-${round}-by-${winners[0]}`);
      }
    } finally {
      for (const cl of clients) cl.close();
    }
  });
});

describe('EtcdV3Client watch', () => {
  const collect = async (w: AsyncIterable<{ events: WatchEvent[] }>, n: number): Promise<WatchEvent[]> => {
    const out: WatchEvent[] = [];
    for await (const r of w) {
      out.push(...r.events);
      if (out.length >= n) break;
    }
    return out;
  };

  it('a watch that ends (cancelled or its iteration left) takes its listener off the caller\'s signal', async () => {
    const p = uniquePrefix('watch-signal');
    const ac = new AbortController();
    for (let i = 0; i < 12; i++) {
      const w = c.watch(`${p}/`, { prefix: true, signal: ac.signal });
      await w.ready;
      if (i % 2 === 0) w.cancel();
      else {
        await c.put(`${p}/k`, String(i));
        for await (const r of w) if (r.events.length > 0) break;
      }
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    }
    // and the signal still ends a live one
    const w = c.watch(`${p}/`, { prefix: true, signal: ac.signal });
    await w.ready;
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    const ended = (async () => { for await (const r of w) void r; })();
    ac.abort();
    await ended;
  });

  it('delivers puts and deletes on a prefix with prevKv, and replays from a revision', async () => {
    const p = uniquePrefix('watch');
    const w = c.watch(`${p}/`, { prefix: true, prevKv: true });
    await w.ready;
    const first = await c.put(`${p}/a`, '1');
    await c.put(`${p}/a`, '2');
    await c.put(`${p}-not-in-prefix`, 'x');
    await c.delete(`${p}/a`);
    const evs = await collect(w, 3);
    expect(evs.map((e) => [e.type, e.kv.key.toString(), e.kv.value.toString(), e.prevKv?.value.toString()])).toEqual([
      ['put', `${p}/a`, '1', undefined],
      ['put', `${p}/a`, '2', '1'],
      ['delete', `${p}/a`, '', '2'],
    ]);
    // A new watcher from an old revision replays history.
    const replay = c.watch(`${p}/a`, { startRevision: first.revision });
    expect((await collect(replay, 3)).map((e) => e.type)).toEqual(['put', 'put', 'delete']);
  });

  it('filters puts or deletes and reports progress', async () => {
    const p = uniquePrefix('filter');
    const noPut = c.watch(`${p}/`, { prefix: true, noPut: true });
    const progress = c.watch(`${p}/`, { prefix: true, progressNotify: true });
    await Promise.all([noPut.ready, progress.ready]);
    await c.put(`${p}/x`, '1');
    await c.delete(`${p}/x`);
    const evs = await collect(noPut, 1);
    expect(evs.map((e) => e.type)).toEqual(['delete']);
    progress.requestProgress();
    let sawProgress = false;
    for await (const r of progress) {
      if (r.progressNotify) { sawProgress = true; break; }
    }
    expect(sawProgress).toBe(true);
    expect(progress.nextRevision).toBeGreaterThan(1);
  });

  it('reports compaction of the revision it needs so the caller relists', async () => {
    const p = uniquePrefix('compact');
    const start = (await c.put(`${p}/a`, '0')).revision;
    let last = start;
    for (let i = 1; i <= 5; i++) last = (await c.put(`${p}/a`, String(i))).revision;
    await c.compact(last, { physical: true });
    const w = c.watch(`${p}/`, { prefix: true, startRevision: start });
    const err = await collect(w, 1).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(EtcdCompactedError);
    expect((err as EtcdCompactedError).compactRevision).toBe(last);
    await expect(c.get(`${p}/a`, { revision: start })).rejects.toBeInstanceOf(EtcdCompactedError);
    await expect(c.range(`${p}/`, { prefix: true, revision: start })).rejects.toMatchObject({ compactRevision: last });
    expect(await c.compactRevision()).toBeGreaterThanOrEqual(last);
  });

  it('reports a compaction that happened while the watcher was cut off', async () => {
    const p = uniquePrefix('cutoff');
    const proxy = await startCutProxy(etcd.endpoints[0]);
    const watching = new EtcdV3Client({ endpoints: [proxy.url] });
    try {
      const w = watching.watch(`${p}/`, { prefix: true });
      await w.ready;
      await c.put(`${p}/a`, 'seen');
      const it = w[Symbol.asyncIterator]();
      expect((await it.next()).value.events[0].kv.value.toString()).toBe('seen');
      await proxy.cut();
      let rev = 0;
      for (let i = 0; i < 3; i++) rev = (await c.put(`${p}/a`, `missed-${i}`)).revision;
      await c.compact(rev, { physical: true });
      await proxy.restore();
      const err = await it.next().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(EtcdCompactedError);
      expect((err as EtcdCompactedError).compactRevision).toBe(rev);
      expect(w.reconnects).toBeGreaterThanOrEqual(1);
    } finally {
      watching.close();
      await proxy.close();
    }
  });

  it('resumes after a network cut without losing or repeating events', async () => {
    const p = uniquePrefix('resume');
    const proxy = await startCutProxy(etcd.endpoints[0]);
    const watching = new EtcdV3Client({ endpoints: [proxy.url] });
    try {
      const w = watching.watch(`${p}/`, { prefix: true });
      await w.ready;
      const got: string[] = [];
      const reading = (async () => { for await (const r of w) { for (const e of r.events) got.push(e.kv.value.toString()); if (got.length >= 30) return; } })();
      for (let i = 0; i < 30; i++) {
        if (i === 10) await proxy.cut();
        if (i === 20) await proxy.restore();
        await c.put(`${p}/k${i % 3}`, String(i));
      }
      await reading;
      expect(got).toEqual(Array.from({ length: 30 }, (_, i) => String(i)));
      expect(w.reconnects).toBeGreaterThanOrEqual(1);
    } finally {
      watching.close();
      await proxy.close();
    }
  });

  it('200 watchers on one client each see the write once', async () => {
    const k = `${uniquePrefix('many')}/k`;
    const watchers = Array.from({ length: 200 }, () => c.watch(k));
    try {
      await Promise.all(watchers.map((w) => w.ready));
      const put = await c.put(k, 'news');
      const firsts = await Promise.all(watchers.map(async (w) => (await w[Symbol.asyncIterator]().next()).value as { events: WatchEvent[] }));
      expect(firsts.every((r) => r.events.length === 1 && r.events[0].kv.modRevision === put.revision)).toBe(true);
      expect((await c.get(k))?.value.toString()).toBe('news');
    } finally {
      for (const w of watchers) w.cancel();
    }
  });

  it('a slow consumer of a 2000-event burst sees every event once, in order', async () => {
    const p = uniquePrefix('burst');
    const w = c.watch(`${p}/`, { prefix: true, highWaterMark: 16 });
    await w.ready;
    const n = 2000;
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) writes.push(c.put(`${p}/${i % 50}`, String(i)));
    await Promise.all(writes);
    const seen: number[] = [];
    let lastRev = 0;
    for await (const r of w) {
      await new Promise((res) => setImmediate(res)); // slow consumer
      for (const e of r.events) {
        expect(e.kv.modRevision).toBeGreaterThan(lastRev);
        lastRev = e.kv.modRevision;
        seen.push(Number(e.kv.value.toString()));
      }
      if (seen.length >= n) break;
    }
    expect(seen).toHaveLength(n);
    expect(new Set(seen).size).toBe(n);
  });
});

describe('EtcdV3Client cluster and arguments', () => {
  it('lists members and reports status', async () => {
    const members = await c.memberList();
    expect(members).toHaveLength(1);
    expect(members[0].clientUrls).toEqual([etcd.endpoints[0]]);
    const s = await c.status();
    expect(s.version).toMatch(/^3\.\d+\.\d+/);
    expect(s.leader).toBe(members[0].id);
    expect(s.memberId).toBe(members[0].id);
    expect(s.revision).toBeGreaterThan(0);
  });

  it.each([
    ['empty key', () => c.get(''), /get\.key: must not be empty/],
    ['bad lease id', () => c.put('/k', 'v', { lease: 'zz' }), /put\.lease: must be a hex lease ID/],
    ['negative revision', () => c.get('/k', { revision: -1 }), /get\.revision: must be a non-negative integer/],
    ['fractional limit', () => c.range('/k', { prefix: true, limit: 1.5 }), /range\.limit/],
    ['prefix and end', () => c.range('/k', { prefix: true, end: '/z' }), /prefix, end and fromKey exclude each other/],
    ['bad compare op', () => c.txn({ compare: [{ key: '/k', target: 'value', op: '~' as never, value: 'x' }] }), /txn\.compare\[0\]\.op/],
    ['non-integer compare', () => c.txn({ compare: [{ key: '/k', target: 'version', op: '=', value: 'x' }] }), /txn\.compare\[0\]\.value: must be an integer/],
    ['zero ttl', () => c.grantLease(0), /ttl: must be a positive integer/],
    ['ignoreValue with value', () => c.put('/k', 'v', { ignoreValue: true }), /put\.ignoreValue/],
  ])('rejects %s before sending', async (_n, fn, msg) => {
    await expect(fn()).rejects.toThrow(EtcdArgumentError);
    await expect(fn()).rejects.toThrow(msg);
  });

  it('rejects bad endpoints naming the option', () => {
    expect(() => new EtcdV3Client({ endpoints: [] })).toThrow(/endpoints: at least one/);
    expect(() => new EtcdV3Client({ endpoints: ['ftp://x:1'] })).toThrow(/endpoints\[0\]: scheme ftp:/);
    expect(() => new EtcdV3Client({ endpoints: ['http://127.0.0.1'] })).toThrow(/endpoints\[0\]: .* has no port/);
  });
});
